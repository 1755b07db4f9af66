/* The loss-curve PNG: train and validation loss against step, drawn into an RGB buffer with a
 * built-in 5×7 font and written with libpng. Why draw it ourselves: one readable picture at the
 * end of a run must not need Python or gnuplot. Written through temp + rename (never partial). */
#include "arbitor/train.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef ARB_HAVE_PNG
#include <png.h>
#endif

typedef struct canvas {
    int w, h;
    uint8_t *px; /* (h, w, 3) RGB */
} canvas;

static void put(canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3, rgb, 3);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(c, x, y, rgb);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        rect(c, x0 - thick / 2, y0 - thick / 2, x0 + (thick - 1) / 2, y0 + (thick - 1) / 2, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) { err += dy; x0 += sx; }
        if (e2 <= dx) { err += dx; y0 += sy; }
    }
}

/* 5×7 glyphs, one byte per row, bit 4 = leftmost column. Upper case is drawn as lower case. */
static const uint8_t *glyph(char ch) {
    static const uint8_t digits[10][7] = {
        {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
        {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
        {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
        {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
        {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}};
    static const uint8_t lower[26][7] = {
        {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F},          {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},
        {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E},          {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},
        {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E},          {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},
        {0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},       {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},
        {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E},       {0x02, 0, 0x06, 0x02, 0x02, 0x12, 0x0C},
        {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},
        {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11},          {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11},
        {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E},          {0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10},
        {0, 0, 0x0D, 0x13, 0x0F, 0x01, 0x01},          {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10},
        {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E},          {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},
        {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D},          {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04},
        {0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A},          {0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11},
        {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E},          {0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F}};
    static const uint8_t dot[7] = {0, 0, 0, 0, 0, 0x0C, 0x0C}, minus[7] = {0, 0, 0, 0x1F, 0, 0, 0},
                         slash[7] = {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}, colon[7] = {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0},
                         lpar[7] = {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},
                         rpar[7] = {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, eq[7] = {0, 0, 0x1F, 0, 0x1F, 0, 0},
                         comma[7] = {0, 0, 0, 0, 0x0C, 0x04, 0x08}, blank[7] = {0};
    if (ch >= '0' && ch <= '9') return digits[ch - '0'];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    if (ch >= 'a' && ch <= 'z') return lower[ch - 'a'];
    switch (ch) {
    case '.': return dot;
    case '-': return minus;
    case '/': return slash;
    case ':': return colon;
    case '(': return lpar;
    case ')': return rpar;
    case '=': return eq;
    case ',': return comma;
    default: return blank;
    }
}

#define FONT_SCALE 2
#define CHAR_W (6 * FONT_SCALE)

static void text(canvas *c, int x, int y, const char *s, const uint8_t rgb[3]) {
    for (; *s; s++, x += CHAR_W) {
        const uint8_t *g = glyph(*s);
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (g[r] & (0x10 >> col))
                    rect(c, x + col * FONT_SCALE, y + r * FONT_SCALE, x + col * FONT_SCALE + FONT_SCALE - 1,
                         y + r * FONT_SCALE + FONT_SCALE - 1, rgb);
    }
}

static int text_w(const char *s) { return (int)strlen(s) * CHAR_W; }

/* A tick step of 1, 2 or 5 × 10^k that cuts `range` into about `n` pieces. */
static double nice_step(double range, int n) {
    double raw = range / n, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_count(double v, char *buf, size_t cap) {
    if (fabs(v) >= 1e6) snprintf(buf, cap, "%gm", v / 1e6);
    else if (fabs(v) >= 1e4) snprintf(buf, cap, "%gk", v / 1e3);
    else snprintf(buf, cap, "%g", v);
}

#ifdef ARB_HAVE_PNG
static arb_status png_write(const char *path, const canvas *c) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return arb_error(ARB_ERR_INVALID_ARG, "plot: path too long");
    int fd = mkstemp(tmp);
    if (fd < 0) return arb_error(ARB_ERR_IO, "plot: cannot create a temp file next to %s: %s", path, strerror(errno));
    mode_t um = umask(0); /* mkstemp makes 0600; a plot is as readable as any new file */
    umask(um);
    fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "plot: fdopen failed for %s", tmp);
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "plot: libpng failed writing %s", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, c->px + (size_t)y * (size_t)c->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "plot: cannot write %s: %s", path, strerror(errno));
    }
    fclose(f);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "plot: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    return ARB_OK;
}
#endif

arb_status arb_plot_loss_png(const char *path, const char *title, const double *tx, const double *ty, int64_t tn,
                             const double *vx, const double *vy, int64_t vn) {
#ifndef ARB_HAVE_PNG
    (void)path; (void)title; (void)tx; (void)ty; (void)tn; (void)vx; (void)vy; (void)vn;
    return arb_error(ARB_ERR_UNSUPPORTED, "plot: this build has no libpng");
#else
    if (!path || tn < 0 || vn < 0 || (tn && (!tx || !ty)) || (vn && (!vx || !vy)))
        return arb_error(ARB_ERR_INVALID_ARG, "plot: bad arguments");
    canvas c = {900, 540, NULL};
    c.px = malloc((size_t)c.w * (size_t)c.h * 3);
    if (!c.px) return arb_error(ARB_ERR_OOM, "plot: out of memory");
    memset(c.px, 255, (size_t)c.w * (size_t)c.h * 3);
    static const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, blue[3] = {31, 119, 180},
                         orange[3] = {230, 110, 10}, gray[3] = {90, 90, 90};
    const int L = 90, R = c.w - 30, T = 50, B = c.h - 70; /* plot area */
    /* Data ranges (finite points only). */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < 2; s++) {
        const double *xs = s ? vx : tx, *ys = s ? vy : ty;
        int64_t n = s ? vn : tn;
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
            x0 = fmin(x0, xs[i]); x1 = fmax(x1, xs[i]); y0 = fmin(y0, ys[i]); y1 = fmax(y1, ys[i]);
        }
    }
    if (!(x0 <= x1)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 - x0 < 1e-9) x1 = x0 + 1;
    if (y1 - y0 < 1e-6) { y0 -= 0.5; y1 += 0.5; }
    double ys = nice_step(y1 - y0, 6), xs = nice_step(x1 - x0, 6);
    y0 = floor(y0 / ys) * ys; y1 = ceil(y1 / ys) * ys;
    x0 = floor(x0 / xs) * xs; x1 = ceil(x1 / xs) * xs;
#define PX(v) (L + (int)lround(((v) - x0) / (x1 - x0) * (R - L)))
#define PY(v) (B - (int)lround(((v) - y0) / (y1 - y0) * (B - T)))
    char buf[64];
    for (double v = y0; v <= y1 + ys * 1e-6; v += ys) {
        int y = PY(v);
        line(&c, L, y, R, y, 1, grid);
        snprintf(buf, sizeof buf, "%.2f", v);
        text(&c, L - 8 - text_w(buf), y - 7, buf, black);
    }
    for (double v = x0; v <= x1 + xs * 1e-6; v += xs) {
        int x = PX(v);
        line(&c, x, T, x, B, 1, grid);
        fmt_count(v, buf, sizeof buf);
        text(&c, x - text_w(buf) / 2, B + 10, buf, black);
    }
    line(&c, L, B, R, B, 2, black);
    line(&c, L, T, L, B, 2, black);
    text(&c, (L + R) / 2 - text_w("step") / 2, B + 36, "step", black);
    text(&c, 8, T - 30, "nats/byte", black);
    if (title) text(&c, L + 120, 14, title, gray);
    /* Curves: train as a line, validation as a line with square markers. */
    for (int64_t i = 1; i < tn; i++)
        if (isfinite(ty[i - 1]) && isfinite(ty[i])) line(&c, PX(tx[i - 1]), PY(ty[i - 1]), PX(tx[i]), PY(ty[i]), 2, blue);
    for (int64_t i = 0; i < vn; i++) {
        if (!isfinite(vy[i])) continue;
        if (i > 0 && isfinite(vy[i - 1])) line(&c, PX(vx[i - 1]), PY(vy[i - 1]), PX(vx[i]), PY(vy[i]), 3, orange);
        rect(&c, PX(vx[i]) - 3, PY(vy[i]) - 3, PX(vx[i]) + 3, PY(vy[i]) + 3, orange);
    }
    /* Legend, top right inside the plot. */
    int lx = R - 200, ly = T + 10;
    rect(&c, lx, ly + 5, lx + 24, ly + 8, blue);
    text(&c, lx + 32, ly, "train", black);
    rect(&c, lx, ly + 29, lx + 24, ly + 32, orange);
    text(&c, lx + 32, ly + 24, "validation", black);
#undef PX
#undef PY
    arb_status s = png_write(path, &c);
    free(c.px);
    return s;
#endif
}
