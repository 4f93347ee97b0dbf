/*
 * cuda_persist.cu — the persistent decode kernel (pk_kernel, sm_90): a run of consecutive decode
 * launches (the int8 matvecs and the mLSTM steps of a whole step at batch 1) as ONE launch.
 *
 * Why: at batch 1 every kernel of a step takes ~8-12 us more than its bytes at full bandwidth
 * (its ramp-up, its tail, the hand-over to the next kernel; docs/cuda.md "Speed"), ~6 kernels
 * per layer: 1.3 of q4_0's 2.7 ms per step. Here a grid of exactly the resident blocks walks
 * the launches ("stages") in order with a grid-wide barrier between them, and each block's
 * weights arrive through ONE ring of shared memory filled by TMA bulk copies that runs ahead
 * across stages: weights do not depend on activations, so while a block waits at a barrier (or
 * runs an mLSTM item) its copies of the next stages' tiles are already in flight, and the DRAM
 * never idles at a kernel boundary.
 *
 * How it is fed: while recording (ggx_cuda_pk_begin, by the backend for eligible decode graphs),
 * ggx_cuda_mv_ex and ggx_cuda_mlstm_recurrent append stages here instead of launching
 * (ggx_cuda_pk_add_mv / _mlstm); any other launch (ggx_cuda_launch) first flushes the queue as
 * one pk_kernel launch, so the order of the step's work never changes. The stage table goes to
 * device memory once per distinct content (a captured graph replays the same pointers).
 *
 * A matvec stage is mvq_kernel's arithmetic (int8 x quantized once per block, whole K; dp4a on
 * the quants; the same epilogues: norm scale, bias + soft cap, residual; side rows for the
 * gates): tiles of 8 rows (one per warp) x a K part (tiles <= PK_TILE_MAX bytes; the block
 * that owns a row group takes all its K parts in a row and keeps the sums in registers). Each
 * row's quants and scales are one bulk copy each into the tile's place in the ring, a byte ring
 * with PK_SLOTS mbarriers (tile n: slot n % PK_SLOTS, phase (n / PK_SLOTS) & 1). Every thread
 * walks the same tile sequence, so the ring offsets follow from it; thread 0 issues tiles while
 * ring bytes and slots are free, i.e. after every consumed tile.
 * An mLSTM stage is mlstm_step_kernel's item (head, 32 columns of C, sequence) with the same
 * arithmetic and order of sums, one item per block at a time; the last item of a head writes n,
 * m and the head norm (counter per head, as there). The matvec stage before it prefetches C
 * into L2.
 * Activations are read through L2 (__ldcg; the read-only path is not coherent within a launch).
 * Warp 8 of each block is the producer (its lane 0 issues the copies and waits on the "empty"
 * mbarriers the 8 consumer warps arrive on); the consumers sync among themselves with named
 * barrier 1, never with __syncthreads.
 *
 * Status (session 6, H100, 7B batch 1): correct (tests), but SLOWER than the kernels one by one,
 * so it is off by default (GGX_CUDA_PK=1 or ggx_cuda_set_persistent(1) turn it on): q4_0 3.48 vs
 * 2.74 ms/step, q8_0 4.74 vs 3.82 (same machine). GGX_CUDA_PK_DIAG (measurement only: wrong results) took it
 * apart (q4_0): without the grid barriers 2.76, also without the mLSTM items 2.49, also without
 * the x staging and the dot products 1.89 ms: the ring alone streams at 72% of the floor (1.36
 * ms; a plain TMA ring reads 3.1 TB/s on the same card: tests/bench/bench_stream_cuda.cu), and
 * every consumer stall (staging, barrier) drains it. docs/cuda.md, "The persistent decode
 * kernel".
 */
#include "cuda_common.h"
#include "cuda_mlstm_dev.cuh"
#include "cuda_mv_dev.cuh"

#include <stdlib.h>
#include <string.h>

int g_ggx_pk_pending = 0;

