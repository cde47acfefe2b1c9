/* test_hostile.c - hostile peers against a real sitesyncd on 127.0.0.1
 * (issue 8, item 6): slowloris, connection flood, failed handshakes (rate
 * limited per address), a peer that never reads, bad frame lengths, every
 * message truncated at every byte, duplicate JSON keys and a 10,000-deep
 * document. Each checks that the daemon answers with a clear ERROR (or a
 * documented close), stays up, leaks nothing, and that honest peers are
 * unaffected. Run one with `hostile_it NAME`; the counts are printed, and
 * scaled down under ASan (SITESYNC_ASAN=1; docs/reliability.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>

#include "hx.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "ss_test.h"
#include "tc.h"

/* SIGTERM drain must end with exit 0 and no error-level event: under ASan
 * that exit status also carries LeakSanitizer's verdict on the daemon. */
static void finish(tc_env *e, tc_daemon *d)
{
    int st = tc_daemon_stop(d, SIGTERM, 30000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -40 %s >&2", d->log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        SS_TEST_FAIL("sitesyncd did not exit cleanly on SIGTERM (status %d)", st);
    }
    ASSERT_EQ(tc_log_count(d, "level=error"), 0);
    tc_env_cleanup(e);
}

/* Sessions still open in the database: each closed session's row gets its
 * end time from the writer shortly after the close. */
static int64_t open_sessions(const tc_daemon *d, int64_t want, int timeout_ms)
{
    int64_t n = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        n = tc_sql_int(d->db, "SELECT count(*) FROM sessions WHERE ended_ms IS NULL");
        if (n <= want)
            break;
        hx_sleep_ms(50);
    }
    return n;
}

/* ---- slowloris --------------------------------------------------------- */

/* One measurement: the honest workload before, under and after the
 * attack. Returns 1 if the p99 under attack is within the bound. */
static int slowloris_round(tc_env *e, tc_daemon *d, const hx_workload *w, int n, int round)
{
    hx_result base, att, base2;
    hx_run_workload(e, d->port, w, &base);
    hx_print_result("baseline (no attackers)", 34, &base);
    int fds0 = hx_proc_fds(d->pid);

    hx_swarm sw;
    hx_swarm_start(&sw, d->port, n, 200, 1500, NULL);
    ASSERT_GE(hx_swarm_wait(&sw, n, 30000), n);
    /* The daemon holds them all (one descriptor each), not just the
     * kernel's backlog. */
    int fds = hx_proc_fds(d->pid);
    for (int i = 0; i < 200 && fds < fds0 + n * 9 / 10; i++) {
        hx_sleep_ms(20);
        fds = hx_proc_fds(d->pid);
    }
    ASSERT_GE(fds, fds0 + n * 9 / 10);
    /* The first sockets reach the deadline 2 s after they connected, the
     * last ones 1.5 s later: the honest run falls in that steady churn. */
    hx_sleep_ms(500);
    long cut0 = sw.cut;
    sw.track = 1;
    hx_run_workload(e, d->port, w, &att);
    sw.track = 0;
    long cut_during = sw.cut - cut0;
    hx_swarm_stop(&sw);
    char label[96];
    snprintf(label, sizeof label, "under attack (%d slowloris)", n);
    hx_print_result(label, 34, &att);
    printf("slowloris: %d sockets (half silent, half trickling a ClientHello at 1 byte/200 ms, "
           "connected over 1.5 s, deadline 2 s); held %d..%.0f (min..mean) during the honest "
           "run, daemon fds %d at the start (idle %d); attacker connects=%ld, cut by the "
           "deadline=%ld (%ld during the honest run), connect_failed=%ld, trickled %ld bytes\n",
           n, sw.min_held, hx_swarm_mean_held(&sw), fds, fds0, sw.connects, sw.cut, cut_during,
           sw.connect_failed, sw.bytes_sent);
    /* The attack was on throughout: nearly all sockets held on average (a
     * cut socket is away for as long as the swarm takes to replace it). */
    ASSERT_GE(hx_swarm_mean_held(&sw), n * 0.85);
    ASSERT_GT(cut_during, 0);
    ASSERT(tc_daemon_alive(d));
    /* Every attacker's session is gone: descriptors back to the idle count. */
    int after = hx_wait_fds_at_most(d->pid, fds0 + 2, 15000);
    ASSERT_LE(after, fds0 + 2);
    /* The baseline again, after the attack: the machine's other load
     * drifts, and the larger of the two attack-free measurements is the
     * fair reference. */
    hx_run_workload(e, d->port, w, &base2);
    hx_print_result("baseline again (attack over)", 34, &base2);
    double ref = base.p99 > base2.p99 ? base.p99 : base2.p99;
    /* Twice the baseline p99, with a 20 ms floor under the baseline so that
     * a fast machine's scheduling jitter on a short session is not read as
     * an effect of the attack. */
    double floor_ms = 20.0;
    double bound = 2.0 * (ref > floor_ms ? ref : floor_ms);
    int ok = att.p99 <= bound;
    printf("slowloris round %d: p99 baseline %.1f ms (before) %.1f ms (after), under attack "
           "%.1f ms, bound %.1f ms: %s\n",
           round, base.p99, base2.p99, att.p99, bound, ok ? "within" : "OVER");
    fflush(stdout);
    hx_result_free(&base);
    hx_result_free(&att);
    hx_result_free(&base2);
    return ok;
}

