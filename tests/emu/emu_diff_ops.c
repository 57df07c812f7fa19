/* emu_diff_ops.c: one battery of AVX-512 intrinsic calls on deterministic
 * inputs (random values mixed with NaNs, infinities, signed zeros and
 * denormals), compiled twice:
 *   - with -DEMU_DIFF_NATIVE and -mavx512f -mavx512bw -mavx512vl -mavx512dq
 *     -mavx512bf16 against <immintrin.h>: emu_diff_f_native, emu_diff_bf16_native
 *     (to be run only on a CPU that has those extensions);
 *   - against the emulation header: emu_diff_f_emu, emu_diff_bf16_emu.
 * emu_diff_main.c runs both and compares the records.
 *
 * Immediate operands are written out as constants (the native intrinsics
 * require compile-time immediates).
 */
#include <stdint.h>
#include <string.h>

#if defined(EMU_DIFF_NATIVE) && !defined(EMU_DIFF_FAKE_NATIVE)
#include <immintrin.h>
#define AS_BH(v) ((__m512bh)(v))
#define BH_AS_SI(v) ((__m512i)(v))
#define BH256_AS_SI(v) ((__m256i)(v))
#else
/* EMU_DIFF_FAKE_NATIVE: the "native" entry points built on the emulation, to
 * check the comparison harness itself on machines without AVX-512 */
#include "slide/emu/avx512_emu.h"
#define AS_BH(v) slide_emu_as_bh(v)
#define BH_AS_SI(v) slide_emu_bh_as_si(v)
#define BH256_AS_SI(v) slide_emu_bh256_as_si(v)
#endif
#if defined(EMU_DIFF_NATIVE)
#define FN(x) x##_native
#else
#define FN(x) x##_emu
#endif

#include "emu_diff.h"

#define TRIALS 12

typedef struct {
    diff_rec *r;
    int n, cap;
} ctx;

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const uint32_t SPECIAL[] = {
    0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x3f000000, 0x4b800000, /* 0 -0 1 -1 .5 2^24 */
    0x00000001, 0x807fffff, 0x00800000, 0x80800000, 0x0080ffff, 0x00008000, /* denormals, FLT_MIN */
    0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,                         /* FLT_MAX, inf */
    0x7fc00000, 0xffc12345, 0x7f800001, 0xffa00000, 0x7fbfffff,             /* NaNs (q, s) */
    0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0x40400000, 0x3f800800, /* bf16 ties, 3, 1+2^-12 */
};
#define NSPECIAL ((int)(sizeof SPECIAL / sizeof SPECIAL[0]))

/* special: 0 finite normal values only; 1 a quarter of lanes from SPECIAL */
static float gen_f(rng *r, int special) {
    const uint64_t x = rnext(r);
    if (special && (x & 3) == 0) return u2f(SPECIAL[(x >> 2) % NSPECIAL]);
    const float m = (float)((double)(x >> 40) * 0x1p-23 - 1.0); /* [-1, 1) on a 2^-23 grid */
    const int e = (int)((x >> 8) % 21) - 10;
    float s = 1.f;
    for (int i = 0; i < (e < 0 ? -e : e); i++) s *= e < 0 ? 0.5f : 2.f;
    return m * s;
}

static __m512 gen_v(rng *r, int special, float *keep) {
    float a[16];
    for (int i = 0; i < 16; i++) a[i] = gen_f(r, special);
    if (keep) memcpy(keep, a, 64);
    return _mm512_loadu_ps(a);
}

static __m512i gen_vi(rng *r) {
    uint32_t a[16];
    for (int i = 0; i < 16; i++) a[i] = (uint32_t)rnext(r);
    return _mm512_loadu_si512(a);
}

static void put(ctx *c, const char *name, int t, int mode, const void *p, int len, float scale) {
    if (c->n >= c->cap) return;
    diff_rec *d = &c->r[c->n++];
    memset(d, 0, sizeof *d);
    /* name + trial number */
    int k = 0;
    for (; name[k] && k < (int)sizeof d->name - 5; k++) d->name[k] = name[k];
    d->name[k++] = '#';
    d->name[k++] = (char)('0' + (t / 10) % 10);
    d->name[k++] = (char)('0' + t % 10);
    d->name[k] = 0;
    d->mode = mode;
    d->len = len;
    d->scale = scale;
    memcpy(d->b, p, (size_t)len);
}

