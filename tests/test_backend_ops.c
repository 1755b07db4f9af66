/* tests/test_backend_ops.c — one harness for every ternary op on every backend (in the spirit of
 * ggml's tests/test-backend-ops.cpp).
 *
 * Why one harness: the ops have three CPU tiers (scalar reference, AVX2, AVX-512/VNNI, chosen at
 * run time) and a CUDA backend; a kernel that drifts from the reference on one odd shape on one
 * backend must show up as one FAIL cell in one table, not hide in a per-file test.
 *
 * For every op × backend (CPU tiers this CPU has; CUDA when built with ARB_HAVE_CUDA and a device
 * is present) on fixed edge shapes and random odd shapes:
 *   - against the scalar reference: integer outputs and integer state (trits, T_accum, E,
 *     evidence, nnz, scale, grad_norm, stats) bit for bit. CPU tiers: float outputs bit for bit
 *     too (the tiers replicate the reference's float ops); CUDA: float outputs rel L2 ≤ 1e-6.
 *   - against an independent reference: int64 sums, the documented quantization rule in plain C,
 *     float64 products and forward passes (tolerances next to each check).
 *   - gradient mode: RMSNorm dx vs central finite differences of a float64 forward; linear dx vs
 *     the float64 product of the dequantized operands; the integer gradients the updates consume
 *     (linear, embedding, RMSNorm gain) vs float64 (scatter-add for the embedding).
 *   - 1 vs 3 threads bit-identical (an uneven split), on shapes large enough to take the threaded paths.
 * Prints the table op × backend → OK / FAIL / SKIP; exits non-zero on any FAIL.
 *
 *   test_backend_ops                 the checks (CTest)
 *   test_backend_ops --seed N        other random shapes
 *   test_backend_ops --perf [reps] [--op NAME]   time each op per backend on model-sized shapes
 *                                    (by hand; NAME as in the table) */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "ternary/ops_internal.h"
#ifdef ARB_HAVE_CUDA
#include "arbitor/cuda.h"
#endif

/* ---------------------------------------------------------------- the table */

enum { OP_QUANT, OP_MATMUL, OP_FWD, OP_BWDX, OP_UPD, OP_EMB_FWD, OP_EMB_UPD, OP_RMS_FWD, OP_RMS_UPD, NOPS };
static const char *k_opname[NOPS] = {"quantize_rows",     "matmul_i32",         "linear_forward",
                                     "linear_backward_x", "linear_bwd_update",  "embedding_forward",
                                     "embedding_bwd_update", "rmsnorm_forward", "rmsnorm_bwd_update"};
enum { BK_SCALAR, BK_AVX2, BK_AVX512, BK_CUDA, NBK };
static const char *k_bkname[NBK] = {"scalar", "avx2", "avx512", "cuda"};
enum { R_SKIP, R_OK, R_FAIL };

static int g_res[NOPS][NBK];
static char g_msg[NOPS][NBK][240];
static char g_skip[NBK][120];
static int g_op, g_bk;
static uint64_t g_seed = 1;

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...) {
    if (g_res[g_op][g_bk] != R_FAIL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_msg[g_op][g_bk], sizeof g_msg[0][0], fmt, ap);
        va_end(ap);
    }
    g_res[g_op][g_bk] = R_FAIL;
}

static bool okst(arb_status s, const char *expr) {
    if (s == ARB_OK) return true;
    failf("%s -> %s: %s", expr, arb_status_str(s), arb_last_error());
    return false;
}
#define OK(expr) okst((expr), #expr)

/* ---------------------------------------------------------------- scoped allocations
 * Every buffer and tensor of one check is released at the end of the check, also when a
 * failed check returns early (the sanitizer build checks for leaks). */

#define MAX_ALLOCS 512
static void *g_allocs[MAX_ALLOCS];
static int g_nalloc;
static arb_ternary g_tens[64];
static int g_ntens;

static void *talloc(size_t n) {
    if (g_nalloc == MAX_ALLOCS) {
        fprintf(stderr, "test_backend_ops: scope holds too many buffers\n");
        exit(1);
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_backend_ops: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return g_allocs[g_nalloc++] = p;
}
#define TALLOC(type, count) ((type *)talloc((size_t)(count) * sizeof(type)))

static arb_ternary *tens_new(void) {
    if (g_ntens == (int)(sizeof g_tens / sizeof g_tens[0])) {
        fprintf(stderr, "test_backend_ops: scope holds too many tensors\n");
        exit(1);
    }
    arb_ternary *w = &g_tens[g_ntens++];
    memset(w, 0, sizeof *w);
    return w;
}

#ifdef ARB_HAVE_CUDA
static void *g_dallocs[MAX_ALLOCS];
static int g_ndalloc;
#endif

static void scope_end(void) {
    for (int i = 0; i < g_nalloc; i++) free(g_allocs[i]);
    g_nalloc = 0;
    for (int i = 0; i < g_ntens; i++) arb_ternary_free(&g_tens[i]);
    g_ntens = 0;
#ifdef ARB_HAVE_CUDA
    for (int i = 0; i < g_ndalloc; i++) arb_cuda_free(g_dallocs[i]);
    g_ndalloc = 0;
#endif
}

/* ---------------------------------------------------------------- backends */

static const arb_cpu_tier k_tier_of[3] = {ARB_TIER_SCALAR, ARB_TIER_AVX2, ARB_TIER_AVX512};

/* Forces the CPU tier of backend b; false when this CPU lacks it. */
static bool cpu_use(int b) { return arb_cpu_tier_force(k_tier_of[b]) == k_tier_of[b]; }


/* ---------------------------------------------------------------- shapes and data */

typedef struct shape {
    int64_t rows, cols, n;
} shape;

#define NSHAPES 8
static shape g_shapes[NSHAPES];

static uint64_t g_lcg;
static int64_t rnd_range(int64_t lo, int64_t hi) { /* inclusive */
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (int64_t)((g_lcg >> 33) % (uint64_t)(hi - lo + 1));
}

/* Fixed edge shapes (1 × 1, a single partial tile, exact tiles) and random odd ones. */
static void make_shapes(uint64_t seed) {
    static const shape fixed[4] = {{1, 1, 1}, {1, 17, 3}, {33, 129, 5}, {48, 64, 16}};
    memcpy(g_shapes, fixed, sizeof fixed);
    g_lcg = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int i = 4; i < NSHAPES; i++) {
        g_shapes[i].rows = rnd_range(1, 90) * 2 + 1;
        g_shapes[i].cols = rnd_range(1, 130) * 2 + 1;
        g_shapes[i].n = rnd_range(1, 20) * 2 + 1;
    }
}

static uint64_t g_data_seed = 1000;
static uint64_t next_seed(void) { return g_seed * 1000003u + g_data_seed++; }

static float *rand_f32(int64_t count, float lo, float hi) {
    float *x = TALLOC(float, count);
    arb_test_fill_f32(x, (size_t)count, next_seed(), lo, hi);
    return x;
}

/* Rows with different magnitudes (the per-row / per-tensor scales see a spread). */
static float *rand_rows(int64_t n, int64_t d) {
    float *x = rand_f32(n * d, -1.0f, 1.0f);
    for (int64_t t = 0; t < n; t++) {
        float s = (float)pow(4.0, (double)(t % 5) - 2.0);
        for (int64_t i = 0; i < d; i++) x[t * d + i] *= s;
    }
    return x;
}

static int8_t *rand_xq(int64_t n, int64_t cols, int64_t ld) {
    int8_t *xq = TALLOC(int8_t, n * ld), *tmp = TALLOC(int8_t, n * cols);
    arb_test_fill_i8(tmp, (size_t)(n * cols), next_seed(), -127, 127);
    for (int64_t t = 0; t < n; t++) memcpy(xq + t * ld, tmp + t * cols, (size_t)cols);
    return xq;
}

/* A tensor with random trits and non-trivial state (leak, rails and the E rule all act). */
static arb_ternary *make_w(int64_t rows, int64_t cols, arb_ternary_kind kind, int32_t id) {
    arb_ternary *w = tens_new();
    if (!OK(arb_ternary_init(w, rows, cols, kind, id, arb_cpu()))) return NULL;
    uint64_t seed = next_seed();
    if (!OK(arb_ternary_randomize(w, seed))) return NULL;
    if (kind == ARB_TERNARY_GAIN) { /* a gain starts all +1: give it all three values */
        arb_rng_key k = arb_rng_key_make(seed, 77);
        for (int64_t c = 0; c < cols; c++) arb_ternary_set(w, 0, c, (int)(arb_rand_u32(k, (uint32_t)c) % 3u) - 1);
    }
    arb_test_fill_i8(w->accum, (size_t)(rows * cols), seed + 1, -127, 127);
    arb_test_fill_i8(w->exp, (size_t)rows, seed + 2, -6, 6);
    arb_test_fill_i8(w->exp_evidence, (size_t)rows, seed + 3, -20, 20);
    if (!OK(arb_ternary_refresh(w))) return NULL;
    return w;
}

