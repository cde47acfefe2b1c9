/* sd_store.c - opens and migrates the daemon's SQLite database (WAL,
 * synchronous=FULL), caches its prepared statements, and records sync
 * sessions, peers and non-change audit events. The merge lives in
 * sd_merge.c, the audit chain in sd_audit.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "sd_store_internal.h"

/* Schema version 1. One row per record: its per-field values and clocks as
 * a compact blob merged in C, so a change costs one B-tree write instead of
 * one per field. Queries read fields through the SQL functions sd_doc() and
 * sd_field() (sd_merge.c) that every handle registers: storing the fields a
 * second time as JSON cost about a third of the merge throughput in WAL
 * bytes. */
static const char schema_v1[] =
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
    "CREATE TABLE origins(origin TEXT PRIMARY KEY, committed INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE records(collection TEXT NOT NULL, key TEXT NOT NULL, site TEXT NOT NULL,"
    " state BLOB NOT NULL, deleted INTEGER NOT NULL,"
    " max_hlc INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(collection, key)) WITHOUT ROWID;"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, peer TEXT,"
    " fingerprint TEXT, serial TEXT, path TEXT, origin TEXT, seq INTEGER, collection TEXT,"
    " key TEXT, site TEXT, op TEXT, fields TEXT, hlc INTEGER, outcome TEXT NOT NULL,"
    " detail TEXT, chash BLOB, hash BLOB NOT NULL);"
    /* Which audit entries consumed which sequence numbers: one row per
     * envelope, not an index entry per change (that cost ~15% of the merge
     * throughput). The entries of one envelope's new changes have
     * consecutive ids, so entry id = first_audit_id + (seq - first_seq). */
    "CREATE TABLE consumed(origin TEXT NOT NULL, first_seq INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL, first_audit_id INTEGER NOT NULL,"
    " PRIMARY KEY(origin, first_seq)) WITHOUT ROWID;"
    "CREATE TABLE losers(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
    " collection TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, value TEXT,"
    " hlc INTEGER NOT NULL, origin TEXT NOT NULL, winner_hlc INTEGER NOT NULL,"
    " winner_origin TEXT NOT NULL);"
    "CREATE TABLE peers(node TEXT PRIMARY KEY, role TEXT NOT NULL, fingerprint TEXT,"
    " first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,"
    " sessions INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_error_ms INTEGER)"
    " WITHOUT ROWID;"
    "CREATE TABLE sites(site TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL,"
    " last_origin TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, peer TEXT NOT NULL, role TEXT NOT NULL,"
    " fingerprint TEXT, serial TEXT, addr TEXT, path TEXT, started_ms INTEGER NOT NULL,"
    " ended_ms INTEGER, received INTEGER NOT NULL DEFAULT 0, applied INTEGER NOT NULL DEFAULT 0,"
    " superseded INTEGER NOT NULL DEFAULT 0, duplicate INTEGER NOT NULL DEFAULT 0,"
    " rejected INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,"
    " bytes_out INTEGER NOT NULL DEFAULT 0, error TEXT);"
    "INSERT INTO meta(k, v) VALUES('schema_version', 1);";

