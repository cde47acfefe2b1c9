/* test_audit.c - the hash-chained audit log: an intact chain verifies, and
 * a modified, deleted, reordered, inserted or appended entry, or a truncated
 * tail (against a saved head), is found and named. */
#include "store_test_util.h"

#include "sd/admin.h"

static const char *const SITES_HYDRO[] = { "hydro-1", NULL };

typedef struct adb {
    tdir dir;
    char path[256];
    long long entries;
} adb;

/* A database with 4 envelopes of 3 changes (12 entries) and one event. */
static void adb_make(adb *d)
{
    sd_peer gw = mk_peer("gw-hydro", SS_ROLE_GATEWAY, SITES_HYDRO);
    tdir_make(&d->dir);
    tdir_file(&d->dir, "audit.db", d->path, sizeof d->path);
    sd_store *s = store_open_at(d->path, 0);
    for (int k = 0; k < 4; k++) {
        envb e;
        sd_result r;
        envb_init(&e, "gw-hydro", (uint64_t)k * 3 + 1);
        for (int i = 0; i < 3; i++) {
            ss_hlc_t h = ss_hlc_make((uint64_t)T_NOW_MS - 1000 + (uint64_t)(k * 3 + i), 0);
            envb_add(&e, mk_status("hydro-1", h, "personnel_on_site",
                                   i == 0   ? "3"
                                   : i == 1 ? "4"
                                            : "5"));
        }
        envb_finish(&e);
        ASSERT_EQ(apply_env(s, &gw, &e, &r), 0);
        sd_result_free(&r);
        envb_free(&e);
    }
    ASSERT_EQ(sd_store_audit_event(s, &gw, T_NOW_MS, "gw-hydro", 0, "rejected:auth",
                                   "HELLO node differs from the certificate"),
              0);
    d->entries = q_int(s, "SELECT count(*) FROM audit");
    ASSERT_EQ(d->entries, 13);
    sd_store_close(s);
}

static void adb_sql(adb *d, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    ASSERT_EQ(sqlite3_open(d->path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        SS_TEST_FAIL("%s: %s", sql, msg);
    sqlite3_close(db);
}

static sd_audit_report adb_verify(adb *d, const sd_audit_head *saved)
{
    sd_audit_report r;
    sd_store *s = store_open_at(d->path, 1);
    ASSERT_EQ(sd_audit_verify(s, saved, &r), 0);
    sd_store_close(s);
    if (!r.ok)
        fprintf(stderr, "  verify: broken at %lld: %s\n", (long long)r.broken_id, r.reason);
    return r;
}

static sd_audit_head adb_head(adb *d)
{
    sd_audit_head h;
    sd_store *s = store_open_at(d->path, 1);
    ASSERT_EQ(sd_audit_head_get(s, &h), 0);
    sd_store_close(s);
    return h;
}

TEST(intact_chain_verifies)
{
    adb d;
    adb_make(&d);
    sd_audit_head h = adb_head(&d);
    ASSERT_EQ(h.id, 13);
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 1);
    ASSERT_EQ(r.entries, 13);
    ASSERT_EQ(r.head.id, 13);
    ASSERT_MEM_EQ(r.head.hash, h.hash, 32);
    r = adb_verify(&d, &h);
    ASSERT_EQ(r.ok, 1);
    tdir_remove(&d.dir);
}

TEST(modified_entry_named)
{
    adb d;
    adb_make(&d);
    adb_sql(&d, "UPDATE audit SET outcome='superseded' WHERE id=5");
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 5);
    ASSERT_EQ(r.entries, 4);
    tdir_remove(&d.dir);

    /* A changed type with the same text is a change too. */
    adb_make(&d);
    adb_sql(&d, "UPDATE audit SET op=CAST(op AS BLOB) WHERE id=7");
    r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 7);
    tdir_remove(&d.dir);

    adb_make(&d);
    adb_sql(&d, "UPDATE audit SET fields='{\"personnel_on_site\":50}' WHERE id=2");
    r = adb_verify(&d, NULL);
    ASSERT_EQ(r.broken_id, 2);
    tdir_remove(&d.dir);
}

TEST(deleted_entry_named)
{
    adb d;
    adb_make(&d);
    adb_sql(&d, "DELETE FROM audit WHERE id=6");
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 6);
    ASSERT(strstr(r.reason, "missing") != NULL);
    tdir_remove(&d.dir);

    /* Deleting and renumbering so ids stay consecutive: the hash breaks. */
    adb_make(&d);
    adb_sql(&d, "DELETE FROM audit WHERE id=6; UPDATE audit SET id=id+1000 WHERE id>6;"
                "UPDATE audit SET id=id-1001 WHERE id>1000;"
                "UPDATE meta SET v=12 WHERE k='audit_head_id'");
    r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 6);
    tdir_remove(&d.dir);
}

