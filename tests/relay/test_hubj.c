/* test_hubj.c - the hub journal on the simulated shim: append, sync, reopen
 * and reclaim across origins; a power cut at every mutating operation of a
 * workload (both tear modes) never loses an envelope that was synced (and
 * so acknowledged downstream) and never returns altered bytes; capacity
 * refuses new envelopes and keeps the old. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fws_sim.h"
#include "gw/hub.h"
#include "proto/err.h"
#include "ss_test.h"

#define NORIG  3
#define MAXENV 400

static const char *origins[NORIG] = { "gw-a", "gw-b", "gw-c" };

static fws_sim *mk_sim(uint64_t seed, fws *shim)
{
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = seed;
    c.log_level = -1;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&c, &sim, shim), 0);
    return sim;
}

static gw_hubj_config cfg(void)
{
    gw_hubj_config c;
    gw_hubj_config_default(&c);
    c.capacity = 256 * 1024;
    c.max_envelope = 2048;
    c.segment_max = 4096;
    c.max_records = 1024;
    c.max_origins = 16;
    return c;
}

/* Envelope i: origin i % NORIG, its k-th (k = i / NORIG), 4 changes each;
 * deterministic bytes of varying length. */
static size_t env_bytes(int i, uint8_t *buf, uint64_t *first)
{
    size_t n = 40 + (size_t)(i * 37 % 500);
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(i * 31 + k * 7);
    *first = (uint64_t)(i / NORIG) * 4 + 1;
    return n;
}

static void expect_rec(gw_hubj *h, int i)
{
    uint8_t want[1024], got[4096];
    uint64_t first;
    size_t wl = env_bytes(i, want, &first), rl = 0;
    int o = gw_hubj_origin(h, origins[i % NORIG], 0);
    ASSERT_GE(o, 0);
    for (uint32_t x = h->origins[o].head; x != GW_HUB_NO_REC; x = h->recs[x].next) {
        if (h->recs[x].first != first)
            continue;
        int len = gw_hubj_read(h, x, got, sizeof(got), &rl);
        ASSERT_EQ(len, (int)(wl + (i % 2 ? 3 : 0)));
        ASSERT_EQ(rl, i % 2 ? 3 : 0);
        ASSERT_MEM_EQ(got + rl, want, wl);
        return;
    }
    SS_TEST_FAIL("envelope %d (origin %s first %" PRIu64 ") missing", i, origins[i % NORIG], first);
}

static int append_env(gw_hubj *h, int i)
{
    uint8_t b[1024];
    uint64_t first;
    size_t n = env_bytes(i, b, &first);
    int o = gw_hubj_origin(h, origins[i % NORIG], 1);
    if (o < 0)
        return o;
    static const uint8_t route[3] = { 1, 1, 'x' };
    return gw_hubj_append(h, (uint32_t)o, first, 4, route, i % 2 ? 3 : 0, b, n);
}

TEST(append_sync_reopen_commit_reclaim)
{
    fws shim;
    fws_sim *sim = mk_sim(1, &shim);
    gw_hubj_config c = cfg();
    gw_hubj h;
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    for (int i = 0; i < 60; i++)
        ASSERT_GE(append_env(&h, i), 0);
    ASSERT_EQ(gw_hubj_sync(&h), 0);
    gw_hubj_free(&h);
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    gw_hubj_stats st;
    gw_hubj_stats_get(&h, &st);
    ASSERT_EQ(st.records, 60);
    ASSERT_EQ(st.origins, NORIG);
    ASSERT_GT(st.segments, 3);
    for (int i = 0; i < 60; i++)
        expect_rec(&h, i);
    ASSERT_U64_EQ(gw_hubj_have(&h, 0), 80);
    ASSERT_U64_EQ(gw_hubj_pending(&h, 0), 80);
    /* The upstream commits all of gw-a and half of gw-b and gw-c. */
    gw_hubj_commit(&h, 0, 80);
    gw_hubj_commit(&h, 1, 40);
    gw_hubj_commit(&h, 2, 40);
    ASSERT_EQ(gw_hubj_checkpoint(&h), 0);
    gw_hubj_stats_get(&h, &st);
    ASSERT_LT(st.records, 60);
    ASSERT_U64_EQ(gw_hubj_pending(&h, 1), 40);
    uint32_t segs = st.segments;
    gw_hubj_free(&h);
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    gw_hubj_stats_get(&h, &st);
    ASSERT_EQ(st.segments, segs);
    ASSERT_U64_EQ(gw_hubj_pending(&h, 0), 0);
    ASSERT_U64_EQ(gw_hubj_pending(&h, 1), 40);
    ASSERT_U64_EQ(gw_hubj_have(&h, 0), 80);
    for (int i = 31; i < 60; i++)
        if (i % NORIG != 0)
            expect_rec(&h, i);
    /* Everything committed: only the segment being appended to stays. */
    for (int o = 0; o < NORIG; o++)
        gw_hubj_commit(&h, (uint32_t)o, 80);
    ASSERT_EQ(gw_hubj_checkpoint(&h), 0);
    gw_hubj_stats_get(&h, &st);
    ASSERT_EQ(st.records, 0);
    ASSERT_LE(st.segments, 1);
    gw_hubj_free(&h);
    /* have() survives the reclaim through the checkpoint */
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    ASSERT_U64_EQ(gw_hubj_have(&h, (uint32_t)gw_hubj_origin(&h, "gw-b", 0)), 80);
    gw_hubj_free(&h);
    fws_sim_destroy(sim);
}

