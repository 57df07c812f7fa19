"""Tests for the synthetic data generator: presets, determinism, statistics, learnability."""

import numpy as np
import pytest

from workbench.data import Dataset, dumps_xc, loads_xc
from workbench.synthetic import CHUNK, PRESETS, Preset, generate, get_preset


@pytest.fixture(scope="module")
def tiny():
    return generate("tiny", "train", seed=0), generate("tiny", "test", seed=0)


@pytest.fixture(scope="module")
def small_train():
    return generate("small", "train", seed=0)


def test_presets_match_the_real_data_sets():
    a = get_preset("amazon670k")
    assert (a.n_features, a.n_labels, a.n_train, a.n_test) == (135_909, 670_091, 490_449, 153_025)
    assert a.mean_nnz == pytest.approx(76, abs=1) and a.mean_labels == pytest.approx(5.45, abs=0.01)
    d = get_preset("delicious200k")
    assert (d.n_features, d.n_labels, d.n_train, d.n_test) == (782_585, 205_443, 196_606, 100_095)
    assert d.mean_nnz == pytest.approx(301, abs=1) and d.mean_labels == pytest.approx(75.5, abs=0.1)
    assert {"medium", "small", "tiny"} <= set(PRESETS)
    assert get_preset(a) is a
    with pytest.raises(ValueError, match="amazon670k.*tiny"):
        get_preset("amazon")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        generate("tiny", "valid")
    with pytest.raises(ValueError, match="seed"):
        generate("tiny", seed=-1)
    with pytest.raises(ValueError, match="non-negative"):
        generate("tiny", n=-5)


def test_shape_and_provenance(tiny):
    train, test = tiny
    assert isinstance(train, Dataset)
    assert (len(train), len(test)) == (2000, 500)
    assert (train.n_features, train.n_labels) == (500, 100)
    assert train.source == "synthetic:tiny:seed=0:split=train" and train.name == "tiny-train"
    assert generate("tiny", n=10).source == "synthetic:tiny:seed=0:split=train:n=10"
    assert len(generate("tiny", n=0)) == 0


def test_deterministic_for_a_seed(tiny):
    again = generate("tiny", "train", seed=0)
    assert again.equals(tiny[0])
    assert not generate("tiny", "train", seed=1).equals(tiny[0])


def test_prefix_stable(small_train):
    for n in (1, 1000, CHUNK, CHUNK + 17, 3 * CHUNK - 1):
        assert generate("small", "train", seed=0, n=n).equals(small_train.head(n)), n
    # past the preset's size the stream simply continues
    longer = generate("tiny", "train", seed=0, n=2500)
    assert longer.head(2000).equals(generate("tiny", "train", seed=0))


