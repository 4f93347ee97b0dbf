/*
 * bench_quant.c — quantized CPU kernels: matrix-vector (decode) GB/s against the measured memory
 * read bandwidth, and prefill GEMM GFLOPS: dequantized tiles into OpenBLAS sgemm, and the int8
 * kernels (activations quantized once, ggx_cpu_qmatmul over row chunks).
 *
 *     build-x/tests/bench_quant [--threads 2] [--types q8_0,q4_0,q4_x] [--no-gemm] [--reps 5]
 *     build-x/tests/bench_quant --threads 1 --in-cache --no-gemm   # kernel compute ceiling
 *     build-x/tests/bench_quant --level 1                           # force the AVX2 path
 *     build-x/tests/bench_quant --no-gemm --pool --paired --reps 15 [--chunk-rows 32,0]
 *
 * --pool runs the matvecs on the CPU backend's thread pool in chunks of weight rows, as a decode
 * step does (the default: two static halves of the rows). --paired is the measurement for a noisy
 * host: each repetition measures the floor over a 256 MiB window and then one kernel pass over
 * >= 256 MiB of matrices right after it (~10 ms each), and reports the median of the per-pair
 * kernel/floor ratios with quartiles; the host's bandwidth drifts over seconds, so a pair sees
 * about the same machine.
 *
 * Weights are streamed from DRAM: every measurement rotates through >= 256 MiB of distinct
 * matrices, so none is in the 32 MiB L3 when it is read. The floor is a 2-thread sum over a
 * 1 GiB array (the same method as docs/reference-numbers.md). Threads: by default a plain pthread
 * split of the rows in halves; --pool runs them as a decode step does (the backend's pool and
 * chunk rule). Each matvec line also measures the floor right before
 * and right after it (3 repetitions each) and reports the fraction of the one before: on a busy
 * machine, a line whose two floors disagree was disturbed. With --threads 1 every time is the thread's CPU time
 * (so a busy machine's time slicing does not count; memory contention from other processes still
 * does). Results go into docs/benchmarks.md.
 */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/cpu_pool.h"
#include "backends/cpu/cpu_quant_impl.h"
#include "ggx/quants.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: for single-thread in-cache runs on a busy machine, time spent
 * descheduled does not count against the kernel */
static double now_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---------------------------------------------------------------- thread team */
typedef struct team {
    int n;
    double cpu[64]; /* per thread: CPU seconds spent in fn, summed over runs */
    pthread_t th[64];
    pthread_barrier_t start, done;
    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    int quit;
} team;

typedef struct worker_arg { team *t; int ith; } worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    team *t = a->t;
    for (;;) {
        pthread_barrier_wait(&t->start);
        if (t->quit) break;
        const double c0 = now_cpu();
        t->fn(t->ctx, a->ith, t->n);
        t->cpu[a->ith] += now_cpu() - c0;
        pthread_barrier_wait(&t->done);
    }
    return NULL;
}

static worker_arg g_args[64];
static void team_init(team *t, int n) {
    memset(t, 0, sizeof *t);
    t->n = n;
    t->quit = 0;
    pthread_barrier_init(&t->start, NULL, (unsigned)n);
    pthread_barrier_init(&t->done, NULL, (unsigned)n);
    for (int i = 1; i < n; i++) {
        g_args[i] = (worker_arg){t, i};
        pthread_create(&t->th[i], NULL, worker, &g_args[i]);
    }
}
/* run fn on all n threads (the caller is thread 0) and wait */
static void team_run(team *t, void (*fn)(void *, int, int), void *ctx) {
    t->fn = fn;
    t->ctx = ctx;
    pthread_barrier_wait(&t->start);
    const double c0 = now_cpu();
    fn(ctx, 0, t->n);
    t->cpu[0] += now_cpu() - c0;
    pthread_barrier_wait(&t->done);
}

/* --cpu-time: durations are the largest per-thread CPU time instead of wall time, an estimate of
 * the wall time had no other process taken the CPUs (memory contention still counts) */
