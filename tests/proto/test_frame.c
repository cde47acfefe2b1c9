/* test_frame.c - the frame codec: header checks before allocation, every
 * split of the input, truncation, sticky errors and allocation failures. */
#include "ss_test.h"

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/frame.h"

/* Counting allocator that can fail the Nth call: a test's own state,
 * installed with ss_set_allocator for the duration of one test. */
static struct {
    long calls;
    long fail_at; /* 0: never */
    size_t largest;
} g_alloc;

static void *count_malloc(size_t n)
{
    if (++g_alloc.calls == g_alloc.fail_at)
        return NULL;
    if (n > g_alloc.largest)
        g_alloc.largest = n;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n)
{
    if (++g_alloc.calls == g_alloc.fail_at)
        return NULL;
    if (n > g_alloc.largest)
        g_alloc.largest = n;
    return realloc(p, n);
}
static long g_frees;
static void count_free(void *p)
{
    if (p)
        g_frees++;
    free(p);
}
static const ss_allocator counting = { count_malloc, count_realloc, count_free };

static void counting_on(long fail_at)
{
    memset(&g_alloc, 0, sizeof(g_alloc));
    g_frees = 0;
    g_alloc.fail_at = fail_at;
    ss_set_allocator(&counting);
}

static size_t make_frame(uint8_t *out, size_t cap, int type, size_t len)
{
    uint8_t payload[4096];
    ASSERT(len <= sizeof(payload));
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + type);
    int n = ss_frame_encode(out, cap, type, 0, payload, len);
    ASSERT_EQ(n, (int)(SS_FRAME_HEADER_LEN + len));
    return (size_t)n;
}

static void check_payload(const ss_frame *f, int type, size_t len)
{
    ASSERT_EQ(f->type, type);
    ASSERT_EQ(f->flags, 0);
    ASSERT_EQ(f->len, len);
    ASSERT(f->payload != NULL);
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(f->payload[i], (uint8_t)(i * 7 + type));
}

TEST(type_names)
{
    ASSERT_STR_EQ(ss_frame_type_name(SS_FRAME_HELLO), "HELLO");
    ASSERT_STR_EQ(ss_frame_type_name(SS_FRAME_BATCH), "BATCH");
    ASSERT_STR_EQ(ss_frame_type_name(SS_FRAME_BYE), "BYE");
    ASSERT_STR_EQ(ss_frame_type_name(0), "?");
    ASSERT_STR_EQ(ss_frame_type_name(SS_FRAME_CRL), "CRL");
    ASSERT_STR_EQ(ss_frame_type_name(10), "?");
}

TEST(write_header_layout_and_errors)
{
    uint8_t h[SS_FRAME_HEADER_LEN];
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_ACK, 0, 0x01020304u), 6);
    const uint8_t want[] = { 1, 2, 3, 4, SS_FRAME_ACK, 0 };
    ASSERT_MEM_EQ(h, want, 6);
    ASSERT_EQ(ss_frame_write_header(h, 0, 0, 1), SS_ETYPE);
    ASSERT_EQ(ss_frame_write_header(h, 10, 0, 1), SS_ETYPE);
    /* ROUTED is a BATCH flag only. */
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_BATCH, SS_FRAME_FLAG_ROUTED, 1), 6);
    ASSERT_EQ(h[5], SS_FRAME_FLAG_ROUTED);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_BATCH, 0x02, 1), SS_EFLAGS);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_CRL, SS_FRAME_FLAG_ROUTED, 1), SS_EFLAGS);
    ASSERT_EQ(ss_frame_write_header(h, -1, 0, 1), SS_ETYPE);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_PING, 1, 1), SS_EFLAGS);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_PING, 0x80, 1), SS_EFLAGS);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_PING, 0, SS_FRAME_ABSOLUTE_MAX), 6);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_PING, 0, SS_FRAME_ABSOLUTE_MAX + 1), SS_EOVERSIZE);
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_PING, 0, UINT32_MAX), SS_EOVERSIZE);
}

