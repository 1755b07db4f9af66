/* AutoencoderKL (diffusers) encode and decode: resnets (GroupNorm+SiLU, 3×3 convs, 1×1 shortcut),
 * asymmetric-pad stride-2 downsampling, nearest ×2 upsampling, the single-head mid-block
 * attention, quant/post-quant 1×1 convs.
 *
 * Why channels-last: a conv is then a GEMM of im2col rows [pixels, 9·Cin] against weights
 * [Cout, 9·Cin] whose output [pixels, Cout] is already the next layer's input, and the mid-block
 * attention's tokens are the rows as they are. im2col is built in chunks of output pixels per
 * thread (never the whole image), and the nearest upsample is folded into the im2col indexing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecars/sc_models.h"


static void res_free(vae_res *r) {
    arb_free(r->n1w), arb_free(r->n1b), arb_free(r->n2w), arb_free(r->n2b);
    sc_lin_free(&r->c1), sc_lin_free(&r->c2), sc_lin_free(&r->sc);
}
static void mid_free(vae_mid *m) {
    res_free(&m->r0), res_free(&m->r1);
    arb_free(m->at.gw), arb_free(m->at.gb);
    sc_lin_free(&m->at.q), sc_lin_free(&m->at.k), sc_lin_free(&m->at.v), sc_lin_free(&m->at.o);
}

void sc_vae_free(sc_vae *v) {
    if (!v) return;
    sc_lin_free(&v->e_in), sc_lin_free(&v->e_out), sc_lin_free(&v->qconv), sc_lin_free(&v->pqconv);
    sc_lin_free(&v->d_in), sc_lin_free(&v->d_out);
    for (int b = 0; b < VAE_MAXB; b++) {
        for (int r = 0; r < VAE_MAXR; r++) res_free(&v->down[b][r]);
        for (int r = 0; r < VAE_MAXR + 1; r++) res_free(&v->up[b][r]);
        sc_lin_free(&v->downs[b]), sc_lin_free(&v->ups[b]);
    }
    mid_free(&v->e_mid), mid_free(&v->d_mid);
    arb_free(v->e_nw), arb_free(v->e_nb), arb_free(v->d_nw), arb_free(v->d_nb);
    free(v);
}

static arb_status res_load(vae_res *r, sc_ckpt *c, const char *p, int cin, int cout, sc_mode mode, arb_sidecar_info *info) {
    char n[1024];
    r->cin = cin, r->cout = cout;
    snprintf(n, sizeof n, "%s.norm1.weight", p); ARB_TRY(sc_vec_load(&r->n1w, c, n, 1, (int64_t[]){cin}, info));
    snprintf(n, sizeof n, "%s.norm1.bias", p); ARB_TRY(sc_vec_load(&r->n1b, c, n, 1, (int64_t[]){cin}, info));
    snprintf(n, sizeof n, "%s.conv1", p); ARB_TRY(sc_conv2d_load(&r->c1, c, n, cout, cin, 3, 3, true, false, mode, info));
    snprintf(n, sizeof n, "%s.norm2.weight", p); ARB_TRY(sc_vec_load(&r->n2w, c, n, 1, (int64_t[]){cout}, info));
    snprintf(n, sizeof n, "%s.norm2.bias", p); ARB_TRY(sc_vec_load(&r->n2b, c, n, 1, (int64_t[]){cout}, info));
    snprintf(n, sizeof n, "%s.conv2", p); ARB_TRY(sc_conv2d_load(&r->c2, c, n, cout, cout, 3, 3, true, false, mode, info));
    if (cin != cout) {
        r->has_sc = true;
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        ARB_TRY(sc_conv2d_load(&r->sc, c, n, cout, cin, 1, 1, true, false, mode, info));
    }
    return ARB_OK;
}

static arb_status mid_load(vae_mid *m, sc_ckpt *c, const char *p, int C, bool attn, sc_mode mode, arb_sidecar_info *info) {
    char n[512];
    snprintf(n, sizeof n, "%s.resnets.0", p); ARB_TRY(res_load(&m->r0, c, n, C, C, mode, info));
    snprintf(n, sizeof n, "%s.resnets.1", p); ARB_TRY(res_load(&m->r1, c, n, C, C, mode, info));
    m->has_attn = attn;
    if (!attn) return ARB_OK;
    m->at.C = C;
    snprintf(n, sizeof n, "%s.attentions.0.group_norm.weight", p); ARB_TRY(sc_vec_load(&m->at.gw, c, n, 1, (int64_t[]){C}, info));
    snprintf(n, sizeof n, "%s.attentions.0.group_norm.bias", p); ARB_TRY(sc_vec_load(&m->at.gb, c, n, 1, (int64_t[]){C}, info));
    /* current names, or the pre-0.14 query/key/value/proj_attn ones */
    char probe[256];
    snprintf(probe, sizeof probe, "%s.attentions.0.to_q.weight", p);
    bool legacy = !sc_ckpt_has(c, probe);
    const char *nm[4] = {"to_q", "to_k", "to_v", "to_out.0"}, *old[4] = {"query", "key", "value", "proj_attn"};
    sc_lin *dst[4] = {&m->at.q, &m->at.k, &m->at.v, &m->at.o};
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.attentions.0.%s", p, legacy ? old[i] : nm[i]);
        ARB_TRY(sc_lin_load(dst[i], c, n, C, C, true, mode, info));
    }
    return ARB_OK;
}

