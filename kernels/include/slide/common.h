/* common.h: types, the counter-based RNG, bf16 conversions (scalar) and
 * small helpers shared by every kernel header.
 *
 * Everything here is compiled for the baseline ISA. Nothing in this header may
 * use an instruction beyond x86-64 baseline (SSE2): ISA-specific code lives in
 * the <family>_<isa>.h headers under a target attribute.
 */
#ifndef SLIDE_COMMON_H
#define SLIDE_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SLIDE_INLINE static inline __attribute__((always_inline))
#define SLIDE_RESTRICT __restrict__

typedef uint16_t bf16_t;

/* ---------------------------------------------------------------------------
 * Counter-based RNG (SplitMix64 finalizer over a key and a counter).
 * A stream is (key, counter): the n-th draw of a stream depends only on
 * (key, n), so results do not depend on which thread runs a sample.
 * ------------------------------------------------------------------------- */
SLIDE_INLINE uint64_t slide_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

SLIDE_INLINE uint64_t slide_key(uint64_t a, uint64_t b) {
    return slide_mix64(a * 0x9e3779b97f4a7c15ULL + slide_mix64(b + 0x632be59bd9b4e019ULL));
}

typedef struct {
    uint64_t key;
    uint64_t ctr;
} slide_rng;

SLIDE_INLINE uint64_t slide_rng_next(slide_rng *r) {
    return slide_mix64(r->key + (++r->ctr) * 0x9e3779b97f4a7c15ULL);
}

/* Uniform integer in [0, n) by Lemire's multiply-shift (bias < n / 2^64). */
SLIDE_INLINE uint32_t slide_rng_below(slide_rng *r, uint32_t n) {
    return (uint32_t)(((unsigned __int128)slide_rng_next(r) * n) >> 64);
}

/* Uniform float in [0, 1). */
SLIDE_INLINE float slide_rng_uniform(slide_rng *r) {
    return (float)(slide_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* A 32-bit hash of (seed, a, b): used for hash-family parameters that are
 * derived on the fly instead of stored. */
SLIDE_INLINE uint32_t slide_hash3(uint64_t seed, uint64_t a, uint64_t b) {
    return (uint32_t)(slide_mix64(seed ^ slide_mix64(a * 0xd6e8feb86659fd93ULL + b)) >> 32);
}

/* ---------------------------------------------------------------------------
 * bf16 <-> fp32, scalar. Round to nearest even; NaN stays NaN (quiet).
 * ------------------------------------------------------------------------- */
SLIDE_INLINE float slide_bf16_to_f32(bf16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

SLIDE_INLINE bf16_t slide_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

/* fp32 rounded to the nearest bf16, kept as fp32. */
SLIDE_INLINE float slide_round_bf16(float f) { return slide_bf16_to_f32(slide_f32_to_bf16(f)); }

/* Round up to a multiple of m (m a power of two). */
SLIDE_INLINE int64_t slide_round_up(int64_t x, int64_t m) { return (x + m - 1) & ~(m - 1); }

/* Monotonic clock in nanoseconds, for the per-phase time split. */
#include <time.h>
SLIDE_INLINE int64_t slide_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
