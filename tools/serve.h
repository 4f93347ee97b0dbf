/*
 * serve.h — the pieces of `ggx serve` and how they meet.
 *
 *   HTTP threads (serve_http.c, one per connection, libmicrohttpd)
 *     parse + validate the request (serve_api.c), tokenize, build a serve_job, submit it
 *     -> scheduler queue (serve_sched.c) -> one thread owns the model and runs ggx_eval on a
 *     batch of all running jobs each step; the prefix-state cache (serve_cache.c) lets a job
 *     start from a stored state; counters live in serve_metrics.c.
 *   The HTTP thread waits on the job (non-streaming) or streams its text as it grows (SSE).
 *
 * A serve_job is shared by exactly two owners (the HTTP side and the scheduler) and freed by the
 * last serve_job_release(). Its mutable fields are guarded by the scheduler's mutex.
 */
#ifndef GGX_TOOLS_SERVE_H
#define GGX_TOOLS_SERVE_H

#include "ggx.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_MAX_STOPS 16

typedef struct serve_metrics serve_metrics;
typedef struct serve_cache serve_cache;
typedef struct serve_sched serve_sched;

/* One generation request, from submit to the last byte sent. */
typedef struct serve_job {
    /* immutable after submit */
    int32_t *prompt;         /* [n_prompt] token ids (BOS included when the model wants one) */
    int n_prompt;
    int ignore_eos;          /* keep generating past end-of-text (llama-server extension) */
    int stream;              /* wake the reader on every new piece (else only at the end) */
    int cache_boundary;      /* token count of a natural prefix (chat system message), or 0 */
    int max_tokens;
    float temperature, top_p;
    int top_k;               /* llama-server extensions; OpenAI semantics by default: */
    float min_p;             /*   top_k 0, min_p 0, repeat_penalty 1 (all off) */
    float repeat_penalty;
    uint64_t seed;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;

    /* guarded by the scheduler mutex */
    pthread_cond_t cv;       /* signalled when text grows or the job ends */
    char *text;              /* visible generated text (stop strings cut off) */
    size_t text_len, text_cap;
    size_t safe_len;         /* bytes of text that can no longer become part of a stop string */
    int n_gen;               /* generated tokens (EOS included) */
    int n_cached;            /* prompt tokens taken from the prefix cache */
    int done;
    const char *finish_reason; /* "stop" | "length" | NULL */
    char *error;             /* set when the model failed on this job */
    int cancelled;           /* the client went away */
    int refs;
    int queued;              /* still in the queue (not yet in a slot) */
    struct serve_job *next;  /* queue link */
} serve_job;

/* ---------------------------------------------------------------- jobs (serve_sched.c) */

serve_job *serve_job_new(void);                /* refs = 1; NULL on OOM */
void serve_job_release(serve_sched *s, serve_job *job);

/* ---------------------------------------------------------------- scheduler */

typedef struct serve_sched_params {
    int n_slots;             /* --parallel: states, i.e. concurrently running sequences */
    int max_queue;           /* waiting jobs beyond the slots; more -> 503 */
    int prefill_per_step;    /* prompt tokens fed per step over all new jobs */
} serve_sched_params;

/* The scheduler takes no ownership of model/tok/cache/metrics. tok_mu serializes tokenizer use
 * between the scheduler (streaming detok) and the HTTP threads (encode). */
ggx_status serve_sched_create(ggx_model *model, ggx_tokenizer *tok, pthread_mutex_t *tok_mu,
                              serve_cache *cache, serve_metrics *metrics,
                              const serve_sched_params *p, serve_sched **out);
ggx_status serve_sched_start(serve_sched *s);
void serve_sched_free(serve_sched *s);  /* stops the thread, fails pending jobs */

/* Submit: the scheduler takes a reference. Returns 0, or -1 when the queue is full (the job is
 * untouched and still owned by the caller alone). */
int serve_sched_submit(serve_sched *s, serve_job *job);
/* The client is gone: drop the job from the queue or free its slot at the next step. */
void serve_sched_cancel(serve_sched *s, serve_job *job);
/* Lock/wait helpers for the HTTP side reading a job. */
void serve_sched_lock(serve_sched *s);
void serve_sched_unlock(serve_sched *s);
/* Wait (locked) up to ms for the job's cv; returns after a signal or the timeout. */
void serve_sched_wait(serve_sched *s, serve_job *job, int ms);
int serve_sched_queue_len(serve_sched *s);
int serve_sched_running(serve_sched *s);

#endif
