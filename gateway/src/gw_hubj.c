/* gw_hubj.c - the hub's store-and-forward journal (format in gw/hub.h):
 * append-only CRC-checked segments of whole envelopes, an atomically
 * replaced per-origin checkpoint, recovery that rebuilds the record index,
 * reclaim of what the upstream committed, and a capacity that refuses. */
#include "gw/hub.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gw/crc32c.h"
#include "proto/alloc.h"
#include "proto/err.h"
#include "internal.h"

#define SEG_PREFIX   "hseg-"
#define SEG_NAME_LEN 25 /* "hseg-" + 16 hex + ".log" */
#define CKPT_NAME    "hub.ckpt"
#define CKPT_ENTRY   (1 + SS_ID_MAX + 24)
#define REFUSED_LOG  "hub-refused.log"
#define REFUSED_OLD  "hub-refused.old.log"
#define SCAN_CHUNK   4096u

void gw_hubj_config_default(gw_hubj_config *c)
{
    c->capacity = UINT64_C(256) << 20;
    c->segment_max = 4u << 20;
    c->max_records = 65536;
    c->max_origins = 4096;
    c->max_envelope = (256u << 10) + 1024;
    c->refused_max = 65536;
}

void gw_hubj_init(gw_hubj *h)
{
    memset(h, 0, sizeof(*h));
}

static void seg_name(char *buf, size_t cap, uint64_t n)
{
    snprintf(buf, cap, SEG_PREFIX "%016" PRIx64 ".log", n);
}

int gw_hubj_origin(gw_hubj *h, const char *id, int create)
{
    for (uint32_t i = 0; i < h->norigins; i++)
        if (strcmp(h->origins[i].id, id) == 0)
            return (int)i;
    if (!create)
        return SS_ENOENT;
    if (ss_id_check_str(id) < 0)
        return SS_EID;
    if (h->norigins >= h->cfg.max_origins)
        return SS_ELIMIT;
    gw_hub_origin *o = &h->origins[h->norigins];
    memset(o, 0, sizeof(*o));
    memcpy(o->id, id, strlen(id) + 1);
    o->head = o->tail = GW_HUB_NO_REC;
    h->dirty = 1;
    return (int)h->norigins++;
}

uint64_t gw_hubj_have(const gw_hubj *h, uint32_t o)
{
    const gw_hub_origin *g = &h->origins[o];
    return g->accepted > g->committed ? g->accepted : g->committed;
}

uint64_t gw_hubj_pending(const gw_hubj *h, uint32_t o)
{
    const gw_hub_origin *g = &h->origins[o];
    uint64_t n = 0, from = g->committed + 1;
    for (uint32_t r = g->head; r != GW_HUB_NO_REC; r = h->recs[r].next) {
        const gw_hub_rec *x = &h->recs[r];
        if (x->last < from)
            continue;
        uint64_t f = x->first > from ? x->first : from;
        n += x->last - f + 1;
        from = x->last + 1;
    }
    return n;
}

/* ---- checkpoint ---------------------------------------------------------- */

static int ckpt_load(gw_hubj *h)
{
    fws_file *f = NULL;
    uint64_t size = 0;
    int rc = fws_open(h->shim, CKPT_NAME, 0, &f);
    if (rc == FWS_ENOENT)
        return 0;
    if (rc < 0)
        return gw__map_fws(rc);
    rc = fws_size(h->shim, f, &size);
    if (rc == 0 && (size < 24 || size > h->ckcap))
        rc = FWS_EIO;
    if (rc == 0)
        rc = fws_read_full(h->shim, f, 0, h->ckbuf, (size_t)size);
    fws_close(h->shim, f);
    if (rc < 0) {
        fws_log(h->shim, FWS_LOG_ERROR, "event=hub_ckpt_unreadable size=%" PRIu64, size);
        return SS_ECORRUPT;
    }
    const uint8_t *b = h->ckbuf;
    if (gw__get32(b) != GW_HUB_CKPT_MAGIC || gw__get32(b + 4) != 1 ||
        gw__get32(b + size - 4) != gw_crc32c(0, b, (size_t)size - 4))
        return SS_ECORRUPT;
    h->gen = gw__get64(b + 8);
    uint32_t n = gw__get32(b + 16);
    size_t pos = 20;
    for (uint32_t i = 0; i < n; i++) {
        if (pos + 1 > size - 4)
            return SS_ECORRUPT;
        size_t l = b[pos++];
        char id[SS_ID_MAX + 1];
        if (l < 1 || l > SS_ID_MAX || pos + l + 24 > size - 4)
            return SS_ECORRUPT;
        memcpy(id, b + pos, l);
        id[l] = '\0';
        pos += l;
        int o = gw_hubj_origin(h, id, 1);
        if (o < 0)
            return SS_ECORRUPT;
        h->origins[o].accepted = gw__get64(b + pos);
        h->origins[o].committed = gw__get64(b + pos + 8);
        h->origins[o].refused = gw__get64(b + pos + 16);
        pos += 24;
    }
    h->dirty = 0;
    return 0;
}

