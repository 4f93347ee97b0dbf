/* hfconfig.c — Hugging Face config / tokenizer JSON reading (see hfconfig.h). */
#include "hfconfig.h"

#include "ggx/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ggx_status ggx_read_file(const char *path, size_t max_bytes, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ggx_fail(GGX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ggx_status s = GGX_OK;
    char *b = NULL;
    long n = -1;
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        s = ggx_fail(GGX_ERR_IO, "%s: cannot determine the size: %s", path, strerror(errno));
        goto done;
    }
    if ((unsigned long)n > max_bytes) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: %ld bytes, more than the %zu allowed", path, n, max_bytes);
        goto done;
    }
    if (!(b = malloc((size_t)n + 1))) {
        s = ggx_fail(GGX_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(b, 1, (size_t)n, fp) != (size_t)n) {
        s = ggx_fail(GGX_ERR_IO, "%s: read failed", path);
        goto done;
    }
    b[n] = 0;
    *buf = b;
    *len = (size_t)n;
    b = NULL;
done:
    free(b);
    fclose(fp);
    return s;
}

/* ---------------------------------------------------------------- typed field access */

/* json as a JSON object in *o (free with cJSON_Delete, also on failure). */
static ggx_status parse_object(const char *json, size_t len, const char *what, cJSON **o) {
    *o = cJSON_ParseWithLength(json, len);
    if (!*o || !cJSON_IsObject(*o)) return ggx_fail(GGX_ERR_FORMAT, "%s: not a JSON object", what);
    return GGX_OK;
}

/* j is a token id: an integral number in [0, 2^31). */
static bool is_id(const cJSON *j) {
    return j && cJSON_IsNumber(j) && floor(j->valuedouble) == j->valuedouble &&
           j->valuedouble >= 0 && j->valuedouble <= 2147483647.0;
}

static ggx_status get_int(const cJSON *o, const char *what, const char *key, const char *alias,
                          int64_t lo, int64_t hi, int required, int64_t *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j && alias) j = cJSON_GetObjectItemCaseSensitive(o, alias);
    if (!j || cJSON_IsNull(j)) {
        if (required) return ggx_fail(GGX_ERR_FORMAT, "%s: required field '%s' is missing", what, key);
        return GGX_OK;
    }
    double d = j->valuedouble;
    if (!cJSON_IsNumber(j) || floor(d) != d || d < (double)lo || d > (double)hi)
        return ggx_fail(GGX_ERR_FORMAT, "%s: '%s' must be an integer in %lld..%lld", what, key,
                        (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return GGX_OK;
}

static ggx_status get_num(const cJSON *o, const char *what, const char *key, double lo, double hi,
                          double *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return GGX_OK;
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi))
        return ggx_fail(GGX_ERR_FORMAT, "%s: '%s' must be a number in %g..%g", what, key, lo, hi);
    *out = j->valuedouble;
    return GGX_OK;
}

static ggx_status get_bool(const cJSON *o, const char *what, const char *key, bool *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return GGX_OK;
    if (!cJSON_IsBool(j)) return ggx_fail(GGX_ERR_FORMAT, "%s: '%s' must be true or false", what, key);
    *out = cJSON_IsTrue(j);
    return GGX_OK;
}

/* A token id: integer, null (-> -1), or a list (first element: HF allows eos lists). */
static ggx_status get_id(const cJSON *o, const char *what, const char *key, int64_t *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j) return GGX_OK;
    if (cJSON_IsNull(j)) {
        *out = -1;
        return GGX_OK;
    }
    if (cJSON_IsArray(j)) j = cJSON_GetArrayItem(j, 0);
    if (!is_id(j))
        return ggx_fail(GGX_ERR_FORMAT, "%s: '%s' must be a token id (integer >= 0, a list, or"
                        " null)", what, key);
    *out = (int64_t)j->valuedouble;
    return GGX_OK;
}

/* ---------------------------------------------------------------- config.json */

#define LIM ((int64_t)1 << 30)