static arb_status json_int_array(const cJSON *cfg, const char *key, int *out, int max, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!cJSON_IsArray(a)) return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\" must be an array", key);
    int k = cJSON_GetArraySize(a);
    if (k < 1 || k > max) return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\" must have 1..%d entries", key, max);
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (out) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 4096 || e->valuedouble != (int)e->valuedouble)
                return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\"[%d] must be an integer in [1,4096]", key, i);
            out[i] = (int)e->valuedouble;
        } else if (!cJSON_IsString(e))
            return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\"[%d] must be a string", key, i);
    }
    *n = k;
    return ARB_OK;
}

static bool cfg_bool(const cJSON *cfg, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* config.json → the validated configuration (the one parse: the CUDA upload reads it too). */
static arb_status vae_config(const cJSON *cfg, sc_vae_cfg *o) {
    memset(o, 0, sizeof *o);
    int nb, nd, nu;
    ARB_TRY(json_int_array(cfg, "block_out_channels", o->ch, VAE_MAXB, &nb));
    ARB_TRY(json_int_array(cfg, "down_block_types", NULL, VAE_MAXB, &nd));
    ARB_TRY(json_int_array(cfg, "up_block_types", NULL, VAE_MAXB, &nu));
    if (nd != nb || nu != nb) return arb_error(ARB_ERR_FORMAT, "config.json: block type lists must match block_out_channels");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(cfg, "down_block_types"), *ut = cJSON_GetObjectItemCaseSensitive(cfg, "up_block_types");
    for (int i = 0; i < nb; i++) {
        if (strcmp(cJSON_GetArrayItem(dt, i)->valuestring, "DownEncoderBlock2D") ||
            strcmp(cJSON_GetArrayItem(ut, i)->valuestring, "UpDecoderBlock2D"))
            return arb_error(ARB_ERR_UNSUPPORTED, "config.json: only DownEncoderBlock2D/UpDecoderBlock2D blocks are supported");
    }
    double sf, sh;
    ARB_TRY(sc_cfg_int(cfg, "layers_per_block", 1, VAE_MAXR, 1, false, &o->lpb));
    ARB_TRY(sc_cfg_int(cfg, "norm_num_groups", 1, 512, 32, false, &o->G));
    ARB_TRY(sc_cfg_int(cfg, "latent_channels", 1, 256, 4, false, &o->L));
    ARB_TRY(sc_cfg_int(cfg, "in_channels", 1, 16, 3, false, &o->cin));
    ARB_TRY(sc_cfg_int(cfg, "out_channels", 1, 16, 3, false, &o->cout));
    ARB_TRY(sc_cfg_num(cfg, "scaling_factor", 0.18215, false, &sf));
    ARB_TRY(sc_cfg_num(cfg, "shift_factor", 0.0, false, &sh));
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "act_fn");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return arb_error(ARB_ERR_UNSUPPORTED, "config.json: act_fn must be \"silu\"");
    o->nb = nb, o->scaling = (float)sf, o->shift = (float)sh;
    o->quant = cfg_bool(cfg, "use_quant_conv", true);
    o->post_quant = cfg_bool(cfg, "use_post_quant_conv", true);
    o->mid_attn = cfg_bool(cfg, "mid_block_add_attention", true);
    for (int i = 0; i < nb; i++)
        if (o->ch[i] % o->G) return arb_error(ARB_ERR_FORMAT, "config.json: block channels %d not divisible by norm_num_groups %d", o->ch[i], o->G);
    return ARB_OK;
}

