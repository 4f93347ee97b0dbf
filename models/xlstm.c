/*
 * xlstm.c — the xLSTM model: hyper-parameters from .ggx metadata, the tensor map with shape
 * checks, weights mapped into the backend, accessors and free. Graph building and eval live in
 * xlstm_eval.c, states in xlstm_state.c, synthetic weights in xlstm_synth.c.
 */
#include "xlstm.h"
#include "xlstm_impl.h"

#include "error.h"
#include "keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ helpers -- */

uint64_t xl_hash(uint64_t h, const void *data, size_t n) { /* FNV-1a 64 */
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

size_t xl_state_floats_per_layer(const xl_hparams *hp) {
    return (size_t)hp->n_heads * hp->dqk * hp->dv + (size_t)hp->n_heads * hp->dqk + hp->n_heads;
}

ggx_model_params ggx_model_default_params(void) {
    ggx_model_params p = {.backend = "cpu", .n_threads = 0, .device = 0, .progress = 0};
    return p;
}

ggx_status xl_hparams_check(const xl_hparams *hp) {
    if (hp->vocab < 1 || hp->embd < 1 || hp->n_layer < 1 || hp->n_heads < 1 || hp->ffn < 1 ||
        hp->qk_dim < 1 || hp->v_dim < 1)
        return ggx_fail(GGX_ERR_FORMAT, "xlstm hyper-parameters out of range (vocab %d, embd %d, "
                        "blocks %d, heads %d, qk %d, v %d, ffn %d)", hp->vocab, hp->embd,
                        hp->n_layer, hp->n_heads, hp->qk_dim, hp->v_dim, hp->ffn);
    if (hp->qk_dim % hp->n_heads || hp->v_dim % hp->n_heads)
        return ggx_fail(GGX_ERR_FORMAT, "xlstm: qk_dim %d / v_dim %d not divisible by %d heads",
                        hp->qk_dim, hp->v_dim, hp->n_heads);
    if (hp->dqk != hp->qk_dim / hp->n_heads || hp->dv != hp->v_dim / hp->n_heads)
        return ggx_fail(GGX_ERR_FORMAT, "xlstm: head dims %d/%d disagree with %d/%d over %d heads",
                        hp->dqk, hp->dv, hp->qk_dim, hp->v_dim, hp->n_heads);
    if (hp->chunk < 0 || hp->chunk > 4096)
        return ggx_fail(GGX_ERR_FORMAT, "xlstm: chunk_size %d out of range", hp->chunk);
    if (!(hp->norm_eps >= 0) || !(hp->eps >= 0))
        return ggx_fail(GGX_ERR_FORMAT, "xlstm: negative eps");
    /* keep every tensor's element count well inside int (OpenBLAS dims, lds) */
    if ((int64_t)hp->vocab * hp->embd > ((int64_t)1 << 40) || hp->embd > (1 << 20) ||
        hp->ffn > (1 << 22) || hp->vocab > (1 << 24))
        return ggx_fail(GGX_ERR_FORMAT, "xlstm: dimensions too large");
    return GGX_OK;
}

static void set_w(xl_weight *w, const char *name, enum ggx_type t, int nd, int64_t d0, int64_t d1) {
    snprintf(w->name, sizeof w->name, "%s", name);
    w->type = t;
    w->n_dims = nd;
    w->dims[0] = d0;
    w->dims[1] = nd > 1 ? d1 : 1;
    w->dims[2] = w->dims[3] = 1;
    w->data = NULL;
    w->size = 0;
}

void xl_weights_describe(ggx_model *m) {
    const xl_hparams *hp = &m->hp;
    char nm[96];
    set_w(&m->emb, "backbone.embeddings.weight", GGX_TYPE_F32, 2, hp->vocab, hp->embd);
    set_w(&m->out_norm, "backbone.out_norm.weight", GGX_TYPE_F32, 1, hp->embd, 0);
    set_w(&m->lm_head, "lm_head.weight", GGX_TYPE_F32, 2, hp->vocab, hp->embd);
    for (int i = 0; i < hp->n_layer; i++) {
        xl_layer *L = &m->layers[i];
#define W(field, suffix, nd, d0, d1)                                                           \
    snprintf(nm, sizeof nm, "backbone.blocks.%d.%s", i, suffix);                               \
    set_w(&L->field, nm, GGX_TYPE_F32, nd, d0, d1)
        W(norm_mlstm, "norm_mlstm.weight", 1, hp->embd, 0);
        W(wq, "mlstm_layer.q.weight", 2, hp->qk_dim, hp->embd);
        W(wk, "mlstm_layer.k.weight", 2, hp->qk_dim, hp->embd);
        W(wv, "mlstm_layer.v.weight", 2, hp->v_dim, hp->embd);
        W(wo, "mlstm_layer.ogate_preact.weight", 2, hp->v_dim, hp->embd);
        W(wi, "mlstm_layer.igate_preact.weight", 2, hp->n_heads, hp->embd);
        W(bi, "mlstm_layer.igate_preact.bias", 1, hp->n_heads, 0);
        W(wf, "mlstm_layer.fgate_preact.weight", 2, hp->n_heads, hp->embd);
        W(bf, "mlstm_layer.fgate_preact.bias", 1, hp->n_heads, 0);
        W(mh_norm, "mlstm_layer.multihead_norm.weight", 1, hp->v_dim, 0);
        W(out_proj, "mlstm_layer.out_proj.weight", 2, hp->embd, hp->v_dim);
        W(norm_ffn, "norm_ffn.weight", 1, hp->embd, 0);
        W(up_gate, "ffn.proj_up_gate.weight", 2, hp->ffn, hp->embd);
        W(up, "ffn.proj_up.weight", 2, hp->ffn, hp->embd);
        W(down, "ffn.proj_down.weight", 2, hp->embd, hp->ffn);
#undef W
    }
}

/* Make w's host bytes (type, dims and size already set) usable by the backend. The embedding
 * is only ever read by GET_ROWS, one row per token: a backend may keep it in host memory
 * (weights_map_rows; cuda: saves 0.2-0.4 GB of device memory at the 7B size). */
ggx_status xl_map_weight(ggx_model *m, xl_weight *w, const void *host) {
    ggx_backend *be = m->be;
    if (w == &m->emb && be->iface.weights_map_rows)
        return be->iface.weights_map_rows(be, host, w->size, w->type, w->n_dims, w->dims, &w->data);
    return be->iface.weights_map(be, host, w->size, w->type, w->n_dims, w->dims, &w->data);
}

void xl_weights_foreach(ggx_model *m, void (*fn)(xl_weight *w, void *ud), void *ud) {
    fn(&m->emb, ud);
    for (int i = 0; i < m->hp.n_layer; i++) {
        xl_layer *L = &m->layers[i];
        xl_weight *ws[] = {&L->norm_mlstm, &L->wq, &L->wk, &L->wv, &L->wo, &L->wi, &L->bi,
                           &L->wf, &L->bf, &L->mh_norm, &L->out_proj, &L->norm_ffn,
                           &L->up_gate, &L->up, &L->down};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) fn(ws[k], ud);
    }
    fn(&m->out_norm, ud);
    fn(&m->lm_head, ud);
}

