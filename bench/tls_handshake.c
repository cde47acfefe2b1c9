/* tls_handshake.c - the client half of handshake_vs_openssl: connects to
 * HOST:PORT N times, each time a full mutual-TLS handshake with a client
 * certificate (no session resumption, no tickets), then a clean close, and
 * prints handshakes per second. The same client measures `openssl s_server`
 * and sitesyncd on the same certificates in one run, so their ratio holds on
 * a noisy machine.
 *
 * Design note: a handshake only counts once the server has accepted it. In
 * TLS 1.3 the client's SSL_connect returns before the server has checked the
 * client certificate, so after the handshake the client sends close_notify
 * and reads until the server closes: a refused certificate then shows up as
 * an alert instead of being counted as a success. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_util.h"

#define MAX_THREADS 256

typedef struct options {
    const char *host, *port, *ca, *cert, *key;
    uint64_t count;
    uint64_t threads;
    uint64_t timeout_ms;
    int tls_version; /* TLS1_2_VERSION or TLS1_3_VERSION */
} options;

typedef struct worker {
    const options *o;
    SSL_CTX *ctx;
    const struct addrinfo *ai;
    uint64_t count;
    uint64_t done, failed;
    uint64_t *lat_ns; /* per successful handshake, for percentiles */
    char first_error[256];
} worker;

static void usage(FILE *f)
{
    fprintf(f, "usage: tls_handshake --host HOST --port PORT --ca CA.pem --cert CERT.pem "
               "--key KEY.pem\n"
               "                     [-n N (default 1000)] [--tls 1.2|1.3 (default 1.2)]\n"
               "                     [--threads T (default 1)] [--timeout-ms MS (default 5000)]\n"
               "Prints: tls_handshakes_per_s=<n> with counts and latency percentiles.\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    /* Every option takes a value (--help exits), hence the step of 2. */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **str = NULL;
        int rc = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--host") == 0) {
            str = &o->host;
        } else if (strcmp(a, "--port") == 0) {
            str = &o->port;
        } else if (strcmp(a, "--ca") == 0) {
            str = &o->ca;
        } else if (strcmp(a, "--cert") == 0) {
            str = &o->cert;
        } else if (strcmp(a, "--key") == 0) {
            str = &o->key;
        } else if (strcmp(a, "-n") == 0) {
            rc = bench_parse_u64(a, v, 1, 10000000, &o->count);
        } else if (strcmp(a, "--threads") == 0) {
            rc = bench_parse_u64(a, v, 1, MAX_THREADS, &o->threads);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            rc = bench_parse_u64(a, v, 1, 600000, &o->timeout_ms);
        } else if (strcmp(a, "--tls") == 0) {
            if (v != NULL && strcmp(v, "1.2") == 0) {
                o->tls_version = TLS1_2_VERSION;
            } else if (v != NULL && strcmp(v, "1.3") == 0) {
                o->tls_version = TLS1_3_VERSION;
            } else {
                fprintf(stderr, "--tls: expected 1.2 or 1.3\n");
                return -1;
            }
        } else {
            fprintf(stderr, "unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0)
            return -1;
        if (str != NULL) {
            if (v == NULL || *v == '\0') {
                fprintf(stderr, "%s: expected a value\n", a);
                return -1;
            }
            *str = v;
        }
    }
    if (o->host == NULL || o->port == NULL || o->ca == NULL || o->cert == NULL || o->key == NULL) {
        fprintf(stderr, "--host, --port, --ca, --cert and --key are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static void ssl_error_text(const char *what, char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    char lib[200];
    if (e != 0)
        ERR_error_string_n(e, lib, sizeof lib);
    else
        snprintf(lib, sizeof lib, "%s", errno != 0 ? strerror(errno) : "connection closed");
    snprintf(buf, cap, "%s: %s", what, lib);
    ERR_clear_error();
}

static SSL_CTX *make_ctx(const options *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    /* Every handshake must be a full one: no session cache, no tickets. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (SSL_CTX_set_min_proto_version(ctx, o->tls_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, o->tls_version) != 1) {
        fprintf(stderr, "tls_handshake: cannot pin the TLS version\n");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        fprintf(stderr, "tls_handshake: cannot load certificate %s\n", o->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tls_handshake: cannot load key %s (or it does not match)\n", o->key);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
        fprintf(stderr, "tls_handshake: cannot load CA %s\n", o->ca);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
}

static int connect_tcp(const options *o, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return -1;
    /* Bound every blocking call in time, so a stuck server fails the run
     * instead of hanging it. */
    struct timeval tv = { .tv_sec = (time_t)(o->timeout_ms / 1000),
                          .tv_usec = (suseconds_t)((o->timeout_ms % 1000) * 1000) };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One full handshake and clean close; 0 when the server accepted it. */
static int one_handshake(worker *w, char *err, size_t errcap)
{
    int ret = -1;
    SSL *ssl = NULL;
    errno = 0;
    int fd = connect_tcp(w->o, w->ai);
    if (fd < 0) {
        snprintf(err, errcap, "connect: %s", strerror(errno));
        return -1;
    }
    ssl = SSL_new(w->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        ssl_error_text("SSL_new", err, errcap);
        goto out;
    }
    /* Check the server's name as a real client does (IP or DNS SAN). */
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, w->o->host) != 1 &&
        X509_VERIFY_PARAM_set1_host(param, w->o->host, 0) != 1) {
        ssl_error_text("set host", err, errcap);
        goto out;
    }
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK)
            snprintf(err, errcap, "SSL_connect: server certificate: %s",
                     X509_verify_cert_error_string(vr));
        else
            ssl_error_text("SSL_connect", err, errcap);
        goto out;
    }
    SSL_shutdown(ssl);
    char buf[256];
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0)
            continue; /* e.g. a server greeting: not our concern */
        int e = SSL_get_error(ssl, n);
        /* A server that closes the TCP connection after our close_notify
         * without answering it (sitesyncd does) shows as an unexpected EOF
         * in OpenSSL 3: no alert, so it accepted us. */
        unsigned long pe = ERR_peek_error();
        if (e == SSL_ERROR_ZERO_RETURN ||
            (e == SSL_ERROR_SYSCALL && pe == 0 && (errno == 0 || errno == ECONNRESET)) ||
            (e == SSL_ERROR_SSL && ERR_GET_REASON(pe) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            ret = 0; /* the server closed after accepting us */
        } else {
            ssl_error_text("after handshake", err, errcap);
        }
        break;
    }
