/*
 * cuda_matvec.cu — dequantize-and-multiply kernels for decode (a few tokens per step).
 *
 * Decode is bound by reading the weights: every weight byte is read once per launch, for all
 * n_tok (<= NT) tokens together. Each warp owns RPW rows; each lane reads 16 bytes of each row
 * per step (f32: 4 weights, f16/bf16: 8, q8_0: 16 = half a block, q4_0: 32 = one block), turns
 * them into f32 with integer tricks (no int->float conversion instructions), and multiplies them
 * with the f32 activations of every token (read through the read-only cache; they are shared by
 * all warps). Accumulation is f32, per lane, then a warp shuffle reduction.
 *
 * Bytes per launch: rows*cols*bpw/8 of weights + n_tok*cols*4 of x (cached) + n_tok*rows*4 of y.
 */
#include "cuda_common.h"
#include "cuda_mv_dev.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

namespace {

constexpr int MV_WARPS = 8;  /* warps per block */
/* rows per warp: each x value read from shared memory serves RPW rows */
__host__ __device__ constexpr int mv_rpw(int) { return 2; } /* 4 was slower for 4-8 tokens (measured) */

/* mv_kernel / mvq_kernel: the main blocks of the last wave prefetch (grid x = side_block0 main
 * blocks then the side rows' blocks, y = splits) */
__device__ __forceinline__ void mv_prefetch(const MvLaunch &a) {
    if (threadIdx.x != 0 || a.pf.count == 0) return;
    const uint32_t lin = blockIdx.y * (uint32_t)a.side_block0 + blockIdx.x;
    const uint32_t n = gridDim.y * (uint32_t)a.side_block0;
    if (lin >= (uint32_t)a.pf_first) pf_issue(a.pf, lin - (uint32_t)a.pf_first, n - (uint32_t)a.pf_first);
}

/* f32 from the byte k of u placed in the mantissa of 2^23: value 2^23 + byte. */
__device__ __forceinline__ float byte_as_2p23(uint32_t u, int k) {
    return __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u + (uint32_t)k));
}

/* Decode weights 4g..4g+3 of a 16-byte chunk into f32 (the scale of q types is applied by the
 * caller, once per chunk). Decoding a group right before its use keeps few registers live. */
template <int T>
__device__ __forceinline__ void decode4(const uint4 raw, int g, float *f);

__device__ __forceinline__ uint32_t word(const uint4 r, int i) {
    return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

template <>
__device__ __forceinline__ void decode4<GGX_TYPE_F32>(const uint4 raw, int, float *f) {
    f[0] = __uint_as_float(raw.x); f[1] = __uint_as_float(raw.y);
    f[2] = __uint_as_float(raw.z); f[3] = __uint_as_float(raw.w);
}
template <>
__device__ __forceinline__ void decode4<GGX_TYPE_BF16>(const uint4 raw, int g, float *f) {
    const uint32_t a = word(raw, 2 * g), b = word(raw, 2 * g + 1);
    f[0] = __uint_as_float(a << 16); f[1] = __uint_as_float(a & 0xFFFF0000u);
    f[2] = __uint_as_float(b << 16); f[3] = __uint_as_float(b & 0xFFFF0000u);
}
template <>
__device__ __forceinline__ void decode4<GGX_TYPE_F16>(const uint4 raw, int g, float *f) {
    const uint32_t u[2] = {word(raw, 2 * g), word(raw, 2 * g + 1)};
#pragma unroll
    for (int i = 0; i < 2; i++) {
        __half2 h;
        memcpy(&h, &u[i], 4);
        const float2 v = __half22float2(h);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}
template <>
__device__ __forceinline__ void decode4<GGX_TYPE_Q8_0>(const uint4 raw, int g, float *f) {
    const uint32_t u = word(raw, g) ^ 0x80808080u; /* int8 -> uint8 + 128 */
#pragma unroll
    for (int k = 0; k < 4; k++) f[k] = byte_as_2p23(u, k) - 8388736.0f; /* 2^23 + 128 */
}
template <>
__device__ __forceinline__ void decode4<GGX_TYPE_Q4_0>(const uint4 raw, int g, float *f) {
    /* elements 4g..4g+3: low nibbles of word g (g < 4), high nibbles of word g-4 (g >= 4) */
    const uint32_t u = g < 4 ? (word(raw, g) & 0x0F0F0F0Fu) : ((word(raw, g - 4) >> 4) & 0x0F0F0F0Fu);
#pragma unroll
    for (int k = 0; k < 4; k++) f[k] = byte_as_2p23(u, k) - 8388616.0f; /* q - 8 */
}

template <>
__device__ __forceinline__ void decode4<GGX_TYPE_Q4_X>(const uint4 raw, int g, float *f) {
    /* level indices like q4_0's nibbles; the levels (0..127) themselves, d and m come later */
    const uint32_t u = g < 4 ? (word(raw, g) & 0x0F0F0F0Fu) : ((word(raw, g - 4) >> 4) & 0x0F0F0F0Fu);
    const uint32_t l = ggx_cuda_q4x_levels4(u);
#pragma unroll
    for (int k = 0; k < 4; k++) f[k] = byte_as_2p23(l, k) - 8388608.0f; /* 2^23 */
}

template <int T> __device__ __forceinline__ float chunk_scale(const uint8_t *, int64_t, int64_t) {
    return 1.0f;
}
/* q4_x: d and m of the block holding chunk c of row r ({d, m} f16 pairs follow the quants) */
template <>
__device__ __forceinline__ float chunk_scale<GGX_TYPE_Q4_X>(const uint8_t *sc, int64_t r_blocks, int64_t c) {
    return __low2float(reinterpret_cast<const __half2 *>(sc)[r_blocks + c]);
}
__device__ __forceinline__ float chunk_min_q4x(const uint8_t *sc, int64_t r_blocks, int64_t c) {
    return __high2float(reinterpret_cast<const __half2 *>(sc)[r_blocks + c]);
}
/* scale of the block holding chunk c of row r (scales follow the quants) */
template <>
__device__ __forceinline__ float chunk_scale<GGX_TYPE_Q8_0>(const uint8_t *sc, int64_t r_blocks,
                                                            int64_t c) {
    return __half2float(reinterpret_cast<const __half *>(sc)[r_blocks + (c >> 1)]);
}
template <>
__device__ __forceinline__ float chunk_scale<GGX_TYPE_Q4_0>(const uint8_t *sc, int64_t r_blocks,
                                                            int64_t c) {
    return __half2float(reinterpret_cast<const __half *>(sc)[r_blocks + c]);
}


#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* used by mvt_kernel only */
/* the epilogue of output (row, token t) of matrix mi: bias + soft cap, residual; then the store */
__device__ __forceinline__ void mv_store(const MvLaunch &a, int mi, int row, int rows, int t, float v) {
    if (a.epi[mi]) {
        const float c = a.cap[mi];
        v += a.bias[mi] ? a.bias[mi][row] : 0.0f;
        v = ggx_cuda_soft_cap_v(v, c);
    }
    if (a.res[mi]) v += a.res[mi][(size_t)t * rows + row];
    a.y[mi][(size_t)t * rows + row] = v;
}
#endif

/* split-K reduction, epilogue and store of a warp's RPW rows x NT tokens */
template <int MV_RPW, int NT>
__device__ __forceinline__ void mv_finish(const MvLaunch &a, float (&acc)[MV_RPW][NT],
                                          const bool (&rv)[MV_RPW], int mi, int row0, int rows,
                                          int lane, float (&ss)[NT]) {
    mv_block_ss<NT>(a, ss);
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], o);
    if (gridDim.y > 1) {
        /* split-K: publish this split's partial sums; the last split of the row block adds all */
        const int grow = a.row_start[mi] + row0;
#pragma unroll
        for (int r = 0; r < MV_RPW; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == r * NT + t && rv[r] && t < a.n_tok)
                    a.part[((size_t)blockIdx.y * 8 + t) * a.total_rows + grow + r] = acc[r][t];
        if (a.xmode == GGX_CUDA_X_RMS_NORM && threadIdx.x < NT)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t == (int)threadIdx.x) a.part_ss[((size_t)blockIdx.y * 8 + t) * gridDim.x + blockIdx.x] = ss[t];
        if (!ggx_cuda_last_split(&a.counters[blockIdx.x], (int)gridDim.y)) return;
#pragma unroll
        for (int r = 0; r < MV_RPW; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == r * NT + t && rv[r] && t < a.n_tok) {
                    float v = 0.0f;
                    for (int y = 0; y < (int)gridDim.y; y++)
                        v += __ldcg(&a.part[((size_t)y * 8 + t) * a.total_rows + grow + r]);
                    acc[r][t] = v;
                }
        if (a.xmode == GGX_CUDA_X_RMS_NORM)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float v = 0.0f;
                for (int y = 0; y < (int)gridDim.y; y++)
                    v += __ldcg(&a.part_ss[((size_t)y * 8 + t) * gridDim.x + blockIdx.x]);
                ss[t] = v;
            }
        if (threadIdx.x == 0) a.counters[blockIdx.x] = 0;
    }
    float inv[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        inv[t] = a.xmode == GGX_CUDA_X_RMS_NORM ? 1.0f / sqrtf(ss[t] / (float)a.cols + a.eps) : 1.0f;
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (lane == r * NT + t && rv[r] && t < a.n_tok) {
                /* mv_store's arithmetic written out: calling it cost mvq_kernel<q8_0, 1> a spill */
                float v = acc[r][t] * inv[t];
                if (a.epi[mi]) {
                    const float c = a.cap[mi];
                    v += a.bias[mi] ? a.bias[mi][row0 + r] : 0.0f;
                    v = ggx_cuda_soft_cap_v(v, c);
                }
                if (a.res[mi]) v += a.res[mi][(size_t)t * rows + row0 + r];
                a.y[mi][(size_t)t * rows + row0 + r] = v;
            }
}

