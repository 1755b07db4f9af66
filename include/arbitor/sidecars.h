/* arbitor/sidecars.h — frozen sidecar encoders in C: DINOv2 (images), Moonshine (audio),
 * AutoencoderKL (VAE), with optimum-quanto-style int8 weights, plus their preprocessing.
 *
 * Why in C: the ternary model consumes their features; a C forward pass removes the Python
 * dependency, runs int8 arithmetic (VNNI) and is checked number for number against
 * transformers/diffusers (tests/test_sidecar_*.c, ../shared/fixtures).
 *
 *   arb_sidecar *m;
 *   ARB_TRY(arb_sidecar_load(&m, "dinov2-small", ARB_SIDECAR_INT8));
 *   arb_tensor px, h, pool;                         // px: f32 [B,3,H,W]
 *   ARB_TRY(arb_dinov2_forward(m, &px, &h, &pool)); // h: [B,T,D], pool: [B,D] (callee allocates)
 *   arb_sidecar_free(m);
 *
 * Precisions:
 *   ARB_SIDECAR_FP32   float weights and arithmetic: the reference path (1e-4 rel L2 of transformers).
 *   ARB_SIDECAR_INT8   quanto int8 weights (per output channel absmax/127, round half to even) and
 *                      int8 activations (per row/token dynamic absmax), int32 accumulation (vpdpbusd);
 *                      within 2e-2 rel L2 of the weights-only int8 reference.
 *   ARB_SIDECAR_INT8W  the same int8 weights with float activations (quanto's weights-only numerics);
 *                      within 1e-3 of the int8w.* reference. Slower; for checking.
 * Only Linear and Conv2d weights are quantized (as optimum.quanto.quantize(weights=qint8) does);
 * Conv1d, norms, embeddings, tokens and biases stay float. Every parameter is frozen (no grads).
 */
#ifndef ARBITOR_SIDECARS_H
#define ARBITOR_SIDECARS_H

#include "arbitor/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum arb_sidecar_kind { ARB_SIDECAR_DINOV2 = 0, ARB_SIDECAR_MOONSHINE, ARB_SIDECAR_VAE } arb_sidecar_kind;
typedef enum arb_sidecar_precision {
    ARB_SIDECAR_FP32 = 0,
    ARB_SIDECAR_INT8 = 1,
    ARB_SIDECAR_INT8W = 2,
} arb_sidecar_precision;

typedef struct arb_sidecar arb_sidecar;

const char *arb_sidecar_kind_name(arb_sidecar_kind k); /* "dinov2", "moonshine", "vae" */

/* What was loaded: the audit's numbers. */
typedef struct arb_sidecar_info {
    arb_sidecar_kind kind;
    bool quantize_requested;  /* precision was INT8 or INT8W */
    bool quantized;           /* at least one layer holds int8 weights */
    bool quantized_int8;      /* ... as qint8 (the only scheme) */
    bool frozen;              /* always true: sidecars are inference-only */
    int n_linear_q;           /* Linear layers holding int8 weights */
    int n_conv2d_q;           /* Conv2d layers holding int8 weights */
    int n_linear, n_conv2d;   /* all Linear / Conv2d layers (quantized or not) */
    size_t n_tensors;         /* checkpoint tensors consumed */
    size_t n_params;          /* parameters (elements) */
    size_t float_tensors;     /* frozen parameters still in float */
    size_t float_bytes;       /* their fp32 bytes */
    size_t int8_bytes;        /* int8 weight bytes + their fp32 scales */
    /* config */
    int hidden, layers, heads;
} arb_sidecar_info;

/* Loads DIR/config.json and DIR/model.safetensors (or diffusers' diffusion_pytorch_model.safetensors).
 * The kind comes from config.json (model_type "dinov2" / "moonshine", or "_class_name"
 * "AutoencoderKL" / block_out_channels for the VAE). A missing, extra or mis-shaped tensor is a
 * one-line ARB_ERR_FORMAT/ARB_ERR_NOT_FOUND naming it. */
arb_status arb_sidecar_load(arb_sidecar **out, const char *dir, arb_sidecar_precision precision);
void arb_sidecar_free(arb_sidecar *m);
const arb_sidecar_info *arb_sidecar_info_get(const arb_sidecar *m);

/* Outputs are allocated by the callee (arb_tensor_init); free them with arb_tensor_free. */
/* pixel_values f32 [B,3,H,W] (H, W multiples of the patch size are not required: floor) →
 * last_hidden_state [B,1+hw,D], pooler_output [B,D] (may be NULL). */
arb_status arb_dinov2_forward(arb_sidecar *m, const arb_tensor *pixel_values, arb_tensor *last_hidden_state,
                              arb_tensor *pooler_output);
/* input_values f32 [B,N] (16 kHz mono) → encoder_last_hidden_state [B,T,D]. */
arb_status arb_moonshine_encode(arb_sidecar *m, const arb_tensor *input_values, arb_tensor *encoder_out);
/* encoder_out [B,T,D], decoder_input_ids i64 [B,L] → logits [B,L,vocab]. */
arb_status arb_moonshine_logits(arb_sidecar *m, const arb_tensor *encoder_out, const arb_tensor *decoder_input_ids,
                                arb_tensor *logits);
/* sample f32 [B,3,H,W] in [-1,1], H and W multiples of 2^(blocks-1) → latent mean, logvar [B,L,h,w]
 * (logvar clamped to [-30,20]; either output may be NULL). */
