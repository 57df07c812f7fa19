"""Figures of benchmark and ablation results (PNG and SVG).

Owns: turning result records into figures, nothing else: no measurement
happens here. A record is a dict as the ablation runner writes it, with at
least ``variant`` and, depending on the figure, ``isa``, ``precision``,
``layout``, ``placement``, ``threads``, ``batch_size``, ``samples_per_s``
(median) with ``samples_per_s_min`` / ``samples_per_s_max``, ``p_at_1``,
``time_split`` ({phase: seconds}), ``bytes_per_sample``, ``cache`` (a list of
workbench.cache measurements), ``K``, ``L``, ``hash_family``,
``mean_active``, ``recall`` and ``curve`` ([{samples, seconds, p_at_1}]).

Every ``plot_*`` function writes ``<name>.png`` and ``<name>.svg`` into
``out_dir`` and returns their paths as a list; when the records hold nothing
to plot it writes nothing and returns an empty list whose ``reason`` says
why. Figures are drawn on matplotlib's Agg canvas without pyplot (no global
state) and are byte-for-byte deterministic: fixed SVG hash salt, no dates.
"""

from __future__ import annotations

import math
import os

import matplotlib
from matplotlib.figure import Figure

SOURCES = ("hw", "sim", "model")
SOURCE_TITLES = {"hw": "hw: counters of this machine (perf_event)", "sim": "sim: valgrind cachegrind",
                 "model": "model: access pattern by hand"}
ISA_COLORS = {"scalar": "#7f7f7f", "avx2": "#1f77b4", "avx512": "#ff7f0e", "avx512_bf16": "#d62728",
              "amx": "#8c564b"}
EMU_COLOR = "#9467bd"
# plotted by plot_cache (the model's lines_touched is its l1d_misses, not drawn twice)
CACHE_METRICS = ("l1d_misses", "l1d_read_misses", "ll_misses", "llc_misses", "llc_misses_generic",
                 "dtlb_load_misses", "pages_4k", "pages_2m", "dtlb_reach_overflow", "page_faults")
_RC = {"svg.hashsalt": "slide-workbench", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10,
       "figure.dpi": 100}


class Paths(list):
    """The written paths; empty with a `reason` when there was nothing to plot."""

    reason: str | None = None
    panels: list | None = None  # plot_cache: the sources drawn, one axes each
    figure: Figure | None = None  # the figure written (to inspect what it shows)

    @property
    def texts(self) -> list:
        """Every non-empty text of the figure: titles, axis and tick labels, legend entries, notes, point labels."""
        from matplotlib.text import Text

        if self.figure is None:
            return []
        return [t.get_text() for t in self.figure.findobj(Text) if t.get_text()]


def _empty(reason: str) -> Paths:
    p = Paths()
    p.reason = reason
    return p


def _num(x):
    """x as a finite float, or None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _label(r: dict) -> str:
    return str(r.get("variant") or r.get("label") or r.get("method") or "?")


def _color(r: dict) -> str:
    isa = str(r.get("isa") or "")
    if isa.endswith("@emu"):
        return EMU_COLOR
    return ISA_COLORS.get(isa, "#2ca02c")


def _tags(records: list, keys=("hash_family", "K", "L")) -> list:
    """A short tag per record naming what tells it apart from the others:
    the keys whose values vary (K and L always, when present)."""
    vary = [k for k in keys if len({str(r.get(k)) for r in records}) > 1 or k in ("K", "L")]
    out = []
    for r in records:
        parts = []
        if "hash_family" in vary and r.get("hash_family") is not None:
            parts.append(str(r["hash_family"]))
        kl = ",".join(f"{k}{r[k]}" for k in ("K", "L") if k in vary and r.get(k) is not None)
        if kl:
            parts.append(kl)
        out.append(" ".join(parts) or _label(r))
    return out


def _label_points(ax, points: list, fontsize: float = 6) -> None:
    """Label (x, y, tag) points without labels hiding each other: each label
    sits right of its point, raised by whole lines until its (estimated) box
    overlaps no label placed before it; identical tags at one spot are one label."""
    ax.autoscale_view()
    dpi = ax.figure.dpi
    char_w, line_h = 0.6 * fontsize * dpi / 72, 1.25 * fontsize * dpi / 72
    seen, placed = set(), []
    items = sorted(((ax.transData.transform((x, y)), x, y, tag) for x, y, tag in points),
                   key=lambda t: (t[0][1], t[0][0]))
    for (dx, dy), x, y, tag in items:
        key = (round(dx), round(dy), tag)
        if key in seen:
            continue
        seen.add(key)
        x0, x1 = dx + 4, dx + 4 + char_w * len(tag)
        k = 0
        while any(x0 < bx1 and bx0 < x1 and abs(dy + 3 + k * line_h - by) < line_h for bx0, bx1, by in placed):
            k += 1
        placed.append((x0, x1, dy + 3 + k * line_h))
        ax.annotate(tag, (x, y), textcoords="offset points", xytext=(4, (3 + k * line_h) * 72 / dpi),
                    fontsize=fontsize, va="bottom")


def _styled(fn):
    """Run a plot function inside the module's rc context (fonts, SVG hash salt)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        with matplotlib.rc_context(_RC):
            return fn(*a, **kw)

    return wrapper


