/* tokenizer_encode.c — text -> ids, the HF tokenizers pipeline step by step:
 *   1. split out added tokens whose `normalized` is false, on the raw text;
 *   2. NFC-normalize each remaining piece (utf8proc), then split out the `normalized` added tokens;
 *   3. ByteLevel pre-tokenizer: optional prefix space, then the GPT-2 regex (PCRE2, JIT);
 *   4. BPE of each pre-token (tokenizer_bpe.c) through a per-call word cache.
 * Invalid UTF-8 input is rejected naming the byte offset (docs/tokenizer.md). */
#include "tokenizer_internal.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ================================================================ added-token trie */

void tok_trie_init(tok_trie *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++) t->root[i] = -1;
}

void tok_trie_free(tok_trie *t) {
    free(t->nodes);
    tok_trie_init(t);
}

static int32_t trie_new_node(tok_trie *t, uint8_t byte) {
    if (t->n == t->cap) {
        int32_t nc = t->cap ? t->cap * 2 : 64;
        tok_trie_node *nn = realloc(t->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        t->nodes = nn;
        t->cap = nc;
    }
    t->nodes[t->n] = (tok_trie_node){-1, -1, -1, byte};
    return t->n++;
}

/* Adds a pattern; a pattern already present keeps its first token (aho-corasick reports the
 * first of equal patterns). */
ggx_status tok_trie_add(tok_trie *t, const char *pat, size_t len, int32_t added_index) {
    if (len == 0) return GGX_OK;
    if (len > (1u << 20)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer: added token of %zu bytes", len);
    const uint8_t *p = (const uint8_t *)pat;
    int32_t node = t->root[p[0]];
    if (node < 0) {
        node = trie_new_node(t, p[0]);
        if (node < 0) goto nomem;
        t->root[p[0]] = node;
    }
    for (size_t i = 1; i < len; i++) {
        int32_t c = t->nodes[node].first_child;
        while (c >= 0 && t->nodes[c].byte != p[i]) c = t->nodes[c].next_sibling;
        if (c < 0) {
            c = trie_new_node(t, p[i]);
            if (c < 0) goto nomem;
            t->nodes[c].next_sibling = t->nodes[node].first_child;
            t->nodes[node].first_child = c;
        }
        node = c;
    }
    if (t->nodes[node].added < 0) {
        t->nodes[node].added = added_index;
        t->n_patterns++;
    }
    return GGX_OK;
nomem:
    return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (added-token trie)");
}

/* Longest pattern starting at s[i]; returns its length (0: none) and the added-token index. */
static size_t trie_longest_at(const tok_trie *t, const uint8_t *s, size_t len, size_t i,
                              int32_t *added) {
    int32_t node = t->root[s[i]];
    size_t best = 0;
    size_t j = i;
    while (node >= 0) {
        if (t->nodes[node].added >= 0) {
            best = j - i + 1;
            *added = t->nodes[node].added;
        }
        if (++j >= len) break;
        int32_t c = t->nodes[node].first_child;
        while (c >= 0 && t->nodes[c].byte != s[j]) c = t->nodes[c].next_sibling;
        node = c;
    }
    return best;
}

/* ================================================================ character classes */

static int32_t decode_cp(const uint8_t *s, size_t n, size_t *adv) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)n, &cp);
    *adv = k > 0 ? (size_t)k : 1;
    return k > 0 ? cp : -1;
}

