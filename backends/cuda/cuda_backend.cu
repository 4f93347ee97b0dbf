/*
 * cuda_backend.cu — the CUDA backend: device memory, weight upload (pinned staging, repacking
 * quantized types), the op dispatcher and CUDA-graph capture/replay of repeated graphs.
 *
 * Execution model: everything runs on one stream in node order. Before the nodes run, a small
 * table (sequence offsets/lengths and the C/n/m pointers of every layer of every sequence) is
 * copied to the device; the mLSTM kernels read their state through it. Because kernels take
 * pointers from that table rather than as launch arguments, one captured CUDA graph serves
 * every call with the same graph layout, whatever states the sequences use: a graph is run
 * eagerly the first time it is seen and captured the second time, then replayed.
 *
 * Dispatch of MUL_MAT: up to 16 tokens -> the dequantize-and-multiply kernels (consecutive
 * MUL_MATs of one weight type over the same input share one launch); more -> cuBLAS:
 * f32 weights in f32 (SGEMM, no TF32), bf16/q8_0/q4_0 as bf16 tensor-core GEMMs with f32
 * accumulation (quantized weights dequantized to bf16 into a scratch buffer first).
 */
#include "cuda_common.h"
#include "cuda_pending.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backends/cuda/ggx_cuda.h"
#include "ggx/quants.h"
}

/* cuda_common.h: whether launches use programmatic dependent launch (set per graph run) */
bool g_ggx_cuda_pdl = false;
/* whether PDL may be used at all: sm_90+ and GGX_CUDA_PDL != 0 */
static bool g_pdl_ok = false;

namespace {

int g_mv_max_tokens = 16; /* GGX_CUDA_MV_MAX overrides (experiments) */
constexpr int GRAPH_CACHE = 8;
constexpr size_t STAGE_BYTES = 32u << 20; /* each of the two pinned staging halves */
constexpr size_t CUBLAS_WS = 32u << 20;

struct GraphEntry {
    uint64_t key;
    int seen;             /* times run with this key */
    cudaGraphExec_t exec; /* captured on the second run */
    uint64_t last_use;
};

struct Ctx {
    int device;
    char name[256];
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_ws;
    /* GEMM scratch: dequantized weight and bf16 activations */
    void *scratch_w;
    size_t scratch_w_size;
    void *scratch_x;
    size_t scratch_x_size;
    /* pinned staging for weights_map */
    uint8_t *stage;
    cudaEvent_t stage_ev[2];
    /* the batch table: [seq_off n][seq_len n] ints, then pointers [layer][seq][3] */
    void *tab_host;       /* pinned */
    void *tab_dev;
    size_t tab_size;
    size_t tab_used;      /* bytes of the last upload (compare before re-uploading) */
    void *tab_prev;       /* host copy of the last uploaded content */
    cudaEvent_t tab_ev;
    int *counters;        /* [counters_n] zeroed */
    size_t counters_n;
    GraphEntry cache[GRAPH_CACHE];
    uint64_t tick;
    int graphs_on;
    size_t allocated, peak;
    /* live allocations: kind A_DEV (cudaMalloc) or A_HOST (mapped pinned host memory of
     * weights_map_rows, not counted as device memory) */
    struct { void *p; size_t n; int kind; } *allocs;
    int emb_host; /* GGX_CUDA_EMB_HOST=0: weights_map_rows maps to the device like weights_map */
    /* GGX_CUDA_PROFILE=1: eager runs with an event between node groups; time per op kind
     * (MUL_MAT split into matvec [0] and GEMM [1]) printed to stderr by free */
    int fuse;    /* GGX_CUDA_FUSE=0 turns the decode fusions off */
    int side;    /* GGX_CUDA_SIDE=0: the gates keep their own launch (no side matrices) */
    size_t pf_bytes; /* GGX_CUDA_PF_KB: L2 prefetch of the next matvec's weights (0: off) */
    /* RMS_NORM results never materialized in this run: their MUL_MAT consumers normalize x
     * while staging it (fusion_rms_virtual) */
    struct { const ggx_tensor *t; const float *x, *w; float eps; } vrms[256]; /* 2 per layer */
    int n_vrms;
    int chunkwise; /* GGX_CUDA_CHUNKWISE=0: mLSTM prefill token by token only */
    /* GGX_CUDA_SKIP (measurement only; results are wrong): comma-separated names whose launches
     * are left out of graphs of at most 64 tokens per product (decode): a product (group) whose
     * first weight's name contains one, "@step" the mLSTM decode step, "@norm" its fused head
     * norm. What a launch costs inside a replayed step (PDL overlap included) is the step time
     * it saves. */
    char skip[160];
    void *mlstm_scratch;
    size_t mlstm_scratch_size;
    int profile;
    cudaEvent_t *prof_ev;
    int prof_n_ev;
    double prof_ms[GGX_OP_COUNT][2];
    long prof_calls[GGX_OP_COUNT][2];
    int prof_graphs;
    int n_allocs, cap_allocs;
    /* the f32 tensor whose bf16 copy scratch_x holds (see run_gemm), and its element count */
    const ggx_tensor *xconv_src;
    int64_t xconv_n;
    /* deferred C stores (cuda_pending.cu): the pending buffers, and where the batch table holds
     * this graph's pointers to them ([layer][seq] after the state pointers; 0: the graph's
     * mLSTM steps do not defer) */
    PendRegistry pend;
    size_t pend_base;
};

Ctx *ctx_of(ggx_backend *be) { return static_cast<Ctx *>(be->ctx); }

int64_t t_cols(const ggx_tensor *t) { return t->dims[t->n_dims - 1]; }
int64_t t_nel(const ggx_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->dims[d];
    return n;
}
int64_t t_rows(const ggx_tensor *t) {
    const int64_t c = t_cols(t);
    return c ? t_nel(t) / c : 0;
}
float *f32p(const ggx_tensor *t) { return static_cast<float *>(t->data); }

constexpr int A_DEV = -1, A_HOST = -2;

void count_device(Ctx *c, size_t n) {
    c->allocated += n;
    if (c->allocated > c->peak) c->peak = c->allocated;
}

void note_alloc(Ctx *c, void *p, size_t n, int kind) {
    if (c->n_allocs == c->cap_allocs) {
        int cap = c->cap_allocs ? 2 * c->cap_allocs : 256;
        void *na = realloc(c->allocs, (size_t)cap * sizeof *c->allocs);
        if (!na) return; /* statistics only */
        c->allocs = static_cast<decltype(c->allocs)>(na);
        c->cap_allocs = cap;
    }
    c->allocs[c->n_allocs].p = p;
    c->allocs[c->n_allocs].n = n;
    c->allocs[c->n_allocs].kind = kind;
    c->n_allocs++;
    if (kind == A_DEV) count_device(c, n);
}

/* forget p and free it (cudaFree or cudaFreeHost) */
void free_ptr(Ctx *c, void *p) {
    int kind = A_DEV;
    for (int i = c->n_allocs - 1; i >= 0; i--)
        if (c->allocs[i].p == p) {
            kind = c->allocs[i].kind;
            if (kind == A_DEV) c->allocated -= c->allocs[i].n;
            c->allocs[i] = c->allocs[--c->n_allocs];
            break;
        }
    if (kind == A_HOST) cudaFreeHost(p);
    else cudaFree(p);
}

/* free a pointer from dev_alloc */
void dev_free(Ctx *c, void *p) {
    if (p) free_ptr(c, p);
}

ggx_status oom(const char *what, size_t size, cudaError_t e) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return ggx_fail(GGX_ERR_BACKEND,
                    "cuda: out of device memory: %s needs %.1f MiB, %.1f MiB free of %.1f MiB (%s)",
                    what, size / 1048576.0, fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
}

ggx_status dev_alloc(Ctx *c, size_t size, void **out, const char *what) {
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, size ? size : 16);
    if (e != cudaSuccess) return oom(what, size, e);
    note_alloc(c, p, size, A_DEV);
    *out = p;
    return GGX_OK;
}

/* the pending buffers' memory (cuda_pending.cu) counts as the backend's */
ggx_status pend_alloc(void *actx, size_t bytes, void **out) {
    return dev_alloc(static_cast<Ctx *>(actx), bytes, out, "mLSTM pending buffers");
}
void pend_release(void *actx, void *p) { dev_free(static_cast<Ctx *>(actx), p); }

/* ------------------------------------------------------------------ interface: memory */

ggx_status be_alloc(ggx_backend *be, size_t size, void **out) {
    Ctx *c = ctx_of(be);
    ggx_status st = dev_alloc(c, size, out, "buffer");
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemsetAsync(*out, 0, size, c->stream), "zero buffer");
    GGX_CU_TRY(cudaStreamSynchronize(c->stream), "zero buffer");
    return GGX_OK;
}

void be_release(ggx_backend *be, void *ptr) {
    if (!ptr) return;
    Ctx *c = ctx_of(be);
    cudaStreamSynchronize(c->stream); /* queued work may still use it */
    for (int i = 0; i < c->n_allocs; i++)
        if (c->allocs[i].p == ptr) {
            ggx_cuda_pend_drop(&c->pend, ptr, c->allocs[i].n); /* (a state: its pending buffers) */
            break;
        }
    free_ptr(c, ptr);
}

/* Copy `n` bytes produced by fill(dst_host, offset, len) to device dst, through the two pinned
 * staging halves (the copy of one half overlaps filling the other). */
template <typename Fill>
ggx_status staged_upload(Ctx *c, uint8_t *dst, size_t n, Fill fill) {
    size_t off = 0;
    int half = 0;
    while (off < n) {
        const size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
        uint8_t *buf = c->stage + (size_t)half * STAGE_BYTES;
        GGX_CU_TRY(cudaEventSynchronize(c->stage_ev[half]), "weight upload");
        fill(buf, off, len);
        GGX_CU_TRY(cudaMemcpyAsync(dst + off, buf, len, cudaMemcpyHostToDevice, c->stream),
                   "weight upload");
        GGX_CU_TRY(cudaEventRecord(c->stage_ev[half], c->stream), "weight upload");
        off += len;
        half ^= 1;
    }
    return GGX_OK;
}

/* Check a weight's size against its type and dims; rows/cols of its [rows, cols] view and the
 * bytes it takes in the device layout. */
