/* test_daemon.c - sitesyncd integration tests: a real daemon on 127.0.0.1
 * with a fresh PKI per test, driven by an OpenSSL client (tc.h). Run one
 * with `daemon_it NAME`; CTest runs each in its own process. */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "sd/admin.h"
#include "sd/store.h"
#include "ss_test.h"
#include "tc.h"

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Expects an ERROR with code; returns its resume value. */
static uint64_t expect_error(tc_client *c, int code)
{
    ss_msg m;
    for (;;) {
        int r = tc_recv_msg(c, 10000, &m);
        if (r != 1)
            SS_TEST_FAIL("expected ERROR %s, connection gave %d", ss_err_name(code), r);
        if (m.type == SS_FRAME_ACK) {
            ss_msg_free(&m);
            continue;
        }
        break;
    }
    if (m.type != SS_FRAME_ERROR)
        SS_TEST_FAIL("expected ERROR %s, got %s", ss_err_name(code), ss_frame_type_name(m.type));
    if (m.u.error.code != code)
        SS_TEST_FAIL("expected ERROR %s, got %s: %s", ss_err_name(code),
                     ss_err_name(m.u.error.code), m.u.error.message);
    uint64_t resume = m.u.error.resume;
    ss_msg_free(&m);
    return resume;
}

static void start_gw(tc_env *e, tc_daemon *d, const char *const *extra)
{
    tc_env_setup(e);
    tc_issue(e, "gateway", "gw1", "s1");
    tc_daemon_start(e, d, extra);
}

static void finish(tc_env *e, tc_daemon *d)
{
    int st = tc_daemon_stop(d, SIGTERM, 20000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -30 %s >&2", d->log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        SS_TEST_FAIL("sitesyncd did not exit cleanly on SIGTERM (status %d)", st);
    }
    ASSERT_EQ(tc_log_count(d, "event=loop_close_failed"), 0);
    ASSERT_EQ(tc_log_count(d, "level=error"), 0);
    tc_env_cleanup(e);
}

static int64_t count_q(const tc_daemon *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int64_t count_q(const tc_daemon *d, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return tc_sql_int(d->db, sql);
}

static void session(tc_env *e, tc_daemon *d, tc_client *c, const char *node, const char *role,
                    ss_welcome *w)
{
    ASSERT_EQ(tc_connect(c, e, d->port, node, NULL), 0);
    tc_hello(c, role, NULL, w);
}

TEST(valid_session)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    ASSERT_STR_EQ(w.node, "central");
    ASSERT_EQ(w.window, 32);
    ASSERT_U64_EQ(tc_welcome_seq(&w, "gw1"), 0);
    /* The server's time is now, give or take the test's own latency. */
    int64_t skew = (int64_t)ss_hlc_ms(w.time) - tc_now_ms();
    ASSERT(skew < 5000 && skew > -5000);
    free(w.committed);
    tc_send_batch(&c, "gw1", "s1", 1, 10, "v", tc_hlc_now());
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 10, 10000), 10);

    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    m.u.ping.nonce = 424242;
    ASSERT_EQ(tc_send_msg(&c, &m), 0);
    ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_PONG);
    ASSERT_U64_EQ(m.u.ping.nonce, 424242);

    char buf[256];
    tc_record_doc(d.db, "s1", buf, sizeof buf);
    ASSERT(strstr(buf, "v-10") != NULL);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE origin='%s'", "gw1"), 10);
    ASSERT_EQ(count_q(&d, "SELECT committed FROM origins WHERE origin='%s'", "gw1"), 10);

    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_BYE;
    snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "done");
    ASSERT_EQ(tc_send_msg(&c, &m), 0);
    ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_BYE);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    /* The session row is closed with its counts. */
    for (int i = 0; i < 100 && count_q(&d,
                                       "SELECT count(*) FROM sessions WHERE peer='%s' AND "
                                       "ended_ms IS NOT NULL",
                                       "gw1") != 1;
         i++)
        sleep_ms(20);
    ASSERT_EQ(count_q(&d, "SELECT received FROM sessions WHERE peer='%s'", "gw1"), 10);
    finish(&e, &d);
}

TEST(pipelining)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    const char *extra[] = { "--window", "16", NULL };
    start_gw(&e, &d, extra);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    /* 400 envelopes sent back to back: far more than the window, so the
     * daemon must stop reading and resume as ACKs go out. */
    ss_hlc_t h = tc_hlc_now();
    for (uint64_t i = 0; i < 400; i++)
        tc_send_batch(&c, "gw1", "s1", 1 + i * 5, 5, "p", h + i * 5);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 2000, 30000), 2000);
    ASSERT_GT(tc_log_count(&d, "event=backpressure"), 0);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='%s' AND outcome <> 'applied'"
                      " AND outcome <> 'superseded'",
                      "gw1"),
              0);
    ASSERT_EQ(count_q(&d, "SELECT count(DISTINCT seq) FROM audit WHERE origin='%s'", "gw1"), 2000);
    tc_close(&c);
    finish(&e, &d);
}

