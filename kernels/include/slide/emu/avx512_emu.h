/* avx512_emu.h: a portable, plain-C emulation of the AVX-512 types and
 * intrinsics that the SLIDE AVX-512 kernels use.
 *
 * Purpose: testing the logic of the AVX-512 kernels (layer_avx512.h,
 * layer_avx512_bf16.h, hash_avx512.h) on machines without AVX-512. The kernel
 * headers include this file instead of <immintrin.h> when SLIDE_EMULATE_AVX512
 * is defined. It is meant for correctness, not for speed: every intrinsic is
 * a loop over lanes.
 *
 * Only the subset of intrinsics the kernels use is implemented (see the list
 * at the end of this comment); anything else is undeclared, on purpose (an
 * implicit-declaration diagnostic, then an undefined reference at link time).
 * Semantics follow the Intel Intrinsics Guide / SDM pseudocode:
 *   - masked loads, masked stores, masked gathers and scatters never touch the
 *     memory of masked-off lanes (the kernels rely on this at buffer ends);
 *   - gather/scatter: byte scale 1, 2, 4 or 8 on sign-extended 32-bit indices,
 *     unaligned accesses allowed; scatter writes lanes from lowest to highest,
 *     so with duplicate indices the highest lane wins;
 *   - arithmetic follows x86 NaN rules, made explicit so that the result does
 *     not depend on how the C compiler orders operands: a NaN operand is
 *     returned quieted (the first NaN operand when several are NaN), an invalid
 *     operation gives the default NaN 0xffc00000; fmadd is fused (fmaf) and
 *     takes the first NaN among a, b, c (the hardware's pick among several
 *     NaNs depends on the FMA form the compiler chose);
 *   - min/max return the second operand when either is NaN or both are zero;
 *   - cmp_ps_mask implements all 32 predicates (signalling behaviour, which
 *     only affects exception flags, is not emulated); other values abort();
 *   - bf16 conversions (cvtneps_pbh, cvtne2ps_pbh): round to nearest even,
 *     NaN -> quiet NaN (bit 6 set), denormal inputs flushed to signed zero,
 *     independent of MXCSR; dpbf16_ps: per lane, two FMAs (odd pair first,
 *     then even pair), denormal inputs (bf16 and the fp32 accumulator)
 *     treated as zero, denormal outputs flushed to zero, NaN priorities of the
 *     SDM (a.lo, b.lo, a.hi, b.hi, src);
 *   - reduce_add_ps / reduce_max_ps use the same pairwise tree as GCC's
 *     avx512fintrin.h (256-bit halves, 128-bit halves, 64-bit, 32-bit), so a
 *     kernel gives bit-identical results emulated and native under GCC;
 *   - immediates may be run-time values here; out-of-range scales and
 *     predicates abort() (a real compiler rejects them at compile time).
 *
 * Floating point: the emulation relies on fp32 arithmetic being evaluated in
 * fp32 (FLT_EVAL_METHOD 0, i.e. SSE on x86-64, or any modern 64-bit target)
 * and on _mm512_mul_ps followed by _mm512_add_ps staying two roundings: the
 * intrinsics are out-of-line functions, so the compiler cannot contract them
 * into an FMA; build with -ffp-contract=off anyway (as the project does).
 * Exception flags and MXCSR modes (FTZ/DAZ/rounding) are the host's and are
 * not emulated (the default MXCSR matches what the kernels see natively).
 *
 * Plain C (gnu11), libc and libm only; no x86 intrinsics, no global state.
 *
 * Implemented: types __m512 __m512i __m256i __m512bh __m256bh __mmask16
 * __mmask32; _mm_prefetch (no-op) and _MM_HINT_*; _CMP_* predicates;
 * _mm512_setzero_ps _mm512_setzero_si512 _mm512_set1_ps _mm512_set1_epi32
 * _mm512_set1_epi16 _mm512_castps_si512 _mm512_castsi512_ps
 * _mm512_loadu_ps _mm512_storeu_ps _mm512_loadu_si512 _mm512_storeu_si512
 * _mm512_loadu_epi32 _mm512_storeu_epi32 _mm512_maskz_loadu_ps
 * _mm512_maskz_loadu_epi32 _mm512_maskz_loadu_epi16 _mm512_mask_storeu_ps
 * _mm256_maskz_loadu_epi16 _mm256_mask_storeu_epi16
 * _mm512_i32gather_ps _mm512_mask_i32gather_ps _mm512_mask_i32gather_epi32
 * _mm512_mask_i32scatter_ps _mm512_add_ps _mm512_sub_ps _mm512_mul_ps
 * _mm512_div_ps _mm512_sqrt_ps _mm512_fmadd_ps _mm512_max_ps _mm512_min_ps
 * _mm512_reduce_add_ps _mm512_reduce_max_ps _mm512_cmp_ps_mask
 * _mm512_mask_blend_ps _mm512_mask_blend_epi32 _mm512_mask_mov_ps
 * _mm512_maskz_mov_ps _mm512_permute_ps _mm512_shuffle_f32x4
 * _mm512_add_epi32 _mm512_and_si512 _mm512_or_si512 _mm512_slli_epi32
 * _mm512_srli_epi32 _mm512_cvtepi32_epi16 _mm512_cvtepu16_epi32
 * _mm512_cvtne2ps_pbh _mm512_cvtneps_pbh _mm512_dpbf16_ps; and the casts
 * slide_emu_as_bh slide_emu_as_bh256 slide_emu_bh_as_si slide_emu_bh256_as_si
 * standing in for the vector casts (__m512bh)v, (__m256bh)v, (__m512i)v,
 * (__m256i)v of the native build.
 */
