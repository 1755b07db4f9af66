/* Moonshine (transformers MoonshineModel / MoonshineForConditionalGeneration): the conv front-end
 * (conv1 k127 s64 + tanh, GroupNorm(1), conv2 k7 s3 + GELU, conv3 k3 s2 + GELU), the encoder
 * (pre-norm, partial interleaved RoPE, bidirectional MHA, GELU MLP), and the decoder for logits
 * (causal self-attention with RoPE, cross-attention, gated SiLU MLP, tied output projection).
 *
 * Why no im2col for the convs: in time-major layout [L, C] a stride-s, width-k conv window is
 * k·C contiguous floats starting at row t·s, so the GEMM reads the activations in place with
 * lda = s·C (weights were reordered to (kx, c) at load).
 *
 * INT8 mode (activations quantized, the 2e-2 tier): the Conv1d weights stay float parameters
 * (quanto leaves nn.Conv1d alone, so they are not counted as quantized) but are computed from a
 * dynamic int8 copy made at load, and the attention products run on int8/int16 (sc_attention_q8):
 * they were a third of the work at the fp32 FMA rate, a quarter of the int8 rate on this class of
 * CPU. FP32 and INT8W keep the float convs and attention. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecars/sc_models.h"



void sc_moonshine_free(sc_moonshine *d) {
    if (!d) return;
    sc_lin_free(&d->conv1), sc_lin_free(&d->conv2), sc_lin_free(&d->conv3);
    for (int i = 0; i < 3; i++) sc_pack16_free(&d->conv_w[i]);
    arb_free(d->gn_w), arb_free(d->gn_b), arb_free(d->enc_ln), arb_free(d->embed), arb_free(d->dec_norm);
    sc_packf_free(&d->proj);
    if (d->enc)
        for (int i = 0; i < d->cfg.Le; i++) {
            moon_enc_layer *l = &d->enc[i];
            arb_free(l->ln_in), arb_free(l->ln_post);
            sc_lin_free(&l->qkv), sc_lin_free(&l->o);
            sc_lin_free(&l->fc1), sc_lin_free(&l->fc2);
        }
    if (d->dec)
        for (int i = 0; i < d->cfg.Ld; i++) {
            moon_dec_layer *l = &d->dec[i];
            arb_free(l->ln_in), arb_free(l->ln_post), arb_free(l->ln_final);
            sc_lin_free(&l->sq), sc_lin_free(&l->sk), sc_lin_free(&l->sv), sc_lin_free(&l->so);
            sc_lin_free(&l->cq), sc_lin_free(&l->ck), sc_lin_free(&l->cv), sc_lin_free(&l->co);
            sc_lin_free(&l->fc1), sc_lin_free(&l->fc2);
        }
    free(d->enc);
    free(d->dec);
    free(d);
}

static arb_status check_act(const cJSON *cfg, const char *key, const char *want) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (a && (!cJSON_IsString(a) || strcmp(a->valuestring, want)))
        return arb_error(ARB_ERR_UNSUPPORTED, "config.json: %s must be \"%s\"", key, want);
    return ARB_OK;
}

/* config.json → the validated configuration (the one parse: the CUDA upload reads it too). */
static arb_status moon_config(const cJSON *cfg, sc_moonshine_cfg *o) {
    int D, I, Le, Ld, He, Hd, kvE, kvD, vocab;
    double prf = 0.9, theta = 10000.0;
    ARB_TRY(sc_cfg_int(cfg, "hidden_size", 1, 65536, 0, true, &D));
    ARB_TRY(sc_cfg_int(cfg, "intermediate_size", 1, 1 << 20, 0, true, &I));
    ARB_TRY(sc_cfg_int(cfg, "encoder_num_hidden_layers", 1, 1024, 0, true, &Le));
    ARB_TRY(sc_cfg_int(cfg, "decoder_num_hidden_layers", 1, 1024, 0, true, &Ld));
    ARB_TRY(sc_cfg_int(cfg, "encoder_num_attention_heads", 1, 4096, 0, true, &He));
    ARB_TRY(sc_cfg_int(cfg, "decoder_num_attention_heads", 1, 4096, 0, true, &Hd));
    ARB_TRY(sc_cfg_int(cfg, "encoder_num_key_value_heads", 1, 4096, He, false, &kvE));
    ARB_TRY(sc_cfg_int(cfg, "decoder_num_key_value_heads", 1, 4096, Hd, false, &kvD));
    ARB_TRY(sc_cfg_int(cfg, "vocab_size", 1, 1 << 24, 0, true, &vocab));
    ARB_TRY(check_act(cfg, "encoder_hidden_act", "gelu"));
    ARB_TRY(check_act(cfg, "decoder_hidden_act", "silu"));
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    const cJSON *src = cJSON_IsObject(rp) ? rp : cfg;
    ARB_TRY(sc_cfg_num(src, "partial_rotary_factor", 0.9, false, &prf));
    ARB_TRY(sc_cfg_num(src, "rope_theta", 10000.0, false, &theta));
    if (src == rp) { /* older configs keep them at top level */
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (rt && (!cJSON_IsString(rt) || strcmp(rt->valuestring, "default")))
            return arb_error(ARB_ERR_UNSUPPORTED, "config.json: rope_type must be \"default\"");
    }
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "attention_bias");
    if (cJSON_IsTrue(ab)) return arb_error(ARB_ERR_UNSUPPORTED, "config.json: attention_bias=true is not supported");
    if (D % He || D % Hd) return arb_error(ARB_ERR_FORMAT, "config.json: hidden_size %d not divisible by the head counts", D);
    if (kvE != He || kvD != Hd) return arb_error(ARB_ERR_UNSUPPORTED, "config.json: grouped-query attention is not supported");
    if (!(prf > 0 && prf <= 1) || !(theta > 1)) return arb_error(ARB_ERR_FORMAT, "config.json: bad rotary parameters");
    int dh = D / He, rdim = (int)(dh * prf), rot = 2 * ((rdim + 1) / 2); /* arange(0, rdim, 2) frequencies, each used for a pair */
    if (rot > dh || rot > 512 || rdim < 1) return arb_error(ARB_ERR_UNSUPPORTED, "config.json: rotary dim %d for head dim %d", rdim, dh);
    o->D = D, o->I = I, o->Le = Le, o->Ld = Ld, o->He = He, o->Hd = Hd, o->vocab = vocab, o->theta = (float)theta;
    o->rdim = rdim, o->rot = rot;
    return ARB_OK;
}

