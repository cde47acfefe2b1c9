/* sd_audit.c - the hash-chained audit log: appends entries whose hash covers
 * the previous entry's hash and the entry's own columns, keeps the chain head
 * in meta, and verifies the chain (against a saved head too, so a truncated
 * tail shows). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/err.h"
#include "proto/hlc.h"
#include "sd/admin.h"
#include "sd_store_internal.h"

/* Canonical serialization of one column: a type tag, then for integers 8
 * bytes big-endian, for text and blobs a 4-byte big-endian length and the
 * bytes. Tagging types means a value cannot be swapped for another of a
 * different type with the same bytes. */
typedef struct ser {
    uint8_t *p;
    size_t len, cap;
} ser;

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void ser_null(ser *w)
{
    w->p[w->len++] = 'N';
}

static void ser_int(ser *w, int64_t v)
{
    uint64_t u = (uint64_t)v;
    w->p[w->len++] = 'I';
    for (int i = 7; i >= 0; i--)
        w->p[w->len++] = (uint8_t)(u >> (8 * i));
}

static void ser_bytes(ser *w, uint8_t tag, const void *b, size_t n)
{
    w->p[w->len++] = tag;
    put_u32(w->p + w->len, (uint32_t)n);
    w->len += 4;
    if (n)
        memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void ser_text(ser *w, const char *t)
{
    if (!t || !t[0])
        ser_null(w);
    else
        ser_bytes(w, 'T', t, strlen(t));
}

/* Room for a serialization: every column's tag and length plus its bytes. */
#define SD_AUDIT_NCOLS 17

static size_t textlen(const char *t)
{
    return t ? strlen(t) : 0;
}

int sd__audit_append(sd_store *s, const sd_audit_entry *e)
{
    size_t need = SD_HASH_LEN + SD_AUDIT_NCOLS * 9 + textlen(e->peer) + textlen(e->fingerprint) +
                  textlen(e->serial) + textlen(e->path) + textlen(e->origin) +
                  textlen(e->collection) + textlen(e->key) + textlen(e->site) + textlen(e->op) +
                  textlen(e->fields) + textlen(e->outcome) + textlen(e->detail) + SD_HASH_LEN;
    ser w = { sd__scratch(s, SD_SCR_AUDIT, need), 0, need };
    if (!w.p)
        return SS_ENOMEM;
    int64_t id = s->head_id + 1;
    memcpy(w.p, s->head_hash, SD_HASH_LEN);
    w.len = SD_HASH_LEN;
    ser_int(&w, id);
    ser_int(&w, e->at_ms);
    ser_text(&w, e->peer);
    ser_text(&w, e->fingerprint);
    ser_text(&w, e->serial);
    ser_text(&w, e->path);
    ser_text(&w, e->origin);
    if (e->seq)
        ser_int(&w, (int64_t)e->seq);
    else
        ser_null(&w);
    ser_text(&w, e->collection);
    ser_text(&w, e->key);
    ser_text(&w, e->site);
    ser_text(&w, e->op);
    ser_text(&w, e->fields);
    if (e->hlc)
        ser_int(&w, (int64_t)e->hlc);
    else
        ser_null(&w);
    ser_text(&w, e->outcome);
    ser_text(&w, e->detail);
    if (e->chash)
        ser_bytes(&w, 'B', e->chash, SD_HASH_LEN);
    else
        ser_null(&w);

    uint8_t hash[SD_HASH_LEN];
    int rc = sd__sha256(s, w.p, w.len, hash);
    if (rc)
        return rc;

    sqlite3_stmt *st = sd__stmt(s, SD_ST_AUDIT_INSERT);
    if (!st)
        return SS_EDB;
    /* Bind exactly what was serialized: empty strings become NULL both
     * here and in ser_text, so verification reads back the same types. */
    const char *texts[] = { e->peer, e->fingerprint, e->serial, e->path, e->origin };
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, e->at_ms);
    for (int i = 0; i < 5; i++) {
        if (texts[i] && texts[i][0])
            sqlite3_bind_text(st, 3 + i, texts[i], -1, SQLITE_STATIC);
    }
    if (e->seq)
        sqlite3_bind_int64(st, 8, (int64_t)e->seq);
    const char *texts2[] = { e->collection, e->key, e->site, e->op, e->fields };
    for (int i = 0; i < 5; i++) {
        if (texts2[i] && texts2[i][0])
            sqlite3_bind_text(st, 9 + i, texts2[i], -1, SQLITE_STATIC);
    }
    if (e->hlc)
        sqlite3_bind_int64(st, 14, (int64_t)e->hlc);
    if (e->outcome && e->outcome[0])
        sqlite3_bind_text(st, 15, e->outcome, -1, SQLITE_STATIC);
    if (e->detail && e->detail[0])
        sqlite3_bind_text(st, 16, e->detail, -1, SQLITE_STATIC);
    if (e->chash)
        sqlite3_bind_blob(st, 17, e->chash, SD_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 18, hash, SD_HASH_LEN, SQLITE_STATIC);
    rc = sd__step_done(s, st, "appending to the audit log");
    if (rc)
        return rc;
    memcpy(s->head_hash, hash, SD_HASH_LEN);
    s->head_id = id;
    s->head_dirty = 1;
    return 0;
}

