/* gw_journal.c - the gateway's durable journal on shim storage: append-only
 * CRC-checked segments, a two-slot checkpoint, torn-tail recovery, reclaim
 * and capacity. The format and the corruption policy are described in
 * gw/journal.h; the reasoning behind each step sits above its code. */
#include "gw/journal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gw/crc32c.h"
#include "proto/alloc.h"
#include "proto/err.h"
#include "internal.h"

/* SCRATCH: chunk size for CRC and resync scans; the scratch buffer holds two
 * (a resync checks entries while it scans). */
#define CKPT_LEN     92u
#define SCRATCH      2048u
#define SEG_PREFIX   "seg-"
#define SEG_SUFFIX   ".log"
#define SEG_NAME_LEN 24    /* "seg-" + 16 hex + ".log" */
#define RN_PREFIX    "rn-" /* segments written by a renumber */
/* A lost entry carried through a renumber: the same JSON the sync client's
 * gw_lost_placeholder sends (the daemon refuses and audits it). */
#define LOST_JSON          "{\"seq\":%" PRIu64 ",\"lost\":\"gateway journal entry failed its checksum\"}"
#define REFUSED_LOG        "refused.log"
#define REFUSED_OLD        "refused.old.log"
#define REFUSED_LINE_MAX   1536
#define REFUSED_CHANGE_MAX GW_REFUSED_CHANGE_MAX

void gw_journal_config_default(gw_journal_config *c)
{
    c->capacity = UINT64_C(64) << 20;
    c->segment_max = 1u << 20;
    c->entry_max = 16384;
    c->refused_max = 65536;
}

void gw_journal_init(gw_journal *j)
{
    memset(j, 0, sizeof(*j));
}

static void seg_name(char *buf, size_t cap, uint64_t first)
{
    snprintf(buf, cap, SEG_PREFIX "%016" PRIx64 SEG_SUFFIX, first);
}

/* ---- checkpoint ---------------------------------------------------------- */

typedef struct ckpt {
    uint64_t gen, acked, next_seq, hlc, full_refusals, refused, lost;
    int64_t last_sync_ms, last_error_ms;
    int32_t last_error;
    uint32_t flags;
} ckpt;

static int ckpt_read(gw_journal *j, const char *name, ckpt *c, int *present)
{
    fws_file *f = NULL;
    uint8_t b[CKPT_LEN];
    uint64_t size = 0;
    *present = 0;
    int rc = fws_open(j->shim, name, 0, &f);
    if (rc == FWS_ENOENT)
        return SS_ENOENT;
    if (rc < 0)
        return gw__map_fws(rc);
    rc = fws_size(j->shim, f, &size);
    if (rc == 0 && size > 0)
        *present = 1;
    if (rc == 0 && size != CKPT_LEN)
        rc = SS_ECORRUPT;
    else if (rc == 0)
        rc = fws_read_full(j->shim, f, 0, b, CKPT_LEN) < 0 ? SS_EIO : 0;
    else
        rc = gw__map_fws(rc);
    fws_close(j->shim, f);
    if (rc < 0)
        return rc;
    if (gw__get32(b) != GW_CKPT_MAGIC || gw__get32(b + 88) != gw_crc32c(0, b, 88))
        return SS_ECORRUPT;
    c->gen = gw__get64(b + 8);
    c->acked = gw__get64(b + 16);
    c->next_seq = gw__get64(b + 24);
    c->hlc = gw__get64(b + 32);
    c->last_sync_ms = (int64_t)gw__get64(b + 40);
    c->last_error_ms = (int64_t)gw__get64(b + 48);
    c->last_error = (int32_t)gw__get32(b + 56);
    c->full_refusals = gw__get64(b + 64);
    c->refused = gw__get64(b + 72);
    c->lost = gw__get64(b + 80);
    c->flags = gw__get32(b + 60);
    /* A checkpoint written before the flags existed (bytes 60..63 zero)
     * comes from a journal that may already have sent its entries: it counts
     * as confirmed, so it is never renumbered (that could deliver twice). */
    if (!(c->flags & GW_CKPT_F_V2))
        c->flags = GW_CKPT_F_V2 | GW_CKPT_F_CONFIRMED;
    if (c->next_seq <= c->acked)
        return SS_ECORRUPT;
    return 0;
}

/* Writes generation gen+1 into the older slot, as littlefs does with its
 * metadata pairs: truncate, append, sync. A cut anywhere in that leaves the
 * newer slot intact, and a torn or empty slot fails its CRC, so recovery
 * always finds the last checkpoint that was completely written. */
static int ckpt_write(gw_journal *j)
{
    uint8_t b[CKPT_LEN];
    uint64_t gen = j->gen + 1;
    memset(b, 0, sizeof(b));
    gw__put32(b, GW_CKPT_MAGIC);
    gw__put64(b + 8, gen);
    gw__put64(b + 16, j->acked);
    gw__put64(b + 24, j->next_seq);
    gw__put64(b + 32, j->hlc);
    gw__put64(b + 40, (uint64_t)j->last_sync_ms);
    gw__put64(b + 48, (uint64_t)j->last_error_ms);
    gw__put32(b + 56, (uint32_t)j->last_error);
    gw__put32(b + 60, GW_CKPT_F_V2 | j->ckflags);
    gw__put64(b + 64, j->full_refusals);
    gw__put64(b + 72, j->refused);
    gw__put64(b + 80, j->lost);
    gw__put32(b + 88, gw_crc32c(0, b, 88));
    const char *name = (gen & 1) ? "ckpt-a" : "ckpt-b";
    fws_file *f = NULL;
    int rc = fws_open(j->shim, name, FWS_O_CREATE, &f);
    if (rc == 0)
        rc = fws_truncate(j->shim, f, 0);
    if (rc == 0)
        rc = fws_append(j->shim, f, b, sizeof(b));
    if (rc == 0)
        rc = fws_sync(j->shim, f);
    if (f)
        fws_close(j->shim, f);
    if (rc < 0) {
        fws_log(j->shim, FWS_LOG_ERROR, "event=ckpt_write_failed slot=%s err=%s", name,
                fws_strerror(rc));
        return SS_EIO;
    }
    j->gen = gen;
    return 0;
}

/* ---- entries ------------------------------------------------------------- */

typedef struct ehdr {
    uint32_t len;
    uint64_t seq;
    ss_hlc_t hlc;
    uint32_t crc;
} ehdr;

static void ehdr_encode(uint8_t *b, uint32_t len, uint64_t seq, ss_hlc_t hlc)
{
    gw__put32(b, GW_JOURNAL_MAGIC);
    gw__put32(b + 4, len);
    gw__put64(b + 8, seq);
    gw__put64(b + 16, hlc);
}

/* Reads and sanity-checks the header at off: magic, a length within
 * entry_max that fits the file. Returns 1 if plausible, 0 if not, <0 on I/O
 * error. */
