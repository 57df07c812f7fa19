/* emu_kernels.c: the AVX-512 layer kernels (layer_avx512.h, layer_avx512_bf16.h)
 * against the scalar kernels (layer_scalar.h), and the AVX-512 DWTA/WTA hash
 * (hash_avx512.h) against the scalar hash (hash_scalar.h).
 *
 * Built two ways from this one source:
 *   -DSLIDE_EMULATE_AVX512: the kernels run on the portable emulation
 *       (emu/avx512_emu.h); works on any x86-64.
 *   without it: the kernels use the real intrinsics under their target
 *       attributes; the program checks the CPU first and prints
 *       "SKIP kernels-native: CPU lacks AVX-512" where it cannot run them.
 *
 * Every case runs the AVX-512 kernel and the scalar kernel on the same inputs.
 * Forward and backward are compared with an error bound derived from the same
 * sums taken over absolute values (the summation orders differ, and the
 * AVX-512 kernels use FMA): |avx - scalar| <= (terms + 2) * 2^-23 * sum|terms|;
 * outputs no term touched must be bit-identical. Adam (weights, moments,
 * zeroed gradient and bf16 copy) and hash values must be identical.
 *
 * Every buffer ends at a PROT_NONE page, so a kernel that reads or writes
 * past the end of an input, an output or a matrix (e.g. a tail lane that is
 * not masked) faults; the fault is reported as a failure of that case.
 *
 * Usage: emu_kernels [--dump FILE] [--probe-denormal-adam]
 *   --dump FILE: write one line "<case> <64-bit hash of the AVX-512 kernel's
 *       outputs>" per case, to compare the emulated and the native build.
 *   --probe-denormal-adam: only run the Adam bf16-copy check on denormal
 *       weights (see the report of that probe).
 * Output: FAIL lines and "KERNELS OK <cases>" or "KERNELS FAILED <n>/<cases>".
 */
#include "slide/hash_avx512.h"
#include "slide/layer_avx512_bf16.h"
#include "slide/layer_scalar.h"

#include "emu_test_util.h"

static FILE *g_dump;
static int g_have_f = 1, g_have_bf16 = 1;
static long g_cases;

/* ---- problems ------------------------------------------------------------------ */

enum { MODE_VAL, MODE_ABS, MODE_ONE };

typedef struct {
    int transposed; /* layout: 0 row-major (rows = outputs), 1 transposed (rows = inputs) */
    int32_t D;      /* input dimension */
    int32_t N;      /* output neurons */
    int32_t nx;     /* input entries (dense: nx == D) */
    int32_t n;      /* active outputs (ids == NULL: n == N) */
    int sparse, with_ids;
    int32_t prefetch;
} shape;

