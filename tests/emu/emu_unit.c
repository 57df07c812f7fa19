/* emu_unit.c: unit tests of the AVX-512 emulation (kernels/include/slide/emu/avx512_emu.h)
 * on hand-computed examples. Runs on any x86-64 (no AVX-512 needed).
 *
 * Masked-lane safety: buffers end at a PROT_NONE page (emu_test_util.h), so a
 * masked load/store/gather/scatter that touched a masked-off lane past the
 * end would fault; faults are caught and reported as failures.
 *
 * Build: gcc -std=gnu11 -O2 -ffp-contract=off -fno-strict-aliasing -fno-tree-vectorize
 *        -Ikernels/include tests/emu/emu_unit.c -lm
 * Prints FAIL lines and a summary "UNIT OK <checks>" / "UNIT FAILED <fails>/<checks>".
 */
#include "slide/emu/avx512_emu.h"

#include <sys/wait.h>

#include "emu_test_util.h"

#define PINF 0x7f800000u
#define NINF 0xff800000u
#define QNAN 0x7fc00000u
#define DNAN 0xffc00000u /* x86 default NaN */

static __m512 v_iota(float base) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.f32[i] = base + (float)i;
    return r;
}

static __m512 v_bits(const uint32_t *u) {
    __m512 r;
    for (int i = 0; i < 16; i++) r.u32[i] = u[i];
    return r;
}

/* ---- set / cast / prefetch ------------------------------------------------------- */

static void test_set_cast(void) {
    __m512 z = _mm512_setzero_ps();
    __m512i zi = _mm512_setzero_si512();
    __m512 s = _mm512_set1_ps(-2.5f);
    __m512i s32 = _mm512_set1_epi32(-7);
    __m512i s16 = _mm512_set1_epi16((short)0x8001);
    for (int i = 0; i < 16; i++) {
        CHECK_U("setzero_ps", z.u32[i], 0);
        CHECK_U("setzero_si512", zi.u32[i], 0);
        CHECK_FBITS("set1_ps", s.f32[i], -2.5f);
        CHECK_U("set1_epi32", (uint32_t)s32.i32[i], (uint32_t)-7);
    }
    for (int i = 0; i < 32; i++) CHECK_U("set1_epi16", s16.u16[i], 0x8001);
    __m512i c = _mm512_castps_si512(_mm512_set1_ps(1.0f));
    CHECK_U("castps_si512", c.u32[5], 0x3f800000u);
    CHECK_U("castps_si512 bytes", c.u8[3], 0x3f);
    CHECK_U("castps_si512 i64", c.u64[7], 0x3f8000003f800000ull);
    CHECK_FBITS("castsi512_ps", _mm512_castsi512_ps(_mm512_set1_epi32(0x40490fdb)).f32[9], 3.14159274f);
    __m512 nan = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x7fa00001));
    CHECK_U("cast keeps sNaN bits", _mm512_castps_si512(nan).u32[0], 0x7fa00001u);

    /* the bf16 casts of the emulated build are bit copies */
    __m512i x;
    for (int i = 0; i < 32; i++) x.u16[i] = (uint16_t)(0x1000 + i);
    __m512bh bh = slide_emu_as_bh(x);
    CHECK_U("as_bh", bh.u16[31], 0x101f);
    CHECK_U("bh_as_si", slide_emu_bh_as_si(bh).u16[7], 0x1007);
    __m256i y;
    for (int i = 0; i < 16; i++) y.u16[i] = (uint16_t)(0x2000 + i);
    __m256bh bh2 = slide_emu_as_bh256(y);
    CHECK_U("as_bh256", bh2.u16[15], 0x200f);
    CHECK_U("bh256_as_si", slide_emu_bh256_as_si(bh2).u16[3], 0x2003);
    CHECK_U("sizeof __m512", sizeof(__m512), 64);
    CHECK_U("sizeof __m512i", sizeof(__m512i), 64);
    CHECK_U("sizeof __m256i", sizeof(__m256i), 32);
    CHECK_U("sizeof __m512bh", sizeof(__m512bh), 64);
    CHECK_U("sizeof __m256bh", sizeof(__m256bh), 32);
    CHECK_U("sizeof __mmask16", sizeof(__mmask16), 2);
    CHECK_U("sizeof __mmask32", sizeof(__mmask32), 4);

    /* arrays of vectors initialised from intrinsics, as the kernels do */
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_set1_ps(1.f), _mm512_setzero_ps(), _mm512_set1_ps(2.f)};
    CHECK_FBITS("array init", acc[3].f32[15], 2.f);
    acc[0] = acc[3];
    CHECK_FBITS("assign", acc[0].f32[0], 2.f);
}

static void prefetch_fn(void *arg) {
    const char *p = arg; /* points into the guard page */
    int evaluated = 0;
    _mm_prefetch(p + (evaluated++, 0), _MM_HINT_T0);
    _mm_prefetch(p, (evaluated++, _MM_HINT_NTA));
    CHECK_U("prefetch evaluates its arguments", evaluated, 2);
}

static void test_prefetch(void) {
    unsigned char *buf = t_guard_alloc(64);
    t_guarded("_mm_prefetch of an unmapped address", prefetch_fn, buf + 64);
    t_guard_free_all();
}

/* ---- loads and stores at a buffer end ---------------------------------------------- */

typedef struct {
    int n;
    unsigned char *end;
} edge_arg;

