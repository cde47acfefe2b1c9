/* fuzz_envelope.c - libFuzzer target for the BATCH envelope and its body.
 * Mode byte 0: the input is a whole envelope. Otherwise the input is a body
 * behind a synthesised header (count from the mode byte), so the body parser
 * is reached without the fuzzer having to solve the header first. Every raw
 * change span must be a complete JSON object of the body. The body parser's
 * direct scan must agree with the cJSON path on every input it accepts, and
 * ss_body_parse must answer as the cJSON path does. */
// fuzz-link: ss_proto
// fuzz-include: proto/src
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/json.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_verr(const ss_verr *a, const ss_verr *b)
{
    return a->code == b->code && strcmp(a->field, b->field) == 0 && strcmp(a->msg, b->msg) == 0;
}

/* 1 if two bodies of the same envelope decoded every change alike: each
 * member and field value, the per-change result and error, the raw span. */
static int same_body(const ss_body *a, const ss_body *b)
{
    if (ss_body_count(a) != ss_body_count(b))
        return 0;
    const uint8_t *a0 = NULL, *b0 = NULL;
    for (uint32_t i = 0; i < ss_body_count(a); i++) {
        const ss_change *x = ss_body_change(a, i), *y = ss_body_change(b, i);
        if (x->seq != y->seq || x->hlc != y->hlc || x->coll != y->coll || x->op != y->op ||
            x->nfields != y->nfields || memcmp(x->key, y->key, sizeof(x->key)) != 0 ||
            memcmp(x->site, y->site, sizeof(x->site)) != 0)
            return 0;
        for (int k = 0; k < x->nfields; k++) {
            const ss_fieldval *f = &x->fields[k], *g = &y->fields[k];
            if (f->def != g->def || f->v.is_null != g->v.is_null || f->v.num != g->v.num ||
                (f->v.str == NULL) != (g->v.str == NULL) || f->v.len != g->v.len ||
                (f->v.len > 0 && memcmp(f->v.str, g->v.str, f->v.len) != 0))
                return 0;
        }
        const ss_verr *ea = NULL, *eb = NULL;
        int ra = ss_body_change_error(a, i, &ea), rb = ss_body_change_error(b, i, &eb);
        if (ra != rb || (ra < 0 && !same_verr(ea, eb)))
            return 0;
        const uint8_t *pa, *pb;
        size_t la, lb;
        ss_body_change_raw(a, i, &pa, &la);
        ss_body_change_raw(b, i, &pb, &lb);
        if (i == 0) {
            a0 = pa;
            b0 = pb;
        }
        /* Each body holds its own copy of the text: compare offsets from the
         * first element, and the bytes. */
        if (la != lb || pa - a0 != pb - b0 || memcmp(pa, pb, la) != 0)
            return 0;
    }
    return 1;
}

/* The direct scan either declines (1) or decodes exactly what the cJSON path
 * decodes; the default mode (direct, then cJSON) answers as cJSON alone. */
static void check_direct_vs_cjson(const ss_envelope *e)
{
    ss_body *bd = NULL, *bc = NULL, *ba = NULL;
    ss_verr ed, ec, ea;
    memset(&ed, 0, sizeof(ed));
    memset(&ec, 0, sizeof(ec));
    memset(&ea, 0, sizeof(ea));
    int rd = ss__body_parse_mode(e, &bd, &ed, SS__BODY_DIRECT);
    int rc = ss__body_parse_mode(e, &bc, &ec, SS__BODY_CJSON);
    int ra = ss__body_parse_mode(e, &ba, &ea, SS__BODY_AUTO);
    if ((rd != 0 && rd != 1) || (rd == 0) != (bd != NULL))
        abort();
    if (rd == 0 && (rc != 0 || !same_body(bd, bc)))
        abort();
    if (ra != rc || (rc < 0 && !same_verr(&ea, &ec)) || (rc == 0 && !same_body(ba, bc)))
        abort();
    ss_body_free(bd);
    ss_body_free(bc);
    ss_body_free(ba);
}

static void check_body(const ss_envelope *e)
{
    check_direct_vs_cjson(e);
    ss_body *b = NULL;
    ss_verr err;
    int rc = ss_body_parse(e, &b, &err);
    if (rc < 0) {
        if (b != NULL || err.code != rc)
            abort();
        return;
    }
    if (ss_body_count(b) != e->count)
        abort();
    for (uint32_t i = 0; i < e->count; i++) {
        const ss_change *ch = ss_body_change(b, i);
        if (ch == NULL || ch->seq != e->first_seq + i)
            abort();
        const ss_verr *ve = NULL;
        int crc = ss_body_change_error(b, i, &ve);
        if (crc > 0 || (crc < 0 && (ve == NULL || ve->code != crc)))
            abort();
        const uint8_t *p;
        size_t len;
        ss_body_change_raw(b, i, &p, &len);
        if (p == NULL || len < 2 || p[0] != '{' || p[len - 1] != '}')
            abort();
        /* The span is the exact element: it parses alone, as an object. */
        cJSON *one = NULL;
        if (ss_json_parse(p, len, SS_JSON_MAX_DEPTH, &one, NULL) != 0 || !cJSON_IsObject(one))
            abort();
        cJSON_Delete(one);
    }
    ss_body_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    ss_envelope e;
    if (mode == 0) {
        if (ss_envelope_parse(data, size, &e) == 0) {
            if (e.signed_len > size || e.body + e.body_len > data + size)
                abort();
            check_body(&e);
        }
        return 0;
    }
    if (size > UINT32_MAX)
        return 0;
    uint8_t *buf = malloc(SS_ENV_FIXED_LEN + 8 + size);
    if (buf == NULL)
        abort();
    uint32_t count = mode % 8 + 1;
    int h = ss_envelope_write_header(buf, SS_ENV_FIXED_LEN + 8, "fz", 1, count, (uint32_t)size, 0);
    if (h < 0)
        abort();
    if (size > 0)
        memcpy(buf + h, data, size);
    if (ss_envelope_parse(buf, (size_t)h + size, &e) != 0)
        abort();
    check_body(&e);
    free(buf);
    return 0;
}
