/* test_sim_sync.c - the gateway end to end on the simulated shim against a
 * fake daemon with an exactly-once reference state: a workload of >= 500
 * submissions interleaved with syncs and reclaims, with a power cut at every
 * mutating operation (and a second one during recovery), link cuts at every
 * byte of a batch exchange in both directions, a full journal, refused
 * changes, bit flips and a gateway that lost its storage.
 * GW_SIM_LARGE=1 runs bigger workloads. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fws_sim.h"
#include "gw/node.h"
#include "gw/sync.h"
#include "gw_fake_server.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "ss_test.h"

#define NODE "gw-test"
#define SITE "site-a"

typedef struct world {
    fws gshim, sshim;
    fws_sim *gsim, *ssim;
    fake_server *srv;
    gw_node node;
    int node_open;
    ss_ident id;
    gw_journal_config jc;
    gw_sync_config sc;
    gw_sync sync;
    gw_sync_result last;
    gw_signer signer;
    char key_pem[2048], cert_pem[4096];
} world;

static int large(void)
{
    const char *e = getenv("GW_SIM_LARGE");
    return e && e[0] == '1';
}

static void world_new(world *w, uint64_t seed)
{
    memset(w, 0, sizeof(*w));
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = seed;
    c.log_level = -1;
    ASSERT_EQ(fws_sim_new(&c, &w->gsim, &w->gshim), 0);
    c.world = w->gsim;
    c.seed = seed + 1000003;
    ASSERT_EQ(fws_sim_new(&c, &w->ssim, &w->sshim), 0);
    w->srv = calloc(1, sizeof(*w->srv));
    ASSERT(w->srv != NULL);
    ASSERT_EQ(fake_server_start(w->srv, &w->sshim, NODE), 0);
    fws_sim_set_idle_hook(w->gsim, fake_server_idle, w->srv);
    ss_ident_init(&w->id);
    const char *uris[] = { "urn:sitesync:node:" NODE, "urn:sitesync:role:gateway",
                           "urn:sitesync:site:" SITE };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(ss_ident_add_uri(&w->id, uris[i], strlen(uris[i])), 0);
    gw_journal_config_default(&w->jc);
    w->jc.segment_max = 4096;
    w->jc.entry_max = 1024;
    w->jc.capacity = 256 * 1024;
    gw_sync_config_default(&w->sc);
    w->sc.window = 3;
    w->sc.batch_max = 8;
    w->sc.max_frame = 65536;
    w->sc.ping_interval_ms = 2000;
    w->sc.io_timeout_ms = 10000;
    w->sc.handshake_timeout_ms = 5000;
    ASSERT_EQ(gw_sync_setup(&w->sync, &w->sc), 0);
    gw_signer_init(&w->signer);
}

/* Every envelope signed by the gateway's key and verified by the fake
 * daemon (the long power-cut loops leave it off: they test storage, and
 * ECDSA on every envelope of thousands of runs would cost minutes). */
static void world_sign(world *w)
{
    ASSERT_EQ(fake_make_cert(&w->gshim, NODE, w->key_pem, sizeof(w->key_pem), w->cert_pem,
                             sizeof(w->cert_pem)),
              0);
    ASSERT_EQ(gw_signer_setup(&w->signer, &w->gshim, w->cert_pem, w->key_pem), 0);
    ASSERT_EQ(fake_server_pin(w->srv, w->cert_pem), 0);
    w->sync.signer = &w->signer;
}

static int node_open(world *w)
{
    if (w->node_open)
        gw_node_free(&w->node);
    w->node_open = 0;
    int rc = gw_node_open(&w->node, &w->gshim, &w->id, &w->jc);
    if (rc == 0)
        w->node_open = 1;
    return rc;
}

static void world_free(world *w)
{
    if (w->node_open)
        gw_node_free(&w->node);
    gw_sync_free(&w->sync);
    gw_signer_free(&w->signer);
    fake_server_stop(w->srv);
    free(w->srv);
    fws_sim_destroy(w->gsim);
    fws_sim_destroy(w->ssim);
}

/* Submission i: a status update or an incident, carrying the unique marker
 * "wk-<i>-end" so the server's state can be searched for it. */
