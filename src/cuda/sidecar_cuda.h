/* Private bridge between the sidecar entry points (src/sidecars/sidecar.c, C) and the CUDA
 * sidecar backend (src/cuda/sidecar.cu): a model moved to a CUDA device keeps an opaque
 * device-resident copy in arb_sidecar.dev.
 *
 * The device copy is built from the loaded CPU model (src/sidecars/sc_models.h: its parsed
 * configuration, int8 rows and scales), so the int8 weights are the CPU's, bit for bit, and the
 * checkpoint is read once. */
#ifndef ARB_SIDECAR_CUDA_H
#define ARB_SIDECAR_CUDA_H

#include "arbitor/sidecars.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Uploads m's loaded int8 model to cuda:`device`; sets m->dev / m->dev_free. */
arb_status sc_cu_attach(arb_sidecar *m, int device);
/* The model's main forward on the device (see arb_sidecar_forward). */
arb_status sc_cu_forward(arb_sidecar *m, const arb_tensor *in, arb_tensor *out, arb_tensor *out2);
/* int8 tensor-core peak: a large cuBLASLt int8 GEMM, best of a few runs, int8 ops/s. */
arb_status sc_cu_int8_peak(int device, double seconds, double *ops_per_s);
/* y[i] = the CUDA sidecar kernels' GELU of x[i] (host arrays; for the test against float64). */
arb_status sc_cu_gelu_probe(const float *x, float *y, size_t n);

#ifdef __cplusplus
}
#endif
#endif
