/* ARBModel: ternary embedding → [VQ bridge] → layers of {graph path, memory read, MLP or
 * MoE-in-ACT} → final norm → byte head [+ output router]; hand-written backward with fused
 * ternary updates.
 *
 * Why a tape of stacked uses: a ternary tensor may be used several times in one step (the
 * ACT loop reuses the experts, the norms run once per iteration). Each use appends its
 * quantized input rows to the tensor's stack and remembers the offset; backward writes the
 * output gradient rows at the same offset and takes dx through the *old* trits; only after the
 * whole backward does every tensor fold all its rows into T_accum in one fused update. So the
 * weight gradient is exact over every use and never exists as a float tensor.
 * See docs/ARCHITECTURE.md, "Model". */
#include "model_internal.h"

#include <math.h>

#if defined(__clang__)
/* `omp simd` is a request: under the sanitizers clang may decline it; not an error. */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_priv.h"
#ifdef ARB_HAVE_CUDA
#include "arbitor/cuda.h"
#endif

/* ---------------------------------------------------------------- allocation helpers */
static void *xrealloc_copy(void *old, size_t old_bytes, size_t new_bytes) {
    void *p = arb_alloc(new_bytes);
    if (!p) return NULL;
    if (old && old_bytes) memcpy(p, old, old_bytes);
    arb_free(old);
    return p;
}

static arb_status grow_f(float **p, size_t old_n, size_t n) {
    float *q = xrealloc_copy(*p, old_n * sizeof(float), (n ? n : 1) * sizeof(float));
    if (!q) return arb_error(ARB_ERR_OOM, "model: %zu floats", n);
    *p = q;
    return ARB_OK;
}

/* Whether a tensor's row exponent E trains under this config (exp_mode: 0 none, 1 all, 2 all but
 * the norm gains; memory slots and the VQ codebook never). A fixed E is 0 and carries no state. */
static bool exp_trains(const arb_model_config *c, int kind) {
    if (kind == P_MEM || kind == P_CODE || c->exp_mode == 0) return false;
    return !(c->exp_mode == 2 && kind == P_GAIN);
}

static arb_status add_param(arb_model *m, const char *name, int kind, int64_t rows, int64_t cols, int32_t *out) {
    if (m->np == m->cap_p) {
        int32_t cap = m->cap_p ? m->cap_p * 2 : 32;
        tparam *q = realloc(m->p, sizeof(tparam) * (size_t)cap);
        if (!q) return arb_error(ARB_ERR_OOM, "model: tensor table");
        m->p = q;
        m->cap_p = cap;
    }
    tparam *P = &m->p[m->np];
    memset(P, 0, sizeof *P);
    snprintf(P->name, sizeof P->name, "%s", name);
    P->kind = kind;
    arb_ternary_kind tk = kind == P_GAIN ? ARB_TERNARY_GAIN
                          : (kind == P_EMB || kind == P_MEM || kind == P_CODE) ? ARB_TERNARY_EMBED
                                                                               : ARB_TERNARY_LINEAR;
    ARB_TRY(arb_ternary_init(&P->w, rows, cols, tk, m->np + 1, arb_cpu())); /* host (mirror on CUDA) */
    m->np++;
    if (!exp_trains(&m->cfg, kind)) ARB_TRY(arb_ternary_fix_exponent(&P->w));
    ARB_TRY(arb_ternary_randomize(&P->w, m->seed));
    *out = m->np - 1;
    return ARB_OK;
}

/* Make room for `need` more stacked rows of P (copying what is there). */
static arb_status param_reserve(tparam *P, int64_t need) {
    int64_t want = P->n + need;
    if (want <= P->cap) return ARB_OK;
    int64_t cap = P->cap ? P->cap : 64;
    while (cap < want) cap *= 2;
    int64_t cp = P->w.cols_pad, rows = P->w.rows, cols = P->w.cols;
    size_t n = (size_t)P->n, c = (size_t)cap;
    if (P->kind == P_GAIN) {
        ARB_TRY(grow_f(&P->x, n * (size_t)cols, c * (size_t)cols));
        ARB_TRY(grow_f(&P->xs, n, c));
        ARB_TRY(grow_f(&P->dy, n * (size_t)cols, c * (size_t)cols));
    } else if (P->kind == P_EMB) {
        int32_t *q = xrealloc_copy(P->idx, n * sizeof(int32_t), c * sizeof(int32_t));
        if (!q) return arb_error(ARB_ERR_OOM, "model: %s index stack", P->name);
        P->idx = q;
        ARB_TRY(grow_f(&P->dy, n * (size_t)cols, c * (size_t)cols));
    } else {
        int8_t *q = xrealloc_copy(P->xq, n * (size_t)cp, c * (size_t)cp);
        if (!q) return arb_error(ARB_ERR_OOM, "model: %s input stack", P->name);
        P->xq = q;
        ARB_TRY(grow_f(&P->xs, n, c));
        ARB_TRY(grow_f(&P->dy, n * (size_t)rows, c * (size_t)rows));
    }
    P->cap = cap;
    return ARB_OK;
}

static void param_release(tparam *P) {
    arb_ternary_free(&P->w);
    arb_free(P->xq);
    arb_free(P->xs);
    arb_free(P->x);
    arb_free(P->dy);
    arb_free(P->idx);
}

/* ---------------------------------------------------------------- op wrappers (one use each) */
/* y (n, rows) = W · quant(x (n, cols)); returns the use's row offset. */
static arb_status lin_fwd(arb_model *m, int32_t i, const float *x, int64_t n, float *y, int64_t *off) {
    tparam *P = &m->p[i];
    ARB_TRY(param_reserve(P, n));
    int64_t o = P->n;
    int8_t *xq = P->xq + o * P->w.cols_pad;
    ARB_TRY(arb_quantize_rows(x, n, P->w.cols, P->w.cols_pad, xq, P->xs + o));
    ARB_TRY(arb_ternary_linear_forward(&P->w, xq, P->xs + o, n, y));
    P->n += n;
    if (off) *off = o;
    return ARB_OK;
}

arb_rng_key arb_mdl_use_key(tparam *P, uint64_t seed, uint64_t step) {
    arb_rng_key k = arb_update_key(seed, step, P->w.id, ARB_RNG_DX);
    k.k0 ^= (uint32_t)P->uses * 0x9E3779B9u;
    P->uses++;
    return k;
}

