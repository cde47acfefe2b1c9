/* fuzz_frame.c - libFuzzer target for the incremental frame decoder: the
 * input is fed in chunks whose size comes from its first byte, every frame
 * decoded must re-encode to exactly the bytes it came from, and JSON control
 * frames go on to the message decoder. */
// fuzz-link: ss_proto
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/err.h"
#include "proto/frame.h"
#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)data[0] + 1;
    /* Maximum payload from 0 to about 64 KiB, so both limits get hit. */
    uint32_t max = (uint32_t)data[1] * 257u;
    data += 2;
    size -= 2;

    ss_fdec d;
    ss_fdec_init(&d, max);
    size_t pos = 0, frame_start = 0;
    int dead = 0;
    while (pos < size) {
        size_t chunk = size - pos < step ? size - pos : step;
        size_t used = 0;
        int rc = ss_fdec_feed(&d, data + pos, chunk, &used);
        if (used > chunk)
            abort();
        pos += used;
        if (rc < 0) {
            /* Sticky: the stream is dead. */
            if (ss_fdec_feed(&d, data, size, &used) != rc || used != 0)
                abort();
            dead = 1;
            break;
        }
        if (rc == 0) {
            if (used != chunk)
                abort();
            continue;
        }
        ss_frame f;
        if (ss_fdec_frame(&d, &f) != 0 || f.len > max || f.payload == NULL)
            abort();
        if (ss_fdec_pending(&d) != 0)
            abort();
        /* The frame re-encodes to the exact bytes it was decoded from. */
        size_t flen = SS_FRAME_HEADER_LEN + f.len;
        if (pos - frame_start != flen)
            abort();
        uint8_t *re = malloc(flen);
        if (re == NULL)
            abort();
        if (ss_frame_encode(re, flen, f.type, f.flags, f.payload, f.len) != (int)flen ||
            memcmp(re, data + frame_start, flen) != 0)
            abort();
        free(re);
        if (f.type != SS_FRAME_BATCH) {
            ss_msg m;
            if (ss_msg_decode(f.type, f.payload, f.len, &m, NULL) == 0)
                ss_msg_free(&m);
        }
        frame_start = pos;
    }
    /* A clean stop holds exactly the bytes of the unfinished frame. */
    if (!dead && ss_fdec_pending(&d) != size - frame_start)
        abort();
    ss_fdec_free(&d);
    return 0;
}
