/* layer_avx2.h: layer forward/backward and Adam with AVX2 + FMA intrinsics
 * (8 lanes), for the many CPUs without AVX-512 (AMD Zen 1-3, Intel Haswell
 * to Comet Lake). Same structure and semantics as layer_avx512.h.
 *
 * AVX2 has masked 32-bit loads/stores and gathers but no masked 16-bit
 * access and no scatter: bf16 rows are read in whole 8-element groups (rows
 * are padded to a multiple of 16 elements with zeros, so this stays inside
 * the row), the bf16 tail of Adam is written element by element, and
 * scatter-adds are scalar loops.
 */
#ifndef SLIDE_LAYER_AVX2_H
#define SLIDE_LAYER_AVX2_H

#include <immintrin.h>

#include "kernel_api.h"

#define SLIDE_TAVX2 __attribute__((target("avx2,fma,f16c")))
#define SA2 SLIDE_TAVX2 static inline __attribute__((always_inline))

#define A2_F32 0
#define A2_BF16 1
#define A2_BF16ACT 2

/* ---- helpers ---------------------------------------------------------------- */

SA2 __m256i a2_mask(int32_t left) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 8 ? left : 8), iota);
}

/* Full vectors use plain loads and stores; only a tail goes through
 * vmaskmov, whose stores are microcoded and slow on AMD Zen. */
SA2 __m256 a2_ld(const float *p, __m256i mk, int32_t left) {
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mk);
}
SA2 void a2_st(float *p, __m256i mk, int32_t left, __m256 v) {
    if (left >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, mk, v);
}
SA2 __m256i a2_ldi(const int32_t *p, __m256i mk, int32_t left) {
    return left >= 8 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32((const int *)p, mk);
}

SA2 __m256 a2_round_bf16(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xffff0000u)));
}

SA2 __m256 a2_bf16_to_f32(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 weights at element `off`; masked lanes read as zero. bf16 reads the whole
 * group (inside the padded row) and zeroes masked lanes afterwards. */
SA2 __m256 a2_load_w(const slide_mat *m, int64_t off, __m256i mk, int32_t left, const int dt) {
    if (dt == A2_BF16) {
        const __m256 w = a2_bf16_to_f32(_mm_loadu_si128((const __m128i *)(m->wb + off)));
        return left >= 8 ? w : _mm256_and_ps(w, _mm256_castsi256_ps(mk));
    }
    const __m256 w = a2_ld(m->w + off, mk, left);
    return dt == A2_BF16ACT ? a2_round_bf16(w) : w;
}

SA2 __m256 a2_gather_w(const slide_mat *m, int64_t roff, __m256i idx, __m256i mk, const int dt) {
    if (dt == A2_BF16) {
        const __m256i v = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(m->wb + roff), idx, mk, 2);
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    const __m256 w = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), m->w + roff, idx, _mm256_castsi256_ps(mk), 4);
    return dt == A2_BF16ACT ? a2_round_bf16(w) : w;
}

SA2 __m256 a2_load_x(const float *x, __m256i mk, int32_t left, const int dt) {
    const __m256 v = a2_ld(x, mk, left);
    return dt == A2_F32 ? v : a2_round_bf16(v);
}

SA2 float a2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SA2 void a2_prefetch_row(const slide_mat *m, int64_t r, int32_t width, const int dt) {
    const char *p = dt == A2_BF16 ? (const char *)(m->wb + r * m->ld) : (const char *)(m->w + r * m->ld);
    const int64_t bytes = (int64_t)width * (dt == A2_BF16 ? 2 : 4);
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

/* ---- row-major forward ------------------------------------------------------- */

SA2 void a2_dot_rows(const slide_mat *m, const int64_t *roff, const int R, const int32_t *xi, const float *xv,
                     int32_t nx, float *out, const int dt) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int32_t k = 0; k < nx; k += 8) {
        const int32_t left = nx - k;
        const __m256i mk = a2_mask(left);
        const __m256 x = a2_load_x(xv + k, mk, left, dt);
        if (xi) {
            const __m256i idx = a2_ldi(xi + k, mk, left);
            for (int j = 0; j < R; j++) acc[j] = _mm256_fmadd_ps(a2_gather_w(m, roff[j], idx, mk, dt), x, acc[j]);
        } else {
            for (int j = 0; j < R; j++) acc[j] = _mm256_fmadd_ps(a2_load_w(m, roff[j] + k, mk, left, dt), x, acc[j]);
        }
    }
    for (int j = 0; j < R; j++) out[j] = a2_hsum(acc[j]);
}

