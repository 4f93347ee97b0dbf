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

/* Our better 4-bit type (q4_x). Its traits are these macros; its layout is defined in
 * quants.c / docs/format.md by whoever implements it. */
#ifndef GGX_Q4_X_BLOCK
#define GGX_Q4_X_BLOCK 32
#define GGX_Q4_X_BYTES 20
#define GGX_Q4_X_BPW 5.0
#define GGX_Q4_X_DESC "int4, f16 scale + f16 min per 32, searched scale"
#endif

/* Quantize n floats (n a multiple of the block size) into dst. Returns 0, or -1 if t is not a
 * quantized type or n is not a multiple of its block. `imatrix` is reserved (pass NULL). */
int ggx_quantize_row(enum ggx_type t, const float *src, void *dst, int64_t n);
/* Dequantize n elements of a quantized type to f32. */
void ggx_dequantize_row(enum ggx_type t, const void *src, float *dst, int64_t n);

#endif
