/* sim_world.c - the deterministic whole-system simulation: gateways and the
 * sim daemon in one world of the sim shim, a seeded workload and nemesis,
 * and the invariants (nothing acknowledged lost, nothing applied twice,
 * convergence to a reference last-writer-wins merge, audit chain valid). */
#include "sim_world.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "proto/err.h"
#include "sd/admin.h"

#define SHARED_SITE "site-s"

static int failf(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failf(sim_world *w, const char *fmt, ...)
{
    if (!w->failure[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->failure, sizeof(w->failure), fmt, ap);
        va_end(ap);
    }
    return 1;
}

static void trace_add(sim_world *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        w->trace = (w->trace ^ b[i]) * UINT64_C(0x100000001b3);
}

/* Every action goes into the trace hash; with --verbose also to stderr. */
static void vlog(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(sim_world *w, const char *fmt, ...)
{
    char line[512];
    int64_t t = fws_mono_ms(&w->dshim);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    trace_add(w, &t, sizeof(t));
    trace_add(w, line, strlen(line));
    if (w->o.verbose)
        fprintf(stderr, "[%" PRId64 "] %s\n", t, line);
}

static void log_sink(void *arg, int level, const char *line)
{
    (void)level;
    fprintf(stderr, "  %s: %s\n", (const char *)arg, line);
}

/* ---- setup ----------------------------------------------------------------- */

static const char *const gw_names[SIM_MAX_GW] = { "gw-0", "gw-1", "gw-2", "gw-3",
                                                  "gw-4", "gw-5", "gw-6", "gw-7" };

static int make_ident(ss_ident *id, int g)
{
    char uri[3][96];
    snprintf(uri[0], sizeof(uri[0]), "urn:sitesync:node:gw-%d", g);
    snprintf(uri[1], sizeof(uri[1]), "urn:sitesync:role:gateway");
    snprintf(uri[2], sizeof(uri[2]), "urn:sitesync:site:site-%d", g);
    ss_ident_init(id);
    for (int i = 0; i < 3; i++) {
        int rc = ss_ident_add_uri(id, uri[i], strlen(uri[i]));
        if (rc < 0)
            return rc;
    }
    const char *shared = "urn:sitesync:site:" SHARED_SITE;
    return ss_ident_add_uri(id, shared, strlen(shared));
}

/* Everything that runs while one gateway waits: the daemon, and the hub. */
static void world_idle(void *arg)
{
    sim_world *w = arg;
    sim_server_step(w->srv);
    if (w->relay && !fws_sim_powered_off(w->hsim))
        (void)gw_relay_step(w->relay, 0);
}

/* The hub (re)starts on its storage: journal recovery, listening again on
 * the same port so its gateways find it. */
static int hub_start(sim_world *w)
{
    int rc = SS_EIO;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (w->relay)
            gw_relay_destroy(w->relay);
        w->relay = NULL;
        rc = gw_relay_new(&w->hshim, &w->rcfg, &w->relay);
        if (rc == 0) {
            w->rcfg.listen_port = gw_relay_port(w->relay);
            return 0;
        }
        w->relay = NULL;
        if (!fws_sim_powered_off(w->hsim))
            break;
        fws_sim_power_cut(w->hsim);
        w->n_hub_cuts++;
    }
    return rc;
}

/* After a hub operation failed (an armed cut fired, the journal broke). */
static int hub_check(sim_world *w, int rc)
{
    if (!w->hsim)
        return 0;
    if (fws_sim_powered_off(w->hsim) || rc < 0 || !w->relay) {
        if (fws_sim_powered_off(w->hsim)) {
            fws_sim_power_cut(w->hsim);
            w->n_hub_cuts++;
        } else {
            fws_sim_reboot(w->hsim);
        }
        w->n_hub_restarts++;
        if (hub_start(w) < 0)
            return failf(w, "the hub cannot restart on its journal");
    }
    return 0;
}

int sim_world_reopen(sim_world *w, int g)
{
    sim_gw *x = &w->gw[g];
    int rc = SS_EIO;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (x->open)
            gw_node_free(&x->node);
        x->open = 0;
        rc = gw_node_open(&x->node, &x->shim, &x->id, &w->jc);
        if (rc == 0) {
            x->open = 1;
            x->reopen_count++;
            return 0;
        }
        /* A cut armed earlier can fire during recovery itself (it truncates
         * a torn tail): the device loses power again and restarts. */
        if (!fws_sim_powered_off(x->sim))
            break;
        fws_sim_power_cut(x->sim);
        w->n_cuts++;
    }
    return rc;
}

