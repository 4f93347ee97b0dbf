/* cmd_bench.c — `ggx bench`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx bench: not implemented yet\n");
    return 1;
}
