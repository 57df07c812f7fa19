/* scan.h: count the NaN/inf values of a float32 array (exponent bits all
 * ones), at memory speed. SSE2 is part of the x86-64 baseline, so this needs
 * no CPU check; the extension is built without auto-vectorisation, hence the
 * explicit vectors. The network runs it over every parameter array at each
 * rehash, which reads ~1 GB on the Amazon-670K shape. */
#ifndef SLIDE_SCAN_H
#define SLIDE_SCAN_H

#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline int64_t slide_count_nonfinite_f32(const uint32_t *u, int64_t n)
{
    int64_t bad = 0, i = 0;
#if defined(__SSE2__)
    const __m128i ex = _mm_set1_epi32(0x7f800000);
    while (i + 8 <= n) {
        /* lanes count down by one per non-finite value; flushed before they can wrap */
        __m128i c0 = _mm_setzero_si128(), c1 = _mm_setzero_si128();
        const int64_t stop = i + ((n - i) / 8 < (1 << 20) ? (n - i) / 8 : (1 << 20)) * 8;
        for (; i < stop; i += 8) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(u + i));
            const __m128i b = _mm_loadu_si128((const __m128i *)(u + i + 4));
            c0 = _mm_add_epi32(c0, _mm_cmpeq_epi32(_mm_and_si128(a, ex), ex));
            c1 = _mm_add_epi32(c1, _mm_cmpeq_epi32(_mm_and_si128(b, ex), ex));
        }
        int32_t lanes[8];
        _mm_storeu_si128((__m128i *)lanes, c0);
        _mm_storeu_si128((__m128i *)(lanes + 4), c1);
        for (int k = 0; k < 8; k++) bad -= lanes[k];
    }
#endif
    for (; i < n; i++) bad += (u[i] & 0x7f800000u) == 0x7f800000u;
    return bad;
}

#endif
