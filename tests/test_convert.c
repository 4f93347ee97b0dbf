/*
 * test_convert.c — ggx_convert_hf on the xlstm-tiny fixture and on checkpoints generated from it
 * (fp32, fp16, old query/key/value names, fused weights, one unsharded model.safetensors).
 *
 * Every stored tensor is compared bit for bit with its source tensor: same type -> identical
 * bytes; f32 output -> the exact upcast of the source; f16/bf16 output from another dtype -> the
 * round-to-nearest-even conversion of the upcast source; q8_0/q4_0 -> ggx_quantize_row of the
 * upcast source. Fused tensors are compared against the row slices of the fused source.
 */
#include "convert/convert.h"
#include "convert/safetensors.h"
#include "ggx/ggxfile.h"
#include "ggx/keys.h"
#include "ggx/quant_policy.h"
#include "ggx/quants.h"
#include "test_convert_util.h"
#include "testutil.h"

#include <math.h>

static char g_root[4096];
static int g_threads = 0; /* converter threads (0 = all CPUs) */

/* The expected output bytes of `rows` rows of a source tensor converted to `out`. */
static uint8_t *expected_bytes(const st_t *src, int64_t row0, int64_t rows, int64_t row_len,
                               enum ggx_type out, size_t *n_out) {
    enum ggx_type sd = (enum ggx_type)ggx_st_dtype_from_name(src->dtype);
    size_t es = ggx_type_traits_of(sd)->type_size;
    const uint8_t *sp = src->data + (size_t)(row0 * row_len) * es;
    int64_t n = rows * row_len;
    size_t ob = ggx_row_size(out, row_len) * (size_t)rows;
    uint8_t *o = malloc(ob + 1);
    float *f = malloc((size_t)n * 4);
    *n_out = ob;
    if (sd == out) {
        memcpy(o, sp, ob);
    } else {
        ggx_to_f32(sd, sp, f, n);
        for (int64_t i = 0; i < n; i++) {
            if (out == GGX_TYPE_F32) memcpy(o + 4 * i, &f[i], 4);
            else if (out == GGX_TYPE_F16) { ggx_fp16_t h = ggx_f32_to_fp16(f[i]); memcpy(o + 2 * i, &h, 2); }
            else if (out == GGX_TYPE_BF16) { ggx_bf16_t h = ggx_f32_to_bf16(f[i]); memcpy(o + 2 * i, &h, 2); }
        }
        if (ggx_type_traits_of(out)->is_quantized)
            for (int64_t r = 0; r < rows; r++)
                ggx_quantize_row(out, f + r * row_len, o + (size_t)r * ggx_row_size(out, row_len), row_len);
    }
    free(f);
    return o;
}

static int is_big(const char *name) {
    static const char *big[] = {".q.weight", ".k.weight", ".v.weight", "ogate_preact.weight",
                                "out_proj.weight", "proj_up_gate.weight", "proj_up.weight",
                                "proj_down.weight", "embeddings.weight", "lm_head.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        size_t k = strlen(big[i]);
        if (n >= k && !strcmp(name + n - k, big[i])) return 1;
    }
    return 0;
}

/* A source of an output tensor: tensor, first row, rows. */
typedef struct srcref {
    const st_t *t;
    int64_t row0;
} srcref;

