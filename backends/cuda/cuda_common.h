/*
 * cuda_common.h — internals shared by the CUDA backend's translation units (not a public header).
 *
 *     GGX_CU_TRY(cudaMemcpyAsync(...), "upload");          // -> ggx_fail(GGX_ERR_BACKEND, ...)
 *     ggx_cuda_launch_rms_norm(stream, x, w, y, rows, cols, eps);
 *
 * Device weight layouts (chosen by weights_map; every kernel here reads these, never the file's):
 *   f32 / f16 / bf16  as in the file, row-major [rows, cols].
 *   q8_0  repacked: qs int8 [rows, cols] row-major, then at ggx_cuda_qs_bytes() (16-byte aligned)
 *         the f16 scales [rows, cols/32]. Splitting scales from quants makes every 16-byte load
 *         of quants aligned (the file's 34-byte blocks are not).
 *   q4_0  repacked: qs [rows, cols/2] (each block's 16 bytes unchanged: element j in the low
 *         nibble of byte j, element j+16 in the high nibble), then the f16 scales [rows, cols/32].
 *   q4_x  repacked like q4_0 (level indices), then per block the f16 pair {d, m} [rows, cols/32]
 *         (x = d * ggx_q4_x_levels[q] + m).
 * Repacked weights carry 16 bytes of padding after the scales (ggx_cuda_weight_bytes).
 */
#ifndef GGX_CUDA_COMMON_H
#define GGX_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "ggx/backend.h"
#include "ggx/error.h"
#include "ggx/graph.h"
#include "ggx/types.h"
}

#define GGX_CU_TRY(call, what)                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            return ggx_fail(GGX_ERR_BACKEND, "cuda: %s: %s", (what), cudaGetErrorString(e_)); \
    } while (0)

/* ---- programmatic dependent launch (PDL, sm_90+) ----
 * Decode is a chain of ~200 small dependent kernels; without PDL each one starts only after the
 * previous one has fully drained, so every launch pays the launch latency, the ramp-up of its
 * memory stream and the previous kernel's tail. With PDL (ggx_cuda_launch sets the launch
 * attribute on sm_90+) a kernel may start while its predecessor still runs:
 *   - before ggx_pdl_wait() a kernel may only READ data no kernel of the step writes (weights;
 *     the mLSTM state of its own layer, last written by itself a step earlier);
 *   - ggx_pdl_wait() returns once the previous kernel has completed and its writes are visible
 *     (and so, transitively, every earlier one);
 *   - ggx_pdl_trigger() comes right after the wait: the next kernel is launched only when every
 *     block of this one has passed its wait, so at most two kernels of the chain overlap.
 * Every kernel launched through ggx_cuda_launch MUST call ggx_pdl_wait() before touching
 * anything else. On older GPUs (and when GGX_CUDA_PDL=0) both are no-ops and launches are plain. */
__device__ __forceinline__ void ggx_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(GGX_NO_PDL_ASM)
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void ggx_pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(GGX_NO_PDL_ASM)
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/* the usual kernel prologue: wait for the predecessor, then let the successor launch */
#define GGX_PDL_ENTER()   \
    do {                  \
        ggx_pdl_wait();   \
        ggx_pdl_trigger(); \
    } while (0)

/* whether launches carry the PDL attribute (set once by the first backend: sm_90+ and
 * GGX_CUDA_PDL != 0) */
extern bool g_ggx_cuda_pdl;

/* ---- the persistent decode kernel (cuda_persist.cu) ----
 * While the backend records (ggx_cuda_pk_begin .. ggx_cuda_pk_end, eligible decode graphs),
 * ggx_cuda_mv_ex and ggx_cuda_mlstm_recurrent hand their launches to ggx_cuda_pk_add_mv /
 * _mlstm (true: queued, nothing launched) and every other launch through ggx_cuda_launch first
 * flushes the queue as one pk_kernel launch (g_ggx_pk_pending), so the order never changes. */
