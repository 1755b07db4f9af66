/* safetensors reader and writer: round trips of every dtype, interop with Python's `safetensors`
 * both ways, the shared fixtures against Python's own listing, a corpus of corrupt files (each
 * must be ARB_ERR_FORMAT with a precise message, never a crash), and the writer's atomicity. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

static char g_dir[256]; /* per-run scratch directory */

static void quiet_log(arb_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

static const char *scratch(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
    return buf;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Entries of g_dir whose name contains `needle`. */
static int count_entries(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static bool have_python(void) {
    static int cached = -1;
    if (cached < 0) cached = system("python3 -c 'import safetensors, torch, numpy' >/dev/null 2>&1") == 0;
    return cached == 1;
}

/* ---------------------------------------------------------------- the interop spec
 * The same table and value formulas live in the Python script below: each side builds the
 * expected tensors on its own, so a file from either side is checked against independent values. */

typedef struct spec_tensor {
    const char *name;
    arb_dtype dtype;
    int ndim;
    int64_t shape[3];
} spec_tensor;

static const spec_tensor g_spec[] = {
    {"w.f32", ARB_F32, 2, {3, 5}},   {"w.bf16", ARB_BF16, 3, {2, 3, 4}}, {"w.f16", ARB_F16, 1, {7}},
    {"w.i8", ARB_I8, 2, {5, 3}},     {"w.u8", ARB_U8, 1, {11}},          {"w.i32", ARB_I32, 2, {2, 2}},
    {"w.i64", ARB_I64, 1, {3}},      {"scalar", ARB_F32, 0, {0}},        {"empty", ARB_U8, 2, {0, 4}},
};
#define NSPEC (sizeof g_spec / sizeof g_spec[0])

static const char *const g_meta[][2] = {
    {"format", "pt"},
    {"config", "{\"a\": [1, 2], \"s\": \"x\\\"y\"}"},
    {"unicode", "h\xc3\xa9llo \xe2\x9c\x93"},
};

static size_t spec_numel(const spec_tensor *s) {
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->shape[i];
    return n;
}

static double spec_value(arb_dtype dt, size_t i) {
    int64_t k = (int64_t)i;
    switch (dt) {
    case ARB_F32: case ARB_BF16: case ARB_F16: return (double)(k % 17) * 0.5 - 4.0;
    case ARB_I8: return (double)((k * 37) % 256 - 128);
    case ARB_U8: return (double)((k * 37) % 256);
    case ARB_I32: return (double)(k * 100003 - 1000000);
    case ARB_I64: return (double)(k * 3000000000LL - 7);
    default: return 0;
    }
}

/* Element i of a tensor's raw little-endian bytes as a double (memcpy: data may be unaligned). */
static double raw_value(arb_dtype dt, const void *data, size_t i) {
    const uint8_t *p = data;
    switch (dt) {
    case ARB_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case ARB_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return arb_bf16_to_f32(h); }
    case ARB_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return arb_f16_to_f32(h); }
    case ARB_I8: return (int8_t)p[i];
    case ARB_U8: return p[i];
    case ARB_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case ARB_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    default: return NAN;
    }
}

static void *spec_bytes(const spec_tensor *s) {
    size_t n = spec_numel(s), isz = arb_dtype_size(s->dtype);
    uint8_t *p = malloc(n * isz + 1);
    for (size_t i = 0; i < n; i++) {
        double v = spec_value(s->dtype, i);
        switch (s->dtype) {
        case ARB_F32: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
        case ARB_BF16: { uint16_t h = arb_f32_to_bf16((float)v); memcpy(p + 2 * i, &h, 2); break; }
        case ARB_F16: { uint16_t h = arb_f32_to_f16((float)v); memcpy(p + 2 * i, &h, 2); break; }
        case ARB_I8: p[i] = (uint8_t)(int8_t)v; break;
        case ARB_U8: p[i] = (uint8_t)v; break;
        case ARB_I32: { int32_t x = (int32_t)v; memcpy(p + 4 * i, &x, 4); break; }
        case ARB_I64: { int64_t x = (int64_t)v; memcpy(p + 8 * i, &x, 8); break; }
        default: break;
        }
    }
    return p;
}

static void write_spec(const char *path, bool reverse_meta) {
    arb_st_writer *w;
    ARB_ASSERT_OK(arb_st_writer_open(&w, path));
    size_t nm = sizeof g_meta / sizeof g_meta[0];
    for (size_t k = 0; k < nm; k++) {
        size_t j = reverse_meta ? nm - 1 - k : k;
        ARB_ASSERT_OK(arb_st_writer_set_metadata(w, g_meta[j][0], g_meta[j][1]));
    }
    for (size_t k = 0; k < NSPEC; k++) {
        void *b = spec_bytes(&g_spec[k]);
        ARB_ASSERT_OK(arb_st_writer_add(w, g_spec[k].name, g_spec[k].dtype, g_spec[k].ndim, g_spec[k].shape, b));
        memset(b, 0xEE, spec_numel(&g_spec[k]) * arb_dtype_size(g_spec[k].dtype)); /* add copied it */
        free(b);
    }
    ARB_ASSERT_OK(arb_st_writer_commit(w));
}

/* Checks every spec tensor and metadata entry of an open file against the formulas. */
static void check_spec(const arb_safetensors *st) {
    assert_int_equal(arb_safetensors_count(st), NSPEC);
    for (size_t k = 0; k < NSPEC; k++) {
        const spec_tensor *s = &g_spec[k];
        const arb_st_tensor *t;
        ARB_ASSERT_OK(arb_safetensors_expect(st, s->name, s->dtype, s->ndim, s->shape, &t));
        assert_string_equal(t->dtype_name, arb_dtype_name(s->dtype));
        assert_int_equal(t->nbytes, spec_numel(s) * arb_dtype_size(s->dtype));
        for (size_t i = 0; i < spec_numel(s); i++) {
            double got = raw_value(s->dtype, t->data, i), want = spec_value(s->dtype, i);
            if (got != want) fail_msg("%s[%zu] = %.17g, expected %.17g", s->name, i, got, want);
        }
    }
    assert_int_equal(arb_safetensors_metadata_count(st), sizeof g_meta / sizeof g_meta[0]);
    for (size_t j = 0; j < sizeof g_meta / sizeof g_meta[0]; j++) {
        const char *v = arb_safetensors_metadata(st, g_meta[j][0]);
        assert_non_null(v);
        assert_string_equal(v, g_meta[j][1]);
    }
}

/* ---------------------------------------------------------------- round trip */

static void test_roundtrip_every_dtype(void **state) {
    (void)state;
    char p1[512], p2[512];
    write_spec(scratch("rt1.safetensors", p1, sizeof p1), false);
    write_spec(scratch("rt2.safetensors", p2, sizeof p2), true);

    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p1));
    check_spec(st);
    /* Header order is insertion order; every tensor is naturally aligned in the file. */
    for (size_t k = 0; k < NSPEC; k++) {
        const arb_st_tensor *t = arb_safetensors_at(st, k);
        assert_string_equal(t->name, g_spec[k].name);
        assert_int_equal(t->offset % arb_dtype_size(t->dtype), 0);
        assert_int_equal((uintptr_t)t->data % arb_dtype_size(t->dtype), 0);
    }
    assert_int_equal((8 + arb_safetensors_header_len(st)) % 8, 0);
    assert_null(arb_safetensors_find(st, "nope"));
    assert_null(arb_safetensors_metadata(st, "nope"));
    assert_null(arb_safetensors_at(st, NSPEC));
    /* Metadata keys come back in the writer's (sorted) order. */
    assert_string_equal(arb_safetensors_metadata_key(st, 0), "config");
    assert_string_equal(arb_safetensors_metadata_key(st, 2), "unicode");
    arb_safetensors_close(st);

    /* Same content, metadata set in another order: byte-identical files. */
    size_t n1, n2;
    uint8_t *b1 = read_all(p1, &n1), *b2 = read_all(p2, &n2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* The same checks through open_memory. */
    ARB_ASSERT_OK(arb_safetensors_open_memory(&st, b1, n1));
    check_spec(st);
    arb_safetensors_close(st);
    free(b1);
    free(b2);

    /* A writer with nothing in it gives the smallest valid file. */
    arb_st_writer *w;
    ARB_ASSERT_OK(arb_st_writer_open(&w, scratch("empty.safetensors", p1, sizeof p1)));
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    ARB_ASSERT_OK(arb_safetensors_open(&st, p1));
    assert_int_equal(arb_safetensors_count(st), 0);
    assert_int_equal(arb_safetensors_metadata_count(st), 0);
    arb_safetensors_close(st);

    /* add_ref: no copy, the caller's bytes are written at commit. */
    float ref[4] = {1, 2, 3, 4};
    int64_t shp[1] = {4};
    ARB_ASSERT_OK(arb_st_writer_open(&w, scratch("ref.safetensors", p1, sizeof p1)));
    ARB_ASSERT_OK(arb_st_writer_add_ref(w, "r", ARB_F32, 1, shp, ref));
    ref[3] = 5; /* visible: referenced, not copied */
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    ARB_ASSERT_OK(arb_safetensors_open(&st, p1));
    arb_tensor t;
    ARB_ASSERT_OK(arb_safetensors_load_f32(st, "r", &t));
    assert_true(((float *)t.data)[3] == 5.0f);
    arb_tensor_free(&t);
    arb_safetensors_close(st);
}