TEST(encode_needs_room)
{
    uint8_t out[16];
    const char p[] = "hello";
    ASSERT_EQ(ss_frame_encode(out, sizeof(out), SS_FRAME_PING, 0, p, 5), 11);
    ASSERT_EQ(ss_frame_encode(out, 11, SS_FRAME_PING, 0, p, 5), 11);
    ASSERT_EQ(ss_frame_encode(out, 10, SS_FRAME_PING, 0, p, 5), SS_ENOSPC);
    ASSERT_EQ(ss_frame_encode(out, 5, SS_FRAME_PING, 0, p, 0), SS_ENOSPC);
    ASSERT_EQ(ss_frame_encode(out, 6, SS_FRAME_PING, 0, NULL, 0), 6);
    ASSERT_EQ(ss_frame_encode(out, 16, SS_FRAME_PING, 0, NULL, 3), SS_EINVAL);
    ASSERT_EQ(ss_frame_encode(out, 16, 42, 0, p, 5), SS_ETYPE);
    ASSERT_EQ(ss_frame_encode(out, 16, SS_FRAME_PING, 2, p, 5), SS_EFLAGS);
    ASSERT_EQ(ss_frame_encode(out, 16, SS_FRAME_PING, 0, p, (size_t)SS_FRAME_ABSOLUTE_MAX + 1),
              SS_EOVERSIZE);
}

TEST(every_type_round_trips)
{
    for (int t = SS_FRAME_HELLO; t <= SS_FRAME_TYPE_MAX; t++) {
        uint8_t buf[128];
        size_t n = make_frame(buf, sizeof(buf), t, (size_t)t * 3);
        ss_fdec d;
        ss_fdec_init(&d, 1000);
        size_t used;
        ASSERT_EQ(ss_fdec_feed(&d, buf, n, &used), 1);
        ASSERT_EQ(used, n);
        ss_frame f;
        ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
        check_payload(&f, t, (size_t)t * 3);
        ss_fdec_free(&d);
    }
}

/* Decodes a stream of frames fed in chunks of `step` bytes (1 = byte by
 * byte) and checks each frame. */
static void decode_stream(const uint8_t *s, size_t n, size_t step, const int *types,
                          const size_t *lens, int nframes)
{
    ss_fdec d;
    ss_fdec_init(&d, 4096);
    int got = 0;
    size_t pos = 0;
    while (pos < n) {
        size_t chunk = n - pos < step ? n - pos : step;
        size_t used = 0;
        int rc = ss_fdec_feed(&d, s + pos, chunk, &used);
        ASSERT_GE(rc, 0);
        ASSERT_LE(used, chunk);
        pos += used;
        if (rc == 1) {
            ss_frame f;
            ASSERT_LT(got, nframes);
            ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
            check_payload(&f, types[got], lens[got]);
            ASSERT_EQ(ss_fdec_pending(&d), 0);
            got++;
        } else {
            ASSERT_EQ(used, chunk);
        }
    }
    ASSERT_EQ(got, nframes);
    ss_fdec_free(&d);
}

TEST(byte_at_a_time_and_every_chunk_size)
{
    static const int types[] = { SS_FRAME_PING, SS_FRAME_BATCH, SS_FRAME_BYE, SS_FRAME_ACK };
    static const size_t lens[] = { 0, 1, 300, 17 };
    uint8_t s[1024];
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += make_frame(s + n, sizeof(s) - n, types[i], lens[i]);
    for (size_t step = 1; step <= n; step++)
        decode_stream(s, n, step, types, lens, 4);
}

TEST(split_at_every_byte)
{
    uint8_t s[256];
    size_t n = make_frame(s, sizeof(s), SS_FRAME_HELLO, 100);
    for (size_t cut = 0; cut <= n; cut++) {
        ss_fdec d;
        ss_fdec_init(&d, 1000);
        size_t used = 0;
        int rc = ss_fdec_feed(&d, s, cut, &used);
        ASSERT_EQ(rc, cut == n ? 1 : 0);
        ASSERT_EQ(used, cut);
        if (rc == 0) {
            /* A partial frame is held: a clean EOF here would be a truncation. */
            ASSERT_EQ(ss_fdec_pending(&d), cut);
            ss_frame f;
            ASSERT_EQ(ss_fdec_frame(&d, &f), SS_EAGAIN);
            rc = ss_fdec_feed(&d, s + cut, n - cut, &used);
            ASSERT_EQ(rc, 1);
            ASSERT_EQ(used, n - cut);
        }
        ss_frame f;
        ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
        check_payload(&f, SS_FRAME_HELLO, 100);
        ss_fdec_free(&d);
    }
}

