/* sd_conn.c - one replication session on the daemon: TCP bytes in, through
 * OpenSSL memory BIOs, through the frame decoder, to HELLO/WELCOME, pipelined
 * BATCH -> writer -> coalesced ACK, PING/PONG and BYE; with the handshake
 * deadline, idle timeout, in-flight window (backpressure) and output cap.
 *
 * Lifetime: a session embeds two libuv handles (tcp, timer) and may have
 * jobs queued at the writer whose callbacks name it. It is freed only when
 * both handles have closed and no job is outstanding. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#ifdef __linux__
#include <linux/sockios.h> /* SIOCOUTQ */
#endif

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"
#include "sd_net.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Rejections sent in one ACK frame at most (halved if the frame would exceed
 * the peer's max_frame). */
#define ACK_REJECTS_PER_FRAME 64
/* Between frames, a frame decoder buffer or a TLS write buffer larger than
 * this is released rather than kept for the next frame: small frames (PING,
 * ACK) reuse theirs, one large envelope does not pin its size for the life
 * of the session. */
#define SD_CONN_BUF_KEEP 4096u

struct sd_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    sd_server *srv;
    sd_conn *prev, *next;
    sd_conn *hs_prev, *hs_next; /* the server's handshake queue */
    int in_hs;
    sd_conn *dirty_next;
    int in_dirty;
    uint64_t id;
    int state;
    int handles; /* open libuv handles */
    int jobs;    /* writer jobs whose callback has not run */
    int reading;
    int paused;   /* window full: frames wait in the buffers */
    int shutting; /* graceful close under way */
    int session_begun, session_ended;
    int quiet;     /* refused at accept under a penalty: close logged at debug */
    int have_akey; /* akey is the peer's address (IPv4 or IPv6 /64) */
    sd_addr_key akey;
    char ip[INET6_ADDRSTRLEN];
    sd_tls_conn tls;
    ss_fdec dec;
    size_t pt_pos, pt_len;
    sd_peer peer;
    int have_peer;
    uint32_t peer_max_frame;
    int norigins;
    ss_oseq *origins; /* HELLO "origins", kept until WELCOME */
    unsigned inflight;
    size_t out_pending; /* bytes handed to uv_write, not yet written */
    /* While > 0, frames produced are left in the TLS write BIO and go out
     * in one socket write when it drops back to 0 (see send_bytes). */
    int cork;
    uint64_t last_rx;   /* loop time of the last frame */
    uint64_t accept_ms; /* loop time of the accept (handshake queue age) */
    sd_counts counts;
    uint64_t bytes_in, bytes_out;
    char error[256]; /* first error, for the session row */
    int nacks, acks_cap;
    ss_oseq *acks;
    int nrejects, rejects_cap;
    ss_reject *rejects;
    char close_reason[64];
    /* Decrypted bytes not yet fed to the frame decoder. Allocated while a
     * read is being worked through and released once it is consumed, so an
     * idle session does not carry 16 KiB it is not using (bench/: idle RSS
     * per connection). */
    uint8_t *pt;
    /* Ciphertext not yet read by OpenSSL when a read could not be worked
     * through (window full, session row being written): see
     * feed_cipher. NULL otherwise. */
    uint8_t *held;
};

typedef struct out_req {
    uv_write_t req;
    sd_conn *c;
    size_t len;
    char data[];
} out_req;

int64_t sd__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sd__conn_dead(const sd_conn *c)
{
    return c->state == SD_CONN_CLOSING;
}

sd_conn *sd__conn_next(const sd_conn *c)
{
    return c->next;
}

sd_conn *sd__conn_dirty_next(const sd_conn *c)
{
    return c->dirty_next;
}

static const char *peer_node(const sd_conn *c)
{
    return c->have_peer ? c->peer.ident.node : "-";
}

