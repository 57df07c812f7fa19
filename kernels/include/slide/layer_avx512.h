/* layer_avx512.h: layer forward/backward and Adam with AVX-512 (F/BW/VL/DQ)
 * fp32 intrinsics, 16 lanes, masked tails (any width works).
 *
 * Every function carries the AVX-512 target attribute and is reached only
 * through the kernel registry after the CPU check; this header holds no code
 * that runs at import. With SLIDE_EMULATE_AVX512 defined, the same source is
 * compiled against a portable emulation of the intrinsics it uses
 * (emu/avx512_emu.h), which lets the kernel logic be tested on any x86-64.
 *
 * Row-major forward keeps four rows in flight (independent FMA chains) and
 * optionally prefetches the rows `m->prefetch` active rows ahead. Backward
 * keeps a 128-wide slice of the input gradient in registers across all
 * active rows. Adam uses separate multiply and add (no FMA) so that its
 * result is bitwise identical to the scalar kernel.
 */
#ifndef SLIDE_LAYER_AVX512_H
#define SLIDE_LAYER_AVX512_H

#include "kernel_api.h"

#if defined(SLIDE_EMULATE_AVX512)
#include "emu/avx512_emu.h"
#define SLIDE_T512
#else
#include <immintrin.h>
#define SLIDE_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

#define S512 SLIDE_T512 static inline __attribute__((always_inline))

enum { SLIDE_DT_F32 = 0, SLIDE_DT_BF16 = 1, SLIDE_DT_BF16ACT = 2 };

/* ---- helpers ---------------------------------------------------------------- */

S512 __mmask16 s512_mask(int32_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* Round to the nearest bf16 (ties to even), kept as fp32. Finite inputs. */
S512 __m512 s512_round_bf16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}

S512 __m512 s512_bf16_to_f32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 weights starting at element `off` of the matrix, as the fp32 values the
 * dtype multiplies with. */
S512 __m512 s512_load_w(const slide_mat *m, int64_t off, __mmask16 k, const int dt) {
    if (dt == SLIDE_DT_BF16) return s512_bf16_to_f32(_mm256_maskz_loadu_epi16(k, m->wb + off));
    const __m512 w = _mm512_maskz_loadu_ps(k, m->w + off);
    return dt == SLIDE_DT_BF16ACT ? s512_round_bf16(w) : w;
}

/* Weights at row offset `roff` + idx[lane]. bf16: a 32-bit gather at a 2-byte
 * scale whose low half is the element (bf16 buffers carry 32 spare elements). */
S512 __m512 s512_gather_w(const slide_mat *m, int64_t roff, __m512i idx, __mmask16 k, const int dt) {
    if (dt == SLIDE_DT_BF16) {
        const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, (const void *)(m->wb + roff), 2);
        return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    }
    const __m512 w = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, (const void *)(m->w + roff), 4);
    return dt == SLIDE_DT_BF16ACT ? s512_round_bf16(w) : w;
}

S512 __m512 s512_load_x(const float *x, __mmask16 k, const int dt) {
    const __m512 v = _mm512_maskz_loadu_ps(k, x);
    return dt == SLIDE_DT_F32 ? v : s512_round_bf16(v);
}

