/*
 * cuda_mv_dev.cuh — device pieces shared by the matvec kernels (cuda_matvec.cu) and the
 * persistent decode kernel (cuda_persist.cu): the launch description, the x staging (f32 and
 * int8), the int8 dot products, the side rows, the L2 prefetch. Not a public header; each
 * translation unit gets its own copy (anonymous namespace).
 *
 * NC (template flag of the x readers): true reads activations through the read-only path
 * (__ldg), right for a kernel whose inputs were written before it started; false reads them
 * through L2 (__ldcg), which a persistent kernel needs for data other blocks wrote earlier in
 * the same launch (the read-only cache is not coherent within a kernel).
 */
#ifndef GGX_CUDA_MV_DEV_CUH
#define GGX_CUDA_MV_DEV_CUH
#include "cuda_common.h"

#include <cuda_fp16.h>

namespace {

struct MvLaunch {
    const uint8_t *w[GGX_CUDA_MV_MAX_MATS];
    float *y[GGX_CUDA_MV_MAX_MATS];
    int rows[GGX_CUDA_MV_MAX_MATS];
    int block_start[GGX_CUDA_MV_MAX_MATS + 1]; /* first block of each matrix */
    int epi[GGX_CUDA_MV_MAX_MATS];
    float cap[GGX_CUDA_MV_MAX_MATS];
    const float *bias[GGX_CUDA_MV_MAX_MATS];
    int row_start[GGX_CUDA_MV_MAX_MATS]; /* launch-wide row numbering (split-K partials) */
    int n_mats;
    const float *x, *xb, *xc;
    int xmode;
    float eps;   /* norm modes */
    const float *res[GGX_CUDA_MV_MAX_MATS]; /* residual epilogue (or NULL) */
    /* split-K (gridDim.y = splits > 1): each split covers chunks [y*cps, (y+1)*cps); partial sums
     * go to part [splits][8][total_rows]; the last split block of a row block adds them in a
     * fixed order (deterministic) and writes y */
    int cps;
    int total_rows;
    float *part;
    float *part_ss; /* RMS_NORM: [splits][8][row blocks] sums of squares of x */
    int *counters;
    int cols;
    int n_tok;
    /* side rows (mv_side_row): one block each, after the main grid (blockIdx.x >= side_block0)
     * for mv_kernel / mvq_kernel, blocks 0.. of the persistent grid for mvt_kernel */
    int side_block0;
    int n_side, side_rows;
    const float *sw[GGX_CUDA_MV_MAX_SIDE];
    float *sy[GGX_CUDA_MV_MAX_SIDE];
    int srows[GGX_CUDA_MV_MAX_SIDE];
    int sepi[GGX_CUDA_MV_MAX_SIDE];
    float scap[GGX_CUDA_MV_MAX_SIDE];
    const float *sbias[GGX_CUDA_MV_MAX_SIDE];
    /* L2 prefetch of the next launch's weights: issued by the main blocks of the last wave
     * (linear block id >= pf_first, over side_block0 x splits) or every block of mvt_kernel's
     * persistent grid, each a 1 / (blocks) share, once its own weights are read */
    ggx_cuda_pf pf;
    int pf_first;
};

/* this block's share (slot of n_slots) of the prefetch ranges, by one thread; sm_90 only
 * (cp.async.bulk.prefetch.L2: one instruction per range piece, nothing waits for it) */
__device__ __forceinline__ void pf_issue(const ggx_cuda_pf &pf, uint32_t slot, uint32_t n_slots) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (pf.count == 0 || slot >= n_slots) return;
    uint64_t lo = (uint64_t)pf.total16 * slot / n_slots;
    const uint64_t hi = (uint64_t)pf.total16 * (slot + 1) / n_slots;
    uint64_t base = 0;
#pragma unroll 1
    for (int i = 0; i < pf.count && lo < hi; i++) {
        const uint64_t end = base + pf.n16[i];
        if (lo < end) {
            const uint64_t e = hi < end ? hi : end;
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(
                             static_cast<const uint8_t *>(pf.p[i]) + (lo - base) * 16),
                         "r"((uint32_t)((e - lo) * 16))
                         : "memory");
            lo = e;
        }
        base = end;
    }
#else
    (void)pf;
    (void)slot;
    (void)n_slots;
#endif
}

