/* Packed ternary tensors: storage, initialization, element access, derived scales, int8
 * activation quantization and the model audit.
 *
 * Why here and not in src/cpu: everything in this file is layout bookkeeping that every
 * backend shares; the hot kernels (matmul, fused update) live in src/cpu and src/cuda, the row
 * loops of quantization in the tiers of ops_internal.h. The
 * row scale is computed from a 4-entry table instead of exp2f so that the CPU and CUDA builds
 * derive the very same float (exp2f is not correctly rounded on either). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arbitor/ternary.h"
#include "ternary/ops_internal.h"

/* CUDA storage hooks, defined by src/cuda when it supports ternary tensors on the device.
 * Weak references: NULL in builds (or stages of the project) without them. */
arb_status arb_cuda_ternary_alloc(arb_ternary *w) __attribute__((weak));
void arb_cuda_ternary_release(arb_ternary *w) __attribute__((weak));
arb_status arb_cuda_ternary_fix_exponent(arb_ternary *w) __attribute__((weak));
arb_status arb_cuda_ternary_refresh(arb_ternary *w) __attribute__((weak));

/* 2^(j/4) for j = 0..3, rounded to float once (the same constants are used on CUDA). */
static const float k_quarter_octave[4] = {1.0f, 1.18920711500272106672f, 1.41421356237309504880f,
                                          1.68179283050742908606f};

float arb_ternary_exp_mult(int e) {
    int q = e >> 2; /* floor(e / 4): arithmetic shift */
    return ldexpf(k_quarter_octave[e & 3], q);
}

float arb_ternary_row_scale(arb_ternary_kind kind, int64_t cols, int32_t nnz, int e) {
    float n = (float)(nnz > 0 ? nnz : 1);
    float base;
    switch (kind) {
    case ARB_TERNARY_EMBED: base = sqrtf((float)cols / n); break;
    case ARB_TERNARY_GAIN: base = 1.0f; break;
    default: base = 1.0f / sqrtf(n); break;
    }
    return base * arb_ternary_exp_mult(e);
}

static void ternary_zero(arb_ternary *w) { memset(w, 0, sizeof *w); }

arb_status arb_ternary_init(arb_ternary *w, int64_t rows, int64_t cols, arb_ternary_kind kind, int32_t id,
                            arb_device dev) {
    if (!w) return arb_error(ARB_ERR_INVALID_ARG, "ternary tensor is NULL");
    ternary_zero(w);
    if (rows <= 0 || cols <= 0 || rows > ARB_TERNARY_MAX_DIM || cols > ARB_TERNARY_MAX_DIM)
        return arb_error(ARB_ERR_SHAPE, "ternary tensor shape (%lld, %lld) must be within 1..%lld",
                         (long long)rows, (long long)cols, (long long)ARB_TERNARY_MAX_DIM);
    if (kind != ARB_TERNARY_LINEAR && kind != ARB_TERNARY_EMBED && kind != ARB_TERNARY_GAIN)
        return arb_error(ARB_ERR_INVALID_ARG, "unknown ternary kind %d", (int)kind);
    if (id < 0 || id >= ARB_TERNARY_MAX_ID)
        return arb_error(ARB_ERR_INVALID_ARG, "ternary tensor id %d is outside 0..%d", (int)id,
                         ARB_TERNARY_MAX_ID - 1);
    w->rows = rows;
    w->cols = cols;
    w->rows_pad = arb_round_up16(rows);
    w->cols_pad = arb_round_up16(cols);
    w->kind = kind;
    w->id = id;
    w->device = dev;
    size_t tbytes, abytes;
    if (!arb_mul_size((size_t)w->rows_pad, (size_t)w->cols_pad / 4, &tbytes) ||
        !arb_mul_size((size_t)rows, (size_t)cols, &abytes) || abytes > (size_t)INT64_MAX / 2)
        return arb_error(ARB_ERR_OVERFLOW, "ternary tensor (%lld, %lld) is too large", (long long)rows,
                         (long long)cols);
    if (dev.kind == ARB_DEVICE_CUDA) {
        if (!arb_cuda_ternary_alloc)
            return arb_error(ARB_ERR_UNSUPPORTED,
                             "ternary tensor (%lld, %lld) on cuda:%d: this build has no CUDA ternary storage",
                             (long long)rows, (long long)cols, dev.index);
        arb_status s = arb_cuda_ternary_alloc(w);
        if (s != ARB_OK) ternary_zero(w);
        return s;
    }
    if (dev.kind != ARB_DEVICE_CPU) return arb_error(ARB_ERR_INVALID_ARG, "unknown device kind %d", (int)dev.kind);
    w->trits = arb_alloc(tbytes);
    w->accum = arb_calloc(abytes);
    w->exp = arb_calloc((size_t)rows);
    w->exp_evidence = arb_calloc((size_t)rows);
    w->scale = arb_alloc((size_t)rows * sizeof(float));
    w->nnz = arb_calloc((size_t)rows * sizeof(int32_t));
    if (!w->trits || !w->accum || !w->exp || !w->exp_evidence || !w->scale || !w->nnz) {
        arb_ternary_free(w);
        return arb_error(ARB_ERR_OOM, "cannot allocate ternary tensor (%lld, %lld): %zu + %zu bytes",
                         (long long)rows, (long long)cols, tbytes, abytes);
    }
    memset(w->trits, 0x55, tbytes); /* code 1 everywhere: trit 0, padding included */
    return arb_ternary_refresh(w);
}

