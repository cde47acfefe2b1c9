/* sd_writer.c - the group-commit writer thread: jobs from the loop queue
 * under a mutex; the thread applies up to max_batch of them in one SQLite
 * transaction, commits (durable), and only then hands the finished jobs back
 * to the loop through uv_async_send, where their callbacks run.
 *
 * Storage faults (a failed write or fsync, a full disk) fail the whole
 * batch: it is rolled back, every job reports SS_EDB, nothing is
 * acknowledged, and the thread carries on with the next batch, so the
 * daemon resumes by itself once the fault clears. After several failures in
 * a row the SQLite handle is reopened, so no state the old connection kept
 * after the errors can outlive them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "sd/writer.h"
#include "sd_store_internal.h"

/* Consecutive failed transactions after which the handle is reopened
 * (and again after each further run of this many). */
#define REOPEN_AFTER 4
/* Repeated store_fault lines are counted, and logged at most this often. */
#define FAULT_LOG_EVERY_MS 1000

struct sd_writer {
    uv_loop_t *loop;
    sd_store *store;
    size_t max_batch;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cond;
    uv_async_t async;
    /* Guarded by mu. */
    sd_job *q_head, *q_tail; /* waiting */
    size_t queued, inflight;
    sd_job *done_head, *done_tail; /* committed (or failed), callbacks pending */
    int stopping;
    int exited;
    sd_writer_stats stats;
    const sd_log *log;
    /* Writer thread only: the current run of failed transactions. */
    int64_t fail_since_ms, fail_logged_ms;
    uint64_t fail_unlogged;
    char fail_first[256];
    /* Loop thread only. */
    int started, joined, closed;
    void (*stop_done)(void *arg);
    void *stop_arg;
};

static void job_free(sd_job *j)
{
    if (!j)
        return;
    sd_result_free(&j->result);
    ss_free(j->env);
    ss_free(j);
}

sd_job *sd_job_new(sd_job_kind kind)
{
    sd_job *j = ss_malloc(sizeof *j);
    if (!j)
        return NULL;
    memset(j, 0, sizeof *j);
    j->kind = kind;
    return j;
}

void sd_job_free(sd_job *job)
{
    job_free(job);
}

static void fail_job(sd_job *j, int code, const char *msg)
{
    sd_result_free(&j->result);
    memset(&j->result.counts, 0, sizeof j->result.counts);
    j->result.code = code;
    snprintf(j->result.message, sizeof j->result.message, "%s", msg);
    if (j->kind == SD_JOB_SESSION_BEGIN)
        j->session_id = 0;
}

