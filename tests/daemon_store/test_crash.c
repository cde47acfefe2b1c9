/* test_crash.c - kill -9 of a process in the middle of committing: after
 * reopening, everything it reported committed is there, nothing is there
 * twice, records, audit entries and the committed sequence agree, the audit
 * chain verifies and SQLite's integrity check passes. */
#include <signal.h>
#include <sys/wait.h>

#include "store_test_util.h"

#include "sd/admin.h"

static const char *const SITES[] = { "hydro-1", NULL };

#define PER_ENV     50
#define ENV_PER_TXN 4

/* The child: commits batches forever, writing each committed seq to fd. */
static void child_run(const char *path, int fd)
{
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
    sd_store *s = store_open_at(path, 0);
    uint64_t seq = 1;
    for (;;) {
        if (sd_store_begin(s) != 0)
            _exit(3);
        for (int k = 0; k < ENV_PER_TXN; k++) {
            envb e;
            sd_result r;
            envb_init(&e, "gw-hydro", seq);
            for (int i = 0; i < PER_ENV; i++) {
                char key[64];
                uint64_t n = seq + (uint64_t)i;
                snprintf(key, sizeof key, "gw-hydro-%010llu", (unsigned long long)n);
                envb_add(&e, mk_incident(key, "hydro-1",
                                         ss_hlc_make((uint64_t)T_NOW_MS - 1000000 + n, 0),
                                         "Perimeter alarm"));
            }
            envb_finish(&e);
            if (sd_store_apply(s, &gw, e.env, e.env_len, T_NOW_MS, &r) != 0)
                _exit(4);
            sd_result_free(&r);
            envb_free(&e);
            seq += PER_ENV;
        }
        if (sd_store_commit(s) != 0)
            _exit(5);
        uint64_t done = seq - 1;
        if (write(fd, &done, sizeof done) != (ssize_t)sizeof done)
            _exit(6);
    }
}

TEST(kill9_loses_and_duplicates_nothing)
{
    tdir d;
    char path[256];
    tdir_make(&d);
    tdir_file(&d, "crash.db", path, sizeof path);
    for (int round = 0; round < 3; round++) {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_run(path, p[1]);
        }
        close(p[1]);
        /* Let it commit a few batches (bounded), then kill it mid-flight. */
        uint64_t reported = 0, v;
        int batches = 0;
        while (batches < 5 + round * 3 && read(p[0], &v, sizeof v) == (ssize_t)sizeof v) {
            reported = v;
            batches++;
        }
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        int st = 0;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        ASSERT(WIFSIGNALED(st));
        while (read(p[0], &v, sizeof v) == (ssize_t)sizeof v)
            reported = v;
        close(p[0]);

        sd_store *s = store_open_at(path, 1);
        uint64_t committed = 0;
        ASSERT_EQ(sd_store_committed(s, "gw-hydro", &committed), 0);
        ASSERT_GE(committed, reported);
        ASSERT_EQ(committed % (PER_ENV * ENV_PER_TXN), 0);
        ASSERT_EQ(q_int(s, "SELECT count(*) FROM records"), (long long)committed);
        ASSERT_EQ(q_int(s, "SELECT count(*) FROM audit WHERE outcome='applied'"),
                  (long long)committed);
        ASSERT_EQ(q_int(s, "SELECT count(DISTINCT seq) FROM audit"), (long long)committed);
        char buf[64];
        ASSERT_STR_EQ(q_text(s, buf, sizeof buf, "PRAGMA integrity_check"), "ok");
        sd_audit_report rep;
        ASSERT_EQ(sd_audit_verify(s, NULL, &rep), 0);
        if (!rep.ok)
            SS_TEST_FAIL("audit verify after kill -9: %s", rep.reason);
        ASSERT_EQ(rep.entries, (long long)committed);
        sd_store_close(s);

        /* The next run resumes from the committed sequence, like a gateway
         * after WELCOME: open read-write and check a re-sent batch is a
         * duplicate. */
        s = store_open_at(path, 0);
        if (committed > 0) {
            sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
            envb e;
            sd_result r;
            uint64_t first = committed - PER_ENV + 1;
            envb_init(&e, "gw-hydro", first);
            for (int i = 0; i < PER_ENV; i++) {
                char key[64];
                uint64_t n = first + (uint64_t)i;
                snprintf(key, sizeof key, "gw-hydro-%010llu", (unsigned long long)n);
                envb_add(&e, mk_incident(key, "hydro-1",
                                         ss_hlc_make((uint64_t)T_NOW_MS - 1000000 + n, 0),
                                         "Perimeter alarm"));
            }
            envb_finish(&e);
            ASSERT_EQ(sd_store_apply(s, &gw, e.env, e.env_len, T_NOW_MS, &r), 0);
            ASSERT_U64_EQ(r.counts.duplicate, PER_ENV);
            sd_result_free(&r);
            envb_free(&e);
        }
        sd_store_close(s);
        /* The child continues from seq 1 each round, so start afresh. */
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
        ASSERT_EQ(system(cmd), 0);
    }
    tdir_remove(&d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(kill9_loses_and_duplicates_nothing))
