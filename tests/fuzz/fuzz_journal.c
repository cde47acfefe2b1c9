/* fuzz_journal.c - libFuzzer target for recovery of the gateway journal
 * (gw_journal) and the hub journal (gw_hubj) from untrusted bytes: whatever
 * a flash chip, a power cut or an attacker with the storage left in the
 * files, opening, recovering, reading, appending, acknowledging and
 * reclaiming must not crash, leak or hand out bytes without a valid CRC.
 *
 * Input: byte 0 bit 0 picks the journal (0: gateway, 1: hub); bits 1-7 seed
 * the workload. Then records [u8 kind][u8 arg][u16 len LE][len bytes], each
 * one file of the simulated storage (firmware-shim/sim), named by kind:
 * gateway 0 ckpt-a, 1 ckpt-b, 2 seg-<arg>.log, 3 rn-<arg>.log, 4 refused.log,
 * 5 seg-<arg * 16>.log, 6 a foreign name; hub 0 hub.ckpt, 1 hseg-<arg>.log,
 * 2 hub-refused.log, 3 a foreign name. Kind bit 7 asks the target to fix up
 * the CRCs of the file (entries it can walk, checkpoints), so the fuzzer
 * gets past the checksums to the logic behind them.
 *
 * Properties (else abort): every entry or record the journal hands out is
 * found, byte for byte with its sequence numbers, as a CRC-valid entry of
 * the input files or was appended in this run; what this run appended and
 * did not acknowledge is there, unchanged, after a reopen; counters stay
 * consistent (pending = next - 1 - acked). Seeds in corpus/journal/ are real
 * journals written through the API (SITESYNC_FUZZ_JOURNAL_SEEDS=DIR
 * fuzz_journal writes them and exits). */
// fuzz-link: gw fws_sim
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fws_sim.h"
#include "gw/crc32c.h"
#include "gw/hub.h"
#include "gw/journal.h"
#include "proto/err.h"
#include "ss_test.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILES  16
#define MAX_FILE   8192
#define MAX_APPEND 24
#define MAX_SNAP   256 /* a renumber may write many small segments */

/* Both journals store integers big-endian. */
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* SITESYNC_FUZZ_LOG=1 prints the journals' log lines, to study a finding. */
static void log_line(void *arg, int level, const char *line)
{
    (void)arg;
    fprintf(stderr, "log[%d] %s\n", level, line);
}

static fws_sim *mk_sim(fws *shim)
{
    fws_sim_config c;
    memset(&c, 0, sizeof c);
    c.seed = 1;
    c.log_level = -1;
    const char *dbg = getenv("SITESYNC_FUZZ_LOG");
    if (dbg != NULL && dbg[0] == '1') {
        c.log_level = 9;
        c.log_sink = log_line;
    }
    c.capacity_bytes = 1u << 20;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&c, &sim, shim), 0);
    return sim;
}

static void put_file(const fws *shim, const char *name, const uint8_t *p, size_t n)
{
    fws_file *f = NULL;
    if (fws_open(shim, name, FWS_O_CREATE, &f) != 0)
        return;
    uint64_t size = 0;
    if (fws_size(shim, f, &size) == 0 && size == 0 && n > 0)
        (void)fws_append(shim, f, p, n);
    (void)fws_sync(shim, f);
    fws_close(shim, f);
}

/* ---- CRC fix-ups ------------------------------------------------------------ */

static void fix_gw_segment(uint8_t *b, size_t n)
{
    size_t off = 0;
    while (off + GW_JOURNAL_ENTRY_HDR <= n) {
        uint32_t len = get32(b + off + 4);
        if (len > n - off - GW_JOURNAL_ENTRY_HDR)
            break;
        uint32_t crc = gw_crc32c(0, b + off, 24);
        crc = gw_crc32c(crc, b + off + GW_JOURNAL_ENTRY_HDR, len);
        put32(b + off + 24, crc);
        off += GW_JOURNAL_ENTRY_HDR + len;
    }
}

