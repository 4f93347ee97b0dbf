/*
 * cpu_pool.h — a persistent pthreads pool for the CPU backend.
 *
 *     ggx_cpu_pool *p; ggx_cpu_pool_create(2, &p);
 *     ggx_cpu_pool_run(p, fn, arg);    // fn(arg, ith, nth) on every thread; returns when all did
 *     ggx_cpu_pool_free(p);
 *
 * The caller's thread is thread 0. Workers spin briefly between jobs (ops of one graph follow
 * each other within microseconds), then sleep on a condition variable. Work splitting is the
 * job's business; kernels split so that results do not depend on nth.
 */
#ifndef GGX_CPU_POOL_H
#define GGX_CPU_POOL_H

#include "ggx.h"

typedef struct ggx_cpu_pool ggx_cpu_pool;
typedef void (*ggx_cpu_job)(void *arg, int ith, int nth);

ggx_status ggx_cpu_pool_create(int n_threads, ggx_cpu_pool **out);
void ggx_cpu_pool_free(ggx_cpu_pool *p);
int ggx_cpu_pool_size(const ggx_cpu_pool *p);
void ggx_cpu_pool_run(ggx_cpu_pool *p, ggx_cpu_job fn, void *arg);
/* Physical cores of this machine (>= 1). */
int ggx_cpu_physical_cores(void);

#endif
