/* cpu_quant.c — quantized matmul for the CPU backend (cpu_quant.h): runtime ISA dispatch, the
 * activation quantizer, and the scalar reference kernels every SIMD path is tested against. */
#include "cpu_quant.h"

#include "cpu_quant_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------------------------- dispatch */
static atomic_int g_level = -1;     /* level in force; -1 = not detected yet */
static atomic_int g_max_level = -1; /* what this CPU supports */

static int detect_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

int ggx_cpu_quant_level(void) {
    int l = atomic_load(&g_level);
    if (l < 0) {
        l = detect_level();
        atomic_store(&g_max_level, l);
        atomic_store(&g_level, l);
    }
    return l;
}

int ggx_cpu_quant_set_level(int level) {
    ggx_cpu_quant_level();
    const int max = atomic_load(&g_max_level);
    if (level < 0 || level > max) level = max;
    atomic_store(&g_level, level);
    return level;
}

void ggx_cpu_quant_force_scalar(int on) { ggx_cpu_quant_set_level(on ? 0 : -1); }

int ggx_cpu_quant_supported(enum ggx_type t) {
    return t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X;
}

int ggx_cpu_qmatmul_prefill_ok(enum ggx_type t) {
    return ggx_cpu_quant_supported(t) && ggx_cpu_quant_level() >= 2;
}

/* ---------------------------------------------------------------- activations */
size_t ggx_cpu_qx_size(enum ggx_type t, int64_t cols) {
    if (!ggx_cpu_quant_supported(t) || cols <= 0 || cols % QX_BLOCK) return 0;
    return qx_stride(cols / QX_BLOCK);
}

void ggx_cpu_qx_prepare(enum ggx_type t, const float *x, int64_t n, int64_t cols, void *qx) {
    const size_t row = ggx_cpu_qx_size(t, cols);
    if (!row) return;
    const int64_t nb = cols / QX_BLOCK;
    const int split = qx_split(t);
    const int simd = ggx_cpu_quant_level() >= 2;
    for (int64_t j = 0; j < n; j++) {
        const float *xr = x + j * cols;
        uint8_t *q = qx_row(qx, row, j);
        if (simd) {
            ggx_cpu_qx_row_avx512(xr, nb, split, q);
            continue;
        }
        float *dx = (float *)(void *)(q + nb * QX_BLOCK), *s = dx + nb;
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = xr + b * QX_BLOCK;
            float amax = 0.0f;
            for (int e = 0; e < QX_BLOCK; e++) amax = fmaxf(amax, fabsf(xb[e]));
            const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            int sum = 0;
            for (int e = 0; e < QX_BLOCK; e++) {
                const int v = (int)lrintf(xb[e] * id); /* |v| <= 127 */
                q[qx_index(split, nb, b, e)] = (uint8_t)(int8_t)v;
                sum += v;
            }
            dx[b] = d;
            s[b] = d * (float)sum;
        }
    }
}

/* ---------------------------------------------------------------- scalar reference */
static int block_isum_q8_0(const ggx_block_q8_0 *w, const int8_t *q, int64_t nb, int64_t b) {
    int isum = 0;
    for (int e = 0; e < 32; e++) isum += w->qs[e] * q[qx_index(0, nb, b, e)];
    return isum;
}

static float dot_q8_0_ref(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q8_0 *w = wv;
    const int8_t *q = (const int8_t *)qx;
    const float *dx = qx_dx(qx, nb);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++)
        sum += ggx_fp16_to_f32(w[b].d) * dx[b] * (float)block_isum_q8_0(&w[b], q, nb, b);
    return sum;
}

static float dot_q4_0_ref(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_0 *w = wv;
    const int8_t *q = (const int8_t *)qx;
    const float *dx = qx_dx(qx, nb);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int isum = 0;
        for (int e = 0; e < 16; e++) {
            isum += ((w[b].qs[e] & 15) - 8) * q[qx_index(1, nb, b, e)];
            isum += ((w[b].qs[e] >> 4) - 8) * q[qx_index(1, nb, b, e + 16)];
        }
        sum += ggx_fp16_to_f32(w[b].d) * dx[b] * (float)isum;
    }
    return sum;
}

