/* arbitor/core.h — status codes, logging, tensors, counter-based RNG, threads, CPU tiers.
 *
 * Why: every layer above (ternary, formats, cpu, cuda, model, sidecars, train) speaks these
 * types. The library never exits: a failing call returns an arb_status and leaves a one-line
 * message in arb_last_error() (thread-local), which is also sent to the log callback.
 *
 *   arb_tensor t;
 *   int64_t shape[2] = {4, 8};
 *   if (arb_tensor_init(&t, ARB_F32, 2, shape, arb_cpu()) != ARB_OK)
 *       fprintf(stderr, "error: %s\n", arb_last_error());
 *   ...
 *   arb_tensor_free(&t);
 */
#ifndef ARBITOR_CORE_H
#define ARBITOR_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status and errors */

typedef enum arb_status {
    ARB_OK = 0,
    ARB_ERR_INVALID_ARG,  /* a caller passed something out of contract */
    ARB_ERR_OOM,          /* allocation failed or size is absurd */
    ARB_ERR_IO,           /* open/read/write/rename/fsync failed */
    ARB_ERR_FORMAT,       /* a file is corrupt, truncated or not what it claims */
    ARB_ERR_SHAPE,        /* shapes do not agree */
    ARB_ERR_DTYPE,        /* wrong or unsupported dtype */
    ARB_ERR_NOT_FOUND,    /* a named thing (tensor, file, config) is missing */
    ARB_ERR_OVERFLOW,     /* size arithmetic would overflow */
    ARB_ERR_UNSUPPORTED,  /* valid request this build/backend cannot do */
    ARB_ERR_CUDA,         /* a CUDA call or kernel launch failed */
    ARB_ERR_INTERNAL,     /* an invariant broke: a bug in arbitor */
    ARB_STATUS_COUNT
} arb_status;

/* Static name of a status ("invalid argument", ...). */
const char *arb_status_str(arb_status s);

/* The message of the last error set on this thread ("" if none). */
const char *arb_last_error(void);

/* Records a formatted message as this thread's last error, logs it at ARB_LOG_ERROR and
 * returns `code`, so a failing path reads: return arb_error(ARB_ERR_FORMAT, "...", ...); */
