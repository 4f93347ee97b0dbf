/*
 * cpu_ops.c — the CPU implementation of every graph op. Each op is a pool job that splits its
 * work so that every output element is computed by the same code in the same order whatever
 * the thread count (so -t 1 and -t N give bit-identical results).
 */
#include "cpu_backend.h"
#include "cpu_mlstm.h"
#include "cpu_quant.h"

#include "error.h"
#include "quants.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_job {
    ggx_cpu_ctx *ctx;
    const ggx_cpu_kernels *kr;
    ggx_tensor *node;
    const ggx_batch *batch;
} op_job;

static inline int64_t cols_of(const ggx_tensor *t) { return t->dims[t->n_dims - 1]; }

/* Work is cut into chunks whose boundaries depend only on the op's shape (never on the
 * thread count); [b, e) is chunk c of n items cut into pieces of `per`. */
static inline void chunk_range(int64_t n, int64_t per, int64_t c, int64_t *b, int64_t *e) {
    *b = c * per;
    *e = *b + per < n ? *b + per : n;
}
static inline int64_t n_chunks_of(int64_t n, int64_t per) { return (n + per - 1) / per; }

#define ROWS_PER_CHUNK 16     /* activation rows of row-wise ops */
#define WROWS_PER_CHUNK 32    /* weight rows of the small-batch matmul (at least) */
#define WBYTES_PER_CHUNK (256 << 10)

/* Weight rows per chunk of the small-batch matmul: at least 32 rows and about 256 KiB of weights.
 * Each chunk is a sequential stream for the hardware prefetchers; short ones (32 rows of a
 * 4096-column q4_0 matrix are 72 KiB) restart the stream too often: measured +12-15% for q4_0
 * decode matvecs with 128-row chunks (docs/benchmarks.md, "quantized decode"). bf16/f32 rows of
 * >= 4096 columns keep 32. Depends on the weights only, never on the thread count. */
static int64_t wrows_per_chunk(const ggx_tensor *w) {
    const int64_t b = (int64_t)ggx_row_size(w->type, w->dims[1]);
    const int64_t r = b > 0 ? (WBYTES_PER_CHUNK + b - 1) / b : WROWS_PER_CHUNK;
    return r > WROWS_PER_CHUNK ? (r + 15) & ~(int64_t)15 : WROWS_PER_CHUNK;
}

/* MUL_MAT through the int8 kernels (activations quantized once into ctx->qx): quantized weights
 * for small batches always, for prefill where they beat dequantize + sgemm (AVX-512 VNNI) */
static int use_qmatmul(const ggx_tensor *w, int64_t T) {
    return ggx_cpu_quant_supported(w->type) && (T < GGX_CPU_GEMM_MIN || ggx_cpu_qmatmul_prefill_ok(w->type));
}

/* ------------------------------------------------------------------------- weight rows -- */

/* Convert weight rows [r0, r1) of W [*, cols] (any type) to f32 dst [(r1-r0), cols]. */
static void rows_to_f32(const ggx_cpu_kernels *kr, enum ggx_type t, const void *W, int64_t cols,
                        int64_t r0, int64_t r1, float *dst) {
    size_t rs = ggx_row_size(t, cols);
    for (int64_t r = r0; r < r1; r++) {
        const char *src = (const char *)W + (size_t)r * rs;
        float *d = dst + (r - r0) * cols;
        if (ggx_cpu_quant_supported(t)) { /* the quantization engineer's fast path */
            ggx_cpu_dequant_rows(t, src, cols, d, 0, 1);
            continue;
        }
        switch (t) {
        case GGX_TYPE_F32: memcpy(d, src, (size_t)cols * sizeof(float)); break;
        case GGX_TYPE_BF16: kr->cvt_bf16((const uint16_t *)src, d, cols); break;
        case GGX_TYPE_F16: kr->cvt_f16((const uint16_t *)src, d, cols); break;
        default: ggx_dequantize_row(t, src, d, cols); break;
        }
    }
}

/* ---------------------------------------------------------------------------- MUL_MAT -- */

