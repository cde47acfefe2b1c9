/* mqtt_pub.c - the publishing half of the Mosquitto side-by-side
 * (e2e_vs_mosquitto_bridge): C concurrent clients, each on its own TLS
 * connection with a client certificate, publish M payloads of ~400 bytes at
 * QoS 1 to the edge broker with at most `inflight` unacknowledged messages
 * each. Every payload carries its publisher, sequence number and send time
 * (CLOCK_MONOTONIC), so mqtt_sub on the central broker can measure the wall
 * time from the first publish to the last receipt and check that every
 * record arrived exactly once or more.
 *
 * Design note: each client runs its own network loop in its own thread
 * (mosquitto_loop, not mosquitto_loop_start), so publishing and reading
 * PUBACKs happen on one thread and the window needs no lock. All clients
 * connect first and then start together at a barrier. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench_util.h"

#define MAX_CLIENTS 1000
#define PAYLOAD_MAX 65536

typedef struct options {
    const char *host, *ca, *cert, *key, *topic, *id_prefix;
    uint64_t port, clients, count, payload, inflight, qos, timeout_s;
} options;

typedef struct client {
    const options *o;
    pthread_barrier_t *start;
    pthread_mutex_t *connect_lock;
    unsigned idx;
    struct mosquitto *mosq;
    int connected; /* 1 after CONNACK accepted, -1 refused */
    uint64_t sent, acked;
    uint64_t first_ns, last_ack_ns;
    int failed;
    char error[200];
} client;

