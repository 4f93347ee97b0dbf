/*
 * test_sampler.c — unit tests of ggx_sampler_*: greedy ties and masking, the sampled
 * distribution against softmax (chi-square with fixed seeds), top-k / top-p / min-p edge cases,
 * the repeat penalty and its window, seeding, and the exported RNG state.
 */
#include "ggx.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static ggx_sampler_params plain(float temp, uint64_t seed) {
    ggx_sampler_params p = ggx_sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 0;
    p.seed = seed;
    return p;
}

static ggx_sampler *make(const ggx_sampler_params *p) {
    ggx_sampler *s = NULL;
    ggx_status st = ggx_sampler_create(p, &s);
    TEST_CHECK_MSG(st == GGX_OK, "create: %s", ggx_last_error());
    return s;
}

static int32_t sample_copy(ggx_sampler *s, const float *l, int n) {
    float buf[4096];
    memcpy(buf, l, sizeof(float) * (size_t)n);
    return ggx_sampler_sample(s, buf, n);
}

/* Draw `draws` samples and compare the histogram with `expect` (probabilities, zeros allowed:
 * those ids must never come). Returns the chi-square statistic over ids with expect > 0. */
static double chi_square(ggx_sampler *s, const float *l, int n, const double *expect, int draws,
                         int *forbidden_hits) {
    int counts[64] = {0};
    *forbidden_hits = 0;
    for (int d = 0; d < draws; d++) {
        int32_t id = sample_copy(s, l, n);
        if (id < 0 || id >= n) {
            (*forbidden_hits)++;
            continue;
        }
        counts[id]++;
    }
    double chi = 0;
    for (int i = 0; i < n; i++) {
        if (expect[i] <= 0) {
            *forbidden_hits += counts[i];
            continue;
        }
        double e = expect[i] * draws;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

static void softmax(const float *l, int n, float temp, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, l[i] / temp);
    for (int i = 0; i < n; i++) sum += (out[i] = exp(l[i] / temp - mx));
    for (int i = 0; i < n; i++) out[i] /= sum;
}

/* 0.1% critical values of chi-square for df = 1..9 (the tests are deterministic given the seed;
 * a wrong distribution lands far above these with 200k draws). */
static const double k_chi_crit[10] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12,
                                      27.88};

/* ------------------------------------------------------------------------------------------ */

static void test_greedy(void) {
    ggx_sampler_params p = plain(0.0f, 1);
    ggx_sampler *s = make(&p);
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 2.0f};
    TEST_CHECK_MSG(sample_copy(s, l, 6) == 1, "greedy tie -> lowest id");
    float l2[5] = {NAN, -3.0f, NAN, -1.0f, -2.0f};
    TEST_CHECK_MSG(sample_copy(s, l2, 5) == 3, "NaN logits are ignored");
    float l3[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int32_t id = sample_copy(s, l3, 4);
    TEST_CHECK_MSG(id >= 0 && id < 4, "all -inf gives an id in range (%d)", id);
    ggx_sampler_free(s);

    /* greedy never consumes randomness: two samplers with different seeds agree */
    ggx_sampler_params a = plain(0.0f, 1), b = plain(0.0f, 999);
    ggx_sampler *sa = make(&a), *sb = make(&b);
    float l4[7] = {0.1f, 0.2f, 0.3f, 0.25f, 0.3f, -5.0f, 0.0f};
    for (int i = 0; i < 10; i++) TEST_CHECK(sample_copy(sa, l4, 7) == sample_copy(sb, l4, 7));
    TEST_CHECK(sample_copy(sa, l4, 7) == 2);
    ggx_sampler_free(sa);
    ggx_sampler_free(sb);
}

