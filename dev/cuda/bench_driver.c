/* Stand-alone driver for arb_cuda_bench_kernels, for builds whose CLI lacks
 * `arbitor bench kernels` (cli/bench_kernels.c). Build (see dev/cuda/README.md):
 *   nvcc -O2 dev/cuda/bench_driver.c -Iinclude -o bench build-cuda/libarbitor.a -lcublasLt -lcublas -lcjson -lgomp -lm */
#include "arbitor/cuda.h"

int main(int argc, char **argv) { return arb_cuda_bench_kernels(argc, argv); }
