/*
 * cmd_run.c — `ggx run`: generate text from a prompt, streaming it to stdout.
 *
 * Flow: prompt (-p / -f / stdin as text, or --ids) -> optional BOS -> one prefill call ->
 * decode loop (sample, accept, print through the streaming detokenizer and the stop-string
 * filter, eval the new id) until -n, a stop string, or the model's end-of-text.
 *
 * Contract (docs/design.md §6): with --ids-out the last stdout line is the generated ids,
 * comma-separated. Statistics go to stderr unless --quiet.
 */
#include "cli_common.h"
#include "cmd.h"
#include "progress.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "run"
#define MAX_STOPS 16
#define PREFILL_CHUNK 2048 /* tokens per eval call for long prompts (a multiple of 64) */

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx run [-m FILE] [-p TEXT | -f FILE | --ids 1,2,3] [-n N] [options]\n"
            "\n"
            "Generate text from a prompt; the text streams to stdout as it is produced.\n"
            "Without -p/-f/--ids the prompt is read from stdin. Generation ends after -n\n"
            "tokens, at a --stop string, or at the model's end-of-text token.\n"
            "\n"
            "prompt and output:\n"
            "  -p, --prompt TEXT      prompt text\n"
            "  -f, --file FILE        read the prompt from FILE ('-' = stdin)\n"
            "      --ids 1,2,3        the prompt as token ids (used verbatim: BOS only with --bos)\n"
            "  -n, --n-predict N      tokens to generate (default 256; -1 = until end-of-text)\n"
            "      --stop STR         stop when STR appears (repeatable; STR is not printed;\n"
            "                         C escapes \\n \\t \\\\ are understood)\n"
            "      --bos / --no-bos   start with the BOS token or not (default: the model's\n"
            "                         recorded choice)\n"
            "      --no-echo          do not print the prompt before the generated text\n"
            "      --ids-out          after the text, print the generated ids comma-separated\n"
            "                         on the last line\n");
    cli_help_sampling(out);
    fprintf(out, "common:\n");
    cli_help_common(out);
    fprintf(out,
            "\nexamples:\n"
            "  ggx run -p \"ROMEO:\"                        # built-in tiny Shakespeare model\n"
            "  ggx run -m xlstm-7b-q4_0.ggx -p \"The capital of France is\" -n 32 --temp 0\n"
            "  echo \"JULIET:\" | ggx run -n 100 --seed 7 --top-k 20\n"
            "  ggx run --ids 815,27 -n 24 --temp 0 --ids-out   # greedy ids on the last line\n"
            "  ggx run -p \"KING:\" --stop \"\\n\\n\" --quiet\n");
}

typedef struct run_args {
    cli_opts o;
    const char *prompt, *prompt_file, *ids_arg;
    int n_predict;
    int bos;        /* -1 model default, 0 no, 1 yes */
    int echo;
    int ids_out;
    char *stops[MAX_STOPS];
    int n_stops;
} run_args;

static int parse_args(run_args *a, int argc, char **argv) {
    cli_opts_init(&a->o);
    a->n_predict = 256;
    a->bos = -1;
    a->echo = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int r = cli_parse_common(&a->o, CMD, argc, argv, &i);
        if (!r) r = cli_parse_sampling(&a->o, CMD, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(s, "-p") || !strcmp(s, "--prompt")) {
            if (!(a->prompt = cli_optarg(CMD, argc, argv, &i))) return 2;
        } else if (!strcmp(s, "-f") || !strcmp(s, "--file")) {
            if (!(a->prompt_file = cli_optarg(CMD, argc, argv, &i))) return 2;
        } else if (!strcmp(s, "--ids")) {
            if (!(a->ids_arg = cli_optarg(CMD, argc, argv, &i))) return 2;
        } else if (!strcmp(s, "-n") || !strcmp(s, "--n-predict")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i))) return 2;
            if (cli_parse_int(CMD, s, v, -1, 1 << 30, &a->n_predict)) return 2;
        } else if (!strcmp(s, "--stop")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i))) return 2;
            if (a->n_stops == MAX_STOPS) {
                cli_err(CMD, "--stop: at most %d stop strings", MAX_STOPS);
                return 2;
            }
            char *c = strdup(v);
            if (!c) return 1;
            cli_unescape(c);
            if (!*c) {
                free(c);
                cli_err(CMD, "--stop: empty string");
                return 2;
            }
            a->stops[a->n_stops++] = c;
        } else if (!strcmp(s, "--bos")) {
            a->bos = 1;
        } else if (!strcmp(s, "--no-bos")) {
            a->bos = 0;
        } else if (!strcmp(s, "--no-echo")) {
            a->echo = 0;
        } else if (!strcmp(s, "--ids-out")) {
            a->ids_out = 1;
        } else {
            cli_err(CMD, "unknown option '%s' (see ggx run --help)", s);
            return 2;
        }
    }
    if (!!a->prompt + !!a->prompt_file + !!a->ids_arg > 1) {
        cli_err(CMD, "give only one of -p, -f and --ids");
        return 2;
    }
    return -1; /* go on */
}

