/*
 * testutil.h — minimal test helpers shared by tests/test_*.c.
 *
 *     TEST_CHECK(x == 3);                         // records a failure, continues
 *     TEST_CHECK_MSG(ok, "tensor %s", name);
 *     return test_finish("test_foo");             // prints "N passed, M failed", exit code
 *
 * Data paths: test_data_path("xlstm-tiny/config.json") -> $GGX_TEST_DATA/xlstm-tiny/config.json.
 * A test that cannot run here (no GPU) returns TEST_SKIP (77).
 */
#ifndef GGX_TESTUTIL_H
#define GGX_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_SKIP 77

static int g_test_pass = 0, g_test_fail = 0;

#define TEST_CHECK(cond) TEST_CHECK_MSG(cond, "%s", #cond)
#define TEST_CHECK_MSG(cond, ...)                                                              \
    do {                                                                                       \
        if (cond) {                                                                            \
            g_test_pass++;                                                                     \
        } else {                                                                               \
            g_test_fail++;                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

static inline const char *test_data_path(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    const char *root = getenv("GGX_TEST_DATA");
    if (!root) root = "tests/data";
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

/* A scratch directory for this test (created; under $TMPDIR or /tmp). */
static inline const char *test_tmpdir(const char *name) {
    static char buf[4096];
    const char *t = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/ggx-%s-%d", t ? t : "/tmp", name, (int)getpid());
    return buf;
}

/* A whole file in a malloc'ed NUL-terminated buffer (its size in *len if len), or NULL. */
static inline char *test_read_file(const char *path, size_t *len) {
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (!b) return NULL;
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static inline int test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, g_test_pass, g_test_fail);
    return g_test_fail ? 1 : 0;
}

#endif
