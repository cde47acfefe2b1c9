/* schema.c - the one schema table (collections, fields, types, limits) and the
 * validation, decoding and encoding of changes against it. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "proto/json.h"
#include "proto/schema.h"

/* ---- The schema: the only place where fields and limits are written down. */

static const char *const alert_levels[] = { "normal", "elevated", "high", "critical", NULL };
static const char *const power_states[] = { "normal", "backup", "degraded", "outage", NULL };
static const char *const perimeter_states[] = { "secure", "alarm", "breached", "unknown", NULL };
static const char *const access_states[] = { "normal", "degraded", "offline", "bypassed", NULL };
static const char *const cctv_states[] = { "online", "degraded", "offline", NULL };
static const char *const comms_states[] = { "normal", "degraded", "backup_link", "offline", NULL };

static const char *const categories[] = { "intrusion", "sabotage", "cyber",     "fire",
                                          "threat",    "theft",    "tampering", "drone",
                                          "safety",    "other",    NULL };
static const char *const incident_states[] = { "open",     "acknowledged", "contained",
                                               "resolved", "closed",       NULL };

/* TIME values are exactly "YYYY-MM-DDTHH:MM:SSZ" (20 bytes) or with ".mmm"
 * (24 bytes); min/max carry those lengths. */
#define TIME_MIN 20
#define TIME_MAX 24

static const ss_field_def site_status_fields[] = {
    { "alert_level", SS_FT_ENUM, 0, 0, 0, alert_levels, "overall alert level of the site" },
    { "power", SS_FT_ENUM, 0, 0, 0, power_states, "electrical supply state" },
    { "perimeter", SS_FT_ENUM, 0, 0, 0, perimeter_states, "perimeter fence and sensor state" },
    { "access_control", SS_FT_ENUM, 0, 0, 0, access_states, "door and gate access control" },
    { "cctv", SS_FT_ENUM, 0, 0, 0, cctv_states, "video surveillance state" },
    { "comms", SS_FT_ENUM, 0, 0, 0, comms_states, "communications state" },
    { "personnel_on_site", SS_FT_INT, 0, 0, 100000, NULL, "people currently on site" },
    { "note", SS_FT_STRING, 0, 0, 1024, NULL, "short free-text note (one line)" },
};

static const ss_field_def incident_fields[] = {
    { "category", SS_FT_ENUM, 1, 0, 0, categories, "kind of incident" },
    { "severity", SS_FT_INT, 1, 1, 5, NULL, "1 (minor) .. 5 (critical)" },
    { "status", SS_FT_ENUM, 0, 0, 0, incident_states, "handling status" },
    { "title", SS_FT_STRING, 1, 1, 200, NULL, "one-line summary" },
    { "description", SS_FT_TEXT, 0, 0, 4000, NULL, "what happened (multi-line)" },
    { "occurred_at", SS_FT_TIME, 0, TIME_MIN, TIME_MAX, NULL,
      "when it happened, UTC YYYY-MM-DDTHH:MM:SS[.mmm]Z" },
    { "reported_by", SS_FT_STRING, 0, 0, 100, NULL, "who reported it" },
    { "location", SS_FT_STRING, 0, 0, 200, NULL, "where on the site" },
    { "actions_taken", SS_FT_TEXT, 0, 0, 4000, NULL, "response so far (multi-line)" },
};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const ss_collection_def collections[] = {
    { "site_status", SS_COLL_SITE_STATUS, 1, NELEM(site_status_fields), site_status_fields },
    { "incident", SS_COLL_INCIDENT, 0, NELEM(incident_fields), incident_fields },
};

const ss_collection_def *ss_schema_collections(int *n)
{
    if (n)
        *n = NELEM(collections);
    return collections;
}

static int name_eq(const char *name, const char *s, size_t len)
{
    return strlen(name) == len && memcmp(name, s, len) == 0;
}

const ss_collection_def *ss_schema_collection(const char *name, size_t len)
{
    if (!name)
        return NULL;
    for (int i = 0; i < NELEM(collections); i++) {
        if (name_eq(collections[i].name, name, len))
            return &collections[i];
    }
    return NULL;
}

const ss_field_def *ss_schema_field(const ss_collection_def *c, const char *name, size_t len)
{
    if (!c || !name)
        return NULL;
    for (int i = 0; i < c->nfields; i++) {
        if (name_eq(c->fields[i].name, name, len))
            return &c->fields[i];
    }
    return NULL;
}

