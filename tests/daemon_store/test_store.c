/* test_store.c - sd_store_apply behaviour: sequences (duplicate, overlap,
 * tamper, gap), authorization, clock skew, schema refusals, per-field
 * last-writer-wins, tombstones and the loser ledger. */
#include "store_test_util.h"

#include "proto/hlc.h"

static const char *const SITES_HYDRO[] = { "hydro-1", NULL };
static const char *const SITES_MINE[] = { "mine-7", NULL };

#define H(ms, c) ss_hlc_make((uint64_t)(T_NOW_MS - 60000 + (ms)), (c))

typedef struct fixture {
    tdir dir;
    char path[256];
    sd_store *s;
    sd_peer gw;  /* gw-hydro: site hydro-1 */
    sd_peer gw2; /* gw-hydro-b: also site hydro-1 */
    sd_peer gwm; /* gw-mine: site mine-7 */
} fixture;

static void fx_open(fixture *f)
{
    memset(f, 0, sizeof *f);
    tdir_make(&f->dir);
    tdir_file(&f->dir, "store.db", f->path, sizeof f->path);
    f->s = store_open_at(f->path, 0);
    f->gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES_HYDRO);
    f->gw2 = mk_peer("gw-hydro-b", SS_ROLE_GATEWAY, SITES_HYDRO);
    f->gwm = mk_peer("gw-mine", SS_ROLE_GATEWAY, SITES_MINE);
}

static void fx_close(fixture *f)
{
    sd_store_close(f->s);
    tdir_remove(&f->dir);
}

/* Three changes from gw-hydro, seq 1..3. */
static void first_three(envb *e)
{
    envb_init(e, "gw-hydro", 1);
    envb_add(e, mk_status("hydro-1", H(1, 0), "alert_level", "elevated"));
    envb_add(e, mk_incident("gw-hydro-0001", "hydro-1", H(2, 0), "Fence cut at north gate"));
    envb_add(e, mk_status("hydro-1", H(3, 0), "power", "backup"));
    envb_finish(e);
}

static uint64_t committed(sd_store *s, const char *origin)
{
    uint64_t c = 99;
    ASSERT_EQ(sd_store_committed(s, origin, &c), 0);
    return c;
}

TEST(apply_valid_envelope)
{
    fixture f;
    envb e;
    sd_result r;
    char buf[512];
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_EQ(r.code, 0);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT_U64_EQ(r.counts.received, 3);
    ASSERT_U64_EQ(r.counts.applied, 3);
    ASSERT_EQ(r.nrejects, 0);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 3);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf,
                         "SELECT sd_doc(collection, state) FROM records WHERE "
                         "collection='site_status' AND key='hydro-1'"),
                  "{\"alert_level\":\"elevated\",\"power\":\"backup\"}");
    ASSERT_STR_EQ(
        q_text(
            f.s, buf, sizeof buf,
            "SELECT sd_field(collection, state, 'title') FROM records WHERE key='gw-hydro-0001'"),
        "Fence cut at north gate");
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='applied' AND origin='gw-hydro'"
                         " AND peer='gw-hydro' AND path='direct' AND chash IS NOT NULL"),
              3);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf, "SELECT fields FROM audit WHERE seq=3"),
                  "{\"power\":\"backup\"}");
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM sites WHERE site='hydro-1'"), 1);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM peers WHERE node='gw-hydro' AND role='gateway'"), 1);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(duplicate_range_reacked_not_reapplied)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    long long rec_ms = q_int(f.s, "SELECT sum(updated_ms) FROM records");
    ASSERT_EQ(sd_store_apply(f.s, &f.gw, e.env, e.env_len, T_NOW_MS + 5000, &r), 0);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT_U64_EQ(r.counts.duplicate, 3);
    ASSERT_U64_EQ(r.counts.applied, 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='duplicate'"), 3);
    /* Not re-applied: no record touched, nothing in the loser ledger. */
    ASSERT_EQ(q_int(f.s, "SELECT sum(updated_ms) FROM records"), rec_ms);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM losers"), 0);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(partial_overlap)
{
    fixture f;
    envb e, e2;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    /* seq 2..5: 2 and 3 exactly as before, 4 and 5 new. */
    envb_init(&e2, "gw-hydro", 2);
    envb_add(&e2, mk_incident("gw-hydro-0001", "hydro-1", H(2, 0), "Fence cut at north gate"));
    envb_add(&e2, mk_status("hydro-1", H(3, 0), "power", "backup"));
    envb_add(&e2, mk_status("hydro-1", H(4, 0), "cctv", "offline"));
    envb_add(&e2, mk_incident("gw-hydro-0002", "hydro-1", H(5, 0), "Camera 4 dark"));
    envb_finish(&e2);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e2, &r), 0);
    ASSERT_U64_EQ(r.committed, 5);
    ASSERT_U64_EQ(r.counts.duplicate, 2);
    ASSERT_U64_EQ(r.counts.applied, 2);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 5);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records WHERE collection='incident'"), 2);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE seq=2"), 2);
    sd_result_free(&r);
    envb_free(&e);
    envb_free(&e2);
    fx_close(&f);
}

