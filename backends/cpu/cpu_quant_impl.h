/*
 * cpu_quant_impl.h — internals shared by cpu_quant.c (dispatch, scalar reference) and the SIMD
 * files quant_avx512.c / quant_avx2.c. Not part of the backend interface (cpu_quant.h).
 *
 * Prepared activations ("qx"), one row of `cols` = 32 * nb elements:
 *     int8_t qs[32 * nb];   // x ~ dx[b] * qs, |qs| <= 127, block b = elements 32b..32b+31
 *     float  dx[nb];        // per-block scale
 *     float  s[nb];         // dx[b] * sum of the block's qs (for offsets in the weight types)
 * For q8_0 weights qs is in natural order. For q4_0 / q4_x it is arranged to match how the
 * kernels unpack nibbles: each full group of 4 blocks (128 elements, b = 4g..4g+3) stores
 *     [b0 e0..15 | b1 e0..15 | b2 e0..15 | b3 e0..15 | b0 e16..31 | b1 e16..31 | ...]
 * (the low-nibble halves, then the high-nibble halves), and the trailing nb % 4 blocks are in
 * natural order. qx_index() maps (block, element) to the byte.
 *
 * Rows start on 64-byte boundaries (whole-vector activation loads never straddle a cache line):
 * ggx_cpu_qx_size() is the row stride, a multiple of 64 with 64 bytes of slack, and row j of a
 * buffer is at qx_row(buffer, stride, j) = the buffer's first 64-byte boundary + j * stride.
 */
#ifndef GGX_CPU_QUANT_IMPL_H
#define GGX_CPU_QUANT_IMPL_H

#include "quants.h"

#include <stdint.h>

#define QX_BLOCK 32
#define QX_BYTES_PER_BLOCK (QX_BLOCK + 2 * (int64_t)sizeof(float))

/* row stride of a prepared buffer: the row rounded up to 64 bytes, + 64 for aligning the start */
static inline size_t qx_stride(int64_t nb) {
    return (size_t)((nb * QX_BYTES_PER_BLOCK + 63) & ~(int64_t)63) + 64;
}
static inline uint8_t *qx_row(const void *qx, size_t stride, int64_t j) {
    const uintptr_t a = ((uintptr_t)qx + 63) & ~(uintptr_t)63;
    return (uint8_t *)a + (size_t)j * stride;
}

static inline int qx_split(enum ggx_type t) { return t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X; }

static inline int64_t qx_index(int split, int64_t nb, int64_t b, int e) {
    if (!split || b >= (nb & ~(int64_t)3)) return b * 32 + e;
    const int64_t g = b >> 2, i = b & 3;
    return g * 128 + (e >= 16 ? 64 : 0) + i * 16 + (e & 15);
}

static inline const float *qx_dx(const uint8_t *qx, int64_t nb) {
    return (const float *)(const void *)(qx + nb * QX_BLOCK);
}
static inline const float *qx_s(const uint8_t *qx, int64_t nb) { return qx_dx(qx, nb) + nb; }

/* dot(W row of nb blocks, prepared activation row) */
typedef float (*ggx_cpu_qdot_fn)(const void *w, const uint8_t *qx, int64_t nb);
/* dequantize nb blocks to 32 * nb floats */
typedef void (*ggx_cpu_qdeq_fn)(const void *w, float *dst, int64_t nb);

/* out[j] = dot(W row, prepared row qx + j * qrow) for j < n: the weight row is unpacked once
 * per up to 4 activation rows */
typedef void (*ggx_cpu_qdotn_fn)(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb,
                                 float *out);

void ggx_cpu_dotn_q8_0_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out);
void ggx_cpu_dotn_q4_0_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out);
void ggx_cpu_dotn_q4_x_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out);
/* out[0], out[1] = dot(W rows w and w + wstride, one prepared row qx): two weight rows share each
 * activation load (decode, n = 1) */
void ggx_cpu_dot2_q4_0_avx512(const void *w, size_t wstride, const uint8_t *qx, int64_t nb, float *out);
void ggx_cpu_dot2_q4_x_avx512(const void *w, size_t wstride, const uint8_t *qx, int64_t nb, float *out);
/* one activation row (32 * nb floats) into its prepared layout; byte-identical to the scalar code */
void ggx_cpu_qx_row_avx512(const float *x, int64_t nb, int split, uint8_t *q);
void ggx_cpu_deq_q8_0_avx512(const void *w, float *dst, int64_t nb);
void ggx_cpu_deq_q4_0_avx512(const void *w, float *dst, int64_t nb);
void ggx_cpu_deq_q4_x_avx512(const void *w, float *dst, int64_t nb);

float ggx_cpu_dot_q8_0_avx2(const void *w, const uint8_t *qx, int64_t nb);
float ggx_cpu_dot_q4_0_avx2(const void *w, const uint8_t *qx, int64_t nb);
float ggx_cpu_dot_q4_x_avx2(const void *w, const uint8_t *qx, int64_t nb);
void ggx_cpu_deq_q8_0_avx2(const void *w, float *dst, int64_t nb);
void ggx_cpu_deq_q4_0_avx2(const void *w, float *dst, int64_t nb);
void ggx_cpu_deq_q4_x_avx2(const void *w, float *dst, int64_t nb);

/* Which path runs: 2 = AVX-512 VNNI, 1 = AVX2+FMA, 0 = scalar. Tests pin one with
 * ggx_cpu_quant_set_level() (clamped to what the CPU has); returns the level now in force. */
int ggx_cpu_quant_level(void);
int ggx_cpu_quant_set_level(int level);

#endif
