/*
 * quants.h — block-quantized weight types: layouts and the reference (scalar) quantize and
 * dequantize routines. Every SIMD kernel elsewhere is tested against these.
 *
 *     uint8_t *dst = malloc(ggx_row_size(GGX_TYPE_Q8_0, n));
 *     ggx_quantize_row(GGX_TYPE_Q8_0, src_f32, dst, n);       // n % 32 == 0
 *     ggx_dequantize_row(GGX_TYPE_Q8_0, dst, back_f32, n);
 *
 * Layouts are pinned with static_assert in quants.c and documented in docs/format.md.
 */
#ifndef GGX_QUANTS_H
#define GGX_QUANTS_H

#include "types.h"

#define GGX_QK8_0 32
typedef struct {
    ggx_fp16_t d;            /* scale: x = d * q */
    int8_t qs[GGX_QK8_0];
} ggx_block_q8_0;            /* 34 bytes */

#define GGX_QK4_0 32
typedef struct {
    ggx_fp16_t d;            /* scale: x = d * (q - 8) */
    uint8_t qs[GGX_QK4_0 / 2]; /* element j in low nibble of qs[j], element j+16 in high nibble */
} ggx_block_q4_0;            /* 18 bytes */

/* q4_x: our better 4-bit type. 32 weights, asymmetric, NON-uniform levels:
 *     x = d * ggx_q4_x_levels[q] + m        q in 0..15, levels in 0..127 (denser near the middle)
 * d and m are searched per block to minimize the squared error (a scale sweep plus least-squares
 * refits), not taken from min/max. 20 bytes = 5.0 bits/weight. The levels are integers so the CPU
 * kernels can look them up with one byte shuffle and feed an unsigned x signed int8 dot product;
 * the dot with int8 activations a = da * qa is d*da*sum(L[q]*qa) + m*da*sum(qa). */
#define GGX_Q4_X_BLOCK 32
#define GGX_Q4_X_BYTES 20
#define GGX_Q4_X_BPW 5.0
#define GGX_Q4_X_DESC "int4 non-uniform levels, f16 scale + f16 min per 32, searched"
typedef struct {
    ggx_fp16_t d;            /* scale */
    ggx_fp16_t m;            /* offset (usually about the block minimum) */
    uint8_t qs[GGX_Q4_X_BLOCK / 2]; /* level index j in low nibble of qs[j], j+16 in high nibble */
} ggx_block_q4_x;            /* 20 bytes */

/* The 16 levels of q4_x (Lloyd-optimized for Gaussian-like blocks of 32, scaled to 0..127). */
extern const uint8_t ggx_q4_x_levels[16];

/* Quantize n floats (n a multiple of the block size) into dst. Returns 0, or -1 if t is not a
 * quantized type, n is not a multiple of its block, or src holds a NaN/Inf or a value with
 * |x| > 60000 (too large for the f16 scales; dst is then unspecified). Pure and thread-safe:
 * callers split rows between threads. */
int ggx_quantize_row(enum ggx_type t, const float *src, void *dst, int64_t n);
/* Dequantize n elements of a quantized type to f32. */
void ggx_dequantize_row(enum ggx_type t, const void *src, float *dst, int64_t n);

#endif
