/*
 * backend.h — the interface every compute backend implements (backends/cpu, backends/cuda).
 * The model code talks only to this; adding a backend means adding a folder, not editing models.
 *
 *     ggx_backend *be;
 *     ggx_backend_create("cpu", &(ggx_backend_params){.n_threads = 2}, &be);
 *     void *w = NULL; be->iface.weights_map(be, host_ptr, nbytes, &w);   // zero-copy on cpu
 *     ...  be->iface.graph_compute(be, graph);
 *     ggx_backend_free(be);
 *
 * Memory returned by alloc/weights_map is "backend memory": host memory for cpu, device memory
 * for cuda. Host code touches it only through upload/download.
 */
#ifndef GGX_BACKEND_H
#define GGX_BACKEND_H

#include "graph.h"

typedef struct ggx_backend ggx_backend;

typedef struct ggx_backend_params {
    int n_threads; /* cpu: <= 0 -> physical cores */
    int device;    /* cuda device index */
} ggx_backend_params;

typedef struct ggx_backend_i {
    const char *name;
    void (*free)(ggx_backend *be);
    /* Buffers for intermediates and states; zero-filled. */
    ggx_status (*alloc)(ggx_backend *be, size_t size, void **out);
    void (*release)(ggx_backend *be, void *ptr);
    /* Make weights at host_ptr (an mmap of the file) usable by the backend. cpu returns host_ptr
     * itself; cuda copies to the device (and may repack). `type`/dims let it choose a layout. */
    ggx_status (*weights_map)(ggx_backend *be, const void *host_ptr, size_t size,
                              enum ggx_type type, int n_dims, const int64_t *dims, void **out);
    void (*weights_unmap)(ggx_backend *be, void *ptr);
    /* Optional (NULL: weights_map is used). For weights that only GET_ROWS reads (the token
     * embedding: one row per token per step): the backend may keep them in host memory it reads
     * directly (cuda: mapped pinned memory), so they take no device memory. Same contract as
     * weights_map; released with weights_unmap. */
    ggx_status (*weights_map_rows)(ggx_backend *be, const void *host_ptr, size_t size,
                                   enum ggx_type type, int n_dims, const int64_t *dims, void **out);
    ggx_status (*upload)(ggx_backend *be, void *dst, const void *src, size_t n);
    ggx_status (*download)(ggx_backend *be, void *dst, const void *src, size_t n);
    ggx_status (*copy)(ggx_backend *be, void *dst, const void *src, size_t n); /* within backend */
    ggx_status (*memset0)(ggx_backend *be, void *dst, size_t n);
    bool (*supports_op)(ggx_backend *be, const ggx_tensor *node);
    /* Execute g->nodes in order; inputs already uploaded; intermediates live in g->arena. */
    ggx_status (*graph_compute)(ggx_backend *be, ggx_graph *g);
    ggx_status (*synchronize)(ggx_backend *be);
} ggx_backend_i;

struct ggx_backend {
    ggx_backend_i iface;
    void *ctx;
};

/* "cpu" or "cuda"; GGX_ERR_UNSUPPORTED if not built in, GGX_ERR_BACKEND if no device. */
ggx_status ggx_backend_create(const char *name, const ggx_backend_params *p, ggx_backend **out);
void ggx_backend_free(ggx_backend *be);
bool ggx_backend_available(const char *name);

/* Registration (called by ggx_backend_create; each backend folder provides its init). */
ggx_status ggx_backend_cpu_init(const ggx_backend_params *p, ggx_backend **out);
#ifdef GGX_USE_CUDA
ggx_status ggx_backend_cuda_init(const ggx_backend_params *p, ggx_backend **out);
#endif

#endif
