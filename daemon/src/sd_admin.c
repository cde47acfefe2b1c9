/* sd_admin.c - the read-side queries behind sitesync-admin: merged sites and
 * incidents, the audit trail, peers, the loser ledger and sessions, returned
 * as tables of text cells; and the time syntax of the command line. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/hlc.h"
#include "sd/admin.h"
#include "sd_store_internal.h"

#define DEFAULT_LIMIT    1000
#define DEFAULT_STALE_MS INT64_C(3600000)

/* How a result column is turned into text. */
typedef enum conv {
    CV_RAW,  /* text or integer as SQLite gives it */
    CV_TIME, /* Unix ms -> ISO 8601 UTC */
    CV_HLC,  /* hlc integer -> human form */
    CV_BOOL  /* 0/1 -> false/true */
} conv;

typedef struct colspec {
    const char *name;
    sd_col_kind kind;
    unsigned char brief;
    conv cv;
} colspec;

void sd_table_init(sd_table *t)
{
    memset(t, 0, sizeof *t);
}

void sd_table_free(sd_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        ss_free(t->cells[i]);
    ss_free(t->cells);
    ss_free((void *)t->cols);
    ss_free((void *)t->kinds);
    ss_free((void *)t->brief);
    memset(t, 0, sizeof *t);
}

const char *sd_table_cell(const sd_table *t, size_t row, int col)
{
    if (!t || row >= t->nrows || col < 0 || col >= t->ncols)
        return NULL;
    return t->cells[row * (size_t)t->ncols + (size_t)col];
}

