/*
 * cuda_ops.cu — the small ops: embedding rows, elementwise, soft cap, RMS norm, per-head
 * LayerNorm, dequantization to bf16/f32 (prefill GEMM operands) and random fills (benchmarks).
 * All are memory-bound and run once per row or element; f32 in, f32 out, f32 math.
 */
#include "cuda_common.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>

namespace {

constexpr int EW_THREADS = 256;

inline int ew_blocks(int64_t n) {
    int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (int)(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

/* value of element c of row r of a weight in the device layout */
__device__ __forceinline__ float weight_at(enum ggx_type t, const uint8_t *w, int64_t rows,
                                           int64_t cols, int64_t r, int64_t c) {
    switch (t) {
    case GGX_TYPE_F32: return reinterpret_cast<const float *>(w)[r * cols + c];
    case GGX_TYPE_F16: return __half2float(reinterpret_cast<const __half *>(w)[r * cols + c]);
    case GGX_TYPE_BF16:
        return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(w)[r * cols + c]);
    case GGX_TYPE_Q8_0: {
        const __half *sc = reinterpret_cast<const __half *>(w + ggx_cuda_qs_bytes(t, rows, cols));
        return __half2float(sc[r * (cols / 32) + c / 32]) * (float)(int8_t)w[r * cols + c];
    }
    case GGX_TYPE_Q4_0: {
        const __half *sc = reinterpret_cast<const __half *>(w + ggx_cuda_qs_bytes(t, rows, cols));
        const int64_t b = c / 32, j = c % 32;
        const uint8_t byte = w[r * (cols / 2) + b * 16 + (j & 15)];
        const int q = j < 16 ? (byte & 15) : (byte >> 4);
        return __half2float(sc[r * (cols / 32) + b]) * (float)(q - 8);
    }
    case GGX_TYPE_Q4_X: {
        const __half2 dm = reinterpret_cast<const __half2 *>(w + ggx_cuda_qs_bytes(t, rows, cols))[r * (cols / 32) + c / 32];
        const int64_t b = c / 32, j = c % 32;
        const uint8_t byte = w[r * (cols / 2) + b * 16 + (j & 15)];
        const uint32_t q = j < 16 ? (byte & 15u) : (byte >> 4);
        const float l = (float)(ggx_cuda_q4x_levels4(q) & 0xffu);
        return fmaf(__low2float(dm), l, __high2float(dm)); /* d * L[q] + m, like the CPU's */
    }
    default: return __int_as_float(0x7fc00000); /* NaN: never reached (supports_op) */
    }
}

__global__ void get_rows_kernel(enum ggx_type t, const uint8_t *tab, int64_t V, int64_t cols,
                                const int32_t *ids, int n, float *dst) {
    GGX_PDL_ENTER();
    const int r = blockIdx.y;
    const int32_t id = ids[r];
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols;
         c += (int64_t)gridDim.x * blockDim.x) {
        /* an id out of range gives NaN rows: visible, never a wild read */
        dst[(int64_t)r * cols + c] =
            (id < 0 || id >= V) ? __int_as_float(0x7fc00000) : weight_at(t, tab, V, cols, id, c);
    }
    (void)n;
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void binary_kernel(int op, const float *a, const float *b, float *dst, int64_t n,
                              int64_t bcols) {
    GGX_PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = a[i], y = b[bcols ? i % bcols : i];
        float r;
        switch (op) {
        case 0: r = x + y; break;
        case 1: r = x * y; break;
        case 2: r = sigmoidf_(x) * y; break;
        default: r = x * sigmoidf_(x) * y; break;
        }
        dst[i] = r;
    }
}

__global__ void soft_cap_kernel(const float *x, const float *bias, float *dst, int64_t n,
                                int64_t cols, float cap) {
    GGX_PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i] + (bias ? bias[i % cols] : 0.0f);
        dst[i] = ggx_cuda_soft_cap_v(v, cap);
    }
}


