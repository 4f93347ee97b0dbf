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

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

constexpr int MV_WARPS = 8;  /* warps per block */
/* rows per warp: each x value read from shared memory serves RPW rows */
__host__ __device__ constexpr int mv_rpw(int) { return 2; } /* 4 was slower for 4-8 tokens (measured) */

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
    const float *x, *xb;
    int xmode;
    /* split-K (gridDim.y = splits > 1): each split covers chunks [y*cps, (y+1)*cps); partial sums
     * go to part [splits][8][total_rows]; the last split block of a row block adds them in a
     * fixed order (deterministic) and writes y */
    int cps;
    int total_rows;
    float *part;
    int *counters;
    int cols;
    int n_tok;
};

/* weights per 16-byte chunk */
template <int T> struct Tr;
template <> struct Tr<GGX_TYPE_F32> { static constexpr int W = 4; };
template <> struct Tr<GGX_TYPE_F16> { static constexpr int W = 8; };
template <> struct Tr<GGX_TYPE_BF16> { static constexpr int W = 8; };
template <> struct Tr<GGX_TYPE_Q8_0> { static constexpr int W = 16; };
template <> struct Tr<GGX_TYPE_Q4_0> { static constexpr int W = 32; };

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

template <int T> __device__ __forceinline__ float chunk_scale(const uint8_t *, int64_t, int64_t) {
    return 1.0f;
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

/* float4 slot of x in shared memory: XOR-swizzled so that the 8 lanes of a quarter-warp, which
 * read float4 number l*(W/4) + g (lane l, group g), hit 8 different bank groups */
__device__ __forceinline__ int swz(int f4) { return f4 ^ ((f4 >> 3) & 7); }

/* same arithmetic as the standalone SWIGLU / SIGMOID_MUL kernels (cuda_ops.cu) */
__device__ __forceinline__ float xform(int mode, float a, float b) {
    const float sg = 1.0f / (1.0f + expf(-a));
    return mode == GGX_CUDA_X_SWIGLU ? a * sg * b : sg * b;
}

/* split-K reduction, epilogue and store of a warp's RPW rows x NT tokens */
template <int MV_RPW, int NT>
__device__ __forceinline__ void mv_finish(const MvLaunch &a, float (&acc)[MV_RPW][NT],
                                          const bool (&rv)[MV_RPW], int mi, int row0, int rows,
                                          int lane) {
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], o);
    if (gridDim.y > 1) {
        /* split-K: publish this split's partial sums; the last split of the row block adds all */
        __shared__ int last;
        const int grow = a.row_start[mi] + row0;
#pragma unroll
        for (int r = 0; r < MV_RPW; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == r * NT + t && rv[r] && t < a.n_tok)
                    a.part[((size_t)blockIdx.y * 8 + t) * a.total_rows + grow + r] = acc[r][t];
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) last = atomicAdd(&a.counters[blockIdx.x], 1) == (int)gridDim.y - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
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
        if (threadIdx.x == 0) a.counters[blockIdx.x] = 0;
    }
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (lane == r * NT + t && rv[r] && t < a.n_tok) {
                float v = acc[r][t];
                if (a.epi[mi]) {
                    const float c = a.cap[mi];
                    v += a.bias[mi] ? a.bias[mi][row0 + r] : 0.0f;
                    if (c > 0.0f) v = c * tanhf(v / c);
                }
                a.y[mi][(size_t)t * rows + row0 + r] = v;
            }
}