def _save(fig: Figure, out_dir: str, name: str) -> Paths:
    os.makedirs(out_dir, exist_ok=True)
    png, svg = os.path.join(out_dir, name + ".png"), os.path.join(out_dir, name + ".svg")
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    paths = Paths([png, svg])
    paths.figure = fig
    return paths


def _figure(w: float, h: float) -> Figure:
    return Figure(figsize=(w, h), layout="constrained")


_BASELINE_KEYS = (("precision", "layout", "placement", "threads", "batch_size"),
                  ("precision", "layout", "placement", "threads"), ("precision", "layout", "threads"),
                  ("precision", "threads"), ("threads",), ())


def scalar_baseline(rec: dict, records: list) -> dict | None:
    """The scalar-kernel record `rec` is compared with: isa 'scalar' and the same
    precision, layout, placement, threads and batch size, relaxing the match
    from the right when no record agrees on all of them. None without one."""
    if rec.get("isa") == "scalar":
        return rec
    scal = [r for r in records if r.get("isa") == "scalar" and _num(r.get("samples_per_s"))]
    for keys in _BASELINE_KEYS:
        for r in scal:
            if all(r.get(k) == rec.get(k) for k in keys):
                return r
    return None


def speedup(rec: dict, records: list) -> float | None:
    base = scalar_baseline(rec, records)
    a, b = _num(rec.get("samples_per_s")), _num(base.get("samples_per_s")) if base else None
    return a / b if a and b else None


# ---- throughput -------------------------------------------------------------------------

@_styled
def plot_throughput(records: list, out_dir: str, *, name: str = "throughput") -> Paths:
    """Samples/s per variant: bar at the median, error bar from min to max,
    speedup over the matching scalar record written next to each bar."""
    recs = [r for r in records if _num(r.get("samples_per_s"))]
    if not recs:
        return _empty("no record has samples_per_s")
    fig = _figure(8, 1.2 + 0.32 * len(recs))
    ax = fig.add_subplot()
    y = list(range(len(recs)))[::-1]
    med = [_num(r["samples_per_s"]) for r in recs]
    lo = [max(0.0, m - (_num(r.get("samples_per_s_min")) or m)) for m, r in zip(med, recs)]
    hi = [max(0.0, (_num(r.get("samples_per_s_max")) or m) - m) for m, r in zip(med, recs)]
    ax.barh(y, med, xerr=[lo, hi], color=[_color(r) for r in recs], capsize=3, height=0.7)
    ax.set_yticks(y, [_label(r) for r in recs], fontsize=8)
    xmax = max(m + h for m, h in zip(med, hi))
    for yi, m, h, r in zip(y, med, hi, recs):
        s = speedup(r, records)
        txt = f"{m:,.0f}" + (f"  ×{s:.2f}" if s is not None else "")
        ax.text(m + h + 0.01 * xmax, yi, txt, va="center", fontsize=7)
    ax.set_xlim(0, xmax * 1.35)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # wide numbers: few ticks, or their labels run together; none at the right end, where half its label
    # would fall outside the figure
    ax.xaxis.set_major_locator(MaxNLocator(5, prune="upper"))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    # short lines: the axes sit right of long variant names, and a wide label would be cut at the figure's edge
    ax.set_xlabel("samples/s\nbar: median; whiskers: min..max over repeats\n×: speedup over scalar")
    ax.set_title("Throughput per variant")
    return _save(fig, out_dir, name)


