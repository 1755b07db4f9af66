/* src/cpu/linear_avx2.c — AVX2 tier of the ternary linear ops (CPUs without AVX-512 VNNI).
 *
 * Why this shape: vpmaddubsw (u8 codes × s8 activations) cannot saturate here (2·127·2 = 508)
 * and four of them add in 16 bits before one vpmaddwd widens to 32 bits. dX uses the same
 * trick on tiles transposed with vpshufb (code·4^g per column lane, rescaled exactly at the
 * end). The weight gradient runs in 32-bit lanes on zero-/sign-extended operands (the +128
 * offset of the u8 tokens would saturate vpmaddubsw) and the per-weight rule is ternary-core's
 * scalar arb_upd_row, so this tier's integer state is the reference's by construction. */
#include <immintrin.h>
#include <string.h>

#include "cpu/linear_internal.h"

#define AI static inline __attribute__((always_inline))

AI __m256i bc32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* 8 int32 outputs j0.. of token t, the first `cnt` of them. */
static void store8(const arb_lin_out *o, int64_t t, int64_t j0, __m256i acc, int cnt) {
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, acc);
    for (int i = 0; i < cnt && i < 8; i++) arb_lin_store1(o, t, j0 + i, v[i]);
}

/* ---- forward: 16 rows × NT tokens per tile pass ------------------------------------------- */

AI void fwd_block(const arb_ternary *w, const int8_t *xq, const int32_t *xsum, int64_t t0, int64_t rb, int NT,
                  const arb_lin_out *o) {
    const int64_t kbs = w->cols_pad >> 4, ldx = w->cols_pad;
    const uint8_t *wt = arb_lin_tile(w, rb, 0);
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256i acc[2][4];
    for (int hh = 0; hh < 2; hh++)
        for (int t = 0; t < NT; t++) acc[hh][t] = _mm256_setzero_si256();
    for (int64_t kb = 0; kb < kbs; kb++) {
        __m256i tl[2] = {_mm256_loadu_si256((const __m256i *)(wt + kb * 64)),
                         _mm256_loadu_si256((const __m256i *)(wt + kb * 64 + 32))};
        __m256i s16[2][4];
        for (int g = 0; g < 4; g++) {
            __m256i d[2];
            for (int hh = 0; hh < 2; hh++)
                d[hh] = _mm256_and_si256(g ? _mm256_srli_epi16(tl[hh], 2 * g) : tl[hh], m3);
            for (int t = 0; t < NT; t++) {
                __m256i b = bc32(xq + (t0 + t) * ldx + kb * 16 + 4 * g);
                for (int hh = 0; hh < 2; hh++) {
                    __m256i p = _mm256_maddubs_epi16(d[hh], b);
                    s16[hh][t] = g ? _mm256_add_epi16(s16[hh][t], p) : p;
                }
            }
        }
        for (int hh = 0; hh < 2; hh++)
            for (int t = 0; t < NT; t++) acc[hh][t] = _mm256_add_epi32(acc[hh][t], _mm256_madd_epi16(s16[hh][t], ones));
    }
    for (int t = 0; t < NT; t++) {
        __m256i xs = _mm256_set1_epi32(xsum[t0 + t]);
        for (int hh = 0; hh < 2; hh++) {
            int64_t j0 = rb * 16 + hh * 8;
            if (j0 < w->rows) store8(o, t0 + t, j0, _mm256_sub_epi32(acc[hh][t], xs), (int)(w->rows - j0));
        }
    }
}

static void fwd_block4(const arb_ternary *w, const int8_t *xq, const int32_t *xs, int64_t t0, int64_t rb,
                       const arb_lin_out *o) {
    fwd_block(w, xq, xs, t0, rb, 4, o);
}
static void fwd_block1(const arb_ternary *w, const int8_t *xq, const int32_t *xs, int64_t t0, int64_t rb,
                       const arb_lin_out *o) {
    fwd_block(w, xq, xs, t0, rb, 1, o);
}

static void avx2_fwd(const arb_ternary *w, const int8_t *xq, int64_t n, const int32_t *xsum, int64_t rb0,
                     int64_t rb1, const arb_lin_out *o) {
    for (int64_t rb = rb0; rb < rb1; rb++) {
        int64_t t = 0;
        for (; t + 4 <= n; t += 4) fwd_block4(w, xq, xsum, t, rb, o);
        for (; t < n; t++) fwd_block1(w, xq, xsum, t, rb, o);
    }
}

