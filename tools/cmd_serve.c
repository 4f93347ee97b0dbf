/*
 * cmd_serve.c — `ggx serve`: an OpenAI-compatible HTTP server with continuous batching.
 * Options, model loading and the process lifetime; the work is in serve_*.c (see serve.h).
 */
#include "cmd.h"

#include "ggx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef GGX_HAVE_MHD
#include "cli_common.h"
#include "models/xlstm.h"
#include "types.h"
#include "serve.h"
#include "serve_cache.h"
#include "serve_chat.h"
#include "serve_http.h"
#include "serve_metrics.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx serve [-m MODEL.ggx] [options]\n"
            "\n"
            "OpenAI-compatible HTTP server with continuous batching. Endpoints:\n"
            "  POST /v1/completions, POST /v1/chat/completions (stream: true -> SSE),\n"
            "  GET /v1/models, GET /health, GET /metrics (Prometheus), POST /tokenize,\n"
            "  POST /detokenize. See docs/serve.md.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE         model (default: the built-in default model)\n"
            "  --host ADDR              listen address (default 127.0.0.1; 0.0.0.0 = all)\n"
            "  --port N                 port (default 8080; 0 = any free port, printed)\n"
            "  --parallel N             sequences decoded together = state slots (default 8)\n"
            "  --max-queue N            requests waiting beyond the slots; more get 503 (default 64)\n"
            "  --api-key K              require 'Authorization: Bearer K' (not on /health)\n"
            "  --api-key-file F         read the key from the first line of F\n"
            "  --max-body BYTES         request body limit (default 1048576)\n"
            "  --max-prompt-tokens N    prompt length limit (default 8192)\n"
            "  --max-tokens-limit N     largest max_tokens a request may ask (default 4096)\n"
            "  --prefill-chunk N        prompt tokens evaluated per step (default 256)\n"
            "  --prefix-cache-mb MB     prefix-state cache budget (default 256; 0 = off)\n"
            "  --alias NAME             model id in responses (default: file name)\n"
            "  --synthetic CONFIG       serve random weights of a config.json's shape instead of\n"
            "                           -m (benchmarks; needs --tokenizer)\n"
            "  --type T                 weight type of --synthetic: f32 f16 bf16 q8_0 q4_0 q4_x\n"
            "                           (default bf16)\n"
            "  --tokenizer FILE         tokenizer.json (or .ggx) to use instead of the model's\n"
            "  --backend cpu|cuda       compute backend (default cpu)\n"
            "  -t, --threads N          CPU threads (default: physical cores)\n"
            "  -v, --verbose            log requests, errors and the model's memory at load\n"
            "  --quiet                  no startup messages\n"
            "\n"
            "examples:\n"
            "  ggx serve -m xlstm-7b-q8_0.ggx --parallel 16\n"
            "  curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\\n"
            "       -d '{\"prompt\": \"ROMEO:\", \"max_tokens\": 32, \"temperature\": 0}'\n"
            "  curl -N localhost:8080/v1/chat/completions -d '{\"messages\": [{\"role\": \"user\",\n"
            "       \"content\": \"Hello\"}], \"stream\": true}'\n");
}

#ifndef GGX_HAVE_MHD
int ggx_cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    fprintf(stderr, "ggx serve: this ggx was built without libmicrohttpd (install "
                    "libmicrohttpd-dev and rebuild)\n");
    return 1;
}
#else

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ggx serve: cannot open --api-key-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char line[1024];
    char *k = NULL;
    if (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
            line[--n] = 0;
        if (n) k = strdup(line);
    }
    fclose(f);
    if (!k) fprintf(stderr, "ggx serve: --api-key-file %s has no key on its first line\n", path);
    return k;
}

static const char *default_model_path(char *buf, size_t cap) {
    if (cli_model_next_to_binary(buf, cap) == 0 && access(buf, R_OK) == 0) return buf;
#ifdef GGX_DEFAULT_MODEL_PATH
    return GGX_DEFAULT_MODEL_PATH;
#else
    return NULL;
#endif
}

static void model_name_from_path(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n >= cap) n = cap - 1;
    memcpy(out, b, n);
    out[n] = 0;
    if (n > 4 && !strcmp(out + n - 4, ".ggx")) out[n - 4] = 0;
}

int ggx_cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *backend = "cpu", *key_file = NULL,
               *alias = NULL, *synthetic = NULL, *tok_path = NULL;
    int wtype = GGX_TYPE_BF16;
    char *api_key = NULL;
    long port = 8080, parallel = 8, max_queue = 64, max_body = 1 << 20, max_prompt = 8192,
         max_tokens_limit = 4096, prefill = 256, cache_mb = 256, threads = 0;
    int quiet = 0, verbose = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG()                                                             \
    do {                                                                       \
        if (!v) {                                                              \
            fprintf(stderr, "ggx serve: %s needs a value\n", a);               \
            goto usage_err;                                                    \
        }                                                                      \
        i++;                                                                   \
    } while (0)
