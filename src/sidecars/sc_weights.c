/* Sidecar checkpoints: find, validate and convert each tensor a model needs; quantize Linear and
 * Conv2d weights as optimum-quanto's qint8 does; keep the audit's counts.
 *
 * Why track "used": a checkpoint with an extra tensor is as wrong as one missing a tensor (a
 * different architecture or a renamed layer), so after loading, every tensor must have been
 * consumed or explicitly ignored, and the first one left over is named in the error. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sidecars/sc_internal.h"

arb_status sc_ckpt_open(sc_ckpt *c, const char *dir) {
    memset(c, 0, sizeof *c);
    c->prefix = "";
    static const char *names[] = {"model.safetensors", "diffusion_pytorch_model.safetensors"};
    struct stat sb;
    if (stat(dir, &sb) != 0) return arb_error(ARB_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return arb_error(ARB_ERR_INVALID_ARG, "%s: not a checkpoint directory", dir);
    for (size_t i = 0; i < 2; i++) {
        snprintf(c->path, sizeof c->path, "%s/%s", dir, names[i]);
        if (stat(c->path, &sb) == 0) {
            ARB_TRY(arb_safetensors_open(&c->st, c->path));
            c->n = arb_safetensors_count(c->st);
            c->used = (unsigned char *)calloc(c->n ? c->n : 1, 1);
            if (!c->used) {
                arb_safetensors_close(c->st);
                c->st = NULL;
                return arb_error(ARB_ERR_OOM, "%s: out of memory", c->path);
            }
            return ARB_OK;
        }
    }
    return arb_error(ARB_ERR_NOT_FOUND, "%s: no model.safetensors or diffusion_pytorch_model.safetensors", dir);
}

void sc_ckpt_close(sc_ckpt *c) {
    if (c->st) arb_safetensors_close(c->st);
    free(c->used);
    memset(c, 0, sizeof *c);
}

static const arb_st_tensor *ckpt_find(sc_ckpt *c, const char *name, char *full, size_t cap) {
    snprintf(full, cap, "%s%s", c->prefix, name);
    const arb_st_tensor *t = arb_safetensors_find(c->st, full);
    if (t)
        for (size_t i = 0; i < c->n; i++)
            if (arb_safetensors_at(c->st, i) == t) c->used[i] = 1;
    return t;
}

bool sc_ckpt_has(sc_ckpt *c, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", c->prefix, name);
    return arb_safetensors_find(c->st, full) != NULL;
}

void sc_ckpt_ignore(sc_ckpt *c, const char *name) {
    char full[512];
    (void)ckpt_find(c, name, full, sizeof full);
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

arb_status sc_ckpt_get(sc_ckpt *c, const char *name, int ndim, const int64_t *shape, float **out) {
    *out = NULL;
    char full[512];
    const arb_st_tensor *t = ckpt_find(c, name, full, sizeof full);
    if (!t) return arb_error(ARB_ERR_NOT_FOUND, "%s: missing tensor '%s'", c->path, full);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        shape_str(want, sizeof want, ndim, shape);
        shape_str(got, sizeof got, t->ndim, t->shape);
        return arb_error(ARB_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", c->path, full, got, want);
    }
    if (t->dtype != ARB_F32 && t->dtype != ARB_BF16 && t->dtype != ARB_F16)
        return arb_error(ARB_ERR_DTYPE, "%s: tensor '%s' is %s, expected F32/BF16/F16", c->path, full,
                         arb_dtype_name(t->dtype));
    arb_tensor tmp;
    ARB_TRY(arb_safetensors_load_f32(c->st, full, &tmp));
    size_t n = (size_t)arb_tensor_numel(&tmp);
    float *f = (float *)arb_alloc(n * sizeof(float) + 4);
    if (!f) {
        arb_tensor_free(&tmp);
        return arb_error(ARB_ERR_OOM, "%s: out of memory for '%s'", c->path, full);
    }
    memcpy(f, tmp.data, n * sizeof(float));
    arb_tensor_free(&tmp);
    for (size_t i = 0; i < n; i++)
        if (!(f[i] - f[i] == 0.f)) {
            arb_free(f);
            return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s' holds a NaN or infinity at element %zu", c->path, full, i);
        }
    *out = f;
    return ARB_OK;
}

arb_status sc_ckpt_check_all_used(sc_ckpt *c) {
    for (size_t i = 0; i < c->n; i++)
        if (!c->used[i])
            return arb_error(ARB_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of this model's layout)", c->path,
                             arb_safetensors_at(c->st, i)->name);
    return ARB_OK;
}

static void count_float(arb_sidecar_info *info, size_t numel) {
    info->n_tensors++;
    info->n_params += numel;
    info->float_tensors++;
    info->float_bytes += numel * 4;
}

arb_status sc_vec_load(float **out, sc_ckpt *c, const char *name, int ndim, const int64_t *shape,
                       arb_sidecar_info *info) {
    ARB_TRY(sc_ckpt_get(c, name, ndim, shape, out));
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    count_float(info, numel);
    return ARB_OK;
}

/* w: [n][k] in GEMM order (already permuted for convs). Takes ownership of w. */
static arb_status lin_finish(sc_lin *l, float *w, int n, int k, bool quantize, arb_sidecar_info *info) {
    l->n = n;
    l->k = k;
    info->n_tensors++;
    info->n_params += (size_t)n * k;
    arb_status s;
    if (!quantize) {
        s = sc_packf_init(&l->f, w, n, k);
        info->float_tensors++;
        info->float_bytes += (size_t)n * k * 4;
    } else {
        int8_t *q = (int8_t *)arb_alloc((size_t)n * k + 1);
        float *sc = (float *)arb_alloc((size_t)n * sizeof(float) + 4);
        if (!q || !sc) s = arb_error(ARB_ERR_OOM, "sidecar: out of memory quantizing [%d,%d]", n, k);
        else {
            sc_quantize_rows(w, n, k, q, sc);
            s = sc_packq_init(&l->q, q, sc, n, k);
        }
        arb_free(q);
        arb_free(sc);
        l->quantized = true;
        info->int8_bytes += (size_t)n * k + (size_t)n * 4;
        info->quantized = info->quantized_int8 = true;
    }
    arb_free(w);
    return s;
}

