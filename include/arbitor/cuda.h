/* arbitor/cuda.h — the CUDA backend: device runtime (memory pool, streams, copies) and the
 * ternary ops on device-resident tensors.
 *
 * Why a separate header: the generic ops in ternary.h take host pointers; these take device
 * pointers and run on the calling thread's current stream, so a training step can chain them
 * without host round trips. Every op computes exactly what its ternary.h twin computes: integer
 * state (trits, T_accum, E, evidence) is bit-identical to the CPU reference for the same inputs
 * and RNG keys; float outputs match within the tolerances stated in docs/CUDA.md.
 *
 * Available only in builds with ARB_HAVE_CUDA. Every function returns ARB_ERR_CUDA with
 * "file:line: call: reason" when a CUDA call or launch fails, ARB_ERR_UNSUPPORTED when the
 * machine has no CUDA device.
 *
 *   arb_ternary hw, dw;                      // host layer, device copy
 *   arb_cuda_ternary_upload(&dw, &hw, 0);    // state to cuda:0
 *   arb_cuda_quantize_rows(d_x, n, dw.cols, dw.cols_pad, d_xq, d_xs);
 *   arb_cuda_ternary_linear_forward(&dw, d_xq, d_xs, n, d_y);
 *   arb_cuda_ternary_download(&hw, &dw);     // state back (checkpoint)
 *   arb_ternary_free(&dw);
 */
#ifndef ARBITOR_CUDA_H
#define ARBITOR_CUDA_H

#include "arbitor/core.h"
#include "arbitor/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices ------------------------------------------------------------------------------ */

/* Number of usable CUDA devices (0 when no driver or device; never fails). */
int arb_cuda_device_count(void);
/* Selects the device for the calling thread. */
arb_status arb_cuda_set_device(int index);
/* "NVIDIA H100 80GB HBM3" and its SM count / memory, into buf. */
arb_status arb_cuda_device_name(int index, char *buf, size_t cap);

/* ---- memory: cudaMalloc behind a caching pool (never managed memory) ------------------------
 * Freed blocks are kept per (device, size class) and handed out again; arb_cuda_pool_trim()
 * returns them to the driver. A block freed while the stream that used it still runs is reused
 * only on that stream, or after that stream synchronizes. */
arb_status arb_cuda_malloc(void **p, size_t nbytes);
void arb_cuda_free(void *p);
void arb_cuda_pool_trim(void);
/* Bytes held by the pool: in use and cached. */
void arb_cuda_pool_stats(size_t *in_use, size_t *cached);

/* ---- streams --------------------------------------------------------------------------------
 * Ops run on the calling thread's current stream (default: the legacy default stream). */
typedef struct arb_cuda_stream_s *arb_cuda_stream; /* a cudaStream_t */
arb_status arb_cuda_stream_create(arb_cuda_stream *s);
void arb_cuda_stream_destroy(arb_cuda_stream s);
void arb_cuda_stream_set(arb_cuda_stream s); /* NULL: default stream */
arb_cuda_stream arb_cuda_stream_get(void);
arb_status arb_cuda_synchronize(void); /* the current stream */

/* ---- deferred data checks --------------------------------------------------------------------
 * Ops that validate device data (a NaN or infinity in activations) copy a flag back and
 * synchronize the stream. Between arb_cuda_checks_defer() and arb_cuda_checks_collect() on this
 * thread they OR into one device flag instead and never wait for it; collect synchronizes once
 * and returns ARB_ERR_INVALID_ARG if any op saw a bad value (then the state an update would
 * have touched is unspecified: restore a checkpoint). A training step pays one sync, not one
 * per op.
 * Updates (the *_update ops) in deferred mode never wait either: plan, norm and E rule run on
 * the device, and the arb_update_state / arb_update_stats they were given are written by collect
 * (both must stay valid until then; a second update of the same state in the window continues
 * from the first one's device norm). An update whose gradient is not finite is skipped (its
 * state and norm stay) and collect reports it. Outside deferred mode every update still returns
 * with st and stats written (one synchronize at its end). */
arb_status arb_cuda_checks_defer(void);
arb_status arb_cuda_checks_collect(void);
/* On: in deferred mode, the finish of each dense/split-K update (nnz and scale refresh, norm, E
 * rule, statistics: small single-block work) runs on a second stream of this thread beside the
 * ops queued after it. The caller promises not to use an updated tensor again before collect
 * (a training backward updates each tensor once, after its last use); a second update of the
 * same state waits for the first's finish. ARB_CUDA_UPD_OVERLAP=0 in the environment keeps
 * everything on the current stream. Off by default. */
void arb_cuda_updates_overlap(bool on);

