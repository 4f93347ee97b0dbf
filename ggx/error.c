/* error.c — thread-local error messages and stderr logging (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[2048];
static int g_log_level = 0;

const char *ggx_status_str(ggx_status s) {
    switch (s) {
    case GGX_OK: return "ok";
    case GGX_ERR_IO: return "I/O error";
    case GGX_ERR_FORMAT: return "malformed input";
    case GGX_ERR_CHECKSUM: return "checksum mismatch";
    case GGX_ERR_INVALID_ARG: return "invalid argument";
    case GGX_ERR_NOMEM: return "out of memory";
    case GGX_ERR_UNSUPPORTED: return "unsupported";
    case GGX_ERR_SHAPE: return "shape mismatch";
    case GGX_ERR_MISMATCH: return "mismatch";
    case GGX_ERR_BACKEND: return "backend error";
    case GGX_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

const char *ggx_last_error(void) { return g_msg; }
void ggx_clear_error(void) { g_msg[0] = 0; }

ggx_status ggx_fail(ggx_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

ggx_status ggx_fail_wrap(ggx_status s, const char *fmt, ...) {
    char old[sizeof g_msg];
    memcpy(old, g_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof g_msg)
        snprintf(g_msg + n, sizeof g_msg - (size_t)n, ": %s", old);
    return s;
}

void ggx_set_log_level(int level) { g_log_level = level; }
int ggx_log_level(void) { return g_log_level; }

static void vlog(int level, const char *fmt, va_list ap) {
    if (g_log_level < level) return;
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}
void ggx_log_info(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vlog(1, fmt, ap); va_end(ap); }
void ggx_log_debug(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vlog(2, fmt, ap); va_end(ap); }
