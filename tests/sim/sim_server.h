/* sim_server.h - the daemon of the deterministic simulation: the REAL merge
 * (sd_store_apply on a SQLite file) behind a small in-process protocol loop
 * over the simulated network, stepped from the sim's idle hook, with its own
 * nemesis (duplicated and replayed BATCH frames, connections served in a
 * seeded order, crashes before a commit) and one planted bug that lives here
 * only (acknowledging before the commit).
 *
 * What the real sitesyncd does and this loop copies: one transaction per step
 * for every envelope received (group commit), and no reply that reveals a
 * sequence (WELCOME, ACK, ERROR gap) before that transaction is committed.
 * What it does not: TLS. The peer's identity is looked up by the node named
 * in HELLO in a table the test fills (standing in for the verified
 * certificate); the transport table of the gateway makes that possible. */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "fws/fws.h"
#include "proto/frame.h"
#include "proto/ident.h"
#include "proto/msg.h"
#include "sd/store.h"
#include "sim_rng.h"

#define SIM_MAX_CONNS  8
#define SIM_MAX_PEERS  8
#define SIM_REPLAY_MAX 16
#define SIM_CONN_REJ   64

typedef struct sim_conn {
    fws_sock *sock;
    ss_fdec dec;
    int peer; /* index in peers, -1 before HELLO */
    int welcome_owed, ack_owed, close_after_flush;
    uint8_t *out; /* bytes to send (replies already released) */
    size_t out_len, out_cap;
    uint8_t *staged; /* replies held until the step's commit (ERROR frames) */
    size_t staged_len, staged_cap;
    ss_reject rej[SIM_CONN_REJ]; /* refusals owed in the next ACK */
    int nrej;
} sim_conn;

typedef struct sim_replay {
    uint8_t *bytes;
    size_t len;
    int peer;
} sim_replay;

/* Nemesis knobs, each a probability in 1/1000. */
typedef struct sim_server_faults {
    unsigned dup_batch;       /* apply a BATCH twice (the network duplicated it) */
    unsigned replay_old;      /* per step: re-deliver an older BATCH of some peer */
    unsigned crash_at_commit; /* per step with a transaction: crash instead of committing */
    unsigned stall_conn;      /* per connection and step: do not read it this step */
} sim_server_faults;

typedef struct sim_server_stats {
    uint64_t steps, envelopes, commits, crashes, restarts, dups, replays, gaps, errors;
} sim_server_stats;

typedef struct sim_server {
    const fws *shim;
    sim_rng *rng;
    char path[512]; /* database file */
    sd_store *store;
    int in_txn;
    fws_sock *listener;
    uint16_t port;
    uint32_t max_frame, window;
    sim_conn conns[SIM_MAX_CONNS];
    ss_ident peers[SIM_MAX_PEERS];
    int npeers;
    sim_replay replay[SIM_REPLAY_MAX];
    int nreplay, replay_next;
    sim_server_faults faults;
    int plant_ack_before_commit; /* planted bug: release replies, then decide to crash */
    int stepping;                /* re-entry guard */
    sim_server_stats stats;
    uint8_t enc[SIM_CONN_REJ * 512 + 4096]; /* one encoded reply (an ACK with every refusal) */
    char failure[320];                      /* first problem of the server itself ("" none) */
} sim_server;

/* Opens the store at path (created if missing) and listens on port 0 of the
 * world of shim. rng drives the nemesis (may be NULL: no faults). Returns 0
 * or a negative error with s->failure set. */
int sim_server_start(sim_server *s, const fws *shim, sim_rng *rng, const char *path);
/* Registers the identity a HELLO for id->node will be given. */
int sim_server_add_peer(sim_server *s, const ss_ident *id);
/* Accepts, reads, applies and replies without waiting (timeout 0). */
void sim_server_step(sim_server *s);
/* fws_sim idle hook adaptor. */
void sim_server_idle(void *arg);
/* Daemon restart: an open transaction is lost (as in a crash), every
 * connection is dropped, the store is closed and reopened from its file. */
int sim_server_restart(sim_server *s);
/* The durably committed sequence of origin (no transaction is open between
 * steps). Returns 0 or an error. */
int sim_server_committed(sim_server *s, const char *origin, uint64_t *seq);
void sim_server_stop(sim_server *s);

#endif
