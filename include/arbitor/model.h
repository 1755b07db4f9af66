/* arbitor/model.h — ARBModel: the byte-level true-ternary model, forward, backward + update.
 *
 * Why one opaque handle: the model owns every ternary tensor, its integer training state and
 * the per-step activation tape that backward needs (the hop and ACT loops are data dependent,
 * so the tape keeps one record per iteration). The trainer only sees: forward (loss), backward
 * + update (stats), logits for generation, and an enumeration of the state for checkpoints and
 * the audit. All trainable state is ternary (trits + int8 T_accum + E + evidence); the model
 * has no float parameter and no float optimizer state.
 *
 * Token ids (vocabulary = bytes + specials; vocab ≥ ARB_VOCAB_MIN, extra ids are reserved):
 *     0..255 raw bytes, 256 BOS, 257 EOS, 258 PAD, 259/260 image open/close,
 *     261/262 audio open/close, 263/264 video open/close.
 * Targets < 0 or == ARB_TOK_PAD are ignored by the loss.
 *
 *   arb_model_config cfg;
 *   arb_model_config_named("cpu-small", &cfg);
 *   arb_model *m;
 *   if (arb_model_create(&m, &cfg, 1337, arb_cpu()) != ARB_OK) { ...arb_last_error()... }
 *   arb_loss_parts lp;
 *   arb_model_forward(m, tokens, targets, B, T, true, &lp);      // tokens, targets: (B, T)
 *   arb_model_step_params sp = arb_model_step_params_default(&cfg);
 *   sp.update.step = step; sp.update.eta = eta_now;
 *   arb_model_step_stats ss;
 *   arb_model_backward_update(m, &sp, &ss);
 *   ...
 *   arb_model_free(m);
 */
#ifndef ARBITOR_MODEL_H
#define ARBITOR_MODEL_H

#include "arbitor/core.h"
#include "arbitor/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- token ids ------------------------------------------------------------------------------ */
enum {
    ARB_TOK_BOS = 256,
    ARB_TOK_EOS = 257,
    ARB_TOK_PAD = 258,
    ARB_TOK_IMAGE_BEGIN = 259,
    ARB_TOK_IMAGE_END = 260,
    ARB_TOK_AUDIO_BEGIN = 261,
    ARB_TOK_AUDIO_END = 262,
    ARB_TOK_VIDEO_BEGIN = 263,
    ARB_TOK_VIDEO_END = 264,
    ARB_VOCAB_MIN = 265
};
/* True for the tokens that anchor graph edges (BOS and the modality markers). */
static inline bool arb_token_is_anchor(int32_t tok) { return tok == ARB_TOK_BOS || (tok >= ARB_TOK_IMAGE_BEGIN && tok <= ARB_TOK_VIDEO_END); }

/* ---- configuration ------------------------------------------------------------------------- */
#define ARB_MODEL_NAME_MAX 32

