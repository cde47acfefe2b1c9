/* test_sim_storage.c - the simulated shim's storage: volatility until sync,
 * power cuts at every operation, torn writes, injected faults, capacity,
 * the virtual clock and seed determinism. */
#include "fws_sim.h"
#include "ss_test.h"

#include <stdarg.h>

static fws_sim *mk(uint64_t seed, fws *s)
{
    fws_sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.seed = seed;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, s), 0);
    return sim;
}

static fws_file *mkfile(fws *s, const char *name)
{
    fws_file *f = NULL;
    ASSERT_EQ(fws_open(s, name, FWS_O_CREATE, &f), 0);
    return f;
}

/* Current content of a file through the shim (after a reboot). */
static int64_t content(fws *s, const char *name, uint8_t *buf, size_t cap)
{
    fws_file *f = NULL;
    int rc = fws_open(s, name, 0, &f);
    if (rc < 0)
        return rc;
    uint64_t sz = 0;
    ASSERT_EQ(fws_size(s, f, &sz), 0);
    ASSERT_LE(sz, cap);
    ASSERT_EQ(fws_read_full(s, f, 0, buf, (size_t)sz), 0);
    fws_close(s, f);
    return (int64_t)sz;
}

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 7u);
}

TEST(unsynced_data_lost_at_power_cut)
{
    fws s;
    fws_sim *sim = mk(1, &s);
    fws_file *f = mkfile(&s, "seg");
    ASSERT_EQ(fws_append(&s, f, "durable", 7), 0);
    ASSERT_EQ(fws_sync(&s, f), 0);
    ASSERT_EQ(fws_append(&s, f, "-volatile", 9), 0);
    uint64_t sz = 0;
    ASSERT_EQ(fws_size(&s, f, &sz), 0);
    ASSERT_U64_EQ(sz, 16);
    fws_file *g = mkfile(&s, "never-synced");
    ASSERT_EQ(fws_append(&s, g, "abc", 3), 0);
    fws_sim_power_cut(sim);
    /* Old handles are stale, not dangling. */
    ASSERT_EQ(fws_size(&s, f, &sz), FWS_EPOWER);
    ASSERT_EQ(fws_append(&s, f, "x", 1), FWS_EPOWER);
    fws_close(&s, f);
    fws_close(&s, g);
    uint8_t buf[64];
    ASSERT_EQ(content(&s, "seg", buf, sizeof(buf)), 7);
    ASSERT_MEM_EQ(buf, "durable", 7);
    /* Creation is durable on return even though no data was synced. */
    ASSERT_EQ(content(&s, "never-synced", buf, sizeof(buf)), 0);
    fws_sim_stats st;
    fws_sim_get_stats(sim, &st);
    ASSERT_EQ(st.power_cuts, 1);
    ASSERT_U64_EQ(fws_sim_used(sim), 7);
    fws_sim_destroy(sim);
}

TEST(synced_data_kept_and_reboot_keeps_unsynced)
{
    fws s;
    fws_sim *sim = mk(2, &s);
    fws_file *f = mkfile(&s, "a");
    ASSERT_EQ(fws_append(&s, f, "one", 3), 0);
    ASSERT_EQ(fws_sync(&s, f), 0);
    ASSERT_EQ(fws_append(&s, f, "two", 3), 0);
    /* A crash without power loss: the OS still has the unsynced bytes. */
    fws_sim_reboot(sim);
    ASSERT_EQ(fws_sync(&s, f), FWS_EPOWER);
    uint8_t buf[16];
    ASSERT_EQ(content(&s, "a", buf, sizeof(buf)), 6);
    ASSERT_MEM_EQ(buf, "onetwo", 6);
    /* ...but they are still not durable. */
    fws_sim_power_cut(sim);
    ASSERT_EQ(content(&s, "a", buf, sizeof(buf)), 3);
    fws_close(&s, f);
    fws_sim_destroy(sim);
}

