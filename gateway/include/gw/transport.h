/* transport.h - the byte stream the sync session runs over, as a small ops
 * table (in the manner of Redis's ConnectionType and curl's vtls), so the
 * session logic does not know whether it speaks plain frames over the shim
 * (simulation tests) or mbed TLS over the shim (production). */
#ifndef GW_TRANSPORT_H
#define GW_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "fws/fws.h"

typedef struct gw_transport_ops {
    const char *name; /* "plain", "tls" */
    /* Sends all len bytes, waiting at most timeout_ms in total. Returns 0 or
     * SS_ETIMEDOUT / SS_ECLOSED / SS_EIO. */
    int (*send)(void *ctx, const void *buf, size_t len, uint32_t timeout_ms);
    /* Receives up to len bytes, waiting at most timeout_ms. Returns the count
     * (> 0), SS_ETIMEDOUT (nothing yet: try again), SS_ECLOSED (the peer
     * closed or reset) or SS_EIO / SS_ECERT (TLS failure). */
    int (*recv)(void *ctx, void *buf, size_t len, uint32_t timeout_ms);
    /* Closes the stream (a TLS close_notify first); the context stays
     * allocated by its owner. Safe twice. */
    void (*close)(void *ctx);
} gw_transport;

/* An open stream: the ops and their context. */
typedef struct gw_stream {
    const gw_transport *ops;
    void *ctx;
} gw_stream;

/* Plain frames over a shim socket (tests and the sim build path). */
typedef struct gw_plain {
    const fws *shim;
    fws_sock *sock;
} gw_plain;

/* Connects; on success *out is usable until gw_plain's close. Returns 0 or
 * SS_ECLOSED (refused/reset), SS_ETIMEDOUT, SS_EINVAL (bad address). */
int gw_plain_connect(gw_plain *p, const fws *shim, const char *host, uint16_t port,
                     uint32_t timeout_ms, gw_stream *out);

/* Shim error -> sitesync error for stream operations. */
int gw_map_net_err(int fws_rc);

/* Splits "HOST:PORT" ("[v6]:PORT" too) into host[cap] and *port. Returns 0 or
 * SS_EINVAL. */
int gw_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);

#endif