/* mv_kernel / mvq_kernel: blocks past the main grid compute one side row each (true: the caller
 * returns). Split-K grids: only blockIdx.y == 0 works. */
template <int NT>
__device__ __forceinline__ bool mv_side_block(const MvLaunch &a) {
    if ((int)blockIdx.x < a.side_block0) return false;
    GGX_PDL_ENTER();
    if (blockIdx.y == 0) mv_side_row<NT>(a, (int)blockIdx.x - a.side_block0);
    return true;
}

/* SIDE: the launch has side rows (a separate instantiation: the side branch costs the main path
 * registers) */
template <int T, int NT, bool SIDE = false>
__global__ void __launch_bounds__(MV_WARPS * 32, NT > 2 ? 2 : (T == GGX_TYPE_Q8_0 || T == GGX_TYPE_Q4_0 || T == GGX_TYPE_Q4_X) ? 3 : 4)
    mv_kernel(const MvLaunch a) {
    if (SIDE && mv_side_block<NT>(a)) return;
    constexpr int MV_RPW = mv_rpw(NT);
    constexpr int MV_ROWS_PER_BLOCK = MV_WARPS * MV_RPW;
    constexpr int W = Tr<T>::W;
    constexpr bool QUANT = T == GGX_TYPE_Q8_0 || T == GGX_TYPE_Q4_0 || T == GGX_TYPE_Q4_X;
    /* q4_x: x = d L[q] + m, so a block's dot is d sum(L[q] x) + m sum(x) */
    constexpr bool QX = T == GGX_TYPE_Q4_X;
    /* x is staged in shared memory one K tile at a time (all warps of the block share it; read
     * straight from global memory, lanes 16*W bytes apart would touch 32 cache lines per load).
     * CPL chunks per lane per tile; the tile's x takes NT * TE * 4 <= 32 KB. */
    constexpr int CPL_X = (8192 / NT) / (32 * W);
    constexpr int CPL = CPL_X < 1 ? 1 : (CPL_X > 4 ? 4 : CPL_X);
    constexpr int TE = CPL * 32 * W; /* tile elements */
    __shared__ float4 xs[NT][TE / 4];

    int mi = 0;
#pragma unroll 1
    while (mi + 1 < a.n_mats && (int)blockIdx.x >= a.block_start[mi + 1]) mi++;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = ((int)blockIdx.x - a.block_start[mi]) * MV_ROWS_PER_BLOCK + warp * MV_RPW;
    const int rows = a.rows[mi];
    const int cols = a.cols;
    const int n_chunks = cols / W;
    const uint8_t *w = a.w[mi];
    const size_t row_bytes = (size_t)n_chunks * 16;
    const uint8_t *sc = QUANT ? w + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols) : nullptr;
    const int64_t blocks_per_row = cols / 32;

    float acc[MV_RPW][NT], ss[NT];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
