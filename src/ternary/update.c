/* The integer update rule: host-side pieces (gradient quantization, the fixed-point plan, the
 * E evidence rule, the finish) and the plain scalar reference of the fused linear
 * backward+update that the AVX2, AVX-512 and CUDA kernels are tested against bit for bit.
 * See update_internal.h for the five steps and docs/TERNARY.md for the reasons. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ternary/ops_internal.h"

arb_status arb_upd_check(const arb_ternary *w, int64_t n, const arb_update_params *p, const arb_update_state *st,
                         const char *what) {
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "%s: ternary tensor is NULL or not initialized", what);
    if (w->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: ternary tensor %d is on cuda:%d; this is the host path", what,
                         (int)w->id, w->device.index);
    if (n < 0 || n > ARB_UPD_MAX_N)
        return arb_error(ARB_ERR_SHAPE, "%s: %lld rows of gradient (at most %lld per call: 127*127*n must fit int32)",
                         what, (long long)n, (long long)ARB_UPD_MAX_N);
    if (!p || !st) return arb_error(ARB_ERR_INVALID_ARG, "%s: update params or state is NULL", what);
    if (p->threshold < 1 || p->threshold > 127)
        return arb_error(ARB_ERR_INVALID_ARG, "%s: threshold T = %d outside 1..127", what, (int)p->threshold);
    if (p->leak_shift < 0 || p->leak_shift > 15)
        return arb_error(ARB_ERR_INVALID_ARG, "%s: leak shift k = %d outside 0..15", what, (int)p->leak_shift);
    if (p->exp_threshold < 1 || p->exp_threshold > 127)
        return arb_error(ARB_ERR_INVALID_ARG, "%s: E threshold R = %d outside 1..127", what, (int)p->exp_threshold);
    if (!(p->eta >= 0.0f) || !isfinite(p->eta) || !(p->eta_exp >= 0.0f) || !isfinite(p->eta_exp))
        return arb_error(ARB_ERR_INVALID_ARG, "%s: eta %g / eta_exp %g must be finite and >= 0", what, (double)p->eta,
                         (double)p->eta_exp);
    if (p->update_exp && (!w->exp || !w->exp_evidence))
        return arb_error(ARB_ERR_INVALID_ARG, "%s: tensor %d has a fixed exponent (no E state); update_exp must be off",
                         what, (int)w->id);
    if (!(st->grad_norm >= 0.0) || !isfinite(st->grad_norm))
        return arb_error(ARB_ERR_INVALID_ARG, "%s: update state grad_norm %g is not a finite value >= 0", what,
                         st->grad_norm);
    return ARB_OK;
}

arb_status arb_upd_quantize_grad(const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows,
                                 arb_rng_key key, int8_t *hq, float *c) {
    float *amax = c; /* c holds the column absmax until the end */
    for (int64_t o = 0; o < rows; o++) amax[o] = 0.0f;
    int nan = 0;
    for (int64_t t = 0; t < n; t++) {
        for (int64_t o = 0; o < rows; o++) {
            float h = (dy[t * rows + o] * scale[o]) * xs[t];
            float a = fabsf(h);
            nan |= a != a;
            amax[o] = a > amax[o] ? a : amax[o];
        }
    }
    for (int64_t o = 0; o < rows; o++) nan |= !isfinite(amax[o]);
    if (nan) return arb_error(ARB_ERR_INVALID_ARG, "gradient has a NaN or infinite value (%lld x %lld)",
                              (long long)n, (long long)rows);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t o = 0; o < rows; o++) {
            if (amax[o] == 0.0f) {
                hq[t * rows + o] = 0;
                continue;
            }
            float inv = 127.0f / amax[o];
            float h = (dy[t * rows + o] * scale[o]) * xs[t];
            float prod = h * inv;
            hq[t * rows + o] = arb_ops_q8(floorf(prod + arb_rand_unit(key, (uint32_t)(t * rows + o))));
        }
    }
    for (int64_t o = 0; o < rows; o++) c[o] = amax[o] / 127.0f;
    return ARB_OK;
}