static void fix_hub_segment(uint8_t *b, size_t n)
{
    size_t off = 0;
    while (off + GW_HUB_REC_HDR <= n) {
        uint32_t len = get32(b + off + 4);
        if (len > n - off - GW_HUB_REC_HDR)
            break;
        uint32_t crc = gw_crc32c(0, b + off, 8);
        crc = gw_crc32c(crc, b + off + GW_HUB_REC_HDR, len);
        put32(b + off + 8, crc);
        off += GW_HUB_REC_HDR + len;
    }
}

/* Both checkpoints end in a CRC-32C of everything before it. */
static void fix_tail_crc(uint8_t *b, size_t n)
{
    if (n >= 8)
        put32(b + n - 4, gw_crc32c(0, b, n - 4));
}

/* Lays the input's files out on the simulated storage; returns the offset of
 * the first byte after the records. */
static void load_files(const fws *shim, int hub, const uint8_t *data, size_t size)
{
    static uint8_t buf[MAX_FILE];
    size_t off = 1;
    for (int i = 0; i < MAX_FILES && off + 4 <= size; i++) {
        uint8_t kind = data[off], arg = data[off + 1];
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;
        off += 4;
        if (len > size - off)
            len = size - off;
        if (len > MAX_FILE)
            len = MAX_FILE;
        memcpy(buf, data + off, len);
        off += len;
        int fix = kind & 0x80;
        char name[64];
        if (!hub) {
            switch ((kind & 0x7f) % 7) {
            case 0:
            case 1:
                snprintf(name, sizeof name, "ckpt-%c", (kind & 0x7f) % 7 ? 'b' : 'a');
                if (fix)
                    fix_tail_crc(buf, len);
                break;
            case 2:
            case 5:
                snprintf(name, sizeof name, "seg-%016" PRIx64 ".log",
                         (uint64_t)arg * ((kind & 0x7f) % 7 == 5 ? 16 : 1));
                if (fix)
                    fix_gw_segment(buf, len);
                break;
            case 3:
                snprintf(name, sizeof name, "rn-%016" PRIx64 ".log", (uint64_t)arg);
                if (fix)
                    fix_gw_segment(buf, len);
                break;
            case 4:
                snprintf(name, sizeof name, "refused%s.log", arg & 1 ? ".old" : "");
                break;
            default:
                snprintf(name, sizeof name, "seg-%02x.log", arg);
                break;
            }
        } else {
            switch ((kind & 0x7f) % 4) {
            case 0:
                snprintf(name, sizeof name, "hub.ckpt");
                if (fix)
                    fix_tail_crc(buf, len);
                break;
            case 1:
                snprintf(name, sizeof name, "hseg-%016" PRIx64 ".log", (uint64_t)arg);
                if (fix)
                    fix_hub_segment(buf, len);
                break;
            case 2:
                snprintf(name, sizeof name, "hub-refused%s.log", arg & 1 ? ".old" : "");
                break;
            default:
                snprintf(name, sizeof name, "hseg-%x.log", arg);
                break;
            }
        }
        put_file(shim, name, buf, len);
    }
}

/* A copy of the input files as they were before the journal touched them,
 * to look up what it hands out. */
typedef struct snap {
    int n;
    uint8_t *data[MAX_SNAP];
    size_t len[MAX_SNAP];
} snap;

static void snap_take(snap *s, const fws_sim *sim, const char *prefix)
{
    memset(s, 0, sizeof *s);
    int files = fws_sim_file_count(sim);
    for (int i = 0; i < files; i++) {
        const char *nm = fws_sim_file_name(sim, i);
        if (nm == NULL || strncmp(nm, prefix, strlen(prefix)) != 0)
            continue;
        int64_t sz = fws_sim_peek(sim, nm, 0, NULL, 0);
        if (sz < 0)
            continue;
        uint8_t *p = malloc((size_t)sz + 1);
        ASSERT(p != NULL);
        ASSERT_EQ(fws_sim_peek(sim, nm, 0, p, (size_t)sz), sz);
        ASSERT(s->n < MAX_SNAP);
        s->data[s->n] = p;
        s->len[s->n] = (size_t)sz;
        s->n++;
    }
}

