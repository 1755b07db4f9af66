/* The `arbitor train | generate | audit` commands as a user meets them (run through
 * ARB_CLI_PATH): --help, one-line errors with a non-zero exit for missing/empty data, bad
 * flags and corrupt or truncated checkpoints, nothing half-written, a tiny real run with its
 * TRAIN line and outputs, CLI resume, deterministic generation, the audit lines, and a clean
 * stop with a checkpoint on SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char g_dir[256];
static char g_data[300];

/* Runs `arbitor ARGS` with stdout and stderr captured to files; returns the exit status. */
static int run(const char *args, char *out, size_t out_cap, char *err, size_t err_cap) {
    char cmd[2048], po[320], pe[320];
    snprintf(po, sizeof po, "%s/stdout", g_dir);
    snprintf(pe, sizeof pe, "%s/stderr", g_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", ARB_CLI_PATH, args, po, pe);
    int st = system(cmd);
    char *bufs[2] = {out, err};
    size_t caps[2] = {out_cap, err_cap};
    const char *paths[2] = {po, pe};
    for (int i = 0; i < 2; i++) {
        if (!bufs[i]) continue;
        FILE *f = fopen(paths[i], "rb");
        size_t n = f ? fread(bufs[i], 1, caps[i] - 1, f) : 0;
        bufs[i][n] = 0;
        if (f) fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A failing command: non-zero exit, exactly one line on stderr starting "arbitor: error: ". */
static void expect_error(const char *args, const char *needle) {
    char out[4096], err[4096];
    int rc = run(args, out, sizeof out, err, sizeof err);
    if (rc == 0) fail_msg("'%s' exited 0 (stderr: %s)", args, err);
    if (strncmp(err, "arbitor: error: ", 16) != 0) fail_msg("'%s': stderr does not start with the error prefix: %s", args, err);
    char *nl = strchr(err, '\n');
    if (!nl || nl[1] != 0) fail_msg("'%s': stderr is not one line: %s", args, err);
    if (needle && !strstr(err, needle)) fail_msg("'%s': error '%s' does not mention '%s'", args, err, needle);
}

static void test_help(void **state) {
    (void)state;
    const char *cmds[] = {"train", "generate", "audit"};
    for (int i = 0; i < 3; i++) {
        char args[64], out[8192], err[1024], want[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        assert_int_equal(run(args, out, sizeof out, err, sizeof err), 0);
        snprintf(want, sizeof want, "usage: arbitor %s", cmds[i]);
        assert_non_null(strstr(out, want));
        snprintf(args, sizeof args, "%s -h", cmds[i]);
        assert_int_equal(run(args, out, sizeof out, err, sizeof err), 0);
    }
}

static void test_bad_input(void **state) {
    (void)state;
    char args[4096], outdir[300], empty[300];
    snprintf(outdir, sizeof outdir, "%s/never", g_dir);
    snprintf(empty, sizeof empty, "%s/empty.txt", g_dir);
    FILE *f = fopen(empty, "wb");
    fclose(f);
    snprintf(args, sizeof args, "train --data '%s/missing.txt' --steps 2 --out '%s'", g_dir, outdir);
    expect_error(args, "missing.txt");
    snprintf(args, sizeof args, "train --data '%s' --steps 2 --out '%s'", empty, outdir);
    expect_error(args, "empty");
    snprintf(args, sizeof args, "train --data '%s' --config no-such-config --steps 2 --out '%s'", g_data, outdir);
    expect_error(args, "no-such-config");
    snprintf(args, sizeof args, "train --data '%s' --steps abc --out '%s'", g_data, outdir);
    expect_error(args, "--steps");
    snprintf(args, sizeof args, "train --data '%s' --steps 2 --time-budget -1 --out '%s'", g_data, outdir);
    expect_error(args, "--time-budget");
    snprintf(args, sizeof args, "train --data '%s' --steps 2 --bogus --out '%s'", g_data, outdir);
    expect_error(args, "--bogus");
    snprintf(args, sizeof args, "train --data '%s' --steps", g_data);
    expect_error(args, "--steps");
    snprintf(args, sizeof args, "train --data '%s' --steps 2 --device tpu --out '%s'", g_data, outdir);
    expect_error(args, "tpu");
#ifndef ARB_HAVE_CUDA
    snprintf(args, sizeof args, "train --data '%s' --steps 2 --device cuda --out '%s'", g_data, outdir);
    expect_error(args, "CUDA");
#endif
    /* A corpus too small for the context. */
    char small[300];
    snprintf(small, sizeof small, "%s/small.txt", g_dir);
    f = fopen(small, "wb");
    fputs("just a few bytes", f);
    fclose(f);
    snprintf(args, sizeof args, "train --data '%s' --config tiny --steps 2 --out '%s'", small, outdir);
    expect_error(args, "too small");
    assert_false(exists(outdir)); /* nothing was written for any of these */
    expect_error("generate --prompt hi", "--ckpt");
    snprintf(args, sizeof args, "generate --ckpt '%s/missing.safetensors'", g_dir);
    expect_error(args, "missing.safetensors");
    expect_error("generate --ckpt x --top-k 999", "--top-k");
    expect_error("audit --bogus", "--bogus");
    expect_error("audit --config no-such-config", "no-such-config");
}

static void test_train_generate_audit(void **state) {
    (void)state;
    char args[4096], out[8192], err[16384], run1[300], ckpt[400], p[400];
    snprintf(run1, sizeof run1, "%s/run1", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run1);
    snprintf(args, sizeof args,
             "train --config tiny --data '%s' --steps 4 --batch 2 --seq 16 --eval-windows 4 --seed 7 --out '%s'", g_data,
             run1);
    int rc = run(args, out, sizeof out, err, sizeof err);
    if (rc != 0) fail_msg("train failed: %s", err);
    /* Exactly one stdout line, the TRAIN line, with every field. */
    assert_int_equal(strncmp(out, "TRAIN val_nats_per_byte=", 24), 0);
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n')[1], 0);
    double val, tps, bpw;
    long long tokens, tfp;
    assert_int_equal(sscanf(out, "TRAIN val_nats_per_byte=%lf tokens=%lld tokens_per_s=%lf state_bytes_per_weight=%lf "
                                 "trainable_float_params=%lld",
                            &val, &tokens, &tps, &bpw, &tfp),
                     5);
    assert_true(val > 0 && val < 8);
    assert_int_equal(tokens, 4 * 2 * 16);
    assert_true(tps > 0);
    assert_true(bpw > 1.0 && bpw < 2.0);
    assert_int_equal(tfp, 0);
    assert_true(exists(ckpt));
    snprintf(p, sizeof p, "%s/log.jsonl", run1);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char line[65536];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        assert_non_null(strstr(line, "\"flip_rate\""));
        assert_non_null(strstr(line, "\"zero_frac\""));
        assert_non_null(strstr(line, "\"layers\":[{\"name\""));
    }
    fclose(f);
    assert_true(lines >= 1);
#ifdef ARB_HAVE_PNG
    snprintf(p, sizeof p, "%s/loss.png", run1);
    assert_true(exists(p));
#endif

    /* Generation is deterministic for a seed. */
    char g1[4096], g2[4096], g3[4096];
    snprintf(args, sizeof args, "generate --ckpt '%s' --prompt 'the ' --max-tokens 24 --seed 3", ckpt);
    assert_int_equal(run(args, g1, sizeof g1, err, sizeof err), 0);
    assert_int_equal(run(args, g2, sizeof g2, err, sizeof err), 0);
    assert_string_equal(g1, g2);
    assert_int_equal(strncmp(g1, "the ", 4), 0);
    assert_int_equal(strlen(g1), 4 + 24 + 1);
    snprintf(args, sizeof args, "generate --ckpt '%s' --prompt 'the ' --max-tokens 24 --temperature 0", ckpt);
    assert_int_equal(run(args, g3, sizeof g3, err, sizeof err), 0);
    assert_int_equal(run(args, g2, sizeof g2, err, sizeof err), 0);
    assert_string_equal(g3, g2);

    /* Audit from the checkpoint and from the config agree. */
    char a1[4096], a2[4096];
    snprintf(args, sizeof args, "audit --ckpt '%s'", ckpt);
    assert_int_equal(run(args, a1, sizeof a1, err, sizeof err), 0);
    assert_int_equal(run("audit --config tiny", a2, sizeof a2, err, sizeof err), 0);
    const char *keys[] = {"logical ternary weights: ", "ternary training state: ", "trainable float params: 0 tensors, 0.00 MB",
                          "frozen float params: ", "float buffers: ", "bytes per ternary weight: "};
    for (int i = 0; i < 6; i++) {
        if (!strstr(a1, keys[i])) fail_msg("audit output lacks '%s': %s", keys[i], a1);
        assert_non_null(strstr(a2, keys[i]));
    }
    assert_string_equal(strstr(a1, "logical"), strstr(a2, "logical"));

    /* Resume through the CLI: 4 more steps. */
    char run2[300];
    snprintf(run2, sizeof run2, "%s/run2", g_dir);
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --steps 8 --out '%s'", g_data, ckpt, run2);
    rc = run(args, out, sizeof out, err, sizeof err);
    if (rc != 0) fail_msg("resume failed: %s", err);
    assert_int_equal(sscanf(out, "TRAIN val_nats_per_byte=%lf tokens=%lld", &val, &tokens), 2);
    assert_int_equal(tokens, 8 * 2 * 16);
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --config cpu-small --out '%s/x'", g_data, ckpt, g_dir);
    expect_error(args, "differs");
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --seed 8 --out '%s/x'", g_data, ckpt, g_dir);
    expect_error(args, "seed");
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --batch 3 --out '%s/x'", g_data, ckpt, g_dir);
    expect_error(args, "--batch");
    snprintf(p, sizeof p, "%s/x", g_dir);
    assert_false(exists(p));

    /* Corrupt and truncated checkpoints. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", g_dir);
    f = fopen(bad, "wb");
    fputs("this is not a checkpoint at all, not even close", f);
    fclose(f);
    snprintf(args, sizeof args, "generate --ckpt '%s'", bad);
    expect_error(args, "bad.safetensors");
    snprintf(args, sizeof args, "audit --ckpt '%s'", bad);
    expect_error(args, "bad.safetensors");
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --out '%s/x'", g_data, bad, g_dir);
    expect_error(args, "bad.safetensors");
    snprintf(args, sizeof args, "head -c 3000 '%s' > '%s'", ckpt, bad);
    assert_int_equal(system(args), 0);
    snprintf(args, sizeof args, "generate --ckpt '%s'", bad);
    expect_error(args, "bad.safetensors");
    snprintf(args, sizeof args, "audit --ckpt '%s'", bad);
    expect_error(args, "bad.safetensors");
    snprintf(args, sizeof args, "train --data '%s' --resume '%s' --out '%s/x'", g_data, bad, g_dir);
    expect_error(args, "bad.safetensors");
    assert_false(exists(p));
}

static void test_sigint_saves(void **state) {
    (void)state;
    char dir[300], log[400], ckpt[400], po[400];
    snprintf(dir, sizeof dir, "%s/sig", g_dir);
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
    snprintf(po, sizeof po, "%s/sig.out", g_dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *o = freopen(po, "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)o;
        (void)e;
        execl(ARB_CLI_PATH, ARB_CLI_PATH, "train", "--config", "tiny", "--data", g_data, "--steps", "1000000", "--batch",
              "2", "--seq", "16", "--eval-windows", "4", "--out", dir, (char *)NULL);
        _exit(127);
    }
    /* Wait until training runs (the log file appears after all inputs were checked). */
    for (int i = 0; i < 600 && !exists(log); i++) usleep(50000);
    assert_true(exists(log));
    usleep(500000);
    kill(pid, SIGINT);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(exists(ckpt));
    FILE *f = fopen(po, "r");
    char line[512] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_int_equal(strncmp(line, "TRAIN val_nats_per_byte=", 24), 0);
    char args[1024], out[4096], err[4096];
    snprintf(args, sizeof args, "audit --ckpt '%s'", ckpt);
    assert_int_equal(run(args, out, sizeof out, err, sizeof err), 0);
}

static int setup(void **state) {
    (void)state;
    if (arb_test_tmpdir_make(g_dir, sizeof g_dir, "arb_train_cli") != 0) return -1;
    /* A small corpus of words (about 20 KB). */
    snprintf(g_data, sizeof g_data, "%s/corpus.txt", g_dir);
    FILE *f = fopen(g_data, "wb");
    if (!f) return -1;
    static const char *words[] = {"to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
                                  "nobler", "in", "mind", "suffer", "slings", "arrows", "of", "outrageous", "fortune"};
    arb_rng_key k = arb_rng_key_make(1, 2);
    for (uint32_t i = 0; i < 4000; i++)
        fprintf(f, "%s%s", words[arb_rand_u32(k, i) % 19], arb_rand_u32(k, i + 100000u) % 8 ? " " : "\n");
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return arb_test_tmpdir_remove(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_train_generate_audit),
        cmocka_unit_test(test_sigint_saves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
