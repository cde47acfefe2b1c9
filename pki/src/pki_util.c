/* pki_util.c - the small things every pki command needs: error messages,
 * files written atomically, UTC time without the process's time zone, and the
 * text forms of serials and fingerprints. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "proto/err.h"
#include "internal.h"

PKI__PRINTF(3, 0) static void vformat(char *err, size_t cap, const char *fmt, va_list ap)
{
    if (!err || cap == 0)
        return;
    if (vsnprintf(err, cap, fmt, ap) < 0)
        err[0] = '\0';
}

int pki__fail(char *err, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vformat(err, cap, fmt, ap);
    va_end(ap);
    return code;
}

int pki__fail_ossl(char *err, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;
    unsigned long e = ERR_peek_last_error();
    char why[256];

    va_start(ap, fmt);
    vformat(err, cap, fmt, ap);
    va_end(ap);
    if (e != 0 && err && cap > 0) {
        size_t used = strlen(err);
        ERR_error_string_n(e, why, sizeof(why));
        snprintf(err + used, cap - used, " (%s)", why);
    }
    ERR_clear_error();
    return code;
}

int pki__path(char *buf, size_t cap, const char *dir, const char *rel, char *err, size_t errcap)
{
    int n = snprintf(buf, cap, "%s/%s", dir, rel);

    if (n < 0 || (size_t)n >= cap)
        return pki__fail(err, errcap, SS_ENOSPC, "path too long: %s/%s", dir, rel);
    return 0;
}

static int errno_code(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return SS_ENOENT;
    case EACCES:
    case EPERM:
        return SS_EPERM;
    case EEXIST:
        return SS_EEXIST;
    case ENOSPC:
        return SS_ENOSPC;
    case ENOMEM:
        return SS_ENOMEM;
    default:
        return SS_EIO;
    }
}

int pki__read_file(const char *path, size_t max, char **data, size_t *len, mode_t *st_mode,
                   char *err, size_t errcap)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd, rc = 0;

    *data = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return pki__fail(err, errcap, errno_code(errno), "cannot read %s: %s", path,
                         strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = pki__fail(err, errcap, SS_EIO, "cannot stat %s: %s", path, strerror(errno));
        goto exit;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pki__fail(err, errcap, SS_EINVAL, "cannot read %s: not a regular file", path);
        goto exit;
    }
    if ((uintmax_t)st.st_size > (uintmax_t)max) {
        rc = pki__fail(err, errcap, SS_EOVERSIZE, "cannot read %s: larger than %zu bytes", path,
                       max);
        goto exit;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = pki__fail(err, errcap, SS_ENOMEM, "out of memory reading %s", path);
        goto exit;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = pki__fail(err, errcap, errno_code(errno), "cannot read %s: %s", path,
                           strerror(errno));
            goto exit;
        }
        if (r == 0)
            break; /* shrank while we read: take what is there */
        got += (size_t)r;
    }
    buf[got] = '\0';
    if (st_mode)
        *st_mode = st.st_mode;
    *data = buf;
    *len = got;
    buf = NULL;
exit:
    if (buf)
        pki__free_secret(buf, (size_t)st.st_size + 1);
    close(fd);
    return rc;
}

void pki__free_secret(char *data, size_t len)
{
    if (!data)
        return;
    OPENSSL_cleanse(data, len);
    free(data);
}

int pki__mkdirs(const char *dir, mode_t mode, char *err, size_t errcap)
{
    char buf[PATH_MAX];
    size_t n = strlen(dir);
    struct stat st;

    if (n == 0 || n >= sizeof(buf))
        return pki__fail(err, errcap, SS_EINVAL, "bad directory name '%s'", dir);
    memcpy(buf, dir, n + 1);
    /* Walk the components left to right so missing parents are created. */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return pki__fail(err, errcap, errno_code(errno), "cannot create directory %s: %s", buf,
                             strerror(errno));
        buf[i] = saved;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pki__fail(err, errcap, SS_EINVAL, "%s exists and is not a directory", dir);
    return 0;
}

