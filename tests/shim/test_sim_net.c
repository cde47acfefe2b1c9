/* test_sim_net.c - the simulated network: connected pairs through the shim
 * ops, FIFO delivery, scripted disconnects/delays/drops/refusals, send
 * buffer caps, the idle hook, and several nodes sharing one world. */
#include "fws_sim.h"
#include "ss_test.h"

static fws_sim *mk(uint64_t seed, fws_sim *world, fws *s)
{
    fws_sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.seed = seed;
    cfg.world = world;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, s), 0);
    return sim;
}

typedef struct pair {
    fws_sock *l, *c, *srv;
    uint16_t port;
} pair;

static void connect_pair(fws *cs, fws *ss, pair *p)
{
    ASSERT_EQ(fws_listen(ss, "0.0.0.0", 0, &p->l, &p->port), 0);
    ASSERT_GE(p->port, 40000);
    fws_sock *none = NULL;
    ASSERT_EQ(fws_accept(ss, p->l, &none, NULL, 0), FWS_EAGAIN);
    ASSERT_EQ(fws_connect(cs, "daemon.example", p->port, 1000, &p->c), 0);
    fws_pollfd pf = { p->l, FWS_POLL_IN, 0 };
    ASSERT_EQ(fws_poll(ss, &pf, 1, 0), 1);
    char peer[32];
    ASSERT_EQ(fws_accept(ss, p->l, &p->srv, peer, sizeof(peer)), 0);
    ASSERT_EQ(strncmp(peer, "127.0.0.1:", 10), 0);
}

static void close_pair(fws *cs, fws *ss, pair *p)
{
    fws_sock_close(cs, p->c);
    fws_sock_close(ss, p->srv);
    fws_sock_close(ss, p->l);
}

/* Reads until n bytes arrived or an error; returns the error or 0. */
static int read_n(fws *s, fws_sock *k, uint8_t *buf, size_t n, size_t *got, uint32_t timeout)
{
    *got = 0;
    for (int i = 0; *got < n && i < 100000; i++) {
        int rc = fws_recv(s, k, buf + *got, n - *got, timeout);
        if (rc < 0)
            return rc;
        *got += (size_t)rc;
    }
    return 0;
}

TEST(pair_is_fifo_both_ways)
{
    fws s;
    fws_sim *sim = mk(1, NULL, &s);
    pair p;
    connect_pair(&s, &s, &p);
    ASSERT_EQ(fws_sim_sock_conn_id(sim, p.c), 1);
    ASSERT_EQ(fws_sim_sock_conn_id(sim, p.srv), 1);
    uint8_t out[5000], in[5000];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 13u + 1u);
    /* Uneven pieces in, uneven pieces out. */
    size_t off = 0;
    for (size_t k = 1; off < sizeof(out); k = k * 3 % 97 + 1) {
        size_t n = k < sizeof(out) - off ? k : sizeof(out) - off;
        ASSERT_EQ(fws_send(&s, p.c, out + off, n), (int)n);
        ASSERT_EQ(fws_send(&s, p.srv, out + off, n), (int)n);
        off += n;
    }
    ASSERT_EQ(fws_sim_net_sent(sim, 1, FWS_SIM_C2S), 5000);
    size_t got = 0;
    for (size_t k = 7; got < sizeof(in); k = k * 5 % 89 + 1) {
        size_t n = k < sizeof(in) - got ? k : sizeof(in) - got;
        int rc = fws_recv(&s, p.srv, in + got, n, 0);
        ASSERT_GT(rc, 0);
        got += (size_t)rc;
    }
    ASSERT_MEM_EQ(in, out, sizeof(out));
    ASSERT_EQ(read_n(&s, p.c, in, sizeof(in), &got, 0), 0);
    ASSERT_MEM_EQ(in, out, sizeof(out));
    ASSERT_EQ(fws_recv(&s, p.c, in, 1, 0), FWS_ETIMEDOUT);
    /* Orderly close: remaining bytes, then ECLOSED; sending to it fails. */
    ASSERT_EQ(fws_send(&s, p.c, "bye", 3), 3);
    fws_sock_close(&s, p.c);
    p.c = NULL;
    ASSERT_EQ(fws_recv(&s, p.srv, in, sizeof(in), 0), 3);
    ASSERT_EQ(fws_recv(&s, p.srv, in, sizeof(in), 100), FWS_ECLOSED);
    ASSERT_EQ(fws_send(&s, p.srv, "x", 1), FWS_ECLOSED);
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

