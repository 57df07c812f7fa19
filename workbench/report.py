"""The results report: Markdown and HTML with figures and tables.

Owns: reading a results directory (``results.json``, else ``results.csv``)
and writing ``report.md`` and ``report.html`` next to the figures
(``figures/``, made by workbench.plots). Nothing is measured here; every
number printed comes from the results files, and every figure caption says
where its numbers come from.

``results.json`` is a dict:

  runtime    the runtime report (workbench.runtime.report)
  grid       the ablation grid that was run (any JSON)
  records    list of result records (see workbench.plots)
  baselines  optional: more records (dense, sampled softmax ...), usually with a `curve`
  triad      optional: the memory-bandwidth measurement of the run
             (workbench.cache.triad_bandwidth, or a number in GB/s); also
             looked up as runtime["triad"] or a top-level "triad_gbps"

``results.csv`` holds one record per row; columns named ``time_split.<phase>``
become the time_split dict and cells that hold JSON (lists, dicts) are parsed.
Missing fields never stop the report: a table or figure without its data is
replaced by a note saying what was missing.
"""

from __future__ import annotations

import csv
import html
import json
import os

from . import plots

_CAPTIONS = {
    "throughput": "Samples/s per variant: bar at the median, whiskers from min to max over the run's repeats, "
                  "×: speedup over the scalar kernel with the same precision, layout, placement and threads. "
                  "Source: records[].samples_per_s, samples_per_s_min/_max (measured wall-clock).",
    "bytes_vs_time": "Bytes moved per sample against time per sample (1 / samples/s), log axes where the values "
                     "span a decade; dashed line: time "
                     "at the triad bandwidth measured in the same run ({bw}). Source: records[].bytes_per_sample "
                     "and samples_per_s; triad from workbench.cache.triad_bandwidth.",
    "cache_misses": "Cache misses, lines and pages touched per sample by variant, one panel per source: hw = "
                    "perf_event counters of this machine, sim = valgrind cachegrind with this CPU's cache geometry, "
                    "model = the kernel's access pattern computed by hand; sources never share an axis. "
                    "Source: records[].cache.",
    "accuracy_frontier": "P@1 against samples/s for each (K, L) setting, colour by K; dashed: Pareto frontier. "
                         "Source: records[].p_at_1, samples_per_s, K, L (measured).",
    "lsh_recall": "LSH recall against mean active-set size, one line per hash family. "
                  "Source: records[].recall, mean_active, hash_family (measured on the run's data).",
    "convergence": "Time to accuracy: P@1 against training seconds (evaluations excluded) and against samples "
                   "seen, exact inference solid, SLIDE's LSH inference dashed, a label tree (trained once) a star; "
                   "dotted line: the target (the reference method's final P@1). Source: the `curve` of records "
                   "and baselines.",
    "lsh_over_training": "What the tables do during training (workbench.diagnose on test points at every "
                         "evaluation): left, the fraction of the exact top-5 neurons and of the labels the tables "
                         "retrieve, against the ceiling any retriever of 1,000 candidates has (labels in the exact "
                         "top-1,000); middle, the weight rows' shared component (|mean row| / mean |row|) and the "
                         "fraction of (neuron, table) pairs the capped buckets store; right, the most predicted "
                         "neuron's share of dense top-1 predictions (a hub) and the fraction of bucket ids "
                         "changed since the last rehash. Source: records[].curve[].diag.",
}


# ---- reading ------------------------------------------------------------------------------

def _parse_cell(v):
    if v is None:
        return None
    s = v.strip()
    if s == "" or s.lower() in ("none", "null", "nan"):
        return None
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except ValueError:
            return s
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def read_csv_records(path: str) -> list:
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rec = {}
            for k, v in row.items():
                if k is None:
                    continue
                val = _parse_cell(v)
                if "." in k:
                    head, tail = k.split(".", 1)
                    if val is not None:
                        rec.setdefault(head, {})[tail] = val
                else:
                    rec[k] = val
            out.append(rec)
    return out


