/*
 * bench_cuda.c — speed of the CUDA backend on the xLSTM 7B shape with synthetic weights.
 *
 * Builds the real per-layer graph of xlstm-spec.md §3 (32 blocks, E 4096, 8 heads, DQK 256,
 * DV 512, FFN 10944, vocab 50304) directly from graph nodes, with random weights generated on the
 * GPU, and times it through the backend interface (graph_compute, CUDA-graph replay included):
 *   decode:  per step = upload token ids + graph_compute + download logits [B, vocab]
 *   prefill: one graph over T tokens of one sequence, logits of the last position only
 * Build and run: scripts/gpu-check.sh (not part of ctest: benchmarks are not tests).
 *
 *     bench_cuda [--types bf16,q8_0,q4_0,q4_x] [--decode-batches 1,32] [--prefill 2048,8192]
 *                [--steps N] [--layers L]
 */
#include "backends/cuda/ggx_cuda.h"
#include "ggx/backend.h"
#include "ggx/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { E = 4096, NH = 8, DQK = 256, DV = 512, FF = 10944, VOCAB = 50304 };
static int n_layers = 32;
static ggx_backend *be;

#define CHECK(x)                                                                               \
    do {                                                                                       \
        ggx_status s_ = (x);                                                                   \
        if (s_ != GGX_OK) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, ggx_last_error());      \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ synthetic weights */

typedef struct {
    void *norm_mlstm, *q, *k, *v, *o, *wi, *bi, *wf, *bf, *mh_norm, *out, *norm_ffn, *up_gate, *up, *down;
} layer_w;
typedef struct {
    enum ggx_type type;
    void *emb, *out_norm, *lm_head;
    layer_w *l;
    size_t bytes;
} model_w;

static uint64_t seed = 1;
static void *rand_weight(model_w *m, enum ggx_type t, int64_t rows, int64_t cols, float scale) {
    void *p = NULL;
    const size_t n = ggx_cuda_weight_nbytes(t, rows, cols);
    CHECK(be->iface.alloc(be, n, &p));
    CHECK(ggx_cuda_fill_random(be, p, t, rows, cols, seed++, scale));
    m->bytes += n;
    return p;
}
static void *rand_vec(model_w *m, int64_t n, float scale, float offset) {
    void *p = rand_weight(m, GGX_TYPE_F32, 1, n, scale);
    if (offset != 0.0f) { /* norm weights around 1 */
        float *h = malloc((size_t)n * 4);
        CHECK(be->iface.download(be, h, p, (size_t)n * 4));
        for (int64_t i = 0; i < n; i++) h[i] += offset;
        CHECK(be->iface.upload(be, p, h, (size_t)n * 4));
        free(h);
    }
    return p;
}

static model_w make_model(enum ggx_type t) {
    model_w m;
    memset(&m, 0, sizeof m);
    m.type = t;
    m.l = calloc((size_t)n_layers, sizeof *m.l);
    const float s = 0.02f;
    m.emb = rand_weight(&m, t, VOCAB, E, 1.0f);
    /* the loader keeps the embedding in host memory (weights_map_rows) unless GGX_CUDA_EMB_HOST=0 */
    const char *eh = getenv("GGX_CUDA_EMB_HOST");
    if (!(eh && eh[0] == '0')) {
        CHECK(ggx_cuda_move_to_host(be, &m.emb, ggx_cuda_weight_nbytes(t, VOCAB, E)));
        m.bytes -= ggx_cuda_weight_nbytes(t, VOCAB, E);
    }
    for (int i = 0; i < n_layers; i++) {
        layer_w *l = &m.l[i];
        l->norm_mlstm = rand_vec(&m, E, 0.1f, 1.0f);
        l->q = rand_weight(&m, t, NH * DQK, E, s);
        l->k = rand_weight(&m, t, NH * DQK, E, s);
        l->v = rand_weight(&m, t, NH * DV, E, s);
        l->o = rand_weight(&m, t, E, E, s);
        l->wi = rand_weight(&m, GGX_TYPE_F32, NH, E, s);
        l->bi = rand_vec(&m, NH, 1.0f, 0.0f);
        l->wf = rand_weight(&m, GGX_TYPE_F32, NH, E, s);
        l->bf = rand_vec(&m, NH, 1.0f, 4.0f);
        l->mh_norm = rand_vec(&m, E, 0.1f, 1.0f);
        l->out = rand_weight(&m, t, E, NH * DV, s);
        l->norm_ffn = rand_vec(&m, E, 0.1f, 1.0f);
        l->up_gate = rand_weight(&m, t, FF, E, s);
        l->up = rand_weight(&m, t, FF, E, s);
        l->down = rand_weight(&m, t, E, FF, s);
    }
    m.out_norm = rand_vec(&m, E, 0.1f, 1.0f);
    m.lm_head = rand_weight(&m, t, VOCAB, E, s);
    return m;
}
static void free_model(model_w *m) {
    void **pp = (void **)m->l;
    for (size_t i = 0; i < (size_t)n_layers * (sizeof(layer_w) / sizeof(void *)); i++) be->iface.release(be, pp[i]);
    be->iface.release(be, m->emb);
    be->iface.release(be, m->out_norm);
    be->iface.release(be, m->lm_head);
    free(m->l);
}

