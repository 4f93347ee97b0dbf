/*
 * progress.h — a one-line progress bar on stderr, drawn only when stderr is a terminal.
 *
 *     ggx_progress p; ggx_progress_begin(&p, "converting", total_bytes, quiet);
 *     for (...) ggx_progress_update(&p, done_bytes);
 *     ggx_progress_end(&p);
 */
#ifndef GGX_PROGRESS_H
#define GGX_PROGRESS_H

#include <stdint.h>

typedef struct ggx_progress {
    const char *label;
    uint64_t total;
    int enabled;
    int last_permille;
    double t0;
} ggx_progress;

void ggx_progress_begin(ggx_progress *p, const char *label, uint64_t total, int quiet);
void ggx_progress_update(ggx_progress *p, uint64_t done);
void ggx_progress_end(ggx_progress *p);
/* Monotonic wall clock in seconds. */
double ggx_time_s(void);

#endif
