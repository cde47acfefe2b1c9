/* msg.c - strict decoding and compact encoding of the JSON control messages
 * (HELLO, WELCOME, ACK, ERROR, PING, PONG, BYE). docs/protocol.md describes
 * the same fields; the two must change together. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "proto/json.h"
#include "proto/msg.h"
#include "internal.h"

/* Longest wire error name we hold while decoding; a longer one is not a name
 * this build knows, but it is still refused as too long rather than mapped. */
#define CODE_NAME_MAX 48

/* --- decoding ------------------------------------------------------------ */

static const char *const hello_keys[] = { "proto",    "node",    "role", "max_frame",
                                          "software", "origins", NULL };
static const char *const welcome_keys[] = { "proto",  "node",      "time", "max_frame",
                                            "window", "committed", NULL };
static const char *const ack_keys[] = { "acks", "rejected", NULL };
static const char *const oseq_keys[] = { "origin", "seq", NULL };
static const char *const reject_keys[] = { "origin", "seq", "code", "field", "message", NULL };
static const char *const error_keys[] = { "code",   "message", "origin", "seq",
                                          "resume", "field",   NULL };
static const char *const ping_keys[] = { "nonce", NULL };
static const char *const bye_keys[] = { "reason", NULL };

/* The array member `name` with 0..max elements: *arr gets it (NULL when
 * absent and optional). */
static int get_array(const cJSON *obj, const char *name, int required, int max, const cJSON **arr,
                     int *n, ss_verr *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

    *arr = NULL;
    *n = 0;
    if (it == NULL) {
        if (required)
            return ss_verr_set(err, SS_EMISSING, name, "\"%s\" is required", name);
        return 0;
    }
    if (!cJSON_IsArray(it))
        return ss_verr_set(err, SS_EFIELDTYPE, name, "\"%s\" must be an array", name);
    int count = 0;
    for (const cJSON *c = it->child; c; c = c->next) {
        if (++count > max)
            return ss_verr_set(err, SS_EOVERSIZE, name, "\"%s\" has more than %d entries", name,
                               max);
    }
    *arr = it;
    *n = count;
    return 0;
}

static int get_object(const cJSON *it, const char *list, const char *const *keys, ss_verr *err)
{
    if (!cJSON_IsObject(it))
        return ss_verr_set(err, SS_EFIELDTYPE, list, "entries of \"%s\" must be objects", list);
    return ss__json_only(it, keys, err);
}

/* An origin may appear once per list: two entries for one origin would
 * contradict each other. n is at most SS_MSG_MAX_* so n^2/2 compares of short
 * ids stay cheap. */
static int check_unique(const ss_oseq *v, int n, const char *list, ss_verr *err)
{
    for (int i = 1; i < n; i++) {
        for (int j = 0; j < i; j++) {
            if (strcmp(v[i].origin, v[j].origin) == 0)
                return ss_verr_set(err, SS_EPROTO, list, "origin \"%s\" listed twice in \"%s\"",
                                   v[i].origin, list);
        }
    }
    return 0;
}

/* Decodes a list of {"origin","seq"} with seq in [min_seq, SS_SEQ_MAX]. */
static int get_oseq_list(const cJSON *obj, const char *name, int required, int max,
                         uint64_t min_seq, ss_oseq **out, int *nout, ss_verr *err)
{
    const cJSON *arr;
    int n, rc, i = 0;

    rc = get_array(obj, name, required, max, &arr, &n, err);
    if (rc < 0 || n == 0)
        return rc;
    ss_oseq *v = ss_malloc((size_t)n * sizeof(*v));
    if (v == NULL)
        return ss_verr_set(err, SS_ENOMEM, name, "no memory for \"%s\"", name);
    memset(v, 0, (size_t)n * sizeof(*v));
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        rc = get_object(c, name, oseq_keys, err);
        if (rc == 0)
            rc = ss__json_get_id(c, "origin", 1, v[i].origin, err);
        if (rc == 0)
            rc = ss__json_get_u64(c, "seq", 1, min_seq, SS_SEQ_MAX, &v[i].seq, err);
        if (rc < 0)
            goto fail;
    }
    rc = check_unique(v, n, name, err);
    if (rc < 0)
        goto fail;
    *out = v;
    *nout = n;
    return 0;
