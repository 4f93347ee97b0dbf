/*
 * test_sampler_stop.c — the stop-string filter of ggx run / chat (tools/cli_common.c): whatever
 * the chunking of the generated text, the released text is exactly the text before the first
 * stop string (or all of it at the end), nothing after a hit, and text that may still become a
 * stop string is held back. Also the whole-string number/list parsers the CLI relies on.
 */
#include "../tools/cli_common.c"
#include "testutil.h"

static uint64_t g_x = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
    g_x ^= g_x << 13;
    g_x ^= g_x >> 7;
    g_x ^= g_x << 17;
    return (uint32_t)(g_x % n);
}

/* Reference: generation ends after the first chunk that completes a stop string; the text is
 * cut at the earliest start of a stop string complete in what has arrived by then.
 * ends[] are the cumulative chunk ends. Returns the cut, or len if no stop string completes. */
static size_t first_stop(const char *t, const size_t *ends, int n_chunks,
                         const char *const *stops, int n) {
    for (int c = 0; c < n_chunks; c++) {
        size_t m = ends[c], best = m;
        for (int k = 0; k < n; k++) {
            size_t L = strlen(stops[k]);
            for (size_t i = 0; i + L <= m && i < best; i++)
                if (!memcmp(t + i, stops[k], L)) {
                    best = i;
                    break;
                }
        }
        if (best < m) return best;
    }
    return n_chunks ? ends[n_chunks - 1] : 0;
}

static void run_case(const char *text, const char *const *stops, int n_stops, int chunking) {
    size_t len = strlen(text);
    size_t ends[256] = {0};
    int n_chunks = 0;
    for (size_t pos = 0; pos < len && n_chunks < 256;) {
        size_t c = chunking ? 1 + rnd(6) : 1;
        pos = pos + c > len ? len : pos + c;
        ends[n_chunks++] = pos;
    }
    size_t want = first_stop(text, ends, n_chunks, stops, n_stops);
    cli_stopper s;
    cli_stopper_init(&s, stops, n_stops);
    char out[4096];
    size_t n_out = 0, pos = 0;
    int early = 0; /* released text beyond the cut */
    for (int c = 0; c < n_chunks && !s.hit; c++) {
        const char *o;
        size_t no;
        TEST_CHECK(cli_stopper_push(&s, text + pos, ends[c] - pos, &o, &no) == 0);
        memcpy(out + n_out, o, no);
        n_out += no;
        pos = ends[c];
        if (n_out > want) early = 1;
    }
    if (!s.hit) {
        const char *o;
        size_t no;
        cli_stopper_flush(&s, &o, &no);
        memcpy(out + n_out, o, no);
        n_out += no;
    }
    TEST_CHECK_MSG(n_out == want && !memcmp(out, text, want) && !early,
                   "text '%s': released %zu bytes, want %zu (early %d)", text, n_out, want, early);
    TEST_CHECK_MSG(s.hit == (want < len), "hit flag %d for '%s'", s.hit, text);
    cli_stopper_free(&s);
}

static void test_stopper(void) {
    const char *stops1[] = {"\nUser:"};
    run_case("Hello there.\nUser: hi", stops1, 1, 0);
    run_case("Hello there.\nUse the force\nUser", stops1, 1, 0); /* partial at the end: printed */
    run_case("no stop here", stops1, 1, 1);
    const char *stops2[] = {"ab", "bc", "abcd"};
    run_case("xxabcd", stops2, 3, 0);
    run_case("xbcab", stops2, 3, 0);
    const char *stops3[] = {"\n\n"};
    run_case("line\n\nnext", stops3, 1, 0);
    run_case("\n\n", stops3, 1, 0);
    run_case("a\nb\nc\n", stops3, 1, 1);
    /* UTF-8 text and stop strings: a held-back suffix starts at a character boundary */
    const char *stops4[] = {"\xc3\xa9t\xc3\xa9"};
    run_case("l'\xc3\xa9t\xc3\xa9 est l\xc3\xa0", stops4, 1, 0);
    run_case("caf\xc3\xa9 \xc3\xa9t", stops4, 1, 0);

    /* random texts over a small alphabet (many near-misses), random stops, random chunks */
    for (int round = 0; round < 2000; round++) {
        char text[200], sbuf[3][8];
        const char *stops[3];
        int n = 1 + (int)rnd(3);
        size_t len = rnd(120);
        for (size_t i = 0; i < len; i++) text[i] = "ab\n"[rnd(3)];
        text[len] = 0;
        for (int k = 0; k < n; k++) {
            int L = 1 + (int)rnd(5);
            for (int i = 0; i < L; i++) sbuf[k][i] = "ab\n"[rnd(3)];
            sbuf[k][L] = 0;
            stops[k] = sbuf[k];
        }
        run_case(text, stops, n, 1);
    }
    /* no stop strings: everything passes through */
    run_case("plain text", NULL, 0, 1);
}

static void test_parsers(void) {
    int v;
    float f;
    uint64_t u;
    int32_t *l = NULL;
    size_t n = 0;
    /* the parsers print their errors: silence fd 2 meanwhile */
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    TEST_CHECK(cli_parse_int("t", "-n", "12", 0, 100, &v) == 0 && v == 12);
    TEST_CHECK(cli_parse_int("t", "-n", "12x", 0, 100, &v) != 0);
    TEST_CHECK(cli_parse_int("t", "-n", "101", 0, 100, &v) != 0);
    TEST_CHECK(cli_parse_int("t", "-n", "", 0, 100, &v) != 0);
    TEST_CHECK(cli_parse_int("t", "-n", "99999999999999999999", 0, 100, &v) != 0);
    TEST_CHECK(cli_parse_float("t", "--temp", "0.25", &f) == 0 && f == 0.25f);
    TEST_CHECK(cli_parse_float("t", "--temp", "nan", &f) != 0);
    TEST_CHECK(cli_parse_float("t", "--temp", "1e999", &f) != 0);
    TEST_CHECK(cli_parse_u64("t", "--seed", "18446744073709551615", &u) == 0 && u == UINT64_MAX);
    TEST_CHECK(cli_parse_u64("t", "--seed", "-1", &u) != 0);
    TEST_CHECK(cli_parse_int_list("t", "--ids", " 1, 2 ,3", 0, 10, &l, &n) == 0 && n == 3 &&
               l[0] == 1 && l[1] == 2 && l[2] == 3);
    free(l);
    l = NULL;
    TEST_CHECK(cli_parse_int_list("t", "--ids", "1,,2", 0, 10, &l, &n) != 0);
    TEST_CHECK(cli_parse_int_list("t", "--ids", "1,11", 0, 10, &l, &n) != 0);
    TEST_CHECK(cli_parse_int_list("t", "--ids", "", 0, 10, &l, &n) != 0);
    TEST_CHECK(cli_parse_int_list("t", "--ids", "1;2", 0, 10, &l, &n) != 0);
    TEST_CHECK(l == NULL);
    fflush(stderr);
    if (saved >= 0) dup2(saved, 2);
    if (devnull >= 0) close(devnull);
    if (saved >= 0) close(saved);
}

int main(void) {
    test_stopper();
    test_parsers();
    return test_finish("test_sampler_stop");
}