#define INT_ARG(var, lo, hi)                                                   \
    do {                                                                       \
        NEED_ARG();                                                            \
        if (parse_int(v, lo, hi, &var)) {                                      \
            fprintf(stderr, "ggx serve: %s: '%s' is not an integer in [%ld, %ld]\n", a, v, \
                    (long)(lo), (long)(hi));                                   \
            goto usage_err;                                                    \
        }                                                                      \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(api_key);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_ARG();
            model_path = v;
        } else if (!strcmp(a, "--host")) {
            NEED_ARG();
            host = v;
        } else if (!strcmp(a, "--port")) {
            INT_ARG(port, 0, 65535);
        } else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) {
            INT_ARG(parallel, 1, 4096);
        } else if (!strcmp(a, "--max-queue")) {
            INT_ARG(max_queue, 0, 100000);
        } else if (!strcmp(a, "--api-key")) {
            NEED_ARG();
            free(api_key);
            api_key = strdup(v);
        } else if (!strcmp(a, "--api-key-file")) {
            NEED_ARG();
            key_file = v;
        } else if (!strcmp(a, "--max-body")) {
            INT_ARG(max_body, 64, 1L << 30);
        } else if (!strcmp(a, "--max-prompt-tokens")) {
            INT_ARG(max_prompt, 1, 1L << 24);
        } else if (!strcmp(a, "--max-tokens-limit")) {
            INT_ARG(max_tokens_limit, 1, 1L << 24);
        } else if (!strcmp(a, "--prefill-chunk")) {
            INT_ARG(prefill, 1, 1L << 20);
        } else if (!strcmp(a, "--prefix-cache-mb")) {
            INT_ARG(cache_mb, 0, 1L << 22);
        } else if (!strcmp(a, "--synthetic")) {
            NEED_ARG();
            synthetic = v;
        } else if (!strcmp(a, "--tokenizer")) {
            NEED_ARG();
            tok_path = v;
        } else if (!strcmp(a, "--type")) {
            NEED_ARG();
            wtype = ggx_type_from_name(v);
            if (wtype < 0) {
                fprintf(stderr, "ggx serve: --type: unknown weight type '%s'\n", v);
                goto usage_err;
            }
        } else if (!strcmp(a, "--alias")) {
            NEED_ARG();
            alias = v;
        } else if (!strcmp(a, "--backend")) {
            NEED_ARG();
            backend = v;
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) {
                fprintf(stderr, "ggx serve: --backend must be cpu or cuda, not '%s'\n", v);
                goto usage_err;
            }
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            INT_ARG(threads, 1, 1024);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else {
            fprintf(stderr, "ggx serve: unknown option '%s' (see ggx serve --help)\n", a);
            goto usage_err;
        }
    }
    if (api_key && key_file) {
        fprintf(stderr, "ggx serve: give --api-key or --api-key-file, not both\n");
        goto usage_err;
    }
    if (key_file && !(api_key = read_key_file(key_file))) return 2;
    if (api_key && !api_key[0]) {
        fprintf(stderr, "ggx serve: the API key is empty\n");
        goto usage_err;
    }
    if (synthetic && model_path) {
        fprintf(stderr, "ggx serve: give -m FILE or --synthetic CONFIG, not both\n");
        goto usage_err;
    }
    if (synthetic && !tok_path) {
        fprintf(stderr, "ggx serve: --synthetic needs --tokenizer FILE (a synthetic model has none)\n");
        goto usage_err;
    }
    char defbuf[PATH_MAX + 32];
    if (synthetic) model_path = synthetic;
    if (!model_path) model_path = default_model_path(defbuf, sizeof defbuf);
    if (!model_path) {
        fprintf(stderr, "ggx serve: no model given (-m FILE) and no built-in default model\n");
        goto usage_err;
    }

    int rc = 1;
    serve_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.api_key = api_key;
    ctx.api_key_len = api_key ? strlen(api_key) : 0;
    ctx.max_body = (size_t)max_body;
    ctx.max_prompt_tokens = (int)max_prompt;
    ctx.lim.max_tokens_limit = (int)max_tokens_limit;
    ctx.lim.default_max_tokens = 16;   // OpenAI's default for /v1/completions
    ctx.lim.default_chat_tokens = 256;
    ctx.created = (long)time(NULL);
    ctx.verbose = verbose;
    if (verbose) ggx_set_log_level(1); /* the model's shape and memory at load (docs/cli.md) */
    if (alias) snprintf(ctx.model_name, sizeof ctx.model_name, "%s", alias);
    else if (synthetic)
        snprintf(ctx.model_name, sizeof ctx.model_name, "synthetic-%s", ggx_type_name(wtype));
    else model_name_from_path(model_path, ctx.model_name, sizeof ctx.model_name);
    pthread_mutex_init(&ctx.tok_mu, NULL);
    atomic_init(&ctx.ready, 0);
    atomic_init(&ctx.stopping, 0);
    atomic_init(&ctx.counter, (unsigned long long)time(NULL));
    ctx.metrics = serve_metrics_new();
    serve_http *http = NULL;
    serve_cache *cache = NULL;
    char *tmpl = NULL;
    if (!ctx.metrics) {
        fprintf(stderr, "ggx serve: out of memory\n");
        goto done;
    }

    // every thread started below inherits this mask; the main thread takes the signals in sigwait
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int bound = 0;
    if (serve_http_start(&ctx, host, (int)port, (int)(parallel + max_queue + 32), &http, &bound))
        goto done;
    if (!api_key && strcmp(host, "127.0.0.1") && strcmp(host, "::1") && strcmp(host, "localhost"))
        fprintf(stderr, "ggx serve: warning: listening on %s without --api-key: anyone who can "
                        "reach this address can use the model\n", host);
    if (!quiet) {
        int v6 = strchr(host, ':') != NULL;
        fprintf(stderr, "ggx serve: listening on http://%s%s%s:%d (loading %s)\n", v6 ? "[" : "",
                host, v6 ? "]" : "", bound, model_path);
    }

    // load (GET /health answers 503 meanwhile)
    ggx_model_params mp = ggx_model_default_params();
    mp.backend = backend;
    mp.n_threads = (int)threads;
    mp.progress = !quiet;
    ggx_status st = synthetic ? ggx_model_synthetic(synthetic, (enum ggx_type)wtype, &mp, 42,
                                                    &ctx.model)
                              : ggx_model_load(model_path, &mp, &ctx.model);
    if (st != GGX_OK) {
        fprintf(stderr, "ggx serve: cannot %s %s: %s\n", synthetic ? "build a model from" : "load",
                model_path, ggx_last_error());
        goto done;
    }
    st = tok_path ? ggx_tokenizer_load(tok_path, &ctx.tok)
                  : ggx_tokenizer_from_model(ctx.model, &ctx.tok);
    if (st != GGX_OK) {
        fprintf(stderr, "ggx serve: no usable tokenizer in %s: %s\n", tok_path ? tok_path : model_path,
                ggx_last_error());
        goto done;
    }
    ctx.n_vocab = ggx_model_n_vocab(ctx.model);
    ctx.bos = ggx_model_bos_id(ctx.model);
    ctx.add_bos = ggx_model_add_bos_default(ctx.model);
    tmpl = synthetic ? NULL : cli_read_chat_template(model_path);
    if (!serve_chat_fmt_init(&ctx.chat_fmt, tmpl) && !quiet)
        fprintf(stderr, "ggx serve: the model's chat template is neither ChatML nor ggx's {msg} "
                        "format (Jinja?); using the plain default chat format (docs/serve.md)\n");

    cache = serve_cache_new(ctx.model, (size_t)cache_mb << 20, ctx.metrics);
    if (!cache) {
        fprintf(stderr, "ggx serve: out of memory\n");
        goto done;
    }
    serve_sched_params sp = {.n_slots = (int)parallel, .max_queue = (int)max_queue,
                             .prefill_per_step = (int)prefill};
    if (serve_sched_create(ctx.model, ctx.tok, &ctx.tok_mu, cache, ctx.metrics, &sp, &ctx.sched) !=
        GGX_OK) {
        fprintf(stderr, "ggx serve: cannot create %ld sequence states: %s\n", parallel,
                ggx_last_error());
        goto done;
    }
    if (serve_sched_start(ctx.sched) != GGX_OK) goto done;
    atomic_store(&ctx.ready, 1);
    if (!quiet)
        fprintf(stderr, "ggx serve: ready: model '%s' (%s), %ld slots, chat format %s%s\n",
                ctx.model_name, ggx_model_desc(ctx.model), parallel,
                serve_chat_fmt_name(&ctx.chat_fmt), api_key ? ", API key required" : "");

    int sig = 0;
    sigwait(&sigs, &sig);
    if (!quiet) fprintf(stderr, "ggx serve: signal %d, shutting down\n", sig);
    rc = 0;

done:
    atomic_store(&ctx.stopping, 1);
    serve_http_stop(http);          // waiting handlers see `stopping` within 100 ms
    serve_sched_free(ctx.sched);
    serve_cache_free(cache);
    if (ctx.tok) ggx_tokenizer_free(ctx.tok);
    if (ctx.model) ggx_model_free(ctx.model);
    serve_metrics_free(ctx.metrics);
    pthread_mutex_destroy(&ctx.tok_mu);
    free(tmpl);
    free(api_key);
    return rc;

usage_err:
    free(api_key);
    return 2;
}
#endif /* GGX_HAVE_MHD */