static void test_mask(void) {
    /* padding rows (ids >= n_vocab_valid) never come, greedy or sampled, even when largest */
    for (int t = 0; t < 2; t++) {
        ggx_sampler_params p = plain(t ? 1.0f : 0.0f, 42);
        p.n_vocab_valid = 5;
        ggx_sampler *s = make(&p);
        float l[8] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 50.0f, 60.0f, 70.0f};
        int bad = 0;
        for (int i = 0; i < 2000; i++) {
            int32_t id = sample_copy(s, l, 8);
            if (id < 0 || id >= 5) bad++;
        }
        TEST_CHECK_MSG(bad == 0, "temp %d: %d draws hit padding rows", t, bad);
        if (t) { /* and the distribution over the valid rows is softmax of those rows */
            double e[8] = {0};
            softmax(l, 5, 1.0f, e);
            int forb;
            double chi = chi_square(s, l, 8, e, 100000, &forb);
            TEST_CHECK_MSG(chi < k_chi_crit[4] && forb == 0, "masked dist chi %.2f forb %d", chi,
                           forb);
        }
        ggx_sampler_free(s);
    }
    /* n_vocab_valid larger than n_vocab is harmless */
    ggx_sampler_params p = plain(0.0f, 1);
    p.n_vocab_valid = 100;
    ggx_sampler *s = make(&p);
    float l[3] = {0, 1, 0.5f};
    TEST_CHECK(sample_copy(s, l, 3) == 1);
    ggx_sampler_free(s);
}

static void test_distribution(void) {
    const float l[6] = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f};
    const float temps[3] = {1.0f, 0.5f, 1.7f};
    for (int t = 0; t < 3; t++) {
        ggx_sampler_params p = plain(temps[t], 1234 + (uint64_t)t);
        ggx_sampler *s = make(&p);
        double e[6];
        softmax(l, 6, temps[t], e);
        int forb;
        double chi = chi_square(s, l, 6, e, 200000, &forb);
        TEST_CHECK_MSG(chi < k_chi_crit[5] && forb == 0, "temp %.1f: chi-square %.2f (crit %.2f)",
                       (double)temps[t], chi, k_chi_crit[5]);
        ggx_sampler_free(s);
    }
    /* a wrong temperature must be detected by the same statistic (the test can fail) */
    {
        ggx_sampler_params p = plain(1.0f, 77);
        ggx_sampler *s = make(&p);
        double e[6];
        softmax(l, 6, 0.8f, e);
        int forb;
        double chi = chi_square(s, l, 6, e, 200000, &forb);
        TEST_CHECK_MSG(chi > 10 * k_chi_crit[5], "temp mismatch undetected: chi %.2f", chi);
        ggx_sampler_free(s);
    }
}

static void test_top_k(void) {
    const float l[7] = {0.3f, 1.0f, 0.9f, -2.0f, 1.1f, 0.95f, 0.0f};
    ggx_sampler_params p = plain(1.0f, 5);
    p.top_k = 3; /* keeps ids 4, 1, 5 */
    ggx_sampler *s = make(&p);
    float kept[7];
    for (int i = 0; i < 7; i++) kept[i] = (i == 4 || i == 1 || i == 5) ? l[i] : -INFINITY;
    double e[7];
    softmax(kept, 7, 1.0f, e);
    int forb;
    double chi = chi_square(s, l, 7, e, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[2] && forb == 0, "top-k 3: chi %.2f forbidden %d", chi, forb);
    ggx_sampler_free(s);

    /* top-k 1 is greedy, with the lowest id among ties */
    p.top_k = 1;
    s = make(&p);
    float t[5] = {1.0f, 3.0f, 2.0f, 3.0f, 3.0f};
    int ok = 1;
    for (int i = 0; i < 200; i++) ok &= sample_copy(s, t, 5) == 1;
    TEST_CHECK_MSG(ok, "top-k 1 with ties -> lowest id");
    ggx_sampler_free(s);

    /* top-k larger than the vocabulary keeps all */
    p.top_k = 1000;
    s = make(&p);
    double e2[7];
    softmax(l, 7, 1.0f, e2);
    chi = chi_square(s, l, 7, e2, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[6] && forb == 0, "top-k > n: chi %.2f", chi);
    ggx_sampler_free(s);
}

