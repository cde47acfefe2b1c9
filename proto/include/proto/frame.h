/* frame.h - the wire frame: u32 length (big-endian, payload bytes only) |
 * u8 type | u8 flags | payload. An incremental decoder that accepts input in
 * any split and refuses an oversize length before allocating anything. */
#ifndef SS_FRAME_H
#define SS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SS_FRAME_HEADER_LEN 6u
/* Default maximum payload; daemon and gateway configure their own. */
#define SS_FRAME_DEFAULT_MAX (1u << 20)
/* Hard ceiling for any configured maximum (keeps lengths well inside int). */
#define SS_FRAME_ABSOLUTE_MAX (64u << 20)

typedef enum ss_frame_type {
    SS_FRAME_HELLO = 1,
    SS_FRAME_WELCOME = 2,
    SS_FRAME_BATCH = 3,
    SS_FRAME_ACK = 4,
    SS_FRAME_ERROR = 5,
    SS_FRAME_PING = 6,
    SS_FRAME_PONG = 7,
    SS_FRAME_BYE = 8,
    SS_FRAME_CRL = 9,
    SS_FRAME_TYPE_MAX = 9
} ss_frame_type;

/* Frame flags. ROUTED is defined for BATCH only (a relay forwarding an
 * envelope prefixes the hops it came through: relay.h); every other type
 * must carry flags 0. */
#define SS_FRAME_FLAG_ROUTED 0x01u

/* The flag bits allowed on a frame type (0 for an unknown type). */
unsigned ss_frame_flags_allowed(int type);

const char *ss_frame_type_name(int type);

/* Writes the 6-byte header. Returns SS_FRAME_HEADER_LEN, or SS_EOVERSIZE if
 * len > SS_FRAME_ABSOLUTE_MAX, SS_ETYPE / SS_EFLAGS for a bad type/flags. */
int ss_frame_write_header(uint8_t out[SS_FRAME_HEADER_LEN], int type, unsigned flags, uint32_t len);

/* Encodes header + payload into out[cap]. Returns bytes written (>= 6), or
 * SS_ENOSPC if cap is too small, or the errors of ss_frame_write_header. */
int ss_frame_encode(uint8_t *out, size_t cap, int type, unsigned flags, const void *payload,
                    size_t len);

/* Incremental decoder. Caller-allocated; fields are private. */
typedef struct ss_fdec {
    uint32_t max_len;
    uint8_t hdr[SS_FRAME_HEADER_LEN];
    uint32_t hdr_have;
    uint32_t len;
    uint8_t type;
    uint8_t flags;
    uint8_t *buf; /* payload buffer, grown on demand up to max_len */
    uint32_t buf_cap;
    uint32_t have; /* payload bytes received */
    int state;     /* 0 header, 1 payload, 2 frame ready, <0 sticky error */
} ss_fdec;

/* A decoded frame; payload points into the decoder and stays valid until the
 * next ss_fdec_feed / ss_fdec_free. payload is non-NULL even when len == 0. */
typedef struct ss_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t len;
    const uint8_t *payload;
} ss_frame;

/* max_len: largest payload accepted (clamped to SS_FRAME_ABSOLUTE_MAX). */
void ss_fdec_init(ss_fdec *d, uint32_t max_len);

/* Feeds up to len bytes. Sets *consumed to the bytes used; stops at the end of
 * a frame so the rest can be fed again after the frame is taken.
 * Returns 1 when a complete frame is ready (read it with ss_fdec_frame), 0
 * when more input is needed, or a negative error: SS_EOVERSIZE (length above
 * max, detected from the header before any allocation), SS_ETYPE, SS_EFLAGS,
 * SS_ENOMEM. Errors are sticky: the stream cannot be resynchronised and the
 * connection must be closed. Feeding after a ready frame releases it first. */
int ss_fdec_feed(ss_fdec *d, const uint8_t *in, size_t len, size_t *consumed);

/* The ready frame; returns SS_EAGAIN if none is ready. */
int ss_fdec_frame(const ss_fdec *d, ss_frame *out);

/* Bytes of a partial frame held (0 at a frame boundary): lets a caller tell a
 * clean EOF from a truncated frame. */
size_t ss_fdec_pending(const ss_fdec *d);

/* Takes the ready frame's payload buffer instead of copying it: *payload
 * (allocated with ss_malloc/ss_realloc; the caller frees it with ss_free)
 * gets the payload, *len its length; *payload is NULL when len is 0. The
 * buffer may be larger than len. The frame is consumed: ss_fdec_frame
 * returns SS_EAGAIN until the next one is complete, and the decoder
 * allocates afresh for it. Returns 0, or SS_EAGAIN (nothing taken) if no
 * frame is ready. */
int ss_fdec_take(ss_fdec *d, uint8_t **payload, uint32_t *len);

/* Frees the payload buffer if it holds more than keep bytes of capacity and
 * the decoder is between frames (no payload being filled, and no ready
 * frame: feed 0 bytes first to release one the caller is done with): a
 * connection that received one large frame does not keep its buffer while
 * idle. Cannot fail; a no-op otherwise. */
void ss_fdec_trim(ss_fdec *d, uint32_t keep);

/* Frees the buffer; safe on an initialised or freed decoder. */
void ss_fdec_free(ss_fdec *d);

#endif
