/*
 * xlstm_eval.c — the xLSTM compute graph (xlstm-spec.md §3) and ggx_eval.
 *
 * One graph serves a whole batch: all T tokens of all sequences go through the projections
 * together ([T, E] activations), the MLSTM op walks each sequence with its own state, and only
 * the rows whose logits were asked for go through out_norm -> lm_head -> soft cap.
 * Graphs are cached per batch layout (sequence lengths + which logits), so a repeated decode
 * step reuses a planned graph and allocates nothing.
 */
#include "xlstm_impl.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ggx_tensor *leaf_w(ggx_graph *g, const xl_weight *w) {
    return ggx_graph_leaf(g, w->name, w->type, w->n_dims, w->dims, w->data, GGX_TF_WEIGHT);
}

static void cached_free(ggx_model *m, xl_cached_graph *c) {
    if (c->ids_dev) m->be->iface.release(m->be, c->ids_dev);
    if (c->sel_dev) m->be->iface.release(m->be, c->sel_dev);
    ggx_graph_free(c->g);
    free(c->seq_len);
    free(c->seq_off);
    free(c->out_mode);
    free(c->ids_host);
    free(c->state_ptrs);
    memset(c, 0, sizeof *c);
}

void xl_eval_cache_clear(ggx_model *m) {
    for (int i = 0; i < XL_GRAPH_CACHE; i++)
        if (m->cache[i].g) cached_free(m, &m->cache[i]);
    if (m->arena) m->be->iface.release(m->be, m->arena);
    m->arena = NULL;
    m->arena_cap = 0;
}

/* Build the graph of one layout into c (c->seq_len/out_mode/n_* already set). */
static ggx_status build_graph(ggx_model *m, xl_cached_graph *c) {
    const xl_hparams *hp = &m->hp;
    const int T = c->n_tokens;
    ggx_graph *g = ggx_graph_new(40 * hp->n_layer + 64);
    if (!g) return ggx_fail(GGX_ERR_NOMEM, "eval: out of memory for the graph");
    c->g = g;
    ggx_tensor *ids = ggx_graph_leaf(g, "ids", GGX_TYPE_I32, 1, (int64_t[]){T}, c->ids_dev,
                                     GGX_TF_INPUT);
    ggx_tensor *x = ggx_get_rows(g, leaf_w(g, &m->emb), ids); // [T, E]
    for (int l = 0; l < hp->n_layer && x; l++) {
        const xl_layer *L = &m->layers[l];
        ggx_tensor *h = ggx_rms_norm(g, x, leaf_w(g, &L->norm_mlstm), hp->norm_eps); // [T, E]
        ggx_tensor *q = ggx_mul_mat(g, leaf_w(g, &L->wq), h);                        // [T, QK]
        ggx_tensor *k = ggx_mul_mat(g, leaf_w(g, &L->wk), h);                        // [T, QK]
        ggx_tensor *v = ggx_mul_mat(g, leaf_w(g, &L->wv), h);                        // [T, V]
        ggx_tensor *o = ggx_mul_mat(g, leaf_w(g, &L->wo), h);                        // [T, V]
        ggx_tensor *ig = ggx_soft_cap(g, ggx_mul_mat(g, leaf_w(g, &L->wi), h),       // [T, NH]
                                      leaf_w(g, &L->bi), hp->gate_cap);
        ggx_tensor *fg = ggx_soft_cap(g, ggx_mul_mat(g, leaf_w(g, &L->wf), h),       // [T, NH]
                                      leaf_w(g, &L->bf), hp->gate_cap);
        ggx_tensor *hc = ggx_mlstm(g, q, k, v, ig, fg, l, hp->n_heads, hp->dqk, hp->dv, hp->chunk,
                                   hp->eps);                                         // [T, V]
        ggx_tensor *hn = ggx_head_norm(g, hc, leaf_w(g, &L->mh_norm), hp->n_heads, hp->norm_eps);
        ggx_tensor *y = ggx_sigmoid_mul(g, o, hn);                                   // [T, V]
        x = ggx_add(g, x, ggx_mul_mat(g, leaf_w(g, &L->out_proj), y));               // [T, E]
        ggx_tensor *z = ggx_rms_norm(g, x, leaf_w(g, &L->norm_ffn), hp->norm_eps);
        ggx_tensor *u = ggx_swiglu(g, ggx_mul_mat(g, leaf_w(g, &L->up_gate), z),
                                   ggx_mul_mat(g, leaf_w(g, &L->up), z));            // [T, F]
        x = ggx_add(g, x, ggx_mul_mat(g, leaf_w(g, &L->down), u));                   // [T, E]
        if (hc) snprintf(hc->name, sizeof hc->name, "mlstm.%d", l);
    }
    if (!x) return ggx_fail_wrap(GGX_ERR_SHAPE, "eval: building the graph");
    c->logits = NULL;
    if (c->n_out > 0) {
        ggx_tensor *sel = ggx_graph_leaf(g, "sel", GGX_TYPE_I32, 1, (int64_t[]){c->n_out},
                                         c->sel_dev, GGX_TF_INPUT);
        ggx_tensor *xs = ggx_get_rows(g, x, sel);                                    // [n_out, E]
        xs = ggx_rms_norm(g, xs, leaf_w(g, &m->out_norm), hp->norm_eps);
        ggx_tensor *lg = ggx_soft_cap(g, ggx_mul_mat(g, leaf_w(g, &m->lm_head), xs), NULL,
                                      hp->logit_cap);                                // [n_out, V]
        if (!lg) return ggx_fail_wrap(GGX_ERR_SHAPE, "eval: building the graph");
        lg->flags |= GGX_TF_OUTPUT;
        snprintf(lg->name, sizeof lg->name, "logits");
        c->logits = lg;
    }
    for (int k = 0; k < g->n_nodes; k++)
        if (!m->be->iface.supports_op(m->be, g->nodes[k]))
            return ggx_fail(GGX_ERR_UNSUPPORTED, "backend %s does not support op %s (%s)",
                            m->be->iface.name, ggx_op_name(g->nodes[k]->op), g->nodes[k]->name);
    return GGX_OK;
}