TEST(same_seq_different_content_is_tamper)
{
    fixture f;
    envb e, e2;
    sd_result r;
    char buf[256];
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    long long audit_before = q_int(f.s, "SELECT count(*) FROM audit");
    /* seq 3 altered (backup -> outage), seq 4 new: nothing may be applied. */
    envb_init(&e2, "gw-hydro", 3);
    envb_add(&e2, mk_status("hydro-1", H(3, 0), "power", "outage"));
    envb_add(&e2, mk_status("hydro-1", H(4, 0), "cctv", "offline"));
    envb_finish(&e2);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e2, &r), SS_ETAMPER);
    ASSERT_EQ(r.code, SS_ETAMPER);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT(strstr(r.message, "seq 3") != NULL);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 3);
    ASSERT_STR_EQ(
        q_text(f.s, buf, sizeof buf,
               "SELECT sd_field(collection, state, 'power') FROM records WHERE key='hydro-1'"),
        "backup");
    ASSERT_EQ(
        q_int(f.s, "SELECT count(*) FROM records WHERE sd_doc(collection, state) LIKE '%%cctv%%'"),
        0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit"), audit_before + 1);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:tamper' AND seq=3"
                         " AND fields LIKE '%%outage%%' AND chash IS NULL"),
              1);
    sd_result_free(&r);
    /* The genuine change is still recognised as a duplicate afterwards. */
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.duplicate, 3);
    sd_result_free(&r);
    envb_free(&e);
    envb_free(&e2);
    fx_close(&f);
}

TEST(gap_refused_with_resume)
{
    fixture f;
    envb e, e2;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    envb_init(&e2, "gw-hydro", 5);
    envb_add(&e2, mk_status("hydro-1", H(5, 0), "cctv", "offline"));
    envb_finish(&e2);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e2, &r), SS_EGAP);
    ASSERT_U64_EQ(r.resume, 4);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 3);
    ASSERT_EQ(
        q_int(f.s, "SELECT count(*) FROM records WHERE sd_doc(collection, state) LIKE '%%cctv%%'"),
        0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:gap' AND seq=5"), 1);
    sd_result_free(&r);
    /* A fresh origin must start at 1. */
    envb_free(&e2);
    envb_init(&e2, "gw-hydro-b", 2);
    envb_add(&e2, mk_status("hydro-1", H(5, 0), "cctv", "offline"));
    envb_finish(&e2);
    ASSERT_EQ(apply_env(f.s, &f.gw2, &e2, &r), SS_EGAP);
    ASSERT_U64_EQ(r.resume, 1);
    sd_result_free(&r);
    envb_free(&e);
    envb_free(&e2);
    fx_close(&f);
}

