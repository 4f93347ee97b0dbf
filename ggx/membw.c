/* membw.c — memory read bandwidth measurement (see membw.h). */
#include "membw.h"

#include "error.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

int ggx_cpu_physical_cores(void); /* backends/cpu/cpu_pool.c */

typedef struct bw_slice {
    const float *p;
    size_t n; /* floats, multiple of 64 */
    float sink;
} bw_slice;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

static float read_scalar(const float *p, size_t n) {
    float a[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

static void *bw_thread(void *vp) {
    bw_slice *s = vp;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        s->sink = read_avx2(s->p, s->n);
        return NULL;
    }
#endif
    s->sink = read_scalar(s->p, s->n);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ggx_bench_membw(int n_threads, size_t bytes) {
    if (n_threads <= 0) n_threads = ggx_cpu_physical_cores();
    if (n_threads > 256) n_threads = 256;
    if (bytes == 0) bytes = (size_t)1 << 30;
    size_t per = bytes / sizeof(float) / (size_t)n_threads / 64 * 64;
    if (per == 0) return 0;
    size_t total = per * (size_t)n_threads;
    float *buf = aligned_alloc(64, total * sizeof(float));
    bw_slice *sl = calloc((size_t)n_threads, sizeof *sl);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    double best = 0;
    if (!buf || !sl || !th) goto done;
    for (size_t i = 0; i < total; i++) buf[i] = (float)(i & 1023);
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        int started = 0;
        for (int i = 0; i < n_threads; i++) {
            sl[i] = (bw_slice){buf + per * (size_t)i, per, 0};
            if (i > 0 && pthread_create(&th[i], NULL, bw_thread, &sl[i]) == 0) started = i;
        }
        bw_thread(&sl[0]);
        for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
        double dt = now() - t0;
        if (started != n_threads - 1) goto done; /* could not start every thread */
        double bw = (double)total * sizeof(float) / dt;
        if (bw > best) best = bw;
    }
done:
    free(buf);
    free(sl);
    free(th);
    return best;
}

ggx_status ggx_membw_measure(const char *backend, int n_threads, double *bytes_per_sec) {
    if (!bytes_per_sec) return ggx_fail(GGX_ERR_INVALID_ARG, "membw: NULL output");
    *bytes_per_sec = 0;
    if (backend && strcmp(backend, "cpu") != 0)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "membw: backend '%s' has no bandwidth probe here",
                        backend);
    double bw = ggx_bench_membw(n_threads, 0);
    if (bw <= 0) return ggx_fail(GGX_ERR_NOMEM, "membw: cannot allocate or start threads");
    *bytes_per_sec = bw;
    return GGX_OK;
}
