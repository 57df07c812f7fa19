/* hash_avx2.h: DWTA / WTA over a dense vector with AVX2, bins of 8.
 *
 * One bin is one 8-lane gather of its coordinates; the maximum comes from
 * three permute+max steps and the winning slot is the lowest set bit of the
 * equality mask, which is exactly the scalar kernel's tie rule (first
 * maximum). DWTA treats zeros as absent (they become -inf; an all-zero bin is
 * empty and densified). Other families, sparse inputs and other bin sizes
 * run the scalar code.
 */
#ifndef SLIDE_HASH_AVX2_H
#define SLIDE_HASH_AVX2_H

#include <immintrin.h>

#include "hash_scalar.h"

#define SLIDE_THASH2 __attribute__((target("avx2,fma,f16c")))

SLIDE_THASH2 static void slide_wta8_dense_avx2(const slide_hasher *hs, const float *x, int skip_zeros, float *best,
                                                int32_t *arg) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256 zero = _mm256_setzero_ps();
    for (int32_t h = 0; h < hs->H; h++) {
        const __m256i idx = _mm256_loadu_si256((const __m256i *)(hs->coord_of_slot + (int64_t)h * 8));
        const __m256 v = _mm256_i32gather_ps(x, idx, 4);
        /* present slots: every slot for WTA, non-zero ones (NaN included) for DWTA */
        const int present = skip_zeros ? _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)) : 0xff;
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) { /* NaN: order-dependent, as scalar */
            slide_wta_bin_scalar(hs, x, skip_zeros, h, best, arg);
            continue;
        }
        if (!present) {
            best[h] = -INFINITY;
            arg[h] = -1;
            continue;
        }
        const __m256 vv = skip_zeros ? _mm256_blendv_ps(ninf, v, _mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)) : v;
        __m256 m = _mm256_max_ps(vv, _mm256_permute_ps(vv, 0xB1));
        m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
        m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
        const int eq = _mm256_movemask_ps(_mm256_cmp_ps(vv, m, _CMP_EQ_OQ)) & present;
        best[h] = _mm256_cvtss_f32(m);
        arg[h] = __builtin_ctz((unsigned)eq); /* the first maximum, as scalar */
    }
}

SLIDE_THASH2 static void slide_hash_avx2(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi,
                                         const float *xv, int32_t nx, uint32_t *out) {
    if (xi || hs->bin_size != 8 || (hs->family != SLIDE_HASH_DWTA && hs->family != SLIDE_HASH_WTA)) {
        slide_hash_scalar(hs, sc, xi, xv, nx, out);
        return;
    }
    const int dwta = hs->family == SLIDE_HASH_DWTA;
    slide_wta8_dense_avx2(hs, xv, dwta, sc->best, sc->arg);
    for (int32_t h = 0; h < hs->H; h++) out[h] = sc->arg[h] < 0 ? 0u : (uint32_t)sc->arg[h];
    if (dwta) slide_densify(hs, sc->arg, out);
}

/* Eight rows at a time, one row per lane: the rows are transposed into a
 * (dim x 8) block, so every slot of a bin is one contiguous load for all
 * eight rows and the running maximum is a lane-wise compare-and-blend — no
 * gathers. The update rule is the scalar one exactly (the first present
 * value is taken, later ones only when strictly greater), NaN included. */
