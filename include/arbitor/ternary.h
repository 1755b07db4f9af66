/* arbitor/ternary.h — the packed ternary tensor, its integer training state, and its ops.
 *
 * Why this layout: one packed format must feed GEMV (n = 1), GEMM (n ≥ 8) and the CUDA
 * tensor-core kernels without repacking, and give the fused backward+update cheap access to
 * one row's 16 consecutive trits. See docs/TERNARY.md for the update rule and its constants.
 *
 * ---- Packed layout "tile16" -------------------------------------------------------------
 * W is logically (rows, cols) = (out, in). rows_pad = ceil16(rows), cols_pad = ceil16(cols).
 * The matrix is cut into 16×16 tiles stored tile-row-major: tile (rb, kb) lives at byte
 * offset (rb * (cols_pad/16) + kb) * 64. Inside a tile, byte j (0..63) holds four 2-bit codes:
 *     bits 2g..2g+1 of byte j  =  code of W[rb*16 + j/4][kb*16 + 4g + j%4],   g = 0..3
 * code = trit + 1 ∈ {0, 1, 2} (3 never occurs). Padding weights are trit 0 (code 1) and
 * padded activations are 0, so padding never changes a result.
 * Consequences: (byte & (3 << 2g)) >> 2g over the 64 bytes of a tile is the VNNI layout
 * [16 rows][4 k] for k = 4g..4g+3; and one row's 16 trits of a tile are the 32-bit word at
 * byte offset 4*(row%16), trit of column 4g+c at bits 2g + 8c.
 *
 *   arb_ternary w;
 *   arb_ternary_init(&w, 384, 384, ARB_TERNARY_LINEAR, 7, arb_cpu());
 *   arb_ternary_randomize(&w, seed);
 *   ...forward / backward_update...
 *   arb_ternary_free(&w);
 */
#ifndef ARBITOR_TERNARY_H
#define ARBITOR_TERNARY_H

#include "arbitor/core.h"

#include <assert.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARB_TILE 16
#define ARB_TILE_BYTES 64
static_assert(ARB_TILE * ARB_TILE * 2 / 8 == ARB_TILE_BYTES, "a 16x16 tile of 2-bit codes is 64 bytes");

static inline int64_t arb_round_up16(int64_t x) { return (x + 15) & ~(int64_t)15; }

/* How the row scale's base depends on the row's nonzero count. */
typedef enum arb_ternary_kind {
    ARB_TERNARY_LINEAR = 0, /* base = 1 / sqrt(max(nnz, 1)) */
    ARB_TERNARY_EMBED = 1,  /* base = sqrt(cols / max(nnz, 1)): unit-RMS embedding rows */
    ARB_TERNARY_GAIN = 2    /* a norm gain: base = 1, trits start at +1 */
} arb_ternary_kind;

/* E is in quarter octaves: effective weight = trit * base(nnz) * 2^(E/4). */
#define ARB_EXP_MIN (-24)
#define ARB_EXP_MAX 24

typedef struct arb_ternary {
    int64_t rows, cols;         /* logical (out, in) */
    int64_t rows_pad, cols_pad; /* rounded up to 16 */
    uint8_t *trits;             /* (rows_pad/16, cols_pad/16, 64) tile16 codes */
    int8_t *accum;              /* (rows, cols) T_accum, row-major */
    int8_t *exp;                /* (rows) E, quarter octaves, in [ARB_EXP_MIN, ARB_EXP_MAX]; NULL: fixed, E ≡ 0 */
    int8_t *exp_evidence;       /* (rows) evidence counter that moves E; NULL with exp */
    float *scale;               /* (rows) derived float buffer: base(nnz) * 2^(E/4) */
    int32_t *nnz;               /* (rows) derived: nonzero trits per row */
    arb_ternary_kind kind;
    int32_t id;                 /* tensor id: separates RNG streams of tensors */
    arb_device device;
    uint8_t *rows64;            /* NULL, or (rows_pad64/64, cols_pad/4, 64) derived "rows64" copy (below) */
} arb_ternary;

