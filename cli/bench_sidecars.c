/* `arbitor bench sidecars`: the int8 sidecars on full-size synthetic checkpoints (DINOv2-small
 * 224², Moonshine-base encoder on 10 s, VAE decode to 256²), batch 1 and 32, each as a share of
 * this machine's int8 peak measured in the same run, and against PyTorch fp32 eager (2 threads)
 * run as a subprocess in the same run.
 *
 * Why the peak is measured, not looked up: the machine is shared and clocks vary; the ratio of
 * two numbers taken minutes apart on the same cores is what says how good the kernels are.
 * Ops are counted by the GEMM drivers themselves (2 per multiply-add, attention and float convs
 * included), not estimated. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arbitor/sidecars.h"
#include "core/paths.h"
#include "cli.h"
#ifdef ARB_HAVE_CUDA
#include "arbitor/cuda.h"
#endif

#include "sidecars/sc_internal.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    const char *model;
    int batch;
    double ms, gops, pct, torch_ms, ops;
} result;

static arb_status run_once(arb_sidecar *m, const arb_tensor *x) {
    arb_tensor a = {0}, b = {0};
    /* the model's device: outputs stay where the input is (device-resident on CUDA, as PyTorch's) */
    arb_status s = arb_sidecar_forward(m, x, &a, arb_sidecar_info_get(m)->kind == ARB_SIDECAR_DINOV2 ? &b : NULL);
    arb_tensor_free(&a);
    arb_tensor_free(&b);
    return s;
}

static int measure(arb_sidecar *m, int batch, int iters, bool cuda, result *r) {
    arb_tensor x;
    arb_status s;
    arb_sidecar_kind k = arb_sidecar_info_get(m)->kind;
    if (k == ARB_SIDECAR_DINOV2) s = arb_tensor_init(&x, ARB_F32, 4, (int64_t[]){batch, 3, 224, 224}, arb_cpu());
    else if (k == ARB_SIDECAR_MOONSHINE) s = arb_tensor_init(&x, ARB_F32, 2, (int64_t[]){batch, 160000}, arb_cpu());
    else s = arb_tensor_init(&x, ARB_F32, 4, (int64_t[]){batch, 4, 32, 32}, arb_cpu());
    if (s) return arb_cli_fail_status(s, "bench input");
    float *p = (float *)x.data;
    float amp = k == ARB_SIDECAR_MOONSHINE ? 0.1f : 1.f;
    arb_rng_key key = arb_rng_key_make(7, 1);
    for (int64_t i = 0; i < arb_tensor_numel(&x); i++) p[i] = amp * arb_rand_normal(key, (uint32_t)i);
    if (cuda) { /* the input lives on the device, as PyTorch's does in its timing */
#ifdef ARB_HAVE_CUDA
        arb_tensor xd;
        if ((s = arb_tensor_init(&xd, ARB_F32, x.ndim, x.shape, arb_cuda(0))) || (s = arb_tensor_copy(&xd, &x))) {
            arb_tensor_free(&x);
            return arb_cli_fail_status(s, "bench input on cuda:0");
        }
        arb_tensor_free(&x);
        x = xd;
#endif
    }
    (void)sc_macs_take();
    if ((s = run_once(m, &x))) { /* warm-up, and the ops count */
        arb_tensor_free(&x);
        return arb_cli_fail_status(s, "bench %s", arb_sidecar_kind_name(k));
    }
    double ops = 2.0 * (double)sc_macs_take();
    double ts[64];
    if (iters > 64) iters = 64;
    for (int i = 0; i < iters; i++) {
        double t0 = arb_cli_now();
        if ((s = run_once(m, &x))) { /* the forward synchronizes its device before returning */
            arb_tensor_free(&x);
            return arb_cli_fail_status(s, "bench %s", arb_sidecar_kind_name(k));
        }
        ts[i] = arb_cli_now() - t0;
    }
    qsort(ts, (size_t)iters, sizeof(double), cmp_d);
    double med = ts[iters / 2];
    r->model = k == ARB_SIDECAR_DINOV2 ? "dinov2" : k == ARB_SIDECAR_MOONSHINE ? "moonshine" : "vae_decode";
    r->batch = batch;
    r->ms = med * 1e3;
    r->gops = ops / med / 1e9;
    r->pct = 0.0; /* set once the run's best peak is known */
    r->ops = ops;
    r->torch_ms = 0;
    arb_tensor_free(&x);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor bench sidecars [--dir DIR] [--full] [--quick] [--iters N] [--threads N] [--no-torch]\n"
            "                              [--device cpu|cuda]\n"
            "  int8 DINOv2-small 224², Moonshine-base encoder 10 s, VAE decode 256² on synthetic full-size\n"
            "  checkpoints (written to DIR, default $ARB_SIDECAR_DIR or /tmp/arbitor-sidecars, if missing);\n"
            "  batch 1 and 32 (VAE batch 32 only with --full; --quick: batch 1 only). Each as %% of the int8\n"
            "  peak (a vpdpbusd loop, same run) and vs PyTorch fp32 eager, 2 threads (bench/torch_sidecars.py).\n"
            "  Ends with: BENCH dinov2_pct=… moonshine_pct=… vae_decode_pct=… dinov2_vs_torch=… ... (batch 1)\n"
            "  --device cuda: the int8 models on cuda:0 (device-resident inputs and outputs, one CUDA graph\n"
            "  per shape), batch 1 and 32 for every model the device runs; %% of the measured cuBLASLt int8\n"
            "  GEMM rate; vs PyTorch bf16 eager on the same GPU (torch_sidecars.py --device cuda); the BENCH\n"
            "  line adds *_b32_vs_torch. A model the device does not run yet is reported as such.\n");
}

