/* log.h - structured logging for sitesyncd: one line per event on stderr,
 * "ts=... level=... event=... key=value ...", so logs can be grepped and
 * parsed. The logger is a caller-owned value passed explicitly (no globals). */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stddef.h>
#include <stdio.h>

typedef enum sd_log_level {
    SD_LOG_DEBUG = 0,
    SD_LOG_INFO = 1,
    SD_LOG_WARN = 2,
    SD_LOG_ERROR = 3
} sd_log_level;

typedef struct sd_log {
    sd_log_level min; /* events below this level are dropped */
    FILE *out;        /* stderr in the daemon; a temp file in tests */
} sd_log;

/* Cannot fail. out == NULL means stderr. */
void sd_log_init(sd_log *l, sd_log_level min, FILE *out);

/* "debug", "info", "warn", "error". */
const char *sd_log_level_name(sd_log_level lvl);
/* Returns the level, or SS_EINVAL for an unknown name. */
int sd_log_level_parse(const char *s);

/* Writes one line: timestamp, level, event name, then fmt's key=value pairs.
 * The line is written with a single fwrite so concurrent threads do not
 * interleave within a line. Safe with l == NULL (drops). */
void sd_log_write(const sd_log *l, sd_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Quotes an untrusted or free-text value for a key=value line: wraps it in
 * double quotes and escapes quotes, backslashes and control bytes. Returns
 * buf (always NUL-terminated, truncated if cap is short). */
const char *sd_log_quote(char *buf, size_t cap, const char *s);

#define SD_DEBUG(l, ev, ...) sd_log_write((l), SD_LOG_DEBUG, (ev), __VA_ARGS__)
#define SD_INFO(l, ev, ...)  sd_log_write((l), SD_LOG_INFO, (ev), __VA_ARGS__)
#define SD_WARN(l, ev, ...)  sd_log_write((l), SD_LOG_WARN, (ev), __VA_ARGS__)
#define SD_ERROR(l, ev, ...) sd_log_write((l), SD_LOG_ERROR, (ev), __VA_ARGS__)

#endif
