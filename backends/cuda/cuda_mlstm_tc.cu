/*
 * cuda_mlstm_tc.cu — the chunkwise mLSTM prefill (xlstm-spec §5, chunk 64) on tensor cores.
 *
 * Four kernels per layer (the default; GGX_CUDA_MLSTM_TC=0 takes the f32 CUDA-core kernels of
 * cuda_mlstm.cu):
 *   tc_gates: per (sequence, head): prefix sums b_j of logsigmoid(f~) per chunk, the chunk-start
 *     stabilizers m_c (a serial max-plus chain over chunks, cheap), the per-chunk decay
 *     e^(g_c + m_c - m_c+1) and a_s = b_L - b_s + i~_s (the inter kernel takes the token
 *     weights w_s = e^(a_s - m_c+1) when it stages them).
 *   tc_inter: the chunk-to-chunk state recurrence C_c+1 = decay_c C_c + K_c^T diag(w) V_c, one
 *     block per (head, 64 columns of C, 64 rows of C (GGX_CUDA_MLSTM_ITD=128: 128), sequence),
 *     the C tile in mma accumulator registers; K and V of the next chunk are staged with cp.async
 *     while the current one is multiplied. Saves every chunk-start state C_c, n_c to scratch (f32,
 *     537 MB per layer for one 8192-token sequence of the 7B, written once and read once).
 *   tc_intra: per (chunk, head): S = (q k^T / sqrt(DQK)) with the causal decay mask and row
 *     stabilizers m_j, the inter-chunk scale e^(b_j + m_c - m_j) and the denominators
 *     (q_j . n_c, S row sums). f32 on CUDA cores (a sixth of the work).
 *   tc_out: per (chunk, head), 128 columns at a time: h = (scale_j q_j^T C_c + S V) / den_j.
 * The products on tensor cores use 3xTF32 (x = hi + lo, both tf32; a.b ~ hi.hi + hi.lo + lo.hi,
 * f32 accumulate: ~f32 accuracy, the state stays within 1e-5 of an f64 reference); the gate and
 * stabilizer math is f32 scalar.
 */
#include "cuda_common.h"

#include <cstdint>
#include <cstdlib>

