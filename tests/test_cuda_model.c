/*
 * test_cuda_model.c — the xLSTM model on the CUDA backend against the transformers reference
 * (tests/data/xlstm-tiny/reference/logits.safetensors), the .ggx files converted here with
 * $GGX_BIN convert:
 *   f32 .ggx:  prefill logits (all positions) and token-by-token logits within 1e-3 (max abs);
 *              greedy 24 tokens identical to pK.gen_ids; split prefill 100+1+rest equals one
 *              call; a batch of the 5 prompts equals separate calls; a batched decode of 8
 *              sequences equals 8 single-sequence runs (several steps, CUDA-graph replays)
 *   bf16 .ggx: max difference and greedy agreement reported (bf16 weights)
 *   q8_0 / q4_0 .ggx: CUDA logits vs the CPU backend's on the same file (both dequantize the
 *              same blocks; the CPU quantizes activations to int8, so loose: 5e-2 relative)
 * Skips (77) without CUDA or without a GPU.
 */
#include "testutil.h"

#ifndef GGX_USE_CUDA
int main(void) {
    printf("test_cuda_model: built without CUDA, skipped\n");
    return TEST_SKIP;
}
#else

#include "backends/cuda/ggx_cuda.h"
#include "ggx.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct {
    unsigned char *buf;
    size_t len;
    cJSON *hdr;
    size_t data_start;
} ref_file;

static int ref_open(ref_file *r, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    r->len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    r->buf = malloc(r->len);
    if (fread(r->buf, 1, r->len, f) != r->len) return fclose(f), -1;
    fclose(f);
    uint64_t n;
    memcpy(&n, r->buf, 8);
    r->hdr = cJSON_ParseWithLength((const char *)r->buf + 8, n);
    r->data_start = 8 + n;
    return r->hdr ? 0 : -1;
}
static const void *ref_get(ref_file *r, const char *name, int64_t *n) {
    cJSON *t = cJSON_GetObjectItem(r->hdr, name);
    if (!t) return NULL;
    cJSON *sh = cJSON_GetObjectItem(t, "shape"), *off = cJSON_GetObjectItem(t, "data_offsets");
    int64_t cnt = 1;
    cJSON *d;
    cJSON_ArrayForEach(d, sh) cnt *= (int64_t)d->valuedouble;
    *n = cnt;
    return r->buf + r->data_start + (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return isfinite(m) ? m : INFINITY;
}
static double rel_max_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num = fmax(num, fabs(a[i] - b[i])), den = fmax(den, fabs(b[i]));
    return isfinite(num) ? num / den : INFINITY;
}
static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static ref_file g_ref;
static char g_dir[4096];

static int convert(const char *type, char *out, size_t cap) {
    snprintf(out, cap, "%s/tiny-%s.ggx", g_dir, type);
    const char *bin = getenv("GGX_BIN");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type %s --quiet", bin ? bin : "ggx",
             test_data_path("xlstm-tiny"), out, type);
    return system(cmd);
}

static ggx_model *load(const char *path, const char *backend) {
    ggx_model_params mp = ggx_model_default_params();
    mp.backend = backend;
    mp.n_threads = 2;
    ggx_model *m = NULL;
    ggx_status st = ggx_model_load(path, &mp, &m);
    TEST_CHECK_MSG(st == GGX_OK, "load %s on %s: %s", path, backend, ggx_last_error());
    return st == GGX_OK ? m : NULL;
}

