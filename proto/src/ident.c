/* ident.c - node/site id rules and the SAN URI form of certificate identities. */
#include <stdio.h>
#include <string.h>

#include "proto/err.h"
#include "proto/ident.h"

static int id_first_ok(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static int id_char_ok(unsigned char ch)
{
    return id_first_ok(ch) || ch == '.' || ch == '_' || ch == '-';
}

int ss_id_check(const char *s, size_t len)
{
    if (!s || len == 0 || len > SS_ID_MAX)
        return SS_EID;
    /* A leading '.' or '-' would make ".." or "-rf" possible as a file name
     * or a command-line argument. */
    if (!id_first_ok((unsigned char)s[0]))
        return SS_EID;
    for (size_t i = 1; i < len; i++) {
        /* NUL is outside the set, so an embedded NUL is refused here. */
        if (!id_char_ok((unsigned char)s[i]))
            return SS_EID;
    }
    return 0;
}

int ss_id_check_str(const char *s)
{
    if (!s)
        return SS_EID;
    /* Bounded scan: one more than the limit is enough to know it is too long. */
    const char *nul = memchr(s, '\0', SS_ID_MAX + 1);
    if (!nul)
        return SS_EID;
    return ss_id_check(s, (size_t)(nul - s));
}

static const char *const role_names[] = { "none", "gateway", "relay", "daemon" };

const char *ss_role_name(ss_role r)
{
    if ((int)r < (int)SS_ROLE_NONE || (int)r > (int)SS_ROLE_DAEMON)
        return "none";
    return role_names[r];
}

int ss_role_parse(const char *s, size_t len)
{
    if (!s)
        return SS_EINVAL;
    for (int r = SS_ROLE_GATEWAY; r <= SS_ROLE_DAEMON; r++) {
        if (strlen(role_names[r]) == len && memcmp(role_names[r], s, len) == 0)
            return r;
    }
    return SS_EINVAL;
}

static const char *kind_name(ss_uri_kind kind)
{
    switch (kind) {
    case SS_URI_NODE:
        return "node";
    case SS_URI_ROLE:
        return "role";
    case SS_URI_SITE:
        return "site";
    }
    return NULL;
}

int ss_uri_format(char *buf, size_t cap, ss_uri_kind kind, const char *value)
{
    const char *kn = kind_name(kind);
    int n;

    if (!kn || !value)
        return SS_EINVAL;
    if (kind == SS_URI_ROLE) {
        if (ss_role_parse(value, strlen(value)) < 0)
            return SS_EINVAL;
    } else if (ss_id_check_str(value) < 0) {
        return SS_EID;
    }
    if (!buf || cap == 0)
        return SS_ENOSPC;
    n = snprintf(buf, cap, "%s%s:%s", SS_URI_PREFIX, kn, value);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return SS_ENOSPC;
    }
    return n;
}

void ss_ident_init(ss_ident *id)
{
    memset(id, 0, sizeof(*id));
}

static int ident_bad(ss_ident *id)
{
    id->bad = 1;
    return SS_EIDENT;
}

/* ASCII case-insensitive prefix test, so that "URN:SiteSync:..." is seen as
 * ours (and refused as malformed) instead of silently ignored. */
static int has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);

    if (len < plen)
        return 0;
    for (size_t i = 0; i < plen; i++) {
        unsigned char a = (unsigned char)s[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (a != (unsigned char)prefix[i])
            return 0;
    }
    return 1;
}

int ss_ident_add_uri(ss_ident *id, const char *uri, size_t len)
{
    const size_t plen = sizeof(SS_URI_PREFIX) - 1;
    const char *rest, *value;
    size_t rlen, vlen;
    int role;

    if (!id || (!uri && len > 0))
        return SS_EINVAL;
    if (!has_prefix_ci(uri, len, SS_URI_PREFIX))
        return 0; /* someone else's URI: a certificate may carry others */
    /* From here on the URI claims to be ours, so anything odd is an error
     * rather than something to skip: a skipped identity URI would silently
     * change who the peer is. */
    if (memcmp(uri, SS_URI_PREFIX, plen) != 0 || len > SS_URI_MAX)
        return ident_bad(id);
    if (memchr(uri, '\0', len))
        return ident_bad(id);
    rest = uri + plen;
    rlen = len - plen;
    if (rlen < 5 || rest[4] != ':')
        return ident_bad(id);
    value = rest + 5;
    vlen = rlen - 5;
    if (memcmp(rest, "node", 4) == 0) {
        if (id->node[0] != '\0' || ss_id_check(value, vlen) < 0)
            return ident_bad(id);
        memcpy(id->node, value, vlen);
        id->node[vlen] = '\0';
    } else if (memcmp(rest, "role", 4) == 0) {
        role = ss_role_parse(value, vlen);
        if (id->role != SS_ROLE_NONE || role < 0)
            return ident_bad(id);
        id->role = (ss_role)role;
    } else if (memcmp(rest, "site", 4) == 0) {
        if (ss_id_check(value, vlen) < 0)
            return ident_bad(id);
        for (int i = 0; i < id->nsites; i++) {
            if (strlen(id->sites[i]) == vlen && memcmp(id->sites[i], value, vlen) == 0)
                return ident_bad(id);
        }
        if (id->nsites >= SS_IDENT_MAX_SITES)
            return ident_bad(id);
        memcpy(id->sites[id->nsites], value, vlen);
        id->sites[id->nsites][vlen] = '\0';
        id->nsites++;
    } else {
        return ident_bad(id);
    }
    return 0;
}

int ss_ident_finish(const ss_ident *id)
{
    if (!id || id->bad || id->node[0] == '\0')
        return SS_EIDENT;
    switch (id->role) {
    case SS_ROLE_GATEWAY:
    case SS_ROLE_RELAY:
        return id->nsites > 0 ? 0 : SS_EIDENT;
    case SS_ROLE_DAEMON:
        return id->nsites == 0 ? 0 : SS_EIDENT;
    case SS_ROLE_NONE:
        break;
    }
    return SS_EIDENT;
}

int ss_ident_has_site(const ss_ident *id, const char *site)
{
    /* A bad identity speaks for nobody, whatever URIs it collected. */
    if (!id || id->bad || ss_id_check_str(site) < 0)
        return 0;
    for (int i = 0; i < id->nsites && i < SS_IDENT_MAX_SITES; i++) {
        if (strcmp(id->sites[i], site) == 0)
            return 1;
    }
    return 0;
}