def load_results(results_dir: str) -> dict:
    """The results of a directory: results.json, else results.csv (records only)."""
    jp, cp = os.path.join(results_dir, "results.json"), os.path.join(results_dir, "results.csv")
    if os.path.exists(jp):
        with open(jp) as fh:
            res = json.load(fh)
        if isinstance(res, list):
            res = {"records": res}
        if not res.get("records") and os.path.exists(cp):
            res["records"] = read_csv_records(cp)
        res["_source"] = "results.json"
        return res
    if os.path.exists(cp):
        return {"records": read_csv_records(cp), "_source": "results.csv"}
    raise FileNotFoundError(f"neither results.json nor results.csv in {results_dir}")


def triad_gbps(res: dict):
    """(GB/s, provenance) of the run's triad, or (None, why not)."""
    for where, t in (("results.triad", res.get("triad")), ("runtime.triad", (res.get("runtime") or {}).get("triad")),
                     ("results.triad_gbps", res.get("triad_gbps"))):
        if isinstance(t, dict):
            v = plots._num(t.get("value") if "value" in t else t.get("gbps"))
            if v:
                d = t.get("detail") or {}
                how = d.get("method", "triad")
                thr = d.get("threads")
                return v, f"{where}: {how}" + (f", {thr} thread(s)" if thr else "")
        elif plots._num(t):
            return plots._num(t), where
    return None, "no triad measurement in the results"


# ---- formatting ---------------------------------------------------------------------------

def _fmt(v, digits=3) -> str:
    x = plots._num(v)
    if x is None:
        return "–" if v is None else str(v)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.{digits}g}" if abs(x) < 100 else f"{x:.0f}"
    return f"{x:.{digits}g}"


def _sps(r) -> str:
    m = plots._num(r.get("samples_per_s"))
    if m is None:
        return "–"
    lo, hi = plots._num(r.get("samples_per_s_min")), plots._num(r.get("samples_per_s_max"))
    return f"{m:,.0f} [{_fmt(lo)}–{_fmt(hi)}]" if lo is not None and hi is not None else f"{m:,.0f}"


class _Doc:
    """A tiny document model rendered to Markdown and to HTML."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def note(self, text):
        self.blocks.append(("note", text))

    def table(self, head, rows):
        self.blocks.append(("table", head, rows))

    def fig(self, png, svg, caption):
        self.blocks.append(("fig", png, svg, caption))

    def code(self, text):
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out = []
        cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "note":
                out.append(f"> {b[1]}")
            elif b[0] == "table":
                out.append("| " + " | ".join(cell(h) for h in b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b[2]]
            elif b[0] == "fig":
                out.append(f"![{b[3]}]({b[1]})")
                out.append(f"*{b[3]}* ([SVG]({b[2]}))")
            elif b[0] == "code":
                out.append("```\n" + b[1] + "\n```")
            out.append("")
        return "\n".join(out)

    def html(self, title) -> str:
        e = html.escape
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
               "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}"
               "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}"
               ".note{color:#8a5a00;background:#fff8e6;padding:4px 8px;border-left:3px solid #e0a800}"
               "pre{background:#f6f6f6;padding:8px;overflow-x:auto}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "note":
                out.append(f'<p class="note">{e(b[1])}</p>')
            elif b[0] == "table":
                out.append("<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr></thead>")
                out.append("<tbody>" + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
                                               for row in b[2]) + "</tbody></table>")
            elif b[0] == "fig":
                out.append(f'<figure><a href="{e(b[2])}"><img src="{e(b[2])}" alt="{e(b[3])}"></a>'
                           f'<figcaption>{e(b[3])} (<a href="{e(b[1])}">PNG</a>)</figcaption></figure>')
            elif b[0] == "code":
                out.append(f"<pre>{e(b[1])}</pre>")
        out.append("</body></html>")
        return "\n".join(out)


# ---- sections -----------------------------------------------------------------------------

def _size(n) -> str:
    x = plots._num(n)
    if x is None:
        return str(n)
    from .runtime import format_bytes

    return format_bytes(x)


def _caches(rt: dict, cpu: dict) -> tuple:
    """(row title, text) of the cache sizes: sysfs (runtime 'caches') when the
    results have it; py-cpuinfo's figures otherwise, said to be so."""
    c = rt.get("caches") or {}
    names = [k for k in ("D1", "I1", "L2", "L3", "L4") if plots._num(c.get(k))]
    if names:
        title = {"D1": "L1d", "I1": "L1i"}
        return (f"caches ({str(c.get('from') or '?').split(' (')[0]})",
                ", ".join(f"{title.get(k, k)} {_size(c[k])}" for k in names))
    keys = ("l1_data_cache_size", "l2_cache_size", "l3_cache_size")
    return ("caches (py-cpuinfo: may be totals over cores, or wrong)",
            ", ".join(f"{k.split('_')[0].upper()} {_size(cpu[k])}" for k in keys if cpu.get(k)) or "–")