int sim_world_setup(sim_world *w, const sim_opts *o, const char *db_path)
{
    memset(w, 0, sizeof(*w));
    w->o = *o;
    w->trace = UINT64_C(0xcbf29ce484222325);
    if (o->gateways < 1 || o->gateways > SIM_MAX_GW) {
        failf(w, "gateways must be 1..%d", SIM_MAX_GW);
        return SS_EINVAL;
    }
    sim_rng_seed(&w->rng, o->seed);
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = sim_rng_next(&w->rng);
    c.log_level = o->verbose ? FWS_LOG_INFO : -1;
    c.log_sink = o->verbose ? log_sink : NULL;
    c.log_arg = (void *)"daemon";
    /* Hub mode checks certificates and CRLs against the simulated clock
     * (origin signatures at receive time): it starts when they were made. */
    c.wall_start_ms = o->pki ? o->pki->made_ms + 60000 : 0;
    int rc = fws_sim_new(&c, &w->dsim, &w->dshim);
    if (rc < 0) {
        failf(w, "fws_sim_new: %s", fws_strerror(rc));
        return rc;
    }
    w->srv = calloc(1, sizeof(*w->srv));
    if (!w->srv) {
        failf(w, "out of memory");
        return SS_ENOMEM;
    }
    rc = sim_server_start(w->srv, &w->dshim, &w->rng, db_path);
    if (rc < 0) {
        failf(w, "sim daemon: %s", w->srv->failure);
        return rc;
    }
    w->srv->faults.dup_batch = 100;
    w->srv->faults.replay_old = 30;
    w->srv->faults.crash_at_commit = 25;
    w->srv->faults.stall_conn = 60;
    w->srv->plant_ack_before_commit = o->plant_server_ack;
    fws_sim_set_idle_hook(w->dsim, world_idle, w);

    gw_journal_config_default(&w->jc);
    w->jc.segment_max = 4096;
    w->jc.entry_max = 1024;
    w->jc.capacity = 48 * 1024;
    gw_sync_config_default(&w->sc);
    w->sc.max_frame = 65536;
    w->sc.window = 3;
    w->sc.batch_max = 8;
    w->sc.handshake_timeout_ms = 3000;
    w->sc.io_timeout_ms = 5000;
    w->sc.ping_interval_ms = 1000;

    w->ngw = o->gateways;
    if (o->pki) {
        const sim_pki *k = o->pki;
        rc = sim_server_listen_tls(w->srv, k->ca, k->daemon_crt, k->daemon_key);
        if (rc == 0)
            rc = sim_server_require_signatures(w->srv, k->ca, k->crl);
        if (rc < 0) {
            failf(w, "sim daemon TLS: %s", w->srv->failure);
            return rc;
        }
        c.world = w->dsim;
        c.seed = sim_rng_next(&w->rng);
        c.log_arg = (void *)SIM_HUB_NODE;
        rc = fws_sim_new(&c, &w->hsim, &w->hshim);
        if (rc < 0) {
            failf(w, "fws_sim_new: %s", fws_strerror(rc));
            return rc;
        }
        gw_relay_config *r = &w->rcfg;
        memset(r, 0, sizeof(*r));
        r->ca_pem = k->ca;
        r->cert_pem = k->hub_crt;
        r->key_pem = k->hub_key;
        r->crl = (const uint8_t *)k->crl;
        r->crl_len = k->crl_len;
        r->listen_host = "127.0.0.1";
        r->up_host = "127.0.0.1";
        r->up_port = w->srv->tls_port;
        r->up_name = SIM_DAEMON_NAME;
        r->max_conns = 8;
        r->window = 4;
        r->max_frame = 65536;
        r->handshake_timeout_ms = 3000;
        r->io_timeout_ms = 5000;
        r->ping_interval_ms = 1000;
        r->idle_timeout_ms = 30000;
        r->backoff_min_ms = 100;
        r->backoff_max_ms = 2000;
        gw_hubj_config_default(&r->hub);
        /* Small, so that segments roll over and get reclaimed in a run. */
        r->hub.max_envelope = 65536 + 1024;
        r->hub.segment_max = r->hub.max_envelope + 4096;
        r->hub.capacity = 4u << 20;
        r->hub.max_records = 4096;
        r->hub.max_origins = 16;
        rc = hub_start(w);
        if (rc < 0) {
            failf(w, "hub start: %s", ss_err_name(rc));
            return rc;
        }
    }
    for (int g = 0; g < w->ngw; g++) {
        sim_gw *x = &w->gw[g];
        c.world = w->dsim;
        c.seed = sim_rng_next(&w->rng);
        c.log_arg = (void *)gw_names[g];
        rc = fws_sim_new(&c, &x->sim, &x->shim);
        if (rc < 0) {
            failf(w, "fws_sim_new: %s", fws_strerror(rc));
            return rc;
        }
        /* Site clocks disagree by up to +-30 s (inside the daemon's skew
         * tolerance: nothing may be refused for skew in this workload). */
        fws_sim_set_wall_offset(x->sim, (int64_t)sim_rng_below(&w->rng, 60001) - 30000);
        rc = make_ident(&x->id, g);
        if (rc == 0)
            rc = sim_server_add_peer(w->srv, &x->id);
        if (rc == 0)
            rc = gw_sync_setup(&x->sync, &w->sc);
        if (rc == 0)
            rc = sim_world_reopen(w, g);
        /* Hub mode: every gateway but the last syncs through the hub. */
        x->via_hub = o->pki && g < w->ngw - 1;
        gw_tls_init(&x->tls);
        gw_signer_init(&x->signer);
        if (rc == 0 && o->pki) {
            rc = gw_signer_setup(&x->signer, &x->shim, o->pki->gw_crt[g], o->pki->gw_key[g]);
            x->sync.signer = &x->signer;
        }
        if (rc == 0 && x->via_hub) {
            gw_tls_config tc;
            tc.ca_pem = o->pki->ca;
            tc.cert_pem = o->pki->gw_crt[g];
            tc.key_pem = o->pki->gw_key[g];
            tc.server_name = SIM_HUB_NAME;
            tc.key_checked = 0; /* the TLS path checks it itself in the simulation */
            rc = gw_tls_setup(&x->tls, &x->shim, &tc);
        }
        if (rc < 0) {
            failf(w, "gateway %d setup: %s", g, ss_err_name(rc));
            return rc;
        }
    }
    return 0;
}

