/* main.c - sitesync-gw, the facility gateway's command line: parses options
 * and the config file, reads key material, takes the journal lock and wires
 * the posix shim, the journal, the node and the mbed TLS sync client
 * together. The logic lives in the gw library.
 *
 * Concurrency between processes: every command that touches the journal
 * holds an exclusive fcntl(2) lock on <journal>/lock while it does, and `run`
 * takes it only for each sync pass (open journal, sync, close), releasing it
 * in between. A submission from another process therefore waits for at most
 * one sync pass (bounded by lock_timeout_ms) and never sees a half-open
 * journal. The lock lives here because it is the program layer's business
 * (libc I/O is allowed here, not in the core), and fcntl locks vanish with
 * the process, so a killed `run` never leaves a stale lock.
 *
 * Relay mode (`relay`, and `journal` on a hub's directory) lives in
 * cli_relay.c and is built in only with -DSITESYNC_GW_RELAY=ON (the default;
 * GW_WITH_RELAY here): a site gateway's firmware build leaves it, and the
 * whole gw_hub library, out of the binary. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fws/posix.h"
#include "gw/config.h"
#include "gw/node.h"
#include "gw/sync.h"
#include "gw/tls.h"
#include "proto/alloc.h"
#include "proto/err.h"

#ifndef GW_WITH_RELAY
#error "GW_WITH_RELAY must be 0 or 1 (gateway/CMakeLists.txt sets it from SITESYNC_GW_RELAY)"
#endif

#if GW_WITH_RELAY
#define USAGE_RELAY                                                                        \
    "  relay                                 regional hub: listen (--listen), store and\n" \
    "                                        forward to --server; SIGHUP reloads --crl\n"
#else
#define USAGE_RELAY \
    "  relay                                 (hub mode: not built into this binary)\n"
#endif

/* Kept as written: clang-format would break the lines around USAGE_RELAY. */
/* clang-format off */
static const char usage_text[] =
    "usage: sitesync-gw [options] <command> [command options]\n"
    "\n"
    "commands:\n"
    "  status --set FIELD=VALUE ...          update this site's status record\n"
    "  incident --category C --severity N --title T [--description D]\n"
    "           [--occurred-at T] [--location L] [--reported-by R] [--status S]\n"
    "           [--actions-taken A]          record an incident; prints its key\n"
    "  incident-update KEY --set FIELD=VALUE ...   follow-up change of an incident\n"
    "  sync                                  send everything pending; exit 0 when drained\n"
    "  run                                   keep syncing (SIGTERM/SIGINT stop cleanly)\n"
    USAGE_RELAY
    "  journal                               pending, committed, capacity, last sync/error,\n"
    "                                        refused changes\n"
    "  enroll --node ID --out PREFIX         make a key pair and a CSR on this device\n"
    "  print-config                          show every setting and its value\n"
    "\n"
    "options (every setting of the config file is also a flag, '_' written '-'):\n"
    "  --config FILE      JSON config file (flags override it)\n"
    "  --server HOST:PORT --ca FILE --cert FILE --key FILE --journal DIR\n"
    "  --capacity BYTES   --site ID --server-name NAME --log-level LEVEL ...\n"
    "  --help             this text; `print-config` lists all settings\n"
    "\n"
    "exit codes: 0 ok, 1 usage/config, 2 input refused, 3 link failed (data kept),\n"
    "            4 daemon refused changes or entries lost to corruption,\n"
    "            5 storage error, 6 journal locked\n";
/* clang-format on */

/* ---- small program-layer helpers (libc I/O is allowed here) ------------- */

static volatile sig_atomic_t stop_requested;   /* set by the SIGTERM/SIGINT handler */
static volatile sig_atomic_t reload_requested; /* set by SIGHUP (relay: reload the CRL) */

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_requested = 1;
    else
        stop_requested = 1;
}

void gw__catch_signals(int hup)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (hup)
        sigaction(SIGHUP, &sa, NULL);
}