TEST(truncation_at_every_byte_is_pending)
{
    uint8_t s[64];
    size_t n = make_frame(s, sizeof(s), SS_FRAME_ERROR, 20);
    for (size_t cut = 0; cut < n; cut++) {
        ss_fdec d;
        ss_fdec_init(&d, 1000);
        size_t used;
        ASSERT_EQ(ss_fdec_feed(&d, s, cut, &used), 0);
        ASSERT_EQ(ss_fdec_pending(&d), cut);
        ss_frame f;
        ASSERT_EQ(ss_fdec_frame(&d, &f), SS_EAGAIN);
        ss_fdec_free(&d);
    }
}

/* Data-driven header vectors: bytes of a header, the decoder's maximum, the
 * result of feeding it, and how many bytes are consumed by then. */
static const struct {
    const char *name;
    uint8_t hdr[6];
    uint32_t max;
    int rc;
    size_t used;
} header_vectors[] = {
    { "len 0", { 0, 0, 0, 0, 1, 0 }, 1000, 1, 6 },
    { "len 1", { 0, 0, 0, 1, 1, 0 }, 1000, 0, 6 },
    { "len max", { 0, 0, 0x03, 0xE8, 3, 0 }, 1000, 0, 6 },
    { "len max+1", { 0, 0, 0x03, 0xE9, 3, 0 }, 1000, SS_EOVERSIZE, 4 },
    { "len 2^32-1", { 0xFF, 0xFF, 0xFF, 0xFF, 3, 0 }, 1000, SS_EOVERSIZE, 4 },
    { "len 2^32-1 default max",
      { 0xFF, 0xFF, 0xFF, 0xFF, 3, 0 },
      SS_FRAME_DEFAULT_MAX,
      SS_EOVERSIZE,
      4 },
    { "len 2^31", { 0x80, 0, 0, 0, 3, 0 }, UINT32_MAX, SS_EOVERSIZE, 4 },
    { "type 0", { 0, 0, 0, 1, 0, 0 }, 1000, SS_ETYPE, 5 },
    { "type 10", { 0, 0, 0, 1, 10, 0 }, 1000, SS_ETYPE, 5 },
    { "type 9 (CRL)", { 0, 0, 0, 0, 9, 0 }, 1000, 1, 6 },
    { "routed BATCH", { 0, 0, 0, 0, 3, 1 }, 1000, 1, 6 },
    { "BATCH flag 2", { 0, 0, 0, 1, 3, 2 }, 1000, SS_EFLAGS, 6 },
    { "ROUTED on ACK", { 0, 0, 0, 1, 4, 1 }, 1000, SS_EFLAGS, 6 },
    { "type 255", { 0, 0, 0, 1, 255, 0 }, 1000, SS_ETYPE, 5 },
    { "type 8", { 0, 0, 0, 0, 8, 0 }, 1000, 1, 6 },
    { "flags 1", { 0, 0, 0, 1, 1, 1 }, 1000, SS_EFLAGS, 6 },
    { "flags 0x80", { 0, 0, 0, 1, 1, 0x80 }, 1000, SS_EFLAGS, 6 },
    { "oversize wins over bad type", { 0, 0, 0x10, 0, 0, 0xFF }, 1000, SS_EOVERSIZE, 4 },
    { "bad type wins over bad flags", { 0, 0, 0, 1, 0, 0xFF }, 1000, SS_ETYPE, 5 },
};

