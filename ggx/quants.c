/* quants.c — reference quantize/dequantize for block types (see quants.h). Plain C: every SIMD
 * kernel (backends/cpu/quant_*.c) is tested against these. */
#include "quants.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

static_assert(sizeof(ggx_block_q8_0) == 34, "q8_0 block is 34 bytes");
static_assert(sizeof(ggx_block_q4_0) == 18, "q4_0 block is 18 bytes");
static_assert(sizeof(ggx_block_q4_x) == GGX_Q4_X_BYTES, "q4_x block is 20 bytes");
static_assert(offsetof(ggx_block_q4_x, m) == 2 && offsetof(ggx_block_q4_x, qs) == 4,
              "q4_x layout: d, m, qs");
static_assert(GGX_Q4_X_BYTES * 8 <= 5 * GGX_Q4_X_BLOCK, "q4_x: at most 5 bits/weight");

/* Largest |x| any block may hold: keeps every f16 scale/offset finite. */
#define QUANT_MAX_ABS 60000.0f

/* ---------------------------------------------------------------- q8_0 */
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

/* ---------------------------------------------------------------- q4_0 */
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

/* ---------------------------------------------------------------- q4_x */
/* Levels: a Lloyd-Max fit of 16 points to the values of Gaussian blocks of 32 after the best
 * affine map (docs/quantization.md), rescaled to 0..127 and rounded. Non-uniform levels cut the
 * squared error by ~9% against uniform levels at the same size; the searched scale/offset by
 * ~35% against q4_0. */
const uint8_t ggx_q4_x_levels[16] = {0, 10, 20, 29, 37, 45, 52, 59, 65, 72, 79, 86, 94, 103, 113, 127};

/* Midpoints between consecutive levels and the steps between them: the nearest level to a is
 * level sum_t [a > mid[t]] * step[t], its index sum_t [a > mid[t]]. Branch-free and
 * vectorizable (the quantizer evaluates it ~500 times per block); a NaN or a < 0 gives level 0,
 * a >= 127 level 15; a tie at a midpoint goes to the lower level. */
static const float k_mid[15] = {5.0f,  15.0f, 24.5f, 33.0f, 41.0f,  48.5f,  55.5f, 62.0f,
                                68.5f, 75.5f, 82.5f, 90.0f, 98.5f, 108.0f, 120.0f};
static const float k_step[15] = {10, 10, 9, 8, 8, 7, 7, 6, 7, 7, 7, 8, 9, 10, 14};

static inline int q4x_index(float a) {
    int k = 0;
    for (int t = 0; t < 15; t++) k += a > k_mid[t];
    return k;
}

/* Assign x to the nearest levels of a = isc * (x - x0), then fit (d, m) by least squares for
 * x ~ d * L + m. Returns the squared error less the constant sum(x^2) (at the optimum the
 * residual is orthogonal to L and 1, so err = Sxx - d Slx - m Sx): only differences between
 * candidates matter. */
static double q4x_try(const float *x, float isc, float x0, float *d, float *m) {
    float lv[GGX_Q4_X_BLOCK];
    for (int j = 0; j < GGX_Q4_X_BLOCK; j++) {
        const float a = isc * (x[j] - x0);
        float l = 0.0f;
        for (int t = 0; t < 15; t++) l += a > k_mid[t] ? k_step[t] : 0.0f;
        lv[j] = l;
    }
    float sll = 0, sl = 0, slx = 0, sx = 0;
    for (int j = 0; j < GGX_Q4_X_BLOCK; j++) {
        sll += lv[j] * lv[j]; sl += lv[j]; slx += lv[j] * x[j]; sx += x[j];
    }
    const double n = GGX_Q4_X_BLOCK, det = (double)sll * n - (double)sl * sl;
    double dd = 0, mm = sx / n;
    if (det > 1e-6 * sll * n) {
        dd = (n * slx - (double)sl * sx) / det;
        mm = ((double)sll * sx - (double)sl * slx) / det;
    }
    *d = (float)dd;
    *m = (float)mm;
    return -(dd * slx + mm * sx);
}

