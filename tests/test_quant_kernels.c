/* test_quant_kernels.c — every CPU quantized kernel path (AVX-512 VNNI, AVX2, scalar) against the
 * scalar reference, and the scalar reference against an exact f32 product, on fresh random data
 * of awkward sizes (cols a multiple of 32 but not of 128/256, odd row counts, n = 1, 3, 7, 70). */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/cpu_quant_impl.h"
#include "quants.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64*, uniform in (0, 1) */
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return ((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0) + 1e-18;
}
static float grand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

/* weights: gaussian with per-row scale, a few outliers, one constant block per matrix */
static void fill_w(float *w, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float sc = 0.01f + 0.2f * (float)urand();
        for (int64_t c = 0; c < cols; c++) w[r * cols + c] = sc * grand() + (urand() < 0.01 ? 0.5f : 0.0f);
    }
    if (rows > 1 && cols >= 64)
        for (int c = 32; c < 64; c++) w[cols + c] = 0.037f; /* constant block */
}
/* activations: gaussian, one all-positive block (stresses the offset terms), one zero block */
static void fill_x(float *x, int64_t n, int64_t cols) {
    for (int64_t i = 0; i < n * cols; i++) x[i] = 2.0f * grand();
    for (int c = 0; c < 32; c++) x[c] = 1.0f + 3.0f * (float)urand();
    if (cols >= 96)
        for (int c = 64; c < 96; c++) x[c] = 0.0f;
}

static void check_case(enum ggx_type t, int64_t rows, int64_t cols, int64_t n, int max_level) {
    const int64_t nb = cols / 32;
    const size_t wrow = ggx_row_size(t, cols), qrow = ggx_cpu_qx_size(t, cols);
    float *w = malloc(sizeof(float) * rows * cols), *wd = malloc(sizeof(float) * rows * cols);
    float *x = malloc(sizeof(float) * n * cols);
    uint8_t *wq = malloc(wrow * rows), *qx = malloc(qrow * n);
    const int64_t ldy = rows + 3;
    float *yref = malloc(sizeof(float) * n * ldy), *y = malloc(sizeof(float) * n * ldy);
    float *deq = malloc(sizeof(float) * rows * cols);
    fill_w(w, rows, cols);
    fill_x(x, n, cols);
    for (int64_t r = 0; r < rows; r++) {
        TEST_CHECK(ggx_quantize_row(t, w + r * cols, wq + r * wrow, cols) == 0);
        ggx_dequantize_row(t, wq + r * wrow, wd + r * cols, cols);
    }
    ggx_cpu_qx_prepare(t, x, n, cols, qx);
    /* the activation quantizer of every level writes the same bytes as the scalar one */
    {
        uint8_t *qx0 = malloc(qrow * n);
        ggx_cpu_quant_set_level(0);
        ggx_cpu_qx_prepare(t, x, n, cols, qx0);
        int diff = 0;
        for (int64_t j = 0; j < n; j++)
            diff += memcmp(qx_row(qx, qrow, j), qx_row(qx0, qrow, j), (size_t)nb * QX_BYTES_PER_BLOCK) != 0;
        TEST_CHECK_MSG(!diff, "%s cols %lld n=%lld: prepared activations differ from the scalar ones in %d rows",
                       ggx_type_name(t), (long long)cols, (long long)n, diff);
        ggx_cpu_quant_set_level(-1);
        free(qx0);
    }

    /* scalar reference vs the exact product of dequantized weights and f32 activations:
     * activation rounding is at most dx/2 per element */
    ggx_cpu_quant_set_level(0);
    for (int64_t i = 0; i < n * ldy; i++) yref[i] = -1234.5f;
    ggx_cpu_qmatmul(t, wq, cols, qx, n, yref, ldy, 0, rows);
    int bad = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *dx = qx_dx(qx_row(qx, qrow, j), nb);
        for (int64_t r = 0; r < rows; r++) {
            double exact = 0, bound = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                exact += (double)wd[r * cols + c] * x[j * cols + c];
                bound += fabs(wd[r * cols + c]) * 0.5 * dx[c / 32];
                mag += fabs(wd[r * cols + c] * x[j * cols + c]);
            }
            if (!(fabs(yref[j * ldy + r] - exact) <= bound * 1.001 + 1e-5 * mag)) bad++;
        }
        for (int64_t r = rows; r < ldy; r++) if (yref[j * ldy + r] != -1234.5f) bad++;
    }
    TEST_CHECK_MSG(!bad, "%s %lldx%lld n=%lld: scalar vs exact: %d bad", ggx_type_name(t),
                   (long long)rows, (long long)cols, (long long)n, bad);

    for (int level = 1; level <= max_level; level++) {
        ggx_cpu_quant_set_level(level);
        /* rows split in two ranges, as the thread pool does */
        for (int64_t i = 0; i < n * ldy; i++) y[i] = -1234.5f;
        const int64_t mid = rows / 3;
        ggx_cpu_qmatmul(t, wq, cols, qx, n, y, ldy, 0, mid);
        ggx_cpu_qmatmul(t, wq, cols, qx, n, y, ldy, mid, rows);
        bad = 0;
        double worst = 0;
        for (int64_t j = 0; j < n; j++) {
            const uint8_t *q = qx_row(qx, qrow, j);
            const float *dx = qx_dx(q, nb), *s = qx_s(q, nb);
            for (int64_t r = 0; r < rows; r++) {
                /* magnitude of the terms each path adds up (q8_0's +128 bias included) */
                double mag = 0;
                for (int64_t c = 0; c < cols; c++) mag += fabs(wd[r * cols + c]) * 127.0 * dx[c / 32];
                for (int64_t b = 0; b < nb; b++) {
                    const ggx_fp16_t d16 = *(const ggx_fp16_t *)(wq + r * wrow + b * ggx_type_traits_of(t)->type_size);
                    mag += fabs(ggx_fp16_to_f32(d16) * s[b]) * 128.0;
                }
                const double err = fabs((double)y[j * ldy + r] - yref[j * ldy + r]);
                if (err / mag > worst) worst = err / mag;
                if (!(err <= 2e-6 * mag)) bad++;
            }
            for (int64_t r = rows; r < ldy; r++) if (y[j * ldy + r] != -1234.5f) bad++;
        }
        TEST_CHECK_MSG(!bad, "%s %lldx%lld n=%lld level %d vs scalar: %d bad (worst rel %.3g)",
                       ggx_type_name(t), (long long)rows, (long long)cols, (long long)n, level, bad, worst);

        /* dequantization of a row range */
        const int64_t r0 = rows > 2 ? 1 : 0;
        ggx_cpu_dequant_rows(t, wq, cols, deq, r0, rows);
        bad = 0;
        for (int64_t i = 0; i < (rows - r0) * cols; i++) {
            const float ref = wd[r0 * cols + i];
            if (!(fabsf(deq[i] - ref) <= 1e-6f * (fabsf(ref) + 1e-3f))) bad++;
        }
        TEST_CHECK_MSG(!bad, "%s dequant %lldx%lld level %d: %d bad", ggx_type_name(t),
                       (long long)rows, (long long)cols, level, bad);
    }
    ggx_cpu_quant_set_level(-1);
    free(w); free(wd); free(x); free(wq); free(qx); free(yref); free(y); free(deq);
}