/* One dense row's dot product with two accumulators (even and odd groups of
 * 8): half the dependent FMA chain of a2_dot_rows with R = 1, which matters
 * where a call has only one or two rows (the batched strategy's union rows). */
SA2 float a2_dot_row2(const slide_mat *m, int64_t off, const float *xv, int32_t nx, const int dt) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int32_t k = 0;
    for (; k + 16 <= nx; k += 16) {
        const __m256i all = _mm256_set1_epi32(-1);
        a0 = _mm256_fmadd_ps(a2_load_w(m, off + k, all, 8, dt), a2_load_x(xv + k, all, 8, dt), a0);
        a1 = _mm256_fmadd_ps(a2_load_w(m, off + k + 8, all, 8, dt), a2_load_x(xv + k + 8, all, 8, dt), a1);
    }
    for (; k < nx; k += 8) {
        const int32_t left = nx - k;
        const __m256i mk = a2_mask(left);
        a0 = _mm256_fmadd_ps(a2_load_w(m, off + k, mk, left, dt), a2_load_x(xv + k, mk, left, dt), a0);
    }
    return a2_hsum(_mm256_add_ps(a0, a1));
}

SA2 void a2_fwd_rows(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,
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
                if (i + pf + j < n) a2_prefetch_row(m, ids ? ids[i + pf + j] : i + pf + j, nx, dt);
        float s[4];
        a2_dot_rows(m, off, 4, xi, xv, nx, s, dt);
        for (int j = 0; j < 4; j++) z[i + j] = s[j] + m->b[r[j]];
    }
    for (; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const int64_t off = r * m->ld;
        float s;
        if (xi)
            a2_dot_rows(m, &off, 1, xi, xv, nx, &s, dt);
        else
            s = a2_dot_row2(m, off, xv, nx, dt);
        z[i] = s + m->b[r];
    }
}

SLIDE_TAVX2 static void slide_fwd_rows_f32_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                               const int32_t *ids, int32_t n, float *z) {
    a2_fwd_rows(m, xi, xv, nx, ids, n, z, A2_F32);
}
SLIDE_TAVX2 static void slide_fwd_rows_bf16_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                const int32_t *ids, int32_t n, float *z) {
    a2_fwd_rows(m, xi, xv, nx, ids, n, z, A2_BF16);
}
SLIDE_TAVX2 static void slide_fwd_rows_bf16act_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                   const int32_t *ids, int32_t n, float *z) {
    a2_fwd_rows(m, xi, xv, nx, ids, n, z, A2_BF16ACT);
}

/* ---- row-major backward ------------------------------------------------------ */

