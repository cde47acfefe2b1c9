/* penalty.h - the per-address penalty table for failed TLS handshakes, shared
 * by the daemon's listener and the relay hub's: counts failures per source
 * address within a window and, past a limit, names the address as refused
 * for a while, in memory fixed at init.
 *
 * Keys: an IPv4 address, or the /64 of an IPv6 address (one host commonly
 * owns a whole /64, so keying by the full address would let one attacker
 * rotate through 2^64 addresses and never be counted twice). An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d, from a dual-stack socket) is its IPv4 key.
 *
 * Time is the caller's monotonic clock in ms, passed to every call; the
 * module keeps no global state and calls no clock. Not thread-safe: one
 * table per event loop. */
#ifndef SS_PENALTY_H
#define SS_PENALTY_H

#include <stddef.h>
#include <stdint.h>

/* A penalty key: family 4 (b[0..3] the address) or 6 (b[0..7] the /64);
 * unused bytes are zero, so keys compare with memcmp. family 0: no key. */
typedef struct ss_penalty_key {
    uint8_t family;
    uint8_t b[8];
} ss_penalty_key;

typedef struct ss_penalty ss_penalty; /* opaque */

typedef struct ss_penalty_cfg {
    uint32_t slots;      /* a power of two, 8 .. 1<<20: the table's fixed size */
    uint32_t limit;      /* failures within window_ms that start a penalty; 0: off */
    uint64_t window_ms;  /* the counting window */
    uint64_t penalty_ms; /* how long the address is refused */
    uint64_t seed;       /* hash seed: unpredictable from outside, so that slot
                          * collisions cannot be planned */
} ss_penalty_cfg;

typedef struct ss_penalty_stats {
    uint64_t penalised; /* penalties started */
    uint64_t refused;   /* refusals counted by ss_penalty_check */
    uint64_t evicted;   /* live entries replaced because their probe run was full */
} ss_penalty_stats;

/* Memory for a table of `slots` slots, for callers that supply it (a
 * struct member of SS_PENALTY_WORDS(slots) uint64_t is aligned enough). */
#define SS_PENALTY_HEAD_BYTES   96u
#define SS_PENALTY_ENTRY_BYTES  48u
#define SS_PENALTY_BYTES(slots) (SS_PENALTY_HEAD_BYTES + (size_t)(slots)*SS_PENALTY_ENTRY_BYTES)
#define SS_PENALTY_WORDS(slots) ((SS_PENALTY_BYTES(slots) + 7u) / 8u)

/* Sets up a table in *out. mem NULL: the table is one ss_malloc of
 * SS_PENALTY_BYTES(cfg->slots); else it lives in the caller's mem (len at
 * least that many bytes, 8-byte aligned), which must stay in place until
 * ss_penalty_free. No allocation after this call. Returns 0, SS_EINVAL (bad
 * cfg, short or misaligned mem) or SS_ENOMEM; on failure *out is NULL. */
int ss_penalty_init(ss_penalty **out, void *mem, size_t len, const ss_penalty_cfg *cfg);
/* Releases the table (frees it if init allocated it, else clears the
 * caller's memory) and sets *p to NULL. Accepts NULL and *p NULL: safe twice. */
void ss_penalty_free(ss_penalty **p);

/* A failed handshake from k at now. Returns 1 if it starts a penalty, else
 * 0 (also when off, or when k is already penalised: a handshake accepted
 * just before the penalty began neither extends nor restarts it); *fails
 * gets the failures counted in the current window (0 when not counted). */
int ss_penalty_fail(ss_penalty *p, const ss_penalty_key *k, uint64_t now, uint32_t *fails);
/* At accept: the penalty's remaining ms if k is penalised at now (the
 * refusal is counted and *nrefused set to the count for this penalty, so a
 * caller can warn on the first only), else 0. */
uint64_t ss_penalty_check(ss_penalty *p, const ss_penalty_key *k, uint64_t now, uint32_t *nrefused);
/* The table's totals, for logs and tests. */
void ss_penalty_get_stats(const ss_penalty *p, ss_penalty_stats *st);

/* Keys from binary addresses: 4 bytes (network order) or 16 bytes. The
 * IPv6 form maps ::ffff:a.b.c.d to its IPv4 key and keeps only the /64 of
 * others. Cannot fail. */
void ss_penalty_key_v4(ss_penalty_key *k, const uint8_t a[4]);
void ss_penalty_key_v6(ss_penalty_key *k, const uint8_t a[16]);
/* The key of a peer's address text: "1.2.3.4", "1.2.3.4:port", an IPv6
 * address ("2001:db8::1", with an embedded IPv4 tail allowed) or
 * "[v6]:port". Strict: decimal IPv4 without leading zeros, a port of 1 to 5
 * digits. Returns 0, or SS_EINVAL for anything else (k is then zeroed).
 * host/host_cap (optional, may be NULL/0): the address part, without port
 * or brackets, NUL-terminated; SS_EINVAL if it does not fit. */
int ss_penalty_key_parse(const char *peer, ss_penalty_key *k, char *host, size_t host_cap);

#endif
