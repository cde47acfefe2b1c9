/* config.h - sitesyncd's configuration: one table describes every key (name,
 * type, bounds, default, help) and drives JSON config files, command-line
 * overrides, validation errors naming the key, --help and --print-config. */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/ident.h"

#define SD_CONFIG_PATH_MAX 1024
#define SD_CONFIG_ADDR_MAX 128

typedef struct sd_config {
    char listen[SD_CONFIG_ADDR_MAX]; /* HOST:PORT; port 0 picks a free port */
    char port_file[SD_CONFIG_PATH_MAX];
    char db[SD_CONFIG_PATH_MAX];
    char ca[SD_CONFIG_PATH_MAX];
    char crl[SD_CONFIG_PATH_MAX];
    char cert[SD_CONFIG_PATH_MAX];
    char key[SD_CONFIG_PATH_MAX];
    char node[SS_ID_MAX + 1]; /* "" = from the daemon certificate */
    uint64_t max_connections;
    uint64_t handshake_timeout_ms;
    uint64_t bad_handshake_limit; /* 0: no per-address penalty */
    uint64_t bad_handshake_window_ms;
    uint64_t bad_handshake_penalty_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_frame;
    uint64_t window;
    uint64_t max_output_bytes;
    uint64_t skew_tolerance_ms;
    uint64_t writer_max_batch;
    uint64_t prepare_threads;
    uint64_t stale_after_s;
    uint64_t drain_timeout_ms;
    uint64_t require_signatures; /* 0/1 (SD_CFG_BOOL) */
    uint64_t sig_cache_size;
    char log_level[8];
} sd_config;

typedef enum sd_config_type {
    SD_CFG_ADDR = 1,  /* HOST:PORT */
    SD_CFG_PATH = 2,  /* file path */
    SD_CFG_ID = 3,    /* node id (ident.h rules) */
    SD_CFG_UINT = 4,  /* unsigned integer in [min, max] */
    SD_CFG_LEVEL = 5, /* debug | info | warn | error */
    SD_CFG_BOOL = 6   /* true | false (flags also 1/0, yes/no, on/off); stored as uint64_t */
} sd_config_type;

typedef struct sd_config_def {
    const char *name;
    sd_config_type type;
    size_t offset; /* into sd_config */
    size_t size;   /* of the member (capacity for text) */
    uint64_t min, max;
    int required;    /* must be non-empty after files and flags */
    const char *def; /* default, as text */
    const char *help;
} sd_config_def;

/* The table, in documentation order; *n gets the count. */
const sd_config_def *sd_config_table(int *n);
const sd_config_def *sd_config_find(const char *name);

/* Every key to its default. Cannot fail. */
void sd_config_defaults(sd_config *cfg);

/* Sets one key from text (a flag value or a JSON string). Returns 0, or
 * SS_ECONFIG with "key: reason" in err. */
int sd_config_set(sd_config *cfg, const char *name, const char *value, char *err, size_t errcap);

/* Applies a JSON config file (an object of key: value; numbers for integer
 * keys, true/false for boolean keys, strings for the rest). Unknown keys are errors. Returns 0, or
 * SS_ECONFIG / SS_EIO with a message naming the file and key. */
int sd_config_load_file(sd_config *cfg, const char *path, char *err, size_t errcap);

/* Cross-key checks: required keys present, listen parses. */
int sd_config_validate(const sd_config *cfg, char *err, size_t errcap);

typedef enum sd_config_action {
    SD_CONFIG_RUN = 0,
    SD_CONFIG_HELP = 1,
    SD_CONFIG_PRINT = 2,         /* --print-config: effective config as JSON */
    SD_CONFIG_PRINT_MARKDOWN = 3 /* --print-config-markdown: docs table */
} sd_config_action;

/* Defaults, then --config FILE (wherever it appears), then every other flag
 * in order: "--key VALUE" or "--key=VALUE" ('-' and '_' both accepted in
 * key names). Validates unless the action is HELP. Returns 0 with *action,
 * or SS_ECONFIG with the message in err. */
int sd_config_from_args(sd_config *cfg, int argc, char **argv, sd_config_action *action, char *err,
                        size_t errcap);

/* Splits "HOST:PORT" ("[v6]:PORT" too). Returns 0 or SS_ECONFIG. */
int sd_config_parse_addr(const char *addr, char *host, size_t hostcap, int *port);

void sd_config_print_help(FILE *out, const char *prog);
/* The effective config as one JSON object (paths, numbers, levels). */
void sd_config_print_json(const sd_config *cfg, FILE *out);
/* The keys table in Markdown, as docs/operations.md carries it. */
void sd_config_print_markdown(FILE *out);

#endif
