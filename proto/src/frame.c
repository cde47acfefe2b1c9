/* frame.c - the wire frame codec: header writer, encoder and an incremental
 * decoder that takes input in any split and refuses a bad header before it
 * allocates anything. */
#include <string.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "internal.h"

enum { ST_HEADER = 0, ST_PAYLOAD = 1, ST_READY = 2 };

/* Smallest payload buffer worth allocating: avoids a realloc per byte when a
 * frame trickles in one byte at a time. */
#define FDEC_MIN_ALLOC 256u

const char *ss_frame_type_name(int type)
{
    switch (type) {
    case SS_FRAME_HELLO:
        return "HELLO";
    case SS_FRAME_WELCOME:
        return "WELCOME";
    case SS_FRAME_BATCH:
        return "BATCH";
    case SS_FRAME_ACK:
        return "ACK";
    case SS_FRAME_ERROR:
        return "ERROR";
    case SS_FRAME_PING:
        return "PING";
    case SS_FRAME_PONG:
        return "PONG";
    case SS_FRAME_BYE:
        return "BYE";
    case SS_FRAME_CRL:
        return "CRL";
    default:
        return "?";
    }
}

static int type_ok(int type)
{
    return type >= SS_FRAME_HELLO && type <= SS_FRAME_TYPE_MAX;
}

unsigned ss_frame_flags_allowed(int type)
{
    return type == SS_FRAME_BATCH ? SS_FRAME_FLAG_ROUTED : 0u;
}

int ss_frame_write_header(uint8_t out[SS_FRAME_HEADER_LEN], int type, unsigned flags, uint32_t len)
{
    if (!type_ok(type))
        return SS_ETYPE;
    if (flags & ~ss_frame_flags_allowed(type))
        return SS_EFLAGS;
    if (len > SS_FRAME_ABSOLUTE_MAX)
        return SS_EOVERSIZE;
    ss__put_u32(out, len);
    out[4] = (uint8_t)type;
    out[5] = (uint8_t)flags;
    return (int)SS_FRAME_HEADER_LEN;
}

int ss_frame_encode(uint8_t *out, size_t cap, int type, unsigned flags, const void *payload,
                    size_t len)
{
    /* Check the size before narrowing it to the header's u32. */
    if (len > SS_FRAME_ABSOLUTE_MAX)
        return SS_EOVERSIZE;
    if (len > 0 && payload == NULL)
        return SS_EINVAL;
    uint8_t hdr[SS_FRAME_HEADER_LEN];
    int rc = ss_frame_write_header(hdr, type, flags, (uint32_t)len);
    if (rc < 0)
        return rc;
    if (out == NULL || cap < SS_FRAME_HEADER_LEN || cap - SS_FRAME_HEADER_LEN < len)
        return SS_ENOSPC;
    memcpy(out, hdr, SS_FRAME_HEADER_LEN);
    if (len > 0)
        memcpy(out + SS_FRAME_HEADER_LEN, payload, len);
    return (int)(SS_FRAME_HEADER_LEN + len);
}

void ss_fdec_init(ss_fdec *d, uint32_t max_len)
{
    memset(d, 0, sizeof(*d));
    d->max_len = max_len > SS_FRAME_ABSOLUTE_MAX ? SS_FRAME_ABSOLUTE_MAX : max_len;
    d->state = ST_HEADER;
}

/* Makes room for `need` payload bytes. The buffer grows with the bytes that
 * actually arrive (doubling, capped at the frame length) rather than to the
 * announced length at once, so a peer that announces a large frame and then
 * stalls does not pin max_len bytes per connection. */
static int fdec_reserve(ss_fdec *d, uint32_t need)
{
    if (need <= d->buf_cap)
        return 0;
    uint32_t cap = d->buf_cap < FDEC_MIN_ALLOC ? FDEC_MIN_ALLOC : d->buf_cap;
    while (cap < need)
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    if (cap > d->len)
        cap = d->len > need ? d->len : need;
    uint8_t *nb = ss_realloc(d->buf, cap);
    if (nb == NULL)
        return SS_ENOMEM;
    d->buf = nb;
    d->buf_cap = cap;
    return 0;
}

