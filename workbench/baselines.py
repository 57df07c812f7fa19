"""Baselines: the network SLIDE trains, trained without LSH.

What a user would pick instead of SLIDE, on exactly the same network and the
same training problem, so that "SLIDE against dense and against sampled
softmax" is one comparison:

  * ``DenseSoftmax``   full softmax over every output, every batch; every
    output row gets a gradient and dense Adam runs over all of them (as the
    reference implementation's dense mode).
  * ``SampledSoftmax`` each batch shares one candidate set: the union of the
    batch's true labels plus ``n_negatives`` uniform random negatives (drawn
    without replacement, excluding those labels); softmax cross-entropy over
    the candidates only; gradients and a sparse ("lazy") Adam step for the
    candidate rows only.
  * ``TorchDenseSoftmax`` / ``TorchSampledSoftmax``: the same two in PyTorch,
    when ``import torch`` works (never required).

The network and the optimisation are SLIDE's (``workbench.Config``): sparse
input (n_features) -> hidden ReLU layer(s) -> n_labels outputs; weights and
biases drawn N(0, init_std) exactly as ``workbench.Network`` draws them (same
seed, same values: a baseline starts from the very weights SLIDE starts from);
Adam with the bias correction folded into the step size,
lr_t = lr*sqrt(1-b2^t)/(1-b1^t), w -= lr_t*m/(sqrt(v)+eps), t the global step;
loss: softmax cross-entropy against the uniform distribution over a sample's
labels, mean over the batch (samples without labels count in the batch size
but carry no loss or gradient, as in the engine); samples visited in the same
per-epoch order as ``Network.fit``.

Layers and where their time goes (``fit(...)["time_split"]``):
  input_forward  input layer as a sparse gather-sum: the input weights are
                 stored transposed (one row per feature); the rows of the
                 batch's non-zeros are gathered, scaled by the values and
                 summed per sample (np.add.reduceat); then bias and ReLU, and
                 any further hidden layers (GEMMs).
  sample         (sampled) negatives, candidate set, gather of candidate rows.
  output_gemm    logits: H @ W.T, BLAS GEMMs (dense: by blocks of output rows,
                 sampled: by groups of samples, in the worker threads).
  softmax        max / exp / normalisation, labels subtracted.
  backward       gradient GEMMs (dW = dZ^T H, dH = dZ W), hidden and input
                 layer backward (input: per-feature segment sums).
  update         Adam: dense over all rows (dense output; input layer with
                 update='dense'), or over the rows touched (input layer with
                 update='sparse'; sampled output: candidate rows only).
                 DenseSoftmax's output-layer Adam runs inside its second pass
                 (below); its share of that pass is reported as update.

DenseSoftmax at full width holds W, m, v of the output layer and one batch of
logits (batch x n_labels fp32: 343 MB each at the Amazon-670K shape, hidden
128, batch 128) and no full-size gradient: the output layer runs in two
passes over blocks of output rows, split over ``threads`` Python threads
(numpy and BLAS release the GIL):
  pass 1  logits of the block (GEMM), plus bias; per sample the block's max
          and sum of exp (an online softmax: the block keeps exp(z - max_block));
  pass 2  rescale to probabilities/B, subtract the label targets, the block's
          gradient (GEMM into a block-sized buffer), its share of dH (GEMM),
          and Adam over the block's rows while they are in cache.
Adam itself is the engine's fused SIMD kernel (``kernels._core.op_adam``, the
one ``workbench.variants`` selects for this CPU; ``adam='numpy'`` uses plain
numpy ufuncs instead, several passes per array).

Threads. ``Config.threads`` (0: every core this process may use) is the
number of Python worker threads (numpy's ufuncs and BLAS calls release the
GIL): DenseSoftmax splits its output layer into blocks of output rows,
SampledSoftmax its batch into groups of samples; both split the input layer
(groups of samples forward, groups of features backward) and Adam (blocks of
rows; the output's and the hidden layers' updates run side by side). BLAS
itself runs single-threaded meanwhile: each worker multiplies its own blocks,
which on 2 cores is at least as fast as OpenBLAS's own threads for these
shapes and does not collapse when the cores are shared (OpenBLAS threads
spin-wait: 2 BLAS threads made the sampled softmax's small GEMMs 10-60x
slower on a busy machine). numpy's OpenBLAS reads OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS when it is loaded and otherwise only changes through its
``openblas_set_num_threads`` entry point: this module calls it through ctypes
(as threadpoolctl does), for the duration of ``fit``/``predict``, and restores
the previous count. Where the entry point cannot be found (another BLAS), the
environment decides and ``blas_info()`` says so; a runner that must be sure
starts each measurement in a fresh subprocess with OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS / MKL_NUM_THREADS set. Summaries carry ``blas`` (library,
threads in use during the fit). The torch baselines use torch.set_num_threads.

API (mirrors ``workbench.Network`` so one runner drives every engine)::

    model = DenseSoftmax(config)                    # or SampledSoftmax(config, n_negatives=8192)
    summary = model.fit(train, epochs=1)            # samples, train_seconds, samples_per_s, mean_loss, time_split
    model.evaluate(test)                            # p_at_1/3/5, n, eval_seconds (exact dense inference)
    model.predict(test, k=5)                        # (n, k) int32 top-k labels, -1 where fewer
    curve = learning_curve(model, train, test, budget_samples=50_000, eval_every=10_000, eval_samples=1_000)

``learning_curve`` works for a ``Network`` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .config import Config, ConfigError
from .data import Dataset
from .network import NumericalError, check_shape, precision_at_k

__all__ = ["DenseSoftmax", "SampledSoftmax", "TorchDenseSoftmax", "TorchSampledSoftmax", "ENGINES", "make",
           "learning_curve", "blas_info", "blas_threads", "torch_available", "init_params"]

F32 = np.float32
BLOCK_ROWS = 4096  # output rows per block of the dense output layer (4096 x 128 fp32: 2 MiB)
PREDICT_ROWS = 8192  # output rows per block at inference
_SEED_NEG = 0x5A3F  # stream of the negative samples
_SEED_ORDER = 0x0D0E  # epoch order: as workbench.Network
_SEED_INIT = 0x1417  # weights: as workbench.Network


# ---- BLAS threads -----------------------------------------------------------------------------------

class _Blas:
    """The OpenBLAS library numpy loaded, and its thread-count entry points (if found)."""

    def __init__(self):
        self.path = None
        self.library = None
        self._get = self._set = None
        self._lock = threading.Lock()
        paths = []
        try:
            with open("/proc/self/maps") as fh:
                for line in fh:
                    parts = line.split(None, 5)
                    if len(parts) == 6:
                        p = parts[5].strip()
                        name = os.path.basename(p).lower()
                        if ("openblas" in name or "libblas" in name or "mkl_rt" in name) and p not in paths:
                            paths.append(p)
        except OSError:  # not Linux: no /proc
            paths = []
        mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
        for p in paths:
            try:
                lib = ctypes.CDLL(p, mode=mode)  # already loaded: never loads a second copy
            except OSError:
                continue
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", ""):
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and set_ is not None:
                        get.restype = ctypes.c_int
                        get.argtypes = []
                        set_.restype = None
                        set_.argtypes = [ctypes.c_int]
                        self._get, self._set = get, set_
                        self.path, self.library = p, "openblas"
                        return
            if "mkl" in os.path.basename(p).lower():
                self.path, self.library = p, "mkl"
        if paths and self.library is None:
            self.path, self.library = paths[0], "unknown"

    @property
    def controllable(self) -> bool:
        return self._set is not None

    def threads(self) -> int | None:
        if self._get is None:
            env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
            return int(env) if env and env.isdigit() else None
        return int(self._get())

    def set_threads(self, n: int) -> bool:
        if self._set is None:
            return False
        self._set(int(n))
        return True


_BLAS: _Blas | None = None


def _blas() -> _Blas:
    global _BLAS
    if _BLAS is None:
        _BLAS = _Blas()
    return _BLAS


def blas_info() -> dict:
    """The BLAS numpy uses: library, path, the threads it uses now (None: unknown)
    and whether this module can change that count in-process (``controllable``)."""
    b = _blas()
    return {"library": b.library, "path": b.path, "threads": b.threads(), "controllable": b.controllable}


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the block with BLAS using n threads (restored afterwards). A no-op when n
    is None or the library offers no entry point (the environment decides then)."""
    b = _blas()
    if n is None or not b.controllable:
        yield b.threads()
        return
    with b._lock:
        old = b.threads()
        b.set_threads(n)
    try:
        yield int(n)
    finally:
        with b._lock:
            if old is not None:
                b.set_threads(old)