namespace {

constexpr int PK_CWARPS = MVQ_WARPS;          /* consumer warps; one producer warp more */
constexpr int PK_CTHREADS = PK_CWARPS * 32;
constexpr int PK_THREADS = PK_CTHREADS + 32;
constexpr int PK_SLOTS = 8;
constexpr int PK_TILE_MAX = 24 * 1024; /* bytes of one tile in the ring */
constexpr int PK_MAX_DQK = PK_CTHREADS; /* one n element per thread, 32 rows of C per warp */
constexpr int PK_MAX_COLS = 16384;     /* x staged whole (int8 + scales) */
constexpr int PK_MAX_TABLES = 64;      /* distinct stage tables kept (never freed: graphs use them) */

struct PkMv {
    MvLaunch a;      /* block_start / row_start number row groups of 8 rows */
    int type;
    int n_rg;        /* row groups */
    int kparts, kseg; /* K parts per row group; chunks per part (the last may be shorter) */
    int seg_q, seg_s; /* tile bytes per row: quants, scales (a 16-byte aligned superset) */
    int tile_bytes;
    int nes;         /* x slots per token (cols rounded up to 128) */
};
struct PkMl {
    ggx_cuda_mlstm_args a;
    ggx_cuda_mlstm_head_norm hn;
    int n_ct, n_items; /* 32-column tiles per head; items = n_ct x heads x sequences */
};
struct PkStage {
    int kind; /* 0 matvec, 1 mLSTM step */
    PkMv mv;
    PkMl ml;
};

/* an mLSTM item's shared memory */
struct PkMlSmem {
    float q[PK_MAX_DQK], k[PK_MAX_DQK];
    float num[PK_CWARPS][32];
    float qn[PK_CWARPS];
    int is_last;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

constexpr int PK_RPT = PK_MAX_DQK / PK_CWARPS; /* rows of C per warp in an mLSTM item */

/* A position in the byte ring: linear (L, for the space check) and its offset in the ring.
 * place() moves to where a tile of `size` bytes goes (the ring's start when it would not fit
 * before the end), advance() past it. The producer and every consumer walk the same sequence
 * of tiles, so they compute the same places. */
struct PkRing {
    uint64_t L;
    uint32_t off;
    __device__ __forceinline__ void place(uint32_t size, uint32_t ring) {
        if (off + size > ring) {
            L += ring - off;
            off = 0;
        }
    }
    __device__ __forceinline__ void advance(uint32_t size, uint32_t ring) {
        L += size;
        off += size;
        if (off == ring) off = 0;
    }
};

/* the consumer warps' barrier (named barrier 1: the producer warp never joins) */
__device__ __forceinline__ void pk_bar(void) { asm volatile("bar.sync 1, %0;" ::"n"(PK_CTHREADS) : "memory"); }

/* ggx_cuda_block_sum over the consumer warps (same order of sums) */
__device__ __forceinline__ float pk_block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    pk_bar();
    if (lane == 0) sh[warp] = v;
    pk_bar();
    v = lane < PK_CWARPS ? sh[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ void pk_wait(uint64_t *bar, uint32_t par) {
    asm volatile("{\n\t.reg .pred p;\n"
                 "PK_WAIT:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                 "@!p bra PK_WAIT;\n}" ::"r"(smem_addr(bar)),
                 "r"(par)
                 : "memory");
}

/* which matrix of a stage a block's row groups (increasing) fall in: at() moves on and says
 * whether the matrix changed (its fields are then read again) */
struct PkMatCursor {
    int mi = -1, start = 0, end = 0;
    __device__ __forceinline__ bool at(const MvLaunch &a, int rg) {
        bool moved = false;
        while (rg >= end && mi + 1 < a.n_mats) {
            mi++;
            start = a.block_start[mi];
            end = a.block_start[mi + 1];
            moved = true;
        }
        return moved;
    }
};

/* one range of a tile by one TMA bulk copy */
__device__ __forceinline__ void pk_copy(uint8_t *d, const uint8_t *src, uint32_t n, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(d)),
                 "l"(src), "r"(n), "r"(bar)
                 : "memory");
}

/* The producer (lane 0 of the producer warp): this block's tiles in order (stage, row group rg
 * = b, b + G, ..., K part kp), each at the next ring place, once the tiles occupying its bytes
 * (and its slot's previous tile) are consumed. A tile of whole rows is one copy of quants and one
 * of scales (from the 16-byte boundary below their start to the one above their end: weight
 * buffers carry 16 bytes of padding); a K part one of each per row. Everything per stage and per
 * matrix is read once (this thread's latency paces the ring). */
