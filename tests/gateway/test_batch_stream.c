/* test_batch_stream.c - the streamed BATCH is byte for byte the envelope the
 * gateway used to assemble in one max_frame buffer: random journals (entry
 * sizes up to entry_max and beyond the output buffer, several segments,
 * corrupted entries sent as placeholders, signed and unsigned) are sent by a
 * real sync session over a scripted in-memory link, and every BATCH frame is
 * compared with the frame the former assembling code (kept here as the
 * reference) builds from the same journal. Also: one change per envelope, an
 * envelope that fills max_frame to the byte, that no single send exceeds
 * GW_SYNC_TX_CHUNK, and that every signature verifies. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "fws_sim.h"
#include "gw/node.h"
#include "gw/sign.h"
#include "gw/sync.h"
#include "gw_fake_server.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/relay.h"
#include "ss_test.h"

#define NODE "gw-stream"
#define SITE "site-s"

/* ---- a scripted daemon as the transport ----------------------------------- */

/* Collects every BATCH frame the session sends (header and payload, as on
 * the wire), answers HELLO with WELCOME, each BATCH with an ACK of its last
 * sequence and PING with PONG. */
typedef struct slink {
    ss_fdec dec;
    uint8_t *frames; /* BATCH frames, concatenated */
    size_t len, cap;
    uint32_t nframes;
    uint8_t out[8192]; /* frames queued for the gateway */
    size_t out_len, out_off;
    size_t max_send; /* largest single send call */
    uint32_t max_frame, window;
    int bye;
    char failure[160];
    /* optional: called once, at the send call number `hook_at` (the first
     * is HELLO), before the bytes are looked at */
    void (*hook)(void *arg);
    void *hook_arg;
    uint32_t sends, hook_at;
} slink;

static void link_fail(slink *l, const char *what)
{
    if (!l->failure[0])
        snprintf(l->failure, sizeof(l->failure), "%s", what);
}

static void link_queue(slink *l, const ss_msg *m)
{
    if (l->out_off == l->out_len)
        l->out_off = l->out_len = 0;
    int n = ss_msg_encode_frame(m, l->out + l->out_len, sizeof(l->out) - l->out_len);
    if (n < 0) {
        link_fail(l, "cannot queue a reply");
        return;
    }
    l->out_len += (size_t)n;
}

static void link_frame(slink *l, const ss_frame *f)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    if (f->type == SS_FRAME_HELLO) {
        ss_oseq committed;
        memset(&committed, 0, sizeof(committed));
        memcpy(committed.origin, NODE, sizeof(NODE));
        committed.seq = 0;
        m.type = SS_FRAME_WELCOME;
        m.u.welcome.proto = SS_PROTO_VERSION;
        memcpy(m.u.welcome.node, "daemon", 7);
        m.u.welcome.time = (ss_hlc_t)1 << 16;
        m.u.welcome.max_frame = l->max_frame;
        m.u.welcome.window = l->window;
        m.u.welcome.ncommitted = 1;
        m.u.welcome.committed = &committed;
        link_queue(l, &m);
    } else if (f->type == SS_FRAME_BATCH) {
        if (l->len + SS_FRAME_HEADER_LEN + f->len > l->cap) {
            size_t ncap = (l->cap ? l->cap * 2 : 1u << 20) + SS_FRAME_HEADER_LEN + f->len;
            uint8_t *nb = realloc(l->frames, ncap);
            if (!nb) {
                link_fail(l, "out of memory");
                return;
            }
            l->frames = nb;
            l->cap = ncap;
        }
        (void)ss_frame_write_header(l->frames + l->len, f->type, f->flags, f->len);
        memcpy(l->frames + l->len + SS_FRAME_HEADER_LEN, f->payload, f->len);
        l->len += SS_FRAME_HEADER_LEN + f->len;
        l->nframes++;
        ss_envelope e;
        if (ss_envelope_parse(f->payload, f->len, &e) < 0) {
            link_fail(l, "BATCH that does not parse");
            return;
        }
        ss_oseq ack;
        memset(&ack, 0, sizeof(ack));
        memcpy(ack.origin, NODE, sizeof(NODE));
        ack.seq = ss_envelope_last_seq(&e);
        m.type = SS_FRAME_ACK;
        m.u.ack.nacks = 1;
        m.u.ack.acks = &ack;
        link_queue(l, &m);
    } else if (f->type == SS_FRAME_PING) {
        ss_verr verr;
        if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
            link_fail(l, "bad PING");
            return;
        }
        m.type = SS_FRAME_PONG;
        link_queue(l, &m);
    } else if (f->type == SS_FRAME_BYE) {
        l->bye = 1;
    } else {
        link_fail(l, "unexpected frame type from the gateway");
    }
}