TEST(slowloris)
{
    int n = 1000;
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    hx_issue_honest(&e, 10);
    /* The daemon inherits a soft descriptor limit of 512, the kind of
     * default it meets in production (often 1024): it must raise its own
     * to the hard limit to hold 1,000 attackers and still serve. */
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ASSERT(rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)(n + 256));
    rlim_t soft = rl.rlim_cur;
    rl.rlim_cur = 512;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    /* A 2 s deadline (default 10 s): the swarm is cut and comes back while
     * the honest clients run, so the daemon also pays for the churn of a
     * real attack's reconnect loop. */
    const char *extra[] = { "--handshake-timeout-ms", "2000", NULL };
    tc_daemon_start(&e, &d, extra);
    rl.rlim_cur = soft;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    hx_need_fds(n + 256);
    ASSERT(tc_log_wait(&d, "event=fd_limit soft=", 5000));
    ASSERT_EQ(tc_log_count(&d, "was=512 "), 1);
    ASSERT_EQ(tc_log_count(&d, "event=fd_limit_low"), 0);
    hx_workload w = { 10, hx_scale(20, 10), 3, 20 };
    hx_result warm;
    hx_run_workload(&e, d.port, &w, &warm); /* page cache, WAL, allocator */
    hx_result_free(&warm);
    /* Timing on a shared machine: a second round if the first is over the
     * bound (a daemon that really slows down under the attack fails both;
     * docs/reliability.md). */
    int ok = 0;
    for (int round = 1; round <= 2 && !ok; round++)
        ok = slowloris_round(&e, &d, &w, n, round);
    ASSERT(ok);
    ASSERT_GE(tc_log_count(&d, "event=handshake_timeout"), 1);
    finish(&e, &d);
}

/* The youngest connection the daemon evicted, from its log's debug lines
 * (conn_close reason=evicted ... error="evicted: ..., N ms after accept",
 * the loop's clock the grace is judged by), -1 if none. *answered: evicted
 * connections the daemon had answered (bytes_out not 0: a whole ClientHello
 * received, an honest handshake in progress). One pass over one read of
 * the log, so the two cannot disagree with each other. */
static long min_evicted_age(const tc_daemon *d, int *answered)
{
    FILE *f = fopen(d->log, "r");
    ASSERT(f != NULL);
    char line[4096];
    long min = -1;
    *answered = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "event=conn_close ") || !strstr(line, " reason=evicted "))
            continue;
        if (!strstr(line, " bytes_out=0 "))
            (*answered)++;
        const char *a = strstr(line, "in the handshake, ");
        ASSERT(a != NULL);
        char *end;
        long age = strtol(a + 18, &end, 10);
        ASSERT(end != a + 18 && strncmp(end, " ms after accept", 16) == 0);
        if (min < 0 || age < min)
            min = age;
    }
    fclose(f);
    return min;
}

/* More slowloris sockets than max_connections: the daemon is full of them
 * all the time, and each honest connection evicts the oldest one still in
 * its TLS handshake. Authenticated sessions are never evicted. */
TEST(slowloris_over_max_connections)
{
    int maxc = 300, n = 600;
    hx_need_fds(n + 256);
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    hx_issue_honest(&e, 10);
    const char *extra[] = { "--max-connections", "300", NULL };
    tc_daemon_start(&e, &d, extra);
    int fds0 = hx_proc_fds(d.pid);
    hx_swarm sw;
    hx_swarm_start(&sw, d.port, n, 200, 500, NULL);
    /* The daemon is full: it holds max_connections sockets (twice as many
     * try), and stays full while the swarm replaces the evicted ones. */
    int fds = hx_proc_fds(d.pid);
    for (int i = 0; i < 500 && fds < fds0 + maxc * 9 / 10; i++) {
        hx_sleep_ms(20);
        fds = hx_proc_fds(d.pid);
    }
    ASSERT_GE(fds, fds0 + maxc * 9 / 10);
    /* Hold sessions open across the run: evictions must spare them. */
    tc_client held[5];
    for (int i = 0; i < 5; i++) {
        char node[16];
        snprintf(node, sizeof node, "gw%d", i);
        hx_session(&e, d.port, &held[i], node);
    }
    hx_workload w = { 10, hx_scale(10, 5), 2, 10 };
    hx_result r;
    hx_run_workload(&e, d.port, &w, &r);
    int fds_end = hx_proc_fds(d.pid);
    hx_swarm_stop(&sw);
    hx_print_result("honest, daemon full of slowloris", 34, &r);
    int evict_lines = tc_log_count(&d, "event=conn_evicted");
    int refused = tc_log_count(&d, "reason=max_connections live=");
    printf("slowloris_over_max_connections: max_connections %d, %d slowloris sockets "
           "(connects=%ld, cut or evicted=%ld); daemon fds %d at the start of the honest run, "
           "%d at its end (idle %d); conn_evicted warnings %d, refused at accept %d\n",
           maxc, n, sw.connects, sw.cut, fds, fds_end, fds0, evict_lines, refused);
    fflush(stdout);
    ASSERT_GE(evict_lines, 1);
    /* Each evicted connection had its grace first (500 ms, SD_EVICT_GRACE_MS):
     * before it, the swarm's churn evicted connections 3-4 ms after their
     * accept (mean 46 ms), an honest one among them when its ClientHello
     * was a few ms late (hx.c: TLS handshake failed). */
    int answered = 0;
    long min_age = min_evicted_age(&d, &answered);
    printf("slowloris_over_max_connections: youngest evicted connection %ld ms old, %d evicted "
           "after the daemon answered their ClientHello\n",
           min_age, answered);
    ASSERT_GE(min_age, 500);
    /* Nor was a handshake the daemon had answered (an honest one whose next
     * flight was slow: seen under ASan with the grace alone). */
    ASSERT_EQ(answered, 0);
    /* The held sessions are still served. */
    for (int i = 0; i < 5; i++) {
        char node[16], site[16];
        snprintf(node, sizeof node, "gw%d", i);
        snprintf(site, sizeof site, "s%d", i);
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        m.u.ping.nonce = 77;
        ASSERT_EQ(tc_send_msg(&held[i], &m), 0);
        ASSERT_EQ(tc_recv_msg(&held[i], 10000, &m), 1);
        ASSERT_EQ(m.type, SS_FRAME_PONG);
        tc_close(&held[i]);
    }
    ASSERT(tc_daemon_alive(&d));
    hx_result_free(&r);
    finish(&e, &d);
}

/* ---- connection flood -------------------------------------------------- */