TEST(torn_write_trunc_keeps_exact_prefix)
{
    for (size_t tear = 0; tear <= 60; tear += 5) {
        fws s;
        fws_sim *sim = mk(3, &s);
        uint8_t a[40], b[50], buf[128];
        fill(a, sizeof(a), 1);
        fill(b, sizeof(b), 100);
        fws_file *f = mkfile(&s, "j");
        ASSERT_EQ(fws_append(&s, f, a, sizeof(a)), 0);
        ASSERT_EQ(fws_sync(&s, f), 0);
        ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + 1, tear, FWS_SIM_TEAR_TRUNC), 0);
        ASSERT_EQ(fws_append(&s, f, b, sizeof(b)), FWS_EPOWER);
        ASSERT(fws_sim_powered_off(sim));
        fws_sim_power_cut(sim);
        size_t keep = tear < sizeof(b) ? tear : sizeof(b);
        ASSERT_EQ(content(&s, "j", buf, sizeof(buf)), (int64_t)(sizeof(a) + keep));
        ASSERT_MEM_EQ(buf, a, sizeof(a));
        ASSERT_MEM_EQ(buf + sizeof(a), b, keep);
        fws_close(&s, f);
        fws_sim_destroy(sim);
    }
}

TEST(torn_write_garbage_corrupts_the_tail_of_the_prefix)
{
    for (size_t tear = 1; tear <= 50; tear += 7) {
        fws s;
        fws_sim *sim = mk(4 + tear, &s);
        uint8_t a[40], b[50], buf[128];
        fill(a, sizeof(a), 9);
        fill(b, sizeof(b), 200);
        fws_file *f = mkfile(&s, "j");
        ASSERT_EQ(fws_append(&s, f, a, sizeof(a)), 0);
        ASSERT_EQ(fws_sync(&s, f), 0);
        ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + 1, tear, FWS_SIM_TEAR_GARBAGE), 0);
        ASSERT_EQ(fws_append(&s, f, b, sizeof(b)), FWS_EPOWER);
        fws_sim_power_cut(sim);
        ASSERT_EQ(content(&s, "j", buf, sizeof(buf)), (int64_t)(sizeof(a) + tear));
        ASSERT_MEM_EQ(buf, a, sizeof(a));
        size_t g = tear < FWS_SIM_GARBAGE_MAX ? tear : FWS_SIM_GARBAGE_MAX;
        ASSERT_MEM_EQ(buf + sizeof(a), b, tear - g);
        for (size_t k = tear - g; k < tear; k++)
            ASSERT_NE(buf[sizeof(a) + k], b[k]);
        fws_close(&s, f);
        fws_sim_destroy(sim);
    }
}

TEST(torn_write_lands_after_earlier_unsynced_bytes)
{
    fws s;
    fws_sim *sim = mk(5, &s);
    fws_file *f = mkfile(&s, "j");
    fws_file *other = mkfile(&s, "other");
    ASSERT_EQ(fws_append(&s, f, "D", 1), 0);
    ASSERT_EQ(fws_sync(&s, f), 0);
    ASSERT_EQ(fws_append(&s, f, "unsynced", 8), 0);
    ASSERT_EQ(fws_append(&s, other, "lost", 4), 0);
    ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + 1, 3, FWS_SIM_TEAR_TRUNC), 0);
    ASSERT_EQ(fws_append(&s, f, "TORN-WRITE", 10), FWS_EPOWER);
    fws_sim_power_cut(sim);
    uint8_t buf[32];
    ASSERT_EQ(content(&s, "j", buf, sizeof(buf)), 12);
    ASSERT_MEM_EQ(buf, "DunsyncedTOR", 12);
    ASSERT_EQ(content(&s, "other", buf, sizeof(buf)), 0);
    fws_close(&s, f);
    fws_close(&s, other);
    fws_sim_destroy(sim);
}

/* --- cut at operation N for every N --- */

