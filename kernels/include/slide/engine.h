/* engine.h: one SLIDE sample, forward and backward, over a stack of layers.
 *
 * Owns: the per-sample algorithm (active-set selection by LSH, forward,
 * softmax cross-entropy, backward, marking touched rows for sparse Adam).
 * Does not own: memory (Python allocates every buffer and validates every
 * index before pointers reach here), the batch loop and threads (Cython
 * prange in _core.pyx), the choice of kernels (the selector fills the
 * function pointers).
 *
 * Shared parameters, per-thread scratch (slide_thread): HOGWILD in the form
 * of fastText's Model::State. Gradient buffers are shared and written without
 * locks, as in the reference implementation.
 */
#ifndef SLIDE_ENGINE_H
#define SLIDE_ENGINE_H

#include "hash_scalar.h"
#include "kernel_api.h"
#include "table.h"

#define SLIDE_MAX_LAYERS 8

enum { SLIDE_LAYOUT_ROWMAJOR = 0, SLIDE_LAYOUT_TRANSPOSED = 1 };
enum {
    SLIDE_SAMPLE_VANILLA = 0,   /* every candidate from the L buckets */
    SLIDE_SAMPLE_TOPK = 1,      /* the top_k candidates by collision count */
    SLIDE_SAMPLE_THRESHOLD = 2, /* candidates seen in >= threshold tables */
    SLIDE_SAMPLE_UNIFORM = 3,   /* no LSH: uniform random neurons (a control) */
    SLIDE_SAMPLE_EXACT = 4      /* oracle: top_k by exact inner product */
};
enum { SLIDE_PHASE_HASH = 0, SLIDE_PHASE_QUERY, SLIDE_PHASE_FORWARD, SLIDE_PHASE_BACKWARD, SLIDE_N_PHASES };

typedef void (*slide_hash_fn)(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi, const float *xv,
                              int32_t nx, uint32_t *out);

typedef struct {
    int32_t n_in, n_out;
    int32_t layout;
    int32_t lsh;        /* active set chosen by LSH sampling (else: all neurons) */
    int32_t sampling;   /* SLIDE_SAMPLE_* */
    int32_t top_k;
    int32_t threshold;
    int32_t min_active; /* random top-up to at least this many */
    const float *hash_mu; /* rehash hashes (w_j - hash_mu), n_in floats; NULL: w_j as it is (see rehash in _core) */
    slide_mat W;
    float *gW, *gb;
    float *mW, *vW, *mb, *vb; /* Adam moments */
    /* kernels, chosen by the selector */
    slide_fwd_rows_fn fwd_rows;
    slide_bwd_rows_fn bwd_rows;
    slide_fwd_cols_fn fwd_cols;
    slide_bwd_cols_fn bwd_cols;
    slide_adam_fn adam;
    slide_hash_fn hash;
    slide_hash_rows_fn hash_rows;
    slide_hasher hs;
    slide_tables tables;
    /* sparse-update bookkeeping: batch id that last touched a storage row / a bias */
    int32_t *row_stamp;
    int32_t *bias_stamp; /* transposed layout only; row-major rows and biases coincide */
    int32_t all_rows_touched;
    int32_t all_bias_touched;
} slide_layer;

typedef struct {
    int32_t n_layers;
    int32_t compat;      /* reference quirks: softmax max-shift starts at 0 */
    int32_t track_touched;
    slide_layer layers[SLIDE_MAX_LAYERS];
} slide_net;

