/* hr.c - relay-listener test helpers: the hub process and its journal (see
 * hr.h). Tests abort on any unexpected failure. */
#include "hr.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ss_test.h"

void hr_start(hr_sys *s, const char *const *hub_extra)
{
    memset(s, 0, sizeof *s);
    tc_env_setup(&s->e);
    tc_issue(&s->e, "relay", "hub", HR_HUB_SITES);
    tc_daemon_start(&s->e, &s->d, NULL);
    hr_hub_start(s, hub_extra);
}

void hr_hub_start(hr_sys *s, const char *const *extra)
{
    char ca[300], crl[300], cert[300], key[300], portf[300], server[64];
    tc_path(&s->e, "pki/ca.crt", ca, sizeof ca);
    tc_path(&s->e, "pki/crl.pem", crl, sizeof crl);
    tc_path(&s->e, "hub.crt", cert, sizeof cert);
    tc_path(&s->e, "hub.key", key, sizeof key);
    tc_path(&s->e, "hub.port", portf, sizeof portf);
    tc_path(&s->e, "hub.log", s->hub.log, sizeof s->hub.log);
    tc_path(&s->e, "hubj", s->journal, sizeof s->journal);
    snprintf(server, sizeof server, "127.0.0.1:%d", s->d.port);
    unlink(portf);
    char *argv[64];
    int n = 0;
    argv[n++] = SITESYNC_GW_BIN;
    argv[n++] = "--log-level";
    argv[n++] = "info";
    argv[n++] = "--journal";
    argv[n++] = s->journal;
    argv[n++] = "--ca";
    argv[n++] = ca;
    argv[n++] = "--cert";
    argv[n++] = cert;
    argv[n++] = "--key";
    argv[n++] = key;
    argv[n++] = "--crl";
    argv[n++] = crl;
    argv[n++] = "--server";
    argv[n++] = server;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = portf;
    argv[n++] = "--backoff-min-ms";
    argv[n++] = "100";
    argv[n++] = "--backoff-max-ms";
    argv[n++] = "800";
    for (int i = 0; extra && extra[i] && n < 60; i++)
        argv[n++] = (char *)extra[i];
    argv[n++] = "relay";
    argv[n] = NULL;
    s->hub.pid = fork();
    ASSERT(s->hub.pid >= 0);
    if (s->hub.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->hub.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    s->hub.port = 0;
    for (int i = 0; i < 1500 && s->hub.port == 0; i++) {
        FILE *f = fopen(portf, "r");
        if (f) {
            int p = 0;
            if (fscanf(f, "%d", &p) == 1)
                s->hub.port = p;
            fclose(f);
        }
        if (s->hub.port)
            break;
        int st;
        if (waitpid(s->hub.pid, &st, WNOHANG) == s->hub.pid) {
            char cmd[400];
            snprintf(cmd, sizeof cmd, "cat %s >&2", s->hub.log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            SS_TEST_FAIL("sitesync-gw relay exited at startup (status %d)", st);
        }
        hx_sleep_ms(10);
    }
    ASSERT_GT(s->hub.port, 0);
    /* The upstream session is up before the test starts. */
    ASSERT_EQ(hr_wait_count(s, "event=upstream_welcome", 1, 15000) >= 1, 1);
}

int hr_count(const hr_sys *s, const char *needle)
{
    return tc_log_count(&s->hub, needle);
}

int hr_wait_count(const hr_sys *s, const char *needle, int want, int timeout_ms)
{
    int n = hr_count(s, needle);
    for (int waited = 0; n < want && waited < timeout_ms; waited += 20) {
        hx_sleep_ms(20);
        n = hr_count(s, needle);
    }
    return n;
}

static void dump_log(const char *log)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "tail -40 %s >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

void hr_finish(hr_sys *s)
{
    int st = tc_daemon_stop(&s->hub, SIGTERM, 30000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        dump_log(s->hub.log);
        SS_TEST_FAIL("the hub did not exit cleanly on SIGTERM (status %d)", st);
    }
    ASSERT_EQ(hr_count(s, "event=relay_stop err=ok"), 1);
    if (hr_count(s, "Z error ") != 0) {
        dump_log(s->hub.log);
        SS_TEST_FAIL("error-level lines in the hub log");
    }
    st = tc_daemon_stop(&s->d, SIGTERM, 30000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        dump_log(s->d.log);
        SS_TEST_FAIL("sitesyncd did not exit cleanly on SIGTERM (status %d)", st);
    }
    tc_env_cleanup(&s->e);
}

int64_t hr_journal_accepted(hr_sys *s, const char *origin)
{
    char cert[300], out[300];
    tc_path(&s->e, "hub.crt", cert, sizeof cert);
    tc_path(&s->e, "journal.out", out, sizeof out);
    unlink(out);
    char *argv[] = { SITESYNC_GW_BIN, "--journal", s->journal, "--cert", cert, "journal", NULL };
    ASSERT_EQ(tc_run(argv, out), 0);
    FILE *f = fopen(out, "r");
    ASSERT(f != NULL);
    char line[512];
    int64_t accepted = 0;
    int seen_header = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128];
        unsigned long long pending, envs, acc, up, refused;
        if (strstr(line, "origin") && strstr(line, "accepted"))
            seen_header = 1;
        if (sscanf(line, " %127s %llu %llu %llu %llu %llu", name, &pending, &envs, &acc, &up,
                   &refused) == 6 &&
            strcmp(name, origin) == 0)
            accepted = (int64_t)acc;
    }
    fclose(f);
    ASSERT(seen_header);
    return accepted;
}

int64_t hr_daemon_committed(hr_sys *s, const char *origin)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT coalesce(max(committed), 0) FROM origins WHERE origin='%s'",
             origin);
    return tc_sql_int(s->d.db, sql);
}
