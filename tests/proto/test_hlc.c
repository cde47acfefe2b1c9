/* test_hlc.c - hybrid logical clock: local and receive rules, skew refusal,
 * counter overflow, restart, 48-bit limits and the text forms. */
#include <time.h>

#include "ss_test.h"

#include "proto/err.h"
#include "proto/hlc.h"

/* Deterministic generator (xorshift64*), so a failure replays exactly. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

TEST(now_starts_at_physical_time)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, 0);
    ASSERT_EQ(ss_hlc_now(&c, 1000, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(1000, 0));
    ASSERT_U64_EQ(c.last, h);
    /* Physical time moving on restarts the counter. */
    ASSERT_EQ(ss_hlc_now(&c, 1001, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(1001, 0));
    /* Same millisecond: the counter advances. */
    ASSERT_EQ(ss_hlc_now(&c, 1001, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(1001, 1));
}

TEST(now_monotonic_when_clock_goes_backwards_and_jumps)
{
    /* A wall clock that steps back (NTP correction), stalls, jumps forward
     * and steps back again. */
    static const uint64_t pt[] = { 5000, 5001,  4000,  4000,  3999, 5001, 5002,  90000, 10,
                                   10,   89999, 90000, 90001, 1,    0,    90001, 90002 };
    ss_hlc c;
    ss_hlc_t prev = 0, h;
    uint64_t max_pt = 0;

    ss_hlc_init(&c, 0);
    for (size_t i = 0; i < sizeof(pt) / sizeof(pt[0]); i++) {
        ASSERT_EQ(ss_hlc_now(&c, pt[i], &h), 0);
        ASSERT_GT(h, prev);
        /* HLC never runs behind the largest physical time seen, and without
         * counter overflow never ahead of it either. */
        if (pt[i] > max_pt)
            max_pt = pt[i];
        ASSERT_U64_EQ(ss_hlc_ms(h), max_pt);
        prev = h;
    }
    ASSERT_U64_EQ(c.last, prev);
}

TEST(now_monotonic_random_walk)
{
    uint64_t seed = 0x9E3779B97F4A7C15u, pt = 1700000000000u;
    ss_hlc c;
    ss_hlc_t prev = 0, h;

    ss_hlc_init(&c, 0);
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rng_next(&seed);
        /* Mostly the same ms or small steps, sometimes big jumps either way. */
        switch (r % 8) {
        case 0:
            pt += r % 100000;
            break;
        case 1:
            pt -= r % 100000;
            break;
        case 2:
            pt += 1;
            break;
        default:
            break;
        }
        ASSERT_EQ(ss_hlc_now(&c, pt, &h), 0);
        ASSERT_GT(h, prev);
        ASSERT_GE(ss_hlc_ms(h), pt);
        prev = h;
    }
}

TEST(now_out_may_be_null)
{
    ss_hlc c;

    ss_hlc_init(&c, 0);
    ASSERT_EQ(ss_hlc_now(&c, 7, NULL), 0);
    ASSERT_U64_EQ(c.last, ss_hlc_make(7, 0));
}

TEST(counter_overflow_advances_logical_ms)
{
    const uint64_t pt = 1000;
    const int n = 65536 * 2 + 100;
    ss_hlc c;
    ss_hlc_t h = 0, prev = 0;

    ss_hlc_init(&c, 0);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(ss_hlc_now(&c, pt, &h), 0);
        ASSERT_GT(h, prev);
        /* The i-th stamp in one physical millisecond: counter i mod 65536,
         * and the logical ms one ahead per 65,536 events. */
        ASSERT_U64_EQ(ss_hlc_ms(h), pt + (uint64_t)i / 65536);
        ASSERT_EQ(ss_hlc_counter(h), (uint32_t)i % 65536);
        prev = h;
    }
    ASSERT_U64_EQ(h, ss_hlc_make(1002, 99));
    /* Physical time catching up to the logical ms continues the counter;
     * passing it restarts the counter. */
    ASSERT_EQ(ss_hlc_now(&c, 1002, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(1002, 100));
    ASSERT_EQ(ss_hlc_now(&c, 1003, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(1003, 0));
}

TEST(recv_remote_ahead)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, ss_hlc_make(100, 5));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(200, 7), 150, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 8));
    ASSERT_U64_EQ(c.last, h);
    /* The next local event continues after the remote stamp. */
    ASSERT_EQ(ss_hlc_now(&c, 160, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 9));
}

TEST(recv_remote_behind)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, ss_hlc_make(200, 3));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(100, 9), 150, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 4));
}

