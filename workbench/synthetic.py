"""Synthetic extreme-classification data: presets and a deterministic generator.

This module owns the data every command uses when no real file is given
(real XC data sets cannot be downloaded here). ``generate(preset, split, seed)``
returns a ``workbench.data.Dataset`` shaped like the named data set.

Generative model
----------------
Structure (depends on the preset and the seed only, shared by both splits):

* Labels have a popularity rank; rank r is drawn with density
  ~ (r + shift)^-exponent (continuous Zipf-Mandelbrot), and ranks map to label
  ids through a random permutation, so ids carry no frequency information.
* Labels are partitioned at random into co-occurrence clusters (mean size
  ``cluster_size``); inside a cluster members are ordered by popularity.
* Features ("words") have a popularity rank too. Background words follow a
  steep Zipf law (``feature_zipf``); prototype words are drawn from a flatter
  one (``prototype_zipf``) over the same ranking, so frequent words are generic
  and carry little label information, as in real text.
* Every label has ``label_words`` prototype words and every cluster
  ``topic_words`` topic words, each a hash of (seed, label or cluster, slot)
  pushed through the prototype-word distribution: nothing of size
  labels x words is ever stored. Slot j of a prototype is used with weight
  ~ 1/(j + 1), so a few words characterise a label strongly.

A point (fresh randomness per chunk of ``CHUNK`` points, from
``default_rng([seed, split_id, chunk])``):

1. draws its label count k = 1 + NegBin (mean ``mean_labels``); its first
   label by global popularity; each further label with probability
   ``p_same_cluster`` from the first label's cluster (Zipf over the cluster's
   popularity order), otherwise by global popularity; repeats are dropped and
   the labels are stored sorted;
2. draws its non-zero count n = 1 + NegBin (mean ``mean_nnz``) and then words:
   each draw is a label word (probability ``p_label_word``), a topic word of
   the label's cluster (``p_topic_word``) or a background word; the label used
   is the first label half the time, otherwise any of the point's labels.
   After 2n + 4 such draws come n/2 + 2 background-only draws, and the first
   n distinct words are kept (so long documents whose label prototypes run
   out of new words fill up with background words); tf is the number of
   times a kept word was drawn;
3. values are tf-idf like: (1 + log tf) * idf(word rank) * lognormal jitter,
   then the point is L2-normalised.

What is like the real data (Amazon-670K, Delicious-200K): dimensions, split
sizes, means of non-zeros and labels per point with a skewed spread around
them, power-law label frequencies (most labels rare, many unused in a split;
the most frequent label is on about 0.7% of amazon670k points),
skewed word popularity, positive L2-normalised tf-idf values, label
co-occurrence, and a features -> labels mapping that a linear model learns
(P@1 far above predicting the most frequent label: nearest-centroid P@1 is
about 0.90 on tiny against 0.10 for the most frequent label, about 0.64 on
medium against 0.009).

What is not: words are independent given the labels (no syntax, no
phrase structure, no document length effects on vocabulary); clusters are
disjoint and flat (real label graphs overlap and are hierarchical); label
prototypes are equally informative for rare and frequent labels; the test
split has exactly the training distribution (no drift); the exact frequency
exponents and tail shapes are plausible guesses, not fitted to the real sets.
So absolute P@k values are not comparable with published numbers; relative
speed and accuracy comparisons between engines are what this data is for.

Determinism: for a given NumPy version (its Generator algorithms define the
streams), a point depends only on (preset, seed, split, its index), so
``generate(p, 'train', s, n=1000)`` is the first 1000 points of
``generate(p, 'train', s)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from workbench.data import Dataset

__all__ = ["Preset", "PRESETS", "get_preset", "generate", "CHUNK"]

# Points per independently seeded chunk. Part of the output definition:
# changing it changes every generated data set.
CHUNK = 4096
SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Preset:
    """Shape of a synthetic data set (see the module docstring for the model)."""

    name: str
    n_features: int
    n_labels: int
    n_train: int
    n_test: int
    mean_nnz: float
    mean_labels: float
    # label popularity: density ~ (rank + shift)^-exponent
    label_zipf: float = 1.0
    label_zipf_shift: float = 30.0
    # background word popularity (steep) and prototype word popularity (flat)
    feature_zipf: float = 1.0
    feature_zipf_shift: float = 5.0
    prototype_zipf: float = 0.6
    # co-occurrence clusters
    cluster_size: float = 20.0
    p_same_cluster: float = 0.8
    cluster_zipf: float = 0.7
    # prototypes and the mixture that draws a point's words
    label_words: int = 12
    topic_words: int = 40
    p_label_word: float = 0.35
    p_topic_word: float = 0.25
    # negative-binomial shape of the per-point counts (smaller = more spread)
    nnz_dispersion: float = 3.0
    labels_dispersion: float = 1.5
    value_jitter: float = 0.3

    def n_points(self, split: str) -> int:
        return self.n_train if split == "train" else self.n_test


PRESETS = {
    p.name: p
    for p in (
        Preset("amazon670k", n_features=135_909, n_labels=670_091, n_train=490_449, n_test=153_025,
               mean_nnz=75.68, mean_labels=5.45),
        Preset("delicious200k", n_features=782_585, n_labels=205_443, n_train=196_606, n_test=100_095,
               mean_nnz=301.17, mean_labels=75.54, label_zipf=0.9, cluster_size=150.0, p_same_cluster=0.6,
               cluster_zipf=0.5, label_words=20, topic_words=80, nnz_dispersion=2.0, labels_dispersion=2.0),
        Preset("medium", n_features=50_000, n_labels=100_000, n_train=50_000, n_test=10_000,
               mean_nnz=60.0, mean_labels=4.0, label_zipf_shift=20.0),
        Preset("small", n_features=5_000, n_labels=2_000, n_train=20_000, n_test=2_000,
               mean_nnz=40.0, mean_labels=3.0, label_zipf_shift=10.0, cluster_size=10.0, topic_words=30),
        Preset("tiny", n_features=500, n_labels=100, n_train=2_000, n_test=500,
               mean_nnz=20.0, mean_labels=2.0, label_zipf_shift=5.0, cluster_size=5.0, label_words=8,
               topic_words=15, feature_zipf_shift=2.0),
    )
}


def get_preset(name) -> Preset:
    """The preset called ``name`` (a ``Preset`` is passed through)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic preset {name!r}; valid: {', '.join(PRESETS)}") from None


