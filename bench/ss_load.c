/* ss_load.c - a load client for sitesyncd: many gateway identities (minted
 * in memory from the run's CA), mutual TLS with OpenSSL, the real protocol
 * (HELLO, WELCOME, pipelined BATCH envelopes up to the window, ACK, BYE),
 * every envelope signed by its origin as proto/relay.h describes, all in one
 * epoll loop so a thousand or more sessions fit on two cores.
 *
 * Modes:
 *   merge  G gateways, E envelopes of C changes each, all sessions welcomed
 *          first; the clock runs from the first BATCH sent to the last ACK
 *          (an ACK means durable). Prints sitesyncd_merge_rows_per_s.
 *   fanin  the same shape with many gateways: all connect and get WELCOME
 *          (so every session is open at once), then all send together; per
 *          gateway sync time runs from that release to its last ACK.
 *   idle   G sessions that stop after WELCOME and stay open; prints
 *          "ready sessions=G" once all are welcomed, then holds them until
 *          SIGTERM or --hold-ms.
 *   mint   writes DIR/<node>.crt and .key for G gateways (for sitesync-gw).
 * Envelopes are built and signed before any timing starts, so the client is
 * not what is measured. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_util.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/relay.h"
#include "proto/schema.h"

enum mode { M_MERGE = 1, M_FANIN, M_IDLE, M_MINT };

typedef struct options {
    int mode;
    uint64_t port;
    const char *ca_dir; /* sitesync-pki CA dir: ca.crt, private/ca.key */
    const char *out_dir;
    const char *prefix;
    uint64_t gateways, envelopes, changes, payload, concurrency, window, timeout_ms, hold_ms;
    uint64_t first_index;
    int unsigned_envs;
} options;

/* One minted gateway identity. */
typedef struct gwid {
    char node[SS_ID_MAX + 1];
    char site[SS_ID_MAX + 1];
    EVP_PKEY *key;
    X509 *crt;
    uint8_t *der;
    int der_len;
} gwid;

enum cstate { S_IDLE0, S_CONNECT, S_TLS, S_HELLO, S_READY, S_STREAM, S_CLOSING, S_DONE, S_FAIL };

typedef struct conn {
    gwid *id;
    int fd;
    SSL *ssl;
    int state;
    uint32_t events; /* epoll interest */
    int want_out;
    ss_fdec dec;
    /* the envelopes to send, each a whole BATCH frame */
    uint8_t **frames;
    size_t *frame_len;
    uint64_t *frame_last; /* last seq in each */
    uint32_t nframes, next, acked_idx, inflight, window;
    uint64_t last_seq, acked;
    /* the bytes being written */
    const uint8_t *out;
    size_t out_len, out_pos;
    uint8_t ctrl[512];
    int ctrl_pending; /* a control frame (HELLO/BYE) is queued in ctrl */
    int bye_sent;     /* our BYE is written: waiting for the daemon to close */
    size_t ctrl_len;
    uint64_t t_start, t_done;
    uint64_t rejects;
} conn;

typedef struct loop {
    const options *o;
    int ep;
    SSL_CTX *ctx;
    conn *conns;
    uint32_t nconns, started, handshaking, welcomed, done, failed, closed_early;
    int released;
    uint64_t t_begin, t_release, t_first_send, t_last_ack;
    uint64_t rejects;
    char first_error[400];
} loop;