def _threads(rt: dict, records) -> str:
    """Threads the measured points ran with / OpenMP's maximum in their workers
    (the runner's own report has no run threads: each point has its own)."""
    run, omp = set(), set()
    for r in records:
        t = r.get("threads")
        if not isinstance(t, int) or t <= 0:  # 0: "all"; the worker's OMP_NUM_THREADS says how many
            t = (r.get("worker_env") or {}).get("OMP_NUM_THREADS")
        if str(t).isdigit():
            run.add(int(t))
        if isinstance(r.get("omp_max_threads"), int):
            omp.add(r["omp_max_threads"])
    if isinstance(rt.get("threads"), int):
        run.add(rt["threads"])
    if not omp and rt.get("omp_max_threads") is not None:
        omp.add(rt["omp_max_threads"])
    show = lambda s: ", ".join(map(str, sorted(s))) or "–"  # noqa: E731
    return f"{show(run)} / {show(omp)}"


def _runtime_section(doc: _Doc, rt, records=()) -> None:
    doc.h(2, "Machine and kernels")
    if not isinstance(rt, dict) or not rt:
        doc.note("No runtime report in the results.")
        return
    cpu = rt.get("cpu") or {}
    rows = [("CPU", cpu.get("brand_raw") or cpu.get("brand") or rt.get("machine") or "–"),
            ("cores (os / affinity)", f"{rt.get('cpu_count', '–')} / {rt.get('affinity', '–')}"),
            ("threads (run / OpenMP max)", _threads(rt, records)),
            _caches(rt, cpu),
            ("transparent huge pages", rt.get("thp", "–")),
            ("platform", rt.get("platform", "–")),
            ("python / numpy", f"{rt.get('python', '–')} / {rt.get('numpy', '–')}")]
    caps = rt.get("capabilities") or {}
    for k in ("hardware", "compiled", "usable", "disabled"):
        if k in caps:
            rows.append((f"ISAs {k}", ", ".join(map(str, caps[k])) or "none"))
    if rt.get("selection_env"):
        rows.append(("selection environment", json.dumps(rt["selection_env"])))
    doc.table(["", "value"], rows)
    chosen = rt.get("kernels_chosen") or rt.get("kernels_chosen_fp32")
    if isinstance(chosen, dict) and chosen:
        krows = []
        for op, c in chosen.items():
            if isinstance(c, dict):
                skipped = c.get("skipped") or {}
                by_reason = {}  # every skipped kernel, those skipped for one reason together
                for k, v in skipped.items():
                    by_reason.setdefault(str(v), []).append(str(k))
                krows.append((op, c.get("chosen", "–"), "; ".join(f"{', '.join(ks)}: {v}"
                                                                 for v, ks in by_reason.items())))
            else:
                krows.append((op, str(c), ""))
        doc.p("Kernel chosen per op" + (" (fp32 selection)" if "kernels_chosen" not in rt else "") + ":")
        doc.table(["op", "kernel", "skipped (why)"], krows)
    elif rt.get("kernels_compiled"):
        doc.p(f"Kernels compiled: {len(rt['kernels_compiled'])}.")


def _grid_section(doc: _Doc, grid) -> None:
    if not grid:
        return
    doc.h(2, "Grid")
    if isinstance(grid, dict):
        doc.table(["parameter", "values"], [(k, json.dumps(v) if not isinstance(v, str) else v)
                                            for k, v in grid.items()])
    else:
        doc.code(json.dumps(grid, indent=1)[:4000])