namespace {

constexpr int TL = 64; /* chunk length */

__device__ __forceinline__ float tc_logsigmoid(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/* scratch layout (floats), every region aligned to 4 floats */
struct TcLayout {
    size_t B, W, SC, DEN, MC, DEC, S, ST, st_stride, total;
};
__host__ __device__ __forceinline__ size_t tc_up4(size_t x) { return (x + 3) & ~(size_t)3; }
__host__ __device__ __forceinline__ TcLayout tc_layout(int n_seqs, int max_chunks, int T, int nh, int dqk,
                                                       int dv) {
    TcLayout l;
    const size_t tn = tc_up4((size_t)T * nh), blocks = (size_t)n_seqs * max_chunks * nh;
    size_t o = 0;
    l.B = o;   o += tn;                                                 /* [T, NH] b_j */
    l.W = o;   o += tn;                                                 /* [T, NH] a_s */
    l.SC = o;  o += tn;                                                 /* [T, NH] inter scale */
    l.DEN = o; o += tn;                                                 /* [T, NH] denominators */
    l.MC = o;  o += tc_up4((size_t)n_seqs * (max_chunks + 1) * nh);    /* [seq, chunk+1, NH] m_c */
    l.DEC = o; o += tc_up4(blocks);                                     /* [seq, chunk, NH] decay */
    l.S = o;   o += blocks * TL * TL;                                   /* [seq, chunk, NH, 64, 64] */
    l.st_stride = tc_up4((size_t)dqk * dv + dqk);                       /* C [DQK, DV], n [DQK] */
    l.ST = o;  o += blocks * l.st_stride;
    l.total = o;
    return l;
}

/* ---- tensor-core helpers (sm_80+) ---- */
/* x = hi + lo: hi = x rounded to tf32 (to nearest, ties away: the integer form of
 * cvt.rna.tf32.f32, which costs several instructions), lo = the residual as is: the tensor core
 * reads its top 19 bits (|lo| <= 2^-11 |x|, so the truncation error is <= 2^-21 |x|, unbiased over
 * the residual's sign). Finite x only (activations and states are). */
__device__ __forceinline__ void tc_split(float x, uint32_t &hi, uint32_t &lo) {
    hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    lo = __float_as_uint(x - __uint_as_float(hi));
}
__device__ __forceinline__ void tc_mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* B fragments of four 8-column tiles (columns colb + 8 ni + g, those >= ncols read as 0) from two
 * rows of a row-major f32 matrix (k and k + 4: ra, rb; a row with ok_* false reads as 0), split
 * for 3xTF32 */
__device__ __forceinline__ void tc_load_b(uint32_t (&bh)[4][2], uint32_t (&bl)[4][2], const float *ra, bool ok_a,
                                          const float *rb, bool ok_b, int colb, int ncols) {
#pragma unroll
    for (int ni = 0; ni < 4; ni++) {
        const int col = colb + ni * 8;
        const float b0 = (col < ncols && ok_a) ? __ldg(ra + col) : 0.0f;
        const float b1 = (col < ncols && ok_b) ? __ldg(rb + col) : 0.0f;
        tc_split(b0, bh[ni][0], bl[ni][0]);
        tc_split(b1, bh[ni][1], bl[ni][1]);
    }
}
/* acc[mi][ni] += A B over 8 k: the warp's two 16-row tiles (rows row + 16 mi and + 8, A in shared
 * memory with row stride ap, columns k and k + 4) times four 8-column tiles of B, given as split
 * fragments; 3xTF32, the small terms (lo hi, hi lo) before hi hi */
__device__ __forceinline__ void tc_mma_2x4(float (&acc)[2][4][4], const float *A, int ap, int row, int k,
                                           const uint32_t (&bh)[4][2], const uint32_t (&bl)[4][2]) {
#pragma unroll
    for (int mi = 0; mi < 2; mi++, row += 16) {
        uint32_t ah[4], al[4];
        tc_split(A[row * ap + k], ah[0], al[0]);
        tc_split(A[(row + 8) * ap + k], ah[1], al[1]);
        tc_split(A[row * ap + k + 4], ah[2], al[2]);
        tc_split(A[(row + 8) * ap + k + 4], ah[3], al[3]);
#pragma unroll
        for (int ni = 0; ni < 4; ni++) tc_mma(acc[mi][ni], al, bh[ni][0], bh[ni][1]);
#pragma unroll
        for (int ni = 0; ni < 4; ni++) tc_mma(acc[mi][ni], ah, bl[ni][0], bl[ni][1]);
#pragma unroll
        for (int ni = 0; ni < 4; ni++) tc_mma(acc[mi][ni], ah, bh[ni][0], bh[ni][1]);
    }
}
__device__ __forceinline__ void tc_cp16(float *dst, const float *src, int bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void tc_cp4(float *dst, const float *src, int bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void tc_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void tc_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* ------------------------------------------------------------------------------- gates ----- */
__global__ void __launch_bounds__(256) tc_gates_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks) {
    GGX_PDL_ENTER();
    const int nh = a.nh, s = blockIdx.x / nh, h = blockIdx.x % nh;
    const int nc = a.seq_len[s] / TL;
    if (nc <= 0) return;
    const TcLayout ly = tc_layout(a.n_seqs, max_chunks, T, nh, a.dqk, a.dv);
    float *B = a.scratch + ly.B, *W = a.scratch + ly.W;
    float *mc = a.scratch + ly.MC + (size_t)s * (max_chunks + 1) * nh + h; /* stride nh */
    float *dec = a.scratch + ly.DEC + (size_t)s * max_chunks * nh + h;     /* stride nh */
    const size_t off = (size_t)a.seq_off[s];
    for (int c = threadIdx.x; c < nc; c += blockDim.x) {
        const size_t r0 = off + (size_t)c * TL;
        float ls[TL], ig[TL]; /* every load issued before the first store */
#pragma unroll
        for (int j = 0; j < TL; j++) {
            ls[j] = a.fg[(r0 + j) * nh + h];
            ig[j] = a.ig[(r0 + j) * nh + h];
        }
        float cum = 0.0f;
#pragma unroll
        for (int j = 0; j < TL; j++) {
            ls[j] = tc_logsigmoid(ls[j]);
            cum += ls[j];
            B[(r0 + j) * nh + h] = cum;
        }
        /* a_j = (b_L - b_j) + i~_j, b_L - b_j as a reverse sum (more accurate than the difference) */
        float rev = 0.0f, amax = -INFINITY;
#pragma unroll
        for (int j = TL - 1; j >= 0; j--) {
            const float av = rev + ig[j];
            W[(r0 + j) * nh + h] = av;
            amax = fmaxf(amax, av);
            rev += ls[j];
        }
        dec[(size_t)c * nh] = cum;        /* g_c for now */
        mc[(size_t)(c + 1) * nh] = amax;  /* max_j a_j for now */
    }
    __syncthreads();
    if (threadIdx.x < 32) { /* m_c+1 = max(g_c + m_c, max_j a_j): serial, 32 chunks per warp load */
        const int lane = threadIdx.x;
        float *mp = a.state_ptrs[3 * s + 2] + h;
        float m = *mp;
        for (int cb = 0; cb < nc; cb += 32) {
            const int c = cb + lane;
            const float gl = c < nc ? dec[(size_t)c * nh] : 0.0f, al = c < nc ? mc[(size_t)(c + 1) * nh] : 0.0f;
            float my_m = 0.0f, my_dec = 0.0f;
            for (int i = 0; i < 32 && cb + i < nc; i++) {
                const float g = __shfl_sync(0xffffffffu, gl, i), am = __shfl_sync(0xffffffffu, al, i);
                const float mn = fmaxf(g + m, am);
                if (lane == i) {
                    my_m = m;
                    my_dec = expf(g + m - mn);
                }
                m = mn;
            }
            __syncwarp();
            if (c < nc) {
                mc[(size_t)c * nh] = my_m;
                dec[(size_t)c * nh] = my_dec;
            }
        }
        if (lane == 0) {
            mc[(size_t)nc * nh] = m;
            *mp = m;
        }
    }
}

/* ------------------------------------------------------------------------------- inter ----- */
/* IT_D rows of C per block: 128 (one block per SM at the 7B size: 128 blocks) or 64 (two: 256
 * blocks, twice the warps to hide the latency of the split-and-multiply chain) */
constexpr int IT_COLS = 64;
constexpr int VP = IT_COLS + 8; /* V stage row pitch */
template <int IT_D> struct ItCfg {
    static constexpr int KP = IT_D + 8; /* K stage row pitch: the B-fragment reads hit 32 banks */
    static constexpr size_t SMEM = sizeof(float) * (2 * TL * KP + 2 * TL * VP + 2 * TL + 256);
};

template <int IT_D>
__device__ __forceinline__ void tc_inter_stage(const ggx_cuda_mlstm_args &a, const float *W, float *Ks,
                                               float *Vs, float *ws, size_t r0, int h, int d0, int c0,
                                               int vec) {
    constexpr int KP = ItCfg<IT_D>::KP, GPR = IT_D / 4;
    const int tid = threadIdx.x, nh = a.nh, dqk = a.dqk, dv = a.dv;
    const size_t kst = (size_t)nh * dqk, vst = (size_t)nh * dv;
    const float *kb = a.k + r0 * kst + (size_t)h * dqk, *vb = a.v + r0 * vst + (size_t)h * dv;
    if (vec) {
#pragma unroll
        for (int u = 0; u < TL * IT_D / 4 / 256; u++) {
            const int idx = tid + 256 * u, row = idx / GPR, q = (idx % GPR) * 4, d = d0 + q;
            const bool ok = d < dqk;
            tc_cp16(Ks + row * KP + q, ok ? kb + row * kst + d : a.k, ok ? 16 : 0);
        }
#pragma unroll
        for (int u = 0; u < TL * IT_COLS / 4 / 256; u++) {
            const int idx = tid + 256 * u, row = idx >> 4, q = (idx & 15) * 4, c = c0 + q;
            const bool ok = c < dv;
            tc_cp16(Vs + row * VP + q, ok ? vb + row * vst + c : a.v, ok ? 16 : 0);
        }
    } else {
#pragma unroll 8
        for (int u = 0; u < TL * IT_D / 256; u++) {
            const int idx = tid + 256 * u, row = idx / IT_D, q = idx % IT_D, d = d0 + q;
            const bool ok = d < dqk;
            tc_cp4(Ks + row * KP + q, ok ? kb + row * kst + d : a.k, ok ? 4 : 0);
        }
#pragma unroll 8
        for (int u = 0; u < TL * IT_COLS / 256; u++) {
            const int idx = tid + 256 * u, row = idx >> 6, q = idx & 63, c = c0 + q;
            const bool ok = c < dv;
            tc_cp4(Vs + row * VP + q, ok ? vb + row * vst + c : a.v, ok ? 4 : 0);
        }
    }
    if (tid < TL) tc_cp4(ws + tid, W + (r0 + tid) * nh + h, 4);
}

/* Block per (head, 64 columns, IT_D rows of C x sequence); 8 warps = 2 (32 columns) x 4 (IT_D/4
 * rows). A warp's accumulators hold C^T [32 cols, IT_D/4 rows]: D[m = col][n = row] += sum_s
 * (w_s v_s[col]) k_s[row] (A = (diag(w) V)^T, B = K). */
template <int IT_D>
__global__ void __launch_bounds__(256, IT_D == 64 ? 2 : 1)
    tc_inter_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks, int vec) {
    GGX_PDL_ENTER();
    constexpr int KP = ItCfg<IT_D>::KP, WD = IT_D / 4, NI = WD / 8, NG = 256 / IT_D;
    extern __shared__ __align__(16) float tc_sm[];
    float *Ks = tc_sm, *Vs = Ks + 2 * TL * KP, *ws = Vs + 2 * TL * VP, *nred = ws + 2 * TL;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int n_dt = (dqk + IT_D - 1) / IT_D;
    const int h = blockIdx.x, ct = blockIdx.y, s = blockIdx.z / n_dt, dt = blockIdx.z % n_dt;
    const int nc = a.seq_len[s] / TL;
    if (nc <= 0) return;
    const int c0 = ct * IT_COLS, d0 = dt * IT_D;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int wc = warp & 1, wd = warp >> 1;
    const TcLayout ly = tc_layout(a.n_seqs, max_chunks, T, nh, dqk, dv);
    const float *W = a.scratch + ly.W, *DEC = a.scratch + ly.DEC + (size_t)s * max_chunks * nh + h;
    const float *MC = a.scratch + ly.MC + (size_t)s * (max_chunks + 1) * nh + h;
    float *ST = a.scratch + ly.ST;
    float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
    float *np = a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    const size_t off = (size_t)a.seq_off[s];
    const bool do_n = ct == 0; /* the first column tile also carries n (its rows) */

    float acc[2][NI][4];
    /* f(accumulator, inside C, its index in a [dqk, dv] state) for this thread's part of the tile */
    auto each_c = [&](auto &&f) {
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < NI; ni++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = c0 + wc * 32 + mi * 16 + g + (e >> 1) * 8;
                    const int d = d0 + wd * WD + ni * 8 + 2 * t + (e & 1);
                    f(acc[mi][ni][e], col < dv && d < dqk, (size_t)d * dv + col);
                }
    };
    each_c([&](float &v, bool in, size_t i) { v = in ? Cp[i] : 0.0f; });
    auto store_c = [&](float *dst) { each_c([&](float &v, bool in, size_t i) { if (in) dst[i] = v; }); };
    float n_own = (do_n && tid < IT_D && d0 + tid < dqk) ? np[d0 + tid] : 0.0f;

    tc_inter_stage<IT_D>(a, W, Ks, Vs, ws, off, h, d0, c0, vec);
    tc_commit();
    float dec_nx = DEC[0], m_nx = MC[nh]; /* the next chunk's decay and m (loaded a chunk ahead) */
    for (int ch = 0; ch < nc; ch++) {
        const int buf = ch & 1;
        const float dec = dec_nx, m_next = m_nx;
        if (ch + 1 < nc) {
            dec_nx = DEC[(size_t)(ch + 1) * nh];
            m_nx = MC[(size_t)(ch + 2) * nh];
        }
        if (ch + 1 < nc)
            tc_inter_stage<IT_D>(a, W, Ks + (buf ^ 1) * TL * KP, Vs + (buf ^ 1) * TL * VP, ws + (buf ^ 1) * TL,
                           off + (size_t)(ch + 1) * TL, h, d0, c0, vec);
        tc_commit();
        /* the state at the chunk start, for the intra and output kernels */
        float *sv = ST + (((size_t)s * max_chunks + ch) * nh + h) * ly.st_stride;
        store_c(sv);
        if (do_n && tid < IT_D && d0 + tid < dqk) sv[(size_t)dqk * dv + d0 + tid] = n_own;
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < NI; ni++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[mi][ni][e] *= dec;
        tc_wait<1>();
        float *wb = ws + buf * TL;
        if (tid < TL) wb[tid] = expf(wb[tid] - m_next); /* its own cp.async: visible after the wait */
        __syncthreads(); /* chunk ch staged */
        const float *Kb = Ks + buf * TL * KP, *Vb = Vs + buf * TL * VP;
#pragma unroll 2
        for (int kk = 0; kk < TL / 8; kk++) {
            const int r = kk * 8 + t;
            const float w0 = wb[r], w1 = wb[r + 4];
            uint32_t ah[2][4], al[2][4], bh[NI][2], bl[NI][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const int cl = wc * 32 + mi * 16 + g;
                tc_split(Vb[r * VP + cl] * w0, ah[mi][0], al[mi][0]);
                tc_split(Vb[r * VP + cl + 8] * w0, ah[mi][1], al[mi][1]);
                tc_split(Vb[(r + 4) * VP + cl] * w1, ah[mi][2], al[mi][2]);
                tc_split(Vb[(r + 4) * VP + cl + 8] * w1, ah[mi][3], al[mi][3]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int dl = wd * WD + ni * 8 + g;
                tc_split(Kb[r * KP + dl], bh[ni][0], bl[ni][0]);
                tc_split(Kb[(r + 4) * KP + dl], bh[ni][1], bl[ni][1]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) tc_mma(acc[mi][ni], al[mi], bh[ni][0], bh[ni][1]);
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) tc_mma(acc[mi][ni], ah[mi], bl[ni][0], bl[ni][1]);
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) tc_mma(acc[mi][ni], ah[mi], bh[ni][0], bh[ni][1]);
        }
        if (do_n) { /* n_c+1 = decay n_c + sum_s w_s k_s for this block's rows (f32 FMA) */
            const int dl = tid % IT_D, grp = tid / IT_D;
            float p = 0.0f;
#pragma unroll 8
            for (int r = grp * (TL / NG); r < (grp + 1) * (TL / NG); r++) p = fmaf(wb[r], Kb[r * KP + dl], p);
            if (grp) nred[(grp - 1) * IT_D + dl] = p;
            __syncthreads();
            if (!grp) {
#pragma unroll
                for (int q = 1; q < NG; q++) p += nred[(q - 1) * IT_D + dl];
                n_own = fmaf(n_own, dec, p);
            }
        }
        __syncthreads(); /* the buffer of chunk ch is free for chunk ch + 2 */
    }
    store_c(Cp);
    if (do_n && tid < IT_D && d0 + tid < dqk) np[d0 + tid] = n_own;
}

/* ------------------------------------------------------------------------------- intra ----- */
/* Per (chunk, head): S_js = (q_j/sqrt(DQK)).k_s e^(b_j - b_s + i_s - m_j) (s <= j, else 0),
 * m_j = max(b_j + m_c, max_s<=j (b_j - b_s + i_s)), scale_j = e^(b_j + m_c - m_j),
 * den_j = max(|scale_j q_j.n_c + sum_s S_js|, e^-m_j) + eps. 4x4 register tiles, f32. */
constexpr int OK = 32; /* DQK slice */
__global__ void __launch_bounds__(256) tc_intra_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks) {
    GGX_PDL_ENTER();
    constexpr int OCP = TL + 4;
    __shared__ __align__(16) float qt[OK][OCP], kt[OK][OCP];
    __shared__ float S[TL][TL + 1];
    __shared__ float bj[TL], ii[TL], mj[TL], scj[TL], qn[TL];
    const int ch = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
    if (ch >= a.seq_len[s] / TL) return;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv, tid = threadIdx.x;
    const int tj = (tid / 16) * 4, tc = (tid % 16) * 4;
    const TcLayout ly = tc_layout(a.n_seqs, max_chunks, T, nh, dqk, dv);
    const size_t r0 = (size_t)a.seq_off[s] + (size_t)ch * TL;
    const size_t blk = ((size_t)s * max_chunks + ch) * nh + h;
    const float *n0 = a.scratch + ly.ST + blk * ly.st_stride + (size_t)dqk * dv;
    const float m0 = a.scratch[ly.MC + ((size_t)s * (max_chunks + 1) + ch) * nh + h];
    const float qscale = 1.0f / sqrtf((float)dqk);

    float sacc[4][4];
#pragma unroll
    for (int x = 0; x < 4; x++)
#pragma unroll
        for (int y = 0; y < 4; y++) sacc[x][y] = 0.0f;
    float qn_acc = 0.0f; /* tid < 64: q_tid . n_c */
    for (int k0 = 0; k0 < dqk; k0 += OK) {
        __syncthreads();
        {
            constexpr int QR = TL * OK / 256;
            float tq[QR], tk[QR];
            const int kk = tid % OK, kg = k0 + kk;
#pragma unroll
            for (int u = 0; u < QR; u++) {
                const int jj = tid / OK + (256 / OK) * u;
                const size_t o = (r0 + jj) * nh * dqk + (size_t)h * dqk + kg;
                tq[u] = kg < dqk ? __ldg(&a.q[o]) * qscale : 0.0f;
                tk[u] = kg < dqk ? __ldg(&a.k[o]) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < QR; u++) {
                const int jj = tid / OK + (256 / OK) * u;
                qt[kk][jj] = tq[u];
                kt[kk][jj] = tk[u];
            }
        }
        __syncthreads();
        if (tid < TL)
            for (int kk = 0; kk < OK && k0 + kk < dqk; kk++) qn_acc = fmaf(qt[kk][tid], n0[k0 + kk], qn_acc);
#pragma unroll 4
        for (int kk = 0; kk < OK; kk++) {
            const float4 qv = *reinterpret_cast<const float4 *>(&qt[kk][tj]);
            const float4 kv = *reinterpret_cast<const float4 *>(&kt[kk][tc]);
            const float qa[4] = {qv.x, qv.y, qv.z, qv.w}, ka[4] = {kv.x, kv.y, kv.z, kv.w};
#pragma unroll
            for (int x = 0; x < 4; x++)
#pragma unroll
                for (int y = 0; y < 4; y++) sacc[x][y] = fmaf(qa[x], ka[y], sacc[x][y]);
        }
    }
#pragma unroll
    for (int x = 0; x < 4; x++)
#pragma unroll
        for (int y = 0; y < 4; y++) S[tj + x][tc + y] = sacc[x][y];
    if (tid < TL) {
        bj[tid] = a.scratch[ly.B + (r0 + tid) * nh + h];
        ii[tid] = a.ig[(r0 + tid) * nh + h];
        qn[tid] = qn_acc;
    }
    __syncthreads();
    if (tid < TL) ggx_cuda_mlstm_row_stab(tid, bj, ii, m0, mj, scj); /* row stabilizer, inter-chunk scale */
    __syncthreads();
    float *Sg = a.scratch + ly.S + blk * TL * TL;
    for (int e = tid; e < TL * TL; e += 256) { /* decay mask */
        const int jr = e / TL, q = e % TL;
        const float v = q <= jr ? S[jr][q] * expf(bj[jr] - bj[q] + ii[q] - mj[jr]) : 0.0f;
        S[jr][q] = v;
        Sg[e] = v;
    }
    __syncthreads();
    if (tid < TL) {
        float sum = 0.0f;
        for (int q = 0; q <= tid; q++) sum += S[tid][q];
        const size_t i = (r0 + tid) * nh + h;
        a.scratch[ly.SC + i] = scj[tid];
        a.scratch[ly.DEN + i] = fmaxf(fabsf(scj[tid] * qn[tid] + sum), expf(-mj[tid])) + a.eps;
    }
}

