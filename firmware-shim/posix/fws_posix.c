/* fws_posix.c - the Linux firmware shim: storage is a directory of files
 * fsync'd as the contract in fws.h requires, clocks are clock_gettime,
 * entropy is getrandom(2), the network is non-blocking BSD sockets, and the
 * log is one line per event on stderr. */
#include "fws/posix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

/* A hub is reached by bursts of reconnecting gateways; a short backlog
 * drops their SYNs and turns a one-second outage into retry backoff. The
 * kernel caps this at net.core.somaxconn (4096 on Debian 12). */
#define LISTEN_BACKLOG 4096
#define TAG_MAX        64
#define POLL_STACK     16

struct fws_posix {
    int dirfd; /* -1: no storage configured */
    int log_level;
    char tag[TAG_MAX];
};

struct fws_file {
    int fd;
};

struct fws_sock {
    int fd;
    int listener;
    /* connect_start until connected: the addresses, and the next to try */
    struct addrinfo *ai_head;
    const struct addrinfo *ai_next;
};

/* --- errors --- */

static int map_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return FWS_ENOENT;
    case EEXIST:
        return FWS_EEXIST;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return FWS_ENOSPC;
    case EACCES:
    case EPERM:
    case EROFS:
        return FWS_EPERM;
    case ENOMEM:
    case ENOBUFS:
        return FWS_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
        return FWS_EINVAL;
    case ETIMEDOUT:
        return FWS_ETIMEDOUT;
    case ECONNREFUSED:
        return FWS_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
    case ENETRESET:
        return FWS_ECONNRESET;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return FWS_EAGAIN;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case ENETUNREACH:
    case EHOSTUNREACH:
        return FWS_EADDR;
    default:
        return FWS_EIO;
    }
}

static void px_log(void *ctx, int level, const char *line);

/* Translates errno at the boundary and logs the original code (debug), as
 * the house style asks. */
static int fail(struct fws_posix *p, const char *what, int e)
{
    char line[160];
    (void)snprintf(line, sizeof(line), "op=%s errno=%d", what, e);
    px_log(p, FWS_LOG_DEBUG, line);
    return map_errno(e);
}

/* --- clocks, entropy --- */

static int64_t ts_ms(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t px_wall_ms(void *ctx)
{
    (void)ctx;
    return ts_ms(CLOCK_REALTIME);
}

static int64_t px_mono_ms(void *ctx)
{
    (void)ctx;
    return ts_ms(CLOCK_MONOTONIC);
}

static void px_sleep_ms(void *ctx, uint32_t ms)
{
    (void)ctx;
    struct timespec req = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    struct timespec rem;
    /* Resume after signals; each retry sleeps only what is left. */
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

static int px_entropy(void *ctx, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(ctx, "getrandom", errno);
            return FWS_EIO;
        }
        done += (size_t)n;
    }
    return 0;
}

/* --- storage --- */

static int dir_sync(struct fws_posix *p)
{
    if (fsync(p->dirfd) != 0)
        return fail(p, "fsync(dir)", errno);
    return 0;
}

