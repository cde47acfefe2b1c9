/* pki_crl.c - revocation: marking certificates revoked in the index and
 * publishing the CA's certificate revocation list (crl.pem) from it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/err.h"
#include "internal.h"

static const struct {
    int code;
    const char *name;
    const char *alias;
} reasons[] = {
    { PKI_REASON_UNSPECIFIED, "unspecified", "unspecified" },
    { PKI_REASON_KEY_COMPROMISE, "keyCompromise", "key-compromise" },
    { PKI_REASON_CA_COMPROMISE, "cACompromise", "ca-compromise" },
    { PKI_REASON_AFFILIATION_CHANGED, "affiliationChanged", "affiliation-changed" },
    { PKI_REASON_SUPERSEDED, "superseded", "superseded" },
    { PKI_REASON_CESSATION_OF_OPERATION, "cessationOfOperation", "cessation-of-operation" },
    { PKI_REASON_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn", "privilege-withdrawn" },
};

int pki_reason_parse(const char *s)
{
    if (!s)
        return SS_EINVAL;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (strcasecmp(s, reasons[i].name) == 0 || strcasecmp(s, reasons[i].alias) == 0)
            return reasons[i].code;
    }
    return SS_EINVAL;
}

const char *pki_reason_name(int reason)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].code == reason)
            return reasons[i].name;
    }
    return "unspecified";
}

static int add_revoked(X509_CRL *crl, const pki__entry *e)
{
    X509_REVOKED *r = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    int ok = r != NULL;

    ok = ok && BN_hex2bn(&bn, e->serial) > 0;
    ok = ok && (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL;
    ok = ok && (when = ASN1_TIME_set(NULL, (time_t)e->revoked_at)) != NULL;
    ok = ok && X509_REVOKED_set_serialNumber(r, serial) == 1;
    ok = ok && X509_REVOKED_set_revocationDate(r, when) == 1;
    /* RFC 5280 5.3.1: the reason code is omitted rather than "unspecified". */
    if (ok && e->reason != PKI_REASON_UNSPECIFIED) {
        ok = (reason = ASN1_ENUMERATED_new()) != NULL &&
             ASN1_ENUMERATED_set(reason, e->reason) == 1 &&
             X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) == 1;
    }
    ok = ok && X509_CRL_add0_revoked(crl, r) == 1;
    if (!ok)
        X509_REVOKED_free(r);
    ASN1_ENUMERATED_free(reason);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok;
}

int pki__crl_build(const pki__ca *ca, const pki__index *ix, long crl_number, int days, char **pem,
                   size_t *len, char *err, size_t errcap)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = NULL, *next = NULL;
    ASN1_INTEGER *num = NULL;
    X509V3_CTX ctx;
    X509_EXTENSION *aki = NULL;
    BIO *b = NULL;
    BUF_MEM *bm = NULL;
    time_t now = (time_t)pki__now();
    int ok = crl != NULL, rc = 0;

    *pem = NULL;
    *len = 0;
    ok = ok && X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1;
    ok = ok && X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) == 1;
    ok = ok && (last = ASN1_TIME_adj(NULL, now, 0, 0)) != NULL;
    ok = ok && (next = ASN1_TIME_adj(NULL, now, days, 0)) != NULL;
    ok = ok && X509_CRL_set1_lastUpdate(crl, last) == 1;
    ok = ok && X509_CRL_set1_nextUpdate(crl, next) == 1;
    for (int i = 0; ok && i < ix->n; i++) {
        if (ix->e[i].revoked)
            ok = add_revoked(crl, &ix->e[i]);
    }
    ok = ok && X509_CRL_sort(crl) == 1;
    ok = ok && (num = ASN1_INTEGER_new()) != NULL && ASN1_INTEGER_set(num, crl_number) == 1;
    ok = ok && X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1;
    if (ok) {
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
        aki = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1;
    }
    ok = ok && X509_CRL_sign(crl, ca->key, EVP_sha256()) > 0;
    if (!ok) {
        rc = pki__fail_ossl(err, errcap, SS_EINTERNAL, "cannot build the CRL");
        goto exit;
    }
    b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509_CRL(b, crl) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_ENOMEM, "cannot encode the CRL");
        goto exit;
    }
    BIO_get_mem_ptr(b, &bm);
    *pem = OPENSSL_malloc(bm->length + 1);
    if (!*pem) {
        rc = pki__fail(err, errcap, SS_ENOMEM, "out of memory");
        goto exit;
    }
    memcpy(*pem, bm->data, bm->length);
    (*pem)[bm->length] = '\0';
    *len = bm->length;
exit:
    BIO_free(b);
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    return rc;
}

/* Writes index then CRL. The index goes first so that a crlNumber, once
 * published, is never reused. */
