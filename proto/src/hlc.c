/* hlc.c - the hybrid logical clock (Kulkarni et al. 2014) and its text forms. */
#include <stdio.h>

#include "proto/err.h"
#include "proto/hlc.h"

/* The stamp packs (ms << 16 | counter), so "counter + 1, and on overflow
 * ms + 1 with counter 0" is exactly the integer successor. The only stamp
 * without a successor is UINT64_MAX (ms at its 48-bit limit, counter full). */
static int successor(ss_hlc_t h, ss_hlc_t *out)
{
    if (h == UINT64_MAX)
        return SS_ECLOCK;
    *out = h + 1;
    return 0;
}

void ss_hlc_init(ss_hlc *c, ss_hlc_t persisted)
{
    c->last = persisted;
}

int ss_hlc_now(ss_hlc *c, uint64_t now_ms, ss_hlc_t *out)
{
    ss_hlc_t next;
    int rc;

    if (now_ms > SS_HLC_MS_MAX)
        return SS_ECLOCK;
    /* l' = max(l, pt): physical time ahead of the clock restarts the counter;
     * otherwise the counter advances (Kulkarni's local/send rule). */
    if (now_ms > ss_hlc_ms(c->last)) {
        next = ss_hlc_make(now_ms, 0);
    } else {
        rc = successor(c->last, &next);
        if (rc < 0)
            return rc;
    }
    c->last = next;
    if (out)
        *out = next;
    return 0;
}

int ss_hlc_recv(ss_hlc *c, ss_hlc_t remote, uint64_t now_ms, uint64_t max_ahead_ms, ss_hlc_t *out)
{
    ss_hlc_t top, next;
    int rc;

    if (now_ms > SS_HLC_MS_MAX)
        return SS_ECLOCK;
    /* Written as a subtraction so that now_ms + max_ahead_ms cannot wrap. */
    if (max_ahead_ms > 0 && ss_hlc_ms(remote) > now_ms && ss_hlc_ms(remote) - now_ms > max_ahead_ms)
        return SS_ESKEW;
    /* Kulkarni's receive rule: l' = max(l, l_m, pt); the counter continues
     * from whichever of l and l_m reached l' (the larger counter if both),
     * and restarts at 0 if only physical time did. Because stamps compare as
     * integers, "max of the two stamps, plus one" is that rule, unless
     * physical time is strictly ahead of both. */
    top = c->last > remote ? c->last : remote;
    if (now_ms > ss_hlc_ms(top)) {
        next = ss_hlc_make(now_ms, 0);
    } else {
        rc = successor(top, &next);
        if (rc < 0)
            return rc;
    }
    c->last = next;
    if (out)
        *out = next;
    return 0;
}

static const char hexdig[] = "0123456789abcdef";

int ss_hlc_format(ss_hlc_t h, char *buf, size_t cap)
{
    if (!buf || cap < SS_HLC_TEXT_LEN + 1)
        return SS_ENOSPC;
    for (int i = SS_HLC_TEXT_LEN - 1; i >= 0; i--) {
        buf[i] = hexdig[h & 0xF];
        h >>= 4;
    }
    buf[SS_HLC_TEXT_LEN] = '\0';
    return SS_HLC_TEXT_LEN;
}

int ss_hex_digit(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int ss_hlc_parse(const char *s, size_t len, ss_hlc_t *out)
{
    ss_hlc_t v = 0;

    if (!s || !out || len != SS_HLC_TEXT_LEN)
        return SS_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int d = ss_hex_digit(s[i]);
        if (d < 0)
            return SS_EINVAL;
        v = (v << 4) | (ss_hlc_t)d;
    }
    *out = v;
    return 0;
}

/* Howard Hinnant's civil_from_days: proleptic Gregorian date of a day count
 * since 1970-01-01. Pure arithmetic, unlike gmtime (global state) or gmtime_r
 * (POSIX, and time_t-bound). Valid for every day a 48-bit ms value reaches. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int ss_hlc_format_human(ss_hlc_t h, char *buf, size_t cap)
{
    uint64_t ms = ss_hlc_ms(h);
    uint64_t secs = ms / 1000;
    int64_t year;
    unsigned month, day;
    int n;

    if (!buf || cap == 0)
        return SS_ENOSPC;
    civil_from_days((int64_t)(secs / 86400), &year, &month, &day);
    unsigned sod = (unsigned)(secs % 86400);
    /* Years past 9999 (reachable with 48 bits) print five digits; the header's
     * cap >= 31 leaves room for them. */
    n = snprintf(buf, cap, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ#%04x", (long long)year, month,
                 day, sod / 3600, sod / 60 % 60, sod % 60, (unsigned)(ms % 1000),
                 (unsigned)ss_hlc_counter(h));
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return SS_ENOSPC;
    }
    return n;
}