arb_status arb_vae_encode(arb_sidecar *m, const arb_tensor *sample, arb_tensor *latent_mean, arb_tensor *latent_logvar);
/* latents [B,L,h,w] (unscaled, as vae.decode takes them) → decoded [B,3,H,W]. */
arb_status arb_vae_decode(arb_sidecar *m, const arb_tensor *latents, arb_tensor *decoded);
/* config's scaling_factor and shift_factor (0 if absent). */
void arb_vae_scaling(const arb_sidecar *m, float *scaling_factor, float *shift_factor);

/* ---------------------------------------------------------------- devices
 *
 * arb_sidecar_to_device(m, arb_cuda(0)) builds a device-resident int8 copy of an INT8 model (the
 * same quanto weights and scales, uploaded once) and arb_sidecar_forward then runs the model's
 * main forward there: int8 GEMMs on tensor cores (cuBLASLt IMMA, int32 accumulation), int8
 * activations per row with the CPU path's rule, float norms/activations/attention in fused
 * kernels, the whole forward replayed as one CUDA graph per input shape. On the device:
 * DINOv2 (pixel_values → last_hidden_state, pooler_output), the Moonshine encoder
 * (input_values → encoder_last_hidden_state) and the VAE decoder (latents → decoded). The
 * per-model functions above (arb_dinov2_forward, arb_moonshine_logits, arb_vae_encode, ...)
 * always run the CPU path.
 * ARB_ERR_UNSUPPORTED in a build without CUDA or on a machine without a device.
 * arb_sidecar_to_device(m, arb_cpu()) drops the device copy. */
arb_status arb_sidecar_to_device(arb_sidecar *m, arb_device dev);
arb_device arb_sidecar_device(const arb_sidecar *m);
/* The model's main forward on its device. `in` may be on the CPU or on the model's CUDA device;
 * outputs are allocated on the device `in` is on. DINOv2: out = last_hidden_state, out2 =
 * pooler_output (may be NULL); Moonshine: out = encoder_last_hidden_state (out2 unused);
 * VAE: in = latents, out = decoded. */
arb_status arb_sidecar_forward(arb_sidecar *m, const arb_tensor *in, arb_tensor *out, arb_tensor *out2);
/* The device's measured int8 tensor-core rate (a large cuBLASLt int8 GEMM, best of a few runs
 * over about `seconds`), int8 ops/s; the GPU benchmark's "% of peak" denominator. */
arb_status arb_sidecar_int8_peak_device(arb_device dev, double seconds, double *ops_per_s);

/* ---------------------------------------------------------------- preprocessing */

/* Decodes PNG or JPEG bytes to 8-bit RGB HWC (gray replicated, alpha dropped as PIL's convert("RGB")).
 * *rgb is arb_alloc'ed. A build without libpng/libjpeg: ARB_ERR_UNSUPPORTED. */
arb_status arb_image_decode(const void *buf, size_t len, uint8_t **rgb, int *width, int *height);
arb_status arb_image_load(const char *path, uint8_t **rgb, int *width, int *height);
/* Writes 8-bit RGB HWC as PNG atomically (temp + rename). */
arb_status arb_image_save_png(const char *path, const uint8_t *rgb, int width, int height);
/* PIL Image.resize(..., BICUBIC) on 8-bit interleaved pixels (c channels), bit for bit: antialiased
 * separable filter, 22-bit fixed-point coefficients, horizontal pass then vertical. */
arb_status arb_image_resize_bicubic(const uint8_t *src, int w, int h, int c, uint8_t *dst, int ow, int oh);
/* BitImageProcessor (DINOv2): shortest edge → 256 (bicubic), center crop 224, /255, ImageNet
 * mean/std → pixel_values f32 [1,3,224,224]. */
arb_status arb_image_preprocess_dinov2(const uint8_t *rgb, int width, int height, arb_tensor *pixel_values);

/* Decodes WAV/FLAC/OGG bytes, downmixes to mono (channel mean) and resamples to `rate` Hz
 * (libsamplerate, best sinc). *samples is arb_alloc'ed. Without libsndfile: ARB_ERR_UNSUPPORTED. */
arb_status arb_audio_decode(const void *buf, size_t len, int rate, float **samples, size_t *n);
arb_status arb_audio_load(const char *path, int rate, float **samples, size_t *n);
/* Mono float resampling (libsamplerate SRC_SINC_BEST_QUALITY); exposed for tests. */
arb_status arb_audio_resample(const float *in, size_t n, int in_rate, int out_rate, float **out, size_t *out_n);

/* ---------------------------------------------------------------- synthetic checkpoints */

/* Writes DIR/config.json + DIR/model.safetensors (diffusion_pytorch_model.safetensors for the VAE)
 * with the real full-size configs and tensor names (spec/sidecar-tensors.json) and random
 * weights drawn from `seed` (scaled like the models' initializers so activations stay sane). */
arb_status arb_sidecar_synth(arb_sidecar_kind kind, const char *dir, uint64_t seed);

/* The int8 GEMM peak: runs a register-only vpdpbusd loop on every thread for about `seconds`
 * and returns int8 ops/s (2 per multiply-add). 0 when the CPU lacks AVX-512 VNNI. */
double arb_sidecar_int8_peak(double seconds);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_SIDECARS_H */