static void put_ps(ctx *c, const char *name, int t, int mode, __m512 v) {
    float b[16];
    _mm512_storeu_ps(b, v);
    put(c, name, t, mode, b, 64, 0.f);
}

static void put_si(ctx *c, const char *name, int t, __m512i v) {
    unsigned char b[64];
    _mm512_storeu_si512(b, v);
    put(c, name, t, DIFF_EXACT, b, 64, 0.f);
}

static void put_si256(ctx *c, const char *name, int t, __m256i v) {
    uint16_t b[16];
    _mm256_mask_storeu_epi16(b, 0xffff, v);
    put(c, name, t, DIFF_EXACT, b, 32, 0.f);
}

static void put_k(ctx *c, const char *name, int t, uint32_t k) { put(c, name, t, DIFF_EXACT, &k, 4, 0.f); }

/* ---- AVX512F/BW/VL/DQ part ------------------------------------------------------------ */

static void ops_memory(ctx *c, rng *r) {
    for (int t = 0; t < TRIALS; t++) {
        float fb[64];
        uint16_t hb[96];
        int32_t ib[64];
        for (int i = 0; i < 64; i++) fb[i] = gen_f(r, 1), ib[i] = (int32_t)rnext(r);
        for (int i = 0; i < 96; i++) hb[i] = (uint16_t)rnext(r);
        const __mmask16 k = (__mmask16)rnext(r);
        const __mmask32 k32 = (__mmask32)rnext(r);
        const int off = (int)(rnext(r) % 16);
        put_ps(c, "loadu_ps", t, DIFF_EXACT, _mm512_loadu_ps(fb + off));
        put_si(c, "loadu_si512", t, _mm512_loadu_si512((const char *)ib + off));
        put_si(c, "loadu_epi32", t, _mm512_loadu_epi32(ib + off));
        put_ps(c, "maskz_loadu_ps", t, DIFF_EXACT, _mm512_maskz_loadu_ps(k, fb + off));
        put_si(c, "maskz_loadu_epi32", t, _mm512_maskz_loadu_epi32(k, ib + off));
        put_si(c, "maskz_loadu_epi16", t, _mm512_maskz_loadu_epi16(k32, hb + off));
        put_si256(c, "_mm256_maskz_loadu_epi16", t, _mm256_maskz_loadu_epi16(k, hb + 3 * off));
        /* stores: record the whole destination */
        float dst[48];
        for (int i = 0; i < 48; i++) dst[i] = -1.f;
        _mm512_mask_storeu_ps(dst + off, k, gen_v(r, 1, NULL));
        put(c, "mask_storeu_ps", t, DIFF_EXACT, dst, sizeof dst, 0.f);
        _mm512_storeu_ps(dst + off, gen_v(r, 1, NULL));
        put(c, "storeu_ps", t, DIFF_EXACT, dst, sizeof dst, 0.f);
        unsigned char sb[96];
        memset(sb, 0xee, sizeof sb);
        _mm512_storeu_si512(sb + off, gen_vi(r));
        put(c, "storeu_si512", t, DIFF_EXACT, sb, sizeof sb, 0.f);
        _mm512_storeu_epi32(sb + 2 * off, gen_vi(r));
        put(c, "storeu_epi32", t, DIFF_EXACT, sb, sizeof sb, 0.f);
        uint16_t hd[48];
        memset(hd, 0x55, sizeof hd);
        __m256i h;
        h = _mm256_maskz_loadu_epi16(0xffff, hb + off);
        _mm256_mask_storeu_epi16(hd + off, k, h);
        put(c, "_mm256_mask_storeu_epi16", t, DIFF_EXACT, hd, sizeof hd, 0.f);
    }
}