static void set_error(sd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(sd_conn *c, const char *fmt, ...)
{
    if (c->error[0] != '\0')
        return; /* the first error is the cause; later ones are fallout */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

static void mark_dirty(sd_conn *c)
{
    if (c->in_dirty)
        return;
    c->in_dirty = 1;
    c->dirty_next = c->srv->dirty;
    c->srv->dirty = c;
}

static void unlink_dirty(sd_conn *c)
{
    if (!c->in_dirty)
        return;
    for (sd_conn **pp = &c->srv->dirty; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    }
    c->in_dirty = 0;
}

/* The handshake queue: connections not yet authenticated, in accept order. */
static void hs_push(sd_conn *c)
{
    sd_server *s = c->srv;
    c->hs_prev = s->hs_tail;
    c->hs_next = NULL;
    if (s->hs_tail)
        s->hs_tail->hs_next = c;
    else
        s->hs_head = c;
    s->hs_tail = c;
    c->in_hs = 1;
}

static void hs_unlink(sd_conn *c)
{
    sd_server *s = c->srv;
    if (!c->in_hs)
        return;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        s->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        s->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
    c->in_hs = 0;
}

/* ---- lifetime ---------------------------------------------------------- */

static void conn_free(sd_conn *c)
{
    sd_server *s = c->srv;
    unlink_dirty(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sd_tls_conn_free(&c->tls);
    ss_fdec_free(&c->dec);
    ss_free(c->pt);
    ss_free(c->held); /* after the SSL (and its read BIO over it) is gone */
    ss_free(c->origins);
    free(c->acks);
    free(c->rejects);
    free(c);
    s->nconns--;
    sd__server_conn_gone(s);
}

static void maybe_free(sd_conn *c)
{
    if (c->state == SD_CONN_CLOSING && c->handles == 0 && c->jobs == 0)
        conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    sd_conn *c = h->data;
    c->handles--;
    maybe_free(c);
}

static void on_job_done(sd_job *job, void *arg)
{
    sd_conn *c = arg;
    (void)job;
    c->jobs--;
    maybe_free(c);
}

/* Queues a job for this session. On refusal (writer stopped) the job is
 * freed here and the callback never runs. */
static int submit(sd_conn *c, sd_job *job)
{
    int rc = sd_writer_submit(c->srv->writer, job);
    if (rc != 0) {
        sd_job_free(job);
        return rc;
    }
    c->jobs++;
    return 0;
}

static void end_session(sd_conn *c)
{
    if (!c->session_begun || c->session_ended || c->peer.session_id == 0)
        return;
    sd_job *job = sd_job_new(SD_JOB_SESSION_END);
    if (!job)
        return;
    c->session_ended = 1;
    job->peer = c->peer;
    job->now_ms = sd__now_ms();
    job->session_id = c->peer.session_id;
    job->counts = c->counts;
    job->bytes_in = c->bytes_in;
    job->bytes_out = c->bytes_out;
    snprintf(job->text, sizeof job->text, "%s", c->error);
    job->cb = on_job_done;
    job->arg = c;
    submit(c, job);
}

static void audit_event(sd_conn *c, const sd_peer *peer, const char *origin, uint64_t seq,
                        const char *outcome, const char *detail)
{
    sd_job *job = sd_job_new(SD_JOB_AUDIT_EVENT);
    if (!job)
        return;
    job->peer = *peer;
    job->now_ms = sd__now_ms();
    snprintf(job->origin, sizeof job->origin, "%s", origin ? origin : "");
    job->seq = seq;
    snprintf(job->outcome, sizeof job->outcome, "%s", outcome);
    snprintf(job->text, sizeof job->text, "%s", detail ? detail : "");
    job->cb = on_job_done;
    job->arg = c;
    submit(c, job);
}

void sd__conn_abort(sd_conn *c, const char *reason)
{
    if (c->state == SD_CONN_CLOSING)
        return;
    c->state = SD_CONN_CLOSING;
    c->srv->nlive--;
    hs_unlink(c);
    char q[300];
    sd_log_write(c->srv->log, c->quiet ? SD_LOG_DEBUG : SD_LOG_INFO, "conn_close",
                 "conn=%llu peer=%s addr=%s reason=%s received=%llu applied=%llu duplicate=%llu "
                 "rejected=%llu bytes_in=%llu bytes_out=%llu error=%s",
                 (unsigned long long)c->id, peer_node(c), c->peer.addr, reason,
                 (unsigned long long)c->counts.received, (unsigned long long)c->counts.applied,
                 (unsigned long long)c->counts.duplicate, (unsigned long long)c->counts.rejected,
                 (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
                 sd_log_quote(q, sizeof q, c->error));
    unlink_dirty(c);
    end_session(c);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- output ------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status)
{
    out_req *w = container_of(req, out_req, req);
    sd_conn *c = w->c;
    c->out_pending -= w->len;
    free(w);
    if (status < 0 && !sd__conn_dead(c)) {
        set_error(c, "write: %s%s", uv_strerror(status), "");
        sd__conn_abort(c, "write_error");
    }
}

/* Bytes in the socket's send queue that the peer has not acknowledged. */
static size_t kernel_outq(sd_conn *c)
{
#ifdef SIOCOUTQ
    uv_os_fd_t fd;
    int n = 0;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0)
        return (size_t)n;
#else
    (void)c;
#endif
    return 0;
}

/* The TLS write BIO, just drained, keeps the size it grew to (a burst of
 * PONGs, a CRL frame for a relay): past SD_CONN_BUF_KEEP it is replaced by
 * an empty one. After the handshake only, when OpenSSL has no buffering BIO
 * of its own in front of it. */
static void shrink_wbio(sd_conn *c)
{
    BUF_MEM *bm = NULL;
    if (c->state < SD_CONN_HELLO || BIO_ctrl_pending(c->tls.wbio) != 0 ||
        BIO_get_mem_ptr(c->tls.wbio, &bm) != 1 || !bm || bm->max <= SD_CONN_BUF_KEEP)
        return;
    BIO *nb = BIO_new(BIO_s_mem());
    if (!nb) {
        ERR_clear_error();
        return; /* keep the big one: it works */
    }
    BIO_set_mem_eof_return(nb, -1);
    SSL_set0_wbio(c->tls.ssl, nb); /* frees the old one */
    c->tls.wbio = nb;
}

/* Moves whatever OpenSSL produced to the socket, in one write. */
static void flush_out(sd_conn *c)
{
    if (sd__conn_dead(c) || !c->tls.ssl)
        return;
    size_t n;
    int wrote = 0;
    while ((n = BIO_ctrl_pending(c->tls.wbio)) > 0) {
        out_req *w = malloc(sizeof *w + n);
        if (!w) {
            set_error(c, "%s%s", "out of memory", "");
            sd__conn_abort(c, "no_memory");
            return;
        }
        int got = BIO_read(c->tls.wbio, w->data, (int)n);
        if (got <= 0) {
            free(w);
            break;
        }
        w->c = c;
        w->len = (size_t)got;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
        int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rc < 0) {
            free(w);
            set_error(c, "write: %s%s", uv_strerror(rc), "");
            sd__conn_abort(c, "write_error");
            return;
        }
        c->out_pending += w->len;
        c->bytes_out += w->len;
        wrote = 1;
    }
    if (!wrote)
        return; /* what the peer has not taken can only have shrunk */
    shrink_wbio(c);
    /* A peer that does not read its ACKs must not make us buffer without
     * bound. What counts is everything the peer has not taken: the bytes
     * libuv still queues, and the bytes in the kernel's send queue that the
     * peer's TCP has not acknowledged. Counting libuv's queue alone let a
     * peer that never reads pin the whole autotuned kernel send buffer (up
     * to tcp_wmem's maximum, 4 MiB here) before the cap even began to
     * count, and gave it that much more time to wedge its own TCP (see
     * docs/reliability.md, "peer that never reads"). */
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    size_t kernel = 0;
    if (queued <= c->srv->cfg->max_output_bytes)
        kernel = kernel_outq(c);
    if (queued + kernel > c->srv->cfg->max_output_bytes) {
        set_error(c, "%s%s", "pending output above max_output_bytes (peer not reading)", "");
        SD_WARN(c->srv->log, "output_cap",
                "conn=%llu peer=%s pending=%zu queued=%zu kernel=%zu max=%llu",
                (unsigned long long)c->id, peer_node(c), queued + kernel, queued, kernel,
                (unsigned long long)c->srv->cfg->max_output_bytes);
        sd__conn_abort(c, "output_cap");
    }
}

static int send_bytes(sd_conn *c, const uint8_t *p, size_t n)
{
    if (sd__conn_dead(c) || c->shutting)
        return SS_ECLOSED;
    while (n > 0) {
        int w = SSL_write(c->tls.ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0) {
            char e[256];
            set_error(c, "tls write: %s%s", sd_tls_errors(e, sizeof e), "");
            sd__conn_abort(c, "tls_error");
            return SS_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    /* Corked (a burst of frames being worked through): the records wait in
     * the write BIO and leave in one write when the burst is done. One
     * segment instead of one per PONG or ACK: fewer syscalls, and a peer
     * is not sent a stream of tiny segments, each of which costs its
     * receive buffer a whole skb. */
    if (c->cork == 0)
        flush_out(c);
    return sd__conn_dead(c) ? SS_ECLOSED : 0;
}

static void cork(sd_conn *c)
{
    c->cork++;
}

static void uncork(sd_conn *c)
{
    if (--c->cork == 0)
        flush_out(c);
}

static int send_msg(sd_conn *c, const ss_msg *m, size_t cap)
{
    uint8_t stack[1024];
    uint8_t *buf = cap <= sizeof stack ? stack : malloc(cap);
    if (!buf)
        return SS_ENOMEM;
    int n = ss_msg_encode_frame(m, buf, cap);
    int rc = n < 0 ? n : send_bytes(c, buf, (size_t)n);
    if (n < 0)
        SD_ERROR(c->srv->log, "encode_error", "conn=%llu type=%s err=%s", (unsigned long long)c->id,
                 ss_frame_type_name(m->type), ss_err_name(n));
    if (buf != stack)
        free(buf);
    return rc;
}

static void send_error(sd_conn *c, int code, const char *msg, const char *origin, uint64_t seq,
                       uint64_t resume, const char *field)
{
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_ERROR;
    m.u.error.code = code;
    snprintf(m.u.error.message, sizeof m.u.error.message, "%s", msg ? msg : ss_strerror(code));
    snprintf(m.u.error.origin, sizeof m.u.error.origin, "%s", origin ? origin : "");
    snprintf(m.u.error.field, sizeof m.u.error.field, "%s", field ? field : "");
    m.u.error.seq = seq;
    m.u.error.resume = resume;
    send_msg(c, &m, 2048);
}

static void on_linger(uv_timer_t *t)
{
    sd_conn *c = container_of(t, sd_conn, timer);
    sd__conn_abort(c, c->close_reason[0] ? c->close_reason : "linger");
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    sd_conn *c = container_of(req, sd_conn, shutdown_req);
    (void)status;
    sd__conn_abort(c, c->close_reason[0] ? c->close_reason : "closed");
}

/* Graceful close: TLS close_notify, let the queued frames reach the socket,
 * then close; a peer that does not take them is cut after SD_LINGER_MS. */
static void conn_finish(sd_conn *c, const char *reason)
{
    if (sd__conn_dead(c) || c->shutting)
        return;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    if (c->tls.ssl)
        SSL_shutdown(c->tls.ssl);
    ERR_clear_error();
    flush_out(c);
    if (sd__conn_dead(c))
        return;
    c->shutting = 1;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_linger, SD_LINGER_MS, 0);
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        sd__conn_abort(c, reason);
}

/* Sends an ERROR and closes: for faults after which the stream cannot be
 * trusted (protocol, tamper, authorization). */
static void fail_close(sd_conn *c, int code, const char *msg, const char *origin, uint64_t seq)
{
    char q[300];
    set_error(c, "%s: %s", ss_err_name(code), msg ? msg : ss_strerror(code));
    SD_WARN(c->srv->log, "session_error", "conn=%llu peer=%s code=%s origin=%s seq=%llu msg=%s",
            (unsigned long long)c->id, peer_node(c), ss_err_name(code),
            origin && origin[0] ? origin : "-", (unsigned long long)seq,
            sd_log_quote(q, sizeof q, msg ? msg : ss_strerror(code)));
    if (c->state >= SD_CONN_HELLO && !c->shutting)
        send_error(c, code, msg, origin, seq, 0, NULL);
    conn_finish(c, ss_err_name(code));
}

/* ---- ACKs -------------------------------------------------------------- */

static void add_ack(sd_conn *c, const char *origin, uint64_t seq)
{
    for (int i = 0; i < c->nacks; i++) {
        if (strcmp(c->acks[i].origin, origin) == 0) {
            if (seq > c->acks[i].seq)
                c->acks[i].seq = seq;
            return;
        }
    }
    if (c->nacks == c->acks_cap) {
        int cap = c->acks_cap ? c->acks_cap * 2 : 4;
        ss_oseq *p = realloc(c->acks, (size_t)cap * sizeof *p);
        if (!p)
            return; /* the next ACK for this origin carries the seq anyway */
        c->acks = p;
        c->acks_cap = cap;
    }
    snprintf(c->acks[c->nacks].origin, sizeof c->acks[c->nacks].origin, "%s", origin);
    c->acks[c->nacks].seq = seq;
    c->nacks++;
}

static void add_rejects(sd_conn *c, const ss_reject *r, int n)
{
    if (n <= 0)
        return;
    if (c->nrejects + n > c->rejects_cap) {
        int cap = c->rejects_cap ? c->rejects_cap : 16;
        while (cap < c->nrejects + n)
            cap *= 2;
        ss_reject *p = realloc(c->rejects, (size_t)cap * sizeof *p);
        if (!p) {
            SD_ERROR(c->srv->log, "no_memory", "conn=%llu what=rejects", (unsigned long long)c->id);
            return; /* still audited; only the notice to the peer is lost */
        }
        c->rejects = p;
        c->rejects_cap = cap;
    }
    memcpy(c->rejects + c->nrejects, r, (size_t)n * sizeof *r);
    c->nrejects += n;
}

/* Sends what the writer has committed for this session: rejections in
 * chunks that fit the peer's max_frame, the acks in the last frame. */
static void send_acks(sd_conn *c)
{
    int done = 0;
    int chunk = ACK_REJECTS_PER_FRAME;
    while (!sd__conn_dead(c) && (done < c->nrejects || c->nacks > 0)) {
        int nrej = c->nrejects - done < chunk ? c->nrejects - done : chunk;
        int last = done + nrej == c->nrejects;
        ss_msg m;
        memset(&m, 0, sizeof m);
        m.type = SS_FRAME_ACK;
        m.u.ack.nrejects = nrej;
        m.u.ack.rejects = c->rejects + done;
        m.u.ack.nacks = last ? c->nacks : 0;
        m.u.ack.acks = c->acks;
        size_t cap =
            256 + (size_t)m.u.ack.nacks * (SS_ID_MAX * 6 + 64) +
            (size_t)nrej * (SS_ID_MAX * 6 + SS_FIELD_NAME_MAX * 6 + SS_MSG_TEXT_MAX * 6 + 128);
        uint8_t *buf = malloc(cap);
        if (!buf) {
            sd__conn_abort(c, "no_memory");
            return;
        }
        int n = ss_msg_encode_frame(&m, buf, cap);
        if (n > 0 && (uint32_t)n - SS_FRAME_HEADER_LEN > c->peer_max_frame && nrej > 1) {
            free(buf);
            chunk = nrej / 2;
            continue;
        }
        if (n < 0) {
            SD_ERROR(c->srv->log, "encode_error", "conn=%llu type=ACK err=%s",
                     (unsigned long long)c->id, ss_err_name(n));
            free(buf);
            sd__conn_abort(c, "internal");
            return;
        }
        send_bytes(c, buf, (size_t)n);
        free(buf);
        done += nrej;
        if (last)
            c->nacks = 0;
    }
    c->nrejects = 0;
    c->nacks = 0;
}

/* ---- reading ----------------------------------------------------------- */

static void conn_pump(sd_conn *c);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sd_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

/* ---- ciphertext in ----------------------------------------------------- */

/* OpenSSL reads ciphertext from a read-only memory BIO laid over bytes we
 * already hold: the current read, in the server's shared read buffer, or
 * (held) a copy of what is left of it when it could not all be worked
 * through at once (window full, session row being written, frames that came
 * before WELCOME). A read-write memory BIO copied every read and kept the
 * size it grew to, one envelope and more (about 68 KB) per connection for
 * the rest of the session (docs/performance.md, "Fan-in"). Returns 0 or
 * SS_ENOMEM (nothing changed). */
static int set_cipher(sd_conn *c, const uint8_t *p, size_t n, uint8_t *held)
{
    static const uint8_t none[1];
    BIO *b = BIO_new_mem_buf(n ? p : none, (int)n);
    if (!b) {
        ERR_clear_error();
        return SS_ENOMEM;
    }
    /* Empty means "wait for more", not EOF. */
    BIO_set_mem_eof_return(b, -1);
    SSL_set0_rbio(c->tls.ssl, b); /* frees the previous BIO, not the bytes under it */
    c->tls.rbio = b;
    if (c->held != held) {
        ss_free(c->held);
        c->held = held;
    }
    return 0;
}

/* Hands a read's bytes to OpenSSL. Normally nothing is left of the previous
 * ones (reading resumes only once they are worked through); if something
 * is, both go, in order. */
static int feed_cipher(sd_conn *c, const uint8_t *p, size_t n)
{
    char *left_p = NULL;
    long left = BIO_get_mem_data(c->tls.rbio, &left_p);
    if (left <= 0)
        return set_cipher(c, p, n, NULL);
    uint8_t *h = ss_malloc((size_t)left + n);
    if (!h)
        return SS_ENOMEM;
    memcpy(h, left_p, (size_t)left);
    memcpy(h + left, p, n);
    int rc = set_cipher(c, h, (size_t)left + n, h);
    if (rc != 0)
        ss_free(h);
    return rc;
}

/* After a pump, the read BIO must not be left over the shared read buffer,
 * which the next read (of any connection) overwrites: what OpenSSL has not
 * read yet is copied (held) until it is. A held copy that has been read is
 * released. A closing session drops its unread input. */
static void settle_cipher(sd_conn *c)
{
    if (sd__conn_dead(c) || !c->tls.ssl)
        return;
    char *p = NULL;
    long left = BIO_get_mem_data(c->tls.rbio, &p);
    if (left <= 0 || c->shutting) {
        if (c->held || left > 0)
            set_cipher(c, NULL, 0, NULL); /* on failure the old BIO stays valid */
        return;
    }
    if (c->held)
        return; /* already ours */
    uint8_t *h = ss_malloc((size_t)left);
    if (!h) {
        set_error(c, "%s%s", "out of memory", "");
        sd__conn_abort(c, "no_memory");
        return;
    }
    memcpy(h, p, (size_t)left);
    if (set_cipher(c, h, (size_t)left, h) != 0) {
        ss_free(h);
        set_error(c, "%s%s", "out of memory", "");
        sd__conn_abort(c, "no_memory");
        return;
    }
    SD_DEBUG(c->srv->log, "input_held", "conn=%llu peer=%s bytes=%ld paused=%d state=%d",
             (unsigned long long)c->id, peer_node(c), left, c->paused, c->state);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sd_conn *c = st->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            set_error(c, "read: %s%s", uv_strerror((int)nread), "");
        else if (c->state < SD_CONN_READY)
            set_error(c, "%s%s", "peer closed before the session opened", "");
        sd__conn_abort(c, nread == UV_EOF ? "eof" : "read_error");
        return;
    }
    c->bytes_in += (uint64_t)nread;
    if (!c->tls.ssl && sd_tls_conn_setup(&c->tls, c->srv->ctx) != 0) {
        set_error(c, "%s%s", "out of memory", "");
        sd__conn_abort(c, "no_memory");
        return;
    }
    if (feed_cipher(c, (const uint8_t *)buf->base, (size_t)nread) != 0) {
        set_error(c, "%s%s", "out of memory", "");
        sd__conn_abort(c, "no_memory");
        return;
    }
    conn_pump(c);
}

static void set_reading(sd_conn *c, int on)
{
    if (sd__conn_dead(c) || c->shutting || on == c->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_idle(uv_timer_t *t);

static void arm_idle(sd_conn *c)
{
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_idle, c->srv->cfg->idle_timeout_ms, 0);
}

static void on_idle(uv_timer_t *t)
{
    sd_conn *c = container_of(t, sd_conn, timer);
    uint64_t idle = c->srv->cfg->idle_timeout_ms;
    uint64_t quiet = uv_now(c->srv->loop) - c->last_rx;
    if (c->state != SD_CONN_READY || c->shutting)
        return;
    /* Work in flight is not idleness: the writer is slow, not the peer. */
    if (quiet < idle || c->inflight > 0) {
        uv_timer_start(&c->timer, on_idle, quiet < idle ? idle - quiet : idle, 0);
        return;
    }
    SD_INFO(c->srv->log, "idle_timeout", "conn=%llu peer=%s idle_ms=%llu",
            (unsigned long long)c->id, peer_node(c), (unsigned long long)quiet);
    set_error(c, "%s%s", "idle timeout", "");
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_BYE;
    snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "idle timeout");
    send_msg(c, &m, 512);
    conn_finish(c, "idle_timeout");
}

static void on_deadline(uv_timer_t *t)
{
    sd_conn *c = container_of(t, sd_conn, timer);
    if (c->state > SD_CONN_HELLO)
        return;
    SD_WARN(c->srv->log, "handshake_timeout", "conn=%llu addr=%s state=%s bytes_in=%llu",
            (unsigned long long)c->id, c->peer.addr,
            c->state == SD_CONN_HANDSHAKE ? "tls" : "hello", (unsigned long long)c->bytes_in);
    set_error(c, "%s%s", "handshake deadline", "");
    if (c->state == SD_CONN_HELLO) {
        send_error(c, SS_ETIMEDOUT, "no HELLO before the handshake deadline", NULL, 0, 0, NULL);
        conn_finish(c, "handshake_timeout");
        return;
    }
    sd__conn_abort(c, "handshake_timeout");
}

/* ---- frames ------------------------------------------------------------ */

static void welcome(sd_conn *c);

static void on_session_begun(sd_job *job, void *arg)
{
    sd_conn *c = arg;
    c->jobs--;
    if (job->result.code == 0)
        c->peer.session_id = job->session_id;
    if (sd__conn_dead(c)) {
        end_session(c);
        maybe_free(c);
        return;
    }
    if (job->result.code != 0) {
        fail_close(c, SS_EDB, "cannot record the session", NULL, 0);
        return;
    }
    welcome(c);
}

static void handle_hello(sd_conn *c, const ss_frame *f)
{
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof verr);
    int rc = ss_msg_decode(SS_FRAME_HELLO, f->payload, f->len, &m, &verr);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "HELLO: %s%s%s", verr.msg[0] ? verr.msg : ss_strerror(rc),
                 verr.field[0] ? " field=" : "", verr.field);
        fail_close(c, rc, msg, NULL, 0);
        return;
    }
    ss_hello *h = &m.u.hello;
    const ss_ident *id = &c->peer.ident;
    char msg[256];
    if (h->proto != SS_PROTO_VERSION) {
        snprintf(msg, sizeof msg, "protocol version %u not supported (this daemon speaks %d)",
                 h->proto, SS_PROTO_VERSION);
        fail_close(c, SS_EVERSION, msg, NULL, 0);
        goto exit;
    }
    if (strcmp(h->node, id->node) != 0 || h->role != id->role) {
        /* Identity comes from the certificate; a peer claiming another is
         * either misconfigured or lying, and either way it is audited. */
        snprintf(msg, sizeof msg, "HELLO says %s/%s but the certificate says %s/%s", h->node,
                 ss_role_name(h->role), id->node, ss_role_name(id->role));
        audit_event(c, &c->peer, h->node, 0, "rejected:auth", msg);
        fail_close(c, SS_EAUTH, msg, NULL, 0);
        goto exit;
    }
    if (id->role != SS_ROLE_GATEWAY && id->role != SS_ROLE_RELAY) {
        snprintf(msg, sizeof msg, "role %s may not replicate to the daemon",
                 ss_role_name(id->role));
        fail_close(c, SS_EROLE, msg, NULL, 0);
        goto exit;
    }
    for (int i = 0; i < h->norigins; i++) {
        if (id->role != SS_ROLE_RELAY && strcmp(h->origins[i].origin, id->node) != 0) {
            snprintf(msg, sizeof msg, "only a relay may speak for other origins (%s)",
                     h->origins[i].origin);
            fail_close(c, SS_EROLE, msg, NULL, 0);
            goto exit;
        }
    }
    c->peer_max_frame = h->max_frame;
    c->origins = h->origins; /* kept for WELCOME */
    c->norigins = h->norigins;
    h->origins = NULL;
    h->norigins = 0;
    SD_INFO(c->srv->log, "hello", "conn=%llu peer=%s role=%s addr=%s origins=%d",
            (unsigned long long)c->id, id->node, ss_role_name(id->role), c->peer.addr, c->norigins);
    /* The deadline is met: from now on the timer measures idleness. */
    c->state = SD_CONN_OPENING;
    set_reading(c, 0);
    uv_timer_stop(&c->timer);
    sd_job *job = sd_job_new(SD_JOB_SESSION_BEGIN);
    if (!job) {
        fail_close(c, SS_ENOMEM, NULL, NULL, 0);
        goto exit;
    }
    job->peer = c->peer;
    job->now_ms = sd__now_ms();
    job->cb = on_session_begun;
    job->arg = c;
    c->session_begun = 1;
    if (submit(c, job) != 0) {
        c->session_begun = 0;
        fail_close(c, SS_ESHUTDOWN, NULL, NULL, 0);
    }
