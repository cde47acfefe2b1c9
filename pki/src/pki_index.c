/* pki_index.c - the issuance index (DIR/index.json): one record per
 * certificate the CA signed, the source for revocation by node, for list, and
 * for the CRL. Replaced as a whole (temp + fsync + rename) on every change. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/err.h"
#include "internal.h"

/* An index bigger than this is not something this tool wrote. */
#define INDEX_MAX_BYTES (64u * 1024u * 1024u)

void pki__index_init(pki__index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

static void entry_free(pki__entry *e)
{
    free(e->sites);
    e->sites = NULL;
    e->nsites = 0;
}

void pki__index_free(pki__index *ix)
{
    if (!ix)
        return;
    for (int i = 0; i < ix->n; i++)
        entry_free(&ix->e[i]);
    free(ix->e);
    pki__index_init(ix);
}

static int grow(pki__index *ix)
{
    pki__entry *ne;
    int ncap;

    if (ix->n < ix->cap)
        return 0;
    ncap = ix->cap ? ix->cap * 2 : 16;
    ne = realloc(ix->e, (size_t)ncap * sizeof(*ne));
    if (!ne)
        return SS_ENOMEM;
    ix->e = ne;
    ix->cap = ncap;
    return 0;
}

int pki__index_add(pki__index *ix, const pki__entry *e, const char *const *sites, char *err,
                   size_t errcap)
{
    pki__entry *d;

    if (grow(ix) != 0)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
    d = &ix->e[ix->n];
    *d = *e;
    d->sites = NULL;
    d->nsites = 0;
    if (e->nsites > 0) {
        d->sites = calloc((size_t)e->nsites, sizeof(*d->sites));
        if (!d->sites)
            return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
        for (int i = 0; i < e->nsites; i++) {
            const char *s = sites ? sites[i] : e->sites[i];
            size_t n = strlen(s);
            if (n > SS_ID_MAX) {
                free(d->sites);
                return pki__fail(err, errcap, SS_EID, "site id too long");
            }
            memcpy(d->sites[i], s, n + 1);
        }
        d->nsites = e->nsites;
    }
    ix->n++;
    return 0;
}

const char *pki__entry_status(const pki__entry *e, int64_t now)
{
    if (e->revoked)
        return "revoked";
    if (e->not_after < now)
        return "expired";
    return "valid";
}

static int get_str(const cJSON *o, const char *name, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsString(v) || !v->valuestring)
        return SS_EMISSING;
    *out = v->valuestring;
    return 0;
}

static int get_time(const cJSON *o, const char *name, int64_t *t)
{
    const char *s;

    if (get_str(o, name, &s) != 0 || pki__parse_time(s, t) != 0)
        return SS_EINVAL;
    return 0;
}

/* Reads one certificate record; returns a short reason on error. */
static const char *entry_from_json(const cJSON *o, pki__entry *e)
{
    const char *s;
    const cJSON *sites, *it, *rv;
    int role, i = 0;
    char norm[PKI_SERIAL_HEX_MAX + 1];

    memset(e, 0, sizeof(*e));
    if (!cJSON_IsObject(o))
        return "record is not an object";
    if (get_str(o, "serial", &s) != 0 || pki__serial_normalize(s, norm, sizeof(norm)) != 0 ||
        strcmp(norm, s) != 0)
        return "bad serial";
    memcpy(e->serial, s, strlen(s) + 1);
    if (get_str(o, "node", &s) != 0 || ss_id_check_str(s) != 0)
        return "bad node";
    memcpy(e->node, s, strlen(s) + 1);
    if (get_str(o, "role", &s) != 0 || (role = ss_role_parse(s, strlen(s))) < 0)
        return "bad role";
    e->role = (ss_role)role;
    if (get_time(o, "not_before", &e->not_before) != 0 ||
        get_time(o, "not_after", &e->not_after) != 0)
        return "bad validity";
    if (get_str(o, "fingerprint", &s) != 0 || strlen(s) != PKI_FPR_HEX_LEN)
        return "bad fingerprint";
    memcpy(e->fingerprint, s, PKI_FPR_HEX_LEN + 1);
    sites = cJSON_GetObjectItemCaseSensitive(o, "sites");
    if (!cJSON_IsArray(sites))
        return "bad sites";
    e->nsites = cJSON_GetArraySize(sites);
    if (e->nsites > SS_IDENT_MAX_SITES)
        return "too many sites";
    if (e->nsites > 0) {
        e->sites = calloc((size_t)e->nsites, sizeof(*e->sites));
        if (!e->sites)
            return "out of memory";
    }
    cJSON_ArrayForEach(it, sites)
    {
        if (!cJSON_IsString(it) || ss_id_check_str(it->valuestring) != 0)
            return "bad site";
        memcpy(e->sites[i++], it->valuestring, strlen(it->valuestring) + 1);
    }
    rv = cJSON_GetObjectItemCaseSensitive(o, "revoked_at");
    if (rv && !cJSON_IsNull(rv)) {
        if (get_time(o, "revoked_at", &e->revoked_at) != 0)
            return "bad revoked_at";
        if (get_str(o, "reason", &s) != 0 || (e->reason = pki_reason_parse(s)) < 0)
            return "bad reason";
        e->revoked = 1;
    }
    return NULL;
}

