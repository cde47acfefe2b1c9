/* tc.h - helpers for sitesyncd integration tests: a fresh PKI per test from
 * sitesync-pki, a daemon process on 127.0.0.1 with a port file, and a
 * blocking OpenSSL test client speaking the sitesync frame protocol. */
#ifndef TC_H
#define TC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/schema.h"

/* A test's scratch directory with a CA in it (DIR/ca.crt, DIR/crl.pem) and
 * the daemon's certificate (DIR/daemon.crt/.key). */
typedef struct tc_env {
    char dir[256];
} tc_env;

void tc_env_setup(tc_env *e);
/* Removes the directory unless the test failed (then it stays for study). */
void tc_env_cleanup(tc_env *e);
/* Issues DIR/<node>.crt/.key; sites is a comma-separated list or NULL. */
void tc_issue(tc_env *e, const char *role, const char *node, const char *sites);
void tc_revoke(tc_env *e, const char *node);
/* Runs a command, returns its exit status (or -1). */
int tc_run(char *const argv[], const char *out_file);
/* path = DIR/name into buf. */
const char *tc_path(const tc_env *e, const char *name, char *buf, size_t cap);

typedef struct tc_daemon {
    pid_t pid;
    int port;
    char log[300];
    char db[300];
} tc_daemon;

/* Starts sitesyncd with the env's PKI on 127.0.0.1:0 and the extra flags
 * (NULL-terminated "--key", "value" list); waits for its port file. */
void tc_daemon_start(tc_env *e, tc_daemon *d, const char *const *extra);
/* Sends sig and waits up to timeout_ms; returns the wait status, or -1 if
 * the process had to be killed. */
int tc_daemon_stop(tc_daemon *d, int sig, int timeout_ms);
int tc_daemon_alive(tc_daemon *d);
/* Number of lines of the daemon log containing needle. */
int tc_log_count(const tc_daemon *d, const char *needle);
/* Waits up to timeout_ms for needle to appear in the log; returns 1/0. */
int tc_log_wait(const tc_daemon *d, const char *needle, int timeout_ms);

typedef struct tc_client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    ss_fdec dec;
    char node[SS_ID_MAX + 1];
    uint8_t rx[16384]; /* decrypted bytes not yet fed to dec */
    size_t rx_pos, rx_len;
    /* Origin signatures: tc_send_frame signs every unsigned BATCH envelope
     * with DIR/<origin>.key and DIR/<origin>.crt when those exist, as the
     * origin gateway would (the daemon requires signatures by default).
     * no_sign = 1 sends envelopes exactly as given. */
    char dir[256];
    int no_sign;
    char sign_node[SS_ID_MAX + 1]; /* whose key is loaded below */
    EVP_PKEY *sign_key;
    uint8_t *sign_cert;
    size_t sign_cert_len;
    /* CRL frames the daemon sent (relay sessions): tc_recv_frame takes them
     * out of the stream; the last one's DER is kept. */
    int ncrl;
    uint8_t *crl;
    uint32_t crl_len;
} tc_client;

typedef struct tc_tls_opts {
    int max_version; /* 0: default */
    int min_version;
    int no_cert;      /* present no client certificate */
    const char *ca;   /* override trust anchor file */
    const char *cert; /* override cert/key files */
    const char *key;
    int rcvbuf; /* SO_RCVBUF set before connecting, 0: default */
    /* Local source address to bind before connecting (another loopback
     * address such as "127.0.0.2"), NULL: chosen by the kernel. */
    const char *src_ip;
} tc_tls_opts;

/* TCP connect to 127.0.0.1:port (blocking, 10 s receive timeout). */
int tc_tcp_connect(int port);
int tc_tcp_connect_buf(int port, int rcvbuf);
/* As tc_tcp_connect_buf, from the local address src_ip (NULL: any). */
int tc_tcp_connect_from(int port, int rcvbuf, const char *src_ip);
/* Connects with DIR/<node>.crt. Returns 0 or -1 if the TLS handshake failed. */
int tc_connect(tc_client *c, tc_env *e, int port, const char *node, const tc_tls_opts *o);
void tc_close(tc_client *c);