template <int T, int NT>
__global__ void __launch_bounds__(MV_WARPS * 32) mv_kernel(const MvLaunch a) {
    constexpr int MV_RPW = mv_rpw(NT);
    constexpr int MV_ROWS_PER_BLOCK = MV_WARPS * MV_RPW;
    constexpr int W = Tr<T>::W;
    constexpr bool QUANT = T == GGX_TYPE_Q8_0 || T == GGX_TYPE_Q4_0;
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

    float acc[MV_RPW][NT];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    bool rv[MV_RPW];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++) rv[r] = row0 + r < rows;

    const int ch0 = (int)blockIdx.y * a.cps;
    const int ch1 = ch0 + a.cps < n_chunks ? ch0 + a.cps : n_chunks;
    const int k_end = ch1 * W;
    for (int tb = ch0 * W; tb < k_end; tb += TE) {
        /* 1. this tile's weights: CPL * RPW independent 16-byte loads in flight */
        uint4 raw[CPL][MV_RPW];
        float d[CPL][MV_RPW];
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
            }
        }
        /* 2. stage x[:, tb:tb+TE] */
        __syncthreads(); /* the previous tile's readers are done */
        for (int i = threadIdx.x; i < NT * (TE / 4); i += MV_WARPS * 32) {
            const int t = i / (TE / 4), f4 = i % (TE / 4), e = tb + 4 * f4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (t < a.n_tok && e < k_end) {
                v = __ldg(reinterpret_cast<const float4 *>(a.x + (size_t)t * cols + e));
                if (a.xmode != GGX_CUDA_X_PLAIN) {
                    const float4 b = __ldg(reinterpret_cast<const float4 *>(a.xb + (size_t)t * cols + e));
                    v.x = xform(a.xmode, v.x, b.x);
                    v.y = xform(a.xmode, v.y, b.y);
                    v.z = xform(a.xmode, v.z, b.z);
                    v.w = xform(a.xmode, v.w, b.w);
                }
            }
            xs[t][swz(f4)] = v;
        }
        __syncthreads();
        /* 3. multiply */
#pragma unroll
        for (int u = 0; u < CPL; u++) {
            const int cl = 32 * u + lane; /* chunk within the tile */
            if (cbase + cl >= ch1) break;
            float part[MV_RPW][NT];
#pragma unroll
            for (int r = 0; r < MV_RPW; r++)
#pragma unroll
                for (int t = 0; t < NT; t++) part[r][t] = 0.0f;
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
                for (int t = 0; t < NT; t++) acc[r][t] = fmaf(d[u][r], part[r][t], acc[r][t]);
        }
    }
    mv_finish<MV_RPW, NT>(a, acc, rv, mi, row0, rows, lane);
}

/* ---------------------------------------------------------------------------------------
 * q8_0 / q4_0 with int8 activations: x is quantized per 32-block while it is staged (scale
 * amax/127, like the CPU backend's qx), and each 16-byte chunk of weights takes 4 (q8_0) or 8
 * (q4_0) dp4a instructions instead of 16-32 conversions and FMAs. The error this adds is that
 * of int8 activations (~4e-3 relative on a dot product). Off by default: on the H100 it was
 * slower than the f32 path (7B q8_0 decode 6.2 vs 4.7 ms/step, q4_0 4.6 vs 4.0; GGX_CUDA_INT8_X=1).
 */
/* x[t, e + 4q .. e + 4q + 3], transformed (fused SWIGLU / SIGMOID_MUL) */
__device__ __forceinline__ float4 load_x4(const MvLaunch &a, const float4 *xp, const float4 *bp, int q) {
    float4 f = __ldg(xp + q);
    if (a.xmode != GGX_CUDA_X_PLAIN) {
        const float4 g = __ldg(bp + q);
        f.x = xform(a.xmode, f.x, g.x);
        f.y = xform(a.xmode, f.y, g.y);
        f.z = xform(a.xmode, f.z, g.z);
        f.w = xform(a.xmode, f.w, g.w);
    }
    return f;
}

template <int T, int NT>
__global__ void __launch_bounds__(MV_WARPS * 32) mvq_kernel(const MvLaunch a) {
    constexpr int MV_RPW = 2;
    constexpr int MV_ROWS_PER_BLOCK = MV_WARPS * MV_RPW;
    constexpr int W = Tr<T>::W; /* 16 (q8_0) or 32 (q4_0) weights per chunk */
    constexpr int CPL_X = (16384 / NT) / (32 * W);
    constexpr int CPL = CPL_X < 1 ? 1 : (CPL_X > 4 ? 4 : CPL_X);
    constexpr int TE = CPL * 32 * W;
    __shared__ int4 xq[NT][TE / 16];    /* int8 x, 16 per slot, swizzled slots */
    __shared__ float xd[NT][TE / 32];   /* per-block scale */
    __shared__ int xsm[NT][TE / 32];    /* per-block sum of the int8 values (q4_0 offset) */

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
    const uint8_t *sc = w + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols);
    const int64_t blocks_per_row = cols / 32;

    float acc[MV_RPW][NT];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    bool rv[MV_RPW];