static void test_expect_and_load_f32(void **state) {
    (void)state;
    char p[512];
    write_spec(scratch("expect.safetensors", p, sizeof p), false);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));

    const arb_st_tensor *t = (const void *)1;
    int64_t any[3] = {2, -1, 4};
    ARB_ASSERT_OK(arb_safetensors_expect(st, "w.bf16", ARB_BF16, 3, any, &t));
    assert_string_equal(t->name, "w.bf16");

    int64_t wrong[3] = {2, 4, 3};
    assert_int_equal(arb_safetensors_expect(st, "w.bf16", ARB_BF16, 3, wrong, &t), ARB_ERR_SHAPE);
    assert_null(t);
    assert_non_null(strstr(arb_last_error(), "w.bf16"));
    assert_non_null(strstr(arb_last_error(), "[2,3,4]"));
    assert_non_null(strstr(arb_last_error(), "[2,4,3]"));
    assert_int_equal(arb_safetensors_expect(st, "w.bf16", ARB_BF16, 2, wrong, NULL), ARB_ERR_SHAPE);
    assert_int_equal(arb_safetensors_expect(st, "w.bf16", ARB_F32, 3, any, NULL), ARB_ERR_DTYPE);
    assert_non_null(strstr(arb_last_error(), "is BF16, expected F32"));
    assert_int_equal(arb_safetensors_expect(st, "missing", ARB_F32, 0, NULL, NULL), ARB_ERR_NOT_FOUND);
    assert_non_null(strstr(arb_last_error(), "'missing'"));

    /* F32, BF16, F16 convert; the values are exact in all three, so compare exactly. */
    const char *names[3] = {"w.f32", "w.bf16", "w.f16"};
    for (int k = 0; k < 3; k++) {
        arb_tensor x;
        ARB_ASSERT_OK(arb_safetensors_load_f32(st, names[k], &x));
        const arb_st_tensor *src = arb_safetensors_find(st, names[k]);
        assert_int_equal(x.dtype, ARB_F32);
        assert_int_equal(x.ndim, src->ndim);
        for (int d = 0; d < x.ndim; d++) assert_int_equal(x.shape[d], src->shape[d]);
        for (int64_t i = 0; i < arb_tensor_numel(&x); i++)
            assert_true(((float *)x.data)[i] == (float)spec_value(ARB_F32, (size_t)i));
        arb_tensor_free(&x);
    }
    arb_tensor x;
    ARB_ASSERT_OK(arb_safetensors_load_f32(st, "scalar", &x));
    assert_int_equal(x.ndim, 0);
    assert_true(((float *)x.data)[0] == -4.0f);
    arb_tensor_free(&x);
    assert_int_equal(arb_safetensors_load_f32(st, "w.i8", &x), ARB_ERR_DTYPE);
    assert_int_equal(arb_safetensors_load_f32(st, "missing", &x), ARB_ERR_NOT_FOUND);
    arb_safetensors_close(st);
}

