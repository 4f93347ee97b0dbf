/*
 * ggx.h — the public C API of ggx, a runtime for xLSTM recurrent language models.
 *
 * Usage (greedy decode of a prompt, errors elided):
 *
 *     ggx_model_params mp = ggx_model_default_params();
 *     ggx_model *model;  ggx_model_load("model.ggx", &mp, &model);
 *     ggx_tokenizer *tok; ggx_tokenizer_from_model(model, &tok);
 *     ggx_state *st;     ggx_state_create(model, &st);
 *     int32_t ids[256]; size_t n; ggx_tokenizer_encode(tok, "ROMEO:", 6, ids, 256, &n);
 *     float *logits = malloc(sizeof(float) * ggx_model_n_vocab(model));
 *     ggx_seq seq = { .state = st, .tokens = ids, .n_tokens = (int)n, .logits = logits };
 *     ggx_eval(model, &seq, 1);               // prefill: logits of the last token
 *     ...
 *
 * Ownership: every *_create / *_load returns an object the caller frees with the matching *_free.
 * A ggx_model is immutable after load and may be shared by threads; a ggx_state belongs to one
 * sequence. Functions return ggx_status; on failure ggx_last_error() holds a message for the user
 * (thread-local, valid until the next failing call on that thread). The library never exits.
 */
#ifndef GGX_H
#define GGX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== status / errors ==== */

typedef enum ggx_status {
    GGX_OK = 0,
    GGX_ERR_IO,          /* open/read/write/rename failed (errno text in the message) */
    GGX_ERR_FORMAT,      /* malformed file: bad magic, bounds, overflow, truncated */
    GGX_ERR_CHECKSUM,    /* CRC mismatch */
    GGX_ERR_INVALID_ARG, /* caller error: bad id, empty input, NULL */
    GGX_ERR_NOMEM,
    GGX_ERR_UNSUPPORTED, /* unknown dtype / architecture / tokenizer type / backend */
    GGX_ERR_SHAPE,       /* a tensor has the wrong shape or is missing */
    GGX_ERR_MISMATCH,    /* e.g. a state file made for another model */
    GGX_ERR_BACKEND,     /* backend failure (CUDA error, no device, out of device memory) */
    GGX_ERR_CANCELLED,   /* a callback asked to stop */
} ggx_status;

const char *ggx_status_str(ggx_status s);
/* Message of the last failure on this thread ("" if none). */
const char *ggx_last_error(void);

/* Logging: level 0 = errors only (default), 1 = info, 2 = debug. Messages go to stderr. */
void ggx_set_log_level(int level);

/* ===================================================================== model ============== */

typedef struct ggx_model ggx_model;
typedef struct ggx_state ggx_state;

typedef struct ggx_model_params {
    const char *backend;  /* "cpu" (default) or "cuda" */
    int n_threads;        /* CPU threads; <= 0: number of physical cores */
    int device;           /* CUDA device index */
    int progress;         /* show a progress bar on stderr while loading (if a terminal) */
} ggx_model_params;

ggx_model_params ggx_model_default_params(void);
ggx_status ggx_model_load(const char *path, const ggx_model_params *params, ggx_model **out);
void ggx_model_free(ggx_model *model);

int ggx_model_n_vocab(const ggx_model *model);       /* rows of lm_head (e.g. 50304) */
int ggx_model_n_embd(const ggx_model *model);
int ggx_model_n_layer(const ggx_model *model);
/* Token ids the model's files name; -1 if absent. eos is "as given" by config.json. */
int ggx_model_bos_id(const ggx_model *model);
int ggx_model_eos_id(const ggx_model *model);
int ggx_model_pad_id(const ggx_model *model);
/* Whether a fresh context should start with BOS (the model's recorded default). */
int ggx_model_add_bos_default(const ggx_model *model);
/* Bytes of one sequence's recurrent state. */
size_t ggx_model_state_size(const ggx_model *model);
/* A 64-bit fingerprint of hyper-parameters and tensor checksums (binds state files). */
uint64_t ggx_model_fingerprint(const ggx_model *model);
/* Human-readable description: architecture, size, types ("xlstm 3.5M q8_0"). */
const char *ggx_model_desc(const ggx_model *model);

/* ===================================================================== state ============== */

ggx_status ggx_state_create(ggx_model *model, ggx_state **out);  /* zero state (C=n=m=0) */
void ggx_state_free(ggx_state *state);
void ggx_state_reset(ggx_state *state);
ggx_status ggx_state_copy(ggx_state *dst, const ggx_state *src);  /* same model */
/* Save/load a state; the file header binds it to ggx_model_fingerprint(). Loading a state of
 * another model, or a truncated file, fails with a message and leaves `state` unchanged.
 * `extra` is an optional opaque blob stored alongside (e.g. chat history); on load,
 * *extra_out is malloc'ed (caller frees) when extra_out is non-NULL. */
