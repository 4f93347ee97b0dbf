/*
 * serve_sched.c — continuous batching: one thread owns the model and, each step, evaluates one
 * batch made of every running sequence's next token (decode) plus a bounded slice of the prompts
 * of newly admitted jobs (prefill). A job waiting in the queue joins at the next step when a slot
 * (a ggx_state) is free; a finished or cancelled job frees its slot at the end of the step.
 *
 * Prefill slices stop at prefix-cache boundaries so the state there can be snapshotted; a job
 * whose prompt starts with a cached prefix copies that state and skips those tokens.
 */
#include "serve.h"
#include "serve_cache.h"
#include "serve_metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STORE 2 /* snapshots one job may leave behind: chat boundary + last block boundary */

typedef struct slot {
    ggx_state *state;
    float *logits;          // [n_vocab]
    serve_job *job;         // NULL: free
    ggx_sampler *sampler;
    ggx_detok *detok;
    int pos;                // prompt tokens read so far
    int32_t last;           // last sampled token (decode input)
    int store[MAX_STORE];   // ascending prompt lengths at which to snapshot the state
    int n_store;
    int fresh;              // admitted, setup not yet done
} slot;

struct serve_sched {
    ggx_model *model;
    ggx_tokenizer *tok;
    pthread_mutex_t *tok_mu;
    serve_cache *cache;
    serve_metrics *metrics;
    int n_vocab, n_vocab_valid, eos, eot;
    serve_sched_params p;

    pthread_mutex_t mu;
    pthread_cond_t cv;      // the scheduler waits here for work
    serve_job *q_head, *q_tail;
    int q_len, running, stopping, started;
    pthread_t thread;

    slot *slots;
    int rr;                 // round-robin start for prefill budget
    ggx_seq *seqs;
    int *seq_slot;
};

/* ---------------------------------------------------------------- jobs */

serve_job *serve_job_new(void) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->top_p = 1.0f;
    j->repeat_penalty = 1.0f;
    return j;
}

static void job_free(serve_job *j) {
    pthread_cond_destroy(&j->cv);
    free(j->prompt);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->text);
    free(j->error);
    free(j);
}

void serve_job_release(serve_sched *s, serve_job *job) {
    if (!job) return;
    int last;
    if (s) pthread_mutex_lock(&s->mu);
    last = --job->refs == 0;
    if (s) pthread_mutex_unlock(&s->mu);
    if (last) job_free(job);
}

/* ---------------------------------------------------------------- text + stop strings (locked) */

static int text_append(serve_job *j, const char *p, size_t n) {
    if (j->text_len + n + 1 > j->text_cap) {
        size_t cap = j->text_cap ? j->text_cap * 2 : 256;
        while (cap < j->text_len + n + 1) cap *= 2;
        char *t = realloc(j->text, cap);
        if (!t) return -1;
        j->text = t;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, p, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
    return 0;
}

/* After appending `added` bytes: cut at the first stop string (returns 1), else advance safe_len
 * to the end minus the longest tail that could still grow into a stop string. */
static int text_check_stops(serve_job *j, size_t added) {
    size_t best = (size_t)-1;
    for (int i = 0; i < j->n_stops; i++) {
        size_t sl = strlen(j->stops[i]);
        if (!sl || sl > j->text_len) continue;
        size_t from = j->text_len - added;
        from = from >= sl - 1 ? from - (sl - 1) : 0;
        char *hit = memmem(j->text + from, j->text_len - from, j->stops[i], sl);
        if (hit && (size_t)(hit - j->text) < best) best = (size_t)(hit - j->text);
    }
    if (best != (size_t)-1) {
        j->text_len = best;
        j->text[best] = 0;
        j->safe_len = best; // safe text never holds a stop string, so this only grows
        return 1;
    }
    size_t hold = 0;
    for (int i = 0; i < j->n_stops; i++) {
        size_t sl = strlen(j->stops[i]);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > hold; k--)
            if (k <= j->text_len && !memcmp(j->text + j->text_len - k, j->stops[i], k)) {
                hold = k;
                break;
            }
    }
    size_t safe = j->text_len - hold;
    if (safe > j->safe_len) j->safe_len = safe;
    return 0;
}

/* ---------------------------------------------------------------- create / free */