typedef struct {
    slide_mat m;
    int32_t *xi, *ids;
    float *xv, *g, *gW, *gb, *dx;
    size_t wlen; /* rows * ld */
} prob;

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static void shuffle(t_rng *r, int32_t *a, int32_t n) {
    for (int32_t i = n - 1; i > 0; i--) {
        const int32_t j = (int32_t)t_below(r, (uint32_t)i + 1);
        const int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static float *falloc(size_t n) { return t_guard_alloc(n * sizeof(float)); }

/* Buffers only the scalar reference touches need no guard page (and mmap
 * churn costs time): zeroed heap blocks, freed by free_all(). */
#define MAX_PLAIN 512
static void *g_plain[MAX_PLAIN];
static int g_nplain;

static void *palloc(size_t bytes) {
    if (g_nplain == MAX_PLAIN) abort();
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) abort();
    return g_plain[g_nplain++] = p;
}

static float *pfalloc(size_t n) { return palloc(n * sizeof(float)); }

static void free_all(void) {
    t_guard_free_all();
    for (int i = 0; i < g_nplain; i++) free(g_plain[i]);
    g_nplain = 0;
}

/* Builds a problem. MODE_VAL: random values; MODE_ABS: |values of src|;
 * MODE_ONE: weights, inputs and output gradients 1, accumulators 0 (sums
 * then count their terms). Index sets (xi, ids) are shared with src. */
static void prob_make(prob *p, const shape *s, int mode, const prob *src, t_rng *r) {
    memset(p, 0, sizeof *p);
    const int32_t rows = s->transposed ? s->D : s->N, cols = s->transposed ? s->N : s->D;
    const int64_t ld = round_up(cols > 0 ? cols : 1, 32);
    p->m.rows = rows;
    p->m.cols = cols;
    p->m.ld = ld;
    p->m.prefetch = s->prefetch;
    p->wlen = (size_t)rows * (size_t)ld;
    /* the problem the AVX-512 kernels run on is guarded; the |.| and counting ones feed the scalar kernel */
    void *(*alloc)(size_t) = mode == MODE_VAL ? t_guard_alloc : palloc;
    p->m.w = alloc(p->wlen * sizeof(float));
    p->m.wb = alloc((p->wlen + 32) * sizeof(bf16_t)); /* 32 spare elements */
    p->m.b = alloc((size_t)s->N * sizeof(float));
    p->xv = alloc((size_t)s->nx * sizeof(float));
    p->g = alloc((size_t)s->n * sizeof(float));
    p->gW = alloc(p->wlen * sizeof(float));
    p->gb = alloc((size_t)s->N * sizeof(float));
    p->dx = alloc((size_t)s->nx * sizeof(float));
    if (mode == MODE_VAL) {
        if (s->sparse) {
            int32_t *all = malloc(sizeof(int32_t) * (size_t)(s->D + 1));
            for (int32_t i = 0; i < s->D; i++) all[i] = i;
            shuffle(r, all, s->D);
            qsort(all, (size_t)s->nx, sizeof(int32_t), cmp_i32);
            p->xi = t_guard_alloc(sizeof(int32_t) * (size_t)s->nx);
            memcpy(p->xi, all, sizeof(int32_t) * (size_t)s->nx);
            free(all);
        }
        if (s->with_ids) {
            int32_t *all = malloc(sizeof(int32_t) * (size_t)(s->N + 1));
            for (int32_t i = 0; i < s->N; i++) all[i] = i;
            shuffle(r, all, s->N); /* active neurons in arbitrary order */
            p->ids = t_guard_alloc(sizeof(int32_t) * (size_t)s->n);
            memcpy(p->ids, all, sizeof(int32_t) * (size_t)s->n);
            free(all);
        }
        for (int32_t i = 0; i < rows; i++)
            for (int32_t k = 0; k < cols; k++) p->m.w[i * ld + k] = t_uniform(r); /* padding stays 0 */
        for (int32_t i = 0; i < s->N; i++) p->m.b[i] = t_uniform(r), p->gb[i] = 0.5f * t_uniform(r);
        for (int32_t k = 0; k < s->nx; k++) p->xv[k] = t_uniform(r), p->dx[k] = 0.5f * t_uniform(r);
        for (int32_t i = 0; i < s->n; i++) p->g[i] = t_uniform(r);
        for (int32_t i = 0; i < rows; i++)
            for (int32_t k = 0; k < cols; k++) p->gW[i * ld + k] = 0.5f * t_uniform(r);
    } else {
        p->xi = src->xi;
        p->ids = src->ids;
        const int one = mode == MODE_ONE;
        for (size_t e = 0; e < p->wlen; e++) {
            p->m.w[e] = one ? (src->m.w[e] != 0.f ? 1.f : 0.f) : fabsf(src->m.w[e]);
            p->gW[e] = one ? 0.f : fabsf(src->gW[e]);
        }
        for (int32_t i = 0; i < s->N; i++) {
            p->m.b[i] = one ? 0.f : fabsf(src->m.b[i]);
            p->gb[i] = one ? 0.f : fabsf(src->gb[i]);
        }
        for (int32_t k = 0; k < s->nx; k++) {
            p->xv[k] = one ? 1.f : fabsf(src->xv[k]);
            p->dx[k] = one ? 0.f : fabsf(src->dx[k]);
        }
        for (int32_t i = 0; i < s->n; i++) p->g[i] = one ? 1.f : fabsf(src->g[i]);
    }
    for (size_t e = 0; e < p->wlen; e++) p->m.wb[e] = slide_f32_to_bf16(p->m.w[e]);
}

static float *pfdup(const float *a, size_t n) {
    float *d = pfalloc(n);
    memcpy(d, a, n * sizeof(float));
    return d;
}

static float *fdup(const float *a, size_t n) {
    float *d = falloc(n);
    memcpy(d, a, n * sizeof(float));
    return d;
}

/* ---- comparison ------------------------------------------------------------------- */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static char g_case[160];

static int g_case_failed;

static void case_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void case_fail(const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!g_case_failed) t_fail("%s: %s", g_case, msg);
    g_case_failed = 1;
}