ggx_status ggx_hf_config_parse(const char *json, size_t len, const char *what, ggx_hf_config *c) {
    memset(c, 0, sizeof *c);
    /* transformers xLSTMConfig defaults */
    c->qk_dim_factor = 0.5;
    c->v_dim_factor = 1.0;
    c->ffn_proj_factor = 2.667;
    c->ffn_round_up_to_multiple_of = 64;
    c->gate_soft_cap = 15.0;
    c->output_logit_soft_cap = 30.0;
    c->norm_eps = 1e-6;
    c->eps = 1e-6;
    c->chunk_size = 64;
    c->max_inference_chunksize = 16384;
    c->use_bias = false;
    c->add_out_norm = true;
    c->tie_word_embeddings = false;
    strcpy(c->weight_mode, "single");
    c->bos_id = c->eos_id = c->pad_id = -1;

    cJSON *o;
    ggx_status s = parse_object(json, len, what, &o);
    if (s) goto done;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    if (!cJSON_IsString(mt)) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: 'model_type' is missing (expected \"xlstm\")", what);
        goto done;
    }
    if (strcmp(mt->valuestring, "xlstm")) {
        s = ggx_fail(GGX_ERR_UNSUPPORTED, "%s: model_type \"%.64s\" is not supported (only"
                     " \"xlstm\")", what, mt->valuestring);
        goto done;
    }
    if ((s = get_int(o, what, "embedding_dim", "hidden_size", 1, LIM, 1, &c->embedding_dim)) ||
        (s = get_int(o, what, "num_blocks", "num_hidden_layers", 1, 1 << 16, 1, &c->num_blocks)) ||
        (s = get_int(o, what, "num_heads", NULL, 1, 1 << 16, 1, &c->num_heads)) ||
        (s = get_int(o, what, "vocab_size", NULL, 1, LIM, 1, &c->vocab_size)) ||
        (s = get_num(o, what, "qk_dim_factor", 1e-6, 64, &c->qk_dim_factor)) ||
        (s = get_num(o, what, "v_dim_factor", 1e-6, 64, &c->v_dim_factor)) ||
        (s = get_num(o, what, "ffn_proj_factor", 1e-6, 64, &c->ffn_proj_factor)) ||
        (s = get_int(o, what, "ffn_round_up_to_multiple_of", NULL, 1, 1 << 20, 0,
                     &c->ffn_round_up_to_multiple_of)) ||
        (s = get_num(o, what, "gate_soft_cap", -1e30, 1e30, &c->gate_soft_cap)) ||
        (s = get_num(o, what, "output_logit_soft_cap", -1e30, 1e30, &c->output_logit_soft_cap)) ||
        (s = get_num(o, what, "norm_eps", 0, 1, &c->norm_eps)) ||
        (s = get_num(o, what, "eps", 0, 1, &c->eps)) ||
        (s = get_int(o, what, "chunk_size", NULL, 1, 1 << 20, 0, &c->chunk_size)) ||
        (s = get_int(o, what, "max_inference_chunksize", NULL, 1, LIM, 0,
                     &c->max_inference_chunksize)) ||
        (s = get_bool(o, what, "use_bias", &c->use_bias)) ||
        (s = get_bool(o, what, "add_out_norm", &c->add_out_norm)) ||
        (s = get_bool(o, what, "tie_word_embeddings", &c->tie_word_embeddings)) ||
        (s = get_id(o, what, "bos_token_id", &c->bos_id)) ||
        (s = get_id(o, what, "eos_token_id", &c->eos_id)) ||
        (s = get_id(o, what, "pad_token_id", &c->pad_id)))
        goto done;
    /* null soft caps mean "none" */
    const cJSON *gc = cJSON_GetObjectItemCaseSensitive(o, "gate_soft_cap");
    if (gc && cJSON_IsNull(gc)) c->gate_soft_cap = 0;
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(o, "output_logit_soft_cap");
    if (lc && cJSON_IsNull(lc)) c->output_logit_soft_cap = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(o, "weight_mode");
    if (wm && !cJSON_IsNull(wm)) {
        if (!cJSON_IsString(wm) || (strcmp(wm->valuestring, "single") && strcmp(wm->valuestring, "fused"))) {
            s = ggx_fail(GGX_ERR_UNSUPPORTED, "%s: weight_mode must be \"single\" or \"fused\"", what);
            goto done;
        }
        snprintf(c->weight_mode, sizeof c->weight_mode, "%s", wm->valuestring);
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "_name_or_path");
    if (cJSON_IsString(nm)) snprintf(c->name, sizeof c->name, "%s", nm->valuestring);

    /* derived sizes (xlstm-spec §1): the layer uses int(E * factor), no rounding */
    const double E = (double)c->embedding_dim;
    c->qk_dim = (int64_t)(E * c->qk_dim_factor);
    c->v_dim = (int64_t)(E * c->v_dim_factor);
    double m = (double)c->ffn_round_up_to_multiple_of, x = E * c->ffn_proj_factor;
    c->ffn_dim = (int64_t)(floor((x + m - 1) / m) * m);
    if (c->qk_dim < 1 || c->v_dim < 1 || c->qk_dim % c->num_heads || c->v_dim % c->num_heads) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: qk_dim %lld and v_dim %lld (embedding_dim %lld x factors)"
                     " must be positive multiples of num_heads %lld", what, (long long)c->qk_dim,
                     (long long)c->v_dim, (long long)c->embedding_dim, (long long)c->num_heads);
        goto done;
    }
    if (c->ffn_dim < 1 || c->ffn_dim > LIM || c->qk_dim > LIM || c->v_dim > LIM) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: derived sizes out of range (ffn_dim %lld)", what,
                     (long long)c->ffn_dim);
        goto done;
    }
    c->qk_head_dim = c->qk_dim / c->num_heads;
    c->v_head_dim = c->v_dim / c->num_heads;