/* dx (n, cols) = backward of the use at `off`, given dy (n, rows) (stored for the update). */
static arb_status lin_bwd(arb_model *m, int32_t i, int64_t off, const float *dy, int64_t n, float *dx, uint64_t seed,
                          uint64_t step) {
    tparam *P = &m->p[i];
    float *slot = P->dy + off * P->w.rows;
    if (slot != dy) memcpy(slot, dy, sizeof(float) * (size_t)(n * P->w.rows));
    if (!dx) return ARB_OK;
    return arb_ternary_linear_backward_x(&P->w, slot, n, arb_mdl_use_key(P, seed, step), dx);
}

static arb_status norm_fwd(arb_model *m, int32_t i, const float *x, int64_t n, float *y, int64_t *off) {
    tparam *P = &m->p[i];
    ARB_TRY(param_reserve(P, n));
    int64_t o = P->n, D = P->w.cols;
    memcpy(P->x + o * D, x, sizeof(float) * (size_t)(n * D));
    ARB_TRY(arb_ternary_rmsnorm_forward(&P->w, P->x + o * D, n, m->cfg.norm_eps, y, P->xs + o));
    P->n += n;
    if (off) *off = o;
    return ARB_OK;
}

/* dx = backward of the norm use at off (the gain's own update comes later, over all uses). */
static arb_status norm_bwd(arb_model *m, int32_t i, int64_t off, const float *dy, int64_t n, float *dx) {
    tparam *P = &m->p[i];
    int64_t D = P->w.cols;
    memcpy(P->dy + off * D, dy, sizeof(float) * (size_t)(n * D));
    return arb_ternary_rmsnorm_backward_update(&P->w, P->x + off * D, P->xs + off, P->dy + off * D, n, dx, NULL, NULL,
                                               NULL);
}