ggx_status weight_layout(size_t size, enum ggx_type type, int n_dims, const int64_t *dims,
                         int64_t *rows_out, int64_t *cols_out, size_t *dev_bytes) {
    if (n_dims < 1 || n_dims > GGX_T_MAX_DIMS)
        return ggx_fail(GGX_ERR_INVALID_ARG, "cuda weights_map: bad n_dims %d", n_dims);
    int64_t rows = 1;
    for (int d = 0; d < n_dims - 1; d++) rows *= dims[d];
    const int64_t cols = dims[n_dims - 1];
    const size_t want = ggx_row_size(type, cols) * (size_t)rows;
    if (want == 0 && rows * cols != 0)
        return ggx_fail(GGX_ERR_SHAPE, "cuda weights_map: %lld columns are not a whole number of "
                        "%s blocks", (long long)cols, ggx_type_name(type));
    if (size != want)
        return ggx_fail(GGX_ERR_SHAPE, "cuda weights_map: %zu bytes given, %s [%lld, %lld] needs %zu",
                        size, ggx_type_name(type), (long long)rows, (long long)cols, want);
    if (type == GGX_TYPE_Q4_X) { /* the kernels' copy of the levels (cuda_common.h) */
        const uint32_t lw[4] = {GGX_CUDA_Q4X_L0, GGX_CUDA_Q4X_L1, GGX_CUDA_Q4X_L2, GGX_CUDA_Q4X_L3};
        for (int q = 0; q < 16; q++)
            if (((lw[q / 4] >> (8 * (q % 4))) & 0xffu) != ggx_q4_x_levels[q])
                return ggx_fail(GGX_ERR_BACKEND, "cuda: the q4_x level table differs from ggx_q4_x_levels");
    }
    const bool quant = ggx_cuda_repacked(type);
    *rows_out = rows;
    *cols_out = cols;
    *dev_bytes = quant ? ggx_cuda_weight_bytes(type, rows, cols) : size;
    return GGX_OK;
}

/* The device layout of q8_0/q4_0/q4_x (cuda_common.h): quants of all blocks first, then all
 * scales (a block's first hdr bytes: f16 d, for q4_x d and m). These write bytes [off, off +
 * len) of either part from the file's blocks of bsz bytes (off, len: multiples of the part's
 * per-block size). */
void repack_quants(uint8_t *buf, const uint8_t *src, size_t off, size_t len, size_t bsz, size_t hdr) {
    const size_t qsz = bsz - hdr;
    for (size_t b = off / qsz, e = (off + len) / qsz; b < e; b++)
        memcpy(buf + (b * qsz - off), src + b * bsz + hdr, qsz);
}
void repack_scales(uint8_t *buf, const uint8_t *src, size_t off, size_t len, size_t bsz, size_t hdr) {
    for (size_t b = off / hdr, e = (off + len) / hdr; b < e; b++) memcpy(buf + (b * hdr - off), src + b * bsz, hdr);
}
/* a repacked type's file block size */
size_t block_bytes(enum ggx_type t) { return ggx_type_traits_of(t)->type_size; }

ggx_status be_weights_map(ggx_backend *be, const void *host_ptr, size_t size, enum ggx_type type,
                          int n_dims, const int64_t *dims, void **out) {
    Ctx *c = ctx_of(be);
    *out = nullptr;
    int64_t rows = 0, cols = 0;
    size_t dev_bytes = 0;
    ggx_status st = weight_layout(size, type, n_dims, dims, &rows, &cols, &dev_bytes);
    if (st != GGX_OK) return st;
    const bool quant = ggx_cuda_repacked(type);
    void *d = nullptr;
    if ((st = dev_alloc(c, dev_bytes, &d, "weights")) != GGX_OK) return st;
    uint8_t *dst = static_cast<uint8_t *>(d);
    const uint8_t *src = static_cast<const uint8_t *>(host_ptr);
    if (!quant) {
        st = staged_upload(c, dst, size, [&](uint8_t *buf, size_t off, size_t len) {
            memcpy(buf, src + off, len);
        });
    } else {
        const size_t nb = (size_t)rows * (size_t)(cols / 32);
        const size_t bsz = block_bytes(type), hdr = ggx_cuda_sc_bytes(type);
        st = staged_upload(c, dst, nb * (bsz - hdr), [&](uint8_t *buf, size_t off, size_t len) {
            repack_quants(buf, src, off, len, bsz, hdr);
        });
        if (st == GGX_OK)
            st = staged_upload(c, dst + ggx_cuda_qs_bytes(type, rows, cols), nb * hdr,
                               [&](uint8_t *buf, size_t off, size_t len) { repack_scales(buf, src, off, len, bsz, hdr); });
    }
    if (st == GGX_OK) {
        cudaError_t e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) st = ggx_fail(GGX_ERR_BACKEND, "cuda: weight upload: %s", cudaGetErrorString(e));
    }
    if (st != GGX_OK) {
        dev_free(c, d);
        return st;
    }
    *out = d;
    return GGX_OK;
}

/* Mapped pinned host memory the kernels read over the bus (one pointer for host and device,
 * unified addressing). The embedding table is read one row per token, a few KB per decode step:
 * keeping it on the host costs microseconds and saves its size in device memory, like llama.cpp
 * keeping token embeddings on the CPU. */
ggx_status host_alloc(Ctx *c, size_t size, void **out, const char *what) {
    void *h = nullptr;
    cudaError_t e = cudaHostAlloc(&h, size ? size : 16, cudaHostAllocMapped);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return ggx_fail(GGX_ERR_NOMEM, "cuda: %s: cannot allocate %.1f MiB of pinned host memory (%s)",
                        what, size / 1048576.0, cudaGetErrorString(e));
    }
    void *d = nullptr;
    if ((e = cudaHostGetDevicePointer(&d, h, 0)) != cudaSuccess || d != h) {
        cudaFreeHost(h);
        return ggx_fail(GGX_ERR_BACKEND, "cuda: %s: mapped host memory without unified addressing (%s)",
                        what, cudaGetErrorString(e));
    }
    note_alloc(c, h, size, A_HOST);
    *out = h;
    return GGX_OK;
}

ggx_status be_weights_map_rows(ggx_backend *be, const void *host_ptr, size_t size, enum ggx_type type,
                               int n_dims, const int64_t *dims, void **out) {
    Ctx *c = ctx_of(be);
    if (!c->emb_host) return be_weights_map(be, host_ptr, size, type, n_dims, dims, out);
    *out = nullptr;
    int64_t rows = 0, cols = 0;
    size_t dev_bytes = 0;
    ggx_status st = weight_layout(size, type, n_dims, dims, &rows, &cols, &dev_bytes);
    if (st != GGX_OK) return st;
    void *h = nullptr;
    if ((st = host_alloc(c, dev_bytes, &h, "embedding")) != GGX_OK) return st;
    uint8_t *dst = static_cast<uint8_t *>(h);
    const uint8_t *src = static_cast<const uint8_t *>(host_ptr);
    if (ggx_cuda_repacked(type)) {
        const size_t nb = (size_t)rows * (size_t)(cols / 32), bsz = block_bytes(type), hdr = ggx_cuda_sc_bytes(type);
        repack_quants(dst, src, 0, nb * (bsz - hdr), bsz, hdr);
        repack_scales(dst + ggx_cuda_qs_bytes(type, rows, cols), src, 0, nb * hdr, bsz, hdr);
    } else {
        memcpy(dst, src, size);
    }
    ggx_log_info("cuda: %s [%lld, %lld] (%.1f MB) kept in mapped host memory: GET_ROWS reads its "
                 "rows over the bus (GGX_CUDA_EMB_HOST=0 puts it in device memory)",
                 ggx_type_name(type), (long long)rows, (long long)cols, dev_bytes / 1e6);
    *out = h;
    return GGX_OK;
}

void be_weights_unmap(ggx_backend *be, void *ptr) { be_release(be, ptr); }

/* Transfers that touch a state's C first apply its pending updates (deferred C stores): a
 * download or a copy from it must see them, and a write must not have them replayed onto the
 * new content by the next decode step. */
ggx_status be_upload(ggx_backend *be, void *dst, const void *src, size_t n) {
    Ctx *c = ctx_of(be);
    ggx_status st = ggx_cuda_pend_flush(&c->pend, c->stream, dst, n);
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "upload");
    GGX_CU_TRY(cudaStreamSynchronize(c->stream), "upload");
    return GGX_OK;
}
ggx_status be_download(ggx_backend *be, void *dst, const void *src, size_t n) {
    Ctx *c = ctx_of(be);
    ggx_status st = ggx_cuda_pend_flush(&c->pend, c->stream, src, n);
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "download");
    GGX_CU_TRY(cudaStreamSynchronize(c->stream), "download");
    return GGX_OK;
}
ggx_status be_copy(ggx_backend *be, void *dst, const void *src, size_t n) {
    Ctx *c = ctx_of(be);
    ggx_status st = ggx_cuda_pend_flush(&c->pend, c->stream, src, n);
    if (st == GGX_OK) st = ggx_cuda_pend_flush(&c->pend, c->stream, dst, n);
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->stream), "copy");
    return GGX_OK;
}
ggx_status be_memset0(ggx_backend *be, void *dst, size_t n) {
    Ctx *c = ctx_of(be);
    ggx_status st = ggx_cuda_pend_flush(&c->pend, c->stream, dst, n);
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemsetAsync(dst, 0, n, c->stream), "memset");
    return GGX_OK;
}
ggx_status be_synchronize(ggx_backend *be) {
    GGX_CU_TRY(cudaStreamSynchronize(ctx_of(be)->stream), "synchronize");
    return GGX_OK;
}

/* ------------------------------------------------------------------ supports_op */

bool weight_type_ok(enum ggx_type t) {
    return t == GGX_TYPE_F32 || t == GGX_TYPE_F16 || t == GGX_TYPE_BF16 || ggx_cuda_repacked(t);
}

bool f32_all(const ggx_tensor *n) {
    if (n->type != GGX_TYPE_F32) return false;
    for (int s = 0; s < GGX_MAX_SRC; s++)
        if (n->src[s] && n->src[s]->type != GGX_TYPE_F32) return false;
    return true;
}

