/*
 * quant_policy.h — which type each tensor gets when a model is converted or quantized to a
 * base type T. Shared by `ggx convert --type T` and `ggx quantize --type T`.
 *
 *     // one-shot, no overrides (the converter):
 *     enum ggx_type t = ggx_quant_default_type(GGX_TYPE_Q4_X, "lm_head.weight", 2, dims, NULL);
 *
 *     // with --tensor-type REGEX=TYPE overrides (first matching override wins):
 *     ggx_quant_policy *p;
 *     const char *ov[] = {"ffn\\.proj_down=q8_0"};
 *     if (ggx_quant_policy_create(GGX_TYPE_Q4_0, ov, 1, &p)) puts(ggx_last_error());
 *     const char *why;
 *     if (ggx_quant_policy_type(p, name, n_dims, dims, &t, &why)) ...   // error names the tensor
 *     ggx_quant_policy_free(p);
 *
 * Default rules (docs/quantization.md has the measurements behind them):
 *   - 1-D tensors (norms, biases) and the gate projections (igate/fgate weights and biases) stay
 *     f32: they are tiny and the exponential gating amplifies their errors;
 *   - lm_head.weight and backbone.embeddings.weight get q8_0 when T is a 4-bit type (together
 *     they carry ~45% of the 4-bit KL on the tiny model for ~5% of the 7B's file size; the
 *     embedding is a lookup, so it costs no decode bandwidth), else T;
 *   - other 2-D matrices get T; one whose rows are not a multiple of T's block gets f16.
 * Overrides may set any 2-D matrix to any float or quantized type; asking to quantize a tensor
 * that must stay f32 is an error.
 */
#ifndef GGX_QUANT_POLICY_H
#define GGX_QUANT_POLICY_H

#include "ggx.h"
#include "types.h"

#include <stdint.h>

typedef struct ggx_quant_policy ggx_quant_policy;

/* Default type for tensor `name` of shape dims[n_dims] (PyTorch order) under base type `base`.
 * *why (if non-NULL) gets a short static reason ("1-D", "gate", "lm_head", "base", ...). */
enum ggx_type ggx_quant_default_type(enum ggx_type base, const char *name, int n_dims,
                                     const int64_t *dims, const char **why);

/* overrides: n strings "REGEX=TYPE" (PCRE2, searched anywhere in the tensor name). Errors name
 * the bad override (bad regex, unknown type). */
ggx_status ggx_quant_policy_create(enum ggx_type base, const char *const *overrides, int n,
                                   ggx_quant_policy **out);
void ggx_quant_policy_free(ggx_quant_policy *p);
enum ggx_type ggx_quant_policy_base(const ggx_quant_policy *p);
/* The type for one tensor. GGX_ERR_INVALID_ARG naming the tensor when an override asks for the
 * impossible (quantizing a 1-D or gate tensor, rows not a multiple of the block). */
ggx_status ggx_quant_policy_type(const ggx_quant_policy *p, const char *name, int n_dims,
                                 const int64_t *dims, enum ggx_type *out, const char **why);

/* Types `--type` accepts (f32, f16, bf16, q8_0, q4_0, q4_x), in listing order; returns count. */
int ggx_quant_target_types(enum ggx_type *out, int max);

#endif