__global__ void rms_norm_kernel(const float *x, const float *w, float *dst, int64_t cols,
                                float eps) {
    GGX_PDL_ENTER();
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * cols;
    float *dr = dst + blockIdx.x * cols;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss = fmaf(xr[c], xr[c], ss);
    ss = ggx_cuda_block_sum(ss, sh);
    const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dr[c] = (xr[c] * inv) * w[c];
}

__global__ void add_rms_norm_kernel(const float *a, const float *b, int64_t bcols, float *x,
                                    const float *w, float *y, int64_t cols, float eps) {
    GGX_PDL_ENTER();
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const float *ar = a + r * cols;
    const float *br = bcols ? b : b + r * cols;
    float *xr = x + r * cols, *yr = y + r * cols;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = ar[c] + br[c];
        xr[c] = v;
        ss = fmaf(v, v, ss);
    }
    ss = ggx_cuda_block_sum(ss, sh); /* its barriers also order the x writes before the reads below */
    const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] * inv) * w[c];
}

/* one block per (row, head): LayerNorm over the head's D values, two passes (mean, then the
 * biased variance of x - mean), no bias; weight indexed flat (head*D + d) */
__global__ void head_norm_kernel(const float *x, const float *w, float *dst, int n_heads,
                                 int64_t D, float eps) {
    GGX_PDL_ENTER();
    __shared__ float sh[32];
    const int64_t row = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const float *xr = x + (row * n_heads + h) * D;
    float *dr = dst + (row * n_heads + h) * D;
    const float *wr = w + h * D;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) s += xr[c];
    const float mean = ggx_cuda_block_sum(s, sh) / (float)D;
    float v = 0.0f;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
        const float d = xr[c] - mean;
        v = fmaf(d, d, v);
    }
    const float inv = 1.0f / sqrtf(ggx_cuda_block_sum(v, sh) / (float)D + eps);
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) dr[c] = ((xr[c] - mean) * inv) * wr[c];
}

/* The same LayerNorm with one warp per (row, head) of D <= 128 NV floats (D % 4 == 0, 16-byte
 * aligned rows): the head read once into registers (NV float4 per lane), both sums by warp
 * shuffles, no block barriers. head_norm_kernel's blocks of D threads spent their time in its two
 * block reductions: 336 us for the 7B prefill's 8192 x 8 heads of 512 (session 8, ncu), 3.7x
 * the traffic's time. */
template <int NV>
__global__ void __launch_bounds__(256) head_norm_warp_kernel(const float *x, const float *w, float *dst,
                                                             int64_t n_rows, int n_heads, int D, float eps) {
    GGX_PDL_ENTER();
    const int64_t r = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, D4 = D / 4;
    if (r >= n_rows) return;
    const float4 *xr = reinterpret_cast<const float4 *>(x + r * D);
    const float4 *wr = reinterpret_cast<const float4 *>(w + (int64_t)(r % n_heads) * D);
    float4 *dr = reinterpret_cast<float4 *>(dst + r * D);
    float4 v[NV];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = lane + 32 * i;
        v[i] = c < D4 ? xr[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float mean = s / (float)D;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < D4) {
            const float a = v[i].x - mean, b = v[i].y - mean, c = v[i].z - mean, d = v[i].w - mean;
            q = fmaf(a, a, q), q = fmaf(b, b, q), q = fmaf(c, c, q), q = fmaf(d, d, q);
        }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
    const float inv = 1.0f / sqrtf(q / (float)D + eps);
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = lane + 32 * i;
        if (c < D4) {
            const float4 wv = wr[c];
            dr[c] = make_float4(((v[i].x - mean) * inv) * wv.x, ((v[i].y - mean) * inv) * wv.y,
                                ((v[i].z - mean) * inv) * wv.z, ((v[i].w - mean) * inv) * wv.w);
        }
    }
}

template <typename OUT> __device__ __forceinline__ OUT from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

template <typename OUT>
__global__ void dequant_kernel(enum ggx_type t, const uint8_t *w, int64_t rows, int64_t cols,
                               OUT *dst) {
    GGX_PDL_ENTER();
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<OUT>(weight_at(t, w, rows, cols, i / cols, i % cols));
}

