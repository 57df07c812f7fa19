# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # LSH quality: recall and active-set size across hash families, K and L
#
# For each hash family and (K, L): how many output neurons LSH selects per
# sample (the work) and how many of the ones that matter it finds:
#
# * `recall`: the fraction of the exact top-5 neurons (largest logits by
#   dense inference) that LSH inference selects, on test points after
#   training (see `workbench.ablate_worker.RECALL_DEFINITION`);
# * `label_recall`: during training, the fraction of a sample's true labels
#   the hash tables return before labels are added to the active set;
# * P@1 by LSH inference against exact inference, and samples/s.
#
# Small by default (`tiny`); `SLIDE_NOTEBOOK_SCALE=full` runs the
# Amazon-670K shape (a long run).

# %%
import os

import workbench
from workbench import ablate, plots

workbench.show_runtime()

# %%
FULL_SCALE = os.environ.get("SLIDE_NOTEBOOK_SCALE", "small") == "full"
OUT = os.path.join(os.environ.get("SLIDE_NOTEBOOK_OUT", "notebook-results"),
                   "03_lsh_quality-" + ("full" if FULL_SCALE else "small"))
if FULL_SCALE:
    axes = {"hash_family": ["dwta", "wta", "srp", "minhash"], "K": [4, 6, 8], "L": [25, 50, 100]}
    run = {"preset": "amazon670k", "samples": 8192, "warmup": 16384, "repeats": 1, "eval_samples": 1000,
           "recall_samples": 500, "interleave": "none", "hw": False}
    fixed = {}
else:
    axes = {"hash_family": ["dwta", "srp"], "K": [2, 3], "L": [10]}
    run = {"preset": "tiny", "samples": 512, "warmup": 512, "repeats": 1, "eval_samples": 200,
           "recall_samples": 100, "interleave": "none", "hw": False, "triad": False}
    fixed = {"threads": 1, "min_active": 0}  # no random top-up: the active set is what LSH found

grid = ablate.Grid(axes=axes, fixed=fixed, run=run)
results = ablate.run(grid, OUT, resume=True)
records = results["records"]

# %%
print(f"{'family':<8} {'K':>2} {'L':>4} {'active':>8} {'recall':>7} {'label rec.':>10} {'P@1 lsh':>8} "
      f"{'P@1 exact':>9} {'samples/s':>10}")
for r in sorted(records, key=lambda r: (r["hash_family"], r["K"], r["L"])):
    print(f"{r['hash_family']:<8} {r['K']:>2} {r['L']:>4} {r['mean_active']:>8,.0f} {r['recall']:>7.3f} "
          f"{r['label_recall'] or 0:>10.3f} {r['p_at_1_lsh']:>8.3f} {r['p_at_1']:>9.3f} {r['samples_per_s']:>10,.0f}")


# %% [markdown]
# Recall against active-set size, one line per hash family; and P@1
# against throughput over (K, L) with the Pareto frontier, once by exact
# (dense) inference and once by LSH inference (the y-axis says which).

# %%
fig_dir = os.path.join(OUT, "figures")
plots.show(plots.plot_recall(records, fig_dir))
plots.show(plots.plot_accuracy_frontier(records, fig_dir))
plots.show(plots.plot_accuracy_frontier(records, fig_dir, metric="p_at_1_lsh", name="accuracy_frontier_lsh"))