fail:
    ss_free(v);
    return rc;
}

static int get_code(const cJSON *obj, int *code, ss_verr *err)
{
    char name[CODE_NAME_MAX];
    int rc = ss__json_get_str(obj, "code", 1, name, sizeof(name), err);
    if (rc < 0)
        return rc;
    /* Names this build does not know become SS_EPROTO (err.h), so a newer
     * peer's error is still understood as an error. */
    int c = ss_err_from_name(name);
    if (c == 0)
        return ss_verr_set(err, SS_EENUM, "code", "\"code\" must name an error, not \"ok\"");
    *code = c;
    return 0;
}

static int get_proto(const cJSON *root, uint32_t *proto, ss_verr *err)
{
    uint64_t v = 0;
    int rc = ss__json_get_u64(root, "proto", 1, 0, UINT32_MAX, &v, err);
    if (rc < 0)
        return rc;
    if (v != SS_PROTO_VERSION)
        return ss_verr_set(err, SS_EVERSION, "proto",
                           "protocol version %" PRIu64 " not supported (this build speaks %d)", v,
                           SS_PROTO_VERSION);
    *proto = (uint32_t)v;
    return 0;
}

static int get_u32(const cJSON *obj, const char *name, uint64_t min, uint64_t max, uint32_t *out,
                   ss_verr *err)
{
    uint64_t v = 0;
    int rc = ss__json_get_u64(obj, name, 1, min, max, &v, err);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

static int decode_hello(const cJSON *root, ss_hello *h, ss_verr *err)
{
    char role[16];
    int rc;

    if ((rc = ss__json_only(root, hello_keys, err)) < 0)
        return rc;
    if ((rc = get_proto(root, &h->proto, err)) < 0)
        return rc;
    if ((rc = ss__json_get_id(root, "node", 1, h->node, err)) < 0)
        return rc;
    rc = ss__json_get_str(root, "role", 1, role, sizeof(role), err);
    if (rc == SS_ETOOLONG)
        rc = SS_EENUM;
    if (rc == 0)
        rc = ss_role_parse(role, strlen(role)) < 0 ? SS_EENUM : 0;
    if (rc == SS_EENUM)
        return ss_verr_set(err, SS_EENUM, "role", "\"role\" must be gateway, relay or daemon");
    if (rc < 0)
        return rc;
    h->role = (ss_role)ss_role_parse(role, strlen(role));
    if ((rc = get_u32(root, "max_frame", SS_MSG_MIN_FRAME, SS_FRAME_ABSOLUTE_MAX, &h->max_frame,
                      err)) < 0)
        return rc;
    if ((rc = ss__json_get_str(root, "software", 0, h->software, sizeof(h->software), err)) < 0)
        return rc;

    const cJSON *arr;
    int n, i = 0;
    if ((rc = get_array(root, "origins", 0, SS_MSG_MAX_ORIGINS, &arr, &n, err)) < 0 || n == 0)
        return rc;
    h->origins = ss_malloc((size_t)n * sizeof(*h->origins));
    if (h->origins == NULL)
        return ss_verr_set(err, SS_ENOMEM, "origins", "no memory for \"origins\"");
    memset(h->origins, 0, (size_t)n * sizeof(*h->origins));
    h->norigins = n;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c))
            return ss_verr_set(err, SS_EFIELDTYPE, "origins", "\"origins\" must hold id strings");
        size_t len = strlen(c->valuestring);
        if (ss_id_check(c->valuestring, len) < 0)
            return ss_verr_set(err, SS_EID, "origins", "\"origins\" entry is not a valid id");
        memcpy(h->origins[i].origin, c->valuestring, len + 1);
    }
    return check_unique(h->origins, n, "origins", err);
}