static int ehdr_read(gw_journal *j, fws_file *f, uint64_t off, uint64_t size, ehdr *h,
                     uint8_t raw[GW_JOURNAL_ENTRY_HDR])
{
    if (off + GW_JOURNAL_ENTRY_HDR > size)
        return 0;
    int rc = fws_read_full(j->shim, f, off, raw, GW_JOURNAL_ENTRY_HDR);
    if (rc < 0)
        return gw__map_fws(rc);
    if (gw__get32(raw) != GW_JOURNAL_MAGIC)
        return 0;
    h->len = gw__get32(raw + 4);
    h->seq = gw__get64(raw + 8);
    h->hlc = gw__get64(raw + 16);
    h->crc = gw__get32(raw + 24);
    if (h->len == 0 || h->len > j->cfg.entry_max || h->seq == 0)
        return 0;
    if (off + GW_JOURNAL_ENTRY_HDR + h->len > size)
        return 0;
    return 1;
}

/* Full check of the entry at off: plausible header and a CRC that matches
 * header and payload. The payload is read in SCRATCH-sized chunks, so
 * checking needs no buffer as large as an entry. Returns 1 valid, 0 invalid,
 * <0 I/O error. */
static int entry_check(gw_journal *j, fws_file *f, uint64_t off, uint64_t size, ehdr *h)
{
    uint8_t raw[GW_JOURNAL_ENTRY_HDR];
    int rc = ehdr_read(j, f, off, size, h, raw);
    if (rc <= 0)
        return rc;
    uint32_t crc = gw_crc32c(0, raw, 24);
    uint64_t pos = off + GW_JOURNAL_ENTRY_HDR;
    uint32_t left = h->len;
    while (left > 0) {
        size_t n = left < SCRATCH ? left : SCRATCH;
        rc = fws_read_full(j->shim, f, pos, j->scan, n);
        if (rc < 0)
            return gw__map_fws(rc);
        crc = gw_crc32c(crc, j->scan, n);
        pos += n;
        left -= (uint32_t)n;
    }
    return crc == h->crc;
}

/* Looks for the next valid entry after a bad region: the first offset > off
 * holding the magic, a sane header, a sequence >= min_seq and a good CRC.
 * Returns 1 with *found and *h, 0 if there is none before size, <0 on I/O
 * error. Only runs when corruption was seen, so a byte-wise search is fine. */
static int resync(gw_journal *j, fws_file *f, uint64_t off, uint64_t size, uint64_t min_seq,
                  uint64_t *found, ehdr *h)
{
    uint8_t *chunk = j->scan + SCRATCH;
    uint64_t pos = off + 1;
    while (pos + GW_JOURNAL_ENTRY_HDR <= size) {
        uint64_t avail = size - pos;
        size_t n = avail < SCRATCH ? (size_t)avail : SCRATCH;
        int rc = fws_read_full(j->shim, f, pos, chunk, n);
        if (rc < 0)
            return gw__map_fws(rc);
        for (size_t i = 0; i + 4 <= n; i++) {
            if (gw__get32(chunk + i) != GW_JOURNAL_MAGIC)
                continue;
            rc = entry_check(j, f, pos + i, size, h);
            if (rc < 0)
                return rc;
            if (rc == 1 && h->seq >= min_seq) {
                *found = pos + i;
                return 1;
            }
        }
        /* Step so that a magic straddling the chunk end is seen next time. */
        if (n < 4)
            break;
        pos += n - 3;
    }
    return 0;
}

/* Walks a whole segment, validating every entry. Sets *last to the last valid
 * sequence (first - 1 if none), *end to the end of the last valid entry and
 * *hlc_max. Bad regions followed by valid entries are counted as CRC
 * failures; what follows the last valid entry is left for the caller (a torn
 * tail in the segment being appended to). */
static int scan_segment(gw_journal *j, fws_file *f, uint64_t size, uint64_t first, uint64_t *last,
                        uint64_t *end, ss_hlc_t *hlc_max)
{
    uint64_t off = 0, expect = first;
    *last = first - 1;
    *end = 0;
    while (off < size) {
        ehdr h;
        int rc = entry_check(j, f, off, size, &h);
        if (rc < 0)
            return rc;
        if (rc == 1 && h.seq == expect) {
            off += GW_JOURNAL_ENTRY_HDR + h.len;
        } else {
            uint64_t found = 0;
            rc = resync(j, f, off, size, expect, &found, &h);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
            j->crc_failures++;
            fws_log(j->shim, FWS_LOG_ERROR,
                    "event=journal_corrupt first=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64
                    " lost_from=%" PRIu64 " lost_to=%" PRIu64,
                    first, off, found - off, expect, h.seq - 1);
            off = found + GW_JOURNAL_ENTRY_HDR + h.len;
        }
        *last = h.seq;
        expect = h.seq + 1;
        *end = off;
        if (h.hlc > *hlc_max)
            *hlc_max = h.hlc;
    }
    return 0;
}

/* ---- renumbering: name sets and the switch ------------------------------- */

static int parse_name(const char *name, const char *prefix, uint64_t *first);

typedef struct nameset {
    const char *prefix;
    uint64_t *firsts;
    uint32_t n, cap;
} nameset;

static int nameset_cb(void *arg, const char *name)
{
    nameset *ns = arg;
    uint64_t first;
    if (parse_name(name, ns->prefix, &first) < 0)
        return 0;
    if (ns->n == ns->cap)
        return SS_ECORRUPT;
    ns->firsts[ns->n++] = first;
    return 0;
}

/* Lists the files "<prefix><hex>.log" into a table sized like the segment
 * table (names are collected first: removing while a directory is being
 * walked is not something every port promises to handle). */
static int nameset_list(gw_journal *j, const char *prefix, nameset *ns)
{
    ns->prefix = prefix;
    ns->n = 0;
    ns->cap = j->max_segs;
    ns->firsts = ss_malloc(sizeof(uint64_t) * ns->cap);
    if (!ns->firsts)
        return SS_ENOMEM;
    int rc = fws_list(j->shim, nameset_cb, ns);
    if (rc < 0) {
        ss_free(ns->firsts);
        ns->firsts = NULL;
        return rc == SS_ECORRUPT ? SS_ECORRUPT : gw__map_fws(rc);
    }
    return 0;
}

static int nameset_remove(gw_journal *j, const char *prefix)
{
    nameset ns;
    int rc = nameset_list(j, prefix, &ns);
    for (uint32_t i = 0; rc == 0 && i < ns.n; i++) {
        char name[SEG_NAME_LEN + 1];
        snprintf(name, sizeof(name), "%s%016" PRIx64 SEG_SUFFIX, prefix, ns.firsts[i]);
        int r = fws_remove(j->shim, name);
        if (r < 0 && r != FWS_ENOENT)
            rc = gw__map_fws(r);
    }
    ss_free(ns.firsts); /* NULL when the listing failed */
    return rc;
}

/* Finishes a committed renumber found at open. Each step is idempotent and
 * the flag in the checkpoint says which step a cut interrupted: under
 * RN_COMMIT every seg-* is stale (the rn-* files hold the pending entries);
 * under RN_RENAME no stale seg-* is left, so every seg-* is a renamed rn-*. */
