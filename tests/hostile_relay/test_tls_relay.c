/* test_tls_relay.c - the TLS profile of the relay listener, `sitesync-gw
 * relay` (issue 8, item 7, for the hub): an sslscan scan (mbed TLS 2.28 has
 * no TLS 1.3, so only TLS 1.2 with ECDHE and an AEAD suite; no SSLv3, TLS 1.0
 * or 1.1; no renegotiation; no compression), compression refused on the
 * wire, a client certificate required, and certificates that are expired,
 * not yet valid, from another CA, self-signed, revoked, serverAuth-only or
 * without any extendedKeyUsage refused in the handshake: the hub logs the
 * refusal and never reaches HELLO (no downstream_connected, no
 * downstream_hello). Run one with `tls_relay_it NAME`; tests needing an
 * optional program (sslscan, faketime) exit 77 without it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hr.h"
#include "hx.h"
#include "proto/err.h"
#include "ss_test.h"
#include "tc.h"

#define SKIP 77

/* Refusal tests make many failed handshakes from 127.0.0.1 on purpose: the
 * per-address penalty is off so that each one reaches TLS. */
static const char *const no_penalty[] = { "--bad-handshake-limit", "0", NULL };

static void start(hr_sys *s)
{
    hr_start(s, no_penalty);
    tc_issue(&s->e, "gateway", "gw1", "s1");
}

static void send_hello(tc_client *c, const char *node)
{
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    snprintf(m.u.hello.node, sizeof m.u.hello.node, "%s", node);
    m.u.hello.role = SS_ROLE_GATEWAY;
    m.u.hello.max_frame = 65536;
    tc_send_msg(c, &m); /* may fail: the hub may have closed already */
}

/* Connects with o and, should the client side of the handshake complete,
 * sends a valid HELLO at once. The hub must refuse in the handshake: a
 * downstream_refused "TLS handshake failed" event, the verification reason
 * (NULL: any) in a tls_verify_failed or tls_error line, no frame back, and
 * no downstream_connected or downstream_hello event: no application byte
 * parsed. */
static void expect_refused(hr_sys *s, const char *node, const tc_tls_opts *o, const char *reason,
                           const char *what)
{
    int refused0 = hr_count(s, "reason=\"TLS handshake failed");
    int reason0 = reason ? hr_count(s, reason) : 0;
    int conn0 = hr_count(s, "event=downstream_connected");
    int hello0 = hr_count(s, "event=downstream_hello");
    tc_client c;
    int hs = tc_connect(&c, &s->e, s->hub.port, node, o);
    int r = 0;
    if (hs == 0) {
        send_hello(&c, node);
        int type;
        uint8_t *p;
        uint32_t len;
        r = tc_recv_frame(&c, 5000, &type, &p, &len);
        if (r == 1)
            SS_TEST_FAIL("%s: the hub answered with a %s frame", what, ss_frame_type_name(type));
    }
    tc_close(&c);
    if (r < 0)
        SS_TEST_FAIL("%s: connection neither served nor closed within 5 s", what);
    ASSERT_GE(hr_wait_count(s, "reason=\"TLS handshake failed", refused0 + 1, 3000), refused0 + 1);
    if (reason && hr_wait_count(s, reason, reason0 + 1, 3000) < reason0 + 1)
        SS_TEST_FAIL("%s: no \"%s\" in the hub log", what, reason);
    ASSERT_EQ(hr_count(s, "event=downstream_connected"), conn0);
    ASSERT_EQ(hr_count(s, "event=downstream_hello"), hello0);
    printf("  %-46s client handshake %s; hub: refused in TLS (%s), no HELLO parsed\n", what,
           hs == 0 ? "completed" : "failed", reason ? reason : "handshake failure");
    fflush(stdout);
}

static void expect_served(hr_sys *s, const char *node, const tc_tls_opts *o)
{
    tc_client c;
    ss_welcome w;
    ASSERT_EQ(tc_connect(&c, &s->e, s->hub.port, node, o), 0);
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    tc_close(&c);
}

