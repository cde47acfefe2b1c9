/* test_msg.c - the control messages: decoder vectors from msg_vectors.data,
 * encode/decode round trips for every message, every valid message split at
 * every byte and truncated at every byte, list bounds, buffer limits and
 * allocation failures. */
#include "ss_test.h"

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "internal.h"

/* Fills a char array (the house bans strcpy). */
#define SET_TEXT(dst, s) snprintf((dst), sizeof(dst), "%s", (s))

static int type_from_name(const char *s)
{
    for (int t = 1; t <= SS_FRAME_TYPE_MAX; t++) {
        if (strcmp(ss_frame_type_name(t), s) == 0)
            return t;
    }
    SS_TEST_FAIL("unknown frame type name %s", s);
}

/* The data file sits next to this source file. */
static FILE *open_data(const char *name)
{
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    int n = slash ? (int)(slash - __FILE__) : 1;
    snprintf(path, sizeof(path), "%.*s/%s", n, slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        SS_TEST_FAIL("cannot open %s", path);
    return f;
}

/* Decodes %HH and %% in place; returns the byte length. */
static size_t unescape(char *s)
{
    size_t o = 0;
    if (strcmp(s, "-") == 0)
        return 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '%' && s[i + 1] == '%') {
            s[o++] = '%';
            i++;
        } else if (s[i] == '%') {
            unsigned v;
            ASSERT(sscanf(s + i + 1, "%2x", &v) == 1);
            s[o++] = (char)v;
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}

/* Round trip through the encoder: encode(decode(x)) decodes to the same
 * encoding, so the encoder's output is canonical and accepted. */
static void check_reencode(const ss_msg *m)
{
    static uint8_t a[1 << 16], b[1 << 16];
    int na = ss_msg_encode(m, a, sizeof(a));
    ASSERT_GT(na, 0);
    ss_msg m2;
    ss_verr e;
    int rc = ss_msg_decode(m->type, a, (size_t)na, &m2, &e);
    if (rc != 0)
        SS_TEST_FAIL("re-decode of %.*s: %s %s", na, (const char *)a, ss_err_name(rc), e.msg);
    int nb = ss_msg_encode(&m2, b, sizeof(b));
    ASSERT_EQ(na, nb);
    ASSERT_MEM_EQ(a, b, (size_t)na);
    ss_msg_free(&m2);
}

TEST(decoder_vectors_from_data_file)
{
    FILE *f = open_data("msg_vectors.data");
    char line[8192];
    int lineno = 0, cases = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l == 0 || line[0] == '#')
            continue;
        char tname[16], expect[64];
        int off = 0;
        if (sscanf(line, "%15s %63s %n", tname, expect, &off) != 2 || off == 0)
            SS_TEST_FAIL("msg_vectors.data:%d: bad line", lineno);
        char *payload = line + off;
        size_t plen = unescape(payload);
        char *field = strchr(expect, ':');
        if (field)
            *field++ = '\0';

        ss_msg m;
        ss_verr e;
        memset(&e, 0, sizeof(e));
        int rc = ss_msg_decode(type_from_name(tname), (const uint8_t *)payload, plen, &m, &e);
        if (strcmp(ss_err_name(rc), expect) != 0)
            SS_TEST_FAIL("msg_vectors.data:%d: got %s (field \"%s\": %s), want %s", lineno,
                         ss_err_name(rc), e.field, e.msg, expect);
        if (rc < 0) {
            ASSERT_EQ(e.code, rc);
            ASSERT(e.msg[0] != '\0');
            if (field && strcmp(e.field, field) != 0)
                SS_TEST_FAIL("msg_vectors.data:%d: error names field \"%s\", want \"%s\"", lineno,
                             e.field, field);
            /* Nothing to free on error: the message is zeroed. */
            ASSERT_EQ(m.type, 0);
        } else {
            ASSERT_EQ(m.type, type_from_name(tname));
            check_reencode(&m);
            ss_msg_free(&m);
            ss_msg_free(&m); /* safe twice */
        }
        cases++;
    }
    fclose(f);
    ASSERT_GT(cases, 100);
}

/* ---- sample messages, one of each type, with every optional field set */

