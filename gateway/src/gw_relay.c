/* gw_relay.c - relay mode: the hub's poll loop. Downstream: an mbed TLS
 * server (non-blocking over the shim) that checks each peer's certificate
 * (CA, local CRL, role, clientAuth, sites within the hub's own), speaks the
 * daemon's side of the protocol and acknowledges an envelope only once it
 * is synced in the hub journal (one sync per loop turn for everything that
 * arrived: a group commit). Upstream: one client session as role relay that
 * forwards envelopes byte for byte (ROUTED with the hops they came through),
 * round-robin across origins, advances per-origin committed from ACKs and
 * reclaims, rewinds on gap, records refusals, and adopts CRLs. */
#include "gw/relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>

#include "gw/sync.h"
#include "gw_relay_penalty.h"
#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/msg.h"
#include "proto/relay.h"

#define RX_CHUNK     16384
#define DOWN_OUT_CAP (64u << 10) /* max_output_bytes when 0 */
#define MAX_TOUCH    128
#define CRL_STORE    "crl.der"
#define SOFTWARE     "sitesync-gw 0.1.0 relay"

enum { ST_FREE = 0, ST_HS, ST_HELLO, ST_WAITUP, ST_ACTIVE };
enum { UP_DOWN = 0, UP_CONN, UP_HS, UP_WELCOME, UP_ACTIVE };

typedef struct dconn {
    gw_nbconn nb;
    int state;
    char addr[64];
    ss_ident id;
    ss_fdec dec;
    int64_t t0, last_rx;
    int64_t wait_until; /* ST_WAITUP: answer HELLO by then at the latest */
    int close_after_flush;
    int cut;                   /* output cap reached: closed without waiting for a flush */
    char akey[GW_PENALTY_KEY]; /* source address, for the penalty box */
    uint32_t touched[MAX_TOUCH];
    int ntouched;
} dconn;

/* Verified origin certificates, by SHA-256 of their DER: the hub checks
 * every envelope's origin signature before storing it, so a compromised
 * lower hub cannot make this hub hold (and acknowledge as held) envelopes
 * that are not the origin's. Emptied whenever the CRL changes. */
#define CERT_CACHE 32
typedef struct certent {
    uint8_t hash[32];
    mbedtls_x509_crt crt;
    ss_ident id;
    int used;
} certent;

typedef struct upconn {
    gw_nbconn nb;
    fws_sock *csock; /* UP_CONN: the socket still connecting (nb has none yet) */
    int state;
    ss_fdec dec;
    int64_t t0, last_rx, last_ping, next_try;
    unsigned failures;
    uint32_t window, max_frame;
    uint32_t nin;
    uint32_t *in_o;
    uint64_t *in_last;
} upconn;

struct gw_relay {
    const fws *shim;
    gw_relay_config cfg;
    gw_hubj hj;
    mbedtls_ssl_config sconf;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    mbedtls_x509_crl *crl;
    uint64_t crl_number;
    int64_t crl_warned_ms;
    ss_ident ident;
    gw_tls up_tls;
    gw_sync_config backoff;
    fws_sock *listener;
    uint16_t port;
    dconn *conns;
    upconn up;
    uint64_t *cursor, *gap_resume;
    uint8_t *blocked;  /* stopped for this upstream session */
    uint8_t *poisoned; /* stopped until restart (tamper) */
    uint32_t rr;
    uint8_t *buf;
    size_t buf_cap;
    uint8_t rx[RX_CHUNK];
    ss_hlc clk;
    uint64_t ping_nonce;
    int rehello; /* an origin new to this hub: learn its committed upstream */
    certent *certs;
    uint32_t cert_next;
    uint64_t sig_refused;
    int64_t last_ckpt;
    fws_pollfd *pfd;
    gw_penalty *pen; /* failed handshakes per source address */
    size_t out_cap;  /* max_output_bytes per downstream */
    uint64_t evicted, output_cuts;
    /* Full and no handshake has had its grace yet (see evict_grace): the
     * listener leaves the poll set until then and new connections wait in
     * the backlog. 0 when not holding. */
    int64_t hold_until;
    int fatal;
};

static void log_mbed(const fws *shim, const char *what, int rc)
{
    char msg[160];
    mbedtls_strerror(rc, msg, sizeof(msg));
    fws_log(shim, FWS_LOG_ERROR, "event=relay_tls_error op=%s mbedtls=-0x%04x reason=\"%s\"", what,
            (unsigned)-rc, msg);
}

static int shim_entropy(void *arg, unsigned char *out, size_t len)
{
    return fws_entropy(arg, out, len) == 0 ? 0 : MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
}

uint16_t gw_relay_port(const gw_relay *r)
{
    return r->port;
}

const char *gw_relay_node(const gw_relay *r)
{
    return r->ident.node;
}

/* ---- CRL ------------------------------------------------------------------ */

/* crlNumber (2.5.29.20) from the CRL's extensions, 0 if absent: mbed TLS
 * 2.28 keeps the extensions raw, so look for the OID and read the INTEGER
 * inside the OCTET STRING after it. */
static uint64_t crl_number_of(const mbedtls_x509_crl *c)
{
    static const uint8_t oid[] = { 0x06, 0x03, 0x55, 0x1d, 0x14 };
    const uint8_t *p = c->crl_ext.p, *end = p ? p + c->crl_ext.len : NULL;
    for (; p && p + sizeof(oid) + 4 <= end; p++) {
        if (memcmp(p, oid, sizeof(oid)) != 0)
            continue;
        const uint8_t *q = p + sizeof(oid);
        if (q[0] == 0x01 && q + 3 <= end) /* critical BOOLEAN */
            q += 3;
        if (q + 4 > end || q[0] != 0x04 || q[2] != 0x02)
            return 0;
        size_t n = q[3];
        q += 4;
        if (n < 1 || n > 9 || q + n > end)
            return 0;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v = (v << 8) | q[i];
        return v;
    }
    return 0;
}

/* The CRL must be issued and signed by our CA. */
static int crl_verify(gw_relay *r, const mbedtls_x509_crl *c)
{
    uint8_t hash[MBEDTLS_MD_MAX_SIZE];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(c->sig_md);
    if (!md || c->issuer_raw.len != r->ca.subject_raw.len ||
        memcmp(c->issuer_raw.p, r->ca.subject_raw.p, c->issuer_raw.len) != 0)
        return SS_ECERT;
    if (mbedtls_md(md, c->tbs.p, c->tbs.len, hash) != 0 ||
        mbedtls_pk_verify_ext(c->sig_pk, c->sig_opts, &r->ca.pk, c->sig_md, hash,
                              mbedtls_md_get_size(md), c->sig.p, c->sig.len) != 0)
        return SS_ECERT;
    return 0;
}

static void send_crl_down(gw_relay *r, dconn *c);

/* Parses, verifies and (if not older than ours) installs a CRL; stores it so
 * a restart while the centre is unreachable keeps enforcing it. */
static int crl_adopt(gw_relay *r, const uint8_t *buf, size_t len, const char *source)
{
    mbedtls_x509_crl *c = ss_malloc(sizeof(*c));
    uint8_t *tmp = ss_malloc(len + 1);
    int rc = SS_ECERT;
    if (!c || !tmp) {
        ss_free(c);
        ss_free(tmp);
        return SS_ENOMEM;
    }
    mbedtls_x509_crl_init(c);
    memcpy(tmp, buf, len);
    tmp[len] = '\0';
    int mrc = mbedtls_x509_crl_parse(c, tmp, len + (len > 0 && tmp[0] == '-' ? 1 : 0));
    ss_free(tmp);
    if (mrc != 0) {
        log_mbed(r->shim, "crl_parse", mrc);
        goto refuse;
    }
    if (crl_verify(r, c) < 0) {
        fws_log(r->shim, FWS_LOG_ERROR,
                "event=crl_refused source=%s reason=\"not issued or not signed by the CA\"",
                source);
        goto refuse;
    }
    uint64_t num = crl_number_of(c);
    if (r->crl && num < r->crl_number) {
        fws_log(r->shim, FWS_LOG_WARN,
                "event=crl_refused source=%s reason=older number=%" PRIu64 " have=%" PRIu64, source,
                num, r->crl_number);
        rc = SS_EVERSION;
        goto refuse;
    }
    if (r->crl && num == r->crl_number && r->crl->raw.len == c->raw.len &&
        memcmp(r->crl->raw.p, c->raw.p, c->raw.len) == 0) {
        mbedtls_x509_crl_free(c);
        ss_free(c);
        return 0; /* the one we have */
    }
    rc = fws_write_atomic(r->shim, CRL_STORE, c->raw.p, c->raw.len);
    if (rc < 0)
        fws_log(r->shim, FWS_LOG_WARN, "event=crl_store_failed err=%s", fws_strerror(rc));
    mbedtls_x509_crl *old = r->crl;
    r->crl = c;
    r->crl_number = num;
    /* New handshakes verify against it from now on; one in progress reads
     * the configuration's pointer when it verifies, so freeing the old one
     * here is safe in this single-threaded loop. */
    mbedtls_ssl_conf_ca_chain(&r->sconf, &r->ca, r->crl);
    for (uint32_t i = 0; r->certs && i < CERT_CACHE; i++)
        if (r->certs[i].used) {
            mbedtls_x509_crt_free(&r->certs[i].crt);
            r->certs[i].used = 0;
        }
    if (old) {
        mbedtls_x509_crl_free(old);
        ss_free(old);
    }
    fws_log(r->shim, FWS_LOG_INFO, "event=crl_adopted source=%s number=%" PRIu64 " revoked_any=%d",
            source, num, c->entry.raw.p != NULL);
    for (uint32_t i = 0; r->conns && i < r->cfg.max_conns; i++)
        if (r->conns[i].state == ST_ACTIVE && r->conns[i].id.role == SS_ROLE_RELAY)
            send_crl_down(r, &r->conns[i]);
    return 0;
refuse:
    mbedtls_x509_crl_free(c);
    ss_free(c);
    return rc;
}

