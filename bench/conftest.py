"""Benchmark configuration: the runtime report goes into every run's machine info.

Scale: SLIDE_BENCH_SCALE=full (default) uses the Amazon-670K shape; =small
runs the same code paths on small shapes (the `small` preset for training)
for a quick smoke run, e.g. `pytest bench --benchmark-disable` in CI.

Session fixtures: `scale`, and `triad`, the STREAM-style memory-bandwidth
roof (workbench.cache.triad_bandwidth) measured once in the same session, so
every op benchmark reports its bandwidth as a share of it. The triad is also
stored in the machine info.
"""

import os
import sys

import pytest

SCALE = os.environ.get("SLIDE_BENCH_SCALE", "full")
# Placement: NUMPY_MADVISE_HUGEPAGE only counts if set before numpy's import;
# record whether numpy was already imported when the benchmarks were configured.
NUMPY_PREIMPORTED = "numpy" in sys.modules
_TRIAD = {}


def pytest_benchmark_update_machine_info(config, machine_info):
    from workbench import runtime

    machine_info["slide_workbench_runtime"] = runtime.report(quick=False)
    machine_info["slide_bench_scale"] = SCALE
    machine_info["numpy_madvise_hugepage"] = os.environ.get("NUMPY_MADVISE_HUGEPAGE", "default")
    if _TRIAD:
        machine_info["triad"] = _TRIAD.get("value")


@pytest.fixture(scope="session")
def scale():
    if SCALE not in ("full", "small"):
        raise pytest.UsageError(f"SLIDE_BENCH_SCALE must be full or small, got {SCALE!r}")
    return SCALE


@pytest.fixture(scope="session")
def triad(scale):
    """The memory-bandwidth roof of this session (a workbench.cache record; value in GB/s)."""
    from workbench import cache

    n_bytes = None if scale == "full" else 3 * (8 << 20)  # small: a smoke run, not a measurement
    rec = cache.triad_bandwidth(n_bytes=n_bytes, repeat=5 if scale == "full" else 2)
    _TRIAD["value"] = rec
    return rec
