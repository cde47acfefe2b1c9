/* admin_main.c - sitesync-admin: parses the command line, opens the
 * daemon's database read-only (it may be running) and prints the answer of
 * one sd_admin query as a table, JSON or CSV. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "proto/err.h"
#include "sd/admin.h"
#include "sd/store.h"

/* Exit codes: 0 ok; 1 audit verify found the chain broken; 2 bad usage;
 * 3 the database could not be opened or read; 4 no such record. */
enum { EXIT_OK = 0, EXIT_BROKEN = 1, EXIT_USAGE = 2, EXIT_DB = 3, EXIT_NOTFOUND = 4 };

static const char usage_text[] =
    "usage: sitesync-admin --db PATH [--json] <command> [options]\n"
    "\n"
    "Reads the sitesyncd database read-only; safe while the daemon runs.\n"
    "\n"
    "commands:\n"
    "  sites [--stale-after SECONDS]      sites: alert level, last report, last seen, stale?\n"
    "                                     (default threshold 3600 s)\n"
    "  incidents [--site S] [--status S] [--since TIME] [--severity N] [--limit N] [--csv]\n"
    "                                     merged incidents, newest first\n"
    "  audit [--origin O] [--key K] [--outcome O] [--since TIME] [--limit N] [--csv]\n"
    "                                     the audit trail (newest N, oldest first; --outcome\n"
    "                                     rejected matches every refusal)\n"
    "  audit verify [--head HASH:ID]      recompute the hash chain; exit 1 if broken\n"
    "  audit head                         print the current chain head to save elsewhere\n"
    "  peers                              peers and origins: last seen, committed seq, errors\n"
    "  conflicts [--since TIME] [--limit N] [--csv]\n"
    "                                     the loser ledger: values that lost under LWW\n"
    "  sessions [--since TIME] [--limit N] [--csv]\n"
    "                                     sync sessions with counts, bytes, errors\n"
    "  record COLLECTION KEY              one merged record: each field's value with the\n"
    "                                     clock (hlc) and origin that wrote it\n"
    "\n"
    "global options:\n"
    "  --db PATH    the sitesyncd database (required)\n"
    "  --json       machine-readable JSON instead of a table\n"
    "  --help       this text\n"
    "\n"
    "TIME: 2026-12-04, 2026-12-04T16:03:33Z, Unix seconds, or an age: 90s, 15m, 2h, 7d.\n"
    "exit codes: 0 ok, 1 audit chain broken, 2 bad usage, 3 database error,\n"
    "4 no such record.\n";

typedef struct opts {
    const char *db;
    int json, csv;
    const char *cmd, *sub;
    const char *head;
    sd_admin_filter f;
} opts;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "sitesync-admin: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sitesync-admin --help'.\n");
    return EXIT_USAGE;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_int_arg(const char *name, const char *v, long long min, long long max,
                         long long *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!v[0] || *end || errno || n < min || n > max) {
        fprintf(stderr, "sitesync-admin: %s: '%s' is not a number in %lld..%lld\n", name, v, min,
                max);
        return -1;
    }
    *out = n;
    return 0;
}