TEST(cross_site_write_refused_rest_applied)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e, mk_status("hydro-1", H(1, 0), "alert_level", "high"));
    envb_add(&e, mk_status("mine-7", H(2, 0), "alert_level", "normal"));
    envb_add(&e, mk_incident("gw-hydro-0009", "hydro-1", H(3, 0), "Drone over dam"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT_U64_EQ(r.counts.applied, 2);
    ASSERT_U64_EQ(r.counts.rejected, 1);
    ASSERT_EQ(r.nrejects, 1);
    ASSERT_U64_EQ(r.rejects[0].seq, 2);
    ASSERT_EQ(r.rejects[0].code, SS_EFORBIDDEN);
    ASSERT_STR_EQ(r.rejects[0].origin, "gw-hydro");
    ASSERT(strstr(r.rejects[0].message, "mine-7") != NULL);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 3);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records WHERE key='mine-7'"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:forbidden_site'"
                         " AND seq=2 AND site='mine-7' AND peer='gw-hydro'"),
              1);
    /* A forbidden write does not make the victim site look alive. */
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM sites WHERE site='mine-7'"), 0);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(record_of_another_site_refused)
{
    fixture f;
    envb e, e2;
    sd_result r;
    char buf[128];
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e, mk_incident("inc-shared", "hydro-1", H(1, 0), "Original"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    /* gw-mine names its own site but reuses hydro's key. */
    envb_init(&e2, "gw-mine", 1);
    ss_change ch = mk_change("incident", "inc-shared", "mine-7", SS_OP_UPDATE, H(9, 0));
    ch_set(&ch, "title", "Hijacked");
    envb_add(&e2, ch);
    envb_finish(&e2);
    ASSERT_EQ(apply_env(f.s, &f.gwm, &e2, &r), 0);
    ASSERT_EQ(r.nrejects, 1);
    ASSERT_EQ(r.rejects[0].code, SS_EFORBIDDEN);
    ASSERT_STR_EQ(
        q_text(f.s, buf, sizeof buf,
               "SELECT sd_field(collection, state, 'title') FROM records WHERE key='inc-shared'"),
        "Original");
    sd_result_free(&r);
    envb_free(&e);
    envb_free(&e2);
    fx_close(&f);
}

TEST(relay_in_and_out_of_region)
{
    fixture f;
    envb e;
    sd_result r;
    static const char *const hub_sites[] = { "hydro-1", NULL };
    fx_open(&f);
    sd_peer hub = mk_peer("hub-north", SS_ROLE_RELAY, hub_sites);
    snprintf(hub.path, sizeof hub.path, "via hub-north");
    /* The hub forwards gw-mine's envelope: mine-7 is outside its region. */
    envb_init(&e, "gw-mine", 1);
    envb_add(&e, mk_status("mine-7", H(1, 0), "alert_level", "critical"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &hub, &e, &r), 0);
    ASSERT_EQ(r.nrejects, 1);
    ASSERT_EQ(r.rejects[0].code, SS_EFORBIDDEN);
    ASSERT_U64_EQ(r.committed, 1);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:forbidden_site'"
                         " AND peer='hub-north' AND path='via hub-north' AND origin='gw-mine'"),
              1);
    sd_result_free(&r);
    envb_free(&e);
    /* In its region, a relay may carry any origin. */
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e, mk_status("hydro-1", H(1, 0), "alert_level", "high"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &hub, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 1);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='applied'"
                         " AND path='via hub-north' AND origin='gw-hydro'"),
              1);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(gateway_sending_other_origin_refused)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    envb_init(&e, "gw-hydro-b", 1);
    envb_add(&e, mk_status("hydro-1", H(1, 0), "alert_level", "normal"));
    envb_add(&e, mk_status("hydro-1", H(2, 0), "power", "normal"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), SS_EAUTH);
    ASSERT(strstr(r.message, "gw-hydro-b") != NULL);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro-b"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:auth'"
                         " AND peer='gw-hydro' AND origin='gw-hydro-b' AND chash IS NULL"),
              2);
    sd_result_free(&r);
    /* The forged attempt must not poison the real origin's sequence 1. */
    envb_free(&e);
    envb_init(&e, "gw-hydro-b", 1);
    envb_add(&e, mk_status("hydro-1", H(3, 0), "alert_level", "high"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw2, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 1);
    sd_result_free(&r);
    /* Roles other than gateway and relay send nothing. */
    sd_peer d = mk_peer("central", SS_ROLE_DAEMON, NULL);
    ASSERT_EQ(apply_env(f.s, &d, &e, &r), SS_EROLE);
    sd_result_free(&r);
    sd_peer none = mk_peer("nobody", SS_ROLE_NONE, NULL);
    ASSERT_EQ(apply_env(f.s, &none, &e, &r), SS_EROLE);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(future_hlc_refused)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    /* 4 minutes ahead: within the default 5-minute tolerance. */
    envb_add(&e,
             mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS + 240000, 0), "power", "normal"));
    /* 10 minutes ahead: refused. */
    envb_add(&e, mk_status("hydro-1", ss_hlc_make((uint64_t)T_NOW_MS + 600000, 0), "alert_level",
                           "critical"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 1);
    ASSERT_EQ(r.nrejects, 1);
    ASSERT_EQ(r.rejects[0].code, SS_ESKEW);
    ASSERT_U64_EQ(r.rejects[0].seq, 2);
    ASSERT_U64_EQ(r.committed, 2);
    ASSERT_EQ(
        q_int(
            f.s,
            "SELECT count(*) FROM records WHERE sd_doc(collection, state) LIKE '%%alert_level%%'"),
        0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:clock_skew'"), 1);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(schema_invalid_change_refused_with_field)
{
    fixture f;
    envb e;
    sd_result r;
    char buf[256];
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    ss_change bad = mk_incident("gw-hydro-0003", "hydro-1", H(1, 0), "Severity out of range");
    for (int i = 0; i < bad.nfields; i++)
        if (strcmp(bad.fields[i].def->name, "severity") == 0)
            bad.fields[i].v.num = 9;
    envb_add(&e, bad);
    /* An unknown enum value, written as raw JSON. */
    const char *raw = "{\"seq\":2,\"hlc\":\"0000000000010000\",\"collection\":\"site_status\","
                      "\"key\":\"hydro-1\",\"site\":\"hydro-1\",\"op\":\"update\","
                      "\"fields\":{\"alert_level\":\"panic\"}}";
    envb_add_raw(&e, raw, strlen(raw));
    envb_add(&e, mk_status("hydro-1", H(3, 0), "power", "normal"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_EQ(r.nrejects, 2);
    ASSERT_STR_EQ(r.rejects[0].field, "severity");
    ASSERT_EQ(r.rejects[0].code, SS_ERANGE);
    ASSERT_STR_EQ(r.rejects[1].field, "alert_level");
    ASSERT_EQ(r.rejects[1].code, SS_EENUM);
    ASSERT_U64_EQ(r.counts.applied, 1);
    ASSERT_U64_EQ(r.committed, 3);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records WHERE collection='incident'"), 0);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf, "SELECT detail FROM audit WHERE seq=1"),
                  r.rejects[0].message);
    ASSERT(strncmp(buf, "severity", 8) == 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:bad_enum'"), 1);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

TEST(audit_keeps_fields_as_sent)
{
    fixture f;
    envb e;
    sd_result r;
    char buf[256];
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    /* Spaces, a nested quote and braces inside a string, "fields" as a
     * value before the key: the audit entry keeps the object verbatim. */
    const char *raw = "{\"seq\":1,\"hlc\":\"0000000000010000\",\"collection\":\"site_status\","
                      "\"key\":\"hydro-1\",\"site\":\"hydro-1\",\"op\":\"update\","
                      "\"fields\" : { \"note\" : \"gate \\\"fields\\\": {x}\" } }";
    envb_add_raw(&e, raw, strlen(raw));
    /* A value ending in an escaped backslash right before its quote. */
    const char *raw2 = "{\"seq\":2,\"hlc\":\"0000000000020000\",\"collection\":\"site_status\","
                       "\"key\":\"hydro-1\",\"site\":\"hydro-1\",\"op\":\"update\","
                       "\"fields\":{\"note\":\"C:\\\\\",\"power\":\"normal\"}}";
    envb_add_raw(&e, raw2, strlen(raw2));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 2);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf, "SELECT fields FROM audit WHERE seq=2"),
                  "{\"note\":\"C:\\\\\",\"power\":\"normal\"}");
    sd_result_free(&r);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf, "SELECT fields FROM audit WHERE seq=1"),
                  "{ \"note\" : \"gate \\\"fields\\\": {x}\" }");
    ASSERT_STR_EQ(
        q_text(f.s, buf, sizeof buf, "SELECT sd_field(collection, state, 'note') FROM records"),
        "C:\\");
    envb_free(&e);
    fx_close(&f);
}