void sim_world_free(sim_world *w)
{
    for (int g = 0; g < SIM_MAX_GW; g++) {
        sim_gw *x = &w->gw[g];
        if (x->open)
            gw_node_free(&x->node);
        x->open = 0;
        gw_sync_free(&x->sync);
        gw_tls_free(&x->tls);
        gw_signer_free(&x->signer);
    }
    if (w->relay)
        gw_relay_destroy(w->relay);
    w->relay = NULL;
    fws_sim_destroy(w->hsim);
    w->hsim = NULL;
    if (w->srv) {
        sim_server_stop(w->srv);
        free(w->srv);
        w->srv = NULL;
    }
    for (int g = 0; g < SIM_MAX_GW; g++) {
        fws_sim_destroy(w->gw[g].sim);
        w->gw[g].sim = NULL;
    }
    fws_sim_destroy(w->dsim);
    w->dsim = NULL;
    free(w->subs);
    w->subs = NULL;
    w->nsubs = w->subs_cap = 0;
}

/* ---- workload ---------------------------------------------------------------- */

/* After a failed operation: a device that lost power restarts (power back,
 * journal recovery); a journal that turned broken is reopened. */
static void after_failure(sim_world *w, int g)
{
    sim_gw *x = &w->gw[g];
    if (w->manual_restart)
        return;
    if (fws_sim_powered_off(x->sim)) {
        vlog(w, "gw-%d power lost (armed cut fired): restart", g);
        fws_sim_power_cut(x->sim);
        w->n_cuts++;
        (void)sim_world_reopen(w, g);
    } else if (x->open && x->node.journal.broken) {
        fws_sim_reboot(x->sim);
        (void)sim_world_reopen(w, g);
    }
}

static int push_sub(sim_world *w, const sim_sub *s)
{
    if (w->nsubs == w->subs_cap) {
        size_t cap = w->subs_cap ? w->subs_cap * 2 : 256;
        sim_sub *n = realloc(w->subs, cap * sizeof(*n));
        if (!n)
            return SS_ENOMEM;
        w->subs = n;
        w->subs_cap = cap;
    }
    w->subs[w->nsubs++] = *s;
    return 0;
}

static const char *pick(sim_rng *r, const char *const *v, int n)
{
    return v[sim_rng_below(r, (uint32_t)n)];
}

static void add_field(sim_sub *s, const char *name, const char *val)
{
    if (s->nf >= SIM_SUB_FIELDS)
        return;
    for (int i = 0; i < s->nf; i++)
        if (strcmp(s->fname[i], name) == 0)
            return;
    snprintf(s->fname[s->nf], sizeof(s->fname[0]), "%s", name);
    snprintf(s->fval[s->nf], sizeof(s->fval[0]), "%s", val);
    s->nf++;
}

/* A key of an incident this gateway created (acknowledged or not), or NULL. */
static const char *some_incident(sim_world *w, int g)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nsubs; i++)
        if (w->subs[i].gw == g && w->subs[i].coll == SS_COLL_INCIDENT &&
            w->subs[i].op == SS_OP_CREATE)
            n++;
    if (n == 0)
        return NULL;
    size_t k = sim_rng_below(&w->rng, (uint32_t)n);
    for (size_t i = 0; i < w->nsubs; i++)
        if (w->subs[i].gw == g && w->subs[i].coll == SS_COLL_INCIDENT &&
            w->subs[i].op == SS_OP_CREATE && k-- == 0)
            return w->subs[i].key;
    return NULL;
}