#pragma unroll
    for (int t = 0; t < NT; t++) ss[t] = 0.0f;
    bool rv[MV_RPW];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++) rv[r] = row0 + r < rows;

    const int ch0 = (int)blockIdx.y * a.cps;
    const int ch1 = ch0 + a.cps < n_chunks ? ch0 + a.cps : n_chunks;
    const int k_end = ch1 * W;
    for (int tb = ch0 * W; tb < k_end; tb += TE) {
        /* 1. this tile's weights: CPL * RPW independent 16-byte loads in flight */
        uint4 raw[CPL][MV_RPW];
        float d[CPL][MV_RPW], mo[QX ? CPL : 1][QX ? MV_RPW : 1];
        const int cbase = tb / W;
#pragma unroll
        for (int u = 0; u < CPL; u++) {
            const int c = cbase + 32 * u + lane;
            const int cc = c < ch1 ? c : ch1 - 1;
#pragma unroll
            for (int r = 0; r < MV_RPW; r++) {
                const int rr = rv[r] ? row0 + r : (rows - 1);
                raw[u][r] = __ldcs(reinterpret_cast<const uint4 *>(w + (size_t)rr * row_bytes) + cc);
                d[u][r] = chunk_scale<T>(sc, (int64_t)rr * blocks_per_row, cc);
                if constexpr (QX) mo[u][r] = chunk_min_q4x(sc, (int64_t)rr * blocks_per_row, cc);
            }
        }
        /* PDL: the weights above were read while the previous kernel was still running */
        if (tb == ch0 * W) GGX_PDL_ENTER();
        /* 2. stage x[:, tb:tb+TE] */
        __syncthreads(); /* the previous tile's readers are done */
        for (int i = threadIdx.x; i < NT * (TE / 4); i += MV_WARPS * 32) {
            const int t = i / (TE / 4), f4 = i % (TE / 4), e = tb + 4 * f4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (t < a.n_tok && e < k_end) v = mv_x4<NT>(a, t, e, ss);
            xs[t][swz(f4)] = v;
        }
        __syncthreads();
        /* 3. multiply */
#pragma unroll
        for (int u = 0; u < CPL; u++) {
            const int cl = 32 * u + lane; /* chunk within the tile */
            if (cbase + cl >= ch1) break;
            float part[MV_RPW][NT], px[QX ? NT : 1];
#pragma unroll
            for (int r = 0; r < MV_RPW; r++)
#pragma unroll
                for (int t = 0; t < NT; t++) part[r][t] = 0.0f;
#pragma unroll
            for (int t = 0; t < (QX ? NT : 1); t++) px[t] = 0.0f;
#pragma unroll
            for (int g = 0; g < W / 4; g++) {
                float f[MV_RPW][4];
#pragma unroll
                for (int r = 0; r < MV_RPW; r++) decode4<T>(raw[u][r], g, f[r]);
                const int slot = swz(cl * (W / 4) + g);
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t < a.n_tok) {
                        const float4 xv = xs[t][slot];
                        if constexpr (QX) px[t] += (xv.x + xv.y) + (xv.z + xv.w);
#pragma unroll
                        for (int r = 0; r < MV_RPW; r++) {
                            part[r][t] = fmaf(f[r][0], xv.x, part[r][t]);
                            part[r][t] = fmaf(f[r][1], xv.y, part[r][t]);
                            part[r][t] = fmaf(f[r][2], xv.z, part[r][t]);
                            part[r][t] = fmaf(f[r][3], xv.w, part[r][t]);
                        }
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < MV_RPW; r++)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    acc[r][t] = fmaf(d[u][r], part[r][t], acc[r][t]);
                    if constexpr (QX) acc[r][t] = fmaf(mo[u][r], px[t], acc[r][t]);
                }
        }
    }
    ggx_pdl_wait(); /* (no-op after the first tile's; split-K scratch is shared state) */
    mv_prefetch(a);
    mv_finish<MV_RPW, NT>(a, acc, rv, mi, row0, rows, lane, ss);
}

/* ---------------------------------------------------------------------------------------
 * q8_0 / q4_0 with int8 activations (GGX_CUDA_INT8_X=1; off by default: the default is the
 * exact f32 path above). Numerically what the CPU backend and ggml do: x is quantized per
 * 32-block (scale amax/127), each 16-byte chunk of weights then takes 4 (q8_0) or 8 (q4_0)
 * dp4a instructions instead of 16-32 conversions and FMAs (~4e-3 relative error on a dot
 * product). Cost per weight matters: at batch 1 the f32 path issued ~4 instructions per weight
 * and could not keep up with the memory (7B q4_0 decode at 36% of the bandwidth floor).
 *
 * Per block: MVQ_WARPS warps x MVQ_RPW rows each. The block's whole K range (its split) of x is
 * quantized once into shared memory (8 lanes per 32-block: one float4 each, amax and sum by
 * shuffles), then the K loop runs without barriers, with the next 16-byte chunk of every row
 * loaded before the current one is multiplied (double-buffered in registers). The first
 * chunks are loaded before the PDL wait, i.e. while the previous kernel still runs.
 */
template <int T, int NT, bool SIDE = false>
__global__ void __launch_bounds__(MVQ_WARPS * 32, NT <= 2 && T != GGX_TYPE_Q4_X ? 3 : 2) mvq_kernel(const MvLaunch a) {
    if (SIDE && mv_side_block<NT>(a)) return;
    constexpr int R = mvq_rpw(NT);
    constexpr int W = Tr<T>::W; /* 16 (q8_0) or 32 (q4_0) weights per chunk */
    /* shared: per token, the split's x as int8 (16 per int4 slot, swizzled), then per 32-block
     * float2 {d_x, 8 * d_x * sum(q_x)} (the second is q4_0's offset) */
    extern __shared__ int4 mvq_smem[];

    int mi = 0;
#pragma unroll 1
    while (mi + 1 < a.n_mats && (int)blockIdx.x >= a.block_start[mi + 1]) mi++;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = ((int)blockIdx.x - a.block_start[mi]) * (MVQ_WARPS * R) + warp * R;
    const int rows = a.rows[mi];
    const int cols = a.cols;
    const int n_chunks = cols / W;
    const uint8_t *w = a.w[mi];
    const size_t row_bytes = (size_t)n_chunks * 16;
    const __half *sc = reinterpret_cast<const __half *>(w + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols));
    const int64_t bpr = cols / 32;

    bool rv[R];
    int rr[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rv[r] = row0 + r < rows;
        rr[r] = rv[r] ? row0 + r : rows - 1;
    }
    const int ch0 = (int)blockIdx.y * a.cps;
    const int ch1 = ch0 + a.cps < n_chunks ? ch0 + a.cps : n_chunks;
    const int e0 = ch0 * W, ne = (ch1 - ch0) * W; /* this split's x elements */
    const int nes = a.cps * W;                     /* ... and the per-token stride in smem */

    /* 1. the first chunk of every row, before the PDL wait */
    uint4 raw[R];
    typename MvqScale<T>::type d[R];
    int c = ch0 + lane;
    mvq_load<T, R>(raw, d, w, sc, rr, row_bytes, bpr, c < ch1 ? c : ch1 - 1);
    GGX_PDL_ENTER();
    float ss[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) ss[t] = 0.0f;

    /* 2. quantize x[:, e0:e0+ne] into shared memory */
    int4 *xq = mvq_smem;                                                    /* [NT][nes / 16] */
    float2 *xs = reinterpret_cast<float2 *>(mvq_smem + (size_t)NT * (nes / 16)); /* [NT][nes / 32] */
    mvq_stage_x<NT>(a, e0, ne, nes, xq, xs, ss, warp, lane);
    __syncthreads();

    /* 3. the K loop: chunk c = ch0 + lane + 32 * j */
    float acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    for (; c - lane < ch1; c += 32) {
        const uint4 *cur = raw;
        uint4 q[R];
        typename MvqScale<T>::type dw[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            q[r] = cur[r];
            dw[r] = d[r];
        }
        const int cn = c + 32;
        if (cn - lane < ch1) mvq_load<T, R>(raw, d, w, sc, rr, row_bytes, bpr, cn < ch1 ? cn : ch1 - 1);
        if (c >= ch1) continue; /* this lane's share of the last stride ran out */
        const int cl = c - ch0; /* chunk within the split */
        mvq_dot<T, R, NT>(q, dw, xq, xs, nes, cl, a.n_tok, acc);
    }
    mv_prefetch(a);
    mv_finish<R, NT>(a, acc, rv, mi, row0, rows, lane, ss);
}