/* ---------------------------------------------------------------- Python interop */

static const char g_py_spec[] =
    "import sys, torch\n"
    "from safetensors.torch import save_file, load_file\n"
    "from safetensors import safe_open\n"
    "SPEC = [('w.f32','F32',[3,5]),('w.bf16','BF16',[2,3,4]),('w.f16','F16',[7]),('w.i8','I8',[5,3]),\n"
    "        ('w.u8','U8',[11]),('w.i32','I32',[2,2]),('w.i64','I64',[3]),('scalar','F32',[]),('empty','U8',[0,4])]\n"
    "DT = {'F32':torch.float32,'BF16':torch.bfloat16,'F16':torch.float16,'I8':torch.int8,'U8':torch.uint8,\n"
    "      'I32':torch.int32,'I64':torch.int64}\n"
    "META = {'format':'pt','config':'{\"a\": [1, 2], \"s\": \"x\\\\\"y\"}','unicode':'h\\u00e9llo \\u2713'}\n"
    "def vals(n, dt):\n"
    "    i = torch.arange(n, dtype=torch.int64)\n"
    "    if dt in ('F32','BF16','F16'): return (i % 17).double() * 0.5 - 4.0\n"
    "    if dt == 'I8': return (i * 37) % 256 - 128\n"
    "    if dt == 'U8': return (i * 37) % 256\n"
    "    if dt == 'I32': return i * 100003 - 1000000\n"
    "    return i * 3000000000 - 7\n"
    "def expected():\n"
    "    out = {}\n"
    "    for name, dt, shape in SPEC:\n"
    "        n = 1\n"
    "        for s in shape: n *= s\n"
    "        out[name] = vals(n, dt).to(DT[dt]).reshape(shape)\n"
    "    return out\n"
    "mode, path = sys.argv[1], sys.argv[2]\n"
    "if mode == 'write':\n"
    "    save_file(expected(), path, metadata=META)\n"
    "    sys.exit(0)\n"
    "got = load_file(path)\n"
    "exp = expected()\n"
    "assert sorted(got) == sorted(exp), (sorted(got), sorted(exp))\n"
    "for k in exp:\n"
    "    assert got[k].dtype == exp[k].dtype, (k, got[k].dtype, exp[k].dtype)\n"
    "    assert list(got[k].shape) == list(exp[k].shape), (k, got[k].shape)\n"
    "    assert torch.equal(got[k], exp[k]), k\n"
    "with safe_open(path, 'pt') as f:\n"
    "    assert f.metadata() == META, f.metadata()\n"
    "print('python: ok', len(got), 'tensors')\n";

static void write_py(const char *path, const char *text) {
    write_file(path, text, strlen(text));
}

static void test_python_interop(void **state) {
    (void)state;
    if (!have_python()) {
        printf("SKIP: python3 with safetensors + torch is not available; interop not tested\n");
        skip();
    }
    char py[512], c_file[512], py_file[512], cmd[2048];
    write_py(scratch("interop.py", py, sizeof py), g_py_spec);

    /* C writes, Python reads and checks against its own expected tensors. */
    write_spec(scratch("from_c.safetensors", c_file, sizeof c_file), false);
    snprintf(cmd, sizeof cmd, "python3 '%s' check '%s'", py, c_file);
    assert_int_equal(system(cmd), 0);

    /* Python writes, C reads and checks against the C formulas. */
    scratch("from_py.safetensors", py_file, sizeof py_file);
    snprintf(cmd, sizeof cmd, "python3 '%s' write '%s'", py, py_file);
    assert_int_equal(system(cmd), 0);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, py_file));
    check_spec(st);
    arb_safetensors_close(st);
}

/* ---------------------------------------------------------------- shared fixtures */

/* Python lists each fixture (name, dtype, shape, float64 sum of the values) into its own file
 * (arguments: path listing path listing ...; one interpreter for all); the C reader must agree on
 * every line. */
static const char g_py_list[] =
    "import sys, numpy as np\n"
    "from safetensors import safe_open\n"
    "for path, out in zip(sys.argv[1::2], sys.argv[2::2]):\n"
    "    with safe_open(path, 'np') as f, open(out, 'w') as o:\n"
    "        keys = sorted(f.keys())\n"
    "        print(len(keys), file=o)\n"
    "        for k in keys:\n"
    "            a = f.get_tensor(k)\n"
    "            dt = f.get_slice(k).get_dtype()\n"
    "            print(k, dt, ','.join(str(s) for s in a.shape) or '-', repr(float(a.astype(np.float64).sum())), file=o)\n";

static double tensor_sum(const arb_st_tensor *t) {
    double s = 0;
    size_t n = t->nbytes / arb_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++) s += raw_value(t->dtype, t->data, i);
    return s;
}

