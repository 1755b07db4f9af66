/* The training loop's state machine: one step = batch(seed, step) → forward → fused backward +
 * ternary update; validation on a fixed window set; save and resume. Why a struct and not a
 * loop function: the CLI owns time, signals, logging and the progress bar; tests drive steps
 * directly and compare runs bit for bit. */
#include "arbitor/safetensors.h"
#include "arbitor/train.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train_internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

arb_train_options arb_train_options_default(const arb_model_config *cfg) {
    arb_train_options o;
    memset(&o, 0, sizeof o);
    o.seed = 1337;
    o.batch = cfg ? cfg->train_batch : 16;
    o.seq = cfg ? cfg->train_seq : 128;
    o.eval_windows = 256;
    o.gain_eta_mult = 1.0;
    o.sched = arb_schedule_default();
    if (cfg) {
        o.sched.eta0 = cfg->eta;
        o.sched.eta_final_frac = cfg->eta_final_frac;
    }
    o.device = arb_cpu();
    return o;
}

static arb_status check_options(const arb_train_options *o, const arb_model_config *cfg) {
    if (o->steps < 0) return arb_error(ARB_ERR_INVALID_ARG, "train: steps %lld < 0", (long long)o->steps);
    if (!(o->time_budget_s >= 0)) return arb_error(ARB_ERR_INVALID_ARG, "train: negative time budget");
    if (o->steps == 0 && o->time_budget_s == 0)
        return arb_error(ARB_ERR_INVALID_ARG, "train: give a number of steps or a time budget");
    if (o->batch < 1 || o->batch > (1 << 20))
        return arb_error(ARB_ERR_INVALID_ARG, "train: batch %lld outside [1, 2^20]", (long long)o->batch);
    if (o->seq < 1 || o->seq > cfg->ctx)
        return arb_error(ARB_ERR_INVALID_ARG, "train: sequence length %lld outside [1, ctx %d]", (long long)o->seq,
                         cfg->ctx);
    if (o->eval_windows < 1) return arb_error(ARB_ERR_INVALID_ARG, "train: eval windows < 1");
    if (!(o->gain_eta_mult >= 0 && o->gain_eta_mult <= 64))
        return arb_error(ARB_ERR_INVALID_ARG, "train: gain eta multiplier %g outside [0, 64]", o->gain_eta_mult);
    if (!(o->sched.eta0 >= 0 && o->sched.eta0 <= 127))
        return arb_error(ARB_ERR_INVALID_ARG, "train: eta0 %g outside [0, 127]", o->sched.eta0);
    if (!(o->sched.eta_final_frac >= 0 && o->sched.eta_final_frac <= 1))
        return arb_error(ARB_ERR_INVALID_ARG, "train: eta final fraction outside [0, 1]");
    if (o->sched.mode != ARB_SCHED_COSINE && o->sched.mode != ARB_SCHED_FLIP)
        return arb_error(ARB_ERR_INVALID_ARG, "train: unknown schedule mode %d", (int)o->sched.mode);
    if (!(o->sched.flip_early > 0 && o->sched.flip_late > 0 && o->sched.ctrl_min > 0 &&
          o->sched.ctrl_max >= o->sched.ctrl_min && o->sched.ctrl_gain >= 0))
        return arb_error(ARB_ERR_INVALID_ARG, "train: bad flip-rate controller settings");
    return ARB_OK;
}

