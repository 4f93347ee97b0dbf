/*
 * test_convert_errors.c — every malformed checkpoint the converter must reject: a clear error
 * that names the problem, a non-OK status, and nothing left at (or next to) the output path.
 * Each broken checkpoint is generated from the xlstm-tiny fixture in a scratch directory.
 */
#include "convert/convert.h"
#include "convert/safetensors.h"
#include "test_convert_util.h"
#include "testutil.h"

#include <fcntl.h>

static char g_root[4096];
static st_model g_fx;

static int g_type = -1; /* output type for expect() */

static void expect(const char *dir, const char *label, ggx_status want, const char *s1, const char *s2) {
    char out[4400];
    snprintf(out, sizeof out, "%s/out-%s.ggx", g_root, label);
    ggx_convert_params p = ggx_convert_default_params();
    p.out_type = g_type;
    ggx_status s = ggx_convert_hf(dir, out, &p, NULL);
    const char *e = ggx_last_error();
    TEST_CHECK_MSG(s == want && strstr(e, s1) && (!s2 || strstr(e, s2)),
                   "%s: got status %d '%s', want %d with '%s'%s%s", label, (int)s, e, (int)want, s1,
                   s2 ? " and " : "", s2 ? s2 : "");
    char pre[300];
    snprintf(pre, sizeof pre, "out-%s.ggx", label);
    TEST_CHECK_MSG(access(out, F_OK) != 0 && count_prefixed(g_root, pre) == 0,
                   "%s: something was left at the output path", label);
    if (s == want) printf("ok %-22s %s\n", label, e);
}

/* A checkpoint dir with the fixture's aux files and one model.safetensors of model `m`. */
static const char *single_dir(const char *name, st_model *m, const uint64_t (*offs)[2]) {
    const char *d = ck_dir(g_root, name, 1);
    char p[8400];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    if (st_write(p, m->t, m->n, offs)) fprintf(stderr, "cannot write %s\n", p);
    return d;
}

