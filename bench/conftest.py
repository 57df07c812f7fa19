"""Benchmark configuration: the runtime report goes into every run's machine info.

Scale: SLIDE_BENCH_SCALE=full (default) uses the Amazon-670K shape; =small
runs the same code paths on the `small` preset (for a quick smoke run, e.g.
`pytest bench --benchmark-disable` in CI).
"""

import os

import pytest

SCALE = os.environ.get("SLIDE_BENCH_SCALE", "full")


def pytest_benchmark_update_machine_info(config, machine_info):
    from workbench import runtime

    machine_info["slide_workbench_runtime"] = runtime.report(quick=False)


@pytest.fixture(scope="session")
def scale():
    if SCALE not in ("full", "small"):
        raise pytest.UsageError(f"SLIDE_BENCH_SCALE must be full or small, got {SCALE!r}")
    return SCALE
