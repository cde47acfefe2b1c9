/* gw_sign.c - ECDSA P-256 origin signatures over envelopes with mbed TLS:
 * SHA-256 of the signed region (header with the SIGNED flag, and the body),
 * the DER signature and the certificate in the trailer of proto/relay.h. */
#include "gw/sign.h"

#include <string.h>

#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/sha256.h>

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"

static const char pers[] = "sitesync-gw-sign";

static void log_mbed(const fws *shim, const char *what, int rc)
{
    char msg[160];
    mbedtls_strerror(rc, msg, sizeof(msg));
    fws_log(shim, FWS_LOG_ERROR, "event=sign_error op=%s mbedtls=-0x%04x reason=\"%s\"", what,
            (unsigned)-rc, msg);
}

static int shim_entropy(void *arg, unsigned char *out, size_t len)
{
    return fws_entropy(arg, out, len) == 0 ? 0 : MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
}

void gw_signer_init(gw_signer *s)
{
    memset(s, 0, sizeof(*s));
    mbedtls_pk_init(&s->key);
    mbedtls_ctr_drbg_init(&s->drbg);
}

int gw_signer_setup(gw_signer *s, const fws *shim, const char *cert_pem, const char *key_pem)
{
    mbedtls_x509_crt crt;
    int rc, ret = SS_ECERT;
    s->shim = shim;
    mbedtls_x509_crt_init(&crt);
    if (!cert_pem || !key_pem)
        goto cleanup;
    rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)cert_pem, strlen(cert_pem) + 1);
    if (rc != 0) {
        log_mbed(shim, "parse_cert", rc);
        goto cleanup;
    }
    rc =
        mbedtls_pk_parse_key(&s->key, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL, 0);
    if (rc != 0) {
        log_mbed(shim, "parse_key", rc);
        goto cleanup;
    }
    if (!mbedtls_pk_can_do(&s->key, MBEDTLS_PK_ECDSA) ||
        mbedtls_pk_ec(s->key)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
        fws_log(shim, FWS_LOG_ERROR, "event=sign_error op=key reason=\"not an ECDSA P-256 key\"");
        goto cleanup;
    }
    rc = mbedtls_pk_check_pair(&crt.pk, &s->key);
    if (rc != 0) {
        log_mbed(shim, "key_matches_cert", rc);
        goto cleanup;
    }
    if (crt.raw.len < 1 || crt.raw.len > SS_SIG_CERT_MAX) {
        fws_log(shim, FWS_LOG_ERROR, "event=sign_error op=cert reason=\"certificate of %zu bytes\"",
                crt.raw.len);
        goto cleanup;
    }
    s->cert_der = ss_malloc(crt.raw.len);
    if (!s->cert_der) {
        ret = SS_ENOMEM;
        goto cleanup;
    }
    memcpy(s->cert_der, crt.raw.p, crt.raw.len);
    s->cert_len = crt.raw.len;
    rc = mbedtls_ctr_drbg_seed(&s->drbg, shim_entropy, (void *)shim, (const unsigned char *)pers,
                               sizeof(pers) - 1);
    if (rc != 0) {
        log_mbed(shim, "drbg_seed", rc);
        ret = SS_EIO;
        goto cleanup;
    }
    s->setup_done = 1;
    ret = 0;
cleanup:
    mbedtls_x509_crt_free(&crt);
    return ret;
}

void gw_signer_free(gw_signer *s)
{
    if (!s)
        return;
    mbedtls_pk_free(&s->key); /* wipes the private key */
    mbedtls_ctr_drbg_free(&s->drbg);
    ss_free(s->cert_der);
    s->cert_der = NULL;
    s->cert_len = 0;
    s->setup_done = 0;
}

size_t gw_sign_reserve(const gw_signer *s)
{
    return ss_sig_trailer_len(s->cert_len, SS_SIG_DER_MAX);
}

int gw_sign_hash(gw_signer *s, const uint8_t hash[32], uint8_t *sig, size_t cap)
{
    size_t sig_len = 0;
    if (!s || !s->setup_done || !hash || !sig)
        return SS_EINVAL;
    if (cap < MBEDTLS_PK_SIGNATURE_MAX_SIZE)
        return SS_ENOSPC;
    /* Deterministic ECDSA (RFC 6979 in Debian's mbed TLS build): the same
     * region always gets the same signature, the DRBG only blinds. */
    int rc = mbedtls_pk_sign(&s->key, MBEDTLS_MD_SHA256, hash, 32, sig, &sig_len,
                             mbedtls_ctr_drbg_random, &s->drbg);
    if (rc != 0) {
        log_mbed(s->shim, "sign", rc);
        return SS_EIO;
    }
    if (sig_len < 8 || sig_len > SS_SIG_DER_MAX)
        return SS_ESIG;
    s->signatures++;
    return (int)sig_len;
}

int gw_sign_envelope(gw_signer *s, uint8_t *env, size_t signed_len, size_t cap)
{
    uint8_t hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    if (!s || !s->setup_done || !env || signed_len < SS_ENV_FIXED_LEN + 1 ||
        env[0] != SS_ENV_VERSION || (env[1] & ~SS_ENV_FLAGS_MASK) != 0)
        return SS_EPROTO;
    if (cap < gw_sign_reserve(s))
        return SS_ENOSPC;
    /* The flag is inside the signed region: set it before hashing, so that
     * nobody can strip the signature and pass the envelope as unsigned. */
    env[1] |= SS_ENV_FLAG_SIGNED;
    int rc = mbedtls_sha256_ret(env, signed_len, hash, 0);
    if (rc != 0) {
        env[1] &= (uint8_t)~SS_ENV_FLAG_SIGNED;
        log_mbed(s->shim, "sha256", rc);
        return SS_EIO;
    }
    rc = gw_sign_hash(s, hash, sig, sizeof(sig));
    if (rc < 0) {
        env[1] &= (uint8_t)~SS_ENV_FLAG_SIGNED;
        return rc;
    }
    rc = ss_sig_write_trailer(env + signed_len, cap, s->cert_der, s->cert_len, sig, (size_t)rc);
    if (rc < 0) {
        env[1] &= (uint8_t)~SS_ENV_FLAG_SIGNED;
        return rc;
    }
    return rc;
}