__device__ void pk_producer(const PkStage *st, int n_st, uint8_t *ring, uint32_t ring_bytes, uint64_t *full,
                            uint64_t *empty) {
    const int G = (int)gridDim.x;
    uint32_t n = 0, cons = 0;
    uint64_t tail = 0;
    PkRing pos = {0ull, 0u};
    uint64_t ends[PK_SLOTS]; /* linear ring end of tile k at k % PK_SLOTS */
    for (int s = 0; s < n_st; s++) {
        if (st[s].kind != 0) continue;
        const PkMv &m = st[s].mv;
        const MvLaunch &a = m.a;
        const int n_rg = m.n_rg;
        if ((int)blockIdx.x >= n_rg) continue;
        const int kparts = m.kparts, kseg = m.kseg, cols = a.cols;
        const uint32_t size = (uint32_t)m.tile_bytes, seg_q = (uint32_t)m.seg_q, seg_s = (uint32_t)m.seg_s;
        const enum ggx_type t = (enum ggx_type)m.type;
        const int W = t == GGX_TYPE_Q8_0 ? 16 : 32;
        const int n_chunks = cols / W;
        const size_t row_q = (size_t)n_chunks * 16, scb = ggx_cuda_sc_bytes(t), sc_row = (size_t)(cols / 32) * scb;
        PkMatCursor mc;
        int rows = 0;
        const uint8_t *w = nullptr, *sc = nullptr;
        for (int rg = (int)blockIdx.x; rg < n_rg; rg += G) {
            if (mc.at(a, rg)) {
                rows = a.rows[mc.mi];
                w = a.w[mc.mi];
                sc = w + ggx_cuda_qs_bytes(t, rows, cols);
            }
            const int r0 = (rg - mc.start) * 8, nr = rows - r0 < 8 ? rows - r0 : 8;
            for (int kp = 0; kp < kparts; kp++) {
                pos.place(size, ring_bytes);
                while (n - cons >= (uint32_t)PK_SLOTS || (cons < n && pos.L + size - tail > ring_bytes)) {
                    pk_wait(&empty[cons % PK_SLOTS], (cons / PK_SLOTS) & 1u);
                    tail = ends[cons % PK_SLOTS];
                    cons++;
                }
                uint8_t *dst = ring + pos.off;
                const uint32_t bar = smem_addr(&full[n % PK_SLOTS]);
                if (kparts == 1) {
                    const size_t s0 = (size_t)r0 * sc_row, a0 = s0 & ~(size_t)15;
                    const size_t a1 = (s0 + (size_t)nr * sc_row + 15) & ~(size_t)15;
                    const uint32_t qn = (uint32_t)((size_t)nr * row_q), sn = (uint32_t)(a1 - a0);
                    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(qn + sn)
                                 : "memory");
                    pk_copy(dst, w + (size_t)r0 * row_q, qn, bar);
                    pk_copy(dst + (size_t)8 * seg_q, sc + a0, sn, bar);
                } else {
                    const int kc0 = kp * kseg, kc1 = kc0 + kseg < n_chunks ? kc0 + kseg : n_chunks;
                    const uint32_t qb = (uint32_t)(kc1 - kc0) * 16;
                    const size_t b0 = (size_t)kc0 * W / 32, nb = (size_t)(kc1 - kc0) * W / 32;
                    uint32_t total = 0;
                    for (int r = 0; r < nr; r++) {
                        const size_t s0 = (size_t)(r0 + r) * sc_row + b0 * scb;
                        total += qb + (uint32_t)(((s0 + nb * scb + 15) & ~(size_t)15) - (s0 & ~(size_t)15));
                    }
                    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(total)
                                 : "memory");
                    for (int r = 0; r < nr; r++) {
                        const size_t s0 = (size_t)(r0 + r) * sc_row + b0 * scb;
                        const size_t a0 = s0 & ~(size_t)15, a1 = (s0 + nb * scb + 15) & ~(size_t)15;
                        pk_copy(dst + (size_t)r * seg_q, w + (size_t)(r0 + r) * row_q + (size_t)kc0 * 16, qb, bar);
                        pk_copy(dst + (size_t)8 * seg_q + (size_t)r * seg_s, sc + a0, (uint32_t)(a1 - a0), bar);
                    }
                }
                ends[n % PK_SLOTS] = pos.L + size;
                pos.advance(size, ring_bytes);
                n++;
            }
        }
    }
}

/* grid-wide barrier of the consumer warps: every block's writes before it are visible to every
 * block after it */
__device__ __forceinline__ void pk_grid_sync(unsigned *ctr, unsigned &target) {
    pk_bar();
    target += gridDim.x;
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(ctr, 1u);
        unsigned v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory");
        } while (v < target);
    }
    pk_bar();
}

/* x (1 token, after the launch's transform) quantized like mvq_stage_x, whole K, with four
 * float4 loads per thread in flight at a time (mvq_stage_x's loop waits for one at a time) */
__device__ __forceinline__ void pk_stage_x(const MvLaunch &a, int4 *xq, float2 *xs, float (&ss)[1]) {
    const int tid = threadIdx.x, n4 = a.cols / 4;
    for (int base = 0; base < n4; base += 4 * PK_CTHREADS) {
        float4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = base + u * PK_CTHREADS + tid;
            v[u] = i < n4 ? mv_x4<1, false>(a, 0, 4 * i, ss) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = base + u * PK_CTHREADS + tid;
            mvq_quant4(v[u], i, i < n4, xq, 0, xs, 0);
        }
    }
}

