/* journal.h - the gateway's durable offline journal: append-only segment
 * files of CRC-32C-checked entries on shim storage, a two-slot checkpoint of
 * the highest acknowledged sequence (with the persisted HLC and the next
 * sequence), recovery that truncates a torn tail, reclaim of acknowledged
 * segments and a byte capacity that refuses new input rather than dropping
 * accepted data.
 *
 * On-storage layout (format version 1, independent of the software version):
 *   seg-<16 hex first seq>.log  entries, each:
 *       u32 magic "SSJ1" | u32 payload_len | u64 seq | u64 hlc |
 *       u32 crc32c(previous 24 bytes + payload) | payload
 *     payload = the change's JSON bytes exactly as they go on the wire.
 *     Sequences inside one segment are contiguous.
 *   ckpt-a, ckpt-b   checkpoint slots (generation counter + CRC; the older
 *                    slot is overwritten, recovery takes the newest valid)
 *   refused.log, refused.old.log  changes the daemon refused (text lines,
 *                    bounded: rotated at refused_max bytes)
 *   rn-<16 hex first seq>.log  segments being written by a renumber (below)
 *
 * Epoch and renumbering: a journal starts "unconfirmed" (no upstream has
 * answered it yet). A gateway that lost its storage but kept its certificate
 * numbers its offline entries 1, 2, ... again, numbers the daemon already
 * holds from the lost journal. The first WELCOME settles it: if its committed
 * sequence c reaches the first pending entry, the pending entries are
 * rewritten as c+1, c+2, ... (header and the JSON's "seq") into rn-* files,
 * synced, then one checkpoint write commits the switch (flag RN_COMMIT); the
 * stale seg-* files are removed, a checkpoint notes it (RN_RENAME), the rn-*
 * files are renamed to seg-*, and a last checkpoint clears the flags. Open
 * finishes an interrupted switch from whichever flag it finds, and removes
 * rn-* files of a renumber that never committed. The journal is marked
 * confirmed durably before anything is sent, so entries that may have
 * reached the daemon are never renumbered.
 *
 * Corruption policy: an entry whose CRC fails is never sent as data. Its
 * sequence number (and any other sequence number below the persisted next
 * sequence that cannot be found) is "lost": the sync client sends a
 * placeholder the daemon refuses and audits, so the sequence moves on and
 * every later valid entry is still delivered. Lost sequences are counted and
 * reported (gw_journal_stats).
 *
 * Memory: the segment table and buffers are sized from the configuration at
 * open; nothing grows with the journal's content. Single-threaded: one
 * process owns the journal at a time (the program holds a lock). */
#ifndef GW_JOURNAL_H
#define GW_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "fws/fws.h"
#include "proto/hlc.h"

#define GW_JOURNAL_FORMAT    1
#define GW_JOURNAL_ENTRY_HDR 28u
#define GW_JOURNAL_MAGIC     0x53534A31u /* "SSJ1" */
#define GW_CKPT_MAGIC        0x53534331u /* "SSC1" */
/* Checkpoint flags (u32 at offset 60; a checkpoint without GW_CKPT_F_V2 was
 * written before flags existed and is read as confirmed). */
#define GW_CKPT_F_CONFIRMED 0x1u /* an upstream WELCOME has seen this journal */
#define GW_CKPT_F_RN_COMMIT 0x2u /* renumber committed: seg-* stale, rn-* current */
#define GW_CKPT_F_RN_RENAME 0x4u /* stale seg-* removed: rename rn-* to seg-* */
#define GW_CKPT_F_V2        0x80000000u
/* Bytes of entry_max a submission leaves free for a longer renumbered seq. */
#define GW_RENUMBER_SLACK 16u
/* Bytes of a refused change's JSON kept in the refused log (then "..."). */
#define GW_REFUSED_CHANGE_MAX 1024u

typedef struct gw_journal_config {
    uint64_t capacity;    /* bytes of segment data accepted (default 64 MiB) */
    uint32_t segment_max; /* bytes per segment file (default 1 MiB) */
    uint32_t entry_max; /* largest entry payload (default 16 KiB: a change with both long texts) */
    uint32_t refused_max; /* refused.log size before rotation (default 64 KiB) */
} gw_journal_config;