static void maskz_loadu_edge_fn(void *vp) {
    edge_arg *a = vp;
    const int n = a->n;
    /* n floats end at the guard page; mask the other 16 - n lanes */
    float *f = (float *)a->end - n;
    for (int i = 0; i < n; i++) f[i] = (float)(i + 1);
    const __mmask16 k = (__mmask16)((1u << n) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(k, f);
    for (int i = 0; i < 16; i++) CHECK_FBITS("maskz_loadu_ps", v.f32[i], i < n ? (float)(i + 1) : 0.f);
    int32_t *q = (int32_t *)a->end - n;
    for (int i = 0; i < n; i++) q[i] = i + 1;
    __m512i w = _mm512_maskz_loadu_epi32(k, q);
    for (int i = 0; i < 16; i++) CHECK_U("maskz_loadu_epi32", (uint32_t)w.i32[i], i < n ? (uint32_t)(i + 1) : 0u);
    /* 16-bit lanes: 2n elements for the 512-bit form, n for the 256-bit form */
    uint16_t *h = (uint16_t *)a->end - 2 * n;
    for (int i = 0; i < 2 * n; i++) h[i] = (uint16_t)(0xa000 + i);
    const __mmask32 k32 = 2 * n >= 32 ? 0xffffffffu : (__mmask32)((1u << (2 * n)) - 1u);
    __m512i e = _mm512_maskz_loadu_epi16(k32, h);
    for (int i = 0; i < 32; i++) CHECK_U("maskz_loadu_epi16", e.u16[i], i < 2 * n ? 0xa000u + (unsigned)i : 0u);
    uint16_t *h2 = (uint16_t *)a->end - n;
    __m256i e2 = _mm256_maskz_loadu_epi16(k, h2);
    for (int i = 0; i < 16; i++)
        CHECK_U("_mm256_maskz_loadu_epi16", e2.u16[i], i < n ? (unsigned)h2[i] : 0u);
}

static void mask_store_edge_fn(void *vp) {
    edge_arg *a = vp;
    const int n = a->n;
    const __mmask16 k = (__mmask16)((1u << n) - 1u);
    float *f = (float *)a->end - n;
    for (int i = 0; i < n; i++) f[i] = -1.f;
    _mm512_mask_storeu_ps(f, k, v_iota(10.f));
    for (int i = 0; i < n; i++) CHECK_FBITS("mask_storeu_ps", f[i], 10.f + (float)i);
    uint16_t *h = (uint16_t *)a->end - n;
    __m256i s;
    for (int i = 0; i < 16; i++) s.u16[i] = (uint16_t)(0x5000 + i);
    _mm256_mask_storeu_epi16(h, k, s);
    for (int i = 0; i < n; i++) CHECK_U("_mm256_mask_storeu_epi16", h[i], 0x5000u + (unsigned)i);
}

static void full_load_store_fn(void *vp) {
    unsigned char *end = vp;
    float *f = (float *)end - 16;
    for (int i = 0; i < 16; i++) f[i] = (float)i * 0.5f;
    __m512 v = _mm512_loadu_ps(f);
    CHECK_FBITS("loadu_ps", v.f32[15], 7.5f);
    _mm512_storeu_ps(f, _mm512_add_ps(v, _mm512_set1_ps(1.f)));
    CHECK_FBITS("storeu_ps", f[15], 8.5f);
    /* unaligned 64-byte accesses ending at the guard */
    unsigned char *u = end - 64;
    for (int i = 0; i < 64; i++) u[i] = (unsigned char)i;
    __m512i x = _mm512_loadu_si512(u);
    CHECK_U("loadu_si512", x.u8[63], 63);
    CHECK_U("loadu_si512 i32", x.u32[0], 0x03020100u);
    _mm512_storeu_si512(u, _mm512_set1_epi32(0x11223344));
    CHECK_U("storeu_si512", u[63], 0x11);
    _mm512_storeu_epi32(u, _mm512_set1_epi32(-3));
    __m512i y = _mm512_loadu_epi32(u);
    CHECK_U("storeu/loadu_epi32", (uint32_t)y.i32[15], (uint32_t)-3);
}

static void holes_fn(void *vp) {
    unsigned char *end = vp;
    /* a mask with holes: masked-off lanes keep their memory, load as zero */
    float *f = (float *)end - 16;
    for (int i = 0; i < 16; i++) f[i] = 100.f + (float)i;
    const __mmask16 k = 0xa5c3;
    __m512 v = _mm512_maskz_loadu_ps(k, f);
    for (int i = 0; i < 16; i++) CHECK_FBITS("maskz_loadu_ps holes", v.f32[i], (k >> i) & 1 ? 100.f + (float)i : 0.f);
    _mm512_mask_storeu_ps(f, k, _mm512_set1_ps(-1.f));
    for (int i = 0; i < 16; i++) CHECK_FBITS("mask_storeu_ps holes", f[i], (k >> i) & 1 ? -1.f : 100.f + (float)i);
    /* mask 0 on a pointer at the very end (zero-length buffer): nothing touched */
    __m512 z = _mm512_maskz_loadu_ps(0, end);
    CHECK_U("maskz_loadu_ps mask 0", z.u32[0], 0);
    _mm512_mask_storeu_ps(end, 0, v);
    __m256i z2 = _mm256_maskz_loadu_epi16(0, end);
    CHECK_U("_mm256_maskz_loadu_epi16 mask 0", z2.u16[0], 0);
    _mm256_mask_storeu_epi16(end, 0, z2);
    __m512i z3 = _mm512_maskz_loadu_epi16(0, end);
    CHECK_U("_mm512_maskz_loadu_epi16 mask 0", z3.u16[0], 0);
}

static void test_loads_stores(void) {
    char what[64];
    for (int n = 0; n <= 16; n++) {
        edge_arg a = {n, (unsigned char *)t_guard_alloc(256) + 256};
        snprintf(what, sizeof what, "masked loads, %d lanes before the guard", n);
        t_guarded(what, maskz_loadu_edge_fn, &a);
        snprintf(what, sizeof what, "masked stores, %d lanes before the guard", n);
        t_guarded(what, mask_store_edge_fn, &a);
        t_guard_free_all();
    }
    unsigned char *end = (unsigned char *)t_guard_alloc(256) + 256;
    t_guarded("full loads/stores", full_load_store_fn, end);
    t_guarded("masks with holes", holes_fn, end);
    t_guard_free_all();
}

/* ---- gather / scatter -------------------------------------------------------------- */

static void gather_fn(void *vp) {
    unsigned char *end = vp;
    /* 32 floats ending at the guard; base in the middle, so indices may be negative */
    float *f = (float *)end - 32;
    for (int i = 0; i < 32; i++) f[i] = (float)(i - 16);
    const float *base = f + 16;
    __m512i idx;
    const int32_t ix[16] = {0, -16, 15, 3, -1, 7, 7, 2, 16, 1000000, -5, 0, 16, 8, 100, -3};
    /* lanes 8, 9, 12, 14 point past the end (16 is the first element of the guard page) */
    const __mmask16 k = (__mmask16)~((1u << 8) | (1u << 9) | (1u << 12) | (1u << 14));
    for (int i = 0; i < 16; i++) idx.i32[i] = ix[i];
    __m512 src = _mm512_set1_ps(-99.f);
    __m512 g = _mm512_mask_i32gather_ps(src, k, idx, base, 4);
    for (int i = 0; i < 16; i++)
        CHECK_FBITS("mask_i32gather_ps scale 4", g.f32[i], (k >> i) & 1 ? (float)ix[i] : -99.f);
    /* scale 8: every other float */
    for (int i = 0; i < 16; i++) idx.i32[i] = i - 8; /* elements 2*(i-8) = -16..14 */
    g = _mm512_mask_i32gather_ps(src, 0xffff, idx, base, 8);
    for (int i = 0; i < 16; i++) CHECK_FBITS("mask_i32gather_ps scale 8", g.f32[i], (float)(2 * (i - 8)));
    /* unmasked gather */
    for (int i = 0; i < 16; i++) idx.i32[i] = 15 - 2 * i; /* 15 .. -15 */
    g = _mm512_i32gather_ps(idx, base, 4);
    for (int i = 0; i < 16; i++) CHECK_FBITS("i32gather_ps", g.f32[i], (float)(15 - 2 * i));
    /* scale 1: byte offsets (4-aligned here) */
    for (int i = 0; i < 16; i++) idx.i32[i] = 4 * i - 64;
    g = _mm512_mask_i32gather_ps(src, 0xffff, idx, base, 1);
    for (int i = 0; i < 16; i++) CHECK_FBITS("mask_i32gather_ps scale 1", g.f32[i], (float)(i - 16));

    /* 32-bit gather at scale 2 over 16-bit data: low half = element idx, high = idx + 1 */
    uint16_t *h = (uint16_t *)end - 40;
    for (int i = 0; i < 40; i++) h[i] = (uint16_t)(0xb000 + i);
    const int32_t hx[16] = {0, 1, 2, 38, 17, 5, 5, 9, 39, 40, 3, 11, 30, 21, -1, 7};
    /* 39 would read h[39..40] (h[40] is in the guard), 40 and -1 (with base h) too */
    const __mmask16 kh = (__mmask16)~((1u << 8) | (1u << 9) | (1u << 14));
    for (int i = 0; i < 16; i++) idx.i32[i] = hx[i];
    __m512i gi = _mm512_mask_i32gather_epi32(_mm512_set1_epi32(0x7777), kh, idx, h, 2);
    for (int i = 0; i < 16; i++) {
        const uint32_t e = (kh >> i) & 1 ? (0xb000u + (uint32_t)hx[i]) | ((0xb000u + (uint32_t)hx[i] + 1) << 16) : 0x7777u;
        CHECK_U("mask_i32gather_epi32 scale 2 (unaligned)", gi.u32[i], e);
    }
    /* scale 4 and 1 for the epi32 gather */
    int32_t *q = (int32_t *)end - 16;
    for (int i = 0; i < 16; i++) q[i] = 1000 + i;
    for (int i = 0; i < 16; i++) idx.i32[i] = (i * 7) % 16;
    gi = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), 0x0ff0, idx, q, 4);
    for (int i = 0; i < 16; i++)
        CHECK_U("mask_i32gather_epi32 scale 4", (uint32_t)gi.i32[i], (0x0ff0 >> i) & 1 ? 1000u + (uint32_t)((i * 7) % 16) : 0u);
    for (int i = 0; i < 16; i++) idx.i32[i] = 4 * i + 1; /* byte offsets, unaligned */
    gi = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), 0x7fff, idx, q, 1);
    for (int i = 0; i < 15; i++) {
        uint32_t e;
        memcpy(&e, (unsigned char *)q + 4 * i + 1, 4);
        CHECK_U("mask_i32gather_epi32 scale 1", gi.u32[i], e);
    }
    /* mask 0: no lane read at all, even with wild indices */
    for (int i = 0; i < 16; i++) idx.i32[i] = INT32_MIN + i;
    g = _mm512_mask_i32gather_ps(src, 0, idx, end, 4);
    CHECK_FBITS("mask_i32gather_ps mask 0", g.f32[3], -99.f);
    gi = _mm512_mask_i32gather_epi32(_mm512_set1_epi32(5), 0, idx, end, 2);
    CHECK_U("mask_i32gather_epi32 mask 0", gi.u32[3], 5);
}

