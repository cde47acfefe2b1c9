/* sd_penalty.c - the daemon's side of the per-address penalty box for failed
 * TLS handshakes: keys from the peer's sockaddr and the daemon's
 * configuration over proto's table (proto/src/penalty.c, where the design
 * and the reasons live). The listener closes a penalised address's
 * connections at accept, before any TLS work. */
#include <assert.h>
#include <string.h>

#include <netinet/in.h>

#include "proto/err.h"
#include "sd_net.h"

int sd__penalty_key(const struct sockaddr *sa, sd_addr_key *k)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        ss_penalty_key_v4(k, (const uint8_t *)&in->sin_addr);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        ss_penalty_key_v6(k, in6->sin6_addr.s6_addr);
        return 0;
    }
    memset(k, 0, sizeof *k);
    return SS_EINVAL;
}

void sd__penalty_init(sd_penalty *p, uint64_t limit, uint64_t window_ms, uint64_t penalty_ms,
                      uint64_t seed)
{
    /* The configuration bounds limit far below 2^32; a larger one could
     * never be reached anyway. */
    ss_penalty_cfg cfg = { .slots = SD_PENALTY_SLOTS,
                           .limit = limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit,
                           .window_ms = window_ms,
                           .penalty_ms = penalty_ms,
                           .seed = seed };
    memset(p, 0, sizeof *p);
    int rc = ss_penalty_init(&p->t, p->mem, sizeof p->mem, &cfg);
    /* Our own invariant: a constant power-of-two size in memory sized for it. */
    assert(rc == 0);
    (void)rc;
}

int sd__penalty_fail(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint64_t *fails)
{
    uint32_t n = 0;
    int r = ss_penalty_fail(p->t, k, now, &n);
    *fails = n;
    p->penalised += (uint64_t)r;
    return r;
}

uint64_t sd__penalty_check(sd_penalty *p, const sd_addr_key *k, uint64_t now, uint32_t *nrefused)
{
    return ss_penalty_check(p->t, k, now, nrefused);
}