bool be_supports_op(ggx_backend *be, const ggx_tensor *n) {
    (void)be;
    switch (n->op) {
    case GGX_OP_NONE: return true;
    case GGX_OP_GET_ROWS:
        return n->src[0] && n->src[1] && weight_type_ok(n->src[0]->type) &&
               n->src[1]->type == GGX_TYPE_I32 && n->type == GGX_TYPE_F32;
    case GGX_OP_MUL_MAT:
        return n->src[0] && n->src[1] && weight_type_ok(n->src[0]->type) &&
               n->src[1]->type == GGX_TYPE_F32 && n->type == GGX_TYPE_F32 &&
               t_cols(n->src[0]) == t_cols(n->src[1]) &&
               (n->src[0]->type == GGX_TYPE_F32 || n->src[0]->type == GGX_TYPE_F16 ||
                t_cols(n->src[0]) % 8 == 0);
    case GGX_OP_ADD:
    case GGX_OP_MUL:
    case GGX_OP_SIGMOID_MUL:
    case GGX_OP_SWIGLU:
        return n->src[0] && n->src[1] && f32_all(n) &&
               (t_nel(n->src[1]) == t_nel(n->src[0]) || t_nel(n->src[1]) == t_cols(n->src[0]));
    case GGX_OP_RMS_NORM:
        return n->src[0] && n->src[1] && f32_all(n) && t_nel(n->src[1]) == t_cols(n->src[0]);
    case GGX_OP_HEAD_NORM:
        return n->src[0] && n->src[1] && f32_all(n) && n->i[0] > 0 &&
               t_cols(n->src[0]) % n->i[0] == 0 && t_nel(n->src[1]) == t_cols(n->src[0]);
    case GGX_OP_SOFT_CAP:
        return n->src[0] && f32_all(n) && (!n->src[1] || t_nel(n->src[1]) == t_cols(n->src[0]));
    case GGX_OP_MLSTM:
        for (int s = 0; s < 5; s++)
            if (!n->src[s]) return false;
        return f32_all(n) && ggx_cuda_mlstm_supported(n->i[2], n->i[3]);
    default: return false;
    }
}

/* ------------------------------------------------------------------ graph execution */

/* Captured graphs hold the addresses of the backend's scratch buffers, batch table and
 * counters: when one of them is reallocated, every captured graph is dropped (the keys stay
 * known, so the next runs capture again). */
void drop_graphs(Ctx *c) {
    for (int i = 0; i < GRAPH_CACHE; i++)
        if (c->cache[i].exec) {
            cudaGraphExecDestroy(c->cache[i].exec);
            c->cache[i].exec = nullptr;
        }
}

ggx_status ensure_buf(Ctx *c, void **p, size_t *cur, size_t need, const char *what) {
    if (need <= *cur) return GGX_OK;
    if (*p) {
        cudaStreamSynchronize(c->stream);
        drop_graphs(c);
        dev_free(c, *p);
        *p = nullptr;
        *cur = 0;
    }
    ggx_status st = dev_alloc(c, need, p, what);
    if (st == GGX_OK) *cur = need;
    return st;
}

bool use_mv(const ggx_tensor *n) {
    /* bf16 weights: from 4 tokens on, the tensor-core GEMM beats the matvec kernels (7B decode,
     * H100: B=8 16.9 ms/step on matvecs vs B=32 13.8 on GEMMs) */
    const int64_t nt = t_rows(n->src[1]);
    const int lim = n->src[0]->type == GGX_TYPE_BF16 && g_mv_max_tokens == 16 ? 3 : g_mv_max_tokens;
    const enum ggx_type wt = n->src[0]->type;
    if (ggx_cuda_mmq_supported(wt, t_cols(n->src[0]), (int)nt)) return true; /* via ggx_cuda_mv */
    if (wt == GGX_TYPE_F32 && ggx_cuda_mv_small_f32(t_rows(n->src[0]), t_cols(n->src[0]), (int)nt))
        return true; /* the gates: small_f32_kernel via ggx_cuda_mv */
    return nt <= lim && ggx_cuda_mv_supported(wt, t_cols(n->src[0]));
}

/* scratch the GEMM path needs for this node: (weight scratch, activation scratch) */
void gemm_scratch(const ggx_tensor *n, size_t *w_need, size_t *x_need) {
    *w_need = *x_need = 0;
    if (n->op != GGX_OP_MUL_MAT || use_mv(n)) return;
    const enum ggx_type t = n->src[0]->type;
    const size_t wel = (size_t)t_nel(n->src[0]), xel = (size_t)t_nel(n->src[1]);
    if (t == GGX_TYPE_F16) *w_need = wel * 4;
    else if (ggx_cuda_repacked(t)) *w_need = wel * 2;
    if (t != GGX_TYPE_F32 && t != GGX_TYPE_F16) *x_need = xel * 2;
}

ggx_status cublas_ok(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return GGX_OK;
    return ggx_fail(GGX_ERR_BACKEND, "cublas: %s failed (status %d)", what, (int)s);
}

/* cuBLAS and its workspace, on first use. A graph is always run eagerly before it is
 * captured, so this never happens inside a stream capture. */
ggx_status ensure_cublas(Ctx *c) {
    if (c->cublas) return GGX_OK;
    if (!c->cublas_ws) GGX_CU_TRY(cudaMalloc(&c->cublas_ws, CUBLAS_WS), "cublas workspace");
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return ggx_fail(GGX_ERR_BACKEND, "cuda: cublasCreate failed");
    if (cublasSetStream(h, c->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(h, c->cublas_ws, CUBLAS_WS) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(h);
        return ggx_fail(GGX_ERR_BACKEND, "cuda: cublas setup failed");
    }
    c->cublas = h;
    return GGX_OK;
}

/* GEMM n = W X^T. xf: the SWIGLU/SIGMOID_MUL node X is (its f32 result never materialized:
 * the bf16 conversion computes it), or NULL. */
ggx_status run_gemm(Ctx *c, const ggx_tensor *n, const ggx_tensor *xf = nullptr) {
    if (g_ggx_pk_pending) GGX_CU_TRY(ggx_cuda_pk_flush(), "persistent kernel"); /* (cuBLAS: not ggx_cuda_launch) */
    ggx_status cst = ensure_cublas(c);
    if (cst != GGX_OK) return cst;
    const ggx_tensor *W = n->src[0], *X = n->src[1];
    const enum ggx_type t = W->type;
    const int O = (int)t_rows(W), I = (int)t_cols(W), N = (int)t_rows(X);
    const float one = 1.0f, zero = 0.0f;
    if (t == GGX_TYPE_F32 || t == GGX_TYPE_F16) {
        const float *w = static_cast<const float *>(W->data);
        if (t == GGX_TYPE_F16) {
            GGX_CU_TRY(ggx_cuda_dequant(c->stream, t, W->data, O, I, c->scratch_w, GGX_TYPE_F32),
                       "dequantize f16");
            w = static_cast<const float *>(c->scratch_w);
        }
        return cublas_ok(cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, O, N, I, &one, w, I,
                                     f32p(X), I, &zero, f32p(n), O), "sgemm");
    }
    const void *wb = W->data;
    if (t != GGX_TYPE_BF16) {
        GGX_CU_TRY(ggx_cuda_dequant(c->stream, t, W->data, O, I, c->scratch_w, GGX_TYPE_BF16),
                   "dequantize to bf16");
        wb = c->scratch_w;
    }
    /* consecutive GEMMs over the same input (q, k, v, o; up_gate, up) convert it once: the bf16
     * copy stays valid while only MUL_MATs run (run_node resets xconv_src for any other node),
     * and X, an input of this node, cannot have been overwritten since (it is still live) */
    if (c->xconv_src != X || c->xconv_n != (int64_t)N * I) {
        const int op = !xf ? -1 : xf->op == GGX_OP_SIGMOID_MUL ? 2 : 3;
        GGX_CU_TRY(ggx_cuda_f32_to_bf16_op(c->stream, op, f32p(xf ? xf->src[0] : X),
                                           xf ? f32p(xf->src[1]) : nullptr,
                                           static_cast<uint16_t *>(c->scratch_x), (int64_t)N * I),
                   "activations to bf16");
        c->xconv_src = X;
        c->xconv_n = (int64_t)N * I;
    }
    return cublas_ok(cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, O, N, I, &one, wb,
                                  CUDA_R_16BF, I, c->scratch_x, CUDA_R_16BF, I, &zero, f32p(n),
                                  CUDA_R_32F, O, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "bf16 gemm");
}

bool use_mv(const ggx_tensor *n);
size_t f32_bytes(const ggx_tensor *t) { return (size_t)t_nel(t) * 4; }
bool overlap(const ggx_tensor *a, const ggx_tensor *b) {
    const char *pa = static_cast<const char *>(a->data), *pb = static_cast<const char *>(b->data);
    return pa < pb + f32_bytes(b) && pb < pa + f32_bytes(a);
}
/* nodes that read t */
int n_consumers(const ggx_graph *g, const ggx_tensor *t) {
    int n = 0;
    for (int k = 0; k < g->n_nodes; k++)
        for (int s = 0; s < GGX_MAX_SRC; s++)
            if (g->nodes[k]->src[s] == t) {
                n++;
                break;
            }
    return n;
}
/* t is an intermediate that only `by` reads: its own kernel may be folded into by's */
bool private_to(const ggx_graph *g, const ggx_tensor *t, const ggx_tensor *by) {
    if (t->flags & GGX_TF_OUTPUT) return false;
    bool used = false;
    for (int s = 0; s < GGX_MAX_SRC; s++) used |= by->src[s] == t;
    return used && n_consumers(g, t) == 1;
}

/* Fusions (decode): SWIGLU/SIGMOID_MUL folded into the matvec that alone consumes it (computed
 * while staging x), SOFT_CAP folded into the matvec it alone follows (epilogue), ADD + the
 * RMS_NORM of its result in one pass. Only between adjacent nodes, and only when the fused
 * kernel's outputs share no memory with its inputs (the planner recycles freed ranges). */
bool fusion_xform(const ggx_graph *g, int k, bool on) {
    const ggx_tensor *n = g->nodes[k];
    if (!on || k + 1 >= g->n_nodes) return false;
    const ggx_tensor *m = g->nodes[k + 1];
    return m->op == GGX_OP_MUL_MAT && m->src[1] == n && use_mv(m) && private_to(g, n, m) &&
           t_nel(n->src[1]) == t_nel(n->src[0]) && t_cols(m->src[0]) % 4 == 0 &&
           !overlap(m, n->src[0]) && !overlap(m, n->src[1]);
}
bool fusion_softcap(const ggx_graph *g, int k_next, const ggx_tensor *mm, bool on) {
    if (!on || k_next >= g->n_nodes) return false;
    const ggx_tensor *sc = g->nodes[k_next];
    return sc->op == GGX_OP_SOFT_CAP && sc->src[0] == mm && private_to(g, mm, sc) &&
           (!sc->src[1] || t_nel(sc->src[1]) == t_cols(mm)) && !overlap(sc, mm->src[1]);
}
bool fusion_add_rms(const ggx_graph *g, int k, bool on) {
    const ggx_tensor *n = g->nodes[k];
    if (!on || k + 1 >= g->n_nodes) return false;
    const ggx_tensor *r = g->nodes[k + 1];
    const ggx_tensor *a = n->src[0], *b = n->src[1];
    return r->op == GGX_OP_RMS_NORM && r->src[0] == n && t_nel(r->src[1]) == t_cols(n) &&
           !overlap(r, a) && !overlap(r, b) && !overlap(r, n) && !overlap(n, b) &&
           (n->data == a->data || !overlap(n, a));
}

