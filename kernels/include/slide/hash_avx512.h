/* hash_avx512.h: DWTA / WTA over a dense vector with AVX-512, bins of 8:
 * two bins per 16-lane gather, the per-bin maximum by permute/shuffle+max
 * within each 256-bit half, the winner as the lowest set bit of each half of
 * the equality mask (the scalar tie rule). Other cases run the scalar code.
 */
#ifndef SLIDE_HASH_AVX512_H
#define SLIDE_HASH_AVX512_H

#include "hash_scalar.h"
#include "layer_avx512.h" /* target macro, intrinsics or their emulation */

SLIDE_T512 static void slide_wta8_dense_avx512(const slide_hasher *hs, const float *x, int skip_zeros, float *best,
                                                int32_t *arg) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512 zero = _mm512_setzero_ps();
    for (int32_t h = 0; h < hs->H; h += 2) {
        const __mmask16 live = h + 1 < hs->H ? (__mmask16)0xffff : (__mmask16)0x00ff;
        const __m512i idx = _mm512_maskz_loadu_epi32(live, hs->coord_of_slot + (int64_t)h * 8);
        const __m512 v = _mm512_mask_i32gather_ps(zero, live, idx, x, 4);
        const __mmask16 nz = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ); /* NaN counts as present */
        const __mmask16 present = (__mmask16)((skip_zeros ? nz : 0xffff) & live);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        const __m512 vv = _mm512_mask_blend_ps(present, ninf, v);
        __m512 m = _mm512_max_ps(vv, _mm512_permute_ps(vv, 0xB1));
        m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4E));
        m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xB1));
        const __mmask16 eq = (__mmask16)(_mm512_cmp_ps_mask(vv, m, _CMP_EQ_OQ) & present);
        float mv[16];
        _mm512_storeu_ps(mv, m);
        for (int j = 0; j < 2 && h + j < hs->H; j++) {
            const unsigned sh = 8u * (unsigned)j;
            if (((unsigned)nan >> sh) & 0xffu) { /* NaN: order-dependent, as scalar */
                slide_wta_bin_scalar(hs, x, skip_zeros, h + j, best, arg);
            } else if (!(((unsigned)present >> sh) & 0xffu)) {
                best[h + j] = -INFINITY;
                arg[h + j] = -1;
            } else {
                best[h + j] = mv[8 * j];
                arg[h + j] = __builtin_ctz(((unsigned)eq >> sh) & 0xffu); /* the first maximum */
            }
        }
    }
}

SLIDE_T512 static void slide_hash_avx512(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi,
                                         const float *xv, int32_t nx, uint32_t *out) {
    if (xi || hs->bin_size != 8 || (hs->family != SLIDE_HASH_DWTA && hs->family != SLIDE_HASH_WTA)) {
        slide_hash_scalar(hs, sc, xi, xv, nx, out);
        return;
    }
    const int dwta = hs->family == SLIDE_HASH_DWTA;
    slide_wta8_dense_avx512(hs, xv, dwta, sc->best, sc->arg);
    for (int32_t h = 0; h < hs->H; h++) out[h] = sc->arg[h] < 0 ? 0u : (uint32_t)sc->arg[h];
    if (dwta) slide_densify(hs, sc->arg, out);
}

#endif