ggx_status xl_model_alloc(ggx_model **out, const xl_hparams *hp, const ggx_model_params *p) {
    *out = NULL;
    ggx_status st = xl_hparams_check(hp);
    if (st != GGX_OK) return st;
    ggx_model *m = calloc(1, sizeof *m);
    if (!m) return ggx_fail(GGX_ERR_NOMEM, "model: out of memory");
    m->hp = *hp;
    pthread_mutex_init(&m->lock, NULL);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        ggx_model_free(m);
        return ggx_fail(GGX_ERR_NOMEM, "model: out of memory");
    }
    xl_weights_describe(m);
    ggx_model_params def = ggx_model_default_params();
    if (!p) p = &def;
    ggx_backend_params bp = {.n_threads = p->n_threads, .device = p->device};
    st = ggx_backend_create(p->backend ? p->backend : "cpu", &bp, &m->be);
    if (st != GGX_OK) {
        ggx_model_free(m);
        return st;
    }
    *out = m;
    return GGX_OK;
}

/* ------------------------------------------------------------------------------ loading -- */

static ggx_status get_u32(const ggx_file *f, const char *key, int *out) {
    uint32_t v;
    ggx_status st = ggx_file_get_u32(f, key, &v);
    if (st != GGX_OK) return st;
    if (v > (uint32_t)INT32_MAX) return ggx_fail(GGX_ERR_FORMAT, "%s = %u is too large", key, v);
    *out = (int)v;
    return GGX_OK;
}