TEST(connect_refused_without_listener_and_when_scripted)
{
    fws s;
    fws_sim *sim = mk(2, NULL, &s);
    fws_sock *c = NULL, *l = NULL;
    ASSERT_EQ(fws_connect(&s, "127.0.0.1", 40000, 1000, &c), FWS_ECONNREFUSED);
    uint16_t port = 0;
    ASSERT_EQ(fws_listen(&s, "127.0.0.1", 5555, &l, &port), 0);
    ASSERT_EQ(port, 5555);
    fws_sock *l2 = NULL;
    ASSERT_EQ(fws_listen(&s, "127.0.0.1", 5555, &l2, NULL), FWS_EADDR);
    fws_sim_net_refuse_next(sim, 2);
    ASSERT_EQ(fws_connect(&s, "x", 5555, 1000, &c), FWS_ECONNREFUSED);
    ASSERT_EQ(fws_connect(&s, "x", 5555, 1000, &c), FWS_ECONNREFUSED);
    ASSERT_EQ(fws_connect(&s, "x", 5555, 1000, &c), 0);
    fws_sock_close(&s, c);
    /* Closing a listener refuses later connects and resets unaccepted ones. */
    ASSERT_EQ(fws_connect(&s, "x", 5555, 1000, &c), 0);
    fws_sock_close(&s, l);
    uint8_t b[4];
    ASSERT_EQ(fws_recv(&s, c, b, sizeof(b), 10), FWS_ECONNRESET);
    fws_sock_close(&s, c);
    ASSERT_EQ(fws_connect(&s, "x", 5555, 1000, &c), FWS_ECONNREFUSED);
    ASSERT_EQ(fws_sim_net_last_conn(sim), 2);
    fws_sim_destroy(sim);
}

TEST(disconnect_after_k_bytes_for_every_k)
{
    enum { N = 300 };
    uint8_t msg[N], in[N + 1];
    for (size_t i = 0; i < N; i++)
        msg[i] = (uint8_t)(i ^ 0x5a);
    for (int dir = 0; dir < 2; dir++) {
        for (uint64_t k = 0; k <= N; k++) {
            fws s;
            fws_sim *sim = mk(3, NULL, &s);
            fws_sim_link link;
            memset(&link, 0, sizeof(link));
            link.cut[dir] = 1;
            link.cut_after[dir] = k;
            link.sndbuf[dir] = 64; /* several sends per message */
            fws_sim_net_set_next_link(sim, &link);
            pair p;
            connect_pair(&s, &s, &p);
            fws_sock *tx = dir == FWS_SIM_C2S ? p.c : p.srv;
            fws_sock *rx = dir == FWS_SIM_C2S ? p.srv : p.c;
            /* The sender pushes what it can; the receiver drains. */
            size_t sent = 0, got = 0;
            int tx_err = 0, rx_err = 0;
            for (int round = 0; round < 1000 && (!tx_err || !rx_err); round++) {
                if (!tx_err) {
                    int rc = sent < N ? fws_send(&s, tx, msg + sent, N - sent) : 0;
                    if (rc > 0)
                        sent += (size_t)rc;
                    else if (rc < 0 && rc != FWS_EAGAIN)
                        tx_err = rc;
                    else if (sent == N)
                        tx_err = 1; /* done */
                }
                if (!rx_err) {
                    int rc = fws_recv(&s, rx, in + got, N + 1 - got, 0);
                    if (rc > 0)
                        got += (size_t)rc;
                    else if (rc != FWS_ETIMEDOUT)
                        rx_err = rc;
                }
            }
            ASSERT_EQ(got, k);
            ASSERT_MEM_EQ(in, msg, (size_t)k);
            ASSERT_EQ(sent, k);
            if (k < N) {
                ASSERT_EQ(tx_err, FWS_ECONNRESET);
                ASSERT_EQ(rx_err, FWS_ECONNRESET);
            } else {
                /* Reaching the cut point exactly resets after the last byte. */
                ASSERT_EQ(rx_err, FWS_ECONNRESET);
            }
            /* The other direction is broken too. */
            ASSERT_EQ(fws_send(&s, rx, "x", 1), FWS_ECONNRESET);
            /* The next connection is a perfect link again. */
            fws_sock *c2 = NULL, *s2 = NULL;
            ASSERT_EQ(fws_connect(&s, "h", p.port, 100, &c2), 0);
            ASSERT_EQ(fws_accept(&s, p.l, &s2, NULL, 0), 0);
            ASSERT_EQ(fws_send_all(&s, c2, msg, N, 1000), 0);
            size_t g2 = 0;
            ASSERT_EQ(read_n(&s, s2, in, N, &g2, 100), 0);
            ASSERT_MEM_EQ(in, msg, N);
            fws_sock_close(&s, c2);
            fws_sock_close(&s, s2);
            close_pair(&s, &s, &p);
            fws_sim_destroy(sim);
        }
    }
}