#define SNAP_FILES 8
#define SNAP_BYTES 128

typedef struct snap {
    int n;
    char name[SNAP_FILES][FWS_NAME_MAX + 1];
    int64_t len[SNAP_FILES];
    uint8_t data[SNAP_FILES][SNAP_BYTES];
} snap;

/* The durable state of the node (what a power cut would leave). */
static void take_snap(const fws_sim *sim, snap *out, int durable)
{
    memset(out, 0, sizeof(*out));
    out->n = fws_sim_file_count(sim);
    ASSERT_LE(out->n, SNAP_FILES);
    for (int i = 0; i < out->n; i++) {
        const char *nm = fws_sim_file_name(sim, i);
        ASSERT(nm != NULL);
        snprintf(out->name[i], sizeof(out->name[i]), "%s", nm);
        out->len[i] = fws_sim_peek(sim, nm, durable, out->data[i], SNAP_BYTES);
        ASSERT_GE(out->len[i], 0);
        ASSERT_LE(out->len[i], SNAP_BYTES);
    }
}

/* Equal as sets of (name, bytes): the order of names does not matter. */
static int snap_eq(const snap *a, const snap *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        int found = 0;
        for (int j = 0; j < b->n; j++) {
            if (strcmp(a->name[i], b->name[j]) == 0) {
                found = a->len[i] == b->len[j] &&
                        memcmp(a->data[i], b->data[j], (size_t)a->len[i]) == 0;
                break;
            }
        }
        if (!found)
            return 0;
    }
    return 1;
}

#define MAX_OPS 64

typedef struct ref_run {
    fws_sim *sim;
    snap before[MAX_OPS + 2]; /* before[k]: durable state before op k */
    char op[MAX_OPS + 2][12];
} ref_run;

static void ref_hook(void *arg, uint64_t n, const char *op)
{
    ref_run *r = arg;
    ASSERT_LE(n, MAX_OPS);
    take_snap(r->sim, &r->before[n], 1);
    snprintf(r->op[n], sizeof(r->op[n]), "%s", op);
}

/* A small journal-like workload; stops at the first error (as a gateway
 * would on FWS_EPOWER) and returns it. */
static int workload(fws *s)
{
    fws_file *f = NULL, *g = NULL;
    int rc;
#define W(call)                \
    do {                       \
        if ((rc = (call)) < 0) \
            goto out;          \
    } while (0)
    W(fws_write_atomic(s, "ckpt", "v1", 2));
    W(fws_open(s, "seg-1", FWS_O_CREATE, &f));
    W(fws_append(s, f, "entry-1;", 8));
    W(fws_append(s, f, "entry-2;", 8));
    W(fws_sync(s, f));
    W(fws_append(s, f, "entry-3;", 8));
    W(fws_write_atomic(s, "ckpt", "v2-longer", 9));
    W(fws_open(s, "seg-2", FWS_O_CREATE | FWS_O_EXCL, &g));
    W(fws_append(s, g, "entry-4;", 8));
    W(fws_sync(s, g));
    W(fws_truncate(s, f, 12));
    W(fws_rename(s, "seg-2", "seg-3"));
    W(fws_append(s, g, "entry-5;", 8)); /* the handle follows the rename */
    W(fws_sync(s, g));
    W(fws_remove(s, "seg-1"));
    W(fws_write_atomic(s, "ckpt", "v3", 2));
    W(fws_append(s, g, "tail", 4));
#undef W
out:
    fws_close(s, f);
    fws_close(s, g);
    return rc;
}

