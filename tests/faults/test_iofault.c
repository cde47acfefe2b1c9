/* test_iofault.c - storage faults under a streaming client (issue 8 item 3,
 * CTest label "iofault"): a gateway streams incidents to a real daemon on
 * 127.0.0.1 while writes and fsyncs fail (the fault VFS in faultd, strace
 * syscall injection on sitesyncd itself) or the disk fills up (a small
 * tmpfs). The daemon must stop acknowledging, log why, keep running, corrupt
 * nothing and resume when the fault clears; the client resends whatever was
 * not acknowledged and every change ends up in the database exactly once. */
#define _GNU_SOURCE /* unshare(CLONE_NEWNS) for the tmpfs */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultvfs.h"
#include "proto/err.h"
#include "ss_test.h"
#include "tc.h"

#define SKIP_RC 77

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int asan_build(void)
{
    const char *a = getenv("SITESYNC_ASAN");
    return a && a[0] == '1';
}

/* ---- the daemon under test ------------------------------------------------ */

typedef struct fdaemon {
    pid_t pid; /* the process we started (strace when wrapped) */
    int port;
    char log[300];
    char db[300];
    char trace[300]; /* strace output, when wrapped */
} fdaemon;

/* Starts bin (wrapped in the NULL-terminated `wrap` argv prefix if given)
 * with the env's PKI on 127.0.0.1:0 and its database at db. ctl, if set, is
 * exported as FAULTVFS_CTL. */
static void daemon_start(tc_env *e, fdaemon *d, const char *const *wrap, const char *bin,
                         const char *db, const char *ctl)
{
    char ca[300], crl[300], cert[300], key[300], portf[300];
    tc_path(e, "pki/ca.crt", ca, sizeof ca);
    tc_path(e, "pki/crl.pem", crl, sizeof crl);
    tc_path(e, "central.crt", cert, sizeof cert);
    tc_path(e, "central.key", key, sizeof key);
    tc_path(e, "port", portf, sizeof portf);
    tc_path(e, "daemon.log", d->log, sizeof d->log);
    snprintf(d->db, sizeof d->db, "%s", db);
    unlink(portf);
    const char *argv[64];
    int n = 0;
    for (int i = 0; wrap && wrap[i]; i++)
        argv[n++] = wrap[i];
    const char *rest[] = {
        bin,    "--listen", "127.0.0.1:0", "--port-file", portf, "--db",  db,  "--ca",
        ca,     "--crl",    crl,           "--cert",      cert,  "--key", key, "--log-level",
        "info", NULL
    };
    for (int i = 0; rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    d->pid = fork();
    ASSERT(d->pid >= 0);
    if (d->pid == 0) {
        /* A failed test aborts: the daemon must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (ctl)
            setenv("FAULTVFS_CTL", ctl, 1);
        if (wrap) {
            /* LeakSanitizer cannot run under ptrace (strace): leaks are
             * checked by the other tests, which run the daemon bare. */
            const char *a = getenv("ASAN_OPTIONS");
            char opts[512];
            snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", a ? a : "", a && a[0] ? ":" : "");
            setenv("ASAN_OPTIONS", opts, 1);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    d->port = 0;
    for (int i = 0; i < 3000 && d->port == 0; i++) {
        FILE *f = fopen(portf, "r");
        if (f) {
            int p = 0;
            if (fscanf(f, "%d", &p) == 1)
                d->port = p;
            fclose(f);
        }
        int st;
        if (d->port == 0 && waitpid(d->pid, &st, WNOHANG) == d->pid)
            SS_TEST_FAIL("daemon exited at startup (status %d), log %s", st, d->log);
        if (d->port == 0)
            sleep_ms(10);
    }
    ASSERT_GT(d->port, 0);
}

static int daemon_alive(fdaemon *d)
{
    int st;
    return d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == 0;
}

/* The pid to signal: the daemon itself, also when strace started it. */
static pid_t daemon_target(fdaemon *d, int wrapped)
{
    if (!wrapped)
        return d->pid;
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)d->pid, (int)d->pid);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    int child = 0;
    if (fgets(buf, sizeof buf, f))
        child = (int)strtol(buf, NULL, 10);
    fclose(f);
    ASSERT_GT(child, 0);
    return (pid_t)child;
}