typedef struct {
    /* per layer: active set and activations, output gradient, input gradient */
    int32_t *ids[SLIDE_MAX_LAYERS];
    float *val[SLIDE_MAX_LAYERS];
    float *grad[SLIDE_MAX_LAYERS];
    float *dx[SLIDE_MAX_LAYERS];
    int32_t n[SLIDE_MAX_LAYERS];
    int32_t dense[SLIDE_MAX_LAYERS]; /* ids == NULL: all neurons active */
    /* LSH candidate de-duplication without maps: one word per neuron holding
     * the epoch (query) that last took it and its collision count in that
     * query (slide_mark_*): one memory access per retrieved id */
    uint32_t *mark[SLIDE_MAX_LAYERS];
    int32_t epoch[SLIDE_MAX_LAYERS];
    uint32_t *hashes; /* max H */
    uint32_t *buckets; /* max L */
    slide_hash_scratch hsc[SLIDE_MAX_LAYERS];
    float *sel_val;   /* top-k selection scratch (max n_out) */
    int32_t *sel_id;
    int32_t hist_len;
    int32_t *hist;    /* collision-count histogram (max L + 2) */
    /* statistics */
    int64_t phase_ns[SLIDE_N_PHASES];
    int64_t active_sum[SLIDE_MAX_LAYERS];
    int64_t cand_sum[SLIDE_MAX_LAYERS];
    int64_t samples;
    int64_t labels_total;
    int64_t labels_found; /* true labels that LSH retrieved before being forced in */
    slide_rng rng;
} slide_thread;

/* ---- helpers ---------------------------------------------------------------- */

/* Mark a row as touched in this batch. Threads race only to store the same
 * value; the update pass later scans the stamps in row order, which gives the
 * batch's touched rows sorted and de-duplicated without any list or lock. */
SLIDE_INLINE void slide_touch(int32_t *stamp, int32_t batch, int32_t r) {
    if (stamp[r] != batch) stamp[r] = batch;
}

/* mark[id] = epoch << SLIDE_MARK_SHIFT | collision count. Counts are at most
 * L <= 4096 (Config); epochs start at 1, so 0 means "not taken". */
#define SLIDE_MARK_SHIFT 13
#define SLIDE_MARK_COUNT ((1u << SLIDE_MARK_SHIFT) - 1u)
#define SLIDE_MARK_EPOCH_MAX ((int32_t)((1u << (32 - SLIDE_MARK_SHIFT)) - 1u))

SLIDE_INLINE int slide_marked(const uint32_t *mark, int32_t id, int32_t ep) {
    return (int32_t)(mark[id] >> SLIDE_MARK_SHIFT) == ep;
}

SLIDE_INLINE int32_t slide_next_epoch(slide_thread *th, int32_t l, int32_t n_out) {
    if (th->epoch[l] >= SLIDE_MARK_EPOCH_MAX) {
        memset(th->mark[l], 0, (size_t)n_out * sizeof(uint32_t));
        th->epoch[l] = 0;
    }
    return ++th->epoch[l];
}

/* Keep the top k of (val, id) pairs, largest value first, ties by smaller id. */
SLIDE_INLINE int slide_pair_less(float va, int32_t ia, float vb, int32_t ib) {
    return va < vb || (va == vb && ia > ib);
}

static void slide_heap_sift(float *hv, int32_t *hi, int32_t k, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < k && slide_pair_less(hv[l], hi[l], hv[s], hi[s])) s = l;
        if (r < k && slide_pair_less(hv[r], hi[r], hv[s], hi[s])) s = r;
        if (s == i) return;
        float tv = hv[i]; hv[i] = hv[s]; hv[s] = tv;
        int32_t ti = hi[i]; hi[i] = hi[s]; hi[s] = ti;
        i = s;
    }
}

/* Top k of v[0..n) (skipping entries whose skip flag is set when skip != NULL);
 * writes ids (positions) sorted by descending value into out, returns count. */
