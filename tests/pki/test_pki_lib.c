/* test_pki_lib.c - unit tests of the pki library called directly: text
 * forms (serials, times, reasons), atomic files, serial randomness, and the
 * operations' error codes and results without going through the CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>

#include "internal.h"
#include "pki/pki.h"
#include "proto/err.h"
#include "ss_test.h"

/* A fresh directory under TMPDIR; removed by rm_tree. */
static void make_tmp(char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(buf, cap, "%s/pki_lib_test.XXXXXX", base && *base ? base : "/tmp");

    ASSERT(n > 0 && (size_t)n < cap);
    ASSERT(mkdtemp(buf) != NULL);
}

static void rm_tree(const char *dir)
{
    char cmd[PATH_MAX + 16];

    /* mkdtemp names hold no shell metacharacters. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

static void join(char *buf, size_t cap, const char *dir, const char *rel)
{
    int n = snprintf(buf, cap, "%s/%s", dir, rel);
    ASSERT(n > 0 && (size_t)n < cap);
}

TEST(reason_names_round_trip)
{
    static const int codes[] = { 0, 1, 2, 3, 4, 5, 9 };

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        ASSERT_EQ(pki_reason_parse(pki_reason_name(codes[i])), codes[i]);
    ASSERT_EQ(pki_reason_parse("KEY-COMPROMISE"), PKI_REASON_KEY_COMPROMISE);
    ASSERT_EQ(pki_reason_parse("cessationofoperation"), PKI_REASON_CESSATION_OF_OPERATION);
    ASSERT_EQ(pki_reason_parse("certificateHold"), SS_EINVAL); /* not permanent: refused */
    ASSERT_EQ(pki_reason_parse(""), SS_EINVAL);
    ASSERT_EQ(pki_reason_parse(NULL), SS_EINVAL);
}

