/* sd_store_internal.h - what sd_store.c, sd_merge.c, sd_audit.c and sd_admin.c
 * share about the store: the handle's layout, the cached statements and the
 * audit-chain primitives. Private to daemon/src. */
#ifndef SD_STORE_INTERNAL_H
#define SD_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "proto/envelope.h"
#include "sd/sig.h"
#include "sd/store.h"

/* On-disk schema version of the store (meta 'schema_version'), separate from
 * the software version. */
#define SD_SCHEMA_VERSION 1
#define SD_HASH_LEN       32
/* Page size of a new database, and the WAL size that triggers a checkpoint. */
#define SD_PAGE_SIZE            16384
#define SD_WAL_CHECKPOINT_BYTES (40 * 1024 * 1024)
#define SD_STR_(x)              #x
#define SD_STR(x)               SD_STR_(x)

/* Every statement the store runs more than once, prepared on first use and
 * cached for the life of the handle. */
enum sd_stmt_id {
    SD_ST_META_GET,
    SD_ST_META_PUT,
    SD_ST_ORIGIN_GET,
    SD_ST_ORIGIN_PUT,
    SD_ST_REC_INSERT,
    SD_ST_REC_GET,
    SD_ST_REC_UPDATE,
    SD_ST_AUDIT_INSERT,
    SD_ST_AUDIT_CHASH,
    SD_ST_CONSUMED_PUT,
    SD_ST_LOSER_INSERT,
    SD_ST_PEER_SEEN,
    SD_ST_PEER_SESSION,
    SD_ST_PEER_ERROR,
    SD_ST_SITE_SEEN,
    SD_ST_SESSION_INSERT,
    SD_ST_SESSION_END,
    SD_ST_SAVEPOINT,
    SD_ST_RELEASE,
    SD_ST_ROLLBACK_TO,
    SD_ST_BEGIN,
    SD_ST_COMMIT,
    SD_ST_ROLLBACK,
    SD_ST__COUNT
};

struct sd_store {
    sqlite3 *db;
    int readonly;
    int64_t skew_ms;
    int busy_ms;
    char *path; /* ss_malloc'd copy, for sd__store_reopen */
    sqlite3_stmt *st[SD_ST__COUNT];
    /* Audit chain head: kept in memory so each append needs no SELECT, and
     * written to meta by sd_store_commit, inside the transaction it seals. */
    uint8_t head_hash[SD_HASH_LEN];
    int64_t head_id;
    int head_dirty;
    /* Head at the start of the current envelope's savepoint, restored when
     * the savepoint is rolled back. */
    uint8_t sp_hash[SD_HASH_LEN];
    int64_t sp_id;
    int in_txn;
    EVP_MD *sha256; /* fetched once: implicit fetches cost a lock each */
    EVP_MD_CTX *md;
    char err[256]; /* last error, with SQLite's own message */
    /* Origin signatures (sd_store_set_sig); kept across sd__store_reopen. */
    struct sd_sig *sig;
    int require_sig;
    /* Scratch buffers reused by every merge (row state, JSON document,
     * audit serialization), grown on demand: no allocation per change. */
    uint8_t *scratch[6];
    size_t scratch_cap[6];
};

enum { SD_SCR_ROW, SD_SCR_STATE, SD_SCR_DOC, SD_SCR_TEXT, SD_SCR_AUDIT, SD_SCR_LOSER };
/* Scratch buffer i with room for need bytes, or NULL (out of memory). */
void *sd__scratch(sd_store *s, int i, size_t need);

/* The cached statement (reset, bindings cleared), or NULL with s->err set. */
sqlite3_stmt *sd__stmt(sd_store *s, int id);
/* Records an SQLite failure in s->err (with the original code and message)
 * and returns SS_EDB. */
int sd__db_fail(sd_store *s, const char *what);
/* Runs a statement that returns no rows; 0 or SS_EDB. */
int sd__step_done(sd_store *s, sqlite3_stmt *st, const char *what);
int sd__exec(sd_store *s, const char *sql);

