/* src/ternary/ops_avx512.c — AVX-512 tier of the ternary core's kernels (table in ops_internal.h).
 *
 * Why it gives the reference's bits: the same IEEE ops in the same order as ops_ref.c, one
 * intrinsic per op (intrinsics are never contracted into FMA); max reductions are order-free;
 * RMSNorm's double sums keep the reference's 8 lanes in one __m512d (8 floats widened per
 * step, so lane l still adds the terms i ≡ l mod 8 in order) and its reduction tree; the
 * per-weight rule runs one tile row (16 weights, one 32-bit trit word) per step with a lane
 * mask for ragged edges, the int64 pressure in even/odd halves (vpsraq exists here). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/rng_simd.h"
#include "ternary/ops_internal.h"

#define AI static inline __attribute__((always_inline))

AI __mmask16 mask16(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1u)); }
AI __mmask8 mask8(int64_t left) { return left >= 8 ? (__mmask8)0xFF : (left <= 0 ? 0 : (__mmask8)((1u << left) - 1u)); }

AI __m512 floor16(__m512 v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

/* arb_ops_q8 on an integer-valued float: NaN → 0, clamp ±127, to int8. */
AI __m128i q8(__m512 v) {
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
}

AI __m512 load16(const float *x, int64_t left) {
    return left >= 16 ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(mask16(left), x);
}
AI void store16(float *y, int64_t left, __m512 v) {
    if (left >= 16) _mm512_storeu_ps(y, v);
    else _mm512_mask_storeu_ps(y, mask16(left), v);
}
AI void store16_i8(int8_t *q, int64_t left, __m128i b) {
    if (left >= 16) _mm_storeu_si128((__m128i *)(void *)q, b);
    else _mm_mask_storeu_epi8(q, mask16(left), b);
}

/* ---- activation quantization ----------------------------------------------------------------- */

static void avx512_quantize_row(const float *x, int64_t cols, int64_t ld, int8_t *q, float *scale) {
    __m512 mx = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (int64_t c = 0; c < cols; c += 16) {
        __m512 a = _mm512_abs_ps(load16(x + c, cols - c));
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        mx = _mm512_max_ps(a, mx); /* a NaN lane keeps mx */
    }
    float amax = _mm512_reduce_max_ps(mx);
    if (amax == 0.0f || nan || !isfinite(amax)) {
        *scale = (amax == 0.0f && !nan) ? 0.0f : -1.0f;
        memset(q, 0, (size_t)ld);
        return;
    }
    const float invs = 127.0f / amax;
    *scale = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(invs), magic = _mm512_set1_ps(12582912.0f);
    for (int64_t c = 0; c < cols; c += 16) {
        __m512 v = _mm512_mul_ps(load16(x + c, cols - c), inv);
        v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic); /* round_even */
        store16_i8(q + c, cols - c, q8(v));
    }
    if (ld > cols) memset(q + cols, 0, (size_t)(ld - cols));
}

/* ---- embedding --------------------------------------------------------------------------------- */

/* Lane i = 4g + c of a tile's 16 columns sits at bits 2g + 8c of the row's word. */
AI __m512i trit_shifts(void) { return _mm512_set_epi32(30, 22, 14, 6, 28, 20, 12, 4, 26, 18, 10, 2, 24, 16, 8, 0); }

static void avx512_embed_row(const arb_ternary *w, int64_t r, float *out) {
    const __m512 s = _mm512_set1_ps(w->scale[r]);
    const __m512i three = _mm512_set1_epi32(3), one = _mm512_set1_epi32(1), sh = trit_shifts();
    const int64_t cols = w->cols;
    for (int64_t kb = 0; kb * 16 < cols; kb++) {
        uint32_t word;
        memcpy(&word, arb_ops_row_word(w, r, kb), 4);
        __m512i t = _mm512_sub_epi32(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)word), sh), three), one);
        store16(out + kb * 16, cols - kb * 16, _mm512_mul_ps(_mm512_cvtepi32_ps(t), s));
    }
}