TEST(cut_at_every_op_leaves_the_durable_state_of_that_moment)
{
    static ref_run ref;
    fws s;
    memset(&ref, 0, sizeof(ref));
    ref.sim = mk(77, &s);
    fws_sim_set_op_hook(ref.sim, ref_hook, &ref);
    ASSERT_EQ(workload(&s), 0);
    uint64_t total = fws_sim_ops(ref.sim);
    ASSERT_GE(total, 20);
    ASSERT_LE(total, MAX_OPS);
    fws_sim_power_cut(ref.sim);
    take_snap(ref.sim, &ref.before[total + 1], 1);
    /* The unsynced "tail" is gone and everything else is there. */
    ASSERT_EQ(ref.before[total + 1].n, 2);
    fws_sim_destroy(ref.sim);

    int renames_done = 0, renames_not = 0;
    for (uint64_t n = 1; n <= total; n++) {
        for (uint64_t seed = 77; seed < 81; seed++) {
            fws_sim *sim = mk(seed, &s);
            ASSERT_EQ(fws_sim_set_cut_at(sim, n, 0, FWS_SIM_TEAR_TRUNC), 0);
            ASSERT_EQ(workload(&s), FWS_EPOWER);
            ASSERT(fws_sim_powered_off(sim));
            ASSERT_U64_EQ(fws_sim_ops(sim), n);
            /* Everything on storage is refused until the power comes back. */
            fws_file *f = NULL;
            ASSERT_EQ(fws_open(&s, "ckpt", 0, &f), FWS_EPOWER);
            ASSERT_EQ(fws_write_atomic(&s, "x", "y", 1), FWS_EPOWER);
            ASSERT_EQ(fws_remove(&s, "ckpt"), FWS_EPOWER);
            ASSERT_U64_EQ(fws_sim_ops(sim), n); /* refused ops are not numbered */
            fws_sim_power_cut(sim);
            snap now;
            take_snap(sim, &now, 0);
            if (strcmp(ref.op[n], "rename") == 0) {
                int before = snap_eq(&now, &ref.before[n]);
                int after = snap_eq(&now, &ref.before[n + 1]);
                if (!before && !after)
                    SS_TEST_FAIL("cut at op %llu (rename): neither before nor after",
                                 (unsigned long long)n);
                renames_done += after;
                renames_not += before;
            } else if (!snap_eq(&now, &ref.before[n])) {
                SS_TEST_FAIL("cut at op %llu (%s): state differs", (unsigned long long)n,
                             ref.op[n]);
            }
            /* The node works again. */
            ASSERT_EQ(fws_write_atomic(&s, "after", "ok", 2), 0);
            fws_sim_destroy(sim);
        }
    }
    /* The coin of an interrupted rename falls both ways across seeds. */
    ASSERT_GT(renames_done, 0);
    ASSERT_GT(renames_not, 0);
}

TEST(eio_on_nth_op_once)
{
    fws s;
    fws_sim *sim = mk(6, &s);
    fws_file *f = mkfile(&s, "a");
    uint64_t base = fws_sim_ops(sim);
    ASSERT_EQ(fws_sim_fail_op(sim, base + 2, FWS_EIO, 0), 0);
    ASSERT_EQ(fws_append(&s, f, "12345", 5), 0); /* base+1 */
    ASSERT_EQ(fws_sync(&s, f), FWS_EIO);         /* base+2 fails, no effect */
    ASSERT_EQ(fws_sim_peek(sim, "a", 1, NULL, 0), 0);
    ASSERT_EQ(fws_sync(&s, f), 0); /* base+3 works again */
    ASSERT_EQ(fws_sim_peek(sim, "a", 1, NULL, 0), 5);
    ASSERT_EQ(fws_sim_fail_op(sim, fws_sim_ops(sim) + 1, FWS_EIO, 0), 0);
    ASSERT_EQ(fws_append(&s, f, "67", 2), FWS_EIO);
    ASSERT_EQ(fws_sim_peek(sim, "a", 0, NULL, 0), 5); /* nothing written */
    fws_sim_stats st;
    fws_sim_get_stats(sim, &st);
    ASSERT_EQ(st.faults, 2);
    ASSERT_EQ(fws_sim_fail_op(sim, 1, 5, 0), FWS_EINVAL);
    fws_close(&s, f);
    fws_sim_destroy(sim);
}