static int ckpt_write(gw_hubj *h)
{
    uint8_t *b = h->ckbuf;
    size_t pos = 20;
    gw__put32(b, GW_HUB_CKPT_MAGIC);
    gw__put32(b + 4, 1);
    gw__put64(b + 8, h->gen + 1);
    gw__put32(b + 16, h->norigins);
    for (uint32_t i = 0; i < h->norigins; i++) {
        const gw_hub_origin *o = &h->origins[i];
        size_t l = strlen(o->id);
        b[pos++] = (uint8_t)l;
        memcpy(b + pos, o->id, l);
        pos += l;
        gw__put64(b + pos, o->accepted);
        gw__put64(b + pos + 8, o->committed);
        gw__put64(b + pos + 16, o->refused);
        pos += 24;
    }
    gw__put32(b + pos, gw_crc32c(0, b, pos));
    pos += 4;
    int rc = fws_write_atomic(h->shim, CKPT_NAME, b, pos);
    if (rc < 0) {
        fws_log(h->shim, FWS_LOG_ERROR, "event=hub_ckpt_write_failed err=%s", fws_strerror(rc));
        return SS_EIO;
    }
    h->gen++;
    h->dirty = 0;
    return 0;
}

/* ---- records --------------------------------------------------------------- */

/* Parses and checks the record at off of a segment of size bytes: the
 * header, the CRC over header and body (read in chunks), and the body's
 * fixed fields. Returns 1 with *r filled (origin index not set) and *oid,
 * 0 if not a valid record, <0 on I/O error. */
static int rec_check(gw_hubj *h, fws_file *f, uint64_t off, uint64_t size, gw_hub_rec *r, char *oid,
                     uint8_t *chunk)
{
    uint8_t hdr[GW_HUB_REC_HDR];
    if (off + GW_HUB_REC_HDR > size)
        return 0;
    int rc = fws_read_full(h->shim, f, off, hdr, sizeof(hdr));
    if (rc < 0)
        return gw__map_fws(rc);
    uint32_t blen = gw__get32(hdr + 4);
    if (gw__get32(hdr) != GW_HUB_MAGIC || blen < 1 + 1 + 14 || blen > h->cfg.max_envelope + 96 ||
        off + GW_HUB_REC_HDR + blen > size)
        return 0;
    uint32_t crc = gw_crc32c(0, hdr, 8);
    uint64_t pos = off + GW_HUB_REC_HDR;
    uint8_t fixed[1 + SS_ID_MAX + 14];
    size_t fixed_have = 0;
    uint32_t left = blen;
    while (left > 0) {
        size_t n = left < SCAN_CHUNK ? left : SCAN_CHUNK;
        rc = fws_read_full(h->shim, f, pos, chunk, n);
        if (rc < 0)
            return gw__map_fws(rc);
        crc = gw_crc32c(crc, chunk, n);
        if (fixed_have < sizeof(fixed)) {
            size_t c = sizeof(fixed) - fixed_have < n ? sizeof(fixed) - fixed_have : n;
            memcpy(fixed + fixed_have, chunk, c);
            fixed_have += c;
        }
        pos += n;
        left -= (uint32_t)n;
    }
    if (crc != gw__get32(hdr + 8))
        return 0;
    size_t ol = fixed[0];
    if (ol < 1 || ol > SS_ID_MAX || 1 + ol + 14 > blen || 1 + ol + 14 > fixed_have)
        return 0;
    memcpy(oid, fixed + 1, ol);
    oid[ol] = '\0';
    /* A NUL inside the stated length would make the name shorter than the
     * record says, and every length computed from it wrong: the scan then
     * lands inside this record, takes it for a torn tail and truncates an
     * acknowledged record after it (found by fuzz_journal). */
    if (memchr(oid, '\0', ol) != NULL || ss_id_check_str(oid) < 0)
        return 0;
    uint64_t first = gw__get64(fixed + 1 + ol);
    uint32_t count = gw__get32(fixed + 1 + ol + 8);
    uint16_t rl = (uint16_t)((fixed[1 + ol + 12] << 8) | fixed[1 + ol + 13]);
    if (first < 1 || count < 1 || 1 + ol + 14 + (size_t)rl >= blen)
        return 0;
    r->first = first;
    r->last = first + count - 1;
    r->off = off;
    r->len = blen - (uint32_t)(1 + ol + 14);
    return 1;
}

