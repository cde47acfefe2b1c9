/* tc.c - integration-test helpers: PKI, daemon process, OpenSSL test client
 * (see tc.h). Tests abort on any unexpected failure. */
#include "tc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"
#include "sd/store.h"
#include "ss_test.h"

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int64_t tc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ss_hlc_t tc_hlc_now(void)
{
    return ss_hlc_make((uint64_t)tc_now_ms(), 0);
}

const char *tc_path(const tc_env *e, const char *name, char *buf, size_t cap)
{
    /* Test paths are short; a truncated one would fail loudly at open. */
    size_t dl = strlen(e->dir), nl = strlen(name);
    ASSERT(dl + 1 + nl < cap);
    memcpy(buf, e->dir, dl);
    buf[dl] = '/';
    memcpy(buf + dl + 1, name, nl + 1);
    return buf;
}

int tc_run(char *const argv[], const char *out_file)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out_file ? out_file : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void tc_env_setup(tc_env *e)
{
    /* Writing to a socket the daemon closed must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/sitesyncd-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ASSERT(mkdtemp(e->dir) != NULL);
    char pkidir[300], log[300];
    tc_path(e, "pki", pkidir, sizeof pkidir);
    tc_path(e, "pki.log", log, sizeof log);
    char *argv[] = { SITESYNC_PKI_BIN, "init", "--dir", pkidir, NULL };
    ASSERT_EQ(tc_run(argv, log), 0);
    tc_issue(e, "daemon", "central", NULL);
}

void tc_env_cleanup(tc_env *e)
{
    char *argv[] = { "/bin/rm", "-rf", e->dir, NULL };
    tc_run(argv, NULL);
}

void tc_issue(tc_env *e, const char *role, const char *node, const char *sites)
{
    char pkidir[300], out[300], log[300];
    tc_path(e, "pki", pkidir, sizeof pkidir);
    tc_path(e, node, out, sizeof out);
    tc_path(e, "pki.log", log, sizeof log);
    char *argv[64];
    int n = 0;
    char *dup = sites ? strdup(sites) : NULL;
    argv[n++] = SITESYNC_PKI_BIN;
    argv[n++] = "issue";
    argv[n++] = "--dir";
    argv[n++] = pkidir;
    argv[n++] = "--role";
    argv[n++] = (char *)role;
    argv[n++] = "--node";
    argv[n++] = (char *)node;
    for (char *p = dup, *next; p && *p && n < 58; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        argv[n++] = "--site";
        argv[n++] = p;
    }
    if (strcmp(role, "daemon") == 0) {
        argv[n++] = "--ip";
        argv[n++] = "127.0.0.1";
    }
    argv[n++] = "--out";
    argv[n++] = out;
    argv[n] = NULL;
    int rc = tc_run(argv, log);
    free(dup);
    ASSERT_EQ(rc, 0);
}

void tc_revoke(tc_env *e, const char *node)
{
    char pkidir[300], log[300];
    tc_path(e, "pki", pkidir, sizeof pkidir);
    tc_path(e, "pki.log", log, sizeof log);
    char *argv[] = { SITESYNC_PKI_BIN, "revoke", "--dir", pkidir, "--node", (char *)node, NULL };
    ASSERT_EQ(tc_run(argv, log), 0);
}

void tc_daemon_start(tc_env *e, tc_daemon *d, const char *const *extra)
{
    char ca[300], crl[300], cert[300], key[300], portf[300];
    tc_path(e, "pki/ca.crt", ca, sizeof ca);
    tc_path(e, "pki/crl.pem", crl, sizeof crl);
    tc_path(e, "central.crt", cert, sizeof cert);
    tc_path(e, "central.key", key, sizeof key);
    tc_path(e, "port", portf, sizeof portf);
    tc_path(e, "daemon.log", d->log, sizeof d->log);
    tc_path(e, "sitesync.db", d->db, sizeof d->db);
    unlink(portf);
    char *argv[64];
    int n = 0;
    argv[n++] = SITESYNCD_BIN;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = portf;
    argv[n++] = "--db";
    argv[n++] = d->db;
    argv[n++] = "--ca";
    argv[n++] = ca;
    argv[n++] = "--crl";
    argv[n++] = crl;
    argv[n++] = "--cert";
    argv[n++] = cert;
    argv[n++] = "--key";
    argv[n++] = key;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    d->pid = fork();
    ASSERT(d->pid >= 0);
    if (d->pid == 0) {
        /* A test that aborts must not leave its daemon running (the
         * forking thread is the test's main thread, so this is its death). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    d->port = 0;
    for (int i = 0; i < 1500 && d->port == 0; i++) {
        FILE *f = fopen(portf, "r");
        if (f) {
            int p = 0;
            if (fscanf(f, "%d", &p) == 1)
                d->port = p;
            fclose(f);
        }
        if (d->port)
            break;
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            char cmd[400];
            snprintf(cmd, sizeof cmd, "cat %s >&2", d->log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            SS_TEST_FAIL("sitesyncd exited at startup (status %d)", st);
        }
        sleep_ms(10);
    }
    ASSERT_GT(d->port, 0);
}

int tc_daemon_stop(tc_daemon *d, int sig, int timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return st;
        }
        sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

int tc_daemon_alive(tc_daemon *d)
{
    int st;
    return d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == 0;
}

int tc_log_count(const tc_daemon *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    int n = 0;
    char line[4096];
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

int tc_log_wait(const tc_daemon *d, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (tc_log_count(d, needle) > 0)
            return 1;
        sleep_ms(20);
    }
    return 0;
}

int tc_tcp_connect(int port)
{
    return tc_tcp_connect_buf(port, 0);
}

int tc_tcp_connect_buf(int port, int rcvbuf)
{
    return tc_tcp_connect_from(port, rcvbuf, NULL);
}

int tc_tcp_connect_from(int port, int rcvbuf, const char *src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (src_ip) {
        struct sockaddr_in la;
        memset(&la, 0, sizeof la);
        la.sin_family = AF_INET;
        ASSERT_EQ(inet_pton(AF_INET, src_ip, &la.sin_addr), 1);
        ASSERT_EQ(bind(fd, (struct sockaddr *)&la, sizeof la), 0);
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int tc_connect(tc_client *c, tc_env *e, int port, const char *node, const tc_tls_opts *o)
{
    char ca[300], cert[300], key[300], name[128];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    snprintf(c->node, sizeof c->node, "%s", node ? node : "");
    snprintf(c->dir, sizeof c->dir, "%s", e->dir);
    tc_path(e, "pki/ca.crt", ca, sizeof ca);
    snprintf(name, sizeof name, "%s.crt", node ? node : "none");
    tc_path(e, name, cert, sizeof cert);
    snprintf(name, sizeof name, "%s.key", node ? node : "none");
    tc_path(e, name, key, sizeof key);
    c->ctx = SSL_CTX_new(TLS_client_method());
    ASSERT(c->ctx != NULL);
    if (o && o->min_version)
        SSL_CTX_set_min_proto_version(c->ctx, o->min_version);
    if (o && o->max_version) {
        SSL_CTX_set_max_proto_version(c->ctx, o->max_version);
        /* Old protocol versions need the legacy security level to even try. */
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_cipher_list(c->ctx, "ALL:@SECLEVEL=0");
    }
    ASSERT_EQ(SSL_CTX_load_verify_locations(c->ctx, o && o->ca ? o->ca : ca, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (!(o && o->no_cert)) {
        ASSERT_EQ(SSL_CTX_use_certificate_chain_file(c->ctx, o && o->cert ? o->cert : cert), 1);
        ASSERT_EQ(SSL_CTX_use_PrivateKey_file(c->ctx, o && o->key ? o->key : key, SSL_FILETYPE_PEM),
                  1);
    }
    c->fd = tc_tcp_connect_from(port, o ? o->rcvbuf : 0, o ? o->src_ip : NULL);
    if (c->fd < 0)
        return -1;
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    ss_fdec_init(&c->dec, SS_FRAME_ABSOLUTE_MAX);
    int r = SSL_connect(c->ssl);
    ERR_clear_error();
    if (r != 1)
        return -1;
    /* In TLS 1.3 the server's verdict on our certificate arrives after
     * SSL_connect returns: a refused client sees it on the first read. */
    return 0;
}

void tc_close(tc_client *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ss_fdec_free(&c->dec);
    EVP_PKEY_free(c->sign_key);
    free(c->sign_cert);
    free(c->crl);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

int tc_send_raw(tc_client *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        int w = SSL_write(c->ssl, b, (int)n);
        if (w <= 0) {
            ERR_clear_error();
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int tc_send_frame_flags(tc_client *c, int type, unsigned flags, const void *payload, size_t len)
{
    uint8_t hdr[SS_FRAME_HEADER_LEN];
    ASSERT_EQ(ss_frame_write_header(hdr, type, flags, (uint32_t)len), SS_FRAME_HEADER_LEN);
    if (tc_send_raw(c, hdr, sizeof hdr) != 0)
        return -1;
    return len ? tc_send_raw(c, payload, len) : 0;
}

/* Loads a PEM certificate (the first of the file) as DER, and a PEM key. */
static int load_signer(const char *cert_file, const char *key_file, EVP_PKEY **key, uint8_t **der,
                       size_t *der_len)
{
    FILE *f = fopen(cert_file, "r");
    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(key_file, "r");
    if (!x || !f) {
        X509_free(x);
        if (f)
            fclose(f);
        ERR_clear_error();
        return -1;
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    int n = i2d_X509(x, NULL);
    *der = n > 0 ? malloc((size_t)n) : NULL;
    unsigned char *w = *der;
    ASSERT(*key && *der && i2d_X509(x, &w) == n);
    *der_len = (size_t)n;
    X509_free(x);
    return 0;
}

/* The envelope signed with key: SIGNED flag set in the copy, ECDSA over
 * SHA-256 of the signed region, trailer appended. */
static uint8_t *sign_with(EVP_PKEY *key, const uint8_t *cert, size_t cert_len, const uint8_t *env,
                          size_t len, size_t *out_len)
{
    ss_envelope pe;
    ASSERT_EQ(ss_envelope_parse(env, len, &pe), 0);
    ASSERT(!(pe.flags & SS_ENV_FLAG_SIGNED));
    size_t region = pe.signed_len;
    uint8_t *out = malloc(region + ss_sig_trailer_len(cert_len, SS_SIG_DER_MAX));
    ASSERT(out != NULL);
    memcpy(out, env, region);
    out[1] |= SS_ENV_FLAG_SIGNED; /* the flag is inside the signed region */
    uint8_t sig[SS_SIG_DER_MAX + 8];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ASSERT(md != NULL);
    ASSERT_EQ(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    ASSERT_EQ(EVP_DigestSign(md, sig, &siglen, out, region), 1);
    EVP_MD_CTX_free(md);
    int t = ss_sig_write_trailer(out + region, ss_sig_trailer_len(cert_len, SS_SIG_DER_MAX), cert,
                                 cert_len, sig, siglen);
    ASSERT_GT(t, 0);
    *out_len = region + (size_t)t;
    return out;
}

uint8_t *tc_sign_envelope(const char *cert_file, const char *key_file, const uint8_t *env,
                          size_t len, size_t *out_len)
{
    EVP_PKEY *key = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    if (load_signer(cert_file, key_file, &key, &der, &der_len) != 0)
        SS_TEST_FAIL("cannot load signer %s / %s", cert_file, key_file);
    uint8_t *out = sign_with(key, der, der_len, env, len, out_len);
    EVP_PKEY_free(key);
    free(der);
    return out;
}

uint8_t *tc_sign_as(const tc_env *e, const char *node, const uint8_t *env, size_t len,
                    size_t *out_len)
{
    char cert[300], key[300], name[128];
    snprintf(name, sizeof name, "%s.crt", node);
    tc_path(e, name, cert, sizeof cert);
    snprintf(name, sizeof name, "%s.key", node);
    tc_path(e, name, key, sizeof key);
    return tc_sign_envelope(cert, key, env, len, out_len);
}

/* The envelope signed by its origin if the test's PKI holds the origin's
 * key (loaded once per origin change), else NULL: sent as given. */
static uint8_t *autosign(tc_client *c, const uint8_t *env, size_t len, size_t *out_len)
{
    ss_envelope pe;
    if (c->no_sign || !c->dir[0] || ss_envelope_parse(env, len, &pe) != 0 ||
        (pe.flags & SS_ENV_FLAG_SIGNED))
        return NULL;
    if (!c->sign_key || strcmp(c->sign_node, pe.origin) != 0) {
        char cert[400], key[400];
        snprintf(cert, sizeof cert, "%s/%s.crt", c->dir, pe.origin);
        snprintf(key, sizeof key, "%s/%s.key", c->dir, pe.origin);
        if (access(key, R_OK) != 0)
            return NULL;
        EVP_PKEY_free(c->sign_key);
        free(c->sign_cert);
        c->sign_key = NULL;
        c->sign_cert = NULL;
        if (load_signer(cert, key, &c->sign_key, &c->sign_cert, &c->sign_cert_len) != 0)
            return NULL;
        snprintf(c->sign_node, sizeof c->sign_node, "%s", pe.origin);
    }
    return sign_with(c->sign_key, c->sign_cert, c->sign_cert_len, env, len, out_len);
}

int tc_send_frame(tc_client *c, int type, const void *payload, size_t len)
{
    size_t slen = 0;
    uint8_t *signed_env = type == SS_FRAME_BATCH ? autosign(c, payload, len, &slen) : NULL;
    int rc = signed_env ? tc_send_frame_flags(c, type, 0, signed_env, slen)
                        : tc_send_frame_flags(c, type, 0, payload, len);
    free(signed_env);
    return rc;
}

int tc_send_routed(tc_client *c, const char *const *hops, const uint8_t *env, size_t len)
{
    ss_route r;
    memset(&r, 0, sizeof r);
    for (int i = 0; hops && hops[i]; i++)
        ASSERT_EQ(ss_route_push(&r, hops[i]), 0);
    size_t rl = ss_route_len(&r);
    uint8_t *buf = malloc(rl + len);
    ASSERT(buf != NULL);
    ASSERT_EQ(ss_route_write(buf, rl, &r), (int)rl);
    memcpy(buf + rl, env, len);
    int rc = tc_send_frame_flags(c, SS_FRAME_BATCH, SS_FRAME_FLAG_ROUTED, buf, rl + len);
    free(buf);
    return rc;
}

int tc_send_msg(tc_client *c, const ss_msg *m)
{
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    ASSERT(buf != NULL);
    int n = ss_msg_encode_frame(m, buf, cap);
    ASSERT_GT(n, 0);
    int rc = tc_send_raw(c, buf, (size_t)n);
    free(buf);
    return rc;
}

int tc_recv_frame(tc_client *c, int timeout_ms, int *type, uint8_t **payload, uint32_t *len)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        while (c->rx_pos < c->rx_len) {
            size_t used = 0;
            int r = ss_fdec_feed(&c->dec, c->rx + c->rx_pos, c->rx_len - c->rx_pos, &used);
            c->rx_pos += used;
            if (r < 0)
                return -1;
            if (r == 1) {
                ss_frame f;
                ASSERT_EQ(ss_fdec_frame(&c->dec, &f), 0);
                if (f.type == SS_FRAME_CRL) {
                    /* Out of band for the session's exchange: kept aside. */
                    free(c->crl);
                    c->crl = malloc(f.len ? f.len : 1);
                    ASSERT(c->crl != NULL);
                    memcpy(c->crl, f.payload, f.len);
                    c->crl_len = f.len;
                    c->ncrl++;
                    continue;
                }
                *type = f.type;
                *len = f.len;
                *payload = malloc(f.len + 1);
                ASSERT(*payload != NULL);
                memcpy(*payload, f.payload, f.len);
                (*payload)[f.len] = 0;
                return 1;
            }
        }
        if (SSL_pending(c->ssl) == 0) {
            int64_t left = deadline - tc_now_ms();
            if (left <= 0)
                return -1;
            struct pollfd p = { c->fd, POLLIN, 0 };
            if (poll(&p, 1, (int)left) == 0)
                return -1;
        }
        int n = SSL_read(c->ssl, c->rx, sizeof c->rx);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ)
                continue;
            return 0; /* close_notify, reset or a TLS alert: the session is over */
        }
        c->rx_pos = 0;
        c->rx_len = (size_t)n;
    }
}

int tc_recv_msg(tc_client *c, int timeout_ms, ss_msg *m)
{
    int type;
    uint8_t *p;
    uint32_t len;
    int r = tc_recv_frame(c, timeout_ms, &type, &p, &len);
    if (r != 1)
        return r;
    ss_verr err;
    memset(&err, 0, sizeof err);
    int rc = ss_msg_decode(type, p, len, m, &err);
    if (rc != 0)
        fprintf(stderr, "tc: cannot decode %s: %s (%.*s)\n", ss_frame_type_name(type), err.msg,
                (int)(len > 300 ? 300 : len), (const char *)p);
    free(p);
    ASSERT_EQ(rc, 0);
    m->type = type;
    return 1;
}

void tc_hello(tc_client *c, const char *role, const char *const *origins, ss_welcome *w)
{
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    snprintf(m.u.hello.node, sizeof m.u.hello.node, "%s", c->node);
    m.u.hello.role = (ss_role)ss_role_parse(role, strlen(role));
    m.u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
    ss_oseq os[16];
    int n = 0;
    for (; origins && origins[n] && n < 16; n++) {
        snprintf(os[n].origin, sizeof os[n].origin, "%s", origins[n]);
        os[n].seq = 0;
    }
    m.u.hello.norigins = n;
    m.u.hello.origins = n ? os : NULL;
    ASSERT_EQ(tc_send_msg(c, &m), 0);
    ss_msg r;
    ASSERT_EQ(tc_recv_msg(c, 10000, &r), 1);
    if (r.type == SS_FRAME_ERROR)
        SS_TEST_FAIL("HELLO refused: %s %s", ss_err_name(r.u.error.code), r.u.error.message);
    ASSERT_EQ(r.type, SS_FRAME_WELCOME);
    *w = r.u.welcome;
}

uint64_t tc_welcome_seq(const ss_welcome *w, const char *origin)
{
    for (int i = 0; i < w->ncommitted; i++)
        if (strcmp(w->committed[i].origin, origin) == 0)
            return w->committed[i].seq;
    SS_TEST_FAIL("origin %s not in WELCOME", origin);
    return 0;
}

void tc_change_status(ss_change *ch, uint64_t seq, ss_hlc_t hlc, const char *site, const char *note,
                      const char *alert)
{
    memset(ch, 0, sizeof *ch);
    ch->seq = seq;
    ch->hlc = hlc;
    ch->coll = ss_schema_collection("site_status", 11);
    ASSERT(ch->coll != NULL);
    snprintf(ch->key, sizeof ch->key, "%s", site);
    snprintf(ch->site, sizeof ch->site, "%s", site);
    ch->op = SS_OP_UPDATE;
    ss_verr err;
    ASSERT_EQ(ss_change_set_text(ch, "note", note, &err), 0);
    if (alert)
        ASSERT_EQ(ss_change_set_text(ch, "alert_level", alert, &err), 0);
}

uint8_t *tc_envelope(const char *origin, const ss_change *chs, uint32_t n, size_t *len)
{
    size_t cap = 64 + (size_t)n * 2048;
    char *body = malloc(cap);
    ASSERT(body != NULL);
    size_t pos = 0;
    body[pos++] = '[';
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            body[pos++] = ',';
        int w = ss_change_encode(&chs[i], body + pos, cap - pos);
        ASSERT_GT(w, 0);
        pos += (size_t)w;
    }
    body[pos++] = ']';
    size_t hl = ss_envelope_header_len(origin);
    uint8_t *out = malloc(hl + pos);
    ASSERT(out != NULL);
    ASSERT_EQ(ss_envelope_write_header(out, hl, origin, chs[0].seq, n, (uint32_t)pos, 0), (int)hl);
    memcpy(out + hl, body, pos);
    free(body);
    *len = hl + pos;
    return out;
}

void tc_send_batch(tc_client *c, const char *origin, const char *site, uint64_t first_seq,
                   uint32_t n, const char *tag, ss_hlc_t hlc0)
{
    ss_change *chs = calloc(n, sizeof *chs);
    char(*notes)[64] = calloc(n, 64);
    ASSERT(chs && notes);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(notes[i], 64, "%s-%llu", tag, (unsigned long long)(first_seq + i));
        tc_change_status(&chs[i], first_seq + i, hlc0 + i, site, notes[i], NULL);
    }
    size_t len;
    uint8_t *env = tc_envelope(origin, chs, n, &len);
    ASSERT_EQ(tc_send_frame(c, SS_FRAME_BATCH, env, len), 0);
    free(env);
    free(chs);
    free(notes);
}