int sim_world_submit(sim_world *w, int g)
{
    static const char *const alert[] = { "normal", "elevated", "high", "critical" };
    static const char *const power[] = { "normal", "backup", "degraded", "outage" };
    static const char *const perim[] = { "secure", "alarm", "breached", "unknown" };
    static const char *const cat[] = { "intrusion", "sabotage", "cyber", "fire", "drone" };
    static const char *const status[] = { "open", "acknowledged", "contained", "resolved" };
    sim_gw *x = &w->gw[g];
    if (!x->open) {
        int rc = sim_world_reopen(w, g);
        if (rc < 0)
            return rc;
    }
    sim_sub s;
    memset(&s, 0, sizeof(s));
    s.gw = g;
    char own_site[16], text[48];
    snprintf(own_site, sizeof(own_site), "site-%d", g);
    snprintf(text, sizeof(text), "v-%d-%" PRIu64, g, ++w->counter);
    const char *site = own_site, *key = NULL;
    uint32_t r = sim_rng_below(&w->rng, 100);
    const char *inc = NULL;
    if (r < 55) {
        /* Status updates, often of the site every gateway shares: that is
         * where concurrent writers meet and last-writer-wins decides. */
        s.coll = SS_COLL_SITE_STATUS;
        s.op = SS_OP_UPDATE;
        if (r < 30)
            site = SHARED_SITE;
        int nf = 1 + (int)sim_rng_below(&w->rng, 3);
        for (int i = 0; i < nf; i++) {
            switch (sim_rng_below(&w->rng, 4)) {
            case 0:
                add_field(&s, "alert_level", pick(&w->rng, alert, 4));
                break;
            case 1:
                add_field(&s, "power", pick(&w->rng, power, 4));
                break;
            case 2:
                add_field(&s, "perimeter", pick(&w->rng, perim, 4));
                break;
            default:
                add_field(&s, "note", text);
                break;
            }
        }
    } else if (r < 97 && (r < 75 || (inc = some_incident(w, g)) == NULL)) {
        s.coll = SS_COLL_INCIDENT;
        s.op = SS_OP_CREATE;
        add_field(&s, "category", pick(&w->rng, cat, 5));
        char sev[4];
        snprintf(sev, sizeof(sev), "%u", 1 + sim_rng_below(&w->rng, 5));
        add_field(&s, "severity", sev);
        add_field(&s, "title", text);
    } else if (r < 97) {
        s.coll = SS_COLL_INCIDENT;
        s.op = SS_OP_UPDATE;
        key = inc;
        add_field(&s, "status", pick(&w->rng, status, 4));
        if (sim_rng_chance(&w->rng, 500)) {
            char sev[4];
            snprintf(sev, sizeof(sev), "%u", 1 + sim_rng_below(&w->rng, 5));
            add_field(&s, "severity", sev);
        }
    } else {
        /* Deletes: of an incident, or of the shared status record racing
         * with everyone's updates (tombstone against field clocks). */
        s.op = SS_OP_DELETE;
        inc = some_incident(w, g);
        if (inc && r < 99) {
            s.coll = SS_COLL_INCIDENT;
            key = inc;
        } else {
            s.coll = SS_COLL_SITE_STATUS;
            site = SHARED_SITE;
        }
    }
    ss_change ch;
    ss_verr err;
    memset(&err, 0, sizeof(err));
    int rc = gw_node_begin(&x->node, &ch, (ss_collection_id)s.coll, (ss_op)s.op, key, site, &err);
    for (int i = 0; rc == 0 && i < s.nf; i++)
        rc = ss_change_set_text(&ch, s.fname[i], s.fval[i], &err);
    if (rc < 0) {
        failf(w, "gw-%d: building a change failed: %s %s", g, ss_err_name(rc), err.msg);
        return rc;
    }
    rc = gw_node_submit(&x->node, &ch, &err);
    s.ok = rc == 0;
    s.seq = ch.seq;
    s.hlc = ch.hlc;
    snprintf(s.key, sizeof(s.key), "%s", ch.key);
    if (s.seq > 0) {
        /* The bytes the journal holds for it: the same encoder, same input.
         * Their hash tells which of two submissions that got the same
         * sequence (the first failed and was never durable) the daemon has. */
        char enc[1100];
        int n = ss_change_encode(&ch, enc, sizeof(enc));
        if (n < 0 || !EVP_Digest(enc, (size_t)n, s.chash, NULL, EVP_sha256(), NULL))
            return failf(w, "cannot hash a change"), SS_EINTERNAL;
    }
    vlog(w, "gw-%d submit seq=%" PRIu64 " %s/%s op=%d -> %s", g, s.seq, ch.coll->name, s.key, s.op,
         ss_err_name(rc));
    if (s.seq > 0 && push_sub(w, &s) < 0)
        return failf(w, "out of memory"), SS_ENOMEM;
    if (rc == 0)
        w->n_ok++;
    else
        w->n_failed++;
    if (rc < 0)
        after_failure(w, g);
    return rc;
}

static uint32_t link_delay(sim_rng *r)
{
    return sim_rng_below(r, 4) == 0 ? sim_rng_below(r, 400) : sim_rng_below(r, 20);
}

int sim_world_sync(sim_world *w, int g)
{
    sim_gw *x = &w->gw[g];
    if (!x->open) {
        int rc = sim_world_reopen(w, g);
        if (rc < 0)
            return rc;
    }
    fws_sim_link l;
    memset(&l, 0, sizeof(l));
    l.delay_ms[FWS_SIM_C2S] = link_delay(&w->rng);
    l.delay_ms[FWS_SIM_S2C] = link_delay(&w->rng);
    if (sim_rng_chance(&w->rng, 120)) {
        /* The link breaks mid-session: at a time, or at a byte. */
        if (sim_rng_chance(&w->rng, 500)) {
            l.drop = 1;
            l.drop_at_ms = fws_mono_ms(&x->shim) + sim_rng_below(&w->rng, 3000);
        } else {
            int d = (int)sim_rng_below(&w->rng, 2);
            l.cut[d] = 1;
            l.cut_after[d] = sim_rng_below(&w->rng, 4000);
        }
    }
    fws_sim_net_set_next_link(x->sim, &l);
    int blackholed = 0;
    uint16_t port = x->via_hub ? w->rcfg.listen_port : w->srv->port;
    if (x->partitioned) {
        if (sim_rng_chance(&w->rng, 500)) {
            fws_sim_net_refuse_next(x->sim, 1);
        } else {
            fws_sim_net_blackhole(x->sim, port);
            blackholed = 1;
        }
    }
    gw_plain p;
    gw_stream st;
    int rc = x->via_hub ? gw_tls_connect(&x->tls, "127.0.0.1", port, 2000, &st)
                        : gw_plain_connect(&p, &x->shim, "127.0.0.1", port, 1000, &st);
    if (blackholed)
        fws_sim_net_blackhole(x->sim, 0);
    w->n_syncs++;
    if (rc < 0) {
        fws_sim_net_set_next_link(x->sim, NULL);
        vlog(w, "gw-%d connect: %s", g, ss_err_name(rc));
        return rc;
    }
    gw_sync_result res;
    rc = gw_sync_session(&x->sync, &x->node, &st, &res);
    st.ops->close(st.ctx);
    vlog(w, "gw-%d sync -> %s (%s) envelopes=%" PRIu64 " acked=%" PRIu64, g, ss_err_name(rc),
         res.message, res.envelopes, res.acked);
    if (rc == 0)
        w->n_sync_ok++;
    else
        after_failure(w, g);
    return rc;
}

/* ---- invariants ----------------------------------------------------------- */

