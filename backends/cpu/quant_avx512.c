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

/* Every kernel below computes out[j] = dot(W row, activation row j) for NT <= 4 activation rows
 * at once (qx + j * qrow): the weight blocks are loaded and unpacked once per step and reused for
 * each row, so n = 4 costs about half of 4 separate products. NT is a compile-time constant in
 * each instantiation (the switch in the exported functions), so the j loops unroll and the
 * accumulators stay in registers. */
#define QX_MAX_NT 4
#define AI static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- q8_0 */
AI void dotn_q8_0(const ggx_block_q8_0 *w, const uint8_t *qx, size_t qrow, int64_t nb, float *out,
                  const int NT) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const __m512i idx01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i idx23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc[QX_MAX_NT];
    __m128 corr[QX_MAX_NT];
    for (int j = 0; j < NT; j++) { acc[j] = _mm512_setzero_ps(); corr[j] = _mm_setzero_ps(); }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const ggx_block_q8_0 *wb = w + b;
        /* w + 128 as unsigned bytes: sum((w+128) x) = sum(w x) + 128 sum(x) */
        const __m512i w01 = _mm512_xor_si512(_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[0].qs)),
            _mm256_loadu_si256((const __m256i *)wb[1].qs), 1), bias);
        const __m512i w23 = _mm512_xor_si512(_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[2].qs)),
            _mm256_loadu_si256((const __m256i *)wb[3].qs), 1), bias);
        const __m128 dw = load4_f16((const uint8_t *)&wb[0].d, sizeof(ggx_block_q8_0));
        for (int j = 0; j < NT; j++) {
            const uint8_t *q = qx + j * qrow;
            const float *dx = qx_dx(q, nb), *s = qx_s(q, nb);
            const __m512i i01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, _mm512_loadu_si512(q + b * 32));
            const __m512i i23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w23, _mm512_loadu_si512(q + b * 32 + 64));
            const __m512 sc = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(dx + b)));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i01), _mm512_permutexvar_ps(idx01, sc), acc[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i23), _mm512_permutexvar_ps(idx23, sc), acc[j]);
            corr[j] = _mm_fmadd_ps(dw, _mm_loadu_ps(s + b), corr[j]);
        }
    }
    for (int j = 0; j < NT; j++) out[j] = _mm512_reduce_add_ps(acc[j]) - 128.0f * hsum128(corr[j]);
    for (; b < nb; b++) { /* exact int8 x int8 for the tail: sign trick */
        const __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i wa = _mm256_sign_epi8(wq, wq);
        const float dw = _cvtsh_ss(w[b].d);
        for (int j = 0; j < NT; j++) {
            const uint8_t *q = qx + j * qrow;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(q + b * 32));
            const __m256i p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xq, wq));
            const int isum = hsum256_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
            out[j] += dw * qx_dx(q, nb)[b] * (float)isum;
        }
    }
}

/* ---------------------------------------------------------------- q4_0 / q4_x */
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