S512 void s512_prefetch_row(const slide_mat *m, int64_t r, int32_t width, const int dt) {
    const char *p = dt == SLIDE_DT_BF16 ? (const char *)(m->wb + r * m->ld) : (const char *)(m->w + r * m->ld);
    const int64_t bytes = (int64_t)width * (dt == SLIDE_DT_BF16 ? 2 : 4);
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

/* ---- row-major forward ------------------------------------------------------- */

/* Dot products of R (1..4) rows with the input; sums land in out[0..R). */
S512 void s512_dot_rows(const slide_mat *m, const int64_t *roff, const int R, const int32_t *xi, const float *xv,
                        int32_t nx, float *out, const int dt) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int32_t k = 0; k < nx; k += 16) {
        const __mmask16 mk = s512_mask(nx - k);
        const __m512 x = s512_load_x(xv + k, mk, dt);
        if (xi) {
            const __m512i idx = _mm512_maskz_loadu_epi32(mk, xi + k);
            for (int j = 0; j < R; j++) acc[j] = _mm512_fmadd_ps(s512_gather_w(m, roff[j], idx, mk, dt), x, acc[j]);
        } else {
            for (int j = 0; j < R; j++) acc[j] = _mm512_fmadd_ps(s512_load_w(m, roff[j] + k, mk, dt), x, acc[j]);
        }
    }
    for (int j = 0; j < R; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

S512 void s512_fwd_rows(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,
                        int32_t n, float *z, const int dt) {
    const int32_t pf = xi ? 0 : m->prefetch;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int64_t r[4], off[4];
        for (int j = 0; j < 4; j++) {
            r[j] = ids ? ids[i + j] : i + j;
            off[j] = r[j] * m->ld;
        }
        if (pf)
            for (int j = 0; j < 4; j++)
                if (i + pf + j < n) s512_prefetch_row(m, ids ? ids[i + pf + j] : i + pf + j, nx, dt);
        float s[4];
        s512_dot_rows(m, off, 4, xi, xv, nx, s, dt);
        for (int j = 0; j < 4; j++) z[i + j] = s[j] + m->b[r[j]];
    }
    for (; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const int64_t off = r * m->ld;
        float s;
        s512_dot_rows(m, &off, 1, xi, xv, nx, &s, dt);
        z[i] = s + m->b[r];
    }
}

SLIDE_T512 static void slide_fwd_rows_f32_avx512(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                 const int32_t *ids, int32_t n, float *z) {
    s512_fwd_rows(m, xi, xv, nx, ids, n, z, SLIDE_DT_F32);
}
SLIDE_T512 static void slide_fwd_rows_bf16_avx512(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                  const int32_t *ids, int32_t n, float *z) {
    s512_fwd_rows(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16);
}
SLIDE_T512 static void slide_fwd_rows_bf16act_avx512(const slide_mat *m, const int32_t *xi, const float *xv,
                                                     int32_t nx, const int32_t *ids, int32_t n, float *z) {
    s512_fwd_rows(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16ACT);
}

/* ---- row-major backward ------------------------------------------------------ */

#define S512_CHUNK 8 /* vectors of the input kept in registers: 128 floats */

S512 void s512_bwd_rows(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv, int32_t nx,
                        const int32_t *ids, const float *g, int32_t n, float *dx, const int dt) {
    const int64_t ld = m->ld;
    const int32_t pf = m->prefetch;
    if (xi) {
        /* sparse input: gather the weights, gather-add-scatter the gradient row
         * (indices within a row are unique, so lanes never collide) */
        for (int32_t i = 0; i < n; i++) {
            const int64_t r = ids ? ids[i] : i;
            const __m512 gi = _mm512_set1_ps(g[i]);
            float *gw = gW + r * ld;
            for (int32_t k = 0; k < nx; k += 16) {
                const __mmask16 mk = s512_mask(nx - k);
                const __m512i idx = _mm512_maskz_loadu_epi32(mk, xi + k);
                if (dx) {
                    const __m512 w = s512_gather_w(m, r * ld, idx, mk, dt);
                    _mm512_mask_storeu_ps(dx + k, mk, _mm512_fmadd_ps(gi, w, _mm512_maskz_loadu_ps(mk, dx + k)));
                }
                const __m512 old = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, gw, 4);
                _mm512_mask_i32scatter_ps(gw, mk, idx, _mm512_fmadd_ps(gi, _mm512_maskz_loadu_ps(mk, xv + k), old), 4);
            }
            gb[r] += g[i];
        }
        return;
    }
    for (int32_t k0 = 0; k0 < nx; k0 += 16 * S512_CHUNK) {
        __m512 d[S512_CHUNK], x[S512_CHUNK];
        __mmask16 mk[S512_CHUNK];
        for (int v = 0; v < S512_CHUNK; v++) {
            mk[v] = k0 + 16 * v < nx ? s512_mask(nx - k0 - 16 * v) : 0;
            x[v] = _mm512_maskz_loadu_ps(mk[v], xv + k0 + 16 * v);
            d[v] = dx ? _mm512_maskz_loadu_ps(mk[v], dx + k0 + 16 * v) : _mm512_setzero_ps();
        }
        for (int32_t i = 0; i < n; i++) {
            const int64_t r = ids ? ids[i] : i;
            if (pf && i + pf < n) s512_prefetch_row(m, ids ? ids[i + pf] : i + pf, nx, dt);
            const __m512 gi = _mm512_set1_ps(g[i]);
            const int64_t off = r * ld + k0;
            for (int v = 0; v < S512_CHUNK; v++) {
                if (!mk[v]) break;
                if (dx) d[v] = _mm512_fmadd_ps(gi, s512_load_w(m, off + 16 * v, mk[v], dt), d[v]);
                float *gp = gW + off + 16 * v;
                _mm512_mask_storeu_ps(gp, mk[v], _mm512_fmadd_ps(gi, x[v], _mm512_maskz_loadu_ps(mk[v], gp)));
            }
            if (k0 == 0) gb[r] += g[i];
        }
        if (dx)
            for (int v = 0; v < S512_CHUNK; v++)
                if (mk[v]) _mm512_mask_storeu_ps(dx + k0 + 16 * v, mk[v], d[v]);
    }
    if (nx == 0)
        for (int32_t i = 0; i < n; i++) gb[ids ? ids[i] : i] += g[i];
}

