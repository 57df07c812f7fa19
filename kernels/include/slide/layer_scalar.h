/* layer_scalar.h: forward and backward of a layer over its active neurons,
 * both layouts, plain C.
 *
 * The reference every other variant is tested against. The extension is
 * compiled with -fno-tree-vectorize, so these loops stay scalar; the
 * accumulation order is the obvious one (k ascending).
 *
 * Precisions: f32 (fp32 weights and activations) and bf16 (weights read from
 * the bf16 copy, fp32 arithmetic), so that the scalar build alone shows what
 * halving the bytes buys.
 */
#ifndef SLIDE_LAYER_SCALAR_H
#define SLIDE_LAYER_SCALAR_H

#include "kernel_api.h"

/* ---- row-major, fp32 ------------------------------------------------------ */

static void slide_fwd_rows_f32_scalar(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                      const int32_t *ids, int32_t n, float *z) {
    for (int32_t i = 0; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const float *w = m->w + r * m->ld;
        float s = 0.f;
        if (xi) {
            for (int32_t k = 0; k < nx; k++) s += w[xi[k]] * xv[k];
        } else {
            for (int32_t k = 0; k < nx; k++) s += w[k] * xv[k];
        }
        z[i] = s + m->b[r];
    }
}

static void slide_bwd_rows_f32_scalar(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv,
                                      int32_t nx, const int32_t *ids, const float *g, int32_t n, float *dx) {
    for (int32_t i = 0; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const float gi = g[i];
        const float *w = m->w + r * m->ld;
        float *gw = gW + r * m->ld;
        if (xi) {
            if (dx)
                for (int32_t k = 0; k < nx; k++) dx[k] += gi * w[xi[k]];
            for (int32_t k = 0; k < nx; k++) gw[xi[k]] += gi * xv[k];
        } else {
            if (dx)
                for (int32_t k = 0; k < nx; k++) dx[k] += gi * w[k];
            for (int32_t k = 0; k < nx; k++) gw[k] += gi * xv[k];
        }
        gb[r] += gi;
    }
}

/* ---- transposed, fp32 ----------------------------------------------------- */

static void slide_fwd_cols_f32_scalar(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                      const int32_t *ids, int32_t n, float *z) {
    if (ids) {
        for (int32_t i = 0; i < n; i++) z[i] = m->b[ids[i]];
    } else {
        for (int32_t i = 0; i < n; i++) z[i] = m->b[i];
    }
    for (int32_t k = 0; k < nx; k++) {
        const float x = xv[k];
        const float *w = m->w + (int64_t)(xi ? xi[k] : k) * m->ld;
        if (ids) {
            for (int32_t i = 0; i < n; i++) z[i] += x * w[ids[i]];
        } else {
            for (int32_t i = 0; i < n; i++) z[i] += x * w[i];
        }
    }
}

static void slide_bwd_cols_f32_scalar(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv,
                                      int32_t nx, const int32_t *ids, const float *g, int32_t n, float *dx) {
    for (int32_t k = 0; k < nx; k++) {
        const int64_t row = xi ? xi[k] : k;
        const float x = xv[k];
        const float *w = m->w + row * m->ld;
        float *gw = gW + row * m->ld;
        float s = 0.f;
        if (ids) {
            for (int32_t i = 0; i < n; i++) {
                s += g[i] * w[ids[i]];
                gw[ids[i]] += x * g[i];
            }
        } else {
            for (int32_t i = 0; i < n; i++) {
                s += g[i] * w[i];
                gw[i] += x * g[i];
            }
        }
        if (dx) dx[k] += s;
    }
    if (ids) {
        for (int32_t i = 0; i < n; i++) gb[ids[i]] += g[i];
    } else {
        for (int32_t i = 0; i < n; i++) gb[i] += g[i];
    }
}

/* ---- bf16 forward: bf16 weights (copy) or fp32 weights rounded on the fly ---- */

/* Weight k of a row, as the bf16 value the kernel multiplies with. */
#define SLIDE_W_BF16(w, k) slide_bf16_to_f32((w)[k])
#define SLIDE_W_BF16ACT(w, k) slide_round_bf16((w)[k])

#define SLIDE_SCALAR_FWD_ROWS(NAME, WT, WSRC, WGET)                                                         \
    static void NAME(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,  \
                     int32_t n, float *z) {                                                                  \
        for (int32_t i = 0; i < n; i++) {                                                                    \
            const int64_t r = ids ? ids[i] : i;                                                              \
            const WT *w = m->WSRC + r * m->ld;                                                               \
            float s = 0.f;                                                                                   \
            if (xi) {                                                                                        \
                for (int32_t k = 0; k < nx; k++) s += WGET(w, xi[k]) * slide_round_bf16(xv[k]);              \
            } else {                                                                                         \
                for (int32_t k = 0; k < nx; k++) s += WGET(w, k) * slide_round_bf16(xv[k]);                  \
            }                                                                                                \
            z[i] = s + m->b[r];                                                                              \
        }                                                                                                    \
    }