static void scatter_fn(void *vp) {
    unsigned char *end = vp;
    float *f = (float *)end - 32;
    for (int i = 0; i < 32; i++) f[i] = -1.f;
    float *base = f + 16;
    __m512i idx;
    /* duplicates 3 (lanes 1, 5, 11) and -2 (lanes 2, 9); lanes 6, 13 point into the guard (masked) */
    const int32_t ix[16] = {0, 3, -2, 15, -16, 3, 16, 7, 8, -2, 1, 3, 4, 5000, 9, -7};
    const __mmask16 k = (__mmask16)(0xffff & ~((1u << 6) | (1u << 13) | (1u << 14)));
    for (int i = 0; i < 16; i++) idx.i32[i] = ix[i];
    _mm512_mask_i32scatter_ps(base, k, idx, v_iota(100.f), 4);
    float e[32];
    for (int i = 0; i < 32; i++) e[i] = -1.f;
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) e[16 + ix[i]] = 100.f + (float)i; /* lowest lane first: later lanes win */
    for (int i = 0; i < 32; i++) CHECK_FBITS("mask_i32scatter_ps scale 4", f[i], e[i]);
    CHECK_FBITS("scatter duplicate index: highest lane wins", base[3], 111.f);
    CHECK_FBITS("scatter duplicate index: highest lane wins (2)", base[-2], 109.f);
    CHECK_FBITS("scatter masked lane 14 not written", base[9], -1.f);
    /* scale 8 */
    for (int i = 0; i < 32; i++) f[i] = 0.f;
    for (int i = 0; i < 16; i++) idx.i32[i] = i - 8;
    _mm512_mask_i32scatter_ps(base, 0xffff, idx, v_iota(1.f), 8);
    for (int i = 0; i < 32; i++) CHECK_FBITS("mask_i32scatter_ps scale 8", f[i], i % 2 == 0 ? (float)(i / 2 + 1) : 0.f);
    /* scale 2 (unaligned float stores) */
    unsigned char *b = end - 40;
    memset(b, 0, 40);
    for (int i = 0; i < 16; i++) idx.i32[i] = i;
    _mm512_mask_i32scatter_ps(b, 0x0003, idx, _mm512_castsi512_ps(_mm512_set1_epi32(0x44332211)), 2);
    /* lane 0 writes bytes 0..3, lane 1 bytes 2..5 (after lane 0) */
    const unsigned char eb[8] = {0x11, 0x22, 0x11, 0x22, 0x33, 0x44, 0, 0};
    for (int i = 0; i < 8; i++) CHECK_U("mask_i32scatter_ps scale 2", b[i], eb[i]);
    /* mask 0 with wild indices */
    for (int i = 0; i < 16; i++) idx.i32[i] = INT32_MAX - i;
    _mm512_mask_i32scatter_ps(end, 0, idx, v_iota(0.f), 8);
}

