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