/* Fills defaults. */
void gw_journal_config_default(gw_journal_config *c);

/* What the journal knows, for `sitesync-gw journal` and the tests. */
typedef struct gw_journal_stats {
    uint64_t acked;           /* highest sequence acknowledged by the daemon */
    uint64_t next_seq;        /* sequence the next submission gets */
    uint64_t pending;         /* next_seq - 1 - acked */
    uint64_t used_bytes;      /* bytes of segment files */
    uint64_t capacity;        /* configured capacity */
    uint32_t segments;        /* segment files present */
    ss_hlc_t hlc;             /* highest persisted HLC */
    int64_t last_sync_ms;     /* wall ms of the last drained sync, 0 never */
    int last_error;           /* ss_err of the last failed sync, 0 none */
    int64_t last_error_ms;    /* when */
    uint64_t full_refusals;   /* submissions refused because the journal was full */
    uint64_t refused;         /* changes the daemon refused (persisted count) */
    uint64_t lost;            /* sequences lost to corruption (persisted count) */
    uint64_t crc_failures;    /* bad regions found since open */
    uint64_t torn_bytes;      /* bytes of torn tail truncated at open */
    uint64_t ckpt_fallbacks;  /* 1 if the newest checkpoint slot was invalid */
    uint64_t missing_at_open; /* sequences below the checkpoint's next_seq that
                                 recovery did not find (corruption, reported) */
    uint64_t renumbered;      /* entries renumbered after a storage loss (this open) */
    int confirmed;            /* an upstream WELCOME has seen this journal */
} gw_journal_stats;

typedef struct gw_jseg {
    uint64_t first; /* first sequence (from the name) */
    uint64_t last;  /* last valid sequence (tail segment) or next.first - 1 */
    uint64_t size;  /* bytes */
} gw_jseg;

/* Caller-allocated; fields are private. */
typedef struct gw_journal {
    const fws *shim;
    gw_journal_config cfg;
    gw_jseg *segs; /* sorted by first; sized at open */
    uint32_t nsegs, max_segs;
    fws_file *tail; /* open last segment (append) or NULL */
    uint64_t acked, next_seq;
    ss_hlc_t hlc;
    uint64_t gen; /* generation of the newest checkpoint written/read */
    int64_t last_sync_ms, last_error_ms;
    int last_error;
    uint64_t full_refusals, refused, lost;
    uint64_t crc_failures, torn_bytes, ckpt_fallbacks, missing_at_open, renumbered;
    uint32_t ckflags; /* GW_CKPT_F_* of the current checkpoint */
    int broken;       /* sticky error: storage state unknown, reopen to recover */
    /* read cursor */
    fws_file *rfile;
    uint32_t rseg;   /* index of the segment rfile belongs to */
    uint64_t rfirst; /* first seq of that segment (index can shift on reclaim) */
    uint64_t roff;   /* offset of the next entry to look at */
    uint64_t rseq;   /* sequence expected at roff */
    uint64_t rsize;  /* size of rfile when it is a closed segment ... */
    int rsize_ok;    /* ... once asked (reader_size) */
    ss_hlc_t rhlc;   /* HLC of the entry the last successful read returned */
    /* the entry the last successful read returned, for gw_journal_read_more */
    uint64_t cur_first, cur_off; /* its segment and payload offset */
    uint32_t cur_len;
    uint32_t cur_crc; /* its header's CRC field (gw_journal_entry_crc) */
    int cur_valid;
    /* an entry being streamed (gw_journal_stream_*): next offset, bytes
     * left, CRC so far, its HLC */
    uint64_t st_pos;
    uint32_t st_left, st_crc;
    ss_hlc_t st_hlc;
    int st_valid;
    uint8_t *scan; /* scratch for recovery and resync */
    size_t scan_cap;
    int open;
} gw_journal;

void gw_journal_init(gw_journal *j);

