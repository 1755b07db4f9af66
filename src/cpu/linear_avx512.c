/* src/cpu/linear_avx512.c — AVX-512 VNNI tier of the ternary linear ops.
 *
 * Why these loops (measured with `arbitor bench kernels`, see docs/PERFORMANCE.md):
 * - Codes are trit+1 ∈ {0,1,2} (u8), so Σ t·x = Σ code·x − Σ x and vpdpbusd (u8 × s8) does
 *   64 MACs per instruction; Σ x per token is precomputed.
 * - A tile's 64 bytes masked with 3<<2g are the VNNI layout [16 rows][4 k] of code·4^g. GEMV
 *   (n = 1) keeps one accumulator per g and divides by 4^g once at the end (exact): one AND +
 *   one vpdpbusd per 64 weights, the broadcast activations shared by 4 row blocks.
 * - GEMM decodes a tile once (shift + and) and reuses it for a register block of 2 row blocks
 *   × up to 12 tokens; K is blocked so a thread's weight panel stays in L2.
 * - dX needs sums along rows: vpermb turns a tile into [16 columns][4 rows] vectors (masked to
 *   code·4^g per column lane, rescaled exactly at the end), then the same microkernel runs.
 * - dW is a GEMM over tokens on operands transposed once into 4-token groups; each 16×16 tile
 *   of G lives in 16 registers and is folded straight into T_accum and the trits (the integer
 *   rule of update_internal.h, vectorized lane for lane), never stored. */
#include <immintrin.h>
#include <string.h>

#include "core/rng_simd.h"
#include "cpu/linear_internal.h"

#define AI static inline __attribute__((always_inline))

/* K chunk of the GEMMs (tiles; only huge layers have more than one: partial sums then go
 * through the output), row/column blocks per L2-resident weight group, GEMV overflow chunk. */
enum { KC_TILES = 1024, GROUP_BLOCKS = 64, GEMV_CHUNK = 2048 };
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 1024 /* bytes ahead in each row-block stream (measured) */
#endif

AI __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* vpdpbusd through inline asm: with the intrinsic, gcc 12 copies every accumulator through
 * another register around each instruction (2 extra moves per vpdpbusd in these loops). */
AI __m512i vnni(__m512i acc, __m512i u8, __m512i s8) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
    return acc;
}
AI __m512i vnni_bc(__m512i acc, __m512i u8, const void *s8x4) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*(const int32_t *)s8x4));
    return acc;
}

AI __mmask16 lane_mask(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u); }

/* Final store of 16 outputs j0..j0+15 of token t (masked by m). */
AI void store16(const arb_lin_out *o, int64_t t, int64_t j0, __m512i acc, __mmask16 m) {
    if (o->rs) {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(o->rs[t]));
        if (o->cs) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, o->cs + j0));
        _mm512_mask_storeu_ps((float *)o->out + t * o->ld + j0, m, v);
    } else {
        _mm512_mask_storeu_epi32((int32_t *)o->out + t * o->ld + j0, m, acc);
    }
}
AI int32_t *partial_at(const arb_lin_out *o, int64_t t, int64_t j0) { return (int32_t *)o->out + t * o->ld + j0; }

/* ---- forward: GEMV ------------------------------------------------------------------------ */

AI void gemv_nr(const arb_ternary *w, const int8_t *x, int32_t xsum, int64_t rb, int NR, const arb_lin_out *o) {
    const int64_t kbs = w->cols_pad >> 4, stride = kbs * 64;
    const uint8_t *t0 = arb_lin_tile(w, rb, 0);
    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), m2 = _mm512_set1_epi8(0x30),
                  m3 = _mm512_set1_epi8((char)0xC0);
    __m512i tot[4];
    for (int r = 0; r < NR; r++) tot[r] = _mm512_setzero_si512();
    for (int64_t k0 = 0; k0 < kbs; k0 += GEMV_CHUNK) {
        int64_t k1 = k0 + GEMV_CHUNK < kbs ? k0 + GEMV_CHUNK : kbs;
        __m512i a[4][4];
        for (int r = 0; r < NR; r++)
            for (int g = 0; g < 4; g++) a[r][g] = _mm512_setzero_si512();
        for (int64_t kb = k0; kb < k1; kb++) {
            const int8_t *xb = x + kb * 16;
            __m512i b0 = bcast32(xb), b1 = bcast32(xb + 4), b2 = bcast32(xb + 8), b3 = bcast32(xb + 12);
            for (int r = 0; r < NR; r++) {
                _mm_prefetch((const char *)(t0 + r * stride + kb * 64 + GEMV_PREFETCH), _MM_HINT_T0);
                __m512i t = _mm512_loadu_si512(t0 + r * stride + kb * 64);
                a[r][0] = vnni(a[r][0], _mm512_and_si512(t, m0), b0);
                a[r][1] = vnni(a[r][1], _mm512_and_si512(t, m1), b1);
                a[r][2] = vnni(a[r][2], _mm512_and_si512(t, m2), b2);
                a[r][3] = vnni(a[r][3], _mm512_and_si512(t, m3), b3);
            }
        }
        for (int r = 0; r < NR; r++) {
            __m512i s = _mm512_add_epi32(a[r][0], _mm512_srai_epi32(a[r][1], 2));
            s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_srai_epi32(a[r][2], 4), _mm512_srai_epi32(a[r][3], 6)));
            tot[r] = _mm512_add_epi32(tot[r], s);
        }
    }
    const __m512i xs = _mm512_set1_epi32(xsum);
    for (int r = 0; r < NR; r++)
        store16(o, 0, (rb + r) * 16, _mm512_sub_epi32(tot[r], xs), lane_mask(w->rows - (rb + r) * 16));
}

static void gemv4(const arb_ternary *w, const int8_t *x, int32_t xs, int64_t rb, const arb_lin_out *o) {
    gemv_nr(w, x, xs, rb, 4, o);
}
static void gemv1(const arb_ternary *w, const int8_t *x, int32_t xs, int64_t rb, const arb_lin_out *o) {
    gemv_nr(w, x, xs, rb, 1, o);
}

