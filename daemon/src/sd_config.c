/* sd_config.c - the config key table and everything it drives: defaults,
 * JSON files, flags, validation, help and printing (see sd/config.h). */
#include "sd/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/err.h"
#include "proto/frame.h"
#include "sd/log.h"

#define F(m) offsetof(sd_config, m), sizeof(((sd_config *)0)->m)

/* Bounds are generous but finite: each limit protects the daemon's memory or
 * file descriptors, so "unlimited" is never a valid value. */
static const sd_config_def table[] = {
    { "listen", SD_CFG_ADDR, F(listen), 0, 0, 0, "0.0.0.0:7443",
      "address to accept gateway and relay connections on (HOST:PORT; port 0 picks a free "
      "port)" },
    { "port_file", SD_CFG_PATH, F(port_file), 0, 0, 0, "",
      "if set, the bound port number is written to this file once listening" },
    { "db", SD_CFG_PATH, F(db), 0, 0, 1, "sitesync.db", "SQLite database (WAL mode)" },
    { "ca", SD_CFG_PATH, F(ca), 0, 0, 1, "",
      "sitesync CA certificate (PEM) that peers must chain to" },
    { "crl", SD_CFG_PATH, F(crl), 0, 0, 1, "",
      "certificate revocation list (PEM) from sitesync-pki; reloaded on SIGHUP" },
    { "cert", SD_CFG_PATH, F(cert), 0, 0, 1, "", "the daemon's certificate chain (PEM)" },
    { "key", SD_CFG_PATH, F(key), 0, 0, 1, "", "the daemon's private key (PEM)" },
    { "node", SD_CFG_ID, F(node), 0, 0, 0, "",
      "the daemon's node id; empty: taken from the daemon certificate" },
    { "max_connections", SD_CFG_UINT, F(max_connections), 1, 1000000, 0, "4096",
      "connections served at once; further connections are closed at accept" },
    { "handshake_timeout_ms", SD_CFG_UINT, F(handshake_timeout_ms), 100, 600000, 0, "10000",
      "absolute deadline from accept for the TLS handshake and HELLO" },
    { "bad_handshake_limit", SD_CFG_UINT, F(bad_handshake_limit), 0, 1000000, 0, "16",
      "failed TLS handshakes from one address (IPv4, or IPv6 /64) within bad_handshake_window_ms "
      "before its connections are closed at accept; 0 disables" },
    { "bad_handshake_window_ms", SD_CFG_UINT, F(bad_handshake_window_ms), 100, 86400000, 0, "60000",
      "window in which failed handshakes from one address are counted" },
    { "bad_handshake_penalty_ms", SD_CFG_UINT, F(bad_handshake_penalty_ms), 100, 86400000, 0,
      "60000", "how long an address over bad_handshake_limit is refused at accept" },
    { "idle_timeout_ms", SD_CFG_UINT, F(idle_timeout_ms), 100, 86400000, 0, "120000",
      "a session with no frame received and nothing in flight for this long is closed" },
    { "max_frame", SD_CFG_UINT, F(max_frame), 1024, SS_FRAME_ABSOLUTE_MAX, 0, "1048576",
      "largest frame payload accepted (bytes); larger frames are refused before allocation" },
    { "window", SD_CFG_UINT, F(window), 1, 1024, 0, "32",
      "BATCH frames a peer may have in flight; beyond it the daemon stops reading from it" },
    { "max_output_bytes", SD_CFG_UINT, F(max_output_bytes), 4096, 1073741824, 0, "4194304",
      "cap on a connection's output the peer has not acknowledged (queued plus the kernel's send "
      "queue, bytes); a peer that does not read is cut off" },
    { "skew_tolerance_ms", SD_CFG_UINT, F(skew_tolerance_ms), 0, 86400000, 0, "300000",
      "changes stamped further than this in the future are refused and audited" },
    { "writer_max_batch", SD_CFG_UINT, F(writer_max_batch), 1, 65536, 0, "256",
      "envelopes grouped into one SQLite transaction (group commit)" },
    { "prepare_threads", SD_CFG_UINT, F(prepare_threads), 0, 64, 0, "2",
      "threads that verify signatures and parse envelopes ahead of the writer, which then only "
      "does the database work (order is kept); 0: the writer does it all itself" },
    { "stale_after_s", SD_CFG_UINT, F(stale_after_s), 1, 31536000, 0, "3600",
      "a site with nothing received for this long is reported stale" },
    { "drain_timeout_ms", SD_CFG_UINT, F(drain_timeout_ms), 100, 600000, 0, "30000",
      "on SIGTERM, sessions still busy after this long are cut" },
    { "require_signatures", SD_CFG_BOOL, F(require_signatures), 0, 1, 0, "true",
      "refuse envelopes without an origin signature (bad_signature); signed envelopes are "
      "verified either way" },
    { "sig_cache_size", SD_CFG_UINT, F(sig_cache_size), 0, 1048576, 0, "4096",
      "origin certificates whose verdict is cached (about 4 KiB each); 0 verifies the "
      "certificate chain of every envelope" },
    { "log_level", SD_CFG_LEVEL, F(log_level), 0, 0, 0, "info", "debug, info, warn or error" },
};
#undef F

