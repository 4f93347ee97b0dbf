/*
 * tokenizer_internal.h — the private state of a ggx_tokenizer, shared by the tokenizer_*.c files
 * (load: tokenizer_load.c, encode pipeline: tokenizer_encode.c, BPE merges: tokenizer_bpe.c,
 * decode and streaming: tokenizer_decode.c, hash maps: tokenizer_map.c). Not for other modules:
 * they use include/ggx.h and ggx/tokenizer.h.
 *
 * The tokenizer reproduces Hugging Face `tokenizers` for one pipeline family:
 *   added tokens (split out first) -> NFC (optional) -> ByteLevel pre-tokenizer (GPT-2 regex)
 *   -> BPE with ranked merges -> ByteLevel decoder.
 * docs/tokenizer.md describes the semantics and what is rejected at load.
 *
 * Ownership: everything here is owned by the ggx_tokenizer and immutable after load, so one
 * tokenizer may be used by several threads at once (encode keeps its scratch per call).
 */
#ifndef GGX_TOKENIZER_INTERNAL_H
#define GGX_TOKENIZER_INTERNAL_H

#include "ggx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Largest id we accept in a tokenizer.json (keeps per-id tables bounded on hostile input). */
#define TOK_MAX_ID (1 << 24)

/* ------------------------------------------------------------------ hash maps (tokenizer_map.c) */

/* String -> int32 map; owns copies of its keys. Insertion order is kept (entry index). */
typedef struct tok_sentry {
    uint64_t hash;
    uint32_t off, len; /* key bytes in `keys` */
    int32_t val;
} tok_sentry;

typedef struct tok_strmap {
    uint32_t *slots;   /* [cap] entry index + 1; 0 = empty */
    uint32_t cap;      /* power of two */
    tok_sentry *ents;  /* [n] */
    uint32_t n, ents_cap;
    char *keys;
    size_t keys_len, keys_cap;
} tok_strmap;

uint64_t tok_hash_bytes(const void *p, size_t n);
/* Inserts or (if overwrite) replaces; *idx (may be NULL) receives the entry index. */
ggx_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool overwrite,
                          uint32_t *idx);
/* Entry index of key, or -1. */
int64_t tok_strmap_find(const tok_strmap *m, const char *key, size_t len);
static inline int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    int64_t i = tok_strmap_find(m, key, len);
    return i < 0 ? -1 : m->ents[i].val;
}
static inline const char *tok_strmap_key(const tok_strmap *m, uint32_t i) {
    return m->keys + m->ents[i].off;
}
/* Room for n entries with key_bytes of keys in total (NULs included) without regrowing. */
ggx_status tok_strmap_reserve(tok_strmap *m, uint32_t n, size_t key_bytes);
void tok_strmap_free(tok_strmap *m);

/* u64 -> u64 map (merges: (left_id << 32 | right_id) -> (rank << 32 | new_id)). */
typedef struct tok_u64map {
    uint64_t *keys; /* [cap]; TOK_U64_EMPTY = empty */
    uint64_t *vals;
    uint32_t cap, n, shift;
} tok_u64map;
#define TOK_U64_EMPTY UINT64_MAX

ggx_status tok_u64map_init(tok_u64map *m, uint32_t expected);
void tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val); /* overwrites; never grows */
static inline bool tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val) {
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) { *val = m->vals[i]; return true; }
        if (k == TOK_U64_EMPTY) return false;
        i = (i + 1) & mask;
    }
}
void tok_u64map_free(tok_u64map *m);

/* ------------------------------------------------------------------ added tokens */