static arb_status trainer_alloc(arb_trainer *tr) {
    size_t B = (size_t)tr->opt.batch, T = (size_t)tr->opt.seq, n = (size_t)tr->n_tensors;
    size_t win, tok;
    if (!arb_mul_size(B, T + 1, &win) || !arb_mul_size(win, sizeof(int32_t), &win) || !arb_mul_size(B, T, &tok) ||
        !arb_mul_size(tok, sizeof(int32_t), &tok))
        return arb_error(ARB_ERR_OVERFLOW, "train: batch %zu x %zu overflows", B, T);
    tr->buf_win = arb_alloc(win);
    tr->buf_tok = arb_alloc(tok);
    tr->buf_tgt = arb_alloc(tok);
    tr->ctrl = calloc(n ? n : 1, sizeof *tr->ctrl);
    tr->ctrl_f = calloc(n ? n : 1, sizeof *tr->ctrl_f);
    tr->flips_acc = calloc(n ? n : 1, sizeof *tr->flips_acc);
    tr->exp_moves_acc = calloc(n ? n : 1, sizeof *tr->exp_moves_acc);
    if (!tr->buf_win || !tr->buf_tok || !tr->buf_tgt || !tr->ctrl || !tr->ctrl_f || !tr->flips_acc ||
        !tr->exp_moves_acc)
        return arb_error(ARB_ERR_OOM, "train: out of memory");
    for (size_t i = 0; i < n; i++) {
        tr->ctrl[i] = 1.0;
        tr->ctrl_f[i] = 1.0f;
    }
    return ARB_OK;
}

static arb_status trainer_new(arb_trainer **out, const arb_model_config *cfg, const arb_corpus *corpus,
                              const arb_train_options *opt) {
    *out = NULL;
    ARB_TRY(arb_model_config_validate(cfg));
    ARB_TRY(check_options(opt, cfg));
    ARB_TRY(arb_corpus_check(corpus, opt->seq));
    arb_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return arb_error(ARB_ERR_OOM, "train: out of memory");
    tr->cfg = *cfg;
    tr->opt = *opt;
    tr->corpus = corpus;
    tr->last_loss = NAN;
    arb_status s = arb_model_create(&tr->model, cfg, opt->seed, opt->device);
    if (s == ARB_OK && arb_model_device(tr->model).kind != opt->device.kind)
        s = arb_error(ARB_ERR_UNSUPPORTED, "train: the model was not created on the requested %s device",
                      opt->device.kind == ARB_DEVICE_CUDA ? "CUDA" : "CPU");
    if (s == ARB_OK) {
        tr->n_tensors = arb_model_n_ternary(tr->model);
        s = trainer_alloc(tr);
    }
    for (int32_t i = 0; s == ARB_OK && i < tr->n_tensors; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        s = arb_model_ternary_at(tr->model, i, &name, &t, &us);
        if (s == ARB_OK && t->kind == ARB_TERNARY_GAIN) {
            tr->ctrl[i] = opt->gain_eta_mult;
            tr->ctrl_f[i] = (float)opt->gain_eta_mult;
        }
    }
    if (s != ARB_OK) {
        arb_trainer_free(tr);
        return s;
    }
    *out = tr;
    return ARB_OK;
}

arb_status arb_trainer_create(arb_trainer **out, const arb_model_config *cfg, const arb_corpus *corpus,
                              const arb_train_options *opt) {
    if (!out || !cfg || !corpus || !opt) return arb_error(ARB_ERR_INVALID_ARG, "train: NULL argument");
    return trainer_new(out, cfg, corpus, opt);
}

void arb_trainer_free(arb_trainer *tr) {
    if (!tr) return;
    arb_model_free(tr->model);
    arb_free(tr->buf_win);
    arb_free(tr->buf_tok);
    arb_free(tr->buf_tgt);
    free(tr->ctrl);
    free(tr->ctrl_f);
    free(tr->flips_acc);
    free(tr->exp_moves_acc);
    free(tr->train_hist);
    free(tr->val_hist);
    free(tr);
}

double arb_trainer_position(const arb_trainer *tr) {
    double p = 0;
    if (tr->opt.steps > 0) p = (double)tr->step / (double)tr->opt.steps;
    if (tr->opt.time_budget_s > 0) p = fmax(p, tr->elapsed_s / tr->opt.time_budget_s);
    return p < 0 ? 0 : (p > 1 ? 1 : p);
}

