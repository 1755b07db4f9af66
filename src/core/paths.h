/* src/core/paths.h — where a tool finds a file of the source tree it runs (the bench/ Python
 * scripts). Internal: used by the CLI's sidecar bench and the CUDA kernel bench. */
#ifndef ARB_CORE_PATHS_H
#define ARB_CORE_PATHS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The path of `rel` (e.g. "bench/torch_gemm.py"): the value of the environment variable `env`
 * when it is set; else `rel` when readable from the working directory; else `rel` under the
 * executable's parent or grandparent directory (build/ or build/tests/ of a checkout), written
 * into buf. NULL when none is readable. */
const char *arb_tree_file(const char *rel, const char *env, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