/* Unicode White_Space (what Rust's and Oniguruma's \s match). */
static bool is_ws(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Rust regex \w: Alphabetic, marks, decimal digits, connector punctuation, join controls. */
static bool is_word(int32_t c) {
    if (c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* Start of the character that ends at s[end) (s valid UTF-8, end > 0). */
static size_t prev_char(const uint8_t *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* ================================================================ find_matches */

typedef struct tok_split {
    int32_t id;       /* -1: plain text */
    size_t start, stop;
} tok_split;

typedef struct tok_splits {
    tok_split *v;
    size_t n, cap;
} tok_splits;

static ggx_status splits_push(tok_splits *a, int32_t id, size_t start, size_t stop) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        tok_split *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = (tok_split){id, start, stop};
    return GGX_OK;
}

/* HF AddedVocabulary::find_matches, step for step (including how lstrip/rstrip and single_word
 * interact with the non-overlapping leftmost-longest scan). */
static ggx_status find_matches(const ggx_tokenizer *tok, const tok_trie *trie, const uint8_t *s,
                               size_t len, tok_splits *out) {
    out->n = 0;
    if (len == 0) return GGX_OK;
    ggx_status st;
    size_t start_offset = 0;
    size_t i = 0;
    while (trie->n_patterns && i < len) {
        int32_t ai = -1;
        size_t plen = trie_longest_at(trie, s, len, i, &ai);
        if (!plen) {
            i++;
            continue;
        }
        size_t start = i, stop = i + plen;
        i = stop;
        const tok_added *a = &tok->added[ai];
        if (a->single_word) {
            size_t adv;
            bool start_space = start == 0 ||
                               !is_word(decode_cp(s + prev_char(s, start), start - prev_char(s, start), &adv));
            bool stop_space = stop == len || !is_word(decode_cp(s + stop, len - stop, &adv));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = prev_char(s, ns), adv;
                if (!is_ws(decode_cp(s + p, ns - p, &adv))) break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < len) {
                size_t adv;
                if (!is_ws(decode_cp(s + stop, len - stop, &adv))) break;
                stop += adv;
            }
        }
        if (start_offset < start && (st = splits_push(out, -1, start_offset, start))) return st;
        if ((st = splits_push(out, a->id, start, stop))) return st;
        start_offset = stop;
    }
    if (start_offset != len && (st = splits_push(out, -1, start_offset, len))) return st;
    return GGX_OK;
}

/* ================================================================ NFC */

ggx_status tok_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (r < 0) {
        free(dst);
        return ggx_fail(r == UTF8PROC_ERROR_NOMEM ? GGX_ERR_NOMEM : GGX_ERR_INVALID_ARG,
                        "tokenizer: NFC normalization failed: %s", utf8proc_errmsg(r));
    }
    *out = (char *)dst;
    *out_len = (size_t)r;
    return GGX_OK;
}

/* Code points below U+0300 are NFC-stable and nothing composes with them unless a combining
 * mark (>= U+0300, lead byte >= 0xCC) follows, so such text is its own NFC. */
static bool maybe_not_nfc(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0xCC) return true;
    return false;
}

/* ================================================================ encode context */

#define CACHE_MAX_WORD 64        /* longer pre-tokens are not cached */
#define CACHE_MAX_ENTRIES (1u << 18)

typedef struct enc_ctx {
    const ggx_tokenizer *tok;
    tok_ids *out;
    tok_bpe_scratch bpe;
    pcre2_match_data *md;
    tok_splits raw, norm;
    tok_buf prefixed;
    /* word cache: pre-token bytes -> ids (cache_span[i] = offset, count into cache_ids) */
    tok_strmap cache;
    uint32_t (*cache_span)[2];
    size_t cache_span_cap;
    tok_ids cache_ids;
} enc_ctx;

static void enc_ctx_free(enc_ctx *c) {
    tok_bpe_scratch_free(&c->bpe);
    if (c->md) pcre2_match_data_free(c->md);
    free(c->raw.v);
    free(c->norm.v);
    free(c->prefixed.v);
    tok_strmap_free(&c->cache);
    free(c->cache_span);
    free(c->cache_ids.v);
}

static ggx_status enc_word(enc_ctx *c, const uint8_t *w, size_t len) {
    if (len == 0) return GGX_OK;
    if (len > CACHE_MAX_WORD) return tok_bpe_word(c->tok, w, len, &c->bpe, c->out);
    int64_t e = tok_strmap_find(&c->cache, (const char *)w, len);
    if (e >= 0) {
        uint32_t *sp = c->cache_span[c->cache.ents[e].val];
        return tok_ids_append(c->out, c->cache_ids.v + sp[0], sp[1]);
    }
    size_t n0 = c->out->n;
    ggx_status st = tok_bpe_word(c->tok, w, len, &c->bpe, c->out);
    if (st || c->cache.n >= CACHE_MAX_ENTRIES) return st;
    if (c->cache.n == c->cache_span_cap) {
        size_t nc = c->cache_span_cap ? c->cache_span_cap * 2 : 1024;
        uint32_t(*ns)[2] = realloc(c->cache_span, nc * sizeof *ns);
        if (!ns) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (word cache)");
        c->cache_span = ns;
        c->cache_span_cap = nc;
    }
    uint32_t k = c->cache.n;
    c->cache_span[k][0] = (uint32_t)c->cache_ids.n;
    c->cache_span[k][1] = (uint32_t)(c->out->n - n0);
    if ((st = tok_ids_append(&c->cache_ids, c->out->v + n0, c->out->n - n0))) return st;
    return tok_strmap_put(&c->cache, (const char *)w, len, (int32_t)k, false, NULL);
}

