/* sd_server.c - the listener, live-session set, signals, reload and the
 * graceful shutdown sequence of sitesyncd (see sd/server.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>

#include <openssl/rand.h>

#include "proto/err.h"
#include "sd/sig.h"
#include "sd_net.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

unsigned long long sd_server_raise_fd_limit(const sd_config *cfg, const sd_log *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        SD_WARN(log, "fd_limit", "err=\"getrlimit: %s\"", strerror(errno));
        return 0;
    }
    rlim_t before = rl.rlim_cur;
    /* An unlimited hard limit still cannot be used as a soft one (the
     * kernel caps it at fs.nr_open): ask for a large finite value. */
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1048576 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit nl = { want, rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
            rl.rlim_cur = want;
        else
            SD_WARN(log, "fd_limit", "err=\"setrlimit %llu: %s\"", (unsigned long long)want,
                    strerror(errno));
    }
    unsigned long long soft =
        rl.rlim_cur == RLIM_INFINITY ? ~0ULL : (unsigned long long)rl.rlim_cur;
    unsigned long long hard =
        rl.rlim_max == RLIM_INFINITY ? ~0ULL : (unsigned long long)rl.rlim_max;
    SD_INFO(log, "fd_limit", "soft=%llu was=%llu hard=%llu max_connections=%llu", soft,
            before == RLIM_INFINITY ? ~0ULL : (unsigned long long)before, hard,
            (unsigned long long)cfg->max_connections);
    if (cfg->max_connections + SD_SERVER_FD_RESERVE > soft)
        SD_WARN(log, "fd_limit_low",
                "soft=%llu max_connections=%llu reserve=%d msg=\"connections beyond the file "
                "descriptor limit will fail at accept; raise the hard limit (ulimit -Hn, "
                "LimitNOFILE=) or lower max_connections\"",
                soft, (unsigned long long)cfg->max_connections, SD_SERVER_FD_RESERVE);
    return soft;
}

int sd_server_new(uv_loop_t *loop, const sd_config *cfg, const sd_log *log, sd_writer *writer,
                  sd_server **out, char *err, size_t errcap)
{
    sd_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errcap, "out of memory");
        return SS_ENOMEM;
    }
    s->loop = loop;
    s->cfg = cfg;
    s->log = log;
    s->writer = writer;
    int rc = sd_tls_ctx_new(cfg->ca, cfg->crl, cfg->cert, cfg->key, &s->ctx, err, errcap);
    if (rc != 0)
        goto fail;
    ss_ident self;
    rc = sd_tls_cert_ident(SSL_CTX_get0_certificate(s->ctx), &self);
    if (rc != 0) {
        snprintf(err, errcap, "cert %s: no sitesync identity", cfg->cert);
        goto fail;
    }
    if (cfg->node[0] && strcmp(cfg->node, self.node) != 0) {
        snprintf(err, errcap, "node: \"%s\" differs from the certificate's node \"%s\"", cfg->node,
                 self.node);
        rc = SS_ECONFIG;
        goto fail;
    }
    snprintf(s->node, sizeof s->node, "%s", self.node);
    sd_store_config sc = { .path = cfg->db,
                           .readonly = 1,
                           .skew_tolerance_ms = (int64_t)cfg->skew_tolerance_ms,
                           .busy_timeout_ms = 5000 };
    char serr[256];
    rc = sd_store_open(&sc, &s->ro, serr, sizeof serr);
    if (rc != 0) {
        snprintf(err, errcap, "db %s (read-only): %s", cfg->db, serr);
        goto fail;
    }
    ss_hlc_init(&s->clock, 0);
    uint64_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) != 1)
        seed = (uint64_t)sd__now_ms() ^ (uint64_t)getpid() << 32; /* still not constant */
    sd__penalty_init(&s->penalty, cfg->bad_handshake_limit, cfg->bad_handshake_window_ms,
                     cfg->bad_handshake_penalty_ms, seed);
    *out = s;
    return 0;
fail:
    SSL_CTX_free(s->ctx);
    free(s);
    return rc;
}

/* Points the verifier at ctx's trust store and keeps its CRL for relays.
 * Both or neither: a relay must never be handed a CRL other than the one
 * the daemon enforces. */
static int adopt_trust(sd_server *s, SSL_CTX *ctx, char *err, size_t errcap)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    uint8_t *der = NULL;
    size_t len = 0;
    int rc = sd_sig_store_crl_der(store, &der, &len);
    if (rc != 0) {
        /* A very long path is cut; the error code says the rest. */
        snprintf(err, errcap, "crl %.300s: cannot encode it for relays (%s)", s->cfg->crl,
                 ss_err_name(rc));
        return rc;
    }
    rc = sd_sig_set_store(s->sig, store);
    if (rc != 0) {
        free(der);
        snprintf(err, errcap, "cannot install the trust store for origin signatures");
        return rc;
    }
    free(s->crl_der);
    s->crl_der = der;
    s->crl_der_len = len;
    return 0;
}

