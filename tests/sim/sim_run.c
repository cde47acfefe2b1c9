/* sim_run.c - runs the deterministic whole-system simulation for one seed
 * (a replay) or many (CI and the long mode), and prints for each failing
 * seed one line with the exact command that replays it.
 *
 *   sim_run --seeds 2000 [--first-seed 1]    CI: seeds 1..2000
 *   sim_run --seed 12345 [--verbose]         replay one seed, with a trace
 *   sim_run --seeds 100000 --first-seed 5000 the long mode
 *   options: --steps K (300) --gateways G (3) --hub (hub mode: all gateways
 *   but the last sync over mbed TLS through a regional hub, the relay of
 *   gateway/, which forwards to the daemon's TLS port) --dir DIR (databases; default
 *   /dev/shm or $TMPDIR) --plant ack-before-commit (planted bug of the sim
 *   daemon) --expect-failure (exit 0 only if some seed fails: planted-bug
 *   tests) --twice (run each seed twice and compare the traces: the
 *   replay is exact). SITESYNC_ASAN=1 (set by CTest in sanitizer builds) runs a tenth
 *   of --seeds. Binaries built with a planted bug in the gateway or the
 *   merge (sim_run_plant_*) name it in their first line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim_world.h"

#ifndef SIM_PLANT_NAME
#define SIM_PLANT_NAME "none"
#endif

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sim_run [--seed N | --seeds N [--first-seed S]] [--steps K] [--gateways G] "
               "[--hub]\n"
               "               [--plant ack-before-commit] [--expect-failure] [--twice] "
               "[--dir DIR] [--verbose]\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void remove_db(const char *path)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        (void)unlink(p);
    }
}

typedef struct totals {
    uint64_t ok, failed, syncs, cuts, restarts, crashes, dups, hub_cuts, hub_restarts, via_hub, sig;
} totals;

/* One seed in a fresh database under dir. Returns 0 (every invariant held)
 * or 1 with why; *trace gets the run's trace hash. */
static int run_seed(const sim_opts *o, const char *dir, uint64_t *trace, char *why, size_t cap,
                    totals *tot)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/seed-%" PRIu64 ".db", dir, o->seed);
    remove_db(path);
    sim_world *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(why, cap, "out of memory");
        return 1;
    }
    int rc = sim_world_setup(w, o, path);
    if (rc == 0)
        rc = sim_world_run(w);
    *trace = w->trace;
    if (rc != 0)
        snprintf(why, cap, "%s", w->failure[0] ? w->failure : "setup error");
    if (tot) {
        tot->ok += w->n_ok;
        tot->failed += w->n_failed;
        tot->syncs += w->n_syncs;
        tot->cuts += w->n_cuts;
        tot->restarts += w->n_restarts;
        tot->hub_cuts += w->n_hub_cuts;
        tot->hub_restarts += w->n_hub_restarts;
        tot->via_hub += w->n_via_hub;
        tot->sig += w->n_sig_verified;
        if (w->srv) {
            tot->crashes += w->srv->stats.crashes;
            tot->dups += w->srv->stats.dups + w->srv->stats.replays;
        }
    }
    sim_world_free(w);
    free(w);
    remove_db(path);
    return rc != 0;
}