/* ---------------------------------------------------------------------------------------
 * mvt_kernel (sm_90): mvq_kernel's arithmetic in a persistent grid (2 blocks per SM by default)
 * whose weights arrive through a ring of shared-memory stages filled by the Tensor Memory
 * Accelerator (cp.async.bulk: one instruction per tile, no registers held).
 *
 * Why: at 7B batch 1 the one-shot kernels stream at 20-55% of the DRAM bandwidth (ncu): every
 * block pays its own start (x staging after the PDL wait, then a register double buffer of 64
 * bytes per lane), and a launch of 384-684 such blocks runs in uneven waves. Here each block
 * stages x once (whole K, int8 like mvq_kernel), and keeps its budget of weights in flight
 * (100 KB by default, ~200 KB per SM): the first stages are requested before the PDL wait,
 * i.e. while the previous kernel finishes.
 *
 * A tile is RB = 8 R rows x the whole K (no split-K, no partial sums): its quants are one
 * contiguous range (rows are contiguous in the repacked layout), its scales another, copied
 * from the 16-byte boundary at or below their start to the one at or above their end (bulk
 * copies need 16-byte aligned addresses and sizes; weight buffers are padded by 16 bytes,
 * ggx_cuda_weight_bytes). Block b takes tiles b, b + G, b + 2G ... (G = gridDim.x); stage
 * j % S holds its j-th tile; one mbarrier per stage (phase = use parity); after computing a
 * tile the block syncs and thread 0 requests tile j + S into the freed stage. Warp w owns rows
 * w R .. w R + R - 1 of a tile; the epilogue is mv_finish's arithmetic (norm scale, then
 * mv_store: soft cap, residual).
 * Rows past a matrix's end are not copied: computed from stale data and never stored.
 */

struct MvtGeom {
    int rb;         /* rows per tile */
    int n_tiles;    /* over all matrices (a.block_start numbers tiles) */
    int stages;
    size_t q_bytes; /* per stage: quants of rb rows, then scales */
    size_t stage_bytes;
};

template <int T, int NT, int R>
__global__ void __launch_bounds__(MVQ_WARPS * 32, 1) mvt_kernel(const MvLaunch a, const MvtGeom g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int W = Tr<T>::W;
    constexpr int RB = MVQ_WARPS * R;
    constexpr bool Q4 = T == GGX_TYPE_Q4_0;
    extern __shared__ int4 mvq_smem[];
    __shared__ __align__(8) uint64_t bar[MVT_MAX_STAGES];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int cols = a.cols;
    const int n_chunks = cols / W;
    const size_t row_bytes = (size_t)n_chunks * 16;
    const int64_t bpr = cols / 32;
    const size_t sc_row = (size_t)bpr * ggx_cuda_sc_bytes((enum ggx_type)T); /* scale bytes per row */
    const int nes = (cols + 127) / 128 * 128; /* x slots: whole swizzle groups */
    int4 *xq = mvq_smem;
    float2 *xs = reinterpret_cast<float2 *>(mvq_smem + (size_t)NT * (nes / 16));
    uint8_t *stage0 = reinterpret_cast<uint8_t *>(mvq_smem + (size_t)NT * (nes / 16 + nes / 64));

    /* tile -> (matrix, first row); thread 0 requests tile `tile` into stage st */
    auto issue = [&](int tile, int st) {
        int mi = 0;
        while (mi + 1 < a.n_mats && tile >= a.block_start[mi + 1]) mi++;
        const int rows = a.rows[mi];
        const int r0 = (tile - a.block_start[mi]) * RB;
        const int nr = rows - r0 < RB ? rows - r0 : RB;
        const uint8_t *w = a.w[mi];
        const uint8_t *sc = w + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols);
        const size_t s0 = (size_t)r0 * sc_row, a0 = s0 & ~(size_t)15;
        const size_t a1 = (s0 + (size_t)nr * sc_row + 15) & ~(size_t)15;
        const uint32_t qb = (uint32_t)((size_t)nr * row_bytes), sb = (uint32_t)(a1 - a0);
        uint8_t *dst = stage0 + (size_t)st * g.stage_bytes;
        const uint32_t b = smem_addr(&bar[st]);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(qb + sb) : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         smem_addr(dst)),
                     "l"(w + (size_t)r0 * row_bytes), "r"(qb), "r"(b)
                     : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         smem_addr(dst + g.q_bytes)),
                     "l"(sc + a0), "r"(sb), "r"(b)
                     : "memory");
    };

    /* 1. before the PDL wait: the first S tiles (weights only; nothing of this step) */
    const int G = (int)gridDim.x;
    if (tid == 0) {
        for (int st = 0; st < g.stages; st++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar[st])) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int st = 0; st < g.stages && (int)blockIdx.x + st * G < g.n_tiles; st++) issue((int)blockIdx.x + st * G, st);
    }
    /* 2. x, the previous kernel's output: quantized once, whole K */
    GGX_PDL_ENTER();
    float ss[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) ss[t] = 0.0f;
    mvq_stage_x<NT>(a, 0, cols, nes, xq, xs, ss, warp, lane);
    __syncthreads();
    mv_block_ss<NT>(a, ss);
    float inv[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        inv[t] = a.xmode == GGX_CUDA_X_RMS_NORM ? 1.0f / sqrtf(ss[t] / (float)cols + a.eps) : 1.0f;
    /* side rows (the gates): blocks 0.. one each, while their first tiles arrive */
    if ((int)blockIdx.x < a.side_rows) mv_side_row<NT>(a, (int)blockIdx.x);

    /* 3. the tiles */
    for (int j = 0;; j++) {
        const int tile = (int)blockIdx.x + j * G;
        if (tile >= g.n_tiles) break;
        const int st = j % g.stages;
        const uint32_t par = (uint32_t)(j / g.stages) & 1u;
        asm volatile("{\n\t.reg .pred p;\n"
                     "MVT_WAIT:\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                     "@!p bra MVT_WAIT;\n}" ::"r"(smem_addr(&bar[st])),
                     "r"(par)
                     : "memory");
        int mi = 0;
        while (mi + 1 < a.n_mats && tile >= a.block_start[mi + 1]) mi++;
        const int rows = a.rows[mi];
        const int r0 = (tile - a.block_start[mi]) * RB;
        const uint8_t *stg = stage0 + (size_t)st * g.stage_bytes;
        const uint4 *wq = reinterpret_cast<const uint4 *>(stg);
        const __half *scs = reinterpret_cast<const __half *>(stg + g.q_bytes + (((size_t)r0 * sc_row) & 15));

        float acc[R][NT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
#pragma unroll 4
        for (int cl = lane; cl < n_chunks; cl += 32) {
            uint4 q[R];
            typename MvqScale<T>::type dw[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int lr = warp * R + r;
                q[r] = wq[(size_t)lr * n_chunks + cl];
                if constexpr (T == GGX_TYPE_Q4_X)
                    dw[r] = __half22float2(reinterpret_cast<const __half2 *>(scs)[(size_t)lr * bpr + cl]);
                else
                    dw[r] = __half2float(scs[(size_t)lr * bpr + (Q4 ? cl : cl >> 1)]);
            }
            mvq_dot<T, R, NT>(q, dw, xq, xs, nes, cl, a.n_tok, acc);
        }
        __syncthreads(); /* every warp is done with stage st */
        if (tid == 0 && tile + g.stages * G < g.n_tiles) issue(tile + g.stages * G, st);
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = warp_sum(acc[r][t]);
        const int row0 = r0 + warp * R;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == r * NT + t && row0 + r < rows && t < a.n_tok)
                    mv_store(a, mi, row0 + r, rows, t, acc[r][t] * inv[t]);
    }
    if (tid == 0) pf_issue(a.pf, blockIdx.x, gridDim.x);