TEST(resume_after_disconnect)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    tc_send_batch(&c, "gw1", "s1", 1, 50, "a", tc_hlc_now());
    tc_wait_ack(&c, "gw1", 50, 10000);
    /* Abrupt close: no BYE. */
    tc_close(&c);
    session(&e, &d, &c, "gw1", "gateway", &w);
    ASSERT_U64_EQ(tc_welcome_seq(&w, "gw1"), 50);
    free(w.committed);
    tc_send_batch(&c, "gw1", "s1", 51, 10, "b", tc_hlc_now());
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 60, 10000), 60);
    tc_close(&c);
    finish(&e, &d);
}

TEST(duplicate_and_gap)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_hlc_t h = tc_hlc_now();
    tc_send_batch(&c, "gw1", "s1", 1, 10, "x", h);
    tc_wait_ack(&c, "gw1", 10, 10000);
    /* Exactly the same bytes again: re-acknowledged, not re-applied. */
    tc_send_batch(&c, "gw1", "s1", 1, 10, "x", h);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 10, 10000), 10);
    ASSERT_EQ(
        count_q(&d, "SELECT count(*) FROM audit WHERE origin='%s' AND outcome='duplicate'", "gw1"),
        10);
    /* A gap: refused with where to resume; the session stays usable. */
    tc_send_batch(&c, "gw1", "s1", 15, 5, "x", h + 20);
    ASSERT_U64_EQ(expect_error(&c, SS_EGAP), 11);
    tc_send_batch(&c, "gw1", "s1", 11, 9, "x", h + 20);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 19, 10000), 19);
    ASSERT_EQ(count_q(&d, "SELECT committed FROM origins WHERE origin='%s'", "gw1"), 19);
    tc_close(&c);
    finish(&e, &d);
}

TEST(tamper)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_hlc_t h = tc_hlc_now();
    tc_send_batch(&c, "gw1", "s1", 1, 5, "orig", h);
    tc_wait_ack(&c, "gw1", 5, 10000);
    /* Same sequence numbers, different content. */
    tc_send_batch(&c, "gw1", "s1", 3, 3, "forged", h + 2);
    expect_error(&c, SS_ETAMPER);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    char buf[256];
    tc_record_doc(d.db, "s1", buf, sizeof buf);
    ASSERT(strstr(buf, "orig-5") != NULL);
    ASSERT(strstr(buf, "forged") == NULL);
    ASSERT_GE(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='%s' AND outcome LIKE "
                      "'%%tamper%%'",
                      "gw1"),
              1);
    finish(&e, &d);
}

TEST(cross_site_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_change ch[2];
    ss_hlc_t h = tc_hlc_now();
    tc_change_status(&ch[0], 1, h, "s1", "mine", NULL);
    tc_change_status(&ch[1], 2, h + 1, "s2", "not mine", "critical");
    size_t len;
    uint8_t *env = tc_envelope("gw1", ch, 2, &len);
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_BATCH, env, len), 0);
    free(env);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_ACK);
    ASSERT_EQ(m.u.ack.nrejects, 1);
    ASSERT_U64_EQ(m.u.ack.rejects[0].seq, 2);
    ASSERT_EQ(m.u.ack.rejects[0].code, SS_EFORBIDDEN);
    ASSERT_EQ(m.u.ack.nacks, 1);
    ASSERT_U64_EQ(m.u.ack.acks[0].seq, 2); /* the sequence still advances */
    ss_msg_free(&m);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records WHERE key='%s'", "s2"), 0);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='%s' AND seq=2 AND outcome "
                      "LIKE 'rejected%%'",
                      "gw1"),
              1);
    /* A gateway sending another origin's envelope is refused and cut. */
    tc_send_batch(&c, "gw2", "s1", 1, 1, "spoof", h + 5);
    ss_msg e2;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &e2), 1);
    ASSERT_EQ(e2.type, SS_FRAME_ERROR);
    ASSERT_EQ(e2.u.error.code, SS_EAUTH); /* protocol.md 8.6 */
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM origins WHERE origin='%s'", "gw2"), 0);
    finish(&e, &d);
}

