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
 * Decode (one token per sequence) runs mlstm_step_kernel instead (same scheme, registers capped
 * so that four blocks share an SM; see "decode step" below).
 *
 * Per token and head: C' = f' C + i' k v^T, n' = f' n + i' k, h = (q/sqrt(DQK))^T C' /
 * (max(|q/sqrt(DQK) . n'|, exp(-m')) + eps), with m' = max(logsigmoid(f~) + m, i~),
 * f' = exp(logsigmoid(f~) + m - m'), i' = exp(i~ - m'). All f32.
 */
#include "cuda_common.h"
#include "cuda_mlstm_dev.cuh"

#include <cooperative_groups.h>

namespace {

constexpr int ML_WARPS = 8;
constexpr int ML_MAX_DQK = ML_WARPS * 32; /* one n element per thread */



template <int RPT>
__global__ void __launch_bounds__(ML_WARPS * 32) mlstm_rec_kernel(const ggx_cuda_mlstm_args a,
                                                                     const ggx_cuda_mlstm_head_norm hnf) {
    /* double-buffered by token parity: two barriers per token */
    __shared__ float q_s[2][ML_MAX_DQK], k_s[2][ML_MAX_DQK];
    __shared__ float red_num[2][ML_WARPS][32], red_qn[2][ML_WARPS];
    __shared__ int is_last;

    const int h = blockIdx.x, tile = blockIdx.y, s = blockIdx.z;
    const int full = a.seq_len[s], skip = a.chunk > 0 ? full / a.chunk * a.chunk : 0;
    const int len = full - skip, off = a.seq_off[s] + skip; /* the chunkwise kernels did skip */
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
    /* PDL: the batch table, C, n and m were read above while the previous kernel still ran
     * (nothing in this step writes them before this kernel); q, k, v and the gates are its output */
    GGX_PDL_ENTER();
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
    if (hnf.hn) __threadfence(); /* this block's h, visible to the last block (fused head norm) */
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
        if (hnf.hn) { /* the head's h is complete: its LayerNorm (the HEAD_NORM node) */
            __threadfence();
            for (int t = 0; t < len; t++) {
                const size_t base = ((size_t)off + t) * v_stride + (size_t)h * dv;
                float s1 = 0.0f;
                for (int c = tid; c < dv; c += ML_WARPS * 32) s1 += __ldcg(a.h + base + c);
                const float mean = ggx_cuda_block_sum(s1, red_qn[0]) / (float)dv;
                float s2 = 0.0f;
                for (int c = tid; c < dv; c += ML_WARPS * 32) {
                    const float d = __ldcg(a.h + base + c) - mean;
                    s2 = fmaf(d, d, s2);
                }
                const float inv = 1.0f / sqrtf(ggx_cuda_block_sum(s2, red_qn[0]) / (float)dv + hnf.eps);
                for (int c = tid; c < dv; c += ML_WARPS * 32)
                    hnf.hn[base + c] = ((__ldcg(a.h + base + c) - mean) * inv) * hnf.w[(size_t)h * dv + c];
            }
        }
    }
}


/* ===================================================================== decode step (§4) =====
 * One token per sequence (decode), the default there; GGX_CUDA_MLSTM_REC=0 selects
 * mlstm_rec_kernel above, which still runs every call with more than one token per sequence
 * (prefill tails). Same math and state layout, sized for occupancy: mlstm_rec_kernel<32> needs
 * 182 registers (one 256-thread block per SM), so at batch 32 its 4096 blocks ran one at a time
 * per SM, each loading, updating and storing its 32 KB tile in turn with nothing else in flight.
 * mlstm_step_kernel caps its registers (__launch_bounds__) so that MINB blocks share an SM.
 * A block owns 32 * VEC columns of one head's C (float2/float4 accesses where the state is
 * aligned, VEC scalar ones where not); warp w owns rows w, w + WARPS, ... Blocks are numbered
 * tile-fastest (grid x = column tile), so the blocks resident together read whole rows of C.
 * The count that elects the last block of a (sequence, head) (it writes n and m) is taken as
 * soon as this block's n/m reads are consumed, its round trip hidden behind the update; with the
 * fused head norm it waits until the block's h is written and fenced. The fused head norm reads
 * the head's h from L2 once (kept in registers for both passes). With WARPS = 8 every sum runs in
 * mlstm_rec_kernel's order (h, C, n and m should be bit-identical to it; the tests compare both
 * with f64 references, not with each other). */

/* VEC consecutive floats of C: one vector access when aligned (vok), else VEC scalar ones */
template <int VEC>
__device__ __forceinline__ void c_load(const float *p, bool vok, float (&x)[VEC]) {
    if constexpr (VEC == 4) {
        if (vok) {
            const float4 t = *reinterpret_cast<const float4 *>(p);
            x[0] = t.x, x[1] = t.y, x[2] = t.z, x[3] = t.w;
            return;
        }
    } else if constexpr (VEC == 2) {
        if (vok) {
            const float2 t = *reinterpret_cast<const float2 *>(p);
            x[0] = t.x, x[1] = t.y;
            return;
        }
    }
#pragma unroll
    for (int e = 0; e < VEC; e++) x[e] = p[e];
}
template <int VEC>
__device__ __forceinline__ void c_store(float *p, bool vok, const float (&x)[VEC]) {
    if constexpr (VEC == 4) {
        if (vok) {
            *reinterpret_cast<float4 *>(p) = make_float4(x[0], x[1], x[2], x[3]);
            return;
        }
    } else if constexpr (VEC == 2) {
        if (vok) {
            *reinterpret_cast<float2 *>(p) = make_float2(x[0], x[1]);
            return;
        }
    }
#pragma unroll
    for (int e = 0; e < VEC; e++) p[e] = x[e];
}

/* The decode step's phases around the C tile (kept out of the kernel so that variants of the
 * tile loop can share them): the block's coordinates and state pointers, the token's gates and
 * inputs, the readout's cross-warp sum, the handoff to the last block. */
template <int VEC, int WARPS>
struct step_ctx {
    static constexpr int NT = WARPS * 32, TW = 32 * VEC;
    struct smem {
        float q[ML_MAX_DQK], k[ML_MAX_DQK];
        float num[WARPS][TW]; /* [w][e * 32 + lane]: conflict-free */
        float qn[WARPS];
        int is_last;
    };
    int h, s, tid, warp, lane, dqk, dv, nh, j0, nr;
    bool jv, iv, vok;
    float *Cb; /* row `warp`, column j0 of this head's C; row r at + r * rstep */
    int rstep;
    float n_own, m;

