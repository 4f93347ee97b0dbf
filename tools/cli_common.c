/* cli_common.c — shared helpers of ggx run / chat / bench (see cli_common.h). */
#include "cli_common.h"

#include "ggxfile.h"
#include "keys.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef GGX_DEFAULT_MODEL_PATH
#define GGX_DEFAULT_MODEL_PATH ""
#endif

void cli_err(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "ggx %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double cli_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ===================================================================== numbers ============= */

int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_err(cmd, "%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        cli_err(cmd, "%s: expected a number, got '%s'", opt, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') {
        cli_err(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) {
        cli_err(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_int_list(const char *cmd, const char *opt, const char *s, long lo, long hi,
                       int32_t **out, size_t *n_out) {
    size_t cap = 16, n = 0;
    int32_t *v = malloc(sizeof *v * cap);
    const char *p = s;
    if (!v) goto nomem;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < lo || x > hi) {
            cli_err(cmd, "%s: item %zu: expected an integer in [%ld, %ld] in '%.40s'", opt, n + 1,
                    lo, hi, s);
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, sizeof *v * (cap *= 2));
            if (!nv) goto nomem;
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == ',') p++;
        else if (*p) {
            cli_err(cmd, "%s: unexpected '%c' in '%.40s' (want comma-separated integers)", opt, *p,
                    s);
            free(v);
            return -1;
        }
    }
    if (n == 0) {
        cli_err(cmd, "%s: empty list", opt);
        free(v);
        return -1;
    }
    *out = v;
    *n_out = n;
    return 0;
nomem:
    free(v);
    cli_err(cmd, "out of memory");
    return -1;
}

const char *cli_optarg(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_err(cmd, "option %s needs a value (see ggx %s --help)", argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}

/* ===================================================================== options ============= */

void cli_opts_init(cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    o->sp = ggx_sampler_default_params();
}

int cli_parse_common(cli_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(v = cli_optarg(cmd, argc, argv, i))) return -1;
        o->model_path = v;
        return 1;
    }
    if (!strcmp(a, "--backend")) {
        if (!(v = cli_optarg(cmd, argc, argv, i))) return -1;
        if (strcmp(v, "cpu") && strcmp(v, "cuda")) {
            cli_err(cmd, "--backend: expected cpu or cuda, got '%s'", v);
            return -1;
        }
        o->backend = v;
        return 1;
    }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = cli_optarg(cmd, argc, argv, i))) return -1;
        return cli_parse_int(cmd, a, v, 1, 1024, &o->n_threads) ? -1 : 1;
    }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        o->quiet = 1;
        return 1;
    }
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose++;
        return 1;
    }
    return 0;
}

