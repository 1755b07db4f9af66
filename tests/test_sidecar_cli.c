/* Sidecar loaders and CLI on bad input: a missing, extra, mis-shaped or NaN tensor, a truncated or
 * corrupt checkpoint, wrong configs, unreadable images and audio must give a precise one-line
 * error and a non-zero exit, never a crash or a partial output. Also the happy paths of the CLI:
 * `sidecar run` against the fixture, `sidecar preprocess`, `encode`, `vae encode` → `vae decode`,
 * and --help everywhere. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arbitor/sidecars.h"
#include "testutil.h"

static char g_tmp[256], g_fx[1024];

static int setup(void **s) {
    (void)s;
    if (arb_test_tmpdir_make(g_tmp, sizeof g_tmp, "arb_sc_cli") != 0) return -1;
    arb_test_shared("fixtures", g_fx, sizeof g_fx);
    return 0;
}
static int teardown(void **s) {
    (void)s;
    return arb_test_tmpdir_remove(g_tmp);
}

/* Runs the CLI with stderr captured; returns the exit status, and the stderr text in err. */
static int cli(const char *args, char *err, size_t cap) {
    char cmd[8192], ef[400];
    snprintf(ef, sizeof ef, "%s/stderr.txt", g_tmp);
    snprintf(cmd, sizeof cmd, "%s %s >%s/stdout.txt 2>%s", ARB_CLI_PATH, args, g_tmp, ef);
    int rc = system(cmd);
    FILE *f = fopen(ef, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    if (f) fclose(f);
    err[n] = 0;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* Non-zero exit, exactly one line starting "arbitor: error:", containing `want`. */
static void expect_fail(const char *args, const char *want) {
    char err[4096];
    int rc = cli(args, err, sizeof err);
    printf("  %-60.60s -> %d: %s", args, rc, err);
    assert_true(rc != 0 && rc < 128);
    assert_int_equal(strncmp(err, "arbitor: error: ", 16), 0);
    char *nl = strchr(err, '\n');
    assert_non_null(nl);
    assert_true(nl[1] == 0);
    if (want && !strstr(err, want)) fail_msg("stderr lacks '%s'", want);
}

/* Copies fixture `name` into g_tmp/<dst> and returns the path. */
static const char *copy_fixture(const char *name, const char *dst, char *buf, size_t cap) {
    char cmd[8192];
    snprintf(buf, cap, "%s/%s", g_tmp, dst);
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s/%s %s && chmod -R u+w %s", buf, g_fx, name, buf, buf);
    assert_int_equal(system(cmd), 0);
    return buf;
}

/* Rewrites DIR/model.safetensors through `edit`: drop `drop`, add `add`, reshape `reshape`, NaN `nan`. */
static void rewrite(const char *dir, const char *drop, const char *add, const char *reshape, const char *nan) {
    char p[1200], q[1300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    snprintf(q, sizeof q, "%s/model.orig", dir);
    assert_int_equal(rename(p, q), 0);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, q));
    arb_st_writer *w;
    ARB_ASSERT_OK(arb_st_writer_open(&w, p));
    for (size_t i = 0; i < arb_safetensors_count(st); i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        if (reshape && !strcmp(t->name, reshape)) {
            int64_t sh[1] = {(int64_t)(t->nbytes / 4)};
            ARB_ASSERT_OK(arb_st_writer_add(w, t->name, t->dtype, 1, sh, t->data));
        } else if (nan && !strcmp(t->name, nan)) {
            float *d = malloc(t->nbytes);
            memcpy(d, t->data, t->nbytes);
            d[1] = NAN;
            ARB_ASSERT_OK(arb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, d));
            free(d);
        } else ARB_ASSERT_OK(arb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
    }
    if (add) {
        float z[3] = {0, 0, 0};
        ARB_ASSERT_OK(arb_st_writer_add(w, add, ARB_F32, 1, (int64_t[]){3}, z));
    }
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    arb_safetensors_close(st);
    unlink(q);
}

static void expect_load_error(const char *dir, arb_status want, const char *text) {
    arb_sidecar *m = NULL;
    arb_status s = arb_sidecar_load(&m, dir, ARB_SIDECAR_INT8);
    printf("  load -> %s: %s\n", arb_status_str(s), arb_last_error());
    assert_int_equal(s, want);
    assert_null(m);
    assert_non_null(strstr(arb_last_error(), text));
    assert_null(strchr(arb_last_error(), '\n'));
}

static void test_bad_checkpoints(void **s) {
    (void)s;
    char d[1200];
    copy_fixture("dinov2-tiny", "d", d, sizeof d);
    rewrite(d, "encoder.layer.1.mlp.fc2.bias", NULL, NULL, NULL);
    expect_load_error(d, ARB_ERR_NOT_FOUND, "missing tensor 'encoder.layer.1.mlp.fc2.bias'");
    copy_fixture("dinov2-tiny", "d", d, sizeof d);
    rewrite(d, NULL, "encoder.layer.9.extra", NULL, NULL);
    expect_load_error(d, ARB_ERR_FORMAT, "unexpected tensor 'encoder.layer.9.extra'");
    copy_fixture("dinov2-tiny", "d", d, sizeof d);
    rewrite(d, NULL, NULL, "encoder.layer.0.attention.attention.key.weight", NULL);
    expect_load_error(d, ARB_ERR_SHAPE, "has shape [4096], expected [64,64]");
    copy_fixture("dinov2-tiny", "d", d, sizeof d);
    rewrite(d, NULL, NULL, NULL, "encoder.layer.0.mlp.fc1.weight");
    expect_load_error(d, ARB_ERR_FORMAT, "NaN");
    copy_fixture("moonshine-tiny", "m", d, sizeof d);
    rewrite(d, "model.decoder.layers.1.encoder_attn.v_proj.weight", NULL, NULL, NULL);
    expect_load_error(d, ARB_ERR_NOT_FOUND, "model.decoder.layers.1.encoder_attn.v_proj.weight");
    copy_fixture("vae-tiny", "v", d, sizeof d);
    rewrite(d, "decoder.up_blocks.1.resnets.1.conv2.bias", NULL, NULL, NULL);
    expect_load_error(d, ARB_ERR_NOT_FOUND, "decoder.up_blocks.1.resnets.1.conv2.bias");
    /* truncated file: the safetensors reader's error, through the CLI */
    copy_fixture("dinov2-tiny", "t", d, sizeof d);
    char p[1300], args[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    assert_int_equal(truncate(p, 100000), 0);
    snprintf(args, sizeof args, "sidecar run --model %s --input %s/dinov2-tiny/reference.safetensors --output %s/o.safetensors", d, g_fx, g_tmp);
    expect_fail(args, "model.safetensors");
    snprintf(p, sizeof p, "%s/o.safetensors", g_tmp);
    assert_int_not_equal(access(p, F_OK), 0); /* no partial output */
    /* garbage file */
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    FILE *f = fopen(p, "w");
    fputs("\xff\xff\xff\xff\xff\xff\xff\x7fnot a safetensors file", f);
    fclose(f);
    expect_fail(args, NULL);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_bad_configs(void **s) {
    (void)s;
    char d[1200], p[1300];
    copy_fixture("dinov2-tiny", "c", d, sizeof d);
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": 64, ");
    expect_load_error(d, ARB_ERR_FORMAT, "not a JSON object");
    write_text(p, "{\"model_type\": \"bert\"}");
    expect_load_error(d, ARB_ERR_UNSUPPORTED, "not a DINOv2, Moonshine or AutoencoderKL config");
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": 64, \"num_attention_heads\": 2}");
    expect_load_error(d, ARB_ERR_FORMAT, "missing \"num_hidden_layers\"");
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": 96, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"image_size\": 56}");
    expect_load_error(d, ARB_ERR_SHAPE, "expected [96,3,14,14]");
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": 64, \"num_hidden_layers\": 3, \"num_attention_heads\": 2, \"image_size\": 56}");
    expect_load_error(d, ARB_ERR_NOT_FOUND, "encoder.layer.2");
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": -4, \"num_hidden_layers\": 2, \"num_attention_heads\": 2}");
    expect_load_error(d, ARB_ERR_FORMAT, "\"hidden_size\" must be an integer");
    write_text(p, "{\"model_type\": \"dinov2\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 3}");
    expect_load_error(d, ARB_ERR_FORMAT, "not a multiple");
    copy_fixture("vae-tiny", "cv", d, sizeof d);
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32, 64], \"down_block_types\": [\"DownEncoderBlock2D\"], "
                  "\"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}");
    expect_load_error(d, ARB_ERR_FORMAT, "block type lists");
    unlink(p);
    expect_load_error(d, ARB_ERR_NOT_FOUND, "config.json");
    expect_load_error("/nonexistent/dir", ARB_ERR_NOT_FOUND, "config.json");
}

