/*
 * test_model_logits.c — the xLSTM model against the transformers reference
 * (tests/data/xlstm-tiny/reference/logits.safetensors), on the f32 and the bf16 .ggx (converted
 * here with $GGX_BIN convert into a temporary directory):
 *   - pK.logits_prefill: whole prompt in one eval, all positions, max abs diff <= 1e-4
 *   - pK.logits_step: token by token, <= 1e-4
 *   - pK.gen_ids: greedy 24 tokens identical
 *   - split p3 (354 tokens) as 100 + 1 + 253: logits and state equal to one call (1e-5 rel)
 *   - a batch of all prompts in one ggx_eval equals separate calls
 *   - -t 1 and -t 2 give bit-identical logits
 */
#include "refdata.h"
#include "testutil.h"

#include "ggx.h"
#include "models/xlstm_impl.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int convert(const char *out, const char *type) {
    const char *bin = getenv("GGX_BIN");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type %s --quiet", bin ? bin : "ggx",
             test_data_path("xlstm-tiny"), out, type);
    return system(cmd);
}

static ref_file g_ref;

static void test_file(const char *path, const char *label) {
    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = 2;
    ggx_model *m = NULL;
    ggx_status st = ggx_model_load(path, &mp, &m);
    TEST_CHECK_MSG(st == GGX_OK, "%s: load: %s", label, ggx_last_error());
    if (st != GGX_OK) return;
    const int V = ggx_model_n_vocab(m);
    float worst_pre = 0, worst_step = 0;
    for (int p = 0; p < 5; p++) {
        char nm[64];
        int64_t n, rows;
        snprintf(nm, sizeof nm, "p%d.ids", p);
        const int32_t *ids = ref_get(&g_ref, nm, &n, &rows);
        int S = (int)n;
        snprintf(nm, sizeof nm, "p%d.logits_prefill", p);
        const float *pre = ref_get(&g_ref, nm, &n, &rows);
        TEST_CHECK(ids && pre && rows == S && n == (int64_t)S * V);
        if (!ids || !pre) continue;
        /* prefill: all positions */
        ggx_state *s;
        ggx_state_create(m, &s);
        float *lg = malloc(sizeof(float) * (size_t)S * V);
        ggx_seq q = {s, ids, S, lg, 1};
        st = ggx_eval(m, &q, 1);
        TEST_CHECK_MSG(st == GGX_OK, "%s p%d eval: %s", label, p, ggx_last_error());
        float d = max_abs_diff(lg, pre, (size_t)S * V);
        worst_pre = fmaxf(worst_pre, d);
        TEST_CHECK_MSG(d <= 1e-4f, "%s p%d prefill: max abs diff %g", label, p, d);
        /* greedy continuation from the prefill state */
        snprintf(nm, sizeof nm, "p%d.gen_ids", p);
        const int32_t *gen = ref_get(&g_ref, nm, &n, &rows);
        int ok = gen != NULL;
        float *one = malloc(sizeof(float) * V);
        int32_t tok = argmax(lg + (size_t)(S - 1) * V, V);
        for (int i = 0; gen && i < n; i++) {
            if (tok != gen[i]) {
                ok = 0;
                fprintf(stderr, "%s p%d greedy: token %d is %d, reference %d\n", label, p, i, tok,
                        gen[i]);
                break;
            }
            ggx_seq q1 = {s, &tok, 1, one, 0};
            ggx_eval(m, &q1, 1);
            tok = argmax(one, V);
        }
        TEST_CHECK_MSG(ok, "%s p%d: greedy 24 tokens equal pK.gen_ids", label, p);
        /* step: token by token (reference exists for prompts <= 64 tokens) */
        snprintf(nm, sizeof nm, "p%d.logits_step", p);
        const float *stp = ref_get(&g_ref, nm, &n, &rows);
        if (stp) {
            ggx_state_reset(s);
            float ds = 0;
            for (int t = 0; t < S; t++) {
                ggx_seq q1 = {s, ids + t, 1, one, 0};
                ggx_eval(m, &q1, 1);
                ds = fmaxf(ds, max_abs_diff(one, stp + (size_t)t * V, V));
            }
            worst_step = fmaxf(worst_step, ds);
            TEST_CHECK_MSG(ds <= 1e-4f, "%s p%d step: max abs diff %g", label, p, ds);
        }
        free(one);
        free(lg);
        ggx_state_free(s);
    }
    printf("%s: worst prefill diff %.3g, worst step diff %.3g\n", label, worst_pre, worst_step);

    /* split p3 as 100 + 1 + 253: same logits (all positions) and state as one call */
    {
        int64_t n, rows;
        const int32_t *ids = ref_get(&g_ref, "p3.ids", &n, &rows);
        int S = (int)n;
        ggx_state *a, *b;
        ggx_state_create(m, &a);
        ggx_state_create(m, &b);
        float *la = malloc(sizeof(float) * (size_t)S * V), *lb = malloc(sizeof(float) * (size_t)S * V);
        ggx_seq qa = {a, ids, S, la, 1};
        ggx_eval(m, &qa, 1);
        int parts[3] = {100, 1, S - 101}, off = 0;
        for (int i = 0; i < 3; i++) {
            ggx_seq qb = {b, ids + off, parts[i], lb + (size_t)off * V, 1};
            TEST_CHECK(ggx_eval(m, &qb, 1) == GGX_OK);
            off += parts[i];
        }
        double num = 0, den = 0;
        for (size_t i = 0; i < (size_t)S * V; i++)
            num = fmax(num, fabs(la[i] - lb[i])), den = fmax(den, fabs(la[i]));
        TEST_CHECK_MSG(num / den <= 1e-5, "%s split 100+1+253: logits rel diff %g", label, num / den);
        size_t nf = ggx_model_state_size(m) / 4;
        const float *sa = a->mem, *sb = b->mem;
        num = den = 0;
        for (size_t i = 0; i < nf; i++)
            num = fmax(num, fabs(sa[i] - sb[i])), den = fmax(den, fabs(sa[i]));
        TEST_CHECK_MSG(num / den <= 1e-5, "%s split: state rel diff %g", label, num / den);
        free(la), free(lb);
        ggx_state_free(a), ggx_state_free(b);
    }

    /* batch: all five prompts in one call == separate calls (all logits) */
    {
        ggx_seq qs[5];
        ggx_state *ss[5], *s1;
        float *lbat[5];
        ggx_state_create(m, &s1);
        for (int p = 0; p < 5; p++) {
            char nm[32];
            int64_t n, rows;
            snprintf(nm, sizeof nm, "p%d.ids", p);
            const int32_t *ids = ref_get(&g_ref, nm, &n, &rows);
            ggx_state_create(m, &ss[p]);
            lbat[p] = malloc(sizeof(float) * (size_t)n * V);
            qs[p] = (ggx_seq){ss[p], ids, (int)n, lbat[p], p != 2}; /* p2: last logits only */
        }
        st = ggx_eval(m, qs, 5);
        TEST_CHECK_MSG(st == GGX_OK, "%s batch eval: %s", label, ggx_last_error());
        for (int p = 0; p < 5; p++) {
            ggx_state_reset(s1);
            int rows = qs[p].logits_all ? qs[p].n_tokens : 1;
            float *l1 = malloc(sizeof(float) * (size_t)rows * V);
            ggx_seq q = {s1, qs[p].tokens, qs[p].n_tokens, l1, qs[p].logits_all};
            ggx_eval(m, &q, 1);
            double num = 0, den = 0;
            for (size_t i = 0; i < (size_t)rows * V; i++)
                num = fmax(num, fabs(l1[i] - lbat[p][i])), den = fmax(den, fabs(l1[i]));
            TEST_CHECK_MSG(num / den <= 1e-5, "%s batch p%d: rel diff %g", label, p, num / den);
            /* the end states agree too */
            size_t nf = ggx_model_state_size(m) / 4;
            const float *sa = s1->mem, *sb = ss[p]->mem;
            num = den = 0;
            for (size_t i = 0; i < nf; i++)
                num = fmax(num, fabs(sa[i] - sb[i])), den = fmax(den, fabs(sa[i]));
            TEST_CHECK_MSG(num / den <= 1e-5, "%s batch p%d: state rel diff %g", label, p, num / den);
            free(l1);
        }
        /* batched decode step: 5 sequences x 1 token */
        int32_t next[5];
        float *l5 = malloc(sizeof(float) * 5 * (size_t)V);
        for (int p = 0; p < 5; p++) {
            next[p] = (int32_t)(7 * p + 3);
            qs[p] = (ggx_seq){ss[p], &next[p], 1, l5 + (size_t)p * V, 0};
        }
        TEST_CHECK(ggx_eval(m, qs, 5) == GGX_OK);
        free(l5);
        for (int p = 0; p < 5; p++) ggx_state_free(ss[p]), free(lbat[p]);
        ggx_state_free(s1);
    }
    ggx_model_free(m);

    /* -t 1 and -t 2: bit-identical (prefill of p3 with chunkwise + tail, then 3 steps) */
    {
        float *out[2];
        int64_t n, rows;
        const int32_t *ids = ref_get(&g_ref, "p3.ids", &n, &rows);
        for (int t = 0; t < 2; t++) {
            mp.n_threads = t + 1;
            ggx_model *mt;
            out[t] = calloc((size_t)(n + 3) * V, sizeof(float));
            if (ggx_model_load(path, &mp, &mt) != GGX_OK) continue;
            ggx_state *s;
            ggx_state_create(mt, &s);
            ggx_seq q = {s, ids, (int)n, out[t], 1};
            ggx_eval(mt, &q, 1);
            for (int k = 0; k < 3; k++) {
                ggx_seq q1 = {s, ids + k, 1, out[t] + (size_t)(n + k) * V, 0};
                ggx_eval(mt, &q1, 1);
            }
            ggx_state_free(s);
            ggx_model_free(mt);
        }
        TEST_CHECK_MSG(!memcmp(out[0], out[1], sizeof(float) * (size_t)(n + 3) * V),
                       "%s: -t 1 and -t 2 differ", label);
        free(out[0]), free(out[1]);
    }
}

int main(void) {
    if (ref_open(&g_ref, test_data_path("xlstm-tiny/reference/logits.safetensors")) != 0) {
        fprintf(stderr, "cannot read the reference logits\n");
        return 1;
    }
    const char *dir = test_tmpdir("model-logits");
    mkdir(dir, 0700);
    char f32[4200], bf16[4200];
    snprintf(f32, sizeof f32, "%s/tiny-f32.ggx", dir);
    snprintf(bf16, sizeof bf16, "%s/tiny-bf16.ggx", dir);
    TEST_CHECK_MSG(convert(f32, "f32") == 0, "convert f32");
    TEST_CHECK_MSG(convert(bf16, "bf16") == 0, "convert bf16");
    test_file(f32, "f32");
    test_file(bf16, "bf16");
    remove(f32), remove(bf16), rmdir(dir);
    ref_close(&g_ref);
    return test_finish("test_model_logits");
}