static int32_t slide_topk(const float *v, int32_t n, int32_t k, float *hv, int32_t *hi, int32_t *out,
                          const uint32_t *skip_mark, int32_t skip_epoch) {
    int32_t m = 0;
    if (k <= 0) return 0;
    for (int32_t i = 0; i < n; i++) {
        if (skip_mark && slide_marked(skip_mark, i, skip_epoch)) continue;
        if (v[i] != v[i]) continue; /* NaN never ranks */
        if (m < k) {
            hv[m] = v[i];
            hi[m] = i;
            m++;
            if (m == k)
                for (int32_t j = k / 2 - 1; j >= 0; j--) slide_heap_sift(hv, hi, k, j);
        } else if (slide_pair_less(hv[0], hi[0], v[i], i)) {
            hv[0] = v[i];
            hi[0] = i;
            slide_heap_sift(hv, hi, k, 0);
        }
    }
    if (m < k)
        for (int32_t j = m / 2 - 1; j >= 0; j--) slide_heap_sift(hv, hi, m, j);
    /* pop ascending into out from the back */
    for (int32_t c = m; c > 0; c--) {
        out[c - 1] = hi[0];
        hv[0] = hv[c - 1];
        hi[0] = hi[c - 1];
        slide_heap_sift(hv, hi, c - 1, 0);
    }
    return m;
}

/* Layer forward over the active set of layer l, input (xi, xv, nx). */
SLIDE_INLINE void slide_layer_forward(const slide_layer *L, const int32_t *xi, const float *xv, int32_t nx,
                                      const int32_t *ids, int32_t n, float *z) {
    if (L->layout == SLIDE_LAYOUT_ROWMAJOR)
        L->fwd_rows(&L->W, xi, xv, nx, ids, n, z);
    else
        L->fwd_cols(&L->W, xi, xv, nx, ids, n, z);
}

/* ---- active-set selection --------------------------------------------------- */

/* Choose the active neurons of LSH layer l for input (xi, xv, nx). In training
 * the sample's labels (output layer) are placed first. topup: fill up to
 * min_active with random neurons (0: what the tables chose, no more; the
 * collision count of each chosen id is then in th->mark[l][id] & SLIDE_MARK_COUNT). Returns
 * the count. */
