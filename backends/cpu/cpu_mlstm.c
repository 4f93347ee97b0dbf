/* cpu_mlstm.c — mLSTM step and chunkwise kernels (see cpu_mlstm.h and xlstm-spec.md §4-§5). */
#include "cpu_mlstm.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

float ggx_cpu_logsigmoid(float x) {
    /* min(x, 0) - log1p(exp(-|x|)), as torch computes it */
    return (x < 0.0f ? x : 0.0f) - log1pf(expf(-fabsf(x)));
}

size_t ggx_cpu_mlstm_scratch_floats(int dqk, int dv, int chunk) {
    (void)dv;
    size_t L = chunk > 0 ? (size_t)chunk : 1;
    /* step: qs [dqk]; chunk: b, rev (double) + lf, a, mj, den [L] + S [L*L] + Qp, Kp [L*dqk] */
    size_t step = (size_t)dqk;
    size_t chk = 8 * L + L * L + 2 * L * (size_t)dqk;
    return (step > chk ? step : chk) + 16;
}

void ggx_cpu_mlstm_steps(const ggx_cpu_kernels *kr, const ggx_cpu_mlstm_io *io, int S, int dqk,
                         int dv, float eps, float *C, float *n, float *m, float *scratch) {
    const float scale = 1.0f / sqrtf((float)dqk);
    float *qs = scratch; /* [dqk] */
    for (int t = 0; t < S; t++) {
        const float *q = io->q + t * io->ldqk, *k = io->k + t * io->ldqk;
        const float *v = io->v + t * io->ldv;
        float *h = io->h + t * io->ldh;
        float ig = io->ig[t * io->ldg], lf = ggx_cpu_logsigmoid(io->fg[t * io->ldg]);
        float mp = *m, mn = fmaxf(lf + mp, ig);
        float fp = expf(lf + mp - mn), ip = expf(ig - mn);
        float qn = 0.0f;
        for (int a = 0; a < dqk; a++) {
            qs[a] = q[a] * scale;
            n[a] = fp * n[a] + ip * k[a];
            qn += qs[a] * n[a];
        }
        kr->mlstm_step(C, k, v, qs, fp, ip, dqk, dv, h); /* h = num */
        float den = fmaxf(fabsf(qn), expf(-mn)) + eps;
        for (int b = 0; b < dv; b++) h[b] /= den;
        *m = mn;
    }
}

