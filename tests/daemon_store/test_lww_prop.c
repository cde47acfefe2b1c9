/* test_lww_prop.c - property test of the merge: random sets of changes
 * (sets, nulls, deletes, equal clocks from different origins) delivered in
 * random orders with random re-deliveries must give one and the same state
 * (commutative, associative, idempotent), and that state must equal a
 * reference merge computed here from the definition of the rule. */
#include "store_test_util.h"

#define NORIGINS 12
#define MAXCH    4
#define NKEYS    4

static const char *const SITES[] = { "s-a", "s-b", NULL };

/* xorshift64*: deterministic per seed, so a failure can be replayed. */
static uint64_t rnd(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * UINT64_C(2685821657736338717);
}

typedef struct gch {
    int key; /* 0,1: site_status of s-a / s-b; 2,3: incidents */
    ss_op op;
    ss_hlc_t hlc;
    int nf;
    const char *fname[3];
    char fval[3][24]; /* text, or integer text, or "null" */
} gch;

typedef struct gen {
    char origin[NORIGINS][16];
    int n[NORIGINS];
    gch ch[NORIGINS][MAXCH];
} gen;

static const char *key_name(int k)
{
    static const char *const names[] = { "s-a", "s-b", "inc-1", "inc-2" };
    return names[k];
}

static const char *key_site(int k)
{
    return (k == 1 || k == 3) ? "s-b" : "s-a";
}

static const char *const status_fields[] = { "alert_level", "note", "personnel_on_site" };
static const char *const alert_vals[] = { "normal", "elevated", "high", "critical" };
static const char *const inc_fields[] = { "status", "title", "severity" };
static const char *const inc_status[] = { "open", "acknowledged", "contained", "resolved" };

static void gen_value(uint64_t *r, const char *field, char *out, size_t cap)
{
    if (rnd(r) % 8 == 0 && strcmp(field, "title") != 0 && strcmp(field, "severity") != 0) {
        snprintf(out, cap, "null");
    } else if (strcmp(field, "alert_level") == 0) {
        snprintf(out, cap, "%s", alert_vals[rnd(r) % 4]);
    } else if (strcmp(field, "status") == 0) {
        snprintf(out, cap, "%s", inc_status[rnd(r) % 4]);
    } else if (strcmp(field, "personnel_on_site") == 0) {
        snprintf(out, cap, "%d", (int)(rnd(r) % 50));
    } else if (strcmp(field, "severity") == 0) {
        snprintf(out, cap, "%d", (int)(rnd(r) % 5) + 1);
    } else {
        snprintf(out, cap, "v%u", (unsigned)(rnd(r) % 1000));
    }
}

static void gen_make(gen *g, uint64_t *r)
{
    memset(g, 0, sizeof *g);
    for (int o = 0; o < NORIGINS; o++) {
        /* Origin names chosen so that string order differs from index. */
        snprintf(g->origin[o], sizeof g->origin[o], "gw-%c%d", 'a' + (int)(rnd(r) % 3), o);
        g->n[o] = 1 + (int)(rnd(r) % MAXCH);
        for (int i = 0; i < g->n[o]; i++) {
            gch *c = &g->ch[o][i];
            c->key = (int)(rnd(r) % NKEYS);
            /* Few distinct clocks so that equal hlc from different origins
             * happen often; within an origin the clock increases. */
            c->hlc = ss_hlc_make(
                (uint64_t)T_NOW_MS - 10000 + (uint64_t)(rnd(r) % 6) * 10 + (uint64_t)i * 60, 0);
            unsigned roll = (unsigned)(rnd(r) % 10);
            if (roll < 2) {
                c->op = SS_OP_DELETE;
                continue;
            }
            const char *const *fields = c->key < 2 ? status_fields : inc_fields;
            c->op = SS_OP_UPDATE;
            c->nf = 1 + (int)(rnd(r) % 3);
            int start = (int)(rnd(r) % 3);
            for (int f = 0; f < c->nf; f++) {
                c->fname[f] = fields[(start + f) % 3];
                gen_value(r, c->fname[f], c->fval[f], sizeof c->fval[f]);
            }
        }
    }
}

static void gen_envelope(const gen *g, int o, envb *e)
{
    envb_init(e, g->origin[o], 1);
    for (int i = 0; i < g->n[o]; i++) {
        const gch *c = &g->ch[o][i];
        ss_change ch = mk_change(c->key < 2 ? "site_status" : "incident", key_name(c->key),
                                 key_site(c->key), c->op, c->hlc);
        for (int f = 0; f < c->nf; f++)
            ch_set(&ch, c->fname[f], c->fval[f]);
        envb_add(e, ch);
    }
    envb_finish(e);
}

/* Reference: per key, T = greatest delete clock; per field, the value with
 * the greatest clock among sets newer than T. */
typedef struct clk {
    ss_hlc_t hlc;
    const char *origin;
} clk;

static int clk_cmp(clk a, clk b)
{
    if (a.hlc != b.hlc)
        return a.hlc < b.hlc ? -1 : 1;
    return strcmp(a.origin, b.origin);
}