int gw__read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > (64u << 20)) {
                free(buf);
                fclose(f);
                return -EFBIG;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return -EIO;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

static void wipe_free(char *p, size_t n)
{
    if (p) {
        ss_zeroize(p, n);
        free(p);
    }
}

int gw__lock_take(prog *p, const char *dir, uint64_t timeout_ms)
{
    lock *l = &p->lk;
    char path[GW_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/lock", dir);
    (void)mkdir(dir, 0700);
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0) {
        fprintf(stderr, "sitesync-gw: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_STORAGE;
    }
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (uint64_t waited = 0;; waited += 10) {
        if (fcntl(l->fd, F_SETLK, &fl) == 0)
            return 0;
        if (errno != EACCES && errno != EAGAIN) {
            fprintf(stderr, "sitesync-gw: lock %s: %s\n", path, strerror(errno));
            break;
        }
        if (waited >= timeout_ms || *p->stop) {
            fprintf(stderr,
                    "sitesync-gw: journal %s is locked by another sitesync-gw process "
                    "(waited %" PRIu64 " ms; see lock_timeout_ms)\n",
                    dir, waited);
            break;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    close(l->fd);
    l->fd = -1;
    return EXIT_LOCKED;
}

void gw__lock_release(prog *p)
{
    if (p->lk.fd >= 0)
        close(p->lk.fd); /* drops the fcntl lock */
    p->lk.fd = -1;
}

static int log_level_num(const char *s)
{
    if (strcmp(s, "error") == 0)
        return FWS_LOG_ERROR;
    if (strcmp(s, "warn") == 0)
        return FWS_LOG_WARN;
    if (strcmp(s, "debug") == 0)
        return FWS_LOG_DEBUG;
    return FWS_LOG_INFO;
}

static void format_time(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0) {
        snprintf(buf, cap, "never");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- the program context ---------------------------------------------- */

static int shim_open(prog *p, const char *dir)
{
    fws_posix_config pc;
    memset(&pc, 0, sizeof(pc));
    pc.dir = dir;
    pc.log_level = log_level_num(p->cfg.log_level);
    pc.log_tag = "sitesync-gw";
    int rc = fws_posix_new(&pc, &p->posix, &p->shim);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: cannot use journal directory %s: %s\n", dir ? dir : "(none)",
                fws_strerror(rc));
        return EXIT_STORAGE;
    }
    return 0;
}

/* The node identity comes from the certificate's SAN URIs. */
int gw__load_identity(prog *p, int with_keys)
{
    int rc = gw__read_file(p->cfg.cert, &p->cert_pem, NULL);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: cert %s: %s\n", p->cfg.cert, strerror(-rc));
        return EXIT_USAGE;
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)p->cert_pem, strlen(p->cert_pem) + 1);
    if (rc == 0)
        rc = gw_crt_ident(&crt, &p->ident, NULL, 0, NULL);
    mbedtls_x509_crt_free(&crt);
    if (rc != 0) {
        fprintf(stderr,
                "sitesync-gw: cert %s: not a certificate with a sitesync identity "
                "(urn:sitesync:node/role/site URIs)\n",
                p->cfg.cert);
        return EXIT_USAGE;
    }
    if (p->ident.role != SS_ROLE_GATEWAY && p->ident.role != SS_ROLE_RELAY) {
        fprintf(stderr, "sitesync-gw: cert %s: role %s, not a gateway or relay\n", p->cfg.cert,
                ss_role_name(p->ident.role));
        return EXIT_USAGE;
    }
    if (!with_keys)
        return 0;
    rc = gw__read_file(p->cfg.ca, &p->ca_pem, NULL);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: ca %s: %s\n", p->cfg.ca, strerror(-rc));
        return EXIT_USAGE;
    }
    struct stat st;
    if (stat(p->cfg.key, &st) == 0 && (st.st_mode & 077) != 0) {
        fprintf(stderr, "sitesync-gw: key %s is readable by others (mode %03o); chmod 600 it\n",
                p->cfg.key, (unsigned)(st.st_mode & 0777));
        return EXIT_USAGE;
    }
    rc = gw__read_file(p->cfg.key, &p->key_pem, &p->key_len);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: key %s: %s\n", p->cfg.key, strerror(-rc));
        return EXIT_USAGE;
    }
    return 0;
}

static void prog_free(prog *p)
{
    gw__lock_release(p);
    if (p->posix)
        fws_posix_destroy(p->posix);
    p->posix = NULL;
    free(p->ca_pem);
    free(p->cert_pem);
    wipe_free(p->key_pem, p->key_len);
    p->ca_pem = p->cert_pem = p->key_pem = NULL;
}