/* avx vs ref with the bound from mag (sums of |terms|) and cnt (term counts) */
static void compare_tol(const char *what, const float *avx, const float *ref, const float *mag, const float *cnt,
                        size_t n) {
    for (size_t i = 0; i < n; i++) {
        t_checks++;
        if (cnt[i] == 0.f) {
            if (t_f2u(avx[i]) != t_f2u(ref[i])) {
                case_fail("%s[%zu] = %.9g, scalar %.9g: must be identical (no term)", what, i, (double)avx[i],
                          (double)ref[i]);
                return;
            }
            continue;
        }
        const double tol = ((double)cnt[i] + 2.0) * 0x1p-23 * (double)mag[i];
        const double d = fabs((double)avx[i] - (double)ref[i]);
        if (!(d <= tol)) {
            case_fail("%s[%zu] = %.9g, scalar %.9g, |diff| %.3g > bound %.3g (%g terms)", what, i, (double)avx[i],
                      (double)ref[i], d, tol, (double)cnt[i]);
            return;
        }
    }
}

static void compare_exact(const char *what, const void *avx, const void *ref, size_t bytes, size_t elem) {
    t_checks++;
    if (memcmp(avx, ref, bytes) == 0) return;
    for (size_t i = 0; i < bytes; i += elem)
        if (memcmp((const char *)avx + i, (const char *)ref + i, elem)) {
            uint32_t a = 0, b = 0;
            memcpy(&a, (const char *)avx + i, elem);
            memcpy(&b, (const char *)ref + i, elem);
            case_fail("%s[%zu]: 0x%x, scalar 0x%x (must be identical)", what, i / elem, a, b);
            return;
        }
}

static void dump_line(uint64_t h) {
    if (g_dump) fprintf(g_dump, "%s %016llx\n", g_case, (unsigned long long)h);
}

/* ---- forward ------------------------------------------------------------------------- */

typedef struct {
    const prob *P, *A, *O;
    const shape *s;
    slide_fwd_rows_fn avx, ref; /* same signature for rows and cols */
    float *za, *zr, *zm, *zc;
} fwd_job;

static void fwd_run(void *vp) {
    fwd_job *j = vp;
    const shape *s = j->s;
    j->ref(&j->P->m, j->P->xi, j->P->xv, s->nx, j->P->ids, s->n, j->zr);
    j->ref(&j->A->m, j->A->xi, j->A->xv, s->nx, j->A->ids, s->n, j->zm);
    j->ref(&j->O->m, j->O->xi, j->O->xv, s->nx, j->O->ids, s->n, j->zc);
    j->avx(&j->P->m, j->P->xi, j->P->xv, s->nx, j->P->ids, s->n, j->za);
}

