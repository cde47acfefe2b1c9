/* tls.h - sitesyncd's TLS layer on OpenSSL: the server SSL_CTX (mutual TLS,
 * TLS 1.2 ECDHE+AEAD or TLS 1.3, CRL checked, no renegotiation, compression
 * or resumption), per-connection SSL objects over memory BIOs (the loop
 * moves bytes; OpenSSL never touches a socket), and identity extraction from
 * the verified peer certificate. */
#ifndef SD_TLS_H
#define SD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "proto/ident.h"

#define SD_TLS_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:" \
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"
#define SD_TLS_CIPHERSUITES \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* Builds a server context from PEM files: our certificate chain and key, the
 * CA peers must chain to, and the CRL (required: every client certificate is
 * checked against it). Returns 0 with *out (free with SSL_CTX_free), or
 * SS_ECERT / SS_EIO / SS_ENOMEM with a message naming the file in err. */
int sd_tls_ctx_new(const char *ca, const char *crl, const char *cert, const char *key,
                   SSL_CTX **out, char *err, size_t errcap);

/* 1 if the certificate carries an extendedKeyUsage extension that includes
 * clientAuth (required of every peer certificate), else 0. */
int sd_tls_cert_client_eku(X509 *cert);

/* Identity (SAN URIs) of a certificate. Returns 0 or SS_EIDENT. */
int sd_tls_cert_ident(X509 *cert, ss_ident *id);
/* SHA-256 of the DER, lowercase hex (65 bytes with NUL), and the serial in
 * lowercase hex (up to 40 digits + NUL). Returns 0 or SS_EINTERNAL. */
int sd_tls_cert_fingerprint(X509 *cert, char fp[65], char serial[41]);

/* Why a handshake failed, recorded by the verify callback (the peer
 * certificate is not kept by OpenSSL when verification fails). */
typedef struct sd_tls_fail {
    int verify_err; /* X509_V_ERR_*, 0 if verification did not fail */
    int have_cert;  /* the leaf below was seen */
    char node[SS_ID_MAX + 1];
    char fingerprint[65];
    char serial[41];
} sd_tls_fail;

/* One connection's TLS: SSL in server mode over two memory BIOs. */
typedef struct sd_tls_conn {
    SSL *ssl;
    BIO *rbio; /* network bytes in (BIO_write by the loop) */
    BIO *wbio; /* network bytes out (BIO_read by the loop) */
    sd_tls_fail fail;
} sd_tls_conn;

void sd_tls_conn_init(sd_tls_conn *t);
/* Returns 0 or SS_ENOMEM. */
int sd_tls_conn_setup(sd_tls_conn *t, SSL_CTX *ctx);
/* Safe on an initialised or freed struct. */
void sd_tls_conn_free(sd_tls_conn *t);

/* Identity of the verified peer: node/role/sites from the certificate's SAN
 * URIs, fingerprint and serial. Call after the handshake. Returns 0,
 * SS_ECERT (no verified certificate) or SS_EIDENT. */
int sd_tls_peer(SSL *ssl, ss_ident *id, char fp[65], char serial[41]);

/* Re-verifies a live session's peer certificate against ctx's trust store and
 * CRL (after SIGHUP). Returns 0, SS_EREVOKED or SS_ECERT (with the reason in
 * err). */
int sd_tls_recheck(SSL_CTX *ctx, SSL *ssl, char *err, size_t errcap);

/* Pops OpenSSL's error queue into err as text ("" if empty); returns err. */
const char *sd_tls_errors(char *err, size_t errcap);

#endif