SLIDE_T512 static void slide_bwd_rows_f32_avx512(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                 const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                 int32_t n, float *dx) {
    s512_bwd_rows(m, gW, gb, xi, xv, nx, ids, g, n, dx, SLIDE_DT_F32);
}
SLIDE_T512 static void slide_bwd_rows_bf16_avx512(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                  const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                  int32_t n, float *dx) {
    s512_bwd_rows(m, gW, gb, xi, xv, nx, ids, g, n, dx, SLIDE_DT_BF16);
}

/* ---- transposed forward ------------------------------------------------------ */

S512 void s512_fwd_cols(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,
                        int32_t n, float *z, const int dt) {
    const int64_t ld = m->ld;
    const int32_t pf = m->prefetch;
    if (!ids) {
        /* all outputs: an axpy of whole input rows into a register-resident slice of z */
        for (int32_t c0 = 0; c0 < n; c0 += 16 * S512_CHUNK) {
            __m512 acc[S512_CHUNK];
            __mmask16 mk[S512_CHUNK];
            for (int v = 0; v < S512_CHUNK; v++) {
                mk[v] = c0 + 16 * v < n ? s512_mask(n - c0 - 16 * v) : 0;
                acc[v] = _mm512_maskz_loadu_ps(mk[v], m->b + c0 + 16 * v);
            }
            for (int32_t k = 0; k < nx; k++) {
                if (pf && k + pf < nx) {
                    const int64_t pr = xi ? xi[k + pf] : k + pf;
                    const char *p = dt == SLIDE_DT_BF16 ? (const char *)(m->wb + pr * ld + c0)
                                                        : (const char *)(m->w + pr * ld + c0);
                    _mm_prefetch(p, _MM_HINT_T0);
                }
                const float xs = dt == SLIDE_DT_F32 ? xv[k] : slide_round_bf16(xv[k]);
                const __m512 x = _mm512_set1_ps(xs);
                const int64_t off = (int64_t)(xi ? xi[k] : k) * ld + c0;
                for (int v = 0; v < S512_CHUNK; v++) {
                    if (!mk[v]) break;
                    acc[v] = _mm512_fmadd_ps(x, s512_load_w(m, off + 16 * v, mk[v], dt), acc[v]);
                }
            }
            for (int v = 0; v < S512_CHUNK; v++)
                if (mk[v]) _mm512_mask_storeu_ps(z + c0 + 16 * v, mk[v], acc[v]);
        }
        return;
    }
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 mk = s512_mask(n - i);
        const __m512i idx = _mm512_maskz_loadu_epi32(mk, ids + i);
        __m512 acc = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, m->b, 4);
        for (int32_t k = 0; k < nx; k++) {
            const float xs = dt == SLIDE_DT_F32 ? xv[k] : slide_round_bf16(xv[k]);
            const int64_t roff = (int64_t)(xi ? xi[k] : k) * ld;
            acc = _mm512_fmadd_ps(_mm512_set1_ps(xs), s512_gather_w(m, roff, idx, mk, dt), acc);
        }
        _mm512_mask_storeu_ps(z + i, mk, acc);
    }
}

