/*
 * error.h — how library code reports failures.
 *
 *     if (n > max) return ggx_fail(GGX_ERR_FORMAT, "tensor table: count %llu > %llu", n, max);
 *
 * ggx_fail() formats a message into a thread-local buffer (read by ggx_last_error()) and returns
 * the status, so a failing function can report and return in one statement. Never call exit().
 */
#ifndef GGX_ERROR_H
#define GGX_ERROR_H

#include "ggx.h"

#if defined(__GNUC__)
#define GGX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define GGX_PRINTF(a, b)
#endif

ggx_status ggx_fail(ggx_status s, const char *fmt, ...) GGX_PRINTF(2, 3);
/* Prefix the current message: "while loading x.ggx: <old message>". Returns s. */
ggx_status ggx_fail_wrap(ggx_status s, const char *fmt, ...) GGX_PRINTF(2, 3);
void ggx_clear_error(void);

/* Logging to stderr, filtered by ggx_set_log_level(). */
int ggx_log_level(void);
void ggx_log_info(const char *fmt, ...) GGX_PRINTF(1, 2);
void ggx_log_debug(const char *fmt, ...) GGX_PRINTF(1, 2);

#endif