/* ---- forward: GEMV on the rows64 copy -------------------------------------------------------- */

/* Column quads per exact int32 chunk: a lane gains at most 4·170·128 per quad (byte ≤ 0xAA). */
enum { R64_CHUNK = 16384 };
#ifndef R64_NG
#define R64_NG 4 /* groups per pass: streams in flight (measured) */
#endif

/* NG consecutive 64-row groups from G. Per group and column quad: one load, three ANDs, four
 * vpdpbusd against the broadcast quad of x (3.5 cycles per 256 weights on two VNNI ports, vs
 * 4 per 256 for tile16's AND per plane); two groups keep eight independent chains in flight. */
AI void r64_nr(const arb_ternary *w, const int8_t *x, int32_t xsum, int64_t G, int NG, const arb_lin_out *o) {
    const int64_t nq = w->cols_pad >> 2, stride = nq * 64;
    const uint8_t *b0 = w->rows64 + G * stride;
    const __m512i mF = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33), m3 = _mm512_set1_epi8(0x03);
    __m512i y[4][4];
    for (int g = 0; g < NG; g++)
        for (int p = 0; p < 4; p++) y[g][p] = _mm512_setzero_si512();
    for (int64_t q0 = 0; q0 < nq; q0 += R64_CHUNK) {
        const int64_t q1 = q0 + R64_CHUNK < nq ? q0 + R64_CHUNK : nq;
        __m512i a[4][4];
        for (int g = 0; g < NG; g++)
            for (int p = 0; p < 4; p++) a[g][p] = _mm512_setzero_si512();
        for (int64_t q = q0; q < q1; q++) {
            const __m512i xb = bcast32(x + 4 * q);
            for (int g = 0; g < NG; g++) {
                const uint8_t *blk = b0 + g * stride + q * 64;
                _mm_prefetch((const char *)(blk + GEMV_PREFETCH), _MM_HINT_T0);
                const __m512i t = _mm512_loadu_si512(blk);
                a[g][0] = vnni(a[g][0], t, xb);                          /* Y0 + 4Y1 + 16Y2 + 64Y3 */
                a[g][1] = vnni(a[g][1], _mm512_and_si512(t, mF), xb);  /* Y0 + 4Y1 */
                a[g][2] = vnni(a[g][2], _mm512_and_si512(t, m33), xb); /* Y0 + 16Y2 */
                a[g][3] = vnni(a[g][3], _mm512_and_si512(t, m3), xb);  /* Y0 */
            }
        }
        for (int g = 0; g < NG; g++) { /* exact: each difference is a multiple of its power of 4 */
            __m512i d1 = _mm512_sub_epi32(a[g][1], a[g][3]), d2 = _mm512_sub_epi32(a[g][2], a[g][3]);
            __m512i d3 = _mm512_sub_epi32(_mm512_sub_epi32(a[g][0], a[g][1]), d2);
            y[g][0] = _mm512_add_epi32(y[g][0], a[g][3]);
            y[g][1] = _mm512_add_epi32(y[g][1], _mm512_srai_epi32(d1, 2));
            y[g][2] = _mm512_add_epi32(y[g][2], _mm512_srai_epi32(d2, 4));
            y[g][3] = _mm512_add_epi32(y[g][3], _mm512_srai_epi32(d3, 6));
        }
    }
    const __m512i xs = _mm512_set1_epi32(xsum);
    for (int g = 0; g < NG; g++)
        for (int p = 0; p < 4; p++) {
            int64_t r0 = (G + g) * 64 + 16 * p;
            if (r0 < w->rows) store16(o, 0, r0, _mm512_sub_epi32(y[g][p], xs), lane_mask(w->rows - r0));
        }
}

static void r64_4(const arb_ternary *w, const int8_t *x, int32_t xs, int64_t G, const arb_lin_out *o) {
    r64_nr(w, x, xs, G, R64_NG, o);
}
static void r64_1(const arb_ternary *w, const int8_t *x, int32_t xs, int64_t G, const arb_lin_out *o) {
    r64_nr(w, x, xs, G, 1, o);
}

static void avx512_gemv_rows64(const arb_ternary *w, const int8_t *x, int32_t xsum, int64_t g0, int64_t g1,
                               const arb_lin_out *o) {
    /* Serpentine over calls, as in avx512_fwd: re-reading a thread's L2-sized share in the
     * opposite order keeps most of it in L2. Same results either way. */
    static _Thread_local unsigned flip;
    const int64_t np = (g1 - g0) / R64_NG;
    if ((flip ^= 1u) != 0) {
        for (int64_t i = 0; i < np; i++) r64_4(w, x, xsum, g0 + R64_NG * i, o);
        for (int64_t G = g0 + R64_NG * np; G < g1; G++) r64_1(w, x, xsum, G, o);
    } else {
        for (int64_t G = g1 - 1; G >= g0 + R64_NG * np; G--) r64_1(w, x, xsum, G, o);
        for (int64_t i = np - 1; i >= 0; i--) r64_4(w, x, xsum, g0 + R64_NG * i, o);
    }
}

/* ---- forward: GEMM microkernel -------------------------------------------------------------- */

/* RB row blocks × NT tokens over tiles [kb0, kb0+nkb) of row blocks rb.. ; xp is the packed
 * activation panel [kb][NT][16] of this token block (constant offsets: no pointer per token);
 * partial sums live in the output between K chunks. */
