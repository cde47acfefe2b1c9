/* ident_model.h - an independent, deliberately naive model of the identity
 * rules of proto/include/proto/ident.h (written from the header's contract,
 * not from ident.c), shared by fuzz_ident.c and fuzz_cert_ident.c so that the
 * fuzzers compare what proto/ decides against what the contract says. */
#ifndef SS_FUZZ_IDENT_MODEL_H
#define SS_FUZZ_IDENT_MODEL_H

#include <stddef.h>
#include <string.h>

#include "proto/ident.h"
#include "ss_test.h"

typedef struct model_ident {
    char node[SS_ID_MAX + 1]; /* "" until a node URI is accepted */
    int role;                 /* ss_role */
    int nsites;
    char sites[SS_IDENT_MAX_SITES][SS_ID_MAX + 1];
    int bad;
} model_ident;

/* 1..64 of [a-z0-9._-], the first one of [a-z0-9]. */
static inline int model_id_ok(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !(c == '.' || c == '_' || c == '-')))
            return 0;
    }
    return 1;
}

/* ss_role value for a role name, or 0. */
static inline int model_role(const char *s, size_t len)
{
    static const char *const names[] = { "gateway", "relay", "daemon" };
    for (int r = 0; r < 3; r++) {
        if (strlen(names[r]) == len && memcmp(names[r], s, len) == 0)
            return r + 1;
    }
    return 0;
}

/* Same bytes as s[0..len) when the NUL-terminated t is read as a string. */
static inline int model_str_is(const char *t, const char *s, size_t len)
{
    return strlen(t) == len && memcmp(t, s, len) == 0;
}

/* What ss_ident_add_uri must answer: 0 (accepted or not ours) or -1. The state
 * changes only when a sitesync URI is accepted; a refusal marks it bad. */
static inline int model_add(model_ident *m, const char *u, size_t len)
{
    static const char prefix[] = "urn:sitesync:";
    const size_t plen = sizeof(prefix) - 1;
    const char *v;
    size_t vlen;

    if (len < plen)
        return 0;
    for (size_t i = 0; i < plen; i++) {
        char c = u[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != prefix[i])
            return 0; /* someone else's URI */
    }
    if (memcmp(u, prefix, plen) != 0 || len < plen + 5 || u[plen + 4] != ':')
        goto bad;
    v = u + plen + 5;
    vlen = len - plen - 5;
    if (memcmp(u + plen, "node", 4) == 0) {
        if (m->node[0] != '\0' || !model_id_ok(v, vlen))
            goto bad;
        memcpy(m->node, v, vlen);
        m->node[vlen] = '\0';
        return 0;
    }
    if (memcmp(u + plen, "role", 4) == 0) {
        if (m->role != 0 || model_role(v, vlen) == 0)
            goto bad;
        m->role = model_role(v, vlen);
        return 0;
    }
    if (memcmp(u + plen, "site", 4) == 0) {
        if (!model_id_ok(v, vlen) || m->nsites == SS_IDENT_MAX_SITES)
            goto bad;
        for (int i = 0; i < m->nsites; i++) {
            if (model_str_is(m->sites[i], v, vlen))
                goto bad;
        }
        memcpy(m->sites[m->nsites], v, vlen);
        m->sites[m->nsites][vlen] = '\0';
        m->nsites++;
        return 0;
    }
bad:
    m->bad = 1;
    return -1;
}

/* What ss_ident_finish must answer: 0 or -1. */
static inline int model_finish(const model_ident *m)
{
    if (m->bad || m->node[0] == '\0' || m->role == 0)
        return -1;
    if (m->role == SS_ROLE_DAEMON)
        return m->nsites == 0 ? 0 : -1;
    return m->nsites > 0 ? 0 : -1;
}

/* The model and proto/'s identity hold the same node, role and sites. */
static inline void model_expect_same(const model_ident *m, const ss_ident *id)
{
    ASSERT_STR_EQ(id->node, m->node);
    ASSERT_EQ(id->role, m->role);
    ASSERT_EQ(id->bad != 0, m->bad);
    ASSERT_EQ(id->nsites, m->nsites);
    for (int i = 0; i < m->nsites; i++)
        ASSERT_STR_EQ(id->sites[i], m->sites[i]);
}

/* Round trip: a finished identity written back as URIs with ss_uri_format
 * parses to the same identity, and claims exactly its own sites. */
static inline void model_expect_uri_roundtrip(const ss_ident *id)
{
    char uri[SS_URI_MAX + 1];
    ss_ident again;
    int n;

    ss_ident_init(&again);
    n = ss_uri_format(uri, sizeof(uri), SS_URI_NODE, id->node);
    ASSERT_GT(n, 0);
    ASSERT_EQ(ss_ident_add_uri(&again, uri, (size_t)n), 0);
    n = ss_uri_format(uri, sizeof(uri), SS_URI_ROLE, ss_role_name(id->role));
    ASSERT_GT(n, 0);
    ASSERT_EQ(ss_ident_add_uri(&again, uri, (size_t)n), 0);
    for (int i = 0; i < id->nsites; i++) {
        n = ss_uri_format(uri, sizeof(uri), SS_URI_SITE, id->sites[i]);
        ASSERT_GT(n, 0);
        ASSERT_EQ(ss_ident_add_uri(&again, uri, (size_t)n), 0);
        ASSERT_EQ(ss_ident_has_site(id, id->sites[i]), 1);
    }
    ASSERT_EQ(ss_ident_finish(&again), 0);
    ASSERT_STR_EQ(again.node, id->node);
    ASSERT_EQ(again.role, id->role);
    ASSERT_EQ(again.nsites, id->nsites);
    for (int i = 0; i < id->nsites; i++)
        ASSERT_STR_EQ(again.sites[i], id->sites[i]);
}

#endif