/* Where an output tensor comes from in `m` (single names, or fused / query-style sources). */
static srcref find_source(st_model *m, const char *out, int64_t qk, int64_t vd, int64_t nh, int64_t ff) {
    srcref r = {st_find(m, out), 0};
    if (r.t) return r;
    if (!strcmp(out, "backbone.embeddings.weight")) {
        r.t = st_find(m, "embedding.weight");
        return r;
    }
    char buf[256];
    int blk;
    char rest[200];
    if (sscanf(out, "backbone.blocks.%d.%199s", &blk, rest) != 2) return r;
    static const struct { const char *single, *fused; int which; } map[] = {
        {"mlstm_layer.q.weight", "mlstm_layer.qkv_opreact.weight", 0},
        {"mlstm_layer.k.weight", "mlstm_layer.qkv_opreact.weight", 1},
        {"mlstm_layer.v.weight", "mlstm_layer.qkv_opreact.weight", 2},
        {"mlstm_layer.ogate_preact.weight", "mlstm_layer.qkv_opreact.weight", 3},
        {"mlstm_layer.igate_preact.weight", "mlstm_layer.ifgate_preact.weight", 4},
        {"mlstm_layer.fgate_preact.weight", "mlstm_layer.ifgate_preact.weight", 5},
        {"mlstm_layer.igate_preact.bias", "mlstm_layer.ifgate_preact.bias", 4},
        {"mlstm_layer.fgate_preact.bias", "mlstm_layer.ifgate_preact.bias", 5},
        {"ffn.proj_up_gate.weight", "ffn.proj_up_gate_z.weight", 6},
        {"ffn.proj_up.weight", "ffn.proj_up_gate_z.weight", 7},
    };
    const int64_t row0[8] = {0, qk, 2 * qk, 2 * qk + vd, 0, nh, 0, ff};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(rest, map[i].single)) {
            snprintf(buf, sizeof buf, "backbone.blocks.%d.%s", blk, map[i].fused);
            r.t = st_find(m, buf);
            r.row0 = row0[map[i].which];
            if (r.t) return r;
        }
    const char *alias[3][2] = {{".q.", ".query."}, {".k.", ".key."}, {".v.", ".value."}};
    for (int i = 0; i < 3; i++) {
        const char *p = strstr(out, alias[i][0]);
        if (!p) continue;
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - out), out, alias[i][1], p + strlen(alias[i][0]));
        r.t = st_find(m, buf);
        r.row0 = 0;
        if (r.t) return r;
    }
    return r;
}

static void check_u32(ggx_file *f, const char *key, uint32_t want) {
    uint32_t v = 0;
    ggx_status s = ggx_file_get_u32(f, key, &v);
    TEST_CHECK_MSG(s == GGX_OK && v == want, "%s = %u (want %u) %s", key, v, want, s ? ggx_last_error() : "");
}
static void check_i64(ggx_file *f, const char *key, int64_t want) {
    int64_t v = -99;
    ggx_status s = ggx_file_get_i64(f, key, &v);
    TEST_CHECK_MSG(s == GGX_OK && v == want, "%s = %lld (want %lld)", key, (long long)v, (long long)want);
}
static void check_str(ggx_file *f, const char *key, const char *want) {
    char *v = NULL;
    ggx_status s = ggx_file_get_str(f, key, &v);
    TEST_CHECK_MSG(s == GGX_OK && v && !strcmp(v, want), "%s = '%s' (want '%s')", key, v ? v : "(null)", want);
    free(v);
}