static void add_into(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd if (n > ARB_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---------------------------------------------------------------- create / free */
static int64_t mlp_hidden(const arb_model_config *c) { return (int64_t)c->mlp_mult * c->dim; }
int64_t arb_mdl_mlp_hidden(const arb_model_config *c) { return mlp_hidden(c); }
static int64_t expert_hidden(const arb_model_config *c) { return (int64_t)c->expert_mult * c->dim; }
static bool mem_at(const arb_model_config *c, int l) { return c->enable_memory && (l + 1) % c->mem_every == 0; }

arb_status arb_model_create(arb_model **out, const arb_model_config *cfg, uint64_t seed, arb_device dev) {
    if (!out || !cfg) return arb_error(ARB_ERR_INVALID_ARG, "model create: NULL argument");
    *out = NULL;
    ARB_TRY(arb_model_config_validate(cfg));
    if (dev.kind == ARB_DEVICE_CUDA) {
#ifdef ARB_HAVE_CUDA
        ARB_TRY(arb_mcu_check_config(cfg));
#else
        return arb_error(ARB_ERR_UNSUPPORTED, "model create: this build has no CUDA support");
#endif
    } else if (dev.kind != ARB_DEVICE_CPU) {
        return arb_error(ARB_ERR_INVALID_ARG, "model create: unknown device kind %d", (int)dev.kind);
    }
    arb_model *m = calloc(1, sizeof *m);
    if (!m) return arb_error(ARB_ERR_OOM, "model create");
    m->cfg = *cfg;
    m->dev = dev;
    m->seed = seed;
    m->embed = m->codebook = m->fnorm = m->head = m->rout = -1;
    const arb_model_config *c = &m->cfg;
    const int64_t D = c->dim;
    arb_status s = ARB_OK;
    char nm[64];
#define ADD(name, kind, r, cc, dst)                                         \
    do {                                                                   \
        if (s == ARB_OK) s = add_param(m, name, kind, r, cc, dst);          \
    } while (0)
    ADD("embed", P_EMB, c->vocab, D, &m->embed);
    if (c->enable_vq) ADD("vq.codebook", P_CODE, c->vq_codes, D, &m->codebook);
    m->L = calloc((size_t)(c->n_layers > 0 ? c->n_layers : 1), sizeof(layer));
    if (!m->L) s = arb_error(ARB_ERR_OOM, "model create: layers");
    for (int l = 0; l < c->n_layers && s == ARB_OK; l++) {
        layer *Ly = &m->L[l];
        Ly->an = Ly->qkv = Ly->o = Ly->mn = Ly->mq = Ly->mo = Ly->slots = -1;
        Ly->fn = Ly->w1 = Ly->w2 = Ly->rn = Ly->router = Ly->hn = Ly->halt = -1;
        if (c->enable_graph) {
            snprintf(nm, sizeof nm, "layers.%d.graph.norm", l); ADD(nm, P_GAIN, 1, D, &Ly->an);
            snprintf(nm, sizeof nm, "layers.%d.graph.qkv", l); ADD(nm, P_LIN, 3 * D, D, &Ly->qkv);
            snprintf(nm, sizeof nm, "layers.%d.graph.out", l); ADD(nm, P_LIN, D, D, &Ly->o);
        }
        if (mem_at(c, l)) {
            snprintf(nm, sizeof nm, "layers.%d.memory.norm", l); ADD(nm, P_GAIN, 1, D, &Ly->mn);
            snprintf(nm, sizeof nm, "layers.%d.memory.query", l); ADD(nm, P_LIN, D, D, &Ly->mq);
            snprintf(nm, sizeof nm, "layers.%d.memory.out", l); ADD(nm, P_LIN, D, D, &Ly->mo);
            snprintf(nm, sizeof nm, "layers.%d.memory.slots", l); ADD(nm, P_MEM, c->mem_slots, D, &Ly->slots);
        }
        if (c->enable_moe) {
            snprintf(nm, sizeof nm, "layers.%d.moe.norm", l); ADD(nm, P_GAIN, 1, D, &Ly->rn);
            snprintf(nm, sizeof nm, "layers.%d.moe.router", l); ADD(nm, P_LIN, c->n_experts, D, &Ly->router);
            Ly->e1 = calloc((size_t)c->n_experts, sizeof(int32_t));
            Ly->e2 = calloc((size_t)c->n_experts, sizeof(int32_t));
            if (!Ly->e1 || !Ly->e2) s = arb_error(ARB_ERR_OOM, "model create: experts");
            for (int e = 0; e < c->n_experts && s == ARB_OK; e++) {
                snprintf(nm, sizeof nm, "layers.%d.moe.experts.%d.up", l, e);
                ADD(nm, P_LIN, expert_hidden(c), D, &Ly->e1[e]);
                snprintf(nm, sizeof nm, "layers.%d.moe.experts.%d.down", l, e);
                ADD(nm, P_LIN, D, expert_hidden(c), &Ly->e2[e]);
            }
            snprintf(nm, sizeof nm, "layers.%d.act.norm", l); ADD(nm, P_GAIN, 1, D, &Ly->hn);
            snprintf(nm, sizeof nm, "layers.%d.act.halt", l); ADD(nm, P_LIN, 1, D, &Ly->halt);
            m->n_moe_layers++;
        } else {
            snprintf(nm, sizeof nm, "layers.%d.mlp.norm", l); ADD(nm, P_GAIN, 1, D, &Ly->fn);
            snprintf(nm, sizeof nm, "layers.%d.mlp.up", l); ADD(nm, P_LIN, mlp_hidden(c), D, &Ly->w1);
            snprintf(nm, sizeof nm, "layers.%d.mlp.down", l); ADD(nm, P_LIN, D, mlp_hidden(c), &Ly->w2);
        }
    }
    ADD("final.norm", P_GAIN, 1, D, &m->fnorm);
    ADD("head", P_LIN, c->vocab, D, &m->head);
    if (c->enable_output_router) ADD("output_router", P_LIN, 2, D, &m->rout);
#undef ADD
    if (s == ARB_OK) {
        m->balance = calloc((size_t)(m->np > 0 ? m->np : 1), 1);
        if (!m->balance) s = arb_error(ARB_ERR_OOM, "model create: flip balance");
    }
    if (s == ARB_OK && c->enable_vq) {
        m->vq_usage = calloc((size_t)c->vq_codes, sizeof(int32_t));
        if (!m->vq_usage) s = arb_error(ARB_ERR_OOM, "model create: vq usage");
    }
#ifdef ARB_HAVE_CUDA
    if (s == ARB_OK && dev.kind == ARB_DEVICE_CUDA) s = arb_mcu_init(m);
#endif
    if (s != ARB_OK) {
        arb_model_free(m);
        return s;
    }
    *out = m;
    return ARB_OK;
}

static void layer_release(layer *Ly) {
    free(Ly->e1);
    free(Ly->e2);
    arb_free(Ly->qkv_buf);
    arb_free(Ly->probs);
    arb_free(Ly->hopbuf);
    arb_free(Ly->mem_M);
    arb_free(Ly->mem_p);
    arb_free(Ly->u);
    arb_free(Ly->s);
    arb_free(Ly->g);
    arb_free(Ly->eu);
    arb_free(Ly->ey);
    arb_free(Ly->p);
    arb_free(Ly->w);
    arb_free(Ly->n_iter);
    arb_free(Ly->cum);
}

void arb_model_free(arb_model *m) {
    if (!m) return;
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) arb_mcu_release(m);
#endif
    for (int32_t i = 0; i < m->np; i++) param_release(&m->p[i]);
    free(m->p);
    if (m->L)
        for (int l = 0; l < m->cfg.n_layers; l++) layer_release(&m->L[l]);
    free(m->L);
    free(m->vq_usage);
    free(m->balance);
    arb_free(m->tokens);
    arb_free(m->targets);
    arb_free(m->codes);
    arb_free(m->rclass);
    arb_free(m->x);
    arb_free(m->h);
    arb_free(m->t1);
    arb_free(m->t2);
    arb_free(m->t3);
    arb_free(m->big);
    arb_free(m->e);
    arb_free(m->C);
    arb_free(m->logits);
    arb_free(m->dlogits);
    arb_free(m->rlog);
    arb_free(m->drlog);
    arb_graph_free(&m->graph);
    free(m);
}

const arb_model_config *arb_model_config_of(const arb_model *m) { return m ? &m->cfg : NULL; }

/* ---------------------------------------------------------------- work buffers */
#define ALLOC_F(ptr, count)                                                                      \
    do {                                                                                          \
        arb_free(ptr);                                                                            \
        size_t n_ = 0;                                                                            \
        if (!arb_mul_size((size_t)(count), sizeof(float), &n_)) return arb_error(ARB_ERR_OVERFLOW, "model buffers"); \
        (ptr) = arb_calloc(n_ ? n_ : 1);                                                          \
        if (!(ptr)) return arb_error(ARB_ERR_OOM, "model buffers: %zu bytes", n_);                \
    } while (0)

static arb_status ensure_work(arb_model *m, int64_t N) {
    if (N <= m->capN) return ARB_OK;
    const arb_model_config *c = &m->cfg;
    const int64_t D = c->dim, V = c->vocab, E = c->n_experts, It = c->act_max_iters;
    int64_t wide = 3 * D;
    if (mlp_hidden(c) > wide) wide = mlp_hidden(c);
    if (expert_hidden(c) > wide) wide = expert_hidden(c);
    if (c->mem_slots > wide) wide = c->mem_slots;
    ALLOC_F(m->x, N * D);
    ALLOC_F(m->h, N * D);
    ALLOC_F(m->t1, N * D);
    ALLOC_F(m->t2, N * D);
    ALLOC_F(m->t3, N * D);
    ALLOC_F(m->big, N * (wide + 16));
    ALLOC_F(m->e, N * D);
    ALLOC_F(m->logits, N * V);
    ALLOC_F(m->dlogits, N * V);
    ALLOC_F(m->rlog, N * 2);
    ALLOC_F(m->drlog, N * 2);
    int32_t **ib[4] = {&m->tokens, &m->targets, &m->codes, &m->rclass};
    for (int i = 0; i < 4; i++) {
        arb_free(*ib[i]);
        *ib[i] = arb_calloc(sizeof(int32_t) * (size_t)N);
        if (!*ib[i]) return arb_error(ARB_ERR_OOM, "model buffers: tokens");
    }
    if (c->enable_vq) ALLOC_F(m->C, (int64_t)c->vq_codes * D);
    for (int l = 0; l < c->n_layers; l++) {
        layer *Ly = &m->L[l];
        if (Ly->qkv >= 0) {
            ALLOC_F(Ly->qkv_buf, N * 3 * D);
            if (c->graph_hops > 1) ALLOC_F(Ly->hopbuf, (int64_t)(c->graph_hops - 1) * N * D);
        }
        if (Ly->slots >= 0) {
            ALLOC_F(Ly->mem_M, (int64_t)c->mem_slots * D);
            ALLOC_F(Ly->mem_p, N * c->mem_slots);
        }
        if (Ly->w1 >= 0) ALLOC_F(Ly->u, N * mlp_hidden(c));
        if (Ly->router >= 0) {
            ALLOC_F(Ly->s, (It + 1) * N * D);
            ALLOC_F(Ly->g, It * N * E);
            ALLOC_F(Ly->eu, It * E * N * expert_hidden(c));
            ALLOC_F(Ly->ey, It * E * N * D);
            ALLOC_F(Ly->p, It * N);
            ALLOC_F(Ly->w, It * N);
            ALLOC_F(Ly->cum, N);
            arb_free(Ly->n_iter);
            Ly->n_iter = arb_calloc(sizeof(int32_t) * (size_t)N);
            if (!Ly->n_iter) return arb_error(ARB_ERR_OOM, "model buffers: act");
        }
    }
    m->capN = N;
    return ARB_OK;
}

/* ---------------------------------------------------------------- forward */
static arb_status moe_act_forward(arb_model *m, layer *Ly, double *ponder, double *iters) {
    const arb_model_config *c = &m->cfg;
    const int64_t N = m->N, D = c->dim, E = c->n_experts, Fe = expert_hidden(c);
    const int It = c->act_max_iters;
    memcpy(Ly->s, m->x, sizeof(float) * (size_t)(N * D));
    memset(Ly->cum, 0, sizeof(float) * (size_t)N);
    memset(Ly->n_iter, 0, sizeof(int32_t) * (size_t)N);
    Ly->iters_run = 0;
    for (int t = 0; t < It; t++) {
        float *st = Ly->s + (int64_t)t * N * D, *sn = st + N * D;
        float *g = Ly->g + (int64_t)t * N * E;
        ARB_TRY(norm_fwd(m, Ly->rn, st, N, m->h, NULL));
        ARB_TRY(lin_fwd(m, Ly->router, m->h, N, m->big, NULL));
        arb_glue_softmax_rows(m->big, N, E, g);
        for (int e = 0; e < E; e++) {
            float *u = Ly->eu + ((int64_t)t * E + e) * N * Fe;
            float *y = Ly->ey + ((int64_t)t * E + e) * N * D;
            ARB_TRY(lin_fwd(m, Ly->e1[e], m->h, N, u, NULL));
            arb_glue_relu2(u, N * Fe, m->big);
            ARB_TRY(lin_fwd(m, Ly->e2[e], m->big, N, y, NULL));
        }
        arb_moe_combine(g, Ly->ey + (int64_t)t * E * N * D, N, E, D, sn);
        add_into(sn, st, N * D);
        ARB_TRY(norm_fwd(m, Ly->hn, sn, N, m->t1, NULL));
        ARB_TRY(lin_fwd(m, Ly->halt, m->t1, N, m->t2, NULL));
        float *p = Ly->p + (int64_t)t * N;
        for (int64_t n = 0; n < N; n++) p[n] = 1.0f / (1.0f + expf(-m->t2[n]));
        int64_t running = arb_act_step(p, N, t, It, c->act_eps, Ly->cum, Ly->n_iter, Ly->w + (int64_t)t * N);
        Ly->iters_run = t + 1;
        if (running == 0) break;
    }
    /* output = Σ_t w_t s_{t+1} */
    memset(m->x, 0, sizeof(float) * (size_t)(N * D));
    for (int t = 0; t < Ly->iters_run; t++) {
        const float *sn = Ly->s + (int64_t)(t + 1) * N * D, *w = Ly->w + (int64_t)t * N;
#pragma omp parallel for if (N * D > ARB_PAR_MIN) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < D; i++) m->x[n * D + i] += w[n] * sn[n * D + i];
    }
    double pc = 0.0, ic = 0.0;
    for (int64_t n = 0; n < N; n++) {
        int last = Ly->n_iter[n] - 1;
        pc += (double)Ly->n_iter[n] + (double)Ly->w[(int64_t)last * N + n];
        ic += Ly->n_iter[n];
    }
    *ponder += pc / (double)N;
    *iters += ic / (double)N;
    return ARB_OK;
}

arb_status arb_model_forward(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                             bool train, arb_loss_parts *lp) {
    if (!m || !tokens || B <= 0 || T <= 0)
        return arb_error(ARB_ERR_INVALID_ARG, "model forward: bad arguments (B=%lld, T=%lld)", (long long)B,
                         (long long)T);
    const arb_model_config *c = &m->cfg;
    if (T > c->ctx)
        return arb_error(ARB_ERR_SHAPE, "model forward: T = %lld exceeds ctx %d", (long long)T, c->ctx);
    if (train && !targets) return arb_error(ARB_ERR_INVALID_ARG, "model forward: training needs targets");
    int64_t N = 0;
    {
        size_t nn;
        if (!arb_mul_size((size_t)B, (size_t)T, &nn) || nn > ((size_t)1 << 31))
            return arb_error(ARB_ERR_OVERFLOW, "model forward: B*T too large");
        N = (int64_t)nn;
    }
    for (int64_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return arb_error(ARB_ERR_INVALID_ARG, "model forward: token %d at %lld is outside the vocabulary (%d)",
                             tokens[i], (long long)i, c->vocab);
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) return arb_mcu_forward(m, tokens, targets, B, T, train, lp);
#endif
    ARB_TRY(ensure_work(m, N));
    m->B = B;
    m->T = T;
    m->N = N;
    m->tape = false;
    for (int32_t i = 0; i < m->np; i++) {
        m->p[i].n = 0;
        m->p[i].uses = 0;
    }
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    if (targets) memcpy(m->targets, targets, sizeof(int32_t) * (size_t)N);
    const int64_t D = c->dim, V = c->vocab;
    arb_loss_parts L = {0};

    /* embedding */
    tparam *Pe = &m->p[m->embed];
    ARB_TRY(param_reserve(Pe, N));
    memcpy(Pe->idx, tokens, sizeof(int32_t) * (size_t)N);
    Pe->n = N;
    ARB_TRY(arb_ternary_embedding_forward(&Pe->w, tokens, N, m->x));

    /* VQ bridge: nearest code, commitment, gather + residual add */
    if (c->enable_vq) {
        tparam *Pc = &m->p[m->codebook];
        arb_ternary_dequant(&Pc->w, m->C);
        memcpy(m->e, m->x, sizeof(float) * (size_t)(N * D));
        double se = arb_vq_assign(m->e, m->C, N, c->vq_codes, D, m->codes);
        if (isnan(se)) return arb_error(ARB_ERR_OOM, "model forward: vq scratch");
        L.vq_commit = se / (double)N;
        for (int64_t n = 0; n < N; n++) add_into(m->x + n * D, m->C + (int64_t)m->codes[n] * D, D);
        if (train)
            for (int64_t n = 0; n < N; n++) m->vq_usage[m->codes[n]]++;
    }

    if (c->enable_graph)
        ARB_TRY(arb_graph_build(&m->graph, tokens, c->enable_vq ? m->codes : NULL, B, T, c->graph_window,
                                c->graph_anchors, c->enable_vq ? c->graph_vq_edges : 0));
    const int H = c->n_heads, hd = c->dim / c->n_heads;
    for (int l = 0; l < c->n_layers; l++) {
        layer *Ly = &m->L[l];
        if (Ly->qkv >= 0) {
            ARB_TRY(norm_fwd(m, Ly->an, m->x, N, m->h, &Ly->off_an));
            ARB_TRY(lin_fwd(m, Ly->qkv, m->h, N, Ly->qkv_buf, &Ly->off_qkv));
            if (c->rotary) {
                arb_glue_rope(Ly->qkv_buf, B, T, 3 * D, 0, H, hd, +1);
                arb_glue_rope(Ly->qkv_buf, B, T, 3 * D, D, H, hd, +1);
            }
            if (m->graph.n_edges * H > Ly->probs_cap) {
                arb_free(Ly->probs);
                Ly->probs_cap = m->graph.n_edges * H;
                Ly->probs = arb_alloc(sizeof(float) * (size_t)Ly->probs_cap);
                if (!Ly->probs) {
                    Ly->probs_cap = 0;
                    return arb_error(ARB_ERR_OOM, "model forward: graph probabilities");
                }
            }
            arb_graph_forward(&m->graph, H, hd, Ly->qkv_buf, 3 * D, c->graph_hops, Ly->probs, Ly->hopbuf, m->t1);
            ARB_TRY(lin_fwd(m, Ly->o, m->t1, N, m->t2, &Ly->off_o));
            add_into(m->x, m->t2, N * D);
        }
        if (Ly->slots >= 0) {
            ARB_TRY(norm_fwd(m, Ly->mn, m->x, N, m->h, &Ly->off_mn));
            ARB_TRY(lin_fwd(m, Ly->mq, m->h, N, m->t1, &Ly->off_mq));
            arb_ternary_dequant(&m->p[Ly->slots].w, Ly->mem_M);
            arb_slots_read(m->t1, Ly->mem_M, N, c->mem_slots, D, Ly->mem_p, m->t2);
            ARB_TRY(lin_fwd(m, Ly->mo, m->t2, N, m->t3, &Ly->off_mo));
            add_into(m->x, m->t3, N * D);
        }
        if (Ly->router >= 0) {
            ARB_TRY(moe_act_forward(m, Ly, &L.ponder, &L.act_iters));
        } else {
            ARB_TRY(norm_fwd(m, Ly->fn, m->x, N, m->h, &Ly->off_fn));
            ARB_TRY(lin_fwd(m, Ly->w1, m->h, N, Ly->u, &Ly->off_w1));
            arb_glue_relu2(Ly->u, N * mlp_hidden(c), m->big);
            ARB_TRY(lin_fwd(m, Ly->w2, m->big, N, m->t2, &Ly->off_w2));
            add_into(m->x, m->t2, N * D);
        }
    }
    if (m->n_moe_layers) {
        L.ponder /= m->n_moe_layers;
        L.act_iters /= m->n_moe_layers;
    }
    int64_t off;
    ARB_TRY(norm_fwd(m, m->fnorm, m->x, N, m->h, &off));
    ARB_TRY(lin_fwd(m, m->head, m->h, N, m->logits, &off));
    if (m->rout >= 0) ARB_TRY(lin_fwd(m, m->rout, m->h, N, m->rlog, &off));
    if (targets) {
        int64_t cnt = 0;
        double sum = arb_glue_ce(m->logits, targets, N, V, 1.0f, train ? m->dlogits : NULL, &cnt);
        if (isnan(sum)) return arb_error(ARB_ERR_OOM, "model forward: loss scratch");
        L.ce = cnt ? sum / (double)cnt : 0.0;
        L.n_targets = cnt;
        m->n_counted = cnt;
        if (m->rout >= 0) {
            for (int64_t n = 0; n < N; n++) {
                int32_t t = targets[n];
                bool counted = t >= 0 && t != ARB_TOK_PAD && t < V;
                m->rclass[n] = !counted ? -1 : (t == ARB_TOK_VIDEO_BEGIN || t == ARB_TOK_VIDEO_END) ? 1 : 0;
            }
            double rs = arb_glue_ce(m->rlog, m->rclass, N, 2, c->router_weight, train ? m->drlog : NULL, &cnt);
            L.router = cnt ? rs / (double)cnt : 0.0;
        }
        L.total = L.ce + c->vq_beta * L.vq_commit + c->ponder_weight * L.ponder + c->router_weight * L.router;
    }
    m->tape = train;
    if (lp) *lp = L;
    return ARB_OK;
}

arb_status arb_model_logits_last(arb_model *m, const int32_t *tokens, int64_t T, float *logits) {
    if (!m || !tokens || !logits || T <= 0) return arb_error(ARB_ERR_INVALID_ARG, "model logits: bad arguments");
    int64_t start = T > m->cfg.ctx ? T - m->cfg.ctx : 0;
    ARB_TRY(arb_model_forward(m, tokens + start, NULL, 1, T - start, false, NULL));
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) return arb_mcu_logits_row(m, T - start - 1, logits);
#endif
    memcpy(logits, m->logits + (T - start - 1) * m->cfg.vocab, sizeof(float) * (size_t)m->cfg.vocab);
    return ARB_OK;
}

