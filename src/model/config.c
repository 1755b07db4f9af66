/* Model configurations: the named presets, validation, and the JSON form stored in
 * checkpoints. Why JSON through cJSON: the checkpoint's metadata must say exactly which model
 * the trits belong to, in a form people can read and diff. */
#include "arbitor/model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void config_base(arb_model_config *c, const char *name) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->vocab = 272;
    c->dim = 256;
    c->n_layers = 4;
    c->n_heads = 4;
    c->ctx = 256;
    c->mlp_mult = 4;
    c->rotary = true;
    c->norm_eps = 1e-6f;
    c->enable_graph = true;
    c->graph_window = 0;
    c->graph_hops = 1;
    c->graph_anchors = true;
    c->graph_vq_edges = 0;
    c->enable_vq = false;
    c->vq_codes = 64;
    c->vq_beta = 0.25f;
    c->enable_memory = false;
    c->mem_slots = 32;
    c->mem_every = 2;
    c->enable_moe = false;
    c->n_experts = 4;
    c->expert_mult = 1;
    c->act_max_iters = 3;
    c->act_eps = 0.01f;
    c->ponder_weight = 0.01f;
    c->enable_output_router = false;
    c->router_weight = 0.1f;
    c->train_batch = 16;
    c->train_seq = 256;
    c->eta = 6.0f;
    c->eta_final_frac = 0.1f;
    c->threshold = 64;
    c->leak_shift = 5;
    c->eta_exp = 1.0f;
    c->exp_threshold = 32;
    c->exp_mode = 1;
    c->flip_balance = false;
    c->flip_target = 1e-3f;
}

arb_status arb_model_config_named(const char *name, arb_model_config *cfg) {
    if (!name || !cfg) return arb_error(ARB_ERR_INVALID_ARG, "model config: NULL argument");
    arb_model_config c;
    config_base(&c, name);
    if (strcmp(name, "seed") == 0) {
        /* The reference's full smoke: width 512, vocab 297, every component on. */
        c.vocab = 297; c.dim = 512; c.n_layers = 8; c.n_heads = 8; c.ctx = 512;
        c.graph_window = 64; c.graph_hops = 2; c.graph_vq_edges = 8;
        c.enable_vq = true; c.vq_codes = 512;
        c.enable_memory = true; c.mem_slots = 256; c.mem_every = 2;
        c.enable_moe = true; c.n_experts = 4; c.expert_mult = 2; c.act_max_iters = 3;
        c.enable_output_router = true;
        c.train_batch = 8; c.train_seq = 512;
    } else if (strcmp(name, "shakespeare") == 0) {
        /* The reference simulation's shape: 6 x 384, 6 heads, ctx 256, text only. */
        c.vocab = 272; c.dim = 384; c.n_layers = 6; c.n_heads = 6; c.ctx = 256;
        c.train_batch = 64; c.train_seq = 256;
        c.exp_mode = 2; /* the reference moved E on linears and the embedding; it had no gains */
    } else if (strcmp(name, "cpu-small") == 0) {
        /* Sized for 2 CPU cores x 15 minutes (docs/ARCHITECTURE.md, Model): text only,
         * full causal graph (= attention), no VQ/memory/MoE; 2k-token steps with eta 3,
         * flip balancing and fixed row exponents learned fastest in the trials. */
        c.vocab = 272; c.dim = 128; c.n_layers = 4; c.n_heads = 4; c.ctx = 64;
        c.train_batch = 32; c.train_seq = 64;
        c.eta = 3.0f; c.exp_mode = 0; c.flip_balance = true;
    } else if (strcmp(name, "tiny") == 0) {
        /* Every component on at toy shapes: tests. */
        c.vocab = 272; c.dim = 32; c.n_layers = 2; c.n_heads = 2; c.ctx = 32; c.mlp_mult = 2;
        c.graph_window = 8; c.graph_hops = 2; c.graph_vq_edges = 4;
        c.enable_vq = true; c.vq_codes = 16;
        c.enable_memory = true; c.mem_slots = 8; c.mem_every = 1;
        c.enable_moe = true; c.n_experts = 2; c.expert_mult = 1; c.act_max_iters = 3;
        c.enable_output_router = true;
        c.train_batch = 4; c.train_seq = 32;
    } else {
        return arb_error(ARB_ERR_NOT_FOUND, "model config '%s' is unknown (seed, shakespeare, cpu-small, tiny)", name);
    }
    *cfg = c;
    return ARB_OK;
}