static int submit(world *w, int i, ss_verr *err)
{
    ss_change ch;
    char marker[32];
    snprintf(marker, sizeof(marker), "wk-%d-end", i);
    int rc;
    if (i % 3 == 0) {
        rc = gw_node_begin(&w->node, &ch, SS_COLL_SITE_STATUS, SS_OP_UPDATE, NULL, NULL, err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "note", marker, err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "alert_level", i % 2 ? "elevated" : "normal", err);
    } else {
        rc = gw_node_begin(&w->node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, NULL, err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "category", "intrusion", err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "severity", "3", err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "title", marker, err);
    }
    if (rc == 0)
        rc = gw_node_submit(&w->node, &ch, err);
    return rc;
}

/* One session; *sent (optional) gets the bytes sent in each direction. */
static int sync_counted(world *w, int64_t sent[2])
{
    gw_plain p;
    gw_stream st;
    int rc = gw_plain_connect(&p, &w->gshim, "127.0.0.1", w->srv->port, 1000, &st);
    if (rc < 0)
        return rc;
    uint64_t conn = fws_sim_sock_conn_id(w->gsim, p.sock);
    rc = gw_sync_session(&w->sync, &w->node, &st, &w->last);
    if (sent) {
        fake_server_step(w->srv); /* let the daemon read the BYE */
        sent[0] = fws_sim_net_sent(w->gsim, conn, FWS_SIM_C2S);
        sent[1] = fws_sim_net_sent(w->gsim, conn, FWS_SIM_S2C);
    }
    st.ops->close(st.ctx);
    /* The fake daemon notices the close on its next step. */
    fake_server_step(w->srv);
    return rc;
}

static int sync_once(world *w)
{
    return sync_counted(w, NULL);
}

static void drain(world *w)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        if (sync_once(w) == 0) {
            gw_journal_stats st;
            gw_journal_stats_get(&w->node.journal, &st);
            ASSERT_U64_EQ(st.pending, 0);
            return;
        }
    }
    SS_TEST_FAIL("sync did not drain: %s (%s)", ss_err_name(w->last.err), w->last.message);
}

static void check_exactly_once(world *w, const int *ok, int n)
{
    if (w->srv->failure[0])
        SS_TEST_FAIL("fake daemon saw: %s", w->srv->failure);
    for (int i = 0; i < n; i++) {
        char marker[32];
        snprintf(marker, sizeof(marker), "\"wk-%d-end\"", i);
        int c = fake_server_count(w->srv, marker);
        if (ok[i] && c != 1)
            SS_TEST_FAIL("submission %d returned success but is present %d times", i, c);
        if (!ok[i] && c > 1)
            SS_TEST_FAIL("failed submission %d present %d times", i, c);
    }
}

TEST(workload_syncs_everything_once)
{
    world w;
    world_new(&w, 1);
    world_sign(&w);
    ASSERT_EQ(node_open(&w), 0);
    int n = large() ? 3000 : 600;
    int *ok = calloc((size_t)n, sizeof(int));
    ss_verr err;
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(submit(&w, i, &err), 0);
        ok[i] = 1;
        if (i % 25 == 24)
            ASSERT_EQ(sync_once(&w), 0);
    }
    drain(&w);
    check_exactly_once(&w, ok, n);
    ASSERT_U64_EQ(w.srv->applied, (uint64_t)n);
    ASSERT_EQ(w.srv->duplicates, 0);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_EQ(st.segments, 0); /* everything reclaimed */
    ASSERT_GT(w.srv->envelopes, (uint64_t)n / 8);
    ASSERT_U64_EQ(w.srv->verified, w.srv->envelopes); /* every envelope signed */
    ASSERT_EQ(w.srv->bad_signatures, 0);
    /* The HLC never runs behind the daemon's time. */
    ASSERT_GE(gw_journal_hlc(&w.node.journal), ss_hlc_make((uint64_t)fws_wall_ms(&w.gshim) - 1, 0));
    free(ok);
    world_free(&w);
}

