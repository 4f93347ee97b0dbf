/*
 * xlstm_impl.h — the xLSTM model's private structures, shared by models/xlstm_*.c only.
 *
 * A ggx_model owns: hyper-parameters, weight views (backend memory; on cpu they point into the
 * file mapping or the synthetic buffer), the backend, and a small cache of planned graphs keyed
 * by batch layout (so a repeated decode step builds and allocates nothing).
 */
#ifndef GGX_XLSTM_IMPL_H
#define GGX_XLSTM_IMPL_H

#include "backend.h"
#include "ggx.h"
#include "ggxfile.h"
#include "graph.h"

#include <pthread.h>

typedef struct xl_hparams {
    int vocab, embd, n_layer, n_heads;
    int qk_dim, v_dim, dqk, dv, ffn, chunk;
    float gate_cap, logit_cap, norm_eps, eps;
    int bos, eos, pad, add_bos;
} xl_hparams;

typedef struct xl_weight {
    char name[96];
    enum ggx_type type;
    int n_dims;
    int64_t dims[4];
    void *data;  /* backend memory */
    size_t size; /* bytes */
} xl_weight;

typedef struct xl_layer {
    xl_weight norm_mlstm, wq, wk, wv, wo, wi, bi, wf, bf, mh_norm, out_proj, norm_ffn, up_gate, up,
        down;
} xl_layer;

#define XL_GRAPH_CACHE 8
/* Inputs of more tokens than this (all sequences of a call together) are evaluated sequence by
 * sequence in slices of at most this many tokens (xlstm_eval.c), bounding activation memory. */
#define XL_MAX_EVAL_TOKENS 2048

typedef struct xl_cached_graph {
    ggx_graph *g;
    int n_seqs, n_tokens, n_out;
    int *seq_len, *seq_off; /* [n_seqs] */
    int *out_mode;          /* [n_seqs]: 0 none, 1 last, 2 all */
    int32_t *ids_host;      /* [n_tokens] staging */
    void *ids_dev, *sel_dev;
    ggx_layer_state **state_ptrs; /* [n_seqs] */
    ggx_batch batch;
    ggx_tensor *logits; /* [n_out, vocab] or NULL */
    void *arena_seen;   /* arena the graph was planned into */
    uint64_t last_used;
} xl_cached_graph;

struct ggx_model {
    xl_hparams hp;
    ggx_file *file;   /* NULL for a synthetic model */
    void *synth_mem;  /* host memory of synthetic weights (aligned_alloc; freed with free) */
    ggx_backend *be;
    xl_weight emb, out_norm, lm_head;
    xl_layer *layers;
    uint64_t fingerprint;
    char desc[160];
    enum ggx_type wtype;
    /* eval */
    pthread_mutex_t lock;
    xl_cached_graph cache[XL_GRAPH_CACHE];
    uint64_t use_clock;
    void *arena;
    size_t arena_cap;
    float *logits_host; /* staging for non-host backends (unused on cpu) */
    int max_eval_tokens; /* 0: XL_MAX_EVAL_TOKENS (tests set it small) */
};

struct ggx_state {
    ggx_model *model;
    void *mem;                /* backend memory, state_size bytes */
    ggx_layer_state *layers;  /* [n_layer] pointers into mem */
};

/* Validate hyper-parameters (ranges, divisibility); GGX_ERR_FORMAT naming the problem. */
ggx_status xl_hparams_check(const xl_hparams *hp);
/* Fill the expected name/shape of every weight in m (data NULL). */
void xl_weights_describe(ggx_model *m);
/* Calls fn on every weight of the model in a fixed order. */
void xl_weights_foreach(ggx_model *m, void (*fn)(xl_weight *w, void *ud), void *ud);
/* Map one weight's host bytes to the backend (the embedding through weights_map_rows). */
ggx_status xl_map_weight(ggx_model *m, xl_weight *w, const void *host);
ggx_status xl_model_alloc(ggx_model **out, const xl_hparams *hp, const ggx_model_params *p);
uint64_t xl_hash(uint64_t h, const void *data, size_t n);
size_t xl_state_floats_per_layer(const xl_hparams *hp);
/* Sets m->wtype and m->desc ("xlstm 3 blocks E=256 f32 14.1 MB [src]"). */
void xl_finish_desc(ggx_model *m, const char *src);
/* Frees the cached graphs and the arena (xlstm_eval.c). */
void xl_eval_cache_clear(ggx_model *m);

#endif