static void check_fixture(const char *path, const char *listing) {
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, path));
    size_t n = arb_safetensors_count(st), total = 0;
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) total += arb_safetensors_at(st, i)->nbytes;
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(8 + arb_safetensors_header_len(st) + total, (size_t)sb.st_size);
    if (listing) {
        FILE *f = fopen(listing, "r");
        assert_non_null(f);
        size_t pn = 0;
        assert_int_equal(fscanf(f, "%zu", &pn), 1);
        assert_int_equal(pn, n);
        char name[512], dt[32], shp[256];
        double sum;
        size_t lines = 0;
        while (fscanf(f, "%511s %31s %255s %lf", name, dt, shp, &sum) == 4) {
            lines++;
            const arb_st_tensor *t = arb_safetensors_find(st, name);
            if (!t) fail_msg("%s: python lists '%s', the C reader does not", path, name);
            assert_string_equal(t->dtype_name, dt);
            char mine[256] = "-";
            size_t o = 0;
            for (int d = 0; d < t->ndim; d++)
                o += (size_t)snprintf(mine + o, sizeof mine - o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            if (strcmp(mine, shp)) fail_msg("%s: '%s' shape %s here, %s in python", path, name, mine, shp);
            double s = tensor_sum(t);
            if (fabs(s - sum) > 1e-9 * (1.0 + fabs(sum)))
                fail_msg("%s: '%s' sums to %.17g here, %.17g in python", path, name, s, sum);
        }
        fclose(f);
        assert_int_equal(lines, n);
    }
    arb_safetensors_close(st);
}

static void test_shared_fixtures(void **state) {
    (void)state;
    char dir[512];
    if (!arb_test_shared("fixtures", dir, sizeof dir) || !file_exists(dir)) {
        printf("SKIP: %s/fixtures is absent; the fixture cases were not run\n", ARB_SHARED_DIR);
        skip();
    }
    char py[512];
    const char *pyp = NULL;
    if (have_python()) {
        write_py(scratch("list.py", py, sizeof py), g_py_list);
        pyp = py;
    } else {
        printf("note: python3 + safetensors missing: fixtures checked for consistency only\n");
    }
    DIR *d = opendir(dir);
    assert_non_null(d);
    enum { MAXF = 64 };
    static char paths[MAXF][1024], lists[MAXF][640];
    int checked = 0;
    for (struct dirent *e; (e = readdir(d)) && checked < MAXF - 1;) {
        if (e->d_name[0] == '.') continue;
        const char *files[2] = {"model.safetensors", "reference.safetensors"};
        for (int k = 0; k < 2; k++) {
            snprintf(paths[checked], sizeof paths[0], "%s/%.256s/%s", dir, e->d_name, files[k]);
            if (!file_exists(paths[checked])) continue;
            snprintf(lists[checked], sizeof lists[0], "%s/listing%d.txt", g_dir, checked);
            checked++;
        }
    }
    closedir(d);
    if (pyp) {
        size_t cap = 64 + (size_t)checked * 1700, o;
        char *cmd = malloc(cap);
        o = (size_t)snprintf(cmd, cap, "python3 '%s'", pyp);
        for (int i = 0; i < checked; i++) o += (size_t)snprintf(cmd + o, cap - o, " '%s' '%s'", paths[i], lists[i]);
        assert_int_equal(system(cmd), 0);
        free(cmd);
    }
    for (int i = 0; i < checked; i++) check_fixture(paths[i], pyp ? lists[i] : NULL);
    assert_true(checked >= 6);
    printf("fixtures: %d files agree with %s\n", checked, pyp ? "python safetensors" : "themselves");
}

/* ---------------------------------------------------------------- corrupt files */

/* len8(header) + header + data_len bytes of a pattern. */
static uint8_t *mk(const char *hdr, size_t data_len, size_t *len) {
    size_t h = strlen(hdr);
    *len = 8 + h + data_len;
    uint8_t *p = malloc(*len);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, hdr, h);
    for (size_t i = 0; i < data_len; i++) p[8 + h + i] = (uint8_t)(i * 31 + 7);
    return p;
}

/* Opens buf from memory and from a file; both must give `want` (and a message holding `msg`). */
static void expect_open(const uint8_t *buf, size_t len, arb_status want, const char *msg, const char *what) {
    for (int via_file = 0; via_file < 2; via_file++) {
        arb_safetensors *st = (arb_safetensors *)1;
        arb_status s;
        arb_clear_error();
        if (via_file) {
            char p[512];
            write_file(scratch("case.safetensors", p, sizeof p), buf, len);
            s = arb_safetensors_open(&st, p);
        } else {
            s = arb_safetensors_open_memory(&st, buf, len);
        }
        if (s != want)
            fail_msg("%s (%s): got %s (%s), expected %s", what, via_file ? "file" : "memory", arb_status_str(s),
                     arb_last_error(), arb_status_str(want));
        if (want == ARB_OK) {
            arb_safetensors_close(st);
            continue;
        }
        assert_null(st);
        if (!arb_last_error()[0]) fail_msg("%s: empty error message", what);
        if (strchr(arb_last_error(), '\n')) fail_msg("%s: message is not one line", what);
        if (msg && !strstr(arb_last_error(), msg))
            fail_msg("%s: message '%s' lacks '%s'", what, arb_last_error(), msg);
    }
}

typedef struct bad_case {
    const char *what, *hdr;
    size_t data_len;
    const char *msg;
} bad_case;