static int link_send(void *ctx, const void *buf, size_t len, uint32_t timeout_ms)
{
    slink *l = ctx;
    (void)timeout_ms;
    if (++l->sends == l->hook_at && l->hook)
        l->hook(l->hook_arg);
    if (len > l->max_send)
        l->max_send = len;
    const uint8_t *p = buf;
    while (len > 0) {
        size_t used = 0;
        int rc = ss_fdec_feed(&l->dec, p, len, &used);
        p += used;
        len -= used;
        if (rc < 0) {
            link_fail(l, "undecodable stream from the gateway");
            return SS_ECLOSED;
        }
        if (rc == 1) {
            ss_frame f;
            if (ss_fdec_frame(&l->dec, &f) == 0)
                link_frame(l, &f);
        }
    }
    return 0;
}

static int link_recv(void *ctx, void *buf, size_t len, uint32_t timeout_ms)
{
    slink *l = ctx;
    (void)timeout_ms;
    size_t n = l->out_len - l->out_off;
    if (n == 0)
        return SS_ETIMEDOUT;
    if (n > len)
        n = len;
    memcpy(buf, l->out + l->out_off, n);
    l->out_off += n;
    return (int)n;
}

static void link_close(void *ctx)
{
    (void)ctx;
}

static const gw_transport link_ops = { "scripted", link_send, link_recv, link_close };

/* ---- the reference: the envelope as the gateway assembled it before ------ */

/* The former send_batch, unchanged in substance: the body built in place in
 * one buffer of max_frame + 6 bytes from gw_journal_read, the header written
 * in front, then gw_sign_envelope over the whole. Returns the frame length
 * (0: nothing pending) and the number of changes in *count. */
static size_t ref_batch(gw_journal *j, gw_signer *signer, uint64_t first, uint32_t max_frame,
                        uint32_t batch_max, uint8_t *buf, uint32_t *count_out)
{
    size_t buf_cap = (size_t)max_frame + SS_FRAME_HEADER_LEN;
    size_t hl = ss_envelope_header_len(NODE);
    size_t limit = buf_cap - (signer ? gw_sign_reserve(signer) : 0);
    size_t body = SS_FRAME_HEADER_LEN + hl, pos = body;
    uint64_t seq = first, next = gw_journal_next_seq(j);
    uint32_t count = 0;
    buf[pos++] = '[';
    for (; seq < next && count < batch_max; seq++) {
        size_t comma = count > 0, start = pos + comma, len = 0;
        if (start + 1 >= limit)
            break;
        size_t avail = limit - start - 1;
        int rc = gw_journal_read(j, seq, buf + start, avail, &len);
        if (rc == SS_ECORRUPT) {
            char ph[128];
            rc = gw_lost_placeholder(seq, ph, sizeof(ph));
            ASSERT_GT(rc, 0);
            if ((size_t)rc > avail)
                break;
            memcpy(buf + start, ph, (size_t)rc);
            len = (size_t)rc;
        } else if (rc == SS_ENOSPC) {
            ASSERT_GT(count, 0);
            break;
        } else {
            ASSERT_EQ(rc, 0);
        }
        if (comma)
            buf[pos] = ',';
        pos = start + len;
        count++;
    }
    *count_out = count;
    if (count == 0)
        return 0;
    buf[pos++] = ']';
    size_t body_len = pos - body;
    ASSERT_EQ(ss_envelope_write_header(buf + SS_FRAME_HEADER_LEN, hl, NODE, first, count,
                                       (uint32_t)body_len, 0),
              (int)hl);
    size_t env_len = hl + body_len;
    if (signer) {
        int rc = gw_sign_envelope(signer, buf + SS_FRAME_HEADER_LEN, env_len, buf_cap - pos);
        ASSERT_GT(rc, 0);
        env_len += (size_t)rc;
        pos += (size_t)rc;
    }
    ASSERT_EQ(ss_frame_write_header(buf, SS_FRAME_BATCH, 0, (uint32_t)env_len),
              (int)SS_FRAME_HEADER_LEN);
    return pos;
}

/* ---- the world ------------------------------------------------------------ */