static ss_oseq g_origins[3] = { { "gw-2", 0 }, { "gw-3", 0 }, { "site.9_x", 0 } };
static ss_oseq g_committed[2] = { { "gw-1", 0 }, { "gw-2", 9007199254740991ull } };
static ss_oseq g_acks[2] = { { "gw-1", 42 }, { "gw-2", 7 } };
static ss_reject g_rejects[2] = {
    { "gw-1", 40, SS_EENUM, "alert_level", "alert_level: \"red\" is not one of normal|..." },
    { "gw-2", 6, SS_EFORBIDDEN, "", "multi\nline \"quoted\" \\ \xc3\xa9 \xf0\x9f\x98\x80 \x01" },
};

static int sample(int which, ss_msg *m)
{
    memset(m, 0, sizeof(*m));
    switch (which) {
    case 0:
        m->type = SS_FRAME_HELLO;
        m->u.hello.proto = SS_PROTO_VERSION;
        SET_TEXT(m->u.hello.node, "hub-north");
        m->u.hello.role = SS_ROLE_RELAY;
        m->u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
        SET_TEXT(m->u.hello.software, "sitesync-gw/0.1 (\"test\")");
        m->u.hello.norigins = 3;
        m->u.hello.origins = g_origins;
        return 1;
    case 1:
        m->type = SS_FRAME_HELLO;
        m->u.hello.proto = SS_PROTO_VERSION;
        SET_TEXT(m->u.hello.node, "g");
        m->u.hello.role = SS_ROLE_GATEWAY;
        m->u.hello.max_frame = SS_MSG_MIN_FRAME;
        return 1;
    case 2:
        m->type = SS_FRAME_WELCOME;
        m->u.welcome.proto = SS_PROTO_VERSION;
        SET_TEXT(m->u.welcome.node, "central");
        m->u.welcome.time = 0xFEDCBA9876543210ull;
        m->u.welcome.max_frame = SS_FRAME_ABSOLUTE_MAX;
        m->u.welcome.window = SS_MSG_MAX_WINDOW;
        m->u.welcome.ncommitted = 2;
        m->u.welcome.committed = g_committed;
        return 1;
    case 3:
        m->type = SS_FRAME_WELCOME;
        m->u.welcome.proto = SS_PROTO_VERSION;
        SET_TEXT(m->u.welcome.node, "central");
        m->u.welcome.time = 1;
        m->u.welcome.max_frame = 65536;
        m->u.welcome.window = 1;
        return 1;
    case 4:
        m->type = SS_FRAME_ACK;
        m->u.ack.nacks = 2;
        m->u.ack.acks = g_acks;
        m->u.ack.nrejects = 2;
        m->u.ack.rejects = g_rejects;
        return 1;
    case 5:
        m->type = SS_FRAME_ACK;
        return 1;
    case 6:
        m->type = SS_FRAME_ERROR;
        m->u.error.code = SS_EGAP;
        SET_TEXT(m->u.error.message, "gap: resume from 41");
        SET_TEXT(m->u.error.origin, "gw-1");
        m->u.error.seq = 45;
        m->u.error.resume = 41;
        SET_TEXT(m->u.error.field, "seq");
        return 1;
    case 7:
        m->type = SS_FRAME_ERROR;
        m->u.error.code = SS_EINTERNAL;
        return 1;
    case 8:
        m->type = SS_FRAME_PING;
        m->u.ping.nonce = 9007199254740991ull;
        return 1;
    case 9:
        m->type = SS_FRAME_PONG;
        m->u.ping.nonce = 0;
        return 1;
    case 10:
        m->type = SS_FRAME_BYE;
        SET_TEXT(m->u.bye.reason, "draining\ttab \xe2\x82\xac");
        return 1;
    case 11:
        m->type = SS_FRAME_BYE;
        return 1;
    default:
        return 0;
    }
}

static void assert_oseq_eq(const ss_oseq *a, int na, const ss_oseq *b, int nb)
{
    ASSERT_EQ(na, nb);
    for (int i = 0; i < na; i++) {
        ASSERT_STR_EQ(a[i].origin, b[i].origin);
        ASSERT_U64_EQ(a[i].seq, b[i].seq);
    }
}

