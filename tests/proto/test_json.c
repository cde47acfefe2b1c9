/* test_json.c - strict JSON intake: the precheck scanner (UTF-8, NUL, depth,
 * balance), duplicate keys, trailing data, the typed getters and string
 * escaping. */
#include "ss_test.h"

#include <cjson/cJSON.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/json.h"
#include "proto/schema.h"
#include "internal.h"

/* Fills a char array (the house bans strcpy). */
#define SET_TEXT(dst, s) snprintf((dst), sizeof(dst), "%s", (s))

/* (input, depth limit, expected result). Inputs are C strings, so raw NULs
 * are tested separately with explicit lengths. */
static const struct {
    const char *in;
    int depth;
    int rc;
} pre_vectors[] = {
    /* valid */
    { "{}", 8, 0 },
    { "[]", 8, 0 },
    { " {\"a\":[1,2,{\"b\":\"c\"}],\"d\":null} ", 8, 0 },
    { "\"\xc3\xa9\"", 8, 0 },         /* U+00E9 */
    { "\"\xe2\x82\xac\"", 8, 0 },     /* U+20AC */
    { "\"\xed\x9f\xbf\"", 8, 0 },     /* U+D7FF, last before surrogates */
    { "\"\xee\x80\x80\"", 8, 0 },     /* U+E000, first after */
    { "\"\xf0\x9f\x98\x80\"", 8, 0 }, /* U+1F600 */
    { "\"\xf4\x8f\xbf\xbf\"", 8, 0 }, /* U+10FFFF */
    { "\"\\ud83d\\ude00\"", 8, 0 },   /* escaped surrogate pair */
    { "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", 8, 0 },
    { "\"\\\\u0000\"", 8, 0 },    /* a backslash, then text u0000 */
    { "\"[[[[{{{{\"", 1, 0 },     /* brackets in a string are not nesting */
    { "[\"[[[[[[[[[[\"]", 1, 0 }, /* brackets in strings do not count */
    { "[[[[[[[[1]]]]]]]]", 8, 0 },
    { "[[[[[[[[[1]]]]]]]]]", 8, SS_EDEPTH },
    { "{\"a\":{\"b\":{\"c\":1}}}", 3, 0 },
    { "{\"a\":{\"b\":{\"c\":{}}}}", 3, SS_EDEPTH },
    /* invalid UTF-8, by class */
    { "\"\x80\"", 8, SS_EUTF8 }, /* lone continuation byte */
    { "\"\xbf\"", 8, SS_EUTF8 },
    { "\"\xc0\x80\"", 8, SS_EUTF8 },     /* overlong NUL */
    { "\"\xc1\xbf\"", 8, SS_EUTF8 },     /* overlong 2-byte */
    { "\"\xe0\x80\x80\"", 8, SS_EUTF8 }, /* overlong 3-byte */
    { "\"\xe0\x9f\xbf\"", 8, SS_EUTF8 },
    { "\"\xf0\x80\x80\x80\"", 8, SS_EUTF8 }, /* overlong 4-byte */
    { "\"\xf0\x8f\xbf\xbf\"", 8, SS_EUTF8 },
    { "\"\xed\xa0\x80\"", 8, SS_EUTF8 },     /* UTF-16 surrogate D800 */
    { "\"\xed\xbf\xbf\"", 8, SS_EUTF8 },     /* DFFF */
    { "\"\xf4\x90\x80\x80\"", 8, SS_EUTF8 }, /* U+110000 */
    { "\"\xf5\x80\x80\x80\"", 8, SS_EUTF8 },
    { "\"\xff\"", 8, SS_EUTF8 },
    { "\"\xfe\"", 8, SS_EUTF8 },
    { "\"\xc3\"", 8, SS_EUTF8 }, /* truncated sequence */
    { "\"\xe2\x82\"", 8, SS_EUTF8 },
    { "\"\xe2\x28\xa1\"", 8, SS_EUTF8 }, /* bad continuation */
    { "\"\xf0\x9f\x98\"", 8, SS_EUTF8 },
    { "\xc3", 8, SS_EUTF8 },          /* truncated at end of input */
    { "{\"k\xff\":1}", 8, SS_EUTF8 }, /* in a key */
    { "[1,\xe9]", 8, SS_EUTF8 },      /* outside strings (Latin-1) */
    /* escaped surrogates that do not pair */
    { "\"\\ud800\"", 8, SS_EUTF8 },
    { "\"\\udc00\"", 8, SS_EUTF8 },
    { "\"\\ud800\\u0041\"", 8, SS_EUTF8 },
    { "\"\\ud800\\ud800\"", 8, SS_EUTF8 },
    { "\"\\uDBFF\"", 8, SS_EUTF8 },
    /* escaped NUL */
    { "\"\\u0000\"", 8, SS_ENUL },
    { "{\"a\\u0000b\":1}", 8, SS_ENUL },
    /* malformed */
    { "[", 8, SS_EJSON },
    { "]", 8, SS_EJSON },
    { "[}", 8, SS_EJSON },
    { "{]", 8, SS_EJSON },
    { "\"abc", 8, SS_EJSON },
    { "\"a\nb\"", 8, SS_EJSON }, /* raw control character in a string */
    { "\"a\tb\"", 8, SS_EJSON },
    { "\"\\x41\"", 8, SS_EJSON },
    { "[1,\x0e"
      "2]",
      8, SS_EJSON }, /* control character as white space */
    { "{\"a\":1}\x01", 8, SS_EJSON },
    { "\x0c[]", 8, SS_EJSON },
    { " \t\r\n[ \t\r\n] \t\r\n", 8, 0 }, /* unknown escape */
    { "\"\\u12\"", 8, SS_EJSON },
    { "\"\\uZZZZ\"", 8, SS_EJSON },
    { "\"\\", 8, SS_EJSON },
    /* numbers: RFC 8259 grammar only (cJSON's strtod would take the rest) */
    { "[0,-0,1,-1,10,0.5,-0.5e-3,1E+2,1e2,123456789012345678901234567890]", 8, 0 },
    { "[01]", 8, SS_EJSON },
    { "[-01]", 8, SS_EJSON },
    { "[1.]", 8, SS_EJSON },
    { "[-.5]", 8, SS_EJSON },
    { "[1.e5]", 8, SS_EJSON },
    { "[1e]", 8, SS_EJSON },
    { "[1e+]", 8, SS_EJSON },
    { "[-]", 8, SS_EJSON },
    { "[1.2.3]", 8, SS_EJSON },
    { "[1e5e5]", 8, SS_EJSON },
    { "[1-2]", 8, SS_EJSON },
    { "[--1]", 8, SS_EJSON },
    { "{\"n\":00}", 8, SS_EJSON },
    /* bad limits */
    { "{}", 0, SS_EINVAL },
    { "{}", 65, SS_EINVAL },
};

