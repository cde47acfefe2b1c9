/* posix.h - the Linux implementation of the firmware shim: storage is a
 * directory of files (fsync'd as the contract in fws.h says), the network is
 * BSD sockets, entropy is getrandom(2), the log is stderr. */
#ifndef FWS_POSIX_H
#define FWS_POSIX_H

#include "fws/fws.h"

typedef struct fws_posix fws_posix; /* opaque */

typedef struct fws_posix_config {
    const char *dir;     /* storage directory; created 0700 (with parents) if
                            missing; NULL: no storage (FWS_ENOTSUP) */
    int log_level;       /* lines above this level are dropped */
    const char *log_tag; /* prefix for log lines, e.g. "sitesync-gw" */
} fws_posix_config;

/* Creates the posix shim. Returns 0 with *out, or FWS_EIO / FWS_EPERM /
 * FWS_ENOMEM. Fills shim for use with the fws_* wrappers. */
int fws_posix_new(const fws_posix_config *cfg, fws_posix **out, fws *shim);
void fws_posix_destroy(fws_posix *p);

#endif
