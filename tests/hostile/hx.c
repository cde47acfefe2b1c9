/* hx.c - hostile-peer test helpers: slowloris swarm, timed honest workload,
 * /proc probes and certificate crafting (see hx.h). Tests abort on any
 * unexpected failure. */
#include "hx.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "ss_test.h"

int hx_asan(void)
{
    const char *v = getenv("SITESYNC_ASAN");
    return v && v[0] == '1';
}

int hx_scale(int normal, int asan)
{
    return hx_asan() ? asan : normal;
}

void hx_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

void hx_need_fds(int need)
{
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need)
            SS_TEST_FAIL("this test needs %d file descriptors; the hard limit is %llu (raise it "
                         "with ulimit -Hn)",
                         need, (unsigned long long)rl.rlim_max);
        rl.rlim_cur = (rlim_t)need;
        ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
}

int hx_proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

long hx_proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            char *end;
            kb = strtol(line + 6, &end, 10);
        }
    fclose(f);
    return kb;
}

int hx_wait_fds_at_most(pid_t pid, int target, int timeout_ms)
{
    int n = hx_proc_fds(pid);
    for (int waited = 0; n > target && waited < timeout_ms; waited += 50) {
        hx_sleep_ms(50);
        n = hx_proc_fds(pid);
    }
    return n;
}

size_t hx_client_hello(uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT(ctx != NULL);
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    ASSERT(ssl && rb && wb);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    ASSERT(SSL_do_handshake(ssl) <= 0); /* wants the ServerHello */
    int n = BIO_read(wb, out, (int)cap);
    ASSERT_GT(n, 50);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return (size_t)n;
}

/* ---- slowloris swarm --------------------------------------------------- */

enum { SLOT_IDLE = 0, SLOT_CONNECTING, SLOT_OPEN };

