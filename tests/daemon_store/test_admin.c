/* test_admin.c - the queries behind sitesync-admin on a read-only handle,
 * the command-line time syntax, and the sitesync-admin program itself
 * (tables, JSON, RFC 4180 CSV, audit verify exit codes, usage errors). */
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "store_test_util.h"

#include "sd/admin.h"

static const char *const SITES_HYDRO[] = { "hydro-1", NULL };
static const char *const SITES_MINE[] = { "mine-7", NULL };

#define H(ms) ss_hlc_make((uint64_t)(T_NOW_MS - 60000 + (ms)), 0)

typedef struct adb {
    tdir dir;
    char path[256];
} adb;

/* hydro-1 reports now, mine-7 two hours ago; incidents, one refusal, one
 * conflict and one session. */
static void adb_make(adb *d)
{
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES_HYDRO);
    sd_peer gwb = mk_peer("gw-hydro-b", SS_ROLE_GATEWAY, SITES_HYDRO);
    sd_peer gwm = mk_peer("gw-mine", SS_ROLE_GATEWAY, SITES_MINE);
    envb e;
    sd_result r;
    tdir_make(&d->dir);
    tdir_file(&d->dir, "admin.db", d->path, sizeof d->path);
    sd_store *s = store_open_at(d->path, 0);

    int64_t sid = 0;
    ASSERT_EQ(sd_store_session_begin(s, &gw, T_NOW_MS - 1000, &sid), 0);
    envb_init(&e, "gw-hydro", 1);
    envb_add(&e, mk_status("hydro-1", H(1), "alert_level", "high"));
    ss_change inc = mk_change("incident", "gw-hydro-0001", "hydro-1", SS_OP_CREATE, H(2));
    ch_set(&inc, "category", "intrusion");
    ch_set(&inc, "severity", "4");
    ch_set(&inc, "title", "Fence cut, \"north\" gate");
    ch_set(&inc, "status", "open");
    ss_change inc2 = mk_incident("gw-hydro-0002", "hydro-1", H(3), "Badge reader offline");
    ch_set(&inc2, "status", "resolved");
    envb_add(&e, inc);
    envb_add(&e, inc2);
    envb_add(&e, mk_status("mine-7", H(4), "alert_level", "normal")); /* refused */
    envb_finish(&e);
    ASSERT_EQ(sd_store_apply(s, &gw, e.env, e.env_len, T_NOW_MS, &r), 0);
    ASSERT_EQ(r.nrejects, 1);
    sd_counts c = r.counts;
    sd_result_free(&r);
    envb_free(&e);
    ASSERT_EQ(sd_store_session_end(s, sid, T_NOW_MS, &c, 2048, 256, NULL), 0);

    /* gw-hydro-b's older alert level loses. */
    envb_init(&e, "gw-hydro-b", 1);
    envb_add(&e, mk_status("hydro-1", H(0), "alert_level", "critical"));
    envb_finish(&e);
    ASSERT_EQ(sd_store_apply(s, &gwb, e.env, e.env_len, T_NOW_MS, &r), 0);
    sd_result_free(&r);
    envb_free(&e);

    envb_init(&e, "gw-mine", 1);
    envb_add(&e, mk_status("mine-7", ss_hlc_make((uint64_t)T_NOW_MS - 7200000, 0), "alert_level",
                           "elevated"));
    envb_finish(&e);
    ASSERT_EQ(sd_store_apply(s, &gwm, e.env, e.env_len, T_NOW_MS - 7200000, &r), 0);
    sd_result_free(&r);
    envb_free(&e);
    sd_store_close(s);
}

static const char *cell(const sd_table *t, size_t row, const char *col)
{
    for (int c = 0; c < t->ncols; c++)
        if (strcmp(t->cols[c], col) == 0)
            return sd_table_cell(t, row, c);
    SS_TEST_FAIL("no column %s", col);
    return NULL;
}

