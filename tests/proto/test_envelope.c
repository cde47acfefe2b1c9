/* test_envelope.c - the BATCH envelope: strict binary parsing (every field,
 * every truncation), header writing, and the body: sequence checks that
 * refuse the whole envelope, per-change schema errors that do not, and the
 * exact raw bytes of each change. */
#include "ss_test.h"

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "internal.h"

/* Three changes with awkward text: brackets and braces inside strings,
 * escaped quotes and backslashes, so the raw-span scanner must track strings.
 * %llu is the sequence number. */
static const char *const change_fmt[] = {
    "{\"seq\":%llu,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
    "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"alert_level\":\"high\","
    "\"note\":\"brackets ]}[{ \\\"quoted\\\" \\\\ \\\"}\"}}",
    "{ \"seq\" : %llu , \"hlc\":\"00018c2a4b1f0002\",\"collection\":\"incident\",\"key\":"
    "\"gw-1-00018c2a4b1f0002\",\"site\":\"site-1\",\"op\":\"create\",\"fields\":{\"category\":"
    "\"intrusion\",\"severity\":3,\"title\":\"Fence cut \\u00e9 [north]\"} }",
    "{\"seq\":%llu,\"hlc\":\"00018c2a4b1f0003\",\"collection\":\"incident\",\"key\":"
    "\"gw-1-00018c2a4b1f0002\",\"site\":\"site-1\",\"op\":\"delete\",\"fields\":{}}",
};

/* A change that is well-formed JSON with the right seq but fails the schema. */
static const char *const bad_change_fmt =
    "{\"seq\":%llu,\"hlc\":\"00018c2a4b1f0004\",\"collection\":\"site_status\",\"key\":"
    "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"alert_level\":\"red\"}}";

typedef struct built {
    uint8_t buf[8192];
    size_t len;
    char body[4096];
    size_t body_len;
    size_t off[8], elen[8]; /* each element's span within body */
} built;

/* Writes fmt with its one "%llu" replaced by seq (the formats are data, so
 * they do not go through printf). Returns the length written. */