    /* false: the sequence has no token (the whole block returns) */
    __device__ __forceinline__ bool init(const ggx_cuda_mlstm_args &a) {
        const int tile = blockIdx.x;
        h = blockIdx.y, s = blockIdx.z;
        if (a.seq_len[s] <= 0) return false; /* (the launcher checked: none has more than one) */
        tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
        nh = a.nh, dqk = a.dqk, dv = a.dv;
        j0 = tile * TW + lane * VEC; /* this lane's first column (dv % VEC == 0) */
        jv = j0 < dv, iv = tid < dqk;   /* thread tid owns n[tid] (dqk <= NT) */
        nr = jv ? (dqk - warp + WARPS - 1) / WARPS : 0; /* rows of C this lane holds */
        float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
        Cb = Cp + (size_t)warp * dv + j0;
        rstep = WARPS * dv; /* (C of one head: < 2^31 floats) */
        /* every row start is as aligned as Cp (dv % VEC == 0) */
        vok = VEC == 1 || ((uintptr_t)Cp & (VEC * sizeof(float) - 1)) == 0;
        return true;
    }
    /* n and m: found again where written rather than kept (fewer live registers) */
    __device__ __forceinline__ float *np(const ggx_cuda_mlstm_args &a) const {
        return a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    }
    __device__ __forceinline__ float *mp(const ggx_cuda_mlstm_args &a) const { return a.state_ptrs[3 * s + 2] + h; }
    __device__ __forceinline__ void load_nm(const ggx_cuda_mlstm_args &a) {
        n_own = iv ? np(a)[tid] : 0.0f;
        m = *mp(a);
    }
    /* after the PDL wait: the token's q, k (to shared memory), v, gates; n updated. Ends with a
     * barrier (q, k complete; every thread's n/m reads consumed) and, without the fused norm,
     * the count (returned in thread 0). */
    __device__ __forceinline__ int token(const ggx_cuda_mlstm_args &a, const ggx_cuda_mlstm_head_norm &hnf,
                                         smem &sm, float (&vj)[VEC], float &fp, float &ip, float &m_new,
                                         float &qn, size_t &v_base, bool count = true) {
        const int off = a.seq_off[s];
        v_base = (size_t)off * nh * dv + (size_t)h * dv; /* this head's h and v */
        float q_own = 0.0f, k_own = 0.0f;
        if (iv) {
            const size_t qk = ((size_t)off * nh + h) * dqk + tid;
            q_own = a.q[qk] * (1.0f / sqrtf((float)dqk));
            k_own = a.k[qk];
        }
#pragma unroll
        for (int e = 0; e < VEC; e++) vj[e] = jv ? a.v[v_base + j0 + e] : 0.0f;
        const float it = a.ig[(size_t)off * nh + h], ft = a.fg[(size_t)off * nh + h];
        const float lf = logsigmoidf_(ft);
        m_new = fmaxf(lf + m, it);
        fp = expf(lf + m - m_new), ip = expf(it - m_new);
        if (iv) {
            sm.q[tid] = q_own;
            sm.k[tid] = k_own;
        }
        n_own = fmaf(fp, n_own, ip * k_own);
        qn = q_own * n_own;
        __syncthreads();
        /* the n/m reads of this block are done: count it (its h matters only to the fused norm) */
        return count && !hnf.hn && tid == 0 ? atomicAdd(&a.counters[s * nh + h], 1) : 0;
    }
    /* the warps' partial readouts -> h (warp 0); thread 0 sets sm.is_last (read after a barrier) */
    __device__ __forceinline__ void finish(const ggx_cuda_mlstm_args &a, const ggx_cuda_mlstm_head_norm &hnf,
                                           smem &sm, const float (&num)[VEC], float qn, float m_new,
                                           size_t v_base, int prev) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) qn += __shfl_xor_sync(0xffffffffu, qn, o);
#pragma unroll
        for (int e = 0; e < VEC; e++) sm.num[warp][e * 32 + lane] = num[e];
        if (lane == 0) sm.qn[warp] = qn;
        __syncthreads(); /* partial sums complete */
        if (warp != 0) return;
        float tot[VEC], qnt = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; e++) tot[e] = 0.0f;
#pragma unroll 4 /* (mlstm_step_kernel's tile stays live until stored after this) */
        for (int w = 0; w < WARPS; w++) {
#pragma unroll
            for (int e = 0; e < VEC; e++) tot[e] += sm.num[w][e * 32 + lane];
            qnt += sm.qn[w];
        }
        const float den = fmaxf(fabsf(qnt), expf(-m_new)) + a.eps;
        if (jv) {
#pragma unroll
            for (int e = 0; e < VEC; e++) a.h[v_base + j0 + e] = tot[e] / den;
        }
        if (hnf.hn) { /* this block's h visible to the last block before it is counted */
            __threadfence();
            if (lane == 0) prev = atomicAdd(&a.counters[s * nh + h], 1);
        }
        if (lane == 0) sm.is_last = prev == (int)gridDim.x - 1;
    }
    /* after the barrier that follows finish(): the last block writes n, m (and the head norm) */
    __device__ __forceinline__ void last(const ggx_cuda_mlstm_args &a, const ggx_cuda_mlstm_head_norm &hnf,
                                         smem &sm, float m_new, size_t v_base) {
        if (!sm.is_last) return;
        mlstm_last_block<NT>(a, hnf, s, h, tid, np(a), mp(a), n_own, m_new, v_base,
                             [&](float v) { return ggx_cuda_block_sum(v, sm.qn); });
    }
};

/* C[:, j] of rows warp + WARPS r after the n pending updates of head h (P: the sequence's
 * pending buffer): C = f'_q C + (i'_q k_q) v_q, oldest first, as each step would have applied
 * them (mlstm_step_cl_kernel before its PDL wait, mlstm_flush_kernel). All their loads are
 * issued at once (staged in shared memory, ps), so the replay costs one memory
 * latency whatever n; n is the same for the whole block (every thread must call it). */
constexpr int PEND_Q = GGX_CUDA_MLSTM_DEFER_MAX - 1; /* at most this many pending */
struct PendSmem {
    float k[PEND_Q][ML_MAX_DQK];
    float v[PEND_Q][32]; /* the block's 32 columns */
    float f[PEND_Q];
};
template <int WARPS, int RPT>
__device__ __forceinline__ void pend_replay(float (&c)[RPT][1], const float *P, const ggx_cuda_pend_layout &L, int n,
                                            int h, int nh, int dqk, int dv, int warp, int j, bool jv, PendSmem &ps) {
    const int tid = threadIdx.x, lane = tid & 31;
    /* every slot loaded, used or not, so that the loads wait only for P (like C's for the state
     * table), not also for the count (a head's slots are L2 hits for all but one of its blocks) */
#pragma unroll
    for (int q = 0; q < PEND_Q; q++) {
        const size_t qh = (size_t)q * nh + h;
        if (tid == 0) ps.f[q] = P[L.fp + qh];
        if (warp == 0) ps.v[q][lane] = jv ? P[L.v + qh * dv + j] : 0.0f;
        for (int i = tid; i < dqk; i += WARPS * 32) ps.k[q][i] = P[L.k + qh * dqk + i];
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < PEND_Q; q++)
        if (q < n) {
            const float fq = ps.f[q], vq = ps.v[q][lane];
#pragma unroll
            for (int r = 0; r < RPT; r++) {
                const int i = warp + WARPS * r;
                if (i < dqk) c[r][0] = fmaf(fq, c[r][0], ps.k[q][i] * vq);
            }
        }
}

/* Before the PDL wait: the pending updates of x's head replayed onto its C tile; returns how
 * many (0 without pending buffers) */
