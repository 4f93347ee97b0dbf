/*
 * cuda_mmq.cu — quantized weights (q8_0, q4_0) x a small batch of tokens on tensor cores.
 *
 * Contract: ggx_cuda_mv's (cuda_common.h): up to 8 matrices of one type and column count that
 * share x, the fused x transform, the soft-cap epilogue; y[t, r] = dot(W[r, :], x[t, :]).
 *
 * Why: from a few tokens on, the matvec kernels (f32 FMAs, B FMAs per weight) are compute-bound,
 * and the GEMM path dequantizes every weight to bf16 first (writing and re-reading 2 bytes per
 * weight). Here every weight byte is read once per launch for up to 64 tokens and the products
 * run on tensor cores (mma.sync m16n8k16 bf16 -> f32: sm_80 instructions, also fine on sm_90).
 *
 * Numerics. The weight operand is the quant itself, an exact small integer in bf16 (q8_0: -128..
 * 127, q4_0: q - 8); the block scale d is applied in f32 to the f32 result of each 32-block:
 * acc += d * (q . x). x is rounded to bf16 (S = 1 plane: ~1.5e-3 relative, like the GEMM path
 * and less than the int8-activation matvecs), or split into three bf16 planes hi + mid + lo
 * (S = 3: x - hi - mid - lo ~ 2^-27 x, so products and sums are f32-grade; used for up to 16
 * tokens while the exact f32 matvecs are selected, i.e. int8 activations off, the default).
 * Two planes (2^-18) measured 2.2e-6 per product but 2.3e-5 after three chained products
 * (test_cuda_ops' fused chain), over its 1e-5.
 *
 * Layout of the work. A block has 8 warps; warp w owns 16 rows (one m16 tile) and all NT tokens
 * (NT/8 n8 tiles; NT = 8, 16, 32, 64), so BM = 128 rows per block. The K loop runs over tiles of
 * KT = 128 columns (64 for 64 tokens):
 *   - the block's weight tile (128 rows x KT quants) comes by cp.async into a 3-4 stage ring in
 *     shared memory (16-byte copies, row-contiguous, straight from the repacked layout), with
 *     its f16 scales (4-byte copies; through registers when cols / 32 is odd); the first stages
 *     are requested before the PDL wait (weights are never written by the step);
 *   - x (f32, transformed: SWIGLU / SIGMOID_MUL) for the next tile is loaded into registers
 *     while the current tile is multiplied, then converted to bf16 into a double buffer.
 * One __syncthreads per tile. Per 32-block a thread owns 8 quants of row g and of row g + 8
 * (q8_0: bytes 8t..8t+7; q4_0: the nibbles of bytes 4t..4t+3), which fill the A fragments of
 * the block's two k16 steps; the k order inside an mma is free, so x is staged in shared memory
 * in the same (permuted) order and each thread's B fragment of a block is one 16-byte load.
 *
 * Grid: row blocks x K splits (gridDim.y). The blocks all stream for about the same time, so the
 * split count (1..8) is the one that best fills the last wave of resident blocks (2 per SM);
 * each split writes f32 partials and the last block of a row block (atomic counter) adds them
 * in split order, so results are deterministic (bitwise equal run to run).
 *
 * Measured (H100, ncu, 7B q8_0 decode at 8 tokens): 31-54% of DRAM bandwidth per launch, one
 * instruction issued every 2.1 cycles per scheduler with 4 resident warps each (registers and
 * shared memory allow 2 blocks per SM): latency- and issue-bound, not tensor-bound (S = 3 costs
 * no more than S = 1). See docs/cuda.md and docs/benchmarks.md.
 */
#include "cuda_common.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int MMQ_WARPS = 8;
constexpr int MMQ_THREADS = MMQ_WARPS * 32;
constexpr int MMQ_MAX_TOK = 64;        /* tokens per launch (more: several launches) */
constexpr int MMQ_MAX_SPLIT = 8;
constexpr size_t MMQ_PART_FLOATS = (size_t)4 << 20; /* split-K partials, 16 MiB */
constexpr int MMQ_COUNTERS = 8192;

struct MmqArgs {
    const uint8_t *w[GGX_CUDA_MV_MAX_MATS];
    float *y[GGX_CUDA_MV_MAX_MATS];
    int rows[GGX_CUDA_MV_MAX_MATS];
    int block_start[GGX_CUDA_MV_MAX_MATS + 1]; /* first row block of each matrix */
    int row_start[GGX_CUDA_MV_MAX_MATS];       /* launch-wide row numbering (partials) */
    int epi[GGX_CUDA_MV_MAX_MATS];
    float cap[GGX_CUDA_MV_MAX_MATS];
    const float *bias[GGX_CUDA_MV_MAX_MATS];
    int n_mats;
    const float *x, *xb; /* [n_tok, cols] */
    int xmode;
    int cols, n_tok;
    int n_tiles, tps;    /* K tiles in all, per split (gridDim.y splits) */
    int total_rows;
    int sc_async;        /* cols / 32 even: scales 4-byte aligned per row, copied by cp.async */
    float *part;         /* [splits][n_tok][total_rows] */
    const int8_t *xq;    /* mmq8_kernel: quantized x [NT][n_tiles * KT] */
    const float *xd;     /* and its scales [n_tiles * KT / 32][NT] */
    int *counters;       /* [row blocks], zero between launches */
};

/* compile-time shape of one instantiation: MT m16 tiles (16 MT rows) per warp */
template <int T, int NTL, int S, int MT> struct Cfg {
    static constexpr int BM = MMQ_WARPS * 16 * MT;     /* rows per block */
    static constexpr int NS = S == 3 ? 3 : 4;          /* weight stages (ring) */
    static constexpr bool Q4 = T == GGX_TYPE_Q4_0;
    static constexpr int NT = NTL * 8;                 /* tokens (padded) */
    static constexpr int KT = NTL <= 4 ? 128 : 64;     /* k per tile */
    static constexpr int BPT = KT / 32;                /* quant blocks per tile */
    static constexpr int WROW = Q4 ? KT / 2 : KT;      /* quant bytes per row per tile */
    /* shared row strides: q8_0 rows are read as 8 bytes by 4 rows x 4 lanes per phase (stride
     * = 32 mod 128), q4_0 as 4 bytes by 8 rows x 4 lanes (16 mod 128); x rows as 16 bytes by
     * 2 tokens x 4 lanes (64 mod 128): no bank conflicts */
    static constexpr int WSTR = WROW + (Q4 ? 16 : 32);
    static constexpr int XSTR = KT * 2 + 64;
    static constexpr int W_BYTES = NS * BM * WSTR;
    static constexpr int SC_BYTES = NS * BM * BPT * 2;
    static constexpr int XB_BYTES = 2 * S * NT * XSTR;
    static constexpr int SMEM = W_BYTES + SC_BYTES + XB_BYTES;
    static constexpr int WCH = BM * WROW / 16;         /* 16-byte copies per tile */
    static constexpr int SCN = BM * BPT / MMQ_THREADS; /* scales per thread per tile */
    static constexpr int XU = NT * KT / 4 / MMQ_THREADS;   /* float4 of x per thread per tile */
    static_assert(WCH % MMQ_THREADS == 0 && SCN >= 1 && XU >= 1, "tile shape");
};

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src),
                 "r"(valid ? 16 : 0));
}
/* 4 bytes (cp.async.ca: the 16-byte .cg form has no smaller sizes) */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src),
                 "r"(valid ? 4 : 0));
}
/* 8 bytes (q4_x's {d, m} pairs of two blocks) */
__device__ __forceinline__ void cp_async8(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src),
                 "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* bf16x2 (exact integers) of the signed bytes k0, k1 of w: 2^23 + (byte ^ 0x80) as f32, minus
 * 2^23 + 128, then the high halves (the low 16 bits of a small integer's f32 are zero) */
__device__ __forceinline__ uint32_t q8_pair(uint32_t u, int k0) {
    const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u + (uint32_t)k0)) - 8388736.0f;
    const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7441u + (uint32_t)k0)) - 8388736.0f;
    return __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632u);
}
/* bf16x2 of q - 8 for the nibbles at bit `sh` of bytes 0 and 2 of u: 0x4300 | q is 128 + q */
__device__ __forceinline__ uint32_t q4_pair(uint32_t u, int sh) {
    const uint32_t p = ((u >> sh) & 0x000F000Fu) | 0x43004300u;
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(p), "r"(0x3F803F80u), "r"(0xC308C308u));
    return d; /* (128 + q) * 1 - 136 */
}

