/* fws.c - the checked wrappers through which core code reaches a firmware
 * shim: argument checks, table-size checks, and the composite helpers
 * (read_full, write_atomic, send_all, log formatting) that every port shares. */
#include "fws/fws.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A method is usable only if the table is ours, is big enough to hold the
 * field (an older, smaller table simply lacks newer methods), and the
 * pointer is set. Missing methods give FWS_ENOTSUP instead of a crash. */
#define HAS(s, field)                                                            \
    ((s) != NULL && (s)->ops != NULL && (s)->ops->version == FWS_VERSION &&      \
     (s)->ops->ops_size >= offsetof(fws_ops, field) + sizeof((s)->ops->field) && \
     (s)->ops->field != NULL)

/* Longest host name accepted by fws_connect/fws_listen (DNS limit). */
#define HOST_MAX 255
/* Suffix of the temporary file used by fws_write_atomic. */
#define TMP_SUFFIX ".tmp"
/* One log line, formatted on the stack: bounded, no allocation. */
#define LOG_LINE_MAX 512

const char *fws_strerror(int err)
{
    switch (err) {
    case FWS_OK:
        return "success";
#define FWS__ERR_CASE(name, val, msg) \
    case FWS_##name:                  \
        return msg;
        FWS_ERRNO_MAP(FWS__ERR_CASE)
#undef FWS__ERR_CASE
    default:
        return "unknown shim error";
    }
}

int64_t fws_wall_ms(const fws *s)
{
    return HAS(s, wall_ms) ? s->ops->wall_ms(s->ctx) : 0;
}

int64_t fws_mono_ms(const fws *s)
{
    return HAS(s, mono_ms) ? s->ops->mono_ms(s->ctx) : 0;
}

void fws_sleep_ms(const fws *s, uint32_t ms)
{
    if (HAS(s, sleep_ms))
        s->ops->sleep_ms(s->ctx, ms);
}

int fws_entropy(const fws *s, uint8_t *buf, size_t len)
{
    if (!HAS(s, entropy))
        return FWS_ENOTSUP;
    if (len == 0)
        return 0;
    if (buf == NULL)
        return FWS_EINVAL;
    return s->ops->entropy(s->ctx, buf, len);
}

/* Names live in one flat namespace and must never reach outside it: only
 * [A-Za-z0-9._-], at most FWS_NAME_MAX bytes, no leading '.' (which also
 * excludes "." and ".." and hidden files) and no ".." anywhere. */
int fws_name_check(const char *name)
{
    if (name == NULL)
        return FWS_EINVAL;
    size_t n = 0;
    for (; name[n] != '\0'; n++) {
        if (n >= FWS_NAME_MAX)
            return FWS_EINVAL;
        char c = name[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return FWS_EINVAL;
        if (c == '.' && n > 0 && name[n - 1] == '.')
            return FWS_EINVAL;
    }
    if (n == 0 || name[0] == '.')
        return FWS_EINVAL;
    return 0;
}

int fws_open(const fws *s, const char *name, int flags, fws_file **out)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = NULL;
    if (!HAS(s, open))
        return FWS_ENOTSUP;
    int rc = fws_name_check(name);
    if (rc < 0)
        return rc;
    if ((flags & ~(FWS_O_CREATE | FWS_O_EXCL)) != 0)
        return FWS_EINVAL;
    if ((flags & FWS_O_EXCL) && !(flags & FWS_O_CREATE))
        return FWS_EINVAL;
    rc = s->ops->open(s->ctx, name, flags, out);
    if (rc < 0)
        *out = NULL;
    return rc;
}

int fws_read(const fws *s, fws_file *f, uint64_t off, void *buf, size_t len)
{
    if (!HAS(s, read))
        return FWS_ENOTSUP;
    if (f == NULL || (buf == NULL && len > 0))
        return FWS_EINVAL;
    if (len == 0)
        return 0;
    if (len > INT_MAX) /* the count must fit the int return */
        len = INT_MAX;
    return s->ops->read(s->ctx, f, off, buf, len);
}

int fws_read_full(const fws *s, fws_file *f, uint64_t off, void *buf, size_t len)
{
    if (f == NULL || (buf == NULL && len > 0))
        return FWS_EINVAL;
    size_t done = 0;
    /* Every iteration makes progress (rc > 0) or returns, so this ends. */
    while (done < len) {
        int rc = fws_read(s, f, off + done, (uint8_t *)buf + done, len - done);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return FWS_EIO; /* the file is shorter than the caller expected */
        done += (size_t)rc;
    }
    return 0;
}

int fws_append(const fws *s, fws_file *f, const void *buf, size_t len)
{
    if (!HAS(s, append))
        return FWS_ENOTSUP;
    if (f == NULL || (buf == NULL && len > 0))
        return FWS_EINVAL;
    if (len == 0)
        return 0;
    return s->ops->append(s->ctx, f, buf, len);
}

int fws_sync(const fws *s, fws_file *f)
{
    if (!HAS(s, sync))
        return FWS_ENOTSUP;
    if (f == NULL)
        return FWS_EINVAL;
    return s->ops->sync(s->ctx, f);
}

