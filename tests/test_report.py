"""workbench.report and workbench.plots on synthetic results."""

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from workbench import cache, plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records():
    model = cache.model_access("forward", 0, "f32", n_in=128, n_out=670_091, n_active=3000)
    model_t = cache.model_access("forward", 1, "f32", n_in=128, n_out=670_091, n_active=3000)
    hw_na = {"metric": "l1d_read_misses", "value": None, "per": "sample", "source": "hw", "available": False,
             "reason": "perf_event_open(l1d_read_misses) failed: errno 2 (ENOENT)", "detail": {}}
    sim = {"metric": "l1d_misses", "value": 30384.0, "per": "sample", "source": "sim", "available": True,
           "detail": {"kernel": "f32/scalar"}}
    base = dict(precision="fp32", layout="rowmajor", placement="default", threads=2, batch_size=128, K=6, L=50,
                hash_family="dwta", time_split={"hash": 0.5, "forward": 2.0, "backward": 1.5, "adam": 1.0})
    recs = []
    for i, (isa, sps) in enumerate((("scalar", 400.0), ("avx2", 1100.0), ("avx512@emu", 90.0))):
        recs.append(dict(base, variant=f"fwd_rows/f32/{isa}/rowmajor", isa=isa, samples_per_s=sps,
                         samples_per_s_min=sps * 0.9, samples_per_s_max=sps * 1.05, p_at_1=0.31 + 0.01 * i,
                         bytes_per_sample=1.6e6, cache=[sim, hw_na] + model, mean_active=3000 + 500 * i,
                         recall=0.6 + 0.1 * i))
    recs.append(dict(base, variant="fwd_cols/f32/avx2/transposed", isa="avx2", layout="transposed",
                     samples_per_s=300.0, samples_per_s_min=280.0, samples_per_s_max=310.0, p_at_1=0.31,
                     bytes_per_sample=2.4e7, cache=model_t, K=8, L=20, hash_family="srp", mean_active=1800,
                     recall=0.5))
    recs.append({"variant": "partial", "isa": "avx2"})  # almost nothing: must not break anything
    return recs


def _results(tmp_path, **extra):
    res = {"runtime": {"python": "3.11", "numpy": "2.0", "cpu_count": 2, "affinity": 2, "threads": 2, "thp": "madvise",
                       "cpu": {"brand_raw": "Test CPU", "l2_cache_size": 524288},
                       "capabilities": {"hardware": ["scalar", "avx2"], "compiled": ["scalar", "avx2", "avx512"],
                                        "usable": ["scalar", "avx2", "avx512@emu"], "disabled": []},
                       "kernels_chosen_fp32": {"fwd_rows": {"chosen": "f32/avx2",
                                                            "skipped": {"f32/avx512": "the CPU lacks avx512f"}}}},
           "grid": {"isa": ["scalar", "avx2"], "K": [6, 8], "L": [20, 50]},
           "records": _records(),
           "baselines": [{"label": "dense", "samples_per_s": 50.0,
                          "curve": [{"samples": 1000, "seconds": 20.0, "p_at_1": 0.1},
                                    {"samples": 2000, "seconds": 40.0, "p_at_1": 0.2}]},
                         {"label": "sampled softmax", "samples_per_s": 800.0,
                          "curve": [{"samples": 1000, "seconds": 1.2, "p_at_1": 0.05},
                                    {"samples": 2000, "seconds": 2.5, "p_at_1": 0.12}]}],
           "triad": {"metric": "triad_bandwidth", "value": 20.0, "source": "hw", "unit": "GB/s",
                     "detail": {"method": "numpy two-pass triad", "threads": 2}}}
    res.update(extra)
    (tmp_path / "results.json").write_text(json.dumps(res))
    return res


def _valid_png(path):
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC, path
    assert os.path.getsize(path) > 1000


def _valid_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), path


