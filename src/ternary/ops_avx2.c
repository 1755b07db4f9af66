/* src/ternary/ops_avx2.c — AVX2 tier of the ternary core's kernels (table in ops_internal.h).
 *
 * Why it gives the reference's bits: every float result is produced by the same IEEE ops in the
 * same order as ops_ref.c, one intrinsic per op (no FMA even though -mfma is on: intrinsics are
 * never contracted); the max reductions are order-free; the double sums of RMSNorm use the
 * reference's 8 lanes (two __m256d: lanes 0-3 and 4-7) and its reduction tree; the random
 * draws are arb_rand_u32 lane by lane; the per-weight rule is integer (int64 pressure in
 * even/odd 64-bit halves, with the arithmetic right shift AVX2 lacks built from xor/logical). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/rng_simd.h"
#include "ternary/ops_internal.h"

#define AI static inline __attribute__((always_inline))

AI __m256i iota8(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }

/* -1 in lanes [0, n), 0 above. */
AI __m256i lane_mask8(int64_t n) {
    int k = n >= 8 ? 8 : (n <= 0 ? 0 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), iota8());
}

/* 8 int32 in [-128, 127] → 8 bytes in the low half. */
AI __m128i pack8(__m256i v) {
    const __m256i sh = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                                        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(v, sh);
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
}

AI void store_bytes(int8_t *q, __m128i b, int64_t n) {
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)(void *)q, b);
    } else if (n > 0) {
        int8_t t[16];
        _mm_storeu_si128((__m128i *)(void *)t, b);
        memcpy(q, t, (size_t)n);
    }
}

AI __m128i load_bytes(const int8_t *p, int64_t n) {
    if (n >= 8) return _mm_loadl_epi64((const __m128i *)(const void *)p);
    int8_t t[16] = {0};
    if (n > 0) memcpy(t, p, (size_t)n);
    return _mm_loadu_si128((const __m128i *)(const void *)t);
}

/* 32 int32 in [-128, 127] (four vectors, in order) → 32 bytes. */
AI __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AI float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* The reference's lane tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
AI double lanes_sum(__m256d lo, __m256d hi) {
    __m256d s = _mm256_add_pd(lo, hi);
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

/* arb_ops_q8 on an integer-valued float: NaN → 0, clamp ±127, to int32. */
AI __m256i q8(__m256 v) {
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(v);
}

AI __m256 abs8(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))); }

/* ---- activation quantization ----------------------------------------------------------------- */

AI __m256i quant8(__m256 x, __m256 inv) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 v = _mm256_mul_ps(x, inv);
    v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic); /* round_even */
    return q8(v);
}

static void avx2_quantize_row(const float *x, int64_t cols, int64_t ld, int8_t *q, float *scale) {
    __m256 mx = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        __m256 a = abs8(_mm256_loadu_ps(x + c));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        mx = _mm256_max_ps(a, mx); /* a NaN lane keeps mx */
    }
    if (c < cols) {
        __m256 a = abs8(_mm256_maskload_ps(x + c, lane_mask8(cols - c)));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        mx = _mm256_max_ps(a, mx);
    }
    float amax = hmax8(mx);
    int isnan = _mm256_movemask_ps(nan) != 0;
    if (amax == 0.0f || isnan || !isfinite(amax)) {
        *scale = (amax == 0.0f && !isnan) ? 0.0f : -1.0f;
        memset(q, 0, (size_t)ld);
        return;
    }
    const float invs = 127.0f / amax;
    *scale = amax / 127.0f;
    const __m256 inv = _mm256_set1_ps(invs);
    c = 0;
    for (; c + 32 <= cols; c += 32) {
        __m256i v = pack32(quant8(_mm256_loadu_ps(x + c), inv), quant8(_mm256_loadu_ps(x + c + 8), inv),
                           quant8(_mm256_loadu_ps(x + c + 16), inv), quant8(_mm256_loadu_ps(x + c + 24), inv));
        _mm256_storeu_si256((__m256i *)(void *)(q + c), v);
    }
    for (; c < cols; c += 8)
        store_bytes(q + c, pack8(quant8(_mm256_maskload_ps(x + c, lane_mask8(cols - c)), inv)), cols - c);
    if (ld > cols) memset(q + cols, 0, (size_t)(ld - cols));
}