AI void fwd_mk(const arb_ternary *w, const int8_t *xp, const int32_t *xsum, int64_t t0, int64_t rb, int64_t kb0,
               int64_t nkb, bool first, bool last, int RB, int NT, const arb_lin_out *o) {
    const int64_t kbs = w->cols_pad >> 4, stride = kbs * 64;
    const uint8_t *wt = arb_lin_tile(w, rb, kb0);
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i acc[2][12];
    for (int r = 0; r < RB; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_si512();
    for (int64_t kb = 0; kb < nkb; kb++, wt += 64, xp += NT * 16) {
        for (int g = 0; g < 4; g++) {
            __m512i d[2];
            for (int r = 0; r < RB; r++) {
                __m512i tl = _mm512_loadu_si512(wt + r * stride);
                d[r] = _mm512_and_si512(g ? _mm512_srli_epi16(tl, 2 * g) : tl, m3);
            }
            for (int t = 0; t < NT; t++) {
                __m512i b = bcast32(xp + t * 16 + 4 * g);
                for (int r = 0; r < RB; r++) acc[r][t] = vnni(acc[r][t], d[r], b);
            }
        }
    }
    for (int r = 0; r < RB; r++) {
        int64_t j0 = (rb + r) * 16;
        __mmask16 m = lane_mask(w->rows - j0);
        for (int t = 0; t < NT; t++) {
            __m512i v = acc[r][t];
            if (!first) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, partial_at(o, t0 + t, j0)));
            if (last) store16(o, t0 + t, j0, _mm512_sub_epi32(v, _mm512_set1_epi32(xsum[t0 + t])), m);
            else _mm512_mask_storeu_epi32(partial_at(o, t0 + t, j0), m, v);
        }
    }
}

#define FWD_NT_MAX 12
#define FWD_MK(RB, NT)                                                                                          \
    static void fwd_mk_##RB##_##NT(const arb_ternary *w, const int8_t *xq, const int32_t *xsum, int64_t t0,      \
                                   int64_t rb, int64_t kb0, int64_t nkb, bool first, bool last,                  \
                                   const arb_lin_out *o) {                                                       \
        fwd_mk(w, xq, xsum, t0, rb, kb0, nkb, first, last, RB, NT, o);                                           \
    }
#define FWD_MK_ALL(RB)                                                                                          \
    FWD_MK(RB, 1) FWD_MK(RB, 2) FWD_MK(RB, 3) FWD_MK(RB, 4) FWD_MK(RB, 5) FWD_MK(RB, 6) FWD_MK(RB, 7)            \
        FWD_MK(RB, 8) FWD_MK(RB, 9) FWD_MK(RB, 10) FWD_MK(RB, 11) FWD_MK(RB, 12)
FWD_MK_ALL(1)
FWD_MK_ALL(2)
typedef void (*fwd_mk_fn)(const arb_ternary *, const int8_t *, const int32_t *, int64_t, int64_t, int64_t, int64_t,
                          bool, bool, const arb_lin_out *);
static const fwd_mk_fn k_fwd_mk[2][FWD_NT_MAX] = {
    {fwd_mk_1_1, fwd_mk_1_2, fwd_mk_1_3, fwd_mk_1_4, fwd_mk_1_5, fwd_mk_1_6, fwd_mk_1_7, fwd_mk_1_8, fwd_mk_1_9,
     fwd_mk_1_10, fwd_mk_1_11, fwd_mk_1_12},
    {fwd_mk_2_1, fwd_mk_2_2, fwd_mk_2_3, fwd_mk_2_4, fwd_mk_2_5, fwd_mk_2_6, fwd_mk_2_7, fwd_mk_2_8, fwd_mk_2_9,
     fwd_mk_2_10, fwd_mk_2_11, fwd_mk_2_12}};

/* Pack NT tokens × nkb tiles of activations (row stride ld) into [kb][NT][16]. */
static void pack_panel(int8_t *dst, const int8_t *src, int64_t ld, int nt, int NT, int64_t nkb) {
    for (int64_t kb = 0; kb < nkb; kb++)
        for (int t = 0; t < NT; t++) {
            int8_t *d = dst + (kb * NT + t) * 16;
            if (t < nt) memcpy(d, src + t * ld + kb * 16, 16);
            else memset(d, 0, 16);
        }
}

/* Order: a group of row blocks (its weight panel stays in L2) × token blocks (a packed
 * activation panel each) × row-block pairs, full K inside the microkernel. */
static void avx512_fwd(const arb_ternary *w, const int8_t *xq, int64_t n, const int32_t *xsum, int64_t rb0,
                       int64_t rb1, const arb_lin_out *o) {
    if (n == 1) {
        /* Serpentine over calls: a thread's share of a 4096x4096 matrix is its whole L2 (2 MB),
         * and re-reading it in the same order evicts each line just before its reuse; reversing
         * the order every other call keeps most of it in L2 (+7% measured). Same results. */
        static _Thread_local unsigned flip;
        int64_t nq = (rb1 - rb0) / 4;
        if ((flip ^= 1u) != 0) {
            for (int64_t q = 0; q < nq; q++) gemv4(w, xq, xsum[0], rb0 + 4 * q, o);
            for (int64_t rb = rb0 + 4 * nq; rb < rb1; rb++) gemv1(w, xq, xsum[0], rb, o);
        } else {
            for (int64_t rb = rb1 - 1; rb >= rb0 + 4 * nq; rb--) gemv1(w, xq, xsum[0], rb, o);
            for (int64_t q = nq - 1; q >= 0; q--) gemv4(w, xq, xsum[0], rb0 + 4 * q, o);
        }
        return;
    }
    const int64_t kbs = w->cols_pad >> 4;
    const int64_t kc = kbs < KC_TILES ? kbs : KC_TILES;
    int8_t *panel = arb_alloc((size_t)kc * FWD_NT_MAX * 16);
    if (!panel) { /* cannot happen for sane sizes; fall back to the reference loops */
        arb_lin_kernels_ref.fwd(w, xq, n, xsum, rb0, rb1, o);
        return;
    }
    for (int64_t g0 = rb0; g0 < rb1; g0 += GROUP_BLOCKS) {
        int64_t g1 = g0 + GROUP_BLOCKS < rb1 ? g0 + GROUP_BLOCKS : rb1;
        for (int64_t k0 = 0; k0 < kbs; k0 += kc) {
            int64_t nkb = k0 + kc < kbs ? kc : kbs - k0;
            bool first = k0 == 0, last = k0 + nkb == kbs;
            for (int64_t t0 = 0; t0 < n; t0 += FWD_NT_MAX) {
                int nt = n - t0 < FWD_NT_MAX ? (int)(n - t0) : FWD_NT_MAX;
                pack_panel(panel, xq + t0 * w->cols_pad + k0 * 16, w->cols_pad, nt, nt, nkb);
                for (int64_t rb = g0; rb < g1; rb += 2) {
                    int rbn = g1 - rb >= 2 ? 2 : 1;
                    k_fwd_mk[rbn - 1][nt - 1](w, panel, xsum, t0, rb, k0, nkb, first, last, o);
                }
            }
        }
    }
    arb_free(panel);
}

