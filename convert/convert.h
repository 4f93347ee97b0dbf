/*
 * convert.h — Hugging Face xLSTM checkpoint directory -> .ggx (the engine of `ggx convert`).
 *
 *     ggx_convert_params p = ggx_convert_default_params();
 *     p.out_type = GGX_TYPE_Q8_0;                 // type of the big matrices
 *     ggx_convert_stats st;
 *     if (ggx_convert_hf("xlstm-7b/", "x.ggx", &p, &st)) puts(ggx_last_error());
 *
 * Reads config.json (+ generation_config.json), model.safetensors or the sharded
 * model.safetensors.index.json (F32/F16/BF16 tensors), tokenizer.json (+ tokenizer_config.json).
 * Both projection name schemes (q/k/v and query/key/value) and both weight modes are accepted;
 * fused tensors are split into the single-mode tensors. Every tensor's presence and shape is
 * checked against the config before anything is written. Stored names are the HF single-mode
 * names (docs/format.md §Tensors). Type policy (ggx/quant_policy.h, shared with `ggx quantize`):
 * the big 2-D matrices (q, k, v, ogate_preact, out_proj, proj_up_gate, proj_up, proj_down,
 * embeddings, lm_head) get out_type (embeddings and lm_head q8_0 under a 4-bit out_type);
 * gate weights and biases, norms and every 1-D tensor are stored f32.
 * The output is streamed (memory use is independent of the model size) and appears at the output
 * path only on success.
 */
#ifndef GGX_CONVERT_CONVERT_H
#define GGX_CONVERT_CONVERT_H

#include "ggx.h"
#include "ggx/types.h"

#include <stdint.h>

typedef struct ggx_convert_params {
    int out_type; /* enum ggx_type for the big matrices; -1 = as stored in the checkpoint */
    /* called with bytes of source data processed so far; may be NULL */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
    /* called once the temporary output file exists (e.g. to unlink it from a signal handler) */
    void (*on_temp_file)(void *ud, const char *tmp_path);
    int n_threads; /* threads for converting/quantizing; <= 0: all online CPUs */
    /* "REGEX=TYPE" per-tensor type overrides (ggx/quant_policy.h), first match wins */
    const char *const *overrides;
    int n_overrides;
} ggx_convert_params;

typedef struct ggx_convert_stats {
    uint64_t n_tensors;
    uint64_t n_by_type[GGX_TYPE_COUNT];
    uint64_t params_by_type[GGX_TYPE_COUNT];
    uint64_t bytes_by_type[GGX_TYPE_COUNT];  /* tensor data bytes */
    uint64_t n_params, data_bytes, file_bytes, src_bytes;
    int n_shards;
    int big_type;                  /* the type the big matrices got (-1 if mixed by fallback) */
    char src_dtype[8];             /* "BF16", "F32", "F16" or "mixed" */
    char source_weight_mode[16];   /* "single" | "fused" */
    int renamed_qkv;               /* the checkpoint used query/key/value */
    int n_fallback;                /* big matrices not quantizable (row % block) stored as f16 */
    double seconds;
} ggx_convert_stats;

ggx_convert_params ggx_convert_default_params(void);
ggx_status ggx_convert_hf(const char *hf_dir, const char *out_path, const ggx_convert_params *p,
                          ggx_convert_stats *stats);

#endif