exit:
    ss_msg_free(&m);
}

static void welcome(sd_conn *c)
{
    sd_server *s = c->srv;
    ss_msg m;
    memset(&m, 0, sizeof m);
    m.type = SS_FRAME_WELCOME;
    ss_welcome *w = &m.u.welcome;
    w->proto = SS_PROTO_VERSION;
    snprintf(w->node, sizeof w->node, "%s", s->node);
    w->max_frame = (uint32_t)s->cfg->max_frame;
    w->window = (uint32_t)s->cfg->window;
    if (ss_hlc_now(&s->clock, (uint64_t)sd__now_ms(), &w->time) != 0) {
        fail_close(c, SS_ECLOCK, "server clock out of range", NULL, 0);
        return;
    }
    w->committed = calloc((size_t)c->norigins + 1, sizeof *w->committed);
    if (!w->committed) {
        fail_close(c, SS_ENOMEM, NULL, NULL, 0);
        return;
    }
    /* The peer's own node first, then each origin it relays (once each).
     * A read-only lookup of a few indexed rows: short enough for the loop. */
    int n = 0;
    for (int i = -1; i < c->norigins; i++) {
        const char *o = i < 0 ? c->peer.ident.node : c->origins[i].origin;
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= strcmp(w->committed[j].origin, o) == 0;
        if (dup)
            continue;
        uint64_t seq = 0;
        int rc = sd_store_committed(s->ro, o, &seq);
        if (rc != 0) {
            SD_ERROR(s->log, "store_error", "conn=%llu what=committed origin=%s err=%s",
                     (unsigned long long)c->id, o, ss_err_name(rc));
            free(w->committed);
            fail_close(c, SS_EDB, "cannot read committed sequences", NULL, 0);
            return;
        }
        snprintf(w->committed[n].origin, sizeof w->committed[n].origin, "%s", o);
        w->committed[n].seq = seq;
        n++;
    }
    w->ncommitted = n;
    size_t cap = 512 + (size_t)n * (SS_ID_MAX + 48);
    int rc = send_msg(c, &m, cap);
    free(w->committed);
    ss_free(c->origins);
    c->origins = NULL;
    c->norigins = 0;
    if (rc != 0)
        return;
    c->state = SD_CONN_READY;
    c->last_rx = uv_now(s->loop);
    arm_idle(c);
    /* A hub enforces revocation for the sites behind it, also while this
     * daemon is out of its reach: it gets our CRL with every session. */
    sd__conn_send_crl(c);
    if (sd__conn_dead(c))
        return;
    set_reading(c, 1);
    conn_pump(c); /* frames that arrived early */
}