static void test_fwd(const char *name, slide_fwd_rows_fn avx, slide_fwd_rows_fn ref, const shape *s, const prob *P,
                     const prob *A, const prob *O) {
    snprintf(g_case, sizeof g_case, "%s D=%d N=%d nx=%d n=%d %s ids=%s pf=%d", name, s->D, s->N, s->nx, s->n,
             s->sparse ? "sparse" : "dense", s->with_ids ? "yes" : "NULL", s->prefetch);
    g_case_failed = 0;
    g_cases++;
    fwd_job j = {P, A, O, s, avx, ref, falloc((size_t)s->n), pfalloc((size_t)s->n), pfalloc((size_t)s->n),
                 pfalloc((size_t)s->n)};
    for (int32_t i = 0; i < s->n; i++) j.za[i] = NAN; /* an output the kernel forgets stays NaN */
    float *w0 = pfdup(P->m.w, P->wlen), *x0 = pfdup(P->xv, (size_t)s->nx);
    if (!t_guarded(g_case, fwd_run, &j)) return;
    compare_tol("z", j.za, j.zr, j.zm, j.zc, (size_t)s->n);
    compare_exact("w (input, must not change)", P->m.w, w0, P->wlen * 4, 4);
    compare_exact("xv (input, must not change)", P->xv, x0, (size_t)s->nx * 4, 4);
    dump_line(hash_bytes(0xcbf29ce484222325ULL, j.za, (size_t)s->n * 4));
}

/* ---- backward ------------------------------------------------------------------------ */

typedef struct {
    const prob *P, *A, *O;
    const shape *s;
    slide_bwd_rows_fn avx, ref;
    int with_dx;
    float *gWa, *gba, *dxa, *gWr, *gbr, *dxr, *gWm, *gbm, *dxm, *gWc, *gbc, *dxc;
} bwd_job;

static void bwd_run(void *vp) {
    bwd_job *j = vp;
    const shape *s = j->s;
    const int d = j->with_dx;
    j->ref(&j->P->m, j->gWr, j->gbr, j->P->xi, j->P->xv, s->nx, j->P->ids, j->P->g, s->n, d ? j->dxr : NULL);
    j->ref(&j->A->m, j->gWm, j->gbm, j->A->xi, j->A->xv, s->nx, j->A->ids, j->A->g, s->n, d ? j->dxm : NULL);
    j->ref(&j->O->m, j->gWc, j->gbc, j->O->xi, j->O->xv, s->nx, j->O->ids, j->O->g, s->n, d ? j->dxc : NULL);
    j->avx(&j->P->m, j->gWa, j->gba, j->P->xi, j->P->xv, s->nx, j->P->ids, j->P->g, s->n, d ? j->dxa : NULL);
}

static void test_bwd(const char *name, slide_bwd_rows_fn avx, slide_bwd_rows_fn ref, const shape *s, const prob *P,
                     const prob *A, const prob *O, int with_dx) {
    snprintf(g_case, sizeof g_case, "%s D=%d N=%d nx=%d n=%d %s ids=%s pf=%d dx=%s", name, s->D, s->N, s->nx, s->n,
             s->sparse ? "sparse" : "dense", s->with_ids ? "yes" : "NULL", s->prefetch, with_dx ? "yes" : "NULL");
    g_case_failed = 0;
    g_cases++;
    const size_t W = P->wlen, NB = (size_t)s->N, NX = (size_t)s->nx;
    bwd_job j = {P, A, O, s, avx, ref, with_dx,
                 fdup(P->gW, W), fdup(P->gb, NB), fdup(P->dx, NX), pfdup(P->gW, W), pfdup(P->gb, NB), pfdup(P->dx, NX),
                 pfdup(A->gW, W), pfdup(A->gb, NB), pfdup(A->dx, NX), pfdup(O->gW, W), pfdup(O->gb, NB), pfdup(O->dx, NX)};
    if (!t_guarded(g_case, bwd_run, &j)) return;
    compare_tol("gW", j.gWa, j.gWr, j.gWm, j.gWc, W);
    compare_tol("gb", j.gba, j.gbr, j.gbm, j.gbc, NB);
    if (with_dx) compare_tol("dx", j.dxa, j.dxr, j.dxm, j.dxc, NX);
    uint64_t h = hash_bytes(0xcbf29ce484222325ULL, j.gWa, W * 4);
    h = hash_bytes(h, j.gba, NB * 4);
    if (with_dx) h = hash_bytes(h, j.dxa, NX * 4);
    dump_line(h);
}

