/* CUDA device runtime: tensor storage on the GPU. (The caching pool and streams build on
 * this; see include/arbitor/cuda.h once it exists.) */
#include <cuda_runtime.h>

#include "arbitor/core.h"

extern "C" arb_status arb_cuda_tensor_alloc(arb_tensor *t) {
    if (cudaSetDevice(t->device.index) != cudaSuccess)
        return arb_error(ARB_ERR_CUDA, "cudaSetDevice(%d) failed", t->device.index);
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, t->nbytes ? t->nbytes : 1);
    if (e != cudaSuccess)
        return arb_error(ARB_ERR_CUDA, "%s:%d: cudaMalloc(%zu): %s", __FILE__, __LINE__, t->nbytes, cudaGetErrorString(e));
    cudaMemset(p, 0, t->nbytes);
    t->data = p;
    return ARB_OK;
}

extern "C" void arb_cuda_tensor_release(arb_tensor *t) { cudaFree(t->data); }
