/*
 * xlstm_synth.c — a synthetic xLSTM: random weights of a config.json's shape, in memory
 * (see models/xlstm.h for the contract). Used by `ggx bench --synthetic` and backend tests.
 *
 * Each weight row is generated from its own counter-based random stream (seed, tensor, row),
 * so the weights do not depend on the thread count, and rows are spread over threads.
 */
#include "xlstm.h"
#include "xlstm_impl.h"

#include "convert/hfconfig.h"
#include "error.h"
#include "quants.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct synth_tensor {
    xl_weight *w;
    float lo, hi; /* uniform range */
    uint64_t stream;
} synth_tensor;

typedef struct synth_job {
    synth_tensor *ts;
    int n_ts;
    uint64_t seed;
    atomic_long next; /* work item: tensor index << 32 | row block */
    atomic_int failed;
} synth_job;

#define SYNTH_ROWS 64 /* rows per work item */

static inline uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void gen_rows(const synth_job *j, const synth_tensor *t, int64_t r0, int64_t r1,
                     float *buf) {
    const xl_weight *w = t->w;
    const int64_t cols = w->dims[w->n_dims - 1];
    const size_t rs = ggx_row_size(w->type, cols);
    const float scale = (t->hi - t->lo) / 4294967296.0f;
    for (int64_t r = r0; r < r1; r++) {
        uint64_t s = j->seed ^ (t->stream * 0x2545f4914f6cdd1dULL) ^ ((uint64_t)r * 0x9e3779b97f4a7c15ULL);
        char *dst = (char *)w->data + (size_t)r * rs;
        for (int64_t c = 0; c < cols; c += 2) {
            uint64_t z = splitmix(&s);
            buf[c] = t->lo + scale * (float)(uint32_t)z;
            if (c + 1 < cols) buf[c + 1] = t->lo + scale * (float)(uint32_t)(z >> 32);
        }
        switch (w->type) {
        case GGX_TYPE_F32: memcpy(dst, buf, (size_t)cols * sizeof(float)); break;
        case GGX_TYPE_BF16:
            for (int64_t c = 0; c < cols; c++) ((uint16_t *)dst)[c] = ggx_f32_to_bf16(buf[c]);
            break;
        case GGX_TYPE_F16:
            for (int64_t c = 0; c < cols; c++) ((uint16_t *)dst)[c] = ggx_f32_to_fp16(buf[c]);
            break;
        default: ggx_quantize_row(w->type, buf, dst, cols); break;
        }
    }
}

static void *synth_worker(void *vp) {
    synth_job *j = vp;
    int64_t maxc = 1;
    for (int i = 0; i < j->n_ts; i++) {
        int64_t c = j->ts[i].w->dims[j->ts[i].w->n_dims - 1];
        maxc = c > maxc ? c : maxc;
    }
    float *buf = malloc(sizeof(float) * (size_t)(maxc + 1));
    if (!buf) {
        atomic_store(&j->failed, 1);
        return NULL;
    }
    for (;;) {
        long item = atomic_fetch_add(&j->next, 1);
        /* decode item -> (tensor, block) by walking the tensors' block counts */
        long k = item;
        int ti = 0;
        for (; ti < j->n_ts; ti++) {
            const xl_weight *w = j->ts[ti].w;
            long nb = (long)(((w->n_dims > 1 ? w->dims[0] : 1) + SYNTH_ROWS - 1) / SYNTH_ROWS);
            if (k < nb) break;
            k -= nb;
        }
        if (ti >= j->n_ts) break;
        const xl_weight *w = j->ts[ti].w;
        int64_t rows = w->n_dims > 1 ? w->dims[0] : 1;
        int64_t r0 = (int64_t)k * SYNTH_ROWS, r1 = r0 + SYNTH_ROWS < rows ? r0 + SYNTH_ROWS : rows;
        gen_rows(j, &j->ts[ti], r0, r1, buf);
    }
    free(buf);
    return NULL;
}

typedef struct collect {
    synth_tensor *ts;
    int n;
    enum ggx_type big;
    uint64_t bytes;
    const xl_hparams *hp;
} collect;

static void collect_one(xl_weight *w, void *ud) {
    collect *c = ud;
    synth_tensor *t = &c->ts[c->n];
    t->w = w;
    t->stream = (uint64_t)c->n + 1;
    const char *nm = w->name;
    const float emb = (float)c->hp->embd;
    bool gate = strstr(nm, "igate_preact") || strstr(nm, "fgate_preact");
    w->type = (w->n_dims == 2 && !gate) ? c->big : GGX_TYPE_F32;
    const ggx_type_traits *tr = ggx_type_traits_of(w->type);
    if (tr->is_quantized && w->dims[1] % tr->blck_size) w->type = GGX_TYPE_F16;
    if (w->n_dims == 1) {
        if (strstr(nm, "fgate_preact.bias")) t->lo = 3.0f, t->hi = 6.0f;
        else if (strstr(nm, "igate_preact.bias")) t->lo = -2.0f, t->hi = 0.0f;
        else t->lo = 0.9f, t->hi = 1.1f; /* norm weights */
    } else if (strstr(nm, "embeddings")) {
        t->lo = -1.0f, t->hi = 1.0f;
    } else {
        float a = 1.0f / sqrtf((float)w->dims[1]);
        t->lo = -a, t->hi = a;
    }
    (void)emb;
    w->size = ggx_row_size(w->type, w->dims[w->n_dims - 1]) * (size_t)(w->n_dims > 1 ? w->dims[0] : 1);
    c->bytes += (w->size + 63) & ~(uint64_t)63;
    c->n++;
}