static size_t subst_seq(char *out, size_t cap, const char *fmt, uint64_t seq)
{
    const char *at = strstr(fmt, "%llu");
    ASSERT(at != NULL);
    int n = snprintf(out, cap, "%.*s%llu%s", (int)(at - fmt), fmt, (unsigned long long)seq, at + 4);
    ASSERT(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

/* Builds a body "[ e0 ,\n e1 ,e2 ]" from formats, then the envelope. */
static void build(built *b, const char *origin, uint64_t first, const char *const *fmts, int n,
                  unsigned flags, const uint8_t *sig, uint16_t sig_len)
{
    size_t p = 0;
    static const char *const seps[] = { " [ ", " ,\n ", ",", "\t,  " };
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < n; i++) {
        p +=
            (size_t)snprintf(b->body + p, sizeof(b->body) - p, "%s", i ? seps[1 + i % 3] : seps[0]);
        b->off[i] = p;
        p += subst_seq(b->body + p, sizeof(b->body) - p, fmts[i], first + (uint64_t)i);
        b->elen[i] = p - b->off[i];
    }
    p += (size_t)snprintf(b->body + p, sizeof(b->body) - p, " ]\n");
    ASSERT_LT(p, sizeof(b->body));
    b->body_len = p;
    int h = ss_envelope_write_header(b->buf, sizeof(b->buf), origin, first, (uint32_t)n,
                                     (uint32_t)p, flags);
    ASSERT_EQ(h, (int)ss_envelope_header_len(origin));
    memcpy(b->buf + h, b->body, p);
    b->len = (size_t)h + p;
    if (flags & SS_ENV_FLAG_SIGNED) {
        ss__put_u16(b->buf + b->len, sig_len);
        memcpy(b->buf + b->len + 2, sig, sig_len);
        b->len += 2 + (size_t)sig_len;
    }
}

static void build3(built *b, uint64_t first)
{
    build(b, "gw-1", first, change_fmt, 3, 0, NULL, 0);
}

TEST(parse_valid_envelope)
{
    built b;
    build3(&b, 40);
    ss_envelope e;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
    ASSERT_EQ(e.version, SS_ENV_VERSION);
    ASSERT_EQ(e.flags, 0);
    ASSERT_STR_EQ(e.origin, "gw-1");
    ASSERT_U64_EQ(e.first_seq, 40);
    ASSERT_EQ(e.count, 3);
    ASSERT_U64_EQ(ss_envelope_last_seq(&e), 42);
    ASSERT_EQ(e.body_len, b.body_len);
    ASSERT(e.body == b.buf + SS_ENV_FIXED_LEN + 4);
    ASSERT(e.signed_bytes == b.buf);
    ASSERT_EQ(e.signed_len, b.len);
    ASSERT(e.sig == NULL);
    ASSERT_EQ(e.sig_len, 0);
}

TEST(header_layout_is_big_endian)
{
    uint8_t h[64];
    int n = ss_envelope_write_header(h, sizeof(h), "ab", 0x0102030405060708ull & SS_SEQ_MAX, 0x0A0B,
                                     0x0C0D0E0F, SS_ENV_FLAG_SIGNED);
    ASSERT_EQ(n, 21);
    const uint8_t want[] = { 1,    1,    2,    'a',  'b',  0x00, 0x02, 0x03, 0x04, 0x05, 0x06,
                             0x07, 0x08, 0x00, 0x00, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F };
    ASSERT_MEM_EQ(h, want, sizeof(want));
}

TEST(parse_signed_envelope)
{
    built b;
    uint8_t sig[70];
    for (size_t i = 0; i < sizeof(sig); i++)
        sig[i] = (uint8_t)i;
    build(&b, "gw-1", 1, change_fmt, 2, SS_ENV_FLAG_SIGNED, sig, sizeof(sig));
    ss_envelope e;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
    ASSERT_EQ(e.flags, SS_ENV_FLAG_SIGNED);
    ASSERT_EQ(e.signed_len, b.len - 2 - sizeof(sig));
    ASSERT(e.sig == b.buf + e.signed_len + 2);
    ASSERT_EQ(e.sig_len, sizeof(sig));
    ASSERT_MEM_EQ(e.sig, sig, sizeof(sig));
}

TEST(truncation_at_every_byte)
{
    for (int signed_ = 0; signed_ < 2; signed_++) {
        built b;
        uint8_t sig[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        build(&b, "gw-1", 7, change_fmt, 3, signed_ ? SS_ENV_FLAG_SIGNED : 0, sig, 8);
        for (size_t cut = 0; cut < b.len; cut++) {
            ss_envelope e;
            int rc = ss_envelope_parse(b.buf, cut, &e);
            if (rc != SS_ETRUNC)
                SS_TEST_FAIL("signed=%d cut=%zu: %s", signed_, cut, ss_err_name(rc));
            ASSERT(e.body == NULL);
        }
        ss_envelope e;
        ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
        /* One byte more is trailing garbage. */
        b.buf[b.len] = 0;
        ASSERT_EQ(ss_envelope_parse(b.buf, b.len + 1, &e), SS_EPROTO);
    }
}

/* Field-by-field header corruption: (offset, value(s), expected error). The
 * base envelope has origin "gw-1" (offsets: version 0, flags 1, origin_len 2,
 * origin 3..6, first_seq 7..14, count 15..18, body_len 19..22). */
static const struct {
    const char *name;
    size_t off;
    uint8_t bytes[8];
    size_t n;
    int rc;
} corrupt[] = {
    { "version 0", 0, { 0 }, 1, SS_EVERSION },
    { "version 2", 0, { 2 }, 1, SS_EVERSION },
    { "version 255", 0, { 255 }, 1, SS_EVERSION },
    { "flags bit 1", 1, { 0x02 }, 1, SS_EFLAGS },
    { "flags bit 7", 1, { 0x80 }, 1, SS_EFLAGS },
    { "origin_len 0", 2, { 0 }, 1, SS_EID },
    { "origin_len 65", 2, { 65 }, 1, SS_EID },
    { "origin_len 255", 2, { 255 }, 1, SS_EID },
    { "origin upper case", 3, { 'G' }, 1, SS_EID },
    { "origin leading dash", 3, { '-' }, 1, SS_EID },
    { "origin NUL", 4, { 0 }, 1, SS_EID },
    { "origin slash", 5, { '/' }, 1, SS_EID },
    { "origin UTF-8", 5, { 0xc3, 0xa9 }, 2, SS_EID },
    { "first_seq 0", 7, { 0, 0, 0, 0, 0, 0, 0, 0 }, 8, SS_ESEQ },
    { "first_seq 2^53", 7, { 0, 0x20, 0, 0, 0, 0, 0, 0 }, 8, SS_ESEQ },
    { "first_seq 2^64-1", 7, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 8, SS_ESEQ },
    { "first_seq 2^53-1 with count 3",
      7,
      { 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
      8,
      SS_ESEQ },
    { "first_seq 2^53-3 with count 3", 7, { 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd }, 8, 0 },
    { "count 0", 15, { 0, 0, 0, 0 }, 4, SS_ESEQ },
    { "count max+1", 15, { 0, 0, 0x10, 0x01 }, 4, SS_EOVERSIZE },
    { "count 2^32-1", 15, { 0xff, 0xff, 0xff, 0xff }, 4, SS_EOVERSIZE },
    { "body_len +1", 22, { 0 }, 0, SS_ETRUNC }, /* n == 0: handled below */
    { "body_len 2^32-1", 19, { 0xff, 0xff, 0xff, 0xff }, 4, SS_ETRUNC },
    { "body_len 0 leaves trailing bytes", 19, { 0, 0, 0, 0 }, 4, SS_EPROTO },
};

TEST(parse_errors_for_every_field)
{
    for (size_t v = 0; v < sizeof(corrupt) / sizeof(corrupt[0]); v++) {
        built b;
        build3(&b, 7);
        if (corrupt[v].n == 0) {
            b.buf[corrupt[v].off]++; /* body_len one more than there is */
        } else {
            memcpy(b.buf + corrupt[v].off, corrupt[v].bytes, corrupt[v].n);
        }
        ss_envelope e;
        int rc = ss_envelope_parse(b.buf, b.len, &e);
        if (rc != corrupt[v].rc)
            SS_TEST_FAIL("\"%s\": got %s, want %s", corrupt[v].name, ss_err_name(rc),
                         ss_err_name(corrupt[v].rc));
    }
    /* body_len one less: the last byte becomes trailing. */
    built b;
    build3(&b, 7);
    b.buf[22]--;
    ss_envelope e;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), SS_EPROTO);
    ASSERT_EQ(ss_envelope_parse(NULL, 0, &e), SS_ETRUNC);
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, NULL), SS_EINVAL);
}