/* ---------------------------------------------------------------- backward */
static arb_status moe_act_backward(arb_model *m, layer *Ly, float *dx, uint64_t seed, uint64_t step) {
    const arb_model_config *c = &m->cfg;
    const int64_t N = m->N, D = c->dim, E = c->n_experts, Fe = expert_hidden(c);
    const float ponder_coef = c->ponder_weight / (float)((double)N * m->n_moe_layers);
    /* dx holds d loss / d output; carried = d loss / d s_{t+1} from later iterations */
    float *dout = m->t3, *carried = m->t1, *G = m->t2, *dh = m->h;
    float *dys = NULL;
    memcpy(dout, dx, sizeof(float) * (size_t)(N * D));
    memset(carried, 0, sizeof(float) * (size_t)(N * D));
    size_t nys = (size_t)(E * N * D), ndg = (size_t)(N * E), nb = (size_t)(N * (Fe > D ? Fe : D));
    float *work = arb_alloc(sizeof(float) * (nys + 2 * ndg + 2 * nb + (size_t)(2 * N) + 16));
    if (!work) return arb_error(ARB_ERR_OOM, "moe backward: scratch");
    dys = work;
    float *dg = dys + nys, *dz = dg + ndg, *b1 = dz + ndg, *b2 = b1 + nb, *dp = b2 + nb, *dhalt = dp + N;
    arb_status s = ARB_OK;
    for (int t = Ly->iters_run - 1; t >= 0 && s == ARB_OK; t--) {
        const float *p = Ly->p + (int64_t)t * N, *w = Ly->w + (int64_t)t * N;
        /* G = w_t·dout + carried  (d loss / d s_{t+1}, before the halting branch) */
#pragma omp parallel for if (N * D > ARB_PAR_MIN) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < D; i++) G[n * D + i] = w[n] * dout[n * D + i] + carried[n * D + i];
        /* halting branch: p_t → z_t → halt unit → halt norm → s_{t+1} */
        arb_act_grad_p(dout, Ly->s + N * D, Ly->n_iter, N, D, t, ponder_coef, dp);
        for (int64_t n = 0; n < N; n++) dhalt[n] = dp[n] * p[n] * (1.0f - p[n]);
        s = lin_bwd(m, Ly->halt, (int64_t)t * N, dhalt, N, b1, seed, step);
        if (s == ARB_OK) s = norm_bwd(m, Ly->hn, (int64_t)t * N, b1, N, b2);
        if (s != ARB_OK) break;
        add_into(G, b2, N * D);
        /* s_{t+1} = s_t + f(norm(s_t)): identity part */
        memcpy(carried, G, sizeof(float) * (size_t)(N * D));
        /* dense route combine */
        arb_moe_combine_backward(Ly->g + (int64_t)t * N * E, Ly->ey + (int64_t)t * E * N * D, G, N, E, D, dg, dys);
        memset(dh, 0, sizeof(float) * (size_t)(N * D));
        for (int e = 0; e < E && s == ARB_OK; e++) {
            const float *u = Ly->eu + ((int64_t)t * E + e) * N * Fe;
            const int64_t off = (int64_t)t * N; /* every MoE/ACT tensor is used once per iteration */
            s = lin_bwd(m, Ly->e2[e], off, dys + (int64_t)e * N * D, N, b1, seed, step);
            if (s != ARB_OK) break;
            arb_glue_relu2_backward(u, b1, N * Fe, b1);
            s = lin_bwd(m, Ly->e1[e], off, b1, N, b2, seed, step);
            if (s == ARB_OK) add_into(dh, b2, N * D);
        }
        if (s != ARB_OK) break;
        arb_glue_softmax_rows_backward(Ly->g + (int64_t)t * N * E, dg, N, E, dz);
        s = lin_bwd(m, Ly->router, (int64_t)t * N, dz, N, b1, seed, step);
        if (s != ARB_OK) break;
        add_into(dh, b1, N * D);
        s = norm_bwd(m, Ly->rn, (int64_t)t * N, dh, N, b1);
        if (s != ARB_OK) break;
        add_into(carried, b1, N * D);
    }
    if (s == ARB_OK) memcpy(dx, carried, sizeof(float) * (size_t)(N * D));
    arb_free(work);
    return s;
}