int arb_bench_sidecars(int argc, char **argv) {
    const char *dir = getenv("ARB_SIDECAR_DIR") ? getenv("ARB_SIDECAR_DIR") : "/tmp/arbitor-sidecars";
    bool full = false, quick = false, torch = true, cuda = false;
    int64_t iters = 3, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) return usage(stdout), 0;
        if (!strcmp(argv[i], "--full")) full = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--no-torch")) torch = false;
        else if (i + 1 < argc && !strcmp(argv[i], "--device")) {
            const char *d = argv[++i];
            if (!strcmp(d, "cuda")) cuda = true;
            else if (strcmp(d, "cpu")) return arb_cli_fail("--device: expected cpu or cuda, got '%s'", d);
        }
        else if (i + 1 < argc && !strcmp(argv[i], "--dir")) dir = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--iters")) {
            if (!arb_cli_parse_i64(argv[++i], 1, 16, &iters)) return arb_cli_fail("--iters needs a number in 1..16");
        } else if (i + 1 < argc && !strcmp(argv[i], "--threads")) {
            if (!arb_cli_parse_i64(argv[++i], 1, 1024, &threads)) return arb_cli_fail("--threads needs a number in 1..1024");
        } else return arb_cli_fail("bench sidecars: unknown option '%s' (see --help)", argv[i]);
    }
    if (threads) arb_set_num_threads((int)threads);
    if (cuda) {
#ifndef ARB_HAVE_CUDA
        return arb_cli_fail("bench sidecars --device cuda: this build of arbitor has no CUDA support (rebuild with -DARB_CUDA=ON)");
#else
        if (arb_cuda_device_count() < 1) return arb_cli_fail("bench sidecars --device cuda: no CUDA device is available");
#endif
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return arb_cli_fail("%s: %s", dir, strerror(errno));
    const char *names[3] = {"dinov2", "moonshine", "vae"};
    char paths[3][4096];
    for (int k = 0; k < 3; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/%s", dir, names[k]);
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", paths[k]);
        if (access(cfg, R_OK) != 0) {
            fprintf(stderr, "bench: writing synthetic %s checkpoint to %s\n", names[k], paths[k]);
            arb_status s = arb_sidecar_synth((arb_sidecar_kind)k, paths[k], 1234);
            if (s) return arb_cli_fail_status(s, "cannot write %s", paths[k]);
        }
    }
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la) {
        if (!fgets(load, sizeof load, la)) snprintf(load, sizeof load, "?");
        fclose(la);
        load[strcspn(load, "\n")] = 0;
    }
    printf("sidecars bench: %d threads, CPU kernels %s, load average %s\n", arb_get_num_threads(),
           arb_cpu_tier_name(arb_cpu_tier_get()), load);
    char card[256] = "";
