"""Helpers shared by the per-op benchmark files (bench/test_forward.py ...).

Shapes: SLIDE_BENCH_SCALE=full (default) is the Amazon-670K network
(135,909 sparse features -> 128 -> 670,091 labels, ~3,000 active output
neurons per sample, 76 non-zero input features); =small is a smoke-test
shape that runs the same code paths in seconds.

Every benchmark calls one single-op entry point of kernels._core per round
(one sample's worth of work) on matrices allocated once per module, with the
active rows drawn from a pool of id sets larger than the last-level cache, so
that every round gathers rows that are not in cache (like the engine, whose
samples touch different rows). In-place kernels (backward accumulating into
gradients, Adam) get their fresh inputs through benchmark.pedantic(setup=...).

Validation. kernels._core.op_* check every index with numpy (min, max,
np.unique) before the kernel runs; at 3,000 ids that is of the order of the
kernel's own time. It is measured separately (the same numpy calls on the same
arrays, `validation_us`) and subtracted for `kernel_gb_per_s`. When _core
offers an unvalidated path (a `validate=False` keyword) the benchmarks use it
and say so (`validated: false`); the id pools are then validated once, at
setup, by one validated call each.

Placement. `default` is numpy's allocator: whether numpy advised huge pages
for it depends on NUMPY_MADVISE_HUGEPAGE *at numpy's import*, which a
benchmark cannot change any more; `hugepage` is a 2 MiB-aligned mmap with
madvise. Both record the huge-page backing read back from /proc/self/smaps
(`huge_fraction`). The clean comparison (a 4 KiB-page control in its own
process) is the ablation runner's `placement` axis; run
`NUMPY_MADVISE_HUGEPAGE=0 pytest bench ...` for an in-process control.
"""

from __future__ import annotations

import os
import statistics
import timeit

import numpy as np
import pytest

from workbench import cache, memory, variants

SCALE = os.environ.get("SLIDE_BENCH_SCALE", "full")
SHAPES = {
    "full": dict(n_labels=670_091, hidden=128, n_features=135_909, active=3000, nnz=76, vectors=128, pool=64,
                 rounds=40, K=6, L=50, range_pow=18),
    "small": dict(n_labels=20_000, hidden=128, n_features=5_000, active=300, nnz=40, vectors=16, pool=4, rounds=2,
                  K=6, L=50, range_pow=18),
}
ROW_ALIGN = 16
_EMU_OK = os.environ.get("SLIDE_BENCH_EMU") == "1"


def shape() -> dict:
    if SCALE not in SHAPES:
        raise pytest.UsageError(f"SLIDE_BENCH_SCALE must be one of {', '.join(SHAPES)}, got {SCALE!r}")
    return SHAPES[SCALE]


def output_group(op: str, sh: dict) -> str:
    """Benchmark group of an output-layer op (forward/backward) at shape sh."""
    return f"{op}/output {sh['active']:,} of {sh['n_labels']:,}x{sh['hidden']}"


def input_group(op: str, sh: dict) -> str:
    """Benchmark group of the sparse-input first layer's op at shape sh."""
    return f"{op}/input {sh['nnz']} nnz of {sh['n_features']:,}x{sh['hidden']}"


