/* src/cpu/linear_dispatch.c — the public ternary linear ops: argument checks, activation and
 * gradient quantization, operand layouts, the thread split, and the choice of kernel tier.
 *
 * Why one place: the tiers (linear_ref.c, linear_avx2.c, linear_avx512.c) only run loops over
 * 16-row / 16-column blocks and must agree to the bit, so everything that decides a value
 * (random draws, float epilogues, the update plan) lives here or in ternary-core's
 * update_internal.h and is shared by all of them. Threads split blocks or tokens; every
 * element is computed by one thread from integer sums, so any thread count gives the same bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cpu/linear_internal.h"
#include "ternary/device_dispatch.h"

/* Σ code·x stays below 2^31 in every kernel for these sizes (codes ≤ 2, |x| ≤ 127). */
#define ARB_LIN_MAX_K ((int64_t)8 << 20)

static const arb_lin_kernels *lin_kernels(void) {
    switch (arb_cpu_tier_get()) {
    case ARB_TIER_AVX512: return &arb_lin_kernels_avx512;
    case ARB_TIER_AVX2: return &arb_lin_kernels_avx2;
    default: return &arb_lin_kernels_ref;
    }
}

static void lin_split(int64_t total, int nt, int t, int64_t *a, int64_t *b) {
    *a = total * t / nt;
    *b = total * (t + 1) / nt;
}

static arb_status lin_check(const arb_ternary *w, int64_t n, const char *what) {
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "%s: ternary tensor is NULL or not initialized", what);
    if (w->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: tensor %d lives on a CUDA device; the CPU op needs host memory",
                         what, (int)w->id);
    if (n < 0 || n > ((int64_t)1 << 31))
        return arb_error(ARB_ERR_SHAPE, "%s: token count %lld outside 0..2^31", what, (long long)n);
    if (w->rows_pad > ARB_LIN_MAX_K || w->cols_pad > ARB_LIN_MAX_K)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: shape (%lld, %lld) exceeds the int32 accumulator limit %lld",
                         what, (long long)w->rows, (long long)w->cols, (long long)ARB_LIN_MAX_K);
    return ARB_OK;
}

static void *lin_alloc2(int64_t a, int64_t b, size_t elt, arb_status *s) {
    size_t n1, n2;
    if (!arb_mul_size((size_t)a, (size_t)b, &n1) || !arb_mul_size(n1, elt, &n2)) {
        *s = arb_error(ARB_ERR_OVERFLOW, "ternary linear: workspace %lld x %lld x %zu overflows", (long long)a,
                       (long long)b, elt);
        return NULL;
    }
    void *p = arb_alloc(n2);
    if (!p) *s = arb_error(ARB_ERR_OOM, "ternary linear: cannot allocate %zu bytes of workspace", n2);
    return p;
}

/* ---- forward -------------------------------------------------------------------------------- */

static void lin_run_fwd(const arb_ternary *w, const int8_t *xq, int64_t n, const arb_lin_out *o, int32_t *xsum) {
    const arb_lin_kernels *k = lin_kernels();
    int64_t nrb = w->rows_pad >> 4;
    int nt = arb_get_num_threads();
    double work = (double)n * (double)w->rows_pad * (double)w->cols_pad;
    if (work < 2e6) nt = 1;
    /* a fork/join costs a few microseconds: a GEMV's sums are cheaper on one thread */
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= 64)
    for (int64_t t = 0; t < n; t++) {
        const int8_t *x = xq + t * w->cols_pad;
        int32_t s = 0;
        for (int64_t c = 0; c < w->cols_pad; c++) s += x[c];
        xsum[t] = s;
    }
    if (n == 1 && w->rows64 && k->gemv_rows64) {
        const int64_t groups = arb_round_up64(w->rows_pad) >> 6;
#pragma omp parallel num_threads(nt)
        {
            int64_t a, b;
            lin_split(groups, omp_get_num_threads(), omp_get_thread_num(), &a, &b);
            if (b > a) k->gemv_rows64(w, xq, xsum[0], a, b, o);
        }
        return;
    }
    /* Rows when there are enough blocks for every thread, else tokens. */
    bool by_rows = nrb >= 4 * (int64_t)nt || n < 2 * (int64_t)nt;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t a, b;
        if (by_rows) {
            lin_split(nrb, tn, t, &a, &b);
            if (b > a) k->fwd(w, xq, n, xsum, a, b, o);
        } else {
            lin_split(n, tn, t, &a, &b);
            if (b > a) {
                arb_lin_out oo = *o;
                oo.out = (char *)o->out + (size_t)a * (size_t)o->ld * 4;
                if (oo.rs) oo.rs += a;
                k->fwd(w, xq + a * w->cols_pad, b - a, xsum + a, 0, nrb, &oo);
            }
        }
    }
}

