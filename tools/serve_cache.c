/* serve_cache.c — prefix-state snapshots with LRU eviction under a byte budget. */
#include "serve.h"
#include "serve_cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint64_t hash;
    int32_t *tokens; // [n] the exact prefix, to rule out hash collisions
    int n;
    ggx_state *state;
    size_t bytes;
    struct entry *prev, *next; // LRU list: head = most recent
} entry;

struct serve_cache {
    ggx_model *model;
    size_t budget, used, state_bytes;
    entry *head, *tail;
    int64_t n_entries;
    serve_metrics *metrics;
};

uint64_t serve_cache_hash_init(void) { return 0xcbf29ce484222325ull; }

uint64_t serve_cache_hash_step(uint64_t h, int32_t tok) {
    uint32_t u = (uint32_t)tok;
    for (int i = 0; i < 4; i++) {
        h ^= (u >> (8 * i)) & 0xffu;
        h *= 0x100000001b3ull;
    }
    return h;
}

serve_cache *serve_cache_new(ggx_model *model, size_t budget_bytes, serve_metrics *metrics) {
    serve_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->model = model;
    c->budget = budget_bytes;
    c->state_bytes = ggx_model_state_size(model);
    c->metrics = metrics;
    return c;
}

static void unlink_entry(serve_cache *c, entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(serve_cache *c, entry *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static void free_entry(serve_cache *c, entry *e) {
    unlink_entry(c, e);
    c->used -= e->bytes;
    c->n_entries--;
    ggx_state_free(e->state);
    free(e->tokens);
    free(e);
}

static void publish(serve_cache *c) {
    if (c->metrics) serve_metrics_cache_size(c->metrics, c->n_entries, (int64_t)c->used);
}

void serve_cache_free(serve_cache *c) {
    if (!c) return;
    while (c->head) free_entry(c, c->head);
    free(c);
}

int serve_cache_enabled(const serve_cache *c) { return c && c->budget > 0; }

static entry *find(serve_cache *c, uint64_t h, const int32_t *tokens, int n) {
    for (entry *e = c->head; e; e = e->next)
        if (e->hash == h && e->n == n && !memcmp(e->tokens, tokens, sizeof(int32_t) * (size_t)n))
            return e;
    return NULL;
}

int serve_cache_lookup(serve_cache *c, const int32_t *tokens, const int *cand, int n_cand,
                       ggx_state *dst) {
    if (!serve_cache_enabled(c) || n_cand <= 0 || !c->head) return 0;
    // prefix hashes at every candidate length, in one pass
    uint64_t hs[64];
    if (n_cand > 64) {
        cand += n_cand - 64; // keep the longest ones
        n_cand = 64;
    }
    uint64_t h = serve_cache_hash_init();
    int pos = 0;
    for (int i = 0; i < n_cand; i++) {
        for (; pos < cand[i]; pos++) h = serve_cache_hash_step(h, tokens[pos]);
        hs[i] = h;
    }
    for (int i = n_cand - 1; i >= 0; i--) {
        entry *e = find(c, hs[i], tokens, cand[i]);
        if (!e) continue;
        if (ggx_state_copy(dst, e->state) != GGX_OK) return 0;
        unlink_entry(c, e);
        push_front(c, e);
        return cand[i];
    }
    return 0;
}

void serve_cache_store(serve_cache *c, const int32_t *tokens, int n, const ggx_state *src) {
    if (!serve_cache_enabled(c) || n <= 0) return;
    uint64_t h = serve_cache_hash_init();
    for (int i = 0; i < n; i++) h = serve_cache_hash_step(h, tokens[i]);
    entry *old = find(c, h, tokens, n);
    if (old) {
        unlink_entry(c, old);
        push_front(c, old);
        return;
    }
    size_t bytes = c->state_bytes + sizeof(int32_t) * (size_t)n + sizeof(entry);
    if (bytes > c->budget) return;
    while (c->used + bytes > c->budget && c->tail) free_entry(c, c->tail);
    entry *e = calloc(1, sizeof *e);
    if (!e) return;
    e->tokens = malloc(sizeof(int32_t) * (size_t)n);
    if (!e->tokens || ggx_state_create(c->model, &e->state) != GGX_OK ||
        ggx_state_copy(e->state, src) != GGX_OK) {
        if (e->state) ggx_state_free(e->state);
        free(e->tokens);
        free(e);
        return;
    }
    memcpy(e->tokens, tokens, sizeof(int32_t) * (size_t)n);
    e->hash = h;
    e->n = n;
    e->bytes = bytes;
    push_front(c, e);
    c->used += bytes;
    c->n_entries++;
    publish(c);
}