typedef struct world {
    fws shim;
    fws_sim *sim;
    gw_node node;
    int node_open;
    ss_ident id;
    gw_journal_config jc;
    gw_sync_config sc;
    gw_signer signer;
    int signed_;
    char key_pem[2048], cert_pem[4096];
    uint64_t rng;
} world;

static uint32_t rnd(world *w, uint32_t n)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return n ? (uint32_t)(w->rng % n) : 0;
}

static void world_new(world *w, uint64_t seed, int sign)
{
    memset(w, 0, sizeof(*w));
    w->rng = seed * 2654435761u + 88172645463325252ull;
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = seed;
    c.log_level = -1;
    ASSERT_EQ(fws_sim_new(&c, &w->sim, &w->shim), 0);
    ss_ident_init(&w->id);
    const char *uris[] = { "urn:sitesync:node:" NODE, "urn:sitesync:role:gateway",
                           "urn:sitesync:site:" SITE };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(ss_ident_add_uri(&w->id, uris[i], strlen(uris[i])), 0);
    gw_journal_config_default(&w->jc);
    gw_sync_config_default(&w->sc);
    gw_signer_init(&w->signer);
    if (sign) {
        ASSERT_EQ(fake_make_cert(&w->shim, NODE, w->key_pem, sizeof(w->key_pem), w->cert_pem,
                                 sizeof(w->cert_pem)),
                  0);
        ASSERT_EQ(gw_signer_setup(&w->signer, &w->shim, w->cert_pem, w->key_pem), 0);
        w->signed_ = 1;
    }
}

static void node_reopen(world *w)
{
    if (w->node_open)
        gw_node_free(&w->node);
    w->node_open = 0;
    ASSERT_EQ(gw_node_open(&w->node, &w->shim, &w->id, &w->jc), 0);
    w->node_open = 1;
}

static void world_free(world *w)
{
    if (w->node_open)
        gw_node_free(&w->node);
    gw_signer_free(&w->signer);
    fws_sim_destroy(w->sim);
}

/* Appends an entry of exactly len bytes (JSON-looking, the sequence inside;
 * the envelope code never parses it). */
static void append(world *w, size_t len)
{
    static uint8_t p[1u << 20];
    uint64_t seq = gw_journal_next_seq(&w->node.journal);
    ASSERT(len >= 2 && len <= sizeof(p));
    p[0] = '{';
    for (size_t i = 1; i + 1 < len; i++)
        p[i] = (uint8_t)('a' + rnd(w, 26));
    p[len - 1] = '}';
    /* The sequence number and a ':' after the '{' when they fit. */
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, seq);
    if (n > 0 && (size_t)n + 2 < len) {
        memcpy(p + 1, digits, (size_t)n);
        p[1 + n] = ':';
    }
    ASSERT_EQ(gw_journal_append(&w->node.journal, seq, ((ss_hlc_t)seq) << 16, p, len), 0);
}

/* Flips one payload byte of the k-th entry of a segment file (never the
 * last segment, whose damaged last entry would read as a torn tail). */
static int corrupt_entry(world *w, const char *name, uint32_t k)
{
    static uint8_t data[1u << 21];
    int64_t sz = fws_sim_peek(w->sim, name, 1, data, sizeof(data));
    ASSERT_GT(sz, 0);
    ASSERT_LE(sz, (int64_t)sizeof(data));
    uint64_t off = 0;
    for (uint32_t i = 0; i < k && off + GW_JOURNAL_ENTRY_HDR <= (uint64_t)sz; i++) {
        uint32_t len = ((uint32_t)data[off + 4] << 24) | ((uint32_t)data[off + 5] << 16) |
                       ((uint32_t)data[off + 6] << 8) | data[off + 7];
        off += GW_JOURNAL_ENTRY_HDR + len;
    }
    if (off + GW_JOURNAL_ENTRY_HDR + 1 >= (uint64_t)sz)
        return 0;
    data[off + GW_JOURNAL_ENTRY_HDR + 1] ^= 0x20;
    fws_file *f = NULL;
    ASSERT_EQ(fws_open(&w->shim, name, 0, &f), 0);
    ASSERT_EQ(fws_truncate(&w->shim, f, 0), 0);
    ASSERT_EQ(fws_append(&w->shim, f, data, (size_t)sz), 0);
    ASSERT_EQ(fws_sync(&w->shim, f), 0);
    fws_close(&w->shim, f);
    return 1;
}

