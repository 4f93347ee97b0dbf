/*
 * cmd_logits.c — `ggx logits`: raw little-endian f32 logits [n_ids x vocab] of a token sequence,
 * for scripts that compare against other implementations. Prints nothing on stdout; errors go
 * to stderr; the output file appears only when everything succeeded.
 */
#include "cmd.h"

#include "ggx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx logits -m MODEL.ggx --ids 1,2,3 -o OUT.f32 [--step] [-t THREADS]\n"
            "                  [--backend cpu|cuda] [--quiet]\n"
            "\n"
            "Feeds the ids to a fresh state and writes the logits of every position as\n"
            "n_ids x vocab little-endian float32 to OUT (nothing else is printed).\n"
            "  --step         feed one token per eval call (the decode path) instead of one call\n"
            "  -t THREADS     CPU threads (default: physical cores)\n"
            "  --backend B    cpu (default) or cuda\n"
            "\n"
            "examples:\n"
            "  ggx logits -m tiny.ggx --ids 0,510,84,1180 -o prefill.f32\n"
            "  ggx logits -m tiny.ggx --ids 0,510,84,1180 --step -o step.f32 -t 1\n");
}

static int parse_ids(const char *s, int32_t **out, int *n_out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *t = realloc(ids, sizeof(int32_t) * (size_t)cap);
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(ids);
            return -1;
        }
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int ggx_cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL, *out_path = NULL, *backend = "cpu";
    int step = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && has) model_path = argv[++i];
        else if (!strcmp(a, "--ids") && has) ids_arg = argv[++i];
        else if (!strcmp(a, "-o") && has) out_path = argv[++i];
        else if (!strcmp(a, "-t") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--backend") && has) backend = argv[++i];
        else if (!strcmp(a, "--step")) step = 1;
        else if (!strcmp(a, "--quiet")) ;
        else {
            fprintf(stderr, "ggx logits: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !ids_arg || !out_path) {
        fprintf(stderr, "ggx logits: -m, --ids and -o are required\n");
        usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    int n = 0;
    if (parse_ids(ids_arg, &ids, &n) != 0) {
        fprintf(stderr, "ggx logits: --ids: expected comma-separated integers, got '%s'\n", ids_arg);
        return 2;
    }
    if (n < 1) {
        fprintf(stderr, "ggx logits: --ids: empty input\n");
        free(ids);
        return 2;
    }
    int rc = 1;
    ggx_model *m = NULL;
    ggx_state *st = NULL;
    float *lg = NULL;
    FILE *f = NULL;
    char *tmp = NULL;
    ggx_model_params mp = ggx_model_default_params();
    mp.n_threads = threads;
    mp.backend = backend;
    if (ggx_model_load(model_path, &mp, &m) != GGX_OK || ggx_state_create(m, &st) != GGX_OK) {
        fprintf(stderr, "ggx logits: %s\n", ggx_last_error());
        goto done;
    }
    const int V = ggx_model_n_vocab(m);
    lg = malloc(sizeof(float) * (size_t)n * V);
    if (!lg) {
        fprintf(stderr, "ggx logits: out of memory\n");
        goto done;
    }
    if (step) {
        for (int t = 0; t < n; t++) {
            ggx_seq q = {st, ids + t, 1, lg + (size_t)t * V, 0};
            if (ggx_eval(m, &q, 1) != GGX_OK) {
                fprintf(stderr, "ggx logits: %s\n", ggx_last_error());
                goto done;
            }
        }
    } else {
        ggx_seq q = {st, ids, n, lg, 1};
        if (ggx_eval(m, &q, 1) != GGX_OK) {
            fprintf(stderr, "ggx logits: %s\n", ggx_last_error());
            goto done;
        }
    }
    /* little-endian f32 (x86/ARM hosts are little-endian; refuse otherwise) */
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        fprintf(stderr, "ggx logits: big-endian hosts are not supported\n");
        goto done;
    }
    size_t plen = strlen(out_path) + 32;
    tmp = malloc(plen);
    snprintf(tmp, plen, "%s.tmp.%d", out_path, (int)getpid());
    f = fopen(tmp, "wb");
    if (!f || fwrite(lg, sizeof(float), (size_t)n * V, f) != (size_t)n * V || fclose(f) != 0) {
        fprintf(stderr, "ggx logits: writing %s: %s\n", out_path, strerror(errno));
        f = NULL;
        remove(tmp);
        goto done;
    }
    f = NULL;
    if (rename(tmp, out_path) != 0) {
        fprintf(stderr, "ggx logits: writing %s: %s\n", out_path, strerror(errno));
        remove(tmp);
        goto done;
    }
    rc = 0;
done:
    if (f) fclose(f);
    free(tmp);
    free(lg);
    free(ids);
    ggx_state_free(st);
    ggx_model_free(m);
    return rc;
}