static void snap_free(snap *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->data[i]);
    s->n = 0;
}

/* 1 if some CRC-valid gateway entry of the snapshot has this sequence and
 * payload. Every offset is tried: recovery may resynchronise anywhere. */
static int gw_entry_known(const snap *s, uint64_t seq, const uint8_t *p, size_t len)
{
    for (int i = 0; i < s->n; i++) {
        const uint8_t *b = s->data[i];
        for (size_t off = 0; off + GW_JOURNAL_ENTRY_HDR + len <= s->len[i]; off++) {
            if (get32(b + off) != GW_JOURNAL_MAGIC || get32(b + off + 4) != len ||
                get64(b + off + 8) != seq)
                continue;
            uint32_t crc = gw_crc32c(0, b + off, 24);
            crc = gw_crc32c(crc, b + off + GW_JOURNAL_ENTRY_HDR, len);
            if (crc == get32(b + off + 24) && memcmp(b + off + GW_JOURNAL_ENTRY_HDR, p, len) == 0)
                return 1;
        }
    }
    return 0;
}

/* The same for hub records: a CRC-valid record whose body ends in these
 * route + envelope bytes. */
static int hub_record_known(const snap *s, const uint8_t *p, size_t len)
{
    for (int i = 0; i < s->n; i++) {
        const uint8_t *b = s->data[i];
        for (size_t off = 0; off + GW_HUB_REC_HDR + len <= s->len[i]; off++) {
            if (get32(b + off) != GW_HUB_MAGIC)
                continue;
            uint32_t blen = get32(b + off + 4);
            if (blen < len || blen > s->len[i] - off - GW_HUB_REC_HDR)
                continue;
            uint32_t crc = gw_crc32c(0, b + off, 8);
            crc = gw_crc32c(crc, b + off + GW_HUB_REC_HDR, blen);
            if (crc == get32(b + off + 8) &&
                memcmp(b + off + GW_HUB_REC_HDR + blen - len, p, len) == 0)
                return 1;
        }
    }
    return 0;
}

/* ---- the gateway journal ------------------------------------------------------ */

typedef struct appended {
    uint64_t seq[MAX_APPEND];
    size_t n;
} appended;

static size_t payload(uint64_t seq, uint8_t salt, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "{\"seq\":%" PRIu64 ",\"fz\":\"%.*s\"}", seq, (int)(salt % 60),
                     "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz");
    return (size_t)n;
}

static void gw_cfg(gw_journal_config *c)
{
    gw_journal_config_default(c);
    c->segment_max = 512;
    c->entry_max = 200;
    c->capacity = 8192;
    c->refused_max = 4096;
}

static void gw_check_stats(const gw_journal *j)
{
    gw_journal_stats st;
    gw_journal_stats_get(j, &st);
    ASSERT(st.next_seq >= 1);
    ASSERT(st.acked < st.next_seq);
    ASSERT_U64_EQ(st.pending, st.next_seq - 1 - st.acked);
}

/* Reads every pending sequence; what comes back must be a CRC-valid entry of
 * the input or one this run appended (then exactly its payload). */
static void gw_read_all(gw_journal *j, const snap *s, const appended *ap, uint8_t salt, int strict)
{
    static uint8_t buf[256];
    uint64_t from = gw_journal_acked(j) + 1, to = gw_journal_next_seq(j);
    uint64_t reads = 0;
    for (uint64_t q = from; q < to && reads < 64; q++, reads++) {
        size_t len = 0;
        int rc = gw_journal_read(j, q, buf, sizeof buf, &len);
        int mine = 0;
        for (size_t i = 0; i < ap->n; i++)
            mine |= ap->seq[i] == q;
        if (mine && rc != 0 && strict)
            SS_TEST_FAIL("appended seq %" PRIu64 " unreadable: %s", q, ss_err_name(rc));
        if (rc == SS_ECORRUPT || rc == SS_ENOSPC || rc == SS_EIO)
            continue;
        if (rc == SS_ENOENT)
            SS_TEST_FAIL("pending seq %" PRIu64 " is not pending", q);
        ASSERT_EQ(rc, 0);
        ASSERT(len <= sizeof buf);
        if (mine) {
            char want[256];
            size_t wl = payload(q, salt, want, sizeof want);
            ASSERT_EQ(len, wl);
            ASSERT_MEM_EQ(buf, want, wl);
        } else if (!gw_entry_known(s, q, buf, len)) {
            SS_TEST_FAIL("seq %" PRIu64 " handed out without a valid entry", q);
        }
    }
}