/* mv_block_ss over the consumer warps */
__device__ __forceinline__ void pk_block_ss(const MvLaunch &a, float (&ss)[1]) {
    if (a.xmode != GGX_CUDA_X_RMS_NORM) return;
    __shared__ float red[PK_CWARPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float v = warp_sum(ss[0]);
    if (lane == 0) red[warp] = v;
    pk_bar();
    float t = 0.0f;
    for (int w = 0; w < PK_CWARPS; w++) t += red[w];
    ss[0] = t;
}

/* mv_side_row (1 token) over the consumer warps */
__device__ __forceinline__ void pk_side_row(const MvLaunch &a, int r) {
    __shared__ float red[32];
    int si = 0;
    while (si + 1 < a.n_side && r >= a.srows[si]) r -= a.srows[si++];
    const float *w = a.sw[si] + (size_t)r * a.cols;
    float acc = 0.0f, ss[1] = {0.0f};
#pragma unroll 4
    for (int e = 4 * (int)threadIdx.x; e < a.cols; e += 4 * PK_CTHREADS) {
        const float4 wv = __ldg(reinterpret_cast<const float4 *>(w + e));
        const float4 xv = mv_x4<1, false>(a, 0, e, ss);
        acc = fmaf(wv.x, xv.x, acc);
        acc = fmaf(wv.y, xv.y, acc);
        acc = fmaf(wv.z, xv.z, acc);
        acc = fmaf(wv.w, xv.w, acc);
    }
    float v = pk_block_sum(acc, red);
    const float q = pk_block_sum(ss[0], red);
    if (threadIdx.x == 0) {
        if (a.xmode == GGX_CUDA_X_RMS_NORM) v *= 1.0f / sqrtf(q / (float)a.cols + a.eps);
        if (a.sepi[si]) {
            v += a.sbias[si] ? a.sbias[si][r] : 0.0f;
            v = ggx_cuda_soft_cap_v(v, a.scap[si]);
        }
        a.sy[si][r] = v;
    }
}

/* the consumer state every consumer thread keeps: tiles consumed, the ring position after them */
struct PkCons {
    uint32_t n;
    PkRing pos;
};

/* one matvec stage's tiles (1 token). The stage's fields are read into registers once (stores
 * through y could alias the table for the compiler), and each row group's epilogue operands
 * (residual, bias) are loaded before its tiles are waited for, so their L2 latency overlaps. */
template <int T>
__device__ __forceinline__ void pk_mv_tiles(const PkMv &m, const float inv, const int4 *xq, const float2 *xs,
                                            uint8_t *ring, uint32_t ring_bytes, uint64_t *full, uint64_t *empty,
                                            PkCons &c, int diag) {
    constexpr int W = Tr<T>::W;
    const MvLaunch &a = m.a;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int G = (int)gridDim.x;
    const int cols = a.cols, n_chunks = cols / W;
    const int n_rg = m.n_rg, kparts = m.kparts, kseg = m.kseg, nes = m.nes;
    const size_t seg_q = (size_t)m.seg_q, seg_s = (size_t)m.seg_s;
    const size_t scb = ggx_cuda_sc_bytes((enum ggx_type)T), sc_row = (size_t)(cols / 32) * scb;
    const uint32_t size = (uint32_t)m.tile_bytes;
    PkMatCursor mc;
    int rows = 0, epi = 0;
    float cap = 0.0f, *y = nullptr;
    const float *res = nullptr, *bias = nullptr;
    for (int rg = (int)blockIdx.x; rg < n_rg; rg += G) {
        if (mc.at(a, rg)) {
            rows = a.rows[mc.mi];
            epi = a.epi[mc.mi];
            cap = a.cap[mc.mi];
            y = a.y[mc.mi];
            res = a.res[mc.mi];
            bias = a.bias[mc.mi];
        }
        const int r0 = (rg - mc.start) * 8, row = r0 + warp;
        float add = 0.0f, badd = 0.0f; /* residual and bias of this warp's row (lane 0) */
        if (lane == 0 && row < rows) {
            if (res) add = __ldcg(res + row);
            if (epi && bias) badd = bias[row];
        }
        float acc[1][1] = {{0.0f}};
        for (int kp = 0; kp < kparts; kp++) {
            c.pos.place(size, ring_bytes);
            const uint8_t *tile = ring + c.pos.off;
            pk_wait(&full[c.n % PK_SLOTS], (c.n / PK_SLOTS) & 1u);
            const int kc0 = kp * kseg, kc1 = kc0 + kseg < n_chunks ? kc0 + kseg : n_chunks;
            if (row < rows && !(diag & 4)) {
                const uint4 *wq = reinterpret_cast<const uint4 *>(tile + (size_t)warp * seg_q);
                /* scales: one range for the tile (whole rows) or one per row (K parts) */
                const size_t s0 = (size_t)row * sc_row + (size_t)kc0 * W / 32 * scb;
                const uint8_t *srow = kparts == 1
                                          ? tile + 8 * seg_q + (((size_t)r0 * sc_row) & 15) + (size_t)warp * sc_row
                                          : tile + 8 * seg_q + (size_t)warp * seg_s + (s0 & 15);
#pragma unroll 4
                for (int cl = kc0 + lane; cl < kc1; cl += 32) {
                    uint4 q[1];
                    typename MvqScale<T>::type dw[1];
                    q[0] = wq[cl - kc0];
                    if constexpr (T == GGX_TYPE_Q4_X)
                        dw[0] = __half22float2(reinterpret_cast<const __half2 *>(srow)[cl - kc0]);
                    else if constexpr (T == GGX_TYPE_Q4_0)
                        dw[0] = __half2float(reinterpret_cast<const __half *>(srow)[cl - kc0]);
                    else
                        dw[0] = __half2float(reinterpret_cast<const __half *>(srow)[(cl - kc0) >> 1]);
                    mvq_dot<T, 1, 1>(q, dw, xq, xs, nes, cl, 1, acc);
                }
            }
            __syncwarp();
            if (lane == 0) /* this warp is done with the tile */
                asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(&empty[c.n % PK_SLOTS]))
                             : "memory");
            c.pos.advance(size, ring_bytes);
            c.n++;
        }
        const float v = warp_sum(acc[0][0]);
        if (lane == 0 && row < rows) {
            float o = v * inv;
            if (epi) o = ggx_cuda_soft_cap_v(o + badd, cap);
            y[row] = o + add;
        }
    }
}