static arb_ternary *clone_w(const arb_ternary *s) {
    arb_ternary *w = tens_new();
    if (!OK(arb_ternary_init(w, s->rows, s->cols, s->kind, s->id, arb_cpu()))) return NULL;
    memcpy(w->trits, s->trits, (size_t)(s->rows_pad * s->cols_pad / 4));
    memcpy(w->accum, s->accum, (size_t)(s->rows * s->cols));
    memcpy(w->exp, s->exp, (size_t)s->rows);
    memcpy(w->exp_evidence, s->exp_evidence, (size_t)s->rows);
    memcpy(w->scale, s->scale, (size_t)s->rows * sizeof(float));
    memcpy(w->nnz, s->nnz, (size_t)s->rows * sizeof(int32_t));
    return w;
}

/* Update steps that walk the fixed-point plan through its regimes: the default eta, a tiny
 * one (shift S > 32), a large one, and one that saturates the multipliers (S = 0). */
#define NSTEPS 4
static arb_update_params step_params(int s) {
    static const float etas[NSTEPS] = {6.0f, 1e-4f, 40.0f, 1e13f};
    arb_update_params p = arb_update_params_default();
    p.eta = etas[s % NSTEPS];
    p.seed = 91 + g_seed;
    p.step = (uint64_t)s * 7 + 3;
    p.update_exp = true;
    return p;
}

/* ---------------------------------------------------------------- comparisons */

static bool same_bytes(const void *a, const void *b, size_t n, const char *what) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) {
            failf("%s: byte %zu differs (%d vs ref %d)", what, i, x[i], y[i]);
            return false;
        }
    return true;
}

static bool same_i32(const int32_t *a, const int32_t *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            failf("%s: element %lld is %d, ref %d", what, (long long)i, a[i], b[i]);
            return false;
        }
    return true;
}

static bool same_f32(const float *a, const float *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            failf("%s: element %lld is %.9g, ref %.9g (not bit-identical)", what, (long long)i, (double)a[i],
                  (double)b[i]);
            return false;
        }
    return true;
}

static bool close_f64(const float *a, const double *ref, int64_t n, double tol, const char *what) {
    double e = arb_test_rel_l2_f64(a, ref, (size_t)n);
    if (!(e <= tol)) {
        failf("%s: rel L2 %.3g > %.1g", what, e, tol);
        return false;
    }
    return true;
}

__attribute__((unused)) static bool close_f32(const float *a, const float *ref, int64_t n, double tol, const char *what) {
    double e = arb_test_rel_l2(a, ref, (size_t)n);
    if (!(e <= tol)) {
        failf("%s: rel L2 %.3g > %.1g", what, e, tol);
        return false;
    }
    return true;
}

static bool same_state(const arb_ternary *a, const arb_ternary *r, const char *what) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s: trits", what);
    if (!same_bytes(a->trits, r->trits, (size_t)(r->rows_pad * r->cols_pad / 4), buf)) return false;
    snprintf(buf, sizeof buf, "%s: T_accum", what);
    if (!same_bytes(a->accum, r->accum, (size_t)(r->rows * r->cols), buf)) return false;
    snprintf(buf, sizeof buf, "%s: E", what);
    if (!same_bytes(a->exp, r->exp, (size_t)r->rows, buf)) return false;
    snprintf(buf, sizeof buf, "%s: E evidence", what);
    if (!same_bytes(a->exp_evidence, r->exp_evidence, (size_t)r->rows, buf)) return false;
    snprintf(buf, sizeof buf, "%s: nnz", what);
    if (!same_i32(a->nnz, r->nnz, r->rows, buf)) return false;
    snprintf(buf, sizeof buf, "%s: scale", what);
    return same_f32(a->scale, r->scale, r->rows, buf);
}

static bool same_update(const arb_update_state *sa, const arb_update_stats *ta, const arb_update_state *sr,
                        const arb_update_stats *tr, const char *what) {
    if (memcmp(&sa->grad_norm, &sr->grad_norm, sizeof(double))) {
        failf("%s: grad_norm %.17g, ref %.17g", what, sa->grad_norm, sr->grad_norm);
        return false;
    }
    if (ta->flips != tr->flips || ta->zeros != tr->zeros || ta->weights != tr->weights ||
        ta->exp_moves != tr->exp_moves) {
        failf("%s: stats (flips %lld zeros %lld E moves %d), ref (%lld %lld %d)", what, (long long)ta->flips,
              (long long)ta->zeros, ta->exp_moves, (long long)tr->flips, (long long)tr->zeros, tr->exp_moves);
        return false;
    }
    return true;
}

static void set_threads(int n) { arb_set_num_threads(n); }
static int g_threads_default;

/* ================================================================ CPU checks
 * Each check runs the op under the scalar tier (the reference) and under backend b, on every
 * shape, then the independent checks on b's output, then 1 vs 3 threads on a larger shape. */

/* ---- quantize_rows ---------------------------------------------------------------------------- */

/* x (rows, cols) with the edge rows the rule defines: all zero, denormal (127/amax overflows to
 * inf: zeros give NaN → 0), exact ties (amax 127: q = rint(x), halves to even). */
static float *quant_input(int64_t rows, int64_t cols) {
    float *x = rand_rows(rows, cols);
    if (rows >= 3) {
        for (int64_t c = 0; c < cols; c++) x[c] = 0.0f;
        for (int64_t c = 0; c < cols; c++) x[cols + c] = (c % 3 == 0) ? 0.0f : (c % 2 ? 1e-40f : -3e-41f);
        for (int64_t c = 0; c < cols; c++) x[2 * cols + c] = (float)((c * 37) % 254 - 127) + (c % 2 ? 0.5f : 0.0f);
        x[2 * cols] = 127.0f;
    }
    return x;
}

/* The rule in plain C with rintf: s = amax/127, q = clamp(rint(x · (127/amax))), NaN → 0, pad 0. */
static bool quant_spec(const float *x, int64_t rows, int64_t cols, int64_t ld, const int8_t *q, const float *s) {
    for (int64_t r = 0; r < rows; r++) {
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(x[r * cols + c]));
        float want_s = amax / 127.0f, inv = 127.0f / amax;
        if (memcmp(&want_s, &s[r], sizeof(float))) {
            failf("quantize_rows (%lld x %lld): row %lld scale %.9g, rule %.9g", (long long)rows, (long long)cols,
                  (long long)r, (double)s[r], (double)want_s);
            return false;
        }
        for (int64_t c = 0; c < ld; c++) {
            int want = 0;
            if (c < cols && amax > 0.0f) {
                float v = rintf(x[r * cols + c] * inv);
                want = v != v ? 0 : (int)fmaxf(-127.0f, fminf(127.0f, v));
            }
            if (q[r * ld + c] != want) {
                failf("quantize_rows (%lld x %lld): q[%lld, %lld] = %d, rule %d (x %.9g)", (long long)rows,
                      (long long)cols, (long long)r, (long long)c, q[r * ld + c], want,
                      c < cols ? (double)x[r * cols + c] : 0.0);
                return false;
            }
        }
    }
    return true;
}

static void check_quantize(int b) {
    for (int si = 0; si < NSHAPES; si++) {
        int64_t rows = g_shapes[si].n + 2, cols = g_shapes[si].cols;
        int64_t ld = (si & 1) ? cols + 5 : arb_round_up16(cols);
        float *x = quant_input(rows, cols);
        int8_t *q0 = TALLOC(int8_t, rows * ld), *q1 = TALLOC(int8_t, rows * ld);
        float *s0 = TALLOC(float, rows), *s1 = TALLOC(float, rows);
        memset(q1, 0x7F, (size_t)(rows * ld)); /* padding must be written */
        cpu_use(BK_SCALAR);
        if (!OK(arb_quantize_rows(x, rows, cols, ld, q0, s0))) return;
        cpu_use(b);
        if (!OK(arb_quantize_rows(x, rows, cols, ld, q1, s1))) return;
        if (!same_bytes(q1, q0, (size_t)(rows * ld), "quantize_rows q vs scalar")) return;
        if (!same_f32(s1, s0, rows, "quantize_rows scale vs scalar")) return;
        if (!quant_spec(x, rows, cols, ld, q1, s1)) return;
        x[(rows / 2) * cols + cols / 2] = NAN; /* a NaN is an error on every backend */
        if (arb_quantize_rows(x, rows, cols, ld, q1, s1) != ARB_ERR_INVALID_ARG) {
            failf("quantize_rows: a NaN input was not rejected");
            return;
        }
    }
    /* no columns: every row is all zero (scale 0, q 0 up to ld) */
    {
        int8_t q[48];
        float sc[3] = {1, 1, 1}, dummy = 0.0f;
        memset(q, 0x7F, sizeof q);
        if (!OK(arb_quantize_rows(&dummy, 3, 0, 16, q, sc))) return;
        for (int i = 0; i < 48; i++)
            if (q[i] != 0 || (i < 3 && sc[i] != 0.0f)) {
                failf("quantize_rows with 0 columns: q[%d] = %d", i, q[i]);
                return;
            }
    }
    /* threads: rows · cols > 2^18 (ARB_OPS_PAR_MIN) takes the parallel path */
    int64_t rows = 263, cols = 1003, ld = arb_round_up16(cols);
    float *x = quant_input(rows, cols);
    int8_t *q1 = TALLOC(int8_t, rows * ld), *q2 = TALLOC(int8_t, rows * ld);
    float *s1 = TALLOC(float, rows), *s2 = TALLOC(float, rows);
    set_threads(1);
    bool ok = OK(arb_quantize_rows(x, rows, cols, ld, q1, s1));
    set_threads(3);
    ok = ok && OK(arb_quantize_rows(x, rows, cols, ld, q2, s2));
    set_threads(g_threads_default);
    if (ok && same_bytes(q2, q1, (size_t)(rows * ld), "quantize_rows 3 vs 1 threads"))
        same_f32(s2, s1, rows, "quantize_rows scale 3 vs 1 threads");
}

