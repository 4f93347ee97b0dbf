/*
 * serve_cache.h — the prefix-state cache of `ggx serve`.
 *
 * An xLSTM's whole context is its recurrent state, so "the model has read this prefix" is one
 * fixed-size snapshot. Entries are keyed by the exact token prefix (a 64-bit hash to find them,
 * the full token list to confirm), bounded by a byte budget, evicted least-recently-used.
 * Used only by the scheduler thread (no locking); sizes are mirrored into serve_metrics.
 */
#ifndef GGX_TOOLS_SERVE_CACHE_H
#define GGX_TOOLS_SERVE_CACHE_H

#include "ggx.h"
#include "serve_metrics.h"

#include <stddef.h>
#include <stdint.h>

/* Snapshots are taken at multiples of this many tokens (and at a chat system message's end). */
#define SERVE_CACHE_BLOCK 64

typedef struct serve_cache serve_cache;

/* budget_bytes == 0 disables the cache (lookups miss, stores are dropped). */
serve_cache *serve_cache_new(ggx_model *model, size_t budget_bytes, serve_metrics *metrics);
void serve_cache_free(serve_cache *c);
int serve_cache_enabled(const serve_cache *c);

/* FNV-1a over token ids; prefix hashes chain: h(t[0..n)) = serve_cache_hash(h(t[0..n-1)), t). */
uint64_t serve_cache_hash_init(void);
uint64_t serve_cache_hash_step(uint64_t h, int32_t tok);

/* Longest of the candidate lengths (ascending, each < n_tokens) whose prefix is cached: copies its
 * state into dst and returns the length, or returns 0 (dst untouched). */
int serve_cache_lookup(serve_cache *c, const int32_t *tokens, const int *cand, int n_cand,
                       ggx_state *dst);
/* Store a copy of src, which has read exactly tokens[0..n). No-op if present or over budget. */
void serve_cache_store(serve_cache *c, const int32_t *tokens, int n, const ggx_state *src);

#endif