static int g_cpu_clock = 0;
static int g_paired = 0; /* --paired: floor and kernel alternate, ratio per pair */
static struct ggx_cpu_pool *g_pool; /* --pool: matvecs run on the CPU backend's pool */
static double team_clock(team *t) {
    if (g_pool || (!g_cpu_clock && t->n > 1)) return now();
    double mx = 0;
    for (int i = 0; i < t->n; i++) mx = t->cpu[i] > mx ? t->cpu[i] : mx;
    return mx;
}
static void team_free(team *t) {
    t->quit = 1;
    pthread_barrier_wait(&t->start);
    for (int i = 1; i < t->n; i++) pthread_join(t->th[i], NULL);
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->done);
}

/* ---------------------------------------------------------------- memory read floor */
typedef struct sum_ctx { const uint64_t *a; size_t n; uint64_t part[64]; } sum_ctx;

static void sum_fn(void *p, int ith, int nth) {
    sum_ctx *c = p;
    const size_t i0 = c->n * ith / nth, i1 = c->n * (ith + 1) / nth;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = i0; i + 4 <= i1; i += 4) { s0 += c->a[i]; s1 += c->a[i + 1]; s2 += c->a[i + 2]; s3 += c->a[i + 3]; }
    c->part[ith] = s0 + s1 + s2 + s3;
}

static uint64_t *g_arr; /* the 1 GiB array, allocated and filled once */

static double membw(team *t, int reps, double *best) {
    const size_t bytes = 1ull << 30, n = bytes / 8;
    if (!g_arr) {
        g_arr = malloc(bytes);
        for (size_t i = 0; i < n; i++) g_arr[i] = i * 2654435761u;
    }
    sum_ctx c = {g_arr, n, {0}};
    double v[32];
    uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        const double t0 = team_clock(t);
        team_run(t, sum_fn, &c);
        v[r] = (double)bytes / (team_clock(t) - t0) / 1e9;
        for (int k = 0; k < t->n; k++) sink += c.part[k];
    }
    if (sink == 42) printf(" ");
    double b = 0;
    for (int r = 0; r < reps; r++) b = v[r] > b ? v[r] : b;
    *best = b;
    return median(v, reps);
}

/* --paired: the floor over one 256 MiB window of the array (window w % 4), on the same threads
 * as the kernels (the pool's, in 4 MiB chunks, with --pool) */
#define WIN_BYTES (256u << 20)
#define WIN_CHUNK (4u << 20)
static void win_chunk(void *p, int64_t chunk, int ith) {
    sum_ctx *c = p;
    const uint64_t *a = c->a + (size_t)chunk * (WIN_CHUNK / 8);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < WIN_CHUNK / 8; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
    c->part[ith] += s0 + s1 + s2 + s3;
}
static double membw_window(team *t, int w) {
    double fb;
    if (!g_arr) membw(t, 1, &fb); /* allocates and fills the array */
    sum_ctx c = {g_arr + (size_t)(w & 3) * (WIN_BYTES / 8), WIN_BYTES / 8, {0}};
    const double t0 = team_clock(t);
    if (g_pool) ggx_cpu_pool_run(g_pool, WIN_BYTES / WIN_CHUNK, win_chunk, &c);
    else team_run(t, sum_fn, &c);
    const double gbs = (double)WIN_BYTES / (team_clock(t) - t0) / 1e9;
    if (c.part[0] == 42) printf(" ");
    return gbs;
}

/* ---------------------------------------------------------------- matvec */
typedef struct mv_ctx {
    enum ggx_type type;
    const uint8_t *w;
    int64_t rows, cols, n;
    const void *qx;
    float *y;
} mv_ctx;

static void mv_fn(void *p, int ith, int nth) {
    mv_ctx *c = p;
    const int64_t r0 = c->rows * ith / nth, r1 = c->rows * (ith + 1) / nth;
    ggx_cpu_qmatmul(c->type, c->w, c->cols, c->qx, c->n, c->y, c->rows, r0, r1);
}

/* --pool: the CPU backend's pool (spinning workers, chunks of weight rows claimed dynamically),
 * as MUL_MAT runs a decode matvec. Chunk rows: --chunk-rows N, or 0 = the backend's rule
 * (backends/cpu/cpu_ops.c wrows_per_chunk: >= 32 rows and ~256 KiB of weights; kept in step by
 * hand). --chunk-rows 32,0 measures both, interleaved round by round (with --paired). */