/* q8_0 / q4_0 / q4_x to bf16, one thread per 32-block: the prefill path for quantized weights */
__global__ void dequant_q_bf16_kernel(enum ggx_type t, const uint8_t *w, int64_t rows,
                                      int64_t cols, __nv_bfloat16 *dst) {
    GGX_PDL_ENTER();
    const int64_t nb = rows * cols / 32;
    const __half *sc = reinterpret_cast<const __half *>(w + ggx_cuda_qs_bytes(t, rows, cols));
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < nb;
         b += (int64_t)gridDim.x * blockDim.x) {
        const float d = __half2float(sc[t == GGX_TYPE_Q4_X ? 2 * b : b]);
        __nv_bfloat162 out[16];
        if (t == GGX_TYPE_Q4_X) {
            const float m = __half2float(sc[2 * b + 1]);
            const uint4 r = *reinterpret_cast<const uint4 *>(w + b * 16);
            const uint32_t wd[4] = {r.x, r.y, r.z, r.w};
            float f[32];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint32_t lo = ggx_cuda_q4x_levels4(wd[i] & 0x0F0F0F0Fu);
                const uint32_t hi = ggx_cuda_q4x_levels4((wd[i] >> 4) & 0x0F0F0F0Fu);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    f[4 * i + k] = fmaf(d, (float)((lo >> (8 * k)) & 0xffu), m);      /* element 4i+k */
                    f[16 + 4 * i + k] = fmaf(d, (float)((hi >> (8 * k)) & 0xffu), m); /* 16+4i+k */
                }
            }
#pragma unroll
            for (int j = 0; j < 16; j++) out[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
        } else if (t == GGX_TYPE_Q8_0) {
            const int4 *p = reinterpret_cast<const int4 *>(w + b * 32);
            int4 r0 = p[0], r1 = p[1];
            const int8_t *q0 = reinterpret_cast<const int8_t *>(&r0);
            const int8_t *q1 = reinterpret_cast<const int8_t *>(&r1);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                out[j] = __floats2bfloat162_rn(d * q0[2 * j], d * q0[2 * j + 1]);
                out[8 + j] = __floats2bfloat162_rn(d * q1[2 * j], d * q1[2 * j + 1]);
            }
        } else {
            const int4 r = *reinterpret_cast<const int4 *>(w + b * 16);
            const uint8_t *q = reinterpret_cast<const uint8_t *>(&r);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                out[j] = __floats2bfloat162_rn(d * ((q[2 * j] & 15) - 8), d * ((q[2 * j + 1] & 15) - 8));
                out[8 + j] = __floats2bfloat162_rn(d * ((q[2 * j] >> 4) - 8), d * ((q[2 * j + 1] >> 4) - 8));
            }
        }
        int4 *o = reinterpret_cast<int4 *>(dst + b * 32);
        const int4 *src = reinterpret_cast<const int4 *>(out);
#pragma unroll
        for (int j = 0; j < 4; j++) o[j] = src[j];
    }
}

/* GEMM activations to bf16; op 2 / 3 computes SIGMOID_MUL / SWIGLU of (x, b) first (the same
 * f32 arithmetic as binary_kernel), so a prefill never writes and re-reads that f32 result */
__global__ void f32_to_bf16_kernel(int op, const float *x, const float *b, __nv_bfloat16 *dst, int64_t n) {
    GGX_PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (op == 2) v = sigmoidf_(v) * b[i];
        else if (op == 3) v = v * sigmoidf_(v) * b[i];
        dst[i] = __float2bfloat16_rn(v);
    }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* uniform in [-1, 1) */
