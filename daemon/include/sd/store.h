/* store.h - the daemon's SQLite store: per-field last-writer-wins merge,
 * per-origin committed sequences, the hash-chained audit log, the loser
 * ledger, peers and sync sessions. Synchronous and single-threaded: the
 * writer thread (writer.h) owns the read-write handle; sitesync-admin and
 * WELCOME lookups use read-only handles (WAL lets them run beside it). */
#ifndef SD_STORE_H
#define SD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.h"
#include "proto/ident.h"
#include "proto/msg.h"

typedef struct sd_store sd_store; /* opaque */

typedef struct sd_store_config {
    const char *path;          /* database file */
    int readonly;              /* 1: open read-only (admin, WELCOME lookups) */
    int64_t skew_tolerance_ms; /* changes stamped further ahead are refused (default 300000) */
    int busy_timeout_ms;       /* default 5000 */
} sd_store_config;

/* Opens (creating and migrating the schema when read-write): WAL mode,
 * synchronous=FULL, foreign keys on. Returns 0 with *out, or SS_EDB / SS_EIO
 * with a message in errbuf. */
int sd_store_open(const sd_store_config *cfg, sd_store **out, char *errbuf, size_t errcap);
void sd_store_close(sd_store *s);
/* The last error seen on this handle, with SQLite's own code and message
 * (for logs at the module boundary); never NULL. */
const char *sd_store_last_error(const sd_store *s);
/* The underlying SQLite handle, for tests and diagnostics (commit hooks for
 * fault injection, read-only inspection). Never write through it. */
struct sqlite3 *sd_store_handle(sd_store *s);

/* Who delivered an envelope, from the verified certificate. */
typedef struct sd_peer {
    ss_ident ident;       /* node, role, sites of the delivering peer */
    char fingerprint[65]; /* SHA-256 of the certificate DER, hex */
    char serial[41];      /* certificate serial, hex */
    char addr[64];        /* "ip:port" */
    char path[640];       /* "direct", or "via <relay>[,<relay>...]" (up to
                           * SS_ROUTE_MAX_HOPS claimed hops and the deliverer) */
    int64_t session_id;   /* from sd_store_session_begin, 0 if none */
} sd_peer;

/* Counts for one envelope (or a session). */
typedef struct sd_counts {
    uint64_t received, applied, superseded, duplicate, rejected;
} sd_counts;

/* Result of applying one envelope. */
typedef struct sd_result {
    int code; /* 0: accepted (maybe with per-change rejects); else
               * SS_EGAP, SS_ETAMPER, SS_EFORBIDDEN, SS_EPROTO, ...
               * meaning nothing of the envelope was applied */
    char message[160];
    uint64_t committed; /* origin's committed seq after this envelope */
    uint64_t resume;    /* with SS_EGAP: the next seq the daemon expects */
    sd_counts counts;
    int nrejects;       /* per-change refusals (sequence still advanced) */
    ss_reject *rejects; /* ss_malloc'd; free with sd_result_free */
} sd_result;
void sd_result_free(sd_result *r);

/* Transactions: the writer groups many envelopes into one. */
int sd_store_begin(sd_store *s);
int sd_store_commit(sd_store *s); /* durable when it returns 0 */
int sd_store_rollback(sd_store *s);

struct sd_sig;
/* Origin signatures (sd/sig.h) for every later sd_store_apply on this
 * handle; sig must outlive the store. Without it (the default) signatures
 * are not checked and each change is authorized by the delivering peer's
 * certificate. With it, a SIGNED envelope is verified and its changes are
 * authorized by the ORIGIN certificate's sites, whoever delivered it; with
 * require_signatures, an unsigned envelope is refused (SS_ESIG). Call before
 * the store is handed to the writer thread. */
void sd_store_set_sig(sd_store *s, struct sd_sig *sig, int require_signatures);