/* Find or build the cached graph for this layout. */
static ggx_status get_graph(ggx_model *m, const ggx_seq *seqs, int n, int T, int n_out,
                            xl_cached_graph **out) {
    for (int i = 0; i < XL_GRAPH_CACHE; i++) {
        xl_cached_graph *c = &m->cache[i];
        if (!c->g || c->n_seqs != n || c->n_tokens != T || c->n_out != n_out) continue;
        bool same = true;
        for (int s = 0; s < n && same; s++) {
            int mode = seqs[s].logits ? (seqs[s].logits_all ? 2 : 1) : 0;
            same = c->seq_len[s] == seqs[s].n_tokens && c->out_mode[s] == mode;
        }
        if (same) {
            c->last_used = ++m->use_clock;
            *out = c;
            return GGX_OK;
        }
    }
    /* evict the least recently used entry */
    xl_cached_graph *c = &m->cache[0];
    for (int i = 1; i < XL_GRAPH_CACHE; i++)
        if (!m->cache[i].g || (c->g && m->cache[i].last_used < c->last_used)) c = &m->cache[i];
    if (c->g) cached_free(m, c);
    ggx_status st = GGX_OK;
    c->n_seqs = n;
    c->n_tokens = T;
    c->n_out = n_out;
    c->seq_len = malloc(sizeof(int) * (size_t)n);
    c->seq_off = malloc(sizeof(int) * (size_t)n);
    c->out_mode = malloc(sizeof(int) * (size_t)n);
    c->ids_host = malloc(sizeof(int32_t) * (size_t)T);
    c->state_ptrs = malloc(sizeof(ggx_layer_state *) * (size_t)n);
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)(n_out > 0 ? n_out : 1));
    if (!c->seq_len || !c->seq_off || !c->out_mode || !c->ids_host || !c->state_ptrs || !sel) {
        st = ggx_fail(GGX_ERR_NOMEM, "eval: out of memory");
        goto fail;
    }
    int off = 0, k = 0;
    for (int s = 0; s < n; s++) {
        c->seq_len[s] = seqs[s].n_tokens;
        c->seq_off[s] = off;
        c->out_mode[s] = seqs[s].logits ? (seqs[s].logits_all ? 2 : 1) : 0;
        if (c->out_mode[s] == 2)
            for (int t = 0; t < seqs[s].n_tokens; t++) sel[k++] = off + t;
        else if (c->out_mode[s] == 1)
            sel[k++] = off + seqs[s].n_tokens - 1;
        off += seqs[s].n_tokens;
    }
    if ((st = m->be->iface.alloc(m->be, sizeof(int32_t) * (size_t)T, &c->ids_dev)) != GGX_OK)
        goto fail;
    if (n_out > 0) {
        if ((st = m->be->iface.alloc(m->be, sizeof(int32_t) * (size_t)n_out, &c->sel_dev)) ||
            (st = m->be->iface.upload(m->be, c->sel_dev, sel, sizeof(int32_t) * (size_t)n_out)))
            goto fail;
    }
    c->batch = (ggx_batch){.n_seqs = n, .n_tokens = T, .seq_off = c->seq_off,
                           .seq_len = c->seq_len, .states = (ggx_layer_state *const *)c->state_ptrs};
    if ((st = build_graph(m, c)) != GGX_OK) goto fail;
    c->g->batch = &c->batch;
    c->arena_seen = NULL;
    c->last_used = ++m->use_clock;
    free(sel);
    *out = c;
    return GGX_OK;
fail:
    free(sel);
    cached_free(m, c);
    return st;
}