arb_status sc_moonshine_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg) {
    sc_moonshine_cfg k;
    ARB_TRY(moon_config(cfg, &k));
    const int D = k.D, I = k.I, Le = k.Le, Ld = k.Ld, He = k.He, vocab = k.vocab;
    sc_moonshine *d = (sc_moonshine *)calloc(1, sizeof *d);
    if (!d) return arb_error(ARB_ERR_OOM, "moonshine: out of memory");
    m->moon = d;
    d->cfg = k;
    arb_sidecar_info *info = &m->info;
    info->hidden = D, info->layers = Le, info->heads = He;
    sc_mode mode = m->mode;
    /* MoonshineForConditionalGeneration nests everything under "model."; MoonshineModel does not. */
    c->prefix = sc_ckpt_has(c, "model.encoder.conv1.weight") ? "model." : "";
    int64_t vD[1] = {D};
    ARB_TRY(sc_conv1d_load(&d->conv1, c, "encoder.conv1", D, 1, 127, false, info));
    ARB_TRY(sc_conv1d_load(&d->conv2, c, "encoder.conv2", 2 * D, D, 7, true, info));
    ARB_TRY(sc_conv1d_load(&d->conv3, c, "encoder.conv3", D, 2 * D, 3, true, info));
    if (mode == SC_INT8 && sc_att()) {
        ARB_TRY(sc_pack16_from_packf(&d->conv_w[0], &d->conv1.f));
        ARB_TRY(sc_pack16_from_packf(&d->conv_w[1], &d->conv2.f));
        ARB_TRY(sc_pack16_from_packf(&d->conv_w[2], &d->conv3.f));
    }
    ARB_TRY(sc_vec_load(&d->gn_w, c, "encoder.groupnorm.weight", 1, vD, info));
    ARB_TRY(sc_vec_load(&d->gn_b, c, "encoder.groupnorm.bias", 1, vD, info));
    d->enc = (moon_enc_layer *)calloc((size_t)Le, sizeof *d->enc);
    d->dec = (moon_dec_layer *)calloc((size_t)Ld, sizeof *d->dec);
    if (!d->enc || !d->dec) return arb_error(ARB_ERR_OOM, "moonshine: out of memory");
    char n[256];
#define V(field, fmt)                                        \
    snprintf(n, sizeof n, fmt, i);                           \
    ARB_TRY(sc_vec_load(&l->field, c, n, 1, vD, info));
#define LIN(field, fmt, no, ni, bias)                        \
    snprintf(n, sizeof n, fmt, i);                           \
    ARB_TRY(sc_lin_load(&l->field, c, n, no, ni, bias, mode, info));
    for (int i = 0; i < Le; i++) {
        moon_enc_layer *l = &d->enc[i];
        V(ln_in, "encoder.layers.%d.input_layernorm.weight") V(ln_post, "encoder.layers.%d.post_attention_layernorm.weight")
        static const char *const qkv_names[3] = {"q_proj", "k_proj", "v_proj"};
        snprintf(n, sizeof n, "encoder.layers.%d.self_attn.", i);
        ARB_TRY(sc_lin_load_cat(&l->qkv, c, n, qkv_names, 3, D, D, false, mode, info));
        LIN(o, "encoder.layers.%d.self_attn.o_proj", D, D, false)
        LIN(fc1, "encoder.layers.%d.mlp.fc1", I, D, true) LIN(fc2, "encoder.layers.%d.mlp.fc2", D, I, true)
    }
    ARB_TRY(sc_vec_load(&d->enc_ln, c, "encoder.layer_norm.weight", 1, vD, info));
    ARB_TRY(sc_vec_load(&d->embed, c, "decoder.embed_tokens.weight", 2, (int64_t[]){vocab, D}, info));
    for (int i = 0; i < Ld; i++) {
        moon_dec_layer *l = &d->dec[i];
        V(ln_in, "decoder.layers.%d.input_layernorm.weight") V(ln_post, "decoder.layers.%d.post_attention_layernorm.weight")
        V(ln_final, "decoder.layers.%d.final_layernorm.weight")
        LIN(sq, "decoder.layers.%d.self_attn.q_proj", D, D, false) LIN(sk, "decoder.layers.%d.self_attn.k_proj", D, D, false)
        LIN(sv, "decoder.layers.%d.self_attn.v_proj", D, D, false) LIN(so, "decoder.layers.%d.self_attn.o_proj", D, D, false)
        LIN(cq, "decoder.layers.%d.encoder_attn.q_proj", D, D, false) LIN(ck, "decoder.layers.%d.encoder_attn.k_proj", D, D, false)
        LIN(cv, "decoder.layers.%d.encoder_attn.v_proj", D, D, false) LIN(co, "decoder.layers.%d.encoder_attn.o_proj", D, D, false)
        LIN(fc1, "decoder.layers.%d.mlp.fc1", 2 * I, D, true) LIN(fc2, "decoder.layers.%d.mlp.fc2", D, I, true)
    }
#undef V
#undef LIN
    ARB_TRY(sc_vec_load(&d->dec_norm, c, "decoder.norm.weight", 1, vD, info));
    /* proj_out is tied to embed_tokens: not stored by MoonshineModel, stored (equal) by some saves. */
    const char *saved = c->prefix;
    c->prefix = "";
    if (sc_ckpt_has(c, "proj_out.weight")) {
        float *pw;
        ARB_TRY(sc_ckpt_get(c, "proj_out.weight", 2, (int64_t[]){vocab, D}, &pw));
        arb_free(pw);
    }
    c->prefix = saved;
    return sc_packf_init(&d->proj, d->embed, vocab, D);
}