static const char *const stmt_sql[SD_ST__COUNT] = {
    [SD_ST_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [SD_ST_META_PUT] = "INSERT INTO meta(k, v) VALUES(?1, ?2)"
                       " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    [SD_ST_ORIGIN_GET] = "SELECT committed FROM origins WHERE origin = ?1",
    [SD_ST_ORIGIN_PUT] = "INSERT INTO origins(origin, committed, updated_ms) VALUES(?1, ?2, ?3)"
                         " ON CONFLICT(origin) DO UPDATE SET committed = excluded.committed,"
                         " updated_ms = excluded.updated_ms",
    [SD_ST_REC_INSERT] = "INSERT INTO records(collection, key, site, state, deleted,"
                         " max_hlc, updated_ms) VALUES(?1, ?2, ?3, ?5, ?6, ?7, ?8)"
                         " ON CONFLICT(collection, key) DO NOTHING",
    [SD_ST_REC_GET] = "SELECT site, state FROM records WHERE collection = ?1 AND key = ?2",
    [SD_ST_REC_UPDATE] = "UPDATE records SET state = ?4, deleted = ?5, max_hlc = ?6,"
                         " updated_ms = ?7 WHERE collection = ?1 AND key = ?2",
    [SD_ST_AUDIT_INSERT] = "INSERT INTO audit(id, at_ms, peer, fingerprint, serial, path, origin,"
                           " seq, collection, key, site, op, fields, hlc, outcome, detail, chash,"
                           " hash) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                           " ?13, ?14, ?15, ?16, ?17, ?18)",
    /* The entry that consumed (origin, seq); later ones are re-deliveries. */
    [SD_ST_AUDIT_CHASH] = "SELECT a.chash, a.origin, a.seq FROM consumed c JOIN audit a"
                          " ON a.id = c.first_audit_id + (?2 - c.first_seq)"
                          " WHERE c.origin = ?1 AND c.first_seq <= ?2 AND c.last_seq >= ?2"
                          " ORDER BY c.first_seq DESC LIMIT 1",
    [SD_ST_CONSUMED_PUT] = "INSERT INTO consumed(origin, first_seq, last_seq, first_audit_id)"
                           " VALUES(?1, ?2, ?3, ?4)",
    [SD_ST_LOSER_INSERT] = "INSERT INTO losers(at_ms, collection, key, field, value, hlc,"
                           " origin, winner_hlc, winner_origin)"
                           " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SD_ST_PEER_SEEN] = "INSERT INTO peers(node, role, fingerprint, first_seen_ms, last_seen_ms)"
                        " VALUES(?1, ?2, ?3, ?4, ?4) ON CONFLICT(node) DO UPDATE SET"
                        " role = excluded.role, fingerprint = excluded.fingerprint,"
                        " last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    [SD_ST_PEER_SESSION] = "UPDATE peers SET sessions = sessions + 1 WHERE node = ?1",
    [SD_ST_PEER_ERROR] = "UPDATE peers SET last_error = ?2, last_error_ms = ?3,"
                         " last_seen_ms = max(last_seen_ms, ?3) WHERE node = ?1",
    [SD_ST_SITE_SEEN] = "INSERT INTO sites(site, last_seen_ms, last_origin) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(site) DO UPDATE SET last_seen_ms ="
                        " max(last_seen_ms, excluded.last_seen_ms),"
                        " last_origin = excluded.last_origin",
    [SD_ST_SESSION_INSERT] = "INSERT INTO sessions(peer, role, fingerprint, serial, addr, path,"
                             " started_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SD_ST_SESSION_END] = "UPDATE sessions SET ended_ms = ?2, received = ?3, applied = ?4,"
                          " superseded = ?5, duplicate = ?6, rejected = ?7, bytes_in = ?8,"
                          " bytes_out = ?9, error = ?10 WHERE id = ?1",
    [SD_ST_SAVEPOINT] = "SAVEPOINT sd_env",
    [SD_ST_RELEASE] = "RELEASE sd_env",
    [SD_ST_ROLLBACK_TO] = "ROLLBACK TO sd_env",
    [SD_ST_BEGIN] = "BEGIN IMMEDIATE",
    [SD_ST_COMMIT] = "COMMIT",
    [SD_ST_ROLLBACK] = "ROLLBACK",
};

int sd__db_fail(sd_store *s, const char *what)
{
    snprintf(s->err, sizeof s->err, "%s: sqlite error %d (%s): %s", what,
             sqlite3_extended_errcode(s->db), sqlite3_errstr(sqlite3_extended_errcode(s->db)),
             sqlite3_errmsg(s->db));
    return SS_EDB;
}

