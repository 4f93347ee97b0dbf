/* serve_metrics.c — counters for GET /metrics (Prometheus text format 0.0.4). */
#include "serve_metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ENDPOINTS 9
#define MAX_STATUS 24 /* distinct status codes remembered per endpoint */

static const char *const k_endpoints[N_ENDPOINTS] = {
    "/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics",
    "/tokenize",       "/detokenize",          "other",      "(rejected)",
};

struct serve_metrics {
    pthread_mutex_t mu;
    int64_t req_status[N_ENDPOINTS][MAX_STATUS];
    int req_code[N_ENDPOINTS][MAX_STATUS];
    int64_t prompt_tokens, generated_tokens;
    int64_t step_prompt_tokens, step_gen_tokens, steps;
    double busy_prompt_s, busy_s;
    int64_t cache_hits, cache_misses, cache_tokens_saved, cache_entries, cache_bytes;
    int64_t queue_depth, running, slots, cancelled;
};

serve_metrics *serve_metrics_new(void) {
    serve_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void serve_metrics_free(serve_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void serve_metrics_request(serve_metrics *m, const char *endpoint, int status) {
    int e = N_ENDPOINTS - 2; /* "other" */
    for (int i = 0; i < N_ENDPOINTS; i++)
        if (!strcmp(endpoint, k_endpoints[i])) e = i;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MAX_STATUS; i++) {
        if (m->req_code[e][i] == status || m->req_code[e][i] == 0) {
            m->req_code[e][i] = status;
            m->req_status[e][i]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

#define ADD(field, v)                 \
    do {                              \
        pthread_mutex_lock(&m->mu);   \
        m->field += (v);              \
        pthread_mutex_unlock(&m->mu); \
    } while (0)

void serve_metrics_add_prompt_tokens(serve_metrics *m, int64_t n) { ADD(prompt_tokens, n); }
void serve_metrics_add_generated_tokens(serve_metrics *m, int64_t n) { ADD(generated_tokens, n); }
void serve_metrics_cancelled(serve_metrics *m) { ADD(cancelled, 1); }

void serve_metrics_step(serve_metrics *m, double seconds, int64_t n_prompt, int64_t n_gen) {
    pthread_mutex_lock(&m->mu);
    m->steps++;
    m->busy_s += seconds;
    m->step_prompt_tokens += n_prompt;
    m->step_gen_tokens += n_gen;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_cache(serve_metrics *m, int hit, int64_t tokens_saved) {
    pthread_mutex_lock(&m->mu);
    if (hit) m->cache_hits++;
    else m->cache_misses++;
    m->cache_tokens_saved += tokens_saved;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_cache_size(serve_metrics *m, int64_t entries, int64_t bytes) {
    pthread_mutex_lock(&m->mu);
    m->cache_entries = entries;
    m->cache_bytes = bytes;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_gauges(serve_metrics *m, int64_t queue_depth, int64_t running, int64_t slots) {
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->running = running;
    if (slots >= 0) m->slots = slots;
    pthread_mutex_unlock(&m->mu);
}

/* A growing string buffer; on OOM it stays failed and render returns NULL. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

char *serve_metrics_render(serve_metrics *m) {
    sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP ggx_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE ggx_requests_total counter\n");
    for (int e = 0; e < N_ENDPOINTS; e++)
        for (int i = 0; i < MAX_STATUS && m->req_code[e][i]; i++)
            sb_printf(&b, "ggx_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n",
                      k_endpoints[e], m->req_code[e][i], (long long)m->req_status[e][i]);
    sb_printf(&b,
              "# HELP ggx_prompt_tokens_total Prompt tokens of accepted generation requests.\n"
              "# TYPE ggx_prompt_tokens_total counter\nggx_prompt_tokens_total %lld\n"
              "# HELP ggx_generated_tokens_total Tokens sampled by the model.\n"
              "# TYPE ggx_generated_tokens_total counter\nggx_generated_tokens_total %lld\n",
              (long long)m->prompt_tokens, (long long)m->generated_tokens);
    double gen_tps = m->busy_s > 0 ? (double)m->step_gen_tokens / m->busy_s : 0.0;
    double all_tps =
        m->busy_s > 0 ? (double)(m->step_gen_tokens + m->step_prompt_tokens) / m->busy_s : 0.0;
    sb_printf(&b,
              "# HELP ggx_tokens_per_second Generated tokens per second of scheduler busy time.\n"
              "# TYPE ggx_tokens_per_second gauge\nggx_tokens_per_second %.3f\n"
              "# HELP ggx_eval_tokens_per_second Prompt+generated tokens evaluated per busy second.\n"
              "# TYPE ggx_eval_tokens_per_second gauge\nggx_eval_tokens_per_second %.3f\n"
              "# HELP ggx_scheduler_steps_total Batched eval steps.\n"
              "# TYPE ggx_scheduler_steps_total counter\nggx_scheduler_steps_total %lld\n"
              "# HELP ggx_scheduler_busy_seconds_total Time spent in batched eval steps.\n"
              "# TYPE ggx_scheduler_busy_seconds_total counter\n"
              "ggx_scheduler_busy_seconds_total %.6f\n",
              gen_tps, all_tps, (long long)m->steps, m->busy_s);
    sb_printf(&b,
              "# HELP ggx_queue_depth Requests waiting for a slot.\n"
              "# TYPE ggx_queue_depth gauge\nggx_queue_depth %lld\n"
              "# HELP ggx_running_batch_size Sequences in the running batch.\n"
              "# TYPE ggx_running_batch_size gauge\nggx_running_batch_size %lld\n"
              "# HELP ggx_slots Sequence state slots (--parallel).\n"
              "# TYPE ggx_slots gauge\nggx_slots %lld\n"
              "# HELP ggx_requests_cancelled_total Generations stopped because the client left.\n"
              "# TYPE ggx_requests_cancelled_total counter\nggx_requests_cancelled_total %lld\n",
              (long long)m->queue_depth, (long long)m->running, (long long)m->slots,
              (long long)m->cancelled);
    sb_printf(&b,
              "# HELP ggx_prefix_cache_hits_total Requests that started from a cached prefix state.\n"
              "# TYPE ggx_prefix_cache_hits_total counter\nggx_prefix_cache_hits_total %lld\n"
              "# HELP ggx_prefix_cache_misses_total Requests that found no cached prefix state.\n"
              "# TYPE ggx_prefix_cache_misses_total counter\nggx_prefix_cache_misses_total %lld\n"
              "# HELP ggx_prefix_cache_tokens_saved_total Prompt tokens not evaluated thanks to the cache.\n"
              "# TYPE ggx_prefix_cache_tokens_saved_total counter\n"
              "ggx_prefix_cache_tokens_saved_total %lld\n"
              "# HELP ggx_prefix_cache_entries Stored prefix states.\n"
              "# TYPE ggx_prefix_cache_entries gauge\nggx_prefix_cache_entries %lld\n"
              "# HELP ggx_prefix_cache_bytes Memory held by stored prefix states.\n"
              "# TYPE ggx_prefix_cache_bytes gauge\nggx_prefix_cache_bytes %lld\n",
              (long long)m->cache_hits, (long long)m->cache_misses,
              (long long)m->cache_tokens_saved, (long long)m->cache_entries,
              (long long)m->cache_bytes);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
