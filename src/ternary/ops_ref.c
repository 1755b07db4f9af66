/* src/ternary/ops_ref.c — the scalar reference tier of the ternary core's kernels: plain loops
 * that define the bits the AVX2 and AVX-512 tiers must reproduce (tests/test_backend_ops.c).
 * Every float op is its own statement, so no compiler may contract a multiply and an add into
 * an FMA (not even under -march=native); the tiers do the same ops, one intrinsic each. */
#include <math.h>
#include <string.h>

#include "ternary/ops_internal.h"

/* Round to nearest, ties to even, for |v| < 2^22 (the default FP environment): adding and
 * subtracting 1.5·2^23 leaves the integer part. The tiers do the same two adds. */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic; /* exact in ISO C mode: no -ffast-math anywhere in this build */
}

static void ref_quantize_row(const float *x, int64_t cols, int64_t ld, int8_t *q, float *scale) {
    float amax = 0.0f;
    int nan = 0;
    for (int64_t c = 0; c < cols; c++) {
        float a = fabsf(x[c]);
        amax = a > amax ? a : amax;
        nan |= a != a;
    }
    if (amax == 0.0f || nan || !isfinite(amax)) {
        *scale = (amax == 0.0f && !nan) ? 0.0f : -1.0f; /* -1 marks a bad row */
        memset(q, 0, (size_t)ld);
        return;
    }
    float inv = 127.0f / amax;
    *scale = amax / 127.0f;
    for (int64_t c = 0; c < cols; c++) q[c] = arb_ops_q8(round_even(x[c] * inv));
    if (ld > cols) memset(q + cols, 0, (size_t)(ld - cols));
}

static void ref_embed_row(const arb_ternary *w, int64_t r, float *out) {
    float s = w->scale[r];
    for (int64_t c = 0; c < w->cols; c++) out[c] = (float)arb_ternary_get(w, r, c) * s;
}

static float ref_absmax(const float *x, int64_t n, int *bad) {
    float amax = 0.0f;
    int b = 0;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        b |= !(a <= 3.4028234663852886e38f); /* NaN or infinite */
        amax = a > amax ? a : amax;
    }
    *bad |= b;
    return amax;
}

static void ref_sround(const float *x, int64_t n, float inv, arb_rng_key key, uint32_t idx0, int8_t *q) {
    for (int64_t j = 0; j < n; j++) {
        float prod = x[j] * inv;
        q[j] = arb_ops_q8(floorf(prod + arb_rand_unit(key, idx0 + (uint32_t)j)));
    }
}

static void ref_add_i8(int32_t *g, const int8_t *d, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] += d[i];
}

static float ref_rms_fwd_row(const float *x, const float *gv, int64_t d, float eps, float *y) {
    double l[ARB_OPS_LANES] = {0};
    for (int64_t i = 0; i < d; i++) {
        double sq = (double)x[i] * (double)x[i]; /* a statement per op: nothing to contract */
        l[i & 7] += sq;
    }
    float r = (float)(1.0 / sqrt(arb_ops_lanes_sum(l) / (double)d + (double)eps));
    for (int64_t i = 0; i < d; i++) y[i] = (x[i] * r) * gv[i];
    return r;
}

static void ref_rms_dx_row(const float *x, const float *dy, const float *gv, float rf, int64_t d, float *dx) {
    double r = (double)rf, l[ARB_OPS_LANES] = {0};
    for (int64_t i = 0; i < d; i++) {
        double dg = (double)dy[i] * (double)gv[i], xh = (double)x[i] * r;
        double term = dg * xh;
        l[i & 7] += term;
    }
    double mean = arb_ops_lanes_sum(l) / (double)d;
    for (int64_t i = 0; i < d; i++) {
        double dg = (double)dy[i] * (double)gv[i], xh = (double)x[i] * r;
        double xm = xh * mean;
        double diff = dg - xm;
        dx[i] = (float)(r * diff);
    }
}

static float ref_gain_absmax_row(const float *x, float r, const float *dy, int64_t d, int *bad) {
    float amax = 0.0f;
    int b = 0;
    for (int64_t i = 0; i < d; i++) {
        float a = fabsf((x[i] * r) * dy[i]);
        b |= !(a <= 3.4028234663852886e38f);
        amax = a > amax ? a : amax;
    }
    *bad |= b;
    return amax;
}

static void ref_gain_sround_row(const float *x, float r, const float *dy, int64_t d, float inv, arb_rng_key key,
                                uint32_t idx0, int8_t *q) {
    for (int64_t i = 0; i < d; i++) {
        float prod = ((x[i] * r) * dy[i]) * inv;
        q[i] = arb_ops_q8(floorf(prod + arb_rand_unit(key, idx0 + (uint32_t)i)));
    }
}

const arb_tern_kernels arb_tern_kernels_ref = {
    ref_quantize_row, ref_embed_row,       ref_absmax,          ref_sround, ref_add_i8, ref_rms_fwd_row,
    ref_rms_dx_row,   ref_gain_absmax_row, ref_gain_sround_row, arb_upd_row_ref,
};