/* SHA-256 of data into out; 0 or SS_EINTERNAL. */
int sd__sha256(sd_store *s, const void *data, size_t len, uint8_t out[SD_HASH_LEN]);

/* One audit entry. Strings may be NULL (stored as NULL); hlc 0 and seq 0 are
 * stored as NULL. */
typedef struct sd_audit_entry {
    int64_t at_ms;
    const char *peer, *fingerprint, *serial, *path;
    const char *origin;
    uint64_t seq;
    const char *collection, *key, *site, *op;
    const char *fields; /* JSON object text */
    uint64_t hlc;
    const char *outcome;
    const char *detail;
    const uint8_t *chash; /* SHA-256 of the change bytes, or NULL */
} sd_audit_entry;

/* Appends an entry to the chain (id = head id + 1, hash = SHA-256(prev hash
 * || canonical columns)), updating the in-memory head. */
int sd__audit_append(sd_store *s, const sd_audit_entry *e);
/* Loads the head from meta (after open or a rolled-back transaction). */
int sd__audit_load_head(sd_store *s);
/* Writes the in-memory head to meta if it moved (sd_store_commit). */
int sd__audit_save_head(sd_store *s);

/* Upserts the peers row (node, role, fingerprint, last seen). */
int sd__peer_seen(sd_store *s, const sd_peer *peer, int64_t now_ms);

/* Registers sd_doc(collection, state) -> JSON object of the live fields and
 * sd_field(collection, state, name) -> the field's value (integer or text;
 * NULL when absent or null) on the handle (sd_merge.c). */
int sd__register_functions(sd_store *s);

/* Replaces the SQLite handle with a freshly opened one on the same file
 * (same settings, statements re-prepared on use), for the writer after
 * persistent I/O errors: whatever state the old connection was left in
 * after failed syncs or writes goes with it. Only outside a transaction.
 * On failure the old handle stays in place; returns 0 or the open error
 * (s->err says why). */
int sd__store_reopen(sd_store *s);

/* SS_EDB if SQLite already rolled back the caller's open transaction. */
int sd__txn_lost(sd_store *s);

/* Savepoint per envelope (refused when the transaction was lost). */
int sd__savepoint(sd_store *s);
int sd__release(sd_store *s);
int sd__rollback_to(sd_store *s);

/* What sd_prepare found out about one envelope (sd_prepare.c), consumed by
 * sd_store_apply_prepared (sd_merge.c) in the order sd_store_apply always
 * checked things. Pointers go into the caller's envelope bytes and into
 * body. */
struct sd_prepared {
    const uint8_t *bytes; /* the envelope bytes prepared (not owned) */
    size_t len;
    int64_t now_ms;
    int env_rc;      /* ss_envelope_parse: 0, or the envelope is malformed */
    ss_envelope env; /* when env_rc == 0 */
    /* Origin signature (only a SIGNED envelope with a verifier). */
    struct sd_sig *sig; /* verifier used, NULL: not verified here */
    uint64_t sig_gen;   /* its generation before verifying */
    int sig_rc;
    sd_sig_result sres;
    /* Body: parsed when the envelope is (also when the signature fails:
     * its changes are audited one by one). */
    int body_rc;
    ss_body *body;
    ss_verr verr;
    /* SHA-256 of each change's exact bytes (count entries), when the body
     * parsed; hash_rc says if hashing failed. */
    int hash_rc;
    uint8_t (*chash)[SD_HASH_LEN];
    struct sd_prepared *next; /* free lists of the writer, private */
};

/* sd_prepare with the hashing context given (the store's own, for
 * sd_store_apply on its thread). */
int sd__prepare(struct sd_sig *sig, EVP_MD_CTX *md, const EVP_MD *sha256, const uint8_t *bytes,
                size_t len, int64_t now_ms, sd_prepared **out);

#endif
