/* Sidecar preprocessing: DINOv2 pixel_values vs the fixture (BitImageProcessor, max abs ≤ 2e-2),
 * the bicubic resize vs live Pillow on fresh random images (bit-exact), PNG round trip, JPEG
 * decode vs Pillow, audio decode (WAV/FLAC/OGG, stereo downmix, resampling) vs analytic sines,
 * and one-line errors (no crash) on corrupt inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbitor/sidecars.h"
#include "sidecars/sc_internal.h"
#include "testutil.h"

static char g_tmp[256];

static int setup(void **s) {
    (void)s;
    return arb_test_tmpdir_make(g_tmp, sizeof g_tmp, "arb_sc_pre");
}
static int teardown(void **s) {
    (void)s;
    return arb_test_tmpdir_remove(g_tmp);
}

static bool have_pil(void) { return system("python3 -c 'import PIL, numpy' >/dev/null 2>&1") == 0; }

static void test_fixture_pixel_values(void **s) {
    (void)s;
    char dir[1024], p[1200];
    if (!arb_test_shared("fixtures/dinov2-preprocess", dir, sizeof dir)) skip();
    snprintf(p, sizeof p, "%s/reference.safetensors", dir);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));
    const arb_st_tensor *img = arb_safetensors_find(st, "image_hwc_u8"), *ref = arb_safetensors_find(st, "pixel_values");
    assert_non_null(img);
    assert_non_null(ref);
    arb_tensor pv;
    ARB_ASSERT_OK(arb_image_preprocess_dinov2((const uint8_t *)img->data, (int)img->shape[1], (int)img->shape[0], &pv));
    assert_int_equal(arb_tensor_numel(&pv), 3 * 224 * 224);
    double mx = arb_test_max_abs((const float *)pv.data, (const float *)ref->data, 3 * 224 * 224);
    printf("  dinov2-preprocess pixel_values max abs %.3e (tol 2e-2)\n", mx);
    assert_true(mx <= 2e-2);
    arb_tensor_free(&pv);
    arb_safetensors_close(st);
}

/* Random RGB images resized the way the processor does (aspect kept: shortest edge → 256, long
 * side truncated), down- and upscaling, odd sizes, extreme ratios; Pillow resizes the same bytes;
 * the outputs must be identical. (Pillow 13 runs the vertical pass first for some non-uniform
 * rescales, e.g. x up and y down; the processor never asks for those.) */
static void test_resize_vs_pillow(void **s) {
    (void)s;
    if (!have_pil()) {
        printf("  (Pillow not installed: skipped)\n");
        return;
    }
    static const int cases[][4] = {{300, 400, 256, 341}, {57, 31, 470, 256}, {100, 17, 1505, 256}, {5, 9, 256, 460}, {640, 480, 341, 256}, {1023, 999, 262, 256}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int w = cases[ci][0], h = cases[ci][1], ow = cases[ci][2], oh = cases[ci][3];
        size_t n = (size_t)w * h * 3;
        uint8_t *src = malloc(n), *dst = malloc((size_t)ow * oh * 3), *ref = malloc((size_t)ow * oh * 3);
        arb_test_fill_i8((int8_t *)src, n, 1000 + ci, -128, 127);
        char in[400], out[400], cmd[1400];
        snprintf(in, sizeof in, "%s/in.raw", g_tmp);
        snprintf(out, sizeof out, "%s/out.raw", g_tmp);
        FILE *f = fopen(in, "wb");
        fwrite(src, 1, n, f);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"from PIL import Image; im=Image.frombytes('RGB',(%d,%d),open('%s','rb').read()); "
                 "open('%s','wb').write(im.resize((%d,%d), resample=3).tobytes())\"",
                 w, h, in, out, ow, oh);
        assert_int_equal(system(cmd), 0);
        f = fopen(out, "rb");
        assert_int_equal(fread(ref, 1, (size_t)ow * oh * 3, f), (size_t)ow * oh * 3);
        fclose(f);
        ARB_ASSERT_OK(arb_image_resize_bicubic(src, w, h, 3, dst, ow, oh));
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)ow * oh * 3; i++) diff += dst[i] != ref[i];
        printf("  resize %dx%d -> %dx%d: %zu bytes differ from Pillow\n", w, h, ow, oh, diff);
        assert_int_equal(diff, 0);
        free(src), free(dst), free(ref);
    }
}