# ---- bytes against time: bandwidth roof ----------------------------------------------------

@_styled
def plot_bytes_vs_time(records: list, out_dir: str, bandwidth_gbps: float | None = None, *,
                       name: str = "bytes_vs_time") -> Paths:
    """Bytes moved per sample against time per sample (1 / samples_per_s), with
    the roof time = bytes / bandwidth of the triad measured in the same run.
    Points on the line run at the triad's bandwidth; above it, slower."""
    recs = [r for r in records if _num(r.get("bytes_per_sample")) and _num(r.get("samples_per_s"))]
    if not recs:
        return _empty("no record has both bytes_per_sample and samples_per_s")
    bw = _num(bandwidth_gbps)
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    xs = [_num(r["bytes_per_sample"]) for r in recs]
    ts = [1e6 / _num(r["samples_per_s"]) for r in recs]
    for x, t, r in zip(xs, ts, recs):
        ax.scatter([x], [t], color=_color(r), s=28, zorder=3)
    # log axes where the values span a decade or more; under that, log ticks are unreadable (or absent)
    if max(xs) >= 10 * min(xs):
        ax.set_xscale("log")
    if max(ts) >= 10 * min(ts):
        ax.set_yscale("log")
    if bw:
        x0, x1 = min(xs) / 2, max(xs) * 2
        ax.plot([x0, x1], [x0 / (bw * 1e3), x1 / (bw * 1e3)], color="k", lw=1, ls="--",
                label=f"triad roof {bw:.1f} GB/s (time = bytes / bandwidth)")
        ax.legend(loc="lower right", fontsize=7)
    _label_points(ax, [(x, t, _label(r)) for x, t, r in zip(xs, ts, recs)])
    ax.set_xlabel("bytes moved per sample")
    ax.set_ylabel("time per sample (µs, = 1e6 / samples/s)")
    ax.set_title("Bytes against time per sample" + ("" if bw else " (no triad bandwidth in this run)"))
    return _save(fig, out_dir, name)


# ---- cache misses by source ------------------------------------------------------------------

def cache_rows(records: list) -> list:
    """(variant, source, metric, per, value, record) of every available cache measurement."""
    out = []
    for r in records:
        for m in r.get("cache") or []:
            if isinstance(m, dict) and m.get("available", True) and _num(m.get("value")) is not None:
                out.append((_label(r), m.get("source", "?"), m.get("metric", "?"), m.get("per", "?"),
                            _num(m["value"]), m))
    return out


def _unavailable(records: list, metrics) -> dict:
    """{source: ([metric, ...], short reason)} of measurements marked unavailable."""
    out = {}
    for r in records:
        for m in r.get("cache") or []:
            if not isinstance(m, dict) or m.get("available", True) or m.get("metric") not in metrics:
                continue
            mets, why = out.setdefault(m.get("source", "?"), ([], _short_reason(m.get("reason"))))
            if m["metric"] not in mets:
                mets.append(m["metric"])
    return out


def _short_reason(reason) -> str:
    """The gist of an unavailability reason: its last clause (the errno details
    before it are in the results), at most one line."""
    text = str(reason or "no reason recorded").split(";")[-1].strip()
    return text if len(text) <= 90 else text[:87] + "..."