arb_status sc_vae_load(arb_sidecar *m, sc_ckpt *c, const cJSON *cfg) {
    sc_vae_cfg k;
    ARB_TRY(vae_config(cfg, &k));
    sc_vae *v = (sc_vae *)calloc(1, sizeof *v);
    if (!v) return arb_error(ARB_ERR_OOM, "vae: out of memory");
    m->vae = v;
    v->cfg = k;
    const int nb = k.nb;
    const bool attn = k.mid_attn;
    arb_sidecar_info *info = &m->info;
    info->hidden = v->cfg.ch[nb - 1], info->layers = nb, info->heads = 1;
    sc_mode mode = m->mode;
    int L = v->cfg.L, top = v->cfg.ch[nb - 1];
    char n[256];
    ARB_TRY(sc_conv2d_load(&v->e_in, c, "encoder.conv_in", v->cfg.ch[0], v->cfg.cin, 3, 3, true, false, mode, info));
    for (int b = 0; b < nb; b++) {
        int in = b ? v->cfg.ch[b - 1] : v->cfg.ch[0], out = v->cfg.ch[b];
        for (int r = 0; r < v->cfg.lpb; r++) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.resnets.%d", b, r);
            ARB_TRY(res_load(&v->down[b][r], c, n, r ? out : in, out, mode, info));
        }
        if (b < nb - 1) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv", b);
            ARB_TRY(sc_conv2d_load(&v->downs[b], c, n, out, out, 3, 3, true, false, mode, info));
        }
    }
    ARB_TRY(mid_load(&v->e_mid, c, "encoder.mid_block", top, attn, mode, info));
    ARB_TRY(sc_vec_load(&v->e_nw, c, "encoder.conv_norm_out.weight", 1, (int64_t[]){top}, info));
    ARB_TRY(sc_vec_load(&v->e_nb, c, "encoder.conv_norm_out.bias", 1, (int64_t[]){top}, info));
    ARB_TRY(sc_conv2d_load(&v->e_out, c, "encoder.conv_out", 2 * L, top, 3, 3, true, false, mode, info));
    if (v->cfg.quant) ARB_TRY(sc_conv2d_load(&v->qconv, c, "quant_conv", 2 * L, 2 * L, 1, 1, true, false, mode, info));
    if (v->cfg.post_quant) ARB_TRY(sc_conv2d_load(&v->pqconv, c, "post_quant_conv", L, L, 1, 1, true, false, mode, info));
    ARB_TRY(sc_conv2d_load(&v->d_in, c, "decoder.conv_in", top, L, 3, 3, true, false, mode, info));
    ARB_TRY(mid_load(&v->d_mid, c, "decoder.mid_block", top, attn, mode, info));
    int prev = top;
    for (int b = 0; b < nb; b++) {
        int out = v->cfg.ch[nb - 1 - b];
        for (int r = 0; r < v->cfg.lpb + 1; r++) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.resnets.%d", b, r);
            ARB_TRY(res_load(&v->up[b][r], c, n, r ? out : prev, out, mode, info));
        }
        if (b < nb - 1) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv", b);
            ARB_TRY(sc_conv2d_load(&v->ups[b], c, n, out, out, 3, 3, true, false, mode, info));
        }
        prev = out;
    }
    ARB_TRY(sc_vec_load(&v->d_nw, c, "decoder.conv_norm_out.weight", 1, (int64_t[]){v->cfg.ch[0]}, info));
    ARB_TRY(sc_vec_load(&v->d_nb, c, "decoder.conv_norm_out.bias", 1, (int64_t[]){v->cfg.ch[0]}, info));
    ARB_TRY(sc_conv2d_load(&v->d_out, c, "decoder.conv_out", v->cfg.cout, v->cfg.ch[0], 3, 3, true, false, mode, info));
    return ARB_OK;
}