TEST(precheck_vectors)
{
    for (size_t i = 0; i < sizeof(pre_vectors) / sizeof(pre_vectors[0]); i++) {
        const char *in = pre_vectors[i].in;
        int rc = ss_json_precheck((const uint8_t *)in, strlen(in), pre_vectors[i].depth);
        if (rc != pre_vectors[i].rc)
            SS_TEST_FAIL("vector %zu (%s): got %d (%s), want %d (%s)", i, in, rc, ss_err_name(rc),
                         pre_vectors[i].rc, ss_err_name(pre_vectors[i].rc));
    }
}

TEST(raw_nul_refused_everywhere)
{
    static const uint8_t in_string[] = { '"', 'a', 0, 'b', '"' };
    static const uint8_t outside[] = { '[', '1', 0, ']' };
    static const uint8_t key[] = { '{', '"', 0, '"', ':', '1', '}' };
    static const uint8_t after_backslash[] = { '"', '\\', 0, '"' };
    static const uint8_t trailing[] = { '{', '}', 0 };
    ASSERT_EQ(ss_json_precheck(in_string, sizeof(in_string), 8), SS_ENUL);
    ASSERT_EQ(ss_json_precheck(outside, sizeof(outside), 8), SS_ENUL);
    ASSERT_EQ(ss_json_precheck(key, sizeof(key), 8), SS_ENUL);
    ASSERT_EQ(ss_json_precheck(after_backslash, sizeof(after_backslash), 8), SS_ENUL);
    ASSERT_EQ(ss_json_precheck(trailing, sizeof(trailing), 8), SS_ENUL);
    cJSON *root = NULL;
    ss_verr e;
    memset(&e, 0, sizeof(e));
    ASSERT_EQ(ss_json_parse(in_string, sizeof(in_string), 8, &root, &e), SS_ENUL);
    ASSERT_EQ(e.code, SS_ENUL);
    ASSERT(root == NULL);
    /* cJSON would stop at the NUL and call the rest trailing garbage or
     * accept the prefix: the precheck stops it first. */
    ASSERT_EQ(ss_json_parse(trailing, sizeof(trailing), 8, &root, NULL), SS_ENUL);
}