/* one q4-style block in the tail against natural-order activations: int32 sum */
static inline int q4_isum1(__m256i wq, const uint8_t *xq) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)xq);
    return hsum256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xv));
}
/* its 32 weight bytes [low nibbles | high nibbles], through the level table when lut != NULL */
static inline __m256i q4_unpack1(const uint8_t *qs, const __m128i *lut) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    if (lut) { lo = _mm_shuffle_epi8(*lut, lo); hi = _mm_shuffle_epi8(*lut, hi); }
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* is_x = 0: q4_0 (x = d (q - 8)); is_x = 1: q4_x (x = d L[q] + m) */
AI void dotn_q4(const uint8_t *w, const uint8_t *qx, size_t qrow, int64_t nb, float *out,
                const int NT, const int is_x) {
    const size_t bs = is_x ? sizeof(ggx_block_q4_x) : sizeof(ggx_block_q4_0);
    const __m128i lut128 = _mm_loadu_si128((const __m128i *)ggx_q4_x_levels);
    const __m512i lut = _mm512_broadcast_i32x4(lut128);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i qidx = is_x ? q4_gather_idx(10, 2) : q4_gather_idx(9, 1);
    /* q4_0: [d0 d1 d2 d3]; q4_x: [d0 d1 d2 d3 m0 m1 m2 m3] */
    const __m512i didx = is_x ? _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 31, 21, 11, 1, 30, 20, 10, 0)
                              : _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 18, 9, 0);
    __m512 acc[QX_MAX_NT];
    __m128 corr[QX_MAX_NT];
    for (int j = 0; j < NT; j++) { acc[j] = _mm512_setzero_ps(); corr[j] = _mm_setzero_ps(); }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p = w + b * bs;
        const __m512i A = _mm512_loadu_si512(p), B = _mm512_loadu_si512(p + 4 * bs - 64);
        const __m512i q = _mm512_permutex2var_epi16(A, qidx, B);
        __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        if (is_x) { lo = _mm512_shuffle_epi8(lut, lo); hi = _mm512_shuffle_epi8(lut, hi); }
        const __m256 dm = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(didx, A)));
        const __m128 dw = _mm256_castps256_ps128(dm);
        /* the constant part per block: q4_0 -8 * d, q4_x m; times dx * sum(q) = s */
        const __m128 cw = is_x ? _mm256_extractf128_ps(dm, 1) : dw;
        for (int j = 0; j < NT; j++) {
            const uint8_t *xq = qx + j * qrow;
            const float *dx = qx_dx(xq, nb), *s = qx_s(xq, nb);
            const __m512i xl = _mm512_loadu_si512(xq + b * 32), xh = _mm512_loadu_si512(xq + b * 32 + 64);
            const __m512i isum =
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl), hi, xh);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),
                                     expand4(_mm_mul_ps(dw, _mm_loadu_ps(dx + b))), acc[j]);
            corr[j] = _mm_fmadd_ps(cw, _mm_loadu_ps(s + b), corr[j]);
        }
    }
    for (int j = 0; j < NT; j++)
        out[j] = _mm512_reduce_add_ps(acc[j]) + (is_x ? 1.0f : -8.0f) * hsum128(corr[j]);
    for (; b < nb; b++) {
        const uint8_t *blk = w + b * bs;
        const float dw = _cvtsh_ss(ld16(blk));
        const float cw = is_x ? _cvtsh_ss(ld16(blk + 2)) : -8.0f * dw;
        const __m256i wq = q4_unpack1(blk + (is_x ? 4 : 2), is_x ? &lut128 : NULL);
        for (int j = 0; j < NT; j++) {
            const uint8_t *xq = qx + j * qrow;
            out[j] += dw * qx_dx(xq, nb)[b] * (float)q4_isum1(wq, xq + b * 32) + cw * qx_s(xq, nb)[b];
        }
    }
}

/* ---------------------------------------------------------------- q4, two rows */
/* Decode (one activation row): two weight rows per step share the activation loads, the
 * scale work and the float conversion. Per row and 4-block group of 4W words: one 64-byte load A
 * (words 0..31) and one small load T of the remaining 4W - 32 words (8 bytes for q4_0, 16 for
 * q4_x), so no byte is loaded twice; vpermt2w(A, idx, T) gathers the nibble words (T's words are
 * indices 32..). The int32 block sums of the two rows (4 lanes per block each) are folded into
 * one vector with unpacklo/hi + add, 128-bit lane k = [r0 r1 r0 r1] partial sums of block k, so a
 * single convert and FMA serve both rows. Measured on Zen 4 (docs/benchmarks.md): ~10-15% fewer
 * cycles per weight byte in L1/L2 than two calls of the one-row kernel. */
static inline __m512i q4_words_idx(int W, int first_q) {
    int16_t idx[32];
    for (int j = 0; j < 32; j++) idx[j] = (int16_t)(W * (j / 8) + first_q + (j % 8));
    return _mm512_loadu_si512(idx);
}

