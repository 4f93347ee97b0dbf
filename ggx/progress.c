/* progress.c — terminal progress bar (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double ggx_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ggx_progress_begin(ggx_progress *p, const char *label, uint64_t total, int quiet) {
    p->label = label;
    p->total = total ? total : 1;
    p->enabled = !quiet && isatty(2);
    p->last_permille = -1;
    p->t0 = ggx_time_s();
    ggx_progress_update(p, 0);
}

void ggx_progress_update(ggx_progress *p, uint64_t done) {
    if (!p->enabled) return;
    if (done > p->total) done = p->total;
    int permille = (int)(done * 1000 / p->total);
    if (permille == p->last_permille) return;
    p->last_permille = permille;
    char bar[31];
    int fill = permille * 30 / 1000;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    double el = ggx_time_s() - p->t0;
    fprintf(stderr, "\r%-12s [%s] %5.1f%%  %6.1fs", p->label, bar, permille / 10.0, el);
    fflush(stderr);
}

void ggx_progress_end(ggx_progress *p) {
    if (!p->enabled) return;
    p->last_permille = -1;
    ggx_progress_update(p, p->total);
    fputc('\n', stderr);
}
