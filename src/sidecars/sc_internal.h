/* Private pieces shared by the sidecar encoders (src/sidecars/): layers, GEMM kernels,
 * elementwise ops, checkpoint helpers.
 *
 * Why one small kernel set: DINOv2, Moonshine and the VAE are all "GEMM + a few norms". A
 * Linear is y = x·Wᵀ + b; a Conv2d/Conv1d is the same GEMM on im2col rows (the VAE keeps
 * activations channels-last so the GEMM output is already the next layer's input). Every GEMM
 * has a plain scalar reference; the AVX-512 tier is tested against it. */
#ifndef ARB_SC_INTERNAL_H
#define ARB_SC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arbitor/core.h"
#include "arbitor/safetensors.h"
#include "arbitor/sidecars.h"

/* ---------------------------------------------------------------- packed weights
 *
 * A GEMM's B operand ("weights", N outputs × K inputs) is packed once into 16-column panels so
 * the micro-kernels read one vector per k step:
 *   f32:  [ceil(N/16)][K][16]
 *   int8: [ceil(N/16)][Kp/4][16][4], Kp = K rounded up to 4 (vpdpbusd takes 4 bytes per lane).
 * Columns past N and k past K are zero. */
typedef struct sc_packf {
    int n, k, kb; /* kb: K block (= k when k ≤ SC_KBLOCK_MIN) */
    float *p;     /* per K block of kb (last may be shorter): [ceil(n/16)][kb][16], blocks back to back */
} sc_packf;
/* Weights with K above this are packed in K blocks of SC_KBLOCK so a 64-column panel block
 * (64·512·4 B = 128 KB) stays in L2 while all rows stream through it. */
#define SC_KBLOCK_MIN 768
#define SC_KBLOCK 512

typedef struct sc_packq {
    int n, k, kp;
    int8_t *p;    /* [ceil(n/16)][kp/4][16][4] */
    int32_t *qsum; /* [ceil(n/16)*16]: 128·Σ_k q[n,k] (undoes the +128 activation offset) */
    float *scale; /* [ceil(n/16)*16]: per output channel, absmax/127 (0 past n) */
} sc_packq;

/* One Linear or Conv (as GEMM): y[m, n] = Σ_k x[m, k]·W[n, k] + b[n].
 * fp32 mode keeps `f`; int8 modes keep `q` (quanto's q and scale) and drop the float weight. */
typedef struct sc_lin {
    int n, k;        /* out features, in features (Cin·kh·kw for a conv) */
    sc_packf f;      /* fp32 weights (empty when quantized) */
    sc_packq q;      /* int8 weights (empty when fp32) */
    float *bias;     /* [n] or NULL */
    bool quantized;
} sc_lin;

typedef enum sc_mode { SC_FP32 = 0, SC_INT8 = 1, SC_INT8W = 2 } sc_mode;

/* ---------------------------------------------------------------- quantizer (optimum-quanto qint8) */

/* q[n,k] = clamp(rint(W/s[n]), -128, 127), s[n] = absmax(W[n,:]) / 127 (a zero row gives s = 0,
 * q = 0 instead of quanto's NaN). Division, not a reciprocal multiply, as quanto does. */
void sc_quantize_rows(const float *w, int n, int k, int8_t *q, float *s);

/* ---------------------------------------------------------------- packing + GEMMs */

arb_status sc_packf_init(sc_packf *p, const float *w, int n, int k); /* w: [n][k] */
void sc_packf_free(sc_packf *p);
arb_status sc_packq_init(sc_packq *p, const int8_t *q, const float *s, int n, int k);
void sc_packq_free(sc_packq *p);
/* Packs from a [k][n] (KN) layout, e.g. V in P·V. `p->p` must hold ceil(n/16)*k*16 floats. */
void sc_packf_from_kn(float *dst, const float *b, size_t ldb, int n, int k);
/* Packs from a [n][k] (NK) layout, e.g. K in Q·Kᵀ. */
void sc_packf_from_nk(float *dst, const float *b, size_t ldb, int n, int k);