sqlite3_stmt *sd__stmt(sd_store *s, int id)
{
    if (id < 0 || id >= SD_ST__COUNT)
        return NULL;
    if (!s->st[id]) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->st[id],
                               NULL) != SQLITE_OK) {
            sd__db_fail(s, "prepare");
            s->st[id] = NULL;
            return NULL;
        }
        return s->st[id];
    }
    sqlite3_reset(s->st[id]);
    sqlite3_clear_bindings(s->st[id]);
    return s->st[id];
}

int sd__step_done(sd_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        sd__db_fail(s, what);
        sqlite3_reset(st);
        return SS_EDB;
    }
    sqlite3_reset(st);
    return 0;
}

int sd__exec(sd_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "sqlite error %d: %s", sqlite3_extended_errcode(s->db),
                 msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return SS_EDB;
    }
    return 0;
}

void *sd__scratch(sd_store *s, int i, size_t need)
{
    if (need <= s->scratch_cap[i])
        return s->scratch[i];
    size_t cap = s->scratch_cap[i] ? s->scratch_cap[i] : 1024;
    while (cap < need)
        cap *= 2;
    uint8_t *p = ss_realloc(s->scratch[i], cap);
    if (!p)
        return NULL;
    s->scratch[i] = p;
    s->scratch_cap[i] = cap;
    return p;
}

int sd__sha256(sd_store *s, const void *data, size_t len, uint8_t out[SD_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex(s->md, s->sha256, NULL) != 1 || EVP_DigestUpdate(s->md, data, len) != 1 ||
        EVP_DigestFinal_ex(s->md, out, &n) != 1 || n != SD_HASH_LEN) {
        snprintf(s->err, sizeof s->err, "SHA-256 failed");
        return SS_EINTERNAL;
    }
    return 0;
}

static int schema_version(sd_store *s, int64_t *ver)
{
    sqlite3_stmt *st = NULL;
    *ver = 0;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'meta'",
                                -1, &st, NULL);
    if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return sd__db_fail(s, "reading the schema");
    }
    int have_meta = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!have_meta)
        return 0;
    st = sd__stmt(s, SD_ST_META_GET);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, "schema_version", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ver = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        return sd__db_fail(s, "reading schema_version");
    sqlite3_reset(st);
    return 0;
}

