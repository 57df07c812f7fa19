"""Checkpoints: round trip, exact continuation, and clear errors for bad files."""

import errno
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from workbench import Config, Network, synthetic
from workbench.checkpoint import CheckpointError, read_header
from workbench.config import preset_hyperparams

from .ckpt_tools import rewrite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# ---- non-finite state, hostile contents, file handling ----------------------------------------------

def test_nonfinite_state_is_never_saved(tiny, saved):
    from workbench.network import NumericalError

    train, _ = tiny
    before = saved.read_bytes()
    net = make(train)
    net.fit(train, max_samples=256)
    net.layers[1].arrays["vW"][3, 2] = np.inf  # an Adam moment only: the weights are still finite
    with pytest.raises(NumericalError, match=r"not saved: non-finite values in layer 1: vW.*unchanged") as e:
        net.save(saved)
    assert str(e.value).startswith(str(saved))
    assert saved.read_bytes() == before
    assert [p for p in os.listdir(saved.parent) if p.startswith(".tmp-")] == []


def test_checkpoint_holding_nan_is_refused_naming_layer_and_array(saved, tmp_path):
    from workbench.checkpoint import NonFiniteCheckpointError
    from workbench.network import NumericalError

    bad = tmp_path / "nan.slide"
    rewrite(saved, bad, lambda h, a: a["layer1.b"].__setitem__(4, np.nan))
    with pytest.raises(NonFiniteCheckpointError, match=r"non-finite values in layer 1: b\b") as e:
        Network.load(bad)
    assert isinstance(e.value, NumericalError) and isinstance(e.value, CheckpointError)


@pytest.mark.parametrize("name,mutate,match", [
    ("table ids at 2^30", lambda h, a: a["layer1.tables.ids"].__setitem__(slice(0, 9), 2**30), "tables.ids"),
    ("hash coordinates at their maximum", lambda h, a: a["layer1.hash.coord_of_slot"].fill(2**31 - 1),
     "coord_of_slot"),
    ("bucket larger than its capacity", lambda h, a: a["layer1.tables.offsets"].__setitem__(
        slice(1, None), np.uint32(10**6)), "tables.offsets"),
    ("negative second moment", lambda h, a: a["layer0.vW"].__setitem__((0, 0), -1.0), "layer0.vW"),
    ("batch counter beyond int32", lambda h, a: h["meta"].__setitem__("batches", 2**31), "batches"),
    ("arrays: garbage", lambda h, a: h.__setitem__("arrays", "garbage"), "'arrays' must be a list"),
    ("a config that describes a huge network", lambda h, a: h["config"].__setitem__("n_labels", 2**31 - 2),
     "layer1.W is \\[100, 64\\], the config implies"),
])
def test_checkpoint_with_recomputed_checksum_is_validated(saved, tmp_path, name, mutate, match):
    """Integrity is not validity: each of these used to reach C (or a traceback)."""
    from .ckpt_tools import pack, read_raw, unpack, write_raw

    header, data = read_raw(saved)
    arrays = unpack(header, data)
    mutate(header, arrays)
    bad = tmp_path / "bad.slide"
    if isinstance(header["arrays"], str):
        write_raw(bad, header, data)
    else:
        write_raw(bad, *pack(header, arrays))
    with pytest.raises(CheckpointError, match=match) as e:
        Network.load(bad)
    assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value)


def test_inference_refuses_nonfinite_weights(saved, tiny):
    from workbench.network import NumericalError

    _, test = tiny
    net = Network.load(saved)
    net.layers[0].arrays["W"][1, 1] = np.nan
    for call in (lambda: net.predict(test), lambda: net.evaluate(test), lambda: net.logits(test, rows=[0])):
        with pytest.raises(NumericalError, match="layer 0: W"):
            call()


def test_save_keeps_the_file_mode(tiny, tmp_path):
    train, _ = tiny
    net = make(train)
    path = tmp_path / "m.slide"
    net.save(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # what open() would have created
    for mode in (0o640, 0o604):
        os.chmod(path, mode)
        net.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_save_failure_names_the_path(tiny, saved, monkeypatch):
    train, _ = tiny
    import workbench.checkpoint as ck

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os, "fsync", full)
    with pytest.raises(OSError) as e:
        make(train).save(saved)
    assert e.value.filename == str(saved) and "No space left on device" in e.value.strerror


_BLOCKED_SAVER = """
import os, sys, time
import workbench.checkpoint as ck
from workbench import Network
net = Network.load(sys.argv[1])
def stuck(fd):
    print("writing", flush=True)
    time.sleep(600)
ck.os.fsync = stuck
net.save(sys.argv[2])
"""


def test_temp_files_of_killed_saves_are_removed_and_live_ones_kept(saved, tmp_path):
    """A writer killed mid-save leaves its temporary file; the next save
    removes it, but never the file of a writer still at work (it holds a lock)."""
    target = tmp_path / "shared.slide"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", _BLOCKED_SAVER, str(saved), str(target)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        temps = lambda: sorted(p for p in os.listdir(tmp_path) if p.startswith(".tmp-shared.slide-"))  # noqa: E731
        (live,) = temps()
        net = Network.load(saved)
        net.save(target)  # a concurrent save: the live writer's file stays
        assert temps() == [live]
        child.kill()
        child.wait(timeout=60)
        assert temps() == [live]  # what kill -9 leaves behind
        net.save(target)
        assert temps() == []
        assert Network.load(target).samples_seen == net.samples_seen
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)


def test_api_misuse_is_a_one_line_error(tiny):
    train, test = tiny
    net = make(train)
    for call, exc, match in [
        (lambda: net.fit("hello"), TypeError, "must be a workbench.Dataset, got str"),
        (lambda: net.fit(train, epochs=float("nan")), ValueError, "epochs must be a finite number"),
        (lambda: net.fit(train, epochs="2"), ValueError, "epochs must be a finite number"),
        (lambda: net.fit(train, max_samples=1.5), ValueError, "max_samples must be an integer"),
        (lambda: net.predict(test, k=0), ValueError, "k must be an integer in"),
        (lambda: net.predict(test, rows=[[0]]), ValueError, "rows must be a 1-D array"),
        (lambda: net.evaluate(None), TypeError, "must be a workbench.Dataset"),
        (lambda: net.evaluate(test, max_samples="x"), ValueError, "max_samples must be an integer"),
    ]:
        with pytest.raises(exc, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_errors_name_a_data_set_without_a_source(tiny):
    from workbench.data import Dataset
    from workbench.network import DataMismatchError

    train, _ = tiny
    net = make(train)
    wide = Dataset("wide", train.n_features + 1, train.n_labels, [0, 0], [], [], [0, 0], [])
    with pytest.raises(DataMismatchError, match=r"^data set 'wide': data has 501 features"):
        net.predict(wide)


_SAVER_LOOP = """
import sys
from workbench import Network
net = Network.load(sys.argv[1])
for _ in range(40):
    net.save(sys.argv[2])
"""


def test_two_writers_saving_one_checkpoint_at_once(saved, tmp_path):
    """Concurrent saves to one path (two trainings sharing --save): each save
    succeeds (neither removes the other's temporary file while it is being
    written or renamed), the result is a valid checkpoint and nothing is left."""
    target = tmp_path / "shared.slide"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER_LOOP, str(saved), str(target)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert Network.load(target).samples_seen == Network.load(saved).samples_seen
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []
