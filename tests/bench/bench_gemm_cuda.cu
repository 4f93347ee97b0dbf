/*
 * bench_gemm_cuda — the rate cuBLAS reaches on the 7B's prefill GEMMs on this GPU, by output
 * type and API (docs/benchmarks.md, "CUDA, session 8"): what the bf16 prefill target (45k tok/s
 * at 8192 tokens, ~650 TFLOPS in the GEMMs) can expect before any graph overhead.
 *
 *   bench_gemm_cuda [tokens=8192] [reps=10]
 *
 * Y^T [N x T] = W [N x K] X^T with W and X bf16 (row-major [N][K] and [T][K], as the backend
 * keeps them), f32 accumulation; variants: cublasGemmEx with an f32 output (what the backend
 * does), with a bf16 output, and cublasLt's first heuristic with a bf16 output. Prints ms and
 * TFLOPS per shape (best of reps after a warm-up) and the sum per layer.
 */
#include "cuda_bench_check.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CB(x)                                                                                  \
    do {                                                                                       \
        cublasStatus_t s_ = (x);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            fprintf(stderr, "%s:%d: cublas status %d\n", __FILE__, __LINE__, (int)s_);       \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

__global__ void fill_kernel(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = __float2bfloat16(((float)(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
    }
}

struct Shape {
    const char *name;
    int n, k;
};

enum { V_EX_F32, V_EX_BF16, V_LT_BF16, N_VARIANTS };
static const char *vname[N_VARIANTS] = {"GemmEx f32 out", "GemmEx bf16 out", "Lt bf16 out"};

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 8192, reps = argc > 2 ? atoi(argv[2]) : 10;
    if (T < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_gemm_cuda [tokens=8192] [reps=10]\n");
        return 2;
    }
    /* one 7B layer's products (xLSTM 7B: q, k 2048 rows; v, o gate, out_proj 4096; up/gate 2 x
     * 10944; down 4096 x 10944) */
    const Shape shapes[] = {{"q", 2048, 4096},      {"k", 2048, 4096},       {"v", 4096, 4096},
                            {"o gate", 4096, 4096}, {"out_proj", 4096, 4096}, {"up+gate", 21888, 4096},
                            {"down", 4096, 10944}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    size_t wmax = 0, xmax = 0, ymax = 0;
    for (int i = 0; i < n_shapes; i++) {
        const size_t w = (size_t)shapes[i].n * shapes[i].k, x = (size_t)T * shapes[i].k, y = (size_t)T * shapes[i].n;
        wmax = w > wmax ? w : wmax;
        xmax = x > xmax ? x : xmax;
        ymax = y > ymax ? y : ymax;
    }
    __nv_bfloat16 *W, *X;
    void *Y, *ws;
    const size_t ws_bytes = (size_t)32 << 20;
    CK(cudaMalloc(&W, wmax * 2));
    CK(cudaMalloc(&X, xmax * 2));
    CK(cudaMalloc(&Y, ymax * 4));
    CK(cudaMalloc(&ws, ws_bytes));
    fill_kernel<<<1024, 256>>>(W, wmax, 1u);
    fill_kernel<<<1024, 256>>>(X, xmax, 2u);
    CK(cudaDeviceSynchronize());
    cublasHandle_t h;
    cublasLtHandle_t lt;
    CB(cublasCreate(&h));
    CB(cublasLtCreate(&lt));
    CB(cublasSetWorkspace(h, ws, ws_bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s; %d tokens, best of %d\n", prop.name, T, reps);
    double layer_ms[N_VARIANTS] = {0, 0, 0};
    double flops_layer = 0;
    for (int i = 0; i < n_shapes; i++) {
        const int N = shapes[i].n, K = shapes[i].k;
        const double flops = 2.0 * N * (double)T * K;
        flops_layer += flops;
        printf("%-9s N=%-6d K=%-6d", shapes[i].name, N, K);
        for (int v = 0; v < N_VARIANTS; v++) {
            const float alpha = 1.0f, beta = 0.0f;
            cublasLtMatmulDesc_t op = nullptr;
            cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
            cublasLtMatmulHeuristicResult_t heur;
            if (v == V_LT_BF16) {
                CB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
                const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
                CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
                CB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
                CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
                CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, T, K));
                CB(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, T, N));
                cublasLtMatmulPreference_t pref;
                CB(cublasLtMatmulPreferenceCreate(&pref));
                CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                        sizeof ws_bytes));
                int found = 0;
                CB(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found));
                CB(cublasLtMatmulPreferenceDestroy(pref));
                if (!found) {
                    printf("  | %s: no algorithm", vname[v]);
                    continue;
                }
            }
            auto run = [&]() {
                if (v == V_LT_BF16)
                    CB(cublasLtMatmul(lt, op, &alpha, W, la, X, lb, &beta, Y, lc, Y, lc, &heur.algo, ws, ws_bytes, 0));
                else
                    CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, W, CUDA_R_16BF, K, X, CUDA_R_16BF, K,
                                    &beta, Y, v == V_EX_F32 ? CUDA_R_32F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
            };
            run();
            CK(cudaDeviceSynchronize());
            float best = 1e30f;
            for (int r = 0; r < reps; r++) {
                CK(cudaEventRecord(e0));
                run();
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float ms = 0;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                best = ms < best ? ms : best;
            }
            layer_ms[v] += best;
            printf("  | %s %.3f ms %.0f TFLOPS", vname[v], best, flops / (best * 1e-3) / 1e12);
            if (op) {
                cublasLtMatrixLayoutDestroy(la);
                cublasLtMatrixLayoutDestroy(lb);
                cublasLtMatrixLayoutDestroy(lc);
                cublasLtMatmulDescDestroy(op);
            }
        }
        printf("\n");
    }
    for (int v = 0; v < N_VARIANTS; v++)
        printf("layer, %s: %.3f ms = %.0f TFLOPS; 32 layers %.1f ms\n", vname[v], layer_ms[v],
               flops_layer / (layer_ms[v] * 1e-3) / 1e12, 32 * layer_ms[v]);
    cublasLtDestroy(lt);
    cublasDestroy(h);
    cudaFree(W);
    cudaFree(X);
    cudaFree(Y);
    cudaFree(ws);
    return 0;
}
