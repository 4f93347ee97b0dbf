/*
 * cuda_pending.h — the backend's registry of mLSTM pending buffers (deferred C stores; see
 * cuda_common.h and cuda_pending.cu). Internal to the CUDA backend.
 */
#ifndef GGX_CUDA_PENDING_H
#define GGX_CUDA_PENDING_H
#include "cuda_common.h"

typedef ggx_status (*PendAllocFn)(void *actx, size_t bytes, void **out);
typedef void (*PendReleaseFn)(void *actx, void *p);

struct PendEntry {
    float *C;       /* the layer's C in a state (the key) */
    size_t c_bytes; /* nh * dqk * dv floats */
    float *P;       /* its pending buffer (ggx_cuda_pend_layout_of) */
    int nh, dqk, dv;
    bool maybe;     /* a deferring step was enqueued since the last flush */
};
struct PendChunk {
    float *base;
    size_t slot_floats;
    uint32_t used; /* slots in use (bit i) */
};
struct PendRegistry {
    PendEntry *e; /* sorted by C */
    int n, cap;
    PendChunk *ch;
    int nch, capch;
    int n_maybe; /* entries with maybe set */
    void *actx;
    PendAllocFn alloc;
    PendReleaseFn release;
};

void ggx_cuda_pend_init(PendRegistry *r, void *actx, PendAllocFn alloc, PendReleaseFn release);
void ggx_cuda_pend_free(PendRegistry *r);
/* the pending buffer of the layer whose C this is (created with no pending token) */
ggx_status ggx_cuda_pend_get(PendRegistry *r, cudaStream_t s, float *C, int nh, int dqk, int dv, float **P);
/* a deferring step on C was enqueued */
void ggx_cuda_pend_mark(PendRegistry *r, const float *C);
/* enqueue the flush of every flagged entry whose C overlaps [lo, lo + n) */
ggx_status ggx_cuda_pend_flush(PendRegistry *r, cudaStream_t s, const void *lo, size_t n);
/* forget the entries whose C overlaps [lo, lo + n) (memory being freed; the stream is idle) */
void ggx_cuda_pend_drop(PendRegistry *r, const void *lo, size_t n);

#endif
