/* The CUDA model: the same forward / tape / backward / update as model.c, with every parameter,
 * tape buffer and activation in device memory. Ternary ops go through the generic entry points,
 * which dispatch on the tensor's device (src/ternary/device_dispatch.h); the float glue runs in
 * src/cuda/model_glue.cu.
 *
 * Why host mirrors: checkpoints, the audit and the trainer's log read tensors through
 * arb_model_ternary_at as host arrays; each tensor keeps its host arb_ternary (w) and a device
 * copy (dw). Enumeration downloads when the device is newer and marks the mirrors to be uploaded
 * before the next forward, so a checkpoint saved from the GPU has the same bytes as one from the
 * CPU and loads on either.
 *
 * Why fused updates: in the configurations this path runs (text only; one use per tensor and
 * step), a tensor's whole tape is its one use, so its update can run inside the backward of that
 * use (arb_cuda_ternary_linear_backward: dx through the old trits and the fold in one pass). The
 * update of a tensor depends only on its own state and tape and on (seed, step, id), never on
 * the order tensors are updated in, so this gives exactly the state of updating after the whole
 * backward (arb_model_cuda_set_fused(m, false) does that; tests compare the two).
 *
 * Determinism: integer state is bit-identical to the CPU reference for equal tape inputs (the
 * ternary ops guarantee it); the glue reduces in a fixed order, so a run repeats bit for bit. */
#ifdef ARB_HAVE_CUDA

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/cuda.h"
#include "model_cuda.h"
#include "model_priv.h"

/* ---------------------------------------------------------------- configuration */
arb_status arb_mcu_check_config(const arb_model_config *c) {
    const char *what = NULL;
    if (c->enable_vq) what = "the VQ bridge (enable_vq)";
    else if (c->enable_memory) what = "memory modules (enable_memory)";
    else if (c->enable_moe) what = "MoE + ACT (enable_moe)";
    else if (c->enable_output_router) what = "the output router (enable_output_router)";
    else if (c->enable_graph && c->graph_window != 0) what = "graph windows (graph_window > 0)";
    else if (c->enable_graph && c->graph_hops != 1) what = "graph hops > 1";
    if (what)
        return arb_error(ARB_ERR_UNSUPPORTED,
                         "model create: config '%s' uses %s, which the CUDA model does not run yet (use --device cpu)",
                         c->name, what);
    const int hd = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    if (c->enable_graph && !(hd == 16 || hd == 32 || hd == 64 || hd == 128))
        return arb_error(ARB_ERR_UNSUPPORTED,
                         "model create: config '%s' has attention heads of %d, which the CUDA model does not run "
                         "(16, 32, 64 or 128; use --device cpu)",
                         c->name, hd);
    if (arb_cuda_device_count() <= 0)
        return arb_error(ARB_ERR_UNSUPPORTED, "model create: no CUDA device is available");
    return ARB_OK;
}

/* ---------------------------------------------------------------- device memory */
static arb_status dalloc(void **p, size_t n) {
    if (*p) arb_cuda_free(*p);
    *p = NULL;
    return arb_cuda_malloc(p, n ? n : 16);
}

static void dfree(void *pp) {
    void **p = (void **)pp;
    if (*p) arb_cuda_free(*p);
    *p = NULL;
}

static arb_status nbytes(size_t a, size_t b, size_t *out) {
    if (!arb_mul_size(a, b, out)) return arb_error(ARB_ERR_OVERFLOW, "cuda model: buffer size overflows");
    return ARB_OK;
}

/* Grow a device tape array keeping its first `keep` bytes. */
static arb_status dgrow(void **p, size_t keep, size_t n) {
    void *q = NULL;
    ARB_TRY(arb_cuda_malloc(&q, n ? n : 16));
    if (*p && keep) {
        arb_status s = arb_cuda_copy_d2d(q, *p, keep);
        if (s != ARB_OK) {
            arb_cuda_free(q);
            return s;
        }
    }
    if (*p) arb_cuda_free(*p);
    *p = q;
    return ARB_OK;
}