#define NKEYS ((int)(sizeof table / sizeof table[0]))

const sd_config_def *sd_config_table(int *n)
{
    *n = NKEYS;
    return table;
}

/* Flag spellings may use '-' where the key has '_'. */
static int name_eq(const char *key, const char *s, size_t len)
{
    if (strlen(key) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i] == '-' ? '_' : s[i];
        if (c != key[i])
            return 0;
    }
    return 1;
}

static const sd_config_def *find_len(const char *name, size_t len)
{
    for (int i = 0; i < NKEYS; i++)
        if (name_eq(table[i].name, name, len))
            return &table[i];
    return NULL;
}

const sd_config_def *sd_config_find(const char *name)
{
    return name ? find_len(name, strlen(name)) : NULL;
}

static int fail(char *err, size_t cap, const char *key, const char *msg, const char *val)
{
    if (err && cap)
        snprintf(err, cap, "%s: %s%s%s%s", key, msg, val ? " (got \"" : "", val ? val : "",
                 val ? "\")" : "");
    return SS_ECONFIG;
}

int sd_config_parse_addr(const char *addr, char *host, size_t hostcap, int *port)
{
    const char *colon;
    const char *h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return SS_ECONFIG;
        h = addr + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return SS_ECONFIG;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= hostcap)
        return SS_ECONFIG;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return SS_ECONFIG;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno || *end || v > 65535)
        return SS_ECONFIG;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return 0;
}

static int set_def(sd_config *cfg, const sd_config_def *d, const char *value, char *err, size_t cap)
{
    char *dst = (char *)cfg + d->offset;
    size_t len = strlen(value);
    switch (d->type) {
    case SD_CFG_UINT: {
        if (len == 0 || value[0] < '0' || value[0] > '9')
            return fail(err, cap, d->name, "expected a non-negative integer", value);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end)
            return fail(err, cap, d->name, "expected a non-negative integer", value);
        if (v < d->min || v > d->max) {
            char msg[96];
            snprintf(msg, sizeof msg, "must be between %llu and %llu", (unsigned long long)d->min,
                     (unsigned long long)d->max);
            return fail(err, cap, d->name, msg, value);
        }
        *(uint64_t *)(void *)dst = v;
        return 0;
    }
    case SD_CFG_ADDR: {
        char host[SD_CONFIG_ADDR_MAX];
        int port;
        if (sd_config_parse_addr(value, host, sizeof host, &port) != 0)
            return fail(err, cap, d->name, "expected HOST:PORT with a port 0..65535", value);
        break;
    }
    case SD_CFG_ID:
        if (len && ss_id_check(value, len) != 0)
            return fail(err, cap, d->name, "not a valid id ([a-z0-9._-], 1..64)", value);
        break;
    case SD_CFG_LEVEL:
        if (sd_log_level_parse(value) < 0)
            return fail(err, cap, d->name, "expected debug, info, warn or error", value);
        break;
    case SD_CFG_BOOL: {
        static const char *const yes[] = { "true", "1", "yes", "on" };
        static const char *const no[] = { "false", "0", "no", "off" };
        for (int i = 0; i < 4; i++) {
            if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
                *(uint64_t *)(void *)dst = strcmp(value, yes[i]) == 0;
                return 0;
            }
        }
        return fail(err, cap, d->name, "expected true or false", value);
    }
    case SD_CFG_PATH:
        break;
    }
    if (len >= d->size)
        return fail(err, cap, d->name, "too long", NULL);
    memcpy(dst, value, len + 1);
    return 0;
}

void sd_config_defaults(sd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NKEYS; i++) {
        int rc = set_def(cfg, &table[i], table[i].def, NULL, 0);
        (void)rc; /* the table's own defaults are valid: checked by a unit test */
    }
}

int sd_config_set(sd_config *cfg, const char *name, const char *value, char *err, size_t errcap)
{
    const sd_config_def *d = sd_config_find(name);
    if (!d)
        return fail(err, errcap, name, "unknown configuration key", NULL);
    return set_def(cfg, d, value, err, errcap);
}