arb_model_step_params arb_model_step_params_default(const arb_model_config *cfg) {
    arb_model_step_params sp;
    memset(&sp, 0, sizeof sp);
    sp.update = arb_update_params_default();
    if (cfg) {
        sp.update.eta = cfg->eta;
        sp.update.threshold = cfg->threshold;
        sp.update.leak_shift = cfg->leak_shift;
        sp.update.eta_exp = cfg->eta_exp;
        sp.update.exp_threshold = cfg->exp_threshold;
    }
    sp.update.update_exp = true;
    sp.tensor_eta = NULL;
    sp.update_memory = true;
    return sp;
}

void arb_mdl_update_prep(const arb_model *m, int32_t i, const arb_model_step_params *sp, arb_update_params *out) {
    const tparam *P = &m->p[i];
    arb_update_params up = sp->update;
    up.eta = sp->update.eta * (sp->tensor_eta ? sp->tensor_eta[i] : 1.0f);
    if (m->cfg.flip_balance) up.eta *= arb_ternary_exp_mult(m->balance[i]);
    if (!exp_trains(&m->cfg, P->kind)) up.update_exp = false;
    *out = up;
}

void arb_mdl_update_finish(arb_model *m, int32_t i, const arb_model_step_params *sp, const arb_update_stats *stp,
                           arb_model_step_stats *tot) {
    tparam *P = &m->p[i];
    const arb_update_stats st = *stp;
    P->last = st;
    if (m->cfg.flip_balance && st.weights > 0 && m->cfg.eta > 0.0f) {
        /* one quarter octave per step toward the target rate; +0.5 flip keeps tiny tensors
         * (norm gains) from reading "no flips" as "too few" */
        double target = (double)m->cfg.flip_target * ((double)sp->update.eta / (double)m->cfg.eta);
        double rate = ((double)st.flips + 0.5) / (double)st.weights;
        int b = m->balance[i];
        if (rate > target * 1.4142135623730951 && b > ARB_BALANCE_MIN) b--;
        else if (rate < target / 1.4142135623730951 && b < ARB_BALANCE_MAX) b++;
        m->balance[i] = (int8_t)b;
    }
    if (tot) {
        tot->flips += st.flips;
        tot->zeros += st.zeros;
        tot->weights += st.weights;
        tot->exp_moves += st.exp_moves;
    }
}