TEST(signature_trailer_errors)
{
    uint8_t sig[SS_ENV_MAX_SIG + 1];
    memset(sig, 0x5a, sizeof(sig));
    built b;
    ss_envelope e;
    /* SIGNED with no trailer at all. */
    build(&b, "gw-1", 1, change_fmt, 1, 0, NULL, 0);
    b.buf[1] = SS_ENV_FLAG_SIGNED;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), SS_ETRUNC);
    /* sig_len 0: a signed envelope without a signature. */
    build(&b, "gw-1", 1, change_fmt, 1, SS_ENV_FLAG_SIGNED, sig, 0);
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), SS_ESIG);
    /* The largest signature is fine; one more byte is oversize. */
    build(&b, "gw-1", 1, change_fmt, 1, SS_ENV_FLAG_SIGNED, sig, SS_ENV_MAX_SIG);
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
    ASSERT_EQ(e.sig_len, SS_ENV_MAX_SIG);
    build(&b, "gw-1", 1, change_fmt, 1, 0, NULL, 0);
    b.buf[1] = SS_ENV_FLAG_SIGNED;
    ss__put_u16(b.buf + b.len, SS_ENV_MAX_SIG + 1);
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len + 2 + SS_ENV_MAX_SIG + 1, &e), SS_EOVERSIZE);
    /* An unsigned envelope with a trailer: trailing bytes. */
    build(&b, "gw-1", 1, change_fmt, 1, SS_ENV_FLAG_SIGNED, sig, 4);
    b.buf[1] = 0;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), SS_EPROTO);
}

TEST(write_header_errors)
{
    uint8_t h[128];
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "Gw", 1, 1, 2, 0), SS_EID);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "", 1, 1, 2, 0), SS_EID);
    char longid[SS_ID_MAX + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), longid, 1, 1, 2, 0), SS_EID);
    longid[SS_ID_MAX] = '\0';
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), longid, 1, 1, 2, 0),
              (int)SS_ENV_FIXED_LEN + SS_ID_MAX);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", 1, 1, 2, 2), SS_EFLAGS);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", 0, 1, 2, 0), SS_ESEQ);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", SS_SEQ_MAX + 1, 1, 2, 0), SS_ESEQ);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", 1, 0, 2, 0), SS_ESEQ);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", 1, SS_ENV_MAX_COUNT + 1, 2, 0), SS_ESEQ);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", SS_SEQ_MAX, 2, 2, 0), SS_ESEQ);
    ASSERT_EQ(ss_envelope_write_header(h, sizeof(h), "gw", SS_SEQ_MAX, 1, 2, 0), 21);
    for (size_t cap = 0; cap < 21; cap++)
        ASSERT_EQ(ss_envelope_write_header(h, cap, "gw", 1, 1, 2, 0), SS_ENOSPC);
}

