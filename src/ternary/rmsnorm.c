/* Ternary RMSNorm: y = x · rstd ⊙ (trit · scale), the gain a 1 × dim ternary tensor (kind GAIN).
 *
 * Why the gain is ternary too: the system has no trainable float parameter. Its gradient
 * Σ_t dy·x̂ is turned into integers the same way as everywhere else (per-tensor int8 with
 * stochastic rounding, exact int32 column sums), so the gain's state does not depend on the
 * thread count. Per-row float work (rstd, dx) is done by one thread per row in a fixed order. */
#include <math.h>
#include <string.h>

#include "ternary/device_dispatch.h"
#include "ternary/ops_internal.h"

static arb_status check_gain(const arb_ternary *g, const char *what) {
    if (!g || !g->trits) return arb_error(ARB_ERR_INVALID_ARG, "%s: gain is NULL or not initialized", what);
    if (g->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: gain %d is on cuda:%d", what, (int)g->id, g->device.index);
    if (g->rows != 1)
        return arb_error(ARB_ERR_SHAPE, "%s: gain must be 1 x dim, got %lld x %lld", what, (long long)g->rows,
                         (long long)g->cols);
    return ARB_OK;
}

/* Effective gain (dim) = trit · scale[0]. */
static void gain_values(const arb_ternary *g, float *out) {
    for (int64_t i = 0; i < g->cols; i++) out[i] = (float)arb_ternary_get(g, 0, i) * g->scale[0];
}

arb_status arb_ternary_rmsnorm_forward(const arb_ternary *gain, const float *x, int64_t n, float eps, float *y,
                                       float *rstd) {
    ARB_ON_CUDA(gain, arb_cuda_ternary_rmsnorm_forward(gain, x, n, eps, y, rstd));
    const char *what = "arb_ternary_rmsnorm_forward";
    ARB_TRY(check_gain(gain, what));
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n > 0 && (!x || !y || !rstd)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    if (!(eps >= 0.0f)) return arb_error(ARB_ERR_INVALID_ARG, "%s: eps %g must be >= 0", what, (double)eps);
    const int64_t d = gain->cols;
    float *gv = arb_alloc((size_t)d * sizeof(float));
    if (!gv) return arb_error(ARB_ERR_OOM, "%s: dim %lld", what, (long long)d);
    gain_values(gain, gv);
    const arb_tern_kernels *k = arb_tern_kernels_get();
#pragma omp parallel for schedule(static) if (n * d > ARB_OPS_PAR_MIN)
    for (int64_t t = 0; t < n; t++) rstd[t] = k->rms_fwd_row(x + t * d, gv, d, eps, y + t * d);
    arb_free(gv);
    return ARB_OK;
}

/* Columns per chunk of the gain gradient's column sums (one thread per chunk, exact int32). */
#define GAIN_COL_CHUNK ((int64_t)1024)

/* g (dim) = Σ_t pq[t, i], pq = sround(((x·rstd)·dy) · 127/amax) per tensor; c = (amax/127)·scale. */
static arb_status gain_grad(const arb_ternary *gain, const float *x, const float *rstd, const float *dy, int64_t n,
                            arb_rng_key key, int8_t *pq, int32_t *g, float *c) {
    const arb_tern_kernels *k = arb_tern_kernels_get();
    const int64_t d = gain->cols, total = n * d;
    float amax = 0.0f;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : amax) reduction(| : bad) if (total > ARB_OPS_PAR_MIN)
    for (int64_t t = 0; t < n; t++) {
        float a = k->gain_absmax_row(x + t * d, rstd[t], dy + t * d, d, &bad);
        amax = a > amax ? a : amax;
    }
    if (bad) return arb_error(ARB_ERR_INVALID_ARG, "RMSNorm gain gradient has a NaN or infinite value");
    if (amax > 0.0f) {
        const float inv = 127.0f / amax;
#pragma omp parallel for schedule(static) if (total > ARB_OPS_PAR_MIN)
        for (int64_t t = 0; t < n; t++)
            k->gain_sround_row(x + t * d, rstd[t], dy + t * d, d, inv, key, (uint32_t)(t * d), pq + t * d);
    } else {
        memset(pq, 0, (size_t)total); /* inv would be 0: every draw floors to 0 */
    }
    const int64_t nch = (d + GAIN_COL_CHUNK - 1) / GAIN_COL_CHUNK;
#pragma omp parallel for schedule(static) if (total > ARB_OPS_PAR_MIN)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i0 = ch * GAIN_COL_CHUNK, len = d - i0 < GAIN_COL_CHUNK ? d - i0 : GAIN_COL_CHUNK;
        memset(g + i0, 0, (size_t)len * sizeof *g);
        for (int64_t t = 0; t < n; t++) k->add_i8(g + i0, pq + t * d + i0, len);
    }
    *c = (amax / 127.0f) * gain->scale[0];
    return ARB_OK;
}

