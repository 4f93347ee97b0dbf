/* tokenizer_bpe.c — BPE merges of one pre-token, exactly as HF tokenizers' Word::merge_all:
 * a min-heap of candidate merges ordered by (rank, position), a doubly linked list of symbols,
 * stale heap entries skipped when the pair at their position no longer produces their token.
 * O(n log n) in the word length n. */
#include "tokenizer_internal.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

typedef struct tok_sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t removed;
} tok_sym;

typedef struct tok_merge {
    uint64_t key;   /* rank << 32 | position: the heap order (lowest rank, then leftmost) */
    int32_t new_id;
} tok_merge;

static void heap_push(tok_merge *h, size_t *n, tok_merge m) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= m.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static tok_merge heap_pop(tok_merge *h, size_t *n) {
    tok_merge top = h[0];
    tok_merge last = h[--(*n)];
    size_t i = 0, cnt = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= cnt) break;
        size_t c = (l + 1 < cnt && h[l + 1].key < h[l].key) ? l + 1 : l;
        if (h[c].key >= last.key) break;
        h[i] = h[c];
        i = c;
    }
    if (cnt) h[i] = last;
    return top;
}

static bool lookup_merge(const ggx_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                         int32_t *new_id) {
    uint64_t v;
    if (!tok_u64map_get(&tok->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *new_id = (int32_t)(uint32_t)v;
    return true;
}

static ggx_status reserve(tok_bpe_scratch *s, size_t n_syms) {
    if (n_syms > s->syms_cap) {
        size_t nc = s->syms_cap ? s->syms_cap : 64;
        while (nc < n_syms) nc *= 2;
        tok_sym *ns = realloc(s->syms, nc * sizeof *ns);
        if (!ns) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (word of %zu bytes)", n_syms);
        s->syms = ns;
        s->syms_cap = nc;
    }
    /* the heap holds n-1 initial pairs plus at most 2 per merge (n-1 merges) */
    size_t hn = 3 * n_syms + 1;
    if (hn > s->heap_cap) {
        size_t nc = s->heap_cap ? s->heap_cap : 256;
        while (nc < hn) nc *= 2;
        tok_merge *nh = realloc(s->heap, nc * sizeof *nh);
        if (!nh) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (word of %zu bytes)", n_syms);
        s->heap = nh;
        s->heap_cap = nc;
    }
    return GGX_OK;
}

void tok_bpe_scratch_free(tok_bpe_scratch *s) {
    free(s->syms);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

ggx_status tok_bpe_word(const ggx_tokenizer *tok, const uint8_t *word, size_t len,
                        tok_bpe_scratch *s, tok_ids *out) {
    if (len == 0) return GGX_OK;
    if (len > INT32_MAX / 4) return ggx_fail(GGX_ERR_INVALID_ARG, "tokenizer: pre-token of %zu bytes is too long", len);

    /* ignore_merges: a word that is itself a token is emitted whole (HF BPE::tokenize_with_cache).
     * The vocabulary is keyed by the byte-level spelling, so map the bytes first. */
    if (tok->ignore_merges && len <= 4096) {
        char tmp[8192];
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            memcpy(tmp + k, tok->byte_char[word[i]], tok->byte_char_len[word[i]]);
            k += tok->byte_char_len[word[i]];
        }
        int32_t id = tok_strmap_get(&tok->vocab, tmp, k);
        if (id >= 0) return tok_ids_push(out, id);
    }

    ggx_status st = reserve(s, len);
    if (st) return st;

    /* Initial symbols: one per byte (= one per byte-level char). Bytes without a token become
     * the unknown token (fused if fuse_unk), or are dropped when there is no unk_token. */
    tok_sym *sy = s->syms;
    int32_t n = 0;
    bool pending_unk = false;
    for (size_t i = 0; i < len; i++) {
        int32_t id = tok->byte_id[word[i]];
        if (id >= 0) {
            if (pending_unk) {
                sy[n++].id = tok->unk_id;
                pending_unk = false;
            }
            sy[n++].id = id;
        } else if (tok->unk_id >= 0) {
            if (pending_unk && !tok->fuse_unk) sy[n++].id = tok->unk_id;
            pending_unk = true;
        }
    }
    if (pending_unk) sy[n++].id = tok->unk_id;
    for (int32_t i = 0; i < n; i++) {
        sy[i].prev = i - 1;
        sy[i].next = i + 1 < n ? i + 1 : -1;
        sy[i].removed = 0;
    }

    tok_merge *heap = s->heap;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        uint32_t rank;
        int32_t nid;
        if (lookup_merge(tok, sy[i].id, sy[i + 1].id, &rank, &nid))
            heap_push(heap, &hn, (tok_merge){(uint64_t)rank << 32 | (uint32_t)i, nid});
    }

    while (hn) {
        tok_merge top = heap_pop(heap, &hn);
        int32_t pos = (int32_t)(uint32_t)top.key;
        if (sy[pos].removed || sy[pos].next < 0) continue;
        int32_t rpos = sy[pos].next;
        uint32_t rank;
        int32_t nid;
        /* stale entry: the pair here changed since it was queued */
        if (!lookup_merge(tok, sy[pos].id, sy[rpos].id, &rank, &nid) || nid != top.new_id) continue;

        sy[pos].id = top.new_id;
        sy[pos].next = sy[rpos].next;
        sy[rpos].removed = 1;
        if (sy[rpos].next >= 0) sy[sy[rpos].next].prev = pos;

        int32_t p = sy[pos].prev;
        if (p >= 0 && lookup_merge(tok, sy[p].id, sy[pos].id, &rank, &nid))
            heap_push(heap, &hn, (tok_merge){(uint64_t)rank << 32 | (uint32_t)p, nid});
        int32_t q = sy[pos].next;
        if (q >= 0 && lookup_merge(tok, sy[pos].id, sy[q].id, &rank, &nid))
            heap_push(heap, &hn, (tok_merge){(uint64_t)rank << 32 | (uint32_t)pos, nid});
    }

    for (int32_t i = n ? 0 : -1; i >= 0; i = sy[i].next) {
        st = tok_ids_push(out, sy[i].id);
        if (st) return st;
    }
    return GGX_OK;
}