#define T3 "\"dtype\":\"F32\",\"shape\":[3]"
static const bad_case g_bad[] = {
    {"bad JSON", "{\"x\":{" T3 ",\"data_offsets\":[0,12]}", 12, "not valid JSON"},
    {"garbage after JSON", "{}xx", 0, "after the JSON object"},
    {"not an object", "[1,2]", 0, "does not start with '{'"},
    {"leading space", " {}", 0, "does not start with '{'"},
    {"invalid UTF-8", "{\"\xc3\x28\":{" T3 ",\"data_offsets\":[0,12]}}", 12, "not valid UTF-8"},
    {"overlong UTF-8", "{\"\xc0\xaf\":{" T3 ",\"data_offsets\":[0,12]}}", 12, "not valid UTF-8"},
    {"unknown dtype", "{\"x\":{\"dtype\":\"F33\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "unknown dtype 'F33'"},
    {"dtype not string", "{\"x\":{\"dtype\":4,\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "dtype is a number"},
    {"missing dtype", "{\"x\":{\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "lacks \"dtype\""},
    {"missing shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,12]}}", 12, "lacks \"shape\""},
    {"missing offsets", "{\"x\":{" T3 "}}", 12, "lacks \"data_offsets\""},
    {"entry not object", "{\"x\":5}", 0, "'x' is a number, expected an object"},
    {"shape not array", "{\"x\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,12]}}", 12, "shape is an object"},
    {"negative shape", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,-2],\"data_offsets\":[0,8]}}", 8, "shape[1] = -2"},
    {"fractional shape", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "shape[0] = 1.5"},
    {"huge shape", "{\"x\":{\"dtype\":\"U8\",\"shape\":[562949953421312],\"data_offsets\":[0,8]}}", 8, "[0, 2^48]"},
    {"shape string", "{\"x\":{\"dtype\":\"F32\",\"shape\":[\"3\"],\"data_offsets\":[0,12]}}", 12, "shape[0] is a string"},
    {"too many dims", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     "has 9 dimensions"},
    {"shape product overflow",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[281474976710656,281474976710656,281474976710656],"
     "\"data_offsets\":[0,12]}}", 12, "overflows"},
    {"itemsize overflow", "{\"x\":{\"dtype\":\"I64\",\"shape\":[281474976710656,281474976710656],"
     "\"data_offsets\":[0,8]}}", 8, "overflows"},
    {"span mismatch", "{\"x\":{" T3 ",\"data_offsets\":[0,10]}}", 10, "data_offsets [0,10] span 10 bytes but F32[3] needs 12"},
    {"offsets past data", "{\"x\":{" T3 ",\"data_offsets\":[4,16]}}", 12, "run past the 12-byte data region"},
    {"begin after end", "{\"x\":{" T3 ",\"data_offsets\":[12,0]}}", 12, "end before they begin"},
    {"offsets arity", "{\"x\":{" T3 ",\"data_offsets\":[0,12,12]}}", 12, "[begin, end]"},
    {"negative offset", "{\"x\":{" T3 ",\"data_offsets\":[-4,8]}}", 12, "non-negative integers"},
    {"offsets not numbers", "{\"x\":{" T3 ",\"data_offsets\":[\"0\",\"12\"]}}", 12, "non-negative integers"},
    {"overlap", "{\"a\":{" T3 ",\"data_offsets\":[0,12]},\"b\":{" T3 ",\"data_offsets\":[8,20]}}", 20, "overlap"},
    {"same span twice", "{\"a\":{" T3 ",\"data_offsets\":[0,12]},\"b\":{" T3 ",\"data_offsets\":[0,12]}}", 12, "overlap"},
    {"hole", "{\"a\":{" T3 ",\"data_offsets\":[0,12]},\"b\":{" T3 ",\"data_offsets\":[16,28]}}", 28, "belong to no tensor"},
    {"trailing bytes", "{\"a\":{" T3 ",\"data_offsets\":[0,12]}}", 16, "trailing bytes"},
    {"duplicate names", "{\"a\":{" T3 ",\"data_offsets\":[0,12]},\"a\":{" T3 ",\"data_offsets\":[12,24]}}", 24,
     "duplicate tensor name 'a'"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate __metadata__ key 'k'"},
    {"metadata number", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ 'k' is a number"},
    {"metadata object", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, "__metadata__ 'k' is an object"},
    {"metadata not object", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is an array"},
    {"sub-byte leftover", "{\"x\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole bytes"},
    {"NaN-like number", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,12]}}", 12, "shape[0]"},
};

static const char *g_good[] = {
    "{}",
    "{}      ",
    "{\"__metadata__\":{}}",
    "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
    "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[0,0]},\"s\":{\"dtype\":\"U8\",\"shape\":[4],"
    "\"data_offsets\":[0,4]}}",
    "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},\"a\":{\"dtype\":\"U8\",\"shape\":[2],"
    "\"data_offsets\":[0,2]},\"extra\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[4,4],\"note\":1}}",
};

static void test_corrupt_files(void **state) {
    (void)state;
    arb_log_set(quiet_log, NULL);
    for (size_t i = 0; i < sizeof g_bad / sizeof g_bad[0]; i++) {
        size_t len;
        uint8_t *b = mk(g_bad[i].hdr, g_bad[i].data_len, &len);
        expect_open(b, len, ARB_ERR_FORMAT, g_bad[i].msg, g_bad[i].what);
        free(b);
    }
    for (size_t i = 0; i < sizeof g_good / sizeof g_good[0]; i++) {
        size_t len;
        uint8_t *b = mk(g_good[i], 4, &len);
        if (strstr(g_good[i], "data_offsets") == NULL) len -= 4; /* no tensors: no data */
        expect_open(b, len, ARB_OK, NULL, g_good[i]);
        free(b);
    }

    { /* an empty tensor whose other dimensions' product overflows (found by fuzz_safetensors):
       * it opens, and converts to an empty F32 tensor */
        size_t n;
        uint8_t *b =
            mk("{\"x\":{\"dtype\":\"F16\",\"shape\":[800000000000,281474976710656,0],\"data_offsets\":[0,0]}}", 0, &n);
        arb_safetensors *st;
        ARB_ASSERT_OK(arb_safetensors_open_memory(&st, b, n));
        arb_tensor f;
        ARB_ASSERT_OK(arb_safetensors_load_f32(st, "x", &f));
        assert_int_equal(arb_tensor_numel(&f), 0);
        assert_int_equal(f.nbytes, 0);
        arb_tensor_free(&f);
        arb_safetensors_close(st);
        free(b);
    }

    /* Header length field: too big for the file, over the limit, zero, and a short file. */
    size_t len;
    uint8_t *b = mk("{}", 0, &len);
    b[0] = 3;
    expect_open(b, len, ARB_ERR_FORMAT, "runs past the end", "header length past EOF");
    memset(b, 0xFF, 8);
    expect_open(b, len, ARB_ERR_FORMAT, "exceeds the format's limit", "header length 2^64-1");
    uint64_t big = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(big >> (8 * i));
    expect_open(b, len, ARB_ERR_FORMAT, "exceeds the format's limit", "header length 100 MB + 1");
    memset(b, 0, 8);
    expect_open(b, 8, ARB_ERR_FORMAT, "too short for a JSON object", "header length 0");
    expect_open(b, 5, ARB_ERR_FORMAT, "too short for the 8-byte", "5-byte file");
    expect_open(b, 0, ARB_ERR_FORMAT, "too short for the 8-byte", "empty file");
    free(b);
    /* A NUL inside the header. */
    b = mk("{\"a\":{" T3 ",\"data_offsets\":[0,12]}}", 12, &len);
    b[8 + 3] = 0;
    expect_open(b, len, ARB_ERR_FORMAT, "NUL byte", "NUL in header");
    free(b);

    /* Every truncation of a valid file fails cleanly. */
    char p[512];
    write_spec(scratch("trunc.safetensors", p, sizeof p), false);
    uint8_t *full = read_all(p, &len);
    assert_non_null(full);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *c = malloc(cut ? cut : 1);
        memcpy(c, full, cut);
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", cut, len);
        arb_safetensors *st;
        arb_status s = arb_safetensors_open_memory(&st, c, cut);
        if (s != ARB_ERR_FORMAT || !arb_last_error()[0]) fail_msg("%s: got %s", what, arb_status_str(s));
        if (cut % 97 == 0) expect_open(c, cut, ARB_ERR_FORMAT, NULL, what); /* some through mmap too */
        free(c);
    }

    /* Random byte mutations: each file either opens (and every byte it points to is readable) or
     * fails with ARB_ERR_FORMAT. The sanitizer build makes a stray read fatal. */
    arb_rng_key key = arb_rng_key_make(20261126, 1);
    uint8_t *m = malloc(len);
    int opened = 0;
    for (uint32_t it = 0; it < 4000; it++) {
        memcpy(m, full, len);
        uint32_t flips = 1 + arb_rand_u32(key, it * 16) % 4;
        for (uint32_t f = 0; f < flips; f++) {
            uint32_t r = arb_rand_u32(key, it * 16 + 1 + f);
            size_t at = r % len;
            if (r & 0x80000000u) at = 8 + r % (len - 8 < 400 ? len - 8 : 400); /* mostly the header */
            m[at] = (uint8_t)arb_rand_u32(key, it * 16 + 8 + f);
        }
        arb_safetensors *st;
        arb_status s = arb_safetensors_open_memory(&st, m, len);
        if (s == ARB_OK) {
            opened++;
            unsigned acc = 0;
            for (size_t i = 0; i < arb_safetensors_count(st); i++) {
                const arb_st_tensor *t = arb_safetensors_at(st, i);
                assert_ptr_equal(arb_safetensors_find(st, t->name), t);
                for (size_t k = 0; k < t->nbytes; k++) acc += ((const uint8_t *)t->data)[k];
            }
            for (size_t i = 0; i < arb_safetensors_metadata_count(st); i++)
                assert_non_null(arb_safetensors_metadata(st, arb_safetensors_metadata_key(st, i)));
            (void)acc;
            arb_safetensors_close(st);
        } else if (s != ARB_ERR_FORMAT) {
            fail_msg("mutation %u: got %s (%s)", it, arb_status_str(s), arb_last_error());
        }
    }
    printf("mutations: %d of 4000 still valid (data-byte changes), the rest refused\n", opened);
    free(m);
    free(full);
    arb_log_set(NULL, NULL);
}

static void test_foreign_dtypes(void **state) {
    (void)state;
    size_t len;
    uint8_t *b = mk("{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                    "\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[16,19]},"
                    "\"q\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[19,20]}}",
                    20, &len);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open_memory(&st, b, len));
    const arb_st_tensor *d = arb_safetensors_find(st, "d"), *m = arb_safetensors_find(st, "m");
    const arb_st_tensor *q = arb_safetensors_find(st, "q");
    assert_int_equal(d->dtype, ARB_ST_DTYPE_FOREIGN);
    assert_string_equal(d->dtype_name, "F64");
    assert_int_equal(d->nbytes, 16);
    assert_string_equal(m->dtype_name, "BOOL");
    assert_int_equal(m->nbytes, 3);
    assert_int_equal(q->nbytes, 1);
    int64_t two[1] = {2};
    arb_log_set(quiet_log, NULL);
    assert_int_equal(arb_safetensors_expect(st, "d", ARB_I64, 1, two, NULL), ARB_ERR_DTYPE);
    assert_non_null(strstr(arb_last_error(), "is F64"));
    arb_tensor t;
    assert_int_equal(arb_safetensors_load_f32(st, "d", &t), ARB_ERR_DTYPE);
    arb_log_set(NULL, NULL);
    arb_safetensors_close(st);
    free(b);
}