arb_status arb_ternary_init(arb_ternary *w, int64_t rows, int64_t cols, arb_ternary_kind kind, int32_t id,
                            arb_device dev);
void arb_ternary_free(arb_ternary *w);
/* Trits uniform in {-1,0,1} (GAIN: all +1) from (seed, id); T_accum = 0, E = 0, evidence = 0. */
arb_status arb_ternary_randomize(arb_ternary *w, uint64_t seed);
/* Recompute nnz and scale from trits and E (after any change to them). */
arb_status arb_ternary_refresh(arb_ternary *w);
/* Make E a constant 0 for good: frees E and its evidence counter (exp = exp_evidence = NULL), so
 * a tensor whose exponent never trains carries no per-row state (at width 128 the two bytes per
 * row were 1.6% of the training state). Every E must be 0 (else ARB_ERR_INVALID_ARG); updates of
 * such a tensor must not ask for update_exp. Host or CUDA tensors. */
arb_status arb_ternary_fix_exponent(arb_ternary *w);

/* ---- Derived decode copy "rows64" (host, optional) ------------------------------------------
 * A matrix-vector product (n = 1, decoding) reads every weight once, so in tile16 each VNNI
 * instruction needs its own AND to isolate one code per byte. rows64 stores the same 2-bit codes
 * so that the four codes of a byte share one activation:
 *     bits 2g..2g+1 of byte j of block (G, q)  =  code of W[64G + 16g + j/4][4q + j%4]
 * block (G, q) at byte offset (G * cols_pad/4 + q) * 64, rows_pad64 = ceil64(rows), padding code 1.
 * Then Σ byte·x over a dword lane is Y0 + 4·Y1 + 16·Y2 + 64·Y3 (Yg = that row's Σ code·x), and the
 * bytes masked with 0x0F, 0x33, 0x03 give three more combinations: four VNNI + three ANDs per
 * 256 weights instead of four + four per 64·4, solved exactly at the end.
 * arb_ternary_prepare_rows64 builds it (CPU tensors), arb_ternary_refresh keeps it current after
 * updates, arb_ternary_free releases it; the forward at n = 1 uses it when present. */
arb_status arb_ternary_prepare_rows64(arb_ternary *w);
void arb_ternary_drop_rows64(arb_ternary *w);
static inline int64_t arb_round_up64(int64_t x) { return (x + 63) & ~(int64_t)63; }

/* Single-element access on host memory (tests, loaders, references). */
int arb_ternary_get(const arb_ternary *w, int64_t r, int64_t c);
void arb_ternary_set(arb_ternary *w, int64_t r, int64_t c, int trit);

/* Bytes of training state: packed trits + T_accum + E + evidence where present (derived
 * buffers excluded). */
size_t arb_ternary_state_bytes(const arb_ternary *w);
/* Bytes of derived float buffers (scale). */
size_t arb_ternary_buffer_bytes(const arb_ternary *w);

/* Limits checked by arb_ternary_init: 1 ≤ rows, cols ≤ ARB_TERNARY_MAX_DIM; 0 ≤ id < ARB_TERNARY_MAX_ID
 * (the id is packed into RNG stream numbers, see arb_update_key). */
#define ARB_TERNARY_MAX_DIM ((int64_t)1 << 30)
#define ARB_TERNARY_MAX_ID (1 << 20)

/* The row scale exactly as arb_ternary_refresh derives it (every backend must match bit for bit):
 *   exp_mult(e) = ldexpf(Q[e & 3], e >> 2), Q[j] = 2^(j/4) rounded to float (1, 1.18920712f,
 *                 1.41421356f, 1.68179283f)  — a table, not exp2f, which is not correctly rounded;
 *   base: LINEAR 1.0f / sqrtf((float)max(nnz,1)); EMBED sqrtf((float)cols / (float)max(nnz,1)); GAIN 1;
 *   scale = base * exp_mult(E)   (one float multiply, no fused multiply-add). */