AI void dot2_q4(const uint8_t *w, size_t ws, const uint8_t *qx, int64_t nb, float *out, const int is_x) {
    const size_t bs = is_x ? sizeof(ggx_block_q4_x) : sizeof(ggx_block_q4_0);
    const __m128i lut128 = _mm_loadu_si128((const __m128i *)ggx_q4_x_levels);
    const __m512i lut = _mm512_broadcast_i32x4(lut128);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i qidx = is_x ? q4_words_idx(10, 2) : q4_words_idx(9, 1);
    /* scale words of both rows (row 1's A is the second table: +32). q4_0: [d(r0) d(r1)], 8
     * words; q4_x: [d(r0) d(r1) m(r0) m(r1)], 16 words */
    const __m512i didx =
        is_x ? _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 63, 53, 43, 33, 31, 21,
                                11, 1, 62, 52, 42, 32, 30, 20, 10, 0)
             : _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                0, 59, 50, 41, 32, 27, 18, 9, 0);
    /* from sc = [s(r0, b0..3) s(r1, b0..3)]: 128-bit lane k = [s(r0,k) s(r1,k) s(r0,k) s(r1,k)] */
    const __m512i eidx = _mm512_set_epi32(7, 3, 7, 3, 6, 2, 6, 2, 5, 1, 5, 1, 4, 0, 4, 0);
    const float *dx = qx_dx(qx, nb), *s = qx_s(qx, nb);
    __m512 acc = _mm512_setzero_ps();
    __m256 corr = _mm256_setzero_ps(); /* [row 0 | row 1] */
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *p0 = w + b * bs, *p1 = p0 + ws;
        __m512i A0 = _mm512_loadu_si512(p0), A1 = _mm512_loadu_si512(p1);
        /* keep A in registers: without this gcc reloads A as a memory operand of the scale
         * permute, a second split load on the busiest port */
        __asm__("" : "+v"(A0), "+v"(A1));
        const __m512i T0 = is_x ? _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p0 + 64)))
                                : _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(p0 + 64)));
        const __m512i T1 = is_x ? _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p1 + 64)))
                                : _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(p1 + 64)));
        const __m512i q0 = _mm512_permutex2var_epi16(A0, qidx, T0);
        const __m512i q1 = _mm512_permutex2var_epi16(A1, qidx, T1);
        __m512i lo0 = _mm512_and_si512(q0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
        __m512i lo1 = _mm512_and_si512(q1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
        if (is_x) {
            lo0 = _mm512_shuffle_epi8(lut, lo0); hi0 = _mm512_shuffle_epi8(lut, hi0);
            lo1 = _mm512_shuffle_epi8(lut, lo1); hi1 = _mm512_shuffle_epi8(lut, hi1);
        }
        const __m512i xl = _mm512_loadu_si512(qx + b * 32), xh = _mm512_loadu_si512(qx + b * 32 + 64);
        const __m512i i0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo0, xl), hi0, xh);
        const __m512i i1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo1, xl), hi1, xh);
        const __m512i f = _mm512_add_epi32(_mm512_unpacklo_epi32(i0, i1), _mm512_unpackhi_epi32(i0, i1));
        const __m512i dmh = _mm512_permutex2var_epi16(A0, didx, A1);
        __m256 dw, cw; /* [row 0 | row 1] block scales; the constant terms' factors */
        if (is_x) {
            const __m512 dm = _mm512_cvtph_ps(_mm512_castsi512_si256(dmh));
            dw = _mm512_castps512_ps256(dm);
            cw = _mm512_extractf32x8_ps(dm, 1);
        } else {
            dw = _mm256_cvtph_ps(_mm512_castsi512_si128(dmh));
            cw = dw;
        }
        const __m128 dxb = _mm_loadu_ps(dx + b), sb = _mm_loadu_ps(s + b);
        const __m512 sc = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_set_m128(dxb, dxb)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_permutexvar_ps(eidx, sc), acc);
        corr = _mm256_fmadd_ps(cw, _mm256_set_m128(sb, sb), corr);
    }
    /* lanes 0 and 2 of each 128-bit lane belong to row 0, lanes 1 and 3 to row 1 */
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    const float c = is_x ? 1.0f : -8.0f;
    out[0] = _mm_cvtss_f32(v) + c * hsum128(_mm256_castps256_ps128(corr));
    out[1] = _mm_cvtss_f32(_mm_movehdup_ps(v)) + c * hsum128(_mm256_extractf128_ps(corr, 1));
    for (; b < nb; b++) { /* trailing blocks, natural activation order */
        const uint8_t *xq = qx + b * 32;
        for (int r = 0; r < 2; r++) {
            const uint8_t *blk = w + r * ws + b * bs;
            const float dwf = _cvtsh_ss(ld16(blk));
            const float cwf = is_x ? _cvtsh_ss(ld16(blk + 2)) : -8.0f * dwf;
            const __m256i wq = q4_unpack1(blk + (is_x ? 4 : 2), is_x ? &lut128 : NULL);
            out[r] += dwf * dx[b] * (float)q4_isum1(wq, xq) + cwf * s[b];
        }
    }
}