static int finish_renumber(gw_journal *j)
{
    int rc;
    if (j->ckflags & GW_CKPT_F_RN_COMMIT) {
        if ((rc = nameset_remove(j, SEG_PREFIX)) < 0)
            return rc;
        j->ckflags = GW_CKPT_F_CONFIRMED | GW_CKPT_F_RN_RENAME;
        if ((rc = ckpt_write(j)) < 0)
            return rc;
    }
    if (j->ckflags & GW_CKPT_F_RN_RENAME) {
        nameset ns;
        if ((rc = nameset_list(j, RN_PREFIX, &ns)) < 0)
            return rc;
        for (uint32_t i = 0; rc == 0 && i < ns.n; i++) {
            char from[SEG_NAME_LEN + 1], to[SEG_NAME_LEN + 1];
            snprintf(from, sizeof(from), RN_PREFIX "%016" PRIx64 SEG_SUFFIX, ns.firsts[i]);
            seg_name(to, sizeof(to), ns.firsts[i]);
            int r = fws_rename(j->shim, from, to);
            if (r < 0)
                rc = gw__map_fws(r);
        }
        ss_free(ns.firsts);
        if (rc < 0)
            return rc;
        j->ckflags = GW_CKPT_F_CONFIRMED;
        if ((rc = ckpt_write(j)) < 0)
            return rc;
        fws_log(j->shim, FWS_LOG_INFO,
                "event=journal_renumber_done acked=%" PRIu64 " next_seq=%" PRIu64, j->acked,
                j->next_seq);
    }
    return 0;
}

/* ---- open / recovery ----------------------------------------------------- */

/* "<prefix><16 hex>.log" -> first sequence (non-zero). */
static int parse_name(const char *name, const char *prefix, uint64_t *first)
{
    size_t pl = strlen(prefix);
    if (strlen(name) != pl + 20 || strncmp(name, prefix, pl) != 0 ||
        strcmp(name + pl + 16, SEG_SUFFIX) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 16; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = (v << 4) | (uint64_t)d;
    }
    if (v == 0)
        return -1;
    *first = v;
    return 0;
}

static int parse_seg_name(const char *name, uint64_t *first)
{
    return parse_name(name, SEG_PREFIX, first);
}

static int list_cb(void *arg, const char *name)
{
    gw_journal *j = arg;
    uint64_t first;
    if (parse_seg_name(name, &first) < 0)
        return 0;
    if (j->nsegs == j->max_segs)
        return SS_ECORRUPT;
    /* Insertion keeps the table sorted by first sequence. */
    uint32_t i = j->nsegs;
    while (i > 0 && j->segs[i - 1].first > first) {
        j->segs[i] = j->segs[i - 1];
        i--;
    }
    j->segs[i].first = first;
    j->segs[i].last = 0;
    j->segs[i].size = 0;
    j->nsegs++;
    return 0;
}

static void drop_seg(gw_journal *j, uint32_t i)
{
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof(j->segs[0]));
    j->nsegs--;
}

static void reader_close(gw_journal *j)
{
    if (j->rfile && j->rfile != j->tail)
        fws_close(j->shim, j->rfile);
    j->rfile = NULL;
    j->cur_valid = 0;
    j->st_valid = 0;
}

/* Removes segments whose every sequence is acknowledged, oldest first. The
 * checkpoint that acknowledged them is already durable, so a cut between
 * two removals only leaves work for the next reclaim. */
static void reclaim(gw_journal *j)
{
    while (j->nsegs > 0 && j->segs[0].last <= j->acked) {
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof(name), j->segs[0].first);
        if (j->rfile && j->rfirst == j->segs[0].first)
            reader_close(j);
        if (j->nsegs == 1 && j->tail) {
            fws_close(j->shim, j->tail);
            j->tail = NULL;
        }
        int rc = fws_remove(j->shim, name);
        if (rc < 0 && rc != FWS_ENOENT) {
            fws_log(j->shim, FWS_LOG_WARN, "event=reclaim_failed segment=%s err=%s", name,
                    fws_strerror(rc));
            return;
        }
        drop_seg(j, 0);
    }
}

/* Recovers the tail: scans the last segment completely, truncates what
 * follows its last valid entry (a write that was in flight when the power
 * went), and drops a last segment that holds no valid entry at all, then
 * looks at the one before it. */
static int recover_tail(gw_journal *j)
{
    while (j->nsegs > 0) {
        gw_jseg *s = &j->segs[j->nsegs - 1];
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof(name), s->first);
        fws_file *f = NULL;
        int rc = fws_open(j->shim, name, 0, &f);
        if (rc < 0)
            return gw__map_fws(rc);
        uint64_t size = 0, last = 0, end = 0;
        rc = fws_size(j->shim, f, &size);
        if (rc < 0) {
            fws_close(j->shim, f);
            return gw__map_fws(rc);
        }
        rc = scan_segment(j, f, size, s->first, &last, &end, &j->hlc);
        if (rc < 0) {
            fws_close(j->shim, f);
            return rc;
        }
        if (end < size) {
            rc = fws_truncate(j->shim, f, end);
            if (rc < 0) {
                fws_close(j->shim, f);
                return gw__map_fws(rc);
            }
            j->torn_bytes += size - end;
            fws_log(j->shim, FWS_LOG_WARN,
                    "event=journal_torn_tail segment=%s truncated_bytes=%" PRIu64, name,
                    size - end);
        }
        if (end == 0) {
            fws_close(j->shim, f);
            rc = fws_remove(j->shim, name);
            if (rc < 0 && rc != FWS_ENOENT)
                return gw__map_fws(rc);
            drop_seg(j, j->nsegs - 1);
            continue;
        }
        s->last = last;
        s->size = end;
        j->tail = f;
        return 0;
    }
    return 0;
}

