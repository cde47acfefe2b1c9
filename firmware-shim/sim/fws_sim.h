/* fws_sim.h - a deterministic simulation of the firmware shim for tests: RAM
 * storage whose writes are volatile until sync, power cuts at any mutating
 * operation (with torn writes), injected I/O errors and a capacity limit, a
 * virtual clock, and an in-memory TCP-like network with scripted faults.
 *
 * Everything random (entropy, torn-write garbage, the outcome of a rename
 * interrupted by a cut) comes from a PRNG seeded by the config: the same seed
 * and the same calls give a byte-identical run. There is no global state and
 * no threads; blocking waits let the test run other simulated nodes through
 * an idle hook (see fws_sim_set_idle_hook).
 *
 * A "world" is one virtual clock and one network. Each fws_sim is one node of
 * a world with its own storage, power state, wall-clock offset, PRNG and log;
 * fws_sim_new with cfg->world == NULL creates a new world, with cfg->world set
 * it joins that node's world (so a gateway, a hub and a fake daemon can talk
 * over the simulated network while each has its own flash and power). World
 * functions (clock, network, idle hook) may be called on any of its nodes.
 *
 * Storage model (within the contract of fws.h): each file has current bytes
 * and durable bytes, the durable bytes always being a prefix of the current
 * ones. append() grows the current bytes; sync() makes them durable;
 * open(CREATE) of a new file, truncate(), rename() and remove() are durable on
 * return. A power cut sets every file back to its durable bytes.
 *
 * Mutating operations are numbered 1, 2, 3, ... per node across the node's
 * whole life (not reset by power cuts): append, sync, truncate, rename,
 * remove, and open(CREATE) that creates a file. An operation's number is
 * taken once its handle and arguments passed the cheap checks (a stale handle
 * or a powered-off node does not consume a number), before its outcome is
 * known (a remove of a missing file still counts). */
#ifndef FWS_SIM_H
#define FWS_SIM_H

#include "fws/fws.h"

typedef struct fws_sim fws_sim; /* one node, opaque */

/* How the in-flight append is torn by a cut (fws_sim_set_cut_at). */
typedef enum fws_sim_tear {
    FWS_SIM_TEAR_TRUNC = 0,  /* the first tear_bytes land intact */
    FWS_SIM_TEAR_GARBAGE = 1 /* they land, but the last min(tear_bytes,
                                FWS_SIM_GARBAGE_MAX) of them are corrupted:
                                each is XORed with a seeded non-zero byte, so
                                it always differs from what was written */
} fws_sim_tear;

#define FWS_SIM_GARBAGE_MAX 16

/* Log sink: receives each line (already formatted, no newline). */
typedef void (*fws_sim_log_fn)(void *arg, int level, const char *line);

typedef struct fws_sim_config {
    uint64_t seed;           /* PRNG seed of this node */
    fws_sim *world;          /* NULL: new world; else join that node's world */
    uint64_t capacity_bytes; /* storage limit (sum of current file sizes);
                                0: 1 GiB */
    int enospc_prefix;       /* nonzero: an append refused for space first
                                writes the prefix that fits (allowed by the
                                contract: the caller must truncate back);
                                0: it writes nothing */
    int64_t wall_start_ms;   /* wall clock at mono 0 (new world only; per node
                                it is then skewed by fws_sim_set_wall_offset);
                                0: 1700000000000 (Nov 2023) */
    uint32_t sndbuf_bytes;   /* default send buffer of each direction of a new
                                connection; 0: 65536 */
    int log_level;           /* lines above this level are dropped uncounted */
    fws_sim_log_fn log_sink; /* NULL: lines are counted and dropped (quiet) */
    void *log_arg;
} fws_sim_config;

/* Creates a node and fills *shim for use with the fws_* wrappers. cfg may be
 * NULL (seed 0, new world, defaults). Returns 0 with *out, FWS_EINVAL (bad
 * config) or FWS_ENOMEM. A world lives until its last node is destroyed. */
int fws_sim_new(const fws_sim_config *cfg, fws_sim **out, fws *shim);
/* Frees the node, its storage, and every file and socket handle it handed
 * out that was not closed (those pointers become invalid); its connections
 * are reset for their peers. Accepts NULL. */
void fws_sim_destroy(fws_sim *sim);

/* --- power --- */

