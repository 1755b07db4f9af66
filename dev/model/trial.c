/* dev/model/trial.c — tuning driver for the model (not part of the product): trains a named
 * config on a byte file (first 90% train, last 10% val) through the public model API and
 * prints loss, val loss, flips and tokens/s. usage: trial CONFIG DATA SECONDS [key=value ...]
 * keys: batch seq eta frac dim layers heads ctx window mult evalevery */
#include "arbitor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: trial CONFIG DATA SECONDS [k=v...]\n"); return 2; }
    arb_model_config cfg;
    if (arb_model_config_named(argv[1], &cfg) != ARB_OK) { fprintf(stderr, "%s\n", arb_last_error()); return 1; }
    double budget = atof(argv[3]);
    int evalevery = 100, evalb = 16, ctrl = 0, upexp = 1;
    double etae = -1;
    double fe = 1e-3, fl = 1e-4;
    for (int i = 4; i < argc; i++) {
        char k[64]; double v;
        if (sscanf(argv[i], "%63[^=]=%lf", k, &v) != 2) return 2;
        if (!strcmp(k, "batch")) cfg.train_batch = (int)v;
        else if (!strcmp(k, "seq")) cfg.train_seq = (int)v;
        else if (!strcmp(k, "eta")) cfg.eta = (float)v;
        else if (!strcmp(k, "frac")) cfg.eta_final_frac = (float)v;
        else if (!strcmp(k, "dim")) cfg.dim = (int)v;
        else if (!strcmp(k, "layers")) cfg.n_layers = (int)v;
        else if (!strcmp(k, "heads")) cfg.n_heads = (int)v;
        else if (!strcmp(k, "ctx")) cfg.ctx = (int)v;
        else if (!strcmp(k, "window")) cfg.graph_window = (int)v;
        else if (!strcmp(k, "mult")) cfg.mlp_mult = (int)v;
        else if (!strcmp(k, "T")) cfg.threshold = (int)v;
        else if (!strcmp(k, "k")) cfg.leak_shift = (int)v;
        else if (!strcmp(k, "evalevery")) evalevery = (int)v;
        else if (!strcmp(k, "evalb")) evalb = (int)v;
        else if (!strcmp(k, "ctrl")) ctrl = (int)v;
        else if (!strcmp(k, "exp")) upexp = (int)v;
        else if (!strcmp(k, "bal")) cfg.flip_balance = v != 0;
        else if (!strcmp(k, "expmode")) cfg.exp_mode = (int)v;
        else if (!strcmp(k, "ftarget")) cfg.flip_target = (float)v;
        else if (!strcmp(k, "etae")) etae = v;
        else if (!strcmp(k, "fe")) fe = v;
        else if (!strcmp(k, "fl")) fl = v;
        else if (!strcmp(k, "vq")) cfg.enable_vq = v != 0;
        else if (!strcmp(k, "hops")) cfg.graph_hops = (int)v;
        else { fprintf(stderr, "unknown key %s\n", k); return 2; }
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(n);
    if (fread(data, 1, n, f) != (size_t)n) return 1;
    fclose(f);
    long ntr = (long)(0.9 * n);
    arb_model *m;
    if (arb_model_create(&m, &cfg, 1337, arb_cpu()) != ARB_OK) { fprintf(stderr, "%s\n", arb_last_error()); return 1; }
    arb_audit a; char buf[1024];
    arb_model_audit(m, &a);
    printf("%s", arb_audit_format(&a, buf, sizeof buf));
    int B = cfg.train_batch, T = cfg.train_seq;
    int32_t ntens = arb_model_n_ternary(m);
    float *teta = malloc(sizeof(float) * ntens);
    for (int i = 0; i < ntens; i++) teta[i] = 1.0f;
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    uint64_t rs = 12345;
    double t0 = now(), tfb = 0;
    long tokens = 0;
    /* estimate steps from the first steps' speed: the cosine needs a horizon */
    long est_steps = 0;
    for (long step = 0;; step++) {
        double el = now() - t0;
        if (el > budget) break;
        if (step == 5) est_steps = (long)(budget / (el / 5.0));
        double frac = fmin(1.0, el / budget); /* like the trainer: position = elapsed / budget */
        (void)est_steps;
        for (int b = 0; b < B; b++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            long o = (long)((rs >> 33) % (uint64_t)(ntr - T - 1));
            for (int t = 0; t < T; t++) { tok[b * T + t] = data[o + t]; tgt[b * T + t] = data[o + t + 1]; }
        }
        arb_loss_parts lp;
        double ts = now();
        if (arb_model_forward(m, tok, tgt, B, T, true, &lp) != ARB_OK) { fprintf(stderr, "%s\n", arb_last_error()); return 1; }
        arb_model_step_params sp = arb_model_step_params_default(&cfg);
        sp.update.step = step; sp.update.seed = 1337;
        sp.update.eta = cfg.eta * (cfg.eta_final_frac + (1 - cfg.eta_final_frac) * 0.5 * (1 + cos(M_PI * frac)));
        if (ctrl) sp.tensor_eta = teta;
        sp.update.update_exp = upexp != 0;
        if (etae >= 0) sp.update.eta_exp = (float)etae;
        arb_model_step_stats ss;
        if (arb_model_backward_update(m, &sp, &ss) != ARB_OK) { fprintf(stderr, "%s\n", arb_last_error()); return 1; }
        tfb += now() - ts;
        if (ctrl) {
            double c = 0.5 * (1 + cos(M_PI * frac));
            double target = exp(log(fl) + (log(fe) - log(fl)) * c);
            for (int32_t i = 0; i < ntens; i++) {
                arb_update_stats us;
                arb_model_tensor_stats(m, i, &us);
                if (us.weights <= 0) continue;
                double rate = (us.flips + 0.5) / us.weights;
                double f = exp(0.25 * (log(target) - log(rate)));
                f = f > 1.25 ? 1.25 : (f < 0.8 ? 0.8 : f);
                double e = teta[i] * f;
                teta[i] = (float)(e < 0.25 ? 0.25 : (e > 64 ? 64 : e));
            }
        }
        tokens += (long)B * T;
        if (step % 10 == 0)
            printf("step %ld loss %.4f Emoves %d flips %.2e zeros %.3f eta %.2f tok/s %.0f t %.0f\n", step, lp.ce, ss.exp_moves,
                   (double)ss.flips / ss.weights, (double)ss.zeros / ss.weights, sp.update.eta, tokens / tfb, now() - t0);
        if (step % 50 == 0) {
            for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
                const char *nm; arb_ternary *w; arb_update_state *us; arb_update_stats st;
                arb_model_ternary_at(m, i, &nm, &w, &us);
                arb_model_tensor_stats(m, i, &st);
                if (strstr(nm, "layers.1") || strstr(nm, "layers") == NULL) {
                    double me = 0; for (int64_t r = 0; r < w->rows; r++) me += w->exp[r]; me /= w->rows;
                    arb_model_state_tensor bs; arb_model_state_at(m, 0, &bs);
                    printf("   %-28s bal %3d meanE %5.2f flips %.2e zeros %.3f eta_mult %.2f\n", nm, ((int8_t *)bs.data)[i], me, (double)st.flips / (st.weights ? st.weights : 1),
                           (double)st.zeros / (st.weights ? st.weights : 1), teta[i]);
                }
            }
        }
        fflush(stdout);
        if (step % evalevery == 0 && step > 0) {
            double v = 0; uint64_t vs = 7;
            for (int e = 0; e < evalb; e++) {
                for (int b = 0; b < B; b++) {
                    vs = vs * 6364136223846793005ull + 1442695040888963407ull;
                    long o = ntr + (long)((vs >> 33) % (uint64_t)(n - ntr - T - 1));
                    for (int t = 0; t < T; t++) { tok[b * T + t] = data[o + t]; tgt[b * T + t] = data[o + t + 1]; }
                }
                arb_model_forward(m, tok, tgt, B, T, false, &lp);
                v += lp.ce;
            }
            printf("VAL step %ld val %.4f t %.0f\n", step, v / evalb, now() - t0);
        }
    }
    double v = 0; uint64_t vs = 7;
    arb_loss_parts lp;
    for (int e = 0; e < evalb; e++) {
        for (int b = 0; b < B; b++) {
            vs = vs * 6364136223846793005ull + 1442695040888963407ull;
            long o = ntr + (long)((vs >> 33) % (uint64_t)(n - ntr - T - 1));
            for (int t = 0; t < T; t++) { tok[b * T + t] = data[o + t]; tgt[b * T + t] = data[o + t + 1]; }
        }
        arb_model_forward(m, tok, tgt, B, T, false, &lp);
        v += lp.ce;
    }
    printf("FINAL val %.4f tokens %ld tok/s(fb) %.0f\n", v / evalb, tokens, tokens / tfb);
    arb_model_free(m);
    return 0;
}