static void assert_msg_eq(const ss_msg *a, const ss_msg *b)
{
    ASSERT_EQ(a->type, b->type);
    switch (a->type) {
    case SS_FRAME_HELLO:
        ASSERT_EQ(a->u.hello.proto, b->u.hello.proto);
        ASSERT_STR_EQ(a->u.hello.node, b->u.hello.node);
        ASSERT_EQ(a->u.hello.role, b->u.hello.role);
        ASSERT_EQ(a->u.hello.max_frame, b->u.hello.max_frame);
        ASSERT_STR_EQ(a->u.hello.software, b->u.hello.software);
        assert_oseq_eq(a->u.hello.origins, a->u.hello.norigins, b->u.hello.origins,
                       b->u.hello.norigins);
        break;
    case SS_FRAME_WELCOME:
        ASSERT_EQ(a->u.welcome.proto, b->u.welcome.proto);
        ASSERT_STR_EQ(a->u.welcome.node, b->u.welcome.node);
        ASSERT_U64_EQ(a->u.welcome.time, b->u.welcome.time);
        ASSERT_EQ(a->u.welcome.max_frame, b->u.welcome.max_frame);
        ASSERT_EQ(a->u.welcome.window, b->u.welcome.window);
        assert_oseq_eq(a->u.welcome.committed, a->u.welcome.ncommitted, b->u.welcome.committed,
                       b->u.welcome.ncommitted);
        break;
    case SS_FRAME_ACK:
        assert_oseq_eq(a->u.ack.acks, a->u.ack.nacks, b->u.ack.acks, b->u.ack.nacks);
        ASSERT_EQ(a->u.ack.nrejects, b->u.ack.nrejects);
        for (int i = 0; i < a->u.ack.nrejects; i++) {
            const ss_reject *x = &a->u.ack.rejects[i], *y = &b->u.ack.rejects[i];
            ASSERT_STR_EQ(x->origin, y->origin);
            ASSERT_U64_EQ(x->seq, y->seq);
            ASSERT_EQ(x->code, y->code);
            ASSERT_STR_EQ(x->field, y->field);
            ASSERT_STR_EQ(x->message, y->message);
        }
        break;
    case SS_FRAME_ERROR:
        ASSERT_EQ(a->u.error.code, b->u.error.code);
        ASSERT_STR_EQ(a->u.error.message, b->u.error.message);
        ASSERT_STR_EQ(a->u.error.origin, b->u.error.origin);
        ASSERT_U64_EQ(a->u.error.seq, b->u.error.seq);
        ASSERT_U64_EQ(a->u.error.resume, b->u.error.resume);
        ASSERT_STR_EQ(a->u.error.field, b->u.error.field);
        break;
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
        ASSERT_U64_EQ(a->u.ping.nonce, b->u.ping.nonce);
        break;
    case SS_FRAME_BYE:
        ASSERT_STR_EQ(a->u.bye.reason, b->u.bye.reason);
        break;
    default:
        SS_TEST_FAIL("bad type %d", a->type);
    }
}

TEST(round_trip_every_message)
{
    ss_msg m;
    for (int w = 0; sample(w, &m); w++) {
        uint8_t buf[4096];
        int n = ss_msg_encode(&m, buf, sizeof(buf));
        ASSERT_GT(n, 0);
        ss_msg d;
        ss_verr e;
        int rc = ss_msg_decode(m.type, buf, (size_t)n, &d, &e);
        if (rc != 0)
            SS_TEST_FAIL("sample %d: %.*s: %s (%s)", w, n, (const char *)buf, ss_err_name(rc),
                         e.msg);
        assert_msg_eq(&m, &d);
        ss_msg_free(&d);
    }
}

TEST(encoding_is_the_documented_json)
{
    ss_msg m;
    uint8_t buf[1024];
    sample(1, &m);
    int n = ss_msg_encode(&m, buf, sizeof(buf));
    const char *want = "{\"proto\":1,\"node\":\"g\",\"role\":\"gateway\",\"max_frame\":1024}";
    ASSERT_EQ(n, (int)strlen(want));
    ASSERT_MEM_EQ(buf, want, strlen(want));
    sample(2, &m);
    n = ss_msg_encode(&m, buf, sizeof(buf));
    want = "{\"proto\":1,\"node\":\"central\",\"time\":\"fedcba9876543210\",\"max_frame\":67108864,"
           "\"window\":1024,\"committed\":[{\"origin\":\"gw-1\",\"seq\":0},{\"origin\":\"gw-2\","
           "\"seq\":9007199254740991}]}";
    ASSERT_EQ(n, (int)strlen(want));
    ASSERT_MEM_EQ(buf, want, strlen(want));
    sample(6, &m);
    n = ss_msg_encode(&m, buf, sizeof(buf));
    want = "{\"code\":\"gap\",\"message\":\"gap: resume from 41\",\"origin\":\"gw-1\",\"seq\":45,"
           "\"resume\":41,\"field\":\"seq\"}";
    ASSERT_EQ(n, (int)strlen(want));
    ASSERT_MEM_EQ(buf, want, strlen(want));
    sample(11, &m);
    ASSERT_EQ(ss_msg_encode(&m, buf, sizeof(buf)), 2);
    ASSERT_MEM_EQ(buf, "{}", 2);
}

