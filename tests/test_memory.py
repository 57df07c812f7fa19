"""Placement of parameter buffers: alignment, huge pages requested and what
/proc/self/smaps says was obtained (never assumed)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from workbench import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, numpy as np
from workbench import memory
out = {}
for placement in ("default", "aligned", "hugepage"):
    buf = memory.allocate((16 << 20) // 4, np.float32, placement, name=placement)
    buf.array[:] = 1.0  # touch: pages are only backed once written
    rep = memory.huge_pages_backing({placement: buf.array})[placement]
    out[placement] = {"addr": buf.address, "placement": buf.placement, **rep}
print(json.dumps(out))
"""


def probe(numpy_madvise):
    env = dict(os.environ, PYTHONPATH=ROOT, NUMPY_MADVISE_HUGEPAGE=numpy_madvise)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    return json.loads(r.stdout)


def test_alignment_and_zeroing():
    for placement, align in (("aligned", 64), ("hugepage", 2 << 20)):
        buf = memory.allocate((3 << 20) // 4, np.float32, placement)
        assert buf.address % align == 0
        assert not buf.array.any()
    small = memory.allocate(100, np.float32, "hugepage")  # below 2 MiB: aligned instead, and says so
    assert small.placement == "aligned"
    with pytest.raises(ValueError, match="placement"):
        memory.allocate(10, np.float32, "numa")


def test_huge_pages_are_reported_as_obtained():
    mode = memory.thp_mode()
    rep = probe("0")  # numpy itself does not advise huge pages: the control
    for v in rep.values():
        assert 0 <= v["huge_bytes"] <= v["bytes"] and 0.0 <= v["huge_fraction"] <= 1.0
    assert rep["hugepage"]["placement"] == "hugepage" and rep["hugepage"]["addr"] % (2 << 20) == 0
    if mode == "never":
        assert rep["hugepage"]["huge_bytes"] == 0
    elif mode == "madvise":
        # only madvise'd memory may get huge pages
        assert rep["default"]["huge_fraction"] == 0.0
        assert rep["aligned"]["huge_fraction"] == 0.0
        assert rep["hugepage"]["huge_fraction"] > 0.5, rep  # granted here; the kernel may refuse elsewhere
    with_numpy = probe("1")
    if mode == "madvise":
        assert with_numpy["default"]["huge_fraction"] > 0.5  # numpy's own madvise for large arrays


def test_network_memory_report_lists_large_buffers():
    from workbench import Config, Network

    net = Network(Config(n_features=5000, n_labels=30000, K=3, L=4, range_pow=10, placement="hugepage"))
    rep = net.memory_report()
    assert rep["placement"] == "hugepage" and rep["thp"] == memory.thp_mode()
    assert "layer1.W" in rep["buffers"] and rep["buffers"]["layer1.W"]["aligned_2mib"]
    assert 0.0 <= rep["huge_fraction"] <= 1.0
