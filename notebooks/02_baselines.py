# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # SLIDE against dense and sampled softmax
#
# The same network (same initial weights, same Adam, same data order)
# trained three ways for the same number of samples: SLIDE (LSH-selected
# output neurons), a full softmax over every label, and a sampled softmax
# (true labels plus uniform negatives). P@1 is evaluated along the way;
# the clock counts training time only. One fresh worker process per method
# (`workbench.ablate.compare`, also `slide-workbench compare`).
#
# Small by default (`tiny`); `SLIDE_NOTEBOOK_SCALE=full` trains on the
# Amazon-670K shape, where the full softmax pays for all 670,091 outputs
# of every sample.

# %%
import os

import workbench
from workbench import ablate, plots

workbench.show_runtime()

# %%
FULL_SCALE = os.environ.get("SLIDE_NOTEBOOK_SCALE", "small") == "full"
OUT = os.path.join(os.environ.get("SLIDE_NOTEBOOK_OUT", "notebook-results"),
                   "02_baselines-" + ("full" if FULL_SCALE else "small"))
if FULL_SCALE:
    kw = dict(preset="amazon670k", samples=100_000, curve_points=10, eval_samples=2000)
else:
    kw = dict(preset="tiny", samples=4000, curve_points=4, eval_samples=200, threads=1)

results = ablate.compare(OUT, **kw)

# %%
for r in results["records"] + results["baselines"]:
    last = r["curve"][-1]
    print(f"{r['label']:<18} P@1 {last['p_at_1']:.4f} after {last['samples']:>8,} samples "
          f"in {last['seconds']:>8.1f} s training ({r['samples_per_s'] or 0:>10,.0f} samples/s)")


# %% [markdown]
# Accuracy against wall-clock training time (left) and against samples seen
# (right).

# %%
plots.show(plots.plot_convergence(results["records"] + results["baselines"], os.path.join(OUT, "figures")))

# %% [markdown]
# Time to reach the best P@1 the slowest-learning method reaches: how much
# sooner each method gets there.

# %%
curves = results["records"] + results["baselines"]
target = min(max(p["p_at_1"] for p in r["curve"]) for r in curves)
for r in curves:
    hit = next((p for p in r["curve"] if p["p_at_1"] >= target), None)
    print(f"{r['label']:<18} reaches P@1 {target:.3f} after "
          + (f"{hit['seconds']:.2f} s, {hit['samples']:,} samples" if hit else "never"))