static void index_add(gw_hubj *h, uint32_t o, const gw_hub_rec *r)
{
    uint32_t i = (h->rhead + h->rcount) % h->cfg.max_records;
    h->recs[i] = *r;
    h->recs[i].origin = o;
    h->recs[i].next = GW_HUB_NO_REC;
    gw_hub_origin *g = &h->origins[o];
    if (g->tail == GW_HUB_NO_REC)
        g->head = i;
    else
        h->recs[g->tail].next = i;
    g->tail = i;
    g->nrecs++;
    h->rcount++;
    if (r->last > g->accepted)
        g->accepted = r->last;
}

/* Scans one segment into the index. The last segment's invalid tail is
 * truncated (a write in flight at a cut, never acknowledged); in an older
 * segment a damaged record is skipped by looking for the next valid one. */
static int scan_seg(gw_hubj *h, uint64_t n, int last, uint8_t *chunk)
{
    char name[SEG_NAME_LEN + 1];
    seg_name(name, sizeof(name), n);
    fws_file *f = NULL;
    uint64_t size = 0, off = 0, end = 0;
    int rc = fws_open(h->shim, name, 0, &f);
    if (rc == FWS_ENOENT)
        return 0;
    if (rc < 0)
        return gw__map_fws(rc);
    rc = fws_size(h->shim, f, &size);
    while (rc == 0 && off < size) {
        gw_hub_rec r;
        char oid[SS_ID_MAX + 1];
        memset(&r, 0, sizeof(r));
        rc = rec_check(h, f, off, size, &r, oid, chunk);
        if (rc < 0)
            break;
        if (rc == 0) {
            rc = 0;
            if (last)
                break; /* torn tail, handled below */
            /* Damage inside an older segment: find the next valid record. */
            uint64_t p = off + 1;
            int found = 0;
            for (; p + GW_HUB_REC_HDR <= size && !found; p++) {
                uint8_t m[4];
                if (fws_read_full(h->shim, f, p, m, 4) < 0)
                    break;
                if (gw__get32(m) == GW_HUB_MAGIC && rec_check(h, f, p, size, &r, oid, chunk) == 1)
                    found = 1;
            }
            h->crc_failures++;
            h->lost_records++;
            fws_log(h->shim, FWS_LOG_ERROR,
                    "event=hub_journal_corrupt segment=%s offset=%" PRIu64 " resumed=%d", name, off,
                    found);
            if (!found) {
                off = size;
                end = size;
                break;
            }
            off = p - 1;
            continue;
        }
        rc = 0;
        r.seg = n;
        int o = gw_hubj_origin(h, oid, 1);
        if (o < 0) {
            rc = SS_ECORRUPT;
            break;
        }
        if (r.last > h->origins[o].committed) {
            if (h->rcount >= h->cfg.max_records) {
                rc = SS_ECORRUPT;
                break;
            }
            index_add(h, (uint32_t)o, &r);
        }
        off += GW_HUB_REC_HDR + 1 + strlen(oid) + 14 + r.len; /* strlen(oid) is ol: no NUL */
        end = off;
    }
    if (rc == 0 && last && end < size) {
        h->torn_bytes += size - end;
        fws_log(h->shim, FWS_LOG_WARN, "event=hub_journal_torn_tail segment=%s bytes=%" PRIu64,
                name, size - end);
        if (!h->readonly)
            rc = gw__map_fws(fws_truncate(h->shim, f, end));
        size = end;
    }
    if (rc == 0)
        h->used += size;
    if (rc == 0 && last) {
        h->cur_size = size;
        if (!h->readonly) {
            h->cur = f;
            return 0;
        }
    }
    fws_close(h->shim, f);
    return rc;
}

