/* fws.h - the firmware shim: the gateway's only door to the machine
 * (clocks, entropy, storage, network, log). A const table of function
 * pointers with a context, in the manner of sqlite3_vfs and littlefs's
 * lfs_config, so the gateway core can run on Linux (posix/), in a
 * deterministic simulation (sim/), or on an RTOS port.
 *
 * Core code never calls the table directly: it calls the fws_* wrappers
 * below, which check arguments and count operations. */
#ifndef FWS_H
#define FWS_H

#include <stddef.h>
#include <stdint.h>

#define FWS_VERSION 1

/* X(NAME, value, "message"): shim error codes (negative). */
#define FWS_ERRNO_MAP(X)                             \
    X(EIO, -1, "input/output error")                 \
    X(ENOSPC, -2, "no space left on storage")        \
    X(ENOENT, -3, "no such file")                    \
    X(EEXIST, -4, "file exists")                     \
    X(EINVAL, -5, "invalid argument")                \
    X(ENOMEM, -6, "out of memory")                   \
    X(ETIMEDOUT, -7, "timed out")                    \
    X(ECONNREFUSED, -8, "connection refused")        \
    X(ECONNRESET, -9, "connection reset")            \
    X(ECLOSED, -10, "connection closed by peer")     \
    X(EPOWER, -11, "power lost (simulation)")        \
    X(EADDR, -12, "address invalid or unresolvable") \
    X(EAGAIN, -13, "try again")                      \
    X(ENOTSUP, -14, "not supported by this shim")    \
    X(EPERM, -15, "permission denied")

typedef enum fws_err {
    FWS_OK = 0,
#define FWS__ERR_ENUM(name, val, msg) FWS_##name = (val),
    FWS_ERRNO_MAP(FWS__ERR_ENUM)
#undef FWS__ERR_ENUM
} fws_err;

const char *fws_strerror(int err);

typedef enum fws_level {
    FWS_LOG_ERROR = 0,
    FWS_LOG_WARN = 1,
    FWS_LOG_INFO = 2,
    FWS_LOG_DEBUG = 3
} fws_level;

/* Open flags. */
#define FWS_O_CREATE 0x1 /* create if missing */
#define FWS_O_EXCL   0x2 /* with CREATE: fail with FWS_EEXIST if it exists */

#define FWS_NAME_MAX 63 /* storage names: [A-Za-z0-9._-], no '/' */

typedef struct fws_file fws_file; /* an open storage file, shim-defined */
typedef struct fws_sock fws_sock; /* a connection or listener, shim-defined */

/* Poll events. */
#define FWS_POLL_IN  0x1
#define FWS_POLL_OUT 0x2

typedef struct fws_pollfd {
    fws_sock *sock;
    int events;  /* FWS_POLL_IN | FWS_POLL_OUT */
    int revents; /* set by poll: ready events, or FWS_POLL_IN on error/EOF */
} fws_pollfd;

typedef struct fws_ops {
    uint32_t version;  /* FWS_VERSION */
    uint32_t ops_size; /* sizeof(fws_ops), so the table can grow (named apart from
                          the size() method below) */

    /* --- clocks and entropy --- */
    /* Wall clock, Unix milliseconds. May jump (NTP, operator, bad RTC). */
    int64_t (*wall_ms)(void *ctx);
    /* Monotonic milliseconds since an arbitrary origin; never goes back. */
    int64_t (*mono_ms)(void *ctx);
    void (*sleep_ms)(void *ctx, uint32_t ms);
    /* Fills buf with len bytes of cryptographic-quality entropy (the only
     * source mbed TLS's DRBG is seeded from). Returns 0 or FWS_EIO. */
    int (*entropy)(void *ctx, uint8_t *buf, size_t len);

    /* --- storage: a flat namespace of named files ---
     * Durability contract (what survives a power cut):
     *  - bytes appended survive only once sync() on that file has returned 0;
     *    a cut before that may keep none, a prefix, or a torn prefix of them;
     *  - open(CREATE) of a new file, rename(), remove() and truncate() are
     *    durable when they return 0 (the posix port fsyncs the directory);
     *  - rename() atomically replaces the target: after a cut either the old
     *    or the new content is found, never a mix. */
    int (*open)(void *ctx, const char *name, int flags, fws_file **out);
    /* Reads up to len bytes at off. Returns bytes read (0 at end) or error. */
    int (*read)(void *ctx, fws_file *f, uint64_t off, void *buf, size_t len);
    /* Appends all len bytes at the end, or fails (FWS_ENOSPC, FWS_EIO) having
     * possibly written a prefix: the caller truncates back. Returns 0. */
    int (*append)(void *ctx, fws_file *f, const void *buf, size_t len);
    int (*sync)(void *ctx, fws_file *f);
    int (*size)(void *ctx, fws_file *f, uint64_t *out);
    int (*truncate)(void *ctx, fws_file *f, uint64_t len);
    void (*close)(void *ctx, fws_file *f);
    int (*rename)(void *ctx, const char *from, const char *to);
    /* Returns 0, or FWS_ENOENT if missing. */
    int (*remove)(void *ctx, const char *name);
    /* Calls cb for each file name (order unspecified); a non-zero return from
     * cb stops the walk and is returned. */
    int (*list)(void *ctx, int (*cb)(void *arg, const char *name), void *arg);

    /* --- network: TCP-like byte streams --- */
    /* host: a name or address literal. Returns 0 with *out, or
     * FWS_ETIMEDOUT / FWS_ECONNREFUSED / FWS_EADDR / FWS_EIO. */
    int (*connect)(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms, fws_sock **out);
    /* Sends up to len bytes; returns bytes sent (> 0), FWS_EAGAIN if the send
     * buffer is full, or FWS_ECONNRESET / FWS_ECLOSED. Never blocks. */
    int (*send)(void *ctx, fws_sock *s, const void *buf, size_t len);
    /* Receives up to len bytes, waiting at most timeout_ms (0: do not wait).
     * Returns bytes (> 0), FWS_ETIMEDOUT, FWS_ECLOSED (orderly EOF) or
     * FWS_ECONNRESET. */
    int (*recv)(void *ctx, fws_sock *s, void *buf, size_t len, uint32_t timeout_ms);
    void (*sock_close)(void *ctx, fws_sock *s);
    /* Relay mode: listen on host:port (port 0 picks one; *bound_port gets it). */
    int (*listen)(void *ctx, const char *host, uint16_t port, fws_sock **out, uint16_t *bound_port);
    /* Accepts one pending connection; FWS_EAGAIN if none. peer gets "ip:port". */
    int (*accept)(void *ctx, fws_sock *listener, fws_sock **out, char *peer, size_t peer_cap);
    /* Waits until one of the sockets is ready or timeout_ms passes. Returns the
     * number ready (0 on timeout) or an error. */
    int (*poll)(void *ctx, fws_pollfd *fds, int n, uint32_t timeout_ms);

    /* --- log: one line per call, no trailing newline --- */
    void (*log)(void *ctx, int level, const char *line);

    /* --- added after version 1's first table; optional (HAS checks size) --- */
    /* Bytes handed to send() that the peer has not acknowledged yet (the
     * platform's send queue). A relay counts them against its output cap:
     * a peer that never reads otherwise fills kernel buffers of megabytes
     * before the relay's own queue grows. FWS_ENOTSUP where unknown. */
    int (*sock_outq)(void *ctx, fws_sock *s, size_t *out);
    /* Starts a connection without waiting for it, so that an event loop
     * (the hub's) keeps serving while the upstream link is slow or black-
     * holed. Returns 0 with *out connecting (poll it for FWS_POLL_OUT, then
     * ask connect_done) or the errors of connect. */
    int (*connect_start)(void *ctx, const char *host, uint16_t port, fws_sock **out);
    /* 0 once connected, FWS_EAGAIN while still connecting, or
     * FWS_ECONNREFUSED / FWS_EIO (close the socket). Never blocks. */
    int (*connect_done)(void *ctx, fws_sock *s);
} fws_ops;