TEST(recv_equal_ms_takes_larger_counter)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, ss_hlc_make(200, 3));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(200, 9), 100, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 10));

    ss_hlc_init(&c, ss_hlc_make(200, 9));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(200, 3), 100, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 10));

    /* Identical stamps: still strictly greater than both. */
    ss_hlc_init(&c, ss_hlc_make(200, 9));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(200, 9), 200, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(200, 10));
}

TEST(recv_physical_time_ahead_of_both)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, ss_hlc_make(200, 3));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(250, 9), 300, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(300, 0));
    /* Physical time equal to the max ms: counter rule, not a restart. */
    ss_hlc_init(&c, ss_hlc_make(200, 3));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(300, 9), 300, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(300, 10));
}

TEST(recv_counter_overflow)
{
    ss_hlc c;
    ss_hlc_t h = 0;

    ss_hlc_init(&c, ss_hlc_make(100, 1));
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(200, SS_HLC_COUNTER_MAX), 150, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(201, 0));
}

TEST(recv_random_properties)
{
    uint64_t seed = 12345;
    ss_hlc c;
    ss_hlc_t prev = 0, h;
    uint64_t pt = 1000000;

    ss_hlc_init(&c, 0);
    for (int i = 0; i < 100000; i++) {
        uint64_t r = rng_next(&seed);
        ss_hlc_t remote = ss_hlc_make(pt + (r % 2001) - 1000, (uint32_t)(r >> 32));
        if (r & 0x100000) {
            ASSERT_EQ(ss_hlc_recv(&c, remote, pt, 0, &h), 0);
            ASSERT_GT(h, remote);
        } else {
            ASSERT_EQ(ss_hlc_now(&c, pt, &h), 0);
        }
        ASSERT_GT(h, prev);
        ASSERT_GE(ss_hlc_ms(h), pt);
        prev = h;
        pt += (r >> 40) % 3;
    }
}

TEST(recv_skew_refused_and_clock_unchanged)
{
    ss_hlc c;
    ss_hlc_t h = 42, before;

    ss_hlc_init(&c, ss_hlc_make(10000, 7));
    before = c.last;
    /* One ms beyond the tolerance. */
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(10000 + 5001, 0), 10000, 5000, &h), SS_ESKEW);
    ASSERT_U64_EQ(c.last, before);
    ASSERT_U64_EQ(h, 42);
    /* Far in the future, and at the very top of the range (no wrap-around in
     * the comparison). */
    ASSERT_EQ(ss_hlc_recv(&c, UINT64_MAX, 10000, 5000, &h), SS_ESKEW);
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(SS_HLC_MS_MAX, 0), 10000, UINT64_MAX - 5, &h), 0);
    ss_hlc_init(&c, before);
    ASSERT_U64_EQ(c.last, before);
    /* Exactly at the tolerance is accepted. */
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(15000, 3), 10000, 5000, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(15000, 4));
    /* max_ahead_ms == 0 trusts the remote (a gateway adopting the daemon's
     * time from WELCOME). */
    ss_hlc_init(&c, before);
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(99999999, 0), 10000, 0, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(99999999, 1));
    /* A remote in the past is never skew. */
    ss_hlc_init(&c, before);
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(1, 0), 10000, 1, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(10000, 8));
}

TEST(restart_from_persisted_value)
{
    const ss_hlc_t persisted = ss_hlc_make(1700000005000u, 17);
    ss_hlc c;
    ss_hlc_t h = 0;

    /* After a reboot the wall clock may be behind what was persisted. */
    ss_hlc_init(&c, persisted);
    ASSERT_U64_EQ(c.last, persisted);
    ASSERT_EQ(ss_hlc_now(&c, 1700000000000u, &h), 0);
    ASSERT_GT(h, persisted);
    ASSERT_U64_EQ(h, persisted + 1);
    /* Equal ms. */
    ss_hlc_init(&c, persisted);
    ASSERT_EQ(ss_hlc_now(&c, 1700000005000u, &h), 0);
    ASSERT_GT(h, persisted);
    /* Persisted at a full counter. */
    ss_hlc_init(&c, ss_hlc_make(500, SS_HLC_COUNTER_MAX));
    ASSERT_EQ(ss_hlc_now(&c, 400, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(501, 0));
    /* Receive right after restart. */
    ss_hlc_init(&c, persisted);
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(10, 0), 10, 0, &h), 0);
    ASSERT_GT(h, persisted);
    /* Many stamps after restart, all above the persisted value. */
    ss_hlc_init(&c, persisted);
    for (int i = 0; i < 1000; i++) {
        ASSERT_EQ(ss_hlc_now(&c, 1699999999000u + (uint64_t)i, &h), 0);
        ASSERT_GT(h, persisted);
    }
}

