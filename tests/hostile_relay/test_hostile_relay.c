/* test_hostile_relay.c - hostile peers against the relay listener of a real
 * `sitesync-gw relay` (a regional hub) on 127.0.0.1, with sitesyncd as its
 * upstream (issue 8, item 6, for the hub): slowloris (at and beyond
 * max_conns), connection flood, failed handshakes rate-limited per address,
 * a peer that never reads its ACKs (output cap, then a cut), frame lengths 0,
 * max+1 and 2^32-1, every message truncated at every byte, duplicate JSON
 * keys and a 10,000-deep document. Each checks that the hub answers with a
 * clear ERROR (or a documented close), stays up, stores nothing of it in its
 * journal, and that honest gateways syncing through it are unaffected; then
 * the hub drains on SIGTERM with exit 0 and no error-level log line. Run one
 * with `hostile_relay_it NAME`; counts are printed and scaled down under
 * ASan (SITESYNC_ASAN=1; docs/reliability.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hr.h"
#include "hx.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "ss_test.h"
#include "tc.h"

/* The ten honest gateways gw0..gw9 (sites s0..s9) have each synced once
 * through the hub, so that the hub knows them (a first contact waits for
 * the upstream's WELCOME: not what is measured). */
static void warm(hr_sys *s, const hx_workload *w)
{
    hx_result r;
    hx_run_workload(&s->e, s->hub.port, w, &r);
    hx_result_free(&r);
}

/* ---- slowloris --------------------------------------------------------- */

/* One measurement: the honest workload through the hub before, under and
 * after the attack. Returns 1 if the p99 under attack is within the bound. */
static int slowloris_round(hr_sys *s, const hx_workload *w, int n, int round)
{
    hx_result base, att, base2;
    hx_run_workload(&s->e, s->hub.port, w, &base);
    hx_print_result("baseline (no attackers)", 36, &base);
    int fds0 = hx_proc_fds(s->hub.pid);

    hx_swarm sw;
    hx_swarm_start(&sw, s->hub.port, n, 200, 1500, NULL);
    ASSERT_GE(hx_swarm_wait(&sw, n, 30000), n);
    /* The hub holds them all (one descriptor each), not just the kernel's
     * backlog. */
    int fds = hx_proc_fds(s->hub.pid);
    for (int i = 0; i < 200 && fds < fds0 + n * 9 / 10; i++) {
        hx_sleep_ms(20);
        fds = hx_proc_fds(s->hub.pid);
    }
    ASSERT_GE(fds, fds0 + n * 9 / 10);
    long rss_att = hx_proc_rss_kb(s->hub.pid);
    hx_sleep_ms(500);
    long cut0 = sw.cut;
    sw.track = 1;
    hx_run_workload(&s->e, s->hub.port, w, &att);
    sw.track = 0;
    long cut_during = sw.cut - cut0;
    hx_swarm_stop(&sw);
    char label[96];
    snprintf(label, sizeof label, "under attack (%d slowloris)", n);
    hx_print_result(label, 36, &att);
    printf("slowloris: %d sockets (half silent, half trickling a ClientHello at 1 byte/200 ms, "
           "connected over 1.5 s, handshake deadline 2 s); held %d..%.0f (min..mean) during the "
           "honest run; hub fds %d under attack (idle %d), RSS %ld kB; attacker connects=%ld, "
           "cut by the deadline=%ld (%ld during the honest run), connect_failed=%ld, trickled "
           "%ld bytes\n",
           n, sw.min_held, hx_swarm_mean_held(&sw), fds, fds0, rss_att, sw.connects, sw.cut,
           cut_during, sw.connect_failed, sw.bytes_sent);
    ASSERT_GE(hx_swarm_mean_held(&sw), n * 0.85);
    ASSERT_GT(cut_during, 0);
    ASSERT(tc_daemon_alive(&s->hub));
    int after = hx_wait_fds_at_most(s->hub.pid, fds0 + 2, 15000);
    ASSERT_LE(after, fds0 + 2);
    hx_run_workload(&s->e, s->hub.port, w, &base2);
    hx_print_result("baseline again (attack over)", 36, &base2);
    double ref = base.p99 > base2.p99 ? base.p99 : base2.p99;
    /* Twice the larger attack-free p99, with a 20 ms floor under it (the
     * daemon tests' rule: a short session's scheduling jitter on a fast
     * machine is not an effect of the attack). */
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

/* 1,000 slowloris sockets with room for them: max_conns 1100 (the default
 * is 256; see slowloris_over_max_conns for a hub that is full). */
TEST(slowloris)
{
    int n = hx_scale(1000, 500);
    hx_need_fds(n + 256);
    hr_sys s;
    const char *extra[] = { "--max-conns", "1100", "--handshake-timeout-ms", "2000", NULL };
    hr_start(&s, extra);
    hx_issue_honest(&s.e, 10);
    hx_workload w = { 10, hx_scale(10, 5), 3, 20 };
    warm(&s, &w);
    int ok = 0;
    for (int round = 1; round <= 2 && !ok; round++)
        ok = slowloris_round(&s, &w, n, round);
    ASSERT(ok);
    ASSERT_GE(hr_count(&s, "reason=handshake_timeout"), 1);
    hr_finish(&s);
}

/* The youngest connection the hub evicted (age_ms of its conn_evicted
 * lines), -1 if none. */
static long min_evicted_age(const hr_sys *s)
{
    FILE *f = fopen(s->hub.log, "r");
    ASSERT(f != NULL);
    char line[4096];
    long min = -1;
    while (fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "event=conn_evicted");
        if (a && (a = strstr(a, " age_ms=")) != NULL) {
            char *end;
            long age = strtol(a + 8, &end, 10);
            if (end != a + 8 && (min < 0 || age < min))
                min = age;
        }
    }
    fclose(f);
    return min;
}