/* Applies one envelope inside the open transaction (a savepoint of its own,
 * so a refused envelope leaves the transaction as it was). Checks, in order:
 * envelope structure; with a verifier set (sd_store_set_sig), the origin
 * signature of a SIGNED envelope before its body is parsed (SS_ESIG,
 * SS_ECERT, SS_EREVOKED: every change audited as rejected:<code> when the
 * body parses, else one entry; nothing applied; no sequence consumed);
 * body structure (the proto code, audited, nothing applied);
 * the peer's right to send it at all (role gateway: the origin must be its
 * own node, else SS_EAUTH; role relay: any origin; other roles: SS_EROLE;
 * every change audited, nothing applied, no sequence consumed); an unsigned
 * envelope when signatures are required (SS_ESIG, as above); the sequence
 * (gap: SS_EGAP with resume; the part at or below the committed sequence is
 * compared byte for byte with what was committed: equal -> re-acknowledged,
 * audited as duplicate, not re-applied; different -> SS_ETAMPER, nothing of
 * the envelope applied). Then per new change: the site against the origin
 * certificate of a verified envelope, else the peer's certificate (and
 * against the site that owns an existing record), clock
 * skew, schema; a refused change is listed in out->rejects, audited, and its
 * sequence number consumed. Valid changes merge per field by (hlc, origin),
 * losers go to the ledger, every change gets one audit entry, and the
 * origin's committed sequence advances in the same transaction. now_ms is
 * the receive time.
 * Returns out->code (0 or the envelope-level refusal above; SS_EDB /
 * SS_ENOMEM when the store failed, the envelope's savepoint rolled back).
 * Called outside sd_store_begin, it runs in a transaction of its own. */
int sd_store_apply(sd_store *s, const sd_peer *peer, const uint8_t *env_bytes, size_t env_len,
                   int64_t now_ms, sd_result *out);

/* ---- Two stages: prepare (no database, any thread), then apply ----
 *
 * Everything sd_store_apply does before it needs the database (the
 * envelope's structure, its origin signature, the body parse with the
 * schema check of every change, the SHA-256 of every change's bytes) can
 * run ahead on other threads, so the one thread that owns the read-write
 * handle does only the database work. The outcome is the same as
 * sd_store_apply's on the same bytes: a prepared envelope records every
 * verdict and sd_store_apply_prepared acts on them in the same order. */
typedef struct sd_prepared sd_prepared; /* opaque */
typedef struct sd_preparer sd_preparer; /* one per preparing thread */

/* A preparer verifying with sig (NULL: signatures not checked; it must be
 * the verifier the store was given with sd_store_set_sig, else apply
 * verifies again). Returns 0 with *out, or SS_ENOMEM / SS_EINTERNAL. */
int sd_preparer_new(struct sd_sig *sig, sd_preparer **out);
/* Accepts NULL. */
void sd_preparer_destroy(sd_preparer *pp);
/* Prepares env_bytes (which must stay unchanged until the prepared
 * envelope is freed) received at now_ms. Refusals of the peer's making are
 * recorded in *out, not returned: returns 0 with *out, or SS_ENOMEM /
 * SS_EINVAL with *out NULL. Thread-safe across preparers; one preparer is
 * used by one thread at a time. */
int sd_prepare(sd_preparer *pp, const uint8_t *env_bytes, size_t env_len, int64_t now_ms,
               sd_prepared **out);
/* Accepts NULL. Any thread. */
void sd_prepared_free(sd_prepared *p);

/* sd_store_apply with the work of sd_prepare already done: prep must come
 * from sd_prepare on the same env_bytes, env_len and now_ms (else SS_EINVAL),
 * or be NULL (prepared here, on the calling thread). A signature verdict
 * made before the verifier's trust store was swapped (SIGHUP) is made again
 * here. prep stays the caller's. */
int sd_store_apply_prepared(sd_store *s, const sd_peer *peer, const uint8_t *env_bytes,
                            size_t env_len, int64_t now_ms, sd_prepared *prep, sd_result *out);

/* Highest committed sequence of an origin (0 if none). */
int sd_store_committed(sd_store *s, const char *origin, uint64_t *seq);

/* Sync sessions and peers. */
int sd_store_session_begin(sd_store *s, const sd_peer *peer, int64_t now_ms, int64_t *session_id);
int sd_store_session_end(sd_store *s, int64_t session_id, int64_t now_ms, const sd_counts *c,
                         uint64_t bytes_in, uint64_t bytes_out, const char *error);
/* Audits an event that is not a change (refused handshake identity,
 * protocol error, tampering seen at envelope level). */
int sd_store_audit_event(sd_store *s, const sd_peer *peer, int64_t now_ms, const char *origin,
                         uint64_t seq, const char *outcome, const char *detail);

#endif