/* Checks a signed envelope's signature against the gateway's certificate. */
static void check_signature(world *w, const uint8_t *env, size_t len)
{
    ss_envelope e;
    ss_sig sg;
    ASSERT_EQ(ss_envelope_parse(env, len, &e), 0);
    ASSERT_EQ(ss_sig_parse(&e, &sg), 0);
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    ASSERT_EQ(
        mbedtls_x509_crt_parse(&crt, (const unsigned char *)w->cert_pem, strlen(w->cert_pem) + 1),
        0);
    ASSERT_EQ(sg.cert_len, crt.raw.len);
    ASSERT_MEM_EQ(sg.cert, crt.raw.p, sg.cert_len);
    uint8_t hash[32];
    ASSERT_EQ(mbedtls_sha256_ret(e.signed_bytes, e.signed_len, hash, 0), 0);
    ASSERT_EQ(mbedtls_pk_verify(&crt.pk, MBEDTLS_MD_SHA256, hash, 32, sg.sig, sg.sig_len), 0);
    mbedtls_x509_crt_free(&crt);
}

/* Builds the reference frames from the journal as it is, then runs one real
 * session over the scripted slink and compares everything sent as BATCH.
 * Returns the number of envelopes. */
static uint32_t compare_session(world *w, gw_journal_stats *after_ref)
{
    gw_journal *j = &w->node.journal;
    size_t buf_cap = (size_t)w->sc.max_frame + SS_FRAME_HEADER_LEN;
    uint8_t *buf = malloc(buf_cap);
    size_t ref_cap = 1u << 20, ref_len = 0;
    uint8_t *ref = malloc(ref_cap);
    ASSERT(buf && ref);
    uint32_t nref = 0;
    uint64_t first = gw_journal_acked(j) + 1;
    while (first < gw_journal_next_seq(j)) {
        uint32_t count = 0;
        size_t n = ref_batch(j, w->signed_ ? &w->signer : NULL, first, w->sc.max_frame,
                             w->sc.batch_max, buf, &count);
        ASSERT_GT(n, 0);
        ASSERT_LE(n, buf_cap);
        if (ref_len + n > ref_cap) {
            ref_cap = ref_cap * 2 + n;
            ref = realloc(ref, ref_cap);
            ASSERT(ref != NULL);
        }
        memcpy(ref + ref_len, buf, n);
        ref_len += n;
        nref++;
        first += count;
    }
    free(buf);
    if (after_ref)
        gw_journal_stats_get(j, after_ref);

    slink *l = calloc(1, sizeof(*l));
    ASSERT(l != NULL);
    ss_fdec_init(&l->dec, SS_FRAME_ABSOLUTE_MAX);
    l->max_frame = w->sc.max_frame;
    l->window = w->sc.window;
    gw_stream st = { &link_ops, l };
    gw_sync sync;
    ASSERT_EQ(gw_sync_setup(&sync, &w->sc), 0);
    sync.signer = w->signed_ ? &w->signer : NULL;
    gw_sync_result res;
    int rc = gw_sync_session(&sync, &w->node, &st, &res);
    if (rc != 0)
        SS_TEST_FAIL("session: %s (%s)", ss_err_name(rc), res.message);
    if (l->failure[0])
        SS_TEST_FAIL("scripted daemon: %s", l->failure);
    ASSERT(l->bye);
    ASSERT_U64_EQ(gw_journal_acked(j) + 1, gw_journal_next_seq(j));
    ASSERT_EQ(l->nframes, nref);
    ASSERT_U64_EQ(res.envelopes, nref);
    ASSERT_U64_EQ(l->len, ref_len);
    for (size_t off = 0; off < ref_len; off++)
        if (l->frames[off] != ref[off])
            SS_TEST_FAIL("streamed BATCH bytes differ from the assembled ones at byte %zu of %zu",
                         off, ref_len);
    /* Streamed: nothing went to the link in a piece larger than the output
     * buffer, whatever the frame size. */
    ASSERT_LE(l->max_send, GW_SYNC_TX_CHUNK);
    if (w->signed_) {
        for (size_t off = 0; off < l->len;) {
            uint32_t flen = ((uint32_t)l->frames[off] << 24) |
                            ((uint32_t)l->frames[off + 1] << 16) |
                            ((uint32_t)l->frames[off + 2] << 8) | l->frames[off + 3];
            check_signature(w, l->frames + off + SS_FRAME_HEADER_LEN, flen);
            off += SS_FRAME_HEADER_LEN + flen;
        }
    }
    gw_sync_free(&sync);
    ss_fdec_free(&l->dec);
    free(l->frames);
    free(l);
    free(ref);
    return nref;
}

