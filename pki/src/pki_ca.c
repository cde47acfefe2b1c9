/* pki_ca.c - creating a CA (init) and opening an existing one for reading or
 * signing: the checks every signing command shares (CA present, not expired,
 * key private to its owner, passphrase when the key is encrypted). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/err.h"
#include "internal.h"

#define KEY_MAX_BYTES  (64u * 1024u)
#define CERT_MAX_BYTES (1024u * 1024u)
#define PASS_MAX_BYTES 4096u
/* A passphrase shorter than this protects nothing worth the ceremony. */
#define PASS_MIN_LEN 8

void pki__ca_init(pki__ca *ca)
{
    memset(ca, 0, sizeof(*ca));
    ca->lock_fd = -1;
}

void pki__ca_close(pki__ca *ca)
{
    if (!ca)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    if (ca->lock_fd >= 0)
        close(ca->lock_fd); /* releases the fcntl lock */
    pki__ca_init(ca);
}

int pki__read_passphrase(const char *file, char **pw, size_t *len, char *err, size_t errcap)
{
    char *text = NULL;
    size_t n = 0, i;
    int rc;

    *pw = NULL;
    *len = 0;
    rc = pki__read_file(file, PASS_MAX_BYTES, &text, &n, NULL, err, errcap);
    if (rc != 0)
        return rc;
    /* The first line is the passphrase, so `echo secret > f` works. */
    for (i = 0; i < n && text[i] != '\n'; i++)
        ;
    if (i > 0 && text[i - 1] == '\r')
        i--;
    if (i == 0) {
        pki__free_secret(text, n + 1);
        return pki__fail(err, errcap, SS_EINVAL, "passphrase file %s is empty", file);
    }
    if (memchr(text, '\0', i)) {
        pki__free_secret(text, n + 1);
        return pki__fail(err, errcap, SS_EINVAL, "passphrase file %s contains a NUL byte", file);
    }
    OPENSSL_cleanse(text + i, n - i);
    text[i] = '\0';
    *pw = text;
    *len = i;
    return 0;
}

typedef struct pass_ctx {
    const char *pw;
    size_t len;
    int asked;
} pass_ctx;

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    pass_ctx *p = u;

    (void)rwflag;
    p->asked = 1;
    if (!p->pw || size < 0 || p->len > (size_t)size)
        return -1;
    memcpy(buf, p->pw, p->len);
    return (int)p->len;
}

static int lock_dir(pki__ca *ca, char *err, size_t errcap)
{
    char path[PATH_MAX];
    struct flock fl;
    int rc;

    if ((rc = pki__path(path, sizeof(path), ca->dir, PKI_LOCK_FILE, err, errcap)) != 0)
        return rc;
    ca->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ca->lock_fd < 0)
        return pki__fail(err, errcap, errno == EACCES ? SS_EPERM : SS_EIO, "cannot open %s: %s",
                         path, strerror(errno));
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    /* Waits for another sitesync-pki on the same CA: two concurrent issues
     * must not both rewrite the index from the same old copy. */
    while (fcntl(ca->lock_fd, F_SETLKW, &fl) != 0) {
        if (errno != EINTR)
            return pki__fail(err, errcap, SS_EIO, "cannot lock %s: %s", path, strerror(errno));
    }
    return 0;
}

static int load_cert(pki__ca *ca, char *err, size_t errcap)
{
    char path[PATH_MAX], when[32];
    char *text = NULL;
    size_t len = 0;
    BIO *b = NULL;
    int64_t nb, na, now = pki__now();
    int rc;

    if ((rc = pki__path(path, sizeof(path), ca->dir, PKI_CA_CERT_FILE, err, errcap)) != 0)
        return rc;
    if (!pki__exists(path))
        return pki__fail(err, errcap, SS_ENOENT,
                         "no CA in %s (%s not found): create one with 'sitesync-pki init --dir %s'",
                         ca->dir, path, ca->dir);
    if ((rc = pki__read_file(path, CERT_MAX_BYTES, &text, &len, NULL, err, errcap)) != 0)
        return rc;
    b = BIO_new_mem_buf(text, (int)len);
    ca->cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(text);
    if (!ca->cert)
        return pki__fail_ossl(err, errcap, SS_ECERT, "%s is not a PEM certificate", path);
    if (pki__asn1_time_to_epoch(X509_get0_notBefore(ca->cert), &nb) != 0 ||
        pki__asn1_time_to_epoch(X509_get0_notAfter(ca->cert), &na) != 0)
        return pki__fail(err, errcap, SS_ECERT, "%s has an unreadable validity period", path);
    if (na < now) {
        pki__fmt_time(na, when, sizeof(when));
        return pki__fail(err, errcap, SS_ECERT,
                         "the CA certificate %s expired on %s: it can no longer sign; create a "
                         "new CA and re-enrol the nodes (see docs/pki.md, 'Rotate')",
                         path, when);
    }
    if (nb > now) {
        pki__fmt_time(nb, when, sizeof(when));
        return pki__fail(err, errcap, SS_ECERT,
                         "the CA certificate %s is not valid before %s: check this machine's clock",
                         path, when);
    }
    return 0;
}

