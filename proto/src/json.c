/* json.c - strict JSON intake in front of cJSON: a scanner that refuses bad
 * UTF-8, NULs and deep nesting before cJSON sees the text, a duplicate-key
 * check over the tree, typed getters, and string escaping for encoders. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/hlc.h"
#include "proto/ident.h"
#include "proto/json.h"
#include "proto/schema.h"
#include "internal.h"

/* Ceiling for any caller-supplied depth: the scanner keeps one bit per open
 * level in a uint64_t, and the duplicate-key walk recurses once per level. */
#define JSON_HARD_DEPTH 64

/* Above this many members an object's keys are sorted to find duplicates, so
 * a hostile object with thousands of keys costs n log n, not n^2. */
#define DUPKEY_SORT_MIN 16

/* Length of the valid UTF-8 sequence at t[i], or SS_EUTF8 / SS_ENUL. The
 * ranges are RFC 3629's table: they exclude overlong forms (C0, C1, E0 80..9F,
 * F0 80..8F), UTF-16 surrogates (ED A0..BF) and code points above U+10FFFF
 * (F4 90.. and F5..FF). */
int ss__utf8_seq(const uint8_t *t, size_t len, size_t i)
{
    uint8_t c = t[i];
    uint8_t lo = 0x80, hi = 0xBF;
    int n;

    if (c == 0)
        return SS_ENUL;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return SS_EUTF8;
    }
    if (len - i < (size_t)n)
        return SS_EUTF8;
    if (t[i + 1] < lo || t[i + 1] > hi)
        return SS_EUTF8;
    for (int k = 2; k < n; k++) {
        if (t[i + (size_t)k] < 0x80 || t[i + (size_t)k] > 0xBF)
            return SS_EUTF8;
    }
    return n;
}