static volatile sig_atomic_t stop_flag; /* set by SIGTERM/SIGINT */

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ss_load MODE --ca-dir DIR [options]\n"
               "  MODE: merge | fanin | idle | mint\n"
               "  --ca-dir DIR       sitesync-pki CA directory (ca.crt, private/ca.key)\n"
               "  --port P           sitesyncd on 127.0.0.1:P (not for mint)\n"
               "  --gateways G       gateway identities / sessions (default 10)\n"
               "  --envelopes E      envelopes per gateway (default 100)\n"
               "  --changes C        changes per envelope (default 100)\n"
               "  --payload B        bytes of fields JSON per change (default 400)\n"
               "  --window W         envelopes in flight per session, at most (default: "
               "WELCOME's)\n"
               "  --concurrency K    handshakes in progress at once (default 64)\n"
               "  --timeout-ms MS    give up after this long (default 300000)\n"
               "  --hold-ms MS       idle: hold the sessions this long (default 600000)\n"
               "  --prefix P         node ids P00000.. (default gw-); sites site-00000..\n"
               "  --first N          index of the first identity (default 0)\n"
               "  --out DIR          mint: where to write <node>.crt/.key\n"
               "  --unsigned         do not sign envelopes\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    const char *m = argv[1];
    if (strcmp(m, "merge") == 0)
        o->mode = M_MERGE;
    else if (strcmp(m, "fanin") == 0)
        o->mode = M_FANIN;
    else if (strcmp(m, "idle") == 0)
        o->mode = M_IDLE;
    else if (strcmp(m, "mint") == 0)
        o->mode = M_MINT;
    else if (strcmp(m, "--help") == 0 || strcmp(m, "-h") == 0) {
        usage(stdout);
        exit(0);
    } else {
        fprintf(stderr, "ss_load: unknown mode %s\n", m);
        usage(stderr);
        return -1;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--unsigned") == 0) {
            o->unsigned_envs = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ss_load: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "--ca-dir") == 0)
            o->ca_dir = v;
        else if (strcmp(a, "--out") == 0)
            o->out_dir = v;
        else if (strcmp(a, "--prefix") == 0)
            o->prefix = v;
        else if (strcmp(a, "--port") == 0)
            rc = bench_parse_u64(a, v, 1, 65535, &o->port);
        else if (strcmp(a, "--gateways") == 0)
            rc = bench_parse_u64(a, v, 1, 100000, &o->gateways);
        else if (strcmp(a, "--envelopes") == 0)
            rc = bench_parse_u64(a, v, 0, 1000000, &o->envelopes);
        else if (strcmp(a, "--changes") == 0)
            rc = bench_parse_u64(a, v, 1, SS_ENV_MAX_COUNT, &o->changes);
        else if (strcmp(a, "--payload") == 0)
            rc = bench_parse_u64(a, v, 200, 4000, &o->payload);
        else if (strcmp(a, "--window") == 0)
            rc = bench_parse_u64(a, v, 1, SS_MSG_MAX_WINDOW, &o->window);
        else if (strcmp(a, "--concurrency") == 0)
            rc = bench_parse_u64(a, v, 1, 100000, &o->concurrency);
        else if (strcmp(a, "--timeout-ms") == 0)
            rc = bench_parse_u64(a, v, 100, 86400000, &o->timeout_ms);
        else if (strcmp(a, "--hold-ms") == 0)
            rc = bench_parse_u64(a, v, 0, 86400000, &o->hold_ms);
        else if (strcmp(a, "--first") == 0)
            rc = bench_parse_u64(a, v, 0, 10000000, &o->first_index);
        else {
            fprintf(stderr, "ss_load: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (o->ca_dir == NULL) {
        fprintf(stderr, "ss_load: --ca-dir is required\n");
        return -1;
    }
    if (o->mode == M_MINT && o->out_dir == NULL) {
        fprintf(stderr, "ss_load: mint needs --out DIR\n");
        return -1;
    }
    if (o->mode != M_MINT && o->port == 0) {
        fprintf(stderr, "ss_load: --port is required\n");
        return -1;
    }
    if (strlen(o->prefix) > 40) {
        fprintf(stderr, "ss_load: --prefix is too long\n");
        return -1;
    }
    return 0;
}

static void ssl_errors(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    fprintf(stderr, "ss_load: %s: %s\n", what, e ? buf : "(no OpenSSL error)");
    ERR_clear_error();
}

/* ---- identities ---------------------------------------------------------- */

typedef struct ca {
    X509 *crt;
    EVP_PKEY *key;
} ca;

static int ca_load(const char *dir, ca *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ss_load: %s: %s\n", path, strerror(errno));
        return -1;
    }
    c->crt = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof path, "%s/private/ca.key", dir);
    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ss_load: %s: %s\n", path, strerror(errno));
        return -1;
    }
    c->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!c->crt || !c->key) {
        ssl_errors("cannot read the CA (an encrypted CA key is not supported)");
        return -1;
    }
    return 0;
}

