/* Full-size synthetic sidecar checkpoints: the real configs (dinov2-small, moonshine-base, the
 * SD AutoencoderKL) and the real tensor names and shapes (spec/sidecar-tensors.json), with random
 * weights from the counter-based RNG.
 *
 * Why: the real weights are not redistributable here, but speed and memory depend only on the
 * shapes. Weights are scaled like the models' initializers (N(0, 1/fan_in) for linears and
 * convs, unit norms, small biases, LayerScale 0.1) so activations stay in a realistic range and
 * the int8 path sees realistic per-row scales. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>
#include <unistd.h>

#include "sidecars/sc_internal.h"

enum { INIT_W, INIT_ONE, INIT_BIAS, INIT_EMB, INIT_LS };

typedef struct synth {
    arb_st_writer *w;
    uint64_t seed, stream;
    arb_status st;
} synth;

static void emit(synth *s, const char *name, int ndim, const int64_t *shape, int init) {
    if (s->st) return;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    size_t fan_in = ndim >= 2 ? n / (size_t)shape[0] : 1;
    float *buf = (float *)arb_alloc(n * sizeof(float) + 4);
    if (!buf) {
        s->st = arb_error(ARB_ERR_OOM, "synth: out of memory for %s", name);
        return;
    }
    arb_rng_key key = arb_rng_key_make(s->seed, s->stream++);
    float sd = init == INIT_W ? 1.f / sqrtf((float)fan_in) : init == INIT_EMB ? 0.02f : 0.02f;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v;
        switch (init) {
        case INIT_ONE: v = 1.f + 0.05f * arb_rand_normal(key, (uint32_t)i); break;
        case INIT_LS: v = 0.1f + 0.02f * arb_rand_normal(key, (uint32_t)i); break;
        default: v = sd * arb_rand_normal(key, (uint32_t)i); break;
        }
        buf[i] = v;
    }
    s->st = arb_st_writer_add(s->w, name, ARB_F32, ndim, shape, buf);
    arb_free(buf);
}

#define E(s, name, init, ...) emit(s, name, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}, init)

static void synth_dinov2(synth *s) {
    const int D = 384, F = 1536;
    char n[256];
    E(s, "embeddings.cls_token", INIT_EMB, 1, 1, D);
    E(s, "embeddings.mask_token", INIT_EMB, 1, D);
    E(s, "embeddings.position_embeddings", INIT_EMB, 1, 1370, D);
    E(s, "embeddings.patch_embeddings.projection.weight", INIT_W, D, 3, 14, 14);
    E(s, "embeddings.patch_embeddings.projection.bias", INIT_BIAS, D);
    for (int i = 0; i < 12; i++) {
#define L(suffix, init, ...) snprintf(n, sizeof n, "encoder.layer.%d.%s", i, suffix), E(s, n, init, __VA_ARGS__)
        L("norm1.weight", INIT_ONE, D); L("norm1.bias", INIT_BIAS, D);
        L("norm2.weight", INIT_ONE, D); L("norm2.bias", INIT_BIAS, D);
        const char *qkv[] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++) {
            char t[128];
            snprintf(t, sizeof t, "attention.attention.%s.weight", qkv[j]);
            L(t, INIT_W, D, D);
            snprintf(t, sizeof t, "attention.attention.%s.bias", qkv[j]);
            L(t, INIT_BIAS, D);
        }
        L("attention.output.dense.weight", INIT_W, D, D); L("attention.output.dense.bias", INIT_BIAS, D);
        L("layer_scale1.lambda1", INIT_LS, D); L("layer_scale2.lambda1", INIT_LS, D);
        L("mlp.fc1.weight", INIT_W, F, D); L("mlp.fc1.bias", INIT_BIAS, F);
        L("mlp.fc2.weight", INIT_W, D, F); L("mlp.fc2.bias", INIT_BIAS, D);
#undef L
    }
    E(s, "layernorm.weight", INIT_ONE, D);
    E(s, "layernorm.bias", INIT_BIAS, D);
}

static void synth_moonshine(synth *s) {
    const int D = 416, I = 1664, V = 32768;
    char n[256];
    E(s, "model.encoder.conv1.weight", INIT_W, D, 1, 127);
    E(s, "model.encoder.conv2.weight", INIT_W, 2 * D, D, 7);
    E(s, "model.encoder.conv2.bias", INIT_BIAS, 2 * D);
    E(s, "model.encoder.conv3.weight", INIT_W, D, 2 * D, 3);
    E(s, "model.encoder.conv3.bias", INIT_BIAS, D);
    E(s, "model.encoder.groupnorm.weight", INIT_ONE, D);
    E(s, "model.encoder.groupnorm.bias", INIT_BIAS, D);
    const char *p4[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    for (int i = 0; i < 8; i++) {
#define L(suffix, init, ...) snprintf(n, sizeof n, "model.encoder.layers.%d.%s", i, suffix), E(s, n, init, __VA_ARGS__)
        for (int j = 0; j < 4; j++) {
            char t[128];
            snprintf(t, sizeof t, "self_attn.%s.weight", p4[j]);
            L(t, INIT_W, D, D);
        }
        L("input_layernorm.weight", INIT_ONE, D); L("post_attention_layernorm.weight", INIT_ONE, D);
        L("mlp.fc1.weight", INIT_W, I, D); L("mlp.fc1.bias", INIT_BIAS, I);
        L("mlp.fc2.weight", INIT_W, D, I); L("mlp.fc2.bias", INIT_BIAS, D);
#undef L
    }
    E(s, "model.encoder.layer_norm.weight", INIT_ONE, D);
    E(s, "model.decoder.embed_tokens.weight", INIT_EMB, V, D);
    for (int i = 0; i < 8; i++) {
#define L(suffix, init, ...) snprintf(n, sizeof n, "model.decoder.layers.%d.%s", i, suffix), E(s, n, init, __VA_ARGS__)
        const char *att[] = {"self_attn", "encoder_attn"};
        for (int a = 0; a < 2; a++)
            for (int j = 0; j < 4; j++) {
                char t[128];
                snprintf(t, sizeof t, "%s.%s.weight", att[a], p4[j]);
                L(t, INIT_W, D, D);
            }
        L("input_layernorm.weight", INIT_ONE, D); L("post_attention_layernorm.weight", INIT_ONE, D);
        L("final_layernorm.weight", INIT_ONE, D);
        L("mlp.fc1.weight", INIT_W, 2 * I, D); L("mlp.fc1.bias", INIT_BIAS, 2 * I);
        L("mlp.fc2.weight", INIT_W, D, I); L("mlp.fc2.bias", INIT_BIAS, D);
#undef L
    }
    E(s, "model.decoder.norm.weight", INIT_ONE, D);
}

static void vres(synth *s, const char *p, int cin, int cout) {
    char n[512];
#define R(suffix, init, ...) snprintf(n, sizeof n, "%s.%s", p, suffix), E(s, n, init, __VA_ARGS__)
    R("norm1.weight", INIT_ONE, cin); R("norm1.bias", INIT_BIAS, cin);
    R("conv1.weight", INIT_W, cout, cin, 3, 3); R("conv1.bias", INIT_BIAS, cout);
    R("norm2.weight", INIT_ONE, cout); R("norm2.bias", INIT_BIAS, cout);
    R("conv2.weight", INIT_W, cout, cout, 3, 3); R("conv2.bias", INIT_BIAS, cout);
    if (cin != cout) {
        R("conv_shortcut.weight", INIT_W, cout, cin, 1, 1);
        R("conv_shortcut.bias", INIT_BIAS, cout);
    }
#undef R
}

static void vmid(synth *s, const char *p, int C) {
    char n[512];
    snprintf(n, sizeof n, "%s.resnets.0", p), vres(s, n, C, C);
    snprintf(n, sizeof n, "%s.resnets.1", p), vres(s, n, C, C);
    const char *nm[] = {"to_q", "to_k", "to_v", "to_out.0"};
    snprintf(n, sizeof n, "%s.attentions.0.group_norm.weight", p), E(s, n, INIT_ONE, C);
    snprintf(n, sizeof n, "%s.attentions.0.group_norm.bias", p), E(s, n, INIT_BIAS, C);
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.attentions.0.%s.weight", p, nm[i]), E(s, n, INIT_W, C, C);
        snprintf(n, sizeof n, "%s.attentions.0.%s.bias", p, nm[i]), E(s, n, INIT_BIAS, C);
    }
}

static void synth_vae(synth *s) {
    const int ch[4] = {128, 256, 512, 512}, L = 4;
    char n[256];
    E(s, "encoder.conv_in.weight", INIT_W, 128, 3, 3, 3);
    E(s, "encoder.conv_in.bias", INIT_BIAS, 128);
    for (int b = 0; b < 4; b++) {
        for (int r = 0; r < 2; r++) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.resnets.%d", b, r);
            vres(s, n, r ? ch[b] : (b ? ch[b - 1] : ch[0]), ch[b]);
        }
        if (b < 3) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv.weight", b), E(s, n, INIT_W, ch[b], ch[b], 3, 3);
            snprintf(n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv.bias", b), E(s, n, INIT_BIAS, ch[b]);
        }
    }
    vmid(s, "encoder.mid_block", 512);
    E(s, "encoder.conv_norm_out.weight", INIT_ONE, 512);
    E(s, "encoder.conv_norm_out.bias", INIT_BIAS, 512);
    E(s, "encoder.conv_out.weight", INIT_W, 2 * L, 512, 3, 3);
    E(s, "encoder.conv_out.bias", INIT_BIAS, 2 * L);
    E(s, "quant_conv.weight", INIT_W, 2 * L, 2 * L, 1, 1);
    E(s, "quant_conv.bias", INIT_BIAS, 2 * L);
    E(s, "post_quant_conv.weight", INIT_W, L, L, 1, 1);
    E(s, "post_quant_conv.bias", INIT_BIAS, L);
    E(s, "decoder.conv_in.weight", INIT_W, 512, L, 3, 3);
    E(s, "decoder.conv_in.bias", INIT_BIAS, 512);
    vmid(s, "decoder.mid_block", 512);
    int prev = 512;
    for (int b = 0; b < 4; b++) {
        int out = ch[3 - b];
        for (int r = 0; r < 3; r++) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.resnets.%d", b, r);
            vres(s, n, r ? out : prev, out);
        }
        if (b < 3) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv.weight", b), E(s, n, INIT_W, out, out, 3, 3);
            snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv.bias", b), E(s, n, INIT_BIAS, out);
        }
        prev = out;
    }
    E(s, "decoder.conv_norm_out.weight", INIT_ONE, 128);
    E(s, "decoder.conv_norm_out.bias", INIT_BIAS, 128);
    E(s, "decoder.conv_out.weight", INIT_W, 3, 128, 3, 3);
    E(s, "decoder.conv_out.bias", INIT_BIAS, 3);
}

static const char *k_cfg_dinov2 =
    "{\n  \"architectures\": [\"Dinov2Model\"],\n  \"model_type\": \"dinov2\",\n  \"hidden_size\": 384,\n"
    "  \"num_hidden_layers\": 12,\n  \"num_attention_heads\": 6,\n  \"mlp_ratio\": 4,\n  \"patch_size\": 14,\n"
    "  \"image_size\": 518,\n  \"num_channels\": 3,\n  \"layer_norm_eps\": 1e-06,\n  \"hidden_act\": \"gelu\",\n"
    "  \"layerscale_value\": 1.0,\n  \"qkv_bias\": true,\n  \"use_swiglu_ffn\": false,\n  \"torch_dtype\": \"float32\",\n"
    "  \"_arbitor_synthetic\": true\n}\n";
static const char *k_cfg_moonshine =
    "{\n  \"architectures\": [\"MoonshineForConditionalGeneration\"],\n  \"model_type\": \"moonshine\",\n"
    "  \"hidden_size\": 416,\n  \"intermediate_size\": 1664,\n  \"encoder_num_hidden_layers\": 8,\n"
    "  \"decoder_num_hidden_layers\": 8,\n  \"encoder_num_attention_heads\": 8,\n  \"decoder_num_attention_heads\": 8,\n"
    "  \"encoder_num_key_value_heads\": 8,\n  \"decoder_num_key_value_heads\": 8,\n  \"vocab_size\": 32768,\n"
    "  \"encoder_hidden_act\": \"gelu\",\n  \"decoder_hidden_act\": \"silu\",\n  \"attention_bias\": false,\n"
    "  \"partial_rotary_factor\": 0.62,\n  \"rope_theta\": 10000.0,\n  \"max_position_embeddings\": 194,\n"
    "  \"pad_head_dim_to_multiple_of\": 8,\n  \"tie_word_embeddings\": true,\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"decoder_start_token_id\": 1,\n  \"torch_dtype\": \"float32\",\n  \"_arbitor_synthetic\": true\n}\n";
static const char *k_cfg_vae =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"act_fn\": \"silu\",\n  \"block_out_channels\": [128, 256, 512, 512],\n"
    "  \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],\n"
    "  \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"],\n"
    "  \"in_channels\": 3,\n  \"out_channels\": 3,\n  \"latent_channels\": 4,\n  \"layers_per_block\": 2,\n"
    "  \"norm_num_groups\": 32,\n  \"sample_size\": 512,\n  \"scaling_factor\": 0.18215,\n  \"_arbitor_synthetic\": true\n}\n";

arb_status arb_sidecar_synth(arb_sidecar_kind kind, const char *dir, uint64_t seed) {
    if (!dir || kind > ARB_SIDECAR_VAE) return arb_error(ARB_ERR_INVALID_ARG, "synth: bad arguments");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return arb_error(ARB_ERR_IO, "%s: %s", dir, strerror(errno));
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, kind == ARB_SIDECAR_VAE ? "diffusion_pytorch_model.safetensors" : "model.safetensors");
    synth s = {NULL, seed, (uint64_t)kind << 32, ARB_OK};
    ARB_TRY(arb_st_writer_open(&s.w, path));
    if (kind == ARB_SIDECAR_DINOV2) synth_dinov2(&s);
    else if (kind == ARB_SIDECAR_MOONSHINE) synth_moonshine(&s);
    else synth_vae(&s);
    if (!s.st) s.st = arb_st_writer_set_metadata(s.w, "format", "pt");
    if (!s.st) s.st = arb_st_writer_set_metadata(s.w, "arbitor_synthetic", "random weights, real layout");
    if (s.st) {
        arb_st_writer_abort(s.w);
        return s.st;
    }
    ARB_TRY(arb_st_writer_commit(s.w));
    /* config.json, also atomically */
    const char *cfg = kind == ARB_SIDECAR_DINOV2 ? k_cfg_dinov2 : kind == ARB_SIDECAR_MOONSHINE ? k_cfg_moonshine : k_cfg_vae;
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return arb_error(ARB_ERR_IO, "%s: %s", tmp, strerror(errno));
    bool ok = fputs(cfg, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "%s: cannot write", path);
    }
    return ARB_OK;
}
