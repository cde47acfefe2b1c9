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
    cJSON *root; /* change strings point into this tree (cJSON path) */
    char *unesc; /* or into text, or here when they held escapes (direct scan) */
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

/* ---- the direct scan ------------------------------------------------------
 * What a gateway sends, parsed in one pass over the text with no tree and no
 * allocation per value: in the 50-gateway e2e bench the cJSON path (precheck,
 * tree, duplicate-key check, decode, delete) was four fifths of the daemon's
 * prepare threads. The scan accepts only a strict subset of what the cJSON
 * path accepts, and only where that path would decode the change without a
 * note: members in the encoder's order (ss_change_encode), known names each
 * once, every member present, integers of at most 15 digits, strings without
 * \u escapes or control bytes, valid UTF-8. Anything else (including every
 * malformed input) makes it decline, and the cJSON path decides, with its
 * messages. Both paths then run the same ss_change_validate, so a change the
 * scan takes is the one the cJSON path would have produced; the proto tests
 * and fuzz_envelope compare the two on every input. */

/* Every scan function returns 0, SCAN_NO (declined) or SS_ENOMEM. */
#define SCAN_NO 1
/* Fewer bytes than the shortest change the scan accepts. */
#define SCAN_MIN_CHANGE 64

typedef struct scan {
    const uint8_t *t;
    size_t len, i;
    ss_body *b;
    size_t unesc_used;
} scan;

static void scan_ws(scan *p)
{
    while (p->i < p->len && is_ws(p->t[p->i]))
        p->i++;
}

static int scan_byte(scan *p, uint8_t c)
{
    scan_ws(p);
    if (p->i >= p->len || p->t[p->i] != c)
        return SCAN_NO;
    p->i++;
    scan_ws(p);
    return 0;
}

/* A string at p->i: its bytes (unescaped into b->unesc when escapes=1 and it
 * has any) in *s, *n. SCAN_NO declines: a control byte, invalid UTF-8, a \u or
 * any escape when escapes=0, no closing quote. */
static int scan_str(scan *p, int escapes, const char **s, size_t *n)
{
    if (p->i >= p->len || p->t[p->i] != '"')
        return SCAN_NO;
    size_t start = ++p->i;
    char *w = NULL; /* write position once an escape was seen */
    for (;;) {
        if (p->i >= p->len)
            return SCAN_NO;
        uint8_t c = p->t[p->i];
        if (c == '"')
            break;
        if (c < 0x20)
            return SCAN_NO;
        if (c >= 0x80) {
            int k = ss__utf8_seq(p->t, p->len, p->i);
            if (k < 0)
                return SCAN_NO;
            if (w) {
                memcpy(w, p->t + p->i, (size_t)k);
                w += k;
            }
            p->i += (size_t)k;
            continue;
        }
        if (c != '\\') {
            if (w)
                *w++ = (char)c;
            p->i++;
            continue;
        }
        if (!escapes || p->i + 1 >= p->len)
            return SCAN_NO;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *e = memchr(from, p->t[p->i + 1], 8);
        if (!e || p->t[p->i + 1] == 0)
            return SCAN_NO; /* \u and anything else: the cJSON path */
        if (!w) {
            /* Unescaped text is never longer than the escaped text, so one
             * buffer of the body's length holds every string of the body. */
            if (!p->b->unesc) {
                p->b->unesc = ss_malloc(p->len ? p->len : 1);
                if (!p->b->unesc)
                    return SS_ENOMEM;
            }
            w = p->b->unesc + p->unesc_used;
            memcpy(w, p->t + start, p->i - start);
            w += p->i - start;
        }
        *w++ = to[e - from];
        p->i += 2;
    }
    if (w) {
        *s = p->b->unesc + p->unesc_used;
        *n = (size_t)(w - *s);
        p->unesc_used += *n;
    } else {
        *s = (const char *)p->t + start;
        *n = p->i - start;
    }
    p->i++;
    return 0;
}

/* An integer of 1..15 digits (below 2^53, so cJSON's double holds it
 * exactly), optionally negative. Declines "-0", leading zeros, fractions and
 * exponents (the cJSON path judges those). */
static int scan_int(scan *p, int neg_ok, int64_t *out)
{
    size_t j = p->i;
    int neg = 0;
    if (j < p->len && p->t[j] == '-') {
        if (!neg_ok)
            return SCAN_NO;
        neg = 1;
        j++;
    }
    size_t d0 = j;
    int64_t v = 0;
    while (j < p->len && p->t[j] >= '0' && p->t[j] <= '9' && j - d0 < 16)
        v = v * 10 + (p->t[j++] - '0');
    size_t nd = j - d0;
    if (nd == 0 || nd > 15 || (p->t[d0] == '0' && (nd > 1 || neg)))
        return SCAN_NO;
    if (j < p->len && (p->t[j] == '.' || p->t[j] == 'e' || p->t[j] == 'E'))
        return SCAN_NO;
    p->i = j;
    *out = neg ? -v : v;
    return 0;
}

static int scan_name(scan *p, const char **s, size_t *n)
{
    int rc = scan_str(p, 0, s, n);
    if (rc != 0)
        return rc;
    return scan_byte(p, ':');
}

static int name_is(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(s, want, n) == 0;
}

