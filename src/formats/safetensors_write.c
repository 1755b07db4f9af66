/* safetensors writer: collect tensors and metadata, then write one file atomically.
 *
 * Why this shape: a crash or a full disk must never leave a half-written checkpoint where a good
 * one was. The bytes go to "<path>.tmp.<pid>" in the target's directory (created at open, so a
 * missing directory fails before any work), are fsynced, renamed over the target, and the
 * directory is fsynced so the rename itself survives a power cut. Any failure removes the temp.
 *
 * Output is deterministic: the header lists tensors in insertion order and metadata keys in
 * sorted order; the data region stores tensors by descending item size (stable), which keeps
 * every tensor naturally aligned without padding (the format forbids holes), and the header is
 * padded with spaces to a multiple of 8 bytes. Same content in the same order → same bytes. */
#include "arbitor/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/st_internal.h"

typedef struct wr_tensor {
    char *name;
    arb_dtype dtype;
    int ndim;
    int64_t shape[ARB_MAX_DIMS];
    const void *data; /* owned copy, or the caller's buffer for add_ref */
    bool owned;
    size_t nbytes;
} wr_tensor;

typedef struct wr_meta {
    char *key, *value;
} wr_meta;

struct arb_st_writer {
    char *path, *tmp;
    int fd;
    wr_tensor *t;
    size_t n, cap;
    size_t *slots; /* open-addressing hash of tensor names → index+1, for duplicate checks */
    size_t nslots;
    wr_meta *m;
    size_t nm, mcap;
};

/* ---------------------------------------------------------------- small helpers */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Returns the slot holding `name`, or the empty slot where it would go. */
static size_t slot_of(const arb_st_writer *w, const char *name) {
    size_t mask = w->nslots - 1, i = (size_t)hash_str(name) & mask;
    while (w->slots[i] && strcmp(w->t[w->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

static arb_status grow_slots(arb_st_writer *w) {
    size_t ns = w->nslots ? w->nslots * 2 : 64;
    size_t *old = w->slots, oldn = w->nslots;
    w->slots = calloc(ns, sizeof *w->slots);
    if (!w->slots) {
        w->slots = old;
        return arb_error(ARB_ERR_OOM, "out of memory for the writer's name table");
    }
    w->nslots = ns;
    for (size_t i = 0; i < oldn; i++)
        if (old[i]) w->slots[slot_of(w, w->t[old[i] - 1].name)] = old[i];
    free(old);
    return ARB_OK;
}

static arb_status write_all(int fd, const void *buf, size_t n, const char *path) {
    const uint8_t *p = buf;
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return arb_error(ARB_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        }
        if (k == 0) return arb_error(ARB_ERR_IO, "cannot write '%s': no progress", path);
        p += k;
        n -= (size_t)k;
    }
    return ARB_OK;
}

/* A growable byte buffer for the header. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string literal: escapes quotes, backslashes and control bytes; UTF-8 passes through. */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') sb_put(b, "\\\"", 2);
        else if (c == '\\') sb_put(b, "\\\\", 2);
        else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_put(b, e, 6);
        } else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static void writer_free(arb_st_writer *w) {
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        if (w->t[i].owned) arb_free((void *)w->t[i].data);
    }
    for (size_t i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].value);
    }
    free(w->t);
    free(w->slots);
    free(w->m);
    free(w->path);
    free(w->tmp);
    free(w);
}

static void writer_discard(arb_st_writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp) unlink(w->tmp);
}

/* ---------------------------------------------------------------- API */

arb_status arb_st_writer_open(arb_st_writer **out, const char *path) {
    if (!out || !path || !*path) return arb_error(ARB_ERR_INVALID_ARG, "arb_st_writer_open: empty path");
    *out = NULL;
    arb_st_writer *w = calloc(1, sizeof *w);
    if (!w) return arb_error(ARB_ERR_OOM, "out of memory opening writer for '%s'", path);
    w->fd = -1;
    size_t cap = strlen(path) + 48;
    w->path = strdup(path);
    w->tmp = malloc(cap);
    if (!w->path || !w->tmp) {
        writer_free(w);
        return arb_error(ARB_ERR_OOM, "out of memory opening writer for '%s'", path);
    }
    /* "<path>.tmp.<pid>", or ".<n>" after it if another writer in this process holds that name. */
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (attempt == 0) snprintf(w->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
        else snprintf(w->tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd >= 0 || errno != EEXIST) break;
    }
    if (w->fd < 0) {
        int e = errno;
        arb_status rc = arb_error(ARB_ERR_IO, "cannot create '%s' (temp file for '%s'): %s", w->tmp, path, strerror(e));
        free(w->tmp);
        w->tmp = NULL; /* nothing of ours to remove */
        writer_free(w);
        return rc;
    }
    *out = w;
    return ARB_OK;
}