static int migrate(sd_store *s)
{
    int64_t ver = 0;
    int rc = sd__exec(s, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    rc = schema_version(s, &ver);
    if (rc)
        goto fail;
    if (ver > SD_SCHEMA_VERSION) {
        snprintf(s->err, sizeof s->err,
                 "database schema version %lld is newer than this build supports (%d)",
                 (long long)ver, SD_SCHEMA_VERSION);
        rc = SS_EVERSION;
        goto fail;
    }
    if (ver == 0) {
        /* Statements prepared against the old schema would go stale. */
        sqlite3_finalize(s->st[SD_ST_META_GET]);
        s->st[SD_ST_META_GET] = NULL;
        rc = sd__exec(s, schema_v1);
        if (rc)
            goto fail;
    }
    return sd__exec(s, "COMMIT");
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int sd_store_open(const sd_store_config *cfg, sd_store **out, char *errbuf, size_t errcap)
{
    int rc = 0;
    sd_store *s = NULL;
    if (errbuf && errcap)
        errbuf[0] = '\0';
    if (!cfg || !cfg->path || !cfg->path[0] || !out) {
        if (errbuf)
            snprintf(errbuf, errcap, "store: no database path given");
        return SS_EINVAL;
    }
    *out = NULL;
    if (cfg->readonly) {
        struct stat stb;
        if (stat(cfg->path, &stb) != 0) {
            if (errbuf)
                snprintf(errbuf, errcap, "%s: %s", cfg->path, strerror(errno));
            return errno == ENOENT ? SS_ENOENT : SS_EIO;
        }
    }
    s = ss_malloc(sizeof *s);
    if (!s) {
        if (errbuf)
            snprintf(errbuf, errcap, "store: out of memory");
        return SS_ENOMEM;
    }
    memset(s, 0, sizeof *s);
    s->readonly = cfg->readonly ? 1 : 0;
    s->skew_ms = cfg->skew_tolerance_ms > 0 ? cfg->skew_tolerance_ms : 300000;
    s->busy_ms = cfg->busy_timeout_ms > 0 ? cfg->busy_timeout_ms : 5000;
    size_t plen = strlen(cfg->path);
    s->path = ss_malloc(plen + 1);
    if (!s->path) {
        snprintf(s->err, sizeof s->err, "store: out of memory");
        rc = SS_ENOMEM;
        goto fail;
    }
    memcpy(s->path, cfg->path, plen + 1);
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->md = EVP_MD_CTX_new();
    if (!s->sha256 || !s->md) {
        snprintf(s->err, sizeof s->err, "OpenSSL: SHA-256 unavailable");
        rc = SS_EINTERNAL;
        goto fail;
    }
    int flags = s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    /* One thread uses a handle at a time (the writer thread, or the caller
     * of a read-only handle), so SQLite's own mutexes would only cost. */
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(cfg->path, &s->db, flags, NULL) != SQLITE_OK) {
        if (!s->db) {
            snprintf(s->err, sizeof s->err, "%s: cannot allocate a SQLite handle", cfg->path);
        } else {
            snprintf(s->err, sizeof s->err, "%s: sqlite error %d: %s", cfg->path,
                     sqlite3_extended_errcode(s->db), sqlite3_errmsg(s->db));
        }
        rc = SS_EDB;
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    if (sd__register_functions(s) != 0) {
        rc = sd__db_fail(s, "registering SQL functions");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, s->busy_ms);
    if (!s->readonly) {
        /* journal_mode answers with the mode it got: anything but "wal"
         * (a file system without shared memory) would break concurrent
         * readers, so refuse it. */
        sqlite3_stmt *st = NULL;
        /* 16 KiB pages for a new database (an existing one keeps its own:
         * WAL mode cannot change it). A change is a ~0.5 KiB record row
         * and a ~0.7 KiB audit row; with 4 KiB pages the writer spent a
         * fifth more CPU per change in b-tree splits and WAL frames
         * (docs/performance.md, "page size"). */
        rc = sd__exec(s, "PRAGMA page_size=" SD_STR(SD_PAGE_SIZE));
        if (rc)
            goto fail;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_finalize(st);
            rc = sd__db_fail(s, "setting WAL mode");
            goto fail;
        }
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        int wal = mode && strcmp(mode, "wal") == 0;
        sqlite3_finalize(st);
        if (!wal) {
            snprintf(s->err, sizeof s->err, "%s: WAL mode unavailable", cfg->path);
            rc = SS_EDB;
            goto fail;
        }
        rc = sd__exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                         " PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY");
        if (rc)
            goto fail;
        /* Checkpoints every ~40 MB of WAL rather than SQLite's 1,000 pages:
         * pages that every transaction touches (b-tree interiors, meta,
         * origins) are copied back once per checkpoint, and durability is
         * unchanged. Counted in bytes, whatever page size the file has. */
        int page = 0;
        if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            page = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        st = NULL;
        char q[64];
        snprintf(q, sizeof q, "PRAGMA wal_autocheckpoint=%d",
                 SD_WAL_CHECKPOINT_BYTES / (page >= 512 ? page : SD_PAGE_SIZE));
        if ((rc = sd__exec(s, q)) != 0)
            goto fail;
        rc = migrate(s);
        if (rc)
            goto fail;
    } else {
        rc = sd__exec(s, "PRAGMA query_only=ON");
        if (rc)
            goto fail;
        int64_t ver = 0;
        rc = schema_version(s, &ver);
        if (rc)
            goto fail;
        if (ver == 0) {
            snprintf(s->err, sizeof s->err, "%s: not a sitesync database (no schema_version)",
                     cfg->path);
            rc = SS_EDB;
            goto fail;
        }
        if (ver > SD_SCHEMA_VERSION) {
            snprintf(s->err, sizeof s->err,
                     "%s: database schema version %lld is newer than this build (%d)", cfg->path,
                     (long long)ver, SD_SCHEMA_VERSION);
            rc = SS_EVERSION;
            goto fail;
        }
    }
    rc = sd__audit_load_head(s);
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    if (errbuf)
        snprintf(errbuf, errcap, "%s", s->err[0] ? s->err : ss_strerror(rc));
    sd_store_close(s);
    return rc;
}