/* ---- input gradient ------------------------------------------------------------------------ */

/* Rows 4h..4h+3 of a tile (its 16-byte lane h, broadcast to both halves) shuffled so that dword
 * c' holds rows 4h+0..3 of column c' (+4g); the low half keeps field g = 0 (cols 0..3) and 1
 * (cols 4..7) via masks 0x03 / 0x0C, the second vector fields 2, 3 via 0x30 / 0xC0. */
static void avx2_bwdx(const arb_ternary *w, const int8_t *hq, int64_t n, const int32_t *hsum, int64_t cb0,
                      int64_t cb1, const arb_lin_out *o) {
    const int64_t rbs = w->rows_pad >> 4, kbs = w->cols_pad >> 4, ldh = w->rows_pad;
    const __m256i idx = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9,
                                         13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i mlo = _mm256_setr_epi32(0x03030303, 0x03030303, 0x03030303, 0x03030303, 0x0C0C0C0C, 0x0C0C0C0C,
                                          0x0C0C0C0C, 0x0C0C0C0C);
    const __m256i mhi = _mm256_setr_epi32(0x30303030, 0x30303030, 0x30303030, 0x30303030, (int)0xC0C0C0C0,
                                          (int)0xC0C0C0C0, (int)0xC0C0C0C0, (int)0xC0C0C0C0);
    const __m256i shlo = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2), shhi = _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6);
    const __m256i ones = _mm256_set1_epi16(1);
    enum { NT = 4, RCH = 512 }; /* row blocks per chunk: 128·127·8192 < 2^31 */
    for (int64_t cb = cb0; cb < cb1; cb++) {
        for (int64_t t0 = 0; t0 < n; t0 += NT) {
            int nt = n - t0 < NT ? (int)(n - t0) : NT;
            __m256i tot[NT][2];
            for (int t = 0; t < NT; t++) tot[t][0] = tot[t][1] = _mm256_setzero_si256();
            for (int64_t r0 = 0; r0 < rbs; r0 += RCH) {
                int64_t r1 = r0 + RCH < rbs ? r0 + RCH : rbs;
                __m256i acc[NT][2];
                for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
                for (int64_t rb = r0; rb < r1; rb++) {
                    const uint8_t *tile = w->trits + ((size_t)rb * (size_t)kbs + (size_t)cb) * 64;
                    for (int hh = 0; hh < 4; hh++) {
                        __m256i s = _mm256_shuffle_epi8(
                            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tile + 16 * hh))), idx);
                        __m256i d0 = _mm256_and_si256(s, mlo), d1 = _mm256_and_si256(s, mhi);
                        for (int t = 0; t < nt; t++) {
                            __m256i b = bc32(hq + (t0 + t) * ldh + rb * 16 + 4 * hh);
                            acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(d0, b), ones));
                            acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(d1, b), ones));
                        }
                    }
                }
                for (int t = 0; t < nt; t++) {
                    tot[t][0] = _mm256_add_epi32(tot[t][0], _mm256_srav_epi32(acc[t][0], shlo));
                    tot[t][1] = _mm256_add_epi32(tot[t][1], _mm256_srav_epi32(acc[t][1], shhi));
                }
            }
            for (int t = 0; t < nt; t++) {
                __m256i hs = _mm256_set1_epi32(hsum[t0 + t]);
                for (int hh = 0; hh < 2; hh++) {
                    int64_t j0 = cb * 16 + hh * 8;
                    if (j0 < w->cols) store8(o, t0 + t, j0, _mm256_sub_epi32(tot[t][hh], hs), (int)(w->cols - j0));
                }
            }
        }
    }
}

/* ---- fused weight gradient + update --------------------------------------------------------- */

