/* Vector forms of arb_rand_u32 / arb_rand_unit (include/arbitor/core.h) for the AVX2 and
 * AVX-512 kernel tiers: one copy, so every tier draws the same bits as the scalar reference.
 * Include from *_avx2.c / *_avx512.c files only (they are compiled with those ISAs). */
#ifndef ARB_CORE_RNG_SIMD_H
#define ARB_CORE_RNG_SIMD_H

#include <immintrin.h>

#include "arbitor/core.h"

#define ARB_SIMD_INLINE static inline __attribute__((always_inline))

#if defined(__AVX512F__)
/* The hash from x = index·0x9E3779B1 + k0 (callers that step indices keep x running). */
ARB_SIMD_INLINE __m512i arb_rand16_mix(__m512i x, __m512i k1) {
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7FEB352D));
    x = _mm512_ternarylogic_epi32(x, _mm512_srli_epi32(x, 15), k1, 0x96); /* x ^ x>>15 ^ k1 */
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)0x846CA68Bu));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

/* arb_rand_u32(key, idx0 + lane), 16 lanes. */
ARB_SIMD_INLINE __m512i arb_rand16(arb_rng_key key, uint32_t idx0) {
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)idx0), iota),
                                                    _mm512_set1_epi32((int)0x9E3779B1u)),
                                 _mm512_set1_epi32((int)key.k0));
    return arb_rand16_mix(x, _mm512_set1_epi32((int)key.k1));
}

/* arb_rand_unit: (float)(u >> 8) · 2^-24, both exact. */
ARB_SIMD_INLINE __m512 arb_rand_unit16(arb_rng_key key, uint32_t idx0) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(arb_rand16(key, idx0), 8)),
                         _mm512_set1_ps(1.0f / 16777216.0f));
}
#endif

#if defined(__AVX2__)
/* arb_rand_u32(key, idx0 + lane), 8 lanes. */
ARB_SIMD_INLINE __m256i arb_rand8(arb_rng_key key, uint32_t idx0) {
    __m256i x = _mm256_add_epi32(_mm256_set1_epi32((int)idx0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    x = _mm256_add_epi32(_mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x9E3779B1u)), _mm256_set1_epi32((int)key.k0));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7FEB352D));
    x = _mm256_xor_si256(_mm256_xor_si256(x, _mm256_srli_epi32(x, 15)), _mm256_set1_epi32((int)key.k1));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846CA68Bu));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

ARB_SIMD_INLINE __m256 arb_rand_unit8(arb_rng_key key, uint32_t idx0) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(arb_rand8(key, idx0), 8)),
                         _mm256_set1_ps(1.0f / 16777216.0f));
}
#endif
#endif