/* reference checks; strict for f32 weights, reported for bf16 */
static void test_reference(const char *path, const char *label, int strict) {
    ggx_model *m = load(path, "cuda");
    if (!m) return;
    const int V = ggx_model_n_vocab(m);
    float worst_pre = 0, worst_step = 0;
    int greedy_ok = 0, greedy_n = 0;
    for (int p = 0; p < 5; p++) {
        char nm[64];
        int64_t n = 0, ng = 0;
        snprintf(nm, sizeof nm, "p%d.ids", p);
        const int32_t *ids = ref_get(&g_ref, nm, &n);
        const int S = (int)n;
        snprintf(nm, sizeof nm, "p%d.logits_prefill", p);
        const float *pre = ref_get(&g_ref, nm, &n);
        TEST_CHECK(ids && pre && n == (int64_t)S * V);
        if (!ids || !pre) continue;
        ggx_state *s;
        TEST_CHECK(ggx_state_create(m, &s) == GGX_OK);
        float *lg = malloc(sizeof(float) * (size_t)S * V), *one = malloc(sizeof(float) * V);
        ggx_seq q = {s, ids, S, lg, 1};
        ggx_status st = ggx_eval(m, &q, 1);
        TEST_CHECK_MSG(st == GGX_OK, "%s p%d eval: %s", label, p, ggx_last_error());
        const float d = max_abs_diff(lg, pre, (size_t)S * V);
        worst_pre = fmaxf(worst_pre, d);
        if (strict) TEST_CHECK_MSG(d <= 1e-3f, "%s p%d prefill (%d tokens): max abs diff %g", label, p, S, d);
        snprintf(nm, sizeof nm, "p%d.gen_ids", p);
        const int32_t *gen = ref_get(&g_ref, nm, &ng);
        int32_t tok = argmax(lg + (size_t)(S - 1) * V, V);
        int same = 1;
        for (int i = 0; gen && i < ng; i++) {
            if (tok != gen[i]) {
                same = 0;
                if (strict) fprintf(stderr, "%s p%d greedy: token %d is %d, reference %d\n", label, p, i, tok, gen[i]);
                break;
            }
            ggx_seq q1 = {s, &tok, 1, one, 0};
            TEST_CHECK(ggx_eval(m, &q1, 1) == GGX_OK);
            tok = argmax(one, V);
        }
        greedy_ok += same;
        greedy_n++;
        if (strict) TEST_CHECK_MSG(same, "%s p%d: greedy 24 tokens equal pK.gen_ids", label, p);
        snprintf(nm, sizeof nm, "p%d.logits_step", p);
        const float *stp = ref_get(&g_ref, nm, &n);
        if (stp) {
            ggx_state_reset(s);
            float ds = 0;
            for (int t = 0; t < S; t++) {
                ggx_seq q1 = {s, ids + t, 1, one, 0};
                TEST_CHECK(ggx_eval(m, &q1, 1) == GGX_OK);
                ds = fmaxf(ds, max_abs_diff(one, stp + (size_t)t * V, V));
            }
            worst_step = fmaxf(worst_step, ds);
            if (strict) TEST_CHECK_MSG(ds <= 1e-3f, "%s p%d step: max abs diff %g", label, p, ds);
        }
        free(one);
        free(lg);
        ggx_state_free(s);
    }
    printf("%s on cuda: worst prefill max abs diff %.3g, worst step %.3g, greedy 24 identical for "
           "%d of %d prompts\n", label, worst_pre, worst_step, greedy_ok, greedy_n);
    ggx_model_free(m);
}

