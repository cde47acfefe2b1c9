/* hr.h - helpers for the hostile-peer and TLS-profile tests of the relay
 * listener (`sitesync-gw relay`, a regional hub): a fresh PKI, sitesyncd as
 * the hub's upstream, the hub process on 127.0.0.1 with a port file, and a
 * look into the hub journal. Built on tests/daemon/tc.h and
 * tests/hostile/hx.h (linked, not copied). */
#ifndef HR_H
#define HR_H

#include <stdint.h>

#include "hx.h"
#include "tc.h"

/* The hub's certificate carries these sites: s0..s9 for the ten honest
 * gateways of hx_issue_honest, and the sites of the other tests' nodes. */
#define HR_HUB_SITES "s0,s1,s2,s3,s4,s5,s6,s7,s8,s9"

typedef struct hr_sys {
    tc_env e;
    tc_daemon d;   /* sitesyncd, the hub's upstream */
    tc_daemon hub; /* sitesync-gw relay: pid, port, log (db unused) */
    char journal[300];
} hr_sys;

/* PKI (with the hub's relay certificate), sitesyncd, then the hub with the
 * extra flags (NULL-terminated "--key", "value" list, or NULL). Nodes the
 * test needs are issued with tc_issue(&s->e, ...) before or after. */
void hr_start(hr_sys *s, const char *const *hub_extra);
/* Starts (or restarts) the hub against the daemon. */
void hr_hub_start(hr_sys *s, const char *const *extra);
/* SIGTERM to the hub: it must drain and exit 0 with event=relay_stop err=ok
 * and no error-level line; then the daemon likewise; then the directory is
 * removed. Under ASan the exit status carries LeakSanitizer's verdict. */
void hr_finish(hr_sys *s);
/* Lines of the hub log with needle. */
int hr_count(const hr_sys *s, const char *needle);
/* Waits until hr_count reaches want (up to timeout_ms); returns the count. */
int hr_wait_count(const hr_sys *s, const char *needle, int want, int timeout_ms);
/* The hub journal's `accepted` count for origin (0 if the origin is not
 * there at all), read with `sitesync-gw journal` beside the running hub. */
int64_t hr_journal_accepted(hr_sys *s, const char *origin);
/* Changes of origin the daemon has committed (0 if none). */
int64_t hr_daemon_committed(hr_sys *s, const char *origin);

#endif