TEST(conn_flood)
{
    hx_need_fds(512);
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    hx_issue_honest(&e, 10);
    tc_daemon_start(&e, &d, NULL);
    hx_workload w = { 10, hx_scale(20, 10), 2, 10 };
    hx_result warm, base, att;
    hx_run_workload(&e, d.port, &w, &warm);
    hx_result_free(&warm);
    hx_run_workload(&e, d.port, &w, &base);
    hx_print_result("baseline (no flood)", 34, &base);
    int fds0 = hx_proc_fds(d.pid);

    /* Two flooders, 1,500 connects a second each (500 under ASan, where
     * each accept costs the daemon several times more): plain connect/close from
     * 127.0.0.1 (the honest clients' own address: no handshake fails, so no
     * penalty), and TLS garbage from 127.0.0.3, which the failed-handshake
     * penalty soon refuses at accept. */
    hx_flood f[2];
    pthread_t th[2];
    int ms = 30000;
    volatile int stop = 0;
    for (int i = 0; i < 2; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].port = d.port;
        f[i].src = i ? "127.0.0.3" : NULL;
        f[i].garbage = i;
        f[i].ms = ms;
        f[i].rate = hx_scale(1500, 500);
        f[i].stop = &stop;
        f[i].max = 20000;
        f[i].hello_len = hx_client_hello(f[i].hello, sizeof f[i].hello);
        ASSERT_EQ(pthread_create(&th[i], NULL, hx_flood_main, &f[i]), 0);
    }
    hx_sleep_ms(300);
    hx_run_workload(&e, d.port, &w, &att);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    hx_print_result("during the flood", 34, &att);
    printf("conn_flood: %lld ms, plain %ld connects (%.0f/s) failed %ld, garbage %ld connects "
           "(%.0f/s) failed %ld; penalised refusals %d\n",
           (long long)f[0].took, f[0].connects, f[0].connects * 1000.0 / (double)f[0].took,
           f[0].failed, f[1].connects, f[1].connects * 1000.0 / (double)f[1].took, f[1].failed,
           tc_log_count(&d, "event=conn_refused addr=127.0.0.3"));
    printf("conn_flood: p99 baseline %.1f ms, during flood %.1f ms\n", base.p99, att.p99);
    fflush(stdout);
    ASSERT_GT(f[0].connects, 100);
    ASSERT_GT(f[1].connects, 100);
    ASSERT(tc_daemon_alive(&d));
    /* The garbage sender was penalised; the honest address never was. */
    ASSERT_EQ(tc_log_count(&d, "event=addr_penalised addr=127.0.0.3 "), 1);
    ASSERT_EQ(tc_log_count(&d, "event=addr_penalised addr=127.0.0.1 "), 0);
    /* Dead connections drained from the backlog in a burst never count
     * against max_connections, so no honest peer was turned away. */
    ASSERT_EQ(tc_log_count(&d, "reason=max_connections live="), 0);
    /* Honest sessions all completed (hx_run_workload asserts it) and stayed
     * within a generous bound: the flood costs an accept and a close each. */
    double bound = 4.0 * (base.p99 > 20.0 ? base.p99 : 20.0);
    printf("conn_flood: bound %.1f ms\n", bound);
    ASSERT(att.p99 <= bound);
    int after = hx_wait_fds_at_most(d.pid, fds0 + 2, 15000);
    ASSERT_LE(after, fds0 + 2);
    ASSERT_EQ(open_sessions(&d, 0, 5000), 0);
    hx_result_free(&base);
    hx_result_free(&att);
    finish(&e, &d);
}

/* ---- failed handshakes, rate limited per address ------------------------ */

TEST(bad_handshake_rate_limit)
{
    tc_env e, other;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "thief", "s9");
    tc_revoke(&e, "thief");
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    const int limit = 5, penalty_ms = 6000; /* room for a slow (ASan, loaded) machine */
    const char *extra[] = { "--bad-handshake-limit",
                            "5",
                            "--bad-handshake-window-ms",
                            "60000",
                            "--bad-handshake-penalty-ms",
                            "6000",
                            NULL };
    tc_daemon_start(&e, &d, extra);
    tc_client by;
    hx_session(&e, d.port, &by, "gw1");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw1", "s1", &by_seq, 2);

    /* From 127.0.0.2: a revoked certificate, a foreign CA's, none at all,
     * in turn, 40 times. Only the first `limit` reach TLS at all. */
    char cert[300], key[300];
    tc_tls_opts bad[3];
    memset(bad, 0, sizeof bad);
    for (int i = 0; i < 3; i++)
        bad[i].src_ip = "127.0.0.2";
    bad[1].cert = tc_path(&other, "gw1.crt", cert, sizeof cert);
    bad[1].key = tc_path(&other, "gw1.key", key, sizeof key);
    bad[2].no_cert = 1;
    const int attempts = 40;
    int64_t t0 = tc_now_ms();
    for (int i = 0; i < attempts; i++) {
        const char *node = i % 3 == 0 ? "thief" : "gw1";
        ASSERT_EQ(hx_try_session(&e, d.port, node, &bad[i % 3]), 0);
        /* The honest address is not concerned. */
        if (i == attempts / 2)
            hx_bystander_batch(&by, "gw1", "s1", &by_seq, 2);
    }
    int64_t took = tc_now_ms() - t0;
    ASSERT_LT(took, penalty_ms); /* all inside one penalty */
    /* Even a good certificate is refused from the penalised address... */
    tc_tls_opts good_src;
    memset(&good_src, 0, sizeof good_src);
    good_src.src_ip = "127.0.0.2";
    ASSERT_EQ(hx_try_session(&e, d.port, "gw1", &good_src), 0);
    /* ...but served from another one at once. */
    tc_tls_opts other_src = good_src;
    other_src.src_ip = "127.0.0.4";
    ASSERT_EQ(hx_try_session(&e, d.port, "gw1", &other_src), 1);
    ASSERT_EQ(hx_try_session(&e, d.port, "gw1", NULL), 1);

    int refused_tls = tc_log_count(&d, "event=tls_refused conn");
    int penalised = tc_log_count(&d, "event=addr_penalised addr=127.0.0.2 ");
    int at_accept = tc_log_count(&d, "event=conn_refused addr=127.0.0.2");
    printf("bad_handshake_rate_limit: limit %d, %d attempts in %lld ms: %d reached TLS "
           "(tls_refused), %d closed at accept, penalised %d time(s)\n",
           limit, attempts + 1, (long long)took, refused_tls, at_accept, penalised);
    fflush(stdout);
    ASSERT_EQ(refused_tls, limit);
    ASSERT_EQ(penalised, 1);
    /* conn_refused (first only) + conn_close for each refused connection. */
    ASSERT_EQ(tc_log_count(&d, "event=conn_close") > 0, 1);
    ASSERT_EQ(tc_log_count(&d, "event=conn_refused addr=127.0.0.2"), attempts + 1 - limit);
    ASSERT_EQ(tc_log_count(&d, "level=warn event=conn_refused addr=127.0.0.2"), 1);
    /* Revoked attempts are audited, but only those that reached TLS: the
     * penalty bounds the audit rows an attacker can make us write. */
    int64_t audited = -1;
    for (int i = 0; i < 100; i++) {
        audited = tc_sql_int(d.db, "SELECT count(*) FROM audit WHERE outcome='rejected:revoked'");
        if (audited >= (limit + 2) / 3)
            break;
        hx_sleep_ms(20);
    }
    ASSERT_EQ(audited, (limit + 2) / 3);

    /* After the penalty the address is served again. */
    hx_sleep_ms(penalty_ms - (int)(tc_now_ms() - t0) + 300);
    ASSERT_EQ(hx_try_session(&e, d.port, "gw1", &good_src), 1);
    hx_bystander_batch(&by, "gw1", "s1", &by_seq, 2);
    tc_close(&by);
    tc_env_cleanup(&other);
    finish(&e, &d);
}

