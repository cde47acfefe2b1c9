/* sqlite_limit.c - the "limit" peer for merge throughput: how many changes per
 * second plain SQLite can take on this machine with the daemon's durability
 * (WAL, synchronous=FULL) when each change is one last-writer-wins upsert of
 * a record row plus one hash-chained audit insert, written with prepared
 * statements in transactions of 1,000 rows. sitesyncd's merge figure is
 * reported as a ratio against this number (merge_vs_sqlite_limit).
 *
 * Design note: the work per change mirrors what the daemon's store does
 * (daemon/src/sd_store_internal.h: sd_audit_entry and its chain hash), so the
 * ratio measures our overhead, not a different amount of work. The chain hash
 * (SHA-256 over the previous hash and the entry's canonical columns, plus a
 * SHA-256 of the change bytes) can be switched off with --no-audit-hash so the
 * report shows what hashing itself costs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "bench_util.h"

#define HASH_LEN      32
#define MAX_ORIGINS   100000
#define PAYLOAD_MIN   64
#define PAYLOAD_MAX   16384
#define KEY_MAX       64
#define AUDIT_BUF_MAX (PAYLOAD_MAX + 1024)

typedef struct options {
    uint64_t rows;
    uint64_t txn_rows;
    uint64_t origins;
    uint64_t envelope; /* consecutive changes from one origin, like one BATCH */
    uint64_t payload;  /* bytes of fields JSON per change */
    uint64_t seed;
    int random_keys;
    int audit_hash;
    uint64_t page_size; /* the daemon's (sd_store: SD_PAGE_SIZE) unless told */
    int keep;
    const char *dir;
    const char *sync; /* PRAGMA synchronous: FULL as deployed; others only to see where time goes */
} options;

typedef struct bench {
    sqlite3 *db;
    sqlite3_stmt *upsert, *audit, *origin_put, *head_put;
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    uint8_t head[HASH_LEN];
    int64_t head_id;
} bench;

/* The record, audit, origin and meta tables in the shape the daemon keeps
 * them: records keyed by (collection, key) with the winning clock, an audit
 * row per change that carries who/what/outcome and the chain hash. */
static const char SCHEMA[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB);"
    "CREATE TABLE origin(origin TEXT PRIMARY KEY, committed INTEGER NOT NULL);"
    "CREATE TABLE record(collection TEXT NOT NULL, key TEXT NOT NULL, site TEXT NOT NULL,"
    " origin TEXT NOT NULL, hlc INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
    " fields TEXT NOT NULL, PRIMARY KEY(collection, key));"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, peer TEXT,"
    " fingerprint TEXT, path TEXT, origin TEXT, seq INTEGER, collection TEXT, key TEXT,"
    " site TEXT, op TEXT, fields TEXT, hlc INTEGER, outcome TEXT NOT NULL, detail TEXT,"
    " chash BLOB, hash BLOB);"
    "INSERT INTO meta(key, value) VALUES('audit_head', zeroblob(32));";

static const char SQL_UPSERT[] =
    "INSERT INTO record(collection, key, site, origin, hlc, fields) VALUES(?1,?2,?3,?4,?5,?6)"
    " ON CONFLICT(collection, key) DO UPDATE SET site=excluded.site, origin=excluded.origin,"
    " hlc=excluded.hlc, fields=excluded.fields, deleted=0"
    " WHERE excluded.hlc > record.hlc"
    " OR (excluded.hlc = record.hlc AND excluded.origin > record.origin)";
static const char SQL_AUDIT[] =
    "INSERT INTO audit(id, at_ms, peer, fingerprint, path, origin, seq, collection, key, site,"
    " op, fields, hlc, outcome, chash, hash) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,"
    "?14,?15,?16)";
static const char SQL_ORIGIN_PUT[] =
    "INSERT INTO origin(origin, committed) VALUES(?1, ?2)"
    " ON CONFLICT(origin) DO UPDATE SET committed=excluded.committed";
static const char SQL_HEAD_PUT[] = "UPDATE meta SET value=?1 WHERE key='audit_head'";

