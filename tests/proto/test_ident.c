/* test_ident.c - node/site id rules, roles, and certificate identity URIs. */
#include "ss_test.h"

#include "proto/err.h"
#include "proto/ident.h"

static int add(ss_ident *id, const char *uri)
{
    return ss_ident_add_uri(id, uri, strlen(uri));
}

TEST(id_valid)
{
    static const char *const good[] = {
        "a", "0", "site-01", "plant.north", "mine_7", "a..b", "a-", "9z", "x.y-z_0",
    };
    char max[SS_ID_MAX + 1];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ASSERT_EQ(ss_id_check(good[i], strlen(good[i])), 0);
        ASSERT_EQ(ss_id_check_str(good[i]), 0);
    }
    memset(max, 'a', SS_ID_MAX);
    max[SS_ID_MAX] = '\0';
    ASSERT_EQ(ss_id_check(max, SS_ID_MAX), 0);
    ASSERT_EQ(ss_id_check_str(max), 0);
}

TEST(id_invalid)
{
    static const char *const bad[] = {
        "",    "Site", "SITE", "a/b",         "../x", "..",  ".",    ".hidden", "-rf",  "_x", "a b",
        "a;b", "a$b",  "a`b`", "a|b",         "a&b",  "a>b", "a\\b", "a'b",     "a\"b", "a*", "a?",
        "a:b", "a\tb", "a\nb", "caf\xc3\xa9", "a%2f", "a@b", "a,b",  "a=b",     "a+b",  "a~",
    };
    char toolong[SS_ID_MAX + 2];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ss_id_check(bad[i], strlen(bad[i])) != SS_EID)
            SS_TEST_FAIL("id \"%s\" accepted", bad[i]);
        ASSERT_EQ(ss_id_check_str(bad[i]), SS_EID);
    }
    memset(toolong, 'a', SS_ID_MAX + 1);
    toolong[SS_ID_MAX + 1] = '\0';
    ASSERT_EQ(ss_id_check(toolong, SS_ID_MAX + 1), SS_EID);
    ASSERT_EQ(ss_id_check_str(toolong), SS_EID);
    /* NUL inside a length-delimited id. */
    ASSERT_EQ(ss_id_check("ab\0cd", 5), SS_EID);
    ASSERT_EQ(ss_id_check("ab\0", 3), SS_EID);
    ASSERT_EQ(ss_id_check(NULL, 3), SS_EID);
    ASSERT_EQ(ss_id_check_str(NULL), SS_EID);
}

TEST(roles)
{
    ASSERT_STR_EQ(ss_role_name(SS_ROLE_GATEWAY), "gateway");
    ASSERT_STR_EQ(ss_role_name(SS_ROLE_RELAY), "relay");
    ASSERT_STR_EQ(ss_role_name(SS_ROLE_DAEMON), "daemon");
    ASSERT_STR_EQ(ss_role_name(SS_ROLE_NONE), "none");
    ASSERT_STR_EQ(ss_role_name((ss_role)99), "none");
    ASSERT_EQ(ss_role_parse("gateway", 7), SS_ROLE_GATEWAY);
    ASSERT_EQ(ss_role_parse("relay", 5), SS_ROLE_RELAY);
    ASSERT_EQ(ss_role_parse("daemon", 6), SS_ROLE_DAEMON);
    ASSERT_EQ(ss_role_parse("none", 4), SS_EINVAL);
    ASSERT_EQ(ss_role_parse("Gateway", 7), SS_EINVAL);
    ASSERT_EQ(ss_role_parse("gateways", 8), SS_EINVAL);
    ASSERT_EQ(ss_role_parse("gatewa", 6), SS_EINVAL);
    ASSERT_EQ(ss_role_parse("relay\0", 6), SS_EINVAL);
    ASSERT_EQ(ss_role_parse("", 0), SS_EINVAL);
    ASSERT_EQ(ss_role_parse(NULL, 0), SS_EINVAL);
}

