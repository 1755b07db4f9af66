/* Ternary RMSNorm: y = x · rstd ⊙ (trit · scale), the gain a 1 × dim ternary tensor (kind GAIN).
 *
 * Why the gain is ternary too: the system has no trainable float parameter. Its gradient
 * Σ_t dy·x̂ is turned into integers the same way as everywhere else (per-tensor int8 with
 * stochastic rounding, exact int32 column sums), so the gain's state does not depend on the
 * thread count. Per-row float work (rstd, dx) is done by one thread per row in a fixed order. */
#include <math.h>
#include <string.h>

#include "ternary/update_internal.h"

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
    const char *what = "arb_ternary_rmsnorm_forward";
    ARB_TRY(check_gain(gain, what));
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n > 0 && (!x || !y || !rstd)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    if (!(eps >= 0.0f)) return arb_error(ARB_ERR_INVALID_ARG, "%s: eps %g must be >= 0", what, (double)eps);
    const int64_t d = gain->cols;
    float *gv = arb_alloc((size_t)d * sizeof(float));
    if (!gv) return arb_error(ARB_ERR_OOM, "%s: dim %lld", what, (long long)d);
    gain_values(gain, gv);
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * (double)xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
        rstd[t] = r;
        float *yr = y + t * d;
        for (int64_t i = 0; i < d; i++) yr[i] = (xr[i] * r) * gv[i];
    }
    arb_free(gv);
    return ARB_OK;
}

/* g (dim) = Σ_t pq[t, i], pq = sround(((x·rstd)·dy) · 127/amax) per tensor; c = (amax/127)·scale. */
static arb_status gain_grad(const arb_ternary *gain, const float *x, const float *rstd, const float *dy, int64_t n,
                            arb_rng_key key, int8_t *pq, int32_t *g, float *c) {
    const int64_t d = gain->cols, total = n * d;
    float amax = 0.0f;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : amax) reduction(| : bad) if (total > 65536)
    for (int64_t j = 0; j < total; j++) {
        float a = fabsf((x[j] * rstd[j / d]) * dy[j]);
        bad |= !(a <= 3.4028234663852886e38f); /* NaN or infinite */
        amax = a > amax ? a : amax;
    }
    if (bad) return arb_error(ARB_ERR_INVALID_ARG, "RMSNorm gain gradient has a NaN or infinite value");
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t j = 0; j < total; j++) {
        float prod = ((x[j] * rstd[j / d]) * dy[j]) * inv;
        float v = floorf(prod + arb_rand_unit(key, (uint32_t)j));
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        pq[j] = amax > 0.0f ? (int8_t)v : 0;
    }
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t i = 0; i < d; i++) {
        int32_t sum = 0;
        for (int64_t t = 0; t < n; t++) sum += pq[t * d + i];
        g[i] = sum;
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
    const char *what = "arb_ternary_rmsnorm_backward_update";
    ARB_TRY(check_gain(gain, what));
    if (p) ARB_TRY(arb_upd_check(gain, n, p, st, what));
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n > 0 && (!x || !rstd || !dy || !dx)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    const int64_t d = gain->cols;
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
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d, *dr = dy + t * d;
        double r = (double)rstd[t], dot = 0.0;
        for (int64_t i = 0; i < d; i++) dot += (double)dr[i] * (double)gv[i] * ((double)xr[i] * r);
        double mean = dot / (double)d;
        float *o = dx + t * d;
        for (int64_t i = 0; i < d; i++) o[i] = (float)(r * ((double)dr[i] * (double)gv[i] - (double)xr[i] * r * mean));
    }
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