/* ---- the scan ------------------------------------------------------------ */

static int allowed_cipher(const char *proto, const char *name)
{
    if (strcmp(proto, "TLSv1.3") == 0)
        return strcmp(name, "TLS_AES_128_GCM_SHA256") == 0 ||
               strcmp(name, "TLS_AES_256_GCM_SHA384") == 0 ||
               strcmp(name, "TLS_CHACHA20_POLY1305_SHA256") == 0;
    if (strcmp(proto, "TLSv1.2") == 0)
        return strncmp(name, "ECDHE-", 6) == 0 &&
               (strstr(name, "-GCM-") != NULL || strstr(name, "CHACHA20-POLY1305") != NULL);
    return 0;
}

TEST(profile_scan)
{
    if (!hx_have_program("sslscan")) {
        printf("SKIP: sslscan is not installed (Debian package sslscan; ./sitesync.sh deps)\n");
        exit(SKIP);
    }
    hr_sys s;
    start(&s);
    char cert[300], key[300], out[300], target[64], certarg[320], keyarg[320];
    snprintf(certarg, sizeof certarg, "--certs=%s", tc_path(&s.e, "gw1.crt", cert, sizeof cert));
    snprintf(keyarg, sizeof keyarg, "--pk=%s", tc_path(&s.e, "gw1.key", key, sizeof key));
    snprintf(target, sizeof target, "127.0.0.1:%d", s.hub.port);
    tc_path(&s.e, "sslscan.txt", out, sizeof out);
    /* With a client certificate, so that handshakes complete and every
     * suite the hub accepts is listed. */
    char *argv[] = { "/usr/bin/env", "sslscan", "--no-colour", certarg, keyarg, target, NULL };
    ASSERT_EQ(tc_run(argv, out), 0);
    FILE *f = fopen(out, "r");
    ASSERT(f != NULL);
    char line[512];
    int protos = 0, n12 = 0, n13 = 0, tls13_on = 0, reneg_no = 0, reneg_yes = 0, comp_on = 0,
        comp_off = 0, comp_unknown = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        char a[64], b[64], c[64], name[128];
        if (sscanf(line, "%63s %63s", a, b) == 2 &&
            (strncmp(a, "SSLv", 4) == 0 || strncmp(a, "TLSv1", 5) == 0) &&
            (strcmp(b, "enabled") == 0 || strcmp(b, "disabled") == 0)) {
            int on = strcmp(b, "enabled") == 0;
            if (strcmp(a, "TLSv1.3") == 0)
                tls13_on = on; /* allowed; mbed TLS 2.28 has none */
            else if (on != (strcmp(a, "TLSv1.2") == 0))
                SS_TEST_FAIL("protocol %s is %s", a, b);
            protos++;
        }
        if ((strncmp(line, "Accepted", 8) == 0 || strncmp(line, "Preferred", 9) == 0) &&
            sscanf(line, "%63s %63s %*s %63s %127s", a, b, c, name) == 4) {
            if (!allowed_cipher(b, name))
                SS_TEST_FAIL("suite outside the profile accepted: %s %s", b, name);
            n12 += strcmp(b, "TLSv1.2") == 0;
            n13 += strcmp(b, "TLSv1.3") == 0;
        }
        reneg_no += strstr(line, "Session renegotiation not supported") != NULL;
        reneg_yes += strstr(line, "session renegotiation supported") != NULL;
        comp_off += strstr(line, "Compression disabled") != NULL;
        comp_on += strstr(line, "Compression enabled") != NULL;
        comp_unknown += strstr(line, "does not support compression") != NULL;
    }
    fclose(f);
    printf("profile_scan: %d protocol lines checked, %d TLS 1.2 suites (all ECDHE+AEAD), TLS 1.3 "
           "%s with %d suites; renegotiation %s; compression %s\n",
           protos, n12, tls13_on ? "enabled" : "disabled (mbed TLS 2.28)", n13,
           reneg_no ? "not supported" : "?",
           comp_off       ? "disabled"
           : comp_unknown ? "not testable by this sslscan (see no_compression)"
                          : "?");
    ASSERT_GE(protos, 5);
    ASSERT_GE(n12, 1);
    ASSERT_EQ(tls13_on ? n13 >= 1 : n13 == 0, 1);
    ASSERT_EQ(reneg_yes, 0);
    ASSERT_EQ(reneg_no, 1);
    ASSERT_EQ(comp_on, 0);
    ASSERT_EQ(comp_off + comp_unknown, 1);
    ASSERT(tc_daemon_alive(&s.hub));
    expect_served(&s, "gw1", NULL);
    hr_finish(&s);
}

