/* Tensors: dtype table, aligned storage, overflow-checked sizes, half-precision conversion.
 * CUDA storage comes from the device layer (src/cuda); in a CPU-only build a CUDA tensor is
 * ARB_ERR_UNSUPPORTED rather than a crash. */
#include "arbitor/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const struct { const char *name; size_t size; } g_dtypes[ARB_DTYPE_COUNT] = {
    [ARB_F32] = {"F32", 4}, [ARB_BF16] = {"BF16", 2}, [ARB_F16] = {"F16", 2},
    [ARB_I8] = {"I8", 1},   [ARB_U8] = {"U8", 1},     [ARB_I32] = {"I32", 4},
    [ARB_I64] = {"I64", 8},
};

size_t arb_dtype_size(arb_dtype dt) {
    return ((int)dt >= 0 && dt < ARB_DTYPE_COUNT) ? g_dtypes[dt].size : 0;
}

const char *arb_dtype_name(arb_dtype dt) {
    return ((int)dt >= 0 && dt < ARB_DTYPE_COUNT) ? g_dtypes[dt].name : "?";
}

bool arb_dtype_parse(const char *name, arb_dtype *out) {
    for (int i = 0; i < ARB_DTYPE_COUNT; i++) {
        if (strcmp(name, g_dtypes[i].name) == 0) {
            *out = (arb_dtype)i;
            return true;
        }
    }
    return false;
}

bool arb_mul_size(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

bool arb_add_size(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

arb_status arb_shape_nbytes(arb_dtype dt, int ndim, const int64_t *shape, size_t *out) {
    if ((int)dt < 0 || dt >= ARB_DTYPE_COUNT) return arb_error(ARB_ERR_DTYPE, "unknown dtype %d", (int)dt);
    if (ndim < 0 || ndim > ARB_MAX_DIMS)
        return arb_error(ARB_ERR_SHAPE, "rank %d is outside 0..%d", ndim, ARB_MAX_DIMS);
    if (ndim > 0 && !shape) return arb_error(ARB_ERR_INVALID_ARG, "shape is NULL");
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return arb_error(ARB_ERR_SHAPE, "dimension %d is negative (%lld)", i, (long long)shape[i]);
        empty = empty || shape[i] == 0;
    }
    /* A zero dimension makes the tensor empty whatever the others are (as the safetensors reader
     * counts it), so a product of the others that would overflow is not an error then. */
    size_t n = empty ? 0 : arb_dtype_size(dt);
    for (int i = 0; i < ndim && !empty; i++)
        if (!arb_mul_size(n, (size_t)shape[i], &n))
            return arb_error(ARB_ERR_OVERFLOW, "tensor size overflows at dimension %d", i);
    *out = n;
    return ARB_OK;
}

/* Buffers from this size up sit on 2 MB boundaries and ask for transparent huge pages: the
 * kernels stream weights, T_accum and activations linearly, and with 4 KB pages a streamed
 * GEMV spent a measurable share of its time in TLB misses. */
#define ARB_HUGE_MIN ((size_t)4 << 20)
#define ARB_HUGE_PAGE ((size_t)2 << 20)

void *arb_alloc(size_t nbytes) {
    size_t rounded;
    if (nbytes >= ARB_HUGE_MIN) {
        if (!arb_add_size(nbytes, ARB_HUGE_PAGE - 1, &rounded)) return NULL;
        rounded &= ~(ARB_HUGE_PAGE - 1);
        void *p = aligned_alloc(ARB_HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
        if (p) (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: failure only costs speed */
#endif
        return p;
    }
    if (!arb_add_size(nbytes, ARB_ALIGN - 1, &rounded)) return NULL;
    rounded &= ~(size_t)(ARB_ALIGN - 1);
    if (rounded == 0) rounded = ARB_ALIGN;
    return aligned_alloc(ARB_ALIGN, rounded);
}

void *arb_calloc(size_t nbytes) {
    void *p = arb_alloc(nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

void arb_free(void *p) { free(p); }

/* Device allocation hooks, provided by src/cuda when built with CUDA. */
arb_status arb_cuda_tensor_alloc(arb_tensor *t);
void arb_cuda_tensor_release(arb_tensor *t);

#ifndef ARB_HAVE_CUDA
arb_status arb_cuda_tensor_alloc(arb_tensor *t) {
    (void)t;
    return arb_error(ARB_ERR_UNSUPPORTED, "this build of arbitor has no CUDA support (rebuild with -DARB_CUDA=ON)");
}
void arb_cuda_tensor_release(arb_tensor *t) { (void)t; }
#endif

static arb_status tensor_header(arb_tensor *t, arb_dtype dt, int ndim, const int64_t *shape, arb_device dev) {
    if (!t) return arb_error(ARB_ERR_INVALID_ARG, "tensor is NULL");
    memset(t, 0, sizeof *t);
    size_t nbytes;
    ARB_TRY(arb_shape_nbytes(dt, ndim, shape, &nbytes));
    if (ndim > 0 && !shape) return arb_error(ARB_ERR_INVALID_ARG, "shape is NULL");
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->device = dev;
    return ARB_OK;
}

arb_status arb_tensor_init(arb_tensor *t, arb_dtype dt, int ndim, const int64_t *shape, arb_device dev) {
    ARB_TRY(tensor_header(t, dt, ndim, shape, dev));
    if (dev.kind == ARB_DEVICE_CUDA) {
        arb_status s = arb_cuda_tensor_alloc(t);
        if (s == ARB_OK) t->owns = true;
        return s;
    }
    t->data = arb_calloc(t->nbytes);
    if (!t->data) return arb_error(ARB_ERR_OOM, "cannot allocate %zu bytes for a tensor", t->nbytes);
    t->owns = true;
    return ARB_OK;
}

arb_status arb_tensor_wrap(arb_tensor *t, void *data, arb_dtype dt, int ndim, const int64_t *shape, arb_device dev) {
    ARB_TRY(tensor_header(t, dt, ndim, shape, dev));
    if (!data && t->nbytes) return arb_error(ARB_ERR_INVALID_ARG, "tensor data is NULL");
    t->data = data;
    t->owns = false;
    return ARB_OK;
}

void arb_tensor_free(arb_tensor *t) {
    if (!t) return;
    if (t->owns && t->data) {
        if (t->device.kind == ARB_DEVICE_CUDA) arb_cuda_tensor_release(t);
        else arb_free(t->data);
    }
    memset(t, 0, sizeof *t);
}

int64_t arb_tensor_numel(const arb_tensor *t) {
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return 0; /* the other dimensions' product may not fit then */
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *arb_tensor_describe(const arb_tensor *t, char *buf, size_t cap) {
    size_t off = 0;
    int w = snprintf(buf, cap, "%s[", arb_dtype_name(t->dtype));
    off = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < t->ndim && off < cap; i++) {
        w = snprintf(buf + off, cap - off, i ? ",%lld" : "%lld", (long long)t->shape[i]);
        off += w > 0 ? (size_t)w : 0;
    }
    if (off < cap) snprintf(buf + off, cap - off, "]");
    return buf;
}

float arb_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t arb_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float arb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalize */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7F800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t arb_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t exp = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
    uint32_t man = u & 0x7FFFFFu;
    if (((u >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7C00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
    return (uint16_t)half;
}

float arb_rand_normal(arb_rng_key key, uint32_t index) {
    float u1 = arb_rand_unit(key, 2u * index), u2 = arb_rand_unit(key, 2u * index + 1u);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}