__device__ __forceinline__ float urand(uint64_t seed, uint64_t i) {
    return (float)(mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1)) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_kernel(enum ggx_type t, uint8_t *w, int64_t rows, int64_t cols,
                            uint64_t seed, float scale) {
    GGX_PDL_ENTER();
    const int64_t n = rows * cols;
    const size_t qs = ggx_cuda_repacked(t) ? ggx_cuda_qs_bytes(t, rows, cols) : 0;
    const int64_t nq = t == GGX_TYPE_Q8_0 ? n : n / 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float v = scale * urand(seed, (uint64_t)i);
        switch (t) {
        case GGX_TYPE_F32: reinterpret_cast<float *>(w)[i] = v; break;
        case GGX_TYPE_F16: reinterpret_cast<__half *>(w)[i] = __float2half(v); break;
        case GGX_TYPE_BF16: reinterpret_cast<__nv_bfloat16 *>(w)[i] = __float2bfloat16(v); break;
        case GGX_TYPE_Q8_0:
        case GGX_TYPE_Q4_0:
            if (i < nq) w[i] = (uint8_t)(mix64(seed ^ (uint64_t)i) & 0xff);
            if (i < n / 32)
                reinterpret_cast<__half *>(w + qs)[i] =
                    __float2half(scale * (0.5f + 0.5f * fabsf(urand(seed + 1, (uint64_t)i))) /
                                 (t == GGX_TYPE_Q8_0 ? 127.0f : 8.0f));
            break;
        case GGX_TYPE_Q4_X: /* d ~ scale / 64 (levels 0..127), m ~ -scale: values in about +-scale */
            if (i < nq) w[i] = (uint8_t)(mix64(seed ^ (uint64_t)i) & 0xff);
            if (i < n / 32)
                reinterpret_cast<__half2 *>(w + qs)[i] =
                    __floats2half2_rn(scale * (0.5f + 0.5f * fabsf(urand(seed + 1, (uint64_t)i))) / 64.0f,
                                      -scale * (0.5f + 0.5f * fabsf(urand(seed + 2, (uint64_t)i))));
            break;
        default: break;
        }
    }
}

} // namespace

size_t ggx_cuda_weight_bytes(enum ggx_type t, int64_t rows, int64_t cols) {
    /* + 16: mvt_kernel's bulk copies of a row's scales end at the next 16-byte boundary */
    if (ggx_cuda_repacked(t))
        return ggx_cuda_qs_bytes(t, rows, cols) + (size_t)rows * (size_t)(cols / 32) * ggx_cuda_sc_bytes(t) + 16;
    return ggx_row_size(t, cols) * (size_t)rows;
}