static void test_gather_scatter(void) {
    unsigned char *end = (unsigned char *)t_guard_alloc(512) + 512;
    t_guarded("gathers", gather_fn, end);
    t_guarded("scatters", scatter_fn, end);
    t_guard_free_all();
}

/* ---- arithmetic -------------------------------------------------------------------- */

static void test_arith(void) {
    __m512 a = v_iota(1.f), b = _mm512_set1_ps(0.25f);
    __m512 s = _mm512_add_ps(a, b), d = _mm512_sub_ps(a, b), m = _mm512_mul_ps(a, b), q = _mm512_div_ps(a, b);
    for (int i = 0; i < 16; i++) {
        const float x = (float)(i + 1);
        CHECK_FBITS("add_ps", s.f32[i], x + 0.25f);
        CHECK_FBITS("sub_ps", d.f32[i], x - 0.25f);
        CHECK_FBITS("mul_ps", m.f32[i], x * 0.25f);
        CHECK_FBITS("div_ps", q.f32[i], x * 4.f);
    }
    CHECK_FBITS("div_ps 1/3", _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_set1_ps(3.f)).f32[0], 0x1.555556p-2f);
    CHECK_FBITS("sqrt_ps 2", _mm512_sqrt_ps(_mm512_set1_ps(2.f)).f32[0], 0x1.6a09e6p+0f);
    CHECK_FBITS("sqrt_ps 16", _mm512_sqrt_ps(_mm512_set1_ps(16.f)).f32[0], 4.f);
    CHECK_FBITS("sqrt_ps -0", _mm512_sqrt_ps(_mm512_set1_ps(-0.f)).f32[0], -0.f);
    CHECK_FBITS("sqrt_ps +inf", _mm512_sqrt_ps(_mm512_set1_ps(INFINITY)).f32[0], INFINITY);
    CHECK_U("sqrt_ps -1 -> default NaN", _mm512_sqrt_ps(_mm512_set1_ps(-1.f)).u32[0], DNAN);
    CHECK_U("sqrt_ps -inf -> default NaN", _mm512_sqrt_ps(_mm512_set1_ps(-INFINITY)).u32[0], DNAN);
    CHECK_U("sqrt_ps sNaN -> quieted", _mm512_sqrt_ps(_mm512_castsi512_ps(_mm512_set1_epi32(0x7f800001))).u32[0],
            0x7fc00001u);

    /* NaN rules: first NaN operand, quieted; invalid -> default NaN */
    const __m512 n1 = _mm512_castsi512_ps(_mm512_set1_epi32((int)0xff800123)); /* -sNaN */
    const __m512 n2 = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00456));      /* +qNaN */
    const __m512 one = _mm512_set1_ps(1.f), inf = _mm512_set1_ps(INFINITY), zero = _mm512_setzero_ps();
    CHECK_U("add NaN,NaN -> first", _mm512_add_ps(n1, n2).u32[0], 0xffc00123u);
    CHECK_U("add NaN,NaN -> first (2)", _mm512_add_ps(n2, n1).u32[0], 0x7fc00456u);
    CHECK_U("sub 1,NaN", _mm512_sub_ps(one, n1).u32[0], 0xffc00123u);
    CHECK_U("mul NaN,1", _mm512_mul_ps(n2, one).u32[0], 0x7fc00456u);
    CHECK_U("div 1,NaN", _mm512_div_ps(one, n2).u32[0], 0x7fc00456u);
    CHECK_U("inf - inf", _mm512_sub_ps(inf, inf).u32[0], DNAN);
    CHECK_U("inf + -inf", _mm512_add_ps(inf, _mm512_set1_ps(-INFINITY)).u32[0], DNAN);
    CHECK_U("0 * inf", _mm512_mul_ps(zero, inf).u32[0], DNAN);
    CHECK_U("0 / 0", _mm512_div_ps(zero, zero).u32[0], DNAN);
    CHECK_U("inf / inf", _mm512_div_ps(inf, inf).u32[0], DNAN);
    CHECK_FBITS("1 / 0", _mm512_div_ps(one, zero).f32[0], INFINITY);
    CHECK_FBITS("1 / -0", _mm512_div_ps(one, _mm512_set1_ps(-0.f)).f32[0], -INFINITY);
    CHECK_FBITS("denormal add", _mm512_add_ps(_mm512_set1_ps(0x1p-149f), _mm512_set1_ps(0x1p-149f)).f32[0], 0x1p-148f);

    /* fmadd is fused: (1 + 2^-12)^2 - (1 + 2^-11) = 2^-24 exactly; unfused would give 0 */
    const __m512 u = _mm512_set1_ps(1.f + 0x1p-12f);
    CHECK_FBITS("fmadd_ps single rounding", _mm512_fmadd_ps(u, u, _mm512_set1_ps(-(1.f + 0x1p-11f))).f32[7], 0x1p-24f);
    CHECK_FBITS("mul then add (two roundings)",
                _mm512_add_ps(_mm512_mul_ps(u, u), _mm512_set1_ps(-(1.f + 0x1p-11f))).f32[7], 0.f);
    __m512 f = _mm512_fmadd_ps(a, _mm512_set1_ps(2.f), _mm512_set1_ps(0.5f));
    for (int i = 0; i < 16; i++) CHECK_FBITS("fmadd_ps", f.f32[i], 2.f * (float)(i + 1) + 0.5f);
    CHECK_U("fmadd 0*inf+1", _mm512_fmadd_ps(zero, inf, one).u32[0], DNAN);
    CHECK_U("fmadd NaN in c", _mm512_fmadd_ps(one, one, n2).u32[0], 0x7fc00456u);
    CHECK_U("fmadd NaN priority a", _mm512_fmadd_ps(n1, one, n2).u32[0], 0xffc00123u);
    CHECK_FBITS("fmadd overflow cancelled", _mm512_fmadd_ps(_mm512_set1_ps(0x1p64f), _mm512_set1_ps(0x1p64f),
                                                            _mm512_set1_ps(-FLT_MAX)).f32[0], 0x1p104f);
}

