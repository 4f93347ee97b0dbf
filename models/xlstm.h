/*
 * xlstm.h — internal APIs of the xLSTM model that other parts of ggx use (bench, CUDA tests).
 *
 * Synthetic model: random weights of a config.json's shape, built in memory (no file), for
 * benchmarks at full size and for backend tests without a checkpoint:
 *
 *     ggx_model_params mp = ggx_model_default_params();   // .backend, .n_threads
 *     ggx_model *m;
 *     if (ggx_model_synthetic("tests/data/configs/xlstm-7b/config.json", GGX_TYPE_BF16, &mp,
 *                             42, &m) != GGX_OK) puts(ggx_last_error());
 *     ... ggx_state_create / ggx_eval as with a loaded model ...
 *     ggx_model_free(m);
 *
 * Weights: big matrices (embedding, q/k/v/ogate/out_proj, FFN, lm_head) of `type` (f32, f16,
 * bf16 or a quantized type: quantized per row with ggx_quantize_row), uniform in
 * ±1/sqrt(fan_in) (embedding ±1); gate weights, biases and norms are f32 (norm weights near 1,
 * forget-gate bias in [3, 6) like a trained model). Generation is multithreaded over rows
 * (params->n_threads) and deterministic for a seed. The model has no tokenizer
 * (ggx_tokenizer_from_model fails); its fingerprint hashes the config, type and seed.
 * A 7B bf16 model takes 13.7 GB of host memory.
 *
 * Per-op timing: set GGX_PROFILE=1 in the environment; the CPU backend prints the wall time per
 * op type to stderr when the model is freed.
 */
#ifndef GGX_MODELS_XLSTM_H
#define GGX_MODELS_XLSTM_H

#include "ggx.h"
#include "types.h"

ggx_status ggx_model_synthetic(const char *config_json_path, enum ggx_type type,
                               const ggx_model_params *params, uint64_t seed, ggx_model **out);

/* Bytes of weights one decode step reads (every tensor but the embedding, plus one embedding
 * row): the numerator of the decode memory floor. */
uint64_t ggx_model_weight_bytes_per_token(const ggx_model *model);
/* Total bytes of all weights. */
uint64_t ggx_model_weight_bytes(const ggx_model *model);
/* Type of the big matrices (e.g. of blocks.0 q). */
enum ggx_type ggx_model_weight_type(const ggx_model *model);

#endif