int pki__exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

int pki__fsync_parent(const char *path, char *err, size_t errcap)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n;
    int fd;

    if (!slash) {
        memcpy(dir, ".", 2);
    } else {
        n = (size_t)(slash - path);
        if (n == 0)
            n = 1; /* "/file" lives in "/" */
        if (n >= sizeof(dir))
            return pki__fail(err, errcap, SS_ENOSPC, "path too long: %s", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pki__fail(err, errcap, errno_code(errno), "cannot open directory %s: %s", dir,
                         strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return pki__fail(err, errcap, SS_EIO, "cannot fsync directory %s: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

void pki__staged_init(pki__staged *s)
{
    memset(s, 0, sizeof(*s));
}

int pki__stage(pki__staged *s, const char *path, const void *data, size_t len, mode_t mode,
               int noreplace, char *err, size_t errcap)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const unsigned char *p = data;
    size_t done = 0;
    int fd, n;

    pki__staged_init(s);
    if (strlen(path) >= sizeof(s->final))
        return pki__fail(err, errcap, SS_ENOSPC, "path too long: %s", path);
    memcpy(s->final, path, strlen(path) + 1);
    /* The temporary name lives in the same directory, so the final rename
     * cannot cross file systems and is atomic. */
    n = snprintf(s->tmp, sizeof(s->tmp), "%.*s.%s.tmp.XXXXXX", (int)dirlen, path, base);
    if (n < 0 || (size_t)n >= sizeof(s->tmp))
        return pki__fail(err, errcap, SS_ENOSPC, "path too long: %s", path);
    fd = mkstemp(s->tmp); /* O_CREAT|O_EXCL, mode 0600 */
    if (fd < 0)
        return pki__fail(err, errcap, errno_code(errno), "cannot create a file next to %s: %s",
                         path, strerror(errno));
    s->staged = 1;
    s->noreplace = noreplace;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            pki__unstage(s, 0);
            return pki__fail(err, errcap, errno_code(e), "cannot write %s: %s", s->tmp,
                             strerror(e));
        }
        done += (size_t)w;
    }
    if ((mode & 0077) != 0 && fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        pki__unstage(s, 0);
        return pki__fail(err, errcap, errno_code(e), "cannot chmod %s: %s", s->tmp, strerror(e));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        pki__unstage(s, 0);
        return pki__fail(err, errcap, SS_EIO, "cannot fsync %s: %s", s->tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        pki__unstage(s, 0);
        return pki__fail(err, errcap, SS_EIO, "cannot close %s: %s", s->tmp, strerror(e));
    }
    return 0;
}

int pki__commit(pki__staged *s, char *err, size_t errcap)
{
    if (!s->staged)
        return pki__fail(err, errcap, SS_EINTERNAL, "nothing staged for %s", s->final);
    if (s->noreplace) {
        /* link() refuses an existing target, which rename() would replace. */
        if (link(s->tmp, s->final) != 0) {
            int e = errno;
            if (e == EEXIST)
                return pki__fail(err, errcap, SS_EEXIST, "%s already exists: refusing to overwrite",
                                 s->final);
            return pki__fail(err, errcap, errno_code(e), "cannot create %s: %s", s->final,
                             strerror(e));
        }
        unlink(s->tmp);
    } else if (rename(s->tmp, s->final) != 0) {
        int e = errno;
        return pki__fail(err, errcap, errno_code(e), "cannot replace %s: %s", s->final,
                         strerror(e));
    }
    s->staged = 0;
    s->committed = 1;
    return pki__fsync_parent(s->final, err, errcap);
}

void pki__unstage(pki__staged *s, int undo)
{
    if (s->staged) {
        unlink(s->tmp);
        s->staged = 0;
    }
    if (s->committed && undo) {
        unlink(s->final);
        s->committed = 0;
    }
}

int64_t pki__now(void)
{
    return (int64_t)time(NULL);
}

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so UTC conversions never depend on TZ or timegm(). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void pki__fmt_time(int64_t t, char *buf, size_t cap)
{
    int64_t days = t / 86400, secs = t % 86400, y;
    unsigned m, d;

    if (secs < 0) {
        secs += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, cap, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int pki__parse_time(const char *s, int64_t *t)
{
    int y, mo, d, h, mi, se;

    /* YYYY-MM-DDTHH:MM:SSZ */
    if (!s || strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z')
        return SS_EINVAL;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return SS_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return SS_EINVAL;
    *t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

int pki__asn1_time_to_epoch(const ASN1_TIME *at, int64_t *t)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (!at || ASN1_TIME_to_tm(at, &tm) != 1)
        return SS_EINVAL;
    *t =
        days_from_civil((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday) *
            86400 +
        tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return 0;
}

int pki__parse_int(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long long v;

    if (!s || *s == '\0')
        return SS_EINVAL;
    for (const char *p = s; *p; p++) {
        if ((*p < '0' || *p > '9') && !(p == s && *p == '-'))
            return SS_EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || !end || *end != '\0' || v < min || v > max)
        return SS_ERANGE;
    *out = (long)v;
    return 0;
}

static int bn_hex(const BIGNUM *bn, char *buf, size_t cap)
{
    char *hex = BN_bn2hex(bn);
    size_t n;

    if (!hex)
        return SS_ENOMEM;
    n = strlen(hex);
    if (n + 1 > cap) {
        OPENSSL_free(hex);
        return SS_ENOSPC;
    }
    memcpy(buf, hex, n + 1);
    OPENSSL_free(hex);
    return 0;
}

int pki__serial_hex(const ASN1_INTEGER *serial, char *buf, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    int rc;

    if (!bn)
        return SS_EINVAL;
    rc = bn_hex(bn, buf, cap);
    BN_free(bn);
    return rc;
}

int pki__serial_normalize(const char *in, char *buf, size_t cap)
{
    char clean[2 * PKI_SERIAL_HEX_MAX + 1];
    size_t n = 0;
    BIGNUM *bn = NULL;
    int rc;

    if (!in)
        return SS_EINVAL;
    if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X'))
        in += 2;
    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == ':')
            continue;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return SS_EINVAL;
        if (n + 1 >= sizeof(clean))
            return SS_EINVAL;
        clean[n++] = (char)c;
    }
    clean[n] = '\0';
    if (n == 0 || BN_hex2bn(&bn, clean) != (int)n)
        return SS_EINVAL;
    rc = bn_hex(bn, buf, cap);
    BN_free(bn);
    return rc;
}

int pki__fingerprint(X509 *x, char *buf, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hexd[] = "0123456789abcdef";

    /* X509_digest hashes the DER encoding: the same bytes the daemon sees. */
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32 || cap < 2 * n + 1)
        return SS_EINVAL;
    for (unsigned i = 0; i < n; i++) {
        buf[2 * i] = hexd[md[i] >> 4];
        buf[2 * i + 1] = hexd[md[i] & 15];
    }
    buf[2 * n] = '\0';
    return 0;
}

int pki__cert_pem(X509 *x, char **pem, size_t *len, char *err, size_t errcap)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;
    int rc = 0;

    *pem = NULL;
    *len = 0;
    if (!b || PEM_write_bio_X509(b, x) != 1) {
        rc = pki__fail_ossl(err, errcap, SS_ENOMEM, "cannot encode certificate");
        goto exit;
    }
    BIO_get_mem_ptr(b, &bm);
    *pem = OPENSSL_malloc(bm->length + 1);
    if (!*pem) {
        rc = pki__fail(err, errcap, SS_ENOMEM, "out of memory");
        goto exit;
    }
    memcpy(*pem, bm->data, bm->length);
    (*pem)[bm->length] = '\0';
    *len = bm->length;
exit:
    BIO_free(b);
    return rc;
}
