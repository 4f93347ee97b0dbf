/* cpu_kernels_avx512.c — AVX-512F kernels (built with -mavx512*; used only after detection). */
#include "cpu_kernels.h"

#include "types.h"

#include <immintrin.h>

#define VF __m512
#define W 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define LOAD_BF16(p)                                                                           \
    _mm512_castsi512_ps(                                                                       \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define SUFFIX(name) name##_avx512
#define KERNEL_TABLE ggx_cpu_kernels_avx512
#define KERNEL_NAME "avx512"

#include "cpu_kernels_simd.inc"
