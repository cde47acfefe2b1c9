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
 * Two listeners: plain frames for gateways that connect directly (the
 * peer's identity is looked up by the node named in HELLO in a table the
 * test fills, standing in for the verified certificate; the gateway's
 * transport table makes the plain session possible), and mbed TLS for the
 * hub, whose identity comes from its certificate and whose ROUTED batches
 * are audited with their path. */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "fws/fws.h"
#include "gw/tls.h"
#include "proto/frame.h"
#include "proto/ident.h"
#include "proto/msg.h"
#include "sd/sig.h"
#include "sd/store.h"
#include "sim_rng.h"

#define SIM_MAX_CONNS   8
#define SIM_MAX_PEERS   8
#define SIM_REPLAY_MAX  16
#define SIM_CONN_REJ    64
#define SIM_CONN_ORIGIN 16 /* origins one connection (a hub) speaks for */
#define SIM_DAEMON_NODE "sim-daemon"

typedef struct sim_conn {
    fws_sock *sock; /* non-NULL: slot in use (for TLS, owned by nb) */
    int tls, hs_done;
    gw_nbconn nb;
    ss_fdec dec;
    int hello; /* HELLO accepted: p is the peer */
    sd_peer p; /* who this is (peer table, or the TLS certificate) */
    int welcome_owed, close_after_flush;
    char wel[SIM_CONN_ORIGIN][SS_ID_MAX + 1]; /* origins the WELCOME reports */
    int nwel;
    char touched[SIM_CONN_ORIGIN][SS_ID_MAX + 1]; /* origins the next ACK reports */
    int ntouched;
    uint8_t *out; /* bytes to send (replies already released) */
    size_t out_len, out_cap;
    uint8_t *staged; /* replies held until the step's commit (ERROR frames) */
    size_t staged_len, staged_cap;
    ss_reject rej[SIM_CONN_REJ]; /* refusals owed in the next ACK */
    int nrej;
} sim_conn;

typedef struct sim_replay {
    uint8_t *bytes; /* the envelope (route prefix removed) */
    size_t len;
    sd_peer p;
} sim_replay;

/* Nemesis knobs, each a probability in 1/1000. */
typedef struct sim_server_faults {
    unsigned dup_batch;       /* apply a BATCH twice (the network duplicated it) */
    unsigned replay_old;      /* per step: re-deliver an older BATCH of some peer */
    unsigned crash_at_commit; /* per step with a transaction: crash instead of committing */
    unsigned stall_conn;      /* per connection and step: do not read it this step */
} sim_server_faults;

typedef struct sim_server_stats {
    uint64_t steps, envelopes, routed, commits, crashes, restarts, dups, replays, gaps, errors;
} sim_server_stats;

typedef struct sim_server {
    const fws *shim;
    sim_rng *rng;
    char path[512]; /* database file */
    sd_store *store;
    int in_txn;
    fws_sock *listener; /* plain frames: gateways connected directly */
    uint16_t port;
    fws_sock *tls_listener; /* mbed TLS: hubs (peer identity from the certificate) */
    uint16_t tls_port;
    int tls_ready;
    int tls_blocked; /* partition: TLS connections reset, new ones refused */
    sd_sig *sig;     /* origin signatures verified and required (hub mode) */
    mbedtls_ssl_config conf;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
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
/* Also listens for mbed TLS on another port (s->tls_port), with the daemon's
 * certificate and key and the CA its peers must chain to: the hub's
 * upstream. A peer's identity is then its certificate's. Returns 0 or an
 * error with s->failure. */
int sim_server_listen_tls(sim_server *s, const char *ca_pem, const char *cert_pem,
                          const char *key_pem);
/* Verifies origin signatures from now on (and after every restart) against
 * the CA and CRL, and refuses unsigned envelopes. Returns 0 or an error. */
int sim_server_require_signatures(sim_server *s, const char *ca_pem, const char *crl_pem);
/* Partitions (1) or heals (0) the TLS side: live TLS connections are
 * dropped, new ones closed at accept. */
void sim_server_block_tls(sim_server *s, int blocked);
/* Registers the identity a HELLO for id->node will be given (plain port). */
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