TEST(eio_persistent_until_cleared)
{
    fws s;
    fws_sim *sim = mk(7, &s);
    fws_file *f = mkfile(&s, "a");
    ASSERT_EQ(fws_sim_fail_op(sim, fws_sim_ops(sim) + 1, FWS_EIO, 1), 0);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(fws_append(&s, f, "x", 1), FWS_EIO);
        ASSERT_EQ(fws_sync(&s, f), FWS_EIO);
    }
    ASSERT_EQ(fws_write_atomic(&s, "ck", "v", 1), FWS_EIO);
    ASSERT_EQ(fws_sim_peek(sim, "ck.tmp", 0, NULL, 0), FWS_ENOENT);
    uint8_t b[4];
    ASSERT_EQ(fws_read(&s, f, 0, b, sizeof(b)), 0); /* reads are not mutating */
    fws_sim_clear_faults(sim);
    ASSERT_EQ(fws_append(&s, f, "x", 1), 0);
    ASSERT_EQ(fws_write_atomic(&s, "ck", "v", 1), 0);
    fws_close(&s, f);
    fws_sim_destroy(sim);
}

TEST(enospc_at_capacity)
{
    fws_sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.capacity_bytes = 100;
    fws s;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, &s), 0);
    uint8_t b[100];
    fill(b, sizeof(b), 3);
    fws_file *f = mkfile(&s, "a");
    ASSERT_EQ(fws_append(&s, f, b, 60), 0);
    ASSERT_EQ(fws_append(&s, f, b, 50), FWS_ENOSPC);
    uint64_t sz = 0;
    ASSERT_EQ(fws_size(&s, f, &sz), 0);
    ASSERT_U64_EQ(sz, 60); /* nothing of the refused append */
    ASSERT_EQ(fws_append(&s, f, b, 40), 0);
    ASSERT_EQ(fws_append(&s, f, b, 1), FWS_ENOSPC);
    ASSERT_EQ(fws_truncate(&s, f, 101), FWS_ENOSPC);
    ASSERT_U64_EQ(fws_sim_used(sim), 100);
    /* Space comes back by truncating or removing. */
    ASSERT_EQ(fws_truncate(&s, f, 10), 0);
    ASSERT_EQ(fws_append(&s, f, b, 90), 0);
    fws_close(&s, f);
    ASSERT_EQ(fws_remove(&s, "a"), 0);
    ASSERT_U64_EQ(fws_sim_used(sim), 0);
    fws_sim_stats st;
    fws_sim_get_stats(sim, &st);
    ASSERT_EQ(st.enospc, 3);
    fws_sim_destroy(sim);

    /* With enospc_prefix the contract's "possibly a prefix" happens. */
    cfg.enospc_prefix = 1;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, &s), 0);
    f = mkfile(&s, "a");
    ASSERT_EQ(fws_append(&s, f, b, 70), 0);
    ASSERT_EQ(fws_append(&s, f, b, 50), FWS_ENOSPC);
    ASSERT_EQ(fws_size(&s, f, &sz), 0);
    ASSERT_U64_EQ(sz, 100);
    ASSERT_EQ(fws_truncate(&s, f, 70), 0); /* the caller truncates back */
    ASSERT_U64_EQ(fws_sim_used(sim), 70);
    fws_close(&s, f);
    fws_sim_destroy(sim);
}

TEST(removed_file_readable_while_open)
{
    fws s;
    fws_sim *sim = mk(8, &s);
    fws_file *f = mkfile(&s, "gone");
    ASSERT_EQ(fws_append(&s, f, "still here", 10), 0);
    ASSERT_EQ(fws_remove(&s, "gone"), 0);
    uint8_t b[16];
    ASSERT_EQ(fws_read(&s, f, 0, b, sizeof(b)), 10);
    ASSERT_MEM_EQ(b, "still here", 10);
    fws_close(&s, f);
    ASSERT_U64_EQ(fws_sim_used(sim), 0);
    fws_sim_destroy(sim);
}