static arb_status writer_add(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, bool copy) {
    if (!w || !name) return arb_error(ARB_ERR_INVALID_ARG, "arb_st_writer_add: NULL writer or name");
    char q[96];
    if (!arb_st_utf8_valid((const unsigned char *)name, strlen(name)))
        return arb_error(ARB_ERR_INVALID_ARG, "tensor name '%s' is not valid UTF-8", arb_st_quote(name, q, sizeof q));
    if (strcmp(name, "__metadata__") == 0)
        return arb_error(ARB_ERR_INVALID_ARG, "'__metadata__' is reserved and cannot name a tensor");
    if ((int)dtype < 0 || dtype >= ARB_DTYPE_COUNT)
        return arb_error(ARB_ERR_DTYPE, "tensor '%s': unknown dtype %d", arb_st_quote(name, q, sizeof q), (int)dtype);
    if (ndim < 0 || ndim > ARB_MAX_DIMS || (ndim && !shape))
        return arb_error(ARB_ERR_SHAPE, "tensor '%s': rank %d is outside 0..%d", arb_st_quote(name, q, sizeof q), ndim,
                         ARB_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || (uint64_t)shape[i] > ARB_ST_MAX_DIM)
            return arb_error(ARB_ERR_SHAPE, "tensor '%s': shape[%d] = %lld is outside [0, 2^48]",
                             arb_st_quote(name, q, sizeof q), i, (long long)shape[i]);
    size_t nbytes;
    ARB_TRY(arb_shape_nbytes(dtype, ndim, shape, &nbytes));
    if (nbytes && !data)
        return arb_error(ARB_ERR_INVALID_ARG, "tensor '%s': data is NULL", arb_st_quote(name, q, sizeof q));
    if ((w->n + 1) * 2 > w->nslots) ARB_TRY(grow_slots(w));
    size_t slot = slot_of(w, name);
    if (w->slots[slot])
        return arb_error(ARB_ERR_INVALID_ARG, "tensor '%s' was already added", arb_st_quote(name, q, sizeof q));
    if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 16;
        wr_tensor *t = realloc(w->t, c * sizeof *t);
        if (!t) return arb_error(ARB_ERR_OOM, "out of memory adding tensor '%s'", arb_st_quote(name, q, sizeof q));
        w->t = t;
        w->cap = c;
    }
    wr_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return arb_error(ARB_ERR_OOM, "out of memory adding tensor '%s'", arb_st_quote(name, q, sizeof q));
    if (copy) {
        void *p = arb_alloc(nbytes);
        if (!p) {
            free(t->name);
            return arb_error(ARB_ERR_OOM, "out of memory copying tensor '%s' (%zu bytes)",
                             arb_st_quote(name, q, sizeof q), nbytes);
        }
        if (nbytes) memcpy(p, data, nbytes);
        t->data = p;
        t->owned = true;
    } else {
        t->data = data;
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->slots[slot] = ++w->n;
    return ARB_OK;
}

arb_status arb_st_writer_add(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim, const int64_t *shape,
                             const void *data) {
    return writer_add(w, name, dtype, ndim, shape, data, true);
}

arb_status arb_st_writer_add_ref(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim,
                                 const int64_t *shape, const void *data) {
    return writer_add(w, name, dtype, ndim, shape, data, false);
}

arb_status arb_st_writer_set_metadata(arb_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return arb_error(ARB_ERR_INVALID_ARG, "arb_st_writer_set_metadata: NULL argument");
    char q[96];
    if (!arb_st_utf8_valid((const unsigned char *)key, strlen(key)) ||
        !arb_st_utf8_valid((const unsigned char *)value, strlen(value)))
        return arb_error(ARB_ERR_INVALID_ARG, "metadata '%s': key and value must be valid UTF-8",
                         arb_st_quote(key, q, sizeof q));
    char *v = strdup(value);
    if (!v) return arb_error(ARB_ERR_OOM, "out of memory for metadata '%s'", arb_st_quote(key, q, sizeof q));
    for (size_t i = 0; i < w->nm; i++) {
        if (strcmp(w->m[i].key, key) == 0) {
            free(w->m[i].value);
            w->m[i].value = v;
            return ARB_OK;
        }
    }
    if (w->nm == w->mcap) {
        size_t c = w->mcap ? w->mcap * 2 : 8;
        wr_meta *m = realloc(w->m, c * sizeof *m);
        if (!m) {
            free(v);
            return arb_error(ARB_ERR_OOM, "out of memory for metadata '%s'", arb_st_quote(key, q, sizeof q));
        }
        w->m = m;
        w->mcap = c;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return arb_error(ARB_ERR_OOM, "out of memory for metadata '%s'", arb_st_quote(key, q, sizeof q));
    }
    w->m[w->nm++] = (wr_meta){k, v};
    return ARB_OK;
}