/* One random journal: entry_max, segment size, max_frame and batch_max
 * drawn from the seed; entries from 2 bytes to the largest a frame takes;
 * with corrupt, some entries damaged in closed segments. */
static void random_case(uint64_t seed, int sign, int corrupt)
{
    world w;
    world_new(&w, seed, sign);
    static const uint32_t emax[] = { 256, 1024, 4000, 4096, 5000, 16384 };
    w.jc.entry_max = emax[rnd(&w, 6)];
    w.jc.segment_max = GW_JOURNAL_ENTRY_HDR + w.jc.entry_max + rnd(&w, 3 * w.jc.entry_max + 1);
    w.jc.capacity = 64u << 20;
    size_t reserve = sign ? gw_sign_reserve(&w.signer) : 0;
    uint32_t min_frame =
        (uint32_t)(w.jc.entry_max + ss_envelope_header_len(NODE) + 64 + reserve) + 1;
    if (min_frame < 4096)
        min_frame = 4096;
    static const uint32_t extra[] = { 0, 1, 100, 5000, 20000, 70000, 300000 };
    w.sc.max_frame = min_frame + extra[rnd(&w, 7)];
    static const uint32_t bmax[] = { 1, 2, 3, 7, 64, 512, 4096 };
    w.sc.batch_max = bmax[rnd(&w, 7)];
    w.sc.window = 1 + rnd(&w, 8);
    node_reopen(&w);
    uint32_t n = 1 + rnd(&w, sign ? 300 : 600);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kind = rnd(&w, 10);
        size_t len = kind == 0   ? w.jc.entry_max
                     : kind == 1 ? 2 + rnd(&w, 8)
                     : kind <= 3 ? 2 + rnd(&w, w.jc.entry_max - 1)
                                 : 200 + rnd(&w, 400);
        if (len > w.jc.entry_max)
            len = w.jc.entry_max;
        append(&w, len);
    }
    int damaged = 0;
    if (corrupt && w.node.journal.nsegs > 1) {
        for (uint32_t s = 0; s + 1 < w.node.journal.nsegs; s++) {
            if (rnd(&w, 2) == 0)
                continue;
            char name[64];
            snprintf(name, sizeof(name), "seg-%016" PRIx64 ".log", w.node.journal.segs[s].first);
            uint64_t in_seg = w.node.journal.segs[s].last - w.node.journal.segs[s].first + 1;
            damaged += corrupt_entry(&w, name, rnd(&w, (uint32_t)in_seg));
        }
        node_reopen(&w);
    }
    /* compare_session reads the journal once for the reference, then the
     * session reads it in its three passes: the passes replay the same bad
     * regions, which must not be counted again (at most what one read of
     * the whole journal finds). */
    gw_journal_stats st;
    uint32_t envs = compare_session(&w, &st);
    ASSERT_GT(envs, 0);
    if (damaged) {
        ASSERT_GE(st.crc_failures, 1);
        gw_journal_stats after;
        gw_journal_stats_get(&w.node.journal, &after);
        ASSERT_GE(after.crc_failures, st.crc_failures + 1);
        ASSERT_LE(after.crc_failures - st.crc_failures, st.crc_failures);
    }
    world_free(&w);
}

TEST(streamed_batches_match_assembled_unsigned)
{
    for (uint64_t seed = 1; seed <= 40; seed++)
        random_case(seed, 0, 0);
}

TEST(streamed_batches_match_assembled_signed)
{
    for (uint64_t seed = 101; seed <= 125; seed++)
        random_case(seed, 1, 0);
}

TEST(streamed_batches_match_assembled_with_lost_entries)
{
    for (uint64_t seed = 201; seed <= 230; seed++)
        random_case(seed, (int)(seed & 1), 1);
}

/* batch_max 1: every envelope carries one change. */
TEST(streamed_single_change_envelopes)
{
    for (int sign = 0; sign <= 1; sign++) {
        world w;
        world_new(&w, 301 + (uint64_t)sign, sign);
        w.jc.entry_max = 16384;
        w.sc.batch_max = 1;
        w.sc.window = 4;
        node_reopen(&w);
        append(&w, 2);
        append(&w, 16384); /* beyond the output buffer: read in pieces */
        append(&w, 4096);
        append(&w, 777);
        ASSERT_EQ(compare_session(&w, NULL), 4);
        world_free(&w);
    }
}