SA2 void a2_bwd_rows(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv, int32_t nx,
                     const int32_t *ids, const float *g, int32_t n, float *dx, const int dt) {
    const int64_t ld = m->ld;
    const int32_t pf = m->prefetch;
    for (int32_t i = 0; i < n; i++) {
        const int64_t r = ids ? ids[i] : i;
        const float gs = g[i];
        const __m256 gi = _mm256_set1_ps(gs);
        float *gw = gW + r * ld;
        if (xi) {
            for (int32_t k = 0; k < nx; k += 8) {
                const int32_t left = nx - k;
                const __m256i mk = a2_mask(left);
                const __m256i idx = a2_ldi(xi + k, mk, left);
                if (dx) {
                    const __m256 w = a2_gather_w(m, r * ld, idx, mk, dt);
                    a2_st(dx + k, mk, left, _mm256_fmadd_ps(gi, w, a2_ld(dx + k, mk, left)));
                }
            }
            for (int32_t k = 0; k < nx; k++) gw[xi[k]] += gs * xv[k]; /* no scatter in AVX2 */
        } else {
            if (pf && i + pf < n) a2_prefetch_row(m, ids ? ids[i + pf] : i + pf, nx, dt);
            for (int32_t k = 0; k < nx; k += 8) {
                const int32_t left = nx - k;
                const __m256i mk = a2_mask(left);
                if (dx) {
                    const __m256 w = a2_load_w(m, r * ld + k, mk, left, dt);
                    a2_st(dx + k, mk, left, _mm256_fmadd_ps(gi, w, a2_ld(dx + k, mk, left)));
                }
                const __m256 x = a2_ld(xv + k, mk, left);
                a2_st(gw + k, mk, left, _mm256_fmadd_ps(gi, x, a2_ld(gw + k, mk, left)));
            }
        }
        gb[r] += gs;
    }
}

SLIDE_TAVX2 static void slide_bwd_rows_f32_avx2(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                               const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                               int32_t n, float *dx) {
    a2_bwd_rows(m, gW, gb, xi, xv, nx, ids, g, n, dx, A2_F32);
}
SLIDE_TAVX2 static void slide_bwd_rows_bf16_avx2(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                int32_t n, float *dx) {
    a2_bwd_rows(m, gW, gb, xi, xv, nx, ids, g, n, dx, A2_BF16);
}

/* ---- transposed forward ------------------------------------------------------ */

#define A2_CHUNK 8 /* vectors of z kept in registers: 64 floats */

SA2 void a2_fwd_cols(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,
                     int32_t n, float *z, const int dt) {
    const int64_t ld = m->ld;
    const int32_t pf = m->prefetch;
    if (!ids) {
        for (int32_t c0 = 0; c0 < n; c0 += 8 * A2_CHUNK) {
            __m256 acc[A2_CHUNK];
            __m256i mk[A2_CHUNK];
            int32_t lf[A2_CHUNK];
            int nv = 0;
            for (int v = 0; v < A2_CHUNK && c0 + 8 * v < n; v++, nv++) {
                lf[v] = n - c0 - 8 * v;
                mk[v] = a2_mask(lf[v]);
                acc[v] = a2_ld(m->b + c0 + 8 * v, mk[v], lf[v]);
            }
            for (int32_t k = 0; k < nx; k++) {
                if (pf && k + pf < nx) {
                    const int64_t pr = xi ? xi[k + pf] : k + pf;
                    _mm_prefetch(dt == A2_BF16 ? (const char *)(m->wb + pr * ld + c0) : (const char *)(m->w + pr * ld + c0),
                                 _MM_HINT_T0);
                }
                const __m256 x = _mm256_set1_ps(dt == A2_F32 ? xv[k] : slide_round_bf16(xv[k]));
                const int64_t off = (int64_t)(xi ? xi[k] : k) * ld + c0;
                for (int v = 0; v < nv; v++)
                    acc[v] = _mm256_fmadd_ps(x, a2_load_w(m, off + 8 * v, mk[v], lf[v], dt), acc[v]);
            }
            for (int v = 0; v < nv; v++) a2_st(z + c0 + 8 * v, mk[v], lf[v], acc[v]);
        }
        return;
    }
    for (int32_t i = 0; i < n; i += 8) {
        const int32_t left = n - i;
        const __m256i mk = a2_mask(left);
        const __m256i idx = a2_ldi(ids + i, mk, left);
        __m256 acc = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), m->b, idx, _mm256_castsi256_ps(mk), 4);
        for (int32_t k = 0; k < nx; k++) {
            const float xs = dt == A2_F32 ? xv[k] : slide_round_bf16(xv[k]);
            const int64_t roff = (int64_t)(xi ? xi[k] : k) * ld;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(xs), a2_gather_w(m, roff, idx, mk, dt), acc);
        }
        a2_st(z + i, mk, left, acc);
    }
}