void arb_upd_plan_make(const float *c, int64_t rows, double eta, double norm, int32_t *mult, int *shift) {
    double normp = ARB_UPD_RMS_PER_MEANABS * norm, rmax = 0.0;
    *shift = 0;
    for (int64_t o = 0; o < rows; o++) mult[o] = 0;
    if (!(norm > 0.0) || !(eta > 0.0)) return;
    for (int64_t o = 0; o < rows; o++) {
        double r = eta * (double)c[o] / normp;
        rmax = r > rmax ? r : rmax;
    }
    if (!(rmax > 0.0) || !isfinite(rmax)) return;
    int e;
    frexp(rmax, &e); /* rmax = f · 2^e, f in [0.5, 1) */
    int s = 30 - e;  /* so m ≤ 2^30 */
    s = s < 0 ? 0 : (s > 62 ? 62 : s);
    for (int64_t o = 0; o < rows; o++) {
        double v = ldexp(eta * (double)c[o] / normp, s);
        mult[o] = v >= 2147483647.0 ? INT32_MAX : (int32_t)floor(v + 0.5);
    }
    *shift = s;
}

double arb_upd_norm(const float *c, const arb_upd_row_acc *acc, int64_t rows, int64_t cols) {
    double s = 0.0;
    for (int64_t o = 0; o < rows; o++) s += (double)c[o] * (double)acc[o].abs_g;
    return s / ((double)rows * (double)cols);
}

void arb_upd_row(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                 arb_upd_row_acc *acc) {
    arb_tern_kernels_get()->upd_row(w, o, c0, c1, g, pl, acc);
}

void arb_upd_row_ref(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                     arb_upd_row_acc *acc) {
    int32_t m = pl->mult[o];
    int8_t *a = w->accum + o * w->cols;
    int64_t abs_g = 0, ge = 0, flips = 0;
    for (int64_t i = c0; i < c1; i++) {
        int32_t gi = g[i - c0];
        int t = arb_ternary_get(w, o, i);
        abs_g += gi < 0 ? -(int64_t)gi : (int64_t)gi;
        ge += (int64_t)t * gi;
        int nt = arb_upd_weight(t, &a[i], gi, m, pl, arb_rand_u32(pl->key, (uint32_t)(o * w->cols + i)));
        if (nt != t) {
            arb_ternary_set(w, o, i, nt);
            flips++;
        }
    }
    acc->abs_g += abs_g;
    acc->ge += ge;
    acc->flips += flips;
}

int32_t arb_upd_exp_step(arb_ternary *w, const double *ge_real, const arb_update_params *p) {
    double ss = 0.0;
    for (int64_t o = 0; o < w->rows; o++) ss += ge_real[o] * ge_real[o];
    double rms = sqrt(ss / (double)w->rows);
    if (!(rms > 0.0) || !isfinite(rms)) return 0;
    arb_rng_key key = arb_update_key(p->seed, p->step, w->id, ARB_RNG_EXP);
    int32_t moves = 0;
    for (int64_t o = 0; o < w->rows; o++) {
        double v = (double)p->eta_exp * ge_real[o] / rms;
        double d = floor(v + (double)arb_rand_unit(key, (uint32_t)o));
        d = d > 127.0 ? 127.0 : (d < -127.0 ? -127.0 : d);
        int r = w->exp_evidence[o] + (int)d;
        if (r >= p->exp_threshold || r <= -p->exp_threshold) {
            int e = w->exp[o] - (r > 0 ? 1 : -1); /* positive d loss / d log scale: shrink */
            e = e < ARB_EXP_MIN ? ARB_EXP_MIN : (e > ARB_EXP_MAX ? ARB_EXP_MAX : e);
            if (e != w->exp[o]) moves++;
            w->exp[o] = (int8_t)e;
            r = 0;
        }
        w->exp_evidence[o] = (int8_t)r;
    }
    return moves;
}

arb_status arb_upd_finish(arb_ternary *w, const float *c, const arb_upd_row_acc *acc, const arb_update_params *p,
                          arb_update_state *st, arb_update_stats *stats) {
    st->grad_norm = arb_upd_norm(c, acc, w->rows, w->cols);
    int32_t moves = 0;
    if (p->update_exp) {
        double *ge = malloc((size_t)w->rows * sizeof(double));
        if (!ge) return arb_error(ARB_ERR_OOM, "E update of tensor %d: %lld rows", (int)w->id, (long long)w->rows);
        for (int64_t o = 0; o < w->rows; o++) ge[o] = (double)c[o] * (double)acc[o].ge;
        moves = arb_upd_exp_step(w, ge, p);
        free(ge);
    }
    ARB_TRY(arb_ternary_refresh(w));
    if (stats) {
        memset(stats, 0, sizeof *stats);
        for (int64_t o = 0; o < w->rows; o++) {
            stats->flips += acc[o].flips;
            stats->zeros += w->cols - w->nnz[o];
        }
        stats->weights = w->rows * w->cols;
        stats->exp_moves = moves;
    }
    return ARB_OK;
}

