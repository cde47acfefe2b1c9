/* merge_speed.c - a quick look at merge + audit throughput: N incident
 * creates (time-ordered keys, ~400-byte changes) from several gateways
 * through sd_store_apply, 10 envelopes of 100 changes per transaction,
 * synchronous=FULL; and, in the same run, raw SQLite doing one upsert and one
 * audit insert per change, one transaction per 1,000 rows. Prints changes/s
 * for both and their ratio; asserts nothing (bench/ owns the real figures).
 * Usage: daemon_store_merge_speed [N] */
#include <time.h>

#include "store_test_util.h"

#include "sd/writer.h"

#define PER_ENV     100
#define ENV_PER_TXN 10
#define NGW         8

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const SITES[] = { "site-0", "site-1", "site-2", "site-3", "site-4",
                                     "site-5", "site-6", "site-7", NULL };

static const char desc[] = "Perimeter sensor 14 reported a sustained vibration pattern along the "
                           "north fence; patrol dispatched, camera 3 shows two figures near the "
                           "gate. Access control log shows no badge use in the period.";

static double raw_sqlite(const char *path, long n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *up = NULL, *au = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                           "CREATE TABLE rec(key TEXT PRIMARY KEY, doc TEXT, hlc INTEGER,"
                           " origin TEXT);"
                           "CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER, origin TEXT,"
                           " seq INTEGER, key TEXT, fields TEXT, hlc INTEGER, outcome TEXT);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO rec VALUES(?1, ?2, ?3, ?4) ON CONFLICT(key) DO"
                                 " UPDATE SET doc = excluded.doc, hlc = excluded.hlc,"
                                 " origin = excluded.origin WHERE excluded.hlc > rec.hlc",
                                 -1, &up, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO audit(at, origin, seq, key, fields, hlc, outcome)"
                                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 'applied')",
                                 -1, &au, NULL),
              SQLITE_OK);
    char key[64], doc[512];
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        if (i % 1000 == 0)
            ASSERT_EQ(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        int g = (int)(i % NGW);
        snprintf(key, sizeof key, "gw-%d-%016lx", g, 0x100000000L + i);
        snprintf(doc, sizeof doc,
                 "{\"category\":\"intrusion\",\"severity\":3,\"title\":\"Fence alarm %ld\","
                 "\"description\":\"%s\"}",
                 i, desc);
        sqlite3_bind_text(up, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 2, doc, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 3, i + 1);
        sqlite3_bind_text(up, 4, "gw", -1, SQLITE_STATIC);
        ASSERT_EQ(sqlite3_step(up), SQLITE_DONE);
        sqlite3_reset(up);
        sqlite3_bind_int64(au, 1, i);
        sqlite3_bind_text(au, 2, "gw", -1, SQLITE_STATIC);
        sqlite3_bind_int64(au, 3, i + 1);
        sqlite3_bind_text(au, 4, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 5, doc, -1, SQLITE_STATIC);
        sqlite3_bind_int64(au, 6, i + 1);
        ASSERT_EQ(sqlite3_step(au), SQLITE_DONE);
        sqlite3_reset(au);
        if (i % 1000 == 999 || i == n - 1)
            ASSERT_EQ(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    }
    double dt = now_s() - t0;
    sqlite3_finalize(up);
    sqlite3_finalize(au);
    sqlite3_close(db);
    return (double)n / dt;
}

typedef struct wrun {
    long done;
} wrun;

static void on_done(sd_job *job, void *arg)
{
    wrun *w = arg;
    if (job->result.code != 0)
        SS_TEST_FAIL("writer job: %d %s", job->result.code, job->result.message);
    w->done++;
}

static void on_stop(void *arg)
{
    (void)arg;
}

