/* cmd_quantize.c — `ggx quantize`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_quantize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx quantize: not implemented yet\n");
    return 1;
}
