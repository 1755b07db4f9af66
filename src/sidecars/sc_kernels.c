/* Sidecar kernels: the scalar reference of every GEMM and elementwise op, the tier dispatch,
 * weight packing, the threaded GEMM drivers, norms, softmax and attention.
 *
 * Why this split: the micro-kernels (one per tier) only compute a block of C; threading,
 * quantization of activations and packing live here once, so the scalar reference and the
 * AVX-512 kernels see identical inputs and the int8 results are bit-exact between them. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sidecars/sc_internal.h"

/* ---------------------------------------------------------------- quantizer */

void sc_quantize_rows(const float *w, int n, int k, int8_t *q, float *s) {
    for (int o = 0; o < n; o++) {
        const float *r = w + (size_t)o * k;
        float amax = 0.f;
        for (int i = 0; i < k; i++) amax = fmaxf(amax, fabsf(r[i]));
        float sc = amax / 127.f; /* in the weight's dtype (fp32), as quanto's AbsmaxOptimizer */
        s[o] = sc;
        for (int i = 0; i < k; i++) {
            float v = sc > 0.f ? nearbyintf(r[i] / sc) : 0.f; /* half to even, true division */
            if (v > 127.f) v = 127.f;
            if (v < -128.f) v = -128.f;
            q[(size_t)o * k + i] = (int8_t)v;
        }
    }
}

/* ---------------------------------------------------------------- packing */

float *sc_falloc(size_t a, size_t b, size_t c) {
    size_t n, bytes;
    if (!arb_mul_size(a, b, &n) || !arb_mul_size(n, c, &n) || !arb_mul_size(n, sizeof(float), &bytes)) return NULL;
    return (float *)arb_alloc(bytes ? bytes : 4);
}

/* Grow-only scratch of the calling thread (slot < SC_SCRATCH_SLOTS): a forward calls the int8
 * GEMM 72+ times with the same few sizes, and a fresh multi-MB buffer per call cost the kernel
 * zeroing every page again (~9% of DINOv2 at batch 32). Freed with the thread. */
enum { SC_SCRATCH_SLOTS = 8, SC_SCRATCH_ACT = 7 }; /* 0, 1: int8 GEMM activations; 2-4: attention's packed K, V
                    and scores; 5, 6: int8 attention's per-head packs and per-thread blocks; 7: a row for sc_lin_forward_act */
static _Thread_local struct { void *p; size_t cap; } g_scratch[SC_SCRATCH_SLOTS];

static void *sc_scratch(int slot, size_t bytes) {
    if (g_scratch[slot].cap < bytes) {
        arb_free(g_scratch[slot].p);
        g_scratch[slot].p = arb_alloc(bytes);
        g_scratch[slot].cap = g_scratch[slot].p ? bytes : 0;
    }
    return g_scratch[slot].p;
}

void sc_packf_from_nk(float *dst, const float *b, size_t ldb, int n, int k) {
    int nb = (n + 15) / 16;
    for (int p = 0; p < nb; p++)
        for (int kk = 0; kk < k; kk++) {
            float *d = dst + ((size_t)p * k + kk) * 16;
            for (int j = 0; j < 16; j++) {
                int col = p * 16 + j;
                d[j] = col < n ? b[(size_t)col * ldb + kk] : 0.f;
            }
        }
}

void sc_packf_from_kn(float *dst, const float *b, size_t ldb, int n, int k) {
    int nb = (n + 15) / 16;
    for (int p = 0; p < nb; p++)
        for (int kk = 0; kk < k; kk++) {
            float *d = dst + ((size_t)p * k + kk) * 16;
            const float *s = b + (size_t)kk * ldb + p * 16;
            int w = n - p * 16 < 16 ? n - p * 16 : 16;
            for (int j = 0; j < w; j++) d[j] = s[j];
            for (int j = w; j < 16; j++) d[j] = 0.f;
        }
}

arb_status sc_packf_init(sc_packf *p, const float *w, int n, int k) {
    memset(p, 0, sizeof *p);
    p->p = sc_falloc((size_t)(n + 15) / 16, (size_t)k, 16);
    if (!p->p) return arb_error(ARB_ERR_OOM, "sidecar: cannot allocate packed weights [%d,%d]", n, k);
    p->n = n;
    p->k = k;
    p->kb = k > SC_KBLOCK_MIN ? SC_KBLOCK : k;
    size_t nb = (size_t)(n + 15) / 16;
    for (int k0 = 0; k0 < k; k0 += p->kb) {
        int kl = k - k0 < p->kb ? k - k0 : p->kb;
        sc_packf_from_nk(p->p + nb * 16 * (size_t)k0, w + k0, (size_t)k, n, kl);
    }
    return ARB_OK;
}

void sc_gemm_f32_packed(int M, const float *A, size_t lda, const sc_packf *B, const float *bias, float *C, size_t ldc,
                        int flags) {
    size_t nb = (size_t)(B->n + 15) / 16;
    for (int k0 = 0; k0 < B->k; k0 += B->kb) {
        int kl = B->k - k0 < B->kb ? B->k - k0 : B->kb;
        sc_gemm_f32(M, B->n, kl, A + k0, lda, B->p + nb * 16 * (size_t)k0, k0 ? NULL : bias, C, ldc,
                    k0 ? flags | SC_EPI_ACCUM : flags);
    }
}

void sc_packf_free(sc_packf *p) {
    arb_free(p->p);
    memset(p, 0, sizeof *p);
}

