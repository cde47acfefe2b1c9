/* relay_fill.c - test helper: records N incidents into a gateway journal
 * through the gateway's own submission path (gw_node_submit), for workloads
 * too large to record one CLI call at a time. Each entry is appended without
 * its own sync and the whole file system is synced once at the end (a test
 * shortcut; the CLI syncs every report). The journal is left unconfirmed if
 * it was new, exactly as CLI submissions would leave it.
 * usage: relay_fill JOURNAL_DIR CERT_PEM N TITLE_PREFIX */
#define _DEFAULT_SOURCE /* sync(2) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/x509_crt.h>

#include "fws/posix.h"
#include "gw/node.h"
#include "gw/tls.h"
#include "proto/err.h"

static int no_sync(void *ctx, fws_file *f)
{
    (void)ctx;
    (void)f;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: relay_fill JOURNAL_DIR CERT_PEM N TITLE_PREFIX\n");
        return 2;
    }
    char *end = NULL;
    unsigned long n = strtoul(argv[3], &end, 10);
    if (!end || *end || n == 0 || n > 10000000) {
        fprintf(stderr, "relay_fill: bad N\n");
        return 2;
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    ss_ident id;
    if (mbedtls_x509_crt_parse_file(&crt, argv[2]) != 0 ||
        gw_crt_ident(&crt, &id, NULL, 0, NULL) < 0) {
        fprintf(stderr, "relay_fill: %s: not a sitesync certificate\n", argv[2]);
        mbedtls_x509_crt_free(&crt);
        return 1;
    }
    mbedtls_x509_crt_free(&crt);
    fws shim;
    fws_posix *px = NULL;
    fws_posix_config pc = { argv[1], FWS_LOG_WARN, "relay_fill" };
    if (fws_posix_new(&pc, &px, &shim) < 0)
        return 1;
    fws_ops ops = *shim.ops;
    ops.sync = no_sync;
    fws fast = { &ops, shim.ctx };
    gw_journal_config jc;
    gw_journal_config_default(&jc);
    gw_node node;
    int rc = gw_node_open(&node, &fast, &id, &jc);
    if (rc < 0) {
        fprintf(stderr, "relay_fill: open: %s\n", ss_strerror(rc));
        fws_posix_destroy(px);
        return 1;
    }
    unsigned long i;
    for (i = 0; i < n && rc == 0; i++) {
        ss_change ch;
        ss_verr err;
        char title[128];
        snprintf(title, sizeof(title), "%s-%lu", argv[4], i + 1);
        rc = gw_node_begin(&node, &ch, SS_COLL_INCIDENT, SS_OP_CREATE, NULL, NULL, &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "category", "intrusion", &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "severity", "3", &err);
        if (rc == 0)
            rc = ss_change_set_text(&ch, "title", title, &err);
        if (rc == 0)
            rc = gw_node_submit(&node, &ch, &err);
        if (rc < 0)
            fprintf(stderr, "relay_fill: change %lu: %s\n", i + 1, err.msg);
    }
    gw_node_free(&node);
    fws_posix_destroy(px);
    sync();
    printf("%lu\n", rc == 0 ? i : i - 1);
    return rc == 0 ? 0 : 1;
}
