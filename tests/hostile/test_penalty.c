/* test_penalty.c - the daemon's per-address penalty table for failed
 * handshakes (daemon/src/sd_penalty.c): counting within a window, the
 * penalty and its end, per-address independence, IPv6 /64 keying, and fixed
 * memory under an attack from more addresses than it has slots. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

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

TEST(limit_then_penalty_then_fresh)
{
    sd_penalty *p = new_table(3, 1000, 500);
    sd_addr_key a = v4("10.1.2.3");
    uint64_t fails;
    uint32_t nref;
    ASSERT_EQ(sd__penalty_fail(p, &a, 100, &fails), 0);
    ASSERT_EQ(fails, 1);
    ASSERT_EQ(sd__penalty_fail(p, &a, 200, &fails), 0);
    ASSERT_EQ(sd__penalty_check(p, &a, 250, &nref), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 300, &fails), 1); /* third: penalised */
    ASSERT_EQ(sd__penalty_check(p, &a, 301, &nref), 499);
    ASSERT_EQ(nref, 1);
    /* Stragglers failing during the penalty neither extend nor restart it. */
    ASSERT_EQ(sd__penalty_fail(p, &a, 400, &fails), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 401, &fails), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 402, &fails), 0);
    ASSERT_EQ(p->penalised, 1);
    ASSERT_EQ(sd__penalty_check(p, &a, 799, &nref), 1);
    ASSERT_EQ(nref, 2);
    ASSERT_EQ(sd__penalty_check(p, &a, 800, &nref), 0); /* over */
    /* Counting starts afresh after a penalty. */
    ASSERT_EQ(sd__penalty_fail(p, &a, 900, &fails), 0);
    ASSERT_EQ(fails, 1);
    free(p);
}

TEST(window_expiry_resets_count)
{
    sd_penalty *p = new_table(3, 1000, 500);
    sd_addr_key a = v4("10.1.2.3");
    uint64_t fails;
    ASSERT_EQ(sd__penalty_fail(p, &a, 0, &fails), 0);
    ASSERT_EQ(sd__penalty_fail(p, &a, 999, &fails), 0);
    ASSERT_EQ(fails, 2);
    ASSERT_EQ(sd__penalty_fail(p, &a, 1000, &fails), 0); /* new window */
    ASSERT_EQ(fails, 1);
    free(p);
}

TEST(addresses_are_independent)
{
    sd_penalty *p = new_table(2, 1000, 500);
    sd_addr_key a = v4("127.0.0.2"), b = v4("127.0.0.1");
    uint64_t fails;
    uint32_t nref;
    sd__penalty_fail(p, &a, 10, &fails);
    ASSERT_EQ(sd__penalty_fail(p, &a, 20, &fails), 1);
    ASSERT_GT(sd__penalty_check(p, &a, 30, &nref), 0);
    ASSERT_EQ(sd__penalty_check(p, &b, 30, &nref), 0);
    free(p);
}

TEST(ipv6_keyed_by_slash64_and_mapped_v4)
{
    sd_penalty *p = new_table(2, 1000, 500);
    sd_addr_key a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                c = v6("2001:db8:1:3::1");
    uint64_t fails;
    uint32_t nref;
    ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
    sd__penalty_fail(p, &a, 10, &fails);
    ASSERT_EQ(sd__penalty_fail(p, &b, 20, &fails), 1); /* same /64 */
    ASSERT_GT(sd__penalty_check(p, &a, 30, &nref), 0);
    ASSERT_EQ(sd__penalty_check(p, &c, 30, &nref), 0);
    sd_addr_key m = v6("::ffff:192.0.2.7"), d = v4("192.0.2.7");
    ASSERT_EQ(memcmp(&m, &d, sizeof m), 0);
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
    free(p);
}

TEST(many_addresses_fixed_memory)
{
    /* Four times more attacking addresses than slots, each over the limit:
     * the table stays the same size, every address is penalised when it
     * crosses the limit, and the most recent ones are still remembered. */
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
    ASSERT_GE(p->evicted, (uint64_t)(n - SD_PENALTY_SLOTS));
    /* The last address is remembered and penalised. */
    char ip[32];
    snprintf(ip, sizeof ip, "10.%d.%d.%d", ((n - 1) >> 16) & 255, ((n - 1) >> 8) & 255,
             (n - 1) & 255);
    sd_addr_key last = v4(ip);
    ASSERT_GT(sd__penalty_check(p, &last, (uint64_t)n, &nref), 0);
    free(p);
}

SS_TEST_MAIN(SS_TEST_ENTRY(limit_then_penalty_then_fresh) SS_TEST_ENTRY(window_expiry_resets_count)
                 SS_TEST_ENTRY(addresses_are_independent)
                     SS_TEST_ENTRY(ipv6_keyed_by_slash64_and_mapped_v4)
                         SS_TEST_ENTRY(disabled_with_limit_zero)
                             SS_TEST_ENTRY(many_addresses_fixed_memory))
