/*
 * cuda_mlstm.cu — the mLSTM recurrence (xlstm-spec.md §4) on the GPU.
 *
 * One block per (head, 32-column tile of C, sequence). The block keeps its tile of the state
 * C [DQK, 32] in registers for the whole run of tokens (8 warps; warp w owns rows w, w+8, ...;
 * lane = column), so decode reads and writes C exactly once per step: gates, state update and
 * readout happen in one pass. n [DQK] and m are tiny; every block of a head updates its own copy
 * in shared memory (same arithmetic, same values) and the last block of the head to finish
 * writes them back (an atomic counter), so no block can read a half-updated n or m.
 *
 * Per token and head: C' = f' C + i' k v^T, n' = f' n + i' k, h = (q/sqrt(DQK))^T C' /
 * (max(|q/sqrt(DQK) . n'|, exp(-m')) + eps), with m' = max(logsigmoid(f~) + m, i~),
 * f' = exp(logsigmoid(f~) + m - m'), i' = exp(i~ - m'). All f32.
 */
#include "cuda_common.h"

namespace {

constexpr int ML_WARPS = 8;
constexpr int ML_MAX_DQK = ML_WARPS * 32; /* one n element per thread */

__device__ __forceinline__ float logsigmoidf_(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

template <int RPT>
__global__ void __launch_bounds__(ML_WARPS * 32) mlstm_rec_kernel(const ggx_cuda_mlstm_args a) {
    /* double-buffered by token parity: two barriers per token */
    __shared__ float q_s[2][ML_MAX_DQK], k_s[2][ML_MAX_DQK];
    __shared__ float red_num[2][ML_WARPS][32], red_qn[2][ML_WARPS];
    __shared__ int is_last;

    const int h = blockIdx.x, tile = blockIdx.y, s = blockIdx.z;
    const int len = a.seq_len[s], off = a.seq_off[s];
    if (len <= 0) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int j = tile * 32 + lane;
    const bool jv = j < dv, iv = tid < dqk; /* thread tid owns n[tid] (dqk <= blockDim) */

    float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
    float *np = a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    float *mp = a.state_ptrs[3 * s + 2] + h;

    float c[RPT];
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        c[r] = (i < dqk && jv) ? Cp[(size_t)i * dv + j] : 0.0f;
    }
    float n_own = iv ? np[tid] : 0.0f;
    float m = *mp;
    const float qscale = 1.0f / sqrtf((float)dqk);

    /* the next token's inputs are loaded one token ahead (hides the global-memory latency) */
    const size_t qk_stride = (size_t)nh * dqk, v_stride = (size_t)nh * dv;
    const float *qp = a.q + (size_t)off * qk_stride + (size_t)h * dqk;
    const float *kp = a.k + (size_t)off * qk_stride + (size_t)h * dqk;
    const float *vp = a.v + (size_t)off * v_stride + (size_t)h * dv + j;
    const float *igp = a.ig + (size_t)off * nh + h, *fgp = a.fg + (size_t)off * nh + h;
    float q_nx = iv ? qp[tid] : 0.0f, k_nx = iv ? kp[tid] : 0.0f, v_nx = jv ? vp[0] : 0.0f;
    float i_nx = igp[0], f_nx = fgp[0];

    for (int t = 0; t < len; t++) {
        const int b = t & 1;
        const float q_own = q_nx * qscale, k_own = k_nx, vj = v_nx, it = i_nx, ft = f_nx;
        if (t + 1 < len) {
            qp += qk_stride, kp += qk_stride, vp += v_stride, igp += nh, fgp += nh;
            q_nx = iv ? qp[tid] : 0.0f;
            k_nx = iv ? kp[tid] : 0.0f;
            v_nx = jv ? vp[0] : 0.0f;
            i_nx = igp[0];
            f_nx = fgp[0];
        }
        const float lf = logsigmoidf_(ft);
        const float m_new = fmaxf(lf + m, it);
        const float fp = expf(lf + m - m_new), ip = expf(it - m_new);
        if (iv) {
            q_s[b][tid] = q_own;
            k_s[b][tid] = k_own;
        }
        n_own = fmaf(fp, n_own, ip * k_own);
        float qn = q_own * n_own;
        __syncthreads(); /* q_s[b], k_s[b] complete */
        float num = 0.0f;
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int i = warp + ML_WARPS * r;
            if (i < dqk) {
                c[r] = fmaf(fp, c[r], ip * k_s[b][i] * vj);
                num = fmaf(q_s[b][i], c[r], num);
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) qn += __shfl_xor_sync(0xffffffffu, qn, o);
        red_num[b][warp][lane] = num;
        if (lane == 0) red_qn[b][warp] = qn;
        __syncthreads(); /* partial sums complete */
        if (warp == 0) {
            float tot = 0.0f, qnt = 0.0f;
#pragma unroll
            for (int w = 0; w < ML_WARPS; w++) {
                tot += red_num[b][w][lane];
                qnt += red_qn[b][w];
            }
            const float den = fmaxf(fabsf(qnt), expf(-m_new)) + a.eps;
            if (jv) a.h[((size_t)off + t) * v_stride + (size_t)h * dv + j] = tot / den;
        }
        m = m_new;
    }

#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        if (i < dqk && jv) Cp[(size_t)i * dv + j] = c[r];
    }
    /* every block of this (sequence, head) read the old n and m at its start; the last one to
     * get here writes the new ones */
    __syncthreads();
    if (tid == 0) {
        __threadfence();
        const int prev = atomicAdd(&a.counters[s * nh + h], 1);
        is_last = prev == (int)gridDim.y - 1;
    }
    __syncthreads();
    if (is_last) {
        if (iv) np[tid] = n_own;
        if (tid == 0) {
            *mp = m;
            a.counters[s * nh + h] = 0;
        }
    }
}

} // namespace

bool ggx_cuda_mlstm_supported(int dqk, int dv) {
    return dqk >= 1 && dqk <= ML_MAX_DQK && dv >= 1;
}

cudaError_t ggx_cuda_mlstm_recurrent(cudaStream_t st, const ggx_cuda_mlstm_args *a) {
    if (!ggx_cuda_mlstm_supported(a->dqk, a->dv) || a->n_seqs < 1) return cudaErrorInvalidValue;
    dim3 grid((unsigned)a->nh, (unsigned)((a->dv + 31) / 32), (unsigned)a->n_seqs);
    const int rpt = (a->dqk + ML_WARPS - 1) / ML_WARPS;
    if (rpt <= 4) mlstm_rec_kernel<4><<<grid, ML_WARPS * 32, 0, st>>>(*a);
    else if (rpt <= 8) mlstm_rec_kernel<8><<<grid, ML_WARPS * 32, 0, st>>>(*a);
    else if (rpt <= 16) mlstm_rec_kernel<16><<<grid, ML_WARPS * 32, 0, st>>>(*a);
    else mlstm_rec_kernel<32><<<grid, ML_WARPS * 32, 0, st>>>(*a);
    return cudaGetLastError();
}
