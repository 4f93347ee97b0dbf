/*
 * serve_http.h — the HTTP side of `ggx serve` (libmicrohttpd, one thread per connection).
 * Routes, auth, body limits, then hands generation requests to the scheduler.
 */
#ifndef GGX_TOOLS_SERVE_HTTP_H
#define GGX_TOOLS_SERVE_HTTP_H

#include "serve.h"
#include "serve_api.h"
#include "serve_chat.h"
#include "serve_metrics.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct serve_ctx {
    /* configuration (set before serve_http_start) */
    const char *api_key;      /* NULL: no auth */
    size_t api_key_len;
    size_t max_body;
    int max_prompt_tokens;
    serve_limits lim;
    char model_name[256];
    long created;
    int verbose;

    /* set by the loader before `ready` becomes 1 */
    ggx_model *model;
    ggx_tokenizer *tok;
    serve_chat_fmt chat_fmt;
    int n_vocab, bos, add_bos;
    serve_sched *sched;

    serve_metrics *metrics;
    pthread_mutex_t tok_mu;   /* tokenizer calls are serialized */
    atomic_int ready;         /* 0 while loading: /health and generation answer 503 */
    atomic_int stopping;
    atomic_ullong counter;    /* request ids and default seeds */
} serve_ctx;

typedef struct serve_http serve_http;

/* Listen on host:port (IPv4 or IPv6 literal; port 0 = any free port, see *bound_port). */
int serve_http_start(serve_ctx *ctx, const char *host, int port, int max_conns,
                     serve_http **out, int *bound_port);
void serve_http_stop(serve_http *h);

#endif