static void test_minmax(void) {
    const uint32_t A[16] = {0x3f800000, 0x40000000, QNAN, 0x3f800000, 0x00000000, 0x80000000, PINF, NINF,
                            0x7f800001, 0xbf800000, QNAN, 0x00000001, 0x40400000, 0xc0400000, 0x3f800000, 0x80000000};
    const uint32_t B[16] = {0x40000000, 0x3f800000, 0x3f800000, 0xffc00001, 0x80000000, 0x00000000, 0x3f800000,
                            0x3f800000, 0x40000000, 0x7f800002, 0xffc00003, 0x80000001, 0x40400000, 0xc0400000,
                            0x3f800000, 0x80000000};
    /* max: a > b ? a : b ; min: a < b ? a : b (NaN or equal -> b, bits untouched) */
    const uint32_t MX[16] = {0x40000000, 0x40000000, 0x3f800000, 0xffc00001, 0x80000000, 0x00000000, PINF,
                             0x3f800000, 0x40000000, 0x7f800002, 0xffc00003, 0x00000001, 0x40400000, 0xc0400000,
                             0x3f800000, 0x80000000};
    const uint32_t MN[16] = {0x3f800000, 0x3f800000, 0x3f800000, 0xffc00001, 0x80000000, 0x00000000, 0x3f800000,
                             NINF, 0x40000000, 0x7f800002, 0xffc00003, 0x80000001, 0x40400000, 0xc0400000,
                             0x3f800000, 0x80000000};
    __m512 a = v_bits(A), b = v_bits(B);
    __m512 mx = _mm512_max_ps(a, b), mn = _mm512_min_ps(a, b);
    for (int i = 0; i < 16; i++) {
        CHECK_U("max_ps", mx.u32[i], MX[i]);
        CHECK_U("min_ps", mn.u32[i], MN[i]);
    }
}

static void test_reduce(void) {
    CHECK_FBITS("reduce_add_ps 1..16", _mm512_reduce_add_ps(v_iota(1.f)), 136.f);
    /* GCC's tree: t3[i] = a[8+i] + a[i]; t6[i] = t3[4+i] + t3[i]; (t6[0] + t6[2]) + (t6[1] + t6[3]).
     * a0 = 2^24, a8 = a4 = a2 = a1 = a3 = 1: 2^24+1 rounds to 2^24 three times on lane 0,
     * while lanes 1 and 3 meet first: 2^24 + 2. A left-to-right sum gives 2^24. */
    __m512 v = _mm512_setzero_ps();
    v.f32[0] = 0x1p24f;
    v.f32[8] = v.f32[4] = v.f32[2] = v.f32[1] = v.f32[3] = 1.f;
    CHECK_FBITS("reduce_add_ps tree order", _mm512_reduce_add_ps(v), 16777218.f);
    __m512 w = _mm512_setzero_ps();
    w.f32[15] = 0x1p24f;
    w.f32[7] = w.f32[14] = w.f32[0] = w.f32[1] = 1.f;
    /* t3 = {1, 1, 0, 0, 0, 0, 1, 2^24 + 1 -> 2^24}, t6 = {1, 1, 1, 2^24},
     * t8 = {2, 2^24 + 1 -> 2^24}, sum 2^24 + 2 */
    CHECK_FBITS("reduce_add_ps tree order (2)", _mm512_reduce_add_ps(w), 16777218.f);
    /* the 64-bit step pairs lanes {0,2} and {1,3}: t6 = {2^24, 1, 0, 1} gives 2^24 + (1 + 1);
     * pairing {0,1} and {2,3} would give 2^24 */
    __m512 x = _mm512_setzero_ps();
    x.f32[0] = 0x1p24f;
    x.f32[1] = x.f32[3] = 1.f;
    CHECK_FBITS("reduce_add_ps tree order (3)", _mm512_reduce_add_ps(x), 16777218.f);
    CHECK_U("reduce_add_ps NaN", t_f2u(_mm512_reduce_add_ps(_mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)))) & 0x7fc00000u,
            0x7fc00000u);

    __m512 m = v_iota(-8.f);
    m.f32[11] = 42.f;
    CHECK_FBITS("reduce_max_ps", _mm512_reduce_max_ps(m), 42.f);
    CHECK_FBITS("reduce_max_ps all negative", _mm512_reduce_max_ps(v_iota(-100.f)), -85.f);
    CHECK_FBITS("reduce_max_ps -inf", _mm512_reduce_max_ps(_mm512_set1_ps(-INFINITY)), -INFINITY);
    /* zeros of both signs: max keeps the second operand on ties, per GCC's tree that is the low half */
    __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < 8; i++) z.u32[i] = 0x80000000u;
    CHECK_U("reduce_max_ps signed zeros", t_f2u(_mm512_reduce_max_ps(z)), 0x80000000u);
    /* 64-bit step: t8[0] = max(t6[0], t6[2]) with t6 = {+0, -1, -0, -1} keeps the second (-0) */
    __m512 y = _mm512_set1_ps(-INFINITY);
    y.f32[0] = 0.f, y.f32[1] = -1.f, y.f32[2] = -0.f, y.f32[3] = -1.f;
    CHECK_U("reduce_max_ps operand order", t_f2u(_mm512_reduce_max_ps(y)), 0x80000000u);
}

/* ---- compare / blend / permute -------------------------------------------------------- */