#endif
}

/* dynamic shared memory of mvq_kernel for a split of cps chunks */
template <int T> size_t mvq_smem_bytes(int nt_tmpl, int cps) {
    const size_t ne = (size_t)cps * Tr<T>::W;
    return (size_t)nt_tmpl * (ne + ne / 32 * sizeof(float2));
}

/* q8_0/q4_0 matvecs with int8 x (dp4a, mvq_kernel): 0 never, 1 always, 2 (default) for 1-2
 * tokens, where it was measured faster (7B decode on the H100, batch 1: q4_0 3.10 vs 3.65
 * ms/step, q8_0 4.18 vs 4.42; at batch 8 the f32 path was faster, 11.3 vs 13.5) */
int g_int8_x = 2;
float *g_part;     /* split-K partials [MV_MAX_SPLIT][8][MV_PART_ROWS] */
int *g_counters;   /* [MV_PART_ROWS] zeroed */
float *g_part_ss;  /* RMS_NORM split-K sums of squares [MV_MAX_SPLIT][8][MV_PART_SS_COLS] */
/* MV_PART_ROWS: a launch splits K only with fewer than MV_FULL_BLOCKS row blocks, i.e. at most
 * 1024 x 16 rows for mv_kernel and 384 x 32 for mvq_kernel (its default; GGX_CUDA_MVQ_FULL
 * launches with more rows run unsplit); was 65536 rows: 16.8 MB, now 4.2 */
constexpr int MV_MAX_SPLIT = 8, MV_PART_ROWS = 16384;
constexpr int MV_FULL_BLOCKS = 1024; /* launches with fewer row blocks split K ... */
/* (indexed by gridDim.x: the row blocks plus the side rows' blocks) */
constexpr int MV_PART_SS_COLS = MV_FULL_BLOCKS + GGX_CUDA_MV_MAX_SIDE * GGX_CUDA_MV_SIDE_ROWS;
int g_full_blocks = MV_FULL_BLOCKS;  /* ... up to this many (GGX_CUDA_MV_FULL=N, <= 1024) */
/* 16-bit weights (bf16, f16): 512, so that the 7B's q/k/v/o launch (768 row blocks) runs unsplit.
 * Measured, 7B bf16 decode batch 1, H100: sessions 7 and 8, 5 of 6 alternating pairs 1-2.4%
 * faster (e.g. 5.210 / 5.320 vs 5.341 / 5.399 ms/step with the deferred C stores) */
int g_full_blocks_16 = 512;
/* mvq_kernel: about one wave of resident blocks (132 SMs x 3). Measured, 7B decode batch 1,
 * H100, three alternating runs: q4_0 2.87-2.97 ms/step vs 3.04-3.47 with 1024, q8_0 4.01-4.36
 * vs 4.20-4.21 (fewer blocks stage x and reduce partial sums) (GGX_CUDA_MVQ_FULL=N) */
int g_full_blocks_q = 384;

/* mvt_kernel (sm_90) at 1-2 tokens, GGX_CUDA_MVT: 0 off, 1 (default) the 4-bit types (q4_0, q4_x
 * where its int8 x applies: 1 token), 2 also q8_0.
 * Measured, 7B batch 1 on the H100 (docs/benchmarks.md, "CUDA decode, session 4"): q4_0 2.70-2.75
 * vs 2.86-2.90 ms/step for mvq_kernel; q8_0 4.11 vs 3.96-4.01 (slower: left to mvq_kernel).
 * g_mvt_smem: shared memory budget per block (GGX_CUDA_MVT_SMEM, bytes); g_mvt_grid: blocks
 * (GGX_CUDA_MVT_GRID; default 2 per SM: 100 KB x 2 per SM beat 200 KB x 1, 72 KB x 3, 54 KB x 4) */
int g_mvt = 0, g_mvt_ok = 0; /* mode; supported (sm_90, shared memory opt-in done) */
int g_mvt_smem = 100 * 1024, g_mvt_grid = 264;

int g_n_sm = 0; /* (set by ggx_cuda_mv_init) */

/* the first block of a launch's last wave (main blocks only), by the occupancy of the kernel
 * (its NT = 1 instantiation stands for the others: the same launch bounds) */
int pf_first_block(const void *kernel, int n_main, int threads, size_t smem) {
    /* (a host-side computation, ~1 us; at capture time only when graphs replay the step) */
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) != cudaSuccess || per_sm < 1) {
        (void)cudaGetLastError();
        per_sm = 1;
    }
    const int resident = per_sm * (g_n_sm > 0 ? g_n_sm : 1);
    return n_main > resident ? n_main - resident : 0;
}

/* split K when a launch has too few row blocks to keep every SM streaming (up to 8 ways, in
 * whole warp strides of chunks, at least two strides per split); sets a.cps, returns splits */
int choose_splits(MvLaunch &a, int n_blocks, int n_chunks, int full) {
    int splits = 1;
    if (g_part && a.total_rows <= MV_PART_ROWS && n_blocks < full) {
        splits = full / n_blocks;
        if (splits > MV_MAX_SPLIT) splits = MV_MAX_SPLIT;
        const int max_by_k = n_chunks / 64;
        if (splits > max_by_k) splits = max_by_k > 1 ? max_by_k : 1;
    }
    int cps = (n_chunks + splits - 1) / splits;
    cps = (cps + 31) / 32 * 32;
    a.cps = cps;
    a.part = g_part;
    a.part_ss = g_part_ss;
    a.counters = g_counters;
    return (n_chunks + cps - 1) / cps;
}