TEST(serial_normalize)
{
    char out[PKI_SERIAL_HEX_MAX + 1];

    ASSERT_EQ(pki__serial_normalize("0x0a:bc", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "0ABC");
    ASSERT_EQ(pki__serial_normalize("00ff", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "FF");
    ASSERT_EQ(pki__serial_normalize("7F:01:02", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "7F0102");
    ASSERT_EQ(pki__serial_normalize("", out, sizeof(out)), SS_EINVAL);
    ASSERT_EQ(pki__serial_normalize("0x", out, sizeof(out)), SS_EINVAL);
    ASSERT_EQ(pki__serial_normalize("12g4", out, sizeof(out)), SS_EINVAL);
    ASSERT_EQ(pki__serial_normalize("-12", out, sizeof(out)), SS_EINVAL);
    ASSERT_EQ(pki__serial_normalize(NULL, out, sizeof(out)), SS_EINVAL);
}

TEST(utc_time_text)
{
    static const struct {
        int64_t t;
        const char *s;
    } v[] = {
        { 0, "1970-01-01T00:00:00Z" },          { 951782400, "2000-02-29T00:00:00Z" },
        { 951868799, "2000-02-29T23:59:59Z" },  { 1709164800, "2024-02-29T00:00:00Z" },
        { 4102444800, "2100-01-01T00:00:00Z" }, { 253402300799, "9999-12-31T23:59:59Z" },
    };
    char buf[32];
    int64_t t;
    ASN1_TIME *at;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        pki__fmt_time(v[i].t, buf, sizeof(buf));
        ASSERT_STR_EQ(buf, v[i].s);
        ASSERT_EQ(pki__parse_time(v[i].s, &t), 0);
        ASSERT_EQ(t, v[i].t);
        /* Same value through an ASN1_TIME, as certificates carry it. */
        at = ASN1_TIME_set(NULL, (time_t)v[i].t);
        ASSERT(at != NULL);
        ASSERT_EQ(pki__asn1_time_to_epoch(at, &t), 0);
        ASSERT_EQ(t, v[i].t);
        ASN1_TIME_free(at);
    }
    ASSERT_EQ(pki__parse_time("2024-02-29 00:00:00Z", &t), SS_EINVAL);
    ASSERT_EQ(pki__parse_time("2024-13-01T00:00:00Z", &t), SS_EINVAL);
    ASSERT_EQ(pki__parse_time("2024-02-29T00:00:00", &t), SS_EINVAL);
    ASSERT_EQ(pki__parse_time("", &t), SS_EINVAL);
}

TEST(parse_int_strict)
{
    long v;

    ASSERT_EQ(pki__parse_int("30", 1, 3650, &v), 0);
    ASSERT_EQ(v, 30);
    ASSERT_EQ(pki__parse_int("0", 1, 3650, &v), SS_ERANGE);
    ASSERT_EQ(pki__parse_int("3651", 1, 3650, &v), SS_ERANGE);
    ASSERT_EQ(pki__parse_int("12x", 1, 3650, &v), SS_EINVAL);
    ASSERT_EQ(pki__parse_int(" 12", 1, 3650, &v), SS_EINVAL);
    ASSERT_EQ(pki__parse_int("", 1, 3650, &v), SS_EINVAL);
    ASSERT_EQ(pki__parse_int("99999999999999999999999", 1, 3650, &v), SS_ERANGE);
}

TEST(random_serials_positive_128_bit_unique)
{
    enum { N = 500 };
    char seen[N][PKI_SERIAL_HEX_MAX + 1];
    char err[256];

    for (int i = 0; i < N; i++) {
        ASN1_INTEGER *s = NULL;
        BIGNUM *bn;
        ASSERT_EQ(pki__random_serial(&s, err, sizeof(err)), 0);
        bn = ASN1_INTEGER_to_BN(s, NULL);
        ASSERT(bn != NULL);
        ASSERT(!BN_is_negative(bn));
        ASSERT(!BN_is_zero(bn));
        ASSERT_LE(BN_num_bits(bn), 127);
        ASSERT_EQ(pki__serial_hex(s, seen[i], sizeof(seen[i])), 0);
        for (int j = 0; j < i; j++)
            ASSERT(strcmp(seen[i], seen[j]) != 0);
        BN_free(bn);
        ASN1_INTEGER_free(s);
    }
}

TEST(staged_file_noreplace_and_modes)
{
    char dir[256], path[PATH_MAX], err[512];
    char *data = NULL;
    size_t len = 0;
    mode_t mode = 0;
    pki__staged st;
    struct stat sb;

    make_tmp(dir, sizeof(dir));
    join(path, sizeof(path), dir, "secret.key");
    ASSERT_EQ(pki__stage(&st, path, "k1", 2, 0600, 1, err, sizeof(err)), 0);
    ASSERT(!pki__exists(path)); /* nothing visible before commit */
    ASSERT_EQ(stat(st.tmp, &sb), 0);
    ASSERT_EQ(sb.st_mode & 0777, 0600);
    ASSERT_EQ(pki__commit(&st, err, sizeof(err)), 0);
    ASSERT(!pki__exists(st.tmp));
    ASSERT_EQ(pki__read_file(path, 100, &data, &len, &mode, err, sizeof(err)), 0);
    ASSERT_EQ(len, 2);
    ASSERT_STR_EQ(data, "k1");
    ASSERT_EQ(mode & 0777, 0600);
    free(data);

    /* noreplace: the existing file survives, the temporary goes away. */
    ASSERT_EQ(pki__stage(&st, path, "k2", 2, 0600, 1, err, sizeof(err)), 0);
    ASSERT_EQ(pki__commit(&st, err, sizeof(err)), SS_EEXIST);
    ASSERT(strstr(err, "already exists") != NULL);
    pki__unstage(&st, 1);
    ASSERT(!pki__exists(st.tmp));
    ASSERT_EQ(pki__read_file(path, 100, &data, &len, NULL, err, sizeof(err)), 0);
    ASSERT_STR_EQ(data, "k1");
    free(data);

    /* replace: rename over it, and the wider mode is applied. */
    ASSERT_EQ(pki__stage(&st, path, "k3", 2, 0644, 0, err, sizeof(err)), 0);
    ASSERT_EQ(pki__commit(&st, err, sizeof(err)), 0);
    ASSERT_EQ(pki__read_file(path, 100, &data, &len, &mode, err, sizeof(err)), 0);
    ASSERT_STR_EQ(data, "k3");
    ASSERT_EQ(mode & 0777, 0644);
    free(data);

    /* Too large, missing, a directory: errors, not crashes. */
    ASSERT_EQ(pki__read_file(path, 1, &data, &len, NULL, err, sizeof(err)), SS_EOVERSIZE);
    ASSERT_EQ(pki__read_file(dir, 100, &data, &len, NULL, err, sizeof(err)), SS_EINVAL);
    join(path, sizeof(path), dir, "missing");
    ASSERT_EQ(pki__read_file(path, 100, &data, &len, NULL, err, sizeof(err)), SS_ENOENT);
    ASSERT(data == NULL);
    /* A directory that does not exist: staging fails cleanly. */
    join(path, sizeof(path), dir, "no/such/file");
    ASSERT_EQ(pki__stage(&st, path, "x", 1, 0644, 0, err, sizeof(err)), SS_ENOENT);
    rm_tree(dir);
}

static int issue(const char *ca, ss_role role, const char *node, const char *const *sites,
                 int nsites, const char *out, pki_issued *res, char *err, size_t cap)
{
    pki_issue_opts o;

    memset(&o, 0, sizeof(o));
    o.dir = ca;
    o.role = role;
    o.node = node;
    o.sites = sites;
    o.nsites = nsites;
    o.out_prefix = out;
    return pki_issue(&o, res, err, cap);
}

TEST(library_issue_show_revoke_list)
{
    static const char *const sites[] = { "mine-a", "sub.7" };
    char dir[256], ca[PATH_MAX], out[PATH_MAX], crt[PATH_MAX], err[1024];
    pki_init_opts io = { NULL, "Unit CA", 0, NULL };
    pki_revoke_opts ro;
    pki_issued res;
    pki_cert_info *info = malloc(sizeof(*info));
    FILE *devnull = fopen("/dev/null", "w");

    ASSERT(info != NULL && devnull != NULL);
    make_tmp(dir, sizeof(dir));
    join(ca, sizeof(ca), dir, "ca");
    io.dir = ca;
    ASSERT_EQ(pki_init(&io, err, sizeof(err)), 0);
    ASSERT_EQ(pki_init(&io, err, sizeof(err)), SS_EEXIST);
    ASSERT(strstr(err, "already exists") != NULL);
    ASSERT_EQ(pki_list(ca, 0, devnull, err, sizeof(err)), 0);

    join(out, sizeof(out), dir, "gw");
    ASSERT_EQ(issue(ca, SS_ROLE_GATEWAY, "gw-1", sites, 2, out, &res, err, sizeof(err)), 0);
    ASSERT_EQ(strlen(res.fingerprint), PKI_FPR_HEX_LEN);
    join(crt, sizeof(crt), dir, "gw.crt");
    ASSERT_EQ(pki_cert_info_load(crt, info, err, sizeof(err)), 0);
    ASSERT_EQ(info->ident_rc, 0);
    ASSERT_STR_EQ(info->ident.node, "gw-1");
    ASSERT_EQ(info->ident.role, SS_ROLE_GATEWAY);
    ASSERT_EQ(info->ident.nsites, 2);
    ASSERT_STR_EQ(info->ident.sites[0], "mine-a");
    ASSERT_STR_EQ(info->ident.sites[1], "sub.7");
    ASSERT(ss_ident_has_site(&info->ident, "sub.7"));
    ASSERT(!ss_ident_has_site(&info->ident, "mine-b"));
    ASSERT_STR_EQ(info->serial, res.serial);
    ASSERT_STR_EQ(info->fingerprint, res.fingerprint);
    ASSERT_STR_EQ(info->not_after, res.not_after);
    ASSERT(!info->is_ca);
    ASSERT_EQ(pki_show(crt, 1, devnull, err, sizeof(err)), 0);

    /* Refusals return their codes and leave no files. */
    join(out, sizeof(out), dir, "bad");
    ASSERT_EQ(issue(ca, SS_ROLE_NONE, "n", sites, 1, out, NULL, err, sizeof(err)), SS_EINVAL);
    ASSERT_EQ(issue(ca, SS_ROLE_GATEWAY, "A", sites, 1, out, NULL, err, sizeof(err)), SS_EID);
    ASSERT_EQ(issue(ca, SS_ROLE_GATEWAY, "n", sites, 0, out, NULL, err, sizeof(err)), SS_EINVAL);
    ASSERT_EQ(issue(ca, SS_ROLE_DAEMON, "n", sites, 1, out, NULL, err, sizeof(err)), SS_EINVAL);
    join(out, sizeof(out), dir, "nowhere");
    ASSERT_EQ(issue(out, SS_ROLE_DAEMON, "n", NULL, 0, crt, NULL, err, sizeof(err)), SS_ENOENT);
    join(out, sizeof(out), dir, "bad.key");
    ASSERT(!pki__exists(out));
    join(out, sizeof(out), dir, "gw");
    ASSERT_EQ(issue(ca, SS_ROLE_GATEWAY, "gw-1", sites, 1, out, NULL, err, sizeof(err)), SS_EEXIST);

    join(out, sizeof(out), dir, "d");
    ASSERT_EQ(issue(ca, SS_ROLE_DAEMON, "central", NULL, 0, out, NULL, err, sizeof(err)), 0);
    ASSERT_EQ(pki_list(ca, 1, devnull, err, sizeof(err)), 2);

    memset(&ro, 0, sizeof(ro));
    ro.dir = ca;
    ro.node = "gw-1";
    ro.reason = PKI_REASON_CESSATION_OF_OPERATION;
    ASSERT_EQ(pki_revoke(&ro, err, sizeof(err)), 1);
    ASSERT_EQ(pki_revoke(&ro, err, sizeof(err)), SS_ENOENT);
    ro.node = NULL;
    ro.serial = res.serial;
    ASSERT_EQ(pki_revoke(&ro, err, sizeof(err)), SS_EEXIST);
    ro.serial = "ABCDEF";
    ASSERT_EQ(pki_revoke(&ro, err, sizeof(err)), SS_ENOENT);
    {
        pki__index ix;
        ASSERT_EQ(pki__index_load(ca, &ix, err, sizeof(err)), 0);
        ASSERT_EQ(ix.n, 2);
        ASSERT_EQ(ix.crl_number, 2);
        ASSERT_STR_EQ(ix.e[0].serial, res.serial);
        ASSERT_EQ(ix.e[0].revoked, 1);
        ASSERT_EQ(ix.e[0].reason, PKI_REASON_CESSATION_OF_OPERATION);
        ASSERT_STR_EQ(pki__entry_status(&ix.e[0], pki__now()), "revoked");
        ASSERT_STR_EQ(pki__entry_status(&ix.e[1], pki__now()), "valid");
        ASSERT_STR_EQ(pki__entry_status(&ix.e[1], ix.e[1].not_after + 1), "expired");
        pki__index_free(&ix);
    }
    {
        pki_crl_opts co = { ca, NULL, 0 };
        ASSERT_EQ(pki_crl(&co, err, sizeof(err)), 0);
        co.days = PKI_CRL_DAYS_MAX + 1;
        ASSERT_EQ(pki_crl(&co, err, sizeof(err)), SS_ERANGE);
    }
    fclose(devnull);
    free(info);
    rm_tree(dir);
}

SS_TEST_MAIN(SS_TEST_ENTRY(reason_names_round_trip) SS_TEST_ENTRY(serial_normalize)
                 SS_TEST_ENTRY(utc_time_text) SS_TEST_ENTRY(parse_int_strict)
                     SS_TEST_ENTRY(random_serials_positive_128_bit_unique)
                         SS_TEST_ENTRY(staged_file_noreplace_and_modes)
                             SS_TEST_ENTRY(library_issue_show_revoke_list))
