/* sim_pki.h - the certificates of the simulation's hub mode, made once per
 * process with the real sitesync-pki library (a CA, its CRL, the daemon,
 * the hub and every gateway), kept in memory as PEM. */
#ifndef SIM_PKI_H
#define SIM_PKI_H

#include <stddef.h>
#include <stdint.h>

#define SIM_PKI_GW 8

#define SIM_DAEMON_NAME "sim-daemon" /* DNS name in the daemon's certificate */
#define SIM_HUB_NAME    "sim-hub"    /* DNS name in the hub's certificate */
#define SIM_HUB_NODE    "hub-0"

typedef struct sim_pki {
    char dir[400];
    int64_t made_ms; /* wall time of creation (whole seconds): the hub-mode
                        simulation's clock starts here, inside every validity */
    char *ca, *crl;
    size_t crl_len;
    char *daemon_crt, *daemon_key;
    char *hub_crt, *hub_key;
    char *gw_crt[SIM_PKI_GW], *gw_key[SIM_PKI_GW];
} sim_pki;

/* Makes the PKI in a new directory under base (gateway i: node gw-i, sites
 * site-i and site-s; the hub carries all of them). Returns 0 or a negative
 * error with err. */
int sim_pki_make(sim_pki *p, const char *base, char *err, size_t cap);
/* Frees the PEM and removes the directory. */
void sim_pki_free(sim_pki *p);

#endif