void ggx_cpu_dot2_q4_0_avx512(const void *w, size_t wstride, const uint8_t *qx, int64_t nb, float *out) {
    dot2_q4(w, wstride, qx, nb, out, 0);
}
void ggx_cpu_dot2_q4_x_avx512(const void *w, size_t wstride, const uint8_t *qx, int64_t nb, float *out) {
    dot2_q4(w, wstride, qx, nb, out, 1);
}

/* ---------------------------------------------------------------- exported */
#define DOTN_SWITCH(CALL)                                                                    \
    for (int j0 = 0; j0 < n; j0 += QX_MAX_NT, qx += QX_MAX_NT * qrow, out += QX_MAX_NT) {   \
        switch (n - j0 < QX_MAX_NT ? n - j0 : QX_MAX_NT) {                                  \
        case 1: CALL(1); break;                                                              \
        case 2: CALL(2); break;                                                              \
        case 3: CALL(3); break;                                                              \
        default: CALL(4); break;                                                             \
        }                                                                                    \
    }

void ggx_cpu_dotn_q8_0_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out) {
#define CALL(k) dotn_q8_0(w, qx, qrow, nb, out, k)
    DOTN_SWITCH(CALL)
#undef CALL
}
void ggx_cpu_dotn_q4_0_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out) {
#define CALL(k) dotn_q4(w, qx, qrow, nb, out, k, 0)
    DOTN_SWITCH(CALL)
#undef CALL
}
void ggx_cpu_dotn_q4_x_avx512(const void *w, const uint8_t *qx, size_t qrow, int n, int64_t nb, float *out) {
#define CALL(k) dotn_q4(w, qx, qrow, nb, out, k, 1)
    DOTN_SWITCH(CALL)
#undef CALL
}

/* ---------------------------------------------------------------- activations */
/* One activation row quantized exactly as the scalar reference in cpu_quant.c does (same
 * float operations: |x| max, d = amax / 127, id = 1 / d, round-to-nearest-even of x * id), so the
 * bytes are identical (test_quant_kernels compares them). */
void ggx_cpu_qx_row_avx512(const float *xr, int64_t nb, int split, uint8_t *q) {
    float *dx = (float *)(void *)(q + nb * QX_BLOCK), *s = dx + nb;
    const int64_t nsplit = split ? (nb & ~(int64_t)3) : 0;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < nb; b++) {
        const __m512 a = _mm512_loadu_ps(xr + b * 32), c = _mm512_loadu_ps(xr + b * 32 + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(a, absmask), _mm512_and_ps(c, absmask)));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i va = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
        const __m512i vc = _mm512_cvtps_epi32(_mm512_mul_ps(c, vid));
        uint8_t *lo = q + b * 32, *hi = lo + 16; /* elements 0..15, 16..31 (qx_index) */
        if (b < nsplit) {
            lo = q + (b >> 2) * 128 + (b & 3) * 16;
            hi = lo + 64;
        }
        _mm_storeu_si128((__m128i *)lo, _mm512_cvtepi32_epi8(va));
        _mm_storeu_si128((__m128i *)hi, _mm512_cvtepi32_epi8(vc));
        dx[b] = d;
        s[b] = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(va, vc));
    }
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