extern int g_ggx_pk_pending;
int ggx_cuda_pk_init(void);          /* once per process; true where supported (sm_90) */
int ggx_cuda_pk_set_mode(int mode);  /* 0 off (default), 1 eligible graphs, 2 every 1-token graph */
int ggx_cuda_pk_mode(void);
long long ggx_cuda_pk_launches(void); /* launches so far (tests check that it ran) */
void ggx_cuda_pk_begin(cudaStream_t s);
cudaError_t ggx_cuda_pk_flush(void);
cudaError_t ggx_cuda_pk_end(bool run); /* run: flush what is queued; false: drop it (errors) */
bool ggx_cuda_pk_add_mv(enum ggx_type t, const struct ggx_cuda_mv_mat *mats, int n_mats,
                        const struct ggx_cuda_mv_x *xs, int cols, int n_tok);
bool ggx_cuda_pk_add_mlstm(const struct ggx_cuda_mlstm_args *a, const struct ggx_cuda_mlstm_head_norm *hn);

/* ggx_cuda_launch with thread-block clusters of cluster_x blocks along x (sm_90; the caller
 * checks that the device launches clusters and that the kernel may use that size); 0: none */
template <typename... KArgs, typename... Args>
static inline cudaError_t ggx_cuda_launch_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                                  cudaStream_t s, unsigned cluster_x, Args... args) {
    if (g_ggx_pk_pending) {
        const cudaError_t e = ggx_cuda_pk_flush();
        if (e != cudaSuccess) return e;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[2];
    unsigned n = 0;
    if (g_ggx_cuda_pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster_x) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = cluster_x;
        attr[n].val.clusterDim.y = 1;
        attr[n++].val.clusterDim.z = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}
template <typename... KArgs, typename... Args>
static inline cudaError_t ggx_cuda_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                          size_t smem, cudaStream_t s, Args... args) {
    return ggx_cuda_launch_cluster(kernel, grid, block, smem, s, 0u, args...);
}
/* launch or return the error from the calling function */
#define GGX_LAUNCH(kernel, grid, block, smem, stream, ...)                                      \
    do {                                                                                        \
        cudaError_t le_ = ggx_cuda_launch(kernel, grid, block, smem, stream, __VA_ARGS__);      \
        if (le_ != cudaSuccess) return le_;                                                     \
    } while (0)

/* int8 activations, ggml q8_1 style: four consecutive floats of a 32-block quantized with the
 * block's scale d = amax / 127. The block's 8 words sit in 8 consecutive lanes (aligned to 8),
 * which share amax by shuffles, so every lane of the warp must call these. q8_block4 returns
 * the quants (in -127..127) and the block's amax; q8_block_sum adds an int over the 8 lanes;
 * q8_pack4 packs the quants into one word (byte i = element i). */
