/* arbitor sidecar — run a sidecar encoder on fixture-style tensors, preprocess a file into the
 * tensor the model takes, write full-size synthetic checkpoints, and audit a loaded sidecar.
 *
 * Why tensor names follow the fixtures: `sidecar run` reads and writes exactly the names of
 * ../shared/fixtures/<model>/reference.safetensors, so any reference (transformers, diffusers)
 * can be compared to arbitor with one command and one file. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor sidecar run --model DIR --input IN.safetensors --output OUT.safetensors\n"
            "                           [--int8 | --int8w] [--device cpu|cuda] [--threads N]\n"
            "       arbitor sidecar preprocess image|audio FILE --output OUT.safetensors\n"
            "       arbitor sidecar synth dinov2|moonshine|vae --out DIR [--seed N]\n"
            "       arbitor sidecar info --model DIR [--int8]\n"
            "\n"
            "run: inputs by name: pixel_values (DINOv2); input_values and optionally decoder_input_ids\n"
            "     (Moonshine); sample and/or latents (VAE). Outputs: last_hidden_state, pooler_output;\n"
            "     encoder_last_hidden_state, logits; latent_mean, latent_logvar, decoded.\n"
            "  --int8    int8 weights (optimum-quanto qint8) and int8 activations, VNNI (default: fp32)\n"
            "  --int8w   int8 weights, float activations (quanto's weights-only numerics; for checking)\n"
            "  --device cuda  run the int8 model on cuda:0 (needs --int8 and a CUDA build): DINOv2, the\n"
            "            Moonshine encoder and the VAE decoder run on the GPU (Moonshine decoder logits and\n"
            "            VAE encode on the CPU)\n"
            "preprocess: image → pixel_values [1,3,224,224] (DINOv2 processor); audio → input_values [1,N]\n"
            "     (mono, 16 kHz). synth: random weights in the real layout and config (for benchmarks).\n"
            "info: what was loaded: layers, quantized counts, flags, frozen float parameters.\n");
}

/* One output file, written atomically, with the load flags in its metadata. */
typedef struct outfile {
    arb_st_writer *w;
    const char *path;
} outfile;

static int out_open(outfile *o, const char *path) {
    o->path = path;
    arb_status s = arb_st_writer_open(&o->w, path);
    return s ? arb_cli_fail_status(s, "cannot open %s", path) : 0;
}
static int out_add(outfile *o, const char *name, const arb_tensor *t) {
    arb_status s = arb_st_writer_add(o->w, name, t->dtype, t->ndim, t->shape, t->data);
    if (s) {
        arb_st_writer_abort(o->w);
        o->w = NULL;
        return arb_cli_fail_status(s, "cannot write %s", name);
    }
    return 0;
}
static void out_meta_info(outfile *o, const arb_sidecar_info *in) {
    arb_st_writer_set_metadata(o->w, "model", arb_sidecar_kind_name(in->kind));
    arb_st_writer_set_metadata(o->w, "quantize_requested", in->quantize_requested ? "true" : "false");
    arb_st_writer_set_metadata(o->w, "quantized", in->quantized ? "true" : "false");
    arb_st_writer_set_metadata(o->w, "quantized_int8", in->quantized_int8 ? "true" : "false");
}
static int out_commit(outfile *o) {
    arb_status s = arb_st_writer_commit(o->w);
    o->w = NULL;
    return s ? arb_cli_fail_status(s, "cannot write %s", o->path) : 0;
}