static void ops_gather_scatter(ctx *c, rng *r) {
    for (int t = 0; t < TRIALS; t++) {
        float fb[64];
        uint16_t hb[96];
        int32_t ix[16];
        for (int i = 0; i < 64; i++) fb[i] = gen_f(r, 1);
        for (int i = 0; i < 96; i++) hb[i] = (uint16_t)rnext(r);
        const __mmask16 k = (__mmask16)rnext(r);
        const __m512 src = gen_v(r, 1, NULL);
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 64) - 16;
        __m512i idx = _mm512_loadu_si512(ix);
        put_ps(c, "mask_i32gather_ps s4", t, DIFF_EXACT, _mm512_mask_i32gather_ps(src, k, idx, fb + 16, 4));
        put_ps(c, "i32gather_ps s4", t, DIFF_EXACT, _mm512_i32gather_ps(idx, fb + 16, 4));
        put_si(c, "mask_i32gather_epi32 s4", t, _mm512_mask_i32gather_epi32(_mm512_castps_si512(src), k, idx, fb + 16, 4));
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 32) - 8;
        idx = _mm512_loadu_si512(ix);
        put_ps(c, "mask_i32gather_ps s8", t, DIFF_EXACT, _mm512_mask_i32gather_ps(src, k, idx, fb + 16, 8));
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 190);
        idx = _mm512_loadu_si512(ix);
        put_ps(c, "mask_i32gather_ps s1", t, DIFF_EXACT, _mm512_mask_i32gather_ps(src, k, idx, fb, 1));
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 94);
        idx = _mm512_loadu_si512(ix);
        put_si(c, "mask_i32gather_epi32 s2", t, _mm512_mask_i32gather_epi32(_mm512_castps_si512(src), k, idx, hb, 2));
        put_si(c, "mask_i32gather_epi32 s1", t, _mm512_mask_i32gather_epi32(_mm512_castps_si512(src), k, idx, hb, 1));
        /* scatter with frequent duplicate indices */
        float dst[64];
        for (int i = 0; i < 64; i++) dst[i] = (float)i;
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 24);
        idx = _mm512_loadu_si512(ix);
        _mm512_mask_i32scatter_ps(dst, k, idx, gen_v(r, 1, NULL), 4);
        put(c, "mask_i32scatter_ps s4", t, DIFF_EXACT, dst, sizeof dst, 0.f);
        for (int i = 0; i < 16; i++) ix[i] = (int32_t)(rnext(r) % 32);
        idx = _mm512_loadu_si512(ix);
        _mm512_mask_i32scatter_ps(dst, (__mmask16)~k, idx, gen_v(r, 1, NULL), 8);
        put(c, "mask_i32scatter_ps s8", t, DIFF_EXACT, dst, sizeof dst, 0.f);
    }
}

static void ops_arith(ctx *c, rng *r) {
    for (int t = 0; t < 2 * TRIALS; t++) {
        const int sp = t % 2; /* odd trials: special values */
        float av[16];
        const __m512 a = gen_v(r, sp, av), b = gen_v(r, sp, NULL), d = gen_v(r, sp, NULL);
        put_ps(c, "add_ps", t, DIFF_NANEQ, _mm512_add_ps(a, b));
        put_ps(c, "sub_ps", t, DIFF_EXACT, _mm512_sub_ps(a, b));
        put_ps(c, "mul_ps", t, DIFF_NANEQ, _mm512_mul_ps(a, b));
        put_ps(c, "div_ps", t, DIFF_EXACT, _mm512_div_ps(a, b));
        put_ps(c, "sqrt_ps", t, DIFF_EXACT, _mm512_sqrt_ps(a));
        put_ps(c, "sqrt_ps abs", t, DIFF_EXACT, _mm512_sqrt_ps(_mm512_mul_ps(a, a)));
        put_ps(c, "fmadd_ps", t, DIFF_NANEQ, _mm512_fmadd_ps(a, b, d));
        put_ps(c, "fmadd_ps cancel", t, DIFF_NANEQ, _mm512_fmadd_ps(a, a, _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a))));
        put_ps(c, "max_ps", t, DIFF_EXACT, _mm512_max_ps(a, b));
        put_ps(c, "min_ps", t, DIFF_EXACT, _mm512_min_ps(a, b));
        put_ps(c, "max_ps self", t, DIFF_EXACT, _mm512_max_ps(a, _mm512_permute_ps(a, 0xb1)));
        float sc = 0.f;
        for (int i = 0; i < 16; i++) sc += av[i] < 0 ? -av[i] : av[i];
        const float s = _mm512_reduce_add_ps(a);
        put(c, "reduce_add_ps", t, DIFF_REDUCE, &s, 4, sc);
        const float m = _mm512_reduce_max_ps(a);
        put(c, "reduce_max_ps", t, DIFF_EXACT, &m, 4, 0.f);
        put_ps(c, "setzero_ps", t, DIFF_EXACT, _mm512_setzero_ps());
        put_ps(c, "set1_ps", t, DIFF_EXACT, _mm512_set1_ps(av[3]));
        put_si(c, "setzero_si512", t, _mm512_setzero_si512());
        put_si(c, "castps_si512", t, _mm512_castps_si512(a));
        put_ps(c, "castsi512_ps", t, DIFF_EXACT, _mm512_castsi512_ps(_mm512_castps_si512(b)));
    }
}

