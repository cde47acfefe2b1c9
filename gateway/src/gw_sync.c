/* gw_sync.c - the replication client session: HELLO/WELCOME, resume from the
 * daemon's committed sequence, pipelined BATCH envelopes built straight from
 * journal bytes, ACKs advancing the checkpoint, refusals recorded locally,
 * gap rewinds and keep-alive. docs/protocol.md is the wire reference. */
#include "gw/sync.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"

#define RX_CHUNK 4096
#define SOFTWARE "sitesync-gw 0.1.0"

void gw_sync_config_default(gw_sync_config *c)
{
    c->max_frame = 256u << 10;
    c->window = 8;
    c->batch_max = 512;
    c->handshake_timeout_ms = 10000;
    c->io_timeout_ms = 30000;
    c->ping_interval_ms = 10000;
    c->backoff_min_ms = 1000;
    c->backoff_max_ms = 300000;
}

void gw_sync_init(gw_sync *s)
{
    memset(s, 0, sizeof(*s));
}

int gw_sync_setup(gw_sync *s, const gw_sync_config *cfg)
{
    gw_sync_init(s);
    if (cfg->max_frame < 4096 || cfg->max_frame > SS_FRAME_ABSOLUTE_MAX || cfg->window < 1 ||
        cfg->window > 256 || cfg->batch_max < 1 || cfg->batch_max > SS_ENV_MAX_COUNT ||
        cfg->ping_interval_ms < 1 || cfg->io_timeout_ms < cfg->ping_interval_ms ||
        cfg->backoff_min_ms < 1 || cfg->backoff_max_ms < cfg->backoff_min_ms)
        return SS_EINVAL;
    s->cfg = *cfg;
    s->buf_cap = (size_t)cfg->max_frame + SS_FRAME_HEADER_LEN;
    s->buf = ss_malloc(s->buf_cap);
    s->inflight = ss_malloc(sizeof(uint64_t) * 2 * cfg->window);
    if (!s->buf || !s->inflight) {
        gw_sync_free(s);
        return SS_ENOMEM;
    }
    ss_fdec_init(&s->dec, cfg->max_frame);
    s->setup_done = 1;
    return 0;
}

void gw_sync_free(gw_sync *s)
{
    if (!s)
        return;
    ss_free(s->buf);
    ss_free(s->inflight);
    s->buf = NULL;
    s->inflight = NULL;
    if (s->setup_done)
        ss_fdec_free(&s->dec);
    s->setup_done = 0;
}

uint32_t gw_backoff_ms(const fws *shim, const gw_sync_config *cfg, unsigned attempt)
{
    uint64_t d = cfg->backoff_min_ms;
    for (unsigned i = 0; i < attempt && d < cfg->backoff_max_ms; i++)
        d *= 2;
    if (d > cfg->backoff_max_ms)
        d = cfg->backoff_max_ms;
    uint8_t r[4] = { 0, 0, 0, 0 };
    (void)fws_entropy(shim, r, sizeof(r)); /* no entropy: no jitter, still a delay */
    uint32_t x = ((uint32_t)r[0] << 24) | ((uint32_t)r[1] << 16) | ((uint32_t)r[2] << 8) | r[3];
    uint64_t half = d / 2;
    return (uint32_t)(half + x % (d - half + 1));
}

int gw_lost_placeholder(uint64_t seq, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "{\"seq\":%" PRIu64 ",\"lost\":\"gateway journal entry failed its checksum\"}",
                     seq);
    if (n < 0 || (size_t)n >= cap)
        return SS_ENOSPC;
    return n;
}

/* ---- one session ---------------------------------------------------------- */

typedef struct sess {
    gw_sync *s;
    gw_node *n;
    gw_journal *j;
    gw_stream *st;
    gw_sync_result *res;
    uint32_t window, max_frame;
    uint64_t next_send;
    uint32_t nin;
    int64_t last_rx;
    uint8_t rx[RX_CHUNK];
    size_t rx_off, rx_len;
} sess;

static int fail(sess *x, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sess *x, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->res->message, sizeof(x->res->message), fmt, ap);
    va_end(ap);
    x->res->err = err;
    fws_log(x->n->shim, FWS_LOG_WARN, "event=sync_failed err=%s reason=\"%s\"", ss_err_name(err),
            x->res->message);
    return err;
}