static int add_ext(X509 *crt, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(crt, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* A gateway certificate like sitesync-pki's: CN=node, clientAuth, the
 * urn:sitesync node/role/site SAN URIs, valid for a day. */
static int mint(const ca *c, uint64_t index, const char *prefix, gwid *g)
{
    snprintf(g->node, sizeof g->node, "%s%05llu", prefix, (unsigned long long)index);
    snprintf(g->site, sizeof g->site, "site-%05llu", (unsigned long long)index);
    g->key = EVP_EC_gen("P-256");
    g->crt = X509_new();
    if (!g->key || !g->crt)
        return -1;
    uint8_t serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        return -1;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    if (!sn)
        return -1;
    X509_set_serialNumber(g->crt, sn);
    ASN1_INTEGER_free(sn);
    X509_set_version(g->crt, 2);
    X509_set_issuer_name(g->crt, X509_get_subject_name(c->crt));
    X509_NAME *name = X509_get_subject_name(g->crt);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)g->node, -1, -1, 0);
    X509_gmtime_adj(X509_getm_notBefore(g->crt), -3600);
    X509_gmtime_adj(X509_getm_notAfter(g->crt), 86400);
    X509_set_pubkey(g->crt, g->key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, c->crt, g->crt, NULL, NULL, 0);
    char san[256];
    snprintf(san, sizeof san,
             "URI:urn:sitesync:node:%s,URI:urn:sitesync:role:gateway,URI:urn:sitesync:site:%s",
             g->node, g->site);
    if (add_ext(g->crt, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
        add_ext(g->crt, &ctx, NID_key_usage, "critical,digitalSignature") ||
        add_ext(g->crt, &ctx, NID_ext_key_usage, "clientAuth") ||
        add_ext(g->crt, &ctx, NID_subject_key_identifier, "hash") ||
        add_ext(g->crt, &ctx, NID_authority_key_identifier, "keyid") ||
        add_ext(g->crt, &ctx, NID_subject_alt_name, san))
        return -1;
    if (X509_sign(g->crt, c->key, EVP_sha256()) <= 0)
        return -1;
    g->der = NULL;
    g->der_len = i2d_X509(g->crt, &g->der);
    return g->der_len > 0 && g->der_len <= (int)SS_SIG_CERT_MAX ? 0 : -1;
}

static int write_pem(const options *o, const gwid *g)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.crt", o->out_dir, g->node);
    FILE *f = fopen(path, "w");
    if (!f || PEM_write_X509(f, g->crt) != 1) {
        fprintf(stderr, "ss_load: cannot write %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", o->out_dir, g->node);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || PEM_write_PrivateKey(f, g->key, NULL, NULL, 0, NULL, NULL) != 1) {
        fprintf(stderr, "ss_load: cannot write %s\n", path);
        if (f)
            fclose(f);
        else if (fd >= 0)
            close(fd);
        return -1;
    }
    fclose(f);
    return 0;
}

/* ---- envelopes ----------------------------------------------------------- */