/* A change may only point at our own table: a def from elsewhere would let
 * unchecked limits in. */
static int coll_is_ours(const ss_collection_def *c)
{
    return c == &collections[0] || c == &collections[1];
}

static int field_is_of(const ss_collection_def *c, const ss_field_def *f)
{
    for (int i = 0; i < c->nfields; i++) {
        if (f == &c->fields[i])
            return 1;
    }
    return 0;
}

static const char *const op_names[] = { NULL, "create", "update", "delete" };

const char *ss_op_name(ss_op op)
{
    if ((int)op < SS_OP_CREATE || (int)op > SS_OP_DELETE)
        return "invalid";
    return op_names[op];
}

int ss_op_parse(const char *s, size_t len)
{
    if (!s)
        return SS_EINVAL;
    for (int op = SS_OP_CREATE; op <= SS_OP_DELETE; op++) {
        if (name_eq(op_names[op], s, len))
            return op;
    }
    return SS_EINVAL;
}

/* ---- Errors. */

int ss_verr_set(ss_verr *err, int code, const char *field, const char *fmt, ...)
{
    va_list ap;
    size_t i = 0;

    if (!err)
        return code;
    err->code = code;
    /* The field may be a name a peer sent (an unknown member): keep only
     * printable ASCII so logs and ERROR frames stay clean. */
    if (field) {
        for (; field[i] && i < SS_FIELD_NAME_MAX; i++) {
            unsigned char ch = (unsigned char)field[i];
            err->field[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
    }
    err->field[i] = '\0';
    err->msg[0] = '\0';
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        /* Messages may quote what a peer sent and vsnprintf may cut a UTF-8
         * sequence in half: keep printable ASCII only, so every message can
         * travel in an ERROR frame or an ACK rejection (which must be UTF-8). */
        for (char *p = err->msg; *p; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch < 0x20 || ch >= 0x7f)
                *p = '?';
        }
    }
    return code;
}

/* Quotes a peer-supplied value for a message: printable ASCII only, cut short. */
static const char *show(const char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0, i;

    for (i = 0; s && i < len && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[o++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char)ch : '?';
    }
    if (s && i < len && o + 3 < cap) {
        buf[o++] = '.';
        buf[o++] = '.';
        buf[o++] = '.';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- Value checks. */

/* Returns 0, or an error with the offset of the first bad byte in *at:
 * SS_EUTF8 for invalid UTF-8 (overlong, surrogate, beyond U+10FFFF, cut
 * short), SS_ENUL for NUL, SS_EINVAL for a refused control character. */
static int check_text(const char *s, size_t len, int multiline, size_t *at)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        *at = i;
        if (c < 0x80) {
            if (c == 0)
                return SS_ENUL;
            if (c < 0x20 || c == 0x7f) {
                if (!(multiline && (c == '\t' || c == '\n' || c == '\r')))
                    return SS_EINVAL;
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t n;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return SS_EUTF8;
        }
        if (len - i < n)
            return SS_EUTF8;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return SS_EUTF8;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return SS_EUTF8;
        i += n;
    }
    return 0;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return (m == 2 && leap) ? 29 : dim[m - 1];
}

/* "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.mmmZ": the syntax exactly
 * (SS_EINVAL), then a real calendar date in 2000..2199 and a real time of day
 * without leap seconds (SS_ERANGE). */
static int check_time(const ss_field_def *f, const char *s, size_t len, ss_verr *err)
{
    unsigned y, mo, d, h, mi, sec, frac;

    if (!(len == TIME_MIN || len == TIME_MAX) || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[len - 1] != 'Z' || digits(s, 4, &y) < 0 ||
        digits(s + 5, 2, &mo) < 0 || digits(s + 8, 2, &d) < 0 || digits(s + 11, 2, &h) < 0 ||
        digits(s + 14, 2, &mi) < 0 || digits(s + 17, 2, &sec) < 0 ||
        (len == TIME_MAX && (s[19] != '.' || digits(s + 20, 3, &frac) < 0)))
        return ss_verr_set(err, SS_EINVAL, f->name,
                           "%s: not a UTC time of the form YYYY-MM-DDTHH:MM:SS[.mmm]Z", f->name);
    if (y < 2000 || y > 2199)
        return ss_verr_set(err, SS_ERANGE, f->name, "%s: year %u outside 2000..2199", f->name, y);
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return ss_verr_set(err, SS_ERANGE, f->name, "%s: %.10s is not a calendar date", f->name, s);
    if (h > 23 || mi > 59 || sec > 59)
        return ss_verr_set(err, SS_ERANGE, f->name, "%s: %.8s is not a time of day", f->name,
                           s + 11);
    return 0;
}

static void enum_list(const ss_field_def *f, char *buf, size_t cap)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; f->enums[i]; i++) {
        int n = snprintf(buf + o, cap - o, "%s%s", i ? "|" : "", f->enums[i]);
        if (n < 0 || (size_t)n >= cap - o)
            return;
        o += (size_t)n;
    }
}