void sd__conn_send_crl(sd_conn *c)
{
    sd_server *s = c->srv;
    if (sd__conn_dead(c) || c->shutting || c->state != SD_CONN_READY ||
        c->peer.ident.role != SS_ROLE_RELAY || !s->crl_der)
        return;
    if (s->crl_der_len > c->peer_max_frame) {
        SD_WARN(s->log, "crl_not_sent", "conn=%llu peer=%s crl_bytes=%zu peer_max_frame=%u",
                (unsigned long long)c->id, peer_node(c), s->crl_der_len, c->peer_max_frame);
        return;
    }
    size_t n = SS_FRAME_HEADER_LEN + s->crl_der_len;
    uint8_t *buf = malloc(n);
    if (!buf) {
        SD_ERROR(s->log, "no_memory", "conn=%llu what=crl_frame", (unsigned long long)c->id);
        return;
    }
    int w = ss_frame_encode(buf, n, SS_FRAME_CRL, 0, s->crl_der, s->crl_der_len);
    if (w > 0 && send_bytes(c, buf, (size_t)w) == 0)
        SD_INFO(s->log, "crl_sent", "conn=%llu peer=%s crl_bytes=%zu", (unsigned long long)c->id,
                peer_node(c), s->crl_der_len);
    free(buf);
}