/* ---- linear ------------------------------------------------------------------------------------ */

/* acc[t, o] = Σ_c trit(o, c) · xq[t, c] in int64, read element by element. */
static int64_t *matmul_ref64(const arb_ternary *w, const int8_t *xq, int64_t n) {
    int64_t *acc = TALLOC(int64_t, n * w->rows);
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < w->rows; o++) {
            int64_t s = 0;
            for (int64_t c = 0; c < w->cols; c++) s += (int64_t)arb_ternary_get(w, o, c) * xq[t * w->cols_pad + c];
            acc[t * w->rows + o] = s;
        }
    return acc;
}

static void check_matmul(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){203, 301, 41}; /* last: threaded */
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 3);
        if (!w) return;
        int8_t *xq = rand_xq(sh.n, sh.cols, w->cols_pad);
        int64_t *ref = matmul_ref64(w, xq, sh.n);
        int32_t *acc = TALLOC(int32_t, sh.n * sh.rows), *acc1 = TALLOC(int32_t, sh.n * sh.rows);
        cpu_use(b);
        set_threads(si == NSHAPES ? 2 : g_threads_default);
        bool ok = OK(arb_ternary_matmul_i32(w, xq, sh.n, acc));
        set_threads(1);
        ok = ok && OK(arb_ternary_matmul_i32(w, xq, sh.n, acc1));
        set_threads(g_threads_default);
        if (!ok) return;
        for (int64_t i = 0; i < sh.n * sh.rows; i++)
            if (acc[i] != ref[i]) {
                failf("matmul_i32 (%lld x %lld, n %lld): element %lld is %d, int64 ref %lld", (long long)sh.rows,
                      (long long)sh.cols, (long long)sh.n, (long long)i, acc[i], (long long)ref[i]);
                return;
            }
        if (!same_i32(acc1, acc, sh.n * sh.rows, "matmul_i32 1 vs n threads")) return;
    }
}

static void check_forward(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){203, 301, 41};
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 4);
        if (!w) return;
        int8_t *xq = rand_xq(sh.n, sh.cols, w->cols_pad);
        float *xs = rand_f32(sh.n, 0.001f, 0.05f);
        float *y0 = TALLOC(float, sh.n * sh.rows), *y1 = TALLOC(float, sh.n * sh.rows),
              *y2 = TALLOC(float, sh.n * sh.rows);
        cpu_use(BK_SCALAR);
        if (!OK(arb_ternary_linear_forward(w, xq, xs, sh.n, y0))) return;
        cpu_use(b);
        set_threads(1);
        bool ok = OK(arb_ternary_linear_forward(w, xq, xs, sh.n, y1));
        set_threads(3);
        ok = ok && OK(arb_ternary_linear_forward(w, xq, xs, sh.n, y2));
        set_threads(g_threads_default);
        if (!ok) return;
        if (!same_f32(y1, y0, sh.n * sh.rows, "linear_forward vs scalar")) return;
        if (!same_f32(y2, y1, sh.n * sh.rows, "linear_forward 3 vs 1 threads")) return;
        /* float64 product of the dequantized operands: (xq · xs) · (trit · scale) */
        int64_t *acc = matmul_ref64(w, xq, sh.n);
        double *yr = TALLOC(double, sh.n * sh.rows);
        for (int64_t t = 0; t < sh.n; t++)
            for (int64_t o = 0; o < sh.rows; o++)
                yr[t * sh.rows + o] = (double)acc[t * sh.rows + o] * (double)xs[t] * (double)w->scale[o];
        if (!close_f64(y1, yr, sh.n * sh.rows, 1e-6, "linear_forward vs f64")) return;
    }
}

/* The documented dy quantization of backward_x, in plain C: h = dy·scale per token row,
 * hq = clamp(floor(h·127/amax_t + u)), hs = amax_t/127. dxq = f64 of (hq·hs)·trit, dxe = f64 of dy·scale·trit. */
static void bwdx_refs(const arb_ternary *w, const float *dy, int64_t n, arb_rng_key key, double *dxq, double *dxe) {
    int64_t rows = w->rows, cols = w->cols;
    int8_t *q = TALLOC(int8_t, rows);
    for (int64_t t = 0; t < n; t++) {
        float amax = 0.0f;
        for (int64_t o = 0; o < rows; o++) amax = fmaxf(amax, fabsf(dy[t * rows + o] * w->scale[o]));
        float inv = 127.0f / amax, hs = amax / 127.0f;
        for (int64_t o = 0; o < rows; o++) {
            float h = dy[t * rows + o] * w->scale[o];
            float prod = h * inv;
            float f = floorf(prod + arb_rand_unit(key, (uint32_t)(t * rows + o)));
            q[o] = amax > 0.0f ? (int8_t)fmaxf(-127.0f, fminf(127.0f, f)) : 0;
        }
        for (int64_t c = 0; c < cols; c++) {
            int64_t s = 0;
            double e = 0.0;
            for (int64_t o = 0; o < rows; o++) {
                int tr = arb_ternary_get(w, o, c);
                s += (int64_t)q[o] * tr;
                e += (double)dy[t * rows + o] * (double)w->scale[o] * tr;
            }
            dxq[t * cols + c] = (double)s * (double)hs;
            dxe[t * cols + c] = e;
        }
    }
}

static void check_backward_x(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){203, 301, 41};
        if (sh.rows < 4) sh.rows += 4; /* the f64 check needs a few outputs per token */
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 5);
        if (!w) return;
        float *dy = rand_rows(sh.n, sh.rows);
        arb_rng_key key = arb_update_key(g_seed, 11, w->id, ARB_RNG_DX);
        int64_t nx = sh.n * sh.cols;
        float *d0 = TALLOC(float, nx), *d1 = TALLOC(float, nx), *d2 = TALLOC(float, nx);
        cpu_use(BK_SCALAR);
        if (!OK(arb_ternary_linear_backward_x(w, dy, sh.n, key, d0))) return;
        cpu_use(b);
        set_threads(1);
        bool ok = OK(arb_ternary_linear_backward_x(w, dy, sh.n, key, d1));
        set_threads(3);
        ok = ok && OK(arb_ternary_linear_backward_x(w, dy, sh.n, key, d2));
        set_threads(g_threads_default);
        if (!ok) return;
        if (!same_f32(d1, d0, nx, "linear_backward_x vs scalar")) return;
        if (!same_f32(d2, d1, nx, "linear_backward_x 3 vs 1 threads")) return;
        double *dxq = TALLOC(double, nx), *dxe = TALLOC(double, nx);
        bwdx_refs(w, dy, sh.n, key, dxq, dxe);
        if (!close_f64(d1, dxq, nx, 1e-6, "linear_backward_x vs f64 of dequantized operands")) return;
        /* the int8 rounding noise averages out only over enough outputs per input */
        if (sh.rows >= 32 && !close_f64(d1, dxe, nx, 0.05, "linear_backward_x vs f64 unquantized")) return;
        dy[sh.n * sh.rows / 2] = INFINITY;
        if (arb_ternary_linear_backward_x(w, dy, sh.n, key, d1) != ARB_ERR_INVALID_ARG) {
            failf("linear_backward_x: an infinite dy was not rejected");
            return;
        }
    }
}

/* G64[o, i] = Σ_t (dy·scale)[t, o] · xs[t] · xq[t, i]: d loss / d trit. */
static double *linear_grad64(const arb_ternary *w, const int8_t *xq, const float *xs, const float *dy, int64_t n) {
    double *g = TALLOC(double, w->rows * w->cols);
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < w->rows; o++) {
            double h = (double)dy[t * w->rows + o] * (double)w->scale[o] * (double)xs[t];
            for (int64_t i = 0; i < w->cols; i++) g[o * w->cols + i] += h * xq[t * w->cols_pad + i];
        }
    return g;
}

