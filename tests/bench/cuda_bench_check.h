/*
 * cuda_bench_check.h — the standalone CUDA microbenchmarks' (tests/bench/bench_*.cu) error
 * check: a failed CUDA call prints where and why and exits (a benchmark, not the library).
 */
#ifndef GGX_CUDA_BENCH_CHECK_H
#define GGX_CUDA_BENCH_CHECK_H
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));        \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#endif