/* ---- embedding --------------------------------------------------------------------------------- */

/* Lane i = 4g + c of a tile's 16 columns sits at bits 2g + 8c of the row's word. */
AI __m256i trit_shift8(int h) {
    return h ? _mm256_setr_epi32(4, 12, 20, 28, 6, 14, 22, 30) : _mm256_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26);
}

static void avx2_embed_row(const arb_ternary *w, int64_t r, float *out) {
    const __m256 s = _mm256_set1_ps(w->scale[r]);
    const __m256i three = _mm256_set1_epi32(3), one = _mm256_set1_epi32(1);
    const int64_t cols = w->cols;
    for (int64_t kb = 0; kb * 16 < cols; kb++) {
        uint32_t word;
        memcpy(&word, arb_ops_row_word(w, r, kb), 4);
        const __m256i wv = _mm256_set1_epi32((int)word);
        for (int h = 0; h < 2; h++) {
            int64_t c = kb * 16 + h * 8;
            if (c >= cols) break;
            __m256i t = _mm256_sub_epi32(_mm256_and_si256(_mm256_srlv_epi32(wv, trit_shift8(h)), three), one);
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(t), s);
            if (c + 8 <= cols) _mm256_storeu_ps(out + c, v);
            else _mm256_maskstore_ps(out + c, lane_mask8(cols - c), v);
        }
    }
}

static float avx2_absmax(const float *x, int64_t n, int *bad) {
    const __m256 big = _mm256_set1_ps(3.4028234663852886e38f);
    __m256 mx = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j += 8) {
        __m256 a = abs8(j + 8 <= n ? _mm256_loadu_ps(x + j) : _mm256_maskload_ps(x + j, lane_mask8(n - j)));
        b = _mm256_or_ps(b, _mm256_cmp_ps(a, big, _CMP_NLE_UQ)); /* !(a <= FLT_MAX) */
        mx = _mm256_max_ps(a, mx);
    }
    *bad |= _mm256_movemask_ps(b) != 0;
    return hmax8(mx);
}

static void avx2_sround(const float *x, int64_t n, float inv, arb_rng_key key, uint32_t idx0, int8_t *q) {
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int64_t j = 0; j < n; j += 8) {
        __m256 xv = j + 8 <= n ? _mm256_loadu_ps(x + j) : _mm256_maskload_ps(x + j, lane_mask8(n - j));
        __m256 prod = _mm256_mul_ps(xv, vinv);
        __m256 v = _mm256_floor_ps(_mm256_add_ps(prod, arb_rand_unit8(key, idx0 + (uint32_t)j)));
        store_bytes(q + j, pack8(q8(v)), n - j);
    }
}

static void avx2_add_i8(int32_t *g, const int8_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(d + i));
        __m256i lo = _mm256_cvtepi8_epi32(b), hi = _mm256_cvtepi8_epi32(_mm_srli_si128(b, 8));
        _mm256_storeu_si256((__m256i *)(void *)(g + i),
                            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(g + i)), lo));
        _mm256_storeu_si256((__m256i *)(void *)(g + i + 8),
                            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(g + i + 8)), hi));
    }
    for (; i < n; i++) g[i] += d[i];
}

/* ---- RMSNorm ------------------------------------------------------------------------------------ */

/* 8 floats (lanes [0, n) of x + i; 0 above) as two double vectors. */
AI void load8_pd(const float *x, int64_t left, __m256d *lo, __m256d *hi) {
    __m256 v = left >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lane_mask8(left));
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

AI void store8_ps(float *y, int64_t left, __m256 v) {
    if (left >= 8) _mm256_storeu_ps(y, v);
    else _mm256_maskstore_ps(y, lane_mask8(left), v);
}