SLIDE_T512 static void slide_fwd_cols_f32_avx512(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                 const int32_t *ids, int32_t n, float *z) {
    s512_fwd_cols(m, xi, xv, nx, ids, n, z, SLIDE_DT_F32);
}
SLIDE_T512 static void slide_fwd_cols_bf16_avx512(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                  const int32_t *ids, int32_t n, float *z) {
    s512_fwd_cols(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16);
}
SLIDE_T512 static void slide_fwd_cols_bf16act_avx512(const slide_mat *m, const int32_t *xi, const float *xv,
                                                     int32_t nx, const int32_t *ids, int32_t n, float *z) {
    s512_fwd_cols(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16ACT);
}

/* ---- transposed backward ----------------------------------------------------- */

S512 void s512_bwd_cols(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv, int32_t nx,
                        const int32_t *ids, const float *g, int32_t n, float *dx, const int dt) {
    const int64_t ld = m->ld;
    for (int32_t k = 0; k < nx; k++) {
        const int64_t roff = (int64_t)(xi ? xi[k] : k) * ld;
        const __m512 xs = _mm512_set1_ps(xv[k]);
        float *gw = gW + roff;
        __m512 s = _mm512_setzero_ps();
        for (int32_t i = 0; i < n; i += 16) {
            const __mmask16 mk = s512_mask(n - i);
            const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
            if (ids) {
                const __m512i idx = _mm512_maskz_loadu_epi32(mk, ids + i);
                if (dx) s = _mm512_fmadd_ps(gv, s512_gather_w(m, roff, idx, mk, dt), s);
                const __m512 old = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, gw, 4);
                _mm512_mask_i32scatter_ps(gw, mk, idx, _mm512_fmadd_ps(xs, gv, old), 4);
            } else {
                if (dx) s = _mm512_fmadd_ps(gv, s512_load_w(m, roff + i, mk, dt), s);
                _mm512_mask_storeu_ps(gw + i, mk, _mm512_fmadd_ps(xs, gv, _mm512_maskz_loadu_ps(mk, gw + i)));
            }
        }
        if (dx) dx[k] += _mm512_reduce_add_ps(s);
    }
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 mk = s512_mask(n - i);
        const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        if (ids) {
            const __m512i idx = _mm512_maskz_loadu_epi32(mk, ids + i);
            const __m512 old = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, gb, 4);
            _mm512_mask_i32scatter_ps(gb, mk, idx, _mm512_add_ps(old, gv), 4);
        } else {
            _mm512_mask_storeu_ps(gb + i, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, gb + i), gv));
        }
    }
}

SLIDE_T512 static void slide_bwd_cols_f32_avx512(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                 const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                 int32_t n, float *dx) {
    s512_bwd_cols(m, gW, gb, xi, xv, nx, ids, g, n, dx, SLIDE_DT_F32);
}
SLIDE_T512 static void slide_bwd_cols_bf16_avx512(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                  const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                  int32_t n, float *dx) {
    s512_bwd_cols(m, gW, gb, xi, xv, nx, ids, g, n, dx, SLIDE_DT_BF16);
}

/* ---- Adam -------------------------------------------------------------------- */

/* fp32 -> bf16 bits (round to nearest even, NaN kept quiet), in 32-bit lanes. */
S512 __m512i s512_to_bf16_bits(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_blend_epi32(nan, rounded, quiet);
}

/* Adam's broadcast constants, set up once per call. */
typedef struct {
    __m512 b1, b2, c1, c2, lr, eps;
} s512_adam_consts;