float arb_ternary_exp_mult(int e);
float arb_ternary_row_scale(arb_ternary_kind kind, int64_t cols, int32_t nnz, int e);
/* Nonzero trits of row r, read from the packed tiles (host). */
int32_t arb_ternary_row_nnz(const arb_ternary *w, int64_t r);

/* ---- RNG streams of training -------------------------------------------------------------
 * Initialization draws from arb_rng_key_make(seed, id) at index r*cols + c. Step `step` of
 * tensor `id` draws for `purpose` from arb_update_key(seed, step, id, purpose):
 *   stream = (step + 1) << 24 | id << 4 | purpose   (never equal to an init stream, id < 2^20).
 * Element indices are logical and wrap modulo 2^32. */
typedef enum arb_rng_purpose {
    ARB_RNG_GRAD = 0,     /* stochastic rounding of the gradient signal feeding the weight gradient */
    ARB_RNG_PRESSURE = 1, /* stochastic rounding of the pressure q */
    ARB_RNG_EXP = 2,      /* stochastic rounding of the E evidence */
    ARB_RNG_DX = 3,       /* dy quantization in backward_x (callers pass this key) */
    ARB_RNG_USER = 8      /* 8..15: free for the training loop (dropout, sampling) */
} arb_rng_purpose;

static inline arb_rng_key arb_update_key(uint64_t seed, uint64_t step, int32_t id, int purpose) {
    uint64_t stream = ((step + 1) << 24) | ((uint64_t)(uint32_t)id << 4) | (uint64_t)(purpose & 15);
    return arb_rng_key_make(seed, stream);
}

/* ---- the update rule's scalar core, shared verbatim by every backend ----------------------
 * One weight's step, given integer pressure q (already stochastically rounded, |q| ≤ 127):
 *   A ← sat8(A − trunc(A / 2^k) − q)              leaky accumulate, AGAINST the gradient
 *   A ≥ T and W < 1  →  W += 1, A −= T             step up, keep the remainder
 *   A ≤ −T and W > −1 → W −= 1, A += T             step down
 *   W = +1 → A = min(A, T);  W = −1 → A = max(A, −T)   no drift past the rails
 * Returns the new trit; *acc is updated. */
#if defined(__CUDACC__)
__host__ __device__ __forceinline__
#else
static inline
#endif
int arb_trit_step(int trit, int8_t *acc, int q, int threshold, int leak_shift) {
    int a = *acc;
    /* trunc(a / 2^k) (C division truncates toward zero) as shifts: k is a runtime value, and a
     * division by it was an integer-division sequence per weight in the CUDA update pass. Exact
     * for k in 0..15 (arb_upd_check's range) with an arithmetic right shift, which gcc, clang
     * and nvcc use for negative ints. */
    int leak = (a + ((a >> 31) & ((1 << leak_shift) - 1))) >> leak_shift;
    a = a - leak - q;
    a = a > 127 ? 127 : (a < -127 ? -127 : a);
    if (a >= threshold && trit < 1) { trit += 1; a -= threshold; }
    else if (a <= -threshold && trit > -1) { trit -= 1; a += threshold; }
    if (trit == 1 && a > threshold) a = threshold;
    if (trit == -1 && a < -threshold) a = -threshold;
    *acc = (int8_t)a;
    return trit;
}

/* Update hyper-parameters for one step of one tensor. */
typedef struct arb_update_params {
    float eta;           /* pressure scale this step (schedule or flip-rate controller) */
    int32_t threshold;   /* T: accumulator units per trit step (default 64) */
    int32_t leak_shift;  /* k: leak A / 2^k per step (default 5) */
    float eta_exp;       /* E evidence scale (default 1) */
    int32_t exp_threshold; /* R: |evidence| that moves E one quarter octave (default 32) */
    bool update_exp;     /* move E this step */
    uint64_t seed;       /* run seed */
    uint64_t step;       /* global step: with id, selects the RNG stream */
} arb_update_params;

arb_update_params arb_update_params_default(void);

