/* cmd_chat.c — `ggx chat`: not implemented yet (placeholder until its issue lands). */
#include "cmd.h"

#include <stdio.h>

int ggx_cmd_chat(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ggx chat: not implemented yet\n");
    return 1;
}
