/* fuzz_msg.c - libFuzzer target for the control-message decoder: the first
 * byte picks the frame type, the rest is the payload. Whatever decodes must
 * encode again, and that encoding must decode to the same encoding (the
 * encoder accepts everything the decoder does, and is canonical). */
// fuzz-link: ss_proto
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/err.h"
#include "proto/frame.h"
#include "proto/json.h"
#include "proto/msg.h"
#include "proto/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int type = data[0] % (SS_FRAME_TYPE_MAX + 2); /* includes 0 and BATCH */
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    (void)ss_json_precheck(p, n, SS_JSON_MAX_DEPTH);

    ss_msg m;
    ss_verr err;
    int rc = ss_msg_decode(type, p, n, &m, &err);
    if (rc < 0) {
        if (m.type != 0 || err.code != rc)
            abort();
        return 0;
    }
    /* Re-encoding never grows text, and a number at most 4x ("1e15" becomes
     * 16 digits): 8x plus room for omitted-by-default punctuation is ample,
     * and running out would itself be a finding. */
    size_t cap = 8 * n + 4096;
    uint8_t *a = malloc(cap), *b = malloc(cap);
    if (a == NULL || b == NULL)
        abort();
    int na = ss_msg_encode(&m, a, cap);
    if (na < 0)
        abort();
    ss_msg m2;
    if (ss_msg_decode(type, a, (size_t)na, &m2, &err) != 0)
        abort();
    int nb = ss_msg_encode(&m2, b, cap);
    if (nb != na || memcmp(a, b, (size_t)na) != 0)
        abort();
    /* Every shorter buffer is refused cleanly. */
    if (na > 0 && ss_msg_encode(&m, b, (size_t)na - 1) != SS_ENOSPC)
        abort();
    ss_msg_free(&m2);
    ss_msg_free(&m);
    free(a);
    free(b);
    return 0;
}
