/*
 * hfconfig.h — reading a Hugging Face xLSTM checkpoint's JSON files: config.json (with the
 * derived sizes of xlstm-spec §1), generation_config.json, tokenizer.json / tokenizer_config.json.
 *
 *     ggx_hf_config c;
 *     if (ggx_hf_config_parse(json, len, "config.json", &c)) puts(ggx_last_error());
 *     // c.qk_dim == int(E * qk_dim_factor), c.ffn_dim == round_up(E * ffn_proj_factor, 64)
 *
 * Fields absent from config.json take transformers' xLSTMConfig defaults; the required ones
 * (model_type, embedding_dim|hidden_size, num_blocks|num_hidden_layers, num_heads, vocab_size)
 * are errors when missing.
 */
#ifndef GGX_CONVERT_HFCONFIG_H
#define GGX_CONVERT_HFCONFIG_H

#include "ggx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ggx_hf_config {
    int64_t vocab_size, embedding_dim, num_blocks, num_heads;
    double qk_dim_factor, v_dim_factor, ffn_proj_factor;
    int64_t ffn_round_up_to_multiple_of;
    double gate_soft_cap, output_logit_soft_cap, norm_eps, eps;
    int64_t chunk_size, max_inference_chunksize;
    bool use_bias, add_out_norm, tie_word_embeddings;
    char weight_mode[16];           /* "single" | "fused" */
    char name[256];                 /* _name_or_path, or "" */
    int64_t bos_id, eos_id, pad_id; /* -1 if absent / null */
    /* derived (xlstm-spec §1) */
    int64_t qk_dim, v_dim, qk_head_dim, v_head_dim, ffn_dim;
} ggx_hf_config;

ggx_status ggx_hf_config_parse(const char *json, size_t len, const char *what, ggx_hf_config *out);
/* generation_config.json: overrides bos/eos/pad ids that it sets (non-null). */
ggx_status ggx_hf_genconfig_apply(const char *json, size_t len, const char *what, ggx_hf_config *c);

typedef struct ggx_hf_tokinfo {
    int64_t n_vocab;     /* highest id in model.vocab and added_tokens, + 1 */
    int64_t eot_id;      /* id of "<|endoftext|>", -1 if none */
    char model_type[16]; /* "bpe" */
    char *chat_template; /* malloc'ed or NULL (from tokenizer_config.json) */
} ggx_hf_tokinfo;

ggx_status ggx_hf_tokenizer_parse(const char *json, size_t len, const char *what, ggx_hf_tokinfo *out);
/* tokenizer_config.json: picks up chat_template (string, or the "default" of a list). */
ggx_status ggx_hf_tokconfig_apply(const char *json, size_t len, const char *what, ggx_hf_tokinfo *t);
void ggx_hf_tokinfo_free(ggx_hf_tokinfo *t);

/* Read a whole file (at most max_bytes) into a malloc'ed NUL-terminated buffer. GGX_ERR_IO if it
 * cannot be opened (errno text in the message). */
ggx_status ggx_read_file(const char *path, size_t max_bytes, char **buf, size_t *len);

#endif
