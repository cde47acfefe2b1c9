/* gw_config.c - the one table of sitesync-gw config keys and the code it
 * drives: defaults, file and flag parsing with bounds, cross-checks, and
 * --print-config. */
#include "gw/config.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/err.h"
#include "proto/json.h"
#include "proto/envelope.h"
#include "proto/frame.h"
#include "proto/schema.h"

#define OFF(f) offsetof(gw_config, f), sizeof(((gw_config *)0)->f)
#define MS_DAY UINT64_C(86400000)

static const gw_config_key keys[] = {
    { "server", GW_CT_STR, OFF(server), 0, 0, "", "daemon or hub address HOST:PORT" },
    { "server_name", GW_CT_STR, OFF(server_name), 0, 0, "",
      "name the daemon certificate must carry (DNS or IP); empty: the host of server" },
    { "ca", GW_CT_STR, OFF(ca), 0, 0, "/etc/sitesync/ca.crt", "sitesync CA certificate (PEM)" },
    { "cert", GW_CT_STR, OFF(cert), 0, 0, "/etc/sitesync/gateway.crt",
      "this gateway's certificate (PEM); node id and sites come from it" },
    { "key", GW_CT_STR, OFF(key), 0, 0, "/etc/sitesync/gateway.key",
      "this gateway's private key (PEM, mode 0600)" },
    { "journal", GW_CT_STR, OFF(journal), 0, 0, "/var/lib/sitesync-gw", "journal directory" },
    { "site", GW_CT_STR, OFF(site), 0, 0, "",
      "site for submissions when the certificate names several; empty: the first" },
    { "log_level", GW_CT_STR, OFF(log_level), 0, 0, "info", "error | warn | info | debug" },
    { "capacity", GW_CT_U64, OFF(capacity), 65536, UINT64_C(1) << 40, "67108864",
      "journal capacity in bytes; when full, new input is refused" },
    { "segment_max", GW_CT_U64, OFF(segment_max), 4096, 1u << 30, "1048576",
      "bytes per journal segment file" },
    { "entry_max", GW_CT_U64, OFF(entry_max), 1024, 1u << 20, "16384",
      "largest change accepted, in bytes of JSON" },
    { "refused_max", GW_CT_U64, OFF(refused_max), 4096, 1u << 30, "65536",
      "refused-change log size before rotation" },
    { "sync_interval_ms", GW_CT_U64, OFF(sync_interval_ms), 100, MS_DAY, "5000",
      "run: how often to look for pending changes" },
    { "lock_timeout_ms", GW_CT_U64, OFF(lock_timeout_ms), 0, MS_DAY, "120000",
      "how long a command waits for the journal lock held by another process" },
    { "max_frame", GW_CT_U64, OFF(max_frame), 4096, SS_FRAME_ABSOLUTE_MAX, "262144",
      "largest frame sent or accepted" },
    { "window", GW_CT_U64, OFF(window), 1, 256, "8", "BATCH frames in flight" },
    { "batch_max", GW_CT_U64, OFF(batch_max), 1, SS_ENV_MAX_COUNT, "512", "changes per BATCH" },
    { "handshake_timeout_ms", GW_CT_U64, OFF(handshake_timeout_ms), 100, MS_DAY, "10000",
      "connect + TLS + WELCOME deadline" },
    { "io_timeout_ms", GW_CT_U64, OFF(io_timeout_ms), 100, MS_DAY, "30000",
      "silence from the daemon before the link is declared dead" },
    { "ping_interval_ms", GW_CT_U64, OFF(ping_interval_ms), 100, MS_DAY, "10000",
      "keep-alive PING after this much silence" },
    { "backoff_min_ms", GW_CT_U64, OFF(backoff_min_ms), 1, MS_DAY, "1000",
      "run: first retry delay after a failed sync" },
    { "backoff_max_ms", GW_CT_U64, OFF(backoff_max_ms), 1, MS_DAY, "300000",
      "run: longest retry delay (exponential with jitter up to this)" },
    /* relay mode (sitesync-gw relay: a regional hub) */
    { "listen", GW_CT_STR, OFF(listen), 0, 0, "",
      "relay: address to listen on for gateways and lower hubs, HOST:PORT" },
    { "crl", GW_CT_STR, OFF(crl), 0, 0, "/etc/sitesync/crl.pem",
      "relay: the CA's CRL (PEM or DER); a newer one from upstream replaces it" },
    { "crl_stale_policy", GW_CT_STR, OFF(crl_stale_policy), 0, 0, "warn",
      "relay: past the CRL's nextUpdate: warn (keep enforcing it) | refuse (no handshakes)" },
    { "max_conns", GW_CT_U64, OFF(max_conns), 1, 65536, "256",
      "relay: downstream connections at most" },
    { "relay_window", GW_CT_U64, OFF(relay_window), 1, 1024, "32",
      "relay: BATCH frames a downstream may have unacknowledged" },
    { "relay_max_envelopes", GW_CT_U64, OFF(relay_max_envelopes), 16, 16777216, "65536",
      "relay: envelopes the hub journal holds at most (its index)" },
    { "idle_timeout_ms", GW_CT_U64, OFF(idle_timeout_ms), 1000, MS_DAY, "120000",
      "relay: a silent downstream connection is closed after this" },
    { "bad_handshake_limit", GW_CT_U64, OFF(bad_handshake_limit), 0, 1000000, "16",
      "relay: failed TLS handshakes from one address within bad_handshake_window_ms before "
      "the hub refuses it at accept; 0: off" },
    { "bad_handshake_window_ms", GW_CT_U64, OFF(bad_handshake_window_ms), 100, MS_DAY, "60000",
      "relay: window over which bad_handshake_limit counts" },
    { "bad_handshake_penalty_ms", GW_CT_U64, OFF(bad_handshake_penalty_ms), 100, MS_DAY, "60000",
      "relay: how long an address over bad_handshake_limit is refused at accept" },
    { "max_output_bytes", GW_CT_U64, OFF(max_output_bytes), 4096, 16777216, "65536",
      "relay: bytes a downstream peer has not acknowledged (hub queue + kernel send queue) "
      "before it is cut" },
    { "port_file", GW_CT_STR, OFF(port_file), 0, 0, "",
      "relay: write the bound listening port here (for listen port 0)" },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL },
};