TEST(header_vectors_whole_and_bytewise)
{
    for (size_t v = 0; v < sizeof(header_vectors) / sizeof(header_vectors[0]); v++) {
        const uint8_t *h = header_vectors[v].hdr;
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            ss_fdec d;
            counting_on(0);
            ss_fdec_init(&d, header_vectors[v].max);
            size_t used = 0, total = 0;
            int rc = 0;
            if (bytewise) {
                for (size_t i = 0; i < 6 && rc == 0; i++) {
                    rc = ss_fdec_feed(&d, h + i, 1, &used);
                    total += used;
                }
            } else {
                rc = ss_fdec_feed(&d, h, 6, &used);
                total = used;
            }
            if (rc != header_vectors[v].rc || total != header_vectors[v].used)
                SS_TEST_FAIL("vector \"%s\" bytewise=%d: rc %d (%s) used %zu",
                             header_vectors[v].name, bytewise, rc, ss_err_name(rc), total);
            /* A refused header never allocates. */
            if (rc < 0) {
                ASSERT_EQ(g_alloc.calls, 0);
                /* Errors are sticky. */
                uint8_t more[6] = { 0 };
                ASSERT_EQ(ss_fdec_feed(&d, more, 6, &used), rc);
                ASSERT_EQ(used, 0);
            }
            ss_fdec_free(&d);
            ss_set_allocator(NULL);
        }
    }
}

TEST(exact_max_payload_accepted)
{
    const uint32_t max = 5000;
    uint8_t *s = malloc(max + 6);
    ASSERT(s != NULL);
    ASSERT_EQ(ss_frame_write_header(s, SS_FRAME_BATCH, 0, max), 6);
    memset(s + 6, 'x', max);
    ss_fdec d;
    ss_fdec_init(&d, max);
    size_t used;
    ASSERT_EQ(ss_fdec_feed(&d, s, max + 6, &used), 1);
    ASSERT_EQ(used, max + 6);
    ss_frame f;
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    ASSERT_EQ(f.len, max);
    ASSERT_EQ(f.payload[max - 1], 'x');
    ss_fdec_free(&d);

    /* One more than the maximum is refused from the header alone. */
    ASSERT_EQ(ss_frame_write_header(s, SS_FRAME_BATCH, 0, max + 1), 6);
    ss_fdec_init(&d, max);
    ASSERT_EQ(ss_fdec_feed(&d, s, 6, &used), SS_EOVERSIZE);
    ss_fdec_free(&d);
    free(s);
}

TEST(max_is_clamped_to_absolute_max)
{
    ss_fdec d;
    ss_fdec_init(&d, UINT32_MAX);
    uint8_t h[6];
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_BATCH, 0, SS_FRAME_ABSOLUTE_MAX), 6);
    size_t used;
    ASSERT_EQ(ss_fdec_feed(&d, h, 6, &used), 0);
    ss_fdec_free(&d);
    ss_fdec_init(&d, UINT32_MAX);
    h[0] = 0x04; /* 64 MiB + 1 */
    h[1] = 0;
    h[2] = 0;
    h[3] = 1;
    ASSERT_EQ(ss_fdec_feed(&d, h, 6, &used), SS_EOVERSIZE);
    ss_fdec_free(&d);
}

TEST(empty_payload_is_non_null)
{
    uint8_t s[6];
    ASSERT_EQ(ss_frame_encode(s, 6, SS_FRAME_PING, 0, NULL, 0), 6);
    ss_fdec d;
    ss_fdec_init(&d, 0);
    size_t used;
    ASSERT_EQ(ss_fdec_feed(&d, s, 6, &used), 1);
    ss_frame f;
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    ASSERT_EQ(f.len, 0);
    ASSERT(f.payload != NULL);
    ss_fdec_free(&d);
}