void arb_vae_scaling(const arb_sidecar *m, float *scaling_factor, float *shift_factor) {
    if (scaling_factor) *scaling_factor = m && m->vae ? m->vae->cfg.scaling : 0.f;
    if (shift_factor) *shift_factor = m && m->vae ? m->vae->cfg.shift : 0.f;
}

/* ---------------------------------------------------------------- forward pieces */

enum { CONV_SAME = 0, CONV_DOWN = 1, CONV_UP = 2 };
#define VAE_CHUNK 96 /* output pixels per im2col block */

/* 3×3 conv on channels-last x [H,W,Cin] → y [Ho,Wo,Cout].
 * SAME: pad 1, stride 1. DOWN: pad right/bottom by 1, stride 2. UP: nearest ×2, then SAME. */
static arb_status conv3(const sc_lin *l, sc_mode mode, const float *x, int H, int W, int Cin, int kind, float *y, int flags) {
    int Ho = kind == CONV_DOWN ? (H - 2) / 2 + 1 : kind == CONV_UP ? 2 * H : H;
    int Wo = kind == CONV_DOWN ? (W - 2) / 2 + 1 : kind == CONV_UP ? 2 * W : W;
    int K = 9 * Cin, Hv = kind == CONV_UP ? 2 * H : H, Wv = kind == CONV_UP ? 2 * W : W;
    size_t P = (size_t)Ho * Wo, nch = (P + VAE_CHUNK - 1) / VAE_CHUNK;
    int nt = omp_get_max_threads();
    /* int8: each im2col row is gathered into an L1-sized float row and quantized straight to u8,
     * so the float im2col block never exists; fp32/int8w: a float im2col block per thread. */
    bool q8 = l->quantized && mode == SC_INT8;
    int kp = q8 ? l->q.kp : K;
    float *buf = sc_falloc((size_t)nt, q8 ? 1 : VAE_CHUNK, (size_t)K);
    uint8_t *qbuf = q8 ? (uint8_t *)arb_alloc((size_t)nt * VAE_CHUNK * kp) : NULL;
    float *qs = q8 ? sc_falloc((size_t)nt, VAE_CHUNK, 1) : NULL;
    if (!buf || (q8 && (!qbuf || !qs))) {
        arb_free(buf), arb_free(qbuf), arb_free(qs);
        return arb_error(ARB_ERR_OOM, "vae: out of memory for conv im2col");
    }
    const sc_gemm_tier *tier = sc_tier();
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t ch = 0; ch < nch; ch++) {
        int tid = omp_get_thread_num();
        float *col = buf + (size_t)tid * (q8 ? 1 : VAE_CHUNK) * K;
        uint8_t *aq = q8 ? qbuf + (size_t)tid * VAE_CHUNK * kp : NULL;
        float *as = q8 ? qs + (size_t)tid * VAE_CHUNK : NULL;
        size_t p0 = ch * VAE_CHUNK, p1 = p0 + VAE_CHUNK < P ? p0 + VAE_CHUNK : P;
        for (size_t p = p0; p < p1; p++) {
            int oy = (int)(p / Wo), ox = (int)(p % Wo);
            float *r = q8 ? col : col + (p - p0) * K;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    int vy = kind == CONV_DOWN ? 2 * oy + ky : oy + ky - 1, vx = kind == CONV_DOWN ? 2 * ox + kx : ox + kx - 1;
                    float *dst = r + (ky * 3 + kx) * Cin;
                    if (vy < 0 || vx < 0 || vy >= Hv || vx >= Wv) {
                        memset(dst, 0, (size_t)Cin * sizeof(float));
                        continue;
                    }
                    int sy = kind == CONV_UP ? vy >> 1 : vy, sx = kind == CONV_UP ? vx >> 1 : vx;
                    memcpy(dst, x + ((size_t)sy * W + sx) * Cin, (size_t)Cin * sizeof(float));
                }
            if (q8) as[p - p0] = tier->quant_row(r, K, kp, aq + (p - p0) * kp);
        }
        if (q8) {
            tier->q8((int)(p1 - p0), aq, as, &l->q, l->bias, y + p0 * l->n, (size_t)l->n, flags, 0, (l->n + 15) / 16);
        } else
            sc_lin_forward(l, mode, (int)(p1 - p0), col, (size_t)K, y + p0 * l->n, (size_t)l->n, flags);
    }
    if (q8) sc_macs_add((unsigned long long)P * l->n * l->k);
    arb_free(buf), arb_free(qbuf), arb_free(qs);
    return ARB_OK;
}

