/* Sidecar preprocessing for images: PNG/JPEG decoding (libpng simplified API, libjpeg with a
 * longjmp error handler), PIL-exact bicubic resizing, DINOv2's BitImageProcessor, PNG writing.
 *
 * Why PIL-exact: the processor's pixel_values come from Pillow's 8-bit resampler (support scaled
 * by the downscale factor, coefficients normalized and rounded to 22-bit fixed point, horizontal
 * pass into an 8-bit image, then vertical). A float resize differs by a level or two here and
 * there; reproducing the integer arithmetic gives the same bytes. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ARB_HAVE_PNG
#include <png.h>
#endif
#ifdef ARB_HAVE_JPEG
#include <jpeglib.h>
#endif

#include "sidecars/sc_internal.h"

#define IMG_MAX_SIDE 32768
#define IMG_MAX_PIXELS ((size_t)1 << 27) /* 128 Mpx: refuse decompression bombs */

/* ---------------------------------------------------------------- reading files */

static arb_status read_file(const char *path, unsigned char **buf, size_t *len, size_t max) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return arb_error(ARB_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return arb_error(ARB_ERR_IO, "%s: cannot seek", path);
    }
    long n = ftell(f);
    if (n < 0 || (unsigned long)n > max) {
        fclose(f);
        return arb_error(n < 0 ? ARB_ERR_IO : ARB_ERR_FORMAT, "%s: %s", path, n < 0 ? "cannot size" : "file too large");
    }
    rewind(f);
    unsigned char *b = (unsigned char *)malloc((size_t)n + 1);
    if (!b) {
        fclose(f);
        return arb_error(ARB_ERR_OOM, "%s: out of memory", path);
    }
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(b);
        return arb_error(ARB_ERR_IO, "%s: short read", path);
    }
    *buf = b;
    *len = (size_t)n;
    return ARB_OK;
}

/* ---------------------------------------------------------------- decoding */

#ifdef ARB_HAVE_PNG
static arb_status png_decode(const void *buf, size_t len, uint8_t **rgb, int *w, int *h) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, buf, len))
        return arb_error(ARB_ERR_FORMAT, "PNG: %s", im.message[0] ? im.message : "cannot read header");
    if (im.width < 1 || im.height < 1 || im.width > IMG_MAX_SIDE || im.height > IMG_MAX_SIDE ||
        (size_t)im.width * im.height > IMG_MAX_PIXELS) {
        png_image_free(&im);
        return arb_error(ARB_ERR_FORMAT, "PNG: image size %ux%u out of range", im.width, im.height);
    }
    im.format = PNG_FORMAT_RGBA; /* decode with alpha, then drop it (PIL's convert("RGB")) */
    size_t n = (size_t)im.width * im.height;
    uint8_t *rgba = (uint8_t *)arb_alloc(n * 4);
    if (!rgba) {
        png_image_free(&im);
        return arb_error(ARB_ERR_OOM, "PNG: out of memory for %ux%u", im.width, im.height);
    }
    if (!png_image_finish_read(&im, NULL, rgba, 0, NULL)) {
        arb_free(rgba);
        arb_status s = arb_error(ARB_ERR_FORMAT, "PNG: %s", im.message[0] ? im.message : "corrupt image data");
        png_image_free(&im);
        return s;
    }
    for (size_t i = 0; i < n; i++) memmove(rgba + 3 * i, rgba + 4 * i, 3);
    *rgb = rgba;
    *w = (int)im.width;
    *h = (int)im.height;
    png_image_free(&im);
    return ARB_OK;
}
#endif

#ifdef ARB_HAVE_JPEG
typedef struct jerr_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_ctx;