# ---- initialisation ---------------------------------------------------------------------------------

def init_params(config: Config, seed: int | None = None) -> list:
    """Initial weights of every layer, as ``workbench.Network`` draws them for
    ``seed`` (default config.seed): [(W, b)] with W the logical (n_out, n_in)
    matrix, except the input layer, returned transposed (n_features, hidden)."""
    seed = config.seed if seed is None else int(seed)
    std = F32(config.init_std)
    out = []
    n_in = config.n_features
    for index, n_out in enumerate(config.widths):
        rng = np.random.default_rng([seed, _SEED_INIT, index])
        W = np.empty((n_in, n_out) if index == 0 else (n_out, n_in), F32)
        block = max(1, (1 << 22) // max(1, n_in))
        for r0 in range(0, n_out, block):
            r1 = min(n_out, r0 + block)
            w = rng.standard_normal((r1 - r0, n_in), dtype=F32) * std
            if index == 0:
                W[:, r0:r1] = w.T
            else:
                W[r0:r1] = w
        b = rng.standard_normal(n_out, dtype=F32) * std
        out.append((W, b))
        n_in = n_out
    return out


# ---- batches ----------------------------------------------------------------------------------------

def _gather_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple:
    """The entries of CSR rows `rows`, in order: (entry positions, per-row
    lengths, per-row start offsets among the gathered entries, the gathered
    row each entry belongs to)."""
    st = indptr[rows]
    lens = indptr[rows + 1] - st
    ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    ent = np.repeat(st - ptr[:-1], lens) + np.arange(int(ptr[-1]), dtype=np.int64)
    seg = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    return ent, lens, ptr[:-1], seg


class _Inputs:
    """The sparse inputs of a batch: entries (feature, value) and their sample."""

    __slots__ = ("B", "feats", "vals", "seg", "starts", "lens")

    def __init__(self, data: Dataset, rows: np.ndarray):
        ent, self.lens, self.starts, self.seg = _gather_rows(data.indptr, rows)
        self.B = len(rows)
        self.feats = data.indices[ent]
        self.vals = data.values[ent]


class _Labels:
    """The labels of a batch: entries (sample, label, weight 1/|labels|)."""

    __slots__ = ("seg", "labs", "w", "has", "count")

    def __init__(self, data: Dataset, rows: np.ndarray):
        ent, lens, _, self.seg = _gather_rows(data.label_indptr, rows)
        self.labs = data.labels[ent].astype(np.int64)
        self.w = (1.0 / lens[self.seg]).astype(np.float64)
        self.has = lens > 0
        self.count = int(self.has.sum())


# ---- Adam -------------------------------------------------------------------------------------------

def _adam_numpy(W, M, V, G, lr_t, b1, b2, eps):
    """Adam in place with numpy ufuncs (several passes); G is zeroed after use, as the kernel does."""
    S = np.empty_like(G)
    M *= F32(b1)
    np.multiply(G, F32(1.0 - b1), out=S)
    M += S
    V *= F32(b2)
    np.multiply(G, G, out=S)
    S *= F32(1.0 - b2)
    V += S
    np.sqrt(V, out=S)
    S += F32(eps)
    np.divide(M, S, out=S)
    S *= F32(lr_t)
    W -= S
    G.fill(0)


# ---- common driver ----------------------------------------------------------------------------------

class _Engine:
    """What every baseline shares: counters, the training loop (same epoch order and
    batches as ``Network.fit``), evaluation, the learning curve, the thread pool."""

    engine = "baseline"

    def __init__(self, config: Config, *, seed: int | None = None):
        if not isinstance(config, Config):
            raise TypeError("config must be a workbench.Config")
        self.config = config
        self.seed = config.seed if seed is None else int(seed)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        self.threads = config.effective_threads()
        self.step = 0
        self.batches = 0
        self.samples_seen = 0
        self.epochs_done = 0
        self._epoch_pos = 0
        self.history: list[dict] = []
        self._pool: ThreadPoolExecutor | None = None
        self._split: dict = {}

    # ---- threads ------------------------------------------------------------------------------------
    def _map(self, fn, items):
        """fn over items in the worker threads (inline with one thread); results in order."""
        items = list(items)
        if self.threads <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=self.engine)
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        """Stop the worker threads (they also stop when the model is collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def _blas_train(self) -> int | None:
        """BLAS threads while training (None: leave as the environment set it)."""
        return self.threads

    def _blas_predict(self) -> int | None:
        return 1

    # ---- data ---------------------------------------------------------------------------------------
    def check_data(self, data: Dataset) -> None:
        check_shape(data, self.config)  # the same rule as Network: data of the model's shape only

    def _lr_t(self) -> float:
        cfg = self.config
        t = self.step
        return cfg.lr * math.sqrt(1.0 - cfg.beta2**t) / (1.0 - cfg.beta1**t)

    def _tick(self, phase: str, t0: float) -> float:
        t1 = time.perf_counter()
        self._split[phase] = self._split.get(phase, 0.0) + (t1 - t0)
        return t1

    # ---- training -----------------------------------------------------------------------------------
    def fit(self, data: Dataset, epochs: float = 1, *, max_samples: int | None = None, progress=None,
            should_stop=None) -> dict:
        """Train for `epochs` passes (or `max_samples` samples) over `data`, in the
        order and batches ``Network.fit`` uses. progress(info) after every batch,
        should_stop() polled between batches. Returns a summary like Network.fit's."""
        self.check_data(data)
        cfg = self.config
        n = len(data)
        if n == 0:
            raise ValueError(f"{data.source}: no training samples")
        if epochs <= 0 and max_samples is None:
            raise ValueError("epochs must be > 0")
        total = int(round(epochs * n)) if max_samples is None else int(max_samples)
        if total <= 0:
            raise ValueError("nothing to train: max_samples must be > 0")
        B = cfg.batch_size
        self._split = {}
        self._fit_stats = {}
        done = 0
        loss_sum, loss_n = 0.0, 0
        stopped = False
        with blas_threads(self._blas_train()) as bt:
            t_start = time.perf_counter()
            while done < total and not stopped:
                epoch = self.epochs_done
                order = np.random.default_rng([self.seed, _SEED_ORDER, epoch]).permutation(n).astype(np.int64)
                pos = self._epoch_pos
                while pos < n and done < total:
                    stop = min(n, pos + B, pos + (total - done))
                    self.batches += 1
                    self.step += 1
                    ls, cnt = self._train_batch(data, order[pos:stop])
                    if not math.isfinite(ls):
                        raise NumericalError(f"{self.engine}: step {self.step} (batch {self.batches}): loss is {ls}; "
                                             "training stopped")
                    self.samples_seen += stop - pos
                    done += stop - pos
                    pos = stop
                    loss_sum += ls
                    loss_n += cnt
                    if progress is not None:
                        el = time.perf_counter() - t_start
                        progress({"done": done, "total": total, "loss": ls / max(cnt, 1), "elapsed": el,
                                  "samples_per_s": done / el if el > 0 else 0.0, "epoch": epoch})
                    if should_stop is not None and should_stop():
                        stopped = True
                        break
                if pos >= n:
                    self.epochs_done += 1
                    self._epoch_pos = 0
                else:
                    self._epoch_pos = pos
            seconds = time.perf_counter() - t_start
        split = dict(self._split)
        split["other"] = max(0.0, seconds - sum(split.values()))
        summary = {
            "engine": self.engine,
            "samples": done,
            "train_seconds": seconds,
            "samples_per_s": done / seconds if seconds > 0 else 0.0,
            "mean_loss": loss_sum / max(loss_n, 1),
            "stopped_early": stopped,
            "time_split": split,
            "threads": self.threads,
            "blas": {**blas_info(), "threads": bt},
        }
        summary.update(self._summary_extra())
        self.history.append({k: summary[k] for k in ("samples", "train_seconds", "samples_per_s", "mean_loss")})
        return summary

    def _summary_extra(self) -> dict:
        return {}

    def _train_batch(self, data: Dataset, rows: np.ndarray) -> tuple[float, int]:  # pragma: no cover
        raise NotImplementedError

    # ---- inference ----------------------------------------------------------------------------------
    def _rows(self, data: Dataset, rows) -> np.ndarray:
        self.check_data(data)
        rows = np.arange(len(data), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise ValueError("rows must be 1-D")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
            raise IndexError("rows out of range")
        return rows

    def predict(self, data: Dataset, k: int = 5, *, rows=None) -> np.ndarray:
        """Top-k labels per sample by exact (dense) inference over every output:
        int32 (n, k), best first, -1 where fewer than k outputs exist."""
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows = self._rows(data, rows)
        out = np.full((len(rows), k), -1, np.int32)
        step = max(1, self.config.batch_size)
        with blas_threads(self._blas_predict()):
            for s0 in range(0, len(rows), step):
                r = rows[s0:s0 + step]
                top = self._topk(data, r, min(k, self.config.n_labels))
                out[s0:s0 + len(r), : top.shape[1]] = top
        return out

    def logits(self, data: Dataset, rows=None) -> np.ndarray:
        """Exact output logits (len(rows), n_labels), float32."""
        rows = self._rows(data, rows)
        out = np.empty((len(rows), self.config.n_labels), F32)
        step = max(1, self.config.batch_size)
        for s0 in range(0, len(rows), step):
            r = rows[s0:s0 + step]
            out[s0:s0 + len(r)] = self._logits(data, r)
        return out

    def evaluate(self, data: Dataset, *, max_samples: int | None = None) -> dict:
        """P@1, P@3, P@5 (exact dense inference) over the first `max_samples` samples with a label."""
        has = np.flatnonzero(np.diff(data.label_indptr) > 0)
        if max_samples is not None:
            has = has[: int(max_samples)]
        t0 = time.perf_counter()
        top = self.predict(data, 5, rows=has)
        seconds = time.perf_counter() - t0
        p = precision_at_k(top, data, has)
        p.update({"n": int(len(has)), "mode": "dense", "eval_seconds": seconds,
                  "eval_samples_per_s": len(has) / seconds if seconds > 0 else 0.0})
        return p

    def learning_curve(self, train: Dataset, test: Dataset, budget_samples: int, eval_every: int,
                       eval_samples: int | None = 1000, **kw) -> list:
        """See the module function ``learning_curve``."""
        return learning_curve(self, train, test, budget_samples, eval_every, eval_samples, **kw)


# ---- numpy baselines --------------------------------------------------------------------------------

class _NumpyBaseline(_Engine):
    default_update = "dense"

    def __init__(self, config: Config, *, n_negatives: int | None = 8192, seed: int | None = None,
                 update: str | None = None, adam: str = "auto"):
        super().__init__(config, seed=seed)
        update = self.default_update if update is None else update
        if update not in ("dense", "sparse"):
            raise ConfigError(f"update must be 'dense' or 'sparse', got {update!r}")
        self.update = update
        if adam not in ("auto", "kernel", "numpy"):
            raise ConfigError(f"adam must be 'auto', 'kernel' or 'numpy', got {adam!r}")
        self.adam_kernel = None
        if adam in ("auto", "kernel"):
            try:
                from . import variants

                self.adam_kernel = variants.select("fp32", config.isa, config.kernels)["adam"].kernel.name
            except Exception as e:  # noqa: BLE001 - any failure means: no kernel
                if adam == "kernel":
                    raise ConfigError(f"adam='kernel': no Adam kernel available ({e})") from None
        self.adam = "kernel" if self.adam_kernel else "numpy"
        self.layers = []
        for index, (W, b) in enumerate(init_params(config, self.seed)):
            a = {"W": W, "b": b, "mW": np.zeros_like(W), "vW": np.zeros_like(W), "mb": np.zeros_like(b),
                 "vb": np.zeros_like(b), "gb": np.zeros_like(b)}
            last = index == len(config.hidden)
            if not last and not (index == 0 and update == "sparse"):
                a["gW"] = np.zeros_like(W)  # full gradient: hidden layers; input layer with update='dense'
            self.layers.append(a)

    # ---- Adam ---------------------------------------------------------------------------------------
    def _blas_train(self):
        return 1  # the worker threads multiply their own blocks / groups of samples

    def _adam(self, W, M, V, G, lr_t: float) -> None:
        """Adam in place over arrays of equal shape (1-D: a bias); G is zeroed."""
        cfg = self.config
        if W.ndim == 1:
            W, M, V, G = (a.reshape(-1, 1) for a in (W, M, V, G))
        if self.adam_kernel is None:
            _adam_numpy(W, M, V, G, lr_t, cfg.beta1, cfg.beta2, cfg.eps)
            return
        from kernels import _core

        _core.op_adam(self.adam_kernel, W, None, M, V, G, W.shape[1], None, lr_t, cfg.beta1, cfg.beta2, cfg.eps)

    def _adam_all(self, W, M, V, G, lr_t: float) -> list:
        """Tasks of a dense Adam over every row: blocks of rows for the worker threads."""
        n = W.shape[0]
        per = max(1, (1 << 16) // max(1, W.shape[1] if W.ndim == 2 else 1))
        if n <= per or self.threads <= 1:
            return [lambda: self._adam(W, M, V, G, lr_t)]
        chunks = max(self.threads * 4, -(-n // (per * 16)))
        edges = np.linspace(0, n, chunks + 1).astype(np.int64)
        return [lambda a=a, z=z: self._adam(W[a:z], M[a:z], V[a:z], G[a:z], lr_t)
                for a, z in zip(edges[:-1], edges[1:]) if z > a]

    def _adam_rows(self, W, M, V, rows, G, lr_t: float, Wr=None) -> list:
        """Tasks of a sparse ("lazy") Adam on rows `rows` only, with their gradient G
        (len(rows), ...): gather, update, scatter; one part per worker thread.
        Wr: W[rows] if already gathered."""
        parts = max(1, min(self.threads, len(rows) // 256))
        edges = np.linspace(0, len(rows), parts + 1).astype(np.int64)

        def part(a, z):
            r = rows[a:z]
            w = W[r] if Wr is None else Wr[a:z]
            m = M[r]
            v = V[r]
            self._adam(w, m, v, G[a:z], lr_t)
            W[r] = w
            M[r] = m
            V[r] = v

        return [lambda a=a, z=z: part(a, z) for a, z in zip(edges[:-1], edges[1:]) if z > a]

    def _run(self, tasks: list) -> None:
        self._map(lambda f: f(), tasks)

    def _tasks(self, nb: int) -> list:
        """Blocks per worker task: contiguous runs, a few tasks per thread."""
        n_tasks = min(nb, max(1, self.threads * 4 if self.threads > 1 else 1))
        edges = np.linspace(0, nb, n_tasks + 1).astype(np.int64)
        return [range(edges[i], edges[i + 1]) for i in range(n_tasks) if edges[i + 1] > edges[i]]

    def _share(self, wall: float, busy: dict) -> None:
        """Split a parallel phase's wall time over its sub-phases by the threads' own clocks."""
        tot = sum(busy.values())
        for k, v in busy.items():
            self._split[k] = self._split.get(k, 0.0) + (wall * v / tot if tot > 0 else 0.0)

    # ---- hidden layers ------------------------------------------------------------------------------
    def _groups(self, n: int, minimum: int = 8) -> np.ndarray:
        """Edges of up to `threads` contiguous groups of n items (at least `minimum` each)."""
        g = max(1, min(self.threads, n // max(1, minimum)))
        return np.linspace(0, n, g + 1).astype(np.int64)

    def _hidden_forward(self, inp: _Inputs) -> list:
        """Activations of every hidden layer (ReLU), (B, width) float32 each. The input
        layer: gather the rows of the non-zeros, scale, sum per sample; groups of
        samples in the worker threads."""
        L0 = self.layers[0]
        W0 = L0["W"]
        H = np.zeros((inp.B, W0.shape[1]), F32)
        nnz = len(inp.feats)
        if nnz:
            ptr = np.append(inp.starts, nnz)
            edges = self._groups(inp.B)

            def group(g):
                i0, i1 = edges[g], edges[g + 1]
                e0, e1 = ptr[i0], ptr[i1]
                if e1 == e0:
                    return
                A = W0[inp.feats[e0:e1]]
                A *= inp.vals[e0:e1, None]
                ne = inp.lens[i0:i1] > 0
                Hg = H[i0:i1]
                Hg[ne] = np.add.reduceat(A, inp.starts[i0:i1][ne] - e0, axis=0)

            self._map(group, range(len(edges) - 1))
        H += L0["b"]
        np.maximum(H, 0, out=H)
        acts = [H]
        for L in self.layers[1:-1]:
            Z = acts[-1] @ L["W"].T
            Z += L["b"]
            np.maximum(Z, 0, out=Z)
            acts.append(Z)
        return acts

    def _hidden_backward(self, inp: _Inputs, acts: list, dH: np.ndarray) -> None:
        """Gradients of the hidden layers from dL/d(last hidden activation); the input
        layer's are kept per touched feature (self._g0_rows, self._g0): entries sorted
        by feature, per-feature segment sums, groups of features in the worker threads."""
        for k in range(len(acts) - 1, -1, -1):
            dZ = dH * (acts[k] > 0)
            L = self.layers[k]
            L["gb"][:] = dZ.sum(axis=0)
            if k > 0:
                np.matmul(dZ.T, acts[k - 1], out=L["gW"])
                dH = dZ @ L["W"]
                continue
            nnz = len(inp.feats)
            if not nnz:
                self._g0_rows = np.zeros(0, np.int64)
                self._g0 = np.zeros((0, dZ.shape[1]), F32)
                continue
            perm = np.argsort(inp.feats, kind="stable")
            fs = inp.feats[perm]
            first = np.flatnonzero(np.concatenate(([True], fs[1:] != fs[:-1])))
            bounds = np.append(first, nnz)
            seg, vals = inp.seg[perm], inp.vals[perm]
            g0 = np.empty((len(first), dZ.shape[1]), F32)
            edges = self._groups(len(first), 64)

            def group(g):
                u0, u1 = edges[g], edges[g + 1]
                e0, e1 = bounds[u0], bounds[u1]
                C = dZ[seg[e0:e1]]
                C *= vals[e0:e1, None]
                g0[u0:u1] = np.add.reduceat(C, first[u0:u1] - e0, axis=0)

            self._map(group, range(len(edges) - 1))
            self._g0_rows = fs[first].astype(np.int64)
            self._g0 = g0

    def _hidden_update(self, lr_t: float) -> list:
        """Tasks of the hidden layers' Adam."""
        tasks = []
        for k, L in enumerate(self.layers[:-1]):
            if k == 0:
                if self.update == "sparse":
                    if len(self._g0_rows):
                        tasks += self._adam_rows(L["W"], L["mW"], L["vW"], self._g0_rows, self._g0, lr_t)
                else:
                    L["gW"][self._g0_rows] = self._g0
                    tasks += self._adam_all(L["W"], L["mW"], L["vW"], L["gW"], lr_t)
            else:
                tasks += self._adam_all(L["W"], L["mW"], L["vW"], L["gW"], lr_t)
            tasks.append(lambda L=L: self._adam(L["b"], L["mb"], L["vb"], L["gb"], lr_t))
        return tasks

    def _train_batch(self, data: Dataset, rows: np.ndarray) -> tuple[float, int]:
        t = time.perf_counter()
        inp = _Inputs(data, rows)
        lab = _Labels(data, rows)
        acts = self._hidden_forward(inp)
        t = self._tick("input_forward", t)
        lr_t = self._lr_t()
        loss, dH, pending = self._output_step(acts[-1], lab, inp.B, lr_t)
        t = time.perf_counter()
        self._hidden_backward(inp, acts, dH)
        t = self._tick("backward", t)
        self._run(pending + self._hidden_update(lr_t))  # the output's sparse Adam alongside the hidden layers'
        self._tick("update", t)
        return loss, lab.count

    def _output_step(self, H, lab: _Labels, B: int, lr_t: float):  # pragma: no cover
        raise NotImplementedError

    # ---- inference ----------------------------------------------------------------------------------
    def _logits(self, data: Dataset, rows: np.ndarray) -> np.ndarray:
        H = self._hidden_forward(_Inputs(data, rows))[-1]
        L = self.layers[-1]
        Z = H @ L["W"].T
        Z += L["b"]
        return Z

    def _topk(self, data: Dataset, rows: np.ndarray, k: int) -> np.ndarray:
        """Top-k outputs of `rows` over every output row, blocks of output rows in threads."""
        H = self._hidden_forward(_Inputs(data, rows))[-1]
        L = self.layers[-1]
        W, b = L["W"], L["b"]
        n = W.shape[0]
        blocks = [(a, min(n, a + PREDICT_ROWS)) for a in range(0, n, PREDICT_ROWS)]

        def block(ab):
            a, z = ab
            Z = H @ W[a:z].T
            Z += b[a:z]
            kk = min(k, z - a)
            idx = np.argpartition(Z, z - a - kk, axis=1)[:, z - a - kk:]
            return np.take_along_axis(Z, idx, axis=1), idx + a

        parts = self._map(block, blocks)
        vals = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        best = np.argsort(-vals, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(ids, best, axis=1).astype(np.int32)

    # ---- inspection ---------------------------------------------------------------------------------
    def logical_weights(self) -> tuple[list, list]:
        """([W (n_out, n_in)], [b]) of every layer, copies."""
        Ws = [np.array(self.layers[0]["W"].T)] + [np.array(L["W"]) for L in self.layers[1:]]
        return Ws, [np.array(L["b"]) for L in self.layers]

    def batch_gradients(self, data: Dataset, rows) -> dict:
        """Loss and gradients of one batch without updating anything (for tests and
        inspection): {"loss": mean over samples with labels, "gW": [logical (n_out, n_in)
        float64, zero where no gradient], "gb": [...], "rows": output rows with a
        gradient (all for dense, the candidates for sampled)}."""
        rows = self._rows(data, rows)
        inp = _Inputs(data, rows)
        lab = _Labels(data, rows)
        acts = self._hidden_forward(inp)
        saved = self._split
        self._split = {}
        self.batches += 1  # the negatives' stream: as a training batch would draw them
        try:
            loss, dH, gout = self._output_grads(acts[-1], lab, inp.B)
        finally:
            self.batches -= 1
            self._split = saved
        self._hidden_backward(inp, acts, dH)
        gW, gb = [], []
        for k, L in enumerate(self.layers[:-1]):
            if k == 0:
                g = np.zeros(L["W"].shape, np.float64)
                g[self._g0_rows] = self._g0
                gW.append(g.T)
            else:
                gW.append(L["gW"].astype(np.float64))
                L["gW"].fill(0)
            gb.append(L["gb"].astype(np.float64))
        out_rows, gWo, gbo = gout
        Wo = self.layers[-1]["W"]
        g = np.zeros(Wo.shape, np.float64)
        g[out_rows] = gWo
        gW.append(g)
        g = np.zeros(Wo.shape[0], np.float64)
        g[out_rows] = gbo
        gb.append(g)
        return {"loss": loss / max(lab.count, 1), "gW": gW, "gb": gb, "rows": np.asarray(out_rows)}

    def memory_report(self) -> dict:
        """Bytes held by parameters, Adam moments and gradients, and by batch buffers."""
        par = sum(a.nbytes for L in self.layers for a in L.values() if isinstance(a, np.ndarray))
        return {"parameter_bytes": int(par), "buffer_bytes": int(self._buffer_bytes())}

    def _buffer_bytes(self) -> int:
        return 0


class DenseSoftmax(_NumpyBaseline):
    """Full softmax over all n_labels outputs every batch, dense Adam over every
    output row every batch. numpy + BLAS; see the module docstring.

    DenseSoftmax(config, *, n_negatives=None (ignored: the API is common), seed=None
    (default config.seed: the weights and sample order of Network(config)),
    update='dense' (input layer: Adam over every row, as the reference; 'sparse':
    only the rows of features in the batch), adam='auto' ('kernel': the engine's
    fused SIMD Adam kernel; 'numpy': numpy ufuncs))."""

    engine = "dense"
    default_update = "dense"

    def __init__(self, config: Config, *, n_negatives: int | None = None, seed: int | None = None,
                 update: str | None = None, adam: str = "auto"):
        super().__init__(config, n_negatives=n_negatives, seed=seed, update=update, adam=adam)
        self._Z = None

    def _buffer_bytes(self) -> int:
        return 0 if self._Z is None else self._Z.nbytes

    def _logit_buffer(self, B: int) -> np.ndarray:
        """(n_labels, B) logits, transposed: a block of output rows is a contiguous slice."""
        n = self.config.n_labels
        if self._Z is None or self._Z.size < n * B:
            self._Z = None
            self._Z = np.empty(n * max(B, self.config.batch_size), F32)
        return self._Z[: n * B].reshape(n, B)

    def _output_step(self, H, lab: _Labels, B: int, lr_t: float):
        loss, dH, _ = self._dense_pass(H, lab, B, lr_t)
        return loss, dH, []  # Adam ran inside the second pass

    def _output_grads(self, H, lab: _Labels, B: int):
        return self._dense_pass(H, lab, B, None)

    def _dense_pass(self, H, lab: _Labels, B: int, lr_t: float | None):
        """Both passes over blocks of output rows. lr_t None: gradients only (returned
        whole: tests), no update."""
        L = self.layers[-1]
        W, bias = L["W"], L["b"]
        n, h = W.shape
        ZT = self._logit_buffer(B)
        blocks = [(a, min(n, a + BLOCK_ROWS)) for a in range(0, n, BLOCK_ROWS)]
        nb = len(blocks)
        Ht = np.ascontiguousarray(H.T)  # (h, B)
        # label entries by label: each block finds its own with searchsorted
        order = np.argsort(lab.labs, kind="stable")
        sl, ss, sw = lab.labs[order], lab.seg[order], lab.w[order]
        lo = np.searchsorted(sl, [a for a, _ in blocks])
        hi = np.searchsorted(sl, [z for _, z in blocks])
        zy = np.empty(len(sl), np.float64)
        mx = np.empty((nb, B), F32)
        sm = np.empty((nb, B), np.float64)
        tasks = self._tasks(nb)
        clock = {}

        def pass1(task):
            t_g = t_s = 0.0
            for c in task:
                a, z = blocks[c]
                t0 = time.perf_counter()
                Zc = ZT[a:z]
                np.matmul(W[a:z], Ht, out=Zc)
                Zc += bias[a:z, None]
                t1 = time.perf_counter()
                i0, i1 = lo[c], hi[c]
                if i1 > i0:
                    zy[i0:i1] = Zc[sl[i0:i1] - a, ss[i0:i1]]
                m = Zc.max(axis=0)
                mx[c] = m
                Zc -= m
                np.exp(Zc, out=Zc)
                sm[c] = Zc.sum(axis=0, dtype=np.float64)
                t_g += t1 - t0
                t_s += time.perf_counter() - t1
            return t_g, t_s

        t = time.perf_counter()
        times = self._map(pass1, tasks)
        t_wall = time.perf_counter() - t
        self._share(t_wall, {"output_gemm": sum(x[0] for x in times), "softmax": sum(x[1] for x in times)})
        # combine the blocks: log-sum-exp per sample
        M = mx.max(axis=0).astype(np.float64)
        S = (sm * np.exp(mx.astype(np.float64) - M)).sum(axis=0)
        lse = M + np.log(S)
        per = np.zeros(B, np.float64)
        np.add.at(per, ss, sw * zy)
        loss = float((lse - per)[lab.has].sum())
        # block factor: exp(m_c - M) / S / B, zero for samples without labels
        fac = (np.exp(mx.astype(np.float64) - M) / S / B * lab.has).astype(F32)
        tw = (sw / B).astype(F32)
        keep = lr_t is None
        gW = np.empty((n, h), F32) if keep else None
        gb = np.empty(n, F32) if keep else L["gb"]
        ones = np.ones(B, F32)

        def pass2(task):
            t_s = t_b = t_u = 0.0
            G = np.empty((BLOCK_ROWS, h), F32)
            dHp = np.zeros((B, h), F32)
            tmp = np.empty((B, h), F32)
            for c in task:
                a, z = blocks[c]
                t0 = time.perf_counter()
                Zc = ZT[a:z]
                Zc *= fac[c]
                i0, i1 = lo[c], hi[c]
                if i1 > i0:
                    Zc[sl[i0:i1] - a, ss[i0:i1]] -= tw[i0:i1]
                t1 = time.perf_counter()
                g = gW[a:z] if keep else G[: z - a]
                np.matmul(Zc, H, out=g)
                np.dot(Zc, ones, out=gb[a:z])
                np.matmul(Zc.T, W[a:z], out=tmp)
                dHp += tmp
                t2 = time.perf_counter()
                if not keep:
                    self._adam(W[a:z], L["mW"][a:z], L["vW"][a:z], g, lr_t)  # the block while in cache
                    self._adam(bias[a:z], L["mb"][a:z], L["vb"][a:z], gb[a:z], lr_t)
                t3 = time.perf_counter()
                t_s += t1 - t0
                t_b += t2 - t1
                t_u += t3 - t2
            return dHp, t_s, t_b, t_u

        t = time.perf_counter()
        res = self._map(pass2, tasks)
        t_wall = time.perf_counter() - t
        self._share(t_wall, {"softmax": sum(r[1] for r in res), "backward": sum(r[2] for r in res),
                             "update": sum(r[3] for r in res)})
        dH = res[0][0]
        for r in res[1:]:
            dH += r[0]
        return loss, dH, (np.arange(n), gW, gb) if keep else None


class SampledSoftmax(_NumpyBaseline):
    """Sampled softmax: per batch one candidate set, the union of the batch's labels
    and `n_negatives` uniform random negatives (without replacement, excluding the
    batch's labels); softmax over the candidates; gradients and sparse Adam for
    the candidate rows only ("lazy" Adam: untouched rows keep W, m and v; the
    step t is global).

    SampledSoftmax(config, *, n_negatives=8192, seed=None (default config.seed),
    logq=False, update='sparse' (input layer), adam='auto').

    logq=True subtracts from each negative's logit the log of its sampling
    probability q = n_negatives / (n_labels - |batch labels|) (labels of the
    batch are in the set with probability 1: no correction), so that the
    negatives stand for the whole complement and the sampled loss estimates the
    full softmax's denominator (Bengio & Senecal; Jean et al. 2015). Without it
    (the default) the softmax is over the candidates as they are. With
    n_negatives >= n_labels - |batch labels| every output is a candidate and
    the step equals DenseSoftmax's."""

    engine = "sampled"
    default_update = "sparse"

    def __init__(self, config: Config, *, n_negatives: int | None = 8192, seed: int | None = None,
                 update: str | None = None, adam: str = "auto", logq: bool = False):
        super().__init__(config, n_negatives=n_negatives, seed=seed, update=update, adam=adam)
        n_negatives = 8192 if n_negatives is None else n_negatives
        if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 0:
            raise ConfigError(f"n_negatives must be an integer >= 0, got {n_negatives!r}")
        self.n_negatives = int(n_negatives)
        self.logq = bool(logq)
        self.last_candidates = np.zeros(0, np.int64)
        self._cand_sum = 0
        self._cand_batches = 0

    def fit(self, data, epochs=1, **kw):
        self._cand_sum = self._cand_batches = 0
        return super().fit(data, epochs, **kw)

    def _summary_extra(self) -> dict:
        return {"n_negatives": self.n_negatives, "logq": self.logq,
                "candidates_per_batch": self._cand_sum / max(1, self._cand_batches)}

    def _negatives(self, U: np.ndarray) -> np.ndarray:
        """n_negatives distinct labels outside U (sorted), uniformly at random."""
        L = self.config.n_labels
        n, k = self.n_negatives, len(U)
        if n <= 0:
            return np.zeros(0, np.int64)
        if n >= L - k:
            mask = np.ones(L, bool)
            mask[U] = False
            return np.flatnonzero(mask)
        rng = np.random.default_rng([self.seed, _SEED_NEG, self.batches])
        draw = rng.choice(L, n + k, replace=False)  # a uniformly random ordered subset
        if k:
            at = np.minimum(np.searchsorted(U, draw), k - 1)
            draw = draw[U[at] != draw]
        return draw[:n]  # the first n outside U: uniform over the complement

    def _candidates(self, lab: _Labels):
        U = np.unique(lab.labs)
        neg = self._negatives(U)
        C = np.concatenate([U, neg])
        C.sort()
        self.last_candidates = C
        self._cand_sum += len(C)
        self._cand_batches += 1
        return C, U, len(neg)

    def _sampled(self, H, lab: _Labels, B: int):
        """Forward, softmax and gradient over the candidate set: (loss, C, Wc, gWc, gbc, dH).
        The batch is split into contiguous groups of samples, one per worker thread:
        each multiplies its own logits, softmax and dH; their dWc add up."""
        t = time.perf_counter()
        L = self.layers[-1]
        C, U, n_neg = self._candidates(lab)
        Wc = L["W"][C]
        bc = L["b"][C]
        pos = np.searchsorted(C, lab.labs)
        shift = None
        if self.logq and n_neg:
            shift = np.zeros(len(C), F32)
            shift[:] = math.log((self.config.n_labels - len(U)) / n_neg)
            shift[np.searchsorted(C, U)] = 0.0
            bc = bc + shift
        t = self._tick("sample", t)
        if not len(C):  # no label in the batch and no negatives: nothing to learn
            return 0.0, C, Wc, np.zeros_like(Wc), np.zeros_like(bc), np.zeros_like(H)
        groups = max(1, min(self.threads, B // 8))
        edges = np.linspace(0, B, groups + 1).astype(np.int64)
        ent = np.searchsorted(lab.seg, edges)  # label entries are grouped by sample

        def work(g):
            i0, i1 = edges[g], edges[g + 1]
            e0, e1 = ent[g], ent[g + 1]
            seg, p, w = lab.seg[e0:e1] - i0, pos[e0:e1], lab.w[e0:e1]
            has = lab.has[i0:i1]
            Hg = H[i0:i1]
            t0 = time.perf_counter()
            Z = Hg @ Wc.T
            Z += bc
            t1 = time.perf_counter()
            zy = Z[seg, p].astype(np.float64)
            mx = Z.max(axis=1, keepdims=True)
            Z -= mx
            np.exp(Z, out=Z)
            s = Z.sum(axis=1, dtype=np.float64)
            lse = mx[:, 0].astype(np.float64) + np.log(s)
            per = np.zeros(i1 - i0, np.float64)
            np.add.at(per, seg, w * zy)
            loss = float((lse - per)[has].sum())
            Z *= (has / (s * B)).astype(F32)[:, None]
            Z[seg, p] -= (w / B).astype(F32)
            t2 = time.perf_counter()
            gW = Z.T @ Hg
            gb = Z.sum(axis=0)
            dH = Z @ Wc
            t3 = time.perf_counter()
            return loss, gW, gb, dH, (t1 - t0, t2 - t1, t3 - t2)

        t = time.perf_counter()
        res = self._map(work, range(groups))
        wall = time.perf_counter() - t
        self._share(wall, {"output_gemm": sum(r[4][0] for r in res), "softmax": sum(r[4][1] for r in res),
                           "backward": sum(r[4][2] for r in res)})
        t = time.perf_counter()
        loss = sum(r[0] for r in res)
        gWc, gbc = res[0][1], res[0][2]
        for r in res[1:]:
            gWc += r[1]
            gbc += r[2]
        dH = np.concatenate([r[3] for r in res]) if groups > 1 else res[0][3]
        self._tick("backward", t)
        return loss, C, Wc, gWc, gbc, dH

    def _output_step(self, H, lab: _Labels, B: int, lr_t: float):
        loss, C, Wc, gWc, gbc, dH = self._sampled(H, lab, B)
        L = self.layers[-1]
        pending = self._adam_rows(L["W"], L["mW"], L["vW"], C, gWc, lr_t, Wr=Wc)
        pending += self._adam_rows(L["b"], L["mb"], L["vb"], C, gbc, lr_t)
        return loss, dH, pending  # run with the hidden layers' Adam (phase 'update')

    def _output_grads(self, H, lab: _Labels, B: int):
        loss, C, _, gWc, gbc, dH = self._sampled(H, lab, B)
        return loss, dH, (C, gWc, gbc)

    def _buffer_bytes(self) -> int:
        return 0


# ---- PyTorch baselines (optional) -------------------------------------------------------------------

def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken
        return False
    return True


class _TorchBaseline(_Engine):
    """The same network in PyTorch: nn.EmbeddingBag(mode='sum', per_sample_weights)
    for the sparse input, nn.Linear-shaped hidden layers, the output layer as a
    matrix (dense) or an nn.Embedding(sparse=True) (sampled). torch.set_num_threads
    (config threads) while fitting and predicting. Initial weights: those of
    Network(config) (``init_params``).

    torch's Adam divides by sqrt(v_hat) + eps with v_hat = v / (1 - b2^t) where
    SLIDE divides by sqrt(v) + eps (eps scaled by sqrt(1 - b2^t)); with eps 1e-8
    the difference is negligible."""

    def __init__(self, config: Config, *, seed: int | None = None, update: str = "dense"):
        super().__init__(config, seed=seed)
        import torch

        self.torch = torch
        if update not in ("dense", "sparse"):
            raise ConfigError(f"update must be 'dense' or 'sparse', got {update!r}")
        self.update = update
        params = init_params(config, self.seed)
        nn = torch.nn
        W0, b0 = params[0]
        self.emb = nn.EmbeddingBag(config.n_features, W0.shape[1], mode="sum", sparse=update == "sparse")
        with torch.no_grad():
            self.emb.weight.copy_(torch.from_numpy(W0))
        self.b0 = nn.Parameter(torch.from_numpy(b0.copy()))
        self.hidden = []
        for W, b in params[1:-1]:
            lin = nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
            self.hidden.append(lin)
        self._make_output(*params[-1])

    def _blas_train(self):
        return None  # torch has its own BLAS and threads

    def _blas_predict(self):
        return None

    @contextlib.contextmanager
    def _torch_threads(self):
        torch = self.torch
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def _adam(self, params):
        torch = self.torch
        cfg = self.config
        kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        try:
            return torch.optim.Adam(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, **kw)

    def _hidden(self, data, rows):
        torch = self.torch
        inp = _Inputs(data, rows)
        H = self.emb(torch.from_numpy(inp.feats.astype(np.int64)), torch.from_numpy(inp.starts),
                     per_sample_weights=torch.from_numpy(inp.vals))
        H = torch.relu(H + self.b0)
        for lin in self.hidden:
            H = torch.relu(lin(H))
        return H

    def _loss(self, Z, lab: _Labels, pos, B: int):
        torch = self.torch
        logp = torch.log_softmax(Z, dim=1)
        picked = logp[torch.from_numpy(lab.seg), torch.from_numpy(pos)]
        w = torch.from_numpy(lab.w.astype(np.float32))
        total = -(picked * w).sum()
        return total / B, float(total.detach())

    def fit(self, data, epochs=1, **kw):
        with self._torch_threads():
            return super().fit(data, epochs, **kw)

    def predict(self, data, k=5, *, rows=None):
        with self._torch_threads(), self.torch.no_grad():
            return super().predict(data, k, rows=rows)

    def _logits(self, data, rows):
        with self.torch.no_grad():
            H = self._hidden(data, rows)
            return self._full_logits(H).numpy()

    def _topk(self, data, rows, k):
        torch = self.torch
        H = self._hidden(data, rows)
        Z = self._full_logits(H)
        return torch.topk(Z, k, dim=1).indices.numpy().astype(np.int32)

    def _train_batch(self, data, rows):
        t = time.perf_counter()
        lab = _Labels(data, rows)
        H = self._hidden(data, rows)
        t = self._tick("input_forward", t)
        Z, pos = self._out_logits(H, lab)
        t = self._tick("output_gemm", t)
        loss, total = self._loss(Z, lab, pos, len(rows))
        t = self._tick("softmax", t)
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        t = self._tick("backward", t)
        for opt in self.opts:
            opt.step()
        self._tick("update", t)
        return total, lab.count


class TorchDenseSoftmax(_TorchBaseline):
    """DenseSoftmax in PyTorch: full logits (torch.addmm), log_softmax, torch.optim.Adam
    (fused where available) over every parameter."""

    engine = "torch_dense"

    def __init__(self, config: Config, *, n_negatives: int | None = None, seed: int | None = None,
                 update: str = "dense"):
        super().__init__(config, seed=seed, update=update)

    def _make_output(self, W, b):
        torch = self.torch
        self.W = torch.nn.Parameter(torch.from_numpy(W.copy()))
        self.b = torch.nn.Parameter(torch.from_numpy(b.copy()))
        dense = [self.b0, self.W, self.b] + [p for lin in self.hidden for p in lin.parameters()]
        if self.update == "sparse":
            self.opts = [self._adam(dense), torch.optim.SparseAdam([self.emb.weight], lr=self.config.lr,
                                                                   betas=(self.config.beta1, self.config.beta2),
                                                                   eps=self.config.eps)]
        else:
            self.opts = [self._adam(dense + [self.emb.weight])]

    def _full_logits(self, H):
        return self.torch.addmm(self.b, H, self.W.t())

    def _out_logits(self, H, lab):
        return self._full_logits(H), lab.labs


class TorchSampledSoftmax(_TorchBaseline):
    """SampledSoftmax in PyTorch: the output layer an nn.Embedding(sparse=True) (and
    its bias another), the candidate rows gathered per batch, torch.optim.SparseAdam
    for them (and for the input EmbeddingBag, sparse=True), Adam for the rest.
    Candidates are drawn exactly as SampledSoftmax draws them."""

    engine = "torch_sampled"

    def __init__(self, config: Config, *, n_negatives: int | None = 8192, seed: int | None = None,
                 update: str = "sparse", logq: bool = False):
        self._sampler = None
        super().__init__(config, seed=seed, update=update)
        n_negatives = 8192 if n_negatives is None else n_negatives
        if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 0:
            raise ConfigError(f"n_negatives must be an integer >= 0, got {n_negatives!r}")
        self.n_negatives = int(n_negatives)
        self.logq = bool(logq)
        self.last_candidates = np.zeros(0, np.int64)

    def _make_output(self, W, b):
        torch = self.torch
        nn = torch.nn
        self.out = nn.Embedding(W.shape[0], W.shape[1], sparse=True)
        self.out_b = nn.Embedding(W.shape[0], 1, sparse=True)
        with torch.no_grad():
            self.out.weight.copy_(torch.from_numpy(W))
            self.out_b.weight.copy_(torch.from_numpy(b[:, None]))
        cfg = self.config
        sparse = [self.out.weight, self.out_b.weight] + ([self.emb.weight] if self.update == "sparse" else [])
        dense = [self.b0] + [p for lin in self.hidden for p in lin.parameters()]
        if self.update == "dense":
            dense.append(self.emb.weight)
        self.opts = [self._adam(dense), torch.optim.SparseAdam(sparse, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                                               eps=cfg.eps)]

    _negatives = SampledSoftmax._negatives

    def _full_logits(self, H):
        return self.torch.addmm(self.out_b.weight[:, 0], H, self.out.weight.t())

    def _out_logits(self, H, lab):
        torch = self.torch
        U = np.unique(lab.labs)
        neg = self._negatives(U)
        C = np.concatenate([U, neg])
        C.sort()
        self.last_candidates = C
        Ct = torch.from_numpy(C)
        Z = torch.addmm(self.out_b(Ct)[:, 0], H, self.out(Ct).t())
        if self.logq and len(neg):
            is_neg = np.ones(len(C), bool)
            is_neg[np.searchsorted(C, U)] = False
            shift = torch.from_numpy(np.where(is_neg, math.log((self.config.n_labels - len(U)) / len(neg)),
                                              0.0).astype(np.float32))
            Z = Z + shift
        return Z, np.searchsorted(C, lab.labs)


# ---- factory and learning curve ---------------------------------------------------------------------

ENGINES = {"dense": DenseSoftmax, "sampled": SampledSoftmax, "torch_dense": TorchDenseSoftmax,
           "torch_sampled": TorchSampledSoftmax}


def make(engine: str, config: Config, **options):
    """A baseline by name ('dense', 'sampled', 'torch_dense', 'torch_sampled'); options go to
    its constructor (n_negatives, seed, update, adam, logq)."""
    try:
        cls = ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown baseline {engine!r}; valid: {', '.join(ENGINES)}") from None
    if engine.startswith("torch") and not torch_available():
        raise ImportError(f"baseline {engine!r} needs PyTorch, which cannot be imported here "
                          f"(install the CPU build with: pip install -e '.[torch]')")
    check_options([engine], options)
    return cls(config, **options)


def check_options(engines, options: dict) -> None:
    """Every option must be a keyword of every baseline it goes to: a
    misspelt one is a ConfigError naming the valid ones (not a TypeError in a
    worker after the data was generated)."""
    import inspect

    if options and not engines:
        raise ConfigError(f"baseline option(s) {', '.join(sorted(options))} given, but no baseline method is run")
    for engine in engines:
        cls = ENGINES.get(engine)
        if cls is None:
            continue  # make() names unknown baselines
        params = inspect.signature(cls.__init__).parameters
        valid = sorted(k for k, p in params.items() if p.kind == p.KEYWORD_ONLY)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"baseline option(s) {', '.join(unknown)}: not an option of {engine} "
                              f"(valid: {', '.join(valid)})")


def learning_curve(model, train: Dataset, test: Dataset, budget_samples: int, eval_every: int,
                   eval_samples: int | None = 1000, *, include_start: bool = False, progress=None) -> list:
    """Train `model` (a Network or any baseline) for `budget_samples` samples,
    evaluating P@k on the first `eval_samples` labelled test points every
    `eval_every` samples (and at the end). Returns [{samples, seconds, p_at_1,
    p_at_3, p_at_5, mean_loss, eval_seconds, samples_seen}]: `samples` and
    `seconds` count from this call, `seconds` is training time only (the
    evaluations are not in it); samples_seen is the model's total.
    include_start: a first point at 0 samples (the untrained model).
    progress(point) after every evaluation."""
    budget_samples = int(budget_samples)
    eval_every = int(eval_every)
    if budget_samples <= 0:
        raise ValueError("budget_samples must be > 0")
    if eval_every <= 0:
        raise ValueError("eval_every must be > 0")
    points = []
    done, seconds = 0, 0.0

    def point(mean_loss):
        ev = model.evaluate(test, max_samples=eval_samples)
        p = {"samples": done, "seconds": seconds, "p_at_1": ev["p_at_1"], "p_at_3": ev["p_at_3"],
             "p_at_5": ev["p_at_5"], "mean_loss": mean_loss, "eval_seconds": ev["eval_seconds"],
             "samples_seen": int(model.samples_seen)}
        points.append(p)
        if progress is not None:
            progress(p)

    if include_start:
        point(None)
    while done < budget_samples:
        s = model.fit(train, max_samples=min(eval_every, budget_samples - done))
        done += int(s["samples"])
        seconds += float(s["train_seconds"])
        point(float(s["mean_loss"]))
        if s["samples"] <= 0 or s.get("stopped_early"):
            break
    return points