@_styled
def plot_cache(records: list, out_dir: str, *, name: str = "cache_misses", metrics=CACHE_METRICS) -> Paths:
    """Cache misses (and lines / pages touched) per sample by variant, one panel
    per source (hw, sim, model): numbers of different sources never share an axis."""
    rows = [row for row in cache_rows(records) if row[2] in metrics]
    by_src = {s: [row for row in rows if row[1] == s] for s in SOURCES}
    present = [s for s in SOURCES if by_src[s]]
    na = _unavailable(records, metrics)
    if not present:
        return _empty("no available cache measurement among the records"
                      + "".join(f"; {src}: n/a ({why})" for src, (_, why) in na.items()))
    fig = _figure(9, 3.2 * len(present))
    axes = fig.subplots(len(present), 1, squeeze=False)[:, 0]
    # a source without any measurement here gets no panel, but is named (never silently absent)
    absent = [f"{src}: n/a ({why})" for src, (_, why) in na.items() if src not in present]
    if absent:
        fig.supxlabel("\n".join(absent), fontsize=7)
    for ax, src in zip(axes, present):
        sub = by_src[src]
        variants = list(dict.fromkeys(row[0] for row in sub))
        mets = [m for m in metrics if any(row[2] == m for row in sub)]
        # say on the panel what it cannot show: metrics not measurable here, and bars of height 0
        notes = []
        missing = [m for m in (na.get(src) or ((), ""))[0] if m not in mets]
        if missing:
            notes.append(f"n/a here: {', '.join(missing)} ({na[src][1]})")
        zero = [m for m in mets if all(row[4] == 0 for row in sub if row[2] == m)]
        if zero:
            notes.append(f"0 for every variant: {', '.join(zero)}")
        if notes:
            ax.text(0.5, 0.5, "\n".join(notes), transform=ax.transAxes, ha="center", va="center", fontsize=7,
                    wrap=True, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#999999"})
        width = 0.8 / max(1, len(mets))
        cmap = matplotlib.colormaps["tab10"]
        for j, met in enumerate(mets):
            vals = {}
            for v, _, m, per, val, _ in sub:
                if m == met:
                    vals[v] = (val, per)
            xs = [i + (j - (len(mets) - 1) / 2) * width for i, v in enumerate(variants) if v in vals]
            ys = [vals[v][0] for v in variants if v in vals]
            pers = sorted({vals[v][1] for v in variants if v in vals})
            ax.bar(xs, ys, width=width, color=cmap(j % 10), label=f"{met} (per {'/'.join(pers)})")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=7)
        ax.set_title(SOURCE_TITLES.get(src, src))
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_ylabel("count (symlog)")
    paths = _save(fig, out_dir, name)
    paths.panels = present
    return paths


# ---- accuracy against throughput over K, L -------------------------------------------------

P_AT_1_LABELS = {"p_at_1": "P@1, exact (dense) inference", "p_at_1_lsh": "P@1, LSH inference"}
FAMILY_MARKERS = {"dwta": "o", "wta": "D", "srp": "s", "minhash": "^"}


@_styled
def plot_accuracy_frontier(records: list, out_dir: str, *, name: str = "accuracy_frontier",
                           metric: str = "p_at_1") -> Paths:
    """P@1 (`metric`: p_at_1 by exact inference, or p_at_1_lsh) against
    samples/s, one point per setting: colour by K, marker by hash family,
    labelled with what varies ('srp K4,L20'; points on top of each other share
    one label); the line joins the Pareto-optimal points (no other is faster
    and better)."""
    recs = [r for r in records if _num(r.get(metric)) is not None and _num(r.get("samples_per_s"))]
    if not recs:
        return _empty(f"no record has both {metric} and samples_per_s")
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    Ks = sorted({r.get("K") for r in recs if r.get("K") is not None}, key=str)
    fams = list(dict.fromkeys(str(r.get("hash_family")) for r in recs if r.get("hash_family") is not None))
    cmap = matplotlib.colormaps["viridis"]
    for r in recs:
        k = r.get("K")
        c = cmap(Ks.index(k) / max(1, len(Ks) - 1)) if k in Ks else "#7f7f7f"
        ax.scatter([_num(r["samples_per_s"])], [_num(r[metric])], color=c, s=30, zorder=3,
                   marker=FAMILY_MARKERS.get(str(r.get("hash_family")), "o"))
    pts = sorted(((_num(r["samples_per_s"]), _num(r[metric])) for r in recs), key=lambda t: -t[0])
    front, best = [], -1.0
    for x, y in pts:
        if y > best:
            front.append((x, y))
            best = y
    ax.plot([p[0] for p in front], [p[1] for p in front], color="k", lw=1, ls="--", label="Pareto frontier")
    for k in Ks:
        ax.scatter([], [], color=cmap(Ks.index(k) / max(1, len(Ks) - 1)), label=f"K={k}")
    if len(fams) > 1:
        for f in fams:
            ax.scatter([], [], color="#7f7f7f", marker=FAMILY_MARKERS.get(f, "o"), label=f)
    ax.legend(fontsize=7)
    _label_points(ax, [(_num(r["samples_per_s"]), _num(r[metric]), t) for r, t in zip(recs, _tags(recs))])
    ax.set_xlabel("samples/s")
    ax.set_ylabel(P_AT_1_LABELS.get(metric, metric))
    ax.set_title("Accuracy against throughput over K and L")
    return _save(fig, out_dir, name)


