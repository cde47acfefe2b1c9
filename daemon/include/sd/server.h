/* server.h - sitesyncd's network front: the listener, the set of live
 * sessions, limits, signals (SIGTERM/SIGINT drain, SIGHUP reload) and
 * shutdown. Everything runs on one libuv loop; durable work goes to the
 * writer (writer.h). */
#ifndef SD_SERVER_H
#define SD_SERVER_H

#include <stddef.h>

#include <uv.h>

#include "sd/config.h"
#include "sd/log.h"
#include "sd/writer.h"

typedef struct sd_server sd_server; /* opaque */

/* File descriptors the daemon keeps for itself beyond one per connection
 * (listener, database, WAL, loop, signals, log), with room to spare. */
#define SD_SERVER_FD_RESERVE 64

/* Raises the soft RLIMIT_NOFILE to the hard limit (a session is one file
 * descriptor; 1024, a common soft default, is far below max_connections)
 * and logs the result (`fd_limit`). Warns (`fd_limit_low`) when
 * max_connections + SD_SERVER_FD_RESERVE does not fit: connections beyond
 * the limit then fail at accept. Returns the soft limit in force. Cannot
 * fail; call before sd_server_start. */
unsigned long long sd_server_raise_fd_limit(const sd_config *cfg, const sd_log *log);

/* Builds the TLS context and opens a read-only store handle for WELCOME
 * lookups. cfg, log and writer must outlive the server. Returns 0 with *out,
 * or an error with a message in err. Nothing is listening yet. */
int sd_server_new(uv_loop_t *loop, const sd_config *cfg, const sd_log *log, sd_writer *writer,
                  sd_server **out, char *err, size_t errcap);

struct sd_sig;
/* Origin signatures: installs the TLS context's trust store (CA + CRL) into
 * sig now and after every successful reload (which also clears its cache),
 * and keeps the CRL in DER for the CRL frames sent to relay peers after
 * WELCOME and after each reload. sig must outlive the server. Call before
 * sd_server_start. Returns 0, or an error with a message in err. */
int sd_server_set_sig(sd_server *s, struct sd_sig *sig, char *err, size_t errcap);

/* Binds and listens on cfg->listen, installs the signal handlers, writes
 * cfg->port_file if set. Returns 0 or an error (err says which). */
int sd_server_start(sd_server *s, char *err, size_t errcap);

/* The bound port (after start), or 0. */
int sd_server_port(const sd_server *s);

/* Graceful stop, as on SIGTERM: stop accepting, let sessions finish and
 * acknowledge their in-flight batches, send BYE, close them (cut after
 * drain_timeout_ms), stop the writer, then close the server's own handles.
 * done (optional) runs on the loop when all of that is over; afterwards
 * uv_run returns and uv_loop_close succeeds. Safe to call twice. */
void sd_server_shutdown(sd_server *s, void (*done)(void *arg), void *arg);

/* As on SIGHUP: rebuild the TLS context from the configured files (new
 * connections use it) and re-verify live sessions against the new CA/CRL,
 * closing those that no longer pass; the origin-signature verifier moves to
 * the new trust store (its cache cleared) and every live relay session gets
 * the new CRL. Returns 0, or the error building the
 * new context (the old one stays in use). */
int sd_server_reload(sd_server *s);

/* Live sessions. */
size_t sd_server_connections(const sd_server *s);

/* Frees the server after shutdown completed (or if it never started).
 * Accepts NULL. */
void sd_server_destroy(sd_server *s);

#endif