static int verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    gw_relay *r = arg;
    if (depth == 0 &&
        (!(crt->ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) ||
         mbedtls_x509_crt_check_extended_key_usage(
             crt, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) != 0)) {
        /* mbed TLS accepts a leaf without any extendedKeyUsage for any
         * purpose; sitesync certificates always carry one, and a peer must
         * be a TLS client (clientAuth). Refused in the handshake, so no
         * application byte of such a peer is ever read. */
        *flags |= MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
    }
    if (*flags & MBEDTLS_X509_BADCRL_EXPIRED) {
        int64_t now = fws_mono_ms(r->shim);
        if (!r->cfg.crl_stale_refuse) {
            /* "warn": keep enforcing the last CRL we have. */
            *flags &= ~(uint32_t)MBEDTLS_X509_BADCRL_EXPIRED;
            if (r->crl_warned_ms == 0 || now - r->crl_warned_ms >= 3600 * 1000) {
                r->crl_warned_ms = now;
                fws_log(r->shim, FWS_LOG_WARN,
                        "event=crl_stale policy=warn number=%" PRIu64
                        " reason=\"past nextUpdate: still enforced; the centre has not sent a "
                        "newer one\"",
                        r->crl_number);
            }
        } else {
            fws_log(r->shim, FWS_LOG_WARN,
                    "event=crl_stale policy=refuse number=%" PRIu64
                    " reason=\"past nextUpdate: downstream handshake refused\"",
                    r->crl_number);
        }
    }
    return 0;
}

/* ---- frames ---------------------------------------------------------------- */

static int queue_frame(gw_nbconn *nb, int type, unsigned flags, const uint8_t *p, size_t len)
{
    uint8_t hdr[SS_FRAME_HEADER_LEN];
    if (gw_nb_room(nb) < len + sizeof(hdr))
        return SS_ENOSPC;
    int rc = ss_frame_write_header(hdr, type, flags, (uint32_t)len);
    if (rc < 0)
        return rc;
    /* The output buffer is allocated on first use: a header queued without
     * its payload (or the reverse) would desynchronise the stream. */
    rc = gw_nb_queue(nb, hdr, sizeof(hdr));
    if (rc < 0)
        return rc;
    rc = gw_nb_queue(nb, p, len);
    if (rc < 0)
        nb->out_len -= sizeof(hdr);
    return rc;
}

static int queue_msg(gw_relay *r, gw_nbconn *nb, const ss_msg *m)
{
    int n = ss_msg_encode(m, r->buf, r->buf_cap);
    if (n < 0)
        return n;
    return queue_frame(nb, m->type, 0, r->buf, (size_t)n);
}

/* A message to a downstream peer. max_output_bytes caps what a peer that
 * does not read can make the hub hold (ACKs, PONGs, ERRORs): the hub's own
 * queue plus what sits unacknowledged in the kernel's send queue, since
 * Linux grows a socket's send buffer to megabytes before the hub's queue
 * would grow at all. A message that does not fit, or cannot be queued at
 * all (memory), cuts the connection (flush_all closes it): a peer must
 * never wait for a reply the hub dropped. */
static void down_msg(gw_relay *r, dconn *c, const ss_msg *m)
{
    if (c->cut)
        return;
    size_t kernel = 0;
    (void)fws_sock_outq(r->shim, c->nb.sock, &kernel); /* 0 where unknown */
    int rc = c->nb.out_len + kernel >= r->out_cap ? SS_ENOSPC : queue_msg(r, &c->nb, m);
    if (rc < 0) {
        c->cut = 1;
        c->close_after_flush = 1;
        r->output_cuts++;
        fws_log(r->shim, FWS_LOG_WARN,
                "event=output_cap peer=%s node=%s queued=%zu kernel=%zu cap=%zu err=%s "
                "reason=\"%s\"",
                c->addr, c->id.node[0] ? c->id.node : "-", c->nb.out_len, kernel, r->out_cap,
                ss_err_name(rc),
                rc == SS_ENOSPC ? "peer does not read its ACKs" : "cannot queue a reply");
    }
}

static void queue_error(gw_relay *r, dconn *c, int code, const char *origin, uint64_t resume,
                        const char *msg)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_ERROR;
    m.u.error.code = code;
    m.u.error.resume = resume;
    if (origin)
        snprintf(m.u.error.origin, sizeof(m.u.error.origin), "%s", origin);
    snprintf(m.u.error.message, sizeof(m.u.error.message), "%s", msg);
    down_msg(r, c, &m);
}

/* ---- downstream -------------------------------------------------------------- */

static void dconn_close(gw_relay *r, dconn *c, const char *why)
{
    if (c->state != ST_FREE)
        fws_log(r->shim, FWS_LOG_INFO, "event=downstream_closed peer=%s node=%s reason=%s", c->addr,
                c->id.node[0] ? c->id.node : "-", why);
    gw_nb_close(&c->nb);
    ss_fdec_free(&c->dec);
    memset(c, 0, sizeof(*c));
    c->state = ST_FREE;
}

static void refuse_peer(gw_relay *r, dconn *c, int code, const char *why)
{
    fws_log(r->shim, FWS_LOG_WARN, "event=downstream_refused peer=%s node=%s code=%s reason=\"%s\"",
            c->addr, c->id.node[0] ? c->id.node : "-", ss_err_name(code), why);
    queue_error(r, c, code, NULL, 0, why);
    c->close_after_flush = 1;
}

static void send_crl_down(gw_relay *r, dconn *c)
{
    if (!r->crl)
        return;
    if (queue_frame(&c->nb, SS_FRAME_CRL, 0, r->crl->raw.p, r->crl->raw.len) < 0)
        fws_log(r->shim, FWS_LOG_WARN, "event=crl_not_sent peer=%s reason=no_room", c->id.node);
}

/* How long a new connection is safe from eviction. An honest client's
 * ClientHello follows its TCP handshake after a key share is made and the
 * bytes cross the network: tens of ms on a loaded host, more on a gateway's
 * small CPU. Against a full hub and a swarm that reconnects as fast as it is
 * evicted, the oldest connection without a whole hello was often only 26-50
 * ms old (ASan runs of hostile_relay_slowloris_over_max_conns): an honest
 * client slower than that would have been evicted before it could speak.
 * Half the handshake deadline when that is shorter. */
#define GW_EVICT_GRACE_MS 500
static int64_t evict_grace(const gw_relay *r)
{
    int64_t half = (int64_t)r->cfg.handshake_timeout_ms / 2;
    return half < GW_EVICT_GRACE_MS ? half : GW_EVICT_GRACE_MS;
}

/* A free slot, or else the slot of a connection still in its TLS handshake
 * to evict for a new one (not closed here: see free_slot). With every slot
 * taken by peers that never finish one (slowloris), a new connection evicts
 * the one that has had the longest chance, so the hub keeps serving. Peers
 * that have not yet delivered a whole ClientHello (the silent and the
 * byte-tricklers) go first, and only once they have had their grace: an
 * honest client sends its hello at once, so under a fast reconnecting swarm
 * its handshake is not evicted by the swarm's churn. A connection past its
 * handshake (an authenticated peer) is never evicted. NULL if none may go
 * now; *wait_ms is then how long until one may (0: never, all are past
 * their handshake). */
static dconn *room(gw_relay *r, int64_t *wait_ms, int *incomplete)
{
    dconn *oldest = NULL, *oldest_idle = NULL;
    *wait_ms = 0;
    for (uint32_t i = 0; i < r->cfg.max_conns; i++) {
        dconn *c = &r->conns[i];
        if (c->state == ST_FREE)
            return c;
        if (c->state != ST_HS || c->close_after_flush)
            continue;
        if (!oldest || c->t0 < oldest->t0)
            oldest = c;
        if (c->nb.ssl.state <= MBEDTLS_SSL_CLIENT_HELLO &&
            (!oldest_idle || c->t0 < oldest_idle->t0))
            oldest_idle = c;
    }
    dconn *v = oldest_idle ? oldest_idle : oldest;
    if (!v)
        return NULL;
    int64_t age = fws_mono_ms(r->shim) - v->t0, grace = evict_grace(r);
    if (age < grace) {
        *wait_ms = grace - age;
        return NULL;
    }
    *incomplete = v == oldest_idle;
    return v;
}

/* The slot for a new connection from addr (see room), the victim evicted
 * and logged. NULL if there is none. */
static dconn *free_slot(gw_relay *r, const char *addr)
{
    int64_t wait_ms;
    int incomplete = 0;
    dconn *v = room(r, &wait_ms, &incomplete);
    if (!v || v->state == ST_FREE)
        return v;
    r->evicted++;
    fws_log(r->shim, FWS_LOG_INFO,
            "event=conn_evicted peer=%s age_ms=%" PRId64 " hello=%s for=%s max_conns=%u "
            "evicted_total=%" PRIu64,
            v->addr, fws_mono_ms(r->shim) - v->t0, incomplete ? "incomplete" : "received", addr,
            r->cfg.max_conns, r->evicted);
    dconn_close(r, v, "evicted");
    return v;
}

/* The penalty box at accept: an address that failed too many handshakes is
 * closed before any TLS work (that work is what it would cost us). Only the
 * first refusal of each penalty is a warning, so a flood does not flood the
 * log. Returns 1 if refused. */
static int penalised(gw_relay *r, const char *akey, const char *addr)
{
    uint32_t nref = 0;
    int64_t left = gw_penalty_check(r->pen, akey, fws_mono_ms(r->shim), &nref);
    if (left <= 0)
        return 0;
    fws_log(r->shim, nref == 1 ? FWS_LOG_WARN : FWS_LOG_DEBUG,
            "event=conn_refused addr=%s peer=%s reason=penalised remaining_ms=%" PRId64
            " refused=%u",
            akey, addr, left, nref);
    return 1;
}