static void fresh(st_model *m) {
    st_model_free(m);
    st_model_load_fixture(m);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "%s", test_tmpdir("convert-errors"));
    rm_rf(g_root);
    mkdir(g_root, 0755);
    if (st_model_load_fixture(&g_fx)) return 1;
    st_model m = {0};
    char p[8400];
    const char *d;

    /* the unmodified copy converts (so each failure below is due to its one change) */
    d = ck_fixture_copy(g_root, "good");
    {
        char out[4400];
        snprintf(out, sizeof out, "%s/good.ggx", g_root);
        ggx_status s = ggx_convert_hf(d, out, NULL, NULL);
        TEST_CHECK_MSG(s == GGX_OK, "control: %s", ggx_last_error());
        unlink(out);
    }
    fresh(&m);
    d = single_dir("good-single", &m, NULL);
    {
        char out[4400];
        snprintf(out, sizeof out, "%s/good-single.ggx", g_root);
        TEST_CHECK_MSG(ggx_convert_hf(d, out, NULL, NULL) == GGX_OK, "control: %s", ggx_last_error());
        unlink(out);
    }

    /* directory-level problems */
    d = ck_fixture_copy(g_root, "noconfig");
    snprintf(p, sizeof p, "%s/config.json", d);
    unlink(p);
    expect(d, "noconfig", GGX_ERR_IO, "config.json is missing", NULL);

    expect("/nonexistent-ggx-dir", "nodir", GGX_ERR_IO, "not a directory", NULL);

    d = ck_fixture_copy(g_root, "modeltype");
    snprintf(p, sizeof p, "%s/config.json", d);
    edit_file(p, "\"model_type\": \"xlstm\"", "\"model_type\": \"llama\"");
    expect(d, "modeltype", GGX_ERR_UNSUPPORTED, "model_type \"llama\" is not supported", NULL);

    d = ck_fixture_copy(g_root, "badjson");
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\"model_type\": \"xlstm\", ");
    expect(d, "badjson", GGX_ERR_FORMAT, "config.json: not a JSON object", NULL);

    d = ck_fixture_copy(g_root, "noheads");
    snprintf(p, sizeof p, "%s/config.json", d);
    edit_file(p, "\"num_heads\": 4,", "");
    expect(d, "noheads", GGX_ERR_FORMAT, "'num_heads' is missing", NULL);

    d = ck_fixture_copy(g_root, "noshard");
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", d);
    unlink(p);
    expect(d, "noshard", GGX_ERR_IO, "model-00002-of-00003.safetensors is missing", NULL);

    d = ck_dir(g_root, "noweights", 1);
    expect(d, "noweights", GGX_ERR_IO, "no model.safetensors", NULL);

    d = ck_fixture_copy(g_root, "notok");
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    unlink(p);
    expect(d, "notok", GGX_ERR_IO, "tokenizer.json is missing", NULL);

    d = ck_fixture_copy(g_root, "smallvocab");
    snprintf(p, sizeof p, "%s/config.json", d);
    edit_file(p, "\"vocab_size\": 2048", "\"vocab_size\": 1024");
    expect(d, "smallvocab", GGX_ERR_SHAPE, "tokenizer.json has 2000 ids", "vocab_size is 1024");

    d = ck_fixture_copy(g_root, "badindex");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    edit_file(p, "\"lm_head.weight\": \"model-00003-of-00003.safetensors\"",
              "\"lm_head.weight\": \"model-00001-of-00003.safetensors\"");
    expect(d, "badindex", GGX_ERR_FORMAT, "'lm_head.weight' is not in shard", NULL);

    d = ck_fixture_copy(g_root, "escindex");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    edit_file(p, "\"lm_head.weight\": \"model-00003-of-00003.safetensors\"",
              "\"lm_head.weight\": \"../model-00003-of-00003.safetensors\"");
    expect(d, "escindex", GGX_ERR_FORMAT, "not a plain file name", NULL);

    /* safetensors-level problems */
    d = ck_fixture_copy(g_root, "hdrbig");
    snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", d);
    {
        int fd = open(p, O_WRONLY);
        uint64_t hl = 1048696; /* the file's own size: header + 8 > file */
        TEST_CHECK(pwrite(fd, &hl, 8, 0) == 8);
        close(fd);
    }
    expect(d, "hdrbig", GGX_ERR_FORMAT, "larger than the file", "model-00003-of-00003");

    d = ck_fixture_copy(g_root, "hdr100mb");
    snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", d);
    {
        /* a sparse 120 MB shard whose header claims 110 MB: fits the file, exceeds the limit */
        int fd = open(p, O_WRONLY | O_TRUNC);
        uint64_t hl = 110u * 1000u * 1000u;
        TEST_CHECK(pwrite(fd, &hl, 8, 0) == 8);
        TEST_CHECK(ftruncate(fd, 120 * 1000 * 1000) == 0);
        close(fd);
    }
    expect(d, "hdr100mb", GGX_ERR_FORMAT, "exceeds the 100000000-byte limit", NULL);

    d = ck_fixture_copy(g_root, "truncated");
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", d);
    TEST_CHECK(truncate(p, 2963456 - 1000) == 0);
    expect(d, "truncated", GGX_ERR_FORMAT, "past the end of the data", "truncated file?");

    d = ck_fixture_copy(g_root, "tiny-shard");
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", d);
    TEST_CHECK(truncate(p, 5) == 0);
    expect(d, "tiny-shard", GGX_ERR_FORMAT, "too short for a safetensors header", NULL);

    d = ck_fixture_copy(g_root, "hdrjson");
    snprintf(p, sizeof p, "%s/model-00001-of-00003.safetensors", d);
    {
        int fd = open(p, O_WRONLY);
        TEST_CHECK(pwrite(fd, "[", 1, 8) == 1);
        close(fd);
    }
    expect(d, "hdrjson", GGX_ERR_FORMAT, "header is not a JSON object", NULL);

    {   /* two tensors claiming the same bytes */
        fresh(&m);
        uint64_t (*offs)[2] = calloc((size_t)m.n, sizeof *offs);
        uint64_t o = 0;
        for (int i = 0; i < m.n; i++) {
            offs[i][0] = o;
            offs[i][1] = o + m.t[i].nbytes;
            o += m.t[i].nbytes;
        }
        /* tensor 1 starts 2 bytes inside tensor 0 (sizes unchanged, so only the overlap is wrong) */
        offs[1][0] -= 2;
        offs[1][1] -= 2;
        d = single_dir("overlap", &m, (const uint64_t(*)[2])offs);
        expect(d, "overlap", GGX_ERR_FORMAT, "overlap", NULL);

        offs[1][0] += 2;
        offs[1][1] += 2;
        offs[m.n - 1][0] += 64;
        offs[m.n - 1][1] += 64;
        d = single_dir("outofrange", &m, (const uint64_t(*)[2])offs);
        expect(d, "outofrange", GGX_ERR_FORMAT, "past the end of the data", m.t[m.n - 1].name);

        offs[m.n - 1][0] -= 64;
        offs[m.n - 1][1] -= 66;
        d = single_dir("offsize", &m, (const uint64_t(*)[2])offs);
        expect(d, "offsize", GGX_ERR_FORMAT, "data_offsets span", m.t[m.n - 1].name);
        free(offs);
    }

    fresh(&m);
    snprintf(st_find(&m, "backbone.out_norm.weight")->dtype, 16, "F7");
    d = single_dir("dtype-unknown", &m, NULL);
    expect(d, "dtype-unknown", GGX_ERR_UNSUPPORTED, "unknown dtype 'F7'", "backbone.out_norm.weight");

    fresh(&m);
    {   /* a real but unsupported dtype: I16 has the same element size as BF16 */
        snprintf(st_find(&m, "backbone.out_norm.weight")->dtype, 16, "I16");
        d = single_dir("dtype-i16", &m, NULL);
        expect(d, "dtype-i16", GGX_ERR_UNSUPPORTED, "dtype I16 is not supported", NULL);
    }

    /* plan-level problems */
    fresh(&m);
    {
        st_t *q = st_find(&m, "backbone.blocks.1.mlstm_layer.q.weight");
        q->dims[0] = 256; /* [128, 256] -> [256, 128]: same bytes, wrong shape */
        q->dims[1] = 128;
        d = single_dir("shape", &m, NULL);
        expect(d, "shape", GGX_ERR_SHAPE, "backbone.blocks.1.mlstm_layer.q.weight: expected [128, 256],"
               " file has [256, 128]", NULL);
    }

    fresh(&m);
    st_remove(&m, "backbone.blocks.2.ffn.proj_down.weight");
    d = single_dir("missing", &m, NULL);
    expect(d, "missing", GGX_ERR_SHAPE, "backbone.blocks.2.ffn.proj_down.weight is missing", "[256, 704]");

    fresh(&m);
    {
        int64_t dims[1] = {4};
        st_add(&m, "backbone.blocks.3.norm_mlstm.weight", "BF16", 1, dims, 8);
        d = single_dir("extra", &m, NULL);
        expect(d, "extra", GGX_ERR_SHAPE, "unexpected tensor backbone.blocks.3.norm_mlstm.weight", NULL);
    }

    fresh(&m);
    {   /* both q and query for the same tensor */
        st_t *q = st_find(&m, "backbone.blocks.0.mlstm_layer.q.weight");
        int64_t qd[2] = {q->dims[0], q->dims[1]}; /* st_add may move the array q points into */
        st_t *n = st_add(&m, "backbone.blocks.0.mlstm_layer.query.weight", "BF16", 2, qd, q->nbytes);
        memcpy(n->data, st_find(&m, "backbone.blocks.0.mlstm_layer.q.weight")->data, n->nbytes);
        d = single_dir("bothnames", &m, NULL);
        expect(d, "bothnames", GGX_ERR_FORMAT, "under both names", NULL);
    }

    /* a NaN in a matrix cannot be quantized: named error, nothing written */
    fresh(&m);
    {
        st_t *h = st_find(&m, "lm_head.weight");
        uint16_t nan = 0x7fc0;
        memcpy(h->data + 2 * (5 * 256 + 7), &nan, 2); /* row 5 */
        d = single_dir("nan", &m, NULL);
        g_type = GGX_TYPE_Q8_0;
        expect(d, "nan", GGX_ERR_FORMAT, "tensor lm_head.weight: row 5 cannot be quantized to q8_0", NULL);
        g_type = -1;
    }

    /* output problems: the "directory" is a regular file (tests run as root, so a read-only
     * directory would not stop us) */
    d = ck_fixture_copy(g_root, "outdir");
    {
        snprintf(p, sizeof p, "%s/regular-file", g_root);
        write_text(p, "not a directory");
        char out[8500];
        snprintf(out, sizeof out, "%s/out.ggx", p);
        ggx_status s = ggx_convert_hf(d, out, NULL, NULL);
        TEST_CHECK_MSG(s == GGX_ERR_IO && strstr(ggx_last_error(), "cannot create the output file"),
                       "outdir: %d %s", (int)s, ggx_last_error());
        printf("ok %-22s %s\n", "outdir", ggx_last_error());
    }

    /* a quantized type that cannot be produced is refused before anything is written */
    {
        char out[4400];
        snprintf(out, sizeof out, "%s/out-i32.ggx", g_root);
        ggx_convert_params pp = ggx_convert_default_params();
        pp.out_type = GGX_TYPE_I32;
        d = ck_fixture_copy(g_root, "i32");
        ggx_status s = ggx_convert_hf(d, out, &pp, NULL);
        /* i32 is a plain type: the converter has no float -> int path; it must fail cleanly */
        TEST_CHECK_MSG(s != GGX_OK && access(out, F_OK) != 0, "i32 output: %d", (int)s);
    }

    st_model_free(&m);
    st_model_free(&g_fx);
    rm_rf(g_root);
    return test_finish("test_convert_errors");
}
