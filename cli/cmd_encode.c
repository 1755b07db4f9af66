/* arbitor encode — one image or audio file to sidecar features in one step: decode, preprocess
 * (DINOv2 processor / 16 kHz mono) and run the encoder, writing a safetensors file.
 *
 * Why a separate command: `sidecar run` is for fixture-style tensors; this is what a user with a
 * JPEG or a WAV wants, and it refuses a model of the wrong modality with a one-line error. */
#include <stdio.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor encode image|audio FILE --model DIR [--output OUT.safetensors] [--int8] [--threads N]\n"
            "  image: PNG/JPEG → DINOv2 last_hidden_state [1,257,D] + pooler_output [1,D]\n"
            "  audio: WAV/FLAC/OGG → Moonshine encoder_last_hidden_state [1,T,D]\n"
            "  --output defaults to FILE.features.safetensors; --int8 uses int8 weights and activations\n");
}

int arb_cmd_encode(int argc, char **argv) {
    const char *what = NULL, *file = NULL, *model = NULL, *output = NULL;
    arb_sidecar_precision prec = ARB_SIDECAR_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (arb_cli_is_help(a)) return usage(stdout), 0;
        if (!strcmp(a, "--int8")) prec = ARB_SIDECAR_INT8;
        else if (i + 1 < argc && !strcmp(a, "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--output")) output = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--threads")) {
            int64_t n;
            if (!arb_cli_parse_i64(argv[++i], 1, 1024, &n)) return arb_cli_fail("--threads: expected 1..1024, got '%s'", argv[i]);
            arb_set_num_threads((int)n);
        } else if (a[0] == '-') return arb_cli_fail("encode: unknown or incomplete option '%s' (see --help)", a);
        else if (!what) what = a;
        else if (!file) file = a;
        else return arb_cli_fail("encode: unexpected argument '%s'", a);
    }
    if (!what || !file || !model) {
        return arb_cli_fail("encode: image|audio, FILE and --model are required (see --help)");
    }
    bool image = !strcmp(what, "image");
    if (!image && strcmp(what, "audio")) return arb_cli_fail("encode: expected image or audio, got '%s'", what);
    char def[4096];
    if (!output) {
        snprintf(def, sizeof def, "%s.features.safetensors", file);
        output = def;
    }
    arb_sidecar *m;
    arb_status s = arb_sidecar_load(&m, model, prec);
    if (s) return arb_cli_fail_status(s, "cannot load sidecar %s", model);
    const arb_sidecar_info *info = arb_sidecar_info_get(m);
    if (info->kind != (image ? ARB_SIDECAR_DINOV2 : ARB_SIDECAR_MOONSHINE)) {
        const char *kn = arb_sidecar_kind_name(info->kind);
        arb_sidecar_free(m);
        return arb_cli_fail("encode %s: %s is a %s model (need %s)", what, model, kn, image ? "dinov2" : "moonshine");
    }
    arb_tensor in = {0}, a = {0}, b = {0};
    int rc = 0;
    if (image) {
        uint8_t *rgb;
        int w, h;
        if ((s = arb_image_load(file, &rgb, &w, &h))) rc = arb_cli_fail_status(s, "cannot read image");
        else {
            s = arb_image_preprocess_dinov2(rgb, w, h, &in);
            arb_free(rgb);
            if (s) rc = arb_cli_fail_status(s, "cannot preprocess %s", file);
        }
        if (!rc && (s = arb_dinov2_forward(m, &in, &a, &b))) rc = arb_cli_fail_status(s, "dinov2 forward");
    } else {
        float *x;
        size_t n;
        if ((s = arb_audio_load(file, 16000, &x, &n))) rc = arb_cli_fail_status(s, "cannot read audio");
        else {
            s = arb_tensor_init(&in, ARB_F32, 2, (int64_t[]){1, (int64_t)n}, arb_cpu());
            if (!s) memcpy(in.data, x, n * sizeof(float));
            arb_free(x);
            if (s) rc = arb_cli_fail_status(s, "audio");
        }
        if (!rc && (s = arb_moonshine_encode(m, &in, &a))) rc = arb_cli_fail_status(s, "moonshine encoder");
    }
    arb_st_writer *w = NULL;
    if (!rc && (s = arb_st_writer_open(&w, output))) rc = arb_cli_fail_status(s, "cannot open %s", output);
    if (!rc) {
        arb_st_writer_set_metadata(w, "model", arb_sidecar_kind_name(info->kind));
        arb_st_writer_set_metadata(w, "quantized_int8", info->quantized_int8 ? "true" : "false");
        s = arb_st_writer_add(w, image ? "last_hidden_state" : "encoder_last_hidden_state", ARB_F32, a.ndim, a.shape, a.data);
        if (!s && image) s = arb_st_writer_add(w, "pooler_output", ARB_F32, b.ndim, b.shape, b.data);
        if (s) {
            arb_st_writer_abort(w);
            rc = arb_cli_fail_status(s, "cannot write %s", output);
        } else if ((s = arb_st_writer_commit(w))) rc = arb_cli_fail_status(s, "cannot write %s", output);
        else printf("%s: %s [%lld,%lld,%lld] -> %s\n", file, image ? "last_hidden_state" : "encoder_last_hidden_state",
                    (long long)a.shape[0], (long long)a.shape[1], (long long)a.shape[2], output);
    }
    arb_tensor_free(&in), arb_tensor_free(&a), arb_tensor_free(&b);
    arb_sidecar_free(m);
    return rc;
}