typedef struct seg_range {
    uint64_t min, max;
    uint32_t n;
} seg_range;

static int seg_list_cb(void *arg, const char *name)
{
    seg_range *s = arg;
    if (strlen(name) != SEG_NAME_LEN || strncmp(name, SEG_PREFIX, 5) != 0 ||
        strcmp(name + 21, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 5; i < 21; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = (v << 4) | (uint64_t)d;
    }
    if (s->n == 0 || v < s->min)
        s->min = v;
    if (s->n == 0 || v > s->max)
        s->max = v;
    s->n++;
    return 0;
}

static void reclaim(gw_hubj *h);

int gw_hubj_open(gw_hubj *h, const fws *shim, const gw_hubj_config *cfg, int readonly)
{
    gw_hubj_init(h);
    h->shim = shim;
    h->cfg = *cfg;
    h->readonly = readonly;
    if (cfg->max_records < 16 || cfg->max_origins < 1 || cfg->max_origins > 65536 ||
        cfg->max_envelope < 1024 || cfg->segment_max < cfg->max_envelope + 128 ||
        cfg->capacity < cfg->segment_max || cfg->refused_max < 4096)
        return SS_EINVAL;
    h->recs = ss_malloc(sizeof(gw_hub_rec) * cfg->max_records);
    h->origins = ss_malloc(sizeof(gw_hub_origin) * cfg->max_origins);
    h->ckcap = 24 + (size_t)cfg->max_origins * CKPT_ENTRY;
    h->ckbuf = ss_malloc(h->ckcap);
    uint8_t *chunk = ss_malloc(SCAN_CHUNK);
    int rc = 0;
    if (!h->recs || !h->origins || !h->ckbuf || !chunk) {
        rc = SS_ENOMEM;
        goto out;
    }
    if ((rc = ckpt_load(h)) < 0)
        goto out;
    seg_range sr;
    memset(&sr, 0, sizeof(sr));
    rc = fws_list(shim, seg_list_cb, &sr);
    if (rc < 0) {
        rc = gw__map_fws(rc);
        goto out;
    }
    h->first_seg = sr.n ? sr.min : 1;
    h->cur_seg = sr.n ? sr.max : 0;
    for (uint64_t n = h->first_seg; sr.n && n <= h->cur_seg; n++)
        if ((rc = scan_seg(h, n, n == h->cur_seg, chunk)) < 0)
            goto out;
    h->open = 1;
    if (!readonly)
        reclaim(h);
    fws_log(shim, FWS_LOG_INFO,
            "event=hub_journal_open origins=%u records=%u segments=%" PRIu64 " used=%" PRIu64
            " crc_failures=%" PRIu64 " torn_bytes=%" PRIu64,
            h->norigins, h->rcount, sr.n ? h->cur_seg - h->first_seg + 1 : 0, h->used,
            h->crc_failures, h->torn_bytes);
out:
    ss_free(chunk);
    if (rc < 0)
        gw_hubj_free(h);
    return rc;
}

void gw_hubj_free(gw_hubj *h)
{
    if (!h)
        return;
    if (h->cur && h->shim)
        fws_close(h->shim, h->cur);
    h->cur = NULL;
    ss_free(h->recs);
    ss_free(h->origins);
    ss_free(h->ckbuf);
    h->recs = NULL;
    h->origins = NULL;
    h->ckbuf = NULL;
    h->open = 0;
}

int gw_hubj_append(gw_hubj *h, uint32_t o, uint64_t first, uint32_t count, const uint8_t *route,
                   size_t route_len, const uint8_t *env, size_t env_len)
{
    if (!h->open || h->readonly || o >= h->norigins || count < 1)
        return SS_EINVAL;
    if (h->broken)
        return h->broken;
    if (route_len + env_len > h->cfg.max_envelope || route_len > UINT16_MAX)
        return SS_EOVERSIZE;
    const gw_hub_origin *g = &h->origins[o];
    size_t ol = strlen(g->id);
    uint32_t blen = (uint32_t)(1 + ol + 14 + route_len + env_len);
    uint64_t need = GW_HUB_REC_HDR + blen;
    if (h->used + need > h->cfg.capacity || h->rcount >= h->cfg.max_records) {
        h->full_refusals++;
        fws_log(h->shim, FWS_LOG_WARN,
                "event=hub_journal_full origin=%s used=%" PRIu64 " capacity=%" PRIu64 " records=%u",
                g->id, h->used, h->cfg.capacity, h->rcount);
        return SS_EFULL;
    }
    int rc;
    if (!h->cur || h->cur_size + need > h->cfg.segment_max) {
        /* Rotate: the old segment must be durable before we forget it. */
        if (h->cur) {
            if ((rc = gw_hubj_sync(h)) < 0)
                return rc;
            fws_close(h->shim, h->cur);
            h->cur = NULL;
        }
        char name[SEG_NAME_LEN + 1];
        uint64_t n = h->cur_seg + 1;
        seg_name(name, sizeof(name), n);
        rc = fws_open(h->shim, name, FWS_O_CREATE, &h->cur);
        if (rc == 0)
            rc = fws_truncate(h->shim, h->cur, 0);
        if (rc < 0) {
            if (h->cur)
                fws_close(h->shim, h->cur);
            h->cur = NULL;
            return rc == FWS_ENOSPC ? SS_EFULL : gw__map_fws(rc);
        }
        if (h->cur_seg == 0)
            h->first_seg = n;
        h->cur_seg = n;
        h->cur_size = 0;
    }
    uint8_t hdr[GW_HUB_REC_HDR], fixed[1 + SS_ID_MAX + 14];
    gw__put32(hdr, GW_HUB_MAGIC);
    gw__put32(hdr + 4, blen);
    fixed[0] = (uint8_t)ol;
    memcpy(fixed + 1, g->id, ol);
    gw__put64(fixed + 1 + ol, first);
    gw__put32(fixed + 1 + ol + 8, count);
    fixed[1 + ol + 12] = (uint8_t)(route_len >> 8);
    fixed[1 + ol + 13] = (uint8_t)route_len;
    uint32_t crc = gw_crc32c(0, hdr, 8);
    crc = gw_crc32c(crc, fixed, 1 + ol + 14);
    if (route_len)
        crc = gw_crc32c(crc, route, route_len);
    crc = gw_crc32c(crc, env, env_len);
    gw__put32(hdr + 8, crc);
    rc = fws_append(h->shim, h->cur, hdr, sizeof(hdr));
    if (rc == 0)
        rc = fws_append(h->shim, h->cur, fixed, 1 + ol + 14);
    if (rc == 0 && route_len)
        rc = fws_append(h->shim, h->cur, route, route_len);
    if (rc == 0)
        rc = fws_append(h->shim, h->cur, env, env_len);
    if (rc < 0) {
        /* Take the partial record back out; if that fails, stop. */
        if (fws_truncate(h->shim, h->cur, h->cur_size) < 0)
            h->broken = SS_EIO;
        if (rc == FWS_ENOSPC) {
            h->full_refusals++;
            return SS_EFULL;
        }
        return gw__map_fws(rc);
    }
    gw_hub_rec r;
    memset(&r, 0, sizeof(r));
    r.first = first;
    r.last = first + count - 1;
    r.seg = h->cur_seg;
    r.off = h->cur_size;
    r.len = (uint32_t)(route_len + env_len);
    uint32_t idx = (h->rhead + h->rcount) % h->cfg.max_records;
    index_add(h, o, &r);
    h->cur_size += need;
    h->used += need;
    h->unsynced = 1;
    h->dirty = 1; /* accepted moved */
    return (int)idx;
}

int gw_hubj_sync(gw_hubj *h)
{
    if (h->broken)
        return h->broken;
    if (!h->unsynced || !h->cur)
        return 0;
#ifdef SS_PLANT_BUG_HUB_ACK_BEFORE_DURABLE /* PLANTED BUG, tests/sim test builds only */
    return 0;
#endif
    int rc = fws_sync(h->shim, h->cur);
    if (rc < 0) {
        /* What reached storage is unknown: nothing more may be acknowledged
         * until a reopen has recovered the journal. */
        h->broken = SS_EIO;
        fws_log(h->shim, FWS_LOG_ERROR, "event=hub_journal_sync_failed err=%s", fws_strerror(rc));
        return SS_EIO;
    }
    h->unsynced = 0;
    return 0;
}

int gw_hubj_read(gw_hubj *h, uint32_t r, uint8_t *buf, size_t cap, size_t *route_len)
{
    const gw_hub_rec *x = &h->recs[r];
    const gw_hub_origin *g = &h->origins[x->origin];
    size_t ol = strlen(g->id);
    if (x->len > cap)
        return SS_ENOSPC;
    fws_file *f = NULL;
    int own = 0, rc;
    if (h->cur && x->seg == h->cur_seg) {
        f = h->cur;
    } else {
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof(name), x->seg);
        rc = fws_open(h->shim, name, 0, &f);
        if (rc < 0)
            return rc == FWS_ENOENT ? SS_ECORRUPT : gw__map_fws(rc);
        own = 1;
    }
    uint8_t fixed[1 + SS_ID_MAX + 14];
    rc = fws_read_full(h->shim, f, x->off + GW_HUB_REC_HDR, fixed, 1 + ol + 14);
    if (rc == 0)
        rc = fws_read_full(h->shim, f, x->off + GW_HUB_REC_HDR + 1 + ol + 14, buf, x->len);
    if (own)
        fws_close(h->shim, f);
    if (rc < 0)
        return gw__map_fws(rc);
    /* The CRC was checked at recovery or the bytes were written by this
     * process; the fixed fields are checked again here against the index. */
    if (fixed[0] != ol || memcmp(fixed + 1, g->id, ol) != 0 ||
        gw__get64(fixed + 1 + ol) != x->first)
        return SS_ECORRUPT;
    *route_len = (size_t)((fixed[1 + ol + 12] << 8) | fixed[1 + ol + 13]);
    if (*route_len >= x->len)
        return SS_ECORRUPT;
    return (int)x->len;
}