static int send_msg(sess *x, const ss_msg *m)
{
    int len = ss_msg_encode_frame(m, x->s->buf, x->s->buf_cap);
    if (len < 0)
        return fail(x, len, "cannot encode %s", ss_frame_type_name(m->type));
    int rc = x->st->ops->send(x->st->ctx, x->s->buf, (size_t)len, x->s->cfg.io_timeout_ms);
    if (rc < 0)
        return fail(x, rc, "send %s: %s", ss_frame_type_name(m->type), ss_strerror(rc));
    return 0;
}

/* Waits up to timeout_ms for one whole frame. Returns 1 with *f (valid until
 * the next call), 0 on timeout, or an error (the link failed or the stream
 * cannot be decoded). */
static int recv_frame(sess *x, uint32_t timeout_ms, ss_frame *f)
{
    int64_t deadline = fws_mono_ms(x->n->shim) + timeout_ms;
    for (;;) {
        while (x->rx_off < x->rx_len) {
            size_t used = 0;
            int rc = ss_fdec_feed(&x->s->dec, x->rx + x->rx_off, x->rx_len - x->rx_off, &used);
            x->rx_off += used;
            if (rc < 0)
                return fail(x, rc, "undecodable frame from the daemon: %s", ss_strerror(rc));
            if (rc == 1)
                return ss_fdec_frame(&x->s->dec, f) == 0 ? 1 : SS_EINTERNAL;
        }
        int64_t left = deadline - fws_mono_ms(x->n->shim);
        if (left <= 0)
            return 0;
        int rc = x->st->ops->recv(x->st->ctx, x->rx, sizeof(x->rx), (uint32_t)left);
        if (rc == SS_ETIMEDOUT)
            return 0;
        if (rc < 0)
            return fail(x, rc, "link: %s", ss_strerror(rc));
        x->rx_off = 0;
        x->rx_len = (size_t)rc;
        x->last_rx = fws_mono_ms(x->n->shim);
    }
}

/* Builds one envelope from pending journal entries, in place after room for
 * the frame and envelope headers: the body is "[" e1 "," e2 ... "]" with each
 * entry's bytes exactly as journaled, so nothing is re-serialised. */
static int send_batch(sess *x)
{
    const char *origin = x->n->ident.node;
    size_t hl = ss_envelope_header_len(origin);
    uint8_t *buf = x->s->buf;
    size_t limit = (size_t)x->max_frame + SS_FRAME_HEADER_LEN;
    if (limit > x->s->buf_cap)
        limit = x->s->buf_cap;
    /* Room for the signature trailer (the certificate and the signature). */
    size_t reserve = x->s->signer ? gw_sign_reserve(x->s->signer) : 0;
    limit -= reserve;
    size_t body = SS_FRAME_HEADER_LEN + hl, pos = body;
    uint64_t first = x->next_send, seq = first, next = gw_journal_next_seq(x->j);
    uint32_t count = 0;
    buf[pos++] = '[';
    for (; seq < next && count < x->s->cfg.batch_max; seq++) {
        size_t comma = count > 0, start = pos + comma, len = 0;
        if (start + 1 >= limit)
            break;
        size_t avail = limit - start - 1; /* keep room for ']' */
        int rc = gw_journal_read(x->j, seq, buf + start, avail, &len);
        if (rc == SS_ECORRUPT) {
            /* Lost to corruption: send the placeholder the daemon refuses
             * and audits, never anything of the damaged bytes. */
            char ph[128];
            rc = gw_lost_placeholder(seq, ph, sizeof(ph));
            if (rc < 0)
                return fail(x, rc, "placeholder");
            if ((size_t)rc > avail)
                break;
            memcpy(buf + start, ph, (size_t)rc);
            len = (size_t)rc;
            x->res->placeholders++;
        } else if (rc == SS_ENOSPC) {
            if (count == 0)
                return fail(x, SS_EOVERSIZE, "entry %" PRIu64 " does not fit max_frame %u", seq,
                            x->max_frame);
            break;
        } else if (rc < 0) {
            return fail(x, rc, "journal read of seq %" PRIu64 ": %s", seq, ss_strerror(rc));
        }
        if (comma)
            buf[pos] = ',';
        pos = start + len;
        count++;
    }
    if (count == 0)
        return 0;
    buf[pos++] = ']';
    size_t body_len = pos - body;
    int rc = ss_envelope_write_header(buf + SS_FRAME_HEADER_LEN, hl, origin, first, count,
                                      (uint32_t)body_len, 0);
    if (rc < 0)
        return fail(x, rc, "envelope header: %s", ss_strerror(rc));
    size_t env_len = hl + body_len;
    if (x->s->signer) {
        rc =
            gw_sign_envelope(x->s->signer, buf + SS_FRAME_HEADER_LEN, env_len, x->s->buf_cap - pos);
        if (rc < 0)
            return fail(x, rc, "cannot sign the envelope: %s", ss_strerror(rc));
        env_len += (size_t)rc;
        pos += (size_t)rc;
    }
    rc = ss_frame_write_header(buf, SS_FRAME_BATCH, 0, (uint32_t)env_len);
    if (rc < 0)
        return fail(x, rc, "frame header: %s", ss_strerror(rc));
    rc = x->st->ops->send(x->st->ctx, buf, pos, x->s->cfg.io_timeout_ms);
    if (rc < 0)
        return fail(x, rc, "send BATCH: %s", ss_strerror(rc));
    x->s->inflight[2 * x->nin] = first;
    x->s->inflight[2 * x->nin + 1] = first + count - 1;
    x->nin++;
    x->next_send = first + count;
    x->res->envelopes++;
    x->res->changes += count;
    return 0;
}