TEST(every_message_split_at_every_byte)
{
    ss_msg m;
    for (int w = 0; sample(w, &m); w++) {
        uint8_t fr[4096];
        int n = ss_msg_encode_frame(&m, fr, sizeof(fr));
        ASSERT_GT(n, (int)SS_FRAME_HEADER_LEN);
        ASSERT_EQ(fr[4], m.type);
        ASSERT_EQ(ss__get_u32(fr), (uint32_t)(n - 6));
        /* Two pieces, cut at every position, and then byte by byte. */
        for (int cut = 0; cut <= n + 1; cut++) {
            ss_fdec d;
            ss_fdec_init(&d, SS_FRAME_DEFAULT_MAX);
            int rc = 0;
            size_t used, pos = 0;
            if (cut <= n) {
                rc = ss_fdec_feed(&d, fr, (size_t)cut, &used);
                pos = used;
                if (rc == 0)
                    rc = ss_fdec_feed(&d, fr + pos, (size_t)n - pos, &used), pos += used;
            } else {
                while (rc == 0 && pos < (size_t)n) {
                    rc = ss_fdec_feed(&d, fr + pos, 1, &used);
                    pos += used;
                }
            }
            ASSERT_EQ(rc, 1);
            ASSERT_EQ(pos, (size_t)n);
            ss_frame f;
            ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
            ss_msg out;
            ss_verr e;
            ASSERT_EQ(ss_msg_decode(f.type, f.payload, f.len, &out, &e), 0);
            assert_msg_eq(&m, &out);
            ss_msg_free(&out);
            ss_fdec_free(&d);
        }
    }
}

TEST(every_message_truncated_at_every_byte)
{
    ss_msg m;
    for (int w = 0; sample(w, &m); w++) {
        uint8_t buf[4096];
        int n = ss_msg_encode(&m, buf, sizeof(buf));
        for (int cut = 0; cut < n; cut++) {
            ss_msg out;
            ss_verr e;
            int rc = ss_msg_decode(m.type, buf, (size_t)cut, &out, &e);
            if (rc >= 0)
                SS_TEST_FAIL("sample %d cut at %d accepted", w, cut);
            ASSERT_EQ(out.type, 0);
        }
    }
}

TEST(encode_reports_enospc_at_every_short_capacity)
{
    ss_msg m;
    for (int w = 0; sample(w, &m); w++) {
        uint8_t buf[4096];
        int n = ss_msg_encode(&m, buf, sizeof(buf));
        ASSERT_GT(n, 0);
        for (int cap = 0; cap < n; cap++) {
            uint8_t small[4096];
            ASSERT_EQ(ss_msg_encode(&m, small, (size_t)cap), SS_ENOSPC);
        }
        /* Exactly the length is enough: no spare byte needed. */
        uint8_t exact[4096];
        ASSERT_EQ(ss_msg_encode(&m, exact, (size_t)n), n);
        ASSERT_MEM_EQ(exact, buf, (size_t)n);
        ASSERT_EQ(ss_msg_encode_frame(&m, exact, (size_t)n + 6), n + 6);
        ASSERT_EQ(ss_msg_encode_frame(&m, exact, (size_t)n + 5), SS_ENOSPC);
        ASSERT_EQ(ss_msg_encode_frame(&m, exact, 3), SS_ENOSPC);
    }
}