/* One value against its field definition. */
static int check_value(const ss_field_def *f, const ss_value *v, ss_verr *err)
{
    char shown[48];
    size_t at = 0;
    int rc;

    if (v->is_null) {
        if (f->required)
            return ss_verr_set(err, SS_EMISSING, f->name, "%s: required, may not be null", f->name);
        return 0;
    }
    if (f->type == SS_FT_INT) {
        if (v->num < f->min || v->num > f->max)
            return ss_verr_set(err, SS_ERANGE, f->name,
                               "%s: %" PRId64 " outside %" PRId64 "..%" PRId64, f->name, v->num,
                               f->min, f->max);
        return 0;
    }
    if (!v->str && v->len > 0)
        return ss_verr_set(err, SS_EINVAL, f->name, "%s: no text", f->name);
    switch (f->type) {
    case SS_FT_STRING:
    case SS_FT_TEXT:
        if (v->len > (uint64_t)f->max)
            return ss_verr_set(err, SS_ETOOLONG, f->name, "%s: %zu bytes, at most %" PRId64,
                               f->name, v->len, f->max);
        if (v->len < (uint64_t)f->min)
            return ss_verr_set(err, v->len == 0 ? SS_EMISSING : SS_ERANGE, f->name,
                               "%s: %zu bytes, at least %" PRId64, f->name, v->len, f->min);
        rc = check_text(v->str, v->len, f->type == SS_FT_TEXT, &at);
        if (rc == SS_EUTF8)
            return ss_verr_set(err, rc, f->name, "%s: invalid UTF-8 at byte %zu", f->name, at);
        if (rc == SS_ENUL)
            return ss_verr_set(err, rc, f->name, "%s: NUL character at byte %zu", f->name, at);
        if (rc < 0)
            return ss_verr_set(err, rc, f->name, "%s: control character 0x%02x at byte %zu%s",
                               f->name, (unsigned char)v->str[at], at,
                               f->type == SS_FT_STRING ? " (one line only)" : "");
        return 0;
    case SS_FT_ENUM:
        for (int i = 0; f->enums[i]; i++) {
            if (name_eq(f->enums[i], v->str ? v->str : "", v->len))
                return 0;
        }
        {
            char list[112];
            enum_list(f, list, sizeof(list));
            return ss_verr_set(err, SS_EENUM, f->name, "%s: \"%s\" is not one of %s", f->name,
                               show(v->str, v->len, shown, 24), list);
        }
    case SS_FT_TIME:
        return check_time(f, v->str ? v->str : "", v->len, err);
    case SS_FT_INT:
        break;
    }
    return ss_verr_set(err, SS_EINTERNAL, f->name, "%s: unknown field type", f->name);
}

/* ---- Keys. */

int ss_key_check(const char *s, size_t len)
{
    if (!s || len == 0 || len > SS_KEY_MAX)
        return SS_EID;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return SS_EID;
    }
    return 0;
}

int ss_incident_key(char *out, size_t cap, const char *node, ss_hlc_t hlc)
{
    char hex[SS_HLC_TEXT_LEN + 1];
    int n;

    if (ss_id_check_str(node) < 0)
        return SS_EID;
    if (!out || cap == 0)
        return SS_ENOSPC;
    ss_hlc_format(hlc, hex, sizeof(hex));
    /* Unique because a node never issues the same HLC twice; ordered in time
     * per node because the hex is fixed-width. */
    n = snprintf(out, cap, "%s-%s", node, hex);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return SS_ENOSPC;
    }
    return n;
}

/* ---- Whole changes. */

