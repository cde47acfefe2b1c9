/* sd_net.h - private to sd_server.c and sd_conn.c: the server and session
 * structs and the calls between the two files. */
#ifndef SD_NET_H
#define SD_NET_H

#include <stdint.h>

#include <uv.h>

#include "proto/frame.h"
#include "proto/hlc.h"
#include "proto/msg.h"
#include "proto/penalty.h"
#include "sd/config.h"
#include "sd/log.h"
#include "sd/server.h"
#include "sd/store.h"
#include "sd/tls.h"
#include "sd/writer.h"

#define SD_READ_BUF  65536
#define SD_PLAIN_BUF 16384
/* Completed connections the kernel queues for accept (capped by
 * net.core.somaxconn). Large, so that a burst of connects (a flood, or every
 * gateway of a region reconnecting after an outage) is absorbed while the
 * loop is busy instead of dropping SYNs, which costs an honest client a
 * one-second retransmission. */
#define SD_LISTEN_BACKLOG 4096
/* How long a closing session may take to flush its last frames. */
#define SD_LINGER_MS 2000

typedef struct sd_conn sd_conn;

/* ---- per-address penalty for failed handshakes (sd_penalty.c) ---------- */

/* The table is proto's ss_penalty (proto/penalty.h); these wrap it with the
 * daemon's sockaddr keys and configuration. */
#define SD_PENALTY_SLOTS 4096 /* power of two: fixed memory, whatever the attack */

/* A source address: IPv4, or an IPv6 /64 (see ss_penalty_key). */
typedef ss_penalty_key sd_addr_key;

typedef struct sd_penalty {
    ss_penalty *t;      /* in mem: the struct must not move after init */
    uint64_t penalised; /* penalties started, for logs (other totals: ss_penalty_get_stats) */
    uint64_t mem[SS_PENALTY_WORDS(SD_PENALTY_SLOTS)];
} sd_penalty;

/* Cannot fail. seed should be unpredictable from outside. limit 0: off. */
void sd__penalty_init(sd_penalty *p, uint64_t limit, uint64_t window_ms, uint64_t penalty_ms,
                      uint64_t seed);
/* Key of a peer address. Returns 0, or SS_EINVAL for a family other than
 * IPv4/IPv6 (such peers are never penalised). */
int sd__penalty_key(const struct sockaddr *sa, sd_addr_key *k);
/* Records a failed handshake at loop time now; *fails gets the count in the
 * window. Returns 1 if this failure starts a penalty, else 0. */
int sd__penalty_fail(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint64_t *fails);
/* At accept: the penalty's remaining ms if the address is penalised (the
 * refusal is counted; *nrefused gets the count for this penalty), else 0. */
uint64_t sd__penalty_check(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint32_t *nrefused);

struct sd_server {
    uv_loop_t *loop;
    const sd_config *cfg;
    const sd_log *log;
    sd_writer *writer;
    sd_store *ro;       /* read-only handle: committed sequences for WELCOME */
    SSL_CTX *ctx;       /* new sessions use the current one; SSL objects hold refs */
    struct sd_sig *sig; /* origin-signature verifier fed with ctx's trust store */
    uint8_t *crl_der;   /* the CRL in force, DER, for CRL frames to relays */
    size_t crl_der_len;
    char node[SS_ID_MAX + 1];
    ss_hlc clock;
    int port;

    uv_tcp_t listener;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_check_t flush;       /* sends coalesced ACKs after writer callbacks */
    uv_timer_t drain_timer; /* cuts sessions still busy at the drain deadline */
    /* Full, and nothing in the handshake queue has had its grace yet: the
     * next connection waits in the backlog until this fires (see
     * sd__conn_accept_wait). accept_held: a connection is waiting. */
    uv_timer_t accept_timer;
    int accept_held;
    int handles_open; /* server's own handles not yet closed */
    int started;
    int draining;
    int writer_stopping;
    int closed_handles;

    sd_conn *conns; /* all live sessions, doubly linked */
    /* Sessions still in the TLS handshake, oldest first: when
     * max_connections is reached, the oldest of them makes way for a new
     * connection (see sd__conn_accept). */
    sd_conn *hs_head, *hs_tail;
    uint64_t evicted, evicted_logged, evict_warn_ms;
    size_t nconns; /* session objects not yet freed (closing ones too) */
    /* Sessions not closing: what max_connections limits. A closing session
     * has already given its descriptor back (uv_close closes the socket at
     * once) and is only waiting for its callbacks; counting it would let a
     * burst of dead connections (a flood of connect-and-reset drained from
     * the backlog in one turn) refuse honest peers. */
    size_t nlive;
    sd_conn *dirty; /* sessions with ACKs to send or work to resume */
    uint64_t next_id;

    void (*done)(void *arg);
    void *done_arg;
    sd_penalty penalty; /* failed handshakes per source address */
    /* One shared read buffer: libuv calls alloc then read back to back on
     * the loop thread, and each read is consumed before the next alloc. */
    char rbuf[SD_READ_BUF];
};

enum sd_conn_state {
    SD_CONN_HANDSHAKE = 0, /* TLS handshake */
    SD_CONN_HELLO,         /* waiting for HELLO */
    SD_CONN_OPENING,       /* HELLO ok, session row being written */
    SD_CONN_READY,         /* streaming */
    SD_CONN_DRAIN,         /* BYE or shutdown: finish in-flight work, then BYE */
    SD_CONN_CLOSING        /* handles closing; freed when closed and no job left */
};

/* 1 if the session is gone or going. */
int sd__conn_dead(const sd_conn *c);
/* Accepts a pending connection from the listener (or refuses it). */
void sd__conn_accept(sd_server *s);
/* 0 if a pending connection may be accepted now; else how many ms until
 * the oldest connection in the handshake queue has had its grace and may
 * be evicted for it (the server is full and every handshaking connection
 * is younger than that). */
uint64_t sd__conn_accept_wait(sd_server *s);
/* Shutdown: start draining (or cut a session not yet streaming). */
void sd__conn_drain(sd_conn *c, const char *reason);
/* Hard close, for the drain deadline. */
void sd__conn_abort(sd_conn *c, const char *reason);
/* Re-verifies the peer against the current context after a reload. */
void sd__conn_recheck(sd_conn *c);
/* Sends the server's CRL (SS_FRAME_CRL, DER payload) to a streaming relay
 * session; does nothing for other sessions. */
void sd__conn_send_crl(sd_conn *c);
/* Check-phase work for a dirty session: ACKs out, reading resumed, drain. */
void sd__conn_flush(sd_conn *c);
/* Called by sd_conn.c when a session object is freed. */
void sd__server_conn_gone(sd_server *s);

sd_conn *sd__conn_next(const sd_conn *c);
sd_conn *sd__conn_dirty_next(const sd_conn *c);

/* Wall clock in ms since the Unix epoch (receive times, HLC). */
int64_t sd__now_ms(void);

#endif