static void test_cmp(void) {
    /* 8 pairs, repeated in lanes 8..15 */
    const uint32_t A8[8] = {0x3f800000, 0x40000000, 0x3f800000, QNAN, 0x3f800000, 0x7f800001, 0x00000000, NINF};
    const uint32_t B8[8] = {0x40000000, 0x3f800000, 0x3f800000, 0x3f800000, 0xffc00000, QNAN, 0x80000000, PINF};
    uint32_t A[16], B[16];
    for (int i = 0; i < 16; i++) A[i] = A8[i % 8], B[i] = B8[i % 8];
    const __m512 a = v_bits(A), b = v_bits(B);
    /* lanes: (1,2) (2,1) (1,1) (NaN,1) (1,NaN) (NaN,NaN) (+0,-0) (-inf,+inf) */
    struct {
        int p;
        const char *name;
        unsigned m8;
    } T[] = {
        {_CMP_EQ_OQ, "EQ_OQ", 0x44},   {_CMP_LT_OS, "LT_OS", 0x81},     {_CMP_LE_OS, "LE_OS", 0xc5},
        {_CMP_UNORD_Q, "UNORD_Q", 0x38}, {_CMP_NEQ_UQ, "NEQ_UQ", 0xbb}, {_CMP_NLT_US, "NLT_US", 0x7e},
        {_CMP_NLE_US, "NLE_US", 0x3a}, {_CMP_ORD_Q, "ORD_Q", 0xc7},     {_CMP_EQ_UQ, "EQ_UQ", 0x7c},
        {_CMP_NGE_US, "NGE_US", 0xb9}, {_CMP_NGT_US, "NGT_US", 0xfd},   {_CMP_FALSE_OQ, "FALSE_OQ", 0x00},
        {_CMP_NEQ_OQ, "NEQ_OQ", 0x83}, {_CMP_GE_OS, "GE_OS", 0x46},     {_CMP_GT_OS, "GT_OS", 0x02},
        {_CMP_TRUE_UQ, "TRUE_UQ", 0xff}, {_CMP_EQ_OS, "EQ_OS", 0x44},   {_CMP_LT_OQ, "LT_OQ", 0x81},
        {_CMP_LE_OQ, "LE_OQ", 0xc5},   {_CMP_UNORD_S, "UNORD_S", 0x38}, {_CMP_NEQ_US, "NEQ_US", 0xbb},
        {_CMP_NLT_UQ, "NLT_UQ", 0x7e}, {_CMP_NLE_UQ, "NLE_UQ", 0x3a},   {_CMP_ORD_S, "ORD_S", 0xc7},
        {_CMP_EQ_US, "EQ_US", 0x7c},   {_CMP_NGE_UQ, "NGE_UQ", 0xb9},   {_CMP_NGT_UQ, "NGT_UQ", 0xfd},
        {_CMP_FALSE_OS, "FALSE_OS", 0x00}, {_CMP_NEQ_OS, "NEQ_OS", 0x83}, {_CMP_GE_OQ, "GE_OQ", 0x46},
        {_CMP_GT_OQ, "GT_OQ", 0x02},   {_CMP_TRUE_US, "TRUE_US", 0xff},
    };
    const int nt = (int)(sizeof T / sizeof T[0]);
    CHECK_U("all 32 predicates listed", nt, 32);
    for (int t = 0; t < nt; t++) {
        char what[48];
        snprintf(what, sizeof what, "cmp_ps_mask %s (0x%02x)", T[t].name, T[t].p);
        CHECK_U(what, _mm512_cmp_ps_mask(a, b, T[t].p), T[t].m8 | (T[t].m8 << 8));
    }
    /* values of the constants (Intel) */
    CHECK_U("_CMP_NEQ_OQ", _CMP_NEQ_OQ, 0x0c);
    CHECK_U("_CMP_GT_OQ", _CMP_GT_OQ, 0x1e);
    CHECK_U("_CMP_UNORD_Q", _CMP_UNORD_Q, 0x03);
    CHECK_U("_CMP_GE_OQ", _CMP_GE_OQ, 0x1d);
    CHECK_U("_CMP_LT_OQ", _CMP_LT_OQ, 0x11);
    CHECK_U("_CMP_LE_OQ", _CMP_LE_OQ, 0x12);
    CHECK_U("_MM_HINT_T0", _MM_HINT_T0, 3);

    /* an invalid predicate aborts */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile int bad = 32;
        (void)_mm512_cmp_ps_mask(a, b, bad);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK_U("cmp_ps_mask predicate 32 aborts", WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, 1);
    pid = fork();
    if (pid == 0) {
        volatile int bad = 3;
        static const float dummy[16];
        (void)_mm512_i32gather_ps(_mm512_setzero_si512(), dummy, bad);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    CHECK_U("gather scale 3 aborts", WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, 1);
}

static void test_blend_mov_permute(void) {
    const __m512 a = v_iota(0.f), b = v_iota(100.f);
    const __mmask16 k = 0x3c5a;
    __m512 bl = _mm512_mask_blend_ps(k, a, b), mv = _mm512_mask_mov_ps(a, k, b), mz = _mm512_maskz_mov_ps(k, b);
    __m512i bi = _mm512_mask_blend_epi32(k, _mm512_set1_epi32(1), _mm512_set1_epi32(2));
    for (int i = 0; i < 16; i++) {
        const int on = (k >> i) & 1;
        CHECK_FBITS("mask_blend_ps", bl.f32[i], on ? 100.f + (float)i : (float)i);
        CHECK_FBITS("mask_mov_ps", mv.f32[i], on ? 100.f + (float)i : (float)i);
        CHECK_FBITS("maskz_mov_ps", mz.f32[i], on ? 100.f + (float)i : 0.f);
        CHECK_U("mask_blend_epi32", (uint32_t)bi.i32[i], on ? 2u : 1u);
    }
    /* blend moves bits: a NaN payload survives */
    __m512 nb = _mm512_mask_blend_ps(0xffff, a, _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800001)));
    CHECK_U("mask_blend_ps keeps sNaN", nb.u32[4], 0x7f800001u);

    /* permute_ps: element j of each 128-bit lane takes lane element (imm >> 2j) & 3 */
    const struct {
        int imm;
        int sel[4];
    } P[] = {{0x1b, {3, 2, 1, 0}}, {0x00, {0, 0, 0, 0}}, {0xb1, {1, 0, 3, 2}}, {0xe4, {0, 1, 2, 3}}, {0x4e, {2, 3, 0, 1}},
             {0xff, {3, 3, 3, 3}}, {0x39, {1, 2, 3, 0}}};
    __m512 r;
