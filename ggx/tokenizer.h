/*
 * tokenizer.h — tokenizer functions beyond the public API (include/ggx.h), for the tools and the
 * model loader.
 *
 *     ggx_tokenizer *tok;
 *     ggx_tokenizer_load("model.ggx", &tok);          // or a tokenizer.json
 *     if (ggx_tokenizer_add_bos_default(tok)) ids[n++] = ggx_tokenizer_bos_id(tok);
 *     char buf[GGX_DETOK_BUF]; ...                     // see ggx_tokenizer_detok_bufsize()
 *
 * From an open .ggx (what ggx_tokenizer_from_model does): ggx_tokenizer_load_ggx(file, &tok)
 * reads the tokenizer.json blob (GGX_KEY_TOK_JSON) and the tokenizer.* id keys.
 */
#ifndef GGX_TOKENIZER_H
#define GGX_TOKENIZER_H

#include "ggx.h"

#include <stddef.h>
#include <stdint.h>

struct ggx_file;

/* Tokenizer of an open .ggx: the tokenizer.json blob plus tokenizer.bos_id / eos_id / pad_id /
 * add_bos when present. The file may be closed afterwards. */
ggx_status ggx_tokenizer_load_ggx(const struct ggx_file *f, ggx_tokenizer **out);

/* Model facts (xlstm-spec §7). From a .ggx: its tokenizer.* keys. From a bare tokenizer.json:
 * bos = eos = <|endoftext|>, pad = <|padding|> (-1 if absent), add_bos = 0 (HF's default). */
int ggx_tokenizer_bos_id(const ggx_tokenizer *tok);
int ggx_tokenizer_eos_id(const ggx_tokenizer *tok);
int ggx_tokenizer_pad_id(const ggx_tokenizer *tok);
int ggx_tokenizer_add_bos_default(const ggx_tokenizer *tok);

/* 1 if id names a token (model vocab or added token), else 0. */
int ggx_tokenizer_has_token(const ggx_tokenizer *tok, int32_t id);
/* 1 if id is a special added token (skipped by ggx_tokenizer_decode, as HF does by default). */
int ggx_tokenizer_is_special(const ggx_tokenizer *tok, int32_t id);
/* The token's spelling as in tokenizer.json (byte-level alphabet, e.g. "Ġthe"); NULL if none. */
const char *ggx_tokenizer_token_str(const ggx_tokenizer *tok, int32_t id);

/* Decode with control over special tokens: keep_special = 1 writes their text too. */
ggx_status ggx_tokenizer_decode_ex(const ggx_tokenizer *tok, const int32_t *ids, size_t n,
                                   int keep_special, char **text_out, size_t *len_out);

/* A buffer of this many bytes always holds the output of one ggx_detok_push / _flush. */
size_t ggx_tokenizer_detok_bufsize(const ggx_tokenizer *tok);

#endif