#ifndef SLIDE_EMU_AVX512_EMU_H
#define SLIDE_EMU_AVX512_EMU_H

#if defined(_IMMINTRIN_H_INCLUDED)
#error "avx512_emu.h and <immintrin.h> cannot be used in the same translation unit"
#endif

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "avx512_emu.h needs fp32 arithmetic evaluated in fp32 (FLT_EVAL_METHOD 0; on i386 use -mfpmath=sse)"
#endif

/* Intrinsics are kept out of line: the kernels inline them dozens of times
 * per function, and out-of-line copies build much faster (and no
 * floating-point contraction can reach across two of them). The scalar
 * helpers below are small and inline. */
#define SLIDE_EMU static __attribute__((noinline, unused))
#define SLIDE_EMU_H static inline

/* ---- types ------------------------------------------------------------------- */

typedef uint16_t __mmask16;
typedef uint32_t __mmask32;

typedef struct {
    union {
        float f32[16];
        uint32_t u32[16];
        int32_t i32[16];
    };
} __m512;

typedef struct {
    union {
        int32_t i32[16];
        uint32_t u32[16];
        int16_t i16[32];
        uint16_t u16[32];
        int8_t i8[64];
        uint8_t u8[64];
        int64_t i64[8];
        uint64_t u64[8];
    };
} __m512i;

typedef struct {
    union {
        int32_t i32[8];
        uint32_t u32[8];
        int16_t i16[16];
        uint16_t u16[16];
        int8_t i8[32];
        uint8_t u8[32];
        int64_t i64[4];
        uint64_t u64[4];
    };
} __m256i;

typedef struct {
    uint16_t u16[32]; /* 32 bf16 bit patterns */
} __m512bh;

typedef struct {
    uint16_t u16[16]; /* 16 bf16 bit patterns */
} __m256bh;

/* ---- constants ----------------------------------------------------------------- */

#ifndef _MM_HINT_T0
#define _MM_HINT_ET0 7
#define _MM_HINT_ET1 6
#define _MM_HINT_T0 3
#define _MM_HINT_T1 2
#define _MM_HINT_T2 1
#define _MM_HINT_NTA 0
#endif

#ifndef _CMP_EQ_OQ
#define _CMP_EQ_OQ 0x00
#define _CMP_LT_OS 0x01
#define _CMP_LE_OS 0x02
#define _CMP_UNORD_Q 0x03
#define _CMP_NEQ_UQ 0x04
#define _CMP_NLT_US 0x05
#define _CMP_NLE_US 0x06
#define _CMP_ORD_Q 0x07
#define _CMP_EQ_UQ 0x08
#define _CMP_NGE_US 0x09
#define _CMP_NGT_US 0x0a
#define _CMP_FALSE_OQ 0x0b
#define _CMP_NEQ_OQ 0x0c
#define _CMP_GE_OS 0x0d
#define _CMP_GT_OS 0x0e
#define _CMP_TRUE_UQ 0x0f
#define _CMP_EQ_OS 0x10
#define _CMP_LT_OQ 0x11
#define _CMP_LE_OQ 0x12
#define _CMP_UNORD_S 0x13
#define _CMP_NEQ_US 0x14
#define _CMP_NLT_UQ 0x15
#define _CMP_NLE_UQ 0x16
#define _CMP_ORD_S 0x17
#define _CMP_EQ_US 0x18
#define _CMP_NGE_UQ 0x19
#define _CMP_NGT_UQ 0x1a
#define _CMP_FALSE_OS 0x1b
#define _CMP_NEQ_OS 0x1c
#define _CMP_GE_OQ 0x1d
#define _CMP_GT_OQ 0x1e
#define _CMP_TRUE_US 0x1f
#endif