/* Twice as many slowloris sockets as max_conns (the default, 256): the hub
 * is full all the time, and each new connection evicts the oldest one still
 * in its TLS handshake without a whole ClientHello; honest handshakes and
 * authenticated sessions are never evicted. */
TEST(slowloris_over_max_conns)
{
    int maxc = 256, n = 512;
    hx_need_fds(n + 256);
    hr_sys s;
    const char *extra[] = { "--handshake-timeout-ms", "10000", NULL };
    hr_start(&s, extra);
    hx_issue_honest(&s.e, 10);
    hx_workload w = { 10, hx_scale(5, 3), 2, 10 };
    warm(&s, &w);
    int fds0 = hx_proc_fds(s.hub.pid);
    hx_swarm sw;
    hx_swarm_start(&sw, s.hub.port, n, 200, 500, NULL);
    int fds = hx_proc_fds(s.hub.pid);
    for (int i = 0; i < 500 && fds < fds0 + maxc * 9 / 10; i++) {
        hx_sleep_ms(20);
        fds = hx_proc_fds(s.hub.pid);
    }
    ASSERT_GE(fds, fds0 + maxc * 9 / 10);
    /* Sessions held open across the run: evictions must spare them. */
    tc_client held[5];
    for (int i = 0; i < 5; i++) {
        char node[16];
        snprintf(node, sizeof node, "gw%d", i);
        hx_session(&s.e, s.hub.port, &held[i], node);
    }
    hx_result r;
    hx_run_workload(&s.e, s.hub.port, &w, &r);
    int fds_end = hx_proc_fds(s.hub.pid);
    hx_swarm_stop(&sw);
    hx_print_result("honest, hub full of slowloris", 36, &r);
    int evicted = hr_count(&s, "event=conn_evicted");
    int busy = hr_count(&s, "event=downstream_busy");
    printf("slowloris_over_max_conns: max_conns %d, %d slowloris sockets (connects=%ld, cut or "
           "evicted=%ld); hub fds %d at the start of the honest run, %d at its end (idle %d); "
           "conn_evicted %d, refused busy %d\n",
           maxc, n, sw.connects, sw.cut, fds, fds_end, fds0, evicted, busy);
    fflush(stdout);
    ASSERT_GE(evicted, 1);
    ASSERT_EQ(busy, 0);
    /* The swarm never completes a ClientHello: every eviction took one of
     * its sockets, none took an honest handshake in progress. Counted as
     * the evictions of a received hello (zero), not as two counts of the
     * log compared: the hub is still accepting the swarm's last connects
     * from its backlog and logging their evictions between two reads. */
    ASSERT_EQ(hr_count(&s, "hello=received"), 0);
    /* And each had its grace first (500 ms, GW_EVICT_GRACE_MS): the swarm's
     * churn no longer evicts a connection accepted a few ms earlier, whose
     * hello may still be on its way (26-50 ms before the grace). */
    long min_age = min_evicted_age(&s);
    printf("slowloris_over_max_conns: youngest evicted connection %ld ms old\n", min_age);
    ASSERT_GE(min_age, 500);
    for (int i = 0; i < 5; i++) {
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        m.u.ping.nonce = 77;
        ASSERT_EQ(tc_send_msg(&held[i], &m), 0);
        ASSERT_EQ(tc_recv_msg(&held[i], 10000, &m), 1);
        ASSERT_EQ(m.type, SS_FRAME_PONG);
        tc_close(&held[i]);
    }
    ASSERT(tc_daemon_alive(&s.hub));
    hx_result_free(&r);
    hr_finish(&s);
}