static char *dup_text(const char *s, size_t n)
{
    char *p = ss_malloc(n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- times ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): timegm() is not POSIX. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int sd_admin_parse_time(const char *text, int64_t now_ms, int64_t *out_ms)
{
    if (!text || !out_ms || !text[0])
        return SS_EINVAL;
    size_t len = strlen(text);
    /* Age: 90s, 15m, 2h, 7d. */
    char unit = text[len - 1];
    if (len >= 2 && (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd')) {
        int64_t n = 0;
        for (size_t i = 0; i + 1 < len; i++) {
            if (text[i] < '0' || text[i] > '9' || n > INT64_C(1000000000))
                return SS_EINVAL;
            n = n * 10 + (text[i] - '0');
        }
        int64_t mul = unit == 's' ? 1000 : unit == 'm' ? 60000 : unit == 'h' ? 3600000 : 86400000;
        *out_ms = now_ms - n * mul;
        return 0;
    }
    /* Unix seconds. */
    if (strspn(text, "0123456789") == len) {
        if (len > 12)
            return SS_EINVAL;
        *out_ms = (int64_t)strtoll(text, NULL, 10) * 1000;
        return 0;
    }
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (len < 10 || digits(text, 4, &y) || text[4] != '-' || digits(text + 5, 2, &mo) ||
        text[7] != '-' || digits(text + 8, 2, &d))
        return SS_EINVAL;
    if (len > 10) {
        if (len < 20 || text[10] != 'T' || digits(text + 11, 2, &h) || text[13] != ':' ||
            digits(text + 14, 2, &mi) || text[16] != ':' || digits(text + 17, 2, &sec))
            return SS_EINVAL;
        const char *p = text + 19;
        if (*p == '.') {
            if (digits(p + 1, 3, &ms))
                return SS_EINVAL;
            p += 4;
        }
        if (p[0] != 'Z' || p[1] != '\0')
            return SS_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return SS_EINVAL;
    *out_ms =
        (days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec) * 1000 +
        ms;
    return 0;
}

int sd_admin_format_time(int64_t ms, char *buf, size_t cap)
{
    struct tm tm;
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    if (!buf || cap < 25 || !gmtime_r(&secs, &tm))
        return SS_ENOSPC;
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return n > 0 && (size_t)n < cap ? n : SS_ENOSPC;
}

/* ---- the generic query runner ---- */

static int table_add_row(sd_table *t)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **cells = ss_realloc(t->cells, cap * (size_t)t->ncols * sizeof *cells);
        if (!cells)
            return SS_ENOMEM;
        t->cells = cells;
        t->cap = cap;
    }
    memset(&t->cells[t->nrows * (size_t)t->ncols], 0, (size_t)t->ncols * sizeof *t->cells);
    t->nrows++;
    return 0;
}

static char *convert(sqlite3_stmt *st, int c, conv cv)
{
    char buf[64];
    if (sqlite3_column_type(st, c) == SQLITE_NULL)
        return NULL;
    switch (cv) {
    case CV_TIME:
        if (sd_admin_format_time(sqlite3_column_int64(st, c), buf, sizeof buf) < 0)
            return NULL;
        return dup_text(buf, strlen(buf));
    case CV_HLC:
        if (ss_hlc_format_human((ss_hlc_t)sqlite3_column_int64(st, c), buf, sizeof buf) < 0)
            return NULL;
        return dup_text(buf, strlen(buf));
    case CV_BOOL:
        return dup_text(sqlite3_column_int64(st, c) ? "true" : "false",
                        sqlite3_column_int64(st, c) ? 4 : 5);
    case CV_RAW:
    default: {
        const unsigned char *p = sqlite3_column_text(st, c);
        if (!p)
            return NULL;
        return dup_text((const char *)p, (size_t)sqlite3_column_bytes(st, c));
    }
    }
}

typedef struct tabledef {
    int ncols;
    const colspec *cols;
} tabledef;

typedef void (*binder)(sqlite3_stmt *st, const sd_admin_filter *f);

static int run_query(sd_store *s, const tabledef *def, const char *sql, binder bind,
                     const sd_admin_filter *f, sd_table *t)
{
    sqlite3_stmt *st = NULL;
    sd_table_free(t);
    const char **names = ss_malloc((size_t)def->ncols * sizeof *names);
    sd_col_kind *kinds = ss_malloc((size_t)def->ncols * sizeof *kinds);
    unsigned char *brief = ss_malloc((size_t)def->ncols);
    if (!names || !kinds || !brief) {
        ss_free(names);
        ss_free(kinds);
        ss_free(brief);
        return SS_ENOMEM;
    }
    for (int i = 0; i < def->ncols; i++) {
        names[i] = def->cols[i].name;
        kinds[i] = def->cols[i].kind;
        brief[i] = def->cols[i].brief;
    }
    t->ncols = def->ncols;
    t->cols = names;
    t->kinds = kinds;
    t->brief = brief;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sd__db_fail(s, "preparing the query");
    bind(st, f);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (table_add_row(t) != 0) {
            sqlite3_finalize(st);
            return SS_ENOMEM;
        }
        char **row = &t->cells[(t->nrows - 1) * (size_t)t->ncols];
        for (int c = 0; c < def->ncols; c++)
            row[c] = convert(st, c, def->cols[c].cv);
    }
    if (rc != SQLITE_DONE) {
        sd__db_fail(s, "running the query");
        sqlite3_finalize(st);
        return SS_EDB;
    }
    sqlite3_finalize(st);
    return 0;
}

static void bind_opt_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v && v[0])
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int limit_of(const sd_admin_filter *f)
{
    return f && f->limit > 0 ? f->limit : DEFAULT_LIMIT;
}

/* ---- sites ---- */

static const colspec site_cols[] = {
    { "site", SD_COL_TEXT, 1, CV_RAW },         { "alert_level", SD_COL_TEXT, 1, CV_RAW },
    { "last_report", SD_COL_TEXT, 1, CV_TIME }, { "last_seen", SD_COL_TEXT, 1, CV_TIME },
    { "stale", SD_COL_BOOL, 1, CV_BOOL },       { "silent_s", SD_COL_INT, 1, CV_RAW },
    { "last_origin", SD_COL_TEXT, 1, CV_RAW },  { "status", SD_COL_JSON, 0, CV_RAW },
};

