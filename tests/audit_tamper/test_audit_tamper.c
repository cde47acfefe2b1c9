/* test_audit_tamper.c - tampering with the audit log is detected (issue 8
 * item 8, CTest label "audit"): a log of more than 10,000 entries is built
 * through the real store (sd_store_apply), its head saved with
 * `sitesync-admin audit head`; then at >= 1,000 seeded positions (always
 * including the first, the middle and the last) every kind of tampering is
 * applied inside a savepoint that is rolled back afterwards: a column
 * modified (its value or only its type), an entry deleted, two entries
 * swapped, an entry inserted (with a random hash, and forged with a valid
 * chain hash), the tail truncated (leaving the stored head, and rewriting
 * the stored head too, which only the saved head can expose). Each must be
 * reported by the verifier behind `sitesync-admin audit verify` with the
 * right first broken entry; the program itself checks a sample of them
 * end to end on database copies.
 *
 * AUDIT_TAMPER_SEED=N replays another sample; AUDIT_TAMPER_POSITIONS=N
 * changes its size (default 1000, 100 under ASan). */
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sd/admin.h"
#include "sd_store_internal.h"
#include "store_test_util.h"

enum {
    K_MODIFY,
    K_RETYPE,
    K_DELETE,
    K_SWAP,
    K_INSERT_RANDOM,
    K_INSERT_FORGED,
    K_TRUNCATE,
    K_TRUNCATE_REHEAD,
    K__COUNT
};
static const char *const kind_name[K__COUNT] = {
    "modify column",    "change a column's type only",  "delete entry",
    "swap two entries", "insert (random hash)",         "insert (forged chain hash)",
    "truncate tail",    "truncate tail + rewrite head",
};

/* The audit table's columns in order; the hash covers all but the last. */
static const char *const cols[] = { "id",     "at_ms",  "peer",   "fingerprint", "serial",
                                    "path",   "origin", "seq",    "collection",  "key",
                                    "site",   "op",     "fields", "hlc",         "outcome",
                                    "detail", "chash",  "hash" };
#define NCOLS ((int)(sizeof cols / sizeof cols[0]))

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: small, seeded, reproducible. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        SS_TEST_FAIL("%s: %s", sql, msg ? msg : sqlite3_errmsg(db));
}