/* ------------------------------------------------------------------ the graph */

typedef struct {
    ggx_tensor *pool;
    ggx_tensor **nodes;
    int nt, cap;
    ggx_graph g;
    void *bufs[32];
    int nbufs;
} bgraph;

static ggx_tensor *leaf(bgraph *b, enum ggx_type t, int64_t d0, int64_t d1, void *data) {
    ggx_tensor *x = &b->pool[b->nt];
    memset(x, 0, sizeof *x);
    x->id = b->nt++;
    x->type = t;
    x->n_dims = 2;
    x->dims[0] = d0;
    x->dims[1] = d1;
    x->dims[2] = x->dims[3] = 1;
    x->data = data;
    return x;
}
/* a weight leaf, named like the model's weights (GGX_CUDA_SKIP matches these names) */
static ggx_tensor *wleaf(bgraph *b, const char *name, enum ggx_type t, int64_t d0, int64_t d1, void *data) {
    ggx_tensor *x = leaf(b, t, d0, d1, data);
    snprintf(x->name, sizeof x->name, "%s", name);
    return x;
}
static ggx_tensor *op(bgraph *b, enum ggx_op o, int64_t d0, int64_t d1, void *out, ggx_tensor *a,
                      ggx_tensor *c) {
    ggx_tensor *x = leaf(b, GGX_TYPE_F32, d0, d1, out);
    x->op = o;
    x->src[0] = a;
    x->src[1] = c;
    b->nodes[b->g.n_nodes++] = x;
    return x;
}
static void *buf(bgraph *b, size_t n) {
    void *p = NULL;
    CHECK(be->iface.alloc(be, n, &p));
    b->bufs[b->nbufs++] = p;
    return p;
}

/* T tokens in total (n_seqs sequences of T/n_seqs tokens); logits for the last token of each
 * sequence: [n_seqs, VOCAB] */