/* An envelope that fills max_frame to the byte: the last entry is exactly
 * as long as the room left, and the next one starts the second envelope. */
TEST(streamed_envelope_fills_max_frame_exactly)
{
    for (int sign = 0; sign <= 1; sign++) {
        world w;
        world_new(&w, 401 + (uint64_t)sign, sign);
        w.jc.entry_max = 16384;
        w.jc.segment_max = 1u << 20;
        w.sc.max_frame = 65536;
        w.sc.batch_max = 4096;
        node_reopen(&w);
        size_t reserve = sign ? gw_sign_reserve(&w.signer) : 0;
        size_t limit = (size_t)w.sc.max_frame + SS_FRAME_HEADER_LEN - reserve;
        size_t pos = SS_FRAME_HEADER_LEN + ss_envelope_header_len(NODE) + 1;
        for (int i = 0; i < 5; i++) {
            append(&w, 10000);
            pos += (i > 0) + 10000;
        }
        size_t last = limit - (pos + 1) - 1; /* the comma, then room for ']' */
        ASSERT_LE(last, w.jc.entry_max);
        append(&w, last);
        append(&w, 3000);

        /* The first frame's length, from the reference: exactly the limit
         * plus the signature trailer actually written. */
        uint8_t *buf = malloc((size_t)w.sc.max_frame + SS_FRAME_HEADER_LEN);
        ASSERT(buf != NULL);
        uint32_t count = 0;
        size_t n = ref_batch(&w.node.journal, sign ? &w.signer : NULL, 1, w.sc.max_frame, 4096, buf,
                             &count);
        ASSERT_EQ(count, 6);
        size_t trailer = 0;
        if (sign) {
            ss_envelope e;
            ASSERT_EQ(ss_envelope_parse(buf + SS_FRAME_HEADER_LEN, n - SS_FRAME_HEADER_LEN, &e), 0);
            trailer = 2 + e.sig_len;
        }
        ASSERT_EQ(n, limit + trailer);
        free(buf);
        ASSERT_EQ(compare_session(&w, NULL), 2);
        world_free(&w);
    }
}

/* The journal's streaming reads: the head of an entry, the rest in pieces,
 * and a cursor mark that replays the same entries. */
TEST(journal_read_head_more_and_mark)
{
    world w;
    world_new(&w, 501, 0);
    w.jc.entry_max = 16384;
    w.jc.segment_max = 40000;
    node_reopen(&w);
    for (int i = 0; i < 12; i++)
        append(&w, i % 3 == 0 ? 16000 : 300 + (size_t)i);
    gw_journal *j = &w.node.journal;
    static uint8_t whole[16384], part[16384];
    gw_jmark m;
    gw_journal_mark(j, &m);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            gw_journal_rewind(j, &m);
        for (uint64_t seq = 1; seq <= 12; seq++) {
            size_t len = 0, full = 0;
            ASSERT_EQ(gw_journal_read_head(j, seq, part, 100, SIZE_MAX, &len), 0);
            ASSERT_EQ(len, seq % 3 == 1 ? 16000 : 300 + seq - 1);
            for (size_t off = 100; off < len; off += 1000) {
                size_t k = len - off < 1000 ? len - off : 1000;
                ASSERT_EQ(gw_journal_read_more(j, off, part + off, k), 0);
            }
            ASSERT_EQ(gw_journal_read_more(j, len, part, 1), SS_EINVAL);
            gw_jmark here;
            gw_journal_mark(j, &here);
            ASSERT_EQ(gw_journal_read(j, seq, whole, sizeof(whole), &full), 0);
            ASSERT_EQ(full, len);
            ASSERT_MEM_EQ(whole, part, len);
            gw_journal_rewind(j, &here);
        }
    }
    /* Only the length and the check, no buffer; a max below the header's
     * length refuses before the payload is read, the cursor unmoved. */
    size_t len = 0;
    ASSERT_EQ(gw_journal_read_head(j, 4, NULL, 0, 15999, &len), SS_ENOSPC);
    ASSERT_EQ(gw_journal_read_head(j, 4, NULL, 0, 16000, &len), 0);
    ASSERT_EQ(len, 16000);
    /* gw_journal_read still refuses a buffer too small, cursor unmoved. */
    ASSERT_EQ(gw_journal_read(j, 5, whole, 10, &len), SS_ENOSPC);
    ASSERT_EQ(gw_journal_read(j, 5, whole, sizeof(whole), &len), 0);
    ASSERT_EQ(len, 304);
    gw_journal_stats st;
    gw_journal_stats_get(j, &st);
    ASSERT_U64_EQ(st.crc_failures, 0);
    world_free(&w);
}