out:
    SSL_free(ssl);
    close(fd);
    return ret;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    char err[256];
    for (uint64_t i = 0; i < w->count; i++) {
        uint64_t t0 = bench_now_ns();
        errno = 0;
        if (one_handshake(w, err, sizeof err) == 0) {
            w->lat_ns[w->done++] = bench_now_ns() - t0;
        } else {
            if (w->failed++ == 0)
                snprintf(w->first_error, sizeof w->first_error, "%s", err);
            /* A server that refuses everything would otherwise make a long
             * run of instant failures look like work. */
            if (w->failed >= 10 && w->done == 0)
                break;
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    options o = { .count = 1000, .threads = 1, .timeout_ms = 5000, .tls_version = TLS1_2_VERSION };
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.threads > o.count)
        o.threads = o.count;

    int ret = 1;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(o.host, o.port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "tls_handshake: %s:%s: %s\n", o.host, o.port, gai_strerror(gai));
        return 1;
    }
    SSL_CTX *ctx = make_ctx(&o);
    worker *ws = calloc(o.threads, sizeof *ws);
    pthread_t *tids = calloc(o.threads, sizeof *tids);
    uint64_t *lat = calloc(o.count, sizeof *lat);
    uint64_t started = 0;
    if (ctx == NULL || ws == NULL || tids == NULL || lat == NULL) {
        fprintf(stderr, "tls_handshake: setup failed\n");
        goto out;
    }

    uint64_t off = 0;
    for (uint64_t t = 0; t < o.threads; t++) {
        worker *w = &ws[t];
        w->o = &o;
        w->ctx = ctx;
        w->ai = ai;
        w->count = o.count / o.threads + (t < o.count % o.threads ? 1 : 0);
        w->lat_ns = lat + off;
        off += w->count;
    }
    uint64_t t0 = bench_now_ns();
    for (; started < o.threads; started++) {
        if (pthread_create(&tids[started], NULL, worker_main, &ws[started]) != 0) {
            fprintf(stderr, "tls_handshake: cannot start thread %llu\n",
                    (unsigned long long)started);
            break;
        }
    }
    for (uint64_t t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    uint64_t elapsed = bench_now_ns() - t0;
    if (started != o.threads)
        goto out;

    uint64_t done = 0, failed = 0;
    for (uint64_t t = 0; t < o.threads; t++) {
        /* Pack the successful latencies together for the percentiles. */
        memmove(lat + done, ws[t].lat_ns, ws[t].done * sizeof *lat);
        done += ws[t].done;
        failed += ws[t].failed;
        if (ws[t].failed > 0)
            fprintf(stderr, "tls_handshake: thread %llu: %llu failed, first: %s\n",
                    (unsigned long long)t, (unsigned long long)ws[t].failed, ws[t].first_error);
    }
    if (done == 0) {
        fprintf(stderr, "tls_handshake: no handshake succeeded\n");
        goto out;
    }
    qsort(lat, done, sizeof *lat, cmp_u64);
    double secs = (double)elapsed / 1e9;
    printf("tls_handshakes_per_s=%.0f handshakes=%llu failed=%llu seconds=%.3f tls=%s "
           "threads=%llu p50_ms=%.3f p99_ms=%.3f\n",
           (double)done / secs, (unsigned long long)done, (unsigned long long)failed, secs,
           o.tls_version == TLS1_3_VERSION ? "1.3" : "1.2", (unsigned long long)o.threads,
           (double)lat[done / 2] / 1e6, (double)lat[(done * 99) / 100] / 1e6);
    ret = failed == 0 ? 0 : 1;
out:
    free(lat);
    free(tids);
    free(ws);
    SSL_CTX_free(ctx);
    freeaddrinfo(ai);
    return ret;
}
