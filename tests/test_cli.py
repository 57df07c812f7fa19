"""The slide-workbench command: subcommands end to end, and bad input gives a
one-line error naming the file, line and problem, a non-zero exit code and no
traceback."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    r = run("generate", "--preset", "tiny", "--out", d / "tiny")
    assert r.returncode == 0, r.stderr
    return d / "tiny_train.txt", d / "tiny_test.txt"


def test_generate_writes_both_splits(tiny_files):
    train, test = tiny_files
    assert train.read_text().splitlines()[0].split() == ["2000", "500", "100"]
    assert test.read_text().splitlines()[0].split() == ["500", "500", "100"]


def test_train_eval_json_and_checkpoint(tiny_files, tmp_path):
    train, test = tiny_files
    model, out = tmp_path / "m.slide", tmp_path / "train.json"
    r = run("train", "--train", train, "--test", test, "--epochs", 6, "--hidden", 64, "-K", 2, "-L", 10,
            "--range-pow", 6, "--min-active", 20, "--lr", 3e-3, "--threads", 2, "--save", model, "--json", out,
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert "P@1/3/5 (dense)" in r.stdout and "samples/s" in r.stdout
    res = json.loads(out.read_text())
    for key in ("samples_per_s", "train_seconds", "p_at_1", "p_at_3", "p_at_5", "peak_rss_bytes", "config",
                "kernels", "runtime", "time_split"):
        assert key in res, key
    assert res["config"]["K"] == 2 and res["config"]["threads"] == 2
    assert set(res["kernels"]) >= {"fwd_rows", "bwd_rows", "adam", "hash"}
    assert res["p_at_1"] > 0.2
    ev = tmp_path / "eval.json"
    r = run("eval", "--model", model, "--test", test, "--json", ev, "--mode", "dense")
    assert r.returncode == 0, r.stderr
    assert abs(json.loads(ev.read_text())["p_at_1"] - res["p_at_1"]) < 1e-9


def test_train_on_a_preset_with_a_toml_config(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('lr = 0.003\n[run]\npreset = "tiny"\nepochs = 1\n[train]\nK = 3\n')
    out = tmp_path / "r.json"
    r = run("train", "--config", cfg, "--json", out, "--quiet", "-L", 7)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["config"]["K"] == 3 and res["config"]["L"] == 7 and res["config"]["lr"] == 0.003
    assert res["data"]["n_train"] == 2000


def test_info_reports_kernels(tmp_path):
    out = tmp_path / "info.json"
    r = run("info", "--quick", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert "kernels_compiled" in rep and "thp" in rep


BAD_FILES = {
    "malformed": ("2 10 5\n0,1 1:0.5 2:0.5\n0 3:abc\n", ":3:"),
    "feature_range": ("2 10 5\n0 1:0.5\n1 10:0.5\n", ":3: feature id 10"),
    "label_range": ("2 10 5\n7 1:0.5\n1 2:0.5\n", ":2: label id 7"),
    "nan": ("2 10 5\n0 1:nan\n1 2:0.5\n", ":2:"),
    "inf": ("2 10 5\n0 1:0.5\n1 2:inf\n", ":3:"),
    "empty": ("", "empty"),
    "truncated": ("3 10 5\n0 1:0.5\n1 2:0.5\n", "header says 3"),
    "header_mismatch": ("1 10 5\n0 1:0.5\n1 2:0.5\n", "header says 1"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_data_gives_a_clear_error_and_keeps_the_checkpoint(tmp_path, name):
    text, expect = BAD_FILES[name]
    bad = tmp_path / f"{name}.txt"
    bad.write_text(text)
    ckpt = tmp_path / "existing.slide"
    ckpt.write_bytes(b"previous checkpoint")
    r = run("train", "--train", bad, "--no-eval", "--save", ckpt, "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(bad) in r.stderr and expect in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert ckpt.read_bytes() == b"previous checkpoint"


@pytest.mark.parametrize("args,expect", [
    (["train", "--preset", "nope"], "nope"),
    (["train", "--preset", "tiny", "-K", "0"], "'K'"),
    (["train", "--preset", "tiny", "--hash-family", "md5"], "'hash_family'"),
    (["train", "--preset", "tiny", "--kernel", "fwd_rows=f32/quantum"], "fwd_rows"),
    (["eval", "--model", "/nonexistent/model.slide", "--preset", "tiny"], "cannot open"),
])
def test_bad_arguments_give_a_clear_error(args, expect):
    r = run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert expect in r.stderr, r.stderr


def test_unknown_toml_key_is_named(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("learning_rate = 0.1\n")
    r = run("train", "--config", cfg, "--preset", "tiny")
    assert r.returncode == 2 and "learning_rate" in r.stderr and "Traceback" not in r.stderr