/* ---- a peer that never reads -------------------------------------------- */

/* The value of key=N on the first daemon log line holding needle, or -1. */
static long long log_field(const tc_daemon *d, const char *needle, const char *key)
{
    FILE *f = fopen(d->log, "r");
    char line[4096], pat[64];
    long long v = -1;
    if (!f)
        return -1;
    snprintf(pat, sizeof pat, " %s=", key);
    while (v < 0 && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, needle) ? strstr(line, pat) : NULL;
        if (p) {
            char *end = NULL;
            unsigned long long x = strtoull(p + strlen(pat), &end, 10);
            if (end != p + strlen(pat))
                v = (long long)x;
        }
    }
    fclose(f);
    return v;
}

/* Output the daemon produced for a peer that never read any of it, up to
 * the cut: what the peer's socket took, plus what the daemon held. Bounded
 * by the cap only if the cap counts the bytes sitting in the daemon's
 * kernel send queue, which autotuning grows to tcp_wmem's maximum (4 MiB
 * on this kind of machine) for a peer whose window has closed. */
#define NEVER_READS_OUT_BOUND (1024 * 1024)

TEST(never_reads_acks)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    const char *extra[] = { "--max-output-bytes", "65536", NULL };
    tc_daemon_start(&e, &d, extra);
    tc_client by, c;
    hx_session(&e, d.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 5);
    long rss0 = hx_proc_rss_kb(d.pid);

    /* A small receive window and never a read after WELCOME: BATCHes (whose
     * ACKs then pile up) and PINGs (whose PONGs do). */
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.rcvbuf = 4096;
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", &o), 0);
    ss_welcome w;
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    uint8_t burst[128 * 64];
    uint64_t seq = 1;
    int64_t t0 = tc_now_ms();
    int cut = 0;
    long sent = 0;
    while (!cut && tc_now_ms() - t0 < 30000) {
        /* The cut may land in the middle of any send: each is checked. */
        int sent_batch = hx_send_status_batch(&c, seq);
        if (sent_batch != 0) {
            cut = 1;
            break;
        }
        seq += 4;
        size_t bl = hx_ping_burst(&m, burst, sizeof burst);
        if (tc_send_raw(&c, burst, bl) != 0)
            cut = 1;
        sent += (long)bl;
        if (tc_log_count(&d, "event=output_cap") > 0)
            cut = 1;
    }
    ASSERT(cut);
    ASSERT(tc_log_wait(&d, "event=output_cap", 5000));
    ASSERT(tc_log_wait(&d, "reason=output_cap", 5000));
    long rss1 = hx_proc_rss_kb(d.pid);
    long long out = log_field(&d, "reason=output_cap", "bytes_out");
    printf("never_reads_acks: cut after %lld ms, %ld bytes of PINGs and %llu changes sent, "
           "%lld bytes of output produced (cap 65536, peer receive buffer 4 KiB); daemon RSS %ld "
           "-> %ld kB\n",
           (long long)(tc_now_ms() - t0), sent, (unsigned long long)(seq - 1), out, rss0, rss1);
    fflush(stdout);
    ASSERT_GT(out, 0);
    ASSERT_LT(out, NEVER_READS_OUT_BOUND);
    /* Bounded by the cap, not by how long the peer keeps sending. Under
     * ASan the allocator's quarantine (up to 256 MB of freed blocks kept
     * back on purpose) makes RSS say nothing about live memory; there
     * LeakSanitizer at the daemon's exit is the check. */
    if (!hx_asan())
        ASSERT_LT(rss1 - rss0, 64 * 1024);
    tc_close(&c);
    ASSERT(tc_daemon_alive(&d));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 5);
    tc_close(&by);
    /* The changes it did send before the cut are committed, nothing more. */
    ASSERT_LE(tc_sql_int(d.db, "SELECT committed FROM origins WHERE origin='gw1'"),
              (int64_t)(seq - 1));
    finish(&e, &d);
}