int ss_change_validate(const ss_change *ch, ss_verr *err)
{
    size_t klen, slen;
    int rc;

    if (!ch)
        return ss_verr_set(err, SS_EINVAL, "", "no change");
    if (ch->seq == 0 || ch->seq > SS_SEQ_MAX)
        return ss_verr_set(err, SS_ESEQ, "seq", "seq: %" PRIu64 " outside 1..2^53-1", ch->seq);
    if (ch->hlc == 0)
        return ss_verr_set(err, SS_ECLOCK, "hlc", "hlc: zero is not a timestamp");
    if (!ch->coll)
        return ss_verr_set(err, SS_EMISSING, "collection", "collection: missing");
    if (!coll_is_ours(ch->coll))
        return ss_verr_set(err, SS_EINVAL, "collection", "collection: not from the schema");
    slen = strnlen(ch->site, sizeof(ch->site));
    if (slen == sizeof(ch->site) || ss_id_check(ch->site, slen) < 0)
        return ss_verr_set(err, SS_EID, "site",
                           "site: must be 1..64 of a-z 0-9 . _ - starting with a-z or 0-9");
    klen = strnlen(ch->key, sizeof(ch->key));
    if (ch->coll->key_is_site) {
        if (klen != slen || memcmp(ch->key, ch->site, slen) != 0)
            return ss_verr_set(err, SS_EID, "key", "key: a %s key must equal the site id",
                               ch->coll->name);
    } else if (klen == sizeof(ch->key) || ss_key_check(ch->key, klen) < 0) {
        return ss_verr_set(err, SS_EID, "key", "key: must be 1..96 of A-Z a-z 0-9 . _ : -");
    }
    if ((int)ch->op < SS_OP_CREATE || (int)ch->op > SS_OP_DELETE)
        return ss_verr_set(err, SS_EINVAL, "op", "op: must be create, update or delete");
    if (ch->nfields < 0 || ch->nfields > SS_SCHEMA_MAX_FIELDS)
        return ss_verr_set(err, SS_ELIMIT, "fields", "fields: more than %d", SS_SCHEMA_MAX_FIELDS);
    if (ch->op == SS_OP_DELETE && ch->nfields > 0)
        return ss_verr_set(err, SS_EINVAL, "fields", "fields: a delete carries no fields");
    if (ch->op != SS_OP_DELETE && ch->nfields == 0)
        return ss_verr_set(err, SS_EMISSING, "fields", "fields: a%s sets at least one field",
                           ch->op == SS_OP_CREATE ? " create" : "n update");
    for (int i = 0; i < ch->nfields; i++) {
        const ss_field_def *f = ch->fields[i].def;
        if (!f || !field_is_of(ch->coll, f))
            return ss_verr_set(err, SS_EUNKNOWNFIELD, f && f->name ? f->name : "",
                               "fields: not a field of %s", ch->coll->name);
        for (int j = 0; j < i; j++) {
            if (ch->fields[j].def == f)
                return ss_verr_set(err, SS_EDUPKEY, f->name, "%s: set twice", f->name);
        }
        rc = check_value(f, &ch->fields[i].v, err);
        if (rc < 0)
            return rc;
    }
    if (ch->op == SS_OP_CREATE) {
        for (int k = 0; k < ch->coll->nfields; k++) {
            const ss_field_def *f = &ch->coll->fields[k];
            int present = 0;
            if (!f->required)
                continue;
            for (int i = 0; i < ch->nfields; i++)
                present |= ch->fields[i].def == f;
            /* A null required field was already refused by check_value. */
            if (!present)
                return ss_verr_set(err, SS_EMISSING, f->name, "%s: required in a create", f->name);
        }
    }
    if (err)
        ss_verr_set(err, 0, "", "ok");
    return 0;
}

/* Strict integer text: optional sign, decimal digits, nothing else (no
 * spaces, no hex, no trailing garbage). */
static int parse_int(const ss_field_def *f, const char *value, int64_t *out, ss_verr *err)
{
    char shown[32];
    char *end = NULL;
    long long v;

    if (!((value[0] >= '0' && value[0] <= '9') || value[0] == '-' || value[0] == '+'))
        goto bad;
    errno = 0;
    v = strtoll(value, &end, 10);
    if (end == value || *end != '\0')
        goto bad;
    if (errno == ERANGE)
        return ss_verr_set(err, SS_ERANGE, f->name, "%s: %s outside %" PRId64 "..%" PRId64, f->name,
                           show(value, strlen(value), shown, sizeof(shown)), f->min, f->max);
    *out = (int64_t)v;
    return 0;
bad:
    return ss_verr_set(err, SS_EFIELDTYPE, f->name, "%s: \"%s\" is not an integer", f->name,
                       show(value, strlen(value), shown, sizeof(shown)));
}