/* Reads the 4 hex digits of a \u escape at t[i] (just after the 'u'). */
static int read_u4(const uint8_t *t, size_t len, size_t i, unsigned *out)
{
    unsigned v = 0;
    if (len - i < 4)
        return SS_EJSON;
    for (size_t k = 0; k < 4; k++) {
        int h = ss_hex_digit(t[i + k]);
        if (h < 0)
            return SS_EJSON;
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return 0;
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Checks the number token at t[i] against RFC 8259's grammar
 *   -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * and returns its length, or SS_EJSON. cJSON hands any run of number-ish
 * characters to strtod, which also takes "01", "1." and "-.5"; a stricter
 * peer would refuse those, so we do too. */
static int number_len(const uint8_t *t, size_t len, size_t i)
{
    size_t j = i;

    if (j < len && t[j] == '-')
        j++;
    if (j < len && t[j] == '0') {
        j++;
    } else if (j < len && is_digit(t[j])) {
        while (j < len && is_digit(t[j]))
            j++;
    } else {
        return SS_EJSON;
    }
    if (j < len && t[j] == '.') {
        j++;
        if (j >= len || !is_digit(t[j]))
            return SS_EJSON;
        while (j < len && is_digit(t[j]))
            j++;
    }
    if (j < len && (t[j] == 'e' || t[j] == 'E')) {
        j++;
        if (j < len && (t[j] == '+' || t[j] == '-'))
            j++;
        if (j >= len || !is_digit(t[j]))
            return SS_EJSON;
        while (j < len && is_digit(t[j]))
            j++;
    }
    /* "01" or "1.2.3" would otherwise pass as two tokens. */
    if (j < len &&
        (is_digit(t[j]) || t[j] == '.' || t[j] == 'e' || t[j] == 'E' || t[j] == '+' || t[j] == '-'))
        return SS_EJSON;
    return (int)(j - i);
}

int ss_json_precheck(const uint8_t *text, size_t len, int max_depth)
{
    uint64_t kinds = 0; /* bit d set: level d+1 is an object */
    int depth = 0;
    int in_str = 0;
    size_t i = 0;

    if (text == NULL && len > 0)
        return SS_EINVAL;
    if (max_depth < 1 || max_depth > JSON_HARD_DEPTH)
        return SS_EINVAL;
    while (i < len) {
        uint8_t c = text[i];
        if (c >= 0x80 || c == 0) {
            int n = ss__utf8_seq(text, len, i);
            if (n < 0)
                return n;
            /* Valid UTF-8, but outside strings JSON is ASCII: cJSON would
             * skip a byte order mark here and take the text, where the
             * body's span scanner (and a strict peer) would not. */
            if (!in_str)
                return SS_EJSON;
            i += (size_t)n;
            continue;
        }
        if (in_str) {
            if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                /* RFC 8259: control characters must be escaped in strings;
                 * cJSON would let them through. */
                return SS_EJSON;
            } else if (c == '\\') {
                if (i + 1 >= len)
                    return SS_EJSON;
                uint8_t e = text[i + 1];
                if (e == 'u') {
                    unsigned cp;
                    if (read_u4(text, len, i + 2, &cp) < 0)
                        return SS_EJSON;
                    if (cp == 0)
                        return SS_ENUL;
                    if (cp >= 0xDC00 && cp <= 0xDFFF)
                        return SS_EUTF8; /* lone low surrogate */
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned lo;
                        /* A high surrogate is valid only as the first half of
                         * a pair written as two escapes. */
                        if (len - i < 12 || text[i + 6] != '\\' || text[i + 7] != 'u' ||
                            read_u4(text, len, i + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                            return SS_EUTF8;
                        i += 12;
                        continue;
                    }
                    i += 6;
                    continue;
                }
                if (e == 0)
                    return SS_ENUL;
                if (!strchr("\"\\/bfnrt", e))
                    return SS_EJSON;
                i += 2;
                continue;
            }
            i++;
            continue;
        }
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            /* cJSON skips every byte <= 0x20 as white space; RFC 8259 allows
             * only these four, and a peer must not hide bytes between values. */
            return SS_EJSON;
        }
        if (c == '-' || is_digit(c)) {
            int n = number_len(text, len, i);
            if (n < 0)
                return n;
            i += (size_t)n;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '{':
        case '[':
            /* Counted here, before any parser recursion, so 10,000 levels cost
             * a loop iteration each and never a stack frame. */
            if (depth >= max_depth)
                return SS_EDEPTH;
            if (c == '{')
                kinds |= UINT64_C(1) << depth;
            else
                kinds &= ~(UINT64_C(1) << depth);
            depth++;
            break;
        case '}':
        case ']':
            if (depth == 0)
                return SS_EJSON;
            depth--;
            if (((kinds >> depth) & 1) != (c == '}'))
                return SS_EJSON;
            break;
        default:
            break;
        }
        i++;
    }
    if (in_str || depth != 0)
        return SS_EJSON;
    return 0;
}

/* Copies name into buf (SS_FIELD_NAME_MAX + 1) for an error report, cut on a
 * UTF-8 boundary so a long hostile key still yields valid text. */
static const char *field_label(char *buf, const char *name)
{
    size_t n = 0;
    if (name == NULL) {
        buf[0] = '\0';
        return buf;
    }
    const char *nul = memchr(name, '\0', SS_FIELD_NAME_MAX + 1);
    n = nul ? (size_t)(nul - name) : SS_FIELD_NAME_MAX;
    if (nul == NULL) {
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, name, n);
    buf[n] = '\0';
    return buf;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int dup_report(ss_verr *err, const char *key)
{
    char label[SS_FIELD_NAME_MAX + 1];
    return ss_verr_set(err, SS_EDUPKEY, field_label(label, key), "key \"%s\" appears twice", label);
}

/* Refuses any object in the tree that repeats a key. Recursion is bounded by
 * the depth limit the scanner has already enforced. */
static int check_dupkeys(const cJSON *node, ss_verr *err)
{
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
        return 0;
    if (cJSON_IsObject(node)) {
        size_t n = 0;
        for (const cJSON *c = node->child; c; c = c->next)
            n++;
        if (n > DUPKEY_SORT_MIN) {
            const char **keys = ss_malloc(n * sizeof(*keys));
            if (keys == NULL)
                return ss_verr_set(err, SS_ENOMEM, "", "no memory to check object keys");
            size_t k = 0;
            for (const cJSON *c = node->child; c; c = c->next)
                keys[k++] = c->string;
            qsort(keys, n, sizeof(*keys), key_cmp);
            for (k = 1; k < n; k++) {
                if (strcmp(keys[k - 1], keys[k]) == 0) {
                    int rc = dup_report(err, keys[k]);
                    ss_free(keys);
                    return rc;
                }
            }
            ss_free(keys);
        } else {
            for (const cJSON *a = node->child; a; a = a->next) {
                for (const cJSON *b = a->next; b; b = b->next) {
                    if (strcmp(a->string, b->string) == 0)
                        return dup_report(err, a->string);
                }
            }
        }
    }
    for (const cJSON *c = node->child; c; c = c->next) {
        int rc = check_dupkeys(c, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const char *precheck_message(int rc)
{
    switch (rc) {
    case SS_EUTF8:
        return "text is not valid UTF-8 (bad byte, overlong form, surrogate or above U+10FFFF)";
    case SS_ENUL:
        return "NUL character (raw or \\u0000) in JSON text";
    case SS_EDEPTH:
        return "JSON nested deeper than allowed";
    case SS_EJSON:
        return "malformed JSON (unbalanced brackets, bad escape or control character)";
    default:
        return ss_strerror(rc);
    }
}

int ss_json_parse(const uint8_t *text, size_t len, int max_depth, cJSON **out, ss_verr *err)
{
    const char *end = NULL;
    cJSON *root;
    int rc;

    if (out == NULL)
        return ss_verr_set(err, SS_EINVAL, "", "no output pointer");
    *out = NULL;
    rc = ss_json_precheck(text, len, max_depth);
    if (rc < 0)
        return ss_verr_set(err, rc, "", "%s", precheck_message(rc));
    if (len == 0)
        return ss_verr_set(err, SS_EJSON, "", "empty JSON text");
    /* cJSON cannot tell an allocation failure from a syntax error; both are
     * reported as malformed JSON (the peer's input is refused either way). */
    root = cJSON_ParseWithLengthOpts((const char *)text, len, &end, 0);
    if (root == NULL)
        return ss_verr_set(err, SS_EJSON, "", "malformed JSON");
    for (size_t i = (size_t)(end - (const char *)text); i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n') {
            cJSON_Delete(root);
            return ss_verr_set(err, SS_EJSON, "", "trailing data after the JSON value");
        }
    }
    rc = check_dupkeys(root, err);
    if (rc < 0) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}

int ss_json_put_string(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;

    if (out == NULL || p >= cap)
        return SS_ENOSPC;
    if (s == NULL && len > 0)
        return SS_EINVAL;
/* Room for n more bytes plus the closing NUL. */
#define ROOM(n) (cap - p > (size_t)(n))
    if (!ROOM(1))
        goto nospace;
    out[p++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            if (!ROOM(2))
                goto nospace;
            out[p++] = esc[0];
            out[p++] = esc[1];
        } else if (c < 0x20) {
            if (!ROOM(6))
                goto nospace;
            memcpy(out + p, "\\u00", 4);
            out[p + 4] = hex[c >> 4];
            out[p + 5] = hex[c & 0xF];
            p += 6;
        } else {
            if (!ROOM(1))
                goto nospace;
            out[p++] = (char)c;
        }
    }
    if (!ROOM(1))
        goto nospace;
    out[p++] = '"';
#undef ROOM
    out[p] = '\0';
    *pos = p;
    return 0;

nospace:
    out[*pos] = '\0';
    return SS_ENOSPC;
}

/* --- typed getters ----------------------------------------------------- */

int ss__json_get_u64(const cJSON *obj, const char *name, int required, uint64_t min, uint64_t max,
                     uint64_t *out, ss_verr *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    char label[SS_FIELD_NAME_MAX + 1];

    field_label(label, name);
    if (it == NULL) {
        if (required)
            return ss_verr_set(err, SS_EMISSING, label, "\"%s\" is required", label);
        return 0;
    }
    if (!cJSON_IsNumber(it))
        return ss_verr_set(err, SS_EFIELDTYPE, label, "\"%s\" must be an integer", label);
    /* Above 2^53 a double no longer holds every integer, so no bound may go
     * beyond it. */
    if (max > SS_SEQ_MAX)
        max = SS_SEQ_MAX;
    double d = it->valuedouble;
    /* Range first, on the double, so that a 60-digit number or an infinity is
     * refused before any conversion (casting an out-of-range double to an
     * integer is undefined behaviour). The negated form also refuses NaN. */
    if (!(d >= (double)min && d <= (double)max))
        return ss_verr_set(err, SS_ERANGE, label, "\"%s\" must be an integer in [%llu, %llu]",
                           label, (unsigned long long)min, (unsigned long long)max);
    uint64_t v = (uint64_t)d;
    if ((double)v != d)
        return ss_verr_set(err, SS_EFIELDTYPE, label, "\"%s\" must be an integer", label);
    *out = v;
    return 0;
}

/* The string member `name`, or NULL with an error (absent and optional: NULL
 * with rc 0). */
static const char *get_string(const cJSON *obj, const char *name, int required, char *label,
                              int *rc, ss_verr *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

    field_label(label, name);
    *rc = 0;
    if (it == NULL) {
        if (required)
            *rc = ss_verr_set(err, SS_EMISSING, label, "\"%s\" is required", label);
        return NULL;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        *rc = ss_verr_set(err, SS_EFIELDTYPE, label, "\"%s\" must be a string", label);
        return NULL;
    }
    return it->valuestring;
}

int ss__json_get_str(const cJSON *obj, const char *name, int required, char *out, size_t cap,
                     ss_verr *err)
{
    char label[SS_FIELD_NAME_MAX + 1];
    int rc;
    const char *s = get_string(obj, name, required, label, &rc, err);

    if (s == NULL)
        return rc;
    /* The precheck refused NULs, so strlen sees the whole value. */
    size_t n = strlen(s);
    if (cap == 0 || n >= cap)
        return ss_verr_set(err, SS_ETOOLONG, label, "\"%s\" is longer than %zu bytes", label,
                           cap ? cap - 1 : 0);
    memcpy(out, s, n + 1);
    return 0;
}

int ss__json_get_id(const cJSON *obj, const char *name, int required, char *out, ss_verr *err)
{
    char label[SS_FIELD_NAME_MAX + 1];
    int rc;
    const char *s = get_string(obj, name, required, label, &rc, err);

    if (s == NULL)
        return rc;
    size_t n = strlen(s);
    if (ss_id_check(s, n) < 0)
        return ss_verr_set(err, SS_EID, label,
                           "\"%s\" must be 1..%d characters of [a-z0-9._-] starting with "
                           "[a-z0-9]",
                           label, SS_ID_MAX);
    memcpy(out, s, n + 1);
    return 0;
}

int ss__json_only(const cJSON *obj, const char *const *allowed, ss_verr *err)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, c->string) != 0)
            a++;
        if (*a == NULL) {
            char label[SS_FIELD_NAME_MAX + 1];
            return ss_verr_set(err, SS_EUNKNOWNFIELD, field_label(label, c->string),
                               "unknown field \"%s\"", label);
        }
    }
    return 0;
}