TEST(malformed_envelope_refused_and_audited)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    ASSERT_NE(sd_store_apply(f.s, &f.gw, e.env, e.env_len - 3, T_NOW_MS, &r), 0);
    ASSERT_NE(r.code, 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM records"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome LIKE 'rejected:%%'"), 1);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 0);
    sd_result_free(&r);
    envb_free(&e);
    fx_close(&f);
}

/* Applies X then Y, or Y then X, from two gateways of the same site. */
static void lww_run(int y_first, char *doc, size_t cap, char *loser, size_t lcap)
{
    fixture f;
    envb x, y;
    sd_result r;
    fx_open(&f);
    envb_init(&x, "gw-hydro", 1);
    envb_add(&x, mk_status("hydro-1", H(100, 0), "alert_level", "high"));
    envb_finish(&x);
    envb_init(&y, "gw-hydro-b", 1);
    ss_change ch = mk_status("hydro-1", H(200, 0), "alert_level", "critical");
    ch_set(&ch, "note", "evacuating");
    envb_add(&y, ch);
    envb_finish(&y);
    if (y_first) {
        ASSERT_EQ(apply_env(f.s, &f.gw2, &y, &r), 0);
        sd_result_free(&r);
        ASSERT_EQ(apply_env(f.s, &f.gw, &x, &r), 0);
        ASSERT_U64_EQ(r.counts.superseded, 1);
        ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='superseded'"), 1);
    } else {
        ASSERT_EQ(apply_env(f.s, &f.gw, &x, &r), 0);
        sd_result_free(&r);
        ASSERT_EQ(apply_env(f.s, &f.gw2, &y, &r), 0);
        ASSERT_U64_EQ(r.counts.applied, 1);
    }
    sd_result_free(&r);
    q_text(f.s, doc, cap, "SELECT sd_doc(collection, state) FROM records WHERE key='hydro-1'");
    q_text(f.s, loser, lcap,
           "SELECT collection||'|'||key||'|'||field||'|'||value||'|'||hlc||'|'||origin||'|'||"
           "winner_hlc||'|'||winner_origin FROM losers");
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM losers"), 1);
    envb_free(&x);
    envb_free(&y);
    fx_close(&f);
}