#define CHECK_RANGE(field, lo, hi)                                                                   \
    do {                                                                                             \
        if (!(c->field >= (lo) && c->field <= (hi)))                                                 \
            return arb_error(ARB_ERR_INVALID_ARG, "model config: %s = %g is outside [%g, %g]", #field, \
                             (double)c->field, (double)(lo), (double)(hi));                          \
    } while (0)

arb_status arb_model_config_validate(const arb_model_config *c) {
    if (!c) return arb_error(ARB_ERR_INVALID_ARG, "model config: NULL");
    CHECK_RANGE(vocab, ARB_VOCAB_MIN, 1 << 20);
    CHECK_RANGE(dim, 2, 1 << 16);
    CHECK_RANGE(n_layers, 0, 1024);
    CHECK_RANGE(n_heads, 1, 1024);
    CHECK_RANGE(ctx, 1, 1 << 20);
    CHECK_RANGE(mlp_mult, 1, 64);
    CHECK_RANGE(norm_eps, 0.0, 1.0);
    CHECK_RANGE(graph_window, 0, 1 << 20);
    CHECK_RANGE(graph_hops, 1, 64);
    CHECK_RANGE(graph_vq_edges, 0, 1 << 16);
    CHECK_RANGE(vq_codes, 1, 1 << 16);
    CHECK_RANGE(vq_beta, 0.0, 1e6);
    CHECK_RANGE(mem_slots, 1, 1 << 16);
    CHECK_RANGE(mem_every, 1, 1024);
    CHECK_RANGE(n_experts, 1, 256);
    CHECK_RANGE(expert_mult, 1, 64);
    CHECK_RANGE(act_max_iters, 1, 64);
    CHECK_RANGE(act_eps, 0.0, 0.5);
    CHECK_RANGE(ponder_weight, 0.0, 1e6);
    CHECK_RANGE(router_weight, 0.0, 1e6);
    CHECK_RANGE(train_batch, 1, 1 << 20);
    CHECK_RANGE(train_seq, 1, c->ctx);
    CHECK_RANGE(eta, 0.0, 127.0);
    CHECK_RANGE(eta_final_frac, 0.0, 1.0);
    CHECK_RANGE(threshold, 1, 127);
    CHECK_RANGE(leak_shift, 1, 30);
    CHECK_RANGE(eta_exp, 0.0, 127.0);
    CHECK_RANGE(exp_threshold, 1, 127);
    CHECK_RANGE(flip_target, 1e-7, 0.5);
    CHECK_RANGE(exp_mode, 0, 2);
    if (c->dim % c->n_heads != 0)
        return arb_error(ARB_ERR_INVALID_ARG, "model config: dim %d is not a multiple of n_heads %d", c->dim, c->n_heads);
    if (c->rotary && (c->dim / c->n_heads) % 2 != 0)
        return arb_error(ARB_ERR_INVALID_ARG, "model config: rotary needs an even head dim (dim %d / heads %d)", c->dim,
                         c->n_heads);
    if (memchr(c->name, 0, sizeof c->name) == NULL)
        return arb_error(ARB_ERR_INVALID_ARG, "model config: name is not terminated");
    return ARB_OK;
}

/* One table drives both directions of the JSON form. */
typedef enum { F_I32, F_F32, F_BOOL } field_type;
typedef struct {
    const char *key;
    field_type type;
    size_t off;
} field_desc;