/* ByteLevel pre-tokenizer on one normalized piece, then BPE of each pre-token. */
static ggx_status enc_pretok(enc_ctx *c, const uint8_t *s, size_t len) {
    const ggx_tokenizer *tok = c->tok;
    ggx_status st;
    if (len == 0) return GGX_OK;
    if (tok->add_prefix_space && s[0] != ' ') {
        c->prefixed.n = 0;
        if ((st = tok_buf_append(&c->prefixed, " ", 1)) || (st = tok_buf_append(&c->prefixed, s, len)))
            return st;
        s = (const uint8_t *)c->prefixed.v;
        len = c->prefixed.n;
    }
    if (!tok->use_regex) return enc_word(c, s, len);
    size_t off = 0;
    while (off < len) {
        int rc = pcre2_match(tok->re, s, len, off, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return enc_word(c, s + off, len - off);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ggx_fail(GGX_ERR_INVALID_ARG, "tokenizer: split regex failed at byte %zu: %s",
                            off, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > off && (st = enc_word(c, s + off, ms - off))) return st; /* a gap (Isolated) */
        if ((st = enc_word(c, s + ms, me - ms))) return st;
        if (me == ms) { /* cannot happen with this pattern; never loop forever */
            size_t adv;
            tok_utf8_scan(s + me, len - me, &adv);
            if ((st = enc_word(c, s + me, adv))) return st;
            me += adv;
        }
        off = me;
    }
    return GGX_OK;
}

/* A piece without raw added tokens: normalize, split out normalized added tokens, pre-tokenize. */
static ggx_status enc_piece(enc_ctx *c, const uint8_t *s, size_t len) {
    const ggx_tokenizer *tok = c->tok;
    char *nfc = NULL;
    ggx_status st = GGX_OK;
    if (tok->nfc && maybe_not_nfc(s, len)) {
        size_t nlen = 0;
        if ((st = tok_nfc((const char *)s, len, &nfc, &nlen))) return st;
        s = (const uint8_t *)nfc;
        len = nlen;
    }
    if (!tok->trie_norm.n_patterns) {
        st = enc_pretok(c, s, len);
        goto done;
    }
    if ((st = find_matches(tok, &tok->trie_norm, s, len, &c->norm))) goto done;
    for (size_t i = 0; i < c->norm.n; i++) {
        tok_split sp = c->norm.v[i];
        if (sp.stop <= sp.start) continue; /* HF drops empty pieces */
        if (sp.id >= 0) st = tok_ids_push(c->out, sp.id);
        else st = enc_pretok(c, s + sp.start, sp.stop - sp.start);
        if (st) goto done;
    }
done:
    free(nfc);
    return st;
}

ggx_status tok_encode_ids(const ggx_tokenizer *tok, const char *text, size_t len, tok_ids *out) {
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.tok = tok;
    c.out = out;
    ggx_status st = GGX_OK;
    const uint8_t *s = (const uint8_t *)text;
    if (len == 0) return GGX_OK;
    if (tok->use_regex) {
        c.md = pcre2_match_data_create_from_pattern(tok->re, NULL);
        if (!c.md) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (regex match data)");
    }
    if ((st = find_matches(tok, &tok->trie_raw, s, len, &c.raw))) goto done;
    if (c.raw.n == 0) { /* no added tokens at all */
        st = enc_piece(&c, s, len);
        goto done;
    }
    /* the piece list is consumed before enc_piece reuses c.norm; c.raw is not touched there */
    for (size_t i = 0; i < c.raw.n; i++) {
        tok_split sp = c.raw.v[i];
        if (sp.stop <= sp.start) continue;
        if (sp.id >= 0) st = tok_ids_push(out, sp.id);
        else st = enc_piece(&c, s + sp.start, sp.stop - sp.start);
        if (st) goto done;
    }
done:
    enc_ctx_free(&c);
    return st;
}

/* ================================================================ public API */

ggx_status ggx_tokenizer_encode(const ggx_tokenizer *tok, const char *text, size_t len,
                                int32_t *ids, size_t max_ids, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!tok || !n_out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_encode: NULL tokenizer or n_out");
    if (!text && len) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_encode: NULL text");
    if (!ids && max_ids) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_encode: NULL ids with max_ids > 0");
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t adv;
        int r = tok_utf8_scan(s + i, len - i, &adv);
        if (r != TOK_UTF8_OK)
            return ggx_fail(GGX_ERR_INVALID_ARG,
                            "tokenizer: input is not valid UTF-8: %s sequence starting with byte "
                            "0x%02X at byte offset %zu",
                            r == TOK_UTF8_INCOMPLETE ? "truncated" : "ill-formed", s[i], i);
        i += adv;
    }
    tok_ids out = {0};
    ggx_status st = tok_encode_ids(tok, text, len, &out);
    if (st) {
        free(out.v);
        return st;
    }
    size_t n = out.n < max_ids ? out.n : max_ids;
    if (n) memcpy(ids, out.v, n * sizeof *ids);
    free(out.v);
    *n_out = out.n;
    if (out.n > max_ids)
        return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_encode: text has %zu tokens, buffer holds %zu",
                        out.n, max_ids);
    return GGX_OK;
}