/* ---- input gradient ----------------------------------------------------------------------- */

/* dX = hq · W is a forward product with W^T. Transposing a tile of 2-bit codes takes ~18 ops
 * (vpermb gathers rows 4h..4h+3 of every column, a per-lane shift picks the field), so each
 * thread transposes its column strips into tile16 form once (0.25 bytes per weight, about
 * 1% of the product) and runs the forward GEMM on them: contiguous tiles, shift+and decode. */
AI __m512i bwd_idx(int h) {
    uint8_t b[64];
    for (int i = 0; i < 16; i++)
        for (int c = 0; c < 4; c++) b[4 * i + c] = (uint8_t)(16 * h + 4 * c + (i & 3));
    return _mm512_loadu_si512(b);
}

/* W tile (rb, cb) → tile (cb, rb) of W^T: byte 4i + c, bits 2h ← code of W[4h + c][i]. */
AI __m512i transpose_tile(__m512i t, const __m512i idx[4], __m512i shv, __m512i m3) {
    __m512i out = _mm512_setzero_si512();
    for (int h = 0; h < 4; h++) {
        /* byte 4i+c = source byte of row 4h+c holding column i; field i>>2 moved to bits 0..1 */
        __m512i e = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi8(idx[h], t), shv), m3);
        out = _mm512_or_si512(out, h ? _mm512_slli_epi32(e, 2 * h) : e);
    }
    return out;
}

static void avx512_bwdx(const arb_ternary *w, const int8_t *hq, int64_t n, const int32_t *hsum, int64_t cb0,
                        int64_t cb1, const arb_lin_out *o) {
    const int64_t rbs = w->rows_pad >> 4, ncb = cb1 - cb0;
    uint8_t *tt = arb_alloc((size_t)ncb * (size_t)rbs * 64);
    if (!tt) {
        arb_lin_kernels_ref.bwdx(w, hq, n, hsum, cb0, cb1, o);
        return;
    }
    const __m512i idx[4] = {bwd_idx(0), bwd_idx(1), bwd_idx(2), bwd_idx(3)};
    const __m512i shv = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0), m3 = _mm512_set1_epi8(3);
    for (int64_t r0 = 0; r0 < rbs; r0 += 8) /* 8 source rows of tiles at a time: 8 read streams */
        for (int64_t cb = cb0; cb < cb1; cb++)
            for (int64_t rb = r0; rb < r0 + 8 && rb < rbs; rb++)
                _mm512_storeu_si512(tt + ((cb - cb0) * rbs + rb) * 64,
                                transpose_tile(_mm512_loadu_si512(arb_lin_tile(w, rb, cb)), idx, shv, m3));
    /* W^T restricted to columns [16cb0, 16cb1) of W: its rows; output columns offset to match */
    arb_ternary wt;
    memset(&wt, 0, sizeof wt);
    wt.rows = w->cols - cb0 * 16 < ncb * 16 ? w->cols - cb0 * 16 : ncb * 16;
    wt.cols = w->rows;
    wt.rows_pad = ncb * 16;
    wt.cols_pad = w->rows_pad;
    wt.trits = tt;
    arb_lin_out ot = *o;
    ot.out = (int32_t *)o->out + cb0 * 16;
    avx512_fwd(&wt, hq, n, hsum, 0, ncb, &ot);
    arb_free(tt);
}

/* ---- fused weight gradient + update --------------------------------------------------------- */

/* Per-row running sums of one row block, in 32-bit lanes between flushes to int64 (a tile
 * adds at most 127·127·n per lane; the caller flushes before 2^31). */
typedef struct upd_row_stats {
    __m512i abs_g, ge, flips;
} upd_row_stats;

/* Everything the rule needs per call, in registers (hoisted: stores through the state would
 * otherwise make the compiler reload the plan and rebuild constants for every row). */
typedef struct upd_consts {
    __m512i iota_c, k0, k1, lo127, hi127, n127, p127, m32;
    __m512i s, s32; /* shift counts in every lane */
    int shift;
} upd_consts;

AI upd_consts upd_consts_make(const arb_upd_plan *pl) {
    upd_consts c;
    c.iota_c = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                  _mm512_set1_epi32((int)0x9E3779B1u));
    c.k0 = _mm512_set1_epi32((int)pl->key.k0);
    c.k1 = _mm512_set1_epi32((int)pl->key.k1);
    c.lo127 = _mm512_set1_epi64(-127);
    c.hi127 = _mm512_set1_epi64(127);
    c.n127 = _mm512_set1_epi32(-127);
    c.p127 = _mm512_set1_epi32(127);
    c.m32 = _mm512_set1_epi64(0xFFFFFFFFll);
    c.shift = pl->shift;
    c.s = _mm512_set1_epi64(pl->shift);
    c.s32 = _mm512_set1_epi64(pl->shift <= 32 ? 32 - pl->shift : pl->shift - 32);
    return c;
}

