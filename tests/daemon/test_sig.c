/* test_sig.c - origin signatures end to end: sitesyncd on 127.0.0.1 with a
 * fresh PKI, driven by the OpenSSL test client as a gateway or as a relay
 * (honest or tampering), plus the verifier (sd/sig.h) on its own for what a
 * live daemon cannot show quickly (expiry, the cache). Run one with
 * `daemon_sig_it NAME`. */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "sd/sig.h"
#include "sd/tls.h"
#include "ss_test.h"
#include "tc.h"

/* Expects an ERROR with code (ACKs before it are skipped); returns its
 * message's first bytes in msg. */
static void expect_error(tc_client *c, int code, char *msg, size_t cap)
{
    ss_msg m;
    for (;;) {
        int r = tc_recv_msg(c, 10000, &m);
        if (r != 1)
            SS_TEST_FAIL("expected ERROR %s, connection gave %d", ss_err_name(code), r);
        if (m.type != SS_FRAME_ACK)
            break;
        ss_msg_free(&m);
    }
    if (m.type != SS_FRAME_ERROR)
        SS_TEST_FAIL("expected ERROR %s, got %s", ss_err_name(code), ss_frame_type_name(m.type));
    if (m.u.error.code != code)
        SS_TEST_FAIL("expected ERROR %s, got %s: %s", ss_err_name(code),
                     ss_err_name(m.u.error.code), m.u.error.message);
    if (msg)
        snprintf(msg, cap, "%s", m.u.error.message);
    ss_msg_free(&m);
}

static void finish(tc_env *e, tc_daemon *d)
{
    int st = tc_daemon_stop(d, SIGTERM, 20000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        SS_TEST_FAIL("sitesyncd did not exit cleanly on SIGTERM (status %d)", st);
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

/* An unsigned envelope of n site_status notes "<tag>-<seq>". */
static uint8_t *status_env(const char *origin, const char *site, uint64_t first, uint32_t n,
                           const char *tag, size_t *len)
{
    ss_change chs[16];
    char notes[16][64];
    ASSERT(n <= 16);
    ss_hlc_t h = tc_hlc_now();
    for (uint32_t i = 0; i < n; i++) {
        snprintf(notes[i], sizeof notes[i], "%s-%llu", tag, (unsigned long long)(first + i));
        tc_change_status(&chs[i], first + i, h + i, site, notes[i], NULL);
    }
    return tc_envelope(origin, chs, n, len);
}

/* First occurrence of needle in hay (memmem is not POSIX). */
static uint8_t *find(uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* Sends a ready envelope exactly as given (no automatic signing). */
static void send_env(tc_client *c, const uint8_t *env, size_t len)
{
    ASSERT_EQ(tc_send_frame_flags(c, SS_FRAME_BATCH, 0, env, len), 0);
}

/* The envelope of origin signed by signer (DIR/<signer>.crt/.key). */
static uint8_t *signed_env(tc_env *e, const char *signer, const char *origin, const char *site,
                           uint64_t first, uint32_t n, const char *tag, size_t *len)
{
    size_t ul;
    uint8_t *u = status_env(origin, site, first, n, tag, &ul);
    uint8_t *s = tc_sign_as(e, signer, u, ul, len);
    free(u);
    return s;
}

static void relay_session(tc_env *e, tc_daemon *d, tc_client *c, const char *node,
                          const char *const *origins)
{
    ss_welcome w;
    ASSERT_EQ(tc_connect(c, e, d->port, node, NULL), 0);
    tc_hello(c, "relay", origins, &w);
    free(w.committed);
}

static void gw_session(tc_env *e, tc_daemon *d, tc_client *c, const char *node)
{
    ss_welcome w;
    ASSERT_EQ(tc_connect(c, e, d->port, node, NULL), 0);
    tc_hello(c, "gateway", NULL, &w);
    free(w.committed);
}

static int64_t committed(const tc_daemon *d, const char *origin)
{
    int64_t v = count_q(d, "SELECT committed FROM origins WHERE origin='%s'", origin);
    return v < 0 ? 0 : v;
}

/* A PING answered by a PONG: every frame before it has been read. */
static void ping(tc_client *c)
{
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_PING;
    m.u.ping.nonce = 77;
    ASSERT_EQ(tc_send_msg(c, &m), 0);
    ASSERT_EQ(tc_recv_msg(c, 5000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_PONG);
}

/* ---- daemon tests -------------------------------------------------------- */

TEST(signed_accepted_unsigned_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_daemon_start(&e, &d, NULL);
    gw_session(&e, &d, &c, "gw1");
    size_t len;
    uint8_t *env = signed_env(&e, "gw1", "gw1", "s1", 1, 5, "ok", &len);
    send_env(&c, env, len);
    free(env);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 5, 10000), 5);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE origin='gw1' AND outcome='applied'"),
              5);
    /* Unsigned: refused as a whole, nothing consumed; a gateway's own bad
     * envelope ends its session. */
    env = status_env("gw1", "s1", 6, 2, "unsigned", &len);
    send_env(&c, env, len);
    free(env);
    char msg[256];
    expect_error(&c, SS_ESIG, msg, sizeof msg);
    ASSERT(strstr(msg, "not signed") != NULL);
    tc_expect_closed(&c, 5000);
    tc_close(&c);
    ASSERT_EQ(committed(&d, "gw1"), 5);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE origin='gw1' AND seq IN (6,7) AND "
                          "outcome='rejected:bad_signature' AND peer='gw1'"),
              2);
    char buf[256];
    ASSERT(strstr(tc_record_doc(d.db, "s1", buf, sizeof buf), "unsigned") == NULL);
    /* The refused numbers are still free: the genuine envelope takes them. */
    gw_session(&e, &d, &c, "gw1");
    env = signed_env(&e, "gw1", "gw1", "s1", 6, 2, "ok", &len);
    send_env(&c, env, len);
    free(env);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 7, 10000), 7);
    tc_close(&c);
    finish(&e, &d);
}

