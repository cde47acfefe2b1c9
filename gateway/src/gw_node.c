/* gw_node.c - gateway state and submission: identity, clock, sequence
 * numbers, and the path from a validated change to a synced journal entry. */
#include "gw/node.h"

#include <string.h>

#include "proto/alloc.h"
#include "proto/err.h"

void gw_node_init(gw_node *n)
{
    memset(n, 0, sizeof(*n));
    gw_journal_init(&n->journal);
}

int gw_node_open(gw_node *n, const fws *shim, const ss_ident *id, const gw_journal_config *jc)
{
    gw_node_init(n);
    if (!shim || !id || !jc)
        return SS_EINVAL;
    if (ss_ident_finish(id) < 0 || (id->role != SS_ROLE_GATEWAY && id->role != SS_ROLE_RELAY))
        return SS_EIDENT;
    n->shim = shim;
    n->ident = *id;
    /* The encode buffer is allocated by the first submission: a sync never
     * needs it, and its heap peak is the gateway's tightest budget. */
    n->ebuf_cap = (size_t)jc->entry_max + 1;
    int rc = gw_journal_open(&n->journal, shim, jc);
    if (rc < 0) {
        gw_node_free(n);
        return rc;
    }
    ss_hlc_init(&n->hlc, gw_journal_hlc(&n->journal));
    n->open = 1;
    return 0;
}

void gw_node_free(gw_node *n)
{
    if (!n)
        return;
    gw_journal_free(&n->journal);
    ss_free(n->ebuf);
    n->ebuf = NULL;
    n->open = 0;
}

int gw_node_begin(gw_node *n, ss_change *ch, ss_collection_id coll, ss_op op, const char *key,
                  const char *site, ss_verr *err)
{
    int nc = 0;
    const ss_collection_def *cols = ss_schema_collections(&nc);
    if (!n || !n->open || !ch)
        return ss_verr_set(err, SS_EINVAL, "", "gateway not open");
    memset(ch, 0, sizeof(*ch));
    for (int i = 0; i < nc; i++)
        if (cols[i].id == coll)
            ch->coll = &cols[i];
    if (!ch->coll)
        return ss_verr_set(err, SS_EINVAL, "collection", "unknown collection");
    if (!site)
        site = n->ident.sites[0];
    if (ss_id_check_str(site) < 0)
        return ss_verr_set(err, SS_EID, "site", "site: not a valid id");
    if (!ss_ident_has_site(&n->ident, site))
        return ss_verr_set(err, SS_EFORBIDDEN, "site",
                           "site %s: not named in this gateway's certificate (node %s)", site,
                           n->ident.node);
    memcpy(ch->site, site, strlen(site) + 1);
    ch->op = op;
    int rc = ss_hlc_now(&n->hlc, (uint64_t)fws_wall_ms(n->shim), &ch->hlc);
    if (rc < 0)
        return ss_verr_set(err, rc, "hlc", "clock out of range");
    if (coll == SS_COLL_SITE_STATUS) {
        if (key && strcmp(key, site) != 0)
            return ss_verr_set(err, SS_EINVAL, "key", "site_status key must be the site id");
        memcpy(ch->key, site, strlen(site) + 1);
    } else if (!key) {
        if (op != SS_OP_CREATE)
            return ss_verr_set(err, SS_EMISSING, "key", "key: needed to change an incident");
        rc = ss_incident_key(ch->key, sizeof(ch->key), n->ident.node, ch->hlc);
        if (rc < 0)
            return ss_verr_set(err, rc, "key", "cannot mint an incident key");
    } else {
        size_t kl = strlen(key);
        if (ss_key_check(key, kl) < 0 || kl > SS_KEY_MAX)
            return ss_verr_set(err, SS_EID, "key", "key: not a valid record key");
        memcpy(ch->key, key, kl + 1);
    }
    return 0;
}

int gw_node_submit(gw_node *n, ss_change *ch, ss_verr *err)
{
    if (!n || !n->open || !ch)
        return ss_verr_set(err, SS_EINVAL, "", "gateway not open");
    if (!ss_ident_has_site(&n->ident, ch->site))
        return ss_verr_set(err, SS_EFORBIDDEN, "site",
                           "site %.64s: not named in this gateway's certificate (node %s)",
                           ch->site, n->ident.node);
    ch->seq = gw_journal_next_seq(&n->journal);
    int rc = ss_change_validate(ch, err);
    if (rc < 0)
        return rc;
    if (!n->ebuf) {
        n->ebuf = ss_malloc(n->ebuf_cap);
        if (!n->ebuf)
            return ss_verr_set(err, SS_ENOMEM, "", "no memory to encode the change");
    }
    rc = ss_change_encode(ch, n->ebuf, n->ebuf_cap);
    /* 16 bytes stay free so that a renumber (after a storage loss) can give
     * the entry a longer sequence number without passing entry_max. */
    if (rc == SS_ENOSPC || (rc > 0 && (size_t)rc + GW_RENUMBER_SLACK >= n->ebuf_cap))
        return ss_verr_set(err, SS_EOVERSIZE, "",
                           "change larger than the journal's entry_max (%zu, less %u)",
                           n->ebuf_cap - 1, GW_RENUMBER_SLACK);
    if (rc < 0)
        return ss_verr_set(err, rc, "", "cannot encode the change");
    size_t len = (size_t)rc;
    rc = gw_journal_append(&n->journal, ch->seq, ch->hlc, n->ebuf, len);
    if (rc == SS_EFULL)
        return ss_verr_set(err, rc, "",
                           "journal full (%s): input refused, nothing accepted was dropped; "
                           "sync to free space",
                           "capacity or storage");
    if (rc < 0 && n->journal.broken)
        /* The write failed and could not be taken back: storage may hold
         * the entry, and a reopen would then deliver it. Saying "failed"
         * would make the caller record it again under a second number. */
        return ss_verr_set(err, rc, "",
                           "storage failed during the write and it could not be rolled back: "
                           "the change (seq %llu) MAY be on storage and would then be delivered; "
                           "check `sitesync-gw journal` (next seq) before submitting it again",
                           (unsigned long long)ch->seq);
    if (rc < 0)
        return ss_verr_set(err, rc, "", "journal append failed: %s (nothing was recorded)",
                           ss_strerror(rc));
    return 0;
}

int gw_node_adopt_time(gw_node *n, ss_hlc_t remote)
{
    if (!n || !n->open)
        return SS_EINVAL;
    int rc = ss_hlc_recv(&n->hlc, remote, (uint64_t)fws_wall_ms(n->shim), 0, NULL);
    if (rc < 0)
        return rc;
    return gw_journal_save_hlc(&n->journal, n->hlc.last);
}