static void split_windows(arb_trainer *tr, int64_t n) {
    int64_t T = tr->opt.seq;
    for (int64_t b = 0; b < n; b++) {
        const int32_t *w = tr->buf_win + b * (T + 1);
        memcpy(tr->buf_tok + b * T, w, (size_t)T * sizeof(int32_t));
        memcpy(tr->buf_tgt + b * T, w + 1, (size_t)T * sizeof(int32_t));
    }
}

arb_status arb_trainer_step(arb_trainer *tr, double *loss) {
    if (!tr) return arb_error(ARB_ERR_INVALID_ARG, "train: NULL trainer");
    double t0 = now_s();
    int64_t B = tr->opt.batch, T = tr->opt.seq;
    ARB_TRY(arb_corpus_train_batch(tr->corpus, tr->opt.seed, (uint64_t)tr->step, B, T, tr->buf_win));
    split_windows(tr, B);
    arb_loss_parts lp;
    ARB_TRY(arb_model_forward(tr->model, tr->buf_tok, tr->buf_tgt, B, T, true, &lp));
    if (!isfinite(lp.total))
        return arb_error(ARB_ERR_INTERNAL, "train: loss is %g at step %lld", lp.total, (long long)tr->step);
    double pos = arb_trainer_position(tr);
    double eta = arb_schedule_eta(&tr->opt.sched, pos);
    arb_model_step_params sp = arb_model_step_params_default(&tr->cfg);
    sp.update.eta = (float)eta;
    sp.update.seed = tr->opt.seed;
    sp.update.step = (uint64_t)tr->step;
    sp.tensor_eta = tr->ctrl_f;
    arb_model_step_stats ss;
    ARB_TRY(arb_model_backward_update(tr->model, &sp, &ss));
    for (int32_t i = 0; i < tr->n_tensors; i++) {
        arb_update_stats us;
        ARB_TRY(arb_model_tensor_stats(tr->model, i, &us));
        tr->flips_acc[i] += us.flips;
        tr->exp_moves_acc[i] += us.exp_moves;
        if (tr->opt.sched.mode == ARB_SCHED_FLIP) {
            tr->ctrl[i] = arb_schedule_ctrl_update(&tr->opt.sched, tr->ctrl[i], us.flips, us.weights, pos);
            tr->ctrl_f[i] = (float)tr->ctrl[i];
        }
    }
    tr->acc_steps++;
    tr->last_stats = ss;
    tr->last_loss = lp.ce;
    tr->last_eta = eta;
    tr->step++;
    tr->tokens += lp.n_targets;
    double dt = now_s() - t0;
    tr->elapsed_s += dt;
    tr->step_time_s += dt;
    if (loss) *loss = lp.ce;
    return ARB_OK;
}

arb_status arb_trainer_evaluate(arb_trainer *tr, double *nats_per_byte) {
    if (!tr) return arb_error(ARB_ERR_INVALID_ARG, "evaluate: NULL argument");
    return arb_trainer_evaluate_windows(tr, tr->opt.eval_windows, nats_per_byte);
}

arb_status arb_trainer_evaluate_windows(arb_trainer *tr, int64_t want, double *nats_per_byte) {
    if (!tr || !nats_per_byte || want < 1) return arb_error(ARB_ERR_INVALID_ARG, "evaluate: bad argument");
    int64_t T = tr->opt.seq, B = tr->opt.batch;
    int64_t nwin = arb_corpus_val_windows(tr->corpus, T, want);
    if (nwin < 1) return arb_error(ARB_ERR_INVALID_ARG, "evaluate: the validation split is too small");
    double sum = 0;
    int64_t count = 0;
    for (int64_t first = 0; first < nwin; first += B) {
        int64_t n = nwin - first < B ? nwin - first : B;
        ARB_TRY(arb_corpus_val_batch(tr->corpus, first, n, nwin, T, tr->buf_win));
        split_windows(tr, n);
        arb_loss_parts lp;
        ARB_TRY(arb_model_forward(tr->model, tr->buf_tok, tr->buf_tgt, n, T, false, &lp));
        sum += lp.ce * (double)lp.n_targets;
        count += lp.n_targets;
    }
    if (count == 0) return arb_error(ARB_ERR_INTERNAL, "evaluate: no targets counted");
    *nats_per_byte = sum / (double)count;
    return ARB_OK;
}