int sd_config_load_file(sd_config *cfg, const char *path, char *err, size_t errcap)
{
    int rc = SS_ECONFIG;
    char *text = NULL;
    cJSON *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "config %s: %s", path, strerror(errno));
        return SS_EIO;
    }
    /* A config file is small; 1 MiB is far beyond any real one. */
    size_t cap = 1u << 20, len = 0;
    text = malloc(cap + 1);
    if (!text) {
        rc = SS_ENOMEM;
        goto exit;
    }
    len = fread(text, 1, cap + 1, f);
    if (ferror(f)) {
        snprintf(err, errcap, "config %s: read error", path);
        rc = SS_EIO;
        goto exit;
    }
    if (len > cap) {
        snprintf(err, errcap, "config %s: larger than 1 MiB", path);
        goto exit;
    }
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errcap, "config %s: not a JSON object", path);
        goto exit;
    }
    for (cJSON *it = root->child; it; it = it->next) {
        const sd_config_def *d = it->string ? sd_config_find(it->string) : NULL;
        char sub[512];
        char num[32];
        const char *val;
        if (!d || strchr(it->string, '-')) {
            snprintf(err, errcap, "config %s: %s: unknown configuration key", path,
                     it->string ? it->string : "?");
            goto exit;
        }
        if (d->type == SD_CFG_BOOL) {
            if (!cJSON_IsBool(it)) {
                snprintf(err, errcap, "config %s: %s: expected true or false", path, d->name);
                goto exit;
            }
            val = cJSON_IsTrue(it) ? "true" : "false";
        } else if (d->type == SD_CFG_UINT) {
            double v = cJSON_GetNumberValue(it);
            if (!cJSON_IsNumber(it) || v < 0 || v > 9007199254740991.0 ||
                v != (double)(uint64_t)v) {
                snprintf(err, errcap, "config %s: %s: expected a non-negative integer", path,
                         d->name);
                goto exit;
            }
            snprintf(num, sizeof num, "%llu", (unsigned long long)(uint64_t)v);
            val = num;
        } else {
            if (!cJSON_IsString(it)) {
                snprintf(err, errcap, "config %s: %s: expected a string", path, d->name);
                goto exit;
            }
            val = it->valuestring;
        }
        if (set_def(cfg, d, val, sub, sizeof sub) != 0) {
            snprintf(err, errcap, "config %s: %s", path, sub);
            goto exit;
        }
    }
    rc = 0;
exit:
    cJSON_Delete(root);
    free(text);
    fclose(f);
    return rc;
}

int sd_config_validate(const sd_config *cfg, char *err, size_t errcap)
{
    for (int i = 0; i < NKEYS; i++) {
        const char *v = (const char *)cfg + table[i].offset;
        if (table[i].required && table[i].type != SD_CFG_UINT && table[i].type != SD_CFG_BOOL &&
            v[0] == '\0') {
            snprintf(err, errcap, "%s: required (config file key \"%s\" or flag --%s)",
                     table[i].name, table[i].name, table[i].name);
            return SS_ECONFIG;
        }
    }
    return 0;
}

static int is_flag(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, "--", 2) == 0 && strncmp(a + 2, name, n) == 0 &&
           (a[2 + n] == '\0' || a[2 + n] == '=');
}

int sd_config_from_args(sd_config *cfg, int argc, char **argv, sd_config_action *action, char *err,
                        size_t errcap)
{
    *action = SD_CONFIG_RUN;
    sd_config_defaults(cfg);
    /* The config file first, wherever it is on the line, so that every other
     * flag overrides it. */
    for (int i = 1; i < argc; i++) {
        if (!is_flag(argv[i], "config"))
            continue;
        const char *path = strchr(argv[i], '=') ? strchr(argv[i], '=') + 1 : NULL;
        if (!path) {
            if (i + 1 >= argc)
                return fail(err, errcap, "config", "missing file name after --config", NULL);
            path = argv[++i];
        }
        int rc = sd_config_load_file(cfg, path, err, errcap);
        if (rc != 0)
            return rc == SS_EIO ? SS_ECONFIG : rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = SD_CONFIG_HELP;
            return 0;
        }
        if (strcmp(a, "--print-config") == 0) {
            *action = SD_CONFIG_PRINT;
            continue;
        }
        if (strcmp(a, "--print-config-markdown") == 0) {
            *action = SD_CONFIG_PRINT_MARKDOWN;
            continue;
        }
        if (is_flag(a, "config")) {
            if (!strchr(a, '='))
                i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errcap, "unexpected argument \"%s\" (see --help)", a);
            return SS_ECONFIG;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const sd_config_def *d = find_len(name, nlen);
        if (!d) {
            snprintf(err, errcap, "unknown option --%.*s (see --help)", (int)nlen, name);
            return SS_ECONFIG;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc)
                return fail(err, errcap, d->name, "missing value", NULL);
            val = argv[++i];
        }
        int rc = set_def(cfg, d, val, err, errcap);
        if (rc != 0)
            return rc;
    }
    if (*action == SD_CONFIG_PRINT_MARKDOWN)
        return 0;
    return sd_config_validate(cfg, err, errcap);
}