/* Lock + open the node (journal recovery included). */
static int node_open(prog *p, gw_node *n)
{
    int rc = gw__lock_take(p, p->cfg.journal, p->cfg.lock_timeout_ms);
    if (rc != 0)
        return rc;
    gw_journal_config jc;
    gw_config_journal(&p->cfg, &jc);
    rc = gw_node_open(n, &p->shim, &p->ident, &jc);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: journal %s: %s\n", p->cfg.journal, ss_strerror(rc));
        gw__lock_release(p);
        return EXIT_STORAGE;
    }
    return 0;
}

static void node_close(prog *p, gw_node *n)
{
    gw_node_free(n);
    gw__lock_release(p);
}

/* ---- submissions ------------------------------------------------------- */

static int report_refusal(int rc, const ss_verr *err)
{
    /* Proto's messages usually start with the field name already. */
    int named = err->field[0] && strncmp(err->msg, err->field, strlen(err->field)) != 0;
    fprintf(stderr, "sitesync-gw: refused: %s%s%s (%s)\n", named ? err->field : "",
            named ? ": " : "", err->msg[0] ? err->msg : ss_strerror(rc), ss_err_name(rc));
    return rc == SS_EIO ? EXIT_STORAGE : EXIT_REFUSED;
}

/* Applies "--set FIELD=VALUE" pairs. */
static int apply_sets(ss_change *ch, int argc, char **argv, int i, const char **key_out,
                      ss_verr *err)
{
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i])
                return ss_verr_set(err, SS_EINVAL, "", "--set wants FIELD=VALUE, got \"%s\"",
                                   argv[i]);
            *eq = '\0';
            int rc = ss_change_set_text(ch, argv[i], eq + 1, err);
            if (rc < 0)
                return rc;
        } else if (key_out && !*key_out && argv[i][0] != '-') {
            *key_out = argv[i];
        } else {
            return ss_verr_set(err, SS_EINVAL, "", "unexpected argument \"%s\"", argv[i]);
        }
    }
    return 0;
}

static int cmd_submit(prog *p, const char *cmd, int argc, char **argv, int i)
{
    int rc = gw__load_identity(p, 0);
    if (rc)
        return rc;
    const char *site = p->cfg.site[0] ? p->cfg.site : NULL;
    ss_verr err;
    memset(&err, 0, sizeof(err));
    const char *key = NULL;
    if (strcmp(cmd, "incident-update") == 0) {
        if (i >= argc || argv[i][0] == '-') {
            fprintf(stderr, "sitesync-gw: incident-update needs the incident KEY\n");
            return EXIT_USAGE;
        }
        key = argv[i++];
    }
    gw_node n;
    gw_node_init(&n);
    rc = node_open(p, &n);
    if (rc)
        return rc;
    ss_change ch;
    if (strcmp(cmd, "status") == 0) {
        rc = gw_node_begin(&n, &ch, SS_COLL_SITE_STATUS, SS_OP_UPDATE, NULL, site, &err);
        if (rc == 0)
            rc = apply_sets(&ch, argc, argv, i, NULL, &err);
    } else if (strcmp(cmd, "incident") == 0) {
        rc = gw_node_begin(&n, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, site, &err);
        /* --category C, --occurred-at T ...: each flag names a field. */
        for (; rc == 0 && i < argc; i += 2) {
            if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
                rc =
                    ss_verr_set(&err, SS_EINVAL, "", "expected --FIELD VALUE, got \"%s\"", argv[i]);
                break;
            }
            char field[SS_FIELD_NAME_MAX + 1];
            size_t fl = strlen(argv[i] + 2);
            if (fl == 0 || fl >= sizeof(field)) {
                rc = ss_verr_set(&err, SS_EUNKNOWNFIELD, "", "unknown option %s", argv[i]);
                break;
            }
            for (size_t k = 0; k <= fl; k++)
                field[k] = argv[i][2 + k] == '-' ? '_' : argv[i][2 + k];
            rc = ss_change_set_text(&ch, field, argv[i + 1], &err);
        }
    } else {
        rc = gw_node_begin(&n, &ch, SS_COLL_INCIDENT, SS_OP_UPDATE, key, site, &err);
        if (rc == 0)
            rc = apply_sets(&ch, argc, argv, i, NULL, &err);
    }
    if (rc == 0)
        rc = gw_node_submit(&n, &ch, &err);
    if (rc < 0) {
        node_close(p, &n);
        return report_refusal(rc, &err);
    }
    if (strcmp(cmd, "incident") == 0)
        printf("%s\n", ch.key);
    else
        printf("%s seq=%" PRIu64 "\n", ch.key, ch.seq);
    node_close(p, &n);
    return EXIT_OK;
}

