/* cli_relay.c - sitesync-gw's relay-mode commands (a regional hub): `relay`,
 * which wires the listener, the hub journal and the upstream link of gw_hub
 * together, and `journal` on a hub's journal directory. Built only with
 * -DSITESYNC_GW_RELAY=ON (the default), so that a site gateway's firmware
 * links none of the hub code. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gw/hub.h"
#include "gw/relay.h"
#include "proto/err.h"

static int reload_crl_file(void *arg, uint8_t **buf, size_t *len)
{
    prog *p = arg;
    char *b = NULL;
    int rc = gw__read_file(p->cfg.crl, &b, len);
    if (rc < 0) {
        fws_log(&p->shim, FWS_LOG_ERROR, "event=crl_reload_failed file=%s err=\"%s\"", p->cfg.crl,
                strerror(-rc));
        return -1;
    }
    *buf = (uint8_t *)b;
    return 0;
}

static int write_port_file(const char *path, uint16_t port)
{
    char tmp[GW_PATH_MAX + 8], text[16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(text, sizeof(text), "%u\n", (unsigned)port);
    unlink(tmp);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) == EOF || fclose(f) != 0) {
        fprintf(stderr, "sitesync-gw: port file %s: %s\n", path, strerror(errno));
        return -1;
    }
    return rename(tmp, path) == 0 ? 0 : -1;
}

static void relay_hub_config(const gw_config *c, gw_hubj_config *h)
{
    gw_hubj_config_default(h);
    h->capacity = c->capacity;
    h->max_envelope = (uint32_t)c->max_frame + 2048;
    h->segment_max = (uint32_t)c->segment_max;
    if (h->segment_max < 2 * h->max_envelope)
        h->segment_max = 2 * h->max_envelope;
    if (h->capacity < h->segment_max)
        h->capacity = h->segment_max;
    h->max_records = (uint32_t)c->relay_max_envelopes;
    h->refused_max = (uint32_t)c->refused_max;
}

int gw__cmd_relay(prog *p)
{
    char lhost[256], uhost[256];
    uint16_t lport = 0, uport = 0;
    /* Port 0 (pick a free one, reported through port_file) is allowed here
     * but not for a server address, so parse it as port 1 and put 0 back. */
    char lbuf[sizeof(p->cfg.listen) + 1];
    size_t ll = strlen(p->cfg.listen);
    int any_port = ll >= 2 && strcmp(p->cfg.listen + ll - 2, ":0") == 0;
    snprintf(lbuf, sizeof(lbuf), "%.*s%s", (int)(any_port ? ll - 1 : ll), p->cfg.listen,
             any_port ? "1" : "");
    if (!p->cfg.listen[0] || gw_parse_hostport(lbuf, lhost, sizeof(lhost), &lport)) {
        fprintf(stderr, "sitesync-gw: relay needs listen HOST:PORT, got \"%s\"\n", p->cfg.listen);
        return EXIT_USAGE;
    }
    if (!p->cfg.server[0] || gw_parse_hostport(p->cfg.server, uhost, sizeof(uhost), &uport)) {
        fprintf(stderr, "sitesync-gw: relay needs server (its upstream) HOST:PORT, got \"%s\"\n",
                p->cfg.server);
        return EXIT_USAGE;
    }
    int rc = gw__load_identity(p, 1);
    if (rc)
        return rc;
    if (p->ident.role != SS_ROLE_RELAY) {
        fprintf(stderr,
                "sitesync-gw: relay: cert %s has role %s; a hub needs a relay "
                "certificate (sitesync-pki issue --role relay)\n",
                p->cfg.cert, ss_role_name(p->ident.role));
        return EXIT_USAGE;
    }
    if (any_port)
        lport = 0;
    char *crl = NULL;
    size_t crl_len = 0;
    rc = gw__read_file(p->cfg.crl, &crl, &crl_len);
    if (rc < 0)
        fprintf(stderr, "sitesync-gw: crl %s: %s (a CRL adopted earlier is used if present)\n",
                p->cfg.crl, strerror(-rc));
    rc = gw__lock_take(p, p->cfg.journal, p->cfg.lock_timeout_ms);
    if (rc) {
        free(crl);
        return rc;
    }
    gw_relay_config rc_;
    memset(&rc_, 0, sizeof(rc_));
    rc_.ca_pem = p->ca_pem;
    rc_.cert_pem = p->cert_pem;
    rc_.key_pem = p->key_pem;
    rc_.crl = (const uint8_t *)crl;
    rc_.crl_len = crl_len;
    rc_.listen_host = lhost;
    rc_.listen_port = lport;
    rc_.up_host = uhost;
    rc_.up_port = uport;
    rc_.up_name = p->cfg.server_name[0] ? p->cfg.server_name : uhost;
    rc_.max_conns = (uint32_t)p->cfg.max_conns;
    rc_.window = (uint32_t)p->cfg.relay_window;
    rc_.max_frame = (uint32_t)p->cfg.max_frame;
    rc_.handshake_timeout_ms = (uint32_t)p->cfg.handshake_timeout_ms;
    rc_.io_timeout_ms = (uint32_t)p->cfg.io_timeout_ms;
    rc_.ping_interval_ms = (uint32_t)p->cfg.ping_interval_ms;
    rc_.idle_timeout_ms = (uint32_t)p->cfg.idle_timeout_ms;
    rc_.bad_handshake_limit = (uint32_t)p->cfg.bad_handshake_limit;
    rc_.bad_handshake_window_ms = (uint32_t)p->cfg.bad_handshake_window_ms;
    rc_.bad_handshake_penalty_ms = (uint32_t)p->cfg.bad_handshake_penalty_ms;
    rc_.max_output_bytes = (uint32_t)p->cfg.max_output_bytes;
    rc_.backoff_min_ms = (uint32_t)p->cfg.backoff_min_ms;
    rc_.backoff_max_ms = (uint32_t)p->cfg.backoff_max_ms;
    rc_.crl_stale_refuse = strcmp(p->cfg.crl_stale_policy, "refuse") == 0;
    relay_hub_config(&p->cfg, &rc_.hub);
    rc_.reload_crl = reload_crl_file;
    rc_.reload_arg = p;
    gw__catch_signals(1);
    gw_relay *r = NULL;
    rc = gw_relay_new(&p->shim, &rc_, &r);
    free(crl);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: relay: %s (see the log line above)\n", ss_strerror(rc));
        gw__lock_release(p);
        return rc == SS_EIO ? EXIT_STORAGE : EXIT_USAGE;
    }
    if (p->cfg.port_file[0] && write_port_file(p->cfg.port_file, gw_relay_port(r)) < 0) {
        gw_relay_destroy(r);
        gw__lock_release(p);
        return EXIT_USAGE;
    }
    rc = gw_relay_run(r, p->stop, p->reload);
    gw_relay_destroy(r);
    gw__lock_release(p);
    return rc < 0 ? EXIT_STORAGE : EXIT_OK;
}

