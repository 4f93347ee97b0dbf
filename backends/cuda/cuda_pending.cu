/*
 * cuda_pending.cu — the pending buffers of the deferred C stores (cuda_common.h, "deferred C
 * stores"): one per (state, layer) that a deferring decode step has run on, found by the
 * layer's C pointer; which of them may hold updates not yet in C; applying them before anyone
 * else touches the state.
 *
 * The host cannot see the device's pending counts (a replayed graph changes them), so it keeps
 * a flag per entry instead: set when a deferring step is enqueued for it, cleared when a flush
 * is enqueued. A flush of a flagged entry is a kernel that does nothing for a head with no
 * pending token, then a memset of the counts; both stream-ordered, so a graph launched after
 * it sees C complete.
 *
 * Buffers come from chunks of 32 equal slots (one device allocation each, through the
 * backend's allocator so that they count as its memory); an empty chunk is given back.
 */
#include "cuda_pending.h"

#include <stdlib.h>
#include <string.h>

namespace {

constexpr int SLOTS = 32;

bool overlaps(const PendEntry &e, const char *lo, size_t n) {
    const char *c = reinterpret_cast<const char *>(e.C);
    return c < lo + n && lo < c + e.c_bytes;
}

/* first entry whose C is >= p (entries sorted by C) */
int lower(const PendRegistry *r, const void *p) {
    int a = 0, b = r->n;
    while (a < b) {
        const int m = (a + b) / 2;
        if (reinterpret_cast<const char *>(r->e[m].C) < static_cast<const char *>(p)) a = m + 1;
        else b = m;
    }
    return a;
}

/* room for one more element in a realloc'ed array of *cap (doubling from `first`) */
template <typename T>
ggx_status reserve_one(T **arr, int n, int *cap, int first) {
    if (n < *cap) return GGX_OK;
    const int c = *cap ? 2 * *cap : first;
    void *p = realloc(*arr, (size_t)c * sizeof **arr);
    if (!p) return ggx_fail(GGX_ERR_NOMEM, "cuda: mLSTM pending buffers: out of memory");
    *arr = static_cast<T *>(p);
    *cap = c;
    return GGX_OK;
}

ggx_status slot_get(PendRegistry *r, size_t floats, float **out) {
    for (int i = 0; i < r->nch; i++) {
        PendChunk &ch = r->ch[i];
        if (ch.slot_floats != floats || ch.used == 0xffffffffu) continue;
        const int s = __builtin_ctz(~ch.used);
        ch.used |= 1u << s;
        *out = ch.base + (size_t)s * floats;
        return GGX_OK;
    }
    ggx_status st = reserve_one(&r->ch, r->nch, &r->capch, 8);
    if (st != GGX_OK) return st;
    void *base = nullptr;
    st = r->alloc(r->actx, (size_t)SLOTS * floats * sizeof(float), &base);
    if (st != GGX_OK) return st;
    PendChunk &ch = r->ch[r->nch++];
    ch.base = static_cast<float *>(base);
    ch.slot_floats = floats;
    ch.used = 1u;
    *out = ch.base;
    return GGX_OK;
}

void slot_put(PendRegistry *r, float *P) {
    for (int i = 0; i < r->nch; i++) {
        PendChunk &ch = r->ch[i];
        if (P < ch.base || P >= ch.base + (size_t)SLOTS * ch.slot_floats) continue;
        ch.used &= ~(1u << (int)((size_t)(P - ch.base) / ch.slot_floats));
        if (!ch.used) {
            r->release(r->actx, ch.base);
            r->ch[i] = r->ch[--r->nch];
        }
        return;
    }
}

ggx_status flush_entry(PendRegistry *r, cudaStream_t s, PendEntry &e) {
    if (!e.maybe) return GGX_OK;
    GGX_CU_TRY(ggx_cuda_mlstm_flush(s, e.C, e.P, e.nh, e.dqk, e.dv), "mLSTM pending flush");
    GGX_CU_TRY(cudaMemsetAsync(e.P, 0, sizeof(int) * (size_t)e.nh, s), "mLSTM pending flush");
    e.maybe = false;
    r->n_maybe--;
    return GGX_OK;
}

} // namespace