/* The prompt as ids: BOS (if chosen) + the text's tokens, or the --ids verbatim. */
static int build_prompt(run_args *a, cli_model *cm, int32_t **ids_out, size_t *n_out,
                        char **text_out) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    size_t len = 0;
    *text_out = NULL;
    if (a->ids_arg) {
        int32_t *v;
        size_t nv;
        if (cli_parse_int_list(CMD, "--ids", a->ids_arg, 0, cm->n_vocab - 1, &v, &nv)) return 2;
        int bos = a->bos == 1;
        ids = malloc(sizeof *ids * (nv + 1));
        if (!ids) {
            free(v);
            goto nomem;
        }
        if (bos) ids[n++] = cm->bos_id;
        memcpy(ids + n, v, sizeof *ids * nv);
        n += nv;
        free(v);
        *ids_out = ids;
        *n_out = n;
        return 0;
    }
    if (a->prompt) {
        text = strdup(a->prompt);
        if (!text) goto nomem;
        len = strlen(text);
    } else {
        const char *path = a->prompt_file ? a->prompt_file : "-";
        if (!a->prompt_file && isatty(0)) {
            cli_err(CMD, "no prompt: give -p TEXT, -f FILE or --ids, or pipe text on stdin "
                         "(ggx run --help)");
            return 2;
        }
        if (cli_read_file(CMD, path, &text, &len)) return 1;
    }
    int bos = a->bos < 0 ? cm->add_bos : a->bos;
    if (bos && cm->bos_id < 0) {
        cli_err(CMD, "--bos: this model has no BOS or end-of-text token");
        free(text);
        return 2;
    }
    size_t cap = len + 2, total = 0;
    ids = malloc(sizeof *ids * cap);
    if (!ids) goto nomem;
    if (bos) ids[n++] = cm->bos_id;
    if (len) {
        ggx_status st = ggx_tokenizer_encode(cm->tok, text, len, ids + n, cap - n, &total);
        if (st == GGX_ERR_INVALID_ARG && total > cap - n) { /* more ids than bytes+1: retry */
            cap = total + n;
            int32_t *ni = realloc(ids, sizeof *ids * cap);
            if (!ni) goto nomem;
            ids = ni;
            st = ggx_tokenizer_encode(cm->tok, text, len, ids + n, cap - n, &total);
        }
        if (st != GGX_OK) {
            cli_err(CMD, "cannot tokenize the prompt: %s", ggx_last_error());
            free(ids);
            free(text);
            return 1;
        }
        n += total;
    }
    if (n == 0) {
        cli_err(CMD, "the prompt is empty: give some text, or --bos to start from BOS alone");
        free(ids);
        free(text);
        return 2;
    }
    *ids_out = ids;
    *n_out = n;
    *text_out = text;
    return 0;
nomem:
    free(ids);
    free(text);
    cli_err(CMD, "out of memory");
    return 1;
}

/* Prefill in chunks (one call for prompts up to PREFILL_CHUNK), with a progress bar for long
 * prompts. Leaves the last token's logits in `logits`. */
static int prefill(cli_model *cm, ggx_state *st, const int32_t *ids, size_t n, float *logits,
                   int quiet) {
    ggx_progress pb;
    int show = n > PREFILL_CHUNK;
    if (show) ggx_progress_begin(&pb, "prompt", n, quiet);
    for (size_t off = 0; off < n; off += PREFILL_CHUNK) {
        size_t m = n - off < PREFILL_CHUNK ? n - off : PREFILL_CHUNK;
        ggx_seq seq = {.state = st, .tokens = ids + off, .n_tokens = (int)m, .logits = logits};
        if (ggx_eval(cm->model, &seq, 1) != GGX_OK) {
            if (show) ggx_progress_end(&pb);
            cli_err(CMD, "prompt evaluation failed: %s", ggx_last_error());
            return 1;
        }
        if (show) ggx_progress_update(&pb, off + m);
    }
    if (show) ggx_progress_end(&pb);
    return 0;
}

static void emit(const char *s, size_t n, char *last) {
    if (!n) return;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    *last = s[n - 1];
}