/* The journal's header-only look and checked streaming: peek gives the
 * length without the CRC (a damaged payload passes it, read_head reports it
 * lost), a damaged header is SS_EAGAIN, and a stream computes its CRC over
 * exactly the bytes it returns: bytes changed in storage after the entry's
 * header was read fail stream_end. */
TEST(journal_peek_and_checked_stream)
{
    world w;
    world_new(&w, 601, 0);
    w.jc.entry_max = 16384;
    w.jc.segment_max = 60000;
    node_reopen(&w);
    for (int i = 0; i < 120; i++)
        append(&w, i == 3 ? 9000 : 500 + (size_t)i);
    gw_journal *j = &w.node.journal;
    ASSERT_GT(j->nsegs, 1);
    char name[64];
    snprintf(name, sizeof(name), "seg-%016" PRIx64 ".log", j->segs[0].first);
    ASSERT_EQ(corrupt_entry(&w, name, 5), 1); /* seq 6: payload byte */
    node_reopen(&w);
    j = &w.node.journal;
    gw_jmark m;
    gw_journal_mark(j, &m);
    size_t len = 0;
    for (uint64_t seq = 1; seq <= 8; seq++) {
        ASSERT_EQ(gw_journal_peek(j, seq, SIZE_MAX, &len), 0);
        ASSERT_EQ(len, seq == 4 ? 9000 : 500 + seq - 1);
    }
    gw_journal_rewind(j, &m);
    ASSERT_EQ(gw_journal_peek(j, 1, 499, &len), SS_ENOSPC); /* cursor unmoved */
    static uint8_t buf[16384], ref[16384];
    for (uint64_t seq = 1; seq <= 8; seq++) {
        int rc = gw_journal_stream_begin(j, seq, SIZE_MAX, &len);
        if (seq == 6) {
            /* the checked read reports it lost and moves past it */
            ASSERT_EQ(rc, 0);
            for (size_t off = 0; off < len; off += 100)
                ASSERT_EQ(gw_journal_stream_read(j, buf + off, len - off < 100 ? len - off : 100),
                          0);
            ASSERT_EQ(gw_journal_stream_end(j), SS_ECORRUPT);
            gw_journal_rewind(j, &m);
            for (uint64_t s2 = 1; s2 <= 5; s2++)
                ASSERT_EQ(gw_journal_read(j, s2, ref, sizeof(ref), &len), 0);
            ASSERT_EQ(gw_journal_read(j, 6, ref, sizeof(ref), &len), SS_ECORRUPT);
            continue;
        }
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(gw_journal_stream_end(j), SS_EINVAL); /* bytes left */
        ASSERT_EQ(gw_journal_stream_begin(j, seq, SIZE_MAX, &len), 0);
        for (size_t off = 0; off < len; off += 700)
            ASSERT_EQ(gw_journal_stream_read(j, buf + off, len - off < 700 ? len - off : 700), 0);
        ASSERT_EQ(gw_journal_stream_read(j, buf, 1), SS_EINVAL); /* nothing left */
        uint32_t crc = gw_journal_entry_crc(j);
        ASSERT_EQ(gw_journal_stream_end(j), 0);
        gw_jmark here;
        gw_journal_mark(j, &here);
        size_t full = 0;
        ASSERT_EQ(gw_journal_read(j, seq, ref, sizeof(ref), &full), 0);
        ASSERT_EQ(full, len);
        ASSERT_MEM_EQ(ref, buf, len);
        ASSERT_EQ(gw_journal_entry_crc(j), crc);
        gw_journal_rewind(j, &here);
    }
    /* Damaged after the header was read: the stream's own CRC fails. */
    ASSERT_EQ(gw_journal_stream_begin(j, 9, SIZE_MAX, &len), 0);
    ASSERT_EQ(corrupt_entry(&w, name, 8), 1);
    ASSERT_EQ(gw_journal_stream_read(j, buf, len), 0);
    ASSERT_EQ(gw_journal_stream_end(j), SS_ECORRUPT);
    /* A damaged header: peek says so instead of guessing. */
    static uint8_t data[1u << 17];
    int64_t sz = fws_sim_peek(w.sim, name, 1, data, sizeof(data));
    ASSERT_GT(sz, 0);
    uint64_t off = 0;
    for (int i = 0; i < 10; i++)
        off += GW_JOURNAL_ENTRY_HDR + (((uint32_t)data[off + 6] << 8) | data[off + 7]);
    data[off] ^= 0x01; /* seq 11's magic */
    fws_file *f = NULL;
    ASSERT_EQ(fws_open(&w.shim, name, 0, &f), 0);
    ASSERT_EQ(fws_truncate(&w.shim, f, 0), 0);
    ASSERT_EQ(fws_append(&w.shim, f, data, (size_t)sz), 0);
    fws_close(&w.shim, f);
    gw_journal_rewind(j, &m);
    for (uint64_t seq = 1; seq <= 10; seq++)
        ASSERT_EQ(gw_journal_peek(j, seq, SIZE_MAX, &len), 0);
    ASSERT_EQ(gw_journal_peek(j, 11, SIZE_MAX, &len), SS_EAGAIN);
    ASSERT_EQ(gw_journal_read_head(j, 11, NULL, 0, SIZE_MAX, &len), SS_ECORRUPT);
    world_free(&w);
}