arb_status sc_packq_init(sc_packq *p, const int8_t *q, const float *s, int n, int k) {
    memset(p, 0, sizeof *p);
    int nb = (n + 15) / 16, kp = (k + 3) & ~3;
    size_t bytes;
    if (!arb_mul_size((size_t)nb * 16, (size_t)kp, &bytes))
        return arb_error(ARB_ERR_OVERFLOW, "sidecar: int8 weights [%d,%d] too large", n, k);
    p->p = (int8_t *)arb_calloc(bytes);
    p->qsum = (int32_t *)arb_calloc((size_t)nb * 16 * sizeof(int32_t));
    p->scale = (float *)arb_calloc((size_t)nb * 16 * sizeof(float));
    if (!p->p || !p->qsum || !p->scale) {
        sc_packq_free(p);
        return arb_error(ARB_ERR_OOM, "sidecar: cannot allocate int8 weights [%d,%d]", n, k);
    }
    p->n = n;
    p->k = k;
    p->kp = kp;
    for (int o = 0; o < n; o++) {
        int pb = o / 16, j = o % 16;
        int32_t sum = 0;
        for (int i = 0; i < k; i++) {
            int8_t v = q[(size_t)o * k + i];
            sum += v;
            p->p[(((size_t)pb * (kp / 4) + i / 4) * 16 + j) * 4 + (i & 3)] = v;
        }
        p->qsum[o] = 128 * sum;
        p->scale[o] = s[o];
    }
    return ARB_OK;
}

void sc_packq_free(sc_packq *p) {
    arb_free(p->p);
    arb_free(p->qsum);
    arb_free(p->scale);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- scalar reference tier */

static void f32_scalar(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                       size_t ldc, int flags, int nb0, int nb1) {
    for (int m = 0; m < M; m++)
        for (int p = nb0; p < nb1; p++)
            for (int j = 0; j < 16 && p * 16 + j < N; j++) {
                int n = p * 16 + j;
                float acc = 0.f;
                const float *b = Bp + (size_t)p * K * 16 + j;
                const float *a = A + (size_t)m * lda;
                for (int k = 0; k < K; k++) acc += a[k] * b[(size_t)k * 16];
                float y = acc + (bias ? bias[n] : 0.f);
                float *c = C + (size_t)m * ldc + n;
                *c = (flags & SC_EPI_ACCUM) ? *c + y : y;
            }
}

static void q8_scalar(int M, const uint8_t *Aq, const float *as, const sc_packq *B, const float *bias, float *C,
                      size_t ldc, int flags, int nb0, int nb1) {
    int kp = B->kp;
    for (int m = 0; m < M; m++)
        for (int p = nb0; p < nb1; p++)
            for (int j = 0; j < 16 && p * 16 + j < B->n; j++) {
                int n = p * 16 + j;
                int32_t acc = 0;
                const uint8_t *a = Aq + (size_t)m * kp;
                const int8_t *b = B->p + (size_t)p * kp * 16 + j * 4;
                for (int k4 = 0; k4 < kp / 4; k4++)
                    for (int t = 0; t < 4; t++) acc += (int32_t)a[k4 * 4 + t] * (int32_t)b[(size_t)k4 * 64 + t];
                float y = (float)(acc - B->qsum[n]) * (as[m] * B->scale[n]);
                if (bias) y = y + bias[n];
                float *c = C + (size_t)m * ldc + n;
                *c = (flags & SC_EPI_ACCUM) ? *c + y : y;
            }
}

static float quant_row_scalar(const float *x, int K, int Kp, uint8_t *u8) {
    float amax = 0.f;
    for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[k]));
    float s = amax / 127.f;
    float inv = amax > 0.f ? 127.f / amax : 0.f;
    for (int k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        v = v > 127.f ? 127.f : (v < -127.f ? -127.f : v);
        u8[k] = (uint8_t)((int)v + 128);
    }
    for (int k = K; k < Kp; k++) u8[k] = 128;
    return s;
}

const sc_gemm_tier sc_tier_scalar = {f32_scalar, q8_scalar, quant_row_scalar};

/* The AVX-512 tier (sc_kernels_avx512.c) needs AVX-512 F/BW/VL/DQ and VNNI; AVX2 + FMA otherwise. */
const sc_gemm_tier *sc_tier(void) {
    arb_cpu_tier t = arb_cpu_tier_get();
    if (t >= ARB_TIER_AVX512 && arb_cpu_features_get()->avx512_vnni) return &sc_tier_avx512;
    if (t >= ARB_TIER_AVX2) return &sc_tier_avx2;
    return &sc_tier_scalar;
}

float sc_quant_row_u8(const float *x, int K, int Kp, uint8_t *u8) { return sc_tier()->quant_row(x, K, Kp, u8); }

/* ---------------------------------------------------------------- GEMM drivers */

/* Multiply-adds issued by the GEMM drivers (for the benchmark's ops count; one atomic per call). */
static _Atomic unsigned long long g_macs;
unsigned long long sc_macs_take(void) { return atomic_exchange(&g_macs, 0); }
void sc_macs_add(unsigned long long n) { atomic_fetch_add_explicit(&g_macs, n, memory_order_relaxed); }

#define SC_MCHUNK 96 /* rows per task: a multiple of the micro-kernels' 6 */
#define SC_NGROUP 4  /* 16-column panels per task (64 columns) */

static bool want_parallel(int tasks, double work) { return tasks > 1 && work > 2e5 && !omp_in_parallel(); }

void sc_gemm_f32(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                 size_t ldc, int flags) {
    if (M <= 0 || N <= 0) return;
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * N * K, memory_order_relaxed);
    const sc_gemm_tier *t = sc_tier();
    int nb = (N + 15) / 16, ng = (nb + SC_NGROUP - 1) / SC_NGROUP, nm = (M + SC_MCHUNK - 1) / SC_MCHUNK;
    int tasks = ng * nm;
#pragma omp parallel for schedule(dynamic, 1) if (want_parallel(tasks, (double)M * N * K))
    for (int task = 0; task < tasks; task++) {
        int mc = task / ng, g = task % ng;
        int m0 = mc * SC_MCHUNK, mr = M - m0 < SC_MCHUNK ? M - m0 : SC_MCHUNK;
        int nb0 = g * SC_NGROUP, nb1 = nb0 + SC_NGROUP < nb ? nb0 + SC_NGROUP : nb;
        t->f32(mr, N, K, A + (size_t)m0 * lda, lda, Bp, bias, C + (size_t)m0 * ldc, ldc, flags, nb0, nb1);
    }
}

