/* test_relay_penalty.c - the hub's penalty box wrapper (gateway/src/
 * gw_relay_penalty.c) over proto's table: keys from the shim's peer
 * strings (checked to be IP addresses, IPv6 counted by /64, v4-mapped as
 * IPv4), and the calls and totals the relay uses, on a table of the hub's
 * size. The table's own behaviour is tested in tests/proto/test_penalty.c. */
#include <stdio.h>
#include <string.h>

#include "gw_relay_penalty.h"
#include "proto/err.h"
#include "ss_test.h"

static gw_penalty pen; /* 48 KB: not on the stack */

TEST(keys)
{
    char k[GW_PENALTY_KEY];
    ASSERT_EQ(gw_penalty_key("127.0.0.2:40123", k, sizeof k), 0);
    ASSERT_STR_EQ(k, "127.0.0.2");
    ASSERT_EQ(gw_penalty_key("[2001:db8::1]:443", k, sizeof k), 0);
    ASSERT_STR_EQ(k, "2001:db8::1");
    ASSERT_EQ(gw_penalty_key("", k, sizeof k), SS_EINVAL);
    ASSERT_EQ(gw_penalty_key(":1", k, sizeof k), SS_EINVAL);
    ASSERT_EQ(gw_penalty_key("localhost:1", k, sizeof k), SS_EINVAL); /* not an address */
    ASSERT_EQ(gw_penalty_key(NULL, k, sizeof k), SS_EINVAL);
    char long_peer[128];
    memset(long_peer, 'a', sizeof long_peer - 1);
    long_peer[sizeof long_peer - 1] = '\0';
    ASSERT_EQ(gw_penalty_key(long_peer, k, sizeof k), SS_EINVAL);
    ASSERT_EQ(gw_penalty_key("1.2.3.4:5", k, 8), SS_EINVAL);
}

TEST(limit_window_penalty)
{
    gw_penalty_init(&pen, 3, 1000, 5000, 42);
    ASSERT_EQ(pen.limit, 3); /* what the relay logs */
    ASSERT_EQ(pen.penalty_ms, 5000);
    uint32_t fails = 0, nref = 0;
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 100, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 200, &fails), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 250, &nref), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 300, &fails), 1); /* the third starts it */
    ASSERT_EQ(pen.penalised, 1);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 300, &nref), 5000);
    ASSERT_EQ(nref, 1);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", 400, &fails), 0); /* a straggler */
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 5299, &nref), 1);
    ASSERT_EQ(nref, 2);
    ss_penalty_stats st;
    ss_penalty_get_stats(pen.t, &st);
    ASSERT_EQ(st.refused, 2);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 5300, &nref), 0); /* over */
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.2", 300, &nref), 0);
    /* Not an address, or a clock before 0: nothing counted. */
    ASSERT_EQ(gw_penalty_fail(&pen, "", 6000, &fails), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", -1, &fails), 0);
    ASSERT_EQ(fails, 0);
}

TEST(ipv6_by_slash64_and_v4_mapped)
{
    /* A host rotating through the addresses of its /64 is one address. */
    gw_penalty_init(&pen, 2, 1000, 5000, 7);
    uint32_t fails = 0, nref = 0;
    char k1[GW_PENALTY_KEY], k2[GW_PENALTY_KEY];
    ASSERT_EQ(gw_penalty_key("[2001:db8:5:6::1]:40000", k1, sizeof k1), 0);
    ASSERT_EQ(gw_penalty_key("[2001:db8:5:6:a:b:c:d]:40001", k2, sizeof k2), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, k1, 10, &fails), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, k2, 20, &fails), 1);
    ASSERT_GT(gw_penalty_check(&pen, "2001:db8:5:6::ffff", 30, &nref), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "2001:db8:5:7::1", 30, &nref), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "::ffff:10.9.9.9", 40, &fails), 0);
    ASSERT_EQ(gw_penalty_fail(&pen, "10.9.9.9", 50, &fails), 1);
    ASSERT_GT(gw_penalty_check(&pen, "::ffff:10.9.9.9", 60, &nref), 0);
}

TEST(off_when_limit_zero)
{
    gw_penalty_init(&pen, 0, 1000, 5000, 1);
    uint32_t fails = 0, nref = 0;
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(gw_penalty_fail(&pen, "10.0.0.1", i, &fails), 0);
    ASSERT_EQ(gw_penalty_check(&pen, "10.0.0.1", 100, &nref), 0);
    ASSERT_EQ(pen.penalised, 0);
}

/* The hub's table size: 16,384 addresses over 1,024 slots, all penalised
 * when they cross the limit, the most recent still remembered. */
TEST(many_addresses_fixed_memory)
{
    gw_penalty_init(&pen, 2, 60000, 60000, 99);
    uint32_t fails = 0, nref = 0;
    int started = 0;
    for (int i = 0; i < 16384; i++) {
        char k[32];
        snprintf(k, sizeof k, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        started += gw_penalty_fail(&pen, k, i, &fails);
        started += gw_penalty_fail(&pen, k, i, &fails);
    }
    ASSERT_EQ(started, 16384);
    ss_penalty_stats st;
    ss_penalty_get_stats(pen.t, &st);
    ASSERT_GE(st.evicted, 16384 - GW_PENALTY_SLOTS);
    ASSERT_EQ(pen.penalised, 16384);
    ASSERT_GT(gw_penalty_check(&pen, "10.0.63.255", 16384, &nref), 0); /* the last one */
    printf("many_addresses_fixed_memory: 16384 addresses, %zu-byte table, %llu evictions\n",
           sizeof pen, (unsigned long long)st.evicted);
}

SS_TEST_MAIN(SS_TEST_ENTRY(keys) SS_TEST_ENTRY(limit_window_penalty)
                 SS_TEST_ENTRY(ipv6_by_slash64_and_v4_mapped) SS_TEST_ENTRY(off_when_limit_zero)
                     SS_TEST_ENTRY(many_addresses_fixed_memory))
