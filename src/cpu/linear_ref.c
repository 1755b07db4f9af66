/* src/cpu/linear_ref.c — the scalar tier of the ternary linear ops: plain loops over the
 * tile16 layout that the AVX2 and AVX-512 tiers must match bit for bit.
 *
 * Why plain: this is the reference the fast tiers are tested against (and what runs on a CPU
 * without AVX2), so it reads trits one at a time and sums in the obvious order. The weight
 * update calls ternary-core's arb_upd_row, the per-weight rule every backend shares. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/linear_internal.h"

static inline int trit_at(const uint8_t *tile, int r, int c) {
    return ((tile[4 * r + (c & 3)] >> (2 * (c >> 2))) & 3) - 1;
}

static void ref_fwd(const arb_ternary *w, const int8_t *xq, int64_t n, const int32_t *xsum, int64_t rb0,
                    int64_t rb1, const arb_lin_out *o) {
    (void)xsum;
    int64_t kbs = w->cols_pad >> 4;
    int8_t row[16];
    for (int64_t rb = rb0; rb < rb1; rb++) {
        for (int r = 0; r < 16 && rb * 16 + r < w->rows; r++) {
            for (int64_t t = 0; t < n; t++) {
                const int8_t *x = xq + t * w->cols_pad;
                int32_t acc = 0;
                for (int64_t kb = 0; kb < kbs; kb++) {
                    const uint8_t *tile = arb_lin_tile(w, rb, kb);
                    for (int c = 0; c < 16; c++) row[c] = (int8_t)trit_at(tile, r, c);
                    for (int c = 0; c < 16; c++) acc += row[c] * x[kb * 16 + c];
                }
                arb_lin_store1(o, t, rb * 16 + r, acc);
            }
        }
    }
}

/* rows64 (layout in ternary.h): row 64G+16g+l, column 4q+i is field g of byte 4l+i of block (G, q). */
static void ref_gemv_rows64(const arb_ternary *w, const int8_t *x, int32_t xsum, int64_t g0, int64_t g1,
                            const arb_lin_out *o) {
    (void)xsum;
    const int64_t nq = w->cols_pad >> 2;
    for (int64_t G = g0; G < g1; G++) {
        for (int p = 0; p < 64; p++) {
            int64_t r = 64 * G + p;
            if (r >= w->rows) break;
            int g = p >> 4, l = p & 15;
            int32_t acc = 0;
            for (int64_t q = 0; q < nq; q++) {
                const uint8_t *blk = w->rows64 + ((size_t)G * (size_t)nq + (size_t)q) * 64;
                for (int i = 0; i < 4; i++) acc += (((blk[4 * l + i] >> (2 * g)) & 3) - 1) * x[4 * q + i];
            }
            arb_lin_store1(o, 0, r, acc);
        }
    }
}

static void ref_bwdx(const arb_ternary *w, const int8_t *hq, int64_t n, const int32_t *hsum, int64_t cb0,
                     int64_t cb1, const arb_lin_out *o) {
    (void)hsum;
    int64_t rbs = w->rows_pad >> 4;
    for (int64_t cb = cb0; cb < cb1; cb++) {
        for (int64_t t = 0; t < n; t++) {
            const int8_t *h = hq + t * w->rows_pad;
            int32_t acc[16] = {0};
            for (int64_t rb = 0; rb < rbs; rb++) {
                const uint8_t *tile = arb_lin_tile(w, rb, cb);
                for (int r = 0; r < 16; r++) {
                    int hv = h[rb * 16 + r];
                    if (!hv) continue;
                    for (int c = 0; c < 16; c++) acc[c] += hv * trit_at(tile, r, c);
                }
            }
            for (int c = 0; c < 16 && cb * 16 + c < w->cols; c++) arb_lin_store1(o, t, cb * 16 + c, acc[c]);
        }
    }
}

static void ref_upd(arb_ternary *w, const arb_lin_grad *gr, int64_t rb, int64_t kb0, int64_t kb1,
                    const arb_upd_plan *pl, arb_upd_row_acc *racc) {
    int64_t nchunk = (gr->n4 + ARB_LIN_NG_CHUNK - 1) / ARB_LIN_NG_CHUNK;
    for (int64_t kb = kb0; kb < kb1; kb++) {
        int32_t g[16][16] = {{0}};
        for (int64_t ch = 0; ch < nchunk; ch++) {
            int64_t g0 = ch * ARB_LIN_NG_CHUNK, g1 = g0 + ARB_LIN_NG_CHUNK < gr->n4 ? g0 + ARB_LIN_NG_CHUNK : gr->n4;
            int32_t part[16][16] = {{0}};
            for (int64_t ng = g0; ng < g1; ng++) {
                const uint8_t *xv = gr->xt + ((size_t)kb * (size_t)gr->n4 + (size_t)ng) * 64;
                const int8_t *hv = gr->ht + ((size_t)rb * (size_t)gr->n4 + (size_t)ng) * 64;
                for (int r = 0; r < 16; r++)
                    for (int c = 0; c < 16; c++)
                        for (int j = 0; j < 4; j++) part[r][c] += hv[4 * r + j] * xv[4 * c + j];
            }
            const int32_t *hs = gr->hsum + ch * w->rows_pad + rb * 16;
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 16; c++) g[r][c] += part[r][c] - 128 * hs[r];
        }
        int64_t c1 = kb * 16 + 16 < w->cols ? kb * 16 + 16 : w->cols;
        for (int r = 0; r < 16 && rb * 16 + r < w->rows; r++) {
            if (pl) {
                arb_upd_row(w, rb * 16 + r, kb * 16, c1, g[r], pl, &racc[r]);
            } else {
                for (int64_t c = kb * 16; c < c1; c++) {
                    int32_t v = g[r][c - kb * 16];
                    racc[r].abs_g += v < 0 ? -(int64_t)v : (int64_t)v;
                }
            }
        }
    }
}

