/* penalty.c - the per-address penalty table for failed TLS handshakes (one
 * module for the daemon's listener and the relay hub; see proto/penalty.h).
 *
 * Why: a failed handshake costs an ECDHE exchange, an ECDSA signature and a
 * chain + CRL verification on a single loop thread (and at the daemon an
 * audit row). Without a bound, one address replaying a revoked or foreign
 * certificate could keep the CPU busy at will and slow every honest peer.
 *
 * Design: open addressing over a short probe run (PROBE slots) and no
 * deletion: an entry whose window and penalty have both passed counts as
 * free. When every slot of a run is live, the least recently active entry
 * is replaced (never the one being counted), so memory stays fixed whatever
 * the number of addresses. The hash is seeded per process so that
 * collisions cannot be planned from outside. */
#include "proto/penalty.h"

#include <stdint.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/hlc.h"

#define PROBE     8u
#define MAX_SLOTS (1u << 20)

typedef struct entry {
    ss_penalty_key key;                 /* family 0: never used */
    uint32_t fails;                     /* failures in the current window */
    uint32_t refused;                   /* connections refused during the current penalty */
    uint64_t window_start, last, until; /* caller's ms */
} entry;

struct ss_penalty {
    entry *slots;
    uint32_t mask; /* slots - 1 */
    uint32_t limit;
    uint64_t window_ms, penalty_ms, seed;
    ss_penalty_stats st;
    size_t bytes;
    int owned; /* allocated by init, freed by free */
};

/* The public sizes let callers embed the memory; keep them honest. */
_Static_assert(sizeof(entry) == SS_PENALTY_ENTRY_BYTES, "SS_PENALTY_ENTRY_BYTES");
_Static_assert(sizeof(struct ss_penalty) <= SS_PENALTY_HEAD_BYTES, "SS_PENALTY_HEAD_BYTES");
_Static_assert(SS_PENALTY_HEAD_BYTES % 8 == 0, "entries stay 8-byte aligned");

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

int ss_penalty_init(ss_penalty **out, void *mem, size_t len, const ss_penalty_cfg *cfg)
{
    if (!out)
        return SS_EINVAL;
    *out = NULL;
    if (!cfg || cfg->slots < PROBE || cfg->slots > MAX_SLOTS ||
        (cfg->slots & (cfg->slots - 1)) != 0)
        return SS_EINVAL;
    size_t bytes = SS_PENALTY_BYTES(cfg->slots);
    int owned = 0;
    if (!mem) {
        mem = ss_malloc(bytes);
        if (!mem)
            return SS_ENOMEM;
        owned = 1;
    } else if (len < bytes || ((uintptr_t)mem & 7u) != 0) {
        return SS_EINVAL;
    }
    memset(mem, 0, bytes);
    ss_penalty *p = mem;
    p->slots = (entry *)(void *)((unsigned char *)mem + SS_PENALTY_HEAD_BYTES);
    p->mask = cfg->slots - 1;
    p->limit = cfg->limit;
    p->window_ms = cfg->window_ms;
    p->penalty_ms = cfg->penalty_ms;
    p->seed = cfg->seed ^ 0xcbf29ce484222325ULL;
    p->bytes = bytes;
    p->owned = owned;
    *out = p;
    return 0;
}

void ss_penalty_free(ss_penalty **pp)
{
    if (!pp || !*pp)
        return;
    ss_penalty *p = *pp;
    *pp = NULL;
    int owned = p->owned;
    memset(p, 0, p->bytes); /* addresses of peers: not secrets, but not kept */
    if (owned)
        ss_free(p);
}

/* Live: still counting failures, or still penalised. */
static int live(const ss_penalty *p, const entry *e, uint64_t now)
{
    if (e->key.family == 0)
        return 0;
    return now < e->until || now - e->window_start < p->window_ms;
}

static uint32_t slot0(const ss_penalty *p, const ss_penalty_key *k)
{
    return (uint32_t)(mix(p->seed, (const uint8_t *)k, sizeof *k) & p->mask);
}

uint64_t ss_penalty_check(ss_penalty *p, const ss_penalty_key *k, uint64_t now, uint32_t *nrefused)
{
    *nrefused = 0;
    if (p->limit == 0 || k->family == 0)
        return 0;
    uint32_t s = slot0(p, k);
    for (uint32_t i = 0; i < PROBE; i++) {
        entry *e = &p->slots[(s + i) & p->mask];
        if (memcmp(&e->key, k, sizeof *k) != 0)
            continue;
        if (now >= e->until)
            return 0;
        e->refused++;
        p->st.refused++;
        *nrefused = e->refused;
        return e->until - now;
    }
    return 0;
}

int ss_penalty_fail(ss_penalty *p, const ss_penalty_key *k, uint64_t now, uint32_t *fails)
{
    *fails = 0;
    if (p->limit == 0 || k->family == 0)
        return 0;
    uint32_t s = slot0(p, k);
    entry *e = NULL, *free_slot = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        entry *x = &p->slots[(s + i) & p->mask];
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
            p->st.evicted++;
        memset(e, 0, sizeof *e);
        e->key = *k;
        e->window_start = now;
    }
    e->last = now;
    if (now < e->until)
        return 0; /* accepted just before the penalty began: refused already */
    if (!live(p, e, now) || now - e->window_start >= p->window_ms) {
        /* A fresh window (an expired entry keeps its slot). */
        e->window_start = now;
        e->fails = 0;
        e->refused = 0;
    }
    e->fails++;
    *fails = e->fails;
    if (e->fails < p->limit)
        return 0;
    /* Over the limit: refused for penalty_ms, then counting starts afresh
     * (refused restarts too, so each penalty's first refusal is the one a
     * caller warns about). */
    e->until = now + p->penalty_ms;
    e->window_start = now;
    e->fails = 0;
    e->refused = 0;
    p->st.penalised++;
    return 1;
}