TEST(hlc_adopts_daemon_time_ahead)
{
    world w;
    world_new(&w, 2);
    w.srv->clock_ahead_ms = 3600 * 1000; /* the daemon's clock is an hour ahead */
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    ASSERT_EQ(submit(&w, 1, &err), 0);
    drain(&w);
    ss_hlc_t t = ss_hlc_make((uint64_t)(fws_wall_ms(&w.gshim) + 3600 * 1000 - 10), 0);
    ASSERT_GE(gw_journal_hlc(&w.node.journal), t);
    /* Persisted: a restart keeps it. */
    ASSERT_EQ(node_open(&w), 0);
    ASSERT_GE(gw_journal_hlc(&w.node.journal), t);
    ss_change ch;
    ASSERT_EQ(gw_node_begin(&w.node, &ch, SS_COLL_SITE_STATUS, SS_OP_UPDATE, NULL, NULL, &err), 0);
    ASSERT_GT(ch.hlc, t);
    world_free(&w);
}

/* The power-cut workload: submissions with a sync every `every`, stopping at
 * the first storage failure (the power is gone). ok[i] = 1 for those that
 * returned success. */
static void cut_workload(world *w, int n, int every, int *ok)
{
    ss_verr err;
    if (node_open(w) != 0)
        return;
    for (int i = 0; i < n; i++) {
        int rc = submit(w, i, &err);
        if (rc == 0)
            ok[i] = 1;
        else if (fws_sim_powered_off(w->gsim))
            return;
        else
            SS_TEST_FAIL("submission %d failed without a cut: %s", i, err.msg);
        if (i % every == every - 1) {
            (void)sync_once(w);
            if (fws_sim_powered_off(w->gsim))
                return;
        }
    }
}

static void power_cut_loop(int second)
{
    int n = large() ? 1500 : 500, every = 20;
    world w;
    int *ok = calloc((size_t)n, sizeof(int));
    world_new(&w, 10);
    uint64_t base = fws_sim_ops(w.gsim);
    cut_workload(&w, n, every, ok);
    uint64_t total = fws_sim_ops(w.gsim) - base;
    world_free(&w);
    ASSERT_GT(total, (uint64_t)n * 3);
    uint64_t limit = second ? (total < 200 ? total : 200) : total;
    for (uint64_t k = 1; k <= limit; k++) {
        memset(ok, 0, (size_t)n * sizeof(int));
        world_new(&w, 100 + k);
        fws_sim_tear mode = (k & 1) ? FWS_SIM_TEAR_GARBAGE : FWS_SIM_TEAR_TRUNC;
        ASSERT_EQ(fws_sim_set_cut_at(w.gsim, fws_sim_ops(w.gsim) + k, (size_t)(k * 37 % 300), mode),
                  0);
        cut_workload(&w, n, every, ok);
        ASSERT(fws_sim_powered_off(w.gsim));
        if (w.node_open)
            gw_node_free(&w.node);
        w.node_open = 0;
        fws_sim_power_cut(w.gsim);
        fake_server_step(w.srv); /* the daemon sees the reset */
        if (second) {
            /* Cut again during recovery and the first sync after it. */
            ASSERT_EQ(fws_sim_set_cut_at(w.gsim, fws_sim_ops(w.gsim) + 1 + k % 7, 11, mode), 0);
            if (node_open(&w) == 0)
                (void)sync_once(&w);
            if (w.node_open)
                gw_node_free(&w.node);
            w.node_open = 0;
            fws_sim_power_cut(w.gsim);
            fake_server_step(w.srv);
        }
        ASSERT_EQ(node_open(&w), 0);
        drain(&w);
        check_exactly_once(&w, ok, n);
        /* Writable afterwards, and that is delivered too. */
        ss_verr err;
        ASSERT_EQ(submit(&w, n + 1, &err), 0);
        drain(&w);
        ASSERT_EQ(fake_server_count(w.srv, "\"wk-"
                                           "0"
                                           "-end\"") <= 1,
                  1);
        char m[32];
        snprintf(m, sizeof(m), "\"wk-%d-end\"", n + 1);
        ASSERT_EQ(fake_server_count(w.srv, m), 1);
        world_free(&w);
    }
    free(ok);
}

TEST(power_cut_at_every_op)
{
    power_cut_loop(0);
}

TEST(second_power_cut_during_recovery)
{
    power_cut_loop(1);
}