typedef struct tamper {
    world *w;
    char name[64];
    uint32_t k;
} tamper;

static void tamper_now(void *arg)
{
    tamper *t = arg;
    ASSERT_EQ(corrupt_entry(t->w, t->name, t->k), 1);
}

/* Storage changes between the checked pass and the send pass (an entry
 * far enough into the envelope that the first 4 KiB of the frame have gone
 * out): the session fails before the frame is complete, nothing is
 * acknowledged, and the next session sends that entry as lost. */
TEST(entry_changed_while_sending_abandons_the_frame)
{
    for (int sign = 0; sign <= 1; sign++) {
        world w;
        world_new(&w, 701 + (uint64_t)sign, sign);
        w.jc.entry_max = 1024;
        w.jc.segment_max = 60000;
        node_reopen(&w);
        for (int i = 0; i < 200; i++)
            append(&w, 500);
        gw_journal *j = &w.node.journal;
        ASSERT_GT(j->nsegs, 1);
        tamper t = { &w, "", 50 };
        snprintf(t.name, sizeof(t.name), "seg-%016" PRIx64 ".log", j->segs[0].first);

        slink *l = calloc(1, sizeof(*l));
        ASSERT(l != NULL);
        ss_fdec_init(&l->dec, SS_FRAME_ABSOLUTE_MAX);
        l->max_frame = w.sc.max_frame;
        l->window = w.sc.window;
        l->hook = tamper_now;
        l->hook_arg = &t;
        l->hook_at = 2; /* the first 4 KiB of the first BATCH */
        gw_stream st = { &link_ops, l };
        gw_sync sync;
        ASSERT_EQ(gw_sync_setup(&sync, &w.sc), 0);
        sync.signer = sign ? &w.signer : NULL;
        gw_sync_result res;
        int rc = gw_sync_session(&sync, &w.node, &st, &res);
        ASSERT_EQ(rc, SS_EIO);
        ASSERT_EQ(l->nframes, 0);
        ASSERT_U64_EQ(gw_journal_acked(j), 0);
        gw_sync_free(&sync);
        ss_fdec_free(&l->dec);
        free(l->frames);
        free(l);

        node_reopen(&w);
        ASSERT_GE(compare_session(&w, NULL), 1);
        world_free(&w);
    }
}

SS_TEST_MAIN(SS_TEST_ENTRY(streamed_batches_match_assembled_unsigned)
                 SS_TEST_ENTRY(streamed_batches_match_assembled_signed)
                     SS_TEST_ENTRY(streamed_batches_match_assembled_with_lost_entries)
                         SS_TEST_ENTRY(streamed_single_change_envelopes)
                             SS_TEST_ENTRY(streamed_envelope_fills_max_frame_exactly)
                                 SS_TEST_ENTRY(journal_read_head_more_and_mark)
                                     SS_TEST_ENTRY(journal_peek_and_checked_stream) SS_TEST_ENTRY(
                                         entry_changed_while_sending_abandons_the_frame))