TEST(delivery_delay_in_virtual_time)
{
    fws s;
    fws_sim *sim = mk(4, NULL, &s);
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.delay_ms[FWS_SIM_C2S] = 30;
    fws_sim_net_set_default_link(sim, &link);
    pair p;
    connect_pair(&s, &s, &p);
    int64_t t0 = fws_mono_ms(&s);
    ASSERT_EQ(fws_send(&s, p.c, "ping", 4), 4);
    uint8_t b[8];
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 0), FWS_ETIMEDOUT);
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 10), FWS_ETIMEDOUT);
    ASSERT_EQ(fws_mono_ms(&s), t0 + 10);
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 1000), 4);
    ASSERT_EQ(fws_mono_ms(&s), t0 + 30); /* woke at the delivery, not the deadline */
    ASSERT_MEM_EQ(b, "ping", 4);
    /* The other direction has no delay. */
    ASSERT_EQ(fws_send(&s, p.srv, "pong", 4), 4);
    ASSERT_EQ(fws_recv(&s, p.c, b, sizeof(b), 0), 4);
    /* Shrinking the delay mid-stream never reorders bytes. */
    ASSERT_EQ(fws_send(&s, p.c, "AB", 2), 2);
    link.delay_ms[FWS_SIM_C2S] = 0;
    ASSERT_EQ(fws_sim_net_set_link(sim, fws_sim_sock_conn_id(sim, p.c), &link), 0);
    ASSERT_EQ(fws_send(&s, p.c, "CD", 2), 2);
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 0), FWS_ETIMEDOUT);
    size_t got = 0;
    ASSERT_EQ(read_n(&s, p.srv, b, 4, &got, 100), 0);
    ASSERT_MEM_EQ(b, "ABCD", 4);
    ASSERT_EQ(fws_sim_net_set_link(sim, 99, &link), FWS_ENOENT);
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