/* Epilogue flags */
enum { SC_EPI_NONE = 0, SC_EPI_ACCUM = 1 /* C += result (residual add) */ };

/* C[M,N] (ldc) = A[M,K] (lda) · Bᵀ + bias. Threads over row/column tiles unless already inside
 * an OpenMP parallel region. */
void sc_gemm_f32(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                 size_t ldc, int flags);
/* The same for a (possibly K-blocked) packed weight: blocks after the first accumulate. */
void sc_gemm_f32_packed(int M, const float *A, size_t lda, const sc_packf *B, const float *bias, float *C, size_t ldc,
                        int flags);
/* int8: A is quantized per row (dynamic absmax, symmetric, +128 offset to u8), B is int8. */
void sc_gemm_q8(int M, const float *A, size_t lda, const sc_packq *B, const float *bias, float *C, size_t ldc,
                int flags);
/* Weights-only int8: float activations, int8 weights (quanto's numerics). */
void sc_gemm_w8(int M, const float *A, size_t lda, const sc_packq *B, const float *bias, float *C, size_t ldc,
                int flags);

/* Multiply-adds done by all GEMMs since the last call (and resets the count): the benchmark's
 * ops count (2 ops per multiply-add). */
unsigned long long sc_macs_take(void);
/* For kernels that call a tier directly (the VAE's fused im2col + quantize). */
void sc_macs_add(unsigned long long n);

/* A layer's forward: x [M, lin->k] (lda) → y [M, lin->n] (ldc), per the mode it was built in. */
void sc_lin_forward(const sc_lin *l, sc_mode mode, int M, const float *x, size_t lda, float *y, size_t ldc, int flags);

/* Row quantization for the int8 GEMM: u8[k] = rint(x/s)+128 with s = absmax/127 (s=0 → all 128),
 * k past K padded with 128. Returns s. */
float sc_quant_row_u8(const float *x, int K, int Kp, uint8_t *u8);

/* Tier micro-kernels (scalar reference in sc_kernels.c; AVX-512 in sc_kernels_avx512.c):
 * compute rows [0, M) of C for column panels [nb0, nb1) (16 columns each). */
typedef struct sc_gemm_tier {
    void (*f32)(int M, int N, int K, const float *A, size_t lda, const float *Bp, const float *bias, float *C,
                size_t ldc, int flags, int nb0, int nb1);
    void (*q8)(int M, const uint8_t *Aq, const float *as, const sc_packq *B, const float *bias, float *C,
               size_t ldc, int flags, int nb0, int nb1);
    float (*quant_row)(const float *x, int K, int Kp, uint8_t *u8);
} sc_gemm_tier;
extern const sc_gemm_tier sc_tier_scalar;
extern const sc_gemm_tier sc_tier_avx512;
extern const sc_gemm_tier sc_tier_avx2;
const sc_gemm_tier *sc_tier(void);
/* A register-only vpdpbusd loop of `iters` iterations; returns the int8 ops it did. */
double sc_vnni_peak_ops(long iters);

/* ---------------------------------------------------------------- elementwise / norms */

typedef struct sc_ops_tier {
    void (*exp_inplace)(float *x, size_t n);
    void (*gelu)(float *x, size_t n);   /* exact erf GELU */
    void (*silu)(float *x, size_t n);
    void (*tanh_)(float *x, size_t n);
    void (*softmax)(float *x, int n, float scale); /* x = softmax(scale·x), max-subtracted */
    /* One LayerNorm row: mean and variance summed in double, o = ((r − μ)·inv)·γ + β in float
     * (no FMA), β may be NULL; o may alias r. */
    void (*layernorm_row)(const float *r, float *o, int D, const float *gamma, const float *beta, float eps);
} sc_ops_tier;
extern const sc_ops_tier sc_ops_scalar;
extern const sc_ops_tier sc_ops_avx512;
const sc_ops_tier *sc_ops(void);

