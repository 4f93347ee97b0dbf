/*
 * graph.c — tensors, op constructors with shape checks, and the buffer planner.
 *
 * The planner gives every intermediate (op != NONE) an offset in one arena. It walks the nodes
 * in execution order, frees a tensor's range after its last consumer ran, and places each new
 * result first-fit into the free ranges, so the arena is about the size of the widest point of
 * the graph rather than the sum of all intermediates. Outputs (GGX_TF_OUTPUT) are never freed.
 * A planned graph can be computed any number of times without allocating (the decode path).
 */
#include "graph.h"

#include "backend.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGX_ARENA_ALIGN 64

ggx_graph *ggx_graph_new(int capacity) {
    if (capacity < 1) capacity = 1;
    ggx_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->tensors = calloc((size_t)capacity, sizeof *g->tensors);
    g->nodes = calloc((size_t)capacity, sizeof *g->nodes);
    if (!g->tensors || !g->nodes) {
        ggx_graph_free(g);
        return NULL;
    }
    g->cap = capacity;
    return g;
}

void ggx_graph_free(ggx_graph *g) {
    if (!g) return;
    free(g->tensors);
    free(g->nodes);
    free(g);
}

int64_t ggx_tensor_nelements(const ggx_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->dims[d];
    return n;
}

int64_t ggx_tensor_rows(const ggx_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d + 1 < t->n_dims; d++) n *= t->dims[d];
    return n;
}

size_t ggx_tensor_nbytes(const ggx_tensor *t) {
    int64_t cols = t->n_dims ? t->dims[t->n_dims - 1] : 1;
    return (size_t)ggx_tensor_rows(t) * ggx_row_size(t->type, cols);
}

static int64_t ncols(const ggx_tensor *t) { return t->dims[t->n_dims - 1]; }

static ggx_tensor *new_tensor(ggx_graph *g, enum ggx_type type, int n_dims, const int64_t *dims) {
    if (g->n_tensors >= g->cap) {
        ggx_fail(GGX_ERR_NOMEM, "graph: tensor capacity %d exhausted", g->cap);
        return NULL;
    }
    if (n_dims < 1 || n_dims > GGX_T_MAX_DIMS) {
        ggx_fail(GGX_ERR_SHAPE, "graph: %d dims (1..%d allowed)", n_dims, GGX_T_MAX_DIMS);
        return NULL;
    }
    ggx_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->id = g->n_tensors++;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGX_T_MAX_DIMS; d++) t->dims[d] = d < n_dims ? dims[d] : 1;
    return t;
}

static ggx_tensor *new_op(ggx_graph *g, enum ggx_op op, int n_dims, const int64_t *dims,
                          ggx_tensor *s0, ggx_tensor *s1) {
    ggx_tensor *t = new_tensor(g, GGX_TYPE_F32, n_dims, dims);
    if (!t) return NULL;
    t->op = op;
    t->src[0] = s0;
    t->src[1] = s1;
    g->nodes[g->n_nodes++] = t;
    g->planned = false;
    return t;
}

static void shape_str(const ggx_tensor *t, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "[");
    for (int d = 0; d < t->n_dims && k < (int)cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (k < (int)cap) snprintf(buf + k, cap - (size_t)k, "]");
}

static ggx_tensor *shape_fail(const char *op, const ggx_tensor *a, const ggx_tensor *b,
                              const char *why) {
    char sa[96], sb[96] = "";
    shape_str(a, sa, sizeof sa);
    if (b) shape_str(b, sb, sizeof sb);
    ggx_fail(GGX_ERR_SHAPE, "%s: %s (%s %s%s%s%s)", op, why, a->name[0] ? a->name : "a", sa,
             b ? ", " : "", b ? (b->name[0] ? b->name : "b") : "", b ? sb : "");
    return NULL;
}

