/* sd_writer.c - the group-commit writer thread: jobs from the loop queue
 * under a mutex; the thread applies up to max_batch of them in one SQLite
 * transaction, commits (durable), and only then hands the finished jobs back
 * to the loop through uv_async_send, where their callbacks run.
 *
 * The prepare stage: everything about an envelope that needs no database
 * (origin signature, body parse, change hashes: sd_prepare) runs on a small
 * pool of prepare threads ahead of the writer, so the one thread that must
 * be serial spends its time in SQLite. Order is kept by construction: the
 * writer still takes jobs strictly from the head of the one FIFO; the
 * prepare threads claim APPLY jobs from a second list in the same order, at
 * most prepare_ahead of them and prepare_ahead_bytes of envelope bytes
 * ahead of the writer (each holds a parsed body, which is 11 to 19 times
 * the envelope's size for a large one: the byte budget, not the count,
 * bounds that memory when peers send big envelopes to a slow disk). When the writer reaches a job
 * it takes its prepared envelope, waits for it if a prepare thread is on it, or prepares it itself
 * if none has claimed it yet, so a slow pool never stalls it. The parsed bodies go back to the
 * prepare threads to be freed, off the writer's time.
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
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "proto/alloc.h"
#include "proto/err.h"
#include "sd/writer.h"
#include "sd_store_internal.h"

/* Consecutive failed transactions after which the handle is reopened
 * (and again after each further run of this many). */
#define REOPEN_AFTER 4
/* Repeated store_fault lines are counted, and logged at most this often. */
#define FAULT_LOG_EVERY_MS 1000
/* Applied envelopes waiting to be freed before a prepare thread is woken
 * for them (a parsed 100-change envelope holds about 300 KiB). */
#define TRASH_BATCH 8

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct prep_worker {
    struct sd_writer *w;
    sd_preparer *pp;
    uv_thread_t thread;
    int started;
} prep_worker;

