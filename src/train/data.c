/* Training data: a byte corpus, its 90/10 train/validation split, and batches that are a pure
 * function of (seed, step). Why counter-based: a resumed run must draw exactly the batches the
 * uninterrupted run would have drawn, with no sampler state to save. */
#include "arbitor/train.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* RNG streams of the batch sampler; far from the per-tensor streams (step * 4096 + id). */
#define ARB_STREAM_BATCH 0x7B47C0FFEE000000ull

static arb_status corpus_finish(arb_corpus *c, const char *source) {
    snprintf(c->source, sizeof c->source, "%s", source);
    c->train_n = (size_t)((double)c->n * 0.9);
    c->val_n = c->n - c->train_n;
    /* FNV-1a 64: a resumed run checks it trains on the same bytes. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < c->n; i++) h = (h ^ c->bytes[i]) * 0x100000001b3ull;
    c->hash = h;
    return ARB_OK;
}

arb_status arb_corpus_from_memory(arb_corpus *c, const void *data, size_t n, const char *name) {
    if (!c || (!data && n)) return arb_error(ARB_ERR_INVALID_ARG, "corpus: NULL argument");
    memset(c, 0, sizeof *c);
    if (n == 0) return arb_error(ARB_ERR_INVALID_ARG, "corpus '%s' is empty", name ? name : "memory");
    c->bytes = arb_alloc(n);
    if (!c->bytes) return arb_error(ARB_ERR_OOM, "corpus: cannot allocate %zu bytes", n);
    memcpy(c->bytes, data, n);
    c->n = n;
    return corpus_finish(c, name ? name : "memory");
}

arb_status arb_corpus_load_file(arb_corpus *c, const char *path) {
    if (!c || !path) return arb_error(ARB_ERR_INVALID_ARG, "corpus: NULL argument");
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) return arb_error(ARB_ERR_IO, "cannot open data file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return arb_error(ARB_ERR_IO, "data file '%s' is not a regular file", path);
    }
    if (sb.st_size == 0) {
        fclose(f);
        return arb_error(ARB_ERR_INVALID_ARG, "data file '%s' is empty", path);
    }
    size_t n = (size_t)sb.st_size;
    c->bytes = arb_alloc(n);
    if (!c->bytes) {
        fclose(f);
        return arb_error(ARB_ERR_OOM, "data file '%s': cannot allocate %zu bytes", path, n);
    }
    size_t got = fread(c->bytes, 1, n, f);
    fclose(f);
    if (got != n) {
        arb_corpus_free(c);
        return arb_error(ARB_ERR_IO, "data file '%s': read %zu of %zu bytes", path, got, n);
    }
    c->n = n;
    return corpus_finish(c, path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Sets we leave out: index files, the offensive collection, and pictures made of characters. */
static bool fortune_skip(const char *name) {
    return name[0] == '.' || ends_with(name, ".dat") || ends_with(name, ".u8") || ends_with(name, "-o") ||
           !strcmp(name, "off") || strstr(name, "offensive") || !strcmp(name, "ascii-art");
}

arb_status arb_corpus_load_fortunes(arb_corpus *c, const char *dir) {
    if (!c) return arb_error(ARB_ERR_INVALID_ARG, "corpus: NULL argument");
    memset(c, 0, sizeof *c);
    if (!dir) dir = ARB_FORTUNES_DIR;
    DIR *d = opendir(dir);
    if (!d)
        return arb_error(ARB_ERR_NOT_FOUND,
                         "default corpus not found: cannot open %s (%s); install the Debian packages 'fortunes' "
                         "and 'fortunes-min' (scripts/setup.sh) or pass --data FILE",
                         dir, strerror(errno));
    char **names = NULL;
    size_t nn = 0, cap = 0;
    arb_status s = ARB_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (fortune_skip(e->d_name)) continue;
        if (nn == cap) {
            cap = cap ? 2 * cap : 64;
            char **nw = realloc(names, cap * sizeof *names);
            if (!nw) { s = arb_error(ARB_ERR_OOM, "corpus: out of memory"); break; }
            names = nw;
        }
        names[nn] = strdup(e->d_name);
        if (!names[nn]) { s = arb_error(ARB_ERR_OOM, "corpus: out of memory"); break; }
        nn++;
    }
    closedir(d);
    if (s == ARB_OK && nn) qsort(names, nn, sizeof *names, cmp_str); /* fixed order: same corpus everywhere */
    char path[4096];
    size_t total = 0, files = 0;
    for (size_t pass = 0; pass < 2 && s == ARB_OK; pass++) {
        if (pass == 1) {
            if (total == 0) {
                s = arb_error(ARB_ERR_NOT_FOUND,
                              "default corpus not found: no fortune text files in %s; install the Debian "
                              "packages 'fortunes' and 'fortunes-min' (scripts/setup.sh) or pass --data FILE",
                              dir);
                break;
            }
            c->bytes = arb_alloc(total);
            if (!c->bytes) { s = arb_error(ARB_ERR_OOM, "corpus: cannot allocate %zu bytes", total); break; }
        }
        size_t off = 0;
        for (size_t i = 0; i < nn && s == ARB_OK; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            struct stat sb;
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) continue;
            if (pass == 0) {
                total += (size_t)sb.st_size;
                files++;
                continue;
            }
            FILE *f = fopen(path, "rb");
            if (!f) { s = arb_error(ARB_ERR_IO, "cannot open %s: %s", path, strerror(errno)); break; }
            size_t want = (size_t)sb.st_size;
            if (want > total - off) want = total - off; /* a file grew between passes */
            size_t got = fread(c->bytes + off, 1, want, f);
            fclose(f);
            off += got;
        }
        if (pass == 1) c->n = off;
    }
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (s != ARB_OK) {
        arb_corpus_free(c);
        return s;
    }
    char src[300];
    snprintf(src, sizeof src, "fortunes (%zu files in %s)", files, dir);
    return corpus_finish(c, src);
}