static void pop_acked(sess *x)
{
    uint64_t acked = gw_journal_acked(x->j);
    uint32_t k = 0;
    for (uint32_t i = 0; i < x->nin; i++) {
        if (x->s->inflight[2 * i + 1] <= acked)
            continue;
        x->s->inflight[2 * k] = x->s->inflight[2 * i];
        x->s->inflight[2 * k + 1] = x->s->inflight[2 * i + 1];
        k++;
    }
    x->nin = k;
    if (x->next_send <= acked)
        x->next_send = acked + 1;
}

static int handle_ack(sess *x, const ss_ack *a)
{
    const char *me = x->n->ident.node;
    uint64_t acked = gw_journal_acked(x->j), best = 0;
    /* Refusals first, while their entries are still in the journal, so the
     * local record holds the change itself. */
    for (int i = 0; i < a->nrejects; i++) {
        const ss_reject *r = &a->rejects[i];
        if (strcmp(r->origin, me) != 0 || r->seq <= acked)
            continue;
        size_t len = 0;
        int lost = 0;
        int rc = gw_journal_read(x->j, r->seq, x->s->buf, x->s->buf_cap, &len);
        if (rc == SS_ECORRUPT)
            lost = 1;
        if (rc < 0)
            len = 0;
        rc = gw_journal_note_refused(x->j, r->seq, ss_err_name(r->code), r->field, r->message,
                                     (const char *)x->s->buf, len, lost);
        if (rc < 0)
            return fail(x, rc, "cannot record refused change %" PRIu64, r->seq);
        if (!lost)
            x->res->refused++;
    }
    for (int i = 0; i < a->nacks; i++)
        if (strcmp(a->acks[i].origin, me) == 0 && a->acks[i].seq > best)
            best = a->acks[i].seq;
    if (best > acked) {
        if (best >= x->next_send && best >= gw_journal_next_seq(x->j))
            fws_log(x->n->shim, FWS_LOG_WARN,
                    "event=ack_beyond_journal acked=%" PRIu64 " next_seq=%" PRIu64, best,
                    gw_journal_next_seq(x->j));
        int rc = gw_journal_ack(x->j, best);
        if (rc < 0)
            return fail(x, rc, "checkpoint write failed: %s", ss_strerror(rc));
    }
    pop_acked(x);
    return 0;
}

static int handle_error(sess *x, const ss_error *e)
{
    if (e->code != SS_EGAP || (e->origin[0] && strcmp(e->origin, x->n->ident.node) != 0))
        return fail(x, e->code, "daemon error %s: %s", ss_err_name(e->code), e->message);
    uint64_t acked = gw_journal_acked(x->j), r = e->resume ? e->resume : acked + 1;
    if (r <= acked) {
        /* The daemon is behind what it once acknowledged to us (restored
         * from an old backup?): those entries were reclaimed here. */
        return fail(x, SS_ESEQ,
                    "daemon resumes at %" PRIu64 " but it acknowledged up to %" PRIu64
                    " before; reclaimed entries cannot be resent",
                    r, acked);
    }
    if (r - 1 > acked) {
        int rc = gw_journal_ack(x->j, r - 1);
        if (rc < 0)
            return fail(x, rc, "checkpoint write failed: %s", ss_strerror(rc));
    }
    x->res->gaps++;
    x->nin = 0;
    x->next_send = r;
    fws_log(x->n->shim, FWS_LOG_INFO, "event=sync_gap resume=%" PRIu64, r);
    return 0;
}

