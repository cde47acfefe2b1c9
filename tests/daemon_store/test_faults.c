/* test_faults.c - allocation failure at every point of sd_store_open and
 * sd_store_apply (proto/'s parser and cJSON included), in the manner of
 * SQLite's malloc loops: each run either succeeds completely or fails with
 * SS_ENOMEM leaving nothing applied, and nothing leaks (under ASan). */
#include "store_test_util.h"

#include "proto/alloc.h"

static const char *const SITES[] = { "hydro-1", NULL };

/* The allocator hooks are process-wide by design (ss_set_allocator), so the
 * failure counter is too; this test is single-threaded. */
static long fail_at, calls;

static void *f_malloc(size_t n)
{
    if (++calls == fail_at)
        return NULL;
    return malloc(n);
}

static void *f_realloc(void *p, size_t n)
{
    if (++calls == fail_at)
        return NULL;
    return realloc(p, n);
}

TEST(every_allocation_failure_is_clean)
{
    static const ss_allocator hooks = { f_malloc, f_realloc, free };
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES);
    envb e;
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e,
             mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 100, 0), "alert_level", "high"));
    envb_add(&e, mk_incident("gw-hydro-7", "hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 90, 0),
                             "Door forced"));
    envb_add(&e, mk_status("mine-7", ss_hlc_make((uint64_t)T_NOW_MS - 80, 0), "power", "outage"));
    envb_add(&e, mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS - 200, 0), "alert_level",
                           "normal"));
    envb_finish(&e);
    tdir d;
    tdir_make(&d);
    int failures = 0, done = 0;
    for (fail_at = 1; fail_at < 10000 && !done; fail_at++) {
        char path[256], name[32];
        snprintf(name, sizeof name, "f%ld.db", fail_at);
        tdir_file(&d, name, path, sizeof path);
        calls = 0;
        ss_set_allocator(&hooks);
        sd_store_config cfg = { 0 };
        sd_store *s = NULL;
        char err[256];
        cfg.path = path;
        int rc = sd_store_open(&cfg, &s, err, sizeof err);
        if (rc) {
            ss_set_allocator(NULL);
            ASSERT_EQ(rc, SS_ENOMEM);
            failures++;
            continue;
        }
        sd_result r;
        rc = sd_store_apply(s, &gw, e.env, e.env_len, T_NOW_MS, &r);
        long used = calls;
        ss_set_allocator(NULL);
        if (rc == 0) {
            ASSERT_U64_EQ(r.committed, 4);
            ASSERT_EQ(r.nrejects, 1);
            ASSERT_U64_EQ(r.counts.applied, 2);
            ASSERT_U64_EQ(r.counts.superseded, 1);
            ASSERT_EQ(q_int(s, "SELECT count(*) FROM records"), 2);
            ASSERT_EQ(q_int(s, "SELECT count(*) FROM audit"), 4);
            done = used < fail_at; /* no allocation failed: every point covered */
        } else {
            /* cJSON reports an allocation failure as a parse error, so
             * proto/ answers SS_EJSON then (and the envelope is audited as
             * malformed): allowed here, noted as a known limitation. */
            if (rc != SS_ENOMEM && rc != SS_EJSON)
                SS_TEST_FAIL("fail_at %ld: %d %s", fail_at, rc, r.message);
            ASSERT_EQ(r.code, rc);
            ASSERT_EQ(r.nrejects, 0);
            uint64_t c = 9;
            ASSERT_EQ(sd_store_committed(s, "gw-hydro", &c), 0);
            ASSERT_U64_EQ(c, 0);
            ASSERT_EQ(q_int(s, "SELECT count(*) FROM records"), 0);
            ASSERT_EQ(
                q_int(s, "SELECT count(*) FROM audit WHERE outcome != 'rejected:malformed_json'"),
                0);
            failures++;
        }
        sd_result_free(&r);
        sd_store_close(s);
    }
    ASSERT_EQ(done, 1);
    ASSERT_GT(failures, 10);
    fprintf(stderr, "  %d failure points checked\n", failures);
    envb_free(&e);
    tdir_remove(&d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(every_allocation_failure_is_clean))
