/* test_body_direct.c - the envelope body's direct scan against the cJSON path:
 * every body the scan accepts must decode exactly as the cJSON path decodes it
 * (change by change, error by error, raw span by raw span), and every body it
 * declines must reach the cJSON path and be judged there unchanged. */
#include "ss_test.h"

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/hlc.h"
#include "proto/schema.h"
#include "internal.h"

/* Room for a body of several changes with 4000-byte texts and the mutations
 * that grow it. */
#define BODY_CAP (1u << 18)

typedef struct envbuf {
    uint8_t buf[BODY_CAP + 128];
    ss_envelope env;
} envbuf;

/* ---- Deterministic randomness (splitmix64): the same cases on every run. */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static size_t below(rng *r, size_t n)
{
    return n ? (size_t)(rnd(r) % n) : 0;
}

/* ---- Reporting. */

/* Prints bytes as one C string literal (octal escapes, so that a following
 * hex digit cannot be taken into the escape), to paste into a test. */
static void dump_c(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):\n\"", what, n);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c == '\n')
            fprintf(stderr, "\\n");
        else if (c == '\t')
            fprintf(stderr, "\\t");
        else if (c == '\r')
            fprintf(stderr, "\\r");
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\%03o", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"\n");
}

/* ---- Envelopes and the three parse modes. */

static void make_env(envbuf *eb, const void *body, size_t len, uint64_t first, uint32_t count)
{
    ASSERT_LE(len, (size_t)BODY_CAP);
    int h =
        ss_envelope_write_header(eb->buf, sizeof(eb->buf), "gw-1", first, count, (uint32_t)len, 0);
    ASSERT_GT(h, 0);
    if (len > 0)
        memcpy(eb->buf + h, body, len);
    ASSERT_EQ(ss_envelope_parse(eb->buf, (size_t)h + len, &eb->env), 0);
}

typedef struct parsed {
    int rc;
    ss_body *b;
    ss_verr err;
} parsed;

static void parse_mode(const ss_envelope *env, int mode, parsed *p)
{
    memset(&p->err, 0, sizeof(p->err));
    p->b = NULL;
    p->rc = ss__body_parse_mode(env, &p->b, &p->err, mode);
    /* Every mode hands out a body exactly when it returns 0. */
    ASSERT_EQ(p->rc == 0, p->b != NULL);
}

/* Where the first element starts: after the '[' and the white space around it. */
static size_t first_elem_off(const uint8_t *t, size_t len)
{
    size_t i = 0;
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n'))
        i++;
    if (i < len && t[i] == '[')
        i++;
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n'))
        i++;
    return i;
}

/* Compares two parsed bodies of the same envelope change by change: every
 * member of ss_change, every field value, the per-change result and error,
 * and the raw span (offset, length, bytes). Returns 0, or -1 with the first
 * difference described in msg. */
static int body_diff(const ss_envelope *env, const ss_body *a, const ss_body *b, char *msg,
                     size_t cap)
{
#define DIFF(...)                        \
    do {                                 \
        snprintf(msg, cap, __VA_ARGS__); \
        return -1;                       \
    } while (0)
    if (ss_body_count(a) != ss_body_count(b))
        DIFF("count %u vs %u", ss_body_count(a), ss_body_count(b));
    if (ss_body_count(a) != env->count)
        DIFF("count %u, header says %u", ss_body_count(a), env->count);
    size_t off0 = first_elem_off(env->body, env->body_len);
    const uint8_t *a0 = NULL, *b0 = NULL;
    for (uint32_t i = 0; i < ss_body_count(a); i++) {
        const ss_change *x = ss_body_change(a, i), *y = ss_body_change(b, i);
        if (!x || !y)
            DIFF("change %u missing", i);
        if (x->seq != y->seq)
            DIFF("change %u seq %llu vs %llu", i, (unsigned long long)x->seq,
                 (unsigned long long)y->seq);
        if (x->hlc != y->hlc)
            DIFF("change %u hlc %llx vs %llx", i, (unsigned long long)x->hlc,
                 (unsigned long long)y->hlc);
        if (x->coll != y->coll)
            DIFF("change %u collection %s vs %s", i, x->coll ? x->coll->name : "(none)",
                 y->coll ? y->coll->name : "(none)");
        if (memcmp(x->key, y->key, sizeof(x->key)) != 0)
            DIFF("change %u key \"%s\" vs \"%s\"", i, x->key, y->key);
        if (memcmp(x->site, y->site, sizeof(x->site)) != 0)
            DIFF("change %u site \"%s\" vs \"%s\"", i, x->site, y->site);
        if (x->op != y->op)
            DIFF("change %u op %d vs %d", i, (int)x->op, (int)y->op);
        if (x->nfields != y->nfields)
            DIFF("change %u nfields %d vs %d", i, x->nfields, y->nfields);
        for (int k = 0; k < x->nfields && k < SS_SCHEMA_MAX_FIELDS; k++) {
            const ss_fieldval *f = &x->fields[k], *g = &y->fields[k];
            if (f->def != g->def)
                DIFF("change %u field %d def %s vs %s", i, k, f->def ? f->def->name : "(none)",
                     g->def ? g->def->name : "(none)");
            if (f->v.is_null != g->v.is_null)
                DIFF("change %u field %d is_null %d vs %d", i, k, f->v.is_null, g->v.is_null);
            if (f->v.num != g->v.num)
                DIFF("change %u field %d num %lld vs %lld", i, k, (long long)f->v.num,
                     (long long)g->v.num);
            if ((f->v.str == NULL) != (g->v.str == NULL))
                DIFF("change %u field %d str %s vs %s", i, k, f->v.str ? "set" : "NULL",
                     g->v.str ? "set" : "NULL");
            if (f->v.len != g->v.len)
                DIFF("change %u field %d len %zu vs %zu", i, k, f->v.len, g->v.len);
            if (f->v.len > 0 && memcmp(f->v.str, g->v.str, f->v.len) != 0)
                DIFF("change %u field %d (%s) bytes differ", i, k, f->def ? f->def->name : "");
        }
        const ss_verr *ea = NULL, *eb = NULL;
        int ra = ss_body_change_error(a, i, &ea), rb = ss_body_change_error(b, i, &eb);
        if (ra != rb)
            DIFF("change %u rc %s vs %s", i, ss_err_name(ra), ss_err_name(rb));
        if (ra < 0) {
            if (!ea || !eb)
                DIFF("change %u error detail missing", i);
            if (ea->code != eb->code)
                DIFF("change %u verr.code %s vs %s", i, ss_err_name(ea->code),
                     ss_err_name(eb->code));
            if (strcmp(ea->field, eb->field) != 0)
                DIFF("change %u verr.field \"%s\" vs \"%s\"", i, ea->field, eb->field);
            if (strcmp(ea->msg, eb->msg) != 0)
                DIFF("change %u verr.msg \"%s\" vs \"%s\"", i, ea->msg, eb->msg);
        }
        const uint8_t *pa, *pb;
        size_t la, lb;
        ss_body_change_raw(a, i, &pa, &la);
        ss_body_change_raw(b, i, &pb, &lb);
        if (!pa || !pb)
            DIFF("change %u raw span missing", i);
        if (i == 0) {
            a0 = pa;
            b0 = pb;
        }
        /* Both bodies hold their own copy of the text: the offsets from the
         * first element must agree, and the bytes must be the envelope's. */
        if (pa - a0 != pb - b0)
            DIFF("change %u raw offset %td vs %td", i, pa - a0, pb - b0);
        if (la != lb)
            DIFF("change %u raw length %zu vs %zu", i, la, lb);
        size_t off = off0 + (size_t)(pa - a0);
        if (off > env->body_len || env->body_len - off < la ||
            memcmp(pa, env->body + off, la) != 0 || memcmp(pb, env->body + off, lb) != 0)
            DIFF("change %u raw bytes are not the body's at offset %zu", i, off);
    }
    return 0;
#undef DIFF
}