/* Link cut after every k bytes of one batch exchange, in each direction. */
static void link_cut_loop(int dir)
{
    const int n = 30;
    world w;
    ss_verr err;
    world_new(&w, 20);
    ASSERT_EQ(node_open(&w), 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(submit(&w, i, &err), 0);
    int64_t sent[2];
    ASSERT_EQ(sync_counted(&w, sent), 0);
    int64_t bytes = sent[dir];
    world_free(&w);
    ASSERT_GT(bytes, 100);
    fprintf(stderr, "direction %d: %lld bytes in the exchange\n", dir, (long long)bytes);
    int ok[30];
    for (int i = 0; i < n; i++)
        ok[i] = 1;
    for (int64_t k = 0; k <= bytes; k++) {
        world_new(&w, 20);
        ASSERT_EQ(node_open(&w), 0);
        for (int i = 0; i < n; i++)
            ASSERT_EQ(submit(&w, i, &err), 0);
        fws_sim_link link;
        memset(&link, 0, sizeof(link));
        link.cut[dir] = 1;
        link.cut_after[dir] = (uint64_t)k;
        fws_sim_net_set_next_link(w.gsim, &link);
        int rc = sync_once(&w);
        /* The cut must have broken the exchange, unless it fell on the
         * closing BYE, which the client sends after it is drained. */
        if (k + 40 < bytes)
            ASSERT_NE(rc, 0);
        drain(&w);
        check_exactly_once(&w, ok, n);
        ASSERT_U64_EQ(w.srv->applied, (uint64_t)n);
        world_free(&w);
    }
}

TEST(link_cut_every_byte_client_to_server)
{
    link_cut_loop(FWS_SIM_C2S);
}

TEST(link_cut_every_byte_server_to_client)
{
    link_cut_loop(FWS_SIM_S2C);
}

TEST(full_journal_refuses_then_sync_frees_space)
{
    world w;
    world_new(&w, 30);
    w.jc.capacity = 8192;
    w.jc.segment_max = 2048;
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    int ok[400];
    memset(ok, 0, sizeof(ok));
    int i = 0, rc = 0;
    for (; i < 200; i++) {
        memset(&err, 0, sizeof(err));
        rc = submit(&w, i, &err);
        if (rc != 0)
            break;
        ok[i] = 1;
    }
    ASSERT_EQ(rc, SS_EFULL);
    ASSERT(strstr(err.msg, "journal full") != NULL);
    ASSERT(strstr(err.msg, "nothing accepted was dropped") != NULL);
    int refused_at = i;
    ASSERT_EQ(submit(&w, ++i, &err), SS_EFULL);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_U64_EQ(st.full_refusals, 2);
    drain(&w);
    for (i = refused_at + 2; i < refused_at + 20; i++) {
        ASSERT_EQ(submit(&w, i, &err), 0);
        ok[i] = 1;
    }
    drain(&w);
    check_exactly_once(&w, ok, 400);
    world_free(&w);
}

static int find_line(void *arg, const char *line)
{
    const char **want = arg;
    if (strstr(line, want[0]) && strstr(line, want[1]))
        want[2] = "found";
    return 0;
}

TEST(refused_changes_recorded_not_retried)
{
    world w;
    world_new(&w, 40);
    w.srv->reject_marker = "wk-4-end";
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(submit(&w, i, &err), 0);
    ASSERT_EQ(sync_once(&w), 0);
    ASSERT_U64_EQ(w.last.refused, 1);
    ASSERT_EQ(fake_server_count(w.srv, "\"wk-4-end\""), 0);
    ASSERT_EQ(fake_server_count(w.srv, "\"wk-5-end\""), 1);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_U64_EQ(st.refused, 1);
    ASSERT_U64_EQ(st.pending, 0);
    const char *want[3] = { "code=forbidden_site", "wk-4-end", NULL };
    ASSERT_EQ(gw_journal_refused_walk(&w.node.journal, find_line, want), 0);
    ASSERT(want[2] != NULL);
    /* Not retried: a second sync sends nothing. */
    uint64_t env = w.srv->envelopes;
    ASSERT_EQ(sync_once(&w), 0);
    ASSERT_U64_EQ(w.srv->envelopes, env);
    world_free(&w);
}

/* Rewrites a durable file with one byte flipped. */
static void flip_byte(world *w, const char *name, uint64_t off)
{
    static uint8_t data[65536];
    int64_t sz = fws_sim_peek(w->gsim, name, 1, data, sizeof(data));
    ASSERT_GT(sz, (int64_t)off);
    data[off] ^= 0x01;
    fws_file *f = NULL;
    ASSERT_EQ(fws_open(&w->gshim, name, 0, &f), 0);
    ASSERT_EQ(fws_truncate(&w->gshim, f, 0), 0);
    ASSERT_EQ(fws_append(&w->gshim, f, data, (size_t)sz), 0);
    ASSERT_EQ(fws_sync(&w->gshim, f), 0);
    fws_close(&w->gshim, f);
}

TEST(bit_flip_detected_reported_never_applied)
{
    world w;
    world_new(&w, 50);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    for (int i = 0; i < 12; i++)
        ASSERT_EQ(submit(&w, i, &err), 0);
    gw_node_free(&w.node);
    w.node_open = 0;
    /* Flip a byte inside the 3rd entry's payload (seq 3 = submission 2). */
    uint8_t seg[8192];
    int64_t sz = fws_sim_peek(w.gsim, "seg-0000000000000001.log", 1, seg, sizeof(seg));
    ASSERT_GT(sz, 0);
    uint64_t off = 0;
    for (int e = 0; e < 2; e++) {
        uint32_t len = ((uint32_t)seg[off + 4] << 24) | ((uint32_t)seg[off + 5] << 16) |
                       ((uint32_t)seg[off + 6] << 8) | seg[off + 7];
        off += GW_JOURNAL_ENTRY_HDR + len;
    }
    flip_byte(&w, "seg-0000000000000001.log", off + GW_JOURNAL_ENTRY_HDR + 40);
    ASSERT_EQ(node_open(&w), 0);
    drain(&w);
    int ok[12];
    for (int i = 0; i < 12; i++)
        ok[i] = i != 2;
    check_exactly_once(&w, ok, 12);
    ASSERT_EQ(fake_server_count(w.srv, "wk-2-end"), 0); /* never applied */
    ASSERT_U64_EQ(w.srv->rejects, 1);                   /* the placeholder, refused */
    ASSERT(strstr(w.srv->raw[3], "\"lost\"") != NULL);
    ASSERT_U64_EQ(w.last.placeholders, 1);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_U64_EQ(st.lost, 1);
    ASSERT_GE(st.crc_failures, 1);
    world_free(&w);
}

TEST(lost_storage_resumes_after_committed)
{
    world w;
    world_new(&w, 60);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(submit(&w, i, &err), 0);
    drain(&w);
    gw_node_free(&w.node);
    w.node_open = 0;
    /* New, empty flash (same certificate): the daemon's committed seq wins. */
    fws_sim *old = w.gsim;
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = 61;
    c.world = w.ssim;
    c.log_level = -1;
    ASSERT_EQ(fws_sim_new(&c, &w.gsim, &w.gshim), 0);
    fws_sim_set_idle_hook(w.gsim, fake_server_idle, w.srv);
    fws_sim_destroy(old);
    ASSERT_EQ(node_open(&w), 0);
    ASSERT_EQ(sync_once(&w), 0);
    ASSERT_U64_EQ(gw_journal_next_seq(&w.node.journal), 6);
    ASSERT_EQ(submit(&w, 5, &err), 0);
    drain(&w);
    ASSERT_EQ(fake_server_count(w.srv, "\"wk-5-end\""), 1);
    ASSERT_EQ(w.srv->failure[0], 0);
    world_free(&w);
}

/* Replaces the gateway's flash with a new, empty one (same certificate). */
static void new_flash(world *w, uint64_t seed)
{
    if (w->node_open)
        gw_node_free(&w->node);
    w->node_open = 0;
    fws_sim *old = w->gsim;
    fws_sim_config c;
    memset(&c, 0, sizeof(c));
    c.seed = seed;
    c.world = w->ssim;
    c.log_level = -1;
    ASSERT_EQ(fws_sim_new(&c, &w->gsim, &w->gshim), 0);
    fws_sim_set_idle_hook(w->gsim, fake_server_idle, w->srv);
    fws_sim_destroy(old);
}

/* 5 changes delivered, storage lost, 30 recorded offline before the next
 * connection: they carry numbers 1..30 the daemon already holds (1..5).
 * Without the renumber, 1..5 would be taken as acknowledged and lost. */
static void offline_after_loss(world *w, uint64_t seed)
{
    world_new(w, seed);
    if (seed == 62)
        world_sign(w);
    ASSERT_EQ(node_open(w), 0);
    ss_verr err;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(submit(w, i, &err), 0);
    drain(w);
    new_flash(w, seed + 1);
    ASSERT_EQ(node_open(w), 0);
    for (int i = 100; i < 130; i++)
        ASSERT_EQ(submit(w, i, &err), 0);
}

static void check_offline_after_loss(world *w)
{
    if (w->srv->failure[0])
        SS_TEST_FAIL("fake daemon saw: %s", w->srv->failure);
    ASSERT_EQ(w->srv->tampers, 0);
    for (int i = 0; i < 130; i = (i == 4 ? 100 : i + 1)) {
        char m[32];
        snprintf(m, sizeof(m), "\"wk-%d-end\"", i);
        int c = fake_server_count(w->srv, m);
        if (c != 1)
            SS_TEST_FAIL("submission %d present %d times", i, c);
    }
    ASSERT_U64_EQ(w->srv->committed, 35);
}

TEST(lost_storage_offline_entries_renumbered)
{
    world w;
    offline_after_loss(&w, 62);
    drain(&w);
    check_offline_after_loss(&w);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_EQ(st.confirmed, 1);
    ASSERT_U64_EQ(st.next_seq, 36);
    ASSERT_U64_EQ(st.lost, 0);
    world_free(&w);
}

/* A power cut at every mutating operation of the session that renumbers
 * (the rn-* copy, the commit, the switch, the sends, the ACK checkpoints),
 * then recovery and a drain: everything exactly once. */
TEST(power_cut_at_every_op_of_renumbering_sync)
{
    world w;
    offline_after_loss(&w, 64);
    uint64_t base = fws_sim_ops(w.gsim);
    ASSERT_EQ(sync_once(&w), 0);
    ASSERT_U64_EQ(w.last.renumbered, 30);
    uint64_t total = fws_sim_ops(w.gsim) - base;
    check_offline_after_loss(&w);
    world_free(&w);
    ASSERT_GT(total, 60);
    for (uint64_t k = 1; k <= total; k++) {
        offline_after_loss(&w, 64);
        fws_sim_tear mode = (k & 1) ? FWS_SIM_TEAR_GARBAGE : FWS_SIM_TEAR_TRUNC;
        ASSERT_EQ(fws_sim_set_cut_at(w.gsim, fws_sim_ops(w.gsim) + k, (size_t)(k * 29 % 200), mode),
                  0);
        (void)sync_once(&w);
        ASSERT(fws_sim_powered_off(w.gsim));
        gw_node_free(&w.node);
        w.node_open = 0;
        fws_sim_power_cut(w.gsim);
        fake_server_step(w.srv);
        if (k % 3 == 0) {
            /* a second cut while recovering */
            ASSERT_EQ(fws_sim_set_cut_at(w.gsim, fws_sim_ops(w.gsim) + 1 + k % 5, 7, mode), 0);
            if (node_open(&w) == 0)
                (void)sync_once(&w);
            if (w.node_open)
                gw_node_free(&w.node);
            w.node_open = 0;
            fws_sim_power_cut(w.gsim);
            fake_server_step(w.srv);
        }
        ASSERT_EQ(node_open(&w), 0);
        drain(&w);
        check_offline_after_loss(&w);
        world_free(&w);
    }
}

/* An envelope the gateway signed: flipping any byte of it, or stripping the
 * signature, makes the daemon's check fail. */
TEST(signed_envelope_every_flipped_byte_refused)
{
    world w;
    world_new(&w, 90);
    world_sign(&w);
    static uint8_t env[8192];
    const char body[] = "[{\"seq\":1,\"hlc\":\"0194a8f1c2d00000\",\"collection\":\"site_status\","
                        "\"key\":\"site-a\",\"site\":\"site-a\",\"op\":\"update\","
                        "\"fields\":{\"alert_level\":\"high\"}}]";
    int hl = ss_envelope_write_header(env, sizeof(env), NODE, 1, 1, sizeof(body) - 1, 0);
    ASSERT_GT(hl, 0);
    memcpy(env + hl, body, sizeof(body) - 1);
    size_t signed_len = (size_t)hl + sizeof(body) - 1;
    int tl = gw_sign_envelope(&w.signer, env, signed_len, sizeof(env) - signed_len);
    ASSERT_GT(tl, 0);
    size_t total = signed_len + (size_t)tl;
    ASSERT_EQ(fake_server_verify(w.srv, env, total), 0);
    for (size_t i = 0; i < total; i++) {
        for (int bit = 0; bit < 8; bit += 5) {
            env[i] ^= (uint8_t)(1u << bit);
            if (fake_server_verify(w.srv, env, total) == 0)
                SS_TEST_FAIL("byte %zu bit %d flipped and still verified", i, bit);
            env[i] ^= (uint8_t)(1u << bit);
        }
    }
    ASSERT_EQ(fake_server_verify(w.srv, env, total), 0);
    /* Stripped: the flag cleared and the trailer cut is an unsigned envelope. */
    env[1] = 0;
    ASSERT_EQ(fake_server_verify(w.srv, env, signed_len), SS_ESIG);
    world_free(&w);
}

/* A byte changed on the way: the daemon refuses the envelope (nothing
 * applied, the sequence not consumed), the session ends, the retry delivers
 * everything exactly once. */
TEST(tampered_batch_refused_then_delivered)
{
    world w;
    world_new(&w, 91);
    world_sign(&w);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    int ok[20];
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(submit(&w, i, &err), 0);
        ok[i] = 1;
    }
    w.srv->flip_next_batch = 1;
    ASSERT_EQ(sync_once(&w), SS_ESIG);
    ASSERT_U64_EQ(w.srv->bad_signatures, 1);
    drain(&w);
    check_exactly_once(&w, ok, 20);
    ASSERT_U64_EQ(w.srv->applied, 20);
    ASSERT_EQ(w.srv->bad_signatures, 1);
    world_free(&w);
}