static int get_id(const ggx_file *f, const char *key) {
    int64_t v;
    if (!ggx_file_find_kv(f, key) || ggx_file_get_i64(f, key, &v) != GGX_OK) return -1;
    return v >= 0 && v < INT32_MAX ? (int)v : -1;
}

static ggx_status read_hparams(const ggx_file *f, xl_hparams *hp) {
    ggx_status st;
    char *arch = NULL;
    memset(hp, 0, sizeof *hp);
    if ((st = ggx_file_get_str(f, GGX_KEY_ARCH, &arch)) != GGX_OK) return st;
    if (strcmp(arch, "xlstm") != 0) {
        st = ggx_fail(GGX_ERR_UNSUPPORTED, "architecture '%s' is not supported (ggx runs xlstm)",
                      arch);
        free(arch);
        return st;
    }
    free(arch);
    if ((st = get_u32(f, GGX_KEY_XL_VOCAB, &hp->vocab)) || (st = get_u32(f, GGX_KEY_XL_EMBD, &hp->embd)) ||
        (st = get_u32(f, GGX_KEY_XL_BLOCKS, &hp->n_layer)) ||
        (st = get_u32(f, GGX_KEY_XL_HEADS, &hp->n_heads)) ||
        (st = get_u32(f, GGX_KEY_XL_QK_DIM, &hp->qk_dim)) ||
        (st = get_u32(f, GGX_KEY_XL_V_DIM, &hp->v_dim)) ||
        (st = get_u32(f, GGX_KEY_XL_FFN_DIM, &hp->ffn)) ||
        (st = get_u32(f, GGX_KEY_XL_CHUNK, &hp->chunk)) ||
        (st = ggx_file_get_f32(f, GGX_KEY_XL_GATE_CAP, &hp->gate_cap)) ||
        (st = ggx_file_get_f32(f, GGX_KEY_XL_LOGIT_CAP, &hp->logit_cap)) ||
        (st = ggx_file_get_f32(f, GGX_KEY_XL_NORM_EPS, &hp->norm_eps)) ||
        (st = ggx_file_get_f32(f, GGX_KEY_XL_EPS, &hp->eps)))
        return st;
    if (hp->n_heads < 1) return ggx_fail(GGX_ERR_FORMAT, "%s must be >= 1", GGX_KEY_XL_HEADS);
    hp->dqk = hp->qk_dim / hp->n_heads;
    hp->dv = hp->v_dim / hp->n_heads;
    if (ggx_file_find_kv(f, GGX_KEY_XL_QK_HEAD_DIM) &&
        (st = get_u32(f, GGX_KEY_XL_QK_HEAD_DIM, &hp->dqk)))
        return st;
    if (ggx_file_find_kv(f, GGX_KEY_XL_V_HEAD_DIM) && (st = get_u32(f, GGX_KEY_XL_V_HEAD_DIM, &hp->dv)))
        return st;
    bool b;
    if (ggx_file_find_kv(f, GGX_KEY_XL_USE_BIAS) && ggx_file_get_bool(f, GGX_KEY_XL_USE_BIAS, &b) == GGX_OK && b)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "xlstm with use_bias = true is not supported");
    if (ggx_file_find_kv(f, GGX_KEY_XL_OUT_NORM) && ggx_file_get_bool(f, GGX_KEY_XL_OUT_NORM, &b) == GGX_OK && !b)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "xlstm with add_out_norm = false is not supported");
    if (ggx_file_find_kv(f, GGX_KEY_XL_WEIGHT_MODE)) {
        char *wm = NULL;
        if ((st = ggx_file_get_str(f, GGX_KEY_XL_WEIGHT_MODE, &wm))) return st;
        bool ok = !strcmp(wm, "single");
        if (!ok) st = ggx_fail(GGX_ERR_UNSUPPORTED, "xlstm weight_mode '%s' (expected single)", wm);
        free(wm);
        if (!ok) return st;
    }
    hp->bos = get_id(f, GGX_KEY_TOK_BOS);
    hp->eos = get_id(f, GGX_KEY_TOK_EOS);
    hp->pad = get_id(f, GGX_KEY_TOK_PAD);
    hp->add_bos = 0;
    if (ggx_file_find_kv(f, GGX_KEY_TOK_ADD_BOS) && ggx_file_get_bool(f, GGX_KEY_TOK_ADD_BOS, &b) == GGX_OK)
        hp->add_bos = b;
    return xl_hparams_check(hp);
}