# ---- LSH recall ------------------------------------------------------------------------------

@_styled
def plot_recall(records: list, out_dir: str, *, name: str = "lsh_recall") -> Paths:
    """LSH recall (of the true labels / top neurons in the active set) against
    the mean active-set size, one line per hash family, every point labelled
    with its K, L (points on top of each other share one label)."""
    recs = [r for r in records if _num(r.get("recall")) is not None and _num(r.get("mean_active"))]
    if not recs:
        return _empty("no record has both recall and mean_active")
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    fams = list(dict.fromkeys(str(r.get("hash_family") or "?") for r in recs))
    cmap = matplotlib.colormaps["tab10"]
    for i, fam in enumerate(fams):
        pts = sorted((_num(r["mean_active"]), _num(r["recall"])) for r in recs
                     if str(r.get("hash_family") or "?") == fam)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=FAMILY_MARKERS.get(fam, "o"), color=cmap(i % 10),
                label=fam)
    ax.set_xscale("log")
    _label_points(ax, [(_num(r["mean_active"]), _num(r["recall"]), t) for r, t in zip(recs, _tags(recs))])
    ax.set_xlabel("mean active-set size (neurons per sample)")
    ax.set_ylabel("recall")
    ax.legend(fontsize=7, title="hash family")
    ax.set_title("LSH recall against active-set size")
    return _save(fig, out_dir, name)


# ---- convergence: SLIDE vs dense vs sampled softmax ----------------------------------------

@_styled
def plot_convergence(records: list, out_dir: str, *, name: str = "convergence", target: float | None = None) -> Paths:
    """P@1 against wall-clock seconds (left) and against samples seen (right), one
    colour per record carrying a `curve` (SLIDE, dense, sampled softmax, a label
    tree...): exact (dense) inference solid, SLIDE's LSH inference dashed; a
    record with a one-point curve (a tree trained once) is a single marker.
    Dotted grey: the P@1 of always predicting the most frequent training label
    (`majority_p_at_1`), which exact inference falls to when one output neuron
    wins for every input (see the README's compare section).
    target: a horizontal line (e.g. the tuned sampled softmax's final P@1)."""
    recs = [r for r in records if isinstance(r.get("curve"), list) and r["curve"]]
    if not recs:
        return _empty("no record has a curve")
    fig = _figure(11, 4.4)
    a1, a2 = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["tab10"]
    for i, r in enumerate(recs):
        lab = str(r.get("label") or r.get("method") or _label(r))
        col = cmap(i % 10)
        for key, style, suffix in (("p_at_1", "-", ""), ("p_at_1_lsh", "--", " (LSH inference)")):
            pts = [(_num(p.get("seconds")), _num(p.get("samples")), _num(p.get(key))) for p in r["curve"]
                   if isinstance(p, dict)]
            t = [(x, y) for x, _, y in pts if x is not None and y is not None]
            n = [(x, y) for _, x, y in pts if x is not None and y is not None]
            if not t and not n:
                continue
            kw = dict(color=col, label=lab + suffix, linestyle=style)
            if len(t) == 1:
                kw.update(marker="*", markersize=11, linestyle="none")
            else:
                kw.update(marker=".")
            if t:
                a1.plot([x for x, _ in t], [y for _, y in t], **kw)
            if n:
                a2.plot([x for x, _ in n], [y for _, y in n], **kw)
    floor = next((_num(r.get("majority_p_at_1")) for r in recs if _num(r.get("majority_p_at_1")) is not None), None)
    if floor is not None:
        for a in (a1, a2):
            a.axhline(floor, color="#7f7f7f", ls=":", lw=1, label=f"always the most frequent label ({floor:.3f})")
    secs = [_num(p.get("seconds")) for r in recs for p in r["curve"] if isinstance(p, dict)]
    secs = [x for x in secs if x and x > 0]
    if secs and max(secs) / min(secs) > 20:
        a1.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        a1.xaxis.set_minor_formatter(NullFormatter())  # labels at 2x, 3x, ... run into each other
    if target is not None:
        for a in (a1, a2):
            a.axhline(target, color="#d62728", linewidth=0.8, linestyle="-.", label=f"target P@1 {target:.3f}")
    a1.set_xlabel("training seconds (wall clock, evaluations excluded)")
    a2.set_xlabel("samples seen")
    for a in (a1, a2):
        a.set_ylabel("P@1 (solid: exact inference; dashed: LSH inference)")
        a.yaxis.label.set_size(8)
        a.legend(fontsize=7)
    a1.set_title("P@1 against time")
    a2.set_title("P@1 against samples")
    return _save(fig, out_dir, name)