/* weights per 16-byte chunk */
template <int T> struct Tr;
template <> struct Tr<GGX_TYPE_F32> { static constexpr int W = 4; };
template <> struct Tr<GGX_TYPE_F16> { static constexpr int W = 8; };
template <> struct Tr<GGX_TYPE_BF16> { static constexpr int W = 8; };
template <> struct Tr<GGX_TYPE_Q8_0> { static constexpr int W = 16; };
template <> struct Tr<GGX_TYPE_Q4_0> { static constexpr int W = 32; };
template <> struct Tr<GGX_TYPE_Q4_X> { static constexpr int W = 32; };


/* float4 slot of x in shared memory: XOR-swizzled so that the 8 lanes of a quarter-warp, which
 * read float4 number l*(W/4) + g (lane l, group g), hit 8 different bank groups */
__device__ __forceinline__ int swz(int f4) { return f4 ^ ((f4 >> 3) & 7); }

/* same arithmetic as the standalone SWIGLU / SIGMOID_MUL kernels (cuda_ops.cu) */
__device__ __forceinline__ float xform(int mode, float a, float b) {
    const float sg = 1.0f / (1.0f + expf(-a));
    return mode == GGX_CUDA_X_SWIGLU ? a * sg * b : sg * b;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* x[t, e .. e+3] as staged (e a multiple of 4). RMS_NORM stages x * w and adds x^2 to ss[t]:
 * W (x * inv * w) = inv * (W (x * w)), so the block needs no statistics before it can stage;
 * mv_finish multiplies by inv = 1/sqrt(sum x^2 / cols + eps) once the sums over the whole row
 * are known (this block's, or every split's). */
template <int NT, bool NC = true>
__device__ __forceinline__ float4 mv_x4(const MvLaunch &a, int t, int e, float (&ss)[NT]) {
    const size_t off = (size_t)t * a.cols + e;
    float4 v = NC ? __ldg(reinterpret_cast<const float4 *>(a.x + off)) : __ldcg(reinterpret_cast<const float4 *>(a.x + off));
    if (a.xmode == GGX_CUDA_X_PLAIN) return v;
    if (a.xmode == GGX_CUDA_X_RMS_NORM) {
        const float sq = (v.x * v.x + v.y * v.y) + (v.z * v.z + v.w * v.w);
#pragma unroll
        for (int u = 0; u < NT; u++)
            if (u == t) ss[u] += sq;
        const float4 w = __ldg(reinterpret_cast<const float4 *>(a.xc + e));
        return make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
    }
    const float4 b = NC ? __ldg(reinterpret_cast<const float4 *>(a.xb + off)) : __ldcg(reinterpret_cast<const float4 *>(a.xb + off));
    v.x = xform(a.xmode, v.x, b.x);
    v.y = xform(a.xmode, v.y, b.y);
    v.z = xform(a.xmode, v.z, b.z);
    v.w = xform(a.xmode, v.w, b.w);
    return v;
}

/* RMS_NORM: the block's sums of squares (every thread gets them; one barrier) */
template <int NT>
__device__ __forceinline__ void mv_block_ss(const MvLaunch &a, float (&ss)[NT]) {
    if (a.xmode != GGX_CUDA_X_RMS_NORM) return;
    __shared__ float red[32][NT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float v = warp_sum(ss[t]);
        if (lane == 0) red[warp][t] = v;
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float v = 0.0f;
        for (int w = 0; w < nw; w++) v += red[w][t];
        ss[t] = v;
    }
}

/* Side row r (over all side matrices) by the whole block: the f32 dot product of its weights
 * with the launch's x (transform; RMS_NORM over the whole row, summed here), its soft-cap
 * epilogue, the store. Each thread takes every blockDim-th float4: one pass, all loads in
 * flight at once for 4096 columns. Every thread of the block must call it. */
template <int NT, bool NC = true>
__device__ __forceinline__ void mv_side_row(const MvLaunch &a, int r) {
    __shared__ float red[32];
    int si = 0;
    while (si + 1 < a.n_side && r >= a.srows[si]) r -= a.srows[si++];
    const float *w = a.sw[si] + (size_t)r * a.cols;
    float acc[NT], ss[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = ss[t] = 0.0f;
#pragma unroll 4
    for (int e = 4 * (int)threadIdx.x; e < a.cols; e += 4 * (int)blockDim.x) {
        const float4 wv = __ldg(reinterpret_cast<const float4 *>(w + e));
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (t < a.n_tok) {
                const float4 xv = mv_x4<NT, NC>(a, t, e, ss);
                acc[t] = fmaf(wv.x, xv.x, acc[t]);
                acc[t] = fmaf(wv.y, xv.y, acc[t]);
                acc[t] = fmaf(wv.z, xv.z, acc[t]);
                acc[t] = fmaf(wv.w, xv.w, acc[t]);
            }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float v = ggx_cuda_block_sum(acc[t], red);
        const float q = ggx_cuda_block_sum(ss[t], red);
        if (threadIdx.x == 0 && t < a.n_tok) {
            if (a.xmode == GGX_CUDA_X_RMS_NORM) v *= 1.0f / sqrtf(q / (float)a.cols + a.eps);
            if (a.sepi[si]) {
                v += a.sbias[si] ? a.sbias[si][r] : 0.0f;
                v = ggx_cuda_soft_cap_v(v, a.scap[si]);
            }
            a.sy[si][(size_t)t * a.srows[si] + r] = v;
        }
    }
}


constexpr int MVQ_WARPS = 8;
__host__ __device__ constexpr int mvq_rpw(int nt) { return nt <= 2 ? 4 : 2; }
constexpr int MVQ_SMEM_MAX = 46 * 1024; /* dynamic shared memory per block, under the 48 KB default */

/* a chunk's scale as mvq_load keeps it: d (q8_0, q4_0) or {d, m} (q4_x) */
template <int T> struct MvqScale { using type = float; };
template <> struct MvqScale<GGX_TYPE_Q4_X> { using type = float2; };

template <int T, int R>
__device__ __forceinline__ void mvq_load(uint4 (&raw)[R], typename MvqScale<T>::type (&d)[R], const uint8_t *w,
                                         const __half *sc, const int (&rr)[R], size_t row_bytes,
                                         int64_t bpr, int c) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        raw[r] = __ldcs(reinterpret_cast<const uint4 *>(w + (size_t)rr[r] * row_bytes) + c);
        if constexpr (T == GGX_TYPE_Q4_X)
            d[r] = __half22float2(reinterpret_cast<const __half2 *>(sc)[(int64_t)rr[r] * bpr + c]);
        else
            d[r] = __half2float(sc[(int64_t)rr[r] * bpr + (T == GGX_TYPE_Q4_0 ? c : (c >> 1))]);
    }
}

