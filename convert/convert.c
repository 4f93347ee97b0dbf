/*
 * convert.c — HF xLSTM checkpoint -> .ggx (see convert.h).
 *
 * Three phases, so that nothing is written unless everything checks out:
 *   1. read: config.json, generation_config.json, shards (index or single file), tokenizer files;
 *   2. plan: the list of output tensors (single-mode names) with their source tensor, the row
 *      slice of it (fused tensors are split along dim 0) and the output type; every source must
 *      exist with exactly the expected shape and no source may be left over;
 *   3. write: metadata, tensor declarations, then the data, converted in row chunks of a few MB
 *      and streamed through the writer.
 */
#include "convert.h"

#include "hfconfig.h"
#include "safetensors.h"

#include "ggx/error.h"
#include "ggx/ggxfile.h"
#include "ggx/keys.h"
#include "ggx/progress.h"
#include "ggx/quant_policy.h"
#include "ggx/quants.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_LEN 256
#define CHUNK_ELEMS (1 << 22) /* 4M elements (16 MB f32) per conversion step */

/* A source tensor the checkpoint must (or may) contain. */
typedef struct src_req {
    char name[NAME_MAX_LEN];
    char alias[NAME_MAX_LEN]; /* older name (query/key/value) or "" */
    int n_dims;
    int64_t dims[2];
    int optional;
    const ggx_st_tensor *t; /* resolved */
    int shard;              /* index of the shard holding t */
} src_req;

/* An output tensor. */
typedef struct out_t {
    char name[NAME_MAX_LEN];
    int big;      /* gets the requested type */
    int n_dims;
    int64_t dims[2];
    int req;      /* index into reqs */
    int64_t row0; /* first row (dim 0) of the source */
    enum ggx_type type;
} out_t;

typedef struct conv {
    const char *dir;
    ggx_hf_config cfg;
    ggx_hf_tokinfo tok;
    char *tok_json;
    size_t tok_json_len;
    ggx_st_file **shards;
    int n_shards;
    uint8_t **used; /* per shard, per tensor: claimed by a req */
    src_req *reqs;
    int n_reqs, cap_reqs;
    out_t *outs;
    int n_outs, cap_outs;
    int fused, renamed;
} conv;

static void path_join(char *buf, size_t cap, const char *dir, const char *file) {
    size_t n = strlen(dir);
    snprintf(buf, cap, "%s%s%s", dir, (n && dir[n - 1] == '/') ? "" : "/", file);
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

ggx_convert_params ggx_convert_default_params(void) {
    ggx_convert_params p;
    memset(&p, 0, sizeof p);
    p.out_type = -1;
    return p;
}

/* ============================================================ phase 1: read ============ */

static ggx_status read_json_file(const char *dir, const char *file, int required, char **buf,
                                 size_t *len) {
    char path[4096];
    path_join(path, sizeof path, dir, file);
    *buf = NULL;
    *len = 0;
    if (!required && !file_exists(path)) return GGX_OK;
    return ggx_read_file(path, (size_t)256 << 20, buf, len);
}

static ggx_status open_shard(conv *c, const char *file) {
    for (int i = 0; i < c->n_shards; i++) {
        const char *p = strrchr(c->shards[i]->path, '/');
        if (!strcmp(p ? p + 1 : c->shards[i]->path, file)) return GGX_OK;
    }
    if (!*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
        return ggx_fail(GGX_ERR_FORMAT, "model.safetensors.index.json: shard name \"%.200s\" is"
                        " not a plain file name", file);
    ggx_st_file **ns = realloc(c->shards, (size_t)(c->n_shards + 1) * sizeof *ns);
    uint8_t **nu = realloc(c->used, (size_t)(c->n_shards + 1) * sizeof *nu);
    if (ns) c->shards = ns;
    if (nu) c->used = nu;
    if (!ns || !nu) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    char path[4096];
    path_join(path, sizeof path, c->dir, file);
    if (!file_exists(path))
        return ggx_fail(GGX_ERR_IO, "shard %s is missing (listed in model.safetensors.index.json)", path);
    ggx_st_file *st;
    ggx_status s = ggx_st_open(path, &st);
    if (s) return s;
    c->shards[c->n_shards] = st;
    c->used[c->n_shards] = calloc(st->n_tensors ? st->n_tensors : 1, 1);
    c->n_shards++;
    if (!c->used[c->n_shards - 1]) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    return GGX_OK;
}

static const ggx_st_tensor *find_src(const conv *c, const char *name, int *shard) {
    for (int i = 0; i < c->n_shards; i++) {
        const ggx_st_tensor *t = ggx_st_find(c->shards[i], name);
        if (t) {
            if (shard) *shard = i;
            return t;
        }
    }
    return NULL;
}

static ggx_status open_shards(conv *c) {
    char path[4096];
    path_join(path, sizeof path, c->dir, "model.safetensors.index.json");
    if (!file_exists(path)) {
        path_join(path, sizeof path, c->dir, "model.safetensors");
        if (!file_exists(path))
            return ggx_fail(GGX_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json"
                            " (only safetensors checkpoints are supported)", c->dir);
        return open_shard(c, "model.safetensors");
    }
    char *buf;
    size_t len;
    ggx_status s = ggx_read_file(path, (size_t)256 << 20, &buf, &len);
    if (s) return s;
    cJSON *o = cJSON_ParseWithLength(buf, len);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(o, "weight_map");
    if (!o || !cJSON_IsObject(wm) || !cJSON_GetArraySize(wm)) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: needs a non-empty object 'weight_map'", path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e)) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: weight_map entry '%.200s' is not a file name", path, e->string);
            goto done;
        }
        if ((s = open_shard(c, e->valuestring))) goto done;
    }
    /* every tensor must be in the shard the index names, and nowhere twice */
    cJSON_ArrayForEach(e, wm) {
        int sh = -1;
        const ggx_st_tensor *t = find_src(c, e->string, &sh);
        const char *p = t ? strrchr(c->shards[sh]->path, '/') : NULL;
        if (!t || strcmp(p ? p + 1 : c->shards[sh]->path, e->valuestring)) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%.200s' is not in shard %s as the index says",
                         path, e->string, e->valuestring);
            goto done;
        }
    }
    for (int i = 0; i < c->n_shards; i++)
        for (size_t j = 0; j < c->shards[i]->n_tensors; j++) {
            int sh = -1;
            find_src(c, c->shards[i]->tensors[j].name, &sh);
            if (sh != i) {
                s = ggx_fail(GGX_ERR_FORMAT, "tensor '%s' is in two shards (%s and %s)",
                             c->shards[i]->tensors[j].name, c->shards[sh]->path, c->shards[i]->path);
                goto done;
            }
        }
