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
        if (a.sc_async) return;
#pragma unroll
        for (int i = 0; i < C::SCN; i++) {
            const int c = tid + i * MMQ_THREADS, r = c / BPT, b = c % BPT;
            const int gr = rb0 + r < rows ? rb0 + r : rows - 1;
            const int blk = (tile0 + j) * BPT + b;
            v[i] = j < n_local && blk < bpr ? wsc[(size_t)gr * bpr + blk] : __float2half(0.0f);
        }
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
    const int r_a = rb0 + warp * 16 * MT + g;
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
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < NTL; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int tok = 8 * n + 2 * t + (e & 1), r = r_a + 16 * m + (e >> 1) * 8;
                if (tok < a.n_tok && r < rows) {
                    float v = 0.0f;
                    for (int y = 0; y < (int)gridDim.y; y++)
                        v += __ldcg(&a.part[((size_t)y * a.n_tok + tok) * a.total_rows + grow + r]);
                    acc[m][n][e] = v;
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

/* ---- host side ---- */
int g_enabled = -1;           /* GGX_CUDA_MMQ (read once): 0 turns the kernel off */
int g_min_tok = 2, g_max_tok = 64;
int g_split_mode = 1;         /* GGX_CUDA_MMQ_SPLIT: 1 fill the last wave, 0 the first policy */
int g_debug = 0;              /* GGX_CUDA_MMQ_DEBUG: print the first N launches' shapes */
int g_optin = 0;              /* shared memory a block may opt in to */
int g_n_sm = 0;
float *g_part = nullptr;
int *g_counters = nullptr;

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
    if ((e = getenv("GGX_CUDA_MMQ_DEBUG"))) g_debug = atoi(e);
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
    g_n_sm = n;
}

/* the launch: row blocks of BM rows per matrix, K split S ways. The blocks stream for about the
 * same time each, so a grid of 1.1 waves takes as long as 2 full ones: S is chosen (1..8) to
 * fill the last wave best (slots = resident blocks per SM x SMs), with >= 2 tiles per split and
 * the partials' traffic under a quarter of the weights'. GGX_CUDA_MMQ_SPLIT=0: the first policy
 * (split until there are 2 blocks per SM), for A/B runs. */
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
    if (g_split_mode == 0) {
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
    if (g_debug > 0) { /* GGX_CUDA_MMQ_DEBUG=N: the shapes of the first N launches */
        g_debug--;
        fprintf(stderr, "mmq: %s mats %d rows %d cols %d tok %d NT %d S %d: %d row blocks x %d splits "
                "(%d tiles each), %d blocks/SM, %d slots\n", T == GGX_TYPE_Q4_0 ? "q4_0" : "q8_0",
                a.n_mats, a.total_rows, a.cols, a.n_tok, C::NT, S, n_rb, splits, a.tps, per_sm, slots);
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

/* one m tile per warp: two (256 rows per block, half the x traffic per weight byte, one block
 * of 8 warps per SM) measured slower at 32 and 64 tokens (H100, 7B q8_0 decode B=32 18.2 vs
 * 14.9 ms/step, B=64 32.7 vs 26.9), so the kernel keeps MT as a parameter but uses 1 */
template <int T, int NTL, int S>
cudaError_t launch_mt(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t wb) {
    return launch<T, NTL, S, 1>(s, a, mats, wb);
}

template <int T>
cudaError_t launch_type(cudaStream_t s, MmqArgs &a, const ggx_cuda_mv_mat *mats, size_t wb, bool exact) {
    const int nt = a.n_tok;
    if (nt <= 8) return exact ? launch_mt<T, 1, 3>(s, a, mats, wb) : launch_mt<T, 1, 1>(s, a, mats, wb);
    if (nt <= 16) return exact ? launch_mt<T, 2, 3>(s, a, mats, wb) : launch_mt<T, 2, 1>(s, a, mats, wb);
    if (nt <= 32) return launch_mt<T, 4, 1>(s, a, mats, wb);
    return launch_mt<T, 8, 1>(s, a, mats, wb);
}

} // namespace

bool ggx_cuda_mmq_supported(enum ggx_type t, int64_t cols, int n_tok) {
    read_env();
    return g_enabled && (t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0) && cols >= 32 && cols % 32 == 0 &&
           cols <= (int64_t)1 << 30 && n_tok >= g_min_tok && n_tok <= g_max_tok;
}

cudaError_t ggx_cuda_mmq(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                         const float *xa, const float *xb, int xmode, int cols, int n_tok) {
    if (n_mats < 1 || n_mats > GGX_CUDA_MV_MAX_MATS || n_tok < 1 || cols % 32 != 0)
        return cudaErrorInvalidValue;
    if (t != GGX_TYPE_Q8_0 && t != GGX_TYPE_Q4_0) return cudaErrorInvalidValue;
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
        /* the exact f32 matvecs are selected (int8 activations off): x as bf16 hi + mid + lo */
        const bool exact = !ggx_cuda_mv_int8_x();
        const cudaError_t e = t == GGX_TYPE_Q8_0 ? launch_type<GGX_TYPE_Q8_0>(s, a, mats, wb, exact)
                                                 : launch_type<GGX_TYPE_Q4_0>(s, a, mats, wb, exact);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
