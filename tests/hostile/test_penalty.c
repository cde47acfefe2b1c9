/* test_penalty.c - the daemon's penalty box wrapper (daemon/src/sd_penalty.c)
 * over proto's table: keys from sockaddrs (IPv4, IPv6 /64, v4-mapped, other
 * families refused), and the calls and totals the listener uses, on a table
 * of the daemon's size. The table's own behaviour is tested in
 * tests/proto/test_penalty.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proto/err.h"
#include "sd_net.h"
#include "ss_test.h"

static sd_addr_key v4(const char *ip)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    sd_addr_key k;
    ASSERT_EQ(sd__penalty_key((struct sockaddr *)&sa, &k), 0);
    return k;
}

static sd_addr_key v6(const char *ip)
{
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
    sd_addr_key k;
    ASSERT_EQ(sd__penalty_key((struct sockaddr *)&sa, &k), 0);
    return k;
}

static sd_penalty *new_table(uint64_t limit, uint64_t window, uint64_t penalty)
{
    sd_penalty *p = malloc(sizeof *p);
    ASSERT(p != NULL);
    sd__penalty_init(p, limit, window, penalty, 42);
    return p;
}

TEST(sockaddr_keys)
{
    sd_addr_key a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                c = v6("2001:db8:1:3::1");
    ASSERT_EQ(a.family, 6);
    ASSERT_EQ(memcmp(&a, &b, sizeof a), 0); /* the same /64 */
    ASSERT_NE(memcmp(&a, &c, sizeof a), 0);
    sd_addr_key m = v6("::ffff:192.0.2.7"), d = v4("192.0.2.7");
    ASSERT_EQ(d.family, 4);
    ASSERT_EQ(memcmp(&m, &d, sizeof m), 0); /* v4-mapped: the IPv4 host */
    /* The same keys as the hub gets from the peer's text. */
    ss_penalty_key t;
    ASSERT_EQ(ss_penalty_key_parse("[2001:db8:1:2::77]:443", &t, NULL, 0), 0);
    ASSERT_EQ(memcmp(&t, &a, sizeof t), 0);
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    sd_addr_key k;
    ASSERT_EQ(sd__penalty_key((struct sockaddr *)&un, &k), SS_EINVAL);
    ASSERT_EQ(k.family, 0);
}

TEST(limit_penalty_and_totals)
{
    sd_penalty *p = new_table(3, 1000, 500);
    sd_addr_key a = v4("10.1.2.3"), b = v4("10.1.2.4");
    uint64_t fails;
    uint32_t nref;
    ASSERT_EQ(sd__penalty_fail(p, &a, 100, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(sd__penalty_fail(p, &a, 200, &fails), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 300, &fails), 1);
    ASSERT_EQ(fails, 3);
    ASSERT_EQ(p->penalised, 1); /* what the listener logs */
    ASSERT_EQ(sd__penalty_check(p, &a, 301, &nref), 499);
    ASSERT_EQ(nref, 1);
    ASSERT_EQ(sd__penalty_check(p, &b, 301, &nref), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 400, &fails), 0); /* a straggler */
    ASSERT_EQ(sd__penalty_check(p, &a, 799, &nref), 1);
    ASSERT_EQ(nref, 2);
    ss_penalty_stats st;
    ss_penalty_get_stats(p->t, &st);
    ASSERT_EQ(st.refused, 2);
    ASSERT_EQ(st.penalised, p->penalised);
    ASSERT_EQ(sd__penalty_check(p, &a, 800, &nref), 0);
    free(p);
}

TEST(disabled_with_limit_zero)
{
    sd_penalty *p = new_table(0, 1000, 500);
    sd_addr_key a = v4("10.0.0.1");
    uint64_t fails;
    uint32_t nref;
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(sd__penalty_fail(p, &a, (uint64_t)i, &fails), 0);
    ASSERT_EQ(sd__penalty_check(p, &a, 100, &nref), 0);
    ASSERT_EQ(p->penalised, 0);
    free(p);
}

TEST(many_addresses_fixed_memory)
{
    /* The daemon's table size: four times more addresses than slots, each
     * over the limit, all penalised; the last one still remembered. */
    sd_penalty *p = new_table(2, 60000, 60000);
    uint64_t fails;
    uint32_t nref;
    int n = SD_PENALTY_SLOTS * 4, penalised = 0;
    for (int i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        sd_addr_key k = v4(ip);
        sd__penalty_fail(p, &k, (uint64_t)i, &fails);
        penalised += sd__penalty_fail(p, &k, (uint64_t)i, &fails);
    }
    ASSERT_EQ(penalised, n);
    ss_penalty_stats st;
    ss_penalty_get_stats(p->t, &st);
    ASSERT_GE(st.evicted, (uint64_t)(n - SD_PENALTY_SLOTS));
    ASSERT_EQ(p->penalised, (uint64_t)n);
    char ip[32];
    snprintf(ip, sizeof ip, "10.%d.%d.%d", ((n - 1) >> 16) & 255, ((n - 1) >> 8) & 255,
             (n - 1) & 255);
    sd_addr_key last = v4(ip);
    ASSERT_GT(sd__penalty_check(p, &last, (uint64_t)n, &nref), 0);
    free(p);
}

SS_TEST_MAIN(SS_TEST_ENTRY(sockaddr_keys) SS_TEST_ENTRY(limit_penalty_and_totals)
                 SS_TEST_ENTRY(disabled_with_limit_zero) SS_TEST_ENTRY(many_addresses_fixed_memory))