def ld(cols: int) -> int:
    return -(-cols // ROW_ALIGN) * ROW_ALIGN


# ---- variants ------------------------------------------------------------------------------------

def kernel_params(op: str) -> list:
    """Every compiled kernel of `op` as a pytest parameter; those this machine
    cannot run (or emulated ones, unless SLIDE_BENCH_EMU=1) skip with the reason."""
    usable = variants.usable_isas()
    out = []
    for k in variants.compiled_kernels():
        if k.op != op:
            continue
        marks = []
        if k.isa not in usable:
            marks.append(pytest.mark.skip(reason=f"{k.name}: {variants._why_unusable(k.isa)}"))
        elif k.isa.endswith("@emu") and not _EMU_OK:
            marks.append(pytest.mark.skip(reason=f"{k.name}: emulated AVX-512 (a correctness tool, ~100x slower); "
                                                 f"SLIDE_BENCH_EMU=1 includes it"))
        out.append(pytest.param(k.name, marks=marks, id=k.name))
    return out


def dtype_of(kernel: str) -> str:
    return kernel.split("/")[0]


# ---- buffers -------------------------------------------------------------------------------------

def _fill(a: np.ndarray, seed: int, scale: float = 0.01) -> None:
    """Write every page (a zero page read back would be shared, cached memory)."""
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    pat = (np.random.default_rng(seed).standard_normal((min(4096, flat.shape[0]), flat.shape[1])) * scale)
    pat = pat.astype(a.dtype)
    for r0 in range(0, flat.shape[0], pat.shape[0]):
        r1 = min(flat.shape[0], r0 + pat.shape[0])
        flat[r0:r1] = pat[: r1 - r0]


class Matrices:
    """Weight-shaped buffers allocated on first use and kept for the module."""

    def __init__(self):
        self._bufs = {}
        self._keep = []

    def get(self, name: str, rows: int, cols: int, placement: str, *, dtype=np.float32, fill=0.01, spare=0,
            positive=False):
        key = (name, rows, cols, placement, np.dtype(dtype).str, spare)
        if key not in self._bufs:
            n = rows * ld(cols)
            buf = memory.allocate(n + spare, dtype, placement, name=name, zero=False)
            self._keep.append(buf)
            arr = buf.array[:n].reshape(rows, ld(cols))
            if spare:
                buf.array[n:] = 0
            if fill is None:
                arr[...] = 0
            elif np.dtype(dtype) == np.uint16:
                arr[...] = 0x3C00  # bf16 of a small positive number (~0.0078): every page written
            else:
                _fill(arr, sum(map(ord, name)), fill)
                if positive:
                    np.abs(arr, out=arr)
            self._bufs[key] = arr
        return self._bufs[key]

    def bf16(self, name: str, rows: int, cols: int, placement: str):
        """A bf16 weight copy with the 32 spare elements the bf16 kernels may read."""
        return self.get(name + ".bf16", rows, cols, placement, dtype=np.uint16, spare=32)

    def huge_fraction(self, arr: np.ndarray) -> float | None:
        rep = memory.huge_pages_backing({"a": arr})["a"]
        return rep.get("huge_fraction")


def id_pool(n_out: int, n: int, count: int, seed: int = 1, sort: bool = False) -> list:
    """`count` sets of `n` distinct ids in [0, n_out), random order (the engine's
    candidate order) unless sort."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.choice(n_out, n, replace=False).astype(np.int32)
        out.append(np.sort(ids) if sort else ids)
    return out


def sparse_input(n_features: int, nnz: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    xi = np.sort(rng.choice(n_features, nnz, replace=False)).astype(np.int32)
    xv = rng.random(nnz).astype(np.float32)
    return xi, xv / np.linalg.norm(xv)


class Cycle:
    """Next element of a pool on every call (pedantic setup)."""

    def __init__(self, items):
        self.items = list(items)
        self.i = -1

    def next(self):
        self.i = (self.i + 1) % len(self.items)
        return self.items[self.i]


# ---- validation cost and the unvalidated path -------------------------------------------------------

def _check_index_like(a) -> None:
    """What kernels._core._check_index does to an index array."""
    if a is None:
        return
    if a.size:
        a.min()
        a.max()
    if a.size > 1:
        np.unique(a).size


def validation_seconds(*index_arrays) -> float:
    """Median time of the numpy checks _core runs on these index arrays (one call)."""
    def run():
        for a in index_arrays:
            _check_index_like(a)

    reps = timeit.repeat(run, number=20, repeat=5)
    return statistics.median(reps) / 20


_VALIDATE_KW = {}


def unvalidated_kw(fn_name: str, probe) -> dict:
    """{"validate": False} when _core's entry point accepts it (checked once by
    calling `probe(validate=False)`), else {}."""
    if fn_name not in _VALIDATE_KW:
        try:
            probe(validate=False)
            _VALIDATE_KW[fn_name] = {"validate": False}
        except TypeError:
            _VALIDATE_KW[fn_name] = {}
    return _VALIDATE_KW[fn_name]


# ---- bytes (workbench.cache access-pattern model) ---------------------------------------------------

def model_bytes(op: str, layout: int, dtype: str, **kw) -> dict:
    """{"bytes": bytes the kernel asks for, "line_bytes": distinct 64-byte lines x 64
    (cold-cache traffic at line granularity)} of one call, from the access-pattern model."""
    try:
        m = cache.by_metric(cache.model_access(op, layout, dtype, **kw))
        return {"bytes": m["bytes_moved"], "line_bytes": m.get("line_bytes")}
    except Exception:  # the model is a description; a failure must not stop the benchmark
        return {"bytes": None, "line_bytes": None}


# ---- extra_info --------------------------------------------------------------------------------------

def record(benchmark, *, op: str, kernel: str, shape_name: str, bytes_per_call, rows_per_call: int,
           triad: dict, validation_s: float, validated: bool, extra: dict | None = None) -> None:
    """Fill extra_info: variant, bytes per call, GB/s, rows/s, % of the triad,
    validation overhead (measured apart), and the caller's extras.
    bytes_per_call: a number or model_bytes()'s dict."""
    info = benchmark.extra_info
    tri = triad.get("value") if isinstance(triad, dict) else None
    line_bytes = None
    if isinstance(bytes_per_call, dict):
        line_bytes = bytes_per_call.get("line_bytes")
        bytes_per_call = bytes_per_call.get("bytes")
    info.update({
        "variant": f"{op}/{kernel}", "op": op, "kernel": kernel, "shape": shape_name, "scale": SCALE,
        "bytes_per_call": bytes_per_call, "line_bytes_per_call": line_bytes,
        "bytes_source": "model: workbench.cache.model_access (bytes: elements the kernel asks for x size; "
                        "line_bytes: distinct 64-byte lines x 64)",
        "rows_per_call": rows_per_call, "triad_gbps": tri,
        "triad_detail": "workbench.cache.triad_bandwidth, measured in this session (best of 5, one thread)",
        "validated": validated, "validation_us": validation_s * 1e6 if validated else 0.0,
        "validation_us_measured": validation_s * 1e6,
        "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "default"),
    })
    info.update(extra or {})
    stats = getattr(benchmark, "stats", None)
    med = None
    if stats is not None:
        try:
            med = stats.stats.median
        except AttributeError:
            med = None
    if med:
        info["median_s"] = med
        info["rows_per_s"] = rows_per_call / med
        if bytes_per_call:
            gbs = bytes_per_call / med / 1e9
            info["gb_per_s"] = gbs
            kern = med - (validation_s if validated else 0.0)
            info["kernel_gb_per_s"] = bytes_per_call / kern / 1e9 if kern > 0 else None
            if tri:
                info["pct_of_triad"] = 100 * gbs / tri
                if info["kernel_gb_per_s"]:
                    info["kernel_pct_of_triad"] = 100 * info["kernel_gb_per_s"] / tri
        if line_bytes:
            info["line_gb_per_s"] = line_bytes / med / 1e9
        if validated:
            info["validation_share"] = validation_s / med


def run(benchmark, target, setup, group: str) -> None:
    sh = shape()
    benchmark.group = group
    benchmark.pedantic(target, setup=setup, rounds=sh["rounds"], iterations=1, warmup_rounds=2)