/* Decode fusions that need the matvec kernels' norm modes (ggx_cuda_mv_ex), for at most
 * GGX_CUDA_MV_FUSE_MAX_TOKENS tokens: a layer's step then runs as 6 launches (q/k/v/o with the
 * RMS norm, the two gates with it, mLSTM, out_proj with head norm + output gate + residual,
 * up/gate with the RMS norm, down with SwiGLU + residual) instead of 10. */
bool few_tokens(const ggx_tensor *n) { return t_rows(n) <= GGX_CUDA_MV_FUSE_MAX_TOKENS; }

/* RMS_NORM k is left virtual when every consumer is a matvec over it and its input x is not
 * overwritten before the last of them runs */
bool fusion_rms_virtual(const Ctx *c, const ggx_graph *g, int k) {
    const ggx_tensor *n = g->nodes[k], *x = n->src[0];
    if (!c->fuse || n->op != GGX_OP_RMS_NORM || (n->flags & GGX_TF_OUTPUT) || !few_tokens(n) ||
        t_cols(n) % 4 || t_nel(n->src[1]) != t_cols(n) || c->n_vrms >= (int)(sizeof c->vrms / sizeof c->vrms[0]))
        return false;
    int last = -1;
    for (int j = k + 1; j < g->n_nodes; j++) {
        const ggx_tensor *m = g->nodes[j];
        bool reads = false;
        for (int q = 0; q < GGX_MAX_SRC; q++) reads |= m->src[q] == n;
        if (!reads) continue;
        if (m->op != GGX_OP_MUL_MAT || m->src[0] == n || !use_mv(m)) return false;
        last = j;
    }
    if (last < 0) return false;
    for (int j = k + 1; j <= last; j++)
        if (overlap(g->nodes[j], x)) return false;
    return true;
}
int find_vrms(const Ctx *c, const ggx_tensor *t) {
    for (int i = 0; i < c->n_vrms; i++)
        if (c->vrms[i].t == t) return i;
    return -1;
}

/* every sequence of the batch has at most one token (a decode step) */
bool decode_batch(const ggx_graph *g) {
    if (!g->batch) return false;
    for (int s = 0; s < g->batch->n_seqs; s++)
        if (g->batch->seq_len[s] > 1) return false;
    return true;
}

/* HEAD_NORM k+1 of the MLSTM k's output alone: the decode kernel normalizes it, the cluster of
 * each head (any number of sequences) or else the last block of each head (1-2 tokens) */
bool fusion_mlstm_head_norm(const Ctx *c, const ggx_graph *g, int k, int dv) {
    const ggx_tensor *n = g->nodes[k];
    if (!c->fuse || k + 1 >= g->n_nodes) return false;
    if (!few_tokens(n) && !(decode_batch(g) && ggx_cuda_pk_mode() == 0 &&
                            ggx_cuda_mlstm_cluster_usable(n->i[2], dv, g->batch->n_seqs)))
        return false;
    const ggx_tensor *hn = g->nodes[k + 1];
    if (hn->op != GGX_OP_HEAD_NORM || hn->src[0] != n || !private_to(g, n, hn) ||
        hn->i[0] != n->i[1] || t_cols(hn) != (int64_t)n->i[1] * dv || overlap(hn, n))
        return false;
    for (int q = 0; q < 5; q++)
        if (overlap(hn, n->src[q])) return false;
    return true;
}

/* ADD j consumes the product mm (and nothing else does): the matvec adds the other operand;
 * its output must not overlap what the launch reads (ins), except the operand it replaces */
bool fusion_residual(const Ctx *c, const ggx_graph *g, int j, const ggx_tensor *mm,
                     const ggx_tensor *const *ins, int n_ins) {
    if (!c->fuse || j >= g->n_nodes || !few_tokens(mm)) return false;
    const ggx_tensor *ad = g->nodes[j];
    if (ad->op != GGX_OP_ADD || (ad->src[0] == mm) == (ad->src[1] == mm) || !private_to(g, mm, ad))
        return false;
    const ggx_tensor *other = ad->src[0] == mm ? ad->src[1] : ad->src[0];
    if (t_nel(other) != t_nel(mm) || (ad->data != other->data && overlap(ad, other))) return false;
    for (int q = 0; q < n_ins; q++)
        if (ins[q] && overlap(ad, ins[q])) return false;
    return true;
}

/* SWIGLU/SIGMOID_MUL k whose result only the GEMM k+1 reads (prefill): computed by that GEMM's
 * bf16 conversion of its activations (run_gemm's xf) */
bool fusion_xform_gemm(const Ctx *c, const ggx_graph *g, int k) {
    const ggx_tensor *n = g->nodes[k];
    if (!c->fuse || k + 1 >= g->n_nodes || (n->flags & GGX_TF_OUTPUT)) return false;
    const ggx_tensor *m = g->nodes[k + 1];
    const enum ggx_type wt = m->src[0] ? m->src[0]->type : GGX_TYPE_F32;
    return m->op == GGX_OP_MUL_MAT && m->src[1] == n && !use_mv(m) && private_to(g, n, m) &&
           (wt == GGX_TYPE_BF16 || ggx_cuda_repacked(wt)) &&
           t_nel(n->src[1]) == t_nel(n->src[0]);
}

/* The L2 prefetch a decode matvec launch issues for the next one (ggx_cuda_pf): the first
 * pf_bytes of the next group of matvec weights after node `from` (the next step's first group
 * after the last launch: a replayed graph is followed by itself), in the order its launch
 * walks them (matrix after matrix, a matrix's first rows first, with their scales). False: no
 * prefetch (PDL off, i.e. not a decode graph; none found). */
bool plan_prefetch(const Ctx *c, const ggx_graph *g, int from, ggx_cuda_pf *pf) {
    pf->count = 0;
    pf->total16 = 0;
    if (!c->pf_bytes || !g_ggx_cuda_pdl || g->n_nodes < 1) return false;
    int k0 = -1;
    for (int i = 0; i < g->n_nodes && k0 < 0; i++) {
        const int k = (from + i) % g->n_nodes;
        const ggx_tensor *m = g->nodes[k];
        if (m->op == GGX_OP_MUL_MAT && m->src[0]->type != GGX_TYPE_F32 && use_mv(m)) k0 = k;
    }
    if (k0 < 0) return false;
    const ggx_tensor *first = g->nodes[k0];
    uint64_t left = c->pf_bytes / 16;
    for (int k = k0; k < g->n_nodes && left > 0 && pf->count + 2 <= GGX_CUDA_PF_MAX; k++) {
        const ggx_tensor *m = g->nodes[k];
        if (m->op == GGX_OP_SOFT_CAP) continue;
        if (m->op != GGX_OP_MUL_MAT || m->src[1]->data != first->src[1]->data) break;
        if (m->src[0]->type != first->src[0]->type) continue; /* (a side matrix: tiny) */
        const enum ggx_type t = m->src[0]->type;
        const int64_t rows = t_rows(m->src[0]), cols = t_cols(m->src[0]);
        const bool q = ggx_cuda_repacked(t);
        /* bytes per row in 16-byte units of the main range (quants, or the row itself) */
        const size_t row_b = q ? ggx_cuda_qs_bytes(t, 1, cols) : (size_t)cols * ggx_type_traits_of(t)->type_size;
        if (row_b % 16) return pf->count > 0;
        const uint64_t row16 = row_b / 16;
        const uint64_t sc_row = q ? (uint64_t)(cols / 32) * ggx_cuda_sc_bytes(t) : 0; /* scale bytes per row */
        int64_t r = (int64_t)(left / (row16 + (sc_row + 15) / 16));
        if (r > rows) r = rows;
        if (r < 1) break;
        const uint8_t *w = static_cast<const uint8_t *>(m->src[0]->data);
        pf->p[pf->count] = w;
        pf->n16[pf->count++] = (uint32_t)(row16 * (uint64_t)r);
        left -= row16 * (uint64_t)r;
        if (q) {
            const uint64_t s16 = ((uint64_t)r * sc_row + 15) / 16; /* inside the 16-byte padding */
            pf->p[pf->count] = w + ggx_cuda_qs_bytes(t, rows, cols);
            pf->n16[pf->count++] = (uint32_t)s16;
            left = left > s16 ? left - s16 : 0;
        }
    }
    for (int i = 0; i < pf->count; i++) pf->total16 += pf->n16[i];
    return pf->count > 0;
}

/* A matvec group over xs whose graph nodes end before node `next`. Plain launches (no norm
 * mode, side rows or residual) go through ggx_cuda_mv, which hands them to mmq where that is
 * faster; the rest, and every launch that will run the matvec kernels, through ggx_cuda_mv_ex
 * with the L2 prefetch of the next group's weights (mmq takes none). */
ggx_status run_mv(Ctx *c, const ggx_graph *g, int next, enum ggx_type t, const ggx_cuda_mv_mat *mats, int nm,
                  ggx_cuda_mv_x xs, int cols, int n_tok, const char *what) {
    bool res = false;
    for (int q = 0; q < nm; q++) res |= mats[q].res != nullptr;
    if (xs.mode != GGX_CUDA_X_RMS_NORM && xs.n_side == 0 && !res && ggx_cuda_mmq_supported(t, cols, n_tok)) {
        GGX_CU_TRY(ggx_cuda_mv(c->stream, t, mats, nm, xs.a, xs.b, xs.mode, cols, n_tok), what);
        return GGX_OK;
    }
    ggx_cuda_pf pf;
    if (plan_prefetch(c, g, next, &pf)) xs.pf = &pf;
    GGX_CU_TRY(ggx_cuda_mv_ex(c->stream, t, mats, nm, &xs, cols, n_tok), what);
    return GGX_OK;
}

/* GGX_CUDA_SKIP: is a launch named `name` left out of this (decode) graph? */
bool skipped(const Ctx *c, const ggx_tensor *out, const char *name) {
    if (!c->skip[0] || t_rows(out) > 64) return false;
    for (const char *p = c->skip; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[64];
        if (len > 0 && len < sizeof tok) {
            memcpy(tok, p, len);
            tok[len] = 0;
            if (strstr(name, tok)) return true;
        }
        if (!e) break;
        p = e + 1;
    }
    return false;
}