/* Flags are shown with dashes ("--max-frame"); both spellings are accepted. */
static const char *flag_name(const char *key, char *buf, size_t cap)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        buf[i] = key[i] == '_' ? '-' : key[i];
    buf[i] = '\0';
    return buf;
}

static const char *type_name(sd_config_type t)
{
    switch (t) {
    case SD_CFG_ADDR:
        return "HOST:PORT";
    case SD_CFG_PATH:
        return "PATH";
    case SD_CFG_ID:
        return "ID";
    case SD_CFG_UINT:
        return "N";
    case SD_CFG_LEVEL:
        return "LEVEL";
    case SD_CFG_BOOL:
        return "BOOL";
    }
    return "?";
}

void sd_config_print_help(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--config FILE] [--KEY VALUE ...] [--print-config] [--help]\n"
            "sitesync central daemon: mutual-TLS replication endpoint, LWW merge into SQLite,\n"
            "hash-chained audit. Flags override the JSON config file; every key has a default.\n"
            "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads CRL and certificates.\n\n",
            prog);
    for (int i = 0; i < NKEYS; i++) {
        const sd_config_def *d = &table[i];
        char opt[64], fl[48];
        snprintf(opt, sizeof opt, "--%s %s", flag_name(d->name, fl, sizeof fl), type_name(d->type));
        fprintf(out, "  %-32s %s\n", opt, d->help);
        if (d->type == SD_CFG_UINT)
            fprintf(out, "  %-32s default %s, range %llu..%llu\n", "", d->def,
                    (unsigned long long)d->min, (unsigned long long)d->max);
        else if (d->def[0] || !d->required)
            fprintf(out, "  %-32s default \"%s\"\n", "", d->def);
        else
            fprintf(out, "  %-32s %s\n", "", "required, no default");
    }
    fprintf(out, "  %-32s %s\n", "--config FILE", "JSON object of the keys above");
    fprintf(out, "  %-32s %s\n", "--print-config", "print the effective config as JSON and exit");
    fprintf(out, "  %-32s %s\n", "--print-config-markdown",
            "print the keys table for docs/operations.md and exit");
}

void sd_config_print_json(const sd_config *cfg, FILE *out)
{
    fputs("{\n", out);
    for (int i = 0; i < NKEYS; i++) {
        const sd_config_def *d = &table[i];
        const char *p = (const char *)cfg + d->offset;
        fprintf(out, "  \"%s\": ", d->name);
        if (d->type == SD_CFG_UINT) {
            fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)(const void *)p);
        } else if (d->type == SD_CFG_BOOL) {
            fputs(*(const uint64_t *)(const void *)p ? "true" : "false", out);
        } else {
            fputc('"', out);
            for (; *p; p++) {
                if (*p == '"' || *p == '\\')
                    fputc('\\', out);
                if ((unsigned char)*p < 0x20)
                    fprintf(out, "\\u%04x", (unsigned)(unsigned char)*p);
                else
                    fputc(*p, out);
            }
            fputc('"', out);
        }
        fputs(i + 1 < NKEYS ? ",\n" : "\n", out);
    }
    fputs("}\n", out);
}

void sd_config_print_markdown(FILE *out)
{
    fputs("| key / flag | type | default | range | meaning |\n", out);
    fputs("|---|---|---|---|---|\n", out);
    for (int i = 0; i < NKEYS; i++) {
        const sd_config_def *d = &table[i];
        char range[64] = "", fl[48];
        if (d->type == SD_CFG_UINT)
            snprintf(range, sizeof range, "%llu..%llu", (unsigned long long)d->min,
                     (unsigned long long)d->max);
        fprintf(out, "| `%s` / `--%s` | %s | %s%s%s | %s | %s |\n", d->name,
                flag_name(d->name, fl, sizeof fl), type_name(d->type),
                d->def[0] ? "`" : (d->required ? "required" : "(empty)"), d->def,
                d->def[0] ? "`" : "", range, d->help);
    }
}
