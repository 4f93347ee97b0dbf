/* cmd_serve.c — `ggx serve`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx serve: not implemented yet\n");
    return 1;
}