TEST(relay_out_of_region)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    tc_env_setup(&e);
    tc_issue(&e, "relay", "hub1", "s1,s2");
    /* The unsigned path: without an origin signature the relay's own
     * certificate decides which sites it may carry. */
    const char *extra[] = { "--require-signatures", "false", NULL };
    tc_daemon_start(&e, &d, extra);
    ASSERT_EQ(tc_connect(&c, &e, d.port, "hub1", NULL), 0);
    const char *origins[] = { "gw7", NULL };
    tc_hello(&c, "relay", origins, &w);
    ASSERT_U64_EQ(tc_welcome_seq(&w, "gw7"), 0);
    ASSERT_U64_EQ(tc_welcome_seq(&w, "hub1"), 0);
    free(w.committed);
    ss_change ch[3];
    ss_hlc_t h = tc_hlc_now();
    tc_change_status(&ch[0], 1, h, "s1", "in region", NULL);
    tc_change_status(&ch[1], 2, h + 1, "s9", "out of region", NULL);
    tc_change_status(&ch[2], 3, h + 2, "s2", "in region too", NULL);
    size_t len;
    uint8_t *env = tc_envelope("gw7", ch, 3, &len);
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_BATCH, env, len), 0);
    free(env);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_ACK);
    ASSERT_EQ(m.u.ack.nrejects, 1);
    ASSERT_U64_EQ(m.u.ack.rejects[0].seq, 2);
    ASSERT_EQ(m.u.ack.rejects[0].code, SS_EFORBIDDEN);
    ss_msg_free(&m);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records WHERE key='%s'", "s9"), 0);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records WHERE key='%s'", "s2"), 1);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='gw7' AND peer='%s' AND "
                      "outcome LIKE 'rejected%%'",
                      "hub1"),
              1);
    tc_close(&c);
    finish(&e, &d);
}

TEST(future_hlc_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_change ch[2];
    /* Default tolerance is 5 minutes; 10 minutes ahead is refused. */
    ss_hlc_t future = ss_hlc_make((uint64_t)tc_now_ms() + 600000, 0);
    tc_change_status(&ch[0], 1, tc_hlc_now(), "s1", "now", NULL);
    tc_change_status(&ch[1], 2, future, "s1", "from the future", "critical");
    size_t len;
    uint8_t *env = tc_envelope("gw1", ch, 2, &len);
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_BATCH, env, len), 0);
    free(env);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_ACK);
    ASSERT_EQ(m.u.ack.nrejects, 1);
    ASSERT_EQ(m.u.ack.rejects[0].code, SS_ESKEW);
    ss_msg_free(&m);
    char buf[256];
    tc_record_doc(d.db, "s1", buf, sizeof buf);
    ASSERT(strstr(buf, "future") == NULL);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='%s' AND seq=2 AND outcome "
                      "LIKE 'rejected%%'",
                      "gw1"),
              1);
    tc_close(&c);
    finish(&e, &d);
}

TEST(revoked_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client c, live;
    ss_welcome w;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_issue(&e, "gateway", "gw3", "s3");
    tc_revoke(&e, "gw1");
    tc_daemon_start(&e, &d, NULL);
    /* Revoked before the daemon started: refused at handshake. */
    int rc = tc_connect(&c, &e, d.port, "gw1", NULL);
    if (rc == 0) {
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        tc_send_msg(&c, &m);
        ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 0);
    }
    tc_close(&c);
    ASSERT(tc_log_wait(&d, "reason=\"certificate revoked\"", 5000));
    /* A live session, then its certificate is revoked and SIGHUP sent. */
    session(&e, &d, &live, "gw2", "gateway", &w);
    free(w.committed);
    session(&e, &d, &c, "gw3", "gateway", &w);
    free(w.committed);
    tc_send_batch(&live, "gw2", "s2", 1, 3, "r", tc_hlc_now());
    tc_wait_ack(&live, "gw2", 3, 10000);
    tc_revoke(&e, "gw2");
    kill(d.pid, SIGHUP);
    expect_error(&live, SS_EREVOKED);
    tc_expect_closed(&live, 5000);
    tc_close(&live);
    /* The healthy session is untouched by the reload. */
    tc_send_batch(&c, "gw3", "s3", 1, 2, "ok", tc_hlc_now());
    tc_wait_ack(&c, "gw3", 2, 10000);
    tc_close(&c);
    ASSERT_GE(count_q(&d,
                      "SELECT count(*) FROM audit WHERE peer='%s' AND outcome LIKE "
                      "'%%revoked%%'",
                      "gw2"),
              1);
    /* And gw2 cannot come back. */
    rc = tc_connect(&c, &e, d.port, "gw2", NULL);
    if (rc == 0) {
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        tc_send_msg(&c, &m);
        ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 0);
    }
    tc_close(&c);
    finish(&e, &d);
}

TEST(reload_bad_crl_keeps_serving)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    /* A broken CRL file: the reload is refused, the old context stays. */
    char crl[300];
    tc_path(&e, "pki/crl.pem", crl, sizeof crl);
    FILE *f = fopen(crl, "w");
    ASSERT(f != NULL);
    fputs("-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n", f);
    fclose(f);
    kill(d.pid, SIGHUP);
    ASSERT(tc_log_wait(&d, "event=reload_failed", 5000));
    tc_send_batch(&c, "gw1", "s1", 1, 2, "h", tc_hlc_now());
    tc_wait_ack(&c, "gw1", 2, 10000);
    tc_client c2;
    session(&e, &d, &c2, "gw1", "gateway", &w);
    ASSERT_U64_EQ(tc_welcome_seq(&w, "gw1"), 2);
    free(w.committed);
    tc_close(&c2);
    tc_close(&c);
    /* reload_failed is an operator error by design; finish() would count
     * it, so stop by hand. */
    int st = tc_daemon_stop(&d, SIGTERM, 20000);
    ASSERT(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(tc_log_count(&d, "level=error"), 1);
    tc_env_cleanup(&e);
}