int fws_size(const fws *s, fws_file *f, uint64_t *out)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = 0;
    if (!HAS(s, size))
        return FWS_ENOTSUP;
    if (f == NULL)
        return FWS_EINVAL;
    return s->ops->size(s->ctx, f, out);
}

int fws_truncate(const fws *s, fws_file *f, uint64_t len)
{
    if (!HAS(s, truncate))
        return FWS_ENOTSUP;
    if (f == NULL || len > (uint64_t)INT64_MAX)
        return FWS_EINVAL;
    return s->ops->truncate(s->ctx, f, len);
}

void fws_close(const fws *s, fws_file *f)
{
    if (f != NULL && HAS(s, close))
        s->ops->close(s->ctx, f);
}

int fws_rename(const fws *s, const char *from, const char *to)
{
    if (!HAS(s, rename))
        return FWS_ENOTSUP;
    int rc = fws_name_check(from);
    if (rc == 0)
        rc = fws_name_check(to);
    if (rc < 0)
        return rc;
    return s->ops->rename(s->ctx, from, to);
}

int fws_remove(const fws *s, const char *name)
{
    if (!HAS(s, remove))
        return FWS_ENOTSUP;
    int rc = fws_name_check(name);
    if (rc < 0)
        return rc;
    return s->ops->remove(s->ctx, name);
}

int fws_list(const fws *s, int (*cb)(void *arg, const char *name), void *arg)
{
    if (!HAS(s, list))
        return FWS_ENOTSUP;
    if (cb == NULL)
        return FWS_EINVAL;
    return s->ops->list(s->ctx, cb, arg);
}

/* Temp file, append, sync, rename (durable on return per the contract), in
 * the manner of Redis's rdbSave: after a power cut the target holds either
 * the old or the new content. A stale temp left by an earlier cut is simply
 * truncated and reused. The temp name is "<name>.tmp", so name must leave
 * room for the suffix. */
int fws_write_atomic(const fws *s, const char *name, const void *buf, size_t len)
{
    char tmp[FWS_NAME_MAX + 1];
    fws_file *f = NULL;
    int rc = fws_name_check(name);
    if (rc < 0)
        return rc;
    if (buf == NULL && len > 0)
        return FWS_EINVAL;
    size_t n = strlen(name);
    if (n + sizeof(TMP_SUFFIX) - 1 > FWS_NAME_MAX)
        return FWS_EINVAL;
    memcpy(tmp, name, n);
    memcpy(tmp + n, TMP_SUFFIX, sizeof(TMP_SUFFIX));

    rc = fws_open(s, tmp, FWS_O_CREATE, &f);
    if (rc < 0)
        return rc;
    rc = fws_truncate(s, f, 0);
    if (rc < 0)
        goto cleanup;
    rc = fws_append(s, f, buf, len);
    if (rc < 0)
        goto cleanup;
    rc = fws_sync(s, f);
    if (rc < 0)
        goto cleanup;
    fws_close(s, f);
    f = NULL;
    rc = fws_rename(s, tmp, name);
    if (rc < 0)
        goto cleanup;
    return 0;

cleanup:
    fws_close(s, f);
    /* Best effort: a leftover temp is harmless (it is truncated next time),
     * and after FWS_EPOWER the storage refuses everything anyway. */
    if (rc != FWS_EPOWER)
        (void)fws_remove(s, tmp);
    return rc;
}

static int host_check(const char *host, int allow_empty)
{
    if (host == NULL)
        return FWS_EINVAL;
    size_t n = strnlen(host, HOST_MAX + 1);
    if (n > HOST_MAX || (n == 0 && !allow_empty))
        return FWS_EADDR;
    return 0;
}

int fws_connect(const fws *s, const char *host, uint16_t port, uint32_t timeout_ms, fws_sock **out)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = NULL;
    if (!HAS(s, connect))
        return FWS_ENOTSUP;
    int rc = host_check(host, 0);
    if (rc < 0)
        return rc;
    if (port == 0)
        return FWS_EADDR;
    rc = s->ops->connect(s->ctx, host, port, timeout_ms, out);
    if (rc < 0)
        *out = NULL;
    return rc;
}

int fws_connect_start(const fws *s, const char *host, uint16_t port, uint32_t timeout_ms,
                      fws_sock **out)
{
    if (!HAS(s, connect_start) || !HAS(s, connect_done))
        return fws_connect(s, host, port, timeout_ms, out);
    if (out == NULL)
        return FWS_EINVAL;
    *out = NULL;
    int rc = host_check(host, 0);
    if (rc < 0)
        return rc;
    if (port == 0)
        return FWS_EADDR;
    rc = s->ops->connect_start(s->ctx, host, port, out);
    if (rc < 0)
        *out = NULL;
    return rc;
}

int fws_connect_done(const fws *s, fws_sock *sock)
{
    if (sock == NULL)
        return FWS_EINVAL;
    if (!HAS(s, connect_start) || !HAS(s, connect_done))
        return 0; /* fws_connect_start connected it already */
    return s->ops->connect_done(s->ctx, sock);
}