TEST(uri_format)
{
    char buf[SS_URI_MAX + 1];
    char id[SS_ID_MAX + 1];

    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_NODE, "gw-01"), 23);
    ASSERT_STR_EQ(buf, "urn:sitesync:node:gw-01");
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_ROLE, "relay"), 23);
    ASSERT_STR_EQ(buf, "urn:sitesync:role:relay");
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_SITE, "plant.north"), 29);
    ASSERT_STR_EQ(buf, "urn:sitesync:site:plant.north");
    /* The longest URI fits SS_URI_MAX exactly. */
    memset(id, 'z', SS_ID_MAX);
    id[SS_ID_MAX] = '\0';
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_NODE, id), (int)SS_URI_MAX);
    ASSERT_EQ(ss_uri_format(buf, SS_URI_MAX, SS_URI_NODE, id), SS_ENOSPC);
    ASSERT_STR_EQ(buf, "");
    /* Checked values. */
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_NODE, "Bad"), SS_EID);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_SITE, ""), SS_EID);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_SITE, "a/b"), SS_EID);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_ROLE, "admin"), SS_EINVAL);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_ROLE, "none"), SS_EINVAL);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), (ss_uri_kind)9, "x"), SS_EINVAL);
    ASSERT_EQ(ss_uri_format(buf, sizeof(buf), SS_URI_NODE, NULL), SS_EINVAL);
}

TEST(uri_format_parse_round_trip)
{
    static const char *const sites[] = { "s1", "plant.north", "mine_7", "a..b" };
    char buf[SS_URI_MAX + 1];
    ss_ident id;

    ss_ident_init(&id);
    ASSERT(ss_uri_format(buf, sizeof(buf), SS_URI_NODE, "hub-3") > 0);
    ASSERT_EQ(add(&id, buf), 0);
    ASSERT(ss_uri_format(buf, sizeof(buf), SS_URI_ROLE, "relay") > 0);
    ASSERT_EQ(add(&id, buf), 0);
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        ASSERT(ss_uri_format(buf, sizeof(buf), SS_URI_SITE, sites[i]) > 0);
        ASSERT_EQ(add(&id, buf), 0);
    }
    ASSERT_EQ(ss_ident_finish(&id), 0);
    ASSERT_STR_EQ(id.node, "hub-3");
    ASSERT_EQ(id.role, SS_ROLE_RELAY);
    ASSERT_EQ(id.nsites, 4);
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        ASSERT_STR_EQ(id.sites[i], sites[i]);
        ASSERT_EQ(ss_ident_has_site(&id, sites[i]), 1);
    }
    ASSERT_EQ(ss_ident_has_site(&id, "s2"), 0);
    ASSERT_EQ(ss_ident_has_site(&id, "S1"), 0);
    ASSERT_EQ(ss_ident_has_site(&id, "s"), 0);
    ASSERT_EQ(ss_ident_has_site(&id, ""), 0);
    ASSERT_EQ(ss_ident_has_site(&id, NULL), 0);
}

TEST(non_sitesync_uris_ignored)
{
    ss_ident id;

    ss_ident_init(&id);
    ASSERT_EQ(add(&id, "https://example.org/node:x"), 0);
    ASSERT_EQ(add(&id, "urn:other:node:x"), 0);
    ASSERT_EQ(add(&id, "urn:sitesyncx"), 0);
    ASSERT_EQ(add(&id, "urn:sitesync"), 0); /* shorter than the prefix */
    ASSERT_EQ(add(&id, ""), 0);
    ASSERT_EQ(ss_ident_add_uri(&id, "x\0urn:sitesync:node:a", 21), 0);
    ASSERT_EQ(id.bad, 0);
    ASSERT_EQ(add(&id, "urn:sitesync:node:gw1"), 0);
    ASSERT_EQ(add(&id, "urn:sitesync:role:gateway"), 0);
    ASSERT_EQ(add(&id, "urn:sitesync:site:s1"), 0);
    ASSERT_EQ(add(&id, "mailto:ops@example.org"), 0);
    ASSERT_EQ(ss_ident_finish(&id), 0);
}

/* Each case: URIs fed in order, the index of the first one that must fail
 * (-1: none), and whether finish must succeed. */