/* ---- connection flood -------------------------------------------------- */

TEST(conn_flood)
{
    hx_need_fds(512);
    hr_sys s;
    hr_start(&s, NULL);
    hx_issue_honest(&s.e, 10);
    hx_workload w = { 10, hx_scale(20, 10), 2, 10 };
    hx_result base, att;
    warm(&s, &w);
    hx_run_workload(&s.e, s.hub.port, &w, &base);
    hx_print_result("baseline (no flood)", 36, &base);
    int fds0 = hx_proc_fds(s.hub.pid);
    /* Two flooders for the whole honest run: plain connect + close/reset
     * from 127.0.0.1 (the honest gateways' own address: no handshake fails
     * there, so no penalty), and TLS garbage or half a ClientHello from
     * 127.0.0.3, which the failed-handshake penalty soon refuses at accept. */
    hx_flood f[2];
    pthread_t th[2];
    volatile int stop = 0;
    for (int i = 0; i < 2; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].port = s.hub.port;
        f[i].src = i ? "127.0.0.3" : NULL;
        f[i].garbage = i;
        f[i].ms = 30000;
        f[i].rate = hx_scale(1500, 500);
        f[i].stop = &stop;
        f[i].max = 20000;
        f[i].hello_len = hx_client_hello(f[i].hello, sizeof f[i].hello);
        ASSERT_EQ(pthread_create(&th[i], NULL, hx_flood_main, &f[i]), 0);
    }
    hx_sleep_ms(300);
    hx_run_workload(&s.e, s.hub.port, &w, &att);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    hx_print_result("during the flood", 36, &att);
    int refused_at_accept = hr_count(&s, "event=conn_refused addr=127.0.0.3 ");
    printf("conn_flood: %lld ms, plain %ld connects (%.0f/s) failed %ld, garbage %ld connects "
           "(%.0f/s) failed %ld; penalised %d, first refusal at accept logged %d\n",
           (long long)f[0].took, f[0].connects, f[0].connects * 1000.0 / (double)f[0].took,
           f[0].failed, f[1].connects, f[1].connects * 1000.0 / (double)f[1].took, f[1].failed,
           hr_count(&s, "event=addr_penalised addr=127.0.0.3 "), refused_at_accept);
    printf("conn_flood: p99 baseline %.1f ms, during flood %.1f ms\n", base.p99, att.p99);
    fflush(stdout);
    ASSERT_GT(f[0].connects, 100);
    ASSERT_GT(f[1].connects, 100);
    ASSERT(tc_daemon_alive(&s.hub));
    ASSERT_GE(hr_count(&s, "event=addr_penalised addr=127.0.0.3 "), 1);
    ASSERT_EQ(hr_count(&s, "event=addr_penalised addr=127.0.0.1 "), 0);
    ASSERT_GE(refused_at_accept, 1);
    ASSERT_EQ(hr_count(&s, "event=downstream_busy"), 0);
    double bound = 4.0 * (base.p99 > 20.0 ? base.p99 : 20.0);
    printf("conn_flood: bound %.1f ms\n", bound);
    ASSERT(att.p99 <= bound);
    int after = hx_wait_fds_at_most(s.hub.pid, fds0 + 2, 15000);
    ASSERT_LE(after, fds0 + 2);
    hx_result_free(&base);
    hx_result_free(&att);
    hr_finish(&s);
}

/* ---- failed handshakes, rate limited per address ------------------------ */

