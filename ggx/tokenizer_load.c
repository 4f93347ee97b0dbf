/* tokenizer_load.c — build a ggx_tokenizer from a Hugging Face tokenizer.json (cJSON), or from
 * the tokenizer.json blob of a .ggx. Everything the encoder and decoder need is precomputed here:
 * vocabulary and merge hash maps, byte-level tables, added-token tries, per-id decoded bytes.
 * Components we do not implement are refused by name (GGX_ERR_UNSUPPORTED). */
#include "tokenizer_internal.h"

#include "error.h"
#include "ggxfile.h"
#include "keys.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* The GPT-2 split regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out as Unicode White_Space: what Oniguruma (HF's regex engine) matches for \s,
 * while PCRE2's UCP \s differs (it also matches U+180E). */
#define TOK_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" TOK_WS "\\p{L}\\p{N}]+"
    "|[" TOK_WS "]+(?![^" TOK_WS "])|[" TOK_WS "]+";

/* ================================================================ small JSON helpers */

static const char *json_type_name(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "(no type)";
}

/* bool field with a default; a field of another type is an error */
static ggx_status json_bool(const cJSON *o, const char *key, bool def, bool *out, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return GGX_OK;
    }
    if (!cJSON_IsBool(v)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: %s.%s is not a boolean", where, key);
    *out = cJSON_IsTrue(v);
    return GGX_OK;
}

static bool json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
}

static bool utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t adv;
        if (tok_utf8_scan((const uint8_t *)s + i, n - i, &adv) != TOK_UTF8_OK) return false;
        i += adv;
    }
    return true;
}

/* ================================================================ components */

static ggx_status parse_normalizer(ggx_tokenizer *tok, const cJSON *n, int depth) {
    if (!n || cJSON_IsNull(n)) return GGX_OK;
    const char *type = json_type_name(n);
    if (!strcmp(type, "NFC")) {
        tok->nfc = true;
        return GGX_OK;
    }
    if (!strcmp(type, "Sequence") && depth < 8) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: normalizer Sequence without a normalizers list");
        const cJSON *c;
        cJSON_ArrayForEach(c, list) {
            ggx_status st = parse_normalizer(tok, c, depth + 1);
            if (st) return st;
        }
        return GGX_OK;
    }
    return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: normalizer type '%s' is not supported (ggx implements NFC)", type);
}

static ggx_status parse_pre_tokenizer(ggx_tokenizer *tok, const cJSON *p) {
    if (!p || cJSON_IsNull(p))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: no pre_tokenizer; ggx implements the ByteLevel pre-tokenizer only");
    const char *type = json_type_name(p);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (cJSON_GetArraySize(list) == 1) return parse_pre_tokenizer(tok, cJSON_GetArrayItem(list, 0));
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer Sequence of %d is not supported (ggx implements one ByteLevel)",
                        cJSON_GetArraySize(list));
    }
    if (strcmp(type, "ByteLevel"))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer type '%s' is not supported (ggx implements ByteLevel)", type);
    ggx_status st;
    /* HF's ByteLevel defaults: add_prefix_space = true, use_regex = true */
    if ((st = json_bool(p, "add_prefix_space", true, &tok->add_prefix_space, "pre_tokenizer")) ||
        (st = json_bool(p, "use_regex", true, &tok->use_regex, "pre_tokenizer")))
        return st;
    return GGX_OK;
}

static ggx_status check_decoder(const cJSON *d) {
    if (!d || cJSON_IsNull(d))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: no decoder; ggx implements the ByteLevel decoder only");
    const char *type = json_type_name(d);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        if (cJSON_GetArraySize(list) == 1) return check_decoder(cJSON_GetArrayItem(list, 0));
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: decoder Sequence of %d is not supported (ggx implements one ByteLevel)",
                        cJSON_GetArraySize(list));
    }
    if (strcmp(type, "ByteLevel"))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: decoder type '%s' is not supported (ggx implements ByteLevel)", type);
    return GGX_OK;
}