TEST(lww_both_arrival_orders)
{
    char d1[256], d2[256], l1[512], l2[512], want[512];
    lww_run(0, d1, sizeof d1, l1, sizeof l1);
    lww_run(1, d2, sizeof d2, l2, sizeof l2);
    ASSERT_STR_EQ(d1, "{\"alert_level\":\"critical\",\"note\":\"evacuating\"}");
    ASSERT_STR_EQ(d1, d2);
    /* Loser ledger: the same losing value and clocks whichever came first. */
    snprintf(want, sizeof want,
             "site_status|hydro-1|alert_level|\"high\"|%lld|gw-hydro|%lld|"
             "gw-hydro-b",
             (long long)H(100, 0), (long long)H(200, 0));
    ASSERT_STR_EQ(l1, want);
    ASSERT_STR_EQ(l2, want);
}

TEST(lww_equal_hlc_origin_breaks_tie)
{
    fixture f;
    envb x, y;
    sd_result r;
    char buf[256];
    fx_open(&f);
    envb_init(&x, "gw-hydro-b", 1);
    envb_add(&x, mk_status("hydro-1", H(100, 0), "power", "outage"));
    envb_finish(&x);
    envb_init(&y, "gw-hydro", 1);
    envb_add(&y, mk_status("hydro-1", H(100, 0), "power", "normal"));
    envb_finish(&y);
    ASSERT_EQ(apply_env(f.s, &f.gw2, &x, &r), 0);
    sd_result_free(&r);
    ASSERT_EQ(apply_env(f.s, &f.gw, &y, &r), 0);
    /* "gw-hydro" < "gw-hydro-b": the incoming value loses. */
    ASSERT_U64_EQ(r.counts.superseded, 1);
    sd_result_free(&r);
    ASSERT_STR_EQ(
        q_text(f.s, buf, sizeof buf,
               "SELECT sd_field(collection, state, 'power') FROM records WHERE key='hydro-1'"),
        "outage");
    envb_free(&x);
    envb_free(&y);
    fx_close(&f);
}