/* Which options each command takes. */
static int allowed(const char *cmd, const char *sub, const char *opt)
{
    if (strcmp(cmd, "sites") == 0)
        return strcmp(opt, "--stale-after") == 0;
    if (strcmp(cmd, "incidents") == 0)
        return strcmp(opt, "--site") == 0 || strcmp(opt, "--status") == 0 ||
               strcmp(opt, "--since") == 0 || strcmp(opt, "--severity") == 0 ||
               strcmp(opt, "--limit") == 0 || strcmp(opt, "--csv") == 0;
    if (strcmp(cmd, "audit") == 0 && sub && strcmp(sub, "verify") == 0)
        return strcmp(opt, "--head") == 0;
    if (strcmp(cmd, "audit") == 0 && sub)
        return 0;
    if (strcmp(cmd, "audit") == 0)
        return strcmp(opt, "--origin") == 0 || strcmp(opt, "--key") == 0 ||
               strcmp(opt, "--outcome") == 0 || strcmp(opt, "--since") == 0 ||
               strcmp(opt, "--limit") == 0 || strcmp(opt, "--csv") == 0;
    if (strcmp(cmd, "conflicts") == 0 || strcmp(cmd, "sessions") == 0)
        return strcmp(opt, "--since") == 0 || strcmp(opt, "--limit") == 0 ||
               strcmp(opt, "--csv") == 0;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->f.now_ms = now_ms();
    const char *pending[64][2];
    int npending = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(EXIT_OK);
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--csv") == 0) {
            if (npending == 64)
                return usage_error("too many options");
            pending[npending][0] = a;
            pending[npending++][1] = NULL;
        } else if (strncmp(a, "--", 2) == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            if (strcmp(a, "--db") == 0) {
                o->db = argv[++i];
                continue;
            }
            if (npending == 64)
                return usage_error("too many options");
            pending[npending][0] = a;
            pending[npending++][1] = argv[++i];
        } else if (!o->cmd) {
            o->cmd = a;
        } else if (!o->sub && strcmp(o->cmd, "audit") == 0 &&
                   (strcmp(a, "verify") == 0 || strcmp(a, "head") == 0)) {
            o->sub = a;
        } else if (strcmp(o->cmd, "record") == 0 && !o->f.collection) {
            o->f.collection = a;
        } else if (strcmp(o->cmd, "record") == 0 && !o->f.key) {
            o->f.key = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (!o->cmd)
        return usage_error("no command given");
    static const char *const cmds[] = { "sites",     "incidents", "audit",  "peers",
                                        "conflicts", "sessions",  "record", NULL };
    int known = 0;
    for (int i = 0; cmds[i]; i++)
        known |= strcmp(o->cmd, cmds[i]) == 0;
    if (!known)
        return usage_error("unknown command '%s'", o->cmd);
    if (!o->db)
        return usage_error("--db PATH is required");
    if (strcmp(o->cmd, "record") == 0 && !o->f.key)
        return usage_error("record needs a collection and a key");
    for (int i = 0; i < npending; i++) {
        const char *name = pending[i][0], *v = pending[i][1];
        long long n = 0;
        if (!allowed(o->cmd, o->sub, name)) {
            fprintf(stderr, "sitesync-admin: %s%s%s does not take %s\n", o->cmd, o->sub ? " " : "",
                    o->sub ? o->sub : "", name);
            return EXIT_USAGE;
        }
        if (strcmp(name, "--csv") == 0) {
            o->csv = 1;
        } else if (strcmp(name, "--stale-after") == 0) {
            if (parse_int_arg(name, v, 1, 100LL * 365 * 86400, &n))
                return EXIT_USAGE;
            o->f.stale_after_ms = n * 1000;
        } else if (strcmp(name, "--severity") == 0) {
            if (parse_int_arg(name, v, 1, 5, &n))
                return EXIT_USAGE;
            o->f.severity = (int)n;
        } else if (strcmp(name, "--limit") == 0) {
            if (parse_int_arg(name, v, 1, 100000000, &n))
                return EXIT_USAGE;
            o->f.limit = (int)n;
        } else if (strcmp(name, "--since") == 0) {
            if (sd_admin_parse_time(v, o->f.now_ms, &o->f.since_ms) != 0)
                return usage_error("--since: '%s' is not a time (2026-12-04, "
                                   "2026-12-04T16:03:33Z, Unix seconds, or 90s/15m/2h/7d)",
                                   v);
        } else if (strcmp(name, "--site") == 0) {
            o->f.site = v;
        } else if (strcmp(name, "--status") == 0) {
            o->f.status = v;
        } else if (strcmp(name, "--origin") == 0) {
            o->f.origin = v;
        } else if (strcmp(name, "--key") == 0) {
            o->f.key = v;
        } else if (strcmp(name, "--outcome") == 0) {
            o->f.outcome = v;
        } else if (strcmp(name, "--head") == 0) {
            sd_audit_head h;
            if (sd_audit_head_parse(v, &h) != 0)
                return usage_error("--head: '%s' is not <64 hex digits>:<entry id>", v);
            o->head = v;
        }
    }
    if (o->csv && o->json)
        return usage_error("--csv and --json exclude each other");
    return -1; /* parsed; go on */
}