__device__ __forceinline__ float xform(int mode, float a, float b) {
    const float sg = __fdividef(1.0f, 1.0f + __expf(-a));
    return mode == GGX_CUDA_X_SWIGLU ? a * sg * b : sg * b;
}

__device__ __forceinline__ uint32_t bf2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}
__device__ __forceinline__ float bf_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf_hi(uint32_t u) { return __uint_as_float(u & 0xFFFF0000u); }

/* the scales of local tile j of a block (rows rb0.., 32-blocks (tile0 + j) * BPT..) into registers,
 * SCN per thread, when cp.async cannot copy them (rows of an odd number of 32-blocks are not
 * 4-byte aligned: sc_async 0) */
template <int SCN, int BPT>
__device__ __forceinline__ void mmq_load_sc(const MmqArgs &a, const __half *wsc, int rb0, int rows, int bpr,
                                            int tile0, int n_local, int tid, int j, __half (&v)[SCN]) {
    if (a.sc_async) return;
#pragma unroll
    for (int i = 0; i < SCN; i++) {
        const int c = tid + i * MMQ_THREADS, r = c / BPT, b = c % BPT;
        const int gr = rb0 + r < rows ? rb0 + r : rows - 1;
        const int blk = (tile0 + j) * BPT + b;
        v[i] = j < n_local && blk < bpr ? wsc[(size_t)gr * bpr + blk] : __float2half(0.0f);
    }
}

/* the end of a launch: split K (partials, then the last block of the row block adds them in
 * split order), the soft-cap epilogue, the store. acc: rows (r_a + 16m, r_a + 16m + 8) x tokens
 * (8n + 2t, 8n + 2t + 1) of this thread. */
template <int MT, int NTL>
__device__ __forceinline__ void mmq_finish(const MmqArgs &a, float (&acc)[MT][NTL][4], int mi, int rows,
                                           int r_a, int t) {
    const int tid = threadIdx.x;
    if (gridDim.y > 1) {
        const int grow = a.row_start[mi];
        float *pp = a.part + (size_t)blockIdx.y * a.n_tok * a.total_rows;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < NTL; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int tok = 8 * n + 2 * t + (e & 1), r = r_a + 16 * m + (e >> 1) * 8;
                if (tok < a.n_tok && r < rows) pp[(size_t)tok * a.total_rows + grow + r] = acc[m][n][e];
            }
        if (!ggx_cuda_last_split(&a.counters[blockIdx.x], (int)gridDim.y)) return;
        /* split by split, with every element's load of one split in flight at once (the split
         * loop innermost made one chain of dependent L2 loads per element, element after
         * element: 16 x 8 L2 latencies per thread for 32 tokens and 8 splits) */
        /* (in place: this block's own partial is re-read like the others, in split order) */
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int n = 0; n < NTL; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
#pragma unroll 1
        for (int y = 0; y < (int)gridDim.y; y++) {
            const float *py = a.part + (size_t)y * a.n_tok * a.total_rows + grow;
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
            for (int n = 0; n < NTL; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int tok = 8 * n + 2 * t + (e & 1), r = r_a + 16 * m + (e >> 1) * 8;
                    if (tok < a.n_tok && r < rows) acc[m][n][e] += __ldcg(py + (size_t)tok * a.total_rows + r);
                }
        }
        if (tid == 0) a.counters[blockIdx.x] = 0;
    }
    const bool epi = a.epi[mi] != 0;
    const float cap = a.cap[mi];
    const float *bias = a.bias[mi];
    float *y = a.y[mi];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
    for (int n = 0; n < NTL; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int tok = 8 * n + 2 * t + (e & 1), r = r_a + 16 * m + (e >> 1) * 8;
            if (tok < a.n_tok && r < rows) {
                float v = acc[m][n][e];
                if (epi) {
                    if (bias) v += bias[r];
                    v = ggx_cuda_soft_cap_v(v, cap);
                }
                y[(size_t)tok * rows + r] = v;
            }
        }
}