TEST(bad_handshake_rate_limit)
{
    hr_sys s;
    tc_env other;
    memset(&s, 0, sizeof s);
    tc_env_setup(&s.e);
    tc_issue(&s.e, "relay", "hub", HR_HUB_SITES);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    tc_issue(&s.e, "gateway", "thief", "s9");
    tc_revoke(&s.e, "thief");
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    tc_daemon_start(&s.e, &s.d, NULL);
    const int limit = 5, penalty_ms = 6000; /* room for a slow (ASan, loaded) machine */
    const char *extra[] = { "--log-level",
                            "debug",
                            "--bad-handshake-limit",
                            "5",
                            "--bad-handshake-window-ms",
                            "60000",
                            "--bad-handshake-penalty-ms",
                            "6000",
                            NULL };
    hr_hub_start(&s, extra);
    tc_client by;
    hx_session(&s.e, s.hub.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);

    /* From 127.0.0.2: a revoked certificate, another CA's, none at all, in
     * turn, 40 times. Only the first `limit` reach TLS. */
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
        ASSERT_EQ(hx_try_session(&s.e, s.hub.port, node, &bad[i % 3]), 0);
        if (i == attempts / 2)
            hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    }
    int64_t took = tc_now_ms() - t0;
    ASSERT_LT(took, penalty_ms);
    tc_tls_opts good_src;
    memset(&good_src, 0, sizeof good_src);
    good_src.src_ip = "127.0.0.2";
    ASSERT_EQ(hx_try_session(&s.e, s.hub.port, "gw1", &good_src), 0);
    tc_tls_opts other_src = good_src;
    other_src.src_ip = "127.0.0.4";
    ASSERT_EQ(hx_try_session(&s.e, s.hub.port, "gw1", &other_src), 1);
    ASSERT_EQ(hx_try_session(&s.e, s.hub.port, "gw1", NULL), 1);

    int reached = hr_wait_count(&s, "event=downstream_refused peer=127.0.0.2:", limit, 3000);
    int penalised = hr_count(&s, "event=addr_penalised addr=127.0.0.2 ");
    int at_accept = hr_count(&s, "event=conn_refused addr=127.0.0.2 ");
    int warned = hr_count(&s, "warn sitesync-gw event=conn_refused addr=127.0.0.2 ");
    printf("bad_handshake_rate_limit: limit %d, %d attempts in %lld ms: %d reached TLS "
           "(downstream_refused), %d closed at accept (%d of them logged at warn), penalised %d "
           "time(s)\n",
           limit, attempts + 1, (long long)took, reached, at_accept, warned, penalised);
    fflush(stdout);
    ASSERT_EQ(reached, limit);
    ASSERT_EQ(penalised, 1);
    ASSERT_EQ(at_accept, attempts + 1 - limit);
    ASSERT_EQ(warned, 1);
    /* After the penalty the address is served again. The penalty began
     * when the hub judged the limit-th failure, somewhere in the attempts'
     * `took` ms: wait until it is over whenever it began. */
    hx_sleep_ms((int)(t0 + took + penalty_ms + 300 - tc_now_ms()));
    ASSERT_EQ(hx_try_session(&s.e, s.hub.port, "gw1", &good_src), 1);
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    tc_close(&by);
    tc_env_cleanup(&other);
    hr_finish(&s);
}

/* ---- a peer that never reads -------------------------------------------- */