static void run_job(sd_store *s, sd_job *j)
{
    int rc = 0;
    switch (j->kind) {
    case SD_JOB_APPLY:
        sd_store_apply(s, &j->peer, j->env, j->env_len, j->now_ms, &j->result);
        return;
    case SD_JOB_SESSION_BEGIN:
        rc = sd_store_session_begin(s, &j->peer, j->now_ms, &j->session_id);
        break;
    case SD_JOB_SESSION_END:
        rc = sd_store_session_end(s, j->session_id, j->now_ms, &j->counts, j->bytes_in,
                                  j->bytes_out, j->text);
        break;
    case SD_JOB_AUDIT_EVENT:
        rc = sd_store_audit_event(s, &j->peer, j->now_ms, j->origin[0] ? j->origin : NULL, j->seq,
                                  j->outcome[0] ? j->outcome : "event", j->text);
        break;
    default:
        rc = SS_EINVAL;
        break;
    }
    j->result.code = rc;
    if (rc)
        snprintf(j->result.message, sizeof j->result.message, "%s",
                 rc == SS_EDB ? sd_store_last_error(s) : ss_strerror(rc));
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bookkeeping and logs after a transaction (writer thread). rc is 0 or the
 * store failure seen in it, n its jobs, err the store's message. */
static void note_outcome(sd_writer *w, int rc, size_t n, const char *err)
{
    uv_mutex_lock(&w->mu);
    const sd_log *log = w->log;
    uint64_t failing = w->stats.failing;
    uint64_t failed_total = w->stats.failed_transactions;
    uv_mutex_unlock(&w->mu);
    int64_t now = mono_ms();
    char q[600];
    if (rc == 0) {
        if (failing == 0)
            return;
        SD_WARN(log, "store_recovered",
                "failed_transactions=%llu down_ms=%lld failed_total=%llu first_error=%s",
                (unsigned long long)failing, (long long)(now - w->fail_since_ms),
                (unsigned long long)failed_total, sd_log_quote(q, sizeof q, w->fail_first));
        uv_mutex_lock(&w->mu);
        w->stats.failing = 0;
        w->stats.recoveries++;
        uv_mutex_unlock(&w->mu);
        return;
    }
    if (failing == 1) {
        w->fail_since_ms = now;
        w->fail_logged_ms = 0;
        w->fail_unlogged = 0;
        snprintf(w->fail_first, sizeof w->fail_first, "%s", err);
    }
    /* One line per failure would flood the log while every reconnecting
     * peer retries against a full disk: the first one, then one a second
     * with the count of those not shown. */
    if (w->fail_logged_ms == 0 || now - w->fail_logged_ms >= FAULT_LOG_EVERY_MS) {
        SD_ERROR(log, "store_fault",
                 "jobs=%zu consecutive=%llu failed_total=%llu not_logged=%llu acked=none err=%s", n,
                 (unsigned long long)failing, (unsigned long long)failed_total,
                 (unsigned long long)w->fail_unlogged, sd_log_quote(q, sizeof q, err));
        w->fail_logged_ms = now;
        w->fail_unlogged = 0;
    } else {
        w->fail_unlogged++;
    }
    if (failing % REOPEN_AFTER == 0) {
        int rrc = sd__store_reopen(w->store);
        if (rrc == 0) {
            SD_WARN(log, "store_reopened", "after_failures=%llu", (unsigned long long)failing);
            uv_mutex_lock(&w->mu);
            w->stats.reopens++;
            uv_mutex_unlock(&w->mu);
        } else {
            SD_ERROR(log, "store_reopen_failed", "after_failures=%llu err=%s",
                     (unsigned long long)failing,
                     sd_log_quote(q, sizeof q, sd_store_last_error(w->store)));
        }
    }
}

static void writer_thread(void *arg)
{
    sd_writer *w = arg;
    for (;;) {
        uv_mutex_lock(&w->mu);
        while (!w->q_head && !w->stopping)
            uv_cond_wait(&w->cond, &w->mu);
        if (!w->q_head) {
            w->exited = 1;
            uv_mutex_unlock(&w->mu);
            uv_async_send(&w->async);
            return;
        }
        sd_job *batch = w->q_head, *last = w->q_head;
        size_t n = 1;
        while (n < w->max_batch && last->next) {
            last = last->next;
            n++;
        }
        w->q_head = last->next;
        if (!w->q_head)
            w->q_tail = NULL;
        last->next = NULL;
        w->queued -= n;
        w->inflight = n;
        uv_mutex_unlock(&w->mu);

        /* One transaction for the whole batch: each envelope has its own
         * savepoint inside, so a refused one leaves the others intact. */
        int rc = sd_store_begin(w->store);
        if (!rc) {
            for (sd_job *j = batch; j; j = j->next)
                run_job(w->store, j);
            rc = sd_store_commit(w->store);
        }
        char why[sizeof w->fail_first];
        why[0] = '\0';
        if (rc) {
            /* Nothing of this batch is durable: no job may be acknowledged. */
            char msg[sizeof batch->result.message];
            snprintf(why, sizeof why, "%s", sd_store_last_error(w->store));
            snprintf(msg, sizeof msg, "transaction failed, nothing committed: %.120s", why);
            sd_store_rollback(w->store);
            for (sd_job *j = batch; j; j = j->next)
                fail_job(j, SS_EDB, msg);
        } else {
            /* A store failure inside one envelope (its savepoint rolled
             * back, the rest committed) is a fault all the same. */
            for (sd_job *j = batch; j && !why[0]; j = j->next)
                if (j->result.code == SS_EDB)
                    snprintf(why, sizeof why, "%s", j->result.message);
        }
        int fault = rc ? rc : why[0] ? SS_EDB : 0;

        uv_mutex_lock(&w->mu);
        w->stats.transactions++;
        w->stats.jobs += n;
        if (rc)
            w->stats.failed_transactions++;
        if (fault)
            w->stats.failing++;
        if (n > w->stats.max_batch_seen)
            w->stats.max_batch_seen = n;
        uv_mutex_unlock(&w->mu);
        /* Logged (and the handle maybe reopened) before the jobs go back,
         * so the log names the cause before any peer hears of it. */
        note_outcome(w, fault, n, why);

        uv_mutex_lock(&w->mu);
        if (w->done_tail)
            w->done_tail->next = batch;
        else
            w->done_head = batch;
        w->done_tail = last;
        w->inflight = 0;
        uv_mutex_unlock(&w->mu);
        uv_async_send(&w->async);
    }
}

static void on_closed(uv_handle_t *h)
{
    sd_writer *w = h->data;
    w->closed = 1;
    if (w->stop_done)
        w->stop_done(w->stop_arg);
}

static void on_closed_free(uv_handle_t *h)
{
    sd_writer *w = h->data;
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->mu);
    ss_free(w);
}

