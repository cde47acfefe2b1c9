/* test_penalty.c - proto's per-address penalty table (proto/src/penalty.c),
 * the one behind the daemon's and the relay hub's penalty boxes: limit,
 * window, penalty end, stragglers, per-address independence, IPv6 /64 and
 * v4-mapped keys, off at limit 0, fixed memory under more addresses than
 * slots (the most recent kept), address text parsing, init and free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/penalty.h"
#include "ss_test.h"

#define SLOTS 1024u

static uint64_t mem[SS_PENALTY_WORDS(SLOTS)]; /* 48 KB: not on the stack */

static ss_penalty *table(uint32_t limit, uint64_t window, uint64_t penalty)
{
    ss_penalty_cfg cfg = {
        .slots = SLOTS, .limit = limit, .window_ms = window, .penalty_ms = penalty, .seed = 42
    };
    ss_penalty *p = NULL;
    ASSERT_EQ(ss_penalty_init(&p, mem, sizeof mem, &cfg), 0);
    ASSERT(p != NULL);
    return p;
}

static ss_penalty_key key(const char *text)
{
    ss_penalty_key k;
    ASSERT_EQ(ss_penalty_key_parse(text, &k, NULL, 0), 0);
    return k;
}

static ss_penalty_stats stats(const ss_penalty *p)
{
    ss_penalty_stats st;
    ss_penalty_get_stats(p, &st);
    return st;
}

TEST(limit_then_penalty_then_fresh)
{
    ss_penalty *p = table(3, 1000, 500);
    ss_penalty_key a = key("10.1.2.3");
    uint32_t fails, nref;
    ASSERT_EQ(ss_penalty_fail(p, &a, 100, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(ss_penalty_fail(p, &a, 200, &fails), 0);
    ASSERT_EQ(fails, 2);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 250, &nref), 0);
    ASSERT_EQ(nref, 0);
    ASSERT_EQ(ss_penalty_fail(p, &a, 300, &fails), 1); /* the third starts it */
    ASSERT_EQ(fails, 3);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 300, &nref), 500);
    ASSERT_EQ(nref, 1);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 301, &nref), 499);
    ASSERT_EQ(nref, 2);
    /* Stragglers (accepted before the penalty) failing during it neither
     * extend nor restart it, and are not counted. */
    for (uint64_t t = 400; t < 410; t++) {
        ASSERT_EQ(ss_penalty_fail(p, &a, t, &fails), 0);
        ASSERT_EQ(fails, 0);
    }
    ASSERT_U64_EQ(stats(p).penalised, 1);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 799, &nref), 1);
    ASSERT_EQ(nref, 3);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 800, &nref), 0); /* over */
    ASSERT_EQ(nref, 0);
    ASSERT_U64_EQ(stats(p).refused, 3);
    /* Counting starts afresh after a penalty. */
    ASSERT_EQ(ss_penalty_fail(p, &a, 900, &fails), 0);
    ASSERT_EQ(fails, 1);
    ss_penalty_free(&p);
    ASSERT(p == NULL);
}

TEST(each_penalty_counts_its_own_refusals)
{
    /* A caller warns on a penalty's first refusal only: the second penalty
     * of an address must start again at 1, also when it falls in the window
     * of the first. */
    ss_penalty *p = table(2, 10000, 100);
    ss_penalty_key a = key("10.1.2.3");
    uint32_t fails, nref;
    ss_penalty_fail(p, &a, 0, &fails);
    ASSERT_EQ(ss_penalty_fail(p, &a, 1, &fails), 1);
    ASSERT_GT(ss_penalty_check(p, &a, 2, &nref), 0);
    ASSERT_GT(ss_penalty_check(p, &a, 3, &nref), 0);
    ASSERT_EQ(nref, 2);
    ss_penalty_fail(p, &a, 200, &fails);
    ASSERT_EQ(ss_penalty_fail(p, &a, 201, &fails), 1);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 202, &nref), 99);
    ASSERT_EQ(nref, 1);
    ASSERT_U64_EQ(stats(p).penalised, 2);
    ss_penalty_free(&p);
}