TEST(never_reads_acks)
{
    hr_sys s;
    const char *extra[] = { "--max-output-bytes", "65536", NULL };
    hr_start(&s, extra);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    tc_client by, c;
    hx_session(&s.e, s.hub.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 5);
    long rss0 = hx_proc_rss_kb(s.hub.pid);
    /* A small receive window and never a read after WELCOME: BATCHes
     * (whose ACKs then pile up) and PINGs (whose PONGs do). */
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.rcvbuf = 4096;
    ASSERT_EQ(tc_connect(&c, &s.e, s.hub.port, "gw1", &o), 0);
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
        if (hr_count(&s, "event=output_cap") > 0)
            cut = 1;
    }
    ASSERT(cut);
    ASSERT_EQ(hr_wait_count(&s, "event=output_cap", 1, 5000), 1);
    ASSERT_GE(hr_wait_count(&s, "node=gw1 reason=output_cap", 1, 5000), 1);
    long rss1 = hx_proc_rss_kb(s.hub.pid);
    printf("never_reads_acks: cut after %lld ms, %ld bytes of PINGs and %llu changes sent; "
           "hub RSS %ld -> %ld kB\n",
           (long long)(tc_now_ms() - t0), sent, (unsigned long long)(seq - 1), rss0, rss1);
    fflush(stdout);
    if (!hx_asan())
        ASSERT_LT(rss1 - rss0, 16 * 1024);
    /* The cap counts the kernel's send queue too (fws_sock_outq), so the
     * cut comes once the hub's replies fill it, not after the megabytes of
     * socket buffer Linux grants first (6-7 s and 4.8-5.2 MB of PINGs
     * before; about 0.1 s now): the cut's log line shows the kernel's part. */
    ASSERT_GE(hr_count(&s, "event=output_cap"), 1);
    ASSERT_EQ(hr_count(&s, " kernel=0 "), 0);
    ASSERT_GE(hr_count(&s, " kernel="), 1);
    tc_close(&c);
    ASSERT(tc_daemon_alive(&s.hub));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 5);
    tc_close(&by);
    /* What it sent before the cut was stored, nothing beyond. */
    ASSERT_LE(hr_journal_accepted(&s, "gw1"), (int64_t)(seq - 1));
    hr_finish(&s);
}

/* ---- frame lengths: 0, max+1, 2^32-1 ------------------------------------ */

static int frame_len_case(hr_sys *s, int ready, int type, uint32_t len, unsigned flags)
{
    tc_client c;
    if (ready)
        hx_session(&s->e, s->hub.port, &c, "gw1");
    else
        ASSERT_EQ(tc_connect(&c, &s->e, s->hub.port, "gw1", NULL), 0);
    uint8_t hdr[SS_FRAME_HEADER_LEN] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                         (uint8_t)(len >> 8),  (uint8_t)len,
                                         (uint8_t)type,        (uint8_t)flags };
    ASSERT_EQ(tc_send_raw(&c, hdr, sizeof hdr), 0);
    ss_msg m;
    int r = hx_recv_error(&c, 10000, &m);
    if (r != 1)
        SS_TEST_FAIL("type %d len %u flags %u ready %d: no ERROR (%d)", type, len, flags, ready, r);
    int code = m.u.error.code;
    printf("  %-7s type=%d len=%-10u flags=%u -> ERROR %s \"%s\"\n",
           ready ? "session" : "pre-HELLO", type, len, flags, ss_err_name(code), m.u.error.message);
    ASSERT(m.u.error.message[0] != '\0');
    ss_msg_free(&m);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    return code;
}

TEST(frame_lengths)
{
    hr_sys s;
    const char *extra[] = { "--max-frame", "4096", "--entry-max", "1024", NULL };
    hr_start(&s, extra);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    tc_client by;
    ss_welcome wel;
    ASSERT_EQ(tc_connect(&by, &s.e, s.hub.port, "gw2", NULL), 0);
    tc_hello(&by, "gateway", NULL, &wel);
    /* The hub's frame limit is what its WELCOME announces (max_frame plus
     * room for a relay's route prefix and signature block). */
    const uint32_t max = wel.max_frame;
    free(wel.committed);
    printf("frame_lengths: the hub announces max_frame %u\n", max);
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    const uint32_t lens[3] = { 0, max + 1, UINT32_MAX };
    int cases = 0;
    for (int ready = 0; ready < 2; ready++) {
        for (int type = 0; type <= SS_FRAME_TYPE_MAX + 1; type++) {
            int known = type >= 1 && type <= SS_FRAME_TYPE_MAX;
            for (int li = 0; li < 3; li++) {
                int code = frame_len_case(&s, ready, type, lens[li], 0);
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
                    want = SS_EPROTO; /* not a downstream's message in a session */
                else if (type == SS_FRAME_BATCH)
                    want = SS_ETRUNC; /* an envelope needs its header */
                else
                    want = SS_EJSON; /* an empty JSON payload */
                if (code != want)
                    SS_TEST_FAIL("type %d len %u ready %d: ERROR %s, want %s", type, lens[li],
                                 ready, ss_err_name(code), ss_err_name(want));
            }
            if (known) {
                unsigned bad = ~ss_frame_flags_allowed(type) & 0xffu;
                unsigned flag = bad & (0u - bad);
                ASSERT_EQ(frame_len_case(&s, ready, type, 16, flag), SS_EFLAGS);
                cases++;
            }
        }
        hx_bystander_batch(&by, "gw2", "s2", &by_seq, 3);
    }
    printf("frame_lengths: %d cases, each a clear ERROR and a close\n", cases);
    ASSERT(tc_daemon_alive(&s.hub));
    tc_close(&by);
    ASSERT_EQ(hr_journal_accepted(&s, "gw1"), 0);
    hr_finish(&s);
}