static int publish(const pki__ca *ca, pki__index *ix, int days, char *err, size_t errcap)
{
    char indexp[PATH_MAX], crlp[PATH_MAX];
    char *crl = NULL, *indextext = NULL;
    size_t crllen = 0, indexlen = 0;
    pki__staged st[2];
    long number = ix->crl_number + 1;
    int rc;

    pki__staged_init(&st[0]);
    pki__staged_init(&st[1]);
    if ((rc = pki__path(indexp, sizeof(indexp), ca->dir, PKI_INDEX_FILE, err, errcap)) != 0 ||
        (rc = pki__path(crlp, sizeof(crlp), ca->dir, PKI_CRL_FILE, err, errcap)) != 0)
        return rc;
    ix->crl_number = number;
    if ((rc = pki__crl_build(ca, ix, number, days, &crl, &crllen, err, errcap)) != 0 ||
        (rc = pki__index_dump(ix, &indextext, &indexlen, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__stage(&st[0], indexp, indextext, indexlen, 0644, 0, err, errcap)) != 0 ||
        (rc = pki__stage(&st[1], crlp, crl, crllen, 0644, 0, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__commit(&st[0], err, errcap)) != 0)
        goto exit;
    if ((rc = pki__commit(&st[1], err, errcap)) != 0) {
        size_t used = err ? strlen(err) : 0;
        if (err && used < errcap)
            snprintf(err + used, errcap - used,
                     "; the index is updated: run 'sitesync-pki crl --dir %s' to publish", ca->dir);
        goto exit;
    }
exit:
    pki__unstage(&st[0], 0);
    pki__unstage(&st[1], 0);
    OPENSSL_free(crl);
    free(indextext);
    return rc;
}

static int crl_days(int days, int *out, char *err, size_t errcap)
{
    *out = days ? days : PKI_CRL_DAYS_DEFAULT;
    if (*out < 1 || *out > PKI_CRL_DAYS_MAX)
        return pki__fail(err, errcap, SS_ERANGE, "CRL --days must be between 1 and %d",
                         PKI_CRL_DAYS_MAX);
    return 0;
}

int pki_revoke(const pki_revoke_opts *o, char *err, size_t errcap)
{
    char serial[PKI_SERIAL_HEX_MAX + 1];
    pki__ca ca;
    pki__index ix;
    int64_t now = pki__now();
    int rc, days, count = 0;

    pki__ca_init(&ca);
    pki__index_init(&ix);
    if (!o || !o->dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    if (!o->serial == !o->node)
        return pki__fail(err, errcap, SS_EINVAL, "give exactly one of --serial HEX or --node ID");
    if (o->serial && pki__serial_normalize(o->serial, serial, sizeof(serial)) != 0)
        return pki__fail(err, errcap, SS_EINVAL, "bad --serial: hexadecimal digits expected");
    if (o->node && ss_id_check_str(o->node) != 0)
        return pki__fail(err, errcap, SS_EID,
                         "bad node id: 1 to 64 characters of a-z 0-9 . _ -, starting with a-z "
                         "or 0-9");
    if (pki_reason_parse(pki_reason_name(o->reason)) != o->reason)
        return pki__fail(err, errcap, SS_EINVAL, "unknown revocation reason %d", o->reason);
    if ((rc = crl_days(o->crl_days, &days, err, errcap)) != 0)
        return rc;
    if ((rc = pki__ca_open(&ca, o->dir, 1, o->passphrase_file, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__index_load(o->dir, &ix, err, errcap)) != 0)
        goto exit;
    for (int i = 0; i < ix.n; i++) {
        pki__entry *e = &ix.e[i];
        if (o->serial) {
            if (strcmp(e->serial, serial) != 0)
                continue;
            if (e->revoked) {
                rc = pki__fail(err, errcap, SS_EEXIST,
                               "certificate %s (node %s) is already revoked", serial, e->node);
                goto exit;
            }
        } else if (strcmp(e->node, o->node) != 0 || e->revoked || e->not_after < now) {
            /* By node: every certificate of it that still works. */
            continue;
        }
        e->revoked = 1;
        e->revoked_at = now;
        e->reason = o->reason;
        count++;
    }
    if (count == 0) {
        if (o->serial)
            rc = pki__fail(err, errcap, SS_ENOENT,
                           "no certificate with serial %s in %s/%s (see 'sitesync-pki list')",
                           serial, o->dir, PKI_INDEX_FILE);
        else
            rc = pki__fail(err, errcap, SS_ENOENT,
                           "node %s has no valid certificate to revoke (see 'sitesync-pki list')",
                           o->node);
        goto exit;
    }
    if ((rc = publish(&ca, &ix, days, err, errcap)) != 0)
        goto exit;
    rc = count;
exit:
    pki__index_free(&ix);
    pki__ca_close(&ca);
    return rc;
}

int pki_crl(const pki_crl_opts *o, char *err, size_t errcap)
{
    pki__ca ca;
    pki__index ix;
    int rc, days;

    pki__ca_init(&ca);
    pki__index_init(&ix);
    if (!o || !o->dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    if ((rc = crl_days(o->days, &days, err, errcap)) != 0)
        return rc;
    if ((rc = pki__ca_open(&ca, o->dir, 1, o->passphrase_file, err, errcap)) != 0)
        goto exit;
    if ((rc = pki__index_load(o->dir, &ix, err, errcap)) != 0)
        goto exit;
    rc = publish(&ca, &ix, days, err, errcap);
exit:
    pki__index_free(&ix);
    pki__ca_close(&ca);
    return rc;
}
