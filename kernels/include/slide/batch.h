/* batch.h: the batched output layer ("union" strategy).
 *
 * The per-sample engine reads an active output row once per sample that
 * needs it, accumulates its gradient into a shared gradient buffer, and a
 * separate Adam pass reads that buffer again. Here a batch is processed in
 * phases so that every row of the batch's union of active sets is read once:
 *
 *   1. per sample: hidden layers forward, LSH selection of the output layer's
 *      active set (labels first; with batch_labels, the batch's other labels
 *      appended as negatives), activations kept per sample;
 *   2. inverted index: the union of active rows, sorted, and for each row the
 *      entries (sample, position) that need it, ordered by sample then
 *      position. Each thread owns a range of row ids and scans every
 *      sample's active set for the ids in its range (a counting sort without
 *      atomics, the same order whatever the thread count); the entry slot of
 *      each (sample, position) is recorded in epos;
 *   3. per union row: its logits for every sample that needs it — the
 *      layer's fwd_rows kernel applied to the batch's input matrix H with the
 *      weight row as the vector — written in entry order (E);
 *   4. per sample: its logits gathered from E through epos, softmax
 *      cross-entropy, output gradients scattered back into E, so that phase 5
 *      reads them in entry order instead of one random load per entry;
 *   5. per union row: weight gradient sum_s g_s H_s, input gradients
 *      dH_s += g_s W_j and Adam on that row, in one row_adam kernel (or, with
 *      fuse_update off, the bwd_rows kernel on H into a row-sized buffer and
 *      then the adam kernel) — one read and one write of W, m, v;
 *   6. per sample: input gradients summed over threads, hidden layers
 *      backward (per-sample, as before).
 * Phases 2, 3 and 5 split the rows between threads, so they never race, and
 * the order of a row's entries (so every sum over them) does not depend on
 * the number of threads.
 */
#ifndef SLIDE_BATCH_H
#define SLIDE_BATCH_H

#include <emmintrin.h> /* SSE2: part of the x86-64 baseline */

#include "engine.h"

typedef struct {
    int32_t B;      /* samples in this batch */
    int32_t cap;    /* capacity of one sample's active set */
    int32_t d;      /* output layer input width */
    int64_t ldh;    /* row stride of H and dH */
    float *H;       /* B x ldh: the output layer's inputs */
    float *Hr;      /* B x ldh: the same rounded to bf16 (bf16 precisions; NULL for fp32) */
    float *acts[SLIDE_MAX_LAYERS]; /* per hidden layer: B x width activations */
    int32_t act_ld[SLIDE_MAX_LAYERS];
    int32_t *A;     /* B x cap: active output ids, labels first */
    int32_t *nA;    /* B: active counts */
    int32_t *nF;    /* B: forced labels */
    float *Z;       /* B x cap: one sample's logits, then output gradients (softmax scratch) */
    float *loss;    /* B */
    float *zero_b;  /* B zeros: the bias of the H "matrix" */
    /* inverted index */
    int32_t *cnt;   /* n_out: per-row counts, then cursors; zero between batches */
    int32_t *urows; /* union rows, ascending */
    int32_t *uoff;  /* n_union + 1 entry offsets */
    int32_t n_union;
    int32_t *es;    /* entries: sample */
    int32_t *epos;  /* B x cap: the entry slot of (sample, position) */
    /* in-batch label negatives: the batch's distinct labels (at most blab_cap), joined to every active set */
    int32_t *blab;
    int32_t n_blab;
    int32_t blab_cap;
    int32_t *blab_stamp; /* n_out: the listing (blab_epoch) that last took the label */
    int32_t blab_epoch;
    float *E;       /* entries: logit, then output gradient */
    /* kernels for the union phases */
    slide_fwd_rows_fn fwd;
    slide_bwd_rows_fn bwd;
    slide_row_adam_fn row_adam; /* fused backward + Adam of a row (NULL: bwd, then the layer's adam) */
    int32_t bf16_rows; /* weights come from the bf16 copy (precision bf16) */
    int32_t round_w;   /* forward rounds fp32 weights to bf16 (precision bf16act) */
    int32_t prefetch;  /* union rows ahead whose lines are prefetched (0: none) */
} slide_batch;

/* A barrier of the enclosing OpenMP team, callable from Cython: its prange
 * loops inside one parallel block are "omp for nowait", so the phases of a
 * batch are separated explicitly. */
static void slide_omp_barrier(void) {
#pragma omp barrier
}

/* Phase 1 for sample s (position in the batch). Returns 0, or 1 when the
 * sample has no labels (it is skipped: nA = 0). */
