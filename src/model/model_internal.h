/* Private to src/model and its tests: the model's float glue between ternary ops.
 *
 * Why these are separate functions: each one has a forward and a hand-written backward that
 * tests/test_model_*.c check against float64 re-implementations (finite differences). They are
 * plain loops over contiguous buffers, so the CUDA backend can port them one to one. Every
 * parallel loop splits over independent rows / (sequence, head) pairs and reduces in a fixed
 * order: results do not depend on the thread count. */
#ifndef ARB_MODEL_INTERNAL_H
#define ARB_MODEL_INTERNAL_H

#include "arbitor/model.h"

/* Loops with less work than this (elements) stay on one thread: a parallel region costs more
 * than it saves there, and on a busy machine waiting threads spin. Results never depend on it. */
#define ARB_PAR_MIN 32768

/* ---- rotary positions ---------------------------------------------------------------------
 * Rotates pairs (2i, 2i+1) of each head's slice x[row, off + h*hd ...] by angle
 * pos * 10000^(-2i/hd), pos = row % T. sign = +1 forward, −1 the inverse rotation (which is
 * the backward of the forward, rotations being orthogonal). */
void arb_glue_rope(float *x, int64_t B, int64_t T, int64_t ld, int64_t off, int H, int hd, int sign);

/* ---- the graph path ------------------------------------------------------------------------
 * Sparse causal edges per target in CSR: target row r = b*T + i has sources
 * src[off[r] .. off[r+1]) (positions within sequence b, ascending, unique, all ≤ i, always
 * including i itself). */
typedef struct arb_graph {
    int64_t B, T;
    int64_t *off;      /* (B*T + 1) */
    int32_t *src;      /* (n_edges) */
    int64_t n_edges;
    int64_t cap_rows, cap_edges;
} arb_graph;

/* Edges: local window j in [i-window+1, i] (window 0 = all j ≤ i); with anchors, every j < i
 * whose token is an anchor; with vq_edges > 0 and codes, the last vq_edges earlier j with
 * codes[j] == codes[i]. */
arb_status arb_graph_build(arb_graph *g, const int32_t *tokens, const int32_t *codes, int64_t B, int64_t T,
                           int32_t window, bool anchors, int32_t vq_edges);
void arb_graph_free(arb_graph *g);

/* qkv rows (ld ≥ 3*H*hd): [q | k | v], each H heads of hd. Per head, edge score
 * s = q_i·k_j / sqrt(hd), softmax over the target's edges → probs[e*H + h];
 * hop 1: y1_i = Σ_e p_e v_j; hop h: y_h_i = Σ_e p_e y_{h−1,j}; out (N × H*hd) = y_hops.
 * hopbuf ((hops−1) × N × H*hd) keeps y_1..y_{hops−1} for backward (NULL if hops = 1). */
void arb_graph_forward(const arb_graph *g, int H, int hd, const float *qkv, int64_t ld, int hops, float *probs,
                       float *hopbuf, float *out);
/* dqkv (N × ld): the q, k, v columns are overwritten with the gradients. */
arb_status arb_graph_backward(const arb_graph *g, int H, int hd, const float *qkv, int64_t ld, int hops,
                              const float *probs, const float *hopbuf, const float *dout, float *dqkv);

/* ---- rows softmax, cross-entropy -------------------------------------------------------- */
void arb_glue_softmax_rows(const float *x, int64_t n, int64_t k, float *y);
/* dx = y ⊙ (dy − Σ y·dy) per row (dx may alias dy). */
void arb_glue_softmax_rows_backward(const float *y, const float *dy, int64_t n, int64_t k, float *dx);
/* Sum over counted rows (target ≥ 0, ≠ ARB_TOK_PAD) of −log softmax(logits)[target]; count
 * out. When dlogits is not NULL: dlogits = weight · (softmax − onehot) / max(count, 1) on
 * counted rows, 0 on the others. Row losses are summed in row order (double). */
double arb_glue_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float weight, float *dlogits,
                   int64_t *count);

