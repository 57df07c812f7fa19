"""Every kernel variant of every op against an independent float64 numpy
oracle and against the scalar kernel of the same dtype.

Variants the CPU cannot run are reported as skipped with the selector's
reason. Sizes cover odd widths (1, 15, 17, 100, 129), empty active sets,
empty inputs, unaligned buffers, dense and sparse inputs, both layouts.
"""

import numpy as np
import pytest

from kernels import _core
from workbench import variants
from workbench.bf16 import round_bf16, to_bf16

ALL = variants.compiled_kernels()
USABLE = variants.usable_isas()
WIDTHS = [1, 15, 16, 17, 100, 128, 129]


def kernels_for(op):
    return [pytest.param(k, id=f"{k.dtype}-{k.isa}") for k in ALL if k.op == op]


def require(k):
    if k.isa not in USABLE:
        pytest.skip(f"{k.op}:{k.name} unavailable: {variants._why_unusable(k.isa)}")


def unaligned(a):
    """The same values in a buffer whose data pointer is 4 bytes off any 64-byte boundary."""
    flat = np.empty(a.size + 17, a.dtype)
    off = ((-flat.ctypes.data) % 64) // a.itemsize + 1
    out = flat[off:off + a.size].reshape(a.shape)
    out[...] = a
    return out


