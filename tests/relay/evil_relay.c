/* evil_relay.c - a TAMPERING relay for the tests (never shipped): the real
 * hub engine (gw_relay) with a forward hook that, depending on --mode,
 *   flip    sends a copy of the first envelope with one body byte flipped
 *           (then the honest envelope),
 *   replay  sends a copy of the first envelope re-labelled as the range
 *           that follows it (then the honest one),
 *   drop    never forwards the second envelope of each origin (the daemon
 *           must report the gap),
 *   forge   sends, before the first envelope of an origin, an envelope it
 *           made itself for that origin and site, signed with its own key.
 * Everything else is the production relay. The daemon must refuse and audit
 * each tampering, and the honest data must still arrive.
 * usage: evil_relay --mode M --journal DIR --ca F --cert F --key F --crl F
 *                   --server HOST:PORT --listen-port-file F */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fws/posix.h"
#include "gw/relay.h"
#include "gw/sign.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/frame.h"
#include "proto/hlc.h"
#include "proto/schema.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

typedef struct evil {
    const char *mode;
    gw_signer signer;
    char done_first[16][SS_ID_MAX + 1];
    int ndone;
    char target[SS_ID_MAX + 1];
    uint64_t first1, first2;
    uint8_t *scratch; /* SCRATCH bytes: the altered copies */
} evil;

#define SCRATCH (1u << 20)

static int first_time(evil *e, const char *origin)
{
    for (int i = 0; i < e->ndone; i++)
        if (strcmp(e->done_first[i], origin) == 0)
            return 0;
    if (e->ndone < 16)
        snprintf(e->done_first[e->ndone++], SS_ID_MAX + 1, "%s", origin);
    return 1;
}

static int forge(evil *e, gw_relay *r, const gw_relay_fwd *f)
{
    ss_envelope env;
    if (ss_envelope_parse(f->payload + f->env_off, f->len - f->env_off, &env) < 0)
        return -1;
    /* the site of the origin's first change, copied from the honest body */
    const char *p = strstr((const char *)env.body, "\"site\":\"");
    char site[SS_ID_MAX + 1];
    if (!p || sscanf(p + 8, "%64[a-z0-9._-]", site) != 1)
        return -1;
    char body[1024];
    int bl = snprintf(body, sizeof(body),
                      "[{\"seq\":%llu,\"hlc\":\"%016llx\",\"collection\":\"site_status\","
                      "\"key\":\"%s\",\"site\":\"%s\",\"op\":\"update\","
                      "\"fields\":{\"alert_level\":\"normal\",\"note\":\"forged-by-relay\"}}]",
                      (unsigned long long)env.first_seq,
                      (unsigned long long)(ss_hlc_make(1700000000000ull, 0)), site, site);
    int hl =
        ss_envelope_write_header(e->scratch, SCRATCH, f->origin, env.first_seq, 1, (uint32_t)bl, 0);
    if (hl < 0)
        return -1;
    memcpy(e->scratch + hl, body, (size_t)bl);
    int tl = gw_sign_envelope(&e->signer, e->scratch, (size_t)hl + (size_t)bl,
                              SCRATCH - (size_t)hl - (size_t)bl);
    if (tl < 0)
        return -1;
    fprintf(stderr, "evil_relay: forged envelope origin=%s seq=%llu site=%s\n", f->origin,
            (unsigned long long)env.first_seq, site);
    return gw_relay_up_inject(r, SS_FRAME_BATCH, 0, e->scratch, (size_t)(hl + bl + tl));
}