static void test_cli_errors(void **s) {
    (void)s;
    char args[4096], p[400];
    snprintf(p, sizeof p, "%s/bad.png", g_tmp);
    write_text(p, "\x89PNG\r\n\x1a\nthis is not really a png");
    snprintf(args, sizeof args, "sidecar preprocess image %s --output %s/x.safetensors", p, g_tmp);
    expect_fail(args, "PNG");
    snprintf(p, sizeof p, "%s/bad.wav", g_tmp);
    write_text(p, "RIFF\x24\0\0\0WAVEfmt \x10\0\0\0garbage");
    snprintf(args, sizeof args, "sidecar preprocess audio %s --output %s/x.safetensors", p, g_tmp);
    expect_fail(args, "audio");
    snprintf(args, sizeof args, "encode image /nonexistent.jpg --model %s/dinov2-tiny", g_fx);
    expect_fail(args, "nonexistent.jpg");
    snprintf(args, sizeof args, "encode audio %s --model %s/dinov2-tiny", p, g_fx);
    expect_fail(args, "dinov2 model");
    snprintf(args, sizeof args, "sidecar run --model %s/dinov2-tiny --input x --output y --device cuda", g_fx);
    expect_fail(args, "add --int8");
    expect_fail("sidecar run --model", "incomplete option");
    expect_fail("sidecar run --input x --output y", "required");
    expect_fail("sidecar frobnicate", "unknown subcommand");
    expect_fail("sidecar synth dinov3 --out /tmp/x", "expected dinov2");
    expect_fail("vae encode", NULL);
    snprintf(args, sizeof args, "vae decode %s/dinov2-tiny/reference.safetensors --model %s/vae-tiny --output %s/x.png", g_fx, g_fx, g_tmp);
    expect_fail(args, "no 'latents'");
    snprintf(args, sizeof args, "sidecar run --model %s/vae-tiny --input %s/dinov2-tiny/reference.safetensors --output %s/x.st", g_fx, g_fx, g_tmp);
    expect_fail(args, "'sample'");
    const char *helps[] = {"sidecar --help", "sidecar run --help", "encode --help", "vae --help", "bench sidecars --help"};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        char err[4096];
        assert_int_equal(cli(helps[i], err, sizeof err), 0);
    }
}