arb_status arb_trainer_record(arb_trainer *tr, bool val, int64_t step, double value) {
    arb_train_point **h = val ? &tr->val_hist : &tr->train_hist;
    int64_t *n = val ? &tr->n_val_hist : &tr->n_train_hist, *cap = val ? &tr->cap_val_hist : &tr->cap_train_hist;
    if (*n == *cap) {
        int64_t nc = *cap ? 2 * *cap : 64;
        arb_train_point *p = realloc(*h, (size_t)nc * sizeof **h);
        if (!p) return arb_error(ARB_ERR_OOM, "train: out of memory (history)");
        *h = p;
        *cap = nc;
    }
    (*h)[*n].step = step;
    (*h)[*n].value = value;
    (*n)++;
    return ARB_OK;
}

arb_status arb_trainer_log_jsonl(arb_trainer *tr, FILE *f, double train_loss, double val_loss, double tokens_per_s) {
    if (!tr || !f) return arb_error(ARB_ERR_INVALID_ARG, "log: NULL argument");
    double steps = tr->acc_steps > 0 ? (double)tr->acc_steps : 1.0;
    fprintf(f, "{\"step\":%" PRId64 ",\"tokens\":%" PRId64 ",\"elapsed_s\":%.3f,\"position\":%.6f,\"eta\":%.6g", tr->step,
            tr->tokens, tr->elapsed_s, arb_trainer_position(tr), tr->last_eta);
    if (isfinite(train_loss)) fprintf(f, ",\"train_nats_per_byte\":%.6f", train_loss);
    if (isfinite(val_loss))
        fprintf(f, ",\"val_nats_per_byte\":%.6f,\"val_bits_per_byte\":%.6f", val_loss, val_loss / M_LN2);
    if (isfinite(tokens_per_s)) fprintf(f, ",\"tokens_per_s\":%.1f", tokens_per_s);
    int64_t fl = 0, w = 0, z = 0;
    fputs(",\"layers\":[", f);
    for (int32_t i = 0; i < tr->n_tensors; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        arb_update_stats st;
        ARB_TRY(arb_model_ternary_at(tr->model, i, &name, &t, &us));
        ARB_TRY(arb_model_tensor_stats(tr->model, i, &st));
        int64_t weights = t->rows * t->cols, zeros = 0;
        /* Zero fraction from the trits themselves: exact even before the first update. */
        for (int64_t r = 0; r < t->rows; r++) zeros += t->cols - t->nnz[r];
        fl += tr->flips_acc[i];
        w += weights;
        z += zeros;
        fprintf(f, "%s{\"name\":\"%s\",\"weights\":%" PRId64 ",\"flip_rate\":%.4e,\"zero_frac\":%.5f,\"eta_mult\":%.4g,"
                   "\"exp_moves\":%d}",
                i ? "," : "", name, weights, (double)tr->flips_acc[i] / ((double)weights * steps),
                (double)zeros / (double)weights, tr->ctrl[i], tr->exp_moves_acc[i]);
        tr->flips_acc[i] = 0;
        tr->exp_moves_acc[i] = 0;
    }
    fprintf(f, "],\"flip_rate\":%.4e,\"zero_frac\":%.5f}\n", w ? (double)fl / ((double)w * steps) : 0.0,
            w ? (double)z / (double)w : 0.0);
    tr->acc_steps = 0;
    fflush(f);
    return ARB_OK;
}

/* ------------------------------------------------------------------ save / resume */

static const char *mode_name(arb_schedule_mode m) { return m == ARB_SCHED_FLIP ? "flip" : "cosine"; }

static bool add_hex(cJSON *o, const char *key, double v) {
    char hx[17];
    arb_f64_to_hex(v, hx);
    return cJSON_AddStringToObject(o, key, hx) != NULL;
}

