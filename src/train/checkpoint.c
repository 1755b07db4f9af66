/* Checkpoints: the model's ternary state (packed trits, T_accum, E, evidence), its extra
 * integer state, and the trainer's position, in one safetensors file written atomically.
 * Why so strict on load: a checkpoint that half-matches the model would silently train a
 * different network; every tensor must be present with its exact dtype and shape, nothing
 * unknown may be left over, and every code and exponent must be in range. */
#include "arbitor/safetensors.h"
#include "arbitor/train.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

#define NAME_MAX_LEN 256

static void hex_bytes(const void *p, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = 0;
}

static bool unhex_bytes(const char *s, void *p, size_t n) {
    if (!s || strlen(s) != 2 * n) return false;
    uint8_t *b = p;
    for (size_t i = 0; i < 2 * n; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : (ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1);
        if (v < 0) return false;
        if (i % 2 == 0) b[i / 2] = (uint8_t)(v << 4);
        else b[i / 2] |= (uint8_t)v;
    }
    return true;
}

arb_status arb_ckpt_wrap_error(arb_status s, const char *path) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", arb_last_error());
    if (!strncmp(msg, "checkpoint ", 11)) return arb_error(s, "%s", msg); /* already names the file */
    return arb_error(s, "checkpoint %s: %s", path, msg);
}

/* ------------------------------------------------------------------ save */

arb_status arb_ckpt_add_model(arb_st_writer *w, arb_model *m, char **update_state_json) {
    *update_state_json = NULL;
    cJSON *upd = cJSON_CreateObject();
    if (!upd) return arb_error(ARB_ERR_OOM, "checkpoint: out of memory");
    arb_status s = ARB_OK;
    char nm[NAME_MAX_LEN + 32];
    int32_t n = arb_model_n_ternary(m);
    for (int32_t i = 0; i < n && s == ARB_OK; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        s = arb_model_ternary_at(m, i, &name, &t, &us);
        if (s != ARB_OK) break;
        if (strlen(name) > NAME_MAX_LEN) { s = arb_error(ARB_ERR_INVALID_ARG, "checkpoint: tensor name too long"); break; }
        if (t->device.kind != ARB_DEVICE_CPU) {
            s = arb_error(ARB_ERR_UNSUPPORTED, "checkpoint: tensor '%s' is not in host memory", name);
            break;
        }
        int64_t sh3[3] = {t->rows_pad / ARB_TILE, t->cols_pad / ARB_TILE, ARB_TILE_BYTES};
        int64_t sh2[2] = {t->rows, t->cols};
        int64_t sh1[1] = {t->rows};
        snprintf(nm, sizeof nm, "%s.trits", name);
        s = arb_st_writer_add_ref(w, nm, ARB_U8, 3, sh3, t->trits);
        if (s != ARB_OK) break;
        snprintf(nm, sizeof nm, "%s.accum", name);
        s = arb_st_writer_add_ref(w, nm, ARB_I8, 2, sh2, t->accum);
        if (s != ARB_OK) break;
        if (t->exp) { /* a fixed exponent (E ≡ 0) has no per-row state to store */
            snprintf(nm, sizeof nm, "%s.exp", name);
            s = arb_st_writer_add_ref(w, nm, ARB_I8, 1, sh1, t->exp);
            if (s != ARB_OK) break;
            snprintf(nm, sizeof nm, "%s.exp_evidence", name);
            s = arb_st_writer_add_ref(w, nm, ARB_I8, 1, sh1, t->exp_evidence);
            if (s != ARB_OK) break;
        }
        /* The update state is plain numbers: its bytes, in hex, restore it exactly. */
        char hx[2 * sizeof(arb_update_state) + 1];
        arb_update_state copy;
        memset(&copy, 0, sizeof copy);
        if (us) copy = *us;
        hex_bytes(&copy, sizeof copy, hx);
        if (!cJSON_AddStringToObject(upd, name, hx)) s = arb_error(ARB_ERR_OOM, "checkpoint: out of memory");
    }
    int32_t ns = arb_model_n_state(m);
    for (int32_t i = 0; i < ns && s == ARB_OK; i++) {
        arb_model_state_tensor x;
        s = arb_model_state_at(m, i, &x);
        if (s != ARB_OK) break;
        if (strlen(x.name) > NAME_MAX_LEN) { s = arb_error(ARB_ERR_INVALID_ARG, "checkpoint: state name too long"); break; }
        snprintf(nm, sizeof nm, "state.%s", x.name);
        s = arb_st_writer_add_ref(w, nm, x.dtype, x.ndim, x.shape, x.data);
    }
    if (s == ARB_OK) {
        *update_state_json = cJSON_PrintUnformatted(upd);
        if (!*update_state_json) s = arb_error(ARB_ERR_OOM, "checkpoint: out of memory");
    }
    cJSON_Delete(upd);
    return s;
}

