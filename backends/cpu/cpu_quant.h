/*
 * cpu_quant.h — CPU kernels for block-quantized weights (q8_0, q4_0, q4_x). The CPU backend's
 * MUL_MAT calls these for quantized weight types; they are single-threaded over a row range
 * [r0, r1), and the backend's thread pool splits rows between threads.
 *
 *     // decode / small batch: activations quantized once per call, weights read once
 *     void *qx = malloc(ggx_cpu_qx_size(t, cols) * n);
 *     ggx_cpu_qx_prepare(t, x, n, cols, qx);                  // x [n, cols] f32
 *     ggx_cpu_qmatmul(t, W, cols, qx, n, y, ldy, r0, r1);     // y[j*ldy + r] for r in [r0,r1)
 *
 *     // prefill: the same call with n = tokens where ggx_cpu_qmatmul_prefill_ok(t), else
 *     // dequantize a tile of rows to f32 and hand it to sgemm
 *     ggx_cpu_dequant_rows(t, W, cols, tile, r0, r1);         // tile [(r1-r0), cols] f32
 *
 * Runtime dispatch (AVX-512 VNNI, AVX2, scalar) happens inside; ggx_cpu_quant_force_scalar(1)
 * selects the scalar reference path (for tests).
 */
#ifndef GGX_CPU_QUANT_H
#define GGX_CPU_QUANT_H

#include "types.h"

#include <stddef.h>
#include <stdint.h>

int ggx_cpu_quant_supported(enum ggx_type t);
/* Bytes of one prepared (quantized) activation row of `cols` elements for weights of type t. */
size_t ggx_cpu_qx_size(enum ggx_type t, int64_t cols);
/* Quantize n activation rows x [n, cols] into qx (n * ggx_cpu_qx_size bytes). */
void ggx_cpu_qx_prepare(enum ggx_type t, const float *x, int64_t n, int64_t cols, void *qx);
/* y[j * ldy + r] = dot(W[r, :], x[j, :]) for r in [r0, r1), j in [0, n). */
void ggx_cpu_qmatmul(enum ggx_type t, const void *W, int64_t cols, const void *qx, int64_t n,
                     float *y, int64_t ldy, int64_t r0, int64_t r1);
/* dst[(r - r0) * cols + c] = W[r, c] as f32, for r in [r0, r1). */
void ggx_cpu_dequant_rows(enum ggx_type t, const void *W, int64_t cols, float *dst, int64_t r0,
                          int64_t r1);
void ggx_cpu_quant_force_scalar(int on);
/* Whether ggx_cpu_qmatmul is the faster prefill path (many tokens) for weights of type t on this
 * CPU: with AVX-512 VNNI it runs at 1.4-1.6x dequantize + sgemm; the AVX2 kernels reach only ~60%
 * of sgemm, so there prefill keeps dequantizing (docs/benchmarks.md). */
int ggx_cpu_qmatmul_prefill_ok(enum ggx_type t);

#endif