int sim_world_check_acks(sim_world *w)
{
    if (w->srv->failure[0])
        return failf(w, "daemon: %s", w->srv->failure);
    for (int g = 0; g < w->ngw; g++) {
        sim_gw *x = &w->gw[g];
        /* Behind a hub the acknowledgement is the hub's durable journal,
         * not the daemon's commit: those are checked end to end after the
         * drain. */
        if (!x->open || x->via_hub)
            continue;
        uint64_t acked = gw_journal_acked(&x->node.journal), committed = 0;
        int rc = sim_server_committed(w->srv, x->id.node, &committed);
        if (rc < 0)
            return failf(w, "daemon committed lookup: %s", ss_err_name(rc));
        if (acked > committed)
            return failf(w,
                         "gw-%d holds an acknowledgement up to seq %" PRIu64
                         " but the daemon has durably committed only %" PRIu64
                         " (acknowledged before durable)",
                         g, acked, committed);
    }
    return 0;
}

int sim_world_drain(sim_world *w)
{
    w->srv->faults.crash_at_commit = 0;
    w->srv->faults.stall_conn = 0;
    fws_sim_net_set_default_link(w->dsim, NULL);
    for (int g = 0; g < w->ngw; g++) {
        sim_gw *x = &w->gw[g];
        (void)fws_sim_set_cut_at(x->sim, 0, 0, FWS_SIM_TEAR_TRUNC);
        if (fws_sim_powered_off(x->sim)) {
            fws_sim_power_cut(x->sim);
            if (x->open)
                gw_node_free(&x->node);
            x->open = 0;
        }
        x->partitioned = 0;
        if (!x->open && sim_world_reopen(w, g) < 0)
            return failf(w, "gw-%d cannot reopen its journal after the heal", g);
    }
    if (w->hsim) {
        (void)fws_sim_set_cut_at(w->hsim, 0, 0, FWS_SIM_TEAR_TRUNC);
        w->hub_partitioned = 0;
        w->srv->tls_blocked = 0;
        if (hub_check(w, 0))
            return 1;
    }
    vlog(w, "heal: every fault cleared, draining");
    for (int round = 0; round < 2; round++) {
        for (int g = 0; g < w->ngw; g++) {
            sim_gw *x = &w->gw[g];
            int rc = SS_EIO;
            for (int attempt = 0; attempt < 20; attempt++) {
                fws_sim_net_set_next_link(x->sim, NULL);
                rc = sim_world_sync(w, g);
                gw_journal_stats st;
                gw_journal_stats_get(&x->node.journal, &st);
                if (rc == 0 && st.pending == 0)
                    break;
                fws_sim_advance(w->dsim, 1000);
            }
            if (rc < 0)
                return failf(w, "gw-%d did not drain after the heal: %s", g, ss_err_name(rc));
        }
    }
    /* The hub forwards what it holds: run it (and the daemon) until the
     * daemon has committed everything the gateways behind it hold acked. */
    for (int i = 0; w->relay && i < 3000; i++) {
        int behind = 0;
        for (int g = 0; g < w->ngw; g++) {
            uint64_t committed = 0;
            if (sim_server_committed(w->srv, w->gw[g].id.node, &committed) < 0)
                return failf(w, "committed lookup failed");
            if (committed < gw_journal_acked(&w->gw[g].node.journal))
                behind = 1;
        }
        if (!behind)
            break;
        fws_sim_advance(w->dsim, 50);
        world_idle(w);
        if (hub_check(w, 0))
            return 1;
    }
    return sim_world_check_acks(w);
}

/* (hlc, origin) order, as the merge defines it. */
static int clock_cmp(uint64_t h1, const char *o1, uint64_t h2, const char *o2)
{
    if (h1 != h2)
        return h1 < h2 ? -1 : 1;
    return strcmp(o1, o2);
}

typedef struct first_seen {
    int have;
    uint64_t hlc;
    uint8_t chash[32];
    char outcome[40];
    int matched;
} first_seen;