int sd_server_set_sig(sd_server *s, struct sd_sig *sig, char *err, size_t errcap)
{
    s->sig = sig;
    int rc = adopt_trust(s, s->ctx, err, errcap);
    if (rc != 0)
        s->sig = NULL;
    return rc;
}

static void on_accept_timer(uv_timer_t *t);

/* The held connection (see on_connection) once a slot or a victim is there. */
static void take_held(sd_server *s)
{
    if (!s->accept_held || s->draining)
        return;
    uint64_t wait = sd__conn_accept_wait(s);
    if (wait > 0) {
        uv_timer_start(&s->accept_timer, on_accept_timer, wait, 0);
        return;
    }
    s->accept_held = 0;
    uv_timer_stop(&s->accept_timer);
    sd__conn_accept(s); /* uv_accept restarts the listener's watcher */
}

static void on_accept_timer(uv_timer_t *t)
{
    take_held(container_of(t, sd_server, accept_timer));
}

static void on_connection(uv_stream_t *l, int status)
{
    sd_server *s = container_of(l, sd_server, listener);
    if (status < 0) {
        SD_WARN(s->log, "listen_error", "err=%s", uv_strerror(status));
        return;
    }
    /* Full of handshakes younger than their grace: the connection waits in
     * the backlog (libuv stops watching the listener until uv_accept) and
     * the timer, or a slot freed before it (on_check), takes it. */
    uint64_t wait = sd__conn_accept_wait(s);
    if (wait > 0) {
        s->accept_held = 1;
        uv_timer_start(&s->accept_timer, on_accept_timer, wait, 0);
        return;
    }
    sd__conn_accept(s);
}

/* Runs after the poll phase, i.e. after the writer's completions of this
 * loop turn: one ACK per session covers every envelope committed since. */
