/* internal.h - helpers shared by pki/'s .c files: messages, files written
 * atomically, the open CA, the issuance index and certificate building. Never
 * on another component's include path. */
#ifndef PKI_INTERNAL_H
#define PKI_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki/pki.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#if defined(__GNUC__)
#define PKI__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PKI__PRINTF(f, a)
#endif

/* Certificates start an hour in the past so that a device whose clock is a
 * little behind still accepts a certificate issued a moment ago. */
#define PKI__BACKDATE_SECS 3600

/* ---- messages (pki_util.c) ---- */

/* Formats a message into err (if not NULL) and returns code, so that a
 * failure reads `return pki__fail(err, cap, SS_EIO, "cannot ...", ...)`. */
int pki__fail(char *err, size_t cap, int code, const char *fmt, ...) PKI__PRINTF(4, 5);
/* Same, appending ": <first OpenSSL error>" and clearing OpenSSL's queue. */
int pki__fail_ossl(char *err, size_t cap, int code, const char *fmt, ...) PKI__PRINTF(4, 5);

/* ---- paths and files (pki_util.c) ---- */

/* dir + "/" + rel into buf; SS_ENOSPC if too long. */
int pki__path(char *buf, size_t cap, const char *dir, const char *rel, char *err, size_t errcap);
/* Reads a whole regular file (at most max bytes) into a NUL-terminated heap
 * buffer (free with pki__free_secret if it may hold a secret). If st_mode is
 * not NULL it receives the mode of the opened file (fstat, so no race). */
int pki__read_file(const char *path, size_t max, char **data, size_t *len, mode_t *st_mode,
                   char *err, size_t errcap);
void pki__free_secret(char *data, size_t len);
/* Creates dir (and missing parents) with mode; an existing directory is fine. */
int pki__mkdirs(const char *dir, mode_t mode, char *err, size_t errcap);
int pki__exists(const char *path);
/* fsync()s the directory holding path. */
int pki__fsync_parent(const char *path, char *err, size_t errcap);

/* A file written to a temporary name next to its final one, fsync'd, and
 * moved into place by pki__commit. The temporary file is created with
 * mkstemp (mode 0600 from the first byte) and chmod'ed to `mode` only if that
 * is wider. */
typedef struct pki__staged {
    char tmp[PATH_MAX];
    char final[PATH_MAX];
    int noreplace; /* commit with link(): fails if final exists */
    int staged;
    int committed;
} pki__staged;

void pki__staged_init(pki__staged *s);
int pki__stage(pki__staged *s, const char *path, const void *data, size_t len, mode_t mode,
               int noreplace, char *err, size_t errcap);
int pki__commit(pki__staged *s, char *err, size_t errcap);
/* Removes the temporary file if still staged; if committed and undo is set,
 * removes the final file too (only for files this operation created). */
void pki__unstage(pki__staged *s, int undo);

/* ---- time and text (pki_util.c) ---- */

int64_t pki__now(void);
/* "YYYY-MM-DDTHH:MM:SSZ" (UTC) into buf (>= 21 bytes). */
void pki__fmt_time(int64_t t, char *buf, size_t cap);
/* Parses the form above; SS_EINVAL if malformed. */
int pki__parse_time(const char *s, int64_t *t);
int pki__asn1_time_to_epoch(const ASN1_TIME *at, int64_t *t);
/* Strict decimal in [min, max]. */
int pki__parse_int(const char *s, long min, long max, long *out);
/* Serial as upper-case hex without colons (OpenSSL's spelling). */
int pki__serial_hex(const ASN1_INTEGER *serial, char *buf, size_t cap);
/* Normalizes user input ("0x", colons, any case) to pki__serial_hex form. */
int pki__serial_normalize(const char *in, char *buf, size_t cap);
int pki__fingerprint(X509 *x, char *buf, size_t cap);
/* PEM of a certificate / CRL in a heap buffer (OPENSSL_free). */
int pki__cert_pem(X509 *x, char **pem, size_t *len, char *err, size_t errcap);

/* ---- the issuance index (pki_index.c) ---- */

typedef struct pki__entry {
    char serial[PKI_SERIAL_HEX_MAX + 1];
    char node[SS_ID_MAX + 1];
    ss_role role;
    int nsites;
    char (*sites)[SS_ID_MAX + 1]; /* heap, nsites entries */
    int64_t not_before, not_after;
    char fingerprint[PKI_FPR_HEX_LEN + 1];
    int revoked;
    int64_t revoked_at;
    int reason;
} pki__entry;

typedef struct pki__index {
    long crl_number; /* last crlNumber issued */
    int n, cap;
    pki__entry *e;
} pki__index;

void pki__index_init(pki__index *ix);
void pki__index_free(pki__index *ix);
int pki__index_load(const char *dir, pki__index *ix, char *err, size_t errcap);
/* Serializes to JSON text (heap, free()). */
int pki__index_dump(const pki__index *ix, char **text, size_t *len, char *err, size_t errcap);
/* Appends a copy of e (sites copied). */
int pki__index_add(pki__index *ix, const pki__entry *e, const char *const *sites, char *err,
                   size_t errcap);
/* "valid", "expired" or "revoked" at time now. */
const char *pki__entry_status(const pki__entry *e, int64_t now);

/* ---- the open CA (pki_ca.c) ---- */

typedef struct pki__ca {
    char dir[PATH_MAX];
    X509 *cert;
    EVP_PKEY *key; /* NULL unless opened for signing */
    int lock_fd;
} pki__ca;

void pki__ca_init(pki__ca *ca);
/* Opens the CA in dir: checks it exists, loads ca.crt, refuses an expired or
 * not-yet-valid CA. With sign set, also takes the directory lock, checks the
 * key's mode (refuses group/other access) and loads the key, decrypting with
 * the passphrase file when the key is encrypted. */
int pki__ca_open(pki__ca *ca, const char *dir, int sign, const char *passphrase_file, char *err,
                 size_t errcap);
void pki__ca_close(pki__ca *ca);
/* Reads a passphrase file: first line, without its line ending. */
int pki__read_passphrase(const char *file, char **pw, size_t *len, char *err, size_t errcap);

/* ---- certificates (pki_issue.c) and CRL (pki_crl.c) ---- */

/* Fresh random serial: 128 bits, top bit clear, non-zero. */
int pki__random_serial(ASN1_INTEGER **out, char *err, size_t errcap);
/* Adds extension nid with an OpenSSL config value ("critical,CA:TRUE"). */
int pki__add_ext(X509 *x, X509 *issuer, int nid, const char *value, char *err, size_t errcap);
/* Builds and signs the CRL for ix (with crl_number as its number) and returns
 * its PEM text in a heap buffer (OPENSSL_free). */
int pki__crl_build(const pki__ca *ca, const pki__index *ix, long crl_number, int days, char **pem,
                   size_t *len, char *err, size_t errcap);

#endif