TEST(drop_at_virtual_time_and_reset)
{
    fws s;
    fws_sim *sim = mk(5, NULL, &s);
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.drop = 1;
    link.drop_at_ms = fws_mono_ms(&s) + 50;
    fws_sim_net_set_next_link(sim, &link);
    pair p;
    connect_pair(&s, &s, &p);
    ASSERT_EQ(fws_send(&s, p.c, "x", 1), 1);
    uint8_t b[4];
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 0), 1);
    int64_t t0 = fws_mono_ms(&s);
    ASSERT_EQ(fws_recv(&s, p.srv, b, sizeof(b), 5000), FWS_ECONNRESET);
    ASSERT_EQ(fws_mono_ms(&s), t0 + 50);
    ASSERT_EQ(fws_send(&s, p.c, "x", 1), FWS_ECONNRESET);
    close_pair(&s, &s, &p);
    /* An explicit reset. */
    connect_pair(&s, &s, &p);
    ASSERT_EQ(fws_sim_net_reset(sim, fws_sim_sock_conn_id(sim, p.c)), 0);
    ASSERT_EQ(fws_recv(&s, p.c, b, sizeof(b), 0), FWS_ECONNRESET);
    fws_pollfd pf = { p.srv, FWS_POLL_IN, 0 };
    ASSERT_EQ(fws_poll(&s, &pf, 1, 0), 1);
    ASSERT_EQ(fws_sim_net_reset(sim, 12345), FWS_ENOENT);
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

