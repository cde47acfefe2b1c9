/* hx.h - helpers for the hostile-peer and TLS-profile tests of sitesyncd:
 * a swarm of slowloris sockets driven by one poll loop, an honest workload
 * that times each session, a look at the daemon process (descriptors,
 * memory), and certificate crafting for the refusal cases. Built on the
 * integration client of tests/daemon (tc.h). */
#ifndef HX_H
#define HX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tc.h"

/* 1 when the suite runs under ASan+UBSan (SITESYNC_ASAN=1, set by CMake):
 * the counts below are scaled down there and docs/reliability.md says how. */
int hx_asan(void);
/* normal or asan, by hx_asan(). */
int hx_scale(int normal, int asan);

/* Raises this process's soft RLIMIT_NOFILE to at least need (up to the hard
 * limit); fails the test if the hard limit is below need. */
void hx_need_fds(int need);

/* Open descriptors and resident memory (kB) of a process, from /proc. */
int hx_proc_fds(pid_t pid);
long hx_proc_rss_kb(pid_t pid);
/* Waits until the daemon's descriptor count is at most target (up to
 * timeout_ms); returns the last count seen. */
int hx_wait_fds_at_most(pid_t pid, int target, int timeout_ms);

void hx_sleep_ms(int ms);

/* A TLS 1.3/1.2 ClientHello as a real client would send it first (made over
 * memory BIOs, no network). Returns its length. */
size_t hx_client_hello(uint8_t *out, size_t cap);

/* ---- slowloris swarm --------------------------------------------------- */

typedef struct hx_swarm {
    int port;
    int n;           /* sockets held open */
    int trickle_ms;  /* interval between two bytes of a trickling socket */
    int spread_ms;   /* the first connects are spread over this long */
    const char *src; /* source address, NULL: any */
    int max_reconnects;
    uint8_t hello[2048];
    size_t hello_len;
    pthread_t thread;
    volatile int stop;
    /* Statistics (written by the swarm thread, read after hx_swarm_stop or
     * as a snapshot while it runs). */
    volatile int established; /* sockets connected right now */
    volatile long connects, cut, connect_failed, bytes_sent;
    /* While `track` is set: the fewest sockets held, and the mean over the
     * swarm loop's turns (about every 10 ms). */
    volatile int track;
    int min_held;
    double held_sum;
    long held_turns;
} hx_swarm;

/* Starts n sockets against 127.0.0.1:port: the even ones connect and stay
 * silent, the odd ones send a ClientHello one byte every trickle_ms. A socket
 * the daemon closes is replaced (at most max_reconnects times in all). The
 * first connects are spread evenly over spread_ms, as independent attackers'
 * would be, so that the daemon's deadline does not cut them all at once. */
void hx_swarm_start(hx_swarm *s, int port, int n, int trickle_ms, int spread_ms, const char *src);
/* Waits up to timeout_ms for `established` to reach want; returns it. */
int hx_swarm_wait(hx_swarm *s, int want, int timeout_ms);
void hx_swarm_stop(hx_swarm *s);
/* Mean sockets held while tracking (0 if never tracked). */
double hx_swarm_mean_held(const hx_swarm *s);

/* ---- honest workload --------------------------------------------------- */

typedef struct hx_workload {
    int clients;  /* gateways gw0..gw<clients-1>, site s<i>, issued by hx_issue_honest */
    int sessions; /* per client, one after the other */
    int batches;  /* per session, pipelined */
    int changes;  /* per batch */
} hx_workload;

typedef struct hx_result {
    int n;      /* sessions timed */
    double *ms; /* session times, sorted */
    double p50, p99, max;
    double wall_ms; /* whole workload */
} hx_result;

void hx_issue_honest(tc_env *e, int clients);
/* Runs the workload (each client a thread; a session is TCP connect, TLS,
 * HELLO/WELCOME, the batches, and the ACK of the last one). Every session
 * must succeed. */
void hx_run_workload(tc_env *e, int port, const hx_workload *w, hx_result *r);
void hx_result_free(hx_result *r);
/* p-th percentile (nearest rank) of sorted values. */
double hx_percentile(const double *sorted, int n, double p);

/* ---- protocol helpers -------------------------------------------------- */

/* Connects as node and completes HELLO/WELCOME. */
void hx_session(tc_env *e, int port, tc_client *c, const char *node);
/* Reads frames until an ERROR (returned in *m, caller frees) or the end:
 * returns 1 for an ERROR, 0 if the connection closed first, -1 on timeout.
 * ACK frames before it are skipped. */
