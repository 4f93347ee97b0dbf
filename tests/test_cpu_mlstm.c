/* test_cpu_mlstm.c — the mLSTM recurrence three ways on random data: plain scalar reference
 * (§4 token by token), fused step kernels (every ISA table), and chunkwise (§5) + step tail.
 * Outputs and end states must agree to 1e-5 relative. */
#include "testutil.h"

#include "backends/cpu/cpu_mlstm.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

static uint64_t g_rng;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / (den > 0 ? den : 1);
}

/* §4 in double precision: the yardstick both f32 forms are measured against */
static void ref_double(const ggx_cpu_mlstm_io *io, int S, int dqk, int dv, float eps,
                       const float *C0, const float *n0, float m0, float *h_out, float *C_out,
                       float *n_out, float *m_out, double *cond) {
    double *C = malloc(sizeof(double) * dqk * dv), *n = malloc(sizeof(double) * dqk), m = m0;
    for (int i = 0; i < dqk * dv; i++) C[i] = C0[i];
    for (int i = 0; i < dqk; i++) n[i] = n0[i];
    const double scale = 1.0 / sqrt((double)dqk);
    for (int t = 0; t < S; t++) {
        const float *q = io->q + t * io->ldqk, *k = io->k + t * io->ldqk, *v = io->v + t * io->ldv;
        double ig = io->ig[t * io->ldg], x = io->fg[t * io->ldg];
        double lf = (x < 0 ? x : 0) - log1p(exp(-fabs(x)));
        double mn = fmax(lf + m, ig), fp = exp(lf + m - mn), ip = exp(ig - mn);
        double qn = 0, qa = 0;
        for (int a = 0; a < dqk; a++) {
            n[a] = fp * n[a] + ip * k[a];
            qn += q[a] * scale * n[a];
            qa += fabs(q[a] * scale * n[a]);
        }
        double den = fmax(fabs(qn), exp(-mn)) + eps;
        cond[t] = qa / den; /* how much den = q.n cancels */
        for (int c = 0; c < dv; c++) {
            double num = 0;
            for (int a = 0; a < dqk; a++) {
                C[a * dv + c] = fp * C[a * dv + c] + ip * k[a] * v[c];
                num += q[a] * scale * C[a * dv + c];
            }
            h_out[t * io->ldh + c] = (float)(num / den);
        }
        m = mn;
    }
    for (int i = 0; i < dqk * dv; i++) C_out[i] = (float)C[i];
    for (int i = 0; i < dqk; i++) n_out[i] = (float)n[i];
    *m_out = (float)m;
    free(C), free(n);
}

/* signed_qk = 0: q, k > 0, so den = q.n has no cancellation. signed_qk = 1: q, k of both
 * signs; tokens whose den cancels by more than 100x (their h is ill-conditioned in any f32
 * evaluation order) are left out of the h comparison. Every form must be within 1e-5 of the
 * double-precision reference. */