static arb_status dparam_reserve(tparam *P, int64_t need) {
    int64_t want = P->n + need;
    if (want <= P->dcap) return ARB_OK;
    int64_t cap = P->dcap ? P->dcap : 64;
    while (cap < want) cap *= 2;
    size_t n = (size_t)P->n, c = (size_t)cap, rows = (size_t)P->w.rows, cols = (size_t)P->w.cols,
           cp = (size_t)P->w.cols_pad, a, b;
    if (P->kind == P_GAIN) {
        ARB_TRY(nbytes(c * cols, sizeof(float), &b));
        ARB_TRY(dgrow((void **)&P->d_x, n * cols * sizeof(float), b));
        ARB_TRY(dgrow((void **)&P->d_dy, n * cols * sizeof(float), b));
        ARB_TRY(dgrow((void **)&P->d_xs, n * sizeof(float), c * sizeof(float)));
    } else if (P->kind == P_EMB) {
        ARB_TRY(nbytes(c * cols, sizeof(float), &b));
        ARB_TRY(dgrow((void **)&P->d_idx, n * sizeof(int32_t), c * sizeof(int32_t)));
        ARB_TRY(dgrow((void **)&P->d_dy, n * cols * sizeof(float), b));
    } else {
        ARB_TRY(nbytes(c, cp, &a));
        ARB_TRY(nbytes(c * rows, sizeof(float), &b));
        ARB_TRY(dgrow((void **)&P->d_xq, n * cp, a));
        ARB_TRY(dgrow((void **)&P->d_xs, n * sizeof(float), c * sizeof(float)));
        ARB_TRY(dgrow((void **)&P->d_dy, n * rows * sizeof(float), b));
    }
    P->dcap = cap;
    return ARB_OK;
}

static arb_status set_dev(const arb_model *m) { return arb_cuda_set_device(m->dev.index); }

arb_status arb_mcu_init(arb_model *m) {
    ARB_TRY(set_dev(m));
    m->cu_fuse = true;
    for (int32_t i = 0; i < m->np; i++) ARB_TRY(arb_cuda_ternary_upload(&m->p[i].dw, &m->p[i].w, m->dev.index));
    return ARB_OK;
}

void arb_mcu_release(arb_model *m) {
    for (int32_t i = 0; i < m->np; i++) {
        tparam *P = &m->p[i];
        if (P->dw.trits) arb_ternary_free(&P->dw);
        dfree(&P->d_xq);
        dfree(&P->d_xs);
        dfree(&P->d_x);
        dfree(&P->d_dy);
        dfree(&P->d_idx);
    }
    if (m->L)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            dfree(&m->L[l].d_qkv);
            dfree(&m->L[l].d_o);
            dfree(&m->L[l].d_lse);
            dfree(&m->L[l].d_u);
        }
    dfree(&m->d_tokens);
    dfree(&m->d_targets);
    dfree(&m->d_x);
    dfree(&m->d_h);
    dfree(&m->d_t1);
    dfree(&m->d_t2);
    dfree(&m->d_big);
    dfree(&m->d_logits);
    dfree(&m->d_delta);
    dfree(&m->d_rope);
    dfree(&m->d_rowloss);
    dfree(&m->d_losssum);
}

arb_status arb_mcu_upload(arb_model *m) {
    ARB_TRY(set_dev(m));
    for (int32_t i = 0; i < m->np; i++) {
        tparam *P = &m->p[i];
        if (P->dw.trits) arb_ternary_free(&P->dw);
        ARB_TRY(arb_cuda_ternary_upload(&P->dw, &P->w, m->dev.index));
    }
    m->dev_stale = false;
    m->host_stale = false;
    return ARB_OK;
}

arb_status arb_mcu_sync_host(arb_model *m) {
    if (!m->host_stale) return ARB_OK;
    ARB_TRY(set_dev(m));
    for (int32_t i = 0; i < m->np; i++) ARB_TRY(arb_cuda_ternary_download(&m->p[i].w, &m->p[i].dw));
    m->host_stale = false;
    return ARB_OK;
}