arb_status arb_error(arb_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void arb_clear_error(void);

/* Propagate a failing status unchanged. */
#define ARB_TRY(expr)                              \
    do {                                           \
        arb_status arb_try_s_ = (expr);            \
        if (arb_try_s_ != ARB_OK) return arb_try_s_; \
    } while (0)

/* ---------------------------------------------------------------- logging */

typedef enum arb_log_level { ARB_LOG_DEBUG = 0, ARB_LOG_INFO, ARB_LOG_WARN, ARB_LOG_ERROR } arb_log_level;
typedef void (*arb_log_fn)(arb_log_level level, const char *msg, void *user);

/* Install a log callback (NULL restores the default: WARN and ERROR to stderr). */
void arb_log_set(arb_log_fn fn, void *user);
/* Minimum level passed to the callback (default ARB_LOG_WARN; env ARB_LOG=debug|info|warn|error). */
void arb_log_set_level(arb_log_level level);
void arb_log(arb_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- devices and tensors */

typedef enum arb_device_kind { ARB_DEVICE_CPU = 0, ARB_DEVICE_CUDA = 1 } arb_device_kind;
typedef struct arb_device {
    arb_device_kind kind;
    int index; /* CUDA ordinal; 0 for CPU */
} arb_device;

static inline arb_device arb_cpu(void) { arb_device d = {ARB_DEVICE_CPU, 0}; return d; }
static inline arb_device arb_cuda(int index) { arb_device d = {ARB_DEVICE_CUDA, index}; return d; }

typedef enum arb_dtype {
    ARB_F32 = 0, ARB_BF16, ARB_F16, ARB_I8, ARB_U8, ARB_I32, ARB_I64, ARB_DTYPE_COUNT
} arb_dtype;

size_t arb_dtype_size(arb_dtype dt);
const char *arb_dtype_name(arb_dtype dt); /* safetensors spelling: "F32", "BF16", ... */
/* Parse a safetensors dtype string; returns false if unknown. */
bool arb_dtype_parse(const char *name, arb_dtype *out);

#define ARB_MAX_DIMS 8
#define ARB_ALIGN 64 /* bytes: a cache line, and one AVX-512 vector */

typedef struct arb_tensor {
    arb_dtype dtype;
    int ndim;
    int64_t shape[ARB_MAX_DIMS]; /* row-major, contiguous */
    void *data;
    size_t nbytes;
    arb_device device;
    bool owns; /* arb_tensor_free releases data only if true */
} arb_tensor;

/* Allocate a contiguous, ARB_ALIGN-aligned, zero-filled tensor on `dev`.
 * Fails with ARB_ERR_OVERFLOW / ARB_ERR_OOM on absurd sizes, ARB_ERR_UNSUPPORTED for a
 * CUDA device in a build without CUDA. */
arb_status arb_tensor_init(arb_tensor *t, arb_dtype dt, int ndim, const int64_t *shape, arb_device dev);
/* Wrap caller-owned memory (no copy, not freed). */
arb_status arb_tensor_wrap(arb_tensor *t, void *data, arb_dtype dt, int ndim, const int64_t *shape, arb_device dev);
void arb_tensor_free(arb_tensor *t);
int64_t arb_tensor_numel(const arb_tensor *t);
/* "f32[2,3]" into buf; returns buf. */
const char *arb_tensor_describe(const arb_tensor *t, char *buf, size_t cap);

/* Overflow-checked size arithmetic: false on overflow (result untouched). */
bool arb_mul_size(size_t a, size_t b, size_t *out);
bool arb_add_size(size_t a, size_t b, size_t *out);
/* numel * itemsize of a shape with overflow and negative-dimension checks. */
arb_status arb_shape_nbytes(arb_dtype dt, int ndim, const int64_t *shape, size_t *out);

/* Aligned host allocation (ARB_ALIGN) and its release; size 0 gives a valid unique pointer. */
void *arb_alloc(size_t nbytes);
void *arb_calloc(size_t nbytes);
void arb_free(void *p);

/* bf16/f16 <-> f32 (round to nearest even). */
float arb_bf16_to_f32(uint16_t h);
uint16_t arb_f32_to_bf16(float f);
float arb_f16_to_f32(uint16_t h);
uint16_t arb_f32_to_f16(float f);

/* ---------------------------------------------------------------- counter-based RNG
 *
 * Stochastic rounding must give the same bits for any thread count and on CPU and CUDA, so
 * randomness is a pure function of (key, index): no sequential state. A key is derived once
 * per (seed, stream) — e.g. stream = step * 4096 + tensor id — and each element draws
 * arb_rand_u32(key, element_index). The same two functions are compiled for CUDA. */

typedef struct arb_rng_key { uint32_t k0, k1; } arb_rng_key;

#if defined(__CUDACC__)
#define ARB_HD static __host__ __device__ __forceinline__
#else
#define ARB_HD static inline
#endif

ARB_HD uint64_t arb_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

ARB_HD arb_rng_key arb_rng_key_make(uint64_t seed, uint64_t stream) {
    uint64_t h = arb_splitmix64(seed ^ arb_splitmix64(stream));
    arb_rng_key k;
    k.k0 = (uint32_t)h;
    k.k1 = (uint32_t)(h >> 32);
    return k;
}

/* One round of the 32-bit finalizer lowbias32 over a keyed Weyl sequence: k0 offsets the
 * sequence, k1 enters between the two multiplies. Why one round: the update draws one value per
 * weight per step, and a second round cost 15% of the fused update; stochastic rounding and
 * initialization need uniform, uncorrelated bits, not a cryptographic hash (tests/test_core.c
 * checks uniformity, bit balance and neighbour correlation). */
ARB_HD uint32_t arb_rand_u32(arb_rng_key key, uint32_t index) {
    uint32_t x = index * 0x9E3779B1u + key.k0;
    x ^= x >> 16; x *= 0x7FEB352Du; x ^= (x >> 15) ^ key.k1; x *= 0x846CA68Bu; x ^= x >> 16;
    return x;
}

/* Uniform float in [0, 1) with 24 random bits. */
ARB_HD float arb_rand_unit(arb_rng_key key, uint32_t index) {
    return (float)(arb_rand_u32(key, index) >> 8) * (1.0f / 16777216.0f);
}

/* Gaussian (Box–Muller on two draws at 2*index and 2*index+1). For initializers and tests. */
float arb_rand_normal(arb_rng_key key, uint32_t index);

/* ---------------------------------------------------------------- threads */

/* Threads used by CPU kernels (default: all cores; env ARB_THREADS). Kernels split work so
 * that results are identical for any thread count. */
void arb_set_num_threads(int n);
int arb_get_num_threads(void);

/* ---------------------------------------------------------------- CPU kernel tiers */

typedef enum arb_cpu_tier { ARB_TIER_SCALAR = 0, ARB_TIER_AVX2 = 1, ARB_TIER_AVX512 = 2 } arb_cpu_tier;

typedef struct arb_cpu_features {
    bool avx2, fma, avx_vnni, avx512f, avx512bw, avx512vl, avx512dq, avx512_vnni, avx512_vbmi, gfni;
} arb_cpu_features;

/* What this CPU and OS support (CPUID + XGETBV), probed once. */
const arb_cpu_features *arb_cpu_features_get(void);
/* The tier kernels dispatch to: the best supported, unless env ARB_CPU_TIER=scalar|avx2|avx512
 * or arb_cpu_tier_force() chose a lower one (a tier the CPU lacks is never chosen). */
arb_cpu_tier arb_cpu_tier_get(void);
/* Force a tier (for tests). Returns the tier actually in force. */
arb_cpu_tier arb_cpu_tier_force(arb_cpu_tier tier);
const char *arb_cpu_tier_name(arb_cpu_tier tier);

/* Library version string. */
const char *arb_version(void);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_CORE_H */