static int load_input(arb_safetensors *st, const char *name, arb_dtype dt, arb_tensor *t, bool required, const char *path) {
    const arb_st_tensor *s = arb_safetensors_find(st, name);
    if (!s) return required ? arb_cli_fail("%s: no tensor '%s'", path, name) : -1;
    if (dt == ARB_F32) {
        arb_status e = arb_safetensors_load_f32(st, name, t);
        return e ? arb_cli_fail_status(e, "%s: '%s'", path, name) : 0;
    }
    if (s->dtype != dt) return arb_cli_fail("%s: '%s' is %s, expected %s", path, name, arb_dtype_name(s->dtype), arb_dtype_name(dt));
    arb_status e = arb_tensor_init(t, dt, s->ndim, s->shape, arb_cpu());
    if (e) return arb_cli_fail_status(e, "%s: '%s'", path, name);
    memcpy(t->data, s->data, s->nbytes);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL, *device = "cpu";
    arb_sidecar_precision prec = ARB_SIDECAR_FP32;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (arb_cli_is_help(a)) return usage(stdout), 0;
        if (!strcmp(a, "--int8")) prec = ARB_SIDECAR_INT8;
        else if (!strcmp(a, "--int8w")) prec = ARB_SIDECAR_INT8W;
        else if (i + 1 < argc && !strcmp(a, "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--input")) input = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--output")) output = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--device")) device = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--threads")) {
            int64_t n;
            if (!arb_cli_parse_i64(argv[++i], 1, 1024, &n)) return arb_cli_fail("--threads: expected 1..1024, got '%s'", argv[i]);
            arb_set_num_threads((int)n);
        } else return arb_cli_fail("sidecar run: unknown or incomplete option '%s' (see --help)", a);
    }
    if (!model || !input || !output) return arb_cli_fail("sidecar run: --model, --input and --output are required");
    bool cuda = !strcmp(device, "cuda");
    if (!cuda && strcmp(device, "cpu")) return arb_cli_fail("--device: expected cpu or cuda, got '%s'", device);
    if (cuda && prec != ARB_SIDECAR_INT8)
        return arb_cli_fail("--device cuda runs the int8 path only: add --int8");
    arb_sidecar *m;
    arb_status s = arb_sidecar_load(&m, model, prec);
    if (s) return arb_cli_fail_status(s, "cannot load sidecar %s", model);
    if (cuda && (s = arb_sidecar_to_device(m, arb_cuda(0)))) {
        arb_sidecar_free(m);
        return arb_cli_fail_status(s, "--device cuda");
    }
    arb_safetensors *in;
    if ((s = arb_safetensors_open(&in, input))) {
        arb_sidecar_free(m);
        return arb_cli_fail_status(s, "cannot read %s", input);
    }
    outfile o = {0};
    int rc = out_open(&o, output);
    arb_tensor a = {0}, b = {0}, r1 = {0}, r2 = {0}, r3 = {0};
    const arb_sidecar_info *info = arb_sidecar_info_get(m);
    if (!rc) out_meta_info(&o, info);
    if (!rc && info->kind == ARB_SIDECAR_DINOV2) {
        rc = load_input(in, "pixel_values", ARB_F32, &a, true, input);
        if (!rc && (s = arb_sidecar_forward(m, &a, &r1, &r2))) rc = arb_cli_fail_status(s, "dinov2 forward");
        if (!rc) rc = out_add(&o, "last_hidden_state", &r1);
        if (!rc) rc = out_add(&o, "pooler_output", &r2);
    } else if (!rc && info->kind == ARB_SIDECAR_MOONSHINE) {
        rc = load_input(in, "input_values", ARB_F32, &a, true, input);
        if (!rc && (s = arb_sidecar_forward(m, &a, &r1, NULL))) rc = arb_cli_fail_status(s, "moonshine encoder");
        if (!rc) rc = out_add(&o, "encoder_last_hidden_state", &r1);
        if (!rc) {
            int have = load_input(in, "decoder_input_ids", ARB_I64, &b, false, input);
            if (have > 0) rc = have;
            else if (have == 0) {
                if ((s = arb_moonshine_logits(m, &r1, &b, &r2))) rc = arb_cli_fail_status(s, "moonshine decoder");
                if (!rc) rc = out_add(&o, "logits", &r2);
            }
        }
    } else if (!rc) {
        int have = load_input(in, "sample", ARB_F32, &a, false, input);
        if (have > 0) rc = have;
        else if (have == 0) {
            if ((s = arb_vae_encode(m, &a, &r1, &r2))) rc = arb_cli_fail_status(s, "vae encode");
            if (!rc) rc = out_add(&o, "latent_mean", &r1);
            if (!rc) rc = out_add(&o, "latent_logvar", &r2);
            if (!rc && (s = arb_sidecar_forward(m, &r1, &r3, NULL))) rc = arb_cli_fail_status(s, "vae decode");
            if (!rc) rc = out_add(&o, "decoded", &r3);
        } else {
            have = load_input(in, "latents", ARB_F32, &b, false, input);
            if (have < 0) rc = arb_cli_fail("%s: a VAE needs 'sample' (to encode) or 'latents' (to decode)", input);
            else if (have > 0) rc = have;
            else if ((s = arb_sidecar_forward(m, &b, &r3, NULL))) rc = arb_cli_fail_status(s, "vae decode");
            if (!rc) rc = out_add(&o, "decoded", &r3);
        }
    }
    if (!rc) rc = out_commit(&o);
    else if (o.w) arb_st_writer_abort(o.w);
    arb_tensor_free(&a), arb_tensor_free(&b), arb_tensor_free(&r1), arb_tensor_free(&r2), arb_tensor_free(&r3);
    arb_safetensors_close(in);
    arb_sidecar_free(m);
    return rc;
}