void arb_ternary_free(arb_ternary *w) {
    if (!w) return;
    if (w->device.kind == ARB_DEVICE_CUDA) {
        if (arb_cuda_ternary_release) arb_cuda_ternary_release(w);
    } else {
        arb_free(w->trits);
        arb_free(w->accum);
        arb_free(w->exp);
        arb_free(w->exp_evidence);
        arb_free(w->scale);
        arb_free(w->nnz);
        arb_free(w->rows64);
    }
    ternary_zero(w);
}

static arb_status require_host(const arb_ternary *w, const char *what) {
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "%s: ternary tensor is NULL or not initialized", what);
    if (w->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: ternary tensor (%lld, %lld) is on cuda:%d; this op is host-only",
                         what, (long long)w->rows, (long long)w->cols, w->device.index);
    return ARB_OK;
}

arb_status arb_ternary_randomize(arb_ternary *w, uint64_t seed) {
    ARB_TRY(require_host(w, "arb_ternary_randomize"));
    arb_rng_key key = arb_rng_key_make(seed, (uint64_t)w->id);
    size_t tbytes = (size_t)w->rows_pad * (size_t)w->cols_pad / 4;
    memset(w->trits, 0x55, tbytes);
    for (int64_t r = 0; r < w->rows; r++) {
        for (int64_t c = 0; c < w->cols; c++) {
            int t = 1;
            if (w->kind != ARB_TERNARY_GAIN) {
                uint32_t u = arb_rand_u32(key, (uint32_t)(r * w->cols + c));
                t = (int)(((uint64_t)u * 3u) >> 32) - 1; /* multiply-shift: {0,1,2} - 1 */
            }
            arb_ternary_set(w, r, c, t);
        }
    }
    memset(w->accum, 0, (size_t)w->rows * (size_t)w->cols);
    if (w->exp) memset(w->exp, 0, (size_t)w->rows);
    if (w->exp_evidence) memset(w->exp_evidence, 0, (size_t)w->rows);
    return arb_ternary_refresh(w);
}

int32_t arb_ternary_row_nnz(const arb_ternary *w, int64_t r) {
    const uint8_t *row = w->trits + (size_t)(r >> 4) * (size_t)(w->cols_pad >> 4) * ARB_TILE_BYTES + 4 * (r & 15);
    int32_t n = 0;
    for (int64_t kb = 0; kb < (w->cols_pad >> 4); kb++) {
        uint32_t word;
        memcpy(&word, row + kb * ARB_TILE_BYTES, 4);
        uint32_t x = word ^ 0x55555555u;     /* field 0 ⇔ code 1 ⇔ trit 0 */
        uint32_t v = (x | (x >> 1)) & 0x55555555u; /* one bit per nonzero field: count them */
        v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u); /* SWAR: no libgcc call without -mpopcnt */
        v = (v + (v >> 4)) & 0x0F0F0F0Fu;
        n += (int32_t)((v * 0x01010101u) >> 24);
    }
    return n;
}

/* rows64 from tile16 (layout in ternary.h): row 64G+16g+l is row l of tile row 4G+g, and
 * column 4q+i is byte 4l+i, field q%4 of tile column q/4, so each output byte gathers one field
 * from the same byte of four tiles. */
static void rows64_fill(arb_ternary *w) {
    const int64_t groups = arb_round_up64(w->rows_pad) >> 6, nq = w->cols_pad >> 2, rbs = w->rows_pad >> 4;
    uint8_t pad_tile[ARB_TILE_BYTES];
    memset(pad_tile, 0x55, sizeof pad_tile); /* code 1 = trit 0 for the rows past rows_pad */
#pragma omp parallel for schedule(static) if (groups * nq > 4096)
    for (int64_t G = 0; G < groups; G++) {
        uint8_t *dst = w->rows64 + (size_t)G * (size_t)nq * 64;
        for (int64_t q = 0; q < nq; q++, dst += 64) {
            const uint8_t *t[4];
            for (int g = 0; g < 4; g++) {
                int64_t rb = 4 * G + g;
                t[g] = rb < rbs ? w->trits + ((size_t)rb * (size_t)(nq >> 2) + (size_t)(q >> 2)) * ARB_TILE_BYTES
                                : pad_tile;
            }
            const int sh = 2 * (int)(q & 3);
            for (int j = 0; j < 64; j++)
                dst[j] = (uint8_t)(((t[0][j] >> sh) & 3) | (((t[1][j] >> sh) & 3) << 2) | (((t[2][j] >> sh) & 3) << 4) |
                                   (((t[3][j] >> sh) & 3) << 6));
        }
    }
}