/* ---- output ---- */

static void print_table(const sd_table *t)
{
    enum { MAXW = 48 };
    size_t w[64] = { 0 };
    int ncols = t->ncols < 64 ? t->ncols : 64;
    for (int c = 0; c < ncols; c++) {
        if (!t->brief[c])
            continue;
        w[c] = strlen(t->cols[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            const char *v = sd_table_cell(t, r, c);
            size_t n = v ? strlen(v) : 1;
            if (n > w[c])
                w[c] = n;
        }
        if (w[c] > MAXW)
            w[c] = MAXW;
    }
    int last = -1;
    for (int c = 0; c < ncols; c++)
        if (t->brief[c])
            last = c;
    for (int pass = 0; pass < 2; pass++) {
        int first = 1;
        for (int c = 0; c < ncols; c++) {
            if (!t->brief[c])
                continue;
            if (pass == 0) {
                printf("%s%-*s", first ? "" : "  ", c == last ? 0 : (int)w[c], t->cols[c]);
            } else {
                printf("%s", first ? "" : "  ");
                for (size_t k = 0; k < w[c]; k++)
                    putchar('-');
            }
            first = 0;
        }
        printf("\n");
    }
    for (size_t r = 0; r < t->nrows; r++) {
        int first = 1;
        for (int c = 0; c < ncols; c++) {
            if (!t->brief[c])
                continue;
            const char *v = sd_table_cell(t, r, c);
            char cell[MAXW + 1];
            if (!v)
                v = "-";
            size_t n = strlen(v);
            if (n > MAXW) {
                memcpy(cell, v, MAXW - 3);
                memcpy(cell + MAXW - 3, "...", 4);
            } else {
                memcpy(cell, v, n + 1);
            }
            /* Multi-line text would break the table: show it on one line. */
            for (char *p = cell; *p; p++)
                if (*p == '\n' || *p == '\r' || *p == '\t')
                    *p = ' ';
            /* No padding after the last column: no trailing blanks. */
            printf("%s%-*s", first ? "" : "  ", c == last ? 0 : (int)w[c], cell);
            first = 0;
        }
        printf("\n");
    }
    printf("(%zu row%s)\n", t->nrows, t->nrows == 1 ? "" : "s");
}

static int print_json(const sd_table *t)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return -1;
    for (size_t r = 0; r < t->nrows; r++) {
        cJSON *obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToArray(arr, obj)) {
            cJSON_Delete(obj);
            cJSON_Delete(arr);
            return -1;
        }
        for (int c = 0; c < t->ncols; c++) {
            const char *v = sd_table_cell(t, r, c);
            cJSON *item = NULL;
            if (!v)
                item = cJSON_CreateNull();
            else if (t->kinds[c] == SD_COL_INT)
                item = cJSON_CreateNumber(strtod(v, NULL));
            else if (t->kinds[c] == SD_COL_BOOL)
                item = cJSON_CreateBool(strcmp(v, "true") == 0);
            else if (t->kinds[c] == SD_COL_JSON)
                item = cJSON_Parse(v);
            if (!item)
                item = cJSON_CreateString(v ? v : "");
            cJSON_AddItemToObject(obj, t->cols[c], item);
        }
    }
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    if (!text)
        return -1;
    printf("%s\n", text);
    cJSON_free(text);
    return 0;
}

