/*
 * cpu_mlstm.h — the mLSTM recurrence of one head of one sequence on the CPU
 * (docs/xlstm-spec.md §4 step form, §5 chunkwise form).
 *
 *     float *scratch = malloc(ggx_cpu_mlstm_scratch_floats(dqk, dv, L) * sizeof(float));
 *     ggx_cpu_mlstm_head(k, &io, S, dqk, dv, L, eps, C, n, &m, scratch);
 *
 * Tensors of the head are strided views into the op's [T, NH*D] buffers:
 *   q, k  [S, dqk] rows ldqk apart;  v [S, dv] rows ldv apart;  ig, fg [S] ldg apart
 *   h     [S, dv] rows ldh apart (output);  state C [dqk, dv], n [dqk], m scalar (in place).
 * ggx_cpu_mlstm_head runs whole chunks of L tokens chunkwise (when S >= L) and the remaining
 * tokens with the fused step; ggx_cpu_mlstm_ref is the plain token-by-token reference.
 */
#ifndef GGX_CPU_MLSTM_H
#define GGX_CPU_MLSTM_H

#include "cpu_kernels.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ggx_cpu_mlstm_io {
    const float *q, *k, *v, *ig, *fg;
    int64_t ldqk, ldv, ldg;
    float *h;
    int64_t ldh;
} ggx_cpu_mlstm_io;

size_t ggx_cpu_mlstm_scratch_floats(int dqk, int dv, int chunk);

/* log(sigmoid(x)), stable for both signs. */
float ggx_cpu_logsigmoid(float x);

/* S tokens with the fused step (kernel table kr). */
void ggx_cpu_mlstm_steps(const ggx_cpu_kernels *kr, const ggx_cpu_mlstm_io *io, int S, int dqk,
                         int dv, float eps, float *C, float *n, float *m, float *scratch);
/* Exactly one chunk of L tokens in the chunkwise-parallel form (OpenBLAS sgemm inside). */
void ggx_cpu_mlstm_chunk(const ggx_cpu_mlstm_io *io, int L, int dqk, int dv, float eps, float *C,
                         float *n, float *m, float *scratch);
/* Chunks while >= L tokens remain (if chunk > 0), then steps. */
void ggx_cpu_mlstm_head(const ggx_cpu_kernels *kr, const ggx_cpu_mlstm_io *io, int S, int dqk,
                        int dv, int chunk, float eps, float *C, float *n, float *m,
                        float *scratch);
/* Plain scalar reference of §4, token by token (tests). */
void ggx_cpu_mlstm_ref(const ggx_cpu_mlstm_io *io, int S, int dqk, int dv, float eps, float *C,
                       float *n, float *m);

#endif