/* arb_upd_pressure on 16 lanes. */
AI __m512i upd_pressure(__m512i g, int32_t m, __m512i u, const upd_consts c) {
    /* arb_upd_pressure: 64-bit even/odd products; odd dwords moved down by vpshufd (port 5).
     * For S ≥ 32 (the usual case) the round bits are u·2^K, K = S − 32, and
     *   floor((P + u·2^K) / 2^(K+32)) = floor((floor(P / 2^K) + u) / 2^32)
     * (u is an integer, so the dropped fraction cannot cross a multiple of 2^32): the high
     * dword of (P >> K) + u is q before the clamp, and it fits 32 bits. */
    __m512i m64 = _mm512_set1_epi64(m);
    __m512i pe = _mm512_mul_epi32(g, m64);
    __m512i po = _mm512_mul_epi32(_mm512_shuffle_epi32(g, _MM_PERM_DDBB), m64);
    __m512i q;
    if (c.shift >= 32) {
        __m512i ue = _mm512_and_si512(u, c.m32), uo = _mm512_and_si512(_mm512_shuffle_epi32(u, _MM_PERM_DDBB), c.m32);
        pe = _mm512_add_epi64(_mm512_srav_epi64(pe, c.s32), ue);
        po = _mm512_add_epi64(_mm512_srav_epi64(po, c.s32), uo);
        q = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_shuffle_epi32(pe, _MM_PERM_DDBB), po);
        q = _mm512_min_epi32(_mm512_max_epi32(q, c.n127), c.p127);
    } else {
        if (c.shift > 0) {
            __m512i ue = _mm512_and_si512(u, c.m32),
                    uo = _mm512_and_si512(_mm512_shuffle_epi32(u, _MM_PERM_DDBB), c.m32);
            pe = _mm512_srav_epi64(_mm512_add_epi64(pe, _mm512_srlv_epi64(ue, c.s32)), c.s);
            po = _mm512_srav_epi64(_mm512_add_epi64(po, _mm512_srlv_epi64(uo, c.s32)), c.s);
        }
        pe = _mm512_min_epi64(_mm512_max_epi64(pe, c.lo127), c.hi127);
        po = _mm512_min_epi64(_mm512_max_epi64(po, c.lo127), c.hi127);
        q = _mm512_mask_blend_epi32((__mmask16)0xAAAA, pe, _mm512_shuffle_epi32(po, _MM_PERM_CCAA));
    }

    return q;
}

/* Two rows of a tile, given their pressures q: the lane-wise image of arb_upd_weight (with
 * arb_upd_pressure above) in 16-bit lanes (words 0..15 row r, 16..31 row r+1): T_accum, pressures
 * and codes all fit int16, so one vector op does 32 weights' step. An odd last row passes
 * cm1 = 0: its lanes never step, its accumulators are neither read nor written, and its word
 * (inside the same 64-byte tile: an odd row count is < 16) is rewritten with its own bits. */
typedef struct upd_consts16 {
    __m512i one, two, three, tv, ntv, n127, p127, bias, ks;
    __m512i cshuf; /* vpshufb: word lane i of row s = i/16, column j = i%16 ← byte 4s + j%4 of the row words */
    __m512i csh;   /* per word lane: 2·(j/4), the field's place inside that byte */
    __m512i qperm; /* vpermq: packs(q0, q1)'s per-lane interleave → row r then row r+1 */
} upd_consts16;

static upd_consts16 upd_consts16_make(const arb_upd_plan *pl) {
    upd_consts16 c;
    c.one = _mm512_set1_epi16(1);
    c.two = _mm512_set1_epi16(2);
    c.three = _mm512_set1_epi16(3);
    c.tv = _mm512_set1_epi16((short)pl->threshold);
    c.ntv = _mm512_set1_epi16((short)-pl->threshold);
    c.n127 = _mm512_set1_epi16(-127);
    c.p127 = _mm512_set1_epi16(127);
    c.bias = _mm512_set1_epi16((short)((1u << pl->leak_shift) - 1u));
    c.ks = _mm512_set1_epi16((short)pl->leak_shift);
    int8_t shuf[64];
    int16_t sh[32];
    for (int b = 0; b < 64; b++) {
        int lane = b / 16, k = (b % 16) / 2, s = lane / 2; /* word lane i = 8·lane + k, row s */
        shuf[b] = (b & 1) ? (int8_t)0x80 : (int8_t)(4 * s + k % 4);
    }
    for (int i = 0; i < 32; i++) sh[i] = (int16_t)(2 * ((i % 16) / 4));
    c.cshuf = _mm512_loadu_si512(shuf);
    c.csh = _mm512_loadu_si512(sh);
    c.qperm = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    return c;
}