/* A persistent I/O error during a submission's sync, so that the partial
 * entry cannot be truncated away either: the caller is told the outcome is
 * unknown (not "failed", which would make it submit again), and after the
 * storage recovers the entry, if it is there, is delivered exactly once. */
TEST(io_error_outcome_unknown_not_failed)
{
    world w;
    world_new(&w, 95);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    int ok[3] = { 1, 0, 0 };
    ASSERT_EQ(submit(&w, 0, &err), 0);
    /* submission 1: append header, append payload, then the sync fails and
     * so does everything after it */
    ASSERT_EQ(fws_sim_fail_op(w.gsim, fws_sim_ops(w.gsim) + 3, FWS_EIO, 1), 0);
    memset(&err, 0, sizeof(err));
    ASSERT_EQ(submit(&w, 1, &err), SS_EIO);
    ASSERT(strstr(err.msg, "MAY be on storage") != NULL);
    fws_sim_clear_faults(w.gsim);
    fws_sim_reboot(w.gsim); /* the process restarts; the OS kept what it had */
    ASSERT_EQ(node_open(&w), 0);
    drain(&w);
    check_exactly_once(&w, ok, 1);
    ASSERT_LE(fake_server_count(w.srv, "\"wk-1-end\""), 1);
    /* A plain failure (the rollback worked) says nothing was recorded. */
    ASSERT_EQ(fws_sim_fail_op(w.gsim, fws_sim_ops(w.gsim) + 3, FWS_EIO, 0), 0);
    memset(&err, 0, sizeof(err));
    ASSERT_EQ(submit(&w, 2, &err), SS_EIO);
    ASSERT(strstr(err.msg, "nothing was recorded") != NULL);
    fws_sim_clear_faults(w.gsim);
    ok[2] = 0;
    drain(&w);
    ASSERT_EQ(fake_server_count(w.srv, "\"wk-2-end\""), 0);
    world_free(&w);
}