static void test_top_p(void) {
    /* probabilities 0.5, 0.25, 0.125, 0.125 (logits ln of those) */
    const float l[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
    int forb;
    double chi;

    /* p = 1 is off: all four with their probabilities */
    ggx_sampler_params p = plain(1.0f, 11);
    p.top_p = 1.0f;
    ggx_sampler *s = make(&p);
    double e[4] = {0.5, 0.25, 0.125, 0.125};
    chi = chi_square(s, l, 4, e, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[3] && forb == 0, "top-p 1: chi %.2f", chi);
    ggx_sampler_free(s);

    /* p = 0.7: 0.5 < 0.7 <= 0.75 keeps ids 0 and 1, renormalized 2/3, 1/3 */
    p.top_p = 0.7f;
    s = make(&p);
    double e2[4] = {2.0 / 3, 1.0 / 3, 0, 0};
    chi = chi_square(s, l, 4, e2, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[1] && forb == 0, "top-p 0.7: chi %.2f forbidden %d", chi,
                   forb);
    ggx_sampler_free(s);

    /* p = 0.8: 0.75 < 0.8 needs the third; ids 2 and 3 tie, the lower id (2) is kept */
    p.top_p = 0.8f;
    s = make(&p);
    double e3[4] = {0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875, 0};
    chi = chi_square(s, l, 4, e3, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[2] && forb == 0, "top-p 0.8 tie cut: chi %.2f forbidden %d",
                   chi, forb);
    ggx_sampler_free(s);

    /* tiny p keeps exactly one: the best, the lowest id among tied bests */
    p.top_p = 1e-6f;
    s = make(&p);
    float t[5] = {0.0f, 2.0f, 1.0f, 2.0f, 2.0f};
    int ok = 1;
    for (int i = 0; i < 500; i++) ok &= sample_copy(s, t, 5) == 1;
    TEST_CHECK_MSG(ok, "top-p tiny with ties -> lowest id");
    ggx_sampler_free(s);
}

static void test_min_p(void) {
    /* probabilities 0.4, 0.3, 0.2, 0.1 */
    const float l[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    int forb;
    double chi;

    /* min-p 0.45: threshold 0.18 keeps 0.4, 0.3, 0.2, drops 0.1 */
    ggx_sampler_params p = plain(1.0f, 21);
    p.min_p = 0.45f;
    ggx_sampler *s = make(&p);
    double e[4] = {0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0};
    chi = chi_square(s, l, 4, e, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[2] && forb == 0, "min-p 0.45: chi %.2f forbidden %d", chi,
                   forb);
    ggx_sampler_free(s);

    /* min-p 1 keeps only the maximum, all tied maxima */
    p.min_p = 1.0f;
    s = make(&p);
    const float t[5] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
    double e2[5] = {0, 0.5, 0, 0.5, 0};
    chi = chi_square(s, t, 5, e2, 100000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[1] && forb == 0, "min-p 1 ties: chi %.2f forbidden %d", chi,
                   forb);
    ggx_sampler_free(s);

    /* min-p is judged at temperature 1 even when sampling hotter (llama.cpp order) */
    p.min_p = 0.6f; /* threshold 0.24: keeps 0.4, 0.3 */
    p.temperature = 2.0f;
    s = make(&p);
    float kept[4] = {l[0], l[1], -INFINITY, -INFINITY};
    double e3[4];
    softmax(kept, 4, 2.0f, e3);
    chi = chi_square(s, l, 4, e3, 200000, &forb);
    TEST_CHECK_MSG(chi < k_chi_crit[1] && forb == 0, "min-p at temp 2: chi %.2f forbidden %d", chi,
                   forb);
    ggx_sampler_free(s);
}

static void test_penalty(void) {
    ggx_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    ggx_sampler *s = make(&p);

    /* positive logit divided: 3 -> 1.5 < 2.5 */
    float l[4] = {3.0f, 2.5f, -1.0f, 0.0f};
    ggx_sampler_accept(s, 0);
    float b[4];
    memcpy(b, l, sizeof b);
    TEST_CHECK(ggx_sampler_sample(s, b, 4) == 1);
    TEST_CHECK_MSG(b[0] == 1.5f, "penalized logit %g, want 1.5", (double)b[0]);

    /* the same id twice in the window is penalized once */
    ggx_sampler_accept(s, 0);
    memcpy(b, l, sizeof b);
    ggx_sampler_sample(s, b, 4);
    TEST_CHECK_MSG(b[0] == 1.5f, "double occurrence penalized %g, want 1.5 (once)", (double)b[0]);

    /* negative logits are multiplied */
    ggx_sampler_reset(s);
    float n[3] = {-1.0f, -1.5f, -3.0f};
    ggx_sampler_accept(s, 0);
    memcpy(b, n, sizeof n);
    TEST_CHECK(ggx_sampler_sample(s, b, 3) == 1);
    TEST_CHECK_MSG(b[0] == -2.0f, "negative penalized %g, want -2", (double)b[0]);

    /* window of 3: after three other ids, id 0 is no longer penalized */
    ggx_sampler_accept(s, 2);
    ggx_sampler_accept(s, 3);
    ggx_sampler_accept(s, 3);
    memcpy(b, l, sizeof b);
    TEST_CHECK_MSG(ggx_sampler_sample(s, b, 4) == 0 && b[0] == 3.0f, "id left the window");
    /* ids out of range in the history are ignored */
    ggx_sampler_accept(s, -5);
    ggx_sampler_accept(s, 1 << 30);
    memcpy(b, l, sizeof b);
    TEST_CHECK(ggx_sampler_sample(s, b, 4) == 0);
    ggx_sampler_free(s);

    /* penalty 1 is off; penalty window 0 is off */
    p.repeat_penalty = 1.0f;
    s = make(&p);
    ggx_sampler_accept(s, 0);
    memcpy(b, l, sizeof b);
    TEST_CHECK(ggx_sampler_sample(s, b, 4) == 0 && b[0] == 3.0f);
    ggx_sampler_free(s);
    p.repeat_penalty = 3.0f;
    p.repeat_last_n = 0;
    s = make(&p);
    ggx_sampler_accept(s, 0);
    memcpy(b, l, sizeof b);
    TEST_CHECK(ggx_sampler_sample(s, b, 4) == 0 && b[0] == 3.0f);
    ggx_sampler_free(s);
}

static void fill_logits(float *l, int n, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    }
}

static void test_seed_and_state(void) {
    enum { N = 300, V = 1000 };
    static float l[V];
    fill_logits(l, V, 9);
    ggx_sampler_params p = ggx_sampler_default_params();
    p.temperature = 1.2f;
    p.top_k = 100;
    p.top_p = 0.9f;
    p.min_p = 0.02f;
    p.repeat_penalty = 1.3f;
    p.repeat_last_n = 16;
    p.seed = 2026;
    ggx_sampler *a = make(&p), *b = make(&p);
    int32_t ra[N], rb[N];
    for (int i = 0; i < N; i++) {
        ggx_sampler_accept(a, ra[i] = sample_copy(a, l, V));
        ggx_sampler_accept(b, rb[i] = sample_copy(b, l, V));
    }
    TEST_CHECK_MSG(!memcmp(ra, rb, sizeof ra), "same seed, same sequence");

    /* reset replays from the seed */
    ggx_sampler_reset(a);
    int same = 1;
    for (int i = 0; i < N; i++) {
        int32_t id = sample_copy(a, l, V);
        ggx_sampler_accept(a, id);
        same &= id == ra[i];
    }
    TEST_CHECK_MSG(same, "reset replays the sequence");

    /* another seed differs */
    p.seed = 2027;
    ggx_sampler *c = make(&p);
    int diff = 0;
    for (int i = 0; i < N; i++) {
        int32_t id = sample_copy(c, l, V);
        ggx_sampler_accept(c, id);
        diff += id != ra[i];
    }
    TEST_CHECK_MSG(diff > N / 2, "another seed gives another sequence (%d/%d differ)", diff, N);

    /* export mid-stream, import into a fresh sampler (different seed even): identical tail */
    ggx_sampler_reset(b);
    for (int i = 0; i < N / 2; i++) ggx_sampler_accept(b, sample_copy(b, l, V));
    size_t sz = ggx_sampler_state_size(b);
    unsigned char *blob = malloc(sz);
    TEST_CHECK(ggx_sampler_state_get(b, blob, sz) == GGX_OK);
    TEST_CHECK(ggx_sampler_state_get(b, blob, sz - 1) != GGX_OK);
    ggx_sampler_reset(c);
    TEST_CHECK_MSG(ggx_sampler_state_set(c, blob, sz) == GGX_OK, "%s", ggx_last_error());
    same = 1;
    for (int i = N / 2; i < N; i++) {
        int32_t x = sample_copy(b, l, V), y = sample_copy(c, l, V);
        ggx_sampler_accept(b, x);
        ggx_sampler_accept(c, y);
        same &= x == y && x == ra[i];
    }
    TEST_CHECK_MSG(same, "restored sampler continues the same sequence");

    /* corrupted blobs are refused and leave the sampler usable */
    TEST_CHECK(ggx_sampler_state_set(c, blob, sz - 4) != GGX_OK);
    blob[0] ^= 1;
    TEST_CHECK(ggx_sampler_state_set(c, blob, sz) != GGX_OK);
    TEST_CHECK(ggx_sampler_state_set(c, blob, 3) != GGX_OK);
    free(blob);
    ggx_sampler_free(a);
    ggx_sampler_free(b);
    ggx_sampler_free(c);
}

/* Random logits over a padded vocabulary: every draw is a valid id inside the top-k set. */
static void test_random_consistency(void) {
    enum { V = 3000, VALID = 2900 };
    static float l[V];
    for (int round = 0; round < 20; round++) {
        fill_logits(l, V, 100 + (uint64_t)round);
        if (round % 3 == 0) /* many exact ties */
            for (int i = 0; i < V; i++) l[i] = floorf(l[i]);
        ggx_sampler_params p = ggx_sampler_default_params();
        p.n_vocab_valid = VALID;
        p.top_k = 1 + round * 7;
        p.top_p = 0.5f + 0.025f * (float)round;
        p.temperature = 0.3f + 0.1f * (float)round;
        p.seed = (uint64_t)round;
        ggx_sampler *s = make(&p);
        /* the k-th best valid logit (ties by id) */
        int bad = 0;
        for (int d = 0; d < 200; d++) {
            int32_t id = sample_copy(s, l, V);
            if (id < 0 || id >= VALID) {
                bad++;
                continue;
            }
            int better = 0; /* valid ids ranked before id */
            for (int j = 0; j < VALID; j++)
                better += l[j] > l[id] || (l[j] == l[id] && j < id);
            if (better >= p.top_k) bad++;
        }
        TEST_CHECK_MSG(bad == 0, "round %d: %d draws outside top-%d", round, bad, p.top_k);
        ggx_sampler_free(s);
    }
}

/* A large vocabulary with padding rows, where the filters keep a few hundred ids: the draws must
 * follow the reference pipeline written out plainly here (full sort, top-p prefix, min-p, softmax
 * at T). This exercises the sampler's shrink-before-sort paths (min-p prefilter, top-p buckets). */
static const float *g_ref_l;
static int cmp_ref(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_ref_l[x] != g_ref_l[y]) return g_ref_l[x] > g_ref_l[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void test_large_vocab(void) {
    enum { V = 12000, VALID = 11950, DRAWS = 1500 };
    static float l[V], b[V];
    static int32_t order[VALID];
    static double expect[VALID];
    static int counts[VALID];
    uint64_t x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) / 9007199254740992.0;
        l[i] = (i % 97 == 5) ? (float)(2.0 + u) : (float)(-10.0 + 5.0 * u); /* ~124 high ids */
    }
    l[VALID + 3] = 50.0f; /* a padding row that must never win */
    const float tps[2] = {0.5f, 0.95f}, mps[2] = {0.0f, 0.6f};
    for (int cfg = 0; cfg < 4; cfg++) {
        float top_p = tps[cfg & 1], min_p = mps[cfg >> 1], temp = 3.0f;
        /* reference */
        g_ref_l = l;
        for (int i = 0; i < VALID; i++) order[i] = i;
        qsort(order, VALID, sizeof *order, cmp_ref);
        double mx = l[order[0]], total = 0, acc = 0;
        for (int i = 0; i < VALID; i++) total += exp((double)l[order[i]] - mx);
        int keep = VALID;
        for (int i = 0; i < VALID; i++) {
            acc += exp((double)l[order[i]] - mx);
            if (acc >= (double)top_p * total) {
                keep = i + 1;
                break;
            }
        }
        int k2 = 1;
        while (k2 < keep && exp((double)l[order[k2]] - mx) >= (double)min_p) k2++;
        if (min_p > 0) keep = k2;
        memset(expect, 0, sizeof expect);
        double z = 0;
        for (int i = 0; i < keep; i++) z += (expect[order[i]] = exp(((double)l[order[i]] - mx) / temp));
        for (int i = 0; i < keep; i++) expect[order[i]] /= z;

        ggx_sampler_params p = plain(temp, 777 + (uint64_t)cfg);
        p.top_p = top_p;
        p.min_p = min_p;
        p.n_vocab_valid = VALID;
        ggx_sampler *s = make(&p);
        memset(counts, 0, sizeof counts);
        int outside = 0;
        for (int d = 0; d < DRAWS; d++) {
            memcpy(b, l, sizeof b);
            int32_t id = ggx_sampler_sample(s, b, V);
            if (id < 0 || id >= VALID || expect[id] == 0) outside++;
            else counts[id]++;
        }
        double chi = 0;
        for (int i = 0; i < keep; i++) {
            double e = expect[order[i]] * DRAWS;
            chi += (counts[order[i]] - e) * (counts[order[i]] - e) / e;
        }
        /* 0.1% critical value, Wilson-Hilferty approximation */
        double df = keep - 1, h = 2.0 / (9.0 * df);
        double crit = df > 0 ? df * pow(1 - h + 3.09 * sqrt(h), 3) : 0;
        TEST_CHECK_MSG(outside == 0 && chi <= crit,
                       "large vocab top-p %.2f min-p %.2f: kept %d, %d draws outside, chi %.1f "
                       "(crit %.1f)", (double)top_p, (double)min_p, keep, outside, chi, crit);
        ggx_sampler_free(s);
    }

    /* several hundred ids kept, spread over several buckets: membership and coverage */
    for (int i = 0; i < V; i++)
        if (i % 29 == 5 && i < VALID) l[i] = 2.0f + (float)(i % 7) * 0.1f; /* ~412 high ids */
    g_ref_l = l;
    for (int i = 0; i < VALID; i++) order[i] = i;
    qsort(order, VALID, sizeof *order, cmp_ref);
    double mx = l[order[0]], total = 0, acc = 0;
    for (int i = 0; i < VALID; i++) total += exp((double)l[order[i]] - mx);
    int keep = VALID;
    for (int i = 0; i < VALID; i++) {
        acc += exp((double)l[order[i]] - mx);
        if (acc >= 0.99 * total) {
            keep = i + 1;
            break;
        }
    }
    memset(expect, 0, sizeof expect);
    for (int i = 0; i < keep; i++) expect[order[i]] = 1;
    ggx_sampler_params p = plain(20.0f, 4242);
    p.top_p = 0.99f;
    p.n_vocab_valid = VALID;
    ggx_sampler *s = make(&p);
    memset(counts, 0, sizeof counts);
    int outside = 0, covered = 0;
    for (int d = 0; d < 6 * keep; d++) {
        memcpy(b, l, sizeof b);
        int32_t id = ggx_sampler_sample(s, b, V);
        if (id < 0 || id >= VALID || expect[id] == 0) outside++;
        else covered += counts[id]++ == 0;
    }
    TEST_CHECK_MSG(keep > 256 && outside == 0 && covered >= keep * 95 / 100,
                   "large vocab top-p 0.99: kept %d, %d draws outside, %d covered", keep, outside,
                   covered);
    ggx_sampler_free(s);
}

static void test_bad_params(void) {
    ggx_sampler *s = NULL;
    ggx_sampler_params p = ggx_sampler_default_params();
    p.temperature = -1;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG && !s);
    TEST_CHECK(strstr(ggx_last_error(), "temperature") != NULL);
    p = ggx_sampler_default_params();
    p.top_p = 0;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    p = ggx_sampler_default_params();
    p.min_p = 1.5f;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    p = ggx_sampler_default_params();
    p.repeat_penalty = 0;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    p = ggx_sampler_default_params();
    p.repeat_last_n = -1;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    p = ggx_sampler_default_params();
    p.top_k = -3;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    p = ggx_sampler_default_params();
    p.temperature = NAN;
    TEST_CHECK(ggx_sampler_create(&p, &s) == GGX_ERR_INVALID_ARG);
    TEST_CHECK(ggx_sampler_create(NULL, &s) == GGX_ERR_INVALID_ARG);
    ggx_sampler_free(NULL);
}

int main(void) {
    test_greedy();
    test_mask();
    test_distribution();
    test_top_k();
    test_top_p();
    test_min_p();
    test_penalty();
    test_seed_and_state();
    test_random_consistency();
    test_large_vocab();
    test_bad_params();
    return test_finish("test_sampler");
}