struct sd_writer {
    uv_loop_t *loop;
    sd_store *store;
    size_t max_batch;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cond;
    uv_cond_t work_cond;  /* prepare threads: work, trash or stop */
    uv_cond_t ready_cond; /* the writer: a job it waits for is prepared */
    uv_async_t async;
    size_t nworkers, prepare_ahead, prepare_ahead_bytes;
    prep_worker *workers;
    /* Guarded by mu. */
    sd_job *q_head, *q_tail; /* waiting */
    size_t queued, inflight;
    sd_job *p_head, *p_tail; /* APPLY jobs no prepare thread has claimed */
    size_t ahead;            /* claimed by prepare threads, not yet taken by the writer */
    size_t ahead_bytes;      /* their envelope bytes */
    sd_prepared *trash;      /* applied; freed by the prepare threads */
    size_t trash_n;
    int workers_stop;
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
    sd_prepared_free(j->prep);
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

static void run_job(sd_store *s, sd_job *j, sd_prepared *prep)
{
    int rc = 0;
    switch (j->kind) {
    case SD_JOB_APPLY:
        sd_store_apply_prepared(s, &j->peer, j->env, j->env_len, j->now_ms, prep, &j->result);
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

/* Names the calling thread (top -H, perf, /proc/PID/task/N/comm). */
static void name_thread(const char *name)
{
#ifdef __linux__
    prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)name;
#endif
}

/* A prepare thread: claims APPLY jobs in submission order (at most
 * prepare_ahead ahead of the writer) and prepares them; frees what the
 * writer is done with when there is nothing to prepare, or when that has
 * piled up. Exits once told to and nothing is left to free. */
static void prep_thread(void *arg)
{
    prep_worker *pw = arg;
    sd_writer *w = pw->w;
    name_thread("sd-prepare");
    uv_mutex_lock(&w->mu);
    for (;;) {
        /* One envelope is always allowed, however large, so the pool never
         * stops short of the writer's next job. */
        int can_prep =
            w->p_head && w->ahead < w->prepare_ahead &&
            (w->ahead == 0 || w->ahead_bytes + w->p_head->env_len <= w->prepare_ahead_bytes);
        if (w->trash && (!can_prep || w->trash_n >= TRASH_BATCH)) {
            sd_prepared *list = w->trash;
            w->trash = NULL;
            w->trash_n = 0;
            uv_mutex_unlock(&w->mu);
            while (list) {
                sd_prepared *p = list;
                list = p->next;
                sd_prepared_free(p);
            }
            uv_mutex_lock(&w->mu);
            continue;
        }
        if (can_prep) {
            sd_job *j = w->p_head;
            w->p_head = j->prep_next;
            if (!w->p_head)
                w->p_tail = NULL;
            j->prep_next = NULL;
            j->prep_state = 1;
            w->ahead++;
            w->ahead_bytes += j->env_len;
            if (w->ahead_bytes > w->stats.max_ahead_bytes)
                w->stats.max_ahead_bytes = w->ahead_bytes;
            uv_mutex_unlock(&w->mu);
            /* The job's bytes are not touched by anyone else until the
             * writer has taken the result (job_claim), so no lock here. On
             * failure (memory) p stays NULL and the writer prepares the job
             * itself, reporting what it finds. */
            sd_prepared *p = NULL;
            sd_prepare(pw->pp, j->env, j->env_len, j->now_ms, &p);
            uv_mutex_lock(&w->mu);
            j->prep = p;
            j->prep_state = 2;
            w->stats.prepared_ahead++;
            uv_cond_signal(&w->ready_cond);
            continue;
        }
        if (w->workers_stop)
            break;
        uv_cond_wait(&w->work_cond, &w->mu);
    }
    uv_mutex_unlock(&w->mu);
}

/* Puts an applied envelope on the trash list (under mu). */
static void trash_push_locked(sd_writer *w, sd_prepared *p)
{
    p->next = w->trash;
    w->trash = p;
    if (++w->trash_n >= TRASH_BATCH)
        uv_cond_signal(&w->work_cond);
}

/* Takes job j (the next the writer runs) out of the prepare stage and
 * returns its prepared envelope, or NULL when the writer must prepare it
 * itself (no pool, not an APPLY job, not claimed yet, or its preparation
 * failed). Writer thread; every job of a batch goes through here, run or
 * not, so that no prepare thread can touch a job after it is handed back.
 * done (the previous job's prepared envelope, applied: nothing refers to
 * it any more) goes to the prepare threads to be freed under the same
 * lock, so a parsed body is held no longer than it was when the writer
 * freed it itself. */
static sd_prepared *job_claim(sd_writer *w, sd_job *j, sd_prepared *done)
{
    int apply = j->kind == SD_JOB_APPLY && w->nworkers > 0;
    if (!apply && !done)
        return NULL;
    uv_mutex_lock(&w->mu);
    if (done)
        trash_push_locked(w, done);
    if (!apply) {
        uv_mutex_unlock(&w->mu);
        return NULL;
    }
    if (j->prep_state == 0) {
        /* Jobs are claimed in submission order and the writer takes them in
         * that order, so an unclaimed job at the writer heads the list. */
        if (w->p_head != j)
            abort();
        w->p_head = j->prep_next;
        if (!w->p_head)
            w->p_tail = NULL;
        j->prep_next = NULL;
        j->prep_state = 2;
        w->stats.prepared_inline++;
        uv_mutex_unlock(&w->mu);
        return NULL;
    }
    if (j->prep_state == 1) {
        int64_t t0 = mono_us();
        w->stats.prepare_waits++;
        while (j->prep_state != 2)
            uv_cond_wait(&w->ready_cond, &w->mu);
        w->stats.prepare_wait_us += (uint64_t)(mono_us() - t0);
    }
    w->ahead--;
    w->ahead_bytes -= j->env_len;
    uv_cond_signal(&w->work_cond);
    sd_prepared *p = j->prep;
    j->prep = NULL;
    uv_mutex_unlock(&w->mu);
    return p;
}

/* Hands the last applied envelope of a batch to the prepare threads. */
static void trash_put(sd_writer *w, sd_prepared *p)
{
    if (!p)
        return;
    uv_mutex_lock(&w->mu);
    trash_push_locked(w, p);
    uv_mutex_unlock(&w->mu);
}

static void workers_stop(sd_writer *w)
{
    uv_mutex_lock(&w->mu);
    w->workers_stop = 1;
    uv_cond_broadcast(&w->work_cond);
    uv_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->nworkers; i++) {
        if (w->workers[i].started)
            uv_thread_join(&w->workers[i].thread);
        w->workers[i].started = 0;
    }
    /* Nothing is left to free: the threads empty the trash before they
     * exit, and nothing is added once the writer stops. */
}

static void workers_free(sd_writer *w)
{
    for (size_t i = 0; w->workers && i < w->nworkers; i++)
        sd_preparer_destroy(w->workers[i].pp);
    ss_free(w->workers);
    w->workers = NULL;
}

static void writer_free(sd_writer *w)
{
    workers_free(w);
    uv_cond_destroy(&w->ready_cond);
    uv_cond_destroy(&w->work_cond);
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->mu);
    ss_free(w);
}