static int meta_get(sd_store *s, const char *k, sqlite3_stmt **out)
{
    sqlite3_stmt *st = sd__stmt(s, SD_ST_META_GET);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = st;
        return 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sd__db_fail(s, "reading meta");
    return 0;
}

/* Reads the head stored in meta (zero hash and id 0 for an empty log). */
static int read_meta_head(sd_store *s, uint8_t hash[SD_HASH_LEN], int64_t *id)
{
    sqlite3_stmt *st = NULL;
    memset(hash, 0, SD_HASH_LEN);
    *id = 0;
    int rc = meta_get(s, "audit_head_id", &st);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        *id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    rc = meta_get(s, "audit_head_hash", &st);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        int ok =
            sqlite3_column_type(st, 0) == SQLITE_BLOB && sqlite3_column_bytes(st, 0) == SD_HASH_LEN;
        if (ok)
            memcpy(hash, sqlite3_column_blob(st, 0), SD_HASH_LEN);
        sqlite3_reset(st);
        if (!ok) {
            snprintf(s->err, sizeof s->err, "meta audit_head_hash is not a %d-byte hash",
                     SD_HASH_LEN);
            return SS_ECORRUPT;
        }
    }
    return 0;
}

int sd__audit_load_head(sd_store *s)
{
    int rc = read_meta_head(s, s->head_hash, &s->head_id);
    s->head_dirty = 0;
    return rc;
}

int sd__audit_save_head(sd_store *s)
{
    if (!s->head_dirty)
        return 0;
    sqlite3_stmt *st = sd__stmt(s, SD_ST_META_PUT);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, "audit_head_id", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, s->head_id);
    int rc = sd__step_done(s, st, "saving the audit head");
    if (rc)
        return rc;
    st = sd__stmt(s, SD_ST_META_PUT);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, "audit_head_hash", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, s->head_hash, SD_HASH_LEN, SQLITE_STATIC);
    rc = sd__step_done(s, st, "saving the audit head");
    if (rc)
        return rc;
    s->head_dirty = 0;
    return 0;
}

/* ---- heads as text ---------------------------------------------------- */

int sd_audit_head_format(const sd_audit_head *h, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    if (!h || !buf || cap < SD_AUDIT_HEAD_TEXT_MAX)
        return SS_ENOSPC;
    for (int i = 0; i < SD_HASH_LEN; i++) {
        buf[2 * i] = hex[h->hash[i] >> 4];
        buf[2 * i + 1] = hex[h->hash[i] & 15];
    }
    int n = snprintf(buf + 2 * SD_HASH_LEN, cap - 2 * SD_HASH_LEN, ":%lld", (long long)h->id);
    if (n < 0 || (size_t)n >= cap - 2 * SD_HASH_LEN)
        return SS_ENOSPC;
    return 2 * SD_HASH_LEN + n;
}

int sd_audit_head_parse(const char *text, sd_audit_head *h)
{
    if (!text || !h)
        return SS_EINVAL;
    memset(h, 0, sizeof *h);
    if (strlen(text) < 2 * SD_HASH_LEN + 2 || text[2 * SD_HASH_LEN] != ':')
        return SS_EINVAL;
    for (int i = 0; i < SD_HASH_LEN; i++) {
        int a = ss_hex_digit(text[2 * i]), b = ss_hex_digit(text[2 * i + 1]);
        if (a < 0 || b < 0)
            return SS_EINVAL;
        h->hash[i] = (uint8_t)(a << 4 | b);
    }
    const char *p = text + 2 * SD_HASH_LEN + 1;
    int64_t id = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || id > (INT64_MAX - 9) / 10)
            return SS_EINVAL;
        id = id * 10 + (*p - '0');
    }
    if (id <= 0)
        return SS_EINVAL;
    h->id = id;
    return 0;
}

int sd_audit_head_get(sd_store *s, sd_audit_head *h)
{
    if (!s || !h)
        return SS_EINVAL;
    return read_meta_head(s, h->hash, &h->id);
}

/* ---- verification ----------------------------------------------------- */