TEST(announced_length_does_not_allocate_up_front)
{
    /* A peer that announces 1 MiB and sends 10 bytes holds a small buffer. */
    uint8_t h[16];
    ASSERT_EQ(ss_frame_write_header(h, SS_FRAME_BATCH, 0, SS_FRAME_DEFAULT_MAX), 6);
    memset(h + 6, 'a', 10);
    counting_on(0);
    ss_fdec d;
    ss_fdec_init(&d, SS_FRAME_DEFAULT_MAX);
    size_t used;
    ASSERT_EQ(ss_fdec_feed(&d, h, 16, &used), 0);
    ASSERT_EQ(used, 16);
    ASSERT_LE(g_alloc.largest, 4096);
    ss_fdec_free(&d);
    ss_set_allocator(NULL);
}

TEST(allocation_failure_is_enomem_and_sticky)
{
    uint8_t s[600];
    size_t n = make_frame(s, sizeof(s), SS_FRAME_BATCH, 500);
    /* Feed byte by byte so the buffer grows several times; fail each growth
     * in turn. */
    for (long k = 1;; k++) {
        counting_on(k);
        ss_fdec d;
        ss_fdec_init(&d, 1000);
        int rc = 0;
        size_t used;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = ss_fdec_feed(&d, s + i, 1, &used);
        long calls = g_alloc.calls;
        if (calls < k) {
            ASSERT_EQ(rc, 1); /* fewer allocations than k: nothing failed */
            ss_fdec_free(&d);
            ss_set_allocator(NULL);
            ASSERT_GT(k, 1);
            break;
        }
        ASSERT_EQ(rc, SS_ENOMEM);
        ASSERT_EQ(ss_fdec_feed(&d, s, 1, &used), SS_ENOMEM);
        ss_fdec_free(&d);
        ss_set_allocator(NULL);
    }
}

TEST(feed_after_ready_starts_next_frame)
{
    uint8_t s[64];
    size_t n = make_frame(s, sizeof(s), SS_FRAME_PING, 5);
    n += make_frame(s + n, sizeof(s) - n, SS_FRAME_PONG, 5);
    ss_fdec d;
    ss_fdec_init(&d, 100);
    size_t used;
    ASSERT_EQ(ss_fdec_feed(&d, s, n, &used), 1);
    ASSERT_EQ(used, 11); /* stops at the end of the first frame */
    ss_frame f;
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    check_payload(&f, SS_FRAME_PING, 5);
    /* Feeding zero bytes releases the ready frame without a new one. */
    ASSERT_EQ(ss_fdec_feed(&d, s + used, 0, &used), 0);
    ASSERT_EQ(ss_fdec_frame(&d, &f), SS_EAGAIN);
    ASSERT_EQ(ss_fdec_feed(&d, s + 11, n - 11, &used), 1);
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    check_payload(&f, SS_FRAME_PONG, 5);
    ss_fdec_free(&d);
    ss_fdec_free(&d); /* safe twice */
}

TEST(err_table)
{
    ASSERT_STR_EQ(ss_err_name(0), "ok");
    ASSERT_STR_EQ(ss_err_name(SS_EGAP), "gap");
    ASSERT_STR_EQ(ss_err_name(SS_EFORBIDDEN), "forbidden_site");
    ASSERT_STR_EQ(ss_err_name(-9999), "unknown");
    ASSERT_STR_EQ(ss_strerror(SS_ENOMEM), "out of memory");
    ASSERT(ss_strerror(12345) != NULL);
    ASSERT_EQ(ss_err_from_name("gap"), SS_EGAP);
    ASSERT_EQ(ss_err_from_name("ok"), 0);
    ASSERT_EQ(ss_err_from_name("no_such_name"), SS_EPROTO);
    ASSERT_EQ(ss_err_from_name(NULL), SS_EINVAL);
    /* Every code round-trips through its wire name. */
    for (int c = -1; c >= SS_EINTERNAL; c--)
        ASSERT_EQ(ss_err_from_name(ss_err_name(c)), c);
}

TEST(zeroize_wipes)
{
    unsigned char secret[32];
    memset(secret, 0xA5, sizeof(secret));
    ss_zeroize(secret, sizeof(secret));
    for (size_t i = 0; i < sizeof(secret); i++)
        ASSERT_EQ(secret[i], 0);
}

