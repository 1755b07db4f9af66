/* `arbitor bench kernels`: the ternary linear kernels against this machine's own limits, all
 * measured in the same run — int8 peak (independent vpdpbusd zmm, or vpmaddubsw+vpmaddwd on
 * AVX2, on every thread) and memory read bandwidth (a large buffer, every thread) — so the
 * printed percentages are ratios of numbers taken minutes apart on the same machine.
 * Every figure is the median of repeated runs. The last line is machine-readable:
 *   BENCH gemv_cache_pct=… gemv_stream_pct=… gemm512_pct=… bwdupd_over_fwd=… state_bytes_per_weight=… */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "cli.h"

/* Implemented by the CUDA backend's bench when it is built. */
int arb_cuda_bench_kernels(int argc, char **argv) __attribute__((weak));

/* --cpu-time: one thread, timed by its own CPU clock. On a machine other jobs share, that
 * measures what the kernels cost rather than how long the scheduler let them run (a wall-clock
 * run with busy neighbours pays whole time slices at every fork/join). */
static bool g_cpu_time;
static double bench_now(void) {
    if (g_cpu_time) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    return arb_cli_now();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- machine limits ------------------------------------------------------------------------ */

#define DP(i) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t"
__attribute__((target("avx512f,avx512vnni"))) static int64_t peak_loop_avx512(int64_t iters) {
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13" ::: "xmm12", "xmm13");
    for (int64_t i = 0; i < iters; i++)
        __asm__ volatile(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11)::: "xmm0", "xmm1",
                         "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11");
    return iters * 12 * 64; /* MACs */
}

/* AVX2 has no int8 dot-accumulate: the bound is vpmaddubsw alone (32 u8×s8 products summed in
 * pairs per instruction); the kernels' widening adds (vpmaddwd, vpaddd) come on top. */
#define MB(i) "vpmaddubsw %%ymm12, %%ymm13, %%ymm" #i "\n\t"
__attribute__((target("avx2"))) static int64_t peak_loop_avx2(int64_t iters) {
    __asm__ volatile("vpxor %%ymm12, %%ymm12, %%ymm12\n\tvpxor %%ymm13, %%ymm13, %%ymm13" ::: "xmm12", "xmm13");
    for (int64_t i = 0; i < iters; i++)
        __asm__ volatile(MB(0) MB(1) MB(2) MB(3) MB(4) MB(5) MB(6) MB(7) MB(8) MB(9) MB(10) MB(11)::: "xmm0", "xmm1",
                         "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11");
    return iters * 12 * 32;
}

/* int8 GOPS (1 MAC = 2 ops) of all threads together, over `secs`. */
static double peak_sample(bool avx512, double secs) {
    const int64_t iters = 2000000;
    int64_t macs = 0;
    double t0 = bench_now();
#pragma omp parallel reduction(+ : macs)
    {
        double end = t0 + secs;
        while (bench_now() < end) macs += avx512 ? peak_loop_avx512(iters / 8) : peak_loop_avx2(iters / 8);
    }
    return 2.0 * (double)macs / (bench_now() - t0) / 1e9;
}

static double measure_peak(bool avx512, int reps, double secs) {
    double v[32];
    for (int r = 0; r < reps; r++) v[r] = peak_sample(avx512, secs);
    return median(v, reps);
}

/* Four interleaved streams per thread with software prefetch, like the streamed GEMV (which
 * must not beat the "peak" by reading smarter than it). */