TEST(encode_refuses_fields_outside_limits)
{
    ss_msg m;
    uint8_t buf[4096];
    ss_oseq dup[2] = { { "gw-2", 0 }, { "gw-2", 0 } };
    ss_oseq bad[1] = { { "Bad", 1 } };
    ss_oseq zero[1] = { { "gw-1", 0 } };
    ss_reject rj[1] = { { "gw-1", 1, SS_EENUM, "", "" } };

#define EXPECT_EINVAL(which, mutate)                               \
    do {                                                           \
        sample(which, &m);                                         \
        mutate;                                                    \
        ASSERT_EQ(ss_msg_encode(&m, buf, sizeof(buf)), SS_EINVAL); \
    } while (0)

    EXPECT_EINVAL(0, m.u.hello.proto = 2);
    EXPECT_EINVAL(0, SET_TEXT(m.u.hello.node, "Hub"));
    EXPECT_EINVAL(0, m.u.hello.node[0] = '\0');
    EXPECT_EINVAL(0, m.u.hello.role = SS_ROLE_NONE);
    EXPECT_EINVAL(0, m.u.hello.role = (ss_role)7);
    EXPECT_EINVAL(0, m.u.hello.max_frame = SS_MSG_MIN_FRAME - 1);
    EXPECT_EINVAL(0, m.u.hello.max_frame = SS_FRAME_ABSOLUTE_MAX + 1);
    EXPECT_EINVAL(0, SET_TEXT(m.u.hello.software, "latin1 \xe9"));
    EXPECT_EINVAL(0, memset(m.u.hello.software, 'x', sizeof(m.u.hello.software)));
    EXPECT_EINVAL(0, (m.u.hello.origins = dup, m.u.hello.norigins = 2));
    EXPECT_EINVAL(0, (m.u.hello.origins = bad, m.u.hello.norigins = 1));
    EXPECT_EINVAL(0, m.u.hello.norigins = SS_MSG_MAX_ORIGINS + 1);
    EXPECT_EINVAL(0, m.u.hello.origins = NULL);
    EXPECT_EINVAL(2, m.u.welcome.window = 0);
    EXPECT_EINVAL(2, m.u.welcome.window = SS_MSG_MAX_WINDOW + 1);
    EXPECT_EINVAL(2, m.u.welcome.committed = dup);
    EXPECT_EINVAL(2, m.u.welcome.committed[0].seq = SS_SEQ_MAX + 1);
    g_committed[0].seq = 0;
    EXPECT_EINVAL(4, (m.u.ack.acks = zero, m.u.ack.nacks = 1));
    EXPECT_EINVAL(4, m.u.ack.nacks = -1);
    EXPECT_EINVAL(4, (m.u.ack.rejects = rj, rj[0].code = 0));
    EXPECT_EINVAL(4, (m.u.ack.rejects = rj, rj[0].code = 5));
    EXPECT_EINVAL(4, (m.u.ack.rejects = rj, rj[0].code = SS_EENUM, rj[0].seq = 0));
    rj[0].seq = 1;
    EXPECT_EINVAL(6, m.u.error.code = 0);
    EXPECT_EINVAL(6, m.u.error.code = -999);
    EXPECT_EINVAL(6, SET_TEXT(m.u.error.origin, "-x"));
    EXPECT_EINVAL(6, m.u.error.resume = SS_SEQ_MAX + 1);
    EXPECT_EINVAL(6, SET_TEXT(m.u.error.message, "\xed\xa0\x80"));
    EXPECT_EINVAL(8, m.u.ping.nonce = SS_SEQ_MAX + 1);
    EXPECT_EINVAL(10, SET_TEXT(m.u.bye.reason, "\xc0\x80"));
    EXPECT_EINVAL(11, m.type = SS_FRAME_BATCH);
    EXPECT_EINVAL(11, m.type = 0);
#undef EXPECT_EINVAL
    sample(11, &m);
    m.type = SS_FRAME_BATCH;
    ASSERT_EQ(ss_msg_encode_frame(&m, buf, sizeof(buf)), SS_EINVAL);
}

/* An ACK with n entries for distinct origins a0, a1, ... */
static size_t ack_json(char *out, size_t cap, int n)
{
    size_t p = (size_t)snprintf(out, cap, "{\"acks\":[");
    for (int i = 0; i < n; i++)
        p += (size_t)snprintf(out + p, cap - p, "%s{\"origin\":\"a%d\",\"seq\":%d}", i ? "," : "",
                              i, i + 1);
    p += (size_t)snprintf(out + p, cap - p, "]}");
    ASSERT_LT(p, cap);
    return p;
}

