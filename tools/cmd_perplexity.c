/* cmd_perplexity.c — `ggx perplexity`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx perplexity: not implemented yet\n");
    return 1;
}