template <int T>
cudaError_t launch_type(cudaStream_t s, MvLaunch &a, int n_blocks) {
    const int nt = a.n_tok;
    const dim3 grid((unsigned)(n_blocks + a.side_rows),
                     (unsigned)choose_splits(a, n_blocks, a.cols / Tr<T>::W,
                                             Tr<T>::W == 8 ? g_full_blocks_16 : g_full_blocks));
    a.side_block0 = n_blocks;
    if (a.pf.count) a.pf_first = pf_first_block((const void *)mv_kernel<T, 1>, n_blocks * (int)grid.y, MV_WARPS * 32, 0);
    if (nt == 1 && a.n_side) GGX_LAUNCH((mv_kernel<T, 1, true>), grid, MV_WARPS * 32, 0, s, a);
    else if (nt == 2 && a.n_side) GGX_LAUNCH((mv_kernel<T, 2, true>), grid, MV_WARPS * 32, 0, s, a);
    else if (nt == 1) GGX_LAUNCH((mv_kernel<T, 1>), grid, MV_WARPS * 32, 0, s, a);
    else if (nt == 2) GGX_LAUNCH((mv_kernel<T, 2>), grid, MV_WARPS * 32, 0, s, a);
    else if (nt <= 4) GGX_LAUNCH((mv_kernel<T, 4>), grid, MV_WARPS * 32, 0, s, a);
    else GGX_LAUNCH((mv_kernel<T, 8>), grid, MV_WARPS * 32, 0, s, a);
    return cudaSuccess;
}

/* mvq_kernel; false (nothing launched) when the split's staged x would not fit MVQ_SMEM_MAX */
template <int T>
bool launch_mvq(cudaStream_t s, MvLaunch &a, int n_blocks, int nt_tmpl, cudaError_t *err) {
    const int splits = choose_splits(a, n_blocks, a.cols / Tr<T>::W, g_full_blocks_q);
    const size_t smem = mvq_smem_bytes<T>(nt_tmpl, a.cps);
    if (smem > (size_t)MVQ_SMEM_MAX) return false;
    const dim3 grid((unsigned)(n_blocks + a.side_rows), (unsigned)splits);
    a.side_block0 = n_blocks;
    if (a.pf.count) a.pf_first = pf_first_block((const void *)mvq_kernel<T, 1>, n_blocks * splits, MVQ_WARPS * 32, smem);
    *err = [&]() -> cudaError_t {
        if (nt_tmpl == 1 && a.n_side) GGX_LAUNCH((mvq_kernel<T, 1, true>), grid, MVQ_WARPS * 32, smem, s, a);
        else if (nt_tmpl == 2 && a.n_side) GGX_LAUNCH((mvq_kernel<T, 2, true>), grid, MVQ_WARPS * 32, smem, s, a);
        else if (nt_tmpl == 1) GGX_LAUNCH((mvq_kernel<T, 1>), grid, MVQ_WARPS * 32, smem, s, a);
        else if (nt_tmpl == 2) GGX_LAUNCH((mvq_kernel<T, 2>), grid, MVQ_WARPS * 32, smem, s, a);
        else if (nt_tmpl == 4) GGX_LAUNCH((mvq_kernel<T, 4>), grid, MVQ_WARPS * 32, smem, s, a);
        else GGX_LAUNCH((mvq_kernel<T, 8>), grid, MVQ_WARPS * 32, smem, s, a);
        return cudaSuccess;
    }();
    return true;
}

/* block numbering of the matrices of a launch for rows_per_block rows per block; returns the
 * number of row blocks */
int assign_blocks(MvLaunch &a, const ggx_cuda_mv_mat *mats, int n_mats, int rows_per_block) {
    int nb = 0;
    a.total_rows = 0;
    for (int k = 0; k < n_mats; k++) {
        a.block_start[k] = nb;
        a.row_start[k] = a.total_rows;
        a.total_rows += mats[k].rows;
        nb += (mats[k].rows + rows_per_block - 1) / rows_per_block;
    }
    a.block_start[n_mats] = nb;
    return nb;
}

template <int T, int NT, int R> cudaError_t mvt_opt_in(void) {
    return cudaFuncSetAttribute(mvt_kernel<T, NT, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_mvt_smem);
}

/* mvt_kernel; false (nothing launched) when not even two stages of 8 rows fit the shared
 * memory budget (mvq_kernel runs instead). Tiles of 16 rows where one is <= 40 KB (q4_0 at
 * 4096 columns), else 8; as many stages as the budget holds (<= 8). */
template <int T, int NT>
bool launch_mvt(cudaStream_t s, MvLaunch &a, const ggx_cuda_mv_mat *mats, int n_mats, cudaError_t *err) {
    const int cols = a.cols, n_chunks = cols / Tr<T>::W;
    const size_t nes = (size_t)(cols + 127) / 128 * 128;
    const size_t x_bytes = (size_t)NT * (nes + nes / 4);
    const size_t row_q = (size_t)n_chunks * 16, row_s = (size_t)(cols / 32) * ggx_cuda_sc_bytes((enum ggx_type)T);
    const int R = (16 * (row_q + row_s) + MVT_SC_PAD <= 40 * 1024) ? 2 : 1;
    MvtGeom g;
    g.rb = MVQ_WARPS * R;
    g.q_bytes = (size_t)g.rb * row_q;
    g.stage_bytes = (g.q_bytes + (size_t)g.rb * row_s + MVT_SC_PAD + 127) / 128 * 128;
    if (x_bytes + 2 * g.stage_bytes > (size_t)g_mvt_smem) return false;
    g.stages = (int)(((size_t)g_mvt_smem - x_bytes) / g.stage_bytes);
    if (g.stages > MVT_MAX_STAGES) g.stages = MVT_MAX_STAGES;
    g.n_tiles = assign_blocks(a, mats, n_mats, g.rb);
    int grid = g.n_tiles < g_mvt_grid ? g.n_tiles : g_mvt_grid;
    if (grid < a.side_rows) grid = a.side_rows; /* (idle tile loops; never at the 7B shape) */
    const size_t smem = x_bytes + (size_t)g.stages * g.stage_bytes;
    const dim3 gd((unsigned)grid);
    if (R == 2) *err = ggx_cuda_launch(mvt_kernel<T, NT, 2>, gd, dim3(MVQ_WARPS * 32), smem, s, a, g);
    else *err = ggx_cuda_launch(mvt_kernel<T, NT, 1>, gd, dim3(MVQ_WARPS * 32), smem, s, a, g);
    return true;
}

template <int T> cudaError_t mvt_opt_in_all(void) {
    cudaError_t e = cudaSuccess;
    const cudaError_t r[4] = {mvt_opt_in<T, 1, 1>(), mvt_opt_in<T, 1, 2>(), mvt_opt_in<T, 2, 1>(),
                              mvt_opt_in<T, 2, 2>()};
    for (int i = 0; i < 4; i++)
        if (r[i] != cudaSuccess) e = r[i];
    return e;
}

} // namespace

void ggx_cuda_mv_set_int8_x(int mode) { g_int8_x = mode < 0 || mode > 2 ? 2 : mode; }
bool ggx_cuda_mv_int8_x(void) { return g_int8_x == 1; }
int ggx_cuda_mv_int8_mode(void) { return g_int8_x; }
int ggx_cuda_mv_set_tma(int mode) {
    g_mvt = g_mvt_ok && mode >= 1 && mode <= 2 ? mode : 0;
    return g_mvt;
}
int ggx_cuda_mv_tma(void) { return g_mvt; }