/* Opens (and recovers) the journal on shim storage: picks the newest valid
 * checkpoint, lists segments, truncates a torn tail of the last segment,
 * reclaims segments that are fully acknowledged. Returns 0, or SS_EINVAL
 * (bad config), SS_ENOMEM, SS_EIO (storage), SS_ECORRUPT (more segment files
 * than the configuration can hold). */
int gw_journal_open(gw_journal *j, const fws *shim, const gw_journal_config *cfg);

/* Closes files and frees buffers; safe twice and after a failed open. */
void gw_journal_free(gw_journal *j);

uint64_t gw_journal_next_seq(const gw_journal *j);
uint64_t gw_journal_acked(const gw_journal *j);
ss_hlc_t gw_journal_hlc(const gw_journal *j);

/* Appends the entry for sequence seq (must equal next_seq) with its HLC and
 * payload, and syncs it. Returns 0 only once the entry is durable; then
 * next_seq advances. SS_EFULL when the configured capacity (or the storage)
 * is full: nothing was written and the caller gets a clear refusal.
 * SS_EOVERSIZE if len > entry_max, SS_EINVAL for a wrong seq, SS_EIO on a
 * storage failure (the partial write is truncated away; if even that fails
 * the journal turns broken and refuses everything until reopened). */
int gw_journal_append(gw_journal *j, uint64_t seq, ss_hlc_t hlc, const void *payload, size_t len);

/* Reads the payload of pending sequence seq (acked < seq < next_seq) into
 * buf[cap]; *len gets its length. Returns 0, SS_ECORRUPT if that sequence is
 * lost (failed CRC or missing: counted, never returned as data), SS_ENOENT if
 * seq is not pending, SS_ENOSPC if cap is too small, SS_EIO. Sequential
 * reads are cheap (a cursor); a jump rescans one segment. */
int gw_journal_read(gw_journal *j, uint64_t seq, void *buf, size_t cap, size_t *len);

/* Streaming read, for entries read in pieces through a small buffer: like
 * gw_journal_read, but the entry may be longer than buf: its first
 * min(len, cap) bytes land in buf (buf may be NULL with cap 0: only the
 * length and the check), *len gets the whole payload length, and the CRC is
 * checked over the whole payload (the part beyond cap through the journal's
 * scratch buffer) before 0 is returned. An entry whose header announces more
 * than max bytes is refused with SS_ENOSPC before its CRC is checked, the
 * cursor unmoved (what gw_journal_read does for one longer than its buffer,
 * so both decide alike where an envelope ends). Same errors otherwise. */
int gw_journal_read_head(gw_journal *j, uint64_t seq, void *buf, size_t cap, size_t max,
                         size_t *len);

/* Reads payload bytes [off, off + n) of the entry the last successful
 * gw_journal_read / _read_head returned, as long as no other journal call
 * came between (they may move the cursor's file). The bytes are not
 * checked again (the caller may hash them to see that they did not
 * change). Returns 0, SS_EINVAL (no such entry any more, or beyond its
 * length) or SS_EIO. */
int gw_journal_read_more(gw_journal *j, size_t off, void *buf, size_t n);

/* Pass-one look at pending sequence seq for a run that will be read again,
 * checked, before any of it is used: only the header at the read cursor is
 * read (magic, sequence, a plausible length; the payload and its CRC are
 * not), *len gets the length it announces, the cursor moves past the entry.
 * Returns 0, SS_ENOSPC (longer than max, cursor unmoved, as
 * gw_journal_read_head), SS_ENOENT (not pending), SS_EIO, or SS_EAGAIN when
 * the header at the cursor is not the expected one (damage, or nothing
 * there): the caller then rewinds and reads the run with gw_journal_read_head,
 * which resynchronizes and reports lost sequences. The first look after an
 * open that must skip entries does a full, checked read. */
int gw_journal_peek(gw_journal *j, uint64_t seq, size_t max, size_t *len);

/* The CRC field of the entry the last successful gw_journal_read, _read_head,
 * _peek or _stream_begin returned: two reads of the same run can compare
 * (length, CRC) of their entries instead of hashing the bytes again. */
uint32_t gw_journal_entry_crc(const gw_journal *j);