static int handshake(sess *x)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    memcpy(m.u.hello.node, x->n->ident.node, sizeof(m.u.hello.node));
    m.u.hello.role = x->n->ident.role;
    m.u.hello.max_frame = x->s->cfg.max_frame;
    memcpy(m.u.hello.software, SOFTWARE, sizeof(SOFTWARE));
    int rc = send_msg(x, &m);
    if (rc < 0)
        return rc;
    ss_frame f;
    rc = recv_frame(x, x->s->cfg.handshake_timeout_ms, &f);
    if (rc == 0)
        return fail(x, SS_ETIMEDOUT, "no WELCOME within %u ms", x->s->cfg.handshake_timeout_ms);
    if (rc < 0)
        return rc;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    if (f.type != SS_FRAME_WELCOME && f.type != SS_FRAME_ERROR)
        return fail(x, SS_EPROTO, "expected WELCOME, got %s", ss_frame_type_name(f.type));
    rc = ss_msg_decode(f.type, f.payload, f.len, &m, &verr);
    if (rc < 0)
        return fail(x, rc, "bad %s: %s", ss_frame_type_name(f.type), verr.msg);
    if (m.type == SS_FRAME_ERROR) {
        rc = fail(x, m.u.error.code, "daemon refused the session: %s: %s",
                  ss_err_name(m.u.error.code), m.u.error.message);
        ss_msg_free(&m);
        return rc;
    }
    const ss_welcome *w = &m.u.welcome;
    uint64_t committed = 0;
    for (int i = 0; i < w->ncommitted; i++)
        if (strcmp(w->committed[i].origin, x->n->ident.node) == 0)
            committed = w->committed[i].seq;
    x->res->committed = committed;
    x->window = x->s->cfg.window;
    if (w->window > 0 && w->window < x->window)
        x->window = w->window;
    x->max_frame = x->s->cfg.max_frame;
    if (w->max_frame > 0 && w->max_frame < x->max_frame)
        x->max_frame = w->max_frame;
    ss_hlc_t t = w->time;
    ss_msg_free(&m);
    rc = gw_node_adopt_time(x->n, t);
    if (rc < 0)
        return fail(x, rc, "cannot persist the daemon's time: %s", ss_strerror(rc));
    uint64_t acked = gw_journal_acked(x->j);
    if (!gw_journal_confirmed(x->j)) {
        /* First answer this journal ever got. If the upstream already holds
         * our first pending number, those numbers belong to a journal this
         * device lost: renumber ours after them instead of letting them be
         * taken as acknowledged. Confirmed durably before any BATCH goes. */
        uint64_t next = gw_journal_next_seq(x->j);
        if (next > acked + 1 && committed >= acked + 1) {
            rc = gw_journal_renumber(x->j, committed);
            if (rc < 0)
                return fail(x, rc, "cannot renumber the journal after storage loss: %s",
                            ss_strerror(rc));
            x->res->renumbered = (uint64_t)rc;
        } else {
            rc = gw_journal_confirm(x->j);
            if (rc < 0)
                return fail(x, rc, "checkpoint write failed: %s", ss_strerror(rc));
        }
        acked = gw_journal_acked(x->j);
    }
    if (committed > acked) {
        /* The daemon has more than our checkpoint says (ACK lost, or our
         * storage was lost): resume after it; the journal's next sequence
         * moves past it too if needed. */
        rc = gw_journal_ack(x->j, committed);
        if (rc < 0)
            return fail(x, rc, "checkpoint write failed: %s", ss_strerror(rc));
    } else if (committed < acked) {
        fws_log(x->n->shim, FWS_LOG_WARN,
                "event=daemon_behind committed=%" PRIu64 " acked=%" PRIu64, committed, acked);
    }
    x->next_send = gw_journal_acked(x->j) + 1;
    fws_log(x->n->shim, FWS_LOG_INFO,
            "event=sync_welcome committed=%" PRIu64 " pending=%" PRIu64 " window=%u", committed,
            gw_journal_next_seq(x->j) - x->next_send, x->window);
    return 0;
}

