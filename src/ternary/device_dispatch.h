/* Device dispatch for the generic ternary ops: a tensor on a CUDA device routes the call to
 * its CUDA implementation (include/arbitor/cuda.h); host tensors fall through to the CPU tiers.
 * Buffers passed with a CUDA tensor must be device pointers. */
#ifndef ARB_TERNARY_DEVICE_DISPATCH_H
#define ARB_TERNARY_DEVICE_DISPATCH_H
#ifdef ARB_HAVE_CUDA
#include "arbitor/cuda.h"
#define ARB_ON_CUDA(w, call)                                                  \
    do {                                                                      \
        if ((w) && (w)->device.kind == ARB_DEVICE_CUDA) return (call);        \
    } while (0)
#else
#define ARB_ON_CUDA(w, call) ((void)0)
#endif
#endif
