/* gw_plain.c - the plain transport (frames straight over a shim socket, for
 * the simulation tests and for debugging on a trusted bench) and the address
 * helpers every transport shares. */
#include <stdlib.h>
#include <string.h>

#include "gw/transport.h"
#include "proto/err.h"

int gw_map_net_err(int rc)
{
    switch (rc) {
    case FWS_ETIMEDOUT:
    case FWS_EAGAIN:
        return SS_ETIMEDOUT;
    case FWS_ECLOSED:
    case FWS_ECONNRESET:
    case FWS_ECONNREFUSED:
    case FWS_EPOWER:
        return SS_ECLOSED;
    case FWS_EADDR:
    case FWS_EINVAL:
        return SS_EINVAL;
    case FWS_ENOMEM:
        return SS_ENOMEM;
    default:
        return SS_EIO;
    }
}

int gw_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
    if (!s || !host || cap == 0 || !port)
        return SS_EINVAL;
    const char *colon, *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return SS_EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return SS_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= cap)
        return SS_EINVAL;
    char *end = NULL;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || !end || *end != '\0' || p == 0 || p > 65535)
        return SS_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int plain_send(void *ctx, const void *buf, size_t len, uint32_t timeout_ms)
{
    gw_plain *p = ctx;
    if (!p->sock)
        return SS_ECLOSED;
    int rc = fws_send_all(p->shim, p->sock, buf, len, timeout_ms);
    return rc < 0 ? gw_map_net_err(rc) : 0;
}

static int plain_recv(void *ctx, void *buf, size_t len, uint32_t timeout_ms)
{
    gw_plain *p = ctx;
    if (!p->sock)
        return SS_ECLOSED;
    int rc = fws_recv(p->shim, p->sock, buf, len, timeout_ms);
    return rc < 0 ? gw_map_net_err(rc) : rc;
}

static void plain_close(void *ctx)
{
    gw_plain *p = ctx;
    if (p->sock)
        fws_sock_close(p->shim, p->sock);
    p->sock = NULL;
}

static const gw_transport plain_ops = { "plain", plain_send, plain_recv, plain_close };

int gw_plain_connect(gw_plain *p, const fws *shim, const char *host, uint16_t port,
                     uint32_t timeout_ms, gw_stream *out)
{
    memset(p, 0, sizeof(*p));
    p->shim = shim;
    int rc = fws_connect(shim, host, port, timeout_ms, &p->sock);
    if (rc < 0) {
        p->sock = NULL;
        return gw_map_net_err(rc);
    }
    out->ops = &plain_ops;
    out->ctx = p;
    return 0;
}
