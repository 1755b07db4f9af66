/* Kernel lab: min-of-N single-thread timings of each piece at 4096x4096 (robust to a loaded
 * machine), to decide between kernel variants. Not part of the build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cpu/linear_internal.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define TIME(label, ops, reps, stmt) do { double best=1e9; for (int r_=0;r_<(reps);r_++){ double t0_=now(); stmt; double d_=now()-t0_; if(d_<best)best=d_; } \
  printf("%-28s %9.1f us  %7.1f GOPS\n", label, best*1e6, (ops)/best/1e9); } while(0)
int main(int argc, char **argv) {
  int64_t D = 4096, N = argc > 1 ? atoi(argv[1]) : 96;
  arb_set_num_threads(1);
  arb_ternary w; arb_ternary_init(&w, D, D, ARB_TERNARY_LINEAR, 1, arb_cpu()); arb_ternary_randomize(&w, 3);
  int8_t *xq = arb_alloc(N*D); float *xs = arb_alloc(N*4), *dy = arb_alloc(N*D*4), *y = arb_alloc(N*D*4);
  int32_t *acc = arb_alloc(N*D*4);
  arb_rng_key k = arb_rng_key_make(1,2);
  for (int64_t i=0;i<N*D;i++){ xq[i]=(int8_t)((int)(arb_rand_u32(k,i)%255)-127); dy[i]=arb_rand_unit(k,i+N*D)-0.5f; }
  for (int t=0;t<N;t++) xs[t]=0.01f;
  double ops = 2.0*D*D;
  TIME("peak vpdpbusd (1 core)", 2.0*64*12*1000000, 5, for (int i_=0;i_<1000000;i_++) __asm__ volatile(
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm1\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm2\n\t"
    "vpdpbusd %%zmm12, %%zmm13, %%zmm3\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm4\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm5\n\t"
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm7\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm8\n\t"
    "vpdpbusd %%zmm12, %%zmm13, %%zmm9\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm10\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm11\n\t"
    ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11"));
  if (argc > 2) { /* rule only, for perf stat */
    int64_t n4 = (N+3)/4; uint8_t *xt = arb_calloc(n4*64*(D/16)); int8_t *ht = arb_calloc(n4*64*(D/16)); int32_t *hs = arb_calloc(D*4);
    arb_lin_grad gr = {xt, ht, hs, n4}; arb_upd_row_acc *ra = arb_calloc(D*sizeof *ra);
    int32_t *mult = arb_alloc(D*4); for (int i=0;i<D;i++) mult[i]=1<<20;
    arb_upd_plan pl = {mult, 24, k, 64, 5};
    for (int i=0;i<n4*64*(D/16);i++) { xt[i] = (uint8_t)arb_rand_u32(k, i); ht[i] = (int8_t)(arb_rand_u32(k, i+77777) % 64) - 32; }
    pl.shift = argc > 4 ? atoi(argv[4]) : 40; for (int i=0;i<D;i++) mult[i]=1<<22;
    TIME("rule pass (n=N)", 0, atoi(argv[2]), for (int64_t rb=0;rb<D/16;rb++) arb_lin_kernels_avx512.upd(&w,&gr,rb,0,D/16,(argc>3 && argv[3][0]=='s')?NULL:&pl,ra+rb*16));
    int64_t fl=0; for (int i=0;i<D;i++) fl+=ra[i].flips; printf("flips/pass %.0f\n", (double)fl/atoi(argv[2]));
    return 0; }
  TIME("gemv n=1", ops, 50, arb_ternary_matmul_i32(&w, xq, 1, acc));
  { arb_ternary w2; arb_ternary_init(&w2, 1024, D, ARB_TERNARY_LINEAR, 1, arb_cpu()); arb_ternary_randomize(&w2, 3);
    TIME("gemv 1024x4096 (L2)", ops/4, 200, arb_ternary_matmul_i32(&w2, xq, 1, acc));
    int32_t xs0 = 0; arb_lin_out o = {acc, 1024, NULL, NULL};
    TIME("gemv kernel 1024x4096", ops/4, 200, arb_lin_kernels_avx512.fwd(&w2, xq, 1, &xs0, 0, 64, &o)); }
  { arb_ternary w2; arb_ternary_init(&w2, 2048, D, ARB_TERNARY_LINEAR, 1, arb_cpu()); arb_ternary_randomize(&w2, 3);
    int32_t xs0 = 0; arb_lin_out o = {acc, 2048, NULL, NULL};
    TIME("gemv kernel 2048x4096 fwd", ops/2, 200, arb_lin_kernels_avx512.fwd(&w2, xq, 1, &xs0, 0, 128, &o));
    TIME("gemv kernel 2048x4096 alt", ops/2, 200, { static int dir; dir ^= 1; if (dir) arb_lin_kernels_avx512.fwd(&w2, xq, 1, &xs0, 0, 128, &o); else for (int q = 31; q >= 0; q--) arb_lin_kernels_avx512.fwd(&w2, xq, 1, &xs0, 4*q, 4*q+4, &o); }); }
  TIME("gemm n=8", ops*8, 10, arb_ternary_matmul_i32(&w, xq, 8, acc));
  TIME("i32 n=12", ops*12, 10, arb_ternary_matmul_i32(&w, xq, 12, acc));
  TIME("i32 n=24", ops*24, 10, arb_ternary_matmul_i32(&w, xq, 24, acc));
  TIME("i32 n=N", ops*N, 5, arb_ternary_matmul_i32(&w, xq, N, acc));
  TIME("fwd n=N", ops*N, 5, arb_ternary_linear_forward(&w, xq, xs, N, y));
  TIME("bwdx n=N", ops*N, 5, arb_ternary_linear_backward_x(&w, dy, N, k, y));
  arb_update_params p = arb_update_params_default(); arb_update_state st = {0};
  arb_ternary_linear_backward_update(&w, xq, xs, dy, N, &p, &st, NULL);
  TIME("bwd update n=N", ops*N, 5, arb_ternary_linear_backward_update(&w, xq, xs, dy, N, &p, &st, NULL));
  int8_t *hq = arb_alloc(N*D); float *c = arb_alloc(D*4);
  TIME("  quantize_grad", 0, 3, arb_upd_quantize_grad(dy, xs, w.scale, N, D, k, hq, c));
  /* dW kernel alone: stats pass (no rule) vs full */
  int64_t n4 = (N+3)/4;
  uint8_t *xt = arb_alloc(n4*64*(D/16)); int8_t *ht = arb_alloc(n4*64*(D/16)); int32_t *hs = arb_calloc(D*4);
  memset(xt, 128, n4*64*(D/16)); memcpy(ht, hq, N*D < n4*64*(D/16) ? N*D : n4*64*(D/16));
  arb_lin_grad gr = {xt, ht, hs, n4};
  arb_upd_row_acc *ra = arb_calloc(D*sizeof *ra);
  int32_t *mult = arb_alloc(D*4); for (int i=0;i<D;i++) mult[i]=1<<20;
  arb_upd_plan pl = {mult, 24, k, 64, 5};
  TIME("  dW kernel stats-only", ops*N, 3, for (int64_t rb=0;rb<D/16;rb++) arb_lin_kernels_avx512.upd(&w,&gr,rb,0,D/16,NULL,ra+rb*16));
  TIME("  dW kernel + rule", ops*N, 3, for (int64_t rb=0;rb<D/16;rb++) arb_lin_kernels_avx512.upd(&w,&gr,rb,0,D/16,&pl,ra+rb*16));
  { int32_t *hsn = arb_calloc(N*4); int8_t *hq2 = arb_calloc(N*D); for (int64_t i=0;i<N*D;i++) hq2[i]=xq[i];
    arb_lin_out o = {acc, D, NULL, NULL};
    TIME("  bwdx kernel only", ops*N, 5, arb_lin_kernels_avx512.bwdx(&w, hq2, N, hsn, 0, D/16, &o));
    arb_lin_out o2 = {acc, D, NULL, NULL}; int32_t *xsn = arb_calloc(N*4);
    TIME("  fwd kernel only", ops*N, 5, arb_lin_kernels_avx512.fwd(&w, hq2, N, xsn, 0, D/16, &o2)); }
  return 0;
}