static void fail_diff(const char *what, const ss_envelope *env, const char *msg)
{
    fprintf(stderr, "%s: first_seq=%llu count=%u: %s\n", what, (unsigned long long)env->first_seq,
            env->count, msg);
    dump_c("body", env->body, env->body_len);
    SS_TEST_FAIL("%s: %s", what, msg);
}

static void expect_same(const char *what, const ss_envelope *env, const ss_body *a,
                        const ss_body *b)
{
    char msg[1024];
    if (body_diff(env, a, b, msg, sizeof(msg)) != 0)
        fail_diff(what, env, msg);
}

/* AUTO must be CJSON: the same rc and error, and the same changes. */
static void expect_auto_is_cjson(const char *what, const ss_envelope *env, const parsed *au,
                                 const parsed *cj)
{
    char msg[1024];
    if (au->rc != cj->rc) {
        snprintf(msg, sizeof(msg), "AUTO rc %s, CJSON rc %s", ss_err_name(au->rc),
                 ss_err_name(cj->rc));
        fail_diff(what, env, msg);
    }
    if (cj->rc < 0 && (au->err.code != cj->err.code || strcmp(au->err.field, cj->err.field) != 0 ||
                       strcmp(au->err.msg, cj->err.msg) != 0)) {
        snprintf(msg, sizeof(msg), "AUTO err %s/%s/%s, CJSON err %s/%s/%s",
                 ss_err_name(au->err.code), au->err.field, au->err.msg, ss_err_name(cj->err.code),
                 cj->err.field, cj->err.msg);
        fail_diff(what, env, msg);
    }
    if (cj->rc == 0)
        expect_same(what, env, au->b, cj->b);
}

static void free_parsed(parsed *p)
{
    ss_body_free(p->b);
    p->b = NULL;
}

/* DIRECT must take the body, and decode it as CJSON does. */
static void expect_direct_matches(const char *what, const ss_envelope *env)
{
    parsed di, cj, au;
    parse_mode(env, SS__BODY_DIRECT, &di);
    parse_mode(env, SS__BODY_CJSON, &cj);
    parse_mode(env, SS__BODY_AUTO, &au);
    if (di.rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "DIRECT declined (rc %d); CJSON rc %s %s", di.rc,
                 ss_err_name(cj.rc), cj.err.msg);
        fail_diff(what, env, msg);
    }
    if (cj.rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "DIRECT took it, CJSON refused it: %s field=%s %s",
                 ss_err_name(cj.rc), cj.err.field, cj.err.msg);
        fail_diff(what, env, msg);
    }
    expect_same(what, env, di.b, cj.b);
    expect_auto_is_cjson(what, env, &au, &cj);
    free_parsed(&di);
    free_parsed(&cj);
    free_parsed(&au);
}

/* ---- Generating valid changes (valid JSON; not always schema-valid). */

static const char *const text_pool[] = {
    "plain",
    "",
    "x",
    "quote \" back \\ slash / end",
    "\"",
    "\\",
    "\\\\\"\\",
    "nl\nline two",
    "tab\there",
    "bs\b ff\f cr\r",
    "multi\r\nline\n\ttext",
    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
    "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80",
    "brackets ]}[{ ,: \"}]",
    "del\x7f",
    "null",
    "12345",
    "normal",
};

static const char *const time_pool[] = {
    "2026-12-04T22:18:25Z",     "2026-12-04T22:18:25.123Z", "2000-02-29T00:00:00Z",
    "2199-12-31T23:59:59.999Z", "2026-13-01T00:00:00Z",     "1999-12-31T23:59:59Z",
    "2026-02-29T10:00:00Z",     "2026-12-04 22:18:25Z",
};

static const int64_t int_pool[] = {
    0,
    1,
    2,
    5,
    6,
    -1,
    42,
    99999,
    100000,
    100001,
    -999999999999999,
    999999999999999,
    100000000000000,
};

static const char *const site_pool[] = {
    "site-1",
    "a",
    "s.b_c-9",
    "0site",
    "s123456789012345678901234567890123456789012345678901234567890123", /* 64 */
    "Bad",
};

static const char *const key_pool[] = {
    "K:1.a_b-c",
    "k",
    "gw-1-00018c2a4b1f0001",
    "k123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123"
    "45",
    "bad key",
    "",
};

/* Strings that outlive the change they are set in (ss_value does not copy). */
typedef struct store {
    char longs[2][4100];
    char key[SS_KEY_MAX + 8];
} store;

/* A long string of exactly n bytes (ASCII with some escapes and UTF-8). */
static const char *long_text(char *buf, size_t n, int multiline)
{
    static const char pat[] = "lorem \"ipsum\" \\ dolor/ sit \xc3\xa9 amet";
    size_t i = 0;
    while (i < n) {
        buf[i] = pat[i % (sizeof(pat) - 1)];
        i++;
    }
    /* Do not end in the middle of the two-byte sequence. */
    if (n > 0 && ((unsigned char)buf[n - 1] == 0xc3))
        buf[n - 1] = '.';
    if (multiline && n > 10) {
        size_t at = n / 2;
        while ((unsigned char)buf[at] >= 0x80)
            at++; /* on an ASCII byte, not inside the two-byte sequence */
        buf[at] = '\n';
    }
    buf[n] = '\0';
    return buf;
}