TEST(tombstones_carry_their_clock)
{
    fixture f;
    envb e;
    sd_result r;
    char buf[256];
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    ss_change c1 = mk_incident("gw-hydro-0100", "hydro-1", H(100, 0), "Smoke in turbine hall");
    ch_set(&c1, "status", "open");
    envb_add(&e, c1); /* 1 */
    ss_change c2 = mk_change("incident", "gw-hydro-0100", "hydro-1", SS_OP_UPDATE, H(300, 0));
    ch_set(&c2, "location", "hall B");
    envb_add(&e, c2); /* 2 */
    envb_add(&e, mk_change("incident", "gw-hydro-0100", "hydro-1", SS_OP_DELETE, H(200, 0)));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 3);
    sd_result_free(&r);
    /* Fields older than the tombstone are gone; the newer one survives. */
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf,
                         "SELECT sd_doc(collection, state) FROM records WHERE key='gw-hydro-0100'"),
                  "{\"location\":\"hall B\"}");
    ASSERT_EQ(q_int(f.s, "SELECT deleted FROM records WHERE key='gw-hydro-0100'"), 0);
    ASSERT_EQ(q_int(f.s,
                    "SELECT count(*) FROM losers WHERE key='gw-hydro-0100'"
                    " AND winner_hlc=%lld",
                    (long long)H(200, 0)),
              4);
    envb_free(&e);

    /* An older write after the tombstone is superseded; a newer revives. */
    envb_init(&e, "gw-hydro", 4);
    envb_add(&e, mk_change("incident", "gw-hydro-0101", "hydro-1", SS_OP_DELETE, H(500, 0)));
    ss_change old = mk_change("incident", "gw-hydro-0101", "hydro-1", SS_OP_UPDATE, H(400, 0));
    ch_set(&old, "status", "closed");
    envb_add(&e, old);
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 1);
    ASSERT_U64_EQ(r.counts.superseded, 1);
    sd_result_free(&r);
    ASSERT_EQ(q_int(f.s, "SELECT deleted FROM records WHERE key='gw-hydro-0101'"), 1);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf,
                         "SELECT sd_doc(collection, state) FROM records WHERE key='gw-hydro-0101'"),
                  "{}");
    envb_free(&e);
    envb_init(&e, "gw-hydro", 6);
    ss_change newer = mk_change("incident", "gw-hydro-0101", "hydro-1", SS_OP_UPDATE, H(600, 0));
    ch_set(&newer, "status", "resolved");
    envb_add(&e, newer);
    /* An older delete than the stored tombstone changes nothing. */
    envb_add(&e, mk_change("incident", "gw-hydro-0101", "hydro-1", SS_OP_DELETE, H(450, 0)));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 1);
    ASSERT_U64_EQ(r.counts.superseded, 1);
    sd_result_free(&r);
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf,
                         "SELECT sd_doc(collection, state) FROM records WHERE key='gw-hydro-0101'"),
                  "{\"status\":\"resolved\"}");
    ASSERT_EQ(q_int(f.s, "SELECT deleted FROM records WHERE key='gw-hydro-0101'"), 0);
    envb_free(&e);
    fx_close(&f);
}

