/* Sidecar parity against the live Python libraries on fresh random inputs: transformers
 * (Dinov2Model, MoonshineForConditionalGeneration) and diffusers (AutoencoderKL) in float64 for
 * the fp32 path (1e-4 rel L2), and the same models after optimum.quanto.quantize(weights=qint8)
 * + freeze in float32 for the int8 paths (INT8W 1e-3, INT8 2e-2). Models: the fixture
 * checkpoints, plus a full-size synthetic DINOv2-small (real shapes, bicubic 16x16 grid).
 * Skips (77) when python3 with torch/transformers/diffusers/optimum-quanto is absent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbitor/sidecars.h"
#include "testutil.h"

static char g_tmp[256];

static const char *k_script =
    "import sys, json, os, warnings, logging\n"
    "warnings.filterwarnings('ignore'); logging.disable(logging.WARNING)\n"
    "os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')\n"
    "import torch\n"
    "from safetensors.torch import load_file, save_file\n"
    "from optimum.quanto import quantize, freeze, qint8\n"

    "def build(kind, mdir):\n"
    "    if kind == 'dinov2':\n"
    "        from transformers import Dinov2Model; return Dinov2Model.from_pretrained(mdir).eval()\n"
    "    if kind == 'moonshine':\n"
    "        from transformers import MoonshineForConditionalGeneration as M; return M.from_pretrained(mdir).eval()\n"
    "    from diffusers import AutoencoderKL\n"
    "    cfg = {k: v for k, v in json.load(open(os.path.join(mdir, 'config.json'))).items() if not k.startswith('_')}\n"
    "    m = AutoencoderKL(**cfg); m.load_state_dict(load_file(os.path.join(mdir, 'model.safetensors'))); return m.eval()\n"
    "def run(kind, x, m, dt):\n"
    "    with torch.no_grad():\n"
    "        if kind == 'dinov2':\n"
    "            o = m(pixel_values=x['pixel_values'].to(dt)); return {'last_hidden_state': o.last_hidden_state}\n"
    "        if kind == 'moonshine':\n"
    "            e = m.model.encoder(x['input_values'].to(dt)).last_hidden_state\n"
    "            h = m.model.decoder(input_ids=x['decoder_input_ids'], encoder_hidden_states=e, use_cache=False).last_hidden_state\n"
    "            lg = torch.nn.functional.linear(h, m.model.decoder.embed_tokens.weight)  # tied proj_out, kept float\n"
    "            return {'encoder_last_hidden_state': e, 'logits': lg}\n"
    "        d = m.encode(x['sample'].to(dt)).latent_dist\n"
    "        return {'latent_mean': d.mean, 'latent_logvar': d.logvar, 'decoded': m.decode(x['latent_ref'].to(dt)).sample}\n"
    "a = sys.argv[1:]\n"
    "for i in range(0, len(a), 4):\n"
    "    kind, mdir, inp, outp = a[i:i + 4]\n"
    "    x = load_file(inp)\n"
    "    out = {k: v.float().contiguous() for k, v in run(kind, x, build(kind, mdir).double(), torch.float64).items()}\n"
    "    q = build(kind, mdir); quantize(q, weights=qint8); freeze(q)\n"
    "    out.update({'int8w.' + k: v.float().contiguous() for k, v in run(kind, x, q, torch.float32).items()})\n"
    "    save_file(out, outp)\n";

/* The jobs: every input is written first, then one python3 process computes all references
 * (importing torch once), then each test compares. */
enum { J_DINO_TINY, J_DINO_1L, J_DINO_FULL, J_MOON, J_VAE, J_N };
static const char *g_kind[J_N] = {"dinov2", "dinov2", "dinov2", "moonshine", "vae"};
static char g_mdir[J_N][1200];
static arb_tensor g_in[J_N][2];
static const char *g_names[J_N][2] = {{"pixel_values"}, {"pixel_values"}, {"pixel_values"}, {"input_values", "decoder_input_ids"}, {"sample", "latent_ref"}};
static bool g_ok;

static void tensor_rand(arb_tensor *t, arb_dtype dt, int nd, const int64_t *shape, uint64_t seed, float lo, float hi) {
    if (arb_tensor_init(t, dt, nd, shape, arb_cpu()) != ARB_OK) abort();
    if (dt == ARB_F32) arb_test_fill_f32((float *)t->data, (size_t)arb_tensor_numel(t), seed, lo, hi);
}