int gw_journal_open(gw_journal *j, const fws *shim, const gw_journal_config *cfg)
{
    int rc;
    gw_journal_init(j);
    j->shim = shim;
    j->cfg = *cfg;
    if (cfg->entry_max < 64 || cfg->entry_max > (16u << 20) ||
        cfg->segment_max < GW_JOURNAL_ENTRY_HDR + cfg->entry_max ||
        cfg->capacity < (uint64_t)GW_JOURNAL_ENTRY_HDR + cfg->entry_max || cfg->refused_max < 4096)
        return SS_EINVAL;
    /* Segments shorter than segment_max only appear after a sequence jump
     * (the daemon knew more than we did), so twice the full count plus some
     * slack is a bound; past it appends are refused, never dropped. */
    uint64_t ms = cfg->capacity / cfg->segment_max * 2 + 64;
    if (ms > 65536)
        ms = 65536;
    j->max_segs = (uint32_t)ms;
    j->segs = ss_malloc(sizeof(gw_jseg) * j->max_segs);
    j->scan = ss_malloc(2 * SCRATCH);
    j->scan_cap = 2 * SCRATCH;
    if (!j->segs || !j->scan) {
        gw_journal_free(j);
        return SS_ENOMEM;
    }

    ckpt a, b, *best = NULL;
    int pa = 0, pb = 0;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    int ra = ckpt_read(j, "ckpt-a", &a, &pa);
    int rb = ckpt_read(j, "ckpt-b", &b, &pb);
    if ((ra < 0 && ra != SS_ENOENT && ra != SS_ECORRUPT) ||
        (rb < 0 && rb != SS_ENOENT && rb != SS_ECORRUPT)) {
        gw_journal_free(j);
        return SS_EIO;
    }
    if (ra == 0 && (rb != 0 || a.gen > b.gen))
        best = &a;
    else if (rb == 0)
        best = &b;
    if ((ra == SS_ECORRUPT && pa) || (rb == SS_ECORRUPT && pb)) {
        j->ckpt_fallbacks = 1;
        fws_log(j->shim, FWS_LOG_WARN, "event=ckpt_slot_invalid a=%s b=%s", ss_err_name(ra),
                ss_err_name(rb));
    }
    j->acked = 0;
    j->next_seq = 1;
    if (best) {
        j->gen = best->gen;
        j->acked = best->acked;
        j->next_seq = best->next_seq;
        j->hlc = best->hlc;
        j->last_sync_ms = best->last_sync_ms;
        j->last_error_ms = best->last_error_ms;
        j->last_error = best->last_error;
        j->full_refusals = best->full_refusals;
        j->refused = best->refused;
        j->lost = best->lost;
        j->ckflags = best->flags & ~GW_CKPT_F_V2;
    }
    /* No checkpoint at all: a new (or wiped) journal, unconfirmed. */
    if (j->ckflags & (GW_CKPT_F_RN_COMMIT | GW_CKPT_F_RN_RENAME))
        rc = finish_renumber(j);
    else
        rc = nameset_remove(j, RN_PREFIX); /* a renumber that never committed */
    if (rc < 0) {
        gw_journal_free(j);
        return rc;
    }

    rc = fws_list(shim, list_cb, j);
    if (rc < 0) {
        gw_journal_free(j);
        return rc == SS_ECORRUPT ? SS_ECORRUPT : gw__map_fws(rc);
    }
    rc = recover_tail(j);
    if (rc < 0) {
        gw_journal_free(j);
        return rc;
    }
    /* Sizes and implied last sequences of the other segments: each one ends
     * right before the next begins (a new segment only ever starts at the
     * next sequence to be issued). */
    for (uint32_t i = 0; i + 1 < j->nsegs; i++) {
        char name[SEG_NAME_LEN + 1];
        fws_file *f = NULL;
        seg_name(name, sizeof(name), j->segs[i].first);
        rc = fws_open(shim, name, 0, &f);
        if (rc == 0) {
            rc = fws_size(shim, f, &j->segs[i].size);
            fws_close(shim, f);
        }
        if (rc < 0) {
            gw_journal_free(j);
            return gw__map_fws(rc);
        }
        j->segs[i].last = j->segs[i + 1].first - 1;
    }
    /* Sequences the checkpoint knew to be durable (below its next_seq) that
     * recovery did not find were damaged, not torn: a torn write was never
     * acknowledged, so it cannot lie below a checkpoint written after it.
     * They are lost, and said so (the sync client sends placeholders). */
    uint64_t have_to = j->nsegs > 0 ? j->segs[j->nsegs - 1].last : j->acked;
    if (have_to < j->acked)
        have_to = j->acked;
    if (j->next_seq > have_to + 1)
        j->missing_at_open += j->next_seq - 1 - have_to;
    if (j->nsegs > 0 && j->segs[0].first > j->acked + 1)
        j->missing_at_open += j->segs[0].first - 1 - j->acked;
    if (j->missing_at_open > 0)
        fws_log(shim, FWS_LOG_ERROR,
                "event=journal_entries_missing count=%" PRIu64 " acked=%" PRIu64
                " ckpt_next_seq=%" PRIu64 " found_to=%" PRIu64,
                j->missing_at_open, j->acked, j->next_seq, have_to);
    if (j->nsegs > 0 && j->segs[j->nsegs - 1].last + 1 > j->next_seq)
        j->next_seq = j->segs[j->nsegs - 1].last + 1;
    if (j->next_seq <= j->acked)
        j->next_seq = j->acked + 1;
    j->open = 1;
    reclaim(j);
    fws_log(shim, FWS_LOG_INFO,
            "event=journal_open acked=%" PRIu64 " next_seq=%" PRIu64 " segments=%u"
            " crc_failures=%" PRIu64 " torn_bytes=%" PRIu64,
            j->acked, j->next_seq, j->nsegs, j->crc_failures, j->torn_bytes);
    return 0;
}

void gw_journal_free(gw_journal *j)
{
    if (!j)
        return;
    if (j->shim) {
        reader_close(j);
        if (j->tail)
            fws_close(j->shim, j->tail);
    }
    j->tail = NULL;
    ss_free(j->segs);
    ss_free(j->scan);
    j->segs = NULL;
    j->scan = NULL;
    j->nsegs = 0;
    j->open = 0;
}

uint64_t gw_journal_next_seq(const gw_journal *j)
{
    return j->next_seq;
}

uint64_t gw_journal_acked(const gw_journal *j)
{
    return j->acked;
}

ss_hlc_t gw_journal_hlc(const gw_journal *j)
{
    return j->hlc;
}

static uint64_t used_bytes(const gw_journal *j)
{
    uint64_t u = 0;
    for (uint32_t i = 0; i < j->nsegs; i++)
        u += j->segs[i].size;
    return u;
}

/* ---- append -------------------------------------------------------------- */

static int refuse_full(gw_journal *j, const char *why)
{
    j->full_refusals++;
    fws_log(j->shim, FWS_LOG_WARN,
            "event=journal_full reason=%s used=%" PRIu64 " capacity=%" PRIu64 " refusals=%" PRIu64,
            why, used_bytes(j), j->cfg.capacity, j->full_refusals);
    (void)ckpt_write(j); /* the count is informational; the refusal stands */
    return SS_EFULL;
}

int gw_journal_append(gw_journal *j, uint64_t seq, ss_hlc_t hlc, const void *payload, size_t len)
{
    if (!j || !j->open || (!payload && len > 0))
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    if (seq != j->next_seq || len == 0)
        return SS_EINVAL;
    if (len > j->cfg.entry_max)
        return SS_EOVERSIZE;
    uint64_t need = GW_JOURNAL_ENTRY_HDR + len;
    if (used_bytes(j) + need > j->cfg.capacity)
        return refuse_full(j, "capacity");

    gw_jseg *s = j->nsegs ? &j->segs[j->nsegs - 1] : NULL;
    int rc;
    if (!s || !j->tail || s->last + 1 != seq || s->size + need > j->cfg.segment_max) {
        if (j->nsegs == j->max_segs)
            return refuse_full(j, "segment_table");
        char name[SEG_NAME_LEN + 1];
        fws_file *f = NULL;
        seg_name(name, sizeof(name), seq);
        rc = fws_open(j->shim, name, FWS_O_CREATE | FWS_O_EXCL, &f);
        if (rc == FWS_EEXIST) {
            /* Left over from a cut right after its creation: any content
             * starts at a sequence never acknowledged to a caller. */
            rc = fws_open(j->shim, name, 0, &f);
            if (rc == 0)
                rc = fws_truncate(j->shim, f, 0);
            if (rc < 0 && f) {
                fws_close(j->shim, f);
                f = NULL;
            }
        }
        if (rc < 0)
            return rc == FWS_ENOSPC ? refuse_full(j, "storage") : gw__map_fws(rc);
        if (j->tail) {
            if (j->rfile == j->tail)
                j->rfile = NULL;
            fws_close(j->shim, j->tail);
        }
        j->tail = f;
        s = &j->segs[j->nsegs++];
        s->first = seq;
        s->last = seq - 1;
        s->size = 0;
    }

    /* Header and payload, then one sync: a cut anywhere in between leaves a
     * torn last entry that recovery truncates. */
    uint8_t hdr[GW_JOURNAL_ENTRY_HDR];
    ehdr_encode(hdr, (uint32_t)len, seq, hlc);
    uint32_t crc = gw_crc32c(gw_crc32c(0, hdr, 24), payload, len);
    gw__put32(hdr + 24, crc);
    rc = fws_append(j->shim, j->tail, hdr, sizeof(hdr));
    if (rc == 0)
        rc = fws_append(j->shim, j->tail, payload, len);
#ifndef SS_PLANT_BUG_ACK_BEFORE_DURABLE
    if (rc == 0)
        rc = fws_sync(j->shim, j->tail);
#endif /* PLANTED BUG, tests/sim test builds only: the entry is not synced */
    if (rc < 0) {
        /* Take the partial entry back out so the next append starts clean.
         * If even that fails the on-storage state is unknown: refuse
         * everything until a reopen recovers it. */
        int trc = fws_truncate(j->shim, j->tail, s->size);
        if (trc < 0) {
            j->broken = SS_EIO;
            fws_log(j->shim, FWS_LOG_ERROR, "event=journal_broken err=%s", fws_strerror(trc));
        }
        if (rc == FWS_ENOSPC)
            return refuse_full(j, "storage");
        fws_log(j->shim, FWS_LOG_ERROR, "event=journal_append_failed seq=%" PRIu64 " err=%s", seq,
                fws_strerror(rc));
        return gw__map_fws(rc);
    }
    s->size += need;
    s->last = seq;
    j->next_seq = seq + 1;
    if (hlc > j->hlc)
        j->hlc = hlc;
    return 0;
}

