/* test_gwfault.c - storage faults under the gateway journal and the hub
 * journal, in the manner of SQLite's I/O-error loops: for every mutating
 * storage operation N of a workload, fail operation N once, and fail N and
 * every later one (persistent), with EIO; and run the workload with the
 * storage's capacity at every size it passes through (ENOSPC). Each run
 * checks that a failed submission is never acknowledged, that nothing
 * acknowledged is lost once the fault clears (reopen, recover, compare the
 * pending entries with the acknowledged set), and that the journal takes
 * new entries again.
 *
 * tests/gateway/test_journal.c already covers one EIO on a sync
 * (io_error_on_sync_refuses_and_truncates) and one device-ENOSPC refusal
 * (capacity_full_refuses_then_accepts_after_ack); this file adds every N,
 * persistent faults, faults in ack/reclaim/checkpoint writes, and the hub
 * journal. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fws_sim.h"
#include "gw/hub.h"
#include "gw/journal.h"
#include "proto/err.h"
#include "ss_test.h"

#define GW_N      40 /* submissions per gateway run */
#define HUB_N     24 /* envelopes per hub run */
#define MAX_SEQ   128
#define MAX_TRIES 3 * GW_N

static fws_sim *mk_sim(fws *shim)
{
    fws_sim_config c;
    memset(&c, 0, sizeof c);
    c.seed = 8;
    c.log_level = -1;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&c, &sim, shim), 0);
    return sim;
}

/* ---- gateway journal ---------------------------------------------------------- */

static gw_journal_config gw_cfg(void)
{
    gw_journal_config c;
    gw_journal_config_default(&c);
    c.segment_max = 512; /* rotation and reclaim inside the workload */
    c.entry_max = 200;
    c.capacity = 64 * 1024;
    c.refused_max = 4096;
    return c;
}