TEST(unsigned_accepted_when_not_required)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    const char *extra[] = { "--require-signatures", "false", NULL };
    tc_daemon_start(&e, &d, extra);
    gw_session(&e, &d, &c, "gw1");
    size_t len;
    uint8_t *env = status_env("gw1", "s1", 1, 2, "plain", &len);
    send_env(&c, env, len);
    free(env);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 2, 10000), 2);
    /* A signed envelope is still verified: a bad one is refused. */
    env = signed_env(&e, "gw1", "gw1", "s1", 3, 1, "bent", &len);
    env[len - 10] ^= 0x01; /* inside the ECDSA signature */
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_ESIG, NULL, 0);
    tc_close(&c);
    ASSERT_EQ(committed(&d, "gw1"), 2);
    finish(&e, &d);
}

/* A hub flips one byte of a body on the way: refused and audited with the
 * hub named, nothing applied, no sequence consumed, the hub's session (and
 * the honest data behind the bad envelope) continues. */
TEST(flipped_byte_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_issue(&e, "relay", "hub1", "s1,s2");
    tc_daemon_start(&e, &d, NULL);
    const char *origins[] = { "gw1", "gw2", NULL };
    relay_session(&e, &d, &c, "hub1", origins);
    size_t len;
    uint8_t *env = signed_env(&e, "gw1", "gw1", "s1", 1, 3, "good", &len);
    send_env(&c, env, len);
    free(env);
    tc_wait_ack(&c, "gw1", 3, 10000);

    size_t blen;
    uint8_t *bent = signed_env(&e, "gw1", "gw1", "s1", 4, 3, "wxyz", &blen);
    uint8_t *hit = find(bent, blen, "wxyz-5");
    ASSERT(hit != NULL);
    hit[0] = 'v'; /* still valid JSON, still a valid note */
    send_env(&c, bent, blen);
    char msg[256];
    expect_error(&c, SS_ESIG, msg, sizeof msg);
    ASSERT(strstr(msg, "does not verify") != NULL);
    ASSERT_EQ(committed(&d, "gw1"), 3);
    ASSERT_EQ(count_q(&d,
                      "SELECT count(*) FROM audit WHERE origin='gw1' AND seq BETWEEN 4 AND 6 "
                      "AND outcome='rejected:bad_signature' AND peer='hub1' AND path='via hub1'"),
              3);
    char buf[256];
    ASSERT(strstr(tc_record_doc(d.db, "s1", buf, sizeof buf), "vxyz") == NULL);
    /* A replay of the committed 1..3 renumbered as 4..6 (header and body
     * seqs rewritten, so the envelope is consistent): the signature covers
     * the numbering, so it is refused like any other bent byte. */
    size_t rlen;
    uint8_t *replay = signed_env(&e, "gw1", "gw1", "s1", 1, 3, "good", &rlen);
    ss_envelope pe;
    ASSERT_EQ(ss_envelope_parse(replay, rlen, &pe), 0);
    replay[3 + strlen("gw1") + 7] = 4; /* low byte of first_seq */
    for (int k = 0; k < 3; k++) {
        char from[16], to[16];
        snprintf(from, sizeof from, "\"seq\":%d,", 1 + k);
        snprintf(to, sizeof to, "\"seq\":%d,", 4 + k);
        uint8_t *at = find(replay, rlen, from);
        ASSERT(at != NULL);
        memcpy(at, to, strlen(to));
    }
    ASSERT_EQ(ss_envelope_parse(replay, rlen, &pe), 0);
    ASSERT_U64_EQ(pe.first_seq, 4);
    send_env(&c, replay, rlen);
    free(replay);
    expect_error(&c, SS_ESIG, NULL, 0);
    ASSERT_EQ(committed(&d, "gw1"), 3);
    /* The session goes on: another origin's data, then the genuine bytes. */
    env = signed_env(&e, "gw2", "gw2", "s2", 1, 2, "other", &len);
    send_env(&c, env, len);
    free(env);
    tc_wait_ack(&c, "gw2", 2, 10000);
    hit[0] = 'w';
    send_env(&c, bent, blen);
    free(bent);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 6, 10000), 6);
    tc_close(&c);
    ASSERT(tc_log_count(&d, "event=envelope_refused") >= 1);
    finish(&e, &d);
}