TEST(overflow_48_bits_is_eclock)
{
    ss_hlc c;
    ss_hlc_t h = 7, before;

    ss_hlc_init(&c, ss_hlc_make(1000, 0));
    before = c.last;
    ASSERT_EQ(ss_hlc_now(&c, SS_HLC_MS_MAX + 1, &h), SS_ECLOCK);
    ASSERT_EQ(ss_hlc_now(&c, UINT64_MAX, &h), SS_ECLOCK);
    ASSERT_EQ(ss_hlc_recv(&c, ss_hlc_make(1, 0), SS_HLC_MS_MAX + 1, 0, &h), SS_ECLOCK);
    ASSERT_U64_EQ(c.last, before);
    ASSERT_U64_EQ(h, 7);

    /* The top of the range: the last stamps, then a refusal, state kept. */
    ss_hlc_init(&c, ss_hlc_make(SS_HLC_MS_MAX, SS_HLC_COUNTER_MAX - 1));
    ASSERT_EQ(ss_hlc_now(&c, SS_HLC_MS_MAX, &h), 0);
    ASSERT_U64_EQ(h, UINT64_MAX);
    ASSERT_EQ(ss_hlc_now(&c, SS_HLC_MS_MAX, &h), SS_ECLOCK);
    ASSERT_EQ(ss_hlc_now(&c, 5, &h), SS_ECLOCK);
    ASSERT_U64_EQ(c.last, UINT64_MAX);

    /* A remote stamp with no successor. */
    ss_hlc_init(&c, 0);
    ASSERT_EQ(ss_hlc_recv(&c, UINT64_MAX, 1000, 0, &h), SS_ECLOCK);
    ASSERT_U64_EQ(c.last, 0);
    /* ms at its maximum is still usable. */
    ASSERT_EQ(ss_hlc_now(&c, SS_HLC_MS_MAX, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(SS_HLC_MS_MAX, 0));
}

TEST(text_format_and_parse)
{
    char buf[SS_HLC_TEXT_LEN + 1];
    ss_hlc_t h = 0;

    ASSERT_EQ(ss_hlc_format(0, buf, sizeof(buf)), 16);
    ASSERT_STR_EQ(buf, "0000000000000000");
    ASSERT_EQ(ss_hlc_format(ss_hlc_make(0x18C2E5A7D10u, 0xBEEF), buf, sizeof(buf)), 16);
    ASSERT_STR_EQ(buf, "018c2e5a7d10beef");
    ASSERT_EQ(ss_hlc_format(UINT64_MAX, buf, sizeof(buf)), 16);
    ASSERT_STR_EQ(buf, "ffffffffffffffff");
    ASSERT_EQ(ss_hlc_format(1, buf, 16), SS_ENOSPC);
    ASSERT_EQ(ss_hlc_format(1, NULL, 17), SS_ENOSPC);

    ASSERT_EQ(ss_hlc_parse("018C2E5A7D10BEEF", 16, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(0x18C2E5A7D10u, 0xBEEF));
    ASSERT_EQ(ss_hlc_parse("018c2e5A7d10BeEf", 16, &h), 0);
    ASSERT_U64_EQ(h, ss_hlc_make(0x18C2E5A7D10u, 0xBEEF));

    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        { "", 0 },
        { "018c2e5a7d10bee", 15 },
        { "018c2e5a7d10beef0", 17 },
        { "018c2e5a7d10beeg", 16 },
        { " 18c2e5a7d10beef", 16 },
        { "+18c2e5a7d10beef", 16 },
        { "0x8c2e5a7d10beef", 16 },
        { "018c2e5a7d1\0beef", 16 },
        { "-000000000000001", 16 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h = 99;
        ASSERT_EQ(ss_hlc_parse(bad[i].s, bad[i].len, &h), SS_EINVAL);
        ASSERT_U64_EQ(h, 99); /* untouched on error */
    }
    ASSERT_EQ(ss_hlc_parse(NULL, 16, &h), SS_EINVAL);
}

TEST(text_round_trip_random)
{
    uint64_t seed = 777;
    char buf[SS_HLC_TEXT_LEN + 1];

    for (int i = 0; i < 100000; i++) {
        ss_hlc_t h = rng_next(&seed), back = 0;
        ASSERT_EQ(ss_hlc_format(h, buf, sizeof(buf)), 16);
        ASSERT_EQ(strlen(buf), 16);
        for (int k = 0; k < 16; k++)
            ASSERT(strchr("0123456789abcdef", buf[k]) != NULL);
        ASSERT_EQ(ss_hlc_parse(buf, 16, &back), 0);
        ASSERT_U64_EQ(back, h);
    }
}

TEST(text_order_equals_numeric_order)
{
    enum { N = 3000 };
    static ss_hlc_t v[N];
    static char t[N][SS_HLC_TEXT_LEN + 1];
    uint64_t seed = 4242;

    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&seed);
        /* Mix full-range values with close neighbours (same ms, counter
         * differing) so both halves of the stamp decide some comparisons. */
        if (i % 3 == 1)
            v[i] = v[i - 1] + (r % 3);
        else if (i % 3 == 2)
            v[i] = ss_hlc_make(ss_hlc_ms(v[i - 1]), (uint32_t)r);
        else
            v[i] = r >> (r % 40);
        ASSERT_EQ(ss_hlc_format(v[i], t[i], sizeof(t[i])), 16);
    }
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N && j < i + 200; j++) {
            int c = strcmp(t[i], t[j]);
            int n = v[i] < v[j] ? -1 : v[i] > v[j] ? 1 : 0;
            ASSERT_EQ(c < 0 ? -1 : c > 0 ? 1 : 0, n);
        }
    }
}

