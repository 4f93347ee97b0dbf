/*
 * serve_http.c — routes of `ggx serve` on libmicrohttpd.
 *
 * Threading: MHD runs one thread per connection, so a handler may block. A non-streaming
 * generation waits for its job in the handler; a streaming one returns a callback response whose
 * reader blocks until the next text piece. Both wake every 100 ms to check whether the client's
 * socket was closed (poll POLLRDHUP) and, if so, cancel the job: its slot is freed at the next
 * scheduler step.
 */
#ifdef GGX_HAVE_MHD
#include "serve_http.h"

#include "serve_auth.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define WAIT_MS 100

struct serve_http {
    struct MHD_Daemon *d;
    serve_ctx *ctx;
};

/* Per-request state (MHD's con_cls). */
typedef struct conn {
    char *body;
    size_t len, cap;
    int too_big;
    int answered;            /* a response was queued before the body was read */
} conn;

/* A streaming response in flight. */
typedef struct stream {
    serve_ctx *ctx;
    serve_job *job;
    int fd;
    int chat, include_usage, n_prompt;
    char id[48];
    long created;
    size_t sent;             /* bytes of job->text already sent */
    int role_sent, finished;
    char *pend;              /* the event being written */
    size_t pend_len, pend_off;
} stream;

/* ---------------------------------------------------------------- helpers */

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t next_random(serve_ctx *ctx) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t c = atomic_fetch_add(&ctx->counter, 1);
    return mix64(c ^ mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30)));
}