def triad_for(r: dict, bw, by_threads: dict | None):
    """The triad bandwidth to compare record r with: the one measured with r's
    thread count when the run has it, else the run's single figure."""
    t = (by_threads or {}).get(str(r.get("threads")))
    v = plots._num(t.get("value")) if isinstance(t, dict) else None
    return v or bw


def headline_rows(records: list, bw, by_threads: dict | None = None) -> list:
    rows = []
    for r in records:
        s = plots.speedup(r, records)
        bps, sps = plots._num(r.get("bytes_per_sample")), plots._num(r.get("samples_per_s"))
        gbs = bps * sps / 1e9 if bps and sps else None
        roof = triad_for(r, bw, by_threads)
        rows.append((plots._label(r), _sps(r), f"×{s:.2f}" if s is not None else "–", _fmt(r.get("p_at_1"), 4),
                     _fmt(bps), _fmt(gbs), f"{100 * gbs / roof:.1f}% of {_fmt(roof)}" if gbs and roof else "–"))
    return rows


def _headline(doc: _Doc, records: list, bw, bw_src, by_threads: dict | None = None) -> None:
    doc.h(2, "Headline")
    if not records:
        doc.note("No records in the results.")
        return
    doc.p("samples/s: median [min–max] of the run's repeats; speedup: over the scalar record with the same "
          "precision, layout, placement and threads; GB/s = bytes/sample × samples/s; % of triad: of the memory "
          f"bandwidth measured by the triad in this run ({_fmt(bw) + ' GB/s, ' + bw_src if bw else bw_src})"
          + (", with the record's own thread count (" + ", ".join(
              f"{k} thread(s): {_fmt(v.get('value'))} GB/s" for k, v in sorted(by_threads.items())
              if isinstance(v, dict)) + ")" if by_threads else "") + ".")
    doc.table(["variant", "samples/s median [min–max]", "speedup vs scalar", "P@1", "bytes/sample", "GB/s",
               "% of triad (GB/s)"], headline_rows(records, bw, by_threads))
    short = [r for r in records if _short_of_rehash(r)]
    if short:
        doc.note(f"{len(short)} record(s) timed rounds of fewer samples than the rehash interval "
                 f"({short[0].get('samples_per_round')} < {short[0]['config']['rehash']}): hash-table maintenance "
                 "is mostly outside the timed rounds, so their samples/s leave it out. Use rounds of at least "
                 "`rehash` samples (`[run] samples`) for end-to-end figures.")


def _short_of_rehash(r: dict) -> bool:
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    rehash, n = plots._num(cfg.get("rehash")), plots._num(r.get("samples_per_round"))
    return r.get("engine", "slide") == "slide" and bool(rehash) and n is not None and n < rehash


def _phases(doc: _Doc, records: list) -> None:
    doc.h(2, "Time per phase")
    recs = [r for r in records if isinstance(r.get("time_split"), dict) and r["time_split"]]
    if not recs:
        doc.note("No record has a time_split: table omitted.")
        return
    phases = list(dict.fromkeys(k for r in recs for k in r["time_split"]))
    rows = []
    for r in recs:
        ts = r["time_split"]
        tot = sum(plots._num(v) or 0.0 for v in ts.values())
        cells = []
        for ph in phases:
            v = plots._num(ts.get(ph))
            cells.append("–" if v is None else f"{_fmt(v)} s ({100 * v / tot:.0f}%)" if tot else f"{_fmt(v)} s")
        rows.append((plots._label(r), *cells, f"{_fmt(tot)} s"))
    doc.p("Seconds spent per phase (share of the total), as the trainer's timers report them.")
    doc.table(["variant", *phases, "total"], rows)


def _what(m: dict) -> str:
    """What a cache measurement was taken on, from its detail."""
    d = m.get("detail") or {}
    src = m.get("source")
    if src == "sim":
        txt = " ".join(str(d[k]) for k in ("op", "kernel", "layout") if d.get(k))
        return txt + ("" if d.get("representative", True) else " (emulated: not representative)")
    if src == "model":
        return " ".join(str(d[k]) for k in ("op", "layout", "dtype") if d.get(k))
    if src == "hw":
        return f"scope {d['scope']}, {d.get('threads_counted', '?')} thread(s)" if d.get("scope") else ""
    return ""


