"""DWTA hashing of dense 128-d vectors (the hidden activations the output
layer's tables are queried with): K=6, L=50, bins of 8, range 2^18 (the
reference settings), a batch of vectors per call, every usable hash kernel.

    pytest bench/test_hash.py --benchmark-only --benchmark-save=hash
"""

import numpy as np
import pytest
from _opbench import Cycle, kernel_params, record, run, shape

from kernels import _core
from workbench import lsh


@pytest.mark.parametrize("family", ["dwta"])
@pytest.mark.parametrize("kernel", kernel_params("hash"))
def test_hash_dense(benchmark, triad, kernel, family):
    sh = shape()
    dim, n, K, L = sh["hidden"], sh["vectors"], sh["K"], sh["L"]
    hasher = lsh.hasher_params(family, dim, K, L, bin_size=8, bits=3, shift=3, range_pow=sh["range_pow"], seed=7)
    rng = np.random.default_rng(5)
    batches = [np.maximum(rng.standard_normal((n, dim)), 0).astype(np.float32) for _ in range(sh["pool"])]
    ref = _core.hash_dense(hasher, batches[0], "f32/scalar")
    assert np.array_equal(_core.hash_dense(hasher, batches[0], kernel), ref), "kernel disagrees with scalar"
    cyc = Cycle(batches)

    def setup():
        return (cyc.next(),), {}

    def target(X):
        _core.hash_dense(hasher, X, kernel)

    group = f"hash/{family} K={K} L={L} of {n}x{dim}"
    run(benchmark, target, setup, group)
    H = K * L
    record(benchmark, op="hash", kernel=kernel, shape_name=group,
           bytes_per_call=float(n * dim * 4 + n * H * 4 + H * 8 * 4), rows_per_call=n, triad=triad,
           validation_s=0.0, validated=False,
           extra={"family": family, "K": K, "L": L, "vectors_per_call": n,
                  "bytes_note": "input vectors read + hash values written + the hasher's coordinate table (by hand)",
                  "hashes_per_s_note": "rows_per_s counts vectors; each gets K x L hash values"})
