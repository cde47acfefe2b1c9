/* sim_server.c - the simulation's daemon: sitesync's protocol server side
 * over the simulated network in front of the real sd_store merge, with
 * group commit per step and replies released only after the commit. */
#include "sim_server.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/oid.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"

static void server_failure(sim_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void server_failure(sim_server *s, const char *fmt, ...)
{
    if (s->failure[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof(s->failure), fmt, ap);
    va_end(ap);
}

static int store_open(sim_server *s)
{
    sd_store_config cfg;
    char err[256];
    memset(&cfg, 0, sizeof(cfg));
    cfg.path = s->path;
    cfg.skew_tolerance_ms = 300000;
    cfg.busy_timeout_ms = 1000;
    int rc = sd_store_open(&cfg, &s->store, err, sizeof(err));
    if (rc < 0) {
        s->store = NULL;
        server_failure(s, "store open %s: %s: %s", s->path, ss_err_name(rc), err);
        return rc;
    }
    /* Without a verifier (plain mode: the simulation has no certificates
     * there) signatures are not checked and the delivering peer's identity
     * authorizes each change; with one, they are verified and required. */
    if (s->sig)
        sd_store_set_sig(s->store, s->sig, 1);
    return 0;
}

/* Appends len bytes to a growing buffer. */
static int buf_put(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        size_t want = (*len + n) * 2;
        uint8_t *nb = realloc(*buf, want);
        if (!nb)
            return SS_ENOMEM;
        *buf = nb;
        *cap = want;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

static void put_msg(sim_server *s, sim_conn *c, const ss_msg *m, int staged)
{
    uint8_t *tmp = s->enc;
    int n = ss_msg_encode_frame(m, tmp, sizeof(s->enc));
    if (n < 0) {
        server_failure(s, "cannot encode %s: %s", ss_frame_type_name(m->type), ss_err_name(n));
    } else if ((staged ? buf_put(&c->staged, &c->staged_len, &c->staged_cap, tmp, (size_t)n)
                       : buf_put(&c->out, &c->out_len, &c->out_cap, tmp, (size_t)n)) < 0) {
        server_failure(s, "out of memory queueing a reply");
    }
}

static void put_error(sim_server *s, sim_conn *c, int code, const char *origin, uint64_t resume,
                      const char *msg, int staged)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_ERROR;
    m.u.error.code = code;
    m.u.error.resume = resume;
    snprintf(m.u.error.origin, sizeof(m.u.error.origin), "%s", origin ? origin : "");
    snprintf(m.u.error.message, sizeof(m.u.error.message), "%s", msg);
    put_msg(s, c, &m, staged);
}

static void conn_close(sim_server *s, sim_conn *c)
{
    if (c->tls)
        gw_nb_close(&c->nb);
    else if (c->sock)
        fws_sock_close(s->shim, c->sock);
    ss_fdec_free(&c->dec);
    free(c->out);
    free(c->staged);
    memset(c, 0, sizeof(*c));
}

static void drop_conns(sim_server *s)
{
    for (int i = 0; i < SIM_MAX_CONNS; i++)
        if (s->conns[i].sock)
            conn_close(s, &s->conns[i]);
}

/* The process dies: the open transaction never commits, connections go. */
static void crash(sim_server *s)
{
    if (s->store) {
        if (s->in_txn)
            (void)sd_store_rollback(s->store);
        sd_store_close(s->store);
        s->store = NULL;
    }
    s->in_txn = 0;
    drop_conns(s);
    s->stats.crashes++;
    (void)store_open(s);
}

int sim_server_start(sim_server *s, const fws *shim, sim_rng *rng, const char *path)
{
    memset(s, 0, sizeof(*s));
    s->shim = shim;
    s->rng = rng;
    s->max_frame = 65536;
    s->window = 4;
    if (snprintf(s->path, sizeof(s->path), "%s", path) >= (int)sizeof(s->path))
        return SS_EINVAL;
    int rc = store_open(s);
    if (rc < 0)
        return rc;
    rc = fws_listen(shim, "127.0.0.1", 0, &s->listener, &s->port);
    if (rc < 0) {
        server_failure(s, "listen: %s", fws_strerror(rc));
        return rc;
    }
    return 0;
}

int sim_server_add_peer(sim_server *s, const ss_ident *id)
{
    if (s->npeers >= SIM_MAX_PEERS)
        return SS_ENOSPC;
    s->peers[s->npeers++] = *id;
    return 0;
}

static void make_peer(const ss_ident *id, int idx, sd_peer *p)
{
    memset(p, 0, sizeof(*p));
    p->ident = *id;
    /* No certificate on the plain port: a stable stand-in per peer. */
    snprintf(p->fingerprint, sizeof(p->fingerprint), "%064x", (unsigned)idx + 1);
    snprintf(p->serial, sizeof(p->serial), "%02x", (unsigned)idx + 1);
    snprintf(p->addr, sizeof(p->addr), "sim:%d", idx);
    snprintf(p->path, sizeof(p->path), "direct");
}

static void touch(sim_conn *c, const char *origin)
{
    for (int i = 0; i < c->ntouched; i++)
        if (strcmp(c->touched[i], origin) == 0)
            return;
    if (c->ntouched < SIM_CONN_ORIGIN)
        snprintf(c->touched[c->ntouched++], sizeof(c->touched[0]), "%s", origin);
}

static void remember(sim_server *s, const uint8_t *bytes, size_t len, const sd_peer *p)
{
    sim_replay *r = &s->replay[s->replay_next];
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, bytes, len);
    free(r->bytes);
    r->bytes = copy;
    r->len = len;
    r->p = *p;
    s->replay_next = (s->replay_next + 1) % SIM_REPLAY_MAX;
    if (s->nreplay < SIM_REPLAY_MAX)
        s->nreplay++;
}

/* One envelope into the step's transaction. c is the connection it came on
 * (NULL for a replay: nobody waits for its answer). */
static void apply_batch(sim_server *s, sim_conn *c, const uint8_t *bytes, size_t len,
                        const sd_peer *p)
{
    if (!s->store)
        return;
    if (!s->in_txn) {
        int rc = sd_store_begin(s->store);
        if (rc < 0) {
            server_failure(s, "begin: %s: %s", ss_err_name(rc), sd_store_last_error(s->store));
            crash(s);
            return;
        }
        s->in_txn = 1;
    }
    sd_result r;
    memset(&r, 0, sizeof(r));
    int rc = sd_store_apply(s->store, p, bytes, len, fws_wall_ms(s->shim), &r);
    s->stats.envelopes++;
    ss_envelope env;
    int env_ok = ss_envelope_parse(bytes, len, &env) == 0;
    if (rc == 0) {
        if (c && env_ok) {
            touch(c, env.origin);
            for (int i = 0; i < r.nrejects && c->nrej < SIM_CONN_REJ; i++)
                c->rej[c->nrej++] = r.rejects[i];
        }
    } else if (rc == SS_EGAP) {
        s->stats.gaps++;
        if (c && env_ok)
            put_error(s, c, SS_EGAP, env.origin, r.resume, "sequence gap", 1);
    } else if (rc == SS_EDB || rc == SS_ENOMEM || rc == SS_EIO || rc == SS_EINTERNAL) {
        /* The store failed: the daemon's writer would roll back and drop the
         * batch's sessions. Nothing like it is expected in the simulation. */
        server_failure(s, "store failed applying a batch from %s: %s: %s", p->ident.node,
                       ss_err_name(rc), r.message);
        sd_result_free(&r);
        crash(s);
        return;
    } else {
        s->stats.errors++;
        if (rc == SS_ETAMPER)
            server_failure(s, "tamper from %s: %s", p->ident.node, r.message);
        if (c) {
            put_error(s, c, rc, NULL, 0, r.message, 1);
            c->close_after_flush = 1;
        }
    }
    sd_result_free(&r);
}

/* A BATCH: from a hub ROUTED (route prefix, then the envelope) or not (the
 * hub's first hop); either way audited with the path it took. */
static void on_batch(sim_server *s, sim_conn *c, const ss_frame *f)
{
    sd_peer p = c->p;
    const uint8_t *env = f->payload;
    size_t len = f->len;
    if (p.ident.role == SS_ROLE_RELAY) {
        ss_route route;
        memset(&route, 0, sizeof(route));
        if (f->flags & SS_FRAME_FLAG_ROUTED) {
            size_t off = 0;
            if (ss_route_parse(f->payload, f->len, &route, &off) < 0) {
                put_error(s, c, SS_EPROTO, NULL, 0, "bad route prefix", 0);
                c->close_after_flush = 1;
                return;
            }
            env += off;
            len -= off;
            s->stats.routed++;
        }
        if (ss_route_format(&route, p.ident.node, p.path, sizeof(p.path)) < 0) {
            put_error(s, c, SS_ELIMIT, NULL, 0, "route too long", 0);
            c->close_after_flush = 1;
            return;
        }
    } else if (f->flags & SS_FRAME_FLAG_ROUTED) {
        put_error(s, c, SS_EROLE, NULL, 0, "only relays send routed batches", 0);
        c->close_after_flush = 1;
        return;
    }
    remember(s, env, len, &p);
    apply_batch(s, c, env, len, &p);
    if (s->rng && sim_rng_chance(s->rng, s->faults.dup_batch) && c->sock) {
        s->stats.dups++;
        apply_batch(s, c, env, len, &p);
    }
}

static void on_hello(sim_server *s, sim_conn *c, const ss_hello *h)
{
    if (c->tls) {
        /* The certificate says who it is; HELLO must agree. */
        if (strcmp(h->node, c->p.ident.node) != 0 || h->role != c->p.ident.role) {
            put_error(s, c, SS_EAUTH, NULL, 0, "HELLO does not match the certificate", 0);
            c->close_after_flush = 1;
            return;
        }
    } else {
        int idx = -1;
        for (int i = 0; i < s->npeers; i++)
            if (strcmp(s->peers[i].node, h->node) == 0)
                idx = i;
        if (idx < 0) {
            put_error(s, c, SS_EAUTH, NULL, 0, "unknown node", 0);
            c->close_after_flush = 1;
            return;
        }
        make_peer(&s->peers[idx], idx, &c->p);
    }
    c->hello = 1;
    c->welcome_owed = 1;
    c->nwel = 0;
    snprintf(c->wel[c->nwel++], sizeof(c->wel[0]), "%s", h->node);
    if (c->p.ident.role == SS_ROLE_RELAY)
        for (int i = 0; i < h->norigins && c->nwel < SIM_CONN_ORIGIN; i++)
            snprintf(c->wel[c->nwel++], sizeof(c->wel[0]), "%s", h->origins[i].origin);
}

static void handle_frame(sim_server *s, sim_conn *c, const ss_frame *f)
{
    if (f->type == SS_FRAME_BATCH) {
        if (!c->hello) {
            put_error(s, c, SS_EPROTO, NULL, 0, "BATCH before HELLO", 0);
            c->close_after_flush = 1;
            return;
        }
        on_batch(s, c, f);
        return;
    }
    ss_msg m;
    ss_verr verr;
    memset(&verr, 0, sizeof(verr));
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
        put_error(s, c, verr.code ? verr.code : SS_EPROTO, NULL, 0, verr.msg, 0);
        c->close_after_flush = 1;
        return;
    }
    if (m.type == SS_FRAME_HELLO) {
        on_hello(s, c, &m.u.hello);
    } else if (m.type == SS_FRAME_PING) {
        ss_msg p;
        memset(&p, 0, sizeof(p));
        p.type = SS_FRAME_PONG;
        p.u.ping.nonce = m.u.ping.nonce;
        put_msg(s, c, &p, 0);
    } else if (m.type == SS_FRAME_BYE) {
        c->close_after_flush = 1;
    }
    ss_msg_free(&m);
}