/* Gint[o, 0..cols) = Σ_t hq[t, o] · xq[t, i]. */
static void grad_row_ref(const int8_t *hq, const int8_t *xq, int64_t n, int64_t rows, int64_t cols, int64_t ldx,
                         int64_t o, int32_t *g) {
    for (int64_t i = 0; i < cols; i++) g[i] = 0;
    for (int64_t t = 0; t < n; t++) {
        int32_t h = hq[t * rows + o];
        if (!h) continue;
        const int8_t *x = xq + t * ldx;
        for (int64_t i = 0; i < cols; i++) g[i] += h * x[i];
    }
}

arb_status arb_ternary_linear_backward_update_ref(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy,
                                                  int64_t n, const arb_update_params *p, arb_update_state *st,
                                                  arb_update_stats *stats) {
    ARB_TRY(arb_upd_check(w, n, p, st, "arb_ternary_linear_backward_update_ref"));
    if (n > 0 && (!xq || !xs || !dy))
        return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_linear_backward_update_ref: NULL input");
    int64_t rows = w->rows, cols = w->cols;
    int8_t *hq = arb_alloc((size_t)(n * rows));
    float *c = arb_alloc((size_t)rows * sizeof(float));
    int32_t *mult = arb_alloc((size_t)rows * sizeof(int32_t));
    int32_t *g = arb_alloc((size_t)cols * sizeof(int32_t));
    arb_upd_row_acc *acc = arb_calloc((size_t)rows * sizeof *acc);
    arb_status s = ARB_OK;
    if (!hq || !c || !mult || !g || !acc) {
        s = arb_error(ARB_ERR_OOM, "fused update of tensor %d (%lld x %lld, n %lld)", (int)w->id, (long long)rows,
                      (long long)cols, (long long)n);
        goto done;
    }
    s = arb_upd_quantize_grad(dy, xs, w->scale, n, rows, arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD), hq, c);
    if (s != ARB_OK) goto done;
    double norm = st->grad_norm;
    if (!(norm > 0.0)) { /* first step: a stats pass measures this step's own norm */
        for (int64_t o = 0; o < rows; o++) {
            grad_row_ref(hq, xq, n, rows, cols, w->cols_pad, o, g);
            for (int64_t i = 0; i < cols; i++) acc[o].abs_g += g[i] < 0 ? -(int64_t)g[i] : g[i];
        }
        norm = arb_upd_norm(c, acc, rows, cols);
        memset(acc, 0, (size_t)rows * sizeof *acc);
    }
    arb_upd_plan pl = {mult, 0, arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE), p->threshold,
                       p->leak_shift};
    arb_upd_plan_make(c, rows, (double)p->eta, norm, mult, &pl.shift);
    for (int64_t o = 0; o < rows; o++) {
        grad_row_ref(hq, xq, n, rows, cols, w->cols_pad, o, g);
        arb_upd_row_ref(w, o, 0, cols, g, &pl, &acc[o]); /* the scalar rule, whatever tier is in force */
    }
    s = arb_upd_finish(w, c, acc, p, st, stats);
done:
    arb_free(hq);
    arb_free(c);
    arb_free(mult);
    arb_free(g);
    arb_free(acc);
    return s;
}

arb_status arb_upd_linear_grad(const arb_ternary *w, const int8_t *xq, const float *xs, const float *dy, int64_t n,
                               arb_rng_key key, int32_t *g, float *c) {
    int8_t *hq = arb_alloc((size_t)(n * w->rows));
    if (!hq) return arb_error(ARB_ERR_OOM, "arb_upd_linear_grad: %lld x %lld", (long long)n, (long long)w->rows);
    arb_status s = arb_upd_quantize_grad(dy, xs, w->scale, n, w->rows, key, hq, c);
    if (s == ARB_OK)
        for (int64_t o = 0; o < w->rows; o++) grad_row_ref(hq, xq, n, w->rows, w->cols, w->cols_pad, o, g + o * w->cols);
    arb_free(hq);
    return s;
}
