/* node.h - the gateway's local state and submission API: its identity (from
 * its certificate), its hybrid logical clock (persisted through the journal,
 * never behind the daemon's time once connected), sequence allocation, and
 * submit = validate with the shared schema, encode, append and sync. A
 * submission returns 0 only once the change is durable. */
#ifndef GW_NODE_H
#define GW_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "fws/fws.h"
#include "gw/journal.h"
#include "proto/hlc.h"
#include "proto/ident.h"
#include "proto/schema.h"

/* Caller-allocated; fields are private except where noted. */
typedef struct gw_node {
    const fws *shim;
    gw_journal journal; /* may be read by the sync client and the CLI */
    ss_hlc hlc;
    ss_ident ident; /* node id, role and sites from the certificate */
    char *ebuf;     /* encode buffer, entry_max + 1 bytes, from the first submit */
    size_t ebuf_cap;
    int open;
} gw_node;

void gw_node_init(gw_node *n);

/* Opens the journal (recovering it) and starts the clock from the persisted
 * HLC. id must be a finished gateway (or relay) identity. Returns 0 or the
 * errors of gw_journal_open, SS_EIDENT for an unusable identity. */
int gw_node_open(gw_node *n, const fws *shim, const ss_ident *id, const gw_journal_config *jc);
void gw_node_free(gw_node *n);

/* Starts a change of one record: clears *ch, sets collection, op, site and
 * key, and stamps it with a new HLC. site NULL: the certificate's first site;
 * a site the certificate does not name is refused (SS_EFORBIDDEN). key: for
 * site_status it must be NULL or the site; for an incident create NULL mints
 * "<node>-<hlc>", otherwise it names the incident. Returns 0 or an error with
 * err naming the field. */
int gw_node_begin(gw_node *n, ss_change *ch, ss_collection_id coll, ss_op op, const char *key,
                  const char *site, ss_verr *err);

/* Validates ch with the shared schema, gives it the next sequence number,
 * encodes it and appends it durably. Returns 0 once synced (ch->seq then
 * holds its sequence), or the validation error (err names the field),
 * SS_EFORBIDDEN (site not in the certificate), SS_EFULL (journal full: the
 * input is refused, nothing accepted is dropped), SS_EOVERSIZE, SS_EIO,
 * SS_ENOMEM (the encode buffer, allocated by the first submission). */
int gw_node_submit(gw_node *n, ss_change *ch, ss_verr *err);

/* Adopts the daemon's time (WELCOME): the clock never runs behind it from
 * now on; persisted before returning. */
int gw_node_adopt_time(gw_node *n, ss_hlc_t remote);

#endif
