/* AVX-512 sidecar kernels: register-blocked fp32 GEMM (FMA) and int8 GEMM (VNNI vpdpbusd),
 * activation row quantization, and vectorized exp / GELU / SiLU / tanh.
 *
 * Why these shapes: a 6-row × 64-column tile keeps 24 accumulators in zmm registers and needs
 * 4 weight vectors + 1 broadcast per k step, so loads stay well under the FMA/VNNI rate. The
 * int8 epilogue uses the same float operations, in the same order, as the scalar reference in
 * sc_kernels.c, so int8 results are bit-identical between tiers. Compiled with AVX-512 flags;
 * only called after a CPUID check (sc_tier()). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "sidecars/sc_internal.h"

#define AI static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- fp32 GEMM */

AI void f32_tile(const int MR, const int NV, int K, const float *A, size_t lda, const float *B, size_t ps,
                 const float *bias, float *C, size_t ldc, int ncols, int flags) {
    __m512 acc[6][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(B + v * ps + (size_t)k * 16);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(A[(size_t)r * lda + k]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + v * 16) : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_add_ps(acc[r][v], bv);
            if (flags & SC_EPI_ACCUM) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}

typedef void (*f32_tile_fn)(int K, const float *A, size_t lda, const float *B, size_t ps, const float *bias, float *C,
                            size_t ldc, int ncols, int flags);
#define F32T(MR, NV)                                                                                              \
    static void f32t_##MR##_##NV(int K, const float *A, size_t lda, const float *B, size_t ps, const float *bias, \
                                 float *C, size_t ldc, int ncols, int flags) {                                    \
        f32_tile(MR, NV, K, A, lda, B, ps, bias, C, ldc, ncols, flags);                                           \
    }
#define F32ROW(MR) F32T(MR, 1) F32T(MR, 2) F32T(MR, 3) F32T(MR, 4)
F32ROW(1) F32ROW(2) F32ROW(3) F32ROW(4) F32ROW(5) F32T(6, 1) F32T(6, 2) F32T(6, 3)
#define F32ENT(MR) {f32t_##MR##_1, f32t_##MR##_2, f32t_##MR##_3, f32t_##MR##_4}
static const f32_tile_fn f32_tiles[6][4] = {F32ENT(1), F32ENT(2), F32ENT(3), F32ENT(4), F32ENT(5),
                                            {f32t_6_1, f32t_6_2, f32t_6_3, NULL}};

/* The full 6×4 tile with 24 named accumulators and the multiply-adds in inline asm: with the
 * array-and-intrinsics form gcc 12 kept the accumulators on the stack (a load and a store around
 * every instruction). Same arithmetic, same order per element as f32_tile. */
#define FMA(c, a, b) __asm__("vfmadd231ps %2, %1, %0" : "+v"(c) : "v"(a), "v"(b))
#define DPB(c, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(c) : "v"(a), "v"(b))