/* Interleaved partial RoPE on x [T, H·dh] (ld) for positions 0..T-1. */
static void rope_apply(const sc_moonshine *d, float *x, size_t ld, int T, int H, int dh) {
    int nf = d->cfg.rot / 2;
    float inv[256];
    for (int j = 0; j < nf && j < 256; j++) inv[j] = 1.f / powf(d->cfg.theta, (float)(2 * j) / (float)d->cfg.rdim);
    for (int t = 0; t < T; t++) {
        float cs[256], sn[256];
        for (int j = 0; j < nf && j < 256; j++) {
            float a = (float)t * inv[j];
            cs[j] = cosf(a);
            sn[j] = sinf(a);
        }
        for (int h = 0; h < H; h++) {
            float *r = x + (size_t)t * ld + (size_t)h * dh;
            for (int j = 0; j < nf && j < 256; j++) {
                float a = r[2 * j], b = r[2 * j + 1];
                r[2 * j] = a * cs[j] - b * sn[j];
                r[2 * j + 1] = b * cs[j] + a * sn[j];
            }
        }
    }
}

/* rope_apply with the angles' cos/sin computed once per forward (cs, sn: [T][nf]) instead of per
 * layer, head block and batch item: the same cosf/sinf values, so the same numbers. */
static void rope_table(const sc_moonshine *d, int T, float *cs, float *sn) {
    int nf = d->cfg.rot / 2 < 256 ? d->cfg.rot / 2 : 256;
    float inv[256];
    for (int j = 0; j < nf; j++) inv[j] = 1.f / powf(d->cfg.theta, (float)(2 * j) / (float)d->cfg.rdim);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < nf; j++) {
            float a = (float)t * inv[j];
            cs[(size_t)t * nf + j] = cosf(a);
            sn[(size_t)t * nf + j] = sinf(a);
        }
}