static int g_chunk_rows[8] = {0}, g_n_chunk = 1, g_chunk_cur = 0;
static int64_t chunk_rows(const mv_ctx *c) {
    const int r = g_chunk_rows[g_chunk_cur];
    if (r > 0) return r;
    const int64_t b = (int64_t)ggx_row_size(c->type, c->cols), k = ((256 << 10) + b - 1) / b;
    return k > 32 ? (k + 15) & ~(int64_t)15 : 32;
}
static void mv_chunk(void *p, int64_t chunk, int ith) {
    (void)ith;
    mv_ctx *c = p;
    const int64_t per = chunk_rows(c), r0 = chunk * per, r1 = r0 + per < c->rows ? r0 + per : c->rows;
    ggx_cpu_qmatmul(c->type, c->w, c->cols, c->qx, c->n, c->y, c->rows, r0, r1);
}
static void mv_run(team *tm, mv_ctx *c) {
    if (g_pool) {
        const int64_t per = chunk_rows(c);
        ggx_cpu_pool_run(g_pool, (c->rows + per - 1) / per, mv_chunk, c);
    } else {
        team_run(tm, mv_fn, c);
    }
}

static float *random_f32(int64_t n, uint64_t seed) {
    float *x = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(seed >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
    }
    return x;
}

/* quantized copies of one random matrix, enough of them to exceed `min_bytes` in total */
static uint8_t **make_mats(enum ggx_type t, int64_t rows, int64_t cols, size_t min_bytes, int *count) {
    const size_t wrow = ggx_row_size(t, cols), bytes = wrow * rows;
    int m = (int)((min_bytes + bytes - 1) / bytes);
    if (m < 2) m = 2;
    float *w = random_f32(cols, 7);
    uint8_t *q0 = malloc(bytes);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) w[c] = w[c] * 0.999f + 0.001f * (float)((r * 31 + c * 17) % 97 - 48) / 48.0f;
        ggx_quantize_row(t, w, q0 + r * wrow, cols);
    }
    uint8_t **mats = malloc(sizeof *mats * m);
    for (int i = 0; i < m; i++) {
        mats[i] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        memcpy(mats[i], q0, bytes);
    }
    free(q0);
    free(w);
    *count = m;
    return mats;
}

static size_t g_rotate = 256u << 20; /* bytes of distinct matrices per measurement */

