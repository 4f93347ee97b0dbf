/*
 * test_graph.c — the compute graph and the CPU backend's machinery:
 *   - op constructors reject bad shapes with a message naming the op;
 *   - the planner never lets two simultaneously live results overlap, reuses memory (arena
 *     smaller than the sum), and keeps outputs alive;
 *   - a small graph computed on the CPU backend equals a scalar evaluation, for 1..4 threads;
 *   - the thread pool runs every chunk exactly once, many times over (run under TSan too).
 */
#include "testutil.h"

#include "backend.h"
#include "backends/cpu/cpu_pool.h"
#include "error.h"
#include "graph.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

static uint64_t g_rng = 12345;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* ------------------------------------------------------------------------------ shapes -- */
static void test_shapes(void) {
    ggx_graph *g = ggx_graph_new(32);
    float w[6 * 4], x[3 * 5];
    ggx_tensor *W = ggx_graph_leaf(g, "w", GGX_TYPE_F32, 2, (int64_t[]){6, 4}, w, GGX_TF_WEIGHT);
    ggx_tensor *X = ggx_graph_leaf(g, "x", GGX_TYPE_F32, 2, (int64_t[]){3, 5}, x, GGX_TF_INPUT);
    TEST_CHECK(ggx_mul_mat(g, W, X) == NULL);
    TEST_CHECK_MSG(strstr(ggx_last_error(), "mul_mat") != NULL, "msg: %s", ggx_last_error());
    ggx_tensor *b = ggx_graph_leaf(g, "b", GGX_TYPE_F32, 1, (int64_t[]){4}, w, 0);
    TEST_CHECK(ggx_add(g, X, b) == NULL);
    TEST_CHECK(ggx_rms_norm(g, X, b, 1e-6f) == NULL);
    TEST_CHECK(ggx_head_norm(g, X, ggx_graph_leaf(g, "h", GGX_TYPE_F32, 1, (int64_t[]){5}, w, 0),
                             2, 1e-6f) == NULL); /* 5 not divisible by 2 heads */
    ggx_tensor *X4 = ggx_graph_leaf(g, "x4", GGX_TYPE_F32, 2, (int64_t[]){3, 4}, x, 0);
    ggx_tensor *y = ggx_mul_mat(g, W, X4);
    TEST_CHECK(y && y->dims[0] == 3 && y->dims[1] == 6);
    ggx_tensor *ids = ggx_graph_leaf(g, "ids", GGX_TYPE_I32, 1, (int64_t[]){2}, x, 0);
    ggx_tensor *r = ggx_get_rows(g, W, ids);
    TEST_CHECK(r && r->dims[0] == 2 && r->dims[1] == 4);
    TEST_CHECK(ggx_get_rows(g, W, X4) == NULL); /* ids must be i32 */
    ggx_graph_free(g);
}

/* ----------------------------------------------------------------------------- planner -- */
static void test_planner(void) {
    /* a chain with branches: x -> a -> b -> c ...; d = a + c keeps a alive until d */
    ggx_graph *g = ggx_graph_new(128);
    float xd[8 * 16];
    ggx_tensor *x = ggx_graph_leaf(g, "x", GGX_TYPE_F32, 2, (int64_t[]){8, 16}, xd, GGX_TF_INPUT);
    ggx_tensor *a = ggx_swiglu(g, x, x);
    ggx_tensor *cur = a;
    for (int i = 0; i < 20; i++) cur = ggx_sigmoid_mul(g, cur, x);
    ggx_tensor *d = ggx_add(g, a, cur);
    d->flags |= GGX_TF_OUTPUT;
    ggx_tensor *e = ggx_mul(g, cur, x); /* after the output: must not overwrite d */
    e->flags |= GGX_TF_OUTPUT;
    size_t arena = 0;
    TEST_CHECK(ggx_graph_plan_offsets(g, &arena) == GGX_OK);
    size_t sum = 0;
    for (int k = 0; k < g->n_nodes; k++) sum += ggx_tensor_nbytes(g->nodes[k]);
    TEST_CHECK_MSG(arena < sum / 4, "arena %zu vs sum %zu: no reuse", arena, sum);
    /* liveness: interval [def, last use]; overlapping intervals must not overlap in memory */
    int n = g->n_nodes;
    int *def = calloc(g->n_tensors, sizeof(int)), *last = calloc(g->n_tensors, sizeof(int));
    for (int k = 0; k < n; k++) {
        ggx_tensor *t = g->nodes[k];
        def[t->id] = last[t->id] = k;
        for (int s = 0; s < GGX_MAX_SRC; s++)
            if (t->src[s]) last[t->src[s]->id] = k;
    }
    for (int k = 0; k < n; k++) {
        ggx_tensor *t = g->nodes[k];
        if (t->flags & GGX_TF_OUTPUT) last[t->id] = n;
    }
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            ggx_tensor *p = g->nodes[i], *q = g->nodes[j];
            bool live = def[q->id] <= last[p->id];
            bool mem = p->buf_offset < q->buf_offset + ggx_tensor_nbytes(q) &&
                       q->buf_offset < p->buf_offset + ggx_tensor_nbytes(p);
            if (live && mem) bad++;
        }
    TEST_CHECK_MSG(bad == 0, "%d overlapping live pairs", bad);
    for (int k = 0; k < n; k++)
        TEST_CHECK(g->nodes[k]->buf_offset + ggx_tensor_nbytes(g->nodes[k]) <= arena);
    free(def), free(last);
    ggx_graph_free(g);
}