TEST(queries_on_readonly_handle)
{
    adb d;
    adb_make(&d);
    sd_store *s = store_open_at(d.path, 1);
    sd_table t;
    sd_admin_filter f;
    sd_table_init(&t);

    memset(&f, 0, sizeof f);
    f.now_ms = T_NOW_MS + 1000;
    f.stale_after_ms = 3600000;
    ASSERT_EQ(sd_admin_sites(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 2);
    ASSERT_STR_EQ(cell(&t, 0, "site"), "hydro-1");
    ASSERT_STR_EQ(cell(&t, 0, "alert_level"), "high");
    ASSERT_STR_EQ(cell(&t, 0, "stale"), "false");
    ASSERT_STR_EQ(cell(&t, 1, "site"), "mine-7");
    ASSERT_STR_EQ(cell(&t, 1, "alert_level"), "elevated");
    ASSERT_STR_EQ(cell(&t, 1, "stale"), "true");
    ASSERT_STR_EQ(cell(&t, 1, "silent_s"), "7201");
    ASSERT_STR_EQ(cell(&t, 1, "last_seen"), "2026-12-04T14:00:00.000Z");

    memset(&f, 0, sizeof f);
    ASSERT_EQ(sd_admin_incidents(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 2);
    ASSERT_STR_EQ(cell(&t, 0, "key"), "gw-hydro-0002"); /* newest first */
    f.status = "open";
    ASSERT_EQ(sd_admin_incidents(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "severity"), "4");
    ASSERT_STR_EQ(cell(&t, 0, "title"), "Fence cut, \"north\" gate");
    f.status = NULL;
    f.severity = 4;
    ASSERT_EQ(sd_admin_incidents(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    f.severity = 0;
    f.site = "mine-7";
    ASSERT_EQ(sd_admin_incidents(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 0);

    memset(&f, 0, sizeof f);
    f.outcome = "rejected:";
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "outcome"), "rejected:forbidden_site");
    ASSERT_STR_EQ(cell(&t, 0, "site"), "mine-7");
    ASSERT_STR_EQ(cell(&t, 0, "peer"), "gw-hydro");
    /* Plain "rejected" matches every reason too; "rejected:gap" none here. */
    f.outcome = "rejected";
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "outcome"), "rejected:forbidden_site");
    f.outcome = "rejected:gap";
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 0);
    f.outcome = "superseded";
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "origin"), "gw-hydro-b");
    f.outcome = NULL;
    f.key = "gw-hydro-0001";
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    f.key = NULL;
    f.limit = 2;
    ASSERT_EQ(sd_admin_audit(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 2);
    ASSERT_STR_EQ(cell(&t, 1, "id"), "6"); /* the newest two, oldest first */
    ASSERT_STR_EQ(cell(&t, 0, "id"), "5");

    memset(&f, 0, sizeof f);
    ASSERT_EQ(sd_admin_peers(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 3);
    ASSERT_STR_EQ(cell(&t, 0, "node"), "gw-hydro");
    ASSERT_STR_EQ(cell(&t, 0, "committed_seq"), "4");
    ASSERT_STR_EQ(cell(&t, 0, "sessions"), "1");

    ASSERT_EQ(sd_admin_conflicts(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "field"), "alert_level");
    ASSERT_STR_EQ(cell(&t, 0, "losing_value"), "\"critical\"");
    ASSERT_STR_EQ(cell(&t, 0, "origin"), "gw-hydro-b");
    ASSERT_STR_EQ(cell(&t, 0, "winner_origin"), "gw-hydro");

    ASSERT_EQ(sd_admin_sessions(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "applied"), "3");
    ASSERT_STR_EQ(cell(&t, 0, "rejected"), "1");
    ASSERT_STR_EQ(cell(&t, 0, "bytes_in"), "2048");

    memset(&f, 0, sizeof f);
    f.collection = "site_status";
    f.key = "hydro-1";
    ASSERT_EQ(sd_admin_record(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 1);
    ASSERT_STR_EQ(cell(&t, 0, "fields"), "{\"alert_level\":\"high\"}");
    char want[256], hlc[40];
    ss_hlc_format_human(H(1), hlc, sizeof hlc);
    snprintf(want, sizeof want,
             "{\"fields\":{\"alert_level\":{\"value\":\"high\",\"hlc\":\"%s\","
             "\"origin\":\"gw-hydro\"}},\"tombstone\":null}",
             hlc);
    ASSERT_STR_EQ(cell(&t, 0, "clocks"), want);
    f.key = "nope";
    ASSERT_EQ(sd_admin_record(s, &f, &t), 0);
    ASSERT_EQ(t.nrows, 0);
    f.key = NULL;
    ASSERT_EQ(sd_admin_record(s, &f, &t), SS_EINVAL);

    sd_table_free(&t);
    sd_table_free(&t);
    sd_store_close(s);
    tdir_remove(&d.dir);
}

TEST(record_clocks_with_long_escaped_text)
{
    tdir d;
    char path[256];
    static char desc[3001];
    for (int i = 0; i < 3000; i++)
        desc[i] = "ab\"\n\\c"[i % 6];
    desc[3000] = '\0';
    tdir_make(&d);
    tdir_file(&d, "long.db", path, sizeof path);
    sd_store *s = store_open_at(path, 0);
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES_HYDRO);
    envb e;
    sd_result r;
    envb_init(&e, "gw-hydro", 1);
    ss_change ch = mk_incident("gw-hydro-0042", "hydro-1", H(5), "Long report");
    ch_set(&ch, "description", desc);
    envb_add(&e, ch);
    envb_finish(&e);
    ASSERT_EQ(sd_store_apply(s, &gw, e.env, e.env_len, T_NOW_MS, &r), 0);
    sd_result_free(&r);
    envb_free(&e);
    sd_table t;
    sd_admin_filter f;
    sd_table_init(&t);
    memset(&f, 0, sizeof f);
    f.collection = "incident";
    f.key = "gw-hydro-0042";
    ASSERT_EQ(sd_admin_record(s, &f, &t), 0);
    cJSON *c = cJSON_Parse(cell(&t, 0, "clocks"));
    ASSERT(c != NULL);
    cJSON *v = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c, "fields"), "description"), "value");
    ASSERT_STR_EQ(cJSON_GetStringValue(v), desc);
    cJSON_Delete(c);
    c = cJSON_Parse(cell(&t, 0, "fields"));
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "description")), desc);
    cJSON_Delete(c);
    sd_table_free(&t);
    sd_store_close(s);
    tdir_remove(&d);
}