TEST(site_not_in_certificate_refused_at_submission)
{
    world w;
    world_new(&w, 70);
    ASSERT_EQ(node_open(&w), 0);
    ss_change ch;
    ss_verr err;
    ASSERT_EQ(gw_node_begin(&w.node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, "site-b", &err),
              SS_EFORBIDDEN);
    ASSERT_STR_EQ(err.field, "site");
    /* A change edited to another site after begin is refused too. */
    ASSERT_EQ(gw_node_begin(&w.node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, NULL, &err), 0);
    memcpy(ch.site, "site-b", 7);
    ASSERT_EQ(gw_node_submit(&w.node, &ch, &err), SS_EFORBIDDEN);
    /* Schema errors name the field. */
    ASSERT_EQ(gw_node_begin(&w.node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, NULL, &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "category", "intrusion", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "severity", "3", &err), 0);
    ASSERT_LT(gw_node_submit(&w.node, &ch, &err), 0); /* title missing */
    ASSERT_STR_EQ(err.field, "title");
    ASSERT_U64_EQ(gw_journal_next_seq(&w.node.journal), 1);
    world_free(&w);
}

TEST(keepalive_ping_while_daemon_slow)
{
    world w;
    world_new(&w, 80);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    ASSERT_EQ(submit(&w, 0, &err), 0);
    /* Delay everything the daemon sends by 5 s: the client pings meanwhile
     * and still completes. */
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.delay_ms[FWS_SIM_S2C] = 5000;
    fws_sim_net_set_next_link(w.gsim, &link);
    ASSERT_EQ(sync_once(&w), 0);
    ASSERT_GE(w.last.pings, 1);
    world_free(&w);
}