/* The tile tasks of an int8 GEMM as an orphaned worksharing loop: inside a parallel region (and
 * not inside another worksharing loop) it splits the tasks over that team, so a caller can quantize
 * rows and multiply in one region (one fork-join per layer instead of two); alone, one thread. */
static void q8_tasks(int M, const uint8_t *aq, const float *as, const sc_packq *B, const float *bias, float *C,
                     size_t ldc, int flags) {
    const sc_gemm_tier *t = sc_tier();
    int kp = B->kp;
    int nb = (B->n + 15) / 16, ng = (nb + SC_NGROUP - 1) / SC_NGROUP, nm = (M + SC_MCHUNK - 1) / SC_MCHUNK;
    int tasks = ng * nm;
#pragma omp for schedule(dynamic, 1) /* a thread that lost its core to another process takes fewer tiles */
    for (int task = 0; task < tasks; task++) {
        int mc = task / ng, g = task % ng;
        int m0 = mc * SC_MCHUNK, mr = M - m0 < SC_MCHUNK ? M - m0 : SC_MCHUNK;
        int nb0 = g * SC_NGROUP, nb1 = nb0 + SC_NGROUP < nb ? nb0 + SC_NGROUP : nb;
        t->q8(mr, aq + (size_t)m0 * kp, as + m0, B, bias, C + (size_t)m0 * ldc, ldc, flags, nb0, nb1);
    }
}

static bool q8_parallel(int M, const sc_packq *B) {
    int nb = (B->n + 15) / 16, tasks = ((nb + SC_NGROUP - 1) / SC_NGROUP) * ((M + SC_MCHUNK - 1) / SC_MCHUNK);
    return want_parallel(tasks, (double)M * B->n * B->kp);
}

void sc_gemm_q8(int M, const float *A, size_t lda, const sc_packq *B, const float *bias, float *C, size_t ldc,
                int flags) {
    if (M <= 0) return;
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * B->n * B->k, memory_order_relaxed);
    const sc_gemm_tier *t = sc_tier();
    int kp = B->kp;
    uint8_t *aq = (uint8_t *)sc_scratch(0, (size_t)M * kp);
    float *as = (float *)sc_scratch(1, (size_t)M * sizeof(float));
    if (!aq || !as) { /* cannot fail softly inside a forward: fall back to the w8 path */
        sc_gemm_w8(M, A, lda, B, bias, C, ldc, flags);
        return;
    }
    bool par = want_parallel(M, (double)M * kp * 4) || q8_parallel(M, B);
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) as[m] = t->quant_row(A + (size_t)m * lda, B->k, kp, aq + (size_t)m * kp);
        q8_tasks(M, aq, as, B, bias, C, ldc, flags);
    }
}

void sc_lin_forward_ln(const sc_lin *l, sc_mode mode, int M, const float *x, const float *gamma, const float *beta,
                       float eps, float *scratch, float *y, size_t ldc, int flags) {
    if (M <= 0) return;
    const int D = l->k, kp = l->q.kp;
    uint8_t *aq = l->quantized && mode == SC_INT8 ? (uint8_t *)sc_scratch(0, (size_t)M * kp) : NULL;
    float *as = aq ? (float *)sc_scratch(1, (size_t)M * sizeof(float)) : NULL;
    if (!aq || !as) { /* float paths (and the no-memory fallback): normalize, then the layer */
        sc_layernorm(x, scratch, M, D, gamma, beta, eps);
        sc_lin_forward(l, mode, M, scratch, (size_t)D, y, ldc, flags);
        return;
    }
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * l->q.n * l->q.k, memory_order_relaxed);
    const sc_gemm_tier *t = sc_tier();
    const sc_ops_tier *ops = sc_ops();
    int nt = omp_get_max_threads() < M ? omp_get_max_threads() : M; /* a scratch row per thread: M rows */
#pragma omp parallel num_threads(nt) if (want_parallel(M, (double)M * D * 8) || q8_parallel(M, &l->q))
    {
        float *row = scratch + (size_t)omp_get_thread_num() * D; /* one L1-sized row per thread */
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            ops->layernorm_row(x + (size_t)m * D, row, D, gamma, beta, eps);
            as[m] = t->quant_row(row, D, kp, aq + (size_t)m * kp);
        }
        q8_tasks(M, aq, as, &l->q, l->bias, y, ldc, flags); /* after the loop's barrier: all rows quantized */
    }
}

void sc_lin_forward_act(const sc_lin *l, sc_mode mode, int M, float *x, size_t lda, void (*act)(float *, size_t), float *y,
                        size_t ldc, int flags) {
    if (M <= 0) return;
    const int K = l->k, kp = l->q.kp;
    uint8_t *aq = l->quantized && mode == SC_INT8 ? (uint8_t *)sc_scratch(0, (size_t)M * kp) : NULL;
    float *as = aq ? (float *)sc_scratch(1, (size_t)M * sizeof(float)) : NULL;
    if (!aq || !as) { /* float paths (and the no-memory fallback): the op in place, then the layer */
#pragma omp parallel for schedule(static) if (want_parallel(M, (double)M * K * 16))
        for (int m = 0; m < M; m++) act(x + (size_t)m * lda, (size_t)K);
        sc_lin_forward(l, mode, M, x, lda, y, ldc, flags);
        return;
    }
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * l->q.n * l->q.k, memory_order_relaxed);
    const sc_gemm_tier *t = sc_tier();
