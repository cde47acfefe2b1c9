/* test_relay_penalty.c - the hub's penalty table (gateway/src/
 * gw_relay_penalty.c): limit, window, penalty end, stragglers, independent
 * addresses, address keys from the shim's peer strings, off when the limit
 * is 0, and fixed memory under many more addresses than slots. */
#include <stdio.h>
#include <string.h>

#include "gw_relay_penalty.h"
#include "proto/err.h"
#include "ss_test.h"

static gw_penalty pen; /* 90 KB: not on the stack */

TEST(limit_window_penalty)
{
    gw_penalty_init(&pen, 3, 1000, 5000, 42);
    uint32_t fails = 0, nref = 0;
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 100, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 200, &fails), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 250, &nref), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 300, &fails), 1); /* the third starts it */
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 300, &nref), 5000);
    ASSERT_EQ(nref, 1);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 5299, &nref), 1);
    ASSERT_EQ(nref, 2);
    /* A straggler (accepted before the penalty) failing now: not counted. */
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 400, &fails), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 5300, &nref), 0); /* over */
    ASSERT_EQ(pen.penalised, 1);
    /* Another address is not concerned. */
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.2", 300, &nref), 0);
}

TEST(window_expires)
{
    gw_penalty_init(&pen, 3, 1000, 5000, 7);
    uint32_t fails = 0, nref = 0;
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 0, &fails), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 500, &fails), 0);
    /* The window passed: counting starts again. */
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 1500, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 1500, &nref), 0);
}

TEST(off_when_limit_zero)
{
    gw_penalty_init(&pen, 0, 1000, 5000, 1);
    uint32_t fails = 0, nref = 0;
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", i, &fails), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 100, &nref), 0);
}

TEST(keys)
{
    char k[GW_PENALTY_KEY];
    ASSERT_EQ(gw_penalty_key("127.0.0.2:40123", k, sizeof k), 0);
    ASSERT_STR_EQ(k, "127.0.0.2");
    ASSERT_EQ(gw_penalty_key("[2001:db8::1]:443", k, sizeof k), 0);
    ASSERT_STR_EQ(k, "2001:db8::1");
    ASSERT_EQ(gw_penalty_key("", k, sizeof k), SS_EINVAL);
    ASSERT_EQ(gw_penalty_key(":1", k, sizeof k), SS_EINVAL);
    char long_peer[128];
    memset(long_peer, 'a', sizeof long_peer - 1);
    long_peer[sizeof long_peer - 1] = '\0';
    ASSERT_EQ(gw_penalty_key(long_peer, k, sizeof k), SS_EINVAL);
    ASSERT_EQ(gw_penalty_key("1.2.3.4:5", k, 8), SS_EINVAL);
}

/* 16,384 addresses over a 1,024-slot table, each failing `limit` times in a
 * row: every one is penalised when it crosses the limit (the table evicts
 * the least recently active entries, never the one being counted), and
 * the most recent ones are still remembered. */
TEST(many_addresses_fixed_memory)
{
    gw_penalty_init(&pen, 2, 60000, 60000, 99);
    uint32_t fails = 0, nref = 0;
    int started = 0;
    for (int i = 0; i < 16384; i++) {
        char k[32];
        snprintf(k, sizeof k, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        started += gw_penalty_fail(&pen, k, i, &fails) == 0 ? 0 : 1;
        started += gw_penalty_fail(&pen, k, i, &fails);
    }
    ASSERT_EQ(started, 16384);
    ASSERT_GT(pen.evicted, 0);
    ASSERT_GT(gw_penalty_check(&pen, "10.0.63.255", 16384, &nref), 0); /* the last one */
    printf("many_addresses_fixed_memory: 16384 addresses, %zu-byte table, %llu evictions\n",
           sizeof pen, (unsigned long long)pen.evicted);
}

SS_TEST_MAIN(SS_TEST_ENTRY(limit_window_penalty) SS_TEST_ENTRY(window_expires)
                 SS_TEST_ENTRY(off_when_limit_zero) SS_TEST_ENTRY(keys)
                     SS_TEST_ENTRY(many_addresses_fixed_memory))