/* 1×1 conv: a plain GEMM over pixels. */
static void conv1(const sc_lin *l, sc_mode mode, const float *x, size_t P, float *y, int flags) {
    sc_lin_forward(l, mode, (int)P, x, (size_t)l->k, y, (size_t)l->n, flags);
}

/* y = shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x)))))); t is scratch of P·max(cin,cout)·2. */
static arb_status res_fwd(const sc_vae *v, const vae_res *r, sc_mode mode, const float *x, int H, int W, float *y, float *t) {
    size_t P = (size_t)H * W;
    float *t2 = t + P * (size_t)(r->cin > r->cout ? r->cin : r->cout);
    ARB_TRY(sc_groupnorm_nhwc(x, t, P, r->cin, v->cfg.G, r->n1w, r->n1b, 1e-6f, true));
    ARB_TRY(conv3(&r->c1, mode, t, H, W, r->cin, CONV_SAME, t2, 0));
    ARB_TRY(sc_groupnorm_nhwc(t2, t2, P, r->cout, v->cfg.G, r->n2w, r->n2b, 1e-6f, true));
    if (r->has_sc) conv1(&r->sc, mode, x, P, y, 0);
    else if (y != x) memcpy(y, x, P * r->cout * sizeof(float));
    return conv3(&r->c2, mode, t2, H, W, r->cout, CONV_SAME, y, SC_EPI_ACCUM);
}

static arb_status attn_fwd(const sc_vae *v, const vae_attn *a, sc_mode mode, float *x, size_t P, float *t) {
    int C = a->C;
    float *h = t, *q = t + P * C, *k = q + P * C, *vv = k + P * C, *o = vv + P * C;
    ARB_TRY(sc_groupnorm_nhwc(x, h, P, C, v->cfg.G, a->gw, a->gb, 1e-6f, false));
    sc_lin_forward(&a->q, mode, (int)P, h, C, q, C, 0);
    sc_lin_forward(&a->k, mode, (int)P, h, C, k, C, 0);
    sc_lin_forward(&a->v, mode, (int)P, h, C, vv, C, 0);
    ARB_TRY(sc_attention((int)P, (int)P, 1, C, q, C, k, C, vv, C, o, C, 1.f / sqrtf((float)C), false));
    sc_lin_forward(&a->o, mode, (int)P, o, C, x, C, SC_EPI_ACCUM);
    return ARB_OK;
}

static arb_status mid_fwd(const sc_vae *v, const vae_mid *m, sc_mode mode, float *x, float *y, int H, int W, float *t) {
    ARB_TRY(res_fwd(v, &m->r0, mode, x, H, W, y, t));
    if (m->has_attn) ARB_TRY(attn_fwd(v, &m->at, mode, y, (size_t)H * W, t));
    return res_fwd(v, &m->r1, mode, y, H, W, x, t);
}

static void nchw_to_nhwc(const float *s, float *d, int C, size_t P) {
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < P; p++) d[p * C + c] = s[(size_t)c * P + p];
}
static void nhwc_to_nchw(const float *s, float *d, int C, size_t P) {
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < P; p++) d[(size_t)c * P + p] = s[p * C + c];
}