arb_status arb_upd_rmsnorm_grad(const arb_ternary *gain, const float *x, const float *rstd, const float *dy,
                                int64_t n, arb_rng_key key, int32_t *g, float *c) {
    ARB_TRY(check_gain(gain, "arb_upd_rmsnorm_grad"));
    int8_t *pq = arb_alloc((size_t)(n * gain->cols));
    if (!pq) return arb_error(ARB_ERR_OOM, "arb_upd_rmsnorm_grad: %lld x %lld", (long long)n, (long long)gain->cols);
    arb_status s = gain_grad(gain, x, rstd, dy, n, key, pq, g, c);
    arb_free(pq);
    return s;
}

arb_status arb_ternary_rmsnorm_backward_update(arb_ternary *gain, const float *x, const float *rstd,
                                               const float *dy, int64_t n, float *dx,
                                               const arb_update_params *p, arb_update_state *st,
                                               arb_update_stats *stats) {
    ARB_ON_CUDA(gain, arb_cuda_ternary_rmsnorm_backward_update(gain, x, rstd, dy, n, dx, p, st, stats));
    const char *what = "arb_ternary_rmsnorm_backward_update";
    ARB_TRY(check_gain(gain, what));
    if (p) ARB_TRY(arb_upd_check(gain, n, p, st, what));
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n > 0 && (!x || !rstd || !dy || !dx)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    const int64_t d = gain->cols;
    const arb_tern_kernels *k = arb_tern_kernels_get();
    float *gv = arb_alloc((size_t)d * sizeof(float));
    int8_t *pq = p ? arb_alloc((size_t)(n * d)) : NULL;
    int32_t *g = p ? arb_alloc((size_t)d * sizeof(int32_t)) : NULL;
    arb_status s = ARB_OK;
    if (!gv || (p && (!pq || !g))) {
        s = arb_error(ARB_ERR_OOM, "%s: %lld x %lld", what, (long long)n, (long long)d);
        goto done;
    }
    /* The gain's gradient first: it reads the gain before the update changes it (dx too). */
    float c = 0.0f;
    if (p) {
        s = gain_grad(gain, x, rstd, dy, n, arb_update_key(p->seed, p->step, gain->id, ARB_RNG_GRAD), pq, g, &c);
        if (s != ARB_OK) goto done;
    }
    gain_values(gain, gv);
    /* dx_j = r · (dy_j g_j − x̂_j · mean_i(dy_i g_i x̂_i)), x̂ = x · r */
#pragma omp parallel for schedule(static) if (n * d > ARB_OPS_PAR_MIN)
    for (int64_t t = 0; t < n; t++) k->rms_dx_row(x + t * d, dy + t * d, gv, rstd[t], d, dx + t * d);
    if (p) {
        arb_upd_row_acc acc = {0, 0, 0};
        double norm = st->grad_norm;
        if (!(norm > 0.0)) {
            for (int64_t i = 0; i < d; i++) acc.abs_g += g[i] < 0 ? -(int64_t)g[i] : g[i];
            norm = arb_upd_norm(&c, &acc, 1, d);
            acc.abs_g = 0;
        }
        int32_t mult;
        arb_upd_plan pl = {&mult, 0, arb_update_key(p->seed, p->step, gain->id, ARB_RNG_PRESSURE), p->threshold,
                           p->leak_shift};
        arb_upd_plan_make(&c, 1, (double)p->eta, norm, &mult, &pl.shift);
        arb_upd_row(gain, 0, 0, d, g, &pl, &acc);
        s = arb_upd_finish(gain, &c, &acc, p, st, stats);
    }
done:
    arb_free(gv);
    arb_free(pq);
    arb_free(g);
    return s;
}
