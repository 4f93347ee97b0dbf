/*
 * cuda_mlstm_dev.cuh — device pieces of the mLSTM decode step shared by mlstm_step_kernel
 * (cuda_mlstm.cu) and the persistent decode kernel's mLSTM items (cuda_persist.cu). Not a public
 * header; each translation unit gets its own copy (anonymous namespace).
 */
#ifndef GGX_CUDA_MLSTM_DEV_CUH
#define GGX_CUDA_MLSTM_DEV_CUH
#include "cuda_common.h"

namespace {

__device__ __forceinline__ float logsigmoidf_(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/* The fused HEAD_NORM once a head's h is complete, by the NT threads of the calling block (tid
 * 0..NT-1; bsum(v) sums v over them and hands every one the total): h read once from L2, the
 * first HK * NT columns kept in registers for both passes (sums in mlstm_rec_kernel's order).
 * h, hn: the head's dv values; w: the head's norm weights. */
template <int NT, typename BlockSum>
__device__ __forceinline__ void mlstm_head_norm(const float *h, float *hn, const float *w, int dv, float eps, int tid,
                                                BlockSum bsum) {
    constexpr int HK = 4;
    float hv[HK], s1 = 0.0f;
#pragma unroll
    for (int k = 0; k < HK; k++) {
        const int col = tid + k * NT;
        hv[k] = col < dv ? __ldcg(h + col) : 0.0f;
        s1 += hv[k];
    }
    for (int col = tid + HK * NT; col < dv; col += NT) s1 += __ldcg(h + col);
    const float mean = bsum(s1) / (float)dv;
    float s2 = 0.0f;
#pragma unroll
    for (int k = 0; k < HK; k++) {
        const float d = hv[k] - mean;
        if (tid + k * NT < dv) s2 = fmaf(d, d, s2);
    }
    for (int col = tid + HK * NT; col < dv; col += NT) {
        const float d = __ldcg(h + col) - mean;
        s2 = fmaf(d, d, s2);
    }
    const float inv = 1.0f / sqrtf(bsum(s2) / (float)dv + eps);
#pragma unroll
    for (int k = 0; k < HK; k++) {
        const int col = tid + k * NT;
        if (col < dv) hn[col] = ((hv[k] - mean) * inv) * w[col];
    }
    for (int col = tid + HK * NT; col < dv; col += NT) hn[col] = ((__ldcg(h + col) - mean) * inv) * w[col];
}

/* The last block of a (sequence, head) after a decode step (every block counted): n and m
 * written back, the head's counter reset, and with the fused norm (hnf.hn) the head's LayerNorm
 * once its h is complete (fenced first). Every thread tid < NT of the block calls it. */
template <int NT, typename BlockSum>
__device__ __forceinline__ void mlstm_last_block(const ggx_cuda_mlstm_args &a, const ggx_cuda_mlstm_head_norm &hnf,
                                                 int s, int h, int tid, float *np, float *mp, float n_own,
                                                 float m_new, size_t v_base, BlockSum bsum) {
    if (tid < a.dqk) np[tid] = n_own;
    if (tid == 0) {
        *mp = m_new;
        a.counters[s * a.nh + h] = 0;
    }
    if (!hnf.hn) return;
    __threadfence();
    mlstm_head_norm<NT>(a.h + v_base, hnf.hn + v_base, hnf.w + (size_t)h * a.dv, a.dv, hnf.eps, tid, bsum);
}

} // namespace
#endif
