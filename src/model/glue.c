/* The model's float glue: rotary, graph edge weighting + target aggregation + hop loop,
 * softmax/CE, ReLU², memory slot read, MoE combine, ACT weighting, VQ assignment.
 *
 * Why plain loops: these are the reference the CUDA kernels are checked against, and they
 * are a small share of the step next to the ternary matmuls. Parallel loops split over
 * independent rows or (sequence, head) pairs with fixed-order reductions inside, so results
 * are identical for any thread count. */
#include "model_internal.h"

#include <math.h>

/* No fused multiply-add anywhere in the glue: the tiers must round like the generic build
 * (gcc in ISO C mode does not contract; clang is told). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__clang__)
/* `omp simd` is a request: under the sanitizers clang may decline it; not an error. */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Dot product with 16 fixed lanes (lane = index mod 16) and a fixed reduction tree: the
 * compiler may vectorize it at any width (SSE, AVX2, AVX-512) and the float result stays bit
 * for bit the same, so the per-tier builds of the graph kernels below agree exactly. */
#define ARB_INLINE static inline __attribute__((always_inline))
ARB_INLINE float dotf(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    for (; i < n; i++) acc[i & 15] += a[i] * b[i];
    for (int w = 8; w > 0; w >>= 1)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

ARB_INLINE void axpyf(float a, const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---------------------------------------------------------------- rotary */
void arb_glue_rope(float *x, int64_t B, int64_t T, int64_t ld, int64_t off, int H, int hd, int sign) {
    int half = hd / 2;
    float *cs = malloc(sizeof(float) * 2 * (size_t)(T * half > 0 ? T * half : 1));
    if (!cs) return; /* callers sized everything before; an OOM here cannot be reported */
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double inv = pow(10000.0, -(2.0 * i) / hd);
            double a = (double)t * inv;
            cs[2 * (t * half + i)] = (float)cos(a);
            cs[2 * (t * half + i) + 1] = (float)(sign >= 0 ? sin(a) : -sin(a));
        }
#pragma omp parallel for if (B * T * ld > ARB_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < B * T; r++) {
        int64_t t = r % T;
        float *row = x + r * ld + off;
        for (int h = 0; h < H; h++) {
            float *v = row + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * (t * half + i)], s = cs[2 * (t * half + i) + 1];
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
    free(cs);
}

/* ---------------------------------------------------------------- graph edges */
void arb_graph_free(arb_graph *g) {
    if (!g) return;
    free(g->off);
    free(g->src);
    memset(g, 0, sizeof *g);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

arb_status arb_graph_build(arb_graph *g, const int32_t *tokens, const int32_t *codes, int64_t B, int64_t T,
                           int32_t window, bool anchors, int32_t vq_edges) {
    if (!g || !tokens || B <= 0 || T <= 0) return arb_error(ARB_ERR_INVALID_ARG, "graph build: bad arguments");
    int64_t rows = B * T;
    if (rows + 1 > g->cap_rows) {
        int64_t *o = realloc(g->off, sizeof(int64_t) * (size_t)(rows + 1));
        if (!o) return arb_error(ARB_ERR_OOM, "graph build: %lld targets", (long long)rows);
        g->off = o;
        g->cap_rows = rows + 1;
    }
    int32_t *extra = malloc(sizeof(int32_t) * (size_t)T);
    if (!extra) return arb_error(ARB_ERR_OOM, "graph build: scratch");
    int64_t ne = 0;
    for (int64_t b = 0; b < B; b++) {
        const int32_t *tok = tokens + b * T;
        const int32_t *cd = codes ? codes + b * T : NULL;
        for (int64_t i = 0; i < T; i++) {
            int64_t lo = (window <= 0 || window > i) ? 0 : i - window + 1;
            int n_extra = 0, n_vq = 0;
            for (int64_t j = lo - 1; j >= 0; j--) {
                bool take = anchors && arb_token_is_anchor(tok[j]);
                if (!take && cd && vq_edges > 0 && n_vq < vq_edges && cd[j] == cd[i]) {
                    take = true;
                    n_vq++;
                }
                if (take) extra[n_extra++] = (int32_t)j;
            }
            qsort(extra, (size_t)n_extra, sizeof(int32_t), cmp_i32);
            int64_t need = ne + n_extra + (i - lo + 1);
            if (need > g->cap_edges) {
                int64_t cap = g->cap_edges ? g->cap_edges : 1024;
                while (cap < need) cap *= 2;
                int32_t *s = realloc(g->src, sizeof(int32_t) * (size_t)cap);
                if (!s) {
                    free(extra);
                    return arb_error(ARB_ERR_OOM, "graph build: %lld edges", (long long)cap);
                }
                g->src = s;
                g->cap_edges = cap;
            }
            g->off[b * T + i] = ne;
            for (int k = 0; k < n_extra; k++) g->src[ne++] = extra[k];
            for (int64_t j = lo; j <= i; j++) g->src[ne++] = (int32_t)j;
        }
    }
    g->off[rows] = ne;
    g->n_edges = ne;
    g->B = B;
    g->T = T;
    free(extra);
    return ARB_OK;
}

/* ---------------------------------------------------------------- graph forward / backward */
/* One (sequence, head) task of the forward: edge weighting (scores, softmax over each
 * target's incoming edges), then target aggregation repeated for each hop. */
typedef struct graph_args {
    const arb_graph *g;
    int H, hd, hops;
    const float *qkv;
    int64_t ld;
    float *probs, *hopbuf, *out;              /* forward */
    const float *dout;                        /* backward */
    float *dqkv, *scratch;
    int64_t max_edges;
    size_t per;
} graph_args;

ARB_INLINE void graph_forward_task(const graph_args *a, int64_t bh) {
    const arb_graph *g = a->g;
    const int H = a->H, hd = a->hd;
    const int64_t T = g->T, D = (int64_t)H * hd, N = g->B * T, ld = a->ld;
    const float *qkv = a->qkv;
    float *probs = a->probs;
    const float sc = 1.0f / sqrtf((float)hd);
    int64_t b = bh / H, h = bh % H;
    for (int64_t i = 0; i < T; i++) {
        int64_t r = b * T + i;
        const float *q = qkv + r * ld + h * hd;
        float mx = -INFINITY;
        for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) {
            const float *k = qkv + (b * T + g->src[e]) * ld + D + h * hd;
            float s = dotf(q, k, hd) * sc;
            probs[e * H + h] = s;
            if (s > mx) mx = s;
        }
        float sum = 0.0f;
        for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) {
            float p = expf(probs[e * H + h] - mx);
            probs[e * H + h] = p;
            sum += p;
        }
        float inv = 1.0f / sum;
        for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) probs[e * H + h] *= inv;
    }
    for (int hop = 1; hop <= a->hops; hop++) {
        const float *prev = hop == 1 ? qkv + 2 * D : a->hopbuf + (int64_t)(hop - 2) * N * D;
        int64_t prev_ld = hop == 1 ? ld : D;
        float *dst = hop == a->hops ? a->out : a->hopbuf + (int64_t)(hop - 1) * N * D;
        for (int64_t i = 0; i < T; i++) {
            int64_t r = b * T + i;
            float *y = dst + r * D + h * hd;
            memset(y, 0, sizeof(float) * (size_t)hd);
            for (int64_t e = g->off[r]; e < g->off[r + 1]; e++)
                axpyf(probs[e * H + h], prev + (b * T + g->src[e]) * prev_ld + h * hd, y, hd);
        }
    }
}