static void on_apply_done(sd_job *job, void *arg)
{
    sd_conn *c = arg;
    sd_result *r = &job->result;
    c->jobs--;
    c->inflight--;
    if (sd__conn_dead(c)) {
        maybe_free(c);
        return;
    }
    c->counts.received += r->counts.received;
    c->counts.applied += r->counts.applied;
    c->counts.superseded += r->counts.superseded;
    c->counts.duplicate += r->counts.duplicate;
    c->counts.rejected += r->counts.rejected;
    if (r->code == 0) {
        add_ack(c, job->origin, r->committed);
        add_rejects(c, r->rejects, r->nrejects);
        mark_dirty(c);
        return;
    }
    /* Envelope refused as a whole: what was committed before it goes out
     * first so the peer sees events in order. */
    send_acks(c);
    if (r->code == SS_EGAP) {
        SD_INFO(c->srv->log, "gap", "conn=%llu peer=%s origin=%s resume=%llu",
                (unsigned long long)c->id, peer_node(c), job->origin,
                (unsigned long long)r->resume);
        send_error(c, SS_EGAP, r->message[0] ? r->message : NULL, job->origin, job->seq, r->resume,
                   NULL);
        mark_dirty(c); /* reading may resume */
        return;
    }
    if ((r->code == SS_ESIG || r->code == SS_ECERT || r->code == SS_EREVOKED) &&
        c->peer.ident.role == SS_ROLE_RELAY) {
        /* A relay carries many origins: one envelope that fails its origin
         * signature (forged or bent on the way, or from a revoked origin)
         * is refused and audited, and the honest envelopes behind it keep
         * flowing. Its sequence numbers were not consumed. */
        char q[300];
        SD_WARN(c->srv->log, "envelope_refused",
                "conn=%llu peer=%s origin=%s seq=%llu code=%s msg=%s", (unsigned long long)c->id,
                peer_node(c), job->origin, (unsigned long long)job->seq, ss_err_name(r->code),
                sd_log_quote(q, sizeof q, r->message));
        send_error(c, r->code, r->message[0] ? r->message : NULL, job->origin, job->seq, 0, NULL);
        mark_dirty(c);
        return;
    }
    fail_close(c, r->code, r->message[0] ? r->message : NULL, job->origin, job->seq);
}

static void handle_batch(sd_conn *c, const ss_frame *f)
{
    ss_envelope env;
    const uint8_t *bytes = f->payload;
    size_t len = f->len;
    ss_route route;
    route.nhops = 0;
    if (f->flags & SS_FRAME_FLAG_ROUTED) {
        /* Hops come only from a relay forwarding what another relay gave
         * it; a gateway sends its own journal and nothing else. */
        if (c->peer.ident.role != SS_ROLE_RELAY) {
            char msg[160];
            snprintf(msg, sizeof msg, "routed BATCH from %s %s: only a relay forwards",
                     ss_role_name(c->peer.ident.role), c->peer.ident.node);
            audit_event(c, &c->peer, NULL, 0, "rejected:forbidden_role", msg);
            fail_close(c, SS_EROLE, msg, NULL, 0);
            return;
        }
        size_t off = 0;
        int rc = ss_route_parse(f->payload, f->len, &route, &off);
        if (rc != 0) {
            fail_close(c, rc, "malformed route in routed BATCH", NULL, 0);
            return;
        }
        bytes += off;
        len -= off;
    }
    int rc = ss_envelope_parse(bytes, len, &env);
    if (rc != 0) {
        fail_close(c, rc, "malformed envelope", NULL, 0);
        return;
    }
    sd_job *job = sd_job_new(SD_JOB_APPLY);
    if (!job) {
        fail_close(c, SS_ENOMEM, NULL, NULL, 0);
        return;
    }
    /* The decoder's buffer becomes the job's (the writer frees it): no copy
     * of the envelope. A routed frame's hops go; the envelope moves to the
     * front. From here on f->payload belongs to the job. */
    size_t off = (size_t)(bytes - f->payload);
    uint8_t *buf = NULL;
    uint32_t flen = 0;
    if (ss_fdec_take(&c->dec, &buf, &flen) != 0 || !buf || (size_t)flen != off + len) {
        ss_free(buf);
        sd_job_free(job);
        fail_close(c, SS_EINTERNAL, "frame buffer not available", NULL, 0);
        return;
    }
    if (off > 0)
        memmove(buf, buf + off, len);
    job->env = buf;
    job->env_len = len;
    job->peer = c->peer;
    /* The audit path: "direct" from a gateway; from a relay, the hops it
     * claims (only the last, itself, is authenticated) and itself. */
    if (c->peer.ident.role == SS_ROLE_RELAY &&
        ss_route_format(&route, c->peer.ident.node, job->peer.path, sizeof job->peer.path) < 0)
        snprintf(job->peer.path, sizeof job->peer.path, "via %s", c->peer.ident.node);
    job->now_ms = sd__now_ms();
    snprintf(job->origin, sizeof job->origin, "%s", env.origin);
    job->seq = env.first_seq;
    job->cb = on_apply_done;
    job->arg = c;
    if (submit(c, job) != 0) {
        fail_close(c, SS_ESHUTDOWN, NULL, NULL, 0);
        return;
    }
    c->inflight++;
    if (c->inflight >= c->srv->cfg->window) {
        SD_DEBUG(c->srv->log, "backpressure", "conn=%llu peer=%s inflight=%u",
                 (unsigned long long)c->id, peer_node(c), c->inflight);
        /* Backpressure: the peer is ahead of the writer. Stop taking its
         * bytes until ACKs go out; frames already decrypted wait in pt. */
        c->paused = 1;
        set_reading(c, 0);
    }
}