/* ---- read ---------------------------------------------------------------- */

static int64_t find_seg(const gw_journal *j, uint64_t seq)
{
    int64_t lo = 0, hi = (int64_t)j->nsegs - 1, ans = -1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (j->segs[mid].first <= seq) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

static int lost(gw_journal *j, uint64_t seq, const char *why)
{
    fws_log(j->shim, FWS_LOG_ERROR, "event=journal_entry_lost seq=%" PRIu64 " reason=%s", seq, why);
    return SS_ECORRUPT;
}

/* Points the read cursor at the start of segment si (the tail's open file,
 * or the segment opened by name). Returns 0 or a shim error. */
static int reader_open(gw_journal *j, uint32_t si)
{
    gw_jseg *s = &j->segs[si];
    reader_close(j);
    if (si == j->nsegs - 1 && j->tail) {
        j->rfile = j->tail;
    } else {
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof(name), s->first);
        int rc = fws_open(j->shim, name, 0, &j->rfile);
        if (rc < 0) {
            j->rfile = NULL;
            return rc;
        }
    }
    j->rseg = si;
    j->rsize_ok = 0;
    j->rfirst = s->first;
    j->roff = 0;
    j->rseq = s->first;
    return 0;
}

/* The size of segment si, whose file the reader has open: the tail's is
 * kept by the appends; a closed segment's cannot change while the journal
 * is open (only the tail is ever written), so its file is asked once per
 * open instead of once per entry read. Returns 0 or a mapped shim error. */
static int reader_size(gw_journal *j, uint32_t si, uint64_t *size)
{
    if (si == j->nsegs - 1 && j->tail) {
        *size = j->segs[si].size;
        return 0;
    }
    if (!j->rsize_ok) {
        int rc = fws_size(j->shim, j->rfile, &j->rsize);
        if (rc < 0)
            return gw__map_fws(rc);
        j->rsize_ok = 1;
    }
    *size = j->rsize;
    return 0;
}

/* Reads the payload of the entry at off whose header h (raw bytes) was just
 * read: its first min(len, cap) bytes into buf, the rest only through the
 * scratch buffer, the CRC over all of it. Returns 1 valid, 0 bad CRC, <0 I/O
 * error. */
static int payload_read(gw_journal *j, uint64_t off, const ehdr *h,
                        const uint8_t raw[GW_JOURNAL_ENTRY_HDR], uint8_t *buf, size_t cap)
{
    uint32_t crc = gw_crc32c(0, raw, 24);
    uint64_t pos = off + GW_JOURNAL_ENTRY_HDR;
    size_t head = h->len < cap ? h->len : cap;
    if (head > 0) {
        int rc = fws_read_full(j->shim, j->rfile, pos, buf, head);
        if (rc < 0)
            return gw__map_fws(rc);
        crc = gw_crc32c(crc, buf, head);
        pos += head;
    }
    uint32_t left = h->len - (uint32_t)head;
    while (left > 0) {
        size_t n = left < SCRATCH ? left : SCRATCH;
        int rc = fws_read_full(j->shim, j->rfile, pos, j->scan, n);
        if (rc < 0)
            return gw__map_fws(rc);
        crc = gw_crc32c(crc, j->scan, n);
        pos += n;
        left -= (uint32_t)n;
    }
    return crc == h->crc;
}

/* gw_journal_read and gw_journal_read_head: an entry whose header says it
 * is longer than max is refused with SS_ENOSPC (cursor unmoved) before its
 * CRC is looked at; otherwise its first min(len, cap) bytes go to buf. */