static void on_async(uv_async_t *a)
{
    sd_writer *w = a->data;
    uv_mutex_lock(&w->mu);
    sd_job *list = w->done_head;
    w->done_head = w->done_tail = NULL;
    int exited = w->exited;
    uv_mutex_unlock(&w->mu);
    while (list) {
        sd_job *j = list;
        list = j->next;
        j->next = NULL;
        if (j->cb)
            j->cb(j, j->arg);
        job_free(j);
    }
    if (exited && !w->joined) {
        /* The thread has returned (or is about to): joining is immediate. */
        uv_thread_join(&w->thread);
        w->joined = 1;
        uv_close((uv_handle_t *)&w->async, on_closed);
    }
}

int sd_writer_new(uv_loop_t *loop, sd_store *store, const sd_writer_config *cfg, sd_writer **out)
{
    if (!loop || !store || !out || store->readonly)
        return SS_EINVAL;
    *out = NULL;
    sd_writer *w = ss_malloc(sizeof *w);
    if (!w)
        return SS_ENOMEM;
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->store = store;
    w->max_batch = cfg && cfg->max_batch ? cfg->max_batch : 256;
    if (uv_mutex_init(&w->mu) != 0) {
        ss_free(w);
        return SS_EINTERNAL;
    }
    if (uv_cond_init(&w->cond) != 0) {
        uv_mutex_destroy(&w->mu);
        ss_free(w);
        return SS_EINTERNAL;
    }
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        uv_cond_destroy(&w->cond);
        uv_mutex_destroy(&w->mu);
        ss_free(w);
        return SS_EINTERNAL;
    }
    w->async.data = w;
    if (uv_thread_create(&w->thread, writer_thread, w) != 0) {
        /* The async handle can only be freed after its close callback:
         * that callback frees the writer. The store stays the caller's. */
        uv_close((uv_handle_t *)&w->async, on_closed_free);
        return SS_EINTERNAL;
    }
    w->started = 1;
    *out = w;
    return 0;
}

int sd_writer_submit(sd_writer *w, sd_job *job)
{
    if (!w || !job)
        return SS_EINVAL;
    job->next = NULL;
    uv_mutex_lock(&w->mu);
    if (w->stopping) {
        uv_mutex_unlock(&w->mu);
        return SS_ESHUTDOWN;
    }
    if (w->q_tail)
        w->q_tail->next = job;
    else
        w->q_head = job;
    w->q_tail = job;
    w->queued++;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
    return 0;
}

void sd_writer_set_log(sd_writer *w, const sd_log *log)
{
    if (!w)
        return;
    uv_mutex_lock(&w->mu);
    w->log = log;
    uv_mutex_unlock(&w->mu);
}

size_t sd_writer_pending(sd_writer *w)
{
    if (!w)
        return 0;
    uv_mutex_lock(&w->mu);
    size_t n = w->queued + w->inflight;
    uv_mutex_unlock(&w->mu);
    return n;
}

void sd_writer_get_stats(sd_writer *w, sd_writer_stats *out)
{
    if (!w || !out)
        return;
    uv_mutex_lock(&w->mu);
    *out = w->stats;
    uv_mutex_unlock(&w->mu);
}

void sd_writer_stop(sd_writer *w, void (*done)(void *arg), void *arg)
{
    if (!w)
        return;
    w->stop_done = done;
    w->stop_arg = arg;
    uv_mutex_lock(&w->mu);
    w->stopping = 1;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
}

void sd_writer_destroy(sd_writer *w)
{
    if (!w)
        return;
    if (w->started && !w->closed) {
        /* Destroy before the stop callback: the loop still holds the async
         * handle, so freeing now would leave it dangling. That is a bug in
         * the caller, not an input error. */
        fprintf(stderr, "sd_writer_destroy: writer still running; call sd_writer_stop and "
                        "wait for its callback\n");
        abort();
    }
    /* Jobs that finished after the last async callback cannot exist: the
     * thread exits only with an empty queue and signals afterwards. */
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->mu);
    sd_store_close(w->store);
    ss_free(w);
}