typedef struct slot {
    int fd;
    int state;
    size_t pos;    /* ClientHello bytes sent (trickling sockets) */
    int64_t next;  /* when the next byte is due */
    int64_t retry; /* when an idle slot may reconnect */
} slot;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int swarm_connect(hx_swarm *s, slot *sl)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (s->src) {
        struct sockaddr_in la;
        memset(&la, 0, sizeof la);
        la.sin_family = AF_INET;
        inet_pton(AF_INET, s->src, &la.sin_addr);
        if (bind(fd, (struct sockaddr *)&la, sizeof la) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (r != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    sl->fd = fd;
    sl->state = r == 0 ? SLOT_OPEN : SLOT_CONNECTING;
    sl->pos = 0;
    sl->next = mono_ms() + s->trickle_ms;
    s->connects++;
    if (sl->state == SLOT_OPEN)
        s->established++;
    return 0;
}

static void swarm_drop(hx_swarm *s, slot *sl, int64_t now)
{
    if (sl->state == SLOT_OPEN)
        s->established--;
    close(sl->fd);
    sl->fd = -1;
    sl->state = SLOT_IDLE;
    sl->retry = now + 20; /* a short pause, as a real attacker's loop would have */
}

static void *swarm_main(void *arg)
{
    hx_swarm *s = arg;
    slot *slots = calloc((size_t)s->n, sizeof *slots);
    struct pollfd *pfd = calloc((size_t)s->n, sizeof *pfd);
    ASSERT(slots && pfd);
    long reconnects = 0;
    for (int i = 0; i < s->n; i++)
        slots[i].fd = -1;
    int next_new = 0; /* sockets started so far in the first wave */
    int64_t start = mono_ms();
    while (!s->stop) {
        int64_t now = mono_ms();
        int64_t due = s->spread_ms > 0 ? (now - start) * s->n / s->spread_ms + 1 : s->n;
        if (s->track) {
            if (s->held_turns == 0 || s->established < s->min_held)
                s->min_held = s->established;
            s->held_sum += s->established;
            s->held_turns++;
        }
        /* The first wave, at its pace (and at most 64 per turn so that the
         * listen backlog keeps up); then replacements. */
        for (int k = 0; k < 64 && next_new < s->n && next_new < due; k++, next_new++)
            if (swarm_connect(s, &slots[next_new]) != 0)
                s->connect_failed++;
        for (int i = 0; i < next_new; i++) {
            slot *sl = &slots[i];
            if (sl->state != SLOT_IDLE || now < sl->retry || reconnects >= s->max_reconnects)
                continue;
            reconnects++;
            if (swarm_connect(s, sl) != 0) {
                s->connect_failed++;
                sl->retry = now + 100;
            }
        }
        /* Trickle: one byte of the ClientHello per interval. */
        for (int i = 1; i < next_new; i += 2) {
            slot *sl = &slots[i];
            if (sl->state != SLOT_OPEN || now < sl->next || sl->pos >= s->hello_len)
                continue;
            ssize_t w = send(sl->fd, s->hello + sl->pos, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w == 1) {
                sl->pos++;
                s->bytes_sent++;
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                s->cut++;
                swarm_drop(s, sl, now);
                continue;
            }
            sl->next = now + s->trickle_ms;
        }
        int np = 0;
        for (int i = 0; i < next_new; i++) {
            if (slots[i].state == SLOT_IDLE)
                continue;
            pfd[np].fd = slots[i].fd;
            pfd[np].events = slots[i].state == SLOT_CONNECTING ? POLLOUT : POLLIN;
            pfd[np].revents = 0;
            np++;
        }
        if (poll(pfd, (nfds_t)np, 10) <= 0)
            continue;
        /* pfd follows the slot order, skipping idle slots. */
        now = mono_ms();
        int j = 0;
        for (int i = 0; i < next_new && j < np; i++) {
            slot *sl = &slots[i];
            if (sl->state == SLOT_IDLE)
                continue;
            short re = pfd[j++].revents;
            if (!re)
                continue;
            if (sl->state == SLOT_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    s->connect_failed++;
                    swarm_drop(s, sl, now);
                } else {
                    sl->state = SLOT_OPEN;
                    s->established++;
                }
                continue;
            }
            char buf[4096];
            ssize_t r = recv(sl->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                s->cut++; /* the daemon's deadline: replace the socket */
                swarm_drop(s, sl, now);
            }
        }
    }
    for (int i = 0; i < s->n; i++)
        if (slots[i].state != SLOT_IDLE)
            close(slots[i].fd);
    s->established = 0;
    free(slots);
    free(pfd);
    return NULL;
}

void hx_swarm_start(hx_swarm *s, int port, int n, int trickle_ms, int spread_ms, const char *src)
{
    memset(s, 0, sizeof *s);
    s->port = port;
    s->n = n;
    s->trickle_ms = trickle_ms;
    s->spread_ms = spread_ms;
    s->src = src;
    /* A bound, not a pace: against a full daemon that evicts, the swarm's
     * own reconnects evict each other and churn fast. */
    s->max_reconnects = 100 * n;
    s->hello_len = hx_client_hello(s->hello, sizeof s->hello);
    ASSERT_EQ(pthread_create(&s->thread, NULL, swarm_main, s), 0);
}

int hx_swarm_wait(hx_swarm *s, int want, int timeout_ms)
{
    for (int waited = 0; s->established < want && waited < timeout_ms; waited += 20)
        hx_sleep_ms(20);
    return s->established;
}

double hx_swarm_mean_held(const hx_swarm *s)
{
    return s->held_turns ? s->held_sum / (double)s->held_turns : 0.0;
}

void hx_swarm_stop(hx_swarm *s)
{
    s->stop = 1;
    pthread_join(s->thread, NULL);
}

/* ---- honest workload --------------------------------------------------- */

void hx_issue_honest(tc_env *e, int clients)
{
    for (int i = 0; i < clients; i++) {
        char node[32], site[32];
        snprintf(node, sizeof node, "gw%d", i);
        snprintf(site, sizeof site, "s%d", i);
        tc_issue(e, "gateway", node, site);
    }
}

typedef struct worker {
    tc_env *e;
    int port;
    const hx_workload *w;
    int idx;
    double *ms; /* w->sessions entries */
} worker;

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void *worker_main(void *arg)
{
    worker *k = arg;
    char node[32], site[32];
    snprintf(node, sizeof node, "gw%d", k->idx);
    snprintf(site, sizeof site, "s%d", k->idx);
    for (int s = 0; s < k->w->sessions; s++) {
        double t0 = now_ms_f();
        tc_client c;
        ss_welcome wel;
        if (tc_connect(&c, k->e, k->port, node, NULL) != 0) {
            /* How far it got, for the next reader of a CI log: no socket
             * (connect failed), or the TLS state and errno where it broke. */
            int err = errno;
            SS_TEST_FAIL("honest %s session %d: TLS handshake failed after %.0f ms (%s, tls "
                         "state %s, errno %s)",
                         node, s, now_ms_f() - t0, c.fd < 0 ? "no socket" : "socket open",
                         c.ssl ? SSL_state_string_long(c.ssl) : "-", strerror(err));
        }
        tc_hello(&c, "gateway", NULL, &wel);
        uint64_t seq = tc_welcome_seq(&wel, node) + 1;
        free(wel.committed);
        for (int b = 0; b < k->w->batches; b++) {
            tc_send_batch(&c, node, site, seq, (uint32_t)k->w->changes, "h", tc_hlc_now());
            seq += (uint64_t)k->w->changes;
        }
        tc_wait_ack(&c, node, seq - 1, 30000);
        k->ms[s] = now_ms_f() - t0;
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_BYE;
        tc_send_msg(&c, &m);
        tc_close(&c);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double hx_percentile(const double *sorted, int n, double p)
{
    if (n <= 0)
        return 0;
    int rank = (int)(p / 100.0 * n + 0.999999); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void hx_run_workload(tc_env *e, int port, const hx_workload *w, hx_result *r)
{
    memset(r, 0, sizeof *r);
    r->n = w->clients * w->sessions;
    r->ms = calloc((size_t)r->n, sizeof *r->ms);
    worker *ks = calloc((size_t)w->clients, sizeof *ks);
    pthread_t *th = calloc((size_t)w->clients, sizeof *th);
    ASSERT(r->ms && ks && th);
    double t0 = now_ms_f();
    for (int i = 0; i < w->clients; i++) {
        ks[i] = (worker){ e, port, w, i, r->ms + (size_t)i * (size_t)w->sessions };
        ASSERT_EQ(pthread_create(&th[i], NULL, worker_main, &ks[i]), 0);
    }
    for (int i = 0; i < w->clients; i++)
        pthread_join(th[i], NULL);
    r->wall_ms = now_ms_f() - t0;
    qsort(r->ms, (size_t)r->n, sizeof *r->ms, cmp_double);
    r->p50 = hx_percentile(r->ms, r->n, 50);
    r->p99 = hx_percentile(r->ms, r->n, 99);
    r->max = r->ms[r->n - 1];
    free(ks);
    free(th);
}

void hx_result_free(hx_result *r)
{
    free(r->ms);
    r->ms = NULL;
}

/* ---- protocol helpers -------------------------------------------------- */

void hx_session(tc_env *e, int port, tc_client *c, const char *node)
{
    ss_welcome w;
    ASSERT_EQ(tc_connect(c, e, port, node, NULL), 0);
    tc_hello(c, "gateway", NULL, &w);
    free(w.committed);
}

int hx_recv_error(tc_client *c, int timeout_ms, ss_msg *m)
{
    int64_t deadline = tc_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - tc_now_ms();
        if (left <= 0)
            return -1;
        int r = tc_recv_msg(c, (int)left, m);
        if (r != 1)
            return r;
        if (m->type == SS_FRAME_ERROR)
            return 1;
        ss_msg_free(m);
    }
}

void hx_expect_error(tc_client *c, int code)
{
    ss_msg m;
    int r = hx_recv_error(c, 10000, &m);
    if (r != 1)
        SS_TEST_FAIL("expected ERROR %s, connection gave %d", ss_err_name(code), r);
    if (m.u.error.code != code)
        SS_TEST_FAIL("expected ERROR %s, got %s: %s", ss_err_name(code),
                     ss_err_name(m.u.error.code), m.u.error.message);
    ss_msg_free(&m);
    tc_expect_closed(c, 5000);
}

void hx_bystander_batch(tc_client *c, const char *node, const char *site, uint64_t *next_seq,
                        uint32_t n)
{
    tc_send_batch(c, node, site, *next_seq, n, "by", tc_hlc_now());
    *next_seq += n;
    tc_wait_ack(c, node, *next_seq - 1, 10000);
}

/* ---- certificates ------------------------------------------------------ */

static void write_pem(const char *path, int is_key, void *obj)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    if (is_key)
        ASSERT_EQ(PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL), 1);
    else
        ASSERT_EQ(PEM_write_X509(f, obj), 1);
    ASSERT_EQ(fclose(f), 0);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ASSERT(ex != NULL);
    ASSERT_EQ(X509_add_ext(x, ex, -1), 1);
    X509_EXTENSION_free(ex);
}

void hx_make_cert(const tc_env *e, const char *name, const char *ca_dir, const char *node,
                  const char *site, hx_eku eku)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    ASSERT(key != NULL);
    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    if (ca_dir) {
        char p[400];
        snprintf(p, sizeof p, "%s/ca.crt", ca_dir);
        FILE *f = fopen(p, "r");
        ASSERT(f != NULL);
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        snprintf(p, sizeof p, "%s/private/ca.key", ca_dir);
        f = fopen(p, "r");
        ASSERT(f != NULL);
        cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        ASSERT(ca && cakey);
    }
    X509 *x = X509_new();
    ASSERT(x != NULL);
    ASSERT_EQ(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(tc_now_ms() & 0x7fffffff));
    X509_NAME *nm = X509_get_subject_name(x);
    ASSERT_EQ(
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)node, -1, -1, 0),
        1);
    ASSERT_EQ(X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : nm), 1);
    ASSERT(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL);
    ASSERT(X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400) != NULL);
    ASSERT_EQ(X509_set_pubkey(x, key), 1);
    X509 *issuer = ca ? ca : x;
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
    if (eku == HX_EKU_SERVER)
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
    else if (eku == HX_EKU_CLIENT)
        add_ext(x, issuer, NID_ext_key_usage, "clientAuth");
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (ca)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    char san[300];
    snprintf(san, sizeof san,
             "URI:urn:sitesync:node:%s,URI:urn:sitesync:role:gateway,URI:urn:sitesync:site:%s",
             node, site);
    add_ext(x, issuer, NID_subject_alt_name, san);
    ASSERT_GT(X509_sign(x, ca ? cakey : key, EVP_sha256()), 0);
    char path[300], file[128];
    snprintf(file, sizeof file, "%s.crt", name);
    write_pem(tc_path(e, file, path, sizeof path), 0, x);
    snprintf(file, sizeof file, "%s.key", name);
    write_pem(tc_path(e, file, path, sizeof path), 1, key);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(key);
}