static int read_entry(gw_journal *j, uint64_t seq, void *buf, size_t cap, size_t max, size_t *len,
                      int defer)
{
    if (!j || !j->open || !len || (!buf && cap > 0))
        return SS_EINVAL;
    j->st_valid = 0;
    if (j->broken)
        return j->broken;
    if (seq <= j->acked || seq >= j->next_seq)
        return SS_ENOENT;
    int64_t si = find_seg(j, seq);
    if (si < 0 || seq > j->segs[si].last)
        return lost(j, seq, "missing");
    gw_jseg *s = &j->segs[si];
    int rc;
    if (!j->rfile || j->rfirst != s->first || j->rseq > seq) {
        rc = reader_open(j, (uint32_t)si);
        if (rc < 0)
            return rc == FWS_ENOENT ? lost(j, seq, "segment_missing") : gw__map_fws(rc);
    }
    uint64_t size = 0;
    rc = reader_size(j, (uint32_t)si, &size);
    if (rc < 0)
        return rc;
    for (;;) {
        ehdr h;
        uint8_t raw[GW_JOURNAL_ENTRY_HDR];
        rc = ehdr_read(j, j->rfile, j->roff, size, &h, raw);
        if (rc < 0)
            return rc;
        if (rc == 1 && h.seq == j->rseq && h.seq < seq) {
            /* Skipping an entry before the one wanted. Its CRC is checked
             * here too (in scratch-sized chunks, whatever its length): a
             * length field damaged upwards would otherwise step into the
             * middle of later entries and make valid ones look lost. A bad
             * one falls through to the resync below. */
            ehdr hc;
            int ok = entry_check(j, j->rfile, j->roff, size, &hc);
            if (ok < 0)
                return ok;
            if (ok == 1) {
                j->roff += GW_JOURNAL_ENTRY_HDR + h.len;
                j->rseq++;
                continue;
            }
        }
        if (rc == 1 && h.seq == seq && h.seq == j->rseq) {
            if (h.len > max)
                return SS_ENOSPC;
            if (defer) {
                /* gw_journal_stream_begin: the payload is read and
                 * checked piece by piece by the caller's reads. */
                j->cur_valid = 0;
                j->cur_crc = h.crc;
                j->st_crc = gw_crc32c(0, raw, 24);
                j->st_pos = j->roff + GW_JOURNAL_ENTRY_HDR;
                j->st_left = h.len;
                j->st_hlc = h.hlc;
                j->st_valid = 1;
                *len = h.len;
                return 0;
            }
            rc = payload_read(j, j->roff, &h, raw, buf, cap);
            if (rc < 0)
                return rc;
            if (rc == 1) {
                j->cur_first = j->rfirst;
                j->cur_off = j->roff + GW_JOURNAL_ENTRY_HDR;
                j->cur_len = h.len;
                j->cur_crc = h.crc;
                j->cur_valid = 1;
                j->roff += GW_JOURNAL_ENTRY_HDR + h.len;
                j->rseq++;
                j->rhlc = h.hlc;
                *len = h.len;
                return 0;
            }
        }
        /* Bad header, bad CRC, or an unexpected sequence: find the next
         * valid entry. Everything between is lost; if the wanted sequence
         * lies there, it is reported lost and the cursor stays on the
         * valid entry found. */
        uint64_t found = 0;
        rc = resync(j, j->rfile, j->roff, size, j->rseq, &found, &h);
        if (rc < 0)
            return rc;
        j->crc_failures++;
        if (rc == 0) {
            fws_log(j->shim, FWS_LOG_ERROR,
                    "event=journal_corrupt first=%" PRIu64 " offset=%" PRIu64 " to_end=1", s->first,
                    j->roff);
            j->roff = size;
            j->rseq = s->last + 1;
            return lost(j, seq, "crc");
        }
        fws_log(j->shim, FWS_LOG_ERROR,
                "event=journal_corrupt first=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64,
                s->first, j->roff, found - j->roff);
        j->roff = found;
        j->rseq = h.seq;
        if (h.seq > seq)
            return lost(j, seq, "crc");
    }
}

int gw_journal_read(gw_journal *j, uint64_t seq, void *buf, size_t cap, size_t *len)
{
    if (!buf)
        return SS_EINVAL;
    return read_entry(j, seq, buf, cap, cap, len, 0);
}

int gw_journal_read_head(gw_journal *j, uint64_t seq, void *buf, size_t cap, size_t max,
                         size_t *len)
{
    return read_entry(j, seq, buf, cap, max, len, 0);
}

int gw_journal_peek(gw_journal *j, uint64_t seq, size_t max, size_t *len)
{
    if (!j || !j->open || !len)
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    if (seq <= j->acked || seq >= j->next_seq)
        return SS_ENOENT;
    j->st_valid = 0;
    int64_t si = find_seg(j, seq);
    if (si < 0 || seq > j->segs[si].last)
        return SS_EAGAIN;
    gw_jseg *s = &j->segs[si];
    int rc;
    if (!j->rfile || j->rfirst != s->first || j->rseq > seq) {
        rc = reader_open(j, (uint32_t)si);
        if (rc < 0)
            return rc == FWS_ENOENT ? SS_EAGAIN : gw__map_fws(rc);
    }
    if (j->rseq != seq) {
        /* Entries to skip first (the first read after an open): the full
         * read skips them with their checks and checks this one too. */
        rc = read_entry(j, seq, NULL, 0, max, len, 0);
        return rc == SS_ECORRUPT ? SS_EAGAIN : rc;
    }
    uint64_t size = 0;
    rc = reader_size(j, (uint32_t)si, &size);
    if (rc < 0)
        return rc;
    ehdr h;
    uint8_t raw[GW_JOURNAL_ENTRY_HDR];
    rc = ehdr_read(j, j->rfile, j->roff, size, &h, raw);
    if (rc < 0)
        return rc;
    if (rc == 0 || h.seq != seq)
        return SS_EAGAIN; /* anything unusual: the caller reads it all, checked */
    if (h.len > max)
        return SS_ENOSPC;
    j->cur_valid = 0;
    j->cur_crc = h.crc;
    j->roff += GW_JOURNAL_ENTRY_HDR + h.len;
    j->rseq++;
    j->rhlc = h.hlc;
    *len = h.len;
    return 0;
}

uint32_t gw_journal_entry_crc(const gw_journal *j)
{
    return j->cur_crc;
}

int gw_journal_stream_begin(gw_journal *j, uint64_t seq, size_t max, size_t *len)
{
    return read_entry(j, seq, NULL, 0, max, len, 1);
}

int gw_journal_stream_read(gw_journal *j, void *buf, size_t n)
{
    if (!j || !j->open || (!buf && n > 0))
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    if (!j->st_valid || !j->rfile || n > j->st_left)
        return SS_EINVAL;
    int rc = fws_read_full(j->shim, j->rfile, j->st_pos, buf, n);
    if (rc < 0) {
        j->st_valid = 0;
        return gw__map_fws(rc);
    }
    j->st_crc = gw_crc32c(j->st_crc, buf, n);
    j->st_pos += n;
    j->st_left -= (uint32_t)n;
    return 0;
}

int gw_journal_stream_end(gw_journal *j)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (!j->st_valid || j->st_left != 0)
        return SS_EINVAL;
    j->st_valid = 0;
    if (j->st_crc != j->cur_crc) {
        /* The cursor stays on the entry: its bytes went out already, so the
         * caller abandons what it was sending with them. */
        j->crc_failures++;
        fws_log(j->shim, FWS_LOG_ERROR,
                "event=journal_corrupt first=%" PRIu64 " offset=%" PRIu64 " while=streaming",
                j->rfirst, j->roff);
        return SS_ECORRUPT;
    }
    uint32_t n = (uint32_t)(j->st_pos - j->roff - GW_JOURNAL_ENTRY_HDR);
    j->cur_first = j->rfirst;
    j->cur_off = j->roff + GW_JOURNAL_ENTRY_HDR;
    j->cur_len = n;
    j->cur_valid = 1;
    j->roff = j->st_pos;
    j->rseq++;
    j->rhlc = j->st_hlc;
    return 0;
}

int gw_journal_read_more(gw_journal *j, size_t off, void *buf, size_t n)
{
    if (!j || !j->open || (!buf && n > 0))
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    /* The entry must still be the one the cursor's file holds: any read of
     * another segment, a reclaim or an append that replaced the tail file
     * ends it. */
    if (!j->cur_valid || !j->rfile || j->rfirst != j->cur_first || off > j->cur_len ||
        n > j->cur_len - off)
        return SS_EINVAL;
    int rc = fws_read_full(j->shim, j->rfile, j->cur_off + off, buf, n);
    return rc < 0 ? gw__map_fws(rc) : 0;
}

void gw_journal_mark(const gw_journal *j, gw_jmark *m)
{
    m->valid = j->rfile != NULL;
    m->first = j->rfirst;
    m->off = j->roff;
    m->seq = j->rseq;
    m->crc_failures = j->crc_failures;
}