/* Counts a failed handshake against the peer's address (see gw_relay_penalty.c). */
static void note_bad_handshake(gw_relay *r, dconn *c)
{
    uint32_t fails = 0;
    if (c->akey[0] && gw_penalty_fail(r->pen, c->akey, fws_mono_ms(r->shim), &fails) == 1)
        fws_log(r->shim, FWS_LOG_WARN,
                "event=addr_penalised addr=%s failures=%u window_ms=%u penalty_ms=%u "
                "penalised_total=%" PRIu64,
                c->akey, r->pen->limit, r->pen->window_ms, r->pen->penalty_ms, r->pen->penalised);
}

/* Drains the listen backlog, up to a quarter of max_conns a call (16..256).
 * A turn can take tens of milliseconds of handshake crypto (hundreds on a
 * loaded machine), and a backlog left full makes the kernel drop SYNs,
 * honest ones included, which then wait a second to retry: so turn() also
 * calls this between connection steps (evict 0: free slots only). With
 * evict, at the end of the turn, a full hub makes room (free_slot); the
 * quarter bounds how many evictions one turn can make, so that a connection
 * accepted last turn, whose ClientHello the hub has not read yet, is not
 * evicted by one burst of a reconnecting swarm before it is stepped. */
static void accept_new(gw_relay *r, int evict)
{
    uint32_t burst = r->cfg.max_conns / 4;
    burst = burst < 16 ? 16 : burst > 256 ? 256 : burst;
    for (uint32_t k = 0; k < burst; k++) {
        if (evict) {
            /* Nothing may make way yet: the connection waits in the backlog
             * (its bytes wait in its socket), the listener leaves the poll
             * set until the grace is over (turn). */
            int64_t wait_ms;
            int incomplete;
            if (!room(r, &wait_ms, &incomplete) && wait_ms > 0) {
                r->hold_until = fws_mono_ms(r->shim) + wait_ms;
                return;
            }
            r->hold_until = 0;
        } else {
            uint32_t i = 0;
            while (i < r->cfg.max_conns && r->conns[i].state != ST_FREE)
                i++;
            if (i == r->cfg.max_conns)
                return; /* full: the end of the turn decides */
        }
        fws_sock *s = NULL;
        char addr[64], akey[GW_PENALTY_KEY];
        int rc = fws_accept(r->shim, r->listener, &s, addr, sizeof(addr));
        if (rc < 0)
            return;
        if (gw_penalty_key(addr, akey, sizeof(akey)) < 0)
            akey[0] = '\0';
        if (akey[0] && penalised(r, akey, addr)) {
            fws_sock_close(r->shim, s);
            continue;
        }
        dconn *c = free_slot(r, addr);
        if (!c) {
            fws_log(r->shim, FWS_LOG_WARN, "event=downstream_busy peer=%s max_conns=%u", addr,
                    r->cfg.max_conns);
            fws_sock_close(r->shim, s);
            continue;
        }
        memset(c, 0, sizeof(*c));
        if (gw_nb_start(&c->nb, r->shim, s, &r->sconf, NULL, r->out_cap) < 0)
            continue;
        snprintf(c->addr, sizeof(c->addr), "%s", addr);
        memcpy(c->akey, akey, sizeof(akey));
        ss_fdec_init(&c->dec, r->cfg.max_frame + 1024);
        c->state = ST_HS;
        c->t0 = c->last_rx = fws_mono_ms(r->shim);
    }
}

/* The peer's certificate passed the chain and CRL checks in the handshake;
 * now what it may do: a sitesync gateway or relay, clientAuth, and only
 * sites this hub carries. */
static void check_peer(gw_relay *r, dconn *c)
{
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->nb.ssl);
    if (!peer || gw_crt_ident(peer, &c->id, NULL, 0, NULL) < 0) {
        refuse_peer(r, c, SS_EIDENT, "certificate carries no valid sitesync identity");
        return;
    }
    if (c->id.role != SS_ROLE_GATEWAY && c->id.role != SS_ROLE_RELAY) {
        refuse_peer(r, c, SS_EROLE, "only gateways and relays connect to a hub");
        return;
    }
    if (mbedtls_x509_crt_check_extended_key_usage(peer, MBEDTLS_OID_CLIENT_AUTH,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) != 0) {
        refuse_peer(r, c, SS_EROLE, "certificate lacks the clientAuth extended key usage");
        return;
    }
    for (int i = 0; i < c->id.nsites; i++) {
        if (!ss_ident_has_site(&r->ident, c->id.sites[i])) {
            char why[160];
            snprintf(why, sizeof(why), "site %s is not carried by hub %s", c->id.sites[i],
                     r->ident.node);
            refuse_peer(r, c, SS_EFORBIDDEN, why);
            return;
        }
    }
    fws_log(r->shim, FWS_LOG_INFO, "event=downstream_connected peer=%s node=%s role=%s", c->addr,
            c->id.node, ss_role_name(c->id.role));
    c->state = ST_HELLO;
}

static void touch(dconn *c, uint32_t o)
{
    for (int i = 0; i < c->ntouched; i++)
        if (c->touched[i] == o)
            return;
    if (c->ntouched < MAX_TOUCH)
        c->touched[c->ntouched++] = o;
}

static void send_welcome(gw_relay *r, dconn *c, ss_oseq *cs, int n)
{
    ss_msg w;
    memset(&w, 0, sizeof(w));
    w.type = SS_FRAME_WELCOME;
    w.u.welcome.proto = SS_PROTO_VERSION;
    memcpy(w.u.welcome.node, r->ident.node, sizeof(w.u.welcome.node));
    ss_hlc_t now = 0;
    (void)ss_hlc_now(&r->clk, (uint64_t)fws_wall_ms(r->shim), &now);
    w.u.welcome.time = now;
    w.u.welcome.max_frame = r->cfg.max_frame + 1024;
    w.u.welcome.window = r->cfg.window;
    w.u.welcome.ncommitted = n;
    w.u.welcome.committed = cs;
    down_msg(r, c, &w);
    if (c->cut)
        return; /* WELCOME larger than max_output_bytes: logged by down_msg */
    c->state = ST_ACTIVE;
    c->last_rx = fws_mono_ms(r->shim);
    if (c->id.role == SS_ROLE_RELAY)
        send_crl_down(r, c);
}

static void on_hello(gw_relay *r, dconn *c, const ss_frame *f)
{
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    if (f->type != SS_FRAME_HELLO) {
        refuse_peer(r, c, SS_EPROTO, "expected HELLO");
        return;
    }
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
        char why[200];
        snprintf(why, sizeof(why), "bad HELLO: %s", verr.msg[0] ? verr.msg : "undecodable");
        refuse_peer(r, c, verr.code ? verr.code : SS_EPROTO, why);
        return;
    }
    if (strcmp(m.u.hello.node, c->id.node) != 0 || m.u.hello.role != c->id.role) {
        ss_msg_free(&m);
        refuse_peer(r, c, SS_EAUTH, "HELLO does not match the certificate");
        return;
    }
    fws_log(r->shim, FWS_LOG_INFO, "event=downstream_hello peer=%s node=%s origins=%d", c->addr,
            c->id.node, m.u.hello.norigins);
    int n = 1 + (c->id.role == SS_ROLE_RELAY ? m.u.hello.norigins : 0);
    if (c->id.role == SS_ROLE_GATEWAY && gw_hubj_origin(&r->hj, c->id.node, 0) < 0 &&
        r->up.state != UP_DOWN && gw_hubj_origin(&r->hj, c->id.node, 1) >= 0) {
        /* A gateway this hub has never carried: WELCOME must not tell it 0
         * when the daemon holds its numbers (a gateway that lost its
         * storage would reuse them). Learn them first: the upstream session
         * starts again with this origin in its HELLO; the gateway waits a
         * little. */
        ss_msg_free(&m);
        c->state = ST_WAITUP;
        uint32_t w =
            r->cfg.handshake_timeout_ms / 2 < 3000 ? r->cfg.handshake_timeout_ms / 2 : 3000;
        c->wait_until = fws_mono_ms(r->shim) + w;
        r->rehello = 1;
        fws_log(r->shim, FWS_LOG_INFO, "event=new_origin origin=%s action=ask_upstream",
                c->id.node);
        return;
    }
    ss_oseq *cs = ss_malloc(sizeof(ss_oseq) * (size_t)n);
    if (!cs) {
        ss_msg_free(&m);
        refuse_peer(r, c, SS_ENOMEM, "out of memory");
        return;
    }
    memset(cs, 0, sizeof(ss_oseq) * (size_t)n);
    for (int i = 0; i < n; i++) {
        const char *id = i == 0 ? c->id.node : m.u.hello.origins[i - 1].origin;
        memcpy(cs[i].origin, id, strlen(id) + 1);
        int o = gw_hubj_origin(&r->hj, id, 0);
        cs[i].seq = o >= 0 ? gw_hubj_have(&r->hj, (uint32_t)o) : 0;
    }
    ss_msg_free(&m);
    send_welcome(r, c, cs, n);
    ss_free(cs);
}

/* WELCOME for a gateway whose answer waited for the upstream. */
static void welcome_waiting(gw_relay *r, dconn *c)
{
    ss_oseq cs;
    memset(&cs, 0, sizeof(cs));
    memcpy(cs.origin, c->id.node, strlen(c->id.node) + 1);
    int o = gw_hubj_origin(&r->hj, c->id.node, 0);
    cs.seq = o >= 0 ? gw_hubj_have(&r->hj, (uint32_t)o) : 0;
    send_welcome(r, c, &cs, 1);
}

/* The origin's certificate (from the envelope's signature block): chain to
 * the CA, not revoked in our CRL, a gateway whose node is the envelope's
 * origin and whose sites this hub carries; then the signature over the
 * signed region. Returns 0 or SS_ESIG / SS_ECERT / SS_EREVOKED /
 * SS_EFORBIDDEN with why filled. The daemon checks the same again. */
