/* test_schema.c - the schema table, change validation (data-driven vectors of
 * change JSON -> error code and field), CLI text input, keys and the JSON
 * encode/decode round trip. */
#include <cjson/cJSON.h>

#include "ss_test.h"

#include "internal.h"
#include "proto/err.h"
#include "proto/json.h"
#include "proto/schema.h"

/* ---- Helpers. */

/* Vectors are written with ' for " to stay readable; "~N~" expands to N
 * letters 'x' (for length limits). A real apostrophe is \u0027. */
static char *expand(const char *in)
{
    size_t cap = strlen(in) + 1, n = 0;
    char *out;

    for (const char *p = in; *p; p++) {
        if (*p == '~')
            cap += (size_t)strtoul(p + 1, NULL, 10);
    }
    out = malloc(cap);
    ASSERT(out != NULL);
    for (const char *p = in; *p; p++) {
        if (*p == '\'') {
            out[n++] = '"';
        } else if (*p == '~') {
            char *end;
            unsigned long k = strtoul(p + 1, &end, 10);
            ASSERT(*end == '~');
            memset(out + n, 'x', k);
            n += k;
            p = end;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return out;
}

/* Decodes one change from JSON text with plain cJSON (which, unlike
 * ss_json_parse, lets duplicate keys and odd bytes through, so the decoder's
 * own defences are exercised too). */
static int decode(const char *vec, ss_change *ch, ss_verr *err, cJSON **tree)
{
    char *text = expand(vec);
    cJSON *root = cJSON_Parse(text);
    int rc;

    if (!root)
        SS_TEST_FAIL("vector is not JSON: %s", text);
    free(text);
    memset(err, 0, sizeof(*err));
    rc = ss__change_from_json(root, ch, err);
    *tree = root;
    return rc;
}

#define HLC_TEXT "'0000018c2e5a7d10'"
#define SS(op, f)                                                                             \
    "{'seq':1,'hlc':" HLC_TEXT ",'collection':'site_status','key':'s1','site':'s1','op':'" op \
    "','fields':{" f "}}"
#define SSU(f) SS("update", f)
#define INC(op, f)                                                                             \
    "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'gw1-0000018c2e5a7d10','site':" \
    "'s1','op':'" op "','fields':{" f "}}"
#define INCU(f) INC("update", f)
/* A create with the three required fields, plus f (starting with a comma). */
#define INCC(f) INC("create", "'category':'fire','severity':3,'title':'Smoke'" f)

typedef struct vec {
    const char *json;
    int code;
    const char *field;
} vec;

static const vec vectors[] = {
    /* site_status: enums */
    { SSU("'alert_level':'high'"), 0, "" },
    { SSU("'alert_level':'HIGH'"), SS_EENUM, "alert_level" },
    { SSU("'alert_level':'purple'"), SS_EENUM, "alert_level" },
    { SSU("'alert_level':''"), SS_EENUM, "alert_level" },
    { SSU("'alert_level':'high '"), SS_EENUM, "alert_level" },
    { SSU("'alert_level':null"), 0, "" },
    { SSU("'alert_level':3"), SS_EFIELDTYPE, "alert_level" },
    { SSU("'power':'outage'"), 0, "" },
    { SSU("'power':'off'"), SS_EENUM, "power" },
    { SSU("'perimeter':'breached'"), 0, "" },
    { SSU("'perimeter':'open'"), SS_EENUM, "perimeter" },
    { SSU("'access_control':'bypassed'"), 0, "" },
    { SSU("'access_control':'online'"), SS_EENUM, "access_control" },
    { SSU("'cctv':'offline'"), 0, "" },
    { SSU("'cctv':'backup'"), SS_EENUM, "cctv" },
    { SSU("'comms':'backup_link'"), 0, "" },
    { SSU("'comms':'backup-link'"), SS_EENUM, "comms" },
    { SSU("'comms':true"), SS_EFIELDTYPE, "comms" },
    /* site_status: INT */
    { SSU("'personnel_on_site':0"), 0, "" },
    { SSU("'personnel_on_site':100000"), 0, "" },
    { SSU("'personnel_on_site':100001"), SS_ERANGE, "personnel_on_site" },
    { SSU("'personnel_on_site':-1"), SS_ERANGE, "personnel_on_site" },
    { SSU("'personnel_on_site':1e2"), 0, "" },
    { SSU("'personnel_on_site':1.5"), SS_EFIELDTYPE, "personnel_on_site" },
    { SSU("'personnel_on_site':'5'"), SS_EFIELDTYPE, "personnel_on_site" },
    { SSU("'personnel_on_site':false"), SS_EFIELDTYPE, "personnel_on_site" },
    { SSU("'personnel_on_site':[]"), SS_EFIELDTYPE, "personnel_on_site" },
    { SSU("'personnel_on_site':{}"), SS_EFIELDTYPE, "personnel_on_site" },
    { SSU("'personnel_on_site':1e300"), SS_ERANGE, "personnel_on_site" },
    { SSU("'personnel_on_site':-1e300"), SS_ERANGE, "personnel_on_site" },
    { SSU("'personnel_on_site':123456789012345678901234567890123456789012345678901234567890"),
      SS_ERANGE, "personnel_on_site" },
    { SSU("'personnel_on_site':null"), 0, "" },
    /* site_status: STRING note (0..1024 bytes, one line) */
    { SSU("'note':''"), 0, "" },
    { SSU("'note':'~1024~'"), 0, "" },
    { SSU("'note':'~1025~'"), SS_ETOOLONG, "note" },
    { SSU("'note':'caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x94\xa5 \\'quoted\\' \\\\ /'"), 0, "" },
    { SSU("'note':'a\\nb'"), SS_EINVAL, "note" },
    { SSU("'note':'a\\tb'"), SS_EINVAL, "note" },
    { SSU("'note':'a\\rb'"), SS_EINVAL, "note" },
    { SSU("'note':'a\\u0001b'"), SS_EINVAL, "note" },
    { SSU("'note':'a\\u001bb'"), SS_EINVAL, "note" },
    { SSU("'note':'a\\u007fb'"), SS_EINVAL, "note" },
    { SSU("'note':'\xff'"), SS_EUTF8, "note" },
    { SSU("'note':null"), 0, "" },
    { SSU("'note':7"), SS_EFIELDTYPE, "note" },
    /* site_status: key rules and fields of the wrong collection */
    { SSU("'colour':'red'"), SS_EUNKNOWNFIELD, "colour" },
    { SSU("'severity':3"), SS_EUNKNOWNFIELD, "severity" },
    { SSU("'Alert_level':'high'"), SS_EUNKNOWNFIELD, "Alert_level" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'site_status','key':'s2','site':'s1','op':'update',"
      "'fields':{'cctv':'online'}}",
      SS_EID, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'site_status','key':'S1','site':'S1','op':'update',"
      "'fields':{'cctv':'online'}}",
      SS_EID, "site" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'site_status','key':'','site':'','op':'update',"
      "'fields':{'cctv':'online'}}",
      SS_EID, "site" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'site_status','key':'~65~','site':'~65~','op':"
      "'update','fields':{'cctv':'online'}}",
      SS_EID, "site" },
    /* op rules */
    { SS("create", "'cctv':'online'"), 0, "" },
    { SS("create", ""), SS_EMISSING, "fields" },
    { SS("update", ""), SS_EMISSING, "fields" },
    { SS("delete", ""), 0, "" },
    { SS("delete", "'cctv':'online'"), SS_EINVAL, "fields" },
    { SS("delete", "'cctv':null"), SS_EINVAL, "fields" },
    { SS("upsert", "'cctv':'online'"), SS_EENUM, "op" },
    { SS("Create", "'cctv':'online'"), SS_EENUM, "op" },
    /* incident: create and required fields */
    { INCC(""), 0, "" },
    { INCC(",'status':'open','description':'line 1\\nline 2\\r\\n\\tindented','occurred_at':"
           "'2026-12-04T16:03:33.123Z','reported_by':'J. Smith','location':'gate 3',"
           "'actions_taken':'police called'"),
      0, "" },
    { INC("create", "'severity':3,'title':'Smoke'"), SS_EMISSING, "category" },
    { INC("create", "'category':'fire','title':'Smoke'"), SS_EMISSING, "severity" },
    { INC("create", "'category':'fire','severity':3"), SS_EMISSING, "title" },
    { INC("create", "'category':'fire','severity':3,'title':null"), SS_EMISSING, "title" },
    { INC("create", "'category':null,'severity':3,'title':'x'"), SS_EMISSING, "category" },
    { INC("create", "'status':'open'"), SS_EMISSING, "category" },
    { INCU("'title':null"), SS_EMISSING, "title" },
    { INCU("'severity':null"), SS_EMISSING, "severity" },
    { INCU("'status':null"), 0, "" },
    { INCU("'description':null,'location':null"), 0, "" },
    { INCU("'status':'contained'"), 0, "" },
    { INC("delete", ""), 0, "" },
    /* incident: enums */
    { INCU("'category':'drone'"), 0, "" },
    { INCU("'category':'Fire'"), SS_EENUM, "category" },
    { INCU("'category':'flood'"), SS_EENUM, "category" },
    { INCU("'status':'done'"), SS_EENUM, "status" },
    { INCU("'status':['open']"), SS_EFIELDTYPE, "status" },
    /* incident: severity 1..5 */
    { INCU("'severity':1"), 0, "" },
    { INCU("'severity':5"), 0, "" },
    { INCU("'severity':0"), SS_ERANGE, "severity" },
    { INCU("'severity':6"), SS_ERANGE, "severity" },
    { INCU("'severity':-3"), SS_ERANGE, "severity" },
    { INCU("'severity':3.0001"), SS_EFIELDTYPE, "severity" },
    { INCU("'severity':'3'"), SS_EFIELDTYPE, "severity" },
    { INCU("'severity':true"), SS_EFIELDTYPE, "severity" },
    /* incident: title STRING 1..200 */
    { INCU("'title':''"), SS_EMISSING, "title" },
    { INCU("'title':'~200~'"), 0, "" },
    { INCU("'title':'~201~'"), SS_ETOOLONG, "title" },
    { INCU("'title':'two\\nlines'"), SS_EINVAL, "title" },
    { INCU("'title':5"), SS_EFIELDTYPE, "title" },
    { INCU("'title':{}"), SS_EFIELDTYPE, "title" },
    { INCU("'title':'\xc3\x28'"), SS_EUTF8, "title" },
    { INCU("'title':'\xc0\xaf'"), SS_EUTF8, "title" },
    { INCU("'title':'\xe0\x80\xaf'"), SS_EUTF8, "title" },
    { INCU("'title':'\xed\xa0\x80'"), SS_EUTF8, "title" },
    { INCU("'title':'\xf4\x90\x80\x80'"), SS_EUTF8, "title" },
    { INCU("'title':'\xe2\x82'"), SS_EUTF8, "title" },
    { INCU("'title':'\x80'"), SS_EUTF8, "title" },
    { INCU("'title':'\xf0\x9f\x94\xa5 fire'"), 0, "" },
    /* incident: TEXT fields (tab, LF, CR only) */
    { INCU("'description':'~4000~'"), 0, "" },
    { INCU("'description':'~4001~'"), SS_ETOOLONG, "description" },
    { INCU("'description':''"), 0, "" },
    { INCU("'description':'bell\\u0007'"), SS_EINVAL, "description" },
    { INCU("'description':'esc\\u001b[31m'"), SS_EINVAL, "description" },
    { INCU("'description':'del\\u007f'"), SS_EINVAL, "description" },
    { INCU("'description':'\\f'"), SS_EINVAL, "description" },
    { INCU("'actions_taken':'a\\n\\tb\\r\\n'"), 0, "" },
    { INCU("'actions_taken':'~4001~'"), SS_ETOOLONG, "actions_taken" },
    { INCU("'actions_taken':'\\b'"), SS_EINVAL, "actions_taken" },
    /* incident: other STRING limits */
    { INCU("'reported_by':'~100~'"), 0, "" },
    { INCU("'reported_by':'~101~'"), SS_ETOOLONG, "reported_by" },
    { INCU("'location':'~200~'"), 0, "" },
    { INCU("'location':'~201~'"), SS_ETOOLONG, "location" },
    { INCU("'location':'a\\u0000b'"), 0, "" }, /* cJSON stops at \u0000: "a" */
    /* incident: TIME */
    { INCU("'occurred_at':'2026-12-04T16:03:33Z'"), 0, "" },
    { INCU("'occurred_at':'2026-12-04T16:03:33.123Z'"), 0, "" },
    { INCU("'occurred_at':'2000-01-01T00:00:00Z'"), 0, "" },
    { INCU("'occurred_at':'2199-12-31T23:59:59.999Z'"), 0, "" },
    { INCU("'occurred_at':'2024-02-29T12:00:00Z'"), 0, "" },
    { INCU("'occurred_at':'2000-02-29T12:00:00Z'"), 0, "" },
    { INCU("'occurred_at':'1999-12-31T23:59:59Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2200-01-01T00:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2023-02-29T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2100-02-29T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-04-31T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-13-01T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-00-01T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-01-00T12:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-01-01T24:00:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-01-01T23:60:00Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-12-31T23:59:60Z'"), SS_ERANGE, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04 16:03:33Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04t16:03:33z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:03:33'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:03:33.12Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:03:33.1234Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:03:33+00:00'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:03:33,123Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-1-04T16:03:33.123Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'+026-12-04T16:03:33Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':'2026-12-04T16:-3:33Z'"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':''"), SS_EINVAL, "occurred_at" },
    { INCU("'occurred_at':1796400213"), SS_EFIELDTYPE, "occurred_at" },
    { INCU("'occurred_at':null"), 0, "" },
    /* incident: keys */
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'a/b','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EID, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EID, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'Ext:Case_7.b-2','site':'s1',"
      "'op':'delete','fields':{}}",
      0, "" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'~96~','site':'s1','op':'delete',"
      "'fields':{}}",
      0, "" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'~97~','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_ETOOLONG, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'a b','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EID, "key" },
    /* top level: members, types, seq and hlc */
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{},'extra':1}",
      SS_EUNKNOWNFIELD, "extra" },
    { "{'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EMISSING, "seq" },
    { "{'seq':1,'collection':'incident','key':'k','site':'s1','op':'delete','fields':{}}",
      SS_EMISSING, "hlc" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'key':'k','site':'s1','op':'delete','fields':{}}", SS_EMISSING,
      "collection" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EMISSING, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','op':'delete','fields':{}}",
      SS_EMISSING, "site" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','fields':{}}",
      SS_EMISSING, "op" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete'}",
      SS_EMISSING, "fields" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':[]}",
      SS_EFIELDTYPE, "fields" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':null}",
      SS_EFIELDTYPE, "fields" },
    { "{'seq':0,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_ESEQ, "seq" },
    { "{'seq':-1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_ESEQ, "seq" },
    { "{'seq':9007199254740991,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1',"
      "'op':'delete','fields':{}}",
      0, "" },
    { "{'seq':9007199254740992,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1',"
      "'op':'delete','fields':{}}",
      SS_ESEQ, "seq" },
    { "{'seq':1.5,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "seq" },
    { "{'seq':'1','hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "seq" },
    { "{'seq':1,'hlc':'0000000000000000','collection':'incident','key':'k','site':'s1','op':"
      "'delete','fields':{}}",
      SS_ECLOCK, "hlc" },
    { "{'seq':1,'hlc':'0000018C2E5A7D10','collection':'incident','key':'k','site':'s1','op':"
      "'delete','fields':{}}",
      0, "" },
    { "{'seq':1,'hlc':'018c2e5a7d10','collection':'incident','key':'k','site':'s1','op':"
      "'delete','fields':{}}",
      SS_EINVAL, "hlc" },
    { "{'seq':1,'hlc':'0000018c2e5a7d1g','collection':'incident','key':'k','site':'s1','op':"
      "'delete','fields':{}}",
      SS_EINVAL, "hlc" },
    { "{'seq':1,'hlc':1234,'collection':'incident','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "hlc" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'alarms','key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EENUM, "collection" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':2,'key':'k','site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "collection" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':7,'site':'s1','op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "key" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':null,'op':'delete',"
      "'fields':{}}",
      SS_EFIELDTYPE, "site" },
    { "{'seq':1,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':3,"
      "'fields':{}}",
      SS_EFIELDTYPE, "op" },
    /* Duplicates that plain cJSON lets through. */
    { "{'seq':1,'seq':2,'hlc':" HLC_TEXT ",'collection':'incident','key':'k','site':'s1','op':"
      "'delete','fields':{}}",
      SS_EDUPKEY, "seq" },
    { INCU("'severity':3,'severity':4"), SS_EDUPKEY, "severity" },
    { INCU("'status':'open','status':'open','status':'open','status':'open','status':'open',"
           "'status':'open','status':'open','status':'open','status':'open','status':'open',"
           "'status':'open','status':'open','status':'open','status':'open','status':'open',"
           "'status':'open','status':'open'"),
      SS_ELIMIT, "fields" },
};

TEST(change_vectors)
{
    int failures = 0;

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const vec *v = &vectors[i];
        ss_change ch;
        ss_verr err;
        cJSON *tree;
        int rc = decode(v->json, &ch, &err, &tree);

        if (rc != v->code || err.code != v->code || strcmp(err.field, v->field) != 0) {
            fprintf(stderr,
                    "vector %zu: got %d (%s) field \"%s\" msg \"%s\"; want %d (%s) field \"%s\"\n"
                    "  %s\n",
                    i, rc, ss_err_name(rc), err.field, err.msg, v->code, ss_err_name(v->code),
                    v->field, v->json);
            failures++;
        } else if (v->code != 0 && (err.msg[0] == '\0' || !strstr(err.msg, v->field))) {
            /* The operator's message names the field as well. */
            fprintf(stderr, "vector %zu: message \"%s\" does not name \"%s\"\n", i, err.msg,
                    v->field);
            failures++;
        }
        cJSON_Delete(tree);
    }
    ASSERT_EQ(failures, 0);
}

TEST(decoded_change_contents)
{
    ss_change ch;
    ss_verr err;
    cJSON *tree;

    ASSERT_EQ(decode(INCC(",'status':null,'description':'a\\nb'"), &ch, &err, &tree), 0);
    ASSERT_EQ(err.code, 0);
    ASSERT_U64_EQ(ch.seq, 1);
    ASSERT_U64_EQ(ch.hlc, UINT64_C(0x0000018c2e5a7d10));
    ASSERT(ch.coll == ss_schema_collection("incident", 8));
    ASSERT_STR_EQ(ch.key, "gw1-0000018c2e5a7d10");
    ASSERT_STR_EQ(ch.site, "s1");
    ASSERT_EQ(ch.op, SS_OP_CREATE);
    ASSERT_EQ(ch.nfields, 5);
    ASSERT_STR_EQ(ch.fields[0].def->name, "category");
    ASSERT_EQ(ch.fields[0].v.len, 4);
    ASSERT_MEM_EQ(ch.fields[0].v.str, "fire", 4);
    ASSERT_STR_EQ(ch.fields[1].def->name, "severity");
    ASSERT_EQ(ch.fields[1].v.num, 3);
    ASSERT_EQ(ch.fields[1].v.is_null, 0);
    ASSERT_STR_EQ(ch.fields[3].def->name, "status");
    ASSERT_EQ(ch.fields[3].v.is_null, 1);
    ASSERT_EQ(ch.fields[4].v.len, 3);
    ASSERT_MEM_EQ(ch.fields[4].v.str, "a\nb", 3);
    cJSON_Delete(tree);

    /* A refused change is still filled as far as possible, so the daemon can
     * audit what it said. */
    ASSERT_EQ(decode(INCU("'status':'open','colour':'red','severity':9"), &ch, &err, &tree),
              SS_EUNKNOWNFIELD);
    ASSERT_STR_EQ(err.field, "colour");
    ASSERT_STR_EQ(ch.key, "gw1-0000018c2e5a7d10");
    ASSERT_STR_EQ(ch.site, "s1");
    ASSERT_EQ(ch.op, SS_OP_UPDATE);
    ASSERT_EQ(ch.nfields, 2);
    cJSON_Delete(tree);

    /* Not an object at all. */
    tree = cJSON_Parse("[1,2]");
    ASSERT_EQ(ss__change_from_json(tree, &ch, &err), SS_EFIELDTYPE);
    cJSON_Delete(tree);
    ASSERT_EQ(ss__change_from_json(NULL, &ch, NULL), SS_EFIELDTYPE);
}

TEST(unknown_names_are_sanitised_in_errors)
{
    ss_change ch;
    ss_verr err;
    cJSON *tree;

    /* A peer-chosen name with an escape sequence and a long tail. */
    ASSERT_EQ(
        decode(INCU("'\\u001b[2Jevil_field_name_that_goes_on_and_on_and_on':1"), &ch, &err, &tree),
        SS_EUNKNOWNFIELD);
    ASSERT_EQ(strlen(err.field), SS_FIELD_NAME_MAX);
    ASSERT_EQ(err.field[0], '?');
    for (const char *p = err.msg; *p; p++)
        ASSERT((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    cJSON_Delete(tree);
}

/* ---- The table itself. */

TEST(schema_table_shape)
{
    int n = 0;
    const ss_collection_def *cs = ss_schema_collections(&n);

    ASSERT_EQ(n, 2);
    ASSERT_STR_EQ(cs[0].name, "site_status");
    ASSERT_EQ(cs[0].id, SS_COLL_SITE_STATUS);
    ASSERT_EQ(cs[0].key_is_site, 1);
    ASSERT_EQ(cs[0].nfields, 8);
    ASSERT_STR_EQ(cs[1].name, "incident");
    ASSERT_EQ(cs[1].id, SS_COLL_INCIDENT);
    ASSERT_EQ(cs[1].key_is_site, 0);
    ASSERT_EQ(cs[1].nfields, 9);
    for (int c = 0; c < n; c++) {
        ASSERT_LE(cs[c].nfields, SS_SCHEMA_MAX_FIELDS);
        for (int i = 0; i < cs[c].nfields; i++) {
            const ss_field_def *f = &cs[c].fields[i];
            ASSERT(f->name && f->name[0]);
            ASSERT_LE(strlen(f->name), SS_FIELD_NAME_MAX);
            ASSERT(f->help && f->help[0]);
            ASSERT_LE(f->min, f->max);
            ASSERT((f->type == SS_FT_ENUM) == (f->enums != NULL));
            if (f->enums)
                ASSERT(f->enums[0] != NULL);
            ASSERT(ss_schema_field(&cs[c], f->name, strlen(f->name)) == f);
            for (int j = 0; j < i; j++)
                ASSERT(strcmp(cs[c].fields[j].name, f->name) != 0);
        }
    }
    /* Required fields: none in site_status; category, severity, title. */
    for (int i = 0; i < cs[0].nfields; i++)
        ASSERT_EQ(cs[0].fields[i].required, 0);
    ASSERT_EQ(ss_schema_field(&cs[1], "category", 8)->required, 1);
    ASSERT_EQ(ss_schema_field(&cs[1], "severity", 8)->required, 1);
    ASSERT_EQ(ss_schema_field(&cs[1], "title", 5)->required, 1);
    ASSERT_EQ(ss_schema_field(&cs[1], "status", 6)->required, 0);

    ASSERT(ss_schema_collection("incident", 8) == &cs[1]);
    ASSERT(ss_schema_collection("incidents", 8) == &cs[1]); /* length-delimited */
    ASSERT(ss_schema_collection("incident", 7) == NULL);
    ASSERT(ss_schema_collection("INCIDENT", 8) == NULL);
    ASSERT(ss_schema_collection(NULL, 0) == NULL);
    ASSERT(ss_schema_field(&cs[0], "severity", 8) == NULL);
    ASSERT(ss_schema_field(NULL, "severity", 8) == NULL);
    ASSERT(ss_schema_field(&cs[1], "title", 4) == NULL);
}

/* Every enum value of every field is accepted; a near miss is not. */
TEST(every_enum_value)
{
    int n = 0;
    const ss_collection_def *cs = ss_schema_collections(&n);

    for (int c = 0; c < n; c++) {
        for (int i = 0; i < cs[c].nfields; i++) {
            const ss_field_def *f = &cs[c].fields[i];
            if (f->type != SS_FT_ENUM)
                continue;
            for (int k = 0; f->enums[k]; k++) {
                ss_change ch;
                ss_verr err;
                char upper[32];
                memset(&ch, 0, sizeof(ch));
                ch.seq = 1;
                ch.hlc = 1;
                ch.coll = &cs[c];
                ch.op = SS_OP_UPDATE;
                snprintf(ch.site, sizeof(ch.site), "s1");
                snprintf(ch.key, sizeof(ch.key), "s1");
                ASSERT_EQ(ss_change_set_text(&ch, f->name, f->enums[k], &err), 0);
                ASSERT_EQ(ss_change_validate(&ch, &err), 0);
                snprintf(upper, sizeof(upper), "%s", f->enums[k]);
                upper[0] = (char)(upper[0] - 'a' + 'A');
                ch.fields[0].v.str = upper;
                ASSERT_EQ(ss_change_validate(&ch, &err), SS_EENUM);
                ASSERT_STR_EQ(err.field, f->name);
            }
        }
    }
}

/* ---- Validation of hand-built changes (what the gateway submits). */

static void base_change(ss_change *ch, const char *coll)
{
    memset(ch, 0, sizeof(*ch));
    ch->seq = 42;
    ch->hlc = ss_hlc_make(1796400213123u, 2);
    ch->coll = ss_schema_collection(coll, strlen(coll));
    ch->op = SS_OP_UPDATE;
    snprintf(ch->site, sizeof(ch->site), "plant-1");
    snprintf(ch->key, sizeof(ch->key), "%s", strcmp(coll, "site_status") == 0 ? "plant-1" : "k1");
}

TEST(validate_structural_faults)
{
    ss_change ch;
    ss_verr err;
    ss_collection_def copy;

    base_change(&ch, "incident");
    ASSERT_EQ(ss_change_set_text(&ch, "status", "open", &err), 0);
    ASSERT_EQ(ss_change_validate(&ch, &err), 0);
    ASSERT_EQ(ss_change_validate(&ch, NULL), 0);

    ch.seq = 0;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ESEQ);
    ASSERT_STR_EQ(err.field, "seq");
    ch.seq = SS_SEQ_MAX + 1;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ESEQ);
    ch.seq = SS_SEQ_MAX;
    ASSERT_EQ(ss_change_validate(&ch, &err), 0);

    ch.hlc = 0;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ECLOCK);
    ASSERT_STR_EQ(err.field, "hlc");
    ch.hlc = 1;

    ch.op = (ss_op)0;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EINVAL);
    ASSERT_STR_EQ(err.field, "op");
    ch.op = (ss_op)4;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EINVAL);
    ch.op = SS_OP_UPDATE;

    /* A definition that is not the schema's own. */
    copy = *ch.coll;
    ch.coll = &copy;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EINVAL);
    ASSERT_STR_EQ(err.field, "collection");
    ch.coll = NULL;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EMISSING);
    ASSERT_STR_EQ(err.field, "collection");
    ch.coll = ss_schema_collection("incident", 8);

    /* A field definition from the other collection, or none. */
    ch.fields[0].def = ss_schema_field(ss_schema_collection("site_status", 11), "cctv", 4);
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EUNKNOWNFIELD);
    ASSERT_STR_EQ(err.field, "cctv");
    ch.fields[0].def = NULL;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EUNKNOWNFIELD);
    ch.fields[0].def = ss_schema_field(ch.coll, "status", 6);

    ch.nfields = SS_SCHEMA_MAX_FIELDS + 1;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ELIMIT);
    ch.nfields = -1;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ELIMIT);
    ch.nfields = 1;

    /* Key and site buffers without a terminating NUL. */
    memset(ch.key, 'k', sizeof(ch.key));
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EID);
    ASSERT_STR_EQ(err.field, "key");
    snprintf(ch.key, sizeof(ch.key), "k1");
    memset(ch.site, 's', sizeof(ch.site));
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EID);
    ASSERT_STR_EQ(err.field, "site");
    snprintf(ch.site, sizeof(ch.site), "plant-1");
    ASSERT_EQ(ss_change_validate(&ch, &err), 0);

    /* Text values are length-delimited: a NUL inside is caught. */
    ch.fields[0].def = ss_schema_field(ch.coll, "location", 8);
    ch.fields[0].v.str = "gate\0 3";
    ch.fields[0].v.len = 7;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_ENUL);
    ASSERT_STR_EQ(err.field, "location");
    ch.fields[0].v.str = NULL;
    ch.fields[0].v.len = 3;
    ASSERT_EQ(ss_change_validate(&ch, &err), SS_EINVAL);
    ch.fields[0].v.len = 0;
    ASSERT_EQ(ss_change_validate(&ch, &err), 0);

    ASSERT_EQ(ss_change_validate(NULL, &err), SS_EINVAL);
}