int main(void) {
    const int max_level = ggx_cpu_quant_set_level(-1);
    printf("kernel level on this CPU: %d (2 = AVX-512 VNNI, 1 = AVX2, 0 = scalar)\n", max_level);
    if (max_level < 2) fprintf(stderr, "note: AVX-512 VNNI path not testable on this CPU\n");
    const enum ggx_type types[] = {GGX_TYPE_Q8_0, GGX_TYPE_Q4_0, GGX_TYPE_Q4_X};
    const int64_t colss[] = {32, 96, 160, 224, 704, 1056, 4128};
    const int64_t rowss[] = {1, 7, 37};
    const int64_t ns[] = {1, 3, 7};
    for (int ti = 0; ti < 3; ti++)
        for (int ci = 0; ci < 7; ci++)
            for (int ri = 0; ri < 3; ri++)
                for (int ni = 0; ni < 3; ni++)
                    check_case(types[ti], rowss[ri], colss[ci], ns[ni], max_level);
    /* prefill-sized n: several token blocks (the kernel groups tokens by what fits in L2) */
    for (int ti = 0; ti < 3; ti++) {
        check_case(types[ti], 5, 4128, 70, max_level);
        check_case(types[ti], 9, 224, 70, max_level);
    }

    /* bad shapes: no size, poisoned output instead of garbage */
    TEST_CHECK(ggx_cpu_qx_size(GGX_TYPE_Q8_0, 48) == 0);
    TEST_CHECK(ggx_cpu_qx_size(GGX_TYPE_F32, 64) == 0);
    TEST_CHECK(ggx_cpu_quant_supported(GGX_TYPE_Q4_X) && !ggx_cpu_quant_supported(GGX_TYPE_BF16));
    float yy[2] = {0, 0};
    uint8_t dummy[64] = {0};
    ggx_cpu_qmatmul(GGX_TYPE_Q4_0, dummy, 48, dummy, 1, yy, 2, 0, 2);
    TEST_CHECK(isnan(yy[0]) && isnan(yy[1]));
    ggx_cpu_quant_force_scalar(1);
    TEST_CHECK(ggx_cpu_quant_level() == 0);
    ggx_cpu_quant_force_scalar(0);
    TEST_CHECK(ggx_cpu_quant_level() == max_level);
    return test_finish("test_quant_kernels");
}