int fws_send(const fws *s, fws_sock *sock, const void *buf, size_t len)
{
    if (!HAS(s, send))
        return FWS_ENOTSUP;
    if (sock == NULL || (buf == NULL && len > 0))
        return FWS_EINVAL;
    if (len == 0)
        return 0;
    if (len > INT_MAX)
        len = INT_MAX;
    return s->ops->send(s->ctx, sock, buf, len);
}

int fws_send_all(const fws *s, fws_sock *sock, const void *buf, size_t len, uint32_t timeout_ms)
{
    if (sock == NULL || (buf == NULL && len > 0))
        return FWS_EINVAL;
    const uint8_t *p = buf;
    size_t done = 0;
    int64_t deadline = fws_mono_ms(s) + (int64_t)timeout_ms;
    /* Normally every round either sends bytes or lets time pass in poll. A
     * port whose poll says "writable" while send keeps saying EAGAIN, with
     * the clock standing still, would spin: cap such rounds. */
    unsigned stuck = 0;
    while (done < len) {
        int rc = fws_send(s, sock, p + done, len - done);
        if (rc > 0) {
            done += (size_t)rc;
            stuck = 0;
            continue;
        }
        if (rc == 0)
            rc = FWS_EIO; /* a send that neither sends nor fails breaks the contract */
        if (rc != FWS_EAGAIN)
            return rc;
        int64_t now = fws_mono_ms(s);
        if (now >= deadline)
            return FWS_ETIMEDOUT;
        fws_pollfd pfd = { sock, FWS_POLL_OUT, 0 };
        int64_t before = now;
        rc = fws_poll(s, &pfd, 1, (uint32_t)(deadline - now));
        if (rc < 0)
            return rc;
        if (fws_mono_ms(s) == before && ++stuck > 1000)
            return FWS_ETIMEDOUT;
    }
    return 0;
}

int fws_recv(const fws *s, fws_sock *sock, void *buf, size_t len, uint32_t timeout_ms)
{
    if (!HAS(s, recv))
        return FWS_ENOTSUP;
    /* len 0 is refused: a 0 return would be ambiguous with nothing at all. */
    if (sock == NULL || buf == NULL || len == 0)
        return FWS_EINVAL;
    if (len > INT_MAX)
        len = INT_MAX;
    return s->ops->recv(s->ctx, sock, buf, len, timeout_ms);
}

void fws_sock_close(const fws *s, fws_sock *sock)
{
    if (sock != NULL && HAS(s, sock_close))
        s->ops->sock_close(s->ctx, sock);
}

int fws_listen(const fws *s, const char *host, uint16_t port, fws_sock **out, uint16_t *bound_port)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = NULL;
    if (bound_port != NULL)
        *bound_port = 0;
    if (!HAS(s, listen))
        return FWS_ENOTSUP;
    int rc = host_check(host, 1); /* "" listens on every address */
    if (rc < 0)
        return rc;
    rc = s->ops->listen(s->ctx, host, port, out, bound_port);
    if (rc < 0)
        *out = NULL;
    return rc;
}

int fws_accept(const fws *s, fws_sock *listener, fws_sock **out, char *peer, size_t peer_cap)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = NULL;
    if (!HAS(s, accept))
        return FWS_ENOTSUP;
    if (listener == NULL || (peer == NULL && peer_cap > 0))
        return FWS_EINVAL;
    if (peer != NULL && peer_cap > 0)
        peer[0] = '\0';
    int rc = s->ops->accept(s->ctx, listener, out, peer, peer_cap);
    if (rc < 0)
        *out = NULL;
    return rc;
}

int fws_sock_outq(const fws *s, fws_sock *sock, size_t *out)
{
    if (out == NULL)
        return FWS_EINVAL;
    *out = 0;
    if (sock == NULL)
        return FWS_EINVAL;
    if (!HAS(s, sock_outq))
        return FWS_ENOTSUP;
    int rc = s->ops->sock_outq(s->ctx, sock, out);
    if (rc < 0)
        *out = 0;
    return rc;
}

int fws_poll(const fws *s, fws_pollfd *fds, int n, uint32_t timeout_ms)
{
    if (!HAS(s, poll))
        return FWS_ENOTSUP;
    if (n < 0 || (n > 0 && fds == NULL))
        return FWS_EINVAL;
    for (int i = 0; i < n; i++) {
        if (fds[i].sock == NULL || (fds[i].events & ~(FWS_POLL_IN | FWS_POLL_OUT)) != 0)
            return FWS_EINVAL;
        fds[i].revents = 0;
    }
    return s->ops->poll(s->ctx, fds, n, timeout_ms);
}

void fws_log(const fws *s, int level, const char *fmt, ...)
{
    if (!HAS(s, log) || fmt == NULL)
        return;
    if (level < FWS_LOG_ERROR)
        level = FWS_LOG_ERROR;
    if (level > FWS_LOG_DEBUG)
        level = FWS_LOG_DEBUG;
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) /* mark the cut so a reader knows */
        memcpy(line + sizeof(line) - 4, "...", 4);
    /* One event, one line: a value that carries a newline must not forge a
     * second log line. */
    for (char *p = line; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    s->ops->log(s->ctx, level, line);
}