#pragma omp parallel if (want_parallel(M, (double)M * K * 16) || q8_parallel(M, &l->q))
    {
        float *row = (float *)sc_scratch(SC_SCRATCH_ACT, (size_t)K * sizeof(float)); /* this thread's L1 row */
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            float *r = row ? row : x + (size_t)m * lda; /* no row buffer: in place (x is clobbered anyway) */
            if (row) memcpy(row, x + (size_t)m * lda, (size_t)K * sizeof(float));
            act(r, (size_t)K);
            as[m] = t->quant_row(r, K, kp, aq + (size_t)m * kp);
        }
        q8_tasks(M, aq, as, &l->q, l->bias, y, ldc, flags);
    }
}

void sc_gemm_w8(int M, const float *A, size_t lda, const sc_packq *B, const float *bias, float *C, size_t ldc,
                int flags) {
    if (M <= 0) return;
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * B->n * B->k, memory_order_relaxed);
    const sc_gemm_tier *t = sc_tier();
    int K = B->k, kp = B->kp, nb = (B->n + 15) / 16, ng = (nb + SC_NGROUP - 1) / SC_NGROUP;
    /* One 64-column group of s·q at a time (a transient L2-sized panel), all rows through it. */
#pragma omp parallel for schedule(static) if (want_parallel(ng, (double)M * B->n * K))
    for (int g = 0; g < ng; g++) {
        int nb0 = g * SC_NGROUP, nb1 = nb0 + SC_NGROUP < nb ? nb0 + SC_NGROUP : nb;
        float *panel = sc_falloc((size_t)(nb1 - nb0), (size_t)K, 16);
        if (!panel) { /* no scratch: the same sums straight from the packed int8 (slow, same numbers) */
            for (int m = 0; m < M; m++)
                for (int n = nb0 * 16; n < nb1 * 16 && n < B->n; n++) {
                    float acc = 0.f;
                    for (int k = 0; k < K; k++)
                        acc += A[(size_t)m * lda + k] *
                               (B->scale[n] * (float)B->p[(((size_t)(n / 16) * (kp / 4) + k / 4) * 16 + n % 16) * 4 + (k & 3)]);
                    float yv = acc + (bias ? bias[n] : 0.f), *c = C + (size_t)m * ldc + n;
                    *c = (flags & SC_EPI_ACCUM) ? *c + yv : yv;
                }
            continue;
        }
        for (int p = nb0; p < nb1; p++)
            for (int k = 0; k < K; k++)
                for (int j = 0; j < 16; j++)
                    panel[((size_t)(p - nb0) * K + k) * 16 + j] =
                        B->scale[p * 16 + j] * (float)B->p[(((size_t)p * (kp / 4) + k / 4) * 16 + j) * 4 + (k & 3)];
        /* The panel holds columns [nb0*16, ...): shift C, bias and N so the kernel sees panel 0.. */
        int nloc = B->n - nb0 * 16;
        for (int m0 = 0; m0 < M; m0 += SC_MCHUNK) {
            int mr = M - m0 < SC_MCHUNK ? M - m0 : SC_MCHUNK;
            t->f32(mr, nloc, K, A + (size_t)m0 * lda, lda, panel, bias ? bias + nb0 * 16 : NULL,
                   C + (size_t)m0 * ldc + nb0 * 16, ldc, flags, 0, nb1 - nb0);
        }
        arb_free(panel);
    }
}

void sc_lin_forward(const sc_lin *l, sc_mode mode, int M, const float *x, size_t lda, float *y, size_t ldc, int flags) {
    if (!l->quantized) sc_gemm_f32_packed(M, x, lda, &l->f, l->bias, y, ldc, flags);
    else if (mode == SC_INT8W) sc_gemm_w8(M, x, lda, &l->q, l->bias, y, ldc, flags);
    else sc_gemm_q8(M, x, lda, &l->q, l->bias, y, ldc, flags);
}

/* ---------------------------------------------------------------- elementwise (scalar tier) */

static void exp_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i]);
}
static void gelu_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.f + erff(x[i] * 0.70710678118654752f));
}
static void silu_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.f + expf(-x[i]));
}
static void tanh_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}
static void softmax_scalar(float *r, int n, float scale) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        r[j] *= scale;
        mx = r[j] > mx ? r[j] : mx;
    }
    float sum = 0.f;
    for (int j = 0; j < n; j++) sum += (r[j] = expf(r[j] - mx));
    float inv = 1.f / sum;
    for (int j = 0; j < n; j++) r[j] *= inv;
}
static void layernorm_row_scalar(const float *r, float *o, int D, const float *gamma, const float *beta, float eps) {
    double s = 0, ss = 0;
    for (int i = 0; i < D; i++) s += r[i];
    double mean = s / D;
    for (int i = 0; i < D; i++) ss += (r[i] - mean) * (r[i] - mean);
    float inv = (float)(1.0 / sqrt(ss / D + eps));
    float mu = (float)mean;
    for (int i = 0; i < D; i++) o[i] = (r[i] - mu) * inv * gamma[i] + (beta ? beta[i] : 0.f);
}

const sc_ops_tier sc_ops_scalar = {exp_scalar, gelu_scalar, silu_scalar, tanh_scalar, softmax_scalar,
                                   layernorm_row_scalar};

const sc_ops_tier *sc_ops(void) {
    if (arb_cpu_tier_get() >= ARB_TIER_AVX512) return &sc_ops_avx512;
    return &sc_ops_scalar;
}

/* ---------------------------------------------------------------- norms, softmax */


void sc_layernorm(const float *x, float *y, int M, int D, const float *gamma, const float *beta, float eps) {
    const sc_ops_tier *ops = sc_ops();
#pragma omp parallel for schedule(static) if (M > 64 && !omp_in_parallel())
    for (int m = 0; m < M; m++) ops->layernorm_row(x + (size_t)m * D, y + (size_t)m * D, D, gamma, beta, eps);
}

#define SC_GN_CHUNK 256 /* positions per partial sum: fixed, so results do not depend on threads */