typedef struct arb_model_config {
    char name[ARB_MODEL_NAME_MAX];
    int32_t vocab;      /* rows of the embedding and of the byte head */
    int32_t dim;        /* model width; multiple of n_heads; head dim even when rotary */
    int32_t n_layers;
    int32_t n_heads;
    int32_t ctx;        /* longest sequence forward accepts */
    int32_t mlp_mult;   /* MLP hidden = mlp_mult * dim (ReLU²) */
    bool rotary;        /* rotary positions on graph queries/keys */
    float norm_eps;     /* RMSNorm epsilon */

    /* graph path (the sequence mixer); off = no token mixing at all */
    bool enable_graph;
    int32_t graph_window;   /* local causal edges j in [i-window+1, i]; 0 = full causal */
    int32_t graph_hops;     /* message-passing hops per layer (1 = attention) */
    bool graph_anchors;     /* edges from every earlier anchor token (BOS, modality markers) */
    int32_t graph_vq_edges; /* edges from up to this many earlier positions with the same VQ code */

    /* multimodal VQ bridge: ternary codebook, nearest code per position, gather + residual add */
    bool enable_vq;
    int32_t vq_codes;
    float vq_beta;          /* commitment weight in the loss */

    /* memory modules: ternary slots read by attention; written by update_memory */
    bool enable_memory;
    int32_t mem_slots;
    int32_t mem_every;      /* a memory read after every mem_every-th layer (1 = every layer) */

    /* MoE inside an ACT loop (replaces the MLP of each layer when on) */
    bool enable_moe;
    int32_t n_experts;
    int32_t expert_mult;    /* expert hidden = expert_mult * dim */
    int32_t act_max_iters;  /* ACT iterations cap (1 = plain MoE) */
    float act_eps;          /* halt when accumulated halting probability ≥ 1 − eps */
    float ponder_weight;    /* ponder cost weight in the loss */

    /* output router: text vs video per position (video is not built yet: the router is trained
     * toward "text" on text targets and its loss is reported) */
    bool enable_output_router;
    float router_weight;

    /* training hints the trainer uses by default (the update rule's constants) */
    int32_t train_batch;      /* sequences per step */
    int32_t train_seq;        /* tokens per sequence in training (≤ ctx) */
    float eta;                /* pressure scale at step 0 */
    float eta_final_frac;     /* cosine decay to eta * eta_final_frac */
    int32_t threshold;        /* T */
    int32_t leak_shift;       /* k */
    float eta_exp;            /* E evidence scale */
    int32_t exp_threshold;    /* R */
    int32_t exp_mode;         /* which row exponents E move: 0 none (E stays at its init), 1 every
                               * tensor, 2 every tensor but the norm gains (a gain's single E
                               * rescales a whole layer input at once) */

    /* per-tensor flip balancing inside backward_update: each tensor's eta is multiplied by
     * 2^(b/4), b an int8 state ("flip_balance", see arb_model_state_at) moved one step per
     * update toward flip rate = flip_target · (eta / config eta), i.e. 1e-3 → 1e-4 under the
     * cosine schedule. Integer state: deterministic and checkpointed like the trits. */
    bool flip_balance;
    float flip_target;
} arb_model_config;

/* "seed" (width 512, vocab 297, all components on, like the reference's full smoke),
 * "shakespeare" (6 × 384, ctx 256, ~10.9M ternary weights, text only),
 * "cpu-small" (text only, sized for 2 CPU cores × 15 minutes),
 * "tiny" (all components on, tiny shapes: tests). ARB_ERR_NOT_FOUND for other names. */
arb_status arb_model_config_named(const char *name, arb_model_config *cfg);
/* Checks ranges and divisibility; one-line error naming the field. */
arb_status arb_model_config_validate(const arb_model_config *cfg);
/* JSON object text (cJSON). to_json: malloc'd string, free() it. from_json: fields absent
 * from the text keep their value in *cfg (start from a named config); unknown keys are
 * an error; the result is validated. */
arb_status arb_model_config_to_json(const arb_model_config *cfg, char **json_out);
arb_status arb_model_config_from_json(const char *json, arb_model_config *cfg);

/* ---- the model ------------------------------------------------------------------------------ */
typedef struct arb_model arb_model;

/* dev: the CPU, or a CUDA device in a CUDA build. The CUDA model runs the text configurations
 * (graph = full causal attention with one hop, MLP, gains, byte head); a config with VQ, memory,
 * MoE/ACT, the output router, graph windows or hops > 1 gives ARB_ERR_UNSUPPORTED naming it.
 * Same seed and data give the same trits on either device up to float rounding of the glue
 * (docs/ARCHITECTURE.md, "The CUDA model"); two CUDA runs give identical bits. */
arb_status arb_model_create(arb_model **out, const arb_model_config *cfg, uint64_t seed, arb_device dev);
void arb_model_free(arb_model *m);
const arb_model_config *arb_model_config_of(const arb_model *m);
/* The device the model computes on (its tensors' host mirrors are what the enumeration below
 * returns on either device: on CUDA they are synchronized when enumerated, and written back to
 * the device before its next forward, so checkpoints work the same from both). */