#define PERM_CASE(I)                                                                                 \
    r = _mm512_permute_ps(a, I);                                                                     \
    for (int t = 0; t < (int)(sizeof P / sizeof P[0]); t++)                                          \
        if (P[t].imm == I)                                                                           \
            for (int i = 0; i < 16; i++) CHECK_FBITS("permute_ps " #I, r.f32[i], (float)(4 * (i / 4) + P[t].sel[i % 4]));
    PERM_CASE(0x1b)
    PERM_CASE(0x00)
    PERM_CASE(0xb1)
    PERM_CASE(0xe4)
    PERM_CASE(0x4e)
    PERM_CASE(0xff)
    PERM_CASE(0x39)
#undef PERM_CASE

    /* shuffle_f32x4: blocks 0,1 from a[imm&3], a[(imm>>2)&3]; 2,3 from b[(imm>>4)&3], b[(imm>>6)&3] */
    const struct {
        int imm;
        int blk[4];
    } S[] = {{0x4e, {2, 3, 0, 1}}, {0xb1, {1, 0, 3, 2}}, {0x44, {0, 1, 0, 1}}, {0xee, {2, 3, 2, 3}}, {0xe4, {0, 1, 2, 3}},
             {0x1b, {3, 2, 1, 0}}};
    for (int t = 0; t < (int)(sizeof S / sizeof S[0]); t++) {
        r = _mm512_shuffle_f32x4(a, b, S[t].imm);
        for (int i = 0; i < 16; i++) {
            const int blk = i / 4, src = 4 * S[t].blk[blk] + i % 4;
            CHECK_FBITS("shuffle_f32x4", r.f32[i], blk < 2 ? (float)src : 100.f + (float)src);
        }
    }
}

/* ---- integer -------------------------------------------------------------------------- */

static void test_integer(void) {
    __m512i a, b;
    for (int i = 0; i < 16; i++) {
        a.u32[i] = 0x80000001u + (uint32_t)i;
        b.u32[i] = 0x7fffffffu;
    }
    __m512i s = _mm512_add_epi32(a, b);
    for (int i = 0; i < 16; i++) CHECK_U("add_epi32 wraps", s.u32[i], (uint32_t)i);
    __m512i x = _mm512_set1_epi32((int)0xf0f0ff00u), y = _mm512_set1_epi32(0x0ff00ff0);
    CHECK_U("and_si512", _mm512_and_si512(x, y).u32[3], 0x00f00f00u);
    CHECK_U("or_si512", _mm512_or_si512(x, y).u32[3], 0xfff0fff0u);
    CHECK_U("and_si512 i64", _mm512_and_si512(x, y).u64[7], 0x00f00f0000f00f00ull);

    const __m512i v = _mm512_set1_epi32((int)0x80000001u);
    const unsigned counts[] = {0, 1, 16, 31, 32, 33, 255};
    for (int c = 0; c < 7; c++) {
        const unsigned n = counts[c];
        const uint32_t el = n > 31 ? 0u : 0x80000001u << n, er = n > 31 ? 0u : 0x80000001u >> n;
        CHECK_U("slli_epi32", _mm512_slli_epi32(v, n).u32[9], el);
        CHECK_U("srli_epi32 (logical)", _mm512_srli_epi32(v, n).u32[9], er);
    }

    __m512i w;
    const uint32_t W[16] = {0x12345678, 0xffffffff, 0x00018000, 0x7fff, 0x8000, 0, 1, 0xabcd0000,
                            0xdeadbeef, 2, 3, 4, 5, 6, 7, 0x10000};
    for (int i = 0; i < 16; i++) w.u32[i] = W[i];
    __m256i t = _mm512_cvtepi32_epi16(w);
    for (int i = 0; i < 16; i++) CHECK_U("cvtepi32_epi16 truncates", t.u16[i], W[i] & 0xffffu);
    __m256i h;
    for (int i = 0; i < 16; i++) h.u16[i] = (uint16_t)(i == 0 ? 0xffff : i == 1 ? 0x8000 : 0x0100 * i + 1);
    __m512i e = _mm512_cvtepu16_epi32(h);
    for (int i = 0; i < 16; i++) CHECK_U("cvtepu16_epi32 zero-extends", e.u32[i], h.u16[i]);
    CHECK_U("cvtepu16_epi32 0xffff", (uint32_t)e.i32[0], 65535u);
}

/* ---- bf16 -------------------------------------------------------------------------------- */