int ggx_cmd_run(int argc, char **argv) {
    run_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(&a, argc, argv);
    cli_model cm;
    memset(&cm, 0, sizeof cm);
    ggx_state *st = NULL;
    ggx_sampler *smp = NULL;
    ggx_detok *dt = NULL;
    float *logits = NULL;
    int32_t *prompt = NULL, *gen = NULL;
    char *text = NULL;
    size_t n_prompt = 0;
    int n_gen = 0;
    cli_stopper stop;
    cli_stopper_init(&stop, (const char *const *)a.stops, a.n_stops);
    char last = '\n';
    if (rc >= 0) goto done;
    rc = 1;

    cli_finish_seed(&a.o);
    if (cli_model_open(&a.o, CMD, &cm)) goto done;
    int r = build_prompt(&a, &cm, &prompt, &n_prompt, &text);
    if (r) {
        rc = r;
        goto done;
    }
    a.o.sp.n_vocab_valid = cm.n_vocab_valid;
    if (ggx_sampler_create(&a.o.sp, &smp) != GGX_OK) {
        cli_err(CMD, "%s", ggx_last_error());
        rc = 2;
        goto done;
    }
    if (ggx_state_create(cm.model, &st) != GGX_OK || ggx_detok_create(cm.tok, &dt) != GGX_OK) {
        cli_err(CMD, "%s", ggx_last_error());
        goto done;
    }
    logits = malloc(sizeof(float) * (size_t)cm.n_vocab);
    int cap_gen = a.n_predict >= 0 ? a.n_predict : 1024;
    gen = malloc(sizeof(int32_t) * (size_t)(cap_gen + 1));
    if (!logits || !gen) {
        cli_err(CMD, "out of memory");
        goto done;
    }
    /* the prompt counts for the repeat penalty, as in llama.cpp */
    for (size_t i = 0; i < n_prompt; i++) ggx_sampler_accept(smp, prompt[i]);

    if (a.echo && text) emit(text, strlen(text), &last);

    double t0 = cli_time_s();
    if (prefill(&cm, st, prompt, n_prompt, logits, a.o.quiet)) goto done;
    double t_prefill = cli_time_s() - t0;

    double t1 = cli_time_s();
    char buf[1024];
    int end_reason = 0; /* 0 -n, 1 end-of-text, 2 stop string */
    while (a.n_predict < 0 || n_gen < a.n_predict) {
        int32_t id = ggx_sampler_sample(smp, logits, cm.n_vocab);
        ggx_sampler_accept(smp, id);
        if (n_gen == cap_gen) {
            int32_t *ng = realloc(gen, sizeof(int32_t) * (size_t)(cap_gen * 2 + 1));
            if (!ng) {
                cli_err(CMD, "out of memory");
                goto done;
            }
            gen = ng;
            cap_gen *= 2;
        }
        gen[n_gen++] = id;
        if (cli_is_stop_id(&cm, id)) {
            end_reason = 1;
            break;
        }
        size_t nb = 0;
        if (ggx_detok_push(dt, id, buf, sizeof buf, &nb) != GGX_OK) {
            cli_err(CMD, "detokenizer: %s", ggx_last_error());
            goto done;
        }
        const char *out;
        size_t n_out;
        if (cli_stopper_push(&stop, buf, nb, &out, &n_out)) {
            cli_err(CMD, "out of memory");
            goto done;
        }
        emit(out, n_out, &last);
        if (stop.hit) {
            end_reason = 2;
            break;
        }
        if (a.n_predict >= 0 && n_gen >= a.n_predict) break; /* no eval for an unused token */
        ggx_seq seq = {.state = st, .tokens = &id, .n_tokens = 1, .logits = logits};
        if (ggx_eval(cm.model, &seq, 1) != GGX_OK) {
            cli_err(CMD, "evaluation failed: %s", ggx_last_error());
            goto done;
        }
    }
    double t_decode = cli_time_s() - t1;
    if (!stop.hit) { /* what the detokenizer and the stop filter still hold */
        size_t nb = 0;
        const char *out;
        size_t n_out;
        if (ggx_detok_flush(dt, buf, sizeof buf, &nb) == GGX_OK && nb &&
            !cli_stopper_push(&stop, buf, nb, &out, &n_out))
            emit(out, n_out, &last);
        if (!stop.hit) {
            cli_stopper_flush(&stop, &out, &n_out);
            emit(out, n_out, &last);
        }
    }
    if (a.ids_out) {
        if (last != '\n') putchar('\n');
        for (int i = 0; i < n_gen; i++) printf(i ? ",%d" : "%d", gen[i]);
        putchar('\n');
    } else if (last != '\n' && isatty(1)) {
        putchar('\n'); /* leave the shell prompt on its own line */
        last = '\n';
    }
    fflush(stdout);
    if (!a.o.quiet) {
        /* decode speed: the n_gen - 1 evals after the first sample (the last id is not fed) */
        int n_dec = n_gen > 0 ? n_gen - 1 : 0;
        fprintf(stderr,
                "%s[%s | prompt %zu tok, %.1f tok/s | generated %d tok, %.1f tok/s | "
                "seed %llu | %s]\n",
                last != '\n' ? "\n" : "", ggx_model_desc(cm.model), n_prompt,
                t_prefill > 0 ? (double)n_prompt / t_prefill : 0.0, n_gen,
                t_decode > 0 && n_dec > 0 ? (double)n_dec / t_decode : 0.0,
                (unsigned long long)a.o.sp.seed,
                end_reason == 1 ? "end of text" : end_reason == 2 ? "stop string" : "length");
    }
    rc = 0;
done:
    if (rc == 1 && last != '\n') fputc('\n', stdout);
    for (int i = 0; i < a.n_stops; i++) free(a.stops[i]);
    cli_stopper_free(&stop);
    free(logits);
    free(prompt);
    free(gen);
    free(text);
    ggx_detok_free(dt);
    ggx_sampler_free(smp);
    ggx_state_free(st);
    cli_model_close(&cm);
    return rc;
}