static void f32t_fast_6_4(int K, const float *A, size_t lda, const float *B, size_t ps, const float *bias, float *C,
                          size_t ldc, int ncols, int flags) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512 c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda, *a4 = A + 4 * lda, *a5 = A + 5 * lda;
    for (int k = 0; k < K; k++) {
        const float *bk = B + (size_t)k * 16;
        __m512 w0 = _mm512_loadu_ps(bk), w1 = _mm512_loadu_ps(bk + ps), w2 = _mm512_loadu_ps(bk + 2 * ps),
               w3 = _mm512_loadu_ps(bk + 3 * ps), x;
#define FROW(r)                                                                                \
    x = _mm512_set1_ps(a##r[k]);                                                               \
    FMA(c##r##0, x, w0); FMA(c##r##1, x, w1); FMA(c##r##2, x, w2); FMA(c##r##3, x, w3);
        FROW(0) FROW(1) FROW(2) FROW(3) FROW(4) FROW(5)
#undef FROW
    }
    __m512 acc[6][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                        {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    for (int v = 0; v < 4; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + v * 16) : _mm512_setzero_ps();
        for (int r = 0; r < 6; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_add_ps(acc[r][v], bv);
            if (flags & SC_EPI_ACCUM) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}


static void f32_avx512(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                       size_t ldc, int flags, int nb0, int nb1) {
    size_t ps = (size_t)K * 16;
    for (int p = nb0; p < nb1; p += 4) {
        int nv = nb1 - p < 4 ? nb1 - p : 4;
        int ncols = N - p * 16;
        for (int m = 0; m < M; m += 6) {
            int mr = M - m < 6 ? M - m : 6;
            (mr == 6 && nv == 4 ? f32t_fast_6_4 : f32_tiles[mr - 1][nv - 1])(K, A + (size_t)m * lda, lda, Bp + (size_t)p * ps, ps, bias ? bias + p * 16 : NULL,
                                      C + (size_t)m * ldc + p * 16, ldc, ncols, flags);
        }
    }
}

/* ---------------------------------------------------------------- int8 GEMM (VNNI) */

AI void q8_tile(const int MR, const int NV, int kp, const uint8_t *A, const float *as, const int8_t *B, size_t ps,
                const int32_t *qsum, const float *scale, const float *bias, float *C, size_t ldc, int ncols,
                int flags) {
    __m512i acc[6][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_si512();
    for (int k4 = 0; k4 < kp / 4; k4++) {
        __m512i b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_si512((const void *)(B + v * ps + (size_t)k4 * 64));
        for (int r = 0; r < MR; r++) {
            int32_t a4;
            __builtin_memcpy(&a4, A + (size_t)r * kp + k4 * 4, 4);
            __m512i a = _mm512_set1_epi32(a4);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a, b[v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512i qs = _mm512_loadu_si512((const void *)(qsum + v * 16));
        __m512 sc = _mm512_loadu_ps(scale + v * 16);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + v * 16) : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], qs)),
                                     _mm512_mul_ps(_mm512_set1_ps(as[r]), sc));
            if (bias) y = _mm512_add_ps(y, bv);
            if (flags & SC_EPI_ACCUM) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}

typedef void (*q8_tile_fn)(int kp, const uint8_t *A, const float *as, const int8_t *B, size_t ps, const int32_t *qsum,
                           const float *scale, const float *bias, float *C, size_t ldc, int ncols, int flags);
#define Q8T(MR, NV)                                                                                                \
    static void q8t_##MR##_##NV(int kp, const uint8_t *A, const float *as, const int8_t *B, size_t ps,            \
                                const int32_t *qsum, const float *scale, const float *bias, float *C, size_t ldc, \
                                int ncols, int flags) {                                                            \
        q8_tile(MR, NV, kp, A, as, B, ps, qsum, scale, bias, C, ldc, ncols, flags);                                \
    }
#define Q8ROW(MR) Q8T(MR, 1) Q8T(MR, 2) Q8T(MR, 3) Q8T(MR, 4)
Q8ROW(1) Q8ROW(2) Q8ROW(3) Q8ROW(4) Q8ROW(5) Q8T(6, 1) Q8T(6, 2) Q8T(6, 3)
#define Q8ENT(MR) {q8t_##MR##_1, q8t_##MR##_2, q8t_##MR##_3, q8t_##MR##_4}
static const q8_tile_fn q8_tiles[6][4] = {Q8ENT(1), Q8ENT(2), Q8ENT(3), Q8ENT(4), Q8ENT(5),
                                          {q8t_6_1, q8t_6_2, q8t_6_3, NULL}};

static void q8t_fast_6_4(int kp, const uint8_t *A, const float *as, const int8_t *B, size_t ps, const int32_t *qsum,
                         const float *scale, const float *bias, float *C, size_t ldc, int ncols, int flags) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512i c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    const uint8_t *a0 = A, *a1 = A + kp, *a2 = A + 2 * (size_t)kp, *a3 = A + 3 * (size_t)kp, *a4 = A + 4 * (size_t)kp,
                  *a5 = A + 5 * (size_t)kp;
    for (int k4 = 0; k4 < kp / 4; k4++) {
        const int8_t *bk = B + (size_t)k4 * 64;
        __m512i w0 = _mm512_loadu_si512((const void *)bk), w1 = _mm512_loadu_si512((const void *)(bk + ps)),
                w2 = _mm512_loadu_si512((const void *)(bk + 2 * ps)), w3 = _mm512_loadu_si512((const void *)(bk + 3 * ps)), x;
        int32_t t;
#define QROW(r)                                                                                 \
    __builtin_memcpy(&t, a##r + k4 * 4, 4);                                                     \
    x = _mm512_set1_epi32(t);                                                                   \
    DPB(c##r##0, x, w0); DPB(c##r##1, x, w1); DPB(c##r##2, x, w2); DPB(c##r##3, x, w3);
        QROW(0) QROW(1) QROW(2) QROW(3) QROW(4) QROW(5)
#undef QROW
    }
    __m512i acc[6][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                         {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    for (int v = 0; v < 4; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512i qs = _mm512_loadu_si512((const void *)(qsum + v * 16));
        __m512 sc = _mm512_loadu_ps(scale + v * 16);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + v * 16) : _mm512_setzero_ps();
        for (int r = 0; r < 6; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], qs)),
                                     _mm512_mul_ps(_mm512_set1_ps(as[r]), sc));
            if (bias) y = _mm512_add_ps(y, bv);
            if (flags & SC_EPI_ACCUM) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}


static void q8_avx512(int M, const uint8_t *Aq, const float *as, const sc_packq *B, const float *bias, float *C,
                      size_t ldc, int flags, int nb0, int nb1) {
    int kp = B->kp;
    size_t ps = (size_t)kp * 16;
    for (int p = nb0; p < nb1; p += 4) {
        int nv = nb1 - p < 4 ? nb1 - p : 4;
        int ncols = B->n - p * 16;
        for (int m = 0; m < M; m += 6) {
            int mr = M - m < 6 ? M - m : 6;
            (mr == 6 && nv == 4 ? q8t_fast_6_4 : q8_tiles[mr - 1][nv - 1])(kp, Aq + (size_t)m * kp, as + m, B->p + (size_t)p * ps, ps, B->qsum + p * 16,
                                     B->scale + p * 16, bias ? bias + p * 16 : NULL, C + (size_t)m * ldc + p * 16,
                                     ldc, ncols, flags);
        }
    }
}

static float quant_row_avx512(const float *x, int K, int Kp, uint8_t *u8) {
    __m512 mx = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
    if (k < K) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (K - k)) - 1), x + k)));
    float amax = _mm512_reduce_max_ps(mx);
    float s = amax / 127.f;
    float inv = amax > 0.f ? 127.f / amax : 0.f;
    /* clamp then round = round then clamp (the bounds are integers); cvtps rounds to nearest even
     * as nearbyintf does; full vectors store without a mask */
    __m512 vi = _mm512_set1_ps(inv), hi = _mm512_set1_ps(127.f), lo = _mm512_set1_ps(-127.f);
    __m512i off = _mm512_set1_epi32(128);
    for (k = 0; k + 16 <= K; k += 16) {
        __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + k), vi), lo), hi);
        _mm_storeu_si128((__m128i *)(u8 + k), _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), off)));
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
        __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + k), vi), lo), hi);
        _mm_mask_storeu_epi8(u8 + k, mk, _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), off)));
    }
    for (k = K; k < Kp; k++) u8[k] = 128;
    return s;
}

