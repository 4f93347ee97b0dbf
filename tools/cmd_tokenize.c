/* cmd_tokenize.c — `ggx tokenize`: text <-> token ids with a model's tokenizer (a .ggx or a
 * tokenizer.json), the --jsonl contract of design.md §6, and a --bench mode. */
#include "cli_common.h"
#include "cmd.h"

#include "ggx.h"
#include "progress.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx tokenize -m FILE [options]\n"
            "\n"
            "Text to token ids (and back) with the tokenizer of FILE: a .ggx model or a Hugging Face\n"
            "tokenizer.json. Encoding matches HF tokenizers' tokenizer.encode(text) exactly.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE   .ggx or tokenizer.json (required)\n"
            "  -p, --prompt TEXT  the input (default: all of stdin)\n"
            "  -f, --file PATH    read the input from a file\n"
            "  --jsonl            line mode: each input line is a JSON string; each output line is a\n"
            "                     JSON array of ids (with --decode: array in, JSON string out)\n"
            "  --decode           ids to text: ids separated by commas/spaces/newlines (or JSON\n"
            "                     arrays with --jsonl); the text is written as is, no newline added\n"
            "  --keep-special     --decode also writes special tokens (<|endoftext|>); HF skips them\n"
            "  --ids-only         print only the ids, comma-separated on one line (the default)\n"
            "  --tokens           print one line per token: id, TAB, its text as a JSON string\n"
            "  --bos              prepend the model's BOS id (a .ggx records it; for a bare\n"
            "                     tokenizer.json it is <|endoftext|>)\n"
            "  --bench PATH       benchmark: load time and single-thread encode/decode speed on PATH\n"
            "  --runs N           repetitions for --bench (best is reported; default 5)\n"
            "  -q, --quiet        no messages on stderr except errors\n"
            "  -h, --help         this help\n"
            "\n"
            "Invalid UTF-8 input is an error naming the byte offset (exit 1).\n"
            "\n"
            "examples:\n"
            "  ggx tokenize -m model.ggx -p \"Hello world\"              # 12092,1533\n"
            "  ggx tokenize -m tokenizer.json --tokens -p \"Hello world\"\n"
            "  printf '\"Hello\"\\n\"a\\\\nb\"\\n' | ggx tokenize -m model.ggx --jsonl   # [12092] / [66,187,67]\n"
            "  echo 12092,1533 | ggx tokenize -m model.ggx --decode        # Hello world\n"
            "  echo '[12092,1533]' | ggx tokenize -m model.ggx --decode --jsonl   # \"Hello world\"\n"
            "  ggx tokenize -m tokenizer.json --bench tinyshakespeare.txt\n");
}

static int fail(const char *what) {
    fprintf(stderr, "ggx tokenize: %s%s%s\n", what, ggx_last_error()[0] ? ": " : "", ggx_last_error());
    return 1;
}

/* ---------------------------------------------------------------- encode / decode helpers */

/* Encodes into a growing array (*ids, *cap); prepends bos when >= 0. */
static ggx_status encode_all(const ggx_tokenizer *tok, const char *text, size_t len, int bos,
                             int32_t **ids, size_t *cap, size_t *n) {
    size_t off = bos >= 0 ? 1 : 0;
    for (;;) {
        size_t got = 0;
        ggx_status st = ggx_tokenizer_encode(tok, text, len, *ids ? *ids + off : NULL,
                                             *ids ? *cap - off : 0, &got);
        if (st == GGX_OK) {
            if (bos >= 0) (*ids)[0] = bos;
            *n = got + off;
            return GGX_OK;
        }
        if (st != GGX_ERR_INVALID_ARG || got + off <= *cap) return st;
        int32_t *ni = realloc(*ids, (got + off + 16) * sizeof *ni);
        if (!ni) return GGX_ERR_NOMEM;
        *ids = ni;
        *cap = got + off + 16;
    }
}