static void test_png_jpeg(void **s) {
    (void)s;
#if defined(ARB_HAVE_PNG) && defined(ARB_HAVE_JPEG)
    int w = 37, h = 23;
    uint8_t *img = malloc((size_t)w * h * 3);
    arb_test_fill_i8((int8_t *)img, (size_t)w * h * 3, 7, -128, 127);
    char p[400];
    snprintf(p, sizeof p, "%s/a.png", g_tmp);
    ARB_ASSERT_OK(arb_image_save_png(p, img, w, h));
    uint8_t *back;
    int bw, bh;
    ARB_ASSERT_OK(arb_image_load(p, &back, &bw, &bh));
    assert_int_equal(bw, w);
    assert_int_equal(bh, h);
    assert_memory_equal(back, img, (size_t)w * h * 3);
    arb_free(back);
    if (have_pil()) { /* JPEG (and a gray+alpha PNG) written and decoded by Pillow, decoded by us */
        char j[300], raw[300], cmd[4096], g[300], graw[300];
        snprintf(j, sizeof j, "%s/a.jpg", g_tmp);
        snprintf(raw, sizeof raw, "%s/a_jpg.raw", g_tmp);
        snprintf(g, sizeof g, "%s/la.png", g_tmp);
        snprintf(graw, sizeof graw, "%s/la.raw", g_tmp);
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"from PIL import Image; im=Image.open('%s'); im.save('%s', quality=90); "
                 "open('%s','wb').write(Image.open('%s').convert('RGB').tobytes()); "
                 "la=im.convert('LA'); la.save('%s'); open('%s','wb').write(Image.open('%s').convert('RGB').tobytes())\"",
                 p, j, raw, j, g, graw, g);
        assert_int_equal(system(cmd), 0);
        const char *files[2][2] = {{j, raw}, {g, graw}};
        for (int k = 0; k < 2; k++) {
            ARB_ASSERT_OK(arb_image_load(files[k][0], &back, &bw, &bh));
            assert_int_equal(bw, w);
            assert_int_equal(bh, h);
            uint8_t *ref = malloc((size_t)w * h * 3);
            FILE *f = fopen(files[k][1], "rb");
            assert_int_equal(fread(ref, 1, (size_t)w * h * 3, f), (size_t)w * h * 3);
            fclose(f);
            int mx = 0;
            for (size_t i = 0; i < (size_t)w * h * 3; i++) mx = abs(back[i] - ref[i]) > mx ? abs(back[i] - ref[i]) : mx;
            printf("  %s decode vs Pillow: max diff %d\n", k ? "gray+alpha PNG" : "JPEG", mx);
            assert_true(mx <= 1);
            free(ref);
            arb_free(back);
        }
    }
    free(img);
#else
    printf("  (no libpng/libjpeg in this build: checking the error path)\n");
    uint8_t *rgb;
    int w, h;
    assert_int_equal(arb_image_decode("\x89PNG\r\n\x1a\n....", 12, &rgb, &w, &h), ARB_ERR_UNSUPPORTED);
#endif
}