int tc_send_raw(tc_client *c, const void *p, size_t n);
/* Sends a frame (a BATCH envelope signed first, see tc_client). */
int tc_send_frame(tc_client *c, int type, const void *payload, size_t len);
/* Sends a frame exactly as given, with these frame flags. */
int tc_send_frame_flags(tc_client *c, int type, unsigned flags, const void *payload, size_t len);
/* A ROUTED BATCH: the hops (NULL-terminated, nearest the origin first), then
 * the envelope as given (sign it first if it should be signed). */
int tc_send_routed(tc_client *c, const char *const *hops, const uint8_t *env, size_t len);

/* Signs an unsigned envelope as its origin would: sets the SIGNED flag and
 * appends the signature block (alg, certificate DER, ECDSA over SHA-256 of
 * the signed region) made with the PEM certificate and key files. Returns a
 * malloc'd envelope. */
uint8_t *tc_sign_envelope(const char *cert_file, const char *key_file, const uint8_t *env,
                          size_t len, size_t *out_len);
/* The same with DIR/<node>.crt and DIR/<node>.key. */
uint8_t *tc_sign_as(const tc_env *e, const char *node, const uint8_t *env, size_t len,
                    size_t *out_len);
int tc_send_msg(tc_client *c, const ss_msg *m);
/* Receives one frame: 1 (payload malloc'd into *payload), 0 closed, -1
 * timeout or error. */
int tc_recv_frame(tc_client *c, int timeout_ms, int *type, uint8_t **payload, uint32_t *len);
/* Fails the test unless the server closes the connection within timeout_ms
 * (frames before the close, such as BYE or ERROR, are read and dropped). */
void tc_expect_closed(tc_client *c, int timeout_ms);
/* Receives and decodes one control message: 1, 0 closed, -1 error. */
int tc_recv_msg(tc_client *c, int timeout_ms, ss_msg *m);
/* HELLO as node/role (origins optional), returns the WELCOME. Asserts. */
void tc_hello(tc_client *c, const char *role, const char *const *origins, ss_welcome *w);
/* Committed seq for origin in a WELCOME (asserts it is listed). */
uint64_t tc_welcome_seq(const ss_welcome *w, const char *origin);

/* A site_status update of site (= key) setting note (and alert_level if
 * not NULL). */
void tc_change_status(ss_change *ch, uint64_t seq, ss_hlc_t hlc, const char *site, const char *note,
                      const char *alert);
/* Builds an envelope of n changes (their seqs must run from first_seq);
 * returns a malloc'd buffer. */
uint8_t *tc_envelope(const char *origin, const ss_change *chs, uint32_t n, size_t *len);
/* Sends one BATCH of n status changes for origin/site from first_seq with
 * notes "<tag>-<seq>". */
void tc_send_batch(tc_client *c, const char *origin, const char *site, uint64_t first_seq,
                   uint32_t n, const char *tag, ss_hlc_t hlc0);
/* Waits for an ACK covering origin up to seq (skipping other frames but
 * failing on ERROR). Returns the last acked seq. */
uint64_t tc_wait_ack(tc_client *c, const char *origin, uint64_t seq, int timeout_ms);

int64_t tc_now_ms(void);
/* Current physical time as an HLC with counter 0. */
ss_hlc_t tc_hlc_now(void);

/* Read-only SQLite queries on the daemon's database: one integer. */
int64_t tc_sql_int(const char *db, const char *sql);
/* One text value into buf ("" if no row). */
const char *tc_sql_text(const char *db, const char *sql, char *buf, size_t cap);

/* The merged fields of a site_status record as JSON ("" if absent), read
 * through a read-only sd_store handle (its sd_doc() SQL function). */
const char *tc_record_doc(const char *db, const char *key, char *buf, size_t cap);

#endif