done:
    cJSON_Delete(o);
    return s;
}

ggx_status ggx_hf_genconfig_apply(const char *json, size_t len, const char *what, ggx_hf_config *c) {
    cJSON *o;
    ggx_status s = parse_object(json, len, what, &o);
    if (s) goto done;
    /* only ids that are set and non-null override config.json */
    int64_t v;
    const char *keys[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    int64_t *dst[3] = {&c->bos_id, &c->eos_id, &c->pad_id};
    for (int i = 0; i < 3; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (!j || cJSON_IsNull(j)) continue;
        v = -1;
        if ((s = get_id(o, what, keys[i], &v))) goto done;
        *dst[i] = v;
    }
done:
    cJSON_Delete(o);
    return s;
}

/* ---------------------------------------------------------------- tokenizer */

ggx_status ggx_hf_tokenizer_parse(const char *json, size_t len, const char *what, ggx_hf_tokinfo *t) {
    memset(t, 0, sizeof *t);
    t->eot_id = -1;
    cJSON *o;
    ggx_status s = parse_object(json, len, what, &o);
    if (s) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type) || !cJSON_IsObject(vocab)) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: needs an object 'model' with 'type' and a 'vocab' object", what);
        goto done;
    }
    if (strcmp(type->valuestring, "BPE")) {
        s = ggx_fail(GGX_ERR_UNSUPPORTED, "%s: tokenizer model type \"%.32s\" is not supported"
                     " (only BPE)", what, type->valuestring);
        goto done;
    }
    strcpy(t->model_type, "bpe");
    int64_t maxid = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!is_id(e)) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: vocab entry \"%.64s\" has no valid id", what, e->string);
            goto done;
        }
        if ((int64_t)e->valuedouble > maxid) maxid = (int64_t)e->valuedouble;
        if (!strcmp(e->string, "<|endoftext|>")) t->eot_id = (int64_t)e->valuedouble;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(o, "added_tokens");
    if (added && !cJSON_IsNull(added)) {
        if (!cJSON_IsArray(added)) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: 'added_tokens' is not an array", what);
            goto done;
        }
        cJSON_ArrayForEach(e, added) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!is_id(id) || !cJSON_IsString(ct)) {
                s = ggx_fail(GGX_ERR_FORMAT, "%s: an added token lacks a valid 'id' or 'content'", what);
                goto done;
            }
            int64_t v = (int64_t)id->valuedouble;
            if (v > maxid) maxid = v;
            /* the added-token entry is authoritative for the special token's id */
            if (!strcmp(ct->valuestring, "<|endoftext|>")) t->eot_id = v;
        }
    }
    if (maxid < 0) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: the vocabulary is empty", what);
        goto done;
    }
    t->n_vocab = maxid + 1;
done:
    cJSON_Delete(o);
    return s;
}

ggx_status ggx_hf_tokconfig_apply(const char *json, size_t len, const char *what, ggx_hf_tokinfo *t) {
    cJSON *o;
    ggx_status s = parse_object(json, len, what, &o);
    if (s) goto done;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(ct)) {
        tmpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) { /* [{name, template}, ...]: prefer "default" */
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(tt)) continue;
            if (!tmpl || (cJSON_IsString(n) && !strcmp(n->valuestring, "default"))) tmpl = tt->valuestring;
        }
    }
    if (tmpl) {
        free(t->chat_template);
        if (!(t->chat_template = strdup(tmpl))) s = ggx_fail(GGX_ERR_NOMEM, "out of memory");
    }
done:
    cJSON_Delete(o);
    return s;
}

void ggx_hf_tokinfo_free(ggx_hf_tokinfo *t) {
    free(t->chat_template);
    t->chat_template = NULL;
}
