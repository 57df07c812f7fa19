"""The ablation runner (`slide-workbench ablate`, `compare`, `report`): grids,
isolation of points in worker processes, round-robin interleaving, results
files, resume after an interruption, baselines in the same runner.

Every run here is tiny (the `tiny` preset, one thread, a few hundred samples
per round): the tests check the machinery, never the speed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from workbench import ablate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--preset", "tiny", "--threads", "1", "--samples", "256", "--warmup", "128", "--eval-samples", "100",
        "--recall-samples", "50", "--no-triad", "--quiet"]


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=timeout, cwd=ROOT)


def load(out):
    with open(os.path.join(out, "results.json")) as fh:
        return json.load(fh)


# ---- grids (no subprocess) --------------------------------------------------------------------

def test_grid_product_layout_placement_and_env():
    g = ablate.Grid(axes={"precision": ["fp32", "bf16"], "layout": ["rowmajor", "transposed", "rowmajor,rowmajor"],
                          "placement": ["default", "hugepage", "numpy-thp"], "threads": [1]},
                    run={"preset": "tiny"})
    pts = g.points()
    assert len(pts) == 2 * 3 * 3
    p = pts[0]
    assert p.axes == {"precision": "fp32", "layout": "rowmajor", "placement": "default", "threads": 1}
    assert p.config["layouts"] == ["transposed", "rowmajor"]  # a single value is the output layer's
    assert p.config["placement"] == "default"
    assert p.env["NUMPY_MADVISE_HUGEPAGE"] == "0" and p.env["OMP_NUM_THREADS"] == "1"
    assert p.env["OPENBLAS_NUM_THREADS"] == "1"
    by = {(q.axes["layout"], q.axes["placement"]): q for q in pts if q.axes["precision"] == "bf16"}
    assert by[("transposed", "default")].config["layouts"] == ["transposed", "transposed"]
    assert by[("rowmajor/rowmajor", "default")].config["layouts"] == ["rowmajor", "rowmajor"]
    thp = by[("rowmajor", "numpy-thp")]
    assert thp.config["placement"] == "default" and thp.env["NUMPY_MADVISE_HUGEPAGE"] == "1"
    assert by[("rowmajor", "hugepage")].config["placement"] == "hugepage"
    # the tiny preset's suggested hyper-parameters apply, then [fixed]
    assert p.config["K"] == 2 and p.config["hidden"] == [64]
    assert len({q.id for q in pts}) == len(pts)


def test_baselines_collapse_slide_only_axes():
    g = ablate.Grid(axes={"engine": ["slide", "dense", "sampled"], "isa": ["scalar", "avx2"], "K": [2, 3]},
                    run={"preset": "tiny"})
    pts = g.points()
    slide = [p for p in pts if p.engine == "slide"]
    assert len(slide) == 4 and len(pts) == 6  # one dense and one sampled point: isa and K do not apply
    dense = [p for p in pts if p.engine == "dense"][0]
    assert dense.axes["isa"] is None and dense.axes["K"] is None


def test_grid_errors_name_the_problem(tmp_path):
    with pytest.raises(ablate.AblationError, match="placement"):
        ablate.Grid(axes={"placement": ["huge"]})
    with pytest.raises(ablate.AblationError, match="unknown axis"):
        ablate.Grid(axes={"colour": ["red"]})
    with pytest.raises(ablate.AblationError, match="layout"):
        ablate.Grid(axes={"layout": ["diagonal"]})
    with pytest.raises(ablate.AblationError, match="unknown \\[run\\] key"):
        ablate.Grid.from_dict({"run": {"sample": 3}})
    f = tmp_path / "g.toml"
    f.write_text("[axes]\nK = [2, 3]\n[fixed]\nK = 4\n")
    with pytest.raises(ablate.AblationError, match="both an axis and a fixed"):
        ablate.Grid.from_toml(str(f))


def test_dry_run_lists_points_from_a_toml_grid(tmp_path):
    f = tmp_path / "grid.toml"
    f.write_text('[axes]\nprecision = ["fp32", "bf16"]\nlayout = ["rowmajor", "transposed/rowmajor"]\n'
                 '[fixed]\nthreads = 1\nlr = 0.002\n[run]\npreset = "tiny"\nsamples = 100\nrepeats = 2\n')
    r = cli("ablate", "--grid", f, "--dry-run", "--strategy", "hogwild")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("4 point(s)")
    assert "strategy=hogwild" in r.stdout and "layout=transposed/rowmajor" in r.stdout


def test_invalid_points_fail_or_are_skipped(tmp_path):
    # batched needs a row-major output layer
    r = cli("ablate", "--preset", "tiny", "--layout", "rowmajor,transposed", "--strategy", "batched", "--dry-run")
    assert r.returncode == 2 and "batched" in r.stderr and "Traceback" not in r.stderr
    r = cli("ablate", "--preset", "tiny", "--layout", "rowmajor,transposed", "--strategy", "batched", "--dry-run",
            "--skip-invalid")
    assert r.returncode == 0 and r.stdout.startswith("1 point(s)") and "skipped" in r.stdout


# ---- a tiny grid end to end -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ablate") / "res")
    r = cli("ablate", *TINY, "--precision", "fp32,bf16", "--repeats", "2", "--interleave", "live", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def test_records_have_the_measurements(tiny_run):
    res = load(tiny_run)
    assert res["schedule"]["interleave"] == "live"
    assert {"runtime", "grid", "records", "started", "finished"} <= set(res)
    recs = res["records"]
    assert [r["precision"] for r in recs] == ["fp32", "bf16"]
    for r in recs:
        assert r["repeats"] == 2 and len(r["samples_per_s_rounds"]) == 2
        assert r["samples_per_s_min"] <= r["samples_per_s"] <= r["samples_per_s_max"]
        assert r["variant_id"].startswith("fwd_rows/") and r["variant_id"].endswith("/rowmajor/batched")
        assert r["kernels"]["fwd_rows"].startswith("bf16/" if r["precision"] == "bf16" else "f32/")
        assert set(r["time_split"]) >= {"forward", "softmax", "update"}
        assert 0 <= r["p_at_1"] <= 1 and 0 <= r["p_at_1_lsh"] <= 1
        assert 0 <= r["recall"] <= 1 and r["recall_samples"] == 50 and "exact top-5" in r["recall_definition"]
        assert r["mean_active"] > 0 and 0 <= r["label_recall"] <= 1
        assert r["peak_rss_bytes"] > 0 and r["memory"]["placement"] == "aligned"
        # batched strategy: union rows read by the forward pass and by the fused backward+Adam (no gradient buffer)
        ph = r["bytes_per_sample_phases"]
        assert r["bytes_per_sample"] > 0 and set(ph) >= {"output_forward", "output_backward_adam"}
        assert "output_adam" not in ph and "fused" in ph["output_adam_rows_source"]
        sources = {m["source"] for m in r["cache"]}
        assert "model" in sources and "sim" not in sources  # sim only with --sim
        assert all(m["source"] in ("model", "hw") for m in r["cache"])
        assert r["threads"] == 1 and r["isa"] in ("scalar", "avx2", "avx512", "avx512_bf16")


def test_points_run_in_worker_processes_with_their_environment(tiny_run):
    res = load(tiny_run)
    parent = res["runner_pid"]
    pids = [r["worker_pids"] for r in res["records"]]
    assert all(len(p) == 1 for p in pids)  # live: one long-lived worker per point
    assert len({p[0] for p in pids} | {parent}) == 3
    for r in res["records"]:
        assert r["worker_env"]["OMP_NUM_THREADS"] == "1"
        assert r["worker_env"]["OPENBLAS_NUM_THREADS"] == "1"
        assert r["worker_env"]["NUMPY_MADVISE_HUGEPAGE"] == "0"
        assert r["omp_max_threads"] == 1
        assert all(x["pid"] == r["worker_pids"][0] for x in r["rounds"])


def test_rounds_are_interleaved_round_robin(tiny_run):
    recs = load(tiny_run)["records"]
    r0_end = max(r["rounds"][0]["t_end"] for r in recs)
    r1_start = min(r["rounds"][1]["t_start"] for r in recs)
    assert r0_end <= r1_start  # round 0 of every point before round 1 of any
    spans = sorted((x["t_start"], x["t_end"]) for r in recs for x in r["rounds"])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never two points training at once


def test_csv_matches_json(tiny_run):
    recs = load(tiny_run)["records"]
    with open(os.path.join(tiny_run, "results.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs):
        flat = ablate.flatten_record(rec)
        assert set(row) >= set(flat)
        for k, v in flat.items():
            assert row[k] == v, k
        assert float(row["samples_per_s"]) == rec["samples_per_s"]
        assert float(row["time_split.forward"]) == rec["time_split"]["forward"]
        assert row["kernels.fwd_rows"] == rec["kernels"]["fwd_rows"]
        assert json.loads(row["samples_per_s_rounds"]) == rec["samples_per_s_rounds"]
        assert json.loads(row["cache"]) == rec["cache"]


def test_report_command_writes_report_md(tiny_run):
    pytest.importorskip("workbench.report", reason="workbench.report (written by another developer) is missing")
    r = cli("report", tiny_run)
    assert r.returncode == 0, r.stderr
    md = open(os.path.join(tiny_run, "report.md")).read()
    assert "fwd_rows/" in md and os.path.isdir(os.path.join(tiny_run, "figures"))


def test_out_dir_with_results_needs_resume(tiny_run):
    r = cli("ablate", *TINY, "--precision", "fp32", "--out", tiny_run)
    assert r.returncode == 2 and "--resume" in r.stderr


# ---- resume --------------------------------------------------------------------------------------------

def test_interrupted_run_resumes_without_redoing_finished_points(tmp_path):
    out = str(tmp_path / "res")
    args = ["ablate", *TINY, "--precision", "fp32,bf16", "--repeats", "3", "--interleave", "none", "--out", out]
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    deadline = time.monotonic() + 120
    path = os.path.join(out, "results.json")
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if load(out)["records"]:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert os.path.exists(path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    first = load(out)
    done = {r["point_id"]: r for r in first["records"]}
    assert len(done) >= 1
    if len(done) < 2:  # stopped cleanly: exit 130, finished point kept, the rest marked partial
        assert proc.returncode == 130, err
        assert first["interrupted"] and "finished" not in first
    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    second = load(out)
    assert len(second["records"]) == 2 and not second["partial"] and second["resumed_at"]
    for rec in second["records"]:
        if rec["point_id"] in done:  # untouched: same worker, same finish time, same numbers
            assert rec == done[rec["point_id"]]
        else:
            assert rec["repeats"] == 3
    # the finished point's worker was started once (one header in its log)
    for pid in done:
        log = open(os.path.join(out, "logs", f"{pid}.log")).read()
        assert log.count("==== worker for point") == 1


# ---- baselines and fresh processes ---------------------------------------------------------------------

def test_baselines_in_the_grid_with_fresh_processes(tmp_path):
    pytest.importorskip("workbench.baselines")
    out = str(tmp_path / "res")
    r = cli("ablate", *TINY, "--engine", "slide,dense", "--isa", "scalar", "--repeats", "2", "--interleave", "fresh",
            "--out", out)
    assert r.returncode == 0, r.stderr
    recs = load(out)["records"]
    assert [r["engine"] for r in recs] == ["slide", "dense"]
    for rec in recs:
        assert len(rec["worker_pids"]) == 2  # a fresh process per round
        assert rec["repeats"] == 2 and rec["p_at_1"] is not None
    assert recs[1]["variant_id"].startswith("DenseSoftmax") and recs[1]["isa"] is None


def test_compare_writes_learning_curves_and_the_figure(tmp_path):
    pytest.importorskip("workbench.baselines")
    out = str(tmp_path / "cmp")
    r = cli("compare", "--preset", "tiny", "--samples", "1200", "--points", "3", "--eval-samples", "100",
            "--threads", "1", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    res = load(out)
    assert [x["method"] for x in res["records"]] == ["slide"]
    assert [x["method"] for x in res["baselines"]] == ["dense", "sampled"]
    for x in res["records"] + res["baselines"]:
        c = x["curve"]
        assert len(c) == 3 and c[-1]["samples"] == 1200
        assert all(a["seconds"] <= b["seconds"] for a, b in zip(c, c[1:]))
        assert all(0 <= p["p_at_1"] <= 1 for p in c)
    assert "p_at_1_lsh" in res["records"][0]["curve"][0]
    assert os.path.exists(os.path.join(out, "figures", "convergence.png"))
    with open(os.path.join(out, "results.csv"), newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3


def test_a_failing_point_is_recorded_and_retried_on_resume(tmp_path):
    out = str(tmp_path / "res")
    r = cli("ablate", *TINY, "--repeats", "1", "--timeout", "0.05", "--out", out)
    assert r.returncode == 1 and "timed out" in r.stderr and "Traceback" not in r.stderr
    res = load(out)
    assert not res["records"] and len(res["failed"]) == 1 and "timed out" in res["failed"][0]["error"]
    r = cli("ablate", *TINY, "--repeats", "1", "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    res = load(out)
    assert len(res["records"]) == 1 and not res["failed"]


def test_flatten_record_round_trips_through_the_report_reader(tmp_path):
    report = pytest.importorskip("workbench.report")
    rec = {"point_id": "abc", "variant": "v", "samples_per_s": 12.5, "threads": 2, "compat": False, "isa": None,
           "time_split": {"forward": 0.25, "update": 1.0}, "samples_per_s_rounds": [1.0, 2.0],
           "cache": [{"metric": "l1d_misses", "value": 3.0, "source": "model", "detail": {"op": "forward"}}]}
    (tmp_path / "results.csv").write_text(ablate.records_csv([rec]))
    back = report.read_csv_records(str(tmp_path / "results.csv"))[0]
    for k in ("point_id", "variant", "samples_per_s", "threads", "compat", "time_split", "samples_per_s_rounds",
              "cache"):
        assert back[k] == rec[k], k
    assert back.get("isa") is None


def test_shipped_grids_parse():
    # the grids in bench/grids behind the figures the README quotes
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "grids")
    sizes = {name: len(ablate.Grid.from_toml(os.path.join(root, name)).points())
             for name in sorted(os.listdir(root)) if name.endswith(".toml") and not name.startswith("headline")}
    assert sizes == {"fuse.toml": 2, "kernels.toml": 16, "scalar.toml": 4, "speed.toml": 16}


def test_shipped_compare_grids_parse():
    # bench/grids/headline*.toml: the settings of the README's time-to-accuracy runs (compare --grid)
    from workbench import cli, recipes

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "grids")
    args = cli.build_parser().parse_args(["compare", "--grid", os.path.join(root, "headline.toml"), "--out", "x"])
    cli._compare_grid(args)
    methods = args.methods.split(",")
    assert set(methods) >= {"slide:best", "slide:reference", "sampled"} and args.tune == "sampled"
    for m in methods:
        engine, _, rec = m.partition(":")
        assert engine in ablate.ENGINES and (not rec or rec in recipes.RECIPES)
    assert args.preset == "amazon670k" and args.samples > args.tune_samples > 0


def test_files_of_different_shapes_are_refused(tmp_path):
    for preset in ("tiny", "small"):
        r = cli("generate", "--preset", preset, "--out", tmp_path / preset, "--train-samples", 300,
                "--test-samples", 50)
        assert r.returncode == 0, r.stderr
    r = cli("ablate", "--train", tmp_path / "small_train.txt", "--test", tmp_path / "tiny_test.txt", "--out",
            tmp_path / "res", "--threads", "1", "--samples", "64", "--repeats", "1", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "500 features and 100 labels" in r.stderr and "5,000 features and 2,000 labels" in r.stderr


# ---- checks made before any data is generated -----------------------------------------------------------

def test_a_misspelt_axis_value_is_an_error_not_a_point_to_skip(tmp_path):
    out = tmp_path / "res"
    r = cli("ablate", *TINY, "--isa", "avx3", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "axis isa: 'avx3' is not one of auto, scalar, avx2" in r.stderr and "--skip-invalid" not in r.stderr
    assert not (out / "data").exists()


def test_a_point_this_machine_cannot_run_fails_before_data_is_generated(tmp_path):
    out = tmp_path / "res"
    env = dict(_env(), SLIDE_DISABLE_ISA="avx2")
    r = subprocess.run([sys.executable, "-m", "workbench", "ablate", *TINY, "--isa", "scalar,avx2", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "isa=avx2" in r.stderr and "--skip-invalid" in r.stderr and "generating" not in r.stderr
    assert not (out / "data").exists()


def test_compare_checks_methods_and_options_before_generating_data(tmp_path):
    pytest.importorskip("workbench.baselines")
    from workbench import baselines

    out = tmp_path / "cmp"
    r = cli("compare", "--preset", "tiny", "--samples", "500", "--out", out, "--baseline-option", "n_sampled=2000")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "TypeError" not in r.stderr
    assert "n_sampled: not an option of dense (valid: adam, n_negatives, seed, update)" in r.stderr
    assert not (out / "data").exists()
    if not baselines.torch_available():
        r = cli("compare", "--preset", "tiny", "--samples", "500", "--out", out, "--methods", "slide,torch_dense")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "pip install -e '.[torch]'" in r.stderr and not (out / "data").exists()


def test_compare_help_example_option_is_valid():
    import re

    from workbench import baselines

    r = cli("compare", "--help")
    example = re.search(r"--baseline-option KEY=VALUE [^-]*?e\.g\. (\w+)=(\d+)", " ".join(r.stdout.split()))
    assert example, r.stdout
    baselines.check_options(["dense", "sampled"], {example.group(1): int(example.group(2))})


def test_compare_shows_progress(tmp_path):
    pytest.importorskip("workbench.baselines")
    out = str(tmp_path / "cmp")
    r = cli("compare", "--preset", "tiny", "--samples", "600", "--points", "3", "--eval-samples", "100",
            "--threads", "1", "--methods", "slide,sampled", "--out", out)
    assert r.returncode == 0, r.stderr
    bars = [line for line in r.stderr.splitlines() if line.startswith("compare [")]
    # not a terminal: one line per step, the count of samples over both methods rising to the total
    done = [int(line.split("] ")[1].split("/")[0].replace(",", "")) for line in bars]
    assert done == sorted(done) and done[-1] == 1200 and "1,200/1,200 samples" in bars[-1]
    assert any("SLIDE (best): P@1" in line for line in bars) and any("sampled softmax: P@1" in line for line in bars)