template <int T, int NTL, int S, int MT>
__global__ void __launch_bounds__(MMQ_THREADS, MT == 1 ? 2 : 1) mmq_kernel(const MmqArgs a) {
    using C = Cfg<T, NTL, S, MT>;
    constexpr int MMQ_BM = C::BM, MMQ_NS = C::NS;
    constexpr bool Q4 = C::Q4;
    constexpr int KT = C::KT, BPT = C::BPT, WROW = C::WROW, WSTR = C::WSTR, XSTR = C::XSTR;
    constexpr int CPR = WROW / 16; /* 16-byte copies per row per tile */
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *sw = smem;                                              /* [NS][BM][WSTR] */
    __half *ssc = reinterpret_cast<__half *>(smem + C::W_BYTES);    /* [NS][BM][BPT] */
    uint8_t *sx = smem + C::W_BYTES + C::SC_BYTES;                   /* [2][S][NT][XSTR] */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int mi = 0;
#pragma unroll 1
    while (mi + 1 < a.n_mats && (int)blockIdx.x >= a.block_start[mi + 1]) mi++;
    const int rows = a.rows[mi], cols = a.cols;
    const int rb0 = ((int)blockIdx.x - a.block_start[mi]) * MMQ_BM;
    const uint8_t *wq = a.w[mi];
    const __half *wsc = reinterpret_cast<const __half *>(wq + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols));
    const int bpr = cols / 32;
    const size_t qrow = Q4 ? (size_t)cols / 2 : (size_t)cols;
    const int tile0 = (int)blockIdx.y * a.tps;
    const int tile1 = tile0 + a.tps < a.n_tiles ? tile0 + a.tps : a.n_tiles;
    const int n_local = tile1 - tile0;

    /* weight tile j (local) -> stage j % NS, with its scales when they are 4-byte aligned (else
     * load_sc / store_sc move them through registers); past the end: an empty group */
    auto load_w = [&](int j) {
        if (j < n_local && a.sc_async) {
            constexpr int SW = BPT / 2; /* 4-byte words of scales per row per tile */
            for (int c = tid; c < MMQ_BM * SW; c += MMQ_THREADS) {
                const int r = c / SW, wd = c % SW;
                const int gr = rb0 + r < rows ? rb0 + r : rows - 1;
                const int blk = (tile0 + j) * BPT + 2 * wd;
                const bool ok = blk < bpr;
                cp_async4(ssc + (j % MMQ_NS) * MMQ_BM * BPT + r * BPT + 2 * wd,
                          wsc + (size_t)gr * bpr + (ok ? blk : 0), ok);
            }
        }
        if (j < n_local) {
            uint8_t *dst = sw + (j % MMQ_NS) * MMQ_BM * WSTR;
            const size_t kb = (size_t)(tile0 + j) * WROW;
#pragma unroll
            for (int i = 0; i < C::WCH / MMQ_THREADS; i++) {
                const int c = tid + i * MMQ_THREADS, r = c / CPR, ch = c % CPR;
                const int gr = rb0 + r < rows ? rb0 + r : rows - 1;
                const size_t off = kb + (size_t)ch * 16;
                const bool ok = off < qrow;
                cp_async16(dst + r * WSTR + ch * 16, wq + (size_t)gr * qrow + (ok ? off : 0), ok);
            }
        }
        cp_async_commit();
    };
    /* scales of tile j into registers (stored to shared memory later) */
    auto load_sc = [&](int j, __half (&v)[C::SCN]) {
        mmq_load_sc<C::SCN, BPT>(a, wsc, rb0, rows, bpr, tile0, n_local, tid, j, v);
    };
    auto store_sc = [&](int j, const __half (&v)[C::SCN]) {
        if (a.sc_async) return;
#pragma unroll
        for (int i = 0; i < C::SCN; i++) ssc[(j % MMQ_NS) * MMQ_BM * BPT + tid + i * MMQ_THREADS] = v[i];
    };
    /* x of tile j: XU float4 per thread; unit u = (token, 32-block, group of 4) */
    auto load_x = [&](int j, float4 (&xa)[C::XU], float4 (&xg)[C::XU]) {
#pragma unroll
        for (int i = 0; i < C::XU; i++) {
            const int u = tid + i * MMQ_THREADS, tok = u / (KT / 4), f = u % (KT / 4);
            const int blk = f >> 3, grp = f & 7;
            const int e = (tile0 + j) * KT + 32 * blk + (Q4 ? (grp & 1) * 16 + 4 * (grp >> 1) : 4 * grp);
            xa[i] = xg[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (j < n_local && tok < a.n_tok && e < cols) {
                const size_t o = (size_t)tok * cols + e;
                xa[i] = __ldg(reinterpret_cast<const float4 *>(a.x + o));
                if (a.xmode != GGX_CUDA_X_PLAIN) xg[i] = __ldg(reinterpret_cast<const float4 *>(a.xb + o));
            }
        }
    };
    /* transform, round to bf16 (S = 3: also mid and lo planes), store in the mma k order */
    auto store_x = [&](int buf, float4 (&xa)[C::XU], const float4 (&xg)[C::XU]) {
#pragma unroll
        for (int i = 0; i < C::XU; i++) {
            const int u = tid + i * MMQ_THREADS, tok = u / (KT / 4), f = u % (KT / 4);
            const int blk = f >> 3, grp = f & 7;
            const int pos = 32 * blk + (Q4 ? 8 * (grp >> 1) + 4 * (grp & 1) : 4 * grp);
            float4 v = xa[i];
            if (a.xmode != GGX_CUDA_X_PLAIN) {
                v.x = xform(a.xmode, v.x, xg[i].x);
                v.y = xform(a.xmode, v.y, xg[i].y);
                v.z = xform(a.xmode, v.z, xg[i].z);
                v.w = xform(a.xmode, v.w, xg[i].w);
            }
            /* q4_0 pairs elements (0, 2) and (1, 3) of each group of 4 (see q4_pair) */
            const float o0 = v.x, o1 = Q4 ? v.z : v.y, o2 = Q4 ? v.y : v.z, o3 = v.w;
            const uint32_t h0 = bf2(o0, o1), h1 = bf2(o2, o3);
            uint8_t *d = sx + ((buf * S) * C::NT + tok) * XSTR + pos * 2;
            *reinterpret_cast<uint2 *>(d) = make_uint2(h0, h1);
            if (S == 3) { /* x - hi rounded (mid), and what is left (lo) */
                const float r0 = o0 - bf_lo(h0), r1 = o1 - bf_hi(h0), r2 = o2 - bf_lo(h1), r3 = o3 - bf_hi(h1);
                const uint32_t m0 = bf2(r0, r1), m1 = bf2(r2, r3);
                *reinterpret_cast<uint2 *>(d + C::NT * XSTR) = make_uint2(m0, m1);
                const uint32_t l0 = bf2(r0 - bf_lo(m0), r1 - bf_hi(m0)), l1 = bf2(r2 - bf_lo(m1), r3 - bf_hi(m1));
                *reinterpret_cast<uint2 *>(d + 2 * C::NT * XSTR) = make_uint2(l0, l1);
            }
        }
    };

    /* prologue: weights and scales of the first stages (before the PDL wait), then x */
    __half scv[C::SCN];
#pragma unroll
    for (int j = 0; j < MMQ_NS - 1; j++) {
        load_w(j);
        load_sc(j, scv);
        store_sc(j, scv);
    }
#ifdef GGX_PDL_ENTER
    GGX_PDL_ENTER();
#endif
    float4 xa[C::XU], xg[C::XU];
    load_x(0, xa, xg);
    store_x(0, xa, xg);

    float acc[MT][NTL][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < NTL; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

#pragma unroll 1
    for (int j = 0; j < n_local; j++) {
        cp_async_wait<MMQ_NS - 2>(); /* this thread's copies of tile j have landed */
        __syncthreads();             /* everyone's; x of tile j stored; stage (j-1) free */
        load_w(j + MMQ_NS - 1);
        load_sc(j + MMQ_NS - 1, scv);
        load_x(j + 1, xa, xg);

        const int st = j % MMQ_NS;
        const uint8_t *w0 = sw + st * MMQ_BM * WSTR + (warp * 16 * MT + g) * WSTR;
        const __half *sc0 = ssc + st * MMQ_BM * BPT + (warp * 16 * MT + g) * BPT;
        const uint8_t *xs = sx + ((j & 1) * S * C::NT + g) * XSTR + 16 * t;
        const int nblk = (cols - (tile0 + j) * KT) / 32 < BPT ? (cols - (tile0 + j) * KT) / 32 : BPT;
        /* one 32-block: A fragments (exact quants), then every n tile: acc += d * (q . x) */
        auto block = [&](const int b) {
            uint32_t A[MT][2][4]; /* [m tile][k16 step][a0..a3] */
            float d[MT][2];       /* scales of rows g, g + 8 */
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const uint8_t *wm = w0 + 16 * m * WSTR;
                if (Q4) {
                    const uint32_t u0 = *reinterpret_cast<const uint32_t *>(wm + 16 * b + 4 * t);
                    const uint32_t u1 = *reinterpret_cast<const uint32_t *>(wm + 8 * WSTR + 16 * b + 4 * t);
                    A[m][0][0] = q4_pair(u0, 0), A[m][0][1] = q4_pair(u1, 0);
                    A[m][0][2] = q4_pair(u0, 8), A[m][0][3] = q4_pair(u1, 8);
                    A[m][1][0] = q4_pair(u0, 4), A[m][1][1] = q4_pair(u1, 4);
                    A[m][1][2] = q4_pair(u0, 12), A[m][1][3] = q4_pair(u1, 12);
                } else {
                    const uint2 r0 = *reinterpret_cast<const uint2 *>(wm + 32 * b + 8 * t);
                    const uint2 r1 = *reinterpret_cast<const uint2 *>(wm + 8 * WSTR + 32 * b + 8 * t);
                    const uint32_t x0 = r0.x ^ 0x80808080u, y0 = r0.y ^ 0x80808080u;
                    const uint32_t x1 = r1.x ^ 0x80808080u, y1 = r1.y ^ 0x80808080u;
                    A[m][0][0] = q8_pair(x0, 0), A[m][0][1] = q8_pair(x1, 0);
                    A[m][0][2] = q8_pair(x0, 2), A[m][0][3] = q8_pair(x1, 2);
                    A[m][1][0] = q8_pair(y0, 0), A[m][1][1] = q8_pair(y1, 0);
                    A[m][1][2] = q8_pair(y0, 2), A[m][1][3] = q8_pair(y1, 2);
                }
                d[m][0] = __half2float(sc0[16 * m * BPT + b]);
                d[m][1] = __half2float(sc0[(16 * m + 8) * BPT + b]);
            }
#pragma unroll
            for (int n = 0; n < NTL; n++) {
                uint4 bx[S]; /* x planes: hi (S = 1); hi, mid, lo (S = 3) */
#pragma unroll
                for (int p = 0; p < S; p++)
                    bx[p] = *reinterpret_cast<const uint4 *>(xs + (p * C::NT + n * 8) * XSTR + 64 * b);
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int p = S - 1; p >= 0; p--) { /* small parts first */
                        mma_bf16(c, A[m][0][0], A[m][0][1], A[m][0][2], A[m][0][3], bx[p].x, bx[p].y);
                        mma_bf16(c, A[m][1][0], A[m][1][1], A[m][1][2], A[m][1][3], bx[p].z, bx[p].w);
                    }
                    acc[m][n][0] = fmaf(d[m][0], c[0], acc[m][n][0]);
                    acc[m][n][1] = fmaf(d[m][0], c[1], acc[m][n][1]);
                    acc[m][n][2] = fmaf(d[m][1], c[2], acc[m][n][2]);
                    acc[m][n][3] = fmaf(d[m][1], c[3], acc[m][n][3]);
                }
            }
        };
        /* few tokens: the blocks of a whole tile unrolled, so their short mma chains interleave
         * (from 32 tokens the n tiles give enough independent chains; unrolling spilled) */
        if (NTL <= 2 && nblk == BPT) {
#pragma unroll
            for (int b = 0; b < BPT; b++) block(b);
        } else {
#pragma unroll 1
            for (int b = 0; b < nblk; b++) block(b);
        }
        /* tile j+1's x and tile j+NS-1's scales: buffers last read in iteration j-1 */
        store_x((j + 1) & 1, xa, xg);
        store_sc(j + MMQ_NS - 1, scv);
    }
    cp_async_wait<0>();

    /* rows (16m + g, 16m + g + 8) x tokens (8n + 2t, 8n + 2t + 1) of this thread */
    mmq_finish<MT, NTL>(a, acc, mi, rows, rb0 + warp * 16 * MT + g, t);
}