int hx_have_program(const char *name)
{
    const char *path = getenv("PATH");
    char buf[1024];
    if (!path)
        path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && len + strlen(name) + 2 < sizeof buf) {
            memcpy(buf, p, len);
            buf[len] = '/';
            memcpy(buf + len + 1, name, strlen(name) + 1);
            if (access(buf, X_OK) == 0)
                return 1;
        }
        p += len;
        if (*p == ':')
            p++;
    }
    return 0;
}

int hx_run_faketime(const char *offset, char *const argv[], const char *out_file)
{
    char *args[64];
    int n = 0;
    args[n++] = "faketime";
    args[n++] = "-f";
    args[n++] = (char *)offset;
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out_file ? out_file : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* libfaketime is preloaded ahead of the sanitizer runtime. */
        setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
        execvp("faketime", args);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- pieces shared by the daemon's and the hub's suites ------------------ */

void hx_print_result(const char *what, int width, const hx_result *r)
{
    printf("%-*s sessions=%d p50=%.1f ms p99=%.1f ms max=%.1f ms wall=%.0f ms\n", width, what, r->n,
           r->p50, r->p99, r->max, r->wall_ms);
    fflush(stdout);
}

void *hx_flood_main(void *arg)
{
    hx_flood *f = arg;
    int64_t t0 = tc_now_ms();
    for (long i = 0; i < f->max && tc_now_ms() - t0 < f->ms && !*f->stop; i++) {
        /* Paced at f->rate connects a second: the same attack whatever the
         * machine's speed (unpaced, a flooder on a starved machine fills
         * the listen backlog however large, and the test would measure
         * the kernel's SYN retransmission timer). */
        int64_t due = t0 + i * 1000 / f->rate;
        if (tc_now_ms() < due)
            hx_sleep_ms((int)(due - tc_now_ms()));
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT(fd >= 0);
        if (f->src) {
            struct sockaddr_in la;
            memset(&la, 0, sizeof la);
            la.sin_family = AF_INET;
            inet_pton(AF_INET, f->src, &la.sin_addr);
            ASSERT_EQ(bind(fd, (struct sockaddr *)&la, sizeof la), 0);
        }
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)f->port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            f->failed++;
            close(fd);
            continue;
        }
        f->connects++;
        if (f->garbage) {
            if (i % 2)
                send(fd, "\x16\x03\x01\xff\xff garbage", 14, MSG_NOSIGNAL);
            else
                send(fd, f->hello, f->hello_len / 2, MSG_NOSIGNAL);
        }
        /* Mostly resets (no TIME_WAIT left behind on this side), one in
         * four an orderly close. */
        if (i % 4 != 3) {
            struct linger lg = { 1, 0 };
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
    }
    f->took = tc_now_ms() - t0;
    return NULL;
}