static void run_gw(const uint8_t *data, size_t size)
{
    fws shim;
    fws_sim *sim = mk_sim(&shim);
    load_files(&shim, 0, data, size);
    snap s;
    snap_take(&s, sim, "");
    gw_journal_config cfg;
    gw_cfg(&cfg);
    gw_journal j;
    gw_journal_init(&j);
    appended ap;
    memset(&ap, 0, sizeof ap);
    uint8_t salt = data[0] >> 1;
    int failed = 0; /* some operation failed: a reopen may refuse too */
    int rc = gw_journal_open(&j, &shim, &cfg);
    if (rc != 0) {
        ASSERT(rc == SS_EIO || rc == SS_ECORRUPT || rc == SS_ENOMEM);
        gw_journal_free(&j);
        gw_journal_free(&j);
        goto out;
    }
    gw_check_stats(&j);
    /* What this run appended must always read back, whatever damage the
     * input held: gw_journal_read once stepped over entries on their header
     * alone, so a flipped length made valid entries after it look lost
     * (tests/gwfault/findings/journal_read_skips_by_corrupt_length.fuzz,
     * now in the corpus). */
    int strict = 1;
    gw_read_all(&j, &s, &ap, salt, strict);
    /* A renumber when the input left an unconfirmed journal with entries. */
    if (!gw_journal_confirmed(&j) && (salt & 1)) {
        rc = gw_journal_renumber(&j, gw_journal_acked(&j) + 1 + (salt % 5));
        /* SS_ECORRUPT (not in journal.h's list for renumber) comes from
         * the reopen that finishes the switch: the journal is then closed. */
        ASSERT(rc >= 0 || rc == SS_EINVAL || rc == SS_EIO || rc == SS_EFULL || rc == SS_ENOMEM ||
               rc == SS_ECORRUPT);
        if (rc == SS_ECORRUPT) {
            gw_journal_free(&j);
            goto out;
        }
        failed |= rc < 0;
        gw_check_stats(&j);
        /* Renumbered entries are new entries (new seq, new JSON) the
         * journal wrote itself: look them up in the storage as it is now. */
        if (rc > 0) {
            snap_free(&s);
            snap_take(&s, sim, "");
        }
    }
    (void)gw_journal_confirm(&j);
    /* Append: a seq far beyond what fits in a JSON integer is refused, not
     * written (the journal must not wrap). */
    char pl[256];
    uint64_t next = gw_journal_next_seq(&j);
    for (int i = 0; i < 8 && ap.n < MAX_APPEND && next < (UINT64_C(1) << 53); i++) {
        size_t n = payload(next, salt, pl, sizeof pl);
        rc = gw_journal_append(&j, next, gw_journal_hlc(&j) + 1, pl, n);
        if (rc == 0) {
            ap.seq[ap.n++] = next;
            next++;
            ASSERT_U64_EQ(gw_journal_next_seq(&j), next);
        } else {
            ASSERT(rc == SS_EFULL || rc == SS_EIO || rc == SS_EINVAL);
            failed |= rc != SS_EFULL;
            break;
        }
    }
    gw_check_stats(&j);
    gw_read_all(&j, &s, &ap, salt, strict);
    /* Acknowledge part of it: reclaim runs. */
    uint64_t acked = gw_journal_acked(&j);
    if (next > acked + 1)
        failed |= gw_journal_ack(&j, acked + (next - acked - 1) / 2) != 0;
    gw_check_stats(&j);
    failed |= gw_journal_note_refused(&j, gw_journal_acked(&j), "fuzz", "f", "m", NULL, 0, 0) != 0;
    acked = gw_journal_acked(&j);
    gw_journal_free(&j);

    /* Reopen: what this run appended above the acknowledged mark is back. */
    gw_journal_init(&j);
    rc = gw_journal_open(&j, &shim, &cfg);
    if (rc != 0 && failed) {
        ASSERT(rc == SS_EIO || rc == SS_ECORRUPT);
        gw_journal_free(&j);
        goto out;
    }
    ASSERT_EQ(rc, 0);
    ASSERT(gw_journal_acked(&j) >= acked);
    for (size_t i = 0; i < ap.n; i++) {
        if (ap.seq[i] <= gw_journal_acked(&j))
            continue;
        size_t len = 0;
        static uint8_t buf[256];
        rc = gw_journal_read(&j, ap.seq[i], buf, sizeof buf, &len);
        if (rc != 0 && !strict)
            continue;
        if (rc != 0)
            SS_TEST_FAIL("appended seq %" PRIu64 " lost after reopen: %s", ap.seq[i],
                         ss_err_name(rc));
        size_t wl = payload(ap.seq[i], salt, pl, sizeof pl);
        ASSERT_EQ(len, wl);
        ASSERT_MEM_EQ(buf, pl, wl);
    }
    gw_check_stats(&j);
    gw_journal_free(&j);
out:
    snap_free(&s);
    fws_sim_destroy(sim);
}

