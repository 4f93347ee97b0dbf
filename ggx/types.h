/*
 * types.h — element types of tensors (in .ggx files and in memory) and their traits.
 *
 *     size_t bytes = ggx_row_size(GGX_TYPE_Q8_0, 4096);   // 4096/32 blocks * 34 bytes
 *
 * Block-quantized types store a row of n elements as n / blck_size blocks of type_size bytes;
 * a row's length must be a multiple of the block size. Values of enum ggx_type are written into
 * .ggx files: never renumber, only append.
 */
#ifndef GGX_TYPES_H
#define GGX_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum ggx_type {
    GGX_TYPE_F32 = 0,
    GGX_TYPE_F16 = 1,
    GGX_TYPE_BF16 = 2,
    GGX_TYPE_Q8_0 = 3,  /* 32 x int8 + f16 scale (34 B) */
    GGX_TYPE_Q4_0 = 4,  /* 32 x 4-bit + f16 scale (18 B), ggml layout */
    GGX_TYPE_Q4_X = 5,  /* our better 4-bit type (ggx/quants.h documents the layout) */
    GGX_TYPE_I32 = 6,
    GGX_TYPE_I8 = 7,
    GGX_TYPE_U8 = 8,
    GGX_TYPE_COUNT
};

typedef struct ggx_type_traits {
    const char *name;     /* "f32", "q8_0", ... */
    int blck_size;        /* elements per block (1 for plain types) */
    size_t type_size;     /* bytes per block */
    int is_quantized;
    double bits_per_weight;
    const char *desc;
} ggx_type_traits;

const ggx_type_traits *ggx_type_traits_of(enum ggx_type t); /* NULL if out of range */
int ggx_type_valid(uint32_t t);
const char *ggx_type_name(enum ggx_type t);
/* Parse "f32"/"q8_0"/...; returns -1 if unknown. */
int ggx_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t ggx_row_size(enum ggx_type t, int64_t n);

/* ---- half-precision conversions (scalar reference; round-to-nearest-even) ---- */
typedef uint16_t ggx_fp16_t;
typedef uint16_t ggx_bf16_t;

static inline float ggx_bf16_to_f32(ggx_bf16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline ggx_bf16_t ggx_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ggx_bf16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ggx_bf16_t)(u >> 16);
}
float ggx_fp16_to_f32(ggx_fp16_t h);
ggx_fp16_t ggx_f32_to_fp16(float f);

/* Convert a row of n elements of a plain or quantized type to f32 (reference path). */
void ggx_to_f32(enum ggx_type t, const void *src, float *dst, int64_t n);

#endif
