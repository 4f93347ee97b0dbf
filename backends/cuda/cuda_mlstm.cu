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
constexpr int ML_MAX_DQK = 256;

__device__ __forceinline__ float logsigmoidf_(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

template <int RPT>
__global__ void __launch_bounds__(ML_WARPS * 32) mlstm_rec_kernel(const ggx_cuda_mlstm_args a) {
    __shared__ float q_s[ML_MAX_DQK], k_s[ML_MAX_DQK], n_s[ML_MAX_DQK];
    __shared__ float red_num[ML_WARPS][32], red_qn[ML_WARPS];
    __shared__ int is_last;

    const int h = blockIdx.x, tile = blockIdx.y, s = blockIdx.z;
    const int len = a.seq_len[s], off = a.seq_off[s];
    if (len <= 0) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int j = tile * 32 + lane;
    const bool jv = j < dv;

    float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
    float *np = a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    float *mp = a.state_ptrs[3 * s + 2] + h;

    float c[RPT];
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        c[r] = (i < dqk && jv) ? Cp[(size_t)i * dv + j] : 0.0f;
    }
    for (int i = tid; i < dqk; i += blockDim.x) n_s[i] = np[i];
    float m = *mp;
    const float qscale = 1.0f / sqrtf((float)dqk);

    for (int t = 0; t < len; t++) {
        const size_t row = (size_t)off + t;
        for (int i = tid; i < dqk; i += blockDim.x) {
            q_s[i] = a.q[row * nh * dqk + (size_t)h * dqk + i] * qscale;
            k_s[i] = a.k[row * nh * dqk + (size_t)h * dqk + i];
        }
        const float vj = jv ? a.v[row * nh * dv + (size_t)h * dv + j] : 0.0f;
        const float it = a.ig[row * nh + h], ft = a.fg[row * nh + h];
        const float lf = logsigmoidf_(ft);
        const float m_new = fmaxf(lf + m, it);
        const float fp = expf(lf + m - m_new), ip = expf(it - m_new);
        __syncthreads(); /* q_s, k_s written; previous token's readers of n_s are done */
        for (int i = tid; i < dqk; i += blockDim.x) n_s[i] = fmaf(fp, n_s[i], ip * k_s[i]);
        float num = 0.0f;
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int i = warp + ML_WARPS * r;
            if (i < dqk) {
                c[r] = fmaf(fp, c[r], ip * k_s[i] * vj);
                num = fmaf(q_s[i], c[r], num);
            }
        }
        __syncthreads(); /* n_s updated */
        float qn = 0.0f;
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int i = warp + ML_WARPS * r;
            if (i < dqk) qn = fmaf(q_s[i], n_s[i], qn);
        }
        red_num[warp][lane] = num;
        if (lane == 0) red_qn[warp] = qn;
        __syncthreads();
        if (warp == 0) {
            float tot = 0.0f, qnt = 0.0f;
#pragma unroll
            for (int w = 0; w < ML_WARPS; w++) {
                tot += red_num[w][lane];
                qnt += red_qn[w];
            }
            const float den = fmaxf(fabsf(qnt), expf(-m_new)) + a.eps;
            if (jv) a.h[row * nh * dv + (size_t)h * dv + j] = tot / den;
        }
        m = m_new;
        __syncthreads(); /* red_* and q_s/k_s are reused by the next token */
    }

#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        if (i < dqk && jv) Cp[(size_t)i * dv + j] = c[r];
    }
    /* every block of this (sequence, head) read the old n and m at its start; the last one to
     * get here writes the new ones */
    if (tid == 0) {
        __threadfence();
        const int prev = atomicAdd(&a.counters[s * nh + h], 1);
        is_last = prev == (int)gridDim.y - 1;
    }
    __syncthreads();
    if (is_last) {
        for (int i = tid; i < dqk; i += blockDim.x) np[i] = n_s[i];
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