static int decode_welcome(const cJSON *root, ss_welcome *w, ss_verr *err)
{
    char hlc[SS_HLC_TEXT_LEN + 2];
    int rc;

    if ((rc = ss__json_only(root, welcome_keys, err)) < 0)
        return rc;
    if ((rc = get_proto(root, &w->proto, err)) < 0)
        return rc;
    if ((rc = ss__json_get_id(root, "node", 1, w->node, err)) < 0)
        return rc;
    rc = ss__json_get_str(root, "time", 1, hlc, sizeof(hlc), err);
    if (rc == 0 || rc == SS_ETOOLONG) {
        /* HLC stamps exceed 2^53, so they travel as fixed-width hex text. */
        if (rc < 0 || ss_hlc_parse(hlc, strlen(hlc), &w->time) < 0)
            return ss_verr_set(err, SS_EFIELDTYPE, "time",
                               "\"time\" must be an HLC stamp of 16 hex digits");
    }
    if (rc < 0)
        return rc;
    if ((rc = get_u32(root, "max_frame", SS_MSG_MIN_FRAME, SS_FRAME_ABSOLUTE_MAX, &w->max_frame,
                      err)) < 0)
        return rc;
    if ((rc = get_u32(root, "window", 1, SS_MSG_MAX_WINDOW, &w->window, err)) < 0)
        return rc;
    return get_oseq_list(root, "committed", 1, SS_MSG_MAX_ORIGINS, 0, &w->committed, &w->ncommitted,
                         err);
}

static int decode_ack(const cJSON *root, ss_ack *a, ss_verr *err)
{
    const cJSON *arr;
    int rc, n, i = 0;

    if ((rc = ss__json_only(root, ack_keys, err)) < 0)
        return rc;
    if ((rc = get_oseq_list(root, "acks", 1, SS_MSG_MAX_ACKS, 1, &a->acks, &a->nacks, err)) < 0)
        return rc;
    if ((rc = get_array(root, "rejected", 0, SS_MSG_MAX_REJECTS, &arr, &n, err)) < 0 || n == 0)
        return rc;
    a->rejects = ss_malloc((size_t)n * sizeof(*a->rejects));
    if (a->rejects == NULL)
        return ss_verr_set(err, SS_ENOMEM, "rejected", "no memory for \"rejected\"");
    memset(a->rejects, 0, (size_t)n * sizeof(*a->rejects));
    a->nrejects = n;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        ss_reject *r = &a->rejects[i];
        if ((rc = get_object(c, "rejected", reject_keys, err)) < 0 ||
            (rc = ss__json_get_id(c, "origin", 1, r->origin, err)) < 0 ||
            (rc = ss__json_get_u64(c, "seq", 1, 1, SS_SEQ_MAX, &r->seq, err)) < 0 ||
            (rc = get_code(c, &r->code, err)) < 0 ||
            (rc = ss__json_get_str(c, "field", 0, r->field, sizeof(r->field), err)) < 0 ||
            (rc = ss__json_get_str(c, "message", 1, r->message, sizeof(r->message), err)) < 0)
            return rc;
    }
    return 0;
}

static int decode_error(const cJSON *root, ss_error *e, ss_verr *err)
{
    int rc;

    if ((rc = ss__json_only(root, error_keys, err)) < 0 ||
        (rc = get_code(root, &e->code, err)) < 0 ||
        (rc = ss__json_get_str(root, "message", 1, e->message, sizeof(e->message), err)) < 0 ||
        (rc = ss__json_get_id(root, "origin", 0, e->origin, err)) < 0 ||
        (rc = ss__json_get_u64(root, "seq", 0, 1, SS_SEQ_MAX, &e->seq, err)) < 0 ||
        (rc = ss__json_get_u64(root, "resume", 0, 1, SS_SEQ_MAX, &e->resume, err)) < 0 ||
        (rc = ss__json_get_str(root, "field", 0, e->field, sizeof(e->field), err)) < 0)
        return rc;
    return 0;
}