/* SIGTERM (graceful drain); returns the exit status or -1 after a kill. */
static int daemon_stop(fdaemon *d, int wrapped)
{
    kill(daemon_target(d, wrapped), SIGTERM);
    for (int waited = 0; waited < 30000; waited += 10) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

static int file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* ---- a gateway that resends what was not acknowledged --------------------- */

typedef struct streamer {
    tc_env *env;
    int port;
    const char *node, *site, *db;
    uint32_t batch;  /* changes per envelope */
    uint32_t window; /* envelopes in flight */
    uint64_t total;
    ss_hlc_t hlc0;
    tc_client c;
    int connected;
    uint64_t next;  /* next seq to send on this connection */
    uint64_t acked; /* highest seq acknowledged */
    int64_t last_rx_ms;
    uint64_t errors, refused, reconnects, stalls, acks;
    char last_error[400];
    sqlite3 *ro; /* reader of the daemon's database: every ACK must be in it */
} streamer;

static void st_init(streamer *s, tc_env *e, int port, const char *node, const char *site,
                    const char *db, uint64_t total)
{
    memset(s, 0, sizeof *s);
    s->env = e;
    s->port = port;
    s->node = node;
    s->site = site;
    s->db = db;
    s->batch = 10;
    s->window = 8;
    s->total = total;
    s->hlc0 = tc_hlc_now();
    s->c.fd = -1;
    ASSERT_EQ(sqlite3_open_v2(db, &s->ro, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(s->ro, 5000);
}

static void st_close(streamer *s)
{
    if (s->connected)
        tc_close(&s->c);
    s->connected = 0;
}

static void st_free(streamer *s)
{
    st_close(s);
    sqlite3_close(s->ro);
}

/* The origin's committed sequence as a reader of the database sees it. */
static uint64_t st_committed_db(streamer *s)
{
    sqlite3_stmt *q = NULL;
    uint64_t v = 0;
    ASSERT_EQ(
        sqlite3_prepare_v2(s->ro, "SELECT committed FROM origins WHERE origin = ?1", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_text(q, 1, s->node, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        v = (uint64_t)sqlite3_column_int64(q, 0);
    else if (rc != SQLITE_DONE)
        SS_TEST_FAIL("reading committed: %s", sqlite3_errmsg(s->ro));
    sqlite3_finalize(q);
    return v;
}

/* The same bytes every time a sequence number is (re)sent: a resend must be
 * a duplicate, never a tamper. */
static void st_send_envelope(streamer *s, uint64_t first, uint32_t n)
{
    ss_change *chs = calloc(n, sizeof *chs);
    char(*titles)[48] = calloc(n, sizeof *titles);
    ASSERT(chs != NULL && titles != NULL);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t seq = first + i;
        ss_change *ch = &chs[i];
        ch->seq = seq;
        ch->hlc = s->hlc0 + seq;
        ch->coll = ss_schema_collection("incident", 8);
        ASSERT(ch->coll != NULL);
        snprintf(ch->key, sizeof ch->key, "%s-%08llu", s->node, (unsigned long long)seq);
        snprintf(ch->site, sizeof ch->site, "%s", s->site);
        ch->op = SS_OP_CREATE;
        snprintf(titles[i], sizeof titles[i], "fault run incident %llu", (unsigned long long)seq);
        ss_verr verr;
        ASSERT_EQ(ss_change_set_text(ch, "category", "intrusion", &verr), 0);
        ASSERT_EQ(ss_change_set_text(ch, "severity", "3", &verr), 0);
        ASSERT_EQ(ss_change_set_text(ch, "title", titles[i], &verr), 0);
    }
    size_t len;
    uint8_t *env = tc_envelope(s->node, chs, n, &len);
    if (tc_send_frame(&s->c, SS_FRAME_BATCH, env, len) != 0)
        st_close(s); /* the daemon closed on us: reconnect and resend */
    free(env);
    free(titles);
    free(chs);
}

/* Connects and says HELLO; 0 with next = the daemon's committed + 1, or -1
 * (refused: the daemon could not record the session, or TLS failed). */
static int st_connect(streamer *s)
{
    if (tc_connect(&s->c, s->env, s->port, s->node, NULL) != 0)
        return -1;
    s->reconnects++;
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    snprintf(m.u.hello.node, sizeof m.u.hello.node, "%s", s->node);
    m.u.hello.role = SS_ROLE_GATEWAY;
    m.u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
    if (tc_send_msg(&s->c, &m) != 0) {
        tc_close(&s->c);
        return -1;
    }
    ss_msg r;
    int got = tc_recv_msg(&s->c, 10000, &r);
    if (got != 1) {
        tc_close(&s->c);
        s->refused++;
        return -1;
    }
    if (r.type != SS_FRAME_WELCOME) {
        if (r.type == SS_FRAME_ERROR)
            snprintf(s->last_error, sizeof s->last_error, "HELLO: %s %s",
                     ss_err_name(r.u.error.code), r.u.error.message);
        ss_msg_free(&r);
        tc_close(&s->c);
        s->refused++;
        return -1;
    }
    uint64_t committed = tc_welcome_seq(&r.u.welcome, s->node);
    ss_msg_free(&r);
    /* The durability promise: nothing acknowledged may be missing. */
    if (committed < s->acked)
        SS_TEST_FAIL("WELCOME says %llu committed but %llu was acknowledged",
                     (unsigned long long)committed, (unsigned long long)s->acked);
    s->next = committed + 1;
    s->connected = 1;
    s->last_rx_ms = tc_now_ms();
    return 0;
}

/* One step: (re)connect, fill the window, take one message. */
static void st_step(streamer *s)
{
    if (!s->connected && st_connect(s) != 0) {
        sleep_ms(20);
        return;
    }
    while (s->connected && s->next <= s->total && (s->next - 1 - s->acked) / s->batch < s->window) {
        uint64_t n = s->total - s->next + 1;
        if (n > s->batch)
            n = s->batch;
        st_send_envelope(s, s->next, (uint32_t)n);
        s->next += n;
    }
    if (!s->connected)
        return;
    ss_msg m;
    int got = tc_recv_msg(&s->c, 100, &m);
    if (got == 0) {
        st_close(s);
        return;
    }
    if (got < 0) {
        /* Nothing in 100 ms. With work in flight and no word for seconds
         * the link is stuck: start over (the daemon will tell us where). */
        if (s->next - 1 > s->acked && tc_now_ms() - s->last_rx_ms > 5000) {
            s->stalls++;
            st_close(s);
        }
        return;
    }
    s->last_rx_ms = tc_now_ms();
    if (m.type == SS_FRAME_ACK) {
        if (m.u.ack.nrejects != 0)
            SS_TEST_FAIL("unexpected reject of seq %llu: %s",
                         (unsigned long long)m.u.ack.rejects[0].seq, m.u.ack.rejects[0].message);
        for (int i = 0; i < m.u.ack.nacks; i++) {
            if (strcmp(m.u.ack.acks[i].origin, s->node) != 0 || m.u.ack.acks[i].seq <= s->acked)
                continue;
            uint64_t seq = m.u.ack.acks[i].seq;
            /* Acknowledged means committed: a reader sees it already. */
            uint64_t db = st_committed_db(s);
            if (db < seq)
                SS_TEST_FAIL("ACK %llu but the database has only %llu committed",
                             (unsigned long long)seq, (unsigned long long)db);
            s->acked = seq;
            s->acks++;
        }
    } else if (m.type == SS_FRAME_ERROR) {
        s->errors++;
        snprintf(s->last_error, sizeof s->last_error, "%s %s", ss_err_name(m.u.error.code),
                 m.u.error.message);
        if (m.u.error.code != SS_EDB && m.u.error.code != SS_EGAP)
            SS_TEST_FAIL("unexpected ERROR %s", s->last_error);
        if (m.u.error.code == SS_EDB)
            st_close(s);
    }
    ss_msg_free(&m);
}

/* Streams until acked reaches `until` (or total), failing after timeout. */
static void st_run_to(streamer *s, uint64_t until, int timeout_ms)
{
    if (until > s->total)
        until = s->total;
    int64_t deadline = tc_now_ms() + timeout_ms;
    while (s->acked < until) {
        if (tc_now_ms() > deadline)
            SS_TEST_FAIL("stuck at %llu acknowledged (want %llu); last error: %s",
                         (unsigned long long)s->acked, (unsigned long long)until, s->last_error);
        st_step(s);
    }
}

static void st_run_for(streamer *s, int ms)
{
    int64_t end = tc_now_ms() + ms;
    while (tc_now_ms() < end)
        st_step(s);
}

/* ---- verdicts ------------------------------------------------------------ */

/* Nothing corrupt, the chain intact, every change 1..total exactly once. */
static void check_database(tc_env *e, const char *db, const char *node, uint64_t total)
{
    char buf[256], sql[512];
    ASSERT_STR_EQ(tc_sql_text(db, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    snprintf(sql, sizeof sql, "SELECT committed FROM origins WHERE origin = '%s'", node);
    ASSERT_EQ(tc_sql_int(db, sql), (long long)total);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM records WHERE collection = 'incident' AND key LIKE '%s-%%'",
             node);
    ASSERT_EQ(tc_sql_int(db, sql), (long long)total);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM audit WHERE origin = '%s' AND outcome = 'applied'", node);
    ASSERT_EQ(tc_sql_int(db, sql), (long long)total);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT seq) FROM audit WHERE origin = '%s' AND outcome = 'applied'"
             " AND seq BETWEEN 1 AND %llu",
             node, (unsigned long long)total);
    ASSERT_EQ(tc_sql_int(db, sql), (long long)total);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM audit WHERE origin = '%s' AND outcome NOT IN"
             " ('applied', 'duplicate', 'rejected:gap')",
             node);
    ASSERT_EQ(tc_sql_int(db, sql), 0);
    char out[300];
    tc_path(e, "verify.out", out, sizeof out);
    char *argv[] = { SITESYNC_ADMIN_BIN, "--db", (char *)db, "audit", "verify", NULL };
    int rc = tc_run(argv, out);
    if (rc != 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "cat %s >&2", out);
        if (system(cmd) != 0)
            fprintf(stderr, "(no output)\n");
    }
    ASSERT_EQ(rc, 0);
}

static void setup_env(tc_env *e)
{
    tc_env_setup(e);
    tc_issue(e, "gateway", "gw1", "s1");
}

/* ---- the fault VFS in faultd ---------------------------------------------- */

typedef struct vfs_trial {
    const char *name;
    uint32_t ops;
    int32_t skip;
    int32_t count; /* 1: once; -1: persistent for hold_ms */
    int32_t errcode;
    int hold_ms;
} vfs_trial;

TEST(vfs_faults)
{
    tc_env e;
    setup_env(&e);
    char ctlp[300], db[300];
    tc_path(&e, "faults.ctl", ctlp, sizeof ctlp);
    tc_path(&e, "sitesync.db", db, sizeof db);
    fv_ctl *ctl = fv_ctl_map(ctlp, 1);
    ASSERT(ctl != NULL);
    fdaemon d;
    daemon_start(&e, &d, NULL, FAULTD_BIN, db, ctlp);

    /* The Nth sync and the Nth write from now, once, for a range of N (in
     * the manner of SQLite's I/O-error loops: each N lands on a different
     * point of a commit or of the next ones), then persistent failures of
     * each kind that hold while the client keeps retrying. */
    vfs_trial trials[64];
    int nt = 0;
    for (int n = 0; n < 8; n++)
        trials[nt++] = (vfs_trial){ "sync once", 1u << FV_OP_SYNC, n, 1, SQLITE_IOERR_FSYNC, 0 };
    int nwrite = asan_build() ? 12 : 24; /* ASan: every commit is slower */
    for (int n = 0; n < nwrite; n++)
        trials[nt++] = (vfs_trial){ "write once", 1u << FV_OP_WRITE, n, 1, SQLITE_IOERR_WRITE, 0 };
    trials[nt++] =
        (vfs_trial){ "sync persistent", 1u << FV_OP_SYNC, 0, -1, SQLITE_IOERR_FSYNC, 600 };
    trials[nt++] =
        (vfs_trial){ "write persistent (EIO)", 1u << FV_OP_WRITE, 0, -1, SQLITE_IOERR_WRITE, 600 };
    trials[nt++] =
        (vfs_trial){ "write persistent (disk full)", 1u << FV_OP_WRITE, 3, -1, SQLITE_FULL, 600 };
    trials[nt++] = (vfs_trial){ "sync and write persistent",
                                (1u << FV_OP_SYNC) | (1u << FV_OP_WRITE),
                                1,
                                -1,
                                SQLITE_IOERR,
                                600 };

    uint64_t per_trial = 60;
    streamer s;
    /* Open-ended while the trials run; fixed afterwards at what was sent. */
    st_init(&s, &e, d.port, "gw1", "s1", db, UINT64_C(1) << 40);
    st_run_to(&s, 200, 20000);
    int client_saw = 0;
    for (int t = 0; t < nt; t++) {
        vfs_trial *tr = &trials[t];
        uint64_t inj0 = fv_injected(ctl), err0 = s.errors + s.refused;
        fv_arm(ctl, tr->ops, tr->skip, tr->count, tr->errcode);
        int64_t deadline = tc_now_ms() + 20000;
        while (fv_injected(ctl) == inj0) {
            if (tc_now_ms() > deadline)
                SS_TEST_FAIL("trial %d (%s, N=%d): no fault injected", t, tr->name, tr->skip);
            st_step(&s);
        }
        if (tr->count < 0) {
            /* While it lasts nothing new may be acknowledged: every commit
             * needs the failing operation. */
            uint64_t frozen = st_committed_db(&s);
            st_run_for(&s, tr->hold_ms);
            ASSERT_EQ(st_committed_db(&s), frozen);
            ASSERT_LE(s.acked, frozen);
            ASSERT(daemon_alive(&d));
            /* The client kept trying and was told no every time. */
            ASSERT_GT(s.errors + s.refused, err0);
        }
        fv_clear(ctl);
        /* Resumes: progress well past the point of the fault. */
        st_run_to(&s, s.acked + per_trial, 20000);
        client_saw += s.errors + s.refused > err0;
        ASSERT(daemon_alive(&d));
    }
    s.total = s.next - 1 > s.acked ? s.next - 1 : s.acked;
    st_run_to(&s, s.total, 30000);
    uint64_t injected = fv_injected(ctl);
    fprintf(stderr,
            "vfs_faults: %d trials, %llu failures injected, client saw ERROR/refusal in %d "
            "trials (%llu ERROR, %llu refused HELLO, %llu sessions), %llu acknowledged\n",
            nt, (unsigned long long)injected, client_saw, (unsigned long long)s.errors,
            (unsigned long long)s.refused, (unsigned long long)s.reconnects,
            (unsigned long long)s.acked);
    st_free(&s);
    ASSERT_EQ(daemon_stop(&d, 0), 0);
    /* The log says why, with counts, and when it recovered. */
    int faults = file_count(d.log, "event=store_fault ");
    int recovered = file_count(d.log, "event=store_recovered ");
    int reopened = file_count(d.log, "event=store_reopened ");
    fprintf(stderr, "vfs_faults: log: %d store_fault, %d store_recovered, %d store_reopened\n",
            faults, recovered, reopened);
    ASSERT_GE(faults, 1);
    ASSERT_GE(recovered, nt / 2);
    ASSERT_GE(reopened, 1);
    /* A fault that hits a session record of a closed connection is
     * invisible to the client; the persistent ones never are (above). */
    ASSERT_GE(client_saw, 4);
    check_database(&e, db, "gw1", s.total);
    fv_ctl_unmap(ctl);
    tc_env_cleanup(&e);
}

/* ---- strace syscall injection on the real sitesyncd ----------------------- */

static int have_strace(void)
{
    return access("/usr/bin/strace", X_OK) == 0;
}

typedef struct strace_trial {
    const char *name;
    const char *inject; /* -e inject=... */
    const char *trace;  /* -e trace=... */
} strace_trial;

TEST(strace_faults)
{
    if (!have_strace()) {
        fprintf(stderr, "strace not installed: skipped\n");
        exit(SKIP_RC);
    }
    tc_env e;
    setup_env(&e);
    char db[300], trace[300];
    tc_path(&e, "sitesync.db", db, sizeof db);
    tc_path(&e, "strace.out", trace, sizeof trace);
    /* A window of consecutive failing calls, counted from the daemon's
     * start (a fresh process each trial, on the same database): the fault
     * comes, holds for several commits, and goes. */
    const strace_trial trials[] = {
        { "fdatasync EIO", "inject=fdatasync:error=EIO:when=12..17", "trace=fdatasync" },
        { "fdatasync EIO once", "inject=fdatasync:error=EIO:when=9", "trace=fdatasync" },
        { "pwrite64 EIO", "inject=pwrite64:error=EIO:when=60..90", "trace=pwrite64" },
        { "pwrite64 ENOSPC", "inject=pwrite64:error=ENOSPC:when=40..70", "trace=pwrite64" },
    };
    int nt = (int)(sizeof trials / sizeof trials[0]);
    uint64_t per_trial = 600, total = per_trial * (uint64_t)nt;
    uint64_t acked = 0;
    int injected_total = 0;
    for (int t = 0; t < nt; t++) {
        unlink(trace);
        const char *wrap[] = { "/usr/bin/strace",
                               "-f",
                               "-qq",
                               "--seccomp-bpf",
                               "-o",
                               trace,
                               "-e",
                               trials[t].trace,
                               "-e",
                               trials[t].inject,
                               NULL };
        fdaemon d;
        daemon_start(&e, &d, wrap, SITESYNCD_BIN, db, NULL);
        streamer s;
        st_init(&s, &e, d.port, "gw1", "s1", db, per_trial * (uint64_t)(t + 1));
        s.acked = acked; /* what earlier daemons acknowledged must still be there */
        st_run_to(&s, s.total, 60000);
        acked = s.acked;
        int injected = file_count(trace, "(INJECTED)");
        fprintf(stderr, "strace %s: %d calls failed, %llu ERROR, %llu refused HELLO\n",
                trials[t].name, injected, (unsigned long long)s.errors,
                (unsigned long long)s.refused);
        ASSERT_GE(injected, 1);
        /* A persistent fault must reach the client. A single failed call may
         * land on a commit that carried no envelope of this client (a session
         * record, a checkpoint): the daemon still logs store_fault for it
         * (checked below), and nothing may be lost or acknowledged early. */
        if (strstr(trials[t].name, "once") == NULL)
            ASSERT_GE(s.errors + s.refused, 1);
        injected_total += injected;
        st_free(&s);
        ASSERT_EQ(daemon_stop(&d, 1), 0);
    }
    ASSERT_GE(file_count(tc_path(&e, "daemon.log", trace, sizeof trace), "event=store_fault "), nt);
    fprintf(stderr, "strace_faults: %d trials, %d syscalls failed\n", nt, injected_total);
    check_database(&e, db, "gw1", total);
    tc_env_cleanup(&e);
}

/* ---- a full disk: a small tmpfs ------------------------------------------- */

/* Fills the file system holding dir; returns the filler's path in buf. */
static void fill_disk(const char *dir, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/filler", dir);
    int fd = open(buf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    static const char zero[65536];
    size_t chunk = sizeof zero;
    for (int i = 0; i < 1 << 20; i++) {
        ssize_t w = write(fd, zero, chunk);
        if (w < 0 && errno == ENOSPC) {
            if (chunk == 1)
                break;
            chunk /= 2; /* fill the last partial pages too */
            continue;
        }
        ASSERT(w > 0);
    }
    close(fd);
}

TEST(disk_full)
{
    tc_env e;
    setup_env(&e);
    char mnt[300], db[400], filler[400];
    tc_path(&e, "disk", mnt, sizeof mnt);
    ASSERT_EQ(mkdir(mnt, 0700), 0);
    /* Room for the database and a WAL that is only checkpointed every
     * 10000 pages would need ~40 MiB; the point is a disk that fills. */
    /* In a mount namespace of our own, the tmpfs goes away with this
     * process and its daemon even if the test aborts. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=48m,mode=0700") != 0) {
        fprintf(stderr, "cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        tc_env_cleanup(&e);
        exit(SKIP_RC);
    }
    snprintf(db, sizeof db, "%s/sitesync.db", mnt);
    fdaemon d;
    daemon_start(&e, &d, NULL, SITESYNCD_BIN, db, NULL);
    streamer s;
    int rounds = 3;
    uint64_t per_round = 400;
    st_init(&s, &e, d.port, "gw1", "s1", db, per_round * (uint64_t)(rounds + 1));
    st_run_to(&s, per_round, 20000);
    for (int r = 0; r < rounds; r++) {
        uint64_t err0 = s.errors + s.refused;
        fill_disk(mnt, filler, sizeof filler);
        /* Until space comes back nothing more can commit. */
        int64_t deadline = tc_now_ms() + 20000;
        while (s.errors + s.refused == err0) {
            if (tc_now_ms() > deadline)
                SS_TEST_FAIL("round %d: the full disk caused no error", r);
            st_step(&s);
        }
        uint64_t frozen = st_committed_db(&s);
        st_run_for(&s, 800);
        ASSERT_EQ(st_committed_db(&s), frozen);
        ASSERT_LE(s.acked, frozen);
        ASSERT(daemon_alive(&d));
        ASSERT_EQ(unlink(filler), 0);
        st_run_to(&s, per_round * (uint64_t)(r + 2), 30000);
    }
    fprintf(stderr, "disk_full: %d rounds, %llu ERROR, %llu refused HELLO, %llu acknowledged\n",
            rounds, (unsigned long long)s.errors, (unsigned long long)s.refused,
            (unsigned long long)s.acked);
    st_free(&s);
    ASSERT_EQ(daemon_stop(&d, 0), 0);
    ASSERT_GE(file_count(d.log, "event=store_fault "), rounds);
    ASSERT_GE(file_count(d.log, "event=store_recovered "), rounds);
    check_database(&e, db, "gw1", s.total);
    umount2(mnt, MNT_DETACH);
    tc_env_cleanup(&e);
}

SS_TEST_MAIN(SS_TEST_ENTRY(vfs_faults) SS_TEST_ENTRY(strace_faults) SS_TEST_ENTRY(disk_full))