static int setup(void **s) {
    (void)s;
    if (arb_test_tmpdir_make(g_tmp, sizeof g_tmp, "arb_sc_live") != 0) return -1;
    char fx[1024];
    if (!arb_test_shared("fixtures", fx, sizeof fx)) return -1;
    snprintf(g_mdir[J_DINO_TINY], sizeof g_mdir[0], "%s/dinov2-tiny", fx);
    snprintf(g_mdir[J_DINO_1L], sizeof g_mdir[0], "%s/dinov2-small-1layer", fx);
    snprintf(g_mdir[J_DINO_FULL], sizeof g_mdir[0], "%s/dinov2-synth", g_tmp);
    snprintf(g_mdir[J_MOON], sizeof g_mdir[0], "%s/moonshine-tiny", fx);
    snprintf(g_mdir[J_VAE], sizeof g_mdir[0], "%s/vae-tiny", fx);
    if (arb_sidecar_synth(ARB_SIDECAR_DINOV2, g_mdir[J_DINO_FULL], 99) != ARB_OK) return -1;
    tensor_rand(&g_in[J_DINO_TINY][0], ARB_F32, 4, (int64_t[]){2, 3, 70, 98}, 11, -2.f, 2.f); /* 5x7 grid: interpolated */
    tensor_rand(&g_in[J_DINO_1L][0], ARB_F32, 4, (int64_t[]){1, 3, 224, 224}, 12, -2.f, 2.f);
    tensor_rand(&g_in[J_DINO_FULL][0], ARB_F32, 4, (int64_t[]){1, 3, 224, 224}, 13, -2.f, 2.f);
    tensor_rand(&g_in[J_MOON][0], ARB_F32, 2, (int64_t[]){2, 23456}, 21, -0.5f, 0.5f);
    tensor_rand(&g_in[J_MOON][1], ARB_I64, 2, (int64_t[]){2, 5}, 0, 0, 0);
    for (int i = 0; i < 10; i++) ((int64_t *)g_in[J_MOON][1].data)[i] = (i * 13 + 1) % 64;
    tensor_rand(&g_in[J_VAE][0], ARB_F32, 4, (int64_t[]){2, 3, 40, 24}, 31, -1.f, 1.f);
    tensor_rand(&g_in[J_VAE][1], ARB_F32, 4, (int64_t[]){1, 4, 12, 20}, 32, -2.f, 2.f);
    char script[400], cmd[16384];
    snprintf(script, sizeof script, "%s/ref.py", g_tmp);
    FILE *f = fopen(script, "w");
    if (!f) return -1;
    fputs(k_script, f);
    fclose(f);
    int o = snprintf(cmd, sizeof cmd, "python3 %s", script);
    for (int j = 0; j < J_N; j++) {
        char inp[400];
        snprintf(inp, sizeof inp, "%s/in%d.safetensors", g_tmp, j);
        arb_st_writer *w;
        if (arb_st_writer_open(&w, inp)) return -1;
        for (int i = 0; i < 2 && g_names[j][i]; i++)
            if (arb_st_writer_add(w, g_names[j][i], g_in[j][i].dtype, g_in[j][i].ndim, g_in[j][i].shape, g_in[j][i].data)) return -1;
        if (arb_st_writer_commit(w)) return -1;
        o += snprintf(cmd + o, sizeof cmd - (size_t)o, " %s %s %s %s/out%d.safetensors", g_kind[j], g_mdir[j], inp, g_tmp, j);
    }
    snprintf(cmd + o, sizeof cmd - (size_t)o, " 2>%s/err.txt", g_tmp);
    g_ok = system(cmd) == 0;
    if (!g_ok) {
        snprintf(cmd, sizeof cmd, "tail -5 %s/err.txt", g_tmp);
        if (system(cmd)) {}
    }
    return 0;
}

static int teardown(void **s) {
    (void)s;
    for (int j = 0; j < J_N; j++) arb_tensor_free(&g_in[j][0]), arb_tensor_free(&g_in[j][1]);
    return arb_test_tmpdir_remove(g_tmp);
}

static arb_safetensors *reference(int j) {
    if (!g_ok) fail_msg("the reference script failed (see above)");
    char p[400];
    snprintf(p, sizeof p, "%s/out%d.safetensors", g_tmp, j);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));
    return st;
}

static void cmp(arb_safetensors *st, const char *name, const arb_tensor *got, double tol, const char *label) {
    const arb_st_tensor *r = arb_safetensors_find(st, name);
    if (!r) fail_msg("reference has no %s", name);
    assert_int_equal((size_t)arb_tensor_numel(got) * 4, r->nbytes);
    double e = arb_test_rel_l2((const float *)got->data, (const float *)r->data, (size_t)arb_tensor_numel(got));
    printf("  %-40s %-28s rel L2 %.2e (tol %.0e)\n", label, name, e, tol);
    if (!(e <= tol)) fail_msg("%s %s: %.3e > %.0e", label, name, e, tol);
}

