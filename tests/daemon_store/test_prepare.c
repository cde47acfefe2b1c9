/* test_prepare.c - the prepare stage (sd_prepare, sd_store_apply_prepared)
 * and the writer's prepare threads: whatever the number of threads, the
 * look-ahead and the batch size, every job gets the same result and the
 * database (audit chain, records, losers, sequences) ends byte for byte the
 * same as with the writer doing everything itself; a verdict prepared
 * before the verifier's trust store changed is made again; a prepared
 * envelope is only accepted for the bytes it was made from. */
#include <stdatomic.h>
#include <time.h>

#include "store_test_util.h"

#include "proto/relay.h"
#include "sd/sig.h"
#include "sd/writer.h"

static const char *const HYDRO[] = { "hydro-1", NULL };
static const char *const MINE[] = { "mine-7", NULL };

/* ---- a scripted mix of jobs ---- */

typedef struct script_job {
    sd_job_kind kind;
    uint8_t *env; /* APPLY: envelope bytes (malloc'd) */
    size_t env_len;
    sd_peer peer;
} script_job;

typedef struct script {
    script_job jobs[400];
    int n;
} script;

static void add_env(script *sc, const sd_peer *peer, envb *e)
{
    ASSERT_LT(sc->n, 400);
    script_job *j = &sc->jobs[sc->n++];
    j->kind = SD_JOB_APPLY;
    j->env = malloc(e->env_len);
    ASSERT(j->env != NULL);
    memcpy(j->env, e->env, e->env_len);
    j->env_len = e->env_len;
    j->peer = *peer;
    envb_free(e);
}

static void add_kind(script *sc, const sd_peer *peer, sd_job_kind kind)
{
    ASSERT_LT(sc->n, 400);
    script_job *j = &sc->jobs[sc->n++];
    memset(j, 0, sizeof *j);
    j->kind = kind;
    j->peer = *peer;
}

/* Envelope of origin `node`, changes seq first..first+n-1 on `site`. */
static void incidents(envb *e, const char *node, const char *site, uint64_t first, int n,
                      const char *title)
{
    envb_init(e, node, first);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s-%06llu", node, (unsigned long long)(first + (uint64_t)i));
        envb_add(e, mk_incident(key, site, ss_hlc_make((uint64_t)T_NOW_MS - 50000 + first + i, 0),
                                title));
    }
    envb_finish(e);
}

/* Every outcome the merge knows, interleaved over two origins: applied,
 * superseded, duplicate ranges, a gap, tampering, a malformed envelope, a
 * malformed body, per-change schema and site refusals, a gateway speaking
 * for another origin, and non-APPLY jobs between them. */
