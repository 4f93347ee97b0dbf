/* xlstm_tok.c — the tokenizer stored in a model file (the original tokenizer.json blob).
 * Kept apart from xlstm.c so programs that never tokenize do not link the tokenizer. */
#include "xlstm_impl.h"

#include "error.h"
#include "keys.h"

ggx_status ggx_tokenizer_from_model(const ggx_model *model, ggx_tokenizer **out) {
    if (!out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_from_model: out is NULL");
    *out = NULL;
    if (!model) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_tokenizer_from_model: model is NULL");
    if (!model->file)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "model '%s' has no tokenizer (synthetic weights)",
                        model->desc);
    const void *data;
    uint64_t len;
    ggx_status st = ggx_file_get_blob(model->file, GGX_KEY_TOK_JSON, &data, &len);
    if (st != GGX_OK) return ggx_fail_wrap(st, "model tokenizer");
    return ggx_tokenizer_load_json(data, (size_t)len, out);
}
