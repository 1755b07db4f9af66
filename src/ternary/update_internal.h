/* src/ternary/update_internal.h — the integer update rule in reusable pieces, and the scalar
 * references every fast backend (AVX2, AVX-512, CUDA) must reproduce BIT FOR BIT.
 *
 * Why private: these pieces fix the exact arithmetic of the fused backward+update (which
 * random draw goes where, which reductions are integer, which float ops run on the host in
 * which order). Fast kernels call or copy them; users call the public ops in ternary.h.
 * The full rule and its reasons are in docs/TERNARY.md; in short, for a linear layer:
 *
 *   1 gradient signal  h[n,o] = (dy[n,o] * scale[o]) * xs[n]                      (float, no FMA)
 *     per output column c[o] = amax_n|h[n,o]| / 127, inv[o] = 127 / amax
 *     hq[n,o] = clamp(floorf(h*inv[o] + arb_rand_unit(kG, n*rows + o)), -127, 127)   kG: ARB_RNG_GRAD
 *   2 integer gradient Gint[o,i] = Σ_n hq[n,o] · xq[n,i]                          (int32, exact)
 *   3 host plan        ratio[o] = eta · c[o] / (sqrt(pi/2) · norm)   (norm = mean|G| of the last step)
 *     S, m[o] = arb_upd_plan_make(...)                                             (double, fixed order)
 *   4 per weight       q = clamp((Gint·m[o] + bits(u, S)) >> S, -127, 127), u = arb_rand_u32(kP, o*cols + i)
 *                      trit, A = arb_trit_step(trit, A, q, T, k)                   kP: ARB_RNG_PRESSURE
 *     per row (exact)  absG[o] = Σ_i |Gint|,  gE[o] = Σ_i trit_old · Gint          (int64)
 *   5 host finish      norm ← Σ_o c[o]·absG[o] / (rows·cols)  (o ascending, double)
 *                      E evidence from c[o]·gE[o] (rows ascending), then arb_ternary_refresh.
 * Everything per weight is integer and independent of every other weight, so any tiling, any
 * thread count and the GPU give the same state. */
#ifndef ARB_TERNARY_UPDATE_INTERNAL_H
#define ARB_TERNARY_UPDATE_INTERNAL_H

#include "arbitor/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__CUDACC__)
#define ARB_UPD_HD static __host__ __device__ __forceinline__
#else
#define ARB_UPD_HD static inline
#endif

/* sqrt(pi/2): RMS / mean|G| for Gaussian G. The normalizer is this times mean|G|, so eta keeps
 * the meaning it had in the reference (which divided by the RMS): the default stays 6. */
#define ARB_UPD_RMS_PER_MEANABS 1.2533141373155002512
/* Rows of the gradient reduction per call: 127 · 127 · n must fit int32. */
#define ARB_UPD_MAX_N ((int64_t)133143)

/* Random bits added before the shift: uniform on [0, 2^S) (S ≤ 32: the top S bits of u;
 * S > 32: u << (S − 32), whose bias of 2^-33 q-units is negligible). */
ARB_UPD_HD uint64_t arb_upd_round_bits(uint32_t u, int shift) {
    if (shift <= 0) return 0;
    if (shift <= 32) return (uint64_t)(u >> (32 - shift));
    return (uint64_t)u << (shift - 32);
}

/* q = clamp(floor((g·m + r) / 2^S), -127, 127): unbiased stochastic rounding of g·m/2^S in
 * pure integers (arithmetic right shift = floor division; gcc, clang and nvcc all do that). */
ARB_UPD_HD int arb_upd_pressure(int32_t g, int32_t m, int shift, uint32_t u) {
    int64_t v = ((int64_t)g * (int64_t)m + (int64_t)arb_upd_round_bits(u, shift)) >> shift;
    return v > 127 ? 127 : (v < -127 ? -127 : (int)v);
}

/* What the per-weight pass needs; made on the host once per step and tensor. */
typedef struct arb_upd_plan {
    const int32_t *mult; /* (rows) m[o] ≥ 0, < 2^31 */
    int shift;           /* S in [0, 62] */
    arb_rng_key key;     /* ARB_RNG_PRESSURE key of this step and tensor */
    int threshold;       /* T */
    int leak_shift;      /* k */
} arb_upd_plan;