/* A gateway HELLO for node, as the honest client sends it. */
static void hello_msg(ss_msg *m, const char *node)
{
    memset(m, 0, sizeof *m);
    m->type = SS_FRAME_HELLO;
    m->u.hello.proto = SS_PROTO_VERSION;
    snprintf(m->u.hello.node, sizeof m->u.hello.node, "%s", node);
    m->u.hello.role = SS_ROLE_GATEWAY;
    m->u.hello.max_frame = 65536;
}

void hx_send_hello(tc_client *c, const char *node)
{
    ss_msg m;
    hello_msg(&m, node);
    tc_send_msg(c, &m); /* may fail: the server may have closed already */
}

int hx_try_session(tc_env *e, int port, const char *node, tc_tls_opts *o)
{
    tc_client c;
    int ok = 0;
    if (tc_connect(&c, e, port, node, o) == 0) {
        ss_msg m;
        hello_msg(&m, node);
        if (tc_send_msg(&c, &m) == 0 && tc_recv_msg(&c, 5000, &m) == 1) {
            ok = m.type == SS_FRAME_WELCOME;
            ss_msg_free(&m);
        }
    }
    tc_close(&c);
    return ok;
}

int hx_send_status_batch(tc_client *c, uint64_t seq)
{
    ss_change ch[4];
    char note[4][32];
    for (int i = 0; i < 4; i++) {
        snprintf(note[i], sizeof note[i], "nr-%llu", (unsigned long long)(seq + (uint64_t)i));
        tc_change_status(&ch[i], seq + (uint64_t)i, tc_hlc_now() + (uint64_t)i, "s1", note[i],
                         NULL);
    }
    size_t el;
    uint8_t *env = tc_envelope("gw1", ch, 4, &el);
    int r = tc_send_frame(c, SS_FRAME_BATCH, env, el);
    free(env);
    return r;
}