/* ss_fdec_take: the ready frame's buffer changes hands (no copy, not freed
 * by the decoder), the frame is consumed, the next one decodes into a new
 * buffer; with nothing ready nothing is taken. */
TEST(take_hands_over_the_buffer)
{
    uint8_t in[2 * (SS_FRAME_HEADER_LEN + 3000)];
    size_t n1 = make_frame(in, sizeof(in), SS_FRAME_BATCH, 3000);
    size_t n2 = make_frame(in + n1, sizeof(in) - n1, SS_FRAME_PING, 40);
    counting_on(0);
    ss_fdec d;
    ss_fdec_init(&d, 4096);
    uint8_t *p = (uint8_t *)1;
    uint32_t len = 7;
    /* Nothing ready: SS_EAGAIN, outputs untouched, a partial frame kept. */
    ASSERT_EQ(ss_fdec_take(&d, &p, &len), SS_EAGAIN);
    size_t used = 0;
    ASSERT_EQ(ss_fdec_feed(&d, in, 100, &used), 0);
    ASSERT_EQ(ss_fdec_take(&d, &p, &len), SS_EAGAIN);
    ASSERT(p == (uint8_t *)1);
    ASSERT_EQ(len, 7);
    ASSERT_EQ(ss_fdec_pending(&d), 100);
    size_t pos = 100;
    ASSERT_EQ(ss_fdec_feed(&d, in + pos, n1 + n2 - pos, &used), 1);
    pos += used;
    ASSERT_EQ(pos, n1);
    ss_frame f;
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    const uint8_t *inside = f.payload;
    long frees = g_frees;
    ASSERT_EQ(ss_fdec_take(&d, &p, &len), 0);
    ASSERT(p == inside); /* the same bytes, not a copy */
    ASSERT_EQ(len, 3000);
    ss_frame taken = { SS_FRAME_BATCH, 0, len, p };
    check_payload(&taken, SS_FRAME_BATCH, 3000);
    ASSERT_EQ(g_frees, frees);
    /* Consumed: no frame, nothing pending, a second take takes nothing. */
    ASSERT_EQ(ss_fdec_frame(&d, &f), SS_EAGAIN);
    ASSERT_EQ(ss_fdec_pending(&d), 0);
    uint8_t *again = NULL;
    ASSERT_EQ(ss_fdec_take(&d, &again, &len), SS_EAGAIN);
    /* The next frame gets its own buffer; the taken one is untouched. */
    long calls = g_alloc.calls;
    ASSERT_EQ(ss_fdec_feed(&d, in + pos, n1 + n2 - pos, &used), 1);
    ASSERT_EQ(used, n2);
    ASSERT(g_alloc.calls > calls);
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    check_payload(&f, SS_FRAME_PING, 40);
    ASSERT(f.payload != p);
    check_payload(&taken, SS_FRAME_BATCH, 3000);
    ss_fdec_free(&d);
    ss_free(p);
    ss_set_allocator(NULL);
}

/* A zero-length frame has no buffer of its own: take gives NULL and the
 * decoder keeps the buffer it had. */
TEST(take_empty_frame_gives_null)
{
    uint8_t in[SS_FRAME_HEADER_LEN + 500 + SS_FRAME_HEADER_LEN];
    size_t n1 = make_frame(in, sizeof(in), SS_FRAME_PING, 500);
    size_t n2 = make_frame(in + n1, sizeof(in) - n1, SS_FRAME_PONG, 0);
    counting_on(0);
    ss_fdec d;
    ss_fdec_init(&d, 4096);
    size_t used = 0;
    ASSERT_EQ(ss_fdec_feed(&d, in, n1 + n2, &used), 1);
    ASSERT_EQ(ss_fdec_feed(&d, in + used, n1 + n2 - used, &used), 1);
    ASSERT_EQ(used, n2);
    uint8_t *p = (uint8_t *)1;
    uint32_t len = 9;
    ASSERT_EQ(ss_fdec_take(&d, &p, &len), 0);
    ASSERT(p == NULL);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(g_frees, 0);
    ASSERT(d.buf != NULL); /* still the decoder's, freed below */
    ss_fdec_free(&d);
    ASSERT_EQ(g_frees, 1);
    ss_set_allocator(NULL);
}