static int slide_batch_select(slide_net *net, slide_thread *th, slide_batch *bt, int32_t s, const int32_t *xi,
                              const float *xv, int32_t nx, const int32_t *labels, int32_t n_labels) {
    const int32_t last = net->n_layers - 1;
    int32_t forced = 0;
    if (n_labels <= 0) {
        bt->nA[s] = 0;
        bt->nF[s] = 0;
        return 1;
    }
    th->samples++;
    th->labels_total += n_labels;
    slide_forward_upto(net, th, xi, xv, nx, NULL, 0, 1, 0, &forced, last);
    for (int32_t l = 0; l < last; l++)
        memcpy(bt->acts[l] + (int64_t)s * bt->act_ld[l], th->val[l], (size_t)th->n[l] * sizeof(float));
    memcpy(bt->H + (int64_t)s * bt->ldh, last > 0 ? th->val[last - 1] : xv, (size_t)bt->d * sizeof(float));
    const float *hin = bt->H + (int64_t)s * bt->ldh;
    if (bt->Hr) /* the forward products use bf16 activations: round once per sample, not once per row */
        for (int32_t k = 0; k < bt->d; k++) bt->Hr[(int64_t)s * bt->ldh + k] = slide_round_bf16(hin[k]);
    int32_t n = slide_select(net, th, last, NULL, hin, bt->d, labels, n_labels, &forced);
    int32_t *ids = th->ids[last];
    if (bt->n_blab) { /* the other samples' labels, as negatives (this sample's own are forced in already) */
        uint32_t *mark = th->mark[last];
        const int32_t ep = th->epoch[last], n0 = n;
        for (int32_t q = 0; q < bt->n_blab; q++) {
            const int32_t y = bt->blab[q];
            if (slide_marked(mark, y, ep)) continue;
            mark[y] = (uint32_t)ep << SLIDE_MARK_SHIFT;
            ids[n++] = y;
        }
        th->active_sum[last] += n - n0;
    }
    memcpy(bt->A + (int64_t)s * bt->cap, ids, (size_t)n * sizeof(int32_t));
    bt->nA[s] = n;
    bt->nF[s] = forced;
    return 0;
}

/* Phase 2a (per range [lo, hi) of row ids, one thread each): count the
 * entries of every row in the range, then the union rows and entries there.
 * The scan over all samples is branch-free: ids outside the range count
 * into a local dummy. */
static int32_t slide_batch_count(slide_batch *bt, int32_t lo, int32_t hi, int64_t *n_entries) {
    int32_t *cnt = bt->cnt, dummy = 0;
    const uint32_t span = (uint32_t)(hi - lo);
    for (int32_t s = 0; s < bt->B; s++) {
        const int32_t *a = bt->A + (int64_t)s * bt->cap;
        const int32_t n = bt->nA[s];
        for (int32_t q = 0; q < n; q++) {
            const int32_t j = a[q];
            int32_t *c = (uint32_t)(j - lo) < span ? cnt + j : &dummy;
            *c += 1;
        }
    }
    int32_t rows = 0;
    int64_t e = 0;
    for (int32_t j = lo; j < hi; j++) {
        rows += cnt[j] > 0;
        e += cnt[j];
    }
    *n_entries = e;
    return rows;
}

/* Phase 2b (per range): list the union rows from slot rbase with entry
 * offsets from ebase; cnt[j] becomes the row's write cursor. */
static void slide_batch_rows(slide_batch *bt, int32_t lo, int32_t hi, int32_t rbase, int32_t ebase) {
    int32_t *cnt = bt->cnt;
    int32_t r = rbase, e = ebase;
    for (int32_t j = lo; j < hi; j++) {
        if (!cnt[j]) continue;
        bt->urows[r] = j;
        bt->uoff[r] = e;
        e += cnt[j];
        cnt[j] = bt->uoff[r];
        r++;
    }
}

/* Phase 2c (per range): place every (sample, position) whose row is in the
 * range at the row's cursor, samples and positions in order. */
static void slide_batch_place(slide_batch *bt, int32_t lo, int32_t hi) {
    int32_t *cnt = bt->cnt;
    const uint32_t span = (uint32_t)(hi - lo);
    /* branch-free, as the count: ids outside the range go through dummies */
    int32_t dcnt = 0, des = 0, dpos = 0;
    for (int32_t s = 0; s < bt->B; s++) {
        const int32_t *a = bt->A + (int64_t)s * bt->cap;
        int32_t *pos = bt->epos + (int64_t)s * bt->cap;
        const int32_t n = bt->nA[s];
        for (int32_t q = 0; q < n; q++) {
            const int32_t j = a[q];
            const int in = (uint32_t)(j - lo) < span;
            int32_t *c = in ? cnt + j : &dcnt;
            const int32_t at = (*c)++;
            *(in ? bt->es + at : &des) = s;
            *(in ? pos + q : &dpos) = at;
        }
    }
}