static float avx512_absmax(const float *x, int64_t n, int *bad) {
    const __m512 big = _mm512_set1_ps(3.4028234663852886e38f);
    __m512 mx = _mm512_setzero_ps();
    __mmask16 b = 0;
    for (int64_t j = 0; j < n; j += 16) {
        __m512 a = _mm512_abs_ps(load16(x + j, n - j));
        b |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ); /* !(a <= FLT_MAX) */
        mx = _mm512_max_ps(a, mx);
    }
    *bad |= b != 0;
    return _mm512_reduce_max_ps(mx);
}

static void avx512_sround(const float *x, int64_t n, float inv, arb_rng_key key, uint32_t idx0, int8_t *q) {
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t j = 0; j < n; j += 16) {
        __m512 prod = _mm512_mul_ps(load16(x + j, n - j), vinv);
        __m512 v = floor16(_mm512_add_ps(prod, arb_rand_unit16(key, idx0 + (uint32_t)j)));
        store16_i8(q + j, n - j, q8(v));
    }
}

static void avx512_add_i8(int32_t *g, const int8_t *d, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, d + i));
        _mm512_mask_storeu_epi32(g + i, m, _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, g + i), v));
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------------------ */

/* 8 floats (lanes [0, left); 0 above) widened to double. */
AI __m512d load8_pd(const float *x, int64_t left) {
    return _mm512_cvtps_pd(left >= 8 ? _mm256_loadu_ps(x) : _mm256_maskz_loadu_ps(mask8(left), x));
}

/* The reference's lane tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
AI double lanes_sum(__m512d v) {
    __m256d s = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

static float avx512_rms_fwd_row(const float *x, const float *gv, int64_t d, float eps, float *y) {
    __m512d a = _mm512_setzero_pd();
    for (int64_t i = 0; i < d; i += 8) {
        __m512d v = load8_pd(x + i, d - i);
        a = _mm512_add_pd(a, _mm512_mul_pd(v, v));
    }
    double ss = lanes_sum(a);
    float r = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    const __m512 vr = _mm512_set1_ps(r);
    for (int64_t i = 0; i < d; i += 16)
        store16(y + i, d - i, _mm512_mul_ps(_mm512_mul_ps(load16(x + i, d - i), vr), load16(gv + i, d - i)));
    return r;
}

static void avx512_rms_dx_row(const float *x, const float *dy, const float *gv, float rf, int64_t d, float *dx) {
    const __m512d r = _mm512_set1_pd((double)rf);
    __m512d a = _mm512_setzero_pd();
    for (int64_t i = 0; i < d; i += 8) {
        __m512d dg = _mm512_mul_pd(load8_pd(dy + i, d - i), load8_pd(gv + i, d - i));
        a = _mm512_add_pd(a, _mm512_mul_pd(dg, _mm512_mul_pd(load8_pd(x + i, d - i), r)));
    }
    const __m512d mean = _mm512_set1_pd(lanes_sum(a) / (double)d);
    for (int64_t i = 0; i < d; i += 8) {
        __m512d dg = _mm512_mul_pd(load8_pd(dy + i, d - i), load8_pd(gv + i, d - i));
        __m512d xm = _mm512_mul_pd(_mm512_mul_pd(load8_pd(x + i, d - i), r), mean);
        __m256 o = _mm512_cvtpd_ps(_mm512_mul_pd(r, _mm512_sub_pd(dg, xm)));
        if (d - i >= 8) _mm256_storeu_ps(dx + i, o);
        else _mm256_mask_storeu_ps(dx + i, mask8(d - i), o);
    }
}

static float avx512_gain_absmax_row(const float *x, float r, const float *dy, int64_t d, int *bad) {
    const __m512 big = _mm512_set1_ps(3.4028234663852886e38f), vr = _mm512_set1_ps(r);
    __m512 mx = _mm512_setzero_ps();
    __mmask16 b = 0;
    for (int64_t i = 0; i < d; i += 16) {
        __m512 a = _mm512_abs_ps(_mm512_mul_ps(_mm512_mul_ps(load16(x + i, d - i), vr), load16(dy + i, d - i)));
        b |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ);
        mx = _mm512_max_ps(a, mx);
    }
    *bad |= b != 0;
    return _mm512_reduce_max_ps(mx);
}

static void avx512_gain_sround_row(const float *x, float r, const float *dy, int64_t d, float inv, arb_rng_key key,
                                   uint32_t idx0, int8_t *q) {
    const __m512 vr = _mm512_set1_ps(r), vinv = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < d; i += 16) {
        __m512 s = _mm512_mul_ps(_mm512_mul_ps(load16(x + i, d - i), vr), load16(dy + i, d - i));
        __m512 prod = _mm512_mul_ps(s, vinv);
        __m512 v = floor16(_mm512_add_ps(prod, arb_rand_unit16(key, idx0 + (uint32_t)i)));
        store16_i8(q + i, d - i, q8(v));
    }
}

/* ---- the per-weight rule over a row ---------------------------------------------------------- */