TEST(send_buffer_cap_gives_partial_then_eagain)
{
    fws s;
    fws_sim *sim = mk(6, NULL, &s);
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.sndbuf[FWS_SIM_C2S] = 10;
    fws_sim_net_set_default_link(sim, &link);
    pair p;
    connect_pair(&s, &s, &p);
    uint8_t msg[25], b[25];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    ASSERT_EQ(fws_send(&s, p.c, msg, sizeof(msg)), 10);
    ASSERT_EQ(fws_send(&s, p.c, msg + 10, 15), FWS_EAGAIN);
    fws_pollfd pf = { p.c, FWS_POLL_OUT, 0 };
    ASSERT_EQ(fws_poll(&s, &pf, 1, 0), 0);
    ASSERT_EQ(fws_recv(&s, p.srv, b, 4, 0), 4);
    ASSERT_EQ(fws_poll(&s, &pf, 1, 0), 1);
    ASSERT_EQ(pf.revents, FWS_POLL_OUT);
    ASSERT_EQ(fws_send(&s, p.c, msg + 10, 15), 4);
    /* send_all with nobody reading times out in virtual time. */
    int64_t t0 = fws_mono_ms(&s);
    ASSERT_EQ(fws_send_all(&s, p.c, msg + 14, 11, 200), FWS_ETIMEDOUT);
    ASSERT_EQ(fws_mono_ms(&s), t0 + 200);
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

/* A tiny echo server stepped from the idle hook with timeout-0 calls. */
typedef struct echo_srv {
    fws *s;
    fws_sock *l;
    fws_sock *conn;
    int steps;
} echo_srv;

static void echo_step(void *arg)
{
    echo_srv *e = arg;
    e->steps++;
    if (e->conn == NULL) {
        if (fws_accept(e->s, e->l, &e->conn, NULL, 0) < 0)
            return;
    }
    uint8_t b[256];
    for (int i = 0; i < 64; i++) {
        int rc = fws_recv(e->s, e->conn, b, sizeof(b), 0);
        if (rc <= 0)
            return;
        int sent = fws_send(e->s, e->conn, b, (size_t)rc);
        ASSERT_EQ(sent, rc);
    }
}

TEST(idle_hook_lets_the_other_node_run)
{
    fws gs, ss;
    fws_sim *gw = mk(7, NULL, &gs);
    fws_sim *srv = mk(8, gw, &ss);
    echo_srv e = { &ss, NULL, NULL, 0 };
    uint16_t port = 0;
    ASSERT_EQ(fws_listen(&ss, "127.0.0.1", 0, &e.l, &port), 0);
    fws_sim_set_idle_hook(gw, echo_step, &e);
    fws_sock *c = NULL;
    ASSERT_EQ(fws_connect(&gs, "127.0.0.1", port, 1000, &c), 0);
    ASSERT_EQ(fws_send_all(&gs, c, "hello", 5, 1000), 0);
    int64_t t0 = fws_mono_ms(&gs);
    uint8_t b[16];
    /* Nothing there yet: the wait runs the hook, which echoes. */
    ASSERT_EQ(fws_recv(&gs, c, b, sizeof(b), 1000), 5);
    ASSERT_MEM_EQ(b, "hello", 5);
    ASSERT_EQ(fws_mono_ms(&gs), t0); /* no time had to pass */
    ASSERT_GE(fws_sim_idle_calls(gw), 1);
    ASSERT_EQ(e.steps, (int)fws_sim_idle_calls(srv)); /* one world, one count */
    /* With nothing to do, the hook runs and then the clock jumps. */
    uint64_t calls = fws_sim_idle_calls(gw);
    ASSERT_EQ(fws_recv(&gs, c, b, sizeof(b), 300), FWS_ETIMEDOUT);
    ASSERT_EQ(fws_mono_ms(&gs), t0 + 300);
    ASSERT_GT(fws_sim_idle_calls(gw), calls);
    /* Sleeping lets the server run too. */
    ASSERT_EQ(fws_send(&gs, c, "again", 5), 5);
    fws_sleep_ms(&gs, 10);
    ASSERT_EQ(fws_recv(&gs, c, b, sizeof(b), 0), 5);
    fws_sim_set_idle_hook(gw, NULL, NULL);
    fws_sock_close(&gs, c);
    fws_sock_close(&ss, e.conn);
    fws_sock_close(&ss, e.l);
    fws_sim_destroy(gw);
    fws_sim_destroy(srv);
}

TEST(power_cut_resets_the_nodes_connections_only)
{
    fws gs, ss;
    fws_sim *gw = mk(9, NULL, &gs);
    fws_sim *srv = mk(10, gw, &ss);
    pair p;
    connect_pair(&gs, &ss, &p);
    /* A socket must be used through its own node's shim. */
    ASSERT_EQ(fws_send(&ss, p.c, "x", 1), FWS_EINVAL);
    ASSERT_EQ(fws_send(&gs, p.c, "before", 6), 6);
    fws_sim_power_cut(gw);
    uint8_t b[16];
    ASSERT_EQ(fws_recv(&ss, p.srv, b, sizeof(b), 0), 6); /* already sent */
    ASSERT_EQ(fws_recv(&ss, p.srv, b, sizeof(b), 0), FWS_ECONNRESET);
    ASSERT_EQ(fws_send(&gs, p.c, "x", 1), FWS_EPOWER);
    ASSERT_EQ(fws_sim_sock_conn_id(gw, p.c), 0);
    fws_pollfd pf = { p.c, FWS_POLL_OUT, 0 };
    ASSERT_EQ(fws_poll(&gs, &pf, 1, 0), 1);
    /* The server's listener lives on: the rebooted gateway reconnects. */
    fws_sock *c2 = NULL, *s2 = NULL;
    ASSERT_EQ(fws_connect(&gs, "h", p.port, 100, &c2), 0);
    ASSERT_EQ(fws_accept(&ss, p.l, &s2, NULL, 0), 0);
    ASSERT_EQ(fws_send(&ss, s2, "hi", 2), 2);
    ASSERT_EQ(fws_recv(&gs, c2, b, sizeof(b), 0), 2);
    /* Power-cutting the server stops its listener. */
    fws_sim_power_cut(srv);
    fws_sock *c3 = NULL;
    ASSERT_EQ(fws_connect(&gs, "h", p.port, 100, &c3), FWS_ECONNREFUSED);
    ASSERT_EQ(fws_recv(&gs, c2, b, sizeof(b), 0), FWS_ECONNRESET);
    fws_sock_close(&gs, c2);
    fws_sock_close(&ss, s2);
    close_pair(&gs, &ss, &p);
    /* Destroying one node keeps the world for the other. */
    fws_sim_destroy(gw);
    fws_sock *l = NULL;
    ASSERT_EQ(fws_listen(&ss, "", 7000, &l, NULL), 0);
    fws_sim_destroy(srv); /* frees the unclosed listener */
}

TEST(power_cut_with_unaccepted_connections)
{
    fws gs, ss;
    fws_sim *gw = mk(12, NULL, &gs);
    fws_sim *srv = mk(13, gw, &ss);
    fws_sock *l1 = NULL, *l2 = NULL, *c[4] = { NULL };
    uint16_t p1 = 0, p2 = 0;
    ASSERT_EQ(fws_listen(&ss, "", 0, &l1, &p1), 0);
    ASSERT_EQ(fws_connect(&gs, "h", p1, 100, &c[0]), 0);
    ASSERT_EQ(fws_listen(&ss, "", 0, &l2, &p2), 0);
    ASSERT_NE(p1, p2);
    ASSERT_EQ(fws_connect(&gs, "h", p2, 100, &c[1]), 0);
    ASSERT_EQ(fws_connect(&gs, "h", p1, 100, &c[2]), 0);
    ASSERT_EQ(fws_connect(&gs, "h", p2, 100, &c[3]), 0);
    fws_sim_reboot(srv); /* a crash drops sockets just like a power cut */
    uint8_t b[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(fws_recv(&gs, c[i], b, sizeof(b), 0), FWS_ECONNRESET);
        fws_sock_close(&gs, c[i]);
    }
    fws_sock *a = NULL;
    ASSERT_EQ(fws_accept(&ss, l1, &a, NULL, 0), FWS_EPOWER);
    fws_sock_close(&ss, l1);                          /* stale, still safe to close */
    ASSERT_EQ(fws_listen(&ss, "", p2, &l1, NULL), 0); /* the port is free again */
    fws_sim_destroy(srv); /* frees the unclosed l2 and the new listener */
    fws_sim_destroy(gw);
}

TEST(blackhole_connect_waits_its_timeout)
{
    fws s;
    fws_sim *sim = mk(11, NULL, &s);
    fws_sim_net_blackhole(sim, 4433);
    fws_sock *c = NULL;
    int64_t t0 = fws_mono_ms(&s);
    ASSERT_EQ(fws_connect(&s, "daemon", 4433, 750, &c), FWS_ETIMEDOUT);
    ASSERT_EQ(fws_mono_ms(&s), t0 + 750);
    ASSERT(c == NULL);
    fws_sim_destroy(sim);
}

/* Reads everything pending on its socket, from the idle hook. */
typedef struct drain {
    fws *s;
    fws_sock *k;
    size_t got;
    int depth, max_depth;
} drain;

static void drain_step(void *arg)
{
    drain *d = arg;
    d->depth++;
    if (d->depth > d->max_depth)
        d->max_depth = d->depth;
    uint8_t b[7];
    /* A wait inside the hook must not run the hook again. */
    int rc = fws_recv(d->s, d->k, b, sizeof(b), 5);
    if (rc > 0)
        d->got += (size_t)rc;
    d->depth--;
}

TEST(send_all_progresses_while_the_peer_reads_in_the_hook)
{
    fws s;
    fws_sim *sim = mk(14, NULL, &s);
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.sndbuf[FWS_SIM_C2S] = 16;
    fws_sim_net_set_default_link(sim, &link);
    pair p;
    connect_pair(&s, &s, &p);
    drain d = { &s, p.srv, 0, 0, 0 };
    fws_sim_set_idle_hook(sim, drain_step, &d);
    uint8_t msg[1000];
    memset(msg, 'm', sizeof(msg));
    ASSERT_EQ(fws_send_all(&s, p.c, msg, sizeof(msg), 100000), 0);
    ASSERT_EQ(d.max_depth, 1);
    ASSERT_GE(d.got, sizeof(msg) - 16);
    fws_sim_set_idle_hook(sim, NULL, NULL);
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

typedef struct sink {
    int lines;
    char last[64];
} sink;

static void sink_fn(void *arg, int level, const char *line)
{
    sink *k = arg;
    ASSERT_LE(level, FWS_LOG_INFO);
    k->lines++;
    snprintf(k->last, sizeof(k->last), "%s", line);
}

TEST(log_goes_to_the_sink_or_is_counted)
{
    sink k = { 0, "" };
    fws_sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.log_level = FWS_LOG_INFO;
    cfg.log_sink = sink_fn;
    cfg.log_arg = &k;
    fws s;
    fws_sim *sim = NULL;
    ASSERT_EQ(fws_sim_new(&cfg, &sim, &s), 0);
    fws_log(&s, FWS_LOG_INFO, "event=%s n=%d", "start", 1);
    fws_log(&s, FWS_LOG_DEBUG, "dropped");
    ASSERT_EQ(k.lines, 1);
    ASSERT_STR_EQ(k.last, "event=start n=1");
    fws_sim_stats st;
    fws_sim_get_stats(sim, &st);
    ASSERT_EQ(st.log_lines, 1);
    fws_sim_destroy(sim);
    /* Quiet by default: counted, not printed. */
    memset(&cfg, 0, sizeof(cfg));
    ASSERT_EQ(fws_sim_new(&cfg, &sim, &s), 0);
    fws_log(&s, FWS_LOG_ERROR, "e");
    fws_log(&s, FWS_LOG_WARN, "w");
    fws_sim_get_stats(sim, &st);
    ASSERT_EQ(st.log_lines, 1);
    fws_sim_destroy(sim);
}

/* The same seed and script give the same byte stream and timings. */
static void net_transcript(uint64_t seed, uint8_t *out, size_t *n)
{
    fws s;
    fws_sim *sim = mk(seed, NULL, &s);
    fws_sim_link link;
    memset(&link, 0, sizeof(link));
    link.delay_ms[0] = 7;
    link.sndbuf[0] = 100;
    fws_sim_net_set_default_link(sim, &link);
    pair p;
    connect_pair(&s, &s, &p);
    *n = 0;
    for (int i = 0; i < 20; i++) {
        uint8_t r[40];
        ASSERT_EQ(fws_entropy(&s, r, sizeof(r)), 0);
        ASSERT_EQ(fws_send_all(&s, p.c, r, (size_t)(r[0] % 40), 1000), 0);
        int rc = fws_recv(&s, p.srv, out + *n, 64, 20);
        if (rc > 0)
            *n += (size_t)rc;
        int64_t t = fws_mono_ms(&s);
        memcpy(out + *n, &t, sizeof(t));
        *n += sizeof(t);
    }
    close_pair(&s, &s, &p);
    fws_sim_destroy(sim);
}

TEST(network_runs_are_deterministic)
{
    static uint8_t a[4096], b[4096], c[4096];
    size_t na, nb, nc;
    net_transcript(42, a, &na);
    net_transcript(42, b, &nb);
    net_transcript(43, c, &nc);
    ASSERT_EQ(na, nb);
    ASSERT_MEM_EQ(a, b, na);
    ASSERT(na != nc || memcmp(a, c, na) != 0);
}

#define SIM_NET_TESTS                                                   \
    SS_TEST_ENTRY(pair_is_fifo_both_ways)                               \
    SS_TEST_ENTRY(connect_refused_without_listener_and_when_scripted)   \
    SS_TEST_ENTRY(disconnect_after_k_bytes_for_every_k)                 \
    SS_TEST_ENTRY(delivery_delay_in_virtual_time)                       \
    SS_TEST_ENTRY(drop_at_virtual_time_and_reset)                       \
    SS_TEST_ENTRY(send_buffer_cap_gives_partial_then_eagain)            \
    SS_TEST_ENTRY(idle_hook_lets_the_other_node_run)                    \
    SS_TEST_ENTRY(power_cut_resets_the_nodes_connections_only)          \
    SS_TEST_ENTRY(power_cut_with_unaccepted_connections)                \
    SS_TEST_ENTRY(blackhole_connect_waits_its_timeout)                  \
    SS_TEST_ENTRY(send_all_progresses_while_the_peer_reads_in_the_hook) \
    SS_TEST_ENTRY(log_goes_to_the_sink_or_is_counted)                   \
    SS_TEST_ENTRY(network_runs_are_deterministic)

SS_TEST_MAIN(SIM_NET_TESTS)