#define SLIDE_SCALAR_FWD_COLS(NAME, WT, WSRC, WGET)                                                         \
    static void NAME(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,  \
                     int32_t n, float *z) {                                                                  \
        if (ids) {                                                                                           \
            for (int32_t i = 0; i < n; i++) z[i] = m->b[ids[i]];                                             \
        } else {                                                                                             \
            for (int32_t i = 0; i < n; i++) z[i] = m->b[i];                                                  \
        }                                                                                                    \
        for (int32_t k = 0; k < nx; k++) {                                                                   \
            const float x = slide_round_bf16(xv[k]);                                                         \
            const WT *w = m->WSRC + (int64_t)(xi ? xi[k] : k) * m->ld;                                       \
            if (ids) {                                                                                       \
                for (int32_t i = 0; i < n; i++) z[i] += x * WGET(w, ids[i]);                                 \
            } else {                                                                                         \
                for (int32_t i = 0; i < n; i++) z[i] += x * WGET(w, i);                                      \
            }                                                                                                \
        }                                                                                                    \
    }

SLIDE_SCALAR_FWD_ROWS(slide_fwd_rows_bf16_scalar, bf16_t, wb, SLIDE_W_BF16)
SLIDE_SCALAR_FWD_ROWS(slide_fwd_rows_bf16act_scalar, float, w, SLIDE_W_BF16ACT)
SLIDE_SCALAR_FWD_COLS(slide_fwd_cols_bf16_scalar, bf16_t, wb, SLIDE_W_BF16)
SLIDE_SCALAR_FWD_COLS(slide_fwd_cols_bf16act_scalar, float, w, SLIDE_W_BF16ACT)

/* bf16 backward: the input gradient reads the bf16 copy; weight gradients fp32. */
static void slide_bwd_rows_bf16_scalar(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                       const float *xv, int32_t nx, const int32_t *ids, const float *g, int32_t n,
                                       float *dx) {
    for (int32_t i = 0; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const float gi = g[i];
        const bf16_t *w = m->wb + r * m->ld;
        float *gw = gW + r * m->ld;
        if (xi) {
            if (dx)
                for (int32_t k = 0; k < nx; k++) dx[k] += gi * slide_bf16_to_f32(w[xi[k]]);
            for (int32_t k = 0; k < nx; k++) gw[xi[k]] += gi * xv[k];
        } else {
            if (dx)
                for (int32_t k = 0; k < nx; k++) dx[k] += gi * slide_bf16_to_f32(w[k]);
            for (int32_t k = 0; k < nx; k++) gw[k] += gi * xv[k];
        }
        gb[r] += gi;
    }
}

static void slide_bwd_cols_bf16_scalar(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                       const float *xv, int32_t nx, const int32_t *ids, const float *g, int32_t n,
                                       float *dx) {
    for (int32_t k = 0; k < nx; k++) {
        const int64_t row = xi ? xi[k] : k;
        const float x = xv[k];
        const bf16_t *w = m->wb + row * m->ld;
        float *gw = gW + row * m->ld;
        float s = 0.f;
        if (ids) {
            for (int32_t i = 0; i < n; i++) {
                s += g[i] * slide_bf16_to_f32(w[ids[i]]);
                gw[ids[i]] += x * g[i];
            }
        } else {
            for (int32_t i = 0; i < n; i++) {
                s += g[i] * slide_bf16_to_f32(w[i]);
                gw[i] += x * g[i];
            }
        }
        if (dx) dx[k] += s;
    }
    if (ids) {
        for (int32_t i = 0; i < n; i++) gb[ids[i]] += g[i];
    } else {
        for (int32_t i = 0; i < n; i++) gb[i] += g[i];
    }
}

/* ---- Adam ------------------------------------------------------------------ */

/* Adam (slide_adam_one) over rows; reads and zeroes the gradient. */
static void slide_adam_f32_scalar(float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld, int32_t cols,
                                  const int32_t *rows, int64_t nrows, const slide_adam_params *p) {
    const slide_adam_params q = *p;
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t off = (rows ? (int64_t)rows[i] : i) * ld;
        float *W = w + off, *M = m + off, *V = v + off, *G = g + off;
        for (int32_t k = 0; k < cols; k++) {
            slide_adam_one(W + k, M + k, V + k, G[k], q);
            G[k] = 0.f;
        }
        if (wb) {
            bf16_t *B = wb + off;
            for (int32_t k = 0; k < cols; k++) B[k] = slide_f32_to_bf16(W[k]);
        }
    }
}

/* Fused row backward + Adam (see kernel_api.h); the expressions of
 * slide_bwd_rows_f32_scalar, then slide_adam_one, element by element. */
static void slide_row_adam_f32_scalar(float *w, bf16_t *wb, float *m, float *v, const float *x, const float *H,
                                      float *dH, int64_t ldh, int32_t d, const int32_t *ids, const float *g,
                                      int32_t n, const slide_adam_params *p) {
    const slide_adam_params q = *p;
    for (int32_t k = 0; k < d; k++) {
        const float xk = x[k]; /* read before w[k] is written: x may be w */
        float gk = 0.f;
        for (int32_t i = 0; i < n; i++) {
            const int64_t o = (int64_t)ids[i] * ldh + k;
            gk += g[i] * H[o];
            dH[o] += g[i] * xk;
        }
        slide_adam_one(w + k, m + k, v + k, gk, q);
        if (wb) wb[k] = slide_f32_to_bf16(w[k]);
    }
}

#endif
