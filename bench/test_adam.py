"""Adam over the rows a batch touched: ~3,000 rows of the 670,091 x 128
output layer (W, M, V, G read and written; with the bf16 copy refreshed for
the bf16 precision), sorted as the engine's union of touched rows. In place:
every round updates a fresh set of rows (benchmark.pedantic setup) drawn from
a pool larger than the caches.

    pytest bench/test_adam.py --benchmark-only --benchmark-save=adam
"""

import pytest
from _opbench import Cycle, Matrices, id_pool, kernel_params, model_bytes, record, run, shape, unvalidated_kw, \
    validation_seconds

from kernels import _core

LR_T, B1, B2, EPS = 1e-4, 0.9, 0.999, 1e-8


@pytest.fixture(scope="module")
def mats():
    return Matrices()


@pytest.mark.parametrize("copy", ["none", "bf16"])
@pytest.mark.parametrize("placement", ["default", "hugepage"])
@pytest.mark.parametrize("kernel", kernel_params("adam"))
def test_adam_rows(benchmark, mats, triad, kernel, placement, copy):
    sh = shape()
    n_out, H, n = sh["n_labels"], sh["hidden"], sh["active"]
    W = mats.get("W", n_out, H, placement)
    M = mats.get("M", n_out, H, placement, fill=1e-4)
    V = mats.get("V", n_out, H, placement, fill=1e-6, positive=True)  # second moments are >= 0
    G = mats.get("G", n_out, H, placement, fill=1e-3)
    Wb = mats.bf16("W", n_out, H, placement) if copy == "bf16" else None
    pool = id_pool(n_out, n, sh["pool"], sort=True)
    for rows in pool:
        _core.op_adam(kernel, W, Wb, M, V, G, H, rows, LR_T, B1, B2, EPS)
    kw = unvalidated_kw("op_adam", lambda **k: _core.op_adam(kernel, W, Wb, M, V, G, H, pool[0], LR_T, B1, B2, EPS,
                                                             **k))
    cyc = Cycle(pool)

    def setup():
        return (cyc.next(),), {}

    def target(rows):
        _core.op_adam(kernel, W, Wb, M, V, G, H, rows, LR_T, B1, B2, EPS, **kw)

    group = f"adam/{n:,} rows of {n_out:,}x{H}"
    run(benchmark, target, setup, group)
    record(benchmark, op="adam", kernel=kernel, shape_name=group,
           bytes_per_call=model_bytes("adam", 0, "f32", n_in=H, n_out=n_out, ids=pool[0],
                                      adam_bf16_copy=copy == "bf16"),
           rows_per_call=n, triad=triad, validation_s=validation_seconds(pool[0]), validated=not kw,
           extra={"placement": placement, "bf16_copy": copy == "bf16", "huge_fraction": mats.huge_fraction(W)})
