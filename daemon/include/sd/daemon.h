/* daemon.h - the whole daemon behind one call, so that sitesyncd's main()
 * stays thin and test builds (tests/faults/faultd.c, with a fault-injecting
 * SQLite VFS registered first) run exactly the production wiring. */
#ifndef SD_DAEMON_H
#define SD_DAEMON_H

/* Parses the command line and config file (prog names the program in
 * messages and --help), then opens the store, starts the origin-signature
 * verifier, the group-commit writer and the TLS server on one libuv loop,
 * and runs until a SIGTERM/SIGINT drain completes. Ignores SIGPIPE for the
 * process. Returns the process exit code: 0 after a clean drain (or
 * --help/--print-config), 1 on a startup or shutdown failure, 2 for a bad
 * command line or configuration. */
int sd_daemon_main(int argc, char **argv, const char *prog);

#endif