TEST(time_syntax)
{
    int64_t ms = 0;
    ASSERT_EQ(sd_admin_parse_time("2026-12-04", 0, &ms), 0);
    ASSERT_EQ(ms, INT64_C(1796342400000));
    ASSERT_EQ(sd_admin_parse_time("2026-12-04T16:00:00Z", 0, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS);
    ASSERT_EQ(sd_admin_parse_time("2026-12-04T16:00:00.250Z", 0, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS + 250);
    ASSERT_EQ(sd_admin_parse_time("1796400000", 0, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS);
    ASSERT_EQ(sd_admin_parse_time("2h", T_NOW_MS, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS - 7200000);
    ASSERT_EQ(sd_admin_parse_time("90s", T_NOW_MS, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS - 90000);
    ASSERT_EQ(sd_admin_parse_time("7d", T_NOW_MS, &ms), 0);
    ASSERT_EQ(ms, T_NOW_MS - 7 * 86400000LL);
    const char *bad[] = { "",
                          "yesterday",
                          "2026-13-01",
                          "2026-12-04T16:00:00",
                          "h",
                          "-5m",
                          "2026-12-04T16:00:00Zx",
                          "2026-12-04 16:00",
                          "1.5h",
                          "9999999999999",
                          NULL };
    for (int i = 0; bad[i]; i++)
        if (sd_admin_parse_time(bad[i], T_NOW_MS, &ms) != SS_EINVAL)
            SS_TEST_FAIL("accepted '%s'", bad[i]);
    char buf[32];
    ASSERT_EQ(sd_admin_format_time(T_NOW_MS + 7, buf, sizeof buf), 24);
    ASSERT_STR_EQ(buf, "2026-12-04T16:00:00.007Z");
}

/* ---- the program ---- */

static const char *admin_bin(void)
{
    const char *p = getenv("SITESYNC_ADMIN");
    if (!p || !p[0])
        SS_TEST_FAIL("SITESYNC_ADMIN (path of sitesync-admin) not set; run through CTest");
    return p;
}

/* Runs sitesync-admin with args; captures stdout into out; returns the exit
 * code. */
static int run_admin(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", admin_bin(), args);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ASSERT(WIFEXITED(st));
    return WEXITSTATUS(st);
}

TEST(cli_outputs)
{
    adb d;
    char args[512], out[65536];
    adb_make(&d);

    snprintf(args, sizeof args, "--db '%s' sites", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "hydro-1") && strstr(out, "alert_level") && strstr(out, "(2 rows)"));

    snprintf(args, sizeof args, "--db '%s' --json incidents --status open", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    ASSERT(j && cJSON_IsArray(j));
    ASSERT_EQ(cJSON_GetArraySize(j), 1);
    cJSON *row = cJSON_GetArrayItem(j, 0);
    ASSERT_EQ(cJSON_GetObjectItem(row, "severity")->valueint, 4);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(row, "fields"), "status")->valuestring,
                  "open");
    cJSON_Delete(j);

    /* RFC 4180: a field with a comma and quotes is quoted, quotes doubled. */
    snprintf(args, sizeof args, "--db '%s' incidents --csv --status open", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strncmp(out, "key,site,severity,category,status,title,updated,received,fields\r\n",
                   65) == 0);
    ASSERT(strstr(out, ",\"Fence cut, \"\"north\"\" gate\",") != NULL);

    snprintf(args, sizeof args, "--db '%s' audit --outcome rejected: --csv", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "rejected:forbidden_site") != NULL);

    snprintf(args, sizeof args, "--db '%s' --json peers", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    j = cJSON_Parse(out);
    ASSERT(j && cJSON_GetArraySize(j) == 3);
    cJSON_Delete(j);

    snprintf(args, sizeof args, "--db '%s' conflicts", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "\"critical\"") != NULL);

    snprintf(args, sizeof args, "--db '%s' sessions --since 2026-12-01", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "(1 row)") != NULL);

    snprintf(args, sizeof args, "--db '%s' record incident gw-hydro-0001", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "severity") && strstr(out, "gw-hydro") && strstr(out, "\"open\""));
    snprintf(args, sizeof args, "--db '%s' record incident no-such-key", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 4);
    snprintf(args, sizeof args, "--db '%s' record incident", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 2);
    tdir_remove(&d.dir);
}

