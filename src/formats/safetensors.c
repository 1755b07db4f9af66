/* safetensors reader: mmap the file read-only and validate everything before a tensor is touched.
 *
 * Why so strict: checkpoints come from users and the network. Every number in the header is
 * checked with overflow-safe arithmetic (header length vs file size, shape × itemsize = byte
 * span, offsets in range), the tensors must tile the data region exactly (no overlaps, no
 * holes, no trailing bytes: the format's rule against polyglot files, enforced by the reference
 * implementation too), names are unique and valid UTF-8, and __metadata__ is string → string.
 * A bad file is ARB_ERR_FORMAT with one line that names the tensor and the numbers involved.
 * docs/FORMATS.md lists every rule. */
#include "arbitor/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "formats/st_internal.h"

struct arb_safetensors {
    char *source;            /* path, or "<memory>": prefixes error messages */
    void *map;               /* mmap of the whole file (NULL for open_memory) */
    size_t map_len;
    const uint8_t *base;     /* the whole file */
    size_t len;
    size_t header_len;       /* JSON bytes; data region = base + 8 + header_len */
    size_t ntensors;
    arb_st_tensor *tensors;  /* (ntensors) header order */
    size_t *by_name;         /* (ntensors) indices sorted by name, for find */
    size_t nmeta;
    char **meta_keys;        /* (nmeta) file order */
    char **meta_vals;        /* (nmeta) */
    size_t *meta_by_key;     /* (nmeta) indices sorted by key */
    char *strings;           /* one block holding every name, key and value */
};

/* ---------------------------------------------------------------- shared helpers */

static const arb_st_dtype_info g_st_dtypes[] = {
    {"F32", 32, ARB_F32},     {"BF16", 16, ARB_BF16},   {"F16", 16, ARB_F16},
    {"I8", 8, ARB_I8},        {"U8", 8, ARB_U8},        {"I32", 32, ARB_I32},
    {"I64", 64, ARB_I64},
    {"F64", 64, ARB_ST_DTYPE_FOREIGN},     {"I16", 16, ARB_ST_DTYPE_FOREIGN},
    {"U16", 16, ARB_ST_DTYPE_FOREIGN},     {"U32", 32, ARB_ST_DTYPE_FOREIGN},
    {"U64", 64, ARB_ST_DTYPE_FOREIGN},     {"BOOL", 8, ARB_ST_DTYPE_FOREIGN},
    {"F8_E4M3", 8, ARB_ST_DTYPE_FOREIGN},  {"F8_E5M2", 8, ARB_ST_DTYPE_FOREIGN},
    {"F8_E8M0", 8, ARB_ST_DTYPE_FOREIGN},  {"C64", 64, ARB_ST_DTYPE_FOREIGN},
    {"F4", 4, ARB_ST_DTYPE_FOREIGN},       {"F6_E2M3", 6, ARB_ST_DTYPE_FOREIGN},
    {"F6_E3M2", 6, ARB_ST_DTYPE_FOREIGN},
};

const arb_st_dtype_info *arb_st_dtype_lookup(const char *name) {
    for (size_t i = 0; i < sizeof g_st_dtypes / sizeof g_st_dtypes[0]; i++)
        if (strcmp(name, g_st_dtypes[i].name) == 0) return &g_st_dtypes[i];
    return NULL;
}

bool arb_st_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}

const char *arb_st_quote(const char *s, char *buf, size_t cap) {
    size_t o = 0, limit = cap > 4 ? cap - 4 : 0;
    if (!s) s = "(null)";
    for (; *s && o < limit; s++) buf[o++] = ((unsigned char)*s < 0x20 || *s == 0x7F) ? '?' : *s;
    if (*s && cap >= 4) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    if (cap) buf[o < cap ? o : cap - 1] = '\0';
    return buf;
}

#define QN 96 /* quoted-name buffer size: names are cut at ~92 bytes in messages */

/* ---------------------------------------------------------------- parsing */