TEST(loser_ledger_content)
{
    fixture f;
    envb e;
    sd_result r;
    char buf[512], want[512];
    fx_open(&f);
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e, mk_status("hydro-1", H(10, 1), "personnel_on_site", "12"));
    envb_add(&e, mk_status("hydro-1", H(10, 0), "personnel_on_site", "7"));
    envb_finish(&e);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    q_text(f.s, buf, sizeof buf,
           "SELECT field||'|'||value||'|'||hlc||'|'||origin||'|'||winner_hlc||'|'||"
           "winner_origin||'|'||at_ms FROM losers");
    snprintf(want, sizeof want, "personnel_on_site|7|%lld|gw-hydro|%lld|gw-hydro|%lld",
             (long long)H(10, 0), (long long)H(10, 1), (long long)T_NOW_MS);
    ASSERT_STR_EQ(buf, want);
    ASSERT_EQ(q_int(f.s, "SELECT sd_field(collection, state, 'personnel_on_site') FROM records"),
              12);
    envb_free(&e);
    fx_close(&f);
}

TEST(readonly_open_while_writing)
{
    fixture f;
    envb e;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    ASSERT_EQ(sd_store_begin(f.s), 0);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    sd_store *ro = store_open_at(f.path, 1);
    uint64_t c = 7;
    /* Uncommitted work is invisible; the reader is not blocked. */
    ASSERT_EQ(sd_store_committed(ro, "gw-hydro", &c), 0);
    ASSERT_U64_EQ(c, 0);
    ASSERT_EQ(sd_store_commit(f.s), 0);
    ASSERT_EQ(sd_store_committed(ro, "gw-hydro", &c), 0);
    ASSERT_U64_EQ(c, 3);
    sd_store_close(ro);
    envb_free(&e);
    fx_close(&f);
}

