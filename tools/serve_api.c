/* serve_api.c — OpenAI-shaped request validation and response bodies (cJSON). */
#include "serve_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP_LEN 256

void serve_err_set(serve_err *e, int status, const char *type, const char *code, const char *fmt,
                   ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

#define BAD(...) serve_err_set(e, 400, "invalid_request_error", "invalid_value", __VA_ARGS__)

void serve_req_clear(serve_req *r) {
    free(r->prompt_text);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

/* An integral JSON number in [lo, hi]. */
static int get_int(const cJSON *v, double lo, double hi, long long *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) return -1;
    *out = (long long)d;
    return 0;
}

/* Optional boolean member `key` (absent or null leaves *out): 0, or -1 with *e set. */
static int opt_bool(const cJSON *root, const char *key, int *out, serve_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) {
        BAD("'%s' must be a boolean", key);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Optional finite number member `key` in [lo, hi], or (lo, hi] with lo_open; absent or null
 * leaves *out. 0, or -1 with *e set. */
static int opt_number(const cJSON *root, const char *key, double lo, int lo_open, double hi,
                      float *out, serve_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d < lo || (lo_open && d == lo) || d > hi) {
        BAD("'%s' must be a number in %c%g, %g]", key, lo_open ? '(' : '[', lo, hi);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static cJSON *parse_object(const char *body, size_t len, serve_err *e) {
    if (len == 0) {
        BAD("the request body is empty; expected a JSON object");
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        serve_err_set(e, 400, "invalid_request_error", "invalid_json",
                      "the request body is not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        BAD("the request body must be a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static int add_stop(serve_req *r, const char *s, serve_err *e) {
    if (!s[0]) return 0; // an empty stop string stops nothing
    if (strlen(s) > MAX_STOP_LEN) {
        BAD("a 'stop' string is longer than %d bytes", MAX_STOP_LEN);
        return -1;
    }
    if (r->n_stops >= SERVE_MAX_STOPS) {
        BAD("'stop' has more than %d strings", SERVE_MAX_STOPS - 1);
        return -1;
    }
    r->stops[r->n_stops] = strdup(s);
    if (!r->stops[r->n_stops]) {
        serve_err_set(e, 500, "server_error", "out_of_memory", "out of memory");
        return -1;
    }
    r->n_stops++;
    return 0;
}

/* Completions' prompt: a string, [string], [ids], or [[ids]]. */
static int parse_prompt(const cJSON *p, serve_req *r, serve_err *e) {
    if (!p) {
        BAD("'prompt' is required");
        return -1;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
        (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child; // one prompt in a batch of one
    if (cJSON_IsString(p)) {
        r->prompt_text = strdup(p->valuestring);
        if (!r->prompt_text) goto oom;
        return 0;
    }
    if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        if (n == 0) {
            BAD("'prompt' is an empty array");
            return -1;
        }
        r->prompt_ids = malloc(sizeof(int32_t) * (size_t)n);
        if (!r->prompt_ids) goto oom;
        const cJSON *v;
        int i = 0;
        cJSON_ArrayForEach(v, p) {
            long long id;
            if (get_int(v, 0, 2147483647.0, &id)) {
                if (cJSON_IsString(v) || cJSON_IsArray(v))
                    BAD("'prompt' with several prompts is not supported (n must be 1)");
                else
                    BAD("'prompt' must be a string or an array of token ids");
                return -1;
            }
            r->prompt_ids[i++] = (int32_t)id;
        }
        r->n_prompt_ids = n;
        return 0;
    }
    BAD("'prompt' must be a string or an array of token ids");
    return -1;
oom:
    serve_err_set(e, 500, "server_error", "out_of_memory", "out of memory");
    return -1;
}

int serve_req_parse(const char *body, size_t len, int chat, const serve_chat_fmt *fmt,
                    const serve_limits *lim, serve_req *out, serve_err *e) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    out->temperature = 1.0f;
    out->top_p = 1.0f;
    out->repeat_penalty = 1.0f;
    out->max_tokens = chat ? lim->default_chat_tokens : lim->default_max_tokens;
    if (out->max_tokens > lim->max_tokens_limit) out->max_tokens = lim->max_tokens_limit;
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    const cJSON *v;
    long long iv;

    v = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
        BAD("'model' must be a string");
        goto fail;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "n");
    if (v && !cJSON_IsNull(v)) {
        if (get_int(v, -1e18, 1e18, &iv)) {
            BAD("'n' must be an integer");
            goto fail;
        }
        if (iv != 1) {
            BAD("only n=1 is supported (got %lld)", iv);
            goto fail;
        }
    }
    if (opt_bool(root, "stream", &out->stream, e) || opt_bool(root, "ignore_eos", &out->ignore_eos, e))
        goto fail;
    v = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u))) {
            BAD("'stream_options' must be an object with a boolean 'include_usage'");
            goto fail;
        }
        out->include_usage = cJSON_IsTrue(u);
    }
    if (opt_number(root, "temperature", 0, 0, 2, &out->temperature, e) ||
        opt_number(root, "top_p", 0, 1, 1, &out->top_p, e))
        goto fail;
    v = cJSON_GetObjectItemCaseSensitive(root, "top_k");
    if (v && !cJSON_IsNull(v)) {
        if (get_int(v, 0, 1e9, &iv)) {
            BAD("'top_k' must be a non-negative integer");
            goto fail;
        }
        out->top_k = (int)iv;
    }
    if (opt_number(root, "min_p", 0, 0, 1, &out->min_p, e) ||
        opt_number(root, "repeat_penalty", 0, 1, 10, &out->repeat_penalty, e))
        goto fail;
    v = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (chat && (!v || cJSON_IsNull(v))) v = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
    if (v && !cJSON_IsNull(v)) {
        if (get_int(v, -1e18, 1e18, &iv) || iv < 1) {
            BAD("'max_tokens' must be a positive integer");
            goto fail;
        }
        if (iv > lim->max_tokens_limit) {
            BAD("'max_tokens' is %lld; this server allows at most %d (--max-tokens-limit)", iv,
                lim->max_tokens_limit);
            goto fail;
        }
        out->max_tokens = (int)iv;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (v && !cJSON_IsNull(v)) {
        if (get_int(v, -9007199254740992.0, 9007199254740992.0, &iv)) {
            BAD("'seed' must be an integer");
            goto fail;
        }
        out->seed = (uint64_t)iv;
        out->has_seed = 1;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (v && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) {
            if (add_stop(out, v->valuestring, e)) goto fail;
        } else if (cJSON_IsArray(v)) {
            const cJSON *s;
            cJSON_ArrayForEach(s, v) {
                if (!cJSON_IsString(s)) {
                    BAD("'stop' must be a string or an array of strings");
                    goto fail;
                }
                if (add_stop(out, s->valuestring, e)) goto fail;
            }
        } else {
            BAD("'stop' must be a string or an array of strings");
            goto fail;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
        BAD("'logprobs' is not supported");
        goto fail;
    }

    if (chat) {
        char msg[400] = "";
        v = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!v) {
            BAD("'messages' is required");
            goto fail;
        }
        if (serve_chat_render(fmt, v, &out->prompt_text, &out->boundary_len, msg, sizeof msg)) {
            BAD("%s", msg);
            goto fail;
        }
        // the next turn's header always ends an answer (not counted against the user's stops)
        if (serve_chat_stop(fmt)[0] && out->n_stops < SERVE_MAX_STOPS) {
            out->stops[out->n_stops] = strdup(serve_chat_stop(fmt));
            if (out->stops[out->n_stops]) out->n_stops++;
        }
    } else {
        if (parse_prompt(cJSON_GetObjectItemCaseSensitive(root, "prompt"), out, e)) goto fail;
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    serve_req_clear(out);
    return -1;
}

/* ---------------------------------------------------------------- bodies */

static char *print_delete(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* A string item from (p, n) that may hold NULs: cJSON strings are C strings, so copy. */
static cJSON *str_n(const char *p, size_t n) {
    char *t = malloc(n + 1);
    if (!t) return NULL;
    memcpy(t, p, n);
    t[n] = 0;
    cJSON *s = cJSON_CreateString(t);
    free(t);
    return s;
}

char *serve_json_error(const serve_err *e) {
    cJSON *o = cJSON_CreateObject(), *err = cJSON_CreateObject();
    if (!o || !err) {
        cJSON_Delete(o);
        cJSON_Delete(err);
        return NULL;
    }
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "server_error");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    cJSON_AddNullToObject(err, "param");
    cJSON_AddItemToObject(o, "error", err);
    return print_delete(o);
}

static void add_usage(cJSON *o, int n_prompt, int n_gen, int n_cached) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", n_prompt + n_gen);
    if (n_cached >= 0) {
        cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
        if (d) cJSON_AddNumberToObject(d, "cached_tokens", n_cached);
    }
}

/* The response or chunk object up to its one choice ({"index": 0}, returned in *choice). */
static cJSON *envelope(int chat, int chunk, const char *id, long created, const char *model,
                       cJSON **choice) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                              : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "system_fingerprint", "ggx");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    if (!choices || !c) {
        cJSON_Delete(c);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    *choice = c;
    return o;
}

/* The choice's last members: no logprobs, and the finish reason (null while generating). */
static void end_choice(cJSON *c, const char *finish) {
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
}

char *serve_json_response(int chat, const char *id, long created, const char *model,
                          const char *text, size_t text_len, const char *finish, int n_prompt,
                          int n_gen, int n_cached) {
    cJSON *c;
    cJSON *o = envelope(chat, 0, id, created, model, &c);
    if (!o) return NULL;
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        if (m) {
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddItemToObject(m, "content", str_n(text, text_len));
        }
    } else {
        cJSON_AddItemToObject(c, "text", str_n(text, text_len));
    }
    end_choice(c, finish);
    add_usage(o, n_prompt, n_gen, n_cached);
    return print_delete(o);
}