def _cache_table(doc: _Doc, records: list) -> None:
    doc.h(2, "Cache behaviour by source")
    items = [(plots._label(r), m) for r in records for m in (r.get("cache") or []) if isinstance(m, dict)]
    if not items:
        doc.note("No record carries cache measurements: table omitted.")
        return
    doc.p("One table per source, never mixed: hw = counters of this machine (perf_event_open; n/a where the "
          "machine exposes none), sim = valgrind cachegrind with this CPU's cache geometry, model = computed "
          "from the kernel's access pattern (distinct lines are the compulsory misses of a cold cache).")
    sources = list(plots.SOURCES) + sorted({m.get("source", "?") for _, m in items} - set(plots.SOURCES))
    for src in sources:
        sub = [(v, m) for v, m in items if m.get("source", "?") == src]
        if not sub:
            continue
        cols = list(dict.fromkeys((m.get("metric", "?"), m.get("per", "?")) for _, m in sub))
        variants = list(dict.fromkeys(v for v, _ in sub))
        cells, what, reasons = {}, {}, {}
        for v, m in sub:
            ok = m.get("available", True) and plots._num(m.get("value")) is not None
            cells[(v, m.get("metric", "?"), m.get("per", "?"))] = _fmt(m.get("value")) if ok else "n/a"
            what.setdefault(v, _what(m))
            if not ok:
                reasons.setdefault(str(m.get("reason") or "unavailable")[:200], []).append(f"{v}: {m.get('metric')}")
        rows = [(v, what.get(v, ""), *(cells.get((v, met, per), "–") for met, per in cols)) for v in variants]
        doc.h(3, plots.SOURCE_TITLES.get(src, src))
        doc.table(["variant", "measured on", *(f"{met} [per {per}]" for met, per in cols)], rows)
        for reason, where in reasons.items():
            doc.note(f"n/a ({len(where)}): {reason}")


def _time_to_accuracy(doc: _Doc, res: dict) -> None:
    """compare results: the sweeps and the time to the reference's final P@1."""
    tun = res.get("tuning") or {}
    for name, t in tun.items():
        doc.h(2, f"Sweep: {name}")
        doc.p(f"{len(t.get('trials') or [])} settings, {t.get('samples', 0):,} samples each; chosen "
              f"{t.get('chosen')} ({t.get('rule')}).")
        doc.table(["settings", "P@1", "seconds", "samples/s"],
                  [(", ".join(f"{k}={v}" for k, v in x["settings"].items()), _fmt(x["p_at_1"], 4), _fmt(x["seconds"]),
                    _fmt(x.get("samples_per_s"), 0)) for x in t.get("trials") or []])
    facts = res.get("data_facts") or {}
    if facts.get("knn"):
        doc.h(2, "What a P@1 means on this data")
        doc.p(f"Predicting the most frequent training label for every point gives P@1 "
              f"{_fmt(facts.get('prior_p_at_1'), 4)} (the label prior); a {facts['knn'].get('k', 10)}-nearest-"
              f"neighbour classifier (cosine similarity over the training points, votes weighted by similarity) "
              f"gives P@1 {_fmt(facts['knn'].get('p_at_1'), 4)} on the same {_fmt(facts['knn'].get('n'))} "
              f"test points the curves are evaluated on.")
    hl = res.get("headline") or {}
    if not hl:
        return
    doc.h(2, "Time to accuracy")
    doc.p(f"Target: P@1 {_fmt(hl['target_p_at_1'], 4)}, the final P@1 of {hl['reference']} "
          f"(reached in {_fmt(hl.get('reference_seconds'))} s of training). Times interpolate linearly between "
          f"evaluations; speed-up = the reference's time / the method's. 'at ref. seconds': P@1 at the last "
          f"evaluation within the reference's whole training time ({_fmt(hl.get('reference_train_seconds'))} s).")
    rows = []
    for name, m in hl["methods"].items():
        rows.append((name, _fmt(m.get("final_p_at_1"), 4), _fmt(m.get("final_p_at_1_lsh"), 4),
                     _fmt(m.get("final_seconds")), _fmt(m.get("p_at_1_at_reference_seconds"), 4),
                     _fmt(m.get("p_at_1_lsh_at_reference_seconds"), 4),
                     _fmt(m.get("seconds_to_target")), _fmt(m.get("speedup"), 2),
                     _fmt(m.get("seconds_to_target_lsh")), _fmt(m.get("speedup_lsh"), 2)))
    doc.table(["method", "final P@1", "final P@1 (LSH)", "seconds", "P@1 at ref. seconds", "LSH P@1 at ref. seconds",
               "to target", "speed-up", "to target (LSH)", "speed-up (LSH)"], rows)