int main(int argc, char **argv)
{
    sim_opts o;
    memset(&o, 0, sizeof(o));
    o.steps = 300;
    o.gateways = 3;
    uint64_t first = 1, nseeds = 1, v = 0;
    int single = 0, many = 0, expect_failure = 0, twice = 0, hub = 0;
    const char *dir_opt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--verbose") == 0) {
            o.verbose = 1;
        } else if (strcmp(a, "--hub") == 0) {
            hub = 1;
        } else if (strcmp(a, "--twice") == 0) {
            twice = 1;
        } else if (strcmp(a, "--expect-failure") == 0) {
            expect_failure = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--plant") == 0 && val) {
            if (strcmp(val, "ack-before-commit") != 0) {
                fprintf(stderr, "sim_run: unknown --plant %s (known: ack-before-commit)\n", val);
                return 2;
            }
            o.plant_server_ack = 1;
            i++;
        } else if (strcmp(a, "--dir") == 0 && val) {
            dir_opt = val;
            i++;
        } else if ((strcmp(a, "--seed") == 0 || strcmp(a, "--seeds") == 0 ||
                    strcmp(a, "--first-seed") == 0 || strcmp(a, "--steps") == 0 ||
                    strcmp(a, "--gateways") == 0) &&
                   val) {
            if (parse_u64(val, &v) < 0) {
                fprintf(stderr, "sim_run: %s needs a non-negative integer, got '%s'\n", a, val);
                return 2;
            }
            if (strcmp(a, "--seed") == 0) {
                first = v;
                single = 1;
            } else if (strcmp(a, "--seeds") == 0) {
                nseeds = v;
                many = 1;
            } else if (strcmp(a, "--first-seed") == 0) {
                first = v;
            } else if (strcmp(a, "--steps") == 0) {
                if (v > 1000000) {
                    fprintf(stderr, "sim_run: --steps at most 1000000\n");
                    return 2;
                }
                o.steps = (int)v;
            } else {
                if (v < 1 || v > SIM_MAX_GW) {
                    fprintf(stderr, "sim_run: --gateways must be 1..%d\n", SIM_MAX_GW);
                    return 2;
                }
                o.gateways = (int)v;
            }
            i++;
        } else {
            fprintf(stderr, "sim_run: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (single && many) {
        fprintf(stderr, "sim_run: --seed replays one seed; --seeds runs many: not both\n");
        return 2;
    }
    const char *asan = getenv("SITESYNC_ASAN");
    if (many && asan && strcmp(asan, "1") == 0 && nseeds >= 10) {
        nseeds /= 10;
        printf("sim: SITESYNC_ASAN=1: running %" PRIu64 " seeds (a tenth)\n", nseeds);
    }
    if (nseeds == 0) {
        fprintf(stderr, "sim_run: --seeds must be at least 1\n");
        return 2;
    }

    char base[400];
    const char *tmp = getenv("TMPDIR");
    if (dir_opt)
        snprintf(base, sizeof(base), "%s", dir_opt);
    else if (access("/dev/shm", W_OK) == 0)
        snprintf(base, sizeof(base), "/dev/shm"); /* fsync is free there: many seeds per second */
    else
        snprintf(base, sizeof(base), "%s", tmp && *tmp ? tmp : "/tmp");
    char dir[450];
    snprintf(dir, sizeof(dir), "%s/sitesync-sim-XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "sim_run: cannot create a directory under %s: %s\n", base, strerror(errno));
        return 2;
    }

    sim_pki pki;
    memset(&pki, 0, sizeof(pki));
    if (hub) {
        /* One CA and its certificates for the whole run (the real pki/). */
        char err[512] = "";
        if (sim_pki_make(&pki, dir, err, sizeof(err)) < 0) {
            fprintf(stderr, "sim_run: cannot make the hub mode's PKI: %s\n", err);
            sim_pki_free(&pki);
            (void)rmdir(dir);
            return 2;
        }
        o.pki = &pki;
    }
    printf("sim: seeds %" PRIu64 "..%" PRIu64 ", %d steps, %d gateways%s, planted bug: %s\n", first,
           first + nseeds - 1, o.steps, o.gateways, hub ? " (all but the last behind a hub)" : "",
           o.plant_server_ack ? "ack-before-commit (sim daemon)" : SIM_PLANT_NAME);
    fflush(stdout);
    double t0 = now_s();
    uint64_t failed = 0, ran = 0, first_fail = 0;
    totals tot;
    memset(&tot, 0, sizeof(tot));
    for (uint64_t k = 0; k < nseeds; k++) {
        o.seed = first + k;
        char why[600] = "";
        uint64_t trace = 0;
        int rc = run_seed(&o, dir, &trace, why, sizeof(why), &tot);
        if (rc == 0 && twice) {
            /* Same seed, fresh database: the trace (every action and the
             * final audit chain head) must be identical. */
            uint64_t again = 0;
            char why2[600] = "";
            int rc2 = run_seed(&o, dir, &again, why2, sizeof(why2), NULL);
            if (rc2 != 0 || again != trace) {
                rc = 1;
                snprintf(why, sizeof(why),
                         "not deterministic: a second run gave trace %016" PRIx64 " (rc %d) "
                         "instead of %016" PRIx64,
                         again, rc2, trace);
            }
        }
        ran++;
        if (rc != 0) {
            failed++;
            if (!first_fail)
                first_fail = o.seed;
            if (failed <= 10)
                printf("sim: seed %" PRIu64 " FAILED: %s | replay: %s --seed %" PRIu64
                       " --steps %d --gateways %d%s%s\n",
                       o.seed, why, argv[0], o.seed, o.steps, o.gateways, hub ? " --hub" : "",
                       o.plant_server_ack ? " --plant ack-before-commit" : "");
            fflush(stdout);
        }
        if (failed && expect_failure)
            break;
    }
    sim_pki_free(&pki);
    (void)rmdir(dir);
    double dt = now_s() - t0;
    printf("sim: %" PRIu64 " seeds run, %" PRIu64 " failed, %.1f s; %" PRIu64
           " submissions acknowledged, %" PRIu64 " refused or failed, %" PRIu64
           " sync sessions, %" PRIu64 " gateway power cuts, %" PRIu64 " daemon restarts + %" PRIu64
           " crashes before commit, %" PRIu64 " duplicated/replayed batches\n",
           ran, failed, dt, tot.ok, tot.failed, tot.syncs, tot.cuts, tot.restarts, tot.crashes,
           tot.dups);
    if (hub)
        printf("sim: hub: %" PRIu64 " changes applied via the hub, %" PRIu64
               " hub power cuts, %" PRIu64 " hub restarts, %" PRIu64
               " envelope signatures verified by the daemon\n",
               tot.via_hub, tot.hub_cuts, tot.hub_restarts, tot.sig);
    if (expect_failure) {
        if (failed) {
            printf("sim: planted bug caught at seed %" PRIu64 " (after %" PRIu64 " seeds)\n",
                   first_fail, ran);
            return 0;
        }
        printf("sim: planted bug NOT caught in %" PRIu64 " seeds\n", ran);
        return 1;
    }
    return failed ? 1 : 0;
}