/* One (sequence, head) task of the backward, with this thread's scratch. */
ARB_INLINE void graph_backward_task(const graph_args *a, int64_t bh, float *sp) {
    const arb_graph *g = a->g;
    const int H = a->H, hd = a->hd;
    const int64_t T = g->T, D = (int64_t)H * hd, N = g->B * T, ld = a->ld;
    const float *qkv = a->qkv, *probs = a->probs;
    float *dqkv = a->dqkv;
    const float sc = 1.0f / sqrtf((float)hd);
    int64_t b = bh / H, h = bh % H;
    int64_t e0 = g->off[b * T];
    float *dp = sp;                   /* (edges of this sequence) d loss / d prob */
    float *dy = sp + a->max_edges;    /* (T, hd) gradient of the current hop's output */
    float *dprev = dy + T * hd;       /* (T, hd) gradient of its input */
    memset(dp, 0, sizeof(float) * (size_t)(g->off[(b + 1) * T] - e0));
    for (int64_t i = 0; i < T; i++) memcpy(dy + i * hd, a->dout + (b * T + i) * D + h * hd, sizeof(float) * (size_t)hd);
    for (int hop = a->hops; hop >= 1; hop--) {
        const float *prev = hop == 1 ? qkv + 2 * D : a->hopbuf + (int64_t)(hop - 2) * N * D;
        int64_t prev_ld = hop == 1 ? ld : D;
        memset(dprev, 0, sizeof(float) * (size_t)(T * hd));
        for (int64_t i = 0; i < T; i++) {
            int64_t r = b * T + i;
            const float *dyi = dy + i * hd;
            for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) {
                int64_t j = g->src[e];
                dp[e - e0] += dotf(dyi, prev + (b * T + j) * prev_ld + h * hd, hd);
                axpyf(probs[e * H + h], dyi, dprev + j * hd, hd);
            }
        }
        float *t = dy;
        dy = dprev;
        dprev = t;
    }
    /* dy now holds d loss / d v */
    for (int64_t i = 0; i < T; i++)
        memcpy(dqkv + (b * T + i) * ld + 2 * D + h * hd, dy + i * hd, sizeof(float) * (size_t)hd);
    /* softmax backward, then scores → q, k */
    for (int64_t i = 0; i < T; i++) {
        int64_t r = b * T + i;
        float dot = 0.0f;
        for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) dot += probs[e * H + h] * dp[e - e0];
        const float *q = qkv + r * ld + h * hd;
        float *dq = dqkv + r * ld + h * hd;
        for (int64_t e = g->off[r]; e < g->off[r + 1]; e++) {
            int64_t j = g->src[e];
            float ds = probs[e * H + h] * (dp[e - e0] - dot) * sc;
            axpyf(ds, qkv + (b * T + j) * ld + D + h * hd, dq, hd);
            axpyf(ds, q, dqkv + (b * T + j) * ld + D + h * hd, hd);
        }
    }
}