const sc_gemm_tier sc_tier_avx512 = {f32_avx512, q8_avx512, quant_row_avx512};

/* ---------------------------------------------------------------- int8 peak */

/* A register-only vpdpbusd loop: 24 independent chains (enough for 2 ports × latency 5+). */
double sc_vnni_peak_ops(long iters) {
    __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x01010101);
    __m512i c0 = _mm512_set1_epi32(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0;
    __m512i c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0, c16 = c0, c17 = c0, c18 = c0, c19 = c0;
    __m512i c20 = c0, c21 = c0, c22 = c0, c23 = c0;
    for (long it = 0; it < iters; it++) {
        DPB(c0, a, b); DPB(c1, a, b); DPB(c2, a, b); DPB(c3, a, b); DPB(c4, a, b); DPB(c5, a, b);
        DPB(c6, a, b); DPB(c7, a, b); DPB(c8, a, b); DPB(c9, a, b); DPB(c10, a, b); DPB(c11, a, b);
        DPB(c12, a, b); DPB(c13, a, b); DPB(c14, a, b); DPB(c15, a, b); DPB(c16, a, b); DPB(c17, a, b);
        DPB(c18, a, b); DPB(c19, a, b); DPB(c20, a, b); DPB(c21, a, b); DPB(c22, a, b); DPB(c23, a, b);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)),
                                             _mm512_add_epi32(_mm512_add_epi32(c12, c13), _mm512_add_epi32(c14, c15))));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c16, c17), _mm512_add_epi32(c18, c19)),
                                             _mm512_add_epi32(_mm512_add_epi32(c20, c21), _mm512_add_epi32(c22, c23))));
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return (double)iters * 24 * 64 * 2; /* 64 multiply-adds per instruction, 2 ops each */
}