done:
    cJSON_Delete(o);
    free(buf);
    return s;
}

static ggx_status read_inputs(conv *c) {
    char *buf = NULL, path[4096];
    size_t len;
    ggx_status s;
    path_join(path, sizeof path, c->dir, "config.json");
    if (!file_exists(path))
        return ggx_fail(GGX_ERR_IO, "%s: config.json is missing (is this a Hugging Face checkpoint"
                        " directory?)", c->dir);
    if ((s = read_json_file(c->dir, "config.json", 1, &buf, &len))) return s;
    s = ggx_hf_config_parse(buf, len, path, &c->cfg);
    free(buf);
    if (s) return s;
    if ((s = read_json_file(c->dir, "generation_config.json", 0, &buf, &len))) return s;
    if (buf) {
        path_join(path, sizeof path, c->dir, "generation_config.json");
        s = ggx_hf_genconfig_apply(buf, len, path, &c->cfg);
        free(buf);
        if (s) return s;
    }
    if ((s = open_shards(c))) return s;
    path_join(path, sizeof path, c->dir, "tokenizer.json");
    if (!file_exists(path))
        return ggx_fail(GGX_ERR_IO, "%s: tokenizer.json is missing (the .ggx carries its tokenizer)",
                        c->dir);
    if ((s = ggx_read_file(path, (size_t)256 << 20, &c->tok_json, &c->tok_json_len))) return s;
    if ((s = ggx_hf_tokenizer_parse(c->tok_json, c->tok_json_len, path, &c->tok))) return s;
    if ((s = read_json_file(c->dir, "tokenizer_config.json", 0, &buf, &len))) return s;
    if (buf) {
        path_join(path, sizeof path, c->dir, "tokenizer_config.json");
        s = ggx_hf_tokconfig_apply(buf, len, path, &c->tok);
        free(buf);
        if (s) return s;
    }
    if (!c->tok.chat_template) { /* newer transformers save it as its own file */
        if ((s = read_json_file(c->dir, "chat_template.jinja", 0, &buf, &len))) return s;
        c->tok.chat_template = buf;
    }
    if (c->tok.n_vocab > c->cfg.vocab_size)
        return ggx_fail(GGX_ERR_SHAPE, "tokenizer.json has %" PRId64 " ids but the model's"
                        " vocab_size is %" PRId64, c->tok.n_vocab, c->cfg.vocab_size);
    return GGX_OK;
}

/* ============================================================ phase 2: plan ============ */

