/* tokenizer_decode.c — ids -> text like HF `tokenizer.decode(ids)` with its default
 * skip_special_tokens=True: special added tokens and ids without a token are skipped, each
 * token becomes bytes through the ByteLevel decoder (precomputed per id at load), and the bytes
 * become text with String::from_utf8_lossy (each ill-formed maximal subpart -> U+FFFD).
 *
 * The streaming decoder keeps back only a valid-but-incomplete UTF-8 tail (<= 3 bytes), so the
 * concatenation of its outputs equals the full decode of the same ids. */
#include "tokenizer_internal.h"

#include "error.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char k_fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

ggx_status tok_utf8_lossy(const uint8_t *s, size_t n, bool final, tok_buf *out, size_t *consumed) {
    size_t i = 0;
    ggx_status st = GGX_OK;
    while (i < n) {
        /* ASCII run fast path */
        size_t j = i;
        while (j < n && s[j] < 0x80) j++;
        if (j > i) {
            if ((st = tok_buf_append(out, s + i, j - i))) return st;
            i = j;
            continue;
        }
        size_t adv;
        int r = tok_utf8_scan(s + i, n - i, &adv);
        if (r == TOK_UTF8_INCOMPLETE && !final) break;
        if (r == TOK_UTF8_OK) st = tok_buf_append(out, s + i, adv);
        else st = tok_buf_append(out, k_fffd, 3); /* invalid, or incomplete at the very end */
        if (st) return st;
        i += adv;
    }
    if (consumed) *consumed = i;
    return GGX_OK;
}

static inline bool id_decodes(const ggx_tokenizer *tok, int32_t id, int keep_special) {
    return id >= 0 && id < tok->n_vocab && tok->dec_len[id] && (keep_special || !tok->dec_special[id]);
}

ggx_status ggx_tokenizer_decode(const ggx_tokenizer *tok, const int32_t *ids, size_t n,
                                char **text_out, size_t *len_out) {
    return ggx_tokenizer_decode_ex(tok, ids, n, 0, text_out, len_out);
}

ggx_status ggx_tokenizer_decode_ex(const ggx_tokenizer *tok, const int32_t *ids, size_t n,
                                   int keep_special, char **text_out, size_t *len_out) {
    if (text_out) *text_out = NULL;
    if (len_out) *len_out = 0;
    if (!tok || !text_out || (!ids && n))
        return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_decode: NULL argument");
    tok_buf bytes = {0}, text = {0};
    ggx_status st = tok_buf_append(&text, "", 0); /* an empty decode is still a "" string */
    if (st) goto fail;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (!id_decodes(tok, id, keep_special)) continue;
        if ((st = tok_buf_append(&bytes, tok->dec_bytes + tok->dec_off[id], tok->dec_len[id]))) goto fail;
    }
    if ((st = tok_utf8_lossy((const uint8_t *)bytes.v, bytes.n, true, &text, NULL))) goto fail;
    free(bytes.v);
    *text_out = text.v;
    if (len_out) *len_out = text.n;
    return GGX_OK;
fail:
    free(bytes.v);
    free(text.v);
    return st;
}

/* ================================================================ streaming */

struct ggx_detok {
    const ggx_tokenizer *tok;
    uint8_t pending[4]; /* a valid prefix of one UTF-8 character, waiting for its tail */
    size_t n_pending;
    tok_buf work;       /* pending + the new token's bytes */
    tok_buf text;       /* the text produced by one call */
};

ggx_status ggx_detok_create(const ggx_tokenizer *tok, ggx_detok **out) {
    if (out) *out = NULL;
    if (!tok || !out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_detok_create: NULL argument");
    ggx_detok *d = calloc(1, sizeof *d);
    if (!d) return ggx_fail(GGX_ERR_NOMEM, "ggx_detok_create: out of memory");
    d->tok = tok;
    *out = d;
    return GGX_OK;
}

void ggx_detok_free(ggx_detok *d) {
    if (!d) return;
    free(d->work.v);
    free(d->text.v);
    free(d);
}

/* Convert pending + extra bytes; commit (and write to buf) only if the text fits, so a caller
 * whose buffer is too small can retry with a larger one. */
static ggx_status detok_emit(ggx_detok *d, const char *extra, size_t n_extra, bool final,
                             char *buf, size_t cap, size_t *n) {
    ggx_status st;
    d->work.n = 0;
    d->text.n = 0;
    if ((st = tok_buf_append(&d->work, d->pending, d->n_pending)) ||
        (st = tok_buf_append(&d->work, extra, n_extra)) ||
        (st = tok_buf_append(&d->text, "", 0)))
        return st;
    size_t consumed;
    if ((st = tok_utf8_lossy((const uint8_t *)d->work.v, d->work.n, final, &d->text, &consumed)))
        return st;
    if (n) *n = d->text.n;
    if (!buf || d->text.n + 1 > cap)
        return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_detok: output buffer of %zu bytes is too small (need %zu)",
                        cap, d->text.n + 1);
    memcpy(buf, d->text.v, d->text.n + 1);
    d->n_pending = d->work.n - consumed; /* < 4: only an incomplete character is kept back */
    memcpy(d->pending, d->work.v + consumed, d->n_pending);
    return GGX_OK;
}

ggx_status ggx_detok_push(ggx_detok *d, int32_t id, char *buf, size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!d) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_detok_push: NULL decoder");
    const ggx_tokenizer *tok = d->tok;
    if (!id_decodes(tok, id, 0)) return detok_emit(d, NULL, 0, false, buf, cap, n);
    return detok_emit(d, tok->dec_bytes + tok->dec_off[id], tok->dec_len[id], false, buf, cap, n);
}

ggx_status ggx_detok_flush(ggx_detok *d, char *buf, size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!d) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_detok_flush: NULL decoder");
    return detok_emit(d, NULL, 0, true, buf, cap, n);
}
