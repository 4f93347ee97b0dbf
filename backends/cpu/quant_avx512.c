/* quant_avx512.c — AVX-512 VNNI kernels for q8_0 / q4_0 / q4_x weights x int8 activations (see
 * cpu_quant_impl.h for the activation layout). Called only after runtime detection.
 *
 * Four weight blocks per step: vpdpbusd (unsigned x signed bytes) gives per-block int32 sums in
 * 4 lanes each (q4) or 8 lanes each (q8); the per-block scales d_w * d_x are expanded into those
 * lanes with one permute. Constant offsets of the weight types (q4_0's -8, q8_0's +128 bias that
 * makes its bytes unsigned, q4_x's min) are applied once per block via the activation block sums
 * s = d_x * sum(q_x), accumulated in a separate 4-lane vector. */
#include "cpu_quant_impl.h"

#include <immintrin.h>
#include <string.h>

static inline uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
/* the f16 at p, p+stride, p+2*stride, p+3*stride as 4 floats */
static inline __m128 load4_f16(const uint8_t *p, size_t stride) {
    __m128i v = _mm_cvtsi32_si128(ld16(p));
    v = _mm_insert_epi16(v, ld16(p + stride), 1);
    v = _mm_insert_epi16(v, ld16(p + 2 * stride), 2);
    v = _mm_insert_epi16(v, ld16(p + 3 * stride), 3);
    return _mm_cvtph_ps(v);
}

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* lane i of the result = v[i / 4]  (4 block scales -> 16 lanes) */
static inline __m512 expand4(__m128 v) {
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* ---------------------------------------------------------------- q8_0 */
float ggx_cpu_dot_q8_0_avx512(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q8_0 *w = wv;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const __m512i idx01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i idx23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 corr = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const ggx_block_q8_0 *wb = w + b;
        /* w + 128 as unsigned bytes: sum((w+128) x) = sum(w x) + 128 sum(x) */
        __m512i w01 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[0].qs)),
            _mm256_loadu_si256((const __m256i *)wb[1].qs), 1);
        __m512i w23 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[2].qs)),
            _mm256_loadu_si256((const __m256i *)wb[3].qs), 1);
        w01 = _mm512_xor_si512(w01, bias);
        w23 = _mm512_xor_si512(w23, bias);
        const __m512i x01 = _mm512_loadu_si512(qx + b * 32);
        const __m512i x23 = _mm512_loadu_si512(qx + b * 32 + 64);
        const __m512i i01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, x01);
        const __m512i i23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w23, x23);
        const __m128 dw = load4_f16((const uint8_t *)&wb[0].d, sizeof(ggx_block_q8_0));
        const __m512 sc = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(dx + b)));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i01), _mm512_permutexvar_ps(idx01, sc), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i23), _mm512_permutexvar_ps(idx23, sc), acc1);
        corr = _mm_fmadd_ps(dw, _mm_loadu_ps(s + b), corr);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - 128.0f * hsum128(corr);
    for (; b < nb; b++) { /* exact int8 x int8 for the tail: sign trick */
        const __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(qx + b * 32));
        const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        const int isum = hsum256_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
        sum += _cvtsh_ss(w[b].d) * dx[b] * (float)isum;
    }
    return sum;
}

/* ---------------------------------------------------------------- q4_0 / q4_x */
/* per-block int32 sums of 4 q4-style blocks whose nibbles are q = [b0 | b1 | b2 | b3] (16 bytes
 * each) against split-layout activations xq; nibbles mapped through *lut when lut != NULL.
 * Lanes 4i..4i+3 of the result belong to block i. */
static inline __m512i q4_isum4(__m512i q, const uint8_t *xq, const __m512i *lut) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    if (lut) { lo = _mm512_shuffle_epi8(*lut, lo); hi = _mm512_shuffle_epi8(*lut, hi); }
    const __m512i xl = _mm512_loadu_si512(xq), xh = _mm512_loadu_si512(xq + 64);
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl), hi, xh);
}

/* Four q4-style blocks of W words each (q4_0: 9 words = d + 8 words of nibbles; q4_x: 10 words =
 * d, m + 8 words) span 4*W words. Two overlapping 64-byte loads A = words 0..31 and
 * B = words (4W-32)..(4W-1) cover them exactly (never reading past the 4th block), and one
 * vpermt2w gathers the 4 x 8 nibble words into [b0 | b1 | b2 | b3]; the scales come out of A with
 * one vpermw. Index of word w of the group in the A:B pair: */
#define Q4_WIDX(w, W) ((w) < 32 ? (w) : 32 + (w) - (4 * (W) - 32))

static inline __m512i q4_gather_idx(int W, int first_q) {
    int16_t idx[32];
    for (int j = 0; j < 32; j++) {
        const int w = W * (j / 8) + first_q + (j % 8);
        idx[j] = (int16_t)Q4_WIDX(w, W);
    }
    return _mm512_loadu_si512(idx);
}