static void bind_sites(sqlite3_stmt *st, const sd_admin_filter *f)
{
    sqlite3_bind_int64(st, 1, f->now_ms);
    sqlite3_bind_int64(st, 2, f->stale_after_ms > 0 ? f->stale_after_ms : DEFAULT_STALE_MS);
}

int sd_admin_sites(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 8, site_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    /* last_report: the site's own clock on its newest status change;
     * last_seen: when the daemon last received anything for the site from
     * a peer allowed to speak for it. */
    return run_query(
        s, &def,
        "SELECT s.site, sd_field('site_status', r.state, 'alert_level'), r.max_hlc >> 16,"
        " s.last_seen_ms, (?1 - s.last_seen_ms) > ?2, (?1 - s.last_seen_ms) / 1000,"
        " s.last_origin, sd_doc('site_status', r.state)"
        " FROM sites s LEFT JOIN records r ON r.collection = 'site_status' AND r.key = s.site"
        " ORDER BY s.site",
        bind_sites, f, t);
}

/* ---- incidents ---- */

static const colspec incident_cols[] = {
    { "key", SD_COL_TEXT, 1, CV_RAW },      { "site", SD_COL_TEXT, 1, CV_RAW },
    { "severity", SD_COL_INT, 1, CV_RAW },  { "category", SD_COL_TEXT, 1, CV_RAW },
    { "status", SD_COL_TEXT, 1, CV_RAW },   { "title", SD_COL_TEXT, 1, CV_RAW },
    { "updated", SD_COL_TEXT, 1, CV_TIME }, { "received", SD_COL_TEXT, 0, CV_TIME },
    { "fields", SD_COL_JSON, 0, CV_RAW },
};

static void bind_incidents(sqlite3_stmt *st, const sd_admin_filter *f)
{
    bind_opt_text(st, 1, f->site);
    bind_opt_text(st, 2, f->status);
    sqlite3_bind_int(st, 3, f->severity);
    sqlite3_bind_int64(st, 4, f->since_ms);
    sqlite3_bind_int(st, 5, limit_of(f));
}

int sd_admin_incidents(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 9, incident_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    return run_query(s, &def,
                     "SELECT key, site, sev, cat, st, title, max_hlc >> 16, updated_ms, doc FROM"
                     " (SELECT key, site, max_hlc, updated_ms,"
                     "  sd_field(collection, state, 'severity') AS sev,"
                     "  sd_field(collection, state, 'category') AS cat,"
                     "  sd_field(collection, state, 'status') AS st,"
                     "  sd_field(collection, state, 'title') AS title,"
                     "  sd_doc(collection, state) AS doc"
                     "  FROM records WHERE collection = 'incident' AND deleted = 0)"
                     " WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR st = ?2)"
                     " AND (?3 = 0 OR sev >= ?3) AND (?4 = 0 OR (max_hlc >> 16) >= ?4)"
                     " ORDER BY max_hlc DESC LIMIT ?5",
                     bind_incidents, f, t);
}

/* ---- audit ---- */

static const colspec audit_cols[] = {
    { "id", SD_COL_INT, 1, CV_RAW },          { "time", SD_COL_TEXT, 1, CV_TIME },
    { "peer", SD_COL_TEXT, 1, CV_RAW },       { "fingerprint", SD_COL_TEXT, 0, CV_RAW },
    { "serial", SD_COL_TEXT, 0, CV_RAW },     { "path", SD_COL_TEXT, 1, CV_RAW },
    { "origin", SD_COL_TEXT, 1, CV_RAW },     { "seq", SD_COL_INT, 1, CV_RAW },
    { "collection", SD_COL_TEXT, 0, CV_RAW }, { "key", SD_COL_TEXT, 1, CV_RAW },
    { "site", SD_COL_TEXT, 0, CV_RAW },       { "op", SD_COL_TEXT, 0, CV_RAW },
    { "fields", SD_COL_JSON, 0, CV_RAW },     { "hlc", SD_COL_TEXT, 0, CV_HLC },
    { "outcome", SD_COL_TEXT, 1, CV_RAW },    { "detail", SD_COL_TEXT, 1, CV_RAW },
};