ggx_status run_node(Ctx *c, ggx_graph *g, int k, int *consumed) {
    ggx_tensor *n = g->nodes[k];
    cudaStream_t s = c->stream;
    *consumed = 1;
    if (n->op != GGX_OP_MUL_MAT) c->xconv_src = nullptr; /* see run_gemm */
    if ((n->op == GGX_OP_SWIGLU || n->op == GGX_OP_SIGMOID_MUL) && fusion_xform_gemm(c, g, k)) {
        *consumed = 2;
        return run_gemm(c, g->nodes[k + 1], n);
    }
    if ((n->op == GGX_OP_SWIGLU || n->op == GGX_OP_SIGMOID_MUL) && fusion_xform(g, k, c->fuse)) {
        const ggx_tensor *m = g->nodes[k + 1];
        ggx_cuda_mv_mat mat = {m->src[0]->data, f32p(m), (int)t_rows(m->src[0]), 0, 0.0f, nullptr, nullptr};
        int used = 2;
        const ggx_tensor *ins[2] = {n->src[0], n->src[1]};
        if (fusion_softcap(g, k + 2, m, c->fuse)) {
            const ggx_tensor *sc = g->nodes[k + 2];
            mat.y = f32p(sc);
            mat.epi = 1;
            mat.cap = sc->f[0];
            mat.bias = sc->src[1] ? f32p(sc->src[1]) : nullptr;
            used = 3;
        } else if (fusion_residual(c, g, k + 2, m, ins, 2)) {
            const ggx_tensor *ad = g->nodes[k + 2];
            mat.y = f32p(ad);
            mat.res = f32p(ad->src[0] == m ? ad->src[1] : ad->src[0]);
            used = 3;
        }
        *consumed = used;
        if (skipped(c, m, m->src[0]->name)) return GGX_OK;
        const ggx_cuda_mv_x xs = {f32p(n->src[0]), f32p(n->src[1]), nullptr,
                                  n->op == GGX_OP_SWIGLU ? GGX_CUDA_X_SWIGLU : GGX_CUDA_X_SIGMOID_MUL, 0.0f,
                                  nullptr, 0, nullptr};
        return run_mv(c, g, k + used, m->src[0]->type, &mat, 1, xs, (int)t_cols(m->src[0]),
                      (int)t_rows(m->src[1]), "fused mul_mat");
    }
    if (n->op == GGX_OP_RMS_NORM && fusion_rms_virtual(c, g, k)) {
        /* nothing to launch: the consuming matvecs normalize x themselves */
        c->vrms[c->n_vrms].t = n;
        c->vrms[c->n_vrms].x = f32p(n->src[0]);
        c->vrms[c->n_vrms].w = f32p(n->src[1]);
        c->vrms[c->n_vrms].eps = n->f[0];
        c->n_vrms++;
        return GGX_OK;
    }
    if (n->op == GGX_OP_ADD && fusion_add_rms(g, k, c->fuse)) {
        const ggx_tensor *r = g->nodes[k + 1];
        const int64_t ne = t_nel(n->src[0]);
        const int64_t bcols = t_nel(n->src[1]) == ne ? 0 : t_nel(n->src[1]);
        *consumed = 2;
        GGX_CU_TRY(ggx_cuda_add_rms_norm(s, f32p(n->src[0]), f32p(n->src[1]), bcols, f32p(n),
                                         f32p(r->src[1]), f32p(r), t_rows(n), t_cols(n), r->f[0]),
                   "add + rms_norm");
        return GGX_OK;
    }
    switch (n->op) {
    case GGX_OP_NONE: return GGX_OK;
    case GGX_OP_GET_ROWS:
        GGX_CU_TRY(ggx_cuda_get_rows(s, n->src[0]->type, n->src[0]->data, t_rows(n->src[0]),
                                     t_cols(n->src[0]), static_cast<const int32_t *>(n->src[1]->data),
                                     (int)t_nel(n->src[1]), f32p(n)), "get_rows");
        return GGX_OK;
    case GGX_OP_MUL_MAT: {
        if (!use_mv(n)) return skipped(c, n, n->src[0]->name) ? GGX_OK : run_gemm(c, n);
        /* x: the input, or the input of a virtual RMS_NORM (normalized while staged) */
        const int vr = find_vrms(c, n->src[1]);
        ggx_cuda_mv_x xs = {f32p(n->src[1]), nullptr, nullptr, GGX_CUDA_X_PLAIN, 0.0f, nullptr, 0, nullptr};
        const ggx_tensor *xin = n->src[1];
        if (vr >= 0) {
            xs.a = c->vrms[vr].x;
            xs.c = c->vrms[vr].w;
            xs.mode = GGX_CUDA_X_RMS_NORM;
            xs.eps = c->vrms[vr].eps;
            xin = c->vrms[vr].t->src[0];
        }
        /* group the following MUL_MATs over the same input and weight type into one launch,
         * with the SOFT_CAPs among them that each consume one member as epilogues (the gates:
         * mul_mat, soft_cap, mul_mat, soft_cap). Under a virtual RMS_NORM (decode), small f32
         * products over the same input join as side matrices (the gates beside q/k/v/o). */
        constexpr int MAXM = GGX_CUDA_MV_MAX_MATS + GGX_CUDA_MV_MAX_SIDE;
        ggx_cuda_mv_mat all[MAXM]; /* members: main ones (weight type of n) and side ones */
        bool is_side[MAXM];
        int nm = 0, n_side = 0, used = 0;
        const ggx_tensor *members[MAXM], *caps[MAXM];
        int n_caps = 0;
        while (k + used < g->n_nodes) {
            const ggx_tensor *m = g->nodes[k + used];
            if (m->op == GGX_OP_MUL_MAT) {
                if (m->src[1]->data != n->src[1]->data || t_cols(m->src[0]) != t_cols(n->src[0]) ||
                    t_rows(m->src[1]) != t_rows(n->src[1]) || !use_mv(m))
                    break;
                const bool side = m->src[0]->type != n->src[0]->type;
                if (side ? (!c->side || xs.mode != GGX_CUDA_X_RMS_NORM || m->src[0]->type != GGX_TYPE_F32 ||
                            n_side >= GGX_CUDA_MV_MAX_SIDE || t_rows(m->src[0]) > GGX_CUDA_MV_SIDE_ROWS)
                         : nm - n_side >= GGX_CUDA_MV_MAX_MATS)
                    break;
                bool clash = false; /* it must not write where a folded soft cap writes */
                for (int q = 0; q < n_caps; q++) clash |= overlap(m, caps[q]);
                if (clash) break;
                members[nm] = m;
                is_side[nm] = side;
                all[nm] = {m->src[0]->data, f32p(m), (int)t_rows(m->src[0]), 0, 0.0f, nullptr, nullptr};
                nm++;
                n_side += side;
                used++;
                continue;
            }
            if (m->op != GGX_OP_SOFT_CAP) break;
            int gi = -1;
            for (int q = 0; q < nm; q++)
                if (m->src[0] == members[q] && !all[q].epi) gi = q;
            if (gi < 0 || !fusion_softcap(g, k + used, members[gi], c->fuse) || overlap(m, xin)) break;
            bool clash = false; /* its output must not be another member's input or output */
            for (int q = 0; q < nm; q++) clash |= q != gi && overlap(m, members[q]);
            if (clash) break;
            all[gi].y = f32p(m);
            all[gi].epi = 1;
            all[gi].cap = m->f[0];
            all[gi].bias = m->src[1] ? f32p(m->src[1]) : nullptr;
            caps[n_caps++] = m;
            used++;
        }
        ggx_cuda_mv_mat mats[GGX_CUDA_MV_MAX_MATS], side[GGX_CUDA_MV_MAX_SIDE];
        {
            int a = 0, b = 0;
            for (int q = 0; q < nm; q++) {
                if (is_side[q]) side[b++] = all[q];
                else mats[a++] = all[q];
            }
            nm = a;
        }
        xs.side = side;
        xs.n_side = n_side;
        if (nm == 1 && !mats[0].epi) {
            const ggx_tensor *ins[1] = {xin};
            if (fusion_residual(c, g, k + used, n, ins, 1)) {
                const ggx_tensor *ad = g->nodes[k + used];
                mats[0].y = f32p(ad);
                mats[0].res = f32p(ad->src[0] == n ? ad->src[1] : ad->src[0]);
                used++;
            }
        }
        *consumed = used;
        if (skipped(c, n, n->src[0]->name)) return GGX_OK;
        return run_mv(c, g, k + used, n->src[0]->type, mats, nm, xs, (int)t_cols(n->src[0]),
                      (int)t_rows(n->src[1]), "mul_mat");
    }
    case GGX_OP_ADD:
    case GGX_OP_MUL:
    case GGX_OP_SIGMOID_MUL:
    case GGX_OP_SWIGLU: {
        const int op = n->op == GGX_OP_ADD ? 0 : n->op == GGX_OP_MUL ? 1 : n->op == GGX_OP_SIGMOID_MUL ? 2 : 3;
        const int64_t ne = t_nel(n->src[0]);
        const int64_t bcols = t_nel(n->src[1]) == ne ? 0 : t_nel(n->src[1]);
        GGX_CU_TRY(ggx_cuda_binary(s, op, f32p(n->src[0]), f32p(n->src[1]), f32p(n), ne, bcols),
                   "elementwise");
        return GGX_OK;
    }
    case GGX_OP_RMS_NORM:
        GGX_CU_TRY(ggx_cuda_rms_norm(s, f32p(n->src[0]), f32p(n->src[1]), f32p(n), t_rows(n->src[0]),
                                     t_cols(n->src[0]), n->f[0]), "rms_norm");
        return GGX_OK;
    case GGX_OP_HEAD_NORM:
        GGX_CU_TRY(ggx_cuda_head_norm(s, f32p(n->src[0]), f32p(n->src[1]), f32p(n), t_rows(n->src[0]),
                                      n->i[0], t_cols(n->src[0]) / n->i[0], n->f[0]), "head_norm");
        return GGX_OK;
    case GGX_OP_SOFT_CAP:
        GGX_CU_TRY(ggx_cuda_soft_cap(s, f32p(n->src[0]), n->src[1] ? f32p(n->src[1]) : nullptr, f32p(n),
                                     t_nel(n->src[0]), t_cols(n->src[0]), n->f[0]), "soft_cap");
        return GGX_OK;
    case GGX_OP_MLSTM: {
        const ggx_batch *b = g->batch;
        ggx_cuda_mlstm_args a;
        a.q = f32p(n->src[0]);
        a.k = f32p(n->src[1]);
        a.v = f32p(n->src[2]);
        a.ig = f32p(n->src[3]);
        a.fg = f32p(n->src[4]);
        a.h = f32p(n);
        const int *tab = static_cast<const int *>(c->tab_dev);
        a.seq_off = tab;
        a.seq_len = tab + b->n_seqs;
        const size_t ptr_base = ((size_t)2 * b->n_seqs * sizeof(int) + 15) & ~(size_t)15;
        a.state_ptrs = reinterpret_cast<float *const *>(static_cast<const char *>(c->tab_dev) + ptr_base) +
                       (size_t)n->i[0] * b->n_seqs * 3;
        a.counters = c->counters;
        a.n_seqs = b->n_seqs;
        a.nh = n->i[1];
        a.dqk = n->i[2];
        a.dv = n->i[3];
        a.max_len = 0;
        for (int q = 0; q < b->n_seqs; q++) a.max_len = b->seq_len[q] > a.max_len ? b->seq_len[q] : a.max_len;
        a.eps = n->f[0];
        a.total_tokens = (int)t_rows(n->src[0]);
        a.chunk = 0;
        a.scratch = nullptr;
        ggx_cuda_mlstm_head_norm hnf = {nullptr, nullptr, 0.0f};
        if (fusion_mlstm_head_norm(c, g, k, a.dv)) {
            const ggx_tensor *hn = g->nodes[k + 1];
            hnf.hn = f32p(hn);
            hnf.w = f32p(hn->src[1]);
            hnf.eps = hn->f[0];
            *consumed = 2;
        }
        if (a.max_len == 1 && skipped(c, n, "@step")) return GGX_OK;
        if (a.max_len == 1 && skipped(c, n, "@norm")) hnf.hn = nullptr;
        if (!hnf.hn && c->chunkwise && n->i[4] > 0 &&
            ggx_cuda_mlstm_scratch_floats(a.n_seqs, a.max_len, a.total_tokens, a.nh, a.dqk, a.dv, n->i[4]) &&
            c->mlstm_scratch_size >= sizeof(float) * ggx_cuda_mlstm_scratch_floats(a.n_seqs, a.max_len,
                                                       a.total_tokens, a.nh, a.dqk, a.dv, n->i[4])) {
            a.chunk = n->i[4];
            a.scratch = static_cast<float *>(c->mlstm_scratch);
            GGX_CU_TRY(ggx_cuda_mlstm_chunkwise(s, &a), "mlstm chunkwise");
        }
        float *const *pend = nullptr;
        if (c->pend_base && a.max_len == 1)
            pend = reinterpret_cast<float *const *>(static_cast<const char *>(c->tab_dev) + c->pend_base) +
                   (size_t)n->i[0] * b->n_seqs;
        GGX_CU_TRY(ggx_cuda_mlstm_recurrent(s, &a, hnf.hn ? &hnf : nullptr, pend), "mlstm");
        return GGX_OK;
    }
    default:
        return ggx_fail(GGX_ERR_UNSUPPORTED, "cuda: op %d is not supported", (int)n->op);
    }
}