/* L2 prefetch of this block's share of an mLSTM stage's C (read right after the barrier) */
__device__ __forceinline__ void pk_prefetch_c(const PkMl &m) {
    const ggx_cuda_mlstm_args &a = m.a;
    const uint64_t bytes = (uint64_t)a.nh * a.dqk * a.dv * sizeof(float);
    for (int s = 0; s < a.n_seqs; s++) {
        const uint8_t *c = reinterpret_cast<const uint8_t *>(a.state_ptrs[3 * s]);
        if (((uintptr_t)c & 15) || a.seq_len[s] <= 0) continue;
        const uint64_t n16 = bytes / 16;
        const uint64_t lo = n16 * blockIdx.x / gridDim.x, hi = n16 * (blockIdx.x + 1) / gridDim.x;
        if (hi > lo)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c + lo * 16), "r"((uint32_t)((hi - lo) * 16))
                         : "memory");
    }
}

/* one mLSTM decode item: mlstm_step_kernel<1, 8, RPT>'s arithmetic (VEC 1) for (tile, head,
 * sequence), over the consumer warps */
__device__ __forceinline__ void pk_ml_item(const PkMl &m, int item, PkMlSmem &sm) {
    const ggx_cuda_mlstm_args &a = m.a;
    const ggx_cuda_mlstm_head_norm &hnf = m.hn;
    const int tile = item % m.n_ct, h = (item / m.n_ct) % a.nh, s = item / (m.n_ct * a.nh);
    if (a.seq_len[s] <= 0) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nh = a.nh, dqk = a.dqk, dv = a.dv;
    const int j0 = tile * 32 + lane;
    const bool jv = j0 < dv, iv = tid < dqk;
    const int nr = jv ? (dqk - warp + PK_CWARPS - 1) / PK_CWARPS : 0;
    float *Cp = a.state_ptrs[3 * s + 0] + (size_t)h * dqk * dv;
    float *np = a.state_ptrs[3 * s + 1] + (size_t)h * dqk;
    float *mp = a.state_ptrs[3 * s + 2] + h;
    float *Cb = Cp + (size_t)warp * dv + j0;
    const int rstep = PK_CWARPS * dv;
    float c[PK_RPT];
#pragma unroll
    for (int r = 0; r < PK_RPT; r++) c[r] = r < nr ? __ldcg(Cb + (size_t)r * rstep) : 0.0f;
    float n_own = iv ? __ldcg(np + tid) : 0.0f;
    const float m_old = __ldcg(mp);
    const int off = a.seq_off[s];
    const size_t v_base = (size_t)off * nh * dv + (size_t)h * dv;
    float q_own = 0.0f, k_own = 0.0f;
    if (iv) {
        const size_t qk = ((size_t)off * nh + h) * dqk + tid;
        q_own = __ldcg(a.q + qk) * (1.0f / sqrtf((float)dqk));
        k_own = __ldcg(a.k + qk);
    }
    const float vj = jv ? __ldcg(a.v + v_base + j0) : 0.0f;
    const float it = __ldcg(a.ig + (size_t)off * nh + h), ft = __ldcg(a.fg + (size_t)off * nh + h);
    const float lf = logsigmoidf_(ft);
    const float m_new = fmaxf(lf + m_old, it);
    const float fp = expf(lf + m_old - m_new), ip = expf(it - m_new);
    if (iv) {
        sm.q[tid] = q_own;
        sm.k[tid] = k_own;
    }
    n_own = fmaf(fp, n_own, ip * k_own);
    float qn = q_own * n_own;
    pk_bar();
    float num = 0.0f;
#pragma unroll
    for (int r = 0; r < PK_RPT; r++) {
        const int i = warp + PK_CWARPS * r;
        if (i < dqk) {
            const float kk = ip * sm.k[i], qq = sm.q[i];
            c[r] = fmaf(fp, c[r], kk * vj);
            num = fmaf(qq, c[r], num);
        }
    }
    qn = warp_sum(qn);
    sm.num[warp][lane] = num;
    if (lane == 0) sm.qn[warp] = qn;
    pk_bar();
    if (warp == 0) {
        float tot = 0.0f, qnt = 0.0f;
        for (int w = 0; w < PK_CWARPS; w++) {
            tot += sm.num[w][lane];
            qnt += sm.qn[w];
        }
        const float den = fmaxf(fabsf(qnt), expf(-m_new)) + a.eps;
        if (jv) a.h[v_base + j0] = tot / den;
        __threadfence(); /* this item's h visible to the last item of the head before it counts */
        int prev = 0;
        if (lane == 0) prev = atomicAdd(&a.counters[s * nh + h], 1);
        if (lane == 0) sm.is_last = prev == m.n_ct - 1;
    }
#pragma unroll
    for (int r = 0; r < PK_RPT; r++)
        if (r < nr) Cb[(size_t)r * rstep] = c[r];
    pk_bar(); /* is_last */
    if (!sm.is_last) return;
    mlstm_last_block<PK_CTHREADS>(a, hnf, s, h, tid, np, mp, n_own, m_new, v_base,
                                  [&](float v) { return pk_block_sum(v, sm.qn); });
}

#endif

/* Warps 0..7 consume (x staging, tiles, epilogues, mLSTM items, grid barriers), warp 8 produces
 * (its lane 0 issues the tiles). bar: [0] the grid barrier's count, [1] blocks done (the last
 * resets both for the next launch). */