static void quantize_q4_x_block(const float *x, ggx_block_q4_x *y) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < GGX_Q4_X_BLOCK; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
    float bd = 0.0f, bm = mn;
    if (mx > mn) {
        /* sweep the scale around max-min -> 0..127, refitting (d, m) by least squares */
        double best = INFINITY;
        for (int is = -6; is <= 6; is++) {
            float d, m;
            const double e = q4x_try(x, 127.0f * (1.0f + 0.015f * (float)is) / (mx - mn), mn, &d, &m);
            if (e < best) { best = e; bd = d; bm = m; }
        }
        /* Lloyd steps: reassign to the nearest level, refit, while it improves */
        for (int it = 0; it < 4 && bd > 0.0f; it++) {
            float d, m;
            const double e = q4x_try(x, 1.0f / bd, bm, &d, &m);
            if (!(e < best)) break;
            best = e; bd = d; bm = m;
        }
        if (!(bd > 0.0f)) { bd = (mx - mn) / 127.0f; bm = mn; }
    }
    /* assign with the f16-rounded scale and offset: what the reader will see */
    y->d = ggx_f32_to_fp16(bd);
    y->m = ggx_f32_to_fp16(bm);
    const float d = ggx_fp16_to_f32(y->d), m = ggx_fp16_to_f32(y->m), id = d > 0.0f ? 1.0f / d : 0.0f;
    uint8_t K[GGX_Q4_X_BLOCK];
    for (int j = 0; j < GGX_Q4_X_BLOCK; j++) K[j] = (uint8_t)q4x_index(id * (x[j] - m));
    for (int j = 0; j < GGX_Q4_X_BLOCK / 2; j++) y->qs[j] = (uint8_t)(K[j] | (K[j + 16] << 4));
}

static void quantize_q4_x(const float *x, ggx_block_q4_x *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_Q4_X_BLOCK; b++) quantize_q4_x_block(x + b * GGX_Q4_X_BLOCK, &y[b]);
}

static void dequantize_q4_x(const ggx_block_q4_x *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / GGX_Q4_X_BLOCK; b++, y += GGX_Q4_X_BLOCK) {
        const float d = ggx_fp16_to_f32(x[b].d), m = ggx_fp16_to_f32(x[b].m);
        for (int j = 0; j < GGX_Q4_X_BLOCK / 2; j++) {
            y[j] = d * (float)ggx_q4_x_levels[x[b].qs[j] & 0x0f] + m;
            y[j + 16] = d * (float)ggx_q4_x_levels[x[b].qs[j] >> 4] + m;
        }
    }
}

/* ---------------------------------------------------------------- dispatch */
int ggx_quantize_row(enum ggx_type t, const float *src, void *dst, int64_t n) {
    const ggx_type_traits *tr = ggx_type_traits_of(t);
    if (!tr || !tr->is_quantized || n < 0 || n % tr->blck_size) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(src[i]) <= QUANT_MAX_ABS)) return -1; /* NaN, Inf or f16-scale overflow */
    switch (t) {
    case GGX_TYPE_Q8_0: quantize_q8_0(src, dst, n); return 0;
    case GGX_TYPE_Q4_0: quantize_q4_0(src, dst, n); return 0;
    case GGX_TYPE_Q4_X: quantize_q4_x(src, dst, n); return 0;
    default: return -1;
    }
}

void ggx_dequantize_row(enum ggx_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case GGX_TYPE_Q8_0: dequantize_q8_0(src, dst, n); return;
    case GGX_TYPE_Q4_0: dequantize_q4_0(src, dst, n); return;
    case GGX_TYPE_Q4_X: dequantize_q4_x(src, dst, n); return;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = NAN; /* unknown: poison, never silently zero */
        return;
    }
}