static cJSON *history_json(const arb_train_point *h, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < n; i++) {
        char hx[17];
        arb_f64_to_hex(h[i].value, hx);
        cJSON *p = cJSON_CreateArray();
        if (!p) break;
        cJSON_AddItemToArray(p, cJSON_CreateNumber((double)h[i].step));
        cJSON_AddItemToArray(p, cJSON_CreateString(hx));
        cJSON_AddItemToArray(a, p);
    }
    return a;
}

arb_status arb_trainer_save(const arb_trainer *tr, const char *path) {
    if (!tr || !path) return arb_error(ARB_ERR_INVALID_ARG, "save: NULL argument");
    arb_status s = ARB_OK;
    char *cfg_json = NULL, *upd = NULL, *opt_text = NULL, *sch_text = NULL, *ctl_text = NULL, *data_text = NULL,
         *hist_text = NULL, *prog_text = NULL;
    cJSON *opt = cJSON_CreateObject(), *sch = cJSON_CreateObject(), *ctl = cJSON_CreateObject(),
          *data = cJSON_CreateObject(), *hist = cJSON_CreateObject(), *prog = cJSON_CreateObject();
    arb_st_writer *w = NULL;
    bool ok = opt && sch && ctl && data && hist && prog;
    /* options */
    ok = ok && cJSON_AddNumberToObject(opt, "steps", (double)tr->opt.steps) && add_hex(opt, "time_budget_s", tr->opt.time_budget_s) &&
         cJSON_AddNumberToObject(opt, "batch", (double)tr->opt.batch) && cJSON_AddNumberToObject(opt, "seq", (double)tr->opt.seq) &&
         cJSON_AddNumberToObject(opt, "eval_windows", (double)tr->opt.eval_windows) &&
         add_hex(opt, "gain_eta_mult", tr->opt.gain_eta_mult);
    /* schedule */
    ok = ok && cJSON_AddStringToObject(sch, "mode", mode_name(tr->opt.sched.mode)) && add_hex(sch, "eta0", tr->opt.sched.eta0) &&
         add_hex(sch, "eta_final_frac", tr->opt.sched.eta_final_frac) && add_hex(sch, "flip_early", tr->opt.sched.flip_early) &&
         add_hex(sch, "flip_late", tr->opt.sched.flip_late) && add_hex(sch, "ctrl_gain", tr->opt.sched.ctrl_gain) &&
         add_hex(sch, "ctrl_min", tr->opt.sched.ctrl_min) && add_hex(sch, "ctrl_max", tr->opt.sched.ctrl_max);
    /* progress: step, tokens, clocks, last loss (the RNG is counter-based: (seed, step) is its whole state) */
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, tr->step);
    ok = ok && cJSON_AddStringToObject(prog, "step", num);
    snprintf(num, sizeof num, "%" PRId64, tr->tokens);
    ok = ok && cJSON_AddStringToObject(prog, "tokens", num) && add_hex(prog, "elapsed_s", tr->elapsed_s) &&
         add_hex(prog, "step_time_s", tr->step_time_s) && add_hex(prog, "position", arb_trainer_position(tr)) &&
         add_hex(prog, "last_loss", tr->last_loss) && add_hex(prog, "last_eta", tr->last_eta);
    for (int32_t i = 0; ok && i < tr->n_tensors; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        s = arb_model_ternary_at(tr->model, i, &name, &t, &us);
        if (s != ARB_OK) break;
        ok = add_hex(ctl, name, tr->ctrl[i]);
    }
    char hx[17];
    snprintf(hx, sizeof hx, "%016" PRIx64, tr->corpus->hash);
    ok = ok && cJSON_AddStringToObject(data, "fnv1a64", hx) && cJSON_AddNumberToObject(data, "bytes", (double)tr->corpus->n) &&
         cJSON_AddStringToObject(data, "source", tr->corpus->source);
    if (ok) {
        cJSON_AddItemToObject(hist, "train", history_json(tr->train_hist, tr->n_train_hist));
        cJSON_AddItemToObject(hist, "val", history_json(tr->val_hist, tr->n_val_hist));
    }
    if (s == ARB_OK && ok) {
        opt_text = cJSON_PrintUnformatted(opt);
        sch_text = cJSON_PrintUnformatted(sch);
        ctl_text = cJSON_PrintUnformatted(ctl);
        data_text = cJSON_PrintUnformatted(data);
        hist_text = cJSON_PrintUnformatted(hist);
        prog_text = cJSON_PrintUnformatted(prog);
        ok = opt_text && sch_text && ctl_text && data_text && hist_text && prog_text;
    }
    if (s == ARB_OK && !ok) s = arb_error(ARB_ERR_OOM, "save: out of memory");
    if (s == ARB_OK) s = arb_model_config_to_json(&tr->cfg, &cfg_json);
    if (s == ARB_OK) s = arb_st_writer_open(&w, path);
    if (s == ARB_OK) s = arb_ckpt_add_model(w, tr->model, &upd);
    char seed[32], rng[96];
    snprintf(seed, sizeof seed, "%" PRIu64, tr->opt.seed);
    snprintf(rng, sizeof rng, "{\"kind\":\"counter\",\"seed\":\"%" PRIu64 "\",\"next_step\":\"%" PRId64 "\"}", tr->opt.seed,
             tr->step);
    const char *kv[][2] = {{"format", ARB_CKPT_FORMAT}, {"config", cfg_json},  {"update_state", upd},
                           {"seed", seed},              {"rng", rng},          {"options", opt_text},
                           {"schedule", sch_text},      {"controller", ctl_text}, {"data", data_text},
                           {"history", hist_text},      {"progress", prog_text}};
    for (size_t i = 0; s == ARB_OK && i < sizeof kv / sizeof kv[0]; i++) s = arb_st_writer_set_metadata(w, kv[i][0], kv[i][1]);
    if (s == ARB_OK) s = arb_st_writer_commit(w);
    else if (w) arb_st_writer_abort(w);
    cJSON_Delete(opt); cJSON_Delete(sch); cJSON_Delete(ctl); cJSON_Delete(data); cJSON_Delete(hist); cJSON_Delete(prog);
    free(cfg_json); free(upd); free(opt_text); free(sch_text); free(ctl_text); free(data_text); free(hist_text);
    free(prog_text);
    return s;
}