static void writer_thread(void *arg)
{
    sd_writer *w = arg;
    name_thread("sd-writer");
    for (;;) {
        uv_mutex_lock(&w->mu);
        while (!w->q_head && !w->stopping)
            uv_cond_wait(&w->cond, &w->mu);
        if (!w->q_head) {
            uv_mutex_unlock(&w->mu);
            /* The prepare threads end before the loop hears that this one
             * has: it joins only this thread. */
            workers_stop(w);
            uv_mutex_lock(&w->mu);
            sd_writer_stats st = w->stats;
            const sd_log *log = w->log;
            uv_mutex_unlock(&w->mu);
            SD_INFO(log, "writer_done",
                    "transactions=%llu failed=%llu jobs=%llu max_batch_seen=%zu apply_ms=%llu "
                    "commit_ms=%llu prepare_threads=%zu prepared_ahead=%llu prepared_inline=%llu "
                    "prepare_waits=%llu prepare_wait_ms=%llu",
                    (unsigned long long)st.transactions, (unsigned long long)st.failed_transactions,
                    (unsigned long long)st.jobs, st.max_batch_seen,
                    (unsigned long long)(st.apply_us / 1000),
                    (unsigned long long)(st.commit_us / 1000), w->nworkers,
                    (unsigned long long)st.prepared_ahead, (unsigned long long)st.prepared_inline,
                    (unsigned long long)st.prepare_waits,
                    (unsigned long long)(st.prepare_wait_us / 1000));
            uv_mutex_lock(&w->mu);
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
        int64_t t0 = mono_us();
        int rc = sd_store_begin(w->store);
        sd_prepared *prep = NULL;
        for (sd_job *j = batch; j; j = j->next) {
            prep = job_claim(w, j, prep);
            if (!rc)
                run_job(w->store, j, prep);
        }
        /* The bodies are not needed any more: results carry copies. */
        trash_put(w, prep);
        int64_t t1 = mono_us();
        if (!rc)
            rc = sd_store_commit(w->store);
        int64_t t2 = mono_us();
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
        w->stats.apply_us += (uint64_t)(t1 - t0);
        w->stats.commit_us += (uint64_t)(t2 - t1);
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
    writer_free(h->data);
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
    if (!loop || !store || !out || store->readonly ||
        (cfg && cfg->prepare_threads > SD_WRITER_MAX_PREPARE_THREADS))
        return SS_EINVAL;
    *out = NULL;
    sd_writer *w = ss_malloc(sizeof *w);
    if (!w)
        return SS_ENOMEM;
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->store = store;
    w->max_batch = cfg && cfg->max_batch ? cfg->max_batch : 256;
    w->prepare_ahead = cfg && cfg->prepare_ahead ? cfg->prepare_ahead : 64;
    w->prepare_ahead_bytes =
        cfg && cfg->prepare_ahead_bytes ? cfg->prepare_ahead_bytes : SD_WRITER_PREPARE_AHEAD_BYTES;
    size_t nworkers = cfg ? cfg->prepare_threads : 0;
    if (uv_mutex_init(&w->mu) != 0) {
        ss_free(w);
        return SS_EINTERNAL;
    }
    int ncond = 0;
    if (uv_cond_init(&w->cond) == 0 && ++ncond && uv_cond_init(&w->work_cond) == 0 && ++ncond &&
        uv_cond_init(&w->ready_cond) == 0)
        ncond++;
    if (ncond < 3) {
        if (ncond > 1)
            uv_cond_destroy(&w->work_cond);
        if (ncond > 0)
            uv_cond_destroy(&w->cond);
        uv_mutex_destroy(&w->mu);
        ss_free(w);
        return SS_EINTERNAL;
    }
    if (nworkers) {
        w->workers = ss_malloc(nworkers * sizeof *w->workers);
        if (!w->workers) {
            writer_free(w);
            return SS_ENOMEM;
        }
        memset(w->workers, 0, nworkers * sizeof *w->workers);
        w->nworkers = nworkers;
        for (size_t i = 0; i < nworkers; i++) {
            w->workers[i].w = w;
            /* The store's verifier (sd_store_set_sig before the writer). */
            int rc = sd_preparer_new(store->sig, &w->workers[i].pp);
            if (rc) {
                writer_free(w);
                return rc;
            }
        }
    }
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        writer_free(w);
        return SS_EINTERNAL;
    }
    w->async.data = w;
    int ok = 1;
    for (size_t i = 0; ok && i < nworkers; i++) {
        ok = uv_thread_create(&w->workers[i].thread, prep_thread, &w->workers[i]) == 0;
        w->workers[i].started = ok;
    }
    if (!ok || uv_thread_create(&w->thread, writer_thread, w) != 0) {
        /* The async handle can only be freed after its close callback:
         * that callback frees the writer. The store stays the caller's. */
        workers_stop(w);
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
    job->prep_state = 0;
    job->prep = NULL;
    job->prep_next = NULL;
    if (job->kind == SD_JOB_APPLY && w->nworkers) {
        if (w->p_tail)
            w->p_tail->prep_next = job;
        else
            w->p_head = job;
        w->p_tail = job;
        uv_cond_signal(&w->work_cond);
    }
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
    sd_store_close(w->store);
    writer_free(w);
}