static void test_cli_run_and_roundtrips(void **s) {
    (void)s;
    char args[4096], out[400], err[4096];
    snprintf(out, sizeof out, "%s/run.safetensors", g_tmp);
    snprintf(args, sizeof args, "sidecar run --model %s/moonshine-tiny --input %s/moonshine-tiny/reference.safetensors --output %s", g_fx, g_fx, out);
    assert_int_equal(cli(args, err, sizeof err), 0);
    char ref[1200];
    snprintf(ref, sizeof ref, "%s/moonshine-tiny/reference.safetensors", g_fx);
    arb_safetensors *a, *b;
    ARB_ASSERT_OK(arb_safetensors_open(&a, out));
    ARB_ASSERT_OK(arb_safetensors_open(&b, ref));
    const char *names[2] = {"encoder_last_hidden_state", "logits"};
    for (int i = 0; i < 2; i++) {
        const arb_st_tensor *x = arb_safetensors_find(a, names[i]), *y = arb_safetensors_find(b, names[i]);
        assert_non_null(x);
        assert_int_equal(x->nbytes, y->nbytes);
        double e = arb_test_rel_l2((const float *)x->data, (const float *)y->data, x->nbytes / 4);
        printf("  sidecar run moonshine-tiny %s rel L2 %.2e\n", names[i], e);
        assert_true(e < 1e-4);
    }
    assert_string_equal(arb_safetensors_metadata(a, "quantized_int8"), "false");
    arb_safetensors_close(a);
    arb_safetensors_close(b);
#ifdef ARB_HAVE_PNG
    /* PNG → preprocess, encode, and VAE encode → decode */
    int w = 40, h = 24;
    uint8_t *img = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) img[i] = (uint8_t)((i * 37) ^ (i / 7));
    char png[400], lat[400], png2[400];
    snprintf(png, sizeof png, "%s/in.png", g_tmp);
    ARB_ASSERT_OK(arb_image_save_png(png, img, w, h));
    snprintf(args, sizeof args, "sidecar preprocess image %s --output %s/pv.safetensors", png, g_tmp);
    assert_int_equal(cli(args, err, sizeof err), 0);
    snprintf(args, sizeof args, "encode image %s --model %s/dinov2-small-1layer --output %s/f.safetensors --int8", png, g_fx, g_tmp);
    assert_int_equal(cli(args, err, sizeof err), 0);
    snprintf(lat, sizeof lat, "%s/lat.safetensors", g_tmp);
    snprintf(png2, sizeof png2, "%s/out.png", g_tmp);
    snprintf(args, sizeof args, "vae encode %s --model %s/vae-tiny --output %s", png, g_fx, lat);
    assert_int_equal(cli(args, err, sizeof err), 0);
    snprintf(args, sizeof args, "vae decode %s --model %s/vae-tiny --output %s", lat, g_fx, png2);
    assert_int_equal(cli(args, err, sizeof err), 0);
    uint8_t *back;
    int bw, bh;
    ARB_ASSERT_OK(arb_image_load(png2, &back, &bw, &bh));
    assert_int_equal(bw, w);
    assert_int_equal(bh, h);
    arb_free(back);
    free(img);
#endif
}

int main(void) {
    arb_test_require_shared();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_checkpoints), cmocka_unit_test(test_bad_configs), cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_run_and_roundtrips),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