/* Either the handshake fails or the first read shows the session dead. */
static void expect_refused(tc_env *e, tc_daemon *d, const char *node, const tc_tls_opts *o)
{
    tc_client c;
    if (tc_connect(&c, e, d->port, node, o) == 0) {
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        tc_send_msg(&c, &m);
        ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 0);
    }
    tc_close(&c);
}

TEST(tls_refusals)
{
    tc_env e, other;
    tc_daemon d;
    start_gw(&e, &d, NULL);
    /* A certificate from another CA with the same identity. */
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    char cert[300], key[300];
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.cert = tc_path(&other, "gw1.crt", cert, sizeof cert);
    o.key = tc_path(&other, "gw1.key", key, sizeof key);
    expect_refused(&e, &d, "gw1", &o);
    /* No client certificate. */
    memset(&o, 0, sizeof o);
    o.no_cert = 1;
    expect_refused(&e, &d, "gw1", &o);
    /* TLS 1.1. */
    memset(&o, 0, sizeof o);
    o.max_version = TLS1_1_VERSION;
    expect_refused(&e, &d, "gw1", &o);
    /* Plaintext: a HELLO frame without TLS. */
    int fd = tc_tcp_connect(d.port);
    ASSERT(fd >= 0);
    const char hello[] = "{\"proto\":1,\"node\":\"gw1\",\"role\":\"gateway\",\"max_frame\":65536}";
    uint8_t frame[256];
    int n = ss_frame_encode(frame, sizeof frame, SS_FRAME_HELLO, 0, hello, sizeof hello - 1);
    ASSERT_GT(n, 0);
    ASSERT_EQ(write(fd, frame, (size_t)n), n);
    char buf[256];
    ssize_t r;
    int64_t t0 = tc_now_ms();
    while ((r = read(fd, buf, sizeof buf)) > 0 && tc_now_ms() - t0 < 5000)
        ASSERT(buf[0] != '{'); /* never a plaintext answer */
    ASSERT(r <= 0);
    close(fd);
    ASSERT_GE(tc_log_count(&d, "event=tls_refused"), 4);
    /* And a good client still gets through. */
    tc_client c;
    ss_welcome w;
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    tc_close(&c);
    tc_env_cleanup(&other);
    finish(&e, &d);
}

TEST(oversize_frame)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    const char *extra[] = { "--max-frame", "4096", NULL };
    start_gw(&e, &d, extra);
    session(&e, &d, &c, "gw1", "gateway", &w);
    ASSERT_EQ(w.max_frame, 4096);
    free(w.committed);
    /* Only the header: the length alone must be refused (no allocation). */
    uint8_t hdr[SS_FRAME_HEADER_LEN];
    ss_frame_write_header(hdr, SS_FRAME_BATCH, 0, 4097);
    ASSERT_EQ(tc_send_raw(&c, hdr, sizeof hdr), 0);
    expect_error(&c, SS_EOVERSIZE);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    finish(&e, &d);
}

TEST(malformed_and_deep_json)
{
    tc_env e;
    tc_daemon d;
    tc_client c, bystander;
    ss_welcome w;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_daemon_start(&e, &d, NULL);
    session(&e, &d, &bystander, "gw2", "gateway", &w);
    free(w.committed);
    tc_send_batch(&bystander, "gw2", "s2", 1, 2, "b", tc_hlc_now());
    tc_wait_ack(&bystander, "gw2", 2, 10000);

    /* Malformed JSON as HELLO. */
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", NULL), 0);
    const char bad[] = "{\"proto\":1,\"node\":\"gw1\",";
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_HELLO, bad, sizeof bad - 1), 0);
    expect_error(&c, SS_EJSON);
    tc_expect_closed(&c, 5000);
    tc_close(&c);

    /* 10,000-deep JSON as a PING after a valid HELLO. */
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    size_t depth = 10000;
    char *deep = malloc(2 * depth);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_PING, deep, 2 * depth), 0);
    free(deep);
    expect_error(&c, SS_EDEPTH);
    tc_expect_closed(&c, 5000);
    tc_close(&c);

    /* A BATCH whose body is not JSON at all. */
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    const char body[] = "[{\"seq\":1,\"hlc\":";
    size_t hl = ss_envelope_header_len("gw1");
    uint8_t env[256];
    ASSERT_EQ(ss_envelope_write_header(env, sizeof env, "gw1", 1, 1, sizeof body - 1, 0), (int)hl);
    memcpy(env + hl, body, sizeof body - 1);
    ASSERT_EQ(tc_send_frame(&c, SS_FRAME_BATCH, env, hl + sizeof body - 1), 0);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_ERROR);
    ss_msg_free(&m);
    tc_expect_closed(&c, 5000);
    tc_close(&c);

    /* The daemon and the other session carry on. */
    ASSERT(tc_daemon_alive(&d));
    tc_send_batch(&bystander, "gw2", "s2", 3, 2, "b", tc_hlc_now());
    tc_wait_ack(&bystander, "gw2", 4, 10000);
    tc_close(&bystander);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM origins WHERE origin='%s'", "gw1"), 0);
    finish(&e, &d);
}

