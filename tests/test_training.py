"""Training end to end on generated data: it learns, it is deterministic in
deterministic mode, every sampling strategy / hash family / layer mode runs."""

import numpy as np
import pytest

from workbench import Config, Network, synthetic
from workbench.config import preset_hyperparams


@pytest.fixture(scope="module")
def small():
    return synthetic.generate("small", "train"), synthetic.generate("small", "test")


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate("tiny", "train"), synthetic.generate("tiny", "test")


def make(ds, preset, **kw):
    d = {**preset_hyperparams(preset), **kw}
    return Network(Config(n_features=ds.n_features, n_labels=ds.n_labels, **d))


def all_state(net):
    return {k: v.copy() for k, v in net.state_arrays().items()}


def test_learns_far_above_the_most_frequent_label(small):
    """`small` preset (5,000 features, 2,000 labels): the most frequent label is
    on about 3% of test points (P@1 of always predicting it); after 3 epochs
    SLIDE reaches P@1 of about 0.65 (dense inference). Measured over 10 runs
    (2 threads; avx512 and avx2 kernels): dense 0.659-0.676, LSH 0.438-0.463,
    loss 4.03 -> 2.63."""
    train, test = small
    baseline = test.stats()["top_label_freq"]
    net = make(train, "small", threads=2, seed=1)
    for _ in range(3):
        net.fit(train, epochs=1)
    ev = net.evaluate(test)
    lsh = net.evaluate(test, mode="lsh")
    assert baseline < 0.05
    assert ev["p_at_1"] > 0.45 and ev["p_at_1"] > 10 * baseline, (ev, baseline)
    assert lsh["p_at_1"] > 0.3, lsh
    assert ev["p_at_5"] > baseline
    # loss falls epoch over epoch
    losses = [h["mean_loss"] for h in net.history]
    assert losses[0] > losses[-1]


def test_deterministic_mode_gives_identical_weights(tiny):
    train, _ = tiny
    runs = []
    for _ in range(2):
        net = make(train, "tiny", deterministic=True, seed=7, rehash=500, rebuild=1500)
        net.fit(train, epochs=2)
        runs.append(all_state(net))
        assert net.rebuilds >= 2 and net.rehashes >= 5
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)


def test_seed_changes_the_run(tiny):
    train, _ = tiny
    a = make(train, "tiny", deterministic=True, seed=1)
    b = make(train, "tiny", deterministic=True, seed=2)
    a.fit(train, epochs=1)
    b.fit(train, epochs=1)
    assert not np.array_equal(a.layers[-1].W, b.layers[-1].W)


def test_two_threads_train_without_nan(small):
    """Measured over 10 runs: P@1 0.587-0.595, loss 4.03 -> 3.28-3.29."""
    train, test = small
    net = make(train, "small", threads=2, seed=3)
    s1 = net.fit(train, epochs=1)
    s2 = net.fit(train, epochs=1)
    for k, v in net.state_arrays().items():
        if v.dtype.kind == "f":
            assert np.isfinite(v).all(), k
    assert s2["mean_loss"] < s1["mean_loss"]
    assert net.evaluate(test)["p_at_1"] > 0.3


@pytest.mark.parametrize("sampling,check", [
    ("vanilla", lambda a, c: a >= 20),
    ("topk", lambda a, c: a <= 12 + 6),  # top_k plus the forced labels (at most 6 here)
    ("threshold", lambda a, c: a >= 20),
    ("uniform", lambda a, c: c == 0 and 20 <= a <= 26),
    ("exact", lambda a, c: a <= 12 + 6 and c == 0),
])
def test_sampling_strategies(tiny, sampling, check):
    """P@1 / most-frequent-label rate over seeds 0-9: 2.5-6.3 (topk lowest); asserted > 1."""
    train, test = tiny
    net = make(train, "tiny", deterministic=True, sampling=sampling, top_k=12,
               min_active=20 if sampling not in ("topk", "exact") else 0, threshold=2)
    s = net.fit(train, epochs=4)
    active, cand = s["lsh"]["mean_active"][-1], s["lsh"]["mean_candidates"][-1]
    assert check(active, cand), (active, cand)
    assert net.evaluate(test)["p_at_1"] > test.stats()["top_label_freq"]


# The deterministic tests below give the same P@1 every run and with scalar, avx2 and avx512 kernels alike
# (measured). Their epochs put P@1 past the steep part of `tiny`'s learning curve, where a small change of
# the trajectory (another seed) moves it little: their margins are stated against the spread over seeds 0-9.