__device__ __forceinline__ int4 ggx_cuda_q8_block4(const float4 v, float &amax) {
    amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return make_int4(__float2int_rn(v.x * inv), __float2int_rn(v.y * inv), __float2int_rn(v.z * inv),
                     __float2int_rn(v.w * inv));
}
__device__ __forceinline__ int ggx_cuda_q8_block_sum(int v) {
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ uint32_t ggx_cuda_q8_pack4(const int4 q) {
    return (uint32_t)(q.x & 0xff) | (uint32_t)(q.y & 0xff) << 8 | (uint32_t)(q.z & 0xff) << 16 |
           (uint32_t)(q.w & 0xff) << 24;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
 * sh: one float per warp; may be reused right after (the leading barrier). */
__device__ __forceinline__ float ggx_cuda_block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    const int nw = blockDim.x >> 5;
    v = lane < nw ? sh[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Split-K handoff: every block of a row block calls this (all its threads) after writing its
 * partial sums; it returns true in the last one to arrive, which then sees every partial (the
 * fences) and adds them in split order, so results do not depend on arrival order. */
__device__ __forceinline__ bool ggx_cuda_last_split(int *counter, int n_splits) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1) == n_splits - 1;
    __syncthreads();
    if (last) __threadfence();
    return last != 0;
}
/* The SOFT_CAP epilogue (cuda_ops.cu's soft_cap_kernel, fused): cap * tanh(v / cap), or v */
__device__ __forceinline__ float ggx_cuda_soft_cap_v(float v, float cap) {
    return cap > 0.0f ? cap * tanhf(v / cap) : v;
}

/* Whether weights of type t are repacked (quants, then per-block scales; see the top). */
__host__ __device__ static inline bool ggx_cuda_repacked(enum ggx_type t) {
    return t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X;
}
/* Bytes of a block's scale part in the repacked layout (f16 d; q4_x: f16 d and m). */
__host__ __device__ static inline size_t ggx_cuda_sc_bytes(enum ggx_type t) { return t == GGX_TYPE_Q4_X ? 4 : 2; }
/* Bytes of the quant part of a repacked weight (the scales follow, 16-byte aligned). */
__host__ __device__ static inline size_t ggx_cuda_qs_bytes(enum ggx_type t, int64_t rows, int64_t cols) {
    size_t n = (size_t)rows * (size_t)cols;
    size_t b = t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X ? n / 2 : n;
    return (b + 15) & ~(size_t)15;
}
/* The 16 q4_x levels (ggx_q4_x_levels, ggx/quants.c) as bytes of four words: level q is byte
 * q % 4 of word q / 4. q4x_levels4 maps four level indices (one per byte) to their levels with
 * two byte permutes. The backend checks these words against the host table whenever it maps
 * a q4_x weight (cuda_backend.cu, weight_layout). */
#define GGX_CUDA_Q4X_L0 0x1D140A00u
#define GGX_CUDA_Q4X_L1 0x3B342D25u
#define GGX_CUDA_Q4X_L2 0x564F4841u
#define GGX_CUDA_Q4X_L3 0x7F71675Eu
#ifdef __CUDACC__
__device__ __forceinline__ uint32_t ggx_cuda_q4x_levels4(uint32_t q) {
    const uint32_t t = q & 0x07070707u, x = t | (t >> 4);
    const uint32_t sel = (x & 0xffu) | ((x >> 8) & 0xff00u); /* byte k's index & 7 in nibble k */
    const uint32_t lo = __byte_perm(GGX_CUDA_Q4X_L0, GGX_CUDA_Q4X_L1, sel);
    const uint32_t hi = __byte_perm(GGX_CUDA_Q4X_L2, GGX_CUDA_Q4X_L3, sel);
    const uint32_t m = ((q >> 3) & 0x01010101u) * 0xffu; /* bytes whose index is >= 8 */
    return (lo & ~m) | (hi & m);
}
#endif
/* Device bytes of a weight of type t [rows, cols] in the device layout. */
size_t ggx_cuda_weight_bytes(enum ggx_type t, int64_t rows, int64_t cols);

/* ---- matrix-vector products (decode; n_tok small). Several matrices of one type that share
 * the same x run in one launch (q/k/v/o of a layer, FFN up/gate). ---- */
#define GGX_CUDA_MV_MAX_MATS 8
typedef struct ggx_cuda_mv_mat {
    const void *w;   /* [rows, cols] device layout */
    float *y;        /* [n_tok, rows] f32 */
    int rows;
    /* fused epilogue (a SOFT_CAP that consumes this product): epi = 1 ->
     * y = cap > 0 ? cap * tanh((y + bias) / cap) : y + bias (bias [rows] or NULL) */
    int epi;
    float cap;
    const float *bias;
    /* fused residual add (an ADD that consumes this product): y = product + res, res [n_tok,
     * rows] (may be y itself); NULL: none. Only ggx_cuda_mv_ex's matvec kernels apply it. */
    const float *res;
} ggx_cuda_mv_mat;

/* The input transform fused into the matvec (an elementwise op whose only consumer is it). */
enum {
    GGX_CUDA_X_PLAIN = 0,
    GGX_CUDA_X_SWIGLU = 1,      /* x = silu(a) * b */
    GGX_CUDA_X_SIGMOID_MUL = 2, /* x = sigmoid(a) * b */
    GGX_CUDA_X_RMS_NORM = 3     /* x = a / sqrt(mean(a^2) + eps) * c  (c: weight [cols]) */
};
/* L2 prefetch of the next launch's weights (decode): byte ranges (16-byte aligned, sizes
 * multiples of 16) that the blocks of a matvec launch request into L2 with
 * cp.async.bulk.prefetch once their own weights are read (sm_90; a hint, nothing waits for it).
 * Why: at batch 1 the DRAM idles between kernels (each launch's start and tail cost ~8-12 us
 * over its bytes); the next matrix's first rows fetched during this launch's tail are L2 hits
 * for the next one. The backend picks the ranges (the start of the next group of matrices). */
#define GGX_CUDA_PF_MAX 8
typedef struct ggx_cuda_pf {
    const void *p[GGX_CUDA_PF_MAX];
    uint32_t n16[GGX_CUDA_PF_MAX]; /* range sizes in 16-byte units */
    uint32_t total16;
    int count;
} ggx_cuda_pf;

/* The activations of a matvec launch (ggx_cuda_mv_ex): a, b [n_tok, cols], c [cols] as the
 * mode needs them. RMS_NORM stages a * c and scales each product by the row's 1/rms at the
 * end (every block sums the squares of the part of the row it stages; split-K blocks combine
 * theirs), so it costs no extra pass over x. */
typedef struct ggx_cuda_mv_x {
    const float *a, *b, *c;
    int mode;
    float eps;
    /* side products (1-2 tokens): up to GGX_CUDA_MV_MAX_SIDE f32 matrices of at most
     * GGX_CUDA_MV_SIDE_ROWS rows over the same x (the mLSTM gates beside q/k/v/o), computed
     * exactly in f32 in the same launch, one block per row (one launch less per layer) */
    const ggx_cuda_mv_mat *side;
    int n_side;
    /* L2 prefetch for the next launch (NULL: none) */
    const ggx_cuda_pf *pf;
} ggx_cuda_mv_x;
#define GGX_CUDA_MV_MAX_SIDE 2
#define GGX_CUDA_MV_SIDE_ROWS 64
#define GGX_CUDA_MV_FUSE_MAX_TOKENS 2

/* y_k[t, r] = dot(W_k[r, :], x[t, :]) for every matrix k, t < n_tok, r < rows_k, where
 * x = xa (PLAIN), silu(xa) * xb (SWIGLU) or sigmoid(xa) * xb (SIGMOID_MUL). */
cudaError_t ggx_cuda_mv(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                        const float *xa, const float *xb, int xmode, int cols, int n_tok);
/* The same with the norm modes and residual epilogues (the matvec kernels only: never mmq). */
cudaError_t ggx_cuda_mv_ex(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                           const ggx_cuda_mv_x *x, int cols, int n_tok);
/* x = a + b (b: same shape, or [cols] broadcast when bcols) and y = rms_norm(x) * w, per row. */
cudaError_t ggx_cuda_add_rms_norm(cudaStream_t s, const float *a, const float *b, int64_t bcols,
                                  float *x, const float *w, float *y, int64_t rows, int64_t cols,
                                  float eps);
/* Scratch for split-K launches (once per process; the device of the first backend). */
cudaError_t ggx_cuda_mv_init(void);
/* q8_0/q4_0 products with int8 activations: 0 never (exact f32 path), 1 always, 2 (default)
 * for 1-2 tokens on the matvecs and from 3 tokens on mmq (cuda_mmq.cu's mmq8_kernel) */
void ggx_cuda_mv_set_int8_x(int mode);
int ggx_cuda_mv_int8_mode(void);
/* the TMA-fed matvec (mvt_kernel) at 1-2 tokens where supported (sm_90): 0 off, 1 q4_0 and
 * q4_x (the default; GGX_CUDA_MVT), 2 also q8_0; set returns the resulting mode */
int ggx_cuda_mv_set_tma(int mode);
int ggx_cuda_mv_tma(void);
/* int8 activations for every token count (mode 1); mmq reads ggx_cuda_mv_int8_mode() */
bool ggx_cuda_mv_int8_x(void);
/* Whether the mv kernels handle this type / column count (else the GEMM path is used). */
bool ggx_cuda_mv_supported(enum ggx_type t, int64_t cols);
/* f32 matrices this small (rows <= GGX_CUDA_MV_SIDE_ROWS) over 17..64 tokens: one launch of
 * small_f32_kernel (ggx_cuda_mv_ex with plain x), where the GEMM path would take cuBLAS */
bool ggx_cuda_mv_small_f32(int64_t rows, int64_t cols, int n_tok);

/* Quantized weights (q8_0, q4_0) times a small batch of tokens on tensor cores (cuda_mmq.cu):
 * same contract as ggx_cuda_mv (several matrices, the fused x transform, the soft-cap epilogue),
 * weights read once per launch for all tokens. ggx_cuda_mv hands a launch to it whenever
 * ggx_cuda_mmq_supported() says so (the token range where it beats both the matvec kernels and
 * the dequantize + cuBLAS GEMM path). */
bool ggx_cuda_mmq_supported(enum ggx_type t, int64_t cols, int n_tok);
cudaError_t ggx_cuda_mmq(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                         const float *xa, const float *xb, int xmode, int cols, int n_tok);

/* dst[rows, cols] (bf16 or f32 as `to`) = W as real numbers, from the device layout. */
cudaError_t ggx_cuda_dequant(cudaStream_t s, enum ggx_type t, const void *w, int64_t rows,
                             int64_t cols, void *dst, enum ggx_type to);
/* dst[n] bf16 = x[n] f32 */
cudaError_t ggx_cuda_f32_to_bf16(cudaStream_t s, const float *x, uint16_t *dst, int64_t n);
/* op: -1 plain, 2 sigmoid(x) * b, 3 x * sigmoid(x) * b (ggx_cuda_binary's codes) */
cudaError_t ggx_cuda_f32_to_bf16_op(cudaStream_t s, int op, const float *x, const float *b, uint16_t *dst,
                                    int64_t n);

/* ---- elementwise, norms, rows ---- */
cudaError_t ggx_cuda_get_rows(cudaStream_t s, enum ggx_type t, const void *table, int64_t n_rows_tab,
                              int64_t cols, const int32_t *ids, int n, float *dst);
/* op: 0 add, 1 mul, 2 sigmoid_mul (sigmoid(a)*b), 3 swiglu (silu(a)*b). b has n or bcols elems. */
cudaError_t ggx_cuda_binary(cudaStream_t s, int op, const float *a, const float *b, float *dst,
                            int64_t n, int64_t bcols);
cudaError_t ggx_cuda_soft_cap(cudaStream_t s, const float *x, const float *bias, float *dst,
                              int64_t n, int64_t cols, float cap);
cudaError_t ggx_cuda_rms_norm(cudaStream_t s, const float *x, const float *w, float *dst,
                              int64_t rows, int64_t cols, float eps);
cudaError_t ggx_cuda_head_norm(cudaStream_t s, const float *x, const float *w, float *dst,
                               int64_t rows, int n_heads, int64_t head_dim, float eps);

/* ---- mLSTM ---- */
typedef struct ggx_cuda_mlstm_args {
    const float *q, *k, *v, *ig, *fg;   /* [T, NH*DQK], [T, NH*DQK], [T, NH*DV], [T, NH], [T, NH] */
    float *h;                           /* [T, NH*DV] */
    const int *seq_off, *seq_len;       /* device [n_seqs] */
    float *const *state_ptrs;           /* device [n_seqs * 3]: C, n, m of this layer per sequence */
    int *counters;                      /* device [n_seqs * NH] zeroed ints (last-block handoff) */
    int n_seqs, nh, dqk, dv, max_len;
    float eps;
    /* chunkwise prefill (xlstm-spec §5): chunk > 0 -> the first (len / chunk) * chunk tokens of
     * each sequence are done by ggx_cuda_mlstm_chunkwise and the recurrent kernel only runs the
     * tail; 0 -> the recurrent kernel runs everything */
    int chunk;
    int total_tokens;   /* T */
    float *scratch;     /* ggx_cuda_mlstm_scratch_floats() floats */
} ggx_cuda_mlstm_args;
/* A HEAD_NORM fused into the recurrent kernel (decode: every token of every sequence runs
 * there): hn [T, NH*DV] = LayerNorm per head of h (no bias) * w [NH*DV]. Kept out of
 * ggx_cuda_mlstm_args on purpose: three more fields there made ptxas spill 268 bytes in
 * mlstm_inter_kernel<32> (the 7B prefill's mLSTM went from 4.5 to 6.2 ms per layer). */
typedef struct ggx_cuda_mlstm_head_norm {
    float *hn;
    const float *w;
    float eps;
} ggx_cuda_mlstm_head_norm;
/* Token-by-token recurrence (xlstm-spec §4) for every sequence; state updated in place.
 * pend: NULL, or (a decode step that ggx_cuda_mlstm_defer_usable accepts) the device array
 * [n_seqs] of each sequence's pending buffer for this layer: C's stores are then deferred
 * (below). */
cudaError_t ggx_cuda_mlstm_recurrent(cudaStream_t s, const ggx_cuda_mlstm_args *a,
                                     const ggx_cuda_mlstm_head_norm *hn /* or NULL */,
                                     float *const *pend = nullptr);
bool ggx_cuda_mlstm_supported(int dqk, int dv);

/* ---- deferred C stores (decode steps: mlstm_step_cl_kernel, mlstm_step_kernel<1, ...>) ----
 * Writing a layer's C (4 MB per 7B sequence) back costs a batch-1 step more than its bytes
 * (session 8: 7 us per layer, wherever the stores run). With deferral K > 1 the step stores C
 * only every K-th token of a sequence; in between it keeps the token's update (f', i' k, v per
 * head) in a pending buffer beside the state, and the next step replays the pending updates
 * onto the C it loads (before its PDL wait, with the same fused multiply-adds in the same
 * order, so C is bit-identical to storing every step). Whoever else reads or writes the state
 * first applies them (ggx_cuda_mlstm_flush): the backend does so before any copy, upload,
 * download or clear that touches a state and before any other mLSTM kernel runs on it.
 * Pending buffer of one (state, layer), floats: counts [nh] (int, tokens pending per head),
 * then f' [K_MAX][nh], i' k [K_MAX][nh * dqk], v [K_MAX][nh * dv]. */
#define GGX_CUDA_MLSTM_DEFER_MAX 4
struct ggx_cuda_pend_layout {
    size_t fp, k, v, total; /* float offsets, total floats */
};
__host__ __device__ __forceinline__ ggx_cuda_pend_layout ggx_cuda_pend_layout_of(int nh, int dqk, int dv) {
    ggx_cuda_pend_layout L;
    L.fp = ((size_t)nh + 3) & ~(size_t)3;
    L.k = L.fp + (((size_t)GGX_CUDA_MLSTM_DEFER_MAX * nh + 3) & ~(size_t)3);
    L.v = L.k + (size_t)GGX_CUDA_MLSTM_DEFER_MAX * nh * dqk;
    L.total = L.v + (size_t)GGX_CUDA_MLSTM_DEFER_MAX * nh * dv;
    return L;
}
/* K (1 = every step stores C): GGX_CUDA_MLSTM_DEFER, default 4; a value >= 1 sets it (tests;
 * process-wide, part of the graph cache key), 0 or less only queries */
int ggx_cuda_mlstm_set_defer(int k);
/* whether a decode step (every sequence at most one token) of these sizes defers its stores
 * (the default kernels, GGX_CUDA_MLSTM_REC=1, any number of sequences) */
bool ggx_cuda_mlstm_defer_usable(int dqk, int dv, int n_seqs);
/* apply the pending updates of one (state, layer) to its C; the caller then zeroes the counts
 * (the first nh ints of P) */
cudaError_t ggx_cuda_mlstm_flush(cudaStream_t s, float *C, const float *P, int nh, int dqk, int dv);
/* The decode step as one thread-block cluster per head (mlstm_step_cl_kernel, sm_90): 0 off, 1
 * batches of 1-2 sequences (the default; GGX_CUDA_MLSTM_CL=0|1|2 in the environment sets it), 2
 * every decode batch (slower at 32 sequences; tests). Returns the resulting mode (0 where the
 * device has no clusters); a negative mode only queries. Process-wide, part of the graph cache
 * key. */
int ggx_cuda_mlstm_set_cluster(int mode);
/* whether a decode step of these sizes runs the cluster kernel (which can fuse the head norm for
 * any number of sequences) */
bool ggx_cuda_mlstm_cluster_usable(int dqk, int dv, int n_seqs);
/* Chunkwise form for the whole chunks of every sequence: gate prefix sums, the chunk-to-chunk
 * state recurrence (states at chunk starts saved to scratch), and the outputs of every chunk in
 * parallel. Call before ggx_cuda_mlstm_recurrent with the same args (chunk > 0). */
cudaError_t ggx_cuda_mlstm_chunkwise(cudaStream_t s, const ggx_cuda_mlstm_args *a);
/* scratch floats the chunkwise path needs (0 if it cannot be used for these sizes) */
size_t ggx_cuda_mlstm_scratch_floats(int n_seqs, int max_len, int total_tokens, int nh, int dqk,
                                     int dv, int chunk);
/* Chunkwise mLSTM (xlstm-spec §5), token j of a chunk: b = the chunk's prefix sums of
 * logsigmoid(f~), ig = its input-gate pre-activations, m0 = the stabilizer at the chunk start.
 * The row stabilizer m_j = max(b_j + m0, max_{q <= j} (b_j - b_q + ig_q)) and the scale of the
 * inter-chunk part exp(b_j + m0 - m_j) (both chunkwise paths, f32 and tensor cores). */
__device__ __forceinline__ void ggx_cuda_mlstm_row_stab(int j, const float *b, const float *ig, float m0,
                                                        float *mj, float *scj) {
    float mi = -INFINITY;
    for (int q = 0; q <= j; q++) mi = fmaxf(mi, b[j] - b[q] + ig[q]);
    const float minter = b[j] + m0;
    const float m = fmaxf(minter, mi);
    mj[j] = m;
    scj[j] = expf(minter - m);
}
/* the tensor-core version of the chunkwise path (cuda_mlstm_tc.cu; ggx_cuda_mlstm_chunkwise takes
 * it unless GGX_CUDA_MLSTM_TC=0 or the GPU lacks sm_80 / 85 KB of shared memory per block) */
bool ggx_cuda_mlstm_tc_enabled(void);
cudaError_t ggx_cuda_mlstm_chunkwise_tc(cudaStream_t s, const ggx_cuda_mlstm_args *a);
size_t ggx_cuda_mlstm_tc_scratch_floats(int n_seqs, int max_len, int total_tokens, int nh, int dqk, int dv);

/* Fill n elements of a buffer of type t (device layout) with random data (benchmarks/tests). */
cudaError_t ggx_cuda_fill_random_dev(cudaStream_t s, enum ggx_type t, void *w, int64_t rows,
                                     int64_t cols, uint64_t seed, float scale);

#endif