/* one q4-style block in the tail (natural activation order) */
static inline int q4_isum1(const uint8_t *qs, const uint8_t *xq, const __m128i *lut) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    if (lut) { lo = _mm_shuffle_epi8(*lut, lo); hi = _mm_shuffle_epi8(*lut, hi); }
    const __m256i wq = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    const __m256i xv = _mm256_loadu_si256((const __m256i *)xq);
    return hsum256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xv));
}

float ggx_cpu_dot_q4_0_avx512(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_0 *w = wv;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    const __m512i qidx = q4_gather_idx(9, 1);
    const __m512i didx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 18, 9, 0);
    __m512 acc = _mm512_setzero_ps();
    __m128 corr = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = (const uint8_t *)&w[b];
        const __m512i A = _mm512_loadu_si512(p), B = _mm512_loadu_si512(p + 72 - 64);
        const __m512i isum = q4_isum4(_mm512_permutex2var_epi16(A, qidx, B), qx + b * 32, NULL);
        const __m128 dw = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(didx, A)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),
                              expand4(_mm_mul_ps(dw, _mm_loadu_ps(dx + b))), acc);
        corr = _mm_fmadd_ps(dw, _mm_loadu_ps(s + b), corr); /* the -8 offset: dw * dx * sum(q) */
    }
    float sum = _mm512_reduce_add_ps(acc) - 8.0f * hsum128(corr);
    for (; b < nb; b++) {
        const float dw = _cvtsh_ss(w[b].d);
        sum += dw * (dx[b] * (float)q4_isum1(w[b].qs, qx + b * 32, NULL) - 8.0f * s[b]);
    }
    return sum;
}

float ggx_cpu_dot_q4_x_avx512(const void *wv, const uint8_t *qx, int64_t nb) {
    const ggx_block_q4_x *w = wv;
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    const __m128i lut128 = _mm_loadu_si128((const __m128i *)ggx_q4_x_levels);
    const __m512i lut = _mm512_broadcast_i32x4(lut128);
    const __m512i qidx = q4_gather_idx(10, 2);
    /* [d0 d1 d2 d3 m0 m1 m2 m3] */
    const __m512i didx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 31, 21, 11, 1, 30, 20, 10, 0);
    __m512 acc = _mm512_setzero_ps();
    __m128 corr = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = (const uint8_t *)&w[b];
        const __m512i A = _mm512_loadu_si512(p), B = _mm512_loadu_si512(p + 80 - 64);
        const __m512i isum = q4_isum4(_mm512_permutex2var_epi16(A, qidx, B), qx + b * 32, &lut);
        const __m256 dm = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(didx, A)));
        const __m128 dw = _mm256_castps256_ps128(dm), mw = _mm256_extractf128_ps(dm, 1);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),
                              expand4(_mm_mul_ps(dw, _mm_loadu_ps(dx + b))), acc);
        corr = _mm_fmadd_ps(mw, _mm_loadu_ps(s + b), corr); /* the offset: m * dx * sum(q) */
    }
    float sum = _mm512_reduce_add_ps(acc) + hsum128(corr);
    for (; b < nb; b++) {
        const int isum = q4_isum1(w[b].qs, qx + b * 32, &lut128);
        sum += _cvtsh_ss(w[b].d) * dx[b] * (float)isum + _cvtsh_ss(w[b].m) * s[b];
    }
    return sum;
}

/* ---------------------------------------------------------------- dequantize */
void ggx_cpu_deq_q8_0_avx512(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q8_0 *w = wv;
    for (int64_t b = 0; b < nb; b++, dst += 32) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(w[b].d));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(w[b].qs + 16));
        _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0))));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1))));
    }
}

void ggx_cpu_deq_q4_0_avx512(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q4_0 *w = wv;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++, dst += 32) {
        const float df = _cvtsh_ss(w[b].d);
        const __m512 d = _mm512_set1_ps(df), off = _mm512_set1_ps(-8.0f * df);
        const __m128i q = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        _mm512_storeu_ps(dst, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), off));
        _mm512_storeu_ps(dst + 16,
                         _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), off));
    }
}

void ggx_cpu_deq_q4_x_avx512(const void *wv, float *dst, int64_t nb) {
    const ggx_block_q4_x *w = wv;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i lut = _mm_loadu_si128((const __m128i *)ggx_q4_x_levels);
    for (int64_t b = 0; b < nb; b++, dst += 32) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(w[b].d)), m = _mm512_set1_ps(_cvtsh_ss(w[b].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(q, m4));
        const __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        _mm512_storeu_ps(dst, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), m));
        _mm512_storeu_ps(dst + 16, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), m));
    }
}
