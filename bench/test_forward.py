"""Forward kernels, one sample per call: the output layer's gather of active
rows and the sparse-input first layer, every usable kernel, both layouts.

Groups (compare within a group):
  forward/output  ~3,000 random active rows of the 670,091 x 128 output layer:
                  row-major (fwd_rows; placement default and hugepage) against
                  the transposed layout for the same gather (fwd_cols), which
                  reads one strided element per row and loses
  forward/input   the first layer, 76 non-zero features of 135,909 into 128
                  neurons: transposed (fwd_cols: 76 contiguous rows, the
                  default) against row-major (fwd_rows: 128 gathers of 76)

    pytest bench/test_forward.py --benchmark-only --benchmark-save=forward
"""

import numpy as np
import pytest
from _opbench import (Cycle, Matrices, dtype_of, id_pool, input_group, kernel_params, model_bytes, output_group,
                      record, run, shape, sparse_input, unvalidated_kw, validation_seconds)

from kernels import _core


@pytest.fixture(scope="module")
def mats():
    return Matrices()


def _output_forward(benchmark, mats, triad, kernel, layout, placement):
    sh = shape()
    n_out, H, n = sh["n_labels"], sh["hidden"], sh["active"]
    rows, cols = (n_out, H) if layout == 0 else (H, n_out)
    W = mats.get("W", rows, cols, placement)
    Wb = mats.bf16("W", rows, cols, placement) if dtype_of(kernel) == "bf16" else None
    b = np.full(n_out, 0.01, np.float32)
    x = np.random.default_rng(3).random(H).astype(np.float32)
    pool = id_pool(n_out, n, sh["pool"])
    for ids in pool:  # validated once, here
        _core.op_forward(kernel, layout, H, W, Wb, b, None, x, ids, n)
    kw = unvalidated_kw("op_forward", lambda **k: _core.op_forward(kernel, layout, H, W, Wb, b, None, x, pool[0], n,
                                                                   **k))
    cyc = Cycle(pool)

    def setup():
        return (cyc.next(),), {}

    def target(ids):
        _core.op_forward(kernel, layout, H, W, Wb, b, None, x, ids, n, **kw)

    group = output_group("forward", sh)
    run(benchmark, target, setup, group)
    record(benchmark, op="fwd_rows" if layout == 0 else "fwd_cols", kernel=kernel, shape_name=group,
           bytes_per_call=model_bytes("forward", layout, dtype_of(kernel), n_in=H, n_out=n_out, ids=pool[0]),
           rows_per_call=n, triad=triad, validation_s=validation_seconds(pool[0]), validated=not kw,
           extra={"layout": "rowmajor" if layout == 0 else "transposed", "placement": placement,
                  "huge_fraction": mats.huge_fraction(Wb if Wb is not None else W)})


@pytest.mark.parametrize("placement", ["default", "hugepage"])
@pytest.mark.parametrize("kernel", kernel_params("fwd_rows"))
def test_forward_output_rowmajor(benchmark, mats, triad, kernel, placement):
    _output_forward(benchmark, mats, triad, kernel, 0, placement)


@pytest.mark.parametrize("kernel", kernel_params("fwd_cols"))
def test_forward_output_transposed(benchmark, mats, triad, kernel):
    _output_forward(benchmark, mats, triad, kernel, 1, "default")


def _input_forward(benchmark, mats, triad, kernel, layout):
    sh = shape()
    nf, H, nnz = sh["n_features"], sh["hidden"], sh["nnz"]
    rows, cols = (H, nf) if layout == 0 else (nf, H)
    W = mats.get("W0", rows, cols, "default")
    Wb = mats.bf16("W0", rows, cols, "default") if dtype_of(kernel) == "bf16" else None
    b = np.full(H, 0.01, np.float32)
    inputs = [sparse_input(nf, nnz, seed=s) for s in range(sh["pool"])]
    for xi, xv in inputs:
        _core.op_forward(kernel, layout, nf, W, Wb, b, xi, xv, None, H)
    kw = unvalidated_kw("op_forward", lambda **k: _core.op_forward(kernel, layout, nf, W, Wb, b, *inputs[0], None, H,
                                                                   **k))
    cyc = Cycle(inputs)

    def setup():
        return cyc.next(), {}

    def target(xi, xv):
        _core.op_forward(kernel, layout, nf, W, Wb, b, xi, xv, None, H, **kw)

    group = input_group("forward", sh)
    run(benchmark, target, setup, group)
    record(benchmark, op="fwd_rows" if layout == 0 else "fwd_cols", kernel=kernel, shape_name=group,
           bytes_per_call=model_bytes("forward", layout, dtype_of(kernel), n_in=nf, n_out=H, xi=inputs[0][0],
                                      n_active=H),
           rows_per_call=nnz if layout == 1 else H, triad=triad, validation_s=validation_seconds(inputs[0][0]),
           validated=not kw, extra={"layout": "rowmajor" if layout == 0 else "transposed", "placement": "default"})


@pytest.mark.parametrize("kernel", kernel_params("fwd_cols"))
def test_forward_input_transposed(benchmark, mats, triad, kernel):
    _input_forward(benchmark, mats, triad, kernel, 1)


@pytest.mark.parametrize("kernel", kernel_params("fwd_rows"))
def test_forward_input_rowmajor(benchmark, mats, triad, kernel):
    _input_forward(benchmark, mats, triad, kernel, 0)


def test_index_validation_cost(benchmark, triad):
    """What kernels._core.op_* spend checking an index array before the kernel
    runs (min, max, np.unique of the ids): the overhead the other benchmarks
    report as validation_us and subtract for kernel_gb_per_s."""
    from _opbench import _check_index_like

    sh = shape()
    pool = id_pool(sh["n_labels"], sh["active"], sh["pool"])
    cyc = Cycle(pool)

    def setup():
        return (cyc.next(),), {}

    run(benchmark, _check_index_like, setup, f"validation/{sh['active']:,} ids")
    benchmark.extra_info.update({"variant": "numpy index checks", "ids_per_call": sh["active"],
                                 "what": "a.min(), a.max(), np.unique(a).size as in kernels._core._check_index"})
