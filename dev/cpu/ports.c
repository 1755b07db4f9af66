/* Port probe: vpdpbusd zmm alone, vpandd alone, and the AND+vpdpbusd pair of the GEMV, in
 * inline asm (no compiler scheduling). On this Xeon both issue on p0/p5, so the pair runs at
 * half the vpdpbusd rate: the GEMV ceiling in docs/PERFORMANCE.md. gcc -O2 -mavx512f ports.c */
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define D(i) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define A(i) "vpandd %%zmm14, %%zmm13, %%zmm" #i "\n\t"
#define AD(i,j) "vpandd %%zmm14, %%zmm13, %%zmm" #j "\n\t" "vpdpbusd %%zmm12, %%zmm" #j ", %%zmm" #i "\n\t"
int main(void){
  long N=50000000; double t;
  t=now();
  for(long it=0;it<N;it++) __asm__ volatile(D(0)D(1)D(2)D(3)D(4)D(5)D(6)D(7)D(8)D(9)D(10)D(11) ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11");
  t=now()-t; double pk=N*12/t/1e9; printf("vpdpbusd %.3f G/s\n", pk);
  t=now();
  for(long it=0;it<N;it++) __asm__ volatile(A(0)A(1)A(2)A(3)A(4)A(5)A(6)A(7)A(8)A(9)A(10)A(11) ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11");
  t=now()-t; printf("vpandd %.3f G/s\n", N*12/t/1e9);
  t=now();
  for(long it=0;it<N;it++) __asm__ volatile(AD(0,16)AD(1,17)AD(2,18)AD(3,19)AD(4,20)AD(5,21)AD(6,22)AD(7,23)AD(8,24)AD(9,25)AD(10,26)AD(11,27) ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm16","xmm17","xmm18","xmm19","xmm20","xmm21","xmm22","xmm23","xmm24","xmm25","xmm26","xmm27");
  t=now()-t; printf("and+vpdpbusd %.3f G pairs/s = %.0f%% of peak\n", N*12/t/1e9, 100*N*12/t/1e9/pk);
  return 0;
}
