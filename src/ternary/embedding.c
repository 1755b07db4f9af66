/* Ternary embedding: forward gather, and the fused backward+update of the table.
 *
 * Why this shape: the table's gradient is a scatter-add of dy rows. Quantizing dy once per
 * tensor (int8, stochastic rounding) makes every row's gradient an exact int32 sum, so the
 * order tokens are added in — and so the thread count — cannot change the state. Rows are
 * processed independently (each owns its bytes of every tile), in parallel. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ternary/device_dispatch.h"
#include "ternary/ops_internal.h"

static arb_status check_idx(const arb_ternary *w, const int32_t *idx, int64_t n, const char *what) {
    for (int64_t t = 0; t < n; t++)
        if (idx[t] < 0 || idx[t] >= w->rows)
            return arb_error(ARB_ERR_INVALID_ARG, "%s: index %d at position %lld is outside 0..%lld", what,
                             (int)idx[t], (long long)t, (long long)w->rows - 1);
    return ARB_OK;
}

arb_status arb_ternary_embedding_forward(const arb_ternary *w, const int32_t *idx, int64_t n, float *out) {
    ARB_ON_CUDA(w, arb_cuda_ternary_embedding_forward(w, idx, n, out));
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_embedding_forward: table is NULL");
    if (w->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_UNSUPPORTED, "arb_ternary_embedding_forward: table %d is on cuda:%d", (int)w->id,
                         w->device.index);
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "arb_ternary_embedding_forward: n = %lld", (long long)n);
    if (n > 0 && (!idx || !out)) return arb_error(ARB_ERR_INVALID_ARG, "arb_ternary_embedding_forward: NULL buffer");
    ARB_TRY(check_idx(w, idx, n, "arb_ternary_embedding_forward"));
    const int64_t cols = w->cols;
    const arb_tern_kernels *k = arb_tern_kernels_get();
#pragma omp parallel for schedule(static) if (n * cols > ARB_OPS_PAR_MIN)
    for (int64_t t = 0; t < n; t++) k->embed_row(w, idx[t], out + t * cols);
    return ARB_OK;
}

/* Elements per chunk of the per-tensor passes (a chunk is one kernel call; the split never
 * changes a value: max is order-free and each element's draw is keyed by its index). */
#define EMB_CHUNK ((int64_t)16384)

/* dq (n, cols) = clamp(floorf(dy * inv + u), ±127), inv = 127 / amax over the whole tensor. */
static arb_status quantize_dy(const float *dy, int64_t n, int64_t cols, arb_rng_key key, int8_t *dq, float *c0) {
    const arb_tern_kernels *k = arb_tern_kernels_get();
    float amax = 0.0f;
    int bad = 0;
    const int64_t total = n * cols, nch = (total + EMB_CHUNK - 1) / EMB_CHUNK;
#pragma omp parallel for schedule(static) reduction(max : amax) reduction(| : bad) if (total > ARB_OPS_PAR_MIN)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t j0 = ch * EMB_CHUNK, len = total - j0 < EMB_CHUNK ? total - j0 : EMB_CHUNK;
        float a = k->absmax(dy + j0, len, &bad);
        amax = a > amax ? a : amax;
    }
    if (bad) return arb_error(ARB_ERR_INVALID_ARG, "embedding gradient has a NaN or infinite value");
    *c0 = amax / 127.0f;
    if (amax == 0.0f) {
        memset(dq, 0, (size_t)total);
        return ARB_OK;
    }
    const float inv = 127.0f / amax;
#pragma omp parallel for schedule(static) if (total > ARB_OPS_PAR_MIN)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t j0 = ch * EMB_CHUNK, len = total - j0 < EMB_CHUNK ? total - j0 : EMB_CHUNK;
        k->sround(dy + j0, len, inv, key, (uint32_t)j0, dq + j0);
    }
    return ARB_OK;
}

/* Gint[r, :] = Σ over the tokens of row r (list[first[r]..first[r+1])) of dq[t, :]. */
static void grad_row(const int8_t *dq, const int64_t *list, const int64_t *first, int64_t r, int64_t cols,
                     int32_t *g) {
    const arb_tern_kernels *k = arb_tern_kernels_get();
    memset(g, 0, (size_t)cols * sizeof *g);
    for (int64_t j = first[r]; j < first[r + 1]; j++) k->add_i8(g, dq + list[j] * cols, cols);
}

/* dq, and the tokens grouped by row (counting sort): row r's tokens are list[first[r]..first[r+1]). */
typedef struct emb_work {
    int8_t *dq;     /* (n, cols) */
    int64_t *list;  /* (n) */
    int64_t *first; /* (rows + 1) */
    float c0;       /* loss units of one dq unit */
} emb_work;

static void emb_work_free(emb_work *e) {
    arb_free(e->dq);
    arb_free(e->list);
    arb_free(e->first);
    memset(e, 0, sizeof *e);
}