__attribute__((target("avx2"))) static uint64_t read_slice(const uint8_t *p, size_t n) {
    __attribute__((vector_size(32))) long long a = {0}, b = {0}, c = {0}, d = {0};
    const size_t q = n / 4 & ~(size_t)127;
    const uint8_t *s0 = p, *s1 = p + q, *s2 = p + 2 * q, *s3 = p + 3 * q;
    for (size_t i = 0; i < q; i += 64) {
        __builtin_prefetch(s0 + i + 1024);
        __builtin_prefetch(s1 + i + 1024);
        __builtin_prefetch(s2 + i + 1024);
        __builtin_prefetch(s3 + i + 1024);
        a ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s0 + i);
        a ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s0 + i + 32);
        b ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s1 + i);
        b ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s1 + i + 32);
        c ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s2 + i);
        c ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s2 + i + 32);
        d ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s3 + i);
        d ^= *(const __attribute__((vector_size(32))) long long *)(const void *)(s3 + i + 32);
    }
    a ^= b ^ c ^ d;
    return (uint64_t)(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

/* GB/s reading `bytes` once with every thread (each its own contiguous slice). */
static volatile uint64_t g_sink;
static double read_bw_sample(const uint8_t *buf, size_t bytes) {
    uint64_t x = 0;
    double t0 = bench_now();
#pragma omp parallel reduction(^ : x)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t a = bytes / (size_t)nt * (size_t)t & ~(size_t)127, b = t == nt - 1 ? bytes : (bytes / (size_t)nt * (size_t)(t + 1) & ~(size_t)127);
        x ^= read_slice(buf + a, b - a);
    }
    double gbs = (double)bytes / (bench_now() - t0) / 1e9;
    g_sink ^= x;
    return gbs;
}

static double measure_read_bw(const uint8_t *buf, size_t bytes, int reps) {
    double v[32];
    for (int r = 0; r < reps; r++) v[r] = read_bw_sample(buf, bytes);
    return median(v, reps);
}

/* ---- kernels --------------------------------------------------------------------------------- */

/* Median µs of one n = 1 product on the same matrix (weights stay in cache), after 0.2 s of
 * untimed calls: a freshly written 4 MB buffer runs ~15% slower for a while (its pages settle
 * into huge pages, measured), and the bar is about the steady state. */
static double time_gemv(const arb_ternary *w, const int8_t *xq, int32_t *acc, int reps, double *v) {
    for (double t0 = bench_now(); bench_now() - t0 < 0.2;) arb_ternary_matmul_i32(w, xq, 1, acc);
    for (int r = 0; r < reps; r++) {
        int inner = 20;
        double t0 = bench_now();
        for (int i = 0; i < inner; i++) arb_ternary_matmul_i32(w, xq, 1, acc);
        v[r] = (bench_now() - t0) / inner * 1e6;
    }
    return median(v, reps);
}

static void fill_codes(uint8_t *p, size_t n, uint64_t seed) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n / 8; i++) {
        uint64_t x = arb_splitmix64(seed + i);
        /* every 2-bit field in {0,1,2}: 3 → 1 */
        uint64_t both = x & (x >> 1) & 0x5555555555555555ull;
        x &= ~(both << 1);
        memcpy(p + 8 * i, &x, 8);
    }
}

typedef struct timing {
    double us, gops, pct;
} timing;

static void print_row(const char *name, double us, double ops, double peak, const char *extra) {
    double gops = ops / us / 1e3;
    printf("  %-36s %10.1f us %9.1f GOPS %6.1f%% of peak%s\n", name, us, gops, 100.0 * gops / peak, extra ? extra : "");
}

/* CPU model and load: the numbers below mean little on a busy machine. */
static void print_machine(void) {
    char line[256], model[160] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = 0;
                break;
            }
        fclose(f);
    }
    double l1 = -1;
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1;
        fclose(f);
    }
    printf("  cpu: %s; load average (1 min) at start: %.2f\n", model, l1);
}

static void bench_usage(FILE *f) {
    fprintf(f, "usage: arbitor bench kernels [--device cpu|cuda] [--quick] [--threads N | --cpu-time]\n"
               "  Measures the machine's int8 peak and read bandwidth, then the ternary linear kernels\n"
               "  (GEMV 4096x4096 in cache and streamed, GEMM n = 8/32/512, backward dX and the fused\n"
               "  backward+update at 512 tokens) as medians, in us, GB/s, GOPS and %% of the measured peak.\n"
               "  Ends with one line: BENCH gemv_cache_pct=... gemv_stream_pct=... gemm512_pct=...\n"
               "  bwdupd_over_fwd=... state_bytes_per_weight=...\n"
               "  --device cuda   runs the CUDA kernels' bench instead (all options go to it)\n"
               "  --quick         fewer repetitions and a smaller streamed set (for CI)\n"
               "  --threads N     CPU threads (default: all cores, or ARB_THREADS)\n"
               "  --cpu-time      one thread timed by its CPU clock (per-core efficiency on a shared machine)\n");
}

