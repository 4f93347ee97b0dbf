/* test_serve_sched.c — the serving scheduler and prefix cache without HTTP, on the built-in
 * model: outputs of many jobs run together (tiny prefill slices, few slots, a queue) equal a
 * direct one-sequence greedy loop over ggx_eval; a cache hit gives the same output as a cold run;
 * stop strings cut text exactly and hold back possible prefixes; LRU eviction keeps the budget.
 * The server sources live in tools/ (not in ggxcore), so they are compiled in here. */
#include "testutil.h"

#include "../tools/serve_cache.c"
#include "../tools/serve_metrics.c"
#include "../tools/serve_sched.c"

static char g_model_path[4096];

/* The reference: prefill the whole prompt in one call, then one token per call, argmax (lowest id
 * among ties), stop at EOS/EOT; returns the decoded text (malloc'ed). */
static char *direct_greedy(ggx_model *m, ggx_tokenizer *tok, const int32_t *prompt, int n,
                           int max_tokens) {
    int nv = ggx_model_n_vocab(m), tv = ggx_tokenizer_n_vocab(tok);
    int valid = tv > 0 && tv < nv ? tv : nv;
    float *logits = malloc(sizeof(float) * (size_t)nv);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)max_tokens);
    ggx_state *st;
    ggx_state_create(m, &st);
    ggx_seq q = {.state = st, .tokens = prompt, .n_tokens = n, .logits = logits};
    int n_out = 0;
    int eos = ggx_model_eos_id(m), eot = ggx_tokenizer_eot_id(tok);
    for (;;) {
        if (ggx_eval(m, &q, 1) != GGX_OK) break;
        int best = 0;
        for (int i = 1; i < valid; i++)
            if (logits[i] > logits[best]) best = i;
        if (best == eos || best == eot) break;
        out[n_out++] = best;
        if (n_out >= max_tokens) break;
        q.tokens = &out[n_out - 1];
        q.n_tokens = 1;
    }
    char *text = NULL;
    size_t len = 0;
    if (n_out) ggx_tokenizer_decode(tok, out, (size_t)n_out, &text, &len);
    else text = strdup("");
    ggx_state_free(st);
    free(out);
    free(logits);
    return text;
}

static int32_t *encode(ggx_model *m, ggx_tokenizer *tok, const char *s, int *n) {
    int32_t *ids = malloc(sizeof(int32_t) * (strlen(s) + 2));
    size_t k = 0, got = 0;
    if (ggx_model_add_bos_default(m) && ggx_model_bos_id(m) >= 0) ids[k++] = ggx_model_bos_id(m);
    ggx_tokenizer_encode(tok, s, strlen(s), ids + k, strlen(s) + 1, &got);
    *n = (int)(k + got);
    return ids;
}

static serve_job *make_job(ggx_model *m, ggx_tokenizer *tok, const char *prompt, int max_tokens,
                           int boundary) {
    serve_job *j = serve_job_new();
    j->prompt = encode(m, tok, prompt, &j->n_prompt);
    j->max_tokens = max_tokens;
    j->temperature = 0;
    j->cache_boundary = boundary;
    return j;
}

static void wait_done(serve_sched *s, serve_job *j) {
    serve_sched_lock(s);
    while (!j->done) serve_sched_wait(s, j, 50);
    serve_sched_unlock(s);
}

static const char *k_prompts[] = {
    "ROMEO:", "First Citizen:\nBefore we proceed any further, hear me speak.",
    "KING RICHARD III:\nNow is the winter of our discontent",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name;\n"
    "Or, if thou wilt not, be but sworn my love,\nAnd I'll no longer be a Capulet.\n\nROMEO:\n"
    "Shall I hear more, or shall I speak at this?\n\nJULIET:\n'Tis but thy name that is my enemy;",
    "MENENIUS:\nWhy, masters, my good friends, mine honest neighbours,\nWill you undo yourselves?",
    "HAMLET:", "LADY ANNE:\nSet down, set down your honourable load,", "Q",
};
#define NP (int)(sizeof k_prompts / sizeof k_prompts[0])