arb_status sc_lin_load(sc_lin *l, sc_ckpt *c, const char *name, int n, int k, bool has_bias, sc_mode mode,
                       arb_sidecar_info *info) {
    memset(l, 0, sizeof *l);
    char nm[512];
    float *w;
    snprintf(nm, sizeof nm, "%s.weight", name);
    ARB_TRY(sc_ckpt_get(c, nm, 2, (int64_t[]){n, k}, &w));
    info->n_linear++;
    if (mode != SC_FP32) info->n_linear_q++;
    ARB_TRY(lin_finish(l, w, n, k, mode != SC_FP32, info));
    if (has_bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        ARB_TRY(sc_vec_load(&l->bias, c, nm, 1, (int64_t[]){n}, info));
    }
    return ARB_OK;
}

arb_status sc_lin_load_cat(sc_lin *l, sc_ckpt *c, const char *prefix, const char *const *names, int count, int n, int k,
                           bool has_bias, sc_mode mode, arb_sidecar_info *info) {
    memset(l, 0, sizeof *l);
    size_t per = (size_t)n * (size_t)k;
    float *w = (float *)arb_alloc((size_t)count * per * sizeof(float) + 4);
    float *b = has_bias ? (float *)arb_alloc((size_t)count * (size_t)n * sizeof(float)) : NULL;
    if (!w || (has_bias && !b)) {
        arb_free(w);
        arb_free(b);
        return arb_error(ARB_ERR_OOM, "sidecar: out of memory for %s%s", prefix, names[0]);
    }
    arb_status s = ARB_OK;
    for (int i = 0; i < count && s == ARB_OK; i++) {
        char nm[512];
        float *wi = NULL, *bi = NULL;
        snprintf(nm, sizeof nm, "%s%s.weight", prefix, names[i]);
        s = sc_ckpt_get(c, nm, 2, (int64_t[]){n, k}, &wi);
        if (s != ARB_OK) break;
        memcpy(w + (size_t)i * per, wi, per * sizeof(float));
        arb_free(wi);
        info->n_linear++;
        if (mode != SC_FP32) info->n_linear_q++;
        if (has_bias) {
            snprintf(nm, sizeof nm, "%s%s.bias", prefix, names[i]);
            s = sc_vec_load(&bi, c, nm, 1, (int64_t[]){n}, info);
            if (s != ARB_OK) break;
            memcpy(b + (size_t)i * n, bi, (size_t)n * sizeof(float));
            arb_free(bi);
        }
    }
    if (s != ARB_OK) {
        arb_free(w);
        arb_free(b);
        return s;
    }
    l->bias = b;
    /* counted as `count` weight tensors, as the separate layers would be */
    info->n_tensors += (size_t)(count - 1);
    if (mode == SC_FP32) info->float_tensors += (size_t)(count - 1);
    return lin_finish(l, w, count * n, k, mode != SC_FP32, info);
}