/* The task bodies compiled once per CPU tier (bit-identical results: see dotf; no FMA) and
 * chosen at run time. The parallel loop stays outside: an OpenMP region's outlined body would
 * not inherit a function's target attribute. */
typedef void (*graph_fwd_fn)(const graph_args *, int64_t);
typedef void (*graph_bwd_fn)(const graph_args *, int64_t, float *);
static void graph_fwd_generic(const graph_args *a, int64_t bh) { graph_forward_task(a, bh); }
static void graph_bwd_generic(const graph_args *a, int64_t bh, float *sp) { graph_backward_task(a, bh, sp); }
#if defined(__x86_64__)
#define ARB_T_AVX2 __attribute__((target("avx2")))
#define ARB_T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
ARB_T_AVX2 static void graph_fwd_avx2(const graph_args *a, int64_t bh) { graph_forward_task(a, bh); }
ARB_T_AVX2 static void graph_bwd_avx2(const graph_args *a, int64_t bh, float *sp) { graph_backward_task(a, bh, sp); }
ARB_T_AVX512 static void graph_fwd_avx512(const graph_args *a, int64_t bh) { graph_forward_task(a, bh); }
ARB_T_AVX512 static void graph_bwd_avx512(const graph_args *a, int64_t bh, float *sp) { graph_backward_task(a, bh, sp); }
#endif

static graph_fwd_fn graph_fwd_pick(void) {
#if defined(__x86_64__)
    switch (arb_cpu_tier_get()) {
    case ARB_TIER_AVX512: return graph_fwd_avx512;
    case ARB_TIER_AVX2: return graph_fwd_avx2;
    default: break;
    }
#endif
    return graph_fwd_generic;
}

static graph_bwd_fn graph_bwd_pick(void) {
#if defined(__x86_64__)
    switch (arb_cpu_tier_get()) {
    case ARB_TIER_AVX512: return graph_bwd_avx512;
    case ARB_TIER_AVX2: return graph_bwd_avx2;
    default: break;
    }
#endif
    return graph_bwd_generic;
}

void arb_graph_forward(const arb_graph *g, int H, int hd, const float *qkv, int64_t ld, int hops, float *probs,
                       float *hopbuf, float *out) {
    graph_args a = {.g = g, .H = H, .hd = hd, .hops = hops, .qkv = qkv, .ld = ld, .probs = probs, .hopbuf = hopbuf,
                    .out = out};
    graph_fwd_fn fn = graph_fwd_pick();
    const int64_t D = (int64_t)H * hd;
#pragma omp parallel for if (g->n_edges * D > ARB_PAR_MIN) schedule(dynamic, 1)
    for (int64_t bh = 0; bh < g->B * H; bh++) fn(&a, bh);
}