TEST(window_expiry_resets_count)
{
    ss_penalty *p = table(3, 1000, 500);
    ss_penalty_key a = key("10.1.2.3");
    uint32_t fails, nref;
    ASSERT_EQ(ss_penalty_fail(p, &a, 0, &fails), 0);
    ASSERT_EQ(ss_penalty_fail(p, &a, 999, &fails), 0);
    ASSERT_EQ(fails, 2);
    ASSERT_EQ(ss_penalty_fail(p, &a, 1000, &fails), 0); /* a new window */
    ASSERT_EQ(fails, 1);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 1000, &nref), 0);
    ss_penalty_free(&p);
}

TEST(addresses_are_independent)
{
    ss_penalty *p = table(2, 1000, 500);
    ss_penalty_key a = key("127.0.0.2"), b = key("127.0.0.1");
    uint32_t fails, nref;
    ss_penalty_fail(p, &a, 10, &fails);
    ASSERT_EQ(ss_penalty_fail(p, &b, 15, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(ss_penalty_fail(p, &a, 20, &fails), 1);
    ASSERT_GT(ss_penalty_check(p, &a, 30, &nref), 0);
    ASSERT_U64_EQ(ss_penalty_check(p, &b, 30, &nref), 0);
    ss_penalty_free(&p);
}

TEST(ipv6_keyed_by_slash64_and_v4_mapped)
{
    ss_penalty *p = table(2, 1000, 500);
    ss_penalty_key a = key("2001:db8:1:2::1"), b = key("[2001:db8:1:2:ffff::9]:443"),
                   c = key("2001:db8:1:3::1");
    uint32_t fails, nref;
    ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
    ASSERT_NE(memcmp(&a, &c, sizeof a), 0);
    ss_penalty_fail(p, &a, 10, &fails);
    ASSERT_EQ(ss_penalty_fail(p, &b, 20, &fails), 1); /* the same /64 */
    ASSERT_GT(ss_penalty_check(p, &a, 30, &nref), 0);
    ASSERT_U64_EQ(ss_penalty_check(p, &c, 30, &nref), 0);
    /* Binary and text forms agree; a v4-mapped address is the IPv4 host. */
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0xab, 0xcd };
    ss_penalty_key kb;
    ss_penalty_key_v6(&kb, v6);
    ASSERT_EQ(memcmp(&kb, &a, sizeof kb), 0);
    static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7 };
    static const uint8_t four[4] = { 192, 0, 2, 7 };
    ss_penalty_key m, d;
    ss_penalty_key_v6(&m, mapped);
    ss_penalty_key_v4(&d, four);
    ASSERT_EQ(m.family, 4);
    ASSERT_EQ(memcmp(&m, &d, sizeof m), 0);
    ss_penalty_key t1 = key("::ffff:192.0.2.7"), t2 = key("[::ffff:c000:207]:1"),
                   t3 = key("192.0.2.7:5");
    ASSERT_EQ(memcmp(&t1, &d, sizeof d), 0);
    ASSERT_EQ(memcmp(&t2, &d, sizeof d), 0);
    ASSERT_EQ(memcmp(&t3, &d, sizeof d), 0);
    ss_penalty_free(&p);
}

TEST(disabled_with_limit_zero)
{
    ss_penalty *p = table(0, 1000, 500);
    ss_penalty_key a = key("10.0.0.1");
    uint32_t fails, nref;
    for (uint64_t i = 0; i < 100; i++) {
        ASSERT_EQ(ss_penalty_fail(p, &a, i, &fails), 0);
        ASSERT_EQ(fails, 0);
    }
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 100, &nref), 0);
    ASSERT_U64_EQ(stats(p).penalised, 0);
    ss_penalty_free(&p);
}

TEST(no_key_is_never_penalised)
{
    ss_penalty *p = table(1, 1000, 500);
    ss_penalty_key none;
    memset(&none, 0, sizeof none);
    uint32_t fails, nref;
    ASSERT_EQ(ss_penalty_fail(p, &none, 1, &fails), 0);
    ASSERT_U64_EQ(ss_penalty_check(p, &none, 2, &nref), 0);
    ss_penalty_free(&p);
}