arb_status arb_checkpoint_save_model(arb_model *m, const char *path, const char *const *meta_kv, int n_meta) {
    if (!m || !path || (n_meta && !meta_kv)) return arb_error(ARB_ERR_INVALID_ARG, "checkpoint: bad arguments");
    char *cfg_json = NULL, *upd = NULL;
    arb_st_writer *w = NULL;
    ARB_TRY(arb_model_config_to_json(arb_model_config_of(m), &cfg_json));
    arb_status s = arb_st_writer_open(&w, path);
    if (s == ARB_OK) s = arb_ckpt_add_model(w, m, &upd);
    if (s == ARB_OK) s = arb_st_writer_set_metadata(w, "format", ARB_CKPT_FORMAT);
    if (s == ARB_OK) s = arb_st_writer_set_metadata(w, "config", cfg_json);
    if (s == ARB_OK) s = arb_st_writer_set_metadata(w, "update_state", upd);
    for (int i = 0; i < n_meta && s == ARB_OK; i++) s = arb_st_writer_set_metadata(w, meta_kv[2 * i], meta_kv[2 * i + 1]);
    if (s == ARB_OK) s = arb_st_writer_commit(w);
    else if (w) arb_st_writer_abort(w);
    free(cfg_json);
    free(upd);
    return s;
}

/* ------------------------------------------------------------------ load */

arb_status arb_ckpt_config(const arb_safetensors *st, const char *path, arb_model_config *cfg) {
    const char *fmt = arb_safetensors_metadata(st, "format");
    if (!fmt || strcmp(fmt, ARB_CKPT_FORMAT) != 0)
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: not an arbitor checkpoint (metadata 'format' is %s%s%s)", path,
                         fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
    const char *js = arb_safetensors_metadata(st, "config");
    if (!js) return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata 'config' is missing", path);
    /* Start from a named config so the JSON's fields land on sane values; every field is written. */
    arb_status s = arb_model_config_named("cpu-small", cfg);
    if (s != ARB_OK) return s;
    s = arb_model_config_from_json(js, cfg);
    if (s != ARB_OK)
        return arb_ckpt_wrap_error(s, path);
    return ARB_OK;
}

static arb_status expect_into(const arb_safetensors *st, const char *path, const char *name, arb_dtype dt, int ndim,
                              const int64_t *shape, void *dst, size_t nbytes) {
    const arb_st_tensor *t;
    arb_status s = arb_safetensors_expect(st, name, dt, ndim, shape, &t);
    if (s != ARB_OK) return arb_ckpt_wrap_error(s, path);
    if (t->nbytes != nbytes)
        return arb_error(ARB_ERR_INTERNAL, "checkpoint %s: tensor '%s' has %zu bytes, expected %zu", path, name,
                         t->nbytes, nbytes);
    memcpy(dst, t->data, nbytes);
    return ARB_OK;
}