arb_status arb_ternary_matmul_i32(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc) {
    ARB_ON_CUDA(w, arb_cuda_ternary_matmul_i32(w, xq, n, acc));
    ARB_TRY(lin_check(w, n, "arb_ternary_matmul_i32"));
    if (n == 0) return ARB_OK;
    if (!xq || !acc) return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_matmul_i32: NULL xq or acc");
    arb_status s = ARB_OK;
    int32_t *xsum = lin_alloc2(n, 1, sizeof(int32_t), &s);
    if (!xsum) return s;
    arb_lin_out o = {acc, w->rows, NULL, NULL};
    lin_run_fwd(w, xq, n, &o, xsum);
    arb_free(xsum);
    return ARB_OK;
}

arb_status arb_ternary_linear_forward(const arb_ternary *w, const int8_t *xq, const float *xs, int64_t n, float *y) {
    ARB_ON_CUDA(w, arb_cuda_ternary_linear_forward(w, xq, xs, n, y));
    ARB_TRY(lin_check(w, n, "arb_ternary_linear_forward"));
    if (n == 0) return ARB_OK;
    if (!xq || !xs || !y || !w->scale)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_linear_forward: NULL xq, xs, y or scale");
    arb_status s = ARB_OK;
    int32_t *xsum = lin_alloc2(n, 1, sizeof(int32_t), &s);
    if (!xsum) return s;
    arb_lin_out o = {y, w->rows, xs, w->scale};
    lin_run_fwd(w, xq, n, &o, xsum);
    arb_free(xsum);
    return ARB_OK;
}

/* ---- input gradient ------------------------------------------------------------------------- */

/* backward_x's dy rows quantized per token (arb_lin_quant_dy_ref has the rule), tokens split
 * over threads; returns the first bad row or -1. */
static int64_t lin_quantize_dy(const arb_lin_kernels *k, const arb_ternary *w, const float *dy, int64_t n,
                               arb_rng_key key, int8_t *hq, float *hs, int32_t *hsum) {
    int nt = (double)n * (double)w->rows < 65536 ? 1 : arb_get_num_threads();
    int64_t bad[256];
    if (nt > 256) nt = 256;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t a, b;
        lin_split(n, tn, t, &a, &b);
        bad[t] = b > a ? k->quant_dy(w, dy, a, b, key, hq, hs, hsum) : -1;
        if (t == 0)
            for (int j = tn; j < nt; j++) bad[j] = -1;
    }
    for (int j = 0; j < nt; j++)
        if (bad[j] >= 0) return bad[j];
    return -1;
}