static void shape_str(int nd, const int64_t *d, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "[");
    for (int i = 0; i < nd && k < (int)cap; i++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%" PRId64, i ? ", " : "", d[i]);
    if (k < (int)cap) snprintf(buf + k, cap - (size_t)k, "]");
}

typedef struct bind_ctx {
    ggx_model *m;
    ggx_status st;
} bind_ctx;

static bool matmul_type(enum ggx_type t) {
    return t == GGX_TYPE_F32 || t == GGX_TYPE_F16 || t == GGX_TYPE_BF16 || t == GGX_TYPE_Q8_0 ||
           t == GGX_TYPE_Q4_0 || t == GGX_TYPE_Q4_X;
}

static void bind_one(xl_weight *w, void *ud) {
    bind_ctx *c = ud;
    if (c->st != GGX_OK) return;
    const ggx_tensor_info *ti = ggx_file_find_tensor(c->m->file, w->name);
    char want[64], have[64];
    if (!ti) {
        c->st = ggx_fail(GGX_ERR_SHAPE, "tensor %s: missing from the file", w->name);
        return;
    }
    shape_str(w->n_dims, w->dims, want, sizeof want);
    shape_str(ti->n_dims, ti->dims, have, sizeof have);
    bool same = ti->n_dims == w->n_dims;
    for (int d = 0; same && d < w->n_dims; d++) same = ti->dims[d] == w->dims[d];
    if (!same) {
        c->st = ggx_fail(GGX_ERR_SHAPE, "tensor %s: expected %s, file has %s", w->name, want, have);
        return;
    }
    if (w->n_dims == 1 ? ti->type != GGX_TYPE_F32 : !matmul_type(ti->type)) {
        c->st = ggx_fail(GGX_ERR_UNSUPPORTED, "tensor %s: type %s not supported here%s", w->name,
                         ggx_type_name(ti->type), w->n_dims == 1 ? " (vectors must be f32)" : "");
        return;
    }
    w->type = ti->type;
    w->size = ti->size;
    c->st = xl_map_weight(c->m, w, ti->data);
    if (c->st != GGX_OK) ggx_fail_wrap(c->st, "tensor %s", w->name);
}

/* "812.3 KB", "13.9 MB", "4.06 GB" (decimal units, like the rest of the output) */
static const char *human_bytes(char buf[32], uint64_t n) {
    if (n >= 1000000000ULL) snprintf(buf, 32, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ULL) snprintf(buf, 32, "%.1f MB", (double)n / 1e6);
    else snprintf(buf, 32, "%.1f KB", (double)n / 1e3);
    return buf;
}

void xl_finish_desc(ggx_model *m, const char *src) {
    uint64_t n = ggx_model_weight_bytes(m);
    m->wtype = m->layers[0].wq.type;
    snprintf(m->desc, sizeof m->desc, "xlstm %d blocks E=%d %s %.1f MB%s%s", m->hp.n_layer,
             m->hp.embd, ggx_type_name(m->wtype), (double)n / 1e6, src ? " " : "", src ? src : "");
    /* what `-v` shows a user sizing memory: the state is the whole per-sequence cost (no KV
     * cache growing with the context) */
    const xl_hparams *hp = &m->hp;
    ggx_log_info("model: %s: %d blocks, embedding %d, %d heads (qk %d, v %d per head), ffn %d, "
                 "vocab %d, chunk %d", m->desc, hp->n_layer, hp->embd, hp->n_heads, hp->dqk, hp->dv,
                 hp->ffn, hp->vocab, hp->chunk);
    char w[32], st[32], rd[32];
    ggx_log_info("model: weights %s on the %s backend; recurrent state %s per sequence, whatever "
                 "the context length; one decode step reads %s of weights", human_bytes(w, n),
                 m->be->iface.name, human_bytes(st, ggx_model_state_size(m)),
                 human_bytes(rd, ggx_model_weight_bytes_per_token(m)));
}

