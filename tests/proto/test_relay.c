/* test_relay.c - the route prefix of forwarded BATCH frames and the origin
 * signature block: layouts, limits and every truncation. */
#include "ss_test.h"

#include "proto/err.h"
#include "proto/relay.h"

static ss_route route_of(int n)
{
    ss_route r = { 0 };
    char id[16];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "hub-%d", i);
        ASSERT_EQ(ss_route_push(&r, id), 0);
    }
    return r;
}

TEST(route_round_trip_and_layout)
{
    ss_route r = route_of(2), back;
    uint8_t buf[64];
    size_t off = 0;
    ASSERT_EQ(ss_route_len(&r), 1 + 6 + 6);
    ASSERT_EQ(ss_route_write(buf, sizeof(buf), &r), 13);
    const uint8_t want[] = { 2, 5, 'h', 'u', 'b', '-', '0', 5, 'h', 'u', 'b', '-', '1' };
    ASSERT_MEM_EQ(buf, want, sizeof(want));
    buf[13] = 0xAB; /* first envelope byte */
    ASSERT_EQ(ss_route_parse(buf, 14, &back, &off), 0);
    ASSERT_EQ(off, 13);
    ASSERT_EQ(back.nhops, 2);
    ASSERT_STR_EQ(back.hops[0], "hub-0");
    ASSERT_STR_EQ(back.hops[1], "hub-1");
}