static int session(sess *x)
{
    int rc = handshake(x);
    if (rc < 0)
        return rc;
    for (;;) {
        uint64_t next = gw_journal_next_seq(x->j);
        int stopping = x->s->stop && *x->s->stop;
        if (stopping && x->nin == 0) {
            ss_msg m;
            memset(&m, 0, sizeof(m));
            m.type = SS_FRAME_BYE;
            memcpy(m.u.bye.reason, "shutting down", 14);
            (void)send_msg(x, &m);
            return fail(x, SS_ESHUTDOWN, "stopped by request with %" PRIu64 " pending",
                        next - 1 - gw_journal_acked(x->j));
        }
        while (!stopping && x->nin < x->window && x->next_send < next) {
            uint32_t before = x->nin;
            rc = send_batch(x);
            if (rc < 0)
                return rc;
            if (x->nin == before)
                break;
        }
        if (x->nin == 0 && x->next_send >= next) {
            ss_msg m;
            memset(&m, 0, sizeof(m));
            m.type = SS_FRAME_BYE;
            memcpy(m.u.bye.reason, "drained", 8);
            (void)send_msg(x, &m); /* drained either way */
            return 0;
        }
        ss_frame f;
        rc = recv_frame(x, x->s->cfg.ping_interval_ms, &f);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            int64_t silent = fws_mono_ms(x->n->shim) - x->last_rx;
            if (silent >= (int64_t)x->s->cfg.io_timeout_ms)
                return fail(x, SS_ETIMEDOUT, "daemon silent for %" PRId64 " ms", silent);
            ss_msg m;
            memset(&m, 0, sizeof(m));
            m.type = SS_FRAME_PING;
            m.u.ping.nonce = ++x->s->ping_nonce;
            x->res->pings++;
            rc = send_msg(x, &m);
            if (rc < 0)
                return rc;
            continue;
        }
        if (f.type == SS_FRAME_BATCH || f.type == SS_FRAME_HELLO || f.type == SS_FRAME_WELCOME)
            return fail(x, SS_EPROTO, "unexpected %s from the daemon", ss_frame_type_name(f.type));
        ss_msg m;
        ss_verr verr;
        memset(&verr, 0, sizeof(verr));
        rc = ss_msg_decode(f.type, f.payload, f.len, &m, &verr);
        if (rc < 0)
            return fail(x, rc, "bad %s from the daemon: %s", ss_frame_type_name(f.type), verr.msg);
        switch (m.type) {
        case SS_FRAME_ACK:
            rc = handle_ack(x, &m.u.ack);
            break;
        case SS_FRAME_ERROR:
            rc = handle_error(x, &m.u.error);
            break;
        case SS_FRAME_PING: {
            ss_msg p;
            memset(&p, 0, sizeof(p));
            p.type = SS_FRAME_PONG;
            p.u.ping.nonce = m.u.ping.nonce;
            rc = send_msg(x, &p);
            break;
        }
        case SS_FRAME_PONG:
            rc = 0;
            break;
        case SS_FRAME_BYE:
            rc = fail(x, SS_ESHUTDOWN, "daemon said BYE: %s", m.u.bye.reason);
            break;
        default:
            rc = fail(x, SS_EPROTO, "unexpected frame type %d", m.type);
            break;
        }
        ss_msg_free(&m);
        if (rc < 0)
            return rc;
    }
}

int gw_sync_session(gw_sync *s, gw_node *n, gw_stream *st, gw_sync_result *res)
{
    if (!s || !s->setup_done || !n || !n->open || !st || !res)
        return SS_EINVAL;
    memset(res, 0, sizeof(*res));
    /* A session starts from a clean decoder: bytes of a previous link mean
     * nothing on this one. */
    ss_fdec_free(&s->dec);
    ss_fdec_init(&s->dec, s->cfg.max_frame);
    sess *x = ss_malloc(sizeof(*x));
    if (!x)
        return SS_ENOMEM;
    memset(x, 0, sizeof(*x));
    x->s = s;
    x->n = n;
    x->j = &n->journal;
    x->st = st;
    x->res = res;
    x->last_rx = fws_mono_ms(n->shim);
    size_t need = (size_t)n->journal.cfg.entry_max + ss_envelope_header_len(n->ident.node) + 64 +
                  (s->signer ? gw_sign_reserve(s->signer) : 0);
    int rc;
    if (need > s->cfg.max_frame)
        rc = fail(x, SS_ECONFIG, "max_frame %u is too small for entry_max %u", s->cfg.max_frame,
                  n->journal.cfg.entry_max);
    else
        rc = session(x);
    res->acked = gw_journal_acked(&n->journal);
    res->err = rc;
    if (rc == 0)
        snprintf(res->message, sizeof(res->message), "drained: acknowledged up to %" PRIu64,
                 res->acked);
    (void)gw_journal_note_sync(&n->journal, rc, fws_wall_ms(n->shim));
    fws_log(n->shim, rc == 0 ? FWS_LOG_INFO : FWS_LOG_WARN,
            "event=sync_end err=%s envelopes=%" PRIu64 " changes=%" PRIu64 " acked=%" PRIu64
            " refused=%" PRIu64 " gaps=%" PRIu64,
            ss_err_name(rc), res->envelopes, res->changes, res->acked, res->refused, res->gaps);
    ss_free(x);
    return rc;
}