/* c[o]·g[o, i] as float (the real-unit gradient an update consumes). */
static float *grad_real(const int32_t *g, const float *c, int64_t rows, int64_t cols) {
    float *r = TALLOC(float, rows * cols);
    for (int64_t o = 0; o < rows; o++)
        for (int64_t i = 0; i < cols; i++) r[o * cols + i] = (float)((double)c[o] * (double)g[o * cols + i]);
    return r;
}

static void check_backward_update(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){203, 301, 41};
        arb_ternary *w0 = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 6);
        arb_ternary *w1 = w0 ? clone_w(w0) : NULL, *w2 = w1 ? clone_w(w0) : NULL;
        if (!w2) return;
        arb_update_state st0 = {0}, st1 = {0}, st2 = {0};
        for (int s = 0; s < (si < NSHAPES ? NSTEPS : 2); s++) { /* the big shape: 2 steps */
            arb_update_params p = step_params(s);
            int8_t *xq = rand_xq(sh.n, sh.cols, w0->cols_pad);
            float *xs = rand_f32(sh.n, 0.001f, 0.05f), *dy = rand_rows(sh.n, sh.rows);
            arb_update_stats a0 = {0}, a1 = {0}, a2 = {0};
            if (!OK(arb_ternary_linear_backward_update_ref(w0, xq, xs, dy, sh.n, &p, &st0, &a0))) return;
            cpu_use(b);
            set_threads(1);
            bool ok = OK(arb_ternary_linear_backward_update(w1, xq, xs, dy, sh.n, &p, &st1, &a1));
            set_threads(3);
            ok = ok && OK(arb_ternary_linear_backward_update(w2, xq, xs, dy, sh.n, &p, &st2, &a2));
            set_threads(g_threads_default);
            if (!ok) return;
            char what[80];
            snprintf(what, sizeof what, "linear update (%lldx%lld n %lld) step %d vs _ref", (long long)sh.rows,
                     (long long)sh.cols, (long long)sh.n, s);
            if (!same_state(w1, w0, what) || !same_update(&st1, &a1, &st0, &a0, what)) return;
            snprintf(what, sizeof what, "linear update step %d 3 vs 1 threads", s);
            if (!same_state(w2, w1, what) || !same_update(&st2, &a2, &st1, &a1, what)) return;
        }
    }
    /* gradient mode: the integer gradient the update consumes vs float64 */
    shape sh = {37, 83, 29};
    arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 7);
    if (!w) return;
    int8_t *xq = rand_xq(sh.n, sh.cols, w->cols_pad);
    float *xs = rand_f32(sh.n, 0.001f, 0.05f), *dy = rand_f32(sh.n * sh.rows, -1.0f, 1.0f), *c = TALLOC(float, sh.rows);
    int32_t *g = TALLOC(int32_t, sh.rows * sh.cols);
    cpu_use(b);
    if (!OK(arb_upd_linear_grad(w, xq, xs, dy, sh.n, arb_update_key(5, 1, w->id, ARB_RNG_GRAD), g, c))) return;
    close_f64(grad_real(g, c, sh.rows, sh.cols), linear_grad64(w, xq, xs, dy, sh.n), sh.rows * sh.cols, 0.05,
              "linear weight gradient vs f64");
}

/* ---- embedding ------------------------------------------------------------------------------- */

static int32_t *rand_idx(int64_t n, int64_t rows) {
    int32_t *idx = TALLOC(int32_t, n);
    arb_rng_key k = arb_rng_key_make(next_seed(), 5);
    for (int64_t t = 0; t < n; t++) idx[t] = (int32_t)(arb_rand_u32(k, (uint32_t)t) % (uint32_t)rows);
    return idx;
}

static void check_embedding_forward(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){301, 417, 631}; /* n · cols > 2^18: threaded */
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_EMBED, 8);
        if (!w) return;
        int32_t *idx = rand_idx(sh.n, sh.rows);
        int64_t no = sh.n * sh.cols;
        float *o0 = TALLOC(float, no), *o1 = TALLOC(float, no), *o2 = TALLOC(float, no);
        cpu_use(BK_SCALAR);
        if (!OK(arb_ternary_embedding_forward(w, idx, sh.n, o0))) return;
        cpu_use(b);
        set_threads(1);
        bool ok = OK(arb_ternary_embedding_forward(w, idx, sh.n, o1));
        set_threads(3);
        ok = ok && OK(arb_ternary_embedding_forward(w, idx, sh.n, o2));
        set_threads(g_threads_default);
        if (!ok) return;
        if (!same_f32(o1, o0, no, "embedding_forward vs scalar")) return;
        if (!same_f32(o2, o1, no, "embedding_forward 3 vs 1 threads")) return;
        for (int64_t t = 0; t < sh.n; t++)
            for (int64_t c = 0; c < sh.cols; c++) {
                float want = (float)arb_ternary_get(w, idx[t], c) * w->scale[idx[t]];
                if (memcmp(&want, &o1[t * sh.cols + c], sizeof want)) {
                    failf("embedding_forward: out[%lld, %lld] = %g, trit·scale %g", (long long)t, (long long)c,
                          (double)o1[t * sh.cols + c], (double)want);
                    return;
                }
            }
        idx[sh.n - 1] = (int32_t)sh.rows;
        if (arb_ternary_embedding_forward(w, idx, sh.n, o1) != ARB_ERR_INVALID_ARG) {
            failf("embedding_forward: index %lld (= rows) was not rejected", (long long)sh.rows);
            return;
        }
    }
}

/* The embedding update composed from ternary-core's pieces with the scalar row rule
 * (an independent wiring of the same rule, for the scalar column). */
static bool emb_update_composed(arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                const arb_update_params *p, arb_update_state *st, arb_update_stats *stats) {
    int64_t rows = w->rows, cols = w->cols;
    int32_t *g = TALLOC(int32_t, rows * cols), *mult = TALLOC(int32_t, rows);
    float *c = TALLOC(float, rows);
    arb_upd_row_acc *acc = TALLOC(arb_upd_row_acc, rows);
    if (!OK(arb_upd_embedding_grad(w, idx, dy, n, arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD), g, c)))
        return false;
    double norm = st->grad_norm;
    if (!(norm > 0.0)) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < cols; i++) acc[r].abs_g += llabs((long long)g[r * cols + i]);
        norm = arb_upd_norm(c, acc, rows, cols);
        memset(acc, 0, (size_t)rows * sizeof *acc);
    }
    arb_upd_plan pl = {mult, 0, arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE), p->threshold, p->leak_shift};
    arb_upd_plan_make(c, rows, (double)p->eta, norm, mult, &pl.shift);
    for (int64_t r = 0; r < rows; r++) arb_upd_row_ref(w, r, 0, cols, g + r * cols, &pl, &acc[r]);
    return OK(arb_upd_finish(w, c, acc, p, st, stats));
}

