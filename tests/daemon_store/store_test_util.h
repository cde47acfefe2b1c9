/* store_test_util.h - helpers shared by the daemon store tests: temporary
 * databases, peers from a made-up certificate identity, changes and
 * envelopes built with proto/ exactly as a gateway would send them. */
#ifndef STORE_TEST_UTIL_H
#define STORE_TEST_UTIL_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/alloc.h"
#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/schema.h"
#include "sd/store.h"
#include "ss_test.h"

/* A fixed receive time (2026-12-04T16:00:00Z) keeps clocks reproducible. */
#define T_NOW_MS INT64_C(1796400000000)

typedef struct tdir {
    char path[128];
} tdir;

static inline void tdir_make(tdir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/sd-store-test-XXXXXX");
    ASSERT(mkdtemp(d->path) != NULL);
}

static inline void tdir_file(const tdir *d, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", d->path, name);
}

static inline void tdir_remove(tdir *d)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
    ASSERT_EQ(system(cmd), 0);
}

static inline sd_store *store_open_at(const char *path, int readonly)
{
    sd_store_config cfg = { 0 };
    sd_store *s = NULL;
    char err[256];
    cfg.path = path;
    cfg.readonly = readonly;
    int rc = sd_store_open(&cfg, &s, err, sizeof err);
    if (rc)
        SS_TEST_FAIL("sd_store_open(%s): %d %s", path, rc, err);
    return s;
}

/* A peer as the TLS layer would derive it; sites is a NULL-terminated list. */
static inline sd_peer mk_peer(const char *node, ss_role role, const char *const *sites)
{
    sd_peer p;
    memset(&p, 0, sizeof p);
    ss_ident_init(&p.ident);
    snprintf(p.ident.node, sizeof p.ident.node, "%s", node);
    p.ident.role = role;
    for (int i = 0; sites && sites[i]; i++)
        snprintf(p.ident.sites[p.ident.nsites++], SS_ID_MAX + 1, "%s", sites[i]);
    snprintf(p.fingerprint, sizeof p.fingerprint, "%064x", (unsigned)strlen(node));
    snprintf(p.serial, sizeof p.serial, "0a1b%s", role == SS_ROLE_RELAY ? "02" : "01");
    snprintf(p.addr, sizeof p.addr, "127.0.0.1:40000");
    snprintf(p.path, sizeof p.path, "direct");
    return p;
}

static inline ss_change mk_change(const char *coll, const char *key, const char *site, ss_op op,
                                  ss_hlc_t hlc)
{
    ss_change ch;
    memset(&ch, 0, sizeof ch);
    ch.coll = ss_schema_collection(coll, strlen(coll));
    ASSERT(ch.coll != NULL);
    snprintf(ch.key, sizeof ch.key, "%s", key);
    snprintf(ch.site, sizeof ch.site, "%s", site);
    ch.op = op;
    ch.hlc = hlc;
    return ch;
}

/* Sets a field from text (value must outlive ch). */
static inline void ch_set(ss_change *ch, const char *field, const char *value)
{
    ss_verr err;
    int rc = ss_change_set_text(ch, field, value, &err);
    if (rc)
        SS_TEST_FAIL("ss_change_set_text(%s=%s): %d %s", field, value, rc, err.msg);
}

static inline ss_change mk_status(const char *site, ss_hlc_t hlc, const char *field,
                                  const char *value)
{
    ss_change ch = mk_change("site_status", site, site, SS_OP_UPDATE, hlc);
    ch_set(&ch, field, value);
    return ch;
}

static inline ss_change mk_incident(const char *key, const char *site, ss_hlc_t hlc,
                                    const char *title)
{
    ss_change ch = mk_change("incident", key, site, SS_OP_CREATE, hlc);
    ch_set(&ch, "category", "intrusion");
    ch_set(&ch, "severity", "3");
    ch_set(&ch, "title", title);
    return ch;
}

/* Envelope builder: changes get seq first, first+1, ... */
typedef struct envb {
    char origin[SS_ID_MAX + 1];
    uint64_t first;
    uint32_t count;
    char *body;
    size_t len, cap;
    uint8_t *env;
    size_t env_len;
} envb;

static inline void envb_init(envb *e, const char *origin, uint64_t first)
{
    size_t olen = strlen(origin);
    memset(e, 0, sizeof *e);
    ASSERT(olen < sizeof e->origin);
    memcpy(e->origin, origin, olen + 1);
    e->first = first;
    e->cap = 1 << 16;
    e->body = malloc(e->cap);
    ASSERT(e->body != NULL);
    e->body[e->len++] = '[';
}

/* Appends raw change JSON text as the next element (for malformed cases). */
static inline void envb_add_raw(envb *e, const char *json, size_t n)
{
    while (e->cap - e->len < n + 4) {
        e->cap *= 2;
        e->body = realloc(e->body, e->cap);
        ASSERT(e->body != NULL);
    }
    if (e->count)
        e->body[e->len++] = ',';
    memcpy(e->body + e->len, json, n);
    e->len += n;
    e->count++;
}

static inline void envb_add(envb *e, ss_change ch)
{
    char buf[16384];
    ch.seq = e->first + e->count;
    int n = ss_change_encode(&ch, buf, sizeof buf);
    ASSERT_GT(n, 0);
    envb_add_raw(e, buf, (size_t)n);
}

/* Finishes the envelope: e->env / e->env_len. */
static inline void envb_finish(envb *e)
{
    e->body[e->len++] = ']';
    size_t hl = ss_envelope_header_len(e->origin);
    e->env = malloc(hl + e->len);
    ASSERT(e->env != NULL);
    int h =
        ss_envelope_write_header(e->env, hl, e->origin, e->first, e->count, (uint32_t)e->len, 0);
    ASSERT_EQ(h, (long long)hl);
    memcpy(e->env + hl, e->body, e->len);
    e->env_len = hl + e->len;
}

static inline void envb_free(envb *e)
{
    free(e->body);
    free(e->env);
    memset(e, 0, sizeof *e);
}

/* Applies and returns the code; out must be freed with sd_result_free. */
static inline int apply_env(sd_store *s, const sd_peer *p, envb *e, sd_result *out)
{
    return sd_store_apply(s, p, e->env, e->env_len, T_NOW_MS, out);
}

/* One integer from a query on the store's handle (printf-style SQL). */
static inline long long q_int(sd_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline long long q_int(sd_store *s, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(sd_store_handle(s), sql, -1, &st, NULL) != SQLITE_OK)
        SS_TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(sd_store_handle(s)));
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One text value (copied into buf; "" for NULL or no row). */
static inline const char *q_text(sd_store *s, char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline const char *q_text(sd_store *s, char *buf, size_t cap, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(sd_store_handle(s), sql, -1, &st, NULL) != SQLITE_OK)
        SS_TEST_FAIL("prepare %s: %s", sql, sqlite3_errmsg(sd_store_handle(s)));
    buf[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return buf;
}

#endif
