// quick probe: vpdpbusd throughput alone and mixed with vpandd
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  __m512i a[12]; for(int i=0;i<12;i++) a[i]=_mm512_set1_epi32(i);
  __m512i x=_mm512_set1_epi8(1), y=_mm512_set1_epi8(3), m=_mm512_set1_epi8(0x0c);
  long N=200000000/12;
  double t=now();
  for(long it=0;it<N;it++){
    for(int i=0;i<12;i++) a[i]=_mm512_dpbusd_epi32(a[i],x,y);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  t=now()-t; __m512i s=a[0]; for(int i=1;i<12;i++) s=_mm512_add_epi32(s,a[i]);
  printf("vpdpbusd: %.3f G/s  (%d)\n", N*12/t/1e9, _mm512_reduce_add_epi32(s));
  for(int i=0;i<12;i++) a[i]=_mm512_set1_epi32(i);
  t=now();
  for(long it=0;it<N;it++){
    for(int i=0;i<12;i++) a[i]=_mm512_dpbusd_epi32(a[i],_mm512_and_si512(x,m),y);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  t=now()-t; s=a[0]; for(int i=1;i<12;i++) s=_mm512_add_epi32(s,a[i]);
  printf("and+vpdpbusd: %.3f G/s (%d)\n", N*12/t/1e9, _mm512_reduce_add_epi32(s));
  return 0;
}