template <int WARPS, int RPT, class X>
__device__ __forceinline__ int pend_begin(float (&c)[RPT][1], float *const *pend, const X &x, PendSmem &ps) {
    if (!pend) return 0;
    const float *P = pend[x.s];
    const int n = reinterpret_cast<const int *>(P)[x.h];
    pend_replay<WARPS, RPT>(c, P, ggx_cuda_pend_layout_of(x.nh, x.dqk, x.dv), n, x.h, x.nh, x.dqk, x.dv, x.warp, x.j0,
                            x.jv, ps);
    return n;
}
/* This token's update (f', i' k from shared memory, this lane's v) as pending slot n of P; the
 * head's `writer` block writes the per-head parts, every block its columns of v */
template <class X>
__device__ __forceinline__ void pend_append(float *P, int n, const X &x, bool writer, float fp, float ip,
                                            const float *k_sm, float v) {
    const ggx_cuda_pend_layout L = ggx_cuda_pend_layout_of(x.nh, x.dqk, x.dv);
    const size_t q = (size_t)n * x.nh + x.h;
    if (writer && x.iv) P[L.k + q * x.dqk + x.tid] = ip * k_sm[x.tid]; /* (the product the step uses) */
    if (writer && x.tid == 0) P[L.fp + q] = fp;
    if (x.warp == 0 && x.jv) P[L.v + q * x.dv + x.j0] = v;
}

/* The whole tile in registers (RPT rows x VEC columns per lane): loaded before the PDL wait,
 * updated, read out, stored. With pend (VEC 1 only), C's stores deferred as in
 * mlstm_step_cl_kernel: the head's last block rewrites the pending count with n and m (every
 * block has read it before it is counted). */
template <int VEC, int WARPS, int RPT, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) mlstm_step_kernel(const ggx_cuda_mlstm_args a,
                                                                       const ggx_cuda_mlstm_head_norm hnf, int diag,
                                                                       float *const *pend, int defer) {
    using ctx_t = step_ctx<VEC, WARPS>;
    __shared__ typename ctx_t::smem sm;
    ctx_t x;
    if (!x.init(a)) return;
    float c[RPT][VEC];
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        if (r < x.nr && !(diag & 1)) c_load<VEC>(x.Cb + r * x.rstep, x.vok, c[r]);
        else
#pragma unroll
            for (int e = 0; e < VEC; e++) c[r][e] = 0.0f;
    }
    int npend = 0;
    if constexpr (VEC == 1) {
        __shared__ PendSmem ps;
        npend = pend_begin<WARPS, RPT>(c, pend, x, ps);
    }
    x.load_nm(a);
    /* PDL: the batch table, C, n and m were read above while the previous kernel still ran
     * (nothing in this step writes them before this kernel); q, k, v and the gates are its output */
    GGX_PDL_ENTER();
    if (diag & 4) return;
    float vj[VEC], fp, ip, m_new, qn;
    size_t v_base;
    const int prev = x.token(a, hnf, sm, vj, fp, ip, m_new, qn, v_base);
    float num[VEC];
#pragma unroll
    for (int e = 0; e < VEC; e++) num[e] = 0.0f;
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = x.warp + WARPS * r;
        if (i < x.dqk) {
            const float kk = ip * sm.k[i], qq = sm.q[i];
#pragma unroll
            for (int e = 0; e < VEC; e++) {
                c[r][e] = fmaf(fp, c[r][e], kk * vj[e]);
                num[e] = fmaf(qq, c[r][e], num[e]);
            }
        }
    }
    x.finish(a, hnf, sm, num, qn, m_new, v_base, prev);
    float *P = nullptr;
    if constexpr (VEC == 1) P = pend ? pend[x.s] : nullptr; /* (loaded again, as in the cluster kernel) */
    const bool store = !P || npend + 1 >= defer;
    if (store) {
        /* the store addresses from a base the compiler cannot equate with the loads', so that it
         * recomputes them here instead of keeping RPT 64-bit addresses live across the update */
        float *Cs;
        asm volatile("mov.b64 %0, %1;" : "=l"(Cs) : "l"(x.Cb));
#pragma unroll
        for (int r = 0; r < RPT; r++)
            if (r < x.nr && !(diag & 2)) c_store<VEC>(Cs + r * x.rstep, x.vok, c[r]);
    } else if constexpr (VEC == 1) {
        pend_append(P, npend, x, blockIdx.x == 0, fp, ip, sm.k, vj[0]);
    }
    __syncthreads(); /* is_last */
    if (P && sm.is_last && x.tid == 0) reinterpret_cast<int *>(P)[x.h] = store ? 0 : npend + 1;
    x.last(a, hnf, sm, m_new, v_base);
}

/* ------------------------------------------------------- decode step, one cluster per head ---
 * mlstm_step_kernel<1, 8, RPT> again (same tile per block, same arithmetic and order of sums for
 * C, n, m and h), but the blocks of one (sequence, head) form a thread-block cluster (sm_90:
 * grid x = the head's column tiles = the cluster, at most 16), so what needed the whole head
 * goes through the cluster's shared memory instead of global memory:
 *   - n and m: every block updates its own copy; block 0 of the cluster writes them back after
 *     a cluster barrier that every block passes only once its n/m reads are consumed (no atomic
 *     counter, no "last block");
 *   - the fused head norm: each block publishes the sum of its h columns and their squared
 *     deviations from its own mean, the blocks read each other's (distributed shared memory)
 *     and combine them (Chan et al.) for the head's mean and variance, and each normalizes its
 *     own columns. h itself is never written (the fusion requires that only the HEAD_NORM
 *     reads it). The mLSTM kernel's old tail -- h written, fenced, counted, then the last block
 *     reading the head's h back from L2 and normalizing it alone -- was ~2.5 us of every
 *     layer's batch-1 step; the serial part is now one cluster barrier (two, mean then
 *     deviations, until session 8: 7B bf16 batch 1 5.392 / 5.392 vs 5.446 / 5.418 ms/step).
 * The head's sums run in a different order than mlstm_head_norm's (per block, then over the
 * blocks), a rounding-level difference. C is stored right after its update, so the stores drain
 * while the readout and the norm run (or, with deferred stores, every K-th token: see
 * cuda_common.h). Register bound for 2 blocks per SM (it runs 1-2 sequences: 128-256 blocks),
 * so that the C tile, the context and the pending replay fit without spills. */
template <int WARPS, int RPT>
__global__ void __launch_bounds__(WARPS * 32, 2) mlstm_step_cl_kernel(const ggx_cuda_mlstm_args a,
                                                                      const ggx_cuda_mlstm_head_norm hnf,
                                                                      float *const *pend, int defer) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    using ctx_t = step_ctx<1, WARPS>;
    __shared__ typename ctx_t::smem sm;
    __shared__ float2 stat; /* this block's {sum of h, sum of squared deviations from its mean} */
    ctx_t x;
    if (!x.init(a)) return; /* (the whole cluster: one sequence) */
    float c[RPT][1];
