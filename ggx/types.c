/* types.c — type traits and scalar half-precision conversions (see types.h). */
#include "types.h"

#include "quants.h"

#include <string.h>

static const ggx_type_traits k_traits[GGX_TYPE_COUNT] = {
    [GGX_TYPE_F32] = {"f32", 1, 4, 0, 32.0, "IEEE float32"},
    [GGX_TYPE_F16] = {"f16", 1, 2, 0, 16.0, "IEEE float16"},
    [GGX_TYPE_BF16] = {"bf16", 1, 2, 0, 16.0, "bfloat16"},
    [GGX_TYPE_Q8_0] = {"q8_0", 32, 34, 1, 8.5, "int8, one f16 scale per 32"},
    [GGX_TYPE_Q4_0] = {"q4_0", 32, 18, 1, 4.5, "int4, one f16 scale per 32 (ggml layout)"},
    [GGX_TYPE_Q4_X] = {"q4_x", GGX_Q4_X_BLOCK, GGX_Q4_X_BYTES, 1, GGX_Q4_X_BPW, GGX_Q4_X_DESC},
    [GGX_TYPE_I32] = {"i32", 1, 4, 0, 32.0, "int32"},
    [GGX_TYPE_I8] = {"i8", 1, 1, 0, 8.0, "int8"},
    [GGX_TYPE_U8] = {"u8", 1, 1, 0, 8.0, "uint8 / raw bytes"},
};

int ggx_type_valid(uint32_t t) { return t < GGX_TYPE_COUNT; }

const ggx_type_traits *ggx_type_traits_of(enum ggx_type t) {
    return ggx_type_valid((uint32_t)t) ? &k_traits[t] : NULL;
}

const char *ggx_type_name(enum ggx_type t) {
    return ggx_type_valid((uint32_t)t) ? k_traits[t].name : "invalid";
}

int ggx_type_from_name(const char *name) {
    for (int i = 0; i < GGX_TYPE_COUNT; i++)
        if (strcmp(k_traits[i].name, name) == 0) return i;
    return -1;
}

size_t ggx_row_size(enum ggx_type t, int64_t n) {
    const ggx_type_traits *tr = ggx_type_traits_of(t);
    if (!tr || n < 0 || n % tr->blck_size) return 0;
    return (size_t)(n / tr->blck_size) * tr->type_size;
}

float ggx_fp16_to_f32(ggx_fp16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            mant &= 0x3ff;
            u = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

ggx_fp16_t ggx_f32_to_fp16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (ggx_fp16_t)(sign | 0x7e00); /* NaN */
    if (absu >= 0x477ff000u) return (ggx_fp16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absu < 0x38800000u) { /* subnormal or zero in fp16 */
        if (absu < 0x33000000u) return (ggx_fp16_t)sign;
        uint32_t e = absu >> 23, m = (absu & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        /* value = m * 2^(e-150); fp16 subnormal unit = 2^-24 -> mantissa = m >> (126-e) */
        uint32_t r = m >> shift, half = 1u << (shift - 1);
        uint32_t rem = m & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (ggx_fp16_t)(sign | r);
    }
    uint32_t r = absu - 0x38000000u; /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);  /* round to nearest even */
    return (ggx_fp16_t)(sign | (r >> 13));
}

void ggx_to_f32(enum ggx_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case GGX_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case GGX_TYPE_F16: {
        const ggx_fp16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ggx_fp16_to_f32(s[i]);
        return;
    }
    case GGX_TYPE_BF16: {
        const ggx_bf16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ggx_bf16_to_f32(s[i]);
        return;
    }
    case GGX_TYPE_I32: {
        const int32_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return;
    }
    default: ggx_dequantize_row(t, src, dst, n); return;
    }
}