/* ---- Adam ------------------------------------------------------------------------------ */

typedef struct {
    slide_adam_fn fn;
    float *w, *m, *v, *g;
    bf16_t *wb;
    int64_t ld;
    int32_t cols;
    const int32_t *rows;
    int64_t nrows;
    const slide_adam_params *p;
} adam_job;

static void adam_run(void *vp) {
    adam_job *j = vp;
    j->fn(j->w, j->wb, j->m, j->v, j->g, j->ld, j->cols, j->rows, j->nrows, j->p);
}

static void test_adam(const char *name, slide_adam_fn avx, int32_t cols, int with_rows, int with_wb, int denormal,
                      t_rng *r) {
    snprintf(g_case, sizeof g_case, "%s cols=%d rows=%s wb=%s%s", name, cols, with_rows ? "list" : "NULL",
             with_wb ? "yes" : "NULL", denormal ? " denormal-weights" : "");
    g_case_failed = 0;
    g_cases++;
    const int64_t ld = round_up(cols, 16) + 16, R = 7;
    const size_t L = (size_t)(R * ld);
    float *w = pfalloc(L), *m = pfalloc(L), *v = pfalloc(L), *g = pfalloc(L);
    bf16_t *wb = palloc((L + 32) * sizeof(bf16_t));
    for (size_t e = 0; e < L; e++) {
        w[e] = denormal ? t_u2f((t_next(r) & 0x007fffffu) | (t_next(r) & 0x80000000u)) /* |w| < FLT_MIN */
                        : t_uniform(r);
        /* denormal probe: zero step (m = g = 0), so the weights stay denormal */
        m[e] = denormal ? 0.f : 0.1f * t_uniform(r);
        v[e] = 0.01f * fabsf(t_uniform(r));
        g[e] = denormal ? 0.f : t_uniform(r);
        wb[e] = (bf16_t)t_next(r);
    }
    static const int32_t rows[3] = {5, 0, 3};
    const double b1 = 0.9, b2 = 0.999;
    const slide_adam_params p = {1e-3f, (float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), 1e-8f};
    float *w2 = fdup(w, L), *m2 = fdup(m, L), *v2 = fdup(v, L), *g2 = fdup(g, L);
    bf16_t *wb2 = t_guard_alloc((L + 32) * sizeof(bf16_t));
    memcpy(wb2, wb, (L + 32) * sizeof(bf16_t));
    const int32_t *rl = with_rows ? rows : NULL;
    const int64_t nr = with_rows ? 3 : R;
    slide_adam_f32_scalar(w, with_wb ? wb : NULL, m, v, g, ld, cols, rl, nr, &p);
    adam_job j = {avx, w2, m2, v2, g2, with_wb ? wb2 : NULL, ld, cols, rl, nr, &p};
    if (!t_guarded(g_case, adam_run, &j)) return;
    compare_exact("w", w2, w, L * 4, 4);
    compare_exact("m", m2, m, L * 4, 4);
    compare_exact("v", v2, v, L * 4, 4);
    compare_exact("g", g2, g, L * 4, 4);
    compare_exact("wb", wb2, wb, (L + 32) * 2, 2);
    uint64_t h = hash_bytes(0xcbf29ce484222325ULL, w2, L * 4);
    h = hash_bytes(h, m2, L * 4);
    h = hash_bytes(h, v2, L * 4);
    h = hash_bytes(h, wb2, L * 2);
    dump_line(h);
}

/* ---- hash ---------------------------------------------------------------------------------- */

