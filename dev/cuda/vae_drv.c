/* dev/cuda/vae_drv.c — times the CUDA VAE decode alone (the synthetic SD VAE the sidecar bench
 * writes, same seed and input), for A/B runs of the conv variants in one device call without the
 * whole `arbitor bench sidecars` (and as a small process for ncu / ARB_SIDECAR_PROFILE).
 * Not part of the library or its tests; dev/cuda/call_vae2.sh builds it against build-cuda.
 *   vae_drv BATCH ITERS [DIR [V...]]   → per variant V (ARB_SIDECAR_CONV_V; none: the environment's)
 * (Since the variants were pruned to the fastest, ARB_SIDECAR_CONV_V is ignored by the library:
 * V only labels a run; use ARB_SIDECAR_CONV_IGEMM=0/1 for the im2col / implicit-GEMM A/B.)
 *   "vae_drv b32 V=9: median X ms (min Y) over N", each on a fresh device copy of one loaded model
 * A DIR whose name contains "dinov2" times the synthetic DINOv2-small on B × 3 × 224 × 224 instead. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arbitor/core.h"
#include "arbitor/cuda.h"
#include "arbitor/sidecars.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 32, iters = argc > 2 ? atoi(argv[2]) : 5;
    const char *dir = argc > 3 ? argv[3] : "/tmp/arbitor-sidecars/vae";
    if (B < 1 || iters < 0 || iters > 64) return fprintf(stderr, "usage: vae_drv BATCH ITERS [DIR [V...]]\n"), 2;
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = 0, mkdir(parent, 0755); /* the synth makes DIR itself */
    const int dino = strstr(dir, "dinov2") != NULL;
    if (access(cfg, R_OK) != 0 && arb_sidecar_synth(dino ? ARB_SIDECAR_DINOV2 : ARB_SIDECAR_VAE, dir, 1234))
        return fprintf(stderr, "vae_drv: synth: %s\n", arb_last_error()), 1;
    arb_sidecar *m;
    if (arb_sidecar_load(&m, dir, ARB_SIDECAR_INT8)) return fprintf(stderr, "vae_drv: load: %s\n", arb_last_error()), 1;
    arb_tensor x, xd, out = {0};
    if (arb_tensor_init(&x, ARB_F32, 4, dino ? (int64_t[]){B, 3, 224, 224} : (int64_t[]){B, 4, 32, 32}, arb_cpu())) return 1;
    arb_rng_key key = arb_rng_key_make(7, 1);
    for (int64_t i = 0; i < arb_tensor_numel(&x); i++) ((float *)x.data)[i] = arb_rand_normal(key, (uint32_t)i);
    if (arb_tensor_init(&xd, ARB_F32, 4, x.shape, arb_cuda(0)) || arb_tensor_copy(&xd, &x)) return 1;
    /* each variant: a fresh device copy (its plan is recorded under that ARB_SIDECAR_CONV_V) */
    const int nv = argc > 4 ? argc - 4 : 1;
    arb_tensor ref = {0};
    for (int k = 0; k < nv; k++) {
        const char *v = argc > 4 ? argv[4 + k] : NULL;
        if (v) setenv("ARB_SIDECAR_CONV_V", v, 1);
        if (arb_sidecar_to_device(m, arb_cuda(0))) return fprintf(stderr, "vae_drv: to cuda: %s\n", arb_last_error()), 1;
        double ts[64], rel = 0;
        int ok = 1;
        for (int i = -1; i < iters && ok; i++) {
            double t0 = now();
            if (arb_sidecar_forward(m, &xd, &out, NULL)) ok = 0, fprintf(stderr, "vae_drv: V=%s: %s\n", v ? v : "env", arb_last_error());
            else if (i >= 0) ts[i] = now() - t0;
            /* the last output vs the first variant's (rel L2) */
            if (ok && i == iters - 1) {
                arb_tensor h;
                if (arb_tensor_init(&h, ARB_F32, out.ndim, out.shape, arb_cpu()) || arb_tensor_copy(&h, &out)) return 1;
                if (!ref.data) ref = h;
                else {
                    double d = 0, r = 0;
                    for (int64_t e = 0; e < arb_tensor_numel(&h); e++) {
                        const double a = ((float *)h.data)[e], b = ((float *)ref.data)[e];
                        d += (a - b) * (a - b), r += b * b;
                    }
                    rel = r > 0 ? sqrt(d / r) : sqrt(d);
                    arb_tensor_free(&h);
                }
            }
            arb_tensor_free(&out);
        }
        if (ok && iters > 0) {
            qsort(ts, (size_t)iters, sizeof(double), cmp_d);
            printf("vae_drv b%d V=%s: median %.3f ms (min %.3f) over %d, rel L2 vs the first %.3e\n", B,
                   v ? v : (getenv("ARB_SIDECAR_CONV_V") ? getenv("ARB_SIDECAR_CONV_V") : "default"), 1e3 * ts[iters / 2],
                   1e3 * ts[0], iters, rel);
            fflush(stdout);
        }
        (void)arb_sidecar_to_device(m, arb_cpu());
    }
    arb_tensor_free(&x), arb_tensor_free(&xd), arb_tensor_free(&ref);
    arb_sidecar_free(m);
    return 0;
}