/* ---------------------------------------------------------------------------------------
 * int8 activations (mmq8_kernel): mma.sync m16n8k32 s8 x s8 -> s32 on the quants themselves.
 *
 * x is quantized once per launch by mmq8_quant_kernel (per token and 32-block: d_x = amax / 127,
 * q = rint(x / d_x), like mvq_kernel and ggml's q8_1) into a padded scratch the whole grid then
 * reads: xq int8 [NT][n_tiles * KT], {d_x, -M * d_x} f32x2 [n_tiles * BPT][NT] (block-major, so each K tile's
 * scales are one contiguous run). Per 32-block, row r and token n: acc += d_w * (d_x * (q_w . q_x))
 * in f32; the integer dot is exact. Two FFMAs per output element and block: the mma accumulator
 * starts at 0x4B400000 (M = 1.5 * 2^23 as f32), so the s32 result read as f32 is M + dot exactly
 * (|dot| <= 32 * 128 * 127 < 2^22), and fma(M + dot, d_x, -M * d_x) is d_x * dot rounded once:
 * d_x is rounded to 22 significant bits by the quantize kernel, so -M * d_x (stored next to it)
 * is exact. (An I2F is a quarter-rate instruction; FADD + FMUL + FFMA was 50% more issue.)
 *
 * Fragments: a thread owns, per 32-block, bytes 8t..8t+7 of rows g and g + 8 (q8_0; the k order
 * inside an mma is free, so x is read with the same permutation: one 8-byte load per n tile). q4_0:
 * bytes 4t..4t+3 of the 16-byte block, i.e. elements 4t.. (low nibbles) and 16 + 4t.. (high); they
 * become s8 16 * (q - 8) with one or two logic ops ((nibble << 4) ^ 0x80), the factor 16 being
 * folded into d_x; the quantize kernel stores each q4_0 block's x in the matching order
 * (position 8t + 4h + i holds element 16h + 4t + i).
 *
 * Layout of the work: as mmq_kernel with one m tile per warp (BM = 128 rows per block, every warp
 * all NT tokens), KT = 128, a 3-4 stage cp.async ring holding per stage the weight tile, its
 * scales, the x tile and its scales (x from the scratch, so no conversion and a quarter of the
 * old L2 traffic for x), one __syncthreads per tile; split K as mmq_kernel (deterministic).
 * ---------------------------------------------------------------------------------------- */
constexpr int MMQ8_KT = 128;
constexpr size_t MMQ8_XQ_BYTES = (size_t)8 << 20;  /* x scratch: NT * padded cols int8 */
constexpr size_t MMQ8_XD_FLOATS = (size_t)1 << 20; /* and its scales */

template <int T, int NTL> struct Cfg8 {
    static constexpr bool QX = T == GGX_TYPE_Q4_X;                /* levels, {d, m} pairs, x sums */
    static constexpr bool Q4 = T == GGX_TYPE_Q4_0 || QX;          /* nibble layout */
    static constexpr int BM = MMQ_WARPS * 16;
    static constexpr int NT = NTL * 8;
    static constexpr int KT = MMQ8_KT;
    static constexpr int BPT = KT / 32;
    static constexpr int WROW = Q4 ? KT / 2 : KT;
    /* row strides: q8_0 rows (and x rows) are read as 8 bytes by 4 rows x 4 lanes per phase
     * (stride = 32 mod 128), q4_0 rows as 4 bytes by 8 rows x 4 lanes (16 mod 128) */
    static constexpr int WSTR = WROW + (Q4 ? 16 : 32);
    static constexpr int XSTR = KT + 32;
    static constexpr int W_ST = BM * WSTR;     /* bytes per stage: weights */
    static constexpr int SC_ST = BM * BPT * (QX ? 4 : 2); /* their f16 scales [BM][BPT] (q4_x: {d, m}) */
    static constexpr int X_ST = NT * XSTR;     /* x int8 [NT][XSTR] */
    static constexpr int XD2_ST = BPT * NT * 8; /* x scales {d, -M d} [BPT][NT] */
    static constexpr int XD_ST = XD2_ST + (QX ? BPT * NT * 4 : 0); /* q4_x: + d sum(q) [BPT][NT] */
    static constexpr int STAGE = W_ST + SC_ST + X_ST + XD_ST;
    static constexpr int NS = 4 * STAGE <= 110 * 1024 ? 4 : 3; /* 2 blocks per SM on the H100 */
    static constexpr int SMEM = NS * STAGE;
    static constexpr int WCH = BM * WROW / 16; /* 16-byte copies per tile: weights */
    static constexpr int XCH = NT * KT / 16;   /* x */
    static constexpr int XDCH = BPT * NT / 2;  /* x scales */
    static constexpr int XSCH = QX ? BPT * NT / 4 : 0; /* x sums */
    static constexpr int SCN = BM * BPT / MMQ_THREADS;
    static_assert(WCH % MMQ_THREADS == 0 && SCN >= 1 && STAGE % 16 == 0 && W_ST % 16 == 0 &&
                      X_ST % 16 == 0, "tile shape");
};