const gw_config_key *gw_config_keys(void)
{
    return keys;
}

static const gw_config_key *find(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '-' ? '_' : name[i];
    for (const gw_config_key *k = keys; k->name; k++)
        if (strcmp(k->name, norm) == 0)
            return k;
    return NULL;
}

static int set_key(gw_config *c, const gw_config_key *k, const char *value, char *msg, size_t cap)
{
    char *dst = (char *)c + k->offset;
    if (k->type == GW_CT_STR) {
        size_t n = strlen(value);
        if (n >= k->size) {
            snprintf(msg, cap, "%s: longer than %zu bytes", k->name, k->size - 1);
            return SS_ECONFIG;
        }
        memcpy(dst, value, n + 1);
        return 0;
    }
    char *end = NULL;
    if (value[0] < '0' || value[0] > '9') {
        snprintf(msg, cap, "%s: \"%s\" is not a non-negative integer", k->name, value);
        return SS_ECONFIG;
    }
    unsigned long long v = strtoull(value, &end, 10);
    if (!end || *end != '\0') {
        snprintf(msg, cap, "%s: \"%s\" is not an integer", k->name, value);
        return SS_ECONFIG;
    }
    if (v < k->min || v > k->max) {
        snprintf(msg, cap, "%s: %llu outside %" PRIu64 "..%" PRIu64, k->name, v, k->min, k->max);
        return SS_ECONFIG;
    }
    memcpy(dst, &(uint64_t){ (uint64_t)v }, sizeof(uint64_t));
    return 0;
}

void gw_config_defaults(gw_config *c)
{
    char msg[128];
    memset(c, 0, sizeof(*c));
    for (const gw_config_key *k = keys; k->name; k++)
        (void)set_key(c, k, k->def, msg, sizeof(msg));
}

int gw_config_set(gw_config *c, const char *name, const char *value, char *msg, size_t cap)
{
    const gw_config_key *k = find(name);
    if (!k) {
        snprintf(msg, cap, "unknown setting \"%s\" (see --print-config)", name);
        return SS_ECONFIG;
    }
    if (!value) {
        snprintf(msg, cap, "%s: needs a value", k->name);
        return SS_ECONFIG;
    }
    return set_key(c, k, value, msg, cap);
}