/* Metadata readers: each failure is one line naming the key. */
static arb_status meta_json(const arb_safetensors *st, const char *path, const char *key, cJSON **out) {
    const char *t = arb_safetensors_metadata(st, key);
    if (!t) return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata '%s' is missing", path, key);
    *out = cJSON_Parse(t);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata '%s' is not a JSON object", path, key);
    }
    return ARB_OK;
}

static arb_status get_hex(const cJSON *o, const char *path, const char *what, const char *key, double *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(x) || !arb_f64_from_hex(x->valuestring, out))
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: %s.%s is missing or not 16 hex digits", path, what, key);
    return ARB_OK;
}

static arb_status get_int(const cJSON *o, const char *path, const char *what, const char *key, int64_t lo, int64_t hi,
                          int64_t *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    int64_t v;
    if (cJSON_IsNumber(x)) {
        if (x->valuedouble != floor(x->valuedouble) || x->valuedouble < (double)lo || x->valuedouble > (double)hi)
            return arb_error(ARB_ERR_FORMAT, "checkpoint %s: %s.%s = %g is out of range", path, what, key, x->valuedouble);
        v = (int64_t)x->valuedouble;
    } else if (cJSON_IsString(x)) {
        char *end;
        long long ll = strtoll(x->valuestring, &end, 10);
        if (*end || end == x->valuestring || ll < lo || ll > hi)
            return arb_error(ARB_ERR_FORMAT, "checkpoint %s: %s.%s = '%s' is not an integer in range", path, what, key,
                             x->valuestring);
        v = ll;
    } else {
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: %s.%s is missing", path, what, key);
    }
    *out = v;
    return ARB_OK;
}