__global__ void __launch_bounds__(PK_THREADS, 2)
    pk_kernel(const PkStage *__restrict__ st, int n_st, unsigned *bar, uint32_t x_bytes, uint32_t ring_bytes, int diag) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ int4 pk_smem[];
    __shared__ __align__(8) uint64_t full[PK_SLOTS], empty[PK_SLOTS];
    __shared__ PkMlSmem msm;
    uint8_t *ring = reinterpret_cast<uint8_t *>(pk_smem) + x_bytes;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == PK_CTHREADS) {
        for (int i = 0; i < PK_SLOTS; i++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&full[i])) : "memory");
            asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(&empty[i])), "n"(PK_CWARPS)
                         : "memory");
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (warp == PK_CWARPS) { /* weights only: no PDL wait needed */
        if (lane == 0) pk_producer(st, n_st, ring, ring_bytes, full, empty);
        return;
    }
    GGX_PDL_ENTER();
    unsigned target = 0;
    PkCons c = {0u, {0ull, 0u}};
    for (int s = 0; s < n_st; s++) {
        if (s > 0 && !(diag & 1)) pk_grid_sync(bar, target);
        const PkStage &S = st[s];
        if (S.kind == 1) {
            if (diag & 2) continue;
            for (int item = (int)blockIdx.x; item < S.ml.n_items; item += (int)gridDim.x) {
                pk_ml_item(S.ml, item, msm);
                pk_bar(); /* msm reused by the next item */
            }
            continue;
        }
        const PkMv &m = S.mv;
        const MvLaunch &a = m.a;
        int4 *xq = pk_smem;
        float2 *xs = reinterpret_cast<float2 *>(pk_smem + m.nes / 16);
        float ss[1] = {0.0f};
        if (!(diag & 8)) pk_stage_x(a, xq, xs, ss);
        pk_bar();
        pk_block_ss(a, ss);
        const float inv = a.xmode == GGX_CUDA_X_RMS_NORM ? 1.0f / sqrtf(ss[0] / (float)a.cols + a.eps) : 1.0f;
        if ((int)blockIdx.x < a.side_rows && !(diag & 16)) pk_side_row(a, (int)blockIdx.x);
        if (threadIdx.x == 0 && s + 1 < n_st && st[s + 1].kind == 1) pk_prefetch_c(st[s + 1].ml);
        if (m.type == GGX_TYPE_Q4_0)
            pk_mv_tiles<GGX_TYPE_Q4_0>(m, inv, xq, xs, ring, ring_bytes, full, empty, c, diag);
        else if (m.type == GGX_TYPE_Q8_0)
            pk_mv_tiles<GGX_TYPE_Q8_0>(m, inv, xq, xs, ring, ring_bytes, full, empty, c, diag);
        else
            pk_mv_tiles<GGX_TYPE_Q4_X>(m, inv, xq, xs, ring, ring_bytes, full, empty, c, diag);
    }
    /* every block is past its last barrier once all have counted here: reset for the next launch */
    pk_bar();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(bar + 1, 1u) == gridDim.x - 1) {
            bar[0] = 0;
            bar[1] = 0;
            __threadfence();
        }
    }
#else
    (void)st;
    (void)n_st;
    (void)bar;
    (void)x_bytes;
    (void)ring_bytes;
    (void)diag;
#endif
}
/* ------------------------------------------------------------------------------ host side */

struct PkTable {
    uint64_t hash;
    int n;
    PkStage *dev;
    unsigned *bar;
};

struct PkHost {
    int mode = -1;      /* 0 off (default), 1 eligible graphs, 2 every 1-token graph (tests) */
    bool ok = false;    /* sm_90, occupancy of 2 blocks per SM */
    int grid = 0;
    int smem = 0;       /* dynamic shared memory per block */
    bool rec = false;
    cudaStream_t s = nullptr;
    PkStage *q = nullptr;
    int n = 0, cap = 0;
    uint32_t x_bytes = 0;  /* the queue's largest x staging ... */
    int tile_max = 0;      /* ... and tile: both must fit the shared memory together */
    int tile_limit = PK_TILE_MAX; /* GGX_CUDA_PK_TILE (bytes) */
    int diag = 0;          /* GGX_CUDA_PK_DIAG (measurements only, wrong results): 1 no grid
                            * barriers, 2 no mLSTM items, 4 no dot products, 8 no x staging,
                            * 16 no side rows */
    PkTable tabs[PK_MAX_TABLES];
    int n_tabs = 0;
    long long launches = 0;
} g_pk;

uint64_t pk_fnv(const void *p, size_t n) {
    const uint8_t *b = static_cast<const uint8_t *>(p);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

PkStage *pk_push(void) {
    if (g_pk.n == g_pk.cap) {
        const int nc = g_pk.cap ? 2 * g_pk.cap : 256;
        PkStage *q = static_cast<PkStage *>(realloc(g_pk.q, sizeof(PkStage) * (size_t)nc));
        if (!q) return nullptr;
        g_pk.q = q;
        g_pk.cap = nc;
    }
    PkStage *e = &g_pk.q[g_pk.n];
    memset(e, 0, sizeof *e);
    return e;
}

} // namespace

