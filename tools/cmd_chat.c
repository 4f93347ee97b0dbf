/*
 * cmd_chat.c — `ggx chat`: an interactive conversation whose memory is the recurrent state.
 *
 * Each turn feeds only the new text (the user's message wrapped in the chat template) into the
 * state that already holds the whole conversation, then samples the reply token by token. No
 * history is re-processed: /stats shows the tokens processed this turn next to the total.
 *
 * Chat template (docs/cli.md): a string with one "{msg}" placeholder, e.g. the default
 * "User: {msg}\nAssistant:". The reply stops at end-of-text, at "\n" + the part before {msg}
 * (here "\nUser:"), at any --stop string, after -n tokens, or on Ctrl-C. The model's
 * `tokenizer.chat_template` is used when it is in this format; Jinja templates are not.
 * The built-in tiny Shakespeare model knows only play text, so with it the default is raw
 * continuation ("{msg}") and replies stop at a blank line ("\n\n").
 *
 * /save FILE writes the state with an `extra` blob (see save_extra) holding the sampler's RNG
 * position and penalty window, the ids fed so far and how the last reply ended, so /load FILE
 * continues exactly as the uninterrupted session would have (same seed, same text).
 */
#include "cli_common.h"
#include "cmd.h"

#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef GGX_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

#define CMD "chat"
#define MAX_STOPS 16
#define EXTRA_MAGIC "GGXCHAT1"

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* ===================================================================== help ============== */

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx chat [-m FILE] [options]\n"
            "\n"
            "Interactive chat. The model's recurrent state carries the conversation: every turn\n"
            "processes only your new message, however long the conversation is.\n"
            "\n"
            "options:\n"
            "  -n, --n-predict N      at most N tokens per reply (default 256)\n"
            "      --template STR     chat template with one {msg}, C escapes allowed\n"
            "                         (default: the model's tokenizer.chat_template, else\n"
            "                         \"User: {msg}\\nAssistant:\"; the built-in model: --raw,\n"
            "                         replies ending at a blank line)\n"
            "      --raw              no template: the model continues your text as is\n"
            "      --stop STR         also end a reply at STR (repeatable)\n"
            "      --bos / --no-bos   start the conversation with BOS or not\n"
            "      --history FILE     keep the input history (arrow keys) in FILE across\n"
            "                         sessions (default: this session only)\n");
    cli_help_sampling(out);
    fprintf(out, "common:\n");
    cli_help_common(out);
    fprintf(out,
            "\nin the chat:\n"
            "  a line ending in \\ continues on the next line; \"\"\" on its own line starts and\n"
            "  ends a multi-line block; Ctrl-C stops a reply; Ctrl-D or /quit leaves.\n"
            "  /save FILE  /load FILE  /reset  /stats  /help  /quit\n"
            "\nexamples:\n"
            "  ggx chat                                   # built-in Shakespeare model, raw mode\n"
            "  ggx chat -m xlstm-7b-q4_0.ggx --temp 0.7 --seed 1\n"
            "  ggx chat --template \"Q: {msg}\\nA:\" --stop \"\\n\\n\"\n");
}

static void chat_help(void) {
    printf("commands:\n"
           "  /save FILE   save the conversation (recurrent state + sampler + history)\n"
           "  /load FILE   restore a saved conversation (made with the same model)\n"
           "  /reset       start a new conversation\n"
           "  /stats       tokens processed this turn and in total, speeds\n"
           "  /help        this list\n"
           "  /quit        leave (also Ctrl-D)\n"
           "input: end a line with \\ to continue it; \"\"\" on its own line starts/ends a block;\n"
           "a message starting with / is written //...; Ctrl-C stops the current reply.\n");
}

/* ===================================================================== session =========== */

enum { END_FRESH = 0, END_EOT = 1, END_TMPL_STOP = 2, END_OTHER = 3 };

