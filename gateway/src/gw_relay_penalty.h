/* gw_relay_penalty.h - the hub's per-address penalty box for failed downstream TLS
 * handshakes, over proto's table (private to the gateway library; tests
 * include it from src/). */
#ifndef GW_RELAY_PENALTY_H
#define GW_RELAY_PENALTY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/penalty.h"

#define GW_PENALTY_SLOTS 1024u /* a power of two */
#define GW_PENALTY_KEY   48u   /* an IPv6 text address fits */

typedef struct gw_penalty {
    uint32_t limit, window_ms, penalty_ms; /* as configured, for logs; limit 0: off */
    uint64_t penalised; /* penalties started, for logs (other totals: ss_penalty_get_stats) */
    ss_penalty *t;      /* in mem: the struct must not move after init */
    uint64_t mem[SS_PENALTY_WORDS(GW_PENALTY_SLOTS)];
} gw_penalty;

/* Cannot fail. seed comes from the shim's entropy so that slot collisions
 * cannot be planned from outside. */
void gw_penalty_init(gw_penalty *p, uint32_t limit, uint32_t window_ms, uint32_t penalty_ms,
                     uint64_t seed);
/* The address part of a shim peer string ("1.2.3.4:5678" or "[::1]:5678")
 * into key (cap >= GW_PENALTY_KEY), checked to be an IP address. Returns 0
 * or SS_EINVAL. */
int gw_penalty_key(const char *peer, char *key, size_t cap);
/* At accept: the penalty's remaining ms if key is penalised at now (the
 * refusal is counted and *nrefused set to the count of this penalty), else
 * 0. An IPv6 key counts for its whole /64 (see proto/penalty.h). */
int64_t gw_penalty_check(gw_penalty *p, const char *key, int64_t now, uint32_t *nrefused);
/* A failed handshake from key at now. Returns 1 if it starts a penalty,
 * else 0; *fails gets the failures counted in the window. */
int gw_penalty_fail(gw_penalty *p, const char *key, int64_t now, uint32_t *fails);

#endif