SLIDE_THASH2 static void slide_hash_rows_avx2(const slide_hasher *hs, slide_hash_scratch *sc, const float *w,
                                              int64_t ld, int32_t j0, int32_t j1, uint32_t *out) {
    const int wta_family = hs->family == SLIDE_HASH_DWTA || hs->family == SLIDE_HASH_WTA;
    if (!wta_family || hs->bin_size != 8 || hs->dim > 1024) {
        slide_hash_rows_scalar(hs, sc, w, ld, j0, j1, out);
        return;
    }
    const int skip = hs->family == SLIDE_HASH_DWTA;
    const int32_t dim = hs->dim, H = hs->H;
    float tb[1024 * 8] __attribute__((aligned(32))); /* 32 KiB */
    int32_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        int32_t c = 0;
        for (; c + 8 <= dim; c += 8) { /* 8x8 transpose: rows j..j+7, columns c..c+7 */
            __m256 r0 = _mm256_loadu_ps(w + (int64_t)(j + 0) * ld + c), r1 = _mm256_loadu_ps(w + (int64_t)(j + 1) * ld + c);
            __m256 r2 = _mm256_loadu_ps(w + (int64_t)(j + 2) * ld + c), r3 = _mm256_loadu_ps(w + (int64_t)(j + 3) * ld + c);
            __m256 r4 = _mm256_loadu_ps(w + (int64_t)(j + 4) * ld + c), r5 = _mm256_loadu_ps(w + (int64_t)(j + 5) * ld + c);
            __m256 r6 = _mm256_loadu_ps(w + (int64_t)(j + 6) * ld + c), r7 = _mm256_loadu_ps(w + (int64_t)(j + 7) * ld + c);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            _mm256_store_ps(tb + (c + 0) * 8, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_store_ps(tb + (c + 1) * 8, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_store_ps(tb + (c + 2) * 8, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_store_ps(tb + (c + 3) * 8, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_store_ps(tb + (c + 4) * 8, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_store_ps(tb + (c + 5) * 8, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_store_ps(tb + (c + 6) * 8, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_store_ps(tb + (c + 7) * 8, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; c < dim; c++)
            for (int r = 0; r < 8; r++) tb[c * 8 + r] = w[(int64_t)(j + r) * ld + c];
        const __m256 zero = _mm256_setzero_ps();
        /* Fast path: no NaN in the block, and for DWTA no zero either (trained
         * weights): every slot is present, so the scalar rule reduces to "the
         * first slot, then any strictly greater one" and no bin is empty. */
        __m256 odd = _mm256_setzero_ps();
        for (c = 0; c < dim; c++) {
            const __m256 v = _mm256_load_ps(tb + c * 8);
            odd = _mm256_or_ps(odd, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            if (skip) odd = _mm256_or_ps(odd, _mm256_cmp_ps(v, zero, _CMP_EQ_OQ));
        }
        if (!_mm256_movemask_ps(odd)) {
            int32_t tmp[256 * 8] __attribute__((aligned(32))); /* 8 KiB: bins h0..h0+255 of the 8 rows */
            for (int32_t h0 = 0; h0 < H; h0 += 256) {
                const int32_t nh = H - h0 < 256 ? H - h0 : 256;
                for (int32_t h = 0; h < nh; h++) {
                    const int32_t *cs = hs->coord_of_slot + (int64_t)(h0 + h) * 8;
                    __m256 best = _mm256_load_ps(tb + cs[0] * 8);
                    __m256 arg = _mm256_setzero_ps();
                    for (int s = 1; s < 8; s++) {
                        const __m256 v = _mm256_load_ps(tb + cs[s] * 8);
                        const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
                        best = _mm256_max_ps(best, v);
                        arg = _mm256_blendv_ps(arg, _mm256_castsi256_ps(_mm256_set1_epi32(s)), gt);
                    }
                    _mm256_store_ps((float *)(tmp + h * 8), arg);
                }
                for (int r = 0; r < 8; r++) {
                    uint32_t *o = out + (int64_t)(j - j0 + r) * H + h0;
                    for (int32_t h = 0; h < nh; h++) o[h] = (uint32_t)tmp[h * 8 + r];
                }
            }
            continue;
        }
        int32_t argv[8] __attribute__((aligned(32)));
        for (int32_t h = 0; h < H; h++) {
            const int32_t *cs = hs->coord_of_slot + (int64_t)h * 8;
            __m256 best = _mm256_set1_ps(-INFINITY);
            __m256i arg = _mm256_set1_epi32(-1);
            for (int s = 0; s < 8; s++) {
                const __m256 v = _mm256_load_ps(tb + cs[s] * 8);
                const __m256i empty = _mm256_cmpgt_epi32(_mm256_setzero_si256(), arg);
                __m256 take = _mm256_or_ps(_mm256_castsi256_ps(empty), _mm256_cmp_ps(v, best, _CMP_GT_OQ));
                if (skip) take = _mm256_and_ps(take, _mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
                best = _mm256_blendv_ps(best, v, take);
                arg = _mm256_castps_si256(
                    _mm256_blendv_ps(_mm256_castsi256_ps(arg), _mm256_castsi256_ps(_mm256_set1_epi32(s)), take));
            }
            _mm256_store_si256((__m256i *)argv, arg);
            for (int r = 0; r < 8; r++) {
                uint32_t *o = out + (int64_t)(j - j0 + r) * H;
                o[h] = argv[r] < 0 ? 0u : (uint32_t)argv[r];
                /* densification needs the empty marks: keep them in the sign bit for now */
                if (argv[r] < 0) o[h] = 0x80000000u;
            }
        }
        if (skip) {
            for (int r = 0; r < 8; r++) {
                uint32_t *o = out + (int64_t)(j - j0 + r) * H;
                int any_empty = 0;
                for (int32_t h = 0; h < H; h++) {
                    sc->arg[h] = (o[h] & 0x80000000u) ? -1 : (int32_t)o[h];
                    any_empty |= sc->arg[h] < 0;
                    if (sc->arg[h] < 0) o[h] = 0;
                }
                if (any_empty) slide_densify(hs, sc->arg, o);
            }
        }
    }
    if (j < j1) slide_hash_rows_scalar(hs, sc, w, ld, j, j1, out + (int64_t)(j - j0) * H);
}

#endif