static void begin_drain(sd_conn *c, const char *reason)
{
    c->state = SD_CONN_DRAIN;
    set_reading(c, 0);
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    mark_dirty(c);
}

static void handle_frame(sd_conn *c, const ss_frame *f)
{
    c->last_rx = uv_now(c->srv->loop);
    if (c->state == SD_CONN_HELLO) {
        if (f->type != SS_FRAME_HELLO) {
            fail_close(c, SS_EPROTO, "expected HELLO", NULL, 0);
            return;
        }
        handle_hello(c, f);
        return;
    }
    switch (f->type) {
    case SS_FRAME_BATCH:
        handle_batch(c, f);
        return;
    case SS_FRAME_PING:
    case SS_FRAME_PONG:
    case SS_FRAME_BYE:
    case SS_FRAME_ERROR:
        break;
    default: {
        char msg[64];
        snprintf(msg, sizeof msg, "unexpected %s frame", ss_frame_type_name(f->type));
        fail_close(c, SS_EPROTO, msg, NULL, 0);
        return;
    }
    }
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof verr);
    int rc = ss_msg_decode(f->type, f->payload, f->len, &m, &verr);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: %s%s%s", ss_frame_type_name(f->type),
                 verr.msg[0] ? verr.msg : ss_strerror(rc), verr.field[0] ? " field=" : "",
                 verr.field);
        fail_close(c, rc, msg, NULL, 0);
        return;
    }
    char q[300];
    switch (f->type) {
    case SS_FRAME_PING:
        m.type = SS_FRAME_PONG;
        send_msg(c, &m, 128);
        break;
    case SS_FRAME_BYE:
        SD_INFO(c->srv->log, "bye", "conn=%llu peer=%s reason=%s", (unsigned long long)c->id,
                peer_node(c), sd_log_quote(q, sizeof q, m.u.bye.reason));
        begin_drain(c, "peer_bye");
        break;
    case SS_FRAME_ERROR:
        SD_WARN(c->srv->log, "peer_error", "conn=%llu peer=%s code=%s msg=%s",
                (unsigned long long)c->id, peer_node(c), ss_err_name(m.u.error.code),
                sd_log_quote(q, sizeof q, m.u.error.message));
        set_error(c, "peer error %s: %s", ss_err_name(m.u.error.code), m.u.error.message);
        begin_drain(c, "peer_error");
        break;
    default:
        break; /* PONG: activity only */
    }
    ss_msg_free(&m);
}

/* Counts a failed handshake against the peer's address; past the limit the
 * listener refuses that address at accept for bad_handshake_penalty_ms. */
static void note_bad_handshake(sd_conn *c)
{
    sd_server *s = c->srv;
    uint64_t fails = 0;
    if (!c->have_akey)
        return;
    if (sd__penalty_fail(&s->penalty, &c->akey, uv_now(s->loop), &fails) == 1)
        SD_WARN(s->log, "addr_penalised",
                "addr=%s failures=%llu window_ms=%llu penalty_ms=%llu penalised_total=%llu", c->ip,
                (unsigned long long)s->cfg->bad_handshake_limit,
                (unsigned long long)s->cfg->bad_handshake_window_ms,
                (unsigned long long)s->cfg->bad_handshake_penalty_ms,
                (unsigned long long)s->penalty.penalised);
}

static void handshake_done(sd_conn *c)
{
    char fp[65], serial[41];
    int rc = sd_tls_peer(c->tls.ssl, &c->peer.ident, fp, serial);
    if (rc != 0) {
        SD_WARN(c->srv->log, "tls_refused", "conn=%llu addr=%s reason=%s",
                (unsigned long long)c->id, c->peer.addr,
                rc == SS_EIDENT ? "certificate_without_sitesync_identity" : "no_verified_cert");
        set_error(c, "%s%s", "certificate identity missing or malformed", "");
        note_bad_handshake(c);
        sd__conn_abort(c, ss_err_name(rc));
        return;
    }
    if (SSL_get_SSL_CTX(c->tls.ssl) != c->srv->ctx) {
        /* The handshake began before a reload: judge the certificate by the
         * CRL now in force. */
        char why[256];
        rc = sd_tls_recheck(c->srv->ctx, c->tls.ssl, why, sizeof why);
        if (rc != 0) {
            char q[300];
            SD_WARN(c->srv->log, "tls_refused", "conn=%llu addr=%s node=%s fp=%s reason=%s",
                    (unsigned long long)c->id, c->peer.addr, c->peer.ident.node, fp,
                    sd_log_quote(q, sizeof q, why));
            set_error(c, "tls: %s", why);
            note_bad_handshake(c);
            sd__conn_abort(c, "tls_refused");
            return;
        }
    }
    memcpy(c->peer.fingerprint, fp, sizeof fp);
    memcpy(c->peer.serial, serial, sizeof serial);
    c->have_peer = 1;
    c->state = SD_CONN_HELLO;
    hs_unlink(c); /* authenticated: no longer evictable */
    SD_INFO(c->srv->log, "tls_ok", "conn=%llu peer=%s role=%s addr=%s version=%s cipher=%s fp=%s",
            (unsigned long long)c->id, c->peer.ident.node, ss_role_name(c->peer.ident.role),
            c->peer.addr, SSL_get_version(c->tls.ssl), SSL_get_cipher_name(c->tls.ssl), fp);
}