/* A certificate that is not the origin's: another gateway's, a relay's own
 * (a hub forging data for a site with its own key), or one from another
 * CA. Each refused as bad_certificate with the deliverer named. */
TEST(wrong_certificates_refused)
{
    tc_env e, other;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s1,s2");
    tc_issue(&e, "relay", "hub1", "s1,s2");
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    tc_daemon_start(&e, &d, NULL);
    const char *origins[] = { "gw1", NULL };
    relay_session(&e, &d, &c, "hub1", origins);
    size_t len;
    char msg[256];

    /* gw1's envelope signed with gw2's key and certificate. */
    uint8_t *env = signed_env(&e, "gw2", "gw1", "s1", 1, 2, "bygw2", &len);
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_ECERT, msg, sizeof msg);
    ASSERT(strstr(msg, "gw2") != NULL);

    /* Forged by the hub with its own key: as gw1, and as itself. */
    env = signed_env(&e, "hub1", "gw1", "s1", 1, 2, "byhub", &len);
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_ECERT, msg, sizeof msg);
    env = signed_env(&e, "hub1", "hub1", "s1", 1, 2, "byhub", &len);
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_ECERT, msg, sizeof msg);
    ASSERT(strstr(msg, "not a gateway") != NULL);

    /* gw1's name, another CA's certificate and key. */
    char cert[300], key[300];
    size_t ul;
    uint8_t *u = status_env("gw1", "s1", 1, 2, "foreign", &ul);
    env = tc_sign_envelope(tc_path(&other, "gw1.crt", cert, sizeof cert),
                           tc_path(&other, "gw1.key", key, sizeof key), u, ul, &len);
    free(u);
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_ECERT, msg, sizeof msg);

    /* None of it applied or consumed; each refusal audited with the hub. */
    ASSERT_EQ(committed(&d, "gw1"), 0);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records"), 0);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE outcome='rejected:bad_certificate' AND "
                          "peer='hub1'"),
              8);
    ASSERT_GE(count_q(&d, "SELECT count(*) FROM audit WHERE outcome='rejected:bad_certificate' AND "
                          "detail LIKE '%%delivered by relay hub1%%origin certificate sha256%%'"),
              8);
    /* The genuine envelope still goes through on the same session. */
    env = signed_env(&e, "gw1", "gw1", "s1", 1, 2, "genuine", &len);
    send_env(&c, env, len);
    free(env);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw1", 2, 10000), 2);
    tc_close(&c);
    tc_env_cleanup(&other);
    finish(&e, &d);
}