bool use_mv(const ggx_tensor *n);

ggx_status run_nodes_profiled(Ctx *c, ggx_graph *g) {
    if (c->prof_n_ev < g->n_nodes + 1) {
        for (int i = 0; i < c->prof_n_ev; i++) cudaEventDestroy(c->prof_ev[i]);
        free(c->prof_ev);
        c->prof_n_ev = 0;
        c->prof_ev = static_cast<cudaEvent_t *>(calloc((size_t)g->n_nodes + 1, sizeof(cudaEvent_t)));
        if (!c->prof_ev) return ggx_fail(GGX_ERR_NOMEM, "cuda profile: out of memory");
        for (int i = 0; i <= g->n_nodes; i++) GGX_CU_TRY(cudaEventCreate(&c->prof_ev[i]), "profile event");
        c->prof_n_ev = g->n_nodes + 1;
    }
    int starts[1 << 14], ns = 0;
    for (int k = 0; k < g->n_nodes && ns < (1 << 14) - 1;) {
        int used = 1;
        GGX_CU_TRY(cudaEventRecord(c->prof_ev[ns], c->stream), "profile event");
        starts[ns++] = k;
        ggx_status st = run_node(c, g, k, &used);
        if (st != GGX_OK) return ggx_fail_wrap(st, "node %d (%s)", k, g->nodes[k]->name);
        k += used;
    }
    GGX_CU_TRY(cudaEventRecord(c->prof_ev[ns], c->stream), "profile event");
    GGX_CU_TRY(cudaEventSynchronize(c->prof_ev[ns]), "profile event");
    for (int i = 0; i < ns; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, c->prof_ev[i], c->prof_ev[i + 1]);
        const ggx_tensor *n = g->nodes[starts[i]];
        const int end = i + 1 < ns ? starts[i + 1] : g->n_nodes;
        for (int q = starts[i]; q < end; q++)
            if (g->nodes[q]->op == GGX_OP_MUL_MAT) { n = g->nodes[q]; break; }
        const int sub = n->op == GGX_OP_MUL_MAT && !use_mv(n);
        c->prof_ms[n->op][sub] += ms;
        c->prof_calls[n->op][sub]++;
    }
    c->prof_graphs++;
    return GGX_OK;
}

/* PDL pays off for chains of small kernels (decode, serving batches); in a prefill the early
 * launched blocks of the next kernel hold SM slots the long current one still needs (measured:
 * 8192-token prefill 495 ms with it, 435 without) */
bool pdl_for(const ggx_graph *g) {
    int64_t rows = 0;
    for (int k = 0; k < g->n_nodes; k++)
        if (g->nodes[k]->op == GGX_OP_MUL_MAT && t_rows(g->nodes[k]->src[1]) > rows) rows = t_rows(g->nodes[k]->src[1]);
    return g_pdl_ok && rows <= 64;
}

/* The persistent decode kernel (cuda_persist.cu; off by default, GGX_CUDA_PK=1) takes the graphs
 * of one token per product whose matvecs it runs (q8_0, q4_0, q4_x; f32 only as the gates' side
 * rows): batch-1 decode. Mode 2 (tests) takes every graph of one token per product. */
bool pk_for(const Ctx *c, const ggx_graph *g) {
    const int mode = ggx_cuda_pk_mode();
    if (!mode || c->profile) return false;
    bool quant = false;
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        if (n->op != GGX_OP_MUL_MAT) continue;
        if (t_rows(n->src[1]) != 1) return false;
        const enum ggx_type t = n->src[0]->type;
        if (ggx_cuda_repacked(t)) quant = true;
        else if (mode == 1 && (t != GGX_TYPE_F32 || t_rows(n->src[0]) > GGX_CUDA_MV_SIDE_ROWS)) return false;
    }
    return quant || mode == 2;
}

ggx_status run_nodes(Ctx *c, ggx_graph *g) {
    c->n_vrms = 0;
    c->xconv_src = nullptr;
    g_ggx_cuda_pdl = pdl_for(g);
    if (c->profile) return run_nodes_profiled(c, g);
    const bool pk = pk_for(c, g);
    if (pk) ggx_cuda_pk_begin(c->stream);
    for (int k = 0; k < g->n_nodes;) {
        int used = 1;
        ggx_status st = run_node(c, g, k, &used);
        if (st != GGX_OK) {
            if (pk) ggx_cuda_pk_end(false);
            return ggx_fail_wrap(st, "node %d (%s)", k, g->nodes[k]->name);
        }
        k += used;
    }
    if (pk) GGX_CU_TRY(ggx_cuda_pk_end(true), "persistent kernel");
    return GGX_OK;
}

uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = static_cast<const uint8_t *>(p);
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* everything a captured graph bakes in: ops, types, shapes, buffers, parameters, batch layout */
/* What decides the launches a graph records: its nodes (ops, shapes, buffers, parameters,
 * flags: OUTPUT blocks fusions), the batch layout and the process-wide kernel switches (a
 * test may flip the int8-activation mode between two graphs that reuse the same buffers). */
uint64_t graph_key(const Ctx *c, const ggx_graph *g) {
    uint64_t h = 0xcbf29ce484222325ull;
    const int modes[7] = {ggx_cuda_mv_int8_mode(), c->fuse,           c->chunkwise,
                          ggx_cuda_mv_tma(),       ggx_cuda_pk_mode(), ggx_cuda_mlstm_set_cluster(-1),
                          ggx_cuda_mlstm_set_defer(0)};
    h = fnv(h, modes, sizeof modes);
    h = fnv(h, &g->n_nodes, sizeof g->n_nodes);
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        h = fnv(h, &n->op, sizeof n->op);
        h = fnv(h, &n->type, sizeof n->type);
        h = fnv(h, n->dims, sizeof n->dims);
        h = fnv(h, &n->data, sizeof n->data);
        h = fnv(h, n->i, sizeof n->i);
        h = fnv(h, n->f, sizeof n->f);
        h = fnv(h, &n->flags, sizeof n->flags);
        for (int s = 0; s < GGX_MAX_SRC; s++) {
            const ggx_tensor *src = n->src[s];
            if (!src) continue;
            h = fnv(h, &src->data, sizeof src->data);
            h = fnv(h, &src->type, sizeof src->type);
            h = fnv(h, src->dims, sizeof src->dims);
        }
    }
    if (g->batch) {
        h = fnv(h, &g->batch->n_seqs, sizeof(int));
        h = fnv(h, g->batch->seq_off, sizeof(int) * (size_t)g->batch->n_seqs);
        h = fnv(h, g->batch->seq_len, sizeof(int) * (size_t)g->batch->n_seqs);
    }
    return h;
}

/* whether this graph's mLSTM steps defer their C stores (a decode step whose mLSTM kernels
 * replay pending updates: not handed to the persistent kernel) */
bool pend_aware(const Ctx *c, const ggx_graph *g) {
    if (!g->batch || !decode_batch(g) || pk_for(c, g)) return false;
    bool any = false;
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        if (n->op != GGX_OP_MLSTM) continue;
        if (!ggx_cuda_mlstm_defer_usable(n->i[2], n->i[3], g->batch->n_seqs)) return false;
        any = true;
    }
    return any;
}

/* The pending buffers of every (state, layer) of a deferring graph, created (once per state:
 * its first deferring step) before anything is enqueued. Without the memory for them the graph
 * runs without deferral (false) rather than failing: the buffers are an optimization. */
bool pend_reserve(Ctx *c, const ggx_graph *g) {
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        if (n->op != GGX_OP_MLSTM) continue;
        for (int q = 0; q < g->batch->n_seqs; q++) {
            float *P = nullptr;
            if (ggx_cuda_pend_get(&c->pend, c->stream, g->batch->states[q][n->i[0]].C, n->i[1], n->i[2], n->i[3],
                                  &P) != GGX_OK) {
                (void)cudaGetLastError();
                return false;
            }
        }
    }
    return true;
}