/* q and k (both [T, H·dh], ld) rotated in one threaded pass. */
static void rope_apply_tab(const sc_moonshine *d, float *q, float *k, size_t ld, int T, int H, int dh, const float *cs,
                           const float *sn) {
    int nf = d->cfg.rot / 2 < 256 ? d->cfg.rot / 2 : 256;
#pragma omp parallel for schedule(static) if ((size_t)T * H * nf > 16384 && !omp_in_parallel())
    for (int t = 0; t < T; t++)
        for (int h = 0; h < 2 * H; h++) {
            float *r = (h < H ? q : k) + (size_t)t * ld + (size_t)(h % H) * dh;
            const float *c = cs + (size_t)t * nf, *s = sn + (size_t)t * nf;
            for (int j = 0; j < nf; j++) {
                float a = r[2 * j], b = r[2 * j + 1];
                r[2 * j] = a * c[j] - b * s[j];
                r[2 * j + 1] = b * c[j] + a * s[j];
            }
        }
}

#define GROUP_ROWS 1024 /* encoder frames per item group (docs/PERFORMANCE.md, session 3 — Moonshine CPU) */

/* An elementwise op over n floats, in 16K-float chunks across the threads (same numbers for any
 * thread count): single-threaded, the front-end's tanh and GELUs left a core idle. */
static void par_map(void (*fn)(float *, size_t), float *x, size_t n) {
    const size_t ch = 16384;
    long nch = (long)((n + ch - 1) / ch);
#pragma omp parallel for schedule(static) if (nch > 1 && !omp_in_parallel())
    for (long c = 0; c < nch; c++) fn(x + (size_t)c * ch, n - (size_t)c * ch < ch ? n - (size_t)c * ch : ch);
}

/* The encoder's activation buffers: one grow-only block per thread, kept between forwards (fresh
 * multi-MB buffers per call cost the kernel zeroing their pages every time) unless it grew past
 * WS_KEEP floats (a long recording's front-end: not worth holding). Carves 9 buffers of
 * cnt[i][0]·cnt[i][1] floats, each 64-byte aligned; false when the sizes overflow or memory is out. */
static _Thread_local struct { float *p; size_t cap; } g_ws;
#define WS_KEEP ((size_t)16 << 20) /* 64 MB; 10 s of audio in groups of GROUP_ROWS frames needs ~17 MB */

static void enc_workspace_trim(void) {
    if (g_ws.cap > WS_KEEP) {
        arb_free(g_ws.p);
        g_ws.p = NULL, g_ws.cap = 0;
    }
}

static bool enc_workspace(const size_t cnt[9][2], float *buf[9]) {
    size_t off[9], total = 0;
    for (int i = 0; i < 9; i++) {
        size_t n;
        if (!arb_mul_size(cnt[i][0], cnt[i][1], &n) || !arb_add_size(n, 15, &n)) return false;
        off[i] = total;
        if (!arb_add_size(total, n & ~(size_t)15, &total)) return false;
    }
    if (g_ws.cap < total) {
        size_t bytes;
        if (!arb_mul_size(total, sizeof(float), &bytes)) return false;
        arb_free(g_ws.p);
        g_ws.p = (float *)arb_alloc(bytes);
        g_ws.cap = g_ws.p ? total : 0;
        if (!g_ws.p) return false;
    }
    for (int i = 0; i < 9; i++) buf[i] = g_ws.p + off[i];
    return true;
}