static size_t payload(uint64_t seq, char *buf, size_t cap)
{
    int n =
        snprintf(buf, cap, "{\"seq\":%" PRIu64 ",\"n\":\"%.*s\"}", seq, (int)(seq * 13 % 70),
                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
    return (size_t)n;
}

typedef struct gw_outcome {
    int acked_ok[MAX_SEQ];      /* append returned 0 */
    int indeterminate[MAX_SEQ]; /* append failed and left the journal broken */
    uint64_t daemon_mark;       /* highest ack the journal accepted (returned 0) */
    unsigned failures, full, reopens, broken_until_reopen, ghosts, came_back;
} gw_outcome;

/* The workload: GW_N submissions (a failed one is retried with the same
 * sequence, as the gateway's submitter does), an acknowledgement from the
 * "daemon" after every 6 (reclaim), a sync note and an HLC save. Faults may
 * be armed by the caller; a broken journal is reopened. */
static void gw_workload(fws *shim, gw_journal *j, const gw_journal_config *cfg, gw_outcome *o)
{
    char buf[256];
    unsigned done = 0;
    for (unsigned tries = 0; done < GW_N && tries < MAX_TRIES; tries++) {
        uint64_t seq = gw_journal_next_seq(j);
        ASSERT(seq < MAX_SEQ);
        size_t n = payload(seq, buf, sizeof buf);
        int rc = gw_journal_append(j, seq, 1000 + seq, buf, n);
        if (rc == 0) {
            ASSERT_U64_EQ(gw_journal_next_seq(j), seq + 1);
            o->acked_ok[seq] = 1;
            done++;
            if (done % 6 == 0) {
                uint64_t mark = seq - 2;
                if (gw_journal_ack(j, mark) == 0 && mark > o->daemon_mark)
                    o->daemon_mark = mark;
                (void)gw_journal_note_sync(j, 0, 5000 + (int64_t)seq);
                (void)gw_journal_save_hlc(j, 2000 + seq);
            }
            continue;
        }
        /* Refused: not acknowledged, the sequence is not consumed. */
        ASSERT(rc == SS_EIO || rc == SS_EFULL);
        ASSERT_U64_EQ(gw_journal_next_seq(j), seq);
        o->failures++;
        if (rc == SS_EFULL)
            o->full++;
        gw_journal_stats st;
        gw_journal_stats_get(j, &st);
        if (j->broken) {
            /* "refuses everything until reopened" (journal.h): do so. The
             * outcome of this submission is unknown: the entry may have
             * reached the storage and the truncate that should remove it
             * failed, so recovery may bring it back. */
            o->indeterminate[seq] = 1;
            o->broken_until_reopen++;
            gw_journal_free(j);
            gw_journal_init(j);
            if (gw_journal_open(j, shim, cfg) != 0) {
                /* The fault is still there (persistent): give up this run;
                 * the check after clearing it decides. */
                return;
            }
            o->reopens++;
        }
    }
}

/* After the fault cleared: reopen, every acknowledged sequence above the
 * daemon's mark reads back exactly; the pending set is exactly the
 * acknowledged set (a failed submission does not come back as an entry);
 * a new submission is accepted and survives another reopen. */
static void gw_check(fws_sim *sim, fws *shim, gw_journal *j, const gw_journal_config *cfg,
                     gw_outcome *o, const char *what, uint64_t n)
{
    fws_sim_clear_faults(sim);
    fws_sim_set_capacity(sim, 0);
    gw_journal_free(j);
    gw_journal_init(j);
    int rc = gw_journal_open(j, shim, cfg);
    if (rc != 0)
        SS_TEST_FAIL("%s N=%" PRIu64 ": reopen after the fault cleared: %s", what, n,
                     ss_err_name(rc));
    uint64_t acked = gw_journal_acked(j), next = gw_journal_next_seq(j);
    ASSERT(acked >= o->daemon_mark);
    char want[256], got[256];
    for (uint64_t s = 1; s < MAX_SEQ; s++) {
        if (s <= acked)
            continue;
        size_t gl = 0;
        if (o->acked_ok[s]) {
            rc = gw_journal_read(j, s, got, sizeof got, &gl);
            if (rc != 0)
                SS_TEST_FAIL("%s N=%" PRIu64 ": acknowledged seq %" PRIu64 " lost: %s", what, n, s,
                             ss_err_name(rc));
            size_t wl = payload(s, want, sizeof want);
            ASSERT_EQ(gl, wl);
            ASSERT_MEM_EQ(got, want, wl);
        } else if (s < next) {
            /* A pending sequence nobody acknowledged: a failed submission
             * that came back. Allowed only where the failure left the
             * journal broken (outcome unknown), and then it must be that
             * submission's own bytes. */
            if (!o->indeterminate[s]) {
                o->ghosts++;
                continue;
            }
            o->came_back++;
            rc = gw_journal_read(j, s, got, sizeof got, &gl);
            ASSERT_EQ(rc, 0);
            size_t wl = payload(s, want, sizeof want);
            ASSERT_EQ(gl, wl);
            ASSERT_MEM_EQ(got, want, wl);
        }
    }
    /* Writable again, durably. */
    size_t pl = payload(next, want, sizeof want);
    rc = gw_journal_append(j, next, 9000, want, pl);
    if (rc != 0)
        SS_TEST_FAIL("%s N=%" PRIu64 ": append after the fault cleared: %s", what, n,
                     ss_err_name(rc));
    gw_journal_free(j);
    gw_journal_init(j);
    ASSERT_EQ(gw_journal_open(j, shim, cfg), 0);
    size_t gl = 0;
    ASSERT_EQ(gw_journal_read(j, next, got, sizeof got, &gl), 0);
    ASSERT_EQ(gl, pl);
    gw_journal_free(j);
}

/* Operations of the fault-free workload (after open). */
static uint64_t gw_reference_ops(uint64_t *open_ops)
{
    fws shim;
    fws_sim *sim = mk_sim(&shim);
    gw_journal_config cfg = gw_cfg();
    gw_journal j;
    gw_journal_init(&j);
    ASSERT_EQ(gw_journal_open(&j, &shim, &cfg), 0);
    *open_ops = fws_sim_ops(sim);
    gw_outcome o;
    memset(&o, 0, sizeof o);
    gw_workload(&shim, &j, &cfg, &o);
    ASSERT_EQ(o.failures, 0);
    uint64_t ops = fws_sim_ops(sim);
    gw_journal_free(&j);
    fws_sim_destroy(sim);
    return ops;
}

static void gw_every_n(int persistent)
{
    uint64_t open_ops = 0, total = gw_reference_ops(&open_ops);
    unsigned runs = 0, refused_runs = 0, reopens = 0, broken = 0, came_back = 0;
    for (uint64_t n = open_ops + 1; n <= total + 1; n++) {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_journal_config cfg = gw_cfg();
        gw_journal j;
        gw_journal_init(&j);
        ASSERT_EQ(gw_journal_open(&j, &shim, &cfg), 0);
        ASSERT_EQ(fws_sim_fail_op(sim, n, FWS_EIO, persistent), 0);
        gw_outcome o;
        memset(&o, 0, sizeof o);
        gw_workload(&shim, &j, &cfg, &o);
        gw_check(sim, &shim, &j, &cfg, &o, persistent ? "eio_persistent" : "eio_once", n);
        if (o.ghosts != 0)
            SS_TEST_FAIL("N=%" PRIu64 ": %u failed submission(s) came back as entries", n,
                         o.ghosts);
        runs++;
        refused_runs += o.failures > 0;
        reopens += o.reopens;
        broken += o.broken_until_reopen;
        came_back += o.came_back;
        fws_sim_destroy(sim);
    }
    printf("gateway journal, EIO %s: %u runs (every operation %" PRIu64 "..%" PRIu64
           " of the workload), %u with a refused submission, %u broken-until-reopen, %u reopens; "
           "0 acknowledged lost; %u failed submissions with an unknown outcome (journal broken) "
           "came back after the reopen, 0 others\n",
           persistent ? "persistent" : "once", runs, open_ops + 1, total, refused_runs, broken,
           reopens, came_back);
}

TEST(journal_eio_once_every_op)
{
    gw_every_n(0);
}

TEST(journal_eio_persistent_every_op)
{
    gw_every_n(1);
}

TEST(journal_enospc_every_size)
{
    /* Capacity from the empty journal's size to the workload's peak, in 8
     * byte steps (entries are 28 bytes of header plus 18..87 of payload, so
     * every entry boundary is crossed in each of its phases). */
    uint64_t peak = 0, base = 0;
    {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_journal_config cfg = gw_cfg();
        gw_journal j;
        gw_journal_init(&j);
        ASSERT_EQ(gw_journal_open(&j, &shim, &cfg), 0);
        base = fws_sim_used(sim);
        char buf[256];
        for (uint64_t s = 1; s <= GW_N; s++) {
            ASSERT_EQ(gw_journal_append(&j, s, s, buf, payload(s, buf, sizeof buf)), 0);
            if (fws_sim_used(sim) > peak)
                peak = fws_sim_used(sim);
        }
        gw_journal_free(&j);
        fws_sim_destroy(sim);
    }
    unsigned runs = 0, full = 0;
    for (uint64_t cap = base; cap <= peak + 64; cap += 8) {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_journal_config cfg = gw_cfg();
        gw_journal j;
        gw_journal_init(&j);
        ASSERT_EQ(gw_journal_open(&j, &shim, &cfg), 0);
        fws_sim_set_capacity(sim, cap);
        gw_outcome o;
        memset(&o, 0, sizeof o);
        gw_workload(&shim, &j, &cfg, &o);
        gw_check(sim, &shim, &j, &cfg, &o, "enospc", cap);
        ASSERT_EQ(o.ghosts, 0);
        runs++;
        full += o.full;
        fws_sim_destroy(sim);
    }
    printf("gateway journal, ENOSPC: %u capacities (%" PRIu64 "..%" PRIu64
           " bytes), %u submissions refused SS_EFULL; 0 acknowledged lost\n",
           runs, base, peak + 64, full);
    ASSERT_GT(full, 0);
}

/* ---- hub journal ---------------------------------------------------------------- */

static gw_hubj_config hub_cfg(void)
{
    gw_hubj_config c;
    gw_hubj_config_default(&c);
    c.capacity = 64 * 1024;
    c.segment_max = 1152;
    c.max_records = 64;
    c.max_origins = 4;
    c.max_envelope = 1024;
    c.refused_max = 4096;
    return c;
}

static const char *const hub_ids[3] = { "gw-a", "gw-b", "gw-c" };

static size_t hub_env(uint32_t o, uint64_t first, uint8_t *buf, size_t cap)
{
    int n = snprintf((char *)buf, cap, "env-%s-%" PRIu64 "-%.*s", hub_ids[o], first,
                     (int)(first * 7 % 40), "0123456789012345678901234567890123456789");
    return (size_t)n;
}

typedef struct hub_outcome {
    uint64_t durable[3];   /* highest first seq of origin o synced (acknowledged) */
    uint64_t committed[3]; /* what the "upstream" committed */
    unsigned failures, reopens;
} hub_outcome;

/* HUB_N envelopes of 2 changes round-robin over three origins, a group
 * commit (sync) after every 2, an upstream commit + checkpoint (reclaim)
 * after every 6. What a failed sync covered is not acknowledged; the relay
 * then reopens (the journal is broken) and the downstream resends. */
static void hub_workload(fws *shim, gw_hubj *h, const gw_hubj_config *cfg, hub_outcome *o)
{
    uint64_t next[3] = { 1, 1, 1 };
    uint64_t pending_first[3] = { 0, 0, 0 };
    uint8_t env[128];
    unsigned done = 0;
    for (unsigned tries = 0; done < HUB_N && tries < 3 * HUB_N; tries++) {
        uint32_t k = done % 3;
        int oi = gw_hubj_origin(h, hub_ids[k], 1);
        ASSERT(oi >= 0);
        /* After a reopen the hub says where to resume (WELCOME). */
        uint64_t have = gw_hubj_have(h, (uint32_t)oi);
        if (next[k] != have + 1)
            next[k] = have + 1;
        size_t n = hub_env(k, next[k], env, sizeof env);
        int rc = gw_hubj_append(h, (uint32_t)oi, next[k], 2, NULL, 0, env, n);
        if (rc >= 0 && done % 2 == 1) {
            pending_first[k] = next[k];
            rc = gw_hubj_sync(h);
            if (rc == 0) {
                for (int q = 0; q < 3; q++) {
                    int qi = gw_hubj_origin(h, hub_ids[q], 0);
                    if (qi >= 0)
                        o->durable[q] = gw_hubj_have(h, (uint32_t)qi);
                }
            }
        } else if (rc >= 0) {
            pending_first[k] = next[k];
            rc = 0;
        }
        if (rc < 0) {
            ASSERT(rc == SS_EIO || rc == SS_EFULL);
            o->failures++;
            if (h->broken || rc == SS_EIO) {
                gw_hubj_free(h);
                gw_hubj_init(h);
                if (gw_hubj_open(h, shim, cfg, 0) != 0)
                    return;
                o->reopens++;
                for (int q = 0; q < 3; q++) {
                    int qi = gw_hubj_origin(h, hub_ids[q], 0);
                    next[q] = qi >= 0 ? gw_hubj_have(h, (uint32_t)qi) + 1 : 1;
                }
            }
            continue;
        }
        next[k] += 2;
        done++;
        if (done % 6 == 0) {
            for (int q = 0; q < 3; q++) {
                int qi = gw_hubj_origin(h, hub_ids[q], 0);
                if (qi >= 0 && o->durable[q] >= 3) {
                    gw_hubj_commit(h, (uint32_t)qi, o->durable[q] - 2);
                }
            }
            if (gw_hubj_checkpoint(h) == 0) {
                for (int q = 0; q < 3; q++) {
                    int qi = gw_hubj_origin(h, hub_ids[q], 0);
                    if (qi >= 0)
                        o->committed[q] = h->origins[qi].committed;
                }
            }
        }
    }
    (void)pending_first;
}

/* After the fault: reopen; for each origin every acknowledged envelope above
 * the committed mark is held, byte for byte; the hub takes envelopes again. */
static void hub_check(fws_sim *sim, fws *shim, gw_hubj *h, const gw_hubj_config *cfg,
                      hub_outcome *o, const char *what, uint64_t n)
{
    fws_sim_clear_faults(sim);
    fws_sim_set_capacity(sim, 0);
    gw_hubj_free(h);
    gw_hubj_init(h);
    int rc = gw_hubj_open(h, shim, cfg, 0);
    if (rc != 0)
        SS_TEST_FAIL("%s N=%" PRIu64 ": hub reopen: %s", what, n, ss_err_name(rc));
    uint8_t want[128], got[2048];
    for (uint32_t q = 0; q < 3; q++) {
        if (o->durable[q] == 0)
            continue;
        int qi = gw_hubj_origin(h, hub_ids[q], 0);
        if (qi < 0)
            SS_TEST_FAIL("%s N=%" PRIu64 ": origin %s lost", what, n, hub_ids[q]);
        const gw_hub_origin *og = &h->origins[qi];
        if (gw_hubj_have(h, (uint32_t)qi) < o->durable[q])
            SS_TEST_FAIL("%s N=%" PRIu64 ": %s acknowledged up to %" PRIu64 ", hub has %" PRIu64,
                         what, n, hub_ids[q], o->durable[q], gw_hubj_have(h, (uint32_t)qi));
        /* Every acknowledged envelope above the committed mark is a record. */
        for (uint64_t first = 1; first + 1 <= o->durable[q]; first += 2) {
            if (first + 1 <= og->committed)
                continue;
            int found = 0;
            for (uint32_t r = og->head, k = 0; r != GW_HUB_NO_REC && k < cfg->max_records;
                 r = h->recs[r].next, k++) {
                if (h->recs[r].first != first)
                    continue;
                size_t route_len = 0;
                int len = gw_hubj_read(h, r, got, sizeof got, &route_len);
                size_t wl = hub_env(q, first, want, sizeof want);
                if (len == (int)wl && memcmp(got, want, wl) == 0)
                    found = 1;
            }
            if (!found)
                SS_TEST_FAIL("%s N=%" PRIu64 ": %s envelope %" PRIu64 " acknowledged, not held",
                             what, n, hub_ids[q], first);
        }
    }
    int oi = gw_hubj_origin(h, "gw-new", 1);
    ASSERT(oi >= 0);
    size_t wl = hub_env(0, 1, want, sizeof want);
    ASSERT(gw_hubj_append(h, (uint32_t)oi, 1, 1, NULL, 0, want, wl) >= 0);
    ASSERT_EQ(gw_hubj_sync(h), 0);
    gw_hubj_free(h);
}

static void hub_every_n(int persistent)
{
    uint64_t open_ops = 0, total = 0;
    {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_hubj_config cfg = hub_cfg();
        gw_hubj h;
        gw_hubj_init(&h);
        ASSERT_EQ(gw_hubj_open(&h, &shim, &cfg, 0), 0);
        open_ops = fws_sim_ops(sim);
        hub_outcome o;
        memset(&o, 0, sizeof o);
        hub_workload(&shim, &h, &cfg, &o);
        ASSERT_EQ(o.failures, 0);
        total = fws_sim_ops(sim);
        gw_hubj_free(&h);
        fws_sim_destroy(sim);
    }
    unsigned runs = 0, refused = 0, reopens = 0;
    for (uint64_t n = open_ops + 1; n <= total + 1; n++) {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_hubj_config cfg = hub_cfg();
        gw_hubj h;
        gw_hubj_init(&h);
        ASSERT_EQ(gw_hubj_open(&h, &shim, &cfg, 0), 0);
        ASSERT_EQ(fws_sim_fail_op(sim, n, FWS_EIO, persistent), 0);
        hub_outcome o;
        memset(&o, 0, sizeof o);
        hub_workload(&shim, &h, &cfg, &o);
        hub_check(sim, &shim, &h, &cfg, &o, persistent ? "hub_eio_persistent" : "hub_eio_once", n);
        runs++;
        refused += o.failures > 0;
        reopens += o.reopens;
        fws_sim_destroy(sim);
    }
    printf("hub journal, EIO %s: %u runs (operations %" PRIu64 "..%" PRIu64
           "), %u with a refusal, %u reopens; 0 acknowledged envelopes lost\n",
           persistent ? "persistent" : "once", runs, open_ops + 1, total, refused, reopens);
}

TEST(hub_eio_once_every_op)
{
    hub_every_n(0);
}

TEST(hub_eio_persistent_every_op)
{
    hub_every_n(1);
}

SS_TEST_MAIN(SS_TEST_ENTRY(journal_eio_once_every_op) SS_TEST_ENTRY(journal_eio_persistent_every_op)
                 SS_TEST_ENTRY(journal_enospc_every_size) SS_TEST_ENTRY(hub_eio_once_every_op)
                     SS_TEST_ENTRY(hub_eio_persistent_every_op))
