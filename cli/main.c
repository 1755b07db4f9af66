/* arbitor — the command line. Dispatches to one subcommand per file (cli/cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
    const char *name;
    const char *summary;
} g_cmds[] = {
    {"train", "train a model (default: the built-in corpus and config)"},
    {"generate", "sample text from a checkpoint"},
    {"audit", "report ternary weights, training state and float parameters"},
    {"inspect", "list the tensors, dtypes, shapes and metadata of a safetensors file"},
    {"bench", "benchmarks: kernels, sidecars"},
    {"sidecar", "run or preprocess for a sidecar encoder (DINOv2, Moonshine, VAE)"},
    {"encode", "encode an image or audio file into features"},
    {"vae", "VAE encode/decode between PNG and latents"},
};

static arb_cli_cmd_fn lookup(const char *name) {
    if (!strcmp(name, "train")) return arb_cmd_train;
    if (!strcmp(name, "generate")) return arb_cmd_generate;
    if (!strcmp(name, "audit")) return arb_cmd_audit;
    if (!strcmp(name, "inspect")) return arb_cmd_inspect;
    if (!strcmp(name, "bench")) return arb_cmd_bench;
    if (!strcmp(name, "sidecar")) return arb_cmd_sidecar;
    if (!strcmp(name, "encode")) return arb_cmd_encode;
    if (!strcmp(name, "vae")) return arb_cmd_vae;
    return NULL;
}

/* Commands whose OpenMP regions are long-running loops on a possibly shared machine take a
 * short barrier spin (see arb_cli_prefer_short_omp_spin); `bench kernels` keeps the spinning
 * default, since a sleeping thread's wake-up would dominate a 10 µs GEMV. */
static bool wants_short_spin(int argc, char **argv) {
    static const char *const cmds[] = {"train", "generate", "sidecar", "encode", "vae"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i])) return true;
    return !strcmp(argv[1], "bench") && argc > 2 && !strcmp(argv[2], "sidecars");
}

static void usage(FILE *f) {
    fprintf(f, "usage: arbitor <command> [options]   (arbitor <command> --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (lookup(g_cmds[i].name)) fprintf(f, "  %-10s %s\n", g_cmds[i].name, g_cmds[i].summary);
    fprintf(f, "\narbitor %s  (CPU kernels: %s)\n", arb_version(), arb_cpu_tier_name(arb_cpu_tier_get()));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (arb_cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("arbitor %s\n", arb_version());
        return 0;
    }
    if (wants_short_spin(argc, argv)) arb_cli_prefer_short_omp_spin(argv);
    arb_cli_cmd_fn fn = lookup(argv[1]);
    if (!fn) {
        fprintf(stderr, "arbitor: error: unknown command '%s' (try 'arbitor --help')\n", argv[1]);
        return 2;
    }
    return fn(argc - 1, argv + 1);
}