static void broken(sd_audit_report *r, int64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void broken(sd_audit_report *r, int64_t id, const char *fmt, ...)
{
    va_list ap;
    r->ok = 0;
    r->broken_id = id;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

static int verify_rows(sd_store *s, const sd_audit_head *saved, sd_audit_report *r)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    uint8_t prev[SD_HASH_LEN] = { 0 };
    int64_t prev_id = 0;
    ser w = { NULL, 0, 0 };
    int saved_seen = 0;

    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, at_ms, peer, fingerprint, serial, path, origin, seq,"
                           " collection, key, site, op, fields, hlc, outcome, detail, chash, hash"
                           " FROM audit ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return sd__db_fail(s, "reading the audit log");
    for (;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            rc = sd__db_fail(s, "reading the audit log");
            goto out;
        }
        int64_t id = sqlite3_column_int64(st, 0);
        if (id != prev_id + 1) {
            if (id > prev_id + 1)
                broken(r, prev_id + 1,
                       "entry %lld is missing (the next entry present is %lld): entries were "
                       "deleted",
                       (long long)(prev_id + 1), (long long)id);
            else
                broken(r, id, "entry %lld is out of order after %lld", (long long)id,
                       (long long)prev_id);
            rc = 0;
            goto out;
        }
        /* Types first: sqlite3_column_bytes() on an integer converts it to
         * text, after which sqlite3_column_type() is undefined (and the
         * conversion costs time on every entry). */
        int types[SD_AUDIT_NCOLS];
        size_t need = SD_HASH_LEN;
        for (int c = 0; c < SD_AUDIT_NCOLS; c++) {
            types[c] = sqlite3_column_type(st, c);
            need += 9;
            if (types[c] == SQLITE_TEXT || types[c] == SQLITE_BLOB)
                need += (size_t)sqlite3_column_bytes(st, c);
        }
        w.p = sd__scratch(s, SD_SCR_AUDIT, need);
        if (!w.p) {
            rc = SS_ENOMEM;
            goto out;
        }
        memcpy(w.p, prev, SD_HASH_LEN);
        w.len = SD_HASH_LEN;
        for (int c = 0; c < SD_AUDIT_NCOLS; c++) {
            switch (types[c]) {
            case SQLITE_INTEGER:
                ser_int(&w, sqlite3_column_int64(st, c));
                break;
            case SQLITE_TEXT: {
                const unsigned char *t = sqlite3_column_text(st, c);
                ser_bytes(&w, 'T', t, (size_t)sqlite3_column_bytes(st, c));
                break;
            }
            case SQLITE_BLOB:
                ser_bytes(&w, 'B', sqlite3_column_blob(st, c), (size_t)sqlite3_column_bytes(st, c));
                break;
            case SQLITE_NULL:
                ser_null(&w);
                break;
            default:
                /* A REAL never comes from sd__audit_append: someone edited it. */
                ser_bytes(&w, 'R', "", 0);
                break;
            }
        }
        uint8_t hash[SD_HASH_LEN];
        rc = sd__sha256(s, w.p, w.len, hash);
        if (rc)
            goto out;
        const void *stored = sqlite3_column_blob(st, 17);
        if (sqlite3_column_bytes(st, 17) != SD_HASH_LEN || memcmp(stored, hash, SD_HASH_LEN)) {
            broken(r, id,
                   "entry %lld does not match its hash: it was modified, or entries before it "
                   "were removed, inserted or reordered (previous entry %lld)",
                   (long long)id, (long long)prev_id);
            rc = 0;
            goto out;
        }
        if (saved && saved->id == id) {
            saved_seen = 1;
            if (memcmp(saved->hash, hash, SD_HASH_LEN) != 0) {
                broken(r, id,
                       "entry %lld differs from the saved head: the chain was rewritten up to it",
                       (long long)id);
                rc = 0;
                goto out;
            }
        }
        memcpy(prev, hash, SD_HASH_LEN);
        prev_id = id;
        r->entries++;
    }
    rc = 0;
    memcpy(r->head.hash, prev, SD_HASH_LEN);
    r->head.id = prev_id;
    {
        uint8_t mh[SD_HASH_LEN];
        int64_t mid = 0;
        rc = read_meta_head(s, mh, &mid);
        if (rc)
            goto out;
        if (mid != prev_id || memcmp(mh, prev, SD_HASH_LEN) != 0) {
            if (mid > prev_id)
                broken(r, prev_id + 1,
                       "the recorded chain head is entry %lld but the log ends at %lld: the "
                       "tail was truncated",
                       (long long)mid, (long long)prev_id);
            else if (mid < prev_id)
                broken(r, mid + 1,
                       "entries after %lld (up to %lld) are not covered by the recorded chain "
                       "head: appended outside sitesyncd",
                       (long long)mid, (long long)prev_id);
            else
                broken(r, prev_id, "the recorded chain head does not match entry %lld",
                       (long long)prev_id);
            goto out;
        }
    }
    if (saved && !saved_seen) {
        broken(r, prev_id + 1,
               "the saved head names entry %lld but the log ends at %lld: the tail was "
               "truncated",
               (long long)saved->id, (long long)prev_id);
    }
out:
    sqlite3_finalize(st);
    return rc;
}

int sd_audit_verify(sd_store *s, const sd_audit_head *saved, sd_audit_report *r)
{
    if (!s || !r)
        return SS_EINVAL;
    memset(r, 0, sizeof *r);
    r->ok = 1;
    /* One read transaction: the rows and the head in meta come from the
     * same snapshot even while sitesyncd keeps appending. */
    int own = sqlite3_get_autocommit(s->db);
    if (own && sd__exec(s, "BEGIN") != 0)
        return SS_EDB;
    int rc = verify_rows(s, saved, r);
    if (own)
        sd__exec(s, "COMMIT");
    return rc;
}