int ss_change_set_text(ss_change *ch, const char *field, const char *value, ss_verr *err)
{
    const ss_field_def *f;
    ss_value v;
    int rc;

    if (!ch || !ch->coll || !coll_is_ours(ch->coll))
        return ss_verr_set(err, SS_EINVAL, field, "set the collection before its fields");
    if (!field)
        return ss_verr_set(err, SS_EINVAL, "", "no field name");
    f = ss_schema_field(ch->coll, field, strlen(field));
    if (!f) {
        char shown[40];
        return ss_verr_set(err, SS_EUNKNOWNFIELD, field, "%s: not a field of %s",
                           show(field, strlen(field), shown, sizeof(shown)), ch->coll->name);
    }
    if (!value)
        return ss_verr_set(err, SS_EINVAL, f->name, "%s: no value", f->name);
    for (int i = 0; i < ch->nfields; i++) {
        if (ch->fields[i].def == f)
            return ss_verr_set(err, SS_EDUPKEY, f->name, "%s: set twice", f->name);
    }
    if (ch->nfields < 0 || ch->nfields >= SS_SCHEMA_MAX_FIELDS)
        return ss_verr_set(err, SS_ELIMIT, f->name, "%s: more than %d fields", f->name,
                           SS_SCHEMA_MAX_FIELDS);
    memset(&v, 0, sizeof(v));
    if (strcmp(value, "null") == 0) {
        v.is_null = 1;
    } else if (f->type == SS_FT_INT) {
        rc = parse_int(f, value, &v.num, err);
        if (rc < 0)
            return rc;
    } else {
        v.str = value;
        v.len = strlen(value);
    }
    rc = check_value(f, &v, err);
    if (rc < 0)
        return rc;
    ch->fields[ch->nfields].def = f;
    ch->fields[ch->nfields].v = v;
    ch->nfields++;
    return 0;
}

/* ---- JSON. */

/* Like ss_json_put_string: succeeds only with room for the NUL as well, so a
 * successful encoding is always a C string. */
static int put_raw(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    if (*pos >= cap || cap - *pos <= len)
        return SS_ENOSPC;
    memcpy(out + *pos, s, len);
    *pos += len;
    out[*pos] = '\0';
    return 0;
}

static int put_str(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    return ss_json_put_string(out, cap, pos, s ? s : "", s ? len : 0);
}

int ss_change_encode(const ss_change *ch, char *out, size_t cap)
{
    char num[32], hex[SS_HLC_TEXT_LEN + 1];
    size_t pos = 0;
    int rc, n;

    if (!ch || !ch->coll || (int)ch->op < SS_OP_CREATE || (int)ch->op > SS_OP_DELETE ||
        ch->nfields < 0 || ch->nfields > SS_SCHEMA_MAX_FIELDS)
        return SS_EINVAL;
    if (!out || cap == 0)
        return SS_ENOSPC;
    out[0] = '\0';
    ss_hlc_format(ch->hlc, hex, sizeof(hex));
    n = snprintf(num, sizeof(num), "%" PRIu64, ch->seq);
    if ((rc = put_raw(out, cap, &pos, "{\"seq\":", 7)) < 0 ||
        (rc = put_raw(out, cap, &pos, num, (size_t)n)) < 0 ||
        (rc = put_raw(out, cap, &pos, ",\"hlc\":\"", 8)) < 0 ||
        (rc = put_raw(out, cap, &pos, hex, SS_HLC_TEXT_LEN)) < 0 ||
        (rc = put_raw(out, cap, &pos, "\",\"collection\":", 15)) < 0 ||
        (rc = put_str(out, cap, &pos, ch->coll->name, strlen(ch->coll->name))) < 0 ||
        (rc = put_raw(out, cap, &pos, ",\"key\":", 7)) < 0 ||
        (rc = put_str(out, cap, &pos, ch->key, strnlen(ch->key, sizeof(ch->key)))) < 0 ||
        (rc = put_raw(out, cap, &pos, ",\"site\":", 8)) < 0 ||
        (rc = put_str(out, cap, &pos, ch->site, strnlen(ch->site, sizeof(ch->site)))) < 0 ||
        (rc = put_raw(out, cap, &pos, ",\"op\":", 6)) < 0 ||
        (rc = put_str(out, cap, &pos, ss_op_name(ch->op), strlen(ss_op_name(ch->op)))) < 0 ||
        (rc = put_raw(out, cap, &pos, ",\"fields\":{", 11)) < 0)
        return rc;
    for (int i = 0; i < ch->nfields; i++) {
        const ss_fieldval *fv = &ch->fields[i];
        if (!fv->def)
            return SS_EINVAL;
        if ((i > 0 && (rc = put_raw(out, cap, &pos, ",", 1)) < 0) ||
            (rc = put_str(out, cap, &pos, fv->def->name, strlen(fv->def->name))) < 0 ||
            (rc = put_raw(out, cap, &pos, ":", 1)) < 0)
            return rc;
        if (fv->v.is_null) {
            rc = put_raw(out, cap, &pos, "null", 4);
        } else if (fv->def->type == SS_FT_INT) {
            n = snprintf(num, sizeof(num), "%" PRId64, fv->v.num);
            rc = put_raw(out, cap, &pos, num, (size_t)n);
        } else {
            rc = put_str(out, cap, &pos, fv->v.str, fv->v.len);
        }
        if (rc < 0)
            return rc;
    }
    if ((rc = put_raw(out, cap, &pos, "}}", 2)) < 0)
        return rc;
    if (pos > (size_t)INT32_MAX)
        return SS_ENOSPC;
    return (int)pos;
}

