/* envelope.h - the BATCH payload: one origin, a contiguous range of its
 * sequence numbers, and the changes. A binary header in front of the exact
 * body bytes, so a relay forwards it byte for byte and an origin signature
 * can cover it without anyone re-serialising JSON.
 *
 *   u8  version (1)
 *   u8  flags (bit 0: SIGNED; other bits must be 0)
 *   u8  origin_len (1..64)      origin: origin_len bytes, an id
 *   u64 first_seq (big-endian, 1..2^53-1)
 *   u32 count (1..SS_ENV_MAX_COUNT; first_seq + count - 1 <= 2^53-1)
 *   u32 body_len                body: a JSON array of `count` changes
 *   -- end of the signed region --
 *   if SIGNED: u16 sig_len (1..SS_ENV_MAX_SIG), sig: sig_len bytes
 * Nothing may follow. */
#ifndef SS_ENVELOPE_H
#define SS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/ident.h"
#include "proto/schema.h"

#define SS_ENV_VERSION     1
#define SS_ENV_FLAG_SIGNED 0x01u
#define SS_ENV_FLAGS_MASK  0x01u
#define SS_ENV_MAX_COUNT   4096u
#define SS_ENV_MAX_SIG     4096u
#define SS_ENV_FIXED_LEN   19u /* version..body_len without the origin */

/* A parsed view into the caller's buffer (no copies, nothing to free). */
typedef struct ss_envelope {
    uint8_t version;
    uint8_t flags;
    char origin[SS_ID_MAX + 1];
    uint64_t first_seq;
    uint32_t count;
    const uint8_t *body;
    uint32_t body_len;
    const uint8_t *signed_bytes; /* == buf: the region an origin signs */
    size_t signed_len;
    const uint8_t *sig; /* NULL unless SIGNED */
    uint32_t sig_len;
} ss_envelope;

static inline uint64_t ss_envelope_last_seq(const ss_envelope *e)
{
    return e->first_seq + e->count - 1;
}

/* Parses the binary layout strictly: version, flags, origin id, sequence
 * range, lengths against len, trailer. Does not parse the body. Returns 0 or
 * SS_ETRUNC, SS_EVERSION, SS_EFLAGS, SS_EID, SS_ESEQ (first_seq or count 0,
 * range beyond 2^53-1), SS_EOVERSIZE (count or sig_len above its maximum),
 * SS_ESIG (SIGNED with sig_len 0), SS_EPROTO (trailing bytes). */
int ss_envelope_parse(const uint8_t *buf, size_t len, ss_envelope *out);

/* Header length for an origin id (SS_ENV_FIXED_LEN + strlen(origin)). */
size_t ss_envelope_header_len(const char *origin);

/* Writes the header in front of a body the caller places right after it.
 * Returns the header length or SS_EID / SS_ESEQ / SS_EFLAGS / SS_ENOSPC. */
int ss_envelope_write_header(uint8_t *out, size_t cap, const char *origin, uint64_t first_seq,
                             uint32_t count, uint32_t body_len, unsigned flags);

/* The parsed body: `count` changes, checked against the envelope. Opaque. */
typedef struct ss_body ss_body;

/* Parses env's body with ss_json_parse. Structural faults refuse the whole
 * envelope: not an array, a count that differs from the header, an element
 * that is not an object, or a "seq" that is missing or not the next in the
 * range (SS_ESEQ). Schema faults do NOT: each change is decoded as far as
 * possible and ss_body_change_error reports its own error (with the field), so
 * the daemon can refuse that one change and still advance the sequence.
 * Returns 0 with *out set, or an error with err filled. */
int ss_body_parse(const ss_envelope *env, ss_body **out, ss_verr *err);
uint32_t ss_body_count(const ss_body *b);
/* The i-th change (0-based); strings point into b. */
const ss_change *ss_body_change(const ss_body *b, uint32_t i);
/* 0 if the i-th change is valid, else its error (with field and message). */
int ss_body_change_error(const ss_body *b, uint32_t i, const ss_verr **err);
/* The exact bytes of the i-th element of the body array (from its '{' to its
 * '}'), so the daemon can hash a change as sent, whatever envelope carried it
 * (tamper detection of re-sent sequence numbers). */
void ss_body_change_raw(const ss_body *b, uint32_t i, const uint8_t **p, size_t *len);
void ss_body_free(ss_body *b);

#endif