static const char PEER_FPR[] = "5f1c0d3a9e7b2c4d6e8f00112233445566778899aabbccddeeff001122334455";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sqlite_limit [options]\n"
            "  --rows N         changes to insert (default 200000)\n"
            "  --txn-rows N     changes per transaction (default 1000)\n"
            "  --origins N      distinct origins (default 10)\n"
            "  --envelope N     consecutive changes per origin, like one BATCH (default 100)\n"
            "  --payload N      bytes of fields JSON per change (default 400)\n"
            "  --random-keys    random 128-bit keys instead of <origin>-<16 hex hlc>\n"
            "  --no-audit-hash  skip the SHA-256 chain hash and change hash\n"
            "  --seed N         generator seed (default 1)\n"
            "  --dir DIR        directory for the database (default: a new one in $TMPDIR)\n"
            "  --keep           keep the database afterwards\n"
            "  --synchronous M  FULL (default, as deployed), NORMAL or OFF: the latter two only\n"
            "                   to see how much of the time is fsync\n"
            "  --page-size N    database page size (default 16384, as sitesyncd creates its\n"
            "                   database; the WAL is checkpointed every ~40 MB like sitesyncd's)\n"
            "Prints: sqlite_limit_rows_per_s=<n> and the run's parameters on one line.\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--rows") == 0) {
            rc = bench_parse_u64(a, v, 1, 100000000, &o->rows);
            i++;
        } else if (strcmp(a, "--txn-rows") == 0) {
            rc = bench_parse_u64(a, v, 1, 10000000, &o->txn_rows);
            i++;
        } else if (strcmp(a, "--origins") == 0) {
            rc = bench_parse_u64(a, v, 1, MAX_ORIGINS, &o->origins);
            i++;
        } else if (strcmp(a, "--envelope") == 0) {
            rc = bench_parse_u64(a, v, 1, 1000000, &o->envelope);
            i++;
        } else if (strcmp(a, "--payload") == 0) {
            rc = bench_parse_u64(a, v, PAYLOAD_MIN, PAYLOAD_MAX, &o->payload);
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            rc = bench_parse_u64(a, v, 0, UINT64_MAX, &o->seed);
            i++;
        } else if (strcmp(a, "--dir") == 0) {
            if (v == NULL) {
                fprintf(stderr, "--dir: expected a directory\n");
                return -1;
            }
            o->dir = v;
            i++;
        } else if (strcmp(a, "--synchronous") == 0) {
            if (v == NULL ||
                (strcmp(v, "FULL") != 0 && strcmp(v, "NORMAL") != 0 && strcmp(v, "OFF") != 0)) {
                fprintf(stderr, "--synchronous: expected FULL, NORMAL or OFF\n");
                return -1;
            }
            o->sync = v;
            i++;
        } else if (strcmp(a, "--page-size") == 0) {
            rc = bench_parse_u64(a, v, 512, 65536, &o->page_size);
            if (rc == 0 && (o->page_size & (o->page_size - 1)) != 0) {
                fprintf(stderr, "--page-size: expected a power of two\n");
                return -1;
            }
            i++;
        } else if (strcmp(a, "--random-keys") == 0) {
            o->random_keys = 1;
        } else if (strcmp(a, "--no-audit-hash") == 0) {
            o->audit_hash = 0;
        } else if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int db_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "sqlite_limit: %s: %s (code %d)\n", what, sqlite3_errmsg(db),
            sqlite3_extended_errcode(db));
    return -1;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sqlite_limit: '%.60s...': %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(db, what);
    return 0;
}

static int sha256(bench *b, const void *p, size_t n, uint8_t out[HASH_LEN])
{
    unsigned int len = 0;
    if (EVP_DigestInit_ex(b->md, b->sha256, NULL) != 1 || EVP_DigestUpdate(b->md, p, n) != 1 ||
        EVP_DigestFinal_ex(b->md, out, &len) != 1 || len != HASH_LEN) {
        fprintf(stderr, "sqlite_limit: SHA-256 failed\n");
        return -1;
    }
    return 0;
}

/* Appends a length-prefixed field to the canonical audit buffer, so that no
 * two different entries serialise to the same bytes. */
static size_t put_field(uint8_t *buf, size_t off, const void *p, size_t n)
{
    buf[off++] = (uint8_t)(n >> 24);
    buf[off++] = (uint8_t)(n >> 16);
    buf[off++] = (uint8_t)(n >> 8);
    buf[off++] = (uint8_t)n;
    if (n > 0)
        memcpy(buf + off, p, n);
    return off + n;
}

static size_t put_u64(uint8_t *buf, size_t off, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        buf[off++] = (uint8_t)(v >> (i * 8));
    return off;
}

