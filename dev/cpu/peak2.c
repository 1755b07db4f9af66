#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  long N=500000000;
  double t=now(); long v=0;
  for(long i=0;i<N;i++){ __asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(v)); }
  t=now()-t; double ghz=12.0*N/t/1e9; printf("core GHz ~ %.3f\n", ghz);
  __m512i a[12]; for(int i=0;i<12;i++) a[i]=_mm512_set1_epi32(i);
  __m512i w[12]; for(int i=0;i<12;i++) w[i]=_mm512_set1_epi32(i*77);
  __m512i y=_mm512_set1_epi8(3), m=_mm512_set1_epi8(0x0c);
  N=100000000/12;
  t=now();
  for(long it=0;it<N;it++){
    for(int i=0;i<12;i++) a[i]=_mm512_dpbusd_epi32(a[i],w[i],y);
    __asm__ volatile("" : "+v"(y));
  }
  t=now()-t; __m512i s=a[0]; for(int i=1;i<12;i++) s=_mm512_add_epi32(s,a[i]);
  printf("vpdpbusd: %.3f per cycle (%d)\n", N*12/t/1e9/ghz, _mm512_reduce_add_epi32(s));
  t=now();
  for(long it=0;it<N;it++){
    for(int i=0;i<12;i++) a[i]=_mm512_dpbusd_epi32(a[i],_mm512_and_si512(w[i],m),y);
    __asm__ volatile("" : "+v"(y), "+v"(m));
  }
  t=now()-t; s=a[0]; for(int i=1;i<12;i++) s=_mm512_add_epi32(s,a[i]);
  printf("and+vpdpbusd: %.3f per cycle (%d)\n", N*12/t/1e9/ghz, _mm512_reduce_add_epi32(s));
  t=now();
  for(long it=0;it<N;it++){
    for(int i=0;i<12;i++) a[i]=_mm512_add_epi32(a[i],_mm512_and_si512(w[i],m));
    __asm__ volatile("" : "+v"(y), "+v"(m));
  }
  t=now()-t; s=a[0]; for(int i=1;i<12;i++) s=_mm512_add_epi32(s,a[i]);
  printf("and+add: %.3f pairs per cycle (%d)\n", N*12/t/1e9/ghz, _mm512_reduce_add_epi32(s));
  return 0;
}