/* Power loss and restart of this node, now: every file goes back to its
 * durable bytes (after an armed cut fired, the torn prefix it landed is part
 * of them), every file and socket handle of the node becomes stale (ops on it
 * return FWS_EPOWER; fws_close/fws_sock_close still free it), its listeners
 * stop and its connections are reset for their peers. Storage works again on
 * return. Disarms fws_sim_set_cut_at. */
void fws_sim_power_cut(fws_sim *sim);
/* Restart without power loss (a process crash or reboot): handles and sockets
 * are dropped as in fws_sim_power_cut, but data that was appended and not
 * synced stays (the OS had it). If an armed cut has fired, the power is gone
 * and this is exactly fws_sim_power_cut. */
void fws_sim_reboot(fws_sim *sim);
/* Arms a power cut at mutating operation number n (absolute, compare
 * fws_sim_ops; 0 disarms). When operation n is attempted the node loses
 * power: that operation returns FWS_EPOWER, and so does every storage
 * operation after it until fws_sim_power_cut or fws_sim_reboot.
 *  - append: min(tear_bytes, len) bytes of it land per tear_mode and, together
 *    with any earlier unsynced bytes of the same file (which precede them on
 *    the media), become durable; if that is 0 bytes the file keeps only its
 *    durable bytes. Other files lose their unsynced bytes.
 *  - rename: happens or not, atomically, by a seeded coin.
 *  - sync, truncate, remove, create: do not happen.
 * Returns 0 or FWS_EINVAL (bad mode). */
int fws_sim_set_cut_at(fws_sim *sim, uint64_t n, size_t tear_bytes, fws_sim_tear tear_mode);
/* 1 if an armed cut has fired and the node waits for power_cut/reboot. */
int fws_sim_powered_off(const fws_sim *sim);
/* Number of mutating operations numbered so far. */
uint64_t fws_sim_ops(const fws_sim *sim);

/* --- storage faults --- */

/* Makes mutating operation n fail with err (a negative fws code, e.g.
 * FWS_EIO) without effect. persistent == 0: only operation n; otherwise
 * operation n and every later one, until fws_sim_clear_faults. Replaces any
 * earlier fault. Returns 0 or FWS_EINVAL. */
int fws_sim_fail_op(fws_sim *sim, uint64_t n, int err, int persistent);
void fws_sim_clear_faults(fws_sim *sim);
/* Changes the storage limit (bytes; 0: 1 GiB). Existing data is kept even
 * if above it; further growth fails with FWS_ENOSPC. */
void fws_sim_set_capacity(fws_sim *sim, uint64_t bytes);
/* Bytes in use: the sum of the current sizes of all files. */
uint64_t fws_sim_used(const fws_sim *sim);

typedef struct fws_sim_stats {
    uint64_t ops;            /* mutating operations numbered */
    uint64_t appends;        /* appends that succeeded */
    uint64_t bytes_appended; /* bytes they wrote */
    uint64_t syncs;          /* syncs that succeeded */
    uint64_t truncates, renames, removes, creates;
    uint64_t reads;
    uint64_t faults;     /* operations failed by fws_sim_fail_op */
    uint64_t enospc;     /* operations refused for space */
    uint64_t power_cuts; /* fws_sim_power_cut calls (and reboots after a cut) */
    uint64_t log_lines;  /* lines at or below log_level */
} fws_sim_stats;
void fws_sim_get_stats(const fws_sim *sim, fws_sim_stats *out);

/* Test access to storage that bypasses the shim (no op numbering, no
 * faults, works while powered off). durable != 0 reads the durable bytes,
 * else the current ones. Copies up to cap bytes; returns the file's full size
 * in that view (may exceed cap), or FWS_ENOENT. */
int64_t fws_sim_peek(const fws_sim *sim, const char *name, int durable, void *buf, size_t cap);
/* Number of files. */
int fws_sim_file_count(const fws_sim *sim);
/* Name of file i (0 <= i < fws_sim_file_count) in a stable order (creation
 * order; a rename keeps the source's place), or NULL. Valid until the next
 * storage change. */
const char *fws_sim_file_name(const fws_sim *sim, int i);

/* Called each time a mutating operation is numbered, before its outcome
 * (cut, fault, effect) is decided: n is its number, op one of "append",
 * "sync", "truncate", "rename", "remove", "create". Lets a reference run
 * record the durable state before every operation, to compare with what a
 * cut at that operation leaves. The hook must not call the node's storage
 * operations (fws_sim_peek and fws_sim_file_name are fine). NULL removes. */