static void usage(FILE *f)
{
    fprintf(f, "usage: mqtt_pub --host H --port P --ca CA --cert CERT --key KEY\n"
               "                [--clients C (1)] [--count M per client (100000)]\n"
               "                [--payload BYTES (400)] [--inflight N (100)] [--qos 0|1|2 (1)]\n"
               "                [--topic PREFIX (bench/records)] [--id-prefix ID (pub)]\n"
               "                [--timeout-s S (300)]\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    /* Every option takes a value (--help exits), hence the step of 2. */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **str = NULL;
        uint64_t *num = NULL, lo = 0, hi = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--host") == 0) {
            str = &o->host;
        } else if (strcmp(a, "--ca") == 0) {
            str = &o->ca;
        } else if (strcmp(a, "--cert") == 0) {
            str = &o->cert;
        } else if (strcmp(a, "--key") == 0) {
            str = &o->key;
        } else if (strcmp(a, "--topic") == 0) {
            str = &o->topic;
        } else if (strcmp(a, "--id-prefix") == 0) {
            str = &o->id_prefix;
        } else if (strcmp(a, "--port") == 0) {
            num = &o->port, lo = 1, hi = 65535;
        } else if (strcmp(a, "--clients") == 0) {
            num = &o->clients, lo = 1, hi = MAX_CLIENTS;
        } else if (strcmp(a, "--count") == 0) {
            num = &o->count, lo = 1, hi = 100000000;
        } else if (strcmp(a, "--payload") == 0) {
            num = &o->payload, lo = 96, hi = PAYLOAD_MAX;
        } else if (strcmp(a, "--inflight") == 0) {
            num = &o->inflight, lo = 1, hi = 65535;
        } else if (strcmp(a, "--qos") == 0) {
            num = &o->qos, lo = 0, hi = 2;
        } else if (strcmp(a, "--timeout-s") == 0) {
            num = &o->timeout_s, lo = 1, hi = 86400;
        } else {
            fprintf(stderr, "unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        }
        if (str != NULL) {
            if (v == NULL || *v == '\0') {
                fprintf(stderr, "%s: expected a value\n", a);
                return -1;
            }
            *str = v;
        } else if (bench_parse_u64(a, v, lo, hi, num) != 0) {
            return -1;
        }
    }
    if (o->host == NULL || o->port == 0 || o->ca == NULL || o->cert == NULL || o->key == NULL) {
        fprintf(stderr, "--host, --port, --ca, --cert and --key are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static void on_connect(struct mosquitto *mosq, void *ud, int rc)
{
    (void)mosq;
    client *c = ud;
    c->connected = rc == 0 ? 1 : -1;
    if (rc != 0)
        snprintf(c->error, sizeof c->error, "CONNACK refused: %s", mosquitto_connack_string(rc));
}

static void on_publish(struct mosquitto *mosq, void *ud, int mid)
{
    (void)mosq;
    (void)mid;
    client *c = ud;
    c->acked++;
    c->last_ack_ns = bench_now_ns();
}

/* The record: a JSON object whose first members are what mqtt_sub parses
 * (publisher, sequence, send time), padded to exactly o->payload bytes with
 * an incident-like description. */
static int make_payload(char *buf, const options *o, unsigned idx, uint64_t seq, uint64_t t_ns)
{
    int head = snprintf(buf, o->payload + 1,
                        "{\"pub\":%u,\"seq\":%llu,\"t_ns\":%llu,\"collection\":\"incident\","
                        "\"key\":\"%s-%05u-%016llx\",\"fields\":{\"category\":\"intrusion\","
                        "\"severity\":3,\"status\":\"open\",\"description\":\"",
                        idx, (unsigned long long)seq, (unsigned long long)t_ns, o->id_prefix, idx,
                        (unsigned long long)seq);
    if (head < 0 || (size_t)head + 3 > o->payload)
        return -1;
    size_t pos = (size_t)head;
    for (; pos < o->payload - 3; pos++)
        buf[pos] = (char)('a' + (char)((pos * 7 + seq) % 26));
    memcpy(buf + pos, "\"}}", 3);
    return 0;
}

static void fail(client *c, const char *what, int rc)
{
    if (!c->failed)
        snprintf(c->error, sizeof c->error, "%s: %s", what, mosquitto_strerror(rc));
    c->failed = 1;
}

static void *client_main(void *arg)
{
    client *c = arg;
    const options *o = c->o;
    char *buf = malloc(o->payload + 1);
    uint64_t deadline = 0;
    int rc;
    if (buf == NULL) {
        snprintf(c->error, sizeof c->error, "out of memory");
        c->failed = 1;
        pthread_barrier_wait(c->start);
        return NULL;
    }
    /* libmosquitto 2.0 sets up a process-wide OpenSSL UI method inside
     * connect without a lock: concurrent connects race on it (and leak it),
     * so connects take turns. Only setup is serialised, not the timed run. */
    pthread_mutex_lock(c->connect_lock);
    rc = mosquitto_connect(c->mosq, o->host, (int)o->port, 60);
    pthread_mutex_unlock(c->connect_lock);
    if (rc != MOSQ_ERR_SUCCESS) {
        fail(c, "connect", rc);
    } else {
        deadline = bench_now_ns() + 10000000000ull;
        while (c->connected == 0 && bench_now_ns() < deadline) {
            rc = mosquitto_loop(c->mosq, 100, 1);
            if (rc != MOSQ_ERR_SUCCESS) {
                fail(c, "waiting for CONNACK", rc);
                break;
            }
        }
        if (c->connected != 1 && !c->failed) {
            if (c->connected == 0)
                snprintf(c->error, sizeof c->error, "no CONNACK within 10 s");
            c->failed = 1;
        }
    }
    /* Everyone waits here, failed or not, so the barrier cannot deadlock. */
    pthread_barrier_wait(c->start);
    if (c->failed)
        goto out;

    deadline = bench_now_ns() + o->timeout_s * 1000000000ull;
    while (c->acked < o->count || (o->qos == 0 && c->sent < o->count)) {
        while (c->sent < o->count && (o->qos == 0 || c->sent - c->acked < o->inflight)) {
            uint64_t now = bench_now_ns();
            if (c->sent == 0)
                c->first_ns = now;
            if (make_payload(buf, o, c->idx, c->sent, now) != 0) {
                snprintf(c->error, sizeof c->error, "--payload too small");
                c->failed = 1;
                goto out;
            }
            rc = mosquitto_publish(c->mosq, NULL, o->topic, (int)o->payload, buf, (int)o->qos,
                                   false);
            if (rc != MOSQ_ERR_SUCCESS) {
                fail(c, "publish", rc);
                goto out;
            }
            c->sent++;
            if (o->qos == 0)
                break; /* let the loop write */
        }
        rc = mosquitto_loop(c->mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            fail(c, "network loop", rc);
            goto out;
        }
        if (bench_now_ns() > deadline) {
            snprintf(c->error, sizeof c->error, "timeout: %llu of %llu acknowledged",
                     (unsigned long long)c->acked, (unsigned long long)o->count);
            c->failed = 1;
            goto out;
        }
    }
    if (o->qos == 0)
        c->last_ack_ns = bench_now_ns();
    mosquitto_disconnect(c->mosq);
out:
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    options o = { .clients = 1,
                  .count = 100000,
                  .payload = 400,
                  .inflight = 100,
                  .qos = 1,
                  .timeout_s = 300,
                  .topic = "bench/records",
                  .id_prefix = "pub" };
    if (parse_args(argc, argv, &o) != 0)
        return 2;

    int ret = 1;
    uint64_t nthreads = 0;
    pthread_barrier_t start;
    pthread_mutex_t connect_lock = PTHREAD_MUTEX_INITIALIZER;
    client *cs = calloc(o.clients, sizeof *cs);
    pthread_t *tids = calloc(o.clients, sizeof *tids);
    mosquitto_lib_init();
    if (cs == NULL || tids == NULL ||
        pthread_barrier_init(&start, NULL, (unsigned)o.clients + 1) != 0) {
        fprintf(stderr, "mqtt_pub: setup failed\n");
        goto out;
    }
    for (uint64_t i = 0; i < o.clients; i++) {
        client *c = &cs[i];
        char id[64];
        snprintf(id, sizeof id, "%s-%05llu", o.id_prefix, (unsigned long long)i);
        c->o = &o;
        c->start = &start;
        c->connect_lock = &connect_lock;
        c->idx = (unsigned)i;
        c->mosq = mosquitto_new(id, true, c);
        if (c->mosq == NULL) {
            fprintf(stderr, "mqtt_pub: mosquitto_new failed\n");
            goto out_threads;
        }
        mosquitto_connect_callback_set(c->mosq, on_connect);
        mosquitto_publish_callback_set(c->mosq, on_publish);
        int rc = mosquitto_tls_set(c->mosq, o.ca, NULL, o.cert, o.key, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "mqtt_pub: TLS files (--ca %s --cert %s --key %s): %s\n", o.ca, o.cert,
                    o.key, mosquitto_strerror(rc));
            goto out_threads;
        }
        rc = mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, (int)o.inflight);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "mqtt_pub: --inflight: %s\n", mosquitto_strerror(rc));
            goto out_threads;
        }
    }
    for (; nthreads < o.clients; nthreads++) {
        if (pthread_create(&tids[nthreads], NULL, client_main, &cs[nthreads]) != 0) {
            fprintf(stderr, "mqtt_pub: cannot start client thread %llu\n",
                    (unsigned long long)nthreads);
            break;
        }
    }
    if (nthreads < o.clients) {
        /* The barrier counts every client: with one missing nobody starts,
         * so give up the process rather than leave threads blocked. */
        exit(1);
    }
    pthread_barrier_wait(&start);

out_threads:
    for (uint64_t i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    if (nthreads == o.clients) {
        uint64_t acked = 0, first = UINT64_MAX, last = 0;
        int failed = 0;
        for (uint64_t i = 0; i < o.clients; i++) {
            acked += cs[i].acked;
            if (cs[i].failed) {
                fprintf(stderr, "mqtt_pub: client %llu: %s\n", (unsigned long long)i, cs[i].error);
                failed = 1;
            }
            if (cs[i].first_ns != 0 && cs[i].first_ns < first)
                first = cs[i].first_ns;
            if (cs[i].last_ack_ns > last)
                last = cs[i].last_ack_ns;
        }
        if (!failed && last > first) {
            double secs = (double)(last - first) / 1e9;
            printf("mqtt_pub_acked_per_s=%.0f acked=%llu clients=%llu seconds=%.3f\n",
                   (double)acked / secs, (unsigned long long)acked, (unsigned long long)o.clients,
                   secs);
            ret = 0;
        }
    }
    for (uint64_t i = 0; i < o.clients; i++)
        mosquitto_destroy(cs[i].mosq);
    pthread_barrier_destroy(&start);
out:
    mosquitto_lib_cleanup();
    free(cs);
    free(tids);
    return ret;
}