/* The TLS handshake of a hub's connection, then who it is. Returns 1 when
 * the connection may carry frames, 0 not yet, -1 closed. */
static int tls_ready(sim_server *s, sim_conn *c)
{
    if (c->hs_done)
        return 1;
    int rc = gw_nb_handshake(&c->nb);
    if (rc == 1)
        return 0;
    const mbedtls_x509_crt *peer = rc == 0 ? mbedtls_ssl_get_peer_cert(&c->nb.ssl) : NULL;
    ss_ident id;
    ss_ident_init(&id);
    if (!peer || gw_crt_ident(peer, &id, NULL, 0, NULL) < 0 ||
        (id.role != SS_ROLE_GATEWAY && id.role != SS_ROLE_RELAY)) {
        conn_close(s, c);
        return -1;
    }
    memset(&c->p, 0, sizeof(c->p));
    c->p.ident = id;
    snprintf(c->p.fingerprint, sizeof(c->p.fingerprint), "%064x", 0xbbu);
    snprintf(c->p.serial, sizeof(c->p.serial), "bb");
    snprintf(c->p.addr, sizeof(c->p.addr), "sim-tls");
    snprintf(c->p.path, sizeof(c->p.path), "direct");
    c->hs_done = 1;
    return 1;
}

static void conn_read(sim_server *s, sim_conn *c)
{
    uint8_t buf[4096];
    if (c->tls && tls_ready(s, c) <= 0)
        return;
    for (int rounds = 0; rounds < 64 && c->sock && !c->close_after_flush; rounds++) {
        int n;
        if (c->tls) {
            n = gw_nb_read(&c->nb, buf, sizeof(buf));
            if (n == 0)
                return;
        } else {
            n = fws_recv(s->shim, c->sock, buf, sizeof(buf), 0);
            if (n == FWS_ETIMEDOUT || n == FWS_EAGAIN)
                return;
        }
        if (n < 0) {
            conn_close(s, c);
            return;
        }
        size_t off = 0;
        while (off < (size_t)n && c->sock && !c->close_after_flush) {
            size_t used = 0;
            int rc = ss_fdec_feed(&c->dec, buf + off, (size_t)n - off, &used);
            off += used;
            if (rc < 0) {
                conn_close(s, c);
                return;
            }
            if (rc == 1) {
                ss_frame f;
                ss_fdec_frame(&c->dec, &f);
                handle_frame(s, c, &f);
            }
        }
    }
}