#pragma unroll
    for (int r = 0; r < MV_RPW; r++) rv[r] = row0 + r < rows;

    const int ch0 = (int)blockIdx.y * a.cps;
    const int ch1 = ch0 + a.cps < n_chunks ? ch0 + a.cps : n_chunks;
    const int k_end = ch1 * W;
    for (int tb = ch0 * W; tb < k_end; tb += TE) {
        uint4 raw[CPL][MV_RPW];
        float d[CPL][MV_RPW];
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
            }
        }
        __syncthreads();
        /* stage: one thread per (token, 32-block): transform, quantize */
        for (int i = threadIdx.x; i < NT * (TE / 32); i += MV_WARPS * 32) {
            const int t = i / (TE / 32), b = i % (TE / 32), e = tb + 32 * b;
            const bool ok = t < a.n_tok && e < k_end;
            const float4 *xp = reinterpret_cast<const float4 *>(a.x + (size_t)t * cols + e);
            const float4 *bp = reinterpret_cast<const float4 *>(a.xb + (size_t)t * cols + e);
            /* two passes over the 32 values (the second hits L1): few registers live */
            float amax = 0.0f;
#pragma unroll 2
            for (int q = 0; q < 8 && ok; q++) {
                const float4 f = load_x4(a, xp, bp, q);
                amax = fmaxf(amax, fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
            }
            const float dx = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int packed[8], sum = 0;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                const float4 f = ok ? load_x4(a, xp, bp, q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                const int q0 = __float2int_rn(f.x * inv), q1 = __float2int_rn(f.y * inv);
                const int q2 = __float2int_rn(f.z * inv), q3 = __float2int_rn(f.w * inv);
                sum += q0 + q1 + q2 + q3;
                packed[q] = (int)((uint32_t)(q0 & 0xff) | (uint32_t)(q1 & 0xff) << 8 |
                                  (uint32_t)(q2 & 0xff) << 16 | (uint32_t)(q3 & 0xff) << 24);
            }
            xq[t][swz(2 * b)] = make_int4(packed[0], packed[1], packed[2], packed[3]);
            xq[t][swz(2 * b + 1)] = make_int4(packed[4], packed[5], packed[6], packed[7]);
            xd[t][b] = dx;
            xsm[t][b] = sum;
        }
        __syncthreads();
#pragma unroll
        for (int u = 0; u < CPL; u++) {
            const int cl = 32 * u + lane;
            if (cbase + cl >= ch1) break;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t < a.n_tok) {
                    if (T == GGX_TYPE_Q8_0) {
                        const int4 xv = xq[t][swz(cl)];
                        const float dx = xd[t][cl >> 1];
#pragma unroll
                        for (int r = 0; r < MV_RPW; r++) {
                            int is = __dp4a((int)raw[u][r].x, xv.x, 0);
                            is = __dp4a((int)raw[u][r].y, xv.y, is);
                            is = __dp4a((int)raw[u][r].z, xv.z, is);
                            is = __dp4a((int)raw[u][r].w, xv.w, is);
                            acc[r][t] = fmaf(d[u][r] * dx, (float)is, acc[r][t]);
                        }
                    } else {
                        const int4 x0 = xq[t][swz(2 * cl)], x1 = xq[t][swz(2 * cl + 1)];
                        const float dx = xd[t][cl];
                        const int off = 8 * xsm[t][cl];
#pragma unroll
                        for (int r = 0; r < MV_RPW; r++) {
                            const uint4 q = raw[u][r];
                            const int m = 0x0F0F0F0F;
                            int is = __dp4a((int)(q.x & m), x0.x, 0);
                            is = __dp4a((int)(q.y & m), x0.y, is);
                            is = __dp4a((int)(q.z & m), x0.z, is);
                            is = __dp4a((int)(q.w & m), x0.w, is);
                            is = __dp4a((int)((q.x >> 4) & m), x1.x, is);
                            is = __dp4a((int)((q.y >> 4) & m), x1.y, is);
                            is = __dp4a((int)((q.z >> 4) & m), x1.z, is);
                            is = __dp4a((int)((q.w >> 4) & m), x1.w, is);
                            acc[r][t] = fmaf(d[u][r] * dx, (float)(is - off), acc[r][t]);
                        }
                    }
                }
            }
        }
    }
    mv_finish<MV_RPW, NT>(a, acc, rv, mi, row0, rows, lane);
}