int gw_config_load_json(gw_config *c, const char *text, size_t len, char *msg, size_t cap)
{
    cJSON *root = NULL;
    ss_verr verr;
    /* A file saved with a UTF-8 byte order mark (some editors write one) is
     * still the operator's JSON; on the wire a BOM is refused. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    int rc = ss_json_parse((const uint8_t *)text, len, SS_JSON_MAX_DEPTH, &root, &verr);
    if (rc < 0) {
        snprintf(msg, cap, "config file: %s", verr.msg);
        return SS_ECONFIG;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(msg, cap, "config file: must be a JSON object");
        return SS_ECONFIG;
    }
    rc = 0;
    for (const cJSON *it = root->child; it && rc == 0; it = it->next) {
        const gw_config_key *k = it->string ? find(it->string) : NULL;
        char num[32];
        if (!k || strchr(it->string, '-')) {
            snprintf(msg, cap, "config file: unknown setting \"%s\"", it->string ? it->string : "");
            rc = SS_ECONFIG;
        } else if (k->type == GW_CT_STR && cJSON_IsString(it)) {
            rc = set_key(c, k, it->valuestring, msg, cap);
        } else if (k->type == GW_CT_U64 && cJSON_IsNumber(it) && it->valuedouble >= 0 &&
                   it->valuedouble <= 9007199254740991.0 &&
                   it->valuedouble == (double)(uint64_t)it->valuedouble) {
            snprintf(num, sizeof(num), "%" PRIu64, (uint64_t)it->valuedouble);
            rc = set_key(c, k, num, msg, cap);
        } else {
            snprintf(msg, cap, "config file: %s must be %s", k->name,
                     k->type == GW_CT_STR ? "a string" : "a non-negative integer");
            rc = SS_ECONFIG;
        }
    }
    cJSON_Delete(root);
    return rc;
}

int gw_config_check(const gw_config *c, char *msg, size_t cap)
{
    if (c->segment_max < c->entry_max + GW_JOURNAL_ENTRY_HDR) {
        snprintf(msg, cap, "segment_max must be at least entry_max + %u", GW_JOURNAL_ENTRY_HDR);
        return SS_ECONFIG;
    }
    if (c->capacity < c->segment_max) {
        snprintf(msg, cap, "capacity must be at least segment_max");
        return SS_ECONFIG;
    }
    if (c->max_frame < c->entry_max + 256) {
        snprintf(msg, cap, "max_frame must be at least entry_max + 256");
        return SS_ECONFIG;
    }
    if (c->io_timeout_ms < c->ping_interval_ms || c->backoff_max_ms < c->backoff_min_ms) {
        snprintf(msg, cap,
                 "io_timeout_ms >= ping_interval_ms and backoff_max_ms >= "
                 "backoff_min_ms are required");
        return SS_ECONFIG;
    }
    const char *lv = c->log_level;
    if (strcmp(lv, "error") && strcmp(lv, "warn") && strcmp(lv, "info") && strcmp(lv, "debug")) {
        snprintf(msg, cap, "log_level: one of error, warn, info, debug");
        return SS_ECONFIG;
    }
    if (strcmp(c->crl_stale_policy, "warn") && strcmp(c->crl_stale_policy, "refuse")) {
        snprintf(msg, cap, "crl_stale_policy: warn or refuse");
        return SS_ECONFIG;
    }
    if (c->site[0] && ss_id_check_str(c->site) < 0) {
        snprintf(msg, cap, "site: not a valid id");
        return SS_ECONFIG;
    }
    return 0;
}

void gw_config_print(const gw_config *c, void (*cb)(void *arg, const char *line), void *arg)
{
    char line[GW_PATH_MAX + 256];
    for (const gw_config_key *k = keys; k->name; k++) {
        const char *p = (const char *)c + k->offset;
        if (k->type == GW_CT_STR) {
            snprintf(line, sizeof(line), "%-22s = \"%s\"   # %s", k->name, p, k->help);
        } else {
            uint64_t v;
            memcpy(&v, p, sizeof(v));
            snprintf(line, sizeof(line), "%-22s = %" PRIu64 "   # %s", k->name, v, k->help);
        }
        cb(arg, line);
    }
}

void gw_config_journal(const gw_config *c, gw_journal_config *out)
{
    gw_journal_config_default(out);
    out->capacity = c->capacity;
    out->segment_max = (uint32_t)c->segment_max;
    out->entry_max = (uint32_t)c->entry_max;
    out->refused_max = (uint32_t)c->refused_max;
}

void gw_config_sync(const gw_config *c, gw_sync_config *out)
{
    gw_sync_config_default(out);
    out->max_frame = (uint32_t)c->max_frame;
    out->window = (uint32_t)c->window;
    out->batch_max = (uint32_t)c->batch_max;
    out->handshake_timeout_ms = (uint32_t)c->handshake_timeout_ms;
    out->io_timeout_ms = (uint32_t)c->io_timeout_ms;
    out->ping_interval_ms = (uint32_t)c->ping_interval_ms;
    out->backoff_min_ms = (uint32_t)c->backoff_min_ms;
    out->backoff_max_ms = (uint32_t)c->backoff_max_ms;
}