/* LayerNorm over the last dim D of x [M, D] into y (may alias); beta may be NULL. */
void sc_layernorm(const float *x, float *y, int M, int D, const float *gamma, const float *beta, float eps);
/* y = LayerNorm(x) · Wᵀ + b for a layer whose input is a LayerNorm (pre-norm blocks). In the
 * int8 mode each normalized row is quantized while it is still in L1 (no float copy of the
 * normalized activations); other modes write it to `scratch` [M, D] and run sc_lin_forward. */
void sc_lin_forward_ln(const sc_lin *l, sc_mode mode, int M, const float *x, const float *gamma, const float *beta,
                       float eps, float *scratch, float *y, size_t ldc, int flags);
/* GroupNorm on channels-last x [P, C] (P positions) with G groups; optional SiLU after. */
arb_status sc_groupnorm_nhwc(const float *x, float *y, size_t P, int C, int G, const float *gamma, const float *beta,
                              float eps, bool silu);
/* Softmax of each row of s [M, N] in place (max-subtracted). */
void sc_softmax_rows(float *s, int M, int N, size_t lds);

/* Multi-head attention. q [Tq, H·dh] (ldq), k/v [Tk, H·dh] (ldk, ldv) → o [Tq, H·dh] (ldo).
 * scale multiplies qkᵀ; causal masks key j > query i. */
arb_status sc_attention(int Tq, int Tk, int H, int dh, const float *q, size_t ldq, const float *k, size_t ldk,
                        const float *v, size_t ldv, float *o, size_t ldo, float scale, bool causal);

/* ---------------------------------------------------------------- checkpoints */

typedef struct sc_ckpt {
    arb_safetensors *st;
    char path[1024];
    unsigned char *used; /* per tensor index: consumed by the loader (to report extra tensors) */
    size_t n;
    const char *prefix;  /* prepended to every looked-up name ("" or "model.") */
} sc_ckpt;

/* Opens DIR/model.safetensors or DIR/diffusion_pytorch_model.safetensors. */
arb_status sc_ckpt_open(sc_ckpt *c, const char *dir);
void sc_ckpt_close(sc_ckpt *c);
/* Finds prefix+name as F32/BF16/F16 with exactly this shape; copies it to a new float buffer. */
arb_status sc_ckpt_get(sc_ckpt *c, const char *name, int ndim, const int64_t *shape, float **out);
/* Marks a tensor as known-but-unused (e.g. mask_token, tied proj_out); absent is fine. */
void sc_ckpt_ignore(sc_ckpt *c, const char *name);
bool sc_ckpt_has(sc_ckpt *c, const char *name);
/* ARB_ERR_FORMAT naming the first tensor no loader consumed. */
arb_status sc_ckpt_check_all_used(sc_ckpt *c);

/* Loads a Linear ("<name>.weight" [n,k] and, if has_bias, "<name>.bias") in `mode`. */
arb_status sc_lin_load(sc_lin *l, sc_ckpt *c, const char *name, int n, int k, bool has_bias, sc_mode mode,
                       arb_sidecar_info *info);
/* Conv2d [o, ci, kh, kw] → GEMM weights in (ky, kx, c) order (channels-last im2col).
 * Conv1d [o, ci, kw] → (kx, c) order; Conv1d stays float (quanto leaves nn.Conv1d alone). */
arb_status sc_conv2d_load(sc_lin *l, sc_ckpt *c, const char *name, int o, int ci, int kh, int kw, bool has_bias,
                          bool patch_order, sc_mode mode, arb_sidecar_info *info);
arb_status sc_conv1d_load(sc_lin *l, sc_ckpt *c, const char *name, int o, int ci, int kw, bool has_bias,
                          arb_sidecar_info *info);
/* A float vector parameter (norm weight, bias, λ): counts it in the audit. */
arb_status sc_vec_load(float **out, sc_ckpt *c, const char *name, int ndim, const int64_t *shape,
                       arb_sidecar_info *info);
/* Several Linears of one input (q, k, v: tensors PREFIX+names[i]) stacked into one [count·n, k] layer: each row and its
 * int8 scale are exactly the separate layer's (quanto quantizes per output row), so the outputs
 * are the same numbers from one activation quantization and one GEMM. Counted as count layers. */