TEST(verr_set)
{
    ss_verr err;
    char longname[64];

    ASSERT_EQ(ss_verr_set(NULL, SS_EID, "x", "msg %d", 1), SS_EID);
    ASSERT_EQ(ss_verr_set(&err, SS_ERANGE, "severity", "severity: %d outside %s", 9, "1..5"),
              SS_ERANGE);
    ASSERT_EQ(err.code, SS_ERANGE);
    ASSERT_STR_EQ(err.field, "severity");
    ASSERT_STR_EQ(err.msg, "severity: 9 outside 1..5");
    ASSERT_EQ(ss_verr_set(&err, SS_EINVAL, NULL, "m"), SS_EINVAL);
    ASSERT_STR_EQ(err.field, "");
    memset(longname, 'f', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ss_verr_set(&err, SS_EUNKNOWNFIELD, longname, "%s", "x");
    ASSERT_EQ(strlen(err.field), SS_FIELD_NAME_MAX);
    ss_verr_set(&err, SS_EUNKNOWNFIELD, "a\nb\xc3\xa9", "%s", "x");
    ASSERT_STR_EQ(err.field, "a?b??");
}

/* ---- CLI text input. */

TEST(set_text)
{
    ss_change ch;
    ss_verr err;

    base_change(&ch, "incident");
    ch.op = SS_OP_CREATE;
    ASSERT_EQ(ss_change_set_text(&ch, "category", "cyber", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "severity", "4", &err), 0);
    ASSERT_EQ(ch.fields[1].v.num, 4);
    ASSERT_EQ(ss_change_set_text(&ch, "title", "Phishing at the control room", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "status", "null", &err), 0);
    ASSERT_EQ(ch.fields[3].v.is_null, 1);
    ASSERT_EQ(ss_change_set_text(&ch, "occurred_at", "2026-12-04T10:00:00Z", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "description", "line 1\nline 2", &err), 0);
    ASSERT_EQ(ch.nfields, 6);
    ASSERT_EQ(ss_change_validate(&ch, &err), 0);

    static const struct {
        const char *field, *value;
        int code;
    } bad[] = {
        { "severity", "4x", SS_EFIELDTYPE },
        { "severity", "", SS_EFIELDTYPE },
        { "severity", " 4", SS_EFIELDTYPE },
        { "severity", "4 ", SS_EFIELDTYPE },
        { "severity", "0x4", SS_EFIELDTYPE },
        { "severity", "4.0", SS_EFIELDTYPE },
        { "severity", "-", SS_EFIELDTYPE },
        { "severity", "six", SS_EFIELDTYPE },
        { "severity", "6", SS_ERANGE },
        { "severity", "0", SS_ERANGE },
        { "severity", "-9223372036854775808", SS_ERANGE },
        { "severity", "99999999999999999999", SS_ERANGE },
        { "severity", "null", SS_EMISSING },
        { "title", "null", SS_EMISSING },
        { "title", "", SS_EMISSING },
        { "title", "a\tb", SS_EINVAL },
        { "category", "arson", SS_EENUM },
        { "occurred_at", "yesterday", SS_EINVAL },
        { "occurred_at", "2026-02-30T00:00:00Z", SS_ERANGE },
        { "location", "\xe2\x28\xa1", SS_EUTF8 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        base_change(&ch, "incident");
        memset(&err, 0, sizeof(err));
        int rc = ss_change_set_text(&ch, bad[i].field, bad[i].value, &err);
        if (rc != bad[i].code || err.code != rc || strcmp(err.field, bad[i].field) != 0)
            SS_TEST_FAIL("%s=%s: got %d field \"%s\" (%s), want %d", bad[i].field, bad[i].value, rc,
                         err.field, err.msg, bad[i].code);
        ASSERT(strstr(err.msg, bad[i].field) != NULL);
        ASSERT_EQ(ch.nfields, 0); /* nothing half-set */
    }

    /* Positive forms strtoll accepts and we keep. */
    base_change(&ch, "site_status");
    ASSERT_EQ(ss_change_set_text(&ch, "personnel_on_site", "+12", &err), 0);
    ASSERT_EQ(ch.fields[0].v.num, 12);

    /* Unknown field, twice, wrong collection, no collection. */
    base_change(&ch, "site_status");
    ASSERT_EQ(ss_change_set_text(&ch, "severity", "3", &err), SS_EUNKNOWNFIELD);
    ASSERT_STR_EQ(err.field, "severity");
    ASSERT(strstr(err.msg, "severity") != NULL);
    ASSERT_EQ(ss_change_set_text(&ch, "cctv", "online", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "cctv", "offline", &err), SS_EDUPKEY);
    ASSERT_STR_EQ(err.field, "cctv");
    ASSERT_EQ(ch.nfields, 1);
    ASSERT_EQ(ss_change_set_text(&ch, "note", NULL, &err), SS_EINVAL);
    ASSERT_STR_EQ(err.field, "note");
    ASSERT_EQ(ss_change_set_text(&ch, NULL, "x", &err), SS_EINVAL);
    ch.coll = NULL;
    ASSERT_EQ(ss_change_set_text(&ch, "cctv", "online", &err), SS_EINVAL);
    ASSERT_EQ(ss_change_set_text(NULL, "cctv", "online", NULL), SS_EINVAL);
}

/* ---- Keys and ops. */

TEST(keys)
{
    char key[SS_KEY_MAX + 1], key2[SS_KEY_MAX + 1], node[SS_ID_MAX + 1];

    ASSERT_EQ(ss_incident_key(key, sizeof(key), "gw1", UINT64_C(0x0000018c2e5a7d10)), 20);
    ASSERT_STR_EQ(key, "gw1-0000018c2e5a7d10");
    ASSERT_EQ(ss_key_check(key, strlen(key)), 0);
    /* Ordered in time for one node. */
    ASSERT_EQ(ss_incident_key(key2, sizeof(key2), "gw1", UINT64_C(0x0000018c2e5a7d11)), 20);
    ASSERT_LT(strcmp(key, key2), 0);
    ASSERT_EQ(ss_incident_key(key2, sizeof(key2), "gw1", UINT64_C(0x0000018d00000000)), 20);
    ASSERT_LT(strcmp(key, key2), 0);
    /* The longest node id still makes a valid key. */
    memset(node, 'n', SS_ID_MAX);
    node[SS_ID_MAX] = '\0';
    ASSERT_EQ(ss_incident_key(key, sizeof(key), node, 5), SS_ID_MAX + 17);
    ASSERT_EQ(ss_key_check(key, strlen(key)), 0);
    ASSERT_EQ(ss_incident_key(key, SS_ID_MAX + 17, node, 5), SS_ENOSPC);
    ASSERT_EQ(ss_incident_key(key, sizeof(key), "GW1", 5), SS_EID);
    ASSERT_EQ(ss_incident_key(key, sizeof(key), "", 5), SS_EID);
    ASSERT_EQ(ss_incident_key(key, sizeof(key), NULL, 5), SS_EID);

    static const char *const good[] = { "a", "A", "Z-9", "x:y", "a.b_c-d:E", "0" };
    static const char *const bad[] = { "",    "a b",       "a/b",  "a\\b", "a'b", "a\"b",
                                       "a;b", "a\xc3\xa9", "a\tb", "a%b",  "a#b", "a,b" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ASSERT_EQ(ss_key_check(good[i], strlen(good[i])), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ss_key_check(bad[i], strlen(bad[i])) != SS_EID)
            SS_TEST_FAIL("key \"%s\" accepted", bad[i]);
    }
    memset(key, 'K', sizeof(key));
    ASSERT_EQ(ss_key_check(key, SS_KEY_MAX), 0);
    ASSERT_EQ(ss_key_check(key, SS_KEY_MAX + 1), SS_EID);
    ASSERT_EQ(ss_key_check("ab\0c", 4), SS_EID);
    ASSERT_EQ(ss_key_check(NULL, 1), SS_EID);
}

TEST(ops)
{
    ASSERT_STR_EQ(ss_op_name(SS_OP_CREATE), "create");
    ASSERT_STR_EQ(ss_op_name(SS_OP_UPDATE), "update");
    ASSERT_STR_EQ(ss_op_name(SS_OP_DELETE), "delete");
    ASSERT_STR_EQ(ss_op_name((ss_op)0), "invalid");
    ASSERT_STR_EQ(ss_op_name((ss_op)7), "invalid");
    ASSERT_EQ(ss_op_parse("create", 6), SS_OP_CREATE);
    ASSERT_EQ(ss_op_parse("update", 6), SS_OP_UPDATE);
    ASSERT_EQ(ss_op_parse("delete", 6), SS_OP_DELETE);
    ASSERT_EQ(ss_op_parse("deleted", 7), SS_EINVAL);
    ASSERT_EQ(ss_op_parse("delete", 5), SS_EINVAL);
    ASSERT_EQ(ss_op_parse("DELETE", 6), SS_EINVAL);
    ASSERT_EQ(ss_op_parse("", 0), SS_EINVAL);
    ASSERT_EQ(ss_op_parse(NULL, 0), SS_EINVAL);
}

/* ---- Encoding. */

TEST(encode_exact_form)
{
    ss_change ch;
    ss_verr err;
    char out[512];
    const char *want = "{\"seq\":42,\"hlc\":\"0000018c2e5a7d10\",\"collection\":\"incident\","
                       "\"key\":\"k1\",\"site\":\"plant-1\",\"op\":\"create\",\"fields\":{"
                       "\"category\":\"fire\",\"severity\":3,\"title\":\"Smoke \\\"A\\\" \\\\ "
                       "caf\xc3\xa9\",\"description\":\"a\\nb\\tc\\r\",\"status\":null}}";

    base_change(&ch, "incident");
    ch.hlc = UINT64_C(0x0000018c2e5a7d10);
    ch.op = SS_OP_CREATE;
    ASSERT_EQ(ss_change_set_text(&ch, "category", "fire", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "severity", "3", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "title", "Smoke \"A\" \\ caf\xc3\xa9", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "description", "a\nb\tc\r", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "status", "null", &err), 0);
    ASSERT_EQ(ss_change_encode(&ch, out, sizeof(out)), (int)strlen(want));
    ASSERT_STR_EQ(out, want);

    /* Every shorter buffer is refused, and the output stays a C string. */
    int len = (int)strlen(want);
    for (int cap = 0; cap <= len; cap++) {
        char small[512];
        memset(small, 'Z', sizeof(small));
        ASSERT_EQ(ss_change_encode(&ch, small, (size_t)cap), SS_ENOSPC);
        if (cap > 0)
            ASSERT(memchr(small, '\0', (size_t)cap) != NULL);
        ASSERT_EQ(small[cap], 'Z'); /* nothing written past cap */
    }
    ASSERT_EQ(ss_change_encode(&ch, out, (size_t)len + 1), len);

    /* Delete: empty fields object. */
    base_change(&ch, "site_status");
    ch.op = SS_OP_DELETE;
    ch.seq = 9007199254740991u;
    ch.hlc = UINT64_MAX;
    ASSERT(ss_change_encode(&ch, out, sizeof(out)) > 0);
    ASSERT_STR_EQ(out, "{\"seq\":9007199254740991,\"hlc\":\"ffffffffffffffff\",\"collection\":"
                       "\"site_status\",\"key\":\"plant-1\",\"site\":\"plant-1\",\"op\":"
                       "\"delete\",\"fields\":{}}");

    /* Structural nonsense is refused rather than encoded. */
    ch.coll = NULL;
    ASSERT_EQ(ss_change_encode(&ch, out, sizeof(out)), SS_EINVAL);
    base_change(&ch, "site_status");
    ch.op = (ss_op)0;
    ASSERT_EQ(ss_change_encode(&ch, out, sizeof(out)), SS_EINVAL);
    ASSERT_EQ(ss_change_encode(NULL, out, sizeof(out)), SS_EINVAL);
}

TEST(encode_escapes_control_characters)
{
    ss_change ch;
    char out[256];
    int n;

    /* encode does not validate: even a refused value must come out as valid
     * JSON that reads back to the same bytes. */
    base_change(&ch, "site_status");
    ch.nfields = 1;
    ch.fields[0].def = ss_schema_field(ch.coll, "note", 4);
    ch.fields[0].v.str = "\x01\x1f\x7f\b\f";
    ch.fields[0].v.len = 5;
    n = ss_change_encode(&ch, out, sizeof(out));
    ASSERT(n > 0);
    ASSERT(strstr(out, "\"note\":\"\\u0001\\u001f") != NULL);
    for (int i = 0; i < n; i++)
        ASSERT((unsigned char)out[i] >= 0x20);
    cJSON *tree = cJSON_Parse(out);
    ASSERT(tree != NULL);
    const cJSON *note =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tree, "fields"), "note");
    ASSERT(cJSON_IsString(note));
    ASSERT_STR_EQ(note->valuestring, "\x01\x1f\x7f\b\f");
    cJSON_Delete(tree);
}

