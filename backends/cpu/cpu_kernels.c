/* cpu_kernels.c — scalar reference kernels and runtime ISA dispatch (see cpu_kernels.h). */
#include "cpu_kernels.h"

#include "types.h"

#include <stdatomic.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static void dot_f32_ref(const float *w, const float *x, int64_t ldx, int nx, int64_t n,
                        float *out) {
    for (int j = 0; j < nx; j++) {
        const float *xj = x + (int64_t)j * ldx;
        float s = 0.0f;
        for (int64_t c = 0; c < n; c++) s += w[c] * xj[c];
        out[j] = s;
    }
}

static void dot_bf16_ref(const uint16_t *w, const float *x, int64_t ldx, int nx, int64_t n,
                         float *out) {
    for (int j = 0; j < nx; j++) {
        const float *xj = x + (int64_t)j * ldx;
        float s = 0.0f;
        for (int64_t c = 0; c < n; c++) s += ggx_bf16_to_f32(w[c]) * xj[c];
        out[j] = s;
    }
}

static void dot_f16_ref(const uint16_t *w, const float *x, int64_t ldx, int nx, int64_t n,
                        float *out) {
    for (int j = 0; j < nx; j++) {
        const float *xj = x + (int64_t)j * ldx;
        float s = 0.0f;
        for (int64_t c = 0; c < n; c++) s += ggx_fp16_to_f32(w[c]) * xj[c];
        out[j] = s;
    }
}

static void cvt_bf16_ref(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ggx_bf16_to_f32(src[i]);
}

static void cvt_f16_ref(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ggx_fp16_to_f32(src[i]);
}

static void mlstm_step_ref(float *C, const float *k, const float *v, const float *qs, float fg,
                           float ig, int dqk, int dv, float *num) {
    for (int b = 0; b < dv; b++) num[b] = 0.0f;
    for (int a = 0; a < dqk; a++) {
        float *row = C + (int64_t)a * dv;
        float ik = ig * k[a], q = qs[a];
        for (int b = 0; b < dv; b++) {
            float c = fg * row[b] + ik * v[b];
            row[b] = c;
            num[b] += q * c;
        }
    }
}

const ggx_cpu_kernels ggx_cpu_kernels_scalar = {
    .name = "scalar",
    .dot_f32 = dot_f32_ref,
    .dot_bf16 = dot_bf16_ref,
    .dot_f16 = dot_f16_ref,
    .cvt_bf16 = cvt_bf16_ref,
    .cvt_f16 = cvt_f16_ref,
    .mlstm_step = mlstm_step_ref,
};

/* ------------------------------------------------------------------------------ dispatch -- */

/* F16C via cpuid: clang 14's __builtin_cpu_supports does not know "f16c". */
static int has_f16c(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
#else
    return 0;
#endif
}

static int has_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma") && has_f16c();
#else
    return 0;
#endif
}

static int has_avx2(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
#else
    return 0;
#endif
}

int ggx_cpu_kernels_available(const ggx_cpu_kernels **out, int cap) {
    int n = 0;
#if defined(__x86_64__)
    if (n < cap && has_avx512()) out[n++] = &ggx_cpu_kernels_avx512;
    if (n < cap && has_avx2()) out[n++] = &ggx_cpu_kernels_avx2;
#endif
    if (n < cap) out[n++] = &ggx_cpu_kernels_scalar;
    return n;
}

const ggx_cpu_kernels *ggx_cpu_kernels_best(void) {
    const ggx_cpu_kernels *k[3];
    ggx_cpu_kernels_available(k, 3);
    return k[0];
}

static _Atomic(const ggx_cpu_kernels *) g_forced;

void ggx_cpu_kernels_force(const ggx_cpu_kernels *k) { atomic_store(&g_forced, k); }

const ggx_cpu_kernels *ggx_cpu_kernels_active(void) {
    const ggx_cpu_kernels *k = atomic_load(&g_forced);
    return k ? k : ggx_cpu_kernels_best();
}