static ss_body *must_body(const built *b, ss_envelope *e)
{
    ASSERT_EQ(ss_envelope_parse(b->buf, b->len, e), 0);
    ss_body *body = NULL;
    ss_verr err;
    memset(&err, 0, sizeof(err));
    int rc = ss_body_parse(e, &body, &err);
    if (rc != 0)
        SS_TEST_FAIL("body: %s field=%s %s", ss_err_name(rc), err.field, err.msg);
    return body;
}

TEST(body_changes_decoded_and_raw_spans_exact)
{
    built b;
    build3(&b, 40);
    ss_envelope e;
    ss_body *body = must_body(&b, &e);
    ASSERT_EQ(ss_body_count(body), 3);
    for (uint32_t i = 0; i < 3; i++) {
        const ss_verr *ve = NULL;
        int rc = ss_body_change_error(body, i, &ve);
        if (rc != 0)
            SS_TEST_FAIL("change %u: %s %s %s", i, ss_err_name(rc), ve->field, ve->msg);
        ASSERT(ve == NULL);
        const ss_change *ch = ss_body_change(body, i);
        ASSERT(ch != NULL);
        ASSERT_U64_EQ(ch->seq, 40 + i);
        ASSERT_STR_EQ(ch->site, "site-1");
        const uint8_t *p;
        size_t len;
        ss_body_change_raw(body, i, &p, &len);
        ASSERT_EQ(len, b.elen[i]);
        ASSERT_MEM_EQ(p, b.body + b.off[i], len);
        ASSERT_EQ(p[0], '{');
        ASSERT_EQ(p[len - 1], '}');
    }
    const ss_change *c0 = ss_body_change(body, 0);
    ASSERT_U64_EQ(c0->hlc, 0x00018c2a4b1f0001ull);
    ASSERT_STR_EQ(c0->coll->name, "site_status");
    ASSERT_EQ(c0->op, SS_OP_UPDATE);
    ASSERT_EQ(c0->nfields, 2);
    const ss_change *c1 = ss_body_change(body, 1);
    ASSERT_EQ(c1->op, SS_OP_CREATE);
    ASSERT_STR_EQ(c1->key, "gw-1-00018c2a4b1f0002");
    ASSERT_EQ(ss_body_change(body, 2)->op, SS_OP_DELETE);

    /* The body keeps its own copy: the frame buffer may be reused. */
    size_t len0;
    const uint8_t *p0;
    ss_body_change_raw(body, 0, &p0, &len0);
    memset(b.buf, 'Z', b.len);
    ASSERT_MEM_EQ(p0, b.body + b.off[0], len0);
    ASSERT_STR_EQ(ss_body_change(body, 1)->key, "gw-1-00018c2a4b1f0002");

    /* Out of range accessors. */
    ASSERT(ss_body_change(body, 3) == NULL);
    const ss_verr *ve;
    ASSERT_EQ(ss_body_change_error(body, 3, &ve), SS_EINVAL);
    const uint8_t *p;
    size_t len;
    ss_body_change_raw(body, 3, &p, &len);
    ASSERT(p == NULL);
    ASSERT_EQ(len, 0);
    ss_body_free(body);
    ss_body_free(NULL);
}

TEST(per_change_error_is_carried_and_envelope_accepted)
{
    const char *fmts[3] = { change_fmt[0], bad_change_fmt, change_fmt[2] };
    built b;
    build(&b, "gw-1", 100, fmts, 3, 0, NULL, 0);
    ss_envelope e;
    ss_body *body = must_body(&b, &e);
    ASSERT_EQ(ss_body_count(body), 3);
    const ss_verr *ve = NULL;
    ASSERT_EQ(ss_body_change_error(body, 0, &ve), 0);
    ASSERT_EQ(ss_body_change_error(body, 1, &ve), SS_EENUM);
    ASSERT(ve != NULL);
    ASSERT_EQ(ve->code, SS_EENUM);
    ASSERT_STR_EQ(ve->field, "alert_level");
    ASSERT(ve->msg[0] != '\0');
    ASSERT_EQ(ss_body_change_error(body, 2, &ve), 0);
    /* The refused change still has its seq and its exact bytes. */
    ASSERT_U64_EQ(ss_body_change(body, 1)->seq, 101);
    const uint8_t *p;
    size_t len;
    ss_body_change_raw(body, 1, &p, &len);
    ASSERT_EQ(len, b.elen[1]);
    ASSERT_MEM_EQ(p, b.body + b.off[1], len);
    ss_body_free(body);
}

