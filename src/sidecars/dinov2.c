/* DINOv2 (transformers Dinov2Model) forward pass: patch conv, CLS + bicubic-interpolated position
 * embeddings, pre-norm ViT layers with LayerScale, final LayerNorm.
 *
 * Why the interpolation is spelled out: the standard 224 crop gives a 16×16 grid from the 37×37
 * pretrained one, so every real call resizes the position table. It must be PyTorch's bicubic
 * (A = -0.75, align_corners=False, size=(h,w), border taps clamped, fp32), as transformers 5.x calls it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecars/sc_models.h"


void sc_dinov2_free(sc_dinov2 *d) {
    if (!d) return;
    sc_lin_free(&d->patch);
    arb_free(d->cls);
    arb_free(d->pos);
    if (d->layers)
        for (int i = 0; i < d->cfg.L; i++) {
            dino_layer *l = &d->layers[i];
            arb_free(l->n1w), arb_free(l->n1b), arb_free(l->n2w), arb_free(l->n2b), arb_free(l->ls1), arb_free(l->ls2);
            sc_lin_free(&l->qkv), sc_lin_free(&l->o);
            sc_lin_free(&l->fc1), sc_lin_free(&l->fc2);
        }
    free(d->layers);
    arb_free(d->lnw);
    arb_free(d->lnb);
    free(d);
}

/* config.json → the validated configuration (the one parse: the CUDA upload reads it too). */
static arb_status dino_config(const cJSON *cfg, sc_dinov2_cfg *o) {
    int D, L, H, P, img, mlp_ratio, ch;
    double eps;
    ARB_TRY(sc_cfg_int(cfg, "hidden_size", 1, 65536, 0, true, &D));
    ARB_TRY(sc_cfg_int(cfg, "num_hidden_layers", 1, 1024, 0, true, &L));
    ARB_TRY(sc_cfg_int(cfg, "num_attention_heads", 1, 4096, 0, true, &H));
    ARB_TRY(sc_cfg_int(cfg, "patch_size", 1, 1024, 14, false, &P));
    ARB_TRY(sc_cfg_int(cfg, "image_size", 1, 65536, 518, false, &img));
    ARB_TRY(sc_cfg_int(cfg, "mlp_ratio", 1, 64, 4, false, &mlp_ratio));
    ARB_TRY(sc_cfg_int(cfg, "num_channels", 3, 3, 3, false, &ch));
    ARB_TRY(sc_cfg_num(cfg, "layer_norm_eps", 1e-6, false, &eps));
    if (D % H) return arb_error(ARB_ERR_FORMAT, "config.json: hidden_size %d is not a multiple of num_attention_heads %d", D, H);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(cfg, "use_swiglu_ffn");
    if (cJSON_IsTrue(sw)) return arb_error(ARB_ERR_UNSUPPORTED, "config.json: use_swiglu_ffn (DINOv2-giant) is not supported");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu")))
        return arb_error(ARB_ERR_UNSUPPORTED, "config.json: hidden_act must be \"gelu\"");
    const cJSON *qb = cJSON_GetObjectItemCaseSensitive(cfg, "qkv_bias");
    o->qkv_bias = !qb || cJSON_IsTrue(qb);
    o->D = D, o->L = L, o->H = H, o->F = D * mlp_ratio, o->P = P, o->grid = img / P, o->eps = (float)eps;
    return ARB_OK;
}

arb_status sc_dinov2_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg) {
    sc_dinov2_cfg k;
    ARB_TRY(dino_config(cfg, &k));
    const int D = k.D, L = k.L, H = k.H, P = k.P;
    const bool qkv_bias = k.qkv_bias;
    sc_dinov2 *d = (sc_dinov2 *)calloc(1, sizeof *d);
    if (!d) return arb_error(ARB_ERR_OOM, "dinov2: out of memory");
    m->dino = d;
    d->cfg = k;
    arb_sidecar_info *info = &m->info;
    info->hidden = D, info->layers = L, info->heads = H;
    sc_mode mode = m->mode;
    int64_t npos = (int64_t)d->cfg.grid * d->cfg.grid + 1;
    ARB_TRY(sc_conv2d_load(&d->patch, c, "embeddings.patch_embeddings.projection", D, 3, P, P, true, true, mode, info));
    ARB_TRY(sc_vec_load(&d->cls, c, "embeddings.cls_token", 3, (int64_t[]){1, 1, D}, info));
    ARB_TRY(sc_vec_load(&d->pos, c, "embeddings.position_embeddings", 3, (int64_t[]){1, npos, D}, info));
    if (sc_ckpt_has(c, "embeddings.mask_token")) { /* used only for masked pretraining: frozen, unused */
        float *mt;
        ARB_TRY(sc_vec_load(&mt, c, "embeddings.mask_token", 2, (int64_t[]){1, D}, info));
        arb_free(mt);
    }
    d->layers = (dino_layer *)calloc((size_t)L, sizeof(dino_layer));
    if (!d->layers) return arb_error(ARB_ERR_OOM, "dinov2: out of memory");
    int64_t vD[1] = {D};
    for (int i = 0; i < L; i++) {
        dino_layer *l = &d->layers[i];
        char n[256];
#define V(field, suffix)                                                \
    snprintf(n, sizeof n, "encoder.layer.%d.%s", i, suffix);            \
    ARB_TRY(sc_vec_load(&l->field, c, n, 1, vD, info));
#define LIN(field, suffix, no, ni, bias)                                \
    snprintf(n, sizeof n, "encoder.layer.%d.%s", i, suffix);            \
    ARB_TRY(sc_lin_load(&l->field, c, n, no, ni, bias, mode, info));
        V(n1w, "norm1.weight") V(n1b, "norm1.bias") V(n2w, "norm2.weight") V(n2b, "norm2.bias")
        V(ls1, "layer_scale1.lambda1") V(ls2, "layer_scale2.lambda1")
        static const char *const qkv_names[3] = {"query", "key", "value"};
        snprintf(n, sizeof n, "encoder.layer.%d.attention.attention.", i);
        ARB_TRY(sc_lin_load_cat(&l->qkv, c, n, qkv_names, 3, D, D, qkv_bias, mode, info));
        LIN(o, "attention.output.dense", D, D, true)
        LIN(fc1, "mlp.fc1", d->cfg.F, D, true) LIN(fc2, "mlp.fc2", D, d->cfg.F, true)
#undef V
#undef LIN
    }
    ARB_TRY(sc_vec_load(&d->lnw, c, "layernorm.weight", 1, vD, info));
    ARB_TRY(sc_vec_load(&d->lnb, c, "layernorm.bias", 1, vD, info));
    return ARB_OK;
}

