/* fuzz_envelope.c - libFuzzer target for the BATCH envelope and its body.
 * Mode byte 0: the input is a whole envelope. Otherwise the input is a body
 * behind a synthesised header (count from the mode byte), so the body parser
 * is reached without the fuzzer having to solve the header first. Every raw
 * change span must be a complete JSON object of the body. */
// fuzz-link: ss_proto
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_body(const ss_envelope *e)
{
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
