"""Forward, backward and Adam of a small fully-active network against a float64
numpy oracle, for both update modes and both weight layouts."""

import numpy as np
import pytest

from workbench import Config, Dataset, Network

from . import oracle


def make_data(seed, n=24, F=30, L=15):
    rng = np.random.default_rng(seed)
    ip, ix, vx, lp, lb = [0], [], [], [0], []
    for _ in range(n):
        f = np.sort(rng.choice(F, rng.integers(1, 7), replace=False))
        ix += list(f)
        vx += list(rng.uniform(-1, 1, len(f)))
        ip.append(len(ix))
        lb += list(np.sort(rng.choice(L, rng.integers(1, 4), replace=False)))
        lp.append(len(lb))
    return Dataset(name="oracle", n_features=F, n_labels=L, indptr=np.array(ip), indices=np.array(ix, np.int32),
                   values=np.array(vx, np.float32), label_indptr=np.array(lp), labels=np.array(lb, np.int32),
                   source="test")


def storage(layer, name):
    """Valid part of a parameter array, in storage layout."""
    a = layer.arrays[name]
    if a.ndim == 1:
        return a.astype(np.float64)
    cols = layer.n_in if layer.layout == "rowmajor" else layer.n_out
    return a[:, :cols].astype(np.float64)


def logical_grad(layer):
    g = storage(layer, "gW")
    return g if layer.layout == "rowmajor" else g.T


def build(layouts, update, seed=3):
    ds = make_data(seed)
    cfg = Config(n_features=ds.n_features, n_labels=ds.n_labels, hidden=(12, 9), layer_modes=("dense",) * 3,
                 layouts=layouts, lr=1e-2, init_std=0.3, update=update, deterministic=True, seed=seed)
    return ds, Network(cfg)


def run_batch(net, ds, rows):
    order = np.asarray(rows, dtype=np.int64)
    net.batches += 1
    net._engine.train_batch(ds.indptr, ds.indices, ds.values, ds.label_indptr, ds.labels, order, 0, len(order),
                            net.batches, 7, 1.0 / len(order), 1)


LAYOUTS = [("transposed", "rowmajor", "rowmajor"), ("rowmajor",) * 3, ("transposed",) * 3]


@pytest.mark.parametrize("layouts", LAYOUTS)
def test_forward_matches_oracle(layouts):
    ds, net = build(layouts, "sparse")
    Ws = [l.logical_weights().astype(np.float64) for l in net.layers]
    bs = [storage(l, "b") for l in net.layers]
    rows = np.arange(len(ds))
    want = oracle.forward(Ws, bs, oracle.dense_rows(ds, rows))[-1]
    got = net.logits(ds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layouts_give_the_same_network():
    nets = [build(layouts, "sparse")[1] for layouts in LAYOUTS]
    for a, b in zip(nets[0].layers, nets[1].layers):
        np.testing.assert_array_equal(a.logical_weights(), b.logical_weights())
    ds = make_data(3)
    outs = [n.logits(ds) for n in nets]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layouts", LAYOUTS)
def test_backward_matches_oracle(layouts):
    ds, net = build(layouts, "sparse")
    rows = np.arange(10)
    Ws = [l.logical_weights().astype(np.float64) for l in net.layers]
    bs = [storage(l, "b") for l in net.layers]
    labels = [ds.labels[ds.label_indptr[r]:ds.label_indptr[r + 1]] for r in rows]
    _, gWs, gbs = oracle.loss_and_grads(Ws, bs, oracle.dense_rows(ds, rows), labels)
    run_batch(net, ds, rows)
    for layer, gW, gb in zip(net.layers, gWs, gbs):
        scale = max(np.abs(gW).max(), 1e-3)
        np.testing.assert_allclose(logical_grad(layer), gW, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(storage(layer, "gb"), gb, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("update", ["dense", "sparse"])
@pytest.mark.parametrize("layouts", LAYOUTS[:2])
def test_adam_matches_oracle_over_steps(update, layouts):
    ds, net = build(layouts, update)
    cfg = net.config
    batches = [np.arange(0, 8), np.arange(8, 12), np.arange(12, 24)]
    for t, rows in enumerate(batches, start=1):
        before = {(l.index, k): storage(l, k) for l in net.layers for k in ("W", "mW", "vW", "b", "mb", "vb")}
        run_batch(net, ds, rows)
        grads = {(l.index, k): storage(l, k) for l in net.layers for k in ("gW", "gb")}
        net.step += 1
        net._adam_step()
        feats = np.zeros(ds.n_features, bool)
        for r in rows:
            feats[ds.indices[ds.indptr[r]:ds.indptr[r + 1]]] = True
        for l in net.layers:
            # rows of storage that received gradient in this batch
            if update == "dense":
                mask = None
            elif l.index == 0 and l.layout == "transposed":
                mask = feats
            else:
                mask = None  # dense input or all outputs active: every row touched
            w, m, v = oracle.adam(before[l.index, "W"], before[l.index, "mW"], before[l.index, "vW"],
                                  grads[l.index, "gW"], t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, rows=mask)
            np.testing.assert_allclose(storage(l, "W"), w, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(storage(l, "mW"), m, rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(storage(l, "vW"), v, rtol=1e-5, atol=1e-12)
            wb, mb, vb = oracle.adam(before[l.index, "b"], before[l.index, "mb"], before[l.index, "vb"],
                                     grads[l.index, "gb"], t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps)
            np.testing.assert_allclose(storage(l, "b"), wb, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(storage(l, "mb"), mb, rtol=1e-5, atol=1e-9)
            # gradients are consumed
            assert not np.any(l.arrays["gW"]) and not np.any(l.arrays["gb"])
            if mask is not None:
                # untouched rows: no movement at all in sparse mode
                np.testing.assert_array_equal(storage(l, "W")[~mask], before[l.index, "W"][~mask])
                np.testing.assert_array_equal(storage(l, "mW")[~mask], before[l.index, "mW"][~mask])


def test_sparse_and_dense_updates_differ_only_off_batch():
    """After one batch, sparse and dense Adam agree on touched input rows and
    differ on rows whose momentum moves without gradient (from step 2 on)."""
    ds, a = build(LAYOUTS[0], "sparse")
    _, b = build(LAYOUTS[0], "dense")
    for net in (a, b):
        for rows in (np.arange(0, 8), np.arange(8, 16)):
            run_batch(net, ds, rows)
            net.step += 1
            net._adam_step()
    first = np.zeros(ds.n_features, bool)
    second = np.zeros(ds.n_features, bool)
    for r in range(0, 8):
        first[ds.indices[ds.indptr[r]:ds.indptr[r + 1]]] = True
    for r in range(8, 16):
        second[ds.indices[ds.indptr[r]:ds.indptr[r + 1]]] = True
    only_first = first & ~second
    Wa, Wb = storage(a.layers[0], "W"), storage(b.layers[0], "W")
    # rows touched only in batch 1: dense Adam keeps moving them in batch 2
    assert only_first.any()
    assert np.all(np.abs(Wa[only_first] - Wb[only_first]).max(axis=1) > 0)
    # rows touched in batch 2: same update
    np.testing.assert_allclose(Wa[second & ~first], Wb[second & ~first], rtol=1e-6)