/* The origin decides: a hub whose own certificate lacks a site still
 * delivers a signed envelope of an origin that has it; a site the origin
 * lacks is refused even when the hub has it. */
TEST(origin_decides_site)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw9", "s9");
    tc_issue(&e, "relay", "hub1", "s1");
    tc_daemon_start(&e, &d, NULL);
    const char *origins[] = { "gw9", NULL };
    relay_session(&e, &d, &c, "hub1", origins);
    size_t len;
    uint8_t *env = signed_env(&e, "gw9", "gw9", "s9", 1, 2, "far", &len);
    send_env(&c, env, len);
    free(env);
    ASSERT_U64_EQ(tc_wait_ack(&c, "gw9", 2, 10000), 2);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records WHERE key='s9'"), 1);

    env = signed_env(&e, "gw9", "gw9", "s1", 3, 1, "hubsite", &len);
    send_env(&c, env, len);
    free(env);
    ss_msg m;
    ASSERT_EQ(tc_recv_msg(&c, 10000, &m), 1);
    ASSERT_EQ(m.type, SS_FRAME_ACK);
    ASSERT_EQ(m.u.ack.nrejects, 1);
    ASSERT_EQ(m.u.ack.rejects[0].code, SS_EFORBIDDEN);
    ss_msg_free(&m);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM records WHERE key='s1'"), 0);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE seq=3 AND "
                          "outcome='rejected:forbidden_site' AND detail LIKE '%%origin gw9%%'"),
              1);
    tc_close(&c);
    finish(&e, &d);
}

/* Revoked after its data started flowing: once the CRL is reloaded, the
 * origin's next envelope is refused even though the hub delivering it is
 * in good standing; the hub receives the new CRL. */
TEST(revoked_origin_via_relay)
{
    tc_env e;
    tc_daemon d;
    tc_client c;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "relay", "hub1", "s1");
    tc_daemon_start(&e, &d, NULL);
    const char *origins[] = { "gw1", NULL };
    relay_session(&e, &d, &c, "hub1", origins);
    size_t len;
    uint8_t *env = signed_env(&e, "gw1", "gw1", "s1", 1, 2, "before", &len);
    send_env(&c, env, len);
    free(env);
    tc_wait_ack(&c, "gw1", 2, 10000); /* and the certificate verdict is now cached */
    ASSERT_EQ(c.ncrl, 1);
    tc_revoke(&e, "gw1");
    kill(d.pid, SIGHUP);
    ASSERT(tc_log_wait(&d, "event=reloaded", 5000));
    env = signed_env(&e, "gw1", "gw1", "s1", 3, 2, "after", &len);
    send_env(&c, env, len);
    free(env);
    expect_error(&c, SS_EREVOKED, NULL, 0);
    ASSERT_EQ(c.ncrl, 2); /* sent at reload, before the refusal */
    ASSERT_EQ(committed(&d, "gw1"), 2);
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE origin='gw1' AND "
                          "outcome='rejected:revoked' AND peer='hub1'"),
              2);
    /* The hub's session is healthy: a ping still answers. */
    ping(&c);
    tc_close(&c);
    finish(&e, &d);
}

