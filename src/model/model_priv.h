/* Private to src/model: the model's structures, shared by the CPU path (model.c) and the CUDA
 * path (model_cuda.c). Why a header: the CUDA path runs the same tape design on device buffers and
 * must see the same tensor table, per-layer records and update bookkeeping. */
#ifndef ARB_MODEL_PRIV_H
#define ARB_MODEL_PRIV_H

#include "model_internal.h"

enum { P_LIN, P_EMB, P_GAIN, P_MEM, P_CODE };
#define ARB_BALANCE_MIN (-16) /* eta x 1/16 */
#define ARB_BALANCE_MAX 24    /* eta x 64 */

typedef struct tparam {
    char name[64];
    int kind;
    arb_ternary w;
    arb_update_state st;
    arb_update_stats last;
    /* this step's stacked uses (rows) */
    int64_t n, cap;
    int8_t *xq;   /* (cap, cols_pad)  LIN / MEM / CODE: quantized inputs */
    float *xs;    /* (cap)            their scales; GAIN: rstd */
    float *x;     /* (cap, cols)      GAIN: the normalized input */
    float *dy;    /* (cap, rows) LIN/MEM/CODE; (cap, cols) GAIN/EMB: output gradient rows */
    int32_t *idx; /* (cap)            EMB: token ids */
    int32_t uses; /* backward uses this step (RNG streams) */
    /* CUDA model only: the device copy of w (w stays the host mirror that the enumeration,
     * checkpoints and the audit see) and the device tape, same layout as the host one */
    arb_ternary dw;
    int64_t dcap;
    int8_t *d_xq;
    float *d_xs, *d_x, *d_dy;
    int32_t *d_idx;
    bool done; /* CUDA: already updated this step (fused with its only use's backward) */
} tparam;

/* Per-layer tensor indices (-1 = absent) and tape buffers. */
typedef struct layer {
    int32_t an, qkv, o;                /* graph path */
    int32_t mn, mq, mo, slots;         /* memory read */
    int32_t fn, w1, w2;                /* MLP */
    int32_t rn, router, hn, halt;      /* MoE + ACT: iteration norm, router, halting norm + unit */
    int32_t *e1, *e2;                  /* (n_experts) expert FFNs */
    /* tape */
    int64_t off_an, off_qkv, off_o, off_mn, off_mq, off_mo, off_fn, off_w1, off_w2;
    float *qkv_buf;   /* (N, 3D) post-rotary */
    float *probs;     /* (edges, H) */
    int64_t probs_cap;
    float *hopbuf;    /* (hops-1, N, D) */
    float *mem_M;     /* (S, D) dequantized slots */
    float *mem_p;     /* (N, S) */
    float *u;         /* (N, F) MLP pre-activation */
    /* ACT: iteration t uses s[t] and produces s[t+1] */
    float *s;         /* (iters+1, N, D) */
    float *g;         /* (iters, N, E) router probs */
    float *eu;        /* (iters, E, N, Fe) expert pre-activations */
    float *ey;        /* (iters, E, N, D) expert outputs */
    float *p, *w;     /* (iters, N) halting probs, ACT weights */
    int32_t *n_iter;  /* (N) */
    float *cum;       /* (N) */
    int iters_run;
    /* CUDA model only */
    float *d_qkv;     /* (N, 3D) as the qkv linear gives it (attention applies rotary on load) */
    float *d_o;       /* (N, D) attention output (the o projection's input; the backward's Δ) */
    float *d_lse;     /* (B, H, T) log-sum-exp of each attention row's scaled scores */
    float *d_u;       /* (N, F) MLP pre-activation */
} layer;

struct arb_model {
    arb_model_config cfg;
    arb_device dev;
    uint64_t seed;
    tparam *p;
    int32_t np, cap_p;
    int32_t embed, codebook, fnorm, head, rout;
    layer *L;
    int32_t *vq_usage; /* (vq_codes) assignments counted over training forwards */
    int8_t *balance;   /* (np) flip balancing: eta multiplier 2^(b/4) per tensor */
    /* current forward */
    int64_t B, T, N, capN;
    bool tape;
    int32_t *tokens, *targets, *codes, *rclass; /* (N) */
    float *x, *h, *t1, *t2, *t3;                /* (N, D) work */
    float *big;                                 /* (N, max(F, 3D, E*Fe...)) work */
    float *e;                                   /* (N, D) embedding (VQ) */
    float *C;                                   /* (K, D) dequantized codebook */
    float *logits, *dlogits;                    /* (N, V) */
    float *rlog, *drlog;                        /* (N, 2) router */
    arb_graph graph;
    int64_t n_counted;
    int n_moe_layers;
    /* CUDA model only (src/model/model_cuda.c) */
    bool host_stale;   /* the device state is newer than the host mirrors */
    bool dev_stale;    /* the host mirrors were handed out (and may have been written) */
    bool cu_fuse;      /* fold a tensor's update into the backward of its only use (default) */
    int64_t d_capN, d_capT;
    int32_t *d_tokens, *d_targets;     /* (N) */
    float *d_x, *d_h, *d_t1, *d_t2;    /* (N, D) */
    float *d_big;                      /* (N, max(F, 3D)) */
    float *d_logits;                   /* (N, V) */
    float *d_delta;                    /* (B, H, T) attention backward scratch */
    float *d_rope;                     /* (T, hd/2, 2) cos, sin */
    double *d_rowloss;                 /* (N) */
    double *d_losssum;                 /* (1) Σ row_loss */
};

/* The update parameters of tensor i for this step (schedule eta × tensor multiplier × flip
 * balance; which exponents move), and the bookkeeping after its update (stats, flip balance,
 * totals). Shared by both devices so that they compute exactly the same numbers. */
void arb_mdl_update_prep(const arb_model *m, int32_t i, const arb_model_step_params *sp, arb_update_params *up);
void arb_mdl_update_finish(arb_model *m, int32_t i, const arb_model_step_params *sp, const arb_update_stats *st,
                           arb_model_step_stats *tot);
int64_t arb_mdl_mlp_hidden(const arb_model_config *c);
arb_rng_key arb_mdl_use_key(tparam *P, uint64_t seed, uint64_t step);

#ifdef ARB_HAVE_CUDA
/* model_cuda.c */
arb_status arb_mcu_check_config(const arb_model_config *c);
arb_status arb_mcu_init(arb_model *m);        /* device copies of every tensor */
void arb_mcu_release(arb_model *m);
arb_status arb_mcu_upload(arb_model *m);      /* host mirrors → device */
arb_status arb_mcu_sync_host(arb_model *m);   /* device → host mirrors when they are stale */
arb_status arb_mcu_forward(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                           bool train, arb_loss_parts *lp);
arb_status arb_mcu_backward_update(arb_model *m, const arb_model_step_params *sp, arb_model_step_stats *stats);
arb_status arb_mcu_logits_row(arb_model *m, int64_t row, float *logits);
#endif

#endif