void gw_journal_rewind(gw_journal *j, const gw_jmark *m)
{
    j->crc_failures = m->crc_failures;
    j->st_valid = 0;
    if (!m->valid) {
        reader_close(j);
        return;
    }
    if (!j->rfile || j->rfirst != m->first) {
        int64_t si = find_seg(j, m->first);
        /* Gone (reclaimed) or not openable: the next read starts over from
         * its segment's beginning and reports what it finds. */
        if (si < 0 || j->segs[si].first != m->first || reader_open(j, (uint32_t)si) < 0) {
            reader_close(j);
            return;
        }
    }
    j->roff = m->off;
    j->rseq = m->seq;
}

/* ---- epoch confirmation and renumbering ----------------------------------- */

int gw_journal_confirmed(const gw_journal *j)
{
    return (j->ckflags & GW_CKPT_F_CONFIRMED) != 0;
}

int gw_journal_confirm(gw_journal *j)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    if (j->ckflags & GW_CKPT_F_CONFIRMED)
        return 0;
    uint32_t old = j->ckflags;
    j->ckflags |= GW_CKPT_F_CONFIRMED;
    int rc = ckpt_write(j);
    if (rc < 0)
        j->ckflags = old;
    return rc;
}

/* Rewrites the leading "{\"seq\":N," of an entry's JSON with the new number.
 * Returns the new length, or -1 if the payload does not start that way. */
static int rewrite_seq(const uint8_t *in, size_t len, uint64_t seq, uint8_t *out, size_t cap)
{
    static const char pre[] = "{\"seq\":";
    size_t pl = sizeof(pre) - 1, i = pl;
    if (len < pl + 2 || memcmp(in, pre, pl) != 0)
        return -1;
    while (i < len && in[i] >= '0' && in[i] <= '9')
        i++;
    if (i == pl || i >= len || (in[i] != ',' && in[i] != '}'))
        return -1;
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, seq);
    if (n < 0 || pl + (size_t)n + (len - i) > cap)
        return -1;
    memcpy(out, pre, pl);
    memcpy(out + pl, num, (size_t)n);
    memcpy(out + pl + (size_t)n, in + i, len - i);
    return (int)(pl + (size_t)n + (len - i));
}

int gw_journal_renumber(gw_journal *j, uint64_t committed)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (j->broken)
        return j->broken;
    uint64_t first = j->acked + 1, next = j->next_seq;
    if ((j->ckflags & GW_CKPT_F_CONFIRMED) || next <= first || committed < first ||
        committed > (UINT64_C(1) << 53) - 1 - (next - first))
        return SS_EINVAL;
    /* Leftovers of an earlier attempt that never committed. */
    int rc = nameset_remove(j, RN_PREFIX);
    if (rc < 0)
        return rc;
    size_t cap = (size_t)j->cfg.entry_max + 32;
    uint8_t *in = ss_malloc(cap), *out = ss_malloc(cap);
    fws_file *f = NULL;
    uint64_t fsize = 0, count = next - first, newseq = committed + 1, lost_here = 0;
    if (!in || !out) {
        rc = SS_ENOMEM;
        goto fail;
    }
    for (uint64_t seq = first; seq < next; seq++, newseq++) {
        size_t len = 0;
        int olen, is_lost = 0;
        rc = gw_journal_read(j, seq, in, cap, &len);
        if (rc == 0)
            olen = rewrite_seq(in, len, newseq, out, j->cfg.entry_max);
        else if (rc == SS_ECORRUPT)
            olen = -1;
        else
            goto fail;
        if (olen < 0) {
            /* Lost to corruption (or not a change we wrote): it travels as
             * the placeholder the daemon refuses and audits, under its new
             * number, so the loss stays visible centrally. */
            olen = snprintf((char *)out, cap, LOST_JSON, newseq);
            if (olen < 0 || (size_t)olen >= cap) {
                rc = SS_EINTERNAL;
                goto fail;
            }
            is_lost = 1;
            lost_here++;
        }
        uint64_t need = GW_JOURNAL_ENTRY_HDR + (uint64_t)olen;
        if (!f || fsize + need > j->cfg.segment_max) {
            if (f) {
                rc = gw__map_fws(fws_sync(j->shim, f));
                fws_close(j->shim, f);
                f = NULL;
                if (rc < 0)
                    goto fail;
            }
            char name[SEG_NAME_LEN + 1];
            snprintf(name, sizeof(name), RN_PREFIX "%016" PRIx64 SEG_SUFFIX, newseq);
            rc = gw__map_fws(fws_open(j->shim, name, FWS_O_CREATE, &f));
            if (rc == 0)
                rc = gw__map_fws(fws_truncate(j->shim, f, 0));
            if (rc < 0)
                goto fail;
            fsize = 0;
        }
        uint8_t hdr[GW_JOURNAL_ENTRY_HDR];
        /* The entry keeps its own HLC (the change is the same change). */
        ehdr_encode(hdr, (uint32_t)olen, newseq, is_lost ? 0 : j->rhlc);
        gw__put32(hdr + 24, gw_crc32c(gw_crc32c(0, hdr, 24), out, (size_t)olen));
        rc = gw__map_fws(fws_append(j->shim, f, hdr, sizeof(hdr)));
        if (rc == 0)
            rc = gw__map_fws(fws_append(j->shim, f, out, (size_t)olen));
        if (rc < 0)
            goto fail;
        fsize += need;
    }
    rc = gw__map_fws(fws_sync(j->shim, f));
    fws_close(j->shim, f);
    f = NULL;
    if (rc < 0)
        goto fail;

    /* The commit point: one checkpoint write. Until it is durable the old
     * segments are the journal and the rn-* files are garbage; after it the
     * reverse. If the write fails we cannot tell which slot storage kept, so
     * the journal refuses everything until a reopen reads it back. */
    uint64_t old_acked = j->acked, old_next = j->next_seq;
    uint32_t old_flags = j->ckflags;
    j->acked = committed;
    j->next_seq = committed + 1 + count;
    j->ckflags = GW_CKPT_F_CONFIRMED | GW_CKPT_F_RN_COMMIT;
    j->lost += lost_here;
    rc = ckpt_write(j);
    if (rc < 0) {
        j->acked = old_acked;
        j->next_seq = old_next;
        j->ckflags = old_flags;
        j->lost -= lost_here;
        j->broken = SS_EIO;
        goto out;
    }
    fws_log(j->shim, FWS_LOG_WARN,
            "event=journal_renumbered count=%" PRIu64 " old_first=%" PRIu64 " new_first=%" PRIu64
            " lost=%" PRIu64 " reason=\"upstream already holds these numbers from a lost journal\"",
            count, first, committed + 1, lost_here);
    /* Finish the switch the way recovery would: reopen. */
    {
        const fws *shim = j->shim;
        gw_journal_config cfg = j->cfg;
        uint64_t crc = j->crc_failures, torn = j->torn_bytes;
        gw_journal_free(j);
        rc = gw_journal_open(j, shim, &cfg);
        if (rc == 0) {
            j->renumbered = count;
            j->crc_failures += crc;
            j->torn_bytes += torn;
            rc = (int)(count > INT32_MAX ? INT32_MAX : count);
        }
    }
    goto out;
fail:
    if (f)
        fws_close(j->shim, f);
    (void)nameset_remove(j, RN_PREFIX);
    if (rc == SS_EFULL)
        fws_log(j->shim, FWS_LOG_ERROR,
                "event=journal_renumber_failed err=full reason=\"no storage for the copy\"");
    else
        fws_log(j->shim, FWS_LOG_ERROR, "event=journal_renumber_failed err=%s", ss_err_name(rc));