/* One ~payload-byte incident (same field set as bench/sqlite_limit.c). */
static int make_change(ss_change *ch, const gwid *g, uint64_t seq, ss_hlc_t hlc, char *desc,
                       size_t payload, char *title, size_t title_cap, uint64_t *rng)
{
    static const char *const cats[] = { "intrusion", "sabotage", "cyber", "fire", "threat" };
    static const char *const sev[] = { "1", "2", "3", "4", "5" };
    memset(ch, 0, sizeof *ch);
    ch->seq = seq;
    ch->hlc = hlc;
    ch->coll = ss_schema_collection("incident", 8);
    if (!ch->coll || ss_incident_key(ch->key, sizeof ch->key, g->node, hlc) < 0)
        return -1;
    snprintf(ch->site, sizeof ch->site, "%s", g->site);
    ch->op = SS_OP_CREATE;
    snprintf(title, title_cap, "Perimeter alarm sector %llu", (unsigned long long)(seq % 97));
    /* The fixed part of the fields JSON is ~190 bytes; the description pads
     * the fields object to about `payload` bytes. */
    size_t dl = payload > 200 ? payload - 200 : 1;
    for (size_t i = 0; i < dl; i++)
        desc[i] = (char)('a' + (char)(bench_rand(rng) % 26));
    desc[dl] = '\0';
    ss_verr err;
    if (ss_change_set_text(ch, "category", cats[bench_rand(rng) % 5], &err) ||
        ss_change_set_text(ch, "severity", sev[bench_rand(rng) % 5], &err) ||
        ss_change_set_text(ch, "status", "open", &err) ||
        ss_change_set_text(ch, "title", title, &err) ||
        ss_change_set_text(ch, "occurred_at", "2026-05-01T12:00:00Z", &err) ||
        ss_change_set_text(ch, "reported_by", "guard-7", &err) ||
        ss_change_set_text(ch, "description", desc, &err)) {
        fprintf(stderr, "ss_load: change: %s\n", err.msg);
        return -1;
    }
    if (ss_change_validate(ch, &err) != 0) {
        fprintf(stderr, "ss_load: change: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Builds the whole BATCH frame of one envelope: frame header, envelope
 * header (SIGNED), body, and the signature trailer over header + body. */
static uint8_t *make_frame(const options *o, const gwid *g, uint64_t first, uint32_t n,
                           ss_hlc_t hlc0, uint64_t *rng, size_t *out_len, EVP_MD_CTX *md)
{
    size_t body_cap = 2 + (size_t)n * (o->payload + 512);
    char *body = malloc(body_cap);
    char *desc = malloc(o->payload + 1);
    ss_change *ch = malloc(sizeof *ch);
    char title[64];
    uint8_t *frame = NULL;
    if (!body || !desc || !ch)
        goto out;
    size_t pos = 0;
    body[pos++] = '[';
    for (uint32_t i = 0; i < n; i++) {
        if (make_change(ch, g, first + i, hlc0 + ((uint64_t)i << 16), desc, o->payload, title,
                        sizeof title, rng) != 0)
            goto out;
        if (i)
            body[pos++] = ',';
        int w = ss_change_encode(ch, body + pos, body_cap - pos - 1);
        if (w < 0)
            goto out;
        pos += (size_t)w;
    }
    body[pos++] = ']';
    size_t hl = ss_envelope_header_len(g->node);
    size_t trailer = o->unsigned_envs ? 0 : ss_sig_trailer_len((size_t)g->der_len, SS_SIG_DER_MAX);
    size_t cap = SS_FRAME_HEADER_LEN + hl + pos + trailer;
    frame = malloc(cap);
    if (!frame)
        goto out;
    uint8_t *env = frame + SS_FRAME_HEADER_LEN;
    if (ss_envelope_write_header(env, hl, g->node, first, n, (uint32_t)pos,
                                 o->unsigned_envs ? 0 : SS_ENV_FLAG_SIGNED) != (int)hl)
        goto fail;
    memcpy(env + hl, body, pos);
    size_t env_len = hl + pos;
    if (!o->unsigned_envs) {
        uint8_t sig[SS_SIG_DER_MAX];
        size_t sig_len = sizeof sig;
        /* A context reused across keys must be reset, or OpenSSL keeps
         * signing with the first key it was given. */
        EVP_MD_CTX_reset(md);
        if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g->key) != 1 ||
            EVP_DigestSign(md, sig, &sig_len, env, env_len) != 1) {
            ssl_errors("sign");
            goto fail;
        }
        int t = ss_sig_write_trailer(env + env_len, cap - SS_FRAME_HEADER_LEN - env_len, g->der,
                                     (size_t)g->der_len, sig, sig_len);
        if (t < 0)
            goto fail;
        env_len += (size_t)t;
    }
    ss_envelope chk;
    if (ss_envelope_parse(env, env_len, &chk) != 0 ||
        ss_frame_write_header(frame, SS_FRAME_BATCH, 0, (uint32_t)env_len) != SS_FRAME_HEADER_LEN)
        goto fail;
    *out_len = SS_FRAME_HEADER_LEN + env_len;
    goto out;
fail:
    free(frame);
    frame = NULL;
out:
    free(body);
    free(desc);
    free(ch);
    return frame;
}

/* ---- the event loop ------------------------------------------------------ */

/* Ends a session as failed; the first failure's reason ("what: detail") is
 * kept for the report. */
static void conn_fail(loop *l, conn *c, const char *what, const char *detail)
{
    if (c->state == S_FAIL || c->state == S_DONE)
        return;
    if (l->first_error[0] == '\0')
        snprintf(l->first_error, sizeof l->first_error, "%s: %.100s%s%.150s", c->id->node, what,
                 detail ? ": " : "", detail ? detail : "");
    if (c->state >= S_CONNECT && c->state <= S_HELLO)
        l->handshaking--;
    if (l->o->mode == M_IDLE && l->released)
        l->closed_early++;
    c->state = S_FAIL;
    l->failed++;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void conn_finish(loop *l, conn *c)
{
    c->state = S_DONE;
    l->done++;
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    ERR_clear_error();
    close(c->fd);
    c->fd = -1;
}

static int set_interest(loop *l, conn *c)
{
    uint32_t ev = EPOLLIN;
    if (c->state == S_CONNECT || c->want_out)
        ev |= EPOLLOUT;
    if (ev == c->events)
        return 0;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
        return -1;
    c->events = ev;
    return 0;
}

static int conn_start(loop *l, conn *c)
{
    c->t_start = bench_now_ns();
    if (l->t_begin == 0)
        l->t_begin = c->t_start;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(l, c, "socket", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)l->o->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->state = S_CONNECT;
    l->handshaking++;
    l->started++;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        conn_fail(l, c, "connect", strerror(errno));
        return -1;
    }
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event e = { .events = c->events, .data.ptr = c };
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
        conn_fail(l, c, "epoll_ctl", strerror(errno));
        return -1;
    }
    return 0;
}

