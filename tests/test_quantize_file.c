/* test_quantize_file.c — the data `ggx quantize` writes: every quantized tensor is exactly the
 * reference quantizer applied to the source rows (f32, bf16 and f16 sources), f32 tensors are copied
 * bit for bit, and the per-tensor policy (ggx/quant_policy.h) picks the documented types. */
#include "ggxfile.h"
#include "quant_policy.h"
#include "quants.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static int run(const char *cmd) {
    const int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* compare OUT's tensors with IN's, requantizing IN's rows with the reference */
static void compare_files(const char *in_path, const char *out_path) {
    ggx_file *in = NULL, *out = NULL;
    TEST_CHECK_MSG(ggx_file_open(in_path, &in) == GGX_OK, "%s", ggx_last_error());
    TEST_CHECK_MSG(ggx_file_open(out_path, &out) == GGX_OK, "%s", ggx_last_error());
    if (!in || !out) goto done;
    TEST_CHECK(ggx_file_n_tensors(in) == ggx_file_n_tensors(out));
    for (size_t i = 0; i < ggx_file_n_tensors(in); i++) {
        const ggx_tensor_info *a = ggx_file_tensor(in, i);
        const ggx_tensor_info *b = ggx_file_find_tensor(out, a->name);
        TEST_CHECK_MSG(b != NULL, "missing %s", a->name);
        if (!b) continue;
        TEST_CHECK(b->n_dims == a->n_dims && b->n_elements == a->n_elements);
        const int64_t cols = a->dims[a->n_dims - 1], rows = a->n_elements / cols;
        float *row = malloc(sizeof(float) * cols);
        uint8_t *q = malloc(ggx_row_size(GGX_TYPE_Q8_0, cols) + 64);
        int bad = 0;
        for (int64_t r = 0; r < rows && !bad; r++) {
            ggx_to_f32(a->type, (const uint8_t *)a->data + r * ggx_row_size(a->type, cols), row, cols);
            const uint8_t *got = (const uint8_t *)b->data + r * ggx_row_size(b->type, cols);
            if (b->type == GGX_TYPE_F32) {
                bad += memcmp(got, row, sizeof(float) * cols) != 0;
            } else {
                bad += ggx_quantize_row(b->type, row, q, cols) != 0;
                bad += memcmp(got, q, ggx_row_size(b->type, cols)) != 0;
            }
        }
        TEST_CHECK_MSG(!bad, "%s (%s): data differs from the reference", a->name, ggx_type_name(b->type));
        free(row);
        free(q);
    }
done:
    ggx_file_close(in);
    ggx_file_close(out);
}

int main(void) {
    /* the policy */
    const int64_t mat[2] = {704, 256}, vec[1] = {256}, gate[2] = {4, 256}, odd[2] = {8, 48};
    const char *why = NULL;
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_X, "backbone.blocks.0.ffn.proj_up.weight", 2, mat, &why) == GGX_TYPE_Q4_X);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_0, "backbone.blocks.0.norm_ffn.weight", 1, vec, &why) == GGX_TYPE_F32);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_0, "backbone.blocks.0.mlstm_layer.igate_preact.weight", 2, gate, &why) == GGX_TYPE_F32);
    TEST_CHECK(why && !strcmp(why, "gate"));
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q8_0, "x.fgate_preact.bias", 1, gate, NULL) == GGX_TYPE_F32);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_0, "lm_head.weight", 2, mat, NULL) == GGX_TYPE_Q8_0);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q8_0, "lm_head.weight", 2, mat, NULL) == GGX_TYPE_Q8_0);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_BF16, "lm_head.weight", 2, mat, NULL) == GGX_TYPE_BF16);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_X, "backbone.embeddings.weight", 2, mat, NULL) == GGX_TYPE_Q8_0);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_F16, "backbone.embeddings.weight", 2, mat, NULL) == GGX_TYPE_F16);
    TEST_CHECK(ggx_quant_default_type(GGX_TYPE_Q4_X, "w", 2, odd, &why) == GGX_TYPE_F16);
    ggx_quant_policy *p = NULL;
    const char *ov[] = {"proj_(up|down)=q8_0", "proj=bf16"};
    TEST_CHECK(ggx_quant_policy_create(GGX_TYPE_Q4_0, ov, 2, &p) == GGX_OK);
    enum ggx_type t = GGX_TYPE_F32;
    if (p) {
        TEST_CHECK(ggx_quant_policy_type(p, "b.ffn.proj_down.weight", 2, mat, &t, &why) == GGX_OK && t == GGX_TYPE_Q8_0);
        TEST_CHECK(ggx_quant_policy_type(p, "b.out_proj.weight", 2, mat, &t, &why) == GGX_OK && t == GGX_TYPE_BF16);
        TEST_CHECK(ggx_quant_policy_type(p, "b.v.weight", 2, mat, &t, &why) == GGX_OK && t == GGX_TYPE_Q4_0);
        TEST_CHECK(ggx_quant_policy_type(p, "b.proj_up_odd", 2, odd, &t, &why) == GGX_ERR_INVALID_ARG);
        TEST_CHECK(strstr(ggx_last_error(), "b.proj_up_odd") != NULL);
        ggx_quant_policy_free(p);
    }
    const char *bad1[] = {"a(=q8_0"}, *bad2[] = {"a=q9_9"}, *bad3[] = {"=q8_0"};
    TEST_CHECK(ggx_quant_policy_create(GGX_TYPE_Q4_0, bad1, 1, &p) == GGX_ERR_INVALID_ARG && !p);
    TEST_CHECK(ggx_quant_policy_create(GGX_TYPE_Q4_0, bad2, 1, &p) == GGX_ERR_INVALID_ARG && !p);
    TEST_CHECK(ggx_quant_policy_create(GGX_TYPE_Q4_0, bad3, 1, &p) == GGX_ERR_INVALID_ARG && !p);
    TEST_CHECK(ggx_quant_policy_create(GGX_TYPE_I32, NULL, 0, &p) == GGX_ERR_INVALID_ARG && !p);

    /* the files */
    const char *bin = getenv("GGX_BIN");
    if (!bin) {
        fprintf(stderr, "GGX_BIN not set: skipping the file checks\n");
        return test_finish("test_quantize_file");
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%.900s", test_tmpdir("quantize_file"));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    run(cmd);
    const char *srcs[] = {"f32", "bf16", "f16"}, *types[] = {"q8_0", "q4_0", "q4_x"};
    for (int s = 0; s < 3; s++) {
        char src[1100];
        snprintf(src, sizeof src, "%s/%s.ggx", dir, srcs[s]);
        snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type %s --quiet", bin,
                 test_data_path("xlstm-tiny"), src, srcs[s]);
        if (run(cmd)) { TEST_CHECK(0); continue; }
        for (int k = 0; k < 3; k++) {
            char out[1200];
            snprintf(out, sizeof out, "%s/%s-%s.ggx", dir, srcs[s], types[k]);
            snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --type %s -t 2 --quiet", bin, src, out,
                     types[k]);
            TEST_CHECK(run(cmd) == 0);
            compare_files(src, out);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    run(cmd);
    return test_finish("test_quantize_file");
}