static int is_encrypted_pem(const char *text)
{
    return strstr(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
           strstr(text, "Proc-Type: 4,ENCRYPTED") != NULL;
}

static int load_key(pki__ca *ca, const char *passphrase_file, char *err, size_t errcap)
{
    char path[PATH_MAX];
    char *text = NULL, *pw = NULL;
    size_t len = 0, pwlen = 0;
    mode_t mode = 0;
    BIO *b = NULL;
    pass_ctx pc;
    int rc;

    if ((rc = pki__path(path, sizeof(path), ca->dir, PKI_CA_KEY_FILE, err, errcap)) != 0)
        return rc;
    if (!pki__exists(path))
        return pki__fail(err, errcap, SS_ENOENT,
                         "the CA key %s is missing: signing needs the CA key (is this an "
                         "offline-key copy of the CA directory?)",
                         path);
    if ((rc = pki__read_file(path, KEY_MAX_BYTES, &text, &len, &mode, err, errcap)) != 0)
        return rc;
    if ((mode & 0077) != 0) {
        rc = pki__fail(err, errcap, SS_EPERM,
                       "the CA key %s is accessible by group or others (mode %04o): "
                       "run 'chmod 600 %s' and check who may have copied it",
                       path, (unsigned)(mode & 07777), path);
        goto exit;
    }
    if (is_encrypted_pem(text)) {
        if (!passphrase_file) {
            rc = pki__fail(err, errcap, SS_EPERM,
                           "the CA key %s is encrypted: give its passphrase with "
                           "--passphrase-file FILE",
                           path);
            goto exit;
        }
        if ((rc = pki__read_passphrase(passphrase_file, &pw, &pwlen, err, errcap)) != 0)
            goto exit;
    } else if (passphrase_file) {
        rc = pki__fail(err, errcap, SS_EINVAL,
                       "--passphrase-file given but the CA key %s is not encrypted: drop the "
                       "option",
                       path);
        goto exit;
    }
    memset(&pc, 0, sizeof(pc));
    pc.pw = pw;
    pc.len = pwlen;
    b = BIO_new_mem_buf(text, (int)len);
    ca->key = b ? PEM_read_bio_PrivateKey(b, NULL, pass_cb, &pc) : NULL;
    if (!ca->key) {
        if (pw)
            rc = pki__fail_ossl(err, errcap, SS_EPERM,
                                "cannot decrypt the CA key %s: wrong passphrase in %s", path,
                                passphrase_file);
        else
            rc = pki__fail_ossl(err, errcap, SS_ECORRUPT, "%s is not a PEM private key", path);
        goto exit;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_ECERT, "the CA key %s does not match %s/%s", path,
                            ca->dir, PKI_CA_CERT_FILE);
        goto exit;
    }
exit:
    BIO_free(b);
    pki__free_secret(text, len + 1);
    pki__free_secret(pw, pwlen + 1);
    return rc;
}