static void execf(sqlite3 *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void execf(sqlite3 *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    exec_ok(db, sql);
}

/* ---- building the log through the real store ------------------------------ */

static int64_t build_log(sd_store *s)
{
    const char *gw_sites[] = { "s1", "s2", NULL };
    sd_peer gw = mk_peer("gw1", SS_ROLE_GATEWAY, gw_sites);
    const char *hub_sites[] = { "s1", "s2", "s3", NULL };
    sd_peer hub = mk_peer("hub1", SS_ROLE_RELAY, hub_sites);
    snprintf(hub.path, sizeof hub.path, "via hub1");
    ASSERT_EQ(sd_store_begin(s), 0);
    int64_t sid = 0;
    ASSERT_EQ(sd_store_session_begin(s, &gw, T_NOW_MS, &sid), 0);
    gw.session_id = sid;
    ss_hlc_t h0 = ss_hlc_make((uint64_t)T_NOW_MS - 3600000, 0);
    char key[64], title[64];
    envb keep;
    memset(&keep, 0, sizeof keep);
    /* 105 envelopes of 100 changes from two origins: new incidents
     * (applied), older status values (superseded), other sites' records
     * (rejected:forbidden_site), future clocks (rejected:clock_skew). */
    for (int e = 0; e < 105; e++) {
        const char *origin = e % 3 == 2 ? "gw9" : "gw1";
        const sd_peer *p = e % 3 == 2 ? &hub : &gw;
        uint64_t first = (uint64_t)(e % 3 == 2 ? e / 3 : e - e / 3) * 100 + 1;
        envb b;
        envb_init(&b, origin, first);
        for (int i = 0; i < 100; i++) {
            uint64_t seq = first + (uint64_t)i;
            ss_hlc_t h = h0 + seq * 16;
            if (i % 11 == 5) {
                envb_add(&b, mk_status("s1", h0 + (uint64_t)(100 - i), "note", "older"));
            } else if (i % 13 == 7) {
                snprintf(key, sizeof key, "%s-x%llu", origin, (unsigned long long)seq);
                envb_add(&b, mk_incident(key, "s7", h, "not your site"));
            } else if (i % 17 == 3) {
                snprintf(key, sizeof key, "%s-f%llu", origin, (unsigned long long)seq);
                envb_add(&b, mk_incident(key, "s1", ss_hlc_make((uint64_t)T_NOW_MS + 86400000, 0),
                                         "from the future"));
            } else {
                snprintf(key, sizeof key, "%s-%llu", origin, (unsigned long long)seq);
                snprintf(title, sizeof title, "incident %d/%d \"quoted\" \\ é", e, i);
                envb_add(&b, mk_incident(key, i % 2 ? "s1" : "s2", h, title));
            }
        }
        envb_finish(&b);
        sd_result r;
        memset(&r, 0, sizeof r);
        ASSERT_EQ(sd_store_apply(s, p, b.env, b.env_len, T_NOW_MS + e, &r), 0);
        sd_result_free(&r);
        if (e == 4)
            keep = b; /* re-sent below: duplicates */
        else
            envb_free(&b);
        if (e % 10 == 0)
            ASSERT_EQ(sd_store_audit_event(s, &gw, T_NOW_MS + e, e % 20 ? "gw1" : NULL, 0,
                                           "rejected:auth", "HELLO names another node"),
                      0);
    }
    sd_result r;
    memset(&r, 0, sizeof r);
    ASSERT_EQ(sd_store_apply(s, &gw, keep.env, keep.env_len, T_NOW_MS + 200, &r), 0);
    ASSERT_U64_EQ(r.counts.duplicate, 100);
    sd_result_free(&r);
    envb_free(&keep);
    ASSERT_EQ(sd_store_session_end(s, sid, T_NOW_MS + 300, NULL, 1, 2, "test over"), 0);
    ASSERT_EQ(sd_store_commit(s), 0);
    return q_int(s, "SELECT count(*) FROM audit");
}

/* ---- tampering ------------------------------------------------------------ */

/* The hash stored for entry id (zeros for id 0). */
static void entry_hash(sqlite3 *db, int64_t id, uint8_t out[SD_HASH_LEN])
{
    memset(out, 0, SD_HASH_LEN);
    if (id == 0)
        return;
    sqlite3_stmt *st = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE id = ?1", -1, &st, NULL),
              SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_bytes(st, 0), SD_HASH_LEN);
    memcpy(out, sqlite3_column_blob(st, 0), SD_HASH_LEN);
    sqlite3_finalize(st);
}

/* Moves entries id >= k up by one, leaving id k free. */
static void make_room(sqlite3 *db, int64_t k)
{
    execf(db, "UPDATE audit SET id = -id WHERE id >= %lld", (long long)k);
    execf(db, "UPDATE audit SET id = 1 - id WHERE id < 0");
}

/* Applies one tampering at entry k of a log of n entries (the caller holds
 * a savepoint) and returns the entry the verifier must name. *needs_head:
 * only a saved head can reveal it. room_made: for insertions, entries from
 * k on were already moved up by one. */
