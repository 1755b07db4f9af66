/* Training data and helpers: corpus loading and split, batches as a pure function of
 * (seed, step) that stay inside the training split, the fixed validation windows, the fortunes
 * loader's file selection, the eta schedule and flip controller, exact double<->hex, config
 * files layered on named configs, and the loss PNG (decoded back with libpng). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef ARB_HAVE_PNG
#include <png.h>
#endif

#include "arbitor/train.h"
#include "testutil.h"

static char g_dir[256];

static void write_file(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void test_corpus_file_and_split(void **state) {
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/c.txt", g_dir);
    char text[1000];
    for (int i = 0; i < 1000; i++) text[i] = (char)('a' + i % 26);
    write_file(p, text, sizeof text);
    arb_corpus c;
    ARB_ASSERT_OK(arb_corpus_load_file(&c, p));
    assert_int_equal(c.n, 1000);
    assert_int_equal(c.train_n, 900); /* first 90% */
    assert_int_equal(c.val_n, 100);
    assert_memory_equal(c.bytes, text, 1000);
    /* FNV-1a 64 of the bytes, computed independently here. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 1000; i++) h = (h ^ (uint8_t)text[i]) * 0x100000001b3ull;
    assert_true(c.hash == h);
    ARB_ASSERT_OK(arb_corpus_check(&c, 98));
    assert_int_equal(arb_corpus_check(&c, 99), ARB_ERR_INVALID_ARG); /* val holds 100 < 99 + 2 */
    assert_non_null(strstr(arb_last_error(), "too small"));
    arb_corpus_free(&c);

    snprintf(p, sizeof p, "%s/empty.txt", g_dir);
    write_file(p, "", 0);
    assert_int_equal(arb_corpus_load_file(&c, p), ARB_ERR_INVALID_ARG);
    assert_non_null(strstr(arb_last_error(), "empty"));
    snprintf(p, sizeof p, "%s/missing.txt", g_dir);
    assert_int_equal(arb_corpus_load_file(&c, p), ARB_ERR_IO);
    assert_non_null(strstr(arb_last_error(), "missing.txt"));
    assert_int_equal(arb_corpus_load_file(&c, g_dir), ARB_ERR_IO); /* a directory */
}

static void test_batches(void **state) {
    (void)state;
    enum { N = 5000, B = 7, T = 33 };
    uint8_t *bytes = malloc(N);
    /* Random bytes: a window of 34 of them occurs once, so matching finds where it came from. */
    arb_rng_key k = arb_rng_key_make(5, 5);
    for (int i = 0; i < N; i++) bytes[i] = (uint8_t)arb_rand_u32(k, (uint32_t)i);
    arb_corpus c;
    ARB_ASSERT_OK(arb_corpus_from_memory(&c, bytes, N, "synthetic"));
    int32_t a[B * (T + 1)], b[B * (T + 1)];
    ARB_ASSERT_OK(arb_corpus_train_batch(&c, 11, 5, B, T, a));
    ARB_ASSERT_OK(arb_corpus_train_batch(&c, 11, 5, B, T, b));
    assert_memory_equal(a, b, sizeof a); /* pure function of (seed, step) */
    ARB_ASSERT_OK(arb_corpus_train_batch(&c, 11, 6, B, T, b));
    assert_true(memcmp(a, b, sizeof a) != 0);
    ARB_ASSERT_OK(arb_corpus_train_batch(&c, 12, 5, B, T, b));
    assert_true(memcmp(a, b, sizeof a) != 0);
    /* Every window of many steps is a slice of the training split. */
    for (uint64_t step = 0; step < 200; step++) {
        ARB_ASSERT_OK(arb_corpus_train_batch(&c, 3, step, B, T, a));
        for (int r = 0; r < B; r++) {
            int found = -1;
            for (size_t s0 = 0; s0 + T + 1 <= c.train_n && found < 0; s0++) {
                int t = 0;
                while (t <= T && a[r * (T + 1) + t] == bytes[s0 + (size_t)t]) t++;
                if (t > T) found = (int)s0;
            }
            if (found < 0) fail_msg("step %llu row %d is not a slice of the training split", (unsigned long long)step, r);
        }
    }
    /* Validation windows: fixed, inside the validation split, targets not overlapping. */
    int64_t nwin = arb_corpus_val_windows(&c, T, 1000);
    assert_int_equal(nwin, (int64_t)((c.val_n - 1) / T));
    int32_t *v = malloc(sizeof(int32_t) * (size_t)nwin * (T + 1));
    ARB_ASSERT_OK(arb_corpus_val_batch(&c, 0, nwin, nwin, T, v));
    int64_t prev_end = -1;
    for (int64_t w = 0; w < nwin; w++) {
        int64_t found = -1;
        for (size_t s0 = c.train_n; s0 + T + 1 <= c.n && found < 0; s0++) {
            int t = 0;
            while (t <= T && v[w * (T + 1) + t] == bytes[s0 + (size_t)t]) t++;
            if (t > T) found = (int64_t)s0;
        }
        assert_true(found >= 0);
        assert_true(found + 1 > prev_end); /* targets [start+1, start+T] do not overlap the previous */
        prev_end = found + T;
    }
    int32_t one[T + 1];
    ARB_ASSERT_OK(arb_corpus_val_batch(&c, 2, 1, nwin, T, one));
    assert_memory_equal(one, v + 2 * (T + 1), sizeof one);
    assert_int_equal(arb_corpus_val_batch(&c, nwin - 1, 2, nwin, T, one), ARB_ERR_INVALID_ARG);
    free(v);
    free(bytes);
    arb_corpus_free(&c);
}