/* Validates each header byte as soon as it arrives: the length after byte 4,
 * the type after byte 5, the flags after byte 6. Nothing is allocated until
 * all three have passed. */
static int fdec_header_byte(ss_fdec *d, uint8_t b)
{
    d->hdr[d->hdr_have++] = b;
    switch (d->hdr_have) {
    case 4:
        d->len = ss__get_u32(d->hdr);
        if (d->len > d->max_len)
            return SS_EOVERSIZE;
        break;
    case 5:
        if (!type_ok(b))
            return SS_ETYPE;
        d->type = b;
        break;
    case 6:
        if (b & ~ss_frame_flags_allowed(d->type))
            return SS_EFLAGS;
        d->flags = b;
        d->have = 0;
        d->state = ST_PAYLOAD;
        break;
    default:
        break;
    }
    return 0;
}

/* Back to the start of a frame; the buffer (if any) is kept. */
static void fdec_next(ss_fdec *d)
{
    d->state = ST_HEADER;
    d->hdr_have = 0;
    d->have = 0;
    d->len = 0;
}

int ss_fdec_feed(ss_fdec *d, const uint8_t *in, size_t len, size_t *consumed)
{
    size_t used = 0;
    int rc = 0;

    if (consumed != NULL)
        *consumed = 0;
    if (d->state < 0)
        return d->state;
    if (in == NULL && len > 0)
        return SS_EINVAL;
    if (d->state == ST_READY) {
        /* The caller has taken the frame: start the next one. The buffer is
         * kept for reuse; it never exceeds max_len. */
        fdec_next(d);
    }
    while (d->state == ST_HEADER && used < len) {
        rc = fdec_header_byte(d, in[used++]);
        if (rc < 0)
            goto fail;
    }
    if (d->state == ST_PAYLOAD) {
        uint32_t want = d->len - d->have;
        size_t avail = len - used;
        uint32_t take = avail < want ? (uint32_t)avail : want;
        if (take > 0) {
            rc = fdec_reserve(d, d->have + take);
            if (rc < 0)
                goto fail;
            memcpy(d->buf + d->have, in + used, take);
            d->have += take;
            used += take;
        }
        if (d->have == d->len)
            d->state = ST_READY;
    }
    if (consumed != NULL)
        *consumed = used;
    return d->state == ST_READY ? 1 : 0;

fail:
    d->state = rc;
    if (consumed != NULL)
        *consumed = used;
    return rc;
}

int ss_fdec_frame(const ss_fdec *d, ss_frame *out)
{
    if (d->state != ST_READY)
        return SS_EAGAIN;
    out->type = d->type;
    out->flags = d->flags;
    out->len = d->len;
    /* The contract promises a non-NULL payload even for an empty frame. */
    out->payload = d->len > 0 ? d->buf : d->hdr;
    return 0;
}

size_t ss_fdec_pending(const ss_fdec *d)
{
    if (d->state == ST_READY)
        return 0;
    if (d->state == ST_HEADER)
        return d->hdr_have;
    return (size_t)d->hdr_have + d->have;
}

int ss_fdec_take(ss_fdec *d, uint8_t **payload, uint32_t *len)
{
    if (d->state != ST_READY)
        return SS_EAGAIN;
    *len = d->len;
    *payload = NULL;
    if (d->len > 0) {
        /* The buffer leaves with the frame; a zero-length frame has none
         * of its own (its payload pointer was the header), so the buffer,
         * if any, stays for the next frame. */
        *payload = d->buf;
        d->buf = NULL;
        d->buf_cap = 0;
    }
    fdec_next(d);
    return 0;
}

void ss_fdec_trim(ss_fdec *d, uint32_t keep)
{
    /* Only between frames: in ST_READY the caller may still be reading the
     * payload (valid until the next feed), in ST_PAYLOAD it is filling. */
    if (d == NULL || d->buf_cap <= keep || d->state != ST_HEADER)
        return;
    ss_free(d->buf);
    d->buf = NULL;
    d->buf_cap = 0;
}

void ss_fdec_free(ss_fdec *d)
{
    if (d == NULL)
        return;
    ss_free(d->buf);
    uint32_t max_len = d->max_len;
    ss_fdec_init(d, max_len);
}