static int cmp_sub_key(const void *a, const void *b, const sim_world *w)
{
    const sim_sub *x = &w->subs[*(const size_t *)a], *y = &w->subs[*(const size_t *)b];
    int c = strcmp(x->coll == SS_COLL_INCIDENT ? "incident" : "site_status",
                   y->coll == SS_COLL_INCIDENT ? "incident" : "site_status");
    if (c)
        return c;
    c = strcmp(x->key, y->key);
    if (c)
        return c;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* qsort has no context argument in C11: insertion sort, the lists are small. */
static void sort_subs(const sim_world *w, size_t *idx, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0 && cmp_sub_key(&idx[j - 1], &v, w) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* Compares one record of the daemon (its sd_clocks JSON) with the reference
 * merge of the included submissions idx[0..n) (all of one record). */
static int check_record(sim_world *w, const size_t *idx, size_t n, const char *clocks)
{
    const sim_sub *s0 = &w->subs[idx[0]];
    const ss_collection_def *coll = NULL;
    int nc = 0;
    const ss_collection_def *cols = ss_schema_collections(&nc);
    for (int i = 0; i < nc; i++)
        if ((int)cols[i].id == s0->coll)
            coll = &cols[i];
    if (!coll)
        return failf(w, "unknown collection %d", s0->coll);
    uint64_t tomb = 0;
    const char *tomb_o = "";
    struct {
        uint64_t hlc;
        const char *origin, *val;
    } best[SS_SCHEMA_MAX_FIELDS];
    memset(best, 0, sizeof(best));
    for (size_t k = 0; k < n; k++) {
        const sim_sub *s = &w->subs[idx[k]];
        const char *o = gw_names[s->gw];
        if (s->op == SS_OP_DELETE) {
            if (!tomb || clock_cmp(s->hlc, o, tomb, tomb_o) > 0) {
                tomb = s->hlc;
                tomb_o = o;
            }
            continue;
        }
        for (int f = 0; f < s->nf; f++)
            for (int d = 0; d < coll->nfields; d++)
                if (strcmp(coll->fields[d].name, s->fname[f]) == 0 &&
                    (!best[d].hlc || clock_cmp(s->hlc, o, best[d].hlc, best[d].origin) > 0)) {
                    best[d].hlc = s->hlc;
                    best[d].origin = o;
                    best[d].val = s->fval[f];
                }
    }
    cJSON *doc = cJSON_Parse(clocks);
    if (!doc)
        return failf(w, "%s/%s: sd_clocks is not JSON", coll->name, s0->key);
    int bad = 0;
    char why[200] = "";
    char hh[SS_HLC_HUMAN_LEN + 1];
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(doc, "fields");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "tombstone");
    int nfields = 0;
    for (int d = 0; d < coll->nfields && !bad; d++) {
        int want =
            best[d].hlc && (!tomb || clock_cmp(best[d].hlc, best[d].origin, tomb, tomb_o) > 0);
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(fields, coll->fields[d].name);
        if (!want && !got)
            continue;
        if (want != (got != NULL)) {
            bad = 1;
            snprintf(why, sizeof(why), "field %s: reference %s, daemon %s", coll->fields[d].name,
                     want ? best[d].val : "(none)", got ? "has a value" : "(none)");
            break;
        }
        nfields++;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(got, "value");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(got, "hlc");
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(got, "origin");
        char vt[64] = "";
        if (cJSON_IsString(v))
            snprintf(vt, sizeof(vt), "%s", v->valuestring);
        else if (cJSON_IsNumber(v))
            snprintf(vt, sizeof(vt), "%lld", (long long)v->valuedouble);
        ss_hlc_format_human(best[d].hlc, hh, sizeof(hh));
        if (strcmp(vt, best[d].val) != 0 || !cJSON_IsString(h) || strcmp(h->valuestring, hh) ||
            !cJSON_IsString(o) || strcmp(o->valuestring, best[d].origin)) {
            bad = 1;
            snprintf(why, sizeof(why), "field %s: reference %s (%s by %s), daemon %s (%s by %s)",
                     coll->fields[d].name, best[d].val, hh, best[d].origin, vt,
                     cJSON_IsString(h) ? h->valuestring : "?",
                     cJSON_IsString(o) ? o->valuestring : "?");
        }
    }
    if (!bad && cJSON_GetArraySize(fields) != nfields) {
        bad = 1;
        snprintf(why, sizeof(why), "daemon has %d fields, reference %d", cJSON_GetArraySize(fields),
                 nfields);
    }
    if (!bad) {
        int has_t = t && !cJSON_IsNull(t);
        if (has_t != (tomb != 0)) {
            bad = 1;
            snprintf(why, sizeof(why), "tombstone: reference %s, daemon %s", tomb ? "yes" : "no",
                     has_t ? "yes" : "no");
        } else if (tomb) {
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(t, "hlc");
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "origin");
            ss_hlc_format_human(tomb, hh, sizeof(hh));
            if (!cJSON_IsString(h) || strcmp(h->valuestring, hh) || !cJSON_IsString(o) ||
                strcmp(o->valuestring, tomb_o)) {
                bad = 1;
                snprintf(why, sizeof(why), "tombstone clock differs from the reference");
            }
        }
    }
    cJSON_Delete(doc);
    if (bad)
        return failf(w, "record %s/%s differs from the reference LWW merge: %s", coll->name,
                     s0->key, why);
    return 0;
}

static int gw_of(const sim_world *w, const char *origin)
{
    for (int g = 0; g < w->ngw; g++)
        if (strcmp(gw_names[g], origin) == 0)
            return g;
    return -1;
}