/* RFC 4180: fields with a comma, quote, CR or LF are quoted, quotes doubled;
 * records end in CRLF. */
static void csv_field(const char *v)
{
    if (!v)
        return;
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, stdout);
        return;
    }
    putchar('"');
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            putchar('"');
        putchar(*p);
    }
    putchar('"');
}

static void print_csv(const sd_table *t)
{
    for (int c = 0; c < t->ncols; c++) {
        if (c)
            putchar(',');
        csv_field(t->cols[c]);
    }
    fputs("\r\n", stdout);
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            if (c)
                putchar(',');
            csv_field(sd_table_cell(t, r, c));
        }
        fputs("\r\n", stdout);
    }
}

/* A record for people: one line per field with its value and who wrote it. */
static void print_record(const sd_table *t)
{
    printf("%s/%s  site %s  deleted %s  updated %s  received %s\n", sd_table_cell(t, 0, 0),
           sd_table_cell(t, 0, 1), sd_table_cell(t, 0, 2), sd_table_cell(t, 0, 3),
           sd_table_cell(t, 0, 4) ? sd_table_cell(t, 0, 4) : "-",
           sd_table_cell(t, 0, 5) ? sd_table_cell(t, 0, 5) : "-");
    const char *clocks = sd_table_cell(t, 0, 7);
    cJSON *c = clocks ? cJSON_Parse(clocks) : NULL;
    cJSON *fields = cJSON_GetObjectItem(c, "fields");
    printf("%-20s  %-30s  %-30s  %s\n", "field", "value", "hlc", "origin");
    for (cJSON *f = fields ? fields->child : NULL; f; f = f->next) {
        char *v = cJSON_PrintUnformatted(cJSON_GetObjectItem(f, "value"));
        const char *hlc = cJSON_GetStringValue(cJSON_GetObjectItem(f, "hlc"));
        const char *origin = cJSON_GetStringValue(cJSON_GetObjectItem(f, "origin"));
        printf("%-20s  %-30s  %-30s  %s\n", f->string, v ? v : "?", hlc ? hlc : "?",
               origin ? origin : "?");
        cJSON_free(v);
    }
    cJSON *tomb = cJSON_GetObjectItem(c, "tombstone");
    if (tomb && cJSON_IsObject(tomb)) {
        const char *hlc = cJSON_GetStringValue(cJSON_GetObjectItem(tomb, "hlc"));
        const char *origin = cJSON_GetStringValue(cJSON_GetObjectItem(tomb, "origin"));
        printf("deleted at %s by %s (older field values are gone)\n", hlc ? hlc : "?",
               origin ? origin : "?");
    }
    cJSON_Delete(c);
}