#define CMP_CASE(P) put_k(c, "cmp_ps_mask " #P, t, _mm512_cmp_ps_mask(a, b, P));
#define PERM_CASE(I) put_ps(c, "permute_ps " #I, t, DIFF_EXACT, _mm512_permute_ps(a, I));
#define SHUF_CASE(I) put_ps(c, "shuffle_f32x4 " #I, t, DIFF_EXACT, _mm512_shuffle_f32x4(a, b, I));
#define SHIFT_CASE(N)                                                      \
    put_si(c, "slli_epi32 " #N, t, _mm512_slli_epi32(x, N));              \
    put_si(c, "srli_epi32 " #N, t, _mm512_srli_epi32(x, N));

static void ops_cmp_blend_perm_int(ctx *c, rng *r) {
    for (int t = 0; t < 2 * TRIALS; t++) {
        const int sp = t % 2;
        const __m512 a = gen_v(r, sp, NULL);
        __m512 b = gen_v(r, sp, NULL);
        /* make some lanes equal */
        b = _mm512_mask_blend_ps((__mmask16)rnext(r), b, a);
        CMP_CASE(_CMP_EQ_OQ) CMP_CASE(_CMP_LT_OS) CMP_CASE(_CMP_LE_OS) CMP_CASE(_CMP_UNORD_Q)
        CMP_CASE(_CMP_NEQ_UQ) CMP_CASE(_CMP_NLT_US) CMP_CASE(_CMP_NLE_US) CMP_CASE(_CMP_ORD_Q)
        CMP_CASE(_CMP_EQ_UQ) CMP_CASE(_CMP_NGE_US) CMP_CASE(_CMP_NGT_US) CMP_CASE(_CMP_FALSE_OQ)
        CMP_CASE(_CMP_NEQ_OQ) CMP_CASE(_CMP_GE_OS) CMP_CASE(_CMP_GT_OS) CMP_CASE(_CMP_TRUE_UQ)
        CMP_CASE(_CMP_EQ_OS) CMP_CASE(_CMP_LT_OQ) CMP_CASE(_CMP_LE_OQ) CMP_CASE(_CMP_UNORD_S)
        CMP_CASE(_CMP_NEQ_US) CMP_CASE(_CMP_NLT_UQ) CMP_CASE(_CMP_NLE_UQ) CMP_CASE(_CMP_ORD_S)
        CMP_CASE(_CMP_EQ_US) CMP_CASE(_CMP_NGE_UQ) CMP_CASE(_CMP_NGT_UQ) CMP_CASE(_CMP_FALSE_OS)
        CMP_CASE(_CMP_NEQ_OS) CMP_CASE(_CMP_GE_OQ) CMP_CASE(_CMP_GT_OQ) CMP_CASE(_CMP_TRUE_US)
        const __mmask16 k = (__mmask16)rnext(r);
        put_ps(c, "mask_blend_ps", t, DIFF_EXACT, _mm512_mask_blend_ps(k, a, b));
        put_ps(c, "mask_mov_ps", t, DIFF_EXACT, _mm512_mask_mov_ps(a, k, b));
        put_ps(c, "maskz_mov_ps", t, DIFF_EXACT, _mm512_maskz_mov_ps(k, b));
        PERM_CASE(0x00) PERM_CASE(0x1b) PERM_CASE(0xb1) PERM_CASE(0x4e) PERM_CASE(0xe4)
        PERM_CASE(0x39) PERM_CASE(0x93) PERM_CASE(0xd8) PERM_CASE(0x27)
        SHUF_CASE(0x00) SHUF_CASE(0x4e) SHUF_CASE(0xb1) SHUF_CASE(0x44) SHUF_CASE(0xee)
        SHUF_CASE(0xe4) SHUF_CASE(0x1b) SHUF_CASE(0x8d)
        const __m512i x = gen_vi(r), y = gen_vi(r);
        put_si(c, "mask_blend_epi32", t, _mm512_mask_blend_epi32(k, x, y));
        put_si(c, "add_epi32", t, _mm512_add_epi32(x, y));
        put_si(c, "and_si512", t, _mm512_and_si512(x, y));
        put_si(c, "or_si512", t, _mm512_or_si512(x, y));
        put_si(c, "set1_epi32", t, _mm512_set1_epi32((int)rnext(r)));
        put_si(c, "set1_epi16", t, _mm512_set1_epi16((short)rnext(r)));
        SHIFT_CASE(0) SHIFT_CASE(1) SHIFT_CASE(7) SHIFT_CASE(16) SHIFT_CASE(31) SHIFT_CASE(32)
        put_si256(c, "cvtepi32_epi16", t, _mm512_cvtepi32_epi16(x));
        uint16_t hb[16];
        for (int i = 0; i < 16; i++) hb[i] = (uint16_t)rnext(r);
        put_si(c, "cvtepu16_epi32", t, _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(0xffff, hb)));
    }
}

int FN(emu_diff_f)(diff_rec *out, int cap) {
    ctx c = {out, 0, cap};
    rng r = {12345};
    ops_memory(&c, &r);
    ops_gather_scatter(&c, &r);
    ops_arith(&c, &r);
    ops_cmp_blend_perm_int(&c, &r);
    return c.n;
}

/* ---- AVX512_BF16 part ----------------------------------------------------------------- */

static const uint16_t BF_SPECIAL[] = {0x0000, 0x8000, 0x3f80, 0xbf80, 0x0001, 0x8050, 0x007f, 0x0080, 0x7f7f,
                                      0xff7f, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffc1, 0x1c80, 0x9c80, 0x5f80,
                                      0x2000, 0x1f80, 0x4b80};
#define NBF_SPECIAL ((int)(sizeof BF_SPECIAL / sizeof BF_SPECIAL[0]))

static __m512bh gen_bh(rng *r, int special) {
    uint16_t h[32];
    for (int i = 0; i < 32; i++) {
        const uint64_t x = rnext(r);
        if (special && (x & 3) == 0) {
            h[i] = BF_SPECIAL[(x >> 2) % NBF_SPECIAL];
        } else {
            float f = gen_f(r, 0);
            uint32_t u;
            memcpy(&u, &f, 4);
            h[i] = (uint16_t)(u >> 16);
        }
    }
    return AS_BH(_mm512_loadu_si512(h));
}

int FN(emu_diff_bf16)(diff_rec *out, int cap) {
    ctx c = {out, 0, cap};
    rng r = {777};
    for (int t = 0; t < 4 * TRIALS; t++) {
        const int sp = t % 2;
        const __m512 a = gen_v(&r, sp, NULL), b = gen_v(&r, sp, NULL);
        put_si(&c, "cvtne2ps_pbh", t, BH_AS_SI(_mm512_cvtne2ps_pbh(a, b)));
        put_si256(&c, "cvtneps_pbh", t, BH256_AS_SI(_mm512_cvtneps_pbh(a)));
        const __m512bh x = gen_bh(&r, sp), y = gen_bh(&r, sp);
        /* finite inputs: bit for bit; special inputs: NaN payloads compared loosely */
        put_ps(&c, "dpbf16_ps", t, sp ? DIFF_NANEQ : DIFF_EXACT, _mm512_dpbf16_ps(a, x, y));
        put_ps(&c, "dpbf16_ps zero src", t, sp ? DIFF_NANEQ : DIFF_EXACT, _mm512_dpbf16_ps(_mm512_setzero_ps(), x, y));
        /* accumulate a chain, as the kernels do */
        __m512 acc = _mm512_setzero_ps();
        for (int i = 0; i < 8; i++) acc = _mm512_dpbf16_ps(acc, gen_bh(&r, 0), _mm512_cvtne2ps_pbh(a, b));
        put_ps(&c, "dpbf16_ps chain", t, DIFF_EXACT, acc);
    }
    return c.n;
}