/* An incident's fields as JSON, padded in the description to exactly `len`
 * bytes so every run writes the same volume. */
static int make_fields(char *out, size_t len, uint64_t seq, uint64_t *rng)
{
    static const char *const cats[] = { "intrusion", "sabotage", "cyber_event", "fire",
                                        "threat_received" };
    const char *cat = cats[bench_rand(rng) % 5];
    int head =
        snprintf(out, len + 1,
                 "{\"category\":\"%s\",\"severity\":%u,\"status\":\"open\","
                 "\"title\":\"Perimeter alarm sector %llu\",\"occurred_at\":"
                 "\"2024-05-01T12:00:00Z\",\"reported_by\":\"guard-%llu\",\"description\":\"",
                 cat, (unsigned)(1 + bench_rand(rng) % 5), (unsigned long long)(seq % 97),
                 (unsigned long long)(seq % 13));
    if (head < 0 || (size_t)head + 2 > len)
        return -1;
    size_t pos = (size_t)head;
    while (pos < len - 2)
        out[pos++] = (char)('a' + (char)(bench_rand(rng) % 26));
    out[pos++] = '"';
    out[pos++] = '}';
    out[pos] = '\0';
    return 0;
}

static int prepare(bench *b)
{
    struct {
        const char *sql;
        sqlite3_stmt **st;
    } list[] = { { SQL_UPSERT, &b->upsert },
                 { SQL_AUDIT, &b->audit },
                 { SQL_ORIGIN_PUT, &b->origin_put },
                 { SQL_HEAD_PUT, &b->head_put } };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (sqlite3_prepare_v3(b->db, list[i].sql, -1, SQLITE_PREPARE_PERSISTENT, list[i].st,
                               NULL) != SQLITE_OK)
            return db_fail(b->db, "prepare");
    }
    return 0;
}