#pragma unroll
    for (int r = 0; r < RPT; r++) c[r][0] = r < x.nr ? x.Cb[r * x.rstep] : 0.0f;
    /* deferred stores: the tokens since C was last stored, replayed while the previous kernel
     * still runs (their updates were written by earlier launches) */
    __shared__ PendSmem ps;
    const int npend = pend_begin<WARPS, RPT>(c, pend, x, ps);
    x.load_nm(a);
    GGX_PDL_ENTER(); /* as in mlstm_step_kernel */
    float vj[1], fp, ip, m_new, qn;
    size_t v_base;
    x.token(a, hnf, sm, vj, fp, ip, m_new, qn, v_base, false);
    float num = 0.0f;
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = x.warp + WARPS * r;
        if (i < x.dqk) {
            const float kk = ip * sm.k[i], qq = sm.q[i];
            c[r][0] = fmaf(fp, c[r][0], kk * vj[0]);
            num = fmaf(qq, c[r][0], num);
        }
    }
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const bool first = cl.block_rank() == 0;
    /* C stored every `defer`-th token; else this token's update joins the pending ones (the
     * buffer's address loaded again here rather than kept in a register across the update) */
    float *P = pend ? pend[x.s] : nullptr;
    const bool store = !P || npend + 1 >= defer;
    if (store) {
        float *Cs; /* (see mlstm_step_kernel) */
        asm volatile("mov.b64 %0, %1;" : "=l"(Cs) : "l"(x.Cb));
#pragma unroll
        for (int r = 0; r < RPT; r++)
            if (r < x.nr) Cs[r * x.rstep] = c[r][0];
    } else {
        pend_append(P, npend, x, first, fp, ip, sm.k, vj[0]);
    }
    /* the warps' partial readouts -> h in warp 0 (mlstm_step_kernel's finish(), same order) */
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) qn += __shfl_xor_sync(0xffffffffu, qn, o);
    sm.num[x.warp][x.lane] = num;
    if (x.lane == 0) sm.qn[x.warp] = qn;
    __syncthreads();
    float hv = 0.0f;
    if (x.warp == 0) {
        float tot = 0.0f, qnt = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++) {
            tot += sm.num[w][x.lane];
            qnt += sm.qn[w];
        }
        const float den = fmaxf(fabsf(qnt), expf(-m_new)) + a.eps;
        hv = x.jv ? tot / den : 0.0f;
        if (!hnf.hn && x.jv) a.h[v_base + x.j0] = hv;
    }
    const int ncl = (int)cl.num_blocks();
    /* the head norm's statistics in one exchange: each block's sum and its sum of squared
     * deviations from its own mean (two passes over its 32 columns), combined over the blocks
     * as M2 = sum_b M2_b + sum_b n_b (mean_b - mean)^2 (Chan et al.), as stable as two passes
     * over the head and one cluster barrier fewer */
    const int nb = min(32, x.dv - (int)cl.block_rank() * 32); /* this block's columns */
    if (hnf.hn && x.warp == 0) {
        float t = hv;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        const float db = x.jv ? hv - t / (float)nb : 0.0f;
        float q = db * db;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
        if (x.lane == 0) stat = make_float2(t, q);
    }
    cl.sync(); /* every block: n/m (and pending count) reads consumed, statistics published */
    if (first) {
        if (x.iv) x.np(a)[x.tid] = x.n_own;
        if (x.tid == 0) *x.mp(a) = m_new;
        if (P && x.tid == 0) reinterpret_cast<int *>(P)[x.h] = store ? 0 : npend + 1;
    }
    if (!hnf.hn) return;
    if (x.warp == 0) {
        const float2 st = x.lane < ncl ? *cl.map_shared_rank(&stat, x.lane) : make_float2(0.0f, 0.0f);
        float t = st.x;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        const float mean = t / (float)x.dv;
        const int nl = x.lane < ncl ? min(32, x.dv - x.lane * 32) : 0;
        const float dm = nl ? st.x / (float)nl - mean : 0.0f;
        float q = st.y + (float)nl * dm * dm;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
        const float inv = 1.0f / sqrtf(q / (float)x.dv + hnf.eps);
        if (x.jv) hnf.hn[v_base + x.j0] = ((hv - mean) * inv) * hnf.w[(size_t)x.h * x.dv + x.j0];
    }
    cl.sync(); /* the other blocks have read this one's statistics */
#else
    (void)a, (void)hnf, (void)pend, (void)defer;
#endif
}

/* A (state, layer)'s pending updates applied to its C (ggx_cuda_mlstm_flush): block per (32
 * columns, head), as mlstm_step_cl_kernel holds them */
template <int WARPS, int RPT>
__global__ void __launch_bounds__(WARPS * 32) mlstm_flush_kernel(float *C, const float *P, int nh, int dqk, int dv) {
    GGX_PDL_ENTER();
    const int h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ PendSmem ps;
    const int n = reinterpret_cast<const int *>(P)[h];
    const int j = blockIdx.x * 32 + lane;
    if (!n) return;
    const bool jv = j < dv;
    float *Cb = C + (size_t)h * dqk * dv + (size_t)warp * dv + j;
    const int nr = jv ? (dqk - warp + WARPS - 1) / WARPS : 0;
    float c[RPT][1];
#pragma unroll
    for (int r = 0; r < RPT; r++) c[r][0] = r < nr ? Cb[(size_t)r * WARPS * dv] : 0.0f;
    pend_replay<WARPS, RPT>(c, P, ggx_cuda_pend_layout_of(nh, dqk, dv), n, h, nh, dqk, dv, warp, j, jv, ps);
#pragma unroll
    for (int r = 0; r < RPT; r++)
        if (r < nr) Cb[(size_t)r * WARPS * dv] = c[r][0];
}

/* ======================================================================= chunkwise (§5) =====
 * Scratch layout (floats): B [T, NH] prefix sums of logsigmoid(f~) within each chunk, RB [T, NH]
 * the reverse sums (b_L - b_j), then per (sequence, chunk, head) the state at the chunk start:
 * C [DQK, DV], n [DQK], m [1]. All f32. */

__host__ __device__ __forceinline__ size_t st_stride(int dqk, int dv) { return (size_t)dqk * dv + dqk + 1; }

/* one thread per (sequence, head, chunk) */
__global__ void mlstm_gates_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks) {
    GGX_PDL_ENTER();
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    const int nh = a.nh, L = a.chunk;
    const int h = idx % nh, c = (idx / nh) % max_chunks, s = idx / (nh * max_chunks);
    if (s >= a.n_seqs || c >= a.seq_len[s] / L) return;
    float *B = a.scratch, *RB = a.scratch + (size_t)T * nh;
    const size_t r0 = (size_t)a.seq_off[s] + (size_t)c * L;
    float cum = 0.0f;
    for (int j = 0; j < L; j++) {
        cum += logsigmoidf_(a.fg[(r0 + j) * nh + h]);
        B[(r0 + j) * nh + h] = cum;
    }
    float rev = 0.0f; /* b_L - b_j as a reverse sum (more accurate than the difference) */
    for (int j = L - 1; j >= 0; j--) {
        RB[(r0 + j) * nh + h] = rev;
        rev += logsigmoidf_(a.fg[(r0 + j) * nh + h]);
    }
}