SLIDE_TAVX2 static void slide_fwd_cols_f32_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                               const int32_t *ids, int32_t n, float *z) {
    a2_fwd_cols(m, xi, xv, nx, ids, n, z, A2_F32);
}
SLIDE_TAVX2 static void slide_fwd_cols_bf16_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                const int32_t *ids, int32_t n, float *z) {
    a2_fwd_cols(m, xi, xv, nx, ids, n, z, A2_BF16);
}
SLIDE_TAVX2 static void slide_fwd_cols_bf16act_avx2(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                                   const int32_t *ids, int32_t n, float *z) {
    a2_fwd_cols(m, xi, xv, nx, ids, n, z, A2_BF16ACT);
}

/* ---- transposed backward ----------------------------------------------------- */

SA2 void a2_bwd_cols(const slide_mat *m, float *gW, float *gb, const int32_t *xi, const float *xv, int32_t nx,
                     const int32_t *ids, const float *g, int32_t n, float *dx, const int dt) {
    const int64_t ld = m->ld;
    for (int32_t k = 0; k < nx; k++) {
        const int64_t roff = (int64_t)(xi ? xi[k] : k) * ld;
        const float xk = xv[k];
        const __m256 xs = _mm256_set1_ps(xk);
        float *gw = gW + roff;
        if (ids) {
            if (dx) {
                __m256 s = _mm256_setzero_ps();
                for (int32_t i = 0; i < n; i += 8) {
                    const int32_t left = n - i;
                    const __m256i mk = a2_mask(left);
                    const __m256i idx = a2_ldi(ids + i, mk, left);
                    s = _mm256_fmadd_ps(a2_ld(g + i, mk, left), a2_gather_w(m, roff, idx, mk, dt), s);
                }
                dx[k] += a2_hsum(s);
            }
            for (int32_t i = 0; i < n; i++) gw[ids[i]] += xk * g[i];
        } else {
            __m256 s = _mm256_setzero_ps();
            for (int32_t i = 0; i < n; i += 8) {
                const int32_t left = n - i;
                const __m256i mk = a2_mask(left);
                const __m256 gv = a2_ld(g + i, mk, left);
                if (dx) s = _mm256_fmadd_ps(gv, a2_load_w(m, roff + i, mk, left, dt), s);
                a2_st(gw + i, mk, left, _mm256_fmadd_ps(xs, gv, a2_ld(gw + i, mk, left)));
            }
            if (dx) dx[k] += a2_hsum(s);
        }
    }
    if (ids) {
        for (int32_t i = 0; i < n; i++) gb[ids[i]] += g[i];
    } else {
        for (int32_t i = 0; i < n; i += 8) {
            const int32_t left = n - i;
            const __m256i mk = a2_mask(left);
            a2_st(gb + i, mk, left, _mm256_add_ps(a2_ld(gb + i, mk, left), a2_ld(g + i, mk, left)));
        }
    }
}

SLIDE_TAVX2 static void slide_bwd_cols_f32_avx2(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                               const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                               int32_t n, float *dx) {
    a2_bwd_cols(m, gW, gb, xi, xv, nx, ids, g, n, dx, A2_F32);
}
SLIDE_TAVX2 static void slide_bwd_cols_bf16_avx2(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                                const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                                int32_t n, float *dx) {
    a2_bwd_cols(m, gW, gb, xi, xv, nx, ids, g, n, dx, A2_BF16);
}

/* ---- Adam -------------------------------------------------------------------- */

SA2 __m256i a2_to_bf16_bits(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet), nan));
}

/* Adam's broadcast constants, set up once per call. */
typedef struct {
    __m256 b1, b2, c1, c2, lr, eps;
} a2_adam_consts;

SA2 a2_adam_consts a2_adam_setup(const slide_adam_params *p) {
    a2_adam_consts c;
    c.b1 = _mm256_set1_ps(p->beta1);
    c.b2 = _mm256_set1_ps(p->beta2);
    c.c1 = _mm256_set1_ps(p->one_minus_beta1);
    c.c2 = _mm256_set1_ps(p->one_minus_beta2);
    c.lr = _mm256_set1_ps(p->lr_t);
    c.eps = _mm256_set1_ps(p->eps);
    return c;
}