TEST(identity_mismatch)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    start_gw(&e, &d, NULL);
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", NULL), 0);
    /* The certificate says gw1; HELLO claims gw9. */
    snprintf(c.node, sizeof c.node, "gw9");
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    snprintf(m.u.hello.node, sizeof m.u.hello.node, "gw9");
    m.u.hello.role = SS_ROLE_GATEWAY;
    m.u.hello.max_frame = 65536;
    ASSERT_EQ(tc_send_msg(&c, &m), 0);
    expect_error(&c, SS_EAUTH);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    for (int i = 0; i < 100 && count_q(&d,
                                       "SELECT count(*) FROM audit WHERE peer='%s' AND outcome "
                                       "LIKE 'rejected%%'",
                                       "gw1") < 1;
         i++)
        sleep_ms(20);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE peer='%s' AND outcome LIKE "
                      "'rejected%%'",
                      "gw1"),
              1);
    finish(&e, &d);
}

TEST(handshake_trickle_deadline)
{
    tc_env e;
    tc_daemon d;
    const char *extra[] = { "--handshake-timeout-ms", "1500", NULL };
    start_gw(&e, &d, extra);
    /* A real ClientHello, produced over memory BIOs, sent one byte every
     * 100 ms: every byte is progress, but the deadline is absolute. */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    ASSERT(SSL_do_handshake(ssl) <= 0);
    uint8_t hello[4096];
    int n = BIO_read(wb, hello, sizeof hello);
    ASSERT_GT(n, 50);
    int fd = tc_tcp_connect(d.port);
    ASSERT(fd >= 0);
    int64_t t0 = tc_now_ms();
    int cut = 0;
    for (int i = 0; i < n && tc_now_ms() - t0 < 10000; i++) {
        if (send(fd, hello + i, 1, MSG_NOSIGNAL) != 1) {
            cut = 1;
            break;
        }
        struct timeval tv = { 0, 100000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char b;
        ssize_t r = recv(fd, &b, 1, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            cut = 1;
            break;
        }
    }
    int64_t elapsed = tc_now_ms() - t0;
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ASSERT(cut);
    ASSERT_GE(elapsed, 1300);
    ASSERT_LT(elapsed, 4000);
    ASSERT(tc_log_wait(&d, "event=handshake_timeout", 2000));
    finish(&e, &d);
}

TEST(max_connections)
{
    tc_env e;
    tc_daemon d;
    tc_client a, b, c;
    ss_welcome w;
    const char *extra[] = { "--max-connections", "2", NULL };
    start_gw(&e, &d, extra);
    session(&e, &d, &a, "gw1", "gateway", &w);
    free(w.committed);
    session(&e, &d, &b, "gw1", "gateway", &w);
    free(w.committed);
    expect_refused(&e, &d, "gw1", NULL);
    ASSERT(tc_log_wait(&d, "reason=max_connections", 2000));
    tc_close(&a);
    /* A slot frees up once the daemon has seen the close. */
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        sleep_ms(50);
        if (tc_connect(&c, &e, d.port, "gw1", NULL) == 0) {
            ss_msg m;
            memset(&m, 0, sizeof m);
            m.type = SS_FRAME_HELLO;
            m.u.hello.proto = SS_PROTO_VERSION;
            snprintf(m.u.hello.node, sizeof m.u.hello.node, "gw1");
            m.u.hello.role = SS_ROLE_GATEWAY;
            m.u.hello.max_frame = 65536;
            if (tc_send_msg(&c, &m) == 0 && tc_recv_msg(&c, 5000, &m) == 1) {
                ok = m.type == SS_FRAME_WELCOME;
                ss_msg_free(&m);
            }
        }
        tc_close(&c);
    }
    ASSERT(ok);
    tc_close(&b);

    finish(&e, &d);
}

TEST(idle_timeout)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    const char *extra[] = { "--idle-timeout-ms", "600", NULL };
    start_gw(&e, &d, extra);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    /* Activity keeps it open... */
    for (int i = 0; i < 4; i++) {
        sleep_ms(300);
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_PING;
        m.u.ping.nonce = (uint64_t)i + 1;
        ASSERT_EQ(tc_send_msg(&c, &m), 0);
        ASSERT_EQ(tc_recv_msg(&c, 2000, &m), 1);
        ASSERT_EQ(m.type, SS_FRAME_PONG);
    }
    /* ...silence closes it with a BYE. */
    int64_t t0 = tc_now_ms();
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 5000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_BYE);
    ASSERT_LT(tc_now_ms() - t0, 2000);
    tc_expect_closed(&c, 3000);
    tc_close(&c);
    finish(&e, &d);
}