/* ---- sync / run -------------------------------------------------------- */

typedef struct syncer {
    gw_tls tls;
    gw_sync sync;
    gw_signer signer;
    char host[256];
    uint16_t port;
} syncer;

static int syncer_setup(prog *p, syncer *s)
{
    gw_tls_init(&s->tls);
    gw_sync_init(&s->sync);
    gw_signer_init(&s->signer);
    if (!p->cfg.server[0] || gw_parse_hostport(p->cfg.server, s->host, sizeof(s->host), &s->port)) {
        fprintf(stderr, "sitesync-gw: server: want HOST:PORT, got \"%s\"\n", p->cfg.server);
        return EXIT_USAGE;
    }
    int rc = gw__load_identity(p, 1);
    if (rc)
        return rc;
    /* Every envelope is signed by this gateway's key, whatever the path. The
     * signer checks that the key matches the certificate; TLS, given the
     * same PEM, need not check again. */
    rc = gw_signer_setup(&s->signer, &p->shim, p->cert_pem, p->key_pem);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: signing key: %s (see the log line above)\n", ss_strerror(rc));
        return EXIT_USAGE;
    }
    gw_tls_config tc;
    tc.ca_pem = p->ca_pem;
    tc.cert_pem = p->cert_pem;
    tc.key_pem = p->key_pem;
    tc.server_name = p->cfg.server_name[0] ? p->cfg.server_name : s->host;
    tc.key_checked = 1;
    rc = gw_tls_setup(&s->tls, &p->shim, &tc);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: TLS setup: %s (see the log line above)\n", ss_strerror(rc));
        return EXIT_USAGE;
    }
    gw_sync_config sc;
    gw_config_sync(&p->cfg, &sc);
    rc = gw_sync_setup(&s->sync, &sc);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: sync setup: %s\n", ss_strerror(rc));
        return EXIT_USAGE;
    }
    s->sync.signer = &s->signer; /* set after gw_sync_setup, which clears it */
    /* TLS and the signer hold parsed copies now: the PEM text (24 KiB of
     * read buffers) would only sit in the heap for the whole run, and the
     * key's is a secret, so it goes now rather than at exit. */
    free(p->ca_pem);
    free(p->cert_pem);
    wipe_free(p->key_pem, p->key_len);
    p->ca_pem = p->cert_pem = p->key_pem = NULL;
    return 0;
}

static void syncer_free(syncer *s)
{
    gw_signer_free(&s->signer);
    gw_sync_free(&s->sync);
    gw_tls_free(&s->tls);
}

/* One pass: lock, open, connect, session, close, unlock. *pending_left gets
 * what is still pending. */
static int sync_pass(prog *p, syncer *s, gw_sync_result *res, uint64_t *pending_left, int quiet)
{
    gw_node n;
    gw_node_init(&n);
    memset(res, 0, sizeof(*res));
    int rc = node_open(p, &n);
    if (rc)
        return rc;
    gw_journal_stats st;
    gw_journal_stats_get(&n.journal, &st);
    if (st.pending == 0 && quiet) {
        *pending_left = 0;
        node_close(p, &n);
        return EXIT_OK;
    }
    gw_stream stream;
    rc = gw_tls_connect(&s->tls, s->host, s->port, (uint32_t)p->cfg.handshake_timeout_ms, &stream);
    if (rc < 0) {
        res->err = rc;
        snprintf(res->message, sizeof(res->message), "connect to %.200s: %s", p->cfg.server,
                 ss_strerror(rc));
        (void)gw_journal_note_sync(&n.journal, rc, fws_wall_ms(&p->shim));
    } else {
        rc = gw_sync_session(&s->sync, &n, &stream, res);
        stream.ops->close(stream.ctx);
    }
    gw_journal_stats_get(&n.journal, &st);
    *pending_left = st.pending;
    node_close(p, &n);
    if (rc < 0)
        return EXIT_LINK;
    return res->refused > 0 || res->placeholders > 0 ? EXIT_REJECTED : EXIT_OK;
}