size_t hx_ping_burst(ss_msg *m, uint8_t *burst, size_t cap)
{
    uint8_t frame[128];
    size_t bl = 0;
    for (int i = 0; i < 64; i++) {
        m->u.ping.nonce++;
        int n = ss_msg_encode_frame(m, frame, sizeof frame);
        ASSERT_GT(n, 0);
        ASSERT(bl + (size_t)n <= cap);
        memcpy(burst + bl, frame, (size_t)n);
        bl += (size_t)n;
    }
    return bl;
}

uint8_t *hx_batch_of(const char *body, size_t *len)
{
    size_t bl = strlen(body);
    size_t hl = ss_envelope_header_len("gw1");
    uint8_t *env = malloc(hl + bl);
    ASSERT(env != NULL);
    ASSERT_EQ(ss_envelope_write_header(env, hl, "gw1", 1, 1, (uint32_t)bl, 0), (int)hl);
    memcpy(env + hl, body, bl);
    *len = hl + bl;
    return env;
}

char *hx_change_with(const char *fields)
{
    size_t cap = strlen(fields) + 512;
    char *s = malloc(cap);
    ASSERT(s != NULL);
    char hlc[17];
    snprintf(hlc, sizeof hlc, "%016llx", (unsigned long long)tc_hlc_now());
    snprintf(s, cap,
             "[{\"seq\":1,\"hlc\":\"%s\",\"collection\":\"site_status\",\"key\":\"s1\","
             "\"site\":\"s1\",\"op\":\"update\",\"fields\":%s}]",
             hlc, fields);
    return s;
}