static const char *json_type(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* A JSON number that is a whole number in [0, max] (max ≤ 2^53, where doubles are exact). */
static bool json_uint(const cJSON *v, uint64_t max, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > (double)max) return false; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return false;
    *out = u;
    return true;
}

typedef struct span_ref {
    uint64_t begin, end;
    size_t index;
} span_ref;

static int cmp_span(const void *a, const void *b) {
    const span_ref *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* qsort context for sorting indices by the string they point at (no qsort_r in C17). */
typedef struct name_ref {
    const char *name;
    size_t index;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Sorts `n` names into `order`; reports the first duplicate via *dup (NULL if none). */
static arb_status sort_names(const char *const *names, size_t n, size_t *order, const char **dup) {
    *dup = NULL;
    if (n == 0) return ARB_OK;
    name_ref *refs = malloc(n * sizeof *refs);
    if (!refs) return arb_error(ARB_ERR_OOM, "out of memory sorting %zu names", n);
    for (size_t i = 0; i < n; i++) refs[i] = (name_ref){names[i], i};
    qsort(refs, n, sizeof *refs, cmp_name_ref);
    for (size_t i = 0; i < n; i++) {
        order[i] = refs[i].index;
        if (i && !*dup && strcmp(refs[i].name, refs[i - 1].name) == 0) *dup = names[refs[i].index];
    }
    free(refs);
    return ARB_OK;
}

static void st_free(arb_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    free(st->source);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->meta_by_key);
    free(st->strings);
    free(st);
}

/* Copies every string the handle keeps into one block so the cJSON tree can go. */
static char *arena_put(char **cursor, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = *cursor;
    memcpy(p, s, n);
    *cursor += n;
    return p;
}

static arb_status parse_metadata(arb_safetensors *st, const cJSON *meta, const char *src) {
    char q[QN];
    if (!cJSON_IsObject(meta))
        return arb_error(ARB_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings", src, json_type(meta));
    size_t n = 0;
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring)
            return arb_error(ARB_ERR_FORMAT, "%s: __metadata__ '%s' is %s, expected a string", src,
                             arb_st_quote(e->string, q, sizeof q), json_type(e));
        n++;
    }
    st->nmeta = n;
    if (n == 0) return ARB_OK;
    st->meta_keys = calloc(n, sizeof *st->meta_keys);
    st->meta_vals = calloc(n, sizeof *st->meta_vals);
    st->meta_by_key = calloc(n, sizeof *st->meta_by_key);
    if (!st->meta_keys || !st->meta_vals || !st->meta_by_key)
        return arb_error(ARB_ERR_OOM, "%s: out of memory for %zu metadata entries", src, n);
    size_t i = 0;
    for (const cJSON *e = meta->child; e; e = e->next, i++) {
        st->meta_keys[i] = e->string;
        st->meta_vals[i] = e->valuestring;
    }
    const char *dup;
    ARB_TRY(sort_names((const char *const *)st->meta_keys, n, st->meta_by_key, &dup));
    if (dup) return arb_error(ARB_ERR_FORMAT, "%s: duplicate __metadata__ key '%s'", src, arb_st_quote(dup, q, sizeof q));
    return ARB_OK;
}