static void test_batching(ggx_model *m, ggx_tokenizer *tok) {
    char *ref[NP];
    for (int i = 0; i < NP; i++) {
        int n;
        int32_t *ids = encode(m, tok, k_prompts[i], &n);
        ref[i] = direct_greedy(m, tok, ids, n, 40);
        free(ids);
    }
    // 3 slots, 7-token prefill slices shared by all new jobs, 24 jobs queued at once
    pthread_mutex_t tok_mu = PTHREAD_MUTEX_INITIALIZER;
    serve_metrics *met = serve_metrics_new();
    serve_cache *cache = serve_cache_new(m, 1 << 20, met);
    serve_sched_params p = {.n_slots = 3, .max_queue = 64, .prefill_per_step = 7};
    serve_sched *s;
    TEST_CHECK(serve_sched_create(m, tok, &tok_mu, cache, met, &p, &s) == GGX_OK);
    TEST_CHECK(serve_sched_start(s) == GGX_OK);
    serve_job *jobs[24];
    for (int i = 0; i < 24; i++) {
        jobs[i] = make_job(m, tok, k_prompts[i % NP], 40, 0);
        TEST_CHECK(serve_sched_submit(s, jobs[i]) == 0);
    }
    for (int i = 0; i < 24; i++) {
        wait_done(s, jobs[i]);
        TEST_CHECK_MSG(!jobs[i]->error && jobs[i]->text_len == strlen(ref[i % NP]) &&
                           !memcmp(jobs[i]->text ? jobs[i]->text : "", ref[i % NP],
                                   jobs[i]->text_len),
                       "job %d: '%.*s' != direct '%s'", i, (int)jobs[i]->text_len,
                       jobs[i]->text ? jobs[i]->text : "", ref[i % NP]);
        TEST_CHECK(jobs[i]->finish_reason && (!strcmp(jobs[i]->finish_reason, "length") ||
                                              !strcmp(jobs[i]->finish_reason, "stop")));
        TEST_CHECK(jobs[i]->safe_len == jobs[i]->text_len);
        serve_job_release(s, jobs[i]);
    }
    // a full queue refuses: 3 slots + 64 queued are taken by long jobs, the next is refused
    serve_job *hold[67];
    int accepted = 0;
    for (int i = 0; i < 67; i++) {
        hold[i] = make_job(m, tok, "KING:", 1000, 0);
        hold[i]->ignore_eos = 1;
        accepted += serve_sched_submit(s, hold[i]) == 0;
    }
    serve_job *extra = make_job(m, tok, "x", 1, 0);
    TEST_CHECK(accepted == 67);
    TEST_CHECK(serve_sched_submit(s, extra) == -1);
    serve_job_release(NULL, extra);
    for (int i = 0; i < 67; i++) { // cancel all: queued ones leave at once, running at next step
        serve_sched_cancel(s, hold[i]);
        serve_job_release(s, hold[i]);
    }
    for (int k = 0; k < 100 && (serve_sched_running(s) || serve_sched_queue_len(s)); k++)
        usleep(10000);
    TEST_CHECK(serve_sched_running(s) == 0 && serve_sched_queue_len(s) == 0);
    serve_sched_free(s);
    serve_cache_free(cache);
    serve_metrics_free(met);
    for (int i = 0; i < NP; i++) free(ref[i]);
}

