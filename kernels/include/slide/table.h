/* table.h: compact LSH hash tables.
 *
 * L tables of 2^range_pow buckets. Instead of 2^range_pow x capacity slots
 * (6.7 GB at the reference settings) each table is a bucket-sorted id array
 * plus an offsets array, rebuilt from scratch at every rehash:
 *   ids[t * n_items + offsets[t][b] .. + offsets[t][b+1])  are bucket b of table t.
 * A bucket keeps at most `capacity` ids. Items are inserted in id order;
 * FIFO keeps the last `capacity` inserted (a ring buffer's final state),
 * reservoir keeps a uniform sample (Algorithm R, counter-based RNG per bucket).
 */
#ifndef SLIDE_TABLE_H
#define SLIDE_TABLE_H

#include "common.h"

enum { SLIDE_BUCKET_FIFO = 0, SLIDE_BUCKET_RESERVOIR = 1 };

typedef struct {
    int32_t L;
    int32_t range_pow;
    int32_t capacity;
    int32_t policy;
    int32_t n_items;
    uint64_t seed;
    uint32_t *offsets; /* L * (2^range_pow + 1) */
    int32_t *ids;      /* L * n_items (each table uses a prefix of its stretch) */
} slide_tables;

SLIDE_INLINE const int32_t *slide_bucket(const slide_tables *T, int32_t t, uint32_t b, int32_t *len) {
    const uint32_t *off = T->offsets + (int64_t)t * (((int64_t)1 << T->range_pow) + 1);
    *len = (int32_t)(off[b + 1] - off[b]);
    return T->ids + (int64_t)t * T->n_items + off[b];
}

/* Build table t from bucket ids bids[0..n_items) (the t-th row of the
 * L x n_items bucket-id matrix). `seen` is scratch of 2^range_pow uint32. */
static void slide_table_build_one(slide_tables *T, int32_t t, const uint32_t *bids, uint32_t *seen) {
    const int64_t nb = (int64_t)1 << T->range_pow;
    const uint32_t cap = (uint32_t)T->capacity;
    uint32_t *off = T->offsets + (int64_t)t * (nb + 1);
    int32_t *ids = T->ids + (int64_t)t * T->n_items;
    const int32_t n = T->n_items;

    /* full counts into seen[], capped counts into offsets (exclusive scan) */
    memset(seen, 0, (size_t)nb * sizeof(uint32_t));
    for (int32_t j = 0; j < n; j++) seen[bids[j]]++;
    uint32_t run = 0;
    for (int64_t b = 0; b < nb; b++) {
        off[b] = run;
        run += seen[b] < cap ? seen[b] : cap;
    }
    off[nb] = run;

    /* second pass: seen[b] becomes the running rank within the bucket */
    if (T->policy == SLIDE_BUCKET_FIFO) {
        /* keep ranks >= count - cap: the last `cap` inserted, in insertion order */
        for (int32_t j = 0; j < n; j++) {
            const uint32_t b = bids[j];
            const uint32_t kept = off[b + 1] - off[b];
            /* seen[b] counts down from the full count */
            const uint32_t left = seen[b]--; /* items of b not yet placed, this one included */
            if (left <= kept) ids[off[b] + (kept - left)] = j;
        }
    } else {
        memset(seen, 0, (size_t)nb * sizeof(uint32_t));
        for (int32_t j = 0; j < n; j++) {
            const uint32_t b = bids[j];
            const uint32_t r = seen[b]++;
            if (r < cap) {
                ids[off[b] + r] = j;
            } else {
                slide_rng g = {slide_key(T->seed ^ ((uint64_t)t << 40), b), r};
                const uint32_t k = slide_rng_below(&g, r + 1);
                if (k < cap) ids[off[b] + k] = j;
            }
        }
    }
}

#endif