static int cmd_preprocess(int argc, char **argv) {
    const char *what = NULL, *file = NULL, *output = NULL;
    for (int i = 0; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) return usage(stdout), 0;
        if (i + 1 < argc && !strcmp(argv[i], "--output")) output = argv[++i];
        else if (argv[i][0] == '-') return arb_cli_fail("sidecar preprocess: unknown option '%s'", argv[i]);
        else if (!what) what = argv[i];
        else if (!file) file = argv[i];
        else return arb_cli_fail("sidecar preprocess: unexpected argument '%s'", argv[i]);
    }
    if (!what || !file || !output) return arb_cli_fail("sidecar preprocess: usage: preprocess image|audio FILE --output OUT.safetensors");
    arb_tensor t = {0};
    arb_status s;
    const char *name;
    if (!strcmp(what, "image")) {
        uint8_t *rgb;
        int w, h;
        if ((s = arb_image_load(file, &rgb, &w, &h))) return arb_cli_fail_status(s, "cannot read image");
        s = arb_image_preprocess_dinov2(rgb, w, h, &t);
        arb_free(rgb);
        if (s) return arb_cli_fail_status(s, "cannot preprocess %s", file);
        name = "pixel_values";
    } else if (!strcmp(what, "audio")) {
        float *x;
        size_t n;
        if ((s = arb_audio_load(file, 16000, &x, &n))) return arb_cli_fail_status(s, "cannot read audio");
        s = arb_tensor_init(&t, ARB_F32, 2, (int64_t[]){1, (int64_t)n}, arb_cpu());
        if (!s) memcpy(t.data, x, n * sizeof(float));
        arb_free(x);
        if (s) return arb_cli_fail_status(s, "audio");
        name = "input_values";
    } else return arb_cli_fail("sidecar preprocess: expected image or audio, got '%s'", what);
    outfile o = {0};
    int rc = out_open(&o, output);
    if (!rc) rc = out_add(&o, name, &t);
    if (!rc) rc = out_commit(&o);
    arb_tensor_free(&t);
    return rc;
}

static bool parse_kind(const char *s, arb_sidecar_kind *k) {
    if (!strcmp(s, "dinov2")) *k = ARB_SIDECAR_DINOV2;
    else if (!strcmp(s, "moonshine")) *k = ARB_SIDECAR_MOONSHINE;
    else if (!strcmp(s, "vae")) *k = ARB_SIDECAR_VAE;
    else return false;
    return true;
}

static int cmd_synth(int argc, char **argv) {
    const char *what = NULL, *out = NULL;
    int64_t seed = 1234;
    for (int i = 0; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) return usage(stdout), 0;
        if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seed")) {
            if (!arb_cli_parse_i64(argv[++i], 0, INT64_MAX, &seed)) return arb_cli_fail("--seed: expected a non-negative integer");
        } else if (argv[i][0] == '-') return arb_cli_fail("sidecar synth: unknown option '%s'", argv[i]);
        else if (!what) what = argv[i];
        else return arb_cli_fail("sidecar synth: unexpected argument '%s'", argv[i]);
    }
    arb_sidecar_kind k;
    if (!what || !out) return arb_cli_fail("sidecar synth: usage: synth dinov2|moonshine|vae --out DIR");
    if (!parse_kind(what, &k)) return arb_cli_fail("sidecar synth: expected dinov2, moonshine or vae, got '%s'", what);
    arb_status s = arb_sidecar_synth(k, out, (uint64_t)seed);
    if (s) return arb_cli_fail_status(s, "cannot write %s", out);
    printf("wrote %s (%s, full size, random weights, seed %lld)\n", out, what, (long long)seed);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    arb_sidecar_precision prec = ARB_SIDECAR_FP32;
    for (int i = 0; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) return usage(stdout), 0;
        if (!strcmp(argv[i], "--int8")) prec = ARB_SIDECAR_INT8;
        else if (i + 1 < argc && !strcmp(argv[i], "--model")) model = argv[++i];
        else return arb_cli_fail("sidecar info: unknown option '%s'", argv[i]);
    }
    if (!model) return arb_cli_fail("sidecar info: --model DIR is required");
    arb_sidecar *m;
    arb_status s = arb_sidecar_load(&m, model, prec);
    if (s) return arb_cli_fail_status(s, "cannot load sidecar %s", model);
    const arb_sidecar_info *in = arb_sidecar_info_get(m);
    printf("model            %s (hidden %d, layers %d, heads %d)\n", arb_sidecar_kind_name(in->kind), in->hidden, in->layers, in->heads);
    printf("tensors          %zu (%zu parameters)\n", in->n_tensors, in->n_params);
    printf("layers           Linear %d, Conv2d %d\n", in->n_linear, in->n_conv2d);
    printf("quantized        QLinear %d, QConv2d %d (int8 weights + scales: %.2f MB)\n", in->n_linear_q, in->n_conv2d_q,
           in->int8_bytes / 1048576.0);
    printf("flags            quantize_requested=%s quantized=%s quantized_int8=%s frozen=%s\n",
           in->quantize_requested ? "true" : "false", in->quantized ? "true" : "false", in->quantized_int8 ? "true" : "false",
           in->frozen ? "true" : "false");
    printf("frozen float     %zu tensors, %.2f MB\n", in->float_tensors, in->float_bytes / 1048576.0);
    arb_sidecar_free(m);
    return 0;
}

int arb_cmd_sidecar(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (arb_cli_is_help(sub)) return usage(stdout), 0;
    if (!strcmp(sub, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(sub, "preprocess")) return cmd_preprocess(argc - 2, argv + 2);
    if (!strcmp(sub, "synth")) return cmd_synth(argc - 2, argv + 2);
    if (!strcmp(sub, "info")) return cmd_info(argc - 2, argv + 2);
    return arb_cli_fail("sidecar: unknown subcommand '%s' (run, preprocess, synth, info)", sub);
}
