/* `arbitor train`: the training loop around arb_trainer — data, config, time budget, signals,
 * evaluation, checkpoints, JSONL log, progress bar, loss plot, and the final TRAIN line.
 * Why here and not in the library: time, signals and the terminal belong to the program; the
 * library part (src/train) stays deterministic and testable step by step. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arbitor/train.h"
#include "cli.h"

#define DEFAULT_CONFIG "cpu-small"
#define DEFAULT_BUDGET_MIN 5.0
#define N_EVALS 10 /* validations spread over a run (plus the final one) */

static volatile sig_atomic_t g_stop = 0;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends at once; files are still whole (atomic writes) */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor train [options]\n"
            "Trains a true-ternary byte-level model. With no options: the default config (" DEFAULT_CONFIG ")\n"
            "on the built-in corpus (Debian's fortunes, " ARB_FORTUNES_DIR ") for %.0f minutes.\n"
            "\n"
            "  --data FILE          train on FILE's bytes (first 90%% train, last 10%% validation)\n"
            "  --config NAME|FILE   seed, shakespeare, cpu-small, tiny, or a JSON file (default " DEFAULT_CONFIG ")\n"
            "  --steps N            train N steps (the schedule runs over them)\n"
            "  --time-budget MIN    stop cleanly after MIN minutes (default %.0f when --steps is absent)\n"
            "  --out DIR            checkpoint, log.jsonl and loss.png go here (default runs/<config>-<time>)\n"
            "  --resume CKPT        continue a run from its checkpoint (bitwise identical in --steps mode)\n"
            "  --seed S             run seed: init, batches, stochastic rounding (default 1337)\n"
            "  --device cpu|cuda    where to train (default cpu)\n"
            "  --batch N, --seq N   sequences per step, tokens per sequence (default: the config's)\n"
            "  --eta0 X             update-rule pressure at the start (default: the config's)\n"
            "  --schedule MODE      cosine (eta0 -> eta0/10) or flip (cosine x per-layer flip-rate controller)\n"
            "  --gain-eta X         eta multiplier of the norm gains (default 1; 0 freezes them)\n"
            "  --flip-target A,B    flip mode: flips per weight per step, A at the start -> B at the end (1e-3,1e-4)\n"
            "  --eval-every N       validate every N steps (default: %d times per run)\n"
            "  --eval-windows N     validation windows of the fixed set (default 256)\n"
            "  --log-every N        JSONL record every N steps (default: every 10 seconds)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  -h, --help           this text\n"
            "\n"
            "Ends with one line on stdout:\n"
            "TRAIN val_nats_per_byte=... tokens=... tokens_per_s=... state_bytes_per_weight=... "
            "trainable_float_params=...\n",
            DEFAULT_BUDGET_MIN, DEFAULT_BUDGET_MIN, N_EVALS);
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

typedef struct run_files {
    char dir[3800], ckpt[4096], log[4096], png[4096];
} run_files;

static void fmt_rate(double r, char *buf, size_t cap) {
    if (r >= 1e6) snprintf(buf, cap, "%.2fM", r / 1e6);
    else if (r >= 1e3) snprintf(buf, cap, "%.1fk", r / 1e3);
    else snprintf(buf, cap, "%.0f", r);
}

static int finish_plot(const arb_trainer *tr, const run_files *rf) {
    int64_t tn = tr->n_train_hist, vn = tr->n_val_hist;
    double *buf = malloc(sizeof(double) * (size_t)(2 * (tn + vn) + 4));
    if (!buf) return -1;
    double *tx = buf, *ty = buf + tn, *vx = ty + tn, *vy = vx + vn;
    for (int64_t i = 0; i < tn; i++) { tx[i] = (double)tr->train_hist[i].step; ty[i] = tr->train_hist[i].value; }
    for (int64_t i = 0; i < vn; i++) { vx[i] = (double)tr->val_hist[i].step; vy[i] = tr->val_hist[i].value; }
    char title[128];
    snprintf(title, sizeof title, "arbitor %s: loss", tr->cfg.name);
    arb_status s = arb_plot_loss_png(rf->png, title, tx, ty, tn, vx, vy, vn);
    free(buf);
    if (s != ARB_OK) {
        fprintf(stderr, "arbitor: warning: no loss plot: %s\n", arb_last_error());
        return -1;
    }
    return 0;
}