/* PyTorch upsample_bicubic2d (align_corners=False, size given): cubic convolution with A = -0.75. */
static void cubic_coeffs(float t, float w[4]) {
    const float A = -0.75f;
    float x1 = t + 1.f, x2 = 1.f - t, x3 = 2.f - t;
    w[0] = ((A * x1 - 5.f * A) * x1 + 8.f * A) * x1 - 4.f * A;
    w[1] = ((A + 2.f) * t - (A + 3.f)) * t * t + 1.f;
    w[2] = ((A + 2.f) * x2 - (A + 3.f)) * x2 * x2 + 1.f;
    w[3] = ((A * x3 - 5.f * A) * x3 + 8.f * A) * x3 - 4.f * A;
}

/* src: [gs, gs, D] grid → dst: [h, w, D] (sc_internal.h; the CUDA path uses it too). */
void sc_bicubic_grid(const float *src, int gs, int D, float *dst, int h, int w) {
    float sy = (float)gs / (float)h, sx = (float)gs / (float)w;
    for (int oy = 0; oy < h; oy++) {
        float ry = sy * ((float)oy + 0.5f) - 0.5f;
        int iy = (int)floorf(ry);
        float wy[4];
        cubic_coeffs(ry - (float)iy, wy);
        for (int ox = 0; ox < w; ox++) {
            float rx = sx * ((float)ox + 0.5f) - 0.5f;
            int ix = (int)floorf(rx);
            float wx[4];
            cubic_coeffs(rx - (float)ix, wx);
            float *o = dst + ((size_t)oy * w + ox) * D;
            for (int c = 0; c < D; c++) o[c] = 0.f;
            for (int a = 0; a < 4; a++) {
                int yy = iy - 1 + a;
                yy = yy < 0 ? 0 : (yy >= gs ? gs - 1 : yy);
                for (int b = 0; b < 4; b++) {
                    int xx = ix - 1 + b;
                    xx = xx < 0 ? 0 : (xx >= gs ? gs - 1 : xx);
                    const float *s = src + ((size_t)yy * gs + xx) * D;
                    float wgt = wy[a] * wx[b];
                    for (int c = 0; c < D; c++) o[c] += wgt * s[c];
                }
            }
        }
    }
}

/* x += λ ⊙ h, row by row (LayerScale residual), on all threads. */
static void layer_scale_add(float *x, const float *h, const float *lambda, size_t rows, int D) {
#pragma omp parallel for schedule(static) if (rows * (size_t)D > ((size_t)1 << 16))
    for (size_t i = 0; i < rows; i++) {
        float *xr = x + i * D;
        const float *hr = h + i * D;
#pragma omp simd
        for (int c = 0; c < D; c++) xr[c] += lambda[c] * hr[c];
    }
}