static ggx_status validate(const ggx_model *m, const ggx_seq *seqs, int n, int *T_out,
                           int *n_out) {
    if (!m) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_eval: model is NULL");
    if (!seqs || n < 1) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_eval: empty batch (%d sequences)", n);
    int64_t T = 0, no = 0;
    for (int s = 0; s < n; s++) {
        const ggx_seq *q = &seqs[s];
        if (!q->state) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_eval: sequence %d has no state", s);
        if (q->state->model != m)
            return ggx_fail(GGX_ERR_MISMATCH, "ggx_eval: sequence %d: state belongs to another model", s);
        if (q->n_tokens < 1 || !q->tokens)
            return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_eval: sequence %d: empty input (%d tokens)", s,
                            q->n_tokens);
        for (int t = 0; t < q->n_tokens; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= m->hp.vocab)
                return ggx_fail(GGX_ERR_INVALID_ARG,
                                "ggx_eval: sequence %d, token %d: id %d out of range [0, %d)", s, t,
                                q->tokens[t], m->hp.vocab);
        for (int r = 0; r < s; r++)
            if (seqs[r].state == q->state)
                return ggx_fail(GGX_ERR_INVALID_ARG,
                                "ggx_eval: sequences %d and %d share one state", r, s);
        T += q->n_tokens;
        if (q->logits) no += q->logits_all ? q->n_tokens : 1;
    }
    if (T > (1 << 24)) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_eval: %lld tokens in one call is too many", (long long)T);
    *T_out = (int)T;
    *n_out = (int)no;
    return GGX_OK;
}

/* One graph run over the whole batch (inputs validated, lock held). */
static ggx_status eval_locked(ggx_model *m, ggx_seq *seqs, int n, int T, int n_out) {
    ggx_status st;
    xl_cached_graph *c = NULL;
    if ((st = get_graph(m, seqs, n, T, n_out, &c)) != GGX_OK) goto done;
    int off = 0;
    for (int s = 0; s < n; s++) {
        memcpy(c->ids_host + off, seqs[s].tokens, sizeof(int32_t) * (size_t)seqs[s].n_tokens);
        off += seqs[s].n_tokens;
        c->state_ptrs[s] = seqs[s].state->layers;
    }
    if ((st = m->be->iface.upload(m->be, c->ids_dev, c->ids_host, sizeof(int32_t) * (size_t)T)))
        goto done;
    if (!c->g->planned || c->arena_seen != m->arena || m->arena == NULL) {
        if ((st = ggx_graph_plan(c->g, m->be, &m->arena, &m->arena_cap)) != GGX_OK) goto done;
        c->arena_seen = m->arena;
    }
    if ((st = ggx_graph_compute(c->g, m->be)) != GGX_OK) goto done;
    if ((st = m->be->iface.synchronize(m->be)) != GGX_OK) goto done;
    if (c->logits) {
        const size_t row = sizeof(float) * (size_t)m->hp.vocab;
        const char *src = c->logits->data;
        for (int s = 0; s < n; s++) {
            if (!seqs[s].logits) continue;
            int rows = seqs[s].logits_all ? seqs[s].n_tokens : 1;
            if ((st = m->be->iface.download(m->be, seqs[s].logits, src, row * (size_t)rows)))
                goto done;
            src += row * (size_t)rows;
        }
    }
done:
    return st;
}

ggx_status ggx_eval(ggx_model *m, ggx_seq *seqs, int n) {
    int T = 0, n_out = 0;
    ggx_status st = validate(m, seqs, n, &T, &n_out);
    if (st != GGX_OK) return st;
    pthread_mutex_lock(&m->lock);
    int max_t = m->max_eval_tokens > 0 ? m->max_eval_tokens : XL_MAX_EVAL_TOKENS;
    if (T <= max_t) {
        st = eval_locked(m, seqs, n, T, n_out);
    } else {
        /* A long input runs sequence by sequence in slices (a multiple of the chunk size),
         * carrying the state: the same math as one call, with activations bounded by the
         * slice instead of growing with the prompt (HF does the same beyond
         * max_inference_chunksize). */
        int slice = max_t;
        if (m->hp.chunk > 1 && slice >= m->hp.chunk) slice -= slice % m->hp.chunk;
        const size_t V = (size_t)m->hp.vocab;
        for (int s = 0; s < n && st == GGX_OK; s++) {
            for (int o = 0; o < seqs[s].n_tokens && st == GGX_OK; o += slice) {
                int len = seqs[s].n_tokens - o < slice ? seqs[s].n_tokens - o : slice;
                bool last = o + len == seqs[s].n_tokens;
                ggx_seq sub = {seqs[s].state, seqs[s].tokens + o, len, NULL, seqs[s].logits_all};
                if (seqs[s].logits && seqs[s].logits_all) sub.logits = seqs[s].logits + (size_t)o * V;
                else if (seqs[s].logits && last) sub.logits = seqs[s].logits;
                int no = sub.logits ? (sub.logits_all ? len : 1) : 0;
                st = eval_locked(m, &sub, 1, len, no);
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return st;
}