/* Exact per-row sums of one step (partial sums from tiles simply add). */
typedef struct arb_upd_row_acc {
    int64_t abs_g; /* Σ_i |Gint[o,i]| */
    int64_t ge;    /* Σ_i trit_old[o,i] · Gint[o,i] */
    int64_t flips; /* trits that moved */
} arb_upd_row_acc;

/* One weight: pressure from its integer gradient, then the trit step. Returns the new trit. */
ARB_UPD_HD int arb_upd_weight(int trit, int8_t *acc, int32_t g, int32_t m, const arb_upd_plan *pl,
                              uint32_t u) {
    return arb_trit_step(trit, acc, arb_upd_pressure(g, m, pl->shift, u), pl->threshold, pl->leak_shift);
}

/* ---- host pieces (update.c) --------------------------------------------------------------- */

/* Step 1 for a linear layer: hq (n, rows) int8 and c (rows) from dy (n, rows), the activation
 * scales xs (n) and the row scales. Fails on a non-finite gradient (state stays untouched). */
arb_status arb_upd_quantize_grad(const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows,
                                 arb_rng_key key, int8_t *hq, float *c);
/* Step 3: S and m[o] from the column scales c (rows), eta and norm (mean|G| in real units).
 * norm ≤ 0 or eta ≤ 0 gives m = 0 (leak only). */
void arb_upd_plan_make(const float *c, int64_t rows, double eta, double norm, int32_t *mult, int *shift);
/* mean|G| in real units from the exact row sums: Σ_o c[o]·abs_g[o] / (rows·cols), o ascending. */
double arb_upd_norm(const float *c, const arb_upd_row_acc *acc, int64_t rows, int64_t cols);
/* Step 4 over columns [c0, c1) of row o; g[j] = Gint[o, c0 + j]. Adds into *acc. Runs the
 * kernel tier in force (src/ternary/ops_*.c); arb_upd_row_ref is the scalar reference. */
void arb_upd_row(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                 arb_upd_row_acc *acc);
void arb_upd_row_ref(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                     arb_upd_row_acc *acc);
/* Step 5: next norm into st, E evidence (if p->update_exp), refresh, stats (may be NULL).
 * c (rows) are the real units of one Gint unit per row. */
arb_status arb_upd_finish(arb_ternary *w, const float *c, const arb_upd_row_acc *acc, const arb_update_params *p,
                          arb_update_state *st, arb_update_stats *stats);
/* The E rule alone (host, rows ascending): ge_real[o] = d loss / d log scale of row o. */
int32_t arb_upd_exp_step(arb_ternary *w, const double *ge_real, const arb_update_params *p);
/* Checks shared by every update entry point. */
arb_status arb_upd_check(const arb_ternary *w, int64_t n, const arb_update_params *p, const arb_update_state *st,
                         const char *what);

/* ---- scalar references (update.c) ---------------------------------------------------------
 * Same contract as arb_ternary_linear_backward_update; plain loops, one thread. The first step
 * (st->grad_norm == 0) runs the gradient twice: a stats pass for the norm, then the update. */
arb_status arb_ternary_linear_backward_update_ref(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy,
                                                  int64_t n, const arb_update_params *p, arb_update_state *st,
                                                  arb_update_stats *stats);

/* The integer gradients the three ops feed to the pressure, materialized (tests and reference
 * checks only; the ops themselves stream them row by row). G_real[o,i] ≈ c[o] · g[o,i].
 *   linear:    g (rows, cols) = Σ_n hq[n,o] xq[n,i], hq from arb_upd_quantize_grad
 *   embedding: g (rows, cols) = Σ_{n: idx[n]=o} dq[n,i], dq = per-tensor sround(dy · 127/amax);
 *              c[o] = (amax/127) · scale[o]
 *   rmsnorm:   g (1, dim) = Σ_n pq[n,i], pq = per-tensor sround(((x·rstd)·dy) · 127/amax);
 *              c[0] = (amax/127) · scale[0]
 * key is the ARB_RNG_GRAD key of the step. */
arb_status arb_upd_linear_grad(const arb_ternary *w, const int8_t *xq, const float *xs, const float *dy, int64_t n,
                               arb_rng_key key, int32_t *g, float *c);
arb_status arb_upd_embedding_grad(const arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                  arb_rng_key key, int32_t *g, float *c);
arb_status arb_upd_rmsnorm_grad(const arb_ternary *gain, const float *x, const float *rstd, const float *dy,
                                int64_t n, arb_rng_key key, int32_t *g, float *c);

#ifdef __cplusplus
}
#endif
#endif