/* ---------------------------------------------------------------------------------------
 * mv2: q8_0 / q4_0 with f32 activations. OFF by default (GGX_CUDA_MATVEC=v2 or
 * ggx_cuda_set_matvec_v2(1) selects it): on the H100 it was correct (test_cuda_ops) but SLOWER
 * than mv_kernel at the 7B shape (batch-1 decode, same machine and run: q4_0 4.36 vs 3.97 ms per
 * step, q8_0 5.21 vs 4.62; docs/cuda.md). Kept, tested, for the next attempt. Differences from
 * mv_kernel:
 *  - 4 rows per warp for 1-2 tokens (32 rows per block): x, staged once per block, serves twice
 *    as many weight bytes;
 *  - the block's whole K range of x is staged once (dynamic shared memory, <= 47 KB, else the
 *    caller uses mv_kernel), so the K loop has no barrier and warps drift freely; the first
 *    iteration's weights are loaded before the staging, so they overlap it;
 *  - warps with no valid row skip the K loop (the 8-row gate matrices);
 *  - q4_0 needs one integer and one FMA instruction per weight instead of three: the nibble q
 *    (0..15), placed in the low bits of a float, is the subnormal q * 2^-149, x is staged as
 *    x * 2^64, so the FMA (subnormals kept: fma.rn.f32, no .ftz) adds q * x * 2^-85 exactly
 *    rounded; per 32-block, (sum q x - 8 sum x) * 2^-85 is then scaled by d * 2^85. Exact
 *    powers of two throughout; the only change in rounding is the subtraction of 8 * sum x.
 *    |x| >= 2^64 would overflow the staged value (activations are many orders smaller).
 * q8_0 converts exactly as mv_kernel (2^23 + byte, minus 2^23 + 128).
 */
__host__ __device__ constexpr int mv2_rpw(int nt) { return nt <= 2 ? 4 : 2; }
constexpr int MV2_SMEM_MAX = 47 * 1024; /* + mv_finish's static word, under the 48 KB default */

__device__ __forceinline__ float fma_sub(float a, float b, float c) {
    float d; /* subnormal operands kept whatever the compile flags (no .ftz) */
    asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(d) : "f"(a), "f"(b), "f"(c));
    return d;
}

/* this lane's chunks base + 32u + lane (clamped to the split) of R rows: 16-byte loads + scales */
template <int T, int U, int R>
__device__ __forceinline__ void mv2_load(uint4 (&raw)[U][R], float (&d)[U][R],
                                         const uint4 *const (&wr)[R], const __half *const (&sr)[R],
                                         int base, int ch1, int lane) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int c = base + 32 * u + lane;
        const int cc = c < ch1 ? c : ch1 - 1;
#pragma unroll
        for (int r = 0; r < R; r++) {
            raw[u][r] = __ldcs(wr[r] + cc);
            d[u][r] = __half2float(sr[r][T == GGX_TYPE_Q4_0 ? cc : (cc >> 1)]);
        }
    }
}

