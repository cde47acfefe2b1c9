/* mqtt_sub.c - the receiving half of the Mosquitto side-by-side: subscribes
 * (QoS 1, TLS client certificate) on the central broker, counts the distinct
 * records mqtt_pub sent through the edge broker's bridge until all have
 * arrived, and prints mosquitto_bridge_records_per_s, measured from the
 * earliest send time carried in any payload to the last new receipt.
 *
 * It also serves the bench script's readiness checks: it writes "subscribed"
 * to --ready-file once the subscription is granted, and "probe" once a
 * message on <topic>/probe has come through the bridge, so the timed run
 * starts only when the whole path is up. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench_util.h"

typedef struct options {
    const char *host, *ca, *cert, *key, *topic, *ready_file;
    uint64_t port, publishers, count, timeout_s;
} options;

typedef struct sub {
    const options *o;
    char probe_topic[256];
    int connected, subscribed, probe_seen;
    uint8_t *seen; /* one byte per (publisher, seq) */
    uint64_t distinct, duplicates, invalid;
    uint64_t first_send_ns, last_recv_ns;
    uint64_t last_progress_ns;
} sub;

static void usage(FILE *f)
{
    fprintf(f, "usage: mqtt_sub --host H --port P --ca CA --cert CERT --key KEY\n"
               "                --publishers C --count M   (records expected: C * M)\n"
               "                [--topic PREFIX (bench)] [--ready-file PATH]\n"
               "                [--timeout-s S: give up after S seconds without progress (60)]\n");
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
        } else if (strcmp(a, "--ready-file") == 0) {
            str = &o->ready_file;
        } else if (strcmp(a, "--port") == 0) {
            num = &o->port, lo = 1, hi = 65535;
        } else if (strcmp(a, "--publishers") == 0) {
            num = &o->publishers, lo = 1, hi = 100000;
        } else if (strcmp(a, "--count") == 0) {
            num = &o->count, lo = 1, hi = 100000000;
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
    if (o->host == NULL || o->port == 0 || o->ca == NULL || o->cert == NULL || o->key == NULL ||
        o->publishers == 0 || o->count == 0) {
        fprintf(stderr, "--host, --port, --ca, --cert, --key, --publishers and --count are "
                        "required\n");
        usage(stderr);
        return -1;
    }
    if (o->publishers * o->count > 1000000000ull) {
        fprintf(stderr, "--publishers * --count is too large\n");
        return -1;
    }
    return 0;
}

static void mark_ready(const sub *s, const char *what)
{
    if (s->o->ready_file == NULL)
        return;
    FILE *f = fopen(s->o->ready_file, "a");
    if (f == NULL) {
        perror("mqtt_sub: ready file");
        return;
    }
    fprintf(f, "%s\n", what);
    fclose(f);
}