SLIDE_INLINE void slide_prefetch_span(const void *p, int64_t bytes) {
    const char *c = (const char *)p;
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

SLIDE_INLINE slide_mat slide_batch_hmat(const slide_batch *bt, int rounded) {
    slide_mat m;
    m.w = rounded && bt->Hr ? bt->Hr : bt->H;
    m.wb = NULL;
    m.b = bt->zero_b;
    m.ld = bt->ldh;
    m.rows = bt->B;
    m.cols = bt->d;
    m.prefetch = 0;
    return m;
}

/* The weight row j as the fp32 values a phase multiplies with: the master
 * row; the bf16 copy widened into `buf` (precision bf16); or, for the
 * forward of precision bf16act, the master row rounded to bf16. */
SLIDE_INLINE const float *slide_batch_wrow(const slide_layer *L, const slide_batch *bt, int32_t j, float *buf,
                                           int forward) {
    if (!bt->bf16_rows) {
        const float *w = L->W.w + (int64_t)j * L->W.ld;
        if (!(forward && bt->round_w)) return w;
        int32_t k = 0;
        const __m128i one = _mm_set1_epi32(1), half = _mm_set1_epi32(0x7fff), hi = _mm_set1_epi32((int)0xffff0000u);
        for (; k + 4 <= bt->d; k += 4) { /* round to nearest even bf16 (finite weights) */
            __m128i u = _mm_loadu_si128((const __m128i *)(w + k));
            u = _mm_add_epi32(u, _mm_add_epi32(half, _mm_and_si128(_mm_srli_epi32(u, 16), one)));
            _mm_storeu_si128((__m128i *)(buf + k), _mm_and_si128(u, hi));
        }
        for (; k < bt->d; k++) buf[k] = slide_round_bf16(w[k]);
        return buf;
    }
    const bf16_t *w = L->W.wb + (int64_t)j * L->W.ld;
    int32_t k = 0;
    const __m128i zero = _mm_setzero_si128();
    for (; k + 8 <= bt->d; k += 8) { /* widen 8 bf16: each becomes the high half of an fp32 */
        const __m128i h = _mm_loadu_si128((const __m128i *)(w + k));
        _mm_storeu_si128((__m128i *)(buf + k), _mm_unpacklo_epi16(zero, h));
        _mm_storeu_si128((__m128i *)(buf + k + 4), _mm_unpackhi_epi16(zero, h));
    }
    for (; k < bt->d; k++) buf[k] = slide_bf16_to_f32(w[k]);
    return buf;
}

/* Phase 3 over union rows [r0, r1): logits, in entry order. Scratch: wbuf (d). */
static void slide_batch_forward(const slide_net *net, slide_batch *bt, int32_t r0, int32_t r1, float *wbuf) {
    const slide_layer *L = &net->layers[net->n_layers - 1];
    const slide_mat hm = slide_batch_hmat(bt, 1);
    for (int32_t r = r0; r < r1; r++) {
        const int32_t j = bt->urows[r], e0 = bt->uoff[r], n = bt->uoff[r + 1] - e0;
        if (bt->prefetch && r + bt->prefetch < r1) {
            const int64_t o = (int64_t)bt->urows[r + bt->prefetch] * L->W.ld;
            if (bt->bf16_rows)
                slide_prefetch_span(L->W.wb + o, (int64_t)bt->d * 2);
            else
                slide_prefetch_span(L->W.w + o, (int64_t)bt->d * 4);
        }
        const float *x = slide_batch_wrow(L, bt, j, wbuf, 1);
        float *z = bt->E + e0;
        bt->fwd(&hm, NULL, x, bt->d, bt->es + e0, n, z);
        const float bj = L->W.b[j];
        for (int32_t i = 0; i < n; i++) z[i] += bj;
    }
}

/* Phase 4 for sample s: softmax cross-entropy over its active set (labels
 * first); its entries of E become dL/dz * scale. Returns the loss. */
static float slide_batch_softmax(const slide_net *net, slide_batch *bt, int32_t s, float scale) {
    const int32_t n = bt->nA[s], nf = bt->nF[s];
    if (n == 0) return 0.f;
    float *z = bt->Z + (int64_t)s * bt->cap;
    const int32_t *pos = bt->epos + (int64_t)s * bt->cap;
    for (int32_t i = 0; i < n; i++) z[i] = bt->E[pos[i]];
    float mx = net->compat ? 0.f : -INFINITY;
    for (int32_t i = 0; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        z[i] = expf(z[i] - mx);
        sum += z[i];
    }
    const float inv = (float)(1.0 / sum), y = 1.f / (float)nf;
    float loss = 0.f;
    for (int32_t i = 0; i < n; i++) {
        const float p = z[i] * inv;
        if (i < nf) {
            loss -= y * logf(p > 1e-30f ? p : 1e-30f);
            z[i] = (p - y) * scale;
        } else {
            z[i] = p * scale;
        }
    }
    for (int32_t i = 0; i < n; i++) bt->E[pos[i]] = z[i];
    return loss;
}

/* Phase 5 over union rows [r0, r1): gradients and Adam, fused. dH: this
 * thread's B x ldh input-gradient accumulator. Scratch: wbuf, gvec (d,
 * zeroed), gbs (B). */
static void slide_batch_backward_adam(slide_net *net, slide_batch *bt, int32_t r0, int32_t r1, float *dH,
                                      float *wbuf, float *gvec, float *gbs,
                                      const slide_adam_params *p, int dense_update, int32_t batch) {
    slide_layer *L = &net->layers[net->n_layers - 1];
    const slide_mat hm = slide_batch_hmat(bt, 0);
    const int64_t ld = L->W.ld;
    for (int32_t r = r0; r < r1; r++) {
        const int32_t j = bt->urows[r], e0 = bt->uoff[r], n = bt->uoff[r + 1] - e0;
        if (bt->prefetch && r + bt->prefetch < r1) {
            const int32_t jn = bt->urows[r + bt->prefetch];
            const int64_t o = (int64_t)jn * ld, bytes = (int64_t)bt->d * 4;
            slide_prefetch_span(L->W.w + o, bytes);
            slide_prefetch_span(L->mW + o, bytes);
            slide_prefetch_span(L->vW + o, bytes);
            if (L->W.wb) slide_prefetch_span(L->W.wb + o, bytes / 2);
            __builtin_prefetch(L->W.b + jn);
            __builtin_prefetch(L->mb + jn);
            __builtin_prefetch(L->vb + jn);
        }
        const float *gs = bt->E + e0;
        float gb = 0.f;
        for (int32_t i = 0; i < n; i++) gb += gs[i];
        const float *x = slide_batch_wrow(L, bt, j, wbuf, 0);
        if (bt->row_adam) {
            bt->row_adam(L->W.w + j * ld, L->W.wb ? L->W.wb + j * ld : NULL, L->mW + j * ld, L->vW + j * ld, x,
                         bt->H, dH, bt->ldh, bt->d, bt->es + e0, gs, n, p);
        } else {
            /* dx of this call is the weight row's gradient; its "gW" is dH */
            bt->bwd(&hm, dH, gbs, NULL, x, bt->d, bt->es + e0, gs, n, gvec);
            L->adam(L->W.w + j * ld, L->W.wb ? L->W.wb + j * ld : NULL, L->mW + j * ld, L->vW + j * ld, gvec, ld,
                    bt->d, NULL, 1, p);
        }
        /* the bias: bitwise what an adam kernel computes, without a masked one-element kernel call */
        slide_adam_one(L->W.b + j, L->mb + j, L->vb + j, gb, *p);
        if (dense_update) L->row_stamp[j] = batch; /* updated here; the dense pass skips it */
        bt->cnt[j] = 0;
    }
}

/* Phase 6 for sample s: input gradient summed over threads, then the hidden
 * layers' backward as in the per-sample engine. */
static void slide_batch_hidden_backward(slide_net *net, slide_thread *th, slide_batch *bt, int32_t s,
                                        const float *dH_all, int32_t T, int64_t dH_stride, const int32_t *xi,
                                        const float *xv, int32_t nx, int32_t batch) {
    const int32_t last = net->n_layers - 1;
    if (bt->nA[s] == 0 || last == 0) return;
    const int64_t t0 = slide_now_ns();
    for (int32_t l = 0; l < last; l++) {
        memcpy(th->val[l], bt->acts[l] + (int64_t)s * bt->act_ld[l], (size_t)net->layers[l].n_out * sizeof(float));
        th->n[l] = net->layers[l].n_out;
        th->dense[l] = 1;
    }
    float *g = th->grad[last - 1];
    const float *a = th->val[last - 1];
    for (int32_t k = 0; k < bt->d; k++) {
        float sum = 0.f;
        for (int32_t t = 0; t < T; t++) sum += dH_all[t * dH_stride + (int64_t)s * bt->ldh + k];
        g[k] = a[k] > 0.f ? sum : 0.f;
    }
    th->phase_ns[SLIDE_PHASE_BACKWARD] += slide_now_ns() - t0;
    slide_backward_from(net, th, xi, xv, nx, batch, last - 1);
}

#endif