ggx_status serve_sched_create(ggx_model *model, ggx_tokenizer *tok, pthread_mutex_t *tok_mu,
                              serve_cache *cache, serve_metrics *metrics,
                              const serve_sched_params *p, serve_sched **out) {
    *out = NULL;
    if (p->n_slots < 1 || p->max_queue < 0 || p->prefill_per_step < 1) {
        fprintf(stderr, "ggx serve: bad scheduler parameters\n");
        return GGX_ERR_INVALID_ARG;
    }
    serve_sched *s = calloc(1, sizeof *s);
    if (!s) return GGX_ERR_NOMEM;
    s->model = model;
    s->tok = tok;
    s->tok_mu = tok_mu;
    s->cache = cache;
    s->metrics = metrics;
    s->p = *p;
    s->n_vocab = ggx_model_n_vocab(model);
    int tv = ggx_tokenizer_n_vocab(tok);
    s->n_vocab_valid = tv > 0 && tv < s->n_vocab ? tv : s->n_vocab;
    s->eos = ggx_model_eos_id(model);
    s->eot = ggx_tokenizer_eot_id(tok);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    ggx_status st = GGX_ERR_NOMEM;
    s->slots = calloc((size_t)p->n_slots, sizeof *s->slots);
    s->seqs = calloc((size_t)p->n_slots, sizeof *s->seqs);
    s->seq_slot = calloc((size_t)p->n_slots, sizeof *s->seq_slot);
    if (!s->slots || !s->seqs || !s->seq_slot) goto fail;
    for (int i = 0; i < p->n_slots; i++) {
        st = ggx_state_create(model, &s->slots[i].state);
        if (st != GGX_OK) goto fail;
        s->slots[i].logits = malloc(sizeof(float) * (size_t)s->n_vocab);
        if (!s->slots[i].logits) {
            st = GGX_ERR_NOMEM;
            goto fail;
        }
    }
    serve_metrics_gauges(metrics, 0, 0, p->n_slots);
    *out = s;
    return GGX_OK;
fail:
    serve_sched_free(s);
    return st;
}

static void finish_job_locked(serve_sched *s, serve_job *j, const char *reason, const char *err) {
    (void)s;
    if (j->done) return;
    j->done = 1;
    j->finish_reason = reason;
    if (err && !j->error) j->error = strdup(err);
    j->safe_len = j->text_len;
    pthread_cond_broadcast(&j->cv);
}

static void slot_release(serve_sched *s, slot *sl) {
    // caller holds s->mu
    if (sl->sampler) ggx_sampler_free(sl->sampler);
    if (sl->detok) ggx_detok_free(sl->detok);
    sl->sampler = NULL;
    sl->detok = NULL;
    serve_job *j = sl->job;
    sl->job = NULL;
    s->running--;
    if (j && --j->refs == 0) job_free(j);
}

void serve_sched_free(serve_sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_lock(&s->mu);
    while (s->q_head) {
        serve_job *j = s->q_head;
        s->q_head = j->next;
        j->queued = 0;
        finish_job_locked(s, j, NULL, "server shutting down");
        if (--j->refs == 0) job_free(j);
    }
    if (s->slots)
        for (int i = 0; i < s->p.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->job) {
                finish_job_locked(s, sl->job, NULL, "server shutting down");
                slot_release(s, sl);
            }
            if (sl->state) ggx_state_free(sl->state);
            free(sl->logits);
        }
    pthread_mutex_unlock(&s->mu);
    free(s->slots);
    free(s->seqs);
    free(s->seq_slot);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---------------------------------------------------------------- HTTP-side calls */

int serve_sched_submit(serve_sched *s, serve_job *job) {
    pthread_mutex_lock(&s->mu);
    int free_slots = s->p.n_slots - s->running;
    if (s->stopping || s->q_len >= s->p.max_queue + (free_slots > 0 ? free_slots : 0)) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    job->refs++;
    job->queued = 1;
    job->next = NULL;
    if (s->q_tail) s->q_tail->next = job;
    else s->q_head = job;
    s->q_tail = job;
    s->q_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void serve_sched_cancel(serve_sched *s, serve_job *job) {
    pthread_mutex_lock(&s->mu);
    if (!job->done) {
        job->cancelled = 1;
        if (job->queued) { // not started: take it out of the queue now
            serve_job **pp = &s->q_head, *prev = NULL;
            while (*pp && *pp != job) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp) {
                *pp = job->next;
                if (s->q_tail == job) s->q_tail = prev;
                s->q_len--;
                job->queued = 0;
                job->refs--; // the scheduler's reference; the caller still holds one
            }
        }
        finish_job_locked(s, job, NULL, NULL);
        serve_metrics_cancelled(s->metrics);
        pthread_cond_signal(&s->cv); // the slot is freed at the next step
    }
    pthread_mutex_unlock(&s->mu);
}

void serve_sched_lock(serve_sched *s) { pthread_mutex_lock(&s->mu); }
void serve_sched_unlock(serve_sched *s) { pthread_mutex_unlock(&s->mu); }

void serve_sched_wait(serve_sched *s, serve_job *job, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&job->cv, &s->mu, &ts);
}

