/*
 * cuda_testkit.h — what the CUDA op tests share (test_cuda_ops.c, test_cuda_mmq.c): a random
 * source, relative L2 error against a double reference, a tiny graph builder whose op nodes get
 * fresh device buffers, NaN poisoning, weights in the file layout uploaded through weights_map
 * (repacked like a model's) with their exact values in double, and the double matrix product.
 * Include once per test, after testutil.h, inside the GGX_USE_CUDA part.
 * CUDA_TESTKIT_SEED (before the include) picks the random sequence; cuda_testkit_start creates `be`.
 */
#ifndef GGX_CUDA_TESTKIT_H
#define GGX_CUDA_TESTKIT_H

#include "backends/cuda/ggx_cuda.h"
#include "ggx/backend.h"
#include "ggx/error.h"
#include "ggx/quants.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ggx_backend *be;

/* The test's start: `be` on device 0. Returns -1 when ready, else the exit code for main
 * (TEST_SKIP without a GPU, 1 when the backend cannot be created). */
static inline int cuda_testkit_start(const char *test) {
    if (ggx_cuda_device_count() < 1) {
        printf("%s: no CUDA device, skipped\n", test);
        return TEST_SKIP;
    }
    ggx_backend_params p = {0, 0};
    if (ggx_backend_cuda_init(&p, &be) != GGX_OK) {
        fprintf(stderr, "cuda init: %s\n", ggx_last_error());
        return 1;
    }
    printf("device: %s\n", ggx_cuda_device_name(be));
    return -1;
}
#ifndef CUDA_TESTKIT_SEED
#define CUDA_TESTKIT_SEED 0x1234567887654321ull
#endif
static uint64_t rng_state = CUDA_TESTKIT_SEED;