static void test_image_errors(void **s) {
    (void)s;
    uint8_t *rgb;
    int w, h;
    assert_int_equal(arb_image_decode("hello world", 11, &rgb, &w, &h), ARB_ERR_FORMAT);
    assert_int_equal(arb_image_decode("\xff\xd8\xff\xe0garbage", 12, &rgb, &w, &h),
#ifdef ARB_HAVE_JPEG
                     ARB_ERR_FORMAT
#else
                     ARB_ERR_UNSUPPORTED
#endif
    );
    assert_int_equal(arb_image_decode("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16, &rgb, &w, &h),
#ifdef ARB_HAVE_PNG
                     ARB_ERR_FORMAT
#else
                     ARB_ERR_UNSUPPORTED
#endif
    );
    assert_true(strlen(arb_last_error()) > 0 && !strchr(arb_last_error(), '\n'));
    assert_int_equal(arb_image_load("/nonexistent/x.png", &rgb, &w, &h), ARB_ERR_IO);
}

static void test_audio(void **s) {
    (void)s;
#ifdef ARB_HAVE_AUDIO
    /* stereo 44.1 kHz: left = 440 Hz sine, right = 1000 Hz sine (amplitudes 0.5, 0.25) */
    int rate = 44100;
    size_t frames = 44100;
    float *st = malloc(frames * 2 * sizeof(float));
    for (size_t i = 0; i < frames; i++) {
        st[2 * i] = 0.5f * sinf(2.f * (float)M_PI * 440.f * (float)i / rate);
        st[2 * i + 1] = 0.25f * sinf(2.f * (float)M_PI * 1000.f * (float)i / rate);
    }
    const char *names[] = {"a.wav", "a.flac", "a.ogg", "f.wav"};
    const double tol[] = {2e-3, 2e-3, 6e-2, 1e-3}; /* 16-bit PCM; Vorbis is lossy */
    for (int fmt = 0; fmt < 4; fmt++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", g_tmp, names[fmt]);
        ARB_ASSERT_OK(sc_audio_write(p, fmt, rate, 2, st, frames));
        float *mono;
        size_t n;
        ARB_ASSERT_OK(arb_audio_load(p, 16000, &mono, &n));
        assert_true(n >= 15990 && n <= 16010);
        /* compare the middle (away from the resampler's edges) with the analytic downmix */
        double err = 0, ref = 0;
        for (size_t i = 1000; i < 15000; i++) {
            double t = (double)i / 16000.0;
            double want = 0.5 * (0.5 * sin(2 * M_PI * 440 * t) + 0.25 * sin(2 * M_PI * 1000 * t));
            err = fmax(err, fabs(mono[i] - want));
            ref = fmax(ref, fabs(want));
        }
        printf("  %s: %zu samples at 16 kHz, max abs error vs analytic %.2e\n", names[fmt], n, err);
        assert_true(err <= tol[fmt]);
        arb_free(mono);
    }
    /* 16 kHz mono WAV: passes through unchanged (only PCM16 rounding) */
    char p[400];
    snprintf(p, sizeof p, "%s/m.wav", g_tmp);
    float *m16 = malloc(16000 * sizeof(float));
    arb_test_fill_f32(m16, 16000, 3, -0.9f, 0.9f);
    ARB_ASSERT_OK(sc_audio_write(p, 3, 16000, 1, m16, 16000));
    float *back;
    size_t n;
    ARB_ASSERT_OK(arb_audio_load(p, 16000, &back, &n));
    assert_int_equal(n, 16000);
    assert_memory_equal(back, m16, 16000 * sizeof(float));
    arb_free(back);
    free(m16);
    free(st);
    assert_int_equal(arb_audio_decode("RIFF\x10\0\0\0WAVEfmt ", 16, 16000, &back, &n), ARB_ERR_FORMAT);
    assert_int_equal(arb_audio_decode("not audio at all", 16, 16000, &back, &n), ARB_ERR_FORMAT);
#else
    float *back;
    size_t n;
    assert_int_equal(arb_audio_decode("RIFF\x10\0\0\0WAVEfmt ", 16, 16000, &back, &n), ARB_ERR_UNSUPPORTED);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_pixel_values), cmocka_unit_test(test_resize_vs_pillow),
        cmocka_unit_test(test_png_jpeg),             cmocka_unit_test(test_image_errors),
        cmocka_unit_test(test_audio),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