/* The DER of the CRL in a PEM file. */
static uint8_t *crl_file_der(const char *path, int *len, int *nrevoked)
{
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT(crl != NULL);
    *len = i2d_X509_CRL(crl, NULL);
    uint8_t *der = malloc((size_t)*len);
    unsigned char *w = der;
    ASSERT(der && i2d_X509_CRL(crl, &w) == *len);
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    *nrevoked = rev ? sk_X509_REVOKED_num(rev) : 0;
    X509_CRL_free(crl);
    return der;
}

TEST(crl_frames_to_relays)
{
    tc_env e;
    tc_daemon d;
    tc_client hub, gw;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s1");
    tc_issue(&e, "relay", "hub1", "s1");
    tc_daemon_start(&e, &d, NULL);
    relay_session(&e, &d, &hub, "hub1", NULL);
    gw_session(&e, &d, &gw, "gw1");
    /* After WELCOME the relay gets the CRL in force, byte for byte. */
    ping(&hub);
    ASSERT_EQ(hub.ncrl, 1);
    char path[300];
    int dlen, nrev;
    uint8_t *der = crl_file_der(tc_path(&e, "pki/crl.pem", path, sizeof path), &dlen, &nrev);
    ASSERT_EQ(nrev, 0);
    ASSERT_EQ((int)hub.crl_len, dlen);
    ASSERT_MEM_EQ(hub.crl, der, (size_t)dlen);
    free(der);
    /* A gateway gets none. */
    ping(&gw);
    ASSERT_EQ(gw.ncrl, 0);
    /* After a reload, every live relay session gets the new CRL. */
    tc_revoke(&e, "gw2");
    kill(d.pid, SIGHUP);
    ASSERT(tc_log_wait(&d, "event=reloaded", 5000));
    ping(&hub);
    ASSERT_EQ(hub.ncrl, 2);
    der = crl_file_der(path, &dlen, &nrev);
    ASSERT_EQ(nrev, 1);
    ASSERT_EQ((int)hub.crl_len, dlen);
    ASSERT_MEM_EQ(hub.crl, der, (size_t)dlen);
    free(der);
    ping(&gw);
    ASSERT_EQ(gw.ncrl, 0);
    tc_close(&hub);
    tc_close(&gw);
    finish(&e, &d);
}

/* The audit path: "direct" from a gateway, "via hub1" for an unrouted
 * BATCH from a relay, "via hub-low,hub1" for a routed one. */
