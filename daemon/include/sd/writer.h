/* writer.h - the writer thread: group commit. Envelopes from many
 * connections queue here; the thread applies a batch of them in one SQLite
 * transaction, commits (durable: WAL + synchronous=FULL), and only then hands
 * each result back to the loop thread through uv_async_send. The loop never
 * blocks on disk. A small pool of prepare threads does each envelope's
 * database-free work (signature, body parse, change hashes: sd_prepare)
 * ahead of the writer; jobs are still applied strictly in submission
 * order. */
#ifndef SD_WRITER_H
#define SD_WRITER_H

#include <uv.h>

#include "sd/log.h"
#include "sd/store.h"

typedef struct sd_writer sd_writer; /* opaque */

typedef enum sd_job_kind {
    SD_JOB_APPLY = 1, /* apply env bytes */
    SD_JOB_SESSION_BEGIN = 2,
    SD_JOB_SESSION_END = 3,
    SD_JOB_AUDIT_EVENT = 4
} sd_job_kind;

typedef struct sd_job sd_job;
/* Called on the loop thread after the job's transaction committed (or
 * failed: result.code says). The job is freed by the writer after return. */
typedef void (*sd_job_cb)(sd_job *job, void *arg);

struct sd_job {
    sd_job_kind kind;
    sd_peer peer;
    int64_t now_ms;
    uint8_t *env; /* SD_JOB_APPLY: owned copy of the envelope bytes */
    size_t env_len;
    int64_t session_id; /* in: SESSION_END; out: SESSION_BEGIN */
    sd_counts counts;   /* SESSION_END */
    uint64_t bytes_in, bytes_out;
    char text[256]; /* SESSION_END error / AUDIT_EVENT detail */
    char origin[SS_ID_MAX + 1];
    uint64_t seq;
    char outcome[48];
    sd_result result; /* out */
    sd_job_cb cb;
    void *arg;
    sd_job *next; /* queue link, private */
    /* Private to the writer: the prepare stage. */
    int prep_state; /* 0 not claimed, 1 being prepared, 2 ready */
    struct sd_prepared *prep;
    sd_job *prep_next; /* link in the to-prepare list */
};

/* 4 MiB of envelopes: about 80 of today's 50 KB envelopes, so the count
 * binds first in normal operation; 1 MiB envelopes parse into 11 to 19 MiB
 * each, so without it 64 of them would hold about 1 GB. */
#define SD_WRITER_PREPARE_AHEAD_BYTES ((size_t)4 << 20)

typedef struct sd_writer_config {
    size_t max_batch;           /* envelopes per transaction (default 256) */
    size_t prepare_threads;     /* prepare threads (0: the writer prepares each
                                 * envelope itself, inline) */
    size_t prepare_ahead;       /* envelopes prepared ahead of the writer at most
                                 * (default 64) */
    size_t prepare_ahead_bytes; /* and at most this many envelope bytes (default
                                 * SD_WRITER_PREPARE_AHEAD_BYTES; one envelope is
                                 * always allowed): bounds the parsed bodies held */
} sd_writer_config;

/* Most prepare threads a writer accepts. */
#define SD_WRITER_MAX_PREPARE_THREADS 64

/* Starts the thread (and cfg->prepare_threads prepare threads, which verify
 * with the verifier given to the store by sd_store_set_sig) on an open
 * read-write store (the writer owns it from now
 * on and closes it in sd_writer_destroy). Returns 0, SS_EINVAL, SS_ENOMEM or
 * SS_EINTERNAL (thread or handle creation failed: *out stays NULL, the
 * store remains the caller's, and nothing needs stopping). */
int sd_writer_new(uv_loop_t *loop, sd_store *store, const sd_writer_config *cfg, sd_writer **out);
/* Allocates a zeroed job (ss_malloc). */
sd_job *sd_job_new(sd_job_kind kind);
/* Frees a job that was never queued or was refused by sd_writer_submit: its
 * env (ss_free), its result's rejects and the job. Accepts NULL. */
void sd_job_free(sd_job *job);
/* Queues a job; returns 0, or SS_ESHUTDOWN after sd_writer_stop (the
 * callback is then never called and the caller frees the job). */
int sd_writer_submit(sd_writer *w, sd_job *job);
/* Where the writer reports storage faults (optional; NULL: silent). A
 * failed transaction is logged as `store_fault` (error level, with SQLite's
 * code and message and the running counts; repeats within a second are
 * counted, not logged), a reopened handle as `store_reopened`, and the
 * first commit after a fault as `store_recovered` (warn) with how many
 * transactions failed and for how long. log must outlive the writer. */
void sd_writer_set_log(sd_writer *w, const sd_log *log);
/* Number of jobs queued or in the running transaction. */
size_t sd_writer_pending(sd_writer *w);
/* Finishes queued jobs, then stops the thread; callbacks still run on the
 * loop. done is called on the loop thread once the thread has joined and the
 * async handle is closed. */
void sd_writer_stop(sd_writer *w, void (*done)(void *arg), void *arg);
/* Frees the writer and closes the store. Only after stop's done callback
 * ran (aborts otherwise: the loop would still hold the async handle). */
void sd_writer_destroy(sd_writer *w);

/* Counters for tests, logs and the bench. */
typedef struct sd_writer_stats {
    uint64_t transactions;        /* batches run (committed or failed) */
    uint64_t failed_transactions; /* batches whose commit (or begin) failed */
    uint64_t jobs;                /* jobs run */
    size_t max_batch_seen;        /* largest batch in one transaction */
    uint64_t failing;             /* consecutive failed transactions now (0: healthy) */
    uint64_t recoveries;          /* commits that ended a run of failures */
    uint64_t reopens;             /* database handle reopened after persistent failures */
    uint64_t prepared_ahead;      /* envelopes prepared by the prepare threads */
    uint64_t prepared_inline;     /* envelopes the writer had to prepare itself */
    uint64_t prepare_waits;       /* times the writer waited for a prepare thread */
    uint64_t apply_us;            /* time spent applying jobs inside transactions */
    uint64_t commit_us;           /* time spent in COMMIT (the durable write) */
    uint64_t prepare_wait_us;     /* time the writer waited for a prepare thread */
    size_t max_ahead_bytes;       /* most envelope bytes prepared ahead at once */
} sd_writer_stats;
void sd_writer_get_stats(sd_writer *w, sd_writer_stats *out);

#endif