arb_status arb_ternary_refresh(arb_ternary *w) {
    if (w && w->trits && w->device.kind == ARB_DEVICE_CUDA && arb_cuda_ternary_refresh) return arb_cuda_ternary_refresh(w);
    ARB_TRY(require_host(w, "arb_ternary_refresh"));
    for (int64_t r = 0; r < w->rows && w->exp; r++) {
        int e = w->exp[r];
        if (e < ARB_EXP_MIN || e > ARB_EXP_MAX)
            return arb_error(ARB_ERR_INVALID_ARG, "ternary tensor %d row %lld: exponent %d outside [%d, %d]",
                             (int)w->id, (long long)r, e, ARB_EXP_MIN, ARB_EXP_MAX);
    }
    /* Rows are independent; after every update of a large tensor a serial refresh cost up to
     * 20% of a 4096x4096 forward, so big tensors use all threads (same values either way). */
    const int64_t rows = w->rows;
#pragma omp parallel for schedule(static) if (rows * w->cols_pad > ((int64_t)1 << 18))
    for (int64_t r = 0; r < rows; r++) {
        w->nnz[r] = arb_ternary_row_nnz(w, r);
        w->scale[r] = arb_ternary_row_scale(w->kind, w->cols, w->nnz[r], w->exp ? w->exp[r] : 0);
    }
    if (w->rows64) rows64_fill(w);
    return ARB_OK;
}

static size_t rows64_bytes(const arb_ternary *w) {
    return (size_t)arb_round_up64(w->rows_pad) * (size_t)w->cols_pad / 4;
}

arb_status arb_ternary_prepare_rows64(arb_ternary *w) {
    ARB_TRY(require_host(w, "arb_ternary_prepare_rows64"));
    if (!w->rows64) {
        size_t bytes = rows64_bytes(w); /* ≤ 1.5 × the tile16 bytes, which init already sized */
        w->rows64 = arb_alloc(bytes);
        if (!w->rows64)
            return arb_error(ARB_ERR_OOM, "rows64 copy of ternary tensor %d (%lld, %lld): %zu bytes", (int)w->id,
                             (long long)w->rows, (long long)w->cols, bytes);
    }
    rows64_fill(w);
    return ARB_OK;
}

void arb_ternary_drop_rows64(arb_ternary *w) {
    if (!w || w->device.kind != ARB_DEVICE_CPU) return;
    arb_free(w->rows64);
    w->rows64 = NULL;
}

int arb_ternary_get(const arb_ternary *w, int64_t r, int64_t c) {
    const uint8_t *tile = w->trits + ((size_t)(r >> 4) * (size_t)(w->cols_pad >> 4) + (size_t)(c >> 4)) * ARB_TILE_BYTES;
    int j = (int)(4 * (r & 15) + (c & 3)), g = (int)((c & 15) >> 2);
    return ((tile[j] >> (2 * g)) & 3) - 1;
}

void arb_ternary_set(arb_ternary *w, int64_t r, int64_t c, int trit) {
    uint8_t *tile = w->trits + ((size_t)(r >> 4) * (size_t)(w->cols_pad >> 4) + (size_t)(c >> 4)) * ARB_TILE_BYTES;
    int j = (int)(4 * (r & 15) + (c & 3)), g = (int)((c & 15) >> 2);
    int code = trit < 0 ? 0 : (trit > 0 ? 2 : 1);
    tile[j] = (uint8_t)((tile[j] & ~(3u << (2 * g))) | ((unsigned)code << (2 * g)));
}

size_t arb_ternary_state_bytes(const arb_ternary *w) {
    if (!w || w->rows <= 0) return 0;
    size_t per_row = (w->exp ? 1u : 0u) + (w->exp_evidence ? 1u : 0u);
    return (size_t)w->rows_pad * (size_t)w->cols_pad / 4 + (size_t)w->rows * (size_t)w->cols + per_row * (size_t)w->rows;
}