static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* Queue a body; takes ownership of `body` (malloc'ed). */
static enum MHD_Result respond(serve_ctx *ctx, struct MHD_Connection *c, const char *endpoint,
                               int status, char *body, const char *ctype, int retry_after) {
    serve_metrics_request(ctx->metrics, endpoint, status);
    if (!body) {
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":null}}");
        if (!body) return MHD_NO;
        status = 500;
        ctype = "application/json";
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_err(serve_ctx *ctx, struct MHD_Connection *c, const char *endpoint,
                                   const serve_err *e) {
    if (ctx->verbose) fprintf(stderr, "ggx serve: %s -> %d %s\n", endpoint, e->status, e->message);
    return respond(ctx, c, endpoint, e->status, serve_json_error(e), "application/json",
                   e->status == 503);
}

static enum MHD_Result fail(serve_ctx *ctx, struct MHD_Connection *c, const char *endpoint,
                            int status, const char *type, const char *code, const char *msg) {
    serve_err e;
    serve_err_set(&e, status, type, code, "%s", msg);
    return respond_err(ctx, c, endpoint, &e);
}

static const char *endpoint_of(const char *url) {
    static const char *const known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models",
                                        "/health",         "/metrics",             "/tokenize",
                                        "/detokenize"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(url, known[i])) return known[i];
    if (!strcmp(url, "/completions")) return "/v1/completions";
    if (!strcmp(url, "/chat/completions")) return "/v1/chat/completions";
    if (!strcmp(url, "/models") || !strncmp(url, "/v1/models/", 11)) return "/v1/models";
    return "other";
}

/* ---------------------------------------------------------------- tokenization */

/* Encode text into a new array (BOS first when the model wants it). On success returns 0 with
 * *ids (malloc'ed) and *n; a prompt over the limit or unencodable fails with *e. */
static int encode(serve_ctx *ctx, const char *text, size_t len, int add_bos, int limit,
                  int32_t **ids, int *n, serve_err *e) {
    size_t cap = (size_t)limit + 1;
    int32_t *v = malloc(sizeof(int32_t) * (cap + 1));
    if (!v) {
        serve_err_set(e, 500, "server_error", "out_of_memory", "out of memory");
        return -1;
    }
    size_t off = 0, got = 0;
    if (add_bos && ctx->bos >= 0) v[off++] = ctx->bos;
    pthread_mutex_lock(&ctx->tok_mu);
    ggx_status st = ggx_tokenizer_encode(ctx->tok, text, len, v + off, cap - off, &got);
    pthread_mutex_unlock(&ctx->tok_mu);
    if (off + got > (size_t)limit) {
        serve_err_set(e, 400, "invalid_request_error", "context_length_exceeded",
                      "the prompt is %zu tokens; this server allows at most %d (--max-prompt-tokens)",
                      off + got, limit);
        free(v);
        return -1;
    }
    if (st != GGX_OK) {
        serve_err_set(e, 400, "invalid_request_error", "invalid_value", "cannot tokenize: %s",
                      ggx_last_error());
        free(v);
        return -1;
    }
    *ids = v;
    *n = (int)(off + got);
    return 0;
}

/* ---------------------------------------------------------------- streaming */

static int set_pend(stream *s, char *ev) {
    free(s->pend);
    s->pend = ev;
    s->pend_len = ev ? strlen(ev) : 0;
    s->pend_off = 0;
    return ev ? 0 : -1;
}

static char *concat(char *a, const char *b) {
    if (!a) return NULL;
    size_t na = strlen(a), nb = strlen(b);
    char *r = realloc(a, na + nb + 1);
    if (!r) {
        free(a);
        return NULL;
    }
    memcpy(r + na, b, nb + 1);
    return r;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *s = cls;
    serve_ctx *ctx = s->ctx;
    for (;;) {
        if (s->pend_off < s->pend_len) {
            size_t n = s->pend_len - s->pend_off;
            if (n > max) n = max;
            memcpy(buf, s->pend + s->pend_off, n);
            s->pend_off += n;
            return (ssize_t)n;
        }
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->chat && !s->role_sent) {
            s->role_sent = 1;
            if (set_pend(s, serve_sse_chunk(1, s->id, s->created, ctx->model_name, "", 0, 1, NULL,
                                            -1, 0)))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        serve_job *j = s->job;
        serve_sched_lock(ctx->sched);
        if (s->sent < j->safe_len) {
            size_t n = j->safe_len - s->sent;
            char *ev = serve_sse_chunk(s->chat, s->id, s->created, ctx->model_name,
                                       j->text + s->sent, n, 0, NULL, -1, 0);
            s->sent = j->safe_len;
            serve_sched_unlock(ctx->sched);
            if (set_pend(s, ev)) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        if (j->done && !j->cancelled) {
            char *ev;
            if (j->error) {
                serve_err e;
                serve_err_set(&e, 500, "server_error", "generation_failed", "%s", j->error);
                char *js = serve_json_error(&e);
                ev = js ? malloc(strlen(js) + 16) : NULL;
                if (ev) sprintf(ev, "data: %s\n\n", js);
                free(js);
            } else {
                ev = serve_sse_chunk(s->chat, s->id, s->created, ctx->model_name, "", 0, 0,
                                     j->finish_reason ? j->finish_reason : "stop",
                                     s->include_usage ? s->n_prompt : -1, j->n_gen);
            }
            serve_sched_unlock(ctx->sched);
            s->finished = 1;
            if (set_pend(s, concat(ev, "data: [DONE]\n\n"))) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        if (j->cancelled || atomic_load(&ctx->stopping)) {
            serve_sched_unlock(ctx->sched);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        serve_sched_wait(ctx->sched, j, WAIT_MS);
        serve_sched_unlock(ctx->sched);
        if (client_gone(s->fd)) {
            serve_sched_cancel(ctx->sched, j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void sse_free(void *cls) {
    stream *s = cls;
    // the response is gone: finished, or the connection died (write error, timeout, shutdown)
    serve_sched_cancel(s->ctx->sched, s->job);
    serve_job_release(s->ctx->sched, s->job);
    free(s->pend);
    free(s);
}

/* ---------------------------------------------------------------- generation */

static enum MHD_Result handle_generate(serve_ctx *ctx, struct MHD_Connection *c,
                                       const char *endpoint, int chat, conn *cn) {
    serve_err e;
    serve_req r;
    if (serve_req_parse(cn->body, cn->len, chat, &ctx->chat_fmt, &ctx->lim, &r, &e))
        return respond_err(ctx, c, endpoint, &e);

    int32_t *ids = NULL;
    int n = 0, boundary = 0;
    if (r.prompt_text) {
        if (encode(ctx, r.prompt_text, strlen(r.prompt_text), ctx->add_bos, ctx->max_prompt_tokens,
                   &ids, &n, &e))
            goto fail;
        if (r.boundary_len > 0) { // the system message's tokens, if the prompt starts with them
            int32_t *bi = NULL;
            int bn = 0;
            serve_err e2;
            if (!encode(ctx, r.prompt_text, r.boundary_len, ctx->add_bos, ctx->max_prompt_tokens,
                        &bi, &bn, &e2)) {
                if (bn < n && !memcmp(bi, ids, sizeof(int32_t) * (size_t)bn)) boundary = bn;
                free(bi);
            }
        }
    } else {
        if (r.n_prompt_ids > ctx->max_prompt_tokens) {
            serve_err_set(&e, 400, "invalid_request_error", "context_length_exceeded",
                          "the prompt is %d tokens; this server allows at most %d "
                          "(--max-prompt-tokens)", r.n_prompt_ids, ctx->max_prompt_tokens);
            goto fail;
        }
        for (int i = 0; i < r.n_prompt_ids; i++)
            if (r.prompt_ids[i] >= ctx->n_vocab) {
                serve_err_set(&e, 400, "invalid_request_error", "invalid_value",
                              "prompt token %d is %d, outside the vocabulary [0, %d)", i,
                              (int)r.prompt_ids[i], ctx->n_vocab);
                goto fail;
            }
        ids = r.prompt_ids;
        n = r.n_prompt_ids;
        r.prompt_ids = NULL;
    }
    if (n < 1) {
        serve_err_set(&e, 400, "invalid_request_error", "invalid_value",
                      "the prompt is empty (no tokens)");
        goto fail;
    }

    serve_job *j = serve_job_new();
    if (!j) {
        serve_err_set(&e, 500, "server_error", "out_of_memory", "out of memory");
        goto fail;
    }
    j->prompt = ids;
    ids = NULL;
    j->n_prompt = n;
    j->cache_boundary = boundary;
    j->stream = r.stream;
    j->ignore_eos = r.ignore_eos;
    j->max_tokens = r.max_tokens;
    j->temperature = r.temperature;
    j->top_p = r.top_p;
    j->top_k = r.top_k;
    j->min_p = r.min_p;
    j->repeat_penalty = r.repeat_penalty;
    j->seed = r.has_seed ? r.seed : next_random(ctx);
    for (int i = 0; i < r.n_stops; i++) {
        j->stops[i] = r.stops[i];
        r.stops[i] = NULL;
    }
    j->n_stops = r.n_stops;
    r.n_stops = 0;
    int stream_mode = r.stream, include_usage = r.include_usage;
    serve_req_clear(&r);

    if (serve_sched_submit(ctx->sched, j)) {
        serve_job_release(NULL, j);
        serve_err_set(&e, 503, "server_busy", "queue_full",
                      "the server is busy (queue full); retry later");
        return respond_err(ctx, c, endpoint, &e);
    }
    serve_metrics_add_prompt_tokens(ctx->metrics, n);

    char id[48];
    snprintf(id, sizeof id, "%s-%016llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)next_random(ctx));
    long created = (long)time(NULL);
    int fd = conn_fd(c);

    if (stream_mode) {
        stream *s = calloc(1, sizeof *s);
        struct MHD_Response *resp =
            s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, s, sse_free)
              : NULL;
        if (!resp) {
            if (s) free(s);
            serve_sched_cancel(ctx->sched, j);
            serve_job_release(ctx->sched, j);
            return fail(ctx, c, endpoint, 500, "server_error", "out_of_memory", "out of memory");
        }
        s->ctx = ctx;
        s->job = j;
        s->fd = fd;
        s->chat = chat;
        s->include_usage = include_usage;
        s->n_prompt = n;
        s->created = created;
        snprintf(s->id, sizeof s->id, "%s", id);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        serve_metrics_request(ctx->metrics, endpoint, 200);
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    // non-streaming: wait here (this connection's own thread)
    serve_sched_lock(ctx->sched);
    while (!j->done) {
        serve_sched_wait(ctx->sched, j, WAIT_MS);
        if (j->done) break;
        serve_sched_unlock(ctx->sched);
        int gone = client_gone(fd) || atomic_load(&ctx->stopping);
        serve_sched_lock(ctx->sched);
        if (gone) {
            serve_sched_unlock(ctx->sched);
            serve_sched_cancel(ctx->sched, j);
            serve_job_release(ctx->sched, j);
            serve_metrics_request(ctx->metrics, endpoint, 499);
            return MHD_NO; // closes the connection
        }
    }
    char *body = NULL;
    int status = 200;
    if (j->error) {
        serve_err_set(&e, 500, "server_error", "generation_failed", "%s", j->error);
        status = 500;
        body = serve_json_error(&e);
    } else {
        body = serve_json_response(chat, id, created, ctx->model_name, j->text ? j->text : "",
                                   j->text_len, j->finish_reason, n, j->n_gen, j->n_cached);
    }
    serve_sched_unlock(ctx->sched);
    serve_job_release(ctx->sched, j);
    return respond(ctx, c, endpoint, status, body, "application/json", 0);

fail:
    free(ids);
    serve_req_clear(&r);
    return respond_err(ctx, c, endpoint, &e);
}

/* ---------------------------------------------------------------- small endpoints */

static enum MHD_Result handle_tokenize(serve_ctx *ctx, struct MHD_Connection *c, conn *cn) {
    serve_err e;
    char *text;
    int add_special;
    if (serve_parse_tokenize(cn->body, cn->len, &text, &add_special, &e))
        return respond_err(ctx, c, "/tokenize", &e);
    int32_t *ids;
    int n;
    size_t limit = 4 * cn->len + 16; // byte-level BPE: at most one token per (normalized) byte
    int rc = encode(ctx, text, strlen(text), add_special && ctx->add_bos, (int)limit, &ids, &n, &e);
    free(text);
    if (rc) return respond_err(ctx, c, "/tokenize", &e);
    size_t cap = 16 + (size_t)n * 12;
    char *body = malloc(cap);
    if (body) {
        size_t off = (size_t)snprintf(body, cap, "{\"tokens\":[");
        for (int i = 0; i < n; i++)
            off += (size_t)snprintf(body + off, cap - off, i ? ",%d" : "%d", (int)ids[i]);
        snprintf(body + off, cap - off, "]}");
    }
    free(ids);
    return respond(ctx, c, "/tokenize", 200, body, "application/json", 0);
}

static enum MHD_Result handle_detokenize(serve_ctx *ctx, struct MHD_Connection *c, conn *cn) {
    serve_err e;
    int32_t *ids;
    int n;
    if (serve_parse_detokenize(cn->body, cn->len, ctx->n_vocab, &ids, &n, &e))
        return respond_err(ctx, c, "/detokenize", &e);
    char *text = NULL;
    size_t len = 0;
    ggx_status st = GGX_OK;
    if (n > 0) {
        pthread_mutex_lock(&ctx->tok_mu);
        st = ggx_tokenizer_decode(ctx->tok, ids, (size_t)n, &text, &len);
        pthread_mutex_unlock(&ctx->tok_mu);
    }
    free(ids);
    if (st != GGX_OK) {
        serve_err_set(&e, 400, "invalid_request_error", "invalid_value", "cannot detokenize: %s",
                      ggx_last_error());
        return respond_err(ctx, c, "/detokenize", &e);
    }
    cJSON *o = cJSON_CreateObject();
    char *body = NULL;
    if (o) {
        cJSON_AddStringToObject(o, "content", text ? text : "");
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    free(text);
    return respond(ctx, c, "/detokenize", 200, body, "application/json", 0);
}

/* ---------------------------------------------------------------- dispatch */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    serve_ctx *ctx = cls;
    const char *ep = endpoint_of(url);
    conn *cn = *con_cls;
    if (!cn) { // headers are in: auth and the declared size before reading any body
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        if (ctx->api_key && strcmp(ep, "/health") != 0 &&
            !serve_auth_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                           ctx->api_key, ctx->api_key_len)) {
            cn->answered = 1;
            return fail(ctx, c, ep, 401, "authentication_error", "invalid_api_key",
                        "missing or invalid API key (Authorization: Bearer KEY)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (end != cl && v > ctx->max_body) {
                cn->answered = 1;
                serve_err e;
                serve_err_set(&e, 413, "invalid_request_error", "body_too_large",
                              "the request body is %llu bytes; the limit is %zu (--max-body)", v,
                              ctx->max_body);
                return respond_err(ctx, c, ep, &e);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cn->answered || cn->too_big) return MHD_YES; // drain
        if (cn->len + n > ctx->max_body) {
            cn->too_big = 1;
            free(cn->body);
            cn->body = NULL;
            cn->len = cn->cap = 0;
            return MHD_YES;
        }
        if (cn->len + n + 1 > cn->cap) {
            size_t cap = cn->cap ? cn->cap * 2 : 4096;
            while (cap < cn->len + n + 1) cap *= 2;
            char *b = realloc(cn->body, cap);
            if (!b) return MHD_NO;
            cn->body = b;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->len, upload_data, n);
        cn->len += n;
        cn->body[cn->len] = 0;
        return MHD_YES;
    }
    if (cn->answered) return MHD_YES;
    if (cn->too_big) {
        serve_err e;
        serve_err_set(&e, 413, "invalid_request_error", "body_too_large",
                      "the request body exceeds %zu bytes (--max-body)", ctx->max_body);
        return respond_err(ctx, c, ep, &e);
    }

    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_post = !strcmp(method, "POST");
    int gen = !strcmp(ep, "/v1/completions") || !strcmp(ep, "/v1/chat/completions");
    int post_ep = gen || !strcmp(ep, "/tokenize") || !strcmp(ep, "/detokenize");
    if (!strcmp(ep, "other")) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown endpoint %.200s", url);
        return fail(ctx, c, ep, 404, "invalid_request_error", "not_found", msg);
    }
    if ((post_ep && !is_post) || (!post_ep && !is_get))
        return fail(ctx, c, ep, 405, "invalid_request_error", "method_not_allowed",
                    post_ep ? "use POST" : "use GET");

    if (!strcmp(ep, "/health")) {
        if (!atomic_load(&ctx->ready))
            return fail(ctx, c, ep, 503, "unavailable_error", "loading", "loading the model");
        return respond(ctx, c, ep, 200, strdup("{\"status\":\"ok\"}"), "application/json", 0);
    }
    if (!strcmp(ep, "/metrics")) {
        if (atomic_load(&ctx->ready) && ctx->sched)
            serve_metrics_gauges(ctx->metrics, serve_sched_queue_len(ctx->sched),
                                 serve_sched_running(ctx->sched), -1);
        return respond(ctx, c, ep, 200, serve_metrics_render(ctx->metrics),
                       "text/plain; version=0.0.4", 0);
    }
    if (!atomic_load(&ctx->ready) || atomic_load(&ctx->stopping))
        return fail(ctx, c, ep, 503, "unavailable_error", "loading",
                    atomic_load(&ctx->stopping) ? "the server is shutting down"
                                                : "loading the model");
    if (!strcmp(ep, "/v1/models")) {
        if (!strncmp(url, "/v1/models/", 11)) { // retrieve one model
            if (strcmp(url + 11, ctx->model_name) != 0) {
                char msg[600];
                snprintf(msg, sizeof msg, "no model '%.200s' (this server has '%s')", url + 11,
                         ctx->model_name);
                return fail(ctx, c, ep, 404, "invalid_request_error", "model_not_found", msg);
            }
            char *list = serve_json_models(ctx->model_name, ctx->created);
            cJSON *o = list ? cJSON_Parse(list) : NULL;
            free(list);
            cJSON *m = o ? cJSON_DetachItemFromArray(cJSON_GetObjectItem(o, "data"), 0) : NULL;
            char *body = m ? cJSON_PrintUnformatted(m) : NULL;
            cJSON_Delete(m);
            cJSON_Delete(o);
            return respond(ctx, c, ep, 200, body, "application/json", 0);
        }
        return respond(ctx, c, ep, 200, serve_json_models(ctx->model_name, ctx->created),
                       "application/json", 0);
    }
    if (!strcmp(ep, "/tokenize")) return handle_tokenize(ctx, c, cn);
    if (!strcmp(ep, "/detokenize")) return handle_detokenize(ctx, c, cn);
    return handle_generate(ctx, c, ep, !strcmp(ep, "/v1/chat/completions"), cn);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn *cn = *con_cls;
    if (cn) {
        free(cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    serve_ctx *ctx = cls;
    if (!ctx->verbose) return;
    fprintf(stderr, "ggx serve: libmicrohttpd: ");
    vfprintf(stderr, fmt, ap);
}

int serve_http_start(serve_ctx *ctx, const char *host, int port, int max_conns,
                     serve_http **out, int *bound_port) {
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "ggx serve: --host '%s' is not an IPv4 or IPv6 address\n", host);
        return -1;
    }
    serve_http *h = calloc(1, sizeof *h);
    if (!h) return -1;
    h->ctx = ctx;
    h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, ctx,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, ctx,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, // idle seconds (slow clients)
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, ctx,
                            MHD_OPTION_END);
    if (!h->d) {
        fprintf(stderr, "ggx serve: cannot listen on %s:%d (in use, or no permission)\n", host, port);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = di ? (int)di->port : port;
    *out = h;
    return 0;
}

void serve_http_stop(serve_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
#else
typedef int ggx_serve_http_unused_; /* ISO C: no empty translation unit */
#endif /* GGX_HAVE_MHD */