template <int T, int NT>
__global__ void __launch_bounds__(MV_WARPS * 32, 2) mv2_kernel(const MvLaunch a) {
    constexpr int R = mv2_rpw(NT);
    constexpr int U = 8 / R; /* chunks per lane per iteration: 8 16-byte loads in flight */
    constexpr int W = Tr<T>::W;
    constexpr int G = W / 4; /* float4 groups per chunk */
    constexpr bool Q4 = T == GGX_TYPE_Q4_0;
    extern __shared__ float4 xs2[]; /* [n_tok][e4p], float4 slots swizzled per token */

    int mi = 0;
#pragma unroll 1
    while (mi + 1 < a.n_mats && (int)blockIdx.x >= a.block_start[mi + 1]) mi++;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = ((int)blockIdx.x - a.block_start[mi]) * (MV_WARPS * R) + warp * R;
    const int rows = a.rows[mi];
    const int cols = a.cols;
    const int n_chunks = cols / W;
    const uint8_t *w = a.w[mi];
    const size_t row_bytes = (size_t)n_chunks * 16;
    const __half *sc = reinterpret_cast<const __half *>(w + ggx_cuda_qs_bytes((enum ggx_type)T, rows, cols));
    const size_t blocks_per_row = (size_t)(cols / 32);
    const int ch0 = (int)blockIdx.y * a.cps;
    const int ch1 = ch0 + a.cps < n_chunks ? ch0 + a.cps : n_chunks;
    const int e4 = (ch1 - ch0) * G;  /* float4s of x per token in this split */
    const int e4p = (e4 + 7) & ~7;   /* swz stays inside an aligned group of 8 */
    const int n_tok = a.n_tok;

    bool rv[R];
    const uint4 *wr[R];
    const __half *sr[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rv[r] = row0 + r < rows;
        const int rr = rv[r] ? row0 + r : rows - 1;
        wr[r] = reinterpret_cast<const uint4 *>(w + (size_t)rr * row_bytes);
        sr[r] = sc + (size_t)rr * blocks_per_row;
    }
    const bool active = row0 < rows; /* warp-uniform */

    uint4 raw[U][R];
    float d[U][R];
    int base = ch0;
    if (active) mv2_load<T, U, R>(raw, d, wr, sr, base, ch1, lane);

    /* stage x[:, ch0*W : ch1*W] (transformed; q4_0: times 2^64) */
    for (int i = threadIdx.x; i < n_tok * e4; i += MV_WARPS * 32) {
        const int t = i / e4, f4 = i - t * e4;
        const size_t e = (size_t)t * cols + (size_t)ch0 * W + 4 * (size_t)f4;
        float4 v = __ldg(reinterpret_cast<const float4 *>(a.x + e));
        if (a.xmode != GGX_CUDA_X_PLAIN) {
            const float4 b = __ldg(reinterpret_cast<const float4 *>(a.xb + e));
            v.x = xform(a.xmode, v.x, b.x);
            v.y = xform(a.xmode, v.y, b.y);
            v.z = xform(a.xmode, v.z, b.z);
            v.w = xform(a.xmode, v.w, b.w);
        }
        if (Q4) {
            v.x *= 0x1p64f; v.y *= 0x1p64f; v.z *= 0x1p64f; v.w *= 0x1p64f;
        }
        xs2[t * e4p + swz(f4)] = v;
    }
    __syncthreads();

    float acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

    while (active) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + 32 * u + lane;
            if (c >= ch1) break;
            const int cl = c - ch0; /* chunk within the staged range */
            float part[R][NT], xsum[NT];
#pragma unroll
            for (int t = 0; t < NT; t++) {
                xsum[t] = 0.0f;
#pragma unroll
                for (int r = 0; r < R; r++) part[r][t] = 0.0f;
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                float f[R][4];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    if (Q4) {
                        /* elements 4g..4g+3: low nibbles of word g, high nibbles of word g-4 */
                        const uint32_t q = g < 4 ? (word(raw[u][r], g) & 0x0F0F0F0Fu)
                                                 : ((word(raw[u][r], g - 4) >> 4) & 0x0F0F0F0Fu);
#pragma unroll
                        for (int k = 0; k < 4; k++) f[r][k] = __uint_as_float(__byte_perm(q, 0u, 0x4440u + (uint32_t)k));
                    } else {
                        decode4<T>(raw[u][r], g, f[r]);
                    }
                }
                const int slot = swz(cl * G + g);
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t < n_tok) {
                        const float4 xv = xs2[t * e4p + slot];
                        if (Q4) xsum[t] += (xv.x + xv.y) + (xv.z + xv.w);
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            if (Q4) {
                                part[r][t] = fma_sub(f[r][0], xv.x, part[r][t]);
                                part[r][t] = fma_sub(f[r][1], xv.y, part[r][t]);
                                part[r][t] = fma_sub(f[r][2], xv.z, part[r][t]);
                                part[r][t] = fma_sub(f[r][3], xv.w, part[r][t]);
                            } else {
                                part[r][t] = fmaf(f[r][0], xv.x, part[r][t]);
                                part[r][t] = fmaf(f[r][1], xv.y, part[r][t]);
                                part[r][t] = fmaf(f[r][2], xv.z, part[r][t]);
                                part[r][t] = fmaf(f[r][3], xv.w, part[r][t]);
                            }
                        }
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (Q4) {
                        /* part = 2^-85 sum q x; 8 sum x * 2^-85 = xsum * 2^-146 (two normal steps) */
                        const float corr = (xsum[t] * 0x1p-73f) * 0x1p-73f;
                        acc[r][t] = fmaf(d[u][r] * 0x1p85f, part[r][t] - corr, acc[r][t]);
                    } else {
                        acc[r][t] = fmaf(d[u][r], part[r][t], acc[r][t]);
                    }
                }
        }
        base += 32 * U;
        if (base >= ch1) break;
        mv2_load<T, U, R>(raw, d, wr, sr, base, ch1, lane);
    }
    mv_finish<R, NT>(a, acc, rv, mi, row0, rows, lane);
}