int sim_world_check_final(sim_world *w)
{
    int ret = 0;
    first_seen *fs[SIM_MAX_GW] = { NULL };
    uint64_t committed[SIM_MAX_GW] = { 0 };
    size_t *idx = NULL;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = w->srv->store ? sd_store_handle(w->srv->store) : NULL;
    if (!db)
        return failf(w, "daemon store is closed");
    if (sim_world_check_acks(w))
        return 1;

    for (int g = 0; g < w->ngw; g++) {
        sim_gw *x = &w->gw[g];
        gw_journal_stats js;
        gw_journal_stats_get(&x->node.journal, &js);
        if (sim_server_committed(w->srv, x->id.node, &committed[g]) < 0)
            return failf(w, "committed lookup failed");
        if (js.pending != 0 || js.acked != committed[g] || js.next_seq != committed[g] + 1)
            return failf(
                w,
                "gw-%d did not converge: acked %" PRIu64 " next %" PRIu64 " pending %" PRIu64
                ", daemon committed %" PRIu64 "%s",
                g, js.acked, js.next_seq, js.pending, committed[g],
                js.acked > committed[g] ? " (acknowledged changes never reached the daemon)" : "");
        fs[g] = calloc(committed[g] + 1, sizeof(first_seen));
        if (!fs[g]) {
            ret = failf(w, "out of memory");
            goto out;
        }
    }

    /* Every audit entry of a change: the first delivery of each (origin,
     * seq) is applied/superseded; any later one must be a sequence-level
     * duplicate (no detail). A merge-level "duplicate" (same clock already
     * stored) cannot happen on a first delivery here: clocks are unique per
     * origin, so it means the change went through the merge twice. */
    if (sqlite3_prepare_v2(db,
                           "SELECT origin, seq, outcome, detail IS NOT NULL, hlc, chash FROM audit"
                           " WHERE origin IS NOT NULL AND seq > 0 ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = failf(w, "audit query: %s", sqlite3_errmsg(db));
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *origin = (const char *)sqlite3_column_text(st, 0);
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 1);
        const char *outcome = (const char *)sqlite3_column_text(st, 2);
        int has_detail = sqlite3_column_int(st, 3);
        uint64_t hlc = (uint64_t)sqlite3_column_int64(st, 4);
        int g = gw_of(w, origin ? origin : "");
        if (!outcome)
            outcome = "";
        if (strcmp(outcome, "rejected:gap") == 0)
            continue;
        if (g < 0 || seq > committed[g]) {
            ret = failf(w, "audit entry for %s seq %" PRIu64 " (%s) beyond what was committed",
                        origin ? origin : "?", seq, outcome);
            goto out;
        }
        first_seen *f = &fs[g][seq];
        if (strcmp(outcome, "duplicate") == 0 && !has_detail) {
            if (!f->have) {
                ret = failf(w, "%s seq %" PRIu64 " acknowledged as duplicate before any delivery",
                            origin, seq);
                goto out;
            }
            continue;
        }
        if (f->have) {
            ret = failf(w,
                        "%s seq %" PRIu64 " applied twice: audit outcome %s, then %s%s (nothing "
                        "may be applied twice)",
                        origin, seq, f->outcome, outcome, has_detail ? " (merge-level)" : "");
            goto out;
        }
        f->have = 1;
        f->hlc = hlc;
        if (sqlite3_column_bytes(st, 5) == 32)
            memcpy(f->chash, sqlite3_column_blob(st, 5), 32);
        snprintf(f->outcome, sizeof(f->outcome), "%s", outcome);
    }
    sqlite3_finalize(st);
    st = NULL;
    for (int g = 0; g < w->ngw; g++)
        for (uint64_t q = 1; q <= committed[g]; q++)
            if (!fs[g][q].have) {
                ret = failf(w, "gw-%d seq %" PRIu64 " committed but never audited", g, q);
                goto out;
            }

    /* Nothing acknowledged lost; which submissions made it in. */
    idx = malloc((w->nsubs + 1) * sizeof(*idx));
    if (!idx) {
        ret = failf(w, "out of memory");
        goto out;
    }
    size_t nin = 0;
    for (size_t i = 0; i < w->nsubs; i++) {
        const sim_sub *s = &w->subs[i];
        first_seen *f = s->seq <= committed[s->gw] ? &fs[s->gw][s->seq] : NULL;
        int in = f && f->have && f->hlc == s->hlc && memcmp(f->chash, s->chash, 32) == 0;
        if (s->ok && !in) {
            ret = failf(w,
                        "gw-%d seq %" PRIu64 " was acknowledged to its caller but the daemon %s"
                        " (acknowledged change lost)",
                        s->gw, s->seq,
                        f ? "holds another change with that sequence" : "never got it");
            goto out;
        }
        if (in) {
            /* Byte-identical to a submission already matched (the first
             * attempt failed before it was durable, the retry got the same
             * sequence and clock): one change, counted once. */
            if (f->matched)
                continue;
            f->matched = 1;
            idx[nin++] = i;
        }
    }
    /* Only now the less specific symptoms: refusals and lost sequences. */
    for (int g = 0; g < w->ngw; g++) {
        gw_journal_stats js;
        gw_journal_stats_get(&w->gw[g].node.journal, &js);
        for (uint64_t q = 1; q <= committed[g]; q++)
            if (strcmp(fs[g][q].outcome, "applied") != 0 &&
                strcmp(fs[g][q].outcome, "superseded") != 0) {
                ret = failf(w, "gw-%d seq %" PRIu64 ": unexpected first outcome %s", g, q,
                            fs[g][q].outcome);
                goto out;
            }
        if (js.lost || js.refused) {
            ret = failf(w, "gw-%d: %" PRIu64 " sequences lost, %" PRIu64 " changes refused", g,
                        js.lost, js.refused);
            goto out;
        }
    }
    for (int g = 0; g < w->ngw; g++)
        for (uint64_t q = 1; q <= committed[g]; q++)
            if (!fs[g][q].matched) {
                ret = failf(w, "gw-%d seq %" PRIu64 " at the daemon matches no submission", g, q);
                goto out;
            }

    /* Daemon state == reference merge, record by record, in key order. */
    sort_subs(w, idx, nin);
    if (sqlite3_prepare_v2(db,
                           "SELECT collection, key, sd_clocks(collection, state) FROM records"
                           " ORDER BY collection, key",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = failf(w, "records query: %s", sqlite3_errmsg(db));
        goto out;
    }
    size_t pos = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *cname = (const char *)sqlite3_column_text(st, 0);
        const char *key = (const char *)sqlite3_column_text(st, 1);
        const char *clocks = (const char *)sqlite3_column_text(st, 2);
        if (pos >= nin) {
            ret = failf(w, "daemon has record %s/%s that no submission wrote", cname, key);
            goto out;
        }
        const sim_sub *s = &w->subs[idx[pos]];
        const char *rc_name = s->coll == SS_COLL_INCIDENT ? "incident" : "site_status";
        if (!cname || !key || !clocks || strcmp(cname, rc_name) || strcmp(key, s->key)) {
            ret = failf(w, "record sets differ: daemon has %s/%s where the reference has %s/%s",
                        cname ? cname : "?", key ? key : "?", rc_name, s->key);
            goto out;
        }
        size_t end = pos + 1;
        while (end < nin && w->subs[idx[end]].coll == s->coll &&
               strcmp(w->subs[idx[end]].key, s->key) == 0)
            end++;
        if (check_record(w, idx + pos, end - pos, clocks)) {
            ret = 1;
            goto out;
        }
        pos = end;
    }
    if (pos != nin) {
        ret = failf(w, "daemon lacks record %s", w->subs[idx[pos]].key);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;

    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM audit WHERE path = 'via " SIM_HUB_NODE
                           "' AND outcome IN ('applied', 'superseded')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        w->n_via_hub = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (w->srv->sig) {
        /* Every envelope was signed by its origin: none may be refused. */
        sd_sig_stats ss;
        sd_sig_get_stats(w->srv->sig, &ss);
        w->n_sig_verified = ss.verified;
        if (ss.refused || (ss.verified == 0 && w->n_ok > 0)) {
            ret = failf(w, "origin signatures: %" PRIu64 " verified, %" PRIu64 " refused",
                        ss.verified, ss.refused);
            goto out;
        }
    }
    sd_audit_report rep;
    memset(&rep, 0, sizeof(rep));
    int rc = sd_audit_verify(w->srv->store, NULL, &rep);
    if (rc < 0 || !rep.ok) {
        ret = failf(w, "audit verify: %s (entry %" PRId64 ")",
                    rc < 0 ? ss_err_name(rc) : rep.reason, rep.broken_id);
        goto out;
    }
out:
    if (st)
        sqlite3_finalize(st);
    free(idx);
    for (int g = 0; g < SIM_MAX_GW; g++)
        free(fs[g]);
    return ret;
}

