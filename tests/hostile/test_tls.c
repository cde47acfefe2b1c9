/* test_tls.c - the TLS profile of sitesyncd (issue 8, item 7): an sslscan
 * scan (only TLS 1.2 ECDHE+AEAD and TLS 1.3, no SSLv3/TLS 1.0/1.1, no
 * renegotiation), compression refused on the wire, client certificate
 * required, and certificates that are expired, not yet valid, from another
 * CA, self-signed, revoked or without clientAuth refused at the handshake,
 * before any application byte is parsed. Run one with `tls_it NAME`; tests
 * needing an optional program (sslscan, faketime) exit 77 without it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "hx.h"
#include "proto/err.h"
#include "ss_test.h"
#include "tc.h"

#define SKIP 77

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

/* Refusal tests make many failed handshakes from 127.0.0.1 on purpose: the
 * per-address penalty is switched off so that each one reaches TLS. */
static const char *const no_penalty[] = { "--bad-handshake-limit", "0", NULL };

static void start(tc_env *e, tc_daemon *d)
{
    tc_env_setup(e);
    tc_issue(e, "gateway", "gw1", "s1");
    tc_daemon_start(e, d, no_penalty);
}

static int wait_count(const tc_daemon *d, const char *needle, int want, int timeout_ms)
{
    int n = tc_log_count(d, needle);
    for (int waited = 0; n < want && waited < timeout_ms; waited += 20) {
        hx_sleep_ms(20);
        n = tc_log_count(d, needle);
    }
    return n;
}

/* Connects with o, and if the client side of the handshake completes (TLS
 * 1.3 finishes before the server has judged our certificate) sends a valid
 * HELLO at once. The daemon must refuse at the handshake: a tls_refused
 * event with `reason` (NULL: any), no frame back, and no tls_ok or hello
 * event, i.e. no application byte parsed. */
static void expect_refused(tc_env *e, tc_daemon *d, const char *node, const tc_tls_opts *o,
                           const char *reason, const char *what)
{
    char needle[256];
    snprintf(needle, sizeof needle, "reason=\"%s\"", reason ? reason : "");
    int refused0 = tc_log_count(d, "event=tls_refused");
    int reason0 = reason ? tc_log_count(d, needle) : 0;
    int hello0 = tc_log_count(d, "event=hello conn");
    int ok0 = tc_log_count(d, "event=tls_ok");
    tc_client c;
    int hs = tc_connect(&c, e, d->port, node, o);
    int r = 0;
    if (hs == 0) {
        hx_send_hello(&c, node);
        int type;
        uint8_t *p;
        uint32_t len;
        r = tc_recv_frame(&c, 5000, &type, &p, &len);
        if (r == 1) {
            SS_TEST_FAIL("%s: the daemon answered with a %s frame", what, ss_frame_type_name(type));
            free(p);
        }
    }
    tc_close(&c);
    if (r < 0)
        SS_TEST_FAIL("%s: connection neither served nor closed within 5 s", what);
    ASSERT_GE(wait_count(d, "event=tls_refused", refused0 + 1, 3000), refused0 + 1);
    if (reason && wait_count(d, needle, reason0 + 1, 3000) != reason0 + 1)
        SS_TEST_FAIL("%s: no tls_refused with %s in the daemon log", what, needle);
    ASSERT_EQ(tc_log_count(d, "event=hello conn"), hello0);
    ASSERT_EQ(tc_log_count(d, "event=tls_ok"), ok0);
    printf("  %-44s %-7s client handshake %s; daemon: tls_refused %s, no HELLO parsed\n", what,
           o && o->max_version == TLS1_2_VERSION ? "TLS1.2" : "TLS1.3",
           hs == 0 ? "completed (1.3: verdict after)" : "failed", reason ? needle : "");
    fflush(stdout);
}

/* Both protocol versions: in TLS 1.2 the client learns of the refusal in
 * the handshake, in TLS 1.3 only after its Finished. */
static void expect_refused_both(tc_env *e, tc_daemon *d, const char *node, const tc_tls_opts *o,
                                const char *reason, const char *what)
{
    tc_tls_opts v;
    if (o)
        v = *o;
    else
        memset(&v, 0, sizeof v);
    v.max_version = 0;
    expect_refused(e, d, node, &v, reason, what);
    v.max_version = TLS1_2_VERSION;
    expect_refused(e, d, node, &v, reason, what);
}