/* -------------------------------------------------------------------------------- out ------ */
/* Block per (chunk, head, sequence), 128 columns at a time; 8 warps = 2 (32 tokens) x 4 (32 columns).
 * D [token, col] = sum_d q[token][d] C_c[d][col] (A = Q from shared memory, B = C_c straight
 * from global: each lane's loads are 8 contiguous columns of 4 rows, whole sectors), scaled per
 * row, then += sum_s S[token][s] v_s[col]; divided by den. */
constexpr int OT_COLS = 128;
constexpr int QP = 256 + 4; /* Q stage pitch: the A-fragment reads hit 32 banks */
constexpr int SP = TL + 4;
constexpr size_t OT_SMEM = sizeof(float) * (TL * QP + TL * SP + 2 * TL);

__global__ void __launch_bounds__(256, 2) tc_out_kernel(const ggx_cuda_mlstm_args a, int T, int max_chunks,
                                                        int vec) {
    GGX_PDL_ENTER();
    extern __shared__ __align__(16) float tc_sm[];
    float *Qs = tc_sm, *Ss = Qs + TL * QP, *rs = Ss + TL * SP, *rd = rs + TL;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int ch = blockIdx.x, s = blockIdx.z, h = blockIdx.y;
    if (ch >= a.seq_len[s] / TL) return;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int wm = warp & 1, wn = warp >> 1;
    const TcLayout ly = tc_layout(a.n_seqs, max_chunks, T, nh, dqk, dv);
    const size_t r0 = (size_t)a.seq_off[s] + (size_t)ch * TL;
    const size_t blk = ((size_t)s * max_chunks + ch) * nh + h;
    const float *Cc = a.scratch + ly.ST + blk * ly.st_stride; /* [DQK, DV] */
    const float *Sg = a.scratch + ly.S + blk * TL * TL;
    const size_t kst = (size_t)nh * dqk, vst = (size_t)nh * dv;
    const int dpad = (dqk + 7) & ~7;

    /* stage q [64, dpad] (zeros past DQK) and S [64, 64] */
    const float *qb = a.q + r0 * kst + (size_t)h * dqk;
    if (vec) {
        const int gpr = dpad / 4;
        for (int idx = tid; idx < TL * gpr; idx += 256) {
            const int row = idx / gpr, q = (idx % gpr) * 4;
            const bool ok = q < dqk;
            tc_cp16(Qs + row * QP + q, ok ? qb + row * kst + q : a.q, ok ? 16 : 0);
        }
    } else {
        for (int idx = tid; idx < TL * dpad; idx += 256) {
            const int row = idx / dpad, q = idx % dpad;
            const bool ok = q < dqk;
            tc_cp4(Qs + row * QP + q, ok ? qb + row * kst + q : a.q, ok ? 4 : 0);
        }
    }
#pragma unroll
    for (int u = 0; u < TL * TL / 4 / 256; u++) {
        const int idx = tid + 256 * u, row = idx >> 4, q = (idx & 15) * 4;
        tc_cp16(Ss + row * SP + q, Sg + row * TL + q, 16);
    }
    tc_commit();
    if (tid < TL) {
        const size_t i = (r0 + tid) * nh + h;
        rs[tid] = a.scratch[ly.SC + i] / sqrtf((float)dqk);
        rd[tid] = a.scratch[ly.DEN + i];
    }
    tc_wait<0>();
    __syncthreads();

    const float *vb = a.v + r0 * vst + (size_t)h * dv;
    for (int c0 = 0; c0 < dv; c0 += OT_COLS) { /* q and S stay staged for every column tile */
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.0f;
    const int colb = c0 + wn * 32;
#pragma unroll 2
    for (int k0 = 0; k0 < dpad; k0 += 8) {
        const int d = k0 + t;
        uint32_t bh[4][2], bl[4][2];
        tc_load_b(bh, bl, Cc + (size_t)d * dv, d < dqk, Cc + (size_t)(d + 4) * dv, d + 4 < dqk, colb + g, dv);
        tc_mma_2x4(acc, Qs, QP, wm * 32 + g, d, bh, bl);
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mi][ni][e] *= rs[wm * 32 + mi * 16 + g + (e >> 1) * 8];

#pragma unroll 2
    for (int k0 = 0; k0 < TL; k0 += 8) {
        const int sr = k0 + t;
        uint32_t bh[4][2], bl[4][2];
        tc_load_b(bh, bl, vb + (size_t)sr * vst, true, vb + (size_t)(sr + 4) * vst, true, colb + g, dv);
        tc_mma_2x4(acc, Ss, SP, wm * 32 + g, sr, bh, bl);
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = wm * 32 + mi * 16 + g + (e >> 1) * 8;
                const int col = colb + ni * 8 + 2 * t + (e & 1);
                if (col < dv) a.h[(r0 + row) * vst + (size_t)h * dv + col] = acc[mi][ni][e] / rd[row];
            }
    }
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

} // namespace

