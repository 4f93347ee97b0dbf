/*
 * fuzz_safetensors.c — libFuzzer target for the converter's input parsers: the safetensors
 * header/offset checks (ggx_st_open_buffer) and the JSON readers for config.json,
 * generation_config.json, tokenizer.json and tokenizer_config.json, all from memory.
 */
#include "convert/hfconfig.h"
#include "convert/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    volatile uint64_t sink = 0;

    ggx_st_file *st = NULL;
    if (ggx_st_open_buffer(buf, size, "fuzz", &st) == GGX_OK) {
        for (size_t i = 0; i < st->n_tensors; i++) {
            const ggx_st_tensor *t = &st->tensors[i];
            if (t->nbytes) sink += t->data[t->nbytes - 1]; /* must lie inside the buffer */
            if (ggx_st_find(st, t->name) == NULL) abort();
        }
        ggx_st_close(st);
    } else if (st) {
        abort();
    }

    /* the JSON readers see the whole input as text */
    ggx_hf_config c;
    if (ggx_hf_config_parse((const char *)buf, size, "fuzz", &c) == GGX_OK) {
        if (c.qk_head_dim * c.num_heads != c.qk_dim || c.v_head_dim * c.num_heads != c.v_dim) abort();
        sink += (uint64_t)c.ffn_dim;
    }
    (void)ggx_hf_genconfig_apply((const char *)buf, size, "fuzz", &c);
    ggx_hf_tokinfo tok;
    if (ggx_hf_tokenizer_parse((const char *)buf, size, "fuzz", &tok) == GGX_OK) sink += (uint64_t)tok.n_vocab;
    (void)ggx_hf_tokconfig_apply((const char *)buf, size, "fuzz", &tok);
    ggx_hf_tokinfo_free(&tok);
    (void)sink;
    free(buf);
    return 0;
}