void ggx_cpu_mlstm_chunk(const ggx_cpu_mlstm_io *io, int L, int dqk, int dv, float eps, float *C,
                         float *n, float *m, float *scratch) {
    const float scale = 1.0f / sqrtf((float)dqk);
    /* the cumulative log-decays are summed in double: over a chunk of strongly forgetting
     * tokens they reach -1000 and f32 differences b_j - b_s would lose ~1e-4 */
    double *b = (double *)scratch, *rev = b + L;
    float *lf = (float *)(rev + L), *a = lf + L, *mj = a + L, *den = mj + L;
    float *S = den + L;                   /* [L, L] */
    float *Qp = S + (size_t)L * L;        /* [L, dqk] */
    float *Kp = Qp + (size_t)L * dqk;     /* [L, dqk] */
    const float mp = *m;

    double acc = 0.0;
    for (int j = 0; j < L; j++) {
        lf[j] = ggx_cpu_logsigmoid(io->fg[j * io->ldg]);
        acc += lf[j];
        b[j] = acc;
    }
    /* b_L - b_j as a reverse cumulative sum (more stable than the difference) */
    rev[L - 1] = 0.0;
    for (int j = L - 2; j >= 0; j--) rev[j] = rev[j + 1] + lf[j + 1];
    const double g = b[L - 1];
    float amax = -INFINITY;
    for (int j = 0; j < L; j++) {
        a[j] = (float)(rev[j] + io->ig[j * io->ldg]);
        amax = fmaxf(amax, a[j]);
    }
    const float mnew = fmaxf((float)(g + mp), amax);

    /* S = (Q K^T) / sqrt(dqk), then the decay matrix with per-row stabilizer m_j */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, dqk, scale, io->q, (int)io->ldqk,
                io->k, (int)io->ldqk, 0.0f, S, L);
    for (int j = 0; j < L; j++) {
        float *Sj = S + (size_t)j * L;
        double minter = b[j] + mp, mintra = -INFINITY;
        for (int s = 0; s <= j; s++) mintra = fmax(mintra, b[j] - b[s] + io->ig[s * io->ldg]);
        double mm = fmax(minter, mintra);
        mj[j] = (float)mm;
        float d = 0.0f;
        for (int s = 0; s <= j; s++) {
            Sj[s] *= expf((float)(b[j] - b[s] + io->ig[s * io->ldg] - mm));
            d += Sj[s];
        }
        for (int s = j + 1; s < L; s++) Sj[s] = 0.0f;
        float e = expf((float)(minter - mm)) * scale;
        const float *qj = io->q + j * io->ldqk;
        float *qp = Qp + (size_t)j * dqk;
        float qn = 0.0f;
        for (int c = 0; c < dqk; c++) {
            qp[c] = qj[c] * e;
            qn += qp[c] * n[c];
        }
        den[j] = d + qn;
    }
    /* H = Qp C_prev + S V */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, dv, dqk, 1.0f, Qp, dqk, C, dv,
                0.0f, io->h, (int)io->ldh);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, dv, L, 1.0f, S, L, io->v,
                (int)io->ldv, 1.0f, io->h, (int)io->ldh);
    for (int j = 0; j < L; j++) {
        float dd = fmaxf(fabsf(den[j]), expf(-mj[j])) + eps;
        float *h = io->h + j * io->ldh;
        for (int c = 0; c < dv; c++) h[c] /= dd;
    }
    /* state: C = e^{g+m-mnew} C + sum_j e^{a_j-mnew} k_j v_j^T ; same for n */
    const float decay = expf((float)(g + mp - mnew));
    for (int c = 0; c < dqk; c++) n[c] *= decay;
    for (int j = 0; j < L; j++) {
        float w = expf(a[j] - mnew);
        const float *kj = io->k + j * io->ldqk;
        float *kp = Kp + (size_t)j * dqk;
        for (int c = 0; c < dqk; c++) {
            kp[c] = kj[c] * w;
            n[c] += kp[c];
        }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dqk, dv, L, 1.0f, Kp, dqk, io->v,
                (int)io->ldv, decay, C, dv);
    *m = mnew;
}

void ggx_cpu_mlstm_head(const ggx_cpu_kernels *kr, const ggx_cpu_mlstm_io *io, int S, int dqk,
                        int dv, int chunk, float eps, float *C, float *n, float *m,
                        float *scratch) {
    ggx_cpu_mlstm_io cur = *io;
    int t = 0;
    if (chunk > 1) {
        for (; t + chunk <= S; t += chunk) {
            ggx_cpu_mlstm_chunk(&cur, chunk, dqk, dv, eps, C, n, m, scratch);
            cur.q += chunk * io->ldqk, cur.k += chunk * io->ldqk, cur.v += chunk * io->ldv;
            cur.ig += chunk * io->ldg, cur.fg += chunk * io->ldg, cur.h += chunk * io->ldh;
        }
    }
    if (t < S) ggx_cpu_mlstm_steps(kr, &cur, S - t, dqk, dv, eps, C, n, m, scratch);
}

void ggx_cpu_mlstm_ref(const ggx_cpu_mlstm_io *io, int S, int dqk, int dv, float eps, float *C,
                       float *n, float *m) {
    const float scale = 1.0f / sqrtf((float)dqk);
    for (int t = 0; t < S; t++) {
        const float *q = io->q + t * io->ldqk, *k = io->k + t * io->ldqk;
        const float *v = io->v + t * io->ldv;
        float *h = io->h + t * io->ldh;
        float ig = io->ig[t * io->ldg];
        float lf = ggx_cpu_logsigmoid(io->fg[t * io->ldg]);
        float mn = fmaxf(lf + *m, ig);
        float fp = expf(lf + *m - mn), ip = expf(ig - mn);
        for (int a = 0; a < dqk; a++)
            for (int c = 0; c < dv; c++) C[a * dv + c] = fp * C[a * dv + c] + ip * k[a] * v[c];
        for (int a = 0; a < dqk; a++) n[a] = fp * n[a] + ip * k[a];
        float qn = 0.0f;
        for (int a = 0; a < dqk; a++) qn += q[a] * scale * n[a];
        float den = fmaxf(fabsf(qn), expf(-mn)) + eps;
        for (int c = 0; c < dv; c++) {
            float num = 0.0f;
            for (int a = 0; a < dqk; a++) num += q[a] * scale * C[a * dv + c];
            h[c] = num / den;
        }
        *m = mn;
    }
}