void gw_hubj_commit(gw_hubj *h, uint32_t o, uint64_t seq)
{
    gw_hub_origin *g = &h->origins[o];
    if (seq > g->committed) {
        g->committed = seq;
        h->dirty = 1;
    }
    if (seq > g->accepted)
        g->accepted = seq;
}

/* Pops committed records off the front of the ring and removes the segments
 * that no longer hold anything pending (never the one being appended to). */
static void reclaim(gw_hubj *h)
{
    while (h->rcount > 0) {
        gw_hub_rec *x = &h->recs[h->rhead];
        gw_hub_origin *g = &h->origins[x->origin];
        if (x->last > g->committed)
            break;
        g->head = x->next;
        if (g->head == GW_HUB_NO_REC)
            g->tail = GW_HUB_NO_REC;
        g->nrecs--;
        h->rhead = (h->rhead + 1) % h->cfg.max_records;
        h->rcount--;
    }
    uint64_t keep_from = h->rcount ? h->recs[h->rhead].seg : h->cur_seg;
    while (h->first_seg < keep_from && h->first_seg < h->cur_seg) {
        char name[SEG_NAME_LEN + 1];
        seg_name(name, sizeof(name), h->first_seg);
        fws_file *f = NULL;
        uint64_t size = 0;
        if (fws_open(h->shim, name, 0, &f) == 0) {
            (void)fws_size(h->shim, f, &size);
            fws_close(h->shim, f);
        }
        int rc = fws_remove(h->shim, name);
        if (rc < 0 && rc != FWS_ENOENT) {
            fws_log(h->shim, FWS_LOG_WARN, "event=hub_reclaim_failed segment=%s err=%s", name,
                    fws_strerror(rc));
            return;
        }
        h->used = h->used > size ? h->used - size : 0;
        h->first_seg++;
    }
}