def plot_tables(records: list, out_dir: str, *, name: str = "lsh_over_training") -> Paths:
    """SLIDE records' table diagnostics along their curves (workbench.diagnose):
    recall of the exact top-5 and label recall on test points against the
    ceiling (label recall of the exact top-1,000), the weight rows' shared
    component, the stored fraction, and the hub's share of top-1 predictions."""
    recs = [r for r in records if any(isinstance(p, dict) and p.get("diag") for p in r.get("curve") or [])]
    if not recs:
        return _empty("no record carries table diagnostics (compare --diag-samples 0?)")
    fig = _figure(12, 4.2)
    a1, a2, a3 = fig.subplots(1, 3)
    cmap = matplotlib.colormaps["tab10"]
    for i, r in enumerate(recs):
        lab = str(r.get("label") or r.get("method") or _label(r))
        col = cmap(i % 10)
        pts = [p for p in r["curve"] if isinstance(p, dict) and p.get("diag")]
        x = [_num(p.get("samples")) for p in pts]

        def series(key, src="diag"):
            return [_num((p.get(src) or {}).get(key)) if src else _num(p.get(key)) for p in pts]

        for ax, key, style, what, src in ((a1, "top5_recall", "-", "exact top-5 retrieved", "diag"),
                                          (a1, "test_label_recall", "--", "label recall", "diag"),
                                          (a1, "exact_top1000_label_recall", ":", "ceiling", "diag"),
                                          (a2, "common_ratio", "-", "|mean row| / mean |row|", "diag"),
                                          (a2, "stored_fraction", "--", "stored fraction", "diag"),
                                          (a3, "hub_share", "-", "hub share of top-1", "diag"),
                                          (a3, "drift", "--", "drift since rehash", "diag")):
            y = series(key, src)
            xy = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
            if xy:
                ax.plot([a for a, _ in xy], [b for _, b in xy], linestyle=style, marker=".", color=col,
                        label=f"{lab}: {what}")
    a1.set_title("what the tables retrieve (test points)")
    a2.set_title("weight rows and tables")
    a3.set_title("hubs and staleness")
    for a in (a1, a2, a3):
        a.set_xlabel("samples seen")
        a.legend(fontsize=6)
        a.set_ylim(bottom=0)
    return _save(fig, out_dir, name)


PLOTS = {"throughput": plot_throughput, "bytes_vs_time": plot_bytes_vs_time, "cache_misses": plot_cache,
         "accuracy_frontier": plot_accuracy_frontier, "lsh_recall": plot_recall, "convergence": plot_convergence,
         "lsh_over_training": plot_tables}


def show(paths) -> None:
    """Display a figure (the first of its paths) inline under IPython/Jupyter;
    elsewhere print its path, or why it was not plotted."""
    if not paths:
        print("not plotted:", getattr(paths, "reason", None))
        return
    try:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            display(Image(filename=paths[0]))
            return
    except ImportError:
        pass
    print("figure:", paths[0])


def plot_all(records: list, out_dir: str, bandwidth_gbps: float | None = None, curves: list | None = None) -> dict:
    """Every figure: {name: Paths} (empty Paths with a reason where nothing was plotted).
    curves: records with a `curve` (default: those among `records`)."""
    out = {}
    for key, fn in PLOTS.items():
        if key == "bytes_vs_time":
            out[key] = fn(records, out_dir, bandwidth_gbps)
        elif key == "convergence":
            out[key] = fn(curves if curves is not None else records, out_dir)
        else:
            out[key] = fn(records, out_dir)
    return out