static int64_t tamper(sd_store *s, int kind, int64_t k, int64_t n, int variant, int room_made,
                      int *needs_head)
{
    sqlite3 *db = sd_store_handle(s);
    *needs_head = 0;
    switch (kind) {
    case K_MODIFY: {
        int c = variant % (NCOLS);
        const char *col = cols[c];
        if (c == 0) {
            /* Renumbered out of place: entry k is missing. */
            execf(db, "UPDATE audit SET id = %lld WHERE id = %lld", (long long)(n + 1000),
                  (long long)k);
        } else if (strcmp(col, "hash") == 0 || strcmp(col, "chash") == 0) {
            execf(db, "UPDATE audit SET %s = randomblob(32) WHERE id = %lld", col, (long long)k);
        } else {
            /* Integers move by one, text gains a byte, NULL becomes a value. */
            execf(db,
                  "UPDATE audit SET %s = CASE typeof(%s) WHEN 'integer' THEN %s + 1"
                  " WHEN 'null' THEN 'x' ELSE %s || 'x' END WHERE id = %lld",
                  col, col, col, col, (long long)k);
        }
        return k;
    }
    case K_RETYPE: {
        /* Same bytes, other type: an integer or a text stored as a blob
         * (column affinity would turn a numeric text back into an
         * integer). The serialization is type-tagged, so it shows. These
         * columns are never NULL in this log. */
        static const char *const typed[] = { "at_ms",       "outcome", "peer",
                                             "fingerprint", "serial",  "path" };
        const char *col = typed[variant % 6];
        execf(db,
              "UPDATE audit SET %s = CASE typeof(%s) WHEN 'integer' THEN"
              " CAST(CAST(%s AS TEXT) AS BLOB) ELSE CAST(%s AS BLOB) END WHERE id = %lld",
              col, col, col, col, (long long)k);
        ASSERT_EQ(sqlite3_changes(db), 1);
        return k;
    }
    case K_DELETE:
        execf(db, "DELETE FROM audit WHERE id = %lld", (long long)k);
        return k;
    case K_SWAP: {
        int64_t a = k < n ? k : n - 1, b = a + 1;
        execf(db, "CREATE TEMP TABLE IF NOT EXISTS sw AS SELECT * FROM audit WHERE 0");
        execf(db, "DELETE FROM temp.sw");
        execf(db, "INSERT INTO temp.sw SELECT * FROM audit WHERE id IN (%lld, %lld)", (long long)a,
              (long long)b);
        execf(db,
              "UPDATE audit SET (at_ms, peer, fingerprint, serial, path, origin, seq, collection,"
              " key, site, op, fields, hlc, outcome, detail, chash, hash) = (SELECT at_ms, peer,"
              " fingerprint, serial, path, origin, seq, collection, key, site, op, fields, hlc,"
              " outcome, detail, chash, hash FROM temp.sw WHERE sw.id = %lld - audit.id)"
              " WHERE id IN (%lld, %lld)",
              (long long)(a + b), (long long)a, (long long)b);
        return a;
    }
    case K_INSERT_RANDOM:
        /* k in 1..n+1: a copy of another entry with a made-up hash. */
        if (!room_made)
            make_room(db, k);
        execf(db,
              "INSERT INTO audit SELECT %lld, at_ms, peer, fingerprint, serial, path, origin,"
              " seq, collection, key, site, op, fields, hlc, outcome, detail, chash,"
              " randomblob(32) FROM audit WHERE id = %lld",
              (long long)k, (long long)(k > 1 ? k - 1 : 2));
        return k;
    case K_INSERT_FORGED: {
        /* An attacker who knows the algorithm chains a forged entry
         * correctly onto entry k-1; the entry after it (the old k, now
         * renumbered) is the first that cannot match. Appended at n+1 it is
         * the stored head that does not cover it. */
        if (!room_made)
            make_room(db, k);
        entry_hash(db, k - 1, s->head_hash);
        s->head_id = k - 1;
        sd_audit_entry e = { 0 };
        e.at_ms = T_NOW_MS + 5;
        e.peer = "gw1";
        e.origin = "gw1";
        e.seq = 4242;
        e.collection = "incident";
        e.key = "gw1-forged";
        e.site = "s1";
        e.op = "create";
        e.fields = "{\"title\":\"nothing happened\"}";
        e.outcome = "applied";
        ASSERT_EQ(sd__audit_append(s, &e), 0);
        /* At k = n the forged entry itself sits where the saved head
         * points, and differs from it. */
        return k < n ? k + 1 : k;
    }
    case K_TRUNCATE:
        execf(db, "DELETE FROM audit WHERE id >= %lld", (long long)k);
        return k;
    case K_TRUNCATE_REHEAD: {
        /* The stored head rewritten to the new tail: the chain is
         * self-consistent, only the saved head shows entries are gone. */
        uint8_t h[SD_HASH_LEN];
        entry_hash(db, k - 1, h);
        execf(db, "DELETE FROM audit WHERE id >= %lld", (long long)k);
        sqlite3_stmt *st = NULL;
        ASSERT_EQ(sqlite3_prepare_v2(db,
                                     "UPDATE meta SET v = CASE k WHEN 'audit_head_id' THEN ?1"
                                     " ELSE ?2 END WHERE k IN ('audit_head_id', 'audit_head_hash')",
                                     -1, &st, NULL),
                  SQLITE_OK);
        sqlite3_bind_int64(st, 1, k - 1);
        sqlite3_bind_blob(st, 2, h, SD_HASH_LEN, SQLITE_STATIC);
        ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        *needs_head = 1;
        return k;
    }
    }
    SS_TEST_FAIL("unknown kind %d", kind);
    return 0;
}

