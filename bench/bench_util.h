/* bench_util.h - small helpers shared by the bench/ programs (clock, option
 * parsing); header-only so each benchmark stays one self-contained program. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC is one clock for every process on the machine, so a
 * publisher and a subscriber in different processes can compare stamps. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Parses a decimal unsigned integer within [min, max]; 0 or -1 with a message
 * naming the option on stderr. */
static inline int bench_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
                                  uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-') {
        fprintf(stderr, "%s: expected a number\n", opt);
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        fprintf(stderr, "%s: '%s' is not a number\n", opt, s);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "%s: %llu is out of range [%llu, %llu]\n", opt, v, (unsigned long long)min,
                (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* splitmix64: a deterministic generator, so a run with the same seed mints
 * the same keys and payloads. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

#endif
