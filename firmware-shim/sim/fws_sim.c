/* fws_sim.c - the deterministic simulated shim: RAM storage with volatile
 * writes and power-cut injection, a virtual clock, and an in-memory network
 * with scripted faults, all driven by a seeded PRNG (see fws_sim.h). */
#include "fws_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CAPACITY   (1024ull * 1024ull * 1024ull)
#define DEFAULT_WALL_START 1700000000000ll
#define DEFAULT_SNDBUF     65536u
#define FIRST_PORT         40000u
#define BACKLOG_MAX        64u
/* Bound on the rounds of one blocking wait; each round runs the idle hook
 * and moves the clock to the next event, so this is only a safety net. */
#define WAIT_ROUNDS_MAX 1000000u
#define LOG_LINE_MAX    512

enum { SOCK_STREAM_END = 1, SOCK_LISTENER = 2 };

/* --- PRNG: xoshiro256** seeded through splitmix64 (Vigna) --- */

typedef struct prng {
    uint64_t s[4];
} prng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prng_seed(prng *p, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        p->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t prng_next(prng *p)
{
    uint64_t *s = p->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* --- types --- */

/* File contents; durable bytes are always data[0..durable). Names and open
 * handles hold references, so a removed file stays readable while open. */
typedef struct inode {
    uint8_t *data;
    size_t len, cap, durable;
    unsigned refs;
} inode;

typedef struct dirent_ {
    char name[FWS_NAME_MAX + 1];
    inode *ino;
} dirent_;

struct fws_file {
    fws_sim *owner;
    inode *ino; /* NULL once stale */
    struct fws_file *prev, *next;
};

typedef struct chunk {
    struct chunk *next;
    int64_t due; /* virtual mono ms at which it can be read */
    size_t len, off;
    uint8_t data[];
} chunk;

typedef struct pipe_ {
    chunk *head, *tail;
    size_t queued;    /* bytes sent and not yet read */
    uint64_t sent;    /* bytes ever sent */
    int64_t last_due; /* keeps delivery FIFO when the delay shrinks */
} pipe_;

typedef struct conn {
    uint64_t id;
    pipe_ dir[2];
    fws_sim_link link;
    int reset;
    int closed[2]; /* side closed its end in an orderly way */
    struct fws_sock *end[2];
    uint16_t cport; /* pseudo source port, for accept's peer string */
    struct conn *next;
} conn;

struct fws_sock {
    fws_sim *owner;
    int kind;
    int stale;
    struct fws_sock *prev, *next; /* owner's list of handles */
    /* stream end */
    conn *c;
    int side; /* 0: connecting side, 1: accepting side */
    /* listener */
    uint16_t port;
    struct fws_sock *q_head, *q_tail, *q_next; /* accept queue */
    unsigned q_len;
    struct fws_sock *l_next; /* world's listener list */
};

typedef struct world {
    int64_t mono;
    int64_t wall_start;
    uint32_t sndbuf;
    unsigned nodes;
    conn *conns;
    struct fws_sock *listeners;
    uint64_t last_conn;
    fws_sim_link default_link, next_link;
    int has_next;
    unsigned refuse;
    uint16_t blackhole;
    uint16_t next_port;
    fws_sim_idle_fn idle;
    void *idle_arg;
    int in_idle;
    uint64_t idle_calls;
} world;

struct fws_sim {
    world *w;
    prng rng;
    dirent_ *files;
    int nfiles, files_cap;
    fws_file *handles;
    struct fws_sock *socks;
    uint64_t capacity, used;
    int enospc_prefix;
    uint64_t ops;
    uint64_t cut_at;
    size_t tear;
    int tear_mode;
    int powered_off;
    uint64_t fault_at;
    int fault_err;
    int fault_persistent;
    int64_t wall_offset;
    int log_level;
    fws_sim_log_fn log_sink;
    void *log_arg;
    fws_sim_stats st;
    fws_sim_op_fn op_hook;
    void *op_hook_arg;
};

/* --- clock and waiting --- */

static int64_t sim_wall_ms(void *ctx)
{
    fws_sim *sim = ctx;
    return sim->w->wall_start + sim->w->mono + sim->wall_offset;
}

static int64_t sim_mono_ms(void *ctx)
{
    fws_sim *sim = ctx;
    return sim->w->mono;
}

static void maybe_drop(world *w, conn *c)
{
    if (!c->reset && c->link.drop && w->mono >= c->link.drop_at_ms)
        c->reset = 1;
}

/* The earliest network event strictly after now (a delivery becoming due, a
 * scripted drop), or INT64_MAX. */
static int64_t next_event(const world *w)
{
    int64_t best = INT64_MAX;
    for (const conn *c = w->conns; c != NULL; c = c->next) {
        for (int d = 0; d < 2; d++) {
            const chunk *h = c->dir[d].head;
            if (h != NULL && h->due > w->mono && h->due < best)
                best = h->due;
        }
        if (c->link.drop && !c->reset && c->link.drop_at_ms > w->mono && c->link.drop_at_ms < best)
            best = c->link.drop_at_ms;
    }
    return best;
}

static void run_idle(world *w)
{
    if (w->idle == NULL || w->in_idle)
        return;
    w->in_idle = 1;
    w->idle_calls++;
    w->idle(w->idle_arg);
    w->in_idle = 0;
}

/* Cooperative blocking: lets the other nodes run (idle hook), then moves the
 * clock to the next network event or the deadline, until ready() or the
 * deadline. Returns 1 if ready, 0 on timeout. */
static int wait_until(fws_sim *sim, int (*ready)(void *arg), void *arg, uint32_t timeout_ms)
{
    world *w = sim->w;
    int64_t deadline = w->mono + (int64_t)timeout_ms;
    for (unsigned round = 0; round < WAIT_ROUNDS_MAX; round++) {
        if (ready != NULL && ready(arg))
            return 1;
        if (w->mono >= deadline)
            return 0;
        run_idle(w);
        if (ready != NULL && ready(arg))
            return 1;
        int64_t next = next_event(w);
        int64_t to = next < deadline ? next : deadline;
        if (to > w->mono)
            w->mono = to;
    }
    w->mono = deadline > w->mono ? deadline : w->mono;
    return 0;
}

static void sim_sleep_ms(void *ctx, uint32_t ms)
{
    (void)wait_until(ctx, NULL, NULL, ms);
}

static int sim_entropy(void *ctx, uint8_t *buf, size_t len)
{
    fws_sim *sim = ctx;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = prng_next(&sim->rng);
        size_t n = len - i < 8 ? len - i : 8;
        for (size_t k = 0; k < n; k++)
            buf[i + k] = (uint8_t)(r >> (8 * k));
    }
    return 0;
}

/* --- storage --- */

static int find_file(const fws_sim *sim, const char *name)
{
    for (int i = 0; i < sim->nfiles; i++) {
        if (strcmp(sim->files[i].name, name) == 0)
            return i;
    }
    return -1;
}

static void inode_unref(fws_sim *sim, inode *ino)
{
    if (--ino->refs > 0)
        return;
    sim->used -= ino->len;
    free(ino->data);
    free(ino);
}

static void unlink_entry(fws_sim *sim, int i)
{
    inode *ino = sim->files[i].ino;
    memmove(&sim->files[i], &sim->files[i + 1], (size_t)(sim->nfiles - i - 1) * sizeof(dirent_));
    sim->nfiles--;
    inode_unref(sim, ino);
}

static int ino_reserve(inode *ino, size_t need)
{
    if (need <= ino->cap)
        return 0;
    size_t cap = ino->cap ? ino->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(ino->data, cap);
    if (p == NULL)
        return FWS_ENOMEM;
    ino->data = p;
    ino->cap = cap;
    return 0;
}

/* Numbers one mutating operation and decides its fate: 0 to go ahead, or
 * an error. *cut is set when the armed power cut fires on this one (the
 * caller applies the op-specific effect, then returns FWS_EPOWER). */
static int op_begin(fws_sim *sim, const char *op, int *cut)
{
    uint64_t n = ++sim->ops;
    sim->st.ops = sim->ops;
    *cut = 0;
    if (sim->op_hook != NULL)
        sim->op_hook(sim->op_hook_arg, n, op);
    if (sim->cut_at != 0 && n == sim->cut_at) {
        sim->cut_at = 0;
        sim->powered_off = 1;
        *cut = 1;
        return FWS_EPOWER;
    }
    if (sim->fault_err != 0 &&
        (n == sim->fault_at || (sim->fault_persistent && n > sim->fault_at))) {
        sim->st.faults++;
        return sim->fault_err;
    }
    return 0;
}

static int check_file(fws_sim *sim, fws_file *f)
{
    if (f->owner != sim)
        return FWS_EINVAL;
    if (sim->powered_off || f->ino == NULL)
        return FWS_EPOWER;
    return 0;
}

static int sim_open(void *ctx, const char *name, int flags, fws_file **out)
{
    fws_sim *sim = ctx;
    if (sim->powered_off)
        return FWS_EPOWER;
    int i = find_file(sim, name);
    if (i >= 0 && (flags & FWS_O_EXCL))
        return FWS_EEXIST;
    if (i < 0 && !(flags & FWS_O_CREATE))
        return FWS_ENOENT;
    fws_file *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return FWS_ENOMEM;
    if (i < 0) {
        int cut;
        int rc = op_begin(sim, "create", &cut);
        if (rc == 0 && sim->nfiles == sim->files_cap) {
            int cap = sim->files_cap ? sim->files_cap * 2 : 16;
            dirent_ *nf = realloc(sim->files, (size_t)cap * sizeof(*nf));
            if (nf == NULL)
                rc = FWS_ENOMEM;
            else {
                sim->files = nf;
                sim->files_cap = cap;
            }
        }
        inode *ino = rc == 0 ? calloc(1, sizeof(*ino)) : NULL;
        if (rc == 0 && ino == NULL)
            rc = FWS_ENOMEM;
        if (rc < 0) {
            free(f);
            return rc;
        }
        i = sim->nfiles++;
        memset(sim->files[i].name, 0, sizeof(sim->files[i].name));
        memcpy(sim->files[i].name, name, strlen(name));
        sim->files[i].ino = ino;
        ino->refs = 1;
        sim->st.creates++;
    }
    f->owner = sim;
    f->ino = sim->files[i].ino;
    f->ino->refs++;
    f->next = sim->handles;
    if (sim->handles != NULL)
        sim->handles->prev = f;
    sim->handles = f;
    *out = f;
    return 0;
}

static int sim_read(void *ctx, fws_file *f, uint64_t off, void *buf, size_t len)
{
    fws_sim *sim = ctx;
    int rc = check_file(sim, f);
    if (rc < 0)
        return rc;
    sim->st.reads++;
    if (off >= f->ino->len)
        return 0;
    size_t n = f->ino->len - (size_t)off;
    if (n > len)
        n = len;
    memcpy(buf, f->ino->data + off, n);
    return (int)n;
}

/* Lands the torn prefix of the append interrupted by the cut: it and the
 * file's earlier unsynced bytes (which precede it on the media) become the
 * durable content. */
static void land_torn(fws_sim *sim, inode *ino, const uint8_t *buf, size_t len)
{
    size_t t = sim->tear < len ? sim->tear : len;
    uint64_t room = sim->used < sim->capacity ? sim->capacity - sim->used : 0;
    if (t > room)
        t = (size_t)room;
    if (t == 0 || ino_reserve(ino, ino->len + t) < 0)
        return; /* nothing of it landed: the file keeps its durable bytes */
    memcpy(ino->data + ino->len, buf, t);
    if (sim->tear_mode == FWS_SIM_TEAR_GARBAGE) {
        size_t g = t < FWS_SIM_GARBAGE_MAX ? t : FWS_SIM_GARBAGE_MAX;
        for (size_t k = t - g; k < t; k++)
            ino->data[ino->len + k] ^= (uint8_t)(prng_next(&sim->rng) % 255u + 1u);
    }
    ino->len += t;
    sim->used += t;
    ino->durable = ino->len;
}

static int sim_append(void *ctx, fws_file *f, const void *buf, size_t len)
{
    fws_sim *sim = ctx;
    int rc = check_file(sim, f);
    if (rc < 0)
        return rc;
    int cut;
    rc = op_begin(sim, "append", &cut);
    if (cut)
        land_torn(sim, f->ino, buf, len);
    if (rc < 0)
        return rc;
    inode *ino = f->ino;
    size_t n = len;
    uint64_t room = sim->used < sim->capacity ? sim->capacity - sim->used : 0;
    if ((uint64_t)len > room) {
        sim->st.enospc++;
        if (!sim->enospc_prefix)
            return FWS_ENOSPC;
        n = (size_t)room;
    }
    if (ino_reserve(ino, ino->len + n) < 0)
        return FWS_ENOMEM;
    memcpy(ino->data + ino->len, buf, n);
    ino->len += n;
    sim->used += n;
    if (n < len)
        return FWS_ENOSPC;
    sim->st.appends++;
    sim->st.bytes_appended += n;
    return 0;
}

static int sim_sync(void *ctx, fws_file *f)
{
    fws_sim *sim = ctx;
    int rc = check_file(sim, f);
    if (rc < 0)
        return rc;
    int cut;
    rc = op_begin(sim, "sync", &cut);
    if (rc < 0)
        return rc;
    f->ino->durable = f->ino->len;
    sim->st.syncs++;
    return 0;
}

static int sim_size(void *ctx, fws_file *f, uint64_t *out)
{
    fws_sim *sim = ctx;
    int rc = check_file(sim, f);
    if (rc < 0)
        return rc;
    *out = f->ino->len;
    return 0;
}

static int sim_truncate(void *ctx, fws_file *f, uint64_t len)
{
    fws_sim *sim = ctx;
    int rc = check_file(sim, f);
    if (rc < 0)
        return rc;
    int cut;
    rc = op_begin(sim, "truncate", &cut);
    if (rc < 0)
        return rc;
    inode *ino = f->ino;
    if (len > ino->len) {
        uint64_t grow = len - ino->len;
        if (sim->used >= sim->capacity || grow > sim->capacity - sim->used) {
            sim->st.enospc++;
            return FWS_ENOSPC;
        }
        if (ino_reserve(ino, (size_t)len) < 0)
            return FWS_ENOMEM;
        memset(ino->data + ino->len, 0, (size_t)grow);
        sim->used += grow;
    } else {
        sim->used -= ino->len - (size_t)len;
    }
    /* Durable on return, like ftruncate + fsync in the posix port. */
    ino->len = (size_t)len;
    ino->durable = ino->len;
    sim->st.truncates++;
    return 0;
}

static void file_unlist(fws_sim *sim, fws_file *f)
{
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        sim->handles = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
}

static void sim_close(void *ctx, fws_file *f)
{
    fws_sim *sim = ctx;
    if (f->owner != sim)
        return; /* not ours: refusing is safer than corrupting a list */
    if (f->ino != NULL)
        inode_unref(sim, f->ino);
    file_unlist(sim, f);
    free(f);
}

static void do_rename(fws_sim *sim, int from, const char *to)
{
    int t = find_file(sim, to);
    if (t == from)
        return;
    memset(sim->files[from].name, 0, sizeof(sim->files[from].name));
    memcpy(sim->files[from].name, to, strlen(to));
    if (t >= 0)
        unlink_entry(sim, t);
}

static int sim_rename(void *ctx, const char *from, const char *to)
{
    fws_sim *sim = ctx;
    if (sim->powered_off)
        return FWS_EPOWER;
    int cut;
    int rc = op_begin(sim, "rename", &cut);
    int i = find_file(sim, from);
    if (cut) {
        /* Atomic on the media: either all of it or none of it. */
        if (i >= 0 && (prng_next(&sim->rng) & 1))
            do_rename(sim, i, to);
        return rc;
    }
    if (rc < 0)
        return rc;
    if (i < 0)
        return FWS_ENOENT;
    do_rename(sim, i, to);
    sim->st.renames++;
    return 0;
}

static int sim_remove(void *ctx, const char *name)
{
    fws_sim *sim = ctx;
    if (sim->powered_off)
        return FWS_EPOWER;
    int cut;
    int rc = op_begin(sim, "remove", &cut);
    if (rc < 0)
        return rc;
    int i = find_file(sim, name);
    if (i < 0)
        return FWS_ENOENT;
    unlink_entry(sim, i);
    sim->st.removes++;
    return 0;
}

/* Walks a snapshot of the names, so the callback may create, rename or
 * remove files (a journal reclaiming segments does exactly that). */
static int sim_list(void *ctx, int (*cb)(void *arg, const char *name), void *arg)
{
    fws_sim *sim = ctx;
    if (sim->powered_off)
        return FWS_EPOWER;
    int n = sim->nfiles;
    if (n == 0)
        return 0;
    char(*names)[FWS_NAME_MAX + 1] = malloc((size_t)n * sizeof(*names));
    if (names == NULL)
        return FWS_ENOMEM;
    for (int i = 0; i < n; i++)
        memcpy(names[i], sim->files[i].name, sizeof(names[i]));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = cb(arg, names[i]);
    free(names);
    return rc;
}

/* --- network --- */

static void pipe_free(pipe_ *p)
{
    chunk *c = p->head;
    while (c != NULL) {
        chunk *nx = c->next;
        free(c);
        c = nx;
    }
    p->head = p->tail = NULL;
    p->queued = 0;
}

static void conn_release(world *w, conn *c)
{
    if (c->end[0] != NULL || c->end[1] != NULL)
        return;
    for (conn **pp = &w->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    pipe_free(&c->dir[0]);
    pipe_free(&c->dir[1]);
    free(c);
}

/* Detaches a stream end from its connection: orderly (close) or as a reset
 * (power cut, destroy). */
static void end_detach(world *w, struct fws_sock *s, int orderly)
{
    conn *c = s->c;
    if (c == NULL)
        return;
    if (orderly)
        c->closed[s->side] = 1;
    else
        c->reset = 1;
    c->end[s->side] = NULL;
    s->c = NULL;
    conn_release(w, c);
}

static void sock_unlist(fws_sim *sim, struct fws_sock *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        sim->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void sock_list(fws_sim *sim, struct fws_sock *s)
{
    s->prev = NULL;
    s->next = sim->socks;
    if (sim->socks != NULL)
        sim->socks->prev = s;
    sim->socks = s;
}

/* Stops a listener: takes it off the port table and resets and frees the
 * connections nobody accepted yet (their handles were never handed out). */
static void listener_stop(world *w, struct fws_sock *l)
{
    for (struct fws_sock **pp = &w->listeners; *pp != NULL; pp = &(*pp)->l_next) {
        if (*pp == l) {
            *pp = l->l_next;
            break;
        }
    }
    l->l_next = NULL;
    struct fws_sock *q = l->q_head;
    while (q != NULL) {
        struct fws_sock *nx = q->q_next;
        end_detach(w, q, 0);
        sock_unlist(q->owner, q);
        free(q);
        q = nx;
    }
    l->q_head = l->q_tail = NULL;
    l->q_len = 0;
}

static int check_sock(fws_sim *sim, struct fws_sock *s, int kind)
{
    if (s->owner != sim || s->kind != kind)
        return FWS_EINVAL;
    if (s->stale)
        return FWS_EPOWER;
    return 0;
}

static uint32_t sndbuf_of(const world *w, const conn *c, int d)
{
    return c->link.sndbuf[d] ? c->link.sndbuf[d] : w->sndbuf;
}

/* What recv on this end would do now: > 0 data ready, 0 would wait, < 0 the
 * error it would return. */
static int recv_state(world *w, struct fws_sock *s)
{
    conn *c = s->c;
    if (c == NULL)
        return FWS_ECONNRESET;
    maybe_drop(w, c);
    const pipe_ *p = &c->dir[1 - s->side];
    if (p->head != NULL)
        return p->head->due <= w->mono ? 1 : 0;
    if (c->reset)
        return FWS_ECONNRESET;
    if (c->closed[1 - s->side])
        return FWS_ECLOSED;
    return 0;
}

/* Bytes send could take now (> 0), 0 if the buffer is full, or an error. */
static int64_t send_room(world *w, struct fws_sock *s)
{
    conn *c = s->c;
    if (c == NULL)
        return FWS_ECONNRESET;
    maybe_drop(w, c);
    int d = s->side;
    const pipe_ *p = &c->dir[d];
    if (c->reset)
        return FWS_ECONNRESET;
    if (c->closed[1 - d])
        return FWS_ECLOSED;
    if (c->link.cut[d] && p->sent >= c->link.cut_after[d]) {
        c->reset = 1;
        return FWS_ECONNRESET;
    }
    uint32_t cap = sndbuf_of(w, c, d);
    int64_t room = p->queued < cap ? (int64_t)(cap - p->queued) : 0;
    if (c->link.cut[d] && (uint64_t)room > c->link.cut_after[d] - p->sent)
        room = (int64_t)(c->link.cut_after[d] - p->sent);
    return room;
}

static int sim_send(void *ctx, fws_sock *s, const void *buf, size_t len)
{
    fws_sim *sim = ctx;
    world *w = sim->w;
    int rc = check_sock(sim, s, SOCK_STREAM_END);
    if (rc < 0)
        return rc;
    int64_t room = send_room(w, s);
    if (room < 0)
        return (int)room;
    if (room == 0)
        return FWS_EAGAIN;
    size_t n = len < (uint64_t)room ? len : (size_t)room;
    chunk *ch = malloc(sizeof(*ch) + n);
    if (ch == NULL)
        return FWS_ENOMEM;
    conn *c = s->c;
    int d = s->side;
    pipe_ *p = &c->dir[d];
    memcpy(ch->data, buf, n);
    ch->next = NULL;
    ch->len = n;
    ch->off = 0;
    ch->due = w->mono + (int64_t)c->link.delay_ms[d];
    if (ch->due < p->last_due)
        ch->due = p->last_due; /* TCP: never overtake earlier bytes */
    p->last_due = ch->due;
    if (p->tail != NULL)
        p->tail->next = ch;
    else
        p->head = ch;
    p->tail = ch;
    p->queued += n;
    p->sent += n;
    if (c->link.cut[d] && p->sent >= c->link.cut_after[d])
        c->reset = 1; /* the peer still gets these bytes, then the reset */
    return (int)n;
}

static int recv_ready(void *arg)
{
    struct fws_sock *s = arg;
    return recv_state(s->owner->w, s) != 0;
}

static int sim_recv(void *ctx, fws_sock *s, void *buf, size_t len, uint32_t timeout_ms)
{
    fws_sim *sim = ctx;
    world *w = sim->w;
    int rc = check_sock(sim, s, SOCK_STREAM_END);
    if (rc < 0)
        return rc;
    if (recv_state(w, s) == 0 && timeout_ms > 0)
        (void)wait_until(sim, recv_ready, s, timeout_ms);
    rc = recv_state(w, s);
    if (rc == 0)
        return FWS_ETIMEDOUT;
    if (rc < 0)
        return rc;
    pipe_ *p = &s->c->dir[1 - s->side];
    size_t got = 0;
    while (got < len && p->head != NULL && p->head->due <= w->mono) {
        chunk *ch = p->head;
        size_t n = ch->len - ch->off;
        if (n > len - got)
            n = len - got;
        memcpy((uint8_t *)buf + got, ch->data + ch->off, n);
        ch->off += n;
        got += n;
        if (ch->off == ch->len) {
            p->head = ch->next;
            if (p->head == NULL)
                p->tail = NULL;
            free(ch);
        }
    }
    p->queued -= got;
    return (int)got;
}

static void sim_sock_close(void *ctx, fws_sock *s)
{
    fws_sim *sim = ctx;
    if (s->owner != sim)
        return;
    if (s->kind == SOCK_LISTENER && !s->stale)
        listener_stop(sim->w, s);
    end_detach(sim->w, s, 1);
    sock_unlist(sim, s);
    free(s);
}

static struct fws_sock *find_listener(world *w, uint16_t port)
{
    for (struct fws_sock *l = w->listeners; l != NULL; l = l->l_next) {
        if (l->port == port)
            return l;
    }
    return NULL;
}

static int sim_connect(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms,
                       fws_sock **out)
{
    fws_sim *sim = ctx;
    world *w = sim->w;
    (void)host; /* every host name reaches the simulated port */
    if (w->refuse > 0) {
        w->refuse--;
        return FWS_ECONNREFUSED;
    }
    if (w->blackhole != 0 && port == w->blackhole) {
        (void)wait_until(sim, NULL, NULL, timeout_ms);
        return FWS_ETIMEDOUT;
    }
    struct fws_sock *l = find_listener(w, port);
    if (l == NULL || l->q_len >= BACKLOG_MAX)
        return FWS_ECONNREFUSED;
    conn *c = calloc(1, sizeof(*c));
    struct fws_sock *a = calloc(1, sizeof(*a));
    struct fws_sock *b = calloc(1, sizeof(*b));
    if (c == NULL || a == NULL || b == NULL) {
        free(c);
        free(a);
        free(b);
        return FWS_ENOMEM;
    }
    c->id = ++w->last_conn;
    c->cport = (uint16_t)(20000u + (unsigned)(c->id % 40000u));
    if (w->has_next) {
        c->link = w->next_link;
        w->has_next = 0;
    } else {
        c->link = w->default_link;
    }
    c->next = w->conns;
    w->conns = c;
    a->owner = sim;
    a->kind = SOCK_STREAM_END;
    a->c = c;
    a->side = 0;
    b->owner = l->owner;
    b->kind = SOCK_STREAM_END;
    b->c = c;
    b->side = 1;
    c->end[0] = a;
    c->end[1] = b;
    sock_list(sim, a);
    sock_list(l->owner, b);
    if (l->q_tail != NULL)
        l->q_tail->q_next = b;
    else
        l->q_head = b;
    l->q_tail = b;
    l->q_len++;
    *out = a;
    return 0;
}

static int sim_listen(void *ctx, const char *host, uint16_t port, fws_sock **out,
                      uint16_t *bound_port)
{
    fws_sim *sim = ctx;
    world *w = sim->w;
    (void)host;
    if (port == 0) {
        for (unsigned i = 0; i < 65536u - FIRST_PORT; i++) {
            uint16_t cand = w->next_port;
            w->next_port = cand == 65535 ? FIRST_PORT : (uint16_t)(cand + 1);
            if (find_listener(w, cand) == NULL) {
                port = cand;
                break;
            }
        }
        if (port == 0)
            return FWS_EADDR;
    } else if (find_listener(w, port) != NULL) {
        return FWS_EADDR; /* in use */
    }
    struct fws_sock *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return FWS_ENOMEM;
    l->owner = sim;
    l->kind = SOCK_LISTENER;
    l->port = port;
    l->l_next = w->listeners;
    w->listeners = l;
    sock_list(sim, l);
    if (bound_port != NULL)
        *bound_port = port;
    *out = l;
    return 0;
}

static int sim_accept(void *ctx, fws_sock *l, fws_sock **out, char *peer, size_t peer_cap)
{
    fws_sim *sim = ctx;
    int rc = check_sock(sim, l, SOCK_LISTENER);
    if (rc < 0)
        return rc;
    struct fws_sock *b = l->q_head;
    if (b == NULL)
        return FWS_EAGAIN;
    l->q_head = b->q_next;
    if (l->q_head == NULL)
        l->q_tail = NULL;
    l->q_len--;
    b->q_next = NULL;
    if (peer != NULL && peer_cap > 0) {
        unsigned cport = b->c != NULL ? b->c->cport : 0;
        (void)snprintf(peer, peer_cap, "127.0.0.1:%u", cport);
    }
    *out = b;
    return 0;
}

/* Ready events of one poll entry (errors show as every requested event, so
 * the caller's next recv or send reports them). */
static int poll_one(world *w, fws_pollfd *p)
{
    struct fws_sock *s = p->sock;
    int rev = 0;
    if (s->stale) {
        rev = p->events & (FWS_POLL_IN | FWS_POLL_OUT);
        return rev ? rev : FWS_POLL_IN;
    }
    if (s->kind == SOCK_LISTENER)
        return (p->events & FWS_POLL_IN) && s->q_head != NULL ? FWS_POLL_IN : 0;
    if ((p->events & FWS_POLL_IN) && recv_state(w, s) != 0)
        rev |= FWS_POLL_IN;
    if (p->events & FWS_POLL_OUT) {
        int64_t room = send_room(w, s);
        if (room != 0)
            rev |= FWS_POLL_OUT;
        if (room < 0 && (p->events & FWS_POLL_IN))
            rev |= FWS_POLL_IN;
    }
    return rev;
}

typedef struct poll_arg {
    world *w;
    fws_pollfd *fds;
    int n;
    int ready;
} poll_arg;

static int poll_scan(void *arg)
{
    poll_arg *pa = arg;
    pa->ready = 0;
    for (int i = 0; i < pa->n; i++) {
        pa->fds[i].revents = poll_one(pa->w, &pa->fds[i]);
        if (pa->fds[i].revents != 0)
            pa->ready++;
    }
    return pa->ready > 0;
}

static int sim_poll(void *ctx, fws_pollfd *fds, int n, uint32_t timeout_ms)
{
    fws_sim *sim = ctx;
    for (int i = 0; i < n; i++) {
        if (fds[i].sock->owner != sim)
            return FWS_EINVAL;
    }
    poll_arg pa = { sim->w, fds, n, 0 };
    if (!poll_scan(&pa) && timeout_ms > 0)
        (void)wait_until(sim, poll_scan, &pa, timeout_ms);
    return pa.ready;
}

/* --- log --- */

static void sim_log(void *ctx, int level, const char *line)
{
    fws_sim *sim = ctx;
    if (level > sim->log_level)
        return;
    sim->st.log_lines++;
    if (sim->log_sink != NULL)
        sim->log_sink(sim->log_arg, level, line);
}

static const fws_ops sim_ops = {
    .version = FWS_VERSION,
    .ops_size = sizeof(fws_ops),
    .wall_ms = sim_wall_ms,
    .mono_ms = sim_mono_ms,
    .sleep_ms = sim_sleep_ms,
    .entropy = sim_entropy,
    .open = sim_open,
    .read = sim_read,
    .append = sim_append,
    .sync = sim_sync,
    .size = sim_size,
    .truncate = sim_truncate,
    .close = sim_close,
    .rename = sim_rename,
    .remove = sim_remove,
    .list = sim_list,
    .connect = sim_connect,
    .send = sim_send,
    .recv = sim_recv,
    .sock_close = sim_sock_close,
    .listen = sim_listen,
    .accept = sim_accept,
    .poll = sim_poll,
    .log = sim_log,
};

/* --- lifecycle and control --- */

int fws_sim_new(const fws_sim_config *cfg, fws_sim **out, fws *shim)
{
    static const fws_sim_config defaults;
    if (out == NULL || shim == NULL)
        return FWS_EINVAL;
    *out = NULL;
    if (cfg == NULL)
        cfg = &defaults;
    if (cfg->world != NULL && cfg->world->w == NULL)
        return FWS_EINVAL;
    fws_sim *sim = calloc(1, sizeof(*sim));
    if (sim == NULL)
        return FWS_ENOMEM;
    if (cfg->world != NULL) {
        sim->w = cfg->world->w;
    } else {
        sim->w = calloc(1, sizeof(*sim->w));
        if (sim->w == NULL) {
            free(sim);
            return FWS_ENOMEM;
        }
        sim->w->wall_start = cfg->wall_start_ms ? cfg->wall_start_ms : DEFAULT_WALL_START;
        sim->w->sndbuf = cfg->sndbuf_bytes ? cfg->sndbuf_bytes : DEFAULT_SNDBUF;
        sim->w->next_port = FIRST_PORT;
    }
    sim->w->nodes++;
    prng_seed(&sim->rng, cfg->seed);
    sim->capacity = cfg->capacity_bytes ? cfg->capacity_bytes : DEFAULT_CAPACITY;
    sim->enospc_prefix = cfg->enospc_prefix;
    sim->log_level = cfg->log_level;
    sim->log_sink = cfg->log_sink;
    sim->log_arg = cfg->log_arg;
    shim->ops = &sim_ops;
    shim->ctx = sim;
    *out = sim;
    return 0;
}

/* Drops every handle of the node: files become stale (or are freed), socket
 * ends are reset for their peers, listeners stop. */
static void drop_handles(fws_sim *sim, int free_them)
{
    for (fws_file *f = sim->handles, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->ino != NULL) {
            inode_unref(sim, f->ino);
            f->ino = NULL;
        }
        if (free_them) {
            file_unlist(sim, f);
            free(f);
        }
    }
    /* Listeners first: their accept queues hold sockets of this node, which
     * listener_stop frees from the very list being walked, so start over
     * after each one (marking it stale keeps it from being stopped twice). */
    for (int again = 1; again;) {
        again = 0;
        for (struct fws_sock *s = sim->socks; s != NULL; s = s->next) {
            if (s->kind == SOCK_LISTENER && !s->stale) {
                listener_stop(sim->w, s);
                s->stale = 1;
                again = 1;
                break;
            }
        }
    }
    for (struct fws_sock *s = sim->socks, *nx; s != NULL; s = nx) {
        nx = s->next;
        end_detach(sim->w, s, 0);
        s->stale = 1;
        if (free_them) {
            sock_unlist(sim, s);
            free(s);
        }
    }
}

void fws_sim_power_cut(fws_sim *sim)
{
    if (sim == NULL)
        return;
    drop_handles(sim, 0);
    for (int i = 0; i < sim->nfiles; i++) {
        inode *ino = sim->files[i].ino;
        sim->used -= ino->len - ino->durable;
        ino->len = ino->durable;
    }
    sim->powered_off = 0;
    sim->cut_at = 0;
    sim->st.power_cuts++;
}

void fws_sim_reboot(fws_sim *sim)
{
    if (sim == NULL)
        return;
    if (sim->powered_off) {
        fws_sim_power_cut(sim);
        return;
    }
    drop_handles(sim, 0);
}

void fws_sim_destroy(fws_sim *sim)
{
    if (sim == NULL)
        return;
    drop_handles(sim, 1);
    while (sim->nfiles > 0)
        unlink_entry(sim, sim->nfiles - 1);
    free(sim->files);
    world *w = sim->w;
    if (--w->nodes == 0) {
        /* Every end was detached by its node, so no connection is left; free
         * defensively anyway. */
        while (w->conns != NULL) {
            conn *c = w->conns;
            w->conns = c->next;
            pipe_free(&c->dir[0]);
            pipe_free(&c->dir[1]);
            free(c);
        }
        free(w);
    }
    free(sim);
}

int fws_sim_set_cut_at(fws_sim *sim, uint64_t n, size_t tear_bytes, fws_sim_tear tear_mode)
{
    if (sim == NULL || (tear_mode != FWS_SIM_TEAR_TRUNC && tear_mode != FWS_SIM_TEAR_GARBAGE))
        return FWS_EINVAL;
    sim->cut_at = n;
    sim->tear = tear_bytes;
    sim->tear_mode = tear_mode;
    return 0;
}

int fws_sim_powered_off(const fws_sim *sim)
{
    return sim != NULL && sim->powered_off;
}

uint64_t fws_sim_ops(const fws_sim *sim)
{
    return sim != NULL ? sim->ops : 0;
}

int fws_sim_fail_op(fws_sim *sim, uint64_t n, int err, int persistent)
{
    if (sim == NULL || err >= 0 || n == 0)
        return FWS_EINVAL;
    sim->fault_at = n;
    sim->fault_err = err;
    sim->fault_persistent = persistent != 0;
    return 0;
}

void fws_sim_clear_faults(fws_sim *sim)
{
    if (sim == NULL)
        return;
    sim->fault_at = 0;
    sim->fault_err = 0;
    sim->fault_persistent = 0;
}

void fws_sim_set_capacity(fws_sim *sim, uint64_t bytes)
{
    if (sim != NULL)
        sim->capacity = bytes ? bytes : DEFAULT_CAPACITY;
}

uint64_t fws_sim_used(const fws_sim *sim)
{
    return sim != NULL ? sim->used : 0;
}

void fws_sim_get_stats(const fws_sim *sim, fws_sim_stats *out)
{
    if (out == NULL)
        return;
    if (sim == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = sim->st;
}

int64_t fws_sim_peek(const fws_sim *sim, const char *name, int durable, void *buf, size_t cap)
{
    if (sim == NULL || name == NULL || (buf == NULL && cap > 0))
        return FWS_EINVAL;
    int i = find_file(sim, name);
    if (i < 0)
        return FWS_ENOENT;
    const inode *ino = sim->files[i].ino;
    size_t view = durable ? ino->durable : ino->len;
    if (cap > view)
        cap = view;
    if (cap > 0)
        memcpy(buf, ino->data, cap);
    return (int64_t)view;
}

int fws_sim_file_count(const fws_sim *sim)
{
    return sim != NULL ? sim->nfiles : 0;
}

const char *fws_sim_file_name(const fws_sim *sim, int i)
{
    if (sim == NULL || i < 0 || i >= sim->nfiles)
        return NULL;
    return sim->files[i].name;
}

void fws_sim_set_op_hook(fws_sim *sim, fws_sim_op_fn fn, void *arg)
{
    if (sim == NULL)
        return;
    sim->op_hook = fn;
    sim->op_hook_arg = arg;
}

void fws_sim_advance(fws_sim *sim, uint32_t ms)
{
    if (sim != NULL)
        sim->w->mono += ms;
}

void fws_sim_set_wall_offset(fws_sim *sim, int64_t offset_ms)
{
    if (sim != NULL)
        sim->wall_offset = offset_ms;
}

void fws_sim_set_idle_hook(fws_sim *sim, fws_sim_idle_fn fn, void *arg)
{
    if (sim == NULL)
        return;
    sim->w->idle = fn;
    sim->w->idle_arg = arg;
}

uint64_t fws_sim_idle_calls(const fws_sim *sim)
{
    return sim != NULL ? sim->w->idle_calls : 0;
}

void fws_sim_net_set_default_link(fws_sim *sim, const fws_sim_link *link)
{
    if (sim == NULL)
        return;
    if (link != NULL)
        sim->w->default_link = *link;
    else
        memset(&sim->w->default_link, 0, sizeof(sim->w->default_link));
}

void fws_sim_net_set_next_link(fws_sim *sim, const fws_sim_link *link)
{
    if (sim == NULL)
        return;
    if (link != NULL) {
        sim->w->next_link = *link;
        sim->w->has_next = 1;
    } else {
        sim->w->has_next = 0;
    }
}

static conn *find_conn(const world *w, uint64_t id)
{
    for (conn *c = w->conns; c != NULL; c = c->next) {
        if (c->id == id)
            return c;
    }
    return NULL;
}

int fws_sim_net_set_link(fws_sim *sim, uint64_t conn_id, const fws_sim_link *link)
{
    if (sim == NULL)
        return FWS_EINVAL;
    conn *c = find_conn(sim->w, conn_id);
    if (c == NULL)
        return FWS_ENOENT;
    if (link != NULL)
        c->link = *link;
    else
        memset(&c->link, 0, sizeof(c->link));
    return 0;
}

int fws_sim_net_reset(fws_sim *sim, uint64_t conn_id)
{
    if (sim == NULL)
        return FWS_EINVAL;
    conn *c = find_conn(sim->w, conn_id);
    if (c == NULL)
        return FWS_ENOENT;
    c->reset = 1;
    return 0;
}

void fws_sim_net_refuse_next(fws_sim *sim, unsigned n)
{
    if (sim != NULL)
        sim->w->refuse = n;
}

void fws_sim_net_blackhole(fws_sim *sim, uint16_t port)
{
    if (sim != NULL)
        sim->w->blackhole = port;
}

uint64_t fws_sim_sock_conn_id(const fws_sim *sim, const fws_sock *sock)
{
    if (sim == NULL || sock == NULL || sock->kind != SOCK_STREAM_END || sock->c == NULL)
        return 0;
    return sock->c->id;
}

uint64_t fws_sim_net_last_conn(const fws_sim *sim)
{
    return sim != NULL ? sim->w->last_conn : 0;
}

int64_t fws_sim_net_sent(const fws_sim *sim, uint64_t conn_id, int dir)
{
    if (sim == NULL || (dir != FWS_SIM_C2S && dir != FWS_SIM_S2C))
        return -1;
    const conn *c = find_conn(sim->w, conn_id);
    return c != NULL ? (int64_t)c->dir[dir].sent : -1;
}
