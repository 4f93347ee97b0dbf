/* cmd_tokenize.c — `ggx tokenize`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx tokenize: not implemented yet\n");
    return 1;
}