AI void upd_rows32(uint8_t *word_p, int8_t *acc0, int8_t *acc1, __m512i g0, __m512i g1, __mmask16 cm, __mmask16 cm1,
                   const upd_consts16 *c, __m512i q0, __m512i q1, upd_row_stats *st0, upd_row_stats *st1) {
    const __mmask32 cm2 = (__mmask32)cm | ((__mmask32)cm1 << 16);
    const __m512i q = _mm512_permutexvar_epi64(c->qperm, _mm512_packs_epi32(q0, q1)); /* |q| ≤ 127: exact */
    __m512i a = _mm512_cvtepi8_epi16(
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_maskz_loadu_epi8(cm, acc0)), _mm_maskz_loadu_epi8(cm1, acc1), 1));
    uint64_t words;
    memcpy(&words, word_p, 8);
    const __m512i code = _mm512_and_si512(
        _mm512_srlv_epi16(_mm512_shuffle_epi8(_mm512_set1_epi64((long long)words), c->cshuf), c->csh), c->three);

    /* arb_trit_step (lanes outside cm2 — padding columns, an absent second row — never step) */
    __m512i leak = _mm512_srav_epi16(_mm512_add_epi16(a, _mm512_and_si512(_mm512_srai_epi16(a, 15), c->bias)), c->ks);
    a = _mm512_sub_epi16(_mm512_sub_epi16(a, leak), q);
    a = _mm512_min_epi16(_mm512_max_epi16(a, c->n127), c->p127);
    const __mmask32 lo = _mm512_mask_testn_epi16_mask(cm2, code, code);
    const __mmask32 hi = _mm512_mask_cmpeq_epi16_mask(cm2, code, c->two);
    const __mmask32 up = _mm512_mask_cmpge_epi16_mask(cm2 & ~hi, a, c->tv);
    const __mmask32 dn = _mm512_mask_cmple_epi16_mask(cm2 & ~lo & ~up, a, c->ntv);
    const __m512i cn = _mm512_mask_sub_epi16(_mm512_mask_add_epi16(code, up, code, c->one), dn, code, c->one);
    a = _mm512_mask_sub_epi16(a, up, a, c->tv);
    a = _mm512_mask_add_epi16(a, dn, a, c->tv);
    a = _mm512_mask_min_epi16(a, _mm512_cmpeq_epi16_mask(cn, c->two), a, c->tv);
    a = _mm512_mask_max_epi16(a, _mm512_testn_epi16_mask(cn, cn), a, c->ntv);

    st0->abs_g = _mm512_add_epi32(st0->abs_g, _mm512_maskz_abs_epi32(cm, g0));
    st1->abs_g = _mm512_add_epi32(st1->abs_g, _mm512_maskz_abs_epi32(cm1, g1));
    const __mmask16 hi0 = (__mmask16)hi, hi1 = (__mmask16)(hi >> 16), lo0 = (__mmask16)lo, lo1 = (__mmask16)(lo >> 16);
    st0->ge = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(st0->ge, hi0, st0->ge, g0), lo0, st0->ge, g0);
    st1->ge = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(st1->ge, hi1, st1->ge, g1), lo1, st1->ge, g1);
    const __mmask32 flip = up | dn;
    const __m512i one32 = _mm512_set1_epi32(1);
    st0->flips = _mm512_mask_add_epi32(st0->flips, (__mmask16)flip, st0->flips, one32);
    st1->flips = _mm512_mask_add_epi32(st1->flips, (__mmask16)(flip >> 16), st1->flips, one32);

    const __m256i a8 = _mm512_cvtepi16_epi8(a);
    _mm_mask_storeu_epi8(acc0, cm, _mm256_castsi256_si128(a8));
    _mm_mask_storeu_epi8(acc1, cm1, _mm256_extracti128_si256(a8, 1));
    if (flip) { /* rewrite both rows' words: byte c of a word ORs code << 2g over g */
        __m256i b = _mm512_cvtepi16_epi8(_mm512_sllv_epi16(cn, c->csh));
        b = _mm256_or_si256(b, _mm256_shuffle_epi32(b, _MM_SHUFFLE(1, 0, 3, 2)));
        b = _mm256_or_si256(b, _mm256_shuffle_epi32(b, _MM_SHUFFLE(2, 3, 0, 1)));
        uint32_t w0 = (uint32_t)_mm256_extract_epi32(b, 0), w1 = (uint32_t)_mm256_extract_epi32(b, 4);
        memcpy(word_p, &w0, 4);
        memcpy(word_p + 4, &w1, 4);
    }
}

AI void flush_stats(upd_row_stats *st, int nrow, arb_upd_row_acc *racc) {
    for (int r = 0; r < nrow; r++) {
        __m512i v = st[r].abs_g;
        racc[r].abs_g += _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)),
                                                                   _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v, 1))));
        v = st[r].ge;
        racc[r].ge += _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)),
                                                                _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1))));
        racc[r].flips += _mm512_reduce_add_epi32(st[r].flips);
        st[r].abs_g = st[r].ge = st[r].flips = _mm512_setzero_si512();
    }
}

/* a[r] += Σ over token groups [g0, g1) of xt(kb) · ht(rb, row r): 16 rows × 16 columns. */
AI void dw_tile(__m512i out[16], const uint8_t *xv, const int8_t *hv, int64_t g0, int64_t g1) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
            a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
    xv += g0 * 64;
    hv += g0 * 64;
    for (int64_t ng = g0; ng < g1; ng++, xv += 64, hv += 64) {
        __m512i xx = _mm512_loadu_si512(xv);
        a0 = vnni_bc(a0, xx, hv + 0);
        a1 = vnni_bc(a1, xx, hv + 4);
        a2 = vnni_bc(a2, xx, hv + 8);
        a3 = vnni_bc(a3, xx, hv + 12);
        a4 = vnni_bc(a4, xx, hv + 16);
        a5 = vnni_bc(a5, xx, hv + 20);
        a6 = vnni_bc(a6, xx, hv + 24);
        a7 = vnni_bc(a7, xx, hv + 28);
        a8 = vnni_bc(a8, xx, hv + 32);
        a9 = vnni_bc(a9, xx, hv + 36);
        a10 = vnni_bc(a10, xx, hv + 40);
        a11 = vnni_bc(a11, xx, hv + 44);
        a12 = vnni_bc(a12, xx, hv + 48);
        a13 = vnni_bc(a13, xx, hv + 52);
        a14 = vnni_bc(a14, xx, hv + 56);
        a15 = vnni_bc(a15, xx, hv + 60);
    }
    out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3, out[4] = a4, out[5] = a5, out[6] = a6, out[7] = a7;
    out[8] = a8, out[9] = a9, out[10] = a10, out[11] = a11, out[12] = a12, out[13] = a13, out[14] = a14, out[15] = a15;
}