TEST(cli_audit_verify_exit_codes)
{
    adb d;
    char args[512], out[8192], head[128];
    adb_make(&d);
    snprintf(args, sizeof args, "--db '%s' audit head", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT_EQ(strlen(out), 64 + 2 + 1); /* "<hex>:6\n": 6 entries */
    ASSERT(strcmp(out + 64, ":6\n") == 0);
    snprintf(head, sizeof head, "%.*s", (int)strcspn(out, "\n"), out);

    snprintf(args, sizeof args, "--db '%s' audit verify --head %s", d.path, head);
    ASSERT_EQ(run_admin(args, out, sizeof out), 0);
    ASSERT(strstr(out, "audit chain OK: 6 entries") != NULL);

    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(d.path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE audit SET peer='gw-mine' WHERE id=4", NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    snprintf(args, sizeof args, "--db '%s' audit verify", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 1);
    ASSERT(strstr(out, "BROKEN at entry 4") != NULL);
    snprintf(args, sizeof args, "--db '%s' --json audit verify", d.path);
    ASSERT_EQ(run_admin(args, out, sizeof out), 1);
    cJSON *j = cJSON_Parse(out);
    ASSERT(j != NULL);
    ASSERT_EQ(cJSON_GetObjectItem(j, "broken_id")->valueint, 4);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    tdir_remove(&d.dir);
}

TEST(cli_usage_errors)
{
    char out[4096];
    ASSERT_EQ(run_admin("", out, sizeof out), 2);
    ASSERT_EQ(run_admin("sites", out, sizeof out), 2); /* no --db */
    ASSERT_EQ(run_admin("--db /tmp/x.db frobnicate", out, sizeof out), 2);
    ASSERT_EQ(run_admin("--db /tmp/x.db sites --severity 3", out, sizeof out), 2);
    ASSERT_EQ(run_admin("--db /tmp/x.db incidents --severity 9", out, sizeof out), 2);
    ASSERT_EQ(run_admin("--db /tmp/x.db audit --since yesterday", out, sizeof out), 2);
    ASSERT_EQ(run_admin("--db /tmp/x.db audit verify --head nothex:1", out, sizeof out), 2);
    ASSERT_EQ(run_admin("--db /nonexistent/sitesync.db sites", out, sizeof out), 3);
    ASSERT_EQ(run_admin("--help", out, sizeof out), 0);
    ASSERT(strstr(out, "audit verify") != NULL);
}

SS_TEST_MAIN(SS_TEST_ENTRY(queries_on_readonly_handle)
                 SS_TEST_ENTRY(record_clocks_with_long_escaped_text) SS_TEST_ENTRY(time_syntax)
                     SS_TEST_ENTRY(cli_outputs) SS_TEST_ENTRY(cli_audit_verify_exit_codes)
                         SS_TEST_ENTRY(cli_usage_errors))