ggx_tensor *ggx_graph_leaf(ggx_graph *g, const char *name, enum ggx_type type, int n_dims,
                           const int64_t *dims, void *data, int flags) {
    if (!ggx_type_valid((uint32_t)type)) {
        ggx_fail(GGX_ERR_UNSUPPORTED, "graph leaf %s: bad type %d", name ? name : "?", (int)type);
        return NULL;
    }
    ggx_tensor *t = new_tensor(g, type, n_dims, dims);
    if (!t) return NULL;
    t->data = data;
    t->flags = flags;
    if (name) snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

ggx_tensor *ggx_get_rows(ggx_graph *g, ggx_tensor *table, ggx_tensor *ids) {
    if (!table || !ids) return NULL;
    if (table->n_dims != 2 || ids->type != GGX_TYPE_I32 || ids->n_dims != 1)
        return shape_fail("get_rows", table, ids, "need a 2-D table and 1-D i32 ids");
    ggx_tensor *t = new_op(g, GGX_OP_GET_ROWS, 2, (int64_t[]){ids->dims[0], table->dims[1]},
                           table, ids);
    return t;
}

ggx_tensor *ggx_mul_mat(ggx_graph *g, ggx_tensor *w, ggx_tensor *x) {
    if (!w || !x) return NULL;
    if (w->n_dims != 2 || x->type != GGX_TYPE_F32 || ncols(x) != w->dims[1])
        return shape_fail("mul_mat", w, x, "weight [O, I] needs f32 x [..., I]");
    int64_t dims[GGX_T_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[x->n_dims - 1] = w->dims[0];
    return new_op(g, GGX_OP_MUL_MAT, x->n_dims, dims, w, x);
}

static ggx_tensor *binary(ggx_graph *g, enum ggx_op op, const char *name, ggx_tensor *a,
                          ggx_tensor *b) {
    if (!a || !b) return NULL;
    if (a->type != GGX_TYPE_F32 || b->type != GGX_TYPE_F32)
        return shape_fail(name, a, b, "operands must be f32");
    bool same = ggx_tensor_nelements(a) == ggx_tensor_nelements(b) && ncols(a) == ncols(b);
    bool bcast = b->n_dims == 1 && b->dims[0] == ncols(a);
    if (!same && !bcast) return shape_fail(name, a, b, "shapes differ");
    return new_op(g, op, a->n_dims, a->dims, a, b);
}

ggx_tensor *ggx_add(ggx_graph *g, ggx_tensor *a, ggx_tensor *b) {
    return binary(g, GGX_OP_ADD, "add", a, b);
}
ggx_tensor *ggx_mul(ggx_graph *g, ggx_tensor *a, ggx_tensor *b) {
    return binary(g, GGX_OP_MUL, "mul", a, b);
}

ggx_tensor *ggx_rms_norm(ggx_graph *g, ggx_tensor *x, ggx_tensor *w, float eps) {
    if (!x || !w) return NULL;
    if (x->type != GGX_TYPE_F32 || w->type != GGX_TYPE_F32 || w->n_dims != 1 ||
        w->dims[0] != ncols(x))
        return shape_fail("rms_norm", x, w, "weight must be f32 [cols]");
    ggx_tensor *t = new_op(g, GGX_OP_RMS_NORM, x->n_dims, x->dims, x, w);
    if (t) t->f[0] = eps;
    return t;
}

ggx_tensor *ggx_head_norm(ggx_graph *g, ggx_tensor *x, ggx_tensor *w, int n_heads, float eps) {
    if (!x || !w) return NULL;
    if (x->type != GGX_TYPE_F32 || w->type != GGX_TYPE_F32 || w->n_dims != 1 ||
        w->dims[0] != ncols(x) || n_heads < 1 || ncols(x) % n_heads)
        return shape_fail("head_norm", x, w, "weight must be f32 [NH*D], cols divisible by NH");
    ggx_tensor *t = new_op(g, GGX_OP_HEAD_NORM, x->n_dims, x->dims, x, w);
    if (t) {
        t->i[0] = n_heads;
        t->f[0] = eps;
    }
    return t;
}

static ggx_tensor *same_shape(ggx_graph *g, enum ggx_op op, const char *name, ggx_tensor *a,
                              ggx_tensor *b) {
    if (!a || !b) return NULL;
    if (a->type != GGX_TYPE_F32 || b->type != GGX_TYPE_F32 ||
        ggx_tensor_nelements(a) != ggx_tensor_nelements(b) || ncols(a) != ncols(b))
        return shape_fail(name, a, b, "need two f32 tensors of the same shape");
    return new_op(g, op, a->n_dims, a->dims, a, b);
}

ggx_tensor *ggx_sigmoid_mul(ggx_graph *g, ggx_tensor *gate, ggx_tensor *x) {
    return same_shape(g, GGX_OP_SIGMOID_MUL, "sigmoid_mul", gate, x);
}
ggx_tensor *ggx_swiglu(ggx_graph *g, ggx_tensor *gate, ggx_tensor *up) {
    return same_shape(g, GGX_OP_SWIGLU, "swiglu", gate, up);
}

ggx_tensor *ggx_soft_cap(ggx_graph *g, ggx_tensor *x, ggx_tensor *bias, float cap) {
    if (!x) return NULL;
    if (x->type != GGX_TYPE_F32) return shape_fail("soft_cap", x, NULL, "x must be f32");
    if (bias && (bias->type != GGX_TYPE_F32 || bias->n_dims != 1 || bias->dims[0] != ncols(x)))
        return shape_fail("soft_cap", x, bias, "bias must be f32 [cols]");
    ggx_tensor *t = new_op(g, GGX_OP_SOFT_CAP, x->n_dims, x->dims, x, bias);
    if (t) t->f[0] = cap;
    return t;
}

ggx_tensor *ggx_mlstm(ggx_graph *g, ggx_tensor *q, ggx_tensor *k, ggx_tensor *v, ggx_tensor *ig,
                      ggx_tensor *fg, int layer, int n_heads, int dqk, int dv, int chunk,
                      float eps) {
    if (!q || !k || !v || !ig || !fg) return NULL;
    int64_t T = q->dims[0];
    if (n_heads < 1 || dqk < 1 || dv < 1 || chunk < 1 || layer < 0) {
        ggx_fail(GGX_ERR_INVALID_ARG, "mlstm: bad parameters NH=%d DQK=%d DV=%d L=%d", n_heads,
                 dqk, dv, chunk);
        return NULL;
    }
    if (q->n_dims != 2 || ncols(q) != (int64_t)n_heads * dqk)
        return shape_fail("mlstm", q, NULL, "q must be [T, NH*DQK]");
    if (k->n_dims != 2 || k->dims[0] != T || ncols(k) != (int64_t)n_heads * dqk)
        return shape_fail("mlstm", q, k, "k must be [T, NH*DQK]");
    if (v->n_dims != 2 || v->dims[0] != T || ncols(v) != (int64_t)n_heads * dv)
        return shape_fail("mlstm", q, v, "v must be [T, NH*DV]");
    if (ig->n_dims != 2 || ig->dims[0] != T || ncols(ig) != n_heads)
        return shape_fail("mlstm", q, ig, "input gate must be [T, NH]");
    if (fg->n_dims != 2 || fg->dims[0] != T || ncols(fg) != n_heads)
        return shape_fail("mlstm", q, fg, "forget gate must be [T, NH]");
    ggx_tensor *t = new_op(g, GGX_OP_MLSTM, 2, (int64_t[]){T, (int64_t)n_heads * dv}, q, k);
    if (!t) return NULL;
    t->src[2] = v;
    t->src[3] = ig;
    t->src[4] = fg;
    t->i[0] = layer;
    t->i[1] = n_heads;
    t->i[2] = dqk;
    t->i[3] = dv;
    t->i[4] = chunk;
    t->f[0] = eps;
    return t;
}

/* ------------------------------------------------------------------------------- planner -- */

typedef struct range {
    size_t off, size;
} range;

static size_t align_up(size_t x) { return (x + GGX_ARENA_ALIGN - 1) & ~(size_t)(GGX_ARENA_ALIGN - 1); }

/* Free list kept sorted by offset; adjacent ranges are merged. */
static void free_range(range *fl, int *nfl, size_t off, size_t size) {
    int i = 0;
    while (i < *nfl && fl[i].off < off) i++;
    memmove(&fl[i + 1], &fl[i], (size_t)(*nfl - i) * sizeof *fl);
    fl[i] = (range){off, size};
    (*nfl)++;
    if (i + 1 < *nfl && fl[i].off + fl[i].size == fl[i + 1].off) {
        fl[i].size += fl[i + 1].size;
        memmove(&fl[i + 1], &fl[i + 2], (size_t)(*nfl - i - 2) * sizeof *fl);
        (*nfl)--;
    }
    if (i > 0 && fl[i - 1].off + fl[i - 1].size == fl[i].off) {
        fl[i - 1].size += fl[i].size;
        memmove(&fl[i], &fl[i + 1], (size_t)(*nfl - i - 1) * sizeof *fl);
        (*nfl)--;
    }
}

ggx_status ggx_graph_plan_offsets(ggx_graph *g, size_t *arena_size) {
    ggx_status st = GGX_OK;
    int n = g->n_tensors;
    int *last_use = malloc((size_t)n * sizeof *last_use);
    range *fl = malloc((size_t)(n + 2) * sizeof *fl);
    if (!last_use || !fl) {
        st = ggx_fail(GGX_ERR_NOMEM, "graph planner: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) last_use[i] = -1;
    for (int k = 0; k < g->n_nodes; k++) {
        ggx_tensor *t = g->nodes[k];
        last_use[t->id] = k > last_use[t->id] ? k : last_use[t->id];
        for (int s = 0; s < GGX_MAX_SRC; s++)
            if (t->src[s]) last_use[t->src[s]->id] = k;
    }
    int nfl = 0;
    size_t top = 0; /* arena high-water mark; the free list covers holes below it */
    for (int k = 0; k < g->n_nodes; k++) {
        ggx_tensor *t = g->nodes[k];
        size_t need = align_up(ggx_tensor_nbytes(t));
        if (need == 0) need = GGX_ARENA_ALIGN;
        int best = -1;
        for (int i = 0; i < nfl; i++)
            if (fl[i].size >= need && (best < 0 || fl[i].size < fl[best].size)) best = i;
        if (best >= 0) {
            t->buf_offset = fl[best].off;
            fl[best].off += need;
            fl[best].size -= need;
            if (fl[best].size == 0) {
                memmove(&fl[best], &fl[best + 1], (size_t)(nfl - best - 1) * sizeof *fl);
                nfl--;
            }
        } else if (nfl > 0 && fl[nfl - 1].off + fl[nfl - 1].size == top) {
            /* extend the trailing hole */
            t->buf_offset = fl[nfl - 1].off;
            top = fl[nfl - 1].off + need;
            nfl--;
        } else {
            t->buf_offset = top;
            top += need;
        }
        /* release the inputs whose last consumer is this node (never a leaf or an output) */
        for (int s = 0; s < GGX_MAX_SRC; s++) {
            ggx_tensor *src = t->src[s];
            if (!src || src->op == GGX_OP_NONE || (src->flags & GGX_TF_OUTPUT)) continue;
            bool dup = false;
            for (int s2 = 0; s2 < s; s2++) dup |= t->src[s2] == src;
            if (!dup && last_use[src->id] == k)
                free_range(fl, &nfl, src->buf_offset, align_up(ggx_tensor_nbytes(src)) ?
                           align_up(ggx_tensor_nbytes(src)) : GGX_ARENA_ALIGN);
        }
        /* a result nobody reads (and not an output) is dead right away */
        if (last_use[t->id] == k && !(t->flags & GGX_TF_OUTPUT))
            free_range(fl, &nfl, t->buf_offset, need);
    }
    *arena_size = top;
done:
    free(last_use);
    free(fl);
    return st;
}

ggx_status ggx_graph_plan(ggx_graph *g, ggx_backend *be, void **arena, size_t *arena_cap) {
    size_t need = 0;
    ggx_status st = ggx_graph_plan_offsets(g, &need);
    if (st != GGX_OK) return st;
    if (need > *arena_cap || !*arena) {
        if (*arena) be->iface.release(be, *arena);
        *arena = NULL;
        *arena_cap = 0;
        st = be->iface.alloc(be, need ? need : GGX_ARENA_ALIGN, arena);
        if (st != GGX_OK) return st;
        *arena_cap = need;
    }
    g->arena = *arena;
    g->arena_size = need;
    for (int k = 0; k < g->n_nodes; k++) g->nodes[k]->data = (char *)*arena + g->nodes[k]->buf_offset;
    g->planned = true;
    return GGX_OK;
}

ggx_status ggx_graph_compute(ggx_graph *g, ggx_backend *be) {
    if (!g->planned) return ggx_fail(GGX_ERR_INVALID_ARG, "graph_compute: graph is not planned");
    return be->iface.graph_compute(be, g);
}

const char *ggx_op_name(enum ggx_op op) {
    static const char *names[GGX_OP_COUNT] = {
        "none", "get_rows", "mul_mat", "add", "mul", "rms_norm", "head_norm",
        "sigmoid_mul", "swiglu", "soft_cap", "mlstm",
    };
    return (unsigned)op < GGX_OP_COUNT ? names[op] : "?";
}