static void job_mul_mat(void *vp, int64_t chunk, int ith) {
    op_job *j = vp;
    const ggx_tensor *w = j->node->src[0], *x = j->node->src[1];
    const int64_t O = w->dims[0], In = w->dims[1], T = ggx_tensor_rows(x);
    const float *xd = x->data;
    float *y = j->node->data;
    float *scratch = j->ctx->scratch[ith];
    const size_t rs = ggx_row_size(w->type, In);

    if (use_qmatmul(w, T)) {
        /* the activations were quantized to int8 in ctx->qx; for prefill the int8 kernels block
         * the tokens so a chunk's weight rows stay in L2 (1.4-1.6x dequantize + sgemm with
         * AVX-512 VNNI, docs/benchmarks.md) */
        int64_t r0, r1;
        chunk_range(O, wrows_per_chunk(w), chunk, &r0, &r1);
        ggx_cpu_qmatmul(w->type, w->data, In, j->ctx->qx, T, y, O, r0, r1);
        return;
    }
    if (T < GGX_CPU_GEMM_MIN) {
        /* every weight row is read once and dotted with all T activations */
        int64_t r0, r1;
        chunk_range(O, wrows_per_chunk(w), chunk, &r0, &r1);
        float out[GGX_CPU_GEMM_MIN];
        for (int64_t r = r0; r < r1; r++) {
            const char *wr = (const char *)w->data + (size_t)r * rs;
            switch (w->type) {
            case GGX_TYPE_F32: j->kr->dot_f32((const float *)wr, xd, In, (int)T, In, out); break;
            case GGX_TYPE_BF16: j->kr->dot_bf16((const uint16_t *)wr, xd, In, (int)T, In, out); break;
            case GGX_TYPE_F16: j->kr->dot_f16((const uint16_t *)wr, xd, In, (int)T, In, out); break;
            default:
                ggx_dequantize_row(w->type, wr, scratch, In);
                j->kr->dot_f32(scratch, xd, In, (int)T, In, out);
                break;
            }
            for (int64_t t = 0; t < T; t++) y[t * O + r] = out[t];
        }
        return;
    }
    /* prefill: fixed tiles of weight rows (independent of the thread count), f32 sgemm */
    {
        int64_t r0, r1;
        chunk_range(O, GGX_CPU_TILE, chunk, &r0, &r1);
        const float *wt;
        if (w->type == GGX_TYPE_F32) {
            wt = (const float *)w->data + r0 * In;
        } else {
            rows_to_f32(j->kr, w->type, w->data, In, r0, r1, scratch);
            wt = scratch;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)(r1 - r0), (int)In, 1.0f,
                    xd, (int)In, wt, (int)In, 0.0f, y + r0, (int)O);
    }
}

/* --------------------------------------------------------------------- row-wise ops -- */

static void job_get_rows(void *vp, int64_t chunk, int ith) {
    (void)ith;
    op_job *j = vp;
    const ggx_tensor *tab = j->node->src[0], *ids = j->node->src[1];
    const int64_t n = ids->dims[0], cols = tab->dims[1], V = tab->dims[0];
    const size_t rs = ggx_row_size(tab->type, cols);
    const int32_t *id = ids->data;
    float *y = j->node->data;
    int64_t b, e;
    chunk_range(n, ROWS_PER_CHUNK, chunk, &b, &e);
    for (int64_t r = b; r < e; r++) {
        int64_t row = id[r];
        if (row < 0 || row >= V) { /* the model validates ids; never read out of bounds */
            memset(y + r * cols, 0, (size_t)cols * sizeof(float));
            continue;
        }
        rows_to_f32(j->kr, tab->type, (const char *)tab->data + (size_t)row * rs, cols, 0, 1,
                    y + r * cols);
    }
}

static void job_binary(void *vp, int64_t chunk, int ith) {
    (void)ith;
    op_job *j = vp;
    const ggx_tensor *a = j->node->src[0], *bt = j->node->src[1];
    const int64_t rows = ggx_tensor_rows(a), cols = cols_of(a);
    const bool bcast = ggx_tensor_nelements(bt) != ggx_tensor_nelements(a);
    const float *ad = a->data, *bd = bt->data;
    float *y = j->node->data;
    const bool mul = j->node->op == GGX_OP_MUL;
    int64_t b, e;
    chunk_range(rows, ROWS_PER_CHUNK, chunk, &b, &e);
    for (int64_t r = b; r < e; r++) {
        const float *ar = ad + r * cols, *br = bcast ? bd : bd + r * cols;
        float *yr = y + r * cols;
        if (mul)
            for (int64_t c = 0; c < cols; c++) yr[c] = ar[c] * br[c];
        else
            for (int64_t c = 0; c < cols; c++) yr[c] = ar[c] + br[c];
    }
}