typedef struct tok_added {
    char *content;       /* as in tokenizer.json (NUL-terminated; content has no NUL) */
    size_t len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Byte trie over added-token patterns; leftmost-longest matching like aho-corasick's
 * MatchKind::LeftmostLongest (at the leftmost position that matches, the longest pattern). */
typedef struct tok_trie_node {
    int32_t first_child, next_sibling;
    int32_t added;   /* index into tok->added of the pattern ending here, or -1 */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes;
    int32_t n, cap;
    int32_t root[256]; /* node of the first byte, or -1 */
    int32_t n_patterns;
} tok_trie;

/* ------------------------------------------------------------------ the tokenizer */

struct ggx_tokenizer {
    int n_vocab;             /* highest id + 1 over the model vocab and the added tokens */

    /* BPE model */
    tok_strmap vocab;        /* token string (byte-level alphabet) -> id */
    tok_u64map merges;       /* (a << 32 | b) -> (rank << 32 | merged id) */
    int32_t byte_id[256];    /* id of the single-byte token of each byte, -1 if absent */
    uint8_t byte_char[256][2]; /* UTF-8 of the byte-level char of each byte */
    uint8_t byte_char_len[256];
    int32_t unk_id;          /* -1: none (unknown chars are dropped, as HF does) */
    bool fuse_unk;
    bool ignore_merges;

    /* added tokens */
    tok_added *added;
    int n_added;
    tok_strmap added_map;    /* content -> id (HF added_tokens_map) */
    tok_trie trie_raw;       /* normalized == false: matched on the raw input */
    tok_trie trie_norm;      /* normalized == true: matched on the normalized pieces */

    /* normalizer / pre-tokenizer */
    bool nfc;
    bool add_prefix_space;
    bool use_regex;
    pcre2_code *re;          /* the GPT-2 split regex, JIT-compiled when possible */

    /* decode tables, per id [n_vocab] */
    uint32_t *dec_off;       /* offset of the id's decoded bytes in dec_bytes */
    uint32_t *dec_len;       /* 0 for ids with no token */
    uint8_t *dec_special;    /* 1: special added token (skipped by decode, like HF's default) */
    uint8_t *has_token;      /* 1: the id names a token */
    const char **id_str;     /* the token's spelling (into vocab keys or added contents), or NULL */
    char *dec_bytes;
    size_t max_dec_len;      /* longest decoded token in bytes */

    /* model facts */
    int32_t eot_id;          /* <|endoftext|> or -1 */
    int32_t bos_id, eos_id, pad_id;
    int add_bos;
};

/* ------------------------------------------------------------------ UTF-8 (Unicode Table 3-7) */

enum { TOK_UTF8_INVALID = 0, TOK_UTF8_OK = 1, TOK_UTF8_INCOMPLETE = 2 };

/* Classify the bytes at s[0..n) (n >= 1): a well-formed character (*adv = its length), an
 * ill-formed maximal subpart (*adv = its length, >= 1), or a valid prefix that ends at n
 * (*adv = n). Maximal subparts are what Rust's String::from_utf8_lossy replaces by U+FFFD. */
static inline int tok_utf8_scan(const uint8_t *s, size_t n, size_t *adv) {
    uint8_t c = s[0];
    if (c < 0x80) { *adv = 1; return TOK_UTF8_OK; }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else { *adv = 1; return TOK_UTF8_INVALID; }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) { *adv = n; return TOK_UTF8_INCOMPLETE; }
        uint8_t b = s[k];
        if (b < lo || b > hi) { *adv = k; return TOK_UTF8_INVALID; }
        lo = 0x80;
        hi = 0xBF;
    }
    *adv = need + 1;
    return TOK_UTF8_OK;
}

/* ------------------------------------------------------------------ growable buffers */

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
ggx_status tok_ids_push(tok_ids *a, int32_t id);
ggx_status tok_ids_append(tok_ids *a, const int32_t *ids, size_t n);

typedef struct tok_buf {
    char *v;
    size_t n, cap;
} tok_buf;
ggx_status tok_buf_append(tok_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------------ BPE (tokenizer_bpe.c) */

/* Scratch for merging one word; reused across words of one encode call. */
typedef struct tok_bpe_scratch {
    struct tok_sym *syms;
    struct tok_merge *heap;
    size_t syms_cap, heap_cap;
} tok_bpe_scratch;

/* BPE of one pre-token given as raw bytes (before the byte-level mapping); appends the ids. */
ggx_status tok_bpe_word(const ggx_tokenizer *tok, const uint8_t *word, size_t len,
                        tok_bpe_scratch *s, tok_ids *out);
void tok_bpe_scratch_free(tok_bpe_scratch *s);

/* ------------------------------------------------------------------ pieces shared by files */

/* Encode valid UTF-8 into ids (appended to out). */
ggx_status tok_encode_ids(const ggx_tokenizer *tok, const char *text, size_t len, tok_ids *out);
/* Trie build (tokenizer_encode.c). */
ggx_status tok_trie_add(tok_trie *t, const char *pat, size_t len, int32_t added_index);
void tok_trie_init(tok_trie *t);
void tok_trie_free(tok_trie *t);
/* NFC of s[0..n) into a malloc'ed buffer (*out, *out_len); s must be valid UTF-8. */
ggx_status tok_nfc(const char *s, size_t n, char **out, size_t *out_len);
/* Lossy UTF-8 of bytes (maximal subparts -> U+FFFD), appended to out. If `final` is false, a
 * trailing valid-but-incomplete sequence is not consumed; returns the bytes consumed. */
ggx_status tok_utf8_lossy(const uint8_t *s, size_t n, bool final, tok_buf *out, size_t *consumed);

#endif