char *serve_sse_chunk(int chat, const char *id, long created, const char *model, const char *text,
                      size_t text_len, int role_chunk, const char *finish, int usage_prompt,
                      int usage_gen) {
    cJSON *c;
    cJSON *o = envelope(chat, 1, id, created, model, &c);
    if (!o) return NULL;
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (d && role_chunk) cJSON_AddStringToObject(d, "role", "assistant");
        if (d && (text_len || role_chunk)) cJSON_AddItemToObject(d, "content", str_n(text, text_len));
    } else {
        cJSON_AddItemToObject(c, "text", str_n(text, text_len));
    }
    end_choice(c, finish);
    if (usage_prompt >= 0) add_usage(o, usage_prompt, usage_gen, -1);
    char *js = print_delete(o);
    if (!js) return NULL;
    size_t n = strlen(js);
    char *ev = malloc(n + 9);
    if (ev) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, js, n);
        memcpy(ev + 6 + n, "\n\n", 3);
    }
    free(js);
    return ev;
}

char *serve_json_models(const char *model, long created) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    if (!data || !m) {
        cJSON_Delete(m);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "ggx");
    return print_delete(o);
}

int serve_parse_tokenize(const char *body, size_t len, char **content, int *add_special,
                         serve_err *e) {
    *content = NULL;
    *add_special = 0;
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "content");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "add_special");
    int rc = -1;
    if (!cJSON_IsString(c)) BAD("'content' (a string) is required");
    else if (a && !cJSON_IsBool(a)) BAD("'add_special' must be a boolean");
    else if (!(*content = strdup(c->valuestring)))
        serve_err_set(e, 500, "server_error", "out_of_memory", "out of memory");
    else {
        *add_special = cJSON_IsTrue(a);
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

int serve_parse_detokenize(const char *body, size_t len, int n_vocab, int32_t **ids, int *n,
                           serve_err *e) {
    *ids = NULL;
    *n = 0;
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    int rc = -1;
    if (!cJSON_IsArray(t)) {
        BAD("'tokens' (an array of token ids) is required");
        goto done;
    }
    int cnt = cJSON_GetArraySize(t);
    *ids = malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (!*ids) {
        serve_err_set(e, 500, "server_error", "out_of_memory", "out of memory");
        goto done;
    }
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, t) {
        long long id;
        if (get_int(v, 0, (double)n_vocab - 1, &id)) {
            BAD("tokens[%d] is not a token id in [0, %d)", i, n_vocab);
            free(*ids);
            *ids = NULL;
            goto done;
        }
        (*ids)[i++] = (int32_t)id;
    }
    *n = cnt;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}
