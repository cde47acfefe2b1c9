/* chaos_record.c - records a seeded workload of N changes into one gateway's
 * journal through the gateway's own submission path (gw_node_begin +
 * gw_node_submit: schema check, sequence, HLC, durable append), and writes
 * every change whose submission returned success, one JSON line each, so the
 * crash test can compute the reference merge from what the gateway accepted.
 *
 * It exists because the sitesync-gw CLI costs a process start and a key file
 * read per report; the kill -9 test needs 100,000 of them, and records them
 * once per test run with this program instead (same library calls as
 * `sitesync-gw incident`, `incident-update` and `status`).
 *
 * usage: chaos_record JOURNAL_DIR CERT_PEM N SEED OWN_SITE SHARED_SITE OUT_FILE
 *
 * OUT_FILE is appended to, and the journal is held under the same fcntl lock
 * as sitesync-gw takes (<journal>/lock, waiting up to 60 s), so recording can
 * go on in chunks while `sitesync-gw run` syncs the same journal.
 *
 * The mix (per change, seeded): 60 % new incident on OWN_SITE, 14 % update of
 * one of this gateway's live incidents (status, severity, actions_taken), 2 %
 * delete of one (never written again), 12 % status of OWN_SITE, 12 % status
 * of SHARED_SITE (the record every gateway races on, field by field). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/x509_crt.h>

#include "fws/posix.h"
#include "gw/node.h"
#include "gw/tls.h"
#include "proto/err.h"

#define LIVE_MAX 4096 /* live incidents remembered for updates and deletes */

static const char *const levels[] = { "normal", "elevated", "high", "critical" };
static const char *const power[] = { "normal", "backup", "degraded", "outage" };
static const char *const perim[] = { "secure", "alarm", "breached", "unknown" };
static const char *const cats[] = { "intrusion", "sabotage", "cyber", "fire" };
static const char *const states[] = { "open", "acknowledged", "contained", "resolved", "closed" };

#define PICK(rng, arr) (arr[(rng_next(rng) >> 33) % (sizeof(arr) / sizeof(arr[0]))])

