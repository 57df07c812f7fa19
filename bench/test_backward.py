"""Backward kernels, one sample per call: gradients of the active rows
accumulated into gW / gb (in place) and, for the output layer, the gradient
of the hidden activations (dx). Fresh active rows every round
(benchmark.pedantic setup), drawn from a pool larger than the caches.

Groups:
  backward/output  ~3,000 active rows of the 670,091 x 128 output layer, with dx:
                   row-major (bwd_rows; default and hugepage placement) against
                   transposed (bwd_cols)
  backward/input   the first layer, 76 non-zero features into 128 neurons, no dx:
                   transposed (bwd_cols, the default) against row-major (bwd_rows)

    pytest bench/test_backward.py --benchmark-only --benchmark-save=backward
"""

import numpy as np
import pytest
from _opbench import (Cycle, Matrices, dtype_of, id_pool, input_group, kernel_params, model_bytes, output_group,
                      record, run, shape, sparse_input, unvalidated_kw, validation_seconds)

from kernels import _core


@pytest.fixture(scope="module")
def mats():
    return Matrices()


def _output_backward(benchmark, mats, triad, kernel, layout, placement):
    sh = shape()
    n_out, H, n = sh["n_labels"], sh["hidden"], sh["active"]
    rows, cols = (n_out, H) if layout == 0 else (H, n_out)
    W = mats.get("W", rows, cols, placement)
    Wb = mats.bf16("W", rows, cols, placement) if dtype_of(kernel) == "bf16" else None
    gW = mats.get("gW", rows, cols, placement, fill=1e-4)
    gb = np.zeros(n_out, np.float32)
    x = np.random.default_rng(3).random(H).astype(np.float32)
    pool = id_pool(n_out, n, sh["pool"])
    grads = [np.random.default_rng(10 + i).standard_normal(n).astype(np.float32) * 1e-3 for i in range(len(pool))]
    for ids, g in zip(pool, grads):
        _core.op_backward(kernel, layout, H, W, Wb, gW, gb, None, x, ids, g, True)
    kw = unvalidated_kw("op_backward", lambda **k: _core.op_backward(kernel, layout, H, W, Wb, gW, gb, None, x,
                                                                     pool[0], grads[0], True, **k))
    cyc = Cycle(list(zip(pool, grads)))

    def setup():
        return cyc.next(), {}

    def target(ids, g):
        _core.op_backward(kernel, layout, H, W, Wb, gW, gb, None, x, ids, g, True, **kw)

    group = output_group("backward", sh)
    run(benchmark, target, setup, group)
    record(benchmark, op="bwd_rows" if layout == 0 else "bwd_cols", kernel=kernel, shape_name=group,
           bytes_per_call=model_bytes("backward", layout, dtype_of(kernel), n_in=H, n_out=n_out, ids=pool[0],
                                      want_dx=True),
           rows_per_call=n, triad=triad, validation_s=validation_seconds(pool[0]), validated=not kw,
           extra={"layout": "rowmajor" if layout == 0 else "transposed", "placement": placement, "want_dx": True,
                  "huge_fraction": mats.huge_fraction(gW)})


@pytest.mark.parametrize("placement", ["default", "hugepage"])
@pytest.mark.parametrize("kernel", kernel_params("bwd_rows"))
def test_backward_output_rowmajor(benchmark, mats, triad, kernel, placement):
    _output_backward(benchmark, mats, triad, kernel, 0, placement)


@pytest.mark.parametrize("kernel", kernel_params("bwd_cols"))
def test_backward_output_transposed(benchmark, mats, triad, kernel):
    _output_backward(benchmark, mats, triad, kernel, 1, "default")


def _input_backward(benchmark, mats, triad, kernel, layout):
    sh = shape()
    nf, H, nnz = sh["n_features"], sh["hidden"], sh["nnz"]
    rows, cols = (H, nf) if layout == 0 else (nf, H)
    W = mats.get("W0", rows, cols, "default")
    Wb = mats.bf16("W0", rows, cols, "default") if dtype_of(kernel) == "bf16" else None
    gW = mats.get("gW0", rows, cols, "default", fill=1e-4)
    gb = np.zeros(H, np.float32)
    g = np.random.default_rng(4).standard_normal(H).astype(np.float32) * 1e-3
    inputs = [sparse_input(nf, nnz, seed=s) for s in range(sh["pool"])]
    for xi, xv in inputs:
        _core.op_backward(kernel, layout, nf, W, Wb, gW, gb, xi, xv, None, g, False)
    kw = unvalidated_kw("op_backward", lambda **k: _core.op_backward(kernel, layout, nf, W, Wb, gW, gb, *inputs[0],
                                                                     None, g, False, **k))
    cyc = Cycle(inputs)

    def setup():
        return cyc.next(), {}

    def target(xi, xv):
        _core.op_backward(kernel, layout, nf, W, Wb, gW, gb, xi, xv, None, g, False, **kw)

    group = input_group("backward", sh)
    run(benchmark, target, setup, group)
    record(benchmark, op="bwd_rows" if layout == 0 else "bwd_cols", kernel=kernel, shape_name=group,
           bytes_per_call=model_bytes("backward", layout, dtype_of(kernel), n_in=nf, n_out=H, xi=inputs[0][0],
                                      n_active=H, want_dx=False),
           rows_per_call=nnz if layout == 1 else H, triad=triad, validation_s=validation_seconds(inputs[0][0]),
           validated=not kw, extra={"layout": "rowmajor" if layout == 0 else "transposed", "placement": "default",
                                    "want_dx": False})


@pytest.mark.parametrize("kernel", kernel_params("bwd_cols"))
def test_backward_input_transposed(benchmark, mats, triad, kernel):
    _input_backward(benchmark, mats, triad, kernel, 1)


@pytest.mark.parametrize("kernel", kernel_params("bwd_rows"))
def test_backward_input_rowmajor(benchmark, mats, triad, kernel):
    _input_backward(benchmark, mats, triad, kernel, 0)