/* ggx_cuda_pk_* (cuda_common.h) */

int ggx_cuda_pk_init(void) {
    if (g_pk.mode >= 0) return g_pk.ok;
    const char *e = getenv("GGX_CUDA_PK");
    g_pk.mode = e && *e ? atoi(e) : 0; /* off by default: slower than the kernels one by one so far */
    int dev = 0, major = 0, n_sm = 0, optin = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess && major >= 9) {
        const char *sm = getenv("GGX_CUDA_PK_SMEM"), *tl = getenv("GGX_CUDA_PK_TILE"), *dg = getenv("GGX_CUDA_PK_DIAG");
        if (tl && atoi(tl) >= 4096) g_pk.tile_limit = atoi(tl);
        if (dg) g_pk.diag = atoi(dg);
        g_pk.smem = sm && atoi(sm) >= 48 * 1024 ? atoi(sm) : 100 * 1024;
        const int static_b = (int)(sizeof(PkMlSmem) + 8 * PK_SLOTS + 256 + 64);
        if (g_pk.smem > optin - static_b) g_pk.smem = optin - static_b;
        int per_sm = 0;
        if (cudaFuncSetAttribute(pk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, g_pk.smem) == cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pk_kernel, PK_THREADS, (size_t)g_pk.smem) ==
                cudaSuccess &&
            per_sm >= 1) {
            g_pk.grid = per_sm * n_sm;
            g_pk.ok = true;
        }
    }
    (void)cudaGetLastError();
    return g_pk.ok;
}

int ggx_cuda_pk_set_mode(int mode) {
    ggx_cuda_pk_init();
    if (mode >= 0) g_pk.mode = mode > 2 ? 0 : mode; /* (negative: a query) */
    return g_pk.ok ? g_pk.mode : 0;
}

int ggx_cuda_pk_mode(void) { return g_pk.ok ? g_pk.mode : 0; }
long long ggx_cuda_pk_launches(void) { return g_pk.launches; }

void ggx_cuda_pk_begin(cudaStream_t s) {
    g_pk.rec = g_pk.ok && g_pk.mode > 0 && g_pk.n_tabs < PK_MAX_TABLES;
    g_pk.s = s;
    g_pk.n = 0;
    g_pk.x_bytes = 0;
    g_pk.tile_max = 0;
    g_ggx_pk_pending = 0;
}

cudaError_t ggx_cuda_pk_flush(void) {
    g_ggx_pk_pending = 0;
    if (g_pk.n == 0) return cudaSuccess;
    const int n = g_pk.n;
    const uint32_t xb = (g_pk.x_bytes + 127) & ~127u;
    g_pk.n = 0;
    g_pk.x_bytes = 0;
    g_pk.tile_max = 0;
    const uint64_t h = pk_fnv(g_pk.q, sizeof(PkStage) * (size_t)n);
    PkTable *t = nullptr;
    for (int i = 0; i < g_pk.n_tabs && !t; i++)
        if (g_pk.tabs[i].hash == h && g_pk.tabs[i].n == n) t = &g_pk.tabs[i];
    if (!t) {
        /* the first (eager) run of a layout uploads its table; the capture of the same layout
         * finds it here, so no copy is captured into the graph */
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing(g_pk.s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone)
            return cudaErrorStreamCaptureUnsupported;
        if (g_pk.n_tabs >= PK_MAX_TABLES) return cudaErrorMemoryAllocation;
        PkTable nt = {h, n, nullptr, nullptr};
        cudaError_t e = cudaMalloc(&nt.dev, sizeof(PkStage) * (size_t)n);
        if (e == cudaSuccess) e = cudaMalloc(&nt.bar, 2 * sizeof(unsigned));
        if (e == cudaSuccess) e = cudaMemset(nt.bar, 0, 2 * sizeof(unsigned));
        if (e == cudaSuccess) e = cudaMemcpy(nt.dev, g_pk.q, sizeof(PkStage) * (size_t)n, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            cudaFree(nt.dev);
            cudaFree(nt.bar);
            return e;
        }
        g_pk.tabs[g_pk.n_tabs] = nt;
        t = &g_pk.tabs[g_pk.n_tabs++];
    }
    g_pk.launches++;
    return ggx_cuda_launch(pk_kernel, dim3((unsigned)g_pk.grid), dim3(PK_THREADS), (size_t)g_pk.smem, g_pk.s,
                           (const PkStage *)t->dev, n, t->bar, xb, (uint32_t)g_pk.smem - xb, g_pk.diag);
}

cudaError_t ggx_cuda_pk_end(bool run) {
    cudaError_t e = run ? ggx_cuda_pk_flush() : cudaSuccess;
    g_pk.rec = false;
    g_pk.n = 0;
    g_ggx_pk_pending = 0;
    return e;
}

