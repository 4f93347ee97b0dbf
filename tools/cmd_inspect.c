/* cmd_inspect.c — `ggx inspect`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx inspect: not implemented yet\n");
    return 1;
}
