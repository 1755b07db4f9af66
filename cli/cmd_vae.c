/* arbitor vae — between PNG/JPEG images and VAE latents: encode writes the scaled latents
 * ((mean − shift)·scaling_factor, as diffusers pipelines use them) plus mean and logvar;
 * decode reads them back and writes a PNG (clamp(x/2 + 0.5, 0, 1), rounded to 8 bits).
 *
 * Why the scaling lives here: vae.encode/decode in diffusers are unscaled; the pipelines scale.
 * Files written by `vae encode` hold both so either convention can read them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor vae encode IMAGE --model DIR [--output LATENTS.safetensors] [--int8]\n"
            "       arbitor vae decode LATENTS.safetensors --model DIR [--output OUT.png] [--int8]\n"
            "  encode: RGB in [-1,1] (W, H cropped to multiples of 8) → latents (scaled), latent_mean, latent_logvar\n"
            "  decode: 'latents' (scaled; or 'latent_mean', unscaled) → PNG\n");
}

int arb_cmd_vae(int argc, char **argv) {
    const char *op = NULL, *file = NULL, *model = NULL, *output = NULL;
    arb_sidecar_precision prec = ARB_SIDECAR_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (arb_cli_is_help(a)) return usage(stdout), 0;
        if (!strcmp(a, "--int8")) prec = ARB_SIDECAR_INT8;
        else if (i + 1 < argc && !strcmp(a, "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--output")) output = argv[++i];
        else if (a[0] == '-') return arb_cli_fail("vae: unknown or incomplete option '%s' (see --help)", a);
        else if (!op) op = a;
        else if (!file) file = a;
        else return arb_cli_fail("vae: unexpected argument '%s'", a);
    }
    if (!op || !file || !model) {
        return arb_cli_fail("vae: encode|decode, FILE and --model are required (see --help)");
    }
    bool enc = !strcmp(op, "encode");
    if (!enc && strcmp(op, "decode")) return arb_cli_fail("vae: expected encode or decode, got '%s'", op);
    char def[4096];
    if (!output) {
        snprintf(def, sizeof def, "%s.%s", file, enc ? "latents.safetensors" : "png");
        output = def;
    }
    arb_sidecar *m;
    arb_status s = arb_sidecar_load(&m, model, prec);
    if (s) return arb_cli_fail_status(s, "cannot load sidecar %s", model);
    if (arb_sidecar_info_get(m)->kind != ARB_SIDECAR_VAE) {
        arb_sidecar_free(m);
        return arb_cli_fail("vae: %s is not an AutoencoderKL", model);
    }
    float sf, sh;
    arb_vae_scaling(m, &sf, &sh);
    int rc = 0;
    arb_tensor x = {0}, a = {0}, b = {0};
    if (enc) {
        uint8_t *rgb;
        int w, h;
        if ((s = arb_image_load(file, &rgb, &w, &h))) rc = arb_cli_fail_status(s, "cannot read image");
        else {
            int cw = w / 8 * 8, ch = h / 8 * 8, x0 = (w - cw) / 2, y0 = (h - ch) / 2;
            if (cw < 8 || ch < 8) rc = arb_cli_fail("%s: %dx%d is smaller than 8x8", file, w, h);
            else {
                if (cw != w || ch != h) fprintf(stderr, "arbitor: note: center-cropped %dx%d to %dx%d (multiples of 8)\n", w, h, cw, ch);
                if ((s = arb_tensor_init(&x, ARB_F32, 4, (int64_t[]){1, 3, ch, cw}, arb_cpu()))) rc = arb_cli_fail_status(s, "image");
                else
                    for (int c = 0; c < 3; c++)
                        for (int yy = 0; yy < ch; yy++)
                            for (int xx = 0; xx < cw; xx++)
                                ((float *)x.data)[((size_t)c * ch + yy) * cw + xx] =
                                    (float)rgb[((size_t)(yy + y0) * w + xx + x0) * 3 + c] / 255.f * 2.f - 1.f;
            }
            arb_free(rgb);
        }
        if (!rc && (s = arb_vae_encode(m, &x, &a, &b))) rc = arb_cli_fail_status(s, "vae encode");
        arb_st_writer *wr = NULL;
        if (!rc && (s = arb_st_writer_open(&wr, output))) rc = arb_cli_fail_status(s, "cannot open %s", output);
        if (!rc) {
            arb_tensor z;
            s = arb_tensor_init(&z, ARB_F32, a.ndim, a.shape, arb_cpu());
            if (!s) {
                for (int64_t i = 0; i < arb_tensor_numel(&a); i++) ((float *)z.data)[i] = (((float *)a.data)[i] - sh) * sf;
                s = arb_st_writer_add(wr, "latents", ARB_F32, z.ndim, z.shape, z.data);
                arb_tensor_free(&z);
            }
            if (!s) s = arb_st_writer_add(wr, "latent_mean", ARB_F32, a.ndim, a.shape, a.data);
            if (!s) s = arb_st_writer_add(wr, "latent_logvar", ARB_F32, b.ndim, b.shape, b.data);
            char num[64];
            snprintf(num, sizeof num, "%.9g", sf);
            if (!s) s = arb_st_writer_set_metadata(wr, "scaling_factor", num);
            snprintf(num, sizeof num, "%.9g", sh);
            if (!s) s = arb_st_writer_set_metadata(wr, "shift_factor", num);
            if (s) {
                arb_st_writer_abort(wr);
                rc = arb_cli_fail_status(s, "cannot write %s", output);
            } else if ((s = arb_st_writer_commit(wr))) rc = arb_cli_fail_status(s, "cannot write %s", output);
            else printf("%s -> %s (latents [1,%lld,%lld,%lld])\n", file, output, (long long)a.shape[1], (long long)a.shape[2], (long long)a.shape[3]);
        }
    } else {
        arb_safetensors *st;
        if ((s = arb_safetensors_open(&st, file))) rc = arb_cli_fail_status(s, "cannot read %s", file);
        else {
            bool scaled = arb_safetensors_find(st, "latents") != NULL;
            if (!scaled && !arb_safetensors_find(st, "latent_mean")) rc = arb_cli_fail("%s: no 'latents' or 'latent_mean' tensor", file);
            else if ((s = arb_safetensors_load_f32(st, scaled ? "latents" : "latent_mean", &x))) rc = arb_cli_fail_status(s, "%s", file);
            arb_safetensors_close(st);
            if (!rc && scaled && sf != 0.f)
                for (int64_t i = 0; i < arb_tensor_numel(&x); i++) ((float *)x.data)[i] = ((float *)x.data)[i] / sf + sh;
        }
        if (!rc && (s = arb_vae_decode(m, &x, &a))) rc = arb_cli_fail_status(s, "vae decode");
        if (!rc && a.shape[0] != 1) rc = arb_cli_fail("vae decode: %lld images in %s; PNG output takes one", (long long)a.shape[0], file);
        if (!rc && a.shape[1] != 3) rc = arb_cli_fail("vae decode: %lld output channels; PNG output needs 3", (long long)a.shape[1]);
        if (!rc) {
            int h = (int)a.shape[2], w = (int)a.shape[3];
            uint8_t *rgb = malloc((size_t)w * h * 3);
            if (!rgb) rc = arb_cli_fail("out of memory");
            else {
                for (int c = 0; c < 3; c++)
                    for (size_t p = 0; p < (size_t)w * h; p++) {
                        float v = ((float *)a.data)[(size_t)c * w * h + p] * 0.5f + 0.5f;
                        v = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
                        rgb[p * 3 + c] = (uint8_t)lrintf(v * 255.f);
                    }
                if ((s = arb_image_save_png(output, rgb, w, h))) rc = arb_cli_fail_status(s, "cannot write %s", output);
                else printf("%s -> %s (%dx%d)\n", file, output, w, h);
                free(rgb);
            }
        }
    }
    arb_tensor_free(&x), arb_tensor_free(&a), arb_tensor_free(&b);
    arb_sidecar_free(m);
    return rc;
}
