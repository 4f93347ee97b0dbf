/*
 * serve_api.h — the OpenAI / llama-server JSON shapes of `ggx serve`: request validation into a
 * serve_req, response and SSE chunk bodies, error bodies {"error": {"message","type","code"}}.
 * No model or network here: pure JSON in, JSON out (so malformed input is tested in one place).
 */
#ifndef GGX_TOOLS_SERVE_API_H
#define GGX_TOOLS_SERVE_API_H

#include "serve.h"
#include "serve_chat.h"

#include <stddef.h>
#include <stdint.h>

typedef struct serve_limits {
    int max_tokens_limit;    /* largest max_tokens a request may ask */
    int default_max_tokens;  /* completions without max_tokens (OpenAI: 16) */
    int default_chat_tokens; /* chat without max_tokens */
} serve_limits;

typedef struct serve_req {
    int chat;
    char *prompt_text;        /* text to tokenize (rendered chat, or the completion prompt) */
    int32_t *prompt_ids;      /* completions given as token ids instead (then text is NULL) */
    int n_prompt_ids;
    size_t boundary_len;      /* chat: bytes of prompt_text covered by the system message */
    int stream, include_usage, ignore_eos;
    int max_tokens;
    float temperature, top_p;
    int top_k;
    float min_p, repeat_penalty;
    uint64_t seed;
    int has_seed;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
} serve_req;

/* An error: HTTP status, OpenAI type and code, message. */
typedef struct serve_err {
    int status;
    const char *type;  /* "invalid_request_error", ... */
    const char *code;  /* "invalid_value", ... */
    char message[512];
} serve_err;

void serve_err_set(serve_err *e, int status, const char *type, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Parse a /v1/completions (chat = 0) or /v1/chat/completions (chat = 1) body. Returns 0, or -1
 * with *e filled (4xx). The caller frees the request with serve_req_clear. */
int serve_req_parse(const char *body, size_t len, int chat, const serve_chat_fmt *fmt,
                    const serve_limits *lim, serve_req *out, serve_err *e);
void serve_req_clear(serve_req *r);

/* Bodies (malloc'ed strings; NULL on OOM). */
char *serve_json_error(const serve_err *e);
char *serve_json_response(int chat, const char *id, long created, const char *model,
                          const char *text, size_t text_len, const char *finish,
                          int n_prompt, int n_gen, int n_cached);
/* One SSE event "data: {...}\n\n": a text delta (finish NULL) or the final chunk (finish set),
 * with usage included when usage_prompt >= 0 (stream_options.include_usage on the last chunk). */
char *serve_sse_chunk(int chat, const char *id, long created, const char *model, const char *text,
                      size_t text_len, int role_chunk, const char *finish, int usage_prompt,
                      int usage_gen);
char *serve_json_models(const char *model, long created);

/* /tokenize and /detokenize bodies -> parsed input. Return 0 or -1 with *e. */
int serve_parse_tokenize(const char *body, size_t len, char **content, int *add_special,
                         serve_err *e);
int serve_parse_detokenize(const char *body, size_t len, int n_vocab, int32_t **ids, int *n,
                           serve_err *e);

#endif
