/* main.c - sitesyncd, the central daemon: everything it does is in the sd
 * library (daemon/src/sd_daemon.c), so tests run the same wiring. */
#include "sd/daemon.h"

int main(int argc, char **argv)
{
    return sd_daemon_main(argc, argv, "sitesyncd");
}