char *hx_deep(size_t depth, int objects)
{
    /* [[[...]]] or {"a":{"a":...1...}} */
    size_t cap = depth * 6 + 8;
    char *s = malloc(cap);
    ASSERT(s != NULL);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) {
        if (objects) {
            memcpy(s + n, "{\"a\":", 5);
            n += 5;
        } else {
            s[n++] = '[';
        }
    }
    s[n++] = '1';
    for (size_t i = 0; i < depth; i++)
        s[n++] = objects ? '}' : ']';
    s[n] = '\0';
    return s;
}

int hx_sample_frame(int type, uint8_t *buf, size_t cap)
{
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    ss_oseq os = { "gw1", 0 };
    switch (type) {
    case SS_FRAME_HELLO:
        m.u.hello.proto = SS_PROTO_VERSION;
        snprintf(m.u.hello.node, sizeof m.u.hello.node, "gw1");
        m.u.hello.role = SS_ROLE_GATEWAY;
        m.u.hello.max_frame = 65536;
        snprintf(m.u.hello.software, sizeof m.u.hello.software, "hostile 1");
        break;
    case SS_FRAME_WELCOME:
        m.u.welcome.proto = SS_PROTO_VERSION;
        snprintf(m.u.welcome.node, sizeof m.u.welcome.node, "central");
        m.u.welcome.time = tc_hlc_now();
        m.u.welcome.max_frame = 65536;
        m.u.welcome.window = 8;
        m.u.welcome.ncommitted = 1;
        m.u.welcome.committed = &os;
        break;
    case SS_FRAME_ACK:
        os.seq = 3;
        m.u.ack.nacks = 1;
        m.u.ack.acks = &os;
        break;
    case SS_FRAME_ERROR:
        m.u.error.code = SS_EPROTO;
        snprintf(m.u.error.message, sizeof m.u.error.message, "client trouble");
        break;
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
        m.u.ping.nonce = 123456;
        break;
    default:
        snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "leaving");
        break;
    }
    return ss_msg_encode_frame(&m, buf, cap);
}

/* ---- TLS profile ---------------------------------------------------------- */

int hx_allowed_cipher(const char *proto, const char *name)
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

unsigned hx_compression_probe(int port, const char *who, unsigned *suite)
{
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
    ASSERT_EQ(ch[0], 0x16); /* handshake record */
    ASSERT_EQ(ch[5], 0x01); /* ClientHello */
    size_t pos = 9 + 2 + 32;
    pos += 1 + ch[pos];                              /* session id */
    pos += 2 + ((size_t)ch[pos] << 8 | ch[pos + 1]); /* cipher suites */
    ASSERT_EQ(ch[pos], 1);                           /* one method: null */
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
    int fd = tc_tcp_connect(port);
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
        SS_TEST_FAIL("the %s refused the ClientHello with alert %d", who, sh[6]);
    ASSERT_EQ(sh[0], 0x16);
    ASSERT_EQ(sh[5], 0x02); /* ServerHello */
    size_t p = 9;
    ASSERT_EQ(sh[p], 3);
    ASSERT_EQ(sh[p + 1], 3); /* TLS 1.2 */
    p += 2 + 32;
    p += 1 + sh[p]; /* session id */
    *suite = (unsigned)sh[p] << 8 | sh[p + 1];
    p += 2;
    return sh[p];
}

void hx_times_pki(tc_env *e, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/sitesync-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    ASSERT(mkdtemp(e->dir) != NULL);
    char pki[300], log[300], old[300], fut[300];
    tc_path(e, "pki", pki, sizeof pki);
    tc_path(e, "pki.log", log, sizeof log);
    tc_path(e, "expired", old, sizeof old);
    tc_path(e, "future", fut, sizeof fut);
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
}
