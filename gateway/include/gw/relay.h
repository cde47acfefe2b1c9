/* relay.h - sitesync-gw's relay mode (a regional hub): an mbed TLS server
 * for downstream gateways and lower hubs (non-blocking, one thread, polled
 * through the shim), their certificates checked against the CA and the
 * hub's local CRL copy, envelopes made durable in the hub journal before
 * they are acknowledged, and one upstream session (to the daemon or a higher
 * hub) that forwards them byte for byte, fairly across origins, with the
 * route prefix of docs/relay.md, and reclaims what the upstream committed.
 * CRLs the upstream sends are verified against the CA, adopted if not older,
 * stored atomically and passed further down. */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include <signal.h> /* sig_atomic_t only */
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "fws/fws.h"
#include "gw/hub.h"
#include "gw/tls.h"
#include "proto/frame.h"
#include "proto/hlc.h"

typedef struct gw_relay gw_relay;

/* An envelope about to go upstream (for the forward hook of test relays). */
typedef struct gw_relay_fwd {
    const char *origin;
    uint64_t first, last;
    uint8_t *payload; /* route prefix (if ROUTED) + envelope; may be altered */
    size_t len;
    unsigned flags; /* SS_FRAME_FLAG_ROUTED or 0 */
    size_t env_off; /* where the envelope starts in payload */
} gw_relay_fwd;

#define GW_RELAY_FWD_SEND 0
#define GW_RELAY_FWD_SKIP 1 /* count it as sent, but send nothing */

typedef struct gw_relay_config {
    const char *ca_pem, *cert_pem, *key_pem; /* PEM, NUL-terminated */
    const uint8_t *crl;                      /* the configured CRL (PEM or DER) */
    size_t crl_len;
    const char *listen_host;
    uint16_t listen_port; /* 0: pick one (gw_relay_port) */
    const char *up_host;  /* upstream daemon or hub */
    uint16_t up_port;
    const char *up_name; /* name its certificate must carry */
    uint32_t max_conns, window, max_frame;
    uint32_t handshake_timeout_ms, io_timeout_ms, ping_interval_ms, idle_timeout_ms;
    uint32_t backoff_min_ms, backoff_max_ms;
    int crl_stale_refuse; /* 1: refuse downstream handshakes while the CRL is stale */
    /* Failed downstream TLS handshakes per source address: past limit within
     * window_ms the address is refused at accept for penalty_ms (limit 0:
     * off). See gateway/src/gw_relay_penalty.c. */
    uint32_t bad_handshake_limit, bad_handshake_window_ms, bad_handshake_penalty_ms;
    /* Bytes queued for one downstream peer (ACK, PONG, ERROR) that it has not
     * read: past it the connection is cut (event=output_cap). 0: 64 KiB. */
    uint32_t max_output_bytes;
    gw_hubj_config hub;
    /* Test relays only (tests/relay): called before each envelope goes
     * upstream; may alter the payload in place, inject frames with
     * gw_relay_up_inject, and return GW_RELAY_FWD_SKIP. The program never
     * sets it. */
    int (*forward_hook)(void *arg, gw_relay *r, gw_relay_fwd *f);
    void *hook_arg;
    /* Called on a reload request (SIGHUP): returns the CRL file's current
     * content in a buffer the relay frees with free(). */
    int (*reload_crl)(void *arg, uint8_t **buf, size_t *len);
    void *reload_arg;
} gw_relay_config;

/* Opens the hub journal, sets up both TLS sides, loads the CRL (the newer of
 * the configured one and the one adopted earlier) and starts listening.
 * Returns 0 or SS_ECONFIG / SS_ECERT / SS_EIO / SS_ENOMEM / the journal's
 * errors, with the reason logged. *out is freed with gw_relay_destroy. */
int gw_relay_new(const fws *shim, const gw_relay_config *cfg, gw_relay **out);
uint16_t gw_relay_port(const gw_relay *r);
/* Runs until *stop: then stops accepting, acknowledges what is durable,
 * says BYE both ways, writes the checkpoint. *reload (optional) set by
 * SIGHUP makes it reload the CRL through cfg->reload_crl. Returns 0, or the
 * error that stopped it (a journal that cannot sync). */
int gw_relay_run(gw_relay *r, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);
/* One turn of the loop gw_relay_run repeats (accept, read, journal and group
 * commit, ACK, forward upstream, flush), waiting at most wait_ms: for a
 * caller that drives the relay itself, like the deterministic simulation
 * (tests/sim), which steps it with wait 0 from the shim's idle hook.
 * Returns 0 or the error that would stop gw_relay_run. */
int gw_relay_step(gw_relay *r, uint32_t wait_ms);
void gw_relay_destroy(gw_relay *r);

/* For forward hooks: queues a frame on the upstream session as is. Returns
 * 0, SS_ENOSPC, SS_ECLOSED. */
int gw_relay_up_inject(gw_relay *r, int type, unsigned flags, const uint8_t *payload, size_t len);
/* The relay's node id and its signing material, for test relays that forge. */
const char *gw_relay_node(const gw_relay *r);

#endif