static void test_missing_and_odd_paths(void **state) {
    (void)state;
    arb_log_set(quiet_log, NULL);
    arb_safetensors *st = (arb_safetensors *)1;
    char p[512];
    assert_int_equal(arb_safetensors_open(&st, scratch("does-not-exist.safetensors", p, sizeof p)), ARB_ERR_IO);
    assert_null(st);
    assert_non_null(strstr(arb_last_error(), "does-not-exist.safetensors"));
    assert_non_null(strstr(arb_last_error(), strerror(ENOENT)));
    assert_int_equal(arb_safetensors_open(&st, g_dir), ARB_ERR_IO);
    assert_non_null(strstr(arb_last_error(), "not a regular file"));
    write_file(scratch("zero.safetensors", p, sizeof p), "", 0);
    assert_int_equal(arb_safetensors_open(&st, p), ARB_ERR_FORMAT);
    arb_log_set(NULL, NULL);
}

/* ---------------------------------------------------------------- atomic writer */

static void add_f32(arb_st_writer *w, const char *name, size_t n, float v) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = v;
    int64_t shape[1] = {(int64_t)n};
    ARB_ASSERT_OK(arb_st_writer_add(w, name, ARB_F32, 1, shape, x));
    free(x);
}

static void test_writer_atomic(void **state) {
    (void)state;
    arb_log_set(quiet_log, NULL);
    char p[512], tmp[600];
    arb_st_writer *w = (arb_st_writer *)1;

    /* Missing directory: refused at open, nothing created. */
    assert_int_equal(arb_st_writer_open(&w, scratch("no/such/dir/x.safetensors", p, sizeof p)), ARB_ERR_IO);
    assert_null(w);
    assert_non_null(strstr(arb_last_error(), "no/such/dir/x.safetensors"));

    /* Abort removes the temp file, and the target never appears. */
    ARB_ASSERT_OK(arb_st_writer_open(&w, scratch("aborted.safetensors", p, sizeof p)));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    assert_true(file_exists(tmp));
    add_f32(w, "a", 10, 1.0f);
    arb_st_writer_abort(w);
    assert_false(file_exists(tmp));
    assert_false(file_exists(p));

    /* Two writers for one path in one process get distinct temps. */
    arb_st_writer *w2;
    ARB_ASSERT_OK(arb_st_writer_open(&w, p));
    ARB_ASSERT_OK(arb_st_writer_open(&w2, p));
    add_f32(w2, "two", 3, 2.0f);
    add_f32(w, "one", 3, 1.0f);
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    ARB_ASSERT_OK(arb_st_writer_commit(w2));
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p)); /* the last commit wins, whole */
    assert_non_null(arb_safetensors_find(st, "two"));
    assert_int_equal(arb_safetensors_count(st), 1);
    arb_safetensors_close(st);

    /* Bad adds are refused without spoiling the writer. */
    ARB_ASSERT_OK(arb_st_writer_open(&w, scratch("adds.safetensors", p, sizeof p)));
    add_f32(w, "x", 2, 1.0f);
    int64_t s2[1] = {2}, neg[1] = {-1};
    float two[2] = {0, 0};
    assert_int_equal(arb_st_writer_add(w, "x", ARB_F32, 1, s2, two), ARB_ERR_INVALID_ARG);
    assert_non_null(strstr(arb_last_error(), "'x' was already added"));
    assert_int_equal(arb_st_writer_add(w, "__metadata__", ARB_F32, 1, s2, two), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_st_writer_add(w, "bad\xff", ARB_F32, 1, s2, two), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_st_writer_add(w, "neg", ARB_F32, 1, neg, two), ARB_ERR_SHAPE);
    assert_int_equal(arb_st_writer_add(w, "null", ARB_F32, 1, s2, NULL), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_st_writer_add(w, "dt", ARB_DTYPE_COUNT, 1, s2, two), ARB_ERR_DTYPE);
    ARB_ASSERT_OK(arb_st_writer_set_metadata(w, "k", "old"));
    ARB_ASSERT_OK(arb_st_writer_set_metadata(w, "k", "new"));
    for (int i = 0; i < 200; i++) { /* grow the name table */
        char nm[32];
        snprintf(nm, sizeof nm, "t%03d", i);
        add_f32(w, nm, 1, (float)i);
    }
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));
    assert_int_equal(arb_safetensors_count(st), 201);
    assert_string_equal(arb_safetensors_metadata(st, "k"), "new");
    assert_int_equal(arb_safetensors_metadata_count(st), 1);
    arb_safetensors_close(st);

    /* Commit fails at the rename (the target is a non-empty directory): error, no temp left. */
    char sub[512], inner[600];
    scratch("isdir.safetensors", sub, sizeof sub);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(inner, sizeof inner, "%s/keep", sub);
    write_file(inner, "x", 1);
    ARB_ASSERT_OK(arb_st_writer_open(&w, sub));
    add_f32(w, "a", 8, 1.0f);
    assert_int_equal(arb_st_writer_commit(w), ARB_ERR_IO);
    assert_non_null(strstr(arb_last_error(), "rename"));
    assert_int_equal(count_entries(g_dir, "isdir.safetensors.tmp"), 0);
    assert_true(file_exists(inner));

    /* Commit fails mid-write (file size limit): the old checkpoint survives intact, no temp. */
    scratch("survive.safetensors", p, sizeof p);
    ARB_ASSERT_OK(arb_st_writer_open(&w, p));
    add_f32(w, "old", 16, 3.0f);
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    size_t n_old;
    uint8_t *old = read_all(p, &n_old);
    ARB_ASSERT_OK(arb_st_writer_open(&w, p));
    add_f32(w, "new", 1 << 16, 4.0f);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    arb_status s = arb_st_writer_commit(w);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(s, ARB_ERR_IO);
    assert_non_null(strstr(arb_last_error(), "cannot write"));
    assert_int_equal(count_entries(g_dir, "survive.safetensors.tmp"), 0);
    size_t n_now;
    uint8_t *now = read_all(p, &n_now);
    assert_int_equal(n_now, n_old);
    assert_memory_equal(now, old, n_old);
    free(old);
    free(now);
    arb_log_set(NULL, NULL);
}


