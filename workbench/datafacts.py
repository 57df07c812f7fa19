"""What a P@1 means on a data set: the label prior and a nearest-neighbour figure.

Owns: two reference points every accuracy figure should be read against,
computed on the same labelled test points the curves evaluate.

* prior   P@1 of always predicting the most frequent training label (what a
          model that ignores its input scores; exact inference falls to it
          when one output neuron wins for every input).
* knn     P@1 of a k-nearest-neighbour classifier: cosine similarity of the
          L2-normalised sparse inputs against every training point (exact,
          by an inverted index over the training features), each neighbour's
          labels voted with its similarity, the top-voted label predicted.
          No training, no hyper-parameter but k: a floor any learned model
          of the inputs should clear, and a sense of how much of the task is
          lookup.
"""

from __future__ import annotations

import time

import numpy as np

from .data import Dataset

__all__ = ["prior_p_at_1", "knn_p_at_1", "facts"]


def _labelled(test: Dataset, samples: int | None) -> np.ndarray:
    rows = np.flatnonzero(np.diff(test.label_indptr) > 0)
    return rows if samples is None else rows[: int(samples)]


def _labels(d: Dataset, r: int) -> np.ndarray:
    return d.labels[d.label_indptr[r]:d.label_indptr[r + 1]]


def prior_p_at_1(train: Dataset, test: Dataset, samples: int | None = None) -> float:
    """P@1 of predicting the most frequent training label on the first
    `samples` labelled test points."""
    rows = _labelled(test, samples)
    if not len(rows) or not len(train.labels):
        return 0.0
    top = int(np.bincount(train.labels, minlength=train.n_labels).argmax())
    return float(np.mean([top in _labels(test, r) for r in rows]))


def _inverted(train: Dataset):
    """Training points by feature (CSC of the L2-normalised inputs):
    (feature start offsets, point ids, values)."""
    n = len(train)
    lens = np.diff(train.indptr)
    point = np.repeat(np.arange(n, dtype=np.int32), lens)
    vals = train.values.astype(np.float32)
    norm = np.sqrt(np.add.reduceat(vals.astype(np.float64) ** 2, train.indptr[:-1])) if n else np.zeros(0)
    norm = np.where(lens > 0, norm, 1.0)
    vals = (vals / np.repeat(norm, lens)).astype(np.float32)
    order = np.argsort(train.indices, kind="stable")
    start = np.zeros(train.n_features + 1, np.int64)
    np.cumsum(np.bincount(train.indices, minlength=train.n_features), out=start[1:])
    return start, point[order], vals[order]


def knn_p_at_1(train: Dataset, test: Dataset, *, k: int = 10, samples: int | None = 1000) -> dict:
    """P@1 (and P@5) of the similarity-weighted k-nearest-neighbour vote over
    the whole training set, on the first `samples` labelled test points."""
    if train.n_features != test.n_features:
        raise ValueError(f"{test.source}: {test.n_features:,} features, but {train.source} has {train.n_features:,}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    t0 = time.perf_counter()
    start, point, vals = _inverted(train)
    rows = _labelled(test, samples)
    hit1 = hit5 = 0.0
    for r in rows:
        a, e = test.indptr[r], test.indptr[r + 1]
        f = test.indices[a:e]
        v = test.values[a:e].astype(np.float64)
        nv = np.sqrt((v * v).sum())
        if nv == 0:
            continue
        v = v / nv
        s, t = start[f], start[f + 1]
        cnt = t - s
        if cnt.sum() == 0:
            continue
        idx = np.concatenate([np.arange(x, y) for x, y in zip(s, t) if y > x])
        w = vals[idx] * np.repeat(v, cnt)
        sim = np.bincount(point[idx], weights=w, minlength=len(train))
        kk = min(k, int(np.count_nonzero(sim)))
        nn = np.argpartition(-sim, kk - 1)[:kk] if kk < len(sim) else np.arange(len(sim))
        votes: dict = {}
        for j in nn:
            for lab in _labels(train, int(j)):
                votes[int(lab)] = votes.get(int(lab), 0.0) + float(sim[j])
        if not votes:
            continue
        ranked = sorted(votes, key=lambda x: (-votes[x], x))[:5]
        truth = set(_labels(test, r).tolist())
        hit1 += ranked[0] in truth
        hit5 += sum(x in truth for x in ranked) / 5
    n = len(rows)
    return {"k": k, "n": int(n), "p_at_1": hit1 / n if n else 0.0, "p_at_5": hit5 / n if n else 0.0,
            "seconds": time.perf_counter() - t0,
            "definition": "cosine on L2-normalised inputs over every training point; the k nearest vote "
                          "their labels weighted by similarity"}


def facts(train: Dataset, test: Dataset, *, samples: int | None = 1000, k: int = 10) -> dict:
    """Both reference points for `samples` labelled test points."""
    return {"prior_p_at_1": prior_p_at_1(train, test, samples), "knn": knn_p_at_1(train, test, k=k, samples=samples),
            "samples": samples, "n_train": len(train), "n_labels": train.n_labels,
            "labels_in_train": int(np.count_nonzero(np.bincount(train.labels, minlength=train.n_labels)))}