static int px_open(void *ctx, const char *name, int flags, fws_file **out)
{
    struct fws_posix *p = ctx;
    if (p->dirfd < 0)
        return FWS_ENOTSUP;
    fws_file *f = malloc(sizeof(*f));
    if (f == NULL)
        return FWS_ENOMEM;
    int created = 0;
    int fd = -1;
    if (flags & FWS_O_EXCL) {
        fd = openat(p->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
        created = fd >= 0;
    } else {
        fd = openat(p->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
        /* To know whether the directory must be synced, create separately;
         * a racing creator makes EEXIST, and then the plain open wins. */
        if (fd < 0 && errno == ENOENT && (flags & FWS_O_CREATE)) {
            fd = openat(p->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
            created = fd >= 0;
            if (fd < 0 && errno == EEXIST)
                fd = openat(p->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
        }
    }
    if (fd < 0) {
        int rc = fail(p, "open", errno);
        free(f);
        return rc;
    }
    if (created) {
        int rc = dir_sync(p);
        if (rc < 0) {
            close(fd);
            free(f);
            return rc;
        }
    }
    f->fd = fd;
    *out = f;
    return 0;
}

static int px_read(void *ctx, fws_file *f, uint64_t off, void *buf, size_t len)
{
    if (off > (uint64_t)INT64_MAX)
        return FWS_EINVAL;
    for (;;) {
        ssize_t n = pread(f->fd, buf, len, (off_t)off);
        if (n >= 0)
            return (int)n;
        if (errno != EINTR)
            return fail(ctx, "pread", errno);
    }
}

static int px_append(void *ctx, fws_file *f, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(f->fd, b + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(ctx, "write", errno);
        }
        if (n == 0)
            return FWS_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int px_sync(void *ctx, fws_file *f)
{
    if (fsync(f->fd) != 0)
        return fail(ctx, "fsync", errno);
    return 0;
}

static int px_size(void *ctx, fws_file *f, uint64_t *out)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return fail(ctx, "fstat", errno);
    *out = (uint64_t)st.st_size;
    return 0;
}

static int px_truncate(void *ctx, fws_file *f, uint64_t len)
{
    if (ftruncate(f->fd, (off_t)len) != 0)
        return fail(ctx, "ftruncate", errno);
    /* The contract makes truncate durable on return. */
    if (fsync(f->fd) != 0)
        return fail(ctx, "fsync", errno);
    return 0;
}

static void px_close(void *ctx, fws_file *f)
{
    (void)ctx;
    close(f->fd);
    free(f);
}

static int px_rename(void *ctx, const char *from, const char *to)
{
    struct fws_posix *p = ctx;
    if (p->dirfd < 0)
        return FWS_ENOTSUP;
    if (renameat(p->dirfd, from, p->dirfd, to) != 0)
        return fail(p, "rename", errno);
    return dir_sync(p);
}

static int px_remove(void *ctx, const char *name)
{
    struct fws_posix *p = ctx;
    if (p->dirfd < 0)
        return FWS_ENOTSUP;
    if (unlinkat(p->dirfd, name, 0) != 0)
        return fail(p, "unlink", errno);
    return dir_sync(p);
}

static int px_list(void *ctx, int (*cb)(void *arg, const char *name), void *arg)
{
    struct fws_posix *p = ctx;
    if (p->dirfd < 0)
        return FWS_ENOTSUP;
    /* fdopendir takes ownership of the descriptor: give it a copy. */
    int fd = dup(p->dirfd);
    if (fd < 0)
        return fail(p, "dup", errno);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = fail(p, "fdopendir", errno);
        close(fd);
        return rc;
    }
    rewinddir(d);
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = fail(p, "readdir", errno);
            break;
        }
        /* Only names the shim could have made, and only plain files. */
        if (fws_name_check(e->d_name) != 0)
            continue;
        struct stat st;
        if (fstatat(p->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = cb(arg, e->d_name);
        if (rc != 0)
            break;
    }
    closedir(d);
    return rc;
}

/* --- network --- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ? -1 : 0;
}

/* poll(2) that resumes after signals with what is left of the timeout. */
static int poll_deadline(struct pollfd *pfd, nfds_t n, uint32_t timeout_ms)
{
    int64_t deadline = ts_ms(CLOCK_MONOTONIC) + timeout_ms;
    for (;;) {
        int64_t left = deadline - ts_ms(CLOCK_MONOTONIC);
        if (left < 0)
            left = 0;
        int rc = poll(pfd, n, (int)(left > INT_MAX ? INT_MAX : left));
        if (rc >= 0 || errno != EINTR)
            return rc;
    }
}

static int gai_map(int rc)
{
    return rc == EAI_MEMORY ? FWS_ENOMEM : FWS_EADDR;
}

/* The addresses of host:port for a TCP connect, and a zeroed socket for
 * it; 0 or an FWS error (then neither). */
static int resolve(const char *host, uint16_t port, struct addrinfo **res, fws_sock **sock)
{
    char serv[8];
    (void)snprintf(serv, sizeof(serv), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(host, serv, &hints, res);
    if (g != 0)
        return gai_map(g);
    *sock = calloc(1, sizeof(**sock));
    if (*sock == NULL) {
        freeaddrinfo(*res);
        *res = NULL;
        return FWS_ENOMEM;
    }
    return 0;
}

/* One non-blocking connect attempt, waiting at most until deadline. */
static int connect_one(struct fws_posix *p, const struct addrinfo *ai, int64_t deadline,
                       int *out_fd)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return fail(p, "socket", errno);
    if (set_nonblock(fd) != 0) {
        int rc = fail(p, "fcntl", errno);
        close(fd);
        return rc;
    }
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            rc = fail(p, "connect", errno);
            goto exit;
        }
        int64_t left = deadline - ts_ms(CLOCK_MONOTONIC);
        struct pollfd pfd = { fd, POLLOUT, 0 };
        int n = left > 0 ? poll_deadline(&pfd, 1, (uint32_t)(left > UINT32_MAX ? UINT32_MAX : left))
                         : 0;
        if (n < 0) {
            rc = fail(p, "poll", errno);
            goto exit;
        }
        if (n == 0) {
            rc = FWS_ETIMEDOUT;
            goto exit;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err != 0) {
            rc = fail(p, "connect", err);
            goto exit;
        }
    }
    /* Frames are small and latency matters more than packet count. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
exit:
    if (rc < 0)
        close(fd);
    else
        *out_fd = fd;
    return rc;
}

static int px_connect(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms,
                      fws_sock **out)
{
    struct fws_posix *p = ctx;
    struct addrinfo *res = NULL;
    fws_sock *s = NULL;
    int g = resolve(host, port, &res, &s);
    if (g != 0)
        return g;
    int64_t deadline = ts_ms(CLOCK_MONOTONIC) + timeout_ms;
    int rc = FWS_EADDR;
    int fd = -1;
    /* Try each address in turn within the one overall deadline. */
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = connect_one(p, ai, deadline, &fd);
        if (rc == 0 || rc == FWS_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->fd = fd;
    s->listener = 0;
    *out = s;
    return 0;
}

/* Starts a non-blocking connect on the first address from ai on that takes
 * one (done or in progress); an address refused at once gives way to the
 * next. Sets s->fd and s->ai_next (where connect_done goes on if this one
 * fails later). */
static int start_from(struct fws_posix *p, fws_sock *s, const struct addrinfo *ai)
{
    int rc = FWS_EADDR;
    for (; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = fail(p, "socket", errno);
            continue;
        }
        if (set_nonblock(fd) != 0) {
            rc = fail(p, "fcntl", errno);
        } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS ||
                   errno == EINTR) {
            s->fd = fd;
            s->ai_next = ai->ai_next;
            return 0;
        } else {
            rc = fail(p, "connect", errno);
        }
        close(fd);
    }
    return rc;
}