/* A peer with an ordinary receive buffer that sends nothing but PINGs and
 * never reads a PONG. Regression test for the cap counting only libuv's
 * queue: the daemon then produced about 3 MB for such a peer before the
 * cap even began to count (its kernel send buffer took it all), and the
 * never_reads_acks peer, its 4 KiB receive buffer flooded with one tiny
 * segment per PONG, could wedge its own TCP in that time (dropped
 * segments, then our ACKs refused as out of its zero window, progress only
 * at our retransmission timeouts) so that its sends stalled before the cap
 * was reached (docs/reliability.md). */
TEST(never_reads_cap_counts_socket_queue)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    const char *extra[] = { "--max-output-bytes", "65536", NULL };
    tc_daemon_start(&e, &d, extra);
    tc_client by, c;
    hx_session(&e, d.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);

    hx_session(&e, d.port, &c, "gw1");
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    uint8_t burst[128 * 64];
    long sent = 0;
    int cut = 0;
    int64_t t0 = tc_now_ms();
    /* Bounded: 16 MiB of PINGs or 30 s, whichever comes first. */
    while (!cut && sent < 16L * 1024 * 1024 && tc_now_ms() - t0 < 30000) {
        size_t bl = hx_ping_burst(&m, burst, sizeof burst);
        if (tc_send_raw(&c, burst, bl) != 0)
            cut = 1;
        else
            sent += (long)bl;
        if ((sent / (long)bl) % 16 == 0 && tc_log_count(&d, "reason=output_cap") > 0)
            cut = 1;
    }
    ASSERT(tc_log_wait(&d, "reason=output_cap", 10000));
    long long out = log_field(&d, "reason=output_cap", "bytes_out");
    long long kernel = log_field(&d, "event=output_cap", "kernel");
    printf("never_reads_cap_counts_socket_queue: cut after %lld ms and %ld bytes of PINGs; "
           "%lld bytes of output produced, %lld of them unacknowledged in the kernel at the "
           "cut (cap 65536)\n",
           (long long)(tc_now_ms() - t0), sent, out, kernel);
    fflush(stdout);
    ASSERT_GT(out, 0);
    ASSERT_LT(out, NEVER_READS_OUT_BOUND);
    tc_close(&c);
    ASSERT(tc_daemon_alive(&d));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    tc_close(&by);
    finish(&e, &d);
}

/* ---- a peer that does not wait for WELCOME ------------------------------ */

/* HELLO and then, without waiting, a stream of BATCHes (one large among
 * them) and a PING: they reach the daemon while it writes the session row,
 * when it is not reading, so the ciphertext already received stays unread
 * in the session (a copy of it: the shared read buffer is overwritten by
 * the next read), and they are worked through after WELCOME. Each is
 * applied once, in order, and the session carries on. */
TEST(frames_before_welcome)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    const char *extra[] = { "--window", "4", NULL };
    tc_daemon_start(&e, &d, extra);
    tc_client c;
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", NULL), 0);
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    snprintf(m.u.hello.node, sizeof m.u.hello.node, "gw1");
    m.u.hello.role = SS_ROLE_GATEWAY;
    m.u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
    ASSERT_EQ(tc_send_msg(&c, &m), 0);
    ss_hlc_t h = tc_hlc_now();
    uint64_t seq = 1;
    for (int i = 0; i < 30; i++) {
        uint32_t n = i == 10 ? 600 : 5; /* one envelope of ~150 KB */
        tc_send_batch(&c, "gw1", "s1", seq, n, "early", h + seq);
        seq += n;
    }
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    m.u.ping.nonce = 77;
    ASSERT_EQ(tc_send_msg(&c, &m), 0);
    ss_msg r;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &r), 1);
    ASSERT_EQ(r.type, SS_FRAME_WELCOME);
    ASSERT_U64_EQ(tc_welcome_seq(&r.u.welcome, "gw1"), 0);
    ss_msg_free(&r);
    /* The ACKs and the PONG, in whatever order they come. */
    uint64_t acked = 0;
    int pong = 0;
    int64_t t0 = tc_now_ms();
    while ((acked < seq - 1 || !pong) && tc_now_ms() - t0 < 20000) {
        ASSERT_EQ(tc_recv_msg(&c, 10000, &r), 1);
        if (r.type == SS_FRAME_ERROR)
            SS_TEST_FAIL("ERROR %s: %s", ss_err_name(r.u.error.code), r.u.error.message);
        if (r.type == SS_FRAME_PONG && r.u.ping.nonce == 77)
            pong = 1;
        if (r.type == SS_FRAME_ACK)
            for (int i = 0; i < r.u.ack.nacks; i++)
                if (strcmp(r.u.ack.acks[i].origin, "gw1") == 0 && r.u.ack.acks[i].seq > acked)
                    acked = r.u.ack.acks[i].seq;
        ss_msg_free(&r);
    }
    ASSERT_U64_EQ(acked, seq - 1);
    ASSERT(pong);
    int held = tc_log_count(&d, "event=input_held");
    printf("frames_before_welcome: %llu changes in 30 BATCHes (one of 600) sent before WELCOME, "
           "all acknowledged, then the PONG; unread input held %d time(s) (%d while opening), "
           "backpressure %d time(s)\n",
           (unsigned long long)(seq - 1), held, tc_log_count(&d, "paused=0 state=2"),
           tc_log_count(&d, "event=backpressure"));
    fflush(stdout);
    /* The window (4) is far below 30 BATCHes: input was left unread and
     * held at least once. */
    ASSERT_GT(held, 0);
    /* The session goes on after them. */
    tc_send_batch(&c, "gw1", "s1", seq, 5, "late", h + seq);
    seq += 5;
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", seq - 1, 10000), seq - 1);
    tc_close(&c);
    ASSERT_EQ(tc_sql_int(d.db, "SELECT committed FROM origins WHERE origin='gw1'"),
              (int64_t)(seq - 1));
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(DISTINCT seq) FROM audit WHERE origin='gw1'"),
              (int64_t)(seq - 1));
    finish(&e, &d);
}

/* ---- frame lengths: 0, max+1, 2^32-1 ------------------------------------ */

