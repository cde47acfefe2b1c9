/* fuzz_ident.c - libFuzzer target for identifiers and certificate identities:
 * the input is split at '\n' into slices; each slice is a SAN URI for one
 * identity and, on its own, an id, key, role name, HLC text and URI value.
 * Every answer of proto/ is compared with an independent model of the rules
 * in ident.h/schema.h/hlc.h, and a finished identity written back with
 * ss_uri_format must parse to the same identity. */
// fuzz-link: ss_proto
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ident_model.h"
#include "proto/err.h"
#include "proto/hlc.h"
#include "proto/ident.h"
#include "proto/schema.h"
#include "ss_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Longest slice handed to the NUL-terminated APIs; longer ones are cut, which
 * still exercises every "too long" branch (ids stop at 64, keys at 96). */
#define CSTR_MAX 255

/* Record keys: 1..96 of [A-Za-z0-9._:-]. */
static int model_key_ok(const char *s, size_t len)
{
    if (len < 1 || len > SS_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static int model_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void check_hlc(const char *s, size_t len)
{
    ss_hlc_t h = 0, want = 0;
    int ok = len == SS_HLC_TEXT_LEN;
    for (size_t i = 0; ok && i < len; i++) {
        int d = model_hex(s[i]);
        ok = d >= 0;
        want = want << 4 | (ss_hlc_t)(d & 15);
    }
    int rc = ss_hlc_parse(s, len, &h);
    ASSERT_EQ(rc, ok ? 0 : SS_EINVAL);
    if (!ok)
        return;
    ASSERT_U64_EQ(h, want);
    /* Formats back to the same digits in lower case. */
    char text[SS_HLC_TEXT_LEN + 1];
    ASSERT_EQ(ss_hlc_format(h, text, sizeof(text)), SS_HLC_TEXT_LEN);
    for (size_t i = 0; i < len; i++) {
        char c = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
        ASSERT_EQ(text[i], c);
    }
    ASSERT_U64_EQ(ss_hlc_make(ss_hlc_ms(h), ss_hlc_counter(h)), h);
    /* Any 64-bit stamp fits the human form's documented 31 bytes. */
    char human[SS_HLC_HUMAN_LEN + 1];
    int n = ss_hlc_format_human(h, human, sizeof(human));
    ASSERT_GT(n, 0);
    ASSERT_EQ((size_t)n, strlen(human));
}

/* ss_uri_format on a NUL-terminated value: accepted exactly when the model
 * accepts the value, and the URI is then accepted by a fresh identity. */
static void check_uri_format(const char *v)
{
    static const struct {
        ss_uri_kind kind;
        const char *name;
    } kinds[] = { { SS_URI_NODE, "node" }, { SS_URI_ROLE, "role" }, { SS_URI_SITE, "site" } };
    size_t vlen = strlen(v);

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char uri[SS_URI_MAX + 1];
        int valid = kinds[k].kind == SS_URI_ROLE ? model_role(v, vlen) != 0 : model_id_ok(v, vlen);
        int n = ss_uri_format(uri, sizeof(uri), kinds[k].kind, v);
        if (!valid) {
            ASSERT_EQ(n, kinds[k].kind == SS_URI_ROLE ? SS_EINVAL : SS_EID);
            continue;
        }
        ASSERT_GT(n, 0);
        ASSERT_EQ((size_t)n, strlen(uri));
        ASSERT_EQ((size_t)n, sizeof(SS_URI_PREFIX) - 1 + 5 + vlen);
        ASSERT(memcmp(uri, SS_URI_PREFIX, sizeof(SS_URI_PREFIX) - 1) == 0);
        ASSERT(memcmp(uri + sizeof(SS_URI_PREFIX) - 1, kinds[k].name, 4) == 0);
        ASSERT_STR_EQ(uri + sizeof(SS_URI_PREFIX) - 1 + 5, v);

        ss_ident one;
        ss_ident_init(&one);
        ASSERT_EQ(ss_ident_add_uri(&one, uri, (size_t)n), 0);
        ASSERT_EQ(one.bad, 0);
        if (kinds[k].kind == SS_URI_NODE)
            ASSERT_STR_EQ(one.node, v);
        else if (kinds[k].kind == SS_URI_ROLE)
            ASSERT_EQ(one.role, model_role(v, vlen));
        else
            ASSERT(one.nsites == 1 && strcmp(one.sites[0], v) == 0);

        /* A buffer one byte short is refused without writing past it. */
        char *tight = malloc((size_t)n);
        ASSERT(tight != NULL);
        ASSERT_EQ(ss_uri_format(tight, (size_t)n, kinds[k].kind, v), SS_ENOSPC);
        free(tight);
    }
}

/* Incident keys are "<node>-<16 hex>" and always valid record keys. */
static void check_incident_key(const char *node, ss_hlc_t h)
{
    char key[SS_KEY_MAX + 1];
    size_t nlen = strlen(node);
    int n = ss_incident_key(key, sizeof(key), node, h);

    if (!model_id_ok(node, nlen)) {
        ASSERT_EQ(n, SS_EID);
        return;
    }
    ASSERT_EQ((size_t)n, nlen + 1 + SS_HLC_TEXT_LEN);
    ASSERT_EQ(ss_key_check(key, (size_t)n), 0);
    ASSERT(memcmp(key, node, nlen) == 0 && key[nlen] == '-');
    ss_hlc_t back = 0;
    ASSERT_EQ(ss_hlc_parse(key + nlen + 1, SS_HLC_TEXT_LEN, &back), 0);
    ASSERT_U64_EQ(back, h);
    char *tight = malloc((size_t)n);
    ASSERT(tight != NULL);
    ASSERT_EQ(ss_incident_key(tight, (size_t)n, node, h), SS_ENOSPC);
    free(tight);
}

static void check_slice(const char *s, size_t len, ss_ident *id, model_ident *m)
{
    int rc = ss_ident_add_uri(id, s, len);
    int want = model_add(m, s, len);
    ASSERT_EQ(rc, want == 0 ? 0 : SS_EIDENT);
    model_expect_same(m, id);

    ASSERT_EQ(ss_id_check(s, len), model_id_ok(s, len) ? 0 : SS_EID);
    ASSERT_EQ(ss_key_check(s, len), model_key_ok(s, len) ? 0 : SS_EID);
    int r = model_role(s, len);
    ASSERT_EQ(ss_role_parse(s, len), r ? r : SS_EINVAL);
    if (r)
        ASSERT(model_str_is(ss_role_name((ss_role)r), s, len));
    check_hlc(s, len);

    char c[CSTR_MAX + 1];
    size_t clen = len < CSTR_MAX ? len : CSTR_MAX;
    memcpy(c, s, clen);
    c[clen] = '\0';
    ASSERT_EQ(ss_id_check_str(c), model_id_ok(c, strlen(c)) ? 0 : SS_EID);
    check_uri_format(c);
    check_incident_key(c, (ss_hlc_t)len * UINT64_C(0x9e3779b97f4a7c15));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    ss_ident id;
    model_ident m;
    size_t start = 0;

    ss_ident_init(&id);
    memset(&m, 0, sizeof(m));
    for (size_t i = 0; i <= size; i++) {
        if (i < size && s[i] != '\n')
            continue;
        check_slice(s + start, i - start, &id, &m);
        start = i + 1;
    }

    int fin = ss_ident_finish(&id);
    ASSERT_EQ(fin, model_finish(&m) == 0 ? 0 : SS_EIDENT);
    if (fin == 0)
        model_expect_uri_roundtrip(&id);

    /* Which sites the identity speaks for: only its own, and none once bad. */
    start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && s[i] != '\n')
            continue;
        char c[CSTR_MAX + 1];
        size_t clen = i - start < CSTR_MAX ? i - start : CSTR_MAX;
        memcpy(c, s + start, clen);
        c[clen] = '\0';
        int want = 0;
        for (int k = 0; !m.bad && k < m.nsites; k++)
            want |= strcmp(m.sites[k], c) == 0;
        ASSERT_EQ(ss_ident_has_site(&id, c), want);
        start = i + 1;
    }
    ASSERT_EQ(ss_ident_has_site(&id, NULL), 0);
    return 0;
}