void sd_store_close(sd_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < SD_ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db && s->in_txn)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(s->db);
    EVP_MD_CTX_free(s->md);
    EVP_MD_free(s->sha256);
    for (int i = 0; i < 6; i++)
        ss_free(s->scratch[i]);
    ss_free(s->path);
    ss_free(s);
}

int sd__store_reopen(sd_store *s)
{
    if (!s || s->in_txn)
        return SS_EINVAL;
    sd_store_config cfg = { .path = s->path,
                            .readonly = s->readonly,
                            .skew_tolerance_ms = s->skew_ms,
                            .busy_timeout_ms = s->busy_ms };
    sd_store *fresh = NULL;
    char err[sizeof s->err];
    int rc = sd_store_open(&cfg, &fresh, err, sizeof err);
    if (rc) {
        /* err names the path already. */
        snprintf(s->err, sizeof s->err, "%.200s", err);
        return rc;
    }
    /* Swap the whole handle: callers keep their pointer to s, the old
     * connection, statements and buffers leave with fresh. */
    fresh->sig = s->sig;
    fresh->require_sig = s->require_sig;
    sd_store tmp = *s;
    *s = *fresh;
    *fresh = tmp;
    sd_store_close(fresh);
    return 0;
}

const char *sd_store_last_error(const sd_store *s)
{
    return s ? s->err : "no store";
}

struct sqlite3 *sd_store_handle(sd_store *s)
{
    return s ? s->db : NULL;
}

void sd_result_free(sd_result *r)
{
    if (!r)
        return;
    ss_free(r->rejects);
    r->rejects = NULL;
    r->nrejects = 0;
}

static int run_fixed(sd_store *s, int id, const char *what)
{
    sqlite3_stmt *st = sd__stmt(s, id);
    if (!st)
        return SS_EDB;
    return sd__step_done(s, st, what);
}