/* ---- the hub journal ------------------------------------------------------------ */

static void hub_cfg(gw_hubj_config *c)
{
    gw_hubj_config_default(c);
    c->capacity = 8192;
    c->segment_max = 1152;
    c->max_records = 32;
    c->max_origins = 8;
    c->max_envelope = 1024;
    c->refused_max = 4096;
}

/* Reads every record of every origin: each must be CRC-valid input or what
 * this run appended. */
static void hub_read_all(gw_hubj *h, const snap *s, const uint8_t *mine, size_t mine_len)
{
    static uint8_t buf[2048];
    for (uint32_t o = 0; o < h->norigins; o++) {
        uint32_t r = h->origins[o].head;
        for (uint32_t k = 0; r != GW_HUB_NO_REC && k <= h->cfg.max_records; k++) {
            ASSERT(r < h->cfg.max_records);
            const gw_hub_rec *rec = &h->recs[r];
            ASSERT_EQ(rec->origin, o);
            ASSERT(rec->first <= rec->last);
            /* Not asserted: records of one origin in increasing order.
             * Recovery indexes every CRC-valid record above the committed
             * mark as it finds it, so crafted storage (a record copied
             * twice, with its CRC) yields overlapping records, which the
             * relay forwards and the daemon refuses as duplicates. */
            size_t route_len = 0;
            int rc = gw_hubj_read(h, r, buf, sizeof buf, &route_len);
            if (rc >= 0) {
                ASSERT((size_t)rc == rec->len);
                ASSERT(route_len <= (size_t)rc);
                int ok =
                    (mine != NULL && (size_t)rc == mine_len && memcmp(buf, mine, mine_len) == 0) ||
                    hub_record_known(s, buf, (size_t)rc);
                if (!ok)
                    SS_TEST_FAIL("hub record %u handed out without a valid record", r);
            } else {
                ASSERT(rc == SS_ENOSPC || rc == SS_EIO || rc == SS_ECORRUPT);
            }
            r = rec->next;
        }
        ASSERT(r == GW_HUB_NO_REC);
    }
}

