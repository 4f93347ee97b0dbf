/*
 * test_state.c — states and bad input:
 *   - save/load round trip (with an `extra` blob) continues exactly like the original state;
 *   - copy/reset; a state of another model (fingerprint) is refused by load and copy, and the
 *     target state is left unchanged; truncated, corrupt and foreign files are refused too;
 *   - ggx_eval rejects ids >= vocab, negative ids, empty input and shared states before
 *     touching any state;
 *   - .ggx files of another architecture, with a wrong tensor shape or a missing tensor fail
 *     with messages naming the problem.
 */
#include "testutil.h"

#include "ggx.h"
#include "ggxfile.h"
#include "keys.h"
#include "models/xlstm_impl.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

static char g_dir[4096];

static const char *tmp(const char *name) {
    static char buf[4][4300];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static int same_state(const ggx_state *a, const ggx_state *b) {
    return !memcmp(a->mem, b->mem, ggx_model_state_size(a->model));
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A tiny xlstm file written with the writer API; `bad` selects a defect. */
enum { OK_FILE, WRONG_SHAPE, MISSING, OTHER_ARCH };
static ggx_status write_tiny(const char *path, int bad) {
    const int V = 64, E = 32, NH = 2, QK = 16, VD = 32, F = 64;
    ggx_writer *w;
    ggx_status st = ggx_writer_open(path, &w);
    if (st) return st;
    ggx_writer_set_str(w, GGX_KEY_ARCH, bad == OTHER_ARCH ? "llama" : "xlstm");
    ggx_writer_set_u32(w, GGX_KEY_XL_VOCAB, V);
    ggx_writer_set_u32(w, GGX_KEY_XL_EMBD, E);
    ggx_writer_set_u32(w, GGX_KEY_XL_BLOCKS, 1);
    ggx_writer_set_u32(w, GGX_KEY_XL_HEADS, NH);
    ggx_writer_set_u32(w, GGX_KEY_XL_QK_DIM, QK);
    ggx_writer_set_u32(w, GGX_KEY_XL_V_DIM, VD);
    ggx_writer_set_u32(w, GGX_KEY_XL_FFN_DIM, F);
    ggx_writer_set_u32(w, GGX_KEY_XL_CHUNK, 4);
    ggx_writer_set_f32(w, GGX_KEY_XL_GATE_CAP, 15);
    ggx_writer_set_f32(w, GGX_KEY_XL_LOGIT_CAP, 30);
    ggx_writer_set_f32(w, GGX_KEY_XL_NORM_EPS, 1e-6f);
    ggx_writer_set_f32(w, GGX_KEY_XL_EPS, 1e-6f);
    struct { const char *n; int nd; int64_t d0, d1; } ts[] = {
        {"backbone.embeddings.weight", 2, V, E},
        {"backbone.blocks.0.norm_mlstm.weight", 1, E, 1},
        {"backbone.blocks.0.mlstm_layer.q.weight", 2, QK, bad == WRONG_SHAPE ? E - 1 : E},
        {"backbone.blocks.0.mlstm_layer.k.weight", 2, QK, E},
        {"backbone.blocks.0.mlstm_layer.v.weight", 2, VD, E},
        {"backbone.blocks.0.mlstm_layer.ogate_preact.weight", 2, VD, E},
        {"backbone.blocks.0.mlstm_layer.igate_preact.weight", 2, NH, E},
        {"backbone.blocks.0.mlstm_layer.igate_preact.bias", 1, NH, 1},
        {"backbone.blocks.0.mlstm_layer.fgate_preact.weight", 2, NH, E},
        {"backbone.blocks.0.mlstm_layer.fgate_preact.bias", 1, NH, 1},
        {"backbone.blocks.0.mlstm_layer.multihead_norm.weight", 1, VD, 1},
        {"backbone.blocks.0.mlstm_layer.out_proj.weight", 2, E, VD},
        {"backbone.blocks.0.norm_ffn.weight", 1, E, 1},
        {"backbone.blocks.0.ffn.proj_up_gate.weight", 2, F, E},
        {"backbone.blocks.0.ffn.proj_up.weight", 2, F, E},
        {"backbone.blocks.0.ffn.proj_down.weight", 2, E, F},
        {"backbone.out_norm.weight", 1, E, 1},
        {"lm_head.weight", 2, V, E},
    };
    int n = (int)(sizeof ts / sizeof ts[0]);
    for (int i = 0; i < n && !st; i++) {
        if (bad == MISSING && i == 5) continue;
        st = ggx_writer_add_tensor(w, ts[i].n, GGX_TYPE_F32, ts[i].nd, (int64_t[]){ts[i].d0, ts[i].d1});
    }
    for (int i = 0; i < n && !st; i++) {
        if (bad == MISSING && i == 5) continue;
        size_t cnt = (size_t)(ts[i].d0 * ts[i].d1);
        float *d = malloc(cnt * sizeof(float));
        for (size_t k = 0; k < cnt; k++) d[k] = ts[i].nd == 1 ? 1.0f : 0.01f * (float)((k * 7) % 13) - 0.06f;
        st = ggx_writer_write(w, d, cnt * sizeof(float));
        free(d);
    }
    if (st) {
        ggx_writer_abort(w);
        return st;
    }
    return ggx_writer_finish(w);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("state"));
    mkdir(g_dir, 0700);
    char cmd[9000];
    const char *bin = getenv("GGX_BIN");
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type f32 --quiet && '%s' convert '%s' -o '%s' --type bf16 --quiet",
             bin ? bin : "ggx", test_data_path("xlstm-tiny"), tmp("f32.ggx"), bin ? bin : "ggx",
             test_data_path("xlstm-tiny"), tmp("bf16.ggx"));
    TEST_CHECK(system(cmd) == 0);
    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = 2;
    ggx_model *m = NULL, *m2 = NULL;
    TEST_CHECK_MSG(ggx_model_load(tmp("f32.ggx"), &mp, &m) == GGX_OK, "%s", ggx_last_error());
    TEST_CHECK_MSG(ggx_model_load(tmp("bf16.ggx"), &mp, &m2) == GGX_OK, "%s", ggx_last_error());
    if (!m || !m2) return test_finish("test_state");
    TEST_CHECK(ggx_model_fingerprint(m) != ggx_model_fingerprint(m2));
    const int V = ggx_model_n_vocab(m);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    ggx_state *s, *c, *o;
    ggx_state_create(m, &s);
    ggx_state_create(m, &c);
    ggx_state_create(m2, &o);
    float *l1 = malloc(sizeof(float) * V), *l2 = malloc(sizeof(float) * V);
    ggx_seq q = {s, ids, 30, l1, 0};
    TEST_CHECK(ggx_eval(m, &q, 1) == GGX_OK);

    /* save with extra, load into a fresh state, both continue identically */
    const char extra[] = "chat history: hello";
    TEST_CHECK_MSG(ggx_state_save(s, tmp("s.bin"), extra, sizeof extra) == GGX_OK, "%s", ggx_last_error());
    void *ex = NULL;
    size_t exn = 0;
    TEST_CHECK_MSG(ggx_state_load(c, tmp("s.bin"), &ex, &exn) == GGX_OK, "%s", ggx_last_error());
    TEST_CHECK(exn == sizeof extra && ex && !memcmp(ex, extra, exn));
    free(ex);
    TEST_CHECK(same_state(s, c));
    ggx_seq qa = {s, ids + 30, 10, l1, 0}, qb = {c, ids + 30, 10, l2, 0};
    ggx_eval(m, &qa, 1);
    ggx_eval(m, &qb, 1);
    TEST_CHECK(!memcmp(l1, l2, sizeof(float) * V));
    /* copy and reset */
    ggx_state_reset(c);
    TEST_CHECK(ggx_state_copy(c, s) == GGX_OK && same_state(c, s));
    ggx_state_reset(c);
    ggx_state *z;
    ggx_state_create(m, &z);
    TEST_CHECK(same_state(c, z));
    ggx_state_free(z);
    TEST_CHECK(ggx_state_copy(o, s) == GGX_ERR_MISMATCH);

    /* load refusals leave the state unchanged */
    ggx_state_copy(c, s);
    TEST_CHECK(ggx_state_save(s, tmp("s.bin"), NULL, 0) == GGX_OK);
    ggx_state_reset(o);
    ggx_status st = ggx_state_load(o, tmp("s.bin"), NULL, NULL);
    TEST_CHECK_MSG(st == GGX_ERR_MISMATCH && strstr(ggx_last_error(), "another model"),
                   "other model: %d %s", st, ggx_last_error());
    {
        FILE *f = fopen(tmp("s.bin"), "rb");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t)n);
        TEST_CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
        fclose(f);
        f = fopen(tmp("trunc.bin"), "wb");
        fwrite(b, 1, (size_t)n - 100, f);
        fclose(f);
        f = fopen(tmp("hdr.bin"), "wb");
        fwrite(b, 1, 20, f);
        fclose(f);
        b[n / 2] ^= 0x40;
        f = fopen(tmp("corrupt.bin"), "wb");
        fwrite(b, 1, (size_t)n, f);
        fclose(f);
        free(b);
    }
    ggx_state_reset(s); /* s != c now; loads must not change s */
    ggx_state *before;
    ggx_state_create(m, &before);
    ggx_state_copy(before, s);
    st = ggx_state_load(s, tmp("trunc.bin"), NULL, NULL);
    TEST_CHECK_MSG(st == GGX_ERR_FORMAT && strstr(ggx_last_error(), "truncated"), "trunc: %s", ggx_last_error());
    st = ggx_state_load(s, tmp("hdr.bin"), NULL, NULL);
    TEST_CHECK_MSG(st == GGX_ERR_FORMAT, "short header: %s", ggx_last_error());
    st = ggx_state_load(s, tmp("corrupt.bin"), NULL, NULL);
    TEST_CHECK_MSG(st == GGX_ERR_CHECKSUM, "corrupt: %s", ggx_last_error());
    st = ggx_state_load(s, tmp("f32.ggx"), NULL, NULL);
    TEST_CHECK_MSG(st == GGX_ERR_FORMAT && strstr(ggx_last_error(), "not a ggx state"), "foreign: %s", ggx_last_error());
    st = ggx_state_load(s, tmp("nope.bin"), NULL, NULL);
    TEST_CHECK(st == GGX_ERR_IO);
    TEST_CHECK(same_state(s, before));
    st = ggx_state_save(s, "/nonexistent-dir/x/s.bin", NULL, 0);
    TEST_CHECK(st == GGX_ERR_IO && !file_exists("/nonexistent-dir/x/s.bin"));

    /* eval refusals happen before any state changes */
    ggx_state_copy(s, c);
    ggx_state_copy(before, c);
    ggx_state *s2;
    ggx_state_create(m, &s2);
    int32_t bad_ids[3] = {1, V, 2}, neg[2] = {3, -1};
    ggx_seq b1[2] = {{s, ids, 5, l1, 0}, {s2, bad_ids, 3, l2, 0}};
    st = ggx_eval(m, b1, 2);
    TEST_CHECK_MSG(st == GGX_ERR_INVALID_ARG && strstr(ggx_last_error(), "out of range"), "id>=V: %s", ggx_last_error());
    ggx_seq b2 = {s, neg, 2, l1, 0};
    TEST_CHECK(ggx_eval(m, &b2, 1) == GGX_ERR_INVALID_ARG);
    ggx_seq b3 = {s, ids, 0, l1, 0};
    st = ggx_eval(m, &b3, 1);
    TEST_CHECK_MSG(st == GGX_ERR_INVALID_ARG && strstr(ggx_last_error(), "empty"), "empty: %s", ggx_last_error());
    ggx_seq b4[2] = {{s, ids, 2, l1, 0}, {s, ids, 2, l2, 0}};
    TEST_CHECK(ggx_eval(m, b4, 2) == GGX_ERR_INVALID_ARG);
    ggx_seq b5 = {o, ids, 2, l1, 0};
    TEST_CHECK(ggx_eval(m, &b5, 1) == GGX_ERR_MISMATCH);
    TEST_CHECK(ggx_eval(m, NULL, 1) == GGX_ERR_INVALID_ARG);
    TEST_CHECK(same_state(s, before));
    ggx_state *zero;
    ggx_state_create(m, &zero);
    TEST_CHECK(same_state(s2, zero));
    ggx_state_free(zero);

    /* bad model files */
    ggx_model *bm = NULL;
    TEST_CHECK(write_tiny(tmp("ok.ggx"), OK_FILE) == GGX_OK);
    st = ggx_model_load(tmp("ok.ggx"), &mp, &bm);
    TEST_CHECK_MSG(st == GGX_OK, "writer-made tiny model: %s", ggx_last_error());
    if (bm) { /* and it runs */
        ggx_state *ts;
        ggx_state_create(bm, &ts);
        float lg[64];
        int32_t t3[3] = {1, 2, 3};
        ggx_seq tq = {ts, t3, 3, lg, 0};
        TEST_CHECK(ggx_eval(bm, &tq, 1) == GGX_OK && isfinite(lg[0]));
        ggx_state_free(ts);
        ggx_model_free(bm);
        bm = NULL;
    }
    TEST_CHECK(write_tiny(tmp("arch.ggx"), OTHER_ARCH) == GGX_OK);
    st = ggx_model_load(tmp("arch.ggx"), &mp, &bm);
    TEST_CHECK_MSG(st == GGX_ERR_UNSUPPORTED && strstr(ggx_last_error(), "llama"), "arch: %s", ggx_last_error());
    TEST_CHECK(write_tiny(tmp("shape.ggx"), WRONG_SHAPE) == GGX_OK);
    st = ggx_model_load(tmp("shape.ggx"), &mp, &bm);
    TEST_CHECK_MSG(st == GGX_ERR_SHAPE && strstr(ggx_last_error(), "mlstm_layer.q.weight: expected [16, 32], file has [16, 31]"),
                   "shape: %s", ggx_last_error());
    TEST_CHECK(write_tiny(tmp("missing.ggx"), MISSING) == GGX_OK);
    st = ggx_model_load(tmp("missing.ggx"), &mp, &bm);
    TEST_CHECK_MSG(st == GGX_ERR_SHAPE && strstr(ggx_last_error(), "ogate_preact.weight: missing"), "missing: %s", ggx_last_error());
    TEST_CHECK(bm == NULL);
    st = ggx_model_load(tmp("s.bin"), &mp, &bm);
    TEST_CHECK(st != GGX_OK && bm == NULL);

    ggx_state_free(s), ggx_state_free(s2), ggx_state_free(c), ggx_state_free(o), ggx_state_free(before);
    ggx_model_free(m), ggx_model_free(m2);
    free(l1), free(l2);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    TEST_CHECK(system(cmd) == 0);
    return test_finish("test_state");
}
