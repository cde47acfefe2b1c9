/* sign.h - origin signatures on the gateway: every envelope the gateway
 * sends is SIGNED with its certificate's key (ECDSA P-256 over SHA-256 of
 * the envelope's signed region, mbed TLS, the DRBG seeded from the shim's
 * entropy only) and carries the certificate in its signature block
 * (proto/relay.h), so the daemon can check it whatever relays it crossed. */
#ifndef GW_SIGN_H
#define GW_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "fws/fws.h"

/* Caller-allocated; init cannot fail, setup can, free wipes the key and is
 * safe twice. */
typedef struct gw_signer {
    const fws *shim;
    mbedtls_pk_context key;
    mbedtls_ctr_drbg_context drbg;
    uint8_t *cert_der; /* the certificate that travels in every envelope */
    size_t cert_len;
    uint64_t signatures; /* envelopes signed */
    int setup_done;
} gw_signer;

void gw_signer_init(gw_signer *s);
/* Parses the certificate and key (PEM, NUL-terminated), checks that they
 * match and that the key is ECDSA P-256, keeps the certificate's DER and
 * seeds the DRBG from the shim. Returns 0 or SS_ECERT (unparsable, wrong
 * algorithm, mismatched, or a certificate over SS_SIG_CERT_MAX bytes),
 * SS_EIO (no entropy), SS_ENOMEM. */
int gw_signer_setup(gw_signer *s, const fws *shim, const char *cert_pem, const char *key_pem);
void gw_signer_free(gw_signer *s);

/* Bytes gw_sign_envelope appends at most (trailer with the longest DER
 * signature). */
size_t gw_sign_reserve(const gw_signer *s);

/* Signs the SHA-256 of a signed region hashed by the caller (the sync
 * client hashes an envelope while it streams it from the journal): the DER
 * signature goes to sig[cap] (cap >= MBEDTLS_PK_SIGNATURE_MAX_SIZE). The
 * signature is deterministic (RFC 6979): the same region signs the same.
 * Returns its length (8..SS_SIG_DER_MAX), or SS_EINVAL, SS_ENOSPC, SS_EIO
 * (mbed TLS failed: logged), SS_ESIG (an unexpected length). */
int gw_sign_hash(gw_signer *s, const uint8_t hash[32], uint8_t *sig, size_t cap);

/* env[0..signed_len) is an envelope's header and body (no trailer yet):
 * sets its SIGNED flag, signs it and writes the trailer at env + signed_len
 * (cap = bytes available there). Returns the trailer length, or SS_ENOSPC,
 * SS_EPROTO (not an envelope header), SS_EIO (mbed TLS failed: logged). */
int gw_sign_envelope(gw_signer *s, uint8_t *env, size_t signed_len, size_t cap);

#endif
