/* The training schedule: the update rule's pressure scale eta over the run, and the optional
 * per-tensor flip-rate controller. Why both: the reference's good run used a plain cosine
 * (eta0 → eta0/10); the flip rate is the real learning rate, so a controller can hold it on a
 * decaying target when eta0 is a poor guess for a new shape. All state is doubles that are
 * saved bit-exactly, and updates use integer flip counts, so resume is bitwise identical. */
#include "arbitor/train.h"

#include <math.h>
#include <string.h>

arb_schedule arb_schedule_default(void) {
    arb_schedule s;
    memset(&s, 0, sizeof s);
    s.mode = ARB_SCHED_COSINE;
    s.eta0 = 6.0;
    s.eta_final_frac = 0.1;
    s.flip_early = 1e-3;
    s.flip_late = 1e-4;
    s.ctrl_gain = 0.25;
    s.ctrl_min = 0.25;
    s.ctrl_max = 64.0;
    return s;
}

static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

double arb_schedule_eta(const arb_schedule *s, double pos) {
    double c = 0.5 * (1.0 + cos(M_PI * clamp01(pos)));
    return s->eta0 * (s->eta_final_frac + (1.0 - s->eta_final_frac) * c);
}

double arb_schedule_flip_target(const arb_schedule *s, double pos) {
    /* Geometric cosine between the early and late targets (1e-3 → 1e-4 by default). */
    double c = 0.5 * (1.0 + cos(M_PI * clamp01(pos)));
    return exp(log(s->flip_late) + (log(s->flip_early) - log(s->flip_late)) * c);
}

double arb_schedule_ctrl_update(const arb_schedule *s, double eta, int64_t flips, int64_t weights, double pos) {
    if (weights <= 0) return eta;
    double target = arb_schedule_flip_target(s, pos);
    /* Half a flip of evidence keeps log() finite when nothing moved. */
    double rate = ((double)flips + 0.5) / (double)weights;
    double f = exp(s->ctrl_gain * (log(target) - log(rate)));
    if (f > 1.25) f = 1.25;
    if (f < 0.8) f = 0.8;
    eta *= f;
    if (eta < s->ctrl_min) eta = s->ctrl_min;
    if (eta > s->ctrl_max) eta = s->ctrl_max;
    return eta;
}

/* Doubles travel through JSON metadata as the hex of their bits: exact, no printf rounding. */
void arb_f64_to_hex(double x, char out[17]) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) out[i] = hx[(u >> (60 - 4 * i)) & 15];
    out[16] = 0;
}

bool arb_f64_from_hex(const char *s, double *out) {
    if (!s || strlen(s) != 16) return false;
    uint64_t u = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : (ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1);
        if (v < 0) return false;
        u = (u << 4) | (uint64_t)v;
    }
    memcpy(out, &u, sizeof u);
    return true;
}