typedef struct chat {
    cli_opts o;
    cli_model cm;
    ggx_state *st;
    ggx_sampler *smp;
    float *logits;        /* [n_vocab] */
    int n_predict;
    int bos;              /* -1 model default */
    /* template: pre + msg + post; tmpl_stop = "\n" + pre without surrounding blanks */
    char *pre, *post, *tmpl_stop;
    const char *stops[MAX_STOPS + 1];
    int n_stops;
    char *user_stops[MAX_STOPS];
    int n_user_stops;
    /* conversation */
    int32_t *hist;        /* every id fed into the state, in order */
    size_t n_hist, cap_hist;
    int last_end;
    uint64_t n_turns;
    /* last turn */
    size_t turn_prompt, turn_gen;
    double turn_prefill_s, turn_decode_s;
} chat;

/* Split a template at its one {msg}; derive the stop string. 0 ok, -1 not usable. */
static int set_template(chat *c, const char *t) {
    const char *m = strstr(t, "{msg}");
    if (!m || strstr(m + 5, "{msg}") || strstr(t, "{%") || strstr(t, "{{")) return -1;
    free(c->pre);
    free(c->post);
    free(c->tmpl_stop);
    c->pre = strndup(t, (size_t)(m - t));
    c->post = strdup(m + 5);
    c->tmpl_stop = NULL;
    if (!c->pre || !c->post) return -1;
    /* "User: " -> "\nUser:" : the reply ends where the model starts the user's next turn */
    const char *a = c->pre, *b = c->pre + strlen(c->pre);
    while (*a == '\n' || *a == ' ' || *a == '\t') a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n')) b--;
    if (b > a) {
        c->tmpl_stop = malloc((size_t)(b - a) + 2);
        if (!c->tmpl_stop) return -1;
        c->tmpl_stop[0] = '\n';
        memcpy(c->tmpl_stop + 1, a, (size_t)(b - a));
        c->tmpl_stop[b - a + 1] = 0;
    }
    return 0;
}

static int hist_push(chat *c, const int32_t *ids, size_t n) {
    if (c->n_hist + n > c->cap_hist) {
        size_t nc = (c->n_hist + n) * 2 + 64;
        int32_t *nh = realloc(c->hist, sizeof *nh * nc);
        if (!nh) return -1;
        c->hist = nh;
        c->cap_hist = nc;
    }
    memcpy(c->hist + c->n_hist, ids, sizeof *ids * n);
    c->n_hist += n;
    return 0;
}

/* Feed ids into the state (and the penalty window, and the history). */
static int feed(chat *c, const int32_t *ids, size_t n) {
    if (!n) return 0;
    ggx_seq seq = {.state = c->st, .tokens = ids, .n_tokens = (int)n, .logits = c->logits};
    if (ggx_eval(c->cm.model, &seq, 1) != GGX_OK) {
        cli_err(CMD, "evaluation failed: %s", ggx_last_error());
        return -1;
    }
    for (size_t i = 0; i < n; i++) ggx_sampler_accept(c->smp, ids[i]);
    if (hist_push(c, ids, n)) {
        cli_err(CMD, "out of memory");
        return -1;
    }
    return 0;
}

static void reset_conversation(chat *c) {
    ggx_state_reset(c->st);
    ggx_sampler_reset(c->smp);
    c->n_hist = 0;
    c->last_end = END_FRESH;
    c->n_turns = 0;
    c->turn_prompt = c->turn_gen = 0;
    c->turn_prefill_s = c->turn_decode_s = 0;
}

