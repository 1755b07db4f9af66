/* src/cuda/kernels.cuh — device helpers shared by the CUDA kernels: the row scale (bit-identical
 * to arb_ternary_row_scale), 2-bit code decoding, the int8 tensor-core fragment primitives
 * (cp.async, ldmatrix, mma.sync m16n8k32), and the update's plan / finish steps on the device.
 *
 * Why one header: the forward, backward-x and fused-update kernels share one tiled int8 GEMM
 * core (kernels differ in how the A operand is decoded and in the epilogue). */
#ifndef ARB_CUDA_KERNELS_CUH
#define ARB_CUDA_KERNELS_CUH

#include <cstdint>

#include "cuda/internal.cuh"
#include "ternary/update_internal.h"

/* 2^(j/4) rounded to float: the table of src/ternary/ternary.c. */
__device__ __forceinline__ float arb_dev_row_scale(int kind, int64_t cols, int32_t nnz, int e) {
    const float q = (e & 3) == 0 ? 1.0f
                  : (e & 3) == 1 ? 1.18920711500272106672f
                  : (e & 3) == 2 ? 1.41421356237309504880f
                                 : 1.68179283050742908606f;
    float mult = ldexpf(q, e >> 2);
    float n = (float)(nnz > 0 ? nnz : 1);
    float base;
    if (kind == ARB_TERNARY_EMBED) base = __fsqrt_rn(__fdiv_rn((float)cols, n));
    else if (kind == ARB_TERNARY_GAIN) base = 1.0f;
    else base = __fdiv_rn(1.0f, __fsqrt_rn(n));
    return __fmul_rn(base, mult);
}

/* Four 2-bit codes (one per byte, values 0..2) to four int8 trits (code − 1) without borrows:
 * code + 0x7F ∈ {0x7F, 0x80, 0x81}, then flipping bit 7 gives {−1, 0, 1}. */
__device__ __forceinline__ uint32_t arb_dev_codes_to_trits(uint32_t x) {
    return ((x & 0x03030303u) + 0x7F7F7F7Fu) ^ 0x80808080u;
}

__device__ __forceinline__ void arb_cp_async16(void *smem, const void *gmem, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0; /* src-size 0: the 16 bytes are zero-filled */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void arb_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void arb_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void arb_ldmatrix_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(s));
}

/* D += A(16×32, s8, row) · B(32×8, s8, col), s32 accumulate. */
__device__ __forceinline__ void arb_mma_s8(int32_t &c0, int32_t &c1, int32_t &c2, int32_t &c3, const uint32_t (&a)[4],
                                           uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+r"(c0), "+r"(c1), "+r"(c2), "+r"(c3)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Which int8 tensor-core GEMM the linear ops use on the current device (for the bench). */
const char *arb_cuda_gemm_core(void);

/* int8 × int8 → int32 on the ternary GEMM's core (bench: the decode's cost): out (n, m) = b · aᵀ. */
arb_status arb_cuda_gemm_s8_i32(const int8_t *a, const int8_t *b, int64_t m, int64_t n, int64_t k, int32_t *out);

/* ---- host side shared by the update ops (ternary.cu) ------------------------------------- */

/* Device buffers of one update: per-row exact sums (int64 ×3) and the multipliers. */
struct arb_cuda_rowsums {
    arb_cuda_scratch buf; /* abs_g[rows], ge[rows], flips[rows] as unsigned long long */
    int64_t rows = 0;
    unsigned long long *abs_g() const { return buf.as<unsigned long long>(); }
    unsigned long long *ge() const { return buf.as<unsigned long long>() + rows; }
    unsigned long long *flips() const { return buf.as<unsigned long long>() + 2 * rows; }
    arb_status init(int64_t r);  /* allocates and zeroes */
    arb_status zero();
    arb_status download(arb_upd_row_acc *acc) const;
};

/* arb_upd_check on a device tensor (same limits; the checks only read header fields). */
arb_status arb_cuda_upd_check(const arb_ternary *w, int64_t n, const arb_update_params *p,
                              const arb_update_state *st, const char *what);

/* Where the per-row real unit c[o] of one Gint unit comes from (all device pointers):
 *   GIVEN:  c[o] as is;
 *   COLMAX: c[o] = amax[o] / 127 (float bits of the linear's column maxima);
 *   SCALED: c[o] = (amax[0] / 127) · scale[o] (embedding, RMSNorm gain: one per-tensor amax).
 * bad: the gradient's non-finite flag (NULL: none), read by the plan. */
enum { ARB_CSRC_GIVEN = 0, ARB_CSRC_COLMAX = 1, ARB_CSRC_SCALED = 2 };
struct arb_cuda_csrc {
    int mode;
    const float *c;
    const unsigned *amax;
    const float *scale;
    const int *bad;
};

/* True when the plan needs this step's stats pass (no previous norm known > 0 on the host). */
bool arb_cuda_upd_needs_stats(const arb_cuda_upd_slot &s);
/* Step 3 on the device (k_upd_plan): c (rows) written, plan (rows + 2 int32) = m[rows], S, skip.
 * Reads the stats pass's abs_g when there is no previous norm, and zeroes them. */
arb_status arb_cuda_upd_plan(arb_ternary *w, const arb_cuda_csrc &cs, const arb_update_params *p,
                             const arb_cuda_upd_slot &s, const arb_cuda_rowsums &rs, float *c, int32_t *plan);
/* Step 5 on the device: refresh (nnz), then norm, E rule and statistics into s.rec (k_upd_finish). */
arb_status arb_cuda_upd_finish(arb_ternary *w, const float *c, const arb_cuda_rowsums &rs, const int32_t *plan,
                               const arb_update_params *p, const arb_cuda_upd_slot &s);
/* Step 4 from a dense device Gint (rows, ld ≥ cols) — used by embedding, RMSNorm and the split-K
 * linear update. plan: device (k_upd_plan's). stats_only: only abs_g is summed and no state
 * changes, and only when gate has no previous norm > 0 (plan may be NULL). nsplit > 1: Gint is
 * the sum of nsplit partial arrays split_stride int32 apart (integer adds: any order gives the
 * same Gint). */
arb_status arb_cuda_upd_dense(arb_ternary *w, const int32_t *g, int64_t ld, const int32_t *plan, arb_rng_key key,
                              int threshold, int leak_shift, const arb_cuda_rowsums &rs, bool stats_only,
                              const arb_cuda_upd_slot *gate, int nsplit = 1, int64_t split_stride = 0);
/* Steps 3–5 from a dense Gint: stats pass when needed, plan, update pass, finish, and st / stats
 * through arb_cuda_upd_slot_close (no host round trip in deferred mode). */
arb_status arb_cuda_upd_apply(arb_ternary *w, const int32_t *g, int64_t ld, int nsplit, int64_t split_stride,
                              const arb_cuda_csrc &cs, const arb_update_params *p, arb_update_state *st,
                              arb_update_stats *stats);

#endif