static void assert_same_change(const ss_change *a, const ss_change *b)
{
    ASSERT_U64_EQ(a->seq, b->seq);
    ASSERT_U64_EQ(a->hlc, b->hlc);
    ASSERT(a->coll == b->coll);
    ASSERT_STR_EQ(a->key, b->key);
    ASSERT_STR_EQ(a->site, b->site);
    ASSERT_EQ(a->op, b->op);
    ASSERT_EQ(a->nfields, b->nfields);
    for (int i = 0; i < a->nfields; i++) {
        ASSERT(a->fields[i].def == b->fields[i].def);
        ASSERT_EQ(a->fields[i].v.is_null, b->fields[i].v.is_null);
        if (a->fields[i].v.is_null)
            continue;
        if (a->fields[i].def->type == SS_FT_INT) {
            ASSERT_EQ(a->fields[i].v.num, b->fields[i].v.num);
        } else {
            ASSERT_EQ(a->fields[i].v.len, b->fields[i].v.len);
            ASSERT_MEM_EQ(a->fields[i].v.str, b->fields[i].v.str, a->fields[i].v.len);
        }
    }
}

/* Encodes, parses back through the strict intake (ss_json_parse), decodes and
 * validates, and compares with the original. */
static void round_trip(const ss_change *ch)
{
    static char out[1 << 16];
    ss_change back;
    ss_verr err;
    cJSON *tree = NULL;
    int n;

    ASSERT_EQ(ss_change_validate(ch, &err), 0);
    n = ss_change_encode(ch, out, sizeof(out));
    ASSERT(n > 0);
    ASSERT_EQ(ss_json_parse((const uint8_t *)out, (size_t)n, SS_JSON_MAX_DEPTH, &tree, &err), 0);
    if (ss__change_from_json(tree, &back, &err) != 0)
        SS_TEST_FAIL("round trip refused: %s (%s) %s\n%s", ss_err_name(err.code), err.field,
                     err.msg, out);
    assert_same_change(ch, &back);
    cJSON_Delete(tree);
}

