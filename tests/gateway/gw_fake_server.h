/* gw_fake_server.h - the daemon side of the sitesync protocol for sim tests,
 * built from proto/ only: plain frames over the simulated network, stepped
 * from the sim's idle hook, with an exactly-once reference state (the bytes
 * of every committed (origin, seq), how often each was applied, duplicates
 * checked byte for byte). */
#ifndef GW_FAKE_SERVER_H
#define GW_FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/x509_crt.h>

#include "fws/fws.h"
#include "proto/frame.h"
#include "proto/msg.h"

#define FAKE_MAX_CONNS 4
#define FAKE_MAX_SEQ   20000

typedef struct fake_conn {
    fws_sock *sock;
    ss_fdec dec;
    int hello;
    char node[65];
    uint8_t out[65536];
    size_t out_len;
    int pending_ack; /* an ACK is owed after this step's input */
    int close_after_flush;
} fake_conn;

typedef struct fake_server {
    const fws *shim;
    fws_sock *listener;
    uint16_t port;
    fake_conn conns[FAKE_MAX_CONNS];
    char origin[65];    /* the one origin the reference state tracks */
    uint64_t committed; /* highest contiguous committed seq */
    char *raw[FAKE_MAX_SEQ + 1];
    size_t rawlen[FAKE_MAX_SEQ + 1];
    int rejected[FAKE_MAX_SEQ + 1];
    uint64_t applied, duplicates, rejects, gaps, tampers, protocol_errors, envelopes;
    uint32_t window, max_frame;
    const char *reject_marker; /* changes containing it are refused (forbidden_site) */
    int64_t clock_ahead_ms;    /* WELCOME time = wall + this */
    ss_reject *rej;            /* refusals owed in the next ACK */
    int nrej;
    char failure[256]; /* first invariant violation seen, "" if none */
    /* Origin signatures: with require_sig, every envelope must be SIGNED by
     * the pinned certificate (fake_server_pin) over its signed region, else
     * ERROR bad_signature and the connection closes (nothing applied). */
    int require_sig;
    mbedtls_x509_crt pinned;
    int pinned_set;
    uint64_t bad_signatures, verified;
    int flip_next_batch; /* flips one body byte of the next BATCH on arrival */
} fake_server;

/* The signature check alone, on envelope bytes: 0, or SS_ESIG / SS_ECERT /
 * the envelope parse error. */
int fake_server_verify(fake_server *s, const uint8_t *env, size_t len);

/* Pins the origin's certificate (PEM) for signature checks and turns them
 * on. Returns 0 or -1. */
int fake_server_pin(fake_server *s, const char *cert_pem);

/* Makes an ECDSA P-256 key and a self-signed certificate for node (PEM,
 * NUL-terminated) with mbed TLS, entropy from the shim. Returns 0 or -1. */
int fake_make_cert(const fws *shim, const char *node, char *key_pem, size_t key_cap, char *cert_pem,
                   size_t cert_cap);

/* Listens on the sim network (port 0: pick). Returns 0 or a shim error. */
int fake_server_start(fake_server *s, const fws *shim, const char *origin);
/* Runs every pending accept/read/write without waiting (timeout 0). */
void fake_server_step(fake_server *s);
/* Closes connections (not the reference state). */
void fake_server_drop_conns(fake_server *s);
void fake_server_stop(fake_server *s);
/* Idle hook adaptor for fws_sim_set_idle_hook. */
void fake_server_idle(void *arg);

/* How many committed, not refused changes contain `needle` (a unique
 * marker): the count in the merged state. */
int fake_server_count(const fake_server *s, const char *needle);

#endif