static void test_cache(ggx_model *m, ggx_tokenizer *tok) {
    // prompt 3 is long (> 64 tokens): block boundary; use a chat-like boundary too
    const char *sys = k_prompts[3];
    char p1[2048], p2[2048];
    snprintf(p1, sizeof p1, "%s\n\nROMEO:\nI take thee at thy word:", sys);
    snprintf(p2, sizeof p2, "%s\n\nNurse:\nMadam!", sys);
    int nsys;
    int32_t *sys_ids = encode(m, tok, sys, &nsys);
    free(sys_ids);
    char *ref1, *ref2;
    {
        int n;
        int32_t *ids = encode(m, tok, p1, &n);
        ref1 = direct_greedy(m, tok, ids, n, 30);
        free(ids);
        ids = encode(m, tok, p2, &n);
        ref2 = direct_greedy(m, tok, ids, n, 30);
        free(ids);
    }
    pthread_mutex_t tok_mu = PTHREAD_MUTEX_INITIALIZER;
    serve_metrics *met = serve_metrics_new();
    serve_cache *cache = serve_cache_new(m, 64u << 20, met);
    serve_sched_params p = {.n_slots = 2, .max_queue = 8, .prefill_per_step = 256};
    serve_sched *s;
    TEST_CHECK(serve_sched_create(m, tok, &tok_mu, cache, met, &p, &s) == GGX_OK);
    serve_sched_start(s);
    const char *ps[3] = {p1, p2, p1};
    char *refs[3] = {ref1, ref2, ref1};
    int want_cached[3] = {0, 1, 1};
    for (int r = 0; r < 3; r++) {
        serve_job *j = make_job(m, tok, ps[r], 30, 0);
        // the boundary: the system text's tokens, if they prefix the prompt (they do here as
        // the system text ends in ';' and the rest starts with "\n\n")
        j->cache_boundary = nsys;
        serve_sched_submit(s, j);
        wait_done(s, j);
        TEST_CHECK_MSG(j->text_len == strlen(refs[r]) && !memcmp(j->text, refs[r], j->text_len),
                       "run %d with cache: '%.*s' != '%s'", r, (int)j->text_len, j->text, refs[r]);
        TEST_CHECK_MSG(want_cached[r] ? j->n_cached >= nsys : j->n_cached == 0,
                       "run %d: n_cached %d (system %d tokens)", r, j->n_cached, nsys);
        serve_job_release(s, j);
    }
    serve_sched_free(s);
    char *txt = serve_metrics_render(met);
    TEST_CHECK(txt && strstr(txt, "ggx_prefix_cache_hits_total 2\n") &&
               strstr(txt, "ggx_prefix_cache_misses_total 1\n"));
    free(txt);
    serve_cache_free(cache);

    // LRU under a budget of ~2 entries; exact-token confirmation
    size_t per = ggx_model_state_size(m) + sizeof(entry) + 4 * 100;
    cache = serve_cache_new(m, 2 * per + 8, met);
    ggx_state *st, *dst;
    ggx_state_create(m, &st);
    ggx_state_create(m, &dst);
    int32_t a[64], b[64], c[64];
    for (int i = 0; i < 64; i++) a[i] = i + 1, b[i] = i + 2, c[i] = i + 3;
    int cand[1] = {64};
    serve_cache_store(cache, a, 64, st);
    serve_cache_store(cache, b, 64, st);
    TEST_CHECK(serve_cache_lookup(cache, a, cand, 1, dst) == 64); // a is now most recent
    serve_cache_store(cache, c, 64, st);                          // evicts b
    TEST_CHECK(serve_cache_lookup(cache, b, cand, 1, dst) == 0);
    TEST_CHECK(serve_cache_lookup(cache, a, cand, 1, dst) == 64);
    TEST_CHECK(serve_cache_lookup(cache, c, cand, 1, dst) == 64);
    c[10] = 999;
    TEST_CHECK(serve_cache_lookup(cache, c, cand, 1, dst) == 0);
    serve_cache_free(cache);
    cache = serve_cache_new(m, 0, met); // disabled
    serve_cache_store(cache, a, 64, st);
    TEST_CHECK(serve_cache_lookup(cache, a, cand, 1, dst) == 0);
    serve_cache_free(cache);
    ggx_state_free(st);
    ggx_state_free(dst);
    serve_metrics_free(met);
    free(ref1);
    free(ref2);
}

/* stop strings: feed text piece by piece, check the cut and the held-back tail */
static void feed(serve_job *j, const char *piece, int *stopped) {
    size_t n = strlen(piece);
    text_append(j, piece, n);
    *stopped = text_check_stops(j, n);
}

static void test_stops(void) {
    serve_job *j = serve_job_new();
    j->stops[0] = strdup("\nUser:");
    j->stops[1] = strdup("END");
    j->n_stops = 2;
    int st;
    feed(j, "Hello", &st);
    TEST_CHECK(!st && j->safe_len == 5);
    feed(j, " world\nUs", &st); // "\nUs" may become "\nUser:": held back
    TEST_CHECK(!st && j->safe_len == strlen("Hello world"));
    feed(j, "ual", &st); // no: released
    TEST_CHECK(!st && j->safe_len == j->text_len);
    feed(j, " E", &st);
    TEST_CHECK(!st && j->safe_len == j->text_len - 1);
    feed(j, "N", &st);
    TEST_CHECK(!st && j->safe_len == j->text_len - 2);
    feed(j, "Dgame", &st); // stop spanning three pieces
    TEST_CHECK(st && !strcmp(j->text, "Hello world\nUsual ") && j->safe_len == j->text_len);
    serve_job_release(NULL, j);
    j = serve_job_new();
    j->stops[0] = strdup("ab");
    j->stops[1] = strdup("b");
    j->n_stops = 2;
    feed(j, "xxab", &st); // the earliest occurrence wins
    TEST_CHECK(st && !strcmp(j->text, "xx"));
    serve_job_release(NULL, j);
}

int main(void) {
    test_stops();
    const char *bd = getenv("GGX_BUILD_DIR");
    snprintf(g_model_path, sizeof g_model_path, "%s/models/default.ggx", bd ? bd : "build");
    if (access(g_model_path, R_OK) != 0) {
        printf("test_serve_sched: no model at %s, skipping the model part\n", g_model_path);
        return test_finish("test_serve_sched");
    }
    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = 1;
    ggx_model *m;
    ggx_tokenizer *tok;
    if (ggx_model_load(g_model_path, &mp, &m) != GGX_OK ||
        ggx_tokenizer_from_model(m, &tok) != GGX_OK) {
        fprintf(stderr, "cannot load %s: %s\n", g_model_path, ggx_last_error());
        return 1;
    }
    test_batching(m, tok);
    test_cache(m, tok);
    ggx_tokenizer_free(tok);
    ggx_model_free(m);
    return test_finish("test_serve_sched");
}