__device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                       uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* x [n_tok, cols] (transformed) -> xq [nt_pad][cpad] int8, xd [cpad / 32][nt_pad] {d, -M d}; zeros past
 * n_tok and cols. One thread per 4 elements, 8 lanes per 32-block (the grid covers nt_pad * cpad
 * / 4 threads exactly: cpad is a multiple of 128, nt_pad of 8). T: the weights' type, for the
 * element order (q4_0, q4_x: the nibble fragments'), d's factor (q4_0: 1/16) and, for q4_x, the
 * blocks' d * sum(q) [cpad / 32][nt_pad] after the pairs (the m term of d L + m). */
template <int T>
__global__ void __launch_bounds__(256) mmq8_quant_kernel(const float *x, const float *xb, int xmode,
                                                         int cols, int n_tok, int nt_pad, int cpad,
                                                         int8_t *xq, float *xd) {
    /* trigger before the wait: mmq8_kernel may then launch at once and fetch its first weight
     * tiles while this kernel still waits for its predecessor (with the usual order it could
     * start only after that one had finished). Safe: mmq8_kernel reads x only after its own
     * wait (this kernel complete, hence its predecessor too), and every block of the predecessor
     * is already resident (it triggered), so the three overlapping kernels cannot deadlock. */
    ggx_pdl_trigger();
    ggx_pdl_wait();
    const int u = (int)blockIdx.x * 256 + (int)threadIdx.x;
    const int upr = cpad / 4;
    const int tok = u / upr, f = u % upr, e = 4 * f;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (tok < n_tok && e < cols) {
        const size_t o = (size_t)tok * cols + e;
        v = __ldg(reinterpret_cast<const float4 *>(x + o));
        if (xmode != GGX_CUDA_X_PLAIN) {
            const float4 b = __ldg(reinterpret_cast<const float4 *>(xb + o));
            v.x = xform(xmode, v.x, b.x);
            v.y = xform(xmode, v.y, b.y);
            v.z = xform(xmode, v.z, b.z);
            v.w = xform(xmode, v.w, b.w);
        }
    }
    float amax;
    const int4 q = ggx_cuda_q8_block4(v, amax);
    constexpr bool Q4 = T != GGX_TYPE_Q8_0;
    const int blk = e >> 5, grp = f & 7;
    const int pos = Q4 ? 8 * (grp & 3) + 4 * (grp >> 2) : 4 * grp;
    *reinterpret_cast<uint32_t *>(xq + (size_t)tok * cpad + 32 * blk + pos) = ggx_cuda_q8_pack4(q);
    /* q4_x: the block's sum of q (exact: |sum| <= 32 * 127) */
    const int qs = T == GGX_TYPE_Q4_X ? ggx_cuda_q8_block_sum(q.x + q.y + q.z + q.w) : 0;
    if (grp == 0) {
        /* 22 significant bits (round to nearest), so that -1.5 * 2^23 * d is exact */
        const float d = __uint_as_float(
            (__float_as_uint(amax / 127.0f * (T == GGX_TYPE_Q4_0 ? 0.0625f : 1.0f)) + 2u) & ~3u);
        reinterpret_cast<float2 *>(xd)[(size_t)blk * nt_pad + tok] = make_float2(d, -12582912.0f * d);
        if (T == GGX_TYPE_Q4_X) xd[(size_t)(cpad / 32) * nt_pad * 2 + (size_t)blk * nt_pad + tok] = d * (float)qs;
    }
}

template <int T, int NTL>
__global__ void __launch_bounds__(MMQ_THREADS, 2) mmq8_kernel(const MmqArgs a) {
    using C = Cfg8<T, NTL>;
    constexpr bool Q4 = C::Q4, QX = C::QX;
    constexpr int SCH = QX ? 2 : 1; /* halves per block scale entry ({d, m} for q4_x) */
    constexpr int NS = C::NS, BM = C::BM, KT = C::KT, BPT = C::BPT, WROW = C::WROW;
    constexpr int WSTR = C::WSTR, XSTR = C::XSTR, NT = C::NT;
    constexpr int CPR = WROW / 16; /* 16-byte copies per row per tile */
    extern __shared__ __align__(16) uint8_t smem[]; /* [NS] stages: W, W scales, x, x scales */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int mi = 0;
#pragma unroll 1
    while (mi + 1 < a.n_mats && (int)blockIdx.x >= a.block_start[mi + 1]) mi++;
    const int rows = a.rows[mi], cols = a.cols;
    const int rb0 = ((int)blockIdx.x - a.block_start[mi]) * BM;
    const uint8_t *wq = a.w[mi];
    const __half *wsc = reinterpret_cast<const __half *>(wq + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols));
    const int bpr = cols / 32;
    const size_t qrow = Q4 ? (size_t)cols / 2 : (size_t)cols;
    const size_t cpad = (size_t)a.n_tiles * KT; /* x scratch row stride */
    const int tile0 = (int)blockIdx.y * a.tps;
    const int tile1 = tile0 + a.tps < a.n_tiles ? tile0 + a.tps : a.n_tiles;
    const int n_local = tile1 - tile0;

    /* The copies of a tile: each thread's sources are fixed per launch up to a per-tile step
     * (pointers computed once: the address math per copy was a large part of the issue). */
    constexpr int WPT = C::WCH / MMQ_THREADS;              /* weight copies per thread */
    constexpr int XPT = (C::XCH + MMQ_THREADS - 1) / MMQ_THREADS;
    /* weights: copy i of a thread is row r0 + i * RPI, bytes wch.. of the row's tile; 32-bit
     * offsets from wq (the host keeps these matrices under 4 GiB) */
    constexpr int RPI = MMQ_THREADS / CPR;
    const int wch = (tid % CPR) * 16, r0 = tid / CPR;
    const uint32_t wbase = (uint32_t)((size_t)tile0 * WROW + wch);
    /* scales (sc_async): one 4-byte word per thread and tile (BM * BPT / 2 == threads) */
    static_assert(BM * BPT / 2 == MMQ_THREADS, "one scale word per thread");
    const int sr = tid / (BPT / 2), swd = tid % (BPT / 2);
    const __half *ssrc =
        wsc + ((size_t)(rb0 + sr < rows ? rb0 + sr : rows - 1) * bpr + (size_t)tile0 * BPT + 2 * swd) * SCH;
    const int8_t *xsrc = a.xq + (size_t)(tid / (KT / 16)) * cpad + (size_t)tile0 * KT + (tid % (KT / 16)) * 16;
    const int xdst = (tid / (KT / 16)) * XSTR + (tid % (KT / 16)) * 16;
    const float *dsrc = a.xd + (size_t)tile0 * BPT * NT * 2 + 4 * tid;
    /* q4_x: the blocks' d * sum(q) after all pairs (mmq8_quant_kernel) */
    const float *ssum = a.xd + (size_t)a.n_tiles * BPT * NT * 2 + (size_t)tile0 * BPT * NT + 4 * tid;

    /* weight tile j (local) and its scales when 4-byte aligned (else load_sc / store_sc) */
    auto load_w = [&](int j) {
        if (j >= n_local) return;
        uint8_t *st = smem + (j % NS) * C::STAGE;
        if (a.sc_async) {
            const bool ok = (tile0 + j) * BPT + 2 * swd < bpr;
            __half *dst = reinterpret_cast<__half *>(st + C::W_ST) + (sr * BPT + 2 * swd) * SCH;
            if (QX) cp_async8(dst, ok ? ssrc + j * BPT * SCH : wsc, ok);
            else cp_async4(dst, ok ? ssrc + j * BPT : wsc, ok);
        }
        const size_t kb = (size_t)(tile0 + j) * WROW;
        const bool full = kb + WROW <= qrow;
        const bool ok = full || kb + wch < qrow;
#pragma unroll
        for (int i = 0; i < WPT; i++) {
            const int gr = rb0 + r0 + i * RPI < rows ? rb0 + r0 + i * RPI : rows - 1;
            cp_async16(st + (r0 + i * RPI) * WSTR + wch,
                       wq + (ok ? (uint32_t)gr * (uint32_t)qrow + wbase + (uint32_t)(j * WROW) : 0u), ok);
        }
    };
    /* x tile j and its scales (the scratch is padded: every copy is in bounds) */
    auto load_x = [&](int j) {
        if (j >= n_local) return;
        uint8_t *sx = smem + (j % NS) * C::STAGE + C::W_ST + C::SC_ST;
#pragma unroll
        for (int i = 0; i < XPT; i++)
            if (C::XCH % MMQ_THREADS == 0 || tid + i * MMQ_THREADS < C::XCH)
                cp_async16(sx + xdst + i * (MMQ_THREADS / (KT / 16)) * XSTR,
                           xsrc + (size_t)i * (MMQ_THREADS / (KT / 16)) * cpad + (size_t)j * KT, true);
        if (tid < C::XDCH) cp_async16(sx + C::X_ST + 16 * tid, dsrc + (size_t)j * BPT * NT * 2, true);
        if (QX && tid < C::XSCH) cp_async16(sx + C::X_ST + C::XD2_ST + 16 * tid, ssum + (size_t)j * BPT * NT, true);
    };
    auto load_sc = [&](int j, __half (&v)[C::SCN]) { /* (q4_x: launched with sc_async only) */
        if (!QX) mmq_load_sc<C::SCN, BPT>(a, wsc, rb0, rows, bpr, tile0, n_local, tid, j, v);
    };
    auto store_sc = [&](int j, const __half (&v)[C::SCN]) {
        if (QX || a.sc_async) return;
        __half *ssc = reinterpret_cast<__half *>(smem + (j % NS) * C::STAGE + C::W_ST);
#pragma unroll
        for (int i = 0; i < C::SCN; i++) ssc[tid + i * MMQ_THREADS] = v[i];
    };

    /* prologue: the first stages' weights before the PDL wait (weights are never written by the
     * step; x is written by the quantize kernel just before), then their x; tile j's copies are
     * all in commit groups <= j */
    __half scv[C::SCN];
#pragma unroll
    for (int j = 0; j < NS - 1; j++) {
        load_w(j);
        load_sc(j, scv);
        store_sc(j, scv);
    }
#ifdef GGX_PDL_ENTER
    GGX_PDL_ENTER();
#endif
#pragma unroll
    for (int j = 0; j < NS - 1; j++) {
        load_x(j);
        cp_async_commit();
    }

    float acc[1][NTL][4];
#pragma unroll
    for (int n = 0; n < NTL; n++) acc[0][n][0] = acc[0][n][1] = acc[0][n][2] = acc[0][n][3] = 0.0f;

#pragma unroll 1
    for (int j = 0; j < n_local; j++) {
        cp_async_wait<NS - 2>(); /* this thread's copies of tile j have landed */
        __syncthreads();         /* everyone's; stage (j-1) % NS is free */
        load_w(j + NS - 1);
        load_x(j + NS - 1);
        cp_async_commit();
        load_sc(j + NS - 1, scv);

        const uint8_t *st = smem + (j % NS) * C::STAGE;
        const uint8_t *wa = st + (warp * 16 + g) * WSTR;
        const __half *sca = reinterpret_cast<const __half *>(st + C::W_ST) + (warp * 16 + g) * BPT * SCH;
        const uint8_t *xbp = st + C::W_ST + C::SC_ST + g * XSTR + 8 * t;
        const float *xdp = reinterpret_cast<const float *>(st + C::W_ST + C::SC_ST + C::X_ST) + 4 * t;
        const float *xsp = reinterpret_cast<const float *>(st + C::W_ST + C::SC_ST + C::X_ST + C::XD2_ST) + 2 * t;
        const int left = (cols - (tile0 + j) * KT) / 32;
        const int nblk = left < BPT ? left : BPT;
        /* one 32-block: A fragments, then every n tile: acc += d_w * (d_x * (q_w . q_x)) (q4_x:
         * q_w the levels L, then acc += m_w * (d_x * sum(q_x))) */
        auto block = [&](const int b, const float d0, const float d1, const float m0, const float m1) {
            uint32_t a0, a1, a2, a3;
            if (QX) {
                const uint32_t u0 = *reinterpret_cast<const uint32_t *>(wa + 16 * b + 4 * t);
                const uint32_t u1 = *reinterpret_cast<const uint32_t *>(wa + 8 * WSTR + 16 * b + 4 * t);
                a0 = ggx_cuda_q4x_levels4(u0 & 0x0F0F0F0Fu); /* levels 0..127: valid s8 */
                a1 = ggx_cuda_q4x_levels4(u1 & 0x0F0F0F0Fu);
                a2 = ggx_cuda_q4x_levels4((u0 >> 4) & 0x0F0F0F0Fu);
                a3 = ggx_cuda_q4x_levels4((u1 >> 4) & 0x0F0F0F0Fu);
            } else if (Q4) {
                const uint32_t u0 = *reinterpret_cast<const uint32_t *>(wa + 16 * b + 4 * t);
                const uint32_t u1 = *reinterpret_cast<const uint32_t *>(wa + 8 * WSTR + 16 * b + 4 * t);
                a0 = ((u0 << 4) & 0xF0F0F0F0u) ^ 0x80808080u; /* 16 * (q - 8), low nibbles */
                a1 = ((u1 << 4) & 0xF0F0F0F0u) ^ 0x80808080u;
                a2 = (u0 & 0xF0F0F0F0u) ^ 0x80808080u;        /* high nibbles */
                a3 = (u1 & 0xF0F0F0F0u) ^ 0x80808080u;
            } else {
                const uint2 r0 = *reinterpret_cast<const uint2 *>(wa + 32 * b + 8 * t);
                const uint2 r1 = *reinterpret_cast<const uint2 *>(wa + 8 * WSTR + 32 * b + 8 * t);
                a0 = r0.x, a1 = r1.x, a2 = r0.y, a3 = r1.y;
            }
#pragma unroll
            for (int n = 0; n < NTL; n++) {
                const uint2 bx = *reinterpret_cast<const uint2 *>(xbp + n * 8 * XSTR + 32 * b);
                /* tokens 8n + 2t, 8n + 2t + 1: {d, -M d} each */
                const float4 dx = *reinterpret_cast<const float4 *>(xdp + 2 * (b * NT + 8 * n));
                int c[4] = {0x4B400000, 0x4B400000, 0x4B400000, 0x4B400000};
                mma_s8(c, a0, a1, a2, a3, bx.x, bx.y);
                acc[0][n][0] = fmaf(fmaf(__int_as_float(c[0]), dx.x, dx.y), d0, acc[0][n][0]);
                acc[0][n][1] = fmaf(fmaf(__int_as_float(c[1]), dx.z, dx.w), d0, acc[0][n][1]);
                acc[0][n][2] = fmaf(fmaf(__int_as_float(c[2]), dx.x, dx.y), d1, acc[0][n][2]);
                acc[0][n][3] = fmaf(fmaf(__int_as_float(c[3]), dx.z, dx.w), d1, acc[0][n][3]);
                if (QX) {
                    const float2 sx = *reinterpret_cast<const float2 *>(xsp + b * NT + 8 * n);
                    acc[0][n][0] = fmaf(m0, sx.x, acc[0][n][0]);
                    acc[0][n][1] = fmaf(m0, sx.y, acc[0][n][1]);
                    acc[0][n][2] = fmaf(m1, sx.x, acc[0][n][2]);
                    acc[0][n][3] = fmaf(m1, sx.y, acc[0][n][3]);
                }
            }
        };
        if (NTL <= 4 && nblk == BPT) {
            /* whole tile, unrolled without guards so the blocks' loads and mma chains
             * interleave; the scales of rows g and g + 8 as one 8-byte load each */
            static_assert(BPT == 4, "scale loads");
            if (QX) { /* {d, m} of 4 blocks: 16 bytes per row */
                const uint4 s0 = *reinterpret_cast<const uint4 *>(sca), s1 = *reinterpret_cast<const uint4 *>(sca + 8 * BPT * SCH);
                const uint32_t w0[4] = {s0.x, s0.y, s0.z, s0.w}, w1[4] = {s1.x, s1.y, s1.z, s1.w};
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    const float2 p = __half22float2(*reinterpret_cast<const __half2 *>(&w0[b]));
                    const float2 q = __half22float2(*reinterpret_cast<const __half2 *>(&w1[b]));
                    block(b, p.x, q.x, p.y, q.y);
                }
            } else {
                const uint2 s0 = *reinterpret_cast<const uint2 *>(sca), s1 = *reinterpret_cast<const uint2 *>(sca + 8 * BPT);
                const float2 e0 = __half22float2(*reinterpret_cast<const __half2 *>(&s0.x));
                const float2 e1 = __half22float2(*reinterpret_cast<const __half2 *>(&s0.y));
                const float2 f0 = __half22float2(*reinterpret_cast<const __half2 *>(&s1.x));
                const float2 f1 = __half22float2(*reinterpret_cast<const __half2 *>(&s1.y));
                block(0, e0.x, f0.x, 0.0f, 0.0f);
                block(1, e0.y, f0.y, 0.0f, 0.0f);
                block(2, e1.x, f1.x, 0.0f, 0.0f);
                block(3, e1.y, f1.y, 0.0f, 0.0f);
            }
        } else {
#pragma unroll 1
            for (int b = 0; b < nblk; b++) {
                const __half *s0 = sca + b * SCH, *s1 = sca + 8 * BPT * SCH + b * SCH;
                block(b, __half2float(s0[0]), __half2float(s1[0]), QX ? __half2float(s0[SCH - 1]) : 0.0f,
                      QX ? __half2float(s1[SCH - 1]) : 0.0f);
            }
        }
        /* tile j+NS-1's scales (odd cols / 32): their stage was last read in iteration j-1 */
        store_sc(j + NS - 1, scv);
    }
    cp_async_wait<0>();
    mmq_finish<1, NTL>(a, acc, mi, rows, rb0 + warp * 16 + g, t);
}