typedef struct {
    const slide_hasher *hs;
    slide_hash_scratch *sc;
    const int32_t *xi;
    const float *xv;
    int32_t nx;
    uint32_t *out;
} hash_job;

static void hash_run(void *vp) {
    hash_job *j = vp;
    slide_hash_avx512(j->hs, j->sc, j->xi, j->xv, j->nx, j->out);
}

/* x: `zeros` in 8 of its values are 0 (or -0), others from `levels` distinct
 * values (few levels: many ties inside a bin). */
static void test_hash(int family, int32_t H, int32_t dim, int zeros, int levels, int sparse, t_rng *r) {
    snprintf(g_case, sizeof g_case, "hash %s avx512 H=%d dim=%d zeros=%d/8 levels=%d %s",
             family == SLIDE_HASH_DWTA ? "dwta" : "wta", H, dim, zeros, levels, sparse ? "sparse" : "dense");
    g_case_failed = 0;
    g_cases++;
    const int32_t B = 8, n_perm = (H * B + dim - 1) / dim;
    int32_t *cos = t_guard_alloc(sizeof(int32_t) * (size_t)(H * B));
    int32_t *soc = t_guard_alloc(sizeof(int32_t) * (size_t)(n_perm * dim));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)dim);
    for (int32_t p = 0; p < n_perm; p++) {
        for (int32_t c = 0; c < dim; c++) perm[c] = c;
        shuffle(r, perm, dim);
        for (int32_t i = 0; i < dim; i++) {
            const int32_t slot = p * dim + i;
            soc[(int64_t)p * dim + perm[i]] = slot;
            if (slot < H * B) cos[slot] = perm[i];
        }
    }
    free(perm);
    slide_hasher hs;
    memset(&hs, 0, sizeof hs);
    hs.family = family;
    hs.dim = dim;
    hs.K = 1;
    hs.L = H;
    hs.H = H;
    hs.bin_size = B;
    hs.bits = 3;
    hs.shift = 3;
    hs.range_pow = 10;
    hs.n_perm = n_perm;
    hs.seed = t_next(r);
    hs.coord_of_slot = cos;
    hs.slot_of_coord = soc;
    float *x = falloc((size_t)dim);
    for (int32_t c = 0; c < dim; c++) {
        if ((int)t_below(r, 8) < zeros)
            x[c] = t_below(r, 2) ? 0.f : -0.f;
        else
            x[c] = (float)((int)t_below(r, (uint32_t)levels) - levels / 2) * 0.25f + (levels > 1000 ? t_uniform(r) : 0.f);
    }
    int32_t *xi = NULL, nx = dim;
    float *xv = x;
    if (sparse) { /* the nonzeros as a sparse vector (the AVX-512 entry then runs the scalar code) */
        nx = 0;
        xi = t_guard_alloc(sizeof(int32_t) * (size_t)dim);
        xv = falloc((size_t)dim);
        for (int32_t c = 0; c < dim; c++)
            if (x[c] != 0.f) xi[nx] = c, xv[nx++] = x[c];
    }
    float *best1 = pfalloc((size_t)H), *best2 = falloc((size_t)H), *dense1 = pfalloc((size_t)dim),
          *dense2 = falloc((size_t)dim);
    int32_t *arg1 = palloc(sizeof(int32_t) * (size_t)H), *arg2 = t_guard_alloc(sizeof(int32_t) * (size_t)H);
    slide_hash_scratch sc1 = {best1, arg1, dense1}, sc2 = {best2, arg2, dense2};
    uint32_t *o1 = palloc(sizeof(uint32_t) * (size_t)H), *o2 = t_guard_alloc(sizeof(uint32_t) * (size_t)H);
    for (int32_t h = 0; h < H; h++) o2[h] = 0xdeadbeefu;
    slide_hash_scalar(&hs, &sc1, xi, xv, nx, o1);
    hash_job j = {&hs, &sc2, xi, xv, nx, o2};
    if (!t_guarded(g_case, hash_run, &j)) return;
    compare_exact("hash", o2, o1, (size_t)H * 4, 4);
    dump_line(hash_bytes(0xcbf29ce484222325ULL, o2, (size_t)H * 4));
}