arb_status sc_groupnorm_nhwc(const float *x, float *y, size_t P, int C, int G, const float *gamma, const float *beta,
                              float eps, bool silu) {
    if (C < 1 || G < 1 || C % G || P == 0)
        return arb_error(ARB_ERR_INVALID_ARG, "groupnorm: %d channels in %d groups over %zu positions", C, G, P);
    size_t nch = (P + SC_GN_CHUNK - 1) / SC_GN_CHUNK;
    double *part = (double *)calloc(nch * (size_t)C, sizeof(double));
    double *mean_c = (double *)malloc((size_t)C * sizeof(double)), *gs = (double *)malloc((size_t)G * 2 * sizeof(double));
    float *a = (float *)malloc((size_t)C * 2 * sizeof(float));
    if (!part || !mean_c || !gs || !a) {
        free(part), free(mean_c), free(gs), free(a);
        return arb_error(ARB_ERR_OOM, "groupnorm: out of memory for %zu x %d", P, C);
    }
    double *mean_g = gs, *var_g = gs + G;
    float *b = a + C;
    int cg = C / G;
    double cnt = (double)P * cg;
    /* pass 1: per-channel sums per chunk */
#pragma omp parallel for schedule(static) if (P * C > 65536 && !omp_in_parallel())
    for (size_t ch = 0; ch < nch; ch++) {
        double *s = part + ch * C;
        size_t p1 = (ch + 1) * SC_GN_CHUNK < P ? (ch + 1) * SC_GN_CHUNK : P;
        for (size_t p = ch * SC_GN_CHUNK; p < p1; p++) {
            const float *r = x + p * C;
            for (int c = 0; c < C; c++) s[c] += r[c];
        }
    }
    for (int g = 0; g < G; g++) {
        double s = 0;
        for (size_t ch = 0; ch < nch; ch++)
            for (int c = g * cg; c < (g + 1) * cg; c++) s += part[ch * C + c];
        mean_g[g] = s / cnt;
    }
    for (int c = 0; c < C; c++) mean_c[c] = mean_g[c / cg];
    memset(part, 0, nch * (size_t)C * sizeof(double));
    /* pass 2: centered sums of squares (two-pass: no cancellation) */
#pragma omp parallel for schedule(static) if (P * C > 65536 && !omp_in_parallel())
    for (size_t ch = 0; ch < nch; ch++) {
        double *s = part + ch * C;
        size_t p1 = (ch + 1) * SC_GN_CHUNK < P ? (ch + 1) * SC_GN_CHUNK : P;
        for (size_t p = ch * SC_GN_CHUNK; p < p1; p++) {
            const float *r = x + p * C;
            for (int c = 0; c < C; c++) {
                double d = r[c] - mean_c[c];
                s[c] += d * d;
            }
        }
    }
    for (int g = 0; g < G; g++) {
        double s = 0;
        for (size_t ch = 0; ch < nch; ch++)
            for (int c = g * cg; c < (g + 1) * cg; c++) s += part[ch * C + c];
        var_g[g] = s / cnt;
    }
    for (int c = 0; c < C; c++) {
        double inv = 1.0 / sqrt(var_g[c / cg] + eps);
        a[c] = (float)(inv * gamma[c]);
        b[c] = (float)(beta[c] - mean_c[c] * inv * gamma[c]);
    }
    free(part), free(mean_c), free(gs);
    const sc_ops_tier *ops = sc_ops();
#pragma omp parallel for schedule(static) if (P * C > 65536 && !omp_in_parallel())
    for (size_t ch = 0; ch < nch; ch++) {
        size_t p0 = ch * SC_GN_CHUNK, p1 = (ch + 1) * SC_GN_CHUNK < P ? (ch + 1) * SC_GN_CHUNK : P;
        for (size_t p = p0; p < p1; p++) {
            const float *r = x + p * C;
            float *o = y + p * C;
            for (int c = 0; c < C; c++) o[c] = r[c] * a[c] + b[c];
        }
        if (silu) ops->silu(y + p0 * C, (p1 - p0) * C);
    }
    free(a);
    return ARB_OK;
}

void sc_softmax_rows(float *s, int M, int N, size_t lds) {
    const sc_ops_tier *ops = sc_ops();
    for (int m = 0; m < M; m++) ops->softmax(s + (size_t)m * lds, N, 1.f);
}

/* ---------------------------------------------------------------- attention */

#define SC_ATT_QCHUNK 48

arb_status sc_attention(int Tq, int Tk, int H, int dh, const float *q, size_t ldq, const float *k, size_t ldk,
                        const float *v, size_t ldv, float *o, size_t ldo, float scale, bool causal) {
    size_t kpn = (size_t)((Tk + 15) / 16) * dh * 16, vpn = (size_t)((dh + 15) / 16) * Tk * 16, nb;
    int nq = (Tq + SC_ATT_QCHUNK - 1) / SC_ATT_QCHUNK, tasks = H * nq;
    /* scratch reused across calls (a forward calls this per layer and batch item) */
    float *kp = arb_mul_size((size_t)H * kpn, sizeof(float), &nb) ? (float *)sc_scratch(2, nb) : NULL;
    float *vp = arb_mul_size((size_t)H * vpn, sizeof(float), &nb) ? (float *)sc_scratch(3, nb) : NULL;
    float *sbuf = arb_mul_size((size_t)omp_get_max_threads() * SC_ATT_QCHUNK * (size_t)Tk, sizeof(float), &nb)
                      ? (float *)sc_scratch(4, nb)
                      : NULL;
    if (!kp || !vp || !sbuf)
        return arb_error(ARB_ERR_OOM, "sidecar attention: cannot allocate scratch for %d×%d×%d", H, Tq, Tk);
    bool par = !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par && H > 1)
    for (int h = 0; h < H; h++) {
        sc_packf_from_nk(kp + h * kpn, k + (size_t)h * dh, ldk, Tk, dh);
        sc_packf_from_kn(vp + h * vpn, v + (size_t)h * dh, ldv, dh, Tk);
    }
