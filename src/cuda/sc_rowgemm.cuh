/* src/cuda/sc_rowgemm.cuh — int8 GEMMs whose block holds whole output rows, so the row stages
 * that follow a transformer sidecar's linear run in the GEMM's epilogue (sc_rowgemm.cu), called by
 * the CUDA sidecar backend (sidecar.cu) for DINOv2's linears.
 *
 * Why: with cuBLASLt each linear wrote its int32 products (int32: 4 bytes per output) and a row
 * kernel read them back to dequantize, add the residual, normalize and quantize the next GEMM's
 * input. At batch 32 those passes took longer than the GEMMs. Here a block computes 64 rows × 384
 * columns (three warpgroups of wgmma m64n128k32), and with N = 384 a row's LayerNorm and
 * quantization happen in registers; wider rows (the MLP's 1536) take a cluster of N / 384 blocks
 * that exchange their row maxima through distributed shared memory. */
#ifndef ARB_SC_ROWGEMM_CUH
#define ARB_SC_ROWGEMM_CUH

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "arbitor/core.h"

/* GELU(y) = y·Φ(y) = ½·y·(1 + erf(y/√2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7,
 * odd extension): every CUDA sidecar kernel's GELU. Why not erff: libdevice's erff is ~40
 * instructions with two branches, and at DINOv2's MLP width the GELU was most of the fc1
 * epilogue's issue slots; this is ~15 (two of them MUFU: the reciprocal and the exponential).
 * Its error is far below an int8 step (the next GEMM quantizes the values to 127 levels); against
 * float64 it is tested in test_cuda_sidecars. */
__device__ __forceinline__ float sc_gelu(float y) {
    const float z = y * 0.70710678118654752f, az = fabsf(z);
    const float t = __fdividef(1.f, __fmaf_rn(0.3275911f, az, 1.f));
    const float p = t * __fmaf_rn(t, __fmaf_rn(t, __fmaf_rn(t, __fmaf_rn(t, 1.061405429f, -1.453152027f), 1.421413741f),
                                                -0.284496736f), 0.254829592f);
    const float e = __fmaf_rn(-p, __expf(-az * az), 1.f); /* erf(|z|) */
    return 0.5f * y * (1.f + copysignf(e, z));
}

/* The epilogues: y = acc·(xs[r]·ws[c]) + bias[c] (the row kernel's rounding), then
 *  SC_RG_F16:    outh[r][c] = half(y)
 *  SC_RG_GELU_Q: y = GELU(y); q[r] = int8 row quantization of y (scale qs[r] = absmax / 127)
 *  SC_RG_RES_LN: x[r][c] += lam[c]·y; y = LayerNorm(x[r]) (ln_g, ln_b, eps); then q/qs as above,
 *                or out[r] = y when out is set. N must be 384 (one block per row). */
enum { SC_RG_F16 = 0, SC_RG_GELU_Q = 1, SC_RG_RES_LN = 2 };

struct sc_rowgemm_args {
    int epi;
    int M, N, K;                       /* K: the operands' padded K (a multiple of 16) */
    const int8_t *a; int lda;          /* [M][lda] int8 rows, per-row scale xs */
    const float *xs;
    const int8_t *w; int ldw;          /* [≥ N][ldw] K-major, per-column scale ws, bias (may be null) */
    const float *ws, *bias;
    __half *outh; int ldh;             /* SC_RG_F16 */
    int8_t *q; int ldq; float *qs;     /* quantized rows: ldq == N */
    float *x; const float *lam;        /* SC_RG_RES_LN: the residual stream [M][N] and its scale */
    const float *ln_g, *ln_b; float eps;
    float *out;                        /* SC_RG_RES_LN: [M][N] float output instead of q */
    long long *trace;                  /* set by sc_rowgemm under ARB_SIDECAR_ROWGEMM_TRACE=1 */
};

/* Whether the current device and the shape take the kernel (sm_90a; N a multiple of 384, at most
 * 8 blocks per row; N = 384 for SC_RG_RES_LN). */
bool sc_rowgemm_ok(int epi, int N, int K);
/* The output rows may alias the input rows (q == a with ldq == lda, qs == xs): a block reads all of
 * its A rows and scales before it writes any output. */
arb_status sc_rowgemm(const sc_rowgemm_args &a, cudaStream_t st);

#endif