/* hq[t, o] = clamp(floor(h·127/amax_t + u), ±127), h = dy[t,o]·scale[o], u = arb_rand_unit(key, t·rows + o):
 * unbiased stochastic rounding per token row; hs[t] = amax_t / 127. */
int64_t arb_lin_quant_dy_ref(const arb_ternary *w, const float *dy, int64_t t0, int64_t t1, arb_rng_key key,
                             int8_t *hq, float *hs, int32_t *hsum) {
    const int64_t rows = w->rows;
    int64_t bad = -1;
    for (int64_t t = t0; t < t1; t++) {
        const float *d = dy + t * rows;
        int8_t *q = hq + t * w->rows_pad;
        float amax = 0.0f;
        bool finite = true;
        for (int64_t o = 0; o < rows; o++) {
            float a = fabsf(d[o] * w->scale[o]);
            finite = finite && isfinite(a);
            amax = a > amax ? a : amax;
        }
        memset(q, 0, (size_t)w->rows_pad);
        hsum[t] = 0;
        hs[t] = 0.0f;
        if (!finite) {
            if (bad < 0) bad = t;
            continue;
        }
        if (amax == 0.0f) continue;
        float inv = 127.0f / amax;
        hs[t] = amax / 127.0f;
        int32_t s = 0;
        uint32_t base = (uint32_t)((uint64_t)t * (uint64_t)rows);
        for (int64_t o = 0; o < rows; o++) {
            float v = floorf((d[o] * w->scale[o]) * inv + arb_rand_unit(key, base + (uint32_t)o));
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            q[o] = (int8_t)v;
            s += q[o];
        }
        hsum[t] = s;
    }
    return bad;
}

void arb_lin_pack_grad_ref(const arb_ternary *w, const float *dy, const float *xs, const float *inv, int64_t n,
                           int64_t n4, arb_rng_key key, int64_t rb0, int64_t rb1, int8_t *ht, int32_t *hsum) {
    const int64_t rows = w->rows, nchunk = (n4 + ARB_LIN_NG_CHUNK - 1) / ARB_LIN_NG_CHUNK;
    for (int64_t rb = rb0; rb < rb1; rb++) {
        for (int64_t ch = 0; ch < nchunk; ch++)
            for (int o = 0; o < 16; o++) hsum[ch * w->rows_pad + rb * 16 + o] = 0;
        for (int64_t ng = 0; ng < n4; ng++) {
            int8_t *dst = ht + ((size_t)rb * (size_t)n4 + (size_t)ng) * 64;
            int32_t *hs = hsum + (ng / ARB_LIN_NG_CHUNK) * w->rows_pad + rb * 16;
            for (int j = 0; j < 4; j++) {
                int64_t t = 4 * ng + j;
                for (int o = 0; o < 16; o++) {
                    int64_t r = rb * 16 + o;
                    int8_t v = 0;
                    if (t < n && r < rows && inv[r] > 0.0f) { /* arb_upd_quantize_grad, element (t, r) */
                        float h = (dy[t * rows + r] * w->scale[r]) * xs[t];
                        float prod = h * inv[r];
                        float f = floorf(prod + arb_rand_unit(key, (uint32_t)(t * rows + r)));
                        f = f > 127.0f ? 127.0f : (f < -127.0f ? -127.0f : f);
                        v = (int8_t)f;
                    }
                    dst[4 * o + j] = v;
                    hs[o] += v;
                }
            }
        }
    }
}

bool arb_lin_col_amax_ref(const arb_ternary *w, const float *dy, const float *xs, int64_t n, int64_t o0, int64_t o1,
                          float *amax) {
    const int64_t rows = w->rows;
    int bad = 0;
    for (int64_t o = o0; o < o1; o++) amax[o] = 0.0f;
    for (int64_t t = 0; t < n; t++) {
        const float *d = dy + t * rows;
        for (int64_t o = o0; o < o1; o++) {
            float a = fabsf((d[o] * w->scale[o]) * xs[t]);
            bad |= a != a;
            amax[o] = a > amax[o] ? a : amax[o];
        }
    }
    for (int64_t o = o0; o < o1; o++) bad |= !isfinite(amax[o]);
    return bad != 0;
}

void arb_lin_pack_x_ref(const arb_ternary *w, const int8_t *xq, int64_t n, int64_t n4, int64_t kb0, int64_t kb1,
                        uint8_t *xt) {
    for (int64_t kb = kb0; kb < kb1; kb++) {
        for (int64_t ng = 0; ng < n4; ng++) {
            uint8_t *dst = xt + ((size_t)kb * (size_t)n4 + (size_t)ng) * 64;
            for (int j = 0; j < 4; j++) {
                int64_t t = 4 * ng + j;
                const int8_t *src = xq + t * w->cols_pad + kb * 16;
                for (int i = 0; i < 16; i++) dst[4 * i + j] = t < n ? (uint8_t)(src[i] + 128) : 128;
            }
        }
    }
}

const arb_lin_kernels arb_lin_kernels_ref = {ref_fwd,
                                             ref_bwdx,
                                             ref_upd,
                                             arb_lin_quant_dy_ref,
                                             arb_lin_pack_grad_ref,
                                             arb_lin_col_amax_ref,
                                             arb_lin_pack_x_ref,
                                             ref_gemv_rows64};