/* ---- compression, renegotiation, no certificate ------------------------- */

/* A TLS 1.2 ClientHello offering DEFLATE (1) before null (0): the hub's
 * ServerHello must pick null. On the wire, because the system OpenSSL (and
 * sslscan on it) are built without compression. */
TEST(no_compression)
{
    hr_sys s;
    start(&s);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT(ctx != NULL);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    ASSERT(SSL_do_handshake(ssl) <= 0);
    uint8_t ch[2048 + 1];
    int n = BIO_read(wb, ch, 2048);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    ASSERT_GT(n, 50);
    ASSERT_EQ(ch[0], 0x16);
    ASSERT_EQ(ch[5], 0x01);
    size_t pos = 9 + 2 + 32;
    pos += 1 + ch[pos];
    pos += 2 + ((size_t)ch[pos] << 8 | ch[pos + 1]);
    ASSERT_EQ(ch[pos], 1);
    ASSERT_EQ(ch[pos + 1], 0);
    memmove(ch + pos + 2, ch + pos + 1, (size_t)n - pos - 1);
    ch[pos] = 2;
    ch[pos + 1] = 1; /* DEFLATE, then null */
    n++;
    size_t rec = ((size_t)ch[3] << 8 | ch[4]) + 1;
    ch[3] = (uint8_t)(rec >> 8);
    ch[4] = (uint8_t)rec;
    size_t hs = ((size_t)ch[6] << 16 | (size_t)ch[7] << 8 | ch[8]) + 1;
    ch[6] = (uint8_t)(hs >> 16);
    ch[7] = (uint8_t)(hs >> 8);
    ch[8] = (uint8_t)hs;
    int fd = tc_tcp_connect(s.hub.port);
    ASSERT(fd >= 0);
    ASSERT_EQ(send(fd, ch, (size_t)n, MSG_NOSIGNAL), n);
    uint8_t sh[8192];
    size_t have = 0;
    while (have < 5 || have < 5 + ((size_t)sh[3] << 8 | sh[4])) {
        ssize_t r = recv(fd, sh + have, sizeof sh - have, 0);
        ASSERT_GT(r, 0);
        have += (size_t)r;
        ASSERT_LT(have, sizeof sh);
    }
    close(fd);
    if (sh[0] == 0x15)
        SS_TEST_FAIL("the hub refused the ClientHello with alert %d", sh[6]);
    ASSERT_EQ(sh[0], 0x16);
    ASSERT_EQ(sh[5], 0x02);
    size_t p = 9;
    ASSERT_EQ(sh[p], 3);
    ASSERT_EQ(sh[p + 1], 3);
    p += 2 + 32;
    p += 1 + sh[p];
    unsigned suite = (unsigned)sh[p] << 8 | sh[p + 1];
    p += 2;
    printf("no_compression: offered DEFLATE and null; ServerHello TLS 1.2 suite 0x%04x "
           "compression %u\n",
           suite, sh[p]);
    ASSERT_EQ(sh[p], 0);
    expect_served(&s, "gw1", NULL);
    hr_finish(&s);
}