static int remove_cb(void *arg, const char *name)
{
    fws *s = arg;
    ASSERT_EQ(fws_remove(s, name), 0);
    return 0;
}

TEST(list_walks_a_snapshot)
{
    fws s;
    fws_sim *sim = mk(9, &s);
    ASSERT_EQ(fws_write_atomic(&s, "a", "1", 1), 0);
    ASSERT_EQ(fws_write_atomic(&s, "b", "2", 1), 0);
    ASSERT_EQ(fws_write_atomic(&s, "c", "3", 1), 0);
    ASSERT_EQ(fws_list(&s, remove_cb, &s), 0);
    ASSERT_EQ(fws_sim_file_count(sim), 0);
    ASSERT_EQ(fws_list(&s, remove_cb, &s), 0);
    fws_sim_destroy(sim);
}

TEST(unclosed_handles_freed_by_destroy)
{
    fws s;
    fws_sim *sim = mk(10, &s);
    fws_file *f = mkfile(&s, "a");
    ASSERT_EQ(fws_append(&s, f, "x", 1), 0);
    fws_sim_power_cut(sim);
    (void)mkfile(&s, "b"); /* never closed; ASan checks destroy frees it */
    fws_sim_destroy(sim);
    fws_sim_destroy(NULL);
}

TEST(virtual_clock_moves_only_when_told)
{
    fws_sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.wall_start_ms = 1800000000000ll;
    fws s;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, &s), 0);
    int64_t m0 = fws_mono_ms(&s), w0 = fws_wall_ms(&s);
    ASSERT_EQ(w0, 1800000000000ll + m0);
    uint8_t b[64];
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(fws_entropy(&s, b, sizeof(b)), 0);
        ASSERT_EQ(fws_write_atomic(&s, "x", b, sizeof(b)), 0);
    }
    ASSERT_EQ(fws_mono_ms(&s), m0);
    ASSERT_EQ(fws_wall_ms(&s), w0);
    fws_sleep_ms(&s, 250);
    ASSERT_EQ(fws_mono_ms(&s), m0 + 250);
    fws_sim_advance(sim, 50);
    ASSERT_EQ(fws_mono_ms(&s), m0 + 300);
    ASSERT_EQ(fws_wall_ms(&s), w0 + 300);
    /* The wall clock can jump either way; mono never does. */
    fws_sim_set_wall_offset(sim, -86400000ll);
    ASSERT_EQ(fws_wall_ms(&s), w0 + 300 - 86400000ll);
    ASSERT_EQ(fws_mono_ms(&s), m0 + 300);
    /* A poll on nothing waits its timeout in virtual time, instantly. */
    ASSERT_EQ(fws_poll(&s, NULL, 0, 1000), 0);
    ASSERT_EQ(fws_mono_ms(&s), m0 + 1300);
    fws_sim_destroy(sim);
}

/* --- determinism --- */

typedef struct transcript {
    char text[16384];
    size_t len;
} transcript;

static void tr(transcript *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr(transcript *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t)n < sizeof(t->text) - t->len);
    t->len += (size_t)n;
}

static void tr_bytes(transcript *t, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tr(t, "%02x", b[i]);
    tr(t, "%s", ";");
}

/* Every source of seeded randomness: entropy, garbage tears, the rename
 * coin; the transcript records their outcomes. */