/* ss_fdec_trim frees a large buffer only between frames, never under a
 * partial or a ready frame, and the decoder carries on after it. */
TEST(trim_only_between_frames)
{
    uint8_t in[2 * (SS_FRAME_HEADER_LEN + 3000)];
    size_t n1 = make_frame(in, sizeof(in), SS_FRAME_BATCH, 3000);
    size_t n2 = make_frame(in + n1, sizeof(in) - n1, SS_FRAME_BATCH, 2000);
    counting_on(0);
    ss_fdec d;
    ss_fdec_init(&d, 4096);
    size_t used = 0;
    /* Partial payload: kept. */
    ASSERT_EQ(ss_fdec_feed(&d, in, 1000, &used), 0);
    ss_fdec_trim(&d, 0);
    ASSERT_EQ(g_frees, 0);
    ASSERT_EQ(ss_fdec_feed(&d, in + 1000, n1 - 1000, &used), 1);
    /* Ready, the caller may still read it: kept. */
    ss_fdec_trim(&d, 0);
    ASSERT_EQ(g_frees, 0);
    ss_frame f;
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    check_payload(&f, SS_FRAME_BATCH, 3000);
    /* Released by an empty feed: now it goes, unless small enough. */
    ASSERT_EQ(ss_fdec_feed(&d, NULL, 0, &used), 0);
    ss_fdec_trim(&d, 4096);
    ASSERT_EQ(g_frees, 0);
    ss_fdec_trim(&d, 256);
    ASSERT_EQ(g_frees, 1);
    ASSERT(d.buf == NULL);
    ss_fdec_trim(&d, 0); /* nothing left: a no-op */
    ASSERT_EQ(g_frees, 1);
    /* A partial header holds no payload: the buffer may go, and the frame
     * still decodes whole. */
    ASSERT_EQ(ss_fdec_feed(&d, in + n1, 3, &used), 0);
    ss_fdec_trim(&d, 0);
    ASSERT_EQ(ss_fdec_feed(&d, in + n1 + 3, n2 - 3, &used), 1);
    ASSERT_EQ(ss_fdec_frame(&d, &f), 0);
    check_payload(&f, SS_FRAME_BATCH, 2000);
    ASSERT_EQ(ss_fdec_pending(&d), 0);
    ss_fdec_free(&d);
    ss_fdec_trim(&d, 0); /* on a freed decoder: a no-op */
    ss_set_allocator(NULL);
}

#define ALL_TESTS                                              \
    SS_TEST_ENTRY(type_names)                                  \
    SS_TEST_ENTRY(write_header_layout_and_errors)              \
    SS_TEST_ENTRY(encode_needs_room)                           \
    SS_TEST_ENTRY(every_type_round_trips)                      \
    SS_TEST_ENTRY(byte_at_a_time_and_every_chunk_size)         \
    SS_TEST_ENTRY(split_at_every_byte)                         \
    SS_TEST_ENTRY(truncation_at_every_byte_is_pending)         \
    SS_TEST_ENTRY(header_vectors_whole_and_bytewise)           \
    SS_TEST_ENTRY(exact_max_payload_accepted)                  \
    SS_TEST_ENTRY(max_is_clamped_to_absolute_max)              \
    SS_TEST_ENTRY(empty_payload_is_non_null)                   \
    SS_TEST_ENTRY(announced_length_does_not_allocate_up_front) \
    SS_TEST_ENTRY(allocation_failure_is_enomem_and_sticky)     \
    SS_TEST_ENTRY(feed_after_ready_starts_next_frame)          \
    SS_TEST_ENTRY(take_hands_over_the_buffer)                  \
    SS_TEST_ENTRY(take_empty_frame_gives_null)                 \
    SS_TEST_ENTRY(trim_only_between_frames)                    \
    SS_TEST_ENTRY(err_table)                                   \
    SS_TEST_ENTRY(zeroize_wipes)

SS_TEST_MAIN(ALL_TESTS)