static int check_origin(gw_relay *r, const ss_envelope *env, char *why, size_t cap)
{
    ss_sig sig;
    uint8_t h[32];
    if (ss_sig_parse(env, &sig) < 0) {
        snprintf(why, cap, "unsigned or malformed signature block");
        return SS_ESIG;
    }
    if (mbedtls_sha256_ret(sig.cert, sig.cert_len, h, 0) != 0)
        return SS_EINTERNAL;
    certent *ce = NULL;
    for (uint32_t i = 0; i < CERT_CACHE && !ce; i++)
        if (r->certs[i].used && memcmp(r->certs[i].hash, h, 32) == 0)
            ce = &r->certs[i];
    if (!ce) {
        certent *slot = &r->certs[r->cert_next++ % CERT_CACHE];
        if (slot->used)
            mbedtls_x509_crt_free(&slot->crt);
        memset(slot, 0, sizeof(*slot));
        mbedtls_x509_crt_init(&slot->crt);
        uint32_t flags = 0;
        if (mbedtls_x509_crt_parse_der(&slot->crt, sig.cert, sig.cert_len) != 0 ||
            mbedtls_x509_crt_verify(&slot->crt, &r->ca, r->crl, NULL, &flags, NULL, NULL) != 0) {
            if (!r->cfg.crl_stale_refuse)
                flags &= ~(uint32_t)MBEDTLS_X509_BADCRL_EXPIRED;
            if (flags == 0 && slot->crt.raw.p) {
                /* only the stale-CRL flag, tolerated by policy "warn" */
            } else {
                int revoked = (flags & MBEDTLS_X509_BADCERT_REVOKED) != 0;
                mbedtls_x509_crt_free(&slot->crt);
                snprintf(why, cap, "origin certificate %s",
                         revoked ? "revoked" : "does not verify against the CA");
                return revoked ? SS_EREVOKED : SS_ECERT;
            }
        }
        if (gw_crt_ident(&slot->crt, &slot->id, NULL, 0, NULL) < 0 ||
            slot->id.role != SS_ROLE_GATEWAY) {
            mbedtls_x509_crt_free(&slot->crt);
            snprintf(why, cap, "origin certificate is not a sitesync gateway's");
            return SS_ECERT;
        }
        memcpy(slot->hash, h, 32);
        slot->used = 1;
        ce = slot;
    }
    if (strcmp(ce->id.node, env->origin) != 0) {
        snprintf(why, cap, "certificate of %s on an envelope of %s", ce->id.node, env->origin);
        return SS_ECERT;
    }
    for (int i = 0; i < ce->id.nsites; i++)
        if (!ss_ident_has_site(&r->ident, ce->id.sites[i])) {
            snprintf(why, cap, "origin site %s is not carried by this hub", ce->id.sites[i]);
            return SS_EFORBIDDEN;
        }
    if (mbedtls_sha256_ret(env->signed_bytes, env->signed_len, h, 0) != 0 ||
        mbedtls_pk_verify(&ce->crt.pk, MBEDTLS_MD_SHA256, h, 32, sig.sig, sig.sig_len) != 0) {
        snprintf(why, cap, "signature does not match the envelope");
        return SS_ESIG;
    }
    return 0;
}

static void on_batch(gw_relay *r, dconn *c, const ss_frame *f)
{
    const uint8_t *envp = f->payload;
    size_t envl = f->len, off = 0;
    ss_route route;
    memset(&route, 0, sizeof(route));
    if (f->flags & SS_FRAME_FLAG_ROUTED) {
        if (c->id.role != SS_ROLE_RELAY) {
            refuse_peer(r, c, SS_EROLE, "only a relay may send a routed BATCH");
            return;
        }
        if (ss_route_parse(f->payload, f->len, &route, &off) < 0) {
            refuse_peer(r, c, SS_EPROTO, "bad route prefix");
            return;
        }
        envp += off;
        envl -= off;
    }
    ss_envelope env;
    int rc = ss_envelope_parse(envp, envl, &env);
    if (rc < 0) {
        refuse_peer(r, c, rc, "bad envelope");
        return;
    }
    if (c->id.role == SS_ROLE_GATEWAY && strcmp(env.origin, c->id.node) != 0) {
        refuse_peer(r, c, SS_EAUTH, "a gateway sends only its own envelopes");
        return;
    }
    char why[256];
    rc = check_origin(r, &env, why, sizeof(why));
    if (rc < 0) {
        /* Refused as a whole, nothing stored, the sequence not taken: as the
         * daemon does, a relay's session stays open for the honest
         * envelopes behind it; a gateway's own bad envelope closes it. */
        r->sig_refused++;
        fws_log(r->shim, FWS_LOG_WARN,
                "event=envelope_refused peer=%s origin=%s seq=%" PRIu64 " code=%s reason=\"%s\"",
                c->id.node, env.origin, env.first_seq, ss_err_name(rc), why);
        ss_msg m;
        memset(&m, 0, sizeof(m));
        m.type = SS_FRAME_ERROR;
        m.u.error.code = rc;
        m.u.error.seq = env.first_seq;
        snprintf(m.u.error.origin, sizeof(m.u.error.origin), "%s", env.origin);
        snprintf(m.u.error.message, sizeof(m.u.error.message), "%s", why);
        down_msg(r, c, &m);
        if (c->id.role != SS_ROLE_RELAY)
            c->close_after_flush = 1;
        return;
    }
    /* The body's structure, as the daemon will judge it (strict JSON: no
     * duplicate key, bounded depth; an array of `count` changes with their
     * sequence numbers): an envelope the daemon would refuse as a whole is
     * refused here, before it takes its sequence numbers in the hub journal
     * (stored, it would become a hole upstream the hub could never fill).
     * Schema faults of single changes are the daemon's to refuse and audit. */
    ss_body *body = NULL;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    rc = ss_body_parse(&env, &body, &verr);
    ss_body_free(body);
    if (rc < 0) {
        fws_log(r->shim, FWS_LOG_WARN,
                "event=envelope_refused peer=%s origin=%s seq=%" PRIu64 " code=%s reason=\"%s\"",
                c->id.node, env.origin, env.first_seq, ss_err_name(rc), verr.msg);
        ss_msg m;
        memset(&m, 0, sizeof(m));
        m.type = SS_FRAME_ERROR;
        m.u.error.code = rc;
        m.u.error.seq = env.first_seq;
        snprintf(m.u.error.origin, sizeof(m.u.error.origin), "%s", env.origin);
        snprintf(m.u.error.message, sizeof(m.u.error.message), "bad envelope body: %s",
                 verr.msg[0] ? verr.msg : ss_strerror(rc));
        down_msg(r, c, &m);
        if (c->id.role != SS_ROLE_RELAY)
            c->close_after_flush = 1;
        return;
    }
    rc = gw_hubj_origin(&r->hj, env.origin, 1);
    if (rc < 0) {
        queue_error(r, c, SS_ELIMIT, env.origin, 0, "too many origins at this hub");
        return;
    }
    uint32_t o = (uint32_t)rc;
    uint64_t have = gw_hubj_have(&r->hj, o), last = ss_envelope_last_seq(&env);
    if (env.first_seq > have + 1 && r->hj.origins[o].nrecs == 0) {
        /* Nothing of this origin is pending here: the downstream was
         * acknowledged up to first_seq - 1 elsewhere (directly, or through
         * this hub before a reclaim), so its stream continues here. A real
         * hole is still caught upstream. */
        fws_log(r->shim, FWS_LOG_INFO,
                "event=origin_resumes_here origin=%s first=%" PRIu64 " had=%" PRIu64, env.origin,
                env.first_seq, have);
    } else if (env.first_seq > have + 1) {
        queue_error(r, c, SS_EGAP, env.origin, have + 1, "gap: resume from resume");
        return;
    }
    if (last > have) {
        /* Forwarded under the hops it came through: a gateway's own envelope
         * goes up unrouted; one from a relay gets that relay appended. */
        uint8_t rbuf[1 + SS_ROUTE_MAX_HOPS * (1 + SS_ID_MAX)];
        int rl = 0;
        if (c->id.role == SS_ROLE_RELAY) {
            if (ss_route_push(&route, c->id.node) < 0 ||
                (rl = ss_route_write(rbuf, sizeof(rbuf), &route)) < 0) {
                queue_error(r, c, SS_ELIMIT, env.origin, 0, "route too long");
                return;
            }
        }
        rc = gw_hubj_append(&r->hj, o, env.first_seq, env.count, rbuf, (size_t)rl, envp, envl);
        if (rc < 0) {
            queue_error(r, c, rc, env.origin, 0, ss_strerror(rc));
            if (rc != SS_EFULL && rc != SS_EOVERSIZE) {
                c->close_after_flush = 1;
                if (r->hj.broken)
                    r->fatal = r->hj.broken;
            }
            return;
        }
    }
    touch(c, o); /* new or duplicate: acknowledged once durable */
}

static void on_frame(gw_relay *r, dconn *c, const ss_frame *f)
{
    if (c->state == ST_HELLO) {
        on_hello(r, c, f);
        return;
    }
    if (c->state == ST_WAITUP) {
        refuse_peer(r, c, SS_EPROTO, "frame before WELCOME");
        return;
    }
    if (f->type == SS_FRAME_BATCH) {
        on_batch(r, c, f);
        return;
    }
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    if (f->type != SS_FRAME_PING && f->type != SS_FRAME_PONG && f->type != SS_FRAME_BYE &&
        f->type != SS_FRAME_ERROR) {
        refuse_peer(r, c, SS_EPROTO, "unexpected frame");
        return;
    }
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
        /* The decoder's own code (malformed_json, duplicate_key, too_deep,
         * ...) tells the peer what was wrong, as the daemon does. */
        char why[200];
        snprintf(why, sizeof(why), "bad %s: %s", ss_frame_type_name(f->type),
                 verr.msg[0] ? verr.msg : "undecodable");
        refuse_peer(r, c, verr.code ? verr.code : SS_EPROTO, why);
        return;
    }
    if (m.type == SS_FRAME_ERROR) {
        /* A downstream that gives up says why; the session ends. */
        fws_log(r->shim, FWS_LOG_WARN, "event=peer_error peer=%s node=%s code=%s", c->addr,
                c->id.node, ss_err_name(m.u.error.code));
        c->close_after_flush = 1;
        ss_msg_free(&m);
        return;
    }
    if (m.type == SS_FRAME_PING) {
        ss_msg p;
        memset(&p, 0, sizeof(p));
        p.type = SS_FRAME_PONG;
        p.u.ping.nonce = m.u.ping.nonce;
        down_msg(r, c, &p);
    } else if (m.type == SS_FRAME_BYE) {
        c->close_after_flush = 1;
    }
    ss_msg_free(&m);
}

