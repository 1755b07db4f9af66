/* Private to src/model and src/cuda/model_glue.cu: launchers of the model's float glue on the GPU.
 *
 * Why a separate set of kernels: the ternary ops already run on the device (src/cuda,
 * dispatched by tensor device); what a training step still needs between them is the float
 * glue of src/model/glue.c — rotary, causal attention forward/backward, softmax, ReLU², residual
 * adds, cross-entropy. Each launcher is the device twin of a glue.c function (same math, float32,
 * its own fixed reduction order: deterministic run to run, within float tolerance of the CPU).
 * No float atomics anywhere. All pointers are device pointers; every launcher runs on the
 * current arbitor stream and returns ARB_ERR_CUDA with file:line when a launch fails. */
#ifndef ARB_MODEL_CUDA_H
#define ARB_MODEL_CUDA_H

#include "arbitor/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A batched strided matrix view: element (z, r, c) at p[(z / H)·sb + (z % H)·sh + r·sr + c·sc]. */
typedef struct arb_mcu_mat {
    float *p;
    int64_t sb, sh, sr, sc;
} arb_mcu_mat;

/* Causal structure of a batched product (square T×T operands of attention). */
enum {
    ARB_MCU_DENSE = 0,
    ARB_MCU_TRI_OUT = 1,   /* C (T×T): tiles strictly above the diagonal are neither computed nor written */
    ARB_MCU_K_LE_ROW = 2,  /* Σ over k ≤ row (A is lower triangular: P·V, dS·K) */
    ARB_MCU_K_GE_ROW = 3   /* Σ over k ≥ row (A is upper triangular: Pᵀ·dY, dSᵀ·Q) */
};

/* C[z] (M × N) = alpha · A[z] (M × K) · B[z] (K × N) for z < Z (H heads per batch index). */
arb_status arb_mcu_bgemm(arb_mcu_mat A, arb_mcu_mat B, arb_mcu_mat C, int64_t M, int64_t N, int64_t K, int64_t Z,
                         int64_t H, float alpha, int mode);

/* Rows of T×T scores S (Z·T rows, row i of each block): p_j = softmax over j ≤ i of s, 0 for j > i. */
arb_status arb_mcu_softmax_causal(float *s, int64_t Z, int64_t T);
/* In place: ds_j = p_j·(dp_j − Σ_{k≤i} p_k·dp_k)·sc for j ≤ i, 0 above the diagonal. */
arb_status arb_mcu_softmax_causal_backward(const float *p, float *dp, int64_t Z, int64_t T, float sc);

/* Rotary on the H heads of hd at column off of rows (ld floats each), position row % T.
 * cs: (T, hd/2, 2) cos, sin of the forward angle (computed on the host in double, like glue.c);
 * sign −1 applies the inverse rotation. */
arb_status arb_mcu_rope(float *x, int64_t rows, int64_t T, int64_t ld, int64_t off, int H, int hd, const float *cs,
                        int sign);

arb_status arb_mcu_relu2(const float *u, int64_t n, float *r);
/* du = dr · 2·max(u, 0) (du may alias dr). */
arb_status arb_mcu_relu2_backward(const float *u, const float *dr, int64_t n, float *du);
/* y += x */
arb_status arb_mcu_add(float *y, const float *x, int64_t n);

/* Cross-entropy rows as arb_glue_ce: row_loss (n doubles) = −log softmax(logits)[t] for counted
 * rows (t ≥ 0, t ≠ PAD, t < V), else 0; dlogits (may be NULL) = gscale·(softmax − onehot) on
 * counted rows, 0 elsewhere. */
arb_status arb_mcu_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float gscale, float *dlogits,
                      double *row_loss);

#ifdef __cplusplus
}
#endif
#endif