/* A shim instance: the ops and their context. */
typedef struct fws {
    const fws_ops *ops;
    void *ctx;
} fws;

/* --- wrappers: argument checks, one place to add counters and faults --- */
int64_t fws_wall_ms(const fws *s);
int64_t fws_mono_ms(const fws *s);
void fws_sleep_ms(const fws *s, uint32_t ms);
int fws_entropy(const fws *s, uint8_t *buf, size_t len);

/* 0 if name is a valid storage name (see FWS_NAME_MAX; also: not starting
 * with '.', no ".." anywhere), else FWS_EINVAL. */
int fws_name_check(const char *name);
int fws_open(const fws *s, const char *name, int flags, fws_file **out);
int fws_read(const fws *s, fws_file *f, uint64_t off, void *buf, size_t len);
/* Reads exactly len bytes at off: FWS_EIO on a short read. */
int fws_read_full(const fws *s, fws_file *f, uint64_t off, void *buf, size_t len);
int fws_append(const fws *s, fws_file *f, const void *buf, size_t len);
int fws_sync(const fws *s, fws_file *f);
int fws_size(const fws *s, fws_file *f, uint64_t *out);
int fws_truncate(const fws *s, fws_file *f, uint64_t len);
void fws_close(const fws *s, fws_file *f);
int fws_rename(const fws *s, const char *from, const char *to);
int fws_remove(const fws *s, const char *name);
int fws_list(const fws *s, int (*cb)(void *arg, const char *name), void *arg);
/* Writes a whole small file atomically: temp file "<name>.tmp" (so name is
 * at most FWS_NAME_MAX - 4 bytes), sync, rename. Returns 0 or an error. */
int fws_write_atomic(const fws *s, const char *name, const void *buf, size_t len);

int fws_connect(const fws *s, const char *host, uint16_t port, uint32_t timeout_ms, fws_sock **out);
/* Starts a connection (connect_start); a shim without it connects here,
 * waiting up to timeout_ms, and the socket is then already connected. The
 * caller polls *out for FWS_POLL_OUT and calls fws_connect_done until it
 * stops answering FWS_EAGAIN, bounding the wait itself. */
int fws_connect_start(const fws *s, const char *host, uint16_t port, uint32_t timeout_ms,
                      fws_sock **out);
int fws_connect_done(const fws *s, fws_sock *sock);
int fws_send(const fws *s, fws_sock *sock, const void *buf, size_t len);
/* Sends all len bytes, waiting (poll) up to timeout_ms in total. Returns 0,
 * FWS_ETIMEDOUT (part may have been sent) or the send error. */
int fws_send_all(const fws *s, fws_sock *sock, const void *buf, size_t len, uint32_t timeout_ms);
int fws_recv(const fws *s, fws_sock *sock, void *buf, size_t len, uint32_t timeout_ms);
void fws_sock_close(const fws *s, fws_sock *sock);
int fws_listen(const fws *s, const char *host, uint16_t port, fws_sock **out, uint16_t *bound_port);
int fws_accept(const fws *s, fws_sock *listener, fws_sock **out, char *peer, size_t peer_cap);
int fws_poll(const fws *s, fws_pollfd *fds, int n, uint32_t timeout_ms);
/* *out = bytes sent but unacknowledged by the peer; FWS_ENOTSUP (and *out 0)
 * where the platform cannot tell. */
int fws_sock_outq(const fws *s, fws_sock *sock, size_t *out);

void fws_log(const fws *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