arb_status sc_lin_load_cat(sc_lin *l, sc_ckpt *c, const char *prefix, const char *const *names, int count, int n, int k,
                           bool has_bias, sc_mode mode, arb_sidecar_info *info);
void sc_lin_free(sc_lin *l);

/* config.json helpers */
typedef struct cJSON cJSON;
arb_status sc_config_read(const char *dir, cJSON **out);
arb_status sc_cfg_int(const cJSON *cfg, const char *key, int lo, int hi, int def, bool required, int *out);
arb_status sc_cfg_num(const cJSON *cfg, const char *key, double def, bool required, double *out);

/* Scratch allocation helper: aligned, overflow-checked float buffer of a·b·c elements. */
float *sc_falloc(size_t a, size_t b, size_t c);

/* Test/fuzz-corpus helper: writes audio with libsndfile. format 0 WAV PCM16, 1 FLAC, 2 OGG Vorbis,
 * 3 WAV float. data: interleaved [frames][channels]. */
arb_status sc_audio_write(const char *path, int format, int rate, int channels, const float *data, size_t frames);

/* Model-specific state (each model file owns its struct). */
typedef struct sc_dinov2 sc_dinov2;
typedef struct sc_moonshine sc_moonshine;
typedef struct sc_vae sc_vae;

struct arb_sidecar {
    arb_sidecar_kind kind;
    sc_mode mode;
    arb_sidecar_info info;
    sc_dinov2 *dino;
    sc_moonshine *moon;
    sc_vae *vae;
    char *dir;                /* checkpoint directory */
    void *dev;                /* device-resident copy (src/cuda/sidecar.cu) or NULL */
    void (*dev_free)(void *); /* releases `dev` */
    int dev_index;            /* its CUDA ordinal */
};

arb_status sc_dinov2_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg);
void sc_dinov2_free(sc_dinov2 *d);
/* DINOv2's position-embedding interpolation, as PyTorch's upsample_bicubic2d (align_corners=False,
 * A = −0.75, border-clamped taps): src [gs, gs, D] → dst [h, w, D]. Host code; the CUDA path too. */
void sc_bicubic_grid(const float *src, int gs, int D, float *dst, int h, int w);
arb_status sc_moonshine_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg);
void sc_moonshine_free(sc_moonshine *d);
arb_status sc_vae_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg);
void sc_vae_free(sc_vae *d);

/* ---------------------------------------------------------------- Moonshine CPU (session 3)
 * The INT8 mode's fast paths for Moonshine's float parts: Conv1d on dynamic int16 copies of the
 * float weights (vpdpwssd), and attention with Q·Kᵀ on int8 (vpdpbusd) and P·V on int16. */

/* int16 "weights" for vpdpwssd: [ceil(n/16)][kp/2][16][2], kp = k rounded up to 2, zero past n
 * and k; one float scale per column. The int32 sums of a SC_W16_KBLOCK block cannot overflow for
 * the two uses: attention (A = probabilities ≤ SC_P16_MAX, B = V in ±127) and the Conv1d copies
 * (A = activations and B = weights in ±SC_W16_WMAX: 1023·1023·1024 < 2^31). */
typedef struct sc_pack16 {
    int n, k, kp;
    int16_t *p;   /* [ceil(n/16)][kp/2][16][2] */
    float *scale; /* [ceil(n/16)*16] (0 past n) */
} sc_pack16;
#define SC_P16_MAX 16383  /* softmax probabilities as int16: rint(16383·exp(s − max)) */
#define SC_W16_KBLOCK 1024 /* k per int32 block: 16383·127·1024 < 2^31 */
#define SC_W16_WMAX 1023   /* Conv1d as int16: rint(x·1023/absmax), per output channel (weights) or per row */

/* A dynamic int16 copy of a float layer's packed weights (per output channel s = absmax/1023):
 * the layer stays a float parameter (quanto leaves Conv1d alone, so it is not counted as
 * quantized), and 11-bit weights keep its numbers close to the float reference. */
