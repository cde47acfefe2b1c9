/* pki.h - the sitesync private certificate authority as a library: every
 * sitesync-pki command is one function here, so tests and tools can call the
 * operations directly.
 *
 * Error contract: each operation returns 0 (or a count) on success and a
 * negative proto/err.h code (SS_ENOENT, SS_EEXIST, SS_EPERM, SS_EID,
 * SS_EINVAL, SS_ECERT, SS_ESIG, SS_EIO, SS_ENOMEM, ...) on failure. When err is
 * not NULL it receives a NUL-terminated, human-readable message that names the
 * file or option at fault and, where there is one, the fix. On failure nothing
 * is left half-written: files are written to a temporary name in the same
 * directory, fsync'd and renamed (or hard-linked, when an existing file must
 * not be replaced). */
#ifndef PKI_PKI_H
#define PKI_PKI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/ident.h"

/* Validity defaults and bounds, in days. */
#define PKI_CA_DAYS_DEFAULT   3650
#define PKI_LEAF_DAYS_DEFAULT 397
#define PKI_CRL_DAYS_DEFAULT  30
#define PKI_DAYS_MAX          36500
#define PKI_CRL_DAYS_MAX      3650

#define PKI_MAX_DNS 16
#define PKI_MAX_IP  16
/* Longest CA name (it becomes the CN and O of the CA, ub-common-name). */
#define PKI_NAME_MAX 64
/* A 128-bit serial in hex, as OpenSSL prints it (upper case, no colons). */
#define PKI_SERIAL_HEX_MAX 40
/* SHA-256 of the DER certificate, lower-case hex: the form sitesyncd logs. */
#define PKI_FPR_HEX_LEN 64

/* Files inside a CA directory. */
#define PKI_CA_CERT_FILE "ca.crt"
#define PKI_CA_KEY_FILE  "private/ca.key"
#define PKI_CRL_FILE     "crl.pem"
#define PKI_INDEX_FILE   "index.json"
#define PKI_LOCK_FILE    "index.lock"
#define PKI_CERTS_DIR    "certs"

/* Format version of index.json, separate from the software version. */
#define PKI_INDEX_FORMAT 1

typedef struct pki_init_opts {
    const char *dir;             /* required; created if missing */
    const char *name;            /* CA name, NULL = "sitesync CA" */
    int days;                    /* 0 = PKI_CA_DAYS_DEFAULT */
    const char *passphrase_file; /* NULL = key stored unencrypted (0600) */
} pki_init_opts;

/* Creates a CA in dir: private/ca.key (0600, directory 0700), ca.crt, an
 * empty crl.pem and index.json. Refuses (SS_EEXIST) if dir already holds a CA
 * or any of those files. */
int pki_init(const pki_init_opts *o, char *err, size_t errcap);

typedef struct pki_issue_opts {
    const char *dir;             /* CA directory, required */
    const char *passphrase_file; /* required iff the CA key is encrypted */
    ss_role role;                /* required */
    const char *node;            /* required, an id */
    const char *const *sites;    /* nsites ids; gateway/relay >= 1, daemon 0 */
    int nsites;
    const char *const *dns; /* daemon and relay only */
    int ndns;
    const char *const *ips; /* daemon and relay only; IPv4 or IPv6 text */
    int nips;
    int days; /* 0 = PKI_LEAF_DAYS_DEFAULT */
    /* pki_issue: writes out_prefix.key (0600) and out_prefix.crt.
     * pki_sign_csr: reads csr_file (PEM or DER), writes out_crt. */
    const char *out_prefix;
    const char *csr_file;
    const char *out_crt;
    int force; /* replace existing output files instead of refusing */
} pki_issue_opts;

/* What was issued (optional output of pki_issue / pki_sign_csr). */
typedef struct pki_issued {
    char serial[PKI_SERIAL_HEX_MAX + 1];
    char fingerprint[PKI_FPR_HEX_LEN + 1];
    char not_after[32]; /* "YYYY-MM-DDTHH:MM:SSZ" */
} pki_issued;