static void test_fortunes_selection(void **state) {
    (void)state;
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/fortunes", g_dir);
    assert_int_equal(mkdir(d, 0777), 0);
    const char *files[][2] = {{"zeta", "Z\n%\n"},       {"alpha", "A says hi\n%\n"}, {"alpha.dat", "XXXX"},
                              {"alpha.u8", "YYYY"},     {"ascii-art", "@@@@"},      {"beta-o", "offensive"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i][0]);
        write_file(p, files[i][1], strlen(files[i][1]));
    }
    snprintf(p, sizeof p, "%s/off", d);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/off/rude", d);
    write_file(p, "rude", 4);
    arb_corpus c;
    ARB_ASSERT_OK(arb_corpus_load_fortunes(&c, d));
    const char *want = "A says hi\n%\nZ\n%\n"; /* name order, index/offensive/art files skipped */
    assert_int_equal(c.n, strlen(want));
    assert_memory_equal(c.bytes, want, c.n);
    assert_non_null(strstr(c.source, "2 files"));
    arb_corpus_free(&c);
    snprintf(p, sizeof p, "%s/nothing-here", g_dir);
    assert_int_equal(arb_corpus_load_fortunes(&c, p), ARB_ERR_NOT_FOUND);
    assert_non_null(strstr(arb_last_error(), "fortunes"));
    assert_null(strchr(arb_last_error(), '\n'));
}

static void test_schedule(void **state) {
    (void)state;
    arb_schedule s = arb_schedule_default();
    s.eta0 = 8;
    s.eta_final_frac = 0.1;
    assert_true(fabs(arb_schedule_eta(&s, 0) - 8.0) < 1e-12);
    assert_true(fabs(arb_schedule_eta(&s, 1) - 0.8) < 1e-12);
    assert_true(fabs(arb_schedule_eta(&s, 0.5) - 8.0 * (0.1 + 0.9 * 0.5)) < 1e-12);
    assert_true(fabs(arb_schedule_eta(&s, 2) - 0.8) < 1e-12); /* clamped */
    for (double p = 0; p < 1; p += 0.01) assert_true(arb_schedule_eta(&s, p + 0.01) <= arb_schedule_eta(&s, p));
    assert_true(fabs(arb_schedule_flip_target(&s, 0) - 1e-3) < 1e-15);
    assert_true(fabs(arb_schedule_flip_target(&s, 1) - 1e-4) < 1e-15);
    assert_true(fabs(arb_schedule_flip_target(&s, 0.5) - sqrt(1e-3 * 1e-4)) < 1e-12); /* geometric midpoint */
    /* Controller: too many flips lowers the multiplier, too few raises it, within limits. */
    double m = 1.0;
    assert_true(arb_schedule_ctrl_update(&s, m, 100000, 1000000, 0) < 1.0);  /* 0.1 vs 1e-3 */
    assert_true(arb_schedule_ctrl_update(&s, m, 0, 1000000, 0) > 1.0);
    assert_true(fabs(arb_schedule_ctrl_update(&s, m, 1000, 1000000, 0) - 1.0) < 0.01); /* on target */
    for (int i = 0; i < 1000; i++) m = arb_schedule_ctrl_update(&s, m, 0, 1000000, 0.3);
    assert_true(m == s.ctrl_max);
    for (int i = 0; i < 1000; i++) m = arb_schedule_ctrl_update(&s, m, 1000000, 1000000, 0.3);
    assert_true(m == s.ctrl_min);
}

static void test_hex(void **state) {
    (void)state;
    double xs[] = {0.0, -0.0, 1.0, -2.5, M_PI, 1e-310 /* subnormal */, 1.7976931348623157e308, INFINITY, NAN};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        char hx[17];
        double y;
        arb_f64_to_hex(xs[i], hx);
        assert_int_equal(strlen(hx), 16);
        assert_true(arb_f64_from_hex(hx, &y));
        assert_memory_equal(&xs[i], &y, sizeof y);
    }
    char hx[17];
    arb_f64_to_hex(1.0, hx);
    assert_string_equal(hx, "3ff0000000000000");
    double y;
    assert_false(arb_f64_from_hex("3ff000000000000", &y));   /* 15 digits */
    assert_false(arb_f64_from_hex("3ff000000000000g", &y));
    assert_false(arb_f64_from_hex("3FF0000000000000", &y));  /* we write lower case only */
    assert_false(arb_f64_from_hex(NULL, &y));
}