/* Releases the replies of this step: WELCOME and ACK carry the committed
 * sequences read now, so they run after the commit (except for the planted
 * bug, which calls this before it). */
static void release(sim_server *s)
{
    ss_oseq os[SIM_CONN_ORIGIN];
    for (int i = 0; i < SIM_MAX_CONNS; i++) {
        sim_conn *c = &s->conns[i];
        if (!c->sock || !c->hello || !s->store)
            continue;
        if (c->welcome_owed) {
            memset(os, 0, sizeof(os));
            for (int k = 0; k < c->nwel; k++) {
                snprintf(os[k].origin, sizeof(os[k].origin), "%s", c->wel[k]);
                if (sd_store_committed(s->store, os[k].origin, &os[k].seq) < 0)
                    server_failure(s, "committed lookup failed");
            }
            ss_msg w;
            memset(&w, 0, sizeof(w));
            w.type = SS_FRAME_WELCOME;
            w.u.welcome.proto = SS_PROTO_VERSION;
            snprintf(w.u.welcome.node, sizeof(w.u.welcome.node), "%s", SIM_DAEMON_NODE);
            w.u.welcome.time = ss_hlc_make((uint64_t)fws_wall_ms(s->shim), 0);
            w.u.welcome.max_frame = s->max_frame;
            w.u.welcome.window = s->window;
            w.u.welcome.ncommitted = c->nwel;
            w.u.welcome.committed = os;
            put_msg(s, c, &w, 0);
            c->welcome_owed = 0;
        }
        if (c->staged_len) {
            if (buf_put(&c->out, &c->out_len, &c->out_cap, c->staged, c->staged_len) < 0)
                server_failure(s, "out of memory releasing replies");
            c->staged_len = 0;
        }
        if (c->ntouched) {
            memset(os, 0, sizeof(os));
            for (int k = 0; k < c->ntouched; k++) {
                snprintf(os[k].origin, sizeof(os[k].origin), "%s", c->touched[k]);
                if (sd_store_committed(s->store, os[k].origin, &os[k].seq) < 0)
                    server_failure(s, "committed lookup failed");
            }
            ss_msg m;
            memset(&m, 0, sizeof(m));
            m.type = SS_FRAME_ACK;
            m.u.ack.nacks = c->ntouched;
            m.u.ack.acks = os;
            m.u.ack.nrejects = c->nrej;
            m.u.ack.rejects = c->nrej ? c->rej : NULL;
            put_msg(s, c, &m, 0);
            c->ntouched = 0;
            c->nrej = 0;
        }
    }
}