/* Through the group-commit writer thread, as sitesyncd feeds it. */
static double via_writer(const char *path, envb *envs, long nenv, sd_peer *peers)
{
    uv_loop_t loop;
    sd_writer *w = NULL;
    wrun st = { 0 };
    ASSERT_EQ(uv_loop_init(&loop), 0);
    sd_store *s = store_open_at(path, 0);
    sd_writer_config cfg = { .max_batch = 256, .prepare_threads = 2 };
    ASSERT_EQ(sd_writer_new(&loop, s, &cfg, &w), 0);
    double t0 = now_s();
    for (long k = 0; k < nenv; k++) {
        sd_job *j = sd_job_new(SD_JOB_APPLY);
        ASSERT(j != NULL);
        j->peer = peers[k % NGW];
        j->now_ms = T_NOW_MS;
        j->env = ss_malloc(envs[k].env_len);
        ASSERT(j->env != NULL);
        memcpy(j->env, envs[k].env, envs[k].env_len);
        j->env_len = envs[k].env_len;
        j->cb = on_done;
        j->arg = &st;
        ASSERT_EQ(sd_writer_submit(w, j), 0);
    }
    while (st.done < nenv)
        uv_run(&loop, UV_RUN_ONCE);
    double rate = (double)(nenv * PER_ENV) / (now_s() - t0);
    sd_writer_stats ws;
    sd_writer_get_stats(w, &ws);
    printf("writer_transactions=%llu writer_max_batch=%zu\n", (unsigned long long)ws.transactions,
           ws.max_batch_seen);
    sd_writer_stop(w, on_stop, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    sd_writer_destroy(w);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    return rate;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    /* "merge-only": one merge round, no raw baseline (for profiling);
     * "writer": through the group-commit writer thread. */
    int merge_only = argc > 2 && strcmp(argv[2], "merge-only") == 0;
    int writer = argc > 2 && strcmp(argv[2], "writer") == 0;
    if (n < PER_ENV * NGW)
        n = PER_ENV * NGW;
    long nenv = n / PER_ENV;
    tdir d;
    char path[256], rawpath[256];
    tdir_make(&d);
    tdir_file(&d, "merge.db", path, sizeof path);
    tdir_file(&d, "raw.db", rawpath, sizeof rawpath);

    envb *envs = calloc((size_t)nenv, sizeof *envs);
    sd_peer *peers = calloc(NGW, sizeof *peers);
    ASSERT(envs && peers);
    char node[NGW][32];
    uint64_t next_seq[NGW];
    for (int g = 0; g < NGW; g++) {
        snprintf(node[g], sizeof node[g], "gw-%d", g);
        const char *sites[2] = { SITES[g], NULL };
        peers[g] = mk_peer(node[g], SS_ROLE_GATEWAY, sites);
        next_seq[g] = 1;
    }
    char title[64];
    for (long k = 0; k < nenv; k++) {
        int g = (int)(k % NGW);
        envb_init(&envs[k], node[g], next_seq[g]);
        for (int i = 0; i < PER_ENV; i++) {
            long idx = k * PER_ENV + i;
            ss_hlc_t h = ss_hlc_make((uint64_t)T_NOW_MS - 3600000 + (uint64_t)idx / 16,
                                     (uint32_t)(idx % 16));
            char key[64];
            ASSERT_GT(ss_incident_key(key, sizeof key, node[g], h), 0);
            snprintf(title, sizeof title, "Fence alarm %ld", idx);
            ss_change ch = mk_change("incident", key, SITES[g], SS_OP_CREATE, h);
            ch_set(&ch, "category", "intrusion");
            ch_set(&ch, "severity", "3");
            ch_set(&ch, "title", title);
            ch_set(&ch, "description", desc);
            envb_add(&envs[k], ch);
        }
        envb_finish(&envs[k]);
        next_seq[g] += PER_ENV;
    }

    /* The proto/ share of the work: envelope and body parsing alone. */
    double t0 = now_s();
    for (long k = 0; k < nenv; k++) {
        ss_envelope env;
        ss_body *body = NULL;
        ss_verr verr;
        ASSERT_EQ(ss_envelope_parse(envs[k].env, envs[k].env_len, &env), 0);
        ASSERT_EQ(ss_body_parse(&env, &body, &verr), 0);
        ss_body_free(body);
    }
    double parse = (double)(nenv * PER_ENV) / (now_s() - t0);

    if (writer) {
        printf("writer_changes_per_s=%.0f\n", via_writer(path, envs, nenv, peers));
        for (long k = 0; k < nenv; k++)
            envb_free(&envs[k]);
        free(envs);
        free(peers);
        tdir_remove(&d);
        return 0;
    }
    /* The machine is shared: alternate merge and raw runs and keep the best
     * of each, so both see the same conditions. */
    double merge = 0, raw = 0;
    for (int round = 0; round < (merge_only ? 1 : 3); round++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "rm -f '%s' '%s'-wal '%s'-shm '%s' '%s'-wal '%s'-shm", path, path,
                 path, rawpath, rawpath, rawpath);
        ASSERT_EQ(system(cmd), 0);
        sd_store *s = store_open_at(path, 0);
        t0 = now_s();
        for (long k = 0; k < nenv; k++) {
            if (k % ENV_PER_TXN == 0)
                ASSERT_EQ(sd_store_begin(s), 0);
            sd_result r;
            int rc = sd_store_apply(s, &peers[k % NGW], envs[k].env, envs[k].env_len, T_NOW_MS, &r);
            if (rc)
                SS_TEST_FAIL("apply %ld: %d %s", k, rc, r.message);
            ASSERT_U64_EQ(r.counts.applied, PER_ENV);
            sd_result_free(&r);
            if (k % ENV_PER_TXN == ENV_PER_TXN - 1 || k == nenv - 1)
                ASSERT_EQ(sd_store_commit(s), 0);
        }
        double m = (double)(nenv * PER_ENV) / (now_s() - t0);
        sd_store_close(s);
        double rw = merge_only ? 1 : raw_sqlite(rawpath, nenv * PER_ENV);
        merge = m > merge ? m : merge;
        raw = rw > raw ? rw : raw;
    }
    printf("changes=%ld merge_changes_per_s=%.0f raw_sqlite_rows_per_s=%.0f ratio=%.2f"
           " proto_parse_changes_per_s=%.0f\n",
           nenv * PER_ENV, merge, raw, merge / raw, parse);
    for (long k = 0; k < nenv; k++)
        envb_free(&envs[k]);
    free(envs);
    free(peers);
    tdir_remove(&d);
    return 0;
}