/* One change: LWW upsert, then its audit entry chained to the previous one. */
static int apply_change(bench *b, const options *o, const char *origin, uint64_t seq,
                        const char *key, const char *site, uint64_t hlc, const char *fields,
                        int64_t at_ms, uint8_t *abuf)
{
    sqlite3_stmt *u = b->upsert;
    size_t flen = strlen(fields);
    sqlite3_bind_text(u, 1, "incident", -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 3, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 4, origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(u, 5, (sqlite3_int64)hlc);
    sqlite3_bind_text(u, 6, fields, (int)flen, SQLITE_STATIC);
    if (step_done(b->db, u, "record upsert") != 0)
        return -1;
    /* The outcome comes from what SQLite did, as in the daemon: a row the
     * WHERE clause refused is a superseded change. */
    const char *outcome = sqlite3_changes(b->db) > 0 ? "applied" : "superseded";

    uint8_t chash[HASH_LEN], hash[HASH_LEN];
    int64_t id = b->head_id + 1;
    if (o->audit_hash) {
        size_t off = 0;
        off = put_field(abuf, off, key, strlen(key));
        off = put_u64(abuf, off, hlc);
        off = put_field(abuf, off, fields, flen);
        if (sha256(b, abuf, off, chash) != 0)
            return -1;
        off = 0;
        memcpy(abuf, b->head, HASH_LEN);
        off = HASH_LEN;
        off = put_u64(abuf, off, (uint64_t)id);
        off = put_u64(abuf, off, (uint64_t)at_ms);
        off = put_field(abuf, off, origin, strlen(origin));
        off = put_field(abuf, off, PEER_FPR, sizeof PEER_FPR - 1);
        off = put_field(abuf, off, "direct", 6);
        off = put_field(abuf, off, origin, strlen(origin));
        off = put_u64(abuf, off, seq);
        off = put_field(abuf, off, "incident", 8);
        off = put_field(abuf, off, key, strlen(key));
        off = put_field(abuf, off, site, strlen(site));
        off = put_field(abuf, off, "set", 3);
        off = put_field(abuf, off, fields, flen);
        off = put_u64(abuf, off, hlc);
        off = put_field(abuf, off, outcome, strlen(outcome));
        off = put_field(abuf, off, chash, HASH_LEN);
        if (sha256(b, abuf, off, hash) != 0)
            return -1;
    }

    sqlite3_stmt *a = b->audit;
    sqlite3_bind_int64(a, 1, id);
    sqlite3_bind_int64(a, 2, at_ms);
    sqlite3_bind_text(a, 3, origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 4, PEER_FPR, -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 5, "direct", -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 6, origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(a, 7, (sqlite3_int64)seq);
    sqlite3_bind_text(a, 8, "incident", -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 9, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 10, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 11, "set", -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 12, fields, (int)flen, SQLITE_STATIC);
    sqlite3_bind_int64(a, 13, (sqlite3_int64)hlc);
    sqlite3_bind_text(a, 14, outcome, -1, SQLITE_STATIC);
    if (o->audit_hash) {
        sqlite3_bind_blob(a, 15, chash, HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(a, 16, hash, HASH_LEN, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(a, 15);
        sqlite3_bind_null(a, 16);
    }
    if (step_done(b->db, a, "audit insert") != 0)
        return -1;
    sqlite3_clear_bindings(a);
    b->head_id = id;
    if (o->audit_hash)
        memcpy(b->head, hash, HASH_LEN);
    return 0;
}

/* Per-origin committed sequence and the audit head, once per transaction, in
 * the same transaction as the changes (as the daemon does per envelope). */
static int commit_txn(bench *b, const options *o, char (*origin_names)[32], uint64_t *origin_seq)
{
    for (uint64_t i = 0; i < o->origins; i++) {
        if (origin_seq[i] == 0)
            continue;
        sqlite3_bind_text(b->origin_put, 1, origin_names[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->origin_put, 2, (sqlite3_int64)origin_seq[i]);
        if (step_done(b->db, b->origin_put, "origin update") != 0)
            return -1;
    }
    sqlite3_bind_blob(b->head_put, 1, b->head, HASH_LEN, SQLITE_STATIC);
    if (step_done(b->db, b->head_put, "audit head update") != 0)
        return -1;
    return exec(b->db, "COMMIT");
}

static int64_t count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int run(const options *o, const char *dbpath)
{
    bench b;
    memset(&b, 0, sizeof b);
    int ret = -1;
    char(*names)[32] = NULL;
    uint64_t *seqs = NULL;
    char *fields = NULL;
    uint8_t *abuf = NULL;

    names = calloc(o->origins, sizeof *names);
    seqs = calloc(o->origins, sizeof *seqs);
    fields = malloc(o->payload + 1);
    abuf = malloc(AUDIT_BUF_MAX);
    b.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    b.md = EVP_MD_CTX_new();
    if (names == NULL || seqs == NULL || fields == NULL || abuf == NULL || b.sha256 == NULL ||
        b.md == NULL) {
        fprintf(stderr, "sqlite_limit: out of memory (or no SHA-256 in OpenSSL)\n");
        goto cleanup;
    }
    for (uint64_t i = 0; i < o->origins; i++)
        snprintf(names[i], sizeof names[i], "gw-%05llu", (unsigned long long)i);

    if (sqlite3_open_v2(dbpath, &b.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        db_fail(b.db, "open");
        goto cleanup;
    }
    /* The daemon's storage settings (daemon/src/sd_store.c): page size,
     * WAL with the given synchronous mode, a checkpoint every ~40 MB. */
    char pragma[160];
    snprintf(pragma, sizeof pragma,
             "PRAGMA page_size=%llu; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
             " PRAGMA wal_autocheckpoint=%llu;",
             (unsigned long long)o->page_size, o->sync,
             (unsigned long long)(40u * 1024 * 1024 / o->page_size));
    if (exec(b.db, pragma) != 0 || exec(b.db, SCHEMA) != 0 || prepare(&b) != 0)
        goto cleanup;

    uint64_t rng = o->seed;
    const uint64_t base_ms = 1714564800000u; /* a fixed epoch: runs are repeatable */
    char key[KEY_MAX], site[32];
    uint64_t start = bench_now_ns();
    uint64_t in_txn = 0;
    for (uint64_t i = 0; i < o->rows; i++) {
        if (in_txn == 0 && exec(b.db, "BEGIN") != 0)
            goto cleanup;
        uint64_t oi = (i / o->envelope) % o->origins;
        uint64_t seq = ++seqs[oi];
        /* One millisecond per change of an origin, counter 0: HLCs rise per
         * origin exactly as a gateway's do. */
        uint64_t hlc = (base_ms + seq) << 16;
        if (o->random_keys) {
            uint64_t hi = bench_rand(&rng), lo = bench_rand(&rng);
            snprintf(key, sizeof key, "%016llx%016llx", (unsigned long long)hi,
                     (unsigned long long)lo);
        } else {
            snprintf(key, sizeof key, "%s-%016llx", names[oi], (unsigned long long)hlc);
        }
        snprintf(site, sizeof site, "site-%05llu", (unsigned long long)oi);
        if (make_fields(fields, o->payload, seq, &rng) != 0) {
            fprintf(stderr, "sqlite_limit: --payload %llu is too small for the fields\n",
                    (unsigned long long)o->payload);
            goto cleanup;
        }
        if (apply_change(&b, o, names[oi], seq, key, site, hlc, fields,
                         (int64_t)(base_ms + i / 1000), abuf) != 0)
            goto cleanup;
        if (++in_txn == o->txn_rows || i + 1 == o->rows) {
            if (commit_txn(&b, o, names, seqs) != 0)
                goto cleanup;
            in_txn = 0;
        }
    }
    uint64_t elapsed = bench_now_ns() - start;

    /* A benchmark that silently wrote less would flatter itself: check. */
    int64_t nrec = count_rows(b.db, "SELECT count(*) FROM record");
    int64_t naud = count_rows(b.db, "SELECT count(*) FROM audit");
    if (nrec != (int64_t)o->rows || naud != (int64_t)o->rows) {
        fprintf(stderr, "sqlite_limit: expected %llu rows, found %lld records, %lld audit\n",
                (unsigned long long)o->rows, (long long)nrec, (long long)naud);
        goto cleanup;
    }
    double secs = (double)elapsed / 1e9;
    printf("sqlite_limit_rows_per_s=%.0f rows=%llu seconds=%.3f keys=%s audit_hash=%s "
           "origins=%llu txn_rows=%llu payload=%llu synchronous=%s page_size=%llu sqlite=%s\n",
           (double)o->rows / secs, (unsigned long long)o->rows, secs,
           o->random_keys ? "random" : "ordered", o->audit_hash ? "on" : "off",
           (unsigned long long)o->origins, (unsigned long long)o->txn_rows,
           (unsigned long long)o->payload, o->sync, (unsigned long long)o->page_size,
           sqlite3_libversion());
    ret = 0;

cleanup:
    sqlite3_finalize(b.upsert);
    sqlite3_finalize(b.audit);
    sqlite3_finalize(b.origin_put);
    sqlite3_finalize(b.head_put);
    if (b.db != NULL && sqlite3_close(b.db) != SQLITE_OK)
        fprintf(stderr, "sqlite_limit: close: %s\n", sqlite3_errmsg(b.db));
    EVP_MD_CTX_free(b.md);
    EVP_MD_free(b.sha256);
    free(names);
    free(seqs);
    free(fields);
    free(abuf);
    return ret;
}

int main(int argc, char **argv)
{
    options o = { .rows = 200000,
                  .txn_rows = 1000,
                  .origins = 10,
                  .envelope = 100,
                  .payload = 400,
                  .seed = 1,
                  .audit_hash = 1,
                  .page_size = 16384,
                  .sync = "FULL" };
    if (parse_args(argc, argv, &o) != 0)
        return 2;

    char dir[4096], dbpath[4200], side[4300];
    int made_dir = 0;
    if (o.dir != NULL) {
        if (snprintf(dir, sizeof dir, "%s", o.dir) >= (int)sizeof dir) {
            fprintf(stderr, "sqlite_limit: --dir is too long\n");
            return 2;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || *tmp == '\0')
            tmp = "/tmp";
        if (snprintf(dir, sizeof dir, "%s/sqlite-limit-XXXXXX", tmp) >= (int)sizeof dir ||
            mkdtemp(dir) == NULL) {
            perror("sqlite_limit: mkdtemp");
            return 1;
        }
        made_dir = 1;
    }
    snprintf(dbpath, sizeof dbpath, "%s/limit.db", dir);
    if (access(dbpath, F_OK) == 0) {
        fprintf(stderr, "sqlite_limit: %s exists; each run needs a fresh database\n", dbpath);
        return 1;
    }

    int rc = run(&o, dbpath);

    if (!o.keep) {
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        for (size_t i = 0; i < 3; i++) {
            snprintf(side, sizeof side, "%s%s", dbpath, suffixes[i]);
            unlink(side);
        }
        if (made_dir)
            rmdir(dir);
    } else {
        fprintf(stderr, "sqlite_limit: kept %s\n", dbpath);
    }
    return rc == 0 ? 0 : 1;
}