static int cmd_sync(prog *p)
{
    syncer s;
    int rc = syncer_setup(p, &s);
    if (rc == 0) {
        gw_sync_result res;
        uint64_t left = 0;
        rc = sync_pass(p, &s, &res, &left, 0);
        if (res.renumbered > 0)
            printf("renumbered %" PRIu64 " change(s) recorded after a storage loss to follow "
                   "the daemon's committed sequence\n",
                   res.renumbered);
        if (rc == EXIT_OK)
            printf("drained: sent %" PRIu64 " changes in %" PRIu64
                   " batches; acknowledged up to seq %" PRIu64 "\n",
                   res.changes, res.envelopes, res.acked);
        else if (rc == EXIT_REJECTED)
            printf("drained, but the daemon refused %" PRIu64 " change(s) and %" PRIu64
                   " sequence(s) were lost to journal corruption: see `sitesync-gw journal`\n",
                   res.refused, res.placeholders);
        else if (rc == EXIT_LINK)
            fprintf(stderr, "sitesync-gw: sync failed: %s (%s); %" PRIu64 " change(s) pending\n",
                    res.message, ss_err_name(res.err), left);
    }
    syncer_free(&s);
    return rc;
}

static void sleep_ms_interruptible(uint64_t ms)
{
    while (ms > 0 && !stop_requested) {
        uint64_t step = ms < 100 ? ms : 100;
        struct timespec ts = { (time_t)(step / 1000), (long)(step % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int cmd_run(prog *p)
{
    syncer s;
    int rc = syncer_setup(p, &s);
    if (rc) {
        syncer_free(&s);
        return rc;
    }
    gw__catch_signals(0);
    s.sync.stop = &stop_requested;
    fws_log(&p->shim, FWS_LOG_INFO, "event=run_start node=%s server=%s", p->ident.node,
            p->cfg.server);
    unsigned failures = 0;
    while (!stop_requested) {
        gw_sync_result res;
        uint64_t left = 0;
        rc = sync_pass(p, &s, &res, &left, 1);
        if (rc == EXIT_LINK && !stop_requested) {
            uint32_t d = gw_backoff_ms(&p->shim, &s.sync.cfg, failures);
            if (failures < 31)
                failures++;
            fws_log(&p->shim, FWS_LOG_WARN,
                    "event=sync_retry in_ms=%u failures=%u pending=%" PRIu64 " reason=\"%s\"", d,
                    failures, left, res.message);
            sleep_ms_interruptible(d);
            continue;
        }
        if (rc == EXIT_STORAGE || rc == EXIT_USAGE)
            break;
        failures = 0;
        sleep_ms_interruptible(p->cfg.sync_interval_ms);
    }
    /* A SIGTERM during a session ends it at the next frame wait at the
     * latest; the journal is closed by the pass itself, so nothing is left
     * half-done here. */
    fws_log(&p->shim, FWS_LOG_INFO, "event=run_stop reason=%s",
            stop_requested ? "signal" : "error");
    syncer_free(&s);
    return stop_requested ? EXIT_OK : rc;
}

/* ---- journal / enroll / config ---------------------------------------- */

/* Relay mode is in cli_relay.c when built in; otherwise its commands say
 * so and how to get it, and nothing of the hub is linked. */
static int relay_mode(prog *p, int journal)
{
#if GW_WITH_RELAY
    return journal ? gw__cmd_journal_hub(p) : gw__cmd_relay(p);
#else
    if (journal)
        fprintf(stderr,
                "sitesync-gw: journal: %s belongs to a hub (relay certificate or hub.ckpt)\n",
                p->cfg.journal);
    fprintf(stderr, "sitesync-gw: relay mode is not built into this binary; build with "
                    "-DSITESYNC_GW_RELAY=ON\n");
    return EXIT_USAGE;
#endif
}

int gw__print_refused(void *arg, const char *line)
{
    (void)arg;
    printf("  %s\n", line);
    return 0;
}

static int cmd_journal(prog *p)
{
    struct stat hst;
    char hpath[GW_PATH_MAX + 16];
    snprintf(hpath, sizeof(hpath), "%s/hub.ckpt", p->cfg.journal);
    if (stat(hpath, &hst) == 0 || (access(p->cfg.cert, R_OK) == 0 && gw__load_identity(p, 0) == 0 &&
                                   p->ident.role == SS_ROLE_RELAY))
        return relay_mode(p, 1);
    int rc = gw__lock_take(p, p->cfg.journal, p->cfg.lock_timeout_ms);
    if (rc)
        return rc;
    gw_journal j;
    gw_journal_config jc;
    gw_config_journal(&p->cfg, &jc);
    rc = gw_journal_open(&j, &p->shim, &jc);
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: journal %s: %s\n", p->cfg.journal, ss_strerror(rc));
        gw__lock_release(p);
        return EXIT_STORAGE;
    }
    gw_journal_stats st;
    gw_journal_stats_get(&j, &st);
    char t1[40], t2[40], hl[SS_HLC_HUMAN_LEN + 1];
    format_time(st.last_sync_ms, t1, sizeof(t1));
    format_time(st.last_error_ms, t2, sizeof(t2));
    if (ss_hlc_format_human(st.hlc, hl, sizeof(hl)) < 0)
        snprintf(hl, sizeof(hl), "-");
    printf("journal:            %s\n", p->cfg.journal);
    printf("pending:            %" PRIu64 "\n", st.pending);
    printf("committed seq:      %" PRIu64 "  (acknowledged upstream: daemon or hub)\n", st.acked);
    printf("next seq:           %" PRIu64 "\n", st.next_seq);
    printf("capacity used:      %" PRIu64 " of %" PRIu64 " bytes (%.1f%%) in %u segment(s)\n",
           st.used_bytes, st.capacity,
           st.capacity ? 100.0 * (double)st.used_bytes / (double)st.capacity : 0.0, st.segments);
    printf("clock (HLC):        %s\n", hl);
    printf("last sync:          %s\n", t1);
    if (st.last_error)
        printf("last error:         %s (%s) at %s\n", ss_err_name(st.last_error),
               ss_strerror(st.last_error), t2);
    else
        printf("last error:         none\n");
    printf("refused changes:    %" PRIu64 "\n", st.refused);
    printf("lost (corrupt):     %" PRIu64 "\n", st.lost);
    printf("full refusals:      %" PRIu64 "\n", st.full_refusals);
    printf("checksum failures:  %" PRIu64 " (found at this open)\n", st.crc_failures);
    printf("missing at open:    %" PRIu64 "  (below the checkpoint's next seq, not found)\n",
           st.missing_at_open);
    printf("numbering:          %s\n",
           st.confirmed ? "confirmed by the daemon"
                        : "unconfirmed (new journal: renumbered at the next connection if the "
                          "daemon already holds these numbers)");
    if (st.refused || st.lost) {
        printf("refused changes (newest last):\n");
        (void)gw_journal_refused_walk(&j, gw__print_refused, NULL);
    }
    gw_journal_free(&j);
    gw__lock_release(p);
    return EXIT_OK;
}

static int write_new_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "sitesync-gw: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "sitesync-gw: write %s: %s\n", path, strerror(errno));
            close(fd);
            unlink(path);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "sitesync-gw: sync %s: %s\n", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static int cmd_enroll(prog *p, int argc, char **argv, int i)
{
    const char *node = NULL, *out = NULL;
    for (; i < argc; i += 2) {
        if (i + 1 >= argc) {
            fprintf(stderr, "sitesync-gw: enroll: %s needs a value\n", argv[i]);
            return EXIT_USAGE;
        }
        if (strcmp(argv[i], "--node") == 0)
            node = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
        else {
            fprintf(stderr, "sitesync-gw: enroll: unknown option %s\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!node || !out || ss_id_check_str(node) < 0) {
        fprintf(stderr, "sitesync-gw: enroll needs --node ID (a valid id) and --out PREFIX\n");
        return EXIT_USAGE;
    }
    char key[2048], csr[4096], kpath[GW_PATH_MAX + 8], cpath[GW_PATH_MAX + 8];
    snprintf(kpath, sizeof(kpath), "%s.key", out);
    snprintf(cpath, sizeof(cpath), "%s.csr", out);
    int rc = gw_enroll_make(&p->shim, node, key, sizeof(key), csr, sizeof(csr));
    if (rc < 0) {
        fprintf(stderr, "sitesync-gw: enroll: %s\n", ss_strerror(rc));
        return EXIT_USAGE;
    }
    rc = write_new_file(kpath, key, 0600);
    ss_zeroize(key, sizeof(key));
    if (rc < 0)
        return EXIT_STORAGE;
    if (write_new_file(cpath, csr, 0644) < 0) {
        unlink(kpath);
        return EXIT_STORAGE;
    }
    printf("key: %s (0600, stays on this device)\ncsr: %s\n"
           "next: sitesync-pki sign-csr --csr %s --role gateway --node %s --site SITE "
           "--out %s.crt\n",
           kpath, cpath, cpath, node, out);
    return EXIT_OK;
}

static void print_line(void *arg, const char *line)
{
    (void)arg;
    printf("%s\n", line);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    prog p;
    memset(&p, 0, sizeof(p));
    p.lk.fd = -1;
    p.stop = &stop_requested;
    p.reload = &reload_requested;
    gw_config_defaults(&p.cfg);
    char msg[256];
    const char *config_file = NULL;
    int i = 1;
    /* The config file is read first so flags override it wherever they sit. */
    for (int k = 1; k + 1 < argc; k++)
        if (strcmp(argv[k], "--config") == 0)
            config_file = argv[k + 1];
    if (config_file) {
        char *text = NULL;
        size_t len = 0;
        int rc = gw__read_file(config_file, &text, &len);
        if (rc < 0) {
            fprintf(stderr, "sitesync-gw: config %s: %s\n", config_file, strerror(-rc));
            return EXIT_USAGE;
        }
        rc = gw_config_load_json(&p.cfg, text, len, msg, sizeof(msg));
        free(text);
        if (rc < 0) {
            fprintf(stderr, "sitesync-gw: %s: %s\n", config_file, msg);
            return EXIT_USAGE;
        }
    }
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            gw_config_print(&p.cfg, print_line, NULL);
            return EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sitesync-gw: %s needs a value\n", argv[i]);
            return EXIT_USAGE;
        }
        if (strcmp(argv[i], "--config") == 0)
            continue;
        if (gw_config_set(&p.cfg, argv[i] + 2, argv[i + 1], msg, sizeof(msg)) < 0) {
            fprintf(stderr, "sitesync-gw: %s\n%s", msg, "try --help\n");
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    if (gw_config_check(&p.cfg, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "sitesync-gw: config: %s\n", msg);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int rc;
    if (strcmp(cmd, "print-config") == 0) {
        gw_config_print(&p.cfg, print_line, NULL);
        return EXIT_OK;
    }
    if (strcmp(cmd, "enroll") == 0) {
        rc = shim_open(&p, NULL);
        if (rc == 0)
            rc = cmd_enroll(&p, argc, argv, i);
        prog_free(&p);
        return rc;
    }
    if (strcmp(cmd, "status") && strcmp(cmd, "incident") && strcmp(cmd, "incident-update") &&
        strcmp(cmd, "sync") && strcmp(cmd, "run") && strcmp(cmd, "journal") &&
        strcmp(cmd, "relay")) {
        fprintf(stderr, "sitesync-gw: unknown command \"%s\"\n%s", cmd, usage_text);
        return EXIT_USAGE;
    }
    if ((strcmp(cmd, "sync") == 0 || strcmp(cmd, "run") == 0 || strcmp(cmd, "journal") == 0 ||
         strcmp(cmd, "relay") == 0) &&
        i < argc) {
        fprintf(stderr, "sitesync-gw: %s takes no arguments (got \"%s\")\n", cmd, argv[i]);
        return EXIT_USAGE;
    }
    if (!GW_WITH_RELAY && strcmp(cmd, "relay") == 0)
        return relay_mode(&p, 0); /* before the journal directory is touched */
    signal(SIGPIPE, SIG_IGN);
    rc = shim_open(&p, p.cfg.journal);
    if (rc == 0) {
        if (strcmp(cmd, "sync") == 0)
            rc = cmd_sync(&p);
        else if (strcmp(cmd, "run") == 0)
            rc = cmd_run(&p);
        else if (strcmp(cmd, "journal") == 0)
            rc = cmd_journal(&p);
        else if (strcmp(cmd, "relay") == 0)
            rc = relay_mode(&p, 0);
        else
            rc = cmd_submit(&p, cmd, argc, argv, i);
    }
    prog_free(&p);
    return rc;
}