/* ---------------------------------------------------------------- `arbitor inspect` */

/* Runs a shell command; returns its exit status and stdout/stderr in the given files. */
static int run_cli(const char *args, const char *out, const char *err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' inspect %s > '%s' 2> '%s'", ARB_CLI_PATH, args, out, err);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli_inspect(void **state) {
    (void)state;
    if (access(ARB_CLI_PATH, X_OK) != 0) {
        printf("SKIP: %s is not built; inspect not tested\n", ARB_CLI_PATH);
        skip();
    }
    char f[512], out[512], err[512], args[2048];
    write_spec(scratch("cli.safetensors", f, sizeof f), false);
    scratch("cli.out", out, sizeof out);
    scratch("cli.err", err, sizeof err);
    size_t n;

    /* Table: every tensor and metadata key is listed, and a totals line. */
    snprintf(args, sizeof args, "'%s'", f);
    assert_int_equal(run_cli(args, out, err), 0);
    char *text = (char *)read_all(out, &n);
    text = realloc(text, n + 1);
    text[n] = 0;
    for (size_t k = 0; k < NSPEC; k++) assert_non_null(strstr(text, g_spec[k].name));
    assert_non_null(strstr(text, "[2,3,4]"));
    assert_non_null(strstr(text, "config = "));
    assert_non_null(strstr(text, "total: 9 tensors"));
    free(text);

    /* --json agrees with the reader on every field. */
    snprintf(args, sizeof args, "'%s' --json", f);
    assert_int_equal(run_cli(args, out, err), 0);
    text = (char *)read_all(out, &n);
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    assert_non_null(root);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, f));
    const cJSON *tens = cJSON_GetObjectItem(root, "tensors");
    assert_int_equal(cJSON_GetArraySize(tens), arb_safetensors_count(st));
    size_t i = 0, total = 0;
    for (const cJSON *e = tens->child; e; e = e->next, i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        assert_string_equal(cJSON_GetObjectItem(e, "name")->valuestring, t->name);
        assert_string_equal(cJSON_GetObjectItem(e, "dtype")->valuestring, t->dtype_name);
        assert_int_equal((size_t)cJSON_GetObjectItem(e, "bytes")->valuedouble, t->nbytes);
        assert_int_equal((uint64_t)cJSON_GetObjectItem(e, "offset")->valuedouble, t->offset);
        const cJSON *shp = cJSON_GetObjectItem(e, "shape");
        assert_int_equal(cJSON_GetArraySize(shp), t->ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal((int64_t)cJSON_GetArrayItem(shp, d)->valuedouble, t->shape[d]);
        total += t->nbytes;
    }
    assert_int_equal((size_t)cJSON_GetObjectItem(cJSON_GetObjectItem(root, "total"), "bytes")->valuedouble, total);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "config")->valuestring,
                        arb_safetensors_metadata(st, "config"));
    cJSON_Delete(root);
    arb_safetensors_close(st);

    /* --metadata KEY prints the value unmodified. */
    snprintf(args, sizeof args, "'%s' --metadata unicode", f);
    assert_int_equal(run_cli(args, out, err), 0);
    text = (char *)read_all(out, &n);
    assert_int_equal(n, strlen(g_meta[2][1]) + 1);
    assert_memory_equal(text, g_meta[2][1], n - 1);
    free(text);

    /* Errors: non-zero exit, nothing on stdout, one "arbitor: error:" line naming the cause. */
    size_t len;
    uint8_t *bad = mk("{\"x\":{" T3 ",\"data_offsets\":[0,10]}}", 10, &len);
    char badf[512];
    write_file(scratch("cli-bad.safetensors", badf, sizeof badf), bad, len);
    free(bad);
    struct {
        const char *args, *msg;
    } errs[4] = {{"", "no FILE"}, {"--frobnicate x", "unknown option"}, {NULL, "No such file"}, {NULL, "needs 12"}};
    char a2[1024], a3[1024];
    snprintf(a2, sizeof a2, "'%s/missing.safetensors'", g_dir);
    snprintf(a3, sizeof a3, "'%s'", badf);
    errs[2].args = a2;
    errs[3].args = a3;
    for (int k = 0; k < 4; k++) {
        assert_int_not_equal(run_cli(errs[k].args, out, err), 0);
        char *e = (char *)read_all(err, &n);
        e = realloc(e, n + 1);
        e[n] = 0;
        if (strncmp(e, "arbitor: error: ", 16) || !strstr(e, errs[k].msg) || strchr(e, '\n') != e + n - 1)
            fail_msg("inspect %s: stderr was '%s'", errs[k].args, e);
        free(e);
        free(read_all(out, &n));
        assert_int_equal(n, 0);
    }
    assert_int_equal(run_cli("--help", out, err), 0);
}

static int setup(void **state) {
    (void)state;
    return arb_test_tmpdir_make(g_dir, sizeof g_dir, "arb_st_test");
}

static int teardown(void **state) {
    (void)state;
    return arb_test_tmpdir_remove(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_dtype), cmocka_unit_test(test_expect_and_load_f32),
        cmocka_unit_test(test_python_interop),        cmocka_unit_test(test_shared_fixtures),
        cmocka_unit_test(test_corrupt_files),         cmocka_unit_test(test_foreign_dtypes),
        cmocka_unit_test(test_missing_and_odd_paths), cmocka_unit_test(test_writer_atomic),
        cmocka_unit_test(test_cli_inspect),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