TEST(encode_parse_validate_round_trip)
{
    static char big[4001];
    ss_change ch;
    ss_verr err;

    base_change(&ch, "incident");
    ch.op = SS_OP_CREATE;
    ASSERT_EQ(ss_change_set_text(&ch, "category", "tampering", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "severity", "5", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "status", "acknowledged", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "title", "Seal \"B-7\" broken \\ \xf0\x9f\x94\x93", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "description", "Found at 06:10.\r\n\tCamera 4 dark.", &err),
              0);
    ASSERT_EQ(ss_change_set_text(&ch, "occurred_at", "2026-12-04T06:10:00.250Z", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "reported_by", "O\u2019Brien </script>", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "location", "null", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "actions_taken", "", &err), 0);
    round_trip(&ch);

    /* Limits, round-tripped: the longest TEXT. */
    base_change(&ch, "incident");
    memset(big, 'q', sizeof(big) - 1);
    for (size_t i = 0; i + 1 < sizeof(big); i += 50)
        big[i] = '\n';
    ASSERT_EQ(ss_change_set_text(&ch, "description", big, &err), 0);
    round_trip(&ch);

    base_change(&ch, "site_status");
    ch.op = SS_OP_CREATE;
    ASSERT_EQ(ss_change_set_text(&ch, "alert_level", "critical", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "power", "backup", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "perimeter", "alarm", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "access_control", "offline", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "cctv", "degraded", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "comms", "backup_link", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "personnel_on_site", "100000", &err), 0);
    ASSERT_EQ(ss_change_set_text(&ch, "note", "Diesel for 36 h", &err), 0);
    round_trip(&ch);

    base_change(&ch, "site_status");
    ch.op = SS_OP_DELETE;
    ch.seq = SS_SEQ_MAX;
    ch.hlc = UINT64_MAX;
    round_trip(&ch);
}

#define SCHEMA_TESTS                                     \
    SS_TEST_ENTRY(change_vectors)                        \
    SS_TEST_ENTRY(decoded_change_contents)               \
    SS_TEST_ENTRY(unknown_names_are_sanitised_in_errors) \
    SS_TEST_ENTRY(schema_table_shape)                    \
    SS_TEST_ENTRY(every_enum_value)                      \
    SS_TEST_ENTRY(validate_structural_faults)            \
    SS_TEST_ENTRY(verr_set)                              \
    SS_TEST_ENTRY(set_text)                              \
    SS_TEST_ENTRY(keys)                                  \
    SS_TEST_ENTRY(ops)                                   \
    SS_TEST_ENTRY(encode_exact_form)                     \
    SS_TEST_ENTRY(encode_escapes_control_characters)     \
    SS_TEST_ENTRY(encode_parse_validate_round_trip)

SS_TEST_MAIN(SCHEMA_TESTS)
