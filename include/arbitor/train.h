/* arbitor/train.h — training: corpus and batches, the eta schedule and flip-rate controller,
 * the training loop, validation, checkpoints, and the loss-curve plot.
 *
 * Why this shape: every random choice of a step (its batch, the update rule's stochastic
 * rounding) is a pure function of (seed, step), and every piece of state is integer or a double
 * saved bit-exactly, so a run that is stopped, saved and resumed is bitwise identical to one
 * that never stopped. See docs/TRAINING.md.
 *
 *   arb_corpus data;
 *   arb_corpus_load_file(&data, "tinyshakespeare.txt");       // first 90% train, last 10% val
 *   arb_model_config cfg;
 *   arb_model_config_named("cpu-small", &cfg);
 *   arb_train_options o = arb_train_options_default(&cfg);
 *   o.steps = 1000;
 *   arb_trainer *tr;
 *   arb_trainer_create(&tr, &cfg, &data, &o);
 *   while (tr->step < o.steps) arb_trainer_step(tr, NULL);
 *   double val;
 *   arb_trainer_evaluate(tr, &val);                           // nats per byte
 *   arb_trainer_save(tr, "ckpt.safetensors");                  // atomic
 *   arb_trainer_free(tr);
 */
#ifndef ARBITOR_TRAIN_H
#define ARBITOR_TRAIN_H

#include <stdio.h>

#include "arbitor/core.h"
#include "arbitor/model.h"
#include "arbitor/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- corpus ---------------------------------------------------------------------------------
 * Raw bytes; the first 90% (floor) train, the rest validates. */
#define ARB_FORTUNES_DIR "/usr/share/games/fortunes"

typedef struct arb_corpus {
    uint8_t *bytes;   /* (n) the whole corpus */
    size_t n;
    size_t train_n;   /* bytes[0 .. train_n) */
    size_t val_n;     /* bytes[train_n .. n) */
    uint64_t hash;    /* FNV-1a 64 of all bytes: resume checks it */
    char source[320]; /* file path or a description */
} arb_corpus;

/* A file of any content (empty: ARB_ERR_INVALID_ARG; missing: ARB_ERR_IO). */
arb_status arb_corpus_load_file(arb_corpus *c, const char *path);
/* The default corpus: the fortune text files of Debian's `fortunes` and `fortunes-min`
 * (index files .dat/.u8, offensive sets and ascii-art skipped), concatenated in name order.
 * dir NULL = ARB_FORTUNES_DIR. Absent: ARB_ERR_NOT_FOUND with an install hint. */
arb_status arb_corpus_load_fortunes(arb_corpus *c, const char *dir);
arb_status arb_corpus_from_memory(arb_corpus *c, const void *data, size_t n, const char *name);
void arb_corpus_free(arb_corpus *c);
/* Both splits hold at least ctx + 2 bytes (else a one-line error naming the sizes). */
arb_status arb_corpus_check(const arb_corpus *c, int64_t ctx);

/* tokens (batch, ctx + 1): random training windows, a pure function of (seed, step). */
arb_status arb_corpus_train_batch(const arb_corpus *c, uint64_t seed, uint64_t step, int64_t batch, int64_t ctx,
                                  int32_t *tokens);
/* The fixed validation set: `nwin` windows of ctx + 1 bytes evenly spread over the validation
 * split, whose targets do not overlap. How many fit (≤ want): */
int64_t arb_corpus_val_windows(const arb_corpus *c, int64_t ctx, int64_t want);
/* tokens (count, ctx + 1) = windows [first, first + count) of the nwin-window set. */
arb_status arb_corpus_val_batch(const arb_corpus *c, int64_t first, int64_t count, int64_t nwin, int64_t ctx,
                                int32_t *tokens);

/* ---- schedule ------------------------------------------------------------------------------- */
typedef enum arb_schedule_mode {
    ARB_SCHED_COSINE = 0, /* eta = cosine from eta0 to eta0 * eta_final_frac over the run */
    ARB_SCHED_FLIP = 1    /* cosine eta × a per-tensor multiplier steering its flip rate to a target */
} arb_schedule_mode;

typedef struct arb_schedule {
    arb_schedule_mode mode;
    double eta0;           /* pressure scale at position 0 */
    double eta_final_frac; /* eta at position 1 = eta0 * this (0.1) */
    double flip_early;     /* flip-rate target at position 0 (flips per weight per step), 1e-3 */
    double flip_late;      /* ... at position 1, 1e-4 */
    double ctrl_gain;      /* multiplier *= (target / rate)^gain, clamped to [0.8, 1.25] a step */
    double ctrl_min, ctrl_max; /* multiplier range */
} arb_schedule;

arb_schedule arb_schedule_default(void);
/* pos in [0, 1]: the fraction of the run done (steps or time budget). */
double arb_schedule_eta(const arb_schedule *s, double pos);
double arb_schedule_flip_target(const arb_schedule *s, double pos);
/* One controller step of a tensor's multiplier from its integer flip count. */
double arb_schedule_ctrl_update(const arb_schedule *s, double mult, int64_t flips, int64_t weights, double pos);

/* Exact double <-> 16 hex digits of its bits (checkpoint metadata). */
void arb_f64_to_hex(double x, char out[17]);
bool arb_f64_from_hex(const char *s, double *out);

/* ---- the trainer ---------------------------------------------------------------------------- */
typedef struct arb_train_options {
    int64_t steps;          /* total steps; 0 = until the time budget (then required) */
    double time_budget_s;   /* 0 = none; the schedule runs over it when steps = 0 */
    uint64_t seed;
    int64_t batch;          /* sequences per step (config's train_batch) */
    int64_t seq;            /* tokens per sequence (config's train_seq) */
    int64_t eval_windows;   /* validation windows (fixed set), 256 */
    arb_schedule sched;     /* eta0 / final frac from the config's hints */
    double gain_eta_mult;   /* eta multiplier of norm-gain tensors (kind GAIN); 1 = same as the rest */
    arb_device device;
} arb_train_options;