def storage(Wlog, layout, misalign=False):
    """Padded storage of a logical (n_out, n_in) matrix, plus its bf16 copy."""
    A = Wlog if layout == 0 else Wlog.T
    ld = -(-A.shape[1] // 16) * 16
    W = np.zeros((A.shape[0], ld), np.float32)
    W[:, : A.shape[1]] = A
    if misalign:
        W = unaligned(W)
    Wb = _core.bf16_buffer(W.shape)
    Wb[...] = to_bf16(W)
    return W, Wb


def make_case(rng, n_in, n_out, sparse, n_active, layout):
    Wlog = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    if sparse:
        k = rng.integers(0, n_in + 1)
        xi = np.sort(rng.choice(n_in, k, replace=False)).astype(np.int32)
        xv = rng.standard_normal(k).astype(np.float32)
    else:
        xi = None
        xv = rng.standard_normal(n_in).astype(np.float32)
    ids = None if n_active is None else rng.choice(n_out, n_active, replace=False).astype(np.int32)
    return Wlog, b, xi, xv, ids


def oracle_forward(Wlog, b, xi, xv, ids, dtype):
    Wq = Wlog.astype(np.float64) if dtype == "f32" else round_bf16(Wlog).astype(np.float64)
    xq = xv.astype(np.float64) if dtype == "f32" else round_bf16(xv).astype(np.float64)
    x = np.zeros(Wlog.shape[1])
    if xi is None:
        x[:] = xq
    else:
        x[xi] = xq
    rows = np.arange(Wlog.shape[0]) if ids is None else ids
    z = Wq[rows] @ x + b[rows]
    scale = np.abs(Wq[rows]) @ np.abs(x) + np.abs(b[rows])
    return z, scale


CASES = [(w, sparse, act, layout) for w in WIDTHS for sparse in (False, True) for act in ("all", "some", "none")
         for layout in (0, 1)]


@pytest.mark.parametrize("k", kernels_for("fwd_rows") + kernels_for("fwd_cols"))
def test_forward_matches_oracle_and_scalar(k):
    require(k)
    layout = 0 if k.op == "fwd_rows" else 1
    rng = np.random.default_rng(11)
    for w, sparse, act, _ in [c for c in CASES if c[3] == layout]:
        n_in, n_out = w, w + 3
        n_active = {"all": None, "some": max(1, n_out // 2), "none": 0}[act]
        Wlog, b, xi, xv, ids = make_case(rng, n_in, n_out, sparse, n_active, layout)
        W, Wb = storage(Wlog, layout, misalign=(w % 2 == 1))
        n = n_out if ids is None else len(ids)
        xv_u = unaligned(xv) if xv.size else xv
        z = _core.op_forward(k.name, layout, n_in, W, Wb if k.dtype == "bf16" else None, b, xi, xv_u, ids, n)
        want, scale = oracle_forward(Wlog, b, xi, xv, ids, k.dtype)
        np.testing.assert_allclose(z, want, rtol=0, atol=1e-5 * scale.max(initial=1.0) + 1e-6,
                                   err_msg=f"{k} w={w} sparse={sparse} act={act}")
        ref = _core.op_forward(f"{k.dtype}/scalar", layout, n_in, W, Wb if k.dtype == "bf16" else None, b, xi, xv,
                               ids, n)
        np.testing.assert_allclose(z, ref, rtol=0, atol=1e-5 * scale.max(initial=1.0) + 1e-6)


@pytest.mark.parametrize("k", kernels_for("fwd_rows") + kernels_for("fwd_cols"))
def test_forward_prefetch_changes_nothing(k):
    require(k)
    layout = 0 if k.op == "fwd_rows" else 1
    rng = np.random.default_rng(3)
    Wlog, b, xi, xv, ids = make_case(rng, 128, 300, False, 97, layout)
    W, Wb = storage(Wlog, layout)
    Wb = Wb if k.dtype == "bf16" else None
    a = _core.op_forward(k.name, layout, 128, W, Wb, b, xi, xv, ids, 97, prefetch=0)
    c = _core.op_forward(k.name, layout, 128, W, Wb, b, xi, xv, ids, 97, prefetch=8)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("k", kernels_for("bwd_rows") + kernels_for("bwd_cols"))
def test_backward_matches_oracle_and_scalar(k):
    require(k)
    layout = 0 if k.op == "bwd_rows" else 1
    rng = np.random.default_rng(12)
    for w, sparse, act, _ in [c for c in CASES if c[3] == layout]:
        n_in, n_out = w, w + 3
        n_active = {"all": None, "some": max(1, n_out // 2), "none": 0}[act]
        Wlog, b, xi, xv, ids = make_case(rng, n_in, n_out, sparse, n_active, layout)
        W, Wb = storage(Wlog, layout)
        rows = np.arange(n_out) if ids is None else ids
        g = rng.standard_normal(len(rows)).astype(np.float32)
        gW0 = rng.standard_normal(W.shape).astype(np.float32)
        gW0[:, (n_in if layout == 0 else n_out):] = 0
        gb0 = rng.standard_normal(n_out).astype(np.float32)
        results = []
        for name in (k.name, f"{k.dtype}/scalar"):
            gW, gb = gW0.copy(), gb0.copy()
            dx = _core.op_backward(name, layout, n_in, W, Wb if k.dtype == "bf16" else None, gW, gb, xi, xv, ids,
                                   g, True)
            results.append((gW, gb, dx))
        # oracle in the logical orientation
        Wq = Wlog.astype(np.float64) if k.dtype == "f32" else round_bf16(Wlog).astype(np.float64)
        cols = np.arange(n_in) if xi is None else xi
        want_dx = g.astype(np.float64) @ Wq[rows][:, cols]
        gW_log = (gW0[:, :n_in] if layout == 0 else gW0[:, :n_out].T).astype(np.float64)
        gW_log[np.ix_(rows, cols)] += np.outer(g, xv)
        want_gb = gb0.astype(np.float64)
        np.add.at(want_gb, rows, g)
        scale = np.abs(g) @ np.abs(Wq[rows][:, cols]) + 1.0 if len(rows) else np.ones(len(cols))
        for gW, gb, dx in results:
            got_log = gW[:, :n_in] if layout == 0 else gW[:, :n_out].T
            np.testing.assert_allclose(dx, want_dx, rtol=0, atol=1e-5 * scale.max(initial=1.0) + 1e-6,
                                       err_msg=f"{k} dx w={w} sparse={sparse} act={act}")
            np.testing.assert_allclose(got_log, gW_log, rtol=1e-6, atol=1e-6, err_msg=f"{k} gW w={w}")
            np.testing.assert_allclose(gb, want_gb, rtol=1e-6, atol=1e-6, err_msg=f"{k} gb w={w}")
            # padding columns stay zero
            assert not np.any(gW[:, (n_in if layout == 0 else n_out):])
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", kernels_for("adam"))
@pytest.mark.parametrize("with_bf16", [False, True])
def test_adam_is_bitwise_equal_to_scalar_and_matches_oracle(k, with_bf16):
    require(k)
    rng = np.random.default_rng(13)
    for cols in WIDTHS:
        R, ld = 37, -(-cols // 16) * 16
        W0 = np.zeros((R, ld), np.float32)
        W0[:, :cols] = rng.standard_normal((R, cols))
        M0 = np.zeros_like(W0)
        M0[:, :cols] = rng.standard_normal((R, cols)) * 0.1
        V0 = np.zeros_like(W0)
        V0[:, :cols] = rng.random((R, cols)) * 0.01
        G0 = np.zeros_like(W0)
        G0[:, :cols] = rng.standard_normal((R, cols))
        G0[0, 0] = 0.0
        rows = np.sort(rng.choice(R, 20, replace=False)).astype(np.int32)
        outs = []
        for name in (k.name, "f32/scalar"):
            W, M, V, G = (unaligned(a) for a in (W0, M0, V0, G0))
            Wb = _core.bf16_buffer(W.shape) if with_bf16 else None
            _core.op_adam(name, W, Wb, M, V, G, cols, rows, 1e-3)
            outs.append((W, M, V, G, Wb))
        for a, b in zip(outs[0], outs[1]):
            if a is not None:
                np.testing.assert_array_equal(a, b)
        W, M, V, G, Wb = outs[0]
        lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
        m = b1 * M0[rows].astype(np.float64) + (1 - b1) * G0[rows]
        v = b2 * V0[rows].astype(np.float64) + (1 - b2) * G0[rows].astype(np.float64) ** 2
        w = W0[rows] - lr * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(W[rows], w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(M[rows], m, rtol=1e-6, atol=2e-7)  # b1*m + (1-b1)*g may cancel
        other = np.setdiff1d(np.arange(R), rows)
        np.testing.assert_array_equal(W[other], W0[other])  # untouched rows stay
        assert not G[rows].any() and np.array_equal(G[other], G0[other])
        if with_bf16:
            np.testing.assert_array_equal(Wb[rows], to_bf16(W[rows]))
            assert not Wb[other].any()


@pytest.mark.parametrize("k", kernels_for("row_adam"))
@pytest.mark.parametrize("with_bf16", [False, True])
def test_row_adam_equals_bwd_rows_then_adam_and_matches_oracle(k, with_bf16):
    """The fused kernel of the batched output layer: bitwise what the same
    ISA's bwd_rows (H as the matrix, the weight row as the input) followed by
    its adam kernel compute, and the float64 oracle within rounding."""
    require(k)
    rng = np.random.default_rng(17)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    for d in WIDTHS:
        for n in (0, 1, 2, 5, 9):
            B, ldh = 11, -(-d // 16) * 16
            H = np.zeros((B, ldh), np.float32)
            H[:, :d] = rng.standard_normal((B, d))
            dH0 = np.zeros_like(H)
            dH0[:, :d] = rng.standard_normal((B, d)) * 0.1
            w0 = rng.standard_normal(d).astype(np.float32)
            m0 = (rng.standard_normal(d) * 0.1).astype(np.float32)
            v0 = (rng.random(d) * 0.01).astype(np.float32)
            ids = rng.choice(B, n, replace=False).astype(np.int32)
            g = rng.standard_normal(n).astype(np.float32)
            # fused, the forward's weights being the row itself (x is w)
            w, m, v, dH = (unaligned(a) for a in (w0, m0, v0, dH0))
            wb = np.zeros(d, np.uint16) if with_bf16 else None
            _core.op_row_adam(k.name, w, wb, m, v, w, unaligned(H), dH, ids, g, lr)
            # the same ISA's two kernels
            dH2 = dH0.copy()
            grad = _core.op_backward(f"f32/{k.isa}", 0, d, H, None, dH2, np.zeros(B, np.float32), None, w0.copy(),
                                     ids, g, True)
            W2, M2, V2 = w0[None].copy(), m0[None].copy(), v0[None].copy()
            Wb2 = _core.bf16_buffer(W2.shape) if with_bf16 else None
            _core.op_adam(f"f32/{k.isa}", W2, Wb2, M2, V2, grad[None].copy(), d, None, lr)
            for got, want in ((w, W2[0]), (m, M2[0]), (v, V2[0]), (dH, dH2)):
                np.testing.assert_array_equal(got, want)
            if with_bf16:
                np.testing.assert_array_equal(wb, Wb2[0, :d])
                np.testing.assert_array_equal(wb, to_bf16(w))
            # float64 oracle
            g64 = g.astype(np.float64)
            gr = (g64[:, None] * H[ids, :d]).sum(axis=0) if n else np.zeros(d)
            mo = b1 * m0.astype(np.float64) + (1 - b1) * gr
            vo = b2 * v0.astype(np.float64) + (1 - b2) * gr**2
            np.testing.assert_allclose(w, w0 - lr * mo / (np.sqrt(vo) + eps), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(m, mo, rtol=1e-5, atol=1e-6)
            dHo = dH0.astype(np.float64)
            dHo[ids, :d] += g64[:, None] * w0
            np.testing.assert_allclose(dH, dHo, rtol=1e-6, atol=1e-6)
            assert not dH[:, d:].any()  # the padding stays zero


def test_row_adam_refuses_bad_arguments():
    d, B = 8, 4
    w, m, v = (np.zeros(d, np.float32) for _ in range(3))
    H, dH = np.zeros((B, 16), np.float32), np.zeros((B, 16), np.float32)
    g = np.ones(2, np.float32)
    ok = dict(w=w, wb=None, m=m, v=v, x=w, H=H, dH=dH, ids=np.array([0, 3], np.int32), g=g)

    def call(**kw):
        a = dict(ok, **kw)
        _core.op_row_adam("f32/scalar", a["w"], a["wb"], a["m"], a["v"], a["x"], a["H"], a["dH"], a["ids"], a["g"],
                          1e-3)

    call()
    with pytest.raises(IndexError):
        call(ids=np.array([0, 4], np.int32))
    with pytest.raises(IndexError):
        call(ids=np.array([-1, 0], np.int32))
    with pytest.raises(ValueError):
        call(g=np.ones(3, np.float32))
    with pytest.raises(ValueError):
        call(m=np.zeros(d + 1, np.float32))
    with pytest.raises(ValueError):
        call(H=np.zeros((B, 4), np.float32), dH=np.zeros((B, 4), np.float32))
    with pytest.raises(TypeError):
        call(dH=np.zeros((B + 1, 16), np.float32))
    with pytest.raises(TypeError):
        call(ids=np.array([0, 1], np.int64))
    with pytest.raises(TypeError):
        call(wb=np.zeros(d, np.float32))
    with pytest.raises(TypeError):
        call(x=[0.0] * d)
    with pytest.raises(KeyError):
        _core.op_row_adam("f32/nonexistent", w, None, m, v, w, H, dH, ok["ids"], g, 1e-3)


def test_every_op_has_a_usable_kernel_for_every_precision():
    for precision in variants.PRECISIONS:
        choice = variants.select(precision)
        assert set(choice) == set(variants.OPS)
        for op, c in choice.items():
            assert c.kernel.isa in USABLE
            assert c.kernel.dtype == variants.PRECISION_DTYPES[precision][op]


def test_bad_indices_are_refused_before_any_kernel_runs():
    rng = np.random.default_rng(0)
    Wlog, b, _, xv, _ = make_case(rng, 20, 30, False, None, 0)
    W, _ = storage(Wlog, 0)
    with pytest.raises(IndexError):
        _core.op_forward("f32/scalar", 0, 20, W, None, b, None, xv, np.array([0, 30], np.int32), 2)
    with pytest.raises(IndexError):
        _core.op_forward("f32/scalar", 0, 20, W, None, b, np.array([-1], np.int32), xv[:1], None, 30)
    with pytest.raises(ValueError):
        _core.op_forward("f32/scalar", 0, 20, W, None, b, None, xv[:5], None, 30)
    with pytest.raises(ValueError):
        _core.op_forward("f32/scalar", 0, 20, W, None, b, None, xv, None, 31)
    with pytest.raises(ValueError):  # bf16 copy without the spare elements
        _core.op_forward("bf16/scalar", 0, 20, W, np.zeros(W.shape, np.uint16), b, None, xv, None, 30)
    with pytest.raises(KeyError):
        _core.op_forward("f32/nonexistent", 0, 20, W, None, b, None, xv, None, 30)


@pytest.mark.parametrize("k", kernels_for("hash"))
@pytest.mark.parametrize("family", ["dwta", "wta", "srp", "minhash"])
def test_hash_kernels_equal_scalar(k, family):
    require(k)
    from workbench.lsh import Hasher

    rng = np.random.default_rng(5)
    for dim, K, L in ((128, 6, 50), (17, 3, 5), (300, 1, 1)):
        h = Hasher(family, dim=dim, K=K, L=L, seed=dim)
        X = rng.standard_normal((40, dim)).astype(np.float32)
        X[rng.random(X.shape) < 0.4] = 0.0  # zeros are absent for DWTA
        X[0] = 0.0  # every bin empty
        X[1, :] = 1.0  # every slot ties
        X[2, ::3] = X[2, 1::3][: len(X[2, ::3])]  # repeated values
        want = _core.hash_dense(h.params, X, "f32/scalar")
        np.testing.assert_array_equal(_core.hash_dense(h.params, X, k.name), want)


@pytest.mark.parametrize("k", kernels_for("hash"))
def test_hash_kernels_equal_scalar_on_non_finite_values(k):
    require(k)
    from workbench.lsh import Hasher

    rng = np.random.default_rng(6)
    for family in ("dwta", "wta"):
        h = Hasher(family, dim=64, K=4, L=10, seed=2)
        X = rng.standard_normal((30, 64)).astype(np.float32)
        X[rng.random(X.shape) < 0.3] = 0.0
        X[0, :] = -np.inf
        X[1, ::2] = -np.inf
        X[1, 1::2] = 0.0
        X[2, ::5] = np.nan
        X[3, :] = np.nan
        X[4, ::3] = np.inf
        np.testing.assert_array_equal(_core.hash_dense(h.params, X, k.name), _core.hash_dense(h.params, X, "f32/scalar"))


@pytest.mark.parametrize("k", kernels_for("hash_rows"))
@pytest.mark.parametrize("family", ["dwta", "wta", "srp", "minhash"])
def test_hash_rows_kernels_equal_per_row_scalar(k, family):
    """Rehashing a matrix several rows at a time gives each row's scalar hashes."""
    require(k)
    from workbench.lsh import Hasher

    rng = np.random.default_rng(7)
    for dim, K, L, n in ((128, 6, 50, 37), (16, 2, 3, 9), (100, 3, 7, 8)):
        h = Hasher(family, dim=dim, K=K, L=L, seed=dim)
        ld = -(-dim // 16) * 16
        W = np.zeros((n, ld), np.float32)
        W[:, :dim] = rng.standard_normal((n, dim))
        W[rng.random(W.shape) < 0.3] = 0.0
        W[0, :] = 0.0  # every bin empty (DWTA densifies)
        W[1, :dim] = 1.0  # ties everywhere
        W[2, ::3] = np.nan
        W[3, :dim:2] = -np.inf
        # and rows like trained weights: no zero, no NaN (the SIMD fast path), with ties and infinities
        W2 = np.zeros((n, ld), np.float32)
        W2[:, :dim] = np.round(rng.standard_normal((n, dim)), 1) + 0.05
        W2[n - 1, :dim:5] = -np.inf
        W2[n - 2, :dim:7] = np.inf
        for M in (W, W2):
            want = _core.hash_dense(h.params, np.ascontiguousarray(M[:, :dim]), "f32/scalar")
            for j0, j1 in ((0, n), (1, n), (3, 3 + min(8, n - 3))):
                got = _core.hash_rows(h.params, M, j0, j1, k.name)
                np.testing.assert_array_equal(got, want[j0:j1], err_msg=f"{k} {family} rows {j0}:{j1}")


@pytest.mark.parametrize("threads", [1, 2])
def test_count_nonfinite_counts_what_numpy_counts(threads):
    rng = np.random.default_rng(23)
    for n in (0, 1, 7, 8, 9, 33, 1000, (1 << 18) + 13, 3 * (1 << 18) + 5):
        a = rng.standard_normal(n).astype(np.float32)
        if n:
            at = rng.choice(n, min(n, 1 + n // 500), replace=False)
            a[at] = rng.choice(np.array([np.nan, np.inf, -np.inf, -np.nan], np.float32), at.size)
            a[-1] = np.inf if n % 2 else a[-1]  # the scalar tail too
        assert _core.count_nonfinite(a, threads) == int((~np.isfinite(a)).sum())
    big = np.full((3, 5), np.finfo(np.float32).max, np.float32)  # finite extremes are not counted
    assert _core.count_nonfinite(big, threads) == 0
    assert _core.count_nonfinite(big[:, ::2], threads) == 0  # non-contiguous input is copied
