/* kernel_api.h: the interface every kernel variant implements.
 *
 * A layer's weights are one flat matrix. Two layouts:
 *   row-major  ("rowmajor"):   one row per OUTPUT neuron, n_out rows x ld columns (ld >= n_in);
 *                              right for gathering the active rows of a sampled layer.
 *   transposed ("transposed"): one row per INPUT feature,  n_in rows x ld columns (ld >= n_out);
 *                              right for a sparse input times a dense layer.
 * Rows are padded to `ld` elements (a multiple of 16 floats / 32 bf16) and
 * padding is kept at zero, so SIMD kernels may read whole rows.
 *
 * Inputs to a layer are (xi, xv, nx): xi == NULL means dense (xv has nx
 * values, index k is coordinate k); otherwise a sparse vector with sorted,
 * unique indices. Active outputs are (ids, n): ids == NULL means all outputs
 * 0..n-1 in order.
 *
 * Kernels never allocate and never check bounds: the engine validates every
 * index at the Python/C boundary before a kernel sees it.
 *
 * Precision (the dtype part of a kernel's name):
 *   f32      fp32 weights and activations.
 *   bf16     weights read from the bf16 copy (wb); forward dot products on
 *            bf16-rounded activations; backward and Adam in fp32.
 *   bf16act  weights stored fp32 but rounded to bf16 for the forward dot
 *            products, activations rounded to bf16 too (bf16 compute, fp32
 *            storage); backward uses the f32 kernels.
 * Products of two bf16 values are exact in fp32, so every ISA computes the
 * same products; only the fp32 accumulation order differs.
 */
#ifndef SLIDE_KERNEL_API_H
#define SLIDE_KERNEL_API_H

#include "common.h"

typedef struct {
    float *w;      /* fp32 master weights */
    bf16_t *wb;    /* bf16 copy read by bf16-weight kernels (NULL otherwise) */
    float *b;      /* bias, one per output neuron */
    int64_t ld;    /* row stride in elements (same for w and wb) */
    int32_t rows;  /* storage rows */
    int32_t cols;  /* valid columns per row (<= ld) */
    int32_t prefetch; /* SIMD kernels: software-prefetch rows this many active rows ahead (0: off) */
} slide_mat;

typedef struct {
    float lr_t;   /* learning rate with the bias correction folded in */
    float beta1;
    float beta2;
    float one_minus_beta1; /* computed in double: 1.f - 0.999f is off by 1.3e-5 relative */
    float one_minus_beta2;
    float eps;
} slide_adam_params;

/* One Adam step on one value, bias correction folded into lr_t (Kingma & Ba,
 * sec. 2): m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps).
 * Separate multiplies and adds and correctly rounded sqrt and division, as
 * every SIMD adam kernel computes them lane by lane, so all agree bitwise.
 * p by value: inlined in a loop, its fields stay in registers (the arrays may
 * alias them as far as the compiler knows). */
SLIDE_INLINE void slide_adam_one(float *w, float *m, float *v, float g, const slide_adam_params p) {
    const float mk = p.beta1 * *m + p.one_minus_beta1 * g;
    const float vk = p.beta2 * *v + p.one_minus_beta2 * g * g;
    *m = mk;
    *v = vk;
    *w -= p.lr_t * mk / (sqrtf(vk) + p.eps);
}

/* Row-major forward: z[i] = b[r] + <W[r, :], x>, r = ids ? ids[i] : i. */
typedef void (*slide_fwd_rows_fn)(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                  const int32_t *ids, int32_t n, float *z);

/* Row-major backward, for the active rows r with output gradients g:
 *   dx[k] += sum_i g[i] W[r, x_k]   (dx may be NULL: not needed for the first layer)
 *   gW[r, x_k] += g[i] * x_k;  gb[r] += g[i]                                       */
typedef void (*slide_bwd_rows_fn)(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv,
                                  int32_t nx, const int32_t *ids, const float *g, int32_t n, float *dx);

/* Transposed forward: z[i] = b[c] + sum_k x_k WT[x_k, c], c = ids ? ids[i] : i. */
typedef void (*slide_fwd_cols_fn)(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                  const int32_t *ids, int32_t n, float *z);

/* Transposed backward: dx[k] += sum_i g[i] WT[x_k, c_i]; gWT[x_k, c_i] += x_k g[i]; gb[c_i] += g[i]. */
typedef void (*slide_bwd_cols_fn)(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv,
                                  int32_t nx, const int32_t *ids, const float *g, int32_t n, float *dx);

/* Adam over rows (rows == NULL: rows 0..nrows-1) of width `cols`, stride `ld`.
 * Reads and zeroes the gradient; refreshes the bf16 copy when wb != NULL. */
typedef void (*slide_adam_fn)(float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld, int32_t cols,
                              const int32_t *rows, int64_t nrows, const slide_adam_params *p);

/* Backward and Adam of one row-major weight row w (d columns) at once, for
 * the batched output layer: with the row's n entries (ids[i] a row of H and
 * dH, g[i] its output gradient), in entry order,
 *   grad[k] = sum_i g[i] H[ids[i], k]
 *   dH[ids[i], k] += g[i] x[k]     (x: the weights the forward used; may be w)
 * then one Adam step of w, m, v with grad (wb != NULL: the bf16 copy too).
 * The same arithmetic, in the same order, as bwd_rows (H as the matrix, x as
 * the input, dH as its gradient, grad as dx) followed by adam on the row:
 * what fusing saves is the gradient buffer and a second pass over the row. */
typedef void (*slide_row_adam_fn)(float *w, bf16_t *wb, float *m, float *v, const float *x, const float *H,
                                  float *dH, int64_t ldh, int32_t d, const int32_t *ids, const float *g, int32_t n,
                                  const slide_adam_params *p);

/* One variant of the layer ops: what the engine calls through. */
typedef struct {
    slide_fwd_rows_fn fwd_rows;
    slide_bwd_rows_fn bwd_rows;
    slide_fwd_cols_fn fwd_cols;
    slide_bwd_cols_fn bwd_cols;
    slide_adam_fn adam;
} slide_layer_ops;

#endif