/* Chunk-to-chunk recurrence. Block per (head, 32-column tile, sequence), C tile in registers
 * (like the recurrent kernel). Per chunk: save the state at the chunk start, then
 * m_c = max(g + m, max_j a_j), C = e^(g+m-m_c) C + sum_j e^(a_j-m_c) k_j v_j^T (same for n). */
template <int RPT>
__global__ void __launch_bounds__(ML_WARPS * 32) mlstm_inter_kernel(const ggx_cuda_mlstm_args a, int T,
                                                                    int max_chunks) {
    GGX_PDL_ENTER();
    constexpr int SUB = 32;     /* tokens staged at a time */
    constexpr int MAXL = 64;    /* chunk length (ggx_cuda_mlstm_scratch_floats accepts 64) */
    __shared__ float ks[SUB][ML_MAX_DQK];
    __shared__ float vs[SUB][32];
    __shared__ float ws[SUB];
    __shared__ float as[MAXL];  /* a_j = (b_L - b_j) + i~_j of the chunk */
    __shared__ int is_last;
    const int h = blockIdx.x, tile = blockIdx.y, s = blockIdx.z;
    const int L = a.chunk, nc = a.seq_len[s] / L;
    if (nc <= 0) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int j = tile * 32 + lane;
    const bool jv = j < dv, iv = tid < dqk;
    float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
    float *np = a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    float *mp = a.state_ptrs[3 * s + 2] + h;
    const float *B = a.scratch, *RB = a.scratch + (size_t)T * nh;
    float *saved = a.scratch + (size_t)2 * T * nh;
    float c[RPT];
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        c[r] = (i < dqk && jv) ? Cp[(size_t)i * dv + j] : 0.0f;
    }
    float n_own = iv ? np[tid] : 0.0f;
    float m = *mp;
    /* PDL: the batch table, C, n and m were read above while the previous kernel still ran
     * (nothing in this step writes them before this kernel); q, k, v and the gates are its output */
    GGX_PDL_ENTER();
    for (int ch = 0; ch < nc; ch++) {
        /* save the state at the chunk start for the output kernel */
        float *sv = saved + (((size_t)s * max_chunks + ch) * nh + h) * st_stride(dqk, dv);
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int i = warp + ML_WARPS * r;
            if (i < dqk && jv) sv[(size_t)i * dv + j] = c[r];
        }
        if (tile == 0) {
            if (iv) sv[(size_t)dqk * dv + tid] = n_own;
            if (tid == 0) sv[(size_t)dqk * dv + dqk] = m;
        }
        const size_t r0 = (size_t)a.seq_off[s] + (size_t)ch * L;
        /* m_c from the chunk's gates: one load per thread, then every thread takes the max of
         * the same shared values (identical results in every block) */
        const float g = B[(r0 + L - 1) * nh + h];
        __syncthreads(); /* the previous chunk's readers of as/ws are done */
        if (tid < L) as[tid] = RB[(r0 + tid) * nh + h] + a.ig[(r0 + tid) * nh + h];
        __syncthreads();
        float amax = -INFINITY;
        for (int q = 0; q < L; q++) amax = fmaxf(amax, as[q]);
        const float m_c = fmaxf(g + m, amax);
        const float decay = expf(g + m - m_c);
#pragma unroll
        for (int r = 0; r < RPT; r++) c[r] *= decay;
        n_own *= decay;
        for (int q0 = 0; q0 < L; q0 += SUB) {
            __syncthreads(); /* previous users of ks/vs/ws are done */
            /* staging: all of a thread's loads are issued before the first store (a load
             * followed by its store one at a time left this kernel latency-bound, ncu) */
            if (iv) { /* thread tid stages k[q][tid] (dqk <= blockDim) */
                float tmp[SUB];
#pragma unroll
                for (int q = 0; q < SUB; q++)
                    tmp[q] = q0 + q < L ? __ldg(&a.k[(r0 + q0 + q) * nh * dqk + (size_t)h * dqk + tid]) : 0.0f;
#pragma unroll
                for (int q = 0; q < SUB; q++) ks[q][tid] = tmp[q];
            }
            {
                constexpr int VR = SUB * 32 / (ML_WARPS * 32); /* v values per thread */
                float tmp[VR];
                const int jj = tile * 32 + lane;
#pragma unroll
                for (int u = 0; u < VR; u++) {
                    const int q = warp + ML_WARPS * u;
                    tmp[u] = (q0 + q < L && jj < dv) ? __ldg(&a.v[(r0 + q0 + q) * nh * dv + (size_t)h * dv + jj]) : 0.0f;
                }
#pragma unroll
                for (int u = 0; u < VR; u++) vs[warp + ML_WARPS * u][lane] = tmp[u];
            }
            if (tid < SUB) ws[tid] = q0 + tid < L ? expf(as[q0 + tid] - m_c) : 0.0f;
            __syncthreads();
#pragma unroll 4
            for (int q = 0; q < SUB; q++) {
                const float wv = ws[q] * vs[q][lane]; /* w_q v_q[col] */
#pragma unroll
                for (int r = 0; r < RPT; r++) {
                    const int i = warp + ML_WARPS * r;
                    if (i < dqk) c[r] = fmaf(ks[q][i], wv, c[r]);
                }
                if (iv) n_own = fmaf(ws[q], ks[q][tid], n_own);
            }
        }
        m = m_c;
    }
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int i = warp + ML_WARPS * r;
        if (i < dqk && jv) Cp[(size_t)i * dv + j] = c[r];
    }
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

/* Outputs of one chunk (64 tokens) for one head and 64 columns of v, from the state at the chunk
 * start (inter) and the causal intra-chunk part:
 *   S_js = (q_j/sqrt(DQK)).k_s e^(b_j - b_s + i_s - m_j) (s <= j),  m_j = max(b_j + m0, max_s ...)
 *   h_j = (e^(b_j+m0-m_j) q_j^T C0 + sum_s S_js v_s) / (max(|e^(..) q_j.n0 + sum_s S_js|, e^-m_j) + eps)
 * 256 threads; thread owns a 4x4 tile of S (tokens x tokens) and of the output (tokens x cols). */
