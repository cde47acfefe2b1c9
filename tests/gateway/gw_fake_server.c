/* gw_fake_server.c - a fake sitesync daemon for the gateway's sim tests: the
 * protocol's server side from proto/ alone, with an exactly-once reference
 * state instead of SQLite. */
#include "gw_fake_server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "gw/tls.h"
#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/msg.h"
#include "proto/relay.h"

static void violation(fake_server *s, const char *what)
{
    if (!s->failure[0])
        snprintf(s->failure, sizeof(s->failure), "%s", what);
}

int fake_server_start(fake_server *s, const fws *shim, const char *origin)
{
    memset(s, 0, sizeof(*s));
    s->shim = shim;
    snprintf(s->origin, sizeof(s->origin), "%s", origin);
    s->window = 4;
    s->max_frame = 65536;
    s->rej = calloc(SS_ENV_MAX_COUNT, sizeof(*s->rej));
    if (!s->rej)
        return FWS_ENOMEM;
    return fws_listen(shim, "127.0.0.1", 0, &s->listener, &s->port);
}

static void conn_close(fake_server *s, fake_conn *c)
{
    if (c->sock)
        fws_sock_close(s->shim, c->sock);
    ss_fdec_free(&c->dec);
    memset(c, 0, sizeof(*c));
}

void fake_server_drop_conns(fake_server *s)
{
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (s->conns[i].sock)
            conn_close(s, &s->conns[i]);
}

void fake_server_stop(fake_server *s)
{
    fake_server_drop_conns(s);
    if (s->listener)
        fws_sock_close(s->shim, s->listener);
    s->listener = NULL;
    for (size_t i = 0; i <= FAKE_MAX_SEQ; i++)
        free(s->raw[i]);
    memset(s->raw, 0, sizeof(s->raw));
    free(s->rej);
    s->rej = NULL;
    if (s->pinned_set)
        mbedtls_x509_crt_free(&s->pinned);
    s->pinned_set = 0;
}

int fake_server_pin(fake_server *s, const char *cert_pem)
{
    mbedtls_x509_crt_init(&s->pinned);
    s->pinned_set = 1;
    if (mbedtls_x509_crt_parse(&s->pinned, (const unsigned char *)cert_pem, strlen(cert_pem) + 1))
        return -1;
    s->require_sig = 1;
    return 0;
}

static int shim_rng(void *arg, unsigned char *out, size_t len)
{
    return fws_entropy(arg, out, len) == 0 ? 0 : -1;
}

int fake_make_cert(const fws *shim, const char *node, char *key_pem, size_t key_cap, char *cert_pem,
                   size_t cert_cap)
{
    char csr[4096], name[96];
    mbedtls_pk_context pk;
    mbedtls_x509write_cert w;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_mpi serial;
    int rc = -1;
    mbedtls_pk_init(&pk);
    mbedtls_x509write_crt_init(&w);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_mpi_init(&serial);
    if (gw_enroll_make(shim, node, key_pem, key_cap, csr, sizeof(csr)) != 0 ||
        mbedtls_pk_parse_key(&pk, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL, 0) ||
        mbedtls_ctr_drbg_seed(&drbg, shim_rng, (void *)shim, NULL, 0) ||
        mbedtls_mpi_lset(&serial, 7))
        goto out;
    snprintf(name, sizeof(name), "CN=%s", node);
    mbedtls_x509write_crt_set_subject_key(&w, &pk);
    mbedtls_x509write_crt_set_issuer_key(&w, &pk);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    if (mbedtls_x509write_crt_set_subject_name(&w, name) ||
        mbedtls_x509write_crt_set_issuer_name(&w, name) ||
        mbedtls_x509write_crt_set_serial(&w, &serial) ||
        mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20991231235959") ||
        mbedtls_x509write_crt_pem(&w, (unsigned char *)cert_pem, cert_cap, mbedtls_ctr_drbg_random,
                                  &drbg))
        goto out;
    rc = 0;
out:
    mbedtls_mpi_free(&serial);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&pk);
    return rc;
}

/* The daemon's origin-signature check, with mbed TLS: the certificate must be
 * the pinned one and the signature must cover the signed region. */
static int check_signature(fake_server *s, const ss_envelope *env)
{
    ss_sig sig;
    uint8_t hash[32];
    if (!(env->flags & SS_ENV_FLAG_SIGNED))
        return s->require_sig ? SS_ESIG : 0;
    if (ss_sig_parse(env, &sig) < 0)
        return SS_ESIG;
    if (!s->pinned_set || sig.cert_len != s->pinned.raw.len ||
        memcmp(sig.cert, s->pinned.raw.p, sig.cert_len) != 0)
        return SS_ECERT;
    if (mbedtls_sha256_ret(env->signed_bytes, env->signed_len, hash, 0) != 0 ||
        mbedtls_pk_verify(&s->pinned.pk, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig.sig,
                          sig.sig_len) != 0)
        return SS_ESIG;
    s->verified++;
    return 0;
}