arb_status sc_conv2d_load(sc_lin *l, sc_ckpt *c, const char *name, int o, int ci, int kh, int kw, bool has_bias,
                          bool patch_order, sc_mode mode, arb_sidecar_info *info) {
    memset(l, 0, sizeof *l);
    char nm[512];
    float *w;
    snprintf(nm, sizeof nm, "%s.weight", name);
    ARB_TRY(sc_ckpt_get(c, nm, 4, (int64_t[]){o, ci, kh, kw}, &w));
    int k = ci * kh * kw;
    if (!patch_order) { /* [o][c][ky][kx] → [o][ky][kx][c] for channels-last im2col */
        float *p = (float *)arb_alloc((size_t)o * k * sizeof(float) + 4);
        if (!p) {
            arb_free(w);
            return arb_error(ARB_ERR_OOM, "sidecar: out of memory for %s", nm);
        }
        for (int a = 0; a < o; a++)
            for (int cc = 0; cc < ci; cc++)
                for (int y = 0; y < kh; y++)
                    for (int x = 0; x < kw; x++)
                        p[(size_t)a * k + ((size_t)y * kw + x) * ci + cc] = w[(size_t)a * k + ((size_t)cc * kh + y) * kw + x];
        arb_free(w);
        w = p;
    }
    info->n_conv2d++;
    if (mode != SC_FP32) info->n_conv2d_q++;
    ARB_TRY(lin_finish(l, w, o, k, mode != SC_FP32, info));
    if (has_bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        ARB_TRY(sc_vec_load(&l->bias, c, nm, 1, (int64_t[]){o}, info));
    }
    return ARB_OK;
}

arb_status sc_conv1d_load(sc_lin *l, sc_ckpt *c, const char *name, int o, int ci, int kw, bool has_bias,
                          arb_sidecar_info *info) {
    memset(l, 0, sizeof *l);
    char nm[512];
    float *w;
    snprintf(nm, sizeof nm, "%s.weight", name);
    ARB_TRY(sc_ckpt_get(c, nm, 3, (int64_t[]){o, ci, kw}, &w));
    int k = ci * kw;
    float *p = (float *)arb_alloc((size_t)o * k * sizeof(float) + 4);
    if (!p) {
        arb_free(w);
        return arb_error(ARB_ERR_OOM, "sidecar: out of memory for %s", nm);
    }
    for (int a = 0; a < o; a++)
        for (int cc = 0; cc < ci; cc++)
            for (int x = 0; x < kw; x++) p[(size_t)a * k + (size_t)x * ci + cc] = w[(size_t)a * k + (size_t)cc * kw + x];
    arb_free(w);
    ARB_TRY(lin_finish(l, p, o, k, false, info));
    if (has_bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        ARB_TRY(sc_vec_load(&l->bias, c, nm, 1, (int64_t[]){o}, info));
    }
    return ARB_OK;
}

void sc_lin_free(sc_lin *l) {
    sc_packf_free(&l->f);
    sc_packq_free(&l->q);
    arb_free(l->bias);
    memset(l, 0, sizeof *l);
}

/* ---------------------------------------------------------------- config.json */

arb_status sc_config_read(const char *dir, cJSON **out) {
    *out = NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return arb_error(ARB_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    char *buf = (char *)malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    bool big = buf && n == (1 << 20) - 1 && fgetc(f) != EOF;
    fclose(f);
    if (!buf) return arb_error(ARB_ERR_OOM, "%s: out of memory", path);
    if (big) {
        free(buf);
        return arb_error(ARB_ERR_FORMAT, "%s: larger than 1 MiB", path);
    }
    buf[n] = 0;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 1);
    if (!j || !cJSON_IsObject(j)) {
        long off = end ? (long)(end - buf) : -1;
        cJSON_Delete(j);
        free(buf);
        return arb_error(ARB_ERR_FORMAT, "%s: not a JSON object (syntax error near byte %ld)", path, off);
    }
    free(buf);
    *out = j;
    return ARB_OK;
}

arb_status sc_cfg_int(const cJSON *cfg, const char *key, int lo, int hi, int def, bool required, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return arb_error(ARB_ERR_FORMAT, "config.json: missing \"%s\"", key);
        *out = def;
        return ARB_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble || v->valuedouble < lo ||
        v->valuedouble > hi)
        return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\" must be an integer in [%d, %d]", key, lo, hi);
    *out = (int)v->valuedouble;
    return ARB_OK;
}

arb_status sc_cfg_num(const cJSON *cfg, const char *key, double def, bool required, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return arb_error(ARB_ERR_FORMAT, "config.json: missing \"%s\"", key);
        *out = def;
        return ARB_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble - v->valuedouble == 0))
        return arb_error(ARB_ERR_FORMAT, "config.json: \"%s\" must be a number", key);
    *out = v->valuedouble;
    return ARB_OK;
}