int arb_cmd_train(int argc, char **argv) {
    const char *data = NULL, *config = NULL, *out = NULL, *resume = NULL, *device = "cpu", *sched = NULL;
    int64_t steps = 0, seed = 1337, batch = 0, seq = 0, eval_every = 0, eval_windows = 256, log_every = 0, threads = 0;
    double budget_min = 0, eta0 = -1, flip_early = 0, flip_late = 0, gain_eta = -1;
    bool have_steps = false, have_budget = false, have_seed = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (arb_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() \
    do { if (!v) return arb_cli_fail("train: %s needs a value (see arbitor train --help)", a); i++; } while (0)
        if (!strcmp(a, "--data")) { NEED_VALUE(); data = v; }
        else if (!strcmp(a, "--config")) { NEED_VALUE(); config = v; }
        else if (!strcmp(a, "--out")) { NEED_VALUE(); out = v; }
        else if (!strcmp(a, "--resume")) { NEED_VALUE(); resume = v; }
        else if (!strcmp(a, "--device")) { NEED_VALUE(); device = v; }
        else if (!strcmp(a, "--schedule")) { NEED_VALUE(); sched = v; }
        else if (!strcmp(a, "--flip-target")) {
            NEED_VALUE();
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            char *comma = strchr(buf, ',');
            if (comma) *comma = 0;
            if (!comma || !arb_cli_parse_f64(buf, 1e-9, 1, &flip_early) || !arb_cli_parse_f64(comma + 1, 1e-9, 1, &flip_late))
                return arb_cli_fail("train: --flip-target '%s' is not two rates in (0, 1] like 1e-3,1e-4", v);
        }
        else if (!strcmp(a, "--steps")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, INT64_C(1) << 40, &steps)) return arb_cli_fail("train: --steps '%s' is not an integer >= 1", v);
            have_steps = true;
        } else if (!strcmp(a, "--time-budget")) {
            NEED_VALUE();
            if (!arb_cli_parse_f64(v, 1e-3, 1e7, &budget_min) )
                return arb_cli_fail("train: --time-budget '%s' is not a number of minutes > 0", v);
            have_budget = true;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 0, INT64_MAX, &seed)) return arb_cli_fail("train: --seed '%s' is not an integer >= 0", v);
            have_seed = true;
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, 1 << 20, &batch)) return arb_cli_fail("train: --batch '%s' is not an integer in [1, 2^20]", v);
        } else if (!strcmp(a, "--seq")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, 1 << 20, &seq)) return arb_cli_fail("train: --seq '%s' is not an integer >= 1", v);
        } else if (!strcmp(a, "--eta0")) {
            NEED_VALUE();
            if (!arb_cli_parse_f64(v, 0, 127, &eta0)) return arb_cli_fail("train: --eta0 '%s' is not a number in [0, 127]", v);
        } else if (!strcmp(a, "--gain-eta")) {
            NEED_VALUE();
            if (!arb_cli_parse_f64(v, 0, 64, &gain_eta)) return arb_cli_fail("train: --gain-eta '%s' is not a number in [0, 64]", v);
        } else if (!strcmp(a, "--eval-every")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, INT64_C(1) << 40, &eval_every)) return arb_cli_fail("train: --eval-every '%s' is not an integer >= 1", v);
        } else if (!strcmp(a, "--eval-windows")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, 1 << 24, &eval_windows)) return arb_cli_fail("train: --eval-windows '%s' is not an integer >= 1", v);
        } else if (!strcmp(a, "--log-every")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, INT64_C(1) << 40, &log_every)) return arb_cli_fail("train: --log-every '%s' is not an integer >= 1", v);
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!arb_cli_parse_i64(v, 1, 4096, &threads)) return arb_cli_fail("train: --threads '%s' is not an integer in [1, 4096]", v);
        } else {
            fprintf(stderr, "arbitor: error: train: unknown option '%s' (see arbitor train --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    double t_cmd = arb_cli_now(); /* the budget counts setup time too */
    arb_device dev = arb_cpu();
    if (!strcmp(device, "cuda")) {
#ifndef ARB_HAVE_CUDA
        return arb_cli_fail("train: --device cuda: this build has no CUDA support (build where nvcc is installed)");
#else
        dev = arb_cuda(0);
#endif
    } else if (strcmp(device, "cpu") != 0) {
        return arb_cli_fail("train: --device '%s' is not cpu or cuda", device);
    }
    arb_schedule_mode mode = ARB_SCHED_COSINE;
    if (sched) {
        if (!strcmp(sched, "flip")) mode = ARB_SCHED_FLIP;
        else if (strcmp(sched, "cosine") != 0) return arb_cli_fail("train: --schedule '%s' is not cosine or flip", sched);
    }
    if (threads) arb_set_num_threads((int)threads);

    /* Everything is checked before anything is written: data, config, model, checkpoint. */
    arb_corpus corpus;
    arb_status s = data ? arb_corpus_load_file(&corpus, data) : arb_corpus_load_fortunes(&corpus, NULL);
    if (s != ARB_OK) return arb_cli_fail("train: %s", arb_last_error());

    arb_model_config cfg;
    bool have_cfg = config != NULL;
    if ((s = arb_train_config_resolve(config ? config : DEFAULT_CONFIG, &cfg)) != ARB_OK) {
        arb_corpus_free(&corpus);
        return arb_cli_fail("train: %s", arb_last_error());
    }
    arb_trainer *tr = NULL;
    if (resume) {
        if (batch || seq || eta0 >= 0 || sched || flip_early > 0 || gain_eta >= 0) {
            arb_corpus_free(&corpus);
            return arb_cli_fail("train: --resume continues the saved run: --batch, --seq, --eta0, --gain-eta, --schedule and --flip-target cannot change");
        }
        arb_train_options ov = arb_train_options_default(&cfg);
        /* A new horizon may be given; otherwise the saved one stands (read after load). */
        s = arb_trainer_resume(&tr, resume, &corpus, have_cfg ? &cfg : NULL, NULL);
        if (s == ARB_OK) {
            ov.steps = have_steps ? steps : (have_budget ? 0 : tr->opt.steps);
            ov.time_budget_s = have_budget ? budget_min * 60 : (have_steps ? 0 : tr->opt.time_budget_s);
            ov.device = dev;
            bool changed = ov.steps != tr->opt.steps || ov.time_budget_s != tr->opt.time_budget_s ||
                           dev.kind != tr->opt.device.kind;
            if (changed) {
                arb_trainer_free(tr);
                tr = NULL;
                s = arb_trainer_resume(&tr, resume, &corpus, have_cfg ? &cfg : NULL, &ov);
            }
        }
        if (s == ARB_OK && have_seed && (uint64_t)seed != tr->opt.seed) {
            uint64_t saved = tr->opt.seed;
            arb_trainer_free(tr);
            arb_corpus_free(&corpus);
            return arb_cli_fail("train: --seed %" PRId64 " differs from the checkpoint's seed %" PRIu64, seed, saved);
        }
        if (s == ARB_OK && tr->opt.steps > 0 && tr->step >= tr->opt.steps)
            fprintf(stderr, "arbitor: note: the checkpoint already completed its %" PRId64 " steps (pass a larger --steps to continue)\n",
                    tr->opt.steps);
    } else {
        arb_train_options o = arb_train_options_default(&cfg);
        o.seed = (uint64_t)seed;
        o.steps = have_steps ? steps : 0;
        o.time_budget_s = have_budget ? budget_min * 60 : (have_steps ? 0 : DEFAULT_BUDGET_MIN * 60);
        if (batch) o.batch = batch;
        if (seq) o.seq = seq;
        if (eta0 >= 0) o.sched.eta0 = eta0;
        if (gain_eta >= 0) o.gain_eta_mult = gain_eta;
        o.sched.mode = mode;
        if (flip_early > 0) {
            o.sched.flip_early = flip_early;
            o.sched.flip_late = flip_late;
        }
        o.eval_windows = eval_windows;
        o.device = dev;
        s = arb_trainer_create(&tr, &cfg, &corpus, &o);
    }
    if (s != ARB_OK) {
        arb_corpus_free(&corpus);
        return arb_cli_fail("train: %s", arb_last_error());
    }

    run_files rf;
    if (out) {
        snprintf(rf.dir, sizeof rf.dir, "%s", out);
    } else {
        char ts[32];
        time_t t = time(NULL);
        struct tm tmv;
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", localtime_r(&t, &tmv));
        snprintf(rf.dir, sizeof rf.dir, "runs/%s-%s", tr->cfg.name, ts);
    }
    snprintf(rf.ckpt, sizeof rf.ckpt, "%s/checkpoint.safetensors", rf.dir);
    snprintf(rf.log, sizeof rf.log, "%s/log.jsonl", rf.dir);
    snprintf(rf.png, sizeof rf.png, "%s/loss.png", rf.dir);
    if (mkdir_p(rf.dir) != 0) {
        int e = errno;
        arb_trainer_free(tr);
        arb_corpus_free(&corpus);
        return arb_cli_fail("train: cannot create output directory '%s': %s", rf.dir, strerror(e));
    }
    FILE *log = fopen(rf.log, resume ? "a" : "w");
    if (!log) {
        int e = errno;
        arb_trainer_free(tr);
        arb_corpus_free(&corpus);
        return arb_cli_fail("train: cannot open '%s': %s", rf.log, strerror(e));
    }

    arb_audit au;
    memset(&au, 0, sizeof au);
    if ((s = arb_model_audit(tr->model, &au)) != ARB_OK) {
        fclose(log);
        arb_trainer_free(tr);
        arb_corpus_free(&corpus);
        return arb_cli_fail("train: audit: %s", arb_last_error());
    }
    fprintf(stderr,
            "arbitor train: config %s (%d layers x %d, ctx %d), %" PRId64 " ternary weights, data %s (%zu bytes: %zu train / "
            "%zu val), batch %" PRId64 " x %" PRId64 ", %s, seed %" PRIu64 ", output %s\n",
            tr->cfg.name, tr->cfg.n_layers, tr->cfg.dim, tr->cfg.ctx, au.ternary_weights, corpus.source, corpus.n,
            corpus.train_n, corpus.val_n, tr->opt.batch, tr->opt.seq,
            tr->opt.steps ? "step-scheduled" : "time-scheduled", tr->opt.seed, rf.dir);
    if (resume) fprintf(stderr, "arbitor train: resumed %s at step %" PRId64 "\n", resume, tr->step);

    g_stop = 0;
    signal(SIGINT, on_sigint);
    double val = NAN, last_val = NAN, reserve_s = 1.0;
    if (!resume) {
        /* Step 0's validation: the curve's start, and the first measure of what an evaluation costs. */
        double t0 = arb_cli_now();
        if ((s = arb_trainer_evaluate(tr, &val)) != ARB_OK) {
            fclose(log);
            arb_trainer_free(tr);
            arb_corpus_free(&corpus);
            return arb_cli_fail("train: evaluation: %s", arb_last_error());
        }
        arb_trainer_record(tr, true, 0, val);
        last_val = val;
        reserve_s = 2.0 + 3.0 * (arb_cli_now() - t0);
        fprintf(stderr, "arbitor train: step 0 validation %.4f nats/byte (%.4f bits/byte)\n", val, val / M_LN2);
    }
    tr->elapsed_s += arb_cli_now() - t_cmd; /* data, model, checkpoint load, step-0 validation */
    int rc = 0;
    double t_log = arb_cli_now(), t_bar = 0, t_start = arb_cli_now();
    double loss_sum = 0;
    int64_t loss_n = 0, tokens_at_log = tr->tokens;
    double step_time_at_log = tr->step_time_s;
    int eval_bucket = (int)floor(arb_trainer_position(tr) * N_EVALS);
    bool interrupted = false;
    char extra[256], r1[32];
    for (;;) {
        if (g_stop) { interrupted = true; break; }
        if (tr->opt.steps > 0 && tr->step >= tr->opt.steps) break;
        if (tr->opt.time_budget_s > 0 && tr->elapsed_s + reserve_s >= tr->opt.time_budget_s) break;
        double loss;
        if ((s = arb_trainer_step(tr, &loss)) != ARB_OK) {
            rc = arb_cli_fail("train: step %" PRId64 ": %s", tr->step, arb_last_error());
            break;
        }
        loss_sum += loss;
        loss_n++;
        double tnow = arb_cli_now();
        /* Evaluate + checkpoint N_EVALS times per run (or every --eval-every steps). */
        bool do_eval = eval_every ? tr->step % eval_every == 0
                                  : (int)floor(arb_trainer_position(tr) * N_EVALS) > eval_bucket;
        if (tr->opt.steps > 0 && tr->step >= tr->opt.steps) do_eval = false; /* the final one follows */
        bool do_log = log_every ? tr->step % log_every == 0 : tnow - t_log >= 10.0;
        if (do_eval) {
            double t0 = arb_cli_now();
            eval_bucket = (int)floor(arb_trainer_position(tr) * N_EVALS);
            if ((s = arb_trainer_evaluate(tr, &val)) != ARB_OK) {
                rc = arb_cli_fail("train: evaluation: %s", arb_last_error());
                break;
            }
            last_val = val;
            arb_trainer_record(tr, true, tr->step, val);
            do_log = true;
            double t1 = arb_cli_now();
            if ((s = arb_trainer_save(tr, rf.ckpt)) != ARB_OK) {
                rc = arb_cli_fail("train: checkpoint: %s", arb_last_error());
                break;
            }
            double t2 = arb_cli_now();
            /* Keep room in the budget for the final evaluation, checkpoint and plot. */
            reserve_s = 2.0 + 1.5 * ((t1 - t0) + (t2 - t1));
            tr->elapsed_s += t2 - t0;
            tnow = t2;
        }
        if (do_log && loss_n > 0) {
            double mean = loss_sum / (double)loss_n;
            double dt = tr->step_time_s - step_time_at_log;
            double tps = dt > 0 ? (double)(tr->tokens - tokens_at_log) / dt : NAN;
            arb_trainer_record(tr, false, tr->step, mean);
            arb_trainer_log_jsonl(tr, log, mean, do_eval ? val : NAN, tps);
            loss_sum = 0;
            loss_n = 0;
            tokens_at_log = tr->tokens;
            step_time_at_log = tr->step_time_s;
            t_log = tnow;
        }
        if (do_log || tnow - t_bar >= 0.5) {
            double tps = tr->step_time_s > 0 ? (double)tr->tokens / tr->step_time_s : 0;
            fmt_rate(tps, r1, sizeof r1);
            if (isfinite(last_val))
                snprintf(extra, sizeof extra, "step %" PRId64 " loss %.3f val %.3f nats/byte (%.3f bpb) %s tok/s", tr->step,
                         tr->last_loss, last_val, last_val / M_LN2, r1);
            else
                snprintf(extra, sizeof extra, "step %" PRId64 " loss %.3f %s tok/s", tr->step, tr->last_loss, r1);
            /* On a terminal the bar redraws in place; in a log file only at log intervals. */
            static int tty = -1;
            if (tty < 0) tty = isatty(2);
            if (tty || do_log) arb_cli_progress("train", arb_trainer_position(tr), tnow - t_start, extra, false);
            t_bar = tnow;
        }
    }
    signal(SIGINT, SIG_DFL);
    if (rc == 0) {
        if (interrupted) fprintf(stderr, "\narbitor train: interrupted at step %" PRId64 ": saving\n", tr->step);
        if (loss_n > 0) {
            double mean = loss_sum / (double)loss_n;
            arb_trainer_record(tr, false, tr->step, mean);
        }
        if ((s = arb_trainer_evaluate(tr, &val)) != ARB_OK) rc = arb_cli_fail("train: evaluation: %s", arb_last_error());
        else arb_trainer_record(tr, true, tr->step, val);
    }
    if (rc == 0) {
        double dt = tr->step_time_s - step_time_at_log;
        arb_trainer_log_jsonl(tr, log, loss_n > 0 ? tr->train_hist[tr->n_train_hist - 1].value : NAN, val,
                              dt > 0 ? (double)(tr->tokens - tokens_at_log) / dt : NAN);
        if ((s = arb_trainer_save(tr, rf.ckpt)) != ARB_OK) rc = arb_cli_fail("train: checkpoint: %s", arb_last_error());
    }
    fclose(log);
    if (rc == 0) {
        finish_plot(tr, &rf);
        double tps = tr->step_time_s > 0 ? (double)tr->tokens / tr->step_time_s : 0;
        snprintf(extra, sizeof extra, "step %" PRId64 " val %.4f nats/byte (%.4f bpb)", tr->step, val, val / M_LN2);
        arb_cli_progress("train", arb_trainer_position(tr), arb_cli_now() - t_start, extra, true);
        fprintf(stderr, "arbitor train: outputs in %s/ (checkpoint.safetensors, log.jsonl, loss.png)\n", rf.dir);
        printf("TRAIN val_nats_per_byte=%.4f tokens=%" PRId64 " tokens_per_s=%.1f state_bytes_per_weight=%.4f "
               "trainable_float_params=%" PRId64 "\n",
               val, tr->tokens, tps, au.ternary_weights ? au.ternary_state_bytes / (double)au.ternary_weights : 0.0,
               (int64_t)llround(au.trainable_float_bytes / 4.0));
        fflush(stdout); /* an interrupted run that saved cleanly still exits 0 */
    }
    arb_trainer_free(tr);
    arb_corpus_free(&corpus);
    return rc;
}
