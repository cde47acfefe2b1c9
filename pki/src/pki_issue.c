/* pki_issue.c - node certificates: checking the requested identity, building
 * the leaf profile (SAN URIs, key usage by role), signing, and recording the
 * issuance in the index together with the files handed to the operator. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/err.h"
#include "internal.h"

#define CSR_MAX_BYTES (1024u * 1024u)

int pki__random_serial(ASN1_INTEGER **out, char *err, size_t errcap)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int nonzero = 0;

    *out = NULL;
    /* RFC 5280 wants a positive serial of at most 20 octets; CA/B asks for 64
     * bits of entropy. 127 random bits with the top bit clear stay positive
     * without a leading zero octet. */
    do {
        if (RAND_bytes(b, sizeof(b)) != 1)
            return pki__fail_ossl(err, errcap, SS_EINTERNAL, "no random bytes for a serial");
        b[0] &= 0x7f;
        nonzero = 0;
        for (size_t i = 0; i < sizeof(b); i++)
            nonzero |= b[i];
    } while (!nonzero);
    bn = BN_bin2bn(b, sizeof(b), NULL);
    if (bn)
        *out = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (!*out)
        return pki__fail_ossl(err, errcap, SS_ENOMEM, "cannot encode a serial");
    return 0;
}

int pki__add_ext(X509 *x, X509 *issuer, int nid, const char *value, char *err, size_t errcap)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot make extension %s=%s",
                              OBJ_nid2sn(nid), value);
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot add extension %s",
                              OBJ_nid2sn(nid));
    return 0;
}

/* Copies s into buf for an error message with anything unprintable shown as
 * '?', so a hostile argument cannot drive the operator's terminal. */
