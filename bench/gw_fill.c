/* gw_fill.c - fills a real sitesync-gw journal with N incidents through the
 * gateway's own submission path (gw_node_begin + gw_node_submit on the posix
 * shim: validated, appended and synced before the next one, exactly as
 * `sitesync-gw incident` does), in one process so that the end-to-end
 * benchmark can prepare 100,000 records without 100,000 process starts.
 * Prints the submission rate: each submission is durable (one fsync). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/x509_crt.h>

#include "bench_util.h"
#include "fws/posix.h"
#include "gw/journal.h"
#include "gw/node.h"
#include "gw/tls.h"
#include "proto/err.h"

static int read_text(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return -1;
    }
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    return 0;
}

int main(int argc, char **argv)
{
    const char *journal = NULL, *cert = NULL;
    uint64_t count = 0, payload = 400, capacity = 256u << 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        int rc = 0;
        if (strcmp(argv[i], "--journal") == 0)
            journal = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "-n") == 0)
            rc = bench_parse_u64("-n", argv[i + 1], 1, 10000000, &count);
        else if (strcmp(argv[i], "--payload") == 0)
            rc = bench_parse_u64("--payload", argv[i + 1], 200, 4000, &payload);
        else if (strcmp(argv[i], "--capacity") == 0)
            rc = bench_parse_u64("--capacity", argv[i + 1], 1u << 20, UINT64_C(1) << 40, &capacity);
        else {
            fprintf(stderr, "gw_fill: unknown option %s\n", argv[i]);
            rc = -1;
        }
        if (rc != 0)
            return 2;
    }
    if (!journal || !cert || count == 0 || (argc % 2) == 0) {
        fprintf(stderr, "usage: gw_fill --journal DIR --cert GATEWAY.crt -n N [--payload B] "
                        "[--capacity BYTES]\n"
                        "Prints: gw_submit_per_s=<n> (each submission synced to storage).\n");
        return 2;
    }
    /* The identity comes from the certificate, as sitesync-gw derives it. */
    char *pem = NULL;
    if (read_text(cert, &pem) != 0) {
        fprintf(stderr, "gw_fill: cannot read %s\n", cert);
        return 1;
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    ss_ident id;
    memset(&id, 0, sizeof id);
    int rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem, strlen(pem) + 1);
    if (rc == 0)
        rc = gw_crt_ident(&crt, &id, NULL, 0, NULL);
    mbedtls_x509_crt_free(&crt);
    free(pem);
    if (rc != 0) {
        fprintf(stderr, "gw_fill: %s: no sitesync identity in the certificate\n", cert);
        return 1;
    }
    fws_posix_config pc = { .dir = journal, .log_level = FWS_LOG_WARN, .log_tag = "gw_fill" };
    fws_posix *posix = NULL;
    fws shim;
    if (fws_posix_new(&pc, &posix, &shim) < 0) {
        fprintf(stderr, "gw_fill: cannot use %s\n", journal);
        return 1;
    }
    gw_journal_config jc;
    gw_journal_config_default(&jc);
    jc.capacity = capacity;
    gw_node n;
    gw_node_init(&n);
    rc = gw_node_open(&n, &shim, &id, &jc);
    if (rc < 0) {
        fprintf(stderr, "gw_fill: journal %s: %s\n", journal, ss_strerror(rc));
        fws_posix_destroy(posix);
        return 1;
    }
    static const char *const cats[] = { "intrusion", "sabotage", "cyber", "fire", "threat" };
    static const char *const sev[] = { "1", "2", "3", "4", "5" };
    char *desc = malloc(payload + 1);
    char title[64];
    uint64_t rng = 7;
    size_t dl = payload > 200 ? payload - 200 : 1;
    if (!desc)
        return 1;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < count; i++) {
        ss_change ch;
        ss_verr err;
        memset(&err, 0, sizeof err);
        for (size_t k = 0; k < dl; k++)
            desc[k] = (char)('a' + (char)(bench_rand(&rng) % 26));
        desc[dl] = '\0';
        snprintf(title, sizeof title, "Perimeter alarm sector %llu", (unsigned long long)(i % 97));
        rc = gw_node_begin(&n, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, NULL, &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "category", cats[bench_rand(&rng) % 5], &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "severity", sev[bench_rand(&rng) % 5], &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "status", "open", &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "title", title, &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "occurred_at", "2026-05-01T12:00:00Z", &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "reported_by", "guard-7", &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "description", desc, &err);
        if (rc == 0)
            rc = gw_node_submit(&n, &ch, &err);
        if (rc != 0) {
            fprintf(stderr, "gw_fill: submission %llu refused: %s (%s)\n",
                    (unsigned long long)i + 1, err.msg[0] ? err.msg : ss_strerror(rc),
                    ss_err_name(rc));
            gw_node_free(&n);
            fws_posix_destroy(posix);
            return 1;
        }
    }
    double s = (double)(bench_now_ns() - t0) / 1e9;
    gw_journal_stats st;
    gw_journal_stats_get(&n.journal, &st);
    printf("gw_submit_per_s=%.0f submitted=%llu seconds=%.3f pending=%llu journal_bytes=%llu\n",
           s > 0 ? (double)count / s : 0.0, (unsigned long long)count, s,
           (unsigned long long)st.pending, (unsigned long long)st.used_bytes);
    free(desc);
    gw_node_free(&n);
    fws_posix_destroy(posix);
    return 0;
}
