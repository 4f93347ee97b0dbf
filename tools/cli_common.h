/*
 * cli_common.h — helpers shared by the interactive subcommands (run, chat, bench): argument
 * parsing, where the model file comes from, loading model + tokenizer, the sampling options,
 * the end-of-text ids, and the streaming "stop string" filter.
 *
 *     cli_opts o; cli_opts_init(&o);
 *     for (int i = 1; i < argc; i++) {
 *         int r = cli_parse_common(&o, "run", argc, argv, &i);   // 1 taken, 0 not ours, -1 bad
 *         ...
 *     }
 *     cli_model cm; if (cli_model_open(&o, "run", &cm)) return 1;  // prints the error itself
 *     ...
 *     cli_model_close(&cm);
 *
 * Errors are printed as "ggx NAME: message" on stderr (cli_err). Exit codes: 0 ok, 1 runtime
 * failure, 2 usage error.
 */
#ifndef GGX_TOOLS_CLI_COMMON_H
#define GGX_TOOLS_CLI_COMMON_H

#include "ggx.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* "ggx CMD: message\n" on stderr. */
void cli_err(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* --------------------------------------------------------------------- number parsing ----- */
/* Whole-string parses; 0 on success, -1 (after printing "ggx CMD: OPT: ...") on failure. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, float *out);
int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
/* "1,2,3" -> malloc'ed array (caller frees). Whitespace around items is allowed. */
int cli_parse_int_list(const char *cmd, const char *opt, const char *s, long lo, long hi,
                       int32_t **out, size_t *n_out);

/* The value of option argv[*i]: argv[*i + 1] (then *i advances), or NULL after an error. */
const char *cli_optarg(const char *cmd, int argc, char **argv, int *i);

/* --------------------------------------------------------------------- common options ----- */
typedef struct cli_opts {
    const char *model_path;   /* -m; NULL: resolved by cli_resolve_model */
    const char *backend;      /* --backend cpu|cuda */
    int n_threads;            /* -t; 0 = library default */
    int quiet;                /* --quiet */
    int verbose;              /* -v */
    ggx_sampler_params sp;    /* --temp --top-k --top-p --min-p --repeat-penalty ... --seed */
    int seed_given;           /* --seed was on the command line */
} cli_opts;

void cli_opts_init(cli_opts *o);
/* Try to consume argv[*i] (and its value) as a common or sampling option. Returns 1 if taken,
 * 0 if it is not one of ours, -1 on a bad value (already reported). */
int cli_parse_common(cli_opts *o, const char *cmd, int argc, char **argv, int *i);
int cli_parse_sampling(cli_opts *o, const char *cmd, int argc, char **argv, int *i);
/* The --help text of the options above. */
void cli_help_common(FILE *out);
void cli_help_sampling(FILE *out);
/* If no --seed was given, pick a random one (so it can be printed and replayed). */
void cli_finish_seed(cli_opts *o);

/* --------------------------------------------------------------------- model -------------- */
/* Which file `ggx run/chat/bench` use: -m, else $GGX_MODEL, else models/default.ggx next to
 * the binary, else the build-time GGX_DEFAULT_MODEL_PATH. "-m default" skips to the built-in. Writes into buf; 0 ok, -1 none found
 * (reported). */
int cli_resolve_model(const char *cmd, const char *m_arg, char *buf, size_t cap);
/* buf = "DIR/models/default.ggx" for the DIR of the running binary (whether or not it exists);
 * 0 ok, -1 if the binary's path is unknown. */
int cli_model_next_to_binary(char *buf, size_t cap);

typedef struct cli_model {
    char path[4096];
    ggx_model *model;
    ggx_tokenizer *tok;
    int n_vocab;        /* rows of the head */
    int n_vocab_valid;  /* ids the tokenizer knows (<= n_vocab) */
    int bos_id;         /* what --bos prepends (the model's bos, else end-of-text), -1 none */
    int add_bos;        /* the model's recorded default */
    int stop_ids[4];    /* end-of-text ids */
    int n_stop_ids;
    char *chat_template; /* tokenizer.chat_template from the file, or NULL (malloc'ed) */
    double load_s;
} cli_model;

/* Resolve, load (progress bar unless quiet), make the tokenizer, find the end-of-text ids.
 * 0 ok, 1 error (reported). */
int cli_model_open(const cli_opts *o, const char *cmd, cli_model *cm);
void cli_model_close(cli_model *cm);
int cli_is_stop_id(const cli_model *cm, int32_t id);
/* tokenizer.chat_template of the .ggx at path (malloc'ed), or NULL if it has none or cannot be
 * read. */
char *cli_read_chat_template(const char *path);

/* The escapes \n \t \r \\ to their characters, in place (for --stop and templates, where a
 * shell makes real newlines awkward); any other backslash is kept as is. */
void cli_unescape(char *s);

/* --------------------------------------------------------------------- files -------------- */
/* Whole file ("-" = stdin) into a malloc'ed NUL-terminated buffer. 0 ok, -1 (reported). */
int cli_read_file(const char *cmd, const char *path, char **out, size_t *len);
/* The rest of stream f in a malloc'ed NUL-terminated buffer (its size in *len), or NULL on out of
 * memory or a read error (ferror(f) tells which); reports nothing. */
char *cli_slurp(FILE *f, size_t *len);

/* --------------------------------------------------------------------- stop strings ------- */
/* Holds back the generated text that could still become a stop string, so stdout never shows
 * a stop string (or its beginning) and the stream stays valid UTF-8 when the stop strings are. */
typedef struct cli_stopper {
    const char *const *stops;
    int n_stops;
    char *pend;     /* text not yet released */
    size_t n_pend, cap;
    char *outb;     /* what the last push released */
    size_t cap_out;
    int hit;        /* a stop string was found: generation must end */
    int hit_index;  /* which one (index into stops) */
} cli_stopper;

void cli_stopper_init(cli_stopper *s, const char *const *stops, int n_stops);
void cli_stopper_free(cli_stopper *s);
/* Add generated text; *out and *n_out are what may be printed now (points into the stopper, valid
 * until the next call). Returns -1 on out of memory. */
int cli_stopper_push(cli_stopper *s, const char *text, size_t n, const char **out, size_t *n_out);
/* End of generation: release what is held (nothing after a hit). */
void cli_stopper_flush(cli_stopper *s, const char **out, size_t *n_out);

/* Seconds on a monotonic clock. */
double cli_time_s(void);

#endif