static arb_status vae_check(arb_sidecar *m, const arb_tensor *t, int C, int mult, const char *what) {
    if (!m || !t) return arb_error(ARB_ERR_INVALID_ARG, "vae: NULL argument");
    if (m->kind != ARB_SIDECAR_VAE || !m->vae) return arb_error(ARB_ERR_INVALID_ARG, "vae: not an AutoencoderKL model");
    if (t->dtype != ARB_F32 || t->ndim != 4 || t->shape[1] != C || t->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_SHAPE, "vae: %s must be f32 [B,%d,H,W] on the CPU", what, C);
    if (t->shape[0] < 1 || t->shape[0] > 4096 || t->shape[2] < 1 || t->shape[3] < 1 || t->shape[2] > 16384 ||
        t->shape[3] > 16384 || t->shape[2] % mult || t->shape[3] % mult)
        return arb_error(ARB_ERR_SHAPE, "vae: %s [%lld,%d,%lld,%lld]: H and W must be positive multiples of %d", what,
                         (long long)t->shape[0], C, (long long)t->shape[2], (long long)t->shape[3], mult);
    return ARB_OK;
}

/* Scratch per sample: the largest activation is max channels × full resolution. */
static size_t max_act(const sc_vae *v, size_t P) {
    int mx = v->cfg.cin > v->cfg.cout ? v->cfg.cin : v->cfg.cout;
    for (int i = 0; i < v->cfg.nb; i++) mx = v->cfg.ch[i] > mx ? v->cfg.ch[i] : mx;
    return P * (size_t)mx;
}

arb_status arb_vae_encode(arb_sidecar *m, const arb_tensor *sample, arb_tensor *mean, arb_tensor *logvar) {
    ARB_TRY(vae_check(m, sample, m && m->vae ? m->vae->cfg.cin : 3, m && m->vae ? 1 << (m->vae->cfg.nb - 1) : 1, "sample"));
    sc_vae *v = m->vae;
    int64_t B = sample->shape[0], H = sample->shape[2], W = sample->shape[3];
    int f = 1 << (v->cfg.nb - 1), h = (int)H / f, w = (int)W / f, L = v->cfg.L;
    size_t P = (size_t)H * W, A = max_act(v, P);
    float *x = sc_falloc(A, 1, 1), *y = sc_falloc(A, 1, 1), *t = sc_falloc(A, 5, 1);
    arb_status st = ARB_OK;
    if (!x || !y || !t) {
        st = arb_error(ARB_ERR_OOM, "vae: out of memory for a %lldx%lld image", (long long)H, (long long)W);
        goto done;
    }
    if (mean && (st = arb_tensor_init(mean, ARB_F32, 4, (int64_t[]){B, L, h, w}, arb_cpu()))) goto done;
    if (logvar && (st = arb_tensor_init(logvar, ARB_F32, 4, (int64_t[]){B, L, h, w}, arb_cpu()))) goto done;
    for (int64_t b = 0; b < B && !st; b++) {
        int ch = H, cw = W, C = v->cfg.ch[0];
        nchw_to_nhwc((const float *)sample->data + (size_t)b * v->cfg.cin * P, y, v->cfg.cin, P);
        if ((st = conv3(&v->e_in, m->mode, y, ch, cw, v->cfg.cin, CONV_SAME, x, 0))) break;
        for (int bi = 0; bi < v->cfg.nb && !st; bi++) {
            for (int r = 0; r < v->cfg.lpb && !st; r++) {
                const vae_res *rs = &v->down[bi][r];
                st = res_fwd(v, rs, m->mode, x, ch, cw, y, t);
                float *s = x; x = y; y = s;
                C = rs->cout;
            }
            if (!st && bi < v->cfg.nb - 1) {
                st = conv3(&v->downs[bi], m->mode, x, ch, cw, C, CONV_DOWN, y, 0);
                ch = (ch - 2) / 2 + 1, cw = (cw - 2) / 2 + 1;
                float *s = x; x = y; y = s;
            }
        }
        if (st || (st = mid_fwd(v, &v->e_mid, m->mode, x, y, ch, cw, t))) break;
        size_t p = (size_t)ch * cw;
        if ((st = sc_groupnorm_nhwc(x, y, p, C, v->cfg.G, v->e_nw, v->e_nb, 1e-6f, true))) break;
        if ((st = conv3(&v->e_out, m->mode, y, ch, cw, C, CONV_SAME, x, 0))) break;
        if (v->cfg.quant) conv1(&v->qconv, m->mode, x, p, y, 0);
        else memcpy(y, x, p * 2 * L * sizeof(float));
        for (int c = 0; c < L; c++)
            for (size_t i = 0; i < p; i++) {
                if (mean) ((float *)mean->data)[((size_t)b * L + c) * p + i] = y[i * 2 * L + c];
                if (logvar) {
                    float lv = y[i * 2 * L + L + c];
                    ((float *)logvar->data)[((size_t)b * L + c) * p + i] = lv < -30.f ? -30.f : (lv > 20.f ? 20.f : lv);
                }
            }
    }
done:
    if (st) {
        if (mean) arb_tensor_free(mean);
        if (logvar) arb_tensor_free(logvar);
    }
    arb_free(x), arb_free(y), arb_free(t);
    return st;
}

