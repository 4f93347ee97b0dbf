/* cpu_pool.c — persistent thread pool with dynamically claimed chunks (see cpu_pool.h).
 *
 * Protocol: `job` packs (generation << 32 | next chunk) in one atomic. The caller writes fn,
 * arg and n_chunks, then publishes a new generation with a release store. A thread claims a
 * chunk with a CAS that only succeeds while the generation is the one it saw, so a thread that
 * wakes late can never run a chunk of a finished job; after a successful claim, fn/arg are
 * stable because the caller waits for `done` to reach n_chunks before writing the next job.
 * Before writing n_chunks/fn/arg the caller sets the word to (new generation, CLOSED), so no
 * claim on the old generation can succeed with the new n_chunks. */
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

#define SPIN_BEFORE_SLEEP 20000
#define CLOSED 0xffffffffu /* chunk field while the caller is writing the next job */

struct worker {
    struct ggx_cpu_pool *p;
    int ith;
};

struct ggx_cpu_pool {
    int n;
    pthread_t *th;
    struct worker *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_sleeping;             /* under mu */
    _Atomic uint64_t job;       /* generation << 32 | next chunk */
    _Atomic int64_t n_chunks;
    _Atomic int64_t done;
    atomic_int stop;
    ggx_cpu_chunk_fn fn;        /* stable while a chunk of the current job is claimed */
    void *arg;
};

/* Claim and run chunks of generation gen until none are left. */
static void work(struct ggx_cpu_pool *p, uint32_t gen, int ith) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->job, memory_order_acquire);
        if ((uint32_t)(v >> 32) != gen) return;
        if ((uint32_t)v == CLOSED) { /* the job is being written: wait for it to open */
            cpu_relax();
            continue;
        }
        int64_t c = (int64_t)(v & 0xffffffffu);
        if (c >= atomic_load_explicit(&p->n_chunks, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak_explicit(&p->job, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        p->fn(p->arg, c, ith);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *worker_main(void *vp) {
    struct worker *w = vp;
    struct ggx_cpu_pool *p = w->p;
    uint32_t seen = 0;
    for (;;) {
        int spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load_explicit(&p->job, memory_order_acquire) >> 32)) ==
                   seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while ((uint32_t)(atomic_load_explicit(&p->job, memory_order_acquire) >> 32) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_acquire))
                pthread_cond_wait(&p->cv, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        work(p, gen, w->ith);
        seen = gen;
    }
    return NULL;
}

int ggx_cpu_physical_cores(void) {
    /* distinct (physical id, core id) pairs of /proc/cpuinfo; else online CPUs */
    FILE *f = fopen("/proc/cpuinfo", "r");
    static int pairs[1024][2];
    int np = 0, phys = 0;
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
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->job, 0);
    atomic_init(&p->n_chunks, 0);
    atomic_init(&p->done, 0);
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
            ggx_cpu_pool_free(p); /* joins the p->n - 1 workers started so far */
            return ggx_fail(GGX_ERR_BACKEND, "thread pool: cannot start thread %d", i);
        }
        p->n = i + 1;
    }
    *out = p;
    return GGX_OK;
}

void ggx_cpu_pool_free(ggx_cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p->w);
    free(p);
}

int ggx_cpu_pool_size(const ggx_cpu_pool *p) { return p->n; }

void ggx_cpu_pool_run(ggx_cpu_pool *p, int64_t n_chunks, ggx_cpu_chunk_fn fn, void *arg) {
    if (n_chunks <= 0) return;
    if (p->n == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; c++) fn(arg, c, 0);
        return;
    }
    if (n_chunks >= (int64_t)CLOSED) n_chunks = CLOSED - 1; /* callers stay far below */
    uint32_t gen = (uint32_t)(atomic_load_explicit(&p->job, memory_order_relaxed) >> 32) + 1;
    if (gen == 0) gen = 1; /* 0 is the workers' initial "seen" */
    atomic_store_explicit(&p->job, (uint64_t)gen << 32 | CLOSED, memory_order_release);
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->job, (uint64_t)gen << 32, memory_order_release);
    if (p->n_sleeping) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    work(p, gen, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks) {
        if (++spins < 2048) cpu_relax();
        else sched_yield();
    }
}
