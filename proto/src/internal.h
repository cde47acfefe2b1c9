/* internal.h - proto/'s private helpers shared between its .c files. Never on
 * another component's include path. */
#ifndef SS_INTERNAL_H
#define SS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/schema.h"

/* Decodes one change object of an envelope body (schema.c). Fills as much of
 * *ch as it can; returns 0 if the change is valid, else the first schema
 * error (with field). seq must already have been checked by the caller. */
int ss__change_from_json(const cJSON *obj, ss_change *ch, ss_verr *err);

/* Length of the valid UTF-8 sequence at t[i] (RFC 3629: no overlong forms,
 * surrogates or code points above U+10FFFF), or SS_EUTF8 / SS_ENUL (json.c). */
int ss__utf8_seq(const uint8_t *t, size_t len, size_t i);

/* How ss_body_parse may go about it (envelope.c); tests compare the two. */
enum {
    SS__BODY_AUTO = 0, /* the direct scan, then cJSON if the scan declines */
    SS__BODY_CJSON,    /* cJSON only */
    SS__BODY_DIRECT    /* the direct scan only: 1 if it declines */
};
int ss__body_parse_mode(const ss_envelope *env, ss_body **out, ss_verr *err, int mode);

/* Typed getters over a strict-parsed object (json.c). Each returns 0, or
 * SS_EMISSING / SS_EFIELDTYPE / SS_ERANGE / SS_ETOOLONG / SS_EID with err
 * naming `name`. Integers must be integral JSON numbers in [min, max] with
 * max <= SS_SEQ_MAX. Absent optional fields leave *out untouched and return 0. */
int ss__json_get_u64(const cJSON *obj, const char *name, int required, uint64_t min, uint64_t max,
                     uint64_t *out, ss_verr *err);
int ss__json_get_str(const cJSON *obj, const char *name, int required, char *out, size_t cap,
                     ss_verr *err);
int ss__json_get_id(const cJSON *obj, const char *name, int required, char *out, ss_verr *err);
/* Refuses members not named in allowed[] (NULL-terminated): SS_EUNKNOWNFIELD. */
int ss__json_only(const cJSON *obj, const char *const *allowed, ss_verr *err);

/* Big-endian helpers. */
static inline void ss__put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void ss__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void ss__put_u64(uint8_t *p, uint64_t v)
{
    ss__put_u32(p, (uint32_t)(v >> 32));
    ss__put_u32(p + 4, (uint32_t)v);
}
static inline uint16_t ss__get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t ss__get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t ss__get_u64(const uint8_t *p)
{
    return ((uint64_t)ss__get_u32(p) << 32) | ss__get_u32(p + 4);
}

#endif