def _baselines(doc: _Doc, baselines: list) -> None:
    if not baselines:
        return
    doc.h(2, "Baselines")
    rows = []
    for b in baselines:
        curve = b.get("curve") if isinstance(b.get("curve"), list) else []
        last = curve[-1] if curve and isinstance(curve[-1], dict) else {}
        rows.append((str(b.get("label") or b.get("method") or plots._label(b)), _sps(b),
                     _fmt(b.get("p_at_1", last.get("p_at_1")), 4), _fmt(last.get("seconds")),
                     _fmt(last.get("samples"))))
    doc.table(["baseline", "samples/s", "P@1", "seconds (last eval)", "samples (last eval)"], rows)


# ---- entry point ----------------------------------------------------------------------------

def write_report(results_dir: str, out: str | None = None) -> str:
    """Write report.md and report.html (and figures/) for a results directory;
    returns the Markdown path. out: a directory, or a path ending in .md
    (default: results_dir/report.md)."""
    res = load_results(results_dir)
    if out is None:
        md_path = os.path.join(results_dir, "report.md")
    elif out.endswith(".md"):
        md_path = out
    else:
        md_path = os.path.join(out, "report.md")
    out_dir = os.path.dirname(os.path.abspath(md_path))
    os.makedirs(out_dir, exist_ok=True)
    fig_dir = os.path.join(results_dir, "figures")
    records = [r for r in (res.get("records") or []) if isinstance(r, dict)]
    baselines = [r for r in (res.get("baselines") or []) if isinstance(r, dict)]
    bw, bw_src = triad_gbps(res)

    doc = _Doc()
    doc.h(1, "SLIDE workbench results")
    doc.p(f"From {res.get('_source', 'results')} in {os.path.abspath(results_dir)}: {len(records)} record(s)"
          + (f", {len(baselines)} baseline(s)" if baselines else "") + ".")
    _runtime_section(doc, res.get("runtime"), records + baselines)
    _grid_section(doc, res.get("grid"))
    _headline(doc, records, bw, bw_src, res.get("triad_by_threads"))
    _phases(doc, records)
    _cache_table(doc, records)
    _baselines(doc, baselines)
    _time_to_accuracy(doc, res)

    doc.h(2, "Figures")
    curves = [r for r in records + baselines if isinstance(r.get("curve"), list) and r["curve"]]
    for key, fn in plots.PLOTS.items():
        try:
            if key == "bytes_vs_time":
                paths = fn(records, fig_dir, bw)
            elif key == "convergence":
                paths = fn(curves, fig_dir, target=(res.get("headline") or {}).get("target_p_at_1"))
            else:
                paths = fn(records, fig_dir)
        except Exception as e:  # a broken record must not lose the rest of the report
            doc.note(f"Figure {key} failed: {type(e).__name__}: {e}")
            continue
        if not paths:
            doc.note(f"Figure {key} omitted: {getattr(paths, 'reason', None) or 'nothing to plot'}.")
            continue
        png = next(p for p in paths if p.endswith(".png"))
        svg = next(p for p in paths if p.endswith(".svg"))
        cap = _CAPTIONS[key].format(bw=f"{_fmt(bw)} GB/s, {bw_src}" if bw else "no triad in this run")
        doc.fig(os.path.relpath(png, out_dir).replace(os.sep, "/"), os.path.relpath(svg, out_dir).replace(os.sep, "/"),
                cap)

    with open(md_path, "w") as fh:
        fh.write(doc.markdown())
    with open(os.path.splitext(md_path)[0] + ".html", "w") as fh:
        fh.write(doc.html("SLIDE workbench results"))
    return md_path


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m workbench.report", description=write_report.__doc__)
    ap.add_argument("results_dir")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    print(write_report(a.results_dir, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