/* Running statistics the rule keeps per tensor between steps (integer/fixed-order state). */
typedef struct arb_update_state {
    double grad_norm; /* mean |G| of the previous step; 0 until the first step measured it */
} arb_update_state;

typedef struct arb_update_stats {
    int64_t flips;   /* trits that moved this step */
    int64_t zeros;   /* trits at 0 after the step */
    int64_t weights; /* logical weights */
    int32_t exp_moves;
} arb_update_stats;

/* ---- activation quantization -------------------------------------------------------------
 * Per row absmax int8: scale[r] = absmax/127; q = rint(x * (127/absmax)) (ties to even),
 * clamped to [-127,127]; an all-zero row gives scale 0 and q 0. Columns cols..ld-1 are zeroed
 * (ld ≥ cols; use cols_pad of the weight). */
arb_status arb_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q, float *scale);

/* ---- ternary linear ----------------------------------------------------------------------
 * xq: (n, cols_pad) int8 activations with per-row scale xs (n). */

/* acc (n, rows) = xq · trits^T, int32, exact. */
arb_status arb_ternary_matmul_i32(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc);
/* y (n, rows) = acc * xs[n] * scale[o]. */
arb_status arb_ternary_linear_forward(const arb_ternary *w, const int8_t *xq, const float *xs, int64_t n,
                                      float *y);
/* dx (n, cols) = (dy ⊙ scale) · W, dy (n, rows). The product runs on int8 (dy rows quantized
 * with stochastic rounding keyed by `key`) and int32 accumulation. */
arb_status arb_ternary_linear_backward_x(const arb_ternary *w, const float *dy, int64_t n, arb_rng_key key,
                                         float *dx);
/* Fused weight gradient + update: folds G = Σ_n (dy·scale)[n,o]·x[n,i] into T_accum tile by
 * tile (never materialized as a float tensor), steps trits, moves E, refreshes scale. */
arb_status arb_ternary_linear_backward_update(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy,
                                              int64_t n, const arb_update_params *p, arb_update_state *st,
                                              arb_update_stats *stats);

/* ---- ternary embedding -------------------------------------------------------------------
 * out (n, cols) = W[idx[n]] * scale[idx[n]]; idx values must be < rows (else ARB_ERR_INVALID_ARG). */
arb_status arb_ternary_embedding_forward(const arb_ternary *w, const int32_t *idx, int64_t n, float *out);
arb_status arb_ternary_embedding_backward_update(arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                                 const arb_update_params *p, arb_update_state *st,
                                                 arb_update_stats *stats);

/* ---- ternary RMSNorm (gain is a 1 × dim ternary tensor of kind GAIN) ------------------------
 * y = x / sqrt(mean(x²) + eps) ⊙ gain. rstd (n) is saved for backward. */
arb_status arb_ternary_rmsnorm_forward(const arb_ternary *gain, const float *x, int64_t n, float eps, float *y,
                                       float *rstd);
/* dx from dy; the gain's gradient is folded into its state (fused backward + update). p may be
 * NULL: then only dx is computed (frozen gain). */
arb_status arb_ternary_rmsnorm_backward_update(arb_ternary *gain, const float *x, const float *rstd,
                                               const float *dy, int64_t n, float *dx,
                                               const arb_update_params *p, arb_update_state *st,
                                               arb_update_stats *stats);

/* ---- audit -------------------------------------------------------------------------------- */
typedef struct arb_audit {
    int64_t ternary_weights;        /* logical trits */
    double ternary_state_bytes;     /* trits + T_accum + E + evidence */
    int64_t trainable_float_tensors;
    double trainable_float_bytes;
    int64_t frozen_float_tensors;   /* sidecar weights (counted as fp32, like the reference) */
    double frozen_float_bytes;
    int64_t float_buffer_tensors;   /* derived, non-trainable */
    double float_buffer_bytes;
} arb_audit;

void arb_audit_add_ternary(arb_audit *a, const arb_ternary *w);
/* Prints the seed report's lines ("logical ternary weights: 42,669,632", ...) to buf. */
const char *arb_audit_format(const arb_audit *a, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_TERNARY_H */
