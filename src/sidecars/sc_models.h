/* The sidecar models' configurations and loaded layers, shared by the CPU forward passes
 * (src/sidecars/{dinov2,moonshine,vae}.c, which own and fill them) and the CUDA upload
 * (src/cuda/sidecar.cu).
 *
 * Why shared: config.json is parsed and the checkpoint read and quantized once, by the CPU
 * loader; the device copy is made from these structs (the same int8 rows and scales, so the two
 * paths use identical weights by construction, with no second parse or read to keep in step).
 * Each config struct holds what the model's config.json decides, after validation. */
#ifndef ARB_SC_MODELS_H
#define ARB_SC_MODELS_H

#include "sidecars/sc_internal.h"

/* ---------------------------------------------------------------- DINOv2 */

typedef struct sc_dinov2_cfg {
    int D, L, H, F, P, grid; /* width, layers, heads, MLP width, patch, pretrained grid side */
    float eps;               /* LayerNorm ε */
    bool qkv_bias;
} sc_dinov2_cfg;

typedef struct dino_layer {
    float *n1w, *n1b, *n2w, *n2b; /* [D] */
    float *ls1, *ls2;             /* [D] LayerScale λ */
    sc_lin qkv, o;                /* [3D,D] (query, key, value stacked), [D,D] */
    sc_lin fc1, fc2;              /* [F,D], [D,F] */
} dino_layer;

struct sc_dinov2 {
    sc_dinov2_cfg cfg;
    sc_lin patch;            /* [D, 3·P·P] in (c, ky, kx) order */
    float *cls;              /* [D] */
    float *pos;              /* [1+grid², D] */
    dino_layer *layers;      /* [L] */
    float *lnw, *lnb;        /* [D] */
};

/* ---------------------------------------------------------------- Moonshine */

typedef struct sc_moonshine_cfg {
    int D, I, Le, Ld, He, Hd, vocab; /* width, MLP width, encoder/decoder layers and heads, vocab */
    int rot, rdim;                   /* rotated dims per head, rotary 'dim' */
    float theta;                     /* rotary base */
} sc_moonshine_cfg;

typedef struct moon_enc_layer {
    float *ln_in, *ln_post; /* [D] (LayerNorm without bias) */
    sc_lin qkv, o;          /* [3D,D] (q, k, v stacked), [D,D]; no bias */
    sc_lin fc1, fc2;        /* [I,D], [D,I] */
} moon_enc_layer;

typedef struct moon_dec_layer {
    float *ln_in, *ln_post, *ln_final; /* [D] */
    sc_lin sq, sk, sv, so;             /* self-attention [D,D] */
    sc_lin cq, ck, cv, co;             /* cross-attention [D,D] */
    sc_lin fc1, fc2;                   /* [2I,D], [D,I] */
} moon_dec_layer;

struct sc_moonshine {
    sc_moonshine_cfg cfg;
    sc_lin conv1, conv2, conv3; /* Conv1d as GEMMs (float, (kx, c) order): [D,127], [2D,7·D], [D,3·2D] */
    sc_pack16 conv_w[3];        /* INT8 mode: dynamic int16 copies of conv1..3 (empty otherwise) */
    float *gn_w, *gn_b;         /* [D] */
    moon_enc_layer *enc;        /* [Le] */
    float *enc_ln;              /* [D] */
    float *embed;               /* [vocab, D] */
    sc_packf proj;              /* embedᵀ packed for the logits (tied, float) */
    moon_dec_layer *dec;        /* [Ld] */
    float *dec_norm;            /* [D] */
};

/* ---------------------------------------------------------------- AutoencoderKL */

#define VAE_MAXB 8
#define VAE_MAXR 4

typedef struct sc_vae_cfg {
    int nb, lpb, G, L, cin, cout, ch[VAE_MAXB]; /* blocks, resnets per block, GroupNorm groups, latent/in/out channels */
    float scaling, shift;
    bool quant, post_quant, mid_attn; /* quant_conv, post_quant_conv, the mid-block attention */
} sc_vae_cfg;

typedef struct vae_res {
    int cin, cout;
    float *n1w, *n1b, *n2w, *n2b;
    sc_lin c1, c2, sc; /* 3×3, 3×3, optional 1×1 shortcut */
    bool has_sc;
} vae_res;

typedef struct vae_attn {
    int C;
    float *gw, *gb;
    sc_lin q, k, v, o;
} vae_attn;

typedef struct vae_mid {
    vae_res r0, r1;
    vae_attn at;
    bool has_attn;
} vae_mid;

struct sc_vae {
    sc_vae_cfg cfg;
    /* encoder */
    sc_lin e_in;
    vae_res down[VAE_MAXB][VAE_MAXR];
    sc_lin downs[VAE_MAXB];
    vae_mid e_mid;
    float *e_nw, *e_nb;
    sc_lin e_out, qconv;
    /* decoder */
    sc_lin pqconv, d_in;
    vae_mid d_mid;
    vae_res up[VAE_MAXB][VAE_MAXR + 1];
    sc_lin ups[VAE_MAXB];
    float *d_nw, *d_nb;
    sc_lin d_out;
};

#endif