static int px_connect_start(void *ctx, const char *host, uint16_t port, fws_sock **out)
{
    struct fws_posix *p = ctx;
    struct addrinfo *res = NULL;
    fws_sock *s = NULL;
    int g = resolve(host, port, &res, &s);
    if (g != 0)
        return g;
    int rc = start_from(p, s, res);
    if (rc < 0) {
        freeaddrinfo(res);
        free(s);
        return rc;
    }
    s->ai_head = res; /* kept until connected: a refusal moves to the next */
    *out = s;
    return 0;
}

/* On Linux even a loopback refusal shows here, not in connect(): a name
 * whose first address refuses (localhost as ::1 before 127.0.0.1) must go
 * on to the next, as the blocking connect does. */
static int px_connect_done(void *ctx, fws_sock *s)
{
    if (s->listener)
        return FWS_EINVAL;
    struct pollfd pfd = { s->fd, POLLOUT, 0 };
    int n = poll(&pfd, 1, 0);
    if (n < 0)
        return errno == EINTR ? FWS_EAGAIN : fail(ctx, "poll", errno);
    if (n == 0)
        return FWS_EAGAIN;
    int err = 0;
    socklen_t el = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
        err = errno;
    if (err != 0) {
        int rc = fail(ctx, "connect", err);
        if (s->ai_next) {
            int fd = s->fd;
            if (start_from(ctx, s, s->ai_next) == 0) {
                close(fd);
                return FWS_EAGAIN;
            }
            s->ai_next = NULL;
        }
        return rc;
    }
    if (s->ai_head)
        freeaddrinfo(s->ai_head);
    s->ai_head = NULL;
    s->ai_next = NULL;
    int one = 1; /* as connect_one: frames are small, latency matters */
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static int px_send(void *ctx, fws_sock *s, const void *buf, size_t len)
{
    if (s->listener)
        return FWS_EINVAL;
    for (;;) {
        ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0)
            return (int)n;
        if (n == 0)
            return FWS_EAGAIN;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return FWS_EAGAIN;
        return fail(ctx, "send", errno);
    }
}