TEST(output_cap)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    const char *extra[] = { "--max-output-bytes", "8192", NULL };
    start_gw(&e, &d, extra);
    /* A small receive buffer, and never a read: the PONGs pile up at the
     * daemon until its cap cuts us off. */
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.rcvbuf = 4096;
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", &o), 0);
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    uint8_t frame[128];
    int64_t t0 = tc_now_ms();
    int cut = 0;
    while (tc_now_ms() - t0 < 40000) {
        m.u.ping.nonce++;
        int n = ss_msg_encode_frame(&m, frame, sizeof frame);
        ASSERT_GT(n, 0);
        /* Batch many pings per write to keep the test fast. */
        uint8_t burst[128 * 64];
        size_t bl = 0;
        for (int i = 0; i < 64; i++) {
            memcpy(burst + bl, frame, (size_t)n);
            bl += (size_t)n;
        }
        if (tc_send_raw(&c, burst, bl) != 0) {
            cut = 1;
            break;
        }
        if (tc_log_count(&d, "event=output_cap") > 0 && m.u.ping.nonce % 64 == 0) {
            cut = 1;
            break;
        }
    }
    ASSERT(cut);
    ASSERT(tc_log_wait(&d, "event=output_cap", 5000));
    tc_close(&c);
    ASSERT(tc_daemon_alive(&d));
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    tc_close(&c);
    finish(&e, &d);
}

TEST(sigterm_drain)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    start_gw(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_hlc_t h = tc_hlc_now();
    for (uint64_t i = 0; i < 30; i++)
        tc_send_batch(&c, "gw1", "s1", 1 + i * 20, 20, "t", h + i * 20);
    kill(d.pid, SIGTERM);
    /* Every batch the daemon took is acknowledged before its BYE. */
    uint64_t acked = 0;
    int bye = 0;
    for (;;) {
        ss_msg m;
        int r = tc_recv_msg(&c, 10000, &m);
        if (r != 1)
            break;
        if (m.type == SS_FRAME_ACK) {
            ASSERT(!bye);
            for (int i = 0; i < m.u.ack.nacks; i++)
                if (m.u.ack.acks[i].seq > acked)
                    acked = m.u.ack.acks[i].seq;
        } else if (m.type == SS_FRAME_BYE) {
            bye = 1;
        } else {
            SS_TEST_FAIL("unexpected %s during drain", ss_frame_type_name(m.type));
        }
        ss_msg_free(&m);
    }
    ASSERT(bye);
    tc_close(&c);
    /* The SIGTERM above is still being served: a second one could land
     * after the daemon closed its signal handlers and kill it before it
     * exits. Signal 0 only waits. */
    int st = tc_daemon_stop(&d, 0, 15000);
    ASSERT(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(count_q(&d, "SELECT committed FROM origins WHERE origin='%s'", "gw1"),
              (int64_t)acked);
    ASSERT_GT(acked, 0);
    ASSERT_EQ(tc_log_count(&d, "level=error"), 0);
    ASSERT_EQ(tc_log_count(&d, "event=drained"), 1);
    tc_env_cleanup(&e);
}

/* Streams changes until `total` are acknowledged or the connection drops;
 * returns the highest acknowledged seq. */
static uint64_t stream(tc_client *c, uint64_t from, uint64_t total, uint32_t per, unsigned window,
                       ss_hlc_t h, pid_t kill_pid, uint64_t kill_at)
{
    uint64_t next = from, acked = from - 1;
    while (acked < total) {
        while (next <= total && (next - acked - 1) / per < window) {
            uint32_t n = (uint32_t)(total - next + 1 < per ? total - next + 1 : per);
            /* A send into a dead daemon fails: the caller restarts it. */
            ss_change *chs = calloc(n, sizeof *chs);
            char(*notes)[32] = calloc(n, 32);
            for (uint32_t i = 0; i < n; i++) {
                snprintf(notes[i], 32, "k-%llu", (unsigned long long)(next + i));
                char site[8];
                snprintf(site, sizeof site, "s%u", (unsigned)((next + i) % 4) + 1);
                tc_change_status(&chs[i], next + i, h + next + i, site, notes[i], NULL);
            }
            size_t len;
            uint8_t *env = tc_envelope("gw1", chs, n, &len);
            int rc = tc_send_frame(c, SS_FRAME_BATCH, env, len);
            free(env);
            free(chs);
            free(notes);
            if (rc != 0)
                return acked;
            next += n;
        }
        ss_msg m;
        if (tc_recv_msg(c, 10000, &m) != 1)
            return acked;
        if (m.type == SS_FRAME_ERROR)
            SS_TEST_FAIL("ERROR %s: %s", ss_err_name(m.u.error.code), m.u.error.message);
        if (m.type == SS_FRAME_ACK)
            for (int i = 0; i < m.u.ack.nacks; i++)
                if (m.u.ack.acks[i].seq > acked)
                    acked = m.u.ack.acks[i].seq;
        ss_msg_free(&m);
        /* The kill lands with a full window of batches in flight. */
        if (kill_pid > 0 && acked >= kill_at) {
            kill(kill_pid, SIGKILL);
            kill_pid = 0;
        }
    }
    return acked;
}

TEST(kill9_resume)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    ss_welcome w;
    const uint64_t total = 100000;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1,s2,s3,s4");
    tc_daemon_start(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    free(w.committed);
    ss_hlc_t h = tc_hlc_now();
    uint64_t acked = stream(&c, 1, total, 100, 32, h, d.pid, 30000);
    tc_close(&c);
    int st;
    waitpid(d.pid, &st, 0);
    d.pid = 0;
    ASSERT(WIFSIGNALED(st));
    ASSERT_LT(acked, total); /* the kill really landed mid-stream */
    fprintf(stderr, "killed after %llu acknowledged\n", (unsigned long long)acked);
    /* Every acknowledged change survived; the daemon tells us where to go on. */
    tc_daemon_start(&e, &d, NULL);
    session(&e, &d, &c, "gw1", "gateway", &w);
    uint64_t resume = tc_welcome_seq(&w, "gw1");
    free(w.committed);
    ASSERT_GE(resume, acked);
    ASSERT_U64_EQ(stream(&c, resume + 1, total, 100, 32, h, 0, 0), total);
    tc_close(&c);
    char buf[256];
    ASSERT_EQ(count_q(&d, "SELECT committed FROM origins WHERE origin='%s'", "gw1"),
              (int64_t)total);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE origin='%s'", "gw1"), (int64_t)total);
    ASSERT_EQ(count_q(&d, "SELECT count(DISTINCT seq) FROM audit WHERE origin='%s'", "gw1"),
              (int64_t)total);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='%s' AND outcome NOT IN "
                      "('applied','superseded')",
                      "gw1"),
              0);
    /* The last write per site wins: seq 99997..100000 map to s2,s3,s4,s1. */
    tc_record_doc(d.db, "s1", buf, sizeof buf);
    ASSERT(strstr(buf, "k-100000") != NULL);
    ASSERT_EQ(tc_log_count(&d, "level=error"), 0);
    int st2 = tc_daemon_stop(&d, SIGTERM, 20000);
    ASSERT(st2 >= 0 && WIFEXITED(st2) && WEXITSTATUS(st2) == 0);
    tc_sql_text(d.db, "PRAGMA integrity_check", buf, sizeof buf);
    ASSERT_STR_EQ(buf, "ok");
    /* The audit chain: through the library, and through the CLI an
     * administrator would run. */
    sd_store_config sc = { .path = d.db, .readonly = 1, .busy_timeout_ms = 5000 };
    sd_store *store = NULL;
    char err[256];
    ASSERT_EQ(sd_store_open(&sc, &store, err, sizeof err), 0);
    sd_audit_report rep;
    memset(&rep, 0, sizeof rep);
    ASSERT_EQ(sd_audit_verify(store, NULL, &rep), 0);
    if (!rep.ok)
        SS_TEST_FAIL("audit chain broken at %lld: %s", (long long)rep.broken_id, rep.reason);
    ASSERT_GE(rep.entries, (int64_t)total);
    sd_store_close(store);
