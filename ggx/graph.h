/*
 * graph.h — tensors and the compute graph. Models build a graph of ops once per batch layout;
 * backends (backends/cpu, backends/cuda) execute it. Neither side includes the other's headers.
 *
 *     ggx_graph *g = ggx_graph_new(256);
 *     ggx_tensor *x  = ggx_graph_input(g, "ids", GGX_TYPE_I32, 1, (int64_t[]){n});
 *     ggx_tensor *h  = ggx_get_rows(g, emb_weight, x);            // [n, E] f32
 *     ggx_tensor *y  = ggx_mul_mat(g, w_q, h);                     // [n, Q] f32
 *     ...
 *     void *arena = NULL; size_t cap = 0;     // owned by the caller (the model keeps one)
 *     ggx_graph_plan(g, backend, &arena, &cap); // offsets with reuse; grows arena if needed
 *     ggx_graph_compute(g, backend);          // any number of times, no allocation
 *
 * Shapes are row-major, outermost dim first, like PyTorch: activations are [n_tokens, features],
 * linear weights are [out, in], and ggx_mul_mat(W, x) computes x @ W^T -> [n_tokens, out].
 * All activations are f32. Weights may be any type of types.h.
 */
#ifndef GGX_GRAPH_H
#define GGX_GRAPH_H

#include "ggx.h"
#include "types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGX_T_MAX_DIMS 4
#define GGX_MAX_SRC 6

enum ggx_op {
    GGX_OP_NONE = 0,   /* leaf: weight, input or state; data set by the owner */
    GGX_OP_GET_ROWS,   /* dst[r,:] = f32(src0[ids[r],:]); src0 [V,E] any type; src1 ids [n] i32 */
    GGX_OP_MUL_MAT,    /* dst[n,O] = src1[n,I] @ src0[O,I]^T; src0 any type, src1 f32 */
    GGX_OP_ADD,        /* dst = src0 + src1; src1 same shape, or [cols] broadcast over rows */
    GGX_OP_MUL,        /* dst = src0 * src1; same broadcasting as ADD */
    GGX_OP_RMS_NORM,   /* dst[r,:] = src0[r,:] / sqrt(mean(src0[r,:]^2) + eps) * src1; f[0]=eps */
    GGX_OP_HEAD_NORM,  /* LayerNorm per head (no bias): src0 [n, NH*D], weight src1 [NH*D] flat;
                          i[0]=NH, f[0]=eps */
    GGX_OP_SIGMOID_MUL,/* dst = sigmoid(src0) * src1 (the output gate) */
    GGX_OP_SWIGLU,     /* dst = silu(src0) * src1 */
    GGX_OP_SOFT_CAP,   /* dst = c * tanh((src0 + src1?) / c); src1 optional bias [cols];
                          f[0] = c (c <= 0: no cap, just the bias) */
    GGX_OP_MLSTM,      /* the mLSTM recurrence of one layer for every sequence of the batch, see
                          below; dst h [T, NH*DV] */
    GGX_OP_COUNT
};

/*
 * GGX_OP_MLSTM
 *   src0 q [T, NH*DQK], src1 k [T, NH*DQK], src2 v [T, NH*DV], src3 ĩ [T, NH], src4 f̃ [T, NH]
 *   (gate pre-activations already soft-capped). T = total tokens of the batch; sequence s owns
 *   rows [batch->seq_off[s], batch->seq_off[s] + batch->seq_len[s]).
 *   i[0] = layer index, i[1] = NH, i[2] = DQK, i[3] = DV, i[4] = chunk size L; f[0] = eps.
 *   State of sequence s for this layer: batch->states[s]->layers[layer] (backend memory):
 *     C [NH, DQK, DV], n [NH, DQK], m [NH], f32; updated in place.
 *   Semantics: exactly xlstm-spec.md §4 applied token by token (q scaled by DQK^-1/2, readout
 *   from the new state). Backends may compute it chunkwise (§5) for runs of >= L tokens followed
 *   by step updates for the tail; the results agree up to rounding.
 */

typedef struct ggx_tensor ggx_tensor;
struct ggx_tensor {
    enum ggx_type type;
    int n_dims;
    int64_t dims[GGX_T_MAX_DIMS]; /* outermost first; unused trailing dims are 1 */
    void *data;                   /* backend memory: host pointer (cpu) or device pointer (cuda) */
    enum ggx_op op;
    ggx_tensor *src[GGX_MAX_SRC];
    int32_t i[8];                 /* integer op parameters */
    float f[4];                   /* float op parameters */
    int flags;                    /* GGX_TF_* */
    int id;                       /* index in the graph (set by the graph) */
    size_t buf_offset;            /* planned offset in the graph's arena (intermediates) */
    char name[64];
};