static ggx_status check_post_processor(const cJSON *p) {
    if (!p || cJSON_IsNull(p)) return GGX_OK;
    const char *type = json_type_name(p);
    if (!strcmp(type, "ByteLevel")) return GGX_OK; /* only adjusts offsets; ids are unchanged */
    return ggx_fail(GGX_ERR_UNSUPPORTED,
                    "tokenizer.json: post_processor type '%s' is not supported (ggx implements ByteLevel, which adds no tokens)", type);
}

/* The 256 byte <-> char map of GPT-2's bytes_to_unicode(): printable bytes map to themselves,
 * the others to U+0100 + k in byte order. */
static void build_byte_chars(ggx_tokenizer *tok, int16_t char_to_byte[0x144]) {
    int k = 0;
    for (int i = 0; i < 0x144; i++) char_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        int cp = keep ? b : 256 + k++;
        char_to_byte[cp] = (int16_t)b;
        if (cp < 0x80) {
            tok->byte_char[b][0] = (uint8_t)cp;
            tok->byte_char_len[b] = 1;
        } else {
            tok->byte_char[b][0] = (uint8_t)(0xC0 | (cp >> 6));
            tok->byte_char[b][1] = (uint8_t)(0x80 | (cp & 0x3F));
            tok->byte_char_len[b] = 2;
        }
    }
}

static ggx_status parse_model(ggx_tokenizer *tok, const cJSON *m, int32_t *max_id) {
    if (!cJSON_IsObject(m)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: no model object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (t && !(cJSON_IsString(t) && !strcmp(t->valuestring, "BPE")))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported (ggx implements BPE)",
                        cJSON_IsString(t) ? t->valuestring : "?");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0.0))
        return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported (encoding would be random)");
    static const char *const k_no[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k_no[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: BPE %s is not supported", k_no[i]);
    }
    bool byte_fallback = false;
    ggx_status st;
    if ((st = json_bool(m, "byte_fallback", false, &byte_fallback, "model")) ||
        (st = json_bool(m, "fuse_unk", false, &tok->fuse_unk, "model")) ||
        (st = json_bool(m, "ignore_merges", false, &tok->ignore_merges, "model")))
        return st;
    if (byte_fallback) return ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: BPE byte_fallback is not supported");

    /* vocab: later duplicates win, like serde's HashMap */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    if (!cJSON_IsObject(vocab)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    const cJSON *e;
    uint32_t n_vocab = 0;
    size_t key_bytes = 0;
    cJSON_ArrayForEach(e, vocab) {
        n_vocab++;
        key_bytes += strlen(e->string) + 1;
    }
    if ((st = tok_strmap_reserve(&tok->vocab, n_vocab, key_bytes))) return st;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id;
        if (!json_int(e, 0, TOK_MAX_ID - 1, &id))
            return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: vocab entry '%.64s' has no valid id (0..%d)", e->string, TOK_MAX_ID - 1);
        size_t len = strlen(e->string);
        if (!utf8_valid(e->string, len)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: vocab entry with invalid UTF-8");
        if ((st = tok_strmap_put(&tok->vocab, e->string, len, (int32_t)id, true, NULL))) return st;
        if (id > *max_id) *max_id = (int32_t)id;
    }

    /* unk_token must be in the vocabulary (HF fails when it needs it; we fail at load) */
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(m, "unk_token");
    tok->unk_id = -1;
    if (cJSON_IsString(unk)) {
        tok->unk_id = tok_strmap_get(&tok->vocab, unk->valuestring, strlen(unk->valuestring));
        if (tok->unk_id < 0)
            return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: unk_token '%.64s' is not in the vocabulary", unk->valuestring);
    }

    /* merges: "a b" strings or ["a", "b"] pairs; rank = position (lines "#version..." skipped) */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (merges && !cJSON_IsArray(merges)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: model.merges is not a list");
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    if (n_merges > (1 << 26)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: %d merges is too many", n_merges);
    if ((st = tok_u64map_init(&tok->merges, (uint32_t)n_merges))) return st;
    char *cat = NULL;
    size_t cat_cap = 0;
    uint32_t rank = 0;
    st = GGX_OK;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: merge #%u '%.64s' is not two tokens separated by one space", rank + 1, s);
                break;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: merge #%u is neither \"a b\" nor [\"a\", \"b\"]", rank + 1);
            break;
        }
        if (la + lb + 1 > cat_cap) {
            cat_cap = 2 * (la + lb + 1);
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                st = ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
            cat = nc;
        }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t ia = tok_strmap_get(&tok->vocab, a, la);
        int32_t ib = tok_strmap_get(&tok->vocab, b, lb);
        int32_t in = tok_strmap_get(&tok->vocab, cat, la + lb);
        if (ia < 0 || ib < 0 || in < 0) {
            cat[la + lb] = 0;
            st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: merge #%u: token '%.64s' is not in the vocabulary", rank + 1,
                          ia < 0 ? a : ib < 0 ? b : cat);
            break;
        }
        tok_u64map_put(&tok->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib,
                       (uint64_t)rank << 32 | (uint32_t)in);
        rank++;
    }
    free(cat);
    return st;
}

