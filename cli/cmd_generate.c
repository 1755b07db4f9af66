/* `arbitor generate`: sample bytes from a checkpoint. Why counter-based sampling: the same
 * checkpoint, prompt and seed give the same text on any machine and thread count. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/train.h"
#include "cli.h"

#define ARB_STREAM_SAMPLE 0x5A3B1E0000000000ull

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor generate --ckpt FILE [--prompt TEXT] [--max-tokens N] [--temperature T] [--top-k K] [--seed S]\n"
            "Continues TEXT (default: a newline) with bytes sampled from the model in FILE; prints prompt + continuation.\n"
            "\n"
            "  --ckpt FILE        a checkpoint written by arbitor train\n"
            "  --prompt TEXT      the start of the text (bytes)\n"
            "  --max-tokens N     bytes to generate (default 256)\n"
            "  --temperature T    0 = greedy; default 0.8\n"
            "  --top-k K          sample among the K most likely bytes (default 0 = all 256)\n"
            "  --seed S           sampling seed (default 1); same seed, same text\n"
            "  --threads N        CPU threads (default: all cores)\n"
            "  --device cpu|cuda  where the model runs (default cpu; a checkpoint from either loads on both)\n"
            "  -h, --help         this text\n");
}

typedef struct cand {
    float logit;
    int id;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id; /* ties: lower byte first, so the order is total */
}

/* Picks a byte from logits[0..255] (special tokens are never sampled). */
static int sample_byte(const float *logits, double temperature, int top_k, arb_rng_key key, uint32_t index) {
    cand c[256];
    for (int i = 0; i < 256; i++) {
        c[i].logit = isfinite(logits[i]) ? logits[i] : -INFINITY;
        c[i].id = i;
    }
    qsort(c, 256, sizeof c[0], cmp_cand);
    if (temperature <= 0) return c[0].id;
    int k = top_k > 0 && top_k < 256 ? top_k : 256;
    double p[256], sum = 0, mx = c[0].logit;
    for (int i = 0; i < k; i++) {
        p[i] = isfinite(c[i].logit) ? exp(((double)c[i].logit - mx) / temperature) : 0.0;
        sum += p[i];
    }
    if (!(sum > 0)) return c[0].id;
    double u = (double)arb_rand_unit(key, index) * sum, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += p[i];
        if (u < acc) return c[i].id;
    }
    return c[k - 1].id;
}

int arb_cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "\n", *device = "cpu";
    int64_t max_tokens = 256, top_k = 0, seed = 1, threads = 0;
    double temperature = 0.8;
    for (int i = 1; i < argc; i += 2) { /* every option takes one value */
        const char *a = argv[i];
        if (arb_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v && !strncmp(a, "--", 2)) return arb_cli_fail("generate: %s needs a value (see arbitor generate --help)", a);
        if (!strcmp(a, "--ckpt")) ckpt = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--max-tokens")) {
            if (!arb_cli_parse_i64(v, 0, 1 << 24, &max_tokens)) return arb_cli_fail("generate: --max-tokens '%s' is not an integer in [0, 2^24]", v);
        } else if (!strcmp(a, "--temperature")) {
            if (!arb_cli_parse_f64(v, 0, 100, &temperature)) return arb_cli_fail("generate: --temperature '%s' is not a number in [0, 100]", v);
        } else if (!strcmp(a, "--top-k")) {
            if (!arb_cli_parse_i64(v, 0, 256, &top_k)) return arb_cli_fail("generate: --top-k '%s' is not an integer in [0, 256]", v);
        } else if (!strcmp(a, "--seed")) {
            if (!arb_cli_parse_i64(v, 0, INT64_MAX, &seed)) return arb_cli_fail("generate: --seed '%s' is not an integer >= 0", v);
        } else if (!strcmp(a, "--threads")) {
            if (!arb_cli_parse_i64(v, 1, 4096, &threads)) return arb_cli_fail("generate: --threads '%s' is not an integer in [1, 4096]", v);
        } else {
            fprintf(stderr, "arbitor: error: generate: unknown option '%s' (see arbitor generate --help)\n", a);
            return 2;
        }
    }
    if (!ckpt) return arb_cli_fail("generate: --ckpt FILE is required (see arbitor generate --help)");
    if (!*prompt) return arb_cli_fail("generate: --prompt is empty");
    if (threads) arb_set_num_threads((int)threads);
    arb_device dev = arb_cpu();
    if (!strcmp(device, "cuda")) {
#ifndef ARB_HAVE_CUDA
        return arb_cli_fail("generate: --device cuda: this build has no CUDA support (build where nvcc is installed)");
#else
        dev = arb_cuda(0);
#endif
    } else if (strcmp(device, "cpu") != 0) {
        return arb_cli_fail("generate: --device '%s' is not cpu or cuda", device);
    }
    arb_model *m;
    arb_status s = arb_checkpoint_load_model(ckpt, dev, &m);
    if (s != ARB_OK) return arb_cli_fail("generate: %s", arb_last_error());
    const arb_model_config *cfg = arb_model_config_of(m);
    size_t plen = strlen(prompt);
    int64_t ctx = cfg->ctx;
    int32_t *tok = malloc(sizeof(int32_t) * (plen + (size_t)max_tokens + 1));
    float *logits = malloc(sizeof(float) * (size_t)cfg->vocab);
    if (!tok || !logits) {
        free(tok);
        free(logits);
        arb_model_free(m);
        return arb_cli_fail("generate: out of memory");
    }
    for (size_t i = 0; i < plen; i++) tok[i] = (uint8_t)prompt[i];
    int64_t n = (int64_t)plen;
    fwrite(prompt, 1, plen, stdout);
    arb_rng_key key = arb_rng_key_make((uint64_t)seed, ARB_STREAM_SAMPLE);
    int rc = 0;
    for (int64_t t = 0; t < max_tokens; t++) {
        int64_t start = n > ctx ? n - ctx : 0;
        if ((s = arb_model_logits_last(m, tok + start, n - start, logits)) != ARB_OK) {
            fflush(stdout);
            rc = arb_cli_fail("generate: %s", arb_last_error());
            break;
        }
        int b = sample_byte(logits, temperature, (int)top_k, key, (uint32_t)t);
        tok[n++] = b;
        fputc(b, stdout);
        fflush(stdout);
    }
    if (rc == 0) fputc('\n', stdout);
    free(tok);
    free(logits);
    arb_model_free(m);
    return rc;
}
