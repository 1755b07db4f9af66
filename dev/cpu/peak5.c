#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define D(i) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define Y(j) "vpandd %%ymm14, %%ymm13, %%ymm" #j "\n\t"
#define DY(i,j) D(i) Y(j)
#define M(i,j) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t" "vpdpbusd %%zmm12, %%zmm13, %%zmm" #j "\n\t" "vpdpbusd (%0), %%zmm13, %%zmm" #j "\n\t"
int main(void){
  long N=50000000; double t; static int buf[64] __attribute__((aligned(64)));
  t=now();
  for(long it=0;it<N;it++) __asm__ volatile(D(0)D(1)D(2)D(3)D(4)D(5)D(6)D(7)D(8)D(9)D(10)D(11) ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11");
  t=now()-t; double pk=N*12/t/1e9; printf("vpdpbusd %.3f G/s\n", pk);
  t=now();
  for(long it=0;it<N;it++) __asm__ volatile(DY(0,15)DY(1,16)DY(2,17)DY(3,18)DY(4,19)DY(5,20)DY(6,21)DY(7,22)DY(8,23)DY(9,24)DY(10,25)DY(11,26) ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm15");
  t=now()-t; printf("zmm dpbusd + ymm and: %.0f%% of peak\n", 100*N*12/t/1e9/pk);
  return 0;
}