/* added_tokens: ids are assigned as HF's AddedVocabulary does (an existing token keeps its id,
 * a new one gets the next free id after the model vocabulary); a differing "id" in the file is
 * reported at log level 1, as HF warns. */
static ggx_status parse_added(ggx_tokenizer *tok, const cJSON *list, int32_t *max_id) {
    if (!list || cJSON_IsNull(list)) return GGX_OK;
    if (!cJSON_IsArray(list)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: added_tokens is not a list");
    int n = cJSON_GetArraySize(list);
    tok->added = calloc((size_t)n + 1, sizeof *tok->added);
    if (!tok->added) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
    const cJSON *e;
    ggx_status st;
    int64_t max_added = -1;
    cJSON_ArrayForEach(e, list) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        int64_t file_id;
        if (!cJSON_IsString(c) || !json_int(cJSON_GetObjectItemCaseSensitive(e, "id"), 0, TOK_MAX_ID - 1, &file_id))
            return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: added token #%d needs a string content and an id", tok->n_added + 1);
        tok_added a = {0};
        if ((st = json_bool(e, "special", false, &a.special, "added_tokens[]")) ||
            (st = json_bool(e, "normalized", !a.special, &a.normalized, "added_tokens[]")) ||
            (st = json_bool(e, "single_word", false, &a.single_word, "added_tokens[]")) ||
            (st = json_bool(e, "lstrip", false, &a.lstrip, "added_tokens[]")) ||
            (st = json_bool(e, "rstrip", false, &a.rstrip, "added_tokens[]")))
            return st;
        a.len = strlen(c->valuestring);
        if (a.len == 0) continue; /* HF ignores empty added tokens */
        if (!utf8_valid(c->valuestring, a.len)) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: added token with invalid UTF-8");
        bool dup = false; /* only a content seen before can be a duplicate */
        bool seen = tok_strmap_find(&tok->added_map, c->valuestring, a.len) >= 0;
        for (int i = 0; seen && i < tok->n_added && !dup; i++) {
            const tok_added *o = &tok->added[i];
            dup = o->len == a.len && !memcmp(o->content, c->valuestring, a.len) && o->special == a.special &&
                  o->normalized == a.normalized && o->single_word == a.single_word && o->lstrip == a.lstrip &&
                  o->rstrip == a.rstrip;
        }
        if (dup) continue; /* an identical token is added once */
        int32_t id = tok_strmap_get(&tok->added_map, c->valuestring, a.len);
        if (id < 0) id = tok_strmap_get(&tok->vocab, c->valuestring, a.len);
        if (id < 0) {
            int64_t vs = tok->vocab.n;
            id = (int32_t)(max_added < 0 ? vs : (max_added >= vs || vs == 0) ? max_added + 1 : vs);
        }
        if (id >= TOK_MAX_ID) return ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: too many added tokens");
        if (id != file_id)
            ggx_log_info("tokenizer.json: added token '%s' has id %lld in the file, %d by HF's rules (using %d)",
                         c->valuestring, (long long)file_id, id, id);
        a.id = id;
        a.content = malloc(a.len + 1);
        if (!a.content) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(a.content, c->valuestring, a.len + 1);
        tok->added[tok->n_added++] = a;
        if ((st = tok_strmap_put(&tok->added_map, a.content, a.len, id, true, NULL))) return st;
        if (id > max_added) max_added = id;
        if (id > *max_id) *max_id = id;
    }
    return GGX_OK;
}