arb_status arb_ternary_linear_backward_x(const arb_ternary *w, const float *dy, int64_t n, arb_rng_key key,
                                         float *dx) {
    ARB_ON_CUDA(w, arb_cuda_ternary_linear_backward_x(w, dy, n, key, dx));
    ARB_TRY(lin_check(w, n, "arb_ternary_linear_backward_x"));
    if (n == 0) return ARB_OK;
    if (!dy || !dx || !w->scale)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_linear_backward_x: NULL dy, dx or scale");
    arb_status s = ARB_OK;
    int8_t *hq = lin_alloc2(n, w->rows_pad, 1, &s);
    float *hs = hq ? lin_alloc2(n, 1, sizeof(float), &s) : NULL;
    int32_t *hsum = hs ? lin_alloc2(n, 1, sizeof(int32_t), &s) : NULL;
    if (!hsum) {
        arb_free(hq);
        arb_free(hs);
        return s;
    }
    const arb_lin_kernels *k = lin_kernels();
    int64_t bad = lin_quantize_dy(k, w, dy, n, key, hq, hs, hsum);
    if (bad >= 0) {
        s = arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_linear_backward_x: dy row %lld of tensor %d is not finite",
                      (long long)bad, (int)w->id);
    } else {
        arb_lin_out o = {dx, w->cols, hs, NULL};
        int64_t ncb = w->cols_pad >> 4;
        int nt = arb_get_num_threads();
        if ((double)n * (double)w->rows_pad * (double)w->cols_pad < 2e6) nt = 1;
        bool by_cols = ncb >= 4 * (int64_t)nt || n < 2 * (int64_t)nt;
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), tn = omp_get_num_threads();
            int64_t a, b;
            if (by_cols) {
                lin_split(ncb, tn, t, &a, &b);
                if (b > a) k->bwdx(w, hq, n, hsum, a, b, &o);
            } else {
                lin_split(n, tn, t, &a, &b);
                if (b > a) {
                    arb_lin_out oo = o;
                    oo.out = dx + a * w->cols;
                    oo.rs = hs + a;
                    k->bwdx(w, hq + a * w->rows_pad, b - a, hsum + a, 0, ncb, &oo);
                }
            }
        }
    }
    arb_free(hq);
    arb_free(hs);
    arb_free(hsum);
    return s;
}

/* ---- fused weight gradient + update --------------------------------------------------------- */

/* Step 1 of the rule (arb_upd_quantize_grad's exact arithmetic) fused with the transposed
 * layouts of G's operands: column absmax over tokens (threads split columns), then ht/hsum
 * (threads split row blocks) and xt (threads split column blocks). Fails, state untouched, on
 * a non-finite gradient. */
static arb_status lin_build_grad(const arb_lin_kernels *k, const arb_ternary *w, const int8_t *xq, const float *xs,
                                 const float *dy, int64_t n, int64_t n4, arb_rng_key key, float *c, float *inv,
                                 uint8_t *xt, int8_t *ht, int32_t *hsum, int nt) {
    const int64_t rows = w->rows;
    int nan = 0;
#pragma omp parallel num_threads(nt) reduction(| : nan)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t a, b;
        lin_split(rows >> 4, tn, t, &a, &b); /* 16-column units */
        a *= 16;
        b = t == tn - 1 ? rows : b * 16;
        if (b > a) nan |= k->col_amax(w, dy, xs, n, a, b, c);
    }
    if (nan)
        return arb_error(ARB_ERR_INVALID_ARG, "gradient has a NaN or infinite value (%lld x %lld)", (long long)n,
                         (long long)rows);
    for (int64_t o = 0; o < rows; o++) {
        inv[o] = c[o] == 0.0f ? 0.0f : 127.0f / c[o];
        c[o] = c[o] / 127.0f;
    }
    const int64_t rbs = w->rows_pad >> 4, kbs = w->cols_pad >> 4;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int64_t a, b;
        lin_split(rbs, tn, t, &a, &b);
        if (b > a) k->pack_grad(w, dy, xs, inv, n, n4, key, a, b, ht, hsum);
        lin_split(kbs, tn, t, &a, &b);
        if (b > a) k->pack_x(w, xq, n, n4, a, b, xt);
    }
    return ARB_OK;
}

/* Each thread takes a range of row blocks and walks it once per slice of column blocks: the
 * slice's transposed activations (xt, n4·64 bytes per column block) stay in L2 while every row
 * block of the range reuses them, instead of streaming all of xt from L3 once per row block
 * (which two threads' L3 bandwidth could not keep up with). Integer sums: same state any way. */