AI __m256 load8_ps(const float *x, int64_t left) {
    return left >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lane_mask8(left));
}

static float avx2_rms_fwd_row(const float *x, const float *gv, int64_t d, float eps, float *y) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < d; i += 8) {
        __m256d lo, hi;
        load8_pd(x + i, d - i, &lo, &hi);
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(lo, lo));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(hi, hi));
    }
    double ss = lanes_sum(a0, a1);
    float r = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    const __m256 vr = _mm256_set1_ps(r);
    for (int64_t i = 0; i < d; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(load8_ps(x + i, d - i), vr), load8_ps(gv + i, d - i));
        store8_ps(y + i, d - i, v);
    }
    return r;
}

static void avx2_rms_dx_row(const float *x, const float *dy, const float *gv, float rf, int64_t d, float *dx) {
    const __m256d r = _mm256_set1_pd((double)rf);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < d; i += 8) {
        __m256d xl, xh, dl, dh, gl, gh;
        load8_pd(x + i, d - i, &xl, &xh);
        load8_pd(dy + i, d - i, &dl, &dh);
        load8_pd(gv + i, d - i, &gl, &gh);
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_mul_pd(dl, gl), _mm256_mul_pd(xl, r)));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_mul_pd(dh, gh), _mm256_mul_pd(xh, r)));
    }
    const __m256d mean = _mm256_set1_pd(lanes_sum(a0, a1) / (double)d);
    for (int64_t i = 0; i < d; i += 8) {
        __m256d xl, xh, dl, dh, gl, gh;
        load8_pd(x + i, d - i, &xl, &xh);
        load8_pd(dy + i, d - i, &dl, &dh);
        load8_pd(gv + i, d - i, &gl, &gh);
        __m256d ol = _mm256_mul_pd(r, _mm256_sub_pd(_mm256_mul_pd(dl, gl), _mm256_mul_pd(_mm256_mul_pd(xl, r), mean)));
        __m256d oh = _mm256_mul_pd(r, _mm256_sub_pd(_mm256_mul_pd(dh, gh), _mm256_mul_pd(_mm256_mul_pd(xh, r), mean)));
        store8_ps(dx + i, d - i, _mm256_set_m128(_mm256_cvtpd_ps(oh), _mm256_cvtpd_ps(ol)));
    }
}

static float avx2_gain_absmax_row(const float *x, float r, const float *dy, int64_t d, int *bad) {
    const __m256 big = _mm256_set1_ps(3.4028234663852886e38f), vr = _mm256_set1_ps(r);
    __m256 mx = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 8) {
        __m256 a = abs8(_mm256_mul_ps(_mm256_mul_ps(load8_ps(x + i, d - i), vr), load8_ps(dy + i, d - i)));
        b = _mm256_or_ps(b, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));
        mx = _mm256_max_ps(a, mx);
    }
    *bad |= _mm256_movemask_ps(b) != 0;
    return hmax8(mx);
}

static void avx2_gain_sround_row(const float *x, float r, const float *dy, int64_t d, float inv, arb_rng_key key,
                                 uint32_t idx0, int8_t *q) {
    const __m256 vr = _mm256_set1_ps(r), vinv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < d; i += 8) {
        __m256 s = _mm256_mul_ps(_mm256_mul_ps(load8_ps(x + i, d - i), vr), load8_ps(dy + i, d - i));
        __m256 prod = _mm256_mul_ps(s, vinv);
        __m256 v = _mm256_floor_ps(_mm256_add_ps(prod, arb_rand_unit8(key, idx0 + (uint32_t)i)));
        store_bytes(q + i, pack8(q8(v)), d - i);
    }
}

/* ---- the per-weight rule over a row ---------------------------------------------------------- */