/* Tries of the added tokens (normalized ones are matched in their normalized form). When two
 * entries share an id, the later one's flags apply (HF keeps one AddedToken per id). */
static ggx_status build_tries(ggx_tokenizer *tok) {
    ggx_status st = GGX_OK;
    tok_trie_init(&tok->trie_raw);
    tok_trie_init(&tok->trie_norm);
    int32_t *last = malloc((size_t)tok->n_vocab * sizeof *last); /* id -> last entry naming it */
    if (!last) return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
    for (int i = 0; i < tok->n_added; i++) last[tok->added[i].id] = i;
    for (int i = 0; i < tok->n_added; i++) {
        if (last[tok->added[i].id] != i) continue;
        const tok_added *a = &tok->added[i];
        if (!a->normalized) {
            if ((st = tok_trie_add(&tok->trie_raw, a->content, a->len, i))) goto done;
        } else if (tok->nfc) {
            char *n;
            size_t nl;
            if ((st = tok_nfc(a->content, a->len, &n, &nl))) goto done;
            st = tok_trie_add(&tok->trie_norm, n, nl, i);
            free(n);
            if (st) goto done;
        } else if ((st = tok_trie_add(&tok->trie_norm, a->content, a->len, i))) {
            goto done;
        }
    }
done:
    free(last);
    return st;
}

/* Per-id spelling and decoded bytes (ByteLevel decoder: a token whose chars are all in the
 * byte-level alphabet becomes those bytes, any other token its own UTF-8). */
static ggx_status build_decode_tables(ggx_tokenizer *tok, const int16_t char_to_byte[0x144]) {
    size_t n = (size_t)tok->n_vocab;
    tok->dec_off = calloc(n, sizeof *tok->dec_off);
    tok->dec_len = calloc(n, sizeof *tok->dec_len);
    tok->dec_special = calloc(n, 1);
    tok->has_token = calloc(n, 1);
    tok->id_str = calloc(n, sizeof *tok->id_str);
    if (!tok->dec_off || !tok->dec_len || !tok->dec_special || !tok->has_token || !tok->id_str)
        return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory (decode tables)");
    for (uint32_t i = 0; i < tok->vocab.n; i++) {
        int32_t id = tok->vocab.ents[i].val; /* ids shared by several strings: the first */
        if (!tok->id_str[id]) tok->id_str[id] = tok_strmap_key(&tok->vocab, i);
    }
    for (int i = 0; i < tok->n_added; i++) tok->id_str[tok->added[i].id] = tok->added[i].content;

    tok_buf bytes = {0};
    ggx_status st = GGX_OK;
    for (size_t id = 0; id < n; id++) {
        const char *s = tok->id_str[id];
        if (!s) continue;
        tok->has_token[id] = 1;
        size_t len = strlen(s), start = bytes.n;
        bool all_bytes = true;
        for (size_t i = 0; i < len && all_bytes;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
            if (k <= 0 || cp >= 0x144 || char_to_byte[cp] < 0) all_bytes = false;
            else i += (size_t)k;
        }
        if (all_bytes) {
            for (size_t i = 0; i < len;) {
                utf8proc_int32_t cp;
                i += (size_t)utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
                uint8_t b = (uint8_t)char_to_byte[cp];
                if ((st = tok_buf_append(&bytes, &b, 1))) goto done;
            }
        } else if ((st = tok_buf_append(&bytes, s, len))) {
            goto done;
        }
        if (bytes.n > UINT32_MAX) {
            st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: decoded vocabulary exceeds 4 GiB");
            goto done;
        }
        tok->dec_off[id] = (uint32_t)start;
        tok->dec_len[id] = (uint32_t)(bytes.n - start);
        if (bytes.n - start > tok->max_dec_len) tok->max_dec_len = bytes.n - start;
    }
    /* HF skips a token whose spelling is a special token's content, whichever table named it */
    for (int i = 0; i < tok->n_added; i++) {
        const tok_added *a = &tok->added[i];
        if (!a->special) continue;
        if (!strcmp(tok->id_str[a->id], a->content)) tok->dec_special[a->id] = 1;
        int32_t v = tok_strmap_get(&tok->vocab, a->content, a->len);
        if (v >= 0 && tok->id_str[v] && !strcmp(tok->id_str[v], a->content)) tok->dec_special[v] = 1;
    }
done:
    tok->dec_bytes = bytes.v;
    return st;
}