#ifdef ARB_HAVE_CUDA
    if (cuda && arb_cuda_device_name(0, card, sizeof card) == ARB_OK) printf("device: cuda:0 %s\n", card);
#endif
    /* The peak is sampled before and after every model and the best sample is used: on a shared
     * machine one sample can land in a busy moment and overstate the percentages. */
    double peak = 0;
    if (cuda) {
        arb_status ps = arb_sidecar_int8_peak_device(arb_cuda(0), 0.5, &peak);
        if (ps) return arb_cli_fail_status(ps, "int8 peak on cuda:0");
        printf("int8 peak (cuBLASLt int8 GEMM 8192^3 on cuda:0): %.1f TOPS\n", peak / 1e12);
    } else {
        peak = arb_sidecar_int8_peak(0.4);
        printf("int8 peak (vpdpbusd loop, %d threads): %.1f GOPS (first sample)\n", arb_get_num_threads(), peak / 1e9);
    }
    result res[8];
    int nres = 0, rc = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        arb_sidecar *m;
        arb_status s = arb_sidecar_load(&m, paths[k], ARB_SIDECAR_INT8);
        if (s) return arb_cli_fail_status(s, "cannot load %s", paths[k]);
        if (cuda && (s = arb_sidecar_to_device(m, arb_cuda(0)))) {
            if (s != ARB_ERR_UNSUPPORTED) {
                arb_sidecar_free(m);
                return arb_cli_fail_status(s, "cannot move %s to cuda:0", paths[k]);
            }
            printf("  %-10s not on CUDA: %s\n", names[k], arb_last_error());
            arb_sidecar_free(m);
            continue;
        }
        int bs[2] = {1, 32};
        int nb = quick ? 1 : (k == 2 && !full && !cuda ? 1 : 2);
        for (int b = 0; b < nb && !rc; b++) {
            rc = measure(m, bs[b], cuda ? (bs[b] == 1 ? 50 : 10) : bs[b] == 1 ? (int)iters : 1, cuda, &res[nres]);
            if (!rc && cuda) {
                printf("  CUDA int8 %-10s b%-3d %9.3f ms  %8.1f TOPS  (%.1f%% of the int8 GEMM rate)\n", res[nres].model,
                       res[nres].batch, res[nres].ms, res[nres].gops / 1e3, 100.0 * res[nres].gops * 1e9 / peak);
                fflush(stdout);
                nres++;
            } else if (!rc) {
                double pk = arb_sidecar_int8_peak(0.4);
                peak = pk > peak ? pk : peak;
                printf("  C int8  %-10s b%-3d %10.1f ms  %7.1f GOPS  (peak sample after it: %.1f GOPS)\n", res[nres].model,
                       res[nres].batch, res[nres].ms, res[nres].gops, pk / 1e9);
                fflush(stdout);
                nres++;
            }
        }
        arb_sidecar_free(m);
    }
    if (rc) return rc;
    bool have_torch = false;
    char sbuf[4200];
    const char *script = torch ? arb_tree_file("bench/torch_sidecars.py", "ARB_TORCH_SIDECARS", sbuf, sizeof sbuf) : NULL;
    if (torch && !script) fprintf(stderr, "bench: bench/torch_sidecars.py not found (set ARB_TORCH_SIDECARS): no PyTorch comparison\n");
    if (script) {
        char cmd[20000];
        /* PyTorch runs with the caller's OpenMP environment, not the passive policy we set for ourselves */
        const char *envp = getenv("ARB_NO_REEXEC") ? "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u ARB_NO_REEXEC " : "";
        if (cuda)
            snprintf(cmd, sizeof cmd, "%spython3 '%s' --device cuda --dinov2 '%s' --moonshine '%s' --vae '%s' --batches %s --vae-batches %s --iters 20",
                     envp, script, paths[0], paths[1], paths[2], quick ? "1" : "1,32", quick ? "1" : "1,32");
        else
            snprintf(cmd, sizeof cmd, "%spython3 '%s' --dinov2 '%s' --moonshine '%s' --vae '%s' --batches %s --vae-batches %s --iters %d --threads 2",
                     envp, script, paths[0], paths[1], paths[2], quick ? "1" : "1,32", full && !quick ? "1,32" : "1", (int)iters);
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            char model[64];
            int b;
            double ms;
            if (sscanf(line, "TORCH %63s b%d %lf", model, &b, &ms) == 3) {
                have_torch = true;
                for (int i = 0; i < nres; i++)
                    if (!strcmp(res[i].model, model) && res[i].batch == b) res[i].torch_ms = ms;
                if (cuda) printf("  PyTorch %-10s b%-3d %9.3f ms  (bf16 eager, cuda)\n", model, b, ms);
                else printf("  PyTorch %-10s b%-3d %10.1f ms  (fp32 eager, 2 threads)\n", model, b, ms);
                fflush(stdout);
            } else if (!strncmp(line, "TORCH unavailable", 17)) fprintf(stderr, "bench: PyTorch not installed: no comparison\n");
        }
        if (p) pclose(p);
    }
    for (int i = 0; i < nres; i++) res[i].pct = peak > 0 ? 100.0 * res[i].ops / (res[i].ms * 1e-3) / peak : 0.0;
    if (cuda) printf("\nint8 peak used: %.1f TOPS (cuBLASLt int8 GEMM, %s)\n", peak / 1e12, card);
    else printf("\nint8 peak used (best of %d samples): %.1f GOPS\n", nres + 1, peak / 1e9);
    printf("%-12s %5s %12s %9s %12s %9s\n", "model", "batch", cuda ? "CUDA int8 ms" : "C int8 ms", "% peak", "PyTorch ms", "speedup");
    for (int i = 0; i < nres; i++) {
        if (res[i].torch_ms > 0)
            printf("%-12s %5d %12.3f %8.1f%% %12.3f %8.2fx\n", res[i].model, res[i].batch, res[i].ms, res[i].pct, res[i].torch_ms,
                   res[i].torch_ms / res[i].ms);
        else printf("%-12s %5d %12.3f %8.1f%% %12s %9s\n", res[i].model, res[i].batch, res[i].ms, res[i].pct, "-", "-");
    }
    double pct[3] = {0}, vs[3] = {0}, vs32[3] = {0};
    const char *keys[3] = {"dinov2", "moonshine", "vae_decode"};
    for (int i = 0; i < nres; i++)
        for (int k = 0; k < 3; k++)
            if (!strcmp(res[i].model, keys[k]) && res[i].batch == 1) {
                pct[k] = res[i].pct;
                vs[k] = res[i].torch_ms > 0 ? res[i].torch_ms / res[i].ms : 0;
            } else if (!strcmp(res[i].model, keys[k]) && res[i].batch == 32)
                vs32[k] = res[i].torch_ms > 0 ? res[i].torch_ms / res[i].ms : 0;
    printf("BENCH dinov2_pct=%.1f moonshine_pct=%.1f vae_decode_pct=%.1f", pct[0], pct[1], pct[2]);
    if (have_torch) printf(" dinov2_vs_torch=%.2f moonshine_vs_torch=%.2f vae_decode_vs_torch=%.2f", vs[0], vs[1], vs[2]);
    else printf(" dinov2_vs_torch=na moonshine_vs_torch=na vae_decode_vs_torch=na");
    if (cuda && have_torch)
        printf(" dinov2_b32_vs_torch=%.2f moonshine_b32_vs_torch=%.2f vae_decode_b32_vs_torch=%.2f device=cuda", vs32[0],
               vs32[1], vs32[2]);
    else if (cuda) printf(" device=cuda");
    printf("\n");
    return 0;
}