cudaError_t ggx_cuda_mv_init(void) {
    if (g_part) return cudaSuccess;
    const char *fb = getenv("GGX_CUDA_MV_FULL");
    if (fb && atoi(fb) >= 1 && atoi(fb) <= MV_FULL_BLOCKS) g_full_blocks = g_full_blocks_16 = atoi(fb);
    const char *fq = getenv("GGX_CUDA_MVQ_FULL");
    if (fq && atoi(fq) >= 1 && atoi(fq) <= MV_FULL_BLOCKS) g_full_blocks_q = atoi(fq);
    int dev = 0, major = 0, optin = 0, n_sm = 0;
    const char *mt = getenv("GGX_CUDA_MVT"), *ms = getenv("GGX_CUDA_MVT_SMEM"), *mg = getenv("GGX_CUDA_MVT_GRID");
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && major >= 9) {
        if (ms && atoi(ms) >= 32768) g_mvt_smem = atoi(ms);
        if (g_mvt_smem > optin - 1024) g_mvt_smem = optin - 1024; /* the static mbarriers */
        g_mvt_grid = mg && atoi(mg) >= 1 ? atoi(mg) : 2 * n_sm;
        g_n_sm = n_sm;
        g_mvt_ok = mvt_opt_in_all<GGX_TYPE_Q8_0>() == cudaSuccess && mvt_opt_in_all<GGX_TYPE_Q4_0>() == cudaSuccess &&
                   mvt_opt_in_all<GGX_TYPE_Q4_X>() == cudaSuccess;
        ggx_cuda_mv_set_tma(mt ? atoi(mt) : 1);
    }
    (void)cudaGetLastError();
    ggx_cuda_pk_init();
    cudaError_t e = cudaMalloc(&g_part, sizeof(float) * MV_MAX_SPLIT * 8 * MV_PART_ROWS);
    if (e == cudaSuccess) e = cudaMalloc(&g_counters, sizeof(int) * MV_PART_ROWS);
    if (e == cudaSuccess) e = cudaMalloc(&g_part_ss, sizeof(float) * MV_MAX_SPLIT * 8 * MV_PART_SS_COLS);
    if (e == cudaSuccess) e = cudaMemset(g_counters, 0, sizeof(int) * MV_PART_ROWS);
    if (e != cudaSuccess) {
        cudaFree(g_part);
        cudaFree(g_counters);
        cudaFree(g_part_ss);
        g_part_ss = nullptr;
        g_part = nullptr;
        g_counters = nullptr;
    }
    return e;
}

bool ggx_cuda_mv_supported(enum ggx_type t, int64_t cols) {
    switch (t) {
    case GGX_TYPE_F32: return cols % 4 == 0;
    case GGX_TYPE_F16:
    case GGX_TYPE_BF16: return cols % 8 == 0;
    case GGX_TYPE_Q8_0:
    case GGX_TYPE_Q4_0:
    case GGX_TYPE_Q4_X: return cols % 32 == 0;
    default: return false;
    }
}

cudaError_t ggx_cuda_mv(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                        const float *x, const float *xb, int xmode, int cols, int n_tok) {
    if (n_mats < 1 || n_mats > GGX_CUDA_MV_MAX_MATS || n_tok < 1) return cudaErrorInvalidValue;
    if (ggx_cuda_mmq_supported(t, cols, n_tok))
        return ggx_cuda_mmq(s, t, mats, n_mats, x, xb, xmode, cols, n_tok);
    ggx_cuda_mv_x xs = {x, xb, nullptr, xmode, 0.0f, nullptr, 0, nullptr};
    return ggx_cuda_mv_ex(s, t, mats, n_mats, &xs, cols, n_tok);
}

/* Small f32 matrices (the mLSTM gates: NH rows each) over many tokens, plain x: one launch, a
 * block per (row, 8 tokens); each thread one float4 of the row per step with the 8 tokens' x
 * (from L2), then block sums and the soft-cap epilogue. Replaces, from 17 tokens, two cuBLAS
 * SGEMMs and two soft-cap launches per layer (21 us of a batch-32 step's layer on the H100). */
struct SmallF32 {
    ggx_cuda_mv_mat m[GGX_CUDA_MV_MAX_MATS]; /* f32 weights, outputs, epilogues */
    int n_mats;
    const float *x;
    int cols, n_tok;
};

__global__ void __launch_bounds__(256) small_f32_kernel(const SmallF32 a) {
    GGX_PDL_ENTER();
    __shared__ float red[8][8];
    int r = (int)blockIdx.x, mi = 0;
    while (mi + 1 < a.n_mats && r >= a.m[mi].rows) r -= a.m[mi++].rows;
    const ggx_cuda_mv_mat &m = a.m[mi];
    const int t0 = (int)blockIdx.y * 8, nt = a.n_tok - t0 < 8 ? a.n_tok - t0 : 8;
    const float *w = static_cast<const float *>(m.w) + (size_t)r * a.cols;
    float acc[8];
#pragma unroll
    for (int t = 0; t < 8; t++) acc[t] = 0.0f;
    for (int e = 4 * (int)threadIdx.x; e < a.cols; e += 4 * 256) {
        const float4 wv = __ldg(reinterpret_cast<const float4 *>(w + e));
#pragma unroll
        for (int t = 0; t < 8; t++)
            if (t < nt) {
                const float4 xv = __ldg(reinterpret_cast<const float4 *>(a.x + (size_t)(t0 + t) * a.cols + e));
                acc[t] = fmaf(wv.x, xv.x, acc[t]);
                acc[t] = fmaf(wv.y, xv.y, acc[t]);
                acc[t] = fmaf(wv.z, xv.z, acc[t]);
                acc[t] = fmaf(wv.w, xv.w, acc[t]);
            }
    }
    const int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < 8; t++) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[warp][t] = v;
    }
    __syncthreads();
    if (threadIdx.x < (unsigned)nt) {
        const int t = (int)threadIdx.x;
        float v = 0.0f;
        for (int q = 0; q < 8; q++) v += red[q][t];
        if (m.epi) {
            v += m.bias ? m.bias[r] : 0.0f;
            v = ggx_cuda_soft_cap_v(v, m.cap);
        }
        m.y[(size_t)(t0 + t) * m.rows + r] = v;
    }
}

bool ggx_cuda_mv_small_f32(int64_t rows, int64_t cols, int n_tok) {
    static const bool on = [] { /* GGX_CUDA_SMALL_F32=0: cuBLAS as before (A/B runs) */
        const char *e = getenv("GGX_CUDA_SMALL_F32");
        return !(e && e[0] == '0');
    }();
    return on && rows >= 1 && rows <= GGX_CUDA_MV_SIDE_ROWS && cols % 4 == 0 && n_tok > 16 && n_tok <= 64;
}