int gw_hubj_checkpoint(gw_hubj *h)
{
    if (h->readonly || !h->open)
        return 0;
    if (h->broken)
        return h->broken;
    if (h->dirty) {
        /* accepted values in the checkpoint must be durable data: sync
         * first so the checkpoint never claims an envelope storage lost. */
        int rc = gw_hubj_sync(h);
        if (rc == 0)
            rc = ckpt_write(h);
        if (rc < 0)
            return rc;
    }
    reclaim(h);
    return 0;
}

int gw_hubj_note_refused(gw_hubj *h, uint32_t o, uint64_t seq, const char *code,
                         const char *message)
{
    if (h->readonly)
        return 0;
    char line[512];
    int n = snprintf(line, sizeof(line), "origin=%s seq=%" PRIu64 " code=%s message=\"",
                     h->origins[o].id, seq, code);
    if (n < 0 || (size_t)n >= sizeof(line))
        return SS_EINVAL;
    size_t pos = (size_t)n;
    for (const char *m = message ? message : ""; *m && pos + 3 < sizeof(line); m++)
        line[pos++] = (*m < 0x20 || *m > 0x7e || *m == '"' || *m == '\\') ? '?' : *m;
    line[pos++] = '"';
    line[pos++] = '\n';
    h->origins[o].refused++;
    h->dirty = 1;
    fws_file *f = NULL;
    uint64_t size = 0;
    int rc = fws_open(h->shim, REFUSED_LOG, FWS_O_CREATE, &f);
    if (rc == 0)
        rc = fws_size(h->shim, f, &size);
    if (rc == 0 && size + pos > h->cfg.refused_max) {
        fws_close(h->shim, f);
        f = NULL;
        rc = fws_remove(h->shim, REFUSED_OLD);
        if (rc == FWS_ENOENT)
            rc = 0;
        if (rc == 0)
            rc = fws_rename(h->shim, REFUSED_LOG, REFUSED_OLD);
        if (rc == 0)
            rc = fws_open(h->shim, REFUSED_LOG, FWS_O_CREATE, &f);
    }
    if (rc == 0)
        rc = fws_append(h->shim, f, line, pos);
    if (rc == 0)
        rc = fws_sync(h->shim, f);
    if (f)
        fws_close(h->shim, f);
    return gw__map_fws(rc);
}