/* Before a graph runs on its states: the pending updates of every (state, layer) it reads with
 * a kernel that does not replay them are applied first; after a deferring graph is enqueued,
 * its entries are flagged. */
ggx_status pend_before(Ctx *c, const ggx_graph *g, bool aware) {
    if (aware || !c->pend.n_maybe || !g->batch || !g->batch->states) return GGX_OK;
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        if (n->op != GGX_OP_MLSTM) continue;
        const size_t cb = sizeof(float) * (size_t)n->i[1] * n->i[2] * n->i[3];
        for (int q = 0; q < g->batch->n_seqs; q++) {
            ggx_status st = ggx_cuda_pend_flush(&c->pend, c->stream, g->batch->states[q][n->i[0]].C, cb);
            if (st != GGX_OK) return st;
        }
    }
    return GGX_OK;
}
void pend_after(Ctx *c, const ggx_graph *g, bool aware) {
    if (!aware) return;
    for (int k = 0; k < g->n_nodes; k++)
        if (g->nodes[k]->op == GGX_OP_MLSTM)
            for (int q = 0; q < g->batch->n_seqs; q++)
                ggx_cuda_pend_mark(&c->pend, g->batch->states[q][g->nodes[k]->i[0]].C);
}

/* Upload the batch table (offsets, lengths, state pointers of every layer; for a deferring
 * graph the pending buffers) when it changed. */
ggx_status upload_batch_table(Ctx *c, const ggx_graph *g, bool aware) {
    int n_layers = 0, max_nh = 0;
    c->pend_base = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const ggx_tensor *n = g->nodes[k];
        if (n->op != GGX_OP_MLSTM) continue;
        if (n->i[0] + 1 > n_layers) n_layers = n->i[0] + 1;
        if (n->i[1] > max_nh) max_nh = n->i[1];
    }
    if (n_layers == 0) return GGX_OK;
    const ggx_batch *b = g->batch;
    if (!b || b->n_seqs < 1 || !b->states)
        return ggx_fail(GGX_ERR_INVALID_ARG, "cuda: graph has mLSTM nodes but no batch");
    const size_t ns = (size_t)b->n_seqs;
    const size_t ptr_base = (2 * ns * sizeof(int) + 15) & ~(size_t)15;
    const size_t pend_base = ptr_base + (size_t)n_layers * ns * 3 * sizeof(float *);
    const size_t need = pend_base + (aware ? (size_t)n_layers * ns * sizeof(float *) : 0);
    if (need > c->tab_size) {
        cudaStreamSynchronize(c->stream);
        drop_graphs(c);
        cudaFreeHost(c->tab_host);
        free(c->tab_prev);
        dev_free(c, c->tab_dev);
        c->tab_host = nullptr;
        c->tab_dev = nullptr;
        c->tab_prev = nullptr;
        c->tab_size = 0;
        GGX_CU_TRY(cudaMallocHost(&c->tab_host, need * 2), "batch table");
        c->tab_prev = calloc(1, need * 2);
        if (!c->tab_prev) return ggx_fail(GGX_ERR_NOMEM, "cuda: batch table");
        ggx_status st = dev_alloc(c, need * 2, &c->tab_dev, "batch table");
        if (st != GGX_OK) return st;
        c->tab_size = need * 2;
        c->tab_used = 0;
    }
    const size_t cneed = ns * (size_t)max_nh;
    if (cneed > c->counters_n) {
        cudaStreamSynchronize(c->stream);
        drop_graphs(c);
        dev_free(c, c->counters);
        c->counters = nullptr;
        c->counters_n = 0;
        void *p = nullptr;
        ggx_status st = dev_alloc(c, cneed * 2 * sizeof(int), &p, "mlstm counters");
        if (st != GGX_OK) return st;
        c->counters = static_cast<int *>(p);
        c->counters_n = cneed * 2;
        GGX_CU_TRY(cudaMemsetAsync(c->counters, 0, c->counters_n * sizeof(int), c->stream), "counters");
    }
    /* build the table in the host copy first; upload only if it differs from the last one */
    uint8_t *tmp = static_cast<uint8_t *>(malloc(need));
    if (!tmp) return ggx_fail(GGX_ERR_NOMEM, "cuda: batch table");
    memset(tmp, 0, need);
    int *ints = reinterpret_cast<int *>(tmp);
    for (size_t s = 0; s < ns; s++) {
        ints[s] = b->seq_off[s];
        ints[ns + s] = b->seq_len[s];
    }
    float **ptrs = reinterpret_cast<float **>(tmp + ptr_base);
    for (int l = 0; l < n_layers; l++)
        for (size_t s = 0; s < ns; s++) {
            const ggx_layer_state *ls = &b->states[s][l];
            ptrs[((size_t)l * ns + s) * 3 + 0] = ls->C;
            ptrs[((size_t)l * ns + s) * 3 + 1] = ls->n;
            ptrs[((size_t)l * ns + s) * 3 + 2] = ls->m;
        }
    ggx_status st = GGX_OK;
    if (aware) {
        float **pp = reinterpret_cast<float **>(tmp + pend_base);
        for (int k = 0; k < g->n_nodes && st == GGX_OK; k++) {
            const ggx_tensor *n = g->nodes[k];
            if (n->op != GGX_OP_MLSTM) continue;
            for (size_t q = 0; q < ns && st == GGX_OK; q++)
                st = ggx_cuda_pend_get(&c->pend, c->stream, b->states[q][n->i[0]].C, n->i[1], n->i[2], n->i[3],
                                       &pp[(size_t)n->i[0] * ns + q]);
        }
        if (st != GGX_OK) {
            free(tmp);
            return st;
        }
        c->pend_base = pend_base;
    }
    if (c->tab_used != need || memcmp(tmp, c->tab_prev, need) != 0) {
        cudaError_t e = cudaEventSynchronize(c->tab_ev); /* the last copy from tab_host is done */
        if (e == cudaSuccess) {
            memcpy(c->tab_host, tmp, need);
            memcpy(c->tab_prev, tmp, need);
            c->tab_used = need;
            e = cudaMemcpyAsync(c->tab_dev, c->tab_host, need, cudaMemcpyHostToDevice, c->stream);
        }
        if (e == cudaSuccess) e = cudaEventRecord(c->tab_ev, c->stream);
        if (e != cudaSuccess) st = ggx_fail(GGX_ERR_BACKEND, "cuda: batch table: %s", cudaGetErrorString(e));
    }
    free(tmp);
    return st;
}

ggx_status run_graph(Ctx *c, ggx_graph *g);

ggx_status be_graph_compute(ggx_backend *be, ggx_graph *g) {
    Ctx *c = ctx_of(be);
    for (int k = 0; k < g->n_nodes; k++)
        if (!be_supports_op(be, g->nodes[k]))
            return ggx_fail(GGX_ERR_UNSUPPORTED, "cuda: node %d (%s, op %d) is not supported",
                            k, g->nodes[k]->name, (int)g->nodes[k]->op);
    const bool aware = pend_aware(c, g) && pend_reserve(c, g);
    ggx_status st = pend_before(c, g, aware);
    if (st == GGX_OK) st = upload_batch_table(c, g, aware);
    if (st != GGX_OK) return st;
    st = run_graph(c, g);
    if (st == GGX_OK) pend_after(c, g, aware);
    return st;
}

/* the nodes, eagerly or through the graph cache */
ggx_status run_graph(Ctx *c, ggx_graph *g) {
    ggx_status st = GGX_OK;
    size_t wn = 0, xn = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        size_t a, b;
        gemm_scratch(g->nodes[k], &a, &b);
        wn = a > wn ? a : wn;
        xn = b > xn ? b : xn;
    }
    if ((st = ensure_buf(c, &c->scratch_w, &c->scratch_w_size, wn, "GEMM weight scratch")) != GGX_OK)
        return st;
    if ((st = ensure_buf(c, &c->scratch_x, &c->scratch_x_size, xn, "GEMM activation scratch")) != GGX_OK)
        return st;
    if (c->chunkwise && g->batch) { /* chunkwise mLSTM: gate sums and the states at chunk starts */
        size_t mn = 0;
        int max_len = 0;
        for (int q = 0; q < g->batch->n_seqs; q++) max_len = g->batch->seq_len[q] > max_len ? g->batch->seq_len[q] : max_len;
        for (int k = 0; k < g->n_nodes; k++) {
            const ggx_tensor *n = g->nodes[k];
            if (n->op != GGX_OP_MLSTM) continue;
            const size_t f = ggx_cuda_mlstm_scratch_floats(g->batch->n_seqs, max_len, (int)t_rows(n->src[0]),
                                                           n->i[1], n->i[2], n->i[3], n->i[4]);
            mn = f * sizeof(float) > mn ? f * sizeof(float) : mn;
        }
        if ((st = ensure_buf(c, &c->mlstm_scratch, &c->mlstm_scratch_size, mn, "mLSTM chunkwise scratch")) != GGX_OK)
            return st;
    }

    if (!c->graphs_on || c->profile) return run_nodes(c, g);
    const uint64_t key = graph_key(c, g);
    GraphEntry *e = nullptr, *victim = &c->cache[0];
    for (int i = 0; i < GRAPH_CACHE; i++) {
        if (c->cache[i].seen && c->cache[i].key == key) e = &c->cache[i];
        if (c->cache[i].last_use < victim->last_use) victim = &c->cache[i];
    }
    c->tick++;
    if (!e) { /* first sight: run eagerly, remember */
        if (victim->exec) cudaGraphExecDestroy(victim->exec);
        victim->exec = nullptr;
        victim->key = key;
        victim->seen = 1;
        victim->last_use = c->tick;
        return run_nodes(c, g);
    }
    e->last_use = c->tick;
    if (!e->exec) { /* second sight: capture */
        GGX_CU_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "graph capture");
        st = run_nodes(c, g);
        cudaGraph_t graph = nullptr;
        cudaError_t ce = cudaStreamEndCapture(c->stream, &graph);
        if (st != GGX_OK) {
            if (graph) cudaGraphDestroy(graph);
            return st;
        }
        if (ce != cudaSuccess) return ggx_fail(GGX_ERR_BACKEND, "cuda: graph capture: %s", cudaGetErrorString(ce));
        ce = cudaGraphInstantiate(&e->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (ce != cudaSuccess) {
            e->exec = nullptr;
            return ggx_fail(GGX_ERR_BACKEND, "cuda: graph instantiate: %s", cudaGetErrorString(ce));
        }
    }
    GGX_CU_TRY(cudaGraphLaunch(e->exec, c->stream), "graph launch");
    return GGX_OK;
}