/* `journal` of a hub: read-only (the running relay holds the lock and the
 * journal is append-only with an atomically replaced checkpoint). */
int gw__cmd_journal_hub(prog *p)
{
    gw_hubj h;
    gw_hubj_config hc;
    relay_hub_config(&p->cfg, &hc);
    int rc = gw_hubj_open(&h, &p->shim, &hc, 1);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: hub journal %s: %s\n", p->cfg.journal, ss_strerror(rc));
        return EXIT_STORAGE;
    }
    gw_hubj_stats st;
    gw_hubj_stats_get(&h, &st);
    uint64_t total = 0;
    for (uint32_t o = 0; o < h.norigins; o++)
        total += gw_hubj_pending(&h, o);
    printf("hub journal:        %s (relay mode)\n", p->cfg.journal);
    printf("pending:            %" PRIu64
           " change(s) in %u envelope(s) not yet committed upstream\n",
           total, st.records);
    printf("capacity used:      %" PRIu64 " of %" PRIu64 " bytes (%.1f%%) in %u segment(s)\n",
           st.used_bytes, st.capacity,
           st.capacity ? 100.0 * (double)st.used_bytes / (double)st.capacity : 0.0, st.segments);
    printf("full refusals:      %" PRIu64 " (this open)\n", st.full_refusals);
    printf("checksum failures:  %" PRIu64 " (lost envelopes: %" PRIu64 ")\n", st.crc_failures,
           st.lost_records);
    printf("origins:            %u\n", st.origins);
    printf("  %-24s %10s %10s %12s %12s %8s\n", "origin", "pending", "envelopes", "accepted",
           "upstream", "refused");
    for (uint32_t o = 0; o < h.norigins; o++) {
        const gw_hub_origin *g = &h.origins[o];
        printf("  %-24s %10" PRIu64 " %10u %12" PRIu64 " %12" PRIu64 " %8" PRIu64 "\n", g->id,
               gw_hubj_pending(&h, o), g->nrecs, g->accepted, g->committed, g->refused);
    }
    printf("refused upstream (newest last):\n");
    (void)gw_hubj_refused_walk(&h, gw__print_refused, NULL);
    gw_hubj_free(&h);
    return EXIT_OK;
}