ggx_status ggx_state_save(const ggx_state *state, const char *path,
                          const void *extra, size_t extra_len);
ggx_status ggx_state_load(ggx_state *state, const char *path,
                          void **extra_out, size_t *extra_len_out);

/* ===================================================================== eval =============== */

/* One sequence of a batch: feed n_tokens new tokens through the model, advancing `state`. */
typedef struct ggx_seq {
    ggx_state *state;
    const int32_t *tokens;
    int n_tokens;         /* >= 1 */
    float *logits;        /* out, may be NULL: [n_vocab] for the last token, or
                             [n_tokens, n_vocab] when logits_all is set */
    int logits_all;
} ggx_seq;

/* Evaluate a batch of independent sequences (each with its own state and token count) in one
 * call: projections run over all tokens at once, the recurrence per sequence. Token ids out of
 * range or n_tokens < 1 fail with GGX_ERR_INVALID_ARG before any state changes. */
ggx_status ggx_eval(ggx_model *model, ggx_seq *seqs, int n_seqs);

/* ===================================================================== tokenizer ========== */

typedef struct ggx_tokenizer ggx_tokenizer;

/* From a tokenizer.json file, or from a .ggx (detected by magic). */
ggx_status ggx_tokenizer_load(const char *path, ggx_tokenizer **out);
ggx_status ggx_tokenizer_load_json(const char *json, size_t len, ggx_tokenizer **out);
ggx_status ggx_tokenizer_from_model(const ggx_model *model, ggx_tokenizer **out);
void ggx_tokenizer_free(ggx_tokenizer *tok);

int ggx_tokenizer_n_vocab(const ggx_tokenizer *tok);   /* highest id + 1 */
int ggx_tokenizer_eot_id(const ggx_tokenizer *tok);    /* id of <|endoftext|>, or -1 */
int ggx_tokenizer_token_id(const ggx_tokenizer *tok, const char *token); /* -1 if none */

/* Encode UTF-8 text (added tokens split out first, as HF does). Writes at most max_ids ids;
 * *n_out receives the total count even when it exceeds max_ids (then GGX_ERR_INVALID_ARG).
 * Invalid UTF-8: see docs/tokenizer.md. */
ggx_status ggx_tokenizer_encode(const ggx_tokenizer *tok, const char *text, size_t len,
                                int32_t *ids, size_t max_ids, size_t *n_out);
/* Decode ids to UTF-8 text (malloc'ed, NUL-terminated; caller frees). */
ggx_status ggx_tokenizer_decode(const ggx_tokenizer *tok, const int32_t *ids, size_t n,
                                char **text_out, size_t *len_out);

/* Streaming decoder: feed ids one at a time, get only complete UTF-8 characters back. */
typedef struct ggx_detok ggx_detok;
ggx_status ggx_detok_create(const ggx_tokenizer *tok, ggx_detok **out);
void ggx_detok_free(ggx_detok *d);
/* Appends the newly completed text to buf (NUL-terminated); returns bytes written via *n. */
ggx_status ggx_detok_push(ggx_detok *d, int32_t id, char *buf, size_t cap, size_t *n);
ggx_status ggx_detok_flush(ggx_detok *d, char *buf, size_t cap, size_t *n);

/* ===================================================================== sampling =========== */

typedef struct ggx_sampler ggx_sampler;

typedef struct ggx_sampler_params {
    float temperature;     /* 0 = greedy */
    int top_k;             /* 0 = off */
    float top_p;           /* 1 = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1 = off */
    int repeat_last_n;     /* window for the penalty */
    uint64_t seed;
    int n_vocab_valid;     /* ids >= this are masked (padding rows); 0 = all */
} ggx_sampler_params;

ggx_sampler_params ggx_sampler_default_params(void);
ggx_status ggx_sampler_create(const ggx_sampler_params *p, ggx_sampler **out);
void ggx_sampler_free(ggx_sampler *s);
/* Pick the next id from logits [n_vocab]; logits may be modified. */
int32_t ggx_sampler_sample(ggx_sampler *s, float *logits, int n_vocab);
/* Tell the sampler an id was appended to the context (for penalties). */
void ggx_sampler_accept(ggx_sampler *s, int32_t id);
void ggx_sampler_reset(ggx_sampler *s);
/* The sampler's mutable state (RNG position + penalty window, not the params) as a small blob,
 * so a saved session (e.g. ggx chat /save) continues exactly as an uninterrupted one. */
size_t ggx_sampler_state_size(const ggx_sampler *s);
ggx_status ggx_sampler_state_get(const ggx_sampler *s, void *buf, size_t cap);
ggx_status ggx_sampler_state_set(ggx_sampler *s, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* GGX_H */