int pki__index_load(const char *dir, pki__index *ix, char *err, size_t errcap)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const cJSON *fmt, *num, *certs, *it;
    int rc, k = 0;

    pki__index_init(ix);
    if ((rc = pki__path(path, sizeof(path), dir, PKI_INDEX_FILE, err, errcap)) != 0)
        return rc;
    if ((rc = pki__read_file(path, INDEX_MAX_BYTES, &text, &len, NULL, err, errcap)) != 0)
        return rc;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = pki__fail(err, errcap, SS_ECORRUPT, "%s is not valid JSON", path);
        goto exit;
    }
    fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsNumber(fmt) || fmt->valuedouble != PKI_INDEX_FORMAT) {
        rc = pki__fail(err, errcap, SS_EVERSION, "%s: unsupported format (expected %d)", path,
                       PKI_INDEX_FORMAT);
        goto exit;
    }
    num = cJSON_GetObjectItemCaseSensitive(root, "crl_number");
    if (!cJSON_IsNumber(num) || num->valuedouble < 0 || num->valuedouble > 9007199254740991.0 ||
        num->valuedouble != (double)(long)num->valuedouble) {
        rc = pki__fail(err, errcap, SS_ECORRUPT, "%s: bad crl_number", path);
        goto exit;
    }
    ix->crl_number = (long)num->valuedouble;
    certs = cJSON_GetObjectItemCaseSensitive(root, "certs");
    if (!cJSON_IsArray(certs)) {
        rc = pki__fail(err, errcap, SS_ECORRUPT, "%s: missing certs array", path);
        goto exit;
    }
    cJSON_ArrayForEach(it, certs)
    {
        pki__entry e;
        const char *why = entry_from_json(it, &e);
        k++;
        if (why) {
            entry_free(&e);
            rc = pki__fail(err, errcap, SS_ECORRUPT, "%s: record %d: %s", path, k, why);
            goto exit;
        }
        if (grow(ix) != 0) {
            entry_free(&e);
            rc = pki__fail(err, errcap, SS_ENOMEM, "out of memory");
            goto exit;
        }
        ix->e[ix->n++] = e; /* takes e.sites */
    }
exit:
    cJSON_Delete(root);
    free(text);
    if (rc != 0)
        pki__index_free(ix);
    return rc;
}

static cJSON *entry_to_json(const pki__entry *e)
{
    cJSON *o = cJSON_CreateObject(), *sites;
    char t[32];
    int ok = o != NULL;

    ok = ok && cJSON_AddStringToObject(o, "serial", e->serial);
    ok = ok && cJSON_AddStringToObject(o, "node", e->node);
    ok = ok && cJSON_AddStringToObject(o, "role", ss_role_name(e->role));
    ok = ok && (sites = cJSON_AddArrayToObject(o, "sites")) != NULL;
    for (int i = 0; ok && i < e->nsites; i++) {
        cJSON *s = cJSON_CreateString(e->sites[i]);
        ok = s != NULL && cJSON_AddItemToArray(sites, s);
    }
    pki__fmt_time(e->not_before, t, sizeof(t));
    ok = ok && cJSON_AddStringToObject(o, "not_before", t);
    pki__fmt_time(e->not_after, t, sizeof(t));
    ok = ok && cJSON_AddStringToObject(o, "not_after", t);
    ok = ok && cJSON_AddStringToObject(o, "fingerprint", e->fingerprint);
    if (e->revoked) {
        pki__fmt_time(e->revoked_at, t, sizeof(t));
        ok = ok && cJSON_AddStringToObject(o, "revoked_at", t);
        ok = ok && cJSON_AddStringToObject(o, "reason", pki_reason_name(e->reason));
    } else {
        ok = ok && cJSON_AddNullToObject(o, "revoked_at");
        ok = ok && cJSON_AddNullToObject(o, "reason");
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int pki__index_dump(const pki__index *ix, char **text, size_t *len, char *err, size_t errcap)
{
    cJSON *root = cJSON_CreateObject(), *certs = NULL;
    char *out = NULL, *nl;
    int ok = root != NULL;

    *text = NULL;
    *len = 0;
    ok = ok && cJSON_AddNumberToObject(root, "format", PKI_INDEX_FORMAT);
    ok = ok && cJSON_AddNumberToObject(root, "crl_number", (double)ix->crl_number);
    ok = ok && (certs = cJSON_AddArrayToObject(root, "certs")) != NULL;
    for (int i = 0; ok && i < ix->n; i++) {
        cJSON *o = entry_to_json(&ix->e[i]);
        ok = o != NULL && cJSON_AddItemToArray(certs, o);
    }
    if (ok)
        out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!out)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory writing the index");
    /* Text files end with a newline. cJSON's buffer belongs to cJSON's
     * allocator hooks, so copy it rather than realloc() it. */
    *len = strlen(out);
    nl = malloc(*len + 2);
    if (!nl) {
        cJSON_free(out);
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory writing the index");
    }
    memcpy(nl, out, *len);
    cJSON_free(out);
    nl[(*len)++] = '\n';
    nl[*len] = '\0';
    *text = nl;
    return 0;
}