static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const wr_meta *)a)->key, ((const wr_meta *)b)->key);
}

/* Insertion sort by descending item size: stable, and there are few distinct sizes. */
static void layout_order(const arb_st_writer *w, size_t *order) {
    size_t k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (size_t i = 0; i < w->n; i++)
            if (arb_dtype_size(w->t[i].dtype) == sz) order[k++] = i;
}

static arb_status fsync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return arb_error(ARB_ERR_OOM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    arb_status rc = ARB_OK;
    if (fd < 0) {
        rc = arb_error(ARB_ERR_IO, "cannot open directory '%s' to sync it: %s", dir, strerror(errno));
    } else {
        /* Some filesystems cannot fsync a directory (EINVAL); the rename is done either way. */
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            rc = arb_error(ARB_ERR_IO, "cannot sync directory '%s': %s", dir, strerror(errno));
        close(fd);
    }
    free(copy);
    return rc;
}

static arb_status writer_write(arb_st_writer *w) {
    size_t *order = malloc((w->n ? w->n : 1) * sizeof *order);
    uint64_t *offs = malloc((w->n ? w->n : 1) * sizeof *offs);
    sbuf h = {0};
    arb_status rc = ARB_OK;
    if (!order || !offs) {
        rc = arb_error(ARB_ERR_OOM, "out of memory writing '%s'", w->path);
        goto out;
    }
    layout_order(w, order);
    uint64_t at = 0;
    for (size_t k = 0; k < w->n; k++) {
        offs[order[k]] = at;
        at += w->t[order[k]].nbytes; /* each nbytes < 2^63 and memory-resident: no overflow */
    }

    if (w->nm) qsort(w->m, w->nm, sizeof *w->m, cmp_meta);
    sb_str(&h, "{");
    bool first = true;
    if (w->nm) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nm; i++) {
            if (i) sb_str(&h, ",");
            sb_json(&h, w->m[i].key);
            sb_str(&h, ":");
            sb_json(&h, w->m[i].value);
        }
        sb_str(&h, "}");
        first = false;
    }
    for (size_t i = 0; i < w->n; i++) {
        const wr_tensor *t = &w->t[i];
        if (!first) sb_str(&h, ",");
        first = false;
        sb_json(&h, t->name);
        sb_str(&h, ":{\"dtype\":");
        sb_json(&h, arb_dtype_name(t->dtype));
        sb_str(&h, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) sb_fmt(&h, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        sb_fmt(&h, "],\"data_offsets\":[%llu,", (unsigned long long)offs[i]);
        sb_fmt(&h, "%llu]}", (unsigned long long)(offs[i] + t->nbytes));
    }
    sb_str(&h, "}");
    while (!h.oom && h.n % 8) sb_put(&h, " ", 1); /* 8 + header stays 8-aligned: data is aligned */
    if (h.oom) {
        rc = arb_error(ARB_ERR_OOM, "out of memory building the header of '%s'", w->path);
        goto out;
    }
    if (h.n > ARB_ST_MAX_HEADER) {
        rc = arb_error(ARB_ERR_INVALID_ARG, "header of '%s' would be %zu bytes, over the format's limit of %llu",
                       w->path, h.n, (unsigned long long)ARB_ST_MAX_HEADER);
        goto out;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    rc = write_all(w->fd, len8, 8, w->tmp);
    if (rc == ARB_OK) rc = write_all(w->fd, h.p, h.n, w->tmp);
    for (size_t k = 0; k < w->n && rc == ARB_OK; k++) rc = write_all(w->fd, w->t[order[k]].data, w->t[order[k]].nbytes, w->tmp);
    if (rc == ARB_OK && fsync(w->fd) != 0) rc = arb_error(ARB_ERR_IO, "cannot sync '%s': %s", w->tmp, strerror(errno));
    if (rc == ARB_OK) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0) rc = arb_error(ARB_ERR_IO, "cannot close '%s': %s", w->tmp, strerror(errno));
    }
    if (rc == ARB_OK && rename(w->tmp, w->path) != 0)
        rc = arb_error(ARB_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path, strerror(errno));
    if (rc == ARB_OK) {
        free(w->tmp);
        w->tmp = NULL; /* renamed: nothing to remove any more */
        rc = fsync_dir(w->path);
    }
out:
    free(order);
    free(offs);
    free(h.p);
    return rc;
}

arb_status arb_st_writer_commit(arb_st_writer *w) {
    if (!w) return arb_error(ARB_ERR_INVALID_ARG, "arb_st_writer_commit: NULL writer");
    arb_status rc = writer_write(w);
    if (rc != ARB_OK) writer_discard(w);
    writer_free(w);
    return rc;
}

void arb_st_writer_abort(arb_st_writer *w) {
    if (!w) return;
    writer_discard(w);
    writer_free(w);
}