static void run_hash(t_rng *r) {
    static const int32_t HS[] = {1, 2, 3, 8, 17, 50};
    static const int32_t DIMS[] = {8, 40, 300};
    for (int f = 0; f < 2; f++)
        for (int a = 0; a < 6; a++)
            for (int b = 0; b < 3; b++) {
                if (!g_have_f) continue;
                const int fam = f ? SLIDE_HASH_WTA : SLIDE_HASH_DWTA;
                test_hash(fam, HS[a], DIMS[b], 0, 100000, 0, r); /* distinct values */
                test_hash(fam, HS[a], DIMS[b], 2, 3, 0, r);      /* ties */
                test_hash(fam, HS[a], DIMS[b], 7, 5, 0, r);      /* mostly zeros: empty bins */
                test_hash(fam, HS[a], DIMS[b], 8, 5, 0, r);      /* all zeros */
                test_hash(fam, HS[a], DIMS[b], 4, 5, 1, r);      /* sparse input */
                free_all();
            }
}

/* ---- driver ----------------------------------------------------------------------------- */

static void run_shape(shape *s, t_rng *r) {
    prob P, A, O;
    prob_make(&P, s, MODE_VAL, NULL, r);
    prob_make(&A, s, MODE_ABS, &P, r);
    prob_make(&O, s, MODE_ONE, &P, r);
    if (!s->transposed) {
        if (g_have_f) {
            test_fwd("fwd_rows f32 avx512", slide_fwd_rows_f32_avx512, slide_fwd_rows_f32_scalar, s, &P, &A, &O);
            test_fwd("fwd_rows bf16 avx512", slide_fwd_rows_bf16_avx512, slide_fwd_rows_bf16_scalar, s, &P, &A, &O);
            test_fwd("fwd_rows bf16act avx512", slide_fwd_rows_bf16act_avx512, slide_fwd_rows_bf16act_scalar, s, &P,
                     &A, &O);
            for (int d = 0; d < 2; d++) {
                test_bwd("bwd_rows f32 avx512", slide_bwd_rows_f32_avx512, slide_bwd_rows_f32_scalar, s, &P, &A, &O, d);
                test_bwd("bwd_rows bf16 avx512", slide_bwd_rows_bf16_avx512, slide_bwd_rows_bf16_scalar, s, &P, &A, &O,
                         d);
            }
        }
        if (g_have_bf16) {
            test_fwd("fwd_rows bf16 avx512_bf16", slide_fwd_rows_bf16_avx512_bf16, slide_fwd_rows_bf16_scalar, s, &P,
                     &A, &O);
            test_fwd("fwd_rows bf16act avx512_bf16", slide_fwd_rows_bf16act_avx512_bf16,
                     slide_fwd_rows_bf16act_scalar, s, &P, &A, &O);
        }
    } else if (g_have_f) {
        test_fwd("fwd_cols f32 avx512", slide_fwd_cols_f32_avx512, slide_fwd_cols_f32_scalar, s, &P, &A, &O);
        test_fwd("fwd_cols bf16 avx512", slide_fwd_cols_bf16_avx512, slide_fwd_cols_bf16_scalar, s, &P, &A, &O);
        test_fwd("fwd_cols bf16act avx512", slide_fwd_cols_bf16act_avx512, slide_fwd_cols_bf16act_scalar, s, &P, &A,
                 &O);
        for (int d = 0; d < 2; d++) {
            test_bwd("bwd_cols f32 avx512", slide_bwd_cols_f32_avx512, slide_bwd_cols_f32_scalar, s, &P, &A, &O, d);
            test_bwd("bwd_cols bf16 avx512", slide_bwd_cols_bf16_avx512, slide_bwd_cols_bf16_scalar, s, &P, &A, &O, d);
        }
    }
    free_all();
}