/* Parses ids separated by commas, spaces or newlines (or a JSON-ish [..] list). */
static int parse_ids(const ggx_tokenizer *tok, const char *s, int32_t **ids, size_t *n) {
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p && strchr(" \t\r\n,[]", *p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno) {
            fprintf(stderr, "ggx tokenize: --decode: '%.20s' is not a token id\n", p);
            return -1;
        }
        if (v < 0 || v >= ggx_tokenizer_n_vocab(tok)) {
            fprintf(stderr, "ggx tokenize: --decode: id %ld is outside the vocabulary (0..%d)\n", v,
                    ggx_tokenizer_n_vocab(tok) - 1);
            return -1;
        }
        if (*n == cap) {
            int32_t *ni = realloc(*ids, (cap *= 2) * sizeof *ni);
            if (!ni) return -1;
            *ids = ni;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
    return 0;
}

/* Writes s[0..n) as a JSON string (UTF-8 kept, control characters and NUL escaped). */
static void print_json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_ids(const int32_t *ids, size_t n, int json) {
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    puts(json ? "]" : "");
}

/* ---------------------------------------------------------------- modes */

/* Whether a JSON line escapes U+0000 (cJSON would end the string there). */
static int has_nul_escape(const char *s) {
    for (; *s; s++) {
        if (*s != '\\') continue;
        if (s[1] == 'u' && !strncmp(s + 2, "0000", 4)) return 1;
        if (s[1]) s++; /* skip the escaped character */
    }
    return 0;
}

static int run_jsonl(const ggx_tokenizer *tok, int decode, int keep_special, int bos) {
    char *line = NULL;
    size_t lcap = 0, lineno = 0, cap = 0, n = 0;
    int32_t *ids = NULL;
    int rc = 0;
    ssize_t r;
    while ((r = getline(&line, &lcap, stdin)) >= 0) {
        lineno++;
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)r);
        if (!decode) {
            if (!cJSON_IsString(j)) {
                fprintf(stderr, "ggx tokenize: stdin line %zu: not a JSON string\n", lineno);
                rc = 1;
            } else if (has_nul_escape(line)) {
                fprintf(stderr, "ggx tokenize: stdin line %zu: U+0000 is not supported in --jsonl input\n", lineno);
                rc = 1;
            } else if (encode_all(tok, j->valuestring, strlen(j->valuestring), bos, &ids, &cap, &n)) {
                fprintf(stderr, "ggx tokenize: stdin line %zu: %s\n", lineno, ggx_last_error());
                rc = 1;
            } else {
                print_ids(ids, n, 1);
            }
        } else {
            const cJSON *e;
            n = 0;
            if (!cJSON_IsArray(j)) {
                fprintf(stderr, "ggx tokenize: stdin line %zu: not a JSON array of ids\n", lineno);
                rc = 1;
            }
            size_t m = (size_t)cJSON_GetArraySize(j);
            if (!rc && m + 1 > cap) {
                int32_t *ni = realloc(ids, (m + 1) * sizeof *ni);
                if (!ni) rc = 1;
                else ids = ni, cap = m + 1;
            }
            cJSON_ArrayForEach(e, j) {
                if (rc) break;
                double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
                if (!(v >= 0 && v < ggx_tokenizer_n_vocab(tok)) || v != (double)(int32_t)v) {
                    fprintf(stderr, "ggx tokenize: stdin line %zu: element %zu is not an id in 0..%d\n",
                            lineno, n, ggx_tokenizer_n_vocab(tok) - 1);
                    rc = 1;
                    break;
                }
                ids[n++] = (int32_t)v;
            }
            char *text = NULL;
            size_t tlen = 0;
            if (!rc && ggx_tokenizer_decode_ex(tok, ids, n, keep_special, &text, &tlen)) {
                fprintf(stderr, "ggx tokenize: stdin line %zu: %s\n", lineno, ggx_last_error());
                rc = 1;
            }
            if (!rc) {
                print_json_str(text, tlen);
                putchar('\n');
            }
            free(text);
        }
        cJSON_Delete(j);
        if (rc) break;
    }
    free(line);
    free(ids);
    return rc;
}

static int run_bench(const char *model, const char *path, int runs, int quiet) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ggx tokenize: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t len = 0;
    char *text = cli_slurp(f, &len);
    fclose(f);
    if (!text) {
        fprintf(stderr, "ggx tokenize: cannot read %s\n", path);
        return 1;
    }
    ggx_tokenizer *tok = NULL;
    double best_load = 1e30, best_enc = 1e30, best_dec = 1e30;
    size_t cap = 0, n = 0;
    int32_t *ids = NULL;
    int rc = 0;
    for (int r = 0; r < runs && !rc; r++) {
        ggx_tokenizer_free(tok);
        double t0 = ggx_time_s();
        if (ggx_tokenizer_load(model, &tok)) {
            rc = fail("cannot load the tokenizer");
            tok = NULL;
            break;
        }
        double t1 = ggx_time_s();
        if (encode_all(tok, text, len, -1, &ids, &cap, &n)) {
            rc = fail("encode failed");
            break;
        }
        double t2 = ggx_time_s();
        char *dec = NULL;
        size_t dlen = 0;
        if (ggx_tokenizer_decode(tok, ids, n, &dec, &dlen)) {
            rc = fail("decode failed");
            break;
        }
        double t3 = ggx_time_s();
        free(dec);
        if (t1 - t0 < best_load) best_load = t1 - t0;
        if (t2 - t1 < best_enc) best_enc = t2 - t1;
        if (t3 - t2 < best_dec) best_dec = t3 - t2;
        if (!quiet) fprintf(stderr, "run %d: load %.1f ms, encode %.1f ms, decode %.1f ms\n", r + 1,
                            1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2));
    }
    if (!rc) {
        printf("file        %s (%zu bytes)\n", path, len);
        printf("tokens      %zu\n", n);
        printf("load        %.1f ms (best of %d)\n", 1e3 * best_load, runs);
        printf("encode      %.1f ms = %.2f M tokens/s, %.1f MB/s (one thread, best of %d)\n",
               1e3 * best_enc, n / best_enc / 1e6, len / best_enc / 1e6, runs);
        printf("decode      %.1f ms = %.1f M tokens/s\n", 1e3 * best_dec, n / best_dec / 1e6);
    }
    ggx_tokenizer_free(tok);
    free(ids);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- main */

