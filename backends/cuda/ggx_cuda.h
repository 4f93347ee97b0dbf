/*
 * ggx_cuda.h — CUDA-specific extras beyond the backend interface (tests, benchmarks, tools).
 * The backend itself is reached through ggx_backend_create("cuda", ...) (ggx/backend.h).
 *
 *     if (ggx_cuda_device_count() < 1) return TEST_SKIP;
 *     void *w; be->iface.alloc(be, ggx_cuda_weight_nbytes(GGX_TYPE_Q4_0, 4096, 4096), &w);
 *     ggx_cuda_fill_random(be, w, GGX_TYPE_Q4_0, 4096, 4096, 42, 0.02f); // synthetic weights
 */
#ifndef GGX_CUDA_H
#define GGX_CUDA_H

#include "ggx/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when there is no driver or no GPU; never fails). */
int ggx_cuda_device_count(void);
/* Device bytes of a weight [rows, cols] of type t in the backend's (repacked) layout. */
size_t ggx_cuda_weight_nbytes(enum ggx_type t, int64_t rows, int64_t cols);
/* Fill a device weight (device layout) with random values of magnitude ~scale. */
ggx_status ggx_cuda_fill_random(ggx_backend *be, void *dev, enum ggx_type t, int64_t rows,
                                int64_t cols, uint64_t seed, float scale);
/* Move a weight from device memory (alloc) to mapped pinned host memory the kernels read over
 * the bus, as weights_map_rows does for the embedding; *p becomes the new pointer (release it
 * with iface.release). Benchmarks use it to place a synthetic embedding like the loader does. */
ggx_status ggx_cuda_move_to_host(ggx_backend *be, void **p, size_t n);
/* Capture-and-replay of repeated graphs as CUDA graphs: on (default) or off. */
void ggx_cuda_set_graphs(ggx_backend *be, int on);
/* q8_0/q4_0/q4_x decode matvecs: f32 activations (0: the dequantized weights times exact x),
 * int8 activations with dp4a (1; ~4e-3 relative error per product, like the CPU backend), or 2
 * (the default): int8 for 1-2 tokens (q4_x: 1), where it is faster on the H100, f32 above. Global;
 * GGX_CUDA_INT8_X=0|1|2 in the environment sets it at backend creation. */
void ggx_cuda_set_int8_activations(int mode);
int ggx_cuda_int8_activations(void);
/* The persistent matvec at 1-2 tokens whose weights arrive by TMA bulk copies (sm_90): 0 off, 1
 * for q4_0 and q4_x weights (the default; GGX_CUDA_MVT=0|1|2 at backend creation), 2 also q8_0.
 * Returns the resulting mode (0 where unsupported). Global, like the int8 mode. */
int ggx_cuda_set_tma_matvec(int mode);
/* The persistent decode kernel (sm_90, experimental): the matvecs and mLSTM steps of a batch-1
 * decode step (q8_0, q4_0, q4_x weights) as one launch whose weights stream through a TMA ring
 * across the step's stages. 0 off (the default: slower so far, docs/cuda.md), 1 such graphs, 2
 * every graph of one token per product (tests). GGX_CUDA_PK=0|1|2 sets it when the first backend
 * is created. The mode is part of a graph's cache key (a switch makes the next run of a layout
 * an eager one, then a new capture). Returns
 * the resulting mode (0 where unsupported); a negative mode only returns the current one. */
int ggx_cuda_set_persistent(int mode);
/* The mLSTM decode step with one thread-block cluster per head (sm_90; the head norm through
 * the cluster's shared memory): 1 for batches of 1-2 sequences (the default; GGX_CUDA_MLSTM_CL=
 * 0|1|2 at first use sets it), 2 for every decode batch (the head norm fused at any batch size;
 * slower at 32 sequences), 0 never (the per-block kernel with its last-block norm). Returns the
 * resulting mode (0 where the device has no clusters); a negative mode only returns the current
 * one. */
int ggx_cuda_set_mlstm_cluster(int mode);
/* Deferred C stores of the mLSTM decode step: C written every
 * k-th token, the updates in between kept beside the state and replayed (bit-identical; see
 * backends/cuda/cuda_common.h). 1 = off; default 4 (GGX_CUDA_MLSTM_DEFER); k <= 0 queries.
 * Returns the setting. Process-wide. */
int ggx_cuda_set_mlstm_defer(int k);
/* Launches of the persistent kernel so far in this process, eager ones (graph replays are not
 * counted); tests check that it ran. */
long long ggx_cuda_persistent_launches(void);
/* Free and total device memory in bytes; peak bytes allocated by this backend so far. */
ggx_status ggx_cuda_mem_info(ggx_backend *be, size_t *free_b, size_t *total_b, size_t *peak_b);
/* Device name (e.g. "NVIDIA H100 80GB HBM3"). */
const char *ggx_cuda_device_name(ggx_backend *be);

#ifdef __cplusplus
}
#endif

#endif