arb_status arb_graph_backward(const arb_graph *g, int H, int hd, const float *qkv, int64_t ld, int hops,
                              const float *probs, const float *hopbuf, const float *dout, float *dqkv) {
    const int64_t B = g->B, T = g->T, D = (int64_t)H * hd, N = B * T;
    int64_t max_edges = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t ne = g->off[(b + 1) * T] - g->off[b * T];
        if (ne > max_edges) max_edges = ne;
    }
    int nth = omp_get_max_threads();
    size_t per = (size_t)max_edges + 2 * (size_t)(T * hd);
    float *scratch = malloc(sizeof(float) * per * (size_t)nth);
    if (!scratch) return arb_error(ARB_ERR_OOM, "graph backward: scratch of %zu floats", per * (size_t)nth);
    graph_args a = {.g = g, .H = H, .hd = hd, .hops = hops, .qkv = qkv, .ld = ld, .probs = (float *)probs,
                    .hopbuf = (float *)hopbuf, .dout = dout, .dqkv = dqkv, .scratch = scratch,
                    .max_edges = max_edges, .per = per};
    graph_bwd_fn fn = graph_bwd_pick();
    /* zero dq, dk, dv columns */
#pragma omp parallel for if (N * 3 * D > ARB_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < N; r++) memset(dqkv + r * ld, 0, sizeof(float) * (size_t)(3 * D));
#pragma omp parallel for if (g->n_edges * D > ARB_PAR_MIN) schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * H; bh++) fn(&a, bh, scratch + per * (size_t)omp_get_thread_num());
    free(scratch);
    return ARB_OK;
}

/* ---------------------------------------------------------------- softmax, CE */
void arb_glue_softmax_rows(const float *x, int64_t n, int64_t k, float *y) {
#pragma omp parallel for if (n * k > ARB_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *a = x + r * k;
        float *o = y + r * k;
        float mx = -INFINITY;
        for (int64_t i = 0; i < k; i++) mx = a[i] > mx ? a[i] : mx;
        float s = 0.0f;
        for (int64_t i = 0; i < k; i++) {
            o[i] = expf(a[i] - mx);
            s += o[i];
        }
        float inv = 1.0f / s;
        for (int64_t i = 0; i < k; i++) o[i] *= inv;
    }
}

void arb_glue_softmax_rows_backward(const float *y, const float *dy, int64_t n, int64_t k, float *dx) {
#pragma omp parallel for if (n * k > ARB_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *a = y + r * k, *d = dy + r * k;
        float dot = dotf(a, d, k);
        for (int64_t i = 0; i < k; i++) dx[r * k + i] = a[i] * (d[i] - dot);
    }
}

double arb_glue_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float weight, float *dlogits,
                   int64_t *count) {
    int64_t cnt = 0;
    for (int64_t r = 0; r < n; r++)
        if (targets[r] >= 0 && targets[r] != ARB_TOK_PAD && targets[r] < V) cnt++;
    double *row_loss = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!row_loss) return NAN;
    float gscale = weight / (float)(cnt > 0 ? cnt : 1);
#pragma omp parallel for if (n * V > ARB_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *a = logits + r * V;
        int32_t t = targets[r];
        bool counted = t >= 0 && t != ARB_TOK_PAD && t < V;
        row_loss[r] = 0.0;
        if (!counted) {
            if (dlogits) memset(dlogits + r * V, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float mx = -INFINITY;
        for (int64_t i = 0; i < V; i++) mx = a[i] > mx ? a[i] : mx;
        double s = 0.0;
        for (int64_t i = 0; i < V; i++) s += exp((double)(a[i] - mx));
        row_loss[r] = log(s) - (double)(a[t] - mx);
        if (dlogits) {
            float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < V; i++) dlogits[r * V + i] = gscale * expf(a[i] - mx) * inv;
            dlogits[r * V + t] -= gscale;
        }
    }
    double sum = 0.0;
    for (int64_t r = 0; r < n; r++) sum += row_loss[r];
    free(row_loss);
    if (count) *count = cnt;
    return sum;
}

/* ---------------------------------------------------------------- ReLU² */
void arb_glue_relu2(const float *u, int64_t n, float *r) {
#pragma omp parallel for simd if (n > ARB_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) r[i] = u[i] > 0.0f ? u[i] * u[i] : 0.0f;
}

void arb_glue_relu2_backward(const float *u, const float *dr, int64_t n, float *du) {
#pragma omp parallel for simd if (n > ARB_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) du[i] = u[i] > 0.0f ? 2.0f * u[i] * dr[i] : 0.0f;
}

/* ---------------------------------------------------------------- memory slot read */
void arb_slots_read(const float *q, const float *M, int64_t N, int64_t S, int64_t D, float *probs, float *out) {
    const float sc = 1.0f / sqrtf((float)D);
#pragma omp parallel for if (N * S * D > ARB_PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *p = probs + n * S;
        float mx = -INFINITY;
        for (int64_t s = 0; s < S; s++) {
            p[s] = dotf(q + n * D, M + s * D, D) * sc;
            mx = p[s] > mx ? p[s] : mx;
        }
        float sum = 0.0f;
        for (int64_t s = 0; s < S; s++) {
            p[s] = expf(p[s] - mx);
            sum += p[s];
        }
        float inv = 1.0f / sum;
        float *o = out + n * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int64_t s = 0; s < S; s++) {
            p[s] *= inv;
            axpyf(p[s], M + s * D, o, D);
        }
    }
}

