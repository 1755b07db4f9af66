/* Private to src/model and src/cuda/model_glue.cu: launchers of the model's float glue on the GPU.
 *
 * Why a separate set of kernels: the ternary ops already run on the device (src/cuda,
 * dispatched by tensor device); what a training step still needs between them is the float
 * glue of src/model/glue.c — causal attention with rotary, forward/backward, ReLU², residual
 * adds, cross-entropy. Each launcher is the device twin of a glue.c function (same math, float32,
 * its own fixed reduction order: deterministic run to run, within float tolerance of the CPU).
 * No float atomics anywhere. All pointers are device pointers; every launcher runs on the
 * current arbitor stream and returns ARB_ERR_CUDA with file:line when a launch fails. */
#ifndef ARB_MODEL_CUDA_H
#define ARB_MODEL_CUDA_H

#include "arbitor/core.h"
#include "arbitor/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ARB_OK for head dims the fused attention runs (16, 32, 64, 128), else ARB_ERR_UNSUPPORTED. */
arb_status arb_mcu_attn_check(int hd);

/* Fused causal attention over the H heads of hd of B sequences of T rows. qkv: (B·T, ldq) with
 * q at column 0, k at D, v at 2D (D = H·hd); rope: NULL, or the (T, hd/2, 2) cos, sin table of
 * the forward angle (computed on the host in double, like glue.c): q and k are rotated for their
 * position as they load (qkv holds them unrotated). o: (B·T, ldo) columns [0, D) = softmax over
 * j ≤ i of q_i·k_j/√hd, times v; lse: (B·H·T) log Σ_j exp of each row's scaled scores (the
 * backward's P). Pointers 16-byte aligned, leading dimensions multiples of 4. */
arb_status arb_mcu_attn_forward(const float *qkv, int64_t ldq, const float *rope, float *o, int64_t ldo, float *lse,
                                int64_t B, int64_t T, int H, int hd);
/* From dy (B·T, ldy) = d loss / d o: dqkv (B·T, lddq) columns [0, 3D) = d loss / d (q, k, v) of
 * the unrotated inputs (the inverse rotation applied to dq, dk), every element written.
 * delta: (B·H·T) scratch (Σ dy·o per row). */
arb_status arb_mcu_attn_backward(const float *qkv, int64_t ldq, const float *rope, const float *o, int64_t ldo,
                                 const float *lse, const float *dy, int64_t ldy, float *delta, float *dqkv,
                                 int64_t lddq, int64_t B, int64_t T, int H, int hd);

arb_status arb_mcu_relu2(const float *u, int64_t n, float *r);
/* Fused forms of the glue around the ternary ops (src/cuda/ternary.cu, next to the kernels they
 * extend; same bits as the separate passes):
 * arb_cuda_quantize_rows of ReLU²(u) without materializing it; */
arb_status arb_mcu_quantize_rows_relu2(const float *u, int64_t rows, int64_t cols, int64_t ld, int8_t *q,
                                       float *scale);
/* the RMSNorm forward of t = x + add (t written: the residual stream's tape; t may alias x); */
arb_status arb_mcu_rmsnorm_forward_add(const arb_ternary *gain, const float *x, const float *add, float *t, int64_t n,
                                       float eps, float *y, float *rstd);
/* the RMSNorm backward (+ update when p) with dx = res + d loss / d x (res ≠ dx). */
arb_status arb_mcu_rmsnorm_backward_update_add(arb_ternary *gain, const float *x, const float *rstd, const float *dy,
                                               const float *res, int64_t n, float *dx, const arb_update_params *p,
                                               arb_update_state *st, arb_update_stats *stats);
/* du = dr · 2·max(u, 0) (du may alias dr). */
arb_status arb_mcu_relu2_backward(const float *u, const float *dr, int64_t n, float *du);
/* y = a + b (y may alias either) */
arb_status arb_mcu_add(float *y, const float *a, const float *b, int64_t n);
/* *out (device) = Σ x over a fixed tree (one block). */
arb_status arb_mcu_sum_rows(const double *x, int64_t n, double *out);

/* Cross-entropy rows as arb_glue_ce: row_loss (n doubles) = −log softmax(logits)[t] for counted
 * rows (t ≥ 0, t ≠ PAD, t < V), else 0; dlogits (may be NULL) = gscale·(softmax − onehot) on
 * counted rows, 0 elsewhere. */
arb_status arb_mcu_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float gscale, float *dlogits,
                      double *row_loss);

#ifdef __cplusplus
}
#endif
#endif
