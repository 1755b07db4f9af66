/* CPU feature probe (CPUID + XGETBV), kernel-tier choice, and the thread count.
 * Why XGETBV: a CPU can report AVX-512 while the OS does not save zmm state; then the
 * instructions fault, so the OS bit decides too. */
#include "arbitor/core.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static arb_cpu_features g_features;
static bool g_probed;
static int g_tier = -1;

#if defined(__x86_64__) || defined(__i386__)
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

const arb_cpu_features *arb_cpu_features_get(void) {
    if (g_probed) return &g_features;
    arb_cpu_features f;
    memset(&f, 0, sizeof f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        f.fma = (c >> 12) & 1;
        uint64_t xcr0 = osxsave ? read_xcr0() : 0;
        bool ymm_os = avx && (xcr0 & 0x6) == 0x6;
        bool zmm_os = ymm_os && (xcr0 & 0xE0) == 0xE0;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            f.avx2 = ymm_os && ((b >> 5) & 1);
            f.avx512f = zmm_os && ((b >> 16) & 1);
            f.avx512dq = zmm_os && ((b >> 17) & 1);
            f.avx512bw = zmm_os && ((b >> 30) & 1);
            f.avx512vl = zmm_os && ((b >> 31) & 1);
            f.avx512_vbmi = zmm_os && ((c >> 1) & 1);
            f.gfni = (c >> 8) & 1;
            f.avx512_vnni = zmm_os && ((c >> 11) & 1);
        }
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx_vnni = ymm_os && ((a >> 4) & 1);
        f.fma = f.fma && ymm_os;
    }
#endif
    g_features = f;
    g_probed = true;
    return &g_features;
}

static arb_cpu_tier best_tier(void) {
    const arb_cpu_features *f = arb_cpu_features_get();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512_vnni && f->fma) return ARB_TIER_AVX512;
    if (f->avx2 && f->fma) return ARB_TIER_AVX2;
    return ARB_TIER_SCALAR;
}

arb_cpu_tier arb_cpu_tier_force(arb_cpu_tier tier) {
    arb_cpu_tier best = best_tier();
    g_tier = (int)(tier < best ? tier : best);
    return (arb_cpu_tier)g_tier;
}

arb_cpu_tier arb_cpu_tier_get(void) {
    if (g_tier < 0) {
        arb_cpu_tier want = ARB_TIER_AVX512;
        const char *e = getenv("ARB_CPU_TIER");
        if (e) {
            if (!strcasecmp(e, "scalar")) want = ARB_TIER_SCALAR;
            else if (!strcasecmp(e, "avx2")) want = ARB_TIER_AVX2;
        }
        arb_cpu_tier_force(want);
    }
    return (arb_cpu_tier)g_tier;
}

const char *arb_cpu_tier_name(arb_cpu_tier tier) {
    switch (tier) {
    case ARB_TIER_SCALAR: return "scalar";
    case ARB_TIER_AVX2: return "avx2";
    case ARB_TIER_AVX512: return "avx512";
    }
    return "?";
}

static int g_threads = 0;

void arb_set_num_threads(int n) {
    g_threads = n > 0 ? n : 0;
#ifdef _OPENMP
    if (g_threads > 0) omp_set_num_threads(g_threads);
#endif
}

int arb_get_num_threads(void) {
    if (g_threads == 0) {
        const char *e = getenv("ARB_THREADS");
        int n = e ? atoi(e) : 0;
#ifdef _OPENMP
        if (n <= 0) n = omp_get_num_procs();
        omp_set_num_threads(n);
#else
        n = 1;
#endif
        g_threads = n;
    }
    return g_threads;
}