uint64_t tc_wait_ack(tc_client *c, const char *origin, uint64_t seq, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    uint64_t got = 0;
    while (got < seq) {
        int64_t left = deadline - tc_now_ms();
        ss_msg m;
        if (left <= 0 || tc_recv_msg(c, (int)left, &m) != 1)
            SS_TEST_FAIL("no ACK for %s up to %llu (got %llu)", origin, (unsigned long long)seq,
                         (unsigned long long)got);
        if (m.type == SS_FRAME_ERROR)
            SS_TEST_FAIL("ERROR %s: %s", ss_err_name(m.u.error.code), m.u.error.message);
        if (m.type == SS_FRAME_ACK)
            for (int i = 0; i < m.u.ack.nacks; i++)
                if (strcmp(m.u.ack.acks[i].origin, origin) == 0 && m.u.ack.acks[i].seq > got)
                    got = m.u.ack.acks[i].seq;
        ss_msg_free(&m);
    }
    return got;
}

int64_t tc_sql_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    ASSERT_EQ(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        SS_TEST_FAIL("sql %s: %s", sql, sqlite3_errmsg(h));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

const char *tc_sql_text(const char *db, const char *sql, char *buf, size_t cap)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    buf[0] = '\0';
    ASSERT_EQ(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        SS_TEST_FAIL("sql %s: %s", sql, sqlite3_errmsg(h));
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return buf;
}

const char *tc_record_doc(const char *db, const char *key, char *buf, size_t cap)
{
    sd_store_config sc = { .path = db, .readonly = 1, .busy_timeout_ms = 5000 };
    sd_store *st = NULL;
    char err[256];
    sqlite3_stmt *q = NULL;
    buf[0] = '\0';
    if (sd_store_open(&sc, &st, err, sizeof err) != 0)
        SS_TEST_FAIL("open %s: %s", db, err);
    sqlite3 *h = sd_store_handle(st);
    ASSERT_EQ(sqlite3_prepare_v2(h,
                                 "SELECT sd_doc(collection, state) FROM records WHERE "
                                 "collection = 'site_status' AND key = ?1",
                                 -1, &q, NULL),
              SQLITE_OK);
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sd_store_close(st);
    return buf;
}

/* The server closes: no more frames, EOF within timeout_ms. */
void tc_expect_closed(tc_client *c, int timeout_ms)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        int type;
        uint8_t *p;
        uint32_t len;
        int64_t left = deadline - tc_now_ms();
        if (left <= 0)
            SS_TEST_FAIL("connection still open after %d ms", timeout_ms);
        int r = tc_recv_frame(c, (int)left, &type, &p, &len);
        if (r == 0)
            return;
        if (r < 0)
            SS_TEST_FAIL("connection still open after %d ms", timeout_ms);
        free(p); /* BYE or ERROR before the close is fine */
    }
}