constexpr int OC = 64;   /* chunk length this kernel handles */
constexpr int OCOL = 64; /* columns per block */
constexpr int OK = 32;   /* DQK slice */
__global__ void __launch_bounds__(256) mlstm_out_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks) {
    GGX_PDL_ENTER();
    /* q and k slices, transposed [k][token]; rows padded to 68 floats: the transposing stores
     * (k fastest across the warp, for coalesced global loads) spread over 8 banks, and float4
     * reads stay aligned */
    constexpr int OCP = OC + 4;
    __shared__ __align__(16) float qk[2][OK][OCP];
    __shared__ __align__(16) float cs[OK][OCOL];   /* C0 slice [k][col] */
    __shared__ float S[OC][OC + 1];
    __shared__ float bj[OC], ii[OC], mj[OC], scj[OC], qn[OC], den[OC];
    float (*qt)[OCP] = qk[0], (*kt)[OCP] = qk[1];
    float *vt = &qk[0][0][0]; /* after the first pass: v tile [s][col], 64 x 64 <= both slices */

    const int ch = blockIdx.x, s = blockIdx.z;
    const int n_ct = (a.dv + OCOL - 1) / OCOL;
    const int h = blockIdx.y / n_ct, c0 = (blockIdx.y % n_ct) * OCOL;
    const int L = a.chunk;
    if (ch >= a.seq_len[s] / L) return;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv, tid = threadIdx.x;
    const int tj = (tid / 16) * 4, tc = (tid % 16) * 4;
    const size_t r0 = (size_t)a.seq_off[s] + (size_t)ch * L;
    const float *B = a.scratch;
    const float *sv = a.scratch + (size_t)2 * T * nh + (((size_t)s * max_chunks + ch) * nh + h) * st_stride(dqk, dv);
    const float m0 = sv[(size_t)dqk * dv + dqk];
    const float qscale = 1.0f / sqrtf((float)dqk);

    float sacc[4][4], nacc[4][4];
#pragma unroll
    for (int x = 0; x < 4; x++)
#pragma unroll
        for (int y = 0; y < 4; y++) sacc[x][y] = nacc[x][y] = 0.0f;
    float qn_acc = 0.0f; /* tid < 64: q_tid . n0 */
    for (int k0 = 0; k0 < dqk; k0 += OK) {
        __syncthreads();
        { /* all loads first, then the stores (see mlstm_inter_kernel); k fastest: coalesced */
            constexpr int QR = OC * OK / 256, CR = OK * OCOL / 256;
            float tq[QR], tk[QR], tc_[CR];
            const int kk = tid % OK, kg = k0 + kk;
#pragma unroll
            for (int u = 0; u < QR; u++) {
                const int jj = tid / OK + (256 / OK) * u;
                const size_t off = (r0 + jj) * nh * dqk + (size_t)h * dqk + kg;
                tq[u] = kg < dqk ? __ldg(&a.q[off]) * qscale : 0.0f;
                tk[u] = kg < dqk ? __ldg(&a.k[off]) : 0.0f;
            }
            const int cc = tid % OCOL;
#pragma unroll
            for (int u = 0; u < CR; u++) {
                const int k2 = k0 + tid / OCOL + (256 / OCOL) * u;
                tc_[u] = (k2 < dqk && c0 + cc < dv) ? __ldg(&sv[(size_t)k2 * dv + c0 + cc]) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < QR; u++) {
                const int jj = tid / OK + (256 / OK) * u;
                qt[kk][jj] = tq[u];
                kt[kk][jj] = tk[u];
            }
#pragma unroll
            for (int u = 0; u < CR; u++) cs[tid / OCOL + (256 / OCOL) * u][cc] = tc_[u];
        }
        __syncthreads();
        if (tid < OC)
            for (int kk = 0; kk < OK && k0 + kk < dqk; kk++) qn_acc = fmaf(qt[kk][tid], sv[(size_t)dqk * dv + k0 + kk], qn_acc);
#pragma unroll 4
        for (int kk = 0; kk < OK; kk++) {
            const float4 qv = *reinterpret_cast<const float4 *>(&qt[kk][tj]);
            const float4 kv = *reinterpret_cast<const float4 *>(&kt[kk][tc]);
            const float4 cv = *reinterpret_cast<const float4 *>(&cs[kk][tc]);
            const float qa[4] = {qv.x, qv.y, qv.z, qv.w}, ka[4] = {kv.x, kv.y, kv.z, kv.w};
            const float ca[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
            for (int x = 0; x < 4; x++)
#pragma unroll
                for (int y = 0; y < 4; y++) {
                    sacc[x][y] = fmaf(qa[x], ka[y], sacc[x][y]);
                    nacc[x][y] = fmaf(qa[x], ca[y], nacc[x][y]);
                }
        }
    }
    __syncthreads(); /* done with qt/kt/cs */
#pragma unroll
    for (int x = 0; x < 4; x++)
#pragma unroll
        for (int y = 0; y < 4; y++) S[tj + x][tc + y] = sacc[x][y];
    if (tid < OC) {
        bj[tid] = B[(r0 + tid) * nh + h];
        ii[tid] = a.ig[(r0 + tid) * nh + h];
        qn[tid] = qn_acc;
    }
    { /* v tile [s][col] */
        constexpr int VR = OC * OCOL / 256;
        float tv[VR];
        const int cc = tid % OCOL;
#pragma unroll
        for (int u = 0; u < VR; u++) {
            const int ss = tid / OCOL + (256 / OCOL) * u;
            tv[u] = c0 + cc < dv ? __ldg(&a.v[(r0 + ss) * nh * dv + (size_t)h * dv + c0 + cc]) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < VR; u++) vt[(tid / OCOL + (256 / OCOL) * u) * OCOL + cc] = tv[u];
    }
    __syncthreads();
    if (tid < OC) ggx_cuda_mlstm_row_stab(tid, bj, ii, m0, mj, scj); /* row stabilizer, inter-chunk scale */
    __syncthreads();
    for (int e = tid; e < OC * OC; e += 256) { /* decay mask */
        const int jr = e / OC, q = e % OC;
        S[jr][q] = q <= jr ? S[jr][q] * expf(bj[jr] - bj[q] + ii[q] - mj[jr]) : 0.0f;
    }
    __syncthreads();
    if (tid < OC) {
        float sum = 0.0f;
        for (int q = 0; q <= tid; q++) sum += S[tid][q];
        den[tid] = scj[tid] * qn[tid] + sum;
    }
    float out[4][4];
#pragma unroll
    for (int x = 0; x < 4; x++)
#pragma unroll
        for (int y = 0; y < 4; y++) out[x][y] = 0.0f;
#pragma unroll 4
    for (int q = 0; q < OC; q++) {
        const float4 vv = *reinterpret_cast<const float4 *>(&vt[q * OCOL + tc]);
        const float va[4] = {vv.x, vv.y, vv.z, vv.w};
#pragma unroll
        for (int x = 0; x < 4; x++) {
            const float sx = S[tj + x][q];
#pragma unroll
            for (int y = 0; y < 4; y++) out[x][y] = fmaf(sx, va[y], out[x][y]);
        }
    }
    __syncthreads(); /* den complete */
#pragma unroll
    for (int x = 0; x < 4; x++) {
        const int jr = tj + x;
        const float dn = fmaxf(fabsf(den[jr]), expf(-mj[jr])) + a.eps;
#pragma unroll
        for (int y = 0; y < 4; y++) {
            const int col = c0 + tc + y;
            if (col < dv)
                a.h[(r0 + jr) * nh * dv + (size_t)h * dv + col] = (scj[jr] * nacc[x][y] + out[x][y]) / dn;
        }
    }
}
} // namespace

