/* `arbitor audit`: the seed report's accounting of a model — logical ternary weights, ternary
 * training state, trainable and frozen float parameters, float buffers — plus bytes of training
 * state per ternary weight. Why a command: "0 trainable float params" is a claim users check. */
#include <stdio.h>
#include <string.h>

#include "arbitor/train.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor audit [--ckpt FILE | --config NAME|FILE]\n"
            "Reports a model's ternary weights, training state and float parameters.\n"
            "\n"
            "  --ckpt FILE          a checkpoint written by arbitor train\n"
            "  --config NAME|FILE   seed, shakespeare, cpu-small, tiny, or a JSON file (default cpu-small)\n"
            "  -h, --help           this text\n");
}

int arb_cmd_audit(int argc, char **argv) {
    const char *ckpt = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (arb_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--ckpt") || !strcmp(a, "--config")) {
            if (!v) return arb_cli_fail("audit: %s needs a value (see arbitor audit --help)", a);
            if (!strcmp(a, "--ckpt")) ckpt = v;
            else config = v;
            i++;
        } else {
            fprintf(stderr, "arbitor: error: audit: unknown option '%s' (see arbitor audit --help)\n", a);
            return 2;
        }
    }
    if (ckpt && config) return arb_cli_fail("audit: give --ckpt or --config, not both");
    arb_model *m = NULL;
    arb_status s;
    if (ckpt) {
        s = arb_checkpoint_load_model(ckpt, arb_cpu(), &m);
    } else {
        arb_model_config cfg;
        s = arb_train_config_resolve(config ? config : "cpu-small", &cfg);
        if (s == ARB_OK) s = arb_model_create(&m, &cfg, 0, arb_cpu());
    }
    if (s != ARB_OK) return arb_cli_fail("audit: %s", arb_last_error());
    arb_audit au;
    memset(&au, 0, sizeof au);
    s = arb_model_audit(m, &au);
    if (s != ARB_OK) {
        arb_model_free(m);
        return arb_cli_fail("audit: %s", arb_last_error());
    }
    char buf[2048];
    if (ckpt) printf("model: %s (checkpoint %s)\n", arb_model_config_of(m)->name, ckpt);
    else printf("model: %s\n", arb_model_config_of(m)->name);
    fputs(arb_audit_format(&au, buf, sizeof buf), stdout);
    size_t L = strlen(buf);
    if (L && buf[L - 1] != '\n') fputc('\n', stdout);
    printf("bytes per ternary weight: %.4f\n",
           au.ternary_weights ? au.ternary_state_bytes / (double)au.ternary_weights : 0.0);
    arb_model_free(m);
    return au.trainable_float_tensors ? 1 : 0; /* a trainable float parameter is a defect */
}