void arb_slots_read_backward(const float *M, const float *probs, const float *dout, int64_t N, int64_t S, int64_t D,
                             float *dq) {
    const float sc = 1.0f / sqrtf((float)D);
#pragma omp parallel if (N * S * D > ARB_PAR_MIN)
    {
        float *dp = malloc(sizeof(float) * (size_t)S);
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            if (!dp) continue;
            const float *p = probs + n * S;
            float dot = 0.0f;
            for (int64_t s = 0; s < S; s++) {
                dp[s] = dotf(dout + n * D, M + s * D, D);
                dot += p[s] * dp[s];
            }
            float *g = dq + n * D;
            memset(g, 0, sizeof(float) * (size_t)D);
            for (int64_t s = 0; s < S; s++) axpyf(p[s] * (dp[s] - dot) * sc, M + s * D, g, D);
        }
        free(dp);
    }
}

/* ---------------------------------------------------------------- MoE combine */
void arb_moe_combine(const float *g, const float *ys, int64_t N, int64_t E, int64_t D, float *f) {
#pragma omp parallel for if (N * E * D > ARB_PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *o = f + n * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int64_t e = 0; e < E; e++) axpyf(g[n * E + e], ys + (e * N + n) * D, o, D);
    }
}

void arb_moe_combine_backward(const float *g, const float *ys, const float *df, int64_t N, int64_t E, int64_t D,
                              float *dg, float *dys) {
#pragma omp parallel for if (N * E * D > ARB_PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t e = 0; e < E; e++) {
            dg[n * E + e] = dotf(df + n * D, ys + (e * N + n) * D, D);
            float ge = g[n * E + e];
            float *d = dys + (e * N + n) * D;
            for (int64_t i = 0; i < D; i++) d[i] = ge * df[n * D + i];
        }
    }
}

/* ---------------------------------------------------------------- ACT */
int64_t arb_act_step(const float *p, int64_t N, int t, int max_iters, float eps, float *cum, int32_t *n_iter,
                     float *w) {
    int64_t running = 0;
    for (int64_t n = 0; n < N; n++) {
        if (n_iter[n] != 0) {
            w[n] = 0.0f;
            continue;
        }
        if (t == max_iters - 1 || cum[n] + p[n] >= 1.0f - eps) {
            w[n] = 1.0f - cum[n];
            n_iter[n] = t + 1;
        } else {
            w[n] = p[n];
            cum[n] += p[n];
            running++;
        }
    }
    return running;
}

void arb_act_grad_p(const float *dout, const float *s, const int32_t *n_iter, int64_t N, int64_t D, int t,
                    float ponder_coef, float *dp) {
#pragma omp parallel for if (N * D > ARB_PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        int last = n_iter[n] - 1;
        if (t >= last) {
            dp[n] = 0.0f;
            continue;
        }
        const float *st = s + ((int64_t)t * N + n) * D, *sl = s + ((int64_t)last * N + n) * D;
        const float *d = dout + n * D;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < D; i++) acc += d[i] * (st[i] - sl[i]);
        dp[n] = acc - ponder_coef;
    }
}

/* ---------------------------------------------------------------- VQ */
double arb_vq_assign(const float *e, const float *C, int64_t N, int64_t K, int64_t D, int32_t *codes) {
    double *err = malloc(sizeof(double) * (size_t)(N > 0 ? N : 1));
    if (!err) return NAN;
#pragma omp parallel for if (N * K * D > ARB_PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *x = e + n * D;
        double best = INFINITY;
        int32_t bk = 0;
        for (int64_t k = 0; k < K; k++) {
            const float *c = C + k * D;
            double d2 = 0.0;
            for (int64_t i = 0; i < D; i++) {
                double d = (double)x[i] - (double)c[i];
                d2 += d * d;
            }
            if (d2 < best) {
                best = d2;
                bk = (int32_t)k;
            }
        }
        codes[n] = bk;
        err[n] = best / (double)D;
    }
    double sum = 0.0;
    for (int64_t n = 0; n < N; n++) sum += err[n];
    free(err);
    return sum;
}

void arb_ternary_dequant(const arb_ternary *w, float *out) {
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t c = 0; c < w->cols; c++) out[r * w->cols + c] = (float)arb_ternary_get(w, r, c) * w->scale[r];
}