static int queue_ctrl(conn *c, const ss_msg *m)
{
    int n = ss_msg_encode_frame(m, c->ctrl, sizeof c->ctrl);
    if (n <= 0)
        return -1;
    c->ctrl_len = (size_t)n;
    c->ctrl_pending = 1;
    return 0;
}

/* Writes what there is to write: a queued control frame first, then
 * envelopes while the window allows. */
static void conn_write(loop *l, conn *c)
{
    c->want_out = 0;
    while (c->state >= S_HELLO && c->state <= S_CLOSING) {
        if (c->out_pos == c->out_len) {
            c->out = NULL;
            c->out_pos = c->out_len = 0;
            if (c->ctrl_pending) {
                c->ctrl_pending = 0;
                c->out = c->ctrl;
                c->out_len = c->ctrl_len;
            } else if (c->state == S_CLOSING) {
                c->bye_sent = 1; /* the daemon answers and closes */
                return;
            } else if (c->state == S_STREAM && c->next < c->nframes && c->inflight < c->window) {
                if (l->t_first_send == 0)
                    l->t_first_send = bench_now_ns();
                c->out = c->frames[c->next];
                c->out_len = c->frame_len[c->next];
                c->next++;
                c->inflight++;
            } else {
                return;
            }
        }
        int n = SSL_write(c->ssl, c->out + c->out_pos, (int)(c->out_len - c->out_pos));
        if (n > 0) {
            c->out_pos += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->want_out = 1;
            return;
        }
        if (e == SSL_ERROR_WANT_READ)
            return;
        ERR_clear_error();
        conn_fail(l, c, "write failed", e == SSL_ERROR_SYSCALL ? strerror(errno) : "TLS");
        return;
    }
}

static void on_frame(loop *l, conn *c, const ss_frame *f)
{
    ss_msg m;
    ss_verr err;
    memset(&m, 0, sizeof m);
    memset(&err, 0, sizeof err);
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &err) != 0) {
        conn_fail(l, c, "cannot decode a frame from the daemon", err.msg);
        return;
    }
    switch (f->type) {
    case SS_FRAME_WELCOME:
        if (c->state != S_HELLO) {
            conn_fail(l, c, "unexpected WELCOME", NULL);
            break;
        }
        c->window = m.u.welcome.window;
        if (l->o->window && l->o->window < c->window)
            c->window = (uint32_t)l->o->window;
        for (int i = 0; i < m.u.welcome.ncommitted; i++)
            if (strcmp(m.u.welcome.committed[i].origin, c->id->node) == 0 &&
                m.u.welcome.committed[i].seq != 0) {
                conn_fail(l, c, "the daemon already holds this origin (reused database?)", NULL);
                ss_msg_free(&m);
                return;
            }
        c->state = S_READY;
        l->handshaking--;
        l->welcomed++;
        if (l->released) { /* joined after the release (not in idle) */
            c->state = S_STREAM;
        }
        break;
    case SS_FRAME_ACK:
        for (int i = 0; i < m.u.ack.nacks; i++)
            if (strcmp(m.u.ack.acks[i].origin, c->id->node) == 0 && m.u.ack.acks[i].seq > c->acked)
                c->acked = m.u.ack.acks[i].seq;
        c->rejects += (uint64_t)m.u.ack.nrejects;
        l->rejects += (uint64_t)m.u.ack.nrejects;
        if (m.u.ack.nrejects > 0 && l->first_error[0] == '\0')
            snprintf(l->first_error, sizeof l->first_error, "%s: change %llu refused: %s %.150s",
                     c->id->node, (unsigned long long)m.u.ack.rejects[0].seq,
                     ss_err_name(m.u.ack.rejects[0].code), m.u.ack.rejects[0].message);
        while (c->inflight > 0 && c->frame_last[c->acked_idx] <= c->acked) {
            c->inflight--;
            c->acked_idx++;
        }
        if (c->acked >= c->last_seq && c->state == S_STREAM) {
            c->t_done = bench_now_ns();
            l->t_last_ack = c->t_done;
            ss_msg bye;
            memset(&bye, 0, sizeof bye);
            bye.type = SS_FRAME_BYE;
            snprintf(bye.u.bye.reason, sizeof bye.u.bye.reason, "done");
            queue_ctrl(c, &bye);
            c->state = S_CLOSING;
        }
        break;
    case SS_FRAME_ERROR: {
        char msg[300];
        snprintf(msg, sizeof msg, "%s %s (seq %llu)", ss_err_name(m.u.error.code),
                 m.u.error.message, (unsigned long long)m.u.error.seq);
        conn_fail(l, c, "ERROR from the daemon", msg);
        break;
    }
    case SS_FRAME_BYE:
        if (c->bye_sent)
            conn_finish(l, c);
        else
            conn_fail(l, c, "BYE from the daemon", m.u.bye.reason);
        break;
    default:
        break; /* PONG and the like */
    }
    ss_msg_free(&m);
}