static void build_script(script *sc)
{
    memset(sc, 0, sizeof *sc);
    sd_peer hydro = mk_peer("gw-hydro", SS_ROLE_GATEWAY, HYDRO);
    sd_peer mine = mk_peer("gw-mine", SS_ROLE_GATEWAY, MINE);
    envb e;
    add_kind(sc, &hydro, SD_JOB_SESSION_BEGIN);
    uint64_t hseq = 1, mseq = 1;
    for (int k = 0; k < 120; k++) {
        incidents(&e, "gw-hydro", "hydro-1", hseq, 3, "Door forced");
        hseq += 3;
        add_env(sc, &hydro, &e);
        if (k % 4 == 0) {
            incidents(&e, "gw-mine", "mine-7", mseq, 2, "Fence cut");
            mseq += 2;
            add_env(sc, &mine, &e);
        }
        if (k == 10) { /* the same range again: duplicates */
            incidents(&e, "gw-hydro", "hydro-1", 4, 3, "Door forced");
            add_env(sc, &hydro, &e);
        }
        if (k == 20) { /* a committed sequence with other content: tamper */
            incidents(&e, "gw-hydro", "hydro-1", 7, 3, "Something else");
            add_env(sc, &hydro, &e);
        }
        if (k == 30) { /* a gap */
            incidents(&e, "gw-hydro", "hydro-1", hseq + 10, 2, "Too early");
            add_env(sc, &hydro, &e);
        }
        if (k == 40) { /* truncated: not an envelope */
            incidents(&e, "gw-hydro", "hydro-1", hseq, 2, "Cut short");
            e.env_len -= 3;
            add_env(sc, &hydro, &e);
        }
        if (k == 50) { /* a body whose seq lies about the range */
            envb_init(&e, "gw-hydro", hseq);
            const char *bad = "{\"seq\":1,\"hlc\":\"0000000000000001\"}";
            envb_add_raw(&e, bad, strlen(bad));
            envb_finish(&e);
            add_env(sc, &hydro, &e);
        }
        if (k == 60) { /* per change: bad enum, another site, older write */
            envb_init(&e, "gw-hydro", hseq);
            {
                /* A value the schema refuses (mk_status would not build it). */
                ss_change ch = mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 100, 0),
                                         "alert_level", "high");
                ch.seq = e.first + e.count;
                char buf[2048], bad[2048];
                int n = ss_change_encode(&ch, buf, sizeof buf);
                ASSERT_GT(n, 0);
                const char *at = strstr(buf, "\"high\"");
                ASSERT(at != NULL);
                int m = snprintf(bad, sizeof bad, "%.*s\"purple\"%s", (int)(at - buf), buf, at + 6);
                ASSERT_GT(m, 0);
                envb_add_raw(&e, bad, (size_t)m);
            }
            envb_add(&e, mk_status("mine-7", ss_hlc_make((uint64_t)T_NOW_MS - 100, 0),
                                   "alert_level", "high"));
            envb_add(&e, mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 100, 0),
                                   "alert_level", "high"));
            envb_add(&e, mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 900, 0),
                                   "alert_level", "normal"));
            envb_add(&e, mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS + 3600000, 0),
                                   "alert_level", "critical"));
            envb_finish(&e);
            hseq += 5;
            add_env(sc, &hydro, &e);
        }
        if (k == 70) { /* gw-mine speaking for gw-hydro */
            incidents(&e, "gw-hydro", "hydro-1", hseq, 1, "Not mine");
            add_env(sc, &mine, &e);
            add_kind(sc, &hydro, SD_JOB_AUDIT_EVENT);
        }
    }
    add_kind(sc, &hydro, SD_JOB_SESSION_END);
}

static void script_free(script *sc)
{
    for (int i = 0; i < sc->n; i++)
        free(sc->jobs[i].env);
}

/* ---- running it through a writer ---- */

typedef struct wrun {
    uv_loop_t loop;
    tdir dir;
    char path[256];
    sd_writer *w;
    int done_cbs, stopped;
    char log[400][96]; /* each job's result, by submission index */
    int order_ok;      /* callbacks came in submission order */
    int next_idx;
} wrun;

static void on_done(sd_job *job, void *arg)
{
    wrun *r = arg;
    int idx = (int)job->seq; /* the script index, carried in seq */
    if (idx != r->next_idx)
        r->order_ok = 0;
    r->next_idx++;
    snprintf(r->log[idx], sizeof r->log[idx], "%d c=%llu a=%llu s=%llu d=%llu r=%llu n=%d",
             job->result.code, (unsigned long long)job->result.committed,
             (unsigned long long)job->result.counts.applied,
             (unsigned long long)job->result.counts.superseded,
             (unsigned long long)job->result.counts.duplicate,
             (unsigned long long)job->result.counts.rejected, job->result.nrejects);
    r->done_cbs++;
}

static void on_stopped(void *arg)
{
    ((wrun *)arg)->stopped = 1;
}

/* FNV-1a over every column of every row a query returns. */
static uint64_t q_hash(sd_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(sd_store_handle(s), sql, -1, &st, NULL), SQLITE_OK);
    uint64_t h = 1469598103934665603ULL;
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        rows++;
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const uint8_t *p = sqlite3_column_blob(st, c);
            int n = sqlite3_column_bytes(st, c);
            for (int i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
            h = (h ^ (uint64_t)(sqlite3_column_type(st, c) + 0x100)) * 1099511628211ULL;
        }
    }
    sqlite3_finalize(st);
    return h ^ (uint64_t)rows;
}

/* What the database holds, to compare: every row of the audit log (ids,
 * times, outcomes, details, chain hashes), records, losers, sequences,
 * consumed ranges, peers, sites and sessions. */