int sd_store_begin(sd_store *s)
{
    if (!s || s->readonly || s->in_txn)
        return SS_EINVAL;
    int rc = run_fixed(s, SD_ST_BEGIN, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    s->in_txn = 1;
    return 0;
}

int sd_store_commit(sd_store *s)
{
    if (!s || !s->in_txn)
        return SS_EINVAL;
    int rc = sd__audit_save_head(s);
    if (!rc)
        rc = run_fixed(s, SD_ST_COMMIT, "COMMIT");
    if (rc) {
        /* A failed COMMIT may leave the transaction open (SQLITE_BUSY) or
         * already rolled back (I/O error, commit hook): end it either way so
         * nothing of it can become durable later by accident. */
        char keep[sizeof s->err];
        memcpy(keep, s->err, sizeof keep);
        sd_store_rollback(s);
        memcpy(s->err, keep, sizeof keep);
        return rc;
    }
    s->in_txn = 0;
    return 0;
}

int sd_store_rollback(sd_store *s)
{
    if (!s || s->readonly)
        return SS_EINVAL;
    int rc = 0;
    if (!sqlite3_get_autocommit(s->db))
        rc = run_fixed(s, SD_ST_ROLLBACK, "ROLLBACK");
    s->in_txn = 0;
    /* The in-memory chain head may include entries that are now gone. */
    int rc2 = sd__audit_load_head(s);
    return rc ? rc : rc2;
}

int sd__txn_lost(sd_store *s)
{
    /* After some errors (disk full, I/O) SQLite rolls the whole transaction
     * back on its own. A SAVEPOINT then would start a fresh transaction
     * that RELEASE commits: work after the failure would become durable
     * while the batch reports failure. Refuse instead. */
    if (s->in_txn && sqlite3_get_autocommit(s->db)) {
        snprintf(s->err, sizeof s->err, "the transaction was rolled back by SQLite after an error");
        return SS_EDB;
    }
    return 0;
}

int sd__savepoint(sd_store *s)
{
    int rc = sd__txn_lost(s);
    if (rc)
        return rc;
    memcpy(s->sp_hash, s->head_hash, SD_HASH_LEN);
    s->sp_id = s->head_id;
    return run_fixed(s, SD_ST_SAVEPOINT, "SAVEPOINT");
}

int sd__release(sd_store *s)
{
    return run_fixed(s, SD_ST_RELEASE, "RELEASE");
}

int sd__rollback_to(sd_store *s)
{
    memcpy(s->head_hash, s->sp_hash, SD_HASH_LEN);
    s->head_id = s->sp_id;
    int rc = run_fixed(s, SD_ST_ROLLBACK_TO, "ROLLBACK TO");
    if (!rc)
        rc = sd__release(s);
    return rc;
}

int sd_store_committed(sd_store *s, const char *origin, uint64_t *seq)
{
    if (!s || !origin || !seq)
        return SS_EINVAL;
    *seq = 0;
    sqlite3_stmt *st = sd__stmt(s, SD_ST_ORIGIN_GET);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) {
        sqlite3_reset(st);
        return sd__db_fail(s, "reading committed seq");
    }
    sqlite3_reset(st);
    return 0;
}

/* Binds text, or NULL for an empty/NULL string. */
static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v && v[0])
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int sd__peer_seen(sd_store *s, const sd_peer *peer, int64_t now_ms)
{
    if (!peer->ident.node[0])
        return 0;
    sqlite3_stmt *st = sd__stmt(s, SD_ST_PEER_SEEN);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, peer->ident.node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ss_role_name(peer->ident.role), -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, peer->fingerprint);
    sqlite3_bind_int64(st, 4, now_ms);
    return sd__step_done(s, st, "recording the peer");
}

static int session_begin_in(sd_store *s, const sd_peer *peer, int64_t now_ms, int64_t *session_id)
{
    int rc = sd__peer_seen(s, peer, now_ms);
    if (rc)
        return rc;
    sqlite3_stmt *st = sd__stmt(s, SD_ST_PEER_SESSION);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, peer->ident.node, -1, SQLITE_STATIC);
    rc = sd__step_done(s, st, "counting the session");
    if (rc)
        return rc;
    st = sd__stmt(s, SD_ST_SESSION_INSERT);
    if (!st)
        return SS_EDB;
    sqlite3_bind_text(st, 1, peer->ident.node[0] ? peer->ident.node : "(unknown)", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ss_role_name(peer->ident.role), -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, peer->fingerprint);
    bind_text_or_null(st, 4, peer->serial);
    bind_text_or_null(st, 5, peer->addr);
    bind_text_or_null(st, 6, peer->path[0] ? peer->path : "direct");
    sqlite3_bind_int64(st, 7, now_ms);
    rc = sd__step_done(s, st, "recording the session");
    if (rc)
        return rc;
    *session_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sd_store_session_begin(sd_store *s, const sd_peer *peer, int64_t now_ms, int64_t *session_id)
{
    if (!s || !peer || !session_id || s->readonly)
        return SS_EINVAL;
    *session_id = 0;
    int own = !s->in_txn;
    int rc = own ? sd_store_begin(s) : 0;
    if (rc)
        return rc;
    rc = sd__txn_lost(s);
    if (!rc)
        rc = session_begin_in(s, peer, now_ms, session_id);
    if (own)
        rc = rc ? (sd_store_rollback(s), rc) : sd_store_commit(s);
    if (rc)
        *session_id = 0;
    return rc;
}

