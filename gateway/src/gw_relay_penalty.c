/* gw_relay_penalty.c - the hub's per-address penalty box: counts failed downstream
 * TLS handshakes per source address and, past the configured limit within a
 * window, makes the listener close that address's connections at accept
 * (before any TLS work) for a while.
 *
 * Why: a failed handshake costs the hub an ECDHE key exchange, an ECDSA
 * signature and a chain + CRL verification on its single loop thread. One
 * address replaying a revoked or foreign certificate (or TLS garbage) could
 * otherwise keep the hub busy at will and slow every honest gateway.
 *
 * Design (the same as the daemon's sd_penalty.c, written again for the
 * gateway's own dependencies): a fixed table with open addressing over a
 * short probe run and no deletion; an entry whose window and penalty have
 * both passed counts as free; when every slot of a run is live, the least
 * recently active entry is replaced, so memory stays fixed whatever the
 * number of addresses. Keys are the peer's address text (the shim gives
 * text, not a sockaddr); an IPv6 host is therefore one address, not its
 * /64 as at the daemon. */
#include "gw_relay_penalty.h"

#include <string.h>

#include "proto/err.h"

static uint64_t mix(uint64_t h, const char *s)
{
    /* FNV-1a over the key, then a final avalanche (splitmix64). */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

void gw_penalty_init(gw_penalty *p, uint32_t limit, uint32_t window_ms, uint32_t penalty_ms,
                     uint64_t seed)
{
    memset(p, 0, sizeof(*p));
    p->limit = limit;
    p->window_ms = window_ms;
    p->penalty_ms = penalty_ms;
    p->seed = seed ^ 0xcbf29ce484222325ULL;
}

int gw_penalty_key(const char *peer, char *key, size_t cap)
{
    if (!peer || cap < GW_PENALTY_KEY)
        return SS_EINVAL;
    const char *start = peer, *end;
    if (peer[0] == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(peer, ':');
    }
    if (!end)
        end = peer + strlen(peer);
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= GW_PENALTY_KEY)
        return SS_EINVAL;
    memcpy(key, start, n);
    key[n] = '\0';
    return 0;
}

/* Live: still counting failures, or still penalised. */
static int live(const gw_penalty *p, const gw_penalty_entry *e, int64_t now)
{
    if (e->key[0] == '\0')
        return 0;
    return now < e->until || now - e->window_start < (int64_t)p->window_ms;
}

static uint32_t slot0(const gw_penalty *p, const char *key)
{
    return (uint32_t)(mix(p->seed, key) & (GW_PENALTY_SLOTS - 1));
}

int64_t gw_penalty_check(gw_penalty *p, const char *key, int64_t now, uint32_t *nrefused)
{
    *nrefused = 0;
    if (p->limit == 0)
        return 0;
    uint32_t s = slot0(p, key);
    for (uint32_t i = 0; i < GW_PENALTY_PROBE; i++) {
        gw_penalty_entry *e = &p->slots[(s + i) & (GW_PENALTY_SLOTS - 1)];
        if (strcmp(e->key, key) != 0)
            continue;
        if (!live(p, e, now) || now >= e->until)
            return 0;
        e->refused++;
        p->refused++;
        *nrefused = e->refused;
        return e->until - now;
    }
    return 0;
}

int gw_penalty_fail(gw_penalty *p, const char *key, int64_t now, uint32_t *fails)
{
    *fails = 0;
    if (p->limit == 0 || strlen(key) >= GW_PENALTY_KEY || key[0] == '\0')
        return 0;
    uint32_t s = slot0(p, key);
    gw_penalty_entry *e = NULL, *free_slot = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < GW_PENALTY_PROBE; i++) {
        gw_penalty_entry *x = &p->slots[(s + i) & (GW_PENALTY_SLOTS - 1)];
        if (strcmp(x->key, key) == 0) {
            e = x;
            break;
        }
        if (!live(p, x, now)) {
            if (!free_slot)
                free_slot = x;
        } else if (!oldest || x->last < oldest->last) {
            oldest = x;
        }
    }
    if (!e) {
        /* A free slot, or else the least recently active of a full run. */
        e = free_slot ? free_slot : oldest;
        if (!free_slot)
            p->evicted++;
        memset(e, 0, sizeof(*e));
        memcpy(e->key, key, strlen(key) + 1);
        e->window_start = now;
    }
    e->last = now;
    if (now < e->until)
        return 0; /* accepted just before the penalty began: refused already */
    if (!live(p, e, now) || now - e->window_start >= (int64_t)p->window_ms) {
        /* A fresh window (an expired entry keeps its slot). */
        e->window_start = now;
        e->fails = 0;
        e->until = 0;
        e->refused = 0;
    }
    e->fails++;
    *fails = e->fails;
    if (e->fails < p->limit)
        return 0;
    e->until = now + (int64_t)p->penalty_ms;
    e->fails = 0;
    e->refused = 0;
    p->penalised++;
    return 1;
}
