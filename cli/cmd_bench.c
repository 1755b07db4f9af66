/* `arbitor bench <what>`: dispatches to one benchmark per file (cli/bench_<what>.c), each a weak
 * symbol so a build without one says so instead of failing to link. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: arbitor bench <what> [options]   (arbitor bench <what> --help for each)\n\n"
            "  kernels    ternary CPU/CUDA kernels against this machine's measured int8 peak and bandwidth\n"
            "  sidecars   the frozen encoders (DINOv2, Moonshine, VAE)\n");
}

int arb_cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        bench_usage(stderr);
        return 2;
    }
    if (arb_cli_is_help(argv[1])) {
        bench_usage(stdout);
        return 0;
    }
    arb_cli_cmd_fn fn = NULL;
    if (!strcmp(argv[1], "kernels")) fn = arb_bench_kernels;
    else if (!strcmp(argv[1], "sidecars")) fn = arb_bench_sidecars;
    else return arb_cli_fail("unknown benchmark '%s' (try: kernels, sidecars)", argv[1]);
    if (!fn) return arb_cli_fail("benchmark '%s' is not part of this build", argv[1]);
    return fn(argc - 1, argv + 1);
}