int hx_recv_error(tc_client *c, int timeout_ms, ss_msg *m);
/* Expects an ERROR with code, then the close. */
void hx_expect_error(tc_client *c, int code);
/* One batch of n changes from a bystander session, and its ACK. */
void hx_bystander_batch(tc_client *c, const char *node, const char *site, uint64_t *next_seq,
                        uint32_t n);

/* ---- certificates ------------------------------------------------------ */

typedef enum hx_eku {
    HX_EKU_NONE = 0,   /* no extendedKeyUsage extension */
    HX_EKU_SERVER = 1, /* serverAuth only */
    HX_EKU_CLIENT = 2  /* clientAuth */
} hx_eku;

/* Writes DIR/<name>.crt/.key: a P-256 leaf with a gateway identity (node,
 * role gateway, site) and the given EKU, signed by the CA in ca_dir
 * (ca.crt, private/ca.key), or self-signed when ca_dir is NULL. */
void hx_make_cert(const tc_env *e, const char *name, const char *ca_dir, const char *node,
                  const char *site, hx_eku eku);

/* Runs argv under faketime(1) with the offset (e.g. "-20d"); returns the exit
 * status. */
int hx_run_faketime(const char *offset, char *const argv[], const char *out_file);
/* 1 if faketime(1) is installed. */
int hx_have_program(const char *name);

/* ---- pieces shared by the daemon's and the hub's suites ------------------ */

/* One line of session times, the label padded to width (each suite keeps its
 * own column width). */
void hx_print_result(const char *what, int width, const hx_result *r);

/* A connection flooder (a thread body, hx_flood_main(f)): up to max connects
 * to 127.0.0.1:port from src (NULL: any), paced at rate a second, for at most
 * ms or until *stop; with garbage, each sends TLS garbage or half of hello
 * before closing (mostly resets, one in four an orderly close). */
typedef struct hx_flood {
    int port;
    const char *src;    /* NULL: 127.0.0.1 */
    int garbage;        /* send bytes before closing (TLS garbage / partial hello) */
    int ms;             /* upper bound on the flood's duration */
    int rate;           /* connects per second */
    volatile int *stop; /* set when the honest workload is done */
    long max;
    int64_t took;
    long connects, failed;
    uint8_t hello[2048];
    size_t hello_len;
} hx_flood;
void *hx_flood_main(void *arg);

/* Sends a valid gateway HELLO for node (its failure is ignored: the server
 * may have closed already). */
void hx_send_hello(tc_client *c, const char *node);
/* 1 if a TLS handshake and HELLO/WELCOME as node succeed, else 0. */
int hx_try_session(tc_env *e, int port, const char *node, tc_tls_opts *o);
/* Sends a BATCH of four site_status changes of s1 from gw1, seq..seq+3;
 * returns tc_send_frame's result (nonzero once the peer has cut us). */
int hx_send_status_batch(tc_client *c, uint64_t seq);
/* Encodes 64 PING frames into burst (cap bytes, 128 * 64 is enough), bumping
 * m->u.ping.nonce for each; returns the bytes written. */
size_t hx_ping_burst(ss_msg *m, uint8_t *burst, size_t cap);
/* An envelope from gw1 (seq 1, one change) around body; caller frees. */
uint8_t *hx_batch_of(const char *body, size_t *len);
/* A one-change site_status batch body with the given fields; caller frees. */
char *hx_change_with(const char *fields);
/* depth nested arrays, or objects {"a":...}, around 1; caller frees. */
char *hx_deep(size_t depth, int objects);

/* A valid frame of type (HELLO .. BYE, not BATCH) with sample contents, as
 * from gw1 to the server (a WELCOME or ERROR being wrong in that direction
 * is the point for some tests); returns ss_msg_encode_frame's result. */
int hx_sample_frame(int type, uint8_t *buf, size_t cap);

/* ---- TLS profile ---------------------------------------------------------- */

/* 1 if sslscan's suite name is inside the profile for proto (TLS 1.3's AEAD
 * suites; TLS 1.2 ECDHE with GCM or ChaCha20-Poly1305). */
int hx_allowed_cipher(const char *proto, const char *name);
/* Sends a TLS 1.2 ClientHello offering DEFLATE before null to 127.0.0.1:port
 * and returns the compression method of the ServerHello (its suite in
 * *suite); fails the test, naming who, if the server answers with an alert. */
unsigned hx_compression_probe(int port, const char *who, unsigned *suite);
/* Makes e->dir ($TMPDIR/sitesync-<tag>-XXXXXX) and a PKI in it with
 * sitesync-pki under faketime: the CA made 30 days ago, "expired" (gw-old,
 * issued at -20d for 1 day) and "future" (gw-new, from +20d), and a CRL
 * signed now. */
void hx_times_pki(tc_env *e, const char *tag);

#endif
