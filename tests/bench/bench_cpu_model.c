/*
 * bench_cpu_model.c — CPU inference speed against its floors (results: docs/benchmarks.md,
 * section "CPU inference").
 *
 *   bench_cpu_model [--config CONFIG.json] [--type bf16] [-t THREADS] [--decode N]
 *                   [--prefill 512,2048] [--no-membw]
 *
 * 1. memory read bandwidth (ggx_bench_membw) with 1..THREADS threads;
 * 2. sgemm rate of this CPU: the same f32 GEMM shape as a prefill projection
 *    ([512 x 4096] x [4096 x 4096]^T) through the CPU backend's MUL_MAT (OpenBLAS per tile,
 *    tiles over our pool), and plain cblas_sgemm with OpenBLAS' own THREADS threads;
 * 3. a synthetic model of CONFIG (default: the 7B) with weights of TYPE, built in memory:
 *    decode tokens/s (steps after a 1-token prefill) vs the floor bandwidth/bytes-per-token,
 *    and prefill tokens/s for each length vs the sgemm rate (2 * matmul params flops/token).
 */
#include "backend.h"
#include "ggx.h"
#include "graph.h"
#include "membw.h"
#include "models/xlstm.h"
#include "types.h"

#include "models/xlstm_impl.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* matmul parameters of one block: q,k,v,ogate,gates,out_proj,FFN */
static double bench_layer_params(const ggx_model *m) {
    const xl_layer *L = &m->layers[0];
    const xl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wi, &L->wf, &L->out_proj,
                             &L->up_gate, &L->up, &L->down};
    double n = 0;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) n += (double)ws[i]->dims[0] * ws[i]->dims[1];
    return n;
}

static double sgemm_backend(int threads, int T, int O, int K) {
    ggx_backend *be;
    if (ggx_backend_create("cpu", &(ggx_backend_params){.n_threads = threads}, &be)) return 0;
    float *W = malloc(sizeof(float) * (size_t)O * K), *X = malloc(sizeof(float) * (size_t)T * K);
    for (size_t i = 0; i < (size_t)O * K; i++) W[i] = (float)(i % 17) * 0.01f;
    for (size_t i = 0; i < (size_t)T * K; i++) X[i] = (float)(i % 13) * 0.01f;
    ggx_graph *g = ggx_graph_new(8);
    ggx_tensor *x = ggx_graph_leaf(g, "x", GGX_TYPE_F32, 2, (int64_t[]){T, K}, X, GGX_TF_INPUT);
    ggx_tensor *w = ggx_graph_leaf(g, "w", GGX_TYPE_F32, 2, (int64_t[]){O, K}, W, GGX_TF_WEIGHT);
    ggx_tensor *y = ggx_mul_mat(g, w, x);
    y->flags |= GGX_TF_OUTPUT;
    void *arena = NULL;
    size_t cap = 0;
    ggx_graph_plan(g, be, &arena, &cap);
    ggx_graph_compute(g, be);
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        ggx_graph_compute(g, be);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    be->iface.release(be, arena);
    ggx_graph_free(g);
    ggx_backend_free(be);
    free(W), free(X);
    return 2.0 * T * O * K / best;
}

static double sgemm_openblas(int threads, int T, int O, int K) {
    float *W = malloc(sizeof(float) * (size_t)O * K), *X = malloc(sizeof(float) * (size_t)T * K);
    float *Y = malloc(sizeof(float) * (size_t)T * O);
    for (size_t i = 0; i < (size_t)O * K; i++) W[i] = (float)(i % 17) * 0.01f;
    for (size_t i = 0; i < (size_t)T * K; i++) X[i] = (float)(i % 13) * 0.01f;
    openblas_set_num_threads(threads);
    double best = 1e9;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, O, K, 1.0f, X, K, W, K, 0.0f, Y, O);
        double dt = now() - t0;
        if (r) best = dt < best ? dt : best;
    }
    openblas_set_num_threads(1);
    free(W), free(X), free(Y);
    return 2.0 * T * O * K / best;
}