/* arb_upd_pressure on 16 lanes: clamp((g·m + round_bits(u, S)) >> S, ±127) in int64 halves. */
AI __m512i pressure16(__m512i g, __m512i m64, int shift, __m512i u) {
    __m512i pe = _mm512_mul_epi32(g, m64);
    __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(g, 32), m64);
    if (shift > 0) {
        __m512i ue = _mm512_and_si512(u, _mm512_set1_epi64(0xFFFFFFFFll)), uo = _mm512_srli_epi64(u, 32);
        if (shift <= 32) {
            __m128i c = _mm_cvtsi32_si128(32 - shift);
            ue = _mm512_srl_epi64(ue, c);
            uo = _mm512_srl_epi64(uo, c);
        } else {
            __m128i c = _mm_cvtsi32_si128(shift - 32);
            ue = _mm512_sll_epi64(ue, c);
            uo = _mm512_sll_epi64(uo, c);
        }
        const __m128i s = _mm_cvtsi32_si128(shift);
        pe = _mm512_sra_epi64(_mm512_add_epi64(pe, ue), s);
        po = _mm512_sra_epi64(_mm512_add_epi64(po, uo), s);
    }
    const __m512i lo = _mm512_set1_epi64(-127), hi = _mm512_set1_epi64(127);
    pe = _mm512_min_epi64(_mm512_max_epi64(pe, lo), hi);
    po = _mm512_min_epi64(_mm512_max_epi64(po, lo), hi);
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, pe, _mm512_slli_epi64(po, 32));
}

AI __m512i widen_add(__m512i acc, __m512i v, int is_unsigned) {
    __m256i lo = _mm512_castsi512_si256(v), hi = _mm512_extracti64x4_epi64(v, 1);
    if (is_unsigned) return _mm512_add_epi64(acc, _mm512_add_epi64(_mm512_cvtepu32_epi64(lo), _mm512_cvtepu32_epi64(hi)));
    return _mm512_add_epi64(acc, _mm512_add_epi64(_mm512_cvtepi32_epi64(lo), _mm512_cvtepi32_epi64(hi)));
}

