/* cmd_run.c — `ggx run`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx run: not implemented yet\n");
    return 1;
}
