/*
 * cpu_backend.h — internals of the CPU backend shared by its files (not a public header).
 * The public entry is ggx_backend_cpu_init() in ggx/backend.h.
 */
#ifndef GGX_CPU_BACKEND_H
#define GGX_CPU_BACKEND_H

#include "backend.h"
#include "cpu_kernels.h"
#include "cpu_pool.h"

/* Below this many tokens MUL_MAT uses the dot kernels (each weight row read once for all
 * tokens); from it on, OpenBLAS sgemm over tiles of GGX_CPU_TILE weight rows. */
#define GGX_CPU_GEMM_MIN 16
#define GGX_CPU_TILE 128

typedef struct ggx_cpu_ctx {
    ggx_cpu_pool *pool;
    int n_threads;
    float **scratch;       /* [n_threads] per-thread scratch */
    size_t scratch_floats; /* capacity of each */
    void *qx;              /* activations quantized for the quantized matmul (cpu_quant.h) */
    size_t qx_cap;
    int profile;           /* GGX_PROFILE=1: per-op wall time, printed at free */
    double prof_sec[GGX_OP_COUNT];
    long prof_calls[GGX_OP_COUNT];
} ggx_cpu_ctx;

/* Run one node on the pool (cpu_ops.c). */
ggx_status ggx_cpu_compute_node(ggx_cpu_ctx *ctx, ggx_tensor *node, const ggx_batch *batch);
/* Floats of per-thread scratch a node needs. */
size_t ggx_cpu_node_scratch(const ggx_tensor *node);

#endif
