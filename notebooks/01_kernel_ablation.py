# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Kernel ablation: ISA × precision × layout × placement
#
# What each kernel optimisation buys on this machine: training throughput of
# the same network with the output layer on every usable ISA, in fp32 and
# bf16, row-major against transposed, with and without huge pages. Every
# point runs in its own worker process (its own OpenMP settings, its own
# NUMPY_MADVISE_HUGEPAGE), rounds are interleaved so that machine noise hits
# all points alike (see `workbench.ablate`). Cache behaviour comes from three
# sources that are never mixed: `model` (access pattern by hand), `hw`
# (perf_event counters, where the machine exposes them), `sim` (cachegrind,
# only with `SIM = True`: slow).
#
# Small by default (the `tiny` preset, a few hundred samples per round); set
# `SLIDE_NOTEBOOK_SCALE=full` (or `FULL_SCALE = True`) for the Amazon-670K
# shape. Outputs are not stored in this file: run it (`python
# notebooks/01_kernel_ablation.py`, or open it with jupytext).

# %%
import os

import workbench
from workbench import ablate, plots, variants

workbench.show_runtime()

# %%
FULL_SCALE = os.environ.get("SLIDE_NOTEBOOK_SCALE", "small") == "full"
SIM = os.environ.get("SLIDE_NOTEBOOK_SIM") == "1"
OUT = os.path.join(os.environ.get("SLIDE_NOTEBOOK_OUT", "notebook-results"),
                   "01_kernel_ablation-" + ("full" if FULL_SCALE else "small"))

usable = variants.capabilities()["usable"]
isas = [i for i in ("scalar", "avx2", "avx512", "avx512_bf16") if i in usable]
if FULL_SCALE:
    axes = {"isa": isas, "precision": ["fp32", "bf16", "bf16act"], "layout": ["rowmajor", "transposed"],
            "placement": ["default", "hugepage"]}
    run = {"preset": "amazon670k", "samples": 4096, "warmup": 1024, "repeats": 3, "eval_samples": 1000,
           "sim": SIM}
    fixed = {"strategy": "hogwild"}  # the transposed output layer only runs hogwild: same strategy for all
else:
    axes = {"isa": [isas[0], isas[-1]] if len(isas) > 1 else isas, "precision": ["fp32", "bf16"],
            "placement": ["default", "hugepage"]}
    run = {"preset": "tiny", "samples": 256, "warmup": 128, "repeats": 2, "eval_samples": 100,
           "recall_samples": 50, "triad": False, "sim": SIM}
    fixed = {"threads": 1}

grid = ablate.Grid(axes=axes, fixed=fixed, run=run)
print(f"{len(grid.points())} points -> {OUT}")

# %% [markdown]
# Run (or continue: finished points in `OUT` are kept).

# %%
results = ablate.run(grid, OUT, resume=True)
records = results["records"]

# %%
print(f"{'variant':<60} {'samples/s':>12} {'min':>10} {'max':>10} {'P@1':>6} {'huge':>5}")
for r in records:
    print(f"{r['variant']:<60} {r['samples_per_s']:>12,.0f} {r['samples_per_s_min']:>10,.0f} "
          f"{r['samples_per_s_max']:>10,.0f} {r['p_at_1']:>6.3f} {r.get('huge_fraction') or 0:>5.2f}")


# %% [markdown]
# Figures (PNG and SVG in `OUT/figures`): throughput with the speedup over
# the matching scalar point, bytes per sample against time per sample with
# the triad bandwidth of the run, cache misses per source.

# %%
fig_dir = os.path.join(OUT, "figures")
triad = (results.get("triad") or {}).get("value")
plots.show(plots.plot_throughput(records, fig_dir))
plots.show(plots.plot_bytes_vs_time(records, fig_dir, triad))
plots.show(plots.plot_cache(records, fig_dir))

# %% [markdown]
# Where the time goes (median round), per variant.

# %%
for r in records:
    ts = r["time_split"] or {}
    tot = sum(ts.values()) or 1.0
    print(f"{r['variant']:<60} " + ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in ts.items() if v / tot >= 0.02))

# %% [markdown]
# The Markdown/HTML report of the same results (`slide-workbench report OUT`).

# %%
from workbench import report  # noqa: E402

print(report.write_report(OUT))