static void dconn_read(gw_relay *r, dconn *c)
{
    for (int chunk = 0; chunk < 4 && !c->close_after_flush && c->state != ST_FREE; chunk++) {
        int n = gw_nb_read(&c->nb, r->rx, sizeof(r->rx));
        if (n == 0)
            return;
        if (n < 0) {
            dconn_close(r, c, n == SS_ECLOSED ? "closed" : ss_err_name(n));
            return;
        }
        c->last_rx = fws_mono_ms(r->shim);
        size_t off = 0;
        while (off < (size_t)n && !c->close_after_flush) {
            size_t used = 0;
            int rc = ss_fdec_feed(&c->dec, r->rx + off, (size_t)n - off, &used);
            off += used;
            if (rc < 0) {
                refuse_peer(r, c, rc, "undecodable frame");
                return;
            }
            if (rc == 1) {
                ss_frame f;
                if (ss_fdec_frame(&c->dec, &f) == 0)
                    on_frame(r, c, &f);
            }
        }
    }
}

static void dconn_step(gw_relay *r, dconn *c, int readable)
{
    int64_t now = fws_mono_ms(r->shim);
    if (c->state == ST_HS) {
        /* Only a connection with something to read (or to write) steps its
         * handshake: with a thousand silent ones held open, trying each at
         * every turn would cost a system call apiece per turn. */
        if (!readable) {
            if (now - c->t0 > (int64_t)r->cfg.handshake_timeout_ms)
                dconn_close(r, c, "handshake_timeout");
            return;
        }
        int rc = gw_nb_handshake(&c->nb);
        if (rc < 0) {
            fws_log(r->shim, FWS_LOG_WARN,
                    "event=downstream_refused peer=%s code=%s reason=\"TLS handshake failed "
                    "(certificate, revocation or protocol)\"",
                    c->addr, ss_err_name(rc));
            /* A peer that just went away is not a failed handshake: plain
             * connect-and-close from an honest address must not be
             * penalised. */
            if (rc != SS_ECLOSED)
                note_bad_handshake(r, c);
            dconn_close(r, c, "handshake");
            return;
        }
        if (rc == 1) {
            if (now - c->t0 > (int64_t)r->cfg.handshake_timeout_ms)
                dconn_close(r, c, "handshake_timeout");
            return;
        }
        check_peer(r, c);
    }
    if (c->state == ST_HELLO && now - c->t0 > (int64_t)r->cfg.handshake_timeout_ms &&
        !c->close_after_flush) {
        dconn_close(r, c, "hello_timeout");
        return;
    }
    if (c->state == ST_WAITUP && now >= c->wait_until) {
        fws_log(r->shim, FWS_LOG_WARN,
                "event=welcome_without_upstream origin=%s reason=\"upstream did not answer in "
                "time\"",
                c->id.node);
        welcome_waiting(r, c);
    }
    if ((readable || c->state >= ST_HELLO) && !c->close_after_flush)
        dconn_read(r, c);
    if (c->state == ST_ACTIVE && now - c->last_rx > (int64_t)r->cfg.idle_timeout_ms)
        dconn_close(r, c, "idle");
}

static void send_acks(gw_relay *r, dconn *c)
{
    if (c->ntouched == 0 || c->state == ST_FREE || c->cut)
        return;
    ss_oseq acks[MAX_TOUCH];
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_ACK;
    for (int i = 0; i < c->ntouched; i++) {
        const char *id = r->hj.origins[c->touched[i]].id;
        memcpy(acks[i].origin, id, strlen(id) + 1);
        acks[i].seq = gw_hubj_have(&r->hj, c->touched[i]);
    }
    m.u.ack.nacks = c->ntouched;
    m.u.ack.acks = acks;
    down_msg(r, c, &m);
    c->ntouched = 0;
}

/* ---- upstream ---------------------------------------------------------------- */

static void up_fail(gw_relay *r, int err, const char *why)
{
    upconn *u = &r->up;
    int64_t now = fws_mono_ms(r->shim);
    uint32_t d = gw_backoff_ms(r->shim, &r->backoff, u->failures);
    if (u->failures < 31)
        u->failures++;
    fws_log(r->shim, FWS_LOG_WARN,
            "event=upstream_down err=%s reason=\"%s\" retry_in_ms=%u in_flight=%u",
            ss_err_name(err), why, d, u->nin);
    if (u->csock)
        fws_sock_close(r->shim, u->csock);
    u->csock = NULL;
    gw_nb_close(&u->nb);
    ss_fdec_free(&u->dec);
    u->state = UP_DOWN;
    u->nin = 0;
    u->next_try = now + d;
}

/* The TCP connect does not wait in the loop (a black-holed uplink used to
 * stop the hub serving its sites for up to 3 s per attempt): it is started
 * here, polled for writability by turn() and finished in up_step(), within
 * handshake_timeout_ms. A shim without non-blocking connects connects here,
 * waiting at most 3 s, as before. */
static void up_connect(gw_relay *r)
{
    upconn *u = &r->up;
    fws_sock *s = NULL;
    uint32_t to = r->cfg.handshake_timeout_ms < 3000 ? r->cfg.handshake_timeout_ms : 3000;
    int rc = fws_connect_start(r->shim, r->cfg.up_host, r->cfg.up_port, to, &s);
    if (rc < 0) {
        up_fail(r, gw_map_net_err(rc), "connect");
        return;
    }
    u->csock = s;
    u->state = UP_CONN;
    u->t0 = fws_mono_ms(r->shim);
}

/* The TCP connection is up: TLS starts on it. */
static void up_connected(gw_relay *r)
{
    upconn *u = &r->up;
    fws_sock *s = u->csock;
    u->csock = NULL; /* the nb connection owns it from here, even on failure */
    int rc = gw_nb_start(&u->nb, r->shim, s, &r->up_tls.conf,
                         r->up_tls.name_is_ip ? NULL : r->up_tls.server_name,
                         (size_t)r->cfg.hub.max_envelope * 2 + 65536);
    if (rc < 0) {
        up_fail(r, rc, "tls setup");
        return;
    }
    ss_fdec_init(&u->dec, SS_FRAME_DEFAULT_MAX);
    u->state = UP_HS;
    u->t0 = u->last_rx = fws_mono_ms(r->shim);
}

static int up_hello(gw_relay *r)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_HELLO;
    m.u.hello.proto = SS_PROTO_VERSION;
    memcpy(m.u.hello.node, r->ident.node, sizeof(m.u.hello.node));
    m.u.hello.role = SS_ROLE_RELAY;
    m.u.hello.max_frame = SS_FRAME_DEFAULT_MAX;
    memcpy(m.u.hello.software, SOFTWARE, sizeof(SOFTWARE));
    uint32_t n = r->hj.norigins < SS_MSG_MAX_ORIGINS ? r->hj.norigins : SS_MSG_MAX_ORIGINS;
    ss_oseq *os = n ? ss_malloc(sizeof(ss_oseq) * n) : NULL;
    if (n && !os)
        return SS_ENOMEM;
    int k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(r->hj.origins[i].id, r->ident.node) != 0) {
            memset(&os[k], 0, sizeof(os[k]));
            memcpy(os[k].origin, r->hj.origins[i].id, strlen(r->hj.origins[i].id) + 1);
            k++;
        }
    m.u.hello.norigins = k;
    m.u.hello.origins = os;
    r->rehello = 0;
    int rc = queue_msg(r, &r->up.nb, &m);
    ss_free(os);
    return rc;
}

static void drop_inflight(gw_relay *r, uint32_t o, uint64_t upto)
{
    upconn *u = &r->up;
    uint32_t k = 0;
    for (uint32_t i = 0; i < u->nin; i++) {
        if (u->in_o[i] == o && u->in_last[i] <= upto)
            continue;
        u->in_o[k] = u->in_o[i];
        u->in_last[k] = u->in_last[i];
        k++;
    }
    u->nin = k;
}

static void on_welcome(gw_relay *r, const ss_welcome *w)
{
    upconn *u = &r->up;
    u->window = w->window < 1 ? 1 : w->window;
    if (u->window > 1024)
        u->window = 1024;
    u->max_frame = w->max_frame;
    (void)ss_hlc_recv(&r->clk, w->time, (uint64_t)fws_wall_ms(r->shim), 0, NULL);
    for (int i = 0; i < w->ncommitted; i++) {
        int o = gw_hubj_origin(&r->hj, w->committed[i].origin, 0);
        if (o >= 0)
            gw_hubj_commit(&r->hj, (uint32_t)o, w->committed[i].seq);
    }
    for (uint32_t o = 0; o < r->hj.norigins; o++) {
        r->cursor[o] = r->hj.origins[o].committed + 1;
        r->gap_resume[o] = 0;
        r->blocked[o] = 0;
    }
    u->nin = 0;
    u->failures = 0;
    u->state = UP_ACTIVE;
    fws_log(r->shim, FWS_LOG_INFO, "event=upstream_welcome node=%s window=%u origins=%d", w->node,
            u->window, w->ncommitted);
    /* Gateways waiting for this answer get their WELCOME now, unless an
     * origin arrived after our HELLO went out (another round then). */
    for (uint32_t i = 0; !r->rehello && i < r->cfg.max_conns; i++)
        if (r->conns[i].state == ST_WAITUP)
            welcome_waiting(r, &r->conns[i]);
}