/* Activation buffers for B sequences of T (grown, never shrunk). */
static arb_status ensure_work(arb_model *m, int64_t B, int64_t T) {
    const arb_model_config *c = &m->cfg;
    const int64_t N = B * T, D = c->dim, V = c->vocab, H = c->n_heads, F = arb_mdl_mlp_hidden(c);
    const int64_t wide = F > 3 * D ? F : 3 * D;
    size_t b;
    if (N > m->d_capN) {
        ARB_TRY(dalloc((void **)&m->d_tokens, (size_t)N * sizeof(int32_t)));
        ARB_TRY(dalloc((void **)&m->d_targets, (size_t)N * sizeof(int32_t)));
        ARB_TRY(nbytes((size_t)(N * D), sizeof(float), &b));
        ARB_TRY(dalloc((void **)&m->d_h, b));
        ARB_TRY(dalloc((void **)&m->d_t1, b));
        ARB_TRY(dalloc((void **)&m->d_t2, b));
        ARB_TRY(nbytes((size_t)(N * wide), sizeof(float), &b));
        ARB_TRY(dalloc((void **)&m->d_big, b));
        ARB_TRY(nbytes((size_t)(N * V), sizeof(float), &b));
        ARB_TRY(dalloc((void **)&m->d_logits, b));
        ARB_TRY(dalloc((void **)&m->d_rowloss, (size_t)N * sizeof(double)));
        ARB_TRY(dalloc((void **)&m->d_losssum, sizeof(double)));
        ARB_TRY(nbytes((size_t)(N * H), sizeof(float), &b));
        ARB_TRY(dalloc((void **)&m->d_delta, b));
        for (int l = 0; l < c->n_layers; l++) {
            layer *Ly = &m->L[l];
            if (Ly->qkv >= 0) {
                ARB_TRY(nbytes((size_t)(N * 3 * D), sizeof(float), &b));
                ARB_TRY(dalloc((void **)&Ly->d_qkv, b));
                ARB_TRY(nbytes((size_t)(N * D), sizeof(float), &b));
                ARB_TRY(dalloc((void **)&Ly->d_o, b));
                ARB_TRY(nbytes((size_t)(N * H), sizeof(float), &b));
                ARB_TRY(dalloc((void **)&Ly->d_lse, b));
            }
            if (Ly->w1 >= 0) {
                ARB_TRY(nbytes((size_t)(N * F), sizeof(float), &b));
                ARB_TRY(dalloc((void **)&Ly->d_u, b));
            }
        }
        m->d_capN = N;
    }
    if (c->enable_graph && c->rotary && T > m->d_capT) {
        /* the rotary table exactly as glue.c computes it (double angle, rounded to float) */
        const int hd = c->dim / c->n_heads, half = hd / 2;
        float *cs = malloc(sizeof(float) * 2 * (size_t)(T * half > 0 ? T * half : 1));
        if (!cs) return arb_error(ARB_ERR_OOM, "cuda model: rotary table");
        for (int64_t t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                double inv = pow(10000.0, -(2.0 * i) / hd);
                double a = (double)t * inv;
                cs[2 * (t * half + i)] = (float)cos(a);
                cs[2 * (t * half + i) + 1] = (float)sin(a);
            }
        arb_status s = dalloc((void **)&m->d_rope, sizeof(float) * 2 * (size_t)(T * half > 0 ? T * half : 1));
        if (s == ARB_OK) s = arb_cuda_copy_h2d(m->d_rope, cs, sizeof(float) * 2 * (size_t)(T * half));
        if (s == ARB_OK) s = arb_cuda_synchronize(); /* cs is pageable and freed next */
        free(cs);
        ARB_TRY(s);
        m->d_capT = T;
    }
    return ARB_OK;
}

/* ---------------------------------------------------------------- op wrappers (one use each) */
/* relu2: x is the MLP's hidden pre-activation and the linear's input is ReLU²(x), formed as the
 * quantization reads it (no ReLU² pass, no buffer for it). */
static arb_status lin_fwd_q(arb_model *m, int32_t i, const float *x, int64_t n, float *y, int64_t *off, bool relu2) {
    tparam *P = &m->p[i];
    ARB_TRY(dparam_reserve(P, n));
    int64_t o = P->n;
    int8_t *xq = P->d_xq + o * P->w.cols_pad;
    if (relu2) ARB_TRY(arb_mcu_quantize_rows_relu2(x, n, P->w.cols, P->w.cols_pad, xq, P->d_xs + o));
    else ARB_TRY(arb_cuda_quantize_rows(x, n, P->w.cols, P->w.cols_pad, xq, P->d_xs + o));
    ARB_TRY(arb_ternary_linear_forward(&P->dw, xq, P->d_xs + o, n, y));
    P->n += n;
    if (off) *off = o;
    return ARB_OK;
}

