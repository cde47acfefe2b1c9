/* gw_sync.c - the replication client session: HELLO/WELCOME, resume from the
 * daemon's committed sequence, pipelined BATCH envelopes built straight from
 * journal bytes, ACKs advancing the checkpoint, refusals recorded locally,
 * gap rewinds and keep-alive. docs/protocol.md is the wire reference. */
#include "gw/sync.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "gw/crc32c.h"
#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"

#define RX_CHUNK 1024 /* the daemon sends small frames; mbed TLS holds the record */
/* The output buffer: every frame goes out through it, a BATCH in pieces of
 * this size (one TLS record each), so no buffer ever holds a whole frame. */
#define TX_CHUNK GW_SYNC_TX_CHUNK
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
    s->inflight = ss_malloc(sizeof(uint64_t) * 2 * cfg->window);
    if (!s->inflight) {
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
    ss_free(s->inflight);
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
    uint8_t tx[TX_CHUNK]; /* output not yet handed to the link */
    size_t tx_len;
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

/* Hands the buffered output to the link. Returns 0 or the link's error. */
static int out_flush(sess *x)
{
    if (x->tx_len == 0)
        return 0;
    size_t n = x->tx_len;
    x->tx_len = 0;
    return x->st->ops->send(x->st->ctx, x->tx, n, x->s->cfg.io_timeout_ms);
}

/* Queues n bytes, sending every full buffer; sha (optional) hashes them on
 * the way. Returns 0 or the link's error. */
static int out_put(sess *x, const void *p, size_t n, mbedtls_sha256_context *sha)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t k = TX_CHUNK - x->tx_len;
        if (k > n)
            k = n;
        memcpy(x->tx + x->tx_len, b, k);
        if (sha)
            (void)mbedtls_sha256_update_ret(sha, b, k); /* cannot fail in software */
        x->tx_len += k;
        b += k;
        n -= k;
        if (x->tx_len == TX_CHUNK) {
            int rc = out_flush(x);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int send_msg(sess *x, const ss_msg *m)
{
    int len = ss_msg_encode_frame(m, x->tx, sizeof(x->tx));
    if (len < 0)
        return fail(x, len, "cannot encode %s", ss_frame_type_name(m->type));
    x->tx_len = (size_t)len;
    int rc = out_flush(x);
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

/* ---- BATCH: one envelope streamed from the journal --------------------------
 *
 * The envelope is never assembled in memory. Its frame header comes first on
 * the wire and holds the whole length, signature trailer included, and the
 * DER signature's length is only known once the signed region has been
 * hashed; the envelope header (inside the signed region) holds the body
 * length. So the same run of journal entries is read in three passes, each
 * from the same saved journal cursor (gw_journal_mark/rewind):
 *   1. size: which entries fit (max_frame, batch_max), the body length;
 *   2. hash: SHA-256 of the signed region, then the signature;
 *   3. send: frame header, envelope header, "[" e1 "," e2 ... "]" with each
 *      entry's bytes exactly as journaled, the trailer last, all through the
 *      small output buffer.
 * The bytes are the ones the former assembled envelope had (a test builds
 * both and compares them).
 *
 * What each pass trusts, and why it is cheap (mbed TLS 2.28's SHA-256 is
 * software, and it was half of a gateway's CPU when pass 3 hashed again):
 *   - Pass 1 reads entry headers only (gw_journal_peek): the lengths they
 *     announce. Pass 2 reads every entry whole with its CRC checked; if it
 *     finds an entry lost (a bad CRC, so a placeholder of another length) or
 *     anything unusual showed in pass 1, pass 1 is done again reading
 *     everything checked (gw_journal_read_head), so lost entries are planned
 *     for exactly as before. Unsigned envelopes have no pass 2: their pass 1
 *     is the checked one.
 *   - The checked pass folds each entry's (length, CRC field) into a CRC-32C.
 *     When it met no lost entry, pass 3 streams each entry from its header
 *     (gw_journal_stream_*): the CRC is computed over exactly the bytes that
 *     go out and must match the entry's, and the fold of (length, CRC) must
 *     match the checked pass's before the trailer is written. Same length and
 *     same CRC, entry by entry, means the same entries (the CRC covers the
 *     sequence, HLC and payload; a change confined to one entry's 8 folded
 *     bytes always changes a CRC-32C), at the cost of one CRC instead of a
 *     second SHA-256 over the region. This guards against storage changing
 *     underneath and our own bugs, as the second hash did: the journal is
 *     this process's, under its lock, and a writer with access to it could
 *     forge entries (with good CRCs) before pass 2 as easily as between
 *     passes, which no re-hash would catch either.
 *   - A run with lost entries (rare) is sent as before: read_head checks
 *     each entry before any byte of it goes out, and the region is hashed
 *     again and compared with the signed hash.
 * If anything does not match, the envelope is abandoned before its trailer
 * (the frame stays incomplete, the link is dropped) and the session fails. */

typedef struct batch {
    uint64_t first;
    uint32_t count;
    uint32_t body_len;
    uint32_t lost; /* placeholders among the count */
    uint32_t fold; /* CRC-32C of the entries' (length, CRC), when checked */
    gw_jmark mark; /* the cursor before the first entry was looked at */
} batch;

/* Folds one entry's length and CRC field into *fold. */
static void fold_entry(uint32_t *fold, size_t len, uint32_t crc)
{
    uint8_t b[8] = {
        (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len,
        (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc
    };
    *fold = gw_crc32c(*fold, b, sizeof(b));
}

/* Pass 1. Fills b; b->count 0 means nothing to send. The limit arithmetic is
 * the assembled envelope's: frame header + envelope header + body within
 * max_frame + SS_FRAME_HEADER_LEN, less room for the signature trailer.
 * checked 0: headers only; SS_EAGAIN if one is not as expected (the caller
 * rewinds to b->mark and calls again checked). */
static int batch_size(sess *x, size_t hl, batch *b, int checked)
{
    size_t limit = (size_t)x->max_frame + SS_FRAME_HEADER_LEN;
    size_t reserve = x->s->signer ? gw_sign_reserve(x->s->signer) : 0;
    if (limit < reserve)
        return fail(x, SS_ECONFIG, "max_frame %u leaves no room for the signature", x->max_frame);
    limit -= reserve;
    size_t body = SS_FRAME_HEADER_LEN + hl, pos = body + 1; /* after '[' */
    uint64_t seq = x->next_send, next = gw_journal_next_seq(x->j);
    memset(b, 0, sizeof(*b));
    b->first = seq;
    gw_journal_mark(x->j, &b->mark);
    for (; seq < next && b->count < x->s->cfg.batch_max; seq++) {
        size_t comma = b->count > 0, start = pos + comma, len = 0;
        if (start + 1 >= limit)
            break;
        size_t avail = limit - start - 1; /* keep room for ']' */
        int rc = checked ? gw_journal_read_head(x->j, seq, NULL, 0, avail, &len)
                         : gw_journal_peek(x->j, seq, avail, &len);
        if (rc == SS_EAGAIN && !checked)
            return rc;
        if (rc == SS_ECORRUPT) {
            /* Lost to corruption: the placeholder the daemon refuses and
             * audits goes instead, never anything of the damaged bytes. */
            char ph[128];
            rc = gw_lost_placeholder(seq, ph, sizeof(ph));
            if (rc < 0)
                return fail(x, rc, "placeholder");
            if ((size_t)rc > avail)
                break;
            len = (size_t)rc;
            b->lost++;
            fold_entry(&b->fold, len, 0);
        } else if (rc == SS_ENOSPC) {
            /* Decided on the header's length, before the CRC: a damaged
             * entry that would not fit waits for the next envelope too. */
            if (b->count == 0)
                return fail(x, SS_EOVERSIZE, "entry %" PRIu64 " does not fit max_frame %u", seq,
                            x->max_frame);
            break;
        } else if (rc < 0) {
            return fail(x, rc, "journal read of seq %" PRIu64 ": %s", seq, ss_strerror(rc));
        } else {
            fold_entry(&b->fold, len, gw_journal_entry_crc(x->j));
        }
        pos = start + len;
        b->count++;
    }
    b->body_len = (uint32_t)(pos + 1 - body);
    return 0;
}

/* Passes 2 and 3 walk the entries the same way: each entry's bytes go to
 * `put` in pieces (through tx as the read buffer when not sending). */
typedef struct walk {
    sess *x;
    mbedtls_sha256_context *sha;
    int sending; /* 1: bytes go out through tx; 0: only hashed */
    int stream;  /* 1: entries streamed, checked against their CRC as sent */
    uint64_t bytes;
    uint64_t limit; /* bytes of the region before its closing ']' */
    uint32_t lost;  /* placeholders met */
    uint32_t fold;  /* CRC-32C of the entries' (length, CRC) */
} walk;

static int walk_put(walk *w, const void *p, size_t n)
{
    w->bytes += n;
    if (w->sending)
        return out_put(w->x, p, n, w->sha);
    (void)mbedtls_sha256_update_ret(w->sha, p, n);
    return 0;
}

/* Accounts for k bytes just read into the output buffer (or scratch). */
static int walk_took(walk *w, const uint8_t *dst, size_t k)
{
    sess *x = w->x;
    w->bytes += k;
    if (w->sha)
        (void)mbedtls_sha256_update_ret(w->sha, dst, k);
    if (w->sending) {
        x->tx_len += k;
        if (x->tx_len == TX_CHUNK)
            return out_flush(x);
    }
    return 0;
}

/* Pass 3 of a run without lost entries: the entry goes out piece by piece,
 * its CRC computed over exactly those bytes; a mismatch (storage changed
 * since the checked pass) is SS_EIO before the trailer. */
static int stream_entry(walk *w, uint64_t seq)
{
    sess *x = w->x;
    size_t len = 0;
    /* An entry announcing more than the frame has left is refused before
     * any of it goes out. */
    size_t left = w->limit > w->bytes ? (size_t)(w->limit - w->bytes) : 0;
    int rc = gw_journal_stream_begin(x->j, seq, left, &len);
    if (rc < 0)
        return rc == SS_ECORRUPT || rc == SS_ENOSPC ? SS_EIO : rc;
    fold_entry(&w->fold, len, gw_journal_entry_crc(x->j));
    for (size_t off = 0; off < len;) {
        size_t room = TX_CHUNK - x->tx_len, k = len - off < room ? len - off : room;
        uint8_t *dst = x->tx + x->tx_len;
        rc = gw_journal_stream_read(x->j, dst, k);
        if (rc == 0)
            rc = walk_took(w, dst, k);
        if (rc < 0)
            return rc;
        off += k;
    }
    rc = gw_journal_stream_end(x->j);
    return rc == SS_ECORRUPT ? SS_EIO : rc;
}

/* One entry: read straight into the output buffer when sending (no second
 * copy), or into it as scratch when only hashing. */
static int walk_entry(walk *w, uint64_t seq)
{
    if (w->stream)
        return stream_entry(w, seq);
    sess *x = w->x;
    size_t len = 0, room = w->sending ? TX_CHUNK - x->tx_len : TX_CHUNK;
    uint8_t *dst = w->sending ? x->tx + x->tx_len : x->tx;
    int rc = gw_journal_read_head(x->j, seq, dst, room, SIZE_MAX, &len);
    if (rc == SS_ECORRUPT) {
        char ph[128];
        rc = gw_lost_placeholder(seq, ph, sizeof(ph));
        if (rc < 0)
            return rc;
        w->lost++;
        fold_entry(&w->fold, (size_t)rc, 0);
        return walk_put(w, ph, (size_t)rc);
    }
    if (rc < 0)
        return rc;
    fold_entry(&w->fold, len, gw_journal_entry_crc(x->j));
    size_t off = len < room ? len : room;
    if ((rc = walk_took(w, dst, off)) < 0)
        return rc;
    while (off < len) {
        room = w->sending ? TX_CHUNK - x->tx_len : TX_CHUNK;
        dst = w->sending ? x->tx + x->tx_len : x->tx;
        size_t k = len - off < room ? len - off : room;
        rc = gw_journal_read_more(x->j, off, dst, k);
        if (rc < 0)
            return rc;
        off += k;
        if ((rc = walk_took(w, dst, k)) < 0)
            return rc;
    }
    return 0;
}

/* The signed region: envelope header, then "[" entries "]". */
static int walk_region(walk *w, const batch *b, const uint8_t *hdr, size_t hl)
{
    int rc = walk_put(w, hdr, hl);
    if (rc == 0)
        rc = walk_put(w, "[", 1);
    for (uint32_t i = 0; rc == 0 && i < b->count; i++) {
        if (i > 0)
            rc = walk_put(w, ",", 1);
        if (rc == 0)
            rc = walk_entry(w, b->first + i);
        /* An entry longer now than when it was measured would run past the
         * frame's announced length: stop before it goes further. */
        if (rc == 0 && w->bytes > hl + (uint64_t)b->body_len - 1)
            rc = SS_EIO;
    }
    if (rc == 0)
        rc = walk_put(w, "]", 1);
    if (rc == 0 && w->bytes != hl + (uint64_t)b->body_len)
        rc = SS_EIO;
    return rc;
}

static int send_batch(sess *x)
{
    const char *origin = x->n->ident.node;
    size_t hl = ss_envelope_header_len(origin);
    gw_signer *signer = x->s->signer;
    uint8_t hdr[SS_ENV_FIXED_LEN + SS_ID_MAX];
    mbedtls_sha256_context sha;
    uint8_t hash[32], again[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t sig_len = 0, trailer = 0;
    uint32_t fold = 0, lost = 0;
    batch b;
    int rc;
    mbedtls_sha256_init(&sha);
    /* Unsigned envelopes have no pass 2, so their pass 1 reads checked. */
    for (int checked = signer == NULL;; checked = 1) {
        rc = batch_size(x, hl, &b, checked);
        if (rc == SS_EAGAIN && !checked) {
            gw_journal_rewind(x->j, &b.mark);
            continue;
        }
        if (rc < 0 || b.count == 0) {
            mbedtls_sha256_free(&sha);
            return rc;
        }
        /* The SIGNED flag is inside the signed region, so nobody can strip
         * the signature and pass the envelope as unsigned. */
        rc = ss_envelope_write_header(hdr, sizeof(hdr), origin, b.first, b.count, b.body_len,
                                      signer ? SS_ENV_FLAG_SIGNED : 0);
        if (rc < 0) {
            mbedtls_sha256_free(&sha);
            return fail(x, rc, "envelope header: %s", ss_strerror(rc));
        }
        if (!signer) {
            fold = b.fold;
            lost = b.lost;
            break;
        }
        /* Pass 2: hash, checked. */
        walk w = { x, &sha, 0, 0, 0, hl + b.body_len - 1, 0, 0 };
        gw_journal_rewind(x->j, &b.mark);
        (void)mbedtls_sha256_starts_ret(&sha, 0);
        rc = walk_region(&w, &b, hdr, hl);
        if (!checked && (rc < 0 || w.lost > 0)) {
            /* Pass 1 trusted headers and an entry is lost (or the run is
             * not what they said): plan the run again, checked. */
            gw_journal_rewind(x->j, &b.mark);
            continue;
        }
        if (rc < 0) {
            mbedtls_sha256_free(&sha);
            return fail(x, rc, "journal read for the signature: %s", ss_strerror(rc));
        }
        fold = w.fold;
        lost = w.lost;
        (void)mbedtls_sha256_finish_ret(&sha, hash);
        rc = gw_sign_hash(signer, hash, sig, sizeof(sig));
        if (rc < 0) {
            mbedtls_sha256_free(&sha);
            return fail(x, rc, "cannot sign the envelope: %s", ss_strerror(rc));
        }
        sig_len = (size_t)rc;
        trailer = ss_sig_trailer_len(signer->cert_len, sig_len);
        break;
    }

    /* Pass 3: send. Streamed and checked against the entries' CRCs when the
     * checked pass met no lost entry; otherwise as read_head gives them,
     * hashed again (signed) to see the same region goes out. */
    int rehash = signer && lost > 0;
    uint8_t fh[SS_FRAME_HEADER_LEN];
    rc = ss_frame_write_header(fh, SS_FRAME_BATCH, 0, (uint32_t)(hl + b.body_len + trailer));
    if (rc < 0) {
        mbedtls_sha256_free(&sha);
        return fail(x, rc, "frame header: %s", ss_strerror(rc));
    }
    walk w = { x, rehash ? &sha : NULL, 1, lost == 0, 0, hl + b.body_len - 1, 0, 0 };
    gw_journal_rewind(x->j, &b.mark);
    if (rehash)
        (void)mbedtls_sha256_starts_ret(&sha, 0);
    rc = out_put(x, fh, sizeof(fh), NULL);
    if (rc == 0)
        rc = walk_region(&w, &b, hdr, hl);
    if (rc == 0 && (w.fold != fold || w.lost != lost))
        rc = SS_EIO;
    if (rc == 0 && rehash) {
        (void)mbedtls_sha256_finish_ret(&sha, again);
        if (memcmp(hash, again, sizeof(hash)) != 0)
            rc = SS_EIO;
    }
    if (rc == 0 && signer) {
        uint8_t tb[2 + 1 + 2 + SS_SIG_CERT_MAX + 2 + SS_SIG_DER_MAX];
        rc = ss_sig_write_trailer(tb, sizeof(tb), signer->cert_der, signer->cert_len, sig, sig_len);
        if (rc >= 0)
            rc = out_put(x, tb, (size_t)rc, NULL);
    }
    mbedtls_sha256_free(&sha);
    if (rc == 0)
        rc = out_flush(x);
    if (rc < 0) {
        /* Whatever went out is an incomplete frame: the link cannot carry
         * anything more, the session ends and a new one resends. */
        x->tx_len = 0;
        if (rc == SS_EIO && w.bytes > 0)
            return fail(x, rc, "send BATCH: journal entries changed or unreadable while sending");
        return fail(x, rc, "send BATCH: %s", ss_strerror(rc));
    }
    x->s->inflight[2 * x->nin] = b.first;
    x->s->inflight[2 * x->nin + 1] = b.first + b.count - 1;
    x->nin++;
    x->next_send = b.first + b.count;
    x->res->envelopes++;
    x->res->changes += b.count;
    x->res->placeholders += b.lost;
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
        /* Only the part the refused log keeps is read (the length is whole,
         * so the log marks a cut). tx is free between frames. */
        int rc = gw_journal_read_head(x->j, r->seq, x->tx, GW_REFUSED_CHANGE_MAX, SIZE_MAX, &len);
        if (rc == SS_ECORRUPT)
            lost = 1;
        if (rc < 0)
            len = 0;
        rc = gw_journal_note_refused(x->j, r->seq, ss_err_name(r->code), r->field, r->message,
                                     (const char *)x->tx, len, lost);
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
