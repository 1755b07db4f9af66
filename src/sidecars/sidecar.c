/* Sidecar entry points: pick the model kind from config.json, load it in the requested
 * precision, check that every tensor was consumed, and the int8 peak probe for the benchmark.
 *
 * Why kind detection is strict: a config that names neither DINOv2, Moonshine nor an
 * AutoencoderKL is refused with a one-line error instead of guessed at. */
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sidecars/sc_internal.h"
#ifdef ARB_HAVE_CUDA
#include "cuda/sidecar_cuda.h"
#endif


const char *arb_sidecar_kind_name(arb_sidecar_kind k) {
    switch (k) {
    case ARB_SIDECAR_DINOV2: return "dinov2";
    case ARB_SIDECAR_MOONSHINE: return "moonshine";
    case ARB_SIDECAR_VAE: return "vae";
    }
    return "?";
}

void arb_sidecar_free(arb_sidecar *m) {
    if (!m) return;
    if (m->dev && m->dev_free) m->dev_free(m->dev);
    free(m->dir);
    sc_dinov2_free(m->dino);
    sc_moonshine_free(m->moon);
    sc_vae_free(m->vae);
    free(m);
}

const arb_sidecar_info *arb_sidecar_info_get(const arb_sidecar *m) { return m ? &m->info : NULL; }

static arb_status detect_kind(const cJSON *cfg, const char *dir, arb_sidecar_kind *k) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(cfg, "_class_name");
    if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "dinov2")) *k = ARB_SIDECAR_DINOV2;
    else if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "moonshine")) *k = ARB_SIDECAR_MOONSHINE;
    else if ((cJSON_IsString(cn) && !strcmp(cn->valuestring, "AutoencoderKL")) ||
             (!mt && cJSON_GetObjectItemCaseSensitive(cfg, "block_out_channels") &&
              cJSON_GetObjectItemCaseSensitive(cfg, "latent_channels")))
        *k = ARB_SIDECAR_VAE;
    else
        return arb_error(ARB_ERR_UNSUPPORTED,
                         "%s/config.json: not a DINOv2, Moonshine or AutoencoderKL config (model_type %s)", dir,
                         cJSON_IsString(mt) ? mt->valuestring : "absent");
    return ARB_OK;
}

arb_status arb_sidecar_load(arb_sidecar **out, const char *dir, arb_sidecar_precision precision) {
    if (!out || !dir) return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_load: NULL argument");
    *out = NULL;
    if (precision != ARB_SIDECAR_FP32 && precision != ARB_SIDECAR_INT8 && precision != ARB_SIDECAR_INT8W)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_load: bad precision %d", (int)precision);
    cJSON *cfg;
    ARB_TRY(sc_config_read(dir, &cfg));
    arb_sidecar_kind kind = ARB_SIDECAR_DINOV2;
    arb_status st = detect_kind(cfg, dir, &kind);
    if (st) {
        cJSON_Delete(cfg);
        return st;
    }
    sc_ckpt c;
    st = sc_ckpt_open(&c, dir);
    if (st) {
        cJSON_Delete(cfg);
        return st;
    }
    arb_sidecar *m = (arb_sidecar *)calloc(1, sizeof *m);
    if (!m) st = arb_error(ARB_ERR_OOM, "sidecar: out of memory");
    else {
        m->kind = kind;
        m->mode = precision == ARB_SIDECAR_FP32 ? SC_FP32 : precision == ARB_SIDECAR_INT8 ? SC_INT8 : SC_INT8W;
        m->info.kind = kind;
        m->info.frozen = true;
        m->info.quantize_requested = precision != ARB_SIDECAR_FP32;
        if (kind == ARB_SIDECAR_DINOV2) st = sc_dinov2_load(m, &c, cfg);
        else if (kind == ARB_SIDECAR_MOONSHINE) st = sc_moonshine_load(m, &c, cfg);
        else st = sc_vae_load(m, &c, cfg);
        if (!st) st = sc_ckpt_check_all_used(&c);
        if (!st && !(m->dir = strdup(dir))) st = arb_error(ARB_ERR_OOM, "sidecar: out of memory");
    }
    sc_ckpt_close(&c);
    cJSON_Delete(cfg);
    if (st) {
        arb_sidecar_free(m);
        return st;
    }
    *out = m;
    return ARB_OK;
}