/* ---- copies (on the current stream; host memory may be pageable) --------------------------- */
arb_status arb_cuda_copy_h2d(void *dst, const void *src, size_t nbytes);
arb_status arb_cuda_copy_d2h(void *dst, const void *src, size_t nbytes); /* synchronous */
arb_status arb_cuda_copy_d2d(void *dst, const void *src, size_t nbytes);
/* dst = src's contents on dst->device (shapes and dtypes must agree; any device pair). */
arb_status arb_tensor_copy(arb_tensor *dst, const arb_tensor *src);

/* ---- ternary tensors on the device --------------------------------------------------------
 * A device arb_ternary has every array (trits, accum, exp, exp_evidence, scale, nnz) in device
 * memory and device.kind == ARB_DEVICE_CUDA; arb_ternary_init(..., arb_cuda(i)) and
 * arb_ternary_free work on it. */
arb_status arb_cuda_ternary_upload(arb_ternary *dst, const arb_ternary *src_host, int device);
/* dst_host must be an initialized host tensor of the same shape, kind and id. */
arb_status arb_cuda_ternary_download(arb_ternary *dst_host, const arb_ternary *src);
/* Recompute nnz and scale from trits and E on the device (arb_ternary_refresh's twin). */
arb_status arb_cuda_ternary_refresh(arb_ternary *w);

/* ---- ops (all pointers are device pointers) -------------------------------------------------
 * Same contracts as ternary.h. */
arb_status arb_cuda_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q, float *scale);
arb_status arb_cuda_ternary_matmul_i32(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc);
arb_status arb_cuda_ternary_linear_forward(const arb_ternary *w, const int8_t *xq, const float *xs, int64_t n,
                                           float *y);
arb_status arb_cuda_ternary_linear_backward_x(const arb_ternary *w, const float *dy, int64_t n, arb_rng_key key,
                                              float *dx);
/* st and stats are host structs (the per-tensor statistics live on the host); in deferred mode
 * (arb_cuda_checks_defer) they are written at arb_cuda_checks_collect. */
arb_status arb_cuda_ternary_linear_backward_update(arb_ternary *w, const int8_t *xq, const float *xs,
                                                   const float *dy, int64_t n, const arb_update_params *p,
                                                   arb_update_state *st, arb_update_stats *stats);
/* Both at once, as a training step needs them: dx (with the pre-update trits, dy quantized with
 * dx_key exactly as backward_x does) and the fused update. One pass over dy finds the maxima of
 * both, one more quantizes both; same results as the two calls in sequence. */
arb_status arb_cuda_ternary_linear_backward(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy,
                                            int64_t n, arb_rng_key dx_key, float *dx, const arb_update_params *p,
                                            arb_update_state *st, arb_update_stats *stats);
arb_status arb_cuda_ternary_embedding_forward(const arb_ternary *w, const int32_t *idx, int64_t n, float *out);
arb_status arb_cuda_ternary_embedding_backward_update(arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                                      const arb_update_params *p, arb_update_state *st,
                                                      arb_update_stats *stats);
arb_status arb_cuda_ternary_rmsnorm_forward(const arb_ternary *gain, const float *x, int64_t n, float eps, float *y,
                                            float *rstd);
arb_status arb_cuda_ternary_rmsnorm_backward_update(arb_ternary *gain, const float *x, const float *rstd,
                                                    const float *dy, int64_t n, float *dx,
                                                    const arb_update_params *p, arb_update_state *st,
                                                    arb_update_stats *stats);

/* Test hooks: the device kernels of the update's double-precision steps (plan, norm, E rule) on
 * host arrays, for comparison with arb_upd_plan_make / arb_upd_norm / arb_upd_exp_step
 * (src/ternary/update_internal.h).
 * arb_cuda_test_upd_plan: mult (rows) and *shift as arb_upd_plan_make(c, rows, eta, norm) (norm > 0).
 * arb_cuda_test_upd_finish: w is a device tensor; the first-step plan (no previous norm: the norm
 * from abs_g over w->rows x w->cols) into first_mult / first_shift, then the finish with those
 * row sums: *norm (arb_upd_norm), E and evidence of w (arb_upd_exp_step with c·ge when
 * p->update_exp, then the refreshed scale), *moves. */
arb_status arb_cuda_test_upd_plan(const float *c, int64_t rows, double eta, double norm, int32_t *mult, int *shift);
arb_status arb_cuda_test_upd_finish(arb_ternary *w, const float *c, const int64_t *abs_g, const int64_t *ge,
                                    const arb_update_params *p, double *norm, int32_t *moves, int32_t *first_mult,
                                    int *first_shift);

/* `arbitor bench kernels --device cuda` (cli/bench_kernels.c calls it through a weak symbol). */
int arb_cuda_bench_kernels(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_CUDA_H */