bool ggx_cuda_pk_add_mv(enum ggx_type t, const ggx_cuda_mv_mat *mats, int n_mats, const ggx_cuda_mv_x *xs, int cols,
                        int n_tok) {
    if (!g_pk.rec || n_tok != 1 || cols % 32 || cols > PK_MAX_COLS || n_mats < 1 ||
        n_mats > GGX_CUDA_MV_MAX_MATS || xs->n_side > GGX_CUDA_MV_MAX_SIDE)
        return false;
    if (t != GGX_TYPE_Q8_0 && t != GGX_TYPE_Q4_0 && t != GGX_TYPE_Q4_X) return false;
    if (xs->mode == GGX_CUDA_X_RMS_NORM && !xs->c) return false;
    const int W = t == GGX_TYPE_Q8_0 ? 16 : 32;
    const int n_chunks = cols / W;
    const int scb = (int)ggx_cuda_sc_bytes(t);
    /* K parts: tiles of 8 rows within PK_TILE_MAX; parts of whole 32-blocks (an even number of
     * q8_0 chunks) */
    const size_t whole = (size_t)8 * ((size_t)n_chunks * 16 + (size_t)(cols / 32) * scb + 16);
    int kparts = (int)((whole + g_pk.tile_limit - 1) / g_pk.tile_limit);
    int kseg = n_chunks; /* whole rows: one range per tile (pk_producer) */
    if (kparts > 1) {
        kseg = (n_chunks + kparts - 1) / kparts;
        kseg = (kseg + 1) & ~1;
        kparts = (n_chunks + kseg - 1) / kseg;
    }
    const int nbmax = kseg * W / 32;
    const int seg_q = kseg * 16, seg_s = (nbmax * scb + 15) / 16 * 16 + 16;
    const int tile_bytes = (8 * (seg_q + seg_s) + 127) / 128 * 128;
    const int nes = (cols + 127) / 128 * 128;
    const uint32_t xb = (uint32_t)(nes + nes / 32 * 8);
    const uint32_t xb_max = xb > g_pk.x_bytes ? xb : g_pk.x_bytes;
    const int tile_max = tile_bytes > g_pk.tile_max ? tile_bytes : g_pk.tile_max;
    if ((int)((xb_max + 127) & ~127u) + tile_max > g_pk.smem) return false;
    if (xs->n_side && xs->mode != GGX_CUDA_X_RMS_NORM) return false; /* (the backend's rule) */
    int side_rows = 0;
    for (int k = 0; k < xs->n_side; k++) {
        const ggx_cuda_mv_mat &sm = xs->side[k];
        if (sm.rows < 1 || sm.rows > GGX_CUDA_MV_SIDE_ROWS || sm.res || cols % 4) return false;
        side_rows += sm.rows;
    }
    if (side_rows > g_pk.grid) return false;
    PkStage *e = pk_push();
    if (!e) return false;
    e->kind = 0;
    PkMv &m = e->mv;
    MvLaunch &a = m.a;
    a.n_mats = n_mats;
    a.x = xs->a;
    a.xb = xs->b;
    a.xc = xs->c;
    a.xmode = xs->mode;
    a.eps = xs->eps;
    a.cols = cols;
    a.n_tok = 1;
    int nb = 0;
    for (int k = 0; k < n_mats; k++) {
        a.w[k] = static_cast<const uint8_t *>(mats[k].w);
        a.y[k] = mats[k].y;
        a.rows[k] = mats[k].rows;
        a.epi[k] = mats[k].epi;
        a.cap[k] = mats[k].cap;
        a.bias[k] = mats[k].bias;
        a.res[k] = mats[k].res;
        a.block_start[k] = nb;
        a.row_start[k] = a.total_rows;
        a.total_rows += mats[k].rows;
        nb += (mats[k].rows + 7) / 8;
    }
    a.block_start[n_mats] = nb;
    a.n_side = xs->n_side;
    for (int k = 0; k < xs->n_side; k++) {
        const ggx_cuda_mv_mat &sm = xs->side[k];
        a.sw[k] = static_cast<const float *>(sm.w);
        a.sy[k] = sm.y;
        a.srows[k] = sm.rows;
        a.sepi[k] = sm.epi;
        a.scap[k] = sm.cap;
        a.sbias[k] = sm.bias;
    }
    a.side_rows = side_rows;
    m.type = (int)t;
    m.n_rg = nb;
    m.kparts = kparts;
    m.kseg = kseg;
    m.seg_q = seg_q;
    m.seg_s = seg_s;
    m.tile_bytes = tile_bytes;
    m.nes = nes;
    g_pk.x_bytes = xb_max;
    g_pk.tile_max = tile_max;
    g_pk.n++;
    g_ggx_pk_pending = 1;
    return true;
}

bool ggx_cuda_pk_add_mlstm(const ggx_cuda_mlstm_args *a, const ggx_cuda_mlstm_head_norm *hn) {
    if (!g_pk.rec || a->max_len != 1 || a->dqk < 1 || a->dqk > PK_MAX_DQK || a->dv < 1 || a->n_seqs < 1) return false;
    PkStage *e = pk_push();
    if (!e) return false;
    e->kind = 1;
    PkMl &m = e->ml;
    m.a = *a;
    m.hn = hn ? *hn : ggx_cuda_mlstm_head_norm{nullptr, nullptr, 0.0f};
    m.n_ct = (a->dv + 31) / 32;
    m.n_items = m.n_ct * a->nh * a->n_seqs;
    g_pk.n++;
    g_ggx_pk_pending = 1;
    return true;
}