static void check_embedding_update(int b) {
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){301, 417, 631};
        arb_ternary *w0 = make_w(sh.rows, sh.cols, ARB_TERNARY_EMBED, 9);
        arb_ternary *w1 = w0 ? clone_w(w0) : NULL, *w2 = w1 ? clone_w(w0) : NULL, *w3 = w2 ? clone_w(w0) : NULL;
        if (!w3) return;
        arb_update_state st0 = {0}, st1 = {0}, st2 = {0}, st3 = {0};
        for (int s = 0; s < (si < NSHAPES ? NSTEPS : 2); s++) { /* the big shape: 2 steps */
            arb_update_params p = step_params(s);
            int32_t *idx = rand_idx(sh.n, sh.rows);
            float *dy = rand_rows(sh.n, sh.cols);
            arb_update_stats a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            cpu_use(BK_SCALAR);
            if (!OK(arb_ternary_embedding_backward_update(w0, idx, dy, sh.n, &p, &st0, &a0))) return;
            if (b == BK_SCALAR && !emb_update_composed(w3, idx, dy, sh.n, &p, &st3, &a3)) return;
            cpu_use(b);
            set_threads(1);
            bool ok = OK(arb_ternary_embedding_backward_update(w1, idx, dy, sh.n, &p, &st1, &a1));
            set_threads(3);
            ok = ok && OK(arb_ternary_embedding_backward_update(w2, idx, dy, sh.n, &p, &st2, &a2));
            set_threads(g_threads_default);
            if (!ok) return;
            char what[96];
            snprintf(what, sizeof what, "embedding update (%lldx%lld n %lld) step %d vs scalar", (long long)sh.rows,
                     (long long)sh.cols, (long long)sh.n, s);
            if (!same_state(w1, w0, what) || !same_update(&st1, &a1, &st0, &a0, what)) return;
            snprintf(what, sizeof what, "embedding update step %d 3 vs 1 threads", s);
            if (!same_state(w2, w1, what) || !same_update(&st2, &a2, &st1, &a1, what)) return;
            if (b == BK_SCALAR) {
                snprintf(what, sizeof what, "embedding update step %d vs the composed reference", s);
                if (!same_state(w1, w3, what) || !same_update(&st1, &a1, &st3, &a3, what)) return;
            }
        }
        /* a non-finite gradient is an error that leaves the state untouched */
        arb_update_params p = step_params(0);
        int32_t *idx = rand_idx(sh.n, sh.rows);
        float *dy = rand_rows(sh.n, sh.cols);
        dy[sh.n * sh.cols - 1] = NAN;
        if (arb_ternary_embedding_backward_update(w1, idx, dy, sh.n, &p, &st1, NULL) != ARB_ERR_INVALID_ARG) {
            failf("embedding update: a NaN gradient was not rejected");
            return;
        }
        if (!same_state(w1, w0, "embedding update after a rejected NaN gradient")) return;
    }
    /* gradient mode: c·g vs the float64 scatter-add Σ_{t: idx[t] = v} dy[t, :] · scale[v] */
    shape sh = {53, 71, 97};
    arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_EMBED, 10);
    if (!w) return;
    int32_t *idx = rand_idx(sh.n, sh.rows), *g = TALLOC(int32_t, sh.rows * sh.cols), *g0 = TALLOC(int32_t, sh.rows * sh.cols);
    float *dy = rand_f32(sh.n * sh.cols, -1.0f, 1.0f), *c = TALLOC(float, sh.rows), *c0 = TALLOC(float, sh.rows);
    arb_rng_key key = arb_update_key(5, 2, w->id, ARB_RNG_GRAD);
    cpu_use(BK_SCALAR);
    if (!OK(arb_upd_embedding_grad(w, idx, dy, sh.n, key, g0, c0))) return;
    cpu_use(b);
    if (!OK(arb_upd_embedding_grad(w, idx, dy, sh.n, key, g, c))) return;
    if (!same_i32(g, g0, sh.rows * sh.cols, "embedding integer gradient vs scalar")) return;
    double *ref = TALLOC(double, sh.rows * sh.cols);
    for (int64_t t = 0; t < sh.n; t++)
        for (int64_t i = 0; i < sh.cols; i++)
            ref[idx[t] * sh.cols + i] += (double)dy[t * sh.cols + i] * (double)w->scale[idx[t]];
    close_f64(grad_real(g, c, sh.rows, sh.cols), ref, sh.rows * sh.cols, 0.05, "embedding gradient vs f64 scatter-add");
}

/* ---- RMSNorm ----------------------------------------------------------------------------------- */

static double *gain64(const arb_ternary *g) {
    double *v = TALLOC(double, g->cols);
    for (int64_t i = 0; i < g->cols; i++) v[i] = (double)((float)arb_ternary_get(g, 0, i) * g->scale[0]);
    return v;
}

static void check_rmsnorm_forward(int b) {
    const float eps = 1e-6f;
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){1, 417, 631}; /* n · d > 2^18: threaded */
        int64_t d = sh.cols, n = sh.n, nd = n * d;
        arb_ternary *gain = make_w(1, d, ARB_TERNARY_GAIN, 11);
        if (!gain) return;
        float *x = rand_rows(n, d);
        float *y0 = TALLOC(float, nd), *y1 = TALLOC(float, nd), *y2 = TALLOC(float, nd);
        float *r0 = TALLOC(float, n), *r1 = TALLOC(float, n), *r2 = TALLOC(float, n);
        cpu_use(BK_SCALAR);
        if (!OK(arb_ternary_rmsnorm_forward(gain, x, n, eps, y0, r0))) return;
        cpu_use(b);
        set_threads(1);
        bool ok = OK(arb_ternary_rmsnorm_forward(gain, x, n, eps, y1, r1));
        set_threads(3);
        ok = ok && OK(arb_ternary_rmsnorm_forward(gain, x, n, eps, y2, r2));
        set_threads(g_threads_default);
        if (!ok) return;
        if (!same_f32(y1, y0, nd, "rmsnorm y vs scalar") || !same_f32(r1, r0, n, "rmsnorm rstd vs scalar")) return;
        if (!same_f32(y2, y1, nd, "rmsnorm y 3 vs 1 threads") || !same_f32(r2, r1, n, "rmsnorm rstd 3 vs 1 threads"))
            return;
        double *g = gain64(gain), *yr = TALLOC(double, nd), *rr = TALLOC(double, n);
        for (int64_t t = 0; t < n; t++) {
            double ss = 0.0;
            for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * (double)x[t * d + i];
            rr[t] = 1.0 / sqrt(ss / (double)d + (double)eps);
            for (int64_t i = 0; i < d; i++) yr[t * d + i] = (double)x[t * d + i] * rr[t] * g[i];
        }
        if (!close_f64(r1, rr, n, 1e-6, "rmsnorm rstd vs f64") || !close_f64(y1, yr, nd, 1e-6, "rmsnorm y vs f64"))
            return;
    }
}

/* L(x_t) = Σ_i dy_i · y_i(x_t), y = x / sqrt(mean(x²) + eps) · g, all in float64. */
static double rms_loss64(const double *x, const double *g, const float *dy, int64_t d, double eps) {
    double ss = 0.0, l = 0.0;
    for (int64_t i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)d + eps);
    for (int64_t i = 0; i < d; i++) l += (double)dy[i] * x[i] * r * g[i];
    return l;
}

/* dx of rows [0, rows) vs central differences of rms_loss64: rel L2 per row ≤ 1e-4. */
static bool rms_dx_fd(const arb_ternary *gain, const float *x, const float *dy, const float *dx, int64_t rows,
                      int64_t d, float eps) {
    double *g = gain64(gain), *xt = TALLOC(double, d), *fd = TALLOC(double, d);
    for (int64_t t = 0; t < rows; t++) {
        for (int64_t i = 0; i < d; i++) xt[i] = (double)x[t * d + i];
        for (int64_t i = 0; i < d; i++) {
            double h = 1e-6 * fmax(1.0, fabs(xt[i])), keep = xt[i];
            xt[i] = keep + h;
            double lp = rms_loss64(xt, g, dy + t * d, d, (double)eps);
            xt[i] = keep - h;
            double lm = rms_loss64(xt, g, dy + t * d, d, (double)eps);
            xt[i] = keep;
            fd[i] = (lp - lm) / (2.0 * h);
        }
        char what[64];
        snprintf(what, sizeof what, "rmsnorm dx row %lld vs f64 finite differences", (long long)t);
        if (!close_f64(dx + t * d, fd, d, 1e-4, what)) return false;
    }
    return true;
}

/* The gain update composed from ternary-core's pieces (scalar column). */
static bool rms_update_composed(arb_ternary *gain, const float *x, const float *rstd, const float *dy, int64_t n,
                                const arb_update_params *p, arb_update_state *st, arb_update_stats *stats) {
    int64_t d = gain->cols;
    int32_t *g = TALLOC(int32_t, d), mult = 0;
    float c = 0.0f;
    if (!OK(arb_upd_rmsnorm_grad(gain, x, rstd, dy, n, arb_update_key(p->seed, p->step, gain->id, ARB_RNG_GRAD), g,
                                 &c)))
        return false;
    arb_upd_row_acc acc = {0, 0, 0};
    double norm = st->grad_norm;
    if (!(norm > 0.0)) {
        for (int64_t i = 0; i < d; i++) acc.abs_g += llabs((long long)g[i]);
        norm = arb_upd_norm(&c, &acc, 1, d);
        acc.abs_g = 0;
    }
    arb_upd_plan pl = {&mult, 0, arb_update_key(p->seed, p->step, gain->id, ARB_RNG_PRESSURE), p->threshold,
                       p->leak_shift};
    arb_upd_plan_make(&c, 1, (double)p->eta, norm, &mult, &pl.shift);
    arb_upd_row_ref(gain, 0, 0, d, g, &pl, &acc);
    return OK(arb_upd_finish(gain, &c, &acc, p, st, stats));
}

