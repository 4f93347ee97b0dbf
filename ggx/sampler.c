/*
 * sampler.c — picking the next token from logits (the sampling section of include/ggx.h).
 *
 * The chain, in this order (llama.cpp's order, so settings transfer between the two tools):
 *
 *   1. mask     ids >= n_vocab_valid (embedding padding rows) and NaN logits get -inf
 *   2. penalty  every distinct id among the last repeat_last_n accepted ids: a positive logit is
 *               divided by repeat_penalty, a negative one multiplied (llama.cpp's rule)
 *   3. greedy   temperature <= 0: argmax, ties broken towards the lowest id; no random draw
 *   4. top-k    keep the k largest logits
 *   5. top-p    keep the shortest prefix (by falling probability) whose mass reaches top_p
 *   6. min-p    keep ids whose probability is >= min_p * the largest probability
 *   7. temp     softmax(logit / temperature) over what is left, one draw from the RNG
 *
 * Steps 5 and 6 use probabilities at temperature 1 (as llama.cpp does). Ties anywhere are broken
 * towards the lower id, so a cut between equal logits is deterministic. At least one candidate
 * always survives every filter.
 *
 * Randomness: xoshiro256** seeded through splitmix64 from params.seed; exactly one 64-bit draw
 * per non-greedy sample, so (seed, sequence of logits) fixes the output. The RNG position and the
 * penalty window can be exported (ggx_sampler_state_get/set) to continue a saved session exactly.
 *
 * Memory: scratch arrays sized to n_vocab are allocated on the first sample (the vocabulary size
 * is only known then) and reused; if that allocation fails the sampler degrades to a plain
 * argmax rather than failing, since ggx_sampler_sample has no error return.
 */
#include "ggx.h"
#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLER_STATE_MAGIC 0x31504d53u /* "SMP1" little-endian */
#define MAX_REPEAT_LAST_N (1 << 20)

struct ggx_sampler {
    ggx_sampler_params p;
    uint64_t rng[4]; /* xoshiro256** state */

    /* penalty window: ring buffer of the last p.repeat_last_n accepted ids */
    int32_t *hist;   /* [repeat_last_n] */
    int hist_n;      /* filled entries (<= repeat_last_n) */
    int hist_pos;    /* next write position */

    /* scratch, sized to the largest n_vocab seen */
    int cap;
    int32_t *cand;   /* [cap] candidate ids */
    double *prob;    /* [cap] candidate probabilities */
    unsigned char *seen; /* [cap] de-duplicates the penalty window */
};

