/* STREAM-style triad a[i] = b[i] + s * c[i] over float64, one pass: the
 * memory-bandwidth roof the workbench compares kernels against. SSE2 is part
 * of the x86-64 baseline, so this needs no CPU check; two independent vectors
 * per iteration keep enough loads in flight to reach DRAM bandwidth although
 * the extension is built without auto-vectorisation. Plain stores (STREAM's
 * convention counts 24 B per element; the write-allocate read of a makes 32). */
#ifndef SLIDE_TRIAD_H
#define SLIDE_TRIAD_H

#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void slide_triad_f64(double *a, const double *b, const double *c, double s, int64_t n)
{
    int64_t i = 0;
#if defined(__SSE2__)
    const __m128d vs = _mm_set1_pd(s);
    for (; i + 4 <= n; i += 4) {
        __m128d c0 = _mm_loadu_pd(c + i), c1 = _mm_loadu_pd(c + i + 2);
        __m128d b0 = _mm_loadu_pd(b + i), b1 = _mm_loadu_pd(b + i + 2);
        _mm_storeu_pd(a + i, _mm_add_pd(b0, _mm_mul_pd(vs, c0)));
        _mm_storeu_pd(a + i + 2, _mm_add_pd(b1, _mm_mul_pd(vs, c1)));
    }
#endif
    for (; i < n; i++)
        a[i] = b[i] + s * c[i];
}

#endif