static void check_rmsnorm_update(int b) {
    const float eps = 1e-6f;
    for (int si = 0; si < NSHAPES + 1; si++) {
        shape sh = si < NSHAPES ? g_shapes[si] : (shape){1, 417, 631};
        int64_t d = sh.cols, n = sh.n, nd = n * d;
        arb_ternary *w0 = make_w(1, d, ARB_TERNARY_GAIN, 12);
        arb_ternary *w1 = w0 ? clone_w(w0) : NULL, *w2 = w1 ? clone_w(w0) : NULL, *w3 = w2 ? clone_w(w0) : NULL;
        if (!w3) return;
        arb_update_state st0 = {0}, st1 = {0}, st2 = {0}, st3 = {0};
        float *dx0 = TALLOC(float, nd), *dx1 = TALLOC(float, nd), *dx2 = TALLOC(float, nd);
        float *y = TALLOC(float, nd), *rstd = TALLOC(float, n);
        for (int s = 0; s < (si < NSHAPES ? NSTEPS : 2); s++) { /* the big shape: 2 steps */
            arb_update_params p = step_params(s);
            float *x = rand_rows(n, d), *dy = rand_f32(nd, -1.0f, 1.0f);
            arb_update_stats a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            cpu_use(BK_SCALAR);
            if (!OK(arb_ternary_rmsnorm_forward(w0, x, n, eps, y, rstd))) return;
            /* dx alone (frozen gain) first: the gain must not move */
            if (!OK(arb_ternary_rmsnorm_backward_update(w0, x, rstd, dy, n, dx0, NULL, NULL, NULL))) return;
            cpu_use(b);
            if (!OK(arb_ternary_rmsnorm_backward_update(w1, x, rstd, dy, n, dx1, NULL, NULL, NULL))) return;
            if (!same_f32(dx1, dx0, nd, "rmsnorm dx (frozen gain) vs scalar") ||
                !same_state(w1, w0, "rmsnorm frozen gain"))
                return;
            /* d ≥ 16: at tiny d, dx = r·dy·g·(1 − x̂²) is mostly cancellation of the float rstd */
            if (s == 0 && d >= 16 && !rms_dx_fd(w1, x, dy, dx1, n < 3 ? n : 3, d, eps)) return;
            cpu_use(BK_SCALAR);
            if (!OK(arb_ternary_rmsnorm_backward_update(w0, x, rstd, dy, n, dx0, &p, &st0, &a0))) return;
            if (b == BK_SCALAR && !rms_update_composed(w3, x, rstd, dy, n, &p, &st3, &a3)) return;
            cpu_use(b);
            set_threads(1);
            bool ok = OK(arb_ternary_rmsnorm_backward_update(w1, x, rstd, dy, n, dx1, &p, &st1, &a1));
            set_threads(3);
            ok = ok && OK(arb_ternary_rmsnorm_backward_update(w2, x, rstd, dy, n, dx2, &p, &st2, &a2));
            set_threads(g_threads_default);
            if (!ok) return;
            char what[96];
            snprintf(what, sizeof what, "rmsnorm update (d %lld n %lld) step %d vs scalar", (long long)d, (long long)n, s);
            if (!same_f32(dx1, dx0, nd, what) || !same_state(w1, w0, what) || !same_update(&st1, &a1, &st0, &a0, what))
                return;
            snprintf(what, sizeof what, "rmsnorm update step %d 3 vs 1 threads", s);
            if (!same_f32(dx2, dx1, nd, what) || !same_state(w2, w1, what) || !same_update(&st2, &a2, &st1, &a1, what))
                return;
            if (b == BK_SCALAR) {
                snprintf(what, sizeof what, "rmsnorm update step %d vs the composed reference", s);
                if (!same_state(w1, w3, what) || !same_update(&st1, &a1, &st3, &a3, what)) return;
            }
        }
        /* a non-finite gradient is an error that leaves the gain untouched */
        arb_update_params p = step_params(0);
        float *x = rand_rows(n, d), *dy = rand_f32(nd, -1.0f, 1.0f);
        dy[nd / 2] = INFINITY;
        if (arb_ternary_rmsnorm_backward_update(w1, x, rstd, dy, n, dx1, &p, &st1, NULL) != ARB_ERR_INVALID_ARG) {
            failf("rmsnorm update: an infinite gradient was not rejected");
            return;
        }
        if (!same_state(w1, w0, "rmsnorm update after a rejected gradient")) return;
    }
    /* gradient mode: the gain's integer gradient c·g vs float64 Σ_t dy · x · rstd · scale */
    int64_t d = 97, n = 64;
    arb_ternary *gain = make_w(1, d, ARB_TERNARY_GAIN, 13);
    if (!gain) return;
    float *x = rand_rows(n, d), *dy = rand_f32(n * d, -1.0f, 1.0f), *y = TALLOC(float, n * d), *rstd = TALLOC(float, n);
    int32_t *g = TALLOC(int32_t, d), *g0 = TALLOC(int32_t, d);
    float c = 0.0f, c0 = 0.0f;
    arb_rng_key key = arb_update_key(5, 3, gain->id, ARB_RNG_GRAD);
    cpu_use(BK_SCALAR);
    if (!OK(arb_ternary_rmsnorm_forward(gain, x, n, eps, y, rstd))) return;
    if (!OK(arb_upd_rmsnorm_grad(gain, x, rstd, dy, n, key, g0, &c0))) return;
    cpu_use(b);
    if (!OK(arb_upd_rmsnorm_grad(gain, x, rstd, dy, n, key, g, &c))) return;
    if (!same_i32(g, g0, d, "rmsnorm gain integer gradient vs scalar")) return;
    double *ref = TALLOC(double, d);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < d; i++)
            ref[i] += (double)dy[t * d + i] * (double)x[t * d + i] * (double)rstd[t] * (double)gain->scale[0];
    close_f64(grad_real(g, &c, 1, d), ref, d, 0.05, "rmsnorm gain gradient vs f64");
}

/* ================================================================ CUDA checks
 * Same inputs through include/arbitor/cuda.h, compared with the CPU scalar reference:
 * integer outputs and state bit for bit, float outputs rel L2 ≤ 1e-6 (docs/CUDA.md). */

#ifdef ARB_HAVE_CUDA
static void *dev_alloc(size_t n) {
    void *p = NULL;
    if (!OK(arb_cuda_malloc(&p, n ? n : 1))) return NULL;
    if (g_ndalloc == MAX_ALLOCS) {
        arb_cuda_free(p);
        failf("too many device buffers");
        return NULL;
    }
    return g_dallocs[g_ndalloc++] = p;
}
static void *dev_from(const void *h, size_t n) {
    void *p = dev_alloc(n);
    if (p && !OK(arb_cuda_copy_h2d(p, h, n))) return NULL;
    return p;
}
static bool to_host(void *h, const void *d, size_t n) { return OK(arb_cuda_copy_d2h(h, d, n)); }

static arb_ternary *dev_w(const arb_ternary *h) {
    arb_ternary *d = tens_new();
    return OK(arb_cuda_ternary_upload(d, h, 0)) ? d : NULL;
}

/* The device tensor's state, downloaded and compared with the host reference. */
static bool dev_same_state(const arb_ternary *d, const arb_ternary *ref, const char *what) {
    arb_ternary *h = tens_new();
    if (!OK(arb_ternary_init(h, ref->rows, ref->cols, ref->kind, ref->id, arb_cpu()))) return false;
    if (!OK(arb_cuda_ternary_download(h, d))) return false;
    return same_state(h, ref, what);
}

static void cuda_quantize(void) {
    for (int si = 0; si < NSHAPES; si++) {
        int64_t rows = g_shapes[si].n + 2, cols = g_shapes[si].cols, ld = arb_round_up16(cols);
        float *x = quant_input(rows, cols), *s0 = TALLOC(float, rows), *s1 = TALLOC(float, rows);
        int8_t *q0 = TALLOC(int8_t, rows * ld), *q1 = TALLOC(int8_t, rows * ld);
        cpu_use(BK_SCALAR);
        if (!OK(arb_quantize_rows(x, rows, cols, ld, q0, s0))) return;
        float *dx = dev_from(x, (size_t)(rows * cols) * sizeof(float)), *ds = dev_alloc((size_t)rows * sizeof(float));
        int8_t *dq = dev_alloc((size_t)(rows * ld));
        if (!dx || !ds || !dq || !OK(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds))) return;
        if (!to_host(q1, dq, (size_t)(rows * ld)) || !to_host(s1, ds, (size_t)rows * sizeof(float))) return;
        if (!same_bytes(q1, q0, (size_t)(rows * ld), "cuda quantize_rows q") || !same_f32(s1, s0, rows, "cuda quantize scale"))
            return;
    }
}