ggx_status ggx_model_synthetic(const char *config_json_path, enum ggx_type type,
                               const ggx_model_params *params, uint64_t seed, ggx_model **out) {
    if (!out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_model_synthetic: out is NULL");
    *out = NULL;
    if (!config_json_path) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_model_synthetic: no config");
    if (!ggx_type_valid((uint32_t)type) || type == GGX_TYPE_I32 || type == GGX_TYPE_I8 ||
        type == GGX_TYPE_U8)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "synthetic model: weight type %d not supported", (int)type);
    char *json = NULL;
    size_t len = 0;
    ggx_model *m = NULL;
    synth_tensor *ts = NULL;
    pthread_t *th = NULL;
    ggx_hf_config hc;
    uint64_t col_bytes = 0;
    int n_w = 0;
    ggx_status st = ggx_read_file(config_json_path, 1 << 20, &json, &len);
    if (st != GGX_OK) goto fail;
    if ((st = ggx_hf_config_parse(json, len, config_json_path, &hc)) != GGX_OK) goto fail;
    if (hc.use_bias) {
        st = ggx_fail(GGX_ERR_UNSUPPORTED, "%s: use_bias = true is not supported", config_json_path);
        goto fail;
    }
    xl_hparams hp = {
        .vocab = (int)hc.vocab_size, .embd = (int)hc.embedding_dim, .n_layer = (int)hc.num_blocks,
        .n_heads = (int)hc.num_heads, .qk_dim = (int)hc.qk_dim, .v_dim = (int)hc.v_dim,
        .dqk = (int)hc.qk_head_dim, .dv = (int)hc.v_head_dim, .ffn = (int)hc.ffn_dim,
        .chunk = (int)hc.chunk_size, .gate_cap = (float)hc.gate_soft_cap,
        .logit_cap = (float)hc.output_logit_soft_cap, .norm_eps = (float)hc.norm_eps,
        .eps = (float)hc.eps, .bos = (int)hc.bos_id, .eos = (int)hc.eos_id, .pad = (int)hc.pad_id,
        .add_bos = hc.bos_id >= 0,
    };
    if ((st = xl_model_alloc(&m, &hp, params)) != GGX_OK) goto fail;
    n_w = 3 + 15 * hp.n_layer;
    ts = calloc((size_t)n_w, sizeof *ts);
    if (!ts) {
        st = ggx_fail(GGX_ERR_NOMEM, "synthetic model: out of memory");
        goto fail;
    }
    collect col = {ts, 0, type, 0, &m->hp};
    xl_weights_foreach(m, collect_one, &col);
    col_bytes = col.bytes;
    m->synth_mem = aligned_alloc(64, col.bytes);
    if (!m->synth_mem) {
        st = ggx_fail(GGX_ERR_NOMEM, "synthetic model: cannot allocate %.2f GB of weights",
                      (double)col.bytes / 1e9);
        goto fail;
    }
    char *p = m->synth_mem;
    for (int i = 0; i < col.n; i++) {
        ts[i].w->data = p; /* host memory for generation; mapped to the backend below */
        p += (ts[i].w->size + 63) & ~(size_t)63;
    }
    int nth = params && params->n_threads > 0 ? params->n_threads : 0;
    if (nth <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nth = n > 0 ? (int)n : 1;
    }
    synth_job job = {.ts = ts, .n_ts = col.n, .seed = seed};
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    th = calloc((size_t)nth, sizeof *th);
    int started = 0;
    for (int i = 1; th && i < nth; i++, started++)
        if (pthread_create(&th[i], NULL, synth_worker, &job) != 0) break;
    synth_worker(&job);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    if (!th || atomic_load(&job.failed)) {
        st = ggx_fail(GGX_ERR_NOMEM, "synthetic model: out of memory");
        goto fail;
    }
    for (int i = 0; i < col.n; i++) {
        xl_weight *w = ts[i].w;
        void *host = w->data;
        w->data = NULL;
        st = xl_map_weight(m, w, host);
        if (st != GGX_OK) goto fail;
    }
    uint64_t h = xl_hash(0xcbf29ce484222325ULL, json, len);
    uint32_t ty = (uint32_t)type;
    h = xl_hash(h, &ty, sizeof ty);
    h = xl_hash(h, &seed, sizeof seed);
    m->fingerprint = h;
    xl_finish_desc(m, "(synthetic)");
    free(json);
    free(ts);
    free(th);
    *out = m;
    return GGX_OK;
fail:
    if (m && ts && m->synth_mem) { /* weights still pointing at host memory are not mapped */
        char *lo = m->synth_mem, *hi = lo + col_bytes;
        for (int i = 0; i < n_w; i++)
            if (ts[i].w && (char *)ts[i].w->data >= lo && (char *)ts[i].w->data < hi)
                ts[i].w->data = NULL;
    }
    free(json);
    free(ts);
    free(th);
    ggx_model_free(m);
    return st;
}