static void queue_msg(fake_server *s, fake_conn *c, const ss_msg *m)
{
    int n = ss_msg_encode_frame(m, c->out + c->out_len, sizeof(c->out) - c->out_len);
    if (n < 0) {
        violation(s, "fake server: output buffer full");
        return;
    }
    c->out_len += (size_t)n;
}

static void queue_error(fake_server *s, fake_conn *c, int code, uint64_t resume, const char *msg)
{
    ss_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SS_FRAME_ERROR;
    m.u.error.code = code;
    m.u.error.resume = resume;
    snprintf(m.u.error.origin, sizeof(m.u.error.origin), "%s", resume ? s->origin : "");
    snprintf(m.u.error.message, sizeof(m.u.error.message), "%s", msg);
    queue_msg(s, c, &m);
}

int fake_server_verify(fake_server *s, const uint8_t *buf, size_t len)
{
    ss_envelope env;
    int rc = ss_envelope_parse(buf, len, &env);
    return rc < 0 ? rc : check_signature(s, &env);
}

static void handle_batch(fake_server *s, fake_conn *c, const ss_frame *f)
{
    ss_envelope env;
    s->envelopes++;
    if (s->flip_next_batch && f->len > 40) {
        /* An on-path alteration: the frame buffer is the decoder's own. */
        ((uint8_t *)f->payload)[f->len / 3] ^= 0x04;
        s->flip_next_batch = 0;
    }
    if (ss_envelope_parse(f->payload, f->len, &env) < 0) {
        s->protocol_errors++;
        violation(s, "gateway sent an unparsable envelope");
        queue_error(s, c, SS_EPROTO, 0, "bad envelope");
        c->close_after_flush = 1;
        return;
    }
    if (strcmp(env.origin, c->node) != 0 || strcmp(env.origin, s->origin) != 0) {
        violation(s, "envelope origin is not the gateway's node");
        queue_error(s, c, SS_EROLE, 0, "origin");
        c->close_after_flush = 1;
        return;
    }
    int src = check_signature(s, &env);
    if (src < 0) {
        /* Refused as a whole: nothing applied, the sequence not consumed. */
        s->bad_signatures++;
        queue_error(s, c, src, 0, "origin signature refused");
        c->close_after_flush = 1;
        return;
    }
    if (env.first_seq > s->committed + 1) {
        s->gaps++;
        queue_error(s, c, SS_EGAP, s->committed + 1, "gap");
        return;
    }
    ss_body *b = NULL;
    ss_verr verr;
    if (ss_body_parse(&env, &b, &verr) < 0) {
        s->protocol_errors++;
        violation(s, verr.msg);
        queue_error(s, c, verr.code, 0, verr.msg);
        c->close_after_flush = 1;
        return;
    }
    for (uint32_t i = 0; i < env.count; i++) {
        uint64_t seq = env.first_seq + i;
        const uint8_t *p;
        size_t len;
        ss_body_change_raw(b, i, &p, &len);
        if (seq > FAKE_MAX_SEQ) {
            violation(s, "sequence beyond the fake server's table");
            break;
        }
        if (seq <= s->committed) {
            if (!s->raw[seq] || s->rawlen[seq] != len || memcmp(s->raw[seq], p, len) != 0) {
                s->tampers++;
                violation(s, "same seq, different bytes (tamper)");
                queue_error(s, c, SS_ETAMPER, 0, "tamper");
                c->close_after_flush = 1;
                ss_body_free(b);
                return;
            }
            s->duplicates++;
            continue;
        }
        s->raw[seq] = malloc(len + 1);
        memcpy(s->raw[seq], p, len);
        s->raw[seq][len] = '\0';
        s->rawlen[seq] = len;
        const ss_verr *ce = NULL;
        int rc = ss_body_change_error(b, i, &ce);
        if (rc == 0 && s->reject_marker && strstr(s->raw[seq], s->reject_marker)) {
            rc = SS_EFORBIDDEN;
        }
        if (rc < 0 && s->nrej < (int)SS_ENV_MAX_COUNT) {
            ss_reject *r = &s->rej[s->nrej++];
            memset(r, 0, sizeof(*r));
            snprintf(r->origin, sizeof(r->origin), "%s", s->origin);
            r->seq = seq;
            r->code = rc;
            if (ce) {
                snprintf(r->field, sizeof(r->field), "%s", ce->field);
                snprintf(r->message, sizeof(r->message), "%s", ce->msg);
            } else {
                snprintf(r->field, sizeof(r->field), "site");
                snprintf(r->message, sizeof(r->message), "site not allowed for this peer");
            }
            s->rejected[seq] = 1;
            s->rejects++;
        } else {
            s->applied++;
        }
        s->committed = seq;
    }
    ss_body_free(b);
    c->pending_ack = 1;
}