/* ---- ReLU² ------------------------------------------------------------------------------ */
void arb_glue_relu2(const float *u, int64_t n, float *r);
/* du = dr · 2·max(u, 0) (du may alias dr). */
void arb_glue_relu2_backward(const float *u, const float *dr, int64_t n, float *du);

/* ---- attention over fixed slots (memory read) ----------------------------------------------
 * probs (N × S) = softmax(q · Mᵀ / sqrt(D)); out (N × D) = probs · M. M (S × D) is not trained
 * by gradient: backward gives dq only. */
void arb_slots_read(const float *q, const float *M, int64_t N, int64_t S, int64_t D, float *probs, float *out);
void arb_slots_read_backward(const float *M, const float *probs, const float *dout, int64_t N, int64_t S, int64_t D,
                             float *dq);

/* ---- MoE dense route combine ---------------------------------------------------------------
 * f (N × D) = Σ_e g[n,e] · ys[e][n,:]  (ys: E blocks of N × D). */
void arb_moe_combine(const float *g, const float *ys, int64_t N, int64_t E, int64_t D, float *f);
/* dg (N × E) = df · ys[e];  dys[e] = g[:,e] · df. */
void arb_moe_combine_backward(const float *g, const float *ys, const float *df, int64_t N, int64_t E, int64_t D,
                              float *dg, float *dys);

/* ---- ACT (adaptive computation time) ---------------------------------------------------------
 * Iteration t (0-based) of max_iters: for positions still running (n_iter == 0) with halting
 * probability p: if t == max_iters−1 or cum + p ≥ 1 − eps, the position halts with weight
 * w = R = 1 − cum and n_iter = t + 1; else w = p and cum += p. Halted positions get w = 0.
 * Returns how many positions are still running. Output = Σ_t w_t · s_t; ponder = N + R. */
int64_t arb_act_step(const float *p, int64_t N, int t, int max_iters, float eps, float *cum, int32_t *n_iter,
                     float *w);
/* d(loss)/dp_t for L = dout·Σ_t w_t s_t + ponder_coef · Σ_n (N_n + R_n):
 * for t < n_iter−1: dp = dout·(s_t − s_{N−1}) − ponder_coef; else 0.
 * s: (iters × N × D), s_t at s + t*N*D. */
void arb_act_grad_p(const float *dout, const float *s, const int32_t *n_iter, int64_t N, int64_t D, int t,
                    float ponder_coef, float *dp);

/* ---- VQ ------------------------------------------------------------------------------------
 * codes[n] = argmin_k ||e_n − C_k||² (lowest k on ties); returns Σ_n ||e_n − C_codes[n]||² / D. */
double arb_vq_assign(const float *e, const float *C, int64_t N, int64_t K, int64_t D, int32_t *codes);

/* Dequantize a host ternary tensor to float (rows × cols): trit · scale[row]. */
void arb_ternary_dequant(const arb_ternary *w, float *out);

/* Test hook: the embedding's output-gradient rows (N × dim) of the last backward, i.e.
 * d loss / d (embedding output) as the model computed it. */
const float *arb_model_embed_grad(const arb_model *m);

/* Test hooks: a host copy of tensor i's tape of the last training step (its stacked uses: the
 * inputs and output gradients its update folded), on either device. Arrays are arb_alloc'd
 * (NULL when the kind has none); release with arb_model_tape_free. */
typedef struct arb_model_tape {
    int64_t n;            /* stacked rows */
    int64_t rows, cols, cols_pad;
    int kind;             /* 0 linear-like (xq, xs, dy n×rows), 1 embedding (idx, dy n×cols),
                           * 2 norm gain (x n×cols, xs = rstd, dy n×cols) */
    int8_t *xq;
    float *xs, *x, *dy;
    int32_t *idx;
} arb_model_tape;
arb_status arb_model_tape_copy(arb_model *m, int32_t i, arb_model_tape *t);
void arb_model_tape_free(arb_model_tape *t);
/* CUDA model: fold each tensor's update into the backward of its only use (true, default) or
 * update every tensor after the whole backward like the CPU (false). Same results either way. */
void arb_model_cuda_set_fused(arb_model *m, bool fused);

#endif