static void handshake_failed(sd_conn *c)
{
    char e[512];
    const sd_tls_fail *f = &c->tls.fail;
    sd_tls_errors(e, sizeof e);
    const char *why = f->verify_err ? X509_verify_cert_error_string(f->verify_err) : e;
    char q[600];
    SD_WARN(c->srv->log, "tls_refused", "conn=%llu addr=%s node=%s fp=%s reason=%s",
            (unsigned long long)c->id, c->peer.addr, f->node[0] ? f->node : "-",
            f->have_cert ? f->fingerprint : "-", sd_log_quote(q, sizeof q, why[0] ? why : "-"));
    set_error(c, "tls: %s%s", why, "");
    if (f->verify_err == X509_V_ERR_CERT_REVOKED && f->have_cert) {
        /* A revoked certificate still in use is worth an audit entry: it
         * may be a stolen device. */
        sd_peer p = c->peer;
        snprintf(p.ident.node, sizeof p.ident.node, "%s", f->node);
        memcpy(p.fingerprint, f->fingerprint, sizeof p.fingerprint);
        memcpy(p.serial, f->serial, sizeof p.serial);
        audit_event(c, &p, f->node, 0, "rejected:revoked", "certificate revoked (handshake)");
    }
    note_bad_handshake(c);
    flush_out(c); /* the TLS alert, best effort */
    sd__conn_abort(c, "tls_refused");
}

/* Runs TLS and the frame decoder as far as the buffered bytes, the state
 * and the window allow. */
static void pump(sd_conn *c)
{
    if (c->state == SD_CONN_HANDSHAKE) {
        int r = SSL_do_handshake(c->tls.ssl);
        if (r != 1) {
            int e = SSL_get_error(c->tls.ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                flush_out(c);
                return;
            }
            handshake_failed(c);
            return;
        }
        flush_out(c);
        if (sd__conn_dead(c))
            return;
        handshake_done(c);
    }
    while ((c->state == SD_CONN_HELLO || c->state == SD_CONN_READY) && !c->paused && !c->shutting) {
        if (c->pt_pos == c->pt_len) {
            if (!c->pt && !(c->pt = ss_malloc(SD_PLAIN_BUF))) {
                fail_close(c, SS_ENOMEM, NULL, NULL, 0);
                return;
            }
            int n = SSL_read(c->tls.ssl, c->pt, SD_PLAIN_BUF);
            if (n <= 0) {
                int e = SSL_get_error(c->tls.ssl, n);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_ZERO_RETURN) {
                    if (c->state != SD_CONN_READY || c->inflight > 0)
                        set_error(c, "%s%s", "peer closed the TLS session with work in flight", "");
                    flush_out(c); /* what this burst produced (corked) still goes */
                    sd__conn_abort(c, "peer_close_notify");
                    return;
                }
                char e2[256];
                set_error(c, "tls read: %s%s", sd_tls_errors(e2, sizeof e2), "");
                sd__conn_abort(c, "tls_error");
                return;
            }
            c->pt_pos = 0;
            c->pt_len = (size_t)n;
        }
        size_t used = 0;
        int r = ss_fdec_feed(&c->dec, c->pt + c->pt_pos, c->pt_len - c->pt_pos, &used);
        c->pt_pos += used;
        if (r < 0) {
            char msg[128];
            if (r == SS_EOVERSIZE)
                snprintf(msg, sizeof msg, "frame larger than max_frame %llu",
                         (unsigned long long)c->srv->cfg->max_frame);
            else
                snprintf(msg, sizeof msg, "bad frame header: %s", ss_strerror(r));
            fail_close(c, r, msg, NULL, 0);
            return;
        }
        if (r == 1) {
            ss_frame f;
            if (ss_fdec_frame(&c->dec, &f) == 0)
                handle_frame(c, &f);
        }
    }
    if (c->pt && c->pt_pos == c->pt_len) {
        ss_free(c->pt);
        c->pt = NULL;
    }
}

/* Between frames, a large decoder buffer is not kept (the last frame has
 * been handled: the empty feed releases it). */
static void trim_decoder(sd_conn *c)
{
    size_t used = 0;
    if (sd__conn_dead(c) || ss_fdec_pending(&c->dec) != 0)
        return;
    if (ss_fdec_feed(&c->dec, NULL, 0, &used) == 0)
        ss_fdec_trim(&c->dec, SD_CONN_BUF_KEEP);
}

static void conn_pump(sd_conn *c)
{
    cork(c);
    pump(c);
    settle_cipher(c);
    trim_decoder(c);
    uncork(c);
}

/* ---- server hooks ------------------------------------------------------ */

static void conn_flush(sd_conn *c);

void sd__conn_flush(sd_conn *c)
{
    c->in_dirty = 0;
    cork(c);
    conn_flush(c);
    uncork(c);
}

static void conn_flush(sd_conn *c)
{
    if (sd__conn_dead(c))
        return;
    send_acks(c);
    if (sd__conn_dead(c))
        return;
    if (c->state == SD_CONN_DRAIN) {
        if (c->inflight == 0 && !c->shutting) {
            ss_msg m;
            memset(&m, 0, sizeof m);
            m.type = SS_FRAME_BYE;
            snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "%s",
                     c->srv->draining ? "server shutting down" : "goodbye");
            send_msg(c, &m, 512);
            conn_finish(c, c->close_reason[0] ? c->close_reason : "bye");
        }
        return;
    }
    if (c->paused && c->inflight < c->srv->cfg->window && c->state == SD_CONN_READY) {
        c->paused = 0;
        conn_pump(c); /* frames already buffered first */
        if (!c->paused)
            set_reading(c, 1);
    }
}

void sd__conn_drain(sd_conn *c, const char *reason)
{
    if (sd__conn_dead(c) || c->shutting)
        return;
    if (c->state == SD_CONN_READY) {
        begin_drain(c, reason);
        return;
    }
    if (c->state == SD_CONN_DRAIN)
        return;
    if (c->state == SD_CONN_HELLO || c->state == SD_CONN_OPENING)
        send_error(c, SS_ESHUTDOWN, NULL, NULL, 0, 0, NULL);
    sd__conn_abort(c, reason);
}

void sd__conn_recheck(sd_conn *c)
{
    if (sd__conn_dead(c) || !c->have_peer)
        return;
    char why[256];
    int rc = sd_tls_recheck(c->srv->ctx, c->tls.ssl, why, sizeof why);
    if (rc == 0)
        return;
    char q[300];
    SD_WARN(c->srv->log, "session_revoked", "conn=%llu peer=%s fp=%s reason=%s",
            (unsigned long long)c->id, c->peer.ident.node, c->peer.fingerprint,
            sd_log_quote(q, sizeof q, why));
    audit_event(c, &c->peer, c->peer.ident.node, 0,
                rc == SS_EREVOKED ? "rejected:revoked" : "rejected:bad_certificate",
                "certificate no longer valid after reload");
    fail_close(c, rc, why, NULL, 0);
}

/* How long a connection is safe from eviction after its accept. An honest
 * client's ClientHello follows its TCP handshake after a key share is made
 * and the bytes cross the network: tens of ms on a loaded host, more on a
 * gateway's small CPU. Without a grace, a reconnecting swarm against a full
 * daemon drains hundreds of its connects from the backlog in one turn, each
 * evicting the oldest silent connection, and a connection accepted a few ms
 * earlier in the same burst (an honest one whose hello was not yet sent)
 * was evicted before it could speak (seen in
 * hostile_slowloris_over_max_connections: evicted at 3-4 ms of age). Half
 * the handshake deadline when that is shorter. */
#define SD_EVICT_GRACE_MS 500u
static uint64_t evict_grace(const sd_server *s)
{
    uint64_t half = s->cfg->handshake_timeout_ms / 2;
    return half < SD_EVICT_GRACE_MS ? half : SD_EVICT_GRACE_MS;
}

