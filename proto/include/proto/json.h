/* json.h - strict JSON intake. Debian's cJSON accepts duplicate keys,
 * 1000 levels of nesting and embedded NULs; a peer's bytes are checked here
 * first so that none of that reaches our code. */
#ifndef SS_JSON_H
#define SS_JSON_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct ss_verr;

/* Default and hard nesting limits for protocol payloads. */
#define SS_JSON_MAX_DEPTH 8

/* Checks text[0..len) without building a tree: valid UTF-8 (no overlongs, no
 * surrogates), no NUL byte and no \u0000 escape, nesting at most max_depth.
 * Returns 0, SS_EUTF8, SS_ENUL, SS_EDEPTH or SS_EJSON (unbalanced). */
int ss_json_precheck(const uint8_t *text, size_t len, int max_depth);

/* Precheck, then parse with cJSON; the whole input must be one value (trailing
 * white space only); no object may repeat a key (SS_EDUPKEY). On success
 * *out is a tree the caller frees with cJSON_Delete. err (optional) gets the
 * code and a message. */
int ss_json_parse(const uint8_t *text, size_t len, int max_depth, struct cJSON **out,
                  struct ss_verr *err);

/* Appends s[0..len) as a JSON string literal (with quotes) at out+*pos,
 * escaping as needed. Returns 0 or SS_ENOSPC (out is left NUL-terminated
 * when cap > 0). */
int ss_json_put_string(char *out, size_t cap, size_t *pos, const char *s, size_t len);

#endif