typedef struct ident_case {
    const char *name;
    const char *uris[8];
    int fail_at;
    int finish_ok;
} ident_case;

static const ident_case ident_cases[] = {
    { "gateway ok",
      { "urn:sitesync:node:gw1", "urn:sitesync:role:gateway", "urn:sitesync:site:s1" },
      -1,
      1 },
    { "daemon ok", { "urn:sitesync:node:central", "urn:sitesync:role:daemon" }, -1, 1 },
    { "relay ok",
      { "urn:sitesync:role:relay", "urn:sitesync:site:a", "urn:sitesync:node:hub" },
      -1,
      1 },
    { "missing role", { "urn:sitesync:node:gw1", "urn:sitesync:site:s1" }, -1, 0 },
    { "missing node", { "urn:sitesync:role:gateway", "urn:sitesync:site:s1" }, -1, 0 },
    { "nothing", { NULL }, -1, 0 },
    { "gateway without site", { "urn:sitesync:node:gw1", "urn:sitesync:role:gateway" }, -1, 0 },
    { "relay without site", { "urn:sitesync:node:hub", "urn:sitesync:role:relay" }, -1, 0 },
    { "daemon with site",
      { "urn:sitesync:node:central", "urn:sitesync:role:daemon", "urn:sitesync:site:s1" },
      -1,
      0 },
    { "two nodes",
      { "urn:sitesync:node:gw1", "urn:sitesync:node:gw2", "urn:sitesync:role:gateway",
        "urn:sitesync:site:s1" },
      1,
      0 },
    { "same node twice", { "urn:sitesync:node:gw1", "urn:sitesync:node:gw1" }, 1, 0 },
    { "two roles",
      { "urn:sitesync:node:gw1", "urn:sitesync:role:gateway", "urn:sitesync:role:relay",
        "urn:sitesync:site:s1" },
      2,
      0 },
    { "duplicate site",
      { "urn:sitesync:node:gw1", "urn:sitesync:role:gateway", "urn:sitesync:site:s1",
        "urn:sitesync:site:s1" },
      3,
      0 },
    { "unknown role", { "urn:sitesync:node:gw1", "urn:sitesync:role:admin" }, 1, 0 },
    { "role none", { "urn:sitesync:role:none" }, 0, 0 },
    { "unknown kind", { "urn:sitesync:user:bob" }, 0, 0 },
    { "bad node id", { "urn:sitesync:node:GW1" }, 0, 0 },
    { "empty node id", { "urn:sitesync:node:" }, 0, 0 },
    { "no kind separator", { "urn:sitesync:node" }, 0, 0 },
    { "prefix only", { "urn:sitesync:" }, 0, 0 },
    { "site with slash", { "urn:sitesync:site:a/b" }, 0, 0 },
    { "site dot start", { "urn:sitesync:site:..", "urn:sitesync:node:gw1" }, 0, 0 },
    { "upper-case prefix", { "URN:SITESYNC:node:gw1" }, 0, 0 },
    { "mixed-case kind", { "urn:sitesync:Node:gw1" }, 0, 0 },
    { "bad stays bad",
      { "urn:sitesync:node:gw1", "urn:sitesync:role:gateway", "urn:sitesync:site:Bad",
        "urn:sitesync:site:s1" },
      2,
      0 },
};

TEST(ident_cases)
{
    for (size_t c = 0; c < sizeof(ident_cases) / sizeof(ident_cases[0]); c++) {
        const ident_case *tc = &ident_cases[c];
        ss_ident id;
        int first_fail = -1;

        ss_ident_init(&id);
        for (int i = 0; i < 8 && tc->uris[i]; i++) {
            int rc = add(&id, tc->uris[i]);
            if (rc != 0 && rc != SS_EIDENT)
                SS_TEST_FAIL("%s: uri %d returned %d", tc->name, i, rc);
            if (rc == SS_EIDENT && first_fail < 0)
                first_fail = i;
        }
        if (first_fail != tc->fail_at)
            SS_TEST_FAIL("%s: first failure at %d, expected %d", tc->name, first_fail, tc->fail_at);
        if (tc->fail_at >= 0 && !id.bad)
            SS_TEST_FAIL("%s: bad flag not set", tc->name);
        if ((ss_ident_finish(&id) == 0) != tc->finish_ok)
            SS_TEST_FAIL("%s: finish %s", tc->name, tc->finish_ok ? "refused" : "accepted");
        if (!tc->finish_ok)
            ASSERT_EQ(ss_ident_finish(&id), SS_EIDENT);
    }
}

