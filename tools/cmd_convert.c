/* cmd_convert.c — `ggx convert HF_DIR -o OUT.ggx [--type T]`: HF checkpoint to .ggx. */
#include "cmd.h"

#include "convert/convert.h"
#include "ggx/error.h"
#include "ggx/progress.h"
#include "ggx/types.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx convert HF_DIR -o OUT.ggx [--type TYPE] [--tensor-type REGEX=TYPE]...\n"
            "                   [-t THREADS] [--quiet]\n"
            "\n"
            "Convert a Hugging Face xLSTM checkpoint directory (config.json, model.safetensors or\n"
            "model.safetensors.index.json + shards, tokenizer.json) into one .ggx file.\n"
            "\n"
            "options:\n"
            "  -o, --output FILE   output .ggx path (written to a temporary file, renamed on success)\n"
            "  --type TYPE         type of the big matrices: f32, f16, bf16, q8_0, q4_0, q4_x\n"
            "                      (default: as stored in the checkpoint). Gate weights and biases,\n"
            "                      norms and all 1-D tensors are always stored f32.\n"
            "                      Under a 4-bit type the embedding and lm_head get q8_0.\n"
            "  --tensor-type REGEX=TYPE\n"
            "                      override the type of the matrices whose name matches REGEX\n"
            "                      (repeatable; first match wins), e.g. 'ffn\\.proj_down=q8_0'\n"
            "  -t, --threads N     threads for type conversion and quantization (default: all CPUs)\n"
            "  -q, --quiet         no progress bar, no summary\n"
            "  -h, --help          this help\n"
            "\n"
            "examples:\n"
            "  ggx convert ~/models/xLSTM-7b -o xlstm-7b-q8_0.ggx --type q8_0\n"
            "  ggx convert tests/data/xlstm-tiny -o tiny.ggx --type f32\n"
            "  ggx convert ~/models/xLSTM-7b -o x-q4.ggx --type q4_x --tensor-type 'proj_down=q8_0'\n"
            "  ggx inspect tiny.ggx --verify\n");
}

/* Ctrl-C during a convert must not leave the temporary file behind. */
static char g_tmp[4096];
static void on_signal(int sig) {
    if (g_tmp[0]) unlink(g_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}
static void on_temp(void *ud, const char *path) {
    (void)ud;
    snprintf(g_tmp, sizeof g_tmp, "%s", path ? path : "");
}

static void on_progress(void *ud, uint64_t done, uint64_t total) {
    ggx_progress *p = ud;
    p->total = total ? total : 1; /* known only once the converter has made its plan */
    ggx_progress_update(p, done);
}

static void fmt_bytes(char *b, size_t cap, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(b, cap, "%.2f GiB", (double)n / (1ull << 30));
    else if (n >= (1ull << 20)) snprintf(b, cap, "%.2f MiB", (double)n / (1ull << 20));
    else if (n >= 1024) snprintf(b, cap, "%.1f KiB", (double)n / 1024);
    else snprintf(b, cap, "%llu B", (unsigned long long)n);
}

int ggx_cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int type = -1, quiet = 0, threads = 0, n_over = 0;
    const char *over[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (++i >= argc) goto missing;
            out = argv[i];
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (++i >= argc) goto missing;
            char *end;
            long v = strtol(argv[i], &end, 10);
            if (*end || v < 1 || v > 1024) {
                fprintf(stderr, "ggx convert: -t needs a thread count >= 1, got '%s'\n", argv[i]);
                return 2;
            }
            threads = (int)v;
        } else if (!strcmp(a, "--tensor-type")) {
            if (++i >= argc) goto missing;
            if (n_over == (int)(sizeof over / sizeof *over)) {
                fprintf(stderr, "ggx convert: at most %d --tensor-type overrides\n", n_over);
                return 2;
            }
            over[n_over++] = argv[i];
        } else if (!strcmp(a, "--type")) {
            if (++i >= argc) goto missing;
            type = ggx_type_from_name(argv[i]);
            if (type < 0 || type > GGX_TYPE_Q4_X) {
                fprintf(stderr, "ggx convert: unknown --type '%s' (f32, f16, bf16, q8_0, q4_0, q4_x)\n",
                        argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ggx convert: unknown option '%s' (see ggx convert --help)\n", a);
            return 2;
        } else if (!in) {
            in = a;
        } else {
            fprintf(stderr, "ggx convert: unexpected argument '%s'\n", a);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "ggx convert: option %s needs a value\n", a);
        return 2;
    }
    if (!in || !out) {
        fprintf(stderr, "ggx convert: need HF_DIR and -o OUT.ggx\n\n");
        usage(stderr);
        return 2;
    }

    ggx_progress prog;
    ggx_progress_begin(&prog, "converting", 1, quiet);
    ggx_convert_params p = ggx_convert_default_params();
    p.out_type = type;
    p.n_threads = threads;
    p.overrides = over;
    p.n_overrides = n_over;
    p.progress = on_progress;
    p.progress_ud = &prog;
    p.on_temp_file = on_temp;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    ggx_convert_stats st;
    ggx_status s = ggx_convert_hf(in, out, &p, &st);
    g_tmp[0] = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (s) {
        if (prog.enabled) fputc('\n', stderr);
        fprintf(stderr, "ggx convert: %s\n", ggx_last_error());
        return 1;
    }
    ggx_progress_end(&prog);
    if (quiet) return 0;

    char b1[32], b2[32];
    printf("converted %s -> %s\n", in, out);
    printf("  source: %s, %d shard%s, weight_mode %s%s\n", st.src_dtype, st.n_shards,
           st.n_shards == 1 ? "" : "s", st.source_weight_mode,
           st.renamed_qkv ? " (query/key/value renamed to q/k/v)" : "");
    printf("  %-6s %8s %14s %12s\n", "type", "tensors", "params", "bytes");
    for (int t = 0; t < GGX_TYPE_COUNT; t++) {
        if (!st.n_by_type[t]) continue;
        fmt_bytes(b1, sizeof b1, st.bytes_by_type[t]);
        printf("  %-6s %8llu %14llu %12s\n", ggx_type_name((enum ggx_type)t),
               (unsigned long long)st.n_by_type[t], (unsigned long long)st.params_by_type[t], b1);
    }
    fmt_bytes(b1, sizeof b1, st.data_bytes);
    printf("  %-6s %8llu %14llu %12s\n", "total", (unsigned long long)st.n_tensors,
           (unsigned long long)st.n_params, b1);
    fmt_bytes(b1, sizeof b1, st.file_bytes);
    fmt_bytes(b2, sizeof b2, st.src_bytes);
    printf("  file: %s (read %s of weights) in %.2f s", b1, b2, st.seconds);
    if (st.seconds > 0) printf(", %.1f MB/s", (double)st.src_bytes / st.seconds / 1e6);
    printf("\n");
    if (st.n_fallback)
        printf("  note: %d matrices have rows not divisible by the block size and were stored f16\n",
               st.n_fallback);
    return 0;
}