static void handle_frame(fake_server *s, fake_conn *c, const ss_frame *f)
{
    ss_msg m;
    ss_verr verr;
    if (f->type == SS_FRAME_BATCH) {
        if (!c->hello) {
            violation(s, "BATCH before HELLO");
            c->close_after_flush = 1;
            return;
        }
        handle_batch(s, c, f);
        return;
    }
    if (ss_msg_decode(f->type, f->payload, f->len, &m, &verr) < 0) {
        violation(s, "undecodable control frame from the gateway");
        c->close_after_flush = 1;
        return;
    }
    if (m.type == SS_FRAME_HELLO) {
        snprintf(c->node, sizeof(c->node), "%s", m.u.hello.node);
        c->hello = 1;
        ss_msg w;
        ss_oseq cs;
        memset(&w, 0, sizeof(w));
        w.type = SS_FRAME_WELCOME;
        w.u.welcome.proto = SS_PROTO_VERSION;
        snprintf(w.u.welcome.node, sizeof(w.u.welcome.node), "fake-daemon");
        w.u.welcome.time = ss_hlc_make((uint64_t)(fws_wall_ms(s->shim) + s->clock_ahead_ms), 0);
        w.u.welcome.max_frame = s->max_frame;
        w.u.welcome.window = s->window;
        memset(&cs, 0, sizeof(cs));
        snprintf(cs.origin, sizeof(cs.origin), "%s", s->origin);
        cs.seq = s->committed;
        w.u.welcome.ncommitted = 1;
        w.u.welcome.committed = &cs;
        queue_msg(s, c, &w);
    } else if (m.type == SS_FRAME_PING) {
        ss_msg p;
        memset(&p, 0, sizeof(p));
        p.type = SS_FRAME_PONG;
        p.u.ping.nonce = m.u.ping.nonce;
        queue_msg(s, c, &p);
    } else if (m.type == SS_FRAME_BYE) {
        c->close_after_flush = 1;
    }
    ss_msg_free(&m);
}

static void send_ack(fake_server *s, fake_conn *c)
{
    ss_msg m;
    ss_oseq a;
    memset(&m, 0, sizeof(m));
    memset(&a, 0, sizeof(a));
    m.type = SS_FRAME_ACK;
    snprintf(a.origin, sizeof(a.origin), "%s", s->origin);
    a.seq = s->committed;
    m.u.ack.nacks = 1;
    m.u.ack.acks = &a;
    m.u.ack.nrejects = s->nrej;
    m.u.ack.rejects = s->nrej ? s->rej : NULL;
    queue_msg(s, c, &m);
    s->nrej = 0;
    c->pending_ack = 0;
}

static void conn_step(fake_server *s, fake_conn *c)
{
    uint8_t buf[4096];
    for (int rounds = 0; rounds < 64 && !c->close_after_flush; rounds++) {
        int n = fws_recv(s->shim, c->sock, buf, sizeof(buf), 0);
        if (n == FWS_ETIMEDOUT || n == FWS_EAGAIN)
            break;
        if (n < 0) {
            conn_close(s, c);
            return;
        }
        size_t off = 0;
        while (off < (size_t)n && !c->close_after_flush) {
            size_t used = 0;
            int rc = ss_fdec_feed(&c->dec, buf + off, (size_t)n - off, &used);
            off += used;
            if (rc < 0) {
                violation(s, "undecodable frame stream from the gateway");
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
    /* One ACK for everything this step committed: the daemon's group commit
     * does the same. */
    if (c->pending_ack)
        send_ack(s, c);
    while (c->out_len > 0) {
        int n = fws_send(s->shim, c->sock, c->out, c->out_len);
        if (n == FWS_EAGAIN)
            break;
        if (n < 0) {
            conn_close(s, c);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    if (c->close_after_flush && c->out_len == 0)
        conn_close(s, c);
}

void fake_server_step(fake_server *s)
{
    for (;;) {
        fws_sock *ns = NULL;
        char peer[64];
        if (!s->listener || fws_accept(s->shim, s->listener, &ns, peer, sizeof(peer)) != 0)
            break;
        int placed = 0;
        for (int i = 0; i < FAKE_MAX_CONNS && !placed; i++) {
            if (!s->conns[i].sock) {
                memset(&s->conns[i], 0, sizeof(s->conns[i]));
                s->conns[i].sock = ns;
                ss_fdec_init(&s->conns[i].dec, s->max_frame);
                placed = 1;
            }
        }
        if (!placed)
            fws_sock_close(s->shim, ns);
    }
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (s->conns[i].sock)
            conn_step(s, &s->conns[i]);
}

void fake_server_idle(void *arg)
{
    fake_server_step(arg);
}

int fake_server_count(const fake_server *s, const char *needle)
{
    int n = 0;
    for (uint64_t i = 1; i <= s->committed && i <= FAKE_MAX_SEQ; i++)
        if (s->raw[i] && !s->rejected[i] && strstr(s->raw[i], needle))
            n++;
    return n;
}