static void bind_audit(sqlite3_stmt *st, const sd_admin_filter *f)
{
    bind_opt_text(st, 1, f->origin);
    bind_opt_text(st, 2, f->key);
    bind_opt_text(st, 3, f->outcome);
    sqlite3_bind_int64(st, 4, f->since_ms);
    sqlite3_bind_int(st, 5, limit_of(f));
}

int sd_admin_audit(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 16, audit_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    /* The newest `limit` entries that match, shown oldest first. An outcome
     * ending in ':' ("rejected:"), or plain "rejected", matches every
     * reason. */
    return run_query(s, &def,
                     "SELECT * FROM (SELECT id, at_ms, peer, fingerprint, serial, path, origin,"
                     " seq, collection, key, site, op, fields, hlc, outcome, detail FROM audit"
                     " WHERE (?1 IS NULL OR origin = ?1) AND (?2 IS NULL OR key = ?2)"
                     " AND (?3 IS NULL OR outcome = ?3 OR (substr(?3, -1) = ':'"
                     " AND substr(outcome, 1, length(?3)) = ?3)"
                     " OR (?3 = 'rejected' AND substr(outcome, 1, 9) = 'rejected:'))"
                     " AND (?4 = 0 OR at_ms >= ?4) ORDER BY id DESC LIMIT ?5) ORDER BY id",
                     bind_audit, f, t);
}

/* ---- peers ---- */

static const colspec peer_cols[] = {
    { "node", SD_COL_TEXT, 1, CV_RAW },           { "role", SD_COL_TEXT, 1, CV_RAW },
    { "last_seen", SD_COL_TEXT, 1, CV_TIME },     { "committed_seq", SD_COL_INT, 1, CV_RAW },
    { "sessions", SD_COL_INT, 1, CV_RAW },        { "last_error", SD_COL_TEXT, 1, CV_RAW },
    { "last_error_at", SD_COL_TEXT, 0, CV_TIME }, { "fingerprint", SD_COL_TEXT, 0, CV_RAW },
};

static void bind_none(sqlite3_stmt *st, const sd_admin_filter *f)
{
    (void)st;
    (void)f;
}

int sd_admin_peers(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 8, peer_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    /* Origins that only ever arrived through a relay have no peer row but
     * do have a committed sequence: list them too. */
    return run_query(s, &def,
                     "SELECT p.node, p.role, p.last_seen_ms, o.committed, p.sessions,"
                     " p.last_error, p.last_error_ms, p.fingerprint FROM peers p"
                     " LEFT JOIN origins o ON o.origin = p.node"
                     " UNION ALL SELECT o.origin, 'origin via relay', o.updated_ms, o.committed,"
                     " 0, NULL, NULL, NULL FROM origins o"
                     " WHERE o.origin NOT IN (SELECT node FROM peers) ORDER BY 1",
                     bind_none, f, t);
}

/* ---- conflicts (loser ledger) ---- */

static const colspec loser_cols[] = {
    { "id", SD_COL_INT, 0, CV_RAW },          { "time", SD_COL_TEXT, 1, CV_TIME },
    { "collection", SD_COL_TEXT, 1, CV_RAW }, { "key", SD_COL_TEXT, 1, CV_RAW },
    { "field", SD_COL_TEXT, 1, CV_RAW },      { "losing_value", SD_COL_JSON, 1, CV_RAW },
    { "hlc", SD_COL_TEXT, 1, CV_HLC },        { "origin", SD_COL_TEXT, 1, CV_RAW },
    { "winner_hlc", SD_COL_TEXT, 1, CV_HLC }, { "winner_origin", SD_COL_TEXT, 1, CV_RAW },
};