static void jpeg_fail(j_common_ptr ci) {
    jerr_ctx *e = (jerr_ctx *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}
static void jpeg_quiet(j_common_ptr ci, int level) {
    (void)ci;
    (void)level;
}

static arb_status jpeg_decode(const void *buf, size_t len, uint8_t **rgb, int *w, int *h) {
    struct jpeg_decompress_struct ci;
    jerr_ctx err;
    uint8_t *volatile out = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_quiet;
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&ci);
        arb_free(out);
        return arb_error(ARB_ERR_FORMAT, "JPEG: %s", err.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (const unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if (ci.image_width < 1 || ci.image_height < 1 || ci.image_width > IMG_MAX_SIDE || ci.image_height > IMG_MAX_SIDE ||
        (size_t)ci.image_width * ci.image_height > IMG_MAX_PIXELS) {
        jpeg_destroy_decompress(&ci);
        return arb_error(ARB_ERR_FORMAT, "JPEG: image size %ux%u out of range", ci.image_width, ci.image_height);
    }
    ci.out_color_space = JCS_RGB; /* gray, YCbCr and (for libjpeg-turbo) CMYK are converted */
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return arb_error(ARB_ERR_UNSUPPORTED, "JPEG: CMYK images are not supported");
    }
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3) {
        jpeg_destroy_decompress(&ci);
        return arb_error(ARB_ERR_FORMAT, "JPEG: %d output components", ci.output_components);
    }
    size_t stride = (size_t)ci.output_width * 3;
    out = (uint8_t *)arb_alloc(stride * ci.output_height);
    if (!out) {
        jpeg_destroy_decompress(&ci);
        return arb_error(ARB_ERR_OOM, "JPEG: out of memory");
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = out + stride * ci.output_scanline;
        if (jpeg_read_scanlines(&ci, &row, 1) != 1) break;
    }
    *w = (int)ci.output_width;
    *h = (int)ci.output_height;
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    *rgb = out;
    return ARB_OK;
}
#endif

arb_status arb_image_decode(const void *buf, size_t len, uint8_t **rgb, int *width, int *height) {
    if (!rgb || !width || !height) return arb_error(ARB_ERR_INVALID_ARG, "arb_image_decode: NULL argument");
    if (!buf || len == 0) return arb_error(ARB_ERR_FORMAT, "image: empty input");
    *rgb = NULL;
    *width = *height = 0;
    const unsigned char *b = (const unsigned char *)buf;
    if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) {
#ifdef ARB_HAVE_PNG
        return png_decode(buf, len, rgb, width, height);
#else
        return arb_error(ARB_ERR_UNSUPPORTED, "PNG: this build has no libpng (install libpng-dev and rebuild)");
#endif
    }
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
#ifdef ARB_HAVE_JPEG
        return jpeg_decode(buf, len, rgb, width, height);
#else
        return arb_error(ARB_ERR_UNSUPPORTED, "JPEG: this build has no libjpeg (install libjpeg-dev and rebuild)");
#endif
    }
    return arb_error(ARB_ERR_FORMAT, "image: not a PNG or JPEG file (unknown signature)");
}

arb_status arb_image_load(const char *path, uint8_t **rgb, int *width, int *height) {
    unsigned char *buf;
    size_t len;
    ARB_TRY(read_file(path, &buf, &len, (size_t)1 << 30));
    arb_status s = arb_image_decode(buf, len, rgb, width, height);
    free(buf);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", arb_last_error());
        return arb_error(s, "%s: %s", path, msg);
    }
    return ARB_OK;
}

arb_status arb_image_save_png(const char *path, const uint8_t *rgb, int width, int height) {
#ifdef ARB_HAVE_PNG
    if (!path || !rgb || width < 1 || height < 1) return arb_error(ARB_ERR_INVALID_ARG, "arb_image_save_png: bad arguments");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)width;
    im.height = (png_uint_32)height;
    im.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&im, tmp, 0, rgb, 0, NULL)) {
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "%s: %s", path, im.message[0] ? im.message : "cannot write PNG");
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return arb_error(ARB_ERR_IO, "%s: %s", path, strerror(e));
    }
    return ARB_OK;
#else
    (void)path, (void)rgb, (void)width, (void)height;
    return arb_error(ARB_ERR_UNSUPPORTED, "PNG: this build has no libpng (install libpng-dev and rebuild)");
#endif
}

/* ---------------------------------------------------------------- PIL bicubic resize */

#define PIL_PRECISION_BITS (32 - 8 - 2)

