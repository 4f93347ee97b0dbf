/*
 * cpu_backend.c — the CPU backend's vtable: host memory, zero-copy weights, and graph execution
 * on the thread pool. OpenBLAS is pinned to one thread: our pool splits sgemm work by weight
 * tiles, so the two never oversubscribe the cores.
 */
#include "cpu_backend.h"

#include "error.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cpu_free(ggx_backend *be) {
    if (!be) return;
    ggx_cpu_ctx *ctx = be->ctx;
    if (ctx) {
        if (ctx->profile) {
            double tot = 0;
            for (int i = 0; i < GGX_OP_COUNT; i++) tot += ctx->prof_sec[i];
            fprintf(stderr, "ggx cpu profile (%d threads):\n", ctx->n_threads);
            for (int i = 0; i < GGX_OP_COUNT; i++)
                if (ctx->prof_calls[i])
                    fprintf(stderr, "  %-12s %8ld calls %10.3f ms  %5.1f%%\n",
                            ggx_op_name((enum ggx_op)i), ctx->prof_calls[i],
                            1e3 * ctx->prof_sec[i], tot > 0 ? 100 * ctx->prof_sec[i] / tot : 0);
        }
        ggx_cpu_pool_free(ctx->pool);
        free(ctx->qx);
        if (ctx->scratch)
            for (int i = 0; i < ctx->n_threads; i++) free(ctx->scratch[i]);
        free(ctx->scratch);
        free(ctx);
    }
    free(be);
}

static ggx_status cpu_alloc(ggx_backend *be, size_t size, void **out) {
    (void)be;
    size_t sz = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (!p) return ggx_fail(GGX_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", size);
    memset(p, 0, sz);
    *out = p;
    return GGX_OK;
}

static void cpu_release(ggx_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static ggx_status cpu_weights_map(ggx_backend *be, const void *host_ptr, size_t size,
                                  enum ggx_type type, int n_dims, const int64_t *dims,
                                  void **out) {
    (void)be, (void)size, (void)type, (void)n_dims, (void)dims;
    *out = (void *)host_ptr; /* zero-copy: the mapping is the weight */
    return GGX_OK;
}

static void cpu_weights_unmap(ggx_backend *be, void *ptr) { (void)be, (void)ptr; }

static ggx_status cpu_copy(ggx_backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    if (n) memmove(dst, src, n);
    return GGX_OK;
}

static ggx_status cpu_memset0(ggx_backend *be, void *dst, size_t n) {
    (void)be;
    if (n) memset(dst, 0, n);
    return GGX_OK;
}

static bool cpu_supports_op(ggx_backend *be, const ggx_tensor *node) {
    (void)be;
    if (node->op == GGX_OP_MUL_MAT || node->op == GGX_OP_GET_ROWS) {
        enum ggx_type t = node->src[0]->type;
        return t == GGX_TYPE_F32 || t == GGX_TYPE_F16 || t == GGX_TYPE_BF16 ||
               t == GGX_TYPE_Q8_0 || t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X;
    }
    return node->op > GGX_OP_NONE && node->op < GGX_OP_COUNT;
}

static ggx_status ensure_scratch(ggx_cpu_ctx *ctx, size_t floats) {
    if (floats <= ctx->scratch_floats) return GGX_OK;
    for (int i = 0; i < ctx->n_threads; i++) {
        free(ctx->scratch[i]);
        ctx->scratch[i] = aligned_alloc(64, ((floats * sizeof(float)) + 63) & ~(size_t)63);
        if (!ctx->scratch[i]) {
            ctx->scratch_floats = 0;
            for (int k = 0; k < ctx->n_threads; k++) free(ctx->scratch[k]), ctx->scratch[k] = NULL;
            return ggx_fail(GGX_ERR_NOMEM, "cpu backend: scratch of %zu floats", floats);
        }
    }
    ctx->scratch_floats = floats;
    return GGX_OK;
}

static ggx_status cpu_graph_compute(ggx_backend *be, ggx_graph *g) {
    ggx_cpu_ctx *ctx = be->ctx;
    size_t need = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        size_t s = ggx_cpu_node_scratch(g->nodes[k]);
        need = s > need ? s : need;
    }
    ggx_status st = ensure_scratch(ctx, need);
    if (st != GGX_OK) return st;
    for (int k = 0; k < g->n_nodes; k++) {
        ggx_tensor *nd = g->nodes[k];
        double t0 = ctx->profile ? now_sec() : 0;
        st = ggx_cpu_compute_node(ctx, nd, g->batch);
        if (st != GGX_OK) return st;
        if (ctx->profile) {
            ctx->prof_sec[nd->op] += now_sec() - t0;
            ctx->prof_calls[nd->op]++;
        }
    }
    return GGX_OK;
}

static ggx_status cpu_sync(ggx_backend *be) {
    (void)be;
    return GGX_OK;
}

ggx_status ggx_backend_cpu_init(const ggx_backend_params *p, ggx_backend **out) {
    *out = NULL;
    ggx_backend *be = calloc(1, sizeof *be);
    ggx_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    ggx_status st = GGX_OK;
    if (!be || !ctx) {
        st = ggx_fail(GGX_ERR_NOMEM, "cpu backend: out of memory");
        goto fail;
    }
    be->ctx = ctx;
    st = ggx_cpu_pool_create(p ? p->n_threads : 0, &ctx->pool);
    if (st != GGX_OK) goto fail;
    ctx->n_threads = ggx_cpu_pool_size(ctx->pool);
    ctx->scratch = calloc((size_t)ctx->n_threads, sizeof *ctx->scratch);
    if (!ctx->scratch) {
        st = ggx_fail(GGX_ERR_NOMEM, "cpu backend: out of memory");
        goto fail;
    }
    const char *prof = getenv("GGX_PROFILE");
    ctx->profile = prof && prof[0] && prof[0] != '0';
    openblas_set_num_threads(1);
    be->iface = (ggx_backend_i){
        .name = "cpu",
        .free = cpu_free,
        .alloc = cpu_alloc,
        .release = cpu_release,
        .weights_map = cpu_weights_map,
        .weights_unmap = cpu_weights_unmap,
        .upload = cpu_copy,
        .download = cpu_copy,
        .copy = cpu_copy,
        .memset0 = cpu_memset0,
        .supports_op = cpu_supports_op,
        .graph_compute = cpu_graph_compute,
        .synchronize = cpu_sync,
    };
    *out = be;
    return GGX_OK;
fail:
    if (be) cpu_free(be);
    else free(ctx);
    return st;
}