static void run_transcript(uint64_t seed, transcript *t)
{
    memset(t, 0, sizeof(*t));
    fws s;
    fws_sim *sim = mk(seed, &s);
    uint8_t b[64], buf[1024];
    for (int round = 0; round < 6; round++) {
        ASSERT_EQ(fws_entropy(&s, b, sizeof(b)), 0);
        tr_bytes(t, b, 16);
        fws_file *f = NULL;
        ASSERT_EQ(fws_open(&s, "seg", FWS_O_CREATE, &f), 0);
        ASSERT_EQ(fws_append(&s, f, b, sizeof(b)), 0);
        ASSERT_EQ(fws_sync(&s, f), 0);
        ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + 1, 30, FWS_SIM_TEAR_GARBAGE), 0);
        tr(t, " a=%d", fws_append(&s, f, b, sizeof(b)));
        fws_sim_power_cut(sim);
        fws_close(&s, f);
        int64_t n = fws_sim_peek(sim, "seg", 1, buf, sizeof(buf));
        tr(t, " n=%lld ", (long long)n);
        tr_bytes(t, buf, n < (int64_t)sizeof(buf) ? (size_t)n : sizeof(buf));
        ASSERT_EQ(fws_write_atomic(&s, "ck", b, 8), 0);
        ASSERT_EQ(fws_write_atomic(&s, "ck2", b + 8, 8), 0);
        ASSERT_EQ(fws_sim_set_cut_at(sim, fws_sim_ops(sim) + 1, 0, FWS_SIM_TEAR_TRUNC), 0);
        tr(t, " r=%d", fws_rename(&s, "ck2", "ck"));
        fws_sim_power_cut(sim);
        n = fws_sim_peek(sim, "ck", 1, buf, sizeof(buf));
        tr(t, "%s", " ck=");
        tr_bytes(t, buf, n < (int64_t)sizeof(buf) ? (size_t)n : sizeof(buf));
        tr(t, " files=%d\n", fws_sim_file_count(sim));
    }
    fws_sim_destroy(sim);
}

TEST(same_seed_same_transcript_other_seed_differs)
{
    static transcript a, b, c;
    run_transcript(1234, &a);
    run_transcript(1234, &b);
    run_transcript(1235, &c);
    ASSERT_EQ(a.len, b.len);
    ASSERT_MEM_EQ(a.text, b.text, a.len);
    ASSERT(a.len != c.len || memcmp(a.text, c.text, a.len) != 0);
}

TEST(config_checks)
{
    fws s;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(NULL, NULL, &s), FWS_EINVAL);
    ASSERT_EQ(fws_sim_new(NULL, &sim, NULL), FWS_EINVAL);
    ASSERT_EQ(fws_sim_new(NULL, &sim, &s), 0);
    ASSERT_EQ(fws_sim_set_cut_at(sim, 1, 0, (fws_sim_tear)7), FWS_EINVAL);
    fws_sim_destroy(sim);
}

#define SIM_STORAGE_TESTS                                                  \
    SS_TEST_ENTRY(unsynced_data_lost_at_power_cut)                         \
    SS_TEST_ENTRY(synced_data_kept_and_reboot_keeps_unsynced)              \
    SS_TEST_ENTRY(torn_write_trunc_keeps_exact_prefix)                     \
    SS_TEST_ENTRY(torn_write_garbage_corrupts_the_tail_of_the_prefix)      \
    SS_TEST_ENTRY(torn_write_lands_after_earlier_unsynced_bytes)           \
    SS_TEST_ENTRY(cut_at_every_op_leaves_the_durable_state_of_that_moment) \
    SS_TEST_ENTRY(eio_on_nth_op_once)                                      \
    SS_TEST_ENTRY(eio_persistent_until_cleared)                            \
    SS_TEST_ENTRY(enospc_at_capacity)                                      \
    SS_TEST_ENTRY(removed_file_readable_while_open)                        \
    SS_TEST_ENTRY(list_walks_a_snapshot)                                   \
    SS_TEST_ENTRY(unclosed_handles_freed_by_destroy)                       \
    SS_TEST_ENTRY(virtual_clock_moves_only_when_told)                      \
    SS_TEST_ENTRY(same_seed_same_transcript_other_seed_differs)            \
    SS_TEST_ENTRY(config_checks)

SS_TEST_MAIN(SIM_STORAGE_TESTS)
