/* hash_scalar.h: the LSH hash families, plain C.
 *
 * A hasher turns a vector (dense, or sparse with sorted unique indices) into
 * H = K*L small integers of `bits` bits each; K consecutive ones form one
 * bucket id of a table (slide_bucket_ids). Every family hashes the sparse and
 * the dense encoding of the same vector identically: zeros never take part
 * except in WTA, whose sparse path scatters into a dense scratch.
 *
 * Families
 *   DWTA    densified winner-take-all (Chen & Shrivastava 2018): H bins of
 *           bin_size coordinates drawn from random permutations; a hash is
 *           the position of the largest non-zero coordinate in its bin; empty
 *           bins borrow from a non-empty bin chosen by a per-bin probe sequence.
 *   WTA     winner-take-all (Yagnik et al. 2011): the same bins, zeros take
 *           part, no densification.
 *   SRP     signed random projections (SimHash) with sparse {-1,0,+1}
 *           coefficients of density 1/3; one bit per hash.
 *   MINHASH densified one-permutation MinHash over the support (Shrivastava
 *           2017): coordinates fall into H bins by a hash; a bin keeps its
 *           minimum; empty bins borrow as in DWTA; `bits` low bits are kept.
 */
#ifndef SLIDE_HASH_SCALAR_H
#define SLIDE_HASH_SCALAR_H

#include "common.h"

enum { SLIDE_HASH_DWTA = 0, SLIDE_HASH_WTA = 1, SLIDE_HASH_SRP = 2, SLIDE_HASH_MINHASH = 3 };

#define SLIDE_DENSIFY_TRIES 64

typedef struct {
    int32_t family;
    int32_t dim;        /* input dimension */
    int32_t K, L, H;    /* H = K * L */
    int32_t bin_size;   /* DWTA/WTA: coordinates per bin (power of two) */
    int32_t bits;       /* bits per hash value */
    int32_t shift;      /* bits per hash when composing a bucket id (compat: 2 for DWTA) */
    int32_t range_pow;  /* tables have 2^range_pow buckets */
    int32_t n_perm;     /* DWTA/WTA: permutations used */
    uint64_t seed;
    const int32_t *coord_of_slot; /* DWTA/WTA: H*bin_size coordinates, bin-major */
    const int32_t *slot_of_coord; /* DWTA/WTA: n_perm*dim slots (>= H*bin_size: unused) */
    const int8_t *srp_coef;       /* SRP: H*dim coefficients, or NULL (derived on the fly) */
} slide_hasher;

/* Scratch a thread needs for one hash evaluation. */
typedef struct {
    float *best;      /* H */
    int32_t *arg;     /* H */
    float *dense;     /* dim, zeroed; WTA sparse path only (else NULL) */
} slide_hash_scratch;

/* SRP coefficient of (hash h, coordinate c): +1, -1 with probability 1/6 each, else 0. */
SLIDE_INLINE int32_t slide_srp_coef(uint64_t seed, int32_t h, int32_t c) {
    const uint32_t u = slide_hash3(seed, (uint64_t)h, (uint64_t)c) % 6u;
    return u == 0 ? 1 : (u == 1 ? -1 : 0);
}

/* Empty bins (arg < 0) borrow the value of a non-empty bin found by probing
 * hash3(seed, bin, attempt). Only originally non-empty bins are borrowed from,
 * so the result does not depend on the order bins are filled in. */
static void slide_densify(const slide_hasher *hs, const int32_t *arg, uint32_t *out) {
    const uint64_t dseed = hs->seed ^ 0x5eed0fdeadbeefULL;
    for (int32_t h = 0; h < hs->H; h++) {
        if (arg[h] >= 0) continue;
        uint32_t val = 0;
        for (int32_t a = 0; a < SLIDE_DENSIFY_TRIES; a++) {
            const int32_t j = (int32_t)(slide_hash3(dseed, (uint64_t)h, (uint64_t)a) % (uint32_t)hs->H);
            if (arg[j] >= 0) {
                val = out[j];
                break;
            }
        }
        out[h] = val;
    }
}

/* ---- DWTA / WTA ------------------------------------------------------------ */

/* Bin-major pass over a dense vector. skip_zeros: DWTA semantics. Ties go to
 * the earliest slot (strict >), which the sparse path reproduces explicitly. */
