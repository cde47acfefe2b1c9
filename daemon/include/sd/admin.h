/* admin.h - the read-side queries behind sitesync-admin (sites, incidents,
 * audit trail, peers, loser ledger, sessions) and audit-chain verification.
 * Every function works on a read-only store opened while sitesyncd writes
 * (WAL); results come back as a table of text cells the CLI renders as a
 * human table, JSON or CSV. */
#ifndef SD_ADMIN_H
#define SD_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "sd/store.h"

/* ---- audit chain ---- */

/* A chain head: the hash of entry `id` (which covers every entry before
 * it). Saved outside the database, it lets `audit verify` detect a tail
 * that was cut off or a chain rewritten up to that entry. */
typedef struct sd_audit_head {
    uint8_t hash[32];
    int64_t id; /* 0: empty log */
} sd_audit_head;

/* Text form "<64 hex>:<id>". */
#define SD_AUDIT_HEAD_TEXT_MAX 96
/* Returns the length, or SS_ENOSPC (cap < SD_AUDIT_HEAD_TEXT_MAX). */
int sd_audit_head_format(const sd_audit_head *h, char *buf, size_t cap);
/* Returns 0, or SS_EINVAL for anything but "<64 hex>:<id >= 1>". */
int sd_audit_head_parse(const char *text, sd_audit_head *h);
/* The head recorded in the database (committed state). */
int sd_audit_head_get(sd_store *s, sd_audit_head *h);

typedef struct sd_audit_report {
    int ok;            /* 1: chain intact (and consistent with the saved head) */
    int64_t entries;   /* entries verified before stopping */
    int64_t broken_id; /* first broken entry id when !ok */
    char reason[320];
    sd_audit_head head; /* last verified entry */
} sd_audit_report;

/* Recomputes every entry's hash in id order inside one read snapshot,
 * checks ids are consecutive, that the head in meta matches the last entry,
 * and (if saved is not NULL) that entry saved->id exists with that hash.
 * Returns 0 when the check ran (r->ok says the verdict) or a negative error
 * (database unreadable). */
int sd_audit_verify(sd_store *s, const sd_audit_head *saved, sd_audit_report *r);

/* ---- query results ---- */

typedef enum sd_col_kind {
    SD_COL_TEXT = 0,
    SD_COL_INT = 1,  /* decimal integer text */
    SD_COL_BOOL = 2, /* "true" / "false" */
    SD_COL_JSON = 3  /* a JSON value as text (record fields) */
} sd_col_kind;

typedef struct sd_table {
    int ncols;
    const char *const *cols; /* column names (the strings are static) */
    const sd_col_kind *kinds;
    /* 1: shown in the human table view (JSON and CSV carry every column) */
    const unsigned char *brief;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows * ncols, row-major; NULL means no value */
} sd_table;

void sd_table_init(sd_table *t);
/* Frees every cell; safe twice. */
void sd_table_free(sd_table *t);
const char *sd_table_cell(const sd_table *t, size_t row, int col);

/* Filters; zero / NULL means "any". Times are Unix milliseconds. */
typedef struct sd_admin_filter {
    int64_t now_ms;         /* sites: reference time for staleness */
    int64_t stale_after_ms; /* sites: default 3600000 when 0 */
    const char *site;       /* incidents */
    const char *status;     /* incidents */
    int severity;           /* incidents: severity >= this */
    const char *origin;     /* audit */
    const char *key;        /* audit; record */
    const char *collection; /* record */
    const char *outcome;    /* audit: exact, or a prefix ending in ':' ("rejected:") */
    int64_t since_ms;       /* incidents, audit, conflicts, sessions */
    int limit;              /* audit, conflicts, sessions: default 1000 when 0 */
} sd_admin_filter;

/* Each returns 0 with t filled (t initialised by the caller with
 * sd_table_init), or a negative error with sd_store_last_error set. */
int sd_admin_sites(sd_store *s, const sd_admin_filter *f, sd_table *t);
int sd_admin_incidents(sd_store *s, const sd_admin_filter *f, sd_table *t);
int sd_admin_audit(sd_store *s, const sd_admin_filter *f, sd_table *t);
int sd_admin_peers(sd_store *s, const sd_admin_filter *f, sd_table *t);
int sd_admin_conflicts(sd_store *s, const sd_admin_filter *f, sd_table *t);
int sd_admin_sessions(sd_store *s, const sd_admin_filter *f, sd_table *t);
/* One record (f->collection, f->key; 0 rows if unknown): its merged fields
 * and, in "clocks", each field's value with the hlc and origin that wrote
 * it and the tombstone's clock (for disputes). */
int sd_admin_record(sd_store *s, const sd_admin_filter *f, sd_table *t);

/* Times on the command line: "2026-12-04", "2026-12-04T16:03:33[.123]Z",
 * Unix seconds ("1733328000"), or an age before now ("90s", "15m", "2h",
 * "7d"). Returns 0 with *out_ms, or SS_EINVAL. */
int sd_admin_parse_time(const char *text, int64_t now_ms, int64_t *out_ms);
/* "2026-12-04T16:03:33.123Z"; buf needs 25 bytes. */
int sd_admin_format_time(int64_t ms, char *buf, size_t cap);

#endif