static arb_status parse_tensor(arb_safetensors *st, const cJSON *e, size_t data_len, arb_st_tensor *t,
                               const char *src) {
    char q[QN];
    const char *name = arb_st_quote(e->string, q, sizeof q);
    if (!cJSON_IsObject(e))
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s' is %s, expected an object", src, name, json_type(e));
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!jd || !js || !jo)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s' lacks \"%s\"", src, name,
                         !jd ? "dtype" : !js ? "shape" : "data_offsets");

    if (!cJSON_IsString(jd) || !jd->valuestring)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string", src, name, json_type(jd));
    const arb_st_dtype_info *dt = arb_st_dtype_lookup(jd->valuestring);
    if (!dt) {
        char qd[32];
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", src, name,
                         arb_st_quote(jd->valuestring, qd, sizeof qd));
    }
    t->dtype = (arb_dtype)dt->arb;
    t->dtype_name = dt->name; /* static spelling, not the file's bytes */

    if (!cJSON_IsArray(js))
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array", src, name, json_type(js));
    int ndim = cJSON_GetArraySize(js);
    if (ndim > ARB_MAX_DIMS)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (arbitor allows at most %d)", src, name,
                         ndim, ARB_MAX_DIMS);
    t->ndim = ndim;
    size_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *v = js->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!json_uint(v, ARB_ST_MAX_DIM, &dim)) {
            if (cJSON_IsNumber(v))
                return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': shape[%d] = %.17g is not an integer in [0, 2^48]",
                                 src, name, d, v->valuedouble);
            return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %s, expected an integer", src, name, d,
                             json_type(v));
        }
        t->shape[d] = (int64_t)dim;
        if (!arb_mul_size(numel, (size_t)dim, &numel)) overflow = true;
    }
    /* A zero dimension makes the product 0 whatever overflowed before it. */
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] == 0) overflow = false, numel = 0;
    size_t bits;
    if (overflow || !arb_mul_size(numel, dt->bits, &bits))
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': %s shape's byte size overflows", src, name, dt->name);
    if (bits % 8)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': %zu %s elements do not fill whole bytes", src, name, numel,
                         dt->name);
    size_t need = bits / 8;

    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': data_offsets must be an array [begin, end]", src, name);
    uint64_t b, en;
    uint64_t lim = data_len < ((uint64_t)1 << 53) ? data_len : ((uint64_t)1 << 53);
    if (!json_uint(jo->child, ((uint64_t)1 << 53), &b) || !json_uint(jo->child->next, ((uint64_t)1 << 53), &en))
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", src, name);
    if (b > en)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] end before they begin", src, name,
                         (unsigned long long)b, (unsigned long long)en);
    if (en > lim)
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] run past the %zu-byte data region",
                         src, name, (unsigned long long)b, (unsigned long long)en, data_len);
    if (en - b != need) {
        char shp[160];
        size_t o = 0;
        o += (size_t)snprintf(shp + o, sizeof shp - o, "%s[", dt->name);
        for (int i = 0; i < ndim && o < sizeof shp; i++)
            o += (size_t)snprintf(shp + o, sizeof shp - o, i ? ",%lld" : "%lld", (long long)t->shape[i]);
        if (o < sizeof shp) snprintf(shp + o, sizeof shp - o, "]");
        return arb_error(ARB_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] span %llu bytes but %s needs %zu",
                         src, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b), shp,
                         need);
    }
    t->offset = b;
    t->nbytes = need;
    t->data = st->base + 8 + st->header_len + b;
    return ARB_OK;
}

/* The tensors must tile [0, data_len) exactly: sorted by offset, each begins where the last ended. */
static arb_status check_tiling(const arb_safetensors *st, size_t data_len, const char *src) {
    size_t n = st->ntensors;
    span_ref *s = n ? malloc(n * sizeof *s) : NULL;
    if (n && !s) return arb_error(ARB_ERR_OOM, "%s: out of memory sorting %zu tensors", src, n);
    for (size_t i = 0; i < n; i++) s[i] = (span_ref){st->tensors[i].offset, st->tensors[i].offset + st->tensors[i].nbytes, i};
    if (n) qsort(s, n, sizeof *s, cmp_span);
    uint64_t at = 0;
    arb_status rc = ARB_OK;
    char q1[QN], q2[QN];
    for (size_t i = 0; i < n && rc == ARB_OK; i++) {
        if (s[i].begin < at) {
            rc = arb_error(ARB_ERR_FORMAT, "%s: tensors '%s' [%llu,%llu] and '%s' [%llu,%llu] overlap", src,
                           arb_st_quote(st->tensors[s[i - 1].index].name, q1, sizeof q1),
                           (unsigned long long)s[i - 1].begin, (unsigned long long)s[i - 1].end,
                           arb_st_quote(st->tensors[s[i].index].name, q2, sizeof q2), (unsigned long long)s[i].begin,
                           (unsigned long long)s[i].end);
        } else if (s[i].begin > at) {
            rc = arb_error(ARB_ERR_FORMAT, "%s: data bytes [%llu,%llu) belong to no tensor (the format forbids holes)",
                           src, (unsigned long long)at, (unsigned long long)s[i].begin);
        }
        at = s[i].end;
    }
    if (rc == ARB_OK && at != data_len)
        rc = arb_error(ARB_ERR_FORMAT, "%s: data region is %zu bytes but the tensors cover only %llu (trailing bytes)",
                       src, data_len, (unsigned long long)at);
    free(s);
    return rc;
}