#pragma omp parallel for schedule(dynamic, 1) if (par && tasks > 1)
    for (int task = 0; task < tasks; task++) {
        int h = task / nq, q0 = (task % nq) * SC_ATT_QCHUNK;
        int rows = Tq - q0 < SC_ATT_QCHUNK ? Tq - q0 : SC_ATT_QCHUNK;
        float *s = sbuf + (size_t)(par ? omp_get_thread_num() : 0) * SC_ATT_QCHUNK * Tk;
        sc_gemm_f32(rows, Tk, dh, q + (size_t)q0 * ldq + (size_t)h * dh, ldq, kp + h * kpn, NULL, s, (size_t)Tk, 0);
        const sc_ops_tier *ops = sc_ops();
        for (int i = 0; i < rows; i++) {
            float *r = s + (size_t)i * Tk;
            int n = causal && q0 + i + 1 < Tk ? q0 + i + 1 : Tk; /* causal: keys past the query get weight 0 */
            ops->softmax(r, n, scale);
            for (int j = n; j < Tk; j++) r[j] = 0.f;
        }
        sc_gemm_f32(rows, dh, Tk, s, (size_t)Tk, vp + h * vpn, NULL, o + (size_t)q0 * ldo + (size_t)h * dh, ldo, 0);
    }
    return ARB_OK;
}

/* ---------------------------------------------------------------- Moonshine CPU (session 3)
 * Why: a third of Moonshine's work is float by the reference's quantization rules (Conv1d and
 * the attention products). On this class of CPU vpdpbusd does 4.3× and vpdpwssd 2× the fp32 FMA
 * multiply-adds per cycle (vdpbf16ps only 0.5×), so the INT8 mode runs them as integer GEMMs. */

arb_status sc_pack16_from_packf(sc_pack16 *q, const sc_packf *f) {
    memset(q, 0, sizeof *q);
    int n = f->n, k = f->k, kp = (k + 1) & ~1, nb = (n + 15) / 16;
    size_t nb16 = (size_t)nb * 16, cnt;
    if (!arb_mul_size(nb16, (size_t)kp, &cnt) || !arb_mul_size(cnt, sizeof(int16_t), &cnt))
        return arb_error(ARB_ERR_OVERFLOW, "sidecar: weights [%d,%d] too large", n, k);
    q->p = (int16_t *)arb_calloc(cnt);
    q->scale = (float *)arb_calloc(nb16 * sizeof(float));
    float *row = sc_falloc((size_t)k, 1, 1);
    if (!q->p || !q->scale || !row) {
        arb_free(row);
        sc_pack16_free(q);
        return arb_error(ARB_ERR_OOM, "sidecar: out of memory for an int16 copy of [%d,%d]", n, k);
    }
    q->n = n, q->k = k, q->kp = kp;
    for (int o = 0; o < n; o++) {
        for (int k0 = 0; k0 < k; k0 += f->kb) { /* undo the (K-blocked) panel packing */
            int kl = k - k0 < f->kb ? k - k0 : f->kb;
            const float *blk = f->p + nb16 * (size_t)k0 + ((size_t)(o / 16) * kl) * 16 + o % 16;
            for (int i = 0; i < kl; i++) row[k0 + i] = blk[(size_t)i * 16];
        }
        float amax = 0.f;
        for (int i = 0; i < k; i++) amax = fmaxf(amax, fabsf(row[i]));
        float inv = amax > 0.f ? (float)SC_W16_WMAX / amax : 0.f;
        q->scale[o] = amax / (float)SC_W16_WMAX;
        int16_t *dst = q->p + (size_t)(o / 16) * kp * 16 + (o % 16) * 2;
        for (int i = 0; i < k; i++) {
            float v = nearbyintf(row[i] * inv);
            v = v > SC_W16_WMAX ? SC_W16_WMAX : (v < -SC_W16_WMAX ? -SC_W16_WMAX : v);
            dst[(size_t)(i / 2) * 32 + (i & 1)] = (int16_t)v;
        }
    }
    arb_free(row);
    return ARB_OK;
}

void sc_pack16_free(sc_pack16 *q) {
    arb_free(q->p);
    arb_free(q->scale);
    memset(q, 0, sizeof *q);
}

void sc_gemm_w16(int M, const float *A, size_t lda, const sc_pack16 *B, const float *bias, float *C, size_t ldc) {
    const sc_att_tier *at = sc_att();
    if (M <= 0) return;
    int kp = B->kp, nb = (B->n + 15) / 16, ng = (nb + SC_NGROUP - 1) / SC_NGROUP, nm = (M + SC_MCHUNK - 1) / SC_MCHUNK;
    int tasks = ng * nm;
    int16_t *aq = (int16_t *)sc_scratch(0, (size_t)M * kp * sizeof(int16_t));
    float *as = (float *)sc_scratch(1, (size_t)M * sizeof(float));
    if (!at || !aq || !as) { /* no int16 kernel or no memory: the float layer's numbers are not kept, so
                                compute the same product from the int16 weights in float */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < B->n; n++) {
                float acc = 0.f;
                for (int k = 0; k < B->k; k++)
                    acc += A[(size_t)m * lda + k] * (B->scale[n] * B->p[((size_t)(n / 16) * (kp / 2) + k / 2) * 32 + (n % 16) * 2 + (k & 1)]);
                C[(size_t)m * ldc + n] = acc + (bias ? bias[n] : 0.f);
            }
        return;
    }
    atomic_fetch_add_explicit(&g_macs, (unsigned long long)M * B->n * B->k, memory_order_relaxed);