void ggx_cuda_pend_init(PendRegistry *r, void *actx, PendAllocFn alloc, PendReleaseFn release) {
    memset(r, 0, sizeof *r);
    r->actx = actx;
    r->alloc = alloc;
    r->release = release;
}

void ggx_cuda_pend_free(PendRegistry *r) {
    for (int i = 0; i < r->nch; i++) r->release(r->actx, r->ch[i].base);
    free(r->ch);
    free(r->e);
    memset(r, 0, sizeof *r);
}

ggx_status ggx_cuda_pend_get(PendRegistry *r, cudaStream_t s, float *C, int nh, int dqk, int dv, float **P) {
    const int i = lower(r, C);
    if (i < r->n && r->e[i].C == C && r->e[i].nh == nh && r->e[i].dqk == dqk && r->e[i].dv == dv) {
        *P = r->e[i].P;
        return GGX_OK;
    }
    if (i < r->n && r->e[i].C == C) { /* same memory, other sizes: the old entry is stale */
        if (r->e[i].maybe) r->n_maybe--;
        slot_put(r, r->e[i].P);
        memmove(&r->e[i], &r->e[i + 1], (size_t)(r->n - i - 1) * sizeof *r->e);
        r->n--;
    }
    ggx_status st = reserve_one(&r->e, r->n, &r->cap, 64);
    if (st != GGX_OK) return st;
    float *buf = nullptr;
    st = slot_get(r, ggx_cuda_pend_layout_of(nh, dqk, dv).total, &buf);
    if (st != GGX_OK) return st;
    GGX_CU_TRY(cudaMemsetAsync(buf, 0, sizeof(int) * (size_t)nh, s), "mLSTM pending buffer");
    memmove(&r->e[i + 1], &r->e[i], (size_t)(r->n - i) * sizeof *r->e);
    r->n++;
    PendEntry &e = r->e[i];
    e.C = C;
    e.c_bytes = sizeof(float) * (size_t)nh * dqk * dv;
    e.P = buf;
    e.nh = nh;
    e.dqk = dqk;
    e.dv = dv;
    e.maybe = false;
    *P = buf;
    return GGX_OK;
}

void ggx_cuda_pend_mark(PendRegistry *r, const float *C) {
    const int i = lower(r, C);
    if (i < r->n && r->e[i].C == C && !r->e[i].maybe) {
        r->e[i].maybe = true;
        r->n_maybe++;
    }
}

ggx_status ggx_cuda_pend_flush(PendRegistry *r, cudaStream_t s, const void *lo, size_t n) {
    if (!r->n_maybe || !lo || !n) return GGX_OK;
    const char *p = static_cast<const char *>(lo);
    /* entries overlapping [p, p + n): from the last one starting before p (it may reach in) */
    int i = lower(r, p);
    if (i > 0) i--;
    for (; i < r->n && reinterpret_cast<const char *>(r->e[i].C) < p + n; i++)
        if (r->e[i].maybe && overlaps(r->e[i], p, n)) {
            ggx_status st = flush_entry(r, s, r->e[i]);
            if (st != GGX_OK) return st;
        }
    return GGX_OK;
}

void ggx_cuda_pend_drop(PendRegistry *r, const void *lo, size_t n) {
    const char *p = static_cast<const char *>(lo);
    int i = lower(r, p);
    if (i > 0 && overlaps(r->e[i - 1], p, n)) i--;
    int j = i;
    while (j < r->n && overlaps(r->e[j], p, n)) {
        if (r->e[j].maybe) r->n_maybe--;
        slot_put(r, r->e[j].P);
        j++;
    }
    memmove(&r->e[i], &r->e[j], (size_t)(r->n - j) * sizeof *r->e);
    r->n -= j - i;
}