static int g_tc_smem = -1; /* the device's shared memory per block (opt-in), once per process */

bool ggx_cuda_mlstm_tc_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("GGX_CUDA_MLSTM_TC");
        int ok = !(e && e[0] == '0');
        /* needs mma.sync tf32 (sm_80+) and ~85 KB of shared memory per block */
        int dev = 0, major = 0, smem = 0;
        if (ok && (cudaGetDevice(&dev) != cudaSuccess ||
                   cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
                   cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
                   major < 8 || (size_t)smem < ItCfg<64>::SMEM || (size_t)smem < OT_SMEM))
            ok = 0;
        g_tc_smem = smem;
        on = ok;
    }
    return on != 0;
}

size_t ggx_cuda_mlstm_tc_scratch_floats(int n_seqs, int max_len, int total_tokens, int nh, int dqk, int dv) {
    if (max_len < TL) return 0;
    return tc_layout(n_seqs, max_len / TL, total_tokens, nh, dqk, dv).total;
}

cudaError_t ggx_cuda_mlstm_chunkwise_tc(cudaStream_t st, const ggx_cuda_mlstm_args *a) {
    if (a->chunk != TL || !a->scratch || a->dqk > 256) return cudaErrorInvalidValue;
    const int max_chunks = a->max_len / TL;
    if (max_chunks < 1) return cudaSuccess;
    /* GGX_CUDA_MLSTM_ITD=128: rows of C per inter block (default 64: H100, 7B, 8192 tokens: 1.56 vs
     * 1.62 ms per layer for the whole mLSTM). Read once: a process's graphs all use one value. */
    static int it_d = -1;
    if (it_d < 0) {
        const char *ev = getenv("GGX_CUDA_MLSTM_ITD");
        it_d = ev && atoi(ev) == 128 && (size_t)g_tc_smem >= ItCfg<128>::SMEM ? 128 : 64;
    }
    static int attr_dev = -1; /* dynamic shared memory above 48 KB: once per device */
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (attr_dev != dev) {
        const cudaFuncAttribute at = cudaFuncAttributeMaxDynamicSharedMemorySize;
        if ((it_d == 128 &&
             (e = cudaFuncSetAttribute(tc_inter_kernel<128>, at, (int)ItCfg<128>::SMEM)) != cudaSuccess) ||
            (e = cudaFuncSetAttribute(tc_inter_kernel<64>, at, (int)ItCfg<64>::SMEM)) != cudaSuccess ||
            (e = cudaFuncSetAttribute(tc_out_kernel, at, (int)OT_SMEM)) != cudaSuccess)
            return e;
        attr_dev = dev;
    }
    const int T = a->total_tokens;
    const int vec_kv = a->dqk % 4 == 0 && a->dv % 4 == 0 && aligned16(a->k) && aligned16(a->v);
    const int vec_q = a->dqk % 4 == 0 && aligned16(a->q);
    GGX_LAUNCH(tc_gates_kernel, a->n_seqs * a->nh, 256, 0, st, *a, T, max_chunks);
    const int n_ct = (a->dv + IT_COLS - 1) / IT_COLS;
    if (it_d == 64) {
        dim3 gi((unsigned)a->nh, (unsigned)n_ct, (unsigned)(a->n_seqs * ((a->dqk + 63) / 64)));
        GGX_LAUNCH(tc_inter_kernel<64>, gi, 256, ItCfg<64>::SMEM, st, *a, T, max_chunks, vec_kv);
    } else {
        dim3 gi((unsigned)a->nh, (unsigned)n_ct, (unsigned)(a->n_seqs * ((a->dqk + 127) / 128)));
        GGX_LAUNCH(tc_inter_kernel<128>, gi, 256, ItCfg<128>::SMEM, st, *a, T, max_chunks, vec_kv);
    }
    dim3 gs((unsigned)max_chunks, (unsigned)a->nh, (unsigned)a->n_seqs);
    GGX_LAUNCH(tc_intra_kernel, gs, 256, 0, st, *a, T, max_chunks);
    dim3 go((unsigned)max_chunks, (unsigned)a->nh, (unsigned)a->n_seqs);
    GGX_LAUNCH(tc_out_kernel, go, 256, OT_SMEM, st, *a, T, max_chunks, vec_q);
    return cudaGetLastError();
}