TEST(routed_paths)
{
    tc_env e;
    tc_daemon d;
    tc_client hub, gw;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "gw2", "s2");
    tc_issue(&e, "relay", "hub1", "s1,s2");
    tc_daemon_start(&e, &d, NULL);
    gw_session(&e, &d, &gw, "gw2");
    tc_send_batch(&gw, "gw2", "s2", 1, 1, "direct", tc_hlc_now());
    tc_wait_ack(&gw, "gw2", 1, 10000);
    const char *origins[] = { "gw1", NULL };
    relay_session(&e, &d, &hub, "hub1", origins);
    size_t len;
    uint8_t *env = signed_env(&e, "gw1", "gw1", "s1", 1, 1, "one", &len);
    send_env(&hub, env, len);
    free(env);
    tc_wait_ack(&hub, "gw1", 1, 10000);
    env = signed_env(&e, "gw1", "gw1", "s1", 2, 1, "two", &len);
    const char *hops[] = { "hub-low", NULL };
    ASSERT_EQ(tc_send_routed(&hub, hops, env, len), 0);
    free(env);
    tc_wait_ack(&hub, "gw1", 2, 10000);
    env = signed_env(&e, "gw1", "gw1", "s1", 3, 1, "three", &len);
    const char *hops2[] = { "hub-a", "hub-b", NULL };
    ASSERT_EQ(tc_send_routed(&hub, hops2, env, len), 0);
    free(env);
    tc_wait_ack(&hub, "gw1", 3, 10000);
    char buf[128];
    ASSERT_STR_EQ(
        tc_sql_text(d.db, "SELECT path FROM audit WHERE origin='gw2' AND seq=1", buf, sizeof buf),
        "direct");
    ASSERT_STR_EQ(
        tc_sql_text(d.db, "SELECT path FROM audit WHERE origin='gw1' AND seq=1", buf, sizeof buf),
        "via hub1");
    ASSERT_STR_EQ(
        tc_sql_text(d.db, "SELECT path FROM audit WHERE origin='gw1' AND seq=2", buf, sizeof buf),
        "via hub-low,hub1");
    ASSERT_STR_EQ(
        tc_sql_text(d.db, "SELECT path FROM audit WHERE origin='gw1' AND seq=3", buf, sizeof buf),
        "via hub-a,hub-b,hub1");
    /* A malformed route closes the relay's session (a frame it cannot
     * have meant). */
    uint8_t junk[4] = { 0, 'x', 'y', 'z' };
    ASSERT_EQ(tc_send_frame_flags(&hub, SS_FRAME_BATCH, SS_FRAME_FLAG_ROUTED, junk, sizeof junk),
              0);
    expect_error(&hub, SS_ELIMIT, NULL, 0);
    tc_expect_closed(&hub, 5000);
    tc_close(&hub);
    tc_close(&gw);
    finish(&e, &d);
}