TEST(lists_are_bounded)
{
    size_t cap = 64 * (SS_MSG_MAX_ACKS + 2);
    char *buf = malloc(cap);
    ASSERT(buf != NULL);
    ss_msg m;
    ss_verr e;
    size_t n = ack_json(buf, cap, SS_MSG_MAX_ACKS);
    ASSERT_EQ(ss_msg_decode(SS_FRAME_ACK, (const uint8_t *)buf, n, &m, &e), 0);
    ASSERT_EQ(m.u.ack.nacks, SS_MSG_MAX_ACKS);
    ASSERT_STR_EQ(m.u.ack.acks[SS_MSG_MAX_ACKS - 1].origin, "a4095");
    /* The encoder takes the maximum too. */
    uint8_t *enc = malloc(cap);
    ASSERT(enc != NULL);
    int en = ss_msg_encode(&m, enc, cap);
    ASSERT_EQ(en, (int)n);
    ASSERT_MEM_EQ(enc, buf, n);
    ss_msg_free(&m);
    n = ack_json(buf, cap, SS_MSG_MAX_ACKS + 1);
    ASSERT_EQ(ss_msg_decode(SS_FRAME_ACK, (const uint8_t *)buf, n, &m, &e), SS_EOVERSIZE);
    ASSERT_STR_EQ(e.field, "acks");
    free(enc);
    free(buf);
}

TEST(decode_refuses_non_messages)
{
    ss_msg m;
    ss_verr e;
    ASSERT_EQ(ss_msg_decode(SS_FRAME_BATCH, (const uint8_t *)"{}", 2, &m, &e), SS_ETYPE);
    ASSERT_EQ(ss_msg_decode(0, (const uint8_t *)"{}", 2, &m, &e), SS_ETYPE);
    ASSERT_EQ(ss_msg_decode(9, (const uint8_t *)"{}", 2, &m, &e), SS_ETYPE);
    ASSERT_EQ(ss_msg_decode(SS_FRAME_PING, (const uint8_t *)"{}", 2, NULL, &e), SS_EINVAL);
    ASSERT_EQ(ss_msg_decode(SS_FRAME_BYE, NULL, 0, &m, NULL), SS_EJSON);
}

/* Fails the Nth allocation (proto's and cJSON's). */
static struct {
    long calls, fail_at;
} g_fail;
static void *fail_malloc(size_t n)
{
    return ++g_fail.calls == g_fail.fail_at ? NULL : malloc(n);
}
static void *fail_realloc(void *p, size_t n)
{
    return ++g_fail.calls == g_fail.fail_at ? NULL : realloc(p, n);
}
static const ss_allocator failing = { fail_malloc, fail_realloc, free };

TEST(allocation_failure_at_every_step_leaves_nothing)
{
    ss_msg m;
    for (int w = 0; sample(w, &m); w++) {
        uint8_t buf[4096];
        int n = ss_msg_encode(&m, buf, sizeof(buf));
        for (long k = 1;; k++) {
            g_fail.calls = 0;
            g_fail.fail_at = k;
            ss_set_allocator(&failing);
            ss_msg out;
            int rc = ss_msg_decode(m.type, buf, (size_t)n, &out, NULL);
            long calls = g_fail.calls;
            if (rc == 0) {
                assert_msg_eq(&m, &out);
                ss_msg_free(&out);
            }
            ss_set_allocator(NULL);
            if (calls < k) {
                ASSERT_EQ(rc, 0);
                break;
            }
            ASSERT(rc == SS_ENOMEM || rc == SS_EJSON);
            ASSERT_EQ(out.type, 0);
        }
    }
}

#define ALL_TESTS                                                \
    SS_TEST_ENTRY(decoder_vectors_from_data_file)                \
    SS_TEST_ENTRY(round_trip_every_message)                      \
    SS_TEST_ENTRY(encoding_is_the_documented_json)               \
    SS_TEST_ENTRY(every_message_split_at_every_byte)             \
    SS_TEST_ENTRY(every_message_truncated_at_every_byte)         \
    SS_TEST_ENTRY(encode_reports_enospc_at_every_short_capacity) \
    SS_TEST_ENTRY(encode_refuses_fields_outside_limits)          \
    SS_TEST_ENTRY(lists_are_bounded)                             \
    SS_TEST_ENTRY(decode_refuses_non_messages)                   \
    SS_TEST_ENTRY(allocation_failure_at_every_step_leaves_nothing)

SS_TEST_MAIN(ALL_TESTS)