/* The daemon's answer to a frame header with this type and length, sent
 * before HELLO (ready = 0) or in a streaming session (ready = 1). */
static int frame_len_case(tc_env *e, int port, int ready, int type, uint32_t len, unsigned flags)
{
    tc_client c;
    if (ready)
        hx_session(e, port, &c, "gw1");
    else
        ASSERT_EQ(tc_connect(&c, e, port, "gw1", NULL), 0);
    uint8_t hdr[SS_FRAME_HEADER_LEN] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                         (uint8_t)(len >> 8),  (uint8_t)len,
                                         (uint8_t)type,        (uint8_t)flags };
    ASSERT_EQ(tc_send_raw(&c, hdr, sizeof hdr), 0);
    ss_msg m;
    int r = hx_recv_error(&c, 10000, &m);
    if (r != 1)
        SS_TEST_FAIL("type %d len %u flags %u ready %d: no ERROR (%d)", type, len, flags, ready, r);
    int code = m.u.error.code;
    printf("  %-7s type=%d len=%-10u flags=%u -> ERROR %s \"%s\"\n", ready ? "session" : "pre-TLS",
           type, len, flags, ss_err_name(code), m.u.error.message);
    ss_msg_free(&m);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    return code;
}

TEST(frame_lengths)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    const uint32_t max = 4096;
    const char *extra[] = { "--max-frame", "4096", NULL };
    tc_daemon_start(&e, &d, extra);
    tc_client by;
    hx_session(&e, d.port, &by, "gw2");
    uint64_t by_seq = 1;
    const uint32_t lens[3] = { 0, max + 1, UINT32_MAX };
    int cases = 0;
    for (int ready = 0; ready < 2; ready++) {
        /* Every type the frame layer knows, and one below and above. */
        for (int type = 0; type <= SS_FRAME_TYPE_MAX + 1; type++) {
            int known = type >= 1 && type <= SS_FRAME_TYPE_MAX;
            for (int li = 0; li < 3; li++) {
                int code = frame_len_case(&e, d.port, ready, type, lens[li], 0);
                cases++;
                int want;
                if (li > 0)
                    want = SS_EOVERSIZE; /* from the header, before allocation */
                else if (!known)
                    want = SS_ETYPE;
                else if (!ready && type != SS_FRAME_HELLO)
                    want = SS_EPROTO; /* "expected HELLO" */
                else if (ready && type != SS_FRAME_BATCH && type != SS_FRAME_ERROR &&
                         type != SS_FRAME_PING && type != SS_FRAME_PONG && type != SS_FRAME_BYE)
                    want = SS_EPROTO; /* not a client's message in a session */
                else if (type == SS_FRAME_BATCH)
                    want = SS_ETRUNC; /* an envelope needs its header */
                else
                    want = SS_EJSON; /* an empty JSON payload */
                if (code != want)
                    SS_TEST_FAIL("type %d len %u ready %d: ERROR %s, want %s", type, lens[li],
                                 ready, ss_err_name(code), ss_err_name(want));
            }
            /* A flag bit this type does not define, with an ordinary length. */
            if (known) {
                unsigned bad = ~ss_frame_flags_allowed(type) & 0xffu;
                unsigned flag = bad & (0u - bad); /* the lowest such bit */
                ASSERT_EQ(frame_len_case(&e, d.port, ready, type, 16, flag), SS_EFLAGS);
                cases++;
            }
        }
        hx_bystander_batch(&by, "gw2", "s2", &by_seq, 3);
    }
    printf("frame_lengths: %d cases, each a clear ERROR and a close\n", cases);
    ASSERT(tc_daemon_alive(&d));
    tc_close(&by);
    ASSERT_EQ(open_sessions(&d, 0, 5000), 0);
    finish(&e, &d);
}

/* ---- every message truncated at every byte ------------------------------ */

typedef struct tmsg {
    const char *name;
    int type;
    uint8_t *frame; /* complete frame */
    size_t len;
} tmsg;

static void build_messages(tmsg *t, int *n)
{
    uint8_t buf[4096];
    int k = 0;
    for (int type = SS_FRAME_HELLO; type <= SS_FRAME_BYE; type++) {
        int len;
        if (type == SS_FRAME_BATCH) {
            ss_change ch;
            tc_change_status(&ch, 1, tc_hlc_now(), "s1", "truncated", "elevated");
            size_t el;
            uint8_t *env = tc_envelope("gw1", &ch, 1, &el);
            len = ss_frame_encode(buf, sizeof buf, SS_FRAME_BATCH, 0, env, el);
            free(env);
        } else {
            len = hx_sample_frame(type, buf, sizeof buf);
        }
        ASSERT_GT(len, (int)SS_FRAME_HEADER_LEN);
        t[k].name = ss_frame_type_name(type);
        t[k].type = type;
        t[k].frame = malloc((size_t)len);
        ASSERT(t[k].frame != NULL);
        memcpy(t[k].frame, buf, (size_t)len);
        t[k].len = (size_t)len;
        k++;
    }
    *n = k;
}

typedef struct tjob {
    int msg;
    size_t cut; /* bytes kept */
    int honest; /* 1: the length field says `cut - 6` (a short payload) */
} tjob;

typedef struct tpool {
    tc_env *e;
    int port;
    tmsg *msgs;
    tjob *jobs;
    int njobs;
    int next;
    pthread_mutex_t mu;
    int codes[64]; /* ERROR codes seen for short payloads, by -code */
    int errors;
} tpool;

