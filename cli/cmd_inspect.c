/* `arbitor inspect FILE [--json] [--metadata KEY]`: what a safetensors file holds.
 *
 * Why: the first question about any checkpoint or sidecar is "what is in it?"; this answers it
 * through the same validating reader the library uses, so a file that lists here also loads,
 * and a corrupt one gets the reader's one-line reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "formats/st_internal.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: arbitor inspect FILE [--json] [--metadata KEY]\n"
            "\n"
            "Validates a safetensors file and lists its tensors (name, dtype, shape, bytes, offset\n"
            "in the data region), its __metadata__ entries and a totals line.\n"
            "\n"
            "options:\n"
            "  --json          print one JSON object instead of the table (full metadata values)\n"
            "  --metadata KEY  print only the value of metadata KEY, unmodified (error if absent)\n"
            "  -h, --help      this help\n");
}

static uint64_t numel_of(const arb_st_tensor *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d]; /* validated: cannot overflow */
    return n;
}

static void shape_str(const arb_st_tensor *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Per-dtype tensor counts in a fixed order (arbitor's dtypes, then foreign ones by name). */
typedef struct dt_count {
    const char *name;
    size_t n;
} dt_count;

static size_t count_dtypes(const arb_safetensors *st, dt_count *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < arb_safetensors_count(st); i++) {
        const char *nm = arb_safetensors_at(st, i)->dtype_name;
        size_t j = 0;
        while (j < k && strcmp(out[j].name, nm)) j++;
        if (j == k) {
            if (k == cap) continue;
            out[k++] = (dt_count){nm, 0};
        }
        out[j].n++;
    }
    return k;
}

static int print_json(const char *path, const arb_safetensors *st, uint64_t elements, uint64_t bytes) {
    cJSON *root = cJSON_CreateObject();
    cJSON *tensors = cJSON_CreateArray();
    cJSON *meta = cJSON_CreateObject();
    if (!root || !tensors || !meta) {
        cJSON_Delete(root), cJSON_Delete(tensors), cJSON_Delete(meta);
        return arb_cli_fail("out of memory");
    }
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddNumberToObject(root, "header_bytes", (double)arb_safetensors_header_len(st));
    cJSON_AddNumberToObject(root, "data_bytes", (double)bytes);
    for (size_t i = 0; i < arb_safetensors_count(st); i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", t->dtype_name);
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(o, "shape", shape);
        cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
        cJSON_AddNumberToObject(o, "offset", (double)t->offset);
        cJSON_AddItemToArray(tensors, o);
    }
    cJSON_AddItemToObject(root, "tensors", tensors);
    for (size_t i = 0; i < arb_safetensors_metadata_count(st); i++) {
        const char *k = arb_safetensors_metadata_key(st, i);
        cJSON_AddStringToObject(meta, k, arb_safetensors_metadata(st, k));
    }
    cJSON_AddItemToObject(root, "metadata", meta);
    cJSON *tot = cJSON_AddObjectToObject(root, "total");
    cJSON_AddNumberToObject(tot, "tensors", (double)arb_safetensors_count(st));
    cJSON_AddNumberToObject(tot, "elements", (double)elements);
    cJSON_AddNumberToObject(tot, "bytes", (double)bytes);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return arb_cli_fail("out of memory");
    puts(text);
    cJSON_free(text);
    return 0;
}

static void print_table(const char *path, const arb_safetensors *st, uint64_t elements, uint64_t bytes) {
    size_t n = arb_safetensors_count(st);
    int w = 4;
    char q[256];
    for (size_t i = 0; i < n; i++) {
        int l = (int)strlen(arb_st_quote(arb_safetensors_at(st, i)->name, q, 64));
        if (l > w) w = l;
    }
    printf("%s: %zu tensors, %zu metadata entries, header %zu bytes\n", path, n, arb_safetensors_metadata_count(st),
           arb_safetensors_header_len(st));
    if (n) printf("  %-*s  %-7s  %-18s  %12s  %12s\n", w, "name", "dtype", "shape", "bytes", "offset");
    for (size_t i = 0; i < n; i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        char shp[200];
        shape_str(t, shp, sizeof shp);
        printf("  %-*s  %-7s  %-18s  %12zu  %12llu\n", w, arb_st_quote(t->name, q, 64), t->dtype_name, shp, t->nbytes,
               (unsigned long long)t->offset);
    }
    size_t nm = arb_safetensors_metadata_count(st);
    if (nm) printf("metadata:\n");
    for (size_t i = 0; i < nm; i++) {
        const char *k = arb_safetensors_metadata_key(st, i);
        const char *v = arb_safetensors_metadata(st, k);
        char qk[128];
        /* Long values (configs) are cut here; --json or --metadata KEY give them whole. */
        printf("  %s = %s", arb_st_quote(k, qk, sizeof qk), arb_st_quote(v, q, 100));
        if (strlen(v) > 96) printf("  (%zu bytes)", strlen(v));
        printf("\n");
    }
    dt_count dts[32];
    size_t nd = count_dtypes(st, dts, 32);
    printf("total: %zu tensors, %llu elements, %llu bytes of data", n, (unsigned long long)elements,
           (unsigned long long)bytes);
    for (size_t j = 0; j < nd; j++) printf("%s%s x%zu", j ? ", " : " (", dts[j].name, dts[j].n);
    printf("%s\n", nd ? ")" : "");
}

static void quiet_log(arb_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

int arb_cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *meta_key = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (arb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--metadata")) {
            if (i + 1 >= argc) return arb_cli_fail("inspect: --metadata needs a KEY");
            meta_key = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return arb_cli_fail("inspect: unknown option '%s' (try 'arbitor inspect --help')", argv[i]);
        } else if (path) {
            return arb_cli_fail("inspect: one FILE at a time (got '%s' and '%s')", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return arb_cli_fail("inspect: no FILE given (try 'arbitor inspect --help')");
    if (json && meta_key) return arb_cli_fail("inspect: --json and --metadata do not combine");

    arb_log_set(quiet_log, NULL); /* the reader's message is printed once, below, as our error line */
    arb_safetensors *st;
    arb_status s = arb_safetensors_open(&st, path);
    if (s != ARB_OK) return arb_cli_fail("%s", arb_last_error());

    int rc = 0;
    if (meta_key) {
        const char *v = arb_safetensors_metadata(st, meta_key);
        if (v) printf("%s\n", v);
        else rc = arb_cli_fail("%s: no metadata key '%s'", path, meta_key);
    } else {
        uint64_t elements = 0, bytes = 0;
        for (size_t i = 0; i < arb_safetensors_count(st); i++) {
            elements += numel_of(arb_safetensors_at(st, i));
            bytes += arb_safetensors_at(st, i)->nbytes;
        }
        if (json) rc = print_json(path, st, elements, bytes);
        else print_table(path, st, elements, bytes);
    }
    arb_safetensors_close(st);
    return rc;
}