/* arb_upd_pressure on 8 lanes: clamp((g·m + round_bits(u, S)) >> S, ±127) in int64 halves. */
AI __m256i pressure8(__m256i g, __m256i m64, int shift, __m256i u) {
    __m256i pe = _mm256_mul_epi32(g, m64);
    __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(g, 32), m64);
    if (shift > 0) {
        __m256i ue = _mm256_and_si256(u, _mm256_set1_epi64x(0xFFFFFFFFll)), uo = _mm256_srli_epi64(u, 32);
        if (shift <= 32) {
            __m128i c = _mm_cvtsi32_si128(32 - shift);
            ue = _mm256_srl_epi64(ue, c);
            uo = _mm256_srl_epi64(uo, c);
        } else {
            __m128i c = _mm_cvtsi32_si128(shift - 32);
            ue = _mm256_sll_epi64(ue, c);
            uo = _mm256_sll_epi64(uo, c);
        }
        pe = _mm256_add_epi64(pe, ue);
        po = _mm256_add_epi64(po, uo);
        /* arithmetic shift: v >> S = ~(~v >>> S) for v < 0 */
        const __m128i s = _mm_cvtsi32_si128(shift);
        const __m256i z = _mm256_setzero_si256();
        __m256i se = _mm256_cmpgt_epi64(z, pe), so = _mm256_cmpgt_epi64(z, po);
        pe = _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(pe, se), s), se);
        po = _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(po, so), s), so);
    }
    const __m256i lo = _mm256_set1_epi64x(-127), hi = _mm256_set1_epi64x(127);
    pe = _mm256_blendv_epi8(pe, hi, _mm256_cmpgt_epi64(pe, hi));
    pe = _mm256_blendv_epi8(pe, lo, _mm256_cmpgt_epi64(lo, pe));
    po = _mm256_blendv_epi8(po, hi, _mm256_cmpgt_epi64(po, hi));
    po = _mm256_blendv_epi8(po, lo, _mm256_cmpgt_epi64(lo, po));
    return _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

typedef struct upd_sums {
    __m256i abs_g, ge; /* int64 lanes */
    int64_t flips;
} upd_sums;

/* Columns c .. c+7 (the first nv of them) of one row: returns their new codes (old codes in the
 * lanes past nv) at their bit positions of the row's tile word. */
AI __m256i upd8(uint32_t word, int h, int8_t *acc_p, const int32_t *g_p, int64_t nv, const arb_upd_plan *pl,
                __m256i m64, uint32_t idx0, upd_sums *st) {
    const __m256i one = _mm256_set1_epi32(1), mone = _mm256_set1_epi32(-1), sh = trit_shift8(h);
    const __m256i valid = lane_mask8(nv);
    __m256i code_old = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)word), sh), _mm256_set1_epi32(3));
    if (nv <= 0) return _mm256_sllv_epi32(code_old, sh);
    __m256i trit = _mm256_sub_epi32(code_old, one);
    __m256i a = _mm256_cvtepi8_epi32(load_bytes(acc_p, nv));
    __m256i g = nv >= 8 ? _mm256_loadu_si256((const __m256i *)(const void *)g_p) : _mm256_maskload_epi32(g_p, valid);
    /* g = 0 gives q = floor(bits / 2^S) = 0 whatever the draw: skip it (most embedding rows) */
    __m256i q = _mm256_testz_si256(g, g) ? _mm256_setzero_si256() : pressure8(g, m64, pl->shift, arb_rand8(pl->key, idx0));

    /* arb_trit_step */
    const __m128i ks = _mm_cvtsi32_si128(pl->leak_shift);
    __m256i bias = _mm256_and_si256(_mm256_srai_epi32(a, 31), _mm256_set1_epi32((int)((1u << pl->leak_shift) - 1u)));
    __m256i leak = _mm256_sra_epi32(_mm256_add_epi32(a, bias), ks); /* a / 2^k, truncated */
    a = _mm256_sub_epi32(_mm256_sub_epi32(a, leak), q);
    a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
    const __m256i tv = _mm256_set1_epi32(pl->threshold), ntv = _mm256_set1_epi32(-pl->threshold);
    __m256i up = _mm256_and_si256(_mm256_cmpgt_epi32(a, _mm256_sub_epi32(tv, one)), _mm256_cmpgt_epi32(one, trit));
    __m256i dn = _mm256_andnot_si256(
        up, _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_add_epi32(ntv, one), a), _mm256_cmpgt_epi32(trit, mone)));
    __m256i tn = _mm256_sub_epi32(_mm256_add_epi32(trit, _mm256_and_si256(up, one)), _mm256_and_si256(dn, one));
    a = _mm256_add_epi32(_mm256_sub_epi32(a, _mm256_and_si256(up, tv)), _mm256_and_si256(dn, tv));
    a = _mm256_blendv_epi8(a, _mm256_min_epi32(a, tv), _mm256_cmpeq_epi32(tn, one));
    a = _mm256_blendv_epi8(a, _mm256_max_epi32(a, ntv), _mm256_cmpeq_epi32(tn, mone));

    /* exact row sums with the old trits (g is 0 in the lanes past nv); flips */
    __m256i ag = _mm256_abs_epi32(g), sg = _mm256_sign_epi32(g, trit);
    st->abs_g = _mm256_add_epi64(st->abs_g, _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(ag)),
                                                             _mm256_cvtepu32_epi64(_mm256_extracti128_si256(ag, 1))));
    st->ge = _mm256_add_epi64(st->ge, _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(sg)),
                                                       _mm256_cvtepi32_epi64(_mm256_extracti128_si256(sg, 1))));
    unsigned moved = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(tn, trit))) &
                     (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(valid));
    st->flips += __builtin_popcount(moved);

    store_bytes(acc_p, pack8(a), nv);
    __m256i code = _mm256_blendv_epi8(code_old, _mm256_add_epi32(tn, one), valid);
    return _mm256_sllv_epi32(code, sh);
}