/* ---- scalar helpers (not intrinsics) -------------------------------------------- */

#define SLIDE_EMU_DEFAULT_NAN 0xffc00000u /* x86 "QNaN floating-point indefinite" */

SLIDE_EMU_H uint32_t slide_emu_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

SLIDE_EMU_H float slide_emu_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

SLIDE_EMU_H int slide_emu_isnan(float f) { return (slide_emu_f2u(f) & 0x7fffffffu) > 0x7f800000u; }

SLIDE_EMU_H float slide_emu_quiet(float f) { return slide_emu_u2f(slide_emu_f2u(f) | 0x00400000u); }

/* Result of an operation whose operands were not NaN: a NaN here is an invalid
 * operation, which x86 answers with the default NaN. */
SLIDE_EMU_H float slide_emu_invalid_fix(float r) {
    return slide_emu_isnan(r) ? slide_emu_u2f(SLIDE_EMU_DEFAULT_NAN) : r;
}

SLIDE_EMU_H float slide_emu_addf(float a, float b) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (slide_emu_isnan(b)) return slide_emu_quiet(b);
    const float r = a + b;
    return slide_emu_invalid_fix(r);
}

SLIDE_EMU_H float slide_emu_subf(float a, float b) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (slide_emu_isnan(b)) return slide_emu_quiet(b);
    const float r = a - b;
    return slide_emu_invalid_fix(r);
}

SLIDE_EMU_H float slide_emu_mulf(float a, float b) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (slide_emu_isnan(b)) return slide_emu_quiet(b);
    const float r = a * b;
    return slide_emu_invalid_fix(r);
}

SLIDE_EMU_H float slide_emu_divf(float a, float b) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (slide_emu_isnan(b)) return slide_emu_quiet(b);
    const float r = a / b;
    return slide_emu_invalid_fix(r);
}

SLIDE_EMU_H float slide_emu_sqrtf(float a) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (a < 0.f) return slide_emu_u2f(SLIDE_EMU_DEFAULT_NAN);
    return sqrtf(a);
}

/* a*b + c with a single rounding. */
SLIDE_EMU_H float slide_emu_fmaf(float a, float b, float c) {
    if (slide_emu_isnan(a)) return slide_emu_quiet(a);
    if (slide_emu_isnan(b)) return slide_emu_quiet(b);
    if (slide_emu_isnan(c)) return slide_emu_quiet(c);
    const float r = fmaf(a, b, c);
    return slide_emu_invalid_fix(r);
}

/* MAXPS / MINPS: the second operand unless the first is strictly greater (smaller). */
SLIDE_EMU_H float slide_emu_maxf(float a, float b) { return a > b ? a : b; }
SLIDE_EMU_H float slide_emu_minf(float a, float b) { return a < b ? a : b; }

SLIDE_EMU_H int slide_emu_valid_scale(int scale) { return scale == 1 || scale == 2 || scale == 4 || scale == 8; }

SLIDE_EMU_H const unsigned char *slide_emu_addr(const void *base, int32_t idx, int scale) {
    if (!slide_emu_valid_scale(scale)) abort();
    return (const unsigned char *)base + (ptrdiff_t)idx * (ptrdiff_t)scale;
}

/* One predicate of VCMPPS; bit 4 (signalling vs quiet) only changes exception
 * flags, so it is ignored. */