static void test_config_resolve(void **state) {
    (void)state;
    arb_model_config a, b;
    ARB_ASSERT_OK(arb_train_config_resolve("cpu-small", &a));
    ARB_ASSERT_OK(arb_model_config_named("cpu-small", &b));
    char *ja = NULL, *jb = NULL; /* compare the JSON forms: the structs have padding bytes */
    ARB_ASSERT_OK(arb_model_config_to_json(&a, &ja));
    ARB_ASSERT_OK(arb_model_config_to_json(&b, &jb));
    assert_string_equal(ja, jb);
    free(ja);
    free(jb);
    char p[512];
    snprintf(p, sizeof p, "%s/cfg.json", g_dir);
    const char *js = "{\"name\": \"tiny\", \"dim\": 48, \"n_heads\": 4}";
    write_file(p, js, strlen(js));
    ARB_ASSERT_OK(arb_train_config_resolve(p, &a));
    ARB_ASSERT_OK(arb_model_config_named("tiny", &b));
    assert_int_equal(a.dim, 48);
    assert_int_equal(a.n_heads, 4);
    assert_int_equal(a.n_layers, b.n_layers); /* the rest from "tiny" */
    assert_int_equal(a.enable_vq, b.enable_vq);
    js = "{\"dim\": 48, \"bogus\": 1}";
    write_file(p, js, strlen(js));
    assert_int_equal(arb_train_config_resolve(p, &a), ARB_ERR_FORMAT);
    assert_non_null(strstr(arb_last_error(), "bogus"));
    write_file(p, "{not json", 9);
    assert_int_equal(arb_train_config_resolve(p, &a), ARB_ERR_FORMAT);
    assert_int_equal(arb_train_config_resolve("no-such-config", &a), ARB_ERR_NOT_FOUND);
    assert_null(strchr(arb_last_error(), '\n'));
}

static void test_plot_png(void **state) {
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/loss.png", g_dir);
    double tx[50], ty[50], vx[5], vy[5];
    for (int i = 0; i < 50; i++) { tx[i] = i * 10; ty[i] = 5.5 * exp(-i / 15.0) + 1.5; }
    for (int i = 0; i < 5; i++) { vx[i] = i * 120; vy[i] = 5.6 * exp(-i / 1.5) + 1.6; }
#ifndef ARB_HAVE_PNG
    assert_int_equal(arb_plot_loss_png(p, "t", tx, ty, 50, vx, vy, 5), ARB_ERR_UNSUPPORTED);
    skip();
#else
    ARB_ASSERT_OK(arb_plot_loss_png(p, "test: loss", tx, ty, 50, vx, vy, 5));
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng could not decode the plot");
    png_init_io(png, f);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    assert_int_equal(w, 900);
    assert_int_equal(h, 540);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    uint8_t *row = malloc(w * 3);
    long blue = 0, orange = 0, dark = 0;
    for (uint32_t y = 0; y < h; y++) {
        png_read_row(png, row, NULL);
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *q = row + 3 * x;
            blue += q[0] == 31 && q[1] == 119 && q[2] == 180;
            orange += q[0] == 230 && q[1] == 110 && q[2] == 10;
            dark += q[0] == 0 && q[1] == 0 && q[2] == 0;
        }
    }
    free(row);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    assert_true(blue > 500);   /* the train curve (and its legend swatch) */
    assert_true(orange > 300); /* the validation curve with markers */
    assert_true(dark > 2000);  /* axes, tick labels, legend text */
    /* Empty and non-finite data still give a picture, not a crash. */
    double bad[2] = {NAN, INFINITY};
    ARB_ASSERT_OK(arb_plot_loss_png(p, NULL, bad, bad, 2, NULL, NULL, 0));
    ARB_ASSERT_OK(arb_plot_loss_png(p, NULL, NULL, NULL, 0, NULL, NULL, 0));
    /* An unwritable place is an error and leaves nothing behind. */
    snprintf(p, sizeof p, "%s/no-such-dir/loss.png", g_dir);
    assert_int_equal(arb_plot_loss_png(p, NULL, tx, ty, 50, vx, vy, 5), ARB_ERR_IO);
#endif
}

static int setup(void **state) {
    (void)state;
    return arb_test_tmpdir_make(g_dir, sizeof g_dir, "arb_train_data");
}

static int teardown(void **state) {
    (void)state;
    return arb_test_tmpdir_remove(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_file_and_split), cmocka_unit_test(test_batches),
        cmocka_unit_test(test_fortunes_selection),    cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_hex),                   cmocka_unit_test(test_config_resolve),
        cmocka_unit_test(test_plot_png),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