/* ---------------------------------------------------------------- elementwise */

AI __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.f)), _mm512_set1_ps(88.37626f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

/* erf(x) by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), odd extension. */
AI __m512 erf512(__m512 x) {
    __m512 ax = _mm512_abs_ps(x);
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
    __m512 y = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.f));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y),
                                               _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000))));
}

#define MAP512(name, expr)                                                   \
    static void name(float *x, size_t n) {                                   \
        size_t i = 0;                                                        \
        for (; i < n; i += 16) {                                             \
            size_t w = n - i < 16 ? n - i : 16;                              \
            __mmask16 mk = (__mmask16)(w == 16 ? 0xFFFF : (1u << w) - 1);    \
            __m512 v = _mm512_maskz_loadu_ps(mk, x + i);                     \
            _mm512_mask_storeu_ps(x + i, mk, (expr));                        \
        }                                                                    \
    }

MAP512(exp_avx512, exp512(v))
MAP512(gelu_avx512, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                                  _mm512_add_ps(_mm512_set1_ps(1.f),
                                                erf512(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))))))
MAP512(silu_avx512, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v)))))

AI __m512 tanh512(__m512 v) {
    __m512 ax = _mm512_abs_ps(v);
    __m512 e = exp512(_mm512_add_ps(ax, ax));
    __m512 t = _mm512_sub_ps(_mm512_set1_ps(1.f), _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e, _mm512_set1_ps(1.f))));
    /* near 0, 1 - 2/(e+1) cancels: use the odd series x - x³/3 + 2x⁵/15 there */
    __m512 x2 = _mm512_mul_ps(ax, ax);
    __m512 s = _mm512_fmadd_ps(_mm512_fmadd_ps(x2, _mm512_set1_ps(2.f / 15), _mm512_set1_ps(-1.f / 3)), _mm512_mul_ps(x2, ax), ax);
    t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.02f), _CMP_LT_OQ), t, s);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t),
                                               _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000))));
}
MAP512(tanh_avx512, tanh512(v))

static void softmax_avx512(float *x, int n, float scale) {
    __m512 vs = _mm512_set1_ps(scale), mx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vs);
        _mm512_mask_storeu_ps(x + i, mk, v);
        mx = _mm512_mask_max_ps(mx, mk, mx, v);
    }
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), m));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(x + i, mk, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), inv));
    }
}

/* The scalar row's arithmetic (double sums, then float ((r − μ)·inv)·γ + β without FMA), 16 lanes. */
static void layernorm_row_avx512(const float *r, float *o, int D, const float *gamma, const float *beta, float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int i = 0;
    for (; i + 16 <= D; i += 16) {
        __m512 v = _mm512_loadu_ps(r + i);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < D; j++) s += r[j];
    const double mean = s / D;
    const __m512d md = _mm512_set1_pd(mean);
    s0 = s1 = _mm512_setzero_pd();
    for (i = 0; i + 16 <= D; i += 16) {
        __m512 v = _mm512_loadu_ps(r + i);
        __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), md);
        __m512d b = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), md);
        s0 = _mm512_add_pd(s0, _mm512_mul_pd(a, a));
        s1 = _mm512_add_pd(s1, _mm512_mul_pd(b, b));
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < D; j++) ss += (r[j] - mean) * (r[j] - mean);
    const float inv = (float)(1.0 / sqrt(ss / D + eps)), mu = (float)mean;
    const __m512 vmu = _mm512_set1_ps(mu), vinv = _mm512_set1_ps(inv);
    for (i = 0; i < D; i += 16) {
        int w = D - i < 16 ? D - i : 16;
        __mmask16 mk = (__mmask16)(w == 16 ? 0xFFFF : (1u << w) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, r + i), vmu), vinv),
                                 _mm512_maskz_loadu_ps(mk, gamma + i));
        v = _mm512_add_ps(v, beta ? _mm512_maskz_loadu_ps(mk, beta + i) : _mm512_setzero_ps());
        _mm512_mask_storeu_ps(o + i, mk, v);
    }
}