SLIDE_EMU_H int slide_emu_cmpf(float a, float b, int imm) {
    if (imm < 0 || imm > 31) abort();
    const int un = slide_emu_isnan(a) || slide_emu_isnan(b);
    switch (imm & 0xf) {
    case 0x0: return !un && a == b;    /* EQ_O */
    case 0x1: return !un && a < b;     /* LT_O */
    case 0x2: return !un && a <= b;    /* LE_O */
    case 0x3: return un;               /* UNORD */
    case 0x4: return un || a != b;     /* NEQ_U */
    case 0x5: return un || !(a < b);   /* NLT_U */
    case 0x6: return un || !(a <= b);  /* NLE_U */
    case 0x7: return !un;              /* ORD */
    case 0x8: return un || a == b;     /* EQ_U */
    case 0x9: return un || !(a >= b);  /* NGE_U */
    case 0xa: return un || !(a > b);   /* NGT_U */
    case 0xb: return 0;                /* FALSE */
    case 0xc: return !un && a != b;    /* NEQ_O */
    case 0xd: return !un && a >= b;    /* GE_O */
    case 0xe: return !un && a > b;     /* GT_O */
    default: return 1;                 /* 0xf: TRUE */
    }
}

/* VCVTNEPS2BF16's convert_fp32_to_bfloat16. */
SLIDE_EMU_H uint16_t slide_emu_cvtne_bf16(float f) {
    const uint32_t u = slide_emu_f2u(f);
    const uint32_t e = u & 0x7f800000u;
    if (e == 0) return (uint16_t)((u >> 16) & 0x8000u);       /* zero or denormal: signed zero */
    if (e == 0x7f800000u) {
        if (u & 0x007fffffu) return (uint16_t)((u >> 16) | 0x40u); /* NaN: truncate, force quiet */
        return (uint16_t)(u >> 16);                             /* infinity */
    }
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* normal: round to nearest even */
}

/* Denormals are zero (sign kept). */
SLIDE_EMU_H float slide_emu_daz(float f) {
    const uint32_t u = slide_emu_f2u(f);
    return (u & 0x7f800000u) == 0 ? slide_emu_u2f(u & 0x80000000u) : f;
}

/* One FMA step of VDPBF16PS: daz in, ftz out, round to nearest even. */
SLIDE_EMU_H float slide_emu_bf16_fma_step(float acc, float x, float y) {
    const float r = fmaf(slide_emu_daz(x), slide_emu_daz(y), slide_emu_daz(acc));
    if (slide_emu_isnan(r)) return slide_emu_u2f(SLIDE_EMU_DEFAULT_NAN);
    return slide_emu_daz(r); /* flush a denormal result to signed zero */
}

SLIDE_EMU_H float slide_emu_bf16_to_f32(uint16_t h) { return slide_emu_u2f((uint32_t)h << 16); }

/* ---- misc ---------------------------------------------------------------------- */

SLIDE_EMU void _mm_prefetch(const void *p, int hint) {
    (void)p;
    (void)hint;
}

/* ---- set / cast ------------------------------------------------------------------ */

SLIDE_EMU __m512 _mm512_setzero_ps(void) {
    __m512 r;
    memset(&r, 0, sizeof r);
    return r;
}

SLIDE_EMU __m512i _mm512_setzero_si512(void) {
    __m512i r;
    memset(&r, 0, sizeof r);
    return r;
}

SLIDE_EMU __m512 _mm512_set1_ps(float a) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.f32[i] = a;
    return r;
}

SLIDE_EMU __m512i _mm512_set1_epi32(int a) {
    __m512i r;
    for (int i = 0; i < 16; i++) r.i32[i] = (int32_t)a;
    return r;
}

SLIDE_EMU __m512i _mm512_set1_epi16(short a) {
    __m512i r;
    for (int i = 0; i < 32; i++) r.i16[i] = (int16_t)a;
    return r;
}

SLIDE_EMU __m512i _mm512_castps_si512(__m512 a) {
    __m512i r;
    memcpy(&r, &a, 64);
    return r;
}

SLIDE_EMU __m512 _mm512_castsi512_ps(__m512i a) {
    __m512 r;
    memcpy(&r, &a, 64);
    return r;
}

SLIDE_EMU __m512bh slide_emu_as_bh(__m512i a) {
    __m512bh r;
    memcpy(&r, &a, 64);
    return r;
}

SLIDE_EMU __m256bh slide_emu_as_bh256(__m256i a) {
    __m256bh r;
    memcpy(&r, &a, 32);
    return r;
}

SLIDE_EMU __m512i slide_emu_bh_as_si(__m512bh a) {
    __m512i r;
    memcpy(&r, &a, 64);
    return r;
}