TEST(renegotiation_refused)
{
    hr_sys s;
    start(&s);
    tc_client c;
    ASSERT_EQ(tc_connect(&c, &s.e, s.hub.port, "gw1", NULL), 0);
    ss_welcome w;
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    ASSERT_EQ(SSL_version(c.ssl), TLS1_2_VERSION);
    int conn0 = hr_count(&s, "event=downstream_connected");
    /* Client-initiated renegotiation: the hub must not do it. */
    int r = SSL_renegotiate(c.ssl);
    int hs = r == 1 ? SSL_do_handshake(c.ssl) : 0;
    /* The refusal may come as an alert to the handshake or only when the
     * client next reads. */
    if (hs == 1) {
        int type;
        uint8_t *p;
        uint32_t len;
        int rr = tc_recv_frame(&c, 3000, &type, &p, &len);
        if (rr == 1)
            free(p);
        hs = SSL_renegotiate_pending(c.ssl) ? 0 : hs;
    }
    char e1[256];
    ERR_error_string_n(ERR_peek_error(), e1, sizeof e1);
    ERR_clear_error();
    printf("renegotiation_refused: SSL_renegotiate=%d, handshake=%d pending=%d (%s)\n", r, hs,
           SSL_renegotiate_pending(c.ssl), e1);
    ASSERT(hs != 1 || SSL_renegotiate_pending(c.ssl));
    tc_close(&c);
    ASSERT_EQ(hr_count(&s, "event=downstream_connected"), conn0);
    ASSERT(tc_daemon_alive(&s.hub));
    expect_served(&s, "gw1", NULL);
    hr_finish(&s);
}

TEST(no_client_cert_no_data)
{
    hr_sys s;
    start(&s);
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.no_cert = 1;
    expect_refused(&s, "gw1", &o, NULL, "no client certificate");
    expect_served(&s, "gw1", NULL);
    hr_finish(&s);
}

/* ---- certificates ---------------------------------------------------------- */

TEST(bad_certificates)
{
    hr_sys s;
    tc_env other;
    memset(&s, 0, sizeof s);
    tc_env_setup(&s.e);
    tc_issue(&s.e, "relay", "hub", HR_HUB_SITES);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_issue(&s.e, "gateway", "thief", "s1");
    tc_revoke(&s.e, "thief");
    tc_issue(&s.e, "daemon", "central2", NULL); /* serverAuth only */
    char ca_dir[300];
    tc_path(&s.e, "pki", ca_dir, sizeof ca_dir);
    /* Crafted with the real CA key: a gateway identity, only the EKU wrong. */
    hx_make_cert(&s.e, "eku-server", ca_dir, "gw1", "s1", HX_EKU_SERVER);
    hx_make_cert(&s.e, "eku-none", ca_dir, "gw1", "s1", HX_EKU_NONE);
    hx_make_cert(&s.e, "crafted-ok", ca_dir, "gw1", "s1", HX_EKU_CLIENT); /* control */
    hx_make_cert(&s.e, "selfsigned", NULL, "gw1", "s1", HX_EKU_CLIENT);
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    tc_daemon_start(&s.e, &s.d, NULL);
    hr_hub_start(&s, no_penalty);

    char crt[300], key[300];
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    /* The control: crafted the same way but with clientAuth, served. */
    o.cert = tc_path(&s.e, "crafted-ok.crt", crt, sizeof crt);
    o.key = tc_path(&s.e, "crafted-ok.key", key, sizeof key);
    expect_served(&s, "gw1", &o);
    int served = hr_count(&s, "event=downstream_hello");
    ASSERT_EQ(served, 1);

    const char *not_trusted = "not correctly signed by the trusted CA";
    const char *eku = "Usage does not match the extendedKeyUsage extension";
    o.cert = tc_path(&other, "gw1.crt", crt, sizeof crt);
    o.key = tc_path(&other, "gw1.key", key, sizeof key);
    expect_refused(&s, "gw1", &o, not_trusted, "another CA's certificate (same identity)");
    o.cert = tc_path(&s.e, "selfsigned.crt", crt, sizeof crt);
    o.key = tc_path(&s.e, "selfsigned.key", key, sizeof key);
    expect_refused(&s, "gw1", &o, not_trusted, "self-signed certificate");
    expect_refused(&s, "central2", NULL, eku, "daemon certificate (serverAuth only)");
    o.cert = tc_path(&s.e, "eku-server.crt", crt, sizeof crt);
    o.key = tc_path(&s.e, "eku-server.key", key, sizeof key);
    expect_refused(&s, "gw1", &o, eku, "gateway identity, EKU serverAuth only");
    o.cert = tc_path(&s.e, "eku-none.crt", crt, sizeof crt);
    o.key = tc_path(&s.e, "eku-none.key", key, sizeof key);
    expect_refused(&s, "gw1", &o, eku, "gateway identity, no EKU at all");
    expect_refused(&s, "thief", NULL, "has been revoked", "revoked certificate");
    ASSERT_EQ(hr_count(&s, "event=downstream_hello"), served);
    expect_served(&s, "gw1", NULL);
    tc_env_cleanup(&other);
    hr_finish(&s);
}