static void cuda_linear(int op) {
    for (int si = 0; si < NSHAPES; si++) {
        shape sh = g_shapes[si];
        if (sh.rows < 4) sh.rows += 4;
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_LINEAR, 14);
        arb_ternary *dw = w ? dev_w(w) : NULL;
        if (!dw) return;
        int8_t *xq = rand_xq(sh.n, sh.cols, w->cols_pad);
        float *xs = rand_f32(sh.n, 0.001f, 0.05f);
        int64_t ny = sh.n * sh.rows, nx = sh.n * sh.cols;
        int8_t *dxq = dev_from(xq, (size_t)(sh.n * w->cols_pad));
        float *dxs = dev_from(xs, (size_t)sh.n * sizeof(float));
        if (!dxq || !dxs) return;
        cpu_use(BK_SCALAR);
        if (op == OP_MATMUL) {
            int32_t *a0 = TALLOC(int32_t, ny), *a1 = TALLOC(int32_t, ny), *da = dev_alloc((size_t)ny * 4);
            if (!da || !OK(arb_ternary_matmul_i32(w, xq, sh.n, a0)) || !OK(arb_cuda_ternary_matmul_i32(dw, dxq, sh.n, da)))
                return;
            if (!to_host(a1, da, (size_t)ny * 4) || !same_i32(a1, a0, ny, "cuda matmul_i32")) return;
        } else if (op == OP_FWD) {
            float *y0 = TALLOC(float, ny), *y1 = TALLOC(float, ny), *dy = dev_alloc((size_t)ny * 4);
            if (!dy || !OK(arb_ternary_linear_forward(w, xq, xs, sh.n, y0)) ||
                !OK(arb_cuda_ternary_linear_forward(dw, dxq, dxs, sh.n, dy)))
                return;
            if (!to_host(y1, dy, (size_t)ny * 4) || !close_f32(y1, y0, ny, 1e-6, "cuda linear_forward")) return;
        } else if (op == OP_BWDX) {
            float *g = rand_rows(sh.n, sh.rows), *d0 = TALLOC(float, nx), *d1 = TALLOC(float, nx);
            float *dg = dev_from(g, (size_t)ny * 4), *ddx = dev_alloc((size_t)nx * 4);
            arb_rng_key key = arb_update_key(g_seed, 12, w->id, ARB_RNG_DX);
            if (!dg || !ddx || !OK(arb_ternary_linear_backward_x(w, g, sh.n, key, d0)) ||
                !OK(arb_cuda_ternary_linear_backward_x(dw, dg, sh.n, key, ddx)))
                return;
            if (!to_host(d1, ddx, (size_t)nx * 4) || !close_f32(d1, d0, nx, 1e-6, "cuda linear_backward_x")) return;
        } else {
            arb_update_state st0 = {0}, st1 = {0};
            for (int s = 0; s < NSTEPS; s++) {
                arb_update_params p = step_params(s);
                int8_t *sxq = rand_xq(sh.n, sh.cols, w->cols_pad);
                float *sxs = rand_f32(sh.n, 0.001f, 0.05f), *g = rand_rows(sh.n, sh.rows);
                int8_t *dsxq = dev_from(sxq, (size_t)(sh.n * w->cols_pad));
                float *dsxs = dev_from(sxs, (size_t)sh.n * 4), *dg = dev_from(g, (size_t)ny * 4);
                arb_update_stats a0 = {0}, a1 = {0};
                if (!dsxq || !dsxs || !dg || !OK(arb_ternary_linear_backward_update_ref(w, sxq, sxs, g, sh.n, &p, &st0, &a0)) ||
                    !OK(arb_cuda_ternary_linear_backward_update(dw, dsxq, dsxs, dg, sh.n, &p, &st1, &a1)))
                    return;
                char what[64];
                snprintf(what, sizeof what, "cuda linear update step %d", s);
                if (!dev_same_state(dw, w, what) || !same_update(&st1, &a1, &st0, &a0, what)) return;
            }
        }
    }
}

static void cuda_embedding(int op) {
    for (int si = 0; si < NSHAPES; si++) {
        shape sh = g_shapes[si];
        arb_ternary *w = make_w(sh.rows, sh.cols, ARB_TERNARY_EMBED, 15);
        arb_ternary *dw = w ? dev_w(w) : NULL;
        if (!dw) return;
        cpu_use(BK_SCALAR);
        if (op == OP_EMB_FWD) {
            int32_t *idx = rand_idx(sh.n, sh.rows), *didx = dev_from(idx, (size_t)sh.n * 4);
            int64_t no = sh.n * sh.cols;
            float *o0 = TALLOC(float, no), *o1 = TALLOC(float, no), *dout = dev_alloc((size_t)no * 4);
            if (!didx || !dout || !OK(arb_ternary_embedding_forward(w, idx, sh.n, o0)) ||
                !OK(arb_cuda_ternary_embedding_forward(dw, didx, sh.n, dout)))
                return;
            if (!to_host(o1, dout, (size_t)no * 4) || !close_f32(o1, o0, no, 1e-6, "cuda embedding_forward")) return;
        } else {
            arb_update_state st0 = {0}, st1 = {0};
            for (int s = 0; s < NSTEPS; s++) {
                arb_update_params p = step_params(s);
                int32_t *idx = rand_idx(sh.n, sh.rows), *didx = dev_from(idx, (size_t)sh.n * 4);
                float *dy = rand_rows(sh.n, sh.cols), *ddy = dev_from(dy, (size_t)(sh.n * sh.cols) * 4);
                arb_update_stats a0 = {0}, a1 = {0};
                if (!didx || !ddy || !OK(arb_ternary_embedding_backward_update(w, idx, dy, sh.n, &p, &st0, &a0)) ||
                    !OK(arb_cuda_ternary_embedding_backward_update(dw, didx, ddy, sh.n, &p, &st1, &a1)))
                    return;
                char what[64];
                snprintf(what, sizeof what, "cuda embedding update step %d", s);
                if (!dev_same_state(dw, w, what) || !same_update(&st1, &a1, &st0, &a0, what)) return;
            }
        }
    }
}

static void cuda_rmsnorm(int op) {
    const float eps = 1e-6f;
    for (int si = 0; si < NSHAPES; si++) {
        int64_t d = g_shapes[si].cols, n = g_shapes[si].n, nd = n * d;
        arb_ternary *w = make_w(1, d, ARB_TERNARY_GAIN, 16);
        arb_ternary *dw = w ? dev_w(w) : NULL;
        if (!dw) return;
        float *y0 = TALLOC(float, nd), *y1 = TALLOC(float, nd), *r0 = TALLOC(float, n), *r1 = TALLOC(float, n);
        float *dyb = dev_alloc((size_t)nd * 4), *drs = dev_alloc((size_t)n * 4);
        if (!dyb || !drs) return;
        cpu_use(BK_SCALAR);
        arb_update_state st0 = {0}, st1 = {0};
        for (int s = 0; s < (op == OP_RMS_FWD ? 1 : NSTEPS); s++) {
            float *x = rand_rows(n, d), *dx = dev_from(x, (size_t)nd * 4);
            if (!dx || !OK(arb_ternary_rmsnorm_forward(w, x, n, eps, y0, r0)) ||
                !OK(arb_cuda_ternary_rmsnorm_forward(dw, dx, n, eps, dyb, drs)))
                return;
            if (op == OP_RMS_FWD) {
                if (!to_host(y1, dyb, (size_t)nd * 4) || !to_host(r1, drs, (size_t)n * 4)) return;
                if (!close_f32(y1, y0, nd, 1e-6, "cuda rmsnorm y") || !close_f32(r1, r0, n, 1e-6, "cuda rmsnorm rstd"))
                    return;
                continue;
            }
            /* the same rstd on both sides, so the gain's state must match to the bit */
            arb_update_params p = step_params(s);
            float *g = rand_f32(nd, -1.0f, 1.0f), *dg = dev_from(g, (size_t)nd * 4), *dr = dev_from(r0, (size_t)n * 4);
            float *dx0 = TALLOC(float, nd), *dx1 = TALLOC(float, nd), *ddx = dev_alloc((size_t)nd * 4);
            arb_update_stats a0 = {0}, a1 = {0};
            if (!dg || !dr || !ddx || !OK(arb_ternary_rmsnorm_backward_update(w, x, r0, g, n, dx0, &p, &st0, &a0)) ||
                !OK(arb_cuda_ternary_rmsnorm_backward_update(dw, dx, dr, dg, n, ddx, &p, &st1, &a1)))
                return;
            char what[64];
            snprintf(what, sizeof what, "cuda rmsnorm update step %d", s);
            if (!to_host(dx1, ddx, (size_t)nd * 4) || !close_f32(dx1, dx0, nd, 1e-6, what)) return;
            if (!dev_same_state(dw, w, what) || !same_update(&st1, &a1, &st0, &a0, what)) return;
        }
    }
}

static void check_cuda(int op) {
    switch (op) {
    case OP_QUANT: cuda_quantize(); break;
    case OP_MATMUL:
    case OP_FWD:
    case OP_BWDX:
    case OP_UPD: cuda_linear(op); break;
    case OP_EMB_FWD:
    case OP_EMB_UPD: cuda_embedding(op); break;
    default: cuda_rmsnorm(op); break;
    }
}
#endif /* ARB_HAVE_CUDA */

/* ================================================================ driver */

typedef void (*check_fn)(int backend);
static const check_fn k_checks[NOPS] = {check_quantize,          check_matmul,           check_forward,
                                        check_backward_x,        check_backward_update,  check_embedding_forward,
                                        check_embedding_update,  check_rmsnorm_forward,  check_rmsnorm_update};

static void detect_backends(bool *have) {
    for (int b = 0; b < 3; b++) {
        have[b] = cpu_use(b);
        if (!have[b]) snprintf(g_skip[b], sizeof g_skip[b], "this CPU lacks the %s tier", k_bkname[b]);
    }
    have[BK_CUDA] = false;
#ifdef ARB_HAVE_CUDA
    if (arb_cuda_device_count() > 0) {
        have[BK_CUDA] = OK(arb_cuda_set_device(0));
    } else {
        snprintf(g_skip[BK_CUDA], sizeof g_skip[BK_CUDA], "built with CUDA, but no CUDA device is present");
    }
#else
    snprintf(g_skip[BK_CUDA], sizeof g_skip[BK_CUDA], "built without CUDA (ARB_HAVE_CUDA)");
#endif
}