static void on_up_ack(gw_relay *r, const ss_ack *a)
{
    for (int i = 0; i < a->nrejects; i++) {
        const ss_reject *x = &a->rejects[i];
        int o = gw_hubj_origin(&r->hj, x->origin, 0);
        if (o < 0)
            continue;
        fws_log(r->shim, FWS_LOG_WARN, "event=upstream_rejected origin=%s seq=%" PRIu64 " code=%s",
                x->origin, x->seq, ss_err_name(x->code));
        (void)gw_hubj_note_refused(&r->hj, (uint32_t)o, x->seq, ss_err_name(x->code), x->message);
    }
    for (int i = 0; i < a->nacks; i++) {
        int o = gw_hubj_origin(&r->hj, a->acks[i].origin, 0);
        if (o < 0)
            continue;
        gw_hubj_commit(&r->hj, (uint32_t)o, a->acks[i].seq);
        drop_inflight(r, (uint32_t)o, a->acks[i].seq);
        if (r->cursor[o] <= a->acks[i].seq)
            r->cursor[o] = a->acks[i].seq + 1;
    }
}

static void on_up_error(gw_relay *r, const ss_error *e)
{
    int o = e->origin[0] ? gw_hubj_origin(&r->hj, e->origin, 0) : -1;
    if (o < 0) {
        up_fail(r, e->code, e->message);
        return;
    }
    if (e->code == SS_EGAP) {
        uint64_t resume = e->resume ? e->resume : r->hj.origins[o].committed + 1;
        if (resume > 1)
            gw_hubj_commit(&r->hj, (uint32_t)o, resume - 1);
        drop_inflight(r, (uint32_t)o, UINT64_MAX);
        if (r->gap_resume[o] == resume) {
            /* The same hole twice: the hub cannot supply it (lost here, or
             * never received). Stop this origin for this session; the
             * upstream keeps reporting it incomplete. */
            r->blocked[o] = 1;
            fws_log(r->shim, FWS_LOG_ERROR,
                    "event=origin_blocked origin=%s resume=%" PRIu64
                    " reason=\"upstream gap this hub cannot fill\"",
                    e->origin, resume);
            (void)gw_hubj_note_refused(
                &r->hj, (uint32_t)o, resume, "gap",
                "upstream misses this sequence and the hub cannot supply it");
            return;
        }
        r->gap_resume[o] = resume;
        r->cursor[o] = resume;
        fws_log(r->shim, FWS_LOG_INFO, "event=upstream_gap origin=%s resume=%" PRIu64, e->origin,
                resume);
        return;
    }
    /* An envelope refused as a whole (bad signature, certificate, tamper):
     * recorded, never retried by us; the upstream's view of the origin
     * shows the hole. After `tamper` the upstream holds other bytes under
     * these numbers and closes the session: resending would only repeat
     * that at every reconnect and hold up the other origins, so this
     * origin stays stopped until the hub restarts. */
    if (e->code == SS_ETAMPER && !r->poisoned[o]) {
        r->poisoned[o] = 1;
        fws_log(r->shim, FWS_LOG_ERROR,
                "event=origin_blocked origin=%s seq=%" PRIu64
                " reason=\"upstream holds other bytes under these numbers (tamper); stopped "
                "until restart\"",
                e->origin, e->seq);
    }
    fws_log(r->shim, FWS_LOG_ERROR,
            "event=upstream_refused origin=%s seq=%" PRIu64 " code=%s reason=\"%s\"", e->origin,
            e->seq, ss_err_name(e->code), e->message);
    (void)gw_hubj_note_refused(&r->hj, (uint32_t)o, e->seq, ss_err_name(e->code), e->message);
    upconn *u = &r->up;
    for (uint32_t i = 0; i < u->nin; i++)
        if (u->in_o[i] == (uint32_t)o && (e->seq == 0 || u->in_last[i] >= e->seq)) {
            u->in_o[i] = u->in_o[u->nin - 1];
            u->in_last[i] = u->in_last[u->nin - 1];
            u->nin--;
            break;
        }
}

static void on_up_frame(gw_relay *r, const ss_frame *f)
{
    upconn *u = &r->up;
    if (f->type == SS_FRAME_CRL) {
        (void)crl_adopt(r, f->payload, f->len, "upstream");
        return;
    }
    if (f->type == SS_FRAME_BATCH || f->type == SS_FRAME_HELLO) {
        up_fail(r, SS_EPROTO, "unexpected frame from upstream");
        return;
    }
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
        up_fail(r, SS_EPROTO, verr.msg);
        return;
    }
    if (u->state == UP_WELCOME && m.type != SS_FRAME_WELCOME) {
        if (m.type == SS_FRAME_ERROR)
            up_fail(r, m.u.error.code, m.u.error.message);
        else
            up_fail(r, SS_EPROTO, "expected WELCOME");
        ss_msg_free(&m);
        return;
    }
    switch (m.type) {
    case SS_FRAME_WELCOME:
        on_welcome(r, &m.u.welcome);
        break;
    case SS_FRAME_ACK:
        on_up_ack(r, &m.u.ack);
        break;
    case SS_FRAME_ERROR:
        on_up_error(r, &m.u.error);
        break;
    case SS_FRAME_PING: {
        ss_msg p;
        memset(&p, 0, sizeof(p));
        p.type = SS_FRAME_PONG;
        p.u.ping.nonce = m.u.ping.nonce;
        (void)queue_msg(r, &u->nb, &p);
        break;
    }
    case SS_FRAME_BYE:
        up_fail(r, SS_ESHUTDOWN, "upstream said BYE");
        break;
    default:
        break;
    }
    ss_msg_free(&m);
}

static void up_read(gw_relay *r)
{
    upconn *u = &r->up;
    for (int chunk = 0; chunk < 8 && u->state >= UP_WELCOME; chunk++) {
        int n = gw_nb_read(&u->nb, r->rx, sizeof(r->rx));
        if (n == 0)
            return;
        if (n < 0) {
            up_fail(r, n, "link");
            return;
        }
        u->last_rx = fws_mono_ms(r->shim);
        size_t off = 0;
        while (off < (size_t)n && u->state >= UP_WELCOME) {
            size_t used = 0;
            int rc = ss_fdec_feed(&u->dec, r->rx + off, (size_t)n - off, &used);
            off += used;
            if (rc < 0) {
                up_fail(r, rc, "undecodable frame from upstream");
                return;
            }
            if (rc == 1) {
                ss_frame f;
                if (ss_fdec_frame(&u->dec, &f) == 0)
                    on_up_frame(r, &f);
            }
        }
    }
}

int gw_relay_up_inject(gw_relay *r, int type, unsigned flags, const uint8_t *payload, size_t len)
{
    if (r->up.state != UP_ACTIVE)
        return SS_ECLOSED;
    return queue_frame(&r->up.nb, type, flags, payload, len);
}

/* The record of origin o holding its cursor, or GW_HUB_NO_REC. */
static uint32_t next_rec(gw_relay *r, uint32_t o)
{
    uint64_t cur = r->cursor[o];
    for (uint32_t x = r->hj.origins[o].head; x != GW_HUB_NO_REC; x = r->hj.recs[x].next)
        if (r->hj.recs[x].last >= cur)
            return x;
    return GW_HUB_NO_REC;
}

/* Round-robin across origins, one envelope per origin per turn, so one
 * chatty site cannot starve the others; bounded by the upstream's window
 * and the output buffer. */
static void forward(gw_relay *r, int stopping)
{
    upconn *u = &r->up;
    uint32_t no = r->hj.norigins;
    if (u->state != UP_ACTIVE || stopping || no == 0)
        return;
    for (int turn = 0; turn < 1024 && u->nin < u->window; turn++) {
        int progress = 0;
        for (uint32_t k = 0; k < no && u->nin < u->window; k++) {
            uint32_t o = (r->rr + k) % no;
            if (r->blocked[o] || r->poisoned[o])
                continue;
            uint32_t x = next_rec(r, o);
            if (x == GW_HUB_NO_REC)
                continue;
            const gw_hub_rec *rec = &r->hj.recs[x];
            if (gw_nb_room(&u->nb) < (size_t)rec->len + SS_FRAME_HEADER_LEN)
                return; /* the socket is behind: next turn */
            size_t route_len = 0;
            int len = gw_hubj_read(&r->hj, x, r->buf, r->buf_cap, &route_len);
            if (len < 0 || (u->max_frame && (uint32_t)len > u->max_frame)) {
                r->blocked[o] = 1;
                fws_log(r->shim, FWS_LOG_ERROR,
                        "event=origin_blocked origin=%s first=%" PRIu64 " reason=\"%s\"",
                        r->hj.origins[o].id, rec->first,
                        len < 0 ? ss_strerror(len) : "envelope larger than upstream max_frame");
                (void)gw_hubj_note_refused(&r->hj, o, rec->first,
                                           len < 0 ? ss_err_name(len) : "oversize",
                                           "hub cannot forward this envelope");
                continue;
            }
            gw_relay_fwd fw;
            fw.origin = r->hj.origins[o].id;
            fw.first = rec->first;
            fw.last = rec->last;
            fw.payload = route_len ? r->buf : r->buf + route_len;
            fw.len = (size_t)len;
            fw.flags = route_len ? SS_FRAME_FLAG_ROUTED : 0;
            fw.env_off = route_len;
            int act = GW_RELAY_FWD_SEND;
            if (r->cfg.forward_hook)
                act = r->cfg.forward_hook(r->cfg.hook_arg, r, &fw);
            if (act == GW_RELAY_FWD_SEND &&
                queue_frame(&u->nb, SS_FRAME_BATCH, fw.flags, fw.payload, fw.len) < 0)
                return;
            u->in_o[u->nin] = o;
            u->in_last[u->nin] = rec->last;
            u->nin++;
            r->cursor[o] = rec->last + 1;
            r->rr = (o + 1) % no;
            progress = 1;
        }
        if (!progress)
            break;
    }
}