static arb_status update_param(arb_model *m, int32_t i, const arb_model_step_params *sp, arb_model_step_stats *tot) {
    tparam *P = &m->p[i];
    arb_update_params up;
    arb_mdl_update_prep(m, i, sp, &up);
    arb_update_stats st = {0};
    switch (P->kind) {
    case P_LIN:
    case P_CODE:
    case P_MEM:
        ARB_TRY(arb_ternary_linear_backward_update(&P->w, P->xq, P->xs, P->dy, P->n, &up, &P->st, &st));
        break;
    case P_GAIN: {
        /* the gain's dx was taken per use; this call only folds the gain gradient */
        float *dxs = arb_alloc(sizeof(float) * (size_t)(P->n * P->w.cols));
        if (!dxs) return arb_error(ARB_ERR_OOM, "model update: %s scratch", P->name);
        arb_status s = arb_ternary_rmsnorm_backward_update(&P->w, P->x, P->xs, P->dy, P->n, dxs, &up, &P->st, &st);
        arb_free(dxs);
        ARB_TRY(s);
        break;
    }
    case P_EMB:
        ARB_TRY(arb_ternary_embedding_backward_update(&P->w, P->idx, P->dy, P->n, &up, &P->st, &st));
        break;
    }
    arb_mdl_update_finish(m, i, sp, &st, tot);
    return ARB_OK;
}