def test_train_and_test_are_different_points_from_one_distribution(small_train):
    test = generate("small", "test", seed=0)
    assert not test.equals(small_train.head(len(test)))
    rows = lambda d: {(d.indices[d.indptr[i]:d.indptr[i + 1]].tobytes()) for i in range(len(d))}
    assert len(rows(test) & rows(small_train)) == 0
    # same structure: label frequencies agree between the splits
    train_freq = np.bincount(small_train.labels, minlength=small_train.n_labels) / len(small_train)
    test_freq = np.bincount(test.labels, minlength=test.n_labels) / len(test)
    assert np.corrcoef(train_freq, test_freq)[0, 1] > 0.9


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_statistics_near_the_preset(name, tiny, small_train):
    data = tiny[0] if name == "tiny" else small_train
    preset = get_preset(name)
    s = data.stats()
    assert s["mean_nnz"] == pytest.approx(preset.mean_nnz, rel=0.08)
    assert s["mean_labels"] == pytest.approx(preset.mean_labels, rel=0.05)
    nnz = np.diff(data.indptr)
    n_labels = np.diff(data.label_indptr)
    assert nnz.std() > 0.3 * nnz.mean()  # varies around the mean
    assert n_labels.max() >= 3 * preset.mean_labels and n_labels.min() >= 1
    # values: positive, tf-idf-like spread, every point L2-normalised
    assert data.values.min() > 0
    norms = np.sqrt(np.add.reduceat(data.values.astype(np.float64) ** 2, data.indptr[:-1]))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert np.percentile(data.values, 90) > 2 * np.percentile(data.values, 10)
    # feature popularity skewed: the top 10% of features hold far more than 10% of the non-zeros
    feature_counts = np.sort(np.bincount(data.indices, minlength=data.n_features))[::-1]
    assert feature_counts[: data.n_features // 10].sum() > 0.3 * feature_counts.sum()


def test_label_frequencies_follow_a_power_law(small_train):
    counts = np.sort(np.bincount(small_train.labels, minlength=small_train.n_labels))[::-1]
    s = small_train.stats()
    assert s["top_label_freq"] < 0.1
    assert counts[: len(counts) // 10].sum() > 0.35 * counts.sum()  # a few labels are frequent
    assert np.mean(counts < counts.mean()) > 0.6  # most labels are rarer than the mean
    # roughly linear on a log-log rank plot over the middle ranks
    ranks = np.arange(10, 1000)
    slope = np.polyfit(np.log(ranks), np.log(counts[ranks] + 0.5), 1)[0]
    assert -2.0 < slope < -0.4


def test_amazon_shape_at_scale():
    d = generate("amazon670k", "train", seed=0, n=20_000)
    s = d.stats()
    assert s["mean_nnz"] == pytest.approx(75.68, rel=0.06)
    assert s["mean_labels"] == pytest.approx(5.45, rel=0.05)
    assert s["top_label_freq"] < 0.02  # the most-frequent-label baseline is low
    assert s["labels_seen_once"] > 0.5 * s["distinct_labels"]  # most used labels are rare
    assert s["distinct_labels"] < 0.25 * d.n_labels  # and most labels are unused in a small sample


def _dense(d):
    x = np.zeros((len(d), d.n_features), dtype=np.float32)
    x[np.repeat(np.arange(len(d)), np.diff(d.indptr)), d.indices] = d.values
    y = np.zeros((len(d), d.n_labels), dtype=np.float32)
    y[np.repeat(np.arange(len(d)), np.diff(d.label_indptr)), d.labels] = 1
    return x, y


def _precision_at_1(scores, y):
    return float(y[np.arange(len(y)), scores.argmax(axis=1)].mean())


def test_learnable_by_linear_models(tiny):
    train, test = tiny
    x_train, y_train = _dense(train)
    x_test, y_test = _dense(test)
    baseline = float(y_test[:, y_train.sum(axis=0).argmax()].mean())
    assert baseline < 0.2

    # nearest centroid (a linear scorer built in one pass)
    centroids = y_train.T @ x_train
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    p1_centroid = _precision_at_1(x_test @ centroids.T, y_test)

    # a few epochs of full-batch softmax regression on the label distribution
    w = np.zeros((train.n_features, train.n_labels), dtype=np.float32)
    target = y_train / y_train.sum(axis=1, keepdims=True)
    for _ in range(40):
        z = x_train @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        w -= 20.0 * x_train.T @ (p - target) / len(x_train)
    p1_softmax = _precision_at_1(x_test @ w, y_test)

    assert p1_centroid > max(0.6, 4 * baseline), (p1_centroid, baseline)
    assert p1_softmax > max(0.5, 3 * baseline), (p1_softmax, baseline)


def test_round_trips_through_text(tiny):
    train = tiny[0]
    assert loads_xc(dumps_xc(train)).equals(train)


def test_custom_preset():
    p = Preset("mine", n_features=300, n_labels=40, n_train=100, n_test=10, mean_nnz=12, mean_labels=2,
               cluster_size=4, label_words=5, topic_words=6)
    d = generate(p, "test")
    assert len(d) == 10 and d.n_features == 300 and d.source.startswith("synthetic:mine:")