static void gen_value(rng *r, const ss_field_def *f, ss_value *v, store *st, int *nlong)
{
    memset(v, 0, sizeof(*v));
    if (!f->required && below(r, 8) == 0) {
        v->is_null = 1;
        return;
    }
    if (below(r, 40) == 0) {
        v->is_null = 1; /* even on a required field: a schema error */
        return;
    }
    const char *s = NULL;
    switch (f->type) {
    case SS_FT_INT:
        if (below(r, 3) == 0)
            v->num = f->min + (int64_t)below(r, (size_t)(f->max - f->min + 1));
        else
            v->num = int_pool[below(r, sizeof(int_pool) / sizeof(int_pool[0]))];
        return;
    case SS_FT_ENUM:
        if (below(r, 10) == 0) {
            s = text_pool[below(r, sizeof(text_pool) / sizeof(text_pool[0]))];
        } else {
            size_t n = 0;
            while (f->enums[n])
                n++;
            s = f->enums[below(r, n)];
        }
        break;
    case SS_FT_TIME:
        s = time_pool[below(r, sizeof(time_pool) / sizeof(time_pool[0]))];
        break;
    case SS_FT_STRING:
    case SS_FT_TEXT:
        if (*nlong < 2 && below(r, 6) == 0) {
            /* The length limits and one past them. */
            static const size_t lens[] = { 1, 100, 101, 200, 201, 1024, 1025, 4000, 4001 };
            size_t n = lens[below(r, sizeof(lens) / sizeof(lens[0]))];
            s = long_text(st->longs[(*nlong)++], n, f->type == SS_FT_TEXT);
        } else {
            s = text_pool[below(r, sizeof(text_pool) / sizeof(text_pool[0]))];
        }
        break;
    }
    v->str = s;
    v->len = strlen(s);
}