static const int32_t WIDTHS[] = {0, 1, 15, 16, 17, 100, 128, 129};
#define NW ((int)(sizeof WIDTHS / sizeof WIDTHS[0]))
static const int32_t OUTS[] = {0, 1, 4, 5, 15, 16, 17, 129};
#define NO ((int)(sizeof OUTS / sizeof OUTS[0]))

static void run_layers(t_rng *r) {
    long combo = 0;
    for (int layout = 0; layout < 2; layout++)
        for (int a = 0; a < NW; a++)
            for (int b = 0; b < NO; b++)
                for (int sp = 0; sp < 2; sp++)
                    for (int id = 0; id < 2; id++) {
                        shape s = {0};
                        s.transposed = layout;
                        s.nx = WIDTHS[a];
                        s.n = OUTS[b];
                        s.sparse = sp;
                        s.with_ids = id;
                        s.D = sp ? 2 * s.nx + 3 : s.nx;
                        s.N = id ? 2 * s.n + 5 : s.n;
                        s.prefetch = (combo++ % 3 == 1) ? 3 : 0;
                        run_shape(&s, r);
                    }
    /* an input longer than the bf16 kernel's conversion block (SLIDE_XB = 2048) */
    for (int layout = 0; layout < 2; layout++)
        for (int id = 0; id < 2; id++)
            for (int sp = 0; sp < 2; sp++) {
                shape s = {0};
                s.transposed = layout;
                s.nx = 2081;
                s.n = 5;
                s.sparse = sp;
                s.with_ids = id;
                s.D = sp ? 2 * s.nx + 3 : s.nx;
                s.N = id ? 2 * s.n + 5 : s.n;
                s.prefetch = 2;
                run_shape(&s, r);
            }
}

static void run_adam(t_rng *r) {
    static const int32_t C[] = {1, 15, 16, 17, 100, 128, 129};
    for (int c = 0; c < 7; c++)
        for (int rows = 0; rows < 2; rows++)
            for (int wb = 0; wb < 2; wb++) {
                if (g_have_f) test_adam("adam f32 avx512", slide_adam_f32_avx512, C[c], rows, wb, 0, r);
                free_all();
            }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int probe = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
            g_dump = fopen(argv[++i], "w");
            if (!g_dump) {
                perror("dump");
                return 2;
            }
        } else if (!strcmp(argv[i], "--probe-denormal-adam")) {
            probe = 1;
        } else {
            fprintf(stderr, "usage: %s [--dump FILE] [--probe-denormal-adam]\n", argv[0]);
            return 2;
        }
    }
#if !defined(SLIDE_EMULATE_AVX512)
    __builtin_cpu_init();
    g_have_f = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    g_have_bf16 = g_have_f && __builtin_cpu_supports("avx512bf16");
    if (!g_have_f) {
        printf("SKIP kernels-native: CPU lacks AVX-512\n");
        return 0;
    }
    if (!g_have_bf16) printf("SKIP kernels-native-bf16: CPU lacks AVX-512 BF16\n");
    printf("MODE native\n");
#else
    printf("MODE emulated\n");
#endif
    t_install_fault_handler();
    (void)slide_bucket_ids; /* unused here */
    t_rng r = {2024};
    if (probe) {
        /* the bf16 copy Adam writes for denormal weights (|w| < FLT_MIN) */
        for (int wb = 1; wb < 2; wb++) {
            if (g_have_f) test_adam("adam f32 avx512", slide_adam_f32_avx512, 100, 0, wb, 1, &r);
        }
    } else {
        run_layers(&r);
        run_adam(&r);
        run_hash(&r);
    }
    if (g_dump) fclose(g_dump);
    if (t_fails) {
        printf("KERNELS FAILED %ld failures, %ld cases, %ld checks\n", t_fails, g_cases, t_checks);
        return 1;
    }
    printf("KERNELS OK %ld cases, %ld checks\n", g_cases, t_checks);
    return 0;
}