static void up_step(gw_relay *r, int stopping)
{
    upconn *u = &r->up;
    int64_t now = fws_mono_ms(r->shim);
    if (u->state == UP_DOWN) {
        if (!stopping && now >= u->next_try)
            up_connect(r);
        if (u->state == UP_DOWN)
            return;
    }
    if (u->state == UP_CONN) {
        int rc = fws_connect_done(r->shim, u->csock);
        if (rc == FWS_EAGAIN) {
            if (now - u->t0 > (int64_t)r->cfg.handshake_timeout_ms)
                up_fail(r, SS_ETIMEDOUT, "connect timeout");
            return;
        }
        if (rc < 0) {
            up_fail(r, gw_map_net_err(rc), "connect");
            return;
        }
        up_connected(r);
        if (u->state != UP_HS)
            return;
    }
    if (u->state == UP_HS) {
        int rc = gw_nb_handshake(&u->nb);
        if (rc < 0) {
            up_fail(r, rc, "handshake");
            return;
        }
        if (rc == 1) {
            if (now - u->t0 > (int64_t)r->cfg.handshake_timeout_ms)
                up_fail(r, SS_ETIMEDOUT, "handshake timeout");
            return;
        }
        if (gw_tls_verify_peer(&r->up_tls, &u->nb.ssl, r->cfg.up_host, NULL) < 0) {
            up_fail(r, SS_ECERT, "upstream certificate");
            return;
        }
        if (up_hello(r) < 0) {
            up_fail(r, SS_ENOMEM, "HELLO");
            return;
        }
        u->state = UP_WELCOME;
    }
    up_read(r);
    if (u->state == UP_WELCOME && now - u->t0 > (int64_t)r->cfg.handshake_timeout_ms) {
        up_fail(r, SS_ETIMEDOUT, "no WELCOME");
        return;
    }
    if (u->state != UP_ACTIVE)
        return;
    if (r->rehello && !stopping) {
        /* Start the session again at once (no backoff) so the new origin's
         * committed sequence comes back in WELCOME; envelopes in flight are
         * resent after it if they were not committed. */
        ss_msg bye;
        memset(&bye, 0, sizeof(bye));
        bye.type = SS_FRAME_BYE;
        snprintf(bye.u.bye.reason, sizeof(bye.u.bye.reason), "new origin");
        (void)queue_msg(r, &u->nb, &bye);
        (void)gw_nb_flush(&u->nb);
        fws_log(r->shim, FWS_LOG_INFO, "event=upstream_rehello in_flight=%u", u->nin);
        gw_nb_close(&u->nb);
        ss_fdec_free(&u->dec);
        u->state = UP_DOWN;
        u->nin = 0;
        u->next_try = now;
        up_connect(r);
        return;
    }
    forward(r, stopping);
    if (now - u->last_rx > (int64_t)r->cfg.io_timeout_ms) {
        up_fail(r, SS_ETIMEDOUT, "upstream silent");
        return;
    }
    if (now - u->last_rx > (int64_t)r->cfg.ping_interval_ms &&
        now - u->last_ping > (int64_t)r->cfg.ping_interval_ms) {
        ss_msg p;
        memset(&p, 0, sizeof(p));
        p.type = SS_FRAME_PING;
        p.u.ping.nonce = ++r->ping_nonce;
        (void)queue_msg(r, &u->nb, &p);
        u->last_ping = now;
    }
}

/* ---- setup ------------------------------------------------------------------- */