int pki__ca_open(pki__ca *ca, const char *dir, int sign, const char *passphrase_file, char *err,
                 size_t errcap)
{
    struct stat st;
    size_t n;
    int rc;

    pki__ca_init(ca);
    if (!dir || !*dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    n = strlen(dir);
    if (n >= sizeof(ca->dir) - 32)
        return pki__fail(err, errcap, SS_ENOSPC, "CA directory name too long");
    memcpy(ca->dir, dir, n + 1);
    if (stat(dir, &st) != 0)
        return pki__fail(err, errcap, SS_ENOENT,
                         "CA directory %s does not exist (%s): create a CA with "
                         "'sitesync-pki init --dir %s'",
                         dir, strerror(errno), dir);
    if (!S_ISDIR(st.st_mode))
        return pki__fail(err, errcap, SS_EINVAL, "%s is not a directory", dir);
    if (sign && (rc = lock_dir(ca, err, errcap)) != 0)
        goto fail;
    if ((rc = load_cert(ca, err, errcap)) != 0)
        goto fail;
    if (sign && (rc = load_key(ca, passphrase_file, err, errcap)) != 0)
        goto fail;
    return 0;
fail:
    pki__ca_close(ca);
    return rc;
}

static int name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > PKI_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

static int key_pem(EVP_PKEY *key, const char *pw, size_t pwlen, char **pem, size_t *len, char *err,
                   size_t errcap)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;
    int ok, rc = 0;

    *pem = NULL;
    *len = 0;
    if (!b)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
    if (pw)
        ok = PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), pw, (int)pwlen, NULL, NULL);
    else
        ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    if (ok != 1) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot encode the private key");
        goto exit;
    }
    BIO_get_mem_ptr(b, &bm);
    *pem = malloc(bm->length + 1);
    if (!*pem) {
        rc = pki__fail(err, errcap, SS_ENOMEM, "out of memory");
        goto exit;
    }
    memcpy(*pem, bm->data, bm->length);
    (*pem)[bm->length] = '\0';
    *len = bm->length;
exit:
    /* The memory BIO held the clear key; wipe it before it goes back. */
    if (bm && bm->data)
        OPENSSL_cleanse(bm->data, bm->max);
    BIO_free(b);
    return rc;
}

static int build_ca_cert(EVP_PKEY *key, const char *name, int days, X509 **out, char *err,
                         size_t errcap)
{
    X509 *x = X509_new();
    X509_NAME *nm;
    ASN1_INTEGER *serial = NULL;
    time_t now = time(NULL);
    int rc;

    *out = NULL;
    if (!x)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
    if ((rc = pki__random_serial(&serial, err, errcap)) != 0)
        goto fail;
    nm = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)name, -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, nm) != 1 ||
        !ASN1_TIME_adj(X509_getm_notBefore(x), now, 0, -PKI__BACKDATE_SECS) ||
        !ASN1_TIME_adj(X509_getm_notAfter(x), now, days, 0) || X509_set_pubkey(x, key) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot build the CA certificate");
        goto fail;
    }
    if ((rc = pki__add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err,
                           errcap)) != 0 ||
        (rc = pki__add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err, errcap)) !=
            0 ||
        (rc = pki__add_ext(x, x, NID_subject_key_identifier, "hash", err, errcap)) != 0)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot sign the CA certificate");
        goto fail;
    }
    ASN1_INTEGER_free(serial);
    *out = x;
    return 0;
fail:
    ASN1_INTEGER_free(serial);
    X509_free(x);
    return rc;
}