static void run_case(int S, int NH, int dqk, int dv, int L, float gate_scale, int signed_qk) {
    const int ldqk = NH * dqk, ldv = NH * dv;
    float *q = malloc(4 * (size_t)S * ldqk), *k = malloc(4 * (size_t)S * ldqk);
    float *v = malloc(4 * (size_t)S * ldv), *ig = malloc(4 * (size_t)S * NH);
    float *fg = malloc(4 * (size_t)S * NH);
    for (int i = 0; i < S * ldqk; i++) {
        q[i] = signed_qk ? frand() * 2 : 1.0f + frand();
        k[i] = signed_qk ? frand() * 2 : 0.5f + 0.5f * frand();
    }
    for (int i = 0; i < S * ldv; i++) v[i] = frand();
    for (int i = 0; i < S * NH; i++) {
        ig[i] = 15.0f * tanhf(gate_scale * frand() / 15.0f);
        fg[i] = 15.0f * tanhf((3.0f + gate_scale * frand()) / 15.0f);
    }
    const ggx_cpu_kernels *tabs[3];
    int nt = ggx_cpu_kernels_available(tabs, 3);
    float *scratch = malloc(4 * ggx_cpu_mlstm_scratch_floats(dqk, dv, L));
    size_t nC = (size_t)dqk * dv;
    /* reference for head 1 (nonzero stride offsets), starting from a random state */
    int hd = NH > 1 ? 1 : 0;
    float *C0 = malloc(4 * nC), *n0 = malloc(4 * dqk);
    for (size_t i = 0; i < nC; i++) C0[i] = frand() * 0.1f;
    for (int i = 0; i < dqk; i++) n0[i] = frand() * 0.1f;
    float m0 = 0.5f * frand();
    float *Cr = malloc(4 * nC), *nr = malloc(4 * dqk), mr = m0;
    float *hr = malloc(4 * (size_t)S * ldv), *h = malloc(4 * (size_t)S * ldv);
    memcpy(Cr, C0, 4 * nC), memcpy(nr, n0, 4 * dqk);
    ggx_cpu_mlstm_io io = {q + hd * dqk, k + hd * dqk, v + hd * dv, ig + hd, fg + hd, ldqk, ldv,
                           NH, hr + hd * dv, ldv};
    ggx_cpu_mlstm_ref(&io, S, dqk, dv, 1e-6f, Cr, nr, &mr);
    /* yardstick: the same recurrence in double. The f32 forms are judged by their distance to
     * it; h can be ill-conditioned (den = q.n cancels), so h may be off by up to 4x the plain
     * f32 reference's own error, and never more than 1e-4; states must be within 1e-5. */
    float *hd_ = malloc(4 * (size_t)S * ldv), *Cd = malloc(4 * nC), *nd = malloc(4 * dqk), md;
    double *cond = malloc(sizeof(double) * S);
    {
        ggx_cpu_mlstm_io iod = io;
        iod.h = hd_ + hd * dv;
        ref_double(&iod, S, dqk, dv, 1e-6f, C0, n0, m0, hd_ + hd * dv, Cd, nd, &md, cond);
    }
    double ref_err = 0, hmax = 0;
    int n_ill = 0;
    for (int t = 0; t < S; t++) n_ill += cond[t] > 100;
    TEST_CHECK_MSG(n_ill <= S / 4, "S=%d: %d ill-conditioned tokens (test data too degenerate)", S, n_ill);
    for (int t = 0; t < S; t++)
        for (int c = 0; c < dv && cond[t] <= 100; c++) {
            size_t i = (size_t)t * ldv + hd * dv + c;
            ref_err = fmax(ref_err, fabs((double)hr[i] - hd_[i]));
            hmax = fmax(hmax, fabs((double)hd_[i]));
        }
    ref_err /= hmax > 0 ? hmax : 1;
    const double h_tol = 1e-5;
    (void)signed_qk;
    TEST_CHECK_MSG(ref_err < h_tol, "f32 reference vs double S=%d: %g", S, ref_err);
    TEST_CHECK_MSG(rel_err(Cr, Cd, nC) < 1e-5, "f32 reference C vs double S=%d", S);
    for (int mode = 0; mode < 2; mode++) {
        for (int ti = 0; ti < nt; ti++) {
            float *C = malloc(4 * nC), *n = malloc(4 * dqk), m = m0;
            memcpy(C, C0, 4 * nC), memcpy(n, n0, 4 * dqk);
            memset(h, 0, 4 * (size_t)S * ldv);
            ggx_cpu_mlstm_io io2 = io;
            io2.h = h + hd * dv;
            ggx_cpu_mlstm_head(tabs[ti], &io2, S, dqk, dv, mode ? L : 0, 1e-6f, C, n, &m, scratch);
            /* max |diff| / max |ref| over the head's outputs of all tokens */
            double num = 0, den = 0;
            for (int t = 0; t < S; t++)
                for (int c = 0; c < dv && cond[t] <= 100; c++) {
                    size_t i = (size_t)t * ldv + hd * dv + c;
                    num = fmax(num, fabs((double)h[i] - hd_[i]));
                    den = fmax(den, fabs((double)hd_[i]));
                }
            double eh = num / (den > 0 ? den : 1);
            const char *mn = mode ? "chunkwise" : "step";
            TEST_CHECK_MSG(eh <= h_tol, "%s/%s S=%d dqk=%d dv=%d L=%d: h rel err %g (tol %g)",
                           mn, tabs[ti]->name, S, dqk, dv, L, eh, h_tol);
            TEST_CHECK_MSG(rel_err(C, Cd, nC) < 1e-5, "%s/%s S=%d: C rel err %g", mn,
                           tabs[ti]->name, S, rel_err(C, Cd, nC));
            TEST_CHECK_MSG(rel_err(C, Cr, nC) < 1e-5, "%s/%s S=%d: C vs f32 ref %g", mn,
                           tabs[ti]->name, S, rel_err(C, Cr, nC));
            TEST_CHECK_MSG(rel_err(n, nd, dqk) < 1e-5, "%s/%s S=%d: n rel err %g", mn,
                           tabs[ti]->name, S, rel_err(n, nd, dqk));
            TEST_CHECK_MSG(fabsf(m - md) <= 1e-5f * fmaxf(1.0f, fabsf(md)), "%s/%s: m %g vs %g",
                           mn, tabs[ti]->name, m, md);
            free(C), free(n);
        }
    }
    free(q), free(k), free(v), free(ig), free(fg), free(scratch), free(C0), free(n0), free(Cr);
    free(nr), free(hr), free(h), free(hd_), free(Cd), free(nd), free(cond);
}

int main(void) {
    g_rng = ((uint64_t)time(NULL) * 2654435761ULL) ^ ((uint64_t)getpid() << 20) ^ 5;
    printf("seed %llu\n", (unsigned long long)g_rng);
    for (int sg = 0; sg < 2; sg++) {
        run_case(1, 2, 8, 16, 4, 4.0f, sg);
        run_case(37, 3, 16, 24, 8, 4.0f, sg);    /* 4 chunks + tail of 5 */
        run_case(64, 2, 32, 48, 64, 8.0f, sg);   /* exactly one chunk */
        run_case(150, 4, 24, 40, 64, 15.0f, sg); /* 2 chunks + 22 tail, strong gates */
        run_case(200, 2, 64, 128, 16, 2.0f, sg); /* many small chunks */
    }
    return test_finish("test_cpu_mlstm");
}