static void expect_served(tc_env *e, tc_daemon *d, const char *node, const tc_tls_opts *o)
{
    tc_client c;
    ss_welcome w;
    ASSERT_EQ(tc_connect(&c, e, d->port, node, o), 0);
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
    tc_env e;
    tc_daemon d;
    start(&e, &d);
    char cert[300], key[300], out[300], target[64], certarg[320], keyarg[320];
    snprintf(certarg, sizeof certarg, "--certs=%s", tc_path(&e, "gw1.crt", cert, sizeof cert));
    snprintf(keyarg, sizeof keyarg, "--pk=%s", tc_path(&e, "gw1.key", key, sizeof key));
    snprintf(target, sizeof target, "127.0.0.1:%d", d.port);
    tc_path(&e, "sslscan.txt", out, sizeof out);
    /* With a client certificate, so that TLS 1.2 handshakes complete and
     * every suite the daemon accepts is listed. */
    char *argv[] = { "/usr/bin/env", "sslscan", "--no-colour", certarg, keyarg, target, NULL };
    ASSERT_EQ(tc_run(argv, out), 0);
    FILE *f = fopen(out, "r");
    ASSERT(f != NULL);
    char line[512];
    int protos = 0, n12 = 0, n13 = 0, reneg_no = 0, reneg_yes = 0, comp_on = 0, comp_off = 0,
        comp_unknown = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        char a[64], b[64], c[64], name[128];
        if (sscanf(line, "%63s %63s", a, b) == 2 &&
            (strncmp(a, "SSLv", 4) == 0 || strncmp(a, "TLSv1", 5) == 0) &&
            (strcmp(b, "enabled") == 0 || strcmp(b, "disabled") == 0)) {
            int want = strcmp(a, "TLSv1.2") == 0 || strcmp(a, "TLSv1.3") == 0;
            if (want != (strcmp(b, "enabled") == 0))
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
    printf("profile_scan: %d protocol lines checked, %d TLS 1.2 and %d TLS 1.3 suites, all "
           "ECDHE+AEAD; renegotiation %s; compression %s\n",
           protos, n12, n13, reneg_no ? "not supported" : "?",
           comp_off       ? "disabled"
           : comp_unknown ? "not testable by this sslscan (see no_compression)"
                          : "?");
    ASSERT_GE(protos, 5); /* SSLv3, TLS 1.0, 1.1, 1.2, 1.3 at least */
    ASSERT_GE(n12, 1);
    ASSERT_GE(n13, 1);
    ASSERT_EQ(reneg_yes, 0);
    ASSERT_EQ(reneg_no, 1);
    ASSERT_EQ(comp_on, 0);
    ASSERT_EQ(comp_off + comp_unknown, 1);
    finish(&e, &d);
}

/* ---- compression, renegotiation, no certificate ------------------------- */

/* A TLS 1.2 ClientHello offering DEFLATE (1) before null (0): the daemon's
 * ServerHello must pick null. Done on the wire because the system OpenSSL
 * (and sslscan on it) are built without compression support. */
TEST(no_compression)
{
    tc_env e;
    tc_daemon d;
    start(&e, &d);
    unsigned suite;
    unsigned comp = hx_compression_probe(d.port, "daemon", &suite);
    printf("no_compression: offered DEFLATE and null; ServerHello TLS 1.2 suite 0x%04x "
           "compression %u\n",
           suite, comp);
    ASSERT_EQ(comp, 0);
    expect_served(&e, &d, "gw1", NULL);
    finish(&e, &d);
}

TEST(renegotiation_refused)
{
    tc_env e;
    tc_daemon d;
    start(&e, &d);
    tc_client c;
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.max_version = TLS1_2_VERSION;
    ASSERT_EQ(tc_connect(&c, &e, d.port, "gw1", &o), 0);
    ss_welcome w;
    tc_hello(&c, "gateway", NULL, &w);
    free(w.committed);
    ASSERT_EQ(SSL_version(c.ssl), TLS1_2_VERSION);
    int ok0 = tc_log_count(&d, "event=tls_ok");
    /* Client-initiated renegotiation: the daemon must not do it. */
    int r = SSL_renegotiate(c.ssl);
    int hs = r == 1 ? SSL_do_handshake(c.ssl) : 0;
    char e1[256];
    ERR_error_string_n(ERR_peek_error(), e1, sizeof e1);
    ERR_clear_error();
    printf("renegotiation_refused: SSL_renegotiate=%d, handshake=%d (%s)\n", r, hs, e1);
    ASSERT(hs != 1);
    ASSERT_EQ(SSL_renegotiate_pending(c.ssl) && hs == 1, 0);
    tc_close(&c);
    ASSERT_EQ(tc_log_count(&d, "event=tls_ok"), ok0); /* no second handshake */
    ASSERT(tc_daemon_alive(&d));
    expect_served(&e, &d, "gw1", NULL);
    finish(&e, &d);
}

TEST(no_client_cert_no_data)
{
    tc_env e;
    tc_daemon d;
    start(&e, &d);
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    o.no_cert = 1;
    expect_refused_both(&e, &d, "gw1", &o, NULL, "no client certificate");
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(*) FROM sessions"), 0);
    expect_served(&e, &d, "gw1", NULL);
    finish(&e, &d);
}

/* ---- certificates ---------------------------------------------------------- */

TEST(bad_certificates)
{
    tc_env e, other;
    tc_daemon d;
    tc_env_setup(&e);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_issue(&e, "gateway", "thief", "s1");
    tc_revoke(&e, "thief");
    tc_issue(&e, "daemon", "central2", NULL); /* a daemon certificate: serverAuth only */
    char ca_dir[300];
    tc_path(&e, "pki", ca_dir, sizeof ca_dir);
    /* Crafted with the real CA key: a gateway identity, only the EKU wrong. */
    hx_make_cert(&e, "eku-server", ca_dir, "gw1", "s1", HX_EKU_SERVER);
    hx_make_cert(&e, "eku-none", ca_dir, "gw1", "s1", HX_EKU_NONE);
    hx_make_cert(&e, "crafted-ok", ca_dir, "gw1", "s1", HX_EKU_CLIENT); /* control */
    hx_make_cert(&e, "selfsigned", NULL, "gw1", "s1", HX_EKU_CLIENT);
    tc_env_setup(&other);
    tc_issue(&other, "gateway", "gw1", "s1");
    tc_daemon_start(&e, &d, no_penalty);

    char crt[300], key[300];
    tc_tls_opts o;
    memset(&o, 0, sizeof o);
    /* The control: a certificate crafted the same way but with clientAuth
     * is served, so each refusal below is for the one defect it has. */
    o.cert = tc_path(&e, "crafted-ok.crt", crt, sizeof crt);
    o.key = tc_path(&e, "crafted-ok.key", key, sizeof key);
    expect_served(&e, &d, "gw1", &o);

    o.cert = tc_path(&other, "gw1.crt", crt, sizeof crt);
    o.key = tc_path(&other, "gw1.key", key, sizeof key);
    expect_refused_both(&e, &d, "gw1", &o,
                        X509_verify_cert_error_string(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
                        "another CA's certificate (same identity)");
    o.cert = tc_path(&e, "selfsigned.crt", crt, sizeof crt);
    o.key = tc_path(&e, "selfsigned.key", key, sizeof key);
    expect_refused_both(&e, &d, "gw1", &o,
                        X509_verify_cert_error_string(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
                        "self-signed certificate");
    const char *purpose = X509_verify_cert_error_string(X509_V_ERR_INVALID_PURPOSE);
    expect_refused_both(&e, &d, "central2", NULL, purpose, "daemon certificate (serverAuth only)");
    o.cert = tc_path(&e, "eku-server.crt", crt, sizeof crt);
    o.key = tc_path(&e, "eku-server.key", key, sizeof key);
    expect_refused_both(&e, &d, "gw1", &o, purpose, "gateway identity, EKU serverAuth only");
    o.cert = tc_path(&e, "eku-none.crt", crt, sizeof crt);
    o.key = tc_path(&e, "eku-none.key", key, sizeof key);
    expect_refused_both(&e, &d, "gw1", &o, purpose, "gateway identity, no EKU at all");
    expect_refused_both(&e, &d, "thief", NULL,
                        X509_verify_cert_error_string(X509_V_ERR_CERT_REVOKED),
                        "revoked certificate");
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(*) FROM sessions"), 1); /* the control's */
    expect_served(&e, &d, "gw1", NULL);
    tc_env_cleanup(&other);
    finish(&e, &d);
}

/* Expired and not-yet-valid certificates, issued by sitesync-pki itself with
 * its clock moved by faketime(1) (as tests/pki/pki_expired_test.sh does):
 * the CA is made 30 days ago so it was valid then, the CRL is then re-signed
 * now so that it is current. */
TEST(certificate_times)
{
    if (!hx_have_program("faketime")) {
        printf("SKIP: faketime is not installed (Debian package faketime)\n");
        exit(SKIP);
    }
    signal(SIGPIPE, SIG_IGN);
    tc_env e;
    hx_times_pki(&e, "tls");
    tc_issue(&e, "daemon", "central", NULL);
    tc_issue(&e, "gateway", "gw1", "s1");
    tc_daemon d;
    tc_daemon_start(&e, &d, no_penalty);
    expect_served(&e, &d, "gw1", NULL);
    expect_refused_both(&e, &d, "expired", NULL,
                        X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED),
                        "expired 19 days ago (issued at -20d for 1 day)");
    expect_refused_both(&e, &d, "future", NULL,
                        X509_verify_cert_error_string(X509_V_ERR_CERT_NOT_YET_VALID),
                        "valid from +20d");
    ASSERT_EQ(tc_sql_int(d.db, "SELECT count(*) FROM sessions"), 1);
    finish(&e, &d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(profile_scan) SS_TEST_ENTRY(no_compression)
                 SS_TEST_ENTRY(renegotiation_refused) SS_TEST_ENTRY(no_client_cert_no_data)
                     SS_TEST_ENTRY(bad_certificates) SS_TEST_ENTRY(certificate_times))