static float dot_q4_x_ref(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_x *w = wv;
    const int8_t *q = (const int8_t *)qx;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int isum = 0;
        for (int e = 0; e < 16; e++) {
            isum += ggx_q4_x_levels[w[b].qs[e] & 15] * q[qx_index(1, nb, b, e)];
            isum += ggx_q4_x_levels[w[b].qs[e] >> 4] * q[qx_index(1, nb, b, e + 16)];
        }
        /* block = d * L + m:  dot = d * dx * sum(L q) + m * dx * sum(q) */
        sum += ggx_fp16_to_f32(w[b].d) * dx[b] * (float)isum + ggx_fp16_to_f32(w[b].m) * s[b];
    }
    return sum;
}

static void deq_ref_q8_0(const void *w, float *dst, int64_t nb) {
    ggx_dequantize_row(GGX_TYPE_Q8_0, w, dst, nb * 32);
}
static void deq_ref_q4_0(const void *w, float *dst, int64_t nb) {
    ggx_dequantize_row(GGX_TYPE_Q4_0, w, dst, nb * 32);
}
static void deq_ref_q4_x(const void *w, float *dst, int64_t nb) {
    ggx_dequantize_row(GGX_TYPE_Q4_X, w, dst, nb * 32);
}

/* ---------------------------------------------------------------- kernels by level */
static ggx_cpu_qdot_fn pick_dot(enum ggx_type t) {
    const int l = ggx_cpu_quant_level();
    switch (t) {
    case GGX_TYPE_Q8_0: return l >= 1 ? ggx_cpu_dot_q8_0_avx2 : dot_q8_0_ref;
    case GGX_TYPE_Q4_0: return l >= 1 ? ggx_cpu_dot_q4_0_avx2 : dot_q4_0_ref;
    case GGX_TYPE_Q4_X: return l >= 1 ? ggx_cpu_dot_q4_x_avx2 : dot_q4_x_ref;
    default: return NULL;
    }
}

/* two weight rows x one activation row (AVX-512, q4 types); NULL: none */
typedef void (*ggx_cpu_qdot2_fn)(const void *w, size_t wstride, const uint8_t *qx, int64_t nb, float *out);
static ggx_cpu_qdot2_fn pick_dot2(enum ggx_type t) {
    if (ggx_cpu_quant_level() < 2) return NULL;
    switch (t) {
    case GGX_TYPE_Q4_0: return ggx_cpu_dot2_q4_0_avx512;
    case GGX_TYPE_Q4_X: return ggx_cpu_dot2_q4_x_avx512;
    default: return NULL;
    }
}

/* the multi-row kernels (AVX-512 only); NULL: use pick_dot row by row */
static ggx_cpu_qdotn_fn pick_dotn(enum ggx_type t) {
    if (ggx_cpu_quant_level() < 2) return NULL;
    switch (t) {
    case GGX_TYPE_Q8_0: return ggx_cpu_dotn_q8_0_avx512;
    case GGX_TYPE_Q4_0: return ggx_cpu_dotn_q4_0_avx512;
    case GGX_TYPE_Q4_X: return ggx_cpu_dotn_q4_x_avx512;
    default: return NULL;
    }
}

static ggx_cpu_qdeq_fn pick_deq(enum ggx_type t) {
    const int l = ggx_cpu_quant_level();
    switch (t) {
    case GGX_TYPE_Q8_0:
        return l == 2 ? ggx_cpu_deq_q8_0_avx512 : l == 1 ? ggx_cpu_deq_q8_0_avx2 : deq_ref_q8_0;
    case GGX_TYPE_Q4_0:
        return l == 2 ? ggx_cpu_deq_q4_0_avx512 : l == 1 ? ggx_cpu_deq_q4_0_avx2 : deq_ref_q4_0;
    case GGX_TYPE_Q4_X:
        return l == 2 ? ggx_cpu_deq_q4_x_avx512 : l == 1 ? ggx_cpu_deq_q4_x_avx2 : deq_ref_q4_x;
    default: return NULL;
    }
}

