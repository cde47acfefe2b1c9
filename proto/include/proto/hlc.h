/* hlc.h - hybrid logical clock (Kulkarni et al. 2014): 48 bits of Unix
 * milliseconds and a 16-bit counter in one uint64_t, so that comparing two
 * stamps as integers orders them. The caller supplies physical time: proto/
 * does no I/O. */
#ifndef SS_HLC_H
#define SS_HLC_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t ss_hlc_t;

#define SS_HLC_MS_MAX      ((UINT64_C(1) << 48) - 1)
#define SS_HLC_COUNTER_MAX 0xFFFFu
/* Fixed-width lowercase hex: 16 characters, sorts like the number. */
#define SS_HLC_TEXT_LEN 16
/* Human form "2026-12-04T16:03:33.123Z#0001". */
#define SS_HLC_HUMAN_LEN 30

static inline ss_hlc_t ss_hlc_make(uint64_t ms, uint32_t counter)
{
    return (ms << 16) | (counter & 0xFFFFu);
}
static inline uint64_t ss_hlc_ms(ss_hlc_t h)
{
    return h >> 16;
}
static inline uint32_t ss_hlc_counter(ss_hlc_t h)
{
    return (uint32_t)(h & 0xFFFFu);
}

/* Clock state. Caller-allocated; `last` may be read (it is what to persist). */
typedef struct ss_hlc {
    ss_hlc_t last;
} ss_hlc;

/* Starts from a persisted value (0 for a brand-new node). Every stamp issued
 * afterwards is strictly greater than `persisted`, so the clock is monotonic
 * across restarts as long as the caller persists `last` before using a stamp
 * durably. */
void ss_hlc_init(ss_hlc *c, ss_hlc_t persisted);

/* Local or send event at physical time now_ms. Writes a stamp strictly
 * greater than every stamp issued or received before. When the counter would
 * overflow, the logical milliseconds advance by one (the clock runs ahead of
 * physical time by at most 1 ms per 65,536 events in the same millisecond).
 * Returns 0, or SS_ECLOCK if now_ms or the clock exceeds 48 bits. */
int ss_hlc_now(ss_hlc *c, uint64_t now_ms, ss_hlc_t *out);

/* Receive event: merges a remote stamp. If max_ahead_ms > 0 and the remote
 * stamp's milliseconds exceed now_ms + max_ahead_ms, the clock is left
 * unchanged and SS_ESKEW is returned (one bad clock must not drag ours
 * forward). max_ahead_ms == 0 trusts the remote (a gateway adopting the
 * daemon's time from WELCOME). On success the clock is >= remote and *out (if
 * not NULL) gets the new stamp. */
int ss_hlc_recv(ss_hlc *c, ss_hlc_t remote, uint64_t now_ms, uint64_t max_ahead_ms, ss_hlc_t *out);

/* 16 hex chars + NUL into buf (cap >= 17). Returns 16 or SS_ENOSPC. */
int ss_hlc_format(ss_hlc_t h, char *buf, size_t cap);
/* Parses exactly 16 hex chars (either case). Returns 0 or SS_EINVAL. */
int ss_hlc_parse(const char *s, size_t len, ss_hlc_t *out);

/* The value of one hexadecimal digit, either case, or -1: for the HLC's text
 * and every other hex field (audit heads, \u escapes, IPv6 groups). */
int ss_hex_digit(int c);
/* "YYYY-MM-DDTHH:MM:SS.mmmZ#cccc" (UTC) into buf (cap >= 31). */
int ss_hlc_format_human(ss_hlc_t h, char *buf, size_t cap);

#endif