/* split prefill, batch == separate calls, batched decode of 8 == 8 single runs */
static void test_batching(const char *path) {
    ggx_model *m = load(path, "cuda");
    if (!m) return;
    const int V = ggx_model_n_vocab(m);
    int64_t n;
    const int32_t *p3 = ref_get(&g_ref, "p3.ids", &n);
    const int S3 = (int)n;
    { /* split 100 + 1 + rest */
        ggx_state *a, *b;
        ggx_state_create(m, &a);
        ggx_state_create(m, &b);
        float *la = malloc(sizeof(float) * (size_t)S3 * V), *lb = malloc(sizeof(float) * (size_t)S3 * V);
        ggx_seq qa = {a, p3, S3, la, 1};
        TEST_CHECK(ggx_eval(m, &qa, 1) == GGX_OK);
        int parts[3] = {100, 1, S3 - 101}, off = 0;
        for (int i = 0; i < 3; i++) {
            ggx_seq qb = {b, p3 + off, parts[i], lb + (size_t)off * V, 1};
            TEST_CHECK(ggx_eval(m, &qb, 1) == GGX_OK);
            off += parts[i];
        }
        const double r = rel_max_diff(lb, la, (size_t)S3 * V);
        TEST_CHECK_MSG(r <= 1e-4, "split 100+1+%d: logits rel diff %g", S3 - 101, r);
        printf("split prefill 100+1+%d vs one call: rel diff %.3g\n", S3 - 101, r);
        free(la), free(lb);
        ggx_state_free(a), ggx_state_free(b);
    }
    /* 8 sequences: prompts p0..p4 and three more made of parts of them */
    enum { NS = 8, STEPS = 6 };
    const int32_t *pids[NS];
    int plen[NS];
    for (int p = 0; p < 5; p++) {
        char nm[32];
        snprintf(nm, sizeof nm, "p%d.ids", p);
        pids[p] = ref_get(&g_ref, nm, &n);
        plen[p] = (int)n;
    }
    pids[5] = p3 + 7, plen[5] = 40;
    pids[6] = p3 + 100, plen[6] = 3;
    pids[7] = p3 + 200, plen[7] = 129;
    float *single = malloc(sizeof(float) * (size_t)NS * (STEPS + 1) * V);
    float *batch = malloc(sizeof(float) * (size_t)NS * (STEPS + 1) * V);
    int32_t next_tok[NS][STEPS + 1];
    /* single runs: prefill, then STEPS greedy steps */
    for (int s = 0; s < NS; s++) {
        ggx_state *st;
        ggx_state_create(m, &st);
        float *out = single + (size_t)s * (STEPS + 1) * V;
        ggx_seq q = {st, pids[s], plen[s], out, 0};
        TEST_CHECK(ggx_eval(m, &q, 1) == GGX_OK);
        for (int k = 0; k < STEPS; k++) {
            next_tok[s][k] = argmax(out + (size_t)k * V, V);
            ggx_seq q1 = {st, &next_tok[s][k], 1, out + (size_t)(k + 1) * V, 0};
            TEST_CHECK(ggx_eval(m, &q1, 1) == GGX_OK);
        }
        ggx_state_free(st);
    }
    /* batched: one prefill call of 8 sequences, then STEPS batched decode calls with the same
     * tokens as the single runs chose */
    ggx_state *bs[NS];
    ggx_seq qs[NS];
    float *tmp = malloc(sizeof(float) * (size_t)NS * V);
    for (int s = 0; s < NS; s++) {
        ggx_state_create(m, &bs[s]);
        qs[s] = (ggx_seq){bs[s], pids[s], plen[s], batch + (size_t)s * (STEPS + 1) * V, 0};
    }
    TEST_CHECK(ggx_eval(m, qs, NS) == GGX_OK);
    for (int k = 0; k < STEPS; k++) {
        for (int s = 0; s < NS; s++)
            qs[s] = (ggx_seq){bs[s], &next_tok[s][k], 1, batch + ((size_t)s * (STEPS + 1) + k + 1) * V, 0};
        ggx_status st = ggx_eval(m, qs, NS);
        TEST_CHECK_MSG(st == GGX_OK, "batched decode step %d: %s", k, ggx_last_error());
    }
    const double r = rel_max_diff(batch, single, (size_t)NS * (STEPS + 1) * V);
    TEST_CHECK_MSG(r <= 1e-4, "batched decode of 8 vs 8 single runs: rel diff %g", r);
    int greedy_same = 1;
    for (int s = 0; s < NS; s++)
        for (int k = 0; k <= STEPS; k++)
            greedy_same &= argmax(batch + ((size_t)s * (STEPS + 1) + k) * V, V) ==
                           argmax(single + ((size_t)s * (STEPS + 1) + k) * V, V);
    TEST_CHECK(greedy_same);
    printf("batched prefill + %d decode steps of 8 sequences vs 8 single runs: rel diff %.3g, "
           "greedy %s\n", STEPS, r, greedy_same ? "identical" : "DIFFERENT");
    free(tmp);
    for (int s = 0; s < NS; s++) ggx_state_free(bs[s]);
    free(single);
    free(batch);
    ggx_model_free(m);
}