const sc_ops_tier sc_ops_avx512 = {exp_avx512, gelu_avx512, silu_avx512, tanh_avx512, softmax_avx512,
                                   layernorm_row_avx512};

/* ---------------------------------------------------------------- Moonshine CPU (session 3):
 * P·V on int16 (vpdpwssd, 2 keys per lane per instruction) and the softmax that makes P. The
 * epilogue does the scalar reference's float operations in the same order (bit-identical). */

#define DPW(c, a, b) __asm__("vpdpwssd %2, %1, %0" : "+v"(c) : "v"(a), "v"(b))

AI void w16_tile(const int MR, const int NV, int kl, const int16_t *A, size_t lda, const float *as, const int16_t *B,
                 size_t ps, const float *scale, float *C, size_t ldc, int ncols, int accum) {
    __m512i acc[6][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_si512();
    for (int k2 = 0; k2 < kl / 2; k2++) {
        __m512i b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_si512((const void *)(B + v * ps + (size_t)k2 * 32));
        for (int r = 0; r < MR; r++) {
            int32_t a2;
            __builtin_memcpy(&a2, A + (size_t)r * lda + 2 * k2, 4);
            __m512i a = _mm512_set1_epi32(a2);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpwssd_epi32(acc[r][v], a, b[v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512 sc = _mm512_loadu_ps(scale + v * 16);
        for (int r = 0; r < MR; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][v]), _mm512_mul_ps(_mm512_set1_ps(as[r]), sc));
            if (accum) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}

typedef void (*w16_tile_fn)(int kl, const int16_t *A, size_t lda, const float *as, const int16_t *B, size_t ps,
                            const float *scale, float *C, size_t ldc, int ncols, int accum);
#define W16T(MR, NV)                                                                                              \
    static void w16t_##MR##_##NV(int kl, const int16_t *A, size_t lda, const float *as, const int16_t *B,       \
                                 size_t ps, const float *scale, float *C, size_t ldc, int ncols, int accum) {    \
        w16_tile(MR, NV, kl, A, lda, as, B, ps, scale, C, ldc, ncols, accum);                                     \
    }
#define W16ROW(MR) W16T(MR, 1) W16T(MR, 2) W16T(MR, 3) W16T(MR, 4)
W16ROW(1) W16ROW(2) W16ROW(3) W16ROW(4) W16ROW(5) W16T(6, 1) W16T(6, 2) W16T(6, 3)
#define W16ENT(MR) {w16t_##MR##_1, w16t_##MR##_2, w16t_##MR##_3, w16t_##MR##_4}
static const w16_tile_fn w16_tiles[6][4] = {W16ENT(1), W16ENT(2), W16ENT(3), W16ENT(4), W16ENT(5),
                                            {w16t_6_1, w16t_6_2, w16t_6_3, NULL}};

/* The full tile in named registers (see f32t_fast_6_4 for why). */
static void w16t_fast_6_4(int kl, const int16_t *A, size_t lda, const float *as, const int16_t *B, size_t ps,
                          const float *scale, float *C, size_t ldc, int ncols, int accum) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512i c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    const int16_t *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda, *a4 = A + 4 * lda, *a5 = A + 5 * lda;
    for (int k2 = 0; k2 < kl / 2; k2++) {
        const int16_t *bk = B + (size_t)k2 * 32;
        __m512i w0 = _mm512_loadu_si512((const void *)bk), w1 = _mm512_loadu_si512((const void *)(bk + ps)),
                w2 = _mm512_loadu_si512((const void *)(bk + 2 * ps)), w3 = _mm512_loadu_si512((const void *)(bk + 3 * ps)), x;
        int32_t t;
#define WROW(r)                                                                                 \
    __builtin_memcpy(&t, a##r + 2 * k2, 4);                                                     \
    x = _mm512_set1_epi32(t);                                                                   \
    DPW(c##r##0, x, w0); DPW(c##r##1, x, w1); DPW(c##r##2, x, w2); DPW(c##r##3, x, w3);
        WROW(0) WROW(1) WROW(2) WROW(3) WROW(4) WROW(5)
#undef WROW
    }
    __m512i acc[6][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                         {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    for (int v = 0; v < 4; v++) {
        int w = ncols - v * 16;
        __mmask16 mk = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w > 0 ? w : 0)) - 1);
        __m512 sc = _mm512_loadu_ps(scale + v * 16);
        for (int r = 0; r < 6; r++) {
            float *c = C + (size_t)r * ldc + v * 16;
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][v]), _mm512_mul_ps(_mm512_set1_ps(as[r]), sc));
            if (accum) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), y);
            _mm512_mask_storeu_ps(c, mk, y);
        }
    }
}

