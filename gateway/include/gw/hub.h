/* hub.h - the regional hub's store-and-forward journal: whole envelopes
 * (with the route to forward them under) of many origins, in arrival order,
 * in append-only CRC-checked segments on shim storage; per origin the
 * highest sequence accepted and the highest the upstream has committed, in
 * an atomically replaced checkpoint; a fixed-size record index; reclaim of
 * segments whose every envelope the upstream has committed; a capacity that
 * refuses new envelopes (SS_EFULL) and never drops accepted ones.
 *
 * On-storage layout (hub format version 1):
 *   hseg-<16 hex segment number>.log  records, each:
 *       u32 magic "SSH1" | u32 body_len | u32 crc32c(magic, body_len, body) |
 *       body = u8 origin_len | origin | u64 first_seq | u32 count |
 *              u16 route_len | route prefix (relay.h, 0 bytes: unrouted) |
 *              envelope bytes exactly as received
 *   hub.ckpt     magic "SSHC" | u32 version | u64 generation | u32 n |
 *                n x (u8 len | origin | u64 accepted | u64 committed |
 *                u64 refused) | u32 crc32c; replaced with fws_write_atomic
 *   hub-refused.log, hub-refused.old.log  what the upstream refused (bounded)
 *
 * Durability: gw_hubj_append writes without syncing; gw_hubj_sync makes
 * every record appended so far durable: the relay acknowledges downstream
 * only after it (one sync for many envelopes: a group commit). The
 * checkpoint is written before any segment is removed. Recovery truncates a
 * torn tail of the last segment, resynchronises past a damaged record in an
 * older one (counted and logged: that envelope is lost and the upstream will
 * report the gap), and rebuilds the index. */
#ifndef GW_HUB_H
#define GW_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "fws/fws.h"
#include "proto/ident.h"

#define GW_HUB_MAGIC      0x53534831u /* "SSH1" */
#define GW_HUB_CKPT_MAGIC 0x53534843u /* "SSHC" */
#define GW_HUB_REC_HDR    12u
#define GW_HUB_NO_REC     UINT32_MAX

typedef struct gw_hubj_config {
    uint64_t capacity;     /* bytes of segments (default 256 MiB) */
    uint32_t segment_max;  /* bytes per segment before rotating */
    uint32_t max_records;  /* envelopes held at most (index size) */
    uint32_t max_origins;  /* origins tracked at most */
    uint32_t max_envelope; /* largest route + envelope accepted */
    uint32_t refused_max;  /* refused log size before rotation */
} gw_hubj_config;

void gw_hubj_config_default(gw_hubj_config *c);

typedef struct gw_hub_rec {
    uint64_t first, last;
    uint64_t seg, off; /* segment number, record offset */
    uint32_t len;      /* route + envelope bytes */
    uint32_t origin;   /* index into origins */
    uint32_t next;     /* next record of the same origin, or GW_HUB_NO_REC */
} gw_hub_rec;

typedef struct gw_hub_origin {
    char id[SS_ID_MAX + 1];
    uint64_t accepted;   /* highest sequence ever accepted (durably) */
    uint64_t committed;  /* highest sequence the upstream committed */
    uint64_t refused;    /* envelopes/changes the upstream refused */
    uint32_t head, tail; /* this origin's pending records, oldest first */
    uint32_t nrecs;
} gw_hub_origin;

typedef struct gw_hubj_stats {
    uint64_t used_bytes, capacity;
    uint32_t segments, records, origins;
    uint64_t full_refusals, crc_failures, torn_bytes, lost_records;
} gw_hubj_stats;

/* Caller-allocated; fields are private to gw_hubj_* except that the relay
 * reads origins[] and recs[] (read-only). */
typedef struct gw_hubj {
    const fws *shim;
    gw_hubj_config cfg;
    int readonly;
    gw_hub_rec *recs; /* ring of max_records, arrival order */
    uint32_t rhead, rcount;
    gw_hub_origin *origins;
    uint32_t norigins;
    uint64_t first_seg, cur_seg; /* existing segments first_seg..cur_seg */
    uint64_t cur_size;           /* bytes of cur_seg */
    uint64_t used;               /* bytes of all segments */
    fws_file *cur;               /* open cur_seg (append), NULL if none */
    int unsynced, dirty, broken;
    uint64_t gen;
    uint64_t full_refusals, crc_failures, torn_bytes, lost_records;
    uint8_t *ckbuf;
    size_t ckcap;
    int open;
} gw_hubj;

void gw_hubj_init(gw_hubj *h);
/* Opens and recovers the hub journal (readonly: no truncation, removal or
 * checkpoint, for `journal` while a relay runs). Returns 0 or SS_EINVAL,
 * SS_ENOMEM, SS_EIO, SS_ECORRUPT (checkpoint unreadable, or more origins or
 * records than configured). */
int gw_hubj_open(gw_hubj *h, const fws *shim, const gw_hubj_config *cfg, int readonly);
void gw_hubj_free(gw_hubj *h);

/* Index of origin id, creating it if create (SS_ELIMIT when the table is
 * full), or SS_ENOENT. */
int gw_hubj_origin(gw_hubj *h, const char *id, int create);
/* The highest sequence of origin o known durable anywhere: max(accepted,
 * committed); what WELCOME tells a downstream. */
uint64_t gw_hubj_have(const gw_hubj *h, uint32_t o);

/* Appends one envelope of origin o covering [first, first+count) with its
 * forwarding route prefix (route_len 0: unrouted). Not yet durable: call
 * gw_hubj_sync before acknowledging. Returns the record index, or SS_EFULL
 * (capacity, index or storage: nothing kept), SS_EOVERSIZE, SS_EIO. */
int gw_hubj_append(gw_hubj *h, uint32_t o, uint64_t first, uint32_t count, const uint8_t *route,
                   size_t route_len, const uint8_t *env, size_t env_len);
/* Makes every appended record durable. 0 or SS_EIO (then the journal is
 * broken: the relay must stop; a reopen recovers). */
int gw_hubj_sync(gw_hubj *h);

/* Reads record r's route + envelope bytes into buf[cap]; *route_len gets the
 * route's share. Returns the total length, SS_ENOSPC, SS_EIO, SS_ECORRUPT. */
int gw_hubj_read(gw_hubj *h, uint32_t r, uint8_t *buf, size_t cap, size_t *route_len);

/* The upstream committed origin o up to seq (monotonic; also raises
 * accepted). Marks the checkpoint dirty. */
void gw_hubj_commit(gw_hubj *h, uint32_t o, uint64_t seq);
/* Writes the checkpoint if dirty, then removes fully committed segments.
 * 0 or SS_EIO. */
int gw_hubj_checkpoint(gw_hubj *h);

/* Records what the upstream refused (one synced line, bounded log). */
int gw_hubj_note_refused(gw_hubj *h, uint32_t o, uint64_t seq, const char *code,
                         const char *message);
int gw_hubj_refused_walk(gw_hubj *h, int (*cb)(void *arg, const char *line), void *arg);

/* Changes of origin o held and not committed upstream. */
uint64_t gw_hubj_pending(const gw_hubj *h, uint32_t o);
void gw_hubj_stats_get(const gw_hubj *h, gw_hubj_stats *st);

#endif
