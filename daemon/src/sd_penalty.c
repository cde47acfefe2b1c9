/* sd_penalty.c - the per-address penalty box for failed TLS handshakes: a
 * bounded table that counts handshake failures per source address and, past
 * the configured limit, makes the listener close that address's connections
 * at accept (before any TLS work) for a while.
 *
 * Why: a failed handshake costs the daemon an ECDSA signature and a chain
 * verification, and a revoked certificate also costs an audit row written
 * to SQLite. Without a bound, one address replaying a stolen (revoked) or
 * wrong certificate could keep the CPU and the writer busy at will.
 *
 * Design: open addressing with a short probe run (SD_PENALTY_PROBE slots)
 * and no deletion: an entry whose window and penalty have both passed counts
 * as free. When every slot of a run is live, the entry with the oldest
 * activity is replaced, so memory stays fixed whatever the number of
 * addresses. IPv6 addresses are keyed by their /64, since one host
 * commonly owns a whole /64. The hash is seeded per process so that
 * collisions cannot be planned from outside. */
#include <string.h>

#include <netinet/in.h>

#include "proto/err.h"
#include "sd_net.h"

static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
    /* FNV-1a over the key, then a final avalanche (splitmix64). */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

int sd__penalty_key(const struct sockaddr *sa, sd_addr_key *k)
{
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        k->family = 4;
        memcpy(k->b, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        const uint8_t *a = in6->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
            /* An IPv4 peer on a dual-stack socket is still one IPv4 host. */
            k->family = 4;
            memcpy(k->b, a + 12, 4);
            return 0;
        }
        k->family = 6;
        memcpy(k->b, a, 8); /* the /64 */
        return 0;
    }
    return SS_EINVAL;
}

void sd__penalty_init(sd_penalty *p, uint64_t limit, uint64_t window_ms, uint64_t penalty_ms,
                      uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->limit = limit;
    p->window_ms = window_ms;
    p->penalty_ms = penalty_ms;
    p->seed = seed ^ 0xcbf29ce484222325ULL;
}

/* Live: still counting failures, or still penalised. */
static int live(const sd_penalty *p, const sd_penalty_entry *e, uint64_t now)
{
    if (e->key.family == 0)
        return 0;
    return now < e->until || now - e->window_start < p->window_ms;
}

static size_t slot0(const sd_penalty *p, const sd_addr_key *k)
{
    return (size_t)(mix(p->seed, (const uint8_t *)k, sizeof *k) & (SD_PENALTY_SLOTS - 1));
}

static sd_penalty_entry *find(sd_penalty *p, const sd_addr_key *k, uint64_t now)
{
    size_t s = slot0(p, k);
    for (size_t i = 0; i < SD_PENALTY_PROBE; i++) {
        sd_penalty_entry *e = &p->slots[(s + i) & (SD_PENALTY_SLOTS - 1)];
        if (memcmp(&e->key, k, sizeof *k) == 0)
            return live(p, e, now) ? e : NULL;
    }
    return NULL;
}

uint64_t sd__penalty_check(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint32_t *nrefused)
{
    *nrefused = 0;
    if (p->limit == 0)
        return 0;
    sd_penalty_entry *e = find(p, k, now);
    if (!e || now >= e->until)
        return 0;
    e->refused++;
    p->refused++;
    *nrefused = e->refused;
    return e->until - now;
}

int sd__penalty_fail(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint64_t *fails)
{
    *fails = 0;
    if (p->limit == 0)
        return 0;
    size_t s = slot0(p, k);
    sd_penalty_entry *e = NULL, *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < SD_PENALTY_PROBE; i++) {
        sd_penalty_entry *x = &p->slots[(s + i) & (SD_PENALTY_SLOTS - 1)];
        if (memcmp(&x->key, k, sizeof *k) == 0) {
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
        memset(e, 0, sizeof *e);
        e->key = *k;
        e->window_start = now;
    }
    if (now < e->until) {
        /* Handshakes accepted just before the penalty began still fail
         * after it: the address is refused already, nothing to count. */
        e->last = now;
        return 0;
    }
    if (!live(p, e, now) || now - e->window_start >= p->window_ms) {
        /* A fresh window (an expired entry keeps its slot). */
        e->window_start = now;
        e->fails = 0;
        e->refused = 0;
    }
    e->last = now;
    e->fails++;
    *fails = e->fails;
    if (e->fails < p->limit)
        return 0;
    /* Over the limit: refuse the address for penalty_ms, then count afresh. */
    e->until = now + p->penalty_ms;
    e->window_start = now;
    e->fails = 0;
    p->penalised++;
    return 1;
}
