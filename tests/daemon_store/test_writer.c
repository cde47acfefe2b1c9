/* test_writer.c - the group-commit writer on a real libuv loop: many jobs
 * share one transaction, callbacks run on the loop thread after the commit,
 * a failed commit acknowledges nothing, and stop drains the queue. */
#include <stdatomic.h>

#include "store_test_util.h"

#include "sd/writer.h"

static const char *const SITES[] = { "hydro-1", NULL };

typedef struct wctx {
    uv_loop_t loop;
    uv_thread_t loop_thread;
    tdir dir;
    char path[256];
    sd_writer *w;
    int done_cbs;
    int ok, failed, stopped;
    uint64_t max_committed;
    int64_t session_id;
} wctx;

static void on_job(sd_job *job, void *arg)
{
    wctx *c = arg;
    uv_thread_t self = uv_thread_self();
    /* Callbacks run on the loop's thread, never the writer's. */
    ASSERT(uv_thread_equal(&self, &c->loop_thread));
    c->done_cbs++;
    if (job->result.code == 0)
        c->ok++;
    else
        c->failed++;
    if (job->kind == SD_JOB_APPLY && job->result.code == 0 &&
        job->result.committed > c->max_committed)
        c->max_committed = job->result.committed;
    if (job->kind == SD_JOB_SESSION_BEGIN)
        c->session_id = job->session_id;
}

static void on_stopped(void *arg)
{
    wctx *c = arg;
    c->stopped = 1;
}

static void wctx_open(wctx *c, size_t max_batch, int (*hook)(void *), void *hook_arg)
{
    memset(c, 0, sizeof *c);
    ASSERT_EQ(uv_loop_init(&c->loop), 0);
    c->loop_thread = uv_thread_self();
    tdir_make(&c->dir);
    tdir_file(&c->dir, "w.db", c->path, sizeof c->path);
    sd_store *s = store_open_at(c->path, 0);
    if (hook)
        sqlite3_commit_hook(sd_store_handle(s), hook, hook_arg);
    sd_writer_config cfg = { .max_batch = max_batch };
    ASSERT_EQ(sd_writer_new(&c->loop, s, &cfg, &c->w), 0);
}

static void wctx_close(wctx *c)
{
    sd_writer_stop(c->w, on_stopped, c);
    for (int i = 0; i < 10000 && !c->stopped; i++)
        uv_run(&c->loop, UV_RUN_ONCE);
    ASSERT_EQ(c->stopped, 1);
    sd_writer_destroy(c->w);
    ASSERT_EQ(uv_loop_close(&c->loop), 0);
    tdir_remove(&c->dir);
}

/* Envelope k (1-based) of gw-hydro: one change, seq k. */
static sd_job *apply_job(wctx *c, uint64_t k)
{
    envb e;
    envb_init(&e, "gw-hydro", k);
    char title[48];
    snprintf(title, sizeof title, "Incident %llu", (unsigned long long)k);
    char key[64];
    snprintf(key, sizeof key, "gw-hydro-%06llu", (unsigned long long)k);
    envb_add(&e, mk_incident(key, "hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 5000 + k, 0), title));
    envb_finish(&e);
    sd_job *j = sd_job_new(SD_JOB_APPLY);
    ASSERT(j != NULL);
    j->peer = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
    j->now_ms = T_NOW_MS;
    j->env = ss_malloc(e.env_len);
    ASSERT(j->env != NULL);
    memcpy(j->env, e.env, e.env_len);
    j->env_len = e.env_len;
    j->cb = on_job;
    j->arg = c;
    envb_free(&e);
    return j;
}

static void run_until(wctx *c, int cbs)
{
    for (int i = 0; i < 100000 && c->done_cbs < cbs; i++)
        uv_run(&c->loop, UV_RUN_ONCE);
    ASSERT_EQ(c->done_cbs, cbs);
}

static uint64_t committed_on_disk(const char *path)
{
    sd_store *ro = store_open_at(path, 1);
    uint64_t seq = 0;
    ASSERT_EQ(sd_store_committed(ro, "gw-hydro", &seq), 0);
    sd_store_close(ro);
    return seq;
}

TEST(group_commit_shares_transactions)
{
    wctx c;
    wctx_open(&c, 64, NULL, NULL);
    sd_job *begin = sd_job_new(SD_JOB_SESSION_BEGIN);
    begin->peer = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
    begin->now_ms = T_NOW_MS;
    begin->cb = on_job;
    begin->arg = &c;
    ASSERT_EQ(sd_writer_submit(c.w, begin), 0);
    for (uint64_t k = 1; k <= 300; k++)
        ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, k)), 0);
    run_until(&c, 301);
    ASSERT_EQ(c.ok, 301);
    ASSERT_U64_EQ(c.max_committed, 300);
    ASSERT_GT(c.session_id, 0);
    sd_writer_stats st;
    sd_writer_get_stats(c.w, &st);
    ASSERT_U64_EQ(st.jobs, 301);
    /* One fsync'd commit takes far longer than queueing 300 jobs, so they
     * must have shared transactions (at most 64 each). */
    ASSERT_LE(st.transactions, 30);
    ASSERT_GE(st.transactions, 5);
    ASSERT_GT(st.max_batch_seen, 1);
    ASSERT_LE(st.max_batch_seen, 64);
    ASSERT_EQ(st.failed_transactions, 0);
    ASSERT_EQ(sd_writer_pending(c.w), 0);
    ASSERT_U64_EQ(committed_on_disk(c.path), 300);
    wctx_close(&c);
}