static uint8_t *repeat(const char *open, size_t nopen, const char *middle, const char *close,
                       size_t *len)
{
    size_t lo = strlen(open), lm = strlen(middle), lc = strlen(close);
    *len = nopen * (lo + lc) + lm;
    uint8_t *b = malloc(*len);
    ASSERT(b != NULL);
    size_t p = 0;
    for (size_t i = 0; i < nopen; i++, p += lo)
        memcpy(b + p, open, lo);
    memcpy(b + p, middle, lm);
    p += lm;
    for (size_t i = 0; i < nopen; i++, p += lc)
        memcpy(b + p, close, lc);
    return b;
}

TEST(deep_nesting_10000_refused_without_recursion)
{
    static const char *const shapes[][3] = {
        { "[", "1", "]" },
        { "{\"a\":", "1", "}" },
        { "[{\"a\":", "1", "}]" },
    };
    for (size_t s = 0; s < 3; s++) {
        size_t len;
        uint8_t *b = repeat(shapes[s][0], 10000, shapes[s][1], shapes[s][2], &len);
        ASSERT_EQ(ss_json_precheck(b, len, SS_JSON_MAX_DEPTH), SS_EDEPTH);
        cJSON *root = NULL;
        ss_verr e;
        ASSERT_EQ(ss_json_parse(b, len, SS_JSON_MAX_DEPTH, &root, &e), SS_EDEPTH);
        ASSERT_EQ(e.code, SS_EDEPTH);
        ASSERT(root == NULL);
        /* Unbalanced and unterminated: still refused on depth first. */
        ASSERT_EQ(ss_json_precheck(b, len / 2, SS_JSON_MAX_DEPTH), SS_EDEPTH);
        free(b);
    }
    /* Exactly at the limit is fine. */
    size_t len;
    uint8_t *b = repeat("[", SS_JSON_MAX_DEPTH, "1", "]", &len);
    cJSON *root = NULL;
    ASSERT_EQ(ss_json_parse(b, len, SS_JSON_MAX_DEPTH, &root, NULL), 0);
    cJSON_Delete(root);
    free(b);
}

static int parse_str(const char *s, int depth, cJSON **root, ss_verr *e)
{
    return ss_json_parse((const uint8_t *)s, strlen(s), depth, root, e);
}

