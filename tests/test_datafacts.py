"""The data set's reference points: the label prior and the k-NN P@1, against
a brute-force numpy oracle (dense cosine matrix, the same vote)."""

import numpy as np
import pytest

from workbench import datafacts, synthetic


def dense(d):
    X = np.zeros((len(d), d.n_features))
    for r in range(len(d)):
        a, e = d.indptr[r], d.indptr[r + 1]
        X[r, d.indices[a:e]] = d.values[a:e]
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1)


def labels(d, r):
    return d.labels[d.label_indptr[r]:d.label_indptr[r + 1]]


def oracle(train, test, k, samples):
    S = dense(test) @ dense(train).T
    rows = np.flatnonzero(np.diff(test.label_indptr) > 0)[:samples]
    p1 = p5 = 0.0
    for r in rows:
        sim = S[r]
        nn = np.argsort(-sim, kind="stable")[:k]
        votes = {}
        for j in nn:
            if sim[j] <= 0:
                continue
            for lab in labels(train, j):
                votes[int(lab)] = votes.get(int(lab), 0.0) + sim[j]
        ranked = sorted(votes, key=lambda x: (-votes[x], x))[:5]
        truth = set(labels(test, r).tolist())
        p1 += bool(ranked) and ranked[0] in truth
        p5 += sum(x in truth for x in ranked) / 5
    return p1 / len(rows), p5 / len(rows)


@pytest.mark.parametrize("k", [1, 10])
def test_knn_matches_a_brute_force_oracle(k):
    train, test = synthetic.generate("tiny", "train", n=600), synthetic.generate("tiny", "test", n=150)
    got = datafacts.knn_p_at_1(train, test, k=k, samples=120)
    want = oracle(train, test, k, 120)
    assert got["n"] == 120
    assert got["p_at_1"] == pytest.approx(want[0], abs=1e-9) and got["p_at_5"] == pytest.approx(want[1], abs=1e-9)
    # the inputs carry the labels: the neighbours find them far more often than the prior
    assert got["p_at_1"] > 3 * datafacts.prior_p_at_1(train, test, 120)


def test_prior_is_the_most_frequent_training_label():
    train, test = synthetic.generate("small", "train", n=3000), synthetic.generate("small", "test", n=400)
    top = np.bincount(train.labels, minlength=train.n_labels).argmax()
    rows = np.flatnonzero(np.diff(test.label_indptr) > 0)[:300]
    assert datafacts.prior_p_at_1(train, test, 300) == np.mean([top in labels(test, r) for r in rows])
    f = datafacts.facts(train, test, samples=300)
    assert f["labels_in_train"] <= train.n_labels and f["knn"]["n"] == 300


def test_knn_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="features"):
        datafacts.knn_p_at_1(synthetic.generate("tiny", "train", n=50), synthetic.generate("small", "test", n=50))