arb_status arb_dinov2_forward(arb_sidecar *m, const arb_tensor *px, arb_tensor *out, arb_tensor *pool) {
    if (!m || !px || !out) return arb_error(ARB_ERR_INVALID_ARG, "arb_dinov2_forward: NULL argument");
    if (m->kind != ARB_SIDECAR_DINOV2 || !m->dino) return arb_error(ARB_ERR_INVALID_ARG, "arb_dinov2_forward: not a DINOv2 model");
    sc_dinov2 *d = m->dino;
    if (px->dtype != ARB_F32 || px->ndim != 4 || px->shape[1] != 3 || px->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_SHAPE, "dinov2: pixel_values must be f32 [B,3,H,W] on the CPU");
    int64_t B = px->shape[0], Hi = px->shape[2], Wi = px->shape[3];
    if (B < 1 || B > 4096 || Hi < d->cfg.P || Wi < d->cfg.P || Hi > 8192 || Wi > 8192)
        return arb_error(ARB_ERR_SHAPE, "dinov2: pixel_values [%lld,3,%lld,%lld] out of range (need H,W in [%d, 8192])",
                         (long long)B, (long long)Hi, (long long)Wi, d->cfg.P);
    int P = d->cfg.P, D = d->cfg.D, gh = (int)Hi / P, gw = (int)Wi / P, hw = gh * gw, T = hw + 1, K = 3 * P * P;
    size_t rows = (size_t)B * T;
    float *x = sc_falloc(rows, (size_t)D, 1), *hb = sc_falloc(rows, (size_t)D, 1);
    float *qkv = sc_falloc(rows, 3 * (size_t)D, 1);
    float *a = sc_falloc(rows, (size_t)D, 1), *f = sc_falloc(rows, (size_t)d->cfg.F, 1);
    float *col = sc_falloc((size_t)hw, (size_t)K, 1), *pos = sc_falloc((size_t)hw, (size_t)D, 1);
    arb_status st = ARB_OK;
    if (!x || !hb || !qkv || !a || !f || !col || !pos) {
        st = arb_error(ARB_ERR_OOM, "dinov2: out of memory for %lld×%d tokens", (long long)B, T);
        goto done;
    }
    /* position table for this grid */
    if (hw == d->cfg.grid * d->cfg.grid && Hi == Wi) memcpy(pos, d->pos + D, (size_t)hw * D * sizeof(float));
    else sc_bicubic_grid(d->pos + D, d->cfg.grid, D, pos, gh, gw);
    const float *pix = (const float *)px->data;
    for (int64_t b = 0; b < B; b++) {
        const float *img = pix + (size_t)b * 3 * Hi * Wi;
        for (int py = 0; py < gh; py++)
            for (int pxx = 0; pxx < gw; pxx++) {
                float *r = col + ((size_t)py * gw + pxx) * K;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(r + ((size_t)c * P + ky) * P, img + ((size_t)c * Hi + (size_t)py * P + ky) * Wi + (size_t)pxx * P,
                               (size_t)P * sizeof(float));
            }
        float *xb = x + (size_t)b * T * D;
        memcpy(xb + D, pos, (size_t)hw * D * sizeof(float));
        sc_lin_forward(&d->patch, m->mode, hw, col, (size_t)K, xb + D, (size_t)D, SC_EPI_ACCUM);
        for (int c = 0; c < D; c++) xb[c] = d->cls[c] + d->pos[c];
    }
    int dh = D / d->cfg.H;
    float scale = 1.f / sqrtf((float)dh);
    const sc_ops_tier *ops = sc_ops();
    for (int li = 0; li < d->cfg.L; li++) {
        dino_layer *l = &d->layers[li];
        sc_lin_forward_ln(&l->qkv, m->mode, (int)rows, x, l->n1w, l->n1b, d->cfg.eps, hb, qkv, 3 * (size_t)D, 0);
        for (int64_t b = 0; b < B && st == ARB_OK; b++) {
            const float *qb = qkv + (size_t)b * T * 3 * D;
            st = sc_attention(T, T, d->cfg.H, dh, qb, 3 * (size_t)D, qb + D, 3 * (size_t)D, qb + 2 * D, 3 * (size_t)D,
                              a + (size_t)b * T * D, D, scale, false);
        }
        if (st) goto done;
        sc_lin_forward(&l->o, m->mode, (int)rows, a, D, hb, D, 0);
        layer_scale_add(x, hb, l->ls1, rows, D);
        sc_lin_forward_ln(&l->fc1, m->mode, (int)rows, x, l->n2w, l->n2b, d->cfg.eps, hb, f, d->cfg.F, 0);
        ops->gelu(f, rows * d->cfg.F);
        sc_lin_forward(&l->fc2, m->mode, (int)rows, f, d->cfg.F, hb, D, 0);
        layer_scale_add(x, hb, l->ls2, rows, D);
    }
    st = arb_tensor_init(out, ARB_F32, 3, (int64_t[]){B, T, D}, arb_cpu());
    if (st) goto done;
    sc_layernorm(x, (float *)out->data, (int)rows, D, d->lnw, d->lnb, d->cfg.eps);
    if (pool) {
        st = arb_tensor_init(pool, ARB_F32, 2, (int64_t[]){B, D}, arb_cpu());
        if (st) {
            arb_tensor_free(out);
            goto done;
        }
        for (int64_t b = 0; b < B; b++)
            memcpy((float *)pool->data + b * D, (float *)out->data + (size_t)b * T * D, (size_t)D * sizeof(float));
    }
done:
    arb_free(x), arb_free(hb), arb_free(qkv), arb_free(a), arb_free(f), arb_free(col), arb_free(pos);
    return st;
}