arb_status arb_vae_decode(arb_sidecar *m, const arb_tensor *lat, arb_tensor *out) {
    ARB_TRY(vae_check(m, lat, m && m->vae ? m->vae->cfg.L : 4, 1, "latents"));
    if (!out) return arb_error(ARB_ERR_INVALID_ARG, "vae: NULL output");
    sc_vae *v = m->vae;
    int64_t B = lat->shape[0], h = lat->shape[2], w = lat->shape[3];
    int f = 1 << (v->cfg.nb - 1), L = v->cfg.L;
    int64_t H = h * f, W = w * f;
    size_t P = (size_t)H * W, A = max_act(v, P);
    float *x = sc_falloc(A, 1, 1), *y = sc_falloc(A, 1, 1), *t = sc_falloc(A, 5, 1);
    arb_status st = ARB_OK;
    if (!x || !y || !t) {
        st = arb_error(ARB_ERR_OOM, "vae: out of memory for a %lldx%lld image", (long long)H, (long long)W);
        goto done;
    }
    if ((st = arb_tensor_init(out, ARB_F32, 4, (int64_t[]){B, v->cfg.cout, H, W}, arb_cpu()))) goto done;
    for (int64_t b = 0; b < B && !st; b++) {
        int ch = (int)h, cw = (int)w, top = v->cfg.ch[v->cfg.nb - 1], C = top;
        size_t p = (size_t)ch * cw;
        nchw_to_nhwc((const float *)lat->data + (size_t)b * L * p, y, L, p);
        if (v->cfg.post_quant) {
            conv1(&v->pqconv, m->mode, y, p, x, 0);
            memcpy(y, x, p * L * sizeof(float));
        }
        if ((st = conv3(&v->d_in, m->mode, y, ch, cw, L, CONV_SAME, x, 0))) break;
        if ((st = mid_fwd(v, &v->d_mid, m->mode, x, y, ch, cw, t))) break;
        for (int bi = 0; bi < v->cfg.nb && !st; bi++) {
            for (int r = 0; r < v->cfg.lpb + 1 && !st; r++) {
                const vae_res *rs = &v->up[bi][r];
                st = res_fwd(v, rs, m->mode, x, ch, cw, y, t);
                float *s = x; x = y; y = s;
                C = rs->cout;
            }
            if (!st && bi < v->cfg.nb - 1) {
                st = conv3(&v->ups[bi], m->mode, x, ch, cw, C, CONV_UP, y, 0);
                ch *= 2, cw *= 2;
                float *s = x; x = y; y = s;
            }
        }
        if (st) break;
        p = (size_t)ch * cw;
        if ((st = sc_groupnorm_nhwc(x, y, p, C, v->cfg.G, v->d_nw, v->d_nb, 1e-6f, true))) break;
        if ((st = conv3(&v->d_out, m->mode, y, ch, cw, C, CONV_SAME, x, 0))) break;
        nhwc_to_nchw(x, (float *)out->data + (size_t)b * v->cfg.cout * p, v->cfg.cout, p);
    }
    if (st) arb_tensor_free(out);
done:
    arb_free(x), arb_free(y), arb_free(t);
    return st;
}