arb_train_options arb_train_options_default(const arb_model_config *cfg);

/* A history point (step, value). */
typedef struct arb_train_point {
    int64_t step;
    double value;
} arb_train_point;

typedef struct arb_trainer {
    arb_model *model;
    arb_model_config cfg;
    arb_train_options opt;
    const arb_corpus *corpus; /* borrowed */
    int64_t step;             /* steps done */
    int64_t tokens;           /* training targets seen */
    double elapsed_s;         /* training wall time over all sessions (time-budget schedule) */
    double step_time_s;       /* time spent inside arb_trainer_step (tokens/s) over all sessions */
    int32_t n_tensors;
    double *ctrl;             /* (n_tensors) per-tensor eta multipliers: gain_eta_mult for norm gains,
                                 1 for the rest; the flip controller moves them in flip mode */
    float *ctrl_f;            /* (n_tensors) the same as floats for the model */
    int64_t *flips_acc;       /* (n_tensors) flips since the last log record */
    int32_t *exp_moves_acc;   /* (n_tensors) E moves since the last log record */
    int64_t acc_steps;        /* steps since the last log record */
    double last_loss;         /* training loss (ce, nats/byte) of the last step */
    double last_eta;
    arb_model_step_stats last_stats;
    arb_train_point *train_hist; /* (n_train_hist) mean training loss per log interval */
    int64_t n_train_hist, cap_train_hist;
    arb_train_point *val_hist;   /* (n_val_hist) validation loss */
    int64_t n_val_hist, cap_val_hist;
    int32_t *buf_win;  /* (batch, seq + 1) */
    int32_t *buf_tok;  /* (batch, seq) */
    int32_t *buf_tgt;  /* (batch, seq) */
} arb_trainer;

/* Creates the model (seeded by opt->seed) and the trainer. The corpus must outlive it. */
arb_status arb_trainer_create(arb_trainer **out, const arb_model_config *cfg, const arb_corpus *corpus,
                              const arb_train_options *opt);
void arb_trainer_free(arb_trainer *tr);
/* Fraction of the run done: max(step / steps, elapsed / budget), in [0, 1]. */
double arb_trainer_position(const arb_trainer *tr);
/* One step: batch(seed, step) → forward → fused backward + update. *loss: its training CE. */
arb_status arb_trainer_step(arb_trainer *tr, double *loss);
/* Mean CE over the fixed validation windows, nats per byte. Does not change training state. */
arb_status arb_trainer_evaluate(arb_trainer *tr, double *nats_per_byte);
/* The same over a smaller fixed set: `want` windows evenly spread (cheap periodic checks). */
arb_status arb_trainer_evaluate_windows(arb_trainer *tr, int64_t want, double *nats_per_byte);
/* Appends to the histories (the plot and the checkpoint keep them). */
arb_status arb_trainer_record(arb_trainer *tr, bool val, int64_t step, double value);
/* One JSONL record: step, tokens, eta, loss, and per tensor its flip rate, zero fraction,
 * controller multiplier and E moves since the last record (then those counters restart). */
arb_status arb_trainer_log_jsonl(arb_trainer *tr, FILE *f, double train_loss, double val_loss, double tokens_per_s);

/* ---- checkpoints ----------------------------------------------------------------------------
 * safetensors, written atomically. Per ternary tensor NAME: NAME.trits U8 (rows_pad/16,
 * cols_pad/16, 64) tile16 codes; NAME.accum I8 (rows, cols); NAME.exp I8 (rows) and
 * NAME.exp_evidence I8 (rows) unless the tensor's exponent is fixed (E ≡ 0, see
 * arb_ternary_fix_exponent). Extra model state: state.NAME with its dtype and shape.
 * Metadata: format, config (JSON), seed, step, tokens, elapsed/position/update state/controller
 * as exact hex doubles, options, data hash, histories. */
#define ARB_CKPT_FORMAT "arbitor-train-checkpoint-1"

arb_status arb_trainer_save(const arb_trainer *tr, const char *path);
/* Continues a run. The config, seed, options and schedule come from the checkpoint; `expect`
 * (may be NULL) must equal the checkpoint's config; `override` (may be NULL) may change only
 * steps and time_budget_s (a new horizon). The corpus must be the one trained on (hash). */
arb_status arb_trainer_resume(arb_trainer **out, const char *path, const arb_corpus *corpus,
                              const arb_model_config *expect, const arb_train_options *override);
/* Model only (generate, audit): config from the checkpoint, every tensor validated and loaded. */
arb_status arb_checkpoint_load_model(const char *path, arb_device dev, arb_model **out);

/* Saves the model state of `m` (no trainer metadata beyond `meta` key/value pairs). */
arb_status arb_checkpoint_save_model(arb_model *m, const char *path, const char *const *meta_kv, int n_meta);

/* A named configuration ("cpu-small", ...) or a JSON file of config fields. A file's fields
 * land on the named config its "name" key gives (when it names one), else on "cpu-small". */
arb_status arb_train_config_resolve(const char *name_or_file, arb_model_config *cfg);

/* ---- plot ----------------------------------------------------------------------------------- */
/* PNG (900×540): train (line) and validation (line + markers) against step, axes with ticks.
 * ARB_ERR_UNSUPPORTED in a build without libpng. Atomic (temp + rename). */
arb_status arb_plot_loss_png(const char *path, const char *title, const double *tx, const double *ty, int64_t tn,
                             const double *vx, const double *vy, int64_t vn);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_TRAIN_H */