/* ---- host side ---- */
int g_enabled = -1;           /* GGX_CUDA_MMQ (read once): 0 turns the kernel off */
int g_min_tok = 2, g_max_tok = 64;
int g_split_mode = 1;         /* GGX_CUDA_MMQ_SPLIT: 1 fill the last wave, 0 the first policy */
/* mmq8_kernel's split policy (GGX_CUDA_MMQ_FIXED=F, 0: mmq_kernel's): the split count with the
 * least waves x (K tiles per block + F), F a block's fixed cost (prologue, epilogue, split-K sums)
 * in tiles of streaming. Measured (H100, 7B, session 7), F = 4 vs filling the last wave: q8_0
 * batch 8 / 32 / 64 -3.7 / -7.4 / -1.9% ms/step (q/k/v/o at 32 tokens: 96 row blocks x 2 splits
 * of 16 tiles instead of x 8 of 4), q4_0 -1.8 / +1.6 / -8.2%. */
int g_split_fixed = 4;
int g_debug = 0;              /* GGX_CUDA_MMQ_DEBUG: print the first N launches' shapes */
int g_optin = 0;              /* shared memory a block may opt in to */
int g_n_sm = 0;
float *g_part = nullptr;
int *g_counters = nullptr;
/* GGX_CUDA_MMQ_INT8 (read once per process, so it never changes between captured graphs): 0
 * keeps the bf16-activation kernel for every mode; GGX_CUDA_MMQ_INT8_MIN=N: int8 from N tokens
 * in the default mode 2 (default 3) */
int g_int8 = 1, g_int8_min = 3;
int8_t *g_xq = nullptr; /* mmq8_kernel's quantized x and scales (MMQ8_XQ_BYTES, MMQ8_XD_FLOATS) */
float *g_xd = nullptr;

constexpr int MMQ_SMEM_MIN = 106496; /* the largest one-m-tile instantiation's shared memory */