arb_status arb_model_backward_update(arb_model *m, const arb_model_step_params *sp, arb_model_step_stats *stats) {
    if (!m || !sp) return arb_error(ARB_ERR_INVALID_ARG, "model backward: NULL argument");
    if (!m->tape) return arb_error(ARB_ERR_INVALID_ARG, "model backward: no training forward to differentiate");
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) return arb_mcu_backward_update(m, sp, stats);
#endif
    m->tape = false;
    const arb_model_config *c = &m->cfg;
    const int64_t N = m->N, D = c->dim, B = m->B, T = m->T;
    const uint64_t seed = sp->update.seed, step = sp->update.step;
    const int H = c->n_heads, hd = c->dim / c->n_heads;
    float *dx = m->x; /* the residual gradient (the forward's x is no longer needed) */

    /* head (+ router) → final norm */
    ARB_TRY(lin_bwd(m, m->head, 0, m->dlogits, N, m->h, seed, step));
    if (m->rout >= 0) {
        ARB_TRY(lin_bwd(m, m->rout, 0, m->drlog, N, m->t1, seed, step));
        add_into(m->h, m->t1, N * D);
    }
    ARB_TRY(norm_bwd(m, m->fnorm, 0, m->h, N, dx));

    for (int l = c->n_layers - 1; l >= 0; l--) {
        layer *Ly = &m->L[l];
        if (Ly->router >= 0) {
            ARB_TRY(moe_act_backward(m, Ly, dx, seed, step));
        } else {
            ARB_TRY(lin_bwd(m, Ly->w2, Ly->off_w2, dx, N, m->big, seed, step));
            arb_glue_relu2_backward(Ly->u, m->big, N * mlp_hidden(c), m->big);
            ARB_TRY(lin_bwd(m, Ly->w1, Ly->off_w1, m->big, N, m->h, seed, step));
            ARB_TRY(norm_bwd(m, Ly->fn, Ly->off_fn, m->h, N, m->t1));
            add_into(dx, m->t1, N * D);
        }
        if (Ly->slots >= 0) {
            ARB_TRY(lin_bwd(m, Ly->mo, Ly->off_mo, dx, N, m->t1, seed, step));
            arb_slots_read_backward(Ly->mem_M, Ly->mem_p, m->t1, N, c->mem_slots, D, m->t2);
            ARB_TRY(lin_bwd(m, Ly->mq, Ly->off_mq, m->t2, N, m->h, seed, step));
            ARB_TRY(norm_bwd(m, Ly->mn, Ly->off_mn, m->h, N, m->t1));
            add_into(dx, m->t1, N * D);
        }
        if (Ly->qkv >= 0) {
            ARB_TRY(lin_bwd(m, Ly->o, Ly->off_o, dx, N, m->t1, seed, step));
            float *dqkv = m->p[Ly->qkv].dy + Ly->off_qkv * 3 * D;
            ARB_TRY(arb_graph_backward(&m->graph, H, hd, Ly->qkv_buf, 3 * D, c->graph_hops, Ly->probs, Ly->hopbuf,
                                       m->t1, dqkv));
            if (c->rotary) {
                arb_glue_rope(dqkv, B, T, 3 * D, 0, H, hd, -1);
                arb_glue_rope(dqkv, B, T, 3 * D, D, H, hd, -1);
            }
            ARB_TRY(lin_bwd(m, Ly->qkv, Ly->off_qkv, dqkv, N, m->h, seed, step));
            ARB_TRY(norm_bwd(m, Ly->an, Ly->off_an, m->h, N, m->t1));
            add_into(dx, m->t1, N * D);
        }
    }

    /* VQ: de = dx + commitment; codebook rows get the gather gradient + the codebook pull */
    tparam *Pe = &m->p[m->embed];
    if (c->enable_vq) {
        tparam *Pc = &m->p[m->codebook];
        const int64_t K = c->vq_codes;
        const float cg = c->vq_beta * 2.0f / (float)((double)N * D);
        float *u = m->t1;
#pragma omp parallel for if (N * D > ARB_PAR_MIN) schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *cz = m->C + (int64_t)m->codes[n] * D;
            for (int64_t i = 0; i < D; i++) {
                float diff = m->e[n * D + i] - cz[i];
                u[n * D + i] = dx[n * D + i] - cg * diff;
                Pe->dy[n * D + i] = dx[n * D + i] + cg * diff;
            }
        }
        ARB_TRY(param_reserve(Pc, N));
        ARB_TRY(arb_quantize_rows(u, N, D, Pc->w.cols_pad, Pc->xq, Pc->xs));
        memset(Pc->dy, 0, sizeof(float) * (size_t)(N * K));
        for (int64_t n = 0; n < N; n++) Pc->dy[n * K + m->codes[n]] = 1.0f;
        Pc->n = N;
    } else {
        memcpy(Pe->dy, dx, sizeof(float) * (size_t)(N * D));
    }

    /* every tensor folds all its uses into its state, in index order */
    arb_model_step_stats tot = {0};
    for (int32_t i = 0; i < m->np; i++) {
        if (m->p[i].kind == P_MEM || m->p[i].n == 0) continue;
        ARB_TRY(update_param(m, i, sp, &tot));
    }
    /* update_memory: each slot moves toward the normalized states that read it (pressure
     * −α/N on the slot, the read's query input as x) */
    if (sp->update_memory) {
        for (int l = 0; l < c->n_layers; l++) {
            layer *Ly = &m->L[l];
            if (Ly->slots < 0) continue;
            tparam *Pm = &m->p[Ly->slots], *Pq = &m->p[Ly->mq];
            const int64_t S = c->mem_slots;
            ARB_TRY(param_reserve(Pm, N));
            memcpy(Pm->xq, Pq->xq + Ly->off_mq * Pq->w.cols_pad, (size_t)(N * Pq->w.cols_pad));
            memcpy(Pm->xs, Pq->xs + Ly->off_mq, sizeof(float) * (size_t)N);
            const float sc = -1.0f / (float)N;
            for (int64_t k = 0; k < N * S; k++) Pm->dy[k] = sc * Ly->mem_p[k];
            Pm->n = N;
            ARB_TRY(update_param(m, Ly->slots, sp, &tot));
        }
    }
    if (stats) *stats = tot;
    return ARB_OK;
}