static arb_status lin_fwd(arb_model *m, int32_t i, const float *x, int64_t n, float *y, int64_t *off) {
    return lin_fwd_q(m, i, x, n, y, off, false);
}

/* The norm's input x (+ add, the residual's pending branch) goes straight into its tape, which
 * then holds the residual stream (*xt): no separate residual buffer, no copies. */
static arb_status norm_fwd(arb_model *m, int32_t i, const float *x, const float *add, int64_t n, float *y, int64_t *off,
                           float **xt) {
    tparam *P = &m->p[i];
    ARB_TRY(dparam_reserve(P, n));
    int64_t o = P->n, D = P->w.cols;
    float *t = P->d_x + o * D;
    if (add) {
        ARB_TRY(arb_mcu_rmsnorm_forward_add(&P->dw, x, add, t, n, m->cfg.norm_eps, y, P->d_xs + o)); /* t = x + add */
    } else {
        if (t != x) ARB_TRY(arb_cuda_copy_d2d(t, x, sizeof(float) * (size_t)(n * D)));
        ARB_TRY(arb_ternary_rmsnorm_forward(&P->dw, t, n, m->cfg.norm_eps, y, P->d_xs + o));
    }
    P->n += n;
    if (off) *off = o;
    if (xt) *xt = t;
    return ARB_OK;
}

/* A use can carry its tensor's update when it is the tensor's whole tape. */
static bool fuse_use(const arb_model *m, const tparam *P, int64_t off, int64_t n) {
    return m->cu_fuse && off == 0 && n == P->n && !P->done;
}

static arb_status lin_bwd(arb_model *m, int32_t i, int64_t off, const float *dy, int64_t n, float *dx,
                          const arb_model_step_params *sp, arb_model_step_stats *tot) {
    tparam *P = &m->p[i];
    float *slot = P->d_dy + off * P->w.rows;
    if (slot != dy) ARB_TRY(arb_cuda_copy_d2d(slot, dy, sizeof(float) * (size_t)(n * P->w.rows)));
    const uint64_t seed = sp->update.seed, step = sp->update.step;
    if (fuse_use(m, P, off, n)) {
        arb_update_params up;
        arb_mdl_update_prep(m, i, sp, &up);
        (void)tot; /* P->st and P->last are written at the step's collect; the bookkeeping follows it */
        if (dx)
            ARB_TRY(arb_cuda_ternary_linear_backward(&P->dw, P->d_xq, P->d_xs, slot, n, arb_mdl_use_key(P, seed, step),
                                                     dx, &up, &P->st, &P->last));
        else
            ARB_TRY(arb_ternary_linear_backward_update(&P->dw, P->d_xq, P->d_xs, slot, n, &up, &P->st, &P->last));
        P->done = true;
        return ARB_OK;
    }
    if (!dx) return ARB_OK;
    return arb_ternary_linear_backward_x(&P->dw, slot, n, arb_mdl_use_key(P, seed, step), dx);
}

/* dx = res (the residual gradient, or NULL) + the norm's input gradient. */
static arb_status norm_bwd(arb_model *m, int32_t i, int64_t off, const float *dy, int64_t n, float *dx, const float *res,
                           const arb_model_step_params *sp, arb_model_step_stats *tot) {
    tparam *P = &m->p[i];
    int64_t D = P->w.cols;
    float *slot = P->d_dy + off * D;
    if (slot != dy) ARB_TRY(arb_cuda_copy_d2d(slot, dy, sizeof(float) * (size_t)(n * D)));
    if (fuse_use(m, P, off, n)) {
        arb_update_params up;
        arb_mdl_update_prep(m, i, sp, &up);
        (void)tot;
        ARB_TRY(arb_mcu_rmsnorm_backward_update_add(&P->dw, P->d_x + off * D, P->d_xs + off, slot, res, n, dx, &up,
                                                    &P->st, &P->last));
        P->done = true;
        return ARB_OK;
    }
    return arb_mcu_rmsnorm_backward_update_add(&P->dw, P->d_x + off * D, P->d_xs + off, slot, res, n, dx, NULL, NULL,
                                               NULL);
}