SLIDE_EMU __m256i slide_emu_bh256_as_si(__m256bh a) {
    __m256i r;
    memcpy(&r, &a, 32);
    return r;
}

/* ---- loads / stores ---------------------------------------------------------------- */

SLIDE_EMU __m512 _mm512_loadu_ps(const void *p) {
    __m512 r;
    memcpy(&r, p, 64);
    return r;
}

SLIDE_EMU void _mm512_storeu_ps(void *p, __m512 a) { memcpy(p, &a, 64); }

SLIDE_EMU __m512i _mm512_loadu_si512(const void *p) {
    __m512i r;
    memcpy(&r, p, 64);
    return r;
}

SLIDE_EMU void _mm512_storeu_si512(void *p, __m512i a) { memcpy(p, &a, 64); }

SLIDE_EMU __m512i _mm512_loadu_epi32(const void *p) { return _mm512_loadu_si512(p); }

SLIDE_EMU void _mm512_storeu_epi32(void *p, __m512i a) { _mm512_storeu_si512(p, a); }

SLIDE_EMU __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void *p) {
    __m512 r = _mm512_setzero_ps();
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r.f32[i], (const unsigned char *)p + 4 * i, 4);
    return r;
}

SLIDE_EMU __m512i _mm512_maskz_loadu_epi32(__mmask16 k, const void *p) {
    __m512i r = _mm512_setzero_si512();
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r.i32[i], (const unsigned char *)p + 4 * i, 4);
    return r;
}

SLIDE_EMU __m512i _mm512_maskz_loadu_epi16(__mmask32 k, const void *p) {
    __m512i r = _mm512_setzero_si512();
    for (int i = 0; i < 32; i++)
        if ((k >> i) & 1u) memcpy(&r.i16[i], (const unsigned char *)p + 2 * i, 2);
    return r;
}

SLIDE_EMU __m256i _mm256_maskz_loadu_epi16(__mmask16 k, const void *p) {
    __m256i r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r.i16[i], (const unsigned char *)p + 2 * i, 2);
    return r;
}

SLIDE_EMU void _mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a) {
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy((unsigned char *)p + 4 * i, &a.f32[i], 4);
}

SLIDE_EMU void _mm256_mask_storeu_epi16(void *p, __mmask16 k, __m256i a) {
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy((unsigned char *)p + 2 * i, &a.i16[i], 2);
}

/* ---- gather / scatter ---------------------------------------------------------------- */

SLIDE_EMU __m512 _mm512_mask_i32gather_ps(__m512 src, __mmask16 k, __m512i vindex, const void *base, int scale) {
    __m512 r = src;
    if (!slide_emu_valid_scale(scale)) abort();
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r.f32[i], slide_emu_addr(base, vindex.i32[i], scale), 4);
    return r;
}

SLIDE_EMU __m512 _mm512_i32gather_ps(__m512i vindex, const void *base, int scale) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)0xffff, vindex, base, scale);
}

SLIDE_EMU __m512i _mm512_mask_i32gather_epi32(__m512i src, __mmask16 k, __m512i vindex, const void *base,
                                              int scale) {
    __m512i r = src;
    if (!slide_emu_valid_scale(scale)) abort();
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&r.i32[i], slide_emu_addr(base, vindex.i32[i], scale), 4);
    return r;
}

SLIDE_EMU void _mm512_mask_i32scatter_ps(void *base, __mmask16 k, __m512i vindex, __m512 a, int scale) {
    if (!slide_emu_valid_scale(scale)) abort();
    for (int i = 0; i < 16; i++) /* lowest lane first: the highest of duplicate indices wins */
        if ((k >> i) & 1)
            memcpy((unsigned char *)base + (ptrdiff_t)vindex.i32[i] * (ptrdiff_t)scale, &a.f32[i], 4);
}

/* ---- fp32 arithmetic -------------------------------------------------------------------- */

#define SLIDE_EMU_BINOP_PS(NAME, F)                    \
    SLIDE_EMU __m512 NAME(__m512 a, __m512 b) {        \
        __m512 r;                                      \
        for (int i = 0; i < 16; i++) r.f32[i] = F(a.f32[i], b.f32[i]); \
        return r;                                      \
    }