/* One Adam step (slide_adam_one, lane by lane) on the 8 columns (or the
 * `left` < 8 of a tail) at W, M, V with gradient g; B != NULL: the bf16 copy
 * of the same columns is rewritten too. */
SA2 void a2_adam_step(const a2_adam_consts *c, float *W, float *M, float *V, bf16_t *B, __m256 g, __m256i mk,
                      int32_t left) {
    const __m256 m = _mm256_add_ps(_mm256_mul_ps(c->b1, a2_ld(M, mk, left)), _mm256_mul_ps(c->c1, g));
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(c->b2, a2_ld(V, mk, left)), _mm256_mul_ps(_mm256_mul_ps(c->c2, g), g));
    const __m256 step = _mm256_div_ps(_mm256_mul_ps(c->lr, m), _mm256_add_ps(_mm256_sqrt_ps(v), c->eps));
    const __m256 w = _mm256_sub_ps(a2_ld(W, mk, left), step);
    a2_st(M, mk, left, m);
    a2_st(V, mk, left, v);
    a2_st(W, mk, left, w);
    if (B) {
        const __m256i bits = a2_to_bf16_bits(w);
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0xD8);
        if (left >= 8) {
            _mm_storeu_si128((__m128i *)B, _mm256_castsi256_si128(packed));
        } else {
            bf16_t tmp[8];
            _mm_storeu_si128((__m128i *)tmp, _mm256_castsi256_si128(packed));
            for (int32_t q = 0; q < left; q++) B[q] = tmp[q];
        }
    }
}

SLIDE_TAVX2 static void slide_adam_f32_avx2(float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld,
                                           int32_t cols, const int32_t *rows, int64_t nrows,
                                           const slide_adam_params *p) {
    const a2_adam_consts c = a2_adam_setup(p);
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t off = (rows ? (int64_t)rows[i] : i) * ld;
        float *G = g + off;
        for (int32_t k = 0; k < cols; k += 8) {
            const int32_t left = cols - k;
            const __m256i mk = a2_mask(left);
            a2_adam_step(&c, w + off + k, m + off + k, v + off + k, wb ? wb + off + k : NULL, a2_ld(G + k, mk, left),
                         mk, left);
            a2_st(G + k, mk, left, _mm256_setzero_ps());
        }
    }
}

/* Fused row backward + Adam (see kernel_api.h): per 8 columns, the entries'
 * gradient and input-gradient updates in registers, then a2_adam_step, with
 * the expressions of a2_bwd_rows and slide_adam_f32_avx2. */
SLIDE_TAVX2 static void slide_row_adam_f32_avx2(float *w, bf16_t *wb, float *m, float *v, const float *x,
                                               const float *H, float *dH, int64_t ldh, int32_t d,
                                               const int32_t *ids, const float *g, int32_t n,
                                               const slide_adam_params *p) {
    const a2_adam_consts c = a2_adam_setup(p);
    for (int32_t k = 0; k < d; k += 8) {
        const int32_t left = d - k;
        const __m256i mk = a2_mask(left);
        const __m256 xk = a2_ld(x + k, mk, left); /* before w is written: x may be w */
        __m256 gk = _mm256_setzero_ps();
        for (int32_t i = 0; i < n; i++) {
            const __m256 gi = _mm256_set1_ps(g[i]);
            const int64_t o = (int64_t)ids[i] * ldh + k;
            gk = _mm256_fmadd_ps(gi, a2_ld(H + o, mk, left), gk);
            a2_st(dH + o, mk, left, _mm256_fmadd_ps(gi, xk, a2_ld(dH + o, mk, left)));
        }
        a2_adam_step(&c, w + k, m + k, v + k, wb ? wb + k : NULL, gk, mk, left);
    }
}

#endif