void ss_penalty_get_stats(const ss_penalty *p, ss_penalty_stats *st)
{
    *st = p->st;
}

/* ---- keys ---------------------------------------------------------------- */

void ss_penalty_key_v4(ss_penalty_key *k, const uint8_t a[4])
{
    memset(k, 0, sizeof *k);
    k->family = 4;
    memcpy(k->b, a, 4);
}

void ss_penalty_key_v6(ss_penalty_key *k, const uint8_t a[16])
{
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
        /* An IPv4 peer on a dual-stack socket is still one IPv4 host. */
        ss_penalty_key_v4(k, a + 12);
        return;
    }
    memset(k, 0, sizeof *k);
    k->family = 6;
    memcpy(k->b, a, 8); /* the /64 */
}

/* Dotted-decimal IPv4, the whole of s. Leading zeros are refused: some
 * parsers read them as octal, and one address must have one key. */
static int parse_v4(const char *s, uint8_t out[4])
{
    for (int i = 0; i < 4; i++) {
        if (i > 0 && *s++ != '.')
            return -1;
        unsigned v = 0, n = 0;
        while (*s >= '0' && *s <= '9' && n < 4) {
            v = v * 10 + (unsigned)(*s - '0');
            s++;
            n++;
        }
        if (n == 0 || n > 3 || v > 255 || (n > 1 && s[-(int)n] == '0'))
            return -1;
        out[i] = (uint8_t)v;
    }
    return *s == '\0' ? 0 : -1;
}

/* RFC 4291 text: up to eight groups of 1-4 hex digits, at most one "::",
 * optionally ending in a dotted IPv4 address (two groups), the whole of s. */
static int parse_v6(const char *s, uint8_t out[16])
{
    uint16_t g[8];
    int n = 0, gap = -1;
    if (s[0] == ':') {
        if (s[1] != ':')
            return -1;
        gap = 0;
        s += 2;
    }
    while (*s) {
        const char *q = s;
        unsigned v = 0;
        int d;
        while ((d = ss_hex_digit(*q)) >= 0 && q - s < 5) {
            v = v << 4 | (unsigned)d;
            q++;
        }
        if (*q == '.') {
            uint8_t a[4];
            if (n > 6 || parse_v4(s, a) != 0)
                return -1;
            g[n++] = (uint16_t)(a[0] << 8 | a[1]);
            g[n++] = (uint16_t)(a[2] << 8 | a[3]);
            break;
        }
        if (q == s || q - s > 4 || n == 8)
            return -1;
        g[n++] = (uint16_t)v;
        s = q;
        if (*s == '\0')
            break;
        if (*s++ != ':')
            return -1;
        if (*s == ':') {
            if (gap >= 0)
                return -1;
            gap = n;
            s++;
        } else if (*s == '\0') {
            return -1; /* a trailing single colon */
        }
    }
    if (gap < 0 ? n != 8 : n > 7)
        return -1;
    uint16_t full[8] = { 0 };
    int tail = gap < 0 ? 0 : n - gap; /* groups after the "::" */
    for (int i = 0; i < n; i++)
        full[i < n - tail ? i : 8 - (n - i)] = g[i];
    for (int i = 0; i < 8; i++) {
        out[2 * i] = (uint8_t)(full[i] >> 8);
        out[2 * i + 1] = (uint8_t)full[i];
    }
    return 0;
}

static int digits_only(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < '0' || s[n] > '9')
            return 0;
    return n >= 1 && n <= 5;
}

int ss_penalty_key_parse(const char *peer, ss_penalty_key *k, char *host, size_t host_cap)
{
    char buf[64]; /* longer than any IPv6 text (45) */
    const char *start, *end;
    int v6;
    if (k)
        memset(k, 0, sizeof *k);
    if (!peer || !k || (host && host_cap == 0))
        return SS_EINVAL;
    if (peer[0] == '[') {
        /* "[v6]" or "[v6]:port" */
        start = peer + 1;
        end = strchr(start, ']');
        if (!end || (end[1] != '\0' && (end[1] != ':' || !digits_only(end + 2))))
            return SS_EINVAL;
        v6 = 1;
    } else {
        const char *c1 = strchr(peer, ':');
        start = peer;
        if (c1 && strchr(c1 + 1, ':')) {
            end = peer + strlen(peer); /* two colons or more: a bare IPv6 address */
            v6 = 1;
        } else if (c1) {
            if (!digits_only(c1 + 1))
                return SS_EINVAL; /* "ip:port" */
            end = c1;
            v6 = 0;
        } else {
            end = peer + strlen(peer);
            v6 = 0;
        }
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= sizeof buf)
        return SS_EINVAL;
    memcpy(buf, start, n);
    buf[n] = '\0';
    uint8_t a[16];
    if (v6) {
        if (parse_v6(buf, a) != 0)
            return SS_EINVAL;
    } else if (parse_v4(buf, a) != 0) {
        return SS_EINVAL;
    }
    if (host) {
        if (n >= host_cap)
            return SS_EINVAL;
        memcpy(host, buf, n + 1);
    }
    if (v6)
        ss_penalty_key_v6(k, a);
    else
        ss_penalty_key_v4(k, a);
    return 0;
}
