/*
 * serve_metrics.h — counters of `ggx serve`, rendered as Prometheus text on GET /metrics.
 * All functions are thread-safe.
 */
#ifndef GGX_TOOLS_SERVE_METRICS_H
#define GGX_TOOLS_SERVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct serve_metrics serve_metrics;

serve_metrics *serve_metrics_new(void);
void serve_metrics_free(serve_metrics *m);

/* One finished HTTP request: endpoint is the route ("/v1/completions", ... or "other"). */
void serve_metrics_request(serve_metrics *m, const char *endpoint, int status);
void serve_metrics_add_prompt_tokens(serve_metrics *m, int64_t n);
void serve_metrics_add_generated_tokens(serve_metrics *m, int64_t n);
/* Wall time of one scheduler step that evaluated n_prompt prompt and n_gen decode tokens. */
void serve_metrics_step(serve_metrics *m, double seconds, int64_t n_prompt, int64_t n_gen);
void serve_metrics_cache(serve_metrics *m, int hit, int64_t tokens_saved);
void serve_metrics_cache_size(serve_metrics *m, int64_t entries, int64_t bytes);
void serve_metrics_gauges(serve_metrics *m, int64_t queue_depth, int64_t running, int64_t slots);
void serve_metrics_cancelled(serve_metrics *m);

/* Prometheus text exposition (malloc'ed, caller frees); NULL on OOM. */
char *serve_metrics_render(serve_metrics *m);

#endif
