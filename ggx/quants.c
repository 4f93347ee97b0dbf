/* quants.c — reference quantize/dequantize for block types (see quants.h). */
#include "quants.h"

#include <assert.h>
#include <math.h>

static_assert(sizeof(ggx_block_q8_0) == 34, "q8_0 block is 34 bytes");
static_assert(sizeof(ggx_block_q4_0) == 18, "q4_0 block is 18 bytes");

static void quantize_q8_0(const float *x, ggx_block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_QK8_0; b++, x += GGX_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < GGX_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[b].d = ggx_f32_to_fp16(d);
        for (int j = 0; j < GGX_QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void dequantize_q8_0(const ggx_block_q8_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_QK8_0; b++) {
        const float d = ggx_fp16_to_f32(x[b].d);
        for (int j = 0; j < GGX_QK8_0; j++) *y++ = d * (float)x[b].qs[j];
    }
}

/* ggml's q4_0: the scale maps the signed value of largest magnitude to -8. */
static void quantize_q4_0(const float *x, ggx_block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_QK4_0; b++, x += GGX_QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GGX_QK4_0; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        y[b].d = ggx_f32_to_fp16(d);
        for (int j = 0; j < GGX_QK4_0 / 2; j++) {
            int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequantize_q4_0(const ggx_block_q4_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_QK4_0; b++, y += GGX_QK4_0) {
        const float d = ggx_fp16_to_f32(x[b].d);
        for (int j = 0; j < GGX_QK4_0 / 2; j++) {
            y[j] = d * (float)((x[b].qs[j] & 0x0f) - 8);
            y[j + 16] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

int ggx_quantize_row(enum ggx_type t, const float *src, void *dst, int64_t n) {
    const ggx_type_traits *tr = ggx_type_traits_of(t);
    if (!tr || !tr->is_quantized || n % tr->blck_size) return -1;
    switch (t) {
    case GGX_TYPE_Q8_0: quantize_q8_0(src, dst, n); return 0;
    case GGX_TYPE_Q4_0: quantize_q4_0(src, dst, n); return 0;
    default: return -1; /* q4_x: not implemented yet */
    }
}

void ggx_dequantize_row(enum ggx_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case GGX_TYPE_Q8_0: dequantize_q8_0(src, dst, n); return;
    case GGX_TYPE_Q4_0: dequantize_q4_0(src, dst, n); return;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = NAN; /* unknown: poison, never silently zero */
        return;
    }
}