/* One float4 v (word f of a token's row) quantized with its 32-block: the 8 lanes holding the
 * block's 8 words (consecutive lanes, aligned to 8) share amax and the sum of the quants by
 * shuffles (so every lane of the warp must call it); when `store`, the int8 word goes to int4
 * slot q0_slot + f/4 (swizzled), component f%4, and the block's {d_x, 8 d_x sum(q)} to xs[s0_slot
 * + f/8] (the token's rows in the staging). */
__device__ __forceinline__ void mvq_quant4(const float4 v, int f, bool store, int4 *xq, int q0_slot, float2 *xs,
                                           int s0_slot) {
    float amax;
    const int4 q = ggx_cuda_q8_block4(v, amax);
    const int sum = ggx_cuda_q8_block_sum(q.x + q.y + q.z + q.w);
    if (store) {
        reinterpret_cast<int *>(&xq[q0_slot + swz(f >> 2)])[f & 3] = (int)ggx_cuda_q8_pack4(q);
        if ((f & 7) == 0) {
            const float dx = amax / 127.0f;
            xs[s0_slot + (f >> 3)] = make_float2(dx, 8.0f * dx * (float)sum);
        }
    }
}

/* x[:, e0:e0+ne] (after the launch's x transform) quantized per token and 32-block into shared
 * memory, 8 lanes per 32-block: xq [NT][nes / 16] int4 slots (16 int8, swizzled), xs [NT][nes /
 * 32] float2 {d_x, 8 * d_x * sum(q_x)} (the second is q4_0's offset). Adds RMS_NORM's x^2 to ss. */