/* --------------------------------------------------------------- compute vs scalar eval -- */
static void test_compute(int threads) {
    ggx_backend *be;
    TEST_CHECK(ggx_backend_create("cpu", &(ggx_backend_params){.n_threads = threads}, &be) == GGX_OK);
    TEST_CHECK(ggx_backend_create("tpu", NULL, &(ggx_backend *){NULL}) == GGX_ERR_UNSUPPORTED);
    const int T = 19, I = 37, O = 45; /* T >= 16: the sgemm path; rows 0..2 as a small batch */
    float *W = malloc(sizeof(float) * O * I), *X = malloc(sizeof(float) * T * I);
    float *nw = malloc(sizeof(float) * I), *bias = malloc(sizeof(float) * O);
    for (int i = 0; i < O * I; i++) W[i] = frand();
    for (int i = 0; i < T * I; i++) X[i] = frand();
    for (int i = 0; i < I; i++) nw[i] = 1 + 0.1f * frand();
    for (int i = 0; i < O; i++) bias[i] = frand();
    for (int small = 0; small < 2; small++) {
        int Tn = small ? 3 : T;
        ggx_graph *g = ggx_graph_new(64);
        ggx_tensor *x = ggx_graph_leaf(g, "x", GGX_TYPE_F32, 2, (int64_t[]){Tn, I}, X, GGX_TF_INPUT);
        ggx_tensor *w = ggx_graph_leaf(g, "w", GGX_TYPE_F32, 2, (int64_t[]){O, I}, W, GGX_TF_WEIGHT);
        ggx_tensor *n = ggx_graph_leaf(g, "n", GGX_TYPE_F32, 1, (int64_t[]){I}, nw, GGX_TF_WEIGHT);
        ggx_tensor *b = ggx_graph_leaf(g, "b", GGX_TYPE_F32, 1, (int64_t[]){O}, bias, GGX_TF_WEIGHT);
        ggx_tensor *h = ggx_rms_norm(g, x, n, 1e-6f);
        ggx_tensor *y = ggx_soft_cap(g, ggx_mul_mat(g, w, h), b, 5.0f);
        y->flags |= GGX_TF_OUTPUT;
        void *arena = NULL;
        size_t cap = 0;
        TEST_CHECK(ggx_graph_plan(g, be, &arena, &cap) == GGX_OK);
        TEST_CHECK(ggx_graph_compute(g, be) == GGX_OK);
        double worst = 0;
        for (int t = 0; t < Tn; t++) {
            double ss = 0;
            for (int c = 0; c < I; c++) ss += (double)X[t * I + c] * X[t * I + c];
            double inv = 1 / sqrt(ss / I + 1e-6);
            for (int o = 0; o < O; o++) {
                double acc = 0;
                for (int c = 0; c < I; c++) acc += X[t * I + c] * inv * nw[c] * W[o * I + c];
                double ref = 5 * tanh((acc + bias[o]) / 5);
                worst = fmax(worst, fabs(ref - ((float *)y->data)[t * O + o]));
            }
        }
        TEST_CHECK_MSG(worst < 1e-5, "threads %d T=%d: max diff %g", threads, Tn, worst);
        be->iface.release(be, arena);
        ggx_graph_free(g);
    }
    free(W), free(X), free(nw), free(bias);
    ggx_backend_free(be);
}

/* -------------------------------------------------------------------------------- pool -- */
typedef struct pool_arg {
    _Atomic int *hits;
    atomic_long sum;
} pool_arg;

static void pool_fn(void *vp, int64_t c, int ith) {
    pool_arg *a = vp;
    (void)ith;
    atomic_fetch_add(&a->hits[c], 1);
    atomic_fetch_add(&a->sum, (long)c);
}

static void test_pool(int threads) {
    ggx_cpu_pool *p;
    TEST_CHECK(ggx_cpu_pool_create(threads, &p) == GGX_OK);
    const int N = 97;
    _Atomic int *hits = calloc(N, sizeof *hits);
    int errors = 0;
    for (int rep = 0; rep < 500; rep++) {
        pool_arg a = {hits, 0};
        for (int i = 0; i < N; i++) atomic_store(&hits[i], 0);
        int64_t n = 1 + rep % N;
        ggx_cpu_pool_run(p, n, pool_fn, &a);
        for (int i = 0; i < N; i++) errors += atomic_load(&hits[i]) != (i < n);
        errors += atomic_load(&a.sum) != (long)(n * (n - 1) / 2);
        if (rep % 100 == 99) usleep(3000); /* let the workers fall asleep, then wake them */
    }
    TEST_CHECK_MSG(errors == 0, "pool with %d threads: %d errors", threads, errors);
    free(hits);
    ggx_cpu_pool_free(p);
}

int main(void) {
    test_shapes();
    test_planner();
    for (int t = 1; t <= 4; t++) test_compute(t);
    for (int t = 1; t <= 4; t++) test_pool(t);
    TEST_CHECK(ggx_cpu_physical_cores() >= 1);
    return test_finish("test_graph");
}