static void emit(const char *s, size_t n) {
    if (!n) return;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

/* One turn: wrap the message, feed it, stream the reply. 0 ok, -1 fatal. */
static int turn(chat *c, const char *msg) {
    /* the text to feed: how the last reply ended decides the joint */
    const char *sep = "";
    const char *pre = c->pre;
    if (c->last_end == END_TMPL_STOP && c->tmpl_stop) {
        /* the state already holds "\nUser:"; feed only what follows it in `pre` */
        const char *p = strstr(c->pre, c->tmpl_stop + 1);
        if (p) pre = p + strlen(c->tmpl_stop + 1);
    } else if (c->last_end == END_OTHER && *c->pre) {
        sep = "\n";
    }
    size_t len = strlen(sep) + strlen(pre) + strlen(msg) + strlen(c->post);
    char *text = malloc(len + 1);
    int32_t *ids = malloc(sizeof *ids * (len + 2));
    ggx_detok *dt = NULL;
    cli_stopper stop;
    cli_stopper_init(&stop, c->stops, c->n_stops);
    int rc = -1;
    if (!text || !ids) {
        cli_err(CMD, "out of memory");
        goto done;
    }
    snprintf(text, len + 1, "%s%s%s%s", sep, pre, msg, c->post);
    size_t n = 0, total = 0;
    if (c->n_hist == 0) {
        int bos = c->bos < 0 ? c->cm.add_bos : c->bos;
        if (bos && c->cm.bos_id >= 0) ids[n++] = c->cm.bos_id;
    }
    if (len) {
        ggx_status s = ggx_tokenizer_encode(c->cm.tok, text, len, ids + n, len + 2 - n, &total);
        if (s == GGX_ERR_INVALID_ARG && total > len + 2 - n) {
            int32_t *ni = realloc(ids, sizeof *ids * (total + n));
            if (!ni) goto done;
            ids = ni;
            s = ggx_tokenizer_encode(c->cm.tok, text, len, ids + n, total, &total);
        }
        if (s != GGX_OK) {
            cli_err(CMD, "cannot tokenize: %s", ggx_last_error());
            rc = 0; /* the conversation is unchanged; go on */
            goto done;
        }
        n += total;
    }
    if (n == 0) {
        rc = 0;
        goto done;
    }
    if (ggx_detok_create(c->cm.tok, &dt) != GGX_OK) {
        cli_err(CMD, "%s", ggx_last_error());
        goto done;
    }

    g_interrupted = 0;
    double t0 = cli_time_s();
    if (feed(c, ids, n)) goto done;
    c->turn_prefill_s = cli_time_s() - t0;
    c->turn_prompt = n;
    c->turn_gen = 0;

    double t1 = cli_time_s();
    char buf[1024];
    int end = END_OTHER;
    for (int k = 0; c->n_predict < 0 || k < c->n_predict; k++) {
        if (g_interrupted) break;
        int32_t id = ggx_sampler_sample(c->smp, c->logits, c->cm.n_vocab);
        /* every sampled id is fed, so the state always equals the history (one extra eval at
         * the end of a reply, whose logits start the next turn only through the state) */
        if (feed(c, &id, 1)) goto done;
        c->turn_gen++;
        if (cli_is_stop_id(&c->cm, id)) {
            end = END_EOT;
            break;
        }
        size_t nb = 0;
        const char *out;
        size_t n_out;
        if (ggx_detok_push(dt, id, buf, sizeof buf, &nb) != GGX_OK) {
            cli_err(CMD, "detokenizer: %s", ggx_last_error());
            goto done;
        }
        if (cli_stopper_push(&stop, buf, nb, &out, &n_out)) goto done;
        emit(out, n_out);
        if (stop.hit) {
            /* the template's stop string changes how the next turn is joined */
            end = c->tmpl_stop && stop.hit_index == 0 ? END_TMPL_STOP : END_OTHER;
            break;
        }
    }
    c->turn_decode_s = cli_time_s() - t1;
    if (!stop.hit) {
        size_t nb = 0;
        const char *out;
        size_t n_out;
        if (ggx_detok_flush(dt, buf, sizeof buf, &nb) == GGX_OK && nb &&
            !cli_stopper_push(&stop, buf, nb, &out, &n_out))
            emit(out, n_out);
        if (!stop.hit) {
            cli_stopper_flush(&stop, &out, &n_out);
            emit(out, n_out);
        }
    }
    if (g_interrupted) {
        printf(" [stopped]");
        g_interrupted = 0;
    }
    printf("\n");
    fflush(stdout);
    c->last_end = end;
    c->n_turns++;
    rc = 0;
done:
    cli_stopper_free(&stop);
    ggx_detok_free(dt);
    free(text);
    free(ids);
    return rc;
}

/* ===================================================================== save / load ========= */
/* extra blob: "GGXCHAT1" | u32 last_end | u32 sampler_len | u64 n_turns | u64 n_hist |
 *             sampler state [sampler_len] | i32 hist[n_hist]                (host order) */

static int save(chat *c, const char *path) {
    size_t sl = ggx_sampler_state_size(c->smp);
    size_t len = 8 + 4 + 4 + 8 + 8 + sl + 4 * c->n_hist;
    unsigned char *b = malloc(len), *p = b;
    if (!b) {
        cli_err(CMD, "out of memory");
        return -1;
    }
    uint32_t le = (uint32_t)c->last_end, sl32 = (uint32_t)sl;
    uint64_t nt = c->n_turns, nh = c->n_hist;
    memcpy(p, EXTRA_MAGIC, 8), p += 8;
    memcpy(p, &le, 4), p += 4;
    memcpy(p, &sl32, 4), p += 4;
    memcpy(p, &nt, 8), p += 8;
    memcpy(p, &nh, 8), p += 8;
    ggx_sampler_state_get(c->smp, p, sl);
    p += sl;
    if (c->n_hist) memcpy(p, c->hist, 4 * c->n_hist);
    ggx_status s = ggx_state_save(c->st, path, b, len);
    free(b);
    if (s != GGX_OK) {
        cli_err(CMD, "/save %s: %s", path, ggx_last_error());
        return -1;
    }
    return 0;
}

static int load(chat *c, const char *path) {
    ggx_state *ns = NULL;
    void *extra = NULL;
    size_t len = 0;
    int rc = -1;
    if (ggx_state_create(c->cm.model, &ns) != GGX_OK) {
        cli_err(CMD, "/load: %s", ggx_last_error());
        return -1;
    }
    if (ggx_state_load(ns, path, &extra, &len) != GGX_OK) {
        cli_err(CMD, "/load %s: %s", path, ggx_last_error());
        goto done;
    }
    const unsigned char *p = extra;
    uint32_t le, sl;
    uint64_t nt, nh;
    if (!extra || len < 32 || memcmp(p, EXTRA_MAGIC, 8)) {
        cli_err(CMD, "/load %s: not a ggx chat session (a bare state file?)", path);
        goto done;
    }
    memcpy(&le, p + 8, 4);
    memcpy(&sl, p + 12, 4);
    memcpy(&nt, p + 16, 8);
    memcpy(&nh, p + 24, 8);
    if (le > END_OTHER || sl > len - 32 || nh > (len - 32 - sl) / 4 ||
        32 + sl + 4 * nh != len) {
        cli_err(CMD, "/load %s: damaged chat session data", path);
        goto done;
    }
    const int32_t *ids = (const int32_t *)(const void *)(p + 32 + sl);
    for (uint64_t i = 0; i < nh; i++) {
        int32_t id;
        memcpy(&id, (const unsigned char *)ids + 4 * i, 4);
        if (id < 0 || id >= c->cm.n_vocab) {
            cli_err(CMD, "/load %s: history id %d out of range", path, id);
            goto done;
        }
    }
    /* all checked: commit (sampler first, it can still refuse) */
    if (ggx_sampler_state_set(c->smp, p + 32, sl) != GGX_OK) {
        cli_err(CMD, "/load %s: %s", path, ggx_last_error());
        goto done;
    }
    c->n_hist = 0;
    if (nh) {
        int32_t *tmp = malloc(4 * nh);
        if (!tmp) goto done;
        memcpy(tmp, p + 32 + sl, 4 * nh);
        int bad = hist_push(c, tmp, nh);
        free(tmp);
        if (bad) goto done;
    }
    ggx_state *old = c->st;
    c->st = ns;
    ns = old;
    c->last_end = (int)le;
    c->n_turns = nt;
    rc = 0;
done:
    free(extra);
    ggx_state_free(ns);
    return rc;
}

/* ===================================================================== input ============= */

/* One raw line without its newline (malloc'ed), NULL at end of input. */
static char *read_line(const char *prompt, int tty) {
#ifdef GGX_HAVE_LIBEDIT
    if (tty) {
        for (;;) {
            g_interrupted = 0;
            char *l = readline(prompt);
            if (!l && g_interrupted) { /* Ctrl-C: drop the line, prompt again (not EOF) */
                g_interrupted = 0;
                fputs("^C\n", stdout);
                continue;
            }
            if (l && *l) add_history(l);
            return l;
        }
    }
#endif
    if (tty) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    size_t cap = 256, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    int ch;
    for (;;) {
        ch = getchar();
        if (ch == EOF && g_interrupted && tty) { /* Ctrl-C without libedit: drop the line */
            g_interrupted = 0;
            clearerr(stdin);
            n = 0;
            fputs("^C\n", stdout);
            fputs(prompt, stdout);
            fflush(stdout);
            continue;
        }
        if (ch == EOF || ch == '\n') break;
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
        b[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) {
        free(b);
        return NULL;
    }
    if (n && b[n - 1] == '\r') n--;
    b[n] = 0;
    return b;
}

static int append(char **acc, size_t *n, const char *s, int newline) {
    size_t l = strlen(s);
    char *na = realloc(*acc, *n + l + 2);
    if (!na) return -1;
    *acc = na;
    if (newline && *n) na[(*n)++] = '\n';
    memcpy(na + *n, s, l);
    *n += l;
    na[*n] = 0;
    return 0;
}

/* One message: a line, lines joined by trailing backslashes, or a """ block. NULL at EOF. */
static char *read_message(int tty) {
    char *acc = NULL;
    size_t n = 0;
    char *l = read_line("> ", tty);
    if (!l) return NULL;
    if (!strcmp(l, "\"\"\"")) {
        free(l);
        acc = strdup("");
        for (;;) {
            l = read_line("... ", tty);
            if (!l || !strcmp(l, "\"\"\"")) break;
            if (append(&acc, &n, l, n > 0 || acc[0])) break;
            free(l);
        }
        free(l);
        return acc;
    }
    for (;;) {
        size_t L = strlen(l);
        int cont = L > 0 && l[L - 1] == '\\';
        if (cont) l[L - 1] = 0;
        if (append(&acc, &n, l, 0) || (cont && append(&acc, &n, "\n", 0))) {
            free(l);
            break;
        }
        free(l);
        if (!cont) break;
        l = read_line("... ", tty);
        if (!l) break;
    }
    return acc;
}

/* ===================================================================== main ============== */

static void print_stats(chat *c) {
    printf("turn:  %zu tokens processed (%zu of your message + template, %zu generated)\n"
           "       prefill %.1f tok/s, decode %.1f tok/s\n"
           "total: %zu tokens in the state over %llu turns; state %.2f MB, constant in length\n"
           "model: %s (%s), seed %llu\n",
           c->turn_prompt + c->turn_gen, c->turn_prompt, c->turn_gen,
           c->turn_prefill_s > 0 ? (double)c->turn_prompt / c->turn_prefill_s : 0.0,
           c->turn_decode_s > 0 && c->turn_gen ? (double)c->turn_gen / c->turn_decode_s : 0.0,
           c->n_hist, (unsigned long long)c->n_turns,
           (double)ggx_model_state_size(c->cm.model) / 1e6, ggx_model_desc(c->cm.model),
           c->cm.path, (unsigned long long)c->o.sp.seed);
}

/* A trimmed copy of the command's argument, or NULL if there is none. */
static char *cmd_arg(const char *line, size_t skip) {
    const char *a = line + skip;
    while (*a == ' ' || *a == '\t') a++;
    size_t l = strlen(a);
    while (l && (a[l - 1] == ' ' || a[l - 1] == '\t')) l--;
    return l ? strndup(a, l) : NULL;
}

int ggx_cmd_chat(int argc, char **argv) {
    chat c;
    memset(&c, 0, sizeof c);
    cli_opts_init(&c.o);
    c.n_predict = 256;
    c.bos = -1;
    const char *tmpl_arg = NULL, *hist_file = NULL;
    int raw = 0, rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int r = cli_parse_common(&c.o, CMD, argc, argv, &i);
        if (!r) r = cli_parse_sampling(&c.o, CMD, argc, argv, &i);
        if (r < 0) goto done;
        if (r > 0) continue;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(s, "-n") || !strcmp(s, "--n-predict")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i))) goto done;
            if (cli_parse_int(CMD, s, v, -1, 1 << 30, &c.n_predict)) goto done;
        } else if (!strcmp(s, "--template")) {
            if (!(tmpl_arg = cli_optarg(CMD, argc, argv, &i))) goto done;
        } else if (!strcmp(s, "--raw")) {
            raw = 1;
        } else if (!strcmp(s, "--history")) {
            if (!(hist_file = cli_optarg(CMD, argc, argv, &i))) goto done;
        } else if (!strcmp(s, "--stop")) {
            if (!(v = cli_optarg(CMD, argc, argv, &i))) goto done;
            if (c.n_user_stops == MAX_STOPS) {
                cli_err(CMD, "--stop: at most %d stop strings", MAX_STOPS);
                goto done;
            }
            char *d = strdup(v);
            if (!d) goto done;
            cli_unescape(d);
            if (!*d) {
                free(d);
                cli_err(CMD, "--stop: empty string");
                goto done;
            }
            c.user_stops[c.n_user_stops++] = d;
        } else if (!strcmp(s, "--bos")) {
            c.bos = 1;
        } else if (!strcmp(s, "--no-bos")) {
            c.bos = 0;
        } else {
            cli_err(CMD, "unknown option '%s' (see ggx chat --help)", s);
            goto done;
        }
    }
    rc = 1;
    int builtin = !c.o.model_path && !(getenv("GGX_MODEL") && *getenv("GGX_MODEL"));
    cli_finish_seed(&c.o);
    if (cli_model_open(&c.o, CMD, &c.cm)) goto done;

    /* template: --raw / --template, else the model's, else the plain default */
    const char *why = NULL;
    if (raw) {
        set_template(&c, "{msg}");
    } else if (tmpl_arg) {
        char *t = strdup(tmpl_arg);
        if (!t) goto done;
        cli_unescape(t);
        int bad = set_template(&c, t);
        free(t);
        if (bad) {
            cli_err(CMD, "--template: needs exactly one {msg} (and no Jinja {%%/{{), got '%s'",
                     tmpl_arg);
            rc = 2;
            goto done;
        }
    } else if (c.cm.chat_template && !set_template(&c, c.cm.chat_template)) {
        why = "the model's chat template";
    } else if (builtin) {
        set_template(&c, "{msg}");
        raw = 1;
        why = "raw continuation (the built-in model knows only play text)";
    } else {
        if (c.cm.chat_template)
            fprintf(stderr, "ggx chat: the model's chat template is not in ggx's {msg} format "
                            "(Jinja?); using the plain default (see --template)\n");
        set_template(&c, "User: {msg}\nAssistant:");
        why = "the plain default template";
    }
    if (!why) why = raw ? "raw continuation" : "the given template";
    if (!c.pre || !c.post) goto done;
    if (c.tmpl_stop) c.stops[c.n_stops++] = c.tmpl_stop;
    for (int i = 0; i < c.n_user_stops; i++) c.stops[c.n_stops++] = c.user_stops[i];
    if (builtin && raw && !tmpl_arg && c.n_user_stops == 0) c.stops[c.n_stops++] = "\n\n";

    c.o.sp.n_vocab_valid = c.cm.n_vocab_valid;
    if (ggx_sampler_create(&c.o.sp, &c.smp) != GGX_OK) {
        cli_err(CMD, "%s", ggx_last_error());
        rc = 2;
        goto done;
    }
    if (ggx_state_create(c.cm.model, &c.st) != GGX_OK) {
        cli_err(CMD, "%s", ggx_last_error());
        goto done;
    }
    c.logits = malloc(sizeof(float) * (size_t)c.cm.n_vocab);
    if (!c.logits) goto done;

    int tty = isatty(0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
#ifdef GGX_HAVE_LIBEDIT
    rl_catch_signals = 0;
    /* libedit edits characters of the C library's locale: without a UTF-8 one it drops every
     * non-ASCII byte typed ("café" -> "caf"). Use the user's locale, else C.UTF-8. (Nothing in
     * ggx depends on LC_CTYPE otherwise.) */
    if (tty && (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8")))
        setlocale(LC_CTYPE, "C.UTF-8");
#endif
#ifdef GGX_HAVE_LIBEDIT
    if (tty && hist_file) {
        stifle_history(1000);
        read_history(hist_file); /* a missing file is fine: it is created at the end */
    }
#endif
    if (!c.o.quiet)
        fprintf(stderr,
                "ggx chat: %s (%s), %s; seed %llu. /help for commands, Ctrl-D to leave.\n",
                ggx_model_desc(c.cm.model), c.cm.path, why, (unsigned long long)c.o.sp.seed);

    for (;;) {
        char *line = read_message(tty);
        if (!line) break;
        if (g_interrupted) { /* Ctrl-C at the prompt: drop the line */
            g_interrupted = 0;
            free(line);
            continue;
        }
        if (line[0] == '/' && line[1] != '/') {
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) {
                free(line);
                break;
            } else if (!strcmp(line, "/help")) {
                chat_help();
            } else if (!strcmp(line, "/stats")) {
                print_stats(&c);
            } else if (!strcmp(line, "/reset")) {
                reset_conversation(&c);
                printf("(new conversation)\n");
            } else if (!strncmp(line, "/save", 5) && (!line[5] || line[5] == ' ')) {
                char *f = cmd_arg(line, 5);
                if (!f) printf("usage: /save FILE\n");
                else if (!save(&c, f))
                    printf("(saved %zu tokens, %llu turns to %s)\n", c.n_hist,
                           (unsigned long long)c.n_turns, f);
                free(f);
            } else if (!strncmp(line, "/load", 5) && (!line[5] || line[5] == ' ')) {
                char *f = cmd_arg(line, 5);
                if (!f) printf("usage: /load FILE\n");
                else if (!load(&c, f))
                    printf("(loaded %zu tokens, %llu turns from %s)\n", c.n_hist,
                           (unsigned long long)c.n_turns, f);
                free(f);
            } else {
                printf("unknown command %s (/help lists them)\n", line);
            }
            fflush(stdout);
            free(line);
            continue;
        }
        const char *msg = line[0] == '/' ? line + 1 : line; /* "//x" sends "/x" */
        int bad = turn(&c, msg);
        free(line);
        if (bad) goto done;
    }
    if (tty) printf("\n");
#ifdef GGX_HAVE_LIBEDIT
    if (tty && hist_file && write_history(hist_file) != 0)
        cli_err(CMD, "--history: cannot write %s", hist_file);
#endif
    rc = 0;
done:
    for (int i = 0; i < c.n_user_stops; i++) free(c.user_stops[i]);
    free(c.pre);
    free(c.post);
    free(c.tmpl_stop);
    free(c.hist);
    free(c.logits);
    ggx_sampler_free(c.smp);
    ggx_state_free(c.st);
    cli_model_close(&c.cm);
    return rc;
}