static int32_t slide_select_ex(const slide_net *net, slide_thread *th, int32_t l, const int32_t *xi, const float *xv,
                               int32_t nx, const int32_t *labels, int32_t n_labels, int32_t *n_forced, int topup) {
    const slide_layer *L = &net->layers[l];
    const int32_t n_out = L->n_out;
    int32_t *ids = th->ids[l];
    uint32_t *mark = th->mark[l];
    const int32_t ep = slide_next_epoch(th, l, n_out);
    const uint32_t tag = (uint32_t)ep << SLIDE_MARK_SHIFT;
    int32_t n = 0;
    int64_t t0 = slide_now_ns();

    for (int32_t j = 0; j < n_labels; j++) {
        const int32_t y = labels[j];
        if (slide_marked(mark, y, ep)) continue;
        mark[y] = tag; /* count 0 */
        ids[n++] = y;
    }
    *n_forced = n;
    const int32_t n0 = n;

    if (L->sampling <= SLIDE_SAMPLE_THRESHOLD) {
        const slide_hasher *hs = &L->hs;
        L->hash(hs, &th->hsc[l], xi, xv, nx, th->hashes);
        slide_bucket_ids(hs, th->hashes, th->buckets);
        int64_t t1 = slide_now_ns();
        th->phase_ns[SLIDE_PHASE_HASH] += t1 - t0;
        t0 = t1;
        for (int32_t t = 0; t < hs->L; t++) {
            int32_t len;
            const int32_t *b = slide_bucket(&L->tables, t, th->buckets[t], &len);
            if (t + 1 < hs->L) { /* the next table's bucket: its offsets and first ids */
                const uint32_t *noff = L->tables.offsets + (int64_t)(t + 1) * (((int64_t)1 << L->tables.range_pow) + 1);
                __builtin_prefetch(noff + th->buckets[t + 1]);
            }
            for (int32_t q = 0; q < len; q++) {
                const int32_t id = b[q];
                const uint32_t m = mark[id];
                if ((m & ~SLIDE_MARK_COUNT) == tag) {
                    mark[id] = m + 1;
                } else {
                    mark[id] = tag | 1u;
                    ids[n++] = id;
                }
            }
        }
        for (int32_t j = 0; j < n0; j++) th->labels_found += (mark[ids[j]] & SLIDE_MARK_COUNT) > 0;
        th->cand_sum[l] += n - n0;
        if (L->sampling == SLIDE_SAMPLE_THRESHOLD) {
            int32_t w = n0;
            for (int32_t i = n0; i < n; i++)
                if ((int32_t)(mark[ids[i]] & SLIDE_MARK_COUNT) >= L->threshold) ids[w++] = ids[i];
                else mark[ids[i]] = 0; /* no longer taken: top-up may draw it */
            n = w;
        } else if (L->sampling == SLIDE_SAMPLE_TOPK && n - n0 > L->top_k) {
            /* counting selection: counts are in [1, L] */
            int32_t *hist = th->hist;
            memset(hist, 0, (size_t)th->hist_len * sizeof(int32_t));
            for (int32_t i = n0; i < n; i++) hist[mark[ids[i]] & SLIDE_MARK_COUNT]++;
            int32_t need = L->top_k, cut = th->hist_len - 1;
            while (cut > 0 && hist[cut] < need) need -= hist[cut--];
            /* keep every count > cut, and the first `need` with count == cut */
            int32_t w = n0;
            for (int32_t i = n0; i < n; i++) {
                const int32_t c = (int32_t)(mark[ids[i]] & SLIDE_MARK_COUNT);
                if (c > cut || (c == cut && need-- > 0)) ids[w++] = ids[i];
                else mark[ids[i]] = 0;
            }
            n = w;
        }
    } else if (L->sampling == SLIDE_SAMPLE_EXACT) {
        /* oracle: every logit, then the top_k not already forced in */
        float *z = th->sel_val;
        slide_layer_forward(L, xi, xv, nx, NULL, n_out, z);
        const int32_t k = L->top_k < n_out - n0 ? L->top_k : n_out - n0;
        /* heap scratch: this layer's gradient buffer is free until the backward pass */
        const int32_t got = slide_topk(z, n_out, k, th->grad[l], th->sel_id, ids + n0, mark, ep);
        for (int32_t i = n0; i < n0 + got; i++) mark[ids[i]] = tag;
        n = n0 + got;
    }
    /* random top-up to min_active (uniform sampling is only this) */
    const int32_t target = !topup ? 0 : (L->min_active < n_out ? L->min_active : n_out);
    while (n < target) {
        const int32_t r = (int32_t)slide_rng_below(&th->rng, (uint32_t)n_out);
        if (slide_marked(mark, r, ep)) continue;
        mark[r] = tag;
        ids[n++] = r;
    }
    th->active_sum[l] += n;
    th->phase_ns[SLIDE_PHASE_QUERY] += slide_now_ns() - t0;
    return n;
}

static int32_t slide_select(const slide_net *net, slide_thread *th, int32_t l, const int32_t *xi, const float *xv,
                            int32_t nx, const int32_t *labels, int32_t n_labels, int32_t *n_forced) {
    return slide_select_ex(net, th, l, xi, xv, nx, labels, n_labels, n_forced, 1);
}

/* ---- one sample -------------------------------------------------------------- */

/* Forward pass. train: labels forced into the output layer's active set.
 * dense: every neuron of every layer active (exact inference). Leaves the
 * output layer's logits in th->val[last] over th->ids[last] (NULL when dense). */
static void slide_forward_upto(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                               int32_t nx, const int32_t *labels, int32_t n_labels, int train, int dense,
                               int32_t *n_forced, int32_t stop) {
    const int32_t last = net->n_layers - 1;
    const int32_t *in_i = xi;
    const float *in_v = xv;
    int32_t in_n = nx;
    *n_forced = 0;
    for (int32_t l = 0; l < stop; l++) {
        const slide_layer *L = &net->layers[l];
        int32_t n;
        const int32_t *ids;
        if (L->lsh && !dense) {
            int32_t forced = 0;
            n = slide_select(net, th, l, in_i, in_v, in_n, (train && l == last) ? labels : NULL,
                             (train && l == last) ? n_labels : 0, &forced);
            if (l == last) *n_forced = forced;
            ids = th->ids[l];
            th->dense[l] = 0;
        } else {
            n = L->n_out;
            ids = NULL;
            th->dense[l] = 1;
        }
        const int64_t t0 = slide_now_ns();
        float *z = th->val[l];
        slide_layer_forward(L, in_i, in_v, in_n, ids, n, z);
        if (l < last)
            for (int32_t i = 0; i < n; i++) z[i] = z[i] > 0.f ? z[i] : 0.f;
        th->n[l] = n;
        th->phase_ns[SLIDE_PHASE_FORWARD] += slide_now_ns() - t0;
        in_i = ids;
        in_v = z;
        in_n = n;
    }
}

