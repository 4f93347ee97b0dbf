/*
 * cmd_bench.c — `ggx bench`: prefill and decode speed, like llama-bench.
 *
 * For every thread count (-t list) the model is loaded (or built: --synthetic) once; then for
 * every batch size (-b list) it measures
 *   ppN  prefill: `batch` sequences of N tokens each in one ggx_eval call, logits of the last
 *        token of each (tokens/s = batch * N / time);
 *   tgM  decode: after a 1-token prefill, M steps of `batch` sequences x 1 token
 *        (tokens/s = batch * M / time);
 * each -r times after --warmup untimed runs, reporting the median and the sample standard
 * deviation. Token ids are pseudo-random (fixed seed) valid ids; states start from zero.
 *
 * --membw measures the memory read bandwidth (the model engineer's ggx_membw_*) and adds the
 * decode floor: a decode step must read every weight once, so at most
 * batch * bandwidth / weight_bytes_per_token tokens/s; the table shows the achieved fraction.
 */
#include "cli_common.h"
#include "cmd.h"
#include "membw.h"
#include "models/xlstm.h"
#include "types.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "bench"
#define MAX_SAMPLES 1000

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx bench [-m FILE | --synthetic CONFIG [--type T]] [options]\n"
            "\n"
            "Measure prefill (ppN) and decode (tgN) speed in tokens/s, like llama-bench.\n"
            "\n"
            "model:\n"
            "  -m, --model FILE       a .ggx file (default: the built-in model; 'default' too)\n"
            "      --synthetic CONFIG random weights of a config.json's shape (e.g. the 7B's\n"
            "                         config) built in memory: no checkpoint needed\n"
            "      --type T           weight type of the synthetic model: f32 f16 bf16 q8_0\n"
            "                         q4_0 q4_x (default bf16)\n"
            "tests (comma lists run every combination):\n"
            "  -p, --n-prompt N,...   prefill lengths (default 512; 0 = none)\n"
            "  -n, --n-gen N,...      decode lengths (default 128; 0 = none)\n"
            "  -b, --batch B,...      sequences evaluated together (default 1)\n"
            "  -t, --threads N,...    CPU threads (default: physical cores)\n"
            "  -r, --repetitions R    timed runs per test (default 3)\n"
            "      --warmup W         untimed runs before each test (default 1; cuda 2: the\n"
            "                         first run of a batch layout is eager, the second\n"
            "                         captures its CUDA graph)\n"
            "      --backend B        cpu (default) or cuda\n"
            "output:\n"
            "      --json             JSON array on stdout instead of the markdown table\n"
            "      --membw            measure the memory read bandwidth and show decode as a\n"
            "                         fraction of its floor (weights read per token / bandwidth)\n"
            "  -q, --quiet            no progress on stderr\n"
            "  -h, --help             this help\n"
            "\nexamples:\n"
            "  ggx bench -p 16 -n 4 -r 1                 # quick check on the built-in model\n"
            "  ggx bench -m xlstm-7b-q4_0.ggx -p 512,2048 -n 128 -t 1,2 --membw\n"
            "  ggx bench --synthetic config.json --type q8_0 -b 1,8 --backend cuda --json\n");
}

typedef struct bench_args {
    const char *model, *synthetic, *backend;
    int type;
    int32_t *pp, *tg, *batch, *threads;
    size_t n_pp, n_tg, n_batch, n_threads;
    int reps, warmup, json, membw, quiet;
} bench_args;

static int parse_list(const char *opt, const char *v, long lo, long hi, int32_t **l, size_t *n) {
    free(*l);
    *l = NULL;
    return cli_parse_int_list(CMD, opt, v, lo, hi, l, n);
}

static int one(int32_t **l, size_t *n, int v) {
    *l = malloc(sizeof **l);
    if (!*l) return -1;
    **l = v;
    *n = 1;
    return 0;
}

/* ===================================================================== timing ============= */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static int32_t rand_id(int n) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int32_t)((g_rng >> 33) % (uint64_t)n);
}

typedef struct bench_ctx {
    ggx_model *model;
    int n_vocab, n_ids;
    ggx_state **st;      /* [max batch] */
    ggx_seq *seqs;       /* [max batch] */
    int32_t *tok;        /* [max batch * max pp] */
    float *logits;       /* [max batch * n_vocab] */
    int n_st;
} bench_ctx;

static void ctx_free(bench_ctx *x) {
    for (int i = 0; i < x->n_st; i++) ggx_state_free(x->st[i]);
    free(x->st);
    free(x->seqs);
    free(x->tok);
    free(x->logits);
    ggx_model_free(x->model);
    memset(x, 0, sizeof *x);
}