arb_status sc_pack16_from_packf(sc_pack16 *q, const sc_packf *f);
void sc_pack16_free(sc_pack16 *q);
/* C[M,N] (ldc) = A·Bᵀ + bias with A's rows quantized to int16 (quant_row16: per row absmax/1023)
 * times the int16 weights (vpdpwssd). Falls back to float on s·q without the AVX-512 tier. */
void sc_gemm_w16(int M, const float *A, size_t lda, const sc_pack16 *B, const float *bias, float *C, size_t ldc);

/* Attention-tier kernels (scalar reference in sc_kernels.c, AVX-512 in sc_kernels_avx512.c).
 * w16: C[m, n] = Σ_k A[m,k]·B[n,k] · (as[m]·scale[n]) for panels [nb0, nb1), int32 sums per
 *      SC_W16_KBLOCK block, each block's product added in float (flags: SC_EPI_ACCUM adds to C).
 *      A: [M][kp] int16 (probabilities in [0, SC_P16_MAX], or activations in ±SC_W16_WMAX).
 * softmax_q16: p[j] = rint(SC_P16_MAX·exp(scale·s[j] − max_j scale·s[j])) for j < n, 0 up to np;
 *      returns 1/Σp (the row's scale: Σ_j p_j·v_j/Σ p_j is the softmax-weighted average). */
typedef struct sc_att_tier {
    void (*w16)(int M, const int16_t *A, const float *as, const sc_pack16 *B, float *C, size_t ldc, int flags, int nb0,
                int nb1);
    float (*softmax_q16)(const float *s, int n, float scale, int16_t *p, int np);
    void (*pack_values)(sc_pack16 *p, const float *v, size_t ldv, int Tk, int dh); /* sc_pack_values_w16 */
    /* q[k] = rint(x[k]·1023/absmax) (int16), 0 for k in [K, Kp); returns absmax/1023 */
    float (*quant_row16)(const float *x, int K, int Kp, int16_t *q);
} sc_att_tier;
extern const sc_att_tier sc_att_scalar;
extern const sc_att_tier sc_att_avx512;
/* The AVX-512 tier when the CPU has AVX-512 VNNI, else NULL (callers keep the float convs and attention). */
const sc_att_tier *sc_att(void);
#define SC_ATT_Q8_MAXDH 512 /* head dims up to this take the int8 attention */

/* Packs K [Tk, dh] (ldk) as int8 "weights" of Q·Kᵀ after subtracting K's mean over keys
 * (softmax is unchanged by a per-query constant; the mean removes K's shared offset from the
 * int8 range): p->p/qsum/scale must hold ceil(Tk/16)·16 columns × kp = dh rounded up to 4. */
void sc_pack_keys_q8(sc_packq *p, const float *k, size_t ldk, int Tk, int dh);
/* Packs V [Tk, dh] (ldv) as int16 weights of P·V, per channel d: s = absmax/127. */
void sc_pack_values_w16(sc_pack16 *p, const float *v, size_t ldv, int Tk, int dh);

/* y = act(x)·Wᵀ + b for a layer whose input is an elementwise op's output (Moonshine's fc2 after
 * GELU): in the int8 mode each row goes through act in an L1 buffer and is quantized there (the
 * activated floats are never written back); other modes apply act to x in place and run the
 * layer. x [M, l->k] (lda) is clobbered. The same numbers as act over x, then sc_lin_forward. */
void sc_lin_forward_act(const sc_lin *l, sc_mode mode, int M, float *x, size_t lda, void (*act)(float *, size_t), float *y,
                        size_t ldc, int flags);

/* sc_attention with int8 Q·Kᵀ and int16 P·V (see sc_att_tier), threads over heads × query
 * chunks. Bidirectional only (no causal mask). Needs sc_att() != NULL. */
arb_status sc_attention_q8(int Tq, int Tk, int H, int dh, const float *q, size_t ldq, const float *k, size_t ldk,
                           const float *v, size_t ldv, float *o, size_t ldo, float scale);

#endif