static void slide_forward(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                          const int32_t *labels, int32_t n_labels, int train, int dense, int32_t *n_forced) {
    slide_forward_upto(net, th, xi, xv, nx, labels, n_labels, train, dense, n_forced, net->n_layers);
}

/* Softmax cross-entropy against the uniform distribution over the sample's
 * (distinct) labels; writes dL/dz * scale into grad and returns the loss.
 * LSH output layer: the n_forced labels sit first in the active set.
 * Dense output layer: position = label id. */
static float slide_softmax_xent(const slide_net *net, slide_thread *th, const int32_t *labels, int32_t n_labels,
                                int32_t n_forced, float scale) {
    const int32_t l = net->n_layers - 1;
    const int32_t n = th->n[l];
    const float *z = th->val[l];
    float *g = th->grad[l];
    float mx = net->compat ? 0.f : -INFINITY;
    for (int32_t i = 0; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        g[i] = expf(z[i] - mx);
        sum += g[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++) g[i] *= inv; /* probabilities */
    float loss = 0.f;
    if (!th->dense[l]) {
        const float y = 1.f / (float)n_forced;
        for (int32_t i = 0; i < n_forced; i++) {
            loss -= y * logf(g[i] > 1e-30f ? g[i] : 1e-30f);
            g[i] -= y;
        }
    } else {
        int32_t distinct = 0;
        for (int32_t j = 0; j < n_labels; j++) {
            int dup = 0;
            for (int32_t q = 0; q < j; q++) dup |= labels[q] == labels[j];
            distinct += !dup;
        }
        const float y = 1.f / (float)distinct;
        for (int32_t j = 0; j < n_labels; j++) {
            int dup = 0;
            for (int32_t q = 0; q < j; q++) dup |= labels[q] == labels[j];
            if (dup) continue;
            const int32_t i = labels[j];
            loss -= y * logf(g[i] > 1e-30f ? g[i] : 1e-30f);
            g[i] -= y;
        }
    }
    for (int32_t i = 0; i < n; i++) g[i] *= scale;
    return loss;
}

/* Backward pass after slide_forward(train=1) and slide_softmax_xent. */
static void slide_backward_from(slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                                int32_t batch, int32_t top) {
    const int64_t t0 = slide_now_ns();
    for (int32_t l = top; l >= 0; l--) {
        slide_layer *L = &net->layers[l];
        const int32_t *ids = th->dense[l] ? NULL : th->ids[l];
        const int32_t n = th->n[l];
        const int32_t *in_i = l == 0 ? xi : (th->dense[l - 1] ? NULL : th->ids[l - 1]);
        const float *in_v = l == 0 ? xv : th->val[l - 1];
        const int32_t in_n = l == 0 ? nx : th->n[l - 1];
        float *dx = NULL;
        if (l > 0) {
            dx = th->dx[l - 1];
            memset(dx, 0, (size_t)in_n * sizeof(float));
        }
        if (L->layout == SLIDE_LAYOUT_ROWMAJOR)
            L->bwd_rows(&L->W, L->gW, L->gb, in_i, in_v, in_n, ids, th->grad[l], n, dx);
        else
            L->bwd_cols(&L->W, L->gW, L->gb, in_i, in_v, in_n, ids, th->grad[l], n, dx);

        if (net->track_touched) {
            /* rows of storage this sample wrote gradient into */
            const int32_t *rows = L->layout == SLIDE_LAYOUT_ROWMAJOR ? ids : in_i;
            const int32_t nrows = L->layout == SLIDE_LAYOUT_ROWMAJOR ? n : in_n;
            if (rows) {
                for (int32_t i = 0; i < nrows; i++)
                    slide_touch(L->row_stamp, batch, rows[i]);
            } else {
                L->all_rows_touched = 1;
            }
            if (L->layout == SLIDE_LAYOUT_TRANSPOSED) {
                if (ids) {
                    for (int32_t i = 0; i < n; i++)
                        slide_touch(L->bias_stamp, batch, ids[i]);
                } else {
                    L->all_bias_touched = 1;
                }
            }
        }
        if (l > 0) {
            const float *a = th->val[l - 1];
            float *g = th->grad[l - 1];
            for (int32_t k = 0; k < in_n; k++) g[k] = a[k] > 0.f ? dx[k] : 0.f;
        }
    }
    th->phase_ns[SLIDE_PHASE_BACKWARD] += slide_now_ns() - t0;
}

static void slide_backward(slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                           int32_t batch) {
    slide_backward_from(net, th, xi, xv, nx, batch, net->n_layers - 1);
}

/* Train on one sample; returns its loss (0 for a sample without labels). */
static float slide_train_sample(slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                                const int32_t *labels, int32_t n_labels, float scale, int32_t batch) {
    int32_t forced = 0;
    if (n_labels <= 0) return 0.f;
    th->samples++;
    th->labels_total += n_labels;
    slide_forward(net, th, xi, xv, nx, labels, n_labels, 1, 0, &forced);
    const int64_t t0 = slide_now_ns();
    const float loss = slide_softmax_xent(net, th, labels, n_labels, forced, scale);
    th->phase_ns[SLIDE_PHASE_FORWARD] += slide_now_ns() - t0;
    slide_backward(net, th, xi, xv, nx, batch);
    return loss;
}

/* Inference on one sample: the k best output neurons (-1 where fewer). */
static void slide_predict_sample(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                                 int32_t nx, int dense, int32_t k, int32_t *top) {
    int32_t forced;
    slide_forward(net, th, xi, xv, nx, NULL, 0, 0, dense, &forced);
    const int32_t l = net->n_layers - 1;
    int32_t pos[64];
    const int32_t got = slide_topk(th->val[l], th->n[l], k, th->sel_val, th->sel_id, pos, NULL, 0);
    for (int32_t j = 0; j < k; j++) top[j] = j < got ? (th->dense[l] ? pos[j] : th->ids[l][pos[j]]) : -1;
}

/* What the output layer's tables choose for one sample, without labels and
 * without the random top-up (LSH studies): hidden layers forward, then the
 * layer's sampling rule. Copies at most cap ids and their collision counts
 * (0 for sampling rules that do not count) into ids/cnt; returns how many
 * were chosen (may exceed cap: then only cap were copied). */
static int32_t slide_candidates(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                                int32_t nx, int32_t *ids, int32_t *cnt, int32_t cap) {
    const int32_t last = net->n_layers - 1;
    int32_t forced = 0;
    slide_forward_upto(net, th, xi, xv, nx, NULL, 0, 0, 0, &forced, last);
    const int32_t *in_i = last > 0 ? (th->dense[last - 1] ? NULL : th->ids[last - 1]) : xi;
    const float *in_v = last > 0 ? th->val[last - 1] : xv;
    const int32_t in_n = last > 0 ? th->n[last - 1] : nx;
    const int32_t n = slide_select_ex(net, th, last, in_i, in_v, in_n, NULL, 0, &forced, 0);
    const int counted = net->layers[last].sampling <= SLIDE_SAMPLE_THRESHOLD;
    for (int32_t i = 0; i < n && i < cap; i++) {
        ids[i] = th->ids[last][i];
        cnt[i] = counted ? (int32_t)(th->mark[last][ids[i]] & SLIDE_MARK_COUNT) : 0;
    }
    return n;
}

#endif