static bool json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static arb_status parse(arb_safetensors *st) {
    const char *src = st->source;
    if (st->len < 8)
        return arb_error(ARB_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", src, st->len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | st->base[i];
    if (hl > ARB_ST_MAX_HEADER)
        return arb_error(ARB_ERR_FORMAT, "%s: header length %llu exceeds the format's limit of %llu bytes (not a safetensors file?)", src,
                         (unsigned long long)hl, (unsigned long long)ARB_ST_MAX_HEADER);
    if (hl > st->len - 8)
        return arb_error(ARB_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file (truncated?)",
                         src, (unsigned long long)hl, st->len);
    if (hl < 2) return arb_error(ARB_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", src,
                                 (unsigned long long)hl);
    st->header_len = (size_t)hl;
    const char *h = (const char *)st->base + 8;
    size_t data_len = st->len - 8 - st->header_len;
    if (h[0] != '{') return arb_error(ARB_ERR_FORMAT, "%s: header does not start with '{'", src);
    if (!arb_st_utf8_valid((const unsigned char *)h, st->header_len))
        return arb_error(ARB_ERR_FORMAT, "%s: header is not valid UTF-8", src);
    if (memchr(h, '\0', st->header_len))
        return arb_error(ARB_ERR_FORMAT, "%s: header contains a NUL byte", src);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, st->header_len, &end, 0);
    if (!root) {
        /* cJSON reports the failing position through `end` (its global error pointer is shared
         * between threads, so it is not read here). */
        size_t at = (end && end >= h && end <= h + st->header_len) ? (size_t)(end - h) : 0;
        return arb_error(ARB_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of %zu)", src, at, st->header_len);
    }
    arb_status rc = ARB_OK;
    for (const char *p = end; p < h + st->header_len; p++) {
        if (!json_space((uint8_t)*p)) {
            rc = arb_error(ARB_ERR_FORMAT, "%s: header has bytes after the JSON object (at byte %zu)", src,
                           (size_t)(p - h));
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        rc = arb_error(ARB_ERR_FORMAT, "%s: header is not a JSON object", src);
        goto out;
    }

    /* Every top-level key: duplicates are refused (cJSON keeps them all; the format forbids them). */
    size_t nkeys = 0, ntens = 0, strbytes = 0;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        nkeys++;
        if (strcmp(e->string, "__metadata__") == 0) {
            meta = e;
        } else {
            ntens++;
            strbytes += strlen(e->string) + 1;
        }
    }
    {
        const char **keys = malloc((nkeys ? nkeys : 1) * sizeof *keys);
        size_t *order = malloc((nkeys ? nkeys : 1) * sizeof *order);
        if (!keys || !order) {
            free(keys);
            free(order);
            rc = arb_error(ARB_ERR_OOM, "%s: out of memory for %zu header entries", src, nkeys);
            goto out;
        }
        size_t i = 0;
        for (const cJSON *e = root->child; e; e = e->next) keys[i++] = e->string;
        const char *dup = NULL;
        rc = sort_names(keys, nkeys, order, &dup);
        char q[QN];
        if (rc == ARB_OK && dup)
            rc = arb_error(ARB_ERR_FORMAT, "%s: duplicate %s '%s' in header", src,
                           strcmp(dup, "__metadata__") ? "tensor name" : "key", arb_st_quote(dup, q, sizeof q));
        free(keys);
        free(order);
        if (rc != ARB_OK) goto out;
    }

    if (meta) {
        rc = parse_metadata(st, meta, src);
        if (rc != ARB_OK) goto out;
        for (size_t i = 0; i < st->nmeta; i++) strbytes += strlen(st->meta_keys[i]) + strlen(st->meta_vals[i]) + 2;
    }

    st->ntensors = ntens;
    st->tensors = calloc(ntens ? ntens : 1, sizeof *st->tensors);
    st->by_name = calloc(ntens ? ntens : 1, sizeof *st->by_name);
    st->strings = malloc(strbytes ? strbytes : 1);
    if (!st->tensors || !st->by_name || !st->strings) {
        rc = arb_error(ARB_ERR_OOM, "%s: out of memory for %zu tensors", src, ntens);
        goto out;
    }
    char *cursor = st->strings;
    size_t ti = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        arb_st_tensor *t = &st->tensors[ti++];
        rc = parse_tensor(st, e, data_len, t, src);
        if (rc != ARB_OK) goto out;
        t->name = arena_put(&cursor, e->string);
    }
    for (size_t i = 0; i < st->nmeta; i++) {
        st->meta_keys[i] = arena_put(&cursor, st->meta_keys[i]);
        st->meta_vals[i] = arena_put(&cursor, st->meta_vals[i]);
    }
    const char **names = malloc((ntens ? ntens : 1) * sizeof *names);
    if (!names) {
        rc = arb_error(ARB_ERR_OOM, "%s: out of memory for %zu tensors", src, ntens);
        goto out;
    }
    for (size_t i = 0; i < ntens; i++) names[i] = st->tensors[i].name;
    const char *dup = NULL;
    rc = sort_names(names, ntens, st->by_name, &dup);
    free(names);
    if (rc != ARB_OK) goto out;
    rc = check_tiling(st, data_len, src);
out:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- open / close */

static arb_status st_new(arb_safetensors **out, const char *source) {
    arb_safetensors *st = calloc(1, sizeof *st);
    if (!st) return arb_error(ARB_ERR_OOM, "out of memory opening %s", source);
    st->source = strdup(source);
    if (!st->source) {
        free(st);
        return arb_error(ARB_ERR_OOM, "out of memory opening %s", source);
    }
    *out = st;
    return ARB_OK;
}

static arb_status st_finish(arb_safetensors **out, arb_safetensors *st) {
    arb_status rc = parse(st);
    if (rc != ARB_OK) {
        st_free(st);
        return rc;
    }
    *out = st;
    return ARB_OK;
}

arb_status arb_safetensors_open(arb_safetensors **out, const char *path) {
    if (!out || !path) return arb_error(ARB_ERR_INVALID_ARG, "arb_safetensors_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return arb_error(ARB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return arb_error(ARB_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return arb_error(ARB_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return arb_error(ARB_ERR_FORMAT, "'%s' is too large to map", path);
    }
    arb_safetensors *st = NULL;
    arb_status rc = st_new(&st, path);
    if (rc != ARB_OK) {
        close(fd);
        return rc;
    }
    st->len = (size_t)sb.st_size;
    if (st->len > 0) {
        void *m = mmap(NULL, st->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            st_free(st);
            return arb_error(ARB_ERR_IO, "cannot map '%s': %s", path, strerror(e));
        }
        st->map = m;
        st->map_len = st->len;
        st->base = m;
    } else {
        st->base = (const uint8_t *)"";
    }
    close(fd); /* the mapping keeps the file */
    return st_finish(out, st);
}

arb_status arb_safetensors_open_memory(arb_safetensors **out, const void *buf, size_t len) {
    if (!out || (!buf && len)) return arb_error(ARB_ERR_INVALID_ARG, "arb_safetensors_open_memory: NULL argument");
    *out = NULL;
    arb_safetensors *st = NULL;
    ARB_TRY(st_new(&st, "<memory>"));
    st->base = buf ? buf : (const void *)"";
    st->len = len;
    return st_finish(out, st);
}

void arb_safetensors_close(arb_safetensors *st) { st_free(st); }

/* ---------------------------------------------------------------- queries */

size_t arb_safetensors_count(const arb_safetensors *st) { return st ? st->ntensors : 0; }