static int add_req(conv *c, const char *name, const char *alias, int nd, int64_t d0, int64_t d1,
                   int optional) {
    for (int i = 0; i < c->n_reqs; i++)
        if (!strcmp(c->reqs[i].name, name)) return i;
    if (c->n_reqs == c->cap_reqs) {
        int cap = c->cap_reqs ? c->cap_reqs * 2 : 256;
        src_req *n = realloc(c->reqs, (size_t)cap * sizeof *n);
        if (!n) return -1;
        c->reqs = n;
        c->cap_reqs = cap;
    }
    src_req *r = &c->reqs[c->n_reqs];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->alias, sizeof r->alias, "%s", alias ? alias : "");
    r->n_dims = nd;
    r->dims[0] = d0;
    r->dims[1] = d1;
    r->optional = optional;
    return c->n_reqs++;
}

/* One output tensor `name` ([d0, d1] or [d0]) taken from rows [row0, row0 + d0) of source
 * `src` (which has src_rows rows). */
static ggx_status add_out(conv *c, const char *name, int big, int nd, int64_t d0, int64_t d1,
                          const char *src, const char *alias, int64_t row0, int64_t src_rows,
                          int optional) {
    int r = add_req(c, src, alias, nd, src_rows, d1, optional);
    if (r < 0) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    if (c->n_outs == c->cap_outs) {
        int cap = c->cap_outs ? c->cap_outs * 2 : 256;
        out_t *n = realloc(c->outs, (size_t)cap * sizeof *n);
        if (!n) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
        c->outs = n;
        c->cap_outs = cap;
    }
    out_t *o = &c->outs[c->n_outs++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->big = big;
    o->n_dims = nd;
    o->dims[0] = d0;
    o->dims[1] = d1;
    o->req = r;
    o->row0 = row0;
    return GGX_OK;
}

/* A block's linear layer (weight [rows, in], bias [rows] when use_bias): in single mode from
 * its own tensor (optionally under an older alias), in fused mode from rows of a fused one. */
static ggx_status add_linear(conv *c, int blk, const char *single, const char *alias, int big,
                             int64_t rows, int64_t in, const char *fused, int64_t frow0,
                             int64_t frows, int with_bias) {
    char out[NAME_MAX_LEN], src[NAME_MAX_LEN], al[NAME_MAX_LEN];
    const char *sfx[2] = {"weight", "bias"};
    ggx_status s;
    for (int b = 0; b < (with_bias ? 2 : 1); b++) {
        snprintf(out, sizeof out, "backbone.blocks.%d.%s.%s", blk, single, sfx[b]);
        int nd = b ? 1 : 2;
        if (c->fused && fused) {
            snprintf(src, sizeof src, "backbone.blocks.%d.%s.%s", blk, fused, sfx[b]);
            s = add_out(c, out, big && !b, nd, rows, b ? 1 : in, src, NULL, frow0, frows, 0);
        } else {
            snprintf(al, sizeof al, "backbone.blocks.%d.%s.%s", blk, alias ? alias : "", sfx[b]);
            s = add_out(c, out, big && !b, nd, rows, b ? 1 : in, out, alias ? al : NULL, 0, rows, 0);
        }
        if (s) return s;
    }
    return GGX_OK;
}

static ggx_status add_norm(conv *c, int blk, const char *name, int64_t n, int with_bias) {
    char out[NAME_MAX_LEN];
    ggx_status s;
    snprintf(out, sizeof out, "backbone.blocks.%d.%s.weight", blk, name);
    if ((s = add_out(c, out, 0, 1, n, 1, out, NULL, 0, n, 0))) return s;
    if (!with_bias) return GGX_OK;
    snprintf(out, sizeof out, "backbone.blocks.%d.%s.bias", blk, name);
    return add_out(c, out, 0, 1, n, 1, out, NULL, 0, n, 0);
}

static ggx_status build_plan(conv *c) {
    const ggx_hf_config *h = &c->cfg;
    const int64_t E = h->embedding_dim, V = h->vocab_size, NH = h->num_heads, QK = h->qk_dim,
                  VD = h->v_dim, F = h->ffn_dim;
    const int ub = h->use_bias;
    c->fused = find_src(c, "backbone.blocks.0.mlstm_layer.qkv_opreact.weight", NULL) != NULL;
    ggx_status s;
    /* xlstm_large's own state dict calls the embedding "embedding.weight" */
    if ((s = add_out(c, "backbone.embeddings.weight", 1, 2, V, E, "backbone.embeddings.weight",
                     "embedding.weight", 0, V, 0)))
        return s;
    for (int b = 0; b < h->num_blocks; b++) {
        const int64_t qkvo = 2 * QK + 2 * VD;
        if ((s = add_norm(c, b, "norm_mlstm", E, ub)) ||
            (s = add_linear(c, b, "mlstm_layer.q", "mlstm_layer.query", 1, QK, E,
                            "mlstm_layer.qkv_opreact", 0, qkvo, ub)) ||
            (s = add_linear(c, b, "mlstm_layer.k", "mlstm_layer.key", 1, QK, E,
                            "mlstm_layer.qkv_opreact", QK, qkvo, ub)) ||
            (s = add_linear(c, b, "mlstm_layer.v", "mlstm_layer.value", 1, VD, E,
                            "mlstm_layer.qkv_opreact", 2 * QK, qkvo, ub)) ||
            (s = add_linear(c, b, "mlstm_layer.ogate_preact", NULL, 1, VD, E,
                            "mlstm_layer.qkv_opreact", 2 * QK + VD, qkvo, ub)) ||
            /* gate biases always exist (xlstm-spec §2) */
            (s = add_linear(c, b, "mlstm_layer.igate_preact", NULL, 0, NH, E,
                            "mlstm_layer.ifgate_preact", 0, 2 * NH, 1)) ||
            (s = add_linear(c, b, "mlstm_layer.fgate_preact", NULL, 0, NH, E,
                            "mlstm_layer.ifgate_preact", NH, 2 * NH, 1)) ||
            (s = add_norm(c, b, "mlstm_layer.multihead_norm", VD, ub)) ||
            (s = add_linear(c, b, "mlstm_layer.out_proj", NULL, 1, E, VD, NULL, 0, 0, ub)) ||
            (s = add_norm(c, b, "norm_ffn", E, ub)) ||
            (s = add_linear(c, b, "ffn.proj_up_gate", NULL, 1, F, E, "ffn.proj_up_gate_z", 0,
                            2 * F, ub)) ||
            (s = add_linear(c, b, "ffn.proj_up", NULL, 1, F, E, "ffn.proj_up_gate_z", F, 2 * F, ub)) ||
            (s = add_linear(c, b, "ffn.proj_down", NULL, 1, E, F, NULL, 0, 0, ub)))
            return s;
    }
    if ((s = add_out(c, "backbone.out_norm.weight", 0, 1, E, 1, "backbone.out_norm.weight", NULL,
                     0, E, 0)) ||
        (s = add_out(c, "backbone.out_norm.bias", 0, 1, E, 1, "backbone.out_norm.bias", NULL, 0,
                     E, 1)) ||
        (s = add_out(c, "lm_head.weight", 1, 2, V, E, "lm_head.weight", NULL, 0, V,
                     h->tie_word_embeddings)))
        return s;
    return GGX_OK;
}

static ggx_status resolve(conv *c) {
    char want[160], have[160];
    for (int i = 0; i < c->n_reqs; i++) {
        src_req *r = &c->reqs[i];
        int sh = -1, sh2 = -1;
        const ggx_st_tensor *t = find_src(c, r->name, &sh);
        const ggx_st_tensor *t2 = r->alias[0] ? find_src(c, r->alias, &sh2) : NULL;
        ggx_st_shape_str(r->n_dims, r->dims, want, sizeof want);
        if (t && t2)
            return ggx_fail(GGX_ERR_FORMAT, "tensor %s appears under both names '%s' and '%s'",
                            r->name, r->name, r->alias);
        if (t2) {
            t = t2;
            sh = sh2;
            c->renamed = 1;
        }
        if (!t) {
            if (r->optional) continue;
            return ggx_fail(GGX_ERR_SHAPE, "tensor %s is missing from the checkpoint (expected %s%s%s)",
                            r->name, want, r->alias[0] ? "; also looked for " : "", r->alias);
        }
        if (t->n_dims != r->n_dims || t->dims[0] != r->dims[0] ||
            (r->n_dims == 2 && t->dims[1] != r->dims[1]))
            return ggx_fail(GGX_ERR_SHAPE, "tensor %s: expected %s, file has %s", t->name, want,
                            ggx_st_shape_str(t->n_dims, t->dims, have, sizeof have));
        r->t = t;
        r->shard = sh;
        c->used[sh][t - c->shards[sh]->tensors] = 1;
    }
    for (int i = 0; i < c->n_shards; i++)
        for (size_t j = 0; j < c->shards[i]->n_tensors; j++)
            if (!c->used[i][j]) {
                const ggx_st_tensor *t = &c->shards[i]->tensors[j];
                return ggx_fail(GGX_ERR_SHAPE, "unexpected tensor %s %s in %s (not part of an xlstm"
                                " model with this config.json: num_blocks %" PRId64 ", use_bias %s,"
                                " weight_mode %s)", t->name,
                                ggx_st_shape_str(t->n_dims, t->dims, have, sizeof have),
                                c->shards[i]->path, c->cfg.num_blocks,
                                c->cfg.use_bias ? "true" : "false", c->fused ? "fused" : "single");
            }
    /* drop optional outputs whose source is absent (tied lm_head, out_norm bias) */
    int k = 0;
    for (int i = 0; i < c->n_outs; i++)
        if (c->reqs[c->outs[i].req].t) c->outs[k++] = c->outs[i];
    c->n_outs = k;
    return GGX_OK;
}

/* Types come from the shared policy (ggx/quant_policy.h, also used by `ggx quantize`): 1-D
 * tensors and the gate projections stay f32, other matrices get the base type (with q8_0 for
 * embeddings and lm_head under a 4-bit base, f16 for rows that do not split into blocks), and
 * --tensor-type overrides come first. With no --type the base is each tensor's own dtype. */
static ggx_status choose_types(conv *c, const ggx_convert_params *p, ggx_convert_stats *st) {
    ggx_quant_policy *pol = NULL;
    ggx_status s = GGX_OK;
    if (p->out_type >= 0 || p->n_overrides > 0) {
        enum ggx_type base = p->out_type >= 0 ? (enum ggx_type)p->out_type : c->reqs[c->outs[0].req].t->dtype;
        if ((s = ggx_quant_policy_create(base, p->overrides, p->n_overrides, &pol))) return s;
    }
    int used[GGX_TYPE_COUNT] = {0};
    for (int i = 0; i < c->n_outs && !s; i++) {
        out_t *o = &c->outs[i];
        const char *why = "";
        if (pol) s = ggx_quant_policy_type(pol, o->name, o->n_dims, o->dims, &o->type, &why);
        else o->type = ggx_quant_default_type(c->reqs[o->req].t->dtype, o->name, o->n_dims, o->dims, &why);
        if (!s && !strcmp(why, "row % block")) st->n_fallback++;
        if (!s) used[o->type] = 1;
    }
    ggx_quant_policy_free(pol);
    if (s) return s;
    /* make sure every quantizer needed exists before anything is written */
    for (int t = 0; t < GGX_TYPE_COUNT; t++) {
        const ggx_type_traits *tr = ggx_type_traits_of((enum ggx_type)t);
        if (!used[t] || !tr->is_quantized) continue;
        float x[256];
        uint8_t q[1024];
        for (int i = 0; i < tr->blck_size && i < 256; i++) x[i] = (float)(i % 7) - 3.0f;
        if (tr->blck_size > 256 || tr->type_size > sizeof q ||
            ggx_quantize_row((enum ggx_type)t, x, q, tr->blck_size) != 0)
            return ggx_fail(GGX_ERR_UNSUPPORTED, "type %s cannot be produced yet (no quantizer"
                            " in this build)", tr->name);
    }
    return GGX_OK;
}

/* ============================================================ phase 3: write =========== */

static ggx_status write_meta(conv *c, ggx_writer *w, const ggx_convert_params *p, const char *big_name,
                             ggx_convert_stats *st) {
    const ggx_hf_config *h = &c->cfg;
    char src[1024], name[256];
    const char *base = strrchr(c->dir, '/');
    size_t dl = strlen(c->dir);
    if (base && base[1] == 0) { /* trailing slash: take the component before it */
        size_t e = dl - 1;
        while (e > 0 && c->dir[e] == '/') e--;
        size_t b = e;
        while (b > 0 && c->dir[b - 1] != '/') b--;
        snprintf(name, sizeof name, "%.*s", (int)(e - b + 1), c->dir + b);
    } else {
        snprintf(name, sizeof name, "%s", base ? base + 1 : c->dir);
    }
    snprintf(src, sizeof src, "huggingface safetensors (%s, %d shard%s, weight_mode %s%s)",
             st->src_dtype, c->n_shards, c->n_shards == 1 ? "" : "s", c->fused ? "fused" : "single",
             c->renamed ? ", query/key/value names" : "");
    (void)p;
    ggx_status s;
    if ((s = ggx_writer_set_str(w, GGX_KEY_ARCH, "xlstm")) ||
        (s = ggx_writer_set_str(w, GGX_KEY_NAME, h->name[0] ? h->name : name)) ||
        (s = ggx_writer_set_str(w, GGX_KEY_FILE_TYPE, big_name)) ||
        (s = ggx_writer_set_str(w, GGX_KEY_SOURCE, src)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_QUANT_VERSION, 1)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_VOCAB, (uint32_t)h->vocab_size)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_EMBD, (uint32_t)h->embedding_dim)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_BLOCKS, (uint32_t)h->num_blocks)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_HEADS, (uint32_t)h->num_heads)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_QK_DIM, (uint32_t)h->qk_dim)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_V_DIM, (uint32_t)h->v_dim)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_QK_HEAD_DIM, (uint32_t)h->qk_head_dim)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_V_HEAD_DIM, (uint32_t)h->v_head_dim)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_FFN_DIM, (uint32_t)h->ffn_dim)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_GATE_CAP, (float)h->gate_soft_cap)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_LOGIT_CAP, (float)h->output_logit_soft_cap)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_NORM_EPS, (float)h->norm_eps)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_EPS, (float)h->eps)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_CHUNK, (uint32_t)h->chunk_size)) ||
        (s = ggx_writer_set_bool(w, GGX_KEY_XL_USE_BIAS, h->use_bias)) ||
        (s = ggx_writer_set_bool(w, GGX_KEY_XL_OUT_NORM, h->add_out_norm)) ||
        (s = ggx_writer_set_bool(w, GGX_KEY_XL_TIE_EMB, h->tie_word_embeddings)) ||
        (s = ggx_writer_set_str(w, GGX_KEY_XL_WEIGHT_MODE, "single")) ||
        (s = ggx_writer_set_str(w, GGX_KEY_XL_SRC_WMODE, c->fused ? "fused" : "single")) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_MAX_CHUNKSZ, (uint32_t)h->max_inference_chunksize)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_QK_FACTOR, (float)h->qk_dim_factor)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_V_FACTOR, (float)h->v_dim_factor)) ||
        (s = ggx_writer_set_f32(w, GGX_KEY_XL_FFN_FACTOR, (float)h->ffn_proj_factor)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_XL_FFN_ROUND, (uint32_t)h->ffn_round_up_to_multiple_of)) ||
        (s = ggx_writer_set_blob(w, GGX_KEY_TOK_JSON, c->tok_json, c->tok_json_len)) ||
        (s = ggx_writer_set_str(w, GGX_KEY_TOK_MODEL, c->tok.model_type)) ||
        (s = ggx_writer_set_u32(w, GGX_KEY_TOK_N_VOCAB, (uint32_t)c->tok.n_vocab)) ||
        (s = ggx_writer_set_i32(w, GGX_KEY_TOK_BOS, (int32_t)h->bos_id)) ||
        (s = ggx_writer_set_i32(w, GGX_KEY_TOK_EOS, (int32_t)h->eos_id)) ||
        (s = ggx_writer_set_i32(w, GGX_KEY_TOK_PAD, (int32_t)h->pad_id)) ||
        (s = ggx_writer_set_i32(w, GGX_KEY_TOK_EOT, (int32_t)c->tok.eot_id)) ||
        /* xlstm-spec §7: training documents start with id 0; prepend bos to a fresh context */
        (s = ggx_writer_set_bool(w, GGX_KEY_TOK_ADD_BOS, h->bos_id >= 0)))
        return s;
    if (c->tok.chat_template && (s = ggx_writer_set_str(w, GGX_KEY_TOK_CHAT_TMPL, c->tok.chat_template)))
        return s;
    return GGX_OK;
}

