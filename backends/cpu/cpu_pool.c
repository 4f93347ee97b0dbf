/* cpu_pool.c — persistent thread pool (see cpu_pool.h). */
#include "cpu_pool.h"

#include "error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_BEFORE_SLEEP 200000

struct ggx_cpu_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int gen;     /* bumped once per job */
    atomic_int pending; /* workers still running the current job */
    atomic_int stop;
    int n_sleeping;     /* under mu */
    ggx_cpu_job fn;     /* published by the release store to gen */
    void *arg;
    struct worker { struct ggx_cpu_pool *p; int ith; } *w;
};

static void *worker_main(void *vp) {
    struct worker *w = vp;
    struct ggx_cpu_pool *p = w->p;
    int seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_acquire))
                pthread_cond_wait(&p->cv, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

int ggx_cpu_physical_cores(void) {
    /* Count distinct (physical id, core id) pairs; fall back to online CPUs. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int pairs[1024][2], np = 0, phys = 0;
    char line[256];
    if (f) {
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
            else if (sscanf(line, "core id : %d", &v) == 1) {
                int dup = 0;
                for (int i = 0; i < np; i++) dup |= pairs[i][0] == phys && pairs[i][1] == v;
                if (!dup && np < 1024) pairs[np][0] = phys, pairs[np++][1] = v;
            }
        }
        fclose(f);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (np < 1) np = online > 0 ? (int)online : 1;
    if (online > 0 && np > online) np = (int)online;
    return np;
}

ggx_status ggx_cpu_pool_create(int n_threads, ggx_cpu_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = ggx_cpu_physical_cores();
    if (n_threads > 512) return ggx_fail(GGX_ERR_INVALID_ARG, "threads: %d is too many", n_threads);
    ggx_cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return ggx_fail(GGX_ERR_NOMEM, "thread pool: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    p->th = calloc((size_t)n_threads, sizeof *p->th);
    p->w = calloc((size_t)n_threads, sizeof *p->w);
    if (!p->th || !p->w) {
        ggx_cpu_pool_free(p);
        return ggx_fail(GGX_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        p->w[i] = (struct worker){p, i};
        if (pthread_create(&p->th[i], NULL, worker_main, &p->w[i]) != 0) {
            p->n = i; /* only join what started */
            ggx_cpu_pool_free(p);
            return ggx_fail(GGX_ERR_BACKEND, "thread pool: cannot start thread %d", i);
        }
    }
    *out = p;
    return GGX_OK;
}

void ggx_cpu_pool_free(ggx_cpu_pool *p) {
    if (!p) return;
    if (p->th) {
        pthread_mutex_lock(&p->mu);
        atomic_store_explicit(&p->stop, 1, memory_order_release);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p->w);
    free(p);
}

int ggx_cpu_pool_size(const ggx_cpu_pool *p) { return p->n; }

void ggx_cpu_pool_run(ggx_cpu_pool *p, ggx_cpu_job fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    if (p->n_sleeping) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        if (++spins < 4096) cpu_relax();
        else sched_yield();
    }
}