size_t ggx_cuda_mlstm_scratch_floats(int n_seqs, int max_len, int total_tokens, int nh, int dqk,
                                     int dv, int chunk) {
    if (chunk != OC || max_len < chunk) return 0;
    const size_t max_chunks = (size_t)max_len / chunk;
    const size_t f32 = (size_t)2 * total_tokens * nh + (size_t)n_seqs * max_chunks * nh * st_stride(dqk, dv);
    if (!ggx_cuda_mlstm_tc_enabled()) return f32;
    const size_t tc = ggx_cuda_mlstm_tc_scratch_floats(n_seqs, max_len, total_tokens, nh, dqk, dv);
    return tc > f32 ? tc : f32;
}

cudaError_t ggx_cuda_mlstm_chunkwise(cudaStream_t st, const ggx_cuda_mlstm_args *a) {
    if (!ggx_cuda_mlstm_supported(a->dqk, a->dv) || a->chunk != OC || !a->scratch) return cudaErrorInvalidValue;
    if (ggx_cuda_mlstm_tc_enabled()) return ggx_cuda_mlstm_chunkwise_tc(st, a);
    const int max_chunks = a->max_len / a->chunk;
    if (max_chunks < 1) return cudaSuccess;
    const int T = a->total_tokens;
    const int n_g = a->n_seqs * max_chunks * a->nh;
    GGX_LAUNCH(mlstm_gates_kernel, (n_g + 127) / 128, 128, 0, st, *a, T, max_chunks);
    dim3 gi((unsigned)a->nh, (unsigned)((a->dv + 31) / 32), (unsigned)a->n_seqs);
    const int rpt = (a->dqk + ML_WARPS - 1) / ML_WARPS;
    if (rpt <= 4) GGX_LAUNCH((mlstm_inter_kernel<4>), gi, ML_WARPS * 32, 0, st, *a, T, max_chunks);
    else if (rpt <= 8) GGX_LAUNCH((mlstm_inter_kernel<8>), gi, ML_WARPS * 32, 0, st, *a, T, max_chunks);
    else if (rpt <= 16) GGX_LAUNCH((mlstm_inter_kernel<16>), gi, ML_WARPS * 32, 0, st, *a, T, max_chunks);
    else GGX_LAUNCH((mlstm_inter_kernel<32>), gi, ML_WARPS * 32, 0, st, *a, T, max_chunks);
    const int n_ct = (a->dv + OCOL - 1) / OCOL;
    dim3 go((unsigned)max_chunks, (unsigned)(a->nh * n_ct), (unsigned)a->n_seqs);
    GGX_LAUNCH(mlstm_out_kernel, go, 256, 0, st, *a, T, max_chunks);
    return cudaGetLastError();
}

bool ggx_cuda_mlstm_supported(int dqk, int dv) {
    return dqk >= 1 && dqk <= ML_MAX_DQK && dv >= 1;
}

namespace {

/* GGX_CUDA_MLSTM_REC (read once; decode calls only): 0 = mlstm_rec_kernel; 1 (default) =
 * mlstm_step_kernel with 32 columns per block, 4 blocks per SM; 2 = 64 columns (float2) per
 * block, 2 blocks per SM (measured: slower at batch 32, within noise at 64; kept for A/B on other
 * GPUs). Also tried and dropped (docs/benchmarks.md): 16-warp blocks, 3 blocks per SM, and C
 * streamed through registers a few rows at a time with two chunks in flight. */
int rec_variant() {
    static const int v = [] {
        const char *e = getenv("GGX_CUDA_MLSTM_REC");
        return e && *e ? atoi(e) : 1;
    }();
    return v;
}

/* GGX_CUDA_MLSTM_DIAG (measurements only: the results are wrong), mlstm_step_kernel (so with
 * GGX_CUDA_MLSTM_CL=0 at 1-2 sequences): bits 1 no C loads, 2 no C stores, 4 return right after
 * the PDL wait. What they showed is in docs/cuda.md ("MLSTM, decode"). */
int step_diag() {
    static const int v = [] {
        const char *e = getenv("GGX_CUDA_MLSTM_DIAG");
        return e && *e ? atoi(e) : 0;
    }();
    return v;
}

/* GGX_CUDA_MLSTM_DEFER (default 4; 1 stores C every step), ggx_cuda_mlstm_set_defer */
int g_defer = -1;
int defer_k() {
    if (g_defer < 0) {
        const char *e = getenv("GGX_CUDA_MLSTM_DEFER");
        const int v = e && *e ? atoi(e) : 4;
        g_defer = v < 1 ? 1 : v > GGX_CUDA_MLSTM_DEFER_MAX ? GGX_CUDA_MLSTM_DEFER_MAX : v;
    }
    return g_defer;
}

template <int VEC, int WARPS, int MINB>
cudaError_t launch_step(cudaStream_t st, const ggx_cuda_mlstm_args *a, const ggx_cuda_mlstm_head_norm &hnf,
                        float *const *pend = nullptr) {
    const int defer = defer_k();
    dim3 grid((unsigned)((a->dv + 32 * VEC - 1) / (32 * VEC)), (unsigned)a->nh, (unsigned)a->n_seqs);
    const int rpt = (a->dqk + WARPS - 1) / WARPS;
    if (rpt <= 4) GGX_LAUNCH((mlstm_step_kernel<VEC, WARPS, 4, MINB>), grid, WARPS * 32, 0, st, *a, hnf, step_diag(), pend, defer);
    else if (rpt <= 8) GGX_LAUNCH((mlstm_step_kernel<VEC, WARPS, 8, MINB>), grid, WARPS * 32, 0, st, *a, hnf, step_diag(), pend, defer);
    else if (rpt <= 16) GGX_LAUNCH((mlstm_step_kernel<VEC, WARPS, 16, MINB>), grid, WARPS * 32, 0, st, *a, hnf, step_diag(), pend, defer);
    else if constexpr (WARPS * 32 >= ML_MAX_DQK)
        GGX_LAUNCH((mlstm_step_kernel<VEC, WARPS, ML_MAX_DQK / WARPS, MINB>), grid, WARPS * 32, 0, st, *a, hnf, step_diag(), pend, defer);
    return cudaGetLastError();
}

/* The cluster kernel for a head of `tiles` 32-column tiles, or false (then mlstm_step_kernel):
 * the device launches clusters, the mode is on and the cluster fits (checked once per RPT and
 * size: non-portable sizes above 8 need the attribute and room in one GPC). */
int g_cl_mode = -1; /* GGX_CUDA_MLSTM_CL=0|1|2 (default 1), ggx_cuda_set_mlstm_cluster */

int cl_mode() {
    if (g_cl_mode < 0) {
        const char *e = getenv("GGX_CUDA_MLSTM_CL");
        g_cl_mode = e && *e >= '0' && *e <= '2' ? *e - '0' : 1;
    }
    return g_cl_mode;
}

bool cl_device() {
    static const int ok = [] {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return 0;
        if (cudaDeviceGetAttribute(&v, cudaDevAttrClusterLaunch, dev) != cudaSuccess) v = 0;
        (void)cudaGetLastError();
        return v;
    }();
    return ok != 0;
}

template <int RPT>
bool cl_fits(int tiles) {
    static signed char fits[17]; /* 0 unknown, 1 yes, -1 no */
    if (tiles < 1 || tiles > 16) return false;
    if (!fits[tiles]) {
        auto k = mlstm_step_cl_kernel<8, RPT>;
        bool ok = tiles <= 8 || cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
        if (ok) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3((unsigned)tiles, 1, 1);
            cfg.blockDim = dim3(256, 1, 1);
            cudaLaunchAttribute attr[1];
            attr[0].id = cudaLaunchAttributeClusterDimension;
            attr[0].val.clusterDim.x = (unsigned)tiles;
            attr[0].val.clusterDim.y = 1;
            attr[0].val.clusterDim.z = 1;
            cfg.attrs = attr;
            cfg.numAttrs = 1;
            int n = 0;
            ok = cudaOccupancyMaxActiveClusters(&n, k, &cfg) == cudaSuccess && n > 0;
        }
        (void)cudaGetLastError();
        fits[tiles] = ok ? 1 : -1;
    }
    return fits[tiles] > 0;
}