const arb_st_tensor *arb_safetensors_at(const arb_safetensors *st, size_t i) {
    return (st && i < st->ntensors) ? &st->tensors[i] : NULL;
}

const arb_st_tensor *arb_safetensors_find(const arb_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const arb_st_tensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *arb_safetensors_metadata(const arb_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    size_t lo = 0, hi = st->nmeta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t k = st->meta_by_key[mid];
        int c = strcmp(key, st->meta_keys[k]);
        if (c == 0) return st->meta_vals[k];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t arb_safetensors_metadata_count(const arb_safetensors *st) { return st ? st->nmeta : 0; }

const char *arb_safetensors_metadata_key(const arb_safetensors *st, size_t i) {
    return (st && i < st->nmeta) ? st->meta_keys[i] : NULL;
}

size_t arb_safetensors_header_len(const arb_safetensors *st) { return st ? st->header_len : 0; }

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    int w = snprintf(buf, cap, "[");
    o = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && o < cap; i++) {
        if (shape[i] < 0) w = snprintf(buf + o, cap - o, i ? ",*" : "*");
        else w = snprintf(buf + o, cap - o, i ? ",%lld" : "%lld", (long long)shape[i]);
        o += w > 0 ? (size_t)w : 0;
    }
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

arb_status arb_safetensors_expect(const arb_safetensors *st, const char *name, arb_dtype dtype, int ndim,
                                  const int64_t *shape, const arb_st_tensor **out) {
    if (out) *out = NULL;
    if (!st || !name || ndim < 0 || ndim > ARB_MAX_DIMS || (ndim && !shape))
        return arb_error(ARB_ERR_INVALID_ARG, "arb_safetensors_expect: bad arguments");
    char q[QN];
    const arb_st_tensor *t = arb_safetensors_find(st, name);
    if (!t) return arb_error(ARB_ERR_NOT_FOUND, "%s: no tensor '%s'", st->source, arb_st_quote(name, q, sizeof q));
    if (t->dtype != dtype)
        return arb_error(ARB_ERR_DTYPE, "%s: tensor '%s' is %s, expected %s", st->source, arb_st_quote(name, q, sizeof q),
                         t->dtype_name, arb_dtype_name(dtype));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (shape[i] >= 0 && shape[i] != t->shape[i]) ok = false;
    if (!ok) {
        char have[200], want[200];
        format_shape(have, sizeof have, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return arb_error(ARB_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", st->source,
                         arb_st_quote(name, q, sizeof q), have, want);
    }
    if (out) *out = t;
    return ARB_OK;
}

arb_status arb_safetensors_load_f32(const arb_safetensors *st, const char *name, arb_tensor *out) {
    if (!st || !name || !out) return arb_error(ARB_ERR_INVALID_ARG, "arb_safetensors_load_f32: NULL argument");
    char q[QN];
    const arb_st_tensor *t = arb_safetensors_find(st, name);
    if (!t) return arb_error(ARB_ERR_NOT_FOUND, "%s: no tensor '%s'", st->source, arb_st_quote(name, q, sizeof q));
    if (t->dtype != ARB_F32 && t->dtype != ARB_BF16 && t->dtype != ARB_F16)
        return arb_error(ARB_ERR_DTYPE, "%s: tensor '%s' is %s; only F32, BF16 and F16 convert to F32", st->source,
                         arb_st_quote(name, q, sizeof q), t->dtype_name);
    ARB_TRY(arb_tensor_init(out, ARB_F32, t->ndim, t->shape, arb_cpu()));
    float *dst = out->data;
    const uint8_t *src = t->data;
    size_t n = t->nbytes / arb_dtype_size(t->dtype);
    if (t->dtype == ARB_F32) {
        memcpy(dst, src, t->nbytes); /* the mapping may be unaligned: memcpy, never a float* cast */
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            dst[i] = t->dtype == ARB_BF16 ? arb_bf16_to_f32(h) : arb_f16_to_f32(h);
        }
    }
    return ARB_OK;
}
