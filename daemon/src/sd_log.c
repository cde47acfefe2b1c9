/* sd_log.c - one-line key=value event logging for sitesyncd (see sd/log.h). */
#include "sd/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "proto/err.h"

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void sd_log_init(sd_log *l, sd_log_level min, FILE *out)
{
    l->min = min;
    l->out = out ? out : stderr;
}

const char *sd_log_level_name(sd_log_level lvl)
{
    if ((int)lvl < 0 || (int)lvl > SD_LOG_ERROR)
        return "?";
    return level_names[lvl];
}

int sd_log_level_parse(const char *s)
{
    for (int i = 0; i <= SD_LOG_ERROR; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return SS_EINVAL;
}

void sd_log_write(const sd_log *l, sd_log_level lvl, const char *event, const char *fmt, ...)
{
    if (!l || lvl < l->min)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, sd_log_level_name(lvl), event);
    if (n < 0)
        return;
    size_t pos = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fmt && fmt[0] && pos + 1 < sizeof line) {
        line[pos++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        n = vsnprintf(line + pos, sizeof line - pos, fmt, ap);
        va_end(ap);
        if (n > 0)
            pos += (size_t)n < sizeof line - pos ? (size_t)n : sizeof line - pos - 1;
    }
    /* A truncated line still ends with a newline so the next event starts
     * on its own line. */
    if (pos >= sizeof line - 1)
        pos = sizeof line - 2;
    line[pos++] = '\n';
    fwrite(line, 1, pos, l->out);
    fflush(l->out);
}

const char *sd_log_quote(char *buf, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        /* Worst case an escape takes 4 bytes; keep room for the closing quote. */
        if (o + 5 >= cap)
            break;
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