static void db_digest(const char *path, char *out, size_t cap)
{
    static const char *const q[] = {
        "SELECT * FROM audit ORDER BY id",
        "SELECT * FROM records ORDER BY collection, key",
        "SELECT * FROM losers ORDER BY id",
        "SELECT * FROM origins ORDER BY origin",
        "SELECT * FROM consumed ORDER BY origin, first_seq",
        "SELECT * FROM peers ORDER BY node",
        "SELECT * FROM sites ORDER BY site",
        "SELECT * FROM sessions ORDER BY id",
    };
    sd_store *ro = store_open_at(path, 1);
    size_t pos = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        int n = snprintf(out + pos, cap - pos, "%016llx ", (unsigned long long)q_hash(ro, q[i]));
        ASSERT(n > 0 && (size_t)n < cap - pos);
        pos += (size_t)n;
    }
    int n =
        snprintf(out + pos, cap - pos, "audit=%lld losers=%lld",
                 q_int(ro, "SELECT count(*) FROM audit"), q_int(ro, "SELECT count(*) FROM losers"));
    ASSERT(n > 0 && (size_t)n < cap - pos);
    sd_store_close(ro);
}

static void run_script(const script *sc, size_t threads, size_t ahead, size_t batch, wrun *r,
                       char *digest, size_t dcap)
{
    memset(r, 0, sizeof *r);
    r->order_ok = 1;
    ASSERT_EQ(uv_loop_init(&r->loop), 0);
    tdir_make(&r->dir);
    tdir_file(&r->dir, "p.db", r->path, sizeof r->path);
    sd_store *s = store_open_at(r->path, 0);
    sd_writer_config cfg = { .max_batch = batch,
                             .prepare_threads = threads,
                             .prepare_ahead = ahead };
    ASSERT_EQ(sd_writer_new(&r->loop, s, &cfg, &r->w), 0);
    for (int i = 0; i < sc->n; i++) {
        const script_job *sj = &sc->jobs[i];
        sd_job *j = sd_job_new(sj->kind);
        ASSERT(j != NULL);
        j->peer = sj->peer;
        j->now_ms = T_NOW_MS;
        j->seq = (uint64_t)i;
        j->cb = on_done;
        j->arg = r;
        if (sj->kind == SD_JOB_APPLY) {
            j->env = ss_malloc(sj->env_len);
            ASSERT(j->env != NULL);
            memcpy(j->env, sj->env, sj->env_len);
            j->env_len = sj->env_len;
        } else if (sj->kind == SD_JOB_AUDIT_EVENT) {
            snprintf(j->outcome, sizeof j->outcome, "rejected:protocol");
            snprintf(j->text, sizeof j->text, "unexpected frame %d", i);
        } else if (sj->kind == SD_JOB_SESSION_END) {
            j->session_id = 1; /* the SESSION_BEGIN at the head */
            snprintf(j->text, sizeof j->text, "bye");
        }
        ASSERT_EQ(sd_writer_submit(r->w, j), 0);
        /* Now and then let callbacks run, so submissions and commits
         * interleave as they do in the daemon. */
        if (i % 37 == 0)
            uv_run(&r->loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < 1000000 && r->done_cbs < sc->n; i++)
        uv_run(&r->loop, UV_RUN_ONCE);
    ASSERT_EQ(r->done_cbs, sc->n);
    ASSERT_EQ(r->order_ok, 1);
    ASSERT_EQ(sd_writer_pending(r->w), 0);
    sd_writer_stats st;
    sd_writer_get_stats(r->w, &st);
    ASSERT_EQ(st.failed_transactions, 0);
    if (threads == 0) {
        ASSERT_U64_EQ(st.prepared_ahead, 0);
        ASSERT_U64_EQ(st.prepared_inline, 0);
    } else {
        /* Every APPLY job was prepared once, by a thread or the writer. */
        int napply = 0;
        for (int i = 0; i < sc->n; i++)
            napply += sc->jobs[i].kind == SD_JOB_APPLY;
        ASSERT_U64_EQ(st.prepared_ahead + st.prepared_inline, (uint64_t)napply);
    }
    sd_writer_stop(r->w, on_stopped, r);
    for (int i = 0; i < 100000 && !r->stopped; i++)
        uv_run(&r->loop, UV_RUN_ONCE);
    ASSERT_EQ(r->stopped, 1);
    sd_writer_destroy(r->w);
    ASSERT_EQ(uv_loop_close(&r->loop), 0);
    db_digest(r->path, digest, dcap);
    tdir_remove(&r->dir);
}

TEST(pool_gives_inline_outcomes_for_every_case)
{
    static script sc;
    static wrun ref, got;
    static char want[512], have[512];
    build_script(&sc);
    run_script(&sc, 0, 0, 256, &ref, want, sizeof want);
    /* The reference itself saw every kind of outcome. */
    int seen_gap = 0, seen_tamper = 0, seen_rej = 0, seen_dup = 0, seen_auth = 0;
    for (int i = 0; i < sc.n; i++) {
        int code = (int)strtol(ref.log[i], NULL, 10);
        seen_gap |= code == SS_EGAP;
        seen_tamper |= code == SS_ETAMPER;
        seen_auth |= code == SS_EAUTH;
        seen_rej |= strstr(ref.log[i], " n=0") == NULL;
        seen_dup |= strstr(ref.log[i], " d=0 ") == NULL;
    }
    ASSERT(seen_gap && seen_tamper && seen_rej && seen_dup && seen_auth);
    ASSERT(strstr(want, "losers=0") == NULL); /* the older write lost */

    static const size_t cfgs[][3] = {
        /* threads, ahead, batch */
        { 1, 64, 256 }, { 2, 64, 256 }, { 2, 1, 256 }, { 4, 3, 7 }, { 2, 64, 1 }, { 3, 500, 64 },
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        run_script(&sc, cfgs[c][0], cfgs[c][1], cfgs[c][2], &got, have, sizeof have);
        for (int i = 0; i < sc.n; i++) {
            if (strcmp(ref.log[i], got.log[i]) != 0)
                SS_TEST_FAIL("threads %zu ahead %zu batch %zu, job %d: %s, inline gave %s",
                             cfgs[c][0], cfgs[c][1], cfgs[c][2], i, got.log[i], ref.log[i]);
        }
        ASSERT_STR_EQ(have, want);
    }
    script_free(&sc);
}

static int fail_commits(void *arg)
{
    atomic_int *flag = arg;
    return atomic_load(flag);
}

typedef struct fctx {
    int ok, failed, cbs, stopped;
} fctx;

static void f_done(sd_job *job, void *arg)
{
    fctx *f = arg;
    f->cbs++;
    if (job->result.code == 0)
        f->ok++;
    else
        f->failed++;
}

static void f_stopped(void *arg)
{
    ((fctx *)arg)->stopped = 1;
}

/* A fresh store in d with a commit hook, for the writer tests below. */
static sd_store *hooked_store(tdir *d, const char *name, char *path, size_t cap,
                              int (*hook)(void *), void *arg)
{
    tdir_make(d);
    tdir_file(d, name, path, cap);
    sd_store *s = store_open_at(path, 0);
    sqlite3_commit_hook(sd_store_handle(s), hook, arg);
    return s;
}

/* Stops w (bounded), frees it and closes the loop. */
static void stop_writer(uv_loop_t *loop, sd_writer *w, fctx *f)
{
    sd_writer_stop(w, f_stopped, f);
    for (int i = 0; i < 100000 && !f->stopped; i++)
        uv_run(loop, UV_RUN_ONCE);
    ASSERT_EQ(f->stopped, 1);
    sd_writer_destroy(w);
    ASSERT_EQ(uv_loop_close(loop), 0);
}

static sd_job *incident_job(uint64_t first, void *arg)
{
    envb e;
    incidents(&e, "gw-hydro", "hydro-1", first, 2, "Door forced");
    sd_job *j = sd_job_new(SD_JOB_APPLY);
    ASSERT(j != NULL);
    j->peer = mk_peer("gw-hydro", SS_ROLE_GATEWAY, HYDRO);
    j->now_ms = T_NOW_MS;
    j->env = ss_malloc(e.env_len);
    ASSERT(j->env != NULL);
    memcpy(j->env, e.env, e.env_len);
    j->env_len = e.env_len;
    j->cb = f_done;
    j->arg = arg;
    envb_free(&e);
    return j;
}

TEST(pool_failed_commit_acknowledges_nothing_then_recovers)
{
    uv_loop_t loop;
    tdir d;
    char path[256];
    atomic_int flag;
    atomic_init(&flag, 1);
    ASSERT_EQ(uv_loop_init(&loop), 0);
    sd_store *s = hooked_store(&d, "f.db", path, sizeof path, fail_commits, &flag);
    sd_writer *w = NULL;
    sd_writer_config cfg = { .max_batch = 16, .prepare_threads = 2, .prepare_ahead = 4 };
    ASSERT_EQ(sd_writer_new(&loop, s, &cfg, &w), 0);
    fctx f = { 0 };
    for (uint64_t k = 0; k < 40; k++)
        ASSERT_EQ(sd_writer_submit(w, incident_job(1 + 2 * k, &f)), 0);
    for (int i = 0; i < 100000 && f.cbs < 40; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(f.failed, 40);
    {
        sd_store *ro = store_open_at(path, 1);
        ASSERT_EQ(q_int(ro, "SELECT count(*) FROM origins"), 0);
        ASSERT_EQ(q_int(ro, "SELECT count(*) FROM records"), 0);
        sd_store_close(ro);
    }
    atomic_store(&flag, 0);
    for (uint64_t k = 0; k < 40; k++)
        ASSERT_EQ(sd_writer_submit(w, incident_job(1 + 2 * k, &f)), 0);
    for (int i = 0; i < 100000 && f.cbs < 80; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(f.ok, 40);
    stop_writer(&loop, w, &f);
    sd_store *ro = store_open_at(path, 1);
    ASSERT_EQ(q_int(ro, "SELECT committed FROM origins WHERE origin = 'gw-hydro'"), 80);
    /* After REOPEN_AFTER failures the writer reopens the handle, which
     * drops this test's commit hook: later round-one envelopes may then
     * have been refused (and audited) as gaps, never applied. */
    ASSERT_EQ(q_int(ro, "SELECT count(*) FROM audit WHERE outcome = 'applied'"), 80);
    ASSERT_EQ(q_int(ro, "SELECT count(*) FROM audit WHERE outcome NOT IN ('applied', "
                        "'rejected:gap')"),
              0);
    sd_store_close(ro);
    tdir_remove(&d);
}

/* Holds the first commit until released (bounded: 10 s), so the prepare
 * threads run as far ahead of a stalled writer as they are allowed. */
static int hold_commit(void *arg)
{
    atomic_int *hold = arg;
    for (int i = 0; i < 2000 && atomic_load(hold); i++) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

TEST(prepare_ahead_is_bounded_in_bytes)
{
    uv_loop_t loop;
    tdir d;
    char path[256];
    atomic_int hold;
    atomic_init(&hold, 1);
    ASSERT_EQ(uv_loop_init(&loop), 0);
    sd_store *s = hooked_store(&d, "b.db", path, sizeof path, hold_commit, &hold);
    fctx f = { 0 };
    sd_job *jobs[40];
    for (uint64_t k = 0; k < 40; k++)
        jobs[k] = incident_job(1 + 2 * k, &f);
    size_t len = jobs[0]->env_len;
    /* Room for three envelopes' bytes, where the count alone allows 64. */
    sd_writer *w = NULL;
    sd_writer_config cfg = { .max_batch = 1,
                             .prepare_threads = 2,
                             .prepare_ahead = 64,
                             .prepare_ahead_bytes = 3 * len + len / 2 };
    ASSERT_EQ(sd_writer_new(&loop, s, &cfg, &w), 0);
    for (int k = 0; k < 40; k++)
        ASSERT_EQ(sd_writer_submit(w, jobs[k]), 0);
    /* The writer sits in its first COMMIT; give the pool time to run ahead. */
    sd_writer_stats st;
    for (int i = 0; i < 100; i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
        sd_writer_get_stats(w, &st);
        if (st.prepared_ahead >= 4)
            break;
    }
    struct timespec settle = { 0, 100000000 };
    nanosleep(&settle, NULL);
    sd_writer_get_stats(w, &st);
    ASSERT(st.prepared_ahead >= 3);
    ASSERT(st.prepared_ahead <= 4); /* 3 ahead, plus the one the writer holds */
    ASSERT(st.max_ahead_bytes <= 3 * len + len / 2);
    atomic_store(&hold, 0);
    for (int i = 0; i < 100000 && f.cbs < 40; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(f.ok, 40);
    sd_writer_get_stats(w, &st);
    ASSERT(st.max_ahead_bytes <= 3 * len + len / 2);
    stop_writer(&loop, w, &f);
    sd_store *ro = store_open_at(path, 1);
    ASSERT_EQ(q_int(ro, "SELECT committed FROM origins WHERE origin = 'gw-hydro'"), 80);
    sd_store_close(ro);
    tdir_remove(&d);
}

TEST(pool_stop_right_after_submit_drains_everything)
{
    for (size_t threads = 1; threads <= 4; threads += 3) {
        uv_loop_t loop;
        tdir d;
        char path[256];
        ASSERT_EQ(uv_loop_init(&loop), 0);
        tdir_make(&d);
        tdir_file(&d, "s.db", path, sizeof path);
        sd_writer *w = NULL;
        sd_writer_config cfg = { .max_batch = 8, .prepare_threads = threads, .prepare_ahead = 5 };
        ASSERT_EQ(sd_writer_new(&loop, store_open_at(path, 0), &cfg, &w), 0);
        fctx f = { 0 };
        for (uint64_t k = 0; k < 200; k++)
            ASSERT_EQ(sd_writer_submit(w, incident_job(1 + 2 * k, &f)), 0);
        sd_writer_stop(w, f_stopped, &f);
        for (int i = 0; i < 100000 && !f.stopped; i++)
            uv_run(&loop, UV_RUN_ONCE);
        ASSERT_EQ(f.stopped, 1);
        ASSERT_EQ(f.ok, 200);
        sd_writer_destroy(w);
        ASSERT_EQ(uv_loop_close(&loop), 0);
        sd_store *ro = store_open_at(path, 1);
        ASSERT_EQ(q_int(ro, "SELECT committed FROM origins WHERE origin = 'gw-hydro'"), 400);
        sd_store_close(ro);
        tdir_remove(&d);
    }
}

TEST(writer_refuses_too_many_prepare_threads)
{
    uv_loop_t loop;
    tdir d;
    char path[256];
    ASSERT_EQ(uv_loop_init(&loop), 0);
    tdir_make(&d);
    tdir_file(&d, "t.db", path, sizeof path);
    sd_store *s = store_open_at(path, 0);
    sd_writer *w = NULL;
    sd_writer_config cfg = { .prepare_threads = SD_WRITER_MAX_PREPARE_THREADS + 1 };
    ASSERT_EQ(sd_writer_new(&loop, s, &cfg, &w), SS_EINVAL);
    ASSERT(w == NULL);
    sd_store_close(s);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    tdir_remove(&d);
}

/* ---- the synchronous API ---- */

/* A SIGNED envelope whose signature block is junk: every verifier refuses
 * it (SS_ESIG) without needing a PKI, and counts the refusal. */
static void junk_signed(envb *e, uint8_t **out, size_t *len)
{
    incidents(e, "gw-hydro", "hydro-1", 1, 2, "Signed?");
    size_t hl = ss_envelope_header_len("gw-hydro");
    size_t blen = e->env_len - hl;
    uint8_t *p = malloc(e->env_len + 2 + 5);
    ASSERT(p != NULL);
    ASSERT_EQ(ss_envelope_write_header(p, hl, "gw-hydro", 1, 2, (uint32_t)blen, SS_ENV_FLAG_SIGNED),
              (long long)hl);
    memcpy(p + hl, e->env + hl, blen);
    p[hl + blen] = 0;
    p[hl + blen + 1] = 5;
    memcpy(p + hl + blen + 2, "junk!", 5);
    *out = p;
    *len = e->env_len + 7;
}

static uint64_t refused(sd_sig *sig)
{
    sd_sig_stats st;
    sd_sig_get_stats(sig, &st);
    return st.refused;
}

TEST(prepared_signature_verdict_is_redone_after_a_reload)
{
    tdir d;
    char path[256];
    tdir_make(&d);
    tdir_file(&d, "g.db", path, sizeof path);
    sd_store *s = store_open_at(path, 0);
    sd_sig *sig = NULL;
    ASSERT_EQ(sd_sig_new(16, &sig), 0);
    sd_store_set_sig(s, sig, 1);
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, HYDRO);
    sd_preparer *pp = NULL, *nosig = NULL;
    ASSERT_EQ(sd_preparer_new(sig, &pp), 0);
    ASSERT_EQ(sd_preparer_new(NULL, &nosig), 0);
    envb e;
    uint8_t *env = NULL;
    size_t len = 0;
    junk_signed(&e, &env, &len);
    sd_result r;

    /* Prepared with the store's verifier and nothing changed since: the
     * verdict is used as it is (one verification in all). */
    sd_prepared *p = NULL;
    ASSERT_EQ(sd_prepare(pp, env, len, T_NOW_MS, &p), 0);
    ASSERT_U64_EQ(refused(sig), 1);
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, env, len, T_NOW_MS, p, &r), SS_ESIG);
    ASSERT_U64_EQ(refused(sig), 1);
    ASSERT_EQ(
        q_int(s, "SELECT count(*) FROM audit WHERE outcome = 'rejected:%s'", ss_err_name(SS_ESIG)),
        2);
    sd_result_free(&r);
    sd_prepared_free(p);

    /* The trust store moved on between prepare and apply: verified again. */
    ASSERT_EQ(sd_prepare(pp, env, len, T_NOW_MS, &p), 0);
    ASSERT_U64_EQ(refused(sig), 2);
    sd_sig_clear_cache(sig);
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, env, len, T_NOW_MS, p, &r), SS_ESIG);
    ASSERT_U64_EQ(refused(sig), 3);
    sd_result_free(&r);
    sd_prepared_free(p);

    /* Prepared without the store's verifier: verified at apply. */
    ASSERT_EQ(sd_prepare(nosig, env, len, T_NOW_MS, &p), 0);
    ASSERT_U64_EQ(refused(sig), 3);
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, env, len, T_NOW_MS, p, &r), SS_ESIG);
    ASSERT_U64_EQ(refused(sig), 4);
    sd_result_free(&r);
    sd_prepared_free(p);

    /* Same outcome as the one-step call; nothing consumed by any. */
    ASSERT_EQ(sd_store_apply(s, &gw, env, len, T_NOW_MS, &r), SS_ESIG);
    sd_result_free(&r);
    ASSERT_EQ(
        q_int(s, "SELECT count(*) FROM audit WHERE outcome = 'rejected:%s'", ss_err_name(SS_ESIG)),
        8);
    uint64_t c = 9;
    ASSERT_EQ(sd_store_committed(s, "gw-hydro", &c), 0);
    ASSERT_U64_EQ(c, 0);

    free(env);
    envb_free(&e);
    sd_preparer_destroy(pp);
    sd_preparer_destroy(nosig);
    sd_store_close(s);
    sd_sig_destroy(sig);
    tdir_remove(&d);
}