#pragma omp parallel if (want_parallel(M, (double)M * kp * 4) || want_parallel(tasks, (double)M * B->n * kp))
    {
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) as[m] = at->quant_row16(A + (size_t)m * lda, B->k, kp, aq + (size_t)m * kp);
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < tasks; task++) {
            int mc = task / ng, g = task % ng;
            int m0 = mc * SC_MCHUNK, mr = M - m0 < SC_MCHUNK ? M - m0 : SC_MCHUNK;
            int nb0 = g * SC_NGROUP, nb1 = nb0 + SC_NGROUP < nb ? nb0 + SC_NGROUP : nb;
            at->w16(mr, aq + (size_t)m0 * kp, as + m0, B, C + (size_t)m0 * ldc, ldc, 0, nb0, nb1);
            if (bias) {
                int n1 = nb1 * 16 < B->n ? nb1 * 16 : B->n;
                for (int m = m0; m < m0 + mr; m++)
                    for (int n = nb0 * 16; n < n1; n++) C[(size_t)m * ldc + n] += bias[n];
            }
        }
    }
}

void sc_pack_keys_q8(sc_packq *p, const float *k, size_t ldk, int Tk, int dh) {
    const sc_gemm_tier *t = sc_tier();
    int kp = (dh + 3) & ~3, nb = (Tk + 15) / 16;
    float mean[SC_ATT_Q8_MAXDH], row[SC_ATT_Q8_MAXDH];
    uint8_t u[SC_ATT_Q8_MAXDH];
    for (int d = 0; d < dh; d++) mean[d] = 0.f;
    for (int j = 0; j < Tk; j++)
        for (int d = 0; d < dh; d++) mean[d] += k[(size_t)j * ldk + d];
    for (int d = 0; d < dh; d++) mean[d] /= (float)Tk;
    p->n = Tk, p->k = dh, p->kp = kp;
    for (int j = 0; j < nb * 16; j++) {
        int8_t *dst = p->p + (size_t)(j / 16) * kp * 16 + (size_t)(j % 16) * 4; /* 4 k per column, 64 B per k group */
        float s = 0.f;
        int32_t sum = 0;
        if (j < Tk) {
            for (int d = 0; d < dh; d++) row[d] = k[(size_t)j * ldk + d] - mean[d];
            s = t->quant_row(row, dh, kp, u);
            for (int i = 0; i < kp; i++) sum += u[i] - 128;
        } else memset(u, 128, (size_t)kp);
        for (int i4 = 0; i4 < kp / 4; i4++) {
            uint32_t w;
            memcpy(&w, u + 4 * i4, 4);
            w ^= 0x80808080u; /* u8 + 128 → s8 */
            memcpy(dst + (size_t)i4 * 64, &w, 4);
        }
        p->qsum[j] = 128 * sum;
        p->scale[j] = s;
    }
}

static void pack_values_scalar(sc_pack16 *p, const float *v, size_t ldv, int Tk, int dh) {
    int kp = (Tk + 1) & ~1, nb = (dh + 15) / 16;
    float amax[SC_ATT_Q8_MAXDH], inv[SC_ATT_Q8_MAXDH];
    for (int d = 0; d < dh; d++) amax[d] = 0.f;
    for (int j = 0; j < Tk; j++)
        for (int d = 0; d < dh; d++) amax[d] = fmaxf(amax[d], fabsf(v[(size_t)j * ldv + d]));
    p->n = dh, p->k = Tk, p->kp = kp;
    for (int d = 0; d < nb * 16; d++) {
        p->scale[d] = d < dh ? amax[d] / 127.f : 0.f;
        if (d < dh) inv[d] = amax[d] > 0.f ? 127.f / amax[d] : 0.f;
    }
    for (int pb = 0; pb < nb; pb++) {
        int16_t *dst = p->p + (size_t)pb * kp * 16;
        for (int j = 0; j < kp; j++)
            for (int jj = 0; jj < 16; jj++) {
                int d = pb * 16 + jj;
                float x = j < Tk && d < dh ? nearbyintf(v[(size_t)j * ldv + d] * inv[d]) : 0.f;
                x = x > 127.f ? 127.f : (x < -127.f ? -127.f : x);
                dst[((size_t)(j / 2) * 16 + jj) * 2 + (j & 1)] = (int16_t)x;
            }
    }
}

void sc_pack_values_w16(sc_pack16 *p, const float *v, size_t ldv, int Tk, int dh) {
    const sc_att_tier *at = sc_att();
    (at ? at->pack_values : pack_values_scalar)(p, v, ldv, Tk, dh);
}

static void w16_scalar(int M, const int16_t *A, const float *as, const sc_pack16 *B, float *C, size_t ldc, int flags,
                       int nb0, int nb1) {
    int kp = B->kp;
    for (int m = 0; m < M; m++)
        for (int p = nb0; p < nb1; p++)
            for (int j = 0; j < 16 && p * 16 + j < B->n; j++) {
                int n = p * 16 + j;
                float *c = C + (size_t)m * ldc + n;
                const int16_t *a = A + (size_t)m * kp, *b = B->p + (size_t)p * kp * 16 + j * 2;
                for (int k0 = 0; k0 < kp; k0 += SC_W16_KBLOCK) {
                    int k1 = kp - k0 < SC_W16_KBLOCK ? kp : k0 + SC_W16_KBLOCK;
                    int32_t acc = 0;
                    for (int k = k0; k < k1; k += 2)
                        acc += (int32_t)a[k] * b[(size_t)k * 16] + (int32_t)a[k + 1] * b[(size_t)k * 16 + 1];
                    float y = (float)acc * (as[m] * B->scale[n]);
                    *c = (k0 == 0 && !(flags & SC_EPI_ACCUM)) ? y : *c + y;
                }
            }
}