/* Records the first decoding error and keeps going, so that the change is
 * filled as far as possible (the daemon audits what a refused change said). */
static void note(ss_verr *first, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note(ss_verr *first, int code, const char *field, const char *fmt, ...)
{
    char msg[sizeof(first->msg)];
    va_list ap;

    if (first->code != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ss_verr_set(first, code, field, "%s", msg);
}

static const char *const top_members[] = { "seq",  "hlc", "collection", "key",
                                           "site", "op",  "fields",     NULL };

/* Looks up a top-level member, noting a missing one or one of the wrong kind. */
static const cJSON *member(const cJSON *obj, const char *name, int want_string, ss_verr *first)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!it) {
        note(first, SS_EMISSING, name, "%s: missing", name);
        return NULL;
    }
    if (want_string && !cJSON_IsString(it)) {
        note(first, SS_EFIELDTYPE, name, "%s: must be a string", name);
        return NULL;
    }
    return it;
}

/* 2^53: every integer below it is exact in a double. */
#define EXACT_LIMIT 9007199254740992.0

static void decode_field(const ss_field_def *f, const cJSON *it, ss_change *ch, ss_verr *first)
{
    ss_value v;

    memset(&v, 0, sizeof(v));
    if (cJSON_IsNull(it)) {
        v.is_null = 1;
    } else if (f->type == SS_FT_INT) {
        double d;
        if (!cJSON_IsNumber(it)) {
            note(first, SS_EFIELDTYPE, f->name, "%s: must be an integer", f->name);
            return;
        }
        d = it->valuedouble;
        if (!(d > -EXACT_LIMIT && d < EXACT_LIMIT)) { /* also NaN and infinities */
            note(first, SS_ERANGE, f->name, "%s: outside %" PRId64 "..%" PRId64, f->name, f->min,
                 f->max);
            return;
        }
        if (d != (double)(int64_t)d) {
            note(first, SS_EFIELDTYPE, f->name, "%s: must be an integer", f->name);
            return;
        }
        v.num = (int64_t)d;
    } else {
        if (!cJSON_IsString(it) || !it->valuestring) {
            note(first, SS_EFIELDTYPE, f->name, "%s: must be a string", f->name);
            return;
        }
        v.str = it->valuestring;
        v.len = strlen(it->valuestring);
    }
    ch->fields[ch->nfields].def = f;
    ch->fields[ch->nfields].v = v;
    ch->nfields++;
}

