/*
 * cmd_perplexity.c — `ggx perplexity`: mean NLL of a text processed as one stream.
 *
 * The text is encoded WITHOUT BOS; the tokens go through the model in chunks of --ctx tokens
 * (the state carries over, so this equals one long prefill); the NLL of token t+1 under the
 * logits of position t is averaged over t = 0..N-2 (softmax over every logit row of lm_head).
 * With --kl-base BASE the base model runs in lockstep and KL(base || model) of the softmax
 * over the tokenizer's real vocabulary is reported per position (mean, p99) with the top-1
 * agreement. The last lines are `mean_nll = X` (then mean_kl/p99_kl/top1_agree with --kl-base).
 */
#include "cli_common.h"
#include "cmd.h"

#include "ggx.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx perplexity -m MODEL.ggx -f TEXT [--kl-base BASE.ggx] [--ctx N]\n"
            "                      [-t THREADS] [--backend cpu|cuda] [--quiet]\n"
            "\n"
            "Mean negative log-likelihood (natural log, per predicted token) of TEXT encoded\n"
            "without BOS and processed as one stream, and its perplexity.\n"
            "  --kl-base BASE  also run BASE (e.g. the f32 model) and print KL(base || model)\n"
            "                  per position: mean_kl, p99_kl, and top1_agree\n"
            "  --ctx N         tokens per eval call (default 512); the state carries over\n"
            "\n"
            "examples:\n"
            "  ggx perplexity -m tiny.ggx -f tests/data/xlstm-tiny/reference/val.txt\n"
            "  ggx perplexity -m tiny-q4_0.ggx -f val.txt --kl-base tiny-f32.ggx\n");
}

static int read_text(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    *out = cli_slurp(f, len);
    fclose(f);
    return *out ? 0 : -1;
}