bool g_int8_x = false; /* q8_0/q4_0 matvecs quantize x to int8 (dp4a): measured slower */
bool g_mv2 = false;   /* q8_0/q4_0 with f32 x: mv2_kernel (measured slower) or mv_kernel */
float *g_part;     /* split-K partials [MV_MAX_SPLIT][8][MV_PART_ROWS] */
int *g_counters;   /* [MV_PART_ROWS] zeroed */
constexpr int MV_MAX_SPLIT = 8, MV_PART_ROWS = 65536;
constexpr int MV_FULL_BLOCKS = 1024; /* launches with fewer row blocks split K */

template <int T>
cudaError_t launch_type(cudaStream_t s, MvLaunch &a, int n_blocks) {
    const int nt = a.n_tok;
    /* too few row blocks to keep every SM streaming: split K (up to 8 ways), in whole warp
     * strides of chunks */
    const int n_chunks = a.cols / Tr<T>::W;
    int splits = 1;
    if (g_part && a.total_rows <= MV_PART_ROWS && n_blocks < MV_FULL_BLOCKS) {
        splits = MV_FULL_BLOCKS / n_blocks;
        if (splits > MV_MAX_SPLIT) splits = MV_MAX_SPLIT;
        const int max_by_k = n_chunks / 64; /* at least two warp strides per split */
        if (splits > max_by_k) splits = max_by_k > 1 ? max_by_k : 1;
    }
    int cps = (n_chunks + splits - 1) / splits;
    cps = (cps + 31) / 32 * 32;
    splits = (n_chunks + cps - 1) / cps;
    a.cps = cps;
    a.part = g_part;
    a.counters = g_counters;
    const dim3 grid((unsigned)n_blocks, (unsigned)splits);
    if constexpr (T == GGX_TYPE_Q8_0 || T == GGX_TYPE_Q4_0) {
        if (g_int8_x) {
            if (nt == 1) mvq_kernel<T, 1><<<grid, MV_WARPS * 32, 0, s>>>(a);
            else if (nt == 2) mvq_kernel<T, 2><<<grid, MV_WARPS * 32, 0, s>>>(a);
            else if (nt <= 4) mvq_kernel<T, 4><<<grid, MV_WARPS * 32, 0, s>>>(a);
            else mvq_kernel<T, 8><<<grid, MV_WARPS * 32, 0, s>>>(a);
            return cudaGetLastError();
        }
    }
    if (nt == 1) mv_kernel<T, 1><<<grid, MV_WARPS * 32, 0, s>>>(a);
    else if (nt == 2) mv_kernel<T, 2><<<grid, MV_WARPS * 32, 0, s>>>(a);
    else if (nt <= 4) mv_kernel<T, 4><<<grid, MV_WARPS * 32, 0, s>>>(a);
    else mv_kernel<T, 8><<<grid, MV_WARPS * 32, 0, s>>>(a);
    return cudaGetLastError();
}

/* mv2 for q8_0/q4_0: split K when there are fewer than MV2_FULL_BLOCKS row blocks (32 or 16
 * rows each), in multiples of 32 chunks, at least 64 chunks per split. Returns false (the
 * caller uses mv_kernel) when the staged x of a split would not fit MV2_SMEM_MAX. */