/* Reads the unsigned number after `"name":` in the payload's head. */
static int json_u64(const char *p, size_t len, const char *name, uint64_t *out)
{
    char pat[32];
    int n = snprintf(pat, sizeof pat, "\"%s\":", name);
    if (n < 0 || (size_t)n >= sizeof pat)
        return -1;
    size_t scan = len < 128 ? len : 128;
    for (size_t i = 0; i + (size_t)n < scan; i++) {
        if (memcmp(p + i, pat, (size_t)n) != 0)
            continue;
        uint64_t v = 0;
        size_t j = i + (size_t)n;
        if (j >= len || p[j] < '0' || p[j] > '9')
            return -1;
        for (; j < len && p[j] >= '0' && p[j] <= '9'; j++) {
            if (v > (UINT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (uint64_t)(p[j] - '0');
        }
        *out = v;
        return 0;
    }
    return -1;
}

static void on_connect(struct mosquitto *mosq, void *ud, int rc)
{
    sub *s = ud;
    if (rc != 0) {
        fprintf(stderr, "mqtt_sub: CONNACK refused: %s\n", mosquitto_connack_string(rc));
        s->connected = -1;
        return;
    }
    s->connected = 1;
    char filter[256];
    snprintf(filter, sizeof filter, "%s/#", s->o->topic);
    int r = mosquitto_subscribe(mosq, NULL, filter, 1);
    if (r != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt_sub: subscribe: %s\n", mosquitto_strerror(r));
        s->connected = -1;
    }
}

static void on_subscribe(struct mosquitto *mosq, void *ud, int mid, int n, const int *granted)
{
    (void)mosq;
    (void)mid;
    sub *s = ud;
    if (n < 1 || granted[0] != 1) {
        fprintf(stderr, "mqtt_sub: subscription not granted at QoS 1 (got %d)\n",
                n < 1 ? -1 : granted[0]);
        s->connected = -1;
        return;
    }
    s->subscribed = 1;
    mark_ready(s, "subscribed");
}

static void on_message(struct mosquitto *mosq, void *ud, const struct mosquitto_message *m)
{
    (void)mosq;
    sub *s = ud;
    uint64_t now = bench_now_ns();
    if (strcmp(m->topic, s->probe_topic) == 0) {
        if (!s->probe_seen) {
            s->probe_seen = 1;
            mark_ready(s, "probe");
        }
        return;
    }
    uint64_t pub = 0, seq = 0, t = 0;
    const char *p = m->payload;
    size_t len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    if (p == NULL || json_u64(p, len, "pub", &pub) != 0 || json_u64(p, len, "seq", &seq) != 0 ||
        json_u64(p, len, "t_ns", &t) != 0 || pub >= s->o->publishers || seq >= s->o->count) {
        s->invalid++;
        return;
    }
    uint64_t slot = pub * s->o->count + seq;
    if (s->seen[slot]) {
        s->duplicates++; /* QoS 1 is at-least-once: allowed, but reported */
        return;
    }
    s->seen[slot] = 1;
    s->distinct++;
    if (s->first_send_ns == 0 || t < s->first_send_ns)
        s->first_send_ns = t;
    s->last_recv_ns = now;
    s->last_progress_ns = now;
}

int main(int argc, char **argv)
{
    options o = { .topic = "bench", .timeout_s = 60 };
    if (parse_args(argc, argv, &o) != 0)
        return 2;

    int ret = 1;
    sub s;
    memset(&s, 0, sizeof s);
    s.o = &o;
    snprintf(s.probe_topic, sizeof s.probe_topic, "%s/probe", o.topic);
    uint64_t expect = o.publishers * o.count;
    s.seen = calloc(expect, 1);
    mosquitto_lib_init();
    struct mosquitto *mosq = mosquitto_new("bench-sub", true, &s);
    if (s.seen == NULL || mosq == NULL) {
        fprintf(stderr, "mqtt_sub: setup failed\n");
        goto out;
    }
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_subscribe_callback_set(mosq, on_subscribe);
    mosquitto_message_callback_set(mosq, on_message);
    int rc = mosquitto_tls_set(mosq, o.ca, NULL, o.cert, o.key, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt_sub: TLS files (--ca %s --cert %s --key %s): %s\n", o.ca, o.cert,
                o.key, mosquitto_strerror(rc));
        goto out;
    }
    rc = mosquitto_connect(mosq, o.host, (int)o.port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt_sub: connect %s:%llu: %s\n", o.host, (unsigned long long)o.port,
                mosquitto_strerror(rc));
        goto out;
    }
    s.last_progress_ns = bench_now_ns();
    while (s.distinct < expect) {
        rc = mosquitto_loop(mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "mqtt_sub: network loop: %s\n", mosquitto_strerror(rc));
            break;
        }
        if (s.connected < 0)
            break;
        /* Waiting for the publisher to start counts as no progress too: the
         * script starts it within seconds of the probe. */
        if (bench_now_ns() - s.last_progress_ns > o.timeout_s * 1000000000ull) {
            fprintf(stderr, "mqtt_sub: no new record for %llu s\n",
                    (unsigned long long)o.timeout_s);
            break;
        }
    }
    if (s.distinct == expect && s.last_recv_ns > s.first_send_ns) {
        double secs = (double)(s.last_recv_ns - s.first_send_ns) / 1e9;
        printf("mosquitto_bridge_records_per_s=%.0f records=%llu duplicates=%llu invalid=%llu "
               "publishers=%llu seconds=%.3f\n",
               (double)expect / secs, (unsigned long long)expect, (unsigned long long)s.duplicates,
               (unsigned long long)s.invalid, (unsigned long long)o.publishers, secs);
        ret = s.invalid == 0 ? 0 : 1;
    } else {
        fprintf(stderr, "mqtt_sub: %llu of %llu records arrived (%llu duplicates, %llu invalid)\n",
                (unsigned long long)s.distinct, (unsigned long long)expect,
                (unsigned long long)s.duplicates, (unsigned long long)s.invalid);
    }
    mosquitto_disconnect(mosq);
out:
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    free(s.seen);
    return ret;
}