TEST(routed_from_gateway_refused)
{
    tc_env e;
    tc_daemon d;
    tc_client gw;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_daemon_start(&e, &d, NULL);
    gw_session(&e, &d, &gw, "gw1");
    size_t len;
    uint8_t *env = signed_env(&e, "gw1", "gw1", "s1", 1, 1, "sneaky", &len);
    const char *hops[] = { "hub-x", NULL };
    ASSERT_EQ(tc_send_routed(&gw, hops, env, len), 0);
    free(env);
    expect_error(&gw, SS_EROLE, NULL, 0);
    tc_expect_closed(&gw, 5000);
    tc_close(&gw);
    ASSERT_EQ(committed(&d, "gw1"), 0);
    for (int i = 0; i < 100 && count_q(&d, "SELECT count(*) FROM audit WHERE peer='gw1' AND "
                                           "outcome='rejected:forbidden_role'") != 1;
         i++) {
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
    ASSERT_EQ(count_q(&d, "SELECT count(*) FROM audit WHERE peer='gw1' AND "
                          "outcome='rejected:forbidden_role'"),
              1);
    finish(&e, &d);
}

/* ---- the verifier alone -------------------------------------------------- */

static SSL_CTX *trust(tc_env *e)
{
    char ca[300], crl[300], cert[300], key[300], err[512];
    SSL_CTX *ctx = NULL;
    int rc = sd_tls_ctx_new(tc_path(e, "pki/ca.crt", ca, sizeof ca),
                            tc_path(e, "pki/crl.pem", crl, sizeof crl),
                            tc_path(e, "central.crt", cert, sizeof cert),
                            tc_path(e, "central.key", key, sizeof key), &ctx, err, sizeof err);
    if (rc != 0)
        SS_TEST_FAIL("trust: %s", err);
    return ctx;
}

TEST(verifier_cache_expiry_and_reload)
{
    tc_env e;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1,s2");
    SSL_CTX *ctx = trust(&e);
    sd_sig *sig = NULL;
    ASSERT_EQ(sd_sig_new(16, &sig), 0);
    size_t len;
    uint8_t *bytes = signed_env(&e, "gw1", "gw1", "s1", 1, 2, "unit", &len);
    ss_envelope env;
    ASSERT_EQ(ss_envelope_parse(bytes, len, &env), 0);
    static sd_sig_result r;
    int64_t now = tc_now_ms();

    /* No trust store yet: refused, not crashed. */
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), SS_ECERT);
    ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(ctx)), 0);
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), 0);
    ASSERT_EQ(r.cached, 0);
    ASSERT_STR_EQ(r.origin.node, "gw1");
    ASSERT_EQ(r.origin.nsites, 2);
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), 0);
    ASSERT_EQ(r.cached, 1);
    sd_sig_stats st;
    sd_sig_get_stats(sig, &st);
    ASSERT_U64_EQ(st.chain_checks, 1);
    ASSERT_U64_EQ(st.cache_hits, 1);
    ASSERT_EQ(st.entries, 1);

    /* Past the certificate's notAfter (397 days by default): refused at
     * that receive time even though the verdict is cached. */
    int64_t later = now + 400LL * 86400 * 1000;
    ASSERT_EQ(sd_sig_verify(sig, &env, later, &r), SS_ECERT);
    ASSERT(strstr(r.reason, "expired") != NULL);
    /* ... and before its notBefore. */
    ASSERT_EQ(sd_sig_verify(sig, &env, now - 10LL * 86400 * 1000, &r), SS_ECERT);
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), 0);

    /* Wrong origin with a good (cached) certificate. */
    size_t olen;
    uint8_t *other = signed_env(&e, "gw1", "gw1", "s1", 3, 1, "x", &olen);
    other[3] = 'h'; /* origin "gw1" -> "hw1": header is signed, so two faults */
    ss_envelope oenv;
    ASSERT_EQ(ss_envelope_parse(other, olen, &oenv), 0);
    ASSERT_EQ(sd_sig_verify(sig, &oenv, now, &r), SS_ECERT);
    ASSERT(strstr(r.reason, "hw1") != NULL);
    free(other);

    /* Revoked, then reloaded: the cache is cleared and the verdict redone. */
    tc_revoke(&e, "gw1");
    SSL_CTX *ctx2 = trust(&e);
    ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(ctx2)), 0);
    SSL_CTX_free(ctx); /* the verifier holds its own reference, to ctx2's store */
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), SS_EREVOKED);
    ASSERT_EQ(r.cached, 0);
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), SS_EREVOKED);
    ASSERT_EQ(r.cached, 1); /* refusals are remembered too */
    sd_sig_get_stats(sig, &st);
    ASSERT_U64_EQ(st.reloads, 2);

    /* Unsigned and malformed blocks. */
    size_t ul;
    uint8_t *u = status_env("gw1", "s1", 1, 1, "u", &ul);
    ASSERT_EQ(ss_envelope_parse(u, ul, &oenv), 0);
    ASSERT_EQ(sd_sig_verify(sig, &oenv, now, &r), SS_ESIG);
    free(u);
    bytes[env.signed_len + 2] = 7; /* algorithm byte */
    ASSERT_EQ(ss_envelope_parse(bytes, len, &env), 0);
    ASSERT_EQ(sd_sig_verify(sig, &env, now, &r), SS_ESIG);
    free(bytes);
    sd_sig_destroy(sig);
    SSL_CTX_free(ctx2);
    tc_env_cleanup(&e);
}

