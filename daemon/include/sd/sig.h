/* sig.h - origin-signature verification for sitesyncd: the origin certificate
 * an envelope carries is checked against the daemon's trust store (chain to
 * the CA, CRL, validity at receive time, role gateway, node id == envelope
 * origin), then the ECDSA P-256 signature over SHA-256 of the signed region.
 * Certificate verdicts are cached by the SHA-256 of the certificate DER.
 *
 * Threads: sd_sig_verify runs on the writer's prepare threads (and on the
 * writer thread) while SIGHUP swaps the trust store on the loop thread
 * (sd_sig_set_store). Both may be called from
 * any thread at any time; a store swap clears the cache, so a certificate
 * revoked by the new CRL is refused from the next envelope on. */
#ifndef SD_SIG_H
#define SD_SIG_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509_vfy.h>

#include "proto/envelope.h"
#include "proto/ident.h"

typedef struct sd_sig sd_sig; /* opaque */

/* Default number of certificate verdicts kept (one per live origin). Each
 * verified entry holds a copy of the origin's identity (about 4 KiB). */
#define SD_SIG_CACHE_DEFAULT 4096

/* A verifier with room for cache_entries certificate verdicts (0: no cache,
 * every envelope verifies its certificate chain). It has no trust store
 * until sd_sig_set_store: until then every signed envelope is refused with
 * SS_ECERT. Returns 0 with *out, or SS_ENOMEM / SS_EINTERNAL. */
int sd_sig_new(size_t cache_entries, sd_sig **out);
/* Accepts NULL. No other call may be running. */
void sd_sig_destroy(sd_sig *s);

/* Verifies against store from now on (takes its own reference; the caller
 * keeps its own) and forgets every cached verdict. The store must have the
 * CRL loaded and X509_V_FLAG_CRL_CHECK set, as sd_tls_ctx_new makes it.
 * Returns 0, or SS_EINVAL for a NULL store. */
int sd_sig_set_store(sd_sig *s, X509_STORE *store);

/* Forgets every cached verdict (also done by sd_sig_set_store). */
void sd_sig_clear_cache(sd_sig *s);

/* A number that changes with every sd_sig_set_store and
 * sd_sig_clear_cache: a verdict obtained while it read g is still what
 * sd_sig_verify would answer as long as it still reads g (up to time:
 * validity is checked at the receive time passed in). Lets a verdict be made
 * ahead of use on another thread and made again after a reload. Thread-safe. */
uint64_t sd_sig_generation(sd_sig *s);

/* What verification found out. */
typedef struct sd_sig_result {
    ss_ident origin;      /* identity of the origin certificate (when 0) */
    char fingerprint[65]; /* SHA-256 of the origin certificate DER, hex ("" if unparsed) */
    int cached;           /* the certificate verdict came from the cache */
    char reason[200];     /* why it was refused, for the audit detail and the ERROR */
} sd_sig_result;

/* Verifies env (parsed with ss_envelope_parse) at receive time now_ms.
 * Returns 0 (res->origin is the origin's certificate identity), or:
 *   SS_ESIG     not signed, a malformed signature block, or a signature that
 *               does not verify over env->signed_bytes with the certificate's key;
 *   SS_ECERT    the certificate does not parse, does not chain to the CA, is
 *               expired or not yet valid at now_ms, is not for clientAuth, has
 *               no valid sitesync identity, is not a gateway's, or names
 *               another node than env->origin; or no trust store is set;
 *   SS_EREVOKED the certificate is on the CRL;
 *   SS_ENOMEM / SS_EINTERNAL (our failure, not the peer's).
 * res->reason says which. Thread-safe. */
int sd_sig_verify(sd_sig *s, const ss_envelope *env, int64_t now_ms, sd_sig_result *res);

/* Counters, for logs, tests and the bench. */
typedef struct sd_sig_stats {
    uint64_t verified;     /* envelopes whose signature verified */
    uint64_t refused;      /* envelopes refused */
    uint64_t cache_hits;   /* certificate verdicts taken from the cache */
    uint64_t chain_checks; /* X509_verify_cert runs */
    uint64_t reloads;      /* sd_sig_set_store calls */
    size_t entries;        /* verdicts cached now */
} sd_sig_stats;
void sd_sig_get_stats(sd_sig *s, sd_sig_stats *out);

/* The first CRL held by store, DER-encoded (malloc'd into *der), for the CRL
 * frames sent to relays. Returns 0, SS_ENOENT (no CRL) or SS_ENOMEM. */
int sd_sig_store_crl_der(X509_STORE *store, uint8_t **der, size_t *len);

#endif
