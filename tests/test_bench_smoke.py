"""The benchmark suites run (not timed): `pytest bench --benchmark-disable` at
SLIDE_BENCH_SCALE=small in a subprocess, so that a broken benchmark is caught
by the test suite. Speed is measured by `pytest bench --benchmark-only`,
never asserted here."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_suites_run_at_small_scale():
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[test]')")
    env = dict(os.environ, SLIDE_BENCH_SCALE="small", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pytest", "bench", "--benchmark-disable", "-q", "-p", "no:cacheprovider",
                        "-o", "addopts="], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "failed" not in r.stdout.splitlines()[-1], tail
