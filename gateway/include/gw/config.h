/* config.h - sitesync-gw's configuration: one table describes every key
 * (name, type, bounds, default, help) and drives the JSON config file, the
 * command-line flags (--key-with-dashes VALUE), validation, errors and
 * --print-config, in the manner of Valkey's static_configs[]. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "gw/journal.h"
#include "gw/sync.h"

#define GW_PATH_MAX 1024

typedef struct gw_config {
    char server[300];      /* daemon (or hub) HOST:PORT */
    char server_name[256]; /* name its certificate must carry; "" = host of server */
    char ca[GW_PATH_MAX], cert[GW_PATH_MAX], key[GW_PATH_MAX], journal[GW_PATH_MAX];
    char site[72];      /* default site for submissions; "" = the certificate's first */
    char log_level[16]; /* error | warn | info | debug */
    uint64_t capacity;
    uint64_t segment_max, entry_max, refused_max;
    uint64_t sync_interval_ms, lock_timeout_ms;
    uint64_t max_frame, window, batch_max;
    uint64_t handshake_timeout_ms, io_timeout_ms, ping_interval_ms;
    uint64_t backoff_min_ms, backoff_max_ms;
    /* relay mode */
    char listen[300];
    char crl[GW_PATH_MAX];
    char crl_stale_policy[16];
    char port_file[GW_PATH_MAX];
    uint64_t max_conns, relay_window, relay_max_envelopes, idle_timeout_ms;
    uint64_t bad_handshake_limit, bad_handshake_window_ms, bad_handshake_penalty_ms;
    uint64_t max_output_bytes;
} gw_config;

typedef enum gw_ctype { GW_CT_STR = 1, GW_CT_U64 = 2 } gw_ctype;

typedef struct gw_config_key {
    const char *name;
    gw_ctype type;
    size_t offset, size; /* into gw_config; size = buffer size for strings */
    uint64_t min, max;   /* numbers: inclusive bounds */
    const char *def;     /* default as text */
    const char *help;
} gw_config_key;

/* The table (NULL-name terminated). */
const gw_config_key *gw_config_keys(void);

/* Fills every default. */
void gw_config_defaults(gw_config *c);

/* Sets one key from text (a flag value or a config-file string). Accepts
 * '-' for '_' in name. Returns 0 or SS_ECONFIG with msg (cap bytes) naming
 * the key and the rule. */
int gw_config_set(gw_config *c, const char *name, const char *value, char *msg, size_t cap);

/* Applies a JSON object of keys (the config file's content). Unknown keys,
 * wrong types and out-of-range values are errors naming the key. */
int gw_config_load_json(gw_config *c, const char *text, size_t len, char *msg, size_t cap);

/* Checks cross-key rules (e.g. max_frame fits entry_max). */
int gw_config_check(const gw_config *c, char *msg, size_t cap);

/* Writes "name = value   # help" lines through cb. */
void gw_config_print(const gw_config *c, void (*cb)(void *arg, const char *line), void *arg);

void gw_config_journal(const gw_config *c, gw_journal_config *out);
void gw_config_sync(const gw_config *c, gw_sync_config *out);

#endif