void read_env() {
    if (g_enabled >= 0) return;
    const char *e = getenv("GGX_CUDA_MMQ");
    g_enabled = !(e && e[0] == '0');
    /* bf16 mma needs sm_80; the 4-stage ring needs ~104 KB of shared memory per block (sm_86 /
     * sm_89 allow 99 KB: those keep the matvec and GEMM paths) */
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&g_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        major < 8 || g_optin < MMQ_SMEM_MIN) {
        (void)cudaGetLastError();
        g_enabled = 0;
    }
    if ((e = getenv("GGX_CUDA_MMQ_MIN")) && atoi(e) >= 2) g_min_tok = atoi(e);
    if ((e = getenv("GGX_CUDA_MMQ_MAX")) && atoi(e) >= 2) g_max_tok = atoi(e);
    if ((e = getenv("GGX_CUDA_MMQ_SPLIT"))) g_split_mode = atoi(e) != 0;
    if ((e = getenv("GGX_CUDA_MMQ_FIXED"))) g_split_fixed = atoi(e) > 0 ? atoi(e) : 0;
    if ((e = getenv("GGX_CUDA_MMQ_DEBUG"))) g_debug = atoi(e);
    if ((e = getenv("GGX_CUDA_MMQ_INT8"))) g_int8 = atoi(e) != 0;
    if ((e = getenv("GGX_CUDA_MMQ_INT8_MIN")) && atoi(e) >= 2) g_int8_min = atoi(e);
}

/* scratch for split K and the SM count, once (never while a stream is being captured: the
 * first run of every graph layout is eager, so this happens before any capture) */
void init_once(cudaStream_t s) {
    if (g_n_sm) return;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1)
        n = 132;
    if (cudaMalloc(&g_part, sizeof(float) * MMQ_PART_FLOATS) != cudaSuccess ||
        cudaMalloc(&g_counters, sizeof(int) * MMQ_COUNTERS) != cudaSuccess ||
        cudaMemset(g_counters, 0, sizeof(int) * MMQ_COUNTERS) != cudaSuccess ||
        cudaDeviceSynchronize() != cudaSuccess) {
        cudaFree(g_part);
        cudaFree(g_counters);
        g_part = nullptr;
        g_counters = nullptr;
        (void)cudaGetLastError();
    }
    if (cudaMalloc(&g_xq, MMQ8_XQ_BYTES) != cudaSuccess ||
        cudaMalloc(&g_xd, sizeof(float) * MMQ8_XD_FLOATS) != cudaSuccess) {
        cudaFree(g_xq);
        cudaFree(g_xd);
        g_xq = nullptr; /* mmq8_kernel off: the bf16 kernel runs instead */
        g_xd = nullptr;
        (void)cudaGetLastError();
    }
    g_n_sm = n;
}

/* K splits for a launch of n_rb row blocks (sets a.tps, returns the split count): the blocks
 * stream for about the same time each, so a grid of 1.1 waves takes as long as 2 full ones: the
 * split count (1..8) is the one that fills the last wave best (slots = resident blocks per SM x
 * SMs), with >= 2 tiles per split and the partials' traffic under a quarter of the weights'.
 * GGX_CUDA_MMQ_SPLIT=0: the first policy (split until there are 2 blocks per SM), for A/B runs.
 * fixed > 0 (mmq8_kernel, g_split_fixed): the least waves x (tiles per block + fixed) instead. */
int pick_splits(MmqArgs &a, int n_rb, int per_sm, size_t weight_bytes, int fixed) {
    const int slots = per_sm * (g_n_sm ? g_n_sm : 132);
    int max_s = 1;
    if (g_part && n_rb <= MMQ_COUNTERS) {
        max_s = a.n_tiles / 2 < MMQ_MAX_SPLIT ? a.n_tiles / 2 : MMQ_MAX_SPLIT;
        const size_t per_split = (size_t)a.n_tok * (size_t)a.total_rows;
        while (max_s > 1 && ((size_t)max_s * per_split > MMQ_PART_FLOATS ||
                             (size_t)max_s * per_split * 4 * 4 > weight_bytes))
            max_s--;
        if (max_s < 1) max_s = 1;
    }
    int splits = 1;
    if (fixed > 0) { /* a block's fixed cost as F tiles of streaming: fewer, longer blocks */
        double best = 1e30;
        for (int sp = 1; sp <= max_s; sp++) {
            const long blocks = (long)n_rb * sp, waves = (blocks + slots - 1) / slots;
            const double cost = (double)waves * ((a.n_tiles + sp - 1) / sp + fixed);
            if (cost < best) best = cost, splits = sp;
        }
    } else if (g_split_mode == 0) {
        const int want = 2 * (g_n_sm ? g_n_sm : 132);
        if (n_rb < want) splits = (want + n_rb - 1) / n_rb;
        if (splits > max_s) splits = max_s;
        if (splits > a.n_tiles / 4) splits = a.n_tiles / 4 > 1 ? a.n_tiles / 4 : 1;
    } else {
        double best = 0.0;
        for (int sp = 1; sp <= max_s; sp++) {
            const long blocks = (long)n_rb * sp;
            const long waves = (blocks + slots - 1) / slots;
            const double eff = (double)blocks / (double)(waves * slots);
            if (eff > best + 0.02) best = eff, splits = sp; /* more splits only for a clear gain */
        }
    }
    a.tps = (a.n_tiles + splits - 1) / splits;
    splits = (a.n_tiles + a.tps - 1) / a.tps;
    return splits;
}

/* the launch: row blocks of BM rows per matrix, K split (pick_splits) */
template <int T, int NTL, int S, int MT>
cudaError_t launch(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t weight_bytes) {
    using C = Cfg<T, NTL, S, MT>;
    static int per_sm = 0;
    if (!per_sm) {
        cudaError_t e = cudaFuncSetAttribute(mmq_kernel<T, NTL, S, MT>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
        if (e != cudaSuccess) return e;
        int nb = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, mmq_kernel<T, NTL, S, MT>, MMQ_THREADS,
                                                          C::SMEM) != cudaSuccess || nb < 1)
            nb = 1;
        per_sm = nb;
    }
    int n_rb = 0;
    for (int k = 0; k < a.n_mats; k++) {
        a.block_start[k] = n_rb;
        n_rb += (mats[k].rows + C::BM - 1) / C::BM;
    }
    a.block_start[a.n_mats] = n_rb;
    a.n_tiles = (a.cols + C::KT - 1) / C::KT;
    const int splits = pick_splits(a, n_rb, per_sm, weight_bytes, 0);
    if (g_debug > 0) { /* GGX_CUDA_MMQ_DEBUG=N: the shapes of the first N launches */
        g_debug--;
        fprintf(stderr, "mmq: %s mats %d rows %d cols %d tok %d NT %d S %d: %d row blocks x %d splits "
                "(%d tiles each), %d blocks/SM, %d slots\n", T == GGX_TYPE_Q4_0 ? "q4_0" : "q8_0",
                a.n_mats, a.total_rows, a.cols, a.n_tok, C::NT, S, n_rb, splits, a.tps, per_sm,
                per_sm * (g_n_sm ? g_n_sm : 132));
    }
    a.part = g_part;
    a.counters = g_counters;
    const dim3 grid((unsigned)n_rb, (unsigned)splits);
#ifdef GGX_LAUNCH
    GGX_LAUNCH((mmq_kernel<T, NTL, S, MT>), grid, MMQ_THREADS, C::SMEM, s, a);
#else
    mmq_kernel<T, NTL, S, MT><<<grid, MMQ_THREADS, C::SMEM, s>>>(a);
#endif
    return cudaGetLastError();
}

/* int8 activations: quantize x into the scratch (one small kernel), then mmq8_kernel. false
 * (nothing launched) when the scratch is too small for this shape or the shared memory does not
 * fit: the caller takes mmq_kernel. */