static inline double urand(void) { /* [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static inline float *rand_f32(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(scale * urand());
    return p;
}

static inline double rel_err(const float *out, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ------------------------------------------------------------------ tiny graph builder */

typedef struct {
    ggx_tensor t[64];
    ggx_tensor *nodes[64];
    ggx_graph g;
    int nt;
} tgraph;

static inline void tg_init(tgraph *tg) {
    memset(tg, 0, sizeof *tg);
    tg->g.tensors = tg->t;
    tg->g.cap = 64;
    tg->g.nodes = tg->nodes;
}
static inline ggx_tensor *tg_new(tgraph *tg, enum ggx_type type, int64_t d0, int64_t d1, void *data) {
    ggx_tensor *t = &tg->t[tg->nt];
    t->id = tg->nt++;
    t->type = type;
    t->n_dims = d1 > 0 ? 2 : 1;
    t->dims[0] = d0;
    t->dims[1] = d1 > 0 ? d1 : 1;
    t->dims[2] = t->dims[3] = 1;
    t->data = data;
    snprintf(t->name, sizeof t->name, "t%d", t->id);
    return t;
}
/* an op node [d0, d1] f32 with a fresh device buffer */
static inline ggx_tensor *tg_op(tgraph *tg, enum ggx_op op, int64_t d0, int64_t d1, ggx_tensor *a, ggx_tensor *b) {
    void *p = NULL;
    ggx_status st = be->iface.alloc(be, (size_t)(d0 * (d1 > 0 ? d1 : 1)) * 4, &p);
    TEST_CHECK(st == GGX_OK);
    ggx_tensor *t = tg_new(tg, GGX_TYPE_F32, d0, d1, p);
    t->op = op;
    t->src[0] = a;
    t->src[1] = b;
    tg->nodes[tg->g.n_nodes++] = t;
    return t;
}
static inline void *dev_from(const void *host, size_t n) {
    void *p = NULL;
    TEST_CHECK(be->iface.alloc(be, n, &p) == GGX_OK);
    TEST_CHECK(be->iface.upload(be, p, host, n) == GGX_OK);
    return p;
}
static inline int64_t t_nel(const ggx_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->dims[d];
    return n;
}
static inline float *host_of(const ggx_tensor *t) {
    const int64_t n = t_nel(t);
    float *h = malloc((size_t)n * 4);
    TEST_CHECK(be->iface.download(be, h, t->data, (size_t)n * 4) == GGX_OK);
    return h;
}
static inline void poison(const ggx_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->dims[d];
    uint8_t *p = malloc((size_t)n * 4);
    memset(p, 0xff, (size_t)n * 4); /* NaN */
    be->iface.upload(be, t->data, p, (size_t)n * 4);
    free(p);
}
static inline void tg_free(tgraph *tg) {
    for (int i = 0; i < tg->nt; i++)
        if (tg->t[i].op != GGX_OP_NONE) be->iface.release(be, tg->t[i].data);
}

/* ------------------------------------------------------------------ weights */

typedef struct {
    enum ggx_type type;
    int64_t rows, cols;
    void *host;    /* file layout */
    double *deq;   /* [rows, cols] exact values */
    void *dev;
} weight;

/* random weights of type t, |w| ~ scale; vary_blocks: 32-blocks' scales vary over two orders
 * of magnitude (quantized types' per-block scales matter) */
static inline weight make_weight_ex(enum ggx_type t, int64_t rows, int64_t cols, float scale, int vary_blocks) {
    weight w = {t, rows, cols, NULL, NULL, NULL};
    const size_t rs = ggx_row_size(t, cols);
    w.host = malloc(rs * (size_t)rows);
    w.deq = malloc((size_t)(rows * cols) * sizeof(double));
    float *src = rand_f32(cols, scale), *back = malloc((size_t)cols * 4);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            const double blk = vary_blocks ? 0.1 + 0.9 * fabs(sin((double)(r * 7 + c / 32) * 1.3)) : 1.0;
            src[c] = (float)(scale * blk * urand());
        }
        uint8_t *dst = (uint8_t *)w.host + rs * (size_t)r;
        switch (t) {
        case GGX_TYPE_F32: memcpy(dst, src, (size_t)cols * 4); break;
        case GGX_TYPE_F16:
            for (int64_t c = 0; c < cols; c++) ((uint16_t *)dst)[c] = ggx_f32_to_fp16(src[c]);
            break;
        case GGX_TYPE_BF16:
            for (int64_t c = 0; c < cols; c++) ((uint16_t *)dst)[c] = ggx_f32_to_bf16(src[c]);
            break;
        default: TEST_CHECK(ggx_quantize_row(t, src, dst, cols) == 0); break;
        }
        ggx_to_f32(t, dst, back, cols);
        for (int64_t c = 0; c < cols; c++) w.deq[r * cols + c] = back[c];
    }
    free(src);
    free(back);
    int64_t dims[2] = {rows, cols};
    ggx_status st = be->iface.weights_map(be, w.host, rs * (size_t)rows, t, 2, dims, &w.dev);
    TEST_CHECK_MSG(st == GGX_OK, "weights_map %s: %s", ggx_type_name(t), ggx_last_error());
    return w;
}
static inline weight make_weight(enum ggx_type t, int64_t rows, int64_t cols, float scale) {
    return make_weight_ex(t, rows, cols, scale, 0);
}
static inline void free_weight(weight *w) {
    be->iface.weights_unmap(be, w->dev);
    free(w->host);
    free(w->deq);
}

/* y[n, rows] = x[n, cols] @ W^T in double */
static inline void ref_mm(const weight *w, const double *x, int n, double *y) {
    for (int j = 0; j < n; j++)
        for (int64_t r = 0; r < w->rows; r++) {
            double s = 0;
            const double *wr = w->deq + r * w->cols, *xr = x + (int64_t)j * w->cols;
            for (int64_t c = 0; c < w->cols; c++) s += wr[c] * xr[c];
            y[(int64_t)j * w->rows + r] = s;
        }
}
static inline double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

#endif
