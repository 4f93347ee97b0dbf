/* test_cpu_kernels.c — every SIMD kernel table against the scalar reference, on fresh random
 * inputs of awkward sizes (not multiples of the vector width). */
#include "testutil.h"

#include "backends/cpu/cpu_kernels.h"
#include "types.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

static uint64_t g_rng;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float rel_err(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return (float)(num / (den > 0 ? den : 1));
}

/* dot products: error relative to sum |w||x| (the scale of the rounding), per output */
static float dot_err(const float *a, const float *b, const float *wabs, const float *x, int n,
                     int nx) {
    double worst = 0;
    for (int j = 0; j < nx; j++) {
        double scale = 0;
        for (int c = 0; c < n; c++) scale += fabs((double)wabs[c] * x[(size_t)j * n + c]);
        worst = fmax(worst, fabs((double)a[j] - b[j]) / (scale > 0 ? scale : 1));
    }
    return (float)worst;
}

int main(void) {
    g_rng = ((uint64_t)time(NULL) * 2654435761ULL) ^ ((uint64_t)getpid() << 20) ^ 17;
    printf("seed %llu\n", (unsigned long long)g_rng);
    const ggx_cpu_kernels *tabs[3];
    int nt = ggx_cpu_kernels_available(tabs, 3);
    const ggx_cpu_kernels *ref = &ggx_cpu_kernels_scalar;
    printf("kernel tables:");
    for (int i = 0; i < nt; i++) printf(" %s", tabs[i]->name);
    printf("\n");
    TEST_CHECK(nt >= 1 && tabs[nt - 1] == ref);

    const int sizes[] = {1, 7, 15, 17, 33, 63, 100, 255, 257, 1000, 4099};
    for (int ti = 0; ti < nt; ti++) {
        const ggx_cpu_kernels *k = tabs[ti];
        if (k == ref) continue;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int n = sizes[si];
            for (int nx = 1; nx <= 9; nx += 2) {
                float *w = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n * nx);
                uint16_t *wb = malloc(2 * n), *wh = malloc(2 * n);
                float o1[16], o2[16];
                for (int i = 0; i < n; i++) {
                    w[i] = frand();
                    wb[i] = ggx_f32_to_bf16(frand());
                    wh[i] = ggx_f32_to_fp16(frand());
                }
                for (int i = 0; i < n * nx; i++) x[i] = frand();
                float *wa = malloc(sizeof(float) * n);
                ref->dot_f32(w, x, n, nx, n, o1);
                k->dot_f32(w, x, n, nx, n, o2);
                TEST_CHECK_MSG(dot_err(o2, o1, w, x, n, nx) < 1e-6, "%s dot_f32 n=%d nx=%d err %g",
                               k->name, n, nx, dot_err(o2, o1, w, x, n, nx));
                for (int i = 0; i < n; i++) wa[i] = ggx_bf16_to_f32(wb[i]);
                ref->dot_bf16(wb, x, n, nx, n, o1);
                k->dot_bf16(wb, x, n, nx, n, o2);
                TEST_CHECK_MSG(dot_err(o2, o1, wa, x, n, nx) < 1e-6, "%s dot_bf16 n=%d nx=%d",
                               k->name, n, nx);
                for (int i = 0; i < n; i++) wa[i] = ggx_fp16_to_f32(wh[i]);
                ref->dot_f16(wh, x, n, nx, n, o1);
                k->dot_f16(wh, x, n, nx, n, o2);
                TEST_CHECK_MSG(dot_err(o2, o1, wa, x, n, nx) < 1e-6, "%s dot_f16 n=%d nx=%d",
                               k->name, n, nx);
                free(wa);
                free(w), free(x), free(wb), free(wh);
            }
            /* conversions are exact */
            uint16_t *src = malloc(2 * n);
            float *d1 = malloc(4 * n), *d2 = malloc(4 * n);
            for (int i = 0; i < n; i++) src[i] = ggx_f32_to_bf16(frand() * 100);
            ref->cvt_bf16(src, d1, n);
            k->cvt_bf16(src, d2, n);
            TEST_CHECK_MSG(!memcmp(d1, d2, 4 * n), "%s cvt_bf16 n=%d", k->name, n);
            for (int i = 0; i < n; i++) src[i] = ggx_f32_to_fp16(frand() * 100);
            ref->cvt_f16(src, d1, n);
            k->cvt_f16(src, d2, n);
            TEST_CHECK_MSG(!memcmp(d1, d2, 4 * n), "%s cvt_f16 n=%d", k->name, n);
            free(src), free(d1), free(d2);
        }
        /* fused mLSTM step: state update and readout */
        const int shapes[][2] = {{3, 5}, {16, 17}, {33, 70}, {64, 129}};
        for (size_t si = 0; si < 4; si++) {
            int dqk = shapes[si][0], dv = shapes[si][1];
            float *C1 = malloc(4 * dqk * dv), *C2 = malloc(4 * dqk * dv);
            float *kk = malloc(4 * dqk), *qs = malloc(4 * dqk), *v = malloc(4 * dv);
            float *n1 = malloc(4 * dv), *n2 = malloc(4 * dv);
            for (int i = 0; i < dqk * dv; i++) C1[i] = C2[i] = frand();
            for (int i = 0; i < dqk; i++) kk[i] = frand(), qs[i] = frand();
            for (int i = 0; i < dv; i++) v[i] = frand();
            float fg = 0.5f + 0.4f * frand(), ig = 0.5f + 0.4f * frand();
            ref->mlstm_step(C1, kk, v, qs, fg, ig, dqk, dv, n1);
            k->mlstm_step(C2, kk, v, qs, fg, ig, dqk, dv, n2);
            TEST_CHECK_MSG(rel_err(C2, C1, dqk * dv) < 1e-6, "%s mlstm_step C %dx%d", k->name, dqk,
                           dv);
            TEST_CHECK_MSG(rel_err(n2, n1, dv) < 1e-5, "%s mlstm_step num %dx%d", k->name, dqk, dv);
            free(C1), free(C2), free(kk), free(qs), free(v), free(n1), free(n2);
        }
    }
    return test_finish("test_cpu_kernels");
}
