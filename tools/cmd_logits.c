/* cmd_logits.c — `ggx logits`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx logits: not implemented yet\n");
    return 1;
}