static float quant_row16_scalar(const float *x, int K, int Kp, int16_t *q) {
    float amax = 0.f;
    for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[k]));
    float inv = amax > 0.f ? (float)SC_W16_WMAX / amax : 0.f;
    for (int k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        q[k] = (int16_t)(v > SC_W16_WMAX ? SC_W16_WMAX : (v < -SC_W16_WMAX ? -SC_W16_WMAX : v));
    }
    for (int k = K; k < Kp; k++) q[k] = 0;
    return amax / (float)SC_W16_WMAX;
}

static float softmax_q16_scalar(const float *s, int n, float scale, int16_t *p, int np) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) mx = fmaxf(mx, s[j] * scale);
    int64_t sum = 0;
    for (int j = 0; j < n; j++) {
        int v = (int)nearbyintf(expf(s[j] * scale - mx) * (float)SC_P16_MAX);
        p[j] = (int16_t)v;
        sum += v;
    }
    for (int j = n; j < np; j++) p[j] = 0;
    return sum > 0 ? 1.f / (float)sum : 0.f;
}

const sc_att_tier sc_att_scalar = {w16_scalar, softmax_q16_scalar, pack_values_scalar, quant_row16_scalar};

const sc_att_tier *sc_att(void) {
    return sc_tier() == &sc_tier_avx512 ? &sc_att_avx512 : NULL;
}

#define SC_AL64(x) (((x) + 63) & ~(size_t)63)

arb_status sc_attention_q8(int Tq, int Tk, int H, int dh, const float *q, size_t ldq, const float *k, size_t ldk,
                           const float *v, size_t ldv, float *o, size_t ldo, float scale) {
    const sc_att_tier *at = sc_att();
    const sc_gemm_tier *t = sc_tier();
    if (!at) return arb_error(ARB_ERR_UNSUPPORTED, "sidecar int8 attention: needs AVX-512 VNNI");
    if (Tq < 1 || Tk < 1 || H < 1 || dh < 1 || dh > SC_ATT_Q8_MAXDH)
        return arb_error(ARB_ERR_INVALID_ARG, "sidecar int8 attention: %d heads of %d, %d×%d (head dim ≤ %d)", H, dh, Tq,
                         Tk, SC_ATT_Q8_MAXDH);
    const int nbk = (Tk + 15) / 16, kpk = (dh + 3) & ~3, nbv = (dh + 15) / 16, kpv = (Tk + 1) & ~1;
    const int QC = SC_ATT_QCHUNK, nq = (Tq + QC - 1) / QC, tasks = H * nq, nt = omp_get_max_threads();
    /* per head: K int8 panels + qsum + scale, V int16 panels + scale; per thread: Q u8 rows, their
     * scales, a score block, its int16 probabilities and their scales */
    size_t kq = SC_AL64((size_t)nbk * 16 * kpk), ks = SC_AL64((size_t)nbk * 16 * 4), vq = SC_AL64((size_t)nbv * 16 * kpv * 2),
           vs = SC_AL64((size_t)nbv * 16 * 4), head = kq + 2 * ks + vq + vs;
    size_t ta = SC_AL64((size_t)QC * kpk), tf = SC_AL64((size_t)QC * 4), tsb = SC_AL64((size_t)QC * Tk * 4),
           tp = SC_AL64((size_t)QC * kpv * 2), thr = ta + 2 * tf + tsb + tp, hb, tb;
    unsigned char *hs = arb_mul_size(head, (size_t)H, &hb) ? (unsigned char *)sc_scratch(5, hb) : NULL;
    unsigned char *ts = arb_mul_size(thr, (size_t)nt, &tb) ? (unsigned char *)sc_scratch(6, tb) : NULL;
    if (!hs || !ts) return arb_error(ARB_ERR_OOM, "sidecar int8 attention: no scratch for %d×%d×%d", H, Tq, Tk);
    sc_macs_add(2ull * H * Tq * Tk * dh);
    bool par = !omp_in_parallel() && tasks > 1;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++) {
            unsigned char *b = hs + (size_t)h * head;
            sc_packq K = {0, 0, 0, (int8_t *)b, (int32_t *)(b + kq), (float *)(b + kq + ks)};
            sc_pack16 V = {0, 0, 0, (int16_t *)(b + kq + 2 * ks), (float *)(b + kq + 2 * ks + vq)};
            sc_pack_keys_q8(&K, k + (size_t)h * dh, ldk, Tk, dh);
            sc_pack_values_w16(&V, v + (size_t)h * dh, ldv, Tk, dh);
        }
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < tasks; task++) {
            int h = task / nq, q0 = (task % nq) * QC, rows = Tq - q0 < QC ? Tq - q0 : QC;
            unsigned char *b = hs + (size_t)h * head, *w = ts + (size_t)(par ? omp_get_thread_num() : 0) * thr;
            sc_packq K = {Tk, dh, kpk, (int8_t *)b, (int32_t *)(b + kq), (float *)(b + kq + ks)};
            sc_pack16 V = {dh, Tk, kpv, (int16_t *)(b + kq + 2 * ks), (float *)(b + kq + 2 * ks + vq)};
            uint8_t *aq = w;
            float *as = (float *)(w + ta), *ps = (float *)(w + ta + tf), *sb = (float *)(w + ta + 2 * tf);
            int16_t *pb = (int16_t *)(w + ta + 2 * tf + tsb);
            for (int i = 0; i < rows; i++)
                as[i] = t->quant_row(q + (size_t)(q0 + i) * ldq + (size_t)h * dh, dh, kpk, aq + (size_t)i * kpk);
            t->q8(rows, aq, as, &K, NULL, sb, (size_t)Tk, 0, 0, nbk);
            for (int i = 0; i < rows; i++) ps[i] = at->softmax_q16(sb + (size_t)i * Tk, Tk, scale, pb + (size_t)i * kpv, kpv);
            at->w16(rows, pb, ps, &V, o + (size_t)q0 * ldo + (size_t)h * dh, ldo, 0, 0, nbv);
        }
    } /* one parallel region: packing, then the tasks after the loop's barrier */
    return ARB_OK;
}