def test_report_files_tables_and_figures(tmp_path):
    _results(tmp_path)
    md_path = report.write_report(str(tmp_path))
    assert md_path == str(tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    # headline rows: variant, median [min-max], speedup over scalar, P@1, bytes, GB/s, % of triad
    assert "| fwd_rows/f32/scalar/rowmajor | 400 [360–420] | ×1.00 | 0.31 | 1,600,000 | 0.64 | 3.2% of 20 |" in md
    assert "| fwd_rows/f32/avx2/rowmajor | 1,100 [990–1,155] | ×2.75 | 0.32 | 1,600,000 | 1.76 | 8.8% of 20 |" in md
    # the transposed avx2 record is compared with the scalar record of the same precision/threads
    assert "| fwd_cols/f32/avx2/transposed | 300 [280–310] | ×0.75 |" in md
    assert "| partial | – | – |" in md
    assert "Test CPU" in md and "f32/avx2" in md
    assert "Time per phase" in md and "2 s (40%)" in md
    # cache table tagged by source, unavailable hw says why
    assert "| fwd_rows/f32/scalar/rowmajor |  | n/a |" in md
    assert "n/a (3): perf_event_open(l1d_read_misses) failed: errno 2 (ENOENT)" in md
    assert "| fwd_rows/f32/scalar/rowmajor | f32/scalar | 30,384 |" in md
    assert "| fwd_cols/f32/avx2/transposed | forward transposed f32 | 1,548,512 |" in md
    hw, sim, model = (md.index(plots.SOURCE_TITLES[s]) for s in ("hw", "sim", "model"))
    assert hw < sim < model
    assert "sampled softmax" in md
    figs = {"throughput", "bytes_vs_time", "cache_misses", "accuracy_frontier", "lsh_recall", "convergence"}
    for f in figs:
        _valid_png(tmp_path / "figures" / f"{f}.png")
        _valid_svg(tmp_path / "figures" / f"{f}.svg")
        assert f"figures/{f}.png" in md and f'src="figures/{f}.svg"' in html
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "</html>" in html
    assert "20 GB/s" in md  # the caption of the roof figure names the triad it draws


def test_report_survives_missing_fields_and_csv(tmp_path):
    rows = ["variant,isa,samples_per_s,time_split.forward,time_split.adam,p_at_1",
            "a/scalar,scalar,100,1.5,0.5,0.2", "a/avx2,avx2,250,0.6,0.4,"]
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    md = open(report.write_report(str(tmp_path), out=str(tmp_path / "out"))).read()
    assert "| a/avx2 | 250 | ×2.50 | – |" in md
    assert "No runtime report" in md
    assert "Figure bytes_vs_time omitted" in md and "Figure convergence omitted" in md
    assert "No record carries cache measurements" in md
    # figures referenced relative to the report in out/
    assert "../figures/throughput.png" in md
    _valid_png(tmp_path / "figures" / "throughput.png")


def test_report_without_anything(tmp_path):
    with pytest.raises(FileNotFoundError):
        report.write_report(str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({"records": []}))
    md = open(report.write_report(str(tmp_path))).read()
    assert "No records" in md


def test_plots_are_deterministic_and_say_why_when_empty(tmp_path):
    recs = _records()
    a = plots.plot_cache(recs, str(tmp_path / "a"))
    b = plots.plot_cache(recs, str(tmp_path / "b"))
    assert [os.path.basename(p) for p in a] == ["cache_misses.png", "cache_misses.svg"]
    for pa, pb in zip(a, b):
        assert open(pa, "rb").read() == open(pb, "rb").read(), pa
    empty = plots.plot_convergence(recs, str(tmp_path / "c"))
    assert empty == [] and "curve" in empty.reason
    assert not os.path.exists(tmp_path / "c" / "convergence.png")


def test_cache_panels_never_mix_sources(tmp_path):
    recs = _records()
    rows = plots.cache_rows(recs)
    assert {r[1] for r in rows} == {"sim", "model"}  # the unavailable hw record is not plotted
    paths = plots.plot_cache(recs, str(tmp_path))
    assert paths.panels == ["sim", "model"]  # one axes per source, in this order
    assert np.isclose(plots.speedup(recs[1], recs), 1100 / 400)
    assert plots.scalar_baseline(recs[3], recs) is recs[0]


def test_roof_per_thread_count():
    # a record is compared with the triad measured at its own thread count; without one, the run's figure
    by = {"1": {"value": 10.0}, "2": {"value": 40.0}}
    assert report.triad_for({"threads": 2}, 20.0, by) == 40.0
    assert report.triad_for({"threads": 1}, 20.0, by) == 10.0
    assert report.triad_for({"threads": 4}, 20.0, by) == 20.0
    assert report.triad_for({"threads": 2}, 20.0, None) == 20.0
    rows = report.headline_rows([{"variant": "v", "samples_per_s": 1000, "bytes_per_sample": 1e7, "threads": 2}],
                                20.0, by)
    assert rows[0][-1] == "25.0% of 40"


# ---- what the figures say where they cannot show something ---------------------------------------------

def _no_pmu_records():
    """Two variants on a machine without hardware counters: the hw source has only a
    software counter (page faults, 0 here) and unavailable PMU events."""
    why = ("perf_event_open(l1d_read_misses) failed: errno 2 (ENOENT: No such file or directory); this CPU/VM "
           "exposes no PMU event for it (typical of virtual machines)")
    recs = []
    for v in ("a", "b"):
        recs.append({"variant": v, "cache": [
            {"metric": "l1d_read_misses", "value": None, "per": "sample", "source": "hw", "available": False,
             "reason": why},
            {"metric": "page_faults", "value": 0.0, "per": "sample", "source": "hw", "available": True},
            {"metric": "l1d_misses", "value": 120.0, "per": "sample", "source": "model", "available": True}]})
    return recs


def test_cache_panel_says_what_is_not_available(tmp_path):
    paths = plots.plot_cache(_no_pmu_records(), str(tmp_path))
    assert paths.panels == ["hw", "model"]
    text = "\n".join(paths.texts)
    assert "n/a here: l1d_read_misses (this CPU/VM exposes no PMU event for it" in text
    assert "0 for every variant: page_faults" in text
    # a source with no available measurement at all has no panel, but is named under the figure
    only_na = [{"variant": r["variant"], "cache": [m for m in r["cache"] if m["metric"] != "page_faults"]}
               for r in _no_pmu_records()]
    paths = plots.plot_cache(only_na, str(tmp_path / "b"))
    assert paths.panels == ["model"] and any(t.startswith("hw: n/a (") for t in paths.texts)


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figures are made without pyplot: give them a canvas to measure on
    canvas.draw()
    return canvas.get_renderer()


def _label_boxes(fig):
    from matplotlib.text import Annotation

    r = _renderer(fig)
    return [(a.get_text(), a.get_window_extent(r)) for a in fig.findobj(Annotation)]


def test_point_labels_name_what_differs_and_never_overlap(tmp_path):
    """Equal K, L in two hash families (one label each, naming the family), and
    points on top of each other or close together: every label readable."""
    recs = [dict(K=4, L=20, hash_family="dwta", samples_per_s=1000.0, p_at_1=0.30, p_at_1_lsh=0.20,
                 mean_active=500, recall=0.5),
            dict(K=4, L=20, hash_family="srp", samples_per_s=1000.0, p_at_1=0.30, p_at_1_lsh=0.25,
                 mean_active=500, recall=0.5),
            dict(K=6, L=20, hash_family="srp", samples_per_s=1010.0, p_at_1=0.301, p_at_1_lsh=0.21,
                 mean_active=510, recall=0.505),
            dict(K=8, L=50, hash_family="dwta", samples_per_s=3000.0, p_at_1=0.10, p_at_1_lsh=0.09,
                 mean_active=90, recall=0.2)]
    for fn in (plots.plot_accuracy_frontier, plots.plot_recall):
        paths = fn(recs, str(tmp_path))
        boxes = _label_boxes(paths.figure)
        assert sorted(t for t, _ in boxes) == ["dwta K4,L20", "dwta K8,L50", "srp K4,L20", "srp K6,L20"], fn
        for i, (ta, a) in enumerate(boxes):
            for tb, b in boxes[i + 1:]:
                assert not a.overlaps(b), (fn.__name__, ta, tb)
    dense = plots.plot_accuracy_frontier(recs, str(tmp_path))
    lsh = plots.plot_accuracy_frontier(recs, str(tmp_path), metric="p_at_1_lsh", name="frontier_lsh")
    assert "P@1, exact (dense) inference" in dense.texts and "P@1, LSH inference" in lsh.texts


def test_throughput_labels_stay_inside_the_figure(tmp_path):
    recs = [dict(variant=f"fwd_rows/bf16/avx512_bf16/rowmajor/batched [placement=hugepage] {i}", isa="avx512",
                 samples_per_s=290_000.0 - 1000 * i) for i in range(6)]
    fig = plots.plot_throughput(recs, str(tmp_path)).figure
    r = _renderer(fig)
    page = fig.bbox
    for t in fig.findobj(lambda o: hasattr(o, "get_text") and o.get_text() and o.get_visible()):
        box = t.get_window_extent(r)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, (t.get_text(), box, page)


def test_convergence_shows_lsh_inference_and_the_majority_floor(tmp_path):
    rec = {"label": "SLIDE", "majority_p_at_1": 0.023,
           "curve": [{"samples": 2500, "seconds": 1.0, "p_at_1": 0.11, "p_at_1_lsh": 0.06},
                     {"samples": 5000, "seconds": 2.0, "p_at_1": 0.023, "p_at_1_lsh": 0.03}]}
    texts = plots.plot_convergence([rec], str(tmp_path)).texts
    assert "SLIDE (LSH inference)" in texts and "always the most frequent label (0.023)" in texts


def test_machine_table_threads_caches_and_every_skipped_kernel(tmp_path):
    skipped = {f"f32/{isa}": "the CPU lacks avx512f" for isa in ("avx512", "avx512_bf16")}
    skipped.update({f"bf16/{isa}": "dtype bf16, precision fp32 needs f32" for isa in ("scalar", "avx2", "avx512")})
    skipped["f32/scalar"] = "lower preference than f32/avx2"
    runner = {"cpu_count": 2, "affinity": 2, "threads": None, "omp_max_threads": 2,
              "caches": {"D1": 32768, "I1": 32768, "L2": 1 << 20, "L3": 32 << 20, "from": "sysfs (/sys/...)"},
              "cpu": {"brand_raw": "AMD EPYC", "l3_cache_size": 524288},
              "kernels_chosen_fp32": {"fwd_rows": {"chosen": "f32/avx2", "skipped": skipped}}}
    recs = [{"variant": "v", "threads": 1, "omp_max_threads": 1, "samples_per_s": 10.0}]
    (tmp_path / "results.json").write_text(json.dumps({"runtime": runner, "records": recs}))
    md = open(report.write_report(str(tmp_path))).read()
    # the points' threads, not the runner's (None)
    assert "| threads (run / OpenMP max) | 1 / 1 |" in md and "None" not in md
    assert "| caches (sysfs) | L1d 32 KiB, L1i 32 KiB, L2 1 MiB, L3 32 MiB |" in md
    row = next(line for line in md.splitlines() if line.startswith("| fwd_rows |"))
    assert "…" not in row and all(k in row for k in skipped)
    assert "bf16/scalar, bf16/avx2, bf16/avx512: dtype bf16, precision fp32 needs f32" in row
    # results written before the sysfs figures were recorded: py-cpuinfo's, in binary units, said to be so
    del runner["caches"]
    (tmp_path / "results.json").write_text(json.dumps({"runtime": runner, "records": recs}))
    md = open(report.write_report(str(tmp_path))).read()
    assert "| caches (py-cpuinfo: may be totals over cores, or wrong) | L3 512 KiB |" in md