enum {
    GGX_TF_WEIGHT = 1, /* leaf pointing at model weights */
    GGX_TF_INPUT = 2,  /* leaf filled before compute (ids, row selections) */
    GGX_TF_OUTPUT = 4, /* result read after compute: never aliased by the planner */
};

/* The sequences of one eval call, as the graph sees them. */
typedef struct ggx_layer_state {
    float *C; /* [NH, DQK, DV] */
    float *n; /* [NH, DQK] */
    float *m; /* [NH] */
} ggx_layer_state;

typedef struct ggx_batch {
    int n_seqs;
    int n_tokens;              /* T */
    const int *seq_off;        /* [n_seqs] */
    const int *seq_len;        /* [n_seqs] */
    ggx_layer_state *const *states; /* [n_seqs] -> array of n_layer layer states (backend memory) */
} ggx_batch;

typedef struct ggx_graph ggx_graph;
struct ggx_graph {
    ggx_tensor *tensors;   /* pool; capacity fixed at creation */
    int n_tensors, cap;
    ggx_tensor **nodes;    /* ops in execution order (topological) */
    int n_nodes;
    const ggx_batch *batch;
    void *arena;           /* backend buffer for intermediates (planned) */
    size_t arena_size;
    bool planned;
};

ggx_graph *ggx_graph_new(int capacity);
void ggx_graph_free(ggx_graph *g); /* does not free the arena (owned by whoever planned it) */
size_t ggx_tensor_nbytes(const ggx_tensor *t);
int64_t ggx_tensor_nelements(const ggx_tensor *t);
int64_t ggx_tensor_rows(const ggx_tensor *t); /* product of all dims but the last */

/* Leaves */
ggx_tensor *ggx_graph_leaf(ggx_graph *g, const char *name, enum ggx_type type, int n_dims,
                           const int64_t *dims, void *data, int flags);
/* Op constructors: infer and check shapes; NULL (with ggx_fail message) on mismatch. */
ggx_tensor *ggx_get_rows(ggx_graph *g, ggx_tensor *table, ggx_tensor *ids);
ggx_tensor *ggx_mul_mat(ggx_graph *g, ggx_tensor *w, ggx_tensor *x);
ggx_tensor *ggx_add(ggx_graph *g, ggx_tensor *a, ggx_tensor *b);
ggx_tensor *ggx_mul(ggx_graph *g, ggx_tensor *a, ggx_tensor *b);
ggx_tensor *ggx_rms_norm(ggx_graph *g, ggx_tensor *x, ggx_tensor *w, float eps);
ggx_tensor *ggx_head_norm(ggx_graph *g, ggx_tensor *x, ggx_tensor *w, int n_heads, float eps);
ggx_tensor *ggx_sigmoid_mul(ggx_graph *g, ggx_tensor *gate, ggx_tensor *x);
ggx_tensor *ggx_swiglu(ggx_graph *g, ggx_tensor *gate, ggx_tensor *up);
ggx_tensor *ggx_soft_cap(ggx_graph *g, ggx_tensor *x, ggx_tensor *bias, float cap);
ggx_tensor *ggx_mlstm(ggx_graph *g, ggx_tensor *q, ggx_tensor *k, ggx_tensor *v, ggx_tensor *ig,
                      ggx_tensor *fg, int layer, int n_heads, int dqk, int dv, int chunk, float eps);

/* ---- planning and execution (graph.c) ----
 * ggx_graph_plan_offsets assigns every op result an offset in one arena with liveness-based
 * reuse (a range is recycled after its last consumer; GGX_TF_OUTPUT results are kept) and
 * returns the arena size. ggx_graph_plan does that, grows *arena (backend memory owned by the
 * caller, e.g. the model) through be->alloc only when it is too small, and points every op
 * result's data into it. A planned graph may be computed any number of times. */
typedef struct ggx_backend ggx_backend;
ggx_status ggx_graph_plan_offsets(ggx_graph *g, size_t *arena_size);
ggx_status ggx_graph_plan(ggx_graph *g, ggx_backend *be, void **arena, size_t *arena_cap);
ggx_status ggx_graph_compute(ggx_graph *g, ggx_backend *be);
const char *ggx_op_name(enum ggx_op op);

#endif
