/* gw_relay_penalty.c - the hub's side of the per-address penalty box for
 * failed downstream TLS handshakes: the shim's peer strings and the hub's
 * configuration over proto's table (proto/src/penalty.c, where the design
 * and the reasons live). The listener closes a penalised address's
 * connections at accept, before any TLS work.
 *
 * Keys: the shim gives the peer as text, parsed by ss_penalty_key_parse, so
 * an IPv6 peer counts for its /64 as at the daemon (before, the hub keyed
 * the exact text, which let one host rotate through the addresses of its
 * /64 and never be penalised), and ::ffff:a.b.c.d is the IPv4 host. */
#include "gw_relay_penalty.h"

#include <assert.h>
#include <string.h>

#include "proto/err.h"

void gw_penalty_init(gw_penalty *p, uint32_t limit, uint32_t window_ms, uint32_t penalty_ms,
                     uint64_t seed)
{
    ss_penalty_cfg cfg = { .slots = GW_PENALTY_SLOTS,
                           .limit = limit,
                           .window_ms = window_ms,
                           .penalty_ms = penalty_ms,
                           .seed = seed };
    memset(p, 0, sizeof(*p));
    p->limit = limit;
    p->window_ms = window_ms;
    p->penalty_ms = penalty_ms;
    int rc = ss_penalty_init(&p->t, p->mem, sizeof(p->mem), &cfg);
    /* Our own invariant: a constant power-of-two size in memory sized for it. */
    assert(rc == 0);
    (void)rc;
}

int gw_penalty_key(const char *peer, char *key, size_t cap)
{
    ss_penalty_key k;
    if (!peer || !key || cap < GW_PENALTY_KEY)
        return SS_EINVAL;
    return ss_penalty_key_parse(peer, &k, key, cap) == 0 ? 0 : SS_EINVAL;
}

int64_t gw_penalty_check(gw_penalty *p, const char *key, int64_t now, uint32_t *nrefused)
{
    ss_penalty_key k;
    *nrefused = 0;
    if (now < 0 || ss_penalty_key_parse(key, &k, NULL, 0) != 0)
        return 0;
    return (int64_t)ss_penalty_check(p->t, &k, (uint64_t)now,
                                     nrefused); /* at most penalty_ms, a uint32_t */
}

int gw_penalty_fail(gw_penalty *p, const char *key, int64_t now, uint32_t *fails)
{
    ss_penalty_key k;
    *fails = 0;
    if (now < 0 || ss_penalty_key_parse(key, &k, NULL, 0) != 0)
        return 0;
    int r = ss_penalty_fail(p->t, &k, (uint64_t)now, fails);
    p->penalised += (uint64_t)r;
    return r;
}