static int fail_commits(void *arg)
{
    atomic_int *flag = arg;
    /* Non-zero turns the COMMIT into a ROLLBACK. */
    return atomic_load(flag);
}

TEST(commit_failure_acknowledges_nothing)
{
    wctx c;
    atomic_int flag;
    atomic_init(&flag, 1);
    wctx_open(&c, 256, fail_commits, &flag);
    for (uint64_t k = 1; k <= 20; k++)
        ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, k)), 0);
    run_until(&c, 20);
    ASSERT_EQ(c.failed, 20);
    ASSERT_EQ(c.ok, 0);
    sd_writer_stats st;
    sd_writer_get_stats(c.w, &st);
    ASSERT_EQ(st.failed_transactions, st.transactions);
    ASSERT_U64_EQ(committed_on_disk(c.path), 0);
    /* Nothing was kept: the same envelopes apply cleanly afterwards, from
     * seq 1, and the audit chain is intact. */
    atomic_store(&flag, 0);
    c.done_cbs = 0;
    for (uint64_t k = 1; k <= 20; k++)
        ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, k)), 0);
    run_until(&c, 20);
    ASSERT_EQ(c.ok, 20);
    ASSERT_U64_EQ(c.max_committed, 20);
    ASSERT_U64_EQ(committed_on_disk(c.path), 20);
    sd_store *ro = store_open_at(c.path, 1);
    ASSERT_EQ(q_int(ro, "SELECT count(*) FROM audit"), 20);
    ASSERT_EQ(q_int(ro, "SELECT min(id) FROM audit"), 1);
    sd_store_close(ro);
    wctx_close(&c);
}

TEST(stop_drains_queue_then_refuses)
{
    wctx c;
    wctx_open(&c, 8, NULL, NULL);
    for (uint64_t k = 1; k <= 50; k++)
        ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, k)), 0);
    sd_writer_stop(c.w, on_stopped, &c);
    sd_job *late = apply_job(&c, 51);
    ASSERT_EQ(sd_writer_submit(c.w, late), SS_ESHUTDOWN);
    sd_job_free(late);
    for (int i = 0; i < 100000 && !c.stopped; i++)
        uv_run(&c.loop, UV_RUN_ONCE);
    ASSERT_EQ(c.stopped, 1);
    /* Every queued job finished and called back before the done callback. */
    ASSERT_EQ(c.done_cbs, 50);
    ASSERT_EQ(c.ok, 50);
    sd_writer_destroy(c.w);
    ASSERT_EQ(uv_loop_close(&c.loop), 0);
    ASSERT_U64_EQ(committed_on_disk(c.path), 50);
    tdir_remove(&c.dir);
}

TEST(refused_envelope_does_not_spoil_batch)
{
    wctx c;
    wctx_open(&c, 256, NULL, NULL);
    ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, 1)), 0);
    ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, 5)), 0); /* gap */
    ASSERT_EQ(sd_writer_submit(c.w, apply_job(&c, 2)), 0);
    sd_job *ev = sd_job_new(SD_JOB_AUDIT_EVENT);
    ev->peer = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
    snprintf(ev->outcome, sizeof ev->outcome, "rejected:protocol");
    snprintf(ev->text, sizeof ev->text, "unexpected frame");
    ev->cb = on_job;
    ev->arg = &c;
    ASSERT_EQ(sd_writer_submit(c.w, ev), 0);
    run_until(&c, 4);
    ASSERT_EQ(c.ok, 3);
    ASSERT_EQ(c.failed, 1);
    ASSERT_U64_EQ(committed_on_disk(c.path), 2);
    wctx_close(&c);
}

SS_TEST_MAIN(SS_TEST_ENTRY(group_commit_shares_transactions)
                 SS_TEST_ENTRY(commit_failure_acknowledges_nothing)
                     SS_TEST_ENTRY(stop_drains_queue_then_refuses)
                         SS_TEST_ENTRY(refused_envelope_does_not_spoil_batch))
