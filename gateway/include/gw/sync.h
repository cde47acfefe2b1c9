/* sync.h - the replication client: one session over a connected stream
 * (HELLO/WELCOME, resume from the daemon's committed sequence, pipelined
 * BATCH envelopes within a window, ACKs advancing the journal checkpoint,
 * refused changes recorded locally, gap rewinds, keep-alive), plus the
 * backoff schedule between sessions. Memory is small and fixed: no buffer
 * holds a whole BATCH (envelopes are streamed from the journal through a
 * GW_SYNC_TX_CHUNK output buffer and signed over an incremental SHA-256),
 * the window table is allocated at setup, one session context (input and
 * output buffers) per session, and the frame decoder grows only to the
 * largest frame received (bounded by max_frame; the daemon's frames are
 * small). */
#ifndef GW_SYNC_H
#define GW_SYNC_H

#include <signal.h> /* sig_atomic_t only */
#include <stddef.h>
#include <stdint.h>

#include "gw/node.h"
#include "gw/sign.h"
#include "gw/transport.h"
#include "proto/frame.h"
#include "proto/msg.h"

typedef struct gw_sync_config {
    uint32_t max_frame;            /* largest frame sent or accepted (default 256 KiB) */
    uint32_t window;               /* envelopes in flight, at most (default 8) */
    uint32_t batch_max;            /* changes per envelope, at most (default 512) */
    uint32_t handshake_timeout_ms; /* connect to WELCOME (default 10 s) */
    uint32_t io_timeout_ms;        /* silence while waiting for the daemon (default 30 s) */
    uint32_t ping_interval_ms;     /* PING after this much silence (default 10 s) */
    uint32_t backoff_min_ms;       /* first retry delay (default 1 s) */
    uint32_t backoff_max_ms;       /* cap (default 5 min) */
} gw_sync_config;

void gw_sync_config_default(gw_sync_config *c);

/* What one session did. */
typedef struct gw_sync_result {
    uint64_t envelopes, changes; /* BATCH frames and changes sent */
    uint64_t committed;          /* the daemon's committed seq at WELCOME */
    uint64_t acked;              /* journal checkpoint at the end */
    uint64_t refused;            /* changes the daemon refused this session */
    uint64_t placeholders;       /* lost sequences sent as placeholders */
    uint64_t gaps;               /* gap rewinds */
    uint64_t pings;
    uint64_t renumbered; /* entries renumbered after a storage loss */
    int err;             /* 0 drained, else why the session ended */
    char message[256];   /* operator-facing reason */
} gw_sync_result;

/* Bytes of the output buffer a session sends through: one TLS record per
 * piece of a BATCH. */
#define GW_SYNC_TX_CHUNK 4096u

/* Caller-allocated session context. */
typedef struct gw_sync {
    gw_sync_config cfg;
    ss_fdec dec;
    uint64_t *inflight; /* window pairs (first, last) */
    uint64_t ping_nonce;
    /* Optional: when *stop becomes non-zero (a signal handler sets it), the
     * session sends no new BATCH, waits for the ACKs of those in flight (at
     * most io_timeout_ms), says BYE and returns SS_ESHUTDOWN. */
    const volatile sig_atomic_t *stop;
    /* The origin signer: every envelope is signed with it (the program
     * always sets it; NULL sends unsigned envelopes, for tests of that
     * path only: the daemon refuses them by default). Not owned. */
    gw_signer *signer;
    int setup_done;
} gw_sync;

void gw_sync_init(gw_sync *s);
/* Checks the configuration and allocates the window table. SS_EINVAL /
 * SS_ENOMEM. */
int gw_sync_setup(gw_sync *s, const gw_sync_config *cfg);
void gw_sync_free(gw_sync *s);

/* Runs one session over st until every pending change is acknowledged
 * (returns 0 after BYE) or the link or the daemon ends it (returns the error,
 * with res->message). The stream is not closed here. The outcome is recorded
 * in the journal's checkpoint (last sync / last error). */
int gw_sync_session(gw_sync *s, gw_node *n, gw_stream *st, gw_sync_result *res);

/* Exponential backoff with jitter: the delay before retry number attempt
 * (0-based): uniform in [d/2, d] with d = min(max, min * 2^attempt), the
 * randomness from the shim's entropy. */
uint32_t gw_backoff_ms(const fws *shim, const gw_sync_config *cfg, unsigned attempt);

/* The JSON a lost sequence is sent as: a change the daemon refuses (unknown
 * field "lost") and audits, so the stream moves on. Returns its length or
 * SS_ENOSPC. */
int gw_lost_placeholder(uint64_t seq, char *out, size_t cap);

#endif
