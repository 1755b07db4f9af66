/* src/ternary/ops_dispatch.c — picks the ternary core's kernel tier (ops_ref.c, ops_avx2.c,
 * ops_avx512.c) by arb_cpu_tier_get(): CPUID, lowered by env ARB_CPU_TIER or
 * arb_cpu_tier_force(). All tiers give the same bits, so the choice only changes speed. */
#include "ternary/ops_internal.h"

const arb_tern_kernels *arb_tern_kernels_get(void) {
    switch (arb_cpu_tier_get()) {
    case ARB_TIER_AVX512: return &arb_tern_kernels_avx512;
    case ARB_TIER_AVX2: return &arb_tern_kernels_avx2;
    default: return &arb_tern_kernels_ref;
    }
}