/* log-softmax denominator over x[0..n): max + log(sum exp(x - max)) in double */
static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int ggx_cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *base_path = NULL, *backend = "cpu";
    int threads = 0, ctx = 512, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && has) model_path = argv[++i];
        else if (!strcmp(a, "-f") && has) text_path = argv[++i];
        else if (!strcmp(a, "--kl-base") && has) base_path = argv[++i];
        else if (!strcmp(a, "--ctx") && has) ctx = atoi(argv[++i]);
        else if (!strcmp(a, "-t") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--backend") && has) backend = argv[++i];
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else {
            fprintf(stderr, "ggx perplexity: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !text_path) {
        fprintf(stderr, "ggx perplexity: -m and -f are required\n");
        usage(stderr);
        return 2;
    }
    if (ctx < 1) {
        fprintf(stderr, "ggx perplexity: --ctx must be >= 1\n");
        return 2;
    }
    int rc = 1;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    ggx_model *m = NULL, *mb = NULL;
    ggx_state *st = NULL, *sb = NULL;
    ggx_tokenizer *tok = NULL;
    float *lg = NULL, *lb = NULL;
    double *kls = NULL;
    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = threads;
    mp.backend = backend;
    if (read_text(text_path, &text, &len) != 0) {
        fprintf(stderr, "ggx perplexity: cannot read %s: %s\n", text_path, strerror(errno));
        goto done;
    }
    if (ggx_model_load(model_path, &mp, &m) != GGX_OK || ggx_tokenizer_from_model(m, &tok) != GGX_OK ||
        ggx_state_create(m, &st) != GGX_OK) {
        fprintf(stderr, "ggx perplexity: %s\n", ggx_last_error());
        goto done;
    }
    if (base_path) {
        if (ggx_model_load(base_path, &mp, &mb) != GGX_OK || ggx_state_create(mb, &sb) != GGX_OK) {
            fprintf(stderr, "ggx perplexity: base model: %s\n", ggx_last_error());
            goto done;
        }
        if (ggx_model_n_vocab(mb) != ggx_model_n_vocab(m)) {
            fprintf(stderr, "ggx perplexity: base model has vocab %d, model %d\n",
                    ggx_model_n_vocab(mb), ggx_model_n_vocab(m));
            goto done;
        }
    }
    ids = malloc(sizeof(int32_t) * (len + 16));
    if (!ids || ggx_tokenizer_encode(tok, text, len, ids, len + 16, &n) != GGX_OK) {
        fprintf(stderr, "ggx perplexity: encoding %s: %s\n", text_path,
                ids ? ggx_last_error() : "out of memory");
        goto done;
    }
    if (n < 2) {
        fprintf(stderr, "ggx perplexity: %s has %zu tokens (need at least 2)\n", text_path, n);
        goto done;
    }
    const int V = ggx_model_n_vocab(m);
    int nv = ggx_tokenizer_n_vocab(tok);
    if (nv <= 0 || nv > V) nv = V;
    lg = malloc(sizeof(float) * (size_t)ctx * V);
    if (mb) {
        lb = malloc(sizeof(float) * (size_t)ctx * V);
        kls = malloc(sizeof(double) * n);
    }
    if (!lg || (mb && (!lb || !kls))) {
        fprintf(stderr, "ggx perplexity: out of memory\n");
        goto done;
    }
    double nll = 0, kl_sum = 0;
    size_t n_pred = 0, n_agree = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t off = 0; off < n; off += (size_t)ctx) {
        int cn = (int)(n - off < (size_t)ctx ? n - off : (size_t)ctx);
        ggx_seq q = {st, ids + off, cn, lg, 1};
        if (ggx_eval(m, &q, 1) != GGX_OK) {
            fprintf(stderr, "ggx perplexity: %s\n", ggx_last_error());
            goto done;
        }
        if (mb) {
            ggx_seq qb = {sb, ids + off, cn, lb, 1};
            if (ggx_eval(mb, &qb, 1) != GGX_OK) {
                fprintf(stderr, "ggx perplexity: base: %s\n", ggx_last_error());
                goto done;
            }
        }
        for (int t = 0; t < cn; t++) {
            size_t pos = off + (size_t)t;
            if (pos + 1 >= n) break;
            const float *row = lg + (size_t)t * V;
            nll += log_sum_exp(row, V) - row[ids[pos + 1]];
            if (mb) {
                const float *br = lb + (size_t)t * V;
                double lq = log_sum_exp(row, nv), lp = log_sum_exp(br, nv), kl = 0;
                int am = 0, bm = 0;
                for (int i = 0; i < nv; i++) {
                    double lpi = br[i] - lp;
                    kl += exp(lpi) * (lpi - (row[i] - lq));
                    if (row[i] > row[am]) am = i;
                    if (br[i] > br[bm]) bm = i;
                }
                kls[n_pred] = kl > 0 ? kl : 0;
                kl_sum += kls[n_pred];
                n_agree += am == bm;
            }
            n_pred++;
        }
        if (!quiet && isatty(2))
            fprintf(stderr, "\rggx perplexity: %zu/%zu tokens", off + (size_t)cn, n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (!quiet && isatty(2)) fprintf(stderr, "\n");
    double mean = nll / (double)n_pred;
    if (!quiet) printf("model: %s\ntokens: %zu (%zu predicted), %.1f tokens/s\n", ggx_model_desc(m), n, n_pred, (double)n / sec);
    printf("perplexity = %.4f\n", exp(mean));
    printf("mean_nll = %.6f\n", mean);
    if (mb) {
        qsort(kls, n_pred, sizeof *kls, cmp_double);
        size_t k99 = (size_t)ceil(0.99 * (double)n_pred);
        if (k99 > 0) k99--;
        printf("mean_kl = %.6g\n", kl_sum / (double)n_pred);
        printf("p99_kl = %.6g\n", kls[k99]);
        printf("top1_agree = %.6f\n", (double)n_agree / (double)n_pred);
    }
    rc = 0;
done:
    free(text);
    free(ids);
    free(lg);
    free(lb);
    free(kls);
    ggx_tokenizer_free(tok);
    ggx_state_free(st);
    ggx_state_free(sb);
    ggx_model_free(m);
    ggx_model_free(mb);
    return rc;
}