static void run_hub(const uint8_t *data, size_t size)
{
    fws shim;
    fws_sim *sim = mk_sim(&shim);
    load_files(&shim, 1, data, size);
    snap s;
    snap_take(&s, sim, "");
    gw_hubj_config cfg;
    hub_cfg(&cfg);
    gw_hubj h;
    gw_hubj_init(&h);
    /* Read-only first (what `sitesync-gw journal` does while a relay runs):
     * it must not change the storage. */
    uint64_t ops = fws_sim_ops(sim);
    int rc = gw_hubj_open(&h, &shim, &cfg, 1);
    if (rc == 0)
        hub_read_all(&h, &s, NULL, 0);
    gw_hubj_free(&h);
    ASSERT_U64_EQ(fws_sim_ops(sim), ops);

    gw_hubj_init(&h);
    rc = gw_hubj_open(&h, &shim, &cfg, 0);
    if (rc != 0) {
        ASSERT(rc == SS_EIO || rc == SS_ECORRUPT || rc == SS_ENOMEM);
        gw_hubj_free(&h);
        gw_hubj_free(&h);
        goto out;
    }
    hub_read_all(&h, &s, NULL, 0);
    /* Append one envelope of a new or existing origin, sync, commit half,
     * checkpoint (reclaim), reopen: it is still there unless committed. */
    static const uint8_t env[] = "fuzz-envelope-bytes";
    int o = gw_hubj_origin(&h, (data[0] & 2) ? "gw-fz" : "gw-a", 1);
    uint64_t first = 0;
    int appended_rec = -1;
    if (o >= 0) {
        first = gw_hubj_have(&h, (uint32_t)o) + 1;
        if (first < (UINT64_C(1) << 53)) {
            rc = gw_hubj_append(&h, (uint32_t)o, first, 2, NULL, 0, env, sizeof env);
            ASSERT(rc >= 0 || rc == SS_EFULL || rc == SS_EOVERSIZE || rc == SS_EIO);
            if (rc >= 0 && gw_hubj_sync(&h) == 0)
                appended_rec = rc;
        }
    } else {
        ASSERT(o == SS_ELIMIT || o == SS_EINVAL || o == SS_ENOENT);
    }
    hub_read_all(&h, &s, appended_rec >= 0 ? env : NULL, sizeof env);
    for (uint32_t k = 0; k < h.norigins; k++) {
        if ((data[0] >> 2) & 1)
            gw_hubj_commit(&h, k, h.origins[k].accepted);
    }
    (void)gw_hubj_checkpoint(&h);
    (void)gw_hubj_note_refused(&h, 0, 1, "fuzz", "m");
    gw_hubj_stats hs;
    gw_hubj_stats_get(&h, &hs);
    ASSERT(hs.records <= cfg.max_records);
    uint64_t committed = o >= 0 ? h.origins[o].committed : 0;
    gw_hubj_free(&h);

    gw_hubj_init(&h);
    rc = gw_hubj_open(&h, &shim, &cfg, 0);
    ASSERT_EQ(rc, 0);
    if (appended_rec >= 0 && committed < first) {
        int oo = gw_hubj_origin(&h, (data[0] & 2) ? "gw-fz" : "gw-a", 0);
        ASSERT(oo >= 0);
        ASSERT(gw_hubj_have(&h, (uint32_t)oo) >= first + 1);
        ASSERT(gw_hubj_pending(&h, (uint32_t)oo) >= 2);
    }
    hub_read_all(&h, &s, env, sizeof env);
    gw_hubj_free(&h);
out:
    snap_free(&s);
    fws_sim_destroy(sim);
}

/* ---- seeds ------------------------------------------------------------------------- */