/* Seconds for one prefill of b x n tokens, or < 0 on failure. */
static double run_pp(bench_ctx *x, int b, int n) {
    for (int i = 0; i < b; i++) {
        ggx_state_reset(x->st[i]);
        for (int j = 0; j < n; j++) x->tok[(size_t)i * n + j] = rand_id(x->n_ids);
        x->seqs[i] = (ggx_seq){.state = x->st[i], .tokens = x->tok + (size_t)i * n,
                               .n_tokens = n, .logits = x->logits + (size_t)i * x->n_vocab};
    }
    double t0 = cli_time_s();
    if (ggx_eval(x->model, x->seqs, b) != GGX_OK) return -1;
    return cli_time_s() - t0;
}

/* Seconds for n decode steps of b sequences (after an untimed 1-token prefill). */
static double run_tg(bench_ctx *x, int b, int n) {
    if (run_pp(x, b, 1) < 0) return -1;
    double t0 = cli_time_s();
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < b; i++) {
            x->tok[i] = rand_id(x->n_ids);
            x->seqs[i] = (ggx_seq){.state = x->st[i], .tokens = x->tok + i, .n_tokens = 1,
                                   .logits = x->logits + (size_t)i * x->n_vocab};
        }
        if (ggx_eval(x->model, x->seqs, b) != GGX_OK) return -1;
    }
    return cli_time_s() - t0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stats(const double *v, int n, double *med, double *sd) {
    double s[MAX_SAMPLES];
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    *med = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += v[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
    *sd = n > 1 ? sqrt(var / (n - 1)) : 0;
}

/* ===================================================================== main ============== */

int ggx_cmd_bench(int argc, char **argv) {
    bench_args a;
    memset(&a, 0, sizeof a);
    a.backend = "cpu";
    a.type = GGX_TYPE_BF16;
    a.reps = 3;
    a.warmup = -1;
    int rc = 2;
    cJSON *json = NULL;
    bench_ctx x;
    memset(&x, 0, sizeof x);
    char path[4096];
    const char *v;

    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(s, "-m") || !strcmp(s, "--model")) {
            if (!(a.model = cli_optarg(CMD, argc, argv, &i))) goto done;
        } else if (!strcmp(s, "--synthetic")) {
            if (!(a.synthetic = cli_optarg(CMD, argc, argv, &i))) goto done;
        } else if (!strcmp(s, "--type")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i))) goto done;
            a.type = ggx_type_from_name(v);
            if (a.type < 0 || a.type > GGX_TYPE_Q4_X) {
                cli_err(CMD, "--type: unknown weight type '%s' (f32 f16 bf16 q8_0 q4_0 q4_x)", v);
                goto done;
            }
        } else if (!strcmp(s, "-p") || !strcmp(s, "--n-prompt")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) || parse_list(s, v, 0, 1 << 20, &a.pp, &a.n_pp))
                goto done;
        } else if (!strcmp(s, "-n") || !strcmp(s, "--n-gen")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) || parse_list(s, v, 0, 1 << 20, &a.tg, &a.n_tg))
                goto done;
        } else if (!strcmp(s, "-b") || !strcmp(s, "--batch")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) ||
                parse_list(s, v, 1, 4096, &a.batch, &a.n_batch))
                goto done;
        } else if (!strcmp(s, "-t") || !strcmp(s, "--threads")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) ||
                parse_list(s, v, 1, 1024, &a.threads, &a.n_threads))
                goto done;
        } else if (!strcmp(s, "-r") || !strcmp(s, "--repetitions")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) ||
                cli_parse_int(CMD, s, v, 1, MAX_SAMPLES, &a.reps))
                goto done;
        } else if (!strcmp(s, "--warmup")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i)) ||
                cli_parse_int(CMD, s, v, 0, 100, &a.warmup))
                goto done;
        } else if (!strcmp(s, "--backend")) {
            if (!(a.backend = cli_optarg(CMD, argc, argv, &i))) goto done;
            if (strcmp(a.backend, "cpu") && strcmp(a.backend, "cuda")) {
                cli_err(CMD, "--backend: expected cpu or cuda, got '%s'", a.backend);
                goto done;
            }
        } else if (!strcmp(s, "--json")) {
            a.json = 1;
        } else if (!strcmp(s, "--membw")) {
            a.membw = 1;
        } else if (!strcmp(s, "-q") || !strcmp(s, "--quiet")) {
            a.quiet = 1;
        } else {
            cli_err(CMD, "unknown option '%s' (see ggx bench --help)", s);
            goto done;
        }
    }
    if (a.model && a.synthetic) {
        cli_err(CMD, "give -m FILE or --synthetic CONFIG, not both");
        goto done;
    }
    if (a.warmup < 0) a.warmup = strcmp(a.backend, "cuda") ? 1 : 2;
    rc = 1;
    if ((!a.pp && one(&a.pp, &a.n_pp, 512)) || (!a.tg && one(&a.tg, &a.n_tg, 128)) ||
        (!a.batch && one(&a.batch, &a.n_batch, 1)) || (!a.threads && one(&a.threads, &a.n_threads, 0)))
        goto done;
    if (!a.synthetic &&
        cli_resolve_model(CMD, a.model, path,
                          sizeof path))
        goto done;

    int max_b = 1, max_p = 1;
    for (size_t i = 0; i < a.n_batch; i++) max_b = a.batch[i] > max_b ? a.batch[i] : max_b;
    for (size_t i = 0; i < a.n_pp; i++) max_p = a.pp[i] > max_p ? a.pp[i] : max_p;

    /* the floor's denominator, per thread count (bandwidth grows with threads up to a point) */
    double bws[64] = {0}; /* bytes/s per entry of a.threads */
    if (a.membw) {
        if (a.n_threads > 64) {
            cli_err(CMD, "--membw: at most 64 thread counts");
            goto done;
        }
        for (size_t ti = 0; ti < a.n_threads; ti++) {
            if (!a.quiet)
                fprintf(stderr, "ggx bench: measuring memory read bandwidth (%s)...\n", a.backend);
            if (ggx_membw_measure(a.backend, a.threads[ti], &bws[ti]) != GGX_OK) {
                cli_err(CMD, "--membw: %s", ggx_last_error());
                goto done;
            }
        }
    }
    if (a.json) json = cJSON_CreateArray();
    else {
        for (size_t ti = 0; a.membw && ti < a.n_threads; ti++) {
            if (a.threads[ti] > 0)
                printf("memory read bandwidth (%s, %d threads): %.1f GB/s\n", a.backend,
                       a.threads[ti], bws[ti] / 1e9);
            else
                printf("memory read bandwidth (%s, default threads): %.1f GB/s\n", a.backend,
                       bws[ti] / 1e9);
        }
        if (a.membw) printf("\n");
    }
    int header_done = 0; /* the table header comes with the first row (not before an error) */

    for (size_t ti = 0; ti < a.n_threads; ti++) {
        ggx_model_params mp = ggx_model_default_params();
        mp.backend = a.backend;
        mp.n_threads = a.threads[ti];
        mp.progress = !a.quiet;
        ggx_status st = a.synthetic
                            ? ggx_model_synthetic(a.synthetic, (enum ggx_type)a.type, &mp, 42, &x.model)
                            : ggx_model_load(path, &mp, &x.model);
        if (st != GGX_OK) {
            cli_err(CMD, "cannot %s %s: %s", a.synthetic ? "build a model from" : "load",
                    a.synthetic ? a.synthetic : path, ggx_last_error());
            goto done;
        }
        x.n_vocab = ggx_model_n_vocab(x.model);
        x.n_ids = x.n_vocab;
        ggx_tokenizer *tok = NULL; /* only valid ids: the tokenizer's count if there is one */
        if (!a.synthetic && ggx_tokenizer_from_model(x.model, &tok) == GGX_OK) {
            int nt = ggx_tokenizer_n_vocab(tok);
            if (nt > 0 && nt < x.n_ids) x.n_ids = nt;
            ggx_tokenizer_free(tok);
        }
        x.st = calloc((size_t)max_b, sizeof *x.st);
        x.seqs = calloc((size_t)max_b, sizeof *x.seqs);
        x.tok = malloc(sizeof *x.tok * (size_t)max_b * (size_t)max_p);
        x.logits = malloc(sizeof *x.logits * (size_t)max_b * (size_t)x.n_vocab);
        if (!x.st || !x.seqs || !x.tok || !x.logits) {
            cli_err(CMD, "out of memory for batch %d x %d tokens", max_b, max_p);
            goto done;
        }
        for (int i = 0; i < max_b; i++, x.n_st++)
            if (ggx_state_create(x.model, &x.st[i]) != GGX_OK) {
                cli_err(CMD, "state: %s", ggx_last_error());
                goto done;
            }
        const char *desc = ggx_model_desc(x.model);
        const char *tname = ggx_type_name(ggx_model_weight_type(x.model));
        uint64_t wbytes = ggx_model_weight_bytes_per_token(x.model);

        for (size_t bi = 0; bi < a.n_batch; bi++) {
            int b = a.batch[bi];
            for (int kind = 0; kind < 2; kind++) {
                size_t nl = kind ? a.n_tg : a.n_pp;
                for (size_t li = 0; li < nl; li++) {
                    int n = kind ? a.tg[li] : a.pp[li];
                    if (n == 0) continue;
                    /* warm-up, untimed: first-call allocations, and on cuda the first sight
                     * (eager) and the capture of this batch layout's CUDA graph. Decode steps
                     * share one layout, so a 3-step run warms any tgN. */
                    for (int w = 0; w < a.warmup; w++) {
                        if (!a.quiet && isatty(2))
                            fprintf(stderr, "\r%s%d b%d t%d warm-up %d/%d   ", kind ? "tg" : "pp",
                                    n, b, a.threads[ti], w + 1, a.warmup);
                        if ((kind ? run_tg(&x, b, 3) : run_pp(&x, b, n)) < 0) {
                            cli_err(CMD, "evaluation failed: %s", ggx_last_error());
                            goto done;
                        }
                    }
                    double tps[MAX_SAMPLES];
                    for (int r = 0; r < a.reps; r++) {
                        if (!a.quiet && isatty(2))
                            fprintf(stderr, "\r%s%d b%d t%d run %d/%d   ", kind ? "tg" : "pp", n,
                                    b, a.threads[ti], r + 1, a.reps);
                        double s = kind ? run_tg(&x, b, n) : run_pp(&x, b, n);
                        if (s < 0) {
                            cli_err(CMD, "evaluation failed: %s", ggx_last_error());
                            goto done;
                        }
                        tps[r] = (double)b * n / (s > 0 ? s : 1e-9);
                    }
                    if (!a.quiet && isatty(2)) fprintf(stderr, "\r%40s\r", "");
                    double med, sd;
                    stats(tps, a.reps, &med, &sd);
                    double bw = bws[ti];
                    double floor = kind && a.membw && wbytes ? (double)b * bw / (double)wbytes : 0;
                    char test[32], thr[16];
                    snprintf(test, sizeof test, "%s%d", kind ? "tg" : "pp", n);
                    if (a.threads[ti] > 0) snprintf(thr, sizeof thr, "%d", a.threads[ti]);
                    else snprintf(thr, sizeof thr, "auto");
                    if (json) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "model", desc);
                        cJSON_AddStringToObject(o, "file", a.synthetic ? "" : path);
                        cJSON_AddStringToObject(o, "type", tname);
                        cJSON_AddStringToObject(o, "backend", a.backend);
                        cJSON_AddNumberToObject(o, "threads", a.threads[ti]);
                        cJSON_AddNumberToObject(o, "batch", b);
                        cJSON_AddStringToObject(o, "test", test);
                        cJSON_AddNumberToObject(o, "n_prompt", kind ? 0 : n);
                        cJSON_AddNumberToObject(o, "n_gen", kind ? n : 0);
                        cJSON_AddNumberToObject(o, "tps_median", med);
                        cJSON_AddNumberToObject(o, "tps_sd", sd);
                        cJSON *arr = cJSON_AddArrayToObject(o, "tps_samples");
                        for (int r = 0; r < a.reps; r++)
                            cJSON_AddItemToArray(arr, cJSON_CreateNumber(tps[r]));
                        if (a.membw) {
                            cJSON_AddNumberToObject(o, "membw_gbps", bw / 1e9);
                            cJSON_AddNumberToObject(o, "weight_bytes_per_token", (double)wbytes);
                            if (kind) {
                                cJSON_AddNumberToObject(o, "floor_tps", floor);
                                cJSON_AddNumberToObject(o, "fraction_of_floor", floor > 0 ? med / floor : 0);
                            }
                        }
                        cJSON_AddItemToArray(json, o);
                    } else {
                        if (!header_done++) {
                            printf("| model | type | backend | threads | batch | test | "
                                   "t/s (median ± sd) |%s\n",
                                   a.membw ? " floor t/s | of floor |" : "");
                            printf("| --- | --- | --- | ---: | ---: | --- | ---: |%s\n",
                                   a.membw ? " ---: | ---: |" : "");
                        }
                        printf("| %s | %s | %s | %s | %d | %s | %.2f ± %.2f |", desc, tname,
                               a.backend, thr, b, test, med, sd);
                        if (a.membw) {
                            if (kind) printf(" %.2f | %.0f%% |", floor, floor > 0 ? 100 * med / floor : 0);
                            else printf(" | |");
                        }
                        printf("\n");
                        fflush(stdout);
                    }
                }
            }
        }
        ctx_free(&x);
    }
    if (json) {
        char *s = cJSON_Print(json);
        if (s) {
            printf("%s\n", s);
            free(s);
        }
    }
    rc = 0;
done:
    ctx_free(&x);
    cJSON_Delete(json);
    free(a.pp);
    free(a.tg);
    free(a.batch);
    free(a.threads);
    return rc;
}