int cli_parse_sampling(cli_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    ggx_sampler_params *p = &o->sp;
#define VAL()                                                                                  \
    do {                                                                                       \
        if (!(v = cli_optarg(cmd, argc, argv, i))) return -1;                                 \
    } while (0)
    if (!strcmp(a, "--temp") || !strcmp(a, "--temperature")) {
        VAL();
        if (cli_parse_float(cmd, a, v, &p->temperature)) return -1;
        if (p->temperature < 0) {
            cli_err(cmd, "%s: must be >= 0 (0 = greedy)", a);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--top-k")) {
        VAL();
        return cli_parse_int(cmd, a, v, 0, INT_MAX, &p->top_k) ? -1 : 1;
    }
    if (!strcmp(a, "--top-p")) {
        VAL();
        if (cli_parse_float(cmd, a, v, &p->top_p)) return -1;
        if (!(p->top_p > 0 && p->top_p <= 1)) {
            cli_err(cmd, "%s: must be in (0, 1] (1 = off)", a);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--min-p")) {
        VAL();
        if (cli_parse_float(cmd, a, v, &p->min_p)) return -1;
        if (!(p->min_p >= 0 && p->min_p <= 1)) {
            cli_err(cmd, "%s: must be in [0, 1] (0 = off)", a);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--repeat-penalty")) {
        VAL();
        if (cli_parse_float(cmd, a, v, &p->repeat_penalty)) return -1;
        if (!(p->repeat_penalty > 0)) {
            cli_err(cmd, "%s: must be > 0 (1 = off)", a);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--repeat-last-n")) {
        VAL();
        return cli_parse_int(cmd, a, v, 0, 1 << 20, &p->repeat_last_n) ? -1 : 1;
    }
    if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        VAL();
        if (cli_parse_u64(cmd, a, v, &p->seed)) return -1;
        o->seed_given = 1;
        return 1;
    }
#undef VAL
    return 0;
}

void cli_help_common(FILE *out) {
    fprintf(out,
            "  -m, --model FILE       model file (.ggx); default: $GGX_MODEL, else the built-in\n"
            "                         tiny Shakespeare model (see docs/cli.md)\n"
            "  -t, --threads N        CPU threads (default: physical cores)\n"
            "      --backend B        cpu (default) or cuda\n"
            "  -q, --quiet            no progress bar, no statistics on stderr\n"
            "  -v, --verbose          log what the library does (repeat for more)\n"
            "  -h, --help             this help\n");
}

void cli_help_sampling(FILE *out) {
    ggx_sampler_params d = ggx_sampler_default_params();
    fprintf(out,
            "sampling (applied in this order; see docs/cli.md):\n"
            "      --repeat-penalty X penalize ids seen in the window: positive logits / X,\n"
            "                         negative * X (default %.2f, 1 = off)\n"
            "      --repeat-last-n N  penalty window in tokens (default %d, 0 = off)\n"
            "      --top-k N          keep the N most likely ids (default %d, 0 = off)\n"
            "      --top-p P          keep the smallest set with probability mass >= P\n"
            "                         (default %.2f, 1 = off)\n"
            "      --min-p P          drop ids less likely than P x the best one (default %.2f,\n"
            "                         0 = off)\n"
            "      --temp T           temperature (default %.2f); 0 = greedy (the most likely id,\n"
            "                         the lowest id among ties)\n"
            "  -s, --seed N           random seed (default: random, printed with the stats);\n"
            "                         the same seed and settings give the same output\n",
            (double)d.repeat_penalty, d.repeat_last_n, d.top_k, (double)d.top_p, (double)d.min_p,
            (double)d.temperature);
}

void cli_finish_seed(cli_opts *o) {
    if (o->seed_given) return;
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    if (!s) s = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    o->sp.seed = s & 0xffffffffull; /* short enough to retype */
}

/* ===================================================================== model ============== */

static int file_exists(const char *p) {
    struct stat st;
    return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_model_next_to_binary(char *buf, size_t cap) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = 0;
    snprintf(buf, cap, "%s/models/default.ggx", exe);
    return 0;
}

int cli_resolve_model(const char *cmd, const char *m_arg, char *buf, size_t cap) {
    /* "-m default" names the built-in model (unless a file of that name exists) */
    int builtin = m_arg && !strcmp(m_arg, "default") && !file_exists(m_arg);
    if (m_arg && !builtin) {
        snprintf(buf, cap, "%s", m_arg);
        return 0; /* a missing -m file is reported by the loader with its own reason */
    }
    const char *env = getenv("GGX_MODEL");
    if (!builtin && env && *env) {
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    if (cli_model_next_to_binary(buf, cap) == 0 && file_exists(buf)) return 0;
    if (file_exists(GGX_DEFAULT_MODEL_PATH)) {
        snprintf(buf, cap, "%s", GGX_DEFAULT_MODEL_PATH);
        return 0;
    }
    cli_err(cmd,
            "no model: give -m FILE or set GGX_MODEL; the built-in default model (%s) is "
            "missing. Build it with 'cmake --build BUILD_DIR' (it is converted from "
            "tests/data/xlstm-tiny at build time) or make one with 'ggx convert'",
            *GGX_DEFAULT_MODEL_PATH ? GGX_DEFAULT_MODEL_PATH : "models/default.ggx");
    return -1;
}

/* The config's eos counts as end-of-text only if the tokenizer marks it special (the 7B's
 * config says eos = 2, which is "!" in GPT-NeoX: xlstm-spec §7). Reads the tokenizer.json blob
 * stored in the .ggx; without one, only the tokenizer's <|endoftext|> ends generation. */
static int eos_is_special(const char *path, int eos) {
    ggx_file *f = NULL;
    const void *blob;
    uint64_t len;
    int special = 0;
    if (ggx_file_open(path, &f) != GGX_OK) return 0;
    if (ggx_file_get_blob(f, GGX_KEY_TOK_JSON, &blob, &len) == GGX_OK && len < (1ull << 31)) {
        cJSON *j = cJSON_ParseWithLength(blob, (size_t)len);
        cJSON *added = j ? cJSON_GetObjectItemCaseSensitive(j, "added_tokens") : NULL;
        cJSON *t;
        cJSON_ArrayForEach(t, added) {
            cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
            cJSON *sp = cJSON_GetObjectItemCaseSensitive(t, "special");
            if (cJSON_IsNumber(id) && id->valueint == eos && cJSON_IsTrue(sp)) special = 1;
        }
        cJSON_Delete(j);
    }
    ggx_file_close(f);
    return special;
}

char *cli_read_chat_template(const char *path) {
    ggx_file *f = NULL;
    char *s = NULL;
    if (ggx_file_open(path, &f) != GGX_OK) return NULL;
    if (ggx_file_find_kv(f, GGX_KEY_TOK_CHAT_TMPL) &&
        ggx_file_get_str(f, GGX_KEY_TOK_CHAT_TMPL, &s) != GGX_OK)
        s = NULL;
    ggx_file_close(f);
    return s;
}

int cli_model_open(const cli_opts *o, const char *cmd, cli_model *cm) {
    memset(cm, 0, sizeof *cm);
    if (cli_resolve_model(cmd, o->model_path, cm->path, sizeof cm->path)) return 1;
    if (o->verbose) ggx_set_log_level(o->verbose);

    ggx_model_params mp = ggx_model_default_params();
    mp.backend = o->backend;
    mp.n_threads = o->n_threads;
    mp.progress = !o->quiet;
    double t0 = cli_time_s();
    if (ggx_model_load(cm->path, &mp, &cm->model) != GGX_OK) {
        cli_err(cmd, "cannot load model %s: %s", cm->path, ggx_last_error());
        goto fail;
    }
    cm->load_s = cli_time_s() - t0;
    if (ggx_tokenizer_from_model(cm->model, &cm->tok) != GGX_OK) {
        cli_err(cmd, "model %s: no usable tokenizer: %s", cm->path, ggx_last_error());
        goto fail;
    }
    cm->n_vocab = ggx_model_n_vocab(cm->model);
    cm->n_vocab_valid = ggx_tokenizer_n_vocab(cm->tok);
    if (cm->n_vocab_valid <= 0 || cm->n_vocab_valid > cm->n_vocab) cm->n_vocab_valid = cm->n_vocab;

    int eot = ggx_tokenizer_eot_id(cm->tok);
    int eos = ggx_model_eos_id(cm->model);
    if (eot >= 0) cm->stop_ids[cm->n_stop_ids++] = eot;
    if (eos >= 0 && eos != eot && eos_is_special(cm->path, eos))
        cm->stop_ids[cm->n_stop_ids++] = eos;
    cm->bos_id = ggx_model_bos_id(cm->model);
    if (cm->bos_id < 0 || cm->bos_id >= cm->n_vocab) cm->bos_id = eot;
    cm->add_bos = ggx_model_add_bos_default(cm->model) && cm->bos_id >= 0;
    cm->chat_template = cli_read_chat_template(cm->path);
    return 0;
fail:
    cli_model_close(cm);
    return 1;
}

void cli_model_close(cli_model *cm) {
    ggx_tokenizer_free(cm->tok);
    ggx_model_free(cm->model);
    free(cm->chat_template);
    memset(cm, 0, sizeof *cm);
}

int cli_is_stop_id(const cli_model *cm, int32_t id) {
    for (int i = 0; i < cm->n_stop_ids; i++)
        if (cm->stop_ids[i] == id) return 1;
    return 0;
}

void cli_unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            switch (*r) {
            case 'n': *w++ = '\n'; break;
            case 't': *w++ = '\t'; break;
            case 'r': *w++ = '\r'; break;
            case '\\': *w++ = '\\'; break;
            default: *w++ = '\\'; *w++ = *r; break;
            }
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

/* ===================================================================== files ============== */

char *cli_slurp(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

int cli_read_file(const char *cmd, const char *path, char **out, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        cli_err(cmd, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *b = cli_slurp(f, len);
    if (!b) {
        if (ferror(f)) cli_err(cmd, "reading %s: %s", path, strerror(errno));
        else cli_err(cmd, "out of memory reading %s", path);
    }
    if (f != stdin) fclose(f);
    if (!b) return -1;
    *out = b;
    return 0;
}

/* ===================================================================== stop strings ======= */

void cli_stopper_init(cli_stopper *s, const char *const *stops, int n_stops) {
    memset(s, 0, sizeof *s);
    s->stops = stops;
    s->n_stops = n_stops;
}

void cli_stopper_free(cli_stopper *s) {
    free(s->pend);
    free(s->outb);
    memset(s, 0, sizeof *s);
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = need * 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

int cli_stopper_push(cli_stopper *s, const char *text, size_t n, const char **out,
                     size_t *n_out) {
    *out = "";
    *n_out = 0;
    if (s->hit) return 0;
    if (grow(&s->pend, &s->cap, s->n_pend + n + 1)) return -1;
    memcpy(s->pend + s->n_pend, text, n);
    s->n_pend += n;

    /* the earliest complete stop string: release the text before it, drop the rest */
    size_t first = s->n_pend;
    for (int k = 0; k < s->n_stops; k++) {
        size_t L = strlen(s->stops[k]);
        if (!L || L > s->n_pend) continue;
        for (size_t i = 0; i + L <= s->n_pend && i < first; i++)
            if (!memcmp(s->pend + i, s->stops[k], L)) {
                first = i;
                s->hit_index = k;
                break;
            }
    }
    size_t rel, hold = 0;
    if (first < s->n_pend) {
        s->hit = 1;
        rel = first;
    } else {
        /* hold back the longest suffix that is a proper prefix of a stop string */
        for (int k = 0; k < s->n_stops; k++) {
            size_t L = strlen(s->stops[k]);
            for (size_t h = L > 0 ? L - 1 : 0; h > hold; h--)
                if (h <= s->n_pend && !memcmp(s->pend + s->n_pend - h, s->stops[k], h)) {
                    hold = h;
                    break;
                }
        }
        rel = s->n_pend - hold;
    }
    if (grow(&s->outb, &s->cap_out, rel + 1)) return -1;
    memcpy(s->outb, s->pend, rel);
    s->outb[rel] = 0;
    if (s->hit) {
        s->n_pend = 0;
    } else {
        memmove(s->pend, s->pend + rel, hold);
        s->n_pend = hold;
    }
    *out = s->outb;
    *n_out = rel;
    return 0;
}

void cli_stopper_flush(cli_stopper *s, const char **out, size_t *n_out) {
    *out = s->pend ? s->pend : "";
    *n_out = s->hit ? 0 : s->n_pend;
    s->n_pend = 0;
}