/* Generates a P-256 key pair and a certificate for the identity in o. */
int pki_issue(const pki_issue_opts *o, pki_issued *out, char *err, size_t errcap);
/* Certifies the key of a CSR whose signature verifies; the identity comes from
 * o alone, never from the subject or extensions the CSR asks for. A CSR with a
 * bad signature gives SS_ESIG; a key other than P-256 gives SS_EINVAL. */
int pki_sign_csr(const pki_issue_opts *o, pki_issued *out, char *err, size_t errcap);

/* Revocation reasons (RFC 5280 CRLReason values). */
typedef enum pki_reason {
    PKI_REASON_UNSPECIFIED = 0,
    PKI_REASON_KEY_COMPROMISE = 1,
    PKI_REASON_CA_COMPROMISE = 2,
    PKI_REASON_AFFILIATION_CHANGED = 3,
    PKI_REASON_SUPERSEDED = 4,
    PKI_REASON_CESSATION_OF_OPERATION = 5,
    PKI_REASON_PRIVILEGE_WITHDRAWN = 9
} pki_reason;

/* Parses "keyCompromise", "key-compromise", ... (case-insensitive). Returns the
 * reason or SS_EINVAL. */
int pki_reason_parse(const char *s);
/* RFC 5280 name ("keyCompromise"); "unspecified" for unknown values. */
const char *pki_reason_name(int reason);

typedef struct pki_revoke_opts {
    const char *dir;
    const char *passphrase_file;
    const char *serial; /* hex (colons and 0x allowed), or NULL */
    const char *node;   /* or: every valid certificate of this node */
    int reason;         /* pki_reason */
    int crl_days;       /* nextUpdate of the new CRL; 0 = PKI_CRL_DAYS_DEFAULT */
} pki_revoke_opts;

/* Marks the certificate(s) revoked in the index and re-signs crl.pem.
 * Returns the number revoked (>= 1), SS_ENOENT if nothing matched, SS_EEXIST
 * if the serial is already revoked. */
int pki_revoke(const pki_revoke_opts *o, char *err, size_t errcap);

typedef struct pki_crl_opts {
    const char *dir;
    const char *passphrase_file;
    int days; /* 0 = PKI_CRL_DAYS_DEFAULT */
} pki_crl_opts;

/* Re-signs crl.pem with the next crlNumber, lastUpdate now and nextUpdate
 * now + days. */
int pki_crl(const pki_crl_opts *o, char *err, size_t errcap);

/* Prints the issuance index (serial, node, role, sites, not-after, status) as
 * a table or as JSON. Returns the number of certificates listed. */
int pki_list(const char *dir, int json, FILE *out, char *err, size_t errcap);

/* A certificate as sitesync sees it. */
typedef struct pki_cert_info {
    char subject[256];
    char issuer[256];
    char serial[PKI_SERIAL_HEX_MAX + 1];
    char fingerprint[PKI_FPR_HEX_LEN + 1];
    char not_before[32];
    char not_after[32];
    int64_t not_before_t, not_after_t; /* seconds since the epoch, UTC */
    int is_ca;
    ss_ident ident;
    int ident_rc; /* ss_ident_finish() result: 0 or SS_EIDENT */
    int ndns, nips;
    char dns[PKI_MAX_DNS][256];
    char ips[PKI_MAX_IP][48];
} pki_cert_info;

/* Reads a PEM (or DER) certificate and fills info, parsing the identity with
 * ss_ident_add_uri over every SAN URI exactly as the daemon does. */
int pki_cert_info_load(const char *file, pki_cert_info *info, char *err, size_t errcap);

/* Prints pki_cert_info_load's result as text or JSON. Returns 0 when the
 * certificate is a CA certificate or carries a valid sitesync identity,
 * SS_EIDENT (after printing) when its identity would be refused. */
int pki_show(const char *file, int json, FILE *out, char *err, size_t errcap);

#endif