TEST(human_form_vectors)
{
    char buf[40];

    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(0, 0), buf, sizeof(buf)), 29);
    ASSERT_STR_EQ(buf, "1970-01-01T00:00:00.000Z#0000");
    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(1796400213123u, 1), buf, sizeof(buf)), 29);
    ASSERT_STR_EQ(buf, "2026-12-04T16:03:33.123Z#0001");
    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(1709251199999u, 0xabcd), buf, sizeof(buf)), 29);
    ASSERT_STR_EQ(buf, "2024-02-29T23:59:59.999Z#abcd");
    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(951868800000u, 0xffff), buf, sizeof(buf)), 29);
    ASSERT_STR_EQ(buf, "2000-03-01T00:00:00.000Z#ffff");
    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(4107499200500u, 16), buf, sizeof(buf)), 29);
    ASSERT_STR_EQ(buf, "2100-02-28T12:00:00.500Z#0010");
    /* The largest 48-bit ms is in year 10889: five digits, 30 chars, which
     * is why the header asks for cap >= 31. */
    ASSERT_EQ(ss_hlc_format_human(UINT64_MAX, buf, 31), 30);
    ASSERT_STR_EQ(buf, "10889-08-02T05:31:50.655Z#ffff");
    /* Too small: error and an empty string, never a truncated time. */
    ASSERT_EQ(ss_hlc_format_human(ss_hlc_make(0, 0), buf, 29), SS_ENOSPC);
    ASSERT_STR_EQ(buf, "");
    ASSERT_EQ(ss_hlc_format_human(UINT64_MAX, buf, 30), SS_ENOSPC);
    ASSERT_EQ(ss_hlc_format_human(0, NULL, 0), SS_ENOSPC);
}

TEST(human_form_matches_gmtime_r)
{
    uint64_t seed = 99;
    char want[64], got[40];

    for (int i = 0; i < 20000; i++) {
        uint64_t r = rng_next(&seed);
        ss_hlc_t h = r >> (r % 24);
        uint64_t ms = ss_hlc_ms(h);
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        ASSERT(gmtime_r(&secs, &tm) != NULL);
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ#%04x", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000),
                 (unsigned)ss_hlc_counter(h));
        ASSERT_EQ(ss_hlc_format_human(h, got, sizeof(got)), (int)strlen(want));
        ASSERT_STR_EQ(got, want);
    }
}

#define HLC_TESTS                                                    \
    SS_TEST_ENTRY(now_starts_at_physical_time)                       \
    SS_TEST_ENTRY(now_monotonic_when_clock_goes_backwards_and_jumps) \
    SS_TEST_ENTRY(now_monotonic_random_walk)                         \
    SS_TEST_ENTRY(now_out_may_be_null)                               \
    SS_TEST_ENTRY(counter_overflow_advances_logical_ms)              \
    SS_TEST_ENTRY(recv_remote_ahead)                                 \
    SS_TEST_ENTRY(recv_remote_behind)                                \
    SS_TEST_ENTRY(recv_equal_ms_takes_larger_counter)                \
    SS_TEST_ENTRY(recv_physical_time_ahead_of_both)                  \
    SS_TEST_ENTRY(recv_counter_overflow)                             \
    SS_TEST_ENTRY(recv_random_properties)                            \
    SS_TEST_ENTRY(recv_skew_refused_and_clock_unchanged)             \
    SS_TEST_ENTRY(restart_from_persisted_value)                      \
    SS_TEST_ENTRY(overflow_48_bits_is_eclock)                        \
    SS_TEST_ENTRY(text_format_and_parse)                             \
    SS_TEST_ENTRY(text_round_trip_random)                            \
    SS_TEST_ENTRY(text_order_equals_numeric_order)                   \
    SS_TEST_ENTRY(human_form_vectors)                                \
    SS_TEST_ENTRY(human_form_matches_gmtime_r)

SS_TEST_MAIN(HLC_TESTS)