/* Convert `dir` to `type` and compare every tensor with the sources in `m`. */
static void convert_and_compare(const char *dir, st_model *m, int type, const char *label,
                                const char *want_wmode) {
    char out[4400];
    snprintf(out, sizeof out, "%s/%s.ggx", g_root, label);
    ggx_convert_params p = ggx_convert_default_params();
    p.out_type = type;
    p.n_threads = g_threads;
    ggx_convert_stats st;
    ggx_status s = ggx_convert_hf(dir, out, &p, &st);
    TEST_CHECK_MSG(s == GGX_OK, "%s: convert failed: %s", label, ggx_last_error());
    if (s) return;
    ggx_file *f;
    s = ggx_file_open(out, &f);
    TEST_CHECK_MSG(s == GGX_OK, "%s: open failed: %s", label, ggx_last_error());
    if (s) return;
    TEST_CHECK_MSG(ggx_file_verify(f, NULL, NULL, NULL) == GGX_OK, "%s: verify: %s", label, ggx_last_error());

    /* hyper-parameters: derived as in xlstm-spec §1 from the fixture config (E 256, 4 heads,
     * qk factor 0.5, ffn 2.667 rounded up to 64, vocab 2048) */
    check_str(f, GGX_KEY_ARCH, "xlstm");
    check_u32(f, GGX_KEY_XL_VOCAB, 2048);
    check_u32(f, GGX_KEY_XL_EMBD, 256);
    check_u32(f, GGX_KEY_XL_BLOCKS, 3);
    check_u32(f, GGX_KEY_XL_HEADS, 4);
    check_u32(f, GGX_KEY_XL_QK_DIM, 128);
    check_u32(f, GGX_KEY_XL_V_DIM, 256);
    check_u32(f, GGX_KEY_XL_QK_HEAD_DIM, 32);
    check_u32(f, GGX_KEY_XL_V_HEAD_DIM, 64);
    check_u32(f, GGX_KEY_XL_FFN_DIM, 704);
    check_u32(f, GGX_KEY_XL_CHUNK, 64);
    check_u32(f, GGX_KEY_XL_MAX_CHUNKSZ, 16384);
    check_u32(f, GGX_KEY_XL_FFN_ROUND, 64);
    check_str(f, GGX_KEY_XL_WEIGHT_MODE, "single");
    check_str(f, GGX_KEY_XL_SRC_WMODE, want_wmode);
    check_str(f, GGX_KEY_TOK_MODEL, "bpe");
    check_u32(f, GGX_KEY_TOK_N_VOCAB, 2000);
    check_i64(f, GGX_KEY_TOK_BOS, 0);
    check_i64(f, GGX_KEY_TOK_EOS, 0);
    check_i64(f, GGX_KEY_TOK_PAD, 1);
    check_i64(f, GGX_KEY_TOK_EOT, 0);
    float fv = 0;
    TEST_CHECK(ggx_file_get_f32(f, GGX_KEY_XL_GATE_CAP, &fv) == GGX_OK && fv == 15.0f);
    TEST_CHECK(ggx_file_get_f32(f, GGX_KEY_XL_LOGIT_CAP, &fv) == GGX_OK && fv == 30.0f);
    TEST_CHECK(ggx_file_get_f32(f, GGX_KEY_XL_NORM_EPS, &fv) == GGX_OK && fv == 1e-6f);
    TEST_CHECK(ggx_file_get_f32(f, GGX_KEY_XL_EPS, &fv) == GGX_OK && fv == 1e-6f);
    TEST_CHECK(ggx_file_get_f32(f, GGX_KEY_XL_FFN_FACTOR, &fv) == GGX_OK && fv == 2.667f);
    bool bv = true;
    TEST_CHECK(ggx_file_get_bool(f, GGX_KEY_XL_USE_BIAS, &bv) == GGX_OK && !bv);
    TEST_CHECK(ggx_file_get_bool(f, GGX_KEY_XL_OUT_NORM, &bv) == GGX_OK && bv);
    TEST_CHECK(ggx_file_get_bool(f, GGX_KEY_XL_TIE_EMB, &bv) == GGX_OK && !bv);
    TEST_CHECK(ggx_file_get_bool(f, GGX_KEY_TOK_ADD_BOS, &bv) == GGX_OK && bv);
    /* the tokenizer blob is the original file, byte for byte */
    size_t tl;
    char *tj = test_read_file(test_data_path("xlstm-tiny/tokenizer.json"), &tl);
    const void *blob;
    uint64_t bl;
    TEST_CHECK(ggx_file_get_blob(f, GGX_KEY_TOK_JSON, &blob, &bl) == GGX_OK && bl == tl &&
               !memcmp(blob, tj, tl));
    free(tj);

    /* 3 blocks x 15 + embeddings, out_norm, lm_head */
    TEST_CHECK_MSG(ggx_file_n_tensors(f) == 48, "%s: %zu tensors", label, ggx_file_n_tensors(f));
    int bad = 0;
    for (size_t i = 0; i < ggx_file_n_tensors(f); i++) {
        const ggx_tensor_info *t = ggx_file_tensor(f, i);
        srcref r = find_source(m, t->name, 128, 256, 4, 704);
        if (!r.t) {
            TEST_CHECK_MSG(0, "%s: %s has no source", label, t->name);
            continue;
        }
        enum ggx_type sd = (enum ggx_type)ggx_st_dtype_from_name(r.t->dtype);
        enum ggx_type want = !is_big(t->name) ? GGX_TYPE_F32 : type < 0 ? sd : (enum ggx_type)type;
        /* the shared policy keeps embeddings and lm_head at q8_0 under a 4-bit type */
        int four_bit = type == GGX_TYPE_Q4_0 || type == GGX_TYPE_Q4_X;
        if (four_bit && (strstr(t->name, "embeddings.weight") || strstr(t->name, "lm_head.weight")))
            want = GGX_TYPE_Q8_0;
        TEST_CHECK_MSG(t->type == want, "%s: %s stored as %s, want %s", label, t->name,
                       ggx_type_name(t->type), ggx_type_name(want));
        int64_t row_len = t->n_dims == 2 ? t->dims[1] : 1;
        int shape_ok = t->n_dims == r.t->n_dims && (t->n_dims == 1 || t->dims[1] == r.t->dims[1]);
        TEST_CHECK_MSG(shape_ok, "%s: %s shape", label, t->name);
        if (!shape_ok) continue;
        size_t nb;
        uint8_t *exp = expected_bytes(r.t, r.row0, t->dims[0], row_len, t->type, &nb);
        if (nb != t->size || memcmp(exp, t->data, nb)) {
            if (bad++ < 5) TEST_CHECK_MSG(0, "%s: %s data differs from the source", label, t->name);
        } else {
            g_test_pass++;
        }
        free(exp);
    }
    TEST_CHECK_MSG(bad == 0, "%s: %d tensors differ", label, bad);
    ggx_file_close(f);
    unlink(out);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "%s", test_tmpdir("convert"));
    rm_rf(g_root);
    mkdir(g_root, 0755);
    st_model fx;
    if (st_model_load_fixture(&fx)) return 1;
    TEST_CHECK(fx.n == 48);

    /* 1. the fixture itself (bf16, 3 shards + index), every output type */
    char tiny[4096]; /* test_data_path's buffers rotate: keep a copy */
    snprintf(tiny, sizeof tiny, "%s", test_data_path("xlstm-tiny"));
    convert_and_compare(tiny, &fx, GGX_TYPE_F32, "tiny-f32", "single");
    convert_and_compare(tiny, &fx, GGX_TYPE_BF16, "tiny-bf16", "single");
    convert_and_compare(tiny, &fx, GGX_TYPE_F16, "tiny-f16", "single");
    convert_and_compare(tiny, &fx, -1, "tiny-auto", "single");
    convert_and_compare(tiny, &fx, GGX_TYPE_Q8_0, "tiny-q8_0", "single");
    convert_and_compare(tiny, &fx, GGX_TYPE_Q4_0, "tiny-q4_0", "single");
    /* rows split unevenly between threads give the same bytes */
    g_threads = 3;
    convert_and_compare(tiny, &fx, GGX_TYPE_Q8_0, "tiny-q8_0-t3", "single");
    convert_and_compare(tiny, &fx, GGX_TYPE_F16, "tiny-f16-t3", "single");
    g_threads = 1;
    convert_and_compare(tiny, &fx, GGX_TYPE_Q4_0, "tiny-q4_0-t1", "single");
    g_threads = 0;

    /* 2. an fp32 checkpoint in one unsharded model.safetensors */
    st_model m32;
    st_model_load_fixture(&m32);
    st_model_cast(&m32, "F32");
    const char *d32 = ck_dir(g_root, "fp32", 1);
    char p[8400];
    snprintf(p, sizeof p, "%s/model.safetensors", d32);
    TEST_CHECK(st_write(p, m32.t, m32.n, NULL) == 0);
    convert_and_compare(d32, &m32, GGX_TYPE_F32, "fp32-f32", "single");
    convert_and_compare(d32, &m32, GGX_TYPE_BF16, "fp32-bf16", "single");
    convert_and_compare(d32, &m32, -1, "fp32-auto", "single");

    /* 3. an fp16 checkpoint */
    st_model m16;
    st_model_load_fixture(&m16);
    st_model_cast(&m16, "F16");
    const char *d16 = ck_dir(g_root, "fp16", 1);
    snprintf(p, sizeof p, "%s/model.safetensors", d16);
    TEST_CHECK(st_write(p, m16.t, m16.n, NULL) == 0);
    convert_and_compare(d16, &m16, GGX_TYPE_F16, "fp16-f16", "single");
    convert_and_compare(d16, &m16, GGX_TYPE_F32, "fp16-f32", "single");

    /* 4. old query/key/value names */
    st_model mq;
    st_model_load_fixture(&mq);
    for (int i = 0; i < mq.n; i++) {
        char *n = mq.t[i].name, *s;
        char tmp[256];
        const char *from[3] = {".q.", ".k.", ".v."}, *to[3] = {".query.", ".key.", ".value."};
        for (int k = 0; k < 3; k++)
            if ((s = strstr(n, from[k])) && strstr(n, "mlstm_layer")) {
                snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(s - n), n, to[k], s + 3);
                snprintf(mq.t[i].name, sizeof mq.t[i].name, "%s", tmp);
                break;
            }
    }
    TEST_CHECK(st_find(&mq, "backbone.blocks.2.mlstm_layer.query.weight") != NULL);
    /* and xlstm_large's name for the embedding */
    snprintf(st_find(&mq, "backbone.embeddings.weight")->name, 256, "embedding.weight");
    const char *dq = ck_dir(g_root, "qkvnames", 1);
    snprintf(p, sizeof p, "%s/model.safetensors", dq);
    TEST_CHECK(st_write(p, mq.t, mq.n, NULL) == 0);
    convert_and_compare(dq, &mq, GGX_TYPE_F32, "qkvnames-f32", "single");
    convert_and_compare(dq, &mq, -1, "qkvnames-auto", "single");

    /* 5. a fused checkpoint (xlstm_large layout: rows concatenated along dim 0) */
    st_model mf = {0};
    for (int i = 0; i < fx.n; i++)
        if (!strstr(fx.t[i].name, "mlstm_layer.q.") && !strstr(fx.t[i].name, "mlstm_layer.k.") &&
            !strstr(fx.t[i].name, "mlstm_layer.v.") && !strstr(fx.t[i].name, "ogate_preact") &&
            !strstr(fx.t[i].name, "igate_preact") && !strstr(fx.t[i].name, "fgate_preact") &&
            !strstr(fx.t[i].name, "proj_up")) {
            st_t *t = st_add(&mf, fx.t[i].name, fx.t[i].dtype, fx.t[i].n_dims, fx.t[i].dims, fx.t[i].nbytes);
            memcpy(t->data, fx.t[i].data, fx.t[i].nbytes);
        }
    for (int b = 0; b < 3; b++) {
        char n[256];
        const struct { const char *name; const char *parts[4]; int np; } fused[] = {
            {"mlstm_layer.qkv_opreact.weight", {"mlstm_layer.q.weight", "mlstm_layer.k.weight",
                                                "mlstm_layer.v.weight", "mlstm_layer.ogate_preact.weight"}, 4},
            {"mlstm_layer.ifgate_preact.weight", {"mlstm_layer.igate_preact.weight", "mlstm_layer.fgate_preact.weight"}, 2},
            {"mlstm_layer.ifgate_preact.bias", {"mlstm_layer.igate_preact.bias", "mlstm_layer.fgate_preact.bias"}, 2},
            {"ffn.proj_up_gate_z.weight", {"ffn.proj_up_gate.weight", "ffn.proj_up.weight"}, 2},
        };
        for (size_t k = 0; k < sizeof fused / sizeof *fused; k++) {
            const st_t *parts[4];
            int64_t rows = 0;
            size_t bytes = 0;
            for (int j = 0; j < fused[k].np; j++) {
                snprintf(n, sizeof n, "backbone.blocks.%d.%s", b, fused[k].parts[j]);
                parts[j] = st_find(&fx, n);
                rows += parts[j]->dims[0];
                bytes += parts[j]->nbytes;
            }
            int64_t dims[2] = {rows, parts[0]->dims[1]};
            snprintf(n, sizeof n, "backbone.blocks.%d.%s", b, fused[k].name);
            st_t *t = st_add(&mf, n, "BF16", parts[0]->n_dims, dims, bytes);
            size_t o = 0;
            for (int j = 0; j < fused[k].np; j++) {
                memcpy(t->data + o, parts[j]->data, parts[j]->nbytes);
                o += parts[j]->nbytes;
            }
        }
    }
    TEST_CHECK(mf.n == 3 + 3 * 9);
    const char *dfu = ck_dir(g_root, "fused", 1);
    snprintf(p, sizeof p, "%s/config.json", dfu);
    TEST_CHECK(edit_file(p, "\"weight_mode\": \"single\"", "\"weight_mode\": \"fused\"") == 0);
    /* two shards + an index written by hand, to exercise index parsing on our own files too */
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dfu);
    TEST_CHECK(st_write(p, mf.t, 10, NULL) == 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dfu);
    TEST_CHECK(st_write(p, mf.t + 10, mf.n - 10, NULL) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dfu);
    FILE *ix = fopen(p, "wb");
    fprintf(ix, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < mf.n; i++)
        fprintf(ix, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", mf.t[i].name,
                i < 10 ? 1 : 2);
    fprintf(ix, "}}");
    fclose(ix);
    convert_and_compare(dfu, &mf, GGX_TYPE_F32, "fused-f32", "fused");
    convert_and_compare(dfu, &mf, GGX_TYPE_BF16, "fused-bf16", "fused");

    /* the fused checkpoint gives exactly the single-mode file's tensors */
    {
        char a[4200], b2[4200];
        snprintf(a, sizeof a, "%s/x1.ggx", g_root);
        snprintf(b2, sizeof b2, "%s/x2.ggx", g_root);
        ggx_convert_params pp = ggx_convert_default_params();
        TEST_CHECK(ggx_convert_hf(tiny, a, &pp, NULL) == GGX_OK);
        TEST_CHECK(ggx_convert_hf(dfu, b2, &pp, NULL) == GGX_OK);
        ggx_file *f1 = NULL, *f2 = NULL;
        TEST_CHECK(ggx_file_open(a, &f1) == GGX_OK && ggx_file_open(b2, &f2) == GGX_OK);
        if (f1 && f2) {
            TEST_CHECK(ggx_file_n_tensors(f1) == ggx_file_n_tensors(f2));
            int same = 1;
            for (size_t i = 0; i < ggx_file_n_tensors(f1); i++) {
                const ggx_tensor_info *x = ggx_file_tensor(f1, i);
                const ggx_tensor_info *y = ggx_file_find_tensor(f2, x->name);
                if (!y || y->size != x->size || memcmp(x->data, y->data, x->size) || y->crc32 != x->crc32)
                    same = 0;
            }
            TEST_CHECK_MSG(same, "fused and single checkpoints give different tensors");
        }
        ggx_file_close(f1);
        ggx_file_close(f2);
    }

    st_model_free(&fx);
    st_model_free(&m32);
    st_model_free(&m16);
    st_model_free(&mq);
    st_model_free(&mf);
    rm_rf(g_root);
    return test_finish("test_convert");
}