out:
    ss_free(in);
    ss_free(out);
    return rc;
}

/* ---- checkpoint-advancing operations -------------------------------------- */

int gw_journal_ack(gw_journal *j, uint64_t seq)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (seq <= j->acked)
        return 0;
    uint64_t old_acked = j->acked, old_next = j->next_seq;
    j->acked = seq;
    if (j->next_seq <= seq)
        j->next_seq = seq + 1;
    int rc = ckpt_write(j);
    if (rc < 0) {
        j->acked = old_acked;
        j->next_seq = old_next;
        return rc;
    }
    reclaim(j);
    return 0;
}

int gw_journal_save_hlc(gw_journal *j, ss_hlc_t hlc)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (hlc <= j->hlc)
        return 0;
    ss_hlc_t old = j->hlc;
    j->hlc = hlc;
    int rc = ckpt_write(j);
    if (rc < 0)
        j->hlc = old;
    return rc;
}

int gw_journal_note_sync(gw_journal *j, int err, int64_t wall_ms)
{
    if (!j || !j->open)
        return SS_EINVAL;
    if (err == 0) {
        j->last_sync_ms = wall_ms;
    } else {
        j->last_error = err;
        j->last_error_ms = wall_ms;
    }
    return ckpt_write(j);
}

/* Copies text into a log line field: printable ASCII only, quotes and
 * backslashes replaced, so one record stays one parseable line. */
static void put_clean(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    for (size_t i = 0; i < n && *pos + 1 < cap; i++) {
        char c = s[i];
        out[(*pos)++] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : c;
    }
    out[*pos < cap ? *pos : cap - 1] = '\0';
}

int gw_journal_note_refused(gw_journal *j, uint64_t seq, const char *code, const char *field,
                            const char *message, const char *change, size_t change_len, int is_lost)
{
    if (!j || !j->open || !code)
        return SS_EINVAL;
    char line[REFUSED_LINE_MAX];
    int n = snprintf(line, sizeof(line), "seq=%" PRIu64 " code=%s field=%s lost=%d message=\"", seq,
                     code, field && field[0] ? field : "-", is_lost ? 1 : 0);
    if (n < 0 || (size_t)n >= sizeof(line))
        return SS_EINVAL;
    size_t pos = (size_t)n;
    /* message is cut so that the change and the line end always fit */
    if (message)
        put_clean(line, sizeof(line) - REFUSED_CHANGE_MAX - 32, &pos, message, strlen(message));
    memcpy(line + pos, "\" change=", 9);
    pos += 9;
    if (change && change_len > 0) {
        /* The change is our own compact JSON (no newline): kept byte for
         * byte, cut at REFUSED_CHANGE_MAX with a visible "...". */
        size_t c = change_len > REFUSED_CHANGE_MAX ? REFUSED_CHANGE_MAX : change_len;
        memcpy(line + pos, change, c);
        pos += c;
        if (c < change_len) {
            memcpy(line + pos, "...", 3);
            pos += 3;
        }
    } else {
        line[pos++] = '-';
    }
    line[pos++] = '\n';

    fws_file *f = NULL;
    uint64_t size = 0;
    int rc = fws_open(j->shim, REFUSED_LOG, FWS_O_CREATE, &f);
    if (rc == 0)
        rc = fws_size(j->shim, f, &size);
    if (rc == 0 && size + pos > j->cfg.refused_max) {
        /* Rotate: the newest refused_max bytes and the file before it stay. */
        fws_close(j->shim, f);
        f = NULL;
        rc = fws_remove(j->shim, REFUSED_OLD);
        if (rc == FWS_ENOENT)
            rc = 0;
        if (rc == 0)
            rc = fws_rename(j->shim, REFUSED_LOG, REFUSED_OLD);
        if (rc == 0)
            rc = fws_open(j->shim, REFUSED_LOG, FWS_O_CREATE, &f);
    }
    if (rc == 0)
        rc = fws_append(j->shim, f, line, pos);
    if (rc == 0)
        rc = fws_sync(j->shim, f);
    if (f)
        fws_close(j->shim, f);
    if (rc < 0)
        return gw__map_fws(rc);
    if (is_lost)
        j->lost++;
    else
        j->refused++;
    fws_log(j->shim, FWS_LOG_WARN, "event=change_refused seq=%" PRIu64 " code=%s field=%s lost=%d",
            seq, code, field && field[0] ? field : "-", is_lost ? 1 : 0);
    return 0;
}

static int walk_file(gw_journal *j, const char *name, int (*cb)(void *arg, const char *line),
                     void *arg)
{
    fws_file *f = NULL;
    int rc = fws_open(j->shim, name, 0, &f);
    if (rc == FWS_ENOENT)
        return 0;
    if (rc < 0)
        return gw__map_fws(rc);
    char line[REFUSED_LINE_MAX + 16];
    size_t have = 0;
    uint64_t off = 0;
    for (;;) {
        rc = fws_read(j->shim, f, off, line + have, sizeof(line) - 1 - have);
        if (rc < 0) {
            rc = gw__map_fws(rc);
            break;
        }
        off += (uint64_t)rc;
        have += (size_t)rc;
        int eof = rc == 0;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (line[i] != '\n')
                continue;
            line[i] = '\0';
            rc = cb(arg, line + start);
            if (rc != 0)
                goto out;
            start = i + 1;
        }
        memmove(line, line + start, have - start);
        have -= start;
        if (have == sizeof(line) - 1) { /* an over-long line: emit it cut */
            line[have] = '\0';
            rc = cb(arg, line);
            if (rc != 0)
                goto out;
            have = 0;
        }
        if (eof) {
            rc = 0;
            break;
        }
    }
out:
    fws_close(j->shim, f);
    return rc;
}

int gw_journal_refused_walk(gw_journal *j, int (*cb)(void *arg, const char *line), void *arg)
{
    if (!j || !j->open || !cb)
        return SS_EINVAL;
    int rc = walk_file(j, REFUSED_OLD, cb, arg);
    if (rc == 0)
        rc = walk_file(j, REFUSED_LOG, cb, arg);
    return rc;
}

void gw_journal_stats_get(const gw_journal *j, gw_journal_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->acked = j->acked;
    st->next_seq = j->next_seq;
    st->pending = j->next_seq - 1 - j->acked;
    st->used_bytes = used_bytes(j);
    st->capacity = j->cfg.capacity;
    st->segments = j->nsegs;
    st->hlc = j->hlc;
    st->last_sync_ms = j->last_sync_ms;
    st->last_error = j->last_error;
    st->last_error_ms = j->last_error_ms;
    st->full_refusals = j->full_refusals;
    st->refused = j->refused;
    st->lost = j->lost;
    st->crc_failures = j->crc_failures;
    st->torn_bytes = j->torn_bytes;
    st->ckpt_fallbacks = j->ckpt_fallbacks;
    st->missing_at_open = j->missing_at_open;
    st->renumbered = j->renumbered;
    st->confirmed = (j->ckflags & GW_CKPT_F_CONFIRMED) != 0;
}