constexpr int MV2_FULL_BLOCKS = 1024;
template <int T>
bool launch_mv2(cudaStream_t s, MvLaunch &a, int n_blocks, cudaError_t *err) {
    constexpr int W = Tr<T>::W;
    const int n_chunks = a.cols / W;
    int splits = 1;
    if (g_part && a.total_rows <= MV_PART_ROWS && n_blocks < MV2_FULL_BLOCKS) {
        splits = (MV2_FULL_BLOCKS + n_blocks - 1) / n_blocks;
        if (splits > MV_MAX_SPLIT) splits = MV_MAX_SPLIT;
        const int max_by_k = n_chunks / 64;
        if (splits > max_by_k) splits = max_by_k > 1 ? max_by_k : 1;
    }
    int cps = (n_chunks + splits - 1) / splits;
    cps = (cps + 31) / 32 * 32;
    splits = (n_chunks + cps - 1) / cps;
    const int e4p = (cps * (W / 4) + 7) & ~7;
    const size_t smem = (size_t)a.n_tok * (size_t)e4p * sizeof(float4);
    if (smem > (size_t)MV2_SMEM_MAX) return false;
    a.cps = cps;
    a.part = g_part;
    a.counters = g_counters;
    const dim3 grid((unsigned)n_blocks, (unsigned)splits);
    const int nt = a.n_tok;
    if (nt == 1) mv2_kernel<T, 1><<<grid, MV_WARPS * 32, smem, s>>>(a);
    else if (nt == 2) mv2_kernel<T, 2><<<grid, MV_WARPS * 32, smem, s>>>(a);
    else if (nt <= 4) mv2_kernel<T, 4><<<grid, MV_WARPS * 32, smem, s>>>(a);
    else mv2_kernel<T, 8><<<grid, MV_WARPS * 32, smem, s>>>(a);
    *err = cudaGetLastError();
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

} // namespace

void ggx_cuda_mv_set_int8_x(bool on) { g_int8_x = on; }
void ggx_cuda_mv_set_mv2(bool on) { g_mv2 = on; }
bool ggx_cuda_mv_mv2(void) { return g_mv2; }
bool ggx_cuda_mv_int8_x(void) { return g_int8_x; }

cudaError_t ggx_cuda_mv_init(void) {
    if (g_part) return cudaSuccess;
    cudaError_t e = cudaMalloc(&g_part, sizeof(float) * MV_MAX_SPLIT * 8 * MV_PART_ROWS);
    if (e == cudaSuccess) e = cudaMalloc(&g_counters, sizeof(int) * MV_PART_ROWS);
    if (e == cudaSuccess) e = cudaMemset(g_counters, 0, sizeof(int) * MV_PART_ROWS);
    if (e != cudaSuccess) {
        cudaFree(g_part);
        cudaFree(g_counters);
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
    case GGX_TYPE_Q4_0: return cols % 32 == 0;
    default: return false;
    }
}

cudaError_t ggx_cuda_mv(cudaStream_t s, enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats,
                        const float *x, const float *xb, int xmode, int cols, int n_tok) {
    if (n_mats < 1 || n_mats > GGX_CUDA_MV_MAX_MATS || n_tok < 1) return cudaErrorInvalidValue;
    if (ggx_cuda_mmq_supported(t, cols, n_tok))
        return ggx_cuda_mmq(s, t, mats, n_mats, x, xb, xmode, cols, n_tok);
    /* the kernel handles up to 8 tokens at a time: more tokens = more passes over the weights */
    for (int t0 = 0; t0 < n_tok; t0 += 8) {
        MvLaunch a;
        memset(&a, 0, sizeof a);
        a.n_mats = n_mats;
        a.x = x + (size_t)t0 * cols;
        a.xb = xb ? xb + (size_t)t0 * cols : nullptr;
        a.xmode = xmode;
        a.cols = cols;
        a.n_tok = n_tok - t0 < 8 ? n_tok - t0 : 8;
        const int nt_tmpl = a.n_tok == 1 ? 1 : a.n_tok == 2 ? 2 : a.n_tok <= 4 ? 4 : 8;
        for (int k = 0; k < n_mats; k++) {
            a.w[k] = static_cast<const uint8_t *>(mats[k].w);
            a.y[k] = mats[k].y + (size_t)t0 * mats[k].rows;
            a.rows[k] = mats[k].rows;
            a.epi[k] = mats[k].epi;
            a.cap[k] = mats[k].cap;
            a.bias[k] = mats[k].bias;
        }
        cudaError_t e;
        if (g_mv2 && !g_int8_x && (t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0)) {
            const int nb2 = assign_blocks(a, mats, n_mats, MV_WARPS * mv2_rpw(nt_tmpl));
            const bool done = t == GGX_TYPE_Q8_0 ? launch_mv2<GGX_TYPE_Q8_0>(s, a, nb2, &e)
                                                 : launch_mv2<GGX_TYPE_Q4_0>(s, a, nb2, &e);
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
        default: return cudaErrorInvalidValue;
        }
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