static void test_bf16(void) {
    /* input bits -> expected bf16 (VCVTNEPS2BF16) */
    const uint32_t in[16] = {
        0x3f800000, /* 1.0 */
        0x3f808000, /* tie, even below -> down */
        0x3f818000, /* tie, odd below -> up */
        0x3f808001, /* above tie -> up */
        0x3f807fff, /* below tie -> down */
        0x7f800001, /* sNaN, payload only in the low bits -> quiet 0x7fc0 */
        0xffa00000, /* -sNaN -> 0xffe0 */
        0x7fc00000, /* qNaN */
        0x7f800000, /* +inf */
        0xff800000, /* -inf */
        0x7f7fffff, /* FLT_MAX rounds to +inf */
        0x00000001, /* smallest denormal -> +0 */
        0x807fffff, /* largest negative denormal -> -0 (not -FLT_MIN) */
        0x80000000, /* -0 */
        0x00800000, /* FLT_MIN stays */
        0x0080ffff, /* normal just above FLT_MIN: rounds up */
    };
    const uint16_t out[16] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80, 0x7fc0, 0xffe0, 0x7fc0,
                              0x7f80, 0xff80, 0x7f80, 0x0000, 0x8000, 0x8000, 0x0080, 0x0081};
    const __m512 v = v_bits(in);
    __m256bh h = _mm512_cvtneps_pbh(v);
    for (int i = 0; i < 16; i++) CHECK_U("cvtneps_pbh", h.u16[i], out[i]);
    /* 2ps: elements 0..15 from the second operand, 16..31 from the first */
    __m512bh h2 = _mm512_cvtne2ps_pbh(_mm512_set1_ps(-2.f), v);
    for (int i = 0; i < 16; i++) {
        CHECK_U("cvtne2ps_pbh low half from b", h2.u16[i], out[i]);
        CHECK_U("cvtne2ps_pbh high half from a", h2.u16[16 + i], 0xc000);
    }

    /* dpbf16_ps: dst[j] = (src[j] + a[2j+1] b[2j+1]) + a[2j] b[2j], each step one FMA */
    __m512bh a, b;
    for (int i = 0; i < 32; i++) a.u16[i] = b.u16[i] = 0;
    __m512 src = _mm512_setzero_ps();
    /* lane 0: 1 + 3*5 + 2*4 = 24 */
    src.f32[0] = 1.f;
    a.u16[0] = 0x4000, b.u16[0] = 0x4080; /* 2, 4 */
    a.u16[1] = 0x4040, b.u16[1] = 0x40a0; /* 3, 5 */
    /* lane 1: order: src 2^24, odd product 1, even product 2 -> (2^24 + 1 = 2^24) + 2 = 2^24 + 2;
     * even first or pairwise would give 2^24 + 4 */
    src.f32[1] = 0x1p24f;
    a.u16[2] = 0x4000, b.u16[2] = 0x3f80; /* 2 * 1 */
    a.u16[3] = 0x3f80, b.u16[3] = 0x3f80; /* 1 * 1 */
    /* lane 2: denormal bf16 input treated as zero: 0x0001 * 2^100 (= 2^-33 otherwise) */
    a.u16[4] = 0x0001, b.u16[4] = 0x7180;
    /* lane 3: product 2^-70 * 2^-70 = 2^-140 is denormal in fp32 -> flushed to zero */
    a.u16[6] = 0x1c80, b.u16[6] = 0x1c80;
    /* lane 4: negative denormal result -> -0 */
    a.u16[8] = 0x9c80, b.u16[8] = 0x1c80;
    /* lane 5: denormal accumulator treated as zero */
    src.u32[5] = 0x00000001;
    /* lane 6: overflowing product cancelled inside the FMA: 2^64*2^64 - FLT_MAX = 2^104 */
    a.u16[13] = 0x5f80, b.u16[13] = 0x5f80; /* odd pair: 2^64, 2^64 */
    src.f32[6] = -FLT_MAX;
    /* lane 7: NaN priority: a.lo over b.hi */
    a.u16[14] = 0x7f81, b.u16[15] = 0x7fc5;
    /* lane 8: NaN only in src -> quieted src */
    src.u32[8] = 0x7f800003;
    /* lane 9: inf * 0 -> default NaN */
    a.u16[19] = 0x7f80;
    /* lane 10: b.lo NaN beats a.hi NaN */
    b.u16[20] = 0xff81, a.u16[21] = 0x7fc1;
    /* lane 11: plain: -1.5 + 0.5*(-3) + 8*0.125 = -2 */
    src.f32[11] = -1.5f;
    a.u16[22] = 0x4100, b.u16[22] = 0x3e00; /* 8, 0.125 */
    a.u16[23] = 0x3f00, b.u16[23] = 0xc040; /* 0.5, -3 */
    /* lane 12: the first step's result 2^-127 is denormal and flushed before the second
     * step adds 2^-126 (without the flush: 1.5 * 2^-126) */
    a.u16[25] = 0x2000, b.u16[25] = 0x1f80;   /* 2^-63 * 2^-64 = 2^-127 -> flushed to 0 */
    a.u16[24] = 0x2000, b.u16[24] = 0x2000;   /* 2^-63 * 2^-63 = 2^-126 = FLT_MIN, normal */
    /* lane 13: inf - inf across the two steps -> default NaN */
    a.u16[27] = 0x7f80, b.u16[27] = 0x3f80; /* +inf */
    a.u16[26] = 0xff80, b.u16[26] = 0x3f80; /* -inf */
    __m512 r = _mm512_dpbf16_ps(src, a, b);
    CHECK_FBITS("dpbf16_ps plain", r.f32[0], 24.f);
    CHECK_FBITS("dpbf16_ps order: odd pair first", r.f32[1], 16777218.f);
    CHECK_FBITS("dpbf16_ps DAZ on bf16 input", r.f32[2], 0.f);
    CHECK_FBITS("dpbf16_ps FTZ of a denormal result", r.f32[3], 0.f);
    CHECK_FBITS("dpbf16_ps FTZ keeps the sign", r.f32[4], -0.f);
    CHECK_FBITS("dpbf16_ps DAZ on the accumulator", r.f32[5], 0.f);
    CHECK_FBITS("dpbf16_ps fused (no intermediate overflow)", r.f32[6], 0x1p104f);
    CHECK_U("dpbf16_ps NaN priority a.lo", r.u32[7], 0x7fc10000u);
    CHECK_U("dpbf16_ps NaN from src", r.u32[8], 0x7fc00003u);
    CHECK_U("dpbf16_ps inf*0", r.u32[9], DNAN);
    CHECK_U("dpbf16_ps NaN priority b.lo", r.u32[10], 0xffc10000u);
    CHECK_FBITS("dpbf16_ps plain (2)", r.f32[11], -2.f);
    CHECK_FBITS("dpbf16_ps FTZ between the steps", r.f32[12], 0x1p-126f);
    CHECK_U("dpbf16_ps inf - inf", r.u32[13], DNAN);
    CHECK_FBITS("dpbf16_ps zero lanes", r.f32[15], 0.f);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_install_fault_handler();
    test_set_cast();
    test_prefetch();
    test_loads_stores();
    test_gather_scatter();
    test_arith();
    test_minmax();
    test_reduce();
    test_cmp();
    test_blend_mov_permute();
    test_integer();
    test_bf16();
    if (t_fails) {
        printf("UNIT FAILED %ld/%ld\n", t_fails, t_checks);
        return 1;
    }
    printf("UNIT OK %ld\n", t_checks);
    return 0;
}