cudaError_t ggx_cuda_mv_ex(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                           const ggx_cuda_mv_x *xs, int cols, int n_tok) {
    if (n_mats < 1 || n_mats > GGX_CUDA_MV_MAX_MATS || n_tok < 1) return cudaErrorInvalidValue;
    if (xs->mode == GGX_CUDA_X_RMS_NORM && (cols % 4 || !xs->c))
        return cudaErrorInvalidValue; /* the backend checks these before fusing */
    /* while the backend records a decode step: queued for the persistent kernel (int8 x) */
    if (g_int8_x != 0 && ggx_cuda_pk_add_mv(t, mats, n_mats, xs, cols, n_tok))
        return cudaSuccess;
    bool small = t == GGX_TYPE_F32 && xs->mode == GGX_CUDA_X_PLAIN && xs->n_side == 0;
    int total = 0;
    for (int k = 0; k < n_mats && small; k++) {
        small = ggx_cuda_mv_small_f32(mats[k].rows, cols, n_tok) && !mats[k].res;
        total += mats[k].rows;
    }
    if (small) {
        SmallF32 a;
        memset(&a, 0, sizeof a);
        memcpy(a.m, mats, sizeof(ggx_cuda_mv_mat) * (size_t)n_mats);
        a.n_mats = n_mats;
        a.x = xs->a;
        a.cols = cols;
        a.n_tok = n_tok;
        GGX_LAUNCH(small_f32_kernel, dim3((unsigned)total, (unsigned)((n_tok + 7) / 8)), 256, 0, s, a);
        return cudaGetLastError();
    }
    const float *x = xs->a, *xb = xs->b;
    const int xmode = xs->mode;
    /* the kernel handles up to 8 tokens at a time: more tokens = more passes over the weights */
    for (int t0 = 0; t0 < n_tok; t0 += 8) {
        MvLaunch a;
        memset(&a, 0, sizeof a);
        a.n_mats = n_mats;
        a.x = x + (size_t)t0 * cols;
        a.xb = xb ? xb + (size_t)t0 * cols : nullptr;
        a.xc = xs->c;
        a.xmode = xmode;
        a.eps = xs->eps;
        a.cols = cols;
        a.n_tok = n_tok - t0 < 8 ? n_tok - t0 : 8;
        const int nt_tmpl = a.n_tok == 1 ? 1 : a.n_tok == 2 ? 2 : a.n_tok <= 4 ? 4 : 8;
        if (xs->n_side > 0) {
            if (n_tok > 2 || xs->n_side > GGX_CUDA_MV_MAX_SIDE || cols % 4) return cudaErrorInvalidValue;
            a.n_side = xs->n_side;
            for (int k = 0; k < xs->n_side; k++) {
                const ggx_cuda_mv_mat &m = xs->side[k];
                if (m.rows < 1 || m.rows > GGX_CUDA_MV_SIDE_ROWS || m.res) return cudaErrorInvalidValue;
                a.sw[k] = static_cast<const float *>(m.w);
                a.sy[k] = m.y;
                a.srows[k] = m.rows;
                a.sepi[k] = m.epi;
                a.scap[k] = m.cap;
                a.sbias[k] = m.bias;
                a.side_rows += m.rows;
            }
        }
        for (int k = 0; k < n_mats; k++) {
            a.w[k] = static_cast<const uint8_t *>(mats[k].w);
            a.y[k] = mats[k].y + (size_t)t0 * mats[k].rows;
            a.rows[k] = mats[k].rows;
            a.epi[k] = mats[k].epi;
            a.cap[k] = mats[k].cap;
            a.bias[k] = mats[k].bias;
            a.res[k] = mats[k].res ? mats[k].res + (size_t)t0 * mats[k].rows : nullptr;
        }
        if (xs->pf && t0 + 8 >= n_tok) a.pf = *xs->pf; /* the last pass: right before the next launch */
        cudaError_t e;
        /* int8 x for this token count (q4_x: mode 2 at 1 token only; its 2-token mvq_kernel
         * needs 2 blocks per SM and was slower than the f32 one: 7B B=2 6.09 vs 5.61 ms/step) */
        const bool int8_ok = g_int8_x == 1 || (g_int8_x == 2 && a.n_tok <= (t == GGX_TYPE_Q4_X ? 1 : 2));
        if (g_mvt && a.n_tok <= 2 && int8_ok &&
            (t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X || (g_mvt == 2 && t == GGX_TYPE_Q8_0))) {
            bool done;
            if (t == GGX_TYPE_Q8_0)
                done = nt_tmpl == 1 ? launch_mvt<GGX_TYPE_Q8_0, 1>(s, a, mats, n_mats, &e)
                                    : launch_mvt<GGX_TYPE_Q8_0, 2>(s, a, mats, n_mats, &e);
            else if (t == GGX_TYPE_Q4_X)
                done = nt_tmpl == 1 ? launch_mvt<GGX_TYPE_Q4_X, 1>(s, a, mats, n_mats, &e)
                                    : launch_mvt<GGX_TYPE_Q4_X, 2>(s, a, mats, n_mats, &e);
            else
                done = nt_tmpl == 1 ? launch_mvt<GGX_TYPE_Q4_0, 1>(s, a, mats, n_mats, &e)
                                    : launch_mvt<GGX_TYPE_Q4_0, 2>(s, a, mats, n_mats, &e);
            if (done) {
                if (e != cudaSuccess) return e;
                continue;
            }
        }
        if (int8_ok && (t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X)) {
            const int nbq = assign_blocks(a, mats, n_mats, MVQ_WARPS * mvq_rpw(nt_tmpl));
            const bool done = t == GGX_TYPE_Q8_0   ? launch_mvq<GGX_TYPE_Q8_0>(s, a, nbq, nt_tmpl, &e)
                              : t == GGX_TYPE_Q4_0 ? launch_mvq<GGX_TYPE_Q4_0>(s, a, nbq, nt_tmpl, &e)
                                                   : launch_mvq<GGX_TYPE_Q4_X>(s, a, nbq, nt_tmpl, &e);
            if (done) {
                if (e != cudaSuccess) return e;
                continue;
            }
        }
        const int nb = assign_blocks(a, mats, n_mats, MV_WARPS * mv_rpw(nt_tmpl));
        switch (t) {
        case GGX_TYPE_F32: e = launch_type<GGX_TYPE_F32>(s, a, nb); break;
        case GGX_TYPE_F16: e = launch_type<GGX_TYPE_F16>(s, a, nb); break;
        case GGX_TYPE_BF16: e = launch_type<GGX_TYPE_BF16>(s, a, nb); break;
        case GGX_TYPE_Q8_0: e = launch_type<GGX_TYPE_Q8_0>(s, a, nb); break;
        case GGX_TYPE_Q4_0: e = launch_type<GGX_TYPE_Q4_0>(s, a, nb); break;
        case GGX_TYPE_Q4_X: e = launch_type<GGX_TYPE_Q4_X>(s, a, nb); break;
        default: return cudaErrorInvalidValue;
        }
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