void arb_corpus_free(arb_corpus *c) {
    if (!c) return;
    arb_free(c->bytes);
    memset(c, 0, sizeof *c);
}

arb_status arb_corpus_check(const arb_corpus *c, int64_t ctx) {
    if (!c || !c->bytes) return arb_error(ARB_ERR_INVALID_ARG, "corpus: not loaded");
    if (ctx < 1) return arb_error(ARB_ERR_INVALID_ARG, "corpus: context %lld < 1", (long long)ctx);
    size_t need = (size_t)ctx + 2;
    if (c->train_n < need || c->val_n < need)
        return arb_error(ARB_ERR_INVALID_ARG,
                         "data '%s' is too small: %zu bytes give %zu train / %zu validation bytes, each needs "
                         "at least %zu (context %lld + 2)",
                         c->source, c->n, c->train_n, c->val_n, need, (long long)ctx);
    return ARB_OK;
}

arb_status arb_corpus_train_batch(const arb_corpus *c, uint64_t seed, uint64_t step, int64_t batch, int64_t ctx,
                                  int32_t *tokens) {
    ARB_TRY(arb_corpus_check(c, ctx));
    if (batch < 1 || !tokens) return arb_error(ARB_ERR_INVALID_ARG, "train batch: bad batch %lld", (long long)batch);
    uint64_t range = (uint64_t)(c->train_n - (size_t)ctx - 1) + 1; /* start in [0, train_n - ctx - 1] */
    arb_rng_key key = arb_rng_key_make(seed, ARB_STREAM_BATCH + step);
    for (int64_t b = 0; b < batch; b++) {
        uint64_t r = ((uint64_t)arb_rand_u32(key, (uint32_t)(2 * b)) << 32) | arb_rand_u32(key, (uint32_t)(2 * b + 1));
        size_t start = (size_t)(r % range);
        const uint8_t *src = c->bytes + start;
        int32_t *dst = tokens + b * (ctx + 1);
        for (int64_t t = 0; t <= ctx; t++) dst[t] = src[t];
    }
    return ARB_OK;
}

int64_t arb_corpus_val_windows(const arb_corpus *c, int64_t ctx, int64_t want) {
    if (!c || ctx < 1 || c->val_n < (size_t)ctx + 2) return 0;
    /* Non-overlapping windows that fit, at most `want` (they are spread over the whole split). */
    int64_t fit = (int64_t)((c->val_n - 1) / (size_t)ctx);
    return want < fit ? want : fit;
}

arb_status arb_corpus_val_batch(const arb_corpus *c, int64_t first, int64_t count, int64_t nwin, int64_t ctx,
                                int32_t *tokens) {
    ARB_TRY(arb_corpus_check(c, ctx));
    if (nwin < 1 || first < 0 || count < 1 || first + count > nwin || !tokens)
        return arb_error(ARB_ERR_INVALID_ARG, "val batch: windows [%lld, +%lld) outside [0, %lld)", (long long)first,
                         (long long)count, (long long)nwin);
    const uint8_t *val = c->bytes + c->train_n;
    uint64_t span = (uint64_t)(c->val_n - (size_t)ctx - 1); /* last valid start */
    for (int64_t j = 0; j < count; j++) {
        int64_t w = first + j;
        size_t start = nwin == 1 ? 0 : (size_t)(span * (uint64_t)w / (uint64_t)(nwin - 1));
        int32_t *dst = tokens + j * (ctx + 1);
        for (int64_t t = 0; t <= ctx; t++) dst[t] = val[start + (size_t)t];
    }
    return ARB_OK;
}
