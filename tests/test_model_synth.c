/*
 * test_model_synth.c — the synthetic model (models/xlstm.h): builds from a config.json of the
 * tiny model's shape for f32/bf16/q8_0, runs, is deterministic for a seed (and independent of
 * the thread count), has a seed-dependent fingerprint; on it, a 300-token prefill (chunkwise +
 * tail) equals token-by-token decoding, and a batch of two unequal sequences equals separate
 * calls. Also: a config that is not an xlstm config fails with a message.
 */
#include "testutil.h"

#include "ggx.h"
#include "models/xlstm.h"
#include "models/xlstm_impl.h"

#include <math.h>

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num = fmax(num, fabs(a[i] - b[i])), den = fmax(den, fabs(b[i]));
    return num / (den > 0 ? den : 1);
}

int main(void) {
    const char *cfg = test_data_path("xlstm-tiny/config.json");
    ggx_model_params mp = ggx_model_default_params();
    const enum ggx_type types[] = {GGX_TYPE_F32, GGX_TYPE_BF16, GGX_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++) {
        ggx_model *a = NULL, *b = NULL, *c = NULL;
        mp.n_threads = 1;
        ggx_status st = ggx_model_synthetic(cfg, types[ti], &mp, 7, &a);
        TEST_CHECK_MSG(st == GGX_OK, "synthetic %s: %s", ggx_type_name(types[ti]), ggx_last_error());
        mp.n_threads = 2;
        ggx_model_synthetic(cfg, types[ti], &mp, 7, &b);
        ggx_model_synthetic(cfg, types[ti], &mp, 8, &c);
        if (!a || !b || !c) return test_finish("test_model_synth");
        TEST_CHECK(ggx_model_weight_type(a) == types[ti]);
        TEST_CHECK(ggx_model_fingerprint(a) == ggx_model_fingerprint(b));
        TEST_CHECK(ggx_model_fingerprint(a) != ggx_model_fingerprint(c));
        TEST_CHECK(a->layers[1].wq.type == types[ti] && a->layers[1].wi.type == GGX_TYPE_F32);
        TEST_CHECK(!memcmp(a->layers[2].up.data, b->layers[2].up.data, a->layers[2].up.size));
        TEST_CHECK(memcmp(a->layers[2].up.data, c->layers[2].up.data, a->layers[2].up.size) != 0);
        TEST_CHECK(ggx_model_weight_bytes_per_token(a) < ggx_model_weight_bytes(a));
        ggx_tokenizer *tok = NULL;
        TEST_CHECK(ggx_tokenizer_from_model(a, &tok) == GGX_ERR_UNSUPPORTED && !tok);

        const int V = ggx_model_n_vocab(b), S = 300;
        int32_t *ids = malloc(sizeof(int32_t) * S);
        for (int i = 0; i < S; i++) ids[i] = (int32_t)((i * 131 + 7) % V);
        float *pre = malloc(sizeof(float) * (size_t)S * V), *stp = malloc(sizeof(float) * (size_t)S * V);
        ggx_state *s1, *s2;
        ggx_state_create(b, &s1);
        ggx_state_create(b, &s2);
        ggx_seq q = {s1, ids, S, pre, 1};
        TEST_CHECK(ggx_eval(b, &q, 1) == GGX_OK);
        for (int t = 0; t < S; t++) {
            ggx_seq q1 = {s2, ids + t, 1, stp + (size_t)t * V, 0};
            ggx_eval(b, &q1, 1);
        }
        int finite = 1;
        for (size_t i = 0; i < (size_t)S * V; i++) finite &= isfinite(pre[i]);
        TEST_CHECK(finite);
        double d = rel_diff(pre, stp, (size_t)S * V);
        /* quantized weights: the step path quantizes activations to 8 bits, prefill does not */
        double tol = types[ti] == GGX_TYPE_Q8_0 ? 2e-2 : 1e-5;
        TEST_CHECK_MSG(d <= tol, "%s: prefill vs step rel diff %g", ggx_type_name(types[ti]), d);
        double ds = rel_diff(s1->mem, s2->mem, ggx_model_state_size(b) / 4);
        TEST_CHECK_MSG(ds <= (types[ti] == GGX_TYPE_Q8_0 ? 2e-2 : 1e-5), "%s: state rel diff %g",
                       ggx_type_name(types[ti]), ds);
        /* over the per-call token limit: sliced evaluation equals one call */
        {
            ggx_state *s4, *s5;
            ggx_state_create(b, &s4);
            ggx_state_create(b, &s5);
            float *sl = malloc(sizeof(float) * (size_t)S * V), *last = malloc(sizeof(float) * V);
            b->max_eval_tokens = 100; /* slices of 64 tokens (a multiple of the chunk size) */
            ggx_seq two[2] = {{s4, ids, S, sl, 1}, {s5, ids, S, last, 0}};
            TEST_CHECK(ggx_eval(b, two, 2) == GGX_OK);
            b->max_eval_tokens = 0;
            double dl = rel_diff(sl, pre, (size_t)S * V);
            TEST_CHECK_MSG(dl <= 1e-5, "%s: sliced all-logits rel diff %g", ggx_type_name(types[ti]), dl);
            dl = rel_diff(last, pre + (size_t)(S - 1) * V, V);
            TEST_CHECK_MSG(dl <= tol, "%s: sliced last logits rel diff %g", ggx_type_name(types[ti]), dl);
            dl = rel_diff(s4->mem, s1->mem, ggx_model_state_size(b) / 4);
            TEST_CHECK_MSG(dl <= 1e-5, "%s: sliced state rel diff %g", ggx_type_name(types[ti]), dl);
            TEST_CHECK(!memcmp(s4->mem, s5->mem, ggx_model_state_size(b)));
            free(sl), free(last);
            ggx_state_free(s4), ggx_state_free(s5);
        }
        /* batch of unequal sequences vs separate */
        ggx_state_reset(s1);
        ggx_state_reset(s2);
        float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
        ggx_seq bq[2] = {{s1, ids, 70, la, 0}, {s2, ids + 100, 5, lb, 0}};
        TEST_CHECK(ggx_eval(b, bq, 2) == GGX_OK);
        ggx_state *s3;
        ggx_state_create(b, &s3);
        ggx_seq q3 = {s3, ids + 100, 5, pre, 0};
        ggx_eval(b, &q3, 1);
        TEST_CHECK_MSG(rel_diff(lb, pre, V) <= tol, "%s: batch seq 1 differs: %g", ggx_type_name(types[ti]), rel_diff(lb, pre, V));
        ggx_state_reset(s3);
        ggx_seq q4 = {s3, ids, 70, pre, 0};
        ggx_eval(b, &q4, 1);
        TEST_CHECK_MSG(rel_diff(la, pre, V) <= tol, "%s: batch seq 0 differs: %g", ggx_type_name(types[ti]), rel_diff(la, pre, V));
        free(la), free(lb), free(ids), free(pre), free(stp);
        ggx_state_free(s1), ggx_state_free(s2), ggx_state_free(s3);
        ggx_model_free(a), ggx_model_free(b), ggx_model_free(c);
    }
    ggx_model *bad = NULL;
    ggx_status st = ggx_model_synthetic(test_data_path("xlstm-tiny/tokenizer_config.json"),
                                        GGX_TYPE_F32, &mp, 1, &bad);
    TEST_CHECK_MSG(st != GGX_OK && !bad, "non-config accepted");
    st = ggx_model_synthetic(test_data_path("no/such/config.json"), GGX_TYPE_F32, &mp, 1, &bad);
    TEST_CHECK(st == GGX_ERR_IO && !bad);
    return test_finish("test_model_synth");
}