double arb_sidecar_int8_peak(double seconds) {
    if (!arb_cpu_features_get()->avx512_vnni || arb_cpu_tier_get() < ARB_TIER_AVX512) return 0.0;
    long iters = 1 << 16;
    double ops = 0, t0, t1;
    struct timespec ts;
    for (;;) { /* grow until one run lasts `seconds` */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t0 = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
        ops = 0;
#pragma omp parallel reduction(+ : ops)
        ops += sc_vnni_peak_ops(iters);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t1 = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
        if (t1 - t0 >= seconds || iters > (1L << 40)) break;
        double grow = seconds / (t1 - t0 > 1e-4 ? t1 - t0 : 1e-4);
        iters = (long)((double)iters * (grow > 16 ? 16 : grow * 1.05 + 0.01));
    }
    return ops / (t1 - t0);
}

/* ---------------------------------------------------------------- devices */

arb_status arb_sidecar_to_device(arb_sidecar *m, arb_device dev) {
    if (!m) return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_to_device: NULL model");
    if (dev.kind == ARB_DEVICE_CPU) {
        if (m->dev && m->dev_free) m->dev_free(m->dev);
        m->dev = NULL;
        m->dev_free = NULL;
        return ARB_OK;
    }
    if (dev.kind != ARB_DEVICE_CUDA) return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_to_device: unknown device kind %d", (int)dev.kind);
    if (m->mode != SC_INT8)
        return arb_error(ARB_ERR_UNSUPPORTED, "sidecar %s on CUDA: only the int8 path (ARB_SIDECAR_INT8) runs on the device",
                         arb_sidecar_kind_name(m->kind));
#ifdef ARB_HAVE_CUDA
    if (m->dev && m->dev_index == dev.index) return ARB_OK;
    if (m->dev && m->dev_free) m->dev_free(m->dev);
    m->dev = NULL;
    m->dev_free = NULL;
    return sc_cu_attach(m, dev.index);
#else
    return arb_error(ARB_ERR_UNSUPPORTED, "sidecar on cuda:%d: this build of arbitor has no CUDA support (rebuild with -DARB_CUDA=ON)",
                     dev.index);
#endif
}

arb_device arb_sidecar_device(const arb_sidecar *m) { return m && m->dev ? arb_cuda(m->dev_index) : arb_cpu(); }

arb_status arb_sidecar_forward(arb_sidecar *m, const arb_tensor *in, arb_tensor *out, arb_tensor *out2) {
    if (!m || !in || !out) return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_forward: NULL argument");
#ifdef ARB_HAVE_CUDA
    if (m->dev) return sc_cu_forward(m, in, out, out2);
#endif
    if (in->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_forward: the model is on the CPU but the input is on cuda:%d",
                         in->device.index);
    switch (m->kind) {
    case ARB_SIDECAR_DINOV2: return arb_dinov2_forward(m, in, out, out2);
    case ARB_SIDECAR_MOONSHINE: return arb_moonshine_encode(m, in, out);
    case ARB_SIDECAR_VAE: return arb_vae_decode(m, in, out);
    }
    return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_forward: bad model kind");
}

arb_status arb_sidecar_int8_peak_device(arb_device dev, double seconds, double *ops_per_s) {
    if (!ops_per_s) return arb_error(ARB_ERR_INVALID_ARG, "arb_sidecar_int8_peak_device: NULL output");
    *ops_per_s = 0;
    if (dev.kind == ARB_DEVICE_CPU) {
        *ops_per_s = arb_sidecar_int8_peak(seconds);
        return ARB_OK;
    }
#ifdef ARB_HAVE_CUDA
    return sc_cu_int8_peak(dev.index, seconds, ops_per_s);
#else
    return arb_error(ARB_ERR_UNSUPPORTED, "cuda:%d: this build of arbitor has no CUDA support (rebuild with -DARB_CUDA=ON)", dev.index);
#endif
}