/* quantized file: CUDA vs CPU on the same weights */
static void test_vs_cpu(const char *path, const char *label) {
    ggx_model *mc = load(path, "cuda"), *mh = load(path, "cpu");
    if (mc && mh) {
        const int V = ggx_model_n_vocab(mc);
        int64_t n;
        const int32_t *ids = ref_get(&g_ref, "p1.ids", &n);
        float *a = malloc(sizeof(float) * (size_t)n * V), *b = malloc(sizeof(float) * (size_t)n * V);
        ggx_state *sa, *sb;
        ggx_state_create(mc, &sa);
        ggx_state_create(mh, &sb);
        ggx_seq qa = {sa, ids, (int)n, a, 1}, qb = {sb, ids, (int)n, b, 1};
        TEST_CHECK(ggx_eval(mc, &qa, 1) == GGX_OK);
        TEST_CHECK(ggx_eval(mh, &qb, 1) == GGX_OK);
        const double r = rel_max_diff(a, b, (size_t)n * V);
        int agree = 0;
        for (int64_t t = 0; t < n; t++) agree += argmax(a + t * V, V) == argmax(b + t * V, V);
        TEST_CHECK_MSG(r <= 5e-2, "%s: cuda vs cpu logits rel diff %g", label, r);
        printf("%s: cuda vs cpu prefill logits rel max diff %.3g, argmax agrees at %d of %d positions\n",
               label, r, agree, (int)n);
        /* then decode steps (one token: the matvec kernels) on both states */
        double rs = 0;
        for (int k = 0; k < 3 && k < n; k++) {
            ggx_seq da = {sa, ids + k, 1, a, 0}, db = {sb, ids + k, 1, b, 0};
            TEST_CHECK(ggx_eval(mc, &da, 1) == GGX_OK);
            TEST_CHECK(ggx_eval(mh, &db, 1) == GGX_OK);
            const double d = rel_max_diff(a, b, (size_t)V);
            rs = d > rs ? d : rs;
        }
        TEST_CHECK_MSG(rs <= 5e-2, "%s: cuda vs cpu decode-step logits rel diff %g", label, rs);
        printf("%s: cuda vs cpu decode-step logits rel max diff %.3g (3 steps)\n", label, rs);
        free(a), free(b);
        ggx_state_free(sa), ggx_state_free(sb);
    }
    if (mc) ggx_model_free(mc);
    if (mh) ggx_model_free(mh);
}

/* the persistent decode kernel (GGX_CUDA_PK=1; batch-1 decode of quantized files) against the
 * kernels one by one: same int8 arithmetic, sums in another order; prefill, then 6 steps
 * (eager, capture, replays) */
