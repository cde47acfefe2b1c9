/* envelope.c - the BATCH envelope: strict parsing of its binary header and
 * trailer, header writing, and the body parser that checks the sequence range
 * and keeps each change's exact bytes. */
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/json.h"
#include "internal.h"

int ss_envelope_parse(const uint8_t *buf, size_t len, ss_envelope *out)
{
    ss_envelope e;
    size_t pos = 0;

    if (out == NULL || (buf == NULL && len > 0))
        return SS_EINVAL;
    memset(out, 0, sizeof(*out));
    memset(&e, 0, sizeof(e));

    /* Each field is checked as soon as it is complete, so the first problem
     * in reading order is the one reported. */
    if (len - pos < 1)
        return SS_ETRUNC;
    e.version = buf[pos++];
    if (e.version != SS_ENV_VERSION)
        return SS_EVERSION;
    if (len - pos < 1)
        return SS_ETRUNC;
    e.flags = buf[pos++];
    if (e.flags & ~SS_ENV_FLAGS_MASK)
        return SS_EFLAGS;
    if (len - pos < 1)
        return SS_ETRUNC;
    size_t olen = buf[pos++];
    if (olen < 1 || olen > SS_ID_MAX)
        return SS_EID;
    if (len - pos < olen)
        return SS_ETRUNC;
    if (ss_id_check((const char *)buf + pos, olen) < 0)
        return SS_EID;
    memcpy(e.origin, buf + pos, olen);
    e.origin[olen] = '\0';
    pos += olen;
    if (len - pos < 8)
        return SS_ETRUNC;
    e.first_seq = ss__get_u64(buf + pos);
    pos += 8;
    if (e.first_seq < 1 || e.first_seq > SS_SEQ_MAX)
        return SS_ESEQ;
    if (len - pos < 4)
        return SS_ETRUNC;
    e.count = ss__get_u32(buf + pos);
    pos += 4;
    if (e.count < 1)
        return SS_ESEQ;
    if (e.count > SS_ENV_MAX_COUNT)
        return SS_EOVERSIZE;
    if (e.first_seq > SS_SEQ_MAX - (e.count - 1))
        return SS_ESEQ;
    if (len - pos < 4)
        return SS_ETRUNC;
    e.body_len = ss__get_u32(buf + pos);
    pos += 4;
    if (len - pos < e.body_len)
        return SS_ETRUNC;
    e.body = buf + pos;
    pos += e.body_len;
    e.signed_bytes = buf;
    e.signed_len = pos;
    if (e.flags & SS_ENV_FLAG_SIGNED) {
        if (len - pos < 2)
            return SS_ETRUNC;
        e.sig_len = ss__get_u16(buf + pos);
        pos += 2;
        if (e.sig_len < 1)
            return SS_ESIG;
        if (e.sig_len > SS_ENV_MAX_SIG)
            return SS_EOVERSIZE;
        if (len - pos < e.sig_len)
            return SS_ETRUNC;
        e.sig = buf + pos;
        pos += e.sig_len;
    }
    /* Trailing bytes would sit outside the signed region and be forwarded by
     * relays unchecked: refuse them. */
    if (pos != len)
        return SS_EPROTO;
    *out = e;
    return 0;
}

size_t ss_envelope_header_len(const char *origin)
{
    return SS_ENV_FIXED_LEN + strlen(origin);
}

int ss_envelope_write_header(uint8_t *out, size_t cap, const char *origin, uint64_t first_seq,
                             uint32_t count, uint32_t body_len, unsigned flags)
{
    if (ss_id_check_str(origin) < 0)
        return SS_EID;
    if (flags & ~SS_ENV_FLAGS_MASK)
        return SS_EFLAGS;
    if (first_seq < 1 || first_seq > SS_SEQ_MAX || count < 1 || count > SS_ENV_MAX_COUNT ||
        first_seq > SS_SEQ_MAX - (count - 1))
        return SS_ESEQ;
    size_t olen = strlen(origin);
    size_t hlen = SS_ENV_FIXED_LEN + olen;
    if (out == NULL || cap < hlen)
        return SS_ENOSPC;
    uint8_t *p = out;
    *p++ = SS_ENV_VERSION;
    *p++ = (uint8_t)flags;
    *p++ = (uint8_t)olen;
    memcpy(p, origin, olen);
    p += olen;
    ss__put_u64(p, first_seq);
    p += 8;
    ss__put_u32(p, count);
    p += 4;
    ss__put_u32(p, body_len);
    return (int)hlen;
}

/* --- body ---------------------------------------------------------------- */

typedef struct body_item {
    ss_change ch;
    int rc;
    ss_verr verr;
    size_t off, len; /* the element's bytes within text */
} body_item;

/* The body owns a copy of the JSON text, so raw spans and change strings stay
 * valid after the frame buffer they came from is reused. */
struct ss_body {
    cJSON *root; /* change strings point into this tree */
    uint32_t count;
    uint8_t *text;
    size_t text_len;
    body_item items[];
};

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Finds the byte span of each element of the top-level array. cJSON keeps no
 * offsets, so the text is scanned again; it has already passed the precheck
 * and cJSON, so only strings (which may hold brackets) and nesting need
 * tracking. Returns the number of elements found (at most max), or -1. */