static void w16_avx512(int M, const int16_t *A, const float *as, const sc_pack16 *B, float *C, size_t ldc, int flags,
                       int nb0, int nb1) {
    int kp = B->kp;
    size_t ps = (size_t)kp * 16;
    for (int p = nb0; p < nb1; p += 4) {
        int nv = nb1 - p < 4 ? nb1 - p : 4;
        int ncols = B->n - p * 16;
        for (int m = 0; m < M; m += 6) {
            int mr = M - m < 6 ? M - m : 6;
            w16_tile_fn fn = mr == 6 && nv == 4 ? w16t_fast_6_4 : w16_tiles[mr - 1][nv - 1];
            for (int k0 = 0; k0 < kp; k0 += SC_W16_KBLOCK) {
                int kl = kp - k0 < SC_W16_KBLOCK ? kp - k0 : SC_W16_KBLOCK;
                fn(kl, A + (size_t)m * kp + k0, (size_t)kp, as + m, B->p + (size_t)p * ps + (size_t)k0 * 16, ps,
                   B->scale + p * 16, C + (size_t)m * ldc + p * 16, ldc, ncols, k0 > 0 || (flags & SC_EPI_ACCUM));
            }
        }
    }
}

/* exp as 2^u with u = s·scale·log2(e) − max ∈ [−126, 0]: k = rint(u) by the 1.5·2^23 shift
 * (its low bits are k), a degree-5 polynomial of 2^f on f = u − k ∈ [−½, ½] (relative error
 * < 3e-6, below the int16 step 1/16383) with SC_P16_MAX folded into its coefficients, and k added
 * to the exponent bits. Full vectors store without masks (masked vpmovdw to memory was slow). */