static const char *printable(const char *s, char *buf, size_t cap)
{
    size_t i = 0;

    for (; s && s[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    buf[i] = '\0';
    if (s && s[i] && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
    return buf;
}

static int dns_ok(const char *s)
{
    size_t n = strlen(s), label = 0;

    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (c == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[n - 1] != '-';
}

#define ID_RULE "1 to 64 characters of a-z 0-9 . _ -, starting with a-z or 0-9"

/* Checks the identity and names in o against the role's rules. */
static int check_request(const pki_issue_opts *o, char *err, size_t errcap)
{
    char p[80];

    if (o->role != SS_ROLE_GATEWAY && o->role != SS_ROLE_RELAY && o->role != SS_ROLE_DAEMON)
        return pki__fail(err, errcap, SS_EINVAL,
                         "--role is required: one of daemon, gateway, relay");
    if (!o->node)
        return pki__fail(err, errcap, SS_EINVAL, "--node ID is required");
    if (ss_id_check_str(o->node) != 0)
        return pki__fail(err, errcap, SS_EID, "bad node id '%s': %s",
                         printable(o->node, p, sizeof(p)), ID_RULE);
    if (o->nsites < 0 || o->nsites > SS_IDENT_MAX_SITES)
        return pki__fail(err, errcap, SS_ELIMIT, "at most %d sites per certificate",
                         SS_IDENT_MAX_SITES);
    for (int i = 0; i < o->nsites; i++) {
        if (ss_id_check_str(o->sites[i]) != 0)
            return pki__fail(err, errcap, SS_EID, "bad site id '%s': %s",
                             printable(o->sites[i], p, sizeof(p)), ID_RULE);
        for (int j = 0; j < i; j++) {
            if (strcmp(o->sites[i], o->sites[j]) == 0)
                return pki__fail(err, errcap, SS_EINVAL, "site '%s' given twice", o->sites[i]);
        }
    }
    if (o->role == SS_ROLE_DAEMON && o->nsites > 0)
        return pki__fail(err, errcap, SS_EINVAL,
                         "a daemon certificate names no site: drop --site (the daemon serves "
                         "every site)");
    if (o->role != SS_ROLE_DAEMON && o->nsites == 0)
        return pki__fail(err, errcap, SS_EINVAL,
                         "a %s certificate must name at least one site: add --site ID",
                         ss_role_name(o->role));
    if (o->role == SS_ROLE_GATEWAY && (o->ndns > 0 || o->nips > 0))
        return pki__fail(err, errcap, SS_EINVAL,
                         "--dns/--ip are for daemon and relay certificates (they serve TLS); a "
                         "gateway is only a client");
    if (o->ndns < 0 || o->ndns > PKI_MAX_DNS || o->nips < 0 || o->nips > PKI_MAX_IP)
        return pki__fail(err, errcap, SS_ELIMIT, "at most %d --dns and %d --ip", PKI_MAX_DNS,
                         PKI_MAX_IP);
    for (int i = 0; i < o->ndns; i++) {
        if (!dns_ok(o->dns[i]))
            return pki__fail(err, errcap, SS_EINVAL,
                             "bad --dns name '%s': letters, digits, '-' and '.' (no wildcards)",
                             printable(o->dns[i], p, sizeof(p)));
    }
    for (int i = 0; i < o->nips; i++) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(o->ips[i]);
        if (!ip) {
            ERR_clear_error();
            return pki__fail(err, errcap, SS_EINVAL, "bad --ip address '%s': IPv4 or IPv6",
                             printable(o->ips[i], p, sizeof(p)));
        }
        ASN1_OCTET_STRING_free(ip);
    }
    if (o->days < 0 || o->days > PKI_DAYS_MAX)
        return pki__fail(err, errcap, SS_ERANGE, "--days must be between 1 and %d", PKI_DAYS_MAX);
    return 0;
}

static int push_name(GENERAL_NAMES *gens, int type, const char *text)
{
    GENERAL_NAME *g = NULL;
    ASN1_IA5STRING *s = NULL;
    ASN1_OCTET_STRING *ip = NULL;

    g = GENERAL_NAME_new();
    if (!g)
        return 0;
    if (type == GEN_IPADD) {
        ip = a2i_IPADDRESS(text);
        if (!ip)
            goto fail;
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else {
        s = ASN1_IA5STRING_new();
        if (!s || ASN1_STRING_set(s, text, (int)strlen(text)) != 1)
            goto fail;
        GENERAL_NAME_set0_value(g, type, s);
    }
    if (sk_GENERAL_NAME_push(gens, g) <= 0) {
        GENERAL_NAME_free(g);
        return 0;
    }
    return 1;
fail:
    ASN1_IA5STRING_free(s);
    GENERAL_NAME_free(g);
    return 0;
}

static int add_uri(GENERAL_NAMES *gens, ss_uri_kind kind, const char *value)
{
    char uri[SS_URI_MAX + 1];

    return ss_uri_format(uri, sizeof(uri), kind, value) >= 0 && push_name(gens, GEN_URI, uri);
}

static int add_san(X509 *x, const pki_issue_opts *o, char *err, size_t errcap)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = gens != NULL;

    ok = ok && add_uri(gens, SS_URI_NODE, o->node);
    ok = ok && add_uri(gens, SS_URI_ROLE, ss_role_name(o->role));
    for (int i = 0; ok && i < o->nsites; i++)
        ok = add_uri(gens, SS_URI_SITE, o->sites[i]);
    for (int i = 0; ok && i < o->ndns; i++)
        ok = push_name(gens, GEN_DNS, o->dns[i]);
    for (int i = 0; ok && i < o->nips; i++)
        ok = push_name(gens, GEN_IPADD, o->ips[i]);
    /* Not critical: the subject DN is not empty (RFC 5280 4.2.1.6). */
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    if (!ok)
        return pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot build the subjectAltName");
    return 0;
}

static const char *eku_for(ss_role role)
{
    switch (role) {
    case SS_ROLE_DAEMON:
        return "serverAuth";
    case SS_ROLE_GATEWAY:
        return "clientAuth";
    case SS_ROLE_RELAY:
        /* A hub serves the gateways below it and is a client of the daemon. */
        return "serverAuth,clientAuth";
    case SS_ROLE_NONE:
        break;
    }
    return NULL;
}

/* Builds and signs the leaf certificate for pubkey. */
static int build_leaf(const pki__ca *ca, EVP_PKEY *pubkey, const pki_issue_opts *o, int days,
                      X509 **out, char *err, size_t errcap)
{
    X509 *x = X509_new();
    X509_NAME *nm;
    const X509_NAME *caname = X509_get_subject_name(ca->cert);
    ASN1_INTEGER *serial = NULL;
    time_t now = time(NULL);
    int rc, idx;

    *out = NULL;
    if (!x)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
    if ((rc = pki__random_serial(&serial, err, errcap)) != 0)
        goto fail;
    nm = X509_get_subject_name(x);
    idx = X509_NAME_get_index_by_NID(caname, NID_organizationName, -1);
    if (idx >= 0 && X509_NAME_add_entry(nm, X509_NAME_get_entry(caname, idx), -1, 0) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot copy the CA organization");
        goto fail;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)o->node, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, caname) != 1 ||
        !ASN1_TIME_adj(X509_getm_notBefore(x), now, 0, -PKI__BACKDATE_SECS) ||
        !ASN1_TIME_adj(X509_getm_notAfter(x), now, days, 0) || X509_set_pubkey(x, pubkey) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot build the certificate");
        goto fail;
    }
    if ((rc = pki__add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE", err, errcap)) !=
            0 ||
        (rc = pki__add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature", err, errcap)) !=
            0 ||
        (rc = pki__add_ext(x, ca->cert, NID_ext_key_usage, eku_for(o->role), err, errcap)) != 0 ||
        (rc = pki__add_ext(x, ca->cert, NID_subject_key_identifier, "hash", err, errcap)) != 0 ||
        (rc = pki__add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always", err,
                           errcap)) != 0 ||
        (rc = add_san(x, o, err, errcap)) != 0)
        goto fail;
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot sign the certificate");
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

/* Leaf lifetime in days, refused if it would outlive the CA: a chain that
 * stops verifying before the leaf "expires" surprises everyone. */
static int leaf_days(const pki__ca *ca, const pki_issue_opts *o, int *days, char *err,
                     size_t errcap)
{
    int64_t na, now = pki__now();
    char when[32];
    long max;

    *days = o->days ? o->days : PKI_LEAF_DAYS_DEFAULT;
    if (pki__asn1_time_to_epoch(X509_get0_notAfter(ca->cert), &na) != 0)
        return pki__fail(err, errcap, SS_ECERT, "cannot read the CA's validity");
    max = (long)((na - now) / 86400);
    if (*days > max) {
        pki__fmt_time(na, when, sizeof(when));
        if (max < 1)
            return pki__fail(err, errcap, SS_ECERT,
                             "the CA expires on %s, in less than a day: rotate the CA (see "
                             "docs/pki.md)",
                             when);
        return pki__fail(err, errcap, SS_ERANGE,
                         "a %d-day certificate would outlive the CA (it expires on %s): use "
                         "--days %ld or less, or rotate the CA",
                         *days, when, max);
    }
    return 0;
}

static int key_pem(EVP_PKEY *key, char **pem, size_t *len, char *err, size_t errcap)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;
    int rc = 0;

    *pem = NULL;
    *len = 0;
    if (!b || PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1) {
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
    if (bm && bm->data)
        OPENSSL_cleanse(bm->data, bm->max);
    BIO_free(b);
    return rc;
}

static int refuse_existing(const char *path, int force, char *err, size_t errcap)
{
    if (!force && pki__exists(path))
        return pki__fail(err, errcap, SS_EEXIST,
                         "%s already exists: choose another --out, or pass --force to replace it",
                         path);
    return 0;
}

/* The shared tail of issue and sign-csr: sign, then write (key,) certificate,
 * archive copy and index so that either all of them exist or none. */
static int issue_common(const pki_issue_opts *o, EVP_PKEY *pubkey, EVP_PKEY *newkey,
                        const char *keypath, const char *crtpath, pki_issued *res, char *err,
                        size_t errcap)
{
    pki__ca ca;
    pki__index ix;
    pki__entry e;
    X509 *x = NULL;
    char *crt = NULL, *keytext = NULL, *indextext = NULL;
    size_t crtlen = 0, keylen = 0, indexlen = 0;
    char archive[PATH_MAX], indexp[PATH_MAX], certsdir[PATH_MAX], rel[64];
    pki__staged st[4];
    int rc, days, nst = 0;

    pki__ca_init(&ca);
    pki__index_init(&ix);
    for (int i = 0; i < 4; i++)
        pki__staged_init(&st[i]);
    if ((rc = pki__ca_open(&ca, o->dir, 1, o->passphrase_file, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__index_load(o->dir, &ix, err, errcap)) != 0)
        goto exit;
    if ((rc = leaf_days(&ca, o, &days, err, errcap)) != 0)
        goto exit;
    if ((rc = build_leaf(&ca, pubkey, o, days, &x, err, errcap)) != 0)
        goto exit;

    memset(&e, 0, sizeof(e));
    if (pki__serial_hex(X509_get0_serialNumber(x), e.serial, sizeof(e.serial)) != 0 ||
        pki__fingerprint(x, e.fingerprint, sizeof(e.fingerprint)) != 0 ||
        pki__asn1_time_to_epoch(X509_get0_notBefore(x), &e.not_before) != 0 ||
        pki__asn1_time_to_epoch(X509_get0_notAfter(x), &e.not_after) != 0) {
        rc = pki__fail(err, errcap, SS_EINTERNAL, "cannot read back the new certificate");
        goto exit;
    }
    memcpy(e.node, o->node, strlen(o->node) + 1);
    e.role = o->role;
    e.nsites = o->nsites;
    for (int i = 0; i < ix.n; i++) {
        /* 2^-127 per pair; cheap to rule out rather than to reason about. */
        if (strcmp(ix.e[i].serial, e.serial) == 0) {
            rc = pki__fail(err, errcap, SS_EINTERNAL, "serial collision, try again");
            goto exit;
        }
    }
    if ((rc = pki__index_add(&ix, &e, o->sites, err, errcap)) != 0)
        goto exit;

    /* Every issued certificate is archived as certs/<SERIAL>.crt so that the
     * CA keeps a copy of what it signed, whoever holds the original. */
    snprintf(rel, sizeof(rel), "%s/%s.crt", PKI_CERTS_DIR, e.serial);
    if ((rc = pki__path(archive, sizeof(archive), o->dir, rel, err, errcap)) != 0 ||
        (rc = pki__path(indexp, sizeof(indexp), o->dir, PKI_INDEX_FILE, err, errcap)) != 0 ||
        (rc = pki__path(certsdir, sizeof(certsdir), o->dir, PKI_CERTS_DIR, err, errcap)) != 0 ||
        (rc = pki__mkdirs(certsdir, 0755, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__cert_pem(x, &crt, &crtlen, err, errcap)) != 0 ||
        (rc = pki__index_dump(&ix, &indextext, &indexlen, err, errcap)) != 0)
        goto exit;
    if (newkey && (rc = key_pem(newkey, &keytext, &keylen, err, errcap)) != 0)
        goto exit;

    /* Stage everything first: a failure here leaves no trace. */
    if (newkey &&
        (rc = pki__stage(&st[nst++], keypath, keytext, keylen, 0600, !o->force, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__stage(&st[nst++], crtpath, crt, crtlen, 0644, !o->force, err, errcap)) != 0 ||
        (rc = pki__stage(&st[nst++], archive, crt, crtlen, 0644, 1, err, errcap)) != 0 ||
        (rc = pki__stage(&st[nst++], indexp, indextext, indexlen, 0644, 0, err, errcap)) != 0)
        goto exit;
    /* The index goes last: a certificate the index does not know could not
     * be revoked by node, so it must not survive a failed index write. */
    for (int i = 0; i < nst; i++) {
        if ((rc = pki__commit(&st[i], err, errcap)) != 0)
            goto exit;
    }
    if (res) {
        memcpy(res->serial, e.serial, sizeof(res->serial));
        memcpy(res->fingerprint, e.fingerprint, sizeof(res->fingerprint));
        pki__fmt_time(e.not_after, res->not_after, sizeof(res->not_after));
    }
exit:
    for (int i = 0; i < 4; i++)
        pki__unstage(&st[i], rc != 0);
    pki__free_secret(keytext, keylen + 1);
    OPENSSL_free(crt);
    free(indextext);
    X509_free(x);
    pki__index_free(&ix);
    pki__ca_close(&ca);
    return rc;
}

int pki_issue(const pki_issue_opts *o, pki_issued *res, char *err, size_t errcap)
{
    char keypath[PATH_MAX], crtpath[PATH_MAX];
    EVP_PKEY *key = NULL;
    int rc, n;

    if (!o || !o->dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    if ((rc = check_request(o, err, errcap)) != 0)
        return rc;
    if (!o->out_prefix || !*o->out_prefix)
        return pki__fail(err, errcap, SS_EINVAL,
                         "--out PREFIX is required (writes PREFIX.key and PREFIX.crt)");
    n = snprintf(keypath, sizeof(keypath), "%s.key", o->out_prefix);
    if (n < 0 || (size_t)n >= sizeof(keypath))
        return pki__fail(err, errcap, SS_ENOSPC, "--out path too long");
    n = snprintf(crtpath, sizeof(crtpath), "%s.crt", o->out_prefix);
    if (n < 0 || (size_t)n >= sizeof(crtpath))
        return pki__fail(err, errcap, SS_ENOSPC, "--out path too long");
    if ((rc = refuse_existing(keypath, o->force, err, errcap)) != 0 ||
        (rc = refuse_existing(crtpath, o->force, err, errcap)) != 0)
        return rc;
    key = EVP_EC_gen("P-256");
    if (!key)
        return pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot generate a P-256 key");
    rc = issue_common(o, key, key, keypath, crtpath, res, err, errcap);
    EVP_PKEY_free(key);
    return rc;
}

static int read_csr(const char *file, X509_REQ **out, char *err, size_t errcap)
{
    char *text = NULL;
    size_t len = 0;
    BIO *b;
    const unsigned char *p;
    int rc;

    *out = NULL;
    if ((rc = pki__read_file(file, CSR_MAX_BYTES, &text, &len, NULL, err, errcap)) != 0)
        return rc;
    b = BIO_new_mem_buf(text, (int)len);
    if (b)
        *out = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!*out) {
        /* Not PEM: try DER, as devices without a PEM encoder send it. */
        ERR_clear_error();
        p = (const unsigned char *)text;
        *out = d2i_X509_REQ(NULL, &p, (long)len);
    }
    free(text);
    if (!*out)
        return pki__fail_ossl(err, errcap, SS_EINVAL,
                              "%s is not a certificate signing request (PEM or DER)", file);
    return 0;
}

int pki_sign_csr(const pki_issue_opts *o, pki_issued *res, char *err, size_t errcap)
{
    X509_REQ *req = NULL;
    EVP_PKEY *pub;
    char group[64];
    size_t glen = 0;
    int rc;

    if (!o || !o->dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    if ((rc = check_request(o, err, errcap)) != 0)
        return rc;
    if (!o->csr_file || !*o->csr_file)
        return pki__fail(err, errcap, SS_EINVAL, "--csr FILE is required");
    if (!o->out_crt || !*o->out_crt)
        return pki__fail(err, errcap, SS_EINVAL, "--out FILE.crt is required");
    if ((rc = refuse_existing(o->out_crt, o->force, err, errcap)) != 0)
        return rc;
    if ((rc = read_csr(o->csr_file, &req, err, errcap)) != 0)
        return rc;
    pub = X509_REQ_get0_pubkey(req);
    if (!pub) {
        rc = pki__fail_ossl(err, errcap, SS_EINVAL, "the CSR %s carries no usable public key",
                            o->csr_file);
        goto exit;
    }
    /* Proof of possession: the CSR is signed by the key it asks us to
     * certify. Anything else could bind someone else's key to this node. */
    if (X509_REQ_verify(req, pub) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_ESIG,
                            "the signature of the CSR %s does not verify: it was altered or not "
                            "signed by its own key; make a new CSR on the device",
                            o->csr_file);
        goto exit;
    }
    if (!EVP_PKEY_is_a(pub, "EC") ||
        EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1 ||
        (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
        ERR_clear_error();
        rc = pki__fail(err, errcap, SS_EINVAL,
                       "the CSR %s has a %s key: sitesync uses ECDSA P-256 keys (openssl req "
                       "-new -newkey ec -pkeyopt ec_paramgen_curve:P-256 ...)",
                       o->csr_file,
                       EVP_PKEY_get0_type_name(pub) ? EVP_PKEY_get0_type_name(pub) : "unknown");
        goto exit;
    }
    /* Subject and requested extensions of the CSR are ignored on purpose:
     * identity comes from the operator's command line only. */
    rc = issue_common(o, pub, NULL, NULL, o->out_crt, res, err, errcap);
exit:
    X509_REQ_free(req);
    return rc;
}
