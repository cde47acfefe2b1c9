/* sd_net.h - private to sd_server.c and sd_conn.c: the server and session
 * structs and the calls between the two files. */
#ifndef SD_NET_H
#define SD_NET_H

#include <stdint.h>

#include <uv.h>

#include "proto/frame.h"
#include "proto/hlc.h"
#include "proto/msg.h"
#include "sd/config.h"
#include "sd/log.h"
#include "sd/server.h"
#include "sd/store.h"
#include "sd/tls.h"
#include "sd/writer.h"

#define SD_READ_BUF  65536
#define SD_PLAIN_BUF 16384
/* How long a closing session may take to flush its last frames. */
#define SD_LINGER_MS 2000

typedef struct sd_conn sd_conn;

struct sd_server {
    uv_loop_t *loop;
    const sd_config *cfg;
    const sd_log *log;
    sd_writer *writer;
    sd_store *ro; /* read-only handle: committed sequences for WELCOME */
    SSL_CTX *ctx; /* new sessions use the current one; SSL objects hold refs */
    char node[SS_ID_MAX + 1];
    ss_hlc clock;
    int port;

    uv_tcp_t listener;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_check_t flush;       /* sends coalesced ACKs after writer callbacks */
    uv_timer_t drain_timer; /* cuts sessions still busy at the drain deadline */
    int handles_open;       /* server's own handles not yet closed */
    int started;
    int draining;
    int writer_stopping;
    int closed_handles;

    sd_conn *conns; /* all live sessions, doubly linked */
    size_t nconns;
    sd_conn *dirty; /* sessions with ACKs to send or work to resume */
    uint64_t next_id;

    void (*done)(void *arg);
    void *done_arg;
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
/* Shutdown: start draining (or cut a session not yet streaming). */
void sd__conn_drain(sd_conn *c, const char *reason);
/* Hard close, for the drain deadline. */
void sd__conn_abort(sd_conn *c, const char *reason);
/* Re-verifies the peer against the current context after a reload. */
void sd__conn_recheck(sd_conn *c);
/* Check-phase work for a dirty session: ACKs out, reading resumed, drain. */
void sd__conn_flush(sd_conn *c);
/* Called by sd_conn.c when a session object is freed. */
void sd__server_conn_gone(sd_server *s);

sd_conn *sd__conn_next(const sd_conn *c);
sd_conn *sd__conn_dirty_next(const sd_conn *c);

/* Wall clock in ms since the Unix epoch (receive times, HLC). */
int64_t sd__now_ms(void);

#endif