static int run_verify(sd_store *s, const opts *o)
{
    sd_audit_head saved;
    char head[SD_AUDIT_HEAD_TEXT_MAX];
    if (o->head && sd_audit_head_parse(o->head, &saved) != 0) {
        fprintf(stderr, "sitesync-admin: --head: '%s' is not <64 hex digits>:<entry id>\n",
                o->head);
        return EXIT_USAGE;
    }
    sd_audit_report r;
    int rc = sd_audit_verify(s, o->head ? &saved : NULL, &r);
    if (rc) {
        fprintf(stderr, "sitesync-admin: audit verify: %s\n", sd_store_last_error(s));
        return EXIT_DB;
    }
    sd_audit_head_format(&r.head, head, sizeof head);
    if (o->json) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddBoolToObject(obj, "ok", r.ok);
        cJSON_AddNumberToObject(obj, "entries", (double)r.entries);
        if (r.ok) {
            cJSON_AddNullToObject(obj, "broken_id");
            cJSON_AddNullToObject(obj, "reason");
        } else {
            cJSON_AddNumberToObject(obj, "broken_id", (double)r.broken_id);
            cJSON_AddStringToObject(obj, "reason", r.reason);
        }
        cJSON_AddStringToObject(obj, "head", head);
        cJSON_AddBoolToObject(obj, "checked_saved_head", o->head != NULL);
        char *text = cJSON_Print(obj);
        cJSON_Delete(obj);
        if (text)
            printf("%s\n", text);
        cJSON_free(text);
    } else if (r.ok) {
        printf("audit chain OK: %lld entries verified%s; head %s\n", (long long)r.entries,
               o->head ? " against the saved head" : "", head);
    } else {
        printf("audit chain BROKEN at entry %lld: %s\n", (long long)r.broken_id, r.reason);
        printf("(%lld entries verified before it)\n", (long long)r.entries);
    }
    return r.ok ? EXIT_OK : EXIT_BROKEN;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    sd_store_config cfg = { 0 };
    sd_store *s = NULL;
    char err[512];
    cfg.path = o.db;
    cfg.readonly = 1;
    rc = sd_store_open(&cfg, &s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sitesync-admin: cannot open database: %s\n", err);
        return EXIT_DB;
    }

    int exit_code = EXIT_OK;
    if (strcmp(o.cmd, "audit") == 0 && o.sub && strcmp(o.sub, "verify") == 0) {
        exit_code = run_verify(s, &o);
        sd_store_close(s);
        return exit_code;
    }
    if (strcmp(o.cmd, "audit") == 0 && o.sub && strcmp(o.sub, "head") == 0) {
        sd_audit_head h;
        char text[SD_AUDIT_HEAD_TEXT_MAX];
        if (sd_audit_head_get(s, &h) != 0) {
            fprintf(stderr, "sitesync-admin: audit head: %s\n", sd_store_last_error(s));
            sd_store_close(s);
            return EXIT_DB;
        }
        sd_audit_head_format(&h, text, sizeof text);
        if (o.json)
            printf("{\"head\":\"%s\",\"id\":%lld}\n", text, (long long)h.id);
        else
            printf("%s\n", text);
        sd_store_close(s);
        return EXIT_OK;
    }

    sd_table t;
    sd_table_init(&t);
    if (strcmp(o.cmd, "sites") == 0)
        rc = sd_admin_sites(s, &o.f, &t);
    else if (strcmp(o.cmd, "incidents") == 0)
        rc = sd_admin_incidents(s, &o.f, &t);
    else if (strcmp(o.cmd, "audit") == 0)
        rc = sd_admin_audit(s, &o.f, &t);
    else if (strcmp(o.cmd, "peers") == 0)
        rc = sd_admin_peers(s, &o.f, &t);
    else if (strcmp(o.cmd, "conflicts") == 0)
        rc = sd_admin_conflicts(s, &o.f, &t);
    else if (strcmp(o.cmd, "record") == 0)
        rc = sd_admin_record(s, &o.f, &t);
    else
        rc = sd_admin_sessions(s, &o.f, &t);
    if (rc) {
        fprintf(stderr, "sitesync-admin: %s: %s\n", o.cmd,
                rc == SS_EDB ? sd_store_last_error(s) : ss_strerror(rc));
        exit_code = EXIT_DB;
    } else if (strcmp(o.cmd, "record") == 0 && t.nrows == 0) {
        fprintf(stderr, "sitesync-admin: no record %s/%s\n", o.f.collection, o.f.key);
        exit_code = EXIT_NOTFOUND;
    } else if (strcmp(o.cmd, "record") == 0 && !o.json) {
        print_record(&t);
    } else if (o.json) {
        if (print_json(&t) != 0) {
            fprintf(stderr, "sitesync-admin: out of memory formatting JSON\n");
            exit_code = EXIT_DB;
        }
    } else if (o.csv) {
        print_csv(&t);
    } else {
        print_table(&t);
    }
    sd_table_free(&t);
    sd_store_close(s);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "sitesync-admin: writing output: %s\n", strerror(errno));
        return EXIT_DB;
    }
    return exit_code;
}