static void test_persistent(const char *path, const char *label) {
    const int prev = ggx_cuda_set_persistent(-1);
    if (ggx_cuda_set_persistent(1) != 1) {
        printf("%s: persistent decode kernel not supported here (sm_90), skipped\n", label);
        return;
    }
    int64_t n;
    const int32_t *ids = ref_get(&g_ref, "p2.ids", &n);
    enum { STEPS = 6 };
    float *out[2] = {NULL, NULL};
    int V = 0;
    for (int v = 0; v < 2; v++) {
        /* a model (backend, graph cache) per variant, so each starts with an eager run */
        ggx_cuda_set_persistent(v);
        ggx_model *m = load(path, "cuda");
        if (!m) break;
        V = ggx_model_n_vocab(m);
        out[v] = malloc(sizeof(float) * (size_t)(STEPS + 1) * V);
        const long long l0 = ggx_cuda_persistent_launches();
        ggx_state *st;
        ggx_state_create(m, &st);
        ggx_seq q = {st, ids, (int)n, out[v], 0};
        TEST_CHECK(ggx_eval(m, &q, 1) == GGX_OK);
        for (int k = 0; k < STEPS; k++) {
            const int32_t tok = ids[k % n];
            ggx_seq q1 = {st, &tok, 1, out[v] + (size_t)(k + 1) * V, 0};
            ggx_status rs = ggx_eval(m, &q1, 1);
            TEST_CHECK_MSG(rs == GGX_OK, "%s decode step %d (persistent %d): %s", label, k, v, ggx_last_error());
        }
        /* eager step and capture: two launches at least with it, none without */
        const long long dl = ggx_cuda_persistent_launches() - l0;
        TEST_CHECK_MSG(v ? dl >= 2 : dl == 0, "%s: %lld persistent launches with mode %d", label, dl, v);
        ggx_state_free(st);
        ggx_model_free(m);
    }
    ggx_cuda_set_persistent(prev);
    if (!out[0] || !out[1]) {
        free(out[0]), free(out[1]);
        return;
    }
    const double r = rel_max_diff(out[1], out[0], (size_t)(STEPS + 1) * V);
    TEST_CHECK_MSG(r <= 1e-3, "%s: persistent vs per-kernel decode logits rel diff %g", label, r);
    printf("%s: persistent decode kernel vs kernels one by one, %d steps: rel max diff %.3g\n", label, STEPS, r);
    free(out[0]), free(out[1]);
}

/* Deferred C stores (C written every K-th decode token, the updates in between replayed): the
 * logits of a prefill and STEPS greedy steps are bit-identical to storing every step (K = 1),
 * and a state copied, saved and loaded, or continued by a prefill while tokens are pending
 * goes on exactly like the original. */