TEST(stop_request_ends_session_without_loss)
{
    world w;
    world_new(&w, 95);
    ASSERT_EQ(node_open(&w), 0);
    ss_verr err;
    int ok[40];
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(submit(&w, i, &err), 0);
        ok[i] = 1;
    }
    volatile sig_atomic_t stop = 1;
    w.sync.stop = &stop;
    ASSERT_EQ(sync_once(&w), SS_ESHUTDOWN);
    ASSERT_U64_EQ(w.last.envelopes, 0);
    gw_journal_stats st;
    gw_journal_stats_get(&w.node.journal, &st);
    ASSERT_U64_EQ(st.pending, 40);
    ASSERT_U64_EQ(st.last_error, SS_ESHUTDOWN);
    stop = 0;
    drain(&w);
    check_exactly_once(&w, ok, 40);
    world_free(&w);
}

TEST(backoff_grows_with_jitter_and_cap)
{
    world w;
    world_new(&w, 90);
    uint32_t prev_max = 0;
    for (unsigned a = 0; a < 12; a++) {
        uint32_t d = gw_backoff_ms(&w.gshim, &w.sc, a);
        uint64_t full = (uint64_t)w.sc.backoff_min_ms << a;
        if (full > w.sc.backoff_max_ms)
            full = w.sc.backoff_max_ms;
        ASSERT_GE(d, full / 2);
        ASSERT_LE(d, full);
        prev_max = d > prev_max ? d : prev_max;
    }
    ASSERT_LE(prev_max, w.sc.backoff_max_ms);
    world_free(&w);
}