/* A Conv1d as its GEMM: int16 weights (the dynamic copy) × int8-quantized rows in INT8 mode, float otherwise. */
static void conv_forward(const sc_moonshine *d, sc_mode mode, int i, int M, const float *x, size_t lda, float *y,
                         size_t ldc) {
    const sc_lin *l = i == 0 ? &d->conv1 : i == 1 ? &d->conv2 : &d->conv3;
    if (mode == SC_INT8 && d->conv_w[i].p) sc_gemm_w16(M, x, lda, &d->conv_w[i], l->bias, y, ldc);
    else sc_lin_forward(l, mode, M, x, lda, y, ldc, 0);
}

arb_status arb_moonshine_encode(arb_sidecar *m, const arb_tensor *in, arb_tensor *out) {
    if (!m || !in || !out) return arb_error(ARB_ERR_INVALID_ARG, "arb_moonshine_encode: NULL argument");
    if (m->kind != ARB_SIDECAR_MOONSHINE || !m->moon) return arb_error(ARB_ERR_INVALID_ARG, "arb_moonshine_encode: not a Moonshine model");
    sc_moonshine *d = m->moon;
    if (in->dtype != ARB_F32 || in->ndim != 2 || in->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_SHAPE, "moonshine: input_values must be f32 [B,N] on the CPU");
    int64_t B = in->shape[0], N = in->shape[1];
    if (B < 1 || B > 4096 || N > 16000LL * 3600)
        return arb_error(ARB_ERR_SHAPE, "moonshine: input_values [%lld,%lld] out of range", (long long)B, (long long)N);
    int64_t L1 = N >= 127 ? (N - 127) / 64 + 1 : 0, L2 = L1 >= 7 ? (L1 - 7) / 3 + 1 : 0, T = L2 >= 3 ? (L2 - 3) / 2 + 1 : 0;
    if (T < 1)
        return arb_error(ARB_ERR_SHAPE, "moonshine: %lld samples are too short (need at least 1087, ~68 ms at 16 kHz)",
                         (long long)N);
    int D = d->cfg.D, I = d->cfg.I, H = d->cfg.He, dh = D / H;
    /* Items go through the encoder in groups of about GROUP_ROWS frames: every op but attention is
     * per row and attention is per item, so the numbers are the same as one pass over all rows,
     * while the buffers stay cache-sized and are reused (at batch 32 a single pass touched ~250 MB
     * of fresh pages per forward: page zeroing and DRAM traffic made it 1.7× slower per item). */
    const int64_t G = T >= GROUP_ROWS ? 1 : (GROUP_ROWS / T < B ? GROUP_ROWS / T : B);
    const size_t grows = (size_t)G * T;
    /* h1 [L1,D], h2 [L2,2D], x/hb/a [grows,D], qkv [grows,3D], f [grows,I], rc/rs [T,256] */
    const size_t cnt[9][2] = {{(size_t)L1, (size_t)D}, {(size_t)L2, 2 * (size_t)D}, {grows, (size_t)D}, {grows, (size_t)D},
                              {grows, 3 * (size_t)D},  {grows, (size_t)D},          {grows, (size_t)I}, {(size_t)T, 256},
                              {(size_t)T, 256}};
    float *buf[9];
    arb_status st = ARB_OK;
    const sc_ops_tier *ops = sc_ops();
    if (!enc_workspace(cnt, buf)) {
        st = arb_error(ARB_ERR_OOM, "moonshine: out of memory for %lld×%lld samples", (long long)B, (long long)N);
        return st;
    }
    float *h1 = buf[0], *h2 = buf[1], *x = buf[2], *hb = buf[3], *qkv = buf[4], *a = buf[5], *f = buf[6], *rc = buf[7],
          *rs = buf[8];
    if ((st = arb_tensor_init(out, ARB_F32, 3, (int64_t[]){B, T, D}, arb_cpu()))) {
        enc_workspace_trim();
        return st;
    }
    float scale = 1.f / sqrtf((float)dh);
    const bool att8 = m->mode == SC_INT8 && sc_att() && dh <= SC_ATT_Q8_MAXDH;
    rope_table(d, (int)T, rc, rs);
    const size_t l3 = 3 * (size_t)D;
    for (int64_t b0 = 0; b0 < B; b0 += G) {
        const int64_t nb = B - b0 < G ? B - b0 : G;
        const size_t rows = (size_t)nb * T;
        for (int64_t b = 0; b < nb; b++) {
            const float *w = (const float *)in->data + (size_t)(b0 + b) * N;
            conv_forward(d, m->mode, 0, (int)L1, w, 64, h1, (size_t)D);
            par_map(ops->tanh_, h1, (size_t)L1 * D);
            if ((st = sc_groupnorm_nhwc(h1, h1, (size_t)L1, D, 1, d->gn_w, d->gn_b, 1e-5f, false))) goto fail;
            conv_forward(d, m->mode, 1, (int)L2, h1, (size_t)3 * D, h2, (size_t)2 * D);
            par_map(ops->gelu, h2, (size_t)L2 * 2 * D);
            float *xb = x + (size_t)b * T * D;
            conv_forward(d, m->mode, 2, (int)T, h2, (size_t)4 * D, xb, (size_t)D);
            par_map(ops->gelu, xb, (size_t)T * D);
        }
        for (int li = 0; li < d->cfg.Le; li++) {
            moon_enc_layer *l = &d->enc[li];
            sc_lin_forward_ln(&l->qkv, m->mode, (int)rows, x, l->ln_in, NULL, 1e-5f, hb, qkv, l3, 0);
            for (int64_t b = 0; b < nb && !st; b++) {
                float *qb = qkv + (size_t)b * T * l3;
                rope_apply_tab(d, qb, qb + D, l3, (int)T, H, dh, rc, rs);
                if (att8)
                    st = sc_attention_q8((int)T, (int)T, H, dh, qb, l3, qb + D, l3, qb + 2 * D, l3, a + (size_t)b * T * D, D,
                                         scale);
                else
                    st = sc_attention((int)T, (int)T, H, dh, qb, l3, qb + D, l3, qb + 2 * D, l3, a + (size_t)b * T * D, D,
                                      scale, false);
            }
            if (st) goto fail;
            sc_lin_forward(&l->o, m->mode, (int)rows, a, D, x, D, SC_EPI_ACCUM);
            sc_lin_forward_ln(&l->fc1, m->mode, (int)rows, x, l->ln_post, NULL, 1e-5f, hb, f, I, 0);
            sc_lin_forward_act(&l->fc2, m->mode, (int)rows, f, I, ops->gelu, x, D, SC_EPI_ACCUM);
        }
        sc_layernorm(x, (float *)out->data + (size_t)b0 * T * D, (int)rows, D, d->enc_ln, NULL, 1e-5f);
    }
    enc_workspace_trim();
    return ARB_OK;
fail:
    enc_workspace_trim();
    arb_tensor_free(out);
    return st;
}