static int px_recv(void *ctx, fws_sock *s, void *buf, size_t len, uint32_t timeout_ms)
{
    if (s->listener)
        return FWS_EINVAL;
    if (timeout_ms > 0) {
        struct pollfd pfd = { s->fd, POLLIN, 0 };
        int n = poll_deadline(&pfd, 1, timeout_ms);
        if (n < 0)
            return fail(ctx, "poll", errno);
        if (n == 0)
            return FWS_ETIMEDOUT;
    }
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, 0);
        if (n > 0)
            return (int)n;
        if (n == 0)
            return FWS_ECLOSED;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return FWS_ETIMEDOUT; /* nothing there (timeout 0, or a spurious wake) */
        return fail(ctx, "recv", errno);
    }
}

static void px_sock_close(void *ctx, fws_sock *s)
{
    (void)ctx;
    close(s->fd);
    if (s->ai_head)
        freeaddrinfo(s->ai_head);
    free(s);
}

/* A node that listens serves many peers: use the hard descriptor limit, not
 * the default soft 1024, as sitesyncd does. Best effort; the hub evicts and
 * refuses past its own max_conns either way. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1048576 : rl.rlim_max;
    if (rl.rlim_cur < want) {
        struct rlimit nl = { want, rl.rlim_max };
        (void)setrlimit(RLIMIT_NOFILE, &nl);
    }
}

static int px_listen(void *ctx, const char *host, uint16_t port, fws_sock **out,
                     uint16_t *bound_port)
{
    struct fws_posix *p = ctx;
    char serv[8];
    (void)snprintf(serv, sizeof(serv), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    raise_nofile();
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host[0] != '\0' ? host : NULL, serv, &hints, &res);
    if (g != 0)
        return gai_map(g);
    fws_sock *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        freeaddrinfo(res);
        return FWS_ENOMEM;
    }
    int rc = FWS_EADDR;
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = fail(p, "socket", errno);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (set_nonblock(fd) == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, LISTEN_BACKLOG) == 0) {
            rc = 0;
            break;
        }
        rc = fail(p, "bind/listen", errno);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (rc < 0) {
        free(s);
        return rc;
    }
    if (bound_port != NULL) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
            rc = fail(p, "getsockname", errno);
            close(fd);
            free(s);
            return rc;
        }
        if (ss.ss_family == AF_INET)
            *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    s->fd = fd;
    s->listener = 1;
    *out = s;
    return 0;
}

static int px_accept(void *ctx, fws_sock *l, fws_sock **out, char *peer, size_t peer_cap)
{
    struct fws_posix *p = ctx;
    if (!l->listener)
        return FWS_EINVAL;
    fws_sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return FWS_ENOMEM;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd;
    do {
        fd = accept(l->fd, (struct sockaddr *)&ss, &sl);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? FWS_EAGAIN : fail(p, "accept", errno);
        free(s);
        return rc;
    }
    if (set_nonblock(fd) != 0) {
        int rc = fail(p, "fcntl", errno);
        close(fd);
        free(s);
        return rc;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (peer != NULL && peer_cap > 0) {
        char h[INET6_ADDRSTRLEN], sv[8];
        if (getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), sv, sizeof(sv),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            (void)snprintf(peer, peer_cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, sv);
    }
    s->fd = fd;
    s->listener = 0;
    *out = s;
    return 0;
}

static int px_poll(void *ctx, fws_pollfd *fds, int n, uint32_t timeout_ms)
{
    struct pollfd stack[POLL_STACK];
    struct pollfd *pfd = stack;
    if (n > POLL_STACK) {
        pfd = calloc((size_t)n, sizeof(*pfd));
        if (pfd == NULL)
            return FWS_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        pfd[i].fd = fds[i].sock->fd;
        pfd[i].events = (short)(((fds[i].events & FWS_POLL_IN) ? POLLIN : 0) |
                                ((fds[i].events & FWS_POLL_OUT) ? POLLOUT : 0));
        pfd[i].revents = 0;
    }
    int rc = poll_deadline(pfd, (nfds_t)n, timeout_ms);
    if (rc < 0) {
        rc = fail(ctx, "poll", errno);
    } else {
        rc = 0;
        for (int i = 0; i < n; i++) {
            int r = 0;
            short re = pfd[i].revents;
            if (re & POLLIN)
                r |= FWS_POLL_IN;
            if (re & POLLOUT)
                r |= FWS_POLL_OUT;
            /* Errors and hang-ups wake every requested event: the next recv
             * or send reports what happened. */
            if (re & (POLLERR | POLLHUP | POLLNVAL))
                r |= (fds[i].events & (FWS_POLL_IN | FWS_POLL_OUT)) | FWS_POLL_IN;
            fds[i].revents = r;
            if (r != 0)
                rc++;
        }
    }
    if (pfd != stack)
        free(pfd);
    return rc;
}