/* One thread's share of a chunk: rows [r0, r1) of src (dtype st) converted to `out`. */
typedef struct conv_job {
    enum ggx_type st, out;
    const uint8_t *src; /* the chunk's first row */
    float *f32;         /* scratch for the whole chunk */
    uint8_t *dst;       /* output for the whole chunk */
    int64_t r0, r1, row_len;
    int64_t bad_row;    /* first row the quantizer refused, or -1 */
} conv_job;

static void *conv_job_run(void *arg) {
    conv_job *j = arg;
    const int64_t L = j->row_len, n = (j->r1 - j->r0) * L;
    const size_t es = ggx_type_traits_of(j->st)->type_size, rs = ggx_row_size(j->out, L);
    float *f = j->f32 + j->r0 * L;
    uint8_t *dst = j->dst + (size_t)j->r0 * rs;
    j->bad_row = -1;
    ggx_to_f32(j->st, j->src + (size_t)(j->r0 * L) * es, f, n);
    switch (j->out) {
    case GGX_TYPE_F32: memcpy(dst, f, (size_t)n * 4); break;
    case GGX_TYPE_F16: {
        ggx_fp16_t *d = (ggx_fp16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = ggx_f32_to_fp16(f[i]);
        break;
    }
    case GGX_TYPE_BF16: {
        ggx_bf16_t *d = (ggx_bf16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = ggx_f32_to_bf16(f[i]);
        break;
    }
    default:
        for (int64_t r = 0; r < j->r1 - j->r0; r++)
            if (ggx_quantize_row(j->out, f + r * L, dst + (size_t)r * rs, L) != 0) {
                j->bad_row = j->r0 + r;
                break;
            }
        break;
    }
    return NULL;
}

/* Convert `rows` rows of src to `out` on up to n_threads threads (quantizing is the slow part
 * of a conversion; ggx_quantize_row is pure, so rows split freely). Returns the first row the
 * quantizer refused, or -1. */
#define MAX_THREADS 64
static int64_t convert_rows(enum ggx_type st, const uint8_t *src, enum ggx_type out, float *f32,
                            uint8_t *dst, int64_t rows, int64_t row_len, int n_threads) {
    conv_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int nt = n_threads < 1 ? 1 : n_threads > MAX_THREADS ? MAX_THREADS : n_threads;
    if (nt > rows) nt = (int)rows;
    if (rows * row_len < (1 << 16)) nt = 1; /* not worth a thread */
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < nt; i++) {
        jobs[i] = (conv_job){st, out, src, f32, dst, rows * i / nt, rows * (i + 1) / nt, row_len, -1};
        if (i > 0) started[i] = pthread_create(&tid[i], NULL, conv_job_run, &jobs[i]) == 0;
    }
    conv_job_run(&jobs[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else conv_job_run(&jobs[i]); /* could not start a thread: do its share here */
    }
    for (int i = 0; i < nt; i++)
        if (jobs[i].bad_row >= 0) return jobs[i].bad_row;
    return -1;
}

static ggx_status write_all(conv *c, const char *out_path, const ggx_convert_params *p,
                            ggx_convert_stats *st) {
    ggx_writer *w = NULL;
    float *f32 = NULL;
    uint8_t *obuf = NULL;
    ggx_status s;
    /* general.file_type: the --type base, else the type the first big matrix got */
    const char *big_name = p->out_type >= 0 ? ggx_type_name((enum ggx_type)p->out_type) : NULL;
    for (int i = 0; i < c->n_outs && !big_name; i++)
        if (c->outs[i].big) big_name = ggx_type_name(c->outs[i].type);
    if ((s = ggx_writer_open(out_path, &w))) return s;
    if (p->on_temp_file) p->on_temp_file(p->progress_ud, ggx_writer_temp_path(w));
    if ((s = write_meta(c, w, p, big_name ? big_name : "f32", st))) goto fail;
    uint64_t total = 0, done = 0;
    int64_t max_row = 1;
    for (int i = 0; i < c->n_outs; i++) {
        const out_t *o = &c->outs[i];
        if ((s = ggx_writer_add_tensor(w, o->name, o->type, o->n_dims, o->dims))) goto fail;
        const ggx_st_tensor *t = c->reqs[o->req].t;
        total += (uint64_t)t->nbytes / (uint64_t)t->dims[0] * (uint64_t)o->dims[0];
        if (o->n_dims == 2 && o->dims[1] > max_row) max_row = o->dims[1];
    }
    /* one conversion step holds at least one row */
    int64_t cap = max_row > CHUNK_ELEMS ? max_row : CHUNK_ELEMS;
    f32 = malloc((size_t)cap * sizeof *f32);
    obuf = malloc((size_t)cap * sizeof *f32);
    if (!f32 || !obuf) {
        s = ggx_fail(GGX_ERR_NOMEM, "out of memory (conversion buffers)");
        goto fail;
    }
    st->src_bytes = total;
    int nthreads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < c->n_outs; i++) {
        const out_t *o = &c->outs[i];
        const ggx_st_tensor *t = c->reqs[o->req].t;
        const int64_t row_len = o->n_dims == 2 ? o->dims[1] : 1;
        const size_t es = ggx_type_traits_of(t->dtype)->type_size;
        const uint8_t *src = t->data + (size_t)(o->row0 * row_len) * es;
        const int64_t rows_per = row_len >= cap ? 1 : cap / row_len;
        const size_t out_row = ggx_row_size(o->type, row_len);
        for (int64_t r = 0; r < o->dims[0]; r += rows_per) {
            int64_t nr = o->dims[0] - r < rows_per ? o->dims[0] - r : rows_per;
            const uint8_t *sp = src + (size_t)(r * row_len) * es;
            if (t->dtype == o->type) { /* same type: bytes straight from the mapping */
                s = ggx_writer_write(w, sp, (size_t)(nr * row_len) * es);
            } else {
                int64_t bad = convert_rows(t->dtype, sp, o->type, f32, obuf, nr, row_len, nthreads);
                if (bad >= 0) {
                    s = ggx_fail(GGX_ERR_FORMAT, "tensor %s: row %" PRId64 " cannot be quantized to %s"
                                 " (NaN/Inf or a value beyond the f16 scale range in the checkpoint)",
                                 o->name, o->row0 + r + bad, ggx_type_name(o->type));
                    goto fail;
                }
                s = ggx_writer_write(w, obuf, out_row * (size_t)nr);
            }
            if (s) goto fail;
            /* these source rows are done: drop them from our resident set (the page cache keeps
             * them), so memory stays at a few chunks whatever the model size */
            ggx_st_release(c->shards[c->reqs[o->req].shard], sp, (uint64_t)(nr * row_len) * es);
            done += (uint64_t)(nr * row_len) * es;
            if (p->progress) p->progress(p->progress_ud, done, total);
        }
        st->n_tensors++;
        st->n_by_type[o->type]++;
        st->params_by_type[o->type] += (uint64_t)(o->dims[0] * row_len);
        st->bytes_by_type[o->type] += out_row * (uint64_t)o->dims[0];
        st->n_params += (uint64_t)(o->dims[0] * row_len);
        st->data_bytes += out_row * (uint64_t)o->dims[0];
    }
    free(f32);
    free(obuf);
    f32 = NULL;
    obuf = NULL;
    s = ggx_writer_finish(w);
    w = NULL;
    if (s) goto fail;
    struct stat sb;
    if (stat(out_path, &sb) == 0) st->file_bytes = (uint64_t)sb.st_size;
    return GGX_OK;
fail:
    free(f32);
    free(obuf);
    ggx_writer_abort(w);
    return s;
}

/* ============================================================ entry point =============== */

static void conv_free(conv *c) {
    for (int i = 0; i < c->n_shards; i++) {
        ggx_st_close(c->shards[i]);
        free(c->used[i]);
    }
    free(c->shards);
    free(c->used);
    free(c->reqs);
    free(c->outs);
    free(c->tok_json);
    ggx_hf_tokinfo_free(&c->tok);
}

ggx_status ggx_convert_hf(const char *hf_dir, const char *out_path, const ggx_convert_params *p,
                          ggx_convert_stats *stats) {
    ggx_convert_params dp = ggx_convert_default_params();
    ggx_convert_stats local;
    if (!p) p = &dp;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    stats->big_type = -1;
    double t0 = ggx_time_s();
    if (!hf_dir || !out_path)
        return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_convert_hf: missing input or output path");
    if (p->out_type >= 0 &&
        (!ggx_type_valid((uint32_t)p->out_type) ||
         (p->out_type != GGX_TYPE_F32 && p->out_type != GGX_TYPE_F16 && p->out_type != GGX_TYPE_BF16 &&
          !ggx_type_traits_of((enum ggx_type)p->out_type)->is_quantized)))
        return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_convert_hf: output type %s is not a weight type"
                        " (f32, f16, bf16 or a quantized type)", ggx_type_name((enum ggx_type)p->out_type));
    conv c;
    memset(&c, 0, sizeof c);
    c.dir = hf_dir;
    ggx_status s;
    struct stat sb;
    if (stat(hf_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        s = ggx_fail(GGX_ERR_IO, "%s: not a directory", hf_dir);
        goto done;
    }
    if ((s = read_inputs(&c)) || (s = build_plan(&c)) || (s = resolve(&c)) ||
        (s = choose_types(&c, p, stats)))
        goto done;
    /* source dtype summary */
    const char *sd = NULL;
    for (int i = 0; i < c.n_outs; i++) {
        const char *d = ggx_st_dtype_name(c.reqs[c.outs[i].req].t->dtype);
        if (!sd) sd = d;
        else if (strcmp(sd, d)) sd = "mixed";
    }
    snprintf(stats->src_dtype, sizeof stats->src_dtype, "%s", sd ? sd : "?");
    snprintf(stats->source_weight_mode, sizeof stats->source_weight_mode, "%s",
             c.fused ? "fused" : "single");
    stats->renamed_qkv = c.renamed;
    stats->n_shards = c.n_shards;
    for (int i = 0; i < c.n_outs; i++)
        if (c.outs[i].big) {
            if (stats->big_type == -1) stats->big_type = (int)c.outs[i].type;
            else if (stats->big_type != (int)c.outs[i].type) stats->big_type = -2;
        }
    if (stats->big_type == -2) stats->big_type = -1;
    s = write_all(&c, out_path, p, stats);
done:
    conv_free(&c);
    stats->seconds = ggx_time_s() - t0;
    return s;
}