cudaError_t ggx_cuda_get_rows(cudaStream_t s, enum ggx_type t, const void *table, int64_t V,
                              int64_t cols, const int32_t *ids, int n, float *dst) {
    if (n <= 0) return cudaSuccess;
    dim3 grid((unsigned)((cols + 255) / 256 > 64 ? 64 : (cols + 255) / 256), (unsigned)n);
    GGX_LAUNCH(get_rows_kernel, grid, 256, 0, s, t, static_cast<const uint8_t *>(table), V, cols, ids, n, dst);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_binary(cudaStream_t s, int op, const float *a, const float *b, float *dst,
                            int64_t n, int64_t bcols) {
    if (n <= 0) return cudaSuccess;
    GGX_LAUNCH(binary_kernel, ew_blocks(n), EW_THREADS, 0, s, op, a, b, dst, n, bcols);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_soft_cap(cudaStream_t s, const float *x, const float *bias, float *dst,
                              int64_t n, int64_t cols, float cap) {
    if (n <= 0) return cudaSuccess;
    GGX_LAUNCH(soft_cap_kernel, ew_blocks(n), EW_THREADS, 0, s, x, bias, dst, n, cols, cap);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_rms_norm(cudaStream_t s, const float *x, const float *w, float *dst,
                              int64_t rows, int64_t cols, float eps) {
    if (rows <= 0) return cudaSuccess;
    const int th = cols >= 1024 ? 1024 : (cols >= 256 ? 256 : 64);
    GGX_LAUNCH(rms_norm_kernel, (unsigned)rows, th, 0, s, x, w, dst, cols, eps);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_add_rms_norm(cudaStream_t s, const float *a, const float *b, int64_t bcols,
                                  float *x, const float *w, float *y, int64_t rows, int64_t cols,
                                  float eps) {
    if (rows <= 0) return cudaSuccess;
    const int th = cols >= 1024 ? 1024 : (cols >= 256 ? 256 : 64);
    GGX_LAUNCH(add_rms_norm_kernel, (unsigned)rows, th, 0, s, a, b, bcols, x, w, y, cols, eps);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_head_norm(cudaStream_t s, const float *x, const float *w, float *dst,
                               int64_t rows, int n_heads, int64_t D, float eps) {
    if (rows <= 0) return cudaSuccess;
    const int64_t nr = rows * n_heads;
    const bool al = (((uintptr_t)x | (uintptr_t)w | (uintptr_t)dst) & 15) == 0;
    static const bool block_only = getenv("GGX_CUDA_HEAD_NORM_BLOCK") != nullptr; /* (A/B: the old kernel) */
    if (al && D % 4 == 0 && D <= 1024 && !block_only) {
        const unsigned g = (unsigned)((nr + 7) / 8);
        const int d = (int)D;
        if (D <= 128) GGX_LAUNCH(head_norm_warp_kernel<1>, g, 256, 0, s, x, w, dst, nr, n_heads, d, eps);
        else if (D <= 256) GGX_LAUNCH(head_norm_warp_kernel<2>, g, 256, 0, s, x, w, dst, nr, n_heads, d, eps);
        else if (D <= 512) GGX_LAUNCH(head_norm_warp_kernel<4>, g, 256, 0, s, x, w, dst, nr, n_heads, d, eps);
        else GGX_LAUNCH(head_norm_warp_kernel<8>, g, 256, 0, s, x, w, dst, nr, n_heads, d, eps);
        return cudaGetLastError();
    }
    const int th = D >= 512 ? 512 : (D >= 128 ? 128 : 32);
    GGX_LAUNCH(head_norm_kernel, (unsigned)nr, th, 0, s, x, w, dst, n_heads, D, eps);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_dequant(cudaStream_t s, enum ggx_type t, const void *w, int64_t rows,
                             int64_t cols, void *dst, enum ggx_type to) {
    const uint8_t *wb = static_cast<const uint8_t *>(w);
    const int64_t n = rows * cols;
    if (to == GGX_TYPE_BF16 && ggx_cuda_repacked(t)) {
        GGX_LAUNCH(dequant_q_bf16_kernel, ew_blocks(n / 32), EW_THREADS, 0, s, 
            t, wb, rows, cols, static_cast<__nv_bfloat16 *>(dst));
    } else if (to == GGX_TYPE_BF16) {
        GGX_LAUNCH((dequant_kernel<__nv_bfloat16>), ew_blocks(n), EW_THREADS, 0, s, 
            t, wb, rows, cols, static_cast<__nv_bfloat16 *>(dst));
    } else {
        GGX_LAUNCH((dequant_kernel<float>), ew_blocks(n), EW_THREADS, 0, s, t, wb, rows, cols,
                                                                  static_cast<float *>(dst));
    }
    return cudaGetLastError();
}

cudaError_t ggx_cuda_f32_to_bf16(cudaStream_t s, const float *x, uint16_t *dst, int64_t n) {
    return ggx_cuda_f32_to_bf16_op(s, -1, x, nullptr, dst, n);
}
cudaError_t ggx_cuda_f32_to_bf16_op(cudaStream_t s, int op, const float *x, const float *b, uint16_t *dst,
                                    int64_t n) {
    if (n <= 0) return cudaSuccess;
    GGX_LAUNCH(f32_to_bf16_kernel, ew_blocks(n), EW_THREADS, 0, s, op, x, b,
               reinterpret_cast<__nv_bfloat16 *>(dst), n);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_fill_random_dev(cudaStream_t s, enum ggx_type t, void *w, int64_t rows,
                                     int64_t cols, uint64_t seed, float scale) {
    const int64_t n = rows * cols;
    if (n <= 0) return cudaSuccess;
    GGX_LAUNCH(fill_kernel, ew_blocks(n), EW_THREADS, 0, s, t, static_cast<uint8_t *>(w), rows, cols, seed, scale);
    return cudaGetLastError();
}