SLIDE_EMU_BINOP_PS(_mm512_add_ps, slide_emu_addf)
SLIDE_EMU_BINOP_PS(_mm512_sub_ps, slide_emu_subf)
SLIDE_EMU_BINOP_PS(_mm512_mul_ps, slide_emu_mulf)
SLIDE_EMU_BINOP_PS(_mm512_div_ps, slide_emu_divf)
SLIDE_EMU_BINOP_PS(_mm512_max_ps, slide_emu_maxf)
SLIDE_EMU_BINOP_PS(_mm512_min_ps, slide_emu_minf)

SLIDE_EMU __m512 _mm512_sqrt_ps(__m512 a) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.f32[i] = slide_emu_sqrtf(a.f32[i]);
    return r;
}

SLIDE_EMU __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.f32[i] = slide_emu_fmaf(a.f32[i], b.f32[i], c.f32[i]);
    return r;
}

/* GCC's avx512fintrin.h order: 256-bit halves (hi op lo), 128-bit halves,
 * then lanes {0,1} op {2,3}, then lane 0 op lane 1. */
SLIDE_EMU float _mm512_reduce_add_ps(__m512 a) {
    float t3[8], t6[4], t8[2];
    for (int i = 0; i < 8; i++) t3[i] = slide_emu_addf(a.f32[8 + i], a.f32[i]);
    for (int i = 0; i < 4; i++) t6[i] = slide_emu_addf(t3[4 + i], t3[i]);
    for (int i = 0; i < 2; i++) t8[i] = slide_emu_addf(t6[i], t6[i + 2]);
    return slide_emu_addf(t8[0], t8[1]);
}

SLIDE_EMU float _mm512_reduce_max_ps(__m512 a) {
    float t3[8], t6[4], t8[4];
    for (int i = 0; i < 8; i++) t3[i] = slide_emu_maxf(a.f32[8 + i], a.f32[i]);
    for (int i = 0; i < 4; i++) t6[i] = slide_emu_maxf(t3[4 + i], t3[i]);
    for (int i = 0; i < 4; i++) t8[i] = slide_emu_maxf(t6[i], t6[i ^ 2]);
    return slide_emu_maxf(t8[0], t8[1]);
}

/* ---- compare / blend / move / permute ------------------------------------------------------ */

SLIDE_EMU __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, const int imm) {
    unsigned k = 0;
    for (int i = 0; i < 16; i++) k |= (unsigned)slide_emu_cmpf(a.f32[i], b.f32[i], imm) << i;
    return (__mmask16)k;
}

SLIDE_EMU __m512 _mm512_mask_blend_ps(__mmask16 k, __m512 a, __m512 b) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.u32[i] = ((k >> i) & 1) ? b.u32[i] : a.u32[i];
    return r;
}

SLIDE_EMU __m512i _mm512_mask_blend_epi32(__mmask16 k, __m512i a, __m512i b) {
    __m512i r;
    for (int i = 0; i < 16; i++) r.u32[i] = ((k >> i) & 1) ? b.u32[i] : a.u32[i];
    return r;
}

SLIDE_EMU __m512 _mm512_mask_mov_ps(__m512 src, __mmask16 k, __m512 a) { return _mm512_mask_blend_ps(k, src, a); }

SLIDE_EMU __m512 _mm512_maskz_mov_ps(__mmask16 k, __m512 a) {
    return _mm512_mask_blend_ps(k, _mm512_setzero_ps(), a);
}

/* Within each 128-bit lane, element j takes element (imm >> 2j) & 3 of that lane. */
SLIDE_EMU __m512 _mm512_permute_ps(__m512 a, const int imm) {
    __m512 r;
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < 4; j++) r.u32[4 * l + j] = a.u32[4 * l + ((imm >> (2 * j)) & 3)];
    return r;
}

/* 128-bit blocks: dst 0, 1 from a; dst 2, 3 from b; two selector bits each. */
SLIDE_EMU __m512 _mm512_shuffle_f32x4(__m512 a, __m512 b, const int imm) {
    __m512 r;
    for (int blk = 0; blk < 4; blk++) {
        const int sel = (imm >> (2 * blk)) & 3;
        const __m512 *s = blk < 2 ? &a : &b;
        for (int j = 0; j < 4; j++) r.u32[4 * blk + j] = s->u32[4 * sel + j];
    }
    return r;
}

/* ---- integer ------------------------------------------------------------------------------ */