static void flush(sim_server *s)
{
    for (int i = 0; i < SIM_MAX_CONNS; i++) {
        sim_conn *c = &s->conns[i];
        if (c->tls && c->sock) {
            size_t room = gw_nb_room(&c->nb), n = c->out_len < room ? c->out_len : room;
            if (n > 0 && gw_nb_queue(&c->nb, c->out, n) == 0) {
                memmove(c->out, c->out + n, c->out_len - n);
                c->out_len -= n;
            }
            int rc = c->hs_done ? gw_nb_flush(&c->nb) : 0;
            if (rc < 0) {
                conn_close(s, c);
                continue;
            }
            if (c->close_after_flush && rc == 0 && c->out_len == 0 && c->staged_len == 0)
                conn_close(s, c);
            continue;
        }
        while (c->sock && c->out_len > 0) {
            int n = fws_send(s->shim, c->sock, c->out, c->out_len);
            if (n == FWS_EAGAIN)
                break;
            if (n < 0) {
                conn_close(s, c);
                break;
            }
            memmove(c->out, c->out + n, c->out_len - (size_t)n);
            c->out_len -= (size_t)n;
        }
        if (c->sock && c->close_after_flush && c->out_len == 0 && c->staged_len == 0)
            conn_close(s, c);
    }
}