/* The deferred update of tensor i over its whole tape (the CPU's order and calls). */
static arb_status update_param(arb_model *m, int32_t i, const arb_model_step_params *sp, arb_model_step_stats *tot) {
    tparam *P = &m->p[i];
    arb_update_params up;
    arb_mdl_update_prep(m, i, sp, &up);
    arb_update_stats *st = &P->last; /* written at the step's collect */
    (void)tot;
    switch (P->kind) {
    case P_GAIN: {
        float *dxs = NULL;
        size_t b;
        ARB_TRY(nbytes((size_t)(P->n * P->w.cols), sizeof(float), &b));
        ARB_TRY(arb_cuda_malloc((void **)&dxs, b));
        arb_status s = arb_ternary_rmsnorm_backward_update(&P->dw, P->d_x, P->d_xs, P->d_dy, P->n, dxs, &up, &P->st, st);
        arb_cuda_free(dxs);
        ARB_TRY(s);
        break;
    }
    case P_EMB:
        ARB_TRY(arb_ternary_embedding_backward_update(&P->dw, P->d_idx, P->d_dy, P->n, &up, &P->st, st));
        break;
    default:
        ARB_TRY(arb_ternary_linear_backward_update(&P->dw, P->d_xq, P->d_xs, P->d_dy, P->n, &up, &P->st, st));
        break;
    }
    P->done = true;
    return ARB_OK;
}

/* ---------------------------------------------------------------- attention */
static arb_status attn_forward(arb_model *m, layer *Ly) {
    const arb_model_config *c = &m->cfg;
    const int64_t D = c->dim;
    return arb_mcu_attn_forward(Ly->d_qkv, 3 * D, c->rotary ? m->d_rope : NULL, Ly->d_o, D, Ly->d_lse, m->B, m->T,
                                c->n_heads, c->dim / c->n_heads);
}

/* dqkv (N, 3D) from dy (N, D). */
static arb_status attn_backward(arb_model *m, layer *Ly, const float *dy, float *dqkv) {
    const arb_model_config *c = &m->cfg;
    const int64_t D = c->dim;
    return arb_mcu_attn_backward(Ly->d_qkv, 3 * D, c->rotary ? m->d_rope : NULL, Ly->d_o, D, Ly->d_lse, dy, D,
                                 m->d_delta, dqkv, 3 * D, m->B, m->T, c->n_heads, c->dim / c->n_heads);
}

/* ---------------------------------------------------------------- forward */
static arb_status forward_body(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                               bool train, arb_loss_parts *lp);

/* The forward's activation quantizations report a NaN through one deferred flag (one 4-byte
 * read-back after the loss's) instead of synchronizing once per linear layer. */
arb_status arb_mcu_forward(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                           bool train, arb_loss_parts *lp) {
    ARB_TRY(set_dev(m));
    ARB_TRY(arb_cuda_checks_defer());
    arb_status s = forward_body(m, tokens, targets, B, T, train, lp);
    arb_status c = arb_cuda_checks_collect();
    if (s == ARB_OK && c != ARB_OK) m->tape = false; /* no backward from a forward that saw a bad value */
    return s != ARB_OK ? s : c;
}

