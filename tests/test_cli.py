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
    assert res["p_at_1"] > 0.2  # 0.37-0.55 in 16 runs of this training (2 threads; avx512 and avx2 kernels)
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


def test_default_recipe_trains_every_strategy(tmp_path):
    # the default recipe's in-batch negatives need the batched strategy: a
    # hogwild run keeps the rest of the recipe and says why it has none
    for strategy in ("hogwild", "batched"):
        out = tmp_path / f"{strategy}.json"
        r = run("train", "--preset", "tiny", "--max-samples", 300, "--eval-samples", 50, "--quiet",
                "--strategy", strategy, "--json", out)
        assert r.returncode == 0, r.stderr
        res = json.loads(out.read_text())
        assert res["config"]["batch_labels"] == (0 if strategy == "hogwild" else 1024)
        assert res["config"]["min_active"] == 0 and res["config"]["lr"] == 3e-3
        if strategy == "hogwild":
            assert "batch_labels=0 [recipe best: 0 here" in r.stdout


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


def main(*args):
    """cli.main in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from workbench import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


TINY = ["train", "--preset", "tiny", "--no-eval", "--quiet"]


@pytest.mark.parametrize("toml,expect", [
    ('[run]\nepochs = "two"\n', "[run] epochs: expected a number, got 'two'"),
    ('[run]\nmax_samples = "abc"\n', "[run] max_samples: expected an integer"),
    ("[run]\nsave = 5\n", "[run] save: expected a string, got 5"),
    ('[run]\ntest = ["a"]\n', "[run] test: expected a string, got [a]"),
    ('[run]\nno_eval = "yes"\n', "[run] no_eval: expected true or false"),
    ("[run]\nhidden = 5\n", "unknown [run] key 'hidden'"),
    ("run = 5\n", "'run' must be a table"),
    ("[trian]\nK = 3\n", "unknown section(s) [trian]"),
])
def test_bad_run_tables_are_one_line_errors(tmp_path, toml, expect):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml)
    rc, _, err = main(*TINY, "--max-samples", 64, "--config", cfg)
    assert rc == 2 and err.count("\n") == 1 and expect in err and str(cfg) in err, err


def test_run_table_and_inline_kernels_apply(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('kernels = { fwd_rows = "f32/scalar" }\n[run]\nmax_samples = 64\nepochs = 1\n'
                   f'json = "{tmp_path / "r.json"}"\n')
    rc, _, err = main(*TINY, "--config", cfg)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["samples"] == 64 and result["kernels"]["fwd_rows"] == "f32/scalar"


@pytest.mark.parametrize("flag", ["--hidden", "--layouts", "--layer-modes"])
def test_empty_list_flags_are_refused(flag):
    rc, _, err = main(*TINY, "--max-samples", 64, flag, "")
    assert rc == 2 and "expected a comma-separated list, got ''" in err


def _interrupted(tmp_path, done=256, target=1024):
    """A checkpoint as an interrupted `train --preset tiny` run leaves it."""
    from workbench import Config, Network, synthetic
    from workbench.config import preset_hyperparams

    train = synthetic.generate("tiny", "train")
    net = Network(Config(n_features=train.n_features, n_labels=train.n_labels, **preset_hyperparams("tiny")))
    net.run_start, net.run_target = 0, target
    net.fit(train, max_samples=done)
    path = tmp_path / "mid.slide"
    net.save(path)
    return path


def test_resume_refuses_conflicting_settings(tmp_path):
    path = _interrupted(tmp_path)
    for extra, expect in [(["--hidden", 32], "hidden = [32] (checkpoint: [64])"),
                          (["-K", 5, "--lr", 0.1], "K = 5 (checkpoint: 2); lr = 0.1 (checkpoint: 0.003)"),
                          (["--max-samples", 3000], "asks for 3,000 training samples but the run in the "
                                                    "checkpoint asked for 1,024 (256 done, 768 left)")]:
        before = path.read_bytes()
        rc, _, err = main(*TINY, "--resume", path, "--save", path, *extra)
        assert rc == 2 and err.count("\n") == 1 and expect in err, err
        assert path.read_bytes() == before
    # execution settings may change; the run finishes what it was asked to do
    rc, out, err = main(*TINY, "--resume", path, "--save", path, "--threads", 1, "--isa", "scalar",
                        "--max-samples", 1024)
    assert rc == 0, err
    assert "resuming at 256 samples; 768 to go" in out
    from workbench import Network

    done = Network.load(path)
    assert done.samples_seen == 1024 and done.config.isa == "scalar"


def test_resuming_a_finished_run_says_what_it_holds(tmp_path):
    path, out_json = tmp_path / "done.slide", tmp_path / "r.json"
    rc, _, err = main(*TINY, "--max-samples", 512, "--save", path)
    assert rc == 0, err
    rc, _, err = main(*TINY, "--max-samples", 512, "--resume", path, "--save", path, "--json", out_json)
    assert rc == 2 and err.count("\n") == 1, err
    assert "nothing to resume: the run in this checkpoint is finished (512 samples seen" in err
    assert "4 Adam steps" in err and f"slide-workbench eval --model {path}" in err
    assert not out_json.exists()


def test_failed_final_save_still_reports_the_results(tmp_path, monkeypatch):
    """Disk full at the final save: the error names the path, the summary is
    printed and --json written, and the previous checkpoint stays."""
    import errno

    import workbench.checkpoint as ck

    path, out_json = tmp_path / "m.slide", tmp_path / "r.json"
    path.write_bytes(b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os, "fsync", full)
    rc, out, err = main(*TINY, "--max-samples", 256, "--save", path, "--json", out_json)
    assert rc == 2, err
    assert err.count("\n") == 1 and f"{path}: cannot write the checkpoint: No space left on device" in err, err
    assert "summary" in out and "NOT written" in out
    result = json.loads(out_json.read_text())
    assert result["samples"] == 256 and "No space left on device" in result["checkpoint_error"]
    assert path.read_bytes() == b"previous"
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []


def test_config_from_toml_names_an_unknown_table(tmp_path):
    from workbench.config import Config, ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nK = 3\n[run]\nepochs = 2\n[tarin]\nL = 4\n')
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): tarin"):
        Config.from_toml(cfg)
    cfg.write_text('kernels = { fwd_rows = "f32/scalar" }\n[train]\nK = 3\n[run]\nepochs = 2\n')
    c = Config.from_toml(cfg)
    assert c.K == 3 and c.kernels == {"fwd_rows": "f32/scalar"}


# ---- shapes: a model and its data must agree ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    r = run("generate", "--preset", "small", "--out", d / "small", "--train-samples", 600, "--test-samples", 100)
    assert r.returncode == 0, r.stderr
    return d / "small_train.txt", d / "small_test.txt"


def test_train_and_test_files_of_different_shapes_are_refused_before_training(small_files, tiny_files):
    r = run("train", "--train", small_files[0], "--test", tiny_files[1], "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "summary" not in r.stdout
    msg = r.stderr.strip()
    assert "\n" not in msg and str(tiny_files[1]) in msg and str(small_files[0]) in msg
    assert "500 features and 100 labels" in msg and "5,000 features and 2,000 labels" in msg


def test_eval_of_a_model_on_data_of_another_shape_is_refused(small_files, tiny_files, tmp_path):
    model = tmp_path / "small.slide"
    r = run("train", "--train", small_files[0], "--test", small_files[1], "--max-samples", 256, "--quiet",
            "--eval-mode", "dense", "--save", model)
    assert r.returncode == 0, r.stderr
    r = run("eval", "--model", model, "--test", tiny_files[1])
    assert r.returncode == 2 and "Traceback" not in r.stderr and "P@1" not in r.stdout
    msg = r.stderr.strip()
    assert "\n" not in msg and str(model) in msg and str(tiny_files[1]) in msg
    assert "500 features and 100 labels" in msg and "5,000 features and 2,000 labels" in msg


# ---- info ------------------------------------------------------------------------------------------------

def test_cache_sizes_come_from_sysfs_in_binary_units():
    from workbench import runtime

    assert runtime.format_bytes(32768) == "32 KiB" and runtime.format_bytes(33554432) == "32 MiB"
    assert runtime.format_bytes(1536 << 20) == "1.5 GiB" and runtime.format_bytes(512) == "512 B"
    import glob

    caches = runtime.report(quick=True)["caches"]
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        with open(os.path.join(d, "level")) as fh:
            if fh.read().strip() != "3":
                continue
        with open(os.path.join(d, "size")) as fh:  # e.g. 32768K (py-cpuinfo said 512 KiB on such an EPYC)
            want = int(fh.read().strip().rstrip("K")) * 1024
        assert caches["from"].startswith("sysfs")
        assert caches["L3"] == want and f"L3 {runtime.format_bytes(want)}" in caches["text"]


# ---- help ------------------------------------------------------------------------------------------------

def test_train_help_names_every_flag_plainly():
    r = run("train", "--help")
    assert r.returncode == 0 and "CFG_" not in r.stdout and "--lr LR" in r.stdout and "-K K" in r.stdout
    import argparse

    from workbench import cli

    train = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    assert not [a.dest for a in train._actions if a.dest.startswith("cfg_") and not a.help]


def test_one_thread_is_not_plural():
    r = run("train", "--preset", "tiny", "--threads", 1, "--max-samples", 128, "--no-eval", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 thread," in r.stdout and "1 threads" not in r.stdout


# ---- the machine's other load during training -------------------------------------------------------------

def test_machine_load_counts_other_processes_cpu():
    from workbench import runtime

    snap = runtime.cpu_snapshot()
    assert snap is not None and snap["cpus"] >= 1
    before = dict(snap, wall=0.0, busy=1000, steal=10, own=5.0, hz=100, cpus=2)
    # 10 s: 15 CPU-seconds busy in all, 8 of them this process's, 0.5 stolen by the hypervisor
    after = dict(before, wall=10.0, busy=2500, steal=60, own=13.0)
    load = runtime.machine_load(before, after)
    assert load == {"other_cpus": 0.7, "steal_cpus": 0.05, "cpus": 2, "seconds": 10.0, "busy": True}
    assert "0.70 of 2 CPUs" in runtime.describe_load(load) and "busy machine" in runtime.describe_load(load)
    idle = runtime.machine_load(before, dict(after, busy=1000 + 800))
    assert idle["other_cpus"] == 0.0 and not idle["busy"] and "busy" not in runtime.describe_load(idle)
    assert runtime.machine_load(before, dict(after, wall=0.5)) is None  # too short to say anything



def test_info_prints_cache_sizes_once_from_the_best_source(tmp_path):
    out = tmp_path / "info.json"
    r = run("info", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    if not rep["caches"]["from"].startswith("unavailable"):  # no sysfs, lscpu or py-cpuinfo figures at all
        assert "KiB" in rep["caches"]["text"]
    assert not any(k.endswith("_cache_size") for k in rep.get("cpu", {}))  # py-cpuinfo's figures are not repeated


def test_preset_beside_train_files_supplies_its_settings(tiny_files, tmp_path):
    # --preset next to --train is not ignored: its suggested settings apply to the file's data, and say so
    train, test = tiny_files
    common = ["train", "--train", train, "--test", test, "--recipe", "reference", "--max-samples", 300,
              "--eval-samples", 50, "--quiet"]
    r = run(*common, "--preset", "small", "--json", tmp_path / "a.json")
    assert r.returncode == 0, r.stderr
    assert "K=4 [preset small]" in r.stdout and "L=20 [preset small]" in r.stdout
    cfg = json.loads((tmp_path / "a.json").read_text())["config"]
    assert (cfg["K"], cfg["L"]) == (4, 20)
    r = run(*common, "--json", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    assert "[preset" not in r.stdout
    assert json.loads((tmp_path / "b.json").read_text())["config"]["K"] == 6  # the reference recipe's own
