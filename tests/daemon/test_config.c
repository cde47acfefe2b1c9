/* test_config.c - sitesyncd's config table: defaults valid, flags override a
 * JSON file, bad values and unknown keys refused with the key named, and
 * docs/operations.md carrying the table the binary prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "proto/err.h"
#include "sd/config.h"
#include "ss_test.h"

static int from_args(sd_config *cfg, char *err, size_t cap, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "sitesyncd";
    for (int i = 0; args[i] && argc < 31; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    sd_config_action action;
    return sd_config_from_args(cfg, argc, argv, &action, err, cap);
}

static const char *const required[] = { "--ca", "a", "--crl", "b", "--cert", "c", "--key", "d" };

TEST(defaults_are_valid_and_in_range)
{
    int n;
    const sd_config_def *t = sd_config_table(&n);
    sd_config cfg;
    char err[256];
    ASSERT_GT(n, 15);
    for (int i = 0; i < n; i++) {
        sd_config_defaults(&cfg);
        ASSERT_EQ(sd_config_set(&cfg, t[i].name, t[i].def, err, sizeof err), 0);
        ASSERT(t[i].help && t[i].help[0]);
    }
    sd_config_defaults(&cfg);
    ASSERT_U64_EQ(cfg.window, 32);
    ASSERT_U64_EQ(cfg.skew_tolerance_ms, 300000);
    ASSERT_STR_EQ(cfg.listen, "0.0.0.0:7443");
}

TEST(required_keys_named)
{
    sd_config cfg;
    char err[256] = "";
    const char *args[] = { "--ca", "x", NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, args), SS_ECONFIG);
    ASSERT(strstr(err, "crl") != NULL);
}

TEST(flags_override_file_and_bounds_checked)
{
    char path[] = "/tmp/sd-config-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char *json = "{\"window\": 7, \"db\": \"/tmp/x.db\", \"ca\": \"ca\", \"crl\": \"crl\","
                       " \"cert\": \"c\", \"key\": \"k\", \"log_level\": \"warn\"}";
    ASSERT_EQ(write(fd, json, strlen(json)), (long)strlen(json));
    close(fd);
    sd_config cfg;
    char err[256] = "";
    const char *a1[] = { "--window", "9", "--config", path, NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a1), 0);
    ASSERT_U64_EQ(cfg.window, 9); /* the flag wins wherever --config sits */
    ASSERT_STR_EQ(cfg.db, "/tmp/x.db");
    ASSERT_STR_EQ(cfg.log_level, "warn");
    const char *a2[] = { "--config", path, "--max-frame=100", NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a2), SS_ECONFIG);
    ASSERT(strstr(err, "max_frame") != NULL);
    const char *a3[] = { "--config", path, "--listen", "nohostport", NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a3), SS_ECONFIG);
    ASSERT(strstr(err, "listen") != NULL);
    const char *a4[] = { "--config", path, "--log-level", "loud", NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a4), SS_ECONFIG);
    ASSERT(strstr(err, "log_level") != NULL);
    const char *a5[] = { "--config", path, "--bogus", "1", NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a5), SS_ECONFIG);
    ASSERT(strstr(err, "bogus") != NULL);
    unlink(path);
}

TEST(file_errors_name_the_key)
{
    char path[] = "/tmp/sd-config-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char *json = "{\"window\": \"many\"}";
    ASSERT_EQ(write(fd, json, strlen(json)), (long)strlen(json));
    close(fd);
    sd_config cfg;
    char err[512] = "";
    const char *a[] = { "--config", path, NULL };
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a), SS_ECONFIG);
    ASSERT(strstr(err, "window") != NULL);
    fd = open(path, O_WRONLY | O_TRUNC);
    const char *json2 = "{\"windw\": 3}";
    ASSERT_EQ(write(fd, json2, strlen(json2)), (long)strlen(json2));
    close(fd);
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a), SS_ECONFIG);
    ASSERT(strstr(err, "windw") != NULL);
    fd = open(path, O_WRONLY | O_TRUNC);
    const char *json3 = "{\"idle_timeout_ms\": 1.5}";
    ASSERT_EQ(write(fd, json3, strlen(json3)), (long)strlen(json3));
    close(fd);
    ASSERT_EQ(from_args(&cfg, err, sizeof err, a), SS_ECONFIG);
    ASSERT(strstr(err, "idle_timeout_ms") != NULL);
    unlink(path);
    (void)required;
}

TEST(help_lists_every_key)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sd_config_print_help(f, "sitesyncd");
    fclose(f);
    int n;
    const sd_config_def *t = sd_config_table(&n);
    for (int i = 0; i < n; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s ", t[i].name);
        for (char *q = flag; *q; q++)
            *q = *q == '_' ? '-' : *q;
        if (!strstr(buf, flag))
            SS_TEST_FAIL("--help lacks %s", flag);
    }
    free(buf);
}

/* docs/operations.md must carry exactly the table the binary prints, so the
 * documentation cannot drift from the code. */
TEST(operations_doc_matches_table)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sd_config_print_markdown(f);
    fclose(f);
    FILE *d = fopen(OPERATIONS_MD, "r");
    ASSERT(d != NULL);
    static char doc[1 << 18];
    size_t dn = fread(doc, 1, sizeof doc - 1, d);
    fclose(d);
    doc[dn] = '\0';
    if (!strstr(doc, buf))
        SS_TEST_FAIL("docs/operations.md lacks the current keys table; regenerate it with "
                     "sitesyncd --print-config-markdown:\n%s",
                     buf);
    free(buf);
}

TEST(binary_refuses_bad_flag_with_key_named)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --window 0 --ca a --crl b --cert c --key d 2>&1", SITESYNCD_BIN);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ASSERT(strstr(out, "window") != NULL);
}

TEST(print_config_is_effective_json)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --print-config --ca a --crl b --cert c --key d --window 5 2>&1",
             SITESYNCD_BIN);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    static char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cJSON *j = cJSON_Parse(out);
    ASSERT(j != NULL);
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "window")), 5);
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "idle_timeout_ms")), 120000);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "ca")), "a");
    int nkeys;
    sd_config_table(&nkeys);
    ASSERT_EQ(cJSON_GetArraySize(j), nkeys);
    cJSON_Delete(j);
}

SS_TEST_MAIN(SS_TEST_ENTRY(defaults_are_valid_and_in_range) SS_TEST_ENTRY(required_keys_named)
                 SS_TEST_ENTRY(flags_override_file_and_bounds_checked)
                     SS_TEST_ENTRY(file_errors_name_the_key) SS_TEST_ENTRY(help_lists_every_key)
                         SS_TEST_ENTRY(operations_doc_matches_table)
                             SS_TEST_ENTRY(binary_refuses_bad_flag_with_key_named)
                                 SS_TEST_ENTRY(print_config_is_effective_json))