# ------------------------------------------------------------------ helpers

def _zipf_ranks(u, size, exponent, shift):
    """Ranks in [0, size) from uniforms u: continuous density ~ (x + shift)^-exponent.

    ``size`` may be an array (one support per draw). Inverse CDF in closed
    form: much cheaper than searching a table as large as the support. The
    arithmetic is float64 even for float32 ``u``: ranks are floors, and in
    float32 an ulp-level difference between the SIMD exp/log of two CPUs
    would move about 1% of the large ranks; in float64 essentially none.
    """
    u = u.astype(np.float64, copy=False)
    size = np.asarray(size, dtype=np.float64)
    if abs(exponent - 1.0) < 1e-9:
        x = np.exp(u * np.log((size + shift) / shift)) * shift - shift
    else:
        b = 1.0 - exponent
        lo = shift**b
        x = np.exp(np.log(lo + u * (np.exp(b * np.log(size + shift)) - lo)) / b) - shift
    ranks = x.astype(np.int64)
    np.clip(ranks, 0, size.astype(np.int64) - 1, out=ranks)
    return ranks


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _hash_uniform(seed, owner, slot):
    """Uniform [0, 1) from a splitmix64-style hash of (seed, owner, slot)."""
    h = (owner.astype(np.uint64) * np.uint64(0x100000001B3)) ^ (slot.astype(np.uint64) * _GOLDEN)
    h ^= np.uint64((seed * 0x2545F4914F6CDD1D + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(30)
    h *= _M1
    h ^= h >> np.uint64(27)
    h *= _M2
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _first_distinct(rows, items, n_items, want, n_rows):
    """Keep, per row, the first ``want[row]`` distinct items in draw order.

    ``rows`` is non-decreasing (draws laid out row by row). Returns the kept
    (rows, items, multiplicity among all draws), sorted by (row, item).
    """
    n = len(items)
    # One sort of (row, item, position) packed in an int64: it groups equal
    # items, and a group's smallest position is the first occurrence.
    pos_bits = max(int(n).bit_length(), 1)
    if (n_rows * n_items).bit_length() + pos_bits > 63:
        raise OverflowError("chunk too large for the packed sort key")
    key = rows * n_items + items
    key <<= pos_bits
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    group = key >> pos_bits
    is_first = np.empty(n, dtype=bool)
    if n:
        is_first[0] = True
        np.not_equal(group[1:], group[:-1], out=is_first[1:])
    starts = np.flatnonzero(is_first)
    multiplicity = np.diff(np.append(starts, n))
    first_pos = key[starts] & ((1 << pos_bits) - 1)
    group = group[starts]
    # Rank of each distinct item in its row, by first occurrence: count the
    # first occurrences at earlier positions of the same row. Per-row values
    # are spread with np.repeat (sequential) rather than gathered.
    marks = np.zeros(n + 1, dtype=np.int64)
    marks[first_pos + 1] = 1
    np.cumsum(marks, out=marks)
    uniq_rows = group // n_items
    items_out = group - uniq_rows * n_items
    per_row = np.bincount(uniq_rows, minlength=n_rows)
    row_begin = np.searchsorted(rows, np.arange(n_rows))
    rank = marks[first_pos] - np.repeat(marks[row_begin], per_row)
    keep = rank < np.repeat(want, per_row)
    return uniq_rows[keep], items_out[keep], multiplicity[keep]


def _counts(rng, mean, dispersion, size, cap):
    """1 + negative binomial with overall mean ``mean``, capped at ``cap``."""
    extra = max(mean - 1.0, 1e-9)
    counts = 1 + rng.negative_binomial(dispersion, dispersion / (dispersion + extra), size)
    return np.minimum(counts, cap).astype(np.int64)


@dataclass(frozen=True)
class _Structure:
    """Everything derived from (preset, seed) alone."""

    label_of_rank: np.ndarray        # popularity rank -> label id
    cluster_of_label: np.ndarray
    cluster_start: np.ndarray        # members of cluster c: cluster_members[start[c]:start[c]+size[c]]
    cluster_size: np.ndarray
    cluster_members: np.ndarray      # by popularity inside each cluster
    feature_of_rank: np.ndarray      # popularity rank -> feature id
    idf_of_feature: np.ndarray


@functools.lru_cache(maxsize=4)
def _structure(preset: Preset, seed: int) -> _Structure:
    rng = np.random.default_rng([seed, 0x5EED, 0xC1A55])  # distinct from every chunk stream
    L, F = preset.n_labels, preset.n_features
    label_of_rank = rng.permutation(L).astype(np.int32)

    # Cluster sizes ~ 1 + Poisson, drawn until they cover all labels.
    n_guess = int(L / preset.cluster_size * 1.5) + 16
    sizes = 1 + rng.poisson(max(preset.cluster_size - 1.0, 0.0), n_guess)
    while sizes.sum() < L:
        sizes = np.concatenate([sizes, 1 + rng.poisson(max(preset.cluster_size - 1.0, 0.0), n_guess)])
    ends = np.cumsum(sizes)
    n_clusters = int(np.searchsorted(ends, L)) + 1
    sizes = sizes[:n_clusters].copy()
    sizes[-1] -= ends[n_clusters - 1] - L
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    ranks = rng.permutation(L)
    cluster_of_slot = np.repeat(np.arange(n_clusters, dtype=np.int64), sizes)
    ranks = ranks[np.lexsort((ranks, cluster_of_slot))]  # popularity order inside clusters
    members = label_of_rank[ranks]
    cluster_of_label = np.empty(L, dtype=np.int32)  # int32 tables: fewer cache misses in gathers
    cluster_of_label[members] = cluster_of_slot

    feature_of_rank = rng.permutation(F).astype(np.int32)
    rank_of_feature = np.empty(F, dtype=np.int64)
    rank_of_feature[feature_of_rank] = np.arange(F)
    shift = preset.feature_zipf_shift
    idf = 1.0 + np.log((rank_of_feature + 1.0 + shift) / (1.0 + shift))
    return _Structure(label_of_rank, cluster_of_label, starts, sizes.astype(np.int64), members.astype(np.int32),
                      feature_of_rank, idf)


# ------------------------------------------------------------------ generation

def _generate_chunk(preset: Preset, st: _Structure, seed: int, split_id: int, chunk: int):
    """CHUNK points as (label counts, labels, nnz counts, indices, values)."""
    rng = np.random.default_rng([seed, split_id, chunk])
    m = CHUNK
    L, F = preset.n_labels, preset.n_features
    point = np.arange(m, dtype=np.int64)

    # ---- labels: first by popularity, the rest mostly from its cluster
    k = _counts(rng, preset.mean_labels, preset.labels_dispersion, m, min(L, int(10 * preset.mean_labels) + 5))
    n_draws = np.where(k > 1, 2 * k + 2, 1)  # oversample: repeats are dropped
    draw_row = np.repeat(point, n_draws)
    draw_start = np.concatenate([[0], np.cumsum(n_draws)[:-1]])
    is_primary = np.zeros(len(draw_row), dtype=bool)
    is_primary[draw_start] = True
    u_pop = rng.random(len(draw_row))
    u_in_cluster = rng.random(len(draw_row))
    global_pick = st.label_of_rank[_zipf_ranks(u_pop, L, preset.label_zipf, preset.label_zipf_shift)].astype(np.int64)
    primary = global_pick[draw_start]
    cluster = st.cluster_of_label[primary][draw_row]
    in_cluster = st.cluster_members[
        st.cluster_start[cluster] + _zipf_ranks(u_in_cluster, st.cluster_size[cluster], preset.cluster_zipf, 1.0)]
    from_cluster = (rng.random(len(draw_row)) < preset.p_same_cluster) & ~is_primary
    candidates = np.where(from_cluster, in_cluster, global_pick)
    label_row, labels, _ = _first_distinct(draw_row, candidates, L, k, m)
    label_count = np.bincount(label_row, minlength=m)
    label_start = np.concatenate([[0], np.cumsum(label_count)[:-1]])

    # ---- words: label prototype, cluster topic, or background
    nnz = _counts(rng, preset.mean_nnz, preset.nnz_dispersion, m, min(F, int(10 * preset.mean_nnz) + 5))
    # A document has more tokens than distinct words: 2n + 4 mixture draws,
    # then n/2 + 2 background-only draws that are reached only when the
    # prototypes ran out of new words (long documents, small vocabularies).
    n_mixture = 2 * nnz + 4
    n_draws = n_mixture + nnz // 2 + 2
    draw_row = np.repeat(point, n_draws)
    n = len(draw_row)
    draw_start = np.cumsum(n_draws) - n_draws
    in_tail = np.arange(n) - np.repeat(draw_start, n_draws) >= np.repeat(n_mixture, n_draws)
    source = rng.random(n, dtype=np.float32)
    source[in_tail] = 1.0
    use_primary = rng.random(n, dtype=np.float32) < 0.5
    any_label = labels[label_start[draw_row] + (rng.random(n) * label_count[draw_row]).astype(np.int64)]
    owner_label = np.where(use_primary, primary[draw_row], any_label)
    slot_u = rng.random(n, dtype=np.float32)
    is_label_word = source < preset.p_label_word
    is_topic_word = ~is_label_word & (source < preset.p_label_word + preset.p_topic_word)
    owner = np.where(is_topic_word, st.cluster_of_label[owner_label], owner_label)
    # slot j of a prototype with weight ~ 1/(j + 1): inverse CDF exp(u log(S + 1)) - 1
    log_slots = np.where(is_topic_word, np.log(preset.topic_words + 1.0), np.log(preset.label_words + 1.0))
    slot = (np.exp(slot_u * log_slots) - 1.0).astype(np.int64)
    np.minimum(slot, np.where(is_topic_word, preset.topic_words - 1, preset.label_words - 1), out=slot)
    # label l and cluster c get different hash streams: owner code l or 2**32 + c
    word_u = _hash_uniform(seed, owner + (is_topic_word.astype(np.int64) << 32), slot)
    proto_rank = _zipf_ranks(word_u, F, preset.prototype_zipf, preset.feature_zipf_shift)
    noise_rank = _zipf_ranks(rng.random(n, dtype=np.float32), F, preset.feature_zipf, preset.feature_zipf_shift)
    words = st.feature_of_rank[np.where(is_label_word | is_topic_word, proto_rank, noise_rank)]
    feat_row, features, tf = _first_distinct(draw_row, words, F, nnz, m)

    values = (1.0 + np.log(tf)) * st.idf_of_feature[features]
    values *= np.exp(preset.value_jitter * rng.standard_normal(len(values)))
    norms = np.sqrt(np.bincount(feat_row, weights=values * values, minlength=m))
    values /= norms[feat_row]
    feat_count = np.bincount(feat_row, minlength=m)
    return label_count, labels.astype(np.int32), feat_count, features.astype(np.int32), values.astype(np.float32)


def generate(preset, split: str = "train", seed: int = 0, n: int | None = None) -> Dataset:
    """The ``split`` of synthetic data set ``preset`` (name or Preset) for ``seed``.

    ``n`` points (default: the preset's split size; may exceed it). The result
    is deterministic, and prefix-stable in ``n``.
    """
    preset = get_preset(preset)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    n_points = preset.n_points(split) if n is None else int(n)
    if n_points < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    st = _structure(preset, seed)

    label_counts, label_parts, feat_counts, index_parts, value_parts = [], [], [], [], []
    for chunk in range(-(-n_points // CHUNK)):
        lc, lab, fc, ind, val = _generate_chunk(preset, st, seed, SPLITS[split], chunk)
        keep = min(CHUNK, n_points - chunk * CHUNK)
        if keep < CHUNK:  # the last chunk is generated whole and cut: prefix stability
            lc, fc = lc[:keep], fc[:keep]
            lab, ind, val = lab[: lc.sum()], ind[: fc.sum()], val[: fc.sum()]
        label_counts.append(lc)
        label_parts.append(lab)
        feat_counts.append(fc)
        index_parts.append(ind)
        value_parts.append(val)

    def pointers(counts):
        out = np.zeros(n_points + 1, dtype=np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=out[1:])
        return out

    def joined(parts, dtype):
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    source = f"synthetic:{preset.name}:seed={seed}:split={split}"
    if n is not None and n_points != preset.n_points(split):
        source += f":n={n_points}"
    return Dataset(
        name=f"{preset.name}-{split}",
        n_features=preset.n_features,
        n_labels=preset.n_labels,
        indptr=pointers(feat_counts),
        indices=joined(index_parts, np.int32),
        values=joined(value_parts, np.float32),
        label_indptr=pointers(label_counts),
        labels=joined(label_parts, np.int32),
        source=source,
    )