int ss_msg_decode(int type, const uint8_t *payload, size_t len, ss_msg *out, ss_verr *err)
{
    cJSON *root = NULL;
    int rc;

    if (out == NULL)
        return ss_verr_set(err, SS_EINVAL, "", "no output message");
    memset(out, 0, sizeof(*out));
    switch (type) {
    case SS_FRAME_HELLO:
    case SS_FRAME_WELCOME:
    case SS_FRAME_ACK:
    case SS_FRAME_ERROR:
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
    case SS_FRAME_BYE:
        break;
    default:
        /* BATCH is binary (envelope.h); anything else is not a message. */
        return ss_verr_set(err, SS_ETYPE, "", "frame type %d is not a JSON message", type);
    }
    rc = ss_json_parse(payload, len, SS_JSON_MAX_DEPTH, &root, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsObject(root)) {
        rc = ss_verr_set(err, SS_EFIELDTYPE, "", "%s payload must be a JSON object",
                         ss_frame_type_name(type));
        goto exit;
    }
    out->type = type;
    switch (type) {
    case SS_FRAME_HELLO:
        rc = decode_hello(root, &out->u.hello, err);
        break;
    case SS_FRAME_WELCOME:
        rc = decode_welcome(root, &out->u.welcome, err);
        break;
    case SS_FRAME_ACK:
        rc = decode_ack(root, &out->u.ack, err);
        break;
    case SS_FRAME_ERROR:
        rc = decode_error(root, &out->u.error, err);
        break;
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
        rc = ss__json_only(root, ping_keys, err);
        if (rc == 0)
            rc = ss__json_get_u64(root, "nonce", 1, 0, SS_SEQ_MAX, &out->u.ping.nonce, err);
        break;
    default: /* SS_FRAME_BYE */
        rc = ss__json_only(root, bye_keys, err);
        if (rc == 0)
            rc = ss__json_get_str(root, "reason", 0, out->u.bye.reason, sizeof(out->u.bye.reason),
                                  err);
        break;
    }
exit:
    cJSON_Delete(root);
    if (rc < 0) {
        /* Never hand back half a message. */
        ss_msg_free(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

void ss_msg_free(ss_msg *m)
{
    if (m == NULL)
        return;
    switch (m->type) {
    case SS_FRAME_HELLO:
        ss_free(m->u.hello.origins);
        m->u.hello.origins = NULL;
        m->u.hello.norigins = 0;
        break;
    case SS_FRAME_WELCOME:
        ss_free(m->u.welcome.committed);
        m->u.welcome.committed = NULL;
        m->u.welcome.ncommitted = 0;
        break;
    case SS_FRAME_ACK:
        ss_free(m->u.ack.acks);
        m->u.ack.acks = NULL;
        m->u.ack.nacks = 0;
        ss_free(m->u.ack.rejects);
        m->u.ack.rejects = NULL;
        m->u.ack.nrejects = 0;
        break;
    default:
        break;
    }
}

/* --- encoding ------------------------------------------------------------ */

/* Output cursor. Errors are sticky so the encoders can write a whole message
 * and check once. Raw writes need no spare byte; ss_json_put_string needs one
 * for its NUL, which the closing '}' that always follows a string uses. */
typedef struct wbuf {
    char *out;
    size_t cap;
    size_t pos;
    int rc;
} wbuf;

static void w_raw(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    if (w->rc < 0)
        return;
    if (w->cap - w->pos < n) {
        w->rc = SS_ENOSPC;
        return;
    }
    memcpy(w->out + w->pos, s, n);
    w->pos += n;
}

static void w_u64(wbuf *w, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    w_raw(w, num);
}

static void w_str(wbuf *w, const char *s)
{
    if (w->rc < 0)
        return;
    int rc = ss_json_put_string(w->out, w->cap, &w->pos, s, strlen(s));
    if (rc < 0)
        w->rc = rc;
}

/* 1 if a char[cap] text field is NUL-terminated within its array. */
static int text_ok(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int id_ok(const char *s)
{
    return ss_id_check_str(s) == 0;
}

static int oseq_list_ok(const ss_oseq *v, int n, int max, uint64_t min_seq)
{
    if (n < 0 || n > max || (n > 0 && v == NULL))
        return 0;
    for (int i = 0; i < n; i++) {
        if (!id_ok(v[i].origin) || v[i].seq < min_seq || v[i].seq > SS_SEQ_MAX)
            return 0;
        for (int j = 0; j < i; j++) {
            if (strcmp(v[i].origin, v[j].origin) == 0)
                return 0;
        }
    }
    return 1;
}

static void w_oseq_list(wbuf *w, const ss_oseq *v, int n)
{
    w_raw(w, "[");
    for (int i = 0; i < n; i++) {
        w_raw(w, i ? ",{\"origin\":" : "{\"origin\":");
        w_str(w, v[i].origin);
        w_raw(w, ",\"seq\":");
        w_u64(w, v[i].seq);
        w_raw(w, "}");
    }
    w_raw(w, "]");
}

static int code_ok(int code)
{
    return code < 0 && strcmp(ss_err_name(code), "unknown") != 0;
}

static int encode_hello(wbuf *w, const ss_hello *h)
{
    if (h->proto != SS_PROTO_VERSION || !id_ok(h->node) ||
        (h->role != SS_ROLE_GATEWAY && h->role != SS_ROLE_RELAY && h->role != SS_ROLE_DAEMON) ||
        h->max_frame < SS_MSG_MIN_FRAME || h->max_frame > SS_FRAME_ABSOLUTE_MAX ||
        !text_ok(h->software, sizeof(h->software)) ||
        !oseq_list_ok(h->origins, h->norigins, SS_MSG_MAX_ORIGINS, 0))
        return SS_EINVAL;
    w_raw(w, "{\"proto\":");
    w_u64(w, h->proto);
    w_raw(w, ",\"node\":");
    w_str(w, h->node);
    w_raw(w, ",\"role\":");
    w_str(w, ss_role_name(h->role));
    w_raw(w, ",\"max_frame\":");
    w_u64(w, h->max_frame);
    if (h->software[0] != '\0') {
        w_raw(w, ",\"software\":");
        w_str(w, h->software);
    }
    if (h->norigins > 0) {
        w_raw(w, ",\"origins\":[");
        for (int i = 0; i < h->norigins; i++) {
            if (i)
                w_raw(w, ",");
            w_str(w, h->origins[i].origin);
        }
        w_raw(w, "]");
    }
    w_raw(w, "}");
    return 0;
}

static int encode_welcome(wbuf *w, const ss_welcome *m)
{
    char hlc[SS_HLC_TEXT_LEN + 1];

    if (m->proto != SS_PROTO_VERSION || !id_ok(m->node) || m->max_frame < SS_MSG_MIN_FRAME ||
        m->max_frame > SS_FRAME_ABSOLUTE_MAX || m->window < 1 || m->window > SS_MSG_MAX_WINDOW ||
        !oseq_list_ok(m->committed, m->ncommitted, SS_MSG_MAX_ORIGINS, 0) ||
        ss_hlc_format(m->time, hlc, sizeof(hlc)) < 0)
        return SS_EINVAL;
    w_raw(w, "{\"proto\":");
    w_u64(w, m->proto);
    w_raw(w, ",\"node\":");
    w_str(w, m->node);
    w_raw(w, ",\"time\":");
    w_str(w, hlc);
    w_raw(w, ",\"max_frame\":");
    w_u64(w, m->max_frame);
    w_raw(w, ",\"window\":");
    w_u64(w, m->window);
    w_raw(w, ",\"committed\":");
    w_oseq_list(w, m->committed, m->ncommitted);
    w_raw(w, "}");
    return 0;
}

static int encode_ack(wbuf *w, const ss_ack *a)
{
    if (!oseq_list_ok(a->acks, a->nacks, SS_MSG_MAX_ACKS, 1) || a->nrejects < 0 ||
        a->nrejects > SS_MSG_MAX_REJECTS || (a->nrejects > 0 && a->rejects == NULL))
        return SS_EINVAL;
    for (int i = 0; i < a->nrejects; i++) {
        const ss_reject *r = &a->rejects[i];
        if (!id_ok(r->origin) || r->seq < 1 || r->seq > SS_SEQ_MAX || !code_ok(r->code) ||
            !text_ok(r->field, sizeof(r->field)) || !text_ok(r->message, sizeof(r->message)))
            return SS_EINVAL;
    }
    w_raw(w, "{\"acks\":");
    w_oseq_list(w, a->acks, a->nacks);
    if (a->nrejects > 0) {
        w_raw(w, ",\"rejected\":[");
        for (int i = 0; i < a->nrejects; i++) {
            const ss_reject *r = &a->rejects[i];
            w_raw(w, i ? ",{\"origin\":" : "{\"origin\":");
            w_str(w, r->origin);
            w_raw(w, ",\"seq\":");
            w_u64(w, r->seq);
            w_raw(w, ",\"code\":");
            w_str(w, ss_err_name(r->code));
            if (r->field[0] != '\0') {
                w_raw(w, ",\"field\":");
                w_str(w, r->field);
            }
            w_raw(w, ",\"message\":");
            w_str(w, r->message);
            w_raw(w, "}");
        }
        w_raw(w, "]");
    }
    w_raw(w, "}");
    return 0;
}

static int encode_error(wbuf *w, const ss_error *e)
{
    if (!code_ok(e->code) || !text_ok(e->message, sizeof(e->message)) ||
        !text_ok(e->origin, sizeof(e->origin)) || (e->origin[0] != '\0' && !id_ok(e->origin)) ||
        e->seq > SS_SEQ_MAX || e->resume > SS_SEQ_MAX || !text_ok(e->field, sizeof(e->field)))
        return SS_EINVAL;
    w_raw(w, "{\"code\":");
    w_str(w, ss_err_name(e->code));
    w_raw(w, ",\"message\":");
    w_str(w, e->message);
    if (e->origin[0] != '\0') {
        w_raw(w, ",\"origin\":");
        w_str(w, e->origin);
    }
    /* 0 means "none" for seq and resume: absent on the wire. */
    if (e->seq != 0) {
        w_raw(w, ",\"seq\":");
        w_u64(w, e->seq);
    }
    if (e->resume != 0) {
        w_raw(w, ",\"resume\":");
        w_u64(w, e->resume);
    }
    if (e->field[0] != '\0') {
        w_raw(w, ",\"field\":");
        w_str(w, e->field);
    }
    w_raw(w, "}");
    return 0;
}

int ss_msg_encode(const ss_msg *m, uint8_t *out, size_t cap)
{
    wbuf w = { (char *)out, cap, 0, 0 };
    int rc;

    if (m == NULL || (out == NULL && cap > 0))
        return SS_EINVAL;
    switch (m->type) {
    case SS_FRAME_HELLO:
        rc = encode_hello(&w, &m->u.hello);
        break;
    case SS_FRAME_WELCOME:
        rc = encode_welcome(&w, &m->u.welcome);
        break;
    case SS_FRAME_ACK:
        rc = encode_ack(&w, &m->u.ack);
        break;
    case SS_FRAME_ERROR:
        rc = encode_error(&w, &m->u.error);
        break;
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
        if (m->u.ping.nonce > SS_SEQ_MAX)
            return SS_EINVAL;
        w_raw(&w, "{\"nonce\":");
        w_u64(&w, m->u.ping.nonce);
        w_raw(&w, "}");
        rc = 0;
        break;
    case SS_FRAME_BYE:
        if (!text_ok(m->u.bye.reason, sizeof(m->u.bye.reason)))
            return SS_EINVAL;
        w_raw(&w, "{");
        if (m->u.bye.reason[0] != '\0') {
            w_raw(&w, "\"reason\":");
            w_str(&w, m->u.bye.reason);
        }
        w_raw(&w, "}");
        rc = 0;
        break;
    default:
        return SS_EINVAL;
    }
    if (rc < 0)
        return rc;
    if (w.rc < 0)
        return w.rc;
    if (w.pos > (size_t)INT32_MAX)
        return SS_EOVERSIZE;
    /* Text fields are the caller's bytes: run the peer's own intake check
     * over the result so we never send what we would refuse (bad UTF-8). */
    if (ss_json_precheck(out, w.pos, SS_JSON_MAX_DEPTH) < 0)
        return SS_EINVAL;
    return (int)w.pos;
}

int ss_msg_encode_frame(const ss_msg *m, uint8_t *out, size_t cap)
{
    if (m == NULL || m->type == SS_FRAME_BATCH)
        return SS_EINVAL;
    if (out == NULL || cap < SS_FRAME_HEADER_LEN)
        return SS_ENOSPC;
    int n = ss_msg_encode(m, out + SS_FRAME_HEADER_LEN, cap - SS_FRAME_HEADER_LEN);
    if (n < 0)
        return n;
    int rc = ss_frame_write_header(out, m->type, 0, (uint32_t)n);
    if (rc < 0)
        return rc;
    return (int)SS_FRAME_HEADER_LEN + n;
}