static void build_graph(bgraph *b, const model_w *m, int T, int n_seqs, void **ids_dev,
                        void **last_dev, ggx_tensor **logits) {
    memset(b, 0, sizeof *b);
    b->cap = 64 + n_layers * 40;
    b->pool = calloc((size_t)b->cap, sizeof *b->pool);
    b->nodes = calloc((size_t)b->cap, sizeof *b->nodes);
    b->g.tensors = b->pool;
    b->g.cap = b->cap;
    b->g.nodes = b->nodes;
    const enum ggx_type t = m->type;
    const size_t f = 4;
    /* activations, reused by every layer (execution is sequential) */
    void *x = buf(b, (size_t)T * E * f), *xn = buf(b, (size_t)T * E * f);
    void *q = buf(b, (size_t)T * NH * DQK * f), *k = buf(b, (size_t)T * NH * DQK * f);
    void *v = buf(b, (size_t)T * NH * DV * f), *o = buf(b, (size_t)T * E * f);
    void *ip = buf(b, (size_t)T * NH * f), *fp = buf(b, (size_t)T * NH * f);
    void *ig = buf(b, (size_t)T * NH * f), *fg = buf(b, (size_t)T * NH * f);
    void *h = buf(b, (size_t)T * NH * DV * f), *hn = buf(b, (size_t)T * NH * DV * f);
    void *y = buf(b, (size_t)T * NH * DV * f), *a = buf(b, (size_t)T * E * f);
    void *gg = buf(b, (size_t)T * FF * f), *uu = buf(b, (size_t)T * FF * f), *ss = buf(b, (size_t)T * FF * f);
    void *xl = buf(b, (size_t)n_seqs * E * f), *lg = buf(b, (size_t)n_seqs * VOCAB * f);
    *ids_dev = buf(b, (size_t)T * 4);
    *last_dev = buf(b, (size_t)n_seqs * 4);

    ggx_tensor *tids = leaf(b, GGX_TYPE_I32, T, 1, *ids_dev);
    tids->n_dims = 1;
    ggx_tensor *tx = op(b, GGX_OP_GET_ROWS, T, E, x, wleaf(b, "embeddings.weight", t, VOCAB, E, m->emb), tids);
    for (int L = 0; L < n_layers; L++) {
        const layer_w *l = &m->l[L];
        ggx_tensor *txn = op(b, GGX_OP_RMS_NORM, T, E, xn, tx, leaf(b, GGX_TYPE_F32, 1, E, l->norm_mlstm));
        txn->f[0] = 1e-6f;
        ggx_tensor *tq = op(b, GGX_OP_MUL_MAT, T, NH * DQK, q, wleaf(b, "q.weight", t, NH * DQK, E, l->q), txn);
        ggx_tensor *tk = op(b, GGX_OP_MUL_MAT, T, NH * DQK, k, wleaf(b, "k.weight", t, NH * DQK, E, l->k), txn);
        ggx_tensor *tv = op(b, GGX_OP_MUL_MAT, T, NH * DV, v, wleaf(b, "v.weight", t, NH * DV, E, l->v), txn);
        ggx_tensor *to = op(b, GGX_OP_MUL_MAT, T, E, o, wleaf(b, "ogate_preact.weight", t, E, E, l->o), txn);
        ggx_tensor *ti = op(b, GGX_OP_MUL_MAT, T, NH, ip, wleaf(b, "igate_preact.weight", GGX_TYPE_F32, NH, E, l->wi), txn);
        ggx_tensor *tf = op(b, GGX_OP_MUL_MAT, T, NH, fp, wleaf(b, "fgate_preact.weight", GGX_TYPE_F32, NH, E, l->wf), txn);
        ggx_tensor *tig = op(b, GGX_OP_SOFT_CAP, T, NH, ig, ti, leaf(b, GGX_TYPE_F32, 1, NH, l->bi));
        tig->f[0] = 15.0f;
        ggx_tensor *tfg = op(b, GGX_OP_SOFT_CAP, T, NH, fg, tf, leaf(b, GGX_TYPE_F32, 1, NH, l->bf));
        tfg->f[0] = 15.0f;
        ggx_tensor *th = op(b, GGX_OP_MLSTM, T, NH * DV, h, tq, tk);
        th->src[2] = tv;
        th->src[3] = tig;
        th->src[4] = tfg;
        th->i[0] = L; th->i[1] = NH; th->i[2] = DQK; th->i[3] = DV; th->i[4] = 64;
        th->f[0] = 1e-6f;
        ggx_tensor *thn = op(b, GGX_OP_HEAD_NORM, T, NH * DV, hn, th, leaf(b, GGX_TYPE_F32, 1, E, l->mh_norm));
        thn->i[0] = NH;
        thn->f[0] = 1e-6f;
        ggx_tensor *ty = op(b, GGX_OP_SIGMOID_MUL, T, E, y, to, thn);
        ggx_tensor *ta = op(b, GGX_OP_MUL_MAT, T, E, a, wleaf(b, "out_proj.weight", t, E, NH * DV, l->out), ty);
        tx = op(b, GGX_OP_ADD, T, E, x, tx, ta); /* in place: elementwise */
        ggx_tensor *tz = op(b, GGX_OP_RMS_NORM, T, E, xn, tx, leaf(b, GGX_TYPE_F32, 1, E, l->norm_ffn));
        tz->f[0] = 1e-6f;
        ggx_tensor *tg = op(b, GGX_OP_MUL_MAT, T, FF, gg, wleaf(b, "proj_up_gate.weight", t, FF, E, l->up_gate), tz);
        ggx_tensor *tu = op(b, GGX_OP_MUL_MAT, T, FF, uu, wleaf(b, "proj_up.weight", t, FF, E, l->up), tz);
        ggx_tensor *ts = op(b, GGX_OP_SWIGLU, T, FF, ss, tg, tu);
        ggx_tensor *td = op(b, GGX_OP_MUL_MAT, T, E, a, wleaf(b, "proj_down.weight", t, E, FF, l->down), ts);
        tx = op(b, GGX_OP_ADD, T, E, x, tx, td);
    }
    ggx_tensor *tlast = leaf(b, GGX_TYPE_I32, n_seqs, 1, *last_dev);
    tlast->n_dims = 1;
    ggx_tensor *txl = op(b, GGX_OP_GET_ROWS, n_seqs, E, xl, tx, tlast);
    ggx_tensor *txo = op(b, GGX_OP_RMS_NORM, n_seqs, E, xl, txl, leaf(b, GGX_TYPE_F32, 1, E, m->out_norm));
    txo->f[0] = 1e-6f;
    ggx_tensor *tl = op(b, GGX_OP_MUL_MAT, n_seqs, VOCAB, lg, wleaf(b, "lm_head.weight", t, VOCAB, E, m->lm_head), txo);
    *logits = op(b, GGX_OP_SOFT_CAP, n_seqs, VOCAB, lg, tl, NULL);
    (*logits)->f[0] = 30.0f;
}
static void free_graph(bgraph *b) {
    for (int i = 0; i < b->nbufs; i++) be->iface.release(be, b->bufs[i]);
    free(b->pool);
    free(b->nodes);
}

