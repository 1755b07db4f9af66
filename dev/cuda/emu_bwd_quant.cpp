// dev/cuda/emu_bwd_quant.cpp — runs the CUDA backward's k_bwd_amax and k_bwd_quant source text on
// the CPU (one pthread per CUDA thread, a barrier for __syncthreads, the block's warps reduced
// through shared slots), for a machine without a GPU: the kernels of a base revision (old_k.inc)
// and of the tree (new_k.inc) must give the same maxima, flags, q, qs and hqT bit for bit, and
// hqT must equal the CPU rule's arb_upd_quantize_grad. Built and run by emu_bwd_quant.sh.
// Evidence for index and arithmetic changes only: timing, L2 and warp scheduling are not modelled.
#include <pthread.h>
#include <fenv.h>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <thread>
#include <algorithm>
extern "C" {
#include "arbitor/core.h"
#include "ternary/update_internal.h"
}
struct D3 { unsigned x, y, z; };
static thread_local D3 threadIdx;
static D3 blockIdx, blockDim, gridDim;
static pthread_barrier_t bar;
static unsigned warp_slot[1024];
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
static void __syncthreads() { pthread_barrier_wait(&bar); }
template <class T> static T __ldg(const T *p) { return *p; }
static float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static float __fadd_rd(float a, float b) { fesetround(FE_DOWNWARD); volatile float r = a + b; fesetround(FE_TONEAREST); return r; }
static int __float2int_rd(float a) { return (int)floorf(a); }
static unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static unsigned __reduce_max_sync(unsigned, unsigned v) {
    unsigned t = threadIdx.x; warp_slot[t] = v; __syncthreads();
    unsigned m = 0; for (unsigned i = t & ~31u; i < (t | 31u) + 1 && i < blockDim.x; i++) m = std::max(m, warp_slot[i]);
    __syncthreads(); return m;
}
static void atomicMax(unsigned *p, unsigned v) { unsigned o = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (o < v && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} }
static void atomicOr(int *p, int v) { __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
using std::max;
struct uint4 { uint32_t x, y, z, w; };
static uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return {a, b, c, d}; }
namespace oldk {
#include "old_k.inc"
}
namespace newk {
#include "new_k.inc"
}
template <class F> static void launch(D3 g, unsigned nt, F f) {
    gridDim = g; blockDim = {nt, 1, 1};
    for (unsigned by = 0; by < g.y; by++) for (unsigned bx = 0; bx < g.x; bx++) {
        blockIdx = {bx, by, 0};
        pthread_barrier_init(&bar, nullptr, nt);
        std::vector<std::thread> th;
        for (unsigned t = 0; t < nt; t++) th.emplace_back([&, t] { threadIdx = {t, 0, 0}; f(); });
        for (auto &x : th) x.join();
        pthread_barrier_destroy(&bar);
    }
}
static unsigned cdiv(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }
struct Out { std::vector<unsigned> ra, ca; int bad = 0; std::vector<int8_t> q, hqt; std::vector<float> qs; };
static int mode = 0; /* 0 both, 1 dX only, 2 update only */
static Out run(bool isnew, const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows, int64_t rp,
               int64_t ldt, arb_rng_key kx, arb_rng_key kg) {
    Out o; o.ra.assign(n, 0); o.ca.assign(rows, 0); o.q.assign(n * rp, 99); o.hqt.assign(rows * ldt, 99); o.qs.assign(n, -1);
    unsigned *ra = mode == 2 ? nullptr : o.ra.data(), *ca = mode == 1 ? nullptr : o.ca.data(); int *bad = &o.bad;
    int8_t *qp = mode == 2 ? nullptr : o.q.data(), *hp = mode == 1 ? nullptr : o.hqt.data();
    float *qsp = mode == 2 ? nullptr : o.qs.data();
    if (mode == 1) { xs = nullptr; ldt = n; }
    if (isnew) launch({cdiv(rows, 128), cdiv(n, 128), 1}, 128, [&] { newk::k_bwd_amax(dy, xs, scale, n, rows, ra, ca, bad); });
    else launch({cdiv(rows, 256), cdiv(n, 128), 1}, 256, [&] { oldk::k_bwd_amax(dy, xs, scale, n, rows, ra, ca, bad); });
    D3 gq = {cdiv(mode == 2 ? rows : rp, 64), cdiv(ldt, 64), 1};
    if (isnew) launch(gq, 256, [&] { newk::k_bwd_quant(dy, xs, scale, n, rows, ra, kx, qp, rp, qsp, ca, kg, hp, ldt); });
    else launch(gq, 256, [&] { oldk::k_bwd_quant(dy, xs, scale, n, rows, ra, kx, qp, rp, qsp, ca, kg, hp, ldt); });
    return o;
}
int main() {
    int64_t shapes[][2] = {{1, 1}, {37, 19}, {130, 200}, {257, 272}, {300, 129}, {64, 64}};
    int fails = 0;
    for (mode = 0; mode < 4; mode++)
    for (auto &sh : shapes) {
        int64_t n = sh[0], rows = sh[1], rp = (rows + 63) / 64 * 64, ldt = (n + 63) / 64 * 64;
        std::vector<float> dy(n * rows), xs(n), sc(rows);
        arb_rng_key k0 = {1234u + (uint32_t)n, 99u};
        for (int64_t i = 0; i < n * rows; i++) dy[i] = arb_rand_normal(k0, (uint32_t)i) * (i % 7 == 0 ? 10.f : 0.3f);
        for (int64_t i = 0; i < n; i++) xs[i] = 0.01f + fabsf(arb_rand_normal(k0, (uint32_t)(i + 999999)));
        for (int64_t i = 0; i < rows; i++) sc[i] = 0.5f + (float)(i % 5) * 0.1f;
        if (mode == 3) { dy[n * rows / 2] = NAN; if (n * rows > 3) dy[1] = INFINITY; }
        arb_rng_key kx = {7u, 8u}, kg = {0xdeadbeefu, 0x1234567u};
        Out a = run(false, dy.data(), xs.data(), sc.data(), n, rows, rp, ldt, kx, kg);
        Out b = run(true, dy.data(), xs.data(), sc.data(), n, rows, rp, ldt, kx, kg);
        bool same = a.ra == b.ra && a.ca == b.ca && a.bad == b.bad && a.q == b.q && a.hqt == b.hqt &&
                    !memcmp(a.qs.data(), b.qs.data(), n * 4);
        // independent: the CPU rule's hq (n, rows) against hqT
        std::vector<int8_t> hq(n * rows); std::vector<float> c(rows);
        arb_status st = arb_upd_quantize_grad(dy.data(), xs.data(), sc.data(), n, rows, kg, hq.data(), c.data());
        long dif = 0, nz = 0;
        for (int64_t t = 0; t < n; t++) for (int64_t o = 0; o < rows; o++) { dif += hq[t * rows + o] != b.hqt[o * ldt + t]; nz += hq[t*rows+o] != 0; }
        for (int64_t o = 0; o < rows; o++) for (int64_t t = n; t < ldt; t++) dif += b.hqt[o * ldt + t] != 0;
        if (mode) { dif = 0; st = ARB_OK; } /* the rule comparison is for mode 0 */
        if (mode == 3) same = a.ra == b.ra && a.ca == b.ca && a.bad == b.bad && a.bad == 1; /* values past a bad flag are unused */
        printf("mode %d n=%lld rows=%lld old==new %d  cpu rule vs new hqT diffs %ld (nonzero %ld) st=%d\n", mode, (long long)n, (long long)rows, same, dif, nz, (int)st);
        fails += !same || dif || st;
    }
    printf(fails ? "FAIL\n" : "ALL OK\n");
    return fails != 0;
}
