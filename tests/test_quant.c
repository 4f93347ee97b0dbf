/* test_quant.c — reference quantizers (ggx/quants.c): layouts and traits, ggml-compatible q4_0
 * bytes, error bounds, q4_x's quality advantage over q4_0, and rejection of bad input. */
#include "quants.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double urand(void) {
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return ((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0) + 1e-18;
}
static float grand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

/* relative squared error sum (x - deq)^2 / sum x^2 of quantizing x with type t */
static double rel_err(enum ggx_type t, const float *x, int64_t n) {
    uint8_t *q = malloc(ggx_row_size(t, n));
    float *y = malloc(sizeof(float) * n);
    double e = 0, s = 0;
    if (ggx_quantize_row(t, x, q, n) != 0) e = INFINITY;
    ggx_dequantize_row(t, q, y, n);
    for (int64_t i = 0; i < n; i++) { e += (double)(y[i] - x[i]) * (y[i] - x[i]); s += (double)x[i] * x[i]; }
    free(q); free(y);
    return e / s;
}

int main(void) {
    /* traits */
    TEST_CHECK(ggx_row_size(GGX_TYPE_Q8_0, 64) == 68);
    TEST_CHECK(ggx_row_size(GGX_TYPE_Q4_0, 64) == 36);
    TEST_CHECK(ggx_row_size(GGX_TYPE_Q4_X, 704) == 22 * 20);
    TEST_CHECK(ggx_row_size(GGX_TYPE_Q4_X, 48) == 0);
    TEST_CHECK(ggx_type_traits_of(GGX_TYPE_Q4_X)->bits_per_weight <= 5.0);
    TEST_CHECK(ggx_type_traits_of(GGX_TYPE_Q4_X)->bits_per_weight * 32 == 8.0 * sizeof(ggx_block_q4_x));
    TEST_CHECK(ggx_type_from_name("q4_x") == GGX_TYPE_Q4_X && GGX_TYPE_Q4_X == 5);
    for (int k = 1; k < 16; k++) TEST_CHECK(ggx_q4_x_levels[k] > ggx_q4_x_levels[k - 1]);
    TEST_CHECK(ggx_q4_x_levels[0] == 0 && ggx_q4_x_levels[15] == 127);

    /* q4_0 bytes as ggml writes them: x[j] = (j - 16) / 4 -> d = 0.5 (f16 0x3800), q_j = round(j/2) */
    {
        float x[32];
        ggx_block_q4_0 b;
        for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q4_0, x, &b, 32) == 0);
        TEST_CHECK(b.d == 0x3800);
        TEST_CHECK(b.qs[0] == 0x80 && b.qs[1] == 0x91 && b.qs[15] == 0xf8);
        uint8_t raw[18];
        memcpy(raw, &b, 18);
        TEST_CHECK(raw[0] == 0x00 && raw[1] == 0x38); /* little-endian scale first */
    }

    /* q8_0: per-element error <= d/2 (+ f16 rounding of d) */
    {
        enum { N = 32 * 97 };
        float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
        ggx_block_q8_0 *q = malloc(sizeof(ggx_block_q8_0) * N / 32);
        for (int i = 0; i < N; i++) x[i] = grand() * (i % 64 < 32 ? 0.02f : 3.0f);
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q8_0, x, q, N) == 0);
        ggx_dequantize_row(GGX_TYPE_Q8_0, q, y, N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            const float d = ggx_fp16_to_f32(q[i / 32].d);
            if (!(fabsf(x[i] - y[i]) <= 0.5f * d + 128.0f * d * 1e-3f)) bad++;
        }
        TEST_CHECK_MSG(!bad, "q8_0 error bound: %d bad", bad);
        free(x); free(y); free(q);
    }

    /* quality on gaussian and heavy-tailed data: q4_x well below q4_0 */
    {
        enum { N = 32 * 2048 };
        float *x = malloc(sizeof(float) * N);
        for (int i = 0; i < N; i++) x[i] = grand();
        const double e8 = rel_err(GGX_TYPE_Q8_0, x, N), e40 = rel_err(GGX_TYPE_Q4_0, x, N);
        const double e4x = rel_err(GGX_TYPE_Q4_X, x, N);
        printf("gaussian rel sq err: q8_0 %.6f  q4_0 %.5f  q4_x %.5f (%.0f%% lower)\n", e8, e40, e4x,
               100 * (1 - e4x / e40));
        TEST_CHECK(e8 < 5e-5);
        TEST_CHECK(e40 > 0.0065 && e40 < 0.0080); /* ggml's q4_0 on N(0,1): ~0.0073 */
        TEST_CHECK(e4x < 0.0046 && e4x < 0.65 * e40);
        for (int i = 0; i < N; i++) x[i] = x[i] * x[i] * x[i];
        const double h40 = rel_err(GGX_TYPE_Q4_0, x, N), h4x = rel_err(GGX_TYPE_Q4_X, x, N);
        printf("heavy-tailed rel sq err: q4_0 %.5f  q4_x %.5f\n", h40, h4x);
        TEST_CHECK(h4x < 0.7 * h40);
        /* shifted data (non-zero block means): the offset is where asymmetric levels win */
        for (int i = 0; i < N; i++) x[i] = 0.3f * grand() + ((i / 32) % 3 == 0 ? 1.0f : 0.0f);
        const double s40 = rel_err(GGX_TYPE_Q4_0, x, N), s4x = rel_err(GGX_TYPE_Q4_X, x, N);
        printf("shifted rel sq err: q4_0 %.5f  q4_x %.5f\n", s40, s4x);
        TEST_CHECK(s4x < 0.5 * s40);
        free(x);
    }

    /* constant and zero blocks are (nearly) exact */
    {
        float x[64], y[64];
        ggx_block_q4_x q[2];
        for (int j = 0; j < 32; j++) { x[j] = -0.037f; x[32 + j] = 0.0f; }
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q4_X, x, q, 64) == 0);
        ggx_dequantize_row(GGX_TYPE_Q4_X, q, y, 64);
        int bad = 0;
        for (int j = 0; j < 64; j++) bad += !(fabsf(y[j] - x[j]) <= 2e-5f);
        TEST_CHECK_MSG(!bad, "constant blocks: %d bad", bad);
    }

    /* bad input is refused, unknown types poison */
    {
        float x[32];
        uint8_t out[64];
        for (int j = 0; j < 32; j++) x[j] = grand();
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q4_X, x, out, 48) == -1);
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_F32, x, out, 32) == -1);
        x[7] = NAN;
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q8_0, x, out, 32) == -1);
        x[7] = INFINITY;
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q4_0, x, out, 32) == -1);
        x[7] = 1e6f;
        TEST_CHECK(ggx_quantize_row(GGX_TYPE_Q4_X, x, out, 32) == -1);
        float y[4] = {0};
        ggx_dequantize_row(GGX_TYPE_F32, out, y, 4);
        TEST_CHECK(isnan(y[0]) && isnan(y[3]));
    }
    return test_finish("test_quant");
}
