/* ss_test.h - a tiny test harness in the manner of libuv's test/task.h:
 * typed asserts that print both values, and a registry of named tests. Each
 * test binary runs every test (or the one named on its command line); CTest
 * gives each binary its own process and timeout. */
#ifndef SS_TEST_H
#define SS_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SS_TEST_FAIL(...)                               \
    do {                                                \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                   \
        fprintf(stderr, "\n");                          \
        abort();                                        \
    } while (0)

#define ASSERT(c)                                     \
    do {                                              \
        if (!(c))                                     \
            SS_TEST_FAIL("assertion failed: %s", #c); \
    } while (0)

#define ASSERT_INT_OP(a, op, b)                                                \
    do {                                                                       \
        long long ss__a = (long long)(a), ss__b = (long long)(b);              \
        if (!(ss__a op ss__b))                                                 \
            SS_TEST_FAIL("%s %s %s: %lld vs %lld", #a, #op, #b, ss__a, ss__b); \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)

#define ASSERT_U64_EQ(a, b)                                                          \
    do {                                                                             \
        uint64_t ss__a = (uint64_t)(a), ss__b = (uint64_t)(b);                       \
        if (ss__a != ss__b)                                                          \
            SS_TEST_FAIL("%s == %s: %" PRIu64 " vs %" PRIu64, #a, #b, ss__a, ss__b); \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                              \
    do {                                                                                 \
        const char *ss__a = (a), *ss__b = (b);                                           \
        if (!ss__a || !ss__b || strcmp(ss__a, ss__b) != 0)                               \
            SS_TEST_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, ss__a ? ss__a : "(null)", \
                         ss__b ? ss__b : "(null)");                                      \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                        \
    do {                                                                              \
        if (memcmp((a), (b), (n)) != 0)                                               \
            SS_TEST_FAIL("memory %s == %s differs (%zu bytes)", #a, #b, (size_t)(n)); \
    } while (0)

typedef struct ss_test_case {
    const char *name;
    void (*fn)(void);
} ss_test_case;

/* Usage: define TEST(name) functions, list them with SS_TEST_LIST, then
 * SS_TEST_MAIN(). `prog` runs all; `prog name` runs one; `prog --list`. */
#define TEST(name)          static void test_##name(void)
#define SS_TEST_ENTRY(name) { #name, test_##name },

#define SS_TEST_MAIN(list)                                                \
    int main(int argc, char **argv)                                       \
    {                                                                     \
        static const ss_test_case ss__cases[] = { list{ NULL, NULL } };   \
        int ss__ran = 0;                                                  \
        for (const ss_test_case *t = ss__cases; t->name; t++) {           \
            if (argc > 1 && strcmp(argv[1], "--list") == 0) {             \
                printf("%s\n", t->name);                                  \
                continue;                                                 \
            }                                                             \
            if (argc > 1 && strcmp(argv[1], t->name) != 0)                \
                continue;                                                 \
            fprintf(stderr, "[ RUN  ] %s\n", t->name);                    \
            t->fn();                                                      \
            fprintf(stderr, "[  OK  ] %s\n", t->name);                    \
            ss__ran++;                                                    \
        }                                                                 \
        if (argc > 1 && strcmp(argv[1], "--list") != 0 && ss__ran == 0) { \
            fprintf(stderr, "no test named %s\n", argv[1]);               \
            return 2;                                                     \
        }                                                                 \
        return 0;                                                         \
    }

#endif