static int session_end_in(sd_store *s, int64_t session_id, int64_t now_ms, const sd_counts *c,
                          uint64_t bytes_in, uint64_t bytes_out, const char *error)
{
    sd_counts zero = { 0 };
    if (!c)
        c = &zero;
    sqlite3_stmt *st = sd__stmt(s, SD_ST_SESSION_END);
    if (!st)
        return SS_EDB;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, (int64_t)c->received);
    sqlite3_bind_int64(st, 4, (int64_t)c->applied);
    sqlite3_bind_int64(st, 5, (int64_t)c->superseded);
    sqlite3_bind_int64(st, 6, (int64_t)c->duplicate);
    sqlite3_bind_int64(st, 7, (int64_t)c->rejected);
    sqlite3_bind_int64(st, 8, (int64_t)bytes_in);
    sqlite3_bind_int64(st, 9, (int64_t)bytes_out);
    bind_text_or_null(st, 10, error);
    int rc = sd__step_done(s, st, "ending the session");
    if (rc)
        return rc;
    if (sqlite3_changes(s->db) != 1) {
        snprintf(s->err, sizeof s->err, "no session with id %lld", (long long)session_id);
        return SS_ENOENT;
    }
    if (error && error[0]) {
        /* The session row names its peer: copy the error to it. */
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT peer FROM sessions WHERE id = ?1", -1, &q, NULL) !=
            SQLITE_OK)
            return sd__db_fail(s, "reading the session");
        sqlite3_bind_int64(q, 1, session_id);
        if (sqlite3_step(q) == SQLITE_ROW) {
            char peer[SS_ID_MAX + 16];
            snprintf(peer, sizeof peer, "%s", (const char *)sqlite3_column_text(q, 0));
            sqlite3_finalize(q);
            st = sd__stmt(s, SD_ST_PEER_ERROR);
            if (!st)
                return SS_EDB;
            sqlite3_bind_text(st, 1, peer, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, now_ms);
            return sd__step_done(s, st, "recording the peer's error");
        }
        sqlite3_finalize(q);
    }
    return 0;
}

int sd_store_session_end(sd_store *s, int64_t session_id, int64_t now_ms, const sd_counts *c,
                         uint64_t bytes_in, uint64_t bytes_out, const char *error)
{
    if (!s || s->readonly || session_id <= 0)
        return SS_EINVAL;
    int own = !s->in_txn;
    int rc = own ? sd_store_begin(s) : 0;
    if (rc)
        return rc;
    rc = sd__txn_lost(s);
    if (!rc)
        rc = session_end_in(s, session_id, now_ms, c, bytes_in, bytes_out, error);
    if (own)
        rc = rc ? (sd_store_rollback(s), rc) : sd_store_commit(s);
    return rc;
}

int sd_store_audit_event(sd_store *s, const sd_peer *peer, int64_t now_ms, const char *origin,
                         uint64_t seq, const char *outcome, const char *detail)
{
    if (!s || s->readonly || !outcome || !outcome[0])
        return SS_EINVAL;
    sd_audit_entry e = { 0 };
    e.at_ms = now_ms;
    if (peer) {
        e.peer = peer->ident.node;
        e.fingerprint = peer->fingerprint;
        e.serial = peer->serial;
        e.path = peer->path[0] ? peer->path : "direct";
    }
    e.origin = origin;
    e.seq = seq;
    e.outcome = outcome;
    e.detail = detail;
    int own = !s->in_txn;
    int rc = own ? sd_store_begin(s) : 0;
    if (rc)
        return rc;
    rc = sd__savepoint(s);
    if (rc)
        goto done;
    rc = sd__audit_append(s, &e);
    if (rc)
        sd__rollback_to(s);
    else
        rc = sd__release(s);
done:
    if (own)
        rc = rc ? (sd_store_rollback(s), rc) : sd_store_commit(s);
    return rc;
}