#ifdef SITESYNC_ADMIN_BIN
    char out[300];
    tc_path(&e, "verify.out", out, sizeof out);
    char *argv[] = { SITESYNC_ADMIN_BIN, "--db", d.db, "audit", "verify", NULL };
    ASSERT_EQ(tc_run(argv, out), 0);
#endif
    tc_env_cleanup(&e);
}

/* ---- many clients converge to a reference merge ------------------------ */

#define NCLIENTS   200
#define PER_CLIENT 20
#define NSHARED    4

typedef struct cl_change {
    char site[16];
    char note[32];
    ss_hlc_t hlc;
    char origin[16];
} cl_change;

typedef struct cl_arg {
    tc_env *e;
    int port;
    int idx;
    cl_change ch[PER_CLIENT];
    int ok;
} cl_arg;

static void *client_main(void *p)
{
    cl_arg *a = p;
    tc_client c;
    ss_welcome w;
    char node[16];
    snprintf(node, sizeof node, "gw%d", a->idx);
    if (tc_connect(&c, a->e, a->port, node, NULL) != 0)
        return NULL;
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    ss_change chs[PER_CLIENT];
    for (int i = 0; i < PER_CLIENT; i++)
        tc_change_status(&chs[i], (uint64_t)i + 1, a->ch[i].hlc, a->ch[i].site, a->ch[i].note,
                         NULL);
    /* Four envelopes of five, pipelined. */
    for (int b = 0; b < PER_CLIENT / 5; b++) {
        size_t len;
        uint8_t *env = tc_envelope(node, chs + b * 5, 5, &len);
        if (tc_send_frame(&c, SS_FRAME_BATCH, env, len) != 0) {
            free(env);
            tc_close(&c);
            return NULL;
        }
        free(env);
    }
    a->ok = tc_wait_ack(&c, node, PER_CLIENT, 60000) == PER_CLIENT;
    tc_close(&c);
    return NULL;
}