static void job_rms_norm(void *vp, int64_t chunk, int ith) {
    (void)ith;
    op_job *j = vp;
    const ggx_tensor *x = j->node->src[0], *w = j->node->src[1];
    const int64_t rows = ggx_tensor_rows(x), cols = cols_of(x);
    const float eps = j->node->f[0];
    const float *xd = x->data, *wd = w->data;
    float *y = j->node->data;
    int64_t b, e;
    chunk_range(rows, ROWS_PER_CHUNK, chunk, &b, &e);
    for (int64_t r = b; r < e; r++) {
        const float *xr = xd + r * cols;
        float *yr = y + r * cols;
        double ss = 0.0;
        for (int64_t c = 0; c < cols; c++) ss += (double)xr[c] * xr[c];
        const float inv = 1.0f / sqrtf((float)(ss / (double)cols) + eps);
        for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] * inv) * wd[c];
    }
}

static void job_head_norm(void *vp, int64_t chunk, int ith) {
    (void)ith;
    op_job *j = vp;
    const ggx_tensor *x = j->node->src[0], *w = j->node->src[1];
    const int64_t rows = ggx_tensor_rows(x), cols = cols_of(x);
    const int nh = j->node->i[0];
    const int64_t D = cols / nh;
    const float eps = j->node->f[0];
    const float *xd = x->data, *wd = w->data;
    float *y = j->node->data;
    int64_t b, e;
    chunk_range(rows * nh, ROWS_PER_CHUNK, chunk, &b, &e);
    for (int64_t u = b; u < e; u++) {
        const int64_t r = u / nh, h = u % nh;
        const float *xr = xd + r * cols + h * D;
        const float *wr = wd + h * D;
        float *yr = y + r * cols + h * D;
        double s = 0.0;
        for (int64_t c = 0; c < D; c++) s += xr[c];
        const double mean = s / (double)D;
        double vs = 0.0;
        for (int64_t c = 0; c < D; c++) vs += ((double)xr[c] - mean) * ((double)xr[c] - mean);
        const float mu = (float)mean;
        const float inv = 1.0f / sqrtf((float)(vs / (double)D) + eps);
        for (int64_t c = 0; c < D; c++) yr[c] = ((xr[c] - mu) * inv) * wr[c];
    }
}

static void job_pointwise(void *vp, int64_t chunk, int ith) {
    (void)ith;
    op_job *j = vp;
    const ggx_tensor *a = j->node->src[0], *bt = j->node->src[1];
    const int64_t rows = ggx_tensor_rows(a), cols = cols_of(a);
    const float *ad = a->data, *bd = bt ? bt->data : NULL;
    float *y = j->node->data;
    int64_t b, e;
    chunk_range(rows, ROWS_PER_CHUNK, chunk, &b, &e);
    for (int64_t r = b; r < e; r++) {
        const float *ar = ad + r * cols;
        float *yr = y + r * cols;
        switch (j->node->op) {
        case GGX_OP_SIGMOID_MUL: {
            const float *br = bd + r * cols;
            for (int64_t c = 0; c < cols; c++) yr[c] = br[c] / (1.0f + expf(-ar[c]));
            break;
        }
        case GGX_OP_SWIGLU: {
            const float *br = bd + r * cols;
            for (int64_t c = 0; c < cols; c++) yr[c] = (ar[c] / (1.0f + expf(-ar[c]))) * br[c];
            break;
        }
        case GGX_OP_SOFT_CAP: {
            const float cap = j->node->f[0];
            for (int64_t c = 0; c < cols; c++) {
                float v = bd ? ar[c] + bd[c] : ar[c];
                yr[c] = cap > 0.0f ? cap * tanhf(v / cap) : v;
            }
            break;
        }
        default: break;
        }
    }
}

/* ------------------------------------------------------------------------------ MLSTM -- */