static void reference_doc(const gen *g, int key, char *out, size_t cap, int *deleted, int *exists)
{
    clk tomb = { 0, "" };
    int has_tomb = 0;
    *exists = 0;
    for (int o = 0; o < NORIGINS; o++)
        for (int i = 0; i < g->n[o]; i++) {
            const gch *c = &g->ch[o][i];
            if (c->key != key)
                continue;
            *exists = 1;
            clk k = { c->hlc, g->origin[o] };
            if (c->op == SS_OP_DELETE && (!has_tomb || clk_cmp(k, tomb) > 0)) {
                tomb = k;
                has_tomb = 1;
            }
        }
    const ss_collection_def *coll =
        ss_schema_collection(key < 2 ? "site_status" : "incident", key < 2 ? 11 : 8);
    size_t pos = 0;
    int nout = 0;
    pos += (size_t)snprintf(out + pos, cap - pos, "{");
    for (int fi = 0; fi < coll->nfields; fi++) {
        const char *name = coll->fields[fi].name;
        clk best = { 0, "" };
        const char *val = NULL;
        for (int o = 0; o < NORIGINS; o++)
            for (int i = 0; i < g->n[o]; i++) {
                const gch *c = &g->ch[o][i];
                if (c->key != key || c->op == SS_OP_DELETE)
                    continue;
                clk k = { c->hlc, g->origin[o] };
                if (has_tomb && clk_cmp(k, tomb) <= 0)
                    continue;
                for (int f = 0; f < c->nf; f++)
                    if (strcmp(c->fname[f], name) == 0 && (!val || clk_cmp(k, best) > 0)) {
                        best = k;
                        val = c->fval[f];
                    }
            }
        if (!val)
            continue;
        int is_int = coll->fields[fi].type == SS_FT_INT || strcmp(val, "null") == 0;
        pos += (size_t)snprintf(out + pos, cap - pos, "%s\"%s\":%s%s%s", nout ? "," : "", name,
                                is_int ? "" : "\"", val, is_int ? "" : "\"");
        nout++;
    }
    snprintf(out + pos, cap - pos, "}");
    *deleted = has_tomb && nout == 0;
}

/* Applies deliveries in a random order, with random re-deliveries, inside
 * one transaction; returns the state as text. */
static void run_order(const gen *g, envb *envs, uint64_t *r, const char *path, char *state,
                      size_t cap)
{
    sd_peer relay = mk_peer("hub", SS_ROLE_RELAY, SITES);
    int order[NORIGINS * 2];
    int n = 0;
    for (int o = 0; o < NORIGINS; o++) {
        order[n++] = o;
        if (rnd(r) % 3 == 0)
            order[n++] = o; /* delivered twice */
    }
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd(r) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    sd_store *s = store_open_at(path, 0);
    ASSERT_EQ(sd_store_begin(s), 0);
    for (int i = 0; i < n; i++) {
        sd_result res;
        int rc =
            sd_store_apply(s, &relay, envs[order[i]].env, envs[order[i]].env_len, T_NOW_MS, &res);
        if (rc)
            SS_TEST_FAIL("apply: %d %s", rc, res.message);
        ASSERT_EQ(res.nrejects, 0);
        sd_result_free(&res);
    }
    ASSERT_EQ(sd_store_commit(s), 0);
    /* The whole state, clocks included (not receive times). */
    sqlite3_stmt *st = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(sd_store_handle(s),
                                 "SELECT group_concat(collection||'/'||key||'/'||site||'/'||"
                                 "hex(state)||'/'||deleted||'/'||max_hlc, ';') FROM"
                                 " (SELECT * FROM records ORDER BY collection, key)",
                                 -1, &st, NULL),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    snprintf(state, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    /* And against the reference merge. */
    for (int k = 0; k < NKEYS; k++) {
        char want[1024], got[1024];
        int deleted = 0, exists = 0;
        reference_doc(g, k, want, sizeof want, &deleted, &exists);
        if (!exists) {
            ASSERT_EQ(q_int(s, "SELECT count(*) FROM records WHERE key='%s'", key_name(k)), 0);
            continue;
        }
        q_text(s, got, sizeof got, "SELECT sd_doc(collection, state) FROM records WHERE key='%s'",
               key_name(k));
        if (strcmp(got, want) != 0)
            SS_TEST_FAIL("key %s: got %s, reference %s", key_name(k), got, want);
        ASSERT_EQ(q_int(s, "SELECT deleted FROM records WHERE key='%s'", key_name(k)), deleted);
    }
    sd_store_close(s);
}

TEST(merge_is_order_and_duplicate_independent)
{
    tdir d;
    tdir_make(&d);
    uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
    const char *env_seed = getenv("SD_PROP_SEED");
    if (env_seed)
        seed = strtoull(env_seed, NULL, 0);
    int trials = 40;
    for (int t = 0; t < trials; t++) {
        uint64_t r = seed + (uint64_t)t * 7919;
        gen g;
        envb envs[NORIGINS];
        char first[16384], other[16384];
        gen_make(&g, &r);
        for (int o = 0; o < NORIGINS; o++)
            gen_envelope(&g, o, &envs[o]);
        for (int run = 0; run < 4; run++) {
            char path[256], name[32];
            snprintf(name, sizeof name, "p%d-%d.db", t, run);
            tdir_file(&d, name, path, sizeof path);
            run_order(&g, envs, &r, path, run == 0 ? first : other,
                      run == 0 ? sizeof first : sizeof other);
            if (run > 0 && strcmp(first, other) != 0)
                SS_TEST_FAIL("trial %d (seed %llu): states differ between orders:\n%s\n%s", t,
                             (unsigned long long)(seed + (uint64_t)t * 7919), first, other);
        }
        for (int o = 0; o < NORIGINS; o++)
            envb_free(&envs[o]);
    }
    tdir_remove(&d);
}

SS_TEST_MAIN(SS_TEST_ENTRY(merge_is_order_and_duplicate_independent))