@pytest.mark.parametrize("family", ["dwta", "wta", "srp", "minhash"])
@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
def test_every_hash_family_and_policy_trains(tiny, family, policy):
    """6 epochs: P@1 / most-frequent-label rate 4.5-6.4 over seeds 0-9 for every family (3 epochs, as
    before: 1.5-4.8, under 1.5 for minhash at one seed); asserted > 3."""
    train, test = tiny
    net = make(train, "tiny", deterministic=True, hash_family=family, bucket_policy=policy, K=2 if family != "srp" else 4)
    net.fit(train, epochs=6)
    assert net.evaluate(test)["p_at_1"] > 3 * test.stats()["top_label_freq"]


@pytest.mark.parametrize("modes,layouts,hidden", [
    (("lsh", "lsh"), ("transposed", "rowmajor"), (64,)),
    (("dense", "lsh", "lsh"), ("transposed", "rowmajor", "rowmajor"), (64, 48)),
    (("dense", "dense", "lsh"), ("rowmajor", "transposed", "transposed"), (64, 32)),
    (("dense", "dense"), ("transposed", "rowmajor"), (64,)),
])
def test_layer_modes_and_layouts_train(tiny, modes, layouts, hidden):
    """6 epochs: P@1 / most-frequent-label rate 3.4-4.9 over seeds 0-9 for lsh/lsh (the slowest), 4.9-6.3 for
    the others (4 epochs, as before: lsh/lsh 0.6-3.1); asserted > 2."""
    train, test = tiny
    # two hidden layers need a larger initial scale than the reference's 0.01 to learn in a few epochs
    net = make(train, "tiny", deterministic=True, layer_modes=modes, layouts=layouts, hidden=hidden,
               hash_family="minhash" if modes[0] == "lsh" else "dwta", init_std=0.1 if len(hidden) > 1 else 0.01)
    net.fit(train, epochs=6)
    assert net.evaluate(test)["p_at_1"] > 2 * test.stats()["top_label_freq"]


def test_dense_update_mode_learns_too(tiny):
    """P@1 / most-frequent-label rate 3.2-4.6 over seeds 0-9 (3.5 at the test's seed 0); asserted > 2."""
    train, test = tiny
    net = make(train, "tiny", deterministic=True, update="dense")
    net.fit(train, epochs=4)
    assert net.evaluate(test)["p_at_1"] > 2 * test.stats()["top_label_freq"]


def test_compat_mode_trains_and_changes_bucket_ids(tiny):
    train, test = tiny

    def highest_used_bucket(net):
        off = net.layers[-1].tables["offsets"].reshape(net.config.L, -1)
        sizes = np.diff(off.astype(np.int64), axis=1)
        return max(np.flatnonzero(row).max() for row in sizes)

    a = make(train, "tiny", deterministic=True, compat=True, K=3, range_pow=9)
    b = make(train, "tiny", deterministic=True, compat=False, K=3, range_pow=9)
    # compat composes 3-bit values with a 2-bit shift: ids stay <= 7 * (1 + 4 + 16) = 147
    assert highest_used_bucket(a) <= 147
    assert highest_used_bucket(b) > 147
    # 6 epochs: P@1 / most-frequent-label rate 5.3-6.2 over seeds 0-9 (3 epochs, as before: 1.4-3.1)
    a.fit(train, epochs=6)
    assert a.evaluate(test)["p_at_1"] > 3 * test.stats()["top_label_freq"]


def test_max_samples_and_resume_mid_epoch(tiny):
    train, _ = tiny
    one = make(train, "tiny", deterministic=True)
    one.fit(train, epochs=1)
    two = make(train, "tiny", deterministic=True)
    s = two.fit(train, max_samples=640)  # a batch boundary (batch 128)
    assert s["samples"] == 640
    two.fit(train, max_samples=len(train) - 640)
    for k, v in one.state_arrays().items():
        np.testing.assert_array_equal(v, two.state_arrays()[k], err_msg=k)


def test_data_that_does_not_fit_is_rejected(tiny):
    train, _ = tiny
    net = Network(Config(n_features=train.n_features - 1, n_labels=train.n_labels, hidden=(8,), K=2, L=2,
                         range_pow=4, min_active=4))
    with pytest.raises(ValueError, match="features"):
        net.fit(train)


def test_data_narrower_than_the_network_is_rejected_naming_both_shapes(tiny):
    """A network wider than its data would train (or score) only part of itself
    without a word, e.g. the default Amazon-670K network on `tiny`."""
    from workbench.network import DataMismatchError

    train, test = tiny
    wide = Network(Config(n_features=5000, n_labels=2000, hidden=(8,), K=2, L=2, range_pow=4, min_active=4))
    want = r"data has 500 features and 100 labels but the network has 5,000 features and 2,000 labels"
    for call in (lambda: wide.fit(train, max_samples=128), lambda: wide.evaluate(test), lambda: wide.predict(test),
                 lambda: wide.logits(test)):
        with pytest.raises(DataMismatchError, match=want):
            call()
    assert wide.samples_seen == 0
    # the explicit way: the same points declared over the network's space
    wider = train.widened(5000, 2000)
    assert (wider.n_features, wider.n_labels, len(wider)) == (5000, 2000, len(train))
    assert wider.indices is train.indices and train.widened() is train
    assert wide.fit(wider, max_samples=128)["samples"] == 128
    with pytest.raises(ValueError, match="cannot narrow"):
        train.widened(100, 100)