SLIDE_INLINE void slide_wta_bin_scalar(const slide_hasher *hs, const float *x, int skip_zeros, int32_t h,
                                       float *best, int32_t *arg) {
    const int32_t B = hs->bin_size;
    const int32_t *cs = hs->coord_of_slot + (int64_t)h * B;
    float bv = -INFINITY;
    int32_t ba = -1;
    for (int32_t s = 0; s < B; s++) {
        const float v = x[cs[s]];
        if (skip_zeros && v == 0.f) continue;
        if (ba < 0 || v > bv) {
            bv = v;
            ba = s;
        }
    }
    best[h] = bv;
    arg[h] = ba;
}

static void slide_wta_dense_scalar(const slide_hasher *hs, const float *x, int skip_zeros, float *best,
                                   int32_t *arg) {
    for (int32_t h = 0; h < hs->H; h++) slide_wta_bin_scalar(hs, x, skip_zeros, h, best, arg);
}

static void slide_dwta_sparse_scalar(const slide_hasher *hs, const int32_t *xi, const float *xv, int32_t nx,
                                     float *best, int32_t *arg) {
    const int32_t B = hs->bin_size, H = hs->H;
    const int32_t used = H * B;
    for (int32_t h = 0; h < H; h++) {
        best[h] = -INFINITY;
        arg[h] = -1;
    }
    for (int32_t k = 0; k < nx; k++) {
        const float v = xv[k];
        if (v == 0.f) continue;
        const int32_t c = xi[k];
        for (int32_t p = 0; p < hs->n_perm; p++) {
            const int32_t slot = hs->slot_of_coord[(int64_t)p * hs->dim + c];
            if (slot >= used) continue;
            const int32_t h = slot / B, s = slot % B;
            if (arg[h] < 0 || v > best[h] || (v == best[h] && s < arg[h])) {
                best[h] = v;
                arg[h] = s;
            }
        }
    }
}

/* ---- SRP ------------------------------------------------------------------- */

static void slide_srp_dense_scalar(const slide_hasher *hs, const float *x, uint32_t *out) {
    for (int32_t h = 0; h < hs->H; h++) {
        float s = 0.f;
        if (hs->srp_coef) {
            const int8_t *c = hs->srp_coef + (int64_t)h * hs->dim;
            for (int32_t k = 0; k < hs->dim; k++)
                if (c[k] && x[k] != 0.f) s += c[k] > 0 ? x[k] : -x[k];
        } else {
            for (int32_t k = 0; k < hs->dim; k++) {
                if (x[k] == 0.f) continue;
                const int32_t c = slide_srp_coef(hs->seed, h, k);
                if (c) s += c > 0 ? x[k] : -x[k];
            }
        }
        out[h] = s > 0.f;
    }
}

static void slide_srp_sparse_scalar(const slide_hasher *hs, const int32_t *xi, const float *xv, int32_t nx,
                                    float *acc, uint32_t *out) {
    for (int32_t h = 0; h < hs->H; h++) acc[h] = 0.f;
    /* Same summation order as the dense path: coordinates ascending, per hash. */
    for (int32_t k = 0; k < nx; k++) {
        const float v = xv[k];
        if (v == 0.f) continue;
        for (int32_t h = 0; h < hs->H; h++) {
            const int32_t c = hs->srp_coef ? hs->srp_coef[(int64_t)h * hs->dim + xi[k]] : slide_srp_coef(hs->seed, h, xi[k]);
            if (c) acc[h] += c > 0 ? v : -v;
        }
    }
    for (int32_t h = 0; h < hs->H; h++) out[h] = acc[h] > 0.f;
}

/* ---- densified MinHash ---------------------------------------------------- */

SLIDE_INLINE void slide_minhash_add(const slide_hasher *hs, int32_t c, uint32_t *minv, int32_t *arg) {
    const uint32_t u = slide_hash3(hs->seed, (uint64_t)c, 0);
    const int32_t h = (int32_t)(((uint64_t)u * (uint64_t)hs->H) >> 32);
    const uint32_t val = slide_hash3(hs->seed, (uint64_t)c, 1);
    if (arg[h] < 0 || val < minv[h] || (val == minv[h] && c < arg[h])) {
        minv[h] = val;
        arg[h] = c;
    }
}