#define FI(n) {#n, F_I32, offsetof(arb_model_config, n)}
#define FF(n) {#n, F_F32, offsetof(arb_model_config, n)}
#define FB(n) {#n, F_BOOL, offsetof(arb_model_config, n)}
static const field_desc k_fields[] = {
    FI(vocab), FI(dim), FI(n_layers), FI(n_heads), FI(ctx), FI(mlp_mult), FB(rotary), FF(norm_eps),
    FB(enable_graph), FI(graph_window), FI(graph_hops), FB(graph_anchors), FI(graph_vq_edges),
    FB(enable_vq), FI(vq_codes), FF(vq_beta),
    FB(enable_memory), FI(mem_slots), FI(mem_every),
    FB(enable_moe), FI(n_experts), FI(expert_mult), FI(act_max_iters), FF(act_eps), FF(ponder_weight),
    FB(enable_output_router), FF(router_weight),
    FI(train_batch), FI(train_seq), FF(eta), FF(eta_final_frac), FI(threshold), FI(leak_shift), FF(eta_exp),
    FI(exp_threshold), FI(exp_mode), FB(flip_balance), FF(flip_target),
};
#define N_FIELDS (sizeof k_fields / sizeof k_fields[0])

arb_status arb_model_config_to_json(const arb_model_config *cfg, char **json_out) {
    if (!cfg || !json_out) return arb_error(ARB_ERR_INVALID_ARG, "model config to_json: NULL argument");
    cJSON *o = cJSON_CreateObject();
    if (!o) return arb_error(ARB_ERR_OOM, "model config to_json: out of memory");
    bool ok = cJSON_AddStringToObject(o, "name", cfg->name) != NULL;
    for (size_t i = 0; i < N_FIELDS && ok; i++) {
        const char *p = (const char *)cfg + k_fields[i].off;
        switch (k_fields[i].type) {
        case F_I32: ok = cJSON_AddNumberToObject(o, k_fields[i].key, *(const int32_t *)p) != NULL; break;
        case F_F32: ok = cJSON_AddNumberToObject(o, k_fields[i].key, (double)*(const float *)p) != NULL; break;
        case F_BOOL: ok = cJSON_AddBoolToObject(o, k_fields[i].key, *(const bool *)p) != NULL; break;
        }
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return arb_error(ARB_ERR_OOM, "model config to_json: out of memory");
    *json_out = s;
    return ARB_OK;
}

arb_status arb_model_config_from_json(const char *json, arb_model_config *cfg) {
    if (!json || !cfg) return arb_error(ARB_ERR_INVALID_ARG, "model config from_json: NULL argument");
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return arb_error(ARB_ERR_FORMAT, "model config: not a JSON object");
    }
    arb_model_config c = *cfg;
    arb_status st = ARB_OK;
    for (cJSON *it = o->child; it && st == ARB_OK; it = it->next) {
        if (!it->string) continue;
        if (strcmp(it->string, "name") == 0) {
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof c.name)
                st = arb_error(ARB_ERR_FORMAT, "model config: 'name' must be a string of < %d bytes",
                               ARB_MODEL_NAME_MAX);
            else
                snprintf(c.name, sizeof c.name, "%s", it->valuestring);
            continue;
        }
        size_t i = 0;
        while (i < N_FIELDS && strcmp(k_fields[i].key, it->string) != 0) i++;
        if (i == N_FIELDS) {
            st = arb_error(ARB_ERR_FORMAT, "model config: unknown key '%s'", it->string);
            break;
        }
        char *p = (char *)&c + k_fields[i].off;
        if (k_fields[i].type == F_BOOL) {
            if (!cJSON_IsBool(it)) st = arb_error(ARB_ERR_FORMAT, "model config: '%s' must be true/false", it->string);
            else *(bool *)p = cJSON_IsTrue(it);
        } else if (!cJSON_IsNumber(it)) {
            st = arb_error(ARB_ERR_FORMAT, "model config: '%s' must be a number", it->string);
        } else if (k_fields[i].type == F_I32) {
            double v = it->valuedouble;
            if (v != (double)(int32_t)v || v < -2147483648.0 || v > 2147483647.0)
                st = arb_error(ARB_ERR_FORMAT, "model config: '%s' = %g is not a 32-bit integer", it->string, v);
            else *(int32_t *)p = (int32_t)v;
        } else {
            *(float *)p = (float)it->valuedouble;
        }
    }
    cJSON_Delete(o);
    if (st != ARB_OK) return st;
    ARB_TRY(arb_model_config_validate(&c));
    *cfg = c;
    return ARB_OK;
}
