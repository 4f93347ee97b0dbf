/*
 * cpu_kernels.h — the CPU backend's inner loops, one table per instruction set.
 *
 *     const ggx_cpu_kernels *k = ggx_cpu_kernels_best();   // AVX-512 > AVX2/FMA > scalar
 *     k->dot_bf16(w_row, x, ldx, nx, n, out);              // out[j] = w_row . x[j*ldx ...]
 *
 * ggx_cpu_kernels_scalar is the reference every SIMD table is tested against
 * (tests/test_cpu_kernels.c). All accumulation is f32; weights of half types are upcast to f32
 * and multiplied with f32 activations (never the other way round: exactness vs transformers).
 */
#ifndef GGX_CPU_KERNELS_H
#define GGX_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ggx_cpu_kernels {
    const char *name;
    /* out[j] = sum_c w[c] * x[j*ldx + c], c < n, j < nx. w is one weight row. */
    void (*dot_f32)(const float *w, const float *x, int64_t ldx, int nx, int64_t n, float *out);
    void (*dot_bf16)(const uint16_t *w, const float *x, int64_t ldx, int nx, int64_t n,
                     float *out);
    void (*dot_f16)(const uint16_t *w, const float *x, int64_t ldx, int nx, int64_t n,
                    float *out);
    /* dst[i] = f32(src[i]) */
    void (*cvt_bf16)(const uint16_t *src, float *dst, int64_t n);
    void (*cvt_f16)(const uint16_t *src, float *dst, int64_t n);
    /* One fused mLSTM step over a head's C [dqk, dv] (row-major), one pass:
     *   C[a,:] = fgate * C[a,:] + (igate * k[a]) * v[:];  num[:] += qs[a] * C[a,:]
     * num [dv] is overwritten (not accumulated into). */
    void (*mlstm_step)(float *C, const float *k, const float *v, const float *qs, float fgate,
                       float igate, int dqk, int dv, float *num);
} ggx_cpu_kernels;

extern const ggx_cpu_kernels ggx_cpu_kernels_scalar;
#if defined(__x86_64__)
extern const ggx_cpu_kernels ggx_cpu_kernels_avx2;
extern const ggx_cpu_kernels ggx_cpu_kernels_avx512;
#endif

/* The best table this CPU runs (detected once). */
const ggx_cpu_kernels *ggx_cpu_kernels_best(void);
/* Tables this CPU can run, best first (for tests); returns the count (<= 3). */
int ggx_cpu_kernels_available(const ggx_cpu_kernels **out, int cap);
/* Force a table for the backend (NULL: back to best). For tests and benchmarks. */
void ggx_cpu_kernels_force(const ggx_cpu_kernels *k);
const ggx_cpu_kernels *ggx_cpu_kernels_active(void);

#endif
