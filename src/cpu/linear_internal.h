/* src/cpu/linear_internal.h — the per-tier kernel table of the ternary linear ops.
 *
 * Why: linear_dispatch.c owns validation, quantization, threading and the update plan; each
 * tier (linear_ref.c, linear_avx2.c, linear_avx512.c) only supplies these three loops over a
 * range of 16-row / 16-column blocks. Every tier must give the same integers (tested), so the
 * split of blocks over threads never changes a result. */
#ifndef ARB_CPU_LINEAR_INTERNAL_H
#define ARB_CPU_LINEAR_INTERNAL_H

#include "arbitor/ternary.h"
#include "ternary/update_internal.h"

/* Where a product goes: out (n, ld), int32 when rs == NULL, else float
 *   out[t, j] = ((float)acc[t, j] * rs[t]) * (cs ? cs[j] : 1)   (two multiplies, no FMA).
 * A float output may hold int32 partial sums while a kernel runs (same 4 bytes). */
typedef struct arb_lin_out {
    void *out;
    int64_t ld;
    const float *rs; /* (n) per-token scale, or NULL */
    const float *cs; /* (ld) per-output scale, or NULL */
} arb_lin_out;

/* Tokens per group of the transposed operands of the weight gradient (one VNNI dword). */
#define ARB_LIN_NG 4
/* Token groups per chunk of the weight gradient: with the +128 offset a chunk's sum
 * Σ hq·(x+128) ≤ 127·255·4·16384 < 2^31. */
#define ARB_LIN_NG_CHUNK 16384

/* Operands of the weight gradient G[o,i] = Σ_t hq[t,o]·xq[t,i], laid out once per call:
 *   xt (cols_pad/16, n4, 16, 4) u8  = xq[4g+j, 16kb+i] + 128   (128 for padded tokens)
 *   ht (rows_pad/16, n4, 16, 4) s8  = hq[4g+j, 16rb+o]         (0 for padded tokens / rows)
 *   hsum (nchunks, rows_pad) int32  = Σ_t hq[t, o] over the tokens of each chunk of
 *                                     ARB_LIN_NG_CHUNK groups (the +128 correction). */
typedef struct arb_lin_grad {
    const uint8_t *xt;
    const int8_t *ht;
    const int32_t *hsum;
    int64_t n4;
} arb_lin_grad;