SS_TEST_MAIN(
    SS_TEST_ENTRY(workload_syncs_everything_once) SS_TEST_ENTRY(hlc_adopts_daemon_time_ahead)
        SS_TEST_ENTRY(power_cut_at_every_op) SS_TEST_ENTRY(second_power_cut_during_recovery)
            SS_TEST_ENTRY(link_cut_every_byte_client_to_server)
                SS_TEST_ENTRY(link_cut_every_byte_server_to_client) SS_TEST_ENTRY(
                    full_journal_refuses_then_sync_frees_space)
                    SS_TEST_ENTRY(refused_changes_recorded_not_retried) SS_TEST_ENTRY(
                        bit_flip_detected_reported_never_applied)
                        SS_TEST_ENTRY(lost_storage_resumes_after_committed) SS_TEST_ENTRY(
                            lost_storage_offline_entries_renumbered)
                            SS_TEST_ENTRY(power_cut_at_every_op_of_renumbering_sync) SS_TEST_ENTRY(
                                signed_envelope_every_flipped_byte_refused)
                                SS_TEST_ENTRY(tampered_batch_refused_then_delivered) SS_TEST_ENTRY(
                                    io_error_outcome_unknown_not_failed)
                                    SS_TEST_ENTRY(site_not_in_certificate_refused_at_submission)
                                        SS_TEST_ENTRY(keepalive_ping_while_daemon_slow)
                                            SS_TEST_ENTRY(stop_request_ends_session_without_loss)
                                                SS_TEST_ENTRY(backoff_grows_with_jitter_and_cap))