/* ===================================================================== RNG ================= */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(ggx_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(ggx_sampler *s) {
    return (double)(xoshiro_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ===================================================================== create / free ======= */

ggx_sampler_params ggx_sampler_default_params(void) {
    ggx_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0x5eed;
    p.n_vocab_valid = 0;
    return p;
}

ggx_status ggx_sampler_create(const ggx_sampler_params *p, ggx_sampler **out) {
    if (!p || !out) return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: NULL argument");
    *out = NULL;
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: temperature must be >= 0 (got %g)",
                        (double)p->temperature);
    if (p->top_k < 0)
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: top-k must be >= 0 (0 = off), got %d",
                        p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: top-p must be in (0, 1] (1 = off), got %g",
                        (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: min-p must be in [0, 1] (0 = off), got %g",
                        (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return ggx_fail(GGX_ERR_INVALID_ARG,
                        "sampler: repeat penalty must be > 0 (1 = off), got %g",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > MAX_REPEAT_LAST_N)
        return ggx_fail(GGX_ERR_INVALID_ARG,
                        "sampler: repeat-last-n must be in [0, %d] (0 = off), got %d",
                        MAX_REPEAT_LAST_N, p->repeat_last_n);
    if (p->n_vocab_valid < 0)
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler: n_vocab_valid must be >= 0, got %d",
                        p->n_vocab_valid);

    ggx_sampler *s = calloc(1, sizeof *s);
    if (!s) return ggx_fail(GGX_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    if (p->repeat_last_n > 0) {
        s->hist = malloc(sizeof(int32_t) * (size_t)p->repeat_last_n);
        if (!s->hist) {
            free(s);
            return ggx_fail(GGX_ERR_NOMEM, "sampler: out of memory (penalty window %d)",
                            p->repeat_last_n);
        }
    }
    rng_seed(s);
    *out = s;
    return GGX_OK;
}

void ggx_sampler_free(ggx_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->cand);
    free(s->prob);
    free(s->seen);
    free(s);
}

void ggx_sampler_reset(ggx_sampler *s) {
    if (!s) return;
    s->hist_n = 0;
    s->hist_pos = 0;
    rng_seed(s);
}

void ggx_sampler_accept(ggx_sampler *s, int32_t id) {
    if (!s || s->p.repeat_last_n <= 0) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->hist_n < s->p.repeat_last_n) s->hist_n++;
}

/* ===================================================================== state export ====== */
/* Layout (little-endian host order, as the state files): u32 magic, u32 hist_n,
 * u64 rng[4], i32 hist[hist_n] oldest first. */

size_t ggx_sampler_state_size(const ggx_sampler *s) {
    return 8 + 32 + sizeof(int32_t) * (size_t)(s ? s->hist_n : 0);
}

ggx_status ggx_sampler_state_get(const ggx_sampler *s, void *buf, size_t cap) {
    if (!s || !buf) return ggx_fail(GGX_ERR_INVALID_ARG, "sampler state: NULL argument");
    size_t need = ggx_sampler_state_size(s);
    if (cap < need)
        return ggx_fail(GGX_ERR_INVALID_ARG, "sampler state: buffer of %zu bytes, need %zu", cap,
                        need);
    unsigned char *b = buf;
    uint32_t hdr[2] = {SAMPLER_STATE_MAGIC, (uint32_t)s->hist_n};
    memcpy(b, hdr, 8);
    memcpy(b + 8, s->rng, 32);
    int n = s->p.repeat_last_n;
    for (int i = 0; i < s->hist_n; i++) {
        int32_t id = s->hist[(s->hist_pos - s->hist_n + i + n) % n];
        memcpy(b + 40 + 4 * (size_t)i, &id, 4);
    }
    return GGX_OK;
}

ggx_status ggx_sampler_state_set(ggx_sampler *s, const void *buf, size_t len) {
    if (!s || !buf) return ggx_fail(GGX_ERR_INVALID_ARG, "sampler state: NULL argument");
    const unsigned char *b = buf;
    uint32_t hdr[2];
    if (len < 40) return ggx_fail(GGX_ERR_FORMAT, "sampler state: %zu bytes, too short", len);
    memcpy(hdr, b, 8);
    if (hdr[0] != SAMPLER_STATE_MAGIC)
        return ggx_fail(GGX_ERR_FORMAT, "sampler state: bad magic 0x%08x", hdr[0]);
    if (hdr[1] > (uint32_t)MAX_REPEAT_LAST_N || len != 40 + 4 * (size_t)hdr[1])
        return ggx_fail(GGX_ERR_FORMAT, "sampler state: %u window ids do not match %zu bytes",
                        hdr[1], len);
    uint64_t rng[4];
    memcpy(rng, b + 8, 32);
    if (!(rng[0] | rng[1] | rng[2] | rng[3]))
        return ggx_fail(GGX_ERR_FORMAT, "sampler state: all-zero RNG state");
    memcpy(s->rng, rng, 32);
    s->hist_n = 0;
    s->hist_pos = 0;
    /* keep the newest ids that fit this sampler's window */
    uint32_t n = hdr[1];
    uint32_t keep = s->p.repeat_last_n < 0 ? 0 : (uint32_t)s->p.repeat_last_n;
    for (uint32_t i = n > keep ? n - keep : 0; i < n; i++) {
        int32_t id;
        memcpy(&id, b + 40 + 4 * (size_t)i, 4);
        ggx_sampler_accept(s, id);
    }
    return GGX_OK;
}

/* ===================================================================== sampling ========== */

static int reserve(ggx_sampler *s, int n_vocab) {
    if (s->cap >= n_vocab) return 1;
    int32_t *c = realloc(s->cand, sizeof(int32_t) * (size_t)n_vocab);
    if (c) s->cand = c;
    double *p = realloc(s->prob, sizeof(double) * (size_t)n_vocab);
    if (p) s->prob = p;
    unsigned char *z = realloc(s->seen, (size_t)n_vocab);
    if (z) {
        if (n_vocab > s->cap) memset(z + s->cap, 0, (size_t)(n_vocab - s->cap));
        s->seen = z;
    }
    if (!c || !p || !z) return 0;
    s->cap = n_vocab;
    return 1;
}

/* a before b: larger logit first, then lower id */
static int before(const float *l, int32_t a, int32_t b) {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Sort c[0..n) by (logit desc, id asc). A merge sort with the logits passed explicitly, so two
 * threads with two samplers never share state. tmp has room for n ids. */
static void sort_cand(const float *l, int32_t *c, int32_t *tmp, int n) {
    if (n < 2) return;
    if (n <= 16) { /* insertion sort */
        for (int i = 1; i < n; i++) {
            int32_t v = c[i];
            int j = i - 1;
            while (j >= 0 && before(l, v, c[j])) {
                c[j + 1] = c[j];
                j--;
            }
            c[j + 1] = v;
        }
        return;
    }
    int h = n / 2;
    sort_cand(l, c, tmp, h);
    sort_cand(l, c + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = before(l, c[j], c[i]) ? c[j++] : c[i++];
    while (i < h) tmp[k++] = c[i++];
    while (j < n) tmp[k++] = c[j++];
    memcpy(c, tmp, sizeof(int32_t) * (size_t)n);
}

/* Restore the heap c[0..k) below position r: a parent is "worse or equal" than its children
 * (the worst at the root). */
static void sift_down(const float *l, int32_t *c, int k, int r) {
    for (;;) {
        int w = r, a = 2 * r + 1, b = 2 * r + 2;
        if (a < k && before(l, c[w], c[a])) w = a;
        if (b < k && before(l, c[w], c[b])) w = b;
        if (w == r) break;
        int32_t t = c[r]; c[r] = c[w]; c[w] = t;
        r = w;
    }
}

/* Move the k best of c[0..n) to c[0..k) (unsorted: a binary heap with the worst on top); c stays a
 * permutation of its input. */
static void select_top_k(const float *l, int32_t *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(l, c, k, i);
    for (int i = k; i < n; i++) {
        if (!before(l, c[i], c[0])) continue;
        int32_t t = c[0]; /* swap, so c stays a permutation of the candidates */
        c[0] = c[i];
        c[i] = t;
        sift_down(l, c, k, 0);
    }
}

static int32_t argmax(const float *l, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

int32_t ggx_sampler_sample(ggx_sampler *s, float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0) return 0;
    const ggx_sampler_params *p = &s->p;

    /* 1. mask padding rows and NaNs */
    int n = n_vocab;
    if (p->n_vocab_valid > 0 && p->n_vocab_valid < n) n = p->n_vocab_valid;
    for (int i = n; i < n_vocab; i++) logits[i] = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isnan(logits[i])) logits[i] = -INFINITY;

    if (!reserve(s, n_vocab)) return argmax(logits, n);

    /* 2. repeat penalty, once per distinct id in the window */
    if (p->repeat_penalty != 1.0f && s->hist_n > 0) {
        for (int i = 0; i < s->hist_n; i++) {
            int32_t id = s->hist[i];
            if (id < 0 || id >= n || s->seen[id]) continue;
            s->seen[id] = 1;
            if (logits[id] > 0) logits[id] /= p->repeat_penalty;
            else logits[id] *= p->repeat_penalty;
        }
        for (int i = 0; i < s->hist_n; i++) {
            int32_t id = s->hist[i];
            if (id >= 0 && id < n) s->seen[id] = 0;
        }
    }

    /* 3. greedy: first maximum = lowest id among ties */
    if (p->temperature <= 0.0f) return argmax(logits, n);

    /* candidates: every finite logit (if none is finite, nothing can be sampled: argmax) */
    int32_t *c = s->cand;
    int nc = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] > -INFINITY) c[nc++] = i;
    if (nc == 0) return argmax(logits, n);

    /* 4. top-k */
    int32_t *tmp = (int32_t *)s->prob; /* sizeof(double) >= sizeof(int32_t): free until sorted */
    if (p->top_k > 0 && p->top_k < nc) {
        select_top_k(logits, c, nc, p->top_k);
        nc = p->top_k;
    }

    /* probabilities at temperature 1 relative to the best: exp(logit - max); `total` is the
     * mass of the whole candidate set, the denominator of top-p. The same pass sorts the mass
     * into buckets by distance from the best logit (BUCKET_W nats wide), for the shrink below. */
    enum { N_BUCKETS = 64 };
    const double BUCKET_W = 0.5;
    double mx = -INFINITY, total = 0, bucket[N_BUCKETS] = {0};
    for (int i = 0; i < nc; i++) mx = logits[c[i]] > mx ? logits[c[i]] : mx;
    for (int i = 0; i < nc; i++) {
        double d = mx - (double)logits[c[i]], e = exp(-d);
        total += e;
        bucket[d < N_BUCKETS * BUCKET_W ? (int)(d / BUCKET_W) : N_BUCKETS - 1] += e;
    }

    /* Shrink before sorting (sorting a 50k vocabulary costs milliseconds), without changing the
     * result: min-p would drop these ids anyway; and the top-p prefix lies inside the top
     * buckets that already hold the top-p mass (with a margin far above summation rounding). */
    if (p->min_p > 0.0f) {
        int k = 0;
        for (int i = 0; i < nc; i++)
            if (exp((double)logits[c[i]] - mx) >= (double)p->min_p) c[k++] = c[i];
        nc = k; /* the best id always passes (exp(0) = 1 >= min_p) */
    }
    if (p->top_p < 1.0f && nc > 64) {
        double need = (double)p->top_p * total * (1.0 + 1e-9), acc = 0;
        int nb = 0;
        while (nb < N_BUCKETS - 1 && acc < need) acc += bucket[nb++];
        if (acc >= need) { /* keep ids in buckets [0, nb) */
            double dmax = nb * BUCKET_W;
            int k = 0;
            for (int i = 0; i < nc; i++)
                if (mx - (double)logits[c[i]] < dmax) c[k++] = c[i];
            nc = k;
        }
    }
    sort_cand(logits, c, tmp, nc);
    double *pr = s->prob;
    for (int i = 0; i < nc; i++) pr[i] = exp((double)logits[c[i]] - mx);

    /* 5. top-p: shortest prefix whose mass reaches top_p */
    if (p->top_p < 1.0f) {
        double acc = 0, target = (double)p->top_p * total;
        int keep = nc;
        for (int i = 0; i < nc; i++) {
            acc += pr[i];
            if (acc >= target) {
                keep = i + 1;
                break;
            }
        }
        nc = keep;
    }

    /* 6. min-p: relative to the best candidate (pr[0] = 1 after the max shift) */
    if (p->min_p > 0.0f) {
        double thr = (double)p->min_p * pr[0];
        int keep = 1;
        while (keep < nc && pr[keep] >= thr) keep++;
        nc = keep;
    }

    /* 7. temperature and one draw */
    double inv_t = 1.0 / (double)p->temperature, sum = 0;
    for (int i = 0; i < nc; i++) sum += (pr[i] = exp(((double)logits[c[i]] - mx) * inv_t));
    double u = rng_uniform(s) * sum, acc = 0;
    for (int i = 0; i < nc; i++) {
        acc += pr[i];
        if (u < acc) return c[i];
    }
    return c[nc - 1]; /* rounding left u at the very end */
}
