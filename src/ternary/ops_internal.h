/* src/ternary/ops_internal.h — the per-tier kernel table of the ternary core's own ops
 * (activation quantization, embedding, RMSNorm, the per-weight update over a row).
 *
 * Why a table: ternary.c, embedding.c and rmsnorm.c keep validation, threading, the random
 * streams and the host-side plan; each tier (ops_ref.c = the scalar reference, ops_avx2.c,
 * ops_avx512.c) only supplies these loops over one row or one contiguous range. Every tier
 * gives the SAME BITS, floats included: the kernels replicate the reference's float operations
 * one for one (no FMA, same order), and the two double sums of RMSNorm are defined in 8
 * interleaved lanes (ARB_OPS_LANES) so that scalar, AVX2 and AVX-512 add in the same order.
 * Chosen by arb_cpu_tier_get() (env ARB_CPU_TIER forces a lower tier). */
#ifndef ARB_TERNARY_OPS_INTERNAL_H
#define ARB_TERNARY_OPS_INTERNAL_H

#include "ternary/update_internal.h"

/* Elements below which the streaming ops stay on one thread: with SIMD tiers they run at
 * ~0.1 ns per element, so a smaller parallel region costs more than it saves (and far more on
 * an oversubscribed machine). Results never depend on it. */
#define ARB_OPS_PAR_MIN ((int64_t)1 << 18)

/* RMSNorm's double sums run in 8 lanes: lane l adds the terms i ≡ l (mod 8) in order, then
 * total = ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
#define ARB_OPS_LANES 8

typedef struct arb_tern_kernels {
    /* One row of arb_quantize_rows: q (ld) and *scale; *scale = -1 marks a NaN/Inf row (q zeroed). */
    void (*quantize_row)(const float *x, int64_t cols, int64_t ld, int8_t *q, float *scale);
    /* out (cols) = trit[r, :] · scale[r]. */
    void (*embed_row)(const arb_ternary *w, int64_t r, float *out);
    /* max |x| over n; *bad |= 1 if any value is NaN or infinite. */
    float (*absmax)(const float *x, int64_t n, int *bad);
    /* q[j] = clamp(floorf(x[j]·inv + arb_rand_unit(key, idx0 + j)), ±127), NaN → 0. */
    void (*sround)(const float *x, int64_t n, float inv, arb_rng_key key, uint32_t idx0, int8_t *q);
    /* g[i] += d[i]: exact int8 → int32 accumulation. */
    void (*add_i8)(int32_t *g, const int8_t *d, int64_t n);
    /* RMSNorm forward of one row: returns rstd = (float)(1 / sqrt(Σx² / d + eps)) (8-lane sum);
     * y = (x · rstd) · gv. */
    float (*rms_fwd_row)(const float *x, const float *gv, int64_t d, float eps, float *y);
    /* RMSNorm dx of one row: dot = Σ (dy·gv)·(x·r) (8-lane, double), mean = dot / d,
     * dx = (float)(r · (dy·gv − (x·r)·mean)) in double. */
    void (*rms_dx_row)(const float *x, const float *dy, const float *gv, float r, int64_t d, float *dx);
    /* The gain signal s = (x · r) · dy of one row: max |s| (*bad as in absmax) ... */
    float (*gain_absmax_row)(const float *x, float r, const float *dy, int64_t d, int *bad);
    /* ... and q[i] = clamp(floorf(s·inv + arb_rand_unit(key, idx0 + i)), ±127), NaN → 0. */
    void (*gain_sround_row)(const float *x, float r, const float *dy, int64_t d, float inv, arb_rng_key key,
                            uint32_t idx0, int8_t *q);
    /* arb_upd_row: the per-weight rule over columns [c0, c1) of row o. */
    void (*upd_row)(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                    arb_upd_row_acc *acc);
} arb_tern_kernels;

extern const arb_tern_kernels arb_tern_kernels_ref;
extern const arb_tern_kernels arb_tern_kernels_avx2;
extern const arb_tern_kernels arb_tern_kernels_avx512;

/* The table of the tier in force (ops_dispatch.c). */
const arb_tern_kernels *arb_tern_kernels_get(void);

/* The reference's float → int8 step after rounding: NaN (0 · inf when amax is so small that
 * 127/amax overflows) → 0, else clamp to ±127. */
static inline int8_t arb_ops_q8(float v) {
    if (v != v) return 0;
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    return (int8_t)v;
}

/* The 8-lane reduction order of ARB_OPS_LANES. */
static inline double arb_ops_lanes_sum(const double *l) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* Trit word of row r of tile kb: 16 trits, column 4g + c at bits 2g + 8c. */
static inline uint8_t *arb_ops_row_word(const arb_ternary *w, int64_t r, int64_t kb) {
    return w->trits + ((size_t)(r >> 4) * (size_t)(w->cols_pad >> 4) + (size_t)kb) * ARB_TILE_BYTES + 4 * (r & 15);
}

#endif