/* Writes the storage of sim as one input (mode byte + records). */
static void dump(const fws_sim *sim, int hub, uint8_t mode, const char *dir, const char *name)
{
    static uint8_t out[65536], file[MAX_FILE];
    size_t n = 0;
    out[n++] = mode;
    int files = fws_sim_file_count(sim);
    for (int i = 0; i < files; i++) {
        const char *nm = fws_sim_file_name(sim, i);
        int64_t sz = fws_sim_peek(sim, nm, 1, file, sizeof file);
        if (sz < 0 || sz > MAX_FILE)
            continue;
        uint8_t kind, arg = 0;
        unsigned long long v = 0;
        if (!hub && strncmp(nm, "ckpt-", 5) == 0) {
            kind = nm[5] == 'a' ? 0 : 1;
        } else if (!hub && sscanf(nm, "seg-%16llx.log", &v) == 1 && v < 256) {
            kind = 2;
            arg = (uint8_t)v;
        } else if (!hub && strncmp(nm, "refused", 7) == 0) {
            kind = 4;
            arg = strstr(nm, ".old") != NULL;
        } else if (hub && strcmp(nm, "hub.ckpt") == 0) {
            kind = 0;
        } else if (hub && sscanf(nm, "hseg-%16llx.log", &v) == 1 && v < 256) {
            kind = 1;
            arg = (uint8_t)v;
        } else if (hub && strncmp(nm, "hub-refused", 11) == 0) {
            kind = 2;
            arg = strstr(nm, ".old") != NULL;
        } else {
            continue;
        }
        ASSERT(n + 4 + (size_t)sz <= sizeof out);
        out[n++] = kind;
        out[n++] = arg;
        out[n++] = (uint8_t)sz;
        out[n++] = (uint8_t)(sz >> 8);
        memcpy(out + n, file, (size_t)sz);
        n += (size_t)sz;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(out, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

static void make_seeds(const char *dir)
{
    char pl[256];
    for (int variant = 0; variant < 3; variant++) {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_journal_config cfg;
        gw_cfg(&cfg);
        gw_journal j;
        gw_journal_init(&j);
        ASSERT_EQ(gw_journal_open(&j, &shim, &cfg), 0);
        if (variant > 0)
            ASSERT_EQ(gw_journal_confirm(&j), 0);
        int n = variant == 2 ? 40 : 12;
        for (int s = 1; s <= n; s++) {
            size_t len = payload((uint64_t)s, (uint8_t)(s * 7), pl, sizeof pl);
            ASSERT_EQ(gw_journal_append(&j, (uint64_t)s, 1000 + (uint64_t)s, pl, len), 0);
        }
        if (variant == 2) {
            ASSERT_EQ(gw_journal_ack(&j, 10), 0);
            ASSERT_EQ(gw_journal_note_refused(&j, 3, "forbidden_site", "site", "no", pl, 20, 0), 0);
        }
        gw_journal_free(&j);
        char name[64];
        snprintf(name, sizeof name, "gw_%s",
                 variant == 0   ? "unconfirmed"
                 : variant == 1 ? "confirmed"
                                : "acked_reclaimed");
        dump(sim, 0, (uint8_t)(variant << 1), dir, name);
        fws_sim_destroy(sim);
    }
    for (int variant = 0; variant < 2; variant++) {
        fws shim;
        fws_sim *sim = mk_sim(&shim);
        gw_hubj_config cfg;
        hub_cfg(&cfg);
        gw_hubj h;
        gw_hubj_init(&h);
        ASSERT_EQ(gw_hubj_open(&h, &shim, &cfg, 0), 0);
        static const char *const ids[3] = { "gw-a", "gw-b", "hub-low" };
        uint64_t next[3] = { 1, 1, 1 };
        for (int k = 0; k < 12; k++) {
            int o = gw_hubj_origin(&h, ids[k % 3], 1);
            ASSERT(o >= 0);
            static const uint8_t route[] = { 1, 5, 'h', 'u', 'b', '-', 'x' };
            snprintf(pl, sizeof pl, "envelope-%d-of-%s", k, ids[k % 3]);
            ASSERT(gw_hubj_append(&h, (uint32_t)o, next[k % 3], 3, k % 3 == 2 ? route : NULL,
                                  k % 3 == 2 ? sizeof route : 0, (const uint8_t *)pl,
                                  strlen(pl)) >= 0);
            next[k % 3] += 3;
        }
        ASSERT_EQ(gw_hubj_sync(&h), 0);
        if (variant == 1) {
            gw_hubj_commit(&h, 0, 6);
            ASSERT_EQ(gw_hubj_note_refused(&h, 1, 4, "bad_signature", "flip"), 0);
        }
        ASSERT_EQ(gw_hubj_checkpoint(&h), 0);
        gw_hubj_free(&h);
        dump(sim, 1, 1 | (uint8_t)(variant << 2), dir, variant ? "hub_committed" : "hub_three");
        fws_sim_destroy(sim);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *seeds = getenv("SITESYNC_FUZZ_JOURNAL_SEEDS");
    if (seeds != NULL && seeds[0] != '\0') {
        make_seeds(seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        run_hub(data, size);
    else
        run_gw(data, size);
    return 0;
}
