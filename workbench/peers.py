"""Peers: what an extreme-classification practitioner trains instead of SLIDE on a CPU.

Owns: a thin adapter that gives a label-tree classifier the Network-like API
the comparison runner drives (fit / evaluate / predict / samples_seen), so
that `slide-workbench compare --methods slide,plt` puts SLIDE beside the
field's usual CPU method, not only beside other softmax trainers.

``LabelTree``: a probabilistic label tree (PLT, Jasinska et al. 2016) from
napkinXC (Jasinska-Kobus et al.; PyPI ``napkinxc``, installed with
``pip install .[peers]``): a k-means tree over the labels with a logistic
classifier per node (liblinear), trained in one offline pass, predicting by
tree search. Its defaults are napkinXC's (hierarchical balanced k-means,
arity 2, at most 100 labels per leaf, L2-normalised inputs, C = 10).
It is not trained by SGD, so a "curve" has one point: the time one full
training takes and the precision it reaches. ``fit`` trains on the first
``max_samples`` samples of the same per-epoch order the SLIDE trainer visits.
"""

from __future__ import annotations

import time

import numpy as np

from .config import Config
from .data import Dataset

__all__ = ["LabelTree", "available", "PEERS"]

_SEED_ORDER = 0x0D0E  # epoch order: as workbench.Network


def available() -> bool:
    try:
        import napkinxc  # noqa: F401
        import scipy.sparse  # noqa: F401
    except ImportError:
        return False
    return True


def _need():
    if not available():
        raise ImportError("the label-tree peer needs napkinXC and SciPy: pip install -e '.[peers]' "
                          "(or pip install napkinxc scipy)")


class LabelTree:
    """napkinXC's PLT behind the Network-like API (see the module docstring)."""

    engine = "plt"

    def __init__(self, config: Config, **options):
        _need()
        from napkinxc.models import PLT

        self.config = config
        self.threads = config.effective_threads()
        self.options = dict(options)
        self._tmp = None
        self._dir = None
        self.model = None
        self._PLT = PLT
        self.samples_seen = 0
        self.train_seconds = 0.0

    def _model_dir(self) -> str:
        import tempfile

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="slide-plt-")
        return self._tmp.name

    @staticmethod
    def _X(data: Dataset, rows: np.ndarray):
        import scipy.sparse as sp

        from .baselines import _gather_rows

        idx, lens, _, _ = _gather_rows(data.indptr, np.asarray(rows, dtype=np.int64))
        indptr = np.concatenate([[0], np.cumsum(lens)])
        return sp.csr_matrix((data.values[idx].astype(np.float32), data.indices[idx], indptr),
                             shape=(len(rows), data.n_features))

    @staticmethod
    def _Y(data: Dataset, rows: np.ndarray) -> list:
        lp = data.label_indptr
        return [data.labels[lp[r]:lp[r + 1]].tolist() for r in rows]

    def fit(self, data: Dataset, epochs: float = 1, *, max_samples: int | None = None, progress=None,
            should_stop=None) -> dict:
        """One offline training on the first max_samples samples (default: all) of
        the epoch order; a second call retrains from scratch on its own samples."""
        n = len(data)
        total = n if max_samples is None else min(int(max_samples), n)
        order = np.random.default_rng([self.config.seed, _SEED_ORDER, 0]).permutation(n)[:total]
        order = order[np.diff(data.label_indptr)[order] > 0]  # napkinXC needs a label per point
        X, Y = self._X(data, order), self._Y(data, order)
        opts = {"threads": self.threads, "seed": self.config.seed, **self.options}
        self.model = self._PLT(self._model_dir(), **opts)
        t0 = time.perf_counter()
        self.model.fit(X, Y)
        sec = time.perf_counter() - t0
        self.samples_seen = total
        self.train_seconds = sec
        return {"samples": total, "train_seconds": sec, "samples_per_s": total / sec if sec > 0 else 0.0,
                "mean_loss": float("nan"), "stopped_early": False, "time_split": {"fit": sec},
                "options": opts}

    def predict(self, data: Dataset, k: int = 5, *, rows=None) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the label tree first")
        rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        pred = self.model.predict(self._X(data, rows), top_k=k)
        out = np.full((len(rows), k), -1, np.int32)
        for i, p in enumerate(pred):
            p = list(p)[:k]
            out[i, :len(p)] = p
        return out

    def evaluate(self, data: Dataset, *, mode: str = "dense", max_samples: int | None = None) -> dict:
        from .network import precision_at_k

        has = np.flatnonzero(np.diff(data.label_indptr) > 0)
        if max_samples is not None:
            has = has[: int(max_samples)]
        t0 = time.perf_counter()
        top = self.predict(data, 5, rows=has)
        sec = time.perf_counter() - t0
        p = precision_at_k(top, data, has)
        p.update({"n": int(len(has)), "mode": "tree", "eval_seconds": sec,
                  "eval_samples_per_s": len(has) / sec if sec > 0 else 0.0})
        return p

    def memory_report(self) -> dict:
        return {}


PEERS = {"plt": LabelTree}