typedef struct arb_lin_kernels {
    /* Forward over row blocks [rb0, rb1): acc[t, r] = Σ_k trit[r,k]·xq[t,k], t < n.
     * xq (n, cols_pad); xsum[t] = Σ_k xq[t,k] over cols_pad. Output per arb_lin_out (ld ≥ rows). */
    void (*fwd)(const arb_ternary *w, const int8_t *xq, int64_t n, const int32_t *xsum, int64_t rb0, int64_t rb1,
                const arb_lin_out *o);
    /* Input gradient over column blocks [cb0, cb1): acc[t, c] = Σ_o hq[t,o]·trit[o,c].
     * hq (n, rows_pad) zero-padded; hsum[t] = Σ_o hq[t,o]. Output per arb_lin_out (ld ≥ cols). */
    void (*bwdx)(const arb_ternary *w, const int8_t *hq, int64_t n, const int32_t *hsum, int64_t cb0, int64_t cb1,
                 const arb_lin_out *o);
    /* Weight gradient of row block rb over column blocks [kb0, kb1), tile by tile, folded into the
     * state: with pl, every weight of rows [16rb, min(rows,16rb+16)) takes arb_upd_weight and
     * racc[o - 16rb] gathers the row sums (abs_g, ge, flips; added to what it holds); without pl
     * (stats pass) only abs_g is added and the state is kept. */
    void (*upd)(arb_ternary *w, const arb_lin_grad *gr, int64_t rb, int64_t kb0, int64_t kb1, const arb_upd_plan *pl,
                arb_upd_row_acc *racc);
    /* backward_x's int8 dy for tokens [t0, t1): hq (n, rows_pad) zero-padded, hs[t] = amax_t/127,
     * hsum[t] = Σ_o hq[t,o] (see lin_quantize_dy in linear_dispatch.c for the rounding). Returns
     * the first token whose row is not finite, or -1. */
    int64_t (*quant_dy)(const arb_ternary *w, const float *dy, int64_t t0, int64_t t1, arb_rng_key key, int8_t *hq,
                        float *hs, int32_t *hsum);
    /* Step 1 of the update straight into the transposed layout, row blocks [rb0, rb1): hq[t,o] of
     * arb_upd_quantize_grad (inv[o] = 127/amax[o], 0 for an all-zero column) into ht, and hsum. */
    void (*pack_grad)(const arb_ternary *w, const float *dy, const float *xs, const float *inv, int64_t n,
                      int64_t n4, arb_rng_key key, int64_t rb0, int64_t rb1, int8_t *ht, int32_t *hsum);
    /* amax[o] = max_t |(dy[t,o]·scale[o])·xs[t]| for o in [o0, o1) (arb_upd_quantize_grad's first
     * pass); returns true if any of those values is NaN or infinite. */
    bool (*col_amax)(const arb_ternary *w, const float *dy, const float *xs, int64_t n, int64_t o0, int64_t o1,
                     float *amax);
    /* xt of column blocks [kb0, kb1). */
    void (*pack_x)(const arb_ternary *w, const int8_t *xq, int64_t n, int64_t n4, int64_t kb0, int64_t kb1,
                   uint8_t *xt);
    /* Forward at n = 1 from the rows64 copy (w->rows64 != NULL), 64-row groups [g0, g1); same
     * integers as fwd. NULL: the tier uses fwd. */
    void (*gemv_rows64)(const arb_ternary *w, const int8_t *x, int32_t xsum, int64_t g0, int64_t g1,
                        const arb_lin_out *o);
} arb_lin_kernels;

/* Scalar versions of the packing steps (linear_ref.c), shared by the tiers without their own. */
int64_t arb_lin_quant_dy_ref(const arb_ternary *w, const float *dy, int64_t t0, int64_t t1, arb_rng_key key,
                             int8_t *hq, float *hs, int32_t *hsum);
void arb_lin_pack_grad_ref(const arb_ternary *w, const float *dy, const float *xs, const float *inv, int64_t n,
                           int64_t n4, arb_rng_key key, int64_t rb0, int64_t rb1, int8_t *ht, int32_t *hsum);
bool arb_lin_col_amax_ref(const arb_ternary *w, const float *dy, const float *xs, int64_t n, int64_t o0, int64_t o1,
                          float *amax);
void arb_lin_pack_x_ref(const arb_ternary *w, const int8_t *xq, int64_t n, int64_t n4, int64_t kb0, int64_t kb1,
                        uint8_t *xt);

extern const arb_lin_kernels arb_lin_kernels_ref;
extern const arb_lin_kernels arb_lin_kernels_avx2;
extern const arb_lin_kernels arb_lin_kernels_avx512;

/* Shared scalar epilogue: one element of an arb_lin_out. */
static inline void arb_lin_store1(const arb_lin_out *o, int64_t t, int64_t j, int32_t acc) {
    if (o->rs) {
        float v = (float)acc * o->rs[t];
        if (o->cs) v = v * o->cs[j];
        ((float *)o->out)[t * o->ld + j] = v;
    } else {
        ((int32_t *)o->out)[t * o->ld + j] = acc;
    }
}

/* Trit word of row r (within its block) of tile (rb, kb): 16 trits, column 4g+c at bits 2g+8c. */
static inline const uint8_t *arb_lin_tile(const arb_ternary *w, int64_t rb, int64_t kb) {
    return w->trits + ((size_t)rb * (size_t)(w->cols_pad >> 4) + (size_t)kb) * ARB_TILE_BYTES;
}

#endif