static void job_mlstm(void *vp, int64_t chunk, int ith) {
    op_job *j = vp;
    const ggx_tensor *nd = j->node;
    const ggx_batch *bt = j->batch;
    const int layer = nd->i[0], NH = nd->i[1], DQK = nd->i[2], DV = nd->i[3], L = nd->i[4];
    const float eps = nd->f[0];
    const float *q = nd->src[0]->data, *k = nd->src[1]->data, *v = nd->src[2]->data;
    const float *ig = nd->src[3]->data, *fg = nd->src[4]->data;
    float *h = nd->data;
    {
        const int s = (int)(chunk / NH), hd = (int)(chunk % NH);
        const int64_t t0 = bt->seq_off[s];
        const ggx_layer_state *ls = &bt->states[s][layer];
        ggx_cpu_mlstm_io io = {
            .q = q + t0 * NH * DQK + (int64_t)hd * DQK,
            .k = k + t0 * NH * DQK + (int64_t)hd * DQK,
            .v = v + t0 * NH * DV + (int64_t)hd * DV,
            .ig = ig + t0 * NH + hd,
            .fg = fg + t0 * NH + hd,
            .ldqk = (int64_t)NH * DQK,
            .ldv = (int64_t)NH * DV,
            .ldg = NH,
            .h = h + t0 * NH * DV + (int64_t)hd * DV,
            .ldh = (int64_t)NH * DV,
        };
        ggx_cpu_mlstm_head(j->kr, &io, bt->seq_len[s], DQK, DV, L, eps,
                           ls->C + (int64_t)hd * DQK * DV, ls->n + (int64_t)hd * DQK, ls->m + hd,
                           j->ctx->scratch[ith]);
    }
}

/* ------------------------------------------------------------------------------ entry -- */

size_t ggx_cpu_node_scratch(const ggx_tensor *node) {
    switch (node->op) {
    case GGX_OP_MUL_MAT: {
        const ggx_tensor *w = node->src[0];
        size_t In = (size_t)w->dims[1];
        return ggx_tensor_rows(node->src[1]) < GGX_CPU_GEMM_MIN ? In : (size_t)GGX_CPU_TILE * In;
    }
    case GGX_OP_MLSTM:
        return ggx_cpu_mlstm_scratch_floats(node->i[2], node->i[3], node->i[4]);
    default: return 0;
    }
}

ggx_status ggx_cpu_compute_node(ggx_cpu_ctx *ctx, ggx_tensor *node, const ggx_batch *batch) {
    op_job j = {ctx, ggx_cpu_kernels_active(), node, batch};
    ggx_cpu_chunk_fn fn = NULL;
    const int64_t rows = ggx_tensor_rows(node);
    int64_t n = n_chunks_of(rows, ROWS_PER_CHUNK);
    switch (node->op) {
    case GGX_OP_GET_ROWS: fn = job_get_rows; break;
    case GGX_OP_MUL_MAT:
        fn = job_mul_mat;
        if (use_qmatmul(node->src[0], rows)) {
            /* quantize the activations once for all weight rows (single thread: T x I) */
            const enum ggx_type t = node->src[0]->type;
            const int64_t In = node->src[0]->dims[1];
            size_t need = ggx_cpu_qx_size(t, In) * (size_t)rows;
            if (need == 0)
                return ggx_fail(GGX_ERR_UNSUPPORTED, "mul_mat %s: %s rows of %lld columns",
                                node->src[0]->name, ggx_type_name(t), (long long)In);
            if (need > ctx->qx_cap) { /* grows once per shape; decode then allocates nothing */
                void *q = realloc(ctx->qx, need);
                if (!q) return ggx_fail(GGX_ERR_NOMEM, "cpu backend: %zu bytes", need);
                ctx->qx = q;
                ctx->qx_cap = need;
            }
            ggx_cpu_qx_prepare(t, node->src[1]->data, rows, In, ctx->qx);
        }
        n = n_chunks_of(node->src[0]->dims[0],
                        rows < GGX_CPU_GEMM_MIN || use_qmatmul(node->src[0], rows)
                            ? wrows_per_chunk(node->src[0])
                            : GGX_CPU_TILE);
        break;
    case GGX_OP_ADD:
    case GGX_OP_MUL: fn = job_binary; break;
    case GGX_OP_RMS_NORM: fn = job_rms_norm; break;
    case GGX_OP_HEAD_NORM:
        fn = job_head_norm;
        n = n_chunks_of(rows * node->i[0], ROWS_PER_CHUNK);
        break;
    case GGX_OP_SIGMOID_MUL:
    case GGX_OP_SWIGLU:
    case GGX_OP_SOFT_CAP: fn = job_pointwise; break;
    case GGX_OP_MLSTM:
        if (!batch)
            return ggx_fail(GGX_ERR_INVALID_ARG, "mlstm node %s: graph has no batch", node->name);
        fn = job_mlstm;
        n = (int64_t)batch->n_seqs * node->i[1]; /* one chunk per (sequence, head) */
        break;
    default:
        return ggx_fail(GGX_ERR_UNSUPPORTED, "cpu backend: op %d not supported", (int)node->op);
    }
    ggx_cpu_pool_run(ctx->pool, n, fn, &j);
    return GGX_OK;
}