static void avx512_upd(arb_ternary *w, const arb_lin_grad *gr, int64_t rb, int64_t kb0, int64_t kb1,
                       const arb_upd_plan *pl, arb_upd_row_acc *racc) {
    const int64_t n4 = gr->n4;
    const int64_t nchunk = (n4 + ARB_LIN_NG_CHUNK - 1) / ARB_LIN_NG_CHUNK;
    const int nrow = w->rows - rb * 16 < 16 ? (int)(w->rows - rb * 16) : 16;
    /* tiles per flush of the 32-bit row sums: each adds ≤ 127·127·4·n4 per lane */
    const int64_t flush_every = ((int64_t)INT32_MAX) / (16129 * 4 * (n4 > 0 ? n4 : 1));
    upd_row_stats st[16];
    for (int r = 0; r < 16; r++) st[r].abs_g = st[r].ge = st[r].flips = _mm512_setzero_si512();
    const int8_t *hb = gr->ht + (size_t)rb * (size_t)n4 * 64;
    const int32_t *hs0 = gr->hsum + rb * 16;
    int64_t since_flush = 0;
    upd_consts uc;
    upd_consts16 uc16;
    memset(&uc, 0, sizeof uc);
    memset(&uc16, 0, sizeof uc16);
    if (pl) {
        uc = upd_consts_make(pl);
        uc16 = upd_consts16_make(pl);
    }
    const int32_t *mult = pl ? pl->mult : NULL;
    int8_t *const accum = w->accum;
    const int64_t cols = w->cols;
    const __m512i xstep = _mm512_set1_epi32((int)((uint32_t)cols * 0x9E3779B1u));
    for (int64_t kb = kb0; kb < kb1; kb++) {
        const uint8_t *xv = gr->xt + (size_t)kb * (size_t)n4 * 64;
        __m512i a[16];
        if (nchunk <= 1) {
            dw_tile(a, xv, hb, 0, n4);
            for (int r = 0; r < 16; r++) a[r] = _mm512_sub_epi32(a[r], _mm512_set1_epi32(128 * hs0[r]));
        } else {
            __m512i g[16];
            for (int r = 0; r < 16; r++) g[r] = _mm512_setzero_si512();
            for (int64_t ch = 0; ch < nchunk; ch++) {
                int64_t g0 = ch * ARB_LIN_NG_CHUNK, g1 = g0 + ARB_LIN_NG_CHUNK < n4 ? g0 + ARB_LIN_NG_CHUNK : n4;
                dw_tile(a, xv, hb, g0, g1);
                const int32_t *hs = hs0 + ch * w->rows_pad;
                for (int r = 0; r < 16; r++)
                    g[r] = _mm512_add_epi32(g[r], _mm512_sub_epi32(a[r], _mm512_set1_epi32(128 * hs[r])));
            }
            for (int r = 0; r < 16; r++) a[r] = g[r];
        }
        if (since_flush >= flush_every) {
            flush_stats(st, nrow, racc);
            since_flush = 0;
        }
        since_flush++;
        __mmask16 cm = lane_mask(w->cols - kb * 16);
        uint8_t *tile = (uint8_t *)arb_lin_tile(w, rb, kb);
        if (pl) {
            __m512i gbuf[16]; /* through memory: frees the registers the rule's constants need */
            for (int r = 0; r < 16; r++) gbuf[r] = a[r];
            /* hash seeds (idx·0x9E3779B1 + k0) of row 16rb, stepped by cols·0x9E3779B1 per row */
            uint32_t idx0 = (uint32_t)((uint64_t)(rb * 16) * (uint64_t)cols + (uint64_t)kb * 16);
            __m512i x = _mm512_add_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)(idx0 * 0x9E3779B1u)), uc.iota_c), uc.k0);
            /* the hashes first: 16 independent 50-cycle chains overlap instead of each one
             * stalling its row's short integer tail */
            __m512i ubuf[16];
            for (int r = 0; r < nrow; r++, x = _mm512_add_epi32(x, xstep)) ubuf[r] = arb_rand16_mix(x, uc.k1);
            for (int r = 0; r < nrow; r++) ubuf[r] = upd_pressure(gbuf[r], mult[rb * 16 + r], ubuf[r], uc);
            for (int r = 0; r < nrow; r += 2) {
                int8_t *a0 = accum + (rb * 16 + r) * cols + kb * 16;
                const bool pair = r + 1 < nrow;
                upd_row_stats none = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
                upd_rows32(tile + 4 * r, a0, pair ? a0 + cols : a0, gbuf[r], pair ? gbuf[r + 1] : gbuf[r], cm,
                           pair ? cm : (__mmask16)0, &uc16, ubuf[r], pair ? ubuf[r + 1] : ubuf[r], &st[r],
                           pair ? &st[r + 1] : &none);
            }
            continue;
        }
        for (int r = 0; r < nrow; r++) {
            {
                st[r].abs_g = _mm512_add_epi32(st[r].abs_g, _mm512_maskz_abs_epi32(cm, a[r]));
            }
        }
    }
    flush_stats(st, nrow, racc);
}

/* ---- quantization and packing --------------------------------------------------------------- */

/* clamp(floor(v), ±127) as int32 lanes. */
AI __m512i floor_clamp127(__m512 v) {
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvttps_epi32(v);
}

/* The same arithmetic as arb_lin_quant_dy_ref, 16 outputs at a time. */
static int64_t avx512_quant_dy(const arb_ternary *w, const float *dy, int64_t t0, int64_t t1, arb_rng_key key,
                               int8_t *hq, float *hs, int32_t *hsum) {
    const int64_t rows = w->rows;
    int64_t bad = -1;
    const __m512 fmax = _mm512_set1_ps(3.402823466e38f);
    for (int64_t t = t0; t < t1; t++) {
        const float *d = dy + t * rows;
        int8_t *q = hq + t * w->rows_pad;
        __m512 amax = _mm512_setzero_ps();
        __mmask16 ok = 0xFFFF;
        for (int64_t o = 0; o < rows; o += 16) {
            __mmask16 m = lane_mask(rows - o);
            __m512 a = _mm512_abs_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + o), _mm512_maskz_loadu_ps(m, w->scale + o)));
            ok &= _mm512_cmp_ps_mask(a, fmax, _CMP_LE_OQ);
            amax = _mm512_max_ps(amax, a);
        }
        memset(q, 0, (size_t)w->rows_pad);
        hsum[t] = 0;
        hs[t] = 0.0f;
        if (ok != 0xFFFF) {
            if (bad < 0) bad = t;
            continue;
        }
        float am = _mm512_reduce_max_ps(amax);
        if (am == 0.0f) continue;
        const __m512 inv = _mm512_set1_ps(127.0f / am);
        hs[t] = am / 127.0f;
        __m512i sum = _mm512_setzero_si512();
        uint32_t base = (uint32_t)((uint64_t)t * (uint64_t)rows);
        for (int64_t o0 = 0; o0 < rows; o0 += 256) {
            /* 16 random vectors first: their multiply chains overlap (as in the update rule) */
            __m512 ub[16];
            const int nv = rows - o0 >= 256 ? 16 : (int)((rows - o0 + 15) / 16);
            for (int j = 0; j < nv; j++) ub[j] = arb_rand_unit16(key, base + (uint32_t)(o0 + 16 * j));
            for (int j = 0; j < nv; j++) {
                const int64_t o = o0 + 16 * j;
                __mmask16 m = lane_mask(rows - o);
                __m512 h = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + o), _mm512_maskz_loadu_ps(m, w->scale + o));
                __m512i v = floor_clamp127(_mm512_add_ps(_mm512_mul_ps(h, inv), ub[j]));
                v = _mm512_maskz_mov_epi32(m, v);
                sum = _mm512_add_epi32(sum, v);
                _mm_mask_storeu_epi8(q + o, m, _mm512_cvtepi32_epi8(v));
            }
        }
        hsum[t] = _mm512_reduce_add_epi32(sum);
    }
    return bad;
}