/* ---- the run ------------------------------------------------------------------ */

int sim_world_run(sim_world *w)
{
    for (int step = 0; step < w->o.steps; step++) {
        int g = (int)sim_rng_below(&w->rng, (uint32_t)w->ngw);
        sim_gw *x = &w->gw[g];
        uint32_t a = sim_rng_below(&w->rng, 1000);
        if (a < 450) {
            (void)sim_world_submit(w, g);
        } else if (a < 650) {
            (void)sim_world_sync(w, g);
        } else if (a < 700) {
            /* Power will fail at one of the next mutating operations, with a
             * torn write if it is an append. */
            uint64_t n = fws_sim_ops(x->sim) + 1 + sim_rng_below(&w->rng, 40);
            (void)fws_sim_set_cut_at(x->sim, n, sim_rng_below(&w->rng, 64),
                                     sim_rng_below(&w->rng, 2) ? FWS_SIM_TEAR_GARBAGE
                                                               : FWS_SIM_TEAR_TRUNC);
            w->n_armed++;
            vlog(w, "gw-%d cut armed at op %" PRIu64, g, n);
        } else if (a < 730) {
            vlog(w, "gw-%d power cut now", g);
            fws_sim_power_cut(x->sim);
            w->n_cuts++;
            if (sim_world_reopen(w, g) < 0)
                return failf(w, "gw-%d cannot recover its journal after a power cut", g);
        } else if (a < 750) {
            vlog(w, "gw-%d process restart", g);
            fws_sim_reboot(x->sim);
            (void)sim_world_reopen(w, g);
            if (!x->open && fws_sim_powered_off(x->sim))
                after_failure(w, g);
        } else if (a < 800) {
            x->partitioned = !x->partitioned;
            w->n_partitions += x->partitioned;
            vlog(w, "gw-%d %s", g, x->partitioned ? "partitioned" : "healed");
        } else if (a < 815) {
            for (int k = 0; k < w->ngw; k++)
                w->gw[k].partitioned = 0;
            vlog(w, "all partitions healed");
        } else if (a < 845 && w->hsim && sim_rng_chance(&w->rng, 500)) {
            uint32_t h = sim_rng_below(&w->rng, 4);
            if (h == 0) {
                vlog(w, "hub power cut now");
                fws_sim_power_cut(w->hsim);
                w->n_hub_cuts++;
                w->n_hub_restarts++;
                if (hub_start(w) < 0)
                    return failf(w, "the hub cannot recover its journal after a power cut");
            } else if (h == 1) {
                uint64_t n = fws_sim_ops(w->hsim) + 1 + sim_rng_below(&w->rng, 40);
                (void)fws_sim_set_cut_at(w->hsim, n, sim_rng_below(&w->rng, 64),
                                         sim_rng_below(&w->rng, 2) ? FWS_SIM_TEAR_GARBAGE
                                                                   : FWS_SIM_TEAR_TRUNC);
                vlog(w, "hub cut armed at op %" PRIu64, n);
            } else {
                w->hub_partitioned = !w->hub_partitioned;
                sim_server_block_tls(w->srv, w->hub_partitioned);
                vlog(w, "hub %s the daemon",
                     w->hub_partitioned ? "cut off from" : "reconnected to");
            }
        } else if (a < 845) {
            vlog(w, "daemon restart");
            w->n_restarts++;
            if (sim_server_restart(w->srv) < 0)
                return failf(w, "daemon cannot reopen its store: %s", w->srv->failure);
        } else {
            fws_sim_advance(w->dsim, sim_rng_below(&w->rng, 3000));
        }
        fws_sim_advance(w->dsim, sim_rng_below(&w->rng, 200));
        world_idle(w);
        if (hub_check(w, 0) || sim_world_check_acks(w))
            return 1;
    }
    if (sim_world_drain(w))
        return 1;
    int rc = sim_world_check_final(w);
    sd_audit_head h;
    memset(&h, 0, sizeof(h));
    if (w->srv->store && sd_audit_head_get(w->srv->store, &h) == 0)
        trace_add(w, &h, sizeof(h));
    return rc;
}