static const arb_sidecar_precision g_prec[3] = {ARB_SIDECAR_FP32, ARB_SIDECAR_INT8W, ARB_SIDECAR_INT8};
static const double g_tol[3] = {1e-4, 1e-3, 2e-2};

static void live_dinov2(int j, const char *label) {
    arb_safetensors *st = reference(j);
    for (int p = 0; p < 3; p++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, g_mdir[j], g_prec[p]));
        arb_tensor o, pool;
        ARB_ASSERT_OK(arb_dinov2_forward(m, &g_in[j][0], &o, &pool));
        char lab[200];
        snprintf(lab, sizeof lab, "%s %s", label, p == 0 ? "fp32" : p == 1 ? "int8w" : "int8");
        cmp(st, p ? "int8w.last_hidden_state" : "last_hidden_state", &o, g_tol[p], lab);
        arb_tensor_free(&o), arb_tensor_free(&pool);
        arb_sidecar_free(m);
    }
    arb_safetensors_close(st);
}

static void test_dinov2_fixtures(void **s) {
    (void)s;
    live_dinov2(J_DINO_TINY, "dinov2-tiny 2x3x70x98 (interp)");
    live_dinov2(J_DINO_1L, "dinov2-small-1layer 1x3x224x224");
}

static void test_dinov2_fullsize(void **s) {
    (void)s;
    live_dinov2(J_DINO_FULL, "dinov2-small synthetic 1x3x224x224");
}

static void test_moonshine(void **s) {
    (void)s;
    arb_safetensors *st = reference(J_MOON);
    for (int p = 0; p < 3; p++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, g_mdir[J_MOON], g_prec[p]));
        arb_tensor e, lg;
        ARB_ASSERT_OK(arb_moonshine_encode(m, &g_in[J_MOON][0], &e));
        char lab[100];
        snprintf(lab, sizeof lab, "moonshine-tiny 2x23456 %s", p == 0 ? "fp32" : p == 1 ? "int8w" : "int8");
        cmp(st, p ? "int8w.encoder_last_hidden_state" : "encoder_last_hidden_state", &e, g_tol[p], lab);
        if (p < 2) { /* logits from the reference's own encoder output of the same path */
            const arb_st_tensor *re = arb_safetensors_find(st, p ? "int8w.encoder_last_hidden_state" : "encoder_last_hidden_state");
            arb_tensor et;
            ARB_ASSERT_OK(arb_tensor_init(&et, ARB_F32, re->ndim, re->shape, arb_cpu()));
            memcpy(et.data, re->data, re->nbytes);
            ARB_ASSERT_OK(arb_moonshine_logits(m, &et, &g_in[J_MOON][1], &lg));
            cmp(st, p ? "int8w.logits" : "logits", &lg, g_tol[p], lab);
            arb_tensor_free(&lg), arb_tensor_free(&et);
        }
        arb_tensor_free(&e);
        arb_sidecar_free(m);
    }
    arb_safetensors_close(st);
}

static void test_vae(void **s) {
    (void)s;
    arb_safetensors *st = reference(J_VAE);
    for (int p = 0; p < 3; p++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, g_mdir[J_VAE], g_prec[p]));
        arb_tensor mean, lv, dec;
        ARB_ASSERT_OK(arb_vae_encode(m, &g_in[J_VAE][0], &mean, &lv));
        ARB_ASSERT_OK(arb_vae_decode(m, &g_in[J_VAE][1], &dec));
        char lab[100];
        snprintf(lab, sizeof lab, "vae-tiny 2x3x40x24 %s", p == 0 ? "fp32" : p == 1 ? "int8w" : "int8");
        cmp(st, p ? "int8w.latent_mean" : "latent_mean", &mean, g_tol[p], lab);
        cmp(st, p ? "int8w.latent_logvar" : "latent_logvar", &lv, g_tol[p], lab);
        cmp(st, p ? "int8w.decoded" : "decoded", &dec, g_tol[p], lab);
        arb_tensor_free(&mean), arb_tensor_free(&lv), arb_tensor_free(&dec);
        arb_sidecar_free(m);
    }
    arb_safetensors_close(st);
}

static bool have_python(void) {
    return system("python3 -c 'import torch, transformers, diffusers, optimum.quanto, safetensors' >/dev/null 2>&1") == 0;
}

int main(void) {
    arb_test_require_shared();
    if (!have_python()) {
        printf("SKIP: python3 with torch, transformers, diffusers, optimum-quanto is not installed\n");
        return ARB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dinov2_fixtures), cmocka_unit_test(test_moonshine), cmocka_unit_test(test_vae),
        cmocka_unit_test(test_dinov2_fullsize),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