/* ------------------------------------------------------------------ states */

typedef struct {
    ggx_layer_state *layers;
    void *mem;
} seq_state;

static void make_states(seq_state *s, int n) {
    const size_t per_layer = ((size_t)NH * DQK * DV + (size_t)NH * DQK + NH) * 4;
    for (int i = 0; i < n; i++) {
        CHECK(be->iface.alloc(be, per_layer * (size_t)n_layers, &s[i].mem));
        s[i].layers = calloc((size_t)n_layers, sizeof *s[i].layers);
        for (int L = 0; L < n_layers; L++) {
            float *base = (float *)((char *)s[i].mem + per_layer * (size_t)L);
            s[i].layers[L].C = base;
            s[i].layers[L].n = base + (size_t)NH * DQK * DV;
            s[i].layers[L].m = base + (size_t)NH * DQK * DV + NH * DQK;
        }
    }
}
static void free_states(seq_state *s, int n) {
    for (int i = 0; i < n; i++) {
        be->iface.release(be, s[i].mem);
        free(s[i].layers);
    }
}

/* ------------------------------------------------------------------ runs */

static double floor_ms(enum ggx_type t, int B) {
    /* bytes per decode step: every weight but the embedding once + f32 state read and written */
    const double w = 6865424896.0 - 206045184.0;
    const double bpw = t == GGX_TYPE_BF16 ? 2.0 : t == GGX_TYPE_Q8_0 ? 34.0 / 32 : t == GGX_TYPE_Q4_X ? 20.0 / 32 : 18.0 / 32;
    const double state = 2.0 * B * n_layers * ((double)NH * DQK * DV + NH * DQK + NH) * 4;
    return (w * bpw * n_layers / 32.0 + state) / 2.944e12 * 1e3;
}

static void run_decode(const model_w *m, int B, int steps) {
    bgraph b;
    void *ids_dev, *last_dev;
    ggx_tensor *logits;
    build_graph(&b, m, B, B, &ids_dev, &last_dev, &logits);
    seq_state *st = calloc((size_t)B, sizeof *st);
    make_states(st, B);
    int *off = malloc((size_t)B * sizeof(int)), *len = malloc((size_t)B * sizeof(int));
    ggx_layer_state **slots = malloc((size_t)B * sizeof *slots);
    int32_t *ids = malloc((size_t)B * 4), *last = malloc((size_t)B * 4);
    for (int i = 0; i < B; i++) {
        off[i] = i;
        len[i] = 1;
        slots[i] = st[i].layers;
        last[i] = i;
    }
    ggx_batch batch = {B, B, off, len, (ggx_layer_state *const *)slots};
    b.g.batch = &batch;
    CHECK(be->iface.upload(be, last_dev, last, (size_t)B * 4));
    float *lg = malloc((size_t)B * VOCAB * 4);
    double t0 = 0;
    for (int s = 0; s < steps + 3; s++) {
        if (s == 3) { CHECK(be->iface.synchronize(be)); t0 = now_s(); }
        for (int i = 0; i < B; i++) ids[i] = (int32_t)((s * 7919 + i * 104729) % VOCAB);
        CHECK(be->iface.upload(be, ids_dev, ids, (size_t)B * 4));
        CHECK(be->iface.graph_compute(be, &b.g));
        CHECK(be->iface.download(be, lg, logits->data, (size_t)B * VOCAB * 4));
    }
    const double dt = (now_s() - t0) / steps;
    int finite = 1;
    for (size_t i = 0; i < (size_t)B * VOCAB; i++) finite &= lg[i] == lg[i];
    size_t fr = 0, tot = 0, peak = 0;
    ggx_cuda_mem_info(be, &fr, &tot, &peak);
    printf("decode  %-5s B=%-3d %8.3f ms/step %9.1f tok/s   floor %.2f ms = %.0f tok/s  (%.0f%% of floor)  "
           "device mem in use %.3f GB (ggx peak allocation %.3f GB)%s\n",
           ggx_type_name(m->type), B, dt * 1e3, B / dt, floor_ms(m->type, B),
           B * 1e3 / floor_ms(m->type, B), 100.0 * floor_ms(m->type, B) / (dt * 1e3), (tot - fr) / 1e9, peak / 1e9,
           finite ? "" : "  NaN IN LOGITS");
    fflush(stdout);
    free(lg); free(ids); free(last); free(off); free(len); free(slots);
    free_states(st, B);
    free(st);
    free_graph(&b);
}