/* byte 4i + j ← byte 16j + i: four 16-byte rows (tokens) into the VNNI [16][4] order. */
AI __m512i interleave4_idx(void) {
    uint8_t b[64];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(16 * j + i);
    return _mm512_loadu_si512(b);
}

/* Token-major: each token row of dy is read front to back (four sequential streams, one per
 * token of a group); the per-block state (scales, hsum) is small and stays in L1. */
static void avx512_pack_grad(const arb_ternary *w, const float *dy, const float *xs, const float *inv, int64_t n,
                             int64_t n4, arb_rng_key key, int64_t rb0, int64_t rb1, int8_t *ht, int32_t *hsum) {
    const int64_t rows = w->rows;
    const __m512i idx = interleave4_idx();
    for (int64_t rb = rb0; rb < rb1; rb++) memset(hsum + rb * 16, 0, 64);
    for (int64_t ng = 0; ng < n4; ng++) {
        const int64_t ch = ng / ARB_LIN_NG_CHUNK;
        if (ch > 0 && ng % ARB_LIN_NG_CHUNK == 0)
            for (int64_t rb = rb0; rb < rb1; rb++) memset(hsum + ch * w->rows_pad + rb * 16, 0, 64);
        for (int64_t rb = rb0; rb < rb1; rb++) {
            const int64_t r0 = rb * 16;
            const __mmask16 m = lane_mask(rows - r0);
            const __m512 sc = _mm512_maskz_loadu_ps(m, w->scale + r0), iv = _mm512_maskz_loadu_ps(m, inv + r0);
            const __mmask16 live = m & _mm512_cmp_ps_mask(iv, _mm512_setzero_ps(), _CMP_GT_OQ);
            __m512i sum = _mm512_loadu_si512(hsum + ch * w->rows_pad + r0);
            __m128i b[4];
            for (int j = 0; j < 4; j++) {
                const int64_t t = 4 * ng + j;
                if (t >= n) {
                    b[j] = _mm_setzero_si128();
                    continue;
                }
                __m512 h = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + t * rows + r0), sc),
                                         _mm512_set1_ps(xs[t]));
                __m512i v = floor_clamp127(_mm512_add_ps(
                    _mm512_mul_ps(h, iv), arb_rand_unit16(key, (uint32_t)((uint64_t)t * (uint64_t)rows + (uint64_t)r0))));
                v = _mm512_maskz_mov_epi32(live, v);
                sum = _mm512_add_epi32(sum, v);
                b[j] = _mm512_cvtepi32_epi8(v);
            }
            _mm512_storeu_si512(hsum + ch * w->rows_pad + r0, sum);
            __m512i z = _mm512_inserti32x4(_mm512_castsi128_si512(b[0]), b[1], 1);
            z = _mm512_inserti32x4(_mm512_inserti32x4(z, b[2], 2), b[3], 3);
            _mm512_storeu_si512(ht + ((size_t)rb * (size_t)n4 + (size_t)ng) * 64, _mm512_permutexvar_epi8(idx, z));
        }
    }
}

static bool avx512_col_amax(const arb_ternary *w, const float *dy, const float *xs, int64_t n, int64_t o0, int64_t o1,
                            float *amax) {
    const int64_t rows = w->rows;
    const __m512 fmax = _mm512_set1_ps(3.402823466e38f);
    __mmask16 ok = 0xFFFF;
    for (int64_t o = o0; o < o1; o += 16) _mm512_mask_storeu_ps(amax + o, lane_mask(o1 - o), _mm512_setzero_ps());
    for (int64_t t = 0; t < n; t++) {
        const __m512 x = _mm512_set1_ps(xs[t]);
        const float *d = dy + t * rows;
        for (int64_t o = o0; o < o1; o += 16) {
            __mmask16 m = lane_mask(o1 - o);
            __m512 a = _mm512_abs_ps(
                _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + o), _mm512_maskz_loadu_ps(m, w->scale + o)), x));
            ok &= _mm512_cmp_ps_mask(a, fmax, _CMP_LE_OQ) | (__mmask16)~m;
            _mm512_mask_storeu_ps(amax + o, m, _mm512_max_ps(_mm512_maskz_loadu_ps(m, amax + o), a));
        }
    }
    return ok != 0xFFFF;
}

static void avx512_pack_x(const arb_ternary *w, const int8_t *xq, int64_t n, int64_t n4, int64_t kb0, int64_t kb1,
                          uint8_t *xt) {
    const __m512i idx = interleave4_idx(), off = _mm512_set1_epi8((char)0x80);
    for (int64_t kb = kb0; kb < kb1; kb++) {
        for (int64_t ng = 0; ng < n4; ng++) {
            __m128i b[4];
            for (int j = 0; j < 4; j++) {
                int64_t t = 4 * ng + j;
                b[j] = t < n ? _mm_loadu_si128((const __m128i *)(xq + t * w->cols_pad + kb * 16)) : _mm_setzero_si128();
            }
            __m512i z = _mm512_inserti32x4(_mm512_castsi128_si512(b[0]), b[1], 1);
            z = _mm512_inserti32x4(_mm512_inserti32x4(z, b[2], 2), b[3], 3);
            _mm512_storeu_si512(xt + ((size_t)kb * (size_t)n4 + (size_t)ng) * 64,
                                _mm512_xor_si512(_mm512_permutexvar_epi8(idx, z), off));
        }
    }
}

const arb_lin_kernels arb_lin_kernels_avx512 = {avx512_fwd,       avx512_bwdx,     avx512_upd,   avx512_quant_dy,
                                                avx512_pack_grad, avx512_col_amax, avx512_pack_x,
                                                avx512_gemv_rows64};