bool cl_usable(int dqk, int dv, int n_seqs) {
    const int mode = cl_mode();
    if (!mode || (mode == 1 && n_seqs > 2) || !cl_device() || dqk < 1 || dqk > ML_MAX_DQK) return false;
    const int tiles = (dv + 31) / 32, rpt = (dqk + 7) / 8;
    return rpt <= 4 ? cl_fits<4>(tiles) : rpt <= 8 ? cl_fits<8>(tiles) : rpt <= 16 ? cl_fits<16>(tiles)
                                                                                     : cl_fits<32>(tiles);
}

cudaError_t launch_step_cl(cudaStream_t st, const ggx_cuda_mlstm_args *a, const ggx_cuda_mlstm_head_norm &hnf,
                           float *const *pend) {
    const int defer = defer_k();
    const unsigned tiles = (unsigned)((a->dv + 31) / 32);
    dim3 grid(tiles, (unsigned)a->nh, (unsigned)a->n_seqs);
    const int rpt = (a->dqk + 7) / 8;
    cudaError_t e;
    if (rpt <= 4) e = ggx_cuda_launch_cluster(mlstm_step_cl_kernel<8, 4>, grid, 256, 0, st, tiles, *a, hnf, pend, defer);
    else if (rpt <= 8) e = ggx_cuda_launch_cluster(mlstm_step_cl_kernel<8, 8>, grid, 256, 0, st, tiles, *a, hnf, pend, defer);
    else if (rpt <= 16) e = ggx_cuda_launch_cluster(mlstm_step_cl_kernel<8, 16>, grid, 256, 0, st, tiles, *a, hnf, pend, defer);
    else e = ggx_cuda_launch_cluster(mlstm_step_cl_kernel<8, 32>, grid, 256, 0, st, tiles, *a, hnf, pend, defer);
    return e != cudaSuccess ? e : cudaGetLastError();
}

} // namespace

int ggx_cuda_mlstm_set_cluster(int mode) {
    if (mode >= 0) g_cl_mode = mode > 2 ? 2 : mode;
    return cl_device() ? cl_mode() : 0;
}

bool ggx_cuda_mlstm_cluster_usable(int dqk, int dv, int n_seqs) { return cl_usable(dqk, dv, n_seqs); }

int ggx_cuda_mlstm_set_defer(int k) {
    if (k >= 1) g_defer = k > GGX_CUDA_MLSTM_DEFER_MAX ? GGX_CUDA_MLSTM_DEFER_MAX : k;
    return defer_k();
}

bool ggx_cuda_mlstm_defer_usable(int dqk, int dv, int n_seqs) {
    /* rec_variant 1: the cluster kernel or mlstm_step_kernel<1, ...>, both replay them */
    (void)n_seqs;
    return defer_k() > 1 && rec_variant() == 1 && ggx_cuda_mlstm_supported(dqk, dv);
}

cudaError_t ggx_cuda_mlstm_flush(cudaStream_t st, float *C, const float *P, int nh, int dqk, int dv) {
    if (!ggx_cuda_mlstm_supported(dqk, dv) || nh < 1) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)((dv + 31) / 32), (unsigned)nh);
    const int rpt = (dqk + 7) / 8;
    if (rpt <= 4) GGX_LAUNCH((mlstm_flush_kernel<8, 4>), grid, 256, 0, st, C, P, nh, dqk, dv);
    else if (rpt <= 8) GGX_LAUNCH((mlstm_flush_kernel<8, 8>), grid, 256, 0, st, C, P, nh, dqk, dv);
    else if (rpt <= 16) GGX_LAUNCH((mlstm_flush_kernel<8, 16>), grid, 256, 0, st, C, P, nh, dqk, dv);
    else GGX_LAUNCH((mlstm_flush_kernel<8, 32>), grid, 256, 0, st, C, P, nh, dqk, dv);
    return cudaGetLastError();
}

cudaError_t ggx_cuda_mlstm_recurrent(cudaStream_t st, const ggx_cuda_mlstm_args *a,
                                     const ggx_cuda_mlstm_head_norm *hn, float *const *pend) {
    const ggx_cuda_mlstm_head_norm hnf = hn ? *hn : ggx_cuda_mlstm_head_norm{nullptr, nullptr, 0.0f};
    if (!ggx_cuda_mlstm_supported(a->dqk, a->dv) || a->n_seqs < 1) return cudaErrorInvalidValue;
    const int var = a->max_len == 1 ? rec_variant() : 0; /* more tokens: mlstm_rec_kernel */
    /* pending updates only where this step is the cluster kernel (the caller asked
     * ggx_cuda_mlstm_defer_usable): any other kernel would read a stale C */
    if (pend && (var != 1 || !ggx_cuda_mlstm_defer_usable(a->dqk, a->dv, a->n_seqs))) return cudaErrorInvalidValue;
    /* while the backend records a decode step: an item loop of the persistent kernel (its
     * arithmetic is mlstm_step_kernel<1, 8, ...>'s) */
    if (!pend && var == 1 && ggx_cuda_pk_add_mlstm(a, hn)) return cudaSuccess;
    if (var == 1 && cl_usable(a->dqk, a->dv, a->n_seqs)) return launch_step_cl(st, a, hnf, pend);
    if (var == 2 && a->dv % 2 == 0) return launch_step<2, 8, 2>(st, a, hnf);
    if (var != 0) return launch_step<1, 8, 4>(st, a, hnf, pend);
    dim3 grid((unsigned)a->nh, (unsigned)((a->dv + 31) / 32), (unsigned)a->n_seqs);
    const int rpt = (a->dqk + ML_WARPS - 1) / ML_WARPS;
    if (rpt <= 4) GGX_LAUNCH((mlstm_rec_kernel<4>), grid, ML_WARPS * 32, 0, st, *a, hnf);
    else if (rpt <= 8) GGX_LAUNCH((mlstm_rec_kernel<8>), grid, ML_WARPS * 32, 0, st, *a, hnf);
    else if (rpt <= 16) GGX_LAUNCH((mlstm_rec_kernel<16>), grid, ML_WARPS * 32, 0, st, *a, hnf);
    else GGX_LAUNCH((mlstm_rec_kernel<32>), grid, ML_WARPS * 32, 0, st, *a, hnf);
    return cudaGetLastError();
}
