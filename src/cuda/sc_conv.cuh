/* src/cuda/sc_conv.cuh — the VAE decoder's implicit-GEMM int8 3×3 convolution (sc_conv.cu), called
 * by the CUDA sidecar backend (sidecar.cu).
 *
 * Why a separate file: the conv quantizes its int8 A operand from the float activations straight
 * into wgmma registers (no im2col in memory) and fuses the dequantization epilogue; it shares
 * nothing with the transformer sidecars but the caller. */
#ifndef ARB_SC_CONV_CUH
#define ARB_SC_CONV_CUH

#include <cstdint>

#include <cuda_runtime.h>

#include "arbitor/core.h"

/* y[b][oy][ox][n] (=, or += when res) = conv3×3(act(x)) with the CPU's conv3 semantics: each
 * output pixel's 9·C window (act = GroupNorm affine ab [B][2][C] + SiLU when given, zero padding,
 * nearest ×2 upsampling when up) is quantized with one scale (window absmax / 127, rint), int8 ×
 * int8 (w: [np][kp] K-major, K = (tap, channel), per-column scale ws) → int32, then
 * acc·(s_x·ws[c]) + bias[c]. */
struct sc_conv3_args {
    const float *x;   /* [B][H][W][C] channels-last */
    int B, H, W, C;   /* C: a multiple of 32 */
    int up;           /* nearest ×2 upsampling before the conv */
    const float *ab;  /* GroupNorm affine [B][2][C] or null */
    int silu;         /* SiLU after the affine */
    const int8_t *w;  /* [np][kp] */
    int n, np, kp;
    const float *ws, *bias; /* [n] (bias may be null) */
    float *y;         /* [B][Ho][Wo][n] */
    int res;          /* y += instead of y = */
    float *pm;        /* scratch: [B][H][W] per-pixel absmax of act(x) */
    float *xa;        /* scratch: [B][H][W][C] act(x) (unused when act is the identity) */
    double *gnp;      /* non-null: GroupNorm partial sums of the output, [B][tiles][n][2] (sum, sum²) */
};

/* Whether the current device runs the sm_90a image (the wgmma sidecar kernels are empty in any
 * other). */
bool sc_sm90(void);
/* Whether the kernel takes a conv with C input channels. */
bool sc_conv3_igemm_ok(int C);
/* Work items (output tiles × channel blocks) of the conv: small counts run better as im2col +
 * cuBLASLt. */
long sc_conv3_igemm_blocks(int B, int Ho, int Wo, int n);
/* Output tiles per image of a conv with n outputs: the `nch` of the GroupNorm partials its
 * epilogue writes. */
int sc_conv3_igemm_tiles(int Ho, int Wo, int n);
/* The pass over the input first (act(x) into a.xa, per-pixel absmax into a.pm), then the conv. */
arb_status sc_conv3_igemm_act(const sc_conv3_args &a, cudaStream_t st);
arb_status sc_conv3_igemm(const sc_conv3_args &a, cudaStream_t st);

#endif