arb_status arb_ternary_fix_exponent(arb_ternary *w) {
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_fix_exponent: tensor is NULL or not initialized");
    if (!w->exp) return ARB_OK;
    if (w->device.kind == ARB_DEVICE_CUDA) {
        if (!arb_cuda_ternary_fix_exponent)
            return arb_error(ARB_ERR_UNSUPPORTED, "arb_ternary_fix_exponent: this build has no CUDA ternary storage");
        return arb_cuda_ternary_fix_exponent(w);
    }
    for (int64_t r = 0; r < w->rows; r++)
        if (w->exp[r] != 0)
            return arb_error(ARB_ERR_INVALID_ARG, "ternary tensor %d: row %lld has E = %d; only E = 0 can be fixed",
                             (int)w->id, (long long)r, (int)w->exp[r]);
    arb_free(w->exp);
    arb_free(w->exp_evidence);
    w->exp = w->exp_evidence = NULL;
    return arb_ternary_refresh(w);
}

size_t arb_ternary_buffer_bytes(const arb_ternary *w) {
    if (!w || w->rows <= 0) return 0;
    return (size_t)w->rows * sizeof(float);
}

arb_update_params arb_update_params_default(void) {
    /* Run `b` of the reference (../shared/reference/README.md): eta 6, T 64, k 5, eta_e 1, R 32.
     * eta keeps the reference's RMS meaning: the mean-|G| normalizer is scaled by sqrt(pi/2)
     * (see docs/TERNARY.md). */
    arb_update_params p;
    memset(&p, 0, sizeof p);
    p.eta = 6.0f;
    p.threshold = 64;
    p.leak_shift = 5;
    p.eta_exp = 1.0f;
    p.exp_threshold = 32;
    p.update_exp = true;
    p.seed = 0;
    p.step = 0;
    return p;
}

/* ---- activation quantization -------------------------------------------------------------- */

arb_status arb_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q, float *scale) {
    if (rows < 0 || cols < 0 || ld < cols)
        return arb_error(ARB_ERR_SHAPE, "arb_quantize_rows: rows %lld, cols %lld, ld %lld", (long long)rows,
                         (long long)cols, (long long)ld);
    if (rows > 0 && (!x || !q || !scale)) return arb_error(ARB_ERR_INVALID_ARG, "arb_quantize_rows: NULL buffer");
    const arb_tern_kernels *kern = arb_tern_kernels_get(); /* one row per call: the tiers agree to the bit */
#pragma omp parallel for schedule(static) if (rows * cols > ARB_OPS_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) kern->quantize_row(x + r * cols, cols, ld, q + r * ld, &scale[r]);
    for (int64_t r = 0; r < rows; r++) {
        if (scale[r] < 0.0f) {
            for (int64_t k = r; k < rows; k++)
                if (scale[k] < 0.0f) scale[k] = 0.0f;
            return arb_error(ARB_ERR_INVALID_ARG, "arb_quantize_rows: row %lld has a NaN or infinite value",
                             (long long)r);
        }
    }
    return ARB_OK;
}

/* ---- audit -------------------------------------------------------------------------------- */

void arb_audit_add_ternary(arb_audit *a, const arb_ternary *w) {
    if (!a || !w) return;
    a->ternary_weights += w->rows * w->cols;
    a->ternary_state_bytes += (double)arb_ternary_state_bytes(w);
    a->float_buffer_tensors += 1;
    a->float_buffer_bytes += (double)arb_ternary_buffer_bytes(w);
}

/* 42669632 → "42,669,632" */
static void format_thousands(int64_t v, char *out, size_t cap) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t o = 0;
    if (v < 0 && o + 1 < cap) out[o++] = '-';
    for (int i = 0; i < n && o + 1 < cap; i++) {
        out[o++] = digits[i];
        int left = n - 1 - i;
        if (left > 0 && left % 3 == 0 && o + 1 < cap) out[o++] = ',';
    }
    if (cap) out[o < cap ? o : cap - 1] = '\0';
}

const char *arb_audit_format(const arb_audit *a, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    const double mib = 1024.0 * 1024.0; /* the seed printed MiB and called it MB */
    char weights[40];
    format_thousands(a ? a->ternary_weights : 0, weights, sizeof weights);
    arb_audit z;
    memset(&z, 0, sizeof z);
    if (!a) a = &z;
    snprintf(buf, cap,
             "logical ternary weights: %s\n"
             "ternary training state: %.2f MB\n"
             "trainable float params: %lld tensors, %.2f MB\n"
             "frozen float params: %lld tensors, %.2f MB\n"
             "float buffers: %lld tensors, %.2f MB\n",
             weights, a->ternary_state_bytes / mib, (long long)a->trainable_float_tensors,
             a->trainable_float_bytes / mib, (long long)a->frozen_float_tensors, a->frozen_float_bytes / mib,
             (long long)a->float_buffer_tensors, a->float_buffer_bytes / mib);
    return buf;
}