int serve_sched_queue_len(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->q_len;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int serve_sched_running(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->running;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------------------------------------------------------------- the scheduler thread */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Admitted job: sampler, detokenizer, prefix-cache lookup, snapshot points. Outside the lock
 * (the job's immutable fields only). Returns an error message or NULL. */
static const char *slot_setup(serve_sched *s, slot *sl) {
    serve_job *j = sl->job;
    ggx_sampler_params sp = ggx_sampler_default_params();
    sp.temperature = j->temperature;
    sp.top_p = j->top_p;
    sp.top_k = j->top_k;
    sp.min_p = j->min_p;
    sp.repeat_penalty = j->repeat_penalty;
    sp.seed = j->seed;
    sp.n_vocab_valid = s->n_vocab_valid;
    if (ggx_sampler_create(&sp, &sl->sampler) != GGX_OK) return "cannot create a sampler";
    if (ggx_detok_create(s->tok, &sl->detok) != GGX_OK) return "cannot create a detokenizer";

    // candidate prefix lengths, ascending, each < n_prompt (one prompt token must still be fed
    // to get logits): the last 64 block multiples and the chat boundary
    int cand[66], nc = 0;
    int last_block = ((j->n_prompt - 1) / SERVE_CACHE_BLOCK) * SERVE_CACHE_BLOCK;
    int cb = j->cache_boundary > 0 && j->cache_boundary < j->n_prompt ? j->cache_boundary : 0;
    int first = last_block - 63 * SERVE_CACHE_BLOCK;
    if (first < SERVE_CACHE_BLOCK) first = SERVE_CACHE_BLOCK;
    for (int b = first; b <= last_block; b += SERVE_CACHE_BLOCK) {
        if (cb && cb < b && (nc == 0 || cand[nc - 1] < cb)) cand[nc++] = cb;
        if (b != cb) cand[nc++] = b;
    }
    if (cb && (nc == 0 || cand[nc - 1] < cb)) cand[nc++] = cb;

    sl->pos = 0;
    sl->n_store = 0;
    int hit = 0;
    if (serve_cache_enabled(s->cache) && nc > 0) {
        hit = serve_cache_lookup(s->cache, j->prompt, cand, nc, sl->state);
        serve_metrics_cache(s->metrics, hit > 0, hit);
        int want[MAX_STORE] = {cb, last_block}, nw = 0;
        for (int i = 0; i < MAX_STORE; i++) {
            int b = want[i];
            if (b <= hit || b <= 0) continue;
            if (nw && sl->store[nw - 1] == b) continue;
            if (nw && sl->store[nw - 1] > b) { // keep ascending
                sl->store[nw] = sl->store[nw - 1];
                sl->store[nw - 1] = b;
            } else {
                sl->store[nw] = b;
            }
            nw++;
        }
        sl->n_store = nw;
    }
    if (hit > 0) sl->pos = hit;
    else ggx_state_reset(sl->state);
    pthread_mutex_lock(&s->mu);
    j->n_cached = hit;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A token was sampled for slot sl (locked). Returns 1 when the job is finished. */
static int on_token(serve_sched *s, slot *sl, int32_t tok) {
    serve_job *j = sl->job;
    j->n_gen++;
    sl->last = tok;
    if ((tok == s->eos || tok == s->eot) && !j->ignore_eos) {
        char buf[64];
        size_t n = 0;
        pthread_mutex_lock(s->tok_mu);
        ggx_detok_flush(sl->detok, buf, sizeof buf, &n);
        pthread_mutex_unlock(s->tok_mu);
        if (n && text_append(j, buf, n) == 0) text_check_stops(j, n);
        finish_job_locked(s, j, "stop", NULL);
        return 1;
    }
    char buf[1024];
    size_t n = 0;
    pthread_mutex_lock(s->tok_mu);
    ggx_status st = ggx_detok_push(sl->detok, tok, buf, sizeof buf, &n);
    pthread_mutex_unlock(s->tok_mu);
    if (st != GGX_OK) n = 0;
    if (n && text_append(j, buf, n) != 0) {
        finish_job_locked(s, j, NULL, "out of memory");
        return 1;
    }
    if (n && text_check_stops(j, n)) {
        finish_job_locked(s, j, "stop", NULL);
        return 1;
    }
    if (j->n_gen >= j->max_tokens) {
        n = 0;
        pthread_mutex_lock(s->tok_mu);
        ggx_detok_flush(sl->detok, buf, sizeof buf, &n);
        pthread_mutex_unlock(s->tok_mu);
        int stopped = n && text_append(j, buf, n) == 0 && text_check_stops(j, n);
        finish_job_locked(s, j, stopped ? "stop" : "length", NULL);
        return 1;
    }
    if (j->stream) pthread_cond_broadcast(&j->cv);
    return 0;
}

static void *sched_main(void *arg) {
    serve_sched *s = arg;
    for (;;) {
        // ---- admit queued jobs into free slots; sleep while idle
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->running == 0 && s->q_len == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        for (int i = 0; i < s->p.n_slots && s->q_head; i++) {
            slot *sl = &s->slots[i];
            if (sl->job) continue;
            serve_job *j = s->q_head;
            s->q_head = j->next;
            if (!s->q_head) s->q_tail = NULL;
            s->q_len--;
            j->queued = 0;
            j->next = NULL;
            sl->job = j;
            sl->fresh = 1;
            s->running++;
        }
        pthread_mutex_unlock(&s->mu);

        // ---- setup of new jobs (cache lookups copy states: outside the lock)
        for (int i = 0; i < s->p.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (!sl->job || !sl->fresh) continue;
            sl->fresh = 0;
            const char *err = slot_setup(s, sl);
            if (err) {
                pthread_mutex_lock(&s->mu);
                finish_job_locked(s, sl->job, NULL, err);
                slot_release(s, sl);
                pthread_mutex_unlock(&s->mu);
            }
        }

        // ---- drop cancelled jobs, build the batch
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->p.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->job && (sl->job->cancelled || sl->job->done)) slot_release(s, sl);
        }
        int running = s->running;
        serve_metrics_gauges(s->metrics, s->q_len, running, s->p.n_slots);
        pthread_mutex_unlock(&s->mu);

        int n = 0, budget = s->p.prefill_per_step;
        int64_t n_prompt_tok = 0, n_dec_tok = 0;
        for (int k = 0; k < s->p.n_slots; k++) {
            int i = (s->rr + k) % s->p.n_slots;
            slot *sl = &s->slots[i];
            serve_job *j = sl->job;
            if (!j) continue;
            ggx_seq *q = &s->seqs[n];
            memset(q, 0, sizeof *q);
            q->state = sl->state;
            if (sl->pos < j->n_prompt) {
                if (budget <= 0) continue;
                int end = j->n_prompt;
                for (int t = 0; t < sl->n_store; t++)
                    if (sl->store[t] > sl->pos) {
                        end = sl->store[t];
                        break;
                    }
                int take = end - sl->pos;
                if (take > budget) take = budget;
                budget -= take;
                q->tokens = j->prompt + sl->pos;
                q->n_tokens = take;
                q->logits = sl->pos + take == j->n_prompt ? sl->logits : NULL;
                n_prompt_tok += take;
            } else {
                q->tokens = &sl->last;
                q->n_tokens = 1;
                q->logits = sl->logits;
                n_dec_tok++;
            }
            s->seq_slot[n++] = i;
        }
        s->rr = (s->rr + 1) % s->p.n_slots;
        if (n == 0) continue;

        // ---- one batched eval
        double t0 = now_s();
        ggx_status st = ggx_eval(s->model, s->seqs, n);
        double dt = now_s() - t0;
        if (st != GGX_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "model evaluation failed: %s", ggx_last_error());
            fprintf(stderr, "ggx serve: %s\n", msg);
            pthread_mutex_lock(&s->mu);
            for (int b = 0; b < n; b++) {
                slot *sl = &s->slots[s->seq_slot[b]];
                finish_job_locked(s, sl->job, NULL, msg);
                slot_release(s, sl);
            }
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        serve_metrics_step(s->metrics, dt, n_prompt_tok, n_dec_tok);

        // ---- consume: snapshots, sampling, text
        int64_t n_sampled = 0;
        for (int b = 0; b < n; b++) {
            slot *sl = &s->slots[s->seq_slot[b]];
            serve_job *j = sl->job;
            ggx_seq *q = &s->seqs[b];
            int was_prefill = sl->pos < j->n_prompt;
            if (was_prefill) {
                sl->pos += q->n_tokens;
                for (int t = 0; t < sl->n_store; t++)
                    if (sl->store[t] == sl->pos)
                        serve_cache_store(s->cache, j->prompt, sl->pos, sl->state);
                if (sl->pos < j->n_prompt) continue;
            }
            int32_t tok = ggx_sampler_sample(sl->sampler, sl->logits, s->n_vocab);
            ggx_sampler_accept(sl->sampler, tok);
            n_sampled++;
            pthread_mutex_lock(&s->mu);
            if (!j->cancelled && !j->done) {
                if (on_token(s, sl, tok)) slot_release(s, sl);
            }
            pthread_mutex_unlock(&s->mu);
        }
        serve_metrics_add_generated_tokens(s->metrics, n_sampled);
    }
    return NULL;
}

ggx_status serve_sched_start(serve_sched *s) {
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        fprintf(stderr, "ggx serve: cannot start the scheduler thread: %s\n", strerror(errno));
        return GGX_ERR_NOMEM;
    }
    s->started = 1;
    return GGX_OK;
}