/* Checked streaming, for a run already read once: begin positions on
 * pending sequence seq like gw_journal_read_head (same errors; SS_ECORRUPT
 * if it is lost) but reads no payload; *len gets its length. stream_read
 * reads the next n payload bytes into buf, accumulating the CRC over
 * exactly the bytes it returns; stream_end (after all *len bytes) returns 0
 * if they match the entry's CRC (the cursor then moves past it, and
 * gw_journal_read_more may follow), SS_ECORRUPT if they do not (counted
 * in crc_failures; the caller must discard what it did with them), or
 * SS_EINVAL if bytes are left. Any other journal call in between ends the
 * stream (SS_EINVAL). */
int gw_journal_stream_begin(gw_journal *j, uint64_t seq, size_t max, size_t *len);
int gw_journal_stream_read(gw_journal *j, void *buf, size_t n);
int gw_journal_stream_end(gw_journal *j);

/* A saved read cursor: several passes over the same run of entries (size,
 * hash, send) each start where the first did instead of rescanning the
 * segment from its beginning. A rewind replays the exact cursor state, so
 * each pass meets the same entries and the same lost sequences. */
typedef struct gw_jmark {
    uint64_t first, off, seq; /* segment, offset, sequence expected there */
    uint64_t crc_failures;    /* bad regions counted so far: a replay that
                                 meets them again does not count them twice */
    int valid;                /* 0: the cursor had no file (start over) */
} gw_jmark;
void gw_journal_mark(const gw_journal *j, gw_jmark *m);
/* Restores a mark (reopening its segment if the cursor moved on to
 * another); a mark whose segment is gone makes the next read start over. */
void gw_journal_rewind(gw_journal *j, const gw_jmark *m);

/* The daemon has durably committed everything up to seq: advance the
 * checkpoint (written and synced before anything is removed), then remove
 * segments that are fully acknowledged. A seq at or below acked is a no-op.
 * If seq >= next_seq (the daemon knows more than this journal: storage was
 * lost), next_seq becomes seq + 1. Returns 0 or SS_EIO. */
int gw_journal_ack(gw_journal *j, uint64_t seq);

/* 1 if an upstream WELCOME has confirmed this journal's numbering. */
int gw_journal_confirmed(const gw_journal *j);

/* Marks the journal confirmed (durably, before anything is sent). */
int gw_journal_confirm(gw_journal *j);

/* The upstream holds sequences up to committed, which reaches this
 * unconfirmed journal's first pending entry: rewrites the pending entries as
 * committed+1, ... (crash-safe, see above), then the journal is confirmed
 * with acked = committed. Returns the number of entries renumbered, or
 * SS_EINVAL (confirmed journal, or nothing to renumber), SS_EIO, SS_EFULL
 * (no storage for the copy: nothing changed), SS_ENOMEM. */
int gw_journal_renumber(gw_journal *j, uint64_t committed);

/* Persists a new HLC high-water mark (e.g. after adopting the daemon's time).
 * No-op if not above the current one. */
int gw_journal_save_hlc(gw_journal *j, ss_hlc_t hlc);

/* Records the outcome of a sync session (err 0: drained) in the checkpoint so
 * another process can report it. */
int gw_journal_note_sync(gw_journal *j, int err, int64_t wall_ms);

/* Appends one refused-change record (one line, synced) and counts it in the
 * checkpoint's counters at the next checkpoint write: `refused`, or `lost`
 * when is_lost (the placeholder for a lost sequence came back refused, as
 * intended). change (optional) is the entry's JSON, kept up to 1 KiB. The
 * log rotates at refused_max bytes, so it stays bounded. */
int gw_journal_note_refused(gw_journal *j, uint64_t seq, const char *code, const char *field,
                            const char *message, const char *change, size_t change_len,
                            int is_lost);

/* Calls cb for each line of the refused logs (older file first). */
int gw_journal_refused_walk(gw_journal *j, int (*cb)(void *arg, const char *line), void *arg);

void gw_journal_stats_get(const gw_journal *j, gw_journal_stats *st);

#endif