static int hook(void *arg, gw_relay *r, gw_relay_fwd *f)
{
    evil *e = arg;
    if (strcmp(e->mode, "drop") == 0) {
        /* The first origin seen loses its second envelope, every time it is
         * offered: the daemon must see (and report) the hole. */
        if (!e->target[0])
            snprintf(e->target, sizeof(e->target), "%s", f->origin);
        if (strcmp(e->target, f->origin) != 0)
            return GW_RELAY_FWD_SEND;
        if (e->first1 == 0)
            e->first1 = f->first;
        else if (e->first2 == 0 && f->first != e->first1)
            e->first2 = f->first;
        if (e->first2 != 0 && f->first == e->first2) {
            fprintf(stderr, "evil_relay: dropped origin=%s first=%llu\n", f->origin,
                    (unsigned long long)f->first);
            return GW_RELAY_FWD_SKIP;
        }
        return GW_RELAY_FWD_SEND;
    }
    if (!first_time(e, f->origin))
        return GW_RELAY_FWD_SEND;
    if (f->len > SCRATCH)
        return GW_RELAY_FWD_SEND;
    if (strcmp(e->mode, "flip") == 0) {
        memcpy(e->scratch, f->payload, f->len);
        ss_envelope env;
        if (ss_envelope_parse(e->scratch + f->env_off, f->len - f->env_off, &env) == 0) {
            /* inside a title: the JSON stays valid, only the signature
             * can tell */
            uint8_t *b = (uint8_t *)env.body;
            const char *t = strstr((const char *)b, "\"title\":\"");
            size_t at = t ? (size_t)(t - (const char *)b) + 9 : env.body_len / 2;
            b[at] ^= 0x01;
            fprintf(stderr, "evil_relay: flipped a body byte origin=%s first=%llu\n", f->origin,
                    (unsigned long long)f->first);
            (void)gw_relay_up_inject(r, SS_FRAME_BATCH, f->flags, e->scratch, f->len);
        }
    } else if (strcmp(e->mode, "replay") == 0) {
        memcpy(e->scratch, f->payload, f->len);
        ss_envelope env;
        if (ss_envelope_parse(e->scratch + f->env_off, f->len - f->env_off, &env) == 0) {
            /* the same envelope presented as the range that follows it */
            uint8_t *h = e->scratch + f->env_off + 3 + strlen(env.origin);
            uint64_t nf = env.first_seq + env.count;
            for (int i = 7; i >= 0; i--, nf >>= 8)
                h[i] = (uint8_t)nf;
            fprintf(stderr, "evil_relay: replayed origin=%s first=%llu as %llu\n", f->origin,
                    (unsigned long long)f->first, (unsigned long long)(env.first_seq + env.count));
            (void)gw_relay_up_inject(r, SS_FRAME_BATCH, f->flags, e->scratch, f->len);
        }
    } else if (strcmp(e->mode, "forge") == 0) {
        (void)forge(e, r, f);
    }
    return GW_RELAY_FWD_SEND;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = malloc(1 << 20);
    size_t n = b ? fread(b, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (b)
        b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *journal = NULL, *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL,
               *server = NULL, *port_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--mode"))
            mode = v;
        else if (!strcmp(k, "--journal"))
            journal = v;
        else if (!strcmp(k, "--ca"))
            ca = v;
        else if (!strcmp(k, "--cert"))
            cert = v;
        else if (!strcmp(k, "--key"))
            key = v;
        else if (!strcmp(k, "--crl"))
            crl = v;
        else if (!strcmp(k, "--server"))
            server = v;
        else if (!strcmp(k, "--listen-port-file"))
            port_file = v;
    }
    if (!mode || !journal || !ca || !cert || !key || !crl || !server || !port_file) {
        fprintf(stderr, "usage: evil_relay --mode flip|replay|drop|forge --journal DIR --ca F "
                        "--cert F --key F --crl F --server HOST:PORT --listen-port-file F\n");
        return 2;
    }
    char uhost[256];
    uint16_t uport = 0;
    if (gw_parse_hostport(server, uhost, sizeof(uhost), &uport) < 0)
        return 2;
    size_t crl_len = 0;
    char *ca_pem = slurp(ca, NULL), *cert_pem = slurp(cert, NULL), *key_pem = slurp(key, NULL),
         *crl_buf = slurp(crl, &crl_len);
    if (!ca_pem || !cert_pem || !key_pem || !crl_buf)
        return 1;
    fws shim;
    fws_posix *px = NULL;
    fws_posix_config pc = { journal, FWS_LOG_INFO, "evil_relay" };
    if (fws_posix_new(&pc, &px, &shim) < 0)
        return 1;
    evil e;
    memset(&e, 0, sizeof(e));
    e.mode = mode;
    e.scratch = malloc(SCRATCH);
    if (!e.scratch)
        return 1;
    gw_signer_init(&e.signer);
    if (gw_signer_setup(&e.signer, &shim, cert_pem, key_pem) < 0)
        return 1;
    gw_relay_config c;
    memset(&c, 0, sizeof(c));
    c.ca_pem = ca_pem;
    c.cert_pem = cert_pem;
    c.key_pem = key_pem;
    c.crl = (const uint8_t *)crl_buf;
    c.crl_len = crl_len;
    c.listen_host = "127.0.0.1";
    c.up_host = uhost;
    c.up_port = uport;
    c.up_name = uhost;
    c.max_conns = 16;
    c.window = 8;
    c.max_frame = 256 << 10;
    c.handshake_timeout_ms = 10000;
    c.io_timeout_ms = 30000;
    c.ping_interval_ms = 10000;
    c.idle_timeout_ms = 120000;
    c.backoff_min_ms = 100;
    c.backoff_max_ms = 1000;
    gw_hubj_config_default(&c.hub);
    c.hub.capacity = 64u << 20;
    c.forward_hook = hook;
    c.hook_arg = &e;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    gw_relay *r = NULL;
    int rc = gw_relay_new(&shim, &c, &r);
    if (rc < 0) {
        fprintf(stderr, "evil_relay: %s\n", ss_strerror(rc));
        return 1;
    }
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
    FILE *pf = fopen(tmp, "w");
    if (pf) {
        fprintf(pf, "%u\n", (unsigned)gw_relay_port(r));
        fclose(pf);
        rename(tmp, port_file);
    }
    rc = gw_relay_run(r, &stop, NULL);
    gw_relay_destroy(r);
    gw_signer_free(&e.signer);
    free(e.scratch);
    fws_posix_destroy(px);
    free(ca_pem);
    free(cert_pem);
    free(key_pem);
    free(crl_buf);
    return rc < 0 ? 1 : 0;
}