static int run_checks(void) {
    bool have[NBK];
    g_op = 0;
    g_bk = 0;
    detect_backends(have);
    for (int op = 0; op < NOPS; op++)
        for (int b = 0; b < NBK; b++) {
            if (!have[b]) continue;
            g_op = op;
            g_bk = b;
            g_res[op][b] = R_OK;
            g_data_seed = 1000 + (uint64_t)op * 100000; /* every backend sees the same inputs */
            if (b == BK_CUDA) {
#ifdef ARB_HAVE_CUDA
                check_cuda(op);
#endif
            } else {
                static const arb_tern_kernels *tables[3] = {&arb_tern_kernels_ref, &arb_tern_kernels_avx2,
                                                            &arb_tern_kernels_avx512};
                cpu_use(b);
                if (arb_tern_kernels_get() != tables[b]) failf("the dispatch does not pick the %s table", k_bkname[b]);
                k_checks[op](b);
            }
            scope_end();
            arb_cpu_tier_force(ARB_TIER_AVX512); /* back to the best tier */
        }
    printf("\n%-22s", "op \\ backend");
    for (int b = 0; b < NBK; b++) printf(" %-7s", k_bkname[b]);
    printf("\n");
    int fails = 0;
    for (int op = 0; op < NOPS; op++) {
        printf("%-22s", k_opname[op]);
        for (int b = 0; b < NBK; b++) {
            const char *s = g_res[op][b] == R_OK ? "OK" : (g_res[op][b] == R_FAIL ? "FAIL" : "SKIP");
            printf(" %-7s", s);
            fails += g_res[op][b] == R_FAIL;
        }
        printf("\n");
    }
    for (int b = 0; b < NBK; b++)
        if (!have[b]) printf("SKIP %s: %s\n", k_bkname[b], g_skip[b]);
    for (int op = 0; op < NOPS; op++)
        for (int b = 0; b < NBK; b++)
            if (g_res[op][b] == R_FAIL) printf("FAIL %s on %s: %s\n", k_opname[op], k_bkname[b], g_msg[op][b]);
    printf("%s: %d failure(s); shapes (rows x cols, n):", fails ? "FAILED" : "PASSED", fails);
    for (int i = 0; i < NSHAPES; i++)
        printf(" %lldx%lld,%lld", (long long)g_shapes[i].rows, (long long)g_shapes[i].cols, (long long)g_shapes[i].n);
    printf(" (seed %llu)\n", (unsigned long long)g_seed);
    return fails ? 1 : 0;
}

/* ================================================================ --perf */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct perf_ctx {
    arb_ternary *lin, *lin_upd, *emb, *gain;
    int8_t *xq;
    float *x, *xs, *dy, *y, *dx, *rstd, *qs, *emb_dy, *emb_out, *rx, *rdy;
    int8_t *q;
    int32_t *acc, *idx;
    int64_t n, rows, cols, vocab, dim, ntok;
    arb_update_state st;
} perf_ctx;

static arb_status perf_op(perf_ctx *c, int op, int rep) {
    arb_update_params p = arb_update_params_default();
    p.step = (uint64_t)rep;
    switch (op) {
    case OP_QUANT: return arb_quantize_rows(c->x, c->n, c->cols, c->lin->cols_pad, c->q, c->qs);
    case OP_MATMUL: return arb_ternary_matmul_i32(c->lin, c->xq, c->n, c->acc);
    case OP_FWD: return arb_ternary_linear_forward(c->lin, c->xq, c->xs, c->n, c->y);
    case OP_BWDX: return arb_ternary_linear_backward_x(c->lin, c->dy, c->n, arb_update_key(1, 2, 3, ARB_RNG_DX), c->dx);
    case OP_UPD: return arb_ternary_linear_backward_update(c->lin_upd, c->xq, c->xs, c->dy, c->n, &p, &c->st, NULL);
    case OP_EMB_FWD: return arb_ternary_embedding_forward(c->emb, c->idx, c->ntok, c->emb_out);
    case OP_EMB_UPD: return arb_ternary_embedding_backward_update(c->emb, c->idx, c->emb_dy, c->ntok, &p, &c->st, NULL);
    case OP_RMS_FWD: return arb_ternary_rmsnorm_forward(c->gain, c->rx, c->ntok, 1e-6f, c->emb_out, c->rstd);
    default:
        return arb_ternary_rmsnorm_backward_update(c->gain, c->rx, c->rstd, c->rdy, c->ntok, c->emb_out, &p, &c->st,
                                                   NULL);
    }
}

/* Model-sized shapes: a 384 → 1536 layer on 256 tokens, an 8192 × 384 table and RMSNorm on
 * 512 tokens. Milliseconds per call, and the speedup over the scalar tier in this run. */
static int run_perf(int reps, const char *only) {
    bool have[NBK];
    detect_backends(have);
    perf_ctx c;
    memset(&c, 0, sizeof c);
    c.n = 256;
    c.rows = 1536;
    c.cols = 384;
    c.vocab = 8192;
    c.dim = 384;
    c.ntok = 512;
    c.lin = make_w(c.rows, c.cols, ARB_TERNARY_LINEAR, 1);
    c.lin_upd = make_w(c.rows, c.cols, ARB_TERNARY_LINEAR, 2);
    c.emb = make_w(c.vocab, c.dim, ARB_TERNARY_EMBED, 3);
    c.gain = make_w(1, c.dim, ARB_TERNARY_GAIN, 4);
    if (!c.lin || !c.lin_upd || !c.emb || !c.gain) {
        printf("perf setup failed: %s\n", g_msg[0][0]);
        return 1;
    }
    c.x = rand_rows(c.n, c.cols);
    c.xq = rand_xq(c.n, c.cols, c.lin->cols_pad);
    c.xs = rand_f32(c.n, 0.001f, 0.05f);
    c.dy = rand_rows(c.n, c.rows);
    c.y = TALLOC(float, c.n * c.rows);
    c.dx = TALLOC(float, c.n * c.cols);
    c.q = TALLOC(int8_t, c.n * c.lin->cols_pad);
    c.qs = TALLOC(float, c.n);
    c.acc = TALLOC(int32_t, c.n * c.rows);
    c.idx = rand_idx(c.ntok, c.vocab);
    c.emb_dy = rand_rows(c.ntok, c.dim);
    c.emb_out = TALLOC(float, c.ntok * c.dim);
    c.rx = rand_rows(c.ntok, c.dim);
    c.rdy = rand_f32(c.ntok * c.dim, -1.0f, 1.0f);
    c.rstd = TALLOC(float, c.ntok);
    printf("perf: ms per call (best of %d), threads %d; linear %lld -> %lld, n %lld; embedding %lld x %lld and "
           "RMSNorm d %lld, %lld tokens\n",
           reps, arb_get_num_threads(), (long long)c.cols, (long long)c.rows, (long long)c.n, (long long)c.vocab,
           (long long)c.dim, (long long)c.dim, (long long)c.ntok);
    printf("%-22s", "op");
    for (int b = 0; b < 3; b++) printf(" %14s", k_bkname[b]);
    printf("\n");
    for (int op = 0; op < NOPS; op++) {
        if (only && strcmp(only, k_opname[op])) continue;
        double base = 0.0;
        printf("%-22s", k_opname[op]);
        for (int b = 0; b < 3; b++) {
            if (!have[b]) {
                printf(" %14s", "SKIP");
                continue;
            }
            cpu_use(b);
            double *ts = TALLOC(double, reps);
            arb_status s = perf_op(&c, op, 0); /* warm-up */
            for (int r = 0; r < reps && s == ARB_OK; r++) {
                double t0 = now_s();
                s = perf_op(&c, op, r + 1);
                ts[r] = now_s() - t0;
            }
            if (s != ARB_OK) {
                printf(" %14s", "ERROR");
                continue;
            }
            double best = ts[0]; /* the best run: least disturbed by other processes */
            for (int i = 1; i < reps; i++) best = ts[i] < best ? ts[i] : best;
            double ms = 1e3 * best;
            if (b == BK_SCALAR) base = ms;
            char cell[32];
            if (b == BK_SCALAR || base <= 0.0) snprintf(cell, sizeof cell, "%.3f", ms);
            else snprintf(cell, sizeof cell, "%.3f (%.1fx)", ms, base / ms);
            printf(" %14s", cell);
        }
        printf("\n");
    }
    printf("(CUDA timings: arbitor bench kernels --device cuda)\n");
    arb_cpu_tier_force(ARB_TIER_AVX512);
    scope_end();
    return 0;
}

int main(int argc, char **argv) {
    int perf = 0, reps = 9;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--perf")) {
            perf = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--op") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            g_seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed N] [--perf [reps] [--op NAME]]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    g_threads_default = arb_get_num_threads();
    make_shapes(g_seed);
    return perf ? run_perf(reps, only) : run_checks();
}