static void run_prefill(const model_w *m, int T, int reps) {
    bgraph b;
    void *ids_dev, *last_dev;
    ggx_tensor *logits;
    build_graph(&b, m, T, 1, &ids_dev, &last_dev, &logits);
    seq_state st;
    make_states(&st, 1);
    int off = 0, len = T;
    ggx_layer_state *slot = st.layers;
    ggx_batch batch = {1, T, &off, &len, (ggx_layer_state *const *)&slot};
    b.g.batch = &batch;
    int32_t *ids = malloc((size_t)T * 4), last = T - 1;
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 7919) % VOCAB);
    CHECK(be->iface.upload(be, last_dev, &last, 4));
    float *lg = malloc((size_t)VOCAB * 4);
    ggx_cuda_set_graphs(be, 0); /* one-off graphs: not captured */
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        CHECK(be->iface.synchronize(be));
        const double t0 = now_s();
        CHECK(be->iface.upload(be, ids_dev, ids, (size_t)T * 4));
        CHECK(be->iface.graph_compute(be, &b.g));
        CHECK(be->iface.download(be, lg, logits->data, (size_t)VOCAB * 4));
        const double dt = now_s() - t0;
        if (r > 0 && dt < best) best = dt; /* r = 0 warms up (cuBLAS heuristics, scratch) */
    }
    ggx_cuda_set_graphs(be, 1);
    printf("prefill %-5s T=%-5d %8.1f ms  %9.0f tok/s  (time to first token %.1f ms)\n", ggx_type_name(m->type),
           T, best * 1e3, T / best, best * 1e3);
    fflush(stdout);
    free(ids); free(lg);
    free_states(&st, 1);
    free_graph(&b);
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *types = "bf16,q8_0,q4_0";
    int batches[8] = {1}, nb = 1, prefills[8] = {0}, np = 0, steps = 30;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--decode-batches") && i + 1 < argc) nb = parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) np = parse_list(argv[++i], prefills, 8);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) n_layers = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cuda [--types bf16,q8_0,q4_0] [--decode-batches 1,32] "
                            "[--prefill 2048,8192] [--steps N] [--layers L]\n");
            return 2;
        }
    }
    if (ggx_cuda_device_count() < 1) {
        fprintf(stderr, "bench_cuda: no CUDA device\n");
        return 1;
    }
    ggx_backend_params p = {0, 0};
    CHECK(ggx_backend_cuda_init(&p, &be));
    size_t fr0 = 0, tot0 = 0;
    CHECK(ggx_cuda_mem_info(be, &fr0, &tot0, NULL));
    printf("device mem in use after backend creation (CUDA context, scratch): %.2f GB\n", (tot0 - fr0) / 1e9);
    printf("device: %s; xLSTM 7B shape, %d layers, synthetic weights\n", ggx_cuda_device_name(be), n_layers);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        const int t = ggx_type_from_name(tok);
        if (t < 0) {
            fprintf(stderr, "bench_cuda: unknown type %s\n", tok);
            return 2;
        }
        const double t0 = now_s();
        model_w m = make_model((enum ggx_type)t);
        CHECK(be->iface.synchronize(be));
        printf("weights %-5s %.2f GB (generated in %.1f s)\n", tok, m.bytes / 1e9, now_s() - t0);
        for (int i = 0; i < nb; i++)
            if (batches[i] > 0) run_decode(&m, batches[i], steps);
        for (int i = 0; i < np; i++) run_prefill(&m, prefills[i], 2);
        free_model(&m);
    }
    be->iface.free(be);
    return 0;
}