/* The connection to close when max_connections is reached, or NULL and in
 * *wait_ms how long until one may be. Candidates are the connections still
 * in the handshake that have had their grace, oldest first (the queue is in
 * accept order). First those the daemon has not answered yet (no whole
 * ClientHello: nothing written), the one that has sent the fewest bytes
 * (read, or waiting in its socket), the oldest on a tie: a silent slowloris
 * or a flood's dead socket has sent nothing, a trickling one a few bytes.
 * An honest client sends its whole ClientHello at once and is answered, so
 * it is passed over even when an attacker's reconnect churn makes it one of
 * the oldest, and even when its next flight is slow (a client certificate
 * to sign on a loaded host: seen under ASan, evicted at 297 bytes in while
 * the only candidate past its grace). If none of those has had its grace
 * but a younger connection is still to be judged, wait for it; only when
 * every connection left is an answered handshake does the oldest go, as
 * the handshake deadline would take it anyway. A whole ClientHello still
 * unread in the socket counts as answered (a daemon descheduled for the
 * grace finds every connection old at once; seen under ASan as an honest
 * client reset 1.7 s into its handshake). Bounded work: at most
 * SD_EVICT_SCAN connections looked at, an ioctl and a peek each. */
#define SD_EVICT_SCAN 64

/* 1 if a whole TLS handshake record (a ClientHello) waits unread in the
 * socket: the peer has spoken and the loop has not got to it yet (a
 * stalled or descheduled daemon ages every connection at once). A
 * trickler never has one. */
static int whole_record_waiting(uv_os_fd_t fd, int avail)
{
    uint8_t h[5];
    if (avail < (int)sizeof h ||
        recv(fd, h, sizeof h, MSG_PEEK | MSG_DONTWAIT) != (ssize_t)sizeof h)
        return 0;
    return h[0] == 0x16 && avail >= (int)sizeof h + ((int)h[3] << 8 | h[4]);
}

static sd_conn *evict_pick(sd_server *s, uint64_t *wait_ms)
{
    sd_conn *best = NULL, *answered = NULL, *c = s->hs_head;
    uint64_t best_bytes = UINT64_MAX, now = uv_now(s->loop), grace = evict_grace(s);
    *wait_ms = 0;
    for (int k = 0; c && k < SD_EVICT_SCAN; c = c->hs_next, k++) {
        if (now - c->accept_ms < grace)
            break; /* the rest are younger */
        uv_os_fd_t fd;
        int avail = 0;
        if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, FIONREAD, &avail) != 0)
            avail = 0;
        if (c->bytes_out > 0 || (c->bytes_in == 0 && whole_record_waiting(fd, avail))) {
            if (!answered)
                answered = c;
            continue;
        }
        uint64_t sent = c->bytes_in + (uint64_t)(avail > 0 ? avail : 0);
        if (sent < best_bytes) {
            best = c;
            best_bytes = sent;
            if (sent == 0)
                break; /* nothing can be fewer */
        }
    }
    if (best)
        return best;
    if (c && now - c->accept_ms < grace) {
        *wait_ms = c->accept_ms + grace - now;
        return NULL;
    }
    return answered;
}

uint64_t sd__conn_accept_wait(sd_server *s)
{
    if (s->draining || s->nlive < s->cfg->max_connections || !s->hs_head)
        return 0; /* room, or refused at once (shutting down, all authenticated) */
    uint64_t wait_ms = 0;
    return evict_pick(s, &wait_ms) ? 0 : wait_ms;
}

void sd__conn_accept(sd_server *s)
{
    sd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        SD_ERROR(s->log, "no_memory", "what=connection");
        return;
    }
    c->srv = s;
    c->id = ++s->next_id;
    c->accept_ms = uv_now(s->loop);
    snprintf(c->peer.path, sizeof c->peer.path, "direct");
    snprintf(c->peer.addr, sizeof c->peer.addr, "?");
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    sd_tls_conn_init(&c->tls);
    ss_fdec_init(&c->dec, (uint32_t)s->cfg->max_frame);
    /* Linked before anything can fail so every path ends in conn_free. */
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nlive++;

    int rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        SD_WARN(s->log, "accept_error", "err=%s", uv_strerror(rc));
        sd__conn_abort(c, "accept_error");
        return;
    }
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen);
    if (rc == UV_ENOTCONN) {
        /* Reset while it waited in the backlog (a flood's connect-and-
         * reset): nobody to serve, and whatever bytes it left behind would
         * cost TLS work from an address no penalty can name. */
        c->quiet = 1;
        SD_DEBUG(s->log, "conn_refused", "addr=? reason=peer_gone");
        sd__conn_abort(c, "peer_gone");
        return;
    }
    if (rc == 0) {
        char ip[INET6_ADDRSTRLEN];
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        snprintf(c->peer.addr, sizeof c->peer.addr, "%s:%d", ip, port);
        snprintf(c->ip, sizeof c->ip, "%s", ip);
        c->have_akey = sd__penalty_key((const struct sockaddr *)&sa, &c->akey) == 0;
    }
    uint32_t nrefused = 0;
    uint64_t left =
        c->have_akey ? sd__penalty_check(&s->penalty, &c->akey, uv_now(s->loop), &nrefused) : 0;
    if (left > 0) {
        /* Closed before any TLS work: this is what the penalty saves. Only
         * the first refusal of a penalty is a warning, so a flood of
         * refused connections cannot flood the log as well. */
        c->quiet = 1;
        sd_log_write(s->log, nrefused == 1 ? SD_LOG_WARN : SD_LOG_DEBUG, "conn_refused",
                     "addr=%s reason=bad_handshakes retry_ms=%llu refused=%u", c->peer.addr,
                     (unsigned long long)left, nrefused);
        sd__conn_abort(c, "bad_handshakes");
        return;
    }
    uint64_t wait_ms = 0;
    sd_conn *old =
        !s->draining && s->nlive > s->cfg->max_connections ? evict_pick(s, &wait_ms) : NULL;
    if (old) {
        /* Full. A connection still in its TLS handshake makes way (see
         * evict_pick): without this a few thousand slowloris or dead
         * sockets would lock every gateway out until their handshake
         * deadline. Authenticated sessions are never evicted. */
        old->quiet = 1;
        set_error(old,
                  "evicted: max_connections reached while in the handshake, %llu ms after accept",
                  (unsigned long long)(uv_now(s->loop) - old->accept_ms));
        sd__conn_abort(old, "evicted");
        s->evicted++;
        uint64_t now = uv_now(s->loop);
        if (s->evicted_logged == 0 || now - s->evict_warn_ms >= 1000) {
            /* One warning a second at most, with the count since the last. */
            SD_WARN(s->log, "conn_evicted",
                    "reason=max_connections max=%llu evicted=%llu since_last=%llu",
                    (unsigned long long)s->cfg->max_connections, (unsigned long long)s->evicted,
                    (unsigned long long)(s->evicted - s->evicted_logged));
            s->evicted_logged = s->evicted;
            s->evict_warn_ms = now;
        }
    }
    if (s->draining || s->nlive > s->cfg->max_connections) {
        SD_WARN(s->log, "conn_refused", "addr=%s reason=%s live=%zu max=%llu", c->peer.addr,
                s->draining ? "shutting_down" : "max_connections", s->nlive - 1,
                (unsigned long long)s->cfg->max_connections);
        sd__conn_abort(c, s->draining ? "shutting_down" : "max_connections");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* The SSL object is made when the first byte arrives (on_read): a
     * connection that never speaks (a flood of connects, a silent
     * slowloris) costs a descriptor and this struct, not a TLS context. */
    hs_push(c);
    SD_DEBUG(s->log, "conn_open", "conn=%llu addr=%s", (unsigned long long)c->id, c->peer.addr);
    /* Absolute: trickling bytes does not extend it. */
    uv_timer_start(&c->timer, on_deadline, s->cfg->handshake_timeout_ms, 0);
    set_reading(c, 1);
}