static arb_status emb_work_make(const arb_ternary *w, const int32_t *idx, const float *dy, int64_t n, arb_rng_key key,
                                emb_work *e) {
    memset(e, 0, sizeof *e);
    const int64_t rows = w->rows, cols = w->cols;
    e->dq = arb_alloc((size_t)(n * cols));
    e->list = arb_alloc((size_t)n * sizeof(int64_t));
    e->first = arb_calloc((size_t)(rows + 1) * sizeof(int64_t));
    int64_t *fill = arb_alloc((size_t)rows * sizeof(int64_t));
    arb_status s = ARB_OK;
    if (!e->dq || !e->list || !e->first || !fill) {
        s = arb_error(ARB_ERR_OOM, "embedding gradient of table %d (%lld x %lld), n %lld", (int)w->id,
                      (long long)rows, (long long)cols, (long long)n);
        goto done;
    }
    s = quantize_dy(dy, n, cols, key, e->dq, &e->c0);
    if (s != ARB_OK) goto done;
    for (int64_t t = 0; t < n; t++) e->first[idx[t] + 1]++;
    for (int64_t r = 0; r < rows; r++) e->first[r + 1] += e->first[r];
    memcpy(fill, e->first, (size_t)rows * sizeof(int64_t));
    for (int64_t t = 0; t < n; t++) e->list[fill[idx[t]]++] = t;
done:
    arb_free(fill);
    if (s != ARB_OK) emb_work_free(e);
    return s;
}

arb_status arb_upd_embedding_grad(const arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                  arb_rng_key key, int32_t *g, float *c) {
    ARB_TRY(check_idx(w, idx, n, "arb_upd_embedding_grad"));
    emb_work e;
    ARB_TRY(emb_work_make(w, idx, dy, n, key, &e));
    for (int64_t r = 0; r < w->rows; r++) {
        grad_row(e.dq, e.list, e.first, r, w->cols, g + r * w->cols);
        c[r] = e.c0 * w->scale[r];
    }
    emb_work_free(&e);
    return ARB_OK;
}

arb_status arb_ternary_embedding_backward_update(arb_ternary *w, const int32_t *idx, const float *dy, int64_t n,
                                                 const arb_update_params *p, arb_update_state *st,
                                                 arb_update_stats *stats) {
    ARB_ON_CUDA(w, arb_cuda_ternary_embedding_backward_update(w, idx, dy, n, p, st, stats));
    const char *what = "arb_ternary_embedding_backward_update";
    ARB_TRY(arb_upd_check(w, n, p, st, what));
    if (n > 0 && (!idx || !dy)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    ARB_TRY(check_idx(w, idx, n, what));
    const int64_t rows = w->rows, cols = w->cols;
    const int nth = arb_get_num_threads();
    emb_work e;
    ARB_TRY(emb_work_make(w, idx, dy, n, arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD), &e));
    float *c = arb_alloc((size_t)rows * sizeof(float));
    int32_t *mult = arb_alloc((size_t)rows * sizeof(int32_t));
    arb_upd_row_acc *acc = arb_calloc((size_t)rows * sizeof *acc);
    /* one gradient row per thread, then a zero row shared by every row no token used */
    int32_t *gbuf = arb_calloc((size_t)(nth + 1) * (size_t)cols * sizeof(int32_t));
    arb_status s = ARB_OK;
    if (!c || !mult || !acc || !gbuf) {
        s = arb_error(ARB_ERR_OOM, "%s: table %d (%lld x %lld)", what, (int)w->id, (long long)rows, (long long)cols);
        goto done;
    }
    for (int64_t r = 0; r < rows; r++) c[r] = e.c0 * w->scale[r];

    double norm = st->grad_norm;
    if (!(norm > 0.0)) { /* first step: this step's own mean|G| */
#pragma omp parallel num_threads(nth)
        {
            int32_t *g = gbuf + (size_t)omp_get_thread_num() * (size_t)cols;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                if (e.first[r] == e.first[r + 1]) continue;
                grad_row(e.dq, e.list, e.first, r, cols, g);
                int64_t a = 0;
                for (int64_t i = 0; i < cols; i++) a += g[i] < 0 ? -(int64_t)g[i] : g[i];
                acc[r].abs_g = a;
            }
        }
        norm = arb_upd_norm(c, acc, rows, cols);
        memset(acc, 0, (size_t)rows * sizeof *acc);
    }
    arb_upd_plan pl = {mult, 0, arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE), p->threshold,
                       p->leak_shift};
    arb_upd_plan_make(c, rows, (double)p->eta, norm, mult, &pl.shift);
#pragma omp parallel num_threads(nth)
    {
        int32_t *g = gbuf + (size_t)omp_get_thread_num() * (size_t)cols;
        const int32_t *zero = gbuf + (size_t)nth * (size_t)cols;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (e.first[r] == e.first[r + 1]) { /* no token: G = 0, leak only */
                arb_upd_row(w, r, 0, cols, zero, &pl, &acc[r]);
                continue;
            }
            grad_row(e.dq, e.list, e.first, r, cols, g);
            arb_upd_row(w, r, 0, cols, g, &pl, &acc[r]);
        }
    }
    s = arb_upd_finish(w, c, acc, p, st, stats);
done:
    emb_work_free(&e);
    arb_free(c);
    arb_free(mult);
    arb_free(acc);
    arb_free(gbuf);
    return s;
}
