/*
 * cmd.h — the subcommands of the `ggx` binary. Each lives in tools/cmd_NAME.c and is called with
 * argv[0] = "NAME". Return the process exit code (0 ok, 1 runtime failure, 2 usage error).
 * Errors go to stderr as "ggx NAME: message".
 */
#ifndef GGX_TOOLS_CMD_H
#define GGX_TOOLS_CMD_H

int ggx_cmd_convert(int argc, char **argv);
int ggx_cmd_quantize(int argc, char **argv);
int ggx_cmd_inspect(int argc, char **argv);
int ggx_cmd_run(int argc, char **argv);
int ggx_cmd_chat(int argc, char **argv);
int ggx_cmd_tokenize(int argc, char **argv);
int ggx_cmd_logits(int argc, char **argv);
int ggx_cmd_perplexity(int argc, char **argv);
int ggx_cmd_bench(int argc, char **argv);
int ggx_cmd_serve(int argc, char **argv);

#endif
