/* quant_avx2.c — AVX2 + FMA kernels for q8_0 / q4_0 / q4_x weights x int8 activations (q8_0 one
 * block per step, q4 four; see cpu_quant_impl.h for the activation layout). Called only after runtime
 * detection. pmaddubsw needs its first operand unsigned: q4 nibbles / q4_x levels (<= 127) are;
 * q8_0 uses the sign trick |w| * sign(x, w). No int16 saturation: 2*127*127 < 32767. */
#include "cpu_quant_impl.h"

#include <immintrin.h>
#include <string.h>

static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum128_ps(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* 8 int32 partial sums of 32 unsigned x signed byte products */
static inline __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
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

/* f16 values at p + i * stride, i = 0..3, as 4 floats */
static inline __m128 load4_f16(const uint8_t *p, size_t stride) {
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], p + i * stride, 2);
    __m128i v;
    memcpy(&v, h, 8);
    return _mm_cvtph_ps(v);
}

/* q4 blocks, 4 per step, with the split activation layout: the low-nibble halves of blocks 2i and
 * 2i+1 are 32 contiguous activation bytes, and so are the high halves. is_x: q4_x (levels through
 * the table, + m), else q4_0 (q - 8). */
static inline float dot_q4_avx2(const uint8_t *w, const uint8_t *qx, int64_t nb, const int is_x) {
    const size_t bs = is_x ? sizeof(ggx_block_q4_x) : sizeof(ggx_block_q4_0), qoff = is_x ? 4 : 2;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ggx_q4_x_levels));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i e01 = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), e23 = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
    __m256 acc = _mm256_setzero_ps();
    __m128 corr = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = w + b * bs, *xq = qx + b * 32;
        __m256i isum[2];
        for (int h = 0; h < 2; h++) { /* blocks b+2h, b+2h+1 */
            const __m256i q = _mm256_loadu2_m128i((const __m128i *)(p + (2 * h + 1) * bs + qoff),
                                                  (const __m128i *)(p + 2 * h * bs + qoff));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (is_x) { lo = _mm256_shuffle_epi8(lut, lo); hi = _mm256_shuffle_epi8(lut, hi); }
            const __m256i xl = _mm256_loadu_si256((const __m256i *)(xq + 32 * h));
            const __m256i xh = _mm256_loadu_si256((const __m256i *)(xq + 64 + 32 * h));
            isum[h] = _mm256_add_epi32(dot_us8(lo, xl), dot_us8(hi, xh));
        }
        const __m128 dw = load4_f16(p, bs);
        const __m256 sc = _mm256_castps128_ps256(_mm_mul_ps(dw, _mm_loadu_ps(dx + b)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[0]), _mm256_permutevar8x32_ps(sc, e01), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[1]), _mm256_permutevar8x32_ps(sc, e23), acc);
        corr = _mm_fmadd_ps(is_x ? load4_f16(p + 2, bs) : dw, _mm_loadu_ps(s + b), corr);
    }
    float sum = hsum256_ps(acc) + (is_x ? 1.0f : -8.0f) * hsum128_ps(corr);
    for (; b < nb; b++) { /* tail blocks: natural activation order */
        const uint8_t *blk = w + b * bs;
        uint16_t d16, m16;
        memcpy(&d16, blk, 2);
        memcpy(&m16, blk + 2, 2);
        __m256i wq = unpack_nibbles(blk + qoff);
        if (is_x) wq = _mm256_shuffle_epi8(lut, wq);
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(qx + b * 32));
        const float isum = hsum256_ps(_mm256_cvtepi32_ps(dot_us8(wq, xv)));
        const float dw = _cvtsh_ss(d16);
        sum += dw * dx[b] * isum + (is_x ? _cvtsh_ss(m16) : -8.0f * dw) * s[b];
    }
    return sum;
}

float ggx_cpu_dot_q4_0_avx2(const void *w, const uint8_t *qx, int64_t nb) {
    return dot_q4_avx2(w, qx, nb, 0);
}

float ggx_cpu_dot_q4_x_avx2(const void *w, const uint8_t *qx, int64_t nb) {
    return dot_q4_avx2(w, qx, nb, 1);
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