TEST(verifier_without_cache)
{
    tc_env e;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    SSL_CTX *ctx = trust(&e);
    sd_sig *sig = NULL;
    ASSERT_EQ(sd_sig_new(0, &sig), 0);
    ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(ctx)), 0);
    size_t len;
    uint8_t *bytes = signed_env(&e, "gw1", "gw1", "s1", 1, 1, "nc", &len);
    ss_envelope env;
    ASSERT_EQ(ss_envelope_parse(bytes, len, &env), 0);
    static sd_sig_result r;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(sd_sig_verify(sig, &env, tc_now_ms(), &r), 0);
        ASSERT_EQ(r.cached, 0);
    }
    sd_sig_stats st;
    sd_sig_get_stats(sig, &st);
    ASSERT_U64_EQ(st.chain_checks, 3);
    ASSERT_EQ(st.entries, 0);
    free(bytes);
    sd_sig_destroy(sig);
    SSL_CTX_free(ctx);
    tc_env_cleanup(&e);
}

/* The writer thread verifies while the loop thread swaps the trust store
 * (SIGHUP): no race (run under TSan), every verdict is one of the two
 * stores', and the last store decides once the swapping stops. */
typedef struct race {
    sd_sig *sig;
    const ss_envelope *env;
    atomic_int stop;
    long ok, revoked;
} race;

static void *verify_loop(void *arg)
{
    race *r = arg;
    static sd_sig_result res; /* one verifier thread */
    while (!atomic_load(&r->stop)) {
        int rc = sd_sig_verify(r->sig, r->env, tc_now_ms(), &res);
        if (rc == 0)
            r->ok++;
        else if (rc == SS_EREVOKED)
            r->revoked++;
        else
            SS_TEST_FAIL("verify during reloads: %s (%s)", ss_err_name(rc), res.reason);
    }
    return NULL;
}

TEST(verifier_concurrent_reload)
{
    tc_env e;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    SSL_CTX *good = trust(&e);
    tc_revoke(&e, "gw1");
    SSL_CTX *bad = trust(&e);
    sd_sig *sig = NULL;
    ASSERT_EQ(sd_sig_new(64, &sig), 0);
    ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(good)), 0);
    size_t len;
    uint8_t *bytes = signed_env(&e, "gw1", "gw1", "s1", 1, 1, "race", &len);
    ss_envelope env;
    ASSERT_EQ(ss_envelope_parse(bytes, len, &env), 0);
    race r = { sig, &env, 0, 0, 0 };
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, verify_loop, &r), 0);
    for (int i = 0; i < 400; i++) {
        SSL_CTX *ctx = (i & 1) ? good : bad;
        ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(ctx)), 0);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    ASSERT_EQ(sd_sig_set_store(sig, SSL_CTX_get_cert_store(bad)), 0);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    ASSERT_GT(r.ok + r.revoked, 0);
    /* After the last swap, the revoking store decides, cache or not. */
    static sd_sig_result res;
    ASSERT_EQ(sd_sig_verify(sig, &env, tc_now_ms(), &res), SS_EREVOKED);
    ASSERT_EQ(sd_sig_verify(sig, &env, tc_now_ms(), &res), SS_EREVOKED);
    printf("verifier_concurrent_reload: %ld accepted, %ld revoked across 401 swaps\n", r.ok,
           r.revoked);
    free(bytes);
    sd_sig_destroy(sig);
    SSL_CTX_free(good);
    SSL_CTX_free(bad);
    tc_env_cleanup(&e);
}

SS_TEST_MAIN(SS_TEST_ENTRY(signed_accepted_unsigned_refused)
                 SS_TEST_ENTRY(unsigned_accepted_when_not_required)
                     SS_TEST_ENTRY(flipped_byte_refused) SS_TEST_ENTRY(wrong_certificates_refused)
                         SS_TEST_ENTRY(origin_decides_site) SS_TEST_ENTRY(revoked_origin_via_relay)
                             SS_TEST_ENTRY(crl_frames_to_relays) SS_TEST_ENTRY(routed_paths)
                                 SS_TEST_ENTRY(routed_from_gateway_refused)
                                     SS_TEST_ENTRY(verifier_cache_expiry_and_reload)
                                         SS_TEST_ENTRY(verifier_without_cache)
                                             SS_TEST_ENTRY(verifier_concurrent_reload))