static int scan_fields(scan *p, ss_change *ch)
{
    if (scan_byte(p, '{') != 0)
        return SCAN_NO;
    if (p->i < p->len && p->t[p->i] == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        const char *nm, *sv;
        size_t nl, sl;
        int rc = scan_name(p, &nm, &nl);
        if (rc != 0)
            return rc;
        const ss_field_def *f = ss_schema_field(ch->coll, nm, nl);
        if (!f || ch->nfields >= SS_SCHEMA_MAX_FIELDS)
            return SCAN_NO;
        for (int k = 0; k < ch->nfields; k++) {
            if (ch->fields[k].def == f)
                return SCAN_NO; /* given twice */
        }
        ss_value v;
        memset(&v, 0, sizeof(v));
        if (p->len - p->i >= 4 && memcmp(p->t + p->i, "null", 4) == 0) {
            v.is_null = 1;
            p->i += 4;
        } else if (f->type == SS_FT_INT) {
            if (scan_int(p, 1, &v.num) != 0)
                return SCAN_NO;
        } else {
            if ((rc = scan_str(p, 1, &sv, &sl)) != 0)
                return rc;
            v.str = sv;
            v.len = sl;
        }
        ch->fields[ch->nfields].def = f;
        ch->fields[ch->nfields].v = v;
        ch->nfields++;
        scan_ws(p);
        if (p->i < p->len && p->t[p->i] == '}') {
            p->i++;
            return 0;
        }
        if (scan_byte(p, ',') != 0)
            return SCAN_NO;
    }
}

/* One change object, members in the encoder's order. */
static int scan_change(scan *p, uint64_t want_seq, ss_change *ch)
{
    static const char *const order[] = {
        "seq", "hlc", "collection", "key", "site", "op", "fields"
    };
    memset(ch, 0, sizeof(*ch));
    if (scan_byte(p, '{') != 0)
        return SCAN_NO;
    for (size_t m = 0; m < sizeof(order) / sizeof(order[0]); m++) {
        const char *nm, *sv;
        size_t nl, sl;
        int64_t num;
        int rc;
        if (m > 0 && scan_byte(p, ',') != 0)
            return SCAN_NO;
        if ((rc = scan_name(p, &nm, &nl)) != 0)
            return rc;
        if (!name_is(nm, nl, order[m]))
            return SCAN_NO;
        if (m == 0) {
            if (scan_int(p, 0, &num) != 0 || (uint64_t)num != want_seq)
                return SCAN_NO;
            ch->seq = (uint64_t)num;
            continue;
        }
        if (m == 6) {
            if ((rc = scan_fields(p, ch)) != 0)
                return rc;
            continue;
        }
        if ((rc = scan_str(p, 0, &sv, &sl)) != 0)
            return rc;
        switch (m) {
        case 1:
            if (ss_hlc_parse(sv, sl, &ch->hlc) != 0)
                return SCAN_NO;
            break;
        case 2:
            if (!(ch->coll = ss_schema_collection(sv, sl)))
                return SCAN_NO;
            break;
        case 3:
        case 4:
            if (sl > (m == 3 ? (size_t)SS_KEY_MAX : (size_t)SS_ID_MAX))
                return SCAN_NO;
            memcpy(m == 3 ? ch->key : ch->site, sv, sl);
            break;
        default:
            if ((rc = ss_op_parse(sv, sl)) < 0)
                return SCAN_NO;
            ch->op = (ss_op)rc;
            break;
        }
    }
    return scan_byte(p, '}');
}

/* 0: *out is the body; 1: declined (the cJSON path decides); SS_ENOMEM. */
static int body_direct(const ss_envelope *env, ss_body **out)
{
    uint32_t n = env->count;
    /* Every change the scan takes is over 90 bytes (seven members, a 16-digit
     * hlc): a header promising more changes than the body could hold is the
     * cJSON path's to refuse, before a table of count items is allocated. */
    if ((uint64_t)n * SCAN_MIN_CHANGE > env->body_len)
        return SCAN_NO;
    ss_body *b = ss_malloc(sizeof(*b) + (size_t)n * sizeof(b->items[0]));
    if (!b)
        return SS_ENOMEM;
    memset(b, 0, sizeof(*b) + (size_t)n * sizeof(b->items[0]));
    b->count = n;
    b->text_len = env->body_len;
    b->text = ss_malloc(env->body_len ? env->body_len : 1);
    if (!b->text) {
        ss_body_free(b);
        return SS_ENOMEM;
    }
    memcpy(b->text, env->body, env->body_len);
    scan p = { b->text, b->text_len, 0, b, 0 };
    int rc = scan_byte(&p, '[');
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        body_item *it = &b->items[i];
        if (i > 0 && (rc = scan_byte(&p, ',')) != 0)
            break;
        it->off = p.i;
        if ((rc = scan_change(&p, env->first_seq + i, &it->ch)) != 0)
            break;
        size_t end = p.i;
        while (end > it->off && is_ws(b->text[end - 1]))
            end--; /* scan_byte went past the white space after the '}' */
        it->len = end - it->off;
        it->rc = ss_change_validate(&it->ch, &it->verr);
        if (it->rc < 0 && it->verr.code == 0)
            it->verr.code = it->rc;
    }
    if (rc == 0 && (rc = scan_byte(&p, ']')) == 0 && p.i != p.len)
        rc = SCAN_NO;
    if (rc != 0) {
        ss_body_free(b);
        return rc == SS_ENOMEM ? SS_ENOMEM : SCAN_NO;
    }
    *out = b;
    return 0;
}

int ss_body_parse(const ss_envelope *env, ss_body **out, ss_verr *err)
{
    return ss__body_parse_mode(env, out, err, SS__BODY_AUTO);
}

int ss__body_parse_mode(const ss_envelope *env, ss_body **out, ss_verr *err, int mode)
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
    if (mode != SS__BODY_CJSON) {
        rc = body_direct(env, out);
        if (rc == SS_ENOMEM)
            return ss_verr_set(err, SS_ENOMEM, "", "no memory for the envelope body");
        if (rc == 0 || mode == SS__BODY_DIRECT)
            return rc;
    }
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
    ss_free(b->unesc);
    ss_free(b->text);
    ss_free(b);
}
