"""Resource limits, interruption and resume, numerical health, HOGWILD soak,
cross-variant checkpoints."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from workbench import Config, Network, synthetic, variants
from workbench.config import preset_hyperparams
from workbench.memory import peak_rss_bytes
from workbench.network import NumericalError
from workbench.resources import MemoryLimitError, check, estimate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "workbench", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def small():
    return synthetic.generate("small", "train"), synthetic.generate("small", "test")


def make(ds, preset="small", **kw):
    return Network(Config(n_features=ds.n_features, n_labels=ds.n_labels, **{**preset_hyperparams(preset), **kw}))


# ---- resource limits ----------------------------------------------------------------------

def test_estimate_tracks_measured_memory():
    """The estimate of a 100k-output network is within 25% of the RSS it adds."""
    code = ("import numpy as np; from workbench import Config, Network, memory, resources;"
            "cfg = Config(n_features=20000, n_labels=100000, K=5, L=20, range_pow=14, threads=2);"
            "r0 = memory.peak_rss_bytes(); net = Network(cfg);"
            "[a.fill(1) for a in net.state_arrays().values()]; [l.arrays['gW'].fill(0) for l in net.layers];"
            "print(resources.estimate(cfg)['total_bytes'], memory.peak_rss_bytes() - r0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    est, used = map(int, out.stdout.split())
    assert 0.75 * used < est < 1.25 * used, (est, used)


def test_config_that_cannot_fit_is_refused_before_allocating():
    cfg = Config(n_features=135_909, n_labels=670_091, hidden=(4096,))
    est = estimate(cfg)
    assert est["total_bytes"] > 40 * 2**30
    rss = peak_rss_bytes()
    with pytest.raises(MemoryLimitError) as e:
        Network(cfg)
    msg = str(e.value)
    assert "GiB" in msg and "available" in msg and "layer1.weights" in msg and "reduce" in msg
    assert peak_rss_bytes() - rss < 100 * 2**20
    with pytest.raises(MemoryLimitError):
        check(Config(n_features=1000, n_labels=1000, hidden=(32,), K=2, L=2, range_pow=4), available=1000)


def test_dry_run_prints_the_estimate():
    p = cli("train", "--dry-run", "--hidden", 4096)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "does NOT fit" in out and "layer1.weights+adam+grad" in out
    p = cli("train", "--dry-run", "--preset", "small")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "fits in available memory" in out


# ---- interruption and resume -------------------------------------------------------------------

TRAIN = ["train", "--preset", "small", "--epochs", 4, "--deterministic", "--no-eval", "--rehash", 3000,
         "--rebuild", 9000]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("u") / "straight.slide"
    p = cli(*TRAIN, "--quiet", "--save", path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return Network.load(path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, uninterrupted, sig):
    path = tmp_path / "run.slide"
    p = cli(*TRAIN, "--save", path)  # progress lines on stderr tell us training started
    t0 = time.time()
    while time.time() - t0 < 120:
        line = p.stderr.readline()
        if line.startswith("train ["):
            break
    time.sleep(0.3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 128 + sig, err
    assert f"checkpoint written to {path}" in err and "--resume" in err
    mid = Network.load(path)
    assert 0 < mid.samples_seen < uninterrupted.samples_seen
    p = cli(*TRAIN, "--quiet", "--save", path, "--resume", path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    done = Network.load(path)
    assert done.samples_seen == uninterrupted.samples_seen
    for k, v in uninterrupted.state_arrays().items():
        np.testing.assert_array_equal(v, done.state_arrays()[k], err_msg=k)


def test_periodic_checkpoints(tmp_path, small):
    path = tmp_path / "p.slide"
    p = cli("train", "--preset", "small", "--max-samples", 5000, "--no-eval", "--quiet", "--save", path,
            "--checkpoint-every", 2000)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert Network.load(path).samples_seen == 5000


# ---- numerical health ----------------------------------------------------------------------------

def test_nan_in_weights_stops_training_naming_step_and_layer(small):
    train, _ = small
    net = make(train, deterministic=True)
    net.fit(train, max_samples=512)
    net.layers[1].arrays["W"][7, 3] = np.nan
    with pytest.raises(NumericalError, match=r"step \d+.*layer 1: W"):
        net.fit(train, max_samples=4096)


def test_nan_run_keeps_the_last_good_checkpoint(tmp_path, small):
    train, _ = small
    net = make(train)
    net.fit(train, max_samples=512)
    good = tmp_path / "good.slide"
    net.save(good)
    before = good.read_bytes()
    bad = tmp_path / "bad.slide"
    net.layers[0].arrays["W"][:, :] = np.inf
    net.save(bad)
    p = cli("train", "--preset", "small", "--max-samples", 4000, "--no-eval", "--quiet", "--resume", bad, "--save", good)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 3, err
    assert "non-finite" in err and "layer 0" in err and "Traceback" not in err
    assert good.read_bytes() == before


# ---- HOGWILD soak ---------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["batched", "hogwild"])
def test_two_thread_soak_tracks_the_deterministic_run(small, strategy):
    """Several epochs with 2 threads (races by design) against 1 thread: no
    NaN, and the learning curve (loss, P@1) stays within tolerance."""
    train, test = small
    curves = {}
    for name, kw in (("det", {"deterministic": True}), ("hog", {"threads": 2})):
        net = make(train, strategy=strategy, seed=4, **kw)
        curve = []
        for _ in range(4):
            s = net.fit(train, epochs=1)
            curve.append((s["mean_loss"], net.evaluate(test)["p_at_1"]))
        assert not net.nonfinite_layers()
        curves[name] = curve
    for (l1, p1), (l2, p2) in zip(curves["det"], curves["hog"]):
        assert abs(l1 - l2) < 0.05 * l1 and abs(p1 - p2) < 0.05, curves
    assert curves["hog"][-1][1] > curves["hog"][0][1]


# ---- cross-variant checkpoints -----------------------------------------------------------------------

LOAD_AS = [{"precision": "fp32", "isa": "scalar"}, {"precision": "bf16"}, {"precision": "bf16act"},
           {"precision": "bf16", "isa": "scalar"}, {"precision": "fp32", "isa": "avx512@emu"},
           {"precision": "bf16", "isa": "avx512_bf16@emu"}]


@pytest.mark.parametrize("written_as", [{"precision": "fp32"}, {"precision": "bf16"}])
def test_checkpoints_load_under_any_variant(tmp_path, small, written_as):
    train, test = small
    net = make(train, deterministic=True, **written_as)
    net.fit(train, epochs=2)
    path = tmp_path / "x.slide"
    net.save(path)
    ref = net.logits(test, rows=np.arange(300))
    ref_top = net.predict(test)[:, 0]
    for over in LOAD_AS:
        if over.get("isa", "auto") not in variants.usable_isas() | {"auto"}:
            continue
        back = Network.load(path, overrides=over)
        got = back.logits(test, rows=np.arange(300))
        # fp32 master weights travel; bf16 forward rounds weights and inputs (2^-8 relative)
        tol = 1e-4 if over["precision"] == "fp32" and written_as["precision"] == "fp32" else 3e-2
        scale = np.abs(ref).max()
        assert np.abs(got - ref).max() <= tol * scale, (over, np.abs(got - ref).max(), scale)
        agree = (back.predict(test)[:, 0] == ref_top).mean()
        assert agree > 0.9, (over, agree)