static void gen_change(rng *r, ss_change *ch, uint64_t seq, store *st)
{
    int ncoll;
    const ss_collection_def *colls = ss_schema_collections(&ncoll);
    const ss_collection_def *c = &colls[below(r, (size_t)ncoll)];
    int nlong = 0;

    memset(ch, 0, sizeof(*ch));
    ch->seq = seq;
    ch->hlc = below(r, 30) == 0 ? 0 : (rnd(r) | 1);
    ch->coll = c;
    const char *site = site_pool[below(r, sizeof(site_pool) / sizeof(site_pool[0]))];
    memcpy(ch->site, site, strlen(site));
    if (c->key_is_site && below(r, 10) != 0) {
        memcpy(ch->key, site, strlen(site));
    } else if (!c->key_is_site && below(r, 2) == 0) {
        int n = ss_incident_key(st->key, sizeof(st->key), "gw-1", ch->hlc);
        ASSERT_GT(n, 0);
        memcpy(ch->key, st->key, (size_t)n);
    } else {
        const char *k = key_pool[below(r, sizeof(key_pool) / sizeof(key_pool[0]))];
        memcpy(ch->key, k, strlen(k));
    }
    ch->op = (ss_op)(SS_OP_CREATE + (int)below(r, 3));
    if (ch->op == SS_OP_DELETE && below(r, 6) != 0)
        return; /* mostly a plain tombstone */
    /* A random subset of the fields, in random order. */
    int order[SS_SCHEMA_MAX_FIELDS];
    for (int i = 0; i < c->nfields; i++)
        order[i] = i;
    for (int i = c->nfields - 1; i > 0; i--) {
        int j = (int)below(r, (size_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int n = below(r, 4) == 0 ? c->nfields : (int)below(r, (size_t)c->nfields + 1);
    if (ch->op == SS_OP_CREATE && below(r, 3) != 0) {
        /* Usually a complete create: required fields first. */
        for (int i = 0; i < c->nfields; i++) {
            if (!c->fields[i].required)
                continue;
            gen_value(r, &c->fields[i], &ch->fields[ch->nfields].v, st, &nlong);
            ch->fields[ch->nfields++].def = &c->fields[i];
        }
    }
    for (int i = 0; i < n; i++) {
        const ss_field_def *f = &c->fields[order[i]];
        int dup = 0;
        for (int k = 0; k < ch->nfields; k++)
            dup |= ch->fields[k].def == f;
        if (dup)
            continue;
        gen_value(r, f, &ch->fields[ch->nfields].v, st, &nlong);
        ch->fields[ch->nfields++].def = f;
    }
}

/* Copies JSON text adding random white space (the four JSON kinds) around
 * structural characters outside strings. Returns the new length. */
static size_t add_ws(rng *r, const char *in, size_t n, char *out, size_t cap)
{
    static const char ws[] = " \t\r\n";
    size_t o = 0;
    int in_str = 0;
#define PUT(c)                \
    do {                      \
        ASSERT_LT(o, cap);    \
        out[o++] = (char)(c); \
    } while (0)
#define SOME_WS()                          \
    do {                                   \
        if (below(r, 3) == 0) {            \
            size_t m = 1 + below(r, 3);    \
            for (size_t q = 0; q < m; q++) \
                PUT(ws[below(r, 4)]);      \
        }                                  \
    } while (0)
    SOME_WS();
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (in_str) {
            PUT(c);
            if (c == '\\') {
                ASSERT_LT(i + 1, n);
                PUT(in[++i]);
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
            PUT(c);
            continue;
        }
        if (strchr("{}[]:,", c)) {
            SOME_WS();
            PUT(c);
            SOME_WS();
            continue;
        }
        PUT(c);
    }
    SOME_WS();
    return o;
#undef PUT
#undef SOME_WS
}

/* A body of `count` generated changes from first_seq, optionally with white
 * space between the tokens. Returns its length. */
static size_t gen_body(rng *r, uint64_t first, uint32_t count, int spaced, char *out, size_t cap)
{
    char *tmp = malloc(BODY_CAP);
    size_t p = 0;
    ASSERT(tmp);
    tmp[p++] = '[';
    for (uint32_t i = 0; i < count; i++) {
        ss_change ch;
        store st;
        gen_change(r, &ch, first + i, &st);
        if (i > 0)
            tmp[p++] = ',';
        int n = ss_change_encode(&ch, tmp + p, BODY_CAP - p - 2);
        if (n < 0)
            SS_TEST_FAIL("encode: %s", ss_err_name(n));
        p += (size_t)n;
    }
    tmp[p++] = ']';
    size_t n;
    if (spaced) {
        n = add_ws(r, tmp, p, out, cap);
    } else {
        ASSERT_LE(p, cap);
        memcpy(out, tmp, p);
        n = p;
    }
    free(tmp);
    return n;
}

static const uint64_t first_pool[] = { 1, 2, 40, 1000, 4294967296ull, 999999999999990ull };

/* Hand-written bodies the scan must take: escapes it unescapes itself,
 * white space everywhere, fields in any order, raw UTF-8 and DEL. */
static const char *const handmade_ok[] = {
    "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":\"site-1\","
    "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"a\\/b \\\" \\\\ end\"}}]",
    "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":\"site-1\","
    "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"\\b\\f\\n\\r\\t\"}}]",
    "[{\"seq\":1,\"hlc\":\"00018C2A4B1F0001\",\"collection\":\"incident\",\"key\":\"k-1\","
    "\"site\":\"site-1\",\"op\":\"create\",\"fields\":{\"title\":\"\\/\\/\",\"severity\":5,"
    "\"category\":\"drone\",\"description\":\"\\\"a\\\"\\n\\tb\\r\\n\\\\\"}}]",
    " \r\n[ \t{ \"seq\" :\n1 ,\t\"hlc\"\r: \"00018c2a4b1f0001\" , \"collection\" : \"incident\" ,"
    " \"key\" : \"k-1\" , \"site\" : \"site-1\" , \"op\" : \"update\" , \"fields\" : { "
    "\"severity\" : -1 , \"status\" : null , \"location\" : \"\xe2\x82\xac \xf0\x9f\x9a\xa8\" "
    "} } \n] \t",
    "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"k-1\","
    "\"site\":\"site-1\",\"op\":\"delete\",\"fields\":{ }},{\"seq\":2,\"hlc\":"
    "\"00018c2a4b1f0002\",\"collection\":\"site_status\",\"key\":\"site-1\",\"site\":"
    "\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"del\x7f \\\\\\\"\",\"personnel_on_site\":"
    "0}}]",
    "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":\"site-1\","
    "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"\\\\\",\"comms\":\"\\/\"}}]",
};

TEST(direct_matches_cjson_on_encoded_changes)
{
    envbuf *eb = malloc(sizeof(*eb));
    char *body = malloc(BODY_CAP);
    ASSERT(eb && body);
    rng r = { 0x5EED0001u };
    char what[64];

    for (size_t h = 0; h < sizeof(handmade_ok) / sizeof(handmade_ok[0]); h++) {
        size_t n = strlen(handmade_ok[h]);
        uint32_t count = strstr(handmade_ok[h], "\"seq\":2") ? 2 : 1;
        make_env(eb, handmade_ok[h], n, 1, count);
        snprintf(what, sizeof(what), "handmade %zu", h);
        expect_direct_matches(what, &eb->env);
    }
    for (int iter = 0; iter < 3000; iter++) {
        uint64_t first = first_pool[below(&r, sizeof(first_pool) / sizeof(first_pool[0]))];
        uint32_t count = 1 + (uint32_t)below(&r, iter % 10 == 0 ? 9 : 3);
        size_t n = gen_body(&r, first, count, (int)below(&r, 2), body, BODY_CAP);
        make_env(eb, body, n, first, count);
        snprintf(what, sizeof(what), "generated %d", iter);
        expect_direct_matches(what, &eb->env);
    }
    free(body);
    free(eb);
}

/* ---- Inputs the scan must decline, and what the cJSON path says of them. */

#define SITE_HEAD                                                                               \
    "\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":\"site-1\"," \
    "\"site\":\"site-1\",\"op\":\"update\""
#define SITE_CHANGE(fields) "{" SITE_HEAD ",\"fields\":{" fields "}}"
#define SITE_BODY(fields)   "[" SITE_CHANGE(fields) "]"
#define INC_TAIL \
    "\"op\":\"create\",\"fields\":{\"category\":\"fire\",\"severity\":2,\"title\":\"t\"}}]"
#define K97                                                                                        \
    "k1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901" \
    "23456"
#define S65 "s1234567890123456789012345678901234567890123456789012345678901234"

_Static_assert(sizeof(K97) - 1 == 97, "K97 is 97 bytes");
_Static_assert(sizeof(S65) - 1 == 65, "S65 is 65 bytes");

typedef struct decline_case {
    const char *name;
    const char *body;
    size_t len; /* 0: strlen(body) */
    uint64_t first;
    uint32_t count;
    int want_rc;            /* what the cJSON path returns for the body */
    int want_crc;           /* and for change 0 when want_rc == 0 */
    const char *want_field; /* the error's field for change 0 (NULL: not checked) */
} decline_case;

static const decline_case declines[] = {
    /* Escapes the scan leaves to cJSON. */
    { "u_escape_in_value", SITE_BODY("\"note\":\"caf\\u00e9\""), 0, 1, 1, 0, 0, NULL },
    { "u_escape_surrogate_pair", SITE_BODY("\"note\":\"\\ud83d\\ude00\""), 0, 1, 1, 0, 0, NULL },
    { "u_escape_in_key",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site\\u002d1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, 0, NULL },
    { "u_escape_in_field_name", SITE_BODY("\"no\\u0074e\":\"x\""), 0, 1, 1, 0, 0, NULL },
    { "u_escape_in_member_name",
      "[{\"s\\u0065q\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, 0, NULL },
    { "u_escape_in_hlc",
      "[{\"seq\":1,\"hlc\":\"\\u00300018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, 0, NULL },
    { "escape_in_key",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":"
      "\"k\\/1\",\"site\":\"site-1\"," INC_TAIL,
      0, 1, 1, 0, SS_EID, "key" },
    { "escape_in_collection",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"\\u0069ncident\",\"key\":"
      "\"k-1\",\"site\":\"site-1\"," INC_TAIL,
      0, 1, 1, 0, 0, NULL },
    { "u0000_escape", SITE_BODY("\"note\":\"a\\u0000b\""), 0, 1, 1, SS_ENUL, 0, NULL },
    /* Numbers. */
    { "int_fraction", SITE_BODY("\"personnel_on_site\":1.5"), 0, 1, 1, 0, SS_EFIELDTYPE,
      "personnel_on_site" },
    { "int_integral_fraction", SITE_BODY("\"personnel_on_site\":2.0"), 0, 1, 1, 0, 0, NULL },
    { "int_exponent", SITE_BODY("\"personnel_on_site\":1e2"), 0, 1, 1, 0, 0, NULL },
    { "int_exponent_upper", SITE_BODY("\"personnel_on_site\":1E+2"), 0, 1, 1, 0, 0, NULL },
    { "int_exponent_range", SITE_BODY("\"personnel_on_site\":1e300"), 0, 1, 1, 0, SS_ERANGE,
      "personnel_on_site" },
    { "int_leading_zero", SITE_BODY("\"personnel_on_site\":05"), 0, 1, 1, SS_EJSON, 0, NULL },
    { "int_minus_zero", SITE_BODY("\"personnel_on_site\":-0"), 0, 1, 1, 0, 0, NULL },
    { "int_16_digits", SITE_BODY("\"personnel_on_site\":1000000000000000"), 0, 1, 1, 0, SS_ERANGE,
      "personnel_on_site" },
    { "int_16_digits_negative", SITE_BODY("\"personnel_on_site\":-1000000000000000"), 0, 1, 1, 0,
      SS_ERANGE, "personnel_on_site" },
    { "int_above_2_53", SITE_BODY("\"personnel_on_site\":90071992547409930"), 0, 1, 1, 0, SS_ERANGE,
      "personnel_on_site" },
    { "int_plus_sign", SITE_BODY("\"personnel_on_site\":+5"), 0, 1, 1, SS_EJSON, 0, NULL },
    { "seq_16_digits",
      "[{\"seq\":1000000000000000,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\","
      "\"key\":\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1000000000000000ull, 1, 0, 0, NULL },
    { "seq_integral_fraction",
      "[{\"seq\":1.0,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, 0, NULL },
    { "seq_fraction",
      "[{\"seq\":1.5,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, SS_ESEQ, 0, NULL },
    { "seq_negative",
      "[{\"seq\":-1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, SS_ESEQ, 0, NULL },
    { "seq_as_string",
      "[{\"seq\":\"1\",\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, SS_ESEQ, 0, NULL },
    /* Members. */
    { "members_reordered",
      "[{\"hlc\":\"00018c2a4b1f0001\",\"seq\":1,\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, 0, NULL },
    { "fields_before_op",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"fields\":{\"note\":\"x\"},\"op\":\"update\"}]",
      0, 1, 1, 0, 0, NULL },
    { "unknown_member", "[{" SITE_HEAD ",\"fields\":{\"note\":\"x\"},\"extra\":1}]", 0, 1, 1, 0,
      SS_EUNKNOWNFIELD, "extra" },
    { "unknown_field", SITE_BODY("\"note\":\"x\",\"bogus\":1"), 0, 1, 1, 0, SS_EUNKNOWNFIELD,
      "bogus" },
    { "duplicate_field", SITE_BODY("\"note\":\"a\",\"note\":\"b\""), 0, 1, 1, SS_EDUPKEY, 0, NULL },
    { "duplicate_member_op", "[{" SITE_HEAD ",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]", 0,
      1, 1, SS_EDUPKEY, 0, NULL },
    { "duplicate_member_seq_last", "[{" SITE_HEAD ",\"fields\":{\"note\":\"x\"},\"seq\":1}]", 0, 1,
      1, SS_EDUPKEY, 0, NULL },
    { "missing_site",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EMISSING, "site" },
    { "missing_fields", "[{" SITE_HEAD "}]", 0, 1, 1, 0, SS_EMISSING, "fields" },
    { "missing_seq",
      "[{\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":\"site-1\","
      "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, SS_ESEQ, 0, NULL },
    /* Wrong types. */
    { "string_for_int", SITE_BODY("\"personnel_on_site\":\"5\""), 0, 1, 1, 0, SS_EFIELDTYPE,
      "personnel_on_site" },
    { "number_for_string", SITE_BODY("\"note\":5"), 0, 1, 1, 0, SS_EFIELDTYPE, "note" },
    { "true_for_int", SITE_BODY("\"personnel_on_site\":true"), 0, 1, 1, 0, SS_EFIELDTYPE,
      "personnel_on_site" },
    { "false_for_string", SITE_BODY("\"note\":false"), 0, 1, 1, 0, SS_EFIELDTYPE, "note" },
    { "object_for_enum", SITE_BODY("\"power\":{}"), 0, 1, 1, 0, SS_EFIELDTYPE, "power" },
    { "number_for_key",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":1,"
      "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EFIELDTYPE, "key" },
    { "null_for_site",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":null,\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EFIELDTYPE, "site" },
    { "number_for_hlc",
      "[{\"seq\":1,\"hlc\":18,\"collection\":\"site_status\",\"key\":\"site-1\",\"site\":"
      "\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EFIELDTYPE, "hlc" },
    { "hlc_15_digits",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f000\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EINVAL, "hlc" },
    { "fields_is_array", "[{" SITE_HEAD ",\"fields\":[]}]", 0, 1, 1, 0, SS_EFIELDTYPE, "fields" },
    { "unknown_collection",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"sites\",\"key\":\"site-1\","
      "\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EENUM, "collection" },
    { "unknown_op",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-1\",\"site\":\"site-1\",\"op\":\"upsert\",\"fields\":{\"note\":\"x\"}}]",
      0, 1, 1, 0, SS_EENUM, "op" },
    { "key_too_long",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"" K97
      "\",\"site\":\"site-1\"," INC_TAIL,
      0, 1, 1, 0, SS_ETOOLONG, "key" },
    { "site_too_long",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"k-1\","
      "\"site\":\"" S65 "\"," INC_TAIL,
      0, 1, 1, 0, SS_EID, "site" },
    /* Structure. */
    { "seq_not_next", SITE_BODY("\"note\":\"x\""), 0, 2, 1, SS_ESEQ, 0, NULL },
    { "count_above_body", SITE_BODY("\"note\":\"x\""), 0, 1, 2, SS_ESEQ, 0, NULL },
    { "count_below_body", "[" SITE_CHANGE("\"note\":\"x\"") "," SITE_CHANGE("\"note\":\"y\"") "]",
      0, 1, 1, SS_ESEQ, 0, NULL },
    { "empty_array", "[]", 0, 1, 1, SS_ESEQ, 0, NULL },
    { "empty_body", "", 0, 1, 1, SS_EJSON, 0, NULL },
    { "not_an_array", "{}", 0, 1, 1, SS_EFIELDTYPE, 0, NULL },
    { "element_not_object", "[1]", 0, 1, 1, SS_EFIELDTYPE, 0, NULL },
    { "trailing_garbage", SITE_BODY("\"note\":\"x\"") " x", 0, 1, 1, SS_EJSON, 0, NULL },
    { "trailing_bracket", SITE_BODY("\"note\":\"x\"") "]", 0, 1, 1, SS_EJSON, 0, NULL },
    { "trailing_comma_in_array", "[" SITE_CHANGE("\"note\":\"x\"") ",]", 0, 1, 1, SS_EJSON, 0,
      NULL },
    { "trailing_comma_in_fields", SITE_BODY("\"note\":\"x\","), 0, 1, 1, SS_EJSON, 0, NULL },
    { "truncated_null", SITE_BODY("\"note\":nul"), 0, 1, 1, SS_EJSON, 0, NULL },
    { "null_with_suffix", SITE_BODY("\"note\":nullx"), 0, 1, 1, SS_EJSON, 0, NULL },
    { "vertical_tab_between_tokens", SITE_BODY("\"note\":\v\"x\""), 0, 1, 1, SS_EJSON, 0, NULL },
    /* Bytes inside strings. */
    { "control_byte_in_string", SITE_BODY("\"note\":\"a\001b\""), 0, 1, 1, SS_EJSON, 0, NULL },
    { "raw_newline_in_string", SITE_BODY("\"note\":\"a\nb\""), 0, 1, 1, SS_EJSON, 0, NULL },
    { "raw_nul_in_string", SITE_BODY("\"note\":\"a\0b\""),
      sizeof(SITE_BODY("\"note\":\"a\0b\"")) - 1, 1, 1, SS_ENUL, 0, NULL },
    { "invalid_utf8", SITE_BODY("\"note\":\"\xc3\x28\""), 0, 1, 1, SS_EUTF8, 0, NULL },
    { "overlong_utf8", SITE_BODY("\"note\":\"\xc0\xaf\""), 0, 1, 1, SS_EUTF8, 0, NULL },
    { "surrogate_utf8", SITE_BODY("\"note\":\"\xed\xa0\x80\""), 0, 1, 1, SS_EUTF8, 0, NULL },
    { "cut_utf8_at_end", "[" SITE_CHANGE("\"note\":\"x\"") "]\xe2\x82", 0, 1, 1, SS_EUTF8, 0,
      NULL },
    { "bad_escape", SITE_BODY("\"note\":\"a\\xb\""), 0, 1, 1, SS_EJSON, 0, NULL },
    { "lone_backslash_at_end", "[{" SITE_HEAD ",\"fields\":{\"note\":\"abc\\", 0, 1, 1, SS_EJSON, 0,
      NULL },
    /* cJSON would skip a UTF-8 byte order mark; the precheck refuses any
     * non-ASCII byte outside strings (before, the span scanner disagreed
     * with cJSON and the peer got SS_EINTERNAL). */
    { "utf8_bom", "\xef\xbb\xbf" SITE_BODY("\"note\":\"x\""), 0, 1, 1, SS_EJSON, 0, NULL },
    { "utf8_between_tokens", "[\xc3\xa9" SITE_CHANGE("\"note\":\"x\"") "]", 0, 1, 1, SS_EJSON, 0,
      NULL },
    { "unterminated_string", "[{" SITE_HEAD ",\"fields\":{\"note\":\"abc", 0, 1, 1, SS_EJSON, 0,
      NULL },
};

TEST(direct_declines_what_cjson_judges)
{
    envbuf *eb = malloc(sizeof(*eb));
    ASSERT(eb);
    for (size_t v = 0; v < sizeof(declines) / sizeof(declines[0]); v++) {
        const decline_case *dc = &declines[v];
        size_t len = dc->len ? dc->len : strlen(dc->body);
        make_env(eb, dc->body, len, dc->first, dc->count);
        parsed di, cj, au;
        parse_mode(&eb->env, SS__BODY_DIRECT, &di);
        parse_mode(&eb->env, SS__BODY_CJSON, &cj);
        parse_mode(&eb->env, SS__BODY_AUTO, &au);
        if (di.rc != 1) {
            dump_c(dc->name, (const uint8_t *)dc->body, len);
            SS_TEST_FAIL("%s: DIRECT rc %d, want 1 (declined)", dc->name, di.rc);
        }
        if (cj.rc != dc->want_rc)
            SS_TEST_FAIL("%s: CJSON rc %s (%s %s), want %s", dc->name, ss_err_name(cj.rc),
                         cj.err.field, cj.err.msg, ss_err_name(dc->want_rc));
        if (cj.rc < 0)
            ASSERT_EQ(cj.err.code, cj.rc);
        if (cj.rc == 0) {
            const ss_verr *ve = NULL;
            int crc = ss_body_change_error(cj.b, 0, &ve);
            if (crc != dc->want_crc)
                SS_TEST_FAIL("%s: change 0 %s (%s %s), want %s", dc->name, ss_err_name(crc),
                             ve ? ve->field : "", ve ? ve->msg : "", ss_err_name(dc->want_crc));
            if (dc->want_field)
                ASSERT_STR_EQ(ve ? ve->field : "", dc->want_field);
        }
        expect_auto_is_cjson(dc->name, &eb->env, &au, &cj);
        free_parsed(&di);
        free_parsed(&cj);
        free_parsed(&au);
    }
    free(eb);
}

/* ---- Well-formed changes the schema refuses: the scan takes them and
 * reports the same per-change error as the cJSON path. */

typedef struct schema_case {
    const char *name;
    const char *body;
    int want_crc;
    const char *want_field;
} schema_case;

#define INC_HEAD                                                                          \
    "\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"k-1\"," \
    "\"site\":\"site-1\""
#define INC_BODY(op, fields) "[{" INC_HEAD ",\"op\":\"" op "\",\"fields\":{" fields "}}]"
#define T200                                                                                       \
    "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" \
    "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" \
    "tttttttttttttttt"

_Static_assert(sizeof(T200) - 1 == 200, "T200 is 200 bytes");

static const schema_case schema_cases[] = {
    { "valid_create", INC_BODY("create", "\"category\":\"fire\",\"severity\":2,\"title\":\"t\""), 0,
      NULL },
    { "create_missing_title", INC_BODY("create", "\"category\":\"fire\",\"severity\":2"),
      SS_EMISSING, "title" },
    { "create_null_severity",
      INC_BODY("create", "\"category\":\"fire\",\"severity\":null,\"title\":\"t\""), SS_EMISSING,
      "severity" },
    { "create_empty_title",
      INC_BODY("create", "\"category\":\"fire\",\"severity\":2,\"title\":\"\""), SS_EMISSING,
      "title" },
    { "enum_not_allowed", SITE_BODY("\"alert_level\":\"red\""), SS_EENUM, "alert_level" },
    { "enum_with_escape", SITE_BODY("\"alert_level\":\"hi\\\"gh\""), SS_EENUM, "alert_level" },
    { "severity_above", INC_BODY("update", "\"severity\":6"), SS_ERANGE, "severity" },
    { "severity_below", INC_BODY("update", "\"severity\":0"), SS_ERANGE, "severity" },
    { "personnel_negative", SITE_BODY("\"personnel_on_site\":-1"), SS_ERANGE, "personnel_on_site" },
    { "personnel_15_digits", SITE_BODY("\"personnel_on_site\":999999999999999"), SS_ERANGE,
      "personnel_on_site" },
    { "personnel_max", SITE_BODY("\"personnel_on_site\":100000"), 0, NULL },
    { "title_200", INC_BODY("update", "\"title\":\"" T200 "\""), 0, NULL },
    { "title_201", INC_BODY("update", "\"title\":\"" T200 "t\""), SS_ETOOLONG, "title" },
    { "title_201_by_escape", INC_BODY("update", "\"title\":\"" T200 "\\\\\""), SS_ETOOLONG,
      "title" },
    { "newline_in_one_line_string", SITE_BODY("\"note\":\"a\\nb\""), SS_EINVAL, "note" },
    { "backspace_in_text", INC_BODY("update", "\"description\":\"a\\bb\""), SS_EINVAL,
      "description" },
    { "tab_in_text", INC_BODY("update", "\"description\":\"a\\tb\\r\\n\""), 0, NULL },
    { "del_in_string", SITE_BODY("\"note\":\"a\x7f\""), SS_EINVAL, "note" },
    { "time_bad_form", INC_BODY("update", "\"occurred_at\":\"2026-12-04 22:18:25Z\""), SS_EINVAL,
      "occurred_at" },
    { "time_bad_date", INC_BODY("update", "\"occurred_at\":\"2026-02-30T22:18:25Z\""), SS_ERANGE,
      "occurred_at" },
    { "site_key_not_site",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"site_status\",\"key\":"
      "\"site-2\",\"site\":\"site-1\",\"op\":\"update\",\"fields\":{\"note\":\"x\"}}]",
      SS_EID, "key" },
    { "bad_site_id",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"k-1\","
      "\"site\":\"Site 1\"," INC_TAIL,
      SS_EID, "site" },
    { "bad_key_chars",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"k \xc3\xa9\","
      "\"site\":\"site-1\"," INC_TAIL,
      SS_EID, "key" },
    { "empty_key",
      "[{\"seq\":1,\"hlc\":\"00018c2a4b1f0001\",\"collection\":\"incident\",\"key\":\"\","
      "\"site\":\"site-1\"," INC_TAIL,
      SS_EID, "key" },
    { "hlc_zero",
      "[{\"seq\":1,\"hlc\":\"0000000000000000\",\"collection\":\"incident\",\"key\":\"k-1\","
      "\"site\":\"site-1\"," INC_TAIL,
      SS_ECLOCK, "hlc" },
    { "delete_with_fields", INC_BODY("delete", "\"status\":\"closed\""), SS_EINVAL, "fields" },
    { "update_without_fields", INC_BODY("update", ""), SS_EMISSING, "fields" },
    { "null_optional_ok", INC_BODY("update", "\"status\":null,\"location\":null"), 0, NULL },
};

TEST(schema_errors_same_in_both_paths)
{
    envbuf *eb = malloc(sizeof(*eb));
    ASSERT(eb);
    for (size_t v = 0; v < sizeof(schema_cases) / sizeof(schema_cases[0]); v++) {
        const schema_case *sc = &schema_cases[v];
        make_env(eb, sc->body, strlen(sc->body), 1, 1);
        expect_direct_matches(sc->name, &eb->env);
        parsed di;
        parse_mode(&eb->env, SS__BODY_DIRECT, &di);
        const ss_verr *ve = NULL;
        int crc = ss_body_change_error(di.b, 0, &ve);
        if (crc != sc->want_crc)
            SS_TEST_FAIL("%s: DIRECT change 0 %s (%s %s), want %s", sc->name, ss_err_name(crc),
                         ve ? ve->field : "", ve ? ve->msg : "", ss_err_name(sc->want_crc));
        if (sc->want_field)
            ASSERT_STR_EQ(ve ? ve->field : "", sc->want_field);
        free_parsed(&di);
    }
    free(eb);
}

/* ---- Random mutants of valid bodies: whatever DIRECT takes, CJSON takes and
 * decodes the same; AUTO always answers as CJSON does. */

#define MUT_CAP 8192

static int is_punct(uint8_t c)
{
    return c != 0 && strchr("{}[]:, \t\r\n", c) != NULL;
}

/* Token boundaries of JSON-ish text: a string (with its quotes), a run of
 * other non-structural bytes, or one structural byte. */
static size_t tokens(const uint8_t *t, size_t n, size_t *st, size_t *ln, size_t max)
{
    size_t k = 0, i = 0;
    while (i < n && k < max) {
        size_t s = i;
        if (t[i] == '"') {
            i++;
            while (i < n && t[i] != '"')
                i += (t[i] == '\\') ? 2 : 1;
            i = i < n ? i + 1 : n;
        } else if (is_punct(t[i])) {
            i++;
        } else {
            while (i < n && t[i] != '"' && !is_punct(t[i]))
                i++;
        }
        st[k] = s;
        ln[k] = i - s;
        k++;
    }
    return k;
}

static const char dict_bytes[] = "\"\\{}[],:0123456789-.eE+ nultrfabsx\t\r\n/";
static const uint8_t odd_bytes[] = { 0x00, 0x01, 0x0b, 0x1f, 0x7f, 0x80, 0xbf,
                                     0xc0, 0xc3, 0xa9, 0xed, 0xf4, 0xf5, 0xff };
static const char *const dict_words[] = {
    "null",
    "\\u00e9",
    "\\\"",
    "\\\\",
    "\\/",
    "\\n",
    "1.0",
    "1e2",
    "-0",
    "00",
    "1000000000000000",
    ",\"note\":\"x\"",
    "\"seq\":1,",
    "\"title\":",
    "true",
    "{}",
    "[]",
    "\xc3\xa9",
    " ",
    "\\u0000",
};

static size_t mutate(rng *r, uint8_t *t, size_t n, size_t cap)
{
    size_t a, b, m;
    switch (below(r, 8)) {
    case 0: /* flip a bit */
        if (n > 0)
            t[below(r, n)] ^= (uint8_t)(1u << below(r, 8));
        break;
    case 1: /* replace a byte with a JSON-significant or odd one */
        if (n > 0) {
            a = below(r, n);
            if (below(r, 4) == 0)
                t[a] = odd_bytes[below(r, sizeof(odd_bytes))];
            else
                t[a] = (uint8_t)dict_bytes[below(r, sizeof(dict_bytes) - 1)];
        }
        break;
    case 2: /* insert a byte */
        if (n < cap) {
            a = below(r, n + 1);
            memmove(t + a + 1, t + a, n - a);
            t[a] = below(r, 3) == 0 ? (uint8_t)rnd(r)
                                    : (uint8_t)dict_bytes[below(r, sizeof(dict_bytes) - 1)];
            n++;
        }
        break;
    case 3: /* delete a span of 1..4 bytes */
        if (n > 0) {
            a = below(r, n);
            m = 1 + below(r, 4);
            if (m > n - a)
                m = n - a;
            memmove(t + a, t + a + m, n - a - m);
            n -= m;
        }
        break;
    case 4: /* duplicate a span somewhere */
        if (n > 0) {
            a = below(r, n);
            m = 1 + below(r, 24);
            if (m > n - a)
                m = n - a;
            if (n + m <= cap) {
                uint8_t span[24];
                memcpy(span, t + a, m);
                b = below(r, n + 1);
                memmove(t + b + m, t + b, n - b);
                memcpy(t + b, span, m);
                n += m;
            }
        }
        break;
    case 5: /* insert a dictionary word */
    {
        const char *w = dict_words[below(r, sizeof(dict_words) / sizeof(dict_words[0]))];
        m = strlen(w);
        if (n + m <= cap) {
            b = below(r, n + 1);
            memmove(t + b + m, t + b, n - b);
            memcpy(t + b, w, m);
            n += m;
        }
        break;
    }
    case 6: /* swap two tokens */
    case 7: {
        size_t st[512], ln[512];
        size_t k = tokens(t, n, st, ln, 512);
        if (k < 2)
            break;
        a = below(r, k);
        b = below(r, k);
        if (a == b)
            break;
        if (a > b) {
            size_t x = a;
            a = b;
            b = x;
        }
        /* [A][mid][B] -> [B][mid][A] through a copy of the whole range. */
        size_t s = st[a], e = st[b] + ln[b];
        uint8_t tmp[MUT_CAP];
        size_t o = 0;
        memcpy(tmp + o, t + st[b], ln[b]);
        o += ln[b];
        memcpy(tmp + o, t + st[a] + ln[a], st[b] - (st[a] + ln[a]));
        o += st[b] - (st[a] + ln[a]);
        memcpy(tmp + o, t + st[a], ln[a]);
        o += ln[a];
        ASSERT_EQ(o, e - s);
        memcpy(t + s, tmp, o);
        break;
    }
    }
    return n;
}

TEST(random_mutants_direct_never_disagrees)
{
    enum { NTEMPL = 24, ITER = 20000 };
    envbuf *eb = malloc(sizeof(*eb));
    char *tmpl[NTEMPL];
    size_t tlen[NTEMPL];
    uint64_t tfirst[NTEMPL];
    uint32_t tcount[NTEMPL];
    uint8_t *mut = malloc(MUT_CAP);
    ASSERT(eb && mut);
    rng r = { 0x5EED0002u };

    /* Templates: generated bodies (short texts, so mutations land in every
     * part of a change) and the hand-written ones with escapes. */
    for (int k = 0; k < NTEMPL; k++) {
        tmpl[k] = malloc(MUT_CAP);
        ASSERT(tmpl[k]);
        size_t nh = sizeof(handmade_ok) / sizeof(handmade_ok[0]);
        if ((size_t)k < nh) {
            tlen[k] = strlen(handmade_ok[k]);
            memcpy(tmpl[k], handmade_ok[k], tlen[k]);
            tfirst[k] = 1;
            tcount[k] = strstr(handmade_ok[k], "\"seq\":2") ? 2 : 1;
            continue;
        }
        for (;;) {
            tfirst[k] = first_pool[below(&r, 4)];
            tcount[k] = 1 + (uint32_t)below(&r, 2);
            char *big = malloc(BODY_CAP);
            ASSERT(big);
            size_t n = gen_body(&r, tfirst[k], tcount[k], k % 2, big, BODY_CAP);
            int fits = n <= 1500;
            if (fits) {
                memcpy(tmpl[k], big, n);
                tlen[k] = n;
            }
            free(big);
            if (fits)
                break;
        }
    }

    long direct_ok = 0, direct_ok_changed = 0, cjson_ok = 0;
    for (int iter = 0; iter < ITER; iter++) {
        int k = (int)below(&r, NTEMPL);
        size_t n = tlen[k];
        memcpy(mut, tmpl[k], n);
        int nm = 1 + (int)below(&r, 3);
        for (int j = 0; j < nm; j++)
            n = mutate(&r, mut, n, MUT_CAP);
        uint32_t count = tcount[k];
        if (below(&r, 32) == 0)
            count = below(&r, 2) || count == 1 ? count + 1 : count - 1;
        make_env(eb, mut, n, tfirst[k], count);

        parsed di, cj, au;
        parse_mode(&eb->env, SS__BODY_DIRECT, &di);
        parse_mode(&eb->env, SS__BODY_CJSON, &cj);
        parse_mode(&eb->env, SS__BODY_AUTO, &au);
        char what[48];
        snprintf(what, sizeof(what), "mutant %d", iter);
        if (di.rc != 0 && di.rc != 1) {
            char msg[1024];
            snprintf(msg, sizeof(msg), "DIRECT rc %s", ss_err_name(di.rc));
            fail_diff(what, &eb->env, msg);
        }
        if (di.rc == 0) {
            if (cj.rc != 0) {
                char msg[1024];
                snprintf(msg, sizeof(msg), "DIRECT took it, CJSON refused it: %s field=%s %s",
                         ss_err_name(cj.rc), cj.err.field, cj.err.msg);
                fail_diff(what, &eb->env, msg);
            }
            expect_same(what, &eb->env, di.b, cj.b);
            direct_ok++;
            if (n != tlen[k] || memcmp(mut, tmpl[k], n) != 0)
                direct_ok_changed++;
        }
        if (cj.rc == 0)
            cjson_ok++;
        expect_auto_is_cjson(what, &eb->env, &au, &cj);
        free_parsed(&di);
        free_parsed(&cj);
        free_parsed(&au);
    }
    fprintf(stderr, "%d mutants: DIRECT took %ld (%ld differing from their template), CJSON %ld\n",
            ITER, direct_ok, direct_ok_changed, cjson_ok);
    ASSERT_GT(direct_ok_changed, 0);
    for (int k = 0; k < NTEMPL; k++)
        free(tmpl[k]);
    free(mut);
    free(eb);
}

#define ALL_TESTS                                          \
    SS_TEST_ENTRY(direct_matches_cjson_on_encoded_changes) \
    SS_TEST_ENTRY(direct_declines_what_cjson_judges)       \
    SS_TEST_ENTRY(schema_errors_same_in_both_paths)        \
    SS_TEST_ENTRY(random_mutants_direct_never_disagrees)

SS_TEST_MAIN(ALL_TESTS)
