/* relay.c - the route prefix of forwarded BATCH frames and the origin
 * signature block: strict parsing of bytes a relay or a peer may have bent. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "proto/relay.h"

int ss_route_parse(const uint8_t *payload, size_t len, ss_route *out, size_t *env_off)
{
    size_t pos = 1;

    if (len < 1)
        return SS_ETRUNC;
    memset(out, 0, sizeof(*out));
    if (payload[0] < 1 || payload[0] > SS_ROUTE_MAX_HOPS)
        return SS_ELIMIT;
    for (int i = 0; i < payload[0]; i++) {
        if (len - pos < 1)
            return SS_ETRUNC;
        size_t n = payload[pos++];
        if (len - pos < n)
            return SS_ETRUNC;
        if (ss_id_check((const char *)payload + pos, n) < 0)
            return SS_EID;
        memcpy(out->hops[i], payload + pos, n);
        out->hops[i][n] = '\0';
        pos += n;
    }
    out->nhops = payload[0];
    *env_off = pos;
    return 0;
}

size_t ss_route_len(const ss_route *r)
{
    size_t n = 1;
    for (int i = 0; i < r->nhops; i++)
        n += 1 + strlen(r->hops[i]);
    return n;
}

int ss_route_write(uint8_t *out, size_t cap, const ss_route *r)
{
    size_t pos = 1;

    if (r->nhops < 1 || r->nhops > SS_ROUTE_MAX_HOPS)
        return SS_ELIMIT;
    if (cap < ss_route_len(r))
        return SS_ENOSPC;
    out[0] = (uint8_t)r->nhops;
    for (int i = 0; i < r->nhops; i++) {
        size_t n = strlen(r->hops[i]);
        if (ss_id_check(r->hops[i], n) < 0)
            return SS_EID;
        out[pos++] = (uint8_t)n;
        memcpy(out + pos, r->hops[i], n);
        pos += n;
    }
    return (int)pos;
}

int ss_route_push(ss_route *r, const char *hop)
{
    size_t n = strlen(hop);

    if (ss_id_check(hop, n) < 0)
        return SS_EID;
    if (r->nhops >= SS_ROUTE_MAX_HOPS)
        return SS_ELIMIT;
    memcpy(r->hops[r->nhops], hop, n + 1);
    r->nhops++;
    return 0;
}

int ss_route_format(const ss_route *r, const char *last_hop, char *buf, size_t cap)
{
    size_t pos;
    int n;

    if (cap == 0)
        return SS_ENOSPC;
    if ((!r || r->nhops == 0) && (!last_hop || !last_hop[0])) {
        n = snprintf(buf, cap, "direct");
        return (n < 0 || (size_t)n >= cap) ? SS_ENOSPC : n;
    }
    n = snprintf(buf, cap, "via ");
    if (n < 0 || (size_t)n >= cap)
        return SS_ENOSPC;
    pos = (size_t)n;
    for (int i = 0; r && i < r->nhops; i++) {
        n = snprintf(buf + pos, cap - pos, "%s%s", i ? "," : "", r->hops[i]);
        if (n < 0 || (size_t)n >= cap - pos)
            return SS_ENOSPC;
        pos += (size_t)n;
    }
    if (last_hop && last_hop[0]) {
        n = snprintf(buf + pos, cap - pos, "%s%s", (r && r->nhops) ? "," : "", last_hop);
        if (n < 0 || (size_t)n >= cap - pos)
            return SS_ENOSPC;
        pos += (size_t)n;
    }
    return (int)pos;
}

int ss_sig_parse(const ss_envelope *env, ss_sig *out)
{
    const uint8_t *p = env->sig;
    size_t len = env->sig_len, pos = 0;

    memset(out, 0, sizeof(*out));
    if (!(env->flags & SS_ENV_FLAG_SIGNED) || p == NULL || len < 1)
        return SS_ESIG;
    out->alg = p[pos++];
    if (out->alg != SS_SIG_ECDSA_P256_SHA256)
        return SS_ESIG;
    if (len - pos < 2)
        return SS_ESIG;
    out->cert_len = ss__get_u16(p + pos);
    pos += 2;
    if (out->cert_len < 1 || out->cert_len > SS_SIG_CERT_MAX || len - pos < out->cert_len)
        return SS_ESIG;
    out->cert = p + pos;
    pos += out->cert_len;
    if (len - pos < 2)
        return SS_ESIG;
    out->sig_len = ss__get_u16(p + pos);
    pos += 2;
    if (out->sig_len < 8 || out->sig_len > SS_SIG_DER_MAX || len - pos != out->sig_len)
        return SS_ESIG;
    out->sig = p + pos;
    return 0;
}

size_t ss_sig_trailer_len(size_t cert_len, size_t sig_len)
{
    return 2 + 1 + 2 + cert_len + 2 + sig_len;
}

int ss_sig_write_trailer(uint8_t *out, size_t cap, const uint8_t *cert, size_t cert_len,
                         const uint8_t *sig, size_t sig_len)
{
    size_t total = ss_sig_trailer_len(cert_len, sig_len), pos = 0;

    if (cert_len < 1 || cert_len > SS_SIG_CERT_MAX || sig_len < 8 || sig_len > SS_SIG_DER_MAX)
        return SS_ESIG;
    if (cap < total)
        return SS_ENOSPC;
    ss__put_u16(out, (uint16_t)(total - 2));
    pos = 2;
    out[pos++] = SS_SIG_ECDSA_P256_SHA256;
    ss__put_u16(out + pos, (uint16_t)cert_len);
    pos += 2;
    memcpy(out + pos, cert, cert_len);
    pos += cert_len;
    ss__put_u16(out + pos, (uint16_t)sig_len);
    pos += 2;
    memcpy(out + pos, sig, sig_len);
    pos += sig_len;
    return (int)pos;
}