static void bench_matvec(team *tm, enum ggx_type t, int64_t rows, int64_t cols, int64_t n,
                         double floor_gbs, int reps) {
    int m;
    uint8_t **mats = make_mats(t, rows, cols, g_rotate, &m);
    const size_t bytes = ggx_row_size(t, cols) * rows;
    float *x = random_f32(cols * n, 11);
    void *qx = malloc(ggx_cpu_qx_size(t, cols) * n);
    float *y = malloc(sizeof(float) * rows * n);
    ggx_cpu_qx_prepare(t, x, n, cols, qx);
    mv_ctx c = {t, NULL, rows, cols, n, qx, y};
    for (int i = 0; i < m; i++) { c.w = mats[i]; mv_run(tm, &c); } /* warm up, page in */
    double v[64];
    const int inner = g_rotate == 0 ? 50 : 1;
    if (g_paired && g_rotate) {
        /* alternate floor windows and kernel passes (each ~256 MiB, ~10 ms): the host's bandwidth
         * drifts on a scale of seconds, so each pair sees about the same machine */
        const int nv = g_pool ? g_n_chunk : 1;
        double f[8][64], vv[8][64], ratio[8][64];
        for (int r = 0; r < reps; r++)
            for (int k = 0; k < nv; k++) {
                const int vi = (k + r) % nv; /* rotate the order round by round */
                g_chunk_cur = vi;
                f[vi][r] = membw_window(tm, r) /* the same window for every variant of a round */;
                const double t0 = team_clock(tm);
                for (int i = 0; i < m; i++) { c.w = mats[i]; mv_run(tm, &c); }
                vv[vi][r] = (double)bytes * m / (team_clock(tm) - t0) / 1e9;
                ratio[vi][r] = vv[vi][r] / f[vi][r];
            }
        for (int vi = 0; vi < nv; vi++) {
            g_chunk_cur = vi;
            char split[48] = "halves";
            if (g_pool) snprintf(split, sizeof split, "pool, %lld-row chunks", (long long)chunk_rows(&c));
            const double mv = median(vv[vi], reps), mf = median(f[vi], reps);
            const double q1 = (qsort(ratio[vi], (size_t)reps, sizeof(double), cmp_d), ratio[vi][reps / 4]);
            const double q3 = ratio[vi][(3 * reps) / 4], mr = median(ratio[vi], reps);
            printf("matvec %-5s %6lldx%-5lld n=%lld  %6.1f MB x %2d mats | %s | paired x%d: kernel median %5.1f GB/s, "
                   "floor median %5.1f GB/s | kernel/floor median %3.0f%% (quartiles %3.0f%%-%3.0f%%)\n",
                   ggx_type_name(t), (long long)rows, (long long)cols, (long long)n, bytes / 1e6, m, split,
                   reps, mv, mf, 100 * mr, 100 * q1, 100 * q3);
        }
        g_chunk_cur = 0;
        for (int i = 0; i < m; i++) free(mats[i]);
        free(mats); free(x); free(qx); free(y);
        return;
    }
    for (int r = 0; r < reps; r++) {
        const double t0 = team_clock(tm);
        for (int k = 0; k < inner; k++)
            for (int i = 0; i < m; i++) { c.w = mats[i]; mv_run(tm, &c); }
        v[r] = (double)bytes * m * inner / (team_clock(tm) - t0) / 1e9;
    }
    double best = 0;
    for (int r = 0; r < reps; r++) best = v[r] > best ? v[r] : best;
    const double med = median(v, reps);
    /* the floor again, right after: on a busy machine the pair shows whether it held still */
    double fb2;
    const double f2 = g_rotate ? membw(tm, 3, &fb2) : floor_gbs;
    printf("matvec %-5s %6lldx%-5lld n=%lld  %6.1f MB x %2d mats | median %5.1f GB/s (%3.0f%% of floor), "
           "best %5.1f GB/s (%3.0f%%) | %.2f ms/product | floor before %.1f, after %.1f GB/s\n",
           ggx_type_name(t), (long long)rows, (long long)cols, (long long)n, bytes / 1e6, m, med,
           100 * med / floor_gbs, best, 100 * best / floor_gbs, bytes / med / 1e6, floor_gbs, f2);
    for (int i = 0; i < m; i++) free(mats[i]);
    free(mats); free(x); free(qx); free(y);
}

/* ---------------------------------------------------------------- prefill GEMM */
typedef struct gemm_ctx {
    enum ggx_type type;
    const uint8_t *w;   /* [rows, cols] quantized, or f32 when type == F32 */
    int64_t rows, cols, n, tile;
    const float *x;     /* [n, cols] */
    float *y;           /* [n, rows] */
    float *tiles[64];   /* per thread: [tile, cols] f32 */
} gemm_ctx;