/* splitmix64: small, seedable, and the same on every platform. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (!s[0] || s[0] == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (buf) {
        n = fread(buf, 1, cap - 1, f);
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}

static int load_ident(const char *cert_path, ss_ident *id)
{
    char *pem = read_text(cert_path);
    if (!pem)
        return -1;
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem, strlen(pem) + 1);
    if (rc == 0)
        rc = gw_crt_ident(&crt, id, NULL, 0, NULL);
    mbedtls_x509_crt_free(&crt);
    free(pem);
    return rc == 0 ? 0 : -1;
}

/* The journal lock of gateway/main.c: exclusive fcntl lock on <dir>/lock. */
static int lock_journal(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (int waited = 0; waited < 60000; waited += 10) {
        if (fcntl(fd, F_SETLK, &fl) == 0)
            return fd;
        if (errno != EACCES && errno != EAGAIN)
            break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    close(fd);
    return -1;
}

typedef struct workload {
    gw_node node;
    uint64_t rng;
    const char *own, *shared;
    char live[LIVE_MAX][SS_KEY_MAX + 1];
    int nlive;
    FILE *out;
    char line[8192];
} workload;

/* One change: build, submit, and log it only if the submission succeeded. */
static int one_change(workload *w, uint64_t i)
{
    ss_change ch;
    ss_verr err;
    memset(&err, 0, sizeof(err));
    char title[SS_ID_MAX + 48], note[SS_ID_MAX + 48], sev[4], pers[16];
    unsigned r = (unsigned)(rng_next(&w->rng) % 100);
    int rc, created = 0, deleted = -1;
    if (r < 60 || (r < 76 && w->nlive == 0)) {
        rc = gw_node_begin(&w->node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, w->own, &err);
        snprintf(title, sizeof(title), "%s change %" PRIu64, w->node.ident.node, i);
        snprintf(sev, sizeof(sev), "%u", (unsigned)(rng_next(&w->rng) % 5 + 1));
        if (rc == 0)
            rc = ss_change_set_text(&ch, "category", PICK(&w->rng, cats), &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "severity", sev, &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "title", title, &err);
        created = 1;
    } else if (r < 76) {
        int k = (int)(rng_next(&w->rng) % (uint64_t)w->nlive);
        if (r < 74) {
            rc = gw_node_begin(&w->node, &ch, SS_COLL_INCIDENT, SS_OP_UPDATE, w->live[k], w->own,
                               &err);
            snprintf(sev, sizeof(sev), "%u", (unsigned)(rng_next(&w->rng) % 5 + 1));
            snprintf(note, sizeof(note), "step %" PRIu64, i);
            if (rc == 0)
                rc = ss_change_set_text(&ch, "status", PICK(&w->rng, states), &err);
            if (rc == 0 && (rng_next(&w->rng) & 1))
                rc = ss_change_set_text(&ch, "severity", sev, &err);
            if (rc == 0)
                rc = ss_change_set_text(&ch, "actions_taken", note, &err);
        } else {
            rc = gw_node_begin(&w->node, &ch, SS_COLL_INCIDENT, SS_OP_DELETE, w->live[k], w->own,
                               &err);
            deleted = k;
        }
    } else {
        /* Status of the own site, or the shared one: each writes a random
         * subset of fields so the race is decided field by field. */
        const char *site = r < 88 ? w->own : w->shared;
        rc = gw_node_begin(&w->node, &ch, SS_COLL_SITE_STATUS, SS_OP_UPDATE, NULL, site, &err);
        snprintf(note, sizeof(note), "%s %" PRIu64, w->node.ident.node, i);
        snprintf(pers, sizeof(pers), "%u", (unsigned)(rng_next(&w->rng) % 500));
        uint64_t mask = rng_next(&w->rng) | 1;
        if (rc == 0 && (mask & 1))
            rc = ss_change_set_text(&ch, "alert_level", PICK(&w->rng, levels), &err);
        if (rc == 0 && (mask & 2))
            rc = ss_change_set_text(&ch, "power", PICK(&w->rng, power), &err);
        if (rc == 0 && (mask & 4))
            rc = ss_change_set_text(&ch, "perimeter", PICK(&w->rng, perim), &err);
        if (rc == 0 && (mask & 8))
            rc = ss_change_set_text(&ch, "personnel_on_site", pers, &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "note", note, &err);
    }
    if (rc == 0)
        rc = gw_node_submit(&w->node, &ch, &err);
    if (rc < 0) {
        fprintf(stderr, "chaos_record: change %" PRIu64 " refused: %s (%s)\n", i, err.msg,
                ss_err_name(rc));
        return rc;
    }
    int len = ss_change_encode(&ch, w->line, sizeof(w->line));
    if (len < 0)
        return len;
    if (fprintf(w->out, "%s\n", w->line) < 0)
        return SS_EIO;
    if (created && w->nlive < LIVE_MAX) {
        memcpy(w->live[w->nlive], ch.key, strlen(ch.key) + 1);
        w->nlive++;
    } else if (created) {
        /* Keep a moving window of recent incidents. */
        int k = (int)(rng_next(&w->rng) % LIVE_MAX);
        memcpy(w->live[k], ch.key, strlen(ch.key) + 1);
    }
    if (deleted >= 0) {
        w->nlive--;
        if (deleted != w->nlive)
            memcpy(w->live[deleted], w->live[w->nlive], sizeof(w->live[0]));
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: chaos_record JOURNAL_DIR CERT_PEM N SEED OWN_SITE SHARED_SITE "
                        "OUT_FILE\n");
        return 2;
    }
    uint64_t n = 0, seed = 0;
    if (parse_u64(argv[3], 10000000, &n) < 0 || parse_u64(argv[4], UINT64_MAX, &seed) < 0) {
        fprintf(stderr, "chaos_record: N and SEED must be decimal numbers (N <= 10000000)\n");
        return 2;
    }
    static workload w; /* ~400 KB of keys: not on the stack */
    memset(&w, 0, sizeof(w));
    w.rng = seed;
    w.own = argv[5];
    w.shared = argv[6];
    ss_ident id;
    memset(&id, 0, sizeof(id));
    if (load_ident(argv[2], &id) < 0) {
        fprintf(stderr, "chaos_record: %s: not a certificate with a sitesync identity\n", argv[2]);
        return 2;
    }
    fws shim;
    fws_posix *px = NULL;
    fws_posix_config pc = { argv[1], FWS_LOG_WARN, "chaos_record" };
    if (fws_posix_new(&pc, &px, &shim) < 0) {
        fprintf(stderr, "chaos_record: cannot use %s\n", argv[1]);
        return 1;
    }
    int rc = 1;
    int lock_fd = lock_journal(argv[1]);
    if (lock_fd < 0) {
        fprintf(stderr, "chaos_record: journal %s: lock not obtained within 60 s\n", argv[1]);
        fws_posix_destroy(px);
        return 1;
    }
    gw_journal_config jc;
    gw_journal_config_default(&jc);
    gw_node_init(&w.node);
    int orc = gw_node_open(&w.node, &shim, &id, &jc);
    if (orc < 0) {
        fprintf(stderr, "chaos_record: journal %s: %s\n", argv[1], ss_strerror(orc));
        goto exit;
    }
    w.out = fopen(argv[7], "a");
    if (!w.out) {
        fprintf(stderr, "chaos_record: cannot write %s\n", argv[7]);
        goto exit;
    }
    for (uint64_t i = 1; i <= n; i++)
        if (one_change(&w, i) < 0)
            goto exit;
    rc = 0;
exit:
    if (w.out && fclose(w.out) != 0)
        rc = 1;
    gw_node_free(&w.node);
    close(lock_fd); /* drops the lock */
    fws_posix_destroy(px);
    return rc;
}