/* ---- the command-line check on a copy ------------------------------------- */

/* Copies the committed database to path. */
static void copy_db(sqlite3 *src, const char *path)
{
    unlink(path);
    sqlite3 *dst = NULL;
    ASSERT_EQ(sqlite3_open(path, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    ASSERT(b != NULL);
    ASSERT_EQ(sqlite3_backup_step(b, -1), SQLITE_DONE);
    ASSERT_EQ(sqlite3_backup_finish(b), SQLITE_OK);
    sqlite3_close(dst);
}

static int run_admin(const char *out, char *const argv[])
{
    unlink(out);
    char cmd[2048];
    size_t len = 0;
    for (int i = 0; argv[i]; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, "'%s' ", argv[i]);
    snprintf(cmd + len, sizeof cmd - len, "> '%s' 2>&1", out);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* ---- one trial ------------------------------------------------------------ */

typedef struct tctx {
    sd_store *s;
    sqlite3 *db;
    int64_t n;
    const sd_audit_head *saved;
    const char *admin, *head_text, *copy, *out;
    uint64_t seed;
    long detected[K__COUNT], trials[K__COUNT];
    double secs[K__COUNT], verify_secs;
    long undetected_without_head, head_only_checked;
    int cli_checked;
} tctx;

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Tampers (kind at entry k) inside a savepoint, checks the verifier names
 * the right entry, rolls back. With cli, the same tampering is also done on
 * a copy of the committed database and checked with sitesync-admin (not
 * for insertions with room_made: the copy has no room made). */
static void trial(tctx *c, int kind, int64_t k, int variant, int room_made, int cli)
{
    sd_audit_report r;
    if (cli) {
        /* The outer savepoint of pass 2 holds moved entries: the copy is
         * taken from a fresh handle on the committed file instead. */
        if (room_made) {
            sd_store *fresh = store_open_at(c->s->path, 1);
            copy_db(sd_store_handle(fresh), c->copy);
            sd_store_close(fresh);
        } else {
            copy_db(c->db, c->copy);
        }
        sd_store *cs = store_open_at(c->copy, 0);
        int nh = 0;
        int64_t want_copy = tamper(cs, kind, k, c->n, variant, 0, &nh);
        sd_store_close(cs);
        char *argv[] = { (char *)c->admin, "--db",   (char *)c->copy,      "audit",
                         "verify",         "--head", (char *)c->head_text, NULL };
        ASSERT_EQ(run_admin(c->out, argv), 1);
        char text[1024], expect[64];
        read_file(c->out, text, sizeof text);
        snprintf(expect, sizeof expect, "audit chain BROKEN at entry %lld:", (long long)want_copy);
        if (!strstr(text, expect))
            SS_TEST_FAIL("%s at %lld: sitesync-admin said: %s", kind_name[kind], (long long)k,
                         text);
        c->cli_checked++;
    }
    clock_t k0 = clock();
    exec_ok(c->db, "SAVEPOINT tamper");
    int needs_head = 0;
    int64_t want = tamper(c->s, kind, k, c->n, variant, room_made, &needs_head);
    c->trials[kind]++;
    if (needs_head && variant % 10 == 0) {
        /* Without the saved head this one is invisible (that is what saving
         * heads is for): make sure the attack is the real thing. */
        ASSERT_EQ(sd_audit_verify(c->s, NULL, &r), 0);
        c->undetected_without_head += r.ok;
        c->head_only_checked++;
    }
    clock_t v0 = clock();
    ASSERT_EQ(sd_audit_verify(c->s, c->saved, &r), 0);
    c->verify_secs += (double)(clock() - v0) / CLOCKS_PER_SEC;
    if (r.ok || r.broken_id != want)
        SS_TEST_FAIL("%s at entry %lld (seed %llu): verify says ok=%d broken=%lld (want %lld): %s",
                     kind_name[kind], (long long)k, (unsigned long long)c->seed, r.ok,
                     (long long)r.broken_id, (long long)want, r.reason);
    c->detected[kind]++;
    exec_ok(c->db, "ROLLBACK TO tamper");
    exec_ok(c->db, "RELEASE tamper");
    ASSERT_EQ(sd__audit_load_head(c->s), 0);
    c->secs[kind] += (double)(clock() - k0) / CLOCKS_PER_SEC;
}

/* ---- the test ------------------------------------------------------------- */

TEST(tamper_detected)
{
    const char *admin = getenv("SITESYNC_ADMIN");
    ASSERT(admin != NULL && admin[0]);
    const char *asan = getenv("SITESYNC_ASAN");
    const char *seed_env = getenv("AUDIT_TAMPER_SEED");
    const char *npos_env = getenv("AUDIT_TAMPER_POSITIONS");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 20261204;
    int under_asan = asan && asan[0] == '1';
    long npos = npos_env ? strtol(npos_env, NULL, 10) : (under_asan ? 100 : 1000);
    ASSERT_GE(npos, 3);
    fprintf(stderr, "audit_tamper: seed %llu, %ld positions (AUDIT_TAMPER_SEED=%llu to replay)\n",
            (unsigned long long)seed, npos, (unsigned long long)seed);
    clock_t t0 = clock();

    tdir d;
    tdir_make(&d);
    char path[256], copy[256], out[256];
    tdir_file(&d, "audit.db", path, sizeof path);
    tdir_file(&d, "copy.db", copy, sizeof copy);
    tdir_file(&d, "admin.out", out, sizeof out);
    sd_store *s = store_open_at(path, 0);
    int64_t n = build_log(s);
    fprintf(stderr, "audit_tamper: log of %lld entries\n", (long long)n);
    ASSERT_GE(n, 10000);
    ASSERT_GE(q_int(s, "SELECT count(DISTINCT outcome) FROM audit"), 5);

    /* The head as an administrator would save it. */
    char *head_argv[] = { (char *)admin, "--db", path, "audit", "head", NULL };
    ASSERT_EQ(run_admin(out, head_argv), 0);
    char head_text[256];
    read_file(out, head_text, sizeof head_text);
    head_text[strcspn(head_text, "\n")] = '\0';
    sd_audit_head saved;
    ASSERT_EQ(sd_audit_head_parse(head_text, &saved), 0);
    ASSERT_EQ(saved.id, n);
    sd_audit_report r;
    ASSERT_EQ(sd_audit_verify(s, &saved, &r), 0);
    ASSERT_EQ(r.ok, 1);
    ASSERT_EQ(r.entries, n);

    sqlite3 *db = sd_store_handle(s);

    /* Positions: first, middle, last, their neighbours, then seeded ones,
     * all distinct. */
    int64_t *pos = calloc((size_t)npos, sizeof *pos);
    unsigned char *used = calloc((size_t)n + 2, 1);
    ASSERT(pos != NULL && used != NULL);
    long np = 0;
    const int64_t fixed[] = { 1, 2, n / 2, n / 2 + 1, n - 1, n };
    for (int i = 0; i < 6 && np < npos; i++)
        if (!used[fixed[i]]) {
            used[fixed[i]] = 1;
            pos[np++] = fixed[i];
        }
    uint64_t rs = seed ? seed : 1;
    while (np < npos && np < n) {
        int64_t k = 1 + (int64_t)(rng_next(&rs) % (uint64_t)n);
        if (!used[k]) {
            used[k] = 1;
            pos[np++] = k;
        }
    }

    tctx c = { .s = s,
               .db = db,
               .n = n,
               .saved = &saved,
               .admin = admin,
               .head_text = head_text,
               .copy = copy,
               .out = out,
               .seed = seed };
    /* Pass 1: the kinds that need no renumbering, at every position (the
     * variants of a kind at every fourth). */
    for (long i = 0; i < np; i++) {
        /* First, middle, last and neighbours; under ASan (a sanitized
         * sitesync-admin per check is slow) the first and the last. */
        int cli = under_asan ? i == 0 || i == 5 : i < 6;
        int every4 = i % 4 == 0;
        trial(&c, K_MODIFY, pos[i], (int)i, 0, cli);
        trial(&c, K_DELETE, pos[i], (int)i, 0, cli);
        trial(&c, K_SWAP, pos[i], (int)i, 0, cli);
        trial(&c, K_TRUNCATE_REHEAD, pos[i], (int)i, 0, cli);
        if (every4 || cli) {
            trial(&c, K_RETYPE, pos[i], (int)i, 0, cli);
            trial(&c, K_TRUNCATE, pos[i], (int)i, 0, cli);
        }
    }
    /* Pass 2: insertions. Making room at k moves every entry from k on, so
     * positions go from the last down, each moving only the entries
     * between it and the previous one (inside an outer savepoint), and the
     * first insertion goes after the last entry. */
    int64_t *desc = calloc((size_t)np + 1, sizeof *desc);
    ASSERT(desc != NULL);
    desc[0] = n + 1;
    memcpy(desc + 1, pos, (size_t)np * sizeof *pos);
    qsort(desc + 1, (size_t)np, sizeof *desc, cmp_desc);
    exec_ok(db, "SAVEPOINT shifted");
    int64_t cur = n + 1; /* entries from cur on sit one above their place */
    for (long i = 0; i <= np; i++) {
        int64_t k = desc[i];
        clock_t m0 = clock();
        if (k < cur) {
            execf(db, "UPDATE audit SET id = -id WHERE id BETWEEN %lld AND %lld", (long long)k,
                  (long long)(cur - 1));
            execf(db, "UPDATE audit SET id = 1 - id WHERE id < 0");
            cur = k;
        }
        double moved = (double)(clock() - m0) / CLOCKS_PER_SEC;
        c.secs[K_INSERT_FORGED] += moved;
        int cli = k == 1 || k >= n || (!under_asan && k == n / 2);
        trial(&c, K_INSERT_FORGED, k, (int)i, 1, cli);
        if (i % 4 == 0 || cli)
            trial(&c, K_INSERT_RANDOM, k, (int)i, 1, cli);
    }
    exec_ok(db, "ROLLBACK TO shifted");
    exec_ok(db, "RELEASE shifted");
    free(desc);

    /* Every rollback left the log intact. */
    ASSERT_EQ(sd_audit_verify(s, &saved, &r), 0);
    ASSERT_EQ(r.ok, 1);
    ASSERT_EQ(r.entries, n);

    long total = 0;
    for (int kind = 0; kind < K__COUNT; kind++) {
        fprintf(stderr,
                "audit_tamper: %-30s %ld/%ld detected, first broken entry named (%.1f s CPU)\n",
                kind_name[kind], c.detected[kind], c.trials[kind], c.secs[kind]);
        ASSERT_EQ(c.detected[kind], c.trials[kind]);
        total += c.trials[kind];
    }
    ASSERT_GE(c.head_only_checked, 1);
    ASSERT_EQ(c.undetected_without_head, c.head_only_checked);
    fprintf(stderr,
            "audit_tamper: %ld tamperings at %ld positions, all detected; %d checked through "
            "sitesync-admin; %.1f s CPU (%.1f s verifying)\n",
            total, np, c.cli_checked, (double)(clock() - t0) / CLOCKS_PER_SEC, c.verify_secs);
    free(pos);
    free(used);
    sd_store_close(s);
    tdir_remove(&d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(tamper_detected))
