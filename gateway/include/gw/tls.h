/* tls.h - the gateway's mutual-TLS client on mbed TLS 2.28: TLS 1.2 only,
 * ECDHE-ECDSA with AES-GCM or ChaCha20-Poly1305, the daemon verified against
 * the sitesync CA and an expected name, the gateway's own certificate
 * presented. mbed TLS runs over mbedtls_ssl_set_bio callbacks into the shim
 * and its DRBG is seeded from the shim's entropy only. Key material arrives
 * as PEM buffers: reading files is the program's job, not the core's. Also
 * the identity helpers (SAN URIs of a certificate -> ss_ident) and on-device
 * key + CSR generation for enrolment. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "fws/fws.h"
#include "gw/transport.h"
#include "proto/ident.h"

typedef struct gw_tls_config {
    const char *ca_pem;   /* NUL-terminated PEM (the sitesync CA) */
    const char *cert_pem; /* this gateway's certificate (PEM) */
    const char *key_pem;  /* its private key (PEM) */
    /* Name the daemon's certificate must carry: a DNS name (checked by mbed
     * TLS against SAN dNSName/CN) or an IP literal (checked here against SAN
     * iPAddress, which mbed TLS 2.28 does not do). */
    const char *server_name;
    /* 1 when the caller has already checked that key_pem belongs to
     * cert_pem (gw_signer_setup does, on the same PEM): the check is a P-256
     * scalar multiplication, about 3% of a short sync's instructions. */
    int key_checked;
} gw_tls_config;

/* Caller-allocated; init cannot fail, setup can, free wipes and is safe
 * twice. One gw_tls holds one connection at a time. */
typedef struct gw_tls {
    const fws *shim;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    ss_ident ident; /* from our own certificate */
    char server_name[256];
    int name_is_ip;
    uint8_t ip[16];
    size_t ip_len;
    fws_sock *sock;
    uint32_t timeout_ms; /* for the bio callbacks of the current call */
    int ssl_ready, setup_done;
} gw_tls;

/* The suites every mbed TLS side of sitesync offers, in preference order,
 * 0-terminated: gateway and hub-upstream clients, and the hub's listener. */
extern const int gw_tls_suites[];

void gw_tls_init(gw_tls *t);
/* Parses the CA, certificate and key, checks that the key matches the
 * certificate (unless cfg->key_checked), derives this gateway's identity from its SAN URIs and
 * seeds the DRBG from the shim. Returns 0 or SS_ECERT (unparsable or mismatched PEM, message
 * logged), SS_EIDENT (certificate without a valid sitesync identity), SS_EIO (no entropy). */
int gw_tls_setup(gw_tls *t, const fws *shim, const gw_tls_config *cfg);
/* The identity from our certificate (valid after setup). */
const ss_ident *gw_tls_ident(const gw_tls *t);
/* Connects and performs the handshake within timeout_ms, verifies the peer
 * (chain, name, and that it is a sitesync daemon or relay). Returns 0 with
 * *out, or SS_ECLOSED / SS_ETIMEDOUT / SS_ECERT (verification failed: the
 * reason is logged) / SS_EIO. */
int gw_tls_connect(gw_tls *t, const char *host, uint16_t port, uint32_t timeout_ms, gw_stream *out);
void gw_tls_free(gw_tls *t);

/* The post-handshake checks of gw_tls_connect on any client session made
 * with t's configuration: the peer carries a sitesync identity of a daemon
 * or relay, and, for an IP literal as expected name, a matching iPAddress
 * SAN. Returns 0 or SS_ECERT (reason logged); *peer_out (optional) gets the
 * identity. */
int gw_tls_verify_peer(gw_tls *t, const mbedtls_ssl_context *ssl, const char *host,
                       ss_ident *peer_out);

/* --- non-blocking TLS over a shim socket (relay mode) ---
 * One connection, either side, driven by the caller's poll loop: the bio
 * callbacks never wait (fws_send / fws_recv with timeout 0), so "would
 * block" surfaces as 0 / 1 returns here, and writes are buffered in a
 * plaintext output buffer of fixed size. */
typedef struct gw_nbconn {
    const fws *shim;
    fws_sock *sock;
    mbedtls_ssl_context ssl;
    uint8_t *out; /* plaintext not yet taken by mbedtls_ssl_write */
    size_t out_len, out_cap;
    size_t wpend; /* length of a write that returned WANT_WRITE: retried as is */
    int hs_done, started, eof;
} gw_nbconn;

void gw_nb_init(gw_nbconn *c);
/* Takes ownership of sock and starts a session with conf (hostname: the name
 * to verify for a client, NULL otherwise). Returns 0 or SS_ENOMEM / SS_EIO
 * (sock is closed on failure). */
int gw_nb_start(gw_nbconn *c, const fws *shim, fws_sock *sock, const mbedtls_ssl_config *conf,
                const char *hostname, size_t out_cap);
/* Advances the handshake: 0 done, 1 in progress, or SS_ECERT (the peer's
 * certificate failed verification: flags logged), SS_ECLOSED, SS_EIO. */
int gw_nb_handshake(gw_nbconn *c);
/* Reads application data: > 0 bytes, 0 nothing now, SS_ECLOSED, SS_EIO. */
int gw_nb_read(gw_nbconn *c, uint8_t *buf, size_t cap);
/* Queues bytes; SS_ENOSPC if they do not fit (nothing queued). */
int gw_nb_queue(gw_nbconn *c, const void *buf, size_t len);
size_t gw_nb_room(const gw_nbconn *c);
/* Pushes queued bytes: 0 all sent, 1 some left (poll for output), < 0 error. */
int gw_nb_flush(gw_nbconn *c);
/* 1 if the connection has bytes waiting for the socket to drain. */
int gw_nb_want_write(const gw_nbconn *c);
/* Sends close_notify (best effort), closes the socket, frees. Safe twice. */
void gw_nb_close(gw_nbconn *c);

/* Feeds every SAN URI of a parsed certificate into id (walking the
 * extension: mbed TLS 2.28 lists only dNSName and otherName). Returns 0 or
 * SS_EIDENT. If ips/nips are given, iPAddress entries are counted and the
 * first matching `want` (len bytes) sets *ip_match. */
int gw_crt_ident(const mbedtls_x509_crt *crt, ss_ident *id, const uint8_t *want, size_t want_len,
                 int *ip_match);

/* Makes an ECDSA P-256 key on the device and a CSR for `sitesync-pki
 * sign-csr` (subject CN=node). key_pem/csr_pem receive NUL-terminated PEM.
 * Returns 0 or SS_ENOSPC / SS_EIO. The key buffer must be wiped by the
 * caller after writing it out. */
int gw_enroll_make(const fws *shim, const char *node, char *key_pem, size_t key_cap, char *csr_pem,
                   size_t csr_cap);

#endif