const float *arb_model_embed_grad(const arb_model *m) {
    return m && m->dev.kind == ARB_DEVICE_CPU ? m->p[m->embed].dy : NULL;
}

arb_device arb_model_device(const arb_model *m) { return m ? m->dev : arb_cpu(); }

void arb_model_cuda_set_fused(arb_model *m, bool fused) {
    if (m) m->cu_fuse = fused;
}

void arb_model_tape_free(arb_model_tape *t) {
    if (!t) return;
    arb_free(t->xq);
    arb_free(t->xs);
    arb_free(t->x);
    arb_free(t->dy);
    arb_free(t->idx);
    memset(t, 0, sizeof *t);
}

/* One recorded buffer into fresh host memory, from the host tape or (CUDA model) the device's;
 * a buffer the step never filled stays NULL. */
static arb_status tape_dup(void **out, const void *host, const void *dev, size_t n, bool on_device) {
    const void *src = on_device ? dev : host;
    *out = NULL;
    if (!src) return ARB_OK;
    *out = arb_alloc(n ? n : 1);
    if (!*out) return arb_error(ARB_ERR_OOM, "model tape: %zu bytes", n);
#ifdef ARB_HAVE_CUDA
    if (on_device) return n ? arb_cuda_copy_d2h(*out, src, n) : ARB_OK;
#endif
    if (n) memcpy(*out, src, n);
    return ARB_OK;
}

arb_status arb_model_tape_copy(arb_model *m, int32_t i, arb_model_tape *t) {
    if (!m || !t || i < 0 || i >= m->np) return arb_error(ARB_ERR_INVALID_ARG, "model tape: bad arguments");
    memset(t, 0, sizeof *t);
    const bool dev = m->dev.kind == ARB_DEVICE_CUDA;
#ifdef ARB_HAVE_CUDA
    if (dev) ARB_TRY(arb_cuda_set_device(m->dev.index));
#endif
    const tparam *P = &m->p[i];
    size_t n = (size_t)P->n, rows = (size_t)P->w.rows, cols = (size_t)P->w.cols, cp = (size_t)P->w.cols_pad;
    t->n = P->n;
    t->rows = P->w.rows;
    t->cols = P->w.cols;
    t->cols_pad = P->w.cols_pad;
    t->kind = P->kind == P_EMB ? 1 : P->kind == P_GAIN ? 2 : 0;
    arb_status s;
    if (t->kind == 0) {
        s = tape_dup((void **)&t->xq, P->xq, P->d_xq, n * cp, dev);
        if (s == ARB_OK) s = tape_dup((void **)&t->xs, P->xs, P->d_xs, n * sizeof(float), dev);
        if (s == ARB_OK) s = tape_dup((void **)&t->dy, P->dy, P->d_dy, n * rows * sizeof(float), dev);
    } else if (t->kind == 1) {
        s = tape_dup((void **)&t->idx, P->idx, P->d_idx, n * sizeof(int32_t), dev);
        if (s == ARB_OK) s = tape_dup((void **)&t->dy, P->dy, P->d_dy, n * cols * sizeof(float), dev);
    } else {
        s = tape_dup((void **)&t->x, P->x, P->d_x, n * cols * sizeof(float), dev);
        if (s == ARB_OK) s = tape_dup((void **)&t->xs, P->xs, P->d_xs, n * sizeof(float), dev);
        if (s == ARB_OK) s = tape_dup((void **)&t->dy, P->dy, P->d_dy, n * cols * sizeof(float), dev);
    }
    if (s != ARB_OK) arb_model_tape_free(t);
    return s;
}

/* ---------------------------------------------------------------- enumeration, audit */
int32_t arb_model_n_ternary(const arb_model *m) { return m ? m->np : 0; }

arb_status arb_model_ternary_at(arb_model *m, int32_t i, const char **name, arb_ternary **w, arb_update_state **st) {
    if (!m || i < 0 || i >= m->np)
        return arb_error(ARB_ERR_INVALID_ARG, "model: ternary tensor index %d out of range", i);
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) {
        /* the caller gets the host mirror: bring it up to date, and upload it again before the
         * next device use since the caller may write it (checkpoint load) */
        ARB_TRY(arb_mcu_sync_host(m));
        m->dev_stale = true;
    }
#endif
    if (name) *name = m->p[i].name;
    if (w) *w = &m->p[i].w;
    if (st) *st = &m->p[i].st;
    return ARB_OK;
}

arb_status arb_model_tensor_stats(const arb_model *m, int32_t i, arb_update_stats *stats) {
    if (!m || !stats || i < 0 || i >= m->np)
        return arb_error(ARB_ERR_INVALID_ARG, "model: tensor stats index %d out of range", i);
    *stats = m->p[i].last;
    return ARB_OK;
}

int32_t arb_model_n_state(const arb_model *m) { return m ? 1 + (m->cfg.enable_vq ? 1 : 0) : 0; }

arb_status arb_model_state_at(arb_model *m, int32_t i, arb_model_state_tensor *out) {
    if (!m || !out || i < 0 || i >= arb_model_n_state(m))
        return arb_error(ARB_ERR_INVALID_ARG, "model: state tensor index %d out of range", i);
    memset(out, 0, sizeof *out);
    if (i == 0) {
        out->name = "flip_balance";
        out->dtype = ARB_I8;
        out->ndim = 1;
        out->shape[0] = m->np;
        out->data = m->balance;
        return ARB_OK;
    }
    out->name = "vq.usage";
    out->dtype = ARB_I32;
    out->ndim = 1;
    out->shape[0] = m->cfg.vq_codes;
    out->data = m->vq_usage;
    return ARB_OK;
}

arb_status arb_model_refresh(arb_model *m) {
    if (!m) return arb_error(ARB_ERR_INVALID_ARG, "model refresh: NULL");
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) ARB_TRY(arb_mcu_sync_host(m));
#endif
    for (int32_t i = 0; i < m->np; i++) ARB_TRY(arb_ternary_refresh(&m->p[i].w));
#ifdef ARB_HAVE_CUDA
    if (m->dev.kind == ARB_DEVICE_CUDA) return arb_mcu_upload(m);
#endif
    return ARB_OK;
}

arb_status arb_model_audit(const arb_model *m, arb_audit *a) {
    if (!m || !a) return arb_error(ARB_ERR_INVALID_ARG, "model audit: NULL argument");
    memset(a, 0, sizeof *a);
    for (int32_t i = 0; i < m->np; i++) arb_audit_add_ternary(a, &m->p[i].w);
    return ARB_OK;
}