template <int NT, bool NC = true>
__device__ __forceinline__ void mvq_stage_x(const MvLaunch &a, int e0, int ne, int nes, int4 *xq,
                                            float2 *xs, float (&ss)[NT], int warp, int lane) {
    const int n4 = NT * (ne / 4);
    for (int base = warp * 32; base < n4; base += MVQ_WARPS * 32) {
        const int i = base + lane;
        const int t = i / (ne / 4), f = i % (ne / 4);
        const bool ok = i < n4 && t < a.n_tok;
        const float4 v = ok ? mv_x4<NT, NC>(a, t, e0 + 4 * f, ss) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        mvq_quant4(v, f, i < n4, xq, t * (nes / 16), xs, t * (nes / 32));
    }
}

/* acc[r][t] += the dot product of chunk cl (of the split) of R rows (quants q, scales dw) with
 * the staged int8 x: 4 (q8_0) or 8 (q4_0) dp4a per row and token */
template <int T, int R, int NT>
__device__ __forceinline__ void mvq_dot(const uint4 (&q)[R], const typename MvqScale<T>::type (&dw)[R],
                                        const int4 *xq, const float2 *xs, int nes, int cl, int n_tok,
                                        float (&acc)[R][NT]) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (t < n_tok) {
            if constexpr (T == GGX_TYPE_Q4_X) {
                /* levels L (0..127, so also valid signed bytes) of the low / high nibbles; the
                 * block's dot is d d_x sum(L q_x) + m d_x sum(q_x), the latter xs.y / 8 */
                const int4 x0 = xq[t * (nes / 16) + swz(2 * cl)], x1 = xq[t * (nes / 16) + swz(2 * cl + 1)];
                const float2 xd = xs[t * (nes / 32) + cl];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const uint32_t m = 0x0F0F0F0Fu;
                    int is = __dp4a((int)ggx_cuda_q4x_levels4(q[r].x & m), x0.x, 0);
                    is = __dp4a((int)ggx_cuda_q4x_levels4(q[r].y & m), x0.y, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4(q[r].z & m), x0.z, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4(q[r].w & m), x0.w, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4((q[r].x >> 4) & m), x1.x, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4((q[r].y >> 4) & m), x1.y, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4((q[r].z >> 4) & m), x1.z, is);
                    is = __dp4a((int)ggx_cuda_q4x_levels4((q[r].w >> 4) & m), x1.w, is);
                    acc[r][t] = fmaf(dw[r].x, xd.x * (float)is, fmaf(dw[r].y, 0.125f * xd.y, acc[r][t]));
                }
            } else if (T != GGX_TYPE_Q4_0) {
                const int4 xv = xq[t * (nes / 16) + swz(cl)];
                const float dx = xs[t * (nes / 32) + (cl >> 1)].x;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int is = __dp4a((int)q[r].x, xv.x, 0);
                    is = __dp4a((int)q[r].y, xv.y, is);
                    is = __dp4a((int)q[r].z, xv.z, is);
                    is = __dp4a((int)q[r].w, xv.w, is);
                    acc[r][t] = fmaf(dw[r] * dx, (float)is, acc[r][t]);
                }
            } else {
                const int4 x0 = xq[t * (nes / 16) + swz(2 * cl)], x1 = xq[t * (nes / 16) + swz(2 * cl + 1)];
                const float2 xd = xs[t * (nes / 32) + cl];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const int m = 0x0F0F0F0F;
                    int is = __dp4a((int)(q[r].x & m), x0.x, 0);
                    is = __dp4a((int)(q[r].y & m), x0.y, is);
                    is = __dp4a((int)(q[r].z & m), x0.z, is);
                    is = __dp4a((int)(q[r].w & m), x0.w, is);
                    is = __dp4a((int)((q[r].x >> 4) & m), x1.x, is);
                    is = __dp4a((int)((q[r].y >> 4) & m), x1.y, is);
                    is = __dp4a((int)((q[r].z >> 4) & m), x1.z, is);
                    is = __dp4a((int)((q[r].w >> 4) & m), x1.w, is);
                    acc[r][t] = fmaf(dw[r], fmaf(xd.x, (float)is, -xd.y), acc[r][t]);
                }
            }
        }
    }
}


constexpr int MVT_SC_PAD = 32; /* a scale range's 16-byte aligned superset adds <= 28 bytes */
constexpr int MVT_MAX_STAGES = 8;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* used by mvt_kernel only */
__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
#endif

} // namespace
#endif