void be_free(ggx_backend *be) {
    if (!be) return;
    Ctx *c = ctx_of(be);
    if (c) {
        cudaStreamSynchronize(c->stream);
        if (c->profile && c->prof_graphs) {
            static const char *names[GGX_OP_COUNT] = {"none", "get_rows", "mul_mat", "add", "mul",
                "rms_norm", "head_norm", "sigmoid_mul", "swiglu", "soft_cap", "mlstm"};
            double tot = 0;
            for (int o = 0; o < GGX_OP_COUNT; o++) tot += c->prof_ms[o][0] + c->prof_ms[o][1];
            fprintf(stderr, "cuda profile: %d graphs, %.3f ms per graph (eager, events between launches)\n",
                    c->prof_graphs, tot / c->prof_graphs);
            for (int o = 0; o < GGX_OP_COUNT; o++)
                for (int sub = 0; sub < 2; sub++)
                    if (c->prof_calls[o][sub])
                        fprintf(stderr, "  %-12s%-7s %9.3f ms/graph %6.1f%%  %7.1f launches/graph  %8.2f us/launch\n",
                                names[o], o == GGX_OP_MUL_MAT ? (sub ? " gemm" : " matvec") : "",
                                c->prof_ms[o][sub] / c->prof_graphs, 100.0 * c->prof_ms[o][sub] / tot,
                                (double)c->prof_calls[o][sub] / c->prof_graphs,
                                1e3 * c->prof_ms[o][sub] / c->prof_calls[o][sub]);
        }
        ggx_cuda_pend_free(&c->pend);
        for (int i = 0; i < c->prof_n_ev; i++) cudaEventDestroy(c->prof_ev[i]);
        free(c->prof_ev);
        for (int i = 0; i < GRAPH_CACHE; i++)
            if (c->cache[i].exec) cudaGraphExecDestroy(c->cache[i].exec);
        if (c->cublas) cublasDestroy(c->cublas);
        cudaFree(c->cublas_ws);
        cudaFree(c->scratch_w);
        cudaFree(c->scratch_x);
        cudaFree(c->mlstm_scratch);
        cudaFree(c->tab_dev);
        cudaFree(c->counters);
        cudaFreeHost(c->tab_host);
        free(c->tab_prev);
        cudaFreeHost(c->stage);
        free(c->allocs);
        for (int i = 0; i < 2; i++)
            if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
        if (c->tab_ev) cudaEventDestroy(c->tab_ev);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
        /* none of the frees above is checked: leave no error behind for the next backend's
         * first cudaGetLastError (it would report it as its own launch's) */
        cudaGetLastError();
    }
    free(be);
}

} // namespace

extern "C" ggx_status ggx_backend_cuda_init(const ggx_backend_params *p, ggx_backend **out) {
    *out = nullptr;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        cudaGetLastError();
        return ggx_fail(GGX_ERR_BACKEND, "cuda: no CUDA device available (%s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    const int dev = p ? p->device : 0;
    if (dev < 0 || dev >= count)
        return ggx_fail(GGX_ERR_BACKEND, "cuda: device %d does not exist (%d present)", dev, count);
    ggx_backend *be = static_cast<ggx_backend *>(calloc(1, sizeof *be));
    Ctx *c = static_cast<Ctx *>(calloc(1, sizeof *c));
    if (!be || !c) {
        free(be);
        free(c);
        return ggx_fail(GGX_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->ctx = c;
    be->iface.name = "cuda";
    be->iface.free = be_free;
    be->iface.alloc = be_alloc;
    be->iface.release = be_release;
    be->iface.weights_map = be_weights_map;
    be->iface.weights_unmap = be_weights_unmap;
    be->iface.weights_map_rows = be_weights_map_rows;
    be->iface.upload = be_upload;
    be->iface.download = be_download;
    be->iface.copy = be_copy;
    be->iface.memset0 = be_memset0;
    be->iface.supports_op = be_supports_op;
    be->iface.graph_compute = be_graph_compute;
    be->iface.synchronize = be_synchronize;
    c->device = dev;
    ggx_cuda_pend_init(&c->pend, c, pend_alloc, pend_release);
    const char *env = getenv("GGX_CUDA_GRAPHS");
    c->graphs_on = !(env && env[0] == '0');
    c->profile = (env = getenv("GGX_CUDA_PROFILE")) && env[0] == '1';
    c->fuse = !((env = getenv("GGX_CUDA_FUSE")) && env[0] == '0');
    c->side = !((env = getenv("GGX_CUDA_SIDE")) && env[0] == '0');
    c->pf_bytes = (size_t)8192 * 1024;
    if ((env = getenv("GGX_CUDA_PF_KB"))) c->pf_bytes = (size_t)strtoull(env, nullptr, 10) * 1024;
    c->chunkwise = !((env = getenv("GGX_CUDA_CHUNKWISE")) && env[0] == '0');
    if ((env = getenv("GGX_CUDA_SKIP"))) snprintf(c->skip, sizeof c->skip, "%s", env);
    c->emb_host = !((env = getenv("GGX_CUDA_EMB_HOST")) && env[0] == '0');
    if ((env = getenv("GGX_CUDA_INT8_X"))) ggx_cuda_mv_set_int8_x(atoi(env));
    if ((env = getenv("GGX_CUDA_MV_MAX")) && atoi(env) >= 0) g_mv_max_tokens = atoi(env);
    cudaDeviceProp prop;
    ggx_status st = GGX_OK;
#define INIT_TRY(call, what)                                                                   \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            st = ggx_fail(GGX_ERR_BACKEND, "cuda init: %s: %s", what, cudaGetErrorString(e_)); \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)
    INIT_TRY(cudaSetDevice(dev), "set device");
    INIT_TRY(cudaGetDeviceProperties(&prop, dev), "device properties");
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    /* PDL needs sm_90; GGX_CUDA_PDL=0 turns it off (A/B runs). Global: kernels launch the same
     * way for every backend of the process. */
    g_pdl_ok = prop.major >= 9 && !((env = getenv("GGX_CUDA_PDL")) && env[0] == '0');
    INIT_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    INIT_TRY(cudaMallocHost(&c->stage, 2 * STAGE_BYTES), "pinned staging buffer");
    for (int i = 0; i < 2; i++) INIT_TRY(cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming), "event");
    INIT_TRY(cudaEventCreateWithFlags(&c->tab_ev, cudaEventDisableTiming), "event");
    /* The driver reserves local memory for the per-thread stack of every thread that can be
     * resident (~0.27 MB per byte on an H100: the default 1 KB costs ~270 MB). Our kernels use
     * 0-24 bytes (mlstm_inter_kernel<16>: 72; ptxas -v); the driver grows the reservation for a
     * kernel that needs more (that one, cuBLAS). 7B q4_0 decode: 256 -> 64 bytes saved 50 MB.
     * GGX_CUDA_STACK=BYTES overrides (0: leave the default). */
    {
        size_t stack = 64;
        if ((env = getenv("GGX_CUDA_STACK"))) stack = (size_t)strtoull(env, nullptr, 10);
        if (stack) INIT_TRY(cudaDeviceSetLimit(cudaLimitStackSize, stack), "stack size limit");
    }
    INIT_TRY(ggx_cuda_mv_init(), "matvec scratch");
    {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess)
            ggx_log_info("cuda: device %d, %s (sm_%d%d), %.2f of %.2f GB free after backend creation",
                         dev, prop.name, prop.major, prop.minor, fr / 1e9, tot / 1e9);
    }
    /* cuBLAS is created by the first GEMM (ensure_cublas): a decode-only process never pays
     * its memory */
#undef INIT_TRY
    *out = be;
    return GGX_OK;
fail:
    be_free(be);
    return st;
}

/* ------------------------------------------------------------------ extras (ggx_cuda.h) */

extern "C" int ggx_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" size_t ggx_cuda_weight_nbytes(enum ggx_type t, int64_t rows, int64_t cols) {
    return ggx_cuda_weight_bytes(t, rows, cols);
}

extern "C" ggx_status ggx_cuda_fill_random(ggx_backend *be, void *dev, enum ggx_type t, int64_t rows,
                                           int64_t cols, uint64_t seed, float scale) {
    Ctx *c = ctx_of(be);
    GGX_CU_TRY(ggx_cuda_fill_random_dev(c->stream, t, dev, rows, cols, seed, scale), "fill");
    GGX_CU_TRY(cudaStreamSynchronize(c->stream), "fill");
    return GGX_OK;
}

extern "C" ggx_status ggx_cuda_move_to_host(ggx_backend *be, void **p, size_t n) {
    Ctx *c = ctx_of(be);
    void *h = nullptr;
    ggx_status st = host_alloc(c, n, &h, "host copy");
    if (st != GGX_OK) return st;
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) e = cudaMemcpy(h, *p, n, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        free_ptr(c, h);
        return ggx_fail(GGX_ERR_BACKEND, "cuda: move to host: %s", cudaGetErrorString(e));
    }
    be_release(be, *p);
    *p = h;
    return GGX_OK;
}

extern "C" void ggx_cuda_set_graphs(ggx_backend *be, int on) { ctx_of(be)->graphs_on = on; }

extern "C" void ggx_cuda_set_int8_activations(int mode) { ggx_cuda_mv_set_int8_x(mode); }
extern "C" int ggx_cuda_int8_activations(void) { return ggx_cuda_mv_int8_mode(); }
extern "C" int ggx_cuda_set_tma_matvec(int mode) { return ggx_cuda_mv_set_tma(mode); }

extern "C" int ggx_cuda_set_persistent(int mode) { return ggx_cuda_pk_set_mode(mode); }
extern "C" int ggx_cuda_set_mlstm_cluster(int mode) { return ggx_cuda_mlstm_set_cluster(mode); }
extern "C" int ggx_cuda_set_mlstm_defer(int k) { return ggx_cuda_mlstm_set_defer(k); }
extern "C" long long ggx_cuda_persistent_launches(void) { return ggx_cuda_pk_launches(); }

extern "C" ggx_status ggx_cuda_mem_info(ggx_backend *be, size_t *free_b, size_t *total_b, size_t *peak_b) {
    Ctx *c = ctx_of(be);
    size_t f = 0, t = 0;
    GGX_CU_TRY(cudaMemGetInfo(&f, &t), "memory info");
    if (free_b) *free_b = f;
    if (total_b) *total_b = t;
    if (peak_b) *peak_b = c->peak;
    return GGX_OK;
}

extern "C" const char *ggx_cuda_device_name(ggx_backend *be) { return ctx_of(be)->name; }