void ggx_cpu_qmatmul(enum ggx_type t, const void *W, int64_t cols, const void *qx, int64_t n,
                     float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const ggx_cpu_qdot_fn dot = pick_dot(t);
    const ggx_cpu_qdotn_fn dotn = pick_dotn(t);
    const size_t qrow = ggx_cpu_qx_size(t, cols);
    if (!dot || !qrow) { /* unsupported type or bad cols: poison, never silently zero */
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = r0; r < r1; r++) y[j * ldy + r] = NAN;
        return;
    }
    const int64_t nb = cols / QX_BLOCK;
    const size_t wrow = ggx_row_size(t, cols);
    const uint8_t *q0 = qx_row(qx, qrow, 0);
    const ggx_cpu_qdot2_fn dot2 = n == 1 ? pick_dot2(t) : NULL;
    if (dot2) {
        /* decode: weight rows in pairs sharing the activation loads (the q4 kernels are bound by
         * load and shuffle throughput, not by memory). The pair is (r0 + i, r0 + h + i): two
         * sequential streams through the range, which the hardware prefetchers follow; adjacent
         * pairs (r, r + 1) would start a new stream every second row and run at half the speed. */
        const int64_t h = (r1 - r0) / 2;
        float out[2];
        for (int64_t i = 0; i < h; i++) {
            dot2((const uint8_t *)W + (size_t)(r0 + i) * wrow, (size_t)h * wrow, q0, nb, out);
            y[r0 + i] = out[0];
            y[r0 + h + i] = out[1];
        }
        if (r0 + 2 * h < r1) {
            dotn((const uint8_t *)W + (size_t)(r1 - 1) * wrow, q0, qrow, 1, nb, out);
            y[r1 - 1] = out[0];
        }
        return;
    }
    if (!dotn) {
        /* one weight row at a time: read from memory once, it stays in L1 for the n tokens */
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = (const uint8_t *)W + (size_t)r * wrow;
            for (int64_t j = 0; j < n; j++) y[j * ldy + r] = dot(wr, q0 + (size_t)j * qrow, nb);
        }
        return;
    }
    /* Tokens in blocks whose prepared activations fit in L2 (<= 256 KiB, at most 64 rows); for
     * each block every weight row of [r0, r1) is unpacked once per 4 tokens. With n <= the block
     * (decode, small batches) each weight row is read from memory exactly once; for prefill-sized
     * n the caller's row range (a few dozen rows) stays in L2 between token blocks. */
    int64_t tb = (int64_t)((256u << 10) / qrow);
    tb = tb < 4 ? 4 : tb > 64 ? 64 : tb & ~(int64_t)3;
    float out[64];
    for (int64_t j0 = 0; j0 < n; j0 += tb) {
        const int k = (int)(n - j0 < tb ? n - j0 : tb);
        const uint8_t *q = q0 + (size_t)j0 * qrow;
        for (int64_t r = r0; r < r1; r++) {
            dotn((const uint8_t *)W + (size_t)r * wrow, q, qrow, k, nb, out);
            for (int j = 0; j < k; j++) y[(j0 + j) * ldy + r] = out[j];
        }
    }
}

void ggx_cpu_dequant_rows(enum ggx_type t, const void *W, int64_t cols, float *dst, int64_t r0,
                          int64_t r1) {
    const ggx_cpu_qdeq_fn deq = pick_deq(t);
    const size_t wrow = ggx_row_size(t, cols);
    if (!deq || !wrow || cols % QX_BLOCK) {
        for (int64_t i = 0; i < (r1 - r0) * cols; i++) dst[i] = NAN;
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        deq((const uint8_t *)W + (size_t)r * wrow, dst + (r - r0) * cols, cols / QX_BLOCK);
}
