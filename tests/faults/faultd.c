/* faultd.c - sitesyncd for the I/O-fault tests: the daemon's own wiring
 * (sd_daemon_main, exactly what sitesyncd runs) with the fault-injecting
 * SQLite VFS of faultvfs.h registered first. It refuses to start without
 * FAULTVFS_CTL, the control file the test maps to arm and clear faults while
 * it runs. A test program only: sitesyncd itself never contains fault
 * injection. */
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "faultvfs.h"
#include "sd/daemon.h"

int main(int argc, char **argv)
{
    const char *ctl_path = getenv("FAULTVFS_CTL");
    if (!ctl_path || !ctl_path[0]) {
        fprintf(stderr, "faultd: FAULTVFS_CTL must name the fault control file\n");
        return 2;
    }
    fv_ctl *ctl = fv_ctl_map(ctl_path, 0);
    if (!ctl) {
        fprintf(stderr, "faultd: cannot map %s\n", ctl_path);
        return 2;
    }
    if (fv_register(ctl) != SQLITE_OK) {
        fprintf(stderr, "faultd: cannot register the fault VFS\n");
        return 2;
    }
    return sd_daemon_main(argc, argv, "faultd");
}