static arb_status forward_body(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                               bool train, arb_loss_parts *lp) {
    const arb_model_config *c = &m->cfg;
    const int64_t N = B * T, V = c->vocab;
    const int H = c->n_heads;
    ARB_TRY(set_dev(m));
    if (m->dev_stale) ARB_TRY(arb_mcu_upload(m));
    if (B * (int64_t)H > 65535) return arb_error(ARB_ERR_UNSUPPORTED, "cuda model: batch x heads %lld > 65535", (long long)(B * H));
    ARB_TRY(ensure_work(m, B, T));
    m->B = B;
    m->T = T;
    m->N = N;
    m->tape = false;
    for (int32_t i = 0; i < m->np; i++) {
        m->p[i].n = 0;
        m->p[i].uses = 0;
        m->p[i].done = false;
    }
    ARB_TRY(arb_cuda_copy_h2d(m->d_tokens, tokens, sizeof(int32_t) * (size_t)N));
    if (targets) ARB_TRY(arb_cuda_copy_h2d(m->d_targets, targets, sizeof(int32_t) * (size_t)N));
    arb_loss_parts L = {0};

    tparam *Pe = &m->p[m->embed];
    ARB_TRY(dparam_reserve(Pe, N));
    ARB_TRY(arb_cuda_copy_d2d(Pe->d_idx, m->d_tokens, sizeof(int32_t) * (size_t)N));
    Pe->n = N;
    /* the embedding lands in the first norm's tape: the start of the residual stream */
    const int32_t first = c->n_layers > 0 ? (m->L[0].qkv >= 0 ? m->L[0].an : m->L[0].fn) : m->fnorm;
    ARB_TRY(dparam_reserve(&m->p[first], N));
    float *x = m->p[first].d_x;
    const float *add = NULL; /* the residual's pending branch output */
    ARB_TRY(arb_ternary_embedding_forward(&Pe->dw, m->d_tokens, N, x));

    for (int l = 0; l < c->n_layers; l++) {
        layer *Ly = &m->L[l];
        if (Ly->qkv >= 0) {
            ARB_TRY(norm_fwd(m, Ly->an, x, add, N, m->d_h, &Ly->off_an, &x));
            ARB_TRY(lin_fwd(m, Ly->qkv, m->d_h, N, Ly->d_qkv, &Ly->off_qkv));
            ARB_TRY(attn_forward(m, Ly));
            ARB_TRY(lin_fwd(m, Ly->o, Ly->d_o, N, m->d_t2, &Ly->off_o));
            add = m->d_t2;
        }
        ARB_TRY(norm_fwd(m, Ly->fn, x, add, N, m->d_h, &Ly->off_fn, &x));
        ARB_TRY(lin_fwd(m, Ly->w1, m->d_h, N, Ly->d_u, &Ly->off_w1));
        ARB_TRY(lin_fwd_q(m, Ly->w2, Ly->d_u, N, m->d_t2, &Ly->off_w2, true)); /* input ReLU²(u) */
        add = m->d_t2;
    }
    int64_t off;
    ARB_TRY(norm_fwd(m, m->fnorm, x, add, N, m->d_h, &off, NULL));
    ARB_TRY(lin_fwd(m, m->head, m->d_h, N, m->d_logits, &off));
    if (targets) {
        int64_t cnt = 0;
        for (int64_t r = 0; r < N; r++)
            if (targets[r] >= 0 && targets[r] != ARB_TOK_PAD && targets[r] < V) cnt++;
        float gscale = 1.0f / (float)(cnt > 0 ? cnt : 1);
        /* the logits' gradient goes straight into the head's tape slot */
        float *dl = train ? m->p[m->head].d_dy + off * V : NULL;
        ARB_TRY(arb_mcu_ce(m->d_logits, m->d_targets, N, V, gscale, dl, m->d_rowloss));
        /* summed on the device (a fixed tree): one 8-byte read-back, the step's only wait here */
        double sum = 0.0;
        ARB_TRY(arb_mcu_sum_rows(m->d_rowloss, N, m->d_losssum));
        ARB_TRY(arb_cuda_copy_d2h(&sum, m->d_losssum, sizeof sum));
        L.ce = cnt ? sum / (double)cnt : 0.0;
        L.n_targets = cnt;
        m->n_counted = cnt;
        L.total = L.ce;
    }
    m->tape = train;
    if (lp) *lp = L;
    return ARB_OK;
}

arb_status arb_mcu_logits_row(arb_model *m, int64_t row, float *logits) {
    const int64_t V = m->cfg.vocab;
    return arb_cuda_copy_d2h(logits, m->d_logits + row * V, sizeof(float) * (size_t)V);
}

/* ---------------------------------------------------------------- backward + update */
/* The output-gradient slot of tensor i's use at row offset off. */
static float *gslot(arb_model *m, int32_t i, int64_t off) {
    tparam *P = &m->p[i];
    return P->d_dy + off * (P->kind == P_GAIN || P->kind == P_EMB ? P->w.cols : P->w.rows);
}

/* Every gradient is written where its consumer's tape wants it: the residual gradient lives in
 * the output-gradient slot of the next linear down (w2, o) and finally the embedding's, so no
 * op copies its dy. */