arb_status arb_moonshine_logits(arb_sidecar *m, const arb_tensor *enc, const arb_tensor *ids, arb_tensor *logits) {
    if (!m || !enc || !ids || !logits) return arb_error(ARB_ERR_INVALID_ARG, "arb_moonshine_logits: NULL argument");
    if (m->kind != ARB_SIDECAR_MOONSHINE || !m->moon) return arb_error(ARB_ERR_INVALID_ARG, "arb_moonshine_logits: not a Moonshine model");
    sc_moonshine *d = m->moon;
    int D = d->cfg.D, I = d->cfg.I, H = d->cfg.Hd, dh = D / H;
    if (enc->dtype != ARB_F32 || enc->ndim != 3 || enc->shape[2] != D || enc->shape[1] < 1)
        return arb_error(ARB_ERR_SHAPE, "moonshine: encoder output must be f32 [B,T,%d]", D);
    if (ids->dtype != ARB_I64 || ids->ndim != 2 || ids->shape[0] != enc->shape[0] || ids->shape[1] < 1 || ids->shape[1] > 65536)
        return arb_error(ARB_ERR_SHAPE, "moonshine: decoder_input_ids must be i64 [B,L] with the encoder's B");
    int64_t B = ids->shape[0], Lt = ids->shape[1], T = enc->shape[1];
    const int64_t *tok = (const int64_t *)ids->data;
    for (int64_t i = 0; i < B * Lt; i++)
        if (tok[i] < 0 || tok[i] >= d->cfg.vocab)
            return arb_error(ARB_ERR_INVALID_ARG, "moonshine: token id %lld at %lld outside the vocabulary [0,%d)",
                             (long long)tok[i], (long long)i, d->cfg.vocab);
    size_t rows = (size_t)B * Lt, erows = (size_t)B * T;
    float *x = sc_falloc(rows, (size_t)D, 1), *hb = sc_falloc(rows, (size_t)D, 1), *q = sc_falloc(rows, (size_t)D, 1);
    float *k = sc_falloc(erows > rows ? erows : rows, (size_t)D, 1), *v = sc_falloc(erows > rows ? erows : rows, (size_t)D, 1);
    float *a = sc_falloc(rows, (size_t)D, 1), *f = sc_falloc(rows, 2 * (size_t)I, 1), *g = sc_falloc(rows, (size_t)I, 1);
    arb_status st = ARB_OK;
    if (!x || !hb || !q || !k || !v || !a || !f || !g) {
        st = arb_error(ARB_ERR_OOM, "moonshine: out of memory for the decoder");
        goto done;
    }
    for (size_t i = 0; i < rows; i++) memcpy(x + i * D, d->embed + (size_t)tok[i] * D, (size_t)D * sizeof(float));
    float scale = 1.f / sqrtf((float)dh);
    const float *e = (const float *)enc->data;
    for (int li = 0; li < d->cfg.Ld; li++) {
        moon_dec_layer *l = &d->dec[li];
        sc_layernorm(x, hb, (int)rows, D, l->ln_in, NULL, 1e-5f);
        sc_lin_forward(&l->sq, m->mode, (int)rows, hb, D, q, D, 0);
        sc_lin_forward(&l->sk, m->mode, (int)rows, hb, D, k, D, 0);
        sc_lin_forward(&l->sv, m->mode, (int)rows, hb, D, v, D, 0);
        for (int64_t b = 0; b < B && !st; b++) {
            size_t o = (size_t)b * Lt * D;
            rope_apply(d, q + o, D, (int)Lt, H, dh);
            rope_apply(d, k + o, D, (int)Lt, H, dh);
            st = sc_attention((int)Lt, (int)Lt, H, dh, q + o, D, k + o, D, v + o, D, a + o, D, scale, true);
        }
        if (st) goto done;
        sc_lin_forward(&l->so, m->mode, (int)rows, a, D, x, D, SC_EPI_ACCUM);
        sc_layernorm(x, hb, (int)rows, D, l->ln_post, NULL, 1e-5f);
        sc_lin_forward(&l->cq, m->mode, (int)rows, hb, D, q, D, 0);
        sc_lin_forward(&l->ck, m->mode, (int)erows, e, D, k, D, 0);
        sc_lin_forward(&l->cv, m->mode, (int)erows, e, D, v, D, 0);
        for (int64_t b = 0; b < B && !st; b++)
            st = sc_attention((int)Lt, (int)T, H, dh, q + (size_t)b * Lt * D, D, k + (size_t)b * T * D, D,
                              v + (size_t)b * T * D, D, a + (size_t)b * Lt * D, D, scale, false);
        if (st) goto done;
        sc_lin_forward(&l->co, m->mode, (int)rows, a, D, x, D, SC_EPI_ACCUM);
        sc_layernorm(x, hb, (int)rows, D, l->ln_final, NULL, 1e-5f);
        sc_lin_forward(&l->fc1, m->mode, (int)rows, hb, D, f, 2 * (size_t)I, 0);
        for (size_t i = 0; i < rows; i++) { /* [hidden | gate] → silu(gate)·hidden */
            float *gate = f + i * 2 * I + I;
            sc_ops()->silu(gate, (size_t)I);
            for (int j = 0; j < I; j++) g[i * I + j] = gate[j] * f[i * 2 * I + j];
        }
        sc_lin_forward(&l->fc2, m->mode, (int)rows, g, I, x, D, SC_EPI_ACCUM);
    }
    sc_layernorm(x, hb, (int)rows, D, d->dec_norm, NULL, 1e-5f);
    st = arb_tensor_init(logits, ARB_F32, 3, (int64_t[]){B, Lt, d->cfg.vocab}, arb_cpu());
    if (!st) sc_gemm_f32_packed((int)rows, hb, D, &d->proj, NULL, (float *)logits->data, (size_t)d->cfg.vocab, 0);
done:
    arb_free(x), arb_free(hb), arb_free(q), arb_free(k), arb_free(v), arb_free(a), arb_free(f), arb_free(g);
    return st;
}