TEST(many_clients_converge)
{
    tc_env e;
    tc_daemon d;
    tc_env_setup(&e);
    static cl_arg args[NCLIENTS];
    /* Shared sites s0..s3 are written by everyone; each client also has its
     * own site. HLCs collide on purpose so the origin breaks ties. */
    char sites[64];
    for (int i = 0; i < NCLIENTS; i++) {
        char node[16];
        snprintf(node, sizeof node, "gw%d", i);
        snprintf(sites, sizeof sites, "s0,s1,s2,s3,own%d", i);
        tc_issue(&e, "gateway", node, sites);
    }
    tc_daemon_start(&e, &d, NULL);
    uint64_t base = (uint64_t)tc_now_ms() - 60000;
    unsigned seed = 12345;
    for (int i = 0; i < NCLIENTS; i++) {
        args[i].e = &e;
        args[i].port = d.port;
        args[i].idx = i;
        for (int k = 0; k < PER_CLIENT; k++) {
            cl_change *ch = &args[i].ch[k];
            seed = seed * 1103515245u + 12345u;
            int shared = (seed >> 16) % 5;
            if (shared < NSHARED)
                snprintf(ch->site, sizeof ch->site, "s%d", shared);
            else
                snprintf(ch->site, sizeof ch->site, "own%d", i);
            seed = seed * 1103515245u + 12345u;
            ch->hlc = ss_hlc_make(base + (seed >> 16) % 1000, 0);
            snprintf(ch->note, sizeof ch->note, "n%d-%d", i, k);
            snprintf(ch->origin, sizeof ch->origin, "gw%d", i);
        }
    }
    pthread_t th[NCLIENTS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < NCLIENTS; i++)
        ASSERT_EQ(pthread_create(&th[i], &attr, client_main, &args[i]), 0);
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NCLIENTS; i++)
        if (!args[i].ok)
            SS_TEST_FAIL("client %d did not complete", i);
    /* Reference merge: per record, the note with the greatest (hlc, origin). */
    int nsites = NSHARED + NCLIENTS;
    for (int s = 0; s < nsites; s++) {
        char site[16];
        if (s < NSHARED)
            snprintf(site, sizeof site, "s%d", s);
        else
            snprintf(site, sizeof site, "own%d", s - NSHARED);
        const cl_change *best = NULL;
        for (int i = 0; i < NCLIENTS; i++)
            for (int k = 0; k < PER_CLIENT; k++) {
                const cl_change *ch = &args[i].ch[k];
                if (strcmp(ch->site, site) != 0)
                    continue;
                if (!best || ch->hlc > best->hlc ||
                    (ch->hlc == best->hlc && strcmp(ch->origin, best->origin) > 0))
                    best = ch;
            }
        char doc[1024];
        tc_record_doc(d.db, site, doc, sizeof doc);
        if (!best) {
            ASSERT_STR_EQ(doc, "");
            continue;
        }
        cJSON *j = cJSON_Parse(doc);
        ASSERT(j != NULL);
        cJSON *note = cJSON_GetObjectItemCaseSensitive(j, "note");
        if (!cJSON_IsString(note) || strcmp(note->valuestring, best->note) != 0)
            SS_TEST_FAIL("site %s: note %s, reference merge says %s", site,
                         cJSON_IsString(note) ? note->valuestring : "(none)", best->note);
        cJSON_Delete(j);
    }
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(*) FROM audit"), NCLIENTS * PER_CLIENT);
    finish(&e, &d);
}

SS_TEST_MAIN(
    SS_TEST_ENTRY(valid_session) SS_TEST_ENTRY(pipelining) SS_TEST_ENTRY(resume_after_disconnect)
        SS_TEST_ENTRY(duplicate_and_gap) SS_TEST_ENTRY(tamper) SS_TEST_ENTRY(cross_site_refused)
            SS_TEST_ENTRY(relay_out_of_region) SS_TEST_ENTRY(future_hlc_refused)
                SS_TEST_ENTRY(revoked_refused) SS_TEST_ENTRY(reload_bad_crl_keeps_serving)
                    SS_TEST_ENTRY(tls_refusals) SS_TEST_ENTRY(oversize_frame)
                        SS_TEST_ENTRY(malformed_and_deep_json) SS_TEST_ENTRY(identity_mismatch)
                            SS_TEST_ENTRY(handshake_trickle_deadline) SS_TEST_ENTRY(max_connections)
                                SS_TEST_ENTRY(idle_timeout) SS_TEST_ENTRY(output_cap)
                                    SS_TEST_ENTRY(sigterm_drain) SS_TEST_ENTRY(kill9_resume)
                                        SS_TEST_ENTRY(many_clients_converge))