TEST(route_truncated_at_every_byte)
{
    ss_route r = route_of(3), back;
    uint8_t buf[64];
    size_t off;
    int n = ss_route_write(buf, sizeof(buf), &r);
    ASSERT_GT(n, 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(ss_route_parse(buf, (size_t)i, &back, &off), SS_ETRUNC);
    ASSERT_EQ(ss_route_parse(buf, (size_t)n, &back, &off), 0);
    ASSERT_EQ(ss_route_write(buf, (size_t)n - 1, &r), SS_ENOSPC);
}

TEST(route_limits_and_bad_ids)
{
    ss_route r = route_of(SS_ROUTE_MAX_HOPS), back;
    uint8_t buf[256];
    size_t off;
    ASSERT_EQ(ss_route_push(&r, "one-too-many"), SS_ELIMIT);
    ASSERT_EQ(ss_route_push(&r, "Bad/Id"), SS_EID);
    uint8_t zero[] = { 0 };
    ASSERT_EQ(ss_route_parse(zero, 1, &back, &off), SS_ELIMIT);
    uint8_t nine[] = { SS_ROUTE_MAX_HOPS + 1 };
    ASSERT_EQ(ss_route_parse(nine, 1, &back, &off), SS_ELIMIT);
    uint8_t bad[] = { 1, 3, 'a', '/', 'b' };
    ASSERT_EQ(ss_route_parse(bad, sizeof(bad), &back, &off), SS_EID);
    uint8_t empty_hop[] = { 1, 0 };
    ASSERT_EQ(ss_route_parse(empty_hop, sizeof(empty_hop), &back, &off), SS_EID);
    ss_route none = { 0 };
    ASSERT_EQ(ss_route_write(buf, sizeof(buf), &none), SS_ELIMIT);
}

TEST(route_format_paths)
{
    char buf[128];
    ss_route r = route_of(2);
    ASSERT_EQ(ss_route_format(NULL, NULL, buf, sizeof(buf)), 6);
    ASSERT_STR_EQ(buf, "direct");
    ASSERT_GT(ss_route_format(NULL, "hub-top", buf, sizeof(buf)), 0);
    ASSERT_STR_EQ(buf, "via hub-top");
    ASSERT_GT(ss_route_format(&r, "hub-top", buf, sizeof(buf)), 0);
    ASSERT_STR_EQ(buf, "via hub-0,hub-1,hub-top");
    ASSERT_EQ(ss_route_format(&r, "hub-top", buf, 10), SS_ENOSPC);
}

/* A signed envelope around a one-change body, with the given trailer. */
static size_t signed_env(uint8_t *buf, size_t cap, const uint8_t *cert, size_t cert_len,
                         const uint8_t *sig, size_t sig_len)
{
    static const char body[] = "[{}]";
    int h = ss_envelope_write_header(buf, cap, "gw-a", 1, 1, 4, SS_ENV_FLAG_SIGNED);
    ASSERT_GT(h, 0);
    memcpy(buf + h, body, 4);
    int t = ss_sig_write_trailer(buf + h + 4, cap - (size_t)h - 4, cert, cert_len, sig, sig_len);
    ASSERT_GT(t, 0);
    ASSERT_EQ((size_t)t, ss_sig_trailer_len(cert_len, sig_len));
    return (size_t)h + 4 + (size_t)t;
}

TEST(sig_block_round_trip)
{
    uint8_t cert[300], sig[70], buf[1024];
    for (size_t i = 0; i < sizeof(cert); i++)
        cert[i] = (uint8_t)i;
    memset(sig, 0x5A, sizeof(sig));
    size_t n = signed_env(buf, sizeof(buf), cert, sizeof(cert), sig, sizeof(sig));
    ss_envelope env;
    ss_sig s;
    ASSERT_EQ(ss_envelope_parse(buf, n, &env), 0);
    ASSERT_EQ(ss_sig_parse(&env, &s), 0);
    ASSERT_EQ(s.alg, SS_SIG_ECDSA_P256_SHA256);
    ASSERT_EQ(s.cert_len, sizeof(cert));
    ASSERT_MEM_EQ(s.cert, cert, sizeof(cert));
    ASSERT_EQ(s.sig_len, sizeof(sig));
    ASSERT_MEM_EQ(s.sig, sig, sizeof(sig));
    /* The signed region ends right before the trailer. */
    ASSERT_EQ(env.signed_len, ss_envelope_header_len("gw-a") + 4);
}

TEST(sig_block_refusals)
{
    uint8_t cert[100] = { 1 }, sig[72] = { 2 }, buf[512];
    ss_envelope env;
    ss_sig s;
    size_t n = signed_env(buf, sizeof(buf), cert, sizeof(cert), sig, 64);
    size_t trailer = ss_envelope_header_len("gw-a") + 4;

    /* Unknown algorithm. */
    buf[trailer + 2] = 2;
    ASSERT_EQ(ss_envelope_parse(buf, n, &env), 0);
    ASSERT_EQ(ss_sig_parse(&env, &s), SS_ESIG);
    buf[trailer + 2] = SS_SIG_ECDSA_P256_SHA256;
    /* A cert length that overruns the block. */
    buf[trailer + 3] = 0x7F;
    ASSERT_EQ(ss_envelope_parse(buf, n, &env), 0);
    ASSERT_EQ(ss_sig_parse(&env, &s), SS_ESIG);
    buf[trailer + 3] = 0;
    ASSERT_EQ(ss_envelope_parse(buf, n, &env), 0);
    ASSERT_EQ(ss_sig_parse(&env, &s), 0);
    /* An unsigned envelope has no block. */
    ASSERT_EQ(ss_envelope_write_header(buf, sizeof(buf), "gw-a", 1, 1, 4, 0), (int)trailer - 4);
    ASSERT_EQ(ss_envelope_parse(buf, trailer, &env), 0);
    ASSERT_EQ(ss_sig_parse(&env, &s), SS_ESIG);
    /* Writer limits. */
    ASSERT_EQ(ss_sig_write_trailer(buf, sizeof(buf), cert, 0, sig, 64), SS_ESIG);
    ASSERT_EQ(ss_sig_write_trailer(buf, sizeof(buf), cert, 10, sig, 73), SS_ESIG);
    ASSERT_EQ(ss_sig_write_trailer(buf, sizeof(buf), cert, 10, sig, 7), SS_ESIG);
    ASSERT_EQ(ss_sig_write_trailer(buf, 20, cert, 10, sig, 64), SS_ENOSPC);
}

TEST(sig_block_truncated_at_every_byte)
{
    uint8_t cert[40] = { 3 }, sig[64] = { 4 }, buf[512];
    size_t n = signed_env(buf, sizeof(buf), cert, sizeof(cert), sig, sizeof(sig));
    size_t start = ss_envelope_header_len("gw-a") + 4;
    /* Shorten the block and fix up the envelope's u16 length, so only the
     * block parser can notice. */
    for (size_t cut = 1; cut < n - start - 2; cut++) {
        uint8_t copy[512];
        size_t blen = n - start - 2 - cut;
        memcpy(copy, buf, n - cut);
        copy[start] = (uint8_t)(blen >> 8);
        copy[start + 1] = (uint8_t)blen;
        ss_envelope env;
        ss_sig s;
        if (blen == 0) {
            ASSERT_NE(ss_envelope_parse(copy, n - cut, &env), 0);
            continue;
        }
        ASSERT_EQ(ss_envelope_parse(copy, n - cut, &env), 0);
        ASSERT_EQ(ss_sig_parse(&env, &s), SS_ESIG);
    }
}

SS_TEST_MAIN(SS_TEST_ENTRY(route_round_trip_and_layout) SS_TEST_ENTRY(route_truncated_at_every_byte)
                 SS_TEST_ENTRY(route_limits_and_bad_ids) SS_TEST_ENTRY(route_format_paths)
                     SS_TEST_ENTRY(sig_block_round_trip) SS_TEST_ENTRY(sig_block_refusals)
                         SS_TEST_ENTRY(sig_block_truncated_at_every_byte))
