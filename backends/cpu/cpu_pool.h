/*
 * cpu_pool.h — a persistent pthreads pool for the CPU backend.
 *
 *     ggx_cpu_pool *p; ggx_cpu_pool_create(2, &p);
 *     ggx_cpu_pool_run(p, n_chunks, fn, arg);  // fn(arg, chunk, ith) once per chunk in [0, n)
 *     ggx_cpu_pool_free(p);
 *
 * Chunks are claimed dynamically from one atomic counter by whichever threads are running, and
 * run returns when every chunk has completed. A thread the OS has descheduled (this machine is
 * shared) therefore does not stall an op: the others take its chunks. The caller's thread is
 * thread 0 and works too. `ith` (< ggx_cpu_pool_size) identifies the executing thread, for
 * per-thread scratch only: chunk boundaries must not depend on the thread count, so results are
 * bit-identical for any -t. Workers spin briefly between jobs (ops of one graph follow each
 * other within microseconds), then sleep on a condition variable.
 */
#ifndef GGX_CPU_POOL_H
#define GGX_CPU_POOL_H

#include "ggx.h"

#include <stdint.h>

typedef struct ggx_cpu_pool ggx_cpu_pool;
typedef void (*ggx_cpu_chunk_fn)(void *arg, int64_t chunk, int ith);

ggx_status ggx_cpu_pool_create(int n_threads, ggx_cpu_pool **out);
void ggx_cpu_pool_free(ggx_cpu_pool *p);
int ggx_cpu_pool_size(const ggx_cpu_pool *p);
void ggx_cpu_pool_run(ggx_cpu_pool *p, int64_t n_chunks, ggx_cpu_chunk_fn fn, void *arg);
/* Physical cores of this machine (>= 1). */
int ggx_cpu_physical_cores(void);

#endif