/* ---- every message truncated at every byte ------------------------------ */

typedef struct tmsg {
    const char *name;
    int type;
    uint8_t *frame;
    size_t len;
} tmsg;

static void build_messages(hr_sys *s, tmsg *t, int *n)
{
    uint8_t buf[4096];
    int k = 0;
    for (int type = SS_FRAME_HELLO; type <= SS_FRAME_BYE; type++) {
        int len;
        if (type == SS_FRAME_BATCH) {
            /* Signed by gw1, as the hub requires: a whole one would be
             * stored, every cut of it must not be. */
            ss_change ch;
            tc_change_status(&ch, 1, tc_hlc_now(), "s1", "truncated", "elevated");
            size_t el, sl;
            uint8_t *env = tc_envelope("gw1", &ch, 1, &el);
            uint8_t *sig = tc_sign_as(&s->e, "gw1", env, el, &sl);
            len = ss_frame_encode(buf, sizeof buf, SS_FRAME_BATCH, 0, sig, sl);
            free(env);
            free(sig);
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
    size_t cut;
    int honest; /* 1: the length field says `cut - 6` (a short payload) */
} tjob;

typedef struct tpool {
    hr_sys *s;
    tmsg *msgs;
    tjob *jobs;
    int njobs, next;
    pthread_mutex_t mu;
    int codes[64];
    int errors;
} tpool;

static void run_tjob(tpool *p, const tjob *j)
{
    const tmsg *t = &p->msgs[j->msg];
    tc_client c;
    if (t->type == SS_FRAME_HELLO)
        ASSERT_EQ(tc_connect(&c, &p->s->e, p->s->hub.port, "gw1", NULL), 0);
    else
        hx_session(&p->s->e, p->s->hub.port, &c, "gw1");
    c.no_sign = 1; /* the bytes exactly as cut */
    if (!j->honest) {
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
    hr_sys s;
    /* Every cut is a new TLS session from 127.0.0.1; the ones that end
     * mid-handshake are not failures, but keep the penalty out of it. */
    const char *extra[] = { "--bad-handshake-limit", "0", NULL };
    hr_start(&s, extra);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    tc_client by;
    hx_session(&s.e, s.hub.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    int fds0 = hx_proc_fds(s.hub.pid);
    long rss0 = hx_proc_rss_kb(s.hub.pid);
    tmsg msgs[8];
    int nmsg;
    build_messages(&s, msgs, &nmsg);
    /* Every cut of every message, both ways: the stream ends after `cut`
     * bytes (0 .. len-1), or a frame carries the first `cut - 6` payload
     * bytes under an honest length (6 .. len-1). One exception keeps the
     * run within the CI budget (each cut is a full mbed TLS handshake on
     * the hub's one thread, about 12 ms): inside the signed BATCH's
     * signature block, the ~600-byte certificate DER is cut at every 8th
     * byte; its framing (the first and last 16 bytes of the block) and the
     * whole signed region are cut at every byte. Under ASan every third
     * cut everywhere. */
    int step = hx_scale(1, 3);
    size_t total = 0;
    for (int i = 0; i < nmsg; i++)
        total += 2 * msgs[i].len;
    tjob *jobs = calloc(total, sizeof *jobs);
    ASSERT(jobs != NULL);
    int nj = 0;
    for (int i = 0; i < nmsg; i++) {
        size_t sig_lo = msgs[i].len, sig_hi = msgs[i].len; /* thinned range */
        if (msgs[i].type == SS_FRAME_BATCH) {
            ss_envelope env;
            ASSERT_EQ(ss_envelope_parse(msgs[i].frame + SS_FRAME_HEADER_LEN,
                                        msgs[i].len - SS_FRAME_HEADER_LEN, &env),
                      0);
            sig_lo = SS_FRAME_HEADER_LEN + env.signed_len + 16;
            sig_hi = msgs[i].len - 16;
        }
        for (int honest = 0; honest < 2; honest++)
            for (size_t k = honest ? SS_FRAME_HEADER_LEN : 0; k < msgs[i].len;
                 k += k >= sig_lo && k < sig_hi ? (size_t)8 * (size_t)step : (size_t)step)
                jobs[nj++] = (tjob){ i, k, honest };
    }
    tpool p;
    memset(&p, 0, sizeof p);
    p.s = &s;
    p.msgs = msgs;
    p.jobs = jobs;
    p.njobs = nj;
    pthread_mutex_init(&p.mu, NULL);
    pthread_t th[4];
    int64_t t0 = tc_now_ms();
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, tpool_main, &p), 0);
    for (int i = 0; i < 4; i++)
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
    ASSERT(tc_daemon_alive(&s.hub));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    int after = hx_wait_fds_at_most(s.hub.pid, fds0, 15000);
    long rss1 = hx_proc_rss_kb(s.hub.pid);
    printf("  hub fds %d -> %d, RSS %ld -> %ld kB\n", fds0, after, rss0, rss1);
    ASSERT_LE(after, fds0);
    ASSERT_EQ(hr_journal_accepted(&s, "gw1"), 0);
    ASSERT_EQ(hr_daemon_committed(&s, "gw1"), 0);
    tc_close(&by);
    for (int i = 0; i < nmsg; i++)
        free(msgs[i].frame);
    free(jobs);
    pthread_mutex_destroy(&p.mu);
    hr_finish(&s);
}

/* ---- duplicate keys and a 10,000-deep document --------------------------- */

/* Sends payload as a frame of type (before HELLO if !ready; a BATCH is
 * signed by gw1 first, so that only its JSON is at fault) and expects an
 * ERROR with want, then the close. */
static void json_case(hr_sys *s, int ready, int type, const void *payload, size_t len, int want,
                      const char *what)
{
    tc_client c;
    if (ready)
        hx_session(&s->e, s->hub.port, &c, "gw1");
    else
        ASSERT_EQ(tc_connect(&c, &s->e, s->hub.port, "gw1", NULL), 0);
    ASSERT_EQ(tc_send_frame(&c, type, payload, len), 0);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    if (m.type != SS_FRAME_ERROR)
        SS_TEST_FAIL("%s: got %s, want ERROR %s", what, ss_frame_type_name(m.type),
                     ss_err_name(want));
    printf("  %-40s -> ERROR %s \"%s\"\n", what, ss_err_name(m.u.error.code), m.u.error.message);
    if (m.u.error.code != want)
        SS_TEST_FAIL("%s: ERROR %s, want %s", what, ss_err_name(m.u.error.code), ss_err_name(want));
    ss_msg_free(&m);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
}

static void with_bystander(hr_sys *s, void (*body)(hr_sys *))
{
    tc_client by;
    hx_session(&s->e, s->hub.port, &by, "gw2");
    uint64_t by_seq = 1;
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    body(s);
    ASSERT(tc_daemon_alive(&s->hub));
    hx_bystander_batch(&by, "gw2", "s2", &by_seq, 2);
    tc_close(&by);
    /* None of it was stored at the hub, nor reached the daemon. */
    ASSERT_EQ(hr_journal_accepted(s, "gw1"), 0);
    ASSERT_EQ(hr_daemon_committed(s, "gw1"), 0);
}

static void dup_body(hr_sys *s)
{
    const char hello[] = "{\"proto\":1,\"node\":\"gw1\",\"role\":\"gateway\",\"node\":\"gw1\","
                         "\"max_frame\":65536}";
    json_case(s, 0, SS_FRAME_HELLO, hello, sizeof hello - 1, SS_EDUPKEY, "HELLO node twice");
    const char ping[] = "{\"nonce\":1,\"nonce\":2}";
    json_case(s, 1, SS_FRAME_PING, ping, sizeof ping - 1, SS_EDUPKEY, "PING nonce twice");
    json_case(s, 1, SS_FRAME_PONG, ping, sizeof ping - 1, SS_EDUPKEY, "PONG nonce twice");
    const char bye[] = "{\"reason\":\"a\",\"reason\":\"b\"}";
    json_case(s, 1, SS_FRAME_BYE, bye, sizeof bye - 1, SS_EDUPKEY, "BYE reason twice");
    const char err[] = "{\"code\":\"protocol\",\"message\":\"x\",\"code\":\"gap\"}";
    json_case(s, 1, SS_FRAME_ERROR, err, sizeof err - 1, SS_EDUPKEY, "ERROR code twice");
    char hlc[17];
    snprintf(hlc, sizeof hlc, "%016llx", (unsigned long long)tc_hlc_now());
    char body[512];
    snprintf(body, sizeof body,
             "[{\"seq\":1,\"hlc\":\"%s\",\"collection\":\"site_status\",\"key\":\"s1\","
             "\"site\":\"s1\",\"op\":\"update\",\"site\":\"s2\",\"fields\":{\"note\":\"x\"}}]",
             hlc);
    size_t len;
    uint8_t *env = hx_batch_of(body, &len);
    json_case(s, 1, SS_FRAME_BATCH, env, len, SS_EDUPKEY, "BATCH (signed) change, site twice");
    free(env);
    char *ch = hx_change_with("{\"note\":\"a\",\"note\":\"b\"}");
    env = hx_batch_of(ch, &len);
    json_case(s, 1, SS_FRAME_BATCH, env, len, SS_EDUPKEY, "BATCH (signed) field note twice");
    free(env);
    free(ch);
}

TEST(duplicate_keys)
{
    hr_sys s;
    hr_start(&s, NULL);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    with_bystander(&s, dup_body);
    hr_finish(&s);
}

static void deep_body(hr_sys *s)
{
    const size_t depth = 10000;
    char *arr = hx_deep(depth, 0), *obj = hx_deep(depth, 1);
    json_case(s, 0, SS_FRAME_HELLO, obj, strlen(obj), SS_EDEPTH, "HELLO 10,000-deep object");
    json_case(s, 0, SS_FRAME_HELLO, arr, strlen(arr), SS_EDEPTH, "HELLO 10,000-deep array");
    json_case(s, 1, SS_FRAME_PING, obj, strlen(obj), SS_EDEPTH, "PING 10,000-deep object");
    json_case(s, 1, SS_FRAME_BYE, arr, strlen(arr), SS_EDEPTH, "BYE 10,000-deep array");
    json_case(s, 1, SS_FRAME_ERROR, obj, strlen(obj), SS_EDEPTH, "ERROR 10,000-deep object");
    size_t hcap = strlen(obj) + 128;
    char *hello = malloc(hcap);
    ASSERT(hello != NULL);
    snprintf(hello, hcap,
             "{\"proto\":1,\"node\":\"gw1\",\"role\":\"gateway\",\"max_frame\":65536,"
             "\"software\":%s}",
             obj);
    json_case(s, 0, SS_FRAME_HELLO, hello, strlen(hello), SS_EDEPTH, "HELLO member 10,000 deep");
    size_t len;
    uint8_t *env = hx_batch_of(arr, &len);
    json_case(s, 1, SS_FRAME_BATCH, env, len, SS_EDEPTH, "BATCH (signed) body 10,000-deep");
    free(env);
    char *ch = hx_change_with(obj);
    env = hx_batch_of(ch, &len);
    json_case(s, 1, SS_FRAME_BATCH, env, len, SS_EDEPTH, "BATCH (signed) fields 10,000 deep");
    free(env);
    free(ch);
    free(hello);
    free(arr);
    free(obj);
}

TEST(deep_document)
{
    hr_sys s;
    hr_start(&s, NULL);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "gw2", "s2");
    with_bystander(&s, deep_body);
    hr_finish(&s);
}

SS_TEST_MAIN(SS_TEST_ENTRY(slowloris) SS_TEST_ENTRY(slowloris_over_max_conns)
                 SS_TEST_ENTRY(conn_flood) SS_TEST_ENTRY(bad_handshake_rate_limit)
                     SS_TEST_ENTRY(never_reads_acks) SS_TEST_ENTRY(frame_lengths)
                         SS_TEST_ENTRY(truncated_every_byte) SS_TEST_ENTRY(duplicate_keys)
                             SS_TEST_ENTRY(deep_document))