static void lin_run_upd(const arb_lin_kernels *k, arb_ternary *w, const arb_lin_grad *gr, const arb_upd_plan *pl,
                        arb_upd_row_acc *racc, int nt) {
    const int64_t rbs = w->rows_pad >> 4, kbs = w->cols_pad >> 4;
    const int64_t per_kb = gr->n4 * 64, slice_bytes = (int64_t)512 << 10;
    const int64_t kslice = per_kb >= slice_bytes ? 1 : slice_bytes / (per_kb > 0 ? per_kb : 1);
#pragma omp parallel num_threads(nt)
    {
        int64_t a, b;
        lin_split(rbs, omp_get_num_threads(), omp_get_thread_num(), &a, &b);
        for (int64_t kb0 = 0; kb0 < kbs; kb0 += kslice) {
            int64_t kb1 = kb0 + kslice < kbs ? kb0 + kslice : kbs;
            for (int64_t rb = a; rb < b; rb++) k->upd(w, gr, rb, kb0, kb1, pl, racc + rb * 16);
        }
    }
}

arb_status arb_ternary_linear_backward_update(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy,
                                              int64_t n, const arb_update_params *p, arb_update_state *st,
                                              arb_update_stats *stats) {
    ARB_ON_CUDA(w, arb_cuda_ternary_linear_backward_update(w, xq, xs, dy, n, p, st, stats));
    const char *what = "arb_ternary_linear_backward_update";
    ARB_TRY(lin_check(w, n, what));
    ARB_TRY(arb_upd_check(w, n, p, st, what));
    if (n > 0 && (!xq || !xs || !dy)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL xq, xs or dy", what);
    int64_t n4 = (n + ARB_LIN_NG - 1) / ARB_LIN_NG;
    int64_t nchunk = (n4 + ARB_LIN_NG_CHUNK - 1) / ARB_LIN_NG_CHUNK;
    arb_status s = ARB_OK;
    float *c = lin_alloc2(w->rows, 1, sizeof(float), &s);
    float *inv = c ? lin_alloc2(w->rows, 1, sizeof(float), &s) : NULL;
    uint8_t *xt = inv ? lin_alloc2(n4 > 0 ? n4 * 64 : 1, w->cols_pad >> 4, 1, &s) : NULL;
    int8_t *ht = xt ? lin_alloc2(n4 > 0 ? n4 * 64 : 1, w->rows_pad >> 4, 1, &s) : NULL;
    int32_t *hsum = ht ? lin_alloc2(nchunk > 0 ? nchunk : 1, w->rows_pad, sizeof(int32_t), &s) : NULL;
    arb_upd_row_acc *racc = hsum ? lin_alloc2(w->rows_pad, 1, sizeof(arb_upd_row_acc), &s) : NULL;
    int32_t *mult = racc ? lin_alloc2(w->rows, 1, sizeof(int32_t), &s) : NULL;
    if (!mult) goto done;

    int nt = arb_get_num_threads();
    if ((double)(n > 0 ? n : 1) * (double)w->rows_pad * (double)w->cols_pad < 2e6) nt = 1;
    const arb_lin_kernels *k = lin_kernels();
    s = lin_build_grad(k, w, xq, xs, dy, n, n4, arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD), c, inv, xt, ht,
                       hsum, nt);
    if (s != ARB_OK) goto done;
    arb_lin_grad gr = {xt, ht, hsum, n4};
    memset(racc, 0, (size_t)w->rows_pad * sizeof *racc);

    double norm = st->grad_norm;
    if (!(norm > 0.0)) { /* first step: a stats pass measures the norm this step's plan uses */
        lin_run_upd(k, w, &gr, NULL, racc, nt);
        norm = arb_upd_norm(c, racc, w->rows, w->cols);
        memset(racc, 0, (size_t)w->rows_pad * sizeof *racc);
    }
    arb_upd_plan pl;
    arb_upd_plan_make(c, w->rows, (double)p->eta, norm, mult, &pl.shift);
    pl.mult = mult;
    pl.key = arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE);
    pl.threshold = p->threshold;
    pl.leak_shift = p->leak_shift;
    lin_run_upd(k, w, &gr, &pl, racc, nt);
    s = arb_upd_finish(w, c, racc, p, st, stats);
done:
    arb_free(c);
    arb_free(inv);
    arb_free(xt);
    arb_free(ht);
    arb_free(hsum);
    arb_free(racc);
    arb_free(mult);
    return s;
}