/* --- log --- */

static void px_log(void *ctx, int level, const char *line)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    struct fws_posix *p = ctx;
    if (level > p->log_level)
        return;
    if (level < 0 || level > FWS_LOG_DEBUG)
        level = FWS_LOG_ERROR;
    struct timespec ts;
    struct tm tm;
    char when[48] = "-";
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm) != NULL) {
        char base[24];
        if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) > 0)
            (void)snprintf(when, sizeof(when), "%s.%03uZ", base,
                           (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
    }
    /* Built whole and written with one call so that concurrent writers
     * (run and a CLI submitting beside it) do not interleave halves. */
    char out[768];
    int n = snprintf(out, sizeof(out), "%s %s %s %s\n", when, names[level], p->tag, line);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(out)) {
        n = (int)sizeof(out) - 1;
        out[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, out, (size_t)n);
    (void)w; /* nowhere left to report a failing stderr */
}

static int px_sock_outq(void *ctx, fws_sock *s, size_t *out)
{
    (void)ctx;
#ifdef SIOCOUTQ
    int n = 0;
    if (s->listener || ioctl(s->fd, SIOCOUTQ, &n) != 0 || n < 0)
        return FWS_ENOTSUP;
    *out = (size_t)n;
    return 0;
#else
    (void)s;
    (void)out;
    return FWS_ENOTSUP;
#endif
}

static const fws_ops posix_ops = {
    .version = FWS_VERSION,
    .ops_size = sizeof(fws_ops),
    .wall_ms = px_wall_ms,
    .mono_ms = px_mono_ms,
    .sleep_ms = px_sleep_ms,
    .entropy = px_entropy,
    .open = px_open,
    .read = px_read,
    .append = px_append,
    .sync = px_sync,
    .size = px_size,
    .truncate = px_truncate,
    .close = px_close,
    .rename = px_rename,
    .remove = px_remove,
    .list = px_list,
    .connect = px_connect,
    .send = px_send,
    .recv = px_recv,
    .sock_close = px_sock_close,
    .listen = px_listen,
    .accept = px_accept,
    .poll = px_poll,
    .log = px_log,
    .sock_outq = px_sock_outq,
    .connect_start = px_connect_start,
    .connect_done = px_connect_done,
};

/* mkdir -p with mode 0700 for the components it creates, syncing each
 * parent so the new directory survives a power cut. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    if (n == 0 || n >= PATH_MAX)
        return FWS_EINVAL;
    char path[PATH_MAX];
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) == 0) {
            char parent[PATH_MAX];
            const char *slash = strrchr(path, '/');
            size_t pl = slash == NULL ? 0 : (slash == path ? 1 : (size_t)(slash - path));
            if (pl == 0) {
                parent[0] = '.';
                pl = 1;
            } else {
                memcpy(parent, path, pl);
            }
            parent[pl] = '\0';
            int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                (void)fsync(pfd);
                close(pfd);
            }
        } else if (errno != EEXIST) {
            return map_errno(errno);
        }
        path[i] = saved;
    }
    return 0;
}

int fws_posix_new(const fws_posix_config *cfg, fws_posix **out, fws *shim)
{
    if (out == NULL || shim == NULL || cfg == NULL)
        return FWS_EINVAL;
    *out = NULL;
    struct fws_posix *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return FWS_ENOMEM;
    p->dirfd = -1;
    p->log_level = cfg->log_level;
    (void)snprintf(p->tag, sizeof(p->tag), "%s", cfg->log_tag != NULL ? cfg->log_tag : "fws");
    if (cfg->dir != NULL) {
        int rc = make_dirs(cfg->dir);
        if (rc == 0) {
            p->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (p->dirfd < 0)
                rc = map_errno(errno);
        }
        if (rc < 0) {
            free(p);
            return rc == FWS_ENOENT ? FWS_EIO : rc;
        }
    }
    shim->ops = &posix_ops;
    shim->ctx = p;
    *out = p;
    return 0;
}

void fws_posix_destroy(fws_posix *p)
{
    if (p == NULL)
        return;
    if (p->dirfd >= 0)
        close(p->dirfd);
    free(p);
}
