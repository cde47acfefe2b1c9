/* sim_pki.c - one throwaway certificate authority for the simulation's hub
 * mode, made with pki/ exactly as an operator would with sitesync-pki. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "sim_pki.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pki/pki.h"
#include "proto/err.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int issue(sim_pki *p, ss_role role, const char *node, const char *const *sites, int nsites,
                 const char *dns, char **crt, char **key, char *err, size_t cap)
{
    char prefix[480], path[500];
    snprintf(prefix, sizeof(prefix), "%s/%s", p->dir, node);
    pki_issue_opts o;
    memset(&o, 0, sizeof(o));
    o.dir = p->dir;
    o.role = role;
    o.node = node;
    o.sites = sites;
    o.nsites = nsites;
    o.dns = dns ? &dns : NULL;
    o.ndns = dns ? 1 : 0;
    o.out_prefix = prefix;
    pki_issued out;
    int rc = pki_issue(&o, &out, err, cap);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "%s.crt", prefix);
    *crt = slurp(path, NULL);
    snprintf(path, sizeof(path), "%s.key", prefix);
    *key = slurp(path, NULL);
    if (!*crt || !*key) {
        snprintf(err, cap, "cannot read the files of %s", node);
        return SS_EIO;
    }
    return 0;
}

int sim_pki_make(sim_pki *p, const char *base, char *err, size_t cap)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "%s/sitesync-sim-pki-XXXXXX", base);
    if (!mkdtemp(p->dir)) {
        snprintf(err, cap, "mkdtemp under %s failed", base);
        p->dir[0] = '\0';
        return SS_EIO;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p->made_ms = (int64_t)ts.tv_sec * 1000;
    pki_init_opts io;
    memset(&io, 0, sizeof(io));
    io.dir = p->dir;
    io.name = "sitesync sim CA";
    int rc = pki_init(&io, err, cap);
    if (rc < 0)
        return rc;
    char path[500];
    snprintf(path, sizeof(path), "%s/%s", p->dir, PKI_CA_CERT_FILE);
    p->ca = slurp(path, NULL);
    snprintf(path, sizeof(path), "%s/%s", p->dir, PKI_CRL_FILE);
    p->crl = slurp(path, &p->crl_len);
    if (!p->ca || !p->crl) {
        snprintf(err, cap, "cannot read the CA or its CRL");
        return SS_EIO;
    }
    rc = issue(p, SS_ROLE_DAEMON, SIM_DAEMON_NAME, NULL, 0, SIM_DAEMON_NAME, &p->daemon_crt,
               &p->daemon_key, err, cap);
    if (rc < 0)
        return rc;
    char site_buf[SIM_PKI_GW + 1][16];
    const char *sites[SIM_PKI_GW + 1];
    for (int i = 0; i < SIM_PKI_GW; i++) {
        snprintf(site_buf[i], sizeof(site_buf[i]), "site-%d", i);
        sites[i] = site_buf[i];
    }
    snprintf(site_buf[SIM_PKI_GW], sizeof(site_buf[0]), "site-s");
    sites[SIM_PKI_GW] = site_buf[SIM_PKI_GW];
    rc = issue(p, SS_ROLE_RELAY, SIM_HUB_NODE, sites, SIM_PKI_GW + 1, SIM_HUB_NAME, &p->hub_crt,
               &p->hub_key, err, cap);
    for (int i = 0; rc == 0 && i < SIM_PKI_GW; i++) {
        char node[16];
        const char *gs[2] = { sites[i], sites[SIM_PKI_GW] };
        snprintf(node, sizeof(node), "gw-%d", i);
        rc = issue(p, SS_ROLE_GATEWAY, node, gs, 2, NULL, &p->gw_crt[i], &p->gw_key[i], err, cap);
    }
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

void sim_pki_free(sim_pki *p)
{
    free(p->ca);
    free(p->crl);
    free(p->daemon_crt);
    free(p->daemon_key);
    free(p->hub_crt);
    free(p->hub_key);
    for (int i = 0; i < SIM_PKI_GW; i++) {
        free(p->gw_crt[i]);
        free(p->gw_key[i]);
    }
    if (p->dir[0])
        (void)nftw(p->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    memset(p, 0, sizeof(*p));
}