TEST(reordered_pair_named)
{
    adb d;
    adb_make(&d);
    adb_sql(&d, "UPDATE audit SET id=-1 WHERE id=3; UPDATE audit SET id=3 WHERE id=4;"
                "UPDATE audit SET id=4 WHERE id=-1");
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 3);
    tdir_remove(&d.dir);
}

TEST(inserted_entry_named)
{
    adb d;
    adb_make(&d);
    /* A forged entry slipped in as id 8, later ones renumbered. */
    adb_sql(&d, "UPDATE audit SET id=id+1000 WHERE id>=8; UPDATE audit SET id=id-999 WHERE"
                " id>1000; INSERT INTO audit SELECT 8, at_ms, peer, fingerprint, serial, path,"
                " origin, seq, collection, key, site, op, '{\"personnel_on_site\":0}', hlc,"
                " outcome, detail, chash, hash FROM audit WHERE id=7;"
                "UPDATE meta SET v=14 WHERE k='audit_head_id'");
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 8);
    tdir_remove(&d.dir);

    /* Appended after the head without going through sitesyncd. */
    adb_make(&d);
    adb_sql(&d, "INSERT INTO audit(id, at_ms, outcome, hash) VALUES(14, 0, 'applied',"
                " zeroblob(32))");
    r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 14);
    tdir_remove(&d.dir);
}

TEST(truncated_tail_detected)
{
    adb d;
    adb_make(&d);
    sd_audit_head saved = adb_head(&d);
    /* Naive truncation: the head in meta still names entry 13. */
    adb_sql(&d, "DELETE FROM audit WHERE id>10");
    sd_audit_report r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 11);
    ASSERT(strstr(r.reason, "truncated") != NULL);
    /* Careful truncation: meta moved back to entry 10. The chain alone
     * cannot tell; the saved head can. */
    adb_sql(&d, "UPDATE meta SET v=10 WHERE k='audit_head_id';"
                "UPDATE meta SET v=(SELECT hash FROM audit WHERE id=10)"
                " WHERE k='audit_head_hash'");
    r = adb_verify(&d, NULL);
    ASSERT_EQ(r.ok, 1);
    r = adb_verify(&d, &saved);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 11);
    ASSERT(strstr(r.reason, "saved head") != NULL);
    tdir_remove(&d.dir);
}

TEST(saved_head_mismatch_detected)
{
    adb d;
    adb_make(&d);
    sd_audit_head saved = adb_head(&d);
    saved.hash[0] ^= 1;
    sd_audit_report r = adb_verify(&d, &saved);
    ASSERT_EQ(r.ok, 0);
    ASSERT_EQ(r.broken_id, 13);
    tdir_remove(&d.dir);
}

TEST(head_text_roundtrip)
{
    sd_audit_head h, back;
    char buf[SD_AUDIT_HEAD_TEXT_MAX];
    for (int i = 0; i < 32; i++)
        h.hash[i] = (uint8_t)(i * 7 + 1);
    h.id = 123456;
    int n = sd_audit_head_format(&h, buf, sizeof buf);
    ASSERT_EQ(n, 64 + 7);
    ASSERT_EQ(sd_audit_head_parse(buf, &back), 0);
    ASSERT_MEM_EQ(back.hash, h.hash, 32);
    ASSERT_EQ(back.id, 123456);
    ASSERT_EQ(sd_audit_head_parse("abc:1", &back), SS_EINVAL);
    buf[10] = 'x';
    ASSERT_EQ(sd_audit_head_parse(buf, &back), SS_EINVAL);
    ASSERT_EQ(sd_audit_head_format(&h, buf, 20), SS_ENOSPC);
    char zero[80];
    memset(zero, '0', 64);
    memcpy(zero + 64, ":0", 3);
    ASSERT_EQ(sd_audit_head_parse(zero, &back), SS_EINVAL);
    memcpy(zero + 64, ":1x", 4);
    ASSERT_EQ(sd_audit_head_parse(zero, &back), SS_EINVAL);
}

SS_TEST_MAIN(SS_TEST_ENTRY(intact_chain_verifies) SS_TEST_ENTRY(modified_entry_named)
                 SS_TEST_ENTRY(deleted_entry_named) SS_TEST_ENTRY(reordered_pair_named)
                     SS_TEST_ENTRY(inserted_entry_named) SS_TEST_ENTRY(truncated_tail_detected)
                         SS_TEST_ENTRY(saved_head_mismatch_detected)
                             SS_TEST_ENTRY(head_text_roundtrip))