TEST(capacity_refuses_keeps_accepted)
{
    fws shim;
    fws_sim *sim = mk_sim(2, &shim);
    gw_hubj_config c = cfg();
    c.capacity = 8192;
    gw_hubj h;
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    int i = 0, rc = 0;
    for (; i < 200 && (rc = append_env(&h, i)) >= 0; i++)
        ;
    ASSERT_EQ(rc, SS_EFULL);
    ASSERT_GT(i, 5);
    ASSERT_EQ(gw_hubj_sync(&h), 0);
    gw_hubj_free(&h);
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    for (int k = 0; k < i; k++)
        expect_rec(&h, k);
    gw_hubj_free(&h);
    fws_sim_destroy(sim);
}

/* The workload: appends, a sync every 3 (what was synced is "acked"), an
 * upstream commit and checkpoint every 10. Stops at the first failure (the
 * power is gone). *acked gets the number of envelopes synced. */
static void workload(gw_hubj *h, fws_sim *sim, int n, int *acked)
{
    for (int i = 0; i < n; i++) {
        if (append_env(h, i) < 0)
            return;
        if (i % 3 == 2) {
            if (gw_hubj_sync(h) < 0)
                return;
            *acked = i + 1;
        }
        if (i % 10 == 9) {
            /* the upstream has committed the first half of each origin's */
            uint64_t upto = (uint64_t)(i / NORIG) * 2;
            for (int o = 0; o < NORIG; o++)
                gw_hubj_commit(h, (uint32_t)o, upto);
            if (gw_hubj_checkpoint(h) < 0)
                return;
        }
        if (fws_sim_powered_off(sim))
            return;
    }
}

static void cut_loop(fws_sim_tear mode)
{
    const int n = 90;
    fws shim;
    gw_hubj_config c = cfg();
    gw_hubj h;
    fws_sim *sim = mk_sim(5, &shim);
    ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
    int acked = 0;
    uint64_t base = fws_sim_ops(sim);
    workload(&h, sim, n, &acked);
    ASSERT_EQ(acked, n);
    uint64_t total = fws_sim_ops(sim) - base;
    fprintf(stderr, "cut loop over %" PRIu64 " mutating operations\n", total);
    gw_hubj_free(&h);
    fws_sim_destroy(sim);
    for (uint64_t k = 1; k <= total; k++) {
        sim = mk_sim(100 + k, &shim);
        ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
        ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + k, (size_t)(k * 53 % 700), mode), 0);
        acked = 0;
        workload(&h, sim, n, &acked);
        ASSERT(fws_sim_powered_off(sim));
        gw_hubj_free(&h);
        fws_sim_power_cut(sim);
        ASSERT_EQ(gw_hubj_open(&h, &shim, &c, 0), 0);
        /* every synced envelope is there, byte for byte, unless the
         * upstream had committed it */
        for (int i = 0; i < acked; i++) {
            int o = gw_hubj_origin(&h, origins[i % NORIG], 0);
            ASSERT_GE(o, 0);
            uint64_t first = (uint64_t)(i / NORIG) * 4 + 1;
            if (first + 3 > h.origins[o].committed)
                expect_rec(&h, i);
            ASSERT_GE(gw_hubj_have(&h, (uint32_t)o), first + 3);
        }
        /* writable again */
        ASSERT_GE(append_env(&h, n + 3), 0);
        ASSERT_EQ(gw_hubj_sync(&h), 0);
        gw_hubj_free(&h);
        fws_sim_destroy(sim);
    }
}

TEST(power_cut_every_op_trunc)
{
    cut_loop(FWS_SIM_TEAR_TRUNC);
}

TEST(power_cut_every_op_garbage)
{
    cut_loop(FWS_SIM_TEAR_GARBAGE);
}

SS_TEST_MAIN(SS_TEST_ENTRY(append_sync_reopen_commit_reclaim)
                 SS_TEST_ENTRY(capacity_refuses_keeps_accepted)
                     SS_TEST_ENTRY(power_cut_every_op_trunc)
                         SS_TEST_ENTRY(power_cut_every_op_garbage))