int main(int argc, char **argv) {
    const char *config = "tests/data/configs/xlstm-7b/config.json";
    const char *tname = "bf16";
    int threads = 2, n_decode = 8, membw = 1;
    char prefill[256] = "512,2048";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) tname = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) snprintf(prefill, sizeof prefill, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--no-membw")) membw = 0;
        else {
            fprintf(stderr, "usage: %s [--config C] [--type T] [-t N] [--decode N] [--prefill a,b] [--no-membw]\n", argv[0]);
            return 2;
        }
    }
    int type = ggx_type_from_name(tname);
    if (type < 0) {
        fprintf(stderr, "unknown type %s\n", tname);
        return 2;
    }
    double bw = 0;
    if (membw) {
        for (int t = 1; t <= threads; t++) {
            double b = ggx_bench_membw(t, 0);
            printf("membw %d thread(s): %.2f GB/s\n", t, b / 1e9);
            if (t == threads) bw = b;
        }
    }
    double rate = sgemm_backend(threads, 512, 4096, 4096);
    printf("sgemm [512x4096]x[4096x4096]^T via CPU backend (%d threads): %.1f GFLOP/s\n", threads, rate / 1e9);
    printf("sgemm same shape, cblas_sgemm with OpenBLAS %d threads: %.1f GFLOP/s\n", threads,
           sgemm_openblas(threads, 512, 4096, 4096) / 1e9);
    fflush(stdout);

    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = threads;
    ggx_model *m;
    double t0 = now();
    if (ggx_model_synthetic(config, (enum ggx_type)type, &mp, 1, &m) != GGX_OK) {
        fprintf(stderr, "synthetic: %s\n", ggx_last_error());
        return 1;
    }
    uint64_t wb = ggx_model_weight_bytes_per_token(m), all = ggx_model_weight_bytes(m);
    printf("model %s: built in %.1f s; weights %.2f GB, read per token %.2f GB\n", ggx_model_desc(m),
           now() - t0, all / 1e9, wb / 1e9);
    fflush(stdout);
    const int V = ggx_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * V);
    ggx_state *st;
    ggx_state_create(m, &st);
    int32_t tok = 17;
    ggx_seq q = {st, &tok, 1, lg, 0};
    ggx_eval(m, &q, 1); /* warm-up: builds and plans the decode graph, faults pages in */
    ggx_eval(m, &q, 1);
    if (n_decode > 0) {
        double best = 1e9, sum = 0;
        for (int i = 0; i < n_decode; i++) {
            tok = (int32_t)((tok * 31 + 7) % V);
            double a = now();
            ggx_eval(m, &q, 1);
            double dt = now() - a;
            sum += dt;
            best = dt < best ? dt : best;
        }
        double mean = sum / n_decode;
        printf("decode (%d threads): mean %.3f s/token = %.3f tok/s, best %.3f s", threads, mean,
               1 / mean, best);
        if (bw > 0) { /* the host is shared: floor from the mean of bandwidth before and after */
            double bw2 = ggx_bench_membw(threads, 0);
            printf(" [membw after: %.2f GB/s]", bw2 / 1e9);
            bw = 0.5 * (bw + bw2);
            double floor_s = (double)wb / bw;
            printf("; floor %.3f s/token (%.2f GB / %.2f GB/s): mean at %.0f%%, best at %.0f%% of floor",
                   floor_s, wb / 1e9, bw / 1e9, 100 * floor_s / mean, 100 * floor_s / best);
        }
        printf("\n");
        fflush(stdout);
    }
    const int E = ggx_model_n_embd(m);
    char *save = NULL;
    for (char *tk = strtok_r(prefill, ",", &save); tk; tk = strtok_r(NULL, ",", &save)) {
        int T = atoi(tk);
        if (T < 1) continue;
        int32_t *ids = malloc(sizeof(int32_t) * T);
        for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 131 + 5) % V);
        ggx_state_reset(st);
        ggx_seq p = {st, ids, T, lg, 0};
        double a = now();
        ggx_status s = ggx_eval(m, &p, 1);
        double dt = now() - a;
        if (s != GGX_OK) {
            fprintf(stderr, "prefill %d: %s\n", T, ggx_last_error());
            return 1;
        }
        /* flops: 2 * T * (per-layer projection params) * layers + lm_head once */
        int L = ggx_model_n_layer(m);
        double per_layer = bench_layer_params(m);
        double flops = 2.0 * T * per_layer * L + 2.0 * V * E;
        printf("prefill %d tokens (%d threads): %.2f s = %.2f tok/s; %.1f GFLOP/s = %.0f%% of the "
               "measured sgemm rate\n", T, threads, dt, T / dt, flops / dt / 1e9,
               100 * flops / dt / rate);
        fflush(stdout);
        free(ids);
    }
    ggx_state_free(st);
    free(lg);
    ggx_model_free(m);
    return 0;
}