int ss__change_from_json(const cJSON *obj, ss_change *ch, ss_verr *err)
{
    ss_verr first;
    const cJSON *it, *m;
    int seen[7] = { 0 };
    size_t len;
    int rc;

    memset(ch, 0, sizeof(*ch));
    memset(&first, 0, sizeof(first));
    if (!cJSON_IsObject(obj))
        return ss_verr_set(err, SS_EFIELDTYPE, "", "a change must be a JSON object");

    cJSON_ArrayForEach(m, obj)
    {
        int k;
        for (k = 0; top_members[k]; k++) {
            if (m->string && strcmp(m->string, top_members[k]) == 0)
                break;
        }
        if (!top_members[k]) {
            char shown[40];
            const char *nm = m->string ? m->string : "";
            note(&first, SS_EUNKNOWNFIELD, nm, "%s: not a member of a change",
                 show(nm, strlen(nm), shown, sizeof(shown)));
            continue;
        }
        /* ss_json_parse refuses duplicate keys; a tree built another way
         * must not smuggle in a second value that the getter would hide. */
        if (seen[k]++)
            note(&first, SS_EDUPKEY, top_members[k], "%s: given twice", top_members[k]);
    }

    if ((it = member(obj, "seq", 0, &first)) != NULL) {
        if (!cJSON_IsNumber(it))
            note(&first, SS_EFIELDTYPE, "seq", "seq: must be an integer");
        else if (!(it->valuedouble >= 1 && it->valuedouble < EXACT_LIMIT))
            note(&first, SS_ESEQ, "seq", "seq: outside 1..2^53-1");
        else if (it->valuedouble != (double)(uint64_t)it->valuedouble)
            note(&first, SS_EFIELDTYPE, "seq", "seq: must be an integer");
        else
            ch->seq = (uint64_t)it->valuedouble;
    }
    if ((it = member(obj, "hlc", 0, &first)) != NULL) {
        if (!cJSON_IsString(it) || !it->valuestring)
            note(&first, SS_EFIELDTYPE, "hlc", "hlc: must be a string of 16 hex digits");
        else if (ss_hlc_parse(it->valuestring, strlen(it->valuestring), &ch->hlc) < 0)
            note(&first, SS_EINVAL, "hlc", "hlc: must be 16 hex digits");
    }
    if ((it = member(obj, "collection", 1, &first)) != NULL) {
        len = strlen(it->valuestring);
        ch->coll = ss_schema_collection(it->valuestring, len);
        if (!ch->coll) {
            char shown[32];
            note(&first, SS_EENUM, "collection",
                 "collection: \"%s\" is not one of site_status|incident",
                 show(it->valuestring, len, shown, sizeof(shown)));
        }
    }
    if ((it = member(obj, "key", 1, &first)) != NULL) {
        len = strlen(it->valuestring);
        if (len > SS_KEY_MAX) {
            note(&first, SS_ETOOLONG, "key", "key: %zu bytes, at most %d", len, SS_KEY_MAX);
        } else {
            memcpy(ch->key, it->valuestring, len);
            ch->key[len] = '\0';
        }
    }
    if ((it = member(obj, "site", 1, &first)) != NULL) {
        len = strlen(it->valuestring);
        if (len > SS_ID_MAX) {
            note(&first, SS_EID, "site", "site: %zu bytes, at most %d", len, SS_ID_MAX);
        } else {
            memcpy(ch->site, it->valuestring, len);
            ch->site[len] = '\0';
        }
    }
    if ((it = member(obj, "op", 1, &first)) != NULL) {
        rc = ss_op_parse(it->valuestring, strlen(it->valuestring));
        if (rc < 0) {
            char shown[32];
            note(&first, SS_EENUM, "op", "op: \"%s\" is not one of create|update|delete",
                 show(it->valuestring, strlen(it->valuestring), shown, sizeof(shown)));
        } else {
            ch->op = (ss_op)rc;
        }
    }
    if ((it = member(obj, "fields", 0, &first)) != NULL) {
        if (!cJSON_IsObject(it)) {
            note(&first, SS_EFIELDTYPE, "fields", "fields: must be an object");
        } else if (ch->coll) {
            cJSON_ArrayForEach(m, it)
            {
                const char *name = m->string ? m->string : "";
                const ss_field_def *f = ss_schema_field(ch->coll, name, strlen(name));
                if (!f) {
                    char shown[40];
                    note(&first, SS_EUNKNOWNFIELD, name, "%s: not a field of %s",
                         show(name, strlen(name), shown, sizeof(shown)), ch->coll->name);
                    continue;
                }
                if (ch->nfields >= SS_SCHEMA_MAX_FIELDS) {
                    note(&first, SS_ELIMIT, "fields", "fields: more than %d", SS_SCHEMA_MAX_FIELDS);
                    break;
                }
                decode_field(f, m, ch, &first);
            }
        }
    }
    if (first.code != 0) {
        if (err)
            *err = first;
        return first.code;
    }
    return ss_change_validate(ch, err);
}