int pki_init(const pki_init_opts *o, char *err, size_t errcap)
{
    static const char *const existing[] = { PKI_CA_CERT_FILE, PKI_CA_KEY_FILE, PKI_INDEX_FILE,
                                            PKI_CRL_FILE };
    const char *name = o && o->name ? o->name : "sitesync CA";
    int days = o && o->days ? o->days : PKI_CA_DAYS_DEFAULT;
    char path[PATH_MAX], keyp[PATH_MAX], certp[PATH_MAX], crlp[PATH_MAX], indexp[PATH_MAX];
    char *pw = NULL, *keytext = NULL, *certtext = NULL, *crltext = NULL, *indextext = NULL;
    size_t pwlen = 0, keylen = 0, certlen = 0, crllen = 0, indexlen = 0;
    pki__staged st[4];
    EVP_PKEY *key = NULL;
    pki__ca ca;
    pki__index ix;
    int rc;

    pki__ca_init(&ca);
    pki__index_init(&ix);
    for (int i = 0; i < 4; i++)
        pki__staged_init(&st[i]);
    if (!o || !o->dir || !*o->dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    if (!name_ok(name))
        return pki__fail(err, errcap, SS_EINVAL, "bad CA name '%s': 1 to %d printable characters",
                         name, PKI_NAME_MAX);
    if (days < 1 || days > PKI_DAYS_MAX)
        return pki__fail(err, errcap, SS_ERANGE, "--days must be between 1 and %d", PKI_DAYS_MAX);
    for (size_t i = 0; i < sizeof(existing) / sizeof(existing[0]); i++) {
        if ((rc = pki__path(path, sizeof(path), o->dir, existing[i], err, errcap)) != 0)
            return rc;
        if (pki__exists(path))
            return pki__fail(err, errcap, SS_EEXIST,
                             "a CA already exists in %s (%s is there): refusing to overwrite it",
                             o->dir, path);
    }
    if (o->passphrase_file) {
        if ((rc = pki__read_passphrase(o->passphrase_file, &pw, &pwlen, err, errcap)) != 0)
            return rc;
        if (pwlen < PASS_MIN_LEN) {
            rc = pki__fail(err, errcap, SS_EINVAL,
                           "the passphrase in %s is shorter than %d characters", o->passphrase_file,
                           PASS_MIN_LEN);
            goto exit;
        }
    }
    if ((rc = pki__path(keyp, sizeof(keyp), o->dir, PKI_CA_KEY_FILE, err, errcap)) != 0 ||
        (rc = pki__path(certp, sizeof(certp), o->dir, PKI_CA_CERT_FILE, err, errcap)) != 0 ||
        (rc = pki__path(crlp, sizeof(crlp), o->dir, PKI_CRL_FILE, err, errcap)) != 0 ||
        (rc = pki__path(indexp, sizeof(indexp), o->dir, PKI_INDEX_FILE, err, errcap)) != 0)
        goto exit;

    key = EVP_EC_gen("P-256");
    if (!key) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot generate the CA key");
        goto exit;
    }
    if ((rc = build_ca_cert(key, name, days, &ca.cert, err, errcap)) != 0)
        goto exit;
    ca.key = key;
    key = NULL;
    memcpy(ca.dir, o->dir, strlen(o->dir) + 1);
    /* The first CRL is number 1 and lists nothing. */
    ix.crl_number = 1;
    if ((rc = pki__crl_build(&ca, &ix, 1, PKI_CRL_DAYS_DEFAULT, &crltext, &crllen, err, errcap)) !=
            0 ||
        (rc = pki__cert_pem(ca.cert, &certtext, &certlen, err, errcap)) != 0 ||
        (rc = key_pem(ca.key, pw, pwlen, &keytext, &keylen, err, errcap)) != 0 ||
        (rc = pki__index_dump(&ix, &indextext, &indexlen, err, errcap)) != 0)
        goto exit;

    if ((rc = pki__mkdirs(o->dir, 0755, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__path(path, sizeof(path), o->dir, "private", err, errcap)) != 0 ||
        (rc = pki__mkdirs(path, 0700, err, errcap)) != 0)
        goto exit;
    /* An existing private/ (say, made by hand) may have been created wide. */
    if (chmod(path, 0700) != 0) {
        rc = pki__fail(err, errcap, SS_EPERM, "cannot chmod 700 %s: %s", path, strerror(errno));
        goto exit;
    }
    if ((rc = pki__path(path, sizeof(path), o->dir, PKI_CERTS_DIR, err, errcap)) != 0 ||
        (rc = pki__mkdirs(path, 0755, err, errcap)) != 0)
        goto exit;

    if ((rc = pki__stage(&st[0], keyp, keytext, keylen, 0600, 1, err, errcap)) != 0 ||
        (rc = pki__stage(&st[1], certp, certtext, certlen, 0644, 1, err, errcap)) != 0 ||
        (rc = pki__stage(&st[2], crlp, crltext, crllen, 0644, 1, err, errcap)) != 0 ||
        (rc = pki__stage(&st[3], indexp, indextext, indexlen, 0644, 1, err, errcap)) != 0)
        goto exit;
    for (int i = 0; i < 4; i++) {
        if ((rc = pki__commit(&st[i], err, errcap)) != 0)
            goto exit;
    }
exit:
    /* On failure, remove what this init created: a CA with a key but no
     * certificate would block the next init. */
    for (int i = 0; i < 4; i++)
        pki__unstage(&st[i], rc != 0);
    pki__free_secret(keytext, keylen + 1);
    pki__free_secret(pw, pwlen + 1);
    OPENSSL_free(certtext);
    OPENSSL_free(crltext);
    free(indextext);
    EVP_PKEY_free(key);
    pki__index_free(&ix);
    pki__ca_close(&ca);
    return rc;
}