int arb_bench_kernels(int argc, char **argv) {
    bool quick = false;
    const char *device = "cpu";
    int64_t threads = 0;
    /* --device cuda hands every argument to the CUDA bench (it has options of its own) */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--device") && !strcmp(argv[i + 1], "cuda")) {
            if (!arb_cuda_bench_kernels) return arb_cli_fail("this build has no CUDA kernel bench (built without CUDA)");
            return arb_cuda_bench_kernels(argc, argv);
        }
    for (int i = 1; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--device")) {
            if (++i >= argc) return arb_cli_fail("--device needs a value (cpu or cuda)");
            device = argv[i];
            if (strcmp(device, "cpu")) return arb_cli_fail("--device must be cpu or cuda, not '%s'", device);
        } else if (!strcmp(argv[i], "--cpu-time")) {
            g_cpu_time = true;
        } else if (!strcmp(argv[i], "--threads")) {
            if (++i >= argc || !arb_cli_parse_i64(argv[i], 1, 1024, &threads))
                return arb_cli_fail("--threads needs a number in 1..1024");
        } else {
            return arb_cli_fail("bench kernels: unknown option '%s' (see --help)", argv[i]);
        }
    }
    if (g_cpu_time) {
        if (threads > 1) return arb_cli_fail("--cpu-time times one thread; it cannot be used with --threads %lld", (long long)threads);
        threads = 1;
    }
    if (threads > 0) arb_set_num_threads((int)threads);
    int nt = arb_get_num_threads();
    omp_set_num_threads(nt);
    const arb_cpu_features *f = arb_cpu_features_get();
    arb_cpu_tier tier = arb_cpu_tier_get();
    bool vnni = tier == ARB_TIER_AVX512 && f->avx512_vnni;
    if (tier == ARB_TIER_SCALAR) printf("note: scalar tier: the peak below is the AVX2 loop if the CPU has it\n");
    /* A KVM guest on shared hosts: runs swing by 10-20 %, so take many samples and medians. */
    int reps = quick ? 3 : 15;

    printf("arbitor bench kernels: tier %s, %d threads%s%s\n", arb_cpu_tier_name(tier), nt, quick ? " (quick)" : "",
           g_cpu_time ? ", timed by the thread's CPU clock" : "");
    print_machine();
    double peak = (vnni || f->avx2) ? measure_peak(vnni, quick ? 3 : 5, quick ? 0.1 : 0.25) : 0.0;
    printf("  int8 peak (%s, %d thread%s)  %10.1f GOPS\n", vnni ? "vpdpbusd zmm" : "vpmaddubsw ymm", nt, nt > 1 ? "s" : "",
           peak);
    if (!(peak > 0)) peak = 1.0;

    const int64_t D = 4096;
    const size_t mat_bytes = (size_t)D * D / 4;
    const int nmats = quick ? 64 : 128; /* 256 MB / 512 MB of distinct packed weights */
    size_t stream_bytes = mat_bytes * (size_t)nmats;
    uint8_t *stream = arb_alloc(stream_bytes);
    if (!stream) return arb_cli_fail("cannot allocate %zu MB for the streamed set", stream_bytes >> 20);
    fill_codes(stream, stream_bytes, 42);
    double bw = measure_read_bw(stream, stream_bytes, reps);
    printf("  memory read bandwidth (%zu MB, %d thread%s)  %10.1f GB/s\n", stream_bytes >> 20, nt, nt > 1 ? "s" : "", bw);

    arb_ternary w;
    arb_status s = arb_ternary_init(&w, D, D, ARB_TERNARY_LINEAR, 1, arb_cpu());
    if (s == ARB_OK) s = arb_ternary_randomize(&w, 7);
    if (s != ARB_OK) {
        arb_free(stream);
        return arb_cli_fail_status(s, "cannot make a %lldx%lld ternary layer", (long long)D, (long long)D);
    }
    const int64_t NMAX = 512;
    int8_t *xq = arb_alloc((size_t)(NMAX * D));
    float *xs = arb_alloc((size_t)NMAX * sizeof(float)), *y = arb_alloc((size_t)(NMAX * D) * sizeof(float));
    float *dy = arb_alloc((size_t)(NMAX * D) * sizeof(float)), *dx = arb_alloc((size_t)(NMAX * D) * sizeof(float));
    int32_t *acc = arb_alloc((size_t)(NMAX * D) * sizeof(int32_t));
    if (!xq || !xs || !y || !dy || !dx || !acc) return arb_cli_fail("out of memory for the bench buffers");
    arb_rng_key k = arb_rng_key_make(5, 6);
    for (int64_t i = 0; i < NMAX * D; i++) {
        xq[i] = (int8_t)((int)(arb_rand_u32(k, (uint32_t)i) % 255u) - 127);
        dy[i] = arb_rand_unit(k, (uint32_t)(i + NMAX * D)) - 0.5f;
    }
    for (int64_t t = 0; t < NMAX; t++) xs[t] = 0.01f;
    const double ops1 = 2.0 * (double)D * (double)D;
    double v[32];
    printf("ternary linear %lldx%lld:\n", (long long)D, (long long)D);

    /* GEMV, weights in cache: the same 4 MB matrix again and again (one untimed call first).
     * The library's n = 1 path reads the rows64 copy (ternary.h) once a tensor has one, as
     * `arbitor generate` prepares; the tile16 path is shown beside it. */
    double gemv_tile16_us = time_gemv(&w, xq, acc, reps, v);
    print_row("GEMV n=1, weights in cache, tile16", gemv_tile16_us, ops1, peak, NULL);
    s = arb_ternary_prepare_rows64(&w);
    if (s != ARB_OK) return arb_cli_fail_status(s, "cannot prepare the rows64 copy");
    double gemv_us = time_gemv(&w, xq, acc, reps, v);
    /* The bar's ratio pairs each GEMV sample with a peak sample taken just before it (a KVM
     * guest's speed drifts with its neighbours; pairs see the same machine): median of pairs. */
    double pct[32];
    for (int r = 0; r < reps; r++) {
        double pk = vnni || f->avx2 ? peak_sample(vnni, quick ? 0.01 : 0.03) : 1.0;
        const int calls = 100;
        double t0 = bench_now();
        for (int i = 0; i < calls; i++) arb_ternary_matmul_i32(&w, xq, 1, acc);
        pct[r] = 100.0 * ops1 * calls / (bench_now() - t0) / 1e9 / pk;
    }
    double gemv_cache_pct = median(pct, reps);
    char extra[112];
    snprintf(extra, sizeof extra, "  (%4.1f%% of the peak sampled beside it)", gemv_cache_pct);
    print_row("GEMV n=1, weights in cache, rows64", gemv_us, ops1, peak, extra);

    /* GEMV, weights streamed: each call reads a different matrix (rows64: the same bytes); each
     * sample pairs one pass over all matrices with a read-bandwidth pass just before it. */
    uint8_t *own = w.rows64;
    for (int r = 0; r < reps; r++) {
        double bw_r = read_bw_sample(stream, stream_bytes);
        double t0 = bench_now();
        for (int m = 0; m < nmats; m++) {
            w.rows64 = stream + (size_t)m * mat_bytes;
            arb_ternary_matmul_i32(&w, xq, 1, acc);
        }
        v[r] = (bench_now() - t0) / nmats * 1e6;
        pct[r] = 100.0 * ((double)mat_bytes / v[r] / 1e3) / bw_r;
    }
    w.rows64 = own;
    arb_ternary_drop_rows64(&w); /* training below never has one */
    double gs_us = median(v, reps), gs_gbs = (double)mat_bytes / gs_us / 1e3;
    double gemv_stream_pct = median(pct, reps);
    snprintf(extra, sizeof extra, "  %6.1f GB/s = %5.1f%% of the read bw sampled beside it", gs_gbs, gemv_stream_pct);
    print_row("GEMV n=1, weights streamed, rows64", gs_us, ops1, peak, extra);

    /* GEMM */
    const int64_t ns[3] = {8, 32, 512};
    double gemm512_pct = 0, fwd512_us = 0;
    for (int j = 0; j < 2; j++) { /* n = 512 below, interleaved with the backward */
        int64_t n = ns[j];
        int rr = n >= 512 ? (quick ? 3 : 9) : reps;
        arb_ternary_linear_forward(&w, xq, xs, n, y); /* untimed: first-touch of workspaces */
        for (int r = 0; r < rr; r++) {
            int inner = n >= 512 ? 1 : 5;
            double t0 = bench_now();
            for (int i = 0; i < inner; i++) arb_ternary_linear_forward(&w, xq, xs, n, y);
            v[r] = (bench_now() - t0) / inner * 1e6;
        }
        double us = median(v, rr);
        char name[64];
        snprintf(name, sizeof name, "forward (GEMM) n=%lld", (long long)n);
        print_row(name, us, ops1 * (double)n, peak, NULL);
    }

    /* Forward, backward dX and the fused update at 512 tokens, timed back to back in each sample:
     * a change in the machine's speed during the run (a KVM guest's neighbours) then hits all
     * three alike, and the ratio is the median of the per-sample ratios. */
    int rr = quick ? 3 : 11;
    double vf[32], vx[32], vu[32], vr[32];
    arb_update_params p = arb_update_params_default();
    arb_update_state st = {0};
    arb_update_stats stats;
    arb_ternary_linear_forward(&w, xq, xs, NMAX, y); /* untimed: first-touch of workspaces */
    arb_ternary_linear_backward_x(&w, dy, NMAX, k, dx);
    s = arb_ternary_linear_backward_update(&w, xq, xs, dy, NMAX, &p, &st, &stats); /* first step: sets the norm */
    if (s != ARB_OK) return arb_cli_fail_status(s, "fused update failed");
    for (int r = 0; r < rr; r++) {
        p.step = (uint64_t)(r + 1);
        double t0 = bench_now();
        arb_ternary_linear_forward(&w, xq, xs, NMAX, y);
        double t1 = bench_now();
        arb_ternary_linear_backward_x(&w, dy, NMAX, k, dx);
        double t2 = bench_now();
        arb_ternary_linear_backward_update(&w, xq, xs, dy, NMAX, &p, &st, &stats);
        double t3 = bench_now();
        vf[r] = (t1 - t0) * 1e6, vx[r] = (t2 - t1) * 1e6, vu[r] = (t3 - t2) * 1e6;
        vr[r] = (vx[r] + vu[r]) / vf[r];
    }
    fwd512_us = median(vf, rr);
    print_row("forward (GEMM) n=512", fwd512_us, ops1 * 512.0, peak, NULL);
    gemm512_pct = 100.0 * ops1 * 512.0 / fwd512_us / 1e3 / peak;
    double bx_us = median(vx, rr), bu_us = median(vu, rr);
    print_row("backward dX n=512", bx_us, ops1 * 512.0, peak, NULL);
    snprintf(extra, sizeof extra, "  (dW GEMM + rule; %lld flips)", (long long)stats.flips);
    print_row("fused backward+update n=512", bu_us, ops1 * 512.0, peak, extra);
    double ratio = median(vr, rr);
    printf("  backward (dX + fused update) / forward at 512 tokens: %.2f (median of %d back-to-back samples)\n", ratio,
           rr);
    double spw = (double)arb_ternary_state_bytes(&w) / ((double)D * (double)D);
    printf("  training state: %.4f bytes/weight\n", spw);

    printf("BENCH gemv_cache_pct=%.1f gemv_stream_pct=%.1f gemm512_pct=%.1f bwdupd_over_fwd=%.2f "
           "state_bytes_per_weight=%.4f\n",
           gemv_cache_pct, gemv_stream_pct, gemm512_pct, ratio, spw);
    arb_ternary_free(&w);
    arb_free(stream);
    arb_free(xq);
    arb_free(xs);
    arb_free(y);
    arb_free(dy);
    arb_free(dx);
    arb_free(acc);
    return 0;
}