SLIDE_EMU __m512i _mm512_add_epi32(__m512i a, __m512i b) {
    __m512i r;
    for (int i = 0; i < 16; i++) r.u32[i] = a.u32[i] + b.u32[i]; /* wraps */
    return r;
}

SLIDE_EMU __m512i _mm512_and_si512(__m512i a, __m512i b) {
    __m512i r;
    for (int i = 0; i < 8; i++) r.u64[i] = a.u64[i] & b.u64[i];
    return r;
}

SLIDE_EMU __m512i _mm512_or_si512(__m512i a, __m512i b) {
    __m512i r;
    for (int i = 0; i < 8; i++) r.u64[i] = a.u64[i] | b.u64[i];
    return r;
}

/* Count imm8[7:0]; counts above 31 give 0. */
SLIDE_EMU __m512i _mm512_slli_epi32(__m512i a, unsigned int imm) {
    __m512i r;
    const unsigned c = imm & 0xffu;
    for (int i = 0; i < 16; i++) r.u32[i] = c > 31 ? 0u : a.u32[i] << c;
    return r;
}

SLIDE_EMU __m512i _mm512_srli_epi32(__m512i a, unsigned int imm) {
    __m512i r;
    const unsigned c = imm & 0xffu;
    for (int i = 0; i < 16; i++) r.u32[i] = c > 31 ? 0u : a.u32[i] >> c;
    return r;
}

/* VPMOVDW: truncate each 32-bit lane to its low 16 bits. */
SLIDE_EMU __m256i _mm512_cvtepi32_epi16(__m512i a) {
    __m256i r;
    for (int i = 0; i < 16; i++) r.u16[i] = (uint16_t)(a.u32[i] & 0xffffu);
    return r;
}

/* VPMOVZXWD: zero-extend 16 unsigned 16-bit lanes. */
SLIDE_EMU __m512i _mm512_cvtepu16_epi32(__m256i a) {
    __m512i r;
    for (int i = 0; i < 16; i++) r.u32[i] = a.u16[i];
    return r;
}

/* ---- bf16 (AVX512_BF16) ---------------------------------------------------------------------- */

/* Elements 0..15 of the result come from b, 16..31 from a. */
SLIDE_EMU __m512bh _mm512_cvtne2ps_pbh(__m512 a, __m512 b) {
    __m512bh r;
    for (int i = 0; i < 16; i++) {
        r.u16[i] = slide_emu_cvtne_bf16(b.f32[i]);
        r.u16[16 + i] = slide_emu_cvtne_bf16(a.f32[i]);
    }
    return r;
}

SLIDE_EMU __m256bh _mm512_cvtneps_pbh(__m512 a) {
    __m256bh r;
    for (int i = 0; i < 16; i++) r.u16[i] = slide_emu_cvtne_bf16(a.f32[i]);
    return r;
}

/* dst[j] = src[j] + a[2j+1]*b[2j+1], then + a[2j]*b[2j]; each step one FMA. */
SLIDE_EMU __m512 _mm512_dpbf16_ps(__m512 src, __m512bh a, __m512bh b) {
    __m512 r;
    for (int j = 0; j < 16; j++) {
        const float alo = slide_emu_bf16_to_f32(a.u16[2 * j]), blo = slide_emu_bf16_to_f32(b.u16[2 * j]);
        const float ahi = slide_emu_bf16_to_f32(a.u16[2 * j + 1]), bhi = slide_emu_bf16_to_f32(b.u16[2 * j + 1]);
        const float s = src.f32[j];
        /* NaN priority (SDM table): a low, b low, a high, b high, src */
        if (slide_emu_isnan(alo)) r.f32[j] = slide_emu_quiet(alo);
        else if (slide_emu_isnan(blo)) r.f32[j] = slide_emu_quiet(blo);
        else if (slide_emu_isnan(ahi)) r.f32[j] = slide_emu_quiet(ahi);
        else if (slide_emu_isnan(bhi)) r.f32[j] = slide_emu_quiet(bhi);
        else if (slide_emu_isnan(s)) r.f32[j] = slide_emu_quiet(s);
        else r.f32[j] = slide_emu_bf16_fma_step(slide_emu_bf16_fma_step(s, ahi, bhi), alo, blo);
    }
    return r;
}

#undef SLIDE_EMU_BINOP_PS

#endif