/* Bodies that refuse the whole envelope: (body text with %llu for the first
 * seq where needed, header count, expected error). first_seq is 5. */
static const struct {
    const char *name;
    const char *body;
    uint32_t count;
    int rc;
} bad_bodies[] = {
    { "seq gap", "[{\"seq\":5,\"x\":1},{\"seq\":7,\"x\":1}]", 2, SS_ESEQ },
    { "seq repeated", "[{\"seq\":5},{\"seq\":5}]", 2, SS_ESEQ },
    { "seq starts late", "[{\"seq\":6}]", 1, SS_ESEQ },
    { "seq starts early", "[{\"seq\":4}]", 1, SS_ESEQ },
    { "seq reversed", "[{\"seq\":6},{\"seq\":5}]", 2, SS_ESEQ },
    { "seq missing", "[{\"hlc\":\"00018c2a4b1f0001\"}]", 1, SS_ESEQ },
    { "seq as string", "[{\"seq\":\"5\"}]", 1, SS_ESEQ },
    { "seq fractional", "[{\"seq\":5.5}]", 1, SS_ESEQ },
    { "seq 60 digits", "[{\"seq\":123456789012345678901234567890123456789012345678901234567890}]",
      1, SS_ESEQ },
    { "fewer changes than count", "[{\"seq\":5}]", 2, SS_ESEQ },
    { "more changes than count", "[{\"seq\":5},{\"seq\":6}]", 1, SS_ESEQ },
    { "empty array", "[]", 1, SS_ESEQ },
    { "not an array", "{\"seq\":5}", 1, SS_EFIELDTYPE },
    { "element not an object", "[[5]]", 1, SS_EFIELDTYPE },
    { "element a number", "[5]", 1, SS_EFIELDTYPE },
    { "malformed", "[{\"seq\":5}", 1, SS_EJSON },
    { "trailing data", "[{\"seq\":5}] x", 1, SS_EJSON },
    { "empty body", "", 1, SS_EJSON },
    { "duplicate key", "[{\"seq\":5,\"seq\":5}]", 1, SS_EDUPKEY },
    { "duplicate key deep", "[{\"seq\":5,\"fields\":{\"a\":1,\"a\":2}}]", 1, SS_EDUPKEY },
    { "too deep", "[{\"seq\":5,\"fields\":{\"a\":[[[[[[[1]]]]]]]}}]", 1, SS_EDEPTH },
    { "invalid UTF-8", "[{\"seq\":5,\"k\":\"\xc0\xaf\"}]", 1, SS_EUTF8 },
    { "escaped NUL", "[{\"seq\":5,\"k\":\"\\u0000\"}]", 1, SS_ENUL },
};

TEST(structural_body_faults_refuse_the_envelope)
{
    for (size_t v = 0; v < sizeof(bad_bodies) / sizeof(bad_bodies[0]); v++) {
        uint8_t buf[512];
        size_t blen = strlen(bad_bodies[v].body);
        int h = ss_envelope_write_header(buf, sizeof(buf), "gw-1", 5, bad_bodies[v].count,
                                         (uint32_t)blen, 0);
        ASSERT_GT(h, 0);
        memcpy(buf + h, bad_bodies[v].body, blen);
        ss_envelope e;
        ASSERT_EQ(ss_envelope_parse(buf, (size_t)h + blen, &e), 0);
        ss_body *body = (ss_body *)&e; /* must be reset to NULL */
        ss_verr err;
        memset(&err, 0, sizeof(err));
        int rc = ss_body_parse(&e, &body, &err);
        if (rc != bad_bodies[v].rc)
            SS_TEST_FAIL("\"%s\": got %s (%s), want %s", bad_bodies[v].name, ss_err_name(rc),
                         err.msg, ss_err_name(bad_bodies[v].rc));
        ASSERT(body == NULL);
        ASSERT_EQ(err.code, rc);
    }
}