TEST(transaction_lost_mid_batch_applies_nothing_more)
{
    fixture f;
    envb e, e2;
    sd_result r;
    fx_open(&f);
    first_three(&e);
    envb_init(&e2, "gw-hydro-b", 1);
    envb_add(&e2, mk_status("hydro-1", H(9, 0), "cctv", "offline"));
    envb_finish(&e2);
    ASSERT_EQ(sd_store_begin(f.s), 0);
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    sd_result_free(&r);
    /* What SQLite does by itself after a disk-full or I/O error. */
    ASSERT_EQ(sqlite3_exec(sd_store_handle(f.s), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(apply_env(f.s, &f.gw2, &e2, &r), SS_EDB);
    sd_result_free(&r);
    ASSERT_EQ(sd_store_audit_event(f.s, &f.gw, T_NOW_MS, NULL, 0, "event", "x"), SS_EDB);
    ASSERT_NE(sd_store_commit(f.s), 0);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro"), 0);
    ASSERT_U64_EQ(committed(f.s, "gw-hydro-b"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit"), 0);
    /* The store is usable again afterwards. */
    ASSERT_EQ(apply_env(f.s, &f.gw, &e, &r), 0);
    ASSERT_U64_EQ(r.counts.applied, 3);
    sd_result_free(&r);
    envb_free(&e);
    envb_free(&e2);
    fx_close(&f);
}

TEST(open_errors_are_clear)
{
    sd_store_config cfg = { 0 };
    sd_store *s = NULL;
    char err[256];
    cfg.path = "/nonexistent-dir/x.db";
    cfg.readonly = 1;
    ASSERT_EQ(sd_store_open(&cfg, &s, err, sizeof err), SS_ENOENT);
    ASSERT(strstr(err, "/nonexistent-dir/x.db") != NULL);
    cfg.readonly = 0;
    ASSERT_EQ(sd_store_open(&cfg, &s, err, sizeof err), SS_EDB);
    ASSERT(s == NULL);
    ASSERT(err[0] != '\0');
    /* A file that is not a sitesync database. */
    tdir d;
    char path[256];
    tdir_make(&d);
    tdir_file(&d, "other.db", path, sizeof path);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cfg.path = path;
    cfg.readonly = 1;
    ASSERT_EQ(sd_store_open(&cfg, &s, err, sizeof err), SS_EDB);
    ASSERT(strstr(err, "not a sitesync database") != NULL);
    tdir_remove(&d);
}

TEST(sessions_and_events)
{
    fixture f;
    int64_t id = 0;
    fx_open(&f);
    ASSERT_EQ(sd_store_session_begin(f.s, &f.gw, T_NOW_MS, &id), 0);
    ASSERT_GT(id, 0);
    sd_counts c = { 10, 7, 1, 1, 1 };
    ASSERT_EQ(sd_store_session_end(f.s, id, T_NOW_MS + 1000, &c, 4096, 512, "idle timeout"), 0);
    ASSERT_EQ(q_int(f.s, "SELECT applied FROM sessions WHERE id=%lld", (long long)id), 7);
    ASSERT_EQ(q_int(f.s, "SELECT sessions FROM peers WHERE node='gw-hydro'"), 1);
    char buf[128];
    ASSERT_STR_EQ(q_text(f.s, buf, sizeof buf, "SELECT last_error FROM peers"), "idle timeout");
    ASSERT_EQ(sd_store_session_end(f.s, 999, T_NOW_MS, &c, 0, 0, NULL), SS_ENOENT);
    ASSERT_EQ(sd_store_audit_event(f.s, &f.gw, T_NOW_MS, "gw-hydro", 0, "rejected:auth",
                                   "HELLO node differs from certificate"),
              0);
    ASSERT_EQ(q_int(f.s, "SELECT count(*) FROM audit WHERE outcome='rejected:auth'"), 1);
    fx_close(&f);
}

SS_TEST_MAIN(
    SS_TEST_ENTRY(apply_valid_envelope) SS_TEST_ENTRY(duplicate_range_reacked_not_reapplied)
        SS_TEST_ENTRY(partial_overlap) SS_TEST_ENTRY(same_seq_different_content_is_tamper)
            SS_TEST_ENTRY(gap_refused_with_resume) SS_TEST_ENTRY(
                cross_site_write_refused_rest_applied) SS_TEST_ENTRY(record_of_another_site_refused)
                SS_TEST_ENTRY(relay_in_and_out_of_region) SS_TEST_ENTRY(
                    gateway_sending_other_origin_refused) SS_TEST_ENTRY(future_hlc_refused)
                    SS_TEST_ENTRY(schema_invalid_change_refused_with_field)
                        SS_TEST_ENTRY(audit_keeps_fields_as_sent)
                            SS_TEST_ENTRY(malformed_envelope_refused_and_audited)
                                SS_TEST_ENTRY(lww_both_arrival_orders)
                                    SS_TEST_ENTRY(lww_equal_hlc_origin_breaks_tie)
                                        SS_TEST_ENTRY(tombstones_carry_their_clock)
                                            SS_TEST_ENTRY(loser_ledger_content) SS_TEST_ENTRY(
                                                readonly_open_while_writing)
                                                SS_TEST_ENTRY(
                                                    transaction_lost_mid_batch_applies_nothing_more)
                                                    SS_TEST_ENTRY(open_errors_are_clear)
                                                        SS_TEST_ENTRY(sessions_and_events))