static int setup_server(gw_relay *r)
{
    const gw_relay_config *cfg = &r->cfg;
    int rc;
    if ((rc = mbedtls_x509_crt_parse(&r->ca, (const unsigned char *)cfg->ca_pem,
                                     strlen(cfg->ca_pem) + 1)) != 0 ||
        (rc = mbedtls_x509_crt_parse(&r->cert, (const unsigned char *)cfg->cert_pem,
                                     strlen(cfg->cert_pem) + 1)) != 0 ||
        (rc = mbedtls_pk_parse_key(&r->key, (const unsigned char *)cfg->key_pem,
                                   strlen(cfg->key_pem) + 1, NULL, 0)) != 0 ||
        (rc = mbedtls_pk_check_pair(&r->cert.pk, &r->key)) != 0) {
        log_mbed(r->shim, "relay_credentials", rc);
        return SS_ECERT;
    }
    if (gw_crt_ident(&r->cert, &r->ident, NULL, 0, NULL) < 0 || r->ident.role != SS_ROLE_RELAY) {
        fws_log(r->shim, FWS_LOG_ERROR,
                "event=relay_config reason=\"certificate is not a sitesync relay certificate\"");
        return SS_ECERT;
    }
    if ((rc = mbedtls_ctr_drbg_seed(&r->drbg, shim_entropy, (void *)r->shim,
                                    (const unsigned char *)"sitesync-hub", 12)) != 0) {
        log_mbed(r->shim, "drbg_seed", rc);
        return SS_EIO;
    }
    if ((rc = mbedtls_ssl_config_defaults(&r->sconf, MBEDTLS_SSL_IS_SERVER,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        log_mbed(r->shim, "config_defaults", rc);
        return SS_EIO;
    }
    mbedtls_ssl_conf_min_version(&r->sconf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&r->sconf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&r->sconf, gw_tls_suites);
    mbedtls_ssl_conf_authmode(&r->sconf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_rng(&r->sconf, mbedtls_ctr_drbg_random, &r->drbg);
    mbedtls_ssl_conf_verify(&r->sconf, verify_cb, r);
    mbedtls_ssl_conf_renegotiation(&r->sconf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_ca_chain(&r->sconf, &r->ca, NULL);
    if ((rc = mbedtls_ssl_conf_own_cert(&r->sconf, &r->cert, &r->key)) != 0) {
        log_mbed(r->shim, "own_cert", rc);
        return SS_ECERT;
    }
    return 0;
}

/* The newer of the configured CRL and the one adopted before (stored). */
static int load_crls(gw_relay *r)
{
    fws_file *f = NULL;
    if (fws_open(r->shim, CRL_STORE, 0, &f) == 0) {
        uint64_t size = 0;
        uint8_t *b = NULL;
        if (fws_size(r->shim, f, &size) == 0 && size > 0 && size < (4u << 20) &&
            (b = ss_malloc((size_t)size)) != NULL &&
            fws_read_full(r->shim, f, 0, b, (size_t)size) == 0)
            (void)crl_adopt(r, b, (size_t)size, "stored");
        ss_free(b);
        fws_close(r->shim, f);
    }
    if (r->cfg.crl && r->cfg.crl_len > 0)
        (void)crl_adopt(r, r->cfg.crl, r->cfg.crl_len, "config");
    if (!r->crl) {
        fws_log(r->shim, FWS_LOG_ERROR,
                "event=relay_config reason=\"no valid CRL from the CA (config crl or stored)\"");
        return SS_ECONFIG;
    }
    return 0;
}

int gw_relay_new(const fws *shim, const gw_relay_config *cfg, gw_relay **out)
{
    *out = NULL;
    if (!cfg->ca_pem || !cfg->cert_pem || !cfg->key_pem || !cfg->listen_host || !cfg->up_host ||
        cfg->max_conns < 1 || cfg->window < 1 || cfg->window > SS_MSG_MAX_WINDOW ||
        cfg->max_frame < 4096)
        return SS_ECONFIG;
    gw_relay *r = ss_malloc(sizeof(*r));
    if (!r)
        return SS_ENOMEM;
    memset(r, 0, sizeof(*r));
    r->shim = shim;
    r->cfg = *cfg;
    r->out_cap = cfg->max_output_bytes ? cfg->max_output_bytes : DOWN_OUT_CAP;
    mbedtls_ssl_config_init(&r->sconf);
    mbedtls_ctr_drbg_init(&r->drbg);
    mbedtls_x509_crt_init(&r->ca);
    mbedtls_x509_crt_init(&r->cert);
    mbedtls_pk_init(&r->key);
    gw_tls_init(&r->up_tls);
    gw_hubj_init(&r->hj);
    gw_nb_init(&r->up.nb);
    gw_sync_config_default(&r->backoff);
    r->backoff.backoff_min_ms = cfg->backoff_min_ms;
    r->backoff.backoff_max_ms = cfg->backoff_max_ms;
    ss_hlc_init(&r->clk, 0);
    int rc = setup_server(r);
    if (rc == 0) {
        gw_tls_config tc;
        tc.ca_pem = cfg->ca_pem;
        tc.cert_pem = cfg->cert_pem;
        tc.key_pem = cfg->key_pem;
        tc.server_name = cfg->up_name ? cfg->up_name : cfg->up_host;
        tc.key_checked = 1; /* setup_server checked the same PEM */
        rc = gw_tls_setup(&r->up_tls, shim, &tc);
    }
    if (rc == 0)
        rc = gw_hubj_open(&r->hj, shim, &cfg->hub, 0);
    uint32_t mo = cfg->hub.max_origins;
    if (rc == 0) {
        r->conns = ss_malloc(sizeof(dconn) * cfg->max_conns);
        r->cursor = ss_malloc(sizeof(uint64_t) * mo);
        r->gap_resume = ss_malloc(sizeof(uint64_t) * mo);
        r->blocked = ss_malloc(mo);
        r->poisoned = ss_malloc(mo);
        r->certs = ss_malloc(sizeof(certent) * CERT_CACHE);
        r->up.in_o = ss_malloc(sizeof(uint32_t) * 1024);
        r->up.in_last = ss_malloc(sizeof(uint64_t) * 1024);
        r->buf_cap = (size_t)cfg->hub.max_envelope + 65536;
        r->buf = ss_malloc(r->buf_cap);
        r->pfd = ss_malloc(sizeof(fws_pollfd) * (cfg->max_conns + 2));
        r->pen = ss_malloc(sizeof(gw_penalty));
        if (!r->conns || !r->cursor || !r->gap_resume || !r->blocked || !r->up.in_o ||
            !r->up.in_last || !r->buf || !r->pfd || !r->poisoned || !r->certs || !r->pen)
            rc = SS_ENOMEM;
        else {
            memset(r->conns, 0, sizeof(dconn) * cfg->max_conns);
            memset(r->cursor, 0, sizeof(uint64_t) * mo);
            memset(r->gap_resume, 0, sizeof(uint64_t) * mo);
            memset(r->blocked, 0, mo);
            memset(r->poisoned, 0, mo);
            memset(r->certs, 0, sizeof(certent) * CERT_CACHE);
            uint64_t seed = 0;
            (void)fws_entropy(shim, (uint8_t *)&seed, sizeof(seed));
            gw_penalty_init(r->pen, cfg->bad_handshake_limit, cfg->bad_handshake_window_ms,
                            cfg->bad_handshake_penalty_ms, seed);
        }
    }
    if (rc == 0)
        rc = load_crls(r);
    if (rc == 0) {
        rc = fws_listen(shim, cfg->listen_host, cfg->listen_port, &r->listener, &r->port);
        if (rc < 0) {
            fws_log(shim, FWS_LOG_ERROR, "event=relay_listen_failed host=%s port=%u err=%s",
                    cfg->listen_host, (unsigned)cfg->listen_port, fws_strerror(rc));
            rc = SS_EIO;
        }
    }
    if (rc < 0) {
        gw_relay_destroy(r);
        return rc;
    }
    fws_log(shim, FWS_LOG_INFO,
            "event=relay_listening node=%s host=%s port=%u upstream=%s:%u crl_number=%" PRIu64,
            r->ident.node, cfg->listen_host, (unsigned)r->port, cfg->up_host,
            (unsigned)cfg->up_port, r->crl_number);
    *out = r;
    return 0;
}

void gw_relay_destroy(gw_relay *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->conns && i < r->cfg.max_conns; i++)
        if (r->conns[i].state != ST_FREE)
            dconn_close(r, &r->conns[i], "shutdown");
    if (r->up.csock)
        fws_sock_close(r->shim, r->up.csock);
    r->up.csock = NULL;
    gw_nb_close(&r->up.nb);
    ss_fdec_free(&r->up.dec);
    if (r->listener)
        fws_sock_close(r->shim, r->listener);
    gw_hubj_free(&r->hj);
    gw_tls_free(&r->up_tls);
    mbedtls_ssl_config_free(&r->sconf);
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_x509_crt_free(&r->ca);
    mbedtls_x509_crt_free(&r->cert);
    mbedtls_pk_free(&r->key);
    if (r->crl) {
        mbedtls_x509_crl_free(r->crl);
        ss_free(r->crl);
    }
    ss_free(r->conns);
    ss_free(r->cursor);
    ss_free(r->gap_resume);
    ss_free(r->blocked);
    ss_free(r->poisoned);
    for (uint32_t i = 0; r->certs && i < CERT_CACHE; i++)
        if (r->certs[i].used)
            mbedtls_x509_crt_free(&r->certs[i].crt);
    ss_free(r->certs);
    ss_free(r->up.in_o);
    ss_free(r->up.in_last);
    ss_free(r->buf);
    ss_free(r->pfd);
    ss_free(r->pen);
    ss_free(r);
}

/* ---- the loop ------------------------------------------------------------------- */

static void flush_all(gw_relay *r)
{
    for (uint32_t i = 0; i < r->cfg.max_conns; i++) {
        dconn *c = &r->conns[i];
        if (c->state == ST_FREE || (c->state == ST_HS && !c->close_after_flush))
            continue;
        if (c->cut) {
            dconn_close(r, c, "output_cap");
            continue;
        }
        int rc = gw_nb_flush(&c->nb);
        if (rc < 0)
            dconn_close(r, c, "write");
        else if (rc == 0 && c->close_after_flush)
            dconn_close(r, c, "done");
    }
    if (r->up.state >= UP_WELCOME && gw_nb_flush(&r->up.nb) < 0)
        up_fail(r, SS_ECLOSED, "write");
}

static int turn(gw_relay *r, int stopping, uint32_t wait_ms)
{
    int n = 0;
    int64_t hold = r->hold_until ? r->hold_until - fws_mono_ms(r->shim) : 0;
    if (hold > 0 && (int64_t)wait_ms > hold)
        wait_ms = (uint32_t)hold; /* wake when the grace is over */
    if (r->listener && !stopping && hold <= 0) {
        r->pfd[n].sock = r->listener;
        r->pfd[n].events = FWS_POLL_IN;
        n++;
    }
    int upi = -1;
    if (r->up.state == UP_CONN) {
        upi = n;
        r->pfd[n].sock = r->up.csock;
        r->pfd[n].events = FWS_POLL_OUT;
        n++;
    } else if (r->up.state != UP_DOWN && r->up.nb.sock) {
        upi = n;
        r->pfd[n].sock = r->up.nb.sock;
        r->pfd[n].events = FWS_POLL_IN | (gw_nb_want_write(&r->up.nb) ? FWS_POLL_OUT : 0);
        n++;
    }
    int first_conn = n;
    for (uint32_t i = 0; i < r->cfg.max_conns; i++) {
        dconn *c = &r->conns[i];
        if (c->state == ST_FREE)
            continue;
        r->pfd[n].sock = c->nb.sock;
        r->pfd[n].events = FWS_POLL_IN | (gw_nb_want_write(&c->nb) ? FWS_POLL_OUT : 0);
        n++;
    }
    for (int i = 0; i < n; i++)
        r->pfd[i].revents = 0;
    int rc = fws_poll(r->shim, r->pfd, n, wait_ms);
    if (rc < 0 && rc != FWS_ETIMEDOUT && rc != FWS_EAGAIN) {
        fws_log(r->shim, FWS_LOG_ERROR, "event=relay_poll_failed err=%s", fws_strerror(rc));
        fws_sleep_ms(r->shim, 10);
    }
    int k = first_conn;
    int64_t last_accept = fws_mono_ms(r->shim);
    for (uint32_t i = 0; i < r->cfg.max_conns; i++) {
        dconn *c = &r->conns[i];
        if (c->state == ST_FREE)
            continue;
        /* A connection accepted during this loop is not in the poll set:
         * stepped as readable if the loop reaches its slot. */
        int readable = k < n && r->pfd[k].sock == c->nb.sock ? r->pfd[k].revents != 0 : 1;
        if (k < n && r->pfd[k].sock == c->nb.sock)
            k++;
        dconn_step(r, c, readable);
        if (!stopping && r->listener && fws_mono_ms(r->shim) - last_accept >= 10) {
            accept_new(r, 0);
            last_accept = fws_mono_ms(r->shim);
        }
    }
    /* After the connections have been stepped: see accept_new. */
    if (!stopping && r->listener)
        accept_new(r, 1);
    /* Group commit: one sync for everything that arrived in this turn, then
     * the ACKs. */
    if (gw_hubj_sync(&r->hj) < 0) {
        r->fatal = SS_EIO;
        for (uint32_t i = 0; i < r->cfg.max_conns; i++)
            if (r->conns[i].state != ST_FREE)
                r->conns[i].ntouched = 0;
    } else {
        for (uint32_t i = 0; i < r->cfg.max_conns; i++)
            send_acks(r, &r->conns[i]);
    }
    (void)upi;
    up_step(r, stopping);
    flush_all(r);
    int64_t now = fws_mono_ms(r->shim);
    if (r->hj.dirty && (now - r->last_ckpt >= 100 || stopping)) {
        if (gw_hubj_checkpoint(&r->hj) < 0)
            r->fatal = SS_EIO;
        r->last_ckpt = now;
    }
    return r->fatal;
}

int gw_relay_step(gw_relay *r, uint32_t wait_ms)
{
    return turn(r, 0, wait_ms);
}

int gw_relay_run(gw_relay *r, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    int rc = 0;
    for (;;) {
        if (reload && *reload) {
            *reload = 0;
            uint8_t *b = NULL;
            size_t len = 0;
            if (r->cfg.reload_crl && r->cfg.reload_crl(r->cfg.reload_arg, &b, &len) == 0) {
                int arc = crl_adopt(r, b, len, "reload");
                fws_log(r->shim, FWS_LOG_INFO, "event=crl_reload result=%s number=%" PRIu64,
                        ss_err_name(arc), r->crl_number);
            }
            free(b);
        }
        if (stop && *stop)
            break;
        rc = turn(r, 0, 200);
        if (rc < 0)
            break;
    }
    /* Drain: no new connections or envelopes; ACKs of what is durable go
     * out, the upstream gets a short while for the ACKs of what is in
     * flight, then BYE both ways. */
    fws_log(r->shim, FWS_LOG_INFO, "event=relay_stopping in_flight=%u", r->up.nin);
    if (r->listener)
        fws_sock_close(r->shim, r->listener);
    r->listener = NULL;
    int64_t until = fws_mono_ms(r->shim) + 2000;
    for (int i = 0;
         i < 100 && r->up.state == UP_ACTIVE && r->up.nin > 0 && fws_mono_ms(r->shim) < until; i++)
        (void)turn(r, 1, 20);
    ss_msg bye;
    memset(&bye, 0, sizeof(bye));
    bye.type = SS_FRAME_BYE;
    snprintf(bye.u.bye.reason, sizeof(bye.u.bye.reason), "shutting down");
    for (uint32_t i = 0; i < r->cfg.max_conns; i++)
        if (r->conns[i].state >= ST_HELLO) {
            (void)queue_msg(r, &r->conns[i].nb, &bye);
            r->conns[i].close_after_flush = 1;
        }
    int said_bye = r->up.state == UP_ACTIVE && queue_msg(r, &r->up.nb, &bye) == 0;
    flush_all(r);
    /* The upstream answers BYE by closing: wait for that (briefly), so it
     * does not write into a socket we already closed. */
    for (int i = 0; said_bye && i < 50 && r->up.nb.sock && !r->up.nb.eof; i++) {
        fws_pollfd pf = { r->up.nb.sock, FWS_POLL_IN, 0 };
        if (fws_poll(r->shim, &pf, 1, 20) <= 0)
            continue;
        int n = gw_nb_read(&r->up.nb, r->rx, sizeof(r->rx));
        if (n < 0)
            break;
    }
    if (r->hj.dirty && gw_hubj_checkpoint(&r->hj) < 0 && rc == 0)
        rc = SS_EIO;
    fws_log(r->shim, FWS_LOG_INFO, "event=relay_stop err=%s", ss_err_name(rc));
    return rc;
}
