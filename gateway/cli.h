/* cli.h - what sitesync-gw's main.c shares with cli_relay.c, the relay-mode
 * commands that only a hub build carries (-DSITESYNC_GW_RELAY=ON): the
 * program context, the exit codes and the program-layer helpers (files, the
 * journal lock). Private to the program; no library includes it. */
#ifndef GW_CLI_H
#define GW_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "fws/posix.h"
#include "gw/config.h"
#include "proto/ident.h"

enum {
    EXIT_OK = 0,
    EXIT_USAGE = 1,    /* bad flags or configuration */
    EXIT_REFUSED = 2,  /* input refused (schema, site, journal full) */
    EXIT_LINK = 3,     /* sync: the link or the daemon failed; data stays pending */
    EXIT_REJECTED = 4, /* sync: drained, but the daemon refused changes */
    EXIT_STORAGE = 5,  /* journal storage error */
    EXIT_LOCKED = 6    /* the journal lock was not obtained in time */
};

typedef struct lock {
    int fd;
} lock;

typedef struct prog {
    gw_config cfg;
    fws shim;
    fws_posix *posix;
    lock lk;
    ss_ident ident;
    char *ca_pem, *cert_pem, *key_pem;
    size_t key_len;
    /* Set by main's signal handler: SIGTERM/SIGINT stop, SIGHUP reload. */
    volatile sig_atomic_t *stop, *reload;
} prog;

/* Reads a whole file (at most 64 MiB) into a NUL-terminated heap buffer the
 * caller frees. Returns 0 or -errno. */
int gw__read_file(const char *path, char **out, size_t *len);

/* Takes the exclusive journal lock <dir>/lock, polling up to timeout_ms.
 * Returns 0, EXIT_STORAGE or EXIT_LOCKED (the reason printed). */
int gw__lock_take(prog *p, const char *dir, uint64_t timeout_ms);
void gw__lock_release(prog *p);

/* Reads the certificate (and, with keys, the CA and the key) and derives the
 * node identity from it. Returns 0 or EXIT_USAGE (the reason printed). */
int gw__load_identity(prog *p, int with_keys);

/* Installs the SIGTERM/SIGINT (and, with hup, SIGHUP) handler. */
void gw__catch_signals(int hup);

/* Prints one refused-change line (a journal walk callback). */
int gw__print_refused(void *arg, const char *line);

/* Relay mode (cli_relay.c): `sitesync-gw relay`, and `journal` on a hub's
 * journal directory. Each returns an exit code. */
int gw__cmd_relay(prog *p);
int gw__cmd_journal_hub(prog *p);

#endif