@pytest.mark.parametrize("update", ["sparse", "dense"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16act"])
def test_batched_strategy_equals_hogwild_in_deterministic_mode(small, update, precision):
    """With one thread both strategies compute the same batch gradient and
    the same Adam step; only the fp32 summation order differs. In bf16 the
    rounding of activations to bf16 turns those last-bit differences into
    occasional one-ulp (2^-8) changes of a product, hence the wider bound."""
    train, _ = small
    head = train.head(1500)
    nets = {}
    for strategy in ("hogwild", "batched"):
        net = make(head, "small", deterministic=True, strategy=strategy, update=update, precision=precision)
        assert net.strategy == strategy
        net.fit(head, max_samples=1024)
        nets[strategy] = net.state_arrays()
    for k, a in nets["hogwild"].items():
        b = nets["batched"][k]
        if a.dtype.kind == "f":
            tol = 1e-5 if precision == "fp32" else 1e-3
            np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1e-3, float(np.abs(a).max())), err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_row_update_changes_nothing(small, precision):
    """fuse_update (row_adam) against bwd_rows then adam: the same arithmetic
    in the same order, so bit-identical weights after several batches."""
    train, _ = small
    head = train.head(1500)
    nets = {}
    for fuse in (True, False):
        net = make(head, "small", deterministic=True, strategy="batched", precision=precision, fuse_update=fuse)
        net.fit(head, max_samples=768)
        nets[fuse] = net.state_arrays()
    for k, a in nets[True].items():
        np.testing.assert_array_equal(a, nets[False][k], err_msg=k)


@pytest.mark.parametrize("cap", [3, 100000])
def test_batch_labels_join_every_active_set(tiny, cap):
    """With uniform sampling and no top-up a sample's active set is its own
    labels; batch_labels adds the batch's distinct labels (the first `cap` in
    batch order) to each, so the index holds exactly that many entries."""
    train, _ = tiny
    B = 32
    net = make(train, "tiny", deterministic=True, strategy="batched", sampling="uniform", min_active=0,
               batch_size=B, batch_labels=cap)
    net.fit(train, max_samples=B)
    order = np.random.default_rng([net.config.seed, 0x0D0E, 0]).permutation(len(train))[:B]
    per = [train.labels[train.label_indptr[s]:train.label_indptr[s + 1]] for s in order]
    first = []
    for lab in per:
        for y in lab:
            if y not in first:
                first.append(int(y))
    first = set(first[:cap])
    want = sum(len(set(lab.tolist()) | first) for lab in per if len(lab))
    assert net._engine.union_stats()["entries"] == want
    assert net._engine.union_stats()["union_rows"] == len(set(np.concatenate(per).tolist()))


def test_batch_labels_need_the_batched_strategy(tiny):
    train, _ = tiny
    with pytest.raises(ValueError, match="batch_labels"):
        make(train, "tiny", strategy="hogwild", batch_labels=64)
    with pytest.raises(ValueError, match="batch_labels"):
        make(train, "tiny", batch_labels=-1)


def test_batch_labels_learn(small):
    """In-batch label negatives on `small`: learns at least as well as the
    reference sampling after the same samples (both far above the baseline).
    Measured over 10 runs: 0.669-0.674 with, 0.579-0.594 without (baseline 0.03)."""
    train, test = small
    baseline = test.stats()["top_label_freq"]
    p = {}
    for bl in (0, 512):
        net = make(train, "small", threads=2, seed=1, batch_labels=bl)
        net.fit(train, epochs=2)
        p[bl] = net.evaluate(test)["p_at_1"]
    assert p[512] > 10 * baseline and p[512] > p[0] - 0.05, (p, baseline)


def test_auto_strategy_falls_back_where_batching_does_not_apply(tiny):
    train, _ = tiny
    assert make(train, "tiny").strategy == "batched"
    assert make(train, "tiny", layer_modes=("dense", "dense")).strategy == "hogwild"
    assert make(train, "tiny", layouts=("transposed", "transposed")).strategy == "hogwild"
    assert make(train, "tiny", layer_modes=("lsh", "lsh")).strategy == "hogwild"
    with pytest.raises(ValueError, match="batched"):
        make(train, "tiny", layer_modes=("dense", "dense"), strategy="batched")