static void test_defer(const char *path) {
    const int prev = ggx_cuda_set_mlstm_defer(0);
    int64_t n;
    const int32_t *ids = ref_get(&g_ref, "p1.ids", &n);
    enum { STEPS = 11, TAIL = 4 };
    float *out[2] = {NULL, NULL}, *tail[2][3] = {{NULL}};
    int V = 0;
    char sp[4096 + 64];
    snprintf(sp, sizeof sp, "%s/defer.state", g_dir);
    for (int v = 0; v < 2; v++) {
        ggx_cuda_set_mlstm_defer(v ? 4 : 1);
        ggx_model *m = load(path, "cuda");
        if (!m) break;
        V = ggx_model_n_vocab(m);
        out[v] = malloc(sizeof(float) * (size_t)(STEPS + 1) * V);
        for (int w = 0; w < 3; w++) tail[v][w] = malloc(sizeof(float) * (size_t)TAIL * V);
        ggx_state *st, *cp, *ld, *pf;
        ggx_state_create(m, &st), ggx_state_create(m, &cp), ggx_state_create(m, &ld), ggx_state_create(m, &pf);
        ggx_seq q = {st, ids, (int)n, out[v], 0};
        TEST_CHECK(ggx_eval(m, &q, 1) == GGX_OK);
        int32_t toks[STEPS];
        for (int k = 0; k < STEPS; k++) {
            toks[k] = argmax(out[v] + (size_t)k * V, V);
            ggx_seq q1 = {st, &toks[k], 1, out[v] + (size_t)(k + 1) * V, 0};
            TEST_CHECK(ggx_eval(m, &q1, 1) == GGX_OK);
            if (k == 5) { /* 2 tokens pending with K = 4 (6 steps) */
                TEST_CHECK(ggx_state_copy(cp, st) == GGX_OK);
                TEST_CHECK(ggx_state_save(st, sp, NULL, 0) == GGX_OK);
                TEST_CHECK(ggx_state_load(ld, sp, NULL, NULL) == GGX_OK);
                TEST_CHECK(ggx_state_copy(pf, st) == GGX_OK);
            }
        }
        /* the copies go on with the tokens the original took after step 5: one by one (cp,
         * ld), or the first TAIL - 1 of them as one prefill and the last as a step (pf) */
        for (int k = 0; k < TAIL; k++) {
            ggx_seq a1 = {cp, &toks[6 + k], 1, tail[v][0] + (size_t)k * V, 0};
            ggx_seq b1 = {ld, &toks[6 + k], 1, tail[v][1] + (size_t)k * V, 0};
            TEST_CHECK(ggx_eval(m, &a1, 1) == GGX_OK);
            TEST_CHECK(ggx_eval(m, &b1, 1) == GGX_OK);
        }
        ggx_seq c1 = {pf, &toks[6], TAIL - 1, tail[v][2], 1};
        TEST_CHECK(ggx_eval(m, &c1, 1) == GGX_OK);
        ggx_seq c2 = {pf, &toks[6 + TAIL - 1], 1, tail[v][2] + (size_t)(TAIL - 1) * V, 0};
        TEST_CHECK(ggx_eval(m, &c2, 1) == GGX_OK);
        for (int w = 0; w < 3; w++) {
            const double r = rel_max_diff(tail[v][w], out[v] + (size_t)7 * V, (size_t)TAIL * V);
            TEST_CHECK_MSG(w == 2 ? r <= 1e-4 : r == 0.0, "defer %d: %s after 6 steps: rel diff %g", v ? 4 : 1,
                           w == 0 ? "copied state" : w == 1 ? "saved and loaded state" : "prefill on a copy", r);
        }
        ggx_state_free(st), ggx_state_free(cp), ggx_state_free(ld), ggx_state_free(pf);
        ggx_model_free(m);
    }
    ggx_cuda_set_mlstm_defer(prev);
    remove(sp);
    if (out[0] && out[1]) {
        const double r = rel_max_diff(out[1], out[0], (size_t)(STEPS + 1) * V);
        TEST_CHECK_MSG(r == 0.0, "C stored every 4 tokens vs every token: logits rel diff %g (must be identical)", r);
        printf("deferred C stores (K = 4) vs every step, prefill + %d steps: rel max diff %.3g; copy, save/load "
               "and prefill of a state with tokens pending checked\n", STEPS, r);
    }
    free(out[0]), free(out[1]);
    for (int v = 0; v < 2; v++)
        for (int w = 0; w < 3; w++) free(tail[v][w]);
}

int main(void) {
    if (ggx_cuda_device_count() < 1) {
        printf("test_cuda_model: no CUDA device, skipped\n");
        return TEST_SKIP;
    }
    if (ref_open(&g_ref, test_data_path("xlstm-tiny/reference/logits.safetensors")) != 0) {
        fprintf(stderr, "cannot read the reference logits\n");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("cuda-model"));
    mkdir(g_dir, 0755);
    char f32[4096 + 32], bf16[4096 + 32], q8[4096 + 32], q4[4096 + 32], q4x[4096 + 32];
    TEST_CHECK(convert("f32", f32, sizeof f32) == 0);
    TEST_CHECK(convert("bf16", bf16, sizeof bf16) == 0);
    TEST_CHECK(convert("q8_0", q8, sizeof q8) == 0);
    TEST_CHECK(convert("q4_0", q4, sizeof q4) == 0);
    TEST_CHECK(convert("q4_x", q4x, sizeof q4x) == 0);
    test_reference(f32, "f32", 1);
    test_reference(bf16, "bf16", 0);
    test_batching(f32);
    test_defer(f32);
    test_vs_cpu(q8, "q8_0");
    test_vs_cpu(q4, "q4_0");
    test_vs_cpu(q4x, "q4_x");
    test_persistent(q8, "q8_0");
    test_persistent(q4, "q4_0");
    test_persistent(q4x, "q4_x");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish("test_cuda_model");
}
#endif