static void run_tjob(tpool *p, const tjob *j)
{
    const tmsg *t = &p->msgs[j->msg];
    tc_client c;
    if (t->type == SS_FRAME_HELLO)
        ASSERT_EQ(tc_connect(&c, p->e, p->port, "gw1", NULL), 0);
    else
        hx_session(p->e, p->port, &c, "gw1");
    if (!j->honest) {
        /* The stream stops mid-frame: close_notify, a FIN or a reset. */
        if (j->cut > 0)
            ASSERT_EQ(tc_send_raw(&c, t->frame, j->cut), 0);
        switch (j->cut % 3) {
        case 0:
            SSL_shutdown(c.ssl);
            break;
        case 1:
            break;
        default: {
            struct linger lg = { 1, 0 };
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        }
        tc_close(&c);
        return;
    }
    /* A well-formed frame whose payload is the message cut short. */
    size_t plen = j->cut - SS_FRAME_HEADER_LEN;
    ASSERT_EQ(tc_send_frame(&c, t->type, t->frame + SS_FRAME_HEADER_LEN, plen), 0);
    ss_msg m;
    int r = hx_recv_error(&c, 10000, &m);
    if (r != 1)
        SS_TEST_FAIL("%s payload cut to %zu of %zu bytes: no ERROR (%d)", t->name, plen,
                     t->len - SS_FRAME_HEADER_LEN, r);
    int code = m.u.error.code;
    ASSERT(m.u.error.message[0] != '\0');
    ss_msg_free(&m);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    pthread_mutex_lock(&p->mu);
    if (-code > 0 && -code < 64)
        p->codes[-code]++;
    p->errors++;
    pthread_mutex_unlock(&p->mu);
}

static void *tpool_main(void *arg)
{
    tpool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->next < p->njobs ? p->next++ : -1;
        pthread_mutex_unlock(&p->mu);
        if (i < 0)
            return NULL;
        run_tjob(p, &p->jobs[i]);
    }
}

TEST(truncated_every_byte)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_daemon_start(&e, &d, NULL);
    tc_client by;
    hx_session(&e, d.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    int fds0 = hx_proc_fds(d.pid);
    long rss0 = hx_proc_rss_kb(d.pid);

    tmsg msgs[8];
    int nmsg;
    build_messages(msgs, &nmsg);
    /* Every cut of every message, both ways: the stream ends after `cut`
     * bytes (0 .. len-1), or a frame carries the first `cut - 6` payload
     * bytes under an honest length (6 .. len-1). */
    size_t total = 0;
    for (int i = 0; i < nmsg; i++)
        total += 2 * msgs[i].len;
    tjob *jobs = calloc(total, sizeof *jobs);
    ASSERT(jobs != NULL);
    int nj = 0;
    for (int i = 0; i < nmsg; i++) {
        for (size_t k = 0; k < msgs[i].len; k++)
            jobs[nj++] = (tjob){ i, k, 0 };
        for (size_t k = SS_FRAME_HEADER_LEN; k < msgs[i].len; k++)
            jobs[nj++] = (tjob){ i, k, 1 };
    }
    tpool p;
    memset(&p, 0, sizeof p);
    p.e = &e;
    p.port = d.port;
    p.msgs = msgs;
    p.jobs = jobs;
    p.njobs = nj;
    pthread_mutex_init(&p.mu, NULL);
    int nth = 4;
    pthread_t th[4];
    int64_t t0 = tc_now_ms();
    for (int i = 0; i < nth; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, tpool_main, &p), 0);
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    int64_t took = tc_now_ms() - t0;
    printf("truncated_every_byte: %d connections in %lld ms (", nj, (long long)took);
    for (int i = 0; i < nmsg; i++)
        printf("%s%s %zu B", i ? ", " : "", msgs[i].name, msgs[i].len);
    printf(")\n  short payloads answered with ERROR: %d;", p.errors);
    for (int i = 1; i < 64; i++)
        if (p.codes[i])
            printf(" %s=%d", ss_err_name(-i), p.codes[i]);
    printf("\n");
    fflush(stdout);
    ASSERT(tc_daemon_alive(&d));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    /* Nothing left behind: descriptors, session rows, memory, applied data. */
    int after = hx_wait_fds_at_most(d.pid, fds0, 15000);
    long rss1 = hx_proc_rss_kb(d.pid);
    printf("  daemon fds %d -> %d, RSS %ld -> %ld kB\n", fds0, after, rss0, rss1);
    ASSERT_LE(after, fds0);
    ASSERT_EQ(open_sessions(&d, 1, 5000), 1); /* the bystander's */
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(*) FROM origins WHERE origin='gw1' AND committed>0"),
              0);
    tc_close(&by);
    for (int i = 0; i < nmsg; i++)
        free(msgs[i].frame);
    free(jobs);
    pthread_mutex_destroy(&p.mu);
    finish(&e, &d);
}

/* ---- duplicate keys and a 10,000-deep document --------------------------- */

/* Sends payload as a frame of type (before HELLO if !ready) and expects an
 * ERROR with want, or an ACK refusing change 1 with want (BATCH bodies whose
 * envelope is sound but a change is not). */
static void json_case(tc_env *e, int port, int ready, int type, const void *payload, size_t len,
                      int want, const char *what)
{
    tc_client c;
    if (ready)
        hx_session(e, port, &c, "gw1");
    else
        ASSERT_EQ(tc_connect(&c, e, port, "gw1", NULL), 0);
    ASSERT_EQ(tc_send_frame(&c, type, payload, len), 0);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    if (m.type == SS_FRAME_ERROR) {
        printf("  %-40s -> ERROR %s \"%s\"\n", what, ss_err_name(m.u.error.code),
               m.u.error.message);
        if (m.u.error.code != want)
            SS_TEST_FAIL("%s: ERROR %s, want %s", what, ss_err_name(m.u.error.code),
                         ss_err_name(want));
        ss_msg_free(&m);
        tc_expect_closed(&c, 5000);
    } else {
        if (m.type != SS_FRAME_ACK || m.u.ack.nrejects != 1)
            SS_TEST_FAIL("%s: got %s, want ERROR %s", what, ss_frame_type_name(m.type),
                         ss_err_name(want));
        printf("  %-40s -> ACK rejected seq %llu %s field=%s \"%s\"\n", what,
               (unsigned long long)m.u.ack.rejects[0].seq, ss_err_name(m.u.ack.rejects[0].code),
               m.u.ack.rejects[0].field, m.u.ack.rejects[0].message);
        if (m.u.ack.rejects[0].code != want)
            SS_TEST_FAIL("%s: rejected %s, want %s", what, ss_err_name(m.u.ack.rejects[0].code),
                         ss_err_name(want));
        ss_msg_free(&m);
    }
    tc_close(&c);
}