static void accept_on(sim_server *s, fws_sock *listener, int tls)
{
    for (;;) {
        fws_sock *ns = NULL;
        char peer[64];
        if (!listener || fws_accept(s->shim, listener, &ns, peer, sizeof(peer)) != 0)
            return;
        sim_conn *c = NULL;
        for (int i = 0; i < SIM_MAX_CONNS && !c; i++)
            if (!s->conns[i].sock)
                c = &s->conns[i];
        if (!c) {
            /* Full: the client sees a closed link and retries later. */
            fws_sock_close(s->shim, ns);
            continue;
        }
        if (tls && s->tls_blocked) {
            fws_sock_close(s->shim, ns);
            continue;
        }
        memset(c, 0, sizeof(*c));
        if (tls) {
            gw_nb_init(&c->nb);
            if (gw_nb_start(&c->nb, s->shim, ns, &s->conf, NULL, 1 << 18) < 0)
                continue; /* ns closed by gw_nb_start */
            c->tls = 1;
        }
        c->sock = ns;
        ss_fdec_init(&c->dec, s->max_frame + 1024);
    }
}

static void accept_all(sim_server *s)
{
    accept_on(s, s->listener, 0);
    if (s->tls_ready)
        accept_on(s, s->tls_listener, 1);
}

void sim_server_step(sim_server *s)
{
    if (s->stepping)
        return;
    s->stepping = 1;
    s->stats.steps++;
    if (!s->store && store_open(s) < 0) {
        s->stepping = 0;
        return;
    }
    accept_all(s);
    /* Serve connections in a seeded order, sometimes skipping one: batches
     * of different connections reach the merge in any order. */
    int order[SIM_MAX_CONNS];
    for (int i = 0; i < SIM_MAX_CONNS; i++)
        order[i] = i;
    if (s->rng)
        for (int i = SIM_MAX_CONNS - 1; i > 0; i--) {
            int j = (int)sim_rng_below(s->rng, (uint32_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    for (int k = 0; k < SIM_MAX_CONNS; k++) {
        sim_conn *c = &s->conns[order[k]];
        if (!c->sock)
            continue;
        if (s->rng && sim_rng_chance(s->rng, s->faults.stall_conn))
            continue;
        conn_read(s, c);
    }
    if (s->rng && s->nreplay > 0 && sim_rng_chance(s->rng, s->faults.replay_old)) {
        const sim_replay *r = &s->replay[sim_rng_below(s->rng, (uint32_t)s->nreplay)];
        s->stats.replays++;
        apply_batch(s, NULL, r->bytes, r->len, &r->p);
    }
    if (s->in_txn) {
        if (s->plant_ack_before_commit) {
            /* PLANTED BUG (test mode only): replies leave before the commit. */
            release(s);
            flush(s);
        }
        if (s->rng && sim_rng_chance(s->rng, s->faults.crash_at_commit)) {
            crash(s);
            s->stepping = 0;
            return;
        }
        int rc = sd_store_commit(s->store);
        s->in_txn = 0;
        if (rc < 0) {
            server_failure(s, "commit: %s: %s", ss_err_name(rc), sd_store_last_error(s->store));
            crash(s);
            s->stepping = 0;
            return;
        }
        s->stats.commits++;
    }
    release(s);
    flush(s);
    s->stepping = 0;
}

void sim_server_idle(void *arg)
{
    sim_server_step(arg);
}

int sim_server_require_signatures(sim_server *s, const char *ca_pem, const char *crl_pem)
{
    X509_STORE *st = X509_STORE_new();
    BIO *b1 = BIO_new_mem_buf(ca_pem, -1), *b2 = BIO_new_mem_buf(crl_pem, -1);
    X509 *ca = b1 ? PEM_read_bio_X509(b1, NULL, NULL, NULL) : NULL;
    X509_CRL *crl = b2 ? PEM_read_bio_X509_CRL(b2, NULL, NULL, NULL) : NULL;
    int rc = SS_ECERT;
    if (st && ca && crl && X509_STORE_add_cert(st, ca) == 1 && X509_STORE_add_crl(st, crl) == 1) {
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
        rc = sd_sig_new(64, &s->sig);
        if (rc == 0)
            rc = sd_sig_set_store(s->sig, st);
    }
    X509_free(ca);
    X509_CRL_free(crl);
    BIO_free(b1);
    BIO_free(b2);
    X509_STORE_free(st);
    if (rc < 0) {
        server_failure(s, "signature verifier: %s", ss_err_name(rc));
        return rc;
    }
    if (s->store)
        sd_store_set_sig(s->store, s->sig, 1);
    return 0;
}

void sim_server_block_tls(sim_server *s, int blocked)
{
    s->tls_blocked = blocked;
    if (blocked)
        for (int i = 0; i < SIM_MAX_CONNS; i++)
            if (s->conns[i].sock && s->conns[i].tls)
                conn_close(s, &s->conns[i]);
}

int sim_server_restart(sim_server *s)
{
    crash(s);
    s->stats.crashes--;
    s->stats.restarts++;
    return s->store ? 0 : SS_EDB;
}

int sim_server_committed(sim_server *s, const char *origin, uint64_t *seq)
{
    *seq = 0;
    if (!s->store)
        return SS_EDB;
    if (s->in_txn)
        return SS_EINTERNAL;
    return sd_store_committed(s->store, origin, seq);
}

void sim_server_stop(sim_server *s)
{
    drop_conns(s);
    if (s->listener)
        fws_sock_close(s->shim, s->listener);
    s->listener = NULL;
    if (s->store) {
        if (s->in_txn)
            (void)sd_store_rollback(s->store);
        sd_store_close(s->store);
    }
    s->store = NULL;
    s->in_txn = 0;
    sd_sig_destroy(s->sig);
    s->sig = NULL;
    for (int i = 0; i < SIM_REPLAY_MAX; i++) {
        free(s->replay[i].bytes);
        s->replay[i].bytes = NULL;
    }
    s->nreplay = 0;
    if (s->tls_listener)
        fws_sock_close(s->shim, s->tls_listener);
    s->tls_listener = NULL;
    if (s->tls_ready) {
        mbedtls_ssl_config_free(&s->conf);
        mbedtls_ctr_drbg_free(&s->drbg);
        mbedtls_x509_crt_free(&s->ca);
        mbedtls_x509_crt_free(&s->cert);
        mbedtls_pk_free(&s->key);
    }
    s->tls_ready = 0;
}

/* The daemon's TLS randomness comes from the seed too, so a run replays. */
static int seeded_entropy(void *arg, unsigned char *out, size_t len)
{
    sim_server *s = arg;
    for (size_t i = 0; i < len; i++)
        out[i] = s->rng ? (unsigned char)sim_rng_next(s->rng) : (unsigned char)i;
    return 0;
}

int sim_server_listen_tls(sim_server *s, const char *ca_pem, const char *cert_pem,
                          const char *key_pem)
{
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_ctr_drbg_init(&s->drbg);
    mbedtls_x509_crt_init(&s->ca);
    mbedtls_x509_crt_init(&s->cert);
    mbedtls_pk_init(&s->key);
    s->tls_ready = 1; /* from here on sim_server_stop frees them */
    int rc;
    if ((rc = mbedtls_x509_crt_parse(&s->ca, (const unsigned char *)ca_pem, strlen(ca_pem) + 1)) !=
            0 ||
        (rc = mbedtls_x509_crt_parse(&s->cert, (const unsigned char *)cert_pem,
                                     strlen(cert_pem) + 1)) != 0 ||
        (rc = mbedtls_pk_parse_key(&s->key, (const unsigned char *)key_pem, strlen(key_pem) + 1,
                                   NULL, 0)) != 0 ||
        (rc = mbedtls_ctr_drbg_seed(&s->drbg, seeded_entropy, s,
                                    (const unsigned char *)"sim-daemon", 10)) != 0 ||
        (rc = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        server_failure(s, "TLS setup: mbed TLS -0x%04x", (unsigned)-rc);
        return SS_ECERT;
    }
    mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
    mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, NULL);
    if ((rc = mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key)) != 0) {
        server_failure(s, "TLS own cert: mbed TLS -0x%04x", (unsigned)-rc);
        return SS_ECERT;
    }
    rc = fws_listen(s->shim, "127.0.0.1", 0, &s->tls_listener, &s->tls_port);
    if (rc < 0) {
        server_failure(s, "listen (TLS): %s", fws_strerror(rc));
        return rc;
    }
    return 0;
}