/* Expired and not-yet-valid certificates, issued by sitesync-pki with its
 * clock moved by faketime(1), as the daemon's test does: the CA is made 30
 * days ago so that it was valid then, the CRL is re-signed now. */
TEST(certificate_times)
{
    if (!hx_have_program("faketime")) {
        printf("SKIP: faketime is not installed (Debian package faketime)\n");
        exit(SKIP);
    }
    signal(SIGPIPE, SIG_IGN);
    hr_sys s;
    memset(&s, 0, sizeof s);
    const char *tmp = getenv("TMPDIR");
    snprintf(s.e.dir, sizeof s.e.dir, "%s/sitesync-tlsrelay-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ASSERT(mkdtemp(s.e.dir) != NULL);
    char pki[300], log[300], old[300], fut[300];
    tc_path(&s.e, "pki", pki, sizeof pki);
    tc_path(&s.e, "pki.log", log, sizeof log);
    tc_path(&s.e, "expired", old, sizeof old);
    tc_path(&s.e, "future", fut, sizeof fut);
    char *init[] = { SITESYNC_PKI_BIN, "init", "--dir", pki, NULL };
    ASSERT_EQ(hx_run_faketime("-30d", init, log), 0);
    char *expired[] = { SITESYNC_PKI_BIN, "issue",  "--dir",  pki,      "--role",
                        "gateway",        "--node", "gw-old", "--site", "s1",
                        "--days",         "1",      "--out",  old,      NULL };
    ASSERT_EQ(hx_run_faketime("-20d", expired, log), 0);
    char *future[] = { SITESYNC_PKI_BIN, "issue",  "--dir",  pki,      "--role",
                       "gateway",        "--node", "gw-new", "--site", "s1",
                       "--days",         "30",     "--out",  fut,      NULL };
    ASSERT_EQ(hx_run_faketime("+20d", future, log), 0);
    char *crl[] = { SITESYNC_PKI_BIN, "crl", "--dir", pki, NULL };
    ASSERT_EQ(tc_run(crl, log), 0);
    tc_issue(&s.e, "daemon", "central", NULL);
    tc_issue(&s.e, "relay", "hub", HR_HUB_SITES);
    tc_issue(&s.e, "gateway", "gw1", "s1");
    tc_daemon_start(&s.e, &s.d, NULL);
    hr_hub_start(&s, no_penalty);
    expect_served(&s, "gw1", NULL);
    expect_refused(&s, "expired", NULL, "validity has expired",
                   "expired 19 days ago (issued at -20d for 1 day)");
    expect_refused(&s, "future", NULL, "validity starts in the future", "valid from +20d");
    ASSERT_EQ(hr_count(&s, "event=downstream_hello"), 1);
    hr_finish(&s);
}

SS_TEST_MAIN(SS_TEST_ENTRY(profile_scan) SS_TEST_ENTRY(no_compression)
                 SS_TEST_ENTRY(renegotiation_refused) SS_TEST_ENTRY(no_client_cert_no_data)
                     SS_TEST_ENTRY(bad_certificates) SS_TEST_ENTRY(certificate_times))
