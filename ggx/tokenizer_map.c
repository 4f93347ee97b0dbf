/* tokenizer_map.c — the tokenizer's hash maps (string -> id, pair -> merge) and growable arrays.
 * Open addressing with linear probing; tables are powers of two kept at most half full. */
#include "tokenizer_internal.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- hashing */

/* 64-bit hash of a short byte string: 8 bytes at a time with a multiply-xorshift mix
 * (keys are tokens and words, mostly < 16 bytes). */
uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------------- string map */

static ggx_status strmap_rehash(tok_strmap *m, uint32_t cap) {
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (hash table of %u)", cap);
    for (uint32_t e = 0; e < m->n; e++) {
        uint32_t i = (uint32_t)m->ents[e].hash & (cap - 1);
        while (slots[i]) i = (i + 1) & (cap - 1);
        slots[i] = e + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return GGX_OK;
}

ggx_status tok_strmap_reserve(tok_strmap *m, uint32_t n, size_t key_bytes) {
    uint32_t cap = m->cap ? m->cap : 64;
    while ((uint64_t)n * 2 > cap && cap < (1u << 31)) cap *= 2;
    if (cap > m->cap) {
        ggx_status st = strmap_rehash(m, cap);
        if (st) return st;
    }
    if (n > m->ents_cap) {
        tok_sentry *ne = realloc(m->ents, (size_t)n * sizeof *ne);
        if (!ne) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        m->ents = ne;
        m->ents_cap = n;
    }
    if (key_bytes > m->keys_cap && key_bytes <= UINT32_MAX) {
        char *nk = realloc(m->keys, key_bytes);
        if (!nk) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        m->keys = nk;
        m->keys_cap = key_bytes;
    }
    return GGX_OK;
}

int64_t tok_strmap_find(const tok_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = tok_hash_bytes(key, len);
    uint32_t i = (uint32_t)h & (m->cap - 1);
    for (;;) {
        uint32_t s = m->slots[i];
        if (!s) return -1;
        const tok_sentry *e = &m->ents[s - 1];
        if (e->hash == h && e->len == len && !memcmp(m->keys + e->off, key, len)) return s - 1;
        i = (i + 1) & (m->cap - 1);
    }
}

ggx_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool overwrite,
                          uint32_t *idx) {
    int64_t f = tok_strmap_find(m, key, len);
    if (f >= 0) {
        if (overwrite) m->ents[f].val = val;
        if (idx) *idx = (uint32_t)f;
        return GGX_OK;
    }
    if (len > UINT32_MAX / 2 || m->n >= UINT32_MAX / 4)
        return ggx_fail(GGX_ERR_INVALID_ARG, "tokenizer: hash map key or size too large");
    if ((uint64_t)(m->n + 1) * 2 > m->cap) {
        ggx_status st = strmap_rehash(m, m->cap ? m->cap * 2 : 64);
        if (st) return st;
    }
    if (m->n == m->ents_cap) {
        uint32_t nc = m->ents_cap ? m->ents_cap * 2 : 32;
        tok_sentry *ne = realloc(m->ents, nc * sizeof *ne);
        if (!ne) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        m->ents = ne;
        m->ents_cap = nc;
    }
    if (m->keys_len + len + 1 > m->keys_cap) {
        size_t nc = m->keys_cap ? m->keys_cap * 2 : 1024;
        while (nc < m->keys_len + len + 1) nc *= 2;
        if (nc > UINT32_MAX) return ggx_fail(GGX_ERR_INVALID_ARG, "tokenizer: keys exceed 4 GiB");
        char *nk = realloc(m->keys, nc);
        if (!nk) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        m->keys = nk;
        m->keys_cap = nc;
    }
    tok_sentry *e = &m->ents[m->n];
    e->hash = tok_hash_bytes(key, len);
    e->off = (uint32_t)m->keys_len;
    e->len = (uint32_t)len;
    e->val = val;
    if (len) memcpy(m->keys + m->keys_len, key, len);
    m->keys[m->keys_len + len] = 0; /* keys are NUL-terminated for convenience */
    m->keys_len += len + 1;
    uint32_t i = (uint32_t)e->hash & (m->cap - 1);
    while (m->slots[i]) i = (i + 1) & (m->cap - 1);
    m->slots[i] = m->n + 1;
    if (idx) *idx = m->n;
    m->n++;
    return GGX_OK;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->ents);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- u64 map */

ggx_status tok_u64map_init(tok_u64map *m, uint32_t expected) {
    uint32_t cap = 16, shift = 60;
    while (cap < expected * 2u + 2u) {
        cap *= 2;
        shift--;
    }
    m->keys = malloc((size_t)cap * sizeof *m->keys);
    m->vals = malloc((size_t)cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = m->vals = NULL;
        return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (merge table of %u)", cap);
    }
    memset(m->keys, 0xFF, (size_t)cap * sizeof *m->keys);
    m->cap = cap;
    m->n = 0;
    m->shift = shift;
    return GGX_OK;
}

void tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val) {
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    while (m->keys[i] != TOK_U64_EMPTY && m->keys[i] != key) i = (i + 1) & mask;
    if (m->keys[i] == TOK_U64_EMPTY) m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
}

void tok_u64map_free(tok_u64map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- growable arrays */

ggx_status tok_ids_append(tok_ids *a, const int32_t *ids, size_t n) {
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        while (nc < a->n + n) nc *= 2;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (%zu ids)", nc);
        a->v = nv;
        a->cap = nc;
    }
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return GGX_OK;
}

ggx_status tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n < a->cap) {
        a->v[a->n++] = id;
        return GGX_OK;
    }
    return tok_ids_append(a, &id, 1);
}

ggx_status tok_buf_append(tok_buf *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *nv = realloc(b->v, nc);
        if (!nv) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", nc);
        b->v = nv;
        b->cap = nc;
    }
    if (n) memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
    return GGX_OK;
}
