/*
 * membw.h — this machine's memory read bandwidth: the denominator of the decode floor
 * (a decode step must stream every weight once: floor = weight bytes per token / bandwidth).
 *
 *     double bw;                                   // bytes per second
 *     if (ggx_membw_measure("cpu", 2, &bw) == GGX_OK) printf("%.1f GB/s\n", bw / 1e9);
 *     double bw2 = ggx_bench_membw(2, 0);          // same, 0 on failure
 *
 * Method (cpu): a 1 GiB buffer (far beyond the last-level cache) is written once, then read
 * with wide vector loads by n_threads threads (each its own contiguous slice, summing so the
 * loads cannot be elided); the best of 5 passes is reported. n_threads <= 0: physical cores.
 */
#ifndef GGX_MEMBW_H
#define GGX_MEMBW_H

#include "ggx.h"

#include <stddef.h>

/* backend "cpu" (others: GGX_ERR_UNSUPPORTED). */
ggx_status ggx_membw_measure(const char *backend, int n_threads, double *bytes_per_sec);
/* CPU read bandwidth in bytes/s over a buffer of `bytes` (0: 1 GiB); 0 on failure. */
double ggx_bench_membw(int n_threads, size_t bytes);

#endif