AI int64_t hsum64(__m256i v) {
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)(void *)t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
}

static void avx2_upd_row(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g, const arb_upd_plan *pl,
                         arb_upd_row_acc *acc) {
    int64_t c = c0;
    if (c & 15) { /* a head that starts inside a tile: the reference */
        int64_t e = (c | 15) + 1 < c1 ? (c | 15) + 1 : c1;
        arb_upd_row_ref(w, o, c, e, g, pl, acc);
        c = e;
    }
    if (c >= c1) return;
    const __m256i m64 = _mm256_set1_epi64x(pl->mult[o]);
    upd_sums st = {_mm256_setzero_si256(), _mm256_setzero_si256(), 0};
    int8_t *arow = w->accum + o * w->cols;
    for (; c < c1; c += 16) {
        int64_t nv = c1 - c;
        uint8_t *wp = arb_ops_row_word(w, o, c >> 4);
        uint32_t word;
        memcpy(&word, wp, 4);
        uint32_t idx = (uint32_t)(o * w->cols + c);
        int64_t h1 = nv > 8 ? 8 : 0; /* the second half's pointers stay inside the arrays */
        __m256i v = _mm256_or_si256(upd8(word, 0, arow + c, g + (c - c0), nv, pl, m64, idx, &st),
                                    upd8(word, 1, arow + c + h1, g + (c - c0) + h1, nv - 8, pl, m64, idx + 8u, &st));
        __m128i x = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        x = _mm_or_si128(x, _mm_unpackhi_epi64(x, x));
        x = _mm_or_si128(x, _mm_srli_epi64(x, 32));
        word = (uint32_t)_mm_cvtsi128_si32(x);
        memcpy(wp, &word, 4);
    }
    acc->abs_g += hsum64(st.abs_g);
    acc->ge += hsum64(st.ge);
    acc->flips += st.flips;
}

const arb_tern_kernels arb_tern_kernels_avx2 = {
    avx2_quantize_row, avx2_embed_row,       avx2_absmax,          avx2_sround, avx2_add_i8, avx2_rms_fwd_row,
    avx2_rms_dx_row,   avx2_gain_absmax_row, avx2_gain_sround_row, avx2_upd_row,
};
