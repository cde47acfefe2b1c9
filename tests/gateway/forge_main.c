/* forge_main.c - integration-test helper: writes a change for a site the
 * gateway's certificate does not name straight into its journal (bypassing
 * gw_node_submit's site check, as a tampered or buggy gateway would), so the
 * test can show that the daemon refuses it and the gateway reports it.
 * usage: gw_forge JOURNAL_DIR NODE SITE TITLE */
#include <stdio.h>
#include <string.h>

#include "fws/posix.h"
#include "gw/journal.h"
#include "proto/err.h"
#include "proto/schema.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: gw_forge JOURNAL_DIR NODE SITE TITLE\n");
        return 2;
    }
    fws shim;
    fws_posix *px = NULL;
    fws_posix_config pc = { argv[1], FWS_LOG_WARN, "gw_forge" };
    if (fws_posix_new(&pc, &px, &shim) < 0)
        return 1;
    gw_journal j;
    gw_journal_config jc;
    gw_journal_config_default(&jc);
    int rc = gw_journal_open(&j, &shim, &jc);
    if (rc < 0) {
        fprintf(stderr, "gw_forge: open: %s\n", ss_strerror(rc));
        fws_posix_destroy(px);
        return 1;
    }
    ss_change ch;
    ss_verr err;
    memset(&ch, 0, sizeof(ch));
    int n = 0;
    const ss_collection_def *cols = ss_schema_collections(&n);
    for (int i = 0; i < n; i++)
        if (cols[i].id == SS_COLL_INCIDENT)
            ch.coll = &cols[i];
    ch.seq = gw_journal_next_seq(&j);
    ch.hlc = gw_journal_hlc(&j) + 0x10000;
    ch.op = SS_OP_CREATE;
    snprintf(ch.site, sizeof(ch.site), "%s", argv[3]);
    ss_incident_key(ch.key, sizeof(ch.key), argv[2], ch.hlc);
    char buf[4096];
    if ((rc = ss_change_set_text(&ch, "category", "sabotage", &err)) < 0 ||
        (rc = ss_change_set_text(&ch, "severity", "5", &err)) < 0 ||
        (rc = ss_change_set_text(&ch, "title", argv[4], &err)) < 0 ||
        (rc = ss_change_validate(&ch, &err)) < 0 ||
        (rc = ss_change_encode(&ch, buf, sizeof(buf))) < 0) {
        fprintf(stderr, "gw_forge: %s\n", err.msg);
    } else {
        rc = gw_journal_append(&j, ch.seq, ch.hlc, buf, (size_t)rc);
        if (rc == 0)
            printf("%s\n", ch.key);
    }
    gw_journal_free(&j);
    fws_posix_destroy(px);
    return rc < 0 ? 1 : 0;
}