static void with_bystander(tc_env *e, tc_daemon *d, void (*body)(tc_env *, int))
{
    tc_client by;
    hx_session(e, d->port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    body(e, d->port);
    ASSERT(tc_daemon_alive(d));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    tc_close(&by);
    /* None of it was applied. */
    ASSERT_EQ(tc_sql_int(d->db, "SELECT count(*) FROM origins WHERE origin='gw1' AND committed>0"),
              0);
    ASSERT_EQ(open_sessions(d, 0, 5000), 0);
}

static void dup_body(tc_env *e, int port)
{
    const char hello[] = "{\"proto\":1,\"node\":\"gw1\",\"role\":\"gateway\",\"node\":\"gw1\","
                         "\"max_frame\":65536}";
    json_case(e, port, 0, SS_FRAME_HELLO, hello, sizeof hello - 1, SS_EDUPKEY, "HELLO node twice");
    const char ping[] = "{\"nonce\":1,\"nonce\":2}";
    json_case(e, port, 1, SS_FRAME_PING, ping, sizeof ping - 1, SS_EDUPKEY, "PING nonce twice");
    json_case(e, port, 1, SS_FRAME_PONG, ping, sizeof ping - 1, SS_EDUPKEY, "PONG nonce twice");
    const char bye[] = "{\"reason\":\"a\",\"reason\":\"b\"}";
    json_case(e, port, 1, SS_FRAME_BYE, bye, sizeof bye - 1, SS_EDUPKEY, "BYE reason twice");
    const char err[] = "{\"code\":\"protocol\",\"message\":\"x\",\"code\":\"gap\"}";
    json_case(e, port, 1, SS_FRAME_ERROR, err, sizeof err - 1, SS_EDUPKEY, "ERROR code twice");
    /* Inside a BATCH: a change member twice, a field twice. */
    char hlc[17];
    snprintf(hlc, sizeof hlc, "%016llx", (unsigned long long)tc_hlc_now());
    char body[512];
    snprintf(body, sizeof body,
             "[{\"seq\":1,\"hlc\":\"%s\",\"collection\":\"site_status\",\"key\":\"s1\","
             "\"site\":\"s1\",\"op\":\"update\",\"site\":\"s2\",\"fields\":{\"note\":\"x\"}}]",
             hlc);
    size_t len;
    uint8_t *env = hx_batch_of(body, &len);
    json_case(e, port, 1, SS_FRAME_BATCH, env, len, SS_EDUPKEY, "BATCH change with site twice");
    free(env);
    char *ch = hx_change_with("{\"note\":\"a\",\"note\":\"b\"}");
    env = hx_batch_of(ch, &len);
    json_case(e, port, 1, SS_FRAME_BATCH, env, len, SS_EDUPKEY, "BATCH field note twice");
    free(env);
    free(ch);
}

TEST(duplicate_keys)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_daemon_start(&e, &d, NULL);
    with_bystander(&e, &d, dup_body);
    finish(&e, &d);
}

static void deep_body(tc_env *e, int port)
{
    const size_t depth = 10000;
    char *arr = hx_deep(depth, 0), *obj = hx_deep(depth, 1);
    /* The document itself as a control payload, before and after HELLO. */
    json_case(e, port, 0, SS_FRAME_HELLO, obj, strlen(obj), SS_EDEPTH, "HELLO 10,000-deep object");
    json_case(e, port, 0, SS_FRAME_HELLO, arr, strlen(arr), SS_EDEPTH, "HELLO 10,000-deep array");
    json_case(e, port, 1, SS_FRAME_PING, obj, strlen(obj), SS_EDEPTH, "PING 10,000-deep object");
    json_case(e, port, 1, SS_FRAME_BYE, arr, strlen(arr), SS_EDEPTH, "BYE 10,000-deep array");
    json_case(e, port, 1, SS_FRAME_ERROR, obj, strlen(obj), SS_EDEPTH, "ERROR 10,000-deep object");
    /* Inside a HELLO member, and inside a BATCH: the body, a change's fields. */
    size_t hcap = strlen(obj) + 128;
    char *hello = malloc(hcap);
    ASSERT(hello != NULL);
    snprintf(hello, hcap,
             "{\"proto\":1,\"node\":\"gw1\",\"role\":\"gateway\",\"max_frame\":65536,"
             "\"software\":%s}",
             obj);
    json_case(e, port, 0, SS_FRAME_HELLO, hello, strlen(hello), SS_EDEPTH,
              "HELLO member 10,000 deep");
    size_t len;
    uint8_t *env = hx_batch_of(arr, &len);
    json_case(e, port, 1, SS_FRAME_BATCH, env, len, SS_EDEPTH, "BATCH body 10,000-deep array");
    free(env);
    char *ch = hx_change_with(obj);
    env = hx_batch_of(ch, &len);
    json_case(e, port, 1, SS_FRAME_BATCH, env, len, SS_EDEPTH, "BATCH fields 10,000 deep");
    free(env);
    free(ch);
    free(hello);
    free(arr);
    free(obj);
}

TEST(deep_document)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_daemon_start(&e, &d, NULL);
    with_bystander(&e, &d, deep_body);
    finish(&e, &d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(slowloris) SS_TEST_ENTRY(slowloris_over_max_connections)
                 SS_TEST_ENTRY(conn_flood) SS_TEST_ENTRY(bad_handshake_rate_limit)
                     SS_TEST_ENTRY(never_reads_acks)
                         SS_TEST_ENTRY(never_reads_cap_counts_socket_queue)
                             SS_TEST_ENTRY(frames_before_welcome) SS_TEST_ENTRY(frame_lengths)
                                 SS_TEST_ENTRY(truncated_every_byte) SS_TEST_ENTRY(duplicate_keys)
                                     SS_TEST_ENTRY(deep_document))