int ggx_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL, *bench = NULL;
    int jsonl = 0, decode = 0, keep_special = 0, tokens = 0, want_bos = 0, quiet = 0, runs = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_val) model = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has_val) prompt = argv[++i];
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && has_val) file = argv[++i];
        else if (!strcmp(a, "--bench") && has_val) bench = argv[++i];
        else if (!strcmp(a, "--runs") && has_val) runs = atoi(argv[++i]);
        else if (!strcmp(a, "--jsonl")) jsonl = 1;
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "--keep-special")) keep_special = 1;
        else if (!strcmp(a, "--ids-only")) tokens = 0;
        else if (!strcmp(a, "--tokens")) tokens = 1;
        else if (!strcmp(a, "--bos")) want_bos = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else {
            fprintf(stderr, "ggx tokenize: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "ggx tokenize: -m FILE is required (see --help)\n");
        return 2;
    }
    if ((prompt && file) || (jsonl && (prompt || file))) {
        fprintf(stderr, "ggx tokenize: give one input: -p, -f, or stdin (--jsonl reads stdin)\n");
        return 2;
    }
    if (runs < 1) {
        fprintf(stderr, "ggx tokenize: --runs must be >= 1\n");
        return 2;
    }
    if (bench) return run_bench(model, bench, runs, quiet);

    ggx_tokenizer *tok = NULL;
    if (ggx_tokenizer_load(model, &tok)) return fail("cannot load the tokenizer");
    int bos = -1;
    if (want_bos) {
        bos = ggx_tokenizer_bos_id(tok);
        if (bos < 0) {
            ggx_tokenizer_free(tok);
            fprintf(stderr, "ggx tokenize: --bos: the tokenizer names no BOS token\n");
            return 1;
        }
    }
    int rc = 0;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0, cap = 0;
    if (jsonl) {
        rc = run_jsonl(tok, decode, keep_special, bos);
        goto done;
    }
    if (prompt) {
        text = strdup(prompt);
        len = strlen(prompt);
    } else {
        FILE *f = file ? fopen(file, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "ggx tokenize: cannot open %s: %s\n", file, strerror(errno));
            rc = 1;
            goto done;
        }
        text = cli_slurp(f, &len);
        if (file) fclose(f);
    }
    if (!text) {
        fprintf(stderr, "ggx tokenize: cannot read the input\n");
        rc = 1;
        goto done;
    }
    if (decode) {
        char *out = NULL;
        size_t olen = 0;
        if (parse_ids(tok, text, &ids, &n)) {
            rc = 1;
            goto done;
        }
        if (ggx_tokenizer_decode_ex(tok, ids, n, keep_special, &out, &olen)) {
            rc = fail("decode failed");
            goto done;
        }
        fwrite(out, 1, olen, stdout);
        free(out);
        goto done;
    }
    if (encode_all(tok, text, len, bos, &ids, &cap, &n)) {
        rc = fail("encode failed");
        goto done;
    }
    if (!tokens) {
        print_ids(ids, n, 0);
    } else {
        for (size_t i = 0; i < n; i++) {
            char *piece = NULL;
            size_t plen = 0;
            ggx_tokenizer_decode_ex(tok, &ids[i], 1, 1, &piece, &plen);
            printf("%d\t", ids[i]);
            print_json_str(piece ? piece : "", plen);
            putchar('\n');
            free(piece);
        }
        fflush(stdout);
        if (!quiet) fprintf(stderr, "%zu tokens\n", n);
    }
done:
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "ggx tokenize: cannot write the output: %s\n", strerror(errno));
        rc = 1;
    }
    free(text);
    free(ids);
    ggx_tokenizer_free(tok);
    return rc;
}