static void conn_read(loop *l, conn *c)
{
    uint8_t buf[16384];
    while (c->ssl && c->state >= S_HELLO && c->state <= S_CLOSING) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ)
                return;
            if (e == SSL_ERROR_WANT_WRITE) {
                c->want_out = 1;
                return;
            }
            ERR_clear_error();
            if (c->bye_sent) {
                conn_finish(l, c);
                return;
            }
            conn_fail(l, c, "the daemon closed the session",
                      e == SSL_ERROR_ZERO_RETURN ? "close_notify" : "reset or TLS alert");
            return;
        }
        size_t off = 0;
        while (off < (size_t)n && c->ssl) {
            size_t used = 0;
            int r = ss_fdec_feed(&c->dec, buf + off, (size_t)n - off, &used);
            off += used;
            if (r < 0) {
                conn_fail(l, c, "bad frame from the daemon", ss_err_name(r));
                return;
            }
            if (r == 1) {
                ss_frame f;
                if (ss_fdec_frame(&c->dec, &f) == 0)
                    on_frame(l, c, &f);
            }
        }
    }
}

static void conn_step(loop *l, conn *c, uint32_t ev)
{
    if (c->state == S_CONNECT) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_fail(l, c, "connect", strerror(err));
            return;
        }
        c->ssl = SSL_new(l->ctx);
        if (!c->ssl || SSL_use_certificate(c->ssl, c->id->crt) != 1 ||
            SSL_use_PrivateKey(c->ssl, c->id->key) != 1 || SSL_set_fd(c->ssl, c->fd) != 1) {
            conn_fail(l, c, "SSL setup failed", NULL);
            return;
        }
        c->state = S_TLS;
    }
    if (c->state == S_TLS) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            c->want_out = e == SSL_ERROR_WANT_WRITE;
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                char why[128];
                unsigned long oe = ERR_get_error();
                ERR_error_string_n(oe, why, sizeof why);
                ERR_clear_error();
                conn_fail(l, c, "TLS handshake failed", oe ? why : strerror(errno));
                return;
            }
            set_interest(l, c);
            return;
        }
        ss_msg h;
        memset(&h, 0, sizeof h);
        h.type = SS_FRAME_HELLO;
        h.u.hello.proto = SS_PROTO_VERSION;
        snprintf(h.u.hello.node, sizeof h.u.hello.node, "%s", c->id->node);
        h.u.hello.role = SS_ROLE_GATEWAY;
        h.u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
        snprintf(h.u.hello.software, sizeof h.u.hello.software, "bench/ss_load");
        if (queue_ctrl(c, &h) != 0) {
            conn_fail(l, c, "cannot encode HELLO", NULL);
            return;
        }
        c->state = S_HELLO;
    }
    conn_read(l, c);
    if (c->ssl)
        conn_write(l, c);
    if (c->ssl && set_interest(l, c) != 0)
        conn_fail(l, c, "epoll_ctl", strerror(errno));
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void release_all(loop *l)
{
    l->released = 1;
    l->t_release = bench_now_ns();
    if (l->o->mode == M_IDLE)
        return;
    for (uint32_t i = 0; i < l->nconns; i++) {
        conn *c = &l->conns[i];
        if (c->state != S_READY)
            continue;
        c->state = S_STREAM;
        c->t_start = l->t_release;
        conn_write(l, c);
        if (c->ssl && set_interest(l, c) != 0)
            conn_fail(l, c, "epoll_ctl", strerror(errno));
    }
}

