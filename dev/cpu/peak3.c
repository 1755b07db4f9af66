#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define R 12
int main(void){
  __m512i a[R], w[R]; for(int i=0;i<R;i++){ a[i]=_mm512_set1_epi32(i); w[i]=_mm512_set1_epi32(i*77);}  
  __m512i y=_mm512_set1_epi8(3);
  long N=100000000/R; double t; __m512i s;
#define RUN(name, body, per) \
  t=now(); for(long it=0;it<N;it++){ _Pragma("GCC unroll 16") for(int i=0;i<R;i++){ body; } __asm__ volatile("" : "+v"(y)); } t=now()-t; \
  s=a[0]; for(int i=1;i<R;i++) s=_mm512_add_epi32(s,a[i]); printf("%-20s %.3f G/s (%d)\n", name, N*(double)R*per/t/1e9, _mm512_reduce_add_epi32(s));
  RUN("vpaddd", a[i]=_mm512_add_epi32(a[i],w[i]), 1)
  RUN("vpdpbusd", a[i]=_mm512_dpbusd_epi32(a[i],w[i],y), 1)
  RUN("vpdpbusd+vpaddd", a[i]=_mm512_dpbusd_epi32(a[i],w[i],y); w[i]=_mm512_add_epi32(w[i],y), 1)
  RUN("ymm vpaddd", a[i]=_mm512_castsi256_si512(_mm256_add_epi32(_mm512_castsi512_si256(a[i]),_mm512_castsi512_si256(w[i]))), 1)
  return 0;
}
