/* main.c — the `ggx` command: dispatches to one subcommand per file (tools/cmd_*.c). */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_cmds[] = {
    {"convert", ggx_cmd_convert, "convert a Hugging Face checkpoint to .ggx"},
    {"quantize", ggx_cmd_quantize, "re-quantize a .ggx file (q8_0, q4_0, q4_x)"},
    {"inspect", ggx_cmd_inspect, "print metadata and tensors of a .ggx; --verify checksums"},
    {"run", ggx_cmd_run, "generate text from a prompt (streams to stdout)"},
    {"chat", ggx_cmd_chat, "interactive chat; the recurrent state carries the conversation"},
    {"tokenize", ggx_cmd_tokenize, "text to token ids (and --decode back)"},
    {"logits", ggx_cmd_logits, "raw f32 logits of a token sequence to a file"},
    {"perplexity", ggx_cmd_perplexity, "mean NLL / perplexity of a text (and KL vs a base)"},
    {"bench", ggx_cmd_bench, "prefill and decode speed; --membw for the memory floor"},
    {"serve", ggx_cmd_serve, "OpenAI-compatible HTTP server"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: ggx COMMAND [options]   (ggx COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        fprintf(out, "  %-11s %s\n", k_cmds[i].name, k_cmds[i].help);
    fprintf(out, "\nggx run -p \"ROMEO:\" runs the built-in default model (tiny Shakespeare xLSTM).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (!strcmp(argv[1], k_cmds[i].name)) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ggx: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
