/* quant_avx2.c — AVX2 + FMA kernels for q8_0 / q4_0 / q4_x weights x int8 activations, one
 * block per step (see cpu_quant_impl.h for the activation layout). Called only after runtime
 * detection. pmaddubsw needs its first operand unsigned: q4 nibbles / q4_x levels (<= 127) are;
 * q8_0 uses the sign trick |w| * sign(x, w). No int16 saturation: 2*127*127 < 32767. */
#include "cpu_quant_impl.h"

#include <immintrin.h>

static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int32 partial sums of 32 unsigned x signed byte products */
static inline __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* the 32 activation bytes of block b, in the weight's nibble order (low half, high half) */
static inline __m256i load_x_q4(const uint8_t *qx, int64_t nb, int64_t b) {
    const uint8_t *lo = qx + qx_index(1, nb, b, 0), *hi = qx + qx_index(1, nb, b, 16);
    return _mm256_loadu2_m128i((const __m128i *)hi, (const __m128i *)lo);
}

/* nibbles of 16 bytes -> [low nibbles | high nibbles] as 32 bytes */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

float ggx_cpu_dot_q8_0_avx2(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q8_0 *w = wv;
    const float *dx = qx_dx(qx, nb);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(qx + b * 32));
        const __m256i is = dot_us8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(_cvtsh_ss(w[b].d) * dx[b]), acc);
    }
    return hsum256_ps(acc);
}

float ggx_cpu_dot_q4_0_avx2(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_0 *w = wv;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float dw = _cvtsh_ss(w[b].d);
        const __m256i is = dot_us8(unpack_nibbles(w[b].qs), load_x_q4(qx, nb, b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(dw * dx[b]), acc);
        corr += dw * s[b];
    }
    return hsum256_ps(acc) - 8.0f * corr;
}

float ggx_cpu_dot_q4_x_avx2(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_x *w = wv;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ggx_q4_x_levels));
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const __m256i lv = _mm256_shuffle_epi8(lut, unpack_nibbles(w[b].qs));
        const __m256i is = dot_us8(lv, load_x_q4(qx, nb, b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(_cvtsh_ss(w[b].d) * dx[b]), acc);
        corr += _cvtsh_ss(w[b].m) * s[b];
    }
    return hsum256_ps(acc) + corr;
}

/* ---------------------------------------------------------------- dequantize */
void ggx_cpu_deq_q8_0_avx2(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q8_0 *w = wv;
    for (int64_t b = 0; b < nb; b++, dst += 32) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d));
        for (int k = 0; k < 4; k++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(w[b].qs + 8 * k));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

static inline void store_levels(float *dst, __m256i bytes, __m256 d, __m256 off) {
    const __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(dst + 8 * k,
                         _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k])), off));
}

void ggx_cpu_deq_q4_0_avx2(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q4_0 *w = wv;
    for (int64_t b = 0; b < nb; b++, dst += 32) {
        const float df = _cvtsh_ss(w[b].d);
        store_levels(dst, unpack_nibbles(w[b].qs), _mm256_set1_ps(df), _mm256_set1_ps(-8.0f * df));
    }
}

void ggx_cpu_deq_q4_x_avx2(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q4_x *w = wv;
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ggx_q4_x_levels));
    for (int64_t b = 0; b < nb; b++, dst += 32)
        store_levels(dst, _mm256_shuffle_epi8(lut, unpack_nibbles(w[b].qs)),
                     _mm256_set1_ps(_cvtsh_ss(w[b].d)), _mm256_set1_ps(_cvtsh_ss(w[b].m)));
}