static long array_spans(const uint8_t *t, size_t len, body_item *items, uint32_t max)
{
    size_t i = 0;
    uint32_t n = 0;

    while (i < len && is_ws(t[i]))
        i++;
    if (i >= len || t[i] != '[')
        return -1;
    i++;
    for (;;) {
        while (i < len && is_ws(t[i]))
            i++;
        if (i >= len)
            return -1;
        if (t[i] == ']')
            return n;
        if (n > 0) {
            if (t[i] != ',')
                return -1;
            i++;
            while (i < len && is_ws(t[i]))
                i++;
        }
        if (n >= max || i >= len)
            return -1;
        size_t start = i;
        int depth = 0, in_str = 0;
        for (; i < len; i++) {
            uint8_t c = t[i];
            if (in_str) {
                if (c == '\\')
                    i++; /* skip the escaped byte ('"' or '\\' included) */
                else if (c == '"')
                    in_str = 0;
                continue;
            }
            if (c == '"') {
                in_str = 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (depth == 0)
                    break; /* the array's own ']' after a scalar element */
                if (--depth == 0) {
                    i++;
                    break;
                }
            } else if (depth == 0 && (c == ',' || is_ws(c))) {
                break; /* end of a scalar element */
            }
        }
        if (i > len)
            return -1;
        items[n].off = start;
        items[n].len = i - start;
        n++;
    }
}

int ss_body_parse(const ss_envelope *env, ss_body **out, ss_verr *err)
{
    cJSON *root = NULL;
    ss_body *b = NULL;
    int rc;

    if (out == NULL)
        return ss_verr_set(err, SS_EINVAL, "", "no output pointer");
    *out = NULL;
    if (env == NULL || (env->body == NULL && env->body_len > 0) || env->count < 1 ||
        env->count > SS_ENV_MAX_COUNT)
        return ss_verr_set(err, SS_EINVAL, "", "envelope not parsed");
    rc = ss_json_parse(env->body, env->body_len, SS_JSON_MAX_DEPTH, &root, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsArray(root)) {
        rc = ss_verr_set(err, SS_EFIELDTYPE, "", "envelope body must be a JSON array");
        goto exit;
    }
    uint32_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (++n > env->count)
            break;
    }
    if (n != env->count) {
        rc = ss_verr_set(err, SS_ESEQ, "", "body holds %s changes than the header's count %u",
                         n > env->count ? "more" : "fewer", (unsigned)env->count);
        goto exit;
    }
    b = ss_malloc(sizeof(*b) + (size_t)n * sizeof(b->items[0]));
    if (b == NULL) {
        rc = ss_verr_set(err, SS_ENOMEM, "", "no memory for the envelope body");
        goto exit;
    }
    memset(b, 0, sizeof(*b) + (size_t)n * sizeof(b->items[0]));
    b->count = n;
    b->text_len = env->body_len;
    b->text = ss_malloc(env->body_len);
    if (b->text == NULL) {
        rc = ss_verr_set(err, SS_ENOMEM, "", "no memory for the envelope body");
        goto exit;
    }
    memcpy(b->text, env->body, env->body_len);
    if (array_spans(b->text, b->text_len, b->items, n) != (long)n) {
        /* cJSON accepted the text, so the scanner must agree with it. */
        rc = ss_verr_set(err, SS_EINTERNAL, "", "body element scan disagrees with the parser");
        goto exit;
    }

    uint32_t i = 0;
    for (const cJSON *c = root->child; c; c = c->next, i++) {
        body_item *it = &b->items[i];
        uint64_t want = env->first_seq + i, seq = 0;
        if (!cJSON_IsObject(c)) {
            rc = ss_verr_set(err, SS_EFIELDTYPE, "", "change %u of the body is not an object",
                             (unsigned)i);
            goto exit;
        }
        /* Sequence faults are structural: the envelope's range would be a lie,
         * so nothing in it can be acknowledged. */
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "seq");
        if (s == NULL || ss__json_get_u64(c, "seq", 1, 1, SS_SEQ_MAX, &seq, NULL) < 0 ||
            seq != want) {
            rc = ss_verr_set(err, SS_ESEQ, "seq",
                             "change %u must carry \"seq\":%llu (the envelope covers %llu..%llu)",
                             (unsigned)i, (unsigned long long)want,
                             (unsigned long long)env->first_seq,
                             (unsigned long long)(env->first_seq + env->count - 1));
            goto exit;
        }
        /* Schema faults are per change: stored, reported, not fatal. */
        it->rc = ss__change_from_json(c, &it->ch, &it->verr);
        if (it->rc < 0 && it->verr.code == 0)
            it->verr.code = it->rc;
        it->ch.seq = seq;
    }
    b->root = root;
    root = NULL;
    *out = b;
    b = NULL;
    rc = 0;
exit:
    cJSON_Delete(root);
    ss_body_free(b);
    return rc;
}

uint32_t ss_body_count(const ss_body *b)
{
    return b ? b->count : 0;
}

const ss_change *ss_body_change(const ss_body *b, uint32_t i)
{
    if (b == NULL || i >= b->count)
        return NULL;
    return &b->items[i].ch;
}

int ss_body_change_error(const ss_body *b, uint32_t i, const ss_verr **err)
{
    if (err != NULL)
        *err = NULL;
    if (b == NULL || i >= b->count)
        return SS_EINVAL;
    if (b->items[i].rc < 0 && err != NULL)
        *err = &b->items[i].verr;
    return b->items[i].rc;
}

void ss_body_change_raw(const ss_body *b, uint32_t i, const uint8_t **p, size_t *len)
{
    if (b == NULL || i >= b->count) {
        *p = NULL;
        *len = 0;
        return;
    }
    *p = b->text + b->items[i].off;
    *len = b->items[i].len;
}

void ss_body_free(ss_body *b)
{
    if (b == NULL)
        return;
    cJSON_Delete(b->root);
    ss_free(b->text);
    ss_free(b);
}
