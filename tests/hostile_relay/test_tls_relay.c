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
        hx_send_hello(&c, node);
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
            if (!hx_allowed_cipher(b, name))
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
    unsigned suite;
    unsigned comp = hx_compression_probe(s.hub.port, "hub", &suite);
    printf("no_compression: offered DEFLATE and null; ServerHello TLS 1.2 suite 0x%04x "
           "compression %u\n",
           suite, comp);
    ASSERT_EQ(comp, 0);
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
    hx_times_pki(&s.e, "tlsrelay");
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