AI __m512i p16_exp(__m512 x, __m512 vs, __m512 m) {
    const float P = (float)SC_P16_MAX;
    const __m512 magic = _mm512_set1_ps(12582912.f);
    __m512 u = _mm512_max_ps(_mm512_fmadd_ps(x, vs, m), _mm512_set1_ps(-126.f));
    __m512 t = _mm512_add_ps(u, magic), k = _mm512_sub_ps(t, magic), f = _mm512_sub_ps(u, k);
    __m512 e = _mm512_fmadd_ps(_mm512_set1_ps(P * 1.3333558146e-3f), f, _mm512_set1_ps(P * 9.6181291076e-3f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(P * 5.5504108665e-2f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(P * 2.4022650696e-1f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(P * 6.9314718056e-1f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(P));
    __m512i b = _mm512_add_epi32(_mm512_castps_si512(e), _mm512_slli_epi32(_mm512_castps_si512(t), 23));
    return _mm512_cvtps_epi32(_mm512_castsi512_ps(b)); /* round to nearest even */
}

static float softmax_q16_avx512(const float *s, int n, float scale, int16_t *p, int np) {
    const __m512 vs = _mm512_set1_ps(scale * 1.44269504088896341f);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_mul_ps(_mm512_loadu_ps(s + i), vs));
    __mmask16 tm = (__mmask16)((1u << (n - i)) - 1);
    if (i < n) mx = _mm512_mask_max_ps(mx, tm, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, s + i), vs));
    const __m512 m = _mm512_set1_ps(-_mm512_reduce_max_ps(mx));
    int64_t sum = 0;
    __m512i acc = _mm512_setzero_si512();
    int blk = 0;
    for (i = 0; i + 16 <= n; i += 16) {
        __m512i q = p16_exp(_mm512_loadu_ps(s + i), vs, m);
        _mm256_storeu_si256((__m256i *)(p + i), _mm512_cvtepi32_epi16(q));
        acc = _mm512_add_epi32(acc, q);
        if ((++blk & 4095) == 0) { /* 16383·4096 per lane stays in int32 */
            sum += _mm512_reduce_add_epi32(acc);
            acc = _mm512_setzero_si512();
        }
    }
    if (i < n) {
        __m512i q = _mm512_maskz_mov_epi32(tm, p16_exp(_mm512_maskz_loadu_ps(tm, s + i), vs, m));
        _mm256_mask_storeu_epi16(p + i, tm, _mm512_cvtepi32_epi16(q));
        acc = _mm512_add_epi32(acc, q);
    }
    sum += _mm512_reduce_add_epi32(acc);
    for (int j = n; j < np; j++) p[j] = 0;
    return sum > 0 ? 1.f / (float)sum : 0.f;
}

/* V [Tk, dh] → int16 panels, 16 channels × 2 keys per 64-byte vector: the scalar reference's
 * rint(v·(127/amax)) clamped to ±127 (cvtps rounds to nearest even, as nearbyintf). */
static void pack_values_avx512(sc_pack16 *p, const float *v, size_t ldv, int Tk, int dh) {
    int kp = (Tk + 1) & ~1, nb = (dh + 15) / 16;
    p->n = dh, p->k = Tk, p->kp = kp;
    const __m512i lo16 = _mm512_set1_epi32(0xFFFF), hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
    for (int pb = 0; pb < nb; pb++) {
        int w = dh - pb * 16 < 16 ? dh - pb * 16 : 16;
        __mmask16 mk = (__mmask16)(w == 16 ? 0xFFFF : (1u << w) - 1);
        const float *src = v + pb * 16;
        __m512 amax = _mm512_setzero_ps();
        for (int j = 0; j < Tk; j++) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, src + (size_t)j * ldv)));
        __mmask16 nz = _mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512 inv = _mm512_maskz_div_ps(nz, _mm512_set1_ps(127.f), amax);
        _mm512_storeu_ps(p->scale + pb * 16, _mm512_div_ps(amax, _mm512_set1_ps(127.f)));
        int16_t *dst = p->p + (size_t)pb * kp * 16;
        for (int j = 0; j < kp; j += 2) {
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + (size_t)j * ldv), inv));
            __m512i q1 = j + 1 < Tk ? _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + (size_t)(j + 1) * ldv), inv))
                                    : _mm512_setzero_si512();
            q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
            q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
            _mm512_storeu_si512((void *)(dst + (size_t)j * 16), _mm512_or_si512(_mm512_and_si512(q0, lo16), _mm512_slli_epi32(q1, 16)));
        }
    }
}

/* The scalar quant_row16's operations: absmax, one float reciprocal, rint (nearest even), clamp. */
static float quant_row16_avx512(const float *x, int K, int Kp, int16_t *q) {
    __m512 mx = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
    if (k < K) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (K - k)) - 1), x + k)));
    float amax = _mm512_reduce_max_ps(mx);
    float inv = amax > 0.f ? (float)SC_W16_WMAX / amax : 0.f;
    __m512 vi = _mm512_set1_ps(inv);
    __m512i hi = _mm512_set1_epi32(SC_W16_WMAX), lo = _mm512_set1_epi32(-SC_W16_WMAX);
    for (k = 0; k < K; k += 16) {
        int w = K - k < 16 ? K - k : 16;
        __mmask16 mk = (__mmask16)(w == 16 ? 0xFFFF : (1u << w) - 1);
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + k), vi));
        v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
        _mm256_mask_storeu_epi16(q + k, mk, _mm512_cvtepi32_epi16(v));
    }
    for (k = K; k < Kp; k++) q[k] = 0;
    return amax / (float)SC_W16_WMAX;
}

const sc_att_tier sc_att_avx512 = {w16_avx512, softmax_q16_avx512, pack_values_avx512, quant_row16_avx512};