S512 s512_adam_consts s512_adam_setup(const slide_adam_params *p) {
    s512_adam_consts c;
    c.b1 = _mm512_set1_ps(p->beta1);
    c.b2 = _mm512_set1_ps(p->beta2);
    c.c1 = _mm512_set1_ps(p->one_minus_beta1);
    c.c2 = _mm512_set1_ps(p->one_minus_beta2);
    c.lr = _mm512_set1_ps(p->lr_t);
    c.eps = _mm512_set1_ps(p->eps);
    return c;
}

/* One Adam step (slide_adam_one, lane by lane) on the columns of mask mk at
 * W, M, V with gradient g; B != NULL: the bf16 copy of those columns too. */
S512 void s512_adam_step(const s512_adam_consts *c, float *W, float *M, float *V, bf16_t *B, __m512 g,
                         __mmask16 mk) {
    const __m512 m = _mm512_add_ps(_mm512_mul_ps(c->b1, _mm512_maskz_loadu_ps(mk, M)), _mm512_mul_ps(c->c1, g));
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(c->b2, _mm512_maskz_loadu_ps(mk, V)),
                                   _mm512_mul_ps(_mm512_mul_ps(c->c2, g), g));
    const __m512 step = _mm512_div_ps(_mm512_mul_ps(c->lr, m), _mm512_add_ps(_mm512_sqrt_ps(v), c->eps));
    const __m512 w = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, W), step);
    _mm512_mask_storeu_ps(M, mk, m);
    _mm512_mask_storeu_ps(V, mk, v);
    _mm512_mask_storeu_ps(W, mk, w);
    if (B) _mm256_mask_storeu_epi16(B, mk, _mm512_cvtepi32_epi16(s512_to_bf16_bits(w)));
}

SLIDE_T512 static void slide_adam_f32_avx512(float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld,
                                             int32_t cols, const int32_t *rows, int64_t nrows,
                                             const slide_adam_params *p) {
    const s512_adam_consts c = s512_adam_setup(p);
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t off = (rows ? (int64_t)rows[i] : i) * ld;
        float *G = g + off;
        for (int32_t k = 0; k < cols; k += 16) {
            const __mmask16 mk = s512_mask(cols - k);
            s512_adam_step(&c, w + off + k, m + off + k, v + off + k, wb ? wb + off + k : NULL,
                           _mm512_maskz_loadu_ps(mk, G + k), mk);
            _mm512_mask_storeu_ps(G + k, mk, _mm512_setzero_ps());
        }
    }
}

/* Fused row backward + Adam (see kernel_api.h): per 16 columns, the entries'
 * gradient and input-gradient updates in registers, then s512_adam_step, with
 * the expressions of s512_bwd_rows and slide_adam_f32_avx512. */
SLIDE_T512 static void slide_row_adam_f32_avx512(float *w, bf16_t *wb, float *m, float *v, const float *x,
                                                 const float *H, float *dH, int64_t ldh, int32_t d,
                                                 const int32_t *ids, const float *g, int32_t n,
                                                 const slide_adam_params *p) {
    const s512_adam_consts c = s512_adam_setup(p);
    for (int32_t k = 0; k < d; k += 16) {
        const __mmask16 mk = s512_mask(d - k);
        const __m512 xk = _mm512_maskz_loadu_ps(mk, x + k); /* before w is written: x may be w */
        __m512 gk = _mm512_setzero_ps();
        for (int32_t i = 0; i < n; i++) {
            const __m512 gi = _mm512_set1_ps(g[i]);
            const int64_t o = (int64_t)ids[i] * ldh + k;
            gk = _mm512_fmadd_ps(gi, _mm512_maskz_loadu_ps(mk, H + o), gk);
            _mm512_mask_storeu_ps(dH + o, mk, _mm512_fmadd_ps(gi, xk, _mm512_maskz_loadu_ps(mk, dH + o)));
        }
        s512_adam_step(&c, w + k, m + k, v + k, wb ? wb + k : NULL, gk, mk);
    }
}

#endif