static double pil_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc (Resample.c). */
static int pil_coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = (double *)malloc((size_t)out_size * ksize * sizeof(double));
    int32_t *kk = (int32_t *)malloc((size_t)out_size * ksize * sizeof(int32_t));
    int *bounds = (int *)malloc((size_t)out_size * 2 * sizeof(int));
    if (!pre || !kk || !bounds) {
        free(pre), free(kk), free(bounds);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = pil_bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PIL_PRECISION_BITS)) : (int32_t)(0.5 + pre[i] * (1 << PIL_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static uint8_t clip8(int64_t v) {
    v >>= PIL_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

arb_status arb_image_resize_bicubic(const uint8_t *src, int w, int h, int c, uint8_t *dst, int ow, int oh) {
    if (!src || !dst || w < 1 || h < 1 || ow < 1 || oh < 1 || c < 1 || c > 4 || ow > IMG_MAX_SIDE || oh > IMG_MAX_SIDE)
        return arb_error(ARB_ERR_INVALID_ARG, "resize: bad arguments (%dx%dx%d -> %dx%d)", w, h, c, ow, oh);
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    int ksh = pil_coeffs(w, ow, &bh, &kh), ksv = pil_coeffs(h, oh, &bv, &kv);
    /* rows of the source the vertical pass needs */
    int ybox_first = ksv ? bv[0] : 0, ybox_last = ksv ? bv[oh * 2 - 2] + bv[oh * 2 - 1] : 0;
    int th = ybox_last - ybox_first;
    uint8_t *tmp = (ksh && ksv) ? (uint8_t *)malloc((size_t)ow * (th > 0 ? th : 1) * c) : NULL;
    if (!tmp) {
        free(bh), free(kh), free(bv), free(kv), free(tmp);
        return arb_error(ARB_ERR_OOM, "resize: out of memory");
    }
    bool need_h = ow != w, need_v = oh != h;
    const uint8_t *vin = src;
    int vin_w = w, yoff = 0;
    if (need_h) {
        for (int y = 0; y < th; y++)
            for (int xx = 0; xx < ow; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = kh + (size_t)xx * ksh;
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = (int64_t)1 << (PIL_PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++) ss += (int64_t)src[((size_t)(y + ybox_first) * w + x + xmin) * c + ch] * k[x];
                    tmp[((size_t)y * ow + xx) * c + ch] = clip8(ss);
                }
            }
        vin = tmp;
        vin_w = ow;
        yoff = ybox_first;
    }
    if (need_v) {
        for (int yy = 0; yy < oh; yy++) {
            int ymin = bv[yy * 2] - yoff, ymax = bv[yy * 2 + 1];
            const int32_t *k = kv + (size_t)yy * ksv;
            for (int xx = 0; xx < vin_w; xx++)
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = (int64_t)1 << (PIL_PRECISION_BITS - 1);
                    for (int y = 0; y < ymax; y++) ss += (int64_t)vin[((size_t)(y + ymin) * vin_w + xx) * c + ch] * k[y];
                    dst[((size_t)yy * ow + xx) * c + ch] = clip8(ss);
                }
        }
    } else if (need_h) {
        memcpy(dst, tmp, (size_t)ow * oh * c);
    } else {
        memcpy(dst, src, (size_t)w * h * c);
    }
    free(bh), free(kh), free(bv), free(kv), free(tmp);
    return ARB_OK;
}

arb_status arb_image_preprocess_dinov2(const uint8_t *rgb, int width, int height, arb_tensor *pv) {
    if (!rgb || !pv || width < 1 || height < 1)
        return arb_error(ARB_ERR_INVALID_ARG, "preprocess: bad image (%dx%d)", width, height);
    /* shortest edge → 256; the other side int(256·long/short) (transformers' get_resize_output_image_size) */
    int short_e = width < height ? width : height, long_e = width < height ? height : width;
    int nl = (int)((double)256 * long_e / short_e);
    int ow = width <= height ? 256 : nl, oh = width <= height ? nl : 256;
    if (nl < 256 || nl > IMG_MAX_SIDE) return arb_error(ARB_ERR_SHAPE, "preprocess: aspect ratio of %dx%d too extreme", width, height);
    uint8_t *r = (uint8_t *)malloc((size_t)ow * oh * 3);
    if (!r) return arb_error(ARB_ERR_OOM, "preprocess: out of memory");
    arb_status s = arb_image_resize_bicubic(rgb, width, height, 3, r, ow, oh);
    if (!s) s = arb_tensor_init(pv, ARB_F32, 4, (int64_t[]){1, 3, 224, 224}, arb_cpu());
    if (s) {
        free(r);
        return s;
    }
    int top = (oh - 224) / 2, left = (ow - 224) / 2;
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    float *o = (float *)pv->data;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 224; y++)
            for (int x = 0; x < 224; x++) {
                float v = (float)r[((size_t)(y + top) * ow + x + left) * 3 + c] * (float)(1.0 / 255.0);
                o[((size_t)c * 224 + y) * 224 + x] = (v - mean[c]) / stdv[c];
            }
    free(r);
    return ARB_OK;
}