TEST(many_addresses_fixed_memory_keeps_most_recent)
{
    /* Sixteen times more attacking addresses than slots, each failing
     * `limit` times in a row: every one is penalised when it crosses the
     * limit (the table evicts the least recently active entries, never the
     * one being counted), and the most recent ones are still remembered. */
    ss_penalty *p = table(2, 60000, 60000);
    uint32_t fails, nref;
    int n = (int)SLOTS * 16, started = 0;
    for (int i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        ss_penalty_key k = key(ip);
        started += ss_penalty_fail(p, &k, (uint64_t)i, &fails);
        started += ss_penalty_fail(p, &k, (uint64_t)i, &fails);
    }
    ASSERT_EQ(started, n);
    ASSERT_U64_EQ(stats(p).penalised, (uint64_t)n);
    ASSERT_GE(stats(p).evicted, (uint64_t)(n - (int)SLOTS));
    /* The last few addresses are remembered and penalised; the first was
     * evicted long ago. */
    for (int i = n - 4; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        ss_penalty_key k = key(ip);
        ASSERT_GT(ss_penalty_check(p, &k, (uint64_t)n, &nref), 0);
    }
    ss_penalty_key first = key("10.0.0.0");
    ASSERT_U64_EQ(ss_penalty_check(p, &first, (uint64_t)n, &nref), 0);
    ss_penalty_free(&p);
}

/* Address texts: what parses, to which host part and key. */
static const struct {
    const char *peer, *host, *key; /* key: family byte then 8 bytes, hex; NULL: invalid */
} vectors[] = {
    { "127.0.0.2:40123", "127.0.0.2", "047f00000200000000" },
    { "127.0.0.2", "127.0.0.2", "047f00000200000000" },
    { "0.0.0.0:1", "0.0.0.0", "040000000000000000" },
    { "255.255.255.255", "255.255.255.255", "04ffffffff00000000" },
    { "[2001:db8::1]:443", "2001:db8::1", "0620010db800000000" },
    { "2001:db8::1", "2001:db8::1", "0620010db800000000" },
    { "[2001:DB8:a:B::]", "2001:DB8:a:B::", "0620010db8000a000b" },
    { "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", "060001000200030004" },
    { "::", "::", "060000000000000000" },
    { "[::1]:65535", "::1", "060000000000000000" },
    { "1::", "1::", "060001000000000000" },
    { "::ffff:10.0.0.1", "::ffff:10.0.0.1", "040a00000100000000" },
    { "64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1", "060064ff9b00000000" },
    { "", NULL, NULL },
    { ":1", NULL, NULL },
    { "1.2.3", NULL, NULL },
    { "1.2.3.4.5", NULL, NULL },
    { "1.2.3.256", NULL, NULL },
    { "01.2.3.4", NULL, NULL },
    { "1.2.3.4:", NULL, NULL },
    { "1.2.3.4:123456", NULL, NULL },
    { "1.2.3.4:8x", NULL, NULL },
    { "a.b.c.d", NULL, NULL },
    { "localhost:80", NULL, NULL },
    { "[1.2.3.4]:80", NULL, NULL },
    { "[::1", NULL, NULL },
    { "[::1]80", NULL, NULL },
    { "[::1]:", NULL, NULL },
    { "[]:1", NULL, NULL },
    { ":::", NULL, NULL },
    { "1:2", NULL, NULL },
    { "1::2::3", NULL, NULL },
    { "1:2:3:4:5:6:7:8:9", NULL, NULL },
    { "1:2:3:4:5:6:7::8", NULL, NULL },
    { "12345::", NULL, NULL },
    { "1:", NULL, NULL },
    { "1::2:", NULL, NULL },
    { "g::1", NULL, NULL },
    { "1:2:3:4:5:6:7:1.2.3.4", NULL, NULL },
    { "::1.2.3", NULL, NULL },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::1", NULL, NULL },
};