TEST(prepared_envelope_only_for_its_own_bytes)
{
    tdir d;
    char path[256];
    tdir_make(&d);
    tdir_file(&d, "b.db", path, sizeof path);
    sd_store *s = store_open_at(path, 0);
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, HYDRO);
    sd_preparer *pp = NULL;
    ASSERT_EQ(sd_preparer_new(NULL, &pp), 0);
    envb a, b;
    incidents(&a, "gw-hydro", "hydro-1", 1, 2, "First");
    incidents(&b, "gw-hydro", "hydro-1", 1, 2, "Other");
    sd_prepared *p = NULL;
    ASSERT_EQ(sd_prepare(pp, a.env, a.env_len, T_NOW_MS, &p), 0);
    sd_result r;
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, b.env, b.env_len, T_NOW_MS, p, &r), SS_EINVAL);
    sd_result_free(&r);
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, a.env, a.env_len, T_NOW_MS + 1, p, &r), SS_EINVAL);
    sd_result_free(&r);
    ASSERT_EQ(q_int(s, "SELECT count(*) FROM audit"), 0);
    ASSERT_EQ(sd_store_apply_prepared(s, &gw, a.env, a.env_len, T_NOW_MS, p, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 2);
    sd_result_free(&r);
    sd_prepared_free(p);
    ASSERT_EQ(sd_prepare(NULL, a.env, a.env_len, T_NOW_MS, &p), SS_EINVAL);
    ASSERT(p == NULL);
    envb_free(&a);
    envb_free(&b);
    sd_preparer_destroy(pp);
    sd_store_close(s);
    tdir_remove(&d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(pool_gives_inline_outcomes_for_every_case)
                 SS_TEST_ENTRY(pool_failed_commit_acknowledges_nothing_then_recovers)
                     SS_TEST_ENTRY(prepare_ahead_is_bounded_in_bytes)
                         SS_TEST_ENTRY(pool_stop_right_after_submit_drains_everything)
                             SS_TEST_ENTRY(writer_refuses_too_many_prepare_threads)
                                 SS_TEST_ENTRY(prepared_signature_verdict_is_redone_after_a_reload)
                                     SS_TEST_ENTRY(prepared_envelope_only_for_its_own_bytes))