static int run_loop(loop *l)
{
    const options *o = l->o;
    uint64_t deadline = bench_now_ns() + o->timeout_ms * 1000000u;
    uint64_t hold_until = 0;
    struct epoll_event evs[256];
    for (;;) {
        while (l->started < l->nconns && l->handshaking < o->concurrency && !stop_flag)
            conn_start(l, &l->conns[l->started]);
        if (!l->released && l->welcomed + l->failed == l->nconns) {
            if (l->failed > 0)
                return -1;
            release_all(l);
            if (o->mode == M_IDLE) {
                printf("ready sessions=%u connect_s=%.3f\n", l->welcomed,
                       (double)(l->t_release - l->t_begin) / 1e9);
                fflush(stdout);
                hold_until = bench_now_ns() + o->hold_ms * 1000000u;
            }
        }
        if (o->mode != M_IDLE && l->released && l->done + l->failed == l->nconns)
            return l->failed ? -1 : 0;
        uint64_t now = bench_now_ns();
        if (o->mode == M_IDLE && l->released && (stop_flag || now >= hold_until))
            return 0;
        if (stop_flag) {
            snprintf(l->first_error, sizeof l->first_error, "stopped by a signal");
            return -1;
        }
        if (o->mode != M_IDLE && now >= deadline) {
            snprintf(l->first_error, sizeof l->first_error,
                     "timed out: %u welcomed, %u done, %u failed of %u", l->welcomed, l->done,
                     l->failed, l->nconns);
            return -1;
        }
        if (o->mode == M_IDLE && !l->released && now >= deadline) {
            snprintf(l->first_error, sizeof l->first_error,
                     "timed out connecting: %u welcomed, %u failed of %u", l->welcomed, l->failed,
                     l->nconns);
            return -1;
        }
        int n = epoll_wait(l->ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("ss_load: epoll_wait");
            return -1;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->state == S_DONE || c->state == S_FAIL)
                continue;
            conn_step(l, c, evs[i].events);
        }
    }
}

static void raise_nofile(uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need + 32)
        fprintf(stderr, "ss_load: RLIMIT_NOFILE is %llu, below the %llu sessions asked for\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

/* Everything but the teardown: returns the exit status; whatever it made is
 * in c, *idsp and l for release(). */
static int run(options *o, ca *c, gwid **idsp, loop *l, const char *mode)
{
    if (ca_load(o->ca_dir, c) != 0)
        return 1;

    uint64_t t0 = bench_now_ns();
    gwid *ids = calloc(o->gateways, sizeof *ids);
    if (!ids)
        return 1;
    *idsp = ids;
    for (uint64_t i = 0; i < o->gateways; i++) {
        if (mint(c, o->first_index + i, o->prefix, &ids[i]) != 0) {
            ssl_errors("cannot mint a gateway certificate");
            return 1;
        }
        if (o->mode == M_MINT && write_pem(o, &ids[i]) != 0)
            return 1;
    }
    double mint_s = (double)(bench_now_ns() - t0) / 1e9;
    if (o->mode == M_MINT) {
        printf("minted=%llu mint_s=%.3f\n", (unsigned long long)o->gateways, mint_s);
        return 0;
    }
    raise_nofile(o->gateways);

    /* Envelopes, built and signed before the clock starts. */
    l->o = o;
    l->nconns = (uint32_t)o->gateways;
    l->conns = calloc(o->gateways, sizeof *l->conns);
    if (!l->conns)
        return 1;
    for (uint32_t i = 0; i < l->nconns; i++)
        l->conns[i].fd = -1; /* release() closes only what was opened */
    uint64_t envs = o->mode == M_IDLE ? 0 : o->envelopes;
    uint64_t rng = 42;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* An hour in the past, one millisecond per change: HLCs rise per origin
     * as a gateway's do and stay far inside the daemon's skew tolerance. */
    uint64_t base_ms = (uint64_t)now.tv_sec * 1000u - 3600000u;
    uint64_t sign_ns = 0, bytes = 0;
    for (uint32_t i = 0; i < l->nconns; i++) {
        conn *cn = &l->conns[i];
        cn->id = &ids[i];
        cn->fd = -1;
        ss_fdec_init(&cn->dec, SS_FRAME_DEFAULT_MAX);
        cn->nframes = (uint32_t)envs;
        cn->frames = calloc(envs + 1, sizeof *cn->frames);
        cn->frame_len = calloc(envs + 1, sizeof *cn->frame_len);
        cn->frame_last = calloc(envs + 1, sizeof *cn->frame_last);
        if (!cn->frames || !cn->frame_len || !cn->frame_last)
            return 1;
        for (uint64_t e = 0; e < envs; e++) {
            uint64_t first = e * o->changes + 1;
            uint64_t s0 = bench_now_ns();
            cn->frames[e] =
                make_frame(o, cn->id, first, (uint32_t)o->changes, ss_hlc_make(base_ms + first, 0),
                           &rng, &cn->frame_len[e], md);
            sign_ns += bench_now_ns() - s0;
            if (!cn->frames[e]) {
                fprintf(stderr, "ss_load: cannot build an envelope\n");
                return 1;
            }
            cn->frame_last[e] = first + o->changes - 1;
            bytes += cn->frame_len[e];
        }
        cn->last_seq = envs * o->changes;
    }
    EVP_MD_CTX_free(md);

    l->ctx = SSL_CTX_new(TLS_client_method());
    if (!l->ctx)
        return 1;
    SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(l->ctx), c->crt);
    SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(l->ctx, SSL_SESS_CACHE_OFF);
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0)
        return 1;

    int rc = run_loop(l);
    uint64_t rows = (uint64_t)l->nconns * envs * o->changes;
    if (rc != 0 || l->rejects != 0) {
        fprintf(stderr, "ss_load: %s failed: %s (rejected changes: %llu)\n", mode,
                l->first_error[0] ? l->first_error : "?", (unsigned long long)l->rejects);
        return 1;
    }
    if (o->mode == M_IDLE) {
        printf("idle_sessions=%u idle_closed_early=%u\n", l->welcomed, l->closed_early);
        return l->closed_early ? 1 : 0;
    }
    double el = (double)(l->t_last_ack - l->t_first_send) / 1e9;
    if (o->mode == M_MERGE) {
        printf("sitesyncd_merge_rows_per_s=%.0f rows=%llu gateways=%u envelopes=%llu changes=%llu "
               "window=%u elapsed_s=%.3f signed=%d prepare_us_per_envelope=%.0f "
               "mean_frame_bytes=%.0f\n",
               el > 0 ? (double)rows / el : 0.0, (unsigned long long)rows, l->nconns,
               (unsigned long long)envs, (unsigned long long)o->changes, l->conns[0].window, el,
               !o->unsigned_envs, (double)sign_ns / 1e3 / (double)(l->nconns * envs),
               (double)bytes / (double)(l->nconns * envs));
        return 0;
    }
    uint64_t *lat = calloc(l->nconns, sizeof *lat);
    if (!lat)
        return 1;
    for (uint32_t i = 0; i < l->nconns; i++)
        lat[i] = l->conns[i].t_done - l->t_release;
    qsort(lat, l->nconns, sizeof *lat, cmp_u64);
    double drain = (double)(l->t_last_ack - l->t_release) / 1e9;
    printf("fanin_gateways=%u fanin_records=%llu fanin_connect_s=%.3f fanin_drain_s=%.3f "
           "fanin_p50_ms=%.1f fanin_p99_ms=%.1f fanin_max_ms=%.1f fanin_records_per_s=%.0f\n",
           l->nconns, (unsigned long long)rows, (double)(l->t_release - l->t_begin) / 1e9, drain,
           (double)pct(lat, l->nconns, 0.50) / 1e6, (double)pct(lat, l->nconns, 0.99) / 1e6,
           (double)lat[l->nconns - 1] / 1e6, drain > 0 ? (double)rows / drain : 0.0);
    free(lat);
    return 0;
}

