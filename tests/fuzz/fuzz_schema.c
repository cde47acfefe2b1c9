/* fuzz_schema.c - libFuzzer target for schema validation: the input is one
 * change object of an envelope body, decoded and validated by
 * ss__change_from_json; a change it accepts must encode, decode again and
 * compare equal field by field (and encode to the same bytes). The input's
 * first line is also a CLI "field=value" for ss_change_set_text on a fresh
 * change of each collection; a value it accepts must make a valid update
 * that round-trips the same way. */
// fuzz-link: ss_proto
// fuzz-include: proto/src
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "proto/err.h"
#include "proto/json.h"
#include "proto/schema.h"
#include "ss_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Longest first line handed to ss_change_set_text: beyond every field limit
 * (4000 bytes), so "too long" stays reachable. */
#define LINE_MAX_LEN 8192

static void expect_printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    ASSERT_LT(n, cap);
    for (size_t i = 0; i < n; i++)
        ASSERT((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f);
}

/* A refusal carries its own code and a message fit for an ERROR frame. */
static void expect_clean_error(int rc, const ss_verr *err)
{
    ASSERT_LT(rc, 0);
    ASSERT_EQ(err->code, rc);
    expect_printable(err->field, sizeof(err->field));
    expect_printable(err->msg, sizeof(err->msg));
    ASSERT(ss_strerror(rc) != NULL && ss_err_name(rc) != NULL);
}

static void expect_same_change(const ss_change *a, const ss_change *b)
{
    ASSERT_U64_EQ(a->seq, b->seq);
    ASSERT_U64_EQ(a->hlc, b->hlc);
    ASSERT(a->coll == b->coll);
    ASSERT_STR_EQ(a->key, b->key);
    ASSERT_STR_EQ(a->site, b->site);
    ASSERT_EQ(a->op, b->op);
    ASSERT_EQ(a->nfields, b->nfields);
    for (int i = 0; i < a->nfields; i++) {
        const ss_fieldval *x = &a->fields[i], *y = &b->fields[i];
        ASSERT(x->def == y->def);
        ASSERT_EQ(x->v.is_null, y->v.is_null);
        if (x->v.is_null)
            continue;
        if (x->def->type == SS_FT_INT) {
            ASSERT_EQ(x->v.num, y->v.num);
        } else {
            ASSERT_EQ(x->v.len, y->v.len);
            ASSERT(x->v.len == 0 || memcmp(x->v.str, y->v.str, x->v.len) == 0);
        }
    }
}

/* ch is valid: its encoding decodes to an equal, valid change that encodes to
 * the same bytes, and a buffer without room for the NUL is refused without
 * being overrun. text_len bounds the bytes of text in ch. */
static void expect_roundtrip(const ss_change *ch, size_t text_len)
{
    /* Escaping grows text at most 6x (\u00XX); the rest is a few hundred
     * bytes of names and numbers. Running out would itself be a finding. */
    size_t cap = 6 * text_len + 4096;
    char *a = malloc(cap);
    ASSERT(a != NULL);
    int n = ss_change_encode(ch, a, cap);
    ASSERT_GT(n, 0);
    ASSERT_EQ((size_t)n, strlen(a));

    cJSON *root = NULL;
    ss_verr err;
    memset(&err, 0, sizeof(err));
    int rc = ss_json_parse((const uint8_t *)a, (size_t)n, SS_JSON_MAX_DEPTH, &root, &err);
    if (rc != 0)
        SS_TEST_FAIL("encoding does not parse (%s: %s): %s", ss_err_name(rc), err.msg, a);
    ss_change back;
    rc = ss__change_from_json(root, &back, &err);
    if (rc != 0)
        SS_TEST_FAIL("encoding does not decode (%s, field %s: %s): %s", ss_err_name(rc), err.field,
                     err.msg, a);
    expect_same_change(ch, &back);

    char *b = malloc((size_t)n + 1);
    ASSERT(b != NULL);
    ASSERT_EQ(ss_change_encode(&back, b, (size_t)n + 1), n);
    ASSERT(memcmp(a, b, (size_t)n + 1) == 0);
    free(b);
    char *tight = malloc((size_t)n);
    ASSERT(tight != NULL);
    ASSERT_EQ(ss_change_encode(ch, tight, (size_t)n), SS_ENOSPC);
    free(tight);

    cJSON_Delete(root);
    free(a);
}

static void check_json(const uint8_t *data, size_t size)
{
    cJSON *root = NULL;
    ss_verr err;
    ss_change ch;

    memset(&err, 0, sizeof(err));
    int rc = ss_json_parse(data, size, SS_JSON_MAX_DEPTH, &root, &err);
    if (rc != 0) {
        ASSERT(root == NULL);
        return;
    }
    memset(&err, 0, sizeof(err));
    rc = ss__change_from_json(root, &ch, &err);
    if (rc != 0) {
        expect_clean_error(rc, &err);
        /* Whatever was filled in must be safe to look at again. */
        (void)ss_change_validate(&ch, NULL);
    } else {
        ASSERT_EQ(ss_change_validate(&ch, &err), 0);
        expect_roundtrip(&ch, size);
    }
    cJSON_Delete(root);
}

/* The first line as "field=value" (no '=': a field without a value). */
static void check_set_text(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t len = nl ? (size_t)(nl - data) : size;
    if (len > LINE_MAX_LEN)
        len = LINE_MAX_LEN;
    char *line = malloc(len + 1);
    ASSERT(line != NULL);
    memcpy(line, data, len);
    line[len] = '\0';
    char *eq = strchr(line, '=');
    const char *field = line, *value = NULL;
    if (eq) {
        *eq = '\0';
        value = eq + 1;
    }

    int ncoll = 0;
    const ss_collection_def *colls = ss_schema_collections(&ncoll);
    for (int c = 0; c < ncoll; c++) {
        ss_change ch;
        ss_verr err;
        memset(&ch, 0, sizeof(ch));
        memset(&err, 0, sizeof(err));
        ch.coll = &colls[c];
        int rc = ss_change_set_text(&ch, field, value, &err);
        if (rc != 0) {
            expect_clean_error(rc, &err);
            ASSERT_EQ(ch.nfields, 0);
            continue;
        }
        ASSERT_EQ(ch.nfields, 1);
        ASSERT_STR_EQ(ch.fields[0].def->name, field);
        ASSERT(ss_schema_field(ch.coll, field, strlen(field)) == ch.fields[0].def);
        ASSERT_EQ(ss_change_set_text(&ch, field, value, &err), SS_EDUPKEY);
        ASSERT_EQ(ch.nfields, 1);

        /* Complete it as an update: set_text validated the value, so the
         * change is valid and must survive the wire. */
        ch.seq = (uint64_t)len * 2654435761u % SS_SEQ_MAX + 1;
        ch.hlc = ((uint64_t)len * UINT64_C(0x9e3779b97f4a7c15)) | 1;
        snprintf(ch.site, sizeof(ch.site), "site-%zu", len);
        snprintf(ch.key, sizeof(ch.key), "%s", ch.coll->key_is_site ? ch.site : "INC:k.1_x");
        ch.op = SS_OP_UPDATE;
        rc = ss_change_validate(&ch, &err);
        if (rc != 0)
            SS_TEST_FAIL("set_text accepted %s=%s but validate says %s (%s)", field, value,
                         ss_err_name(rc), err.msg);
        expect_roundtrip(&ch, strlen(value));
    }
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_json(data, size);
    check_set_text(data, size);
    return 0;
}