static arb_status load_history(arb_trainer *tr, const cJSON *hist, const char *path, bool val) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(hist, val ? "val" : "train");
    if (!cJSON_IsArray(a)) return arb_error(ARB_ERR_FORMAT, "checkpoint %s: history.%s is missing", path, val ? "val" : "train");
    const cJSON *p;
    cJSON_ArrayForEach(p, a) {
        const cJSON *s = cJSON_GetArrayItem(p, 0), *v = cJSON_GetArrayItem(p, 1);
        double d;
        if (!cJSON_IsNumber(s) || !cJSON_IsString(v) || !arb_f64_from_hex(v->valuestring, &d))
            return arb_error(ARB_ERR_FORMAT, "checkpoint %s: malformed history entry", path);
        ARB_TRY(arb_trainer_record(tr, val, (int64_t)s->valuedouble, d));
    }
    return ARB_OK;
}

static arb_status resume_into(arb_trainer **out, arb_safetensors *st, const char *path, const arb_corpus *corpus,
                              const arb_model_config *expect, const arb_train_options *override) {
    arb_model_config cfg;
    ARB_TRY(arb_ckpt_config(st, path, &cfg));
    if (expect) {
        char *a = NULL, *b = NULL;
        arb_status s = arb_model_config_to_json(&cfg, &a);
        if (s == ARB_OK) s = arb_model_config_to_json(expect, &b);
        bool same = s == ARB_OK && !strcmp(a, b);
        free(a);
        free(b);
        if (s != ARB_OK) return s;
        if (!same)
            return arb_error(ARB_ERR_INVALID_ARG, "checkpoint %s: its config ('%s') differs from the requested one ('%s')",
                             path, cfg.name, expect->name);
    }
    arb_train_options o = arb_train_options_default(&cfg);
    const char *sd = arb_safetensors_metadata(st, "seed");
    char *end = NULL;
    if (!sd || !*sd || (o.seed = strtoull(sd, &end, 10), *end))
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata 'seed' is missing or not an integer", path);
    cJSON *opt = NULL, *sch = NULL, *ctl = NULL, *data = NULL, *hist = NULL, *prog = NULL;
    arb_status s = meta_json(st, path, "options", &opt);
    if (s == ARB_OK) s = meta_json(st, path, "schedule", &sch);
    if (s == ARB_OK) s = meta_json(st, path, "controller", &ctl);
    if (s == ARB_OK) s = meta_json(st, path, "data", &data);
    if (s == ARB_OK) s = meta_json(st, path, "history", &hist);
    if (s == ARB_OK) s = meta_json(st, path, "progress", &prog);
    int64_t step = 0, tokens = 0;
    double elapsed = 0, step_time = 0, last_loss = 0, last_eta = 0;
    if (s == ARB_OK) s = get_int(opt, path, "options", "steps", 0, INT64_MAX / 2, &o.steps);
    if (s == ARB_OK) s = get_hex(opt, path, "options", "time_budget_s", &o.time_budget_s);
    if (s == ARB_OK) s = get_int(opt, path, "options", "batch", 1, 1 << 20, &o.batch);
    if (s == ARB_OK) s = get_int(opt, path, "options", "seq", 1, 1 << 20, &o.seq);
    if (s == ARB_OK) s = get_int(opt, path, "options", "eval_windows", 1, 1 << 30, &o.eval_windows);
    if (s == ARB_OK) s = get_hex(opt, path, "options", "gain_eta_mult", &o.gain_eta_mult);
    if (s == ARB_OK) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(sch, "mode");
        if (!cJSON_IsString(m) || (strcmp(m->valuestring, "cosine") && strcmp(m->valuestring, "flip")))
            s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: schedule.mode is missing or unknown", path);
        else o.sched.mode = strcmp(m->valuestring, "flip") ? ARB_SCHED_COSINE : ARB_SCHED_FLIP;
    }
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "eta0", &o.sched.eta0);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "eta_final_frac", &o.sched.eta_final_frac);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "flip_early", &o.sched.flip_early);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "flip_late", &o.sched.flip_late);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "ctrl_gain", &o.sched.ctrl_gain);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "ctrl_min", &o.sched.ctrl_min);
    if (s == ARB_OK) s = get_hex(sch, path, "schedule", "ctrl_max", &o.sched.ctrl_max);
    if (s == ARB_OK) s = get_int(prog, path, "progress", "step", 0, INT64_MAX / 2, &step);
    if (s == ARB_OK) s = get_int(prog, path, "progress", "tokens", 0, INT64_MAX / 2, &tokens);
    if (s == ARB_OK) s = get_hex(prog, path, "progress", "elapsed_s", &elapsed);
    if (s == ARB_OK) s = get_hex(prog, path, "progress", "step_time_s", &step_time);
    if (s == ARB_OK) s = get_hex(prog, path, "progress", "last_loss", &last_loss);
    if (s == ARB_OK) s = get_hex(prog, path, "progress", "last_eta", &last_eta);
    if (s == ARB_OK) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(data, "fnv1a64");
        char hx[17];
        snprintf(hx, sizeof hx, "%016" PRIx64, corpus->hash);
        if (!cJSON_IsString(h)) s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: data.fnv1a64 is missing", path);
        else if (strcmp(h->valuestring, hx) != 0) {
            const cJSON *src = cJSON_GetObjectItemCaseSensitive(data, "source");
            s = arb_error(ARB_ERR_INVALID_ARG,
                          "checkpoint %s was trained on different data ('%s', hash %s); this data ('%s') hashes to %s",
                          path, cJSON_IsString(src) ? src->valuestring : "?", h->valuestring, corpus->source, hx);
        }
    }
    if (s == ARB_OK && override) {
        o.steps = override->steps;
        o.time_budget_s = override->time_budget_s;
        o.device = override->device;
    }
    if (s == ARB_OK && ((o.steps == 0 && o.time_budget_s == 0) || (o.steps > 0 && step > o.steps)))
        s = arb_error(ARB_ERR_INVALID_ARG, "checkpoint %s: at step %lld, beyond the run's %lld steps (pass a larger --steps)",
                      path, (long long)step, (long long)o.steps);
    arb_trainer *tr = NULL;
    if (s == ARB_OK) s = trainer_new(&tr, &cfg, corpus, &o);
    if (s == ARB_OK) s = arb_ckpt_load_model_state(st, path, tr->model);
    for (int32_t i = 0; s == ARB_OK && i < tr->n_tensors; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        s = arb_model_ternary_at(tr->model, i, &name, &t, &us);
        if (s == ARB_OK) s = get_hex(ctl, path, "controller", name, &tr->ctrl[i]);
        if (s == ARB_OK) tr->ctrl_f[i] = (float)tr->ctrl[i];
    }
    if (s == ARB_OK) s = load_history(tr, hist, path, false);
    if (s == ARB_OK) s = load_history(tr, hist, path, true);
    if (s == ARB_OK) {
        tr->step = step;
        tr->tokens = tokens;
        tr->elapsed_s = elapsed;
        tr->step_time_s = step_time;
        tr->last_loss = last_loss;
        tr->last_eta = last_eta;
        *out = tr;
    } else {
        arb_trainer_free(tr);
    }
    cJSON_Delete(opt); cJSON_Delete(sch); cJSON_Delete(ctl); cJSON_Delete(data); cJSON_Delete(hist); cJSON_Delete(prog);
    return s;
}

arb_status arb_trainer_resume(arb_trainer **out, const char *path, const arb_corpus *corpus,
                              const arb_model_config *expect, const arb_train_options *override) {
    if (!out || !path || !corpus) return arb_error(ARB_ERR_INVALID_ARG, "resume: NULL argument");
    *out = NULL;
    arb_safetensors *st;
    arb_status s = arb_safetensors_open(&st, path);
    if (s != ARB_OK) return arb_ckpt_wrap_error(s, path);
    s = resume_into(out, st, path, corpus, expect, override);
    arb_safetensors_close(st);
    return s;
}