/* ================================================================ load */

ggx_status ggx_tokenizer_load_json(const char *json, size_t len, ggx_tokenizer **out) {
    if (out) *out = NULL;
    if (!json || !out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_load_json: NULL argument");
    ggx_status st = GGX_OK;
    ggx_tokenizer *tok = calloc(1, sizeof *tok);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!tok) {
        cJSON_Delete(root);
        return ggx_fail(GGX_ERR_NOMEM, "tokenizer: out of memory");
    }
    tok_trie_init(&tok->trie_raw);
    tok_trie_init(&tok->trie_norm);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: not valid JSON (near byte %lld)",
                      at && at >= json && at <= json + len ? (long long)(at - json) : -1LL);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: the top level is not an object");
        goto fail;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver && !(cJSON_IsString(ver) && !strcmp(ver->valuestring, "1.0"))) {
        st = ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer.json: version '%s' is not supported (expected 1.0)",
                      cJSON_IsString(ver) ? ver->valuestring : "?");
        goto fail;
    }
    int32_t max_id = -1;
    int16_t char_to_byte[0x144];
    build_byte_chars(tok, char_to_byte);
    if ((st = parse_model(tok, cJSON_GetObjectItemCaseSensitive(root, "model"), &max_id)) ||
        (st = parse_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0)) ||
        (st = parse_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"))) ||
        (st = check_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"))) ||
        (st = check_post_processor(cJSON_GetObjectItemCaseSensitive(root, "post_processor"))) ||
        (st = parse_added(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &max_id)))
        goto fail;
    if (max_id < 0) {
        st = ggx_fail(GGX_ERR_FORMAT, "tokenizer.json: empty vocabulary");
        goto fail;
    }
    tok->n_vocab = max_id + 1;
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = tok_strmap_get(&tok->vocab, (const char *)tok->byte_char[b], tok->byte_char_len[b]);
    if ((st = build_tries(tok)) || (st = build_decode_tables(tok, char_to_byte))) goto fail;

    if (tok->use_regex) {
        int err;
        PCRE2_SIZE eoff;
        tok->re = pcre2_compile((PCRE2_SPTR)k_gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
        if (!tok->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            st = ggx_fail(GGX_ERR_UNSUPPORTED, "tokenizer: PCRE2 cannot compile the split regex: %s", (const char *)msg);
            goto fail;
        }
        (void)pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    }

    tok->eot_id = ggx_tokenizer_token_id(tok, "<|endoftext|>");
    tok->bos_id = tok->eos_id = tok->eot_id;
    tok->pad_id = ggx_tokenizer_token_id(tok, "<|padding|>");
    tok->add_bos = 0;
    cJSON_Delete(root);
    *out = tok;
    return GGX_OK;
fail:
    cJSON_Delete(root);
    ggx_tokenizer_free(tok);
    return st;
}

ggx_status ggx_tokenizer_load_ggx(const struct ggx_file *f, ggx_tokenizer **out) {
    if (out) *out = NULL;
    if (!f || !out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_load_ggx: NULL argument");
    const void *blob;
    uint64_t len;
    ggx_status st = ggx_file_get_blob(f, GGX_KEY_TOK_JSON, &blob, &len);
    if (st) return st;
    ggx_tokenizer *tok;
    if ((st = ggx_tokenizer_load_json(blob, (size_t)len, &tok))) return st;
    static const char *const keys[3] = {GGX_KEY_TOK_BOS, GGX_KEY_TOK_EOS, GGX_KEY_TOK_PAD};
    int32_t *dst[3] = {&tok->bos_id, &tok->eos_id, &tok->pad_id};
    for (int i = 0; i < 3; i++) {
        int64_t v;
        if (!ggx_file_find_kv(f, keys[i])) continue;
        if ((st = ggx_file_get_i64(f, keys[i], &v))) goto fail;
        if (v < -1 || v >= tok->n_vocab) {
            st = ggx_fail(GGX_ERR_FORMAT, "%s = %lld is outside the vocabulary (%d)", keys[i], (long long)v, tok->n_vocab);
            goto fail;
        }
        *dst[i] = (int32_t)v;
    }
    if (ggx_file_find_kv(f, GGX_KEY_TOK_ADD_BOS)) {
        bool b;
        if ((st = ggx_file_get_bool(f, GGX_KEY_TOK_ADD_BOS, &b))) goto fail;
        tok->add_bos = b;
    }
    *out = tok;
    return GGX_OK;
fail:
    ggx_tokenizer_free(tok);
    return st;
}

ggx_status ggx_tokenizer_load(const char *path, ggx_tokenizer **out) {
    if (out) *out = NULL;
    if (!path || !out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_load: NULL argument");
    ggx_status st = GGX_OK;
    char *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ggx_fail(GGX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char magic[4] = {0};
    size_t nm = fread(magic, 1, 4, fp);
    if (nm == 4 && !memcmp(magic, "GGX\0", 4)) {
        fclose(fp);
        ggx_file *f;
        if ((st = ggx_file_open(path, &f))) return st;
        st = ggx_tokenizer_load_ggx(f, out);
        ggx_file_close(f);
        return st ? ggx_fail_wrap(st, "tokenizer of %s", path) : GGX_OK;
    }
    if (fseek(fp, 0, SEEK_END) != 0) goto io;
    long size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) goto io;
    buf = malloc((size_t)size + 1);
    if (!buf) {
        st = ggx_fail(GGX_ERR_NOMEM, "cannot read %s: out of memory (%ld bytes)", path, size);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, fp) != (size_t)size) goto io;
    buf[size] = 0;
    if ((st = ggx_tokenizer_load_json(buf, (size_t)size, out))) ggx_fail_wrap(st, "%s", path);
    goto done;
io:
    st = ggx_fail(GGX_ERR_IO, "cannot read %s: %s", path, strerror(errno));
done:
    free(buf);
    fclose(fp);
    return st;
}

void ggx_tokenizer_free(ggx_tokenizer *tok) {
    if (!tok) return;
    tok_strmap_free(&tok->vocab);
    tok_u64map_free(&tok->merges);
    for (int i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    tok_strmap_free(&tok->added_map);
    tok_trie_free(&tok->trie_raw);
    tok_trie_free(&tok->trie_norm);
    if (tok->re) pcre2_code_free(tok->re);
    free(tok->dec_off);
    free(tok->dec_len);
    free(tok->dec_special);
    free(tok->has_token);
    free(tok->id_str);
    free(tok->dec_bytes);
    free(tok);
}

/* ================================================================ accessors */

int ggx_tokenizer_n_vocab(const ggx_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int ggx_tokenizer_eot_id(const ggx_tokenizer *tok) { return tok ? tok->eot_id : -1; }
int ggx_tokenizer_bos_id(const ggx_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int ggx_tokenizer_eos_id(const ggx_tokenizer *tok) { return tok ? tok->eos_id : -1; }
int ggx_tokenizer_pad_id(const ggx_tokenizer *tok) { return tok ? tok->pad_id : -1; }
int ggx_tokenizer_add_bos_default(const ggx_tokenizer *tok) { return tok ? tok->add_bos : 0; }

int ggx_tokenizer_token_id(const ggx_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t len = strlen(token);
    int32_t id = tok_strmap_get(&tok->added_map, token, len);
    return id >= 0 ? id : tok_strmap_get(&tok->vocab, token, len);
}

int ggx_tokenizer_has_token(const ggx_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_vocab && tok->has_token[id];
}

int ggx_tokenizer_is_special(const ggx_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_vocab && tok->dec_special[id];
}

const char *ggx_tokenizer_token_str(const ggx_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_vocab ? tok->id_str[id] : NULL;
}

size_t ggx_tokenizer_detok_bufsize(const ggx_tokenizer *tok) {
    /* <= 3 held-back bytes + the token's bytes, each of which may become a 3-byte U+FFFD */
    return tok ? 3 * (tok->max_dec_len + 3) + 1 : 0;
}