arb_status arb_ckpt_load_model_state(const arb_safetensors *st, const char *path, arb_model *m) {
    const char *upd_text = arb_safetensors_metadata(st, "update_state");
    if (!upd_text) return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata 'update_state' is missing", path);
    cJSON *upd = cJSON_Parse(upd_text);
    if (!upd || !cJSON_IsObject(upd)) {
        cJSON_Delete(upd);
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: metadata 'update_state' is not a JSON object", path);
    }
    arb_status s = ARB_OK;
    char nm[NAME_MAX_LEN + 32];
    size_t expected = 0;
    int32_t n = arb_model_n_ternary(m);
    for (int32_t i = 0; i < n && s == ARB_OK; i++) {
        const char *name;
        arb_ternary *t;
        arb_update_state *us;
        s = arb_model_ternary_at(m, i, &name, &t, &us);
        if (s != ARB_OK) break;
        if (t->device.kind != ARB_DEVICE_CPU) {
            s = arb_error(ARB_ERR_UNSUPPORTED, "checkpoint: tensor '%s' is not in host memory", name);
            break;
        }
        int64_t sh3[3] = {t->rows_pad / ARB_TILE, t->cols_pad / ARB_TILE, ARB_TILE_BYTES};
        int64_t sh2[2] = {t->rows, t->cols};
        int64_t sh1[1] = {t->rows};
        size_t ntr = (size_t)(t->rows_pad / ARB_TILE) * (size_t)(t->cols_pad / ARB_TILE) * ARB_TILE_BYTES;
        size_t nacc = (size_t)t->rows * (size_t)t->cols;
        snprintf(nm, sizeof nm, "%s.trits", name);
        s = expect_into(st, path, nm, ARB_U8, 3, sh3, t->trits, ntr);
        if (s != ARB_OK) break;
        snprintf(nm, sizeof nm, "%s.accum", name);
        s = expect_into(st, path, nm, ARB_I8, 2, sh2, t->accum, nacc);
        if (s != ARB_OK) break;
        expected += 2;
        if (t->exp) {
            snprintf(nm, sizeof nm, "%s.exp", name);
            s = expect_into(st, path, nm, ARB_I8, 1, sh1, t->exp, (size_t)t->rows);
            if (s != ARB_OK) break;
            snprintf(nm, sizeof nm, "%s.exp_evidence", name);
            s = expect_into(st, path, nm, ARB_I8, 1, sh1, t->exp_evidence, (size_t)t->rows);
            if (s != ARB_OK) break;
            expected += 2;
        }
        /* Values in range: no code 3, padding is trit 0, |A| ≤ 127, E within its clamp. */
        for (size_t b = 0; b < ntr && s == ARB_OK; b++)
            for (int g = 0; g < 4; g++)
                if (((t->trits[b] >> (2 * g)) & 3) == 3) {
                    s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: tensor '%s.trits' holds the invalid code 3 at byte %zu",
                                  path, name, b);
                    break;
                }
        for (int64_t r = 0; r < t->rows_pad && s == ARB_OK; r++)
            for (int64_t c = (r < t->rows ? t->cols : 0); c < t->cols_pad; c++)
                if (arb_ternary_get(t, r, c) != 0) {
                    s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: tensor '%s.trits' has a nonzero padding trit at (%lld, %lld)",
                                  path, name, (long long)r, (long long)c);
                    break;
                }
        for (size_t k = 0; k < nacc && s == ARB_OK; k++)
            if (t->accum[k] == -128)
                s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: tensor '%s.accum' holds -128 at %zu (range is ±127)", path,
                              name, k);
        for (int64_t r = 0; r < t->rows && s == ARB_OK && t->exp; r++)
            if (t->exp[r] < ARB_EXP_MIN || t->exp[r] > ARB_EXP_MAX)
                s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: tensor '%s.exp' row %lld is %d, outside [%d, %d]", path,
                              name, (long long)r, t->exp[r], ARB_EXP_MIN, ARB_EXP_MAX);
        if (s != ARB_OK) break;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(upd, name);
        arb_update_state tmp;
        if (!cJSON_IsString(h) || !unhex_bytes(h->valuestring, &tmp, sizeof tmp)) {
            s = arb_error(ARB_ERR_FORMAT, "checkpoint %s: update state of tensor '%s' is missing or malformed", path, name);
            break;
        }
        if (us) *us = tmp;
    }
    cJSON_Delete(upd);
    int32_t ns = arb_model_n_state(m);
    for (int32_t i = 0; i < ns && s == ARB_OK; i++) {
        arb_model_state_tensor x;
        s = arb_model_state_at(m, i, &x);
        if (s != ARB_OK) break;
        size_t nb;
        s = arb_shape_nbytes(x.dtype, x.ndim, x.shape, &nb);
        if (s != ARB_OK) break;
        snprintf(nm, sizeof nm, "state.%s", x.name);
        s = expect_into(st, path, nm, x.dtype, x.ndim, x.shape, x.data, nb);
        expected++;
    }
    if (s == ARB_OK && arb_safetensors_count(st) != expected) {
        /* Name the first tensor the model does not have. */
        for (size_t i = 0; i < arb_safetensors_count(st); i++) {
            const char *tn = arb_safetensors_at(st, i)->name;
            bool known = false;
            for (int32_t j = 0; j < n && !known; j++) {
                const char *name;
                arb_ternary *t;
                arb_update_state *us;
                if (arb_model_ternary_at(m, j, &name, &t, &us) != ARB_OK) continue;
                size_t L = strlen(name);
                if (!strncmp(tn, name, L) && (!strcmp(tn + L, ".trits") || !strcmp(tn + L, ".accum") ||
                                              (t->exp && (!strcmp(tn + L, ".exp") || !strcmp(tn + L, ".exp_evidence")))))
                    known = true;
            }
            for (int32_t j = 0; j < ns && !known; j++) {
                arb_model_state_tensor x;
                if (arb_model_state_at(m, j, &x) == ARB_OK && !strncmp(tn, "state.", 6) && !strcmp(tn + 6, x.name))
                    known = true;
            }
            if (!known) return arb_error(ARB_ERR_FORMAT, "checkpoint %s: unexpected tensor '%s' (not in this model)", path, tn);
        }
        return arb_error(ARB_ERR_FORMAT, "checkpoint %s: holds %zu tensors, the model has %zu", path,
                         arb_safetensors_count(st), expected);
    }
    if (s == ARB_OK) s = arb_model_refresh(m);
    return s;
}

arb_status arb_checkpoint_load_model(const char *path, arb_device dev, arb_model **out) {
    if (!path || !out) return arb_error(ARB_ERR_INVALID_ARG, "checkpoint: bad arguments");
    *out = NULL;
    arb_safetensors *st;
    arb_status s = arb_safetensors_open(&st, path);
    if (s != ARB_OK) return arb_ckpt_wrap_error(s, path);
    arb_model_config cfg;
    uint64_t seed = 0;
    s = arb_ckpt_config(st, path, &cfg);
    const char *sd = arb_safetensors_metadata(st, "seed");
    if (sd) seed = strtoull(sd, NULL, 10);
    arb_model *m = NULL;
    if (s == ARB_OK) s = arb_model_create(&m, &cfg, seed, dev);
    if (s == ARB_OK) s = arb_ckpt_load_model_state(st, path, m);
    arb_safetensors_close(st);
    if (s != ARB_OK) {
        arb_model_free(m);
        return s;
    }
    *out = m;
    return ARB_OK;
}
