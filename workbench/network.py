"""A SLIDE network: parameters, LSH index, training and inference.

Owns: allocating and initialising every parameter array (flat, padded rows),
the hash functions and tables of each LSH layer, the training schedule
(batches, Adam steps, rehash and rebuild), evaluation, and checkpoint state.
Delegates: per-sample work and the parallel loops to kernels._core; kernel
choice to workbench.variants; the file format to workbench.checkpoint.

Layer l maps n_in -> n_out. Its weights are stored row-major (n_out rows,
one per output neuron) or transposed (n_in rows, one per input feature);
the logical matrix is the same for both, so a seed gives the same network
in either layout.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from kernels import _core

from . import lsh, memory, variants
from .bf16 import to_bf16
from .config import Config, ConfigError
from .data import _INDEX_FIELDS, Dataset

LAYOUT_IDS = {"rowmajor": 0, "transposed": 1}
SAMPLING_IDS = {"vanilla": 0, "topk": 1, "threshold": 2, "uniform": 3, "exact": 4}
ROW_ALIGN = 16  # elements: rows start on 64-byte boundaries for fp32


class DataMismatchError(ValueError):
    """A data set does not fit the network (feature or label space)."""


class NumericalError(FloatingPointError):
    """Training produced NaN or infinity; the message names the step and the layer."""


def _seed_of(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across platforms)."""
    ss = np.random.SeedSequence([int(p) & (2**63 - 1) for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass
class Layer:
    index: int
    n_in: int
    n_out: int
    layout: str
    lsh: bool
    arrays: dict = field(default_factory=dict)  # name -> ndarray
    hasher: dict | None = None
    tables: dict | None = None
    bids: np.ndarray | None = None
    seen: np.ndarray | None = None
    hash_mu: np.ndarray | None = None  # centre the tables were hashed around (hash_center)
    probe: np.ndarray | None = None  # neurons whose bucket ids measure drift (rehash_drift)
    probe_bids: np.ndarray | None = None  # their bucket ids (probe, L) at the last rehash

    @property
    def W(self) -> np.ndarray:
        return self.arrays["W"]

    def logical_weights(self) -> np.ndarray:
        """The (n_out, n_in) weight matrix, whatever the layout (a copy)."""
        W = self.arrays["W"]
        if self.layout == "rowmajor":
            return np.array(W[:, : self.n_in])
        return np.array(W[:, : self.n_out].T)


class Network:
    """SLIDE network. `Network(config)`, `.fit(data)`, `.evaluate(data)`, `.save(path)`, `Network.load(path)`."""

    def __init__(self, config: Config, *, check_memory: bool = True, _init: bool = True):
        if not isinstance(config, Config):
            raise TypeError("config must be a workbench.Config")
        if check_memory:
            from . import resources

            resources.check(config)
        self.config = config
        self.placement = config.placement
        self.threads = config.effective_threads()
        self.kernels = variants.select(config.precision, config.isa, config.kernels)
        self.step = 0  # Adam steps taken
        self.batches = 0  # batch ids handed to the engine (stamps)
        self.samples_seen = 0
        self.epochs_done = 0
        self.rehashes = 0
        self.rebuilds = 0
        self._epoch_pos = 0  # position within the current epoch's order (resume mid-epoch)
        self.run_target = None  # samples_seen at which an interrupted run meant to stop
        self.run_start = None  # samples_seen when that run started
        self._finite_at = None  # self.batches when W and b were last found finite (inference checks)
        self.history: list[dict] = []
        self.timing = {"train_wall": 0.0, "update": 0.0, "maintenance": 0.0}
        # table maintenance: seconds hashing and building, drift checks, rehashes they skipped
        self.rehashes_here = 0
        self.drift_log: list = []  # (samples_seen, output-layer drift) at every drift check
        self.maint = {"hash_s": 0.0, "build_s": 0.0, "checks": 0, "skipped": 0, "last_drift": None}
        self._buffers: list[memory.Buffer] = []
        self.layers = self._allocate()
        if _init:
            self._init_weights()
        self._engine = self._build_engine()
        if _init:
            for layer in self.layers:
                if layer.lsh:
                    self._rehash(layer)

    # ---- construction --------------------------------------------------------
    def _alloc(self, shape, dtype, name, spare: int = 0):
        """A zeroed array; `spare` extra elements after it (bf16 gathers read 4 bytes at a 2-byte offset)."""
        n = int(np.prod(shape))
        try:
            buf = memory.allocate(n + spare if spare else shape, dtype, self.placement, name=name)
        except (MemoryError, OSError) as e:  # the estimate said it fits, the system disagrees
            from . import resources

            raise resources.MemoryLimitError(resources.allocation_failure(self.config, name, e)) from None
        self._buffers.append(buf)
        return buf.array[:n].reshape(shape) if spare else buf.array

    def _allocate(self) -> list[Layer]:
        cfg = self.config
        layers = []
        n_in = cfg.n_features
        for i, n_out in enumerate(cfg.widths):
            layout = cfg.layouts[i]
            rows, cols = (n_out, n_in) if layout == "rowmajor" else (n_in, n_out)
            ld = -(-cols // ROW_ALIGN) * ROW_ALIGN
            layer = Layer(i, n_in, n_out, layout, cfg.layer_modes[i] == "lsh")
            a = layer.arrays
            for name in ("W", "gW", "mW", "vW"):
                a[name] = self._alloc((rows, ld), np.float32, f"layer{i}.{name}")
            a["Wb"] = self._alloc((rows, ld), np.uint16, f"layer{i}.Wb", spare=32) if cfg.precision == "bf16" else None
            for name in ("b", "gb", "mb", "vb"):
                a[name] = self._alloc(n_out, np.float32, f"layer{i}.{name}")
            a["row_stamp"] = np.zeros(rows, np.int32)
            a["bias_stamp"] = np.zeros(n_out, np.int32)
            if layer.lsh:
                self._make_lsh(layer, rebuild=0)
            layers.append(layer)
            n_in = n_out
        return layers

    def _make_lsh(self, layer: Layer, rebuild: int) -> None:
        cfg = self.config
        seed = _seed_of(cfg.seed, 0x4A54, layer.index, rebuild)
        layer.hasher = lsh.hasher_params(cfg.hash_family, layer.n_in, cfg.K, cfg.L, bin_size=cfg.bin_size,
                                         bits=cfg.hash_bits, shift=cfg.hash_shift, range_pow=cfg.range_pow,
                                         seed=seed)
        layer.tables = lsh.table_params(cfg.L, cfg.range_pow, cfg.bucket_size, cfg.bucket_policy, layer.n_out,
                                        _seed_of(cfg.seed, 0x7AB1, layer.index))
        layer.tables["ids"] = self._alloc(cfg.L * layer.n_out, np.int32, f"layer{layer.index}.table_ids")
        layer.bids = self._alloc((cfg.L, layer.n_out), np.uint32, f"layer{layer.index}.bucket_ids")
        layer.seen = np.zeros((self.threads, 1 << cfg.range_pow), np.uint32)

    def _init_weights(self) -> None:
        std = self.config.init_std
        for layer in self.layers:
            rng = np.random.default_rng([self.config.seed, 0x1417, layer.index])
            a = layer.arrays
            # draw the logical (n_out, n_in) matrix in row blocks; same values for either layout
            block = max(1, (1 << 22) // max(1, layer.n_in))
            for r0 in range(0, layer.n_out, block):
                r1 = min(layer.n_out, r0 + block)
                w = rng.standard_normal((r1 - r0, layer.n_in), dtype=np.float32) * np.float32(std)
                if layer.layout == "rowmajor":
                    a["W"][r0:r1, : layer.n_in] = w
                else:
                    a["W"][:, r0:r1] = w.T
            a["b"][:] = rng.standard_normal(layer.n_out, dtype=np.float32) * np.float32(std)
            self._refresh_bf16(layer)

    def _refresh_bf16(self, layer: Layer) -> None:
        if layer.arrays["Wb"] is not None:
            W = layer.arrays["W"]
            step = max(1, (1 << 22) // W.shape[1])
            for r0 in range(0, W.shape[0], step):
                layer.arrays["Wb"][r0:r0 + step] = to_bf16(W[r0:r0 + step])

    def _build_engine(self):
        eng = _core.Engine(self.threads, compat=self.config.compat, track_touched=self.config.update == "sparse")
        cfg = self.config
        for layer in self.layers:
            a = layer.arrays
            eng.add_layer(n_in=layer.n_in, n_out=layer.n_out, layout=LAYOUT_IDS[layer.layout], W=a["W"], Wb=a["Wb"],
                          b=a["b"], gW=a["gW"], gb=a["gb"], mW=a["mW"], vW=a["vW"], mb=a["mb"], vb=a["vb"],
                          row_stamp=a["row_stamp"], bias_stamp=a["bias_stamp"], lsh=layer.lsh,
                          sampling=SAMPLING_IDS[cfg.sampling], top_k=min(cfg.top_k, layer.n_out),
                          # a neuron collides in at most L tables: larger thresholds all mean L + 1 (and fit C's int)
                          threshold=min(cfg.threshold, cfg.L + 1), min_active=min(cfg.min_active, layer.n_out),
                          prefetch=cfg.prefetch,
                          hasher=layer.hasher, tables=layer.tables)
            k = {op: c.kernel.name for op, c in self.kernels.items()}
            eng.set_kernels(layer.index, k["fwd_rows"], k["bwd_rows"], k["fwd_cols"], k["bwd_cols"], k["adam"],
                            k["hash"], k["hash_rows"])
        self.scratch_bytes = eng.finalize()
        self.strategy = self._choose_strategy()
        self._batch_cap = 0
        return eng

    def _choose_strategy(self) -> str:
        """'batched' when the network has the shape the batched output layer
        handles (dense hidden layer -> row-major LSH output), else 'hogwild'."""
        cfg = self.config
        out = self.layers[-1]
        ok = len(self.layers) >= 2 and not self.layers[-2].lsh and out.lsh and out.layout == "rowmajor"
        if cfg.strategy == "batched" and not ok:
            raise ConfigError("config 'strategy': 'batched' needs a dense last hidden layer feeding a row-major "
                              "LSH output layer; use 'hogwild' or 'auto' for this network")
        if cfg.strategy == "hogwild" or not ok:
            if cfg.batch_labels:
                raise ConfigError("config 'batch_labels': in-batch label negatives need the batched strategy "
                                  "(a dense last hidden layer feeding a row-major LSH output layer, strategy "
                                  "'batched' or 'auto'); set batch_labels = 0 for this network")
            return "hogwild"
        return "batched"

    def _union_kernels(self) -> tuple[str, str, str]:
        """Kernels of the batched phases, at the ISAs chosen for the layer: the
        f32 fwd_rows kernel applied to the batch's input matrix (for the bf16
        precisions the inputs are rounded to bf16 once per sample and the
        weight row comes from the bf16 copy or is rounded, so the fp32
        products equal the bf16 kernels'), bwd_rows in fp32, and the fused
        row_adam kernel ("" when fuse_update is off)."""
        have = {(k.op, k.dtype, k.isa) for k in variants.compiled_kernels()}

        def f32_isa(op: str) -> str:
            # the op's ISA when it has an f32 kernel there, else the next level down that has one
            # (avx512_bf16 has bf16 kernels only: its union passes run the avx512 f32 kernels)
            isa = self.kernels[op].kernel.isa
            if isa in variants.LEVELS:
                for lower in variants.LEVELS[variants.LEVELS.index(isa)::-1]:
                    if (op, "f32", lower) in have:
                        return lower
            return isa if (op, "f32", isa) in have else "scalar"

        fwd_isa, bwd_isa = f32_isa("fwd_rows"), f32_isa("bwd_rows")
        fused = self.kernels["row_adam"].kernel.name if self.config.fuse_update else ""
        return f"f32/{fwd_isa}", f"f32/{bwd_isa}", fused

    def _prepare_batch(self, data: Dataset) -> None:
        cfg = self.config
        out = self.layers[-1]
        max_labels = max(0, int(np.diff(data.label_indptr).max(initial=0)))
        base = max(cfg.L * cfg.bucket_size, cfg.top_k, cfg.min_active) + cfg.batch_labels
        cap = min(out.n_out, base + max_labels)
        if cap > self._batch_cap:
            fwd, bwd, fused = self._union_kernels()
            self.batch_bytes = self._engine.setup_batch(cfg.batch_size, cap, fwd, bwd,
                                                        round_inputs=cfg.precision != "fp32",
                                                        round_weights=cfg.precision == "bf16act",
                                                        row_adam_kernel=fused, batch_labels=cfg.batch_labels,
                                                        # labels a sample may bring: all of them once the
                                                        # buffers hold every output row
                                                        max_labels=out.n_out if cap >= out.n_out else cap - base)
            self._batch_cap = cap

    # ---- LSH maintenance ----------------------------------------------------
    def _rehash(self, layer: Layer) -> None:
        if self.config.hash_center:
            # w_j.h - mu.h ranks neurons as w_j.h does (mu.h is one number per query), but the rows'
            # shared component no longer decides their hash: see README "Why the tables miss"
            layer.hash_mu = self._row_mean(layer)
            self._engine.set_hash_center(layer.index, layer.hash_mu)
        t = self._engine.rehash(layer.index, layer.bids, layer.seen, self.threads)
        self.rehashes_here += 1  # layer.bids now describes the tables (a loaded network's bids do not)
        self.maint["hash_s"] += t["hash_s"]
        self.maint["build_s"] += t["build_s"]
        if self.config.rehash_drift > 0:
            if layer.probe is None:
                rng = np.random.default_rng([self.config.seed, 0xD21F, layer.index])
                n = min(self.config.drift_probe, layer.n_out)
                layer.probe = np.sort(rng.choice(layer.n_out, n, replace=False)).astype(np.int64)
            layer.probe_bids = np.ascontiguousarray(layer.bids[:, layer.probe].T)

    def _row_mean(self, layer: Layer) -> np.ndarray:
        """Mean of the layer's neuron weight vectors (float64 sum, float32 result)."""
        W = layer.arrays["W"]
        if layer.layout == "rowmajor":
            return W[:, : layer.n_in].mean(axis=0, dtype=np.float64).astype(np.float32)
        return W[: layer.n_in, : layer.n_out].mean(axis=1, dtype=np.float64).astype(np.float32)

    def _probe_rows(self, layer: Layer, ids: np.ndarray) -> np.ndarray:
        """Weight vectors of neurons ids, as hashed at the last rehash (minus its centre)."""
        W = layer.arrays["W"]
        X = W[ids, : layer.n_in] if layer.layout == "rowmajor" else W[: layer.n_in, ids].T
        X = np.array(X, dtype=np.float32, order="C")
        if layer.hash_mu is not None:
            X -= layer.hash_mu
        return X

    def table_drift(self, layer: Layer | None = None) -> float:
        """Fraction of (probe neuron, table) bucket ids that differ between the
        tables and the current weights: how stale the tables are. Needs
        rehash_drift > 0 (the probe's ids are recorded at every rehash)."""
        layer = self.layers[-1] if layer is None else layer
        if layer.probe_bids is None:
            return float("nan")
        X = self._probe_rows(layer, layer.probe)
        now = _core.bucket_ids(layer.hasher, _core.hash_rows(layer.hasher, X, 0, len(X),
                                                             self.kernels["hash_rows"].kernel.name))
        return float(np.mean(now != layer.probe_bids))

    def _rebuild(self, layer: Layer) -> None:
        lsh.redraw(layer.hasher, _seed_of(self.config.seed, 0x4A54, layer.index, self.rebuilds))
        self._engine.set_hasher_seed(layer.index, layer.hasher["seed"])
        self._rehash(layer)

    def _nan_message(self, what: str) -> str:
        bad = self.nonfinite_layers()
        where = "; ".join(f"layer {i}: {', '.join(names)}" for i, names in bad.items()) or "weights still finite"
        return f"{what}; non-finite values in {where}. Training stopped; no checkpoint was written from this state"

    def nonfinite_layers(self) -> dict:
        """{layer index: [arrays holding NaN or inf]} (a full scan)."""
        out = {}
        for layer in self.layers:
            names = [n for n in ("W", "b", "mW", "vW", "mb", "vb")
                     if _core.count_nonfinite(layer.arrays[n], self.threads)]
            if names:
                out[layer.index] = names
        return out

    def _maintain(self, before: int, after: int) -> None:
        """Rehash / rebuild when samples_seen crosses a multiple of the period;
        weights are checked for NaN/inf at the same moments (a full scan)."""
        cfg = self.config
        if not any(l.lsh for l in self.layers):
            return
        if after // cfg.rehash > before // cfg.rehash and self.nonfinite_layers():
            raise NumericalError(self._nan_message(f"step {self.step}: weights became non-finite"))
        t0 = time.perf_counter()
        if after // cfg.rebuild > before // cfg.rebuild:
            self.rebuilds += 1
            for layer in self.layers:
                if layer.lsh:
                    self._rebuild(layer)
            self.rehashes += 1
        elif after // cfg.rehash > before // cfg.rehash:
            lsh_layers = [l for l in self.layers if l.lsh]
            if cfg.rehash_drift > 0:
                # rehash only the layers whose tables moved enough (Mongoose-style scheduling)
                drift = {l.index: self.table_drift(l) for l in lsh_layers}
                self.maint["checks"] += 1
                self.maint["last_drift"] = drift[lsh_layers[-1].index]
                if len(self.drift_log) < 100_000:
                    self.drift_log.append((self.samples_seen, drift[lsh_layers[-1].index]))
                lsh_layers = [l for l in lsh_layers if not drift[l.index] < cfg.rehash_drift]  # NaN: rehash
                self.maint["skipped"] += not lsh_layers
            for layer in lsh_layers:
                self._rehash(layer)
            self.rehashes += bool(lsh_layers)
        self.timing["maintenance"] += time.perf_counter() - t0

    # ---- data checks --------------------------------------------------------
    def check_data(self, data: Dataset) -> None:
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a workbench.Dataset, got {type(data).__name__}")
        # the arrays' kind and lengths (O(1)): a frozen dataclass can still have its fields swapped
        for name, dtype in _INDEX_FIELDS:
            a = getattr(data, name)
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype != dtype or not a.flags.c_contiguous:
                raise DataMismatchError(f"{_where(data)}: Dataset.{name} is no longer a contiguous 1-D "
                                        f"{np.dtype(dtype)} array (it was replaced after validation)")
        if not len(data.indptr) or len(data.label_indptr) != len(data.indptr) \
                or len(data.indices) != len(data.values):
            raise DataMismatchError(f"{_where(data)}: Dataset array lengths disagree (indptr {len(data.indptr)}, "
                                    f"label_indptr {len(data.label_indptr)}, indices {len(data.indices)}, values "
                                    f"{len(data.values)}): they were replaced after validation")
        check_shape(data, self.config)

    def _engine_call(self, data: Dataset, fn, *args, **kw):
        """An engine call over data's arrays, which the engine re-checks per
        sample (they may have been changed since the Dataset validated them):
        its DataError becomes a DataMismatchError naming the data set."""
        try:
            return fn(*args, **kw)
        except _core.DataError as e:
            raise DataMismatchError(f"{_where(data)}: {e} (the data set's arrays were changed after it was "
                                    f"validated)") from None

    # ---- training -----------------------------------------------------------
    def fit(self, data: Dataset, epochs: float = 1, *, max_samples: int | None = None, progress=None,
            should_stop=None) -> dict:
        """Train for `epochs` passes (or `max_samples` samples) over `data`.

        progress(info) is called after every batch with a dict of counters;
        should_stop() is polled between batches (finishes the current batch).
        Returns a summary (samples, seconds, samples_per_s, loss, time split)."""
        self.check_data(data)
        cfg = self.config
        n = len(data)
        if n == 0:
            raise ValueError(f"{_where(data)}: no training samples")
        if max_samples is None:
            if isinstance(epochs, bool) or not isinstance(epochs, numbers.Real) or not math.isfinite(epochs):
                raise ValueError(f"epochs must be a finite number > 0, got {epochs!r}")
            if epochs <= 0:
                raise ValueError(f"epochs must be > 0, got {epochs!r}")
            total = int(round(epochs * n))
        else:
            if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral):
                raise ValueError(f"max_samples must be an integer >= 1, got {max_samples!r}")
            total = int(max_samples)
        if total <= 0:
            raise ValueError("nothing to train: max_samples must be > 0")
        B = cfg.batch_size
        T = self.threads
        batched = self.strategy == "batched"
        self.batches_in_fit = 0
        if batched:
            self._prepare_batch(data)
            self._engine.union_stats(reset=True)
        self._engine.reset_stats()
        timing0 = dict(self.timing)
        done = 0
        loss_sum, loss_n = 0.0, 0
        t_start = time.perf_counter()
        stopped = False
        while done < total and not stopped:
            epoch = self.epochs_done
            order = np.random.default_rng([cfg.seed, 0x0D0E, epoch]).permutation(n).astype(np.int64)
            pos = self._epoch_pos
            while pos < n and done < total:
                stop = min(n, pos + B, pos + (total - done))
                # changed arrays are refused before this batch counts (the engine checks again)
                self._engine_call(data, self._engine.check_batch, data.indptr, data.indices, data.values,
                                  data.label_indptr, data.labels, order, pos, stop, data.n_features, data.n_labels,
                                  batched)
                self.batches += 1
                self.batches_in_fit += 1
                t0 = time.perf_counter()
                if batched:
                    self.step += 1
                    ls, cnt = self._engine_call(
                        data, self._engine.train_batch_union,
                        data.indptr, data.indices, data.values, data.label_indptr, data.labels, order, pos, stop,
                        self.batches, _seed_of(cfg.seed, 0xBA7C, self.batches), 1.0 / (stop - pos), T,
                        self._lr_t(), cfg.beta1, cfg.beta2, cfg.eps, cfg.update == "dense",
                        n_features=data.n_features, n_labels=data.n_labels)
                    t1 = time.perf_counter()
                    self._adam_step(batched_output=True)
                else:
                    ls, cnt = self._engine_call(
                        data, self._engine.train_batch,
                        data.indptr, data.indices, data.values, data.label_indptr, data.labels, order, pos, stop,
                        self.batches, _seed_of(cfg.seed, 0xBA7C, self.batches), 1.0 / (stop - pos), T,
                        n_features=data.n_features, n_labels=data.n_labels)
                    t1 = time.perf_counter()
                    self.step += 1
                    self._adam_step()
                t2 = time.perf_counter()
                self.timing["train_wall"] += t1 - t0
                self.timing["update"] += t2 - t1
                if not math.isfinite(ls):
                    raise NumericalError(self._nan_message(f"step {self.step} (batch {self.batches}): loss is {ls}"))
                before = self.samples_seen
                self.samples_seen += stop - pos
                done += stop - pos
                pos = stop
                self._epoch_pos = pos  # consistent with samples_seen should anything below raise
                self._maintain(before, self.samples_seen)
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
        summary = {
            "samples": done,
            "train_seconds": seconds,
            "samples_per_s": done / seconds if seconds > 0 else 0.0,
            "mean_loss": loss_sum / max(loss_n, 1),
            "stopped_early": stopped,
            "time_split": self._time_split(timing0, seconds),
            "lsh": self.lsh_stats(),
        }
        self.history.append({k: summary[k] for k in ("samples", "train_seconds", "samples_per_s", "mean_loss")})
        return summary

    def _lr_t(self) -> float:
        cfg = self.config
        t = self.step
        return cfg.lr * math.sqrt(1.0 - cfg.beta2**t) / (1.0 - cfg.beta1**t)

    def _adam_step(self, batched_output: bool = False) -> None:
        """Adam on every layer after a batch. With the batched output layer its
        touched rows were updated inside the batch: only the dense mode's pass
        over the other rows (zero gradient) remains."""
        cfg = self.config
        lr_t = self._lr_t()
        dense = cfg.update == "dense"
        for layer in self.layers:
            if batched_output and layer is self.layers[-1]:
                if dense:
                    self._engine.update(layer.index, lr_t, cfg.beta1, cfg.beta2, cfg.eps, self.batches, False,
                                        self.threads, skip_stamped=True)
                continue
            self._engine.update(layer.index, lr_t, cfg.beta1, cfg.beta2, cfg.eps, self.batches, dense, self.threads)

    def _time_split(self, timing0: dict, seconds: float) -> dict:
        """Wall-clock seconds per phase. The parallel sample phase is split in
        proportion to the threads' own clocks for hash/query/forward/backward;
        the batched strategy's phases are wall-clock measurements of their own."""
        st = self._engine.stats()
        train_wall = self.timing["train_wall"] - timing0["train_wall"]
        if self.strategy == "batched":
            u = self._engine.union_stats()
            ns = st["phase_ns"]
            sel = u.get("select", 0) / 1e9
            tot_sel = ns["hash"] + ns["query"] + ns["forward"]
            split = {
                # phase 1 wall time split by the threads' clocks
                "hash": sel * ns["hash"] / tot_sel if tot_sel else 0.0,
                "query": sel * ns["query"] / tot_sel if tot_sel else 0.0,
                "hidden_forward": sel * ns["forward"] / tot_sel if tot_sel else 0.0,
                "index": u.get("index", 0) / 1e9,
                "forward": u.get("forward", 0) / 1e9,
                "softmax": u.get("softmax", 0) / 1e9,
                "backward_adam": u.get("backward_adam", 0) / 1e9,
                "hidden_backward": u.get("hidden_backward", 0) / 1e9,
                "update": self.timing["update"] - timing0["update"],
                "maintenance": self.timing["maintenance"] - timing0["maintenance"],
            }
            split["other"] = max(0.0, seconds - sum(split.values()))
            return split
        ns = st["phase_ns"]
        tot = sum(ns.values())
        split = {}
        for name, v in ns.items():
            split[name] = train_wall * v / tot if tot else 0.0
        split["update"] = self.timing["update"] - timing0["update"]
        split["maintenance"] = self.timing["maintenance"] - timing0["maintenance"]
        split["other"] = max(0.0, seconds - sum(split.values()))
        return split

    def lsh_stats(self) -> dict:
        st = self._engine.stats()
        s = max(st["samples"], 1)
        out = {"mean_active": [a / s for a in st["active_sum"]],
               "mean_candidates": [c / s for c in st["cand_sum"]], "strategy": self.strategy}
        if self.strategy == "batched":
            u = self._engine.union_stats()
            if u.get("union_rows"):
                out["union_rows_per_batch"] = u["union_rows"] / max(1, self.batches_in_fit)
                out["row_reuse"] = u["entries"] / u["union_rows"]
        if st["labels_total"]:
            out["label_recall"] = st["labels_found"] / st["labels_total"]
        out["rehashes"] = self.rehashes
        out["maintenance"] = dict(self.maint)
        return out

    def hidden(self, data: Dataset, rows=None) -> np.ndarray:
        """The output layer's inputs h (the last hidden layer's activations) for
        samples `rows`: float32 (n, width)."""
        self.check_data(data)
        rows = np.arange(len(data), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
            raise IndexError("rows out of range")
        return self._engine_call(data, self._engine.hidden, data.indptr, data.indices, data.values, rows,
                                 self.threads, data.n_features)

    def candidates(self, data: Dataset, rows=None, *, cap: int = 65536) -> tuple:
        """What the output layer's hash tables choose for samples `rows` of data,
        as training sees them but without labels and without the random top-up
        (min_active): (counts (n,), ids (n, cap) int32, collision counts (n, cap)
        int32); row i's first min(counts[i], cap) entries are valid."""
        self.check_data(data)
        rows = np.arange(len(data), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
            raise IndexError("rows out of range")
        return self._engine_call(data, self._engine.candidates, data.indptr, data.indices, data.values, rows,
                                 self.threads, int(cap), data.n_features)

    # ---- inference ----------------------------------------------------------
    def predict(self, data: Dataset, k: int = 5, *, mode: str = "dense", rows=None) -> np.ndarray:
        """Top-k labels per sample (int32 (n, k), -1 where fewer were scored)."""
        if mode not in ("dense", "lsh"):
            raise ValueError(f"mode must be 'dense' or 'lsh', got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= 64:
            raise ValueError(f"k must be an integer in [1, 64], got {k!r}")
        self.check_data(data)
        rows = self._rows(data, rows)
        self._check_finite_weights()
        return self._engine_call(data, self._engine.predict, data.indptr, data.indices, data.values, rows, int(k),
                                 mode == "dense", _seed_of(self.config.seed, 0x1EF7), self.threads,
                                 n_features=data.n_features)

    def _check_finite_weights(self) -> None:
        """Inference never runs on NaN/inf weights: W and b of every layer are
        scanned once after each change of the weights by training (a full
        scan; predicting again without training costs nothing)."""
        if self._finite_at == self.batches:
            return
        bad = {}
        for layer in self.layers:
            names = [n for n in ("W", "b") if _core.count_nonfinite(layer.arrays[n], self.threads)]
            if names:
                bad[layer.index] = names
        if bad:
            where = "; ".join(f"layer {i}: {', '.join(names)}" for i, names in bad.items())
            raise NumericalError(f"cannot evaluate: non-finite values in {where} (training diverged)")
        self._finite_at = self.batches

    @staticmethod
    def _rows(data: Dataset, rows) -> np.ndarray:
        if rows is None:
            return np.arange(len(data), dtype=np.int64)
        a = np.asarray(rows)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"rows must be a 1-D array of sample indices, got {a.dtype} shape {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= len(data)):
            raise IndexError(f"rows out of range [0, {len(data)})")
        return np.ascontiguousarray(a, dtype=np.int64)

    def logits(self, data: Dataset, rows=None) -> np.ndarray:
        """Exact output logits (len(rows), n_labels) by dense inference."""
        self.check_data(data)
        rows = self._rows(data, rows)
        self._check_finite_weights()
        return self._engine_call(data, self._engine.logits, data.indptr, data.indices, data.values, rows,
                                 self.threads, n_features=data.n_features)

    def evaluate(self, data: Dataset, *, mode: str = "dense", max_samples: int | None = None) -> dict:
        """P@1, P@3, P@5 over the first `max_samples` samples with at least one label."""
        self.check_data(data)
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral)
                                        or max_samples < 0):
            raise ValueError(f"max_samples must be an integer >= 0, got {max_samples!r}")
        has = np.flatnonzero(np.diff(data.label_indptr) > 0)
        if max_samples is not None:
            has = has[: int(max_samples)]
        # the labels scored against (predict checks the features)
        self._engine_call(data, _core.check_rows, data.indptr, data.indices, data.values, data.label_indptr,
                          data.labels, has.astype(np.int64), data.n_features, data.n_labels)
        t0 = time.perf_counter()
        top = self.predict(data, 5, mode=mode, rows=has)
        seconds = time.perf_counter() - t0
        p = precision_at_k(top, data, has)
        p.update({"n": int(len(has)), "mode": mode, "eval_seconds": seconds,
                  "eval_samples_per_s": len(has) / seconds if seconds > 0 else 0.0})
        return p

    # ---- state --------------------------------------------------------------
    def state_arrays(self) -> dict:
        """Every array a checkpoint needs, by name."""
        out = {}
        for layer in self.layers:
            for name in ("W", "b", "mW", "vW", "mb", "vb"):
                out[f"layer{layer.index}.{name}"] = layer.arrays[name]
            if layer.lsh:
                for key in ("coord_of_slot", "slot_of_coord", "srp_coef"):
                    if key in layer.hasher:
                        out[f"layer{layer.index}.hash.{key}"] = layer.hasher[key]
                out[f"layer{layer.index}.tables.offsets"] = layer.tables["offsets"]
                out[f"layer{layer.index}.tables.ids"] = layer.tables["ids"]
        return out

    def state_meta(self) -> dict:
        return {
            "step": self.step, "batches": self.batches, "samples_seen": self.samples_seen,
            "epochs_done": self.epochs_done, "epoch_pos": self._epoch_pos,
            "rehashes": self.rehashes, "rebuilds": self.rebuilds,
            "hash_seeds": [l.hasher["seed"] if l.lsh else None for l in self.layers],
            "history": self.history, "run_target": self.run_target, "run_start": self.run_start,
        }

    def save(self, path: str) -> None:
        from . import checkpoint

        checkpoint.save(path, self)

    @classmethod
    def load(cls, path: str, *, overrides: dict | None = None) -> "Network":
        """Load a checkpoint. overrides: execution settings that may differ
        from the run that wrote it (threads, precision, isa, kernels)."""
        from . import checkpoint

        return checkpoint.load(path, cls, overrides=overrides)

    def _restore(self, meta: dict, arrays: dict) -> None:
        for layer in self.layers:
            for name in ("W", "b", "mW", "vW", "mb", "vb"):
                src = arrays[f"layer{layer.index}.{name}"]
                dst = layer.arrays[name]
                if src.shape != dst.shape:
                    raise ValueError(f"layer{layer.index}.{name}: shape {src.shape} does not match {dst.shape}")
                if src is not dst:
                    dst[...] = src
            self._refresh_bf16(layer)
            if layer.lsh:
                seed = meta["hash_seeds"][layer.index]
                pairs = [(layer.hasher[key], f"hash.{key}") for key in ("coord_of_slot", "slot_of_coord", "srp_coef")
                         if key in layer.hasher]
                pairs += [(layer.tables["offsets"], "tables.offsets"), (layer.tables["ids"], "tables.ids")]
                for dst, key in pairs:
                    src = arrays[f"layer{layer.index}.{key}"]
                    if src is not dst:
                        dst[...] = src
                layer.hasher["seed"] = int(seed)
                self._engine.set_hasher_seed(layer.index, int(seed))
        self.step = int(meta["step"])
        self.batches = int(meta["batches"])
        self.samples_seen = int(meta["samples_seen"])
        self.epochs_done = int(meta["epochs_done"])
        self._epoch_pos = int(meta.get("epoch_pos", 0))
        self.rehashes = int(meta["rehashes"])
        self.rebuilds = int(meta["rebuilds"])
        self.history = list(meta.get("history", []))
        self.run_target = meta.get("run_target")
        self.run_start = meta.get("run_start")
        self._finite_at = None

    # ---- reports ------------------------------------------------------------
    def kernel_report(self) -> dict:
        """The kernel chosen per op, and why each alternative was skipped."""
        return {op: {"chosen": c.kernel.name, "skipped": {k.name: r for k, r in c.skipped}}
                for op, c in self.kernels.items()}

    def memory_report(self) -> dict:
        """Bytes allocated, and for every buffer of 2 MiB or more the placement
        asked for and the huge pages actually backing it (/proc/self/smaps)."""
        arrays = {b.name: b.array for b in self._buffers}
        total = sum(a.nbytes for a in arrays.values())
        large = {b.name: b.array for b in self._buffers if b.array.nbytes >= memory.HUGE}
        backing = memory.huge_pages_backing(large)
        for b in self._buffers:
            if b.name in backing:
                backing[b.name]["placement"] = b.placement
                backing[b.name]["aligned_2mib"] = b.address % memory.HUGE == 0
        huge = sum(v["huge_bytes"] or 0 for v in backing.values())
        return {"parameter_bytes": total, "scratch_bytes": self.scratch_bytes, "placement": self.placement,
                "thp": memory.thp_mode(), "huge_bytes": huge,
                "huge_fraction": round(huge / max(1, sum(a.nbytes for a in large.values())), 4),
                "buffers": backing}


def _where(data: Dataset) -> str:
    """How error messages name a data set: its source file, else its name."""
    return data.source or f"data set {data.name!r}"


def check_shape(data: Dataset, cfg: Config) -> None:
    """Data must have the network's shape: a narrower data set would train or
    score only part of the network without a word (e.g. a 500-feature test
    file against a 5,000-feature model gives P@1 0). Dataset.widened() is the
    explicit way to use data over a subset of the network's space."""
    if (data.n_features, data.n_labels) == (cfg.n_features, cfg.n_labels):
        return
    hint = ""
    if data.n_features <= cfg.n_features and data.n_labels <= cfg.n_labels:
        hint = " (if its ids are a subset of the network's, say so with Dataset.widened())"
    raise DataMismatchError(f"{_where(data)}: data has {data.n_features:,} features and {data.n_labels:,} labels but "
                            f"the network has {cfg.n_features:,} features and {cfg.n_labels:,} labels{hint}")


def check_same_shape(train: Dataset, test: Dataset) -> None:
    """Training and test data of one run must share their shape (checked before training)."""
    if (train.n_features, train.n_labels) != (test.n_features, test.n_labels):
        raise DataMismatchError(f"{_where(test)}: test data has {test.n_features:,} features and {test.n_labels:,} "
                                f"labels but the training data ({_where(train)}) has {train.n_features:,} features "
                                f"and {train.n_labels:,} labels")


def precision_at_k(top: np.ndarray, data: Dataset, rows: np.ndarray) -> dict:
    """P@1, P@3, P@5 of predictions top (len(rows), >=5) against data's labels."""
    hits = np.zeros(top.shape, dtype=bool)
    lp, lab = data.label_indptr, data.labels
    for i, r in enumerate(rows):
        true = lab[lp[r]:lp[r + 1]]
        hits[i] = np.isin(top[i], true) & (top[i] >= 0)
    cum = np.cumsum(hits, axis=1)
    n = max(len(rows), 1)
    return {f"p_at_{k}": float(cum[:, k - 1].sum() / (k * n)) if len(rows) else 0.0 for k in (1, 3, 5)}