/* Frees what run() made (safe on a partial setup). */
static void release(const options *o, ca *c, gwid *ids, loop *l)
{
    for (uint32_t i = 0; l->conns && i < l->nconns; i++) {
        conn *cn = &l->conns[i];
        if (cn->ssl)
            SSL_free(cn->ssl);
        if (cn->fd >= 0)
            close(cn->fd);
        for (uint32_t e = 0; cn->frames && e < cn->nframes; e++)
            free(cn->frames[e]);
        free(cn->frames);
        free(cn->frame_len);
        free(cn->frame_last);
        ss_fdec_free(&cn->dec);
    }
    free(l->conns);
    if (l->ctx)
        SSL_CTX_free(l->ctx);
    if (l->ep >= 0)
        close(l->ep);
    for (uint64_t i = 0; ids && i < o->gateways; i++) {
        EVP_PKEY_free(ids[i].key);
        X509_free(ids[i].crt);
        OPENSSL_free(ids[i].der);
    }
    free(ids);
    X509_free(c->crt);
    EVP_PKEY_free(c->key);
}

int main(int argc, char **argv)
{
    options o = { .gateways = 10,
                  .envelopes = 100,
                  .changes = 100,
                  .payload = 400,
                  .concurrency = 64,
                  .timeout_ms = 300000,
                  .hold_ms = 600000,
                  .prefix = "gw-" };
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    ca c = { 0 };
    gwid *ids = NULL;
    loop l;
    memset(&l, 0, sizeof l);
    l.ep = -1;
    int rc = run(&o, &c, &ids, &l, argv[1]);
    release(&o, &c, ids, &l);
    return rc;
}