TEST(parse_whole_input_only)
{
    cJSON *root = NULL;
    ss_verr e;
    ASSERT_EQ(parse_str("{\"a\":1} \r\n\t", 8, &root, &e), 0);
    ASSERT(cJSON_IsObject(root));
    cJSON_Delete(root);
    ASSERT_EQ(parse_str("{} x", 8, &root, &e), SS_EJSON);
    ASSERT(root == NULL);
    ASSERT_EQ(parse_str("{}{}", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("1 2", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("   ", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("{\"a\":}", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("{\"a\" 1}", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("[1,]", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(parse_str("tru", 8, &root, &e), SS_EJSON);
    ASSERT_EQ(e.code, SS_EJSON);
    ASSERT_EQ(ss_json_parse((const uint8_t *)"{}", 2, 8, NULL, &e), SS_EINVAL);
    /* The text need not be NUL-terminated: only len bytes are read. */
    static const uint8_t unterminated[] = { '[', '1', '2', ']' };
    ASSERT_EQ(ss_json_parse(unterminated, sizeof(unterminated), 8, &root, &e), 0);
    ASSERT_EQ(cJSON_GetArrayItem(root, 0)->valuedouble, 12);
    cJSON_Delete(root);
    ASSERT_EQ(ss_json_parse(unterminated, 3, 8, &root, &e), SS_EJSON);
}

TEST(duplicate_keys_refused)
{
    static const struct {
        const char *in;
        const char *field;
    } dups[] = {
        { "{\"a\":1,\"a\":2}", "a" },
        { "{\"a\":1,\"b\":2,\"a\":3}", "a" },
        { "{\"x\":{\"k\":1,\"k\":1}}", "k" },
        { "[{\"ok\":1},{\"q\":[],\"q\":{}}]", "q" },
        { "{\"a\":1,\"\\u0061\":2}", "a" }, /* same key, spelled differently */
        { "{\"\xc3\xa9\":1,\"\\u00e9\":2}", "?" },
    };
    for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
        cJSON *root = NULL;
        ss_verr e;
        memset(&e, 0, sizeof(e));
        ASSERT_EQ(parse_str(dups[i].in, 8, &root, &e), SS_EDUPKEY);
        ASSERT(root == NULL);
        ASSERT_EQ(e.code, SS_EDUPKEY);
        if (dups[i].field[0] != '?')
            ASSERT_STR_EQ(e.field, dups[i].field);
    }
    /* Same key in different objects is fine. */
    cJSON *root = NULL;
    ASSERT_EQ(parse_str("{\"a\":{\"a\":1},\"b\":{\"a\":2}}", 8, &root, NULL), 0);
    cJSON_Delete(root);
    /* Large objects take the sorting path: a duplicate at either end. */
    for (int where = 0; where < 3; where++) {
        char buf[8192];
        size_t p = 0;
        buf[p++] = '{';
        for (int k = 0; k < 500; k++)
            p += (size_t)snprintf(buf + p, sizeof(buf) - p, "%s\"k%d\":%d", k ? "," : "", k, k);
        if (where == 0)
            p += (size_t)snprintf(buf + p, sizeof(buf) - p, ",\"k0\":0");
        else if (where == 1)
            p += (size_t)snprintf(buf + p, sizeof(buf) - p, ",\"k499\":0");
        buf[p++] = '}';
        ss_verr e;
        int rc = ss_json_parse((const uint8_t *)buf, p, 8, &root, &e);
        if (where < 2) {
            ASSERT_EQ(rc, SS_EDUPKEY);
            ASSERT_STR_EQ(e.field, where == 0 ? "k0" : "k499");
        } else {
            ASSERT_EQ(rc, 0);
            cJSON_Delete(root);
        }
    }
}

/* Parses s and returns the root, failing the test on error. */
static cJSON *must_parse(const char *s)
{
    cJSON *root = NULL;
    ss_verr e;
    int rc = parse_str(s, 8, &root, &e);
    if (rc != 0)
        SS_TEST_FAIL("parse %s: %s (%s)", s, ss_err_name(rc), e.msg);
    return root;
}

static const struct {
    const char *json;
    uint64_t min, max;
    int rc;
    uint64_t want;
} u64_vectors[] = {
    { "{\"n\":0}", 0, 10, 0, 0 },
    { "{\"n\":10}", 0, 10, 0, 10 },
    { "{\"n\":11}", 0, 10, SS_ERANGE, 0 },
    { "{\"n\":0}", 1, 10, SS_ERANGE, 0 },
    { "{\"n\":-1}", 0, 10, SS_ERANGE, 0 },
    { "{\"n\":-0}", 0, 10, 0, 0 },
    { "{\"n\":1.5}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":1e2}", 0, 1000, 0, 100 },
    { "{\"n\":2.0}", 0, 10, 0, 2 },
    { "{\"n\":\"5\"}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":null}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":true}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":[1]}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":{}}", 0, 10, SS_EFIELDTYPE, 0 },
    { "{\"n\":9007199254740991}", 0, SS_SEQ_MAX, 0, SS_SEQ_MAX },
    { "{\"n\":9007199254740992}", 0, SS_SEQ_MAX, SS_ERANGE, 0 },
    { "{\"n\":9007199254740993}", 0, SS_SEQ_MAX, SS_ERANGE, 0 },
    /* a bound above 2^53-1 is clamped: the value cannot be exact beyond it */
    { "{\"n\":18446744073709551615}", 0, UINT64_MAX, SS_ERANGE, 0 },
    /* 60-digit numbers, both signs, and an exponent that overflows a double */
    { "{\"n\":123456789012345678901234567890123456789012345678901234567890}", 0, SS_SEQ_MAX,
      SS_ERANGE, 0 },
    { "{\"n\":-123456789012345678901234567890123456789012345678901234567890}", 0, SS_SEQ_MAX,
      SS_ERANGE, 0 },
    { "{\"n\":1e400}", 0, SS_SEQ_MAX, SS_ERANGE, 0 },
    { "{\"n\":-1e400}", 0, SS_SEQ_MAX, SS_ERANGE, 0 },
    { "{\"n\":1e-400}", 0, SS_SEQ_MAX, 0, 0 },
    { "{\"m\":1}", 0, 10, SS_EMISSING, 0 },
};

TEST(get_u64_vectors)
{
    for (size_t i = 0; i < sizeof(u64_vectors) / sizeof(u64_vectors[0]); i++) {
        cJSON *root = must_parse(u64_vectors[i].json);
        uint64_t v = 777;
        ss_verr e;
        memset(&e, 0, sizeof(e));
        int rc = ss__json_get_u64(root, "n", 1, u64_vectors[i].min, u64_vectors[i].max, &v, &e);
        if (rc != u64_vectors[i].rc)
            SS_TEST_FAIL("vector %zu (%s): got %s want %s", i, u64_vectors[i].json, ss_err_name(rc),
                         ss_err_name(u64_vectors[i].rc));
        if (rc == 0) {
            ASSERT_U64_EQ(v, u64_vectors[i].want);
        } else {
            ASSERT_U64_EQ(v, 777); /* untouched on error */
            ASSERT_EQ(e.code, rc);
            ASSERT_STR_EQ(e.field, "n");
        }
        cJSON_Delete(root);
    }
    /* Optional and absent: success, output untouched. */
    cJSON *root = must_parse("{}");
    uint64_t v = 5;
    ASSERT_EQ(ss__json_get_u64(root, "n", 0, 0, 10, &v, NULL), 0);
    ASSERT_U64_EQ(v, 5);
    cJSON_Delete(root);
}

TEST(get_str_and_id)
{
    cJSON *root =
        must_parse("{\"s\":\"abcd\",\"n\":1,\"id\":\"site-7.a_b\",\"bad\":\"Site\","
                   "\"empty\":\"\",\"long\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                   "aaaaaaaaaaaaaaaaaaaaa\",\"dash\":\"-x\"}");
    char buf[8];
    ss_verr e;
    ASSERT_EQ(ss__json_get_str(root, "s", 1, buf, 5, &e), 0);
    ASSERT_STR_EQ(buf, "abcd");
    ASSERT_EQ(ss__json_get_str(root, "s", 1, buf, 4, &e), SS_ETOOLONG);
    ASSERT_STR_EQ(e.field, "s");
    ASSERT_EQ(ss__json_get_str(root, "n", 1, buf, 8, &e), SS_EFIELDTYPE);
    ASSERT_EQ(ss__json_get_str(root, "x", 1, buf, 8, &e), SS_EMISSING);
    ASSERT_STR_EQ(e.field, "x");
    SET_TEXT(buf, "keep");
    ASSERT_EQ(ss__json_get_str(root, "x", 0, buf, 8, &e), 0);
    ASSERT_STR_EQ(buf, "keep");

    char id[SS_ID_MAX + 1];
    ASSERT_EQ(ss__json_get_id(root, "id", 1, id, &e), 0);
    ASSERT_STR_EQ(id, "site-7.a_b");
    ASSERT_EQ(ss__json_get_id(root, "bad", 1, id, &e), SS_EID);
    ASSERT_STR_EQ(e.field, "bad");
    ASSERT_EQ(ss__json_get_id(root, "empty", 1, id, &e), SS_EID);
    ASSERT_EQ(ss__json_get_id(root, "long", 1, id, &e), SS_EID);
    ASSERT_EQ(ss__json_get_id(root, "dash", 1, id, &e), SS_EID);
    ASSERT_EQ(ss__json_get_id(root, "n", 1, id, &e), SS_EFIELDTYPE);
    ASSERT_EQ(ss__json_get_id(root, "none", 1, id, &e), SS_EMISSING);
    ASSERT_EQ(ss__json_get_id(root, "none", 0, id, &e), 0);
    cJSON_Delete(root);
}

TEST(only_refuses_unknown_fields)
{
    static const char *const allowed[] = { "a", "b", NULL };
    cJSON *root = must_parse("{\"a\":1,\"b\":2}");
    ss_verr e;
    ASSERT_EQ(ss__json_only(root, allowed, &e), 0);
    cJSON_Delete(root);
    root = must_parse("{\"a\":1,\"zz\":2}");
    ASSERT_EQ(ss__json_only(root, allowed, &e), SS_EUNKNOWNFIELD);
    ASSERT_STR_EQ(e.field, "zz");
    cJSON_Delete(root);
    /* A long hostile name is cut to the field size in the report. */
    root = must_parse("{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}");
    ASSERT_EQ(ss__json_only(root, allowed, &e), SS_EUNKNOWNFIELD);
    ASSERT_EQ(strlen(e.field), SS_FIELD_NAME_MAX);
    cJSON_Delete(root);
}

TEST(put_string_escapes_and_round_trips)
{
    static const char raw[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xf0\x9f\x98\x80";
    char out[128];
    size_t pos = 0;
    ASSERT_EQ(ss_json_put_string(out, sizeof(out), &pos, raw, sizeof(raw) - 1), 0);
    ASSERT_STR_EQ(out,
                  "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xc3\xa9\xf0\x9f\x98\x80\"");
    ASSERT_EQ(pos, strlen(out));
    cJSON *root = NULL;
    ASSERT_EQ(ss_json_parse((const uint8_t *)out, pos, 8, &root, NULL), 0);
    ASSERT_STR_EQ(root->valuestring, raw);
    cJSON_Delete(root);

    /* An embedded NUL is escaped (and then refused by the intake check). */
    pos = 0;
    ASSERT_EQ(ss_json_put_string(out, sizeof(out), &pos, "a\0b", 3), 0);
    ASSERT_STR_EQ(out, "\"a\\u0000b\"");

    /* Appends at *pos; ENOSPC at every capacity that is too small, with the
     * output NUL-terminated where it was and *pos unchanged. */
    size_t need;
    pos = 2;
    memcpy(out, "[,", 2);
    ASSERT_EQ(ss_json_put_string(out, sizeof(out), &pos, raw, sizeof(raw) - 1), 0);
    need = pos + 1;
    for (size_t cap = 0; cap < need; cap++) {
        char small[128];
        memcpy(small, "[,", 2);
        size_t p = 2;
        ASSERT_EQ(ss_json_put_string(small, cap, &p, raw, sizeof(raw) - 1), SS_ENOSPC);
        ASSERT_EQ(p, 2);
        if (cap > 2)
            ASSERT_EQ(small[2], '\0');
    }
}

/* Fails the Nth allocation (cJSON's included, through ss_set_allocator). */
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

TEST(allocation_failure_at_every_step)
{
    /* Big enough object to take the sorted duplicate-key path too. */
    char buf[2048];
    size_t p = 0;
    buf[p++] = '{';
    for (int k = 0; k < 40; k++)
        p += (size_t)snprintf(buf + p, sizeof(buf) - p, "%s\"k%d\":[\"v%d\"]", k ? "," : "", k, k);
    buf[p++] = '}';
    for (long k = 1;; k++) {
        g_fail.calls = 0;
        g_fail.fail_at = k;
        ss_set_allocator(&failing);
        cJSON *root = NULL;
        int rc = ss_json_parse((const uint8_t *)buf, p, 8, &root, NULL);
        long calls = g_fail.calls;
        if (rc == 0)
            cJSON_Delete(root);
        ss_set_allocator(NULL);
        if (calls < k) {
            ASSERT_EQ(rc, 0);
            break;
        }
        ASSERT(rc == SS_EJSON || rc == SS_ENOMEM);
        ASSERT(root == NULL);
    }
}

#define ALL_TESTS                                               \
    SS_TEST_ENTRY(precheck_vectors)                             \
    SS_TEST_ENTRY(raw_nul_refused_everywhere)                   \
    SS_TEST_ENTRY(deep_nesting_10000_refused_without_recursion) \
    SS_TEST_ENTRY(parse_whole_input_only)                       \
    SS_TEST_ENTRY(duplicate_keys_refused)                       \
    SS_TEST_ENTRY(get_u64_vectors)                              \
    SS_TEST_ENTRY(get_str_and_id)                               \
    SS_TEST_ENTRY(only_refuses_unknown_fields)                  \
    SS_TEST_ENTRY(put_string_escapes_and_round_trips)           \
    SS_TEST_ENTRY(allocation_failure_at_every_step)

SS_TEST_MAIN(ALL_TESTS)
