"""Checkpoints: round trip, exact continuation, and clear errors for bad files."""

import os

import numpy as np
import pytest

from workbench import Config, Network, synthetic
from workbench.checkpoint import CheckpointError, read_header
from workbench.config import preset_hyperparams


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate("tiny", "train"), synthetic.generate("tiny", "test")


def make(ds, **kw):
    return Network(Config(n_features=ds.n_features, n_labels=ds.n_labels,
                          **{**preset_hyperparams("tiny"), "deterministic": True, **kw}))


def test_round_trip_preserves_predictions_and_state(tiny, tmp_path):
    train, test = tiny
    net = make(train)
    net.fit(train, epochs=2)
    path = tmp_path / "model.slide"
    net.save(path)
    back = Network.load(path)
    assert back.config == net.config
    for k, v in net.state_arrays().items():
        np.testing.assert_array_equal(v, back.state_arrays()[k], err_msg=k)
    np.testing.assert_array_equal(net.predict(test), back.predict(test))
    np.testing.assert_array_equal(net.predict(test, mode="lsh"), back.predict(test, mode="lsh"))
    assert back.samples_seen == net.samples_seen and back.step == net.step


def test_resumed_training_equals_uninterrupted(tiny, tmp_path):
    train, _ = tiny
    straight = make(train, rehash=700, rebuild=2100)
    straight.fit(train, epochs=3)
    first = make(train, rehash=700, rebuild=2100)
    first.fit(train, epochs=1)
    first.fit(train, max_samples=512)  # stop mid-epoch, on a batch boundary
    path = tmp_path / "mid.slide"
    first.save(path)
    resumed = Network.load(path)
    resumed.fit(train, max_samples=3 * len(train) - len(train) - 512)
    for k, v in straight.state_arrays().items():
        np.testing.assert_array_equal(v, resumed.state_arrays()[k], err_msg=k)


def test_load_with_other_threads(tiny, tmp_path):
    train, test = tiny
    net = make(train)
    net.fit(train, epochs=1)
    net.save(tmp_path / "m")
    back = Network.load(tmp_path / "m", overrides={"threads": 2, "deterministic": False})
    assert back.threads == 2
    np.testing.assert_array_equal(net.predict(test), back.predict(test))
    with pytest.raises(CheckpointError, match="cannot be changed"):
        Network.load(tmp_path / "m", overrides={"K": 3})


@pytest.fixture()
def saved(tiny, tmp_path):
    train, _ = tiny
    net = make(train)
    net.fit(train, max_samples=256)
    path = tmp_path / "good.slide"
    net.save(path)
    return path


def test_corrupted_checkpoint_is_detected(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        Network.load(saved)


def test_truncated_checkpoint_is_detected(saved):
    data = saved.read_bytes()
    for cut in (10, 200, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|magic|corrupt"):
            Network.load(saved)


def test_foreign_and_empty_files_are_rejected(tmp_path):
    for name, content in (("empty", b""), ("text", b"hello world\n" * 10), ("npy", b"\x93NUMPY" + b"\0" * 100)):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a slide-workbench checkpoint"):
            Network.load(p)
    with pytest.raises(CheckpointError, match="cannot open"):
        Network.load(tmp_path / "missing")


def test_future_format_version_is_rejected(saved):
    data = bytearray(saved.read_bytes())
    data[8] = 99
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="version 99"):
        read_header(saved)


def test_failed_save_leaves_the_existing_checkpoint(tiny, saved, monkeypatch):
    train, _ = tiny
    before = saved.read_bytes()
    net = make(train)
    import workbench.checkpoint as ck

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", broken)
    with pytest.raises(OSError):
        net.save(saved)
    assert saved.read_bytes() == before
    leftovers = [p for p in os.listdir(saved.parent) if p.startswith(".tmp-")]
    assert leftovers == []