ggx_status ggx_model_load(const char *path, const ggx_model_params *params, ggx_model **out) {
    if (!out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_model_load: out is NULL");
    *out = NULL;
    if (!path) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_model_load: path is NULL");
    ggx_file *f = NULL;
    ggx_model *m = NULL;
    xl_hparams hp;
    ggx_status st = ggx_file_open(path, &f);
    if (st != GGX_OK) goto fail;
    if ((st = read_hparams(f, &hp)) != GGX_OK) goto fail;
    if ((st = xl_model_alloc(&m, &hp, params)) != GGX_OK) goto fail;
    m->file = f;
    f = NULL;
    bind_ctx bc = {m, GGX_OK};
    xl_weights_foreach(m, bind_one, &bc);
    if ((st = bc.st) != GGX_OK) goto fail;
    /* fingerprint: hyper-parameters + every tensor's name, type, shape and data CRC */
    uint64_t h = xl_hash(0xcbf29ce484222325ULL, &m->hp, sizeof m->hp);
    for (size_t i = 0; i < ggx_file_n_tensors(m->file); i++) {
        const ggx_tensor_info *ti = ggx_file_tensor(m->file, i);
        h = xl_hash(h, ti->name, strlen(ti->name));
        uint32_t ty = (uint32_t)ti->type;
        h = xl_hash(h, &ty, sizeof ty);
        h = xl_hash(h, ti->dims, sizeof ti->dims);
        h = xl_hash(h, &ti->crc32, sizeof ti->crc32);
    }
    m->fingerprint = h;
    xl_finish_desc(m, NULL);
    *out = m;
    return GGX_OK;
fail:
    ggx_fail_wrap(st, "while loading %s", path);
    if (f) ggx_file_close(f);
    ggx_model_free(m);
    return st;
}

static void unmap_one(xl_weight *w, void *ud) {
    ggx_model *m = ud;
    if (w->data) m->be->iface.weights_unmap(m->be, w->data);
    w->data = NULL;
}

void ggx_model_free(ggx_model *m) {
    if (!m) return;
    if (m->be) {
        xl_eval_cache_clear(m);
        if (m->layers) xl_weights_foreach(m, unmap_one, m);
        ggx_backend_free(m->be);
    }
    if (m->file) ggx_file_close(m->file);
    free(m->synth_mem); /* host memory of synthetic weights (aligned_alloc) */
    free(m->layers);
    free(m->logits_host);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---------------------------------------------------------------------------- accessors -- */

int ggx_model_n_vocab(const ggx_model *m) { return m->hp.vocab; }
int ggx_model_n_embd(const ggx_model *m) { return m->hp.embd; }
int ggx_model_n_layer(const ggx_model *m) { return m->hp.n_layer; }
int ggx_model_bos_id(const ggx_model *m) { return m->hp.bos; }
int ggx_model_eos_id(const ggx_model *m) { return m->hp.eos; }
int ggx_model_pad_id(const ggx_model *m) { return m->hp.pad; }
int ggx_model_add_bos_default(const ggx_model *m) { return m->hp.add_bos; }
size_t ggx_model_state_size(const ggx_model *m) {
    return xl_state_floats_per_layer(&m->hp) * (size_t)m->hp.n_layer * sizeof(float);
}
uint64_t ggx_model_fingerprint(const ggx_model *m) { return m->fingerprint; }
const char *ggx_model_desc(const ggx_model *m) { return m->desc; }
enum ggx_type ggx_model_weight_type(const ggx_model *m) { return m->wtype; }

static void add_bytes(xl_weight *w, void *ud) {
    uint64_t *n = ud;
    *n += (uint64_t)ggx_row_size(w->type, w->dims[w->n_dims - 1]) *
          (uint64_t)(w->n_dims > 1 ? w->dims[0] : 1);
}

uint64_t ggx_model_weight_bytes(const ggx_model *m) {
    uint64_t n = 0;
    xl_weights_foreach((ggx_model *)m, add_bytes, &n);
    return n;
}

uint64_t ggx_model_weight_bytes_per_token(const ggx_model *m) {
    uint64_t all = ggx_model_weight_bytes(m), emb = 0;
    add_bytes((xl_weight *)&m->emb, &emb);
    return all - emb + ggx_row_size(m->emb.type, m->hp.embd);
}