static void bind_since_limit(sqlite3_stmt *st, const sd_admin_filter *f)
{
    sqlite3_bind_int64(st, 1, f->since_ms);
    sqlite3_bind_int(st, 2, limit_of(f));
}

int sd_admin_conflicts(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 10, loser_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    /* field '' is a delete that lost to a newer tombstone. */
    return run_query(s, &def,
                     "SELECT * FROM (SELECT id, at_ms, collection, key,"
                     " CASE field WHEN '' THEN '(delete)' ELSE field END, value, hlc, origin,"
                     " winner_hlc, winner_origin FROM losers WHERE (?1 = 0 OR at_ms >= ?1)"
                     " ORDER BY id DESC LIMIT ?2) ORDER BY id",
                     bind_since_limit, f, t);
}

/* ---- sessions ---- */

static const colspec session_cols[] = {
    { "id", SD_COL_INT, 1, CV_RAW },
    { "peer", SD_COL_TEXT, 1, CV_RAW },
    { "role", SD_COL_TEXT, 0, CV_RAW },
    { "addr", SD_COL_TEXT, 1, CV_RAW },
    { "path", SD_COL_TEXT, 0, CV_RAW },
    { "connected", SD_COL_TEXT, 1, CV_TIME },
    { "disconnected", SD_COL_TEXT, 1, CV_TIME },
    { "received", SD_COL_INT, 1, CV_RAW },
    { "applied", SD_COL_INT, 1, CV_RAW },
    { "superseded", SD_COL_INT, 1, CV_RAW },
    { "duplicate", SD_COL_INT, 1, CV_RAW },
    { "rejected", SD_COL_INT, 1, CV_RAW },
    { "bytes_in", SD_COL_INT, 1, CV_RAW },
    { "bytes_out", SD_COL_INT, 1, CV_RAW },
    { "error", SD_COL_TEXT, 1, CV_RAW },
    { "fingerprint", SD_COL_TEXT, 0, CV_RAW },
    { "serial", SD_COL_TEXT, 0, CV_RAW },
};

int sd_admin_sessions(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 17, session_cols };
    if (!s || !f || !t)
        return SS_EINVAL;
    return run_query(s, &def,
                     "SELECT * FROM (SELECT id, peer, role, addr, path, started_ms, ended_ms,"
                     " received, applied, superseded, duplicate, rejected, bytes_in, bytes_out,"
                     " error, fingerprint, serial FROM sessions"
                     " WHERE (?1 = 0 OR started_ms >= ?1) ORDER BY id DESC LIMIT ?2) ORDER BY id",
                     bind_since_limit, f, t);
}

/* ---- one record, with who wrote each field ---- */

static const colspec record_cols[] = {
    { "collection", SD_COL_TEXT, 1, CV_RAW }, { "key", SD_COL_TEXT, 1, CV_RAW },
    { "site", SD_COL_TEXT, 1, CV_RAW },       { "deleted", SD_COL_BOOL, 1, CV_BOOL },
    { "updated", SD_COL_TEXT, 1, CV_HLC },    { "received", SD_COL_TEXT, 1, CV_TIME },
    { "fields", SD_COL_JSON, 0, CV_RAW },     { "clocks", SD_COL_JSON, 0, CV_RAW },
};

static void bind_record(sqlite3_stmt *st, const sd_admin_filter *f)
{
    bind_opt_text(st, 1, f->collection);
    bind_opt_text(st, 2, f->key);
}

int sd_admin_record(sd_store *s, const sd_admin_filter *f, sd_table *t)
{
    static const tabledef def = { 8, record_cols };
    if (!s || !f || !t || !f->collection || !f->key)
        return SS_EINVAL;
    return run_query(s, &def,
                     "SELECT collection, key, site, deleted, max_hlc, updated_ms,"
                     " sd_doc(collection, state), sd_clocks(collection, state) FROM records"
                     " WHERE collection = ?1 AND key = ?2",
                     bind_record, f, t);
}