TEST(parse_vectors)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        ss_penalty_key k;
        char host[48], hex[2 * sizeof k + 1];
        int rc = ss_penalty_key_parse(vectors[i].peer, &k, host, sizeof host);
        if (!vectors[i].key) {
            if (rc != SS_EINVAL)
                SS_TEST_FAIL("\"%s\" parsed (rc %d), want SS_EINVAL", vectors[i].peer, rc);
            ASSERT_EQ(k.family, 0);
            continue;
        }
        if (rc != 0)
            SS_TEST_FAIL("\"%s\" rc %d, want 0", vectors[i].peer, rc);
        ASSERT_STR_EQ(host, vectors[i].host);
        const uint8_t *b = (const uint8_t *)&k;
        for (size_t j = 0; j < sizeof k; j++)
            snprintf(hex + 2 * j, 3, "%02x", b[j]);
        ASSERT_STR_EQ(hex, vectors[i].key);
    }
    /* The host part must fit the caller's buffer. */
    ss_penalty_key k;
    char small[8];
    ASSERT_EQ(ss_penalty_key_parse("1.2.3.4:5", &k, small, sizeof small), 0);
    ASSERT_EQ(ss_penalty_key_parse("10.20.30.40:5", &k, small, sizeof small), SS_EINVAL);
    ASSERT_EQ(ss_penalty_key_parse(NULL, &k, NULL, 0), SS_EINVAL);
    ASSERT_EQ(ss_penalty_key_parse("1.2.3.4", NULL, NULL, 0), SS_EINVAL);
}

TEST(init_checks_its_arguments)
{
    ss_penalty *p = (ss_penalty *)1;
    ss_penalty_cfg cfg = { .slots = SLOTS, .limit = 1, .window_ms = 1, .penalty_ms = 1 };
    ASSERT_EQ(ss_penalty_init(&p, mem, sizeof mem, NULL), SS_EINVAL);
    ASSERT(p == NULL);
    ASSERT_EQ(ss_penalty_init(NULL, mem, sizeof mem, &cfg), SS_EINVAL);
    static const uint32_t bad[] = { 0, 1, 4, 12, 1000, (1u << 20) * 2 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.slots = bad[i];
        ASSERT_EQ(ss_penalty_init(&p, mem, sizeof mem, &cfg), SS_EINVAL);
    }
    cfg.slots = SLOTS;
    ASSERT_EQ(ss_penalty_init(&p, mem, sizeof mem - 1, &cfg), SS_EINVAL); /* short */
    ASSERT_EQ(ss_penalty_init(&p, (char *)mem + 4, sizeof mem - 8, &cfg), SS_EINVAL);
    ASSERT(p == NULL);
    cfg.slots = 8; /* the smallest: one probe run */
    ASSERT_EQ(ss_penalty_init(&p, mem, SS_PENALTY_BYTES(8), &cfg), 0);
    ss_penalty_free(&p);
    ss_penalty_free(&p); /* safe twice */
    ss_penalty_free(NULL);
}

static int fail_next;
static void *maybe_malloc(size_t n)
{
    return fail_next ? NULL : malloc(n);
}
static const ss_allocator failing = { maybe_malloc, realloc, free };

TEST(heap_table_and_allocation_failure)
{
    ss_set_allocator(&failing);
    ss_penalty_cfg cfg = { .slots = 4096, .limit = 1, .window_ms = 100, .penalty_ms = 100 };
    ss_penalty *p = NULL;
    fail_next = 1;
    ASSERT_EQ(ss_penalty_init(&p, NULL, 0, &cfg), SS_ENOMEM);
    ASSERT(p == NULL);
    fail_next = 0;
    ASSERT_EQ(ss_penalty_init(&p, NULL, 0, &cfg), 0);
    ss_penalty_key a = key("[fe80::1]:9");
    uint32_t fails, nref;
    ASSERT_EQ(ss_penalty_fail(p, &a, 5, &fails), 1);
    ASSERT_U64_EQ(ss_penalty_check(p, &a, 6, &nref), 99);
    ss_penalty_free(&p); /* ASan: freed, not leaked */
    ASSERT(p == NULL);
    ss_set_allocator(NULL);
}

SS_TEST_MAIN(
    SS_TEST_ENTRY(limit_then_penalty_then_fresh) SS_TEST_ENTRY(each_penalty_counts_its_own_refusals)
        SS_TEST_ENTRY(window_expiry_resets_count) SS_TEST_ENTRY(addresses_are_independent)
            SS_TEST_ENTRY(ipv6_keyed_by_slash64_and_v4_mapped)
                SS_TEST_ENTRY(disabled_with_limit_zero) SS_TEST_ENTRY(no_key_is_never_penalised)
                    SS_TEST_ENTRY(many_addresses_fixed_memory_keeps_most_recent)
                        SS_TEST_ENTRY(parse_vectors) SS_TEST_ENTRY(init_checks_its_arguments)
                            SS_TEST_ENTRY(heap_table_and_allocation_failure))