static void avx2_upd(arb_ternary *w, const arb_lin_grad *gr, int64_t rb, int64_t kb0, int64_t kb1,
                     const arb_upd_plan *pl, arb_upd_row_acc *racc) {
    const int64_t n4 = gr->n4;
    const int64_t nchunk = (n4 + ARB_LIN_NG_CHUNK - 1) / ARB_LIN_NG_CHUNK;
    const int8_t *hb = gr->ht + (size_t)rb * (size_t)n4 * 64;
    /* the rule runs per row over a strip of STRIP tiles: one arb_upd_row call per 256 weights
     * instead of per 16 (the per-call setup dominated); 16 KB of int32, never the whole G */
    enum { STRIP = 16 };
    int32_t strip[16][STRIP * 16];
    for (int64_t kb = kb0; kb < kb1; kb++) {
        int32_t g[16][16];
        memset(g, 0, sizeof g);
        for (int64_t ch = 0; ch < nchunk; ch++) {
            int64_t g0 = ch * ARB_LIN_NG_CHUNK, g1 = g0 + ARB_LIN_NG_CHUNK < n4 ? g0 + ARB_LIN_NG_CHUNK : n4;
            __m256i a[16][2];
            for (int r = 0; r < 16; r++) a[r][0] = a[r][1] = _mm256_setzero_si256();
            const uint8_t *xv = gr->xt + (size_t)kb * (size_t)n4 * 64;
            for (int64_t ng = g0; ng < g1; ng++) {
                /* 16 columns × 4 tokens u8 → 4 vectors of 4 columns × 4 tokens, 16-bit */
                __m256i x16[4];
                for (int q = 0; q < 4; q++)
                    x16[q] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xv + ng * 64 + 16 * q)));
                for (int r = 0; r < 16; r++) {
                    __m256i h16 = _mm256_cvtepi8_epi16(_mm_set1_epi32(*(const int32_t *)(const void *)(hb + ng * 64 + 4 * r)));
                    /* pairs of tokens → 8 lanes (col, token pair); hadd folds the pairs: cols 0..7 / 8..15 */
                    __m256i p0 = _mm256_madd_epi16(x16[0], h16), p1 = _mm256_madd_epi16(x16[1], h16);
                    __m256i p2 = _mm256_madd_epi16(x16[2], h16), p3 = _mm256_madd_epi16(x16[3], h16);
                    __m256i s01 = _mm256_hadd_epi32(p0, p1), s23 = _mm256_hadd_epi32(p2, p3);
                    a[r][0] = _mm256_add_epi32(a[r][0], s01);
                    a[r][1] = _mm256_add_epi32(a[r][1], s23);
                }
            }
            const int32_t *hs = gr->hsum + ch * w->rows_pad + rb * 16;
            for (int r = 0; r < 16; r++) {
                /* hadd lane order: [c0 c1 | c4 c5] [c2 c3 | c6 c7] per 128-bit half → columns */
                int32_t v[16];
                _mm256_storeu_si256((__m256i *)v, a[r][0]);
                _mm256_storeu_si256((__m256i *)(v + 8), a[r][1]);
                static const int col[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
                for (int i = 0; i < 16; i++) g[r][col[i]] += v[i] - 128 * hs[r];
            }
        }
        const int64_t k0 = kb - (kb - kb0) % STRIP;
        for (int r = 0; r < 16; r++) memcpy(strip[r] + (kb - k0) * 16, g[r], sizeof g[r]);
        if (kb + 1 < kb1 && (kb + 1 - kb0) % STRIP != 0) continue;
        int64_t c1 = kb * 16 + 16 < w->cols ? kb * 16 + 16 : w->cols;
        for (int r = 0; r < 16 && rb * 16 + r < w->rows; r++) {
            if (pl) {
                arb_upd_row(w, rb * 16 + r, k0 * 16, c1, strip[r], pl, &racc[r]);
            } else {
                for (int64_t c = k0 * 16; c < c1; c++) {
                    int32_t v = strip[r][c - k0 * 16];
                    racc[r].abs_g += v < 0 ? -(int64_t)v : (int64_t)v;
                }
            }
        }
    }
}

const arb_lin_kernels arb_lin_kernels_avx2 = {avx2_fwd,
                                              avx2_bwdx,
                                              avx2_upd,
                                              arb_lin_quant_dy_ref,
                                              arb_lin_pack_grad_ref,
                                              arb_lin_col_amax_ref,
                                              arb_lin_pack_x_ref,
                                              NULL /* vpmaddubsw saturates on whole rows64 bytes: tile16 */};