static arb_status backward(arb_model *m, const arb_model_step_params *sp, arb_model_step_stats *tot) {
    const arb_model_config *c = &m->cfg;
    const int64_t N = m->N;
    tparam *Pe = &m->p[m->embed];
    const int last = c->n_layers - 1;
    float *dx = last >= 0 ? gslot(m, m->L[last].w2, m->L[last].off_w2) : Pe->d_dy;

    ARB_TRY(lin_bwd(m, m->head, 0, gslot(m, m->head, 0), N, gslot(m, m->fnorm, 0), sp, tot));
    ARB_TRY(norm_bwd(m, m->fnorm, 0, gslot(m, m->fnorm, 0), N, dx, NULL, sp, tot));
    for (int l = last; l >= 0; l--) {
        layer *Ly = &m->L[l];
        float *du = gslot(m, Ly->w1, Ly->off_w1), *dn = gslot(m, Ly->fn, Ly->off_fn);
        float *below = l > 0 ? gslot(m, m->L[l - 1].w2, m->L[l - 1].off_w2) : Pe->d_dy;
        float *mid = Ly->qkv >= 0 ? gslot(m, Ly->o, Ly->off_o) : below;
        ARB_TRY(lin_bwd(m, Ly->w2, Ly->off_w2, dx, N, m->d_big, sp, tot));
        ARB_TRY(arb_mcu_relu2_backward(Ly->d_u, m->d_big, N * arb_mdl_mlp_hidden(c), du));
        ARB_TRY(lin_bwd(m, Ly->w1, Ly->off_w1, du, N, dn, sp, tot));
        ARB_TRY(norm_bwd(m, Ly->fn, Ly->off_fn, dn, N, mid, dx, sp, tot)); /* mid = dx + the norm's dx */
        dx = mid;
        if (Ly->qkv >= 0) {
            float *dqkv = gslot(m, Ly->qkv, Ly->off_qkv), *da = gslot(m, Ly->an, Ly->off_an);
            ARB_TRY(lin_bwd(m, Ly->o, Ly->off_o, dx, N, m->d_t1, sp, tot));
            ARB_TRY(attn_backward(m, Ly, m->d_t1, dqkv));
            ARB_TRY(lin_bwd(m, Ly->qkv, Ly->off_qkv, dqkv, N, da, sp, tot));
            ARB_TRY(norm_bwd(m, Ly->an, Ly->off_an, da, N, below, dx, sp, tot));
            dx = below;
        }
    }
    /* every tensor not yet updated folds its tape now, in index order */
    for (int32_t i = 0; i < m->np; i++) {
        if (m->p[i].kind == P_MEM || m->p[i].n == 0 || m->p[i].done) continue;
        ARB_TRY(update_param(m, i, sp, tot));
    }
    return ARB_OK;
}

/* The whole backward runs in deferred-check mode: no op waits for the device (the updates plan,
 * measure their norm and move E on the device; their finishes overlap the next layers on a second
 * stream: arb_cuda_updates_overlap), and the one synchronize at the end (collect)
 * brings back the NaN flag and every tensor's grad_norm and statistics. The bookkeeping that
 * reads the statistics (flip balance, totals) then runs per tensor, in index order: each tensor
 * is updated once per step and its bookkeeping reads only its own statistics, so this gives the
 * numbers of doing it right after each update. */
arb_status arb_mcu_backward_update(arb_model *m, const arb_model_step_params *sp, arb_model_step_stats *stats) {
    ARB_TRY(set_dev(m));
    m->tape = false;
    arb_model_step_stats tot = {0};
    ARB_TRY(arb_cuda_checks_defer());
    arb_cuda_updates_overlap(true); /* each tensor is updated once, after its last use this step */
    arb_status s = backward(m, sp, &tot);
    arb_cuda_updates_overlap(false);
    arb_status c = arb_cuda_checks_collect(); /* also after a failure: the records of the updates that ran */
    /* the device state moved (also on a failure part way: never upload the old mirrors over it) */
    m->host_stale = true;
    m->dev_stale = false;
    ARB_TRY(s);
    ARB_TRY(c);
    for (int32_t i = 0; i < m->np; i++)
        if (m->p[i].done) arb_mdl_update_finish(m, i, sp, &m->p[i].last, &tot);
    if (stats) *stats = tot;
    return ARB_OK;
}

#else
typedef int arb_model_cuda_unused; /* ISO C: a translation unit is not empty */
#endif