static void avx512_upd_row(arb_ternary *w, int64_t o, int64_t c0, int64_t c1, const int32_t *g,
                           const arb_upd_plan *pl, arb_upd_row_acc *acc) {
    int64_t c = c0;
    if (c & 15) { /* a head that starts inside a tile: the reference */
        int64_t e = (c | 15) + 1 < c1 ? (c | 15) + 1 : c1;
        arb_upd_row_ref(w, o, c, e, g, pl, acc);
        c = e;
    }
    if (c >= c1) return;
    const __m512i one = _mm512_set1_epi32(1), mone = _mm512_set1_epi32(-1), three = _mm512_set1_epi32(3);
    const __m512i sh = trit_shifts(), m64 = _mm512_set1_epi64(pl->mult[o]);
    const __m512i tv = _mm512_set1_epi32(pl->threshold), ntv = _mm512_set1_epi32(-pl->threshold);
    const __m512i lmask = _mm512_set1_epi32((int)((1u << pl->leak_shift) - 1u));
    const __m128i ks = _mm_cvtsi32_si128(pl->leak_shift);
    __m512i abs_g = _mm512_setzero_si512(), ge = _mm512_setzero_si512();
    int64_t flips = 0;
    int8_t *arow = w->accum + o * w->cols;
    for (; c < c1; c += 16) {
        const __mmask16 cm = mask16(c1 - c);
        uint8_t *wp = arb_ops_row_word(w, o, c >> 4);
        uint32_t word;
        memcpy(&word, wp, 4);
        __m512i code_old = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)word), sh), three);
        __m512i trit = _mm512_sub_epi32(code_old, one);
        __m512i a = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(cm, arow + c));
        __m512i gv = _mm512_maskz_loadu_epi32(cm, g + (c - c0));
        /* g = 0 gives q = floor(bits / 2^S) = 0 whatever the draw: skip it (most embedding rows) */
        __m512i q = _mm512_test_epi32_mask(gv, gv)
                        ? pressure16(gv, m64, pl->shift, arb_rand16(pl->key, (uint32_t)(o * w->cols + c)))
                        : _mm512_setzero_si512();

        /* arb_trit_step */
        __m512i leak = _mm512_sra_epi32(_mm512_add_epi32(a, _mm512_and_si512(_mm512_srai_epi32(a, 31), lmask)), ks);
        a = _mm512_sub_epi32(_mm512_sub_epi32(a, leak), q);
        a = _mm512_min_epi32(_mm512_max_epi32(a, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
        __mmask16 up = _mm512_cmpge_epi32_mask(a, tv) & _mm512_cmplt_epi32_mask(trit, one);
        __mmask16 dn = (__mmask16)(~up & _mm512_cmple_epi32_mask(a, ntv) & _mm512_cmpgt_epi32_mask(trit, mone));
        __m512i tn = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(trit, up, trit, one), dn, trit, one);
        a = _mm512_mask_add_epi32(_mm512_mask_sub_epi32(a, up, a, tv), dn, a, tv);
        a = _mm512_mask_min_epi32(a, _mm512_cmpeq_epi32_mask(tn, one), a, tv);
        a = _mm512_mask_max_epi32(a, _mm512_cmpeq_epi32_mask(tn, mone), a, ntv);

        /* exact row sums with the old trits (gv is 0 past the mask); flips */
        abs_g = widen_add(abs_g, _mm512_abs_epi32(gv), 1);
        __mmask16 pos = _mm512_cmpeq_epi32_mask(trit, one), neg = _mm512_cmpeq_epi32_mask(trit, mone);
        ge = widen_add(ge, _mm512_mask_sub_epi32(_mm512_maskz_mov_epi32(pos, gv), neg, _mm512_setzero_si512(), gv), 0);
        flips += __builtin_popcount((unsigned)(_mm512_cmpneq_epi32_mask(tn, trit) & cm));

        _mm_mask_storeu_epi8(arow + c, cm, _mm512_cvtepi32_epi8(a));
        __m512i code = _mm512_mask_blend_epi32(cm, code_old, _mm512_add_epi32(tn, one));
        word = (uint32_t)_mm512_reduce_or_epi32(_mm512_sllv_epi32(code, sh));
        memcpy(wp, &word, 4);
    }
    acc->abs_g += _mm512_reduce_add_epi64(abs_g);
    acc->ge += _mm512_reduce_add_epi64(ge);
    acc->flips += flips;
}

const arb_tern_kernels arb_tern_kernels_avx512 = {
    avx512_quantize_row, avx512_embed_row,       avx512_absmax,          avx512_sround, avx512_add_i8,
    avx512_rms_fwd_row,  avx512_rms_dx_row,      avx512_gain_absmax_row, avx512_gain_sround_row,
    avx512_upd_row,
};