static void gemm_fn(void *p, int ith, int nth) {
    gemm_ctx *c = p;
    const int64_t r0 = c->rows * ith / nth, r1 = c->rows * (ith + 1) / nth;
    for (int64_t a = r0; a < r1; a += c->tile) {
        const int64_t b = a + c->tile < r1 ? a + c->tile : r1;
        const float *wt;
        if (c->type == GGX_TYPE_F32) {
            wt = (const float *)c->w + a * c->cols;
        } else {
            ggx_cpu_dequant_rows(c->type, c->w, c->cols, c->tiles[ith], a, b);
            wt = c->tiles[ith];
        }
        /* y[:, a:b] = x [n, cols] . wt^T [cols, b-a] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->n, (int)(b - a), (int)c->cols,
                    1.0f, c->x, (int)c->cols, wt, (int)c->cols, 0.0f, c->y + a, (int)c->rows);
    }
}

static void bench_gemm(team *tm, enum ggx_type t, int64_t rows, int64_t cols, int64_t n, int64_t tile,
                       int reps) {
    float *wf = random_f32(rows * cols, 3);
    uint8_t *w = (uint8_t *)wf;
    if (t != GGX_TYPE_F32) {
        const size_t wrow = ggx_row_size(t, cols);
        w = malloc(wrow * rows);
        for (int64_t r = 0; r < rows; r++) ggx_quantize_row(t, wf + r * cols, w + r * wrow, cols);
    }
    float *x = random_f32(n * cols, 5), *y = malloc(sizeof(float) * n * rows);
    gemm_ctx c = {t, w, rows, cols, n, tile, x, y, {0}};
    for (int i = 0; i < tm->n; i++) c.tiles[i] = malloc(sizeof(float) * tile * cols);
    team_run(tm, gemm_fn, &c);
    double v[64];
    for (int r = 0; r < reps; r++) {
        const double t0 = team_clock(tm);
        team_run(tm, gemm_fn, &c);
        v[r] = 2.0 * n * rows * cols / (team_clock(tm) - t0) / 1e9;
    }
    double best = 0;
    for (int r = 0; r < reps; r++) best = v[r] > best ? v[r] : best;
    printf("gemm   %-5s %6lldx%-5lld n=%lld tile %lld rows | median %6.1f GFLOPS, best %6.1f GFLOPS\n",
           ggx_type_name(t), (long long)rows, (long long)cols, (long long)n, (long long)tile,
           median(v, reps), best);
    for (int i = 0; i < tm->n; i++) free(c.tiles[i]);
    if (w != (uint8_t *)wf) free(w);
    free(wf); free(x); free(y);
}

/* prefill through the int8 kernels: activations quantized once (timed), rows split by thread,
 * each thread's rows in chunks of 32 as the CPU backend's pool hands them out */
typedef struct i8_ctx { enum ggx_type type; const uint8_t *w; int64_t rows, cols, n; void *qx; float *y; } i8_ctx;

static void i8_fn(void *p, int ith, int nth) {
    i8_ctx *c = p;
    const int64_t r0 = c->rows * ith / nth, r1 = c->rows * (ith + 1) / nth;
    for (int64_t a = r0; a < r1; a += 32)
        ggx_cpu_qmatmul(c->type, c->w, c->cols, c->qx, c->n, c->y, c->rows, a, a + 32 < r1 ? a + 32 : r1);
}

static void bench_gemm_int8(team *tm, enum ggx_type t, int64_t rows, int64_t cols, int64_t n, int reps) {
    float *wf = random_f32(rows * cols, 3);
    const size_t wrow = ggx_row_size(t, cols);
    uint8_t *w = malloc(wrow * rows);
    for (int64_t r = 0; r < rows; r++) ggx_quantize_row(t, wf + r * cols, w + r * wrow, cols);
    float *x = random_f32(n * cols, 5), *y = malloc(sizeof(float) * n * rows);
    void *qx = malloc(ggx_cpu_qx_size(t, cols) * n);
    i8_ctx c = {t, w, rows, cols, n, qx, y};
    double v[64];
    for (int r = -1; r < reps; r++) {
        /* the activation quantization runs on thread 0 outside the team: counted in its CPU time
         * (cpu clock) or in the wall time */
        const double t0 = team_clock(tm), c0 = now_cpu();
        ggx_cpu_qx_prepare(t, x, n, cols, qx);
        tm->cpu[0] += now_cpu() - c0;
        team_run(tm, i8_fn, &c);
        if (r >= 0) v[r] = 2.0 * n * rows * cols / (team_clock(tm) - t0) / 1e9;
    }
    double best = 0;
    for (int r = 0; r < reps; r++) best = v[r] > best ? v[r] : best;
    printf("gemm   %-5s %6lldx%-5lld n=%lld int8 activations (ggx_cpu_qmatmul) | median %6.1f GFLOPS, best %6.1f GFLOPS\n",
           ggx_type_name(t), (long long)rows, (long long)cols, (long long)n, median(v, reps), best);
    free(wf); free(w); free(x); free(y); free(qx);
}

int main(int argc, char **argv) {
    int nth = 2, pool = 0, reps = 5, gemm = 1, matvec = 1, in_cache = 0, ntok = 1, level = -1;
    int64_t tile = 256;
    const char *types = "q8_0,q4_0,q4_x";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--no-gemm")) gemm = 0;
        else if (!strcmp(argv[i], "--no-matvec")) matvec = 0;
        else if (!strcmp(argv[i], "--in-cache")) in_cache = 1;
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) ntok = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tile") && i + 1 < argc) tile = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-time")) g_cpu_clock = 1;
        else if (!strcmp(argv[i], "--pool")) pool = 1;
        else if (!strcmp(argv[i], "--paired")) g_paired = 1;
        else if (!strcmp(argv[i], "--chunk-rows") && i + 1 < argc) {
            g_n_chunk = 0;
            for (char *tok = strtok(argv[++i], ","); tok && g_n_chunk < 8; tok = strtok(NULL, ","))
                g_chunk_rows[g_n_chunk++] = atoi(tok);
            if (!g_n_chunk) g_n_chunk = 1;
        }
        else {
            fprintf(stderr, "usage: bench_quant [--threads N] [--reps N] [--types a,b] [--no-gemm] [--no-matvec] [--in-cache] [--n TOKENS] [--tile ROWS] [--level 0|1|2] [--cpu-time] [--pool [--chunk-rows N,...]] [--paired]\n");
            return 2;
        }
    }
    if (nth < 1 || nth > 64 || reps < 1 || reps > 32 || ntok < 1 || ntok > 64 || tile < 1) { fprintf(stderr, "bad --threads/--reps\n"); return 2; }
    openblas_set_num_threads(1); /* our threads split the rows; sgemm runs inside each */
    team tm;
    team_init(&tm, nth);
    if (pool) {
        if (ggx_cpu_pool_create(nth, &g_pool) != GGX_OK) { fprintf(stderr, "pool: %s\n", ggx_last_error()); return 1; }
        g_cpu_clock = 0; /* the pool's threads are not timed per thread: wall time */
    }
    level = ggx_cpu_quant_set_level(level); /* -1: the best this CPU has */
    printf("bench_quant: %d threads, kernel level %d (2 = AVX-512 VNNI, 1 = AVX2, 0 = scalar), "
           "weights streamed from DRAM unless --in-cache, timed by %s, rows split %s\n", nth, level,
           !g_pool && (g_cpu_clock || nth == 1) ? "the largest per-thread CPU time" : "wall time",
           g_pool ? "by the backend's pool (spinning workers)" : "in halves (pthread barrier)");
    double fbest;
    const double floor_gbs = membw(&tm, reps, &fbest);
    printf("memory read floor (sum over 1 GiB, %d threads): median %.1f GB/s, best %.1f GB/s\n", nth,
           floor_gbs, fbest);
    int64_t shapes[2][2] = {{4096, 4096}, {10944, 4096}};
    if (in_cache) { /* kernel compute speed: two small matrices that stay in L2 */
        g_rotate = 0;
        shapes[0][0] = 128 * nth;
        shapes[1][0] = 32 * nth;
        shapes[1][1] = 10944;
        printf("--in-cache: weights stay in L2; these numbers are compute ceilings, not DRAM speeds%s\n",
               nth == 1 ? " (timed with thread CPU time)" : "");
    }
    char buf[256];
    if (matvec) {
        int first = 1;
        snprintf(buf, sizeof buf, "%s", types);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            const int t = ggx_type_from_name(tok);
            if (t < 0 || !ggx_cpu_quant_supported((enum ggx_type)t)) { fprintf(stderr, "unknown type %s\n", tok); continue; }
            for (int s = 0; s < 2; s++) {
                /* the floor right before each measurement (the first one: the run's floor) */
                double fb, f = floor_gbs;
                if (!in_cache && !first && !g_paired) f = membw(&tm, 3, &fb);
                first = 0;
                bench_matvec(&tm, (enum ggx_type)t, shapes[s][0], shapes[s][1], ntok, f, reps);
            }
        }
    }
    if (gemm) {
        bench_gemm(&tm, GGX_TYPE_F32, 4096, 4096, 512, tile, reps);
        snprintf(buf, sizeof buf, "%s", types);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            const int t = ggx_type_from_name(tok);
            if (t < 0 || !ggx_cpu_quant_supported((enum ggx_type)t)) continue;
            bench_gemm(&tm, (enum ggx_type)t, 4096, 4096, 512, tile, reps);
            bench_gemm_int8(&tm, (enum ggx_type)t, 4096, 4096, 512, reps);
        }
    }
    team_free(&tm);
    if (g_pool) ggx_cpu_pool_free(g_pool);
    return 0;
}
