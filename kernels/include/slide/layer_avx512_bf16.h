/* layer_avx512_bf16.h: bf16 forward dot products with AVX512_BF16
 * (_mm512_dpbf16_ps: 32 bf16 products per instruction, fp32 accumulation)
 *.
 *
 * Forward, row-major, dense input: the input is converted to bf16 once per
 * call (in blocks of SLIDE_XB elements on the stack), then every active row
 * is a sequence of dpbf16 steps over 32 elements. dtype bf16 reads the bf16
 * weight copy; bf16act converts fp32 weights on the fly (cvtne2ps_pbh).
 * Sparse inputs and the other ops fall back to the AVX-512 kernels (the
 * selector picks those for ops this header does not provide).
 */
#ifndef SLIDE_LAYER_AVX512_BF16_H
#define SLIDE_LAYER_AVX512_BF16_H

#include "layer_avx512.h"

#if defined(SLIDE_EMULATE_AVX512)
#define SLIDE_TBF16
#define SLIDE_AS_BH(v) slide_emu_as_bh(v)
#define SLIDE_AS_BH256(v) slide_emu_as_bh256(v)
#define SLIDE_BH256_AS_SI(v) slide_emu_bh256_as_si(v)
#define SLIDE_BH_AS_SI(v) slide_emu_bh_as_si(v)
#else
#define SLIDE_TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define SLIDE_AS_BH(v) ((__m512bh)(v))
#define SLIDE_AS_BH256(v) ((__m256bh)(v))
#define SLIDE_BH256_AS_SI(v) ((__m256i)(v))
#define SLIDE_BH_AS_SI(v) ((__m512i)(v))
#endif

#define SBF SLIDE_TBF16 static inline __attribute__((always_inline))
#define SLIDE_XB 2048 /* input elements converted per block (4 KiB of bf16 on the stack) */

S512 __mmask32 sbf_mask32(int32_t left) {
    return left >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << left) - 1u);
}

/* 32 weights as bf16 pairs: from the bf16 copy, or fp32 rounded on the fly. */
SBF __m512bh sbf_load_w(const slide_mat *m, int64_t off, int32_t left, const int dt) {
    if (dt == SLIDE_DT_BF16) return SLIDE_AS_BH(_mm512_maskz_loadu_epi16(sbf_mask32(left), m->wb + off));
    const __m512 lo = _mm512_maskz_loadu_ps(s512_mask(left), m->w + off);
    const __m512 hi = _mm512_maskz_loadu_ps(left > 16 ? s512_mask(left - 16) : 0, m->w + off + 16);
    return _mm512_cvtne2ps_pbh(hi, lo);
}

SBF void sbf_fwd_rows(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx, const int32_t *ids,
                      int32_t n, float *z, const int dt) {
    if (xi) { /* sparse input: the gather kernel */
        s512_fwd_rows(m, xi, xv, nx, ids, n, z, dt);
        return;
    }
    bf16_t xb[SLIDE_XB] __attribute__((aligned(64)));
    const int32_t pf = m->prefetch;
    for (int32_t k0 = 0; k0 < nx || k0 == 0; k0 += SLIDE_XB) {
        const int32_t kn = nx - k0 < SLIDE_XB ? nx - k0 : SLIDE_XB;
        for (int32_t k = 0; k < kn; k += 32) {
            const int32_t left = kn - k;
            const __m512 lo = _mm512_maskz_loadu_ps(s512_mask(left), xv + k0 + k);
            const __m512 hi = _mm512_maskz_loadu_ps(left > 16 ? s512_mask(left - 16) : 0, xv + k0 + k + 16);
            _mm512_storeu_si512((void *)(xb + k), SLIDE_BH_AS_SI(_mm512_cvtne2ps_pbh(hi, lo)));
        }
        int32_t i = 0;
        for (; i < n; i += 4) {
            const int R = n - i >= 4 ? 4 : n - i;
            int64_t r[4] = {0, 0, 0, 0};
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int j = 0; j < R; j++) r[j] = ids ? ids[i + j] : i + j;
            if (pf && k0 == 0)
                for (int j = 0; j < 4; j++)
                    if (i + pf + j < n) s512_prefetch_row(m, ids ? ids[i + pf + j] : i + pf + j, nx, dt);
            for (int32_t k = 0; k < kn; k += 32) {
                const __m512bh x = SLIDE_AS_BH(_mm512_loadu_si512((const void *)(xb + k)));
                for (int j = 0; j < R; j++)
                    acc[j] = _mm512_dpbf16_ps(acc[j], sbf_load_w(m, r[j] * m->ld + k0 + k, kn - k, dt), x);
            }
            for (int j = 0; j < R; j++) {
                const float s = _mm512_reduce_add_ps(acc[j]);
                z[i + j] = k0 == 0 ? s + m->b[r[j]] : z[i + j] + s;
            }
        }
        if (nx == 0) break;
    }
}

SLIDE_TBF16 static void slide_fwd_rows_bf16_avx512_bf16(const slide_mat *m, const int32_t *xi, const float *xv,
                                                        int32_t nx, const int32_t *ids, int32_t n, float *z) {
    sbf_fwd_rows(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16);
}
SLIDE_TBF16 static void slide_fwd_rows_bf16act_avx512_bf16(const slide_mat *m, const int32_t *xi, const float *xv,
                                                           int32_t nx, const int32_t *ids, int32_t n, float *z) {
    sbf_fwd_rows(m, xi, xv, nx, ids, n, z, SLIDE_DT_BF16ACT);
}

/* No Adam here: _mm512_cvtneps_pbh flushes denormals to zero, while the
 * scalar kernel rounds them, so the bf16 copy would differ; the AVX-512
 * Adam's integer rounding is bitwise identical to scalar and just as fast. */

#endif