arb_device arb_model_device(const arb_model *m);

typedef struct arb_loss_parts {
    double total;      /* what training minimizes: ce + vq_beta·vq + ponder_weight·ponder + router_weight·router */
    double ce;         /* mean byte cross-entropy, nats per target */
    double vq_commit;  /* mean ||e − c||² / dim over positions (0 when VQ is off) */
    double ponder;     /* mean ACT ponder cost N + R over positions and layers (0 when off) */
    double router;     /* output-router cross-entropy toward the true modality (0 when off) */
    double act_iters;  /* mean ACT iterations per position and layer (0 when off) */
    int64_t n_targets; /* targets that counted */
} arb_loss_parts;

/* tokens, targets: (B, T) int32, T ≤ ctx. targets may be NULL (loss parts then 0).
 * train = true keeps the activation tape for arb_model_backward_update (requires targets). */
arb_status arb_model_forward(arb_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                             bool train, arb_loss_parts *lp);

typedef struct arb_model_step_params {
    arb_update_params update;  /* eta (already scheduled), T, k, E params, seed, step */
    const float *tensor_eta;   /* optional (n_ternary) multipliers of update.eta per tensor; NULL = 1 */
    bool update_memory;        /* run update_memory after the ternary updates (default true) */
} arb_model_step_params;

/* Defaults from the config's training hints (eta, T, k, eta_exp, R; seed 0, step 0). */
arb_model_step_params arb_model_step_params_default(const arb_model_config *cfg);

typedef struct arb_model_step_stats {
    int64_t flips;     /* trits moved this step, all tensors */
    int64_t zeros;     /* trits at 0 after the step */
    int64_t weights;   /* logical trits updated */
    int32_t exp_moves; /* E moves */
} arb_model_step_stats;

/* Backward through the tape of the last training forward, fused ternary update of every
 * ternary tensor, then update_memory. The tape is consumed (forward again before the next). */
arb_status arb_model_backward_update(arb_model *m, const arb_model_step_params *sp, arb_model_step_stats *stats);

/* Next-token logits (vocab floats) after tokens[0..T-1] (the last ctx tokens are used). */
arb_status arb_model_logits_last(arb_model *m, const int32_t *tokens, int64_t T, float *logits);

/* ---- enumeration: checkpoints and audit --------------------------------------------------- */
/* Ternary tensors (trainable by gradient, plus memory slots written by update_memory). Names
 * are stable ("embed", "layers.0.attn.qkv", "head", ...). Always host tensors: for a CUDA
 * model, the host mirrors, brought up to date by this call; the caller may write them (a
 * checkpoint load then calls arb_model_refresh), the device gets them before its next forward. */
int32_t arb_model_n_ternary(const arb_model *m);
arb_status arb_model_ternary_at(arb_model *m, int32_t i, const char **name, arb_ternary **w, arb_update_state **st);
/* Stats of tensor i from the last backward_update (zeros before the first). */
arb_status arb_model_tensor_stats(const arb_model *m, int32_t i, arb_update_stats *stats);

/* Extra integer state, contiguous host memory: index 0 "flip_balance" (int8, n_ternary),
 * then "vq.usage" (int32, vq_codes) when VQ is on. */
typedef struct arb_model_state_tensor {
    const char *name;
    arb_dtype dtype;
    int ndim;
    int64_t shape[4];
    void *data;
} arb_model_state_tensor;
int32_t arb_model_n_state(const arb_model *m);
arb_status arb_model_state_at(arb_model *m, int32_t i, arb_model_state_tensor *out);

/* After trits/E were loaded or changed from outside: recompute every derived buffer. */
arb_status arb_model_refresh(arb_model *m);

/* The seed report's audit: ternary weights, state MB, 0 trainable float params, buffers. */
arb_status arb_model_audit(const arb_model *m, arb_audit *a);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_MODEL_H */