typedef void (*fws_sim_op_fn)(void *arg, uint64_t n, const char *op);
void fws_sim_set_op_hook(fws_sim *sim, fws_sim_op_fn fn, void *arg);

/* --- clock (world) --- */

/* Advances the world's virtual clock by ms (mono and every node's wall).
 * Does not call the idle hook. The clock moves only through this, sleep_ms,
 * and blocking recv/poll/send_all waits. */
void fws_sim_advance(fws_sim *sim, uint32_t ms);
/* Skews this node's wall clock: wall = wall_start + mono + offset_ms. May be
 * negative; mono is never affected. */
void fws_sim_set_wall_offset(fws_sim *sim, int64_t offset_ms);

/* Called (world-wide) whenever a node's recv, poll or sleep would wait, so
 * the test can run the other simulated nodes (e.g. step a fake server with
 * timeout-0 calls). It is not re-entered: waits inside the hook skip it and
 * just advance the clock, so hooks should use timeout 0. fn NULL removes it.
 * A wait that still has nothing ready after the hook advances the clock to
 * the next scheduled network event or its deadline, calls the hook again,
 * and so on. */
typedef void (*fws_sim_idle_fn)(void *arg);
void fws_sim_set_idle_hook(fws_sim *sim, fws_sim_idle_fn fn, void *arg);
uint64_t fws_sim_idle_calls(const fws_sim *sim);

/* --- network (world) ---
 * listen(host, port) binds the port for every host string; connect(any host,
 * port) reaches the listener on that port, or fails with FWS_ECONNREFUSED.
 * Listening on port 0 picks a free port from 40000 up. Each connection gets
 * an id (1, 2, 3, ... in the world, in connect order) and two directions,
 * FWS_SIM_C2S (connecting side to accepting side) and FWS_SIM_S2C. Bytes are
 * delivered in order; a reset connection still delivers the bytes sent
 * before the reset, then reports FWS_ECONNRESET; a closed side gives its
 * peer an orderly FWS_ECLOSED after the remaining bytes. */
#define FWS_SIM_C2S 0
#define FWS_SIM_S2C 1

/* Scripted behaviour of one connection. All zero: a perfect link. */
typedef struct fws_sim_link {
    uint32_t delay_ms[2]; /* delivery delay per direction, virtual ms */
    uint32_t sndbuf[2];   /* send buffer cap per direction (bytes queued and
                             not yet read); 0: the config's default. A full
                             buffer makes send partial, then FWS_EAGAIN */
    int cut[2];           /* nonzero: reset the connection once cut_after[d]
                             bytes have been sent in direction d (send accepts
                             at most up to that point; 0 is allowed) */
    uint64_t cut_after[2];
    int drop;           /* nonzero: reset the connection when the world's
                           mono clock reaches drop_at_ms */
    int64_t drop_at_ms; /* absolute virtual mono time */
} fws_sim_link;

/* Link for every new connection (NULL: perfect link). */
void fws_sim_net_set_default_link(fws_sim *sim, const fws_sim_link *link);
/* Link for the next connection only (then the default applies again); for
 * "break the first session at byte k, let the retry succeed" loops. */
void fws_sim_net_set_next_link(fws_sim *sim, const fws_sim_link *link);
/* Replaces the link of a live connection; byte counts already sent count
 * toward cut_after. Returns 0 or FWS_ENOENT. */
int fws_sim_net_set_link(fws_sim *sim, uint64_t conn_id, const fws_sim_link *link);
/* Resets a live connection now. Returns 0 or FWS_ENOENT. */
int fws_sim_net_reset(fws_sim *sim, uint64_t conn_id);
/* The next n connect calls fail with FWS_ECONNREFUSED. */
void fws_sim_net_refuse_next(fws_sim *sim, unsigned n);
/* Connect to this port (0: none) never completes: it waits its whole timeout
 * in virtual time, then fails with FWS_ETIMEDOUT. */
void fws_sim_net_blackhole(fws_sim *sim, uint16_t port);
/* Id of the connection of a stream socket (0 for a listener or a stale
 * socket). */
uint64_t fws_sim_sock_conn_id(const fws_sim *sim, const fws_sock *sock);
/* Id of the most recent connection in the world (0: none yet). */
uint64_t fws_sim_net_last_conn(const fws_sim *sim);
/* Bytes sent so far in direction d of a connection, or -1 if unknown. */
int64_t fws_sim_net_sent(const fws_sim *sim, uint64_t conn_id, int dir);

#endif