static void on_check(uv_check_t *h)
{
    sd_server *s = container_of(h, sd_server, flush);
    take_held(s); /* a session closed this turn may have made room */
    while (s->dirty) {
        sd_conn *list = s->dirty;
        s->dirty = NULL;
        while (list) {
            sd_conn *c = list;
            list = sd__conn_dirty_next(c);
            sd__conn_flush(c);
        }
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    sd_server *s = h->data;
    if (signum == SIGHUP) {
        SD_INFO(s->log, "signal", "signal=SIGHUP action=reload");
        sd_server_reload(s);
        return;
    }
    SD_INFO(s->log, "signal", "signal=%s action=drain", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_server_shutdown(s, s->done, s->done_arg);
}

static int write_port_file(const char *path, int port, char *err, size_t errcap)
{
    char tmp[SD_CONFIG_PATH_MAX + 8];
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", port);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errcap, "port_file: path too long");
        return SS_ECONFIG;
    }
    /* Written then renamed, so a reader polling for it never sees half. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errcap, "port_file %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        return SS_EIO;
    }
    return 0;
}

int sd_server_start(sd_server *s, char *err, size_t errcap)
{
    char host[SD_CONFIG_ADDR_MAX];
    int port;
    struct sockaddr_storage sa;
    if (sd_config_parse_addr(s->cfg->listen, host, sizeof host, &port) != 0) {
        snprintf(err, errcap, "listen: bad address \"%s\"", s->cfg->listen);
        return SS_ECONFIG;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0) {
        snprintf(err, errcap, "listen: \"%s\" is not a numeric IPv4 or IPv6 address", host);
        return SS_ECONFIG;
    }
    uv_tcp_init(s->loop, &s->listener);
    uv_check_init(s->loop, &s->flush);
    uv_timer_init(s->loop, &s->drain_timer);
    uv_timer_init(s->loop, &s->accept_timer);
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    uv_signal_init(s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    s->handles_open = 7;
    s->started = 1;
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, SD_LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        snprintf(err, errcap, "listen %s: %s", s->cfg->listen, uv_strerror(rc));
        return SS_EIO;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                            : ((struct sockaddr_in6 *)&sa)->sin6_port);
    uv_check_start(&s->flush, on_check);
    uv_unref((uv_handle_t *)&s->flush); /* it must not keep the loop alive */
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
    if (s->cfg->port_file[0]) {
        rc = write_port_file(s->cfg->port_file, s->port, err, errcap);
        if (rc != 0)
            return rc;
    }
    SD_INFO(s->log, "listening",
            "addr=%s port=%d node=%s max_connections=%llu window=%llu max_frame=%llu", host,
            s->port, s->node, (unsigned long long)s->cfg->max_connections,
            (unsigned long long)s->cfg->window, (unsigned long long)s->cfg->max_frame);
    return 0;
}

int sd_server_port(const sd_server *s)
{
    return s->port;
}

size_t sd_server_connections(const sd_server *s)
{
    return s->nconns;
}

static void on_server_handle_closed(uv_handle_t *h)
{
    sd_server *s = h->data;
    if (--s->handles_open == 0) {
        SD_INFO(s->log, "stopped", "node=%s", s->node);
        if (s->done)
            s->done(s->done_arg);
    }
}

static void close_server_handle(sd_server *s, uv_handle_t *h)
{
    h->data = s;
    if (!uv_is_closing(h))
        uv_close(h, on_server_handle_closed);
}

static void on_writer_stopped(void *arg)
{
    sd_server *s = arg;
    SD_INFO(s->log, "writer_stopped", "node=%s", s->node);
    s->closed_handles = 1;
    close_server_handle(s, (uv_handle_t *)&s->flush);
    close_server_handle(s, (uv_handle_t *)&s->drain_timer);
    close_server_handle(s, (uv_handle_t *)&s->accept_timer);
    close_server_handle(s, (uv_handle_t *)&s->sig_term);
    close_server_handle(s, (uv_handle_t *)&s->sig_int);
    close_server_handle(s, (uv_handle_t *)&s->sig_hup);
}

/* The last step of a drain: every session is gone, so every job the
 * sessions queued has completed; the writer can stop. */
static void maybe_stop_writer(sd_server *s)
{
    if (!s->draining || s->nconns > 0 || s->writer_stopping)
        return;
    s->writer_stopping = 1;
    uv_timer_stop(&s->drain_timer);
    SD_INFO(s->log, "drained", "node=%s", s->node);
    sd_writer_stop(s->writer, on_writer_stopped, s);
}

void sd__server_conn_gone(sd_server *s)
{
    maybe_stop_writer(s);
}

static void on_drain_deadline(uv_timer_t *t)
{
    sd_server *s = container_of(t, sd_server, drain_timer);
    SD_WARN(s->log, "drain_timeout", "sessions=%zu", s->nconns);
    for (sd_conn *c = s->conns; c; c = sd__conn_next(c))
        sd__conn_abort(c, "drain_timeout");
}

void sd_server_shutdown(sd_server *s, void (*done)(void *arg), void *arg)
{
    s->done = done;
    s->done_arg = arg;
    if (s->draining)
        return;
    s->draining = 1;
    if (!s->started) {
        if (done)
            done(arg);
        return;
    }
    SD_INFO(s->log, "draining", "sessions=%zu writer_pending=%zu", s->nconns,
            sd_writer_pending(s->writer));
    close_server_handle(s, (uv_handle_t *)&s->listener); /* and a held connection */
    uv_timer_stop(&s->accept_timer);
    s->accept_held = 0;
    uv_timer_start(&s->drain_timer, on_drain_deadline, s->cfg->drain_timeout_ms, 0);
    /* sd__conn_drain may free nothing synchronously (closing is async), so
     * walking the list while draining is safe. */
    for (sd_conn *c = s->conns; c; c = sd__conn_next(c))
        sd__conn_drain(c, "shutdown");
    maybe_stop_writer(s);
}

int sd_server_reload(sd_server *s)
{
    char err[512];
    SSL_CTX *ctx = NULL;
    int rc =
        sd_tls_ctx_new(s->cfg->ca, s->cfg->crl, s->cfg->cert, s->cfg->key, &ctx, err, sizeof err);
    if (rc != 0) {
        char q[600];
        SD_ERROR(s->log, "reload_failed", "err=%s msg=%s", ss_err_name(rc),
                 sd_log_quote(q, sizeof q, err));
        return rc;
    }
    ss_ident self;
    if (sd_tls_cert_ident(SSL_CTX_get0_certificate(ctx), &self) != 0 ||
        strcmp(self.node, s->node) != 0) {
        SD_ERROR(s->log, "reload_failed", "err=config msg=\"new certificate names another node\"");
        SSL_CTX_free(ctx);
        return SS_ECONFIG;
    }
    if (s->sig && adopt_trust(s, ctx, err, sizeof err) != 0) {
        char q[600];
        SD_ERROR(s->log, "reload_failed", "err=crl msg=%s", sd_log_quote(q, sizeof q, err));
        SSL_CTX_free(ctx);
        return SS_ECERT;
    }
    /* Live SSL objects hold their own reference to the old context. */
    SSL_CTX_free(s->ctx);
    s->ctx = ctx;
    SD_INFO(s->log, "reloaded", "sessions=%zu crl_bytes=%zu", s->nconns, s->crl_der_len);
    for (sd_conn *c = s->conns; c; c = sd__conn_next(c))
        sd__conn_recheck(c);
    /* Hubs enforce revocation downstream while the centre is out of reach:
     * every live relay gets the new CRL now, not at its next connect. */
    for (sd_conn *c = s->conns; c; c = sd__conn_next(c))
        sd__conn_send_crl(c);
    return 0;
}

void sd_server_destroy(sd_server *s)
{
    if (!s)
        return;
    sd_store_close(s->ro);
    SSL_CTX_free(s->ctx);
    free(s->crl_der);
    free(s);
}