TEST(embedded_nul_in_uri)
{
    ss_ident id;
    const char uri[] = "urn:sitesync:site:s1\0x";

    ss_ident_init(&id);
    ASSERT_EQ(ss_ident_add_uri(&id, uri, sizeof(uri) - 1), SS_EIDENT);
    ASSERT_EQ(id.bad, 1);
    ASSERT_EQ(id.nsites, 0);
    ss_ident_init(&id);
    ASSERT_EQ(ss_ident_add_uri(&id, "urn:sitesync:node:gw\0", 21), SS_EIDENT);
    ASSERT_STR_EQ(id.node, "");
    /* A length that stops early reads only that much. */
    ss_ident_init(&id);
    ASSERT_EQ(ss_ident_add_uri(&id, "urn:sitesync:node:gw1XYZ", 21), 0);
    ASSERT_STR_EQ(id.node, "gw1");
}

TEST(sites_limit)
{
    char site[16], uri[SS_URI_MAX + 1];
    ss_ident id;

    ss_ident_init(&id);
    ASSERT_EQ(add(&id, "urn:sitesync:node:hub"), 0);
    ASSERT_EQ(add(&id, "urn:sitesync:role:relay"), 0);
    for (int i = 0; i < SS_IDENT_MAX_SITES; i++) {
        snprintf(site, sizeof(site), "site-%02d", i);
        ASSERT(ss_uri_format(uri, sizeof(uri), SS_URI_SITE, site) > 0);
        ASSERT_EQ(add(&id, uri), 0);
    }
    ASSERT_EQ(id.nsites, SS_IDENT_MAX_SITES);
    ASSERT_EQ(ss_ident_finish(&id), 0);
    ASSERT_EQ(ss_ident_has_site(&id, "site-63"), 1);
    /* The 65th. */
    ASSERT_EQ(add(&id, "urn:sitesync:site:one-more"), SS_EIDENT);
    ASSERT_EQ(id.nsites, SS_IDENT_MAX_SITES);
    ASSERT_EQ(ss_ident_finish(&id), SS_EIDENT);
    /* A bad identity speaks for no site. */
    ASSERT_EQ(ss_ident_has_site(&id, "site-00"), 0);
}

TEST(too_long_uri)
{
    char uri[200];
    ss_ident id;

    ss_ident_init(&id);
    snprintf(uri, sizeof(uri), "urn:sitesync:node:");
    memset(uri + strlen(uri), 'a', 65);
    uri[18 + 65] = '\0';
    ASSERT_EQ(add(&id, uri), SS_EIDENT);
    ASSERT_EQ(ss_ident_add_uri(&id, NULL, 5), SS_EINVAL);
    ASSERT_EQ(ss_ident_add_uri(NULL, "x", 1), SS_EINVAL);
    ASSERT_EQ(ss_ident_finish(NULL), SS_EIDENT);
    ASSERT_EQ(ss_ident_has_site(NULL, "a"), 0);
}

#define IDENT_TESTS                            \
    SS_TEST_ENTRY(id_valid)                    \
    SS_TEST_ENTRY(id_invalid)                  \
    SS_TEST_ENTRY(roles)                       \
    SS_TEST_ENTRY(uri_format)                  \
    SS_TEST_ENTRY(uri_format_parse_round_trip) \
    SS_TEST_ENTRY(non_sitesync_uris_ignored)   \
    SS_TEST_ENTRY(ident_cases)                 \
    SS_TEST_ENTRY(embedded_nul_in_uri)         \
    SS_TEST_ENTRY(sites_limit)                 \
    SS_TEST_ENTRY(too_long_uri)

SS_TEST_MAIN(IDENT_TESTS)