TEST(a_seq_fault_anywhere_refuses_all)
{
    /* Valid changes, with the seq of one of them wrong in turn. */
    for (int bad = 0; bad < 3; bad++) {
        built b;
        build3(&b, 10);
        /* The seq digits of change `bad` are "1N"; make them "19". */
        char *s = strstr(b.body + b.off[bad], "\"seq\"");
        ASSERT(s != NULL);
        char *d = strchr(s, '1');
        ASSERT(d != NULL);
        d[1] = '9';
        size_t h = ss_envelope_header_len("gw-1");
        memcpy(b.buf + h, b.body, b.body_len);
        ss_envelope e;
        ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
        ss_body *body = NULL;
        ss_verr err;
        ASSERT_EQ(ss_body_parse(&e, &body, &err), SS_ESEQ);
        ASSERT_STR_EQ(err.field, "seq");
        ASSERT(body == NULL);
    }
}

TEST(max_count_body)
{
    /* SS_ENV_MAX_COUNT changes, each a delete. */
    size_t cap = (size_t)SS_ENV_MAX_COUNT * 160 + 64;
    uint8_t *buf = malloc(cap);
    ASSERT(buf != NULL);
    size_t h = ss_envelope_header_len("gw-9");
    size_t p = h;
    buf[p++] = '[';
    for (uint32_t i = 0; i < SS_ENV_MAX_COUNT; i++)
        p += (size_t)snprintf(
            (char *)buf + p, cap - p,
            "%s{\"seq\":%u,\"hlc\":\"00018c2a4b1f0001\",\"collection\":"
            "\"incident\",\"key\":\"k%u\",\"site\":\"s\",\"op\":\"delete\",\"fields\":{}}",
            i ? "," : "", i + 1, i);
    buf[p++] = ']';
    ASSERT_EQ(ss_envelope_write_header(buf, cap, "gw-9", 1, SS_ENV_MAX_COUNT, (uint32_t)(p - h), 0),
              (int)h);
    ss_envelope e;
    ASSERT_EQ(ss_envelope_parse(buf, p, &e), 0);
    ss_body *body = NULL;
    ss_verr err;
    ASSERT_EQ(ss_body_parse(&e, &body, &err), 0);
    ASSERT_EQ(ss_body_count(body), SS_ENV_MAX_COUNT);
    ASSERT_EQ(ss_body_change_error(body, SS_ENV_MAX_COUNT - 1, NULL), 0);
    const uint8_t *raw;
    size_t len;
    ss_body_change_raw(body, SS_ENV_MAX_COUNT - 1, &raw, &len);
    ASSERT_EQ(raw[len - 1], '}');
    ASSERT_EQ(raw[len], ']');
    ss_body_free(body);
    free(buf);
}

/* Fails the Nth allocation. */
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

TEST(body_allocation_failure_at_every_step)
{
    built b;
    build3(&b, 1);
    ss_envelope e;
    ASSERT_EQ(ss_envelope_parse(b.buf, b.len, &e), 0);
    for (long k = 1;; k++) {
        g_fail.calls = 0;
        g_fail.fail_at = k;
        ss_set_allocator(&failing);
        ss_body *body = NULL;
        ss_verr err;
        int rc = ss_body_parse(&e, &body, &err);
        long calls = g_fail.calls;
        ss_body_free(body);
        ss_set_allocator(NULL);
        if (calls < k) {
            ASSERT_EQ(rc, 0);
            break;
        }
        ASSERT(rc == SS_ENOMEM || rc == SS_EJSON);
        ASSERT(body == NULL);
    }
}

#define ALL_TESTS                                                    \
    SS_TEST_ENTRY(parse_valid_envelope)                              \
    SS_TEST_ENTRY(header_layout_is_big_endian)                       \
    SS_TEST_ENTRY(parse_signed_envelope)                             \
    SS_TEST_ENTRY(truncation_at_every_byte)                          \
    SS_TEST_ENTRY(parse_errors_for_every_field)                      \
    SS_TEST_ENTRY(signature_trailer_errors)                          \
    SS_TEST_ENTRY(write_header_errors)                               \
    SS_TEST_ENTRY(body_changes_decoded_and_raw_spans_exact)          \
    SS_TEST_ENTRY(per_change_error_is_carried_and_envelope_accepted) \
    SS_TEST_ENTRY(structural_body_faults_refuse_the_envelope)        \
    SS_TEST_ENTRY(a_seq_fault_anywhere_refuses_all)                  \
    SS_TEST_ENTRY(max_count_body)                                    \
    SS_TEST_ENTRY(body_allocation_failure_at_every_step)

SS_TEST_MAIN(ALL_TESTS)
