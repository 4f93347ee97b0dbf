/* cmd_convert.c — `ggx convert`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_convert(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx convert: not implemented yet\n");
    return 1;
}