static void slide_minhash_scalar(const slide_hasher *hs, const int32_t *xi, const float *xv, int32_t nx,
                                 int32_t *arg, uint32_t *out) {
    const int32_t H = hs->H;
    for (int32_t h = 0; h < H; h++) arg[h] = -1;
    if (xi) {
        for (int32_t k = 0; k < nx; k++)
            if (xv[k] != 0.f) slide_minhash_add(hs, xi[k], out, arg);
    } else {
        for (int32_t k = 0; k < nx; k++)
            if (xv[k] != 0.f) slide_minhash_add(hs, k, out, arg);
    }
    const uint32_t mask = (hs->bits >= 32) ? 0xffffffffu : ((1u << hs->bits) - 1u);
    for (int32_t h = 0; h < H; h++)
        if (arg[h] >= 0) out[h] &= mask;
    slide_densify(hs, arg, out);
}

/* ---- entry points ---------------------------------------------------------- */

/* Hash a vector: xi == NULL means dense with nx == dim. out: H values. */
static void slide_hash_scalar(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi, const float *xv,
                              int32_t nx, uint32_t *out) {
    switch (hs->family) {
    case SLIDE_HASH_DWTA:
    case SLIDE_HASH_WTA: {
        const int wta = hs->family == SLIDE_HASH_WTA;
        if (!xi) {
            slide_wta_dense_scalar(hs, xv, !wta, sc->best, sc->arg);
        } else if (!wta) {
            slide_dwta_sparse_scalar(hs, xi, xv, nx, sc->best, sc->arg);
        } else {
            /* WTA compares zeros too: scatter, evaluate dense, clear. */
            for (int32_t k = 0; k < nx; k++) sc->dense[xi[k]] = xv[k];
            slide_wta_dense_scalar(hs, sc->dense, 0, sc->best, sc->arg);
            for (int32_t k = 0; k < nx; k++) sc->dense[xi[k]] = 0.f;
        }
        for (int32_t h = 0; h < hs->H; h++) out[h] = sc->arg[h] < 0 ? 0u : (uint32_t)sc->arg[h];
        if (!wta) slide_densify(hs, sc->arg, out);
        break;
    }
    case SLIDE_HASH_SRP:
        if (xi)
            slide_srp_sparse_scalar(hs, xi, xv, nx, sc->best, out);
        else
            slide_srp_dense_scalar(hs, xv, out);
        break;
    default:
        slide_minhash_scalar(hs, xi, xv, nx, sc->arg, out);
        break;
    }
}

/* Hash rows j0..j1-1 of a row-major matrix (rehashing a layer's neurons):
 * out gets H values per row. The scalar version is the per-row loop. */
typedef void (*slide_hash_rows_fn)(const slide_hasher *hs, slide_hash_scratch *sc, const float *w, int64_t ld,
                                   int32_t j0, int32_t j1, uint32_t *out);

static void slide_hash_rows_scalar(const slide_hasher *hs, slide_hash_scratch *sc, const float *w, int64_t ld,
                                   int32_t j0, int32_t j1, uint32_t *out) {
    for (int32_t j = j0; j < j1; j++)
        slide_hash_scalar(hs, sc, NULL, w + (int64_t)j * ld, hs->dim, out + (int64_t)(j - j0) * hs->H);
}

/* Compose K hash values per table into L bucket ids in [0, 2^range_pow).
 * Horner form of sum_j h_j << ((K-1-j) * shift). When the K values carry more
 * bits than the table has, the id is a multiplicative fold of all of them
 * (rather than a mask that would drop the first hashes); with compat shift
 * (2 bits for 3-bit DWTA values) the sum is masked exactly as the reference. */
static void slide_bucket_ids(const slide_hasher *hs, const uint32_t *hashes, uint32_t *ids) {
    const int32_t K = hs->K;
    const uint64_t mask = (1ULL << hs->range_pow) - 1ULL;
    const int fold = (int64_t)K * hs->shift > hs->range_pow && hs->shift >= hs->bits;
    for (int32_t t = 0; t < hs->L; t++) {
        uint64_t acc = 0;
        const uint32_t *h = hashes + (int64_t)t * K;
        for (int32_t j = 0; j < K; j++) acc = (acc << hs->shift) + h[j];
        if (fold)
            ids[t] = (uint32_t)((acc * 0x9e3779b97f4a7c15ULL) >> (64 - hs->range_pow));
        else
            ids[t] = (uint32_t)(acc & mask);
    }
}

#endif
