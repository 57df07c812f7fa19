"""The label-tree peer (napkinXC's PLT behind the Network-like API): it
trains, predicts valid labels, learns far above the label prior, and runs
under `compare` as the engine 'plt'."""

import json
import subprocess
import sys

import numpy as np
import pytest

from workbench import Config, peers, synthetic

pytestmark = pytest.mark.skipif(not peers.available(), reason="napkinXC is an optional extra: pip install -e '.[peers]'")


def test_label_tree_learns_and_predicts_valid_labels():
    train, test = synthetic.generate("small", "train", n=4000), synthetic.generate("small", "test", n=500)
    cfg = Config(n_features=train.n_features, n_labels=train.n_labels, threads=1)
    tree = peers.LabelTree(cfg)
    with pytest.raises(RuntimeError, match="fit"):
        tree.predict(test)
    s = tree.fit(train, max_samples=3000)
    assert s["samples"] == 3000 and tree.samples_seen == 3000
    top = tree.predict(test, 5)
    assert top.shape == (len(test), 5)
    assert ((top >= -1) & (top < train.n_labels)).all()
    ev = tree.evaluate(test, max_samples=400)
    # the most frequent training label as every prediction: the prior P@1
    counts = np.bincount(train.labels, minlength=train.n_labels)
    prior = np.mean([int(counts.argmax()) in set(test.labels[test.label_indptr[i]:test.label_indptr[i + 1]])
                     for i in range(400)])
    assert ev["n"] == 400 and ev["p_at_1"] > max(0.3, 5 * prior), (ev, prior)


def test_compare_runs_the_tree_beside_slide(tmp_path):
    r = subprocess.run([sys.executable, "-m", "workbench", "compare", "--preset", "tiny", "--methods", "slide,plt",
                        "--samples", "1500", "--points", "2", "--eval-samples", "200", "--threads", "1",
                        "--peer-samples", "1200", "--out", str(tmp_path / "c"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    tree = [b for b in res["baselines"] if b["engine"] == "plt"]
    assert len(tree) == 1 and len(tree[0]["curve"]) == 1 and tree[0]["samples"] == 1200  # --peer-samples
    assert [r["samples"] for r in res["records"]] == [1500]
    assert tree[0]["p_at_1"] > tree[0]["majority_p_at_1"]
    assert res["grid"]["peer_samples"] == 1200
    facts = res["data_facts"]
    assert 0 <= facts["prior_p_at_1"] < facts["knn"]["p_at_1"] <= 1