template <int T, int NTL>
bool launch8(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t weight_bytes, cudaError_t *err) {
    using C = Cfg8<T, NTL>;
    static int per_sm = 0;
    *err = cudaSuccess;
    const int n_tiles = (a.cols + C::KT - 1) / C::KT;
    const size_t cpad = (size_t)n_tiles * C::KT;
    for (int k = 0; k < a.n_mats; k++) /* 32-bit offsets into the quants (mmq8_kernel) */
        if (ggx_cuda_qs_bytes((enum ggx_type)T, mats[k].rows, a.cols) >= ((size_t)1 << 32)) return false;
    if (!g_xq || C::SMEM > g_optin || (size_t)C::NT * cpad > MMQ8_XQ_BYTES ||
        (size_t)C::NT * (cpad / 32) * (C::QX ? 3 : 2) > MMQ8_XD_FLOATS || (C::QX && !a.sc_async))
        return false;
    if (!per_sm) {
        *err = cudaFuncSetAttribute(mmq8_kernel<T, NTL>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
        if (*err != cudaSuccess) return true;
        int nb = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, mmq8_kernel<T, NTL>, MMQ_THREADS, C::SMEM) !=
                cudaSuccess || nb < 1)
            nb = 1;
        per_sm = nb;
    }
    int n_rb = 0;
    for (int k = 0; k < a.n_mats; k++) {
        a.block_start[k] = n_rb;
        n_rb += (mats[k].rows + C::BM - 1) / C::BM;
    }
    a.block_start[a.n_mats] = n_rb;
    a.n_tiles = n_tiles;
    const int splits = pick_splits(a, n_rb, per_sm, weight_bytes, g_split_fixed);
    if (g_debug > 0) {
        g_debug--;
        fprintf(stderr, "mmq8: %s mats %d rows %d cols %d tok %d NT %d: %d row blocks x %d splits "
                "(%d tiles each), %d blocks/SM, %d stages, %d B smem\n", ggx_type_name((enum ggx_type)T),
                a.n_mats, a.total_rows, a.cols, a.n_tok, C::NT, n_rb, splits, a.tps, per_sm, C::NS, C::SMEM);
    }
    a.part = g_part;
    a.counters = g_counters;
    a.xq = g_xq;
    a.xd = g_xd;
    *err = [&]() -> cudaError_t {
        const unsigned qblocks = (unsigned)((size_t)C::NT * cpad / 4 / 256);
        GGX_LAUNCH((mmq8_quant_kernel<T>), dim3(qblocks), 256, 0, s, a.x, a.xb, a.xmode, a.cols, a.n_tok,
                   C::NT, (int)cpad, g_xq, g_xd);
        GGX_LAUNCH((mmq8_kernel<T, NTL>), dim3((unsigned)n_rb, (unsigned)splits), MMQ_THREADS, C::SMEM, s, a);
        return cudaGetLastError();
    }();
    return true;
}

/* one m tile per warp: two (256 rows per block, half the x traffic per weight byte, one block
 * of 8 warps per SM) measured slower at 32 and 64 tokens (H100, 7B q8_0 decode B=32 18.2 vs
 * 14.9 ms/step, B=64 32.7 vs 26.9), so the kernel keeps MT as a parameter but uses 1 */
template <int T, int NTL, int S>
cudaError_t launch_mt(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t wb) {
    return launch<T, NTL, S, 1>(s, a, mats, wb);
}

template <int T>
cudaError_t launch_type(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t wb, bool exact,
                        bool int8) {
    const int nt = a.n_tok;
    if (int8) {
        cudaError_t e = cudaSuccess;
        const bool done = nt <= 8    ? launch8<T, 1>(s, a, mats, wb, &e)
                          : nt <= 16 ? launch8<T, 2>(s, a, mats, wb, &e)
                          : nt <= 32 ? launch8<T, 4>(s, a, mats, wb, &e)
                                     : launch8<T, 8>(s, a, mats, wb, &e);
        if (done) return e;
    }
    if (nt <= 8) return exact ? launch_mt<T, 1, 3>(s, a, mats, wb) : launch_mt<T, 1, 1>(s, a, mats, wb);
    if (nt <= 16) return exact ? launch_mt<T, 2, 3>(s, a, mats, wb) : launch_mt<T, 2, 1>(s, a, mats, wb);
    if (nt <= 32) return launch_mt<T, 4, 1>(s, a, mats, wb);
    return launch_mt<T, 8, 1>(s, a, mats, wb);
}

/* q4_x: mmq8_kernel only (no bf16-activation kernel); false: nothing launched */
bool launch_qx(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t wb, cudaError_t *e) {
    constexpr int T = GGX_TYPE_Q4_X;
    const int nt = a.n_tok;
    return nt <= 8    ? launch8<T, 1>(s, a, mats, wb, e)
           : nt <= 16 ? launch8<T, 2>(s, a, mats, wb, e)
           : nt <= 32 ? launch8<T, 4>(s, a, mats, wb, e)
                      : launch8<T, 8>(s, a, mats, wb, e);
}

/* whether this many tokens run with int8 activations: mode 1 always, mode 2 (default) from
 * g_int8_min (3) tokens */
bool int8_for(int n_tok) {
    const int mode = ggx_cuda_mv_int8_mode();
    return g_int8 && (mode == 1 || (mode == 2 && n_tok >= g_int8_min));
}

} // namespace

bool ggx_cuda_mmq_supported(enum ggx_type t, int64_t cols, int n_tok) {
    read_env();
    if (!g_enabled || cols < 32 || cols % 32 != 0 || cols > (int64_t)1 << 30 || n_tok < g_min_tok || n_tok > g_max_tok)
        return false;
    if (t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0) return true;
    /* q4_x: int8 activations only, and rows of an even number of blocks (their {d, m} pairs
     * copied 8 bytes at a time); else the matvec / GEMM paths as before */
    return t == GGX_TYPE_Q4_X && (cols / 32) % 2 == 0 && int8_for(n_tok < MMQ_MAX_TOK ? n_tok : MMQ_MAX_TOK);
}

cudaError_t ggx_cuda_mmq(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                         const float *xa, const float *xb, int xmode, int cols, int n_tok) {
    if (n_mats < 1 || n_mats > GGX_CUDA_MV_MAX_MATS || n_tok < 1 || cols % 32 != 0)
        return cudaErrorInvalidValue;
    if (t != GGX_TYPE_Q8_0 && t != GGX_TYPE_Q4_0 && t != GGX_TYPE_Q4_X) return cudaErrorInvalidValue;
    read_env();
    init_once(s);
    for (int t0 = 0; t0 < n_tok; t0 += MMQ_MAX_TOK) {
        MmqArgs a;
        memset(&a, 0, sizeof a);
        a.n_mats = n_mats;
        a.x = xa + (size_t)t0 * cols;
        a.xb = xb ? xb + (size_t)t0 * cols : nullptr;
        a.xmode = xmode;
        a.cols = cols;
        a.n_tok = n_tok - t0 < MMQ_MAX_TOK ? n_tok - t0 : MMQ_MAX_TOK;
        a.sc_async = (cols / 32) % 2 == 0;
        size_t wb = 0;
        for (int k = 0; k < n_mats; k++) {
            if (mats[k].rows < 1) return cudaErrorInvalidValue;
            a.w[k] = static_cast<const uint8_t *>(mats[k].w);
            a.y[k] = mats[k].y + (size_t)t0 * mats[k].rows;
            a.rows[k] = mats[k].rows;
            a.epi[k] = mats[k].epi;
            a.cap[k] = mats[k].cap;
            a.bias[k] = mats[k].bias;
            a.row_start[k] = a.total_rows;
            a.total_rows += mats[k].rows;
            wb += ggx_cuda_weight_bytes(t, mats[k].rows, cols);
        }
        /* int8 activations (mmq8_kernel): mode 1 always, mode 2 (default) from g_int8_min (3)
         * tokens; else bf16 x, as bf16 hi + mid + lo planes up to 16 tokens unless mode 1 */
        const bool int8 = int8_for(a.n_tok);
        const bool exact = ggx_cuda_mv_int8_mode() != 1;
        cudaError_t e = cudaSuccess;
        if (t == GGX_TYPE_Q4_X) {
            if (!int8 || !launch_qx(s, a, mats, wb, &e)) {
                /* (a tail of fewer tokens, or a shape the scratch cannot hold): the matvec
                 * kernels, 8 tokens per pass */
                ggx_cuda_mv_mat m[GGX_CUDA_MV_MAX_MATS];
                for (int k = 0; k < n_mats; k++) {
                    m[k] = mats[k];
                    m[k].y = a.y[k];
                }
                const ggx_cuda_mv_x xs = {a.x, a.xb, nullptr, xmode, 0.0f, nullptr, 0, nullptr};
                e = ggx_cuda_mv_ex(s, t, m, n_mats, &xs, cols, a.n_tok);
            }
        } else {
            e = t == GGX_TYPE_Q8_0 ? launch_type<GGX_TYPE_Q8_0>(s, a, mats, wb, exact, int8)
                                   : launch_type<GGX_TYPE_Q4_0>(s, a, mats, wb, exact, int8);
        }
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
