/* AVX2 sidecar kernels (for CPUs without AVX-512): fp32 GEMM with FMA on 8-wide vectors, the
 * int8 GEMM with exact 16-bit multiply-adds (vpmaddwd: u8 and s8 widened, so no vpmaddubsw
 * saturation), the activation row quantizer. Elementwise ops use the scalar tier.
 *
 * Why the same packed layout as AVX-512: weights are packed once at load for whichever tier
 * runs; a 16-column panel is two ymm vectors here. The int8 epilogue does the same float
 * operations in the same order as the scalar reference, so results are bit-identical. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "sidecars/sc_internal.h"

#define AI static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- fp32: 4 rows × 16 columns */

AI void f32_tile2(const int MR, int K, const float *A, size_t lda, const float *B, const float *bias, float *C, size_t ldc,
                  int ncols, int flags) {
    __m256 acc[4][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(B + (size_t)k * 16), b1 = _mm256_loadu_ps(B + (size_t)k * 16 + 8);
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) {
        float t[16];
        _mm256_storeu_ps(t, acc[r][0]);
        _mm256_storeu_ps(t + 8, acc[r][1]);
        float *c = C + (size_t)r * ldc;
        for (int j = 0; j < 16 && j < ncols; j++) {
            float y = t[j] + (bias ? bias[j] : 0.f);
            c[j] = (flags & SC_EPI_ACCUM) ? c[j] + y : y;
        }
    }
}

static void f32t2_1(int K, const float *A, size_t lda, const float *B, const float *bias, float *C, size_t ldc, int n, int f) { f32_tile2(1, K, A, lda, B, bias, C, ldc, n, f); }
static void f32t2_2(int K, const float *A, size_t lda, const float *B, const float *bias, float *C, size_t ldc, int n, int f) { f32_tile2(2, K, A, lda, B, bias, C, ldc, n, f); }
static void f32t2_3(int K, const float *A, size_t lda, const float *B, const float *bias, float *C, size_t ldc, int n, int f) { f32_tile2(3, K, A, lda, B, bias, C, ldc, n, f); }
static void f32t2_4(int K, const float *A, size_t lda, const float *B, const float *bias, float *C, size_t ldc, int n, int f) { f32_tile2(4, K, A, lda, B, bias, C, ldc, n, f); }

static void f32_avx2(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                     size_t ldc, int flags, int nb0, int nb1) {
    typedef void (*fn)(int, const float *, size_t, const float *, const float *, float *, size_t, int, int);
    static const fn tiles[4] = {f32t2_1, f32t2_2, f32t2_3, f32t2_4};
    for (int p = nb0; p < nb1; p++)
        for (int m = 0; m < M; m += 4) {
            int mr = M - m < 4 ? M - m : 4;
            tiles[mr - 1](K, A + (size_t)m * lda, lda, Bp + (size_t)p * K * 16, bias ? bias + p * 16 : NULL,
                          C + (size_t)m * ldc + p * 16, ldc, N - p * 16, flags);
        }
}

/* ---------------------------------------------------------------- int8 */

/* Σ over 4 k of u8·s8 for 8 lanes, exactly: both widened to 16 bits, vpmaddwd, then a
 * horizontal add that leaves lanes in the order 0 1 4 5 | 2 3 6 7 (fixed in the epilogue). */
AI __m256i dot4_u8s8(__m256i a16, __m256i b32) {
    __m256i blo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b32));
    __m256i bhi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b32, 1));
    return _mm256_hadd_epi32(_mm256_madd_epi16(blo, a16), _mm256_madd_epi16(bhi, a16));
}

static void q8_avx2(int M, const uint8_t *Aq, const float *as, const sc_packq *B, const float *bias, float *C,
                    size_t ldc, int flags, int nb0, int nb1) {
    int kp = B->kp;
    const __m256i unperm = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int p = nb0; p < nb1; p++) {
        const int8_t *bp = B->p + (size_t)p * kp * 16;
        for (int m0 = 0; m0 < M; m0 += 2) {
            int mr = M - m0 < 2 ? M - m0 : 2;
            __m256i acc[2][2] = {{_mm256_setzero_si256(), _mm256_setzero_si256()}, {_mm256_setzero_si256(), _mm256_setzero_si256()}};
            for (int k4 = 0; k4 < kp / 4; k4++) {
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + (size_t)k4 * 64));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + (size_t)k4 * 64 + 32));
                for (int r = 0; r < mr; r++) {
                    const uint8_t *a = Aq + (size_t)(m0 + r) * kp + k4 * 4;
                    int64_t w = (int64_t)a[0] | ((int64_t)a[1] << 16) | ((int64_t)a[2] << 32) | ((int64_t)a[3] << 48);
                    __m256i a16 = _mm256_set1_epi64x(w);
                    acc[r][0] = _mm256_add_epi32(acc[r][0], dot4_u8s8(a16, b0));
                    acc[r][1] = _mm256_add_epi32(acc[r][1], dot4_u8s8(a16, b1));
                }
            }
            for (int r = 0; r < mr; r++) {
                int32_t t[16];
                _mm256_storeu_si256((__m256i *)t, _mm256_permutevar8x32_epi32(acc[r][0], unperm));
                _mm256_storeu_si256((__m256i *)(t + 8), _mm256_permutevar8x32_epi32(acc[r][1], unperm));
                int m = m0 + r;
                for (int j = 0; j < 16 && p * 16 + j < B->n; j++) {
                    int n = p * 16 + j;
                    float y = (float)(t[j] - B->qsum[n]) * (as[m] * B->scale[n]);
                    if (bias) y = y + bias[n];
                    float *c = C + (size_t)m * ldc + n;
                    *c = (flags & SC_EPI_ACCUM) ? *c + y : y;
                }
            }
        }
    }
}

static float quant_row_avx2(const float *x, int K, int Kp, uint8_t *u8) {
    __m256 mx = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.f);
    int k = 0;
    for (; k + 8 <= K; k += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    float t[8], amax = 0.f;
    _mm256_storeu_ps(t, mx);
    for (int i = 0; i < 8; i++) amax = t[i] > amax ? t[i] : amax;
    for (; k < K; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    float s = amax / 127.f;
    float inv = amax > 0.f ? 127.f / amax : 0.f;
    __m256 vi = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.f), lo = _mm256_set1_ps(-127.f);
    for (k = 0; k + 8 <= K; k += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        int32_t q[8];
        _mm256_storeu_si256((__m256i *)q, _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(128)));
        for (int i = 0; i < 8; i++) u8[k + i] = (uint8_t)q[i];
    }
    for (; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        v = v > 127.f ? 127.f : (v < -127.f ? -127.f : v);
        u8[k] = (uint8_t)((int)v + 128);
    }
    for (k = K; k < Kp; k++) u8[k] = 128;
    return s;
}

const sc_gemm_tier sc_tier_avx2 = {f32_avx2, q8_avx2, quant_row_avx2};