static int walk(gw_hubj *h, const char *name, int (*cb)(void *, const char *), void *arg)
{
    fws_file *f = NULL;
    int rc = fws_open(h->shim, name, 0, &f);
    if (rc == FWS_ENOENT)
        return 0;
    if (rc < 0)
        return gw__map_fws(rc);
    char line[600];
    size_t have = 0;
    uint64_t off = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        rc = fws_read(h->shim, f, off, line + have, sizeof(line) - 1 - have);
        if (rc <= 0)
            break;
        off += (uint64_t)rc;
        have += (size_t)rc;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (line[i] != '\n')
                continue;
            line[i] = '\0';
            if (cb(arg, line + start) != 0) {
                fws_close(h->shim, f);
                return 0;
            }
            start = i + 1;
        }
        memmove(line, line + start, have - start);
        have -= start;
        if (have == sizeof(line) - 1)
            have = 0; /* an over-long line: dropped */
    }
    fws_close(h->shim, f);
    return rc < 0 ? gw__map_fws(rc) : 0;
}

int gw_hubj_refused_walk(gw_hubj *h, int (*cb)(void *arg, const char *line), void *arg)
{
    int rc = walk(h, REFUSED_OLD, cb, arg);
    return rc == 0 ? walk(h, REFUSED_LOG, cb, arg) : rc;
}

void gw_hubj_stats_get(const gw_hubj *h, gw_hubj_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->used_bytes = h->used;
    st->capacity = h->cfg.capacity;
    st->segments =
        h->cur_seg >= h->first_seg && h->cur_seg ? (uint32_t)(h->cur_seg - h->first_seg + 1) : 0;
    st->records = h->rcount;
    st->origins = h->norigins;
    st->full_refusals = h->full_refusals;
    st->crc_failures = h->crc_failures;
    st->torn_bytes = h->torn_bytes;
    st->lost_records = h->lost_records;
}
