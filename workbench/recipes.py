"""Recipes: named sets of SLIDE settings, resolved for the data's shape.

Owns: what `--recipe NAME` means. A recipe is a set of Config values with a
reason for each; `resolve` turns it into the values for a data set of a given
shape (and, for generated data, the preset), and says where every value came
from. Precedence, lowest first: Config's defaults, the recipe, the --config
file, the command line's flags. Nothing here touches data or kernels.

reference  the algorithm and hyper-parameters of the SLIDE paper and its
           reference implementation at the Amazon-670K shape (Config's
           defaults: DWTA K=6, L=50, 2^18 buckets of at most 128 ids, every
           candidate of the L buckets, a random top-up to 1,000 active
           neurons, lr 1e-4, batch 128, rehash every 6,400 samples, new hash
           functions every 128,000) with the implementation's quirks
           (`compat`: bucket ids composed with a 2-bit shift, softmax max
           starting at 0). On generated data other than amazon670k the
           preset's suggested LSH sizes replace the Amazon-670K ones.
best       what the measurements in the README recommend (see "Why the tables
           miss"): the tables choose the active set by counting collisions
           (a neuron is active when it shares a bucket with the input in at
           least 2 of L=100 tables, K from the label count: about 160 neurons
           per bucket, at least K=3), no random top-up, the batch's other
           labels as shared negatives, Adam's learning rate 3e-3. At the
           Amazon-670K shape LSH inference then matches dense inference.
fast       the fastest to a given dense P@1 at the Amazon-670K shape: as best,
           but one bucket per table is enough (every candidate of L=50
           tables, K from the label count so that a bucket holds about 2.5
           neurons). The tables find fewer labels (about a quarter), so LSH
           inference trails dense inference further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import Config, ConfigError, preset_hyperparams

__all__ = ["Recipe", "RECIPES", "DEFAULT", "resolve", "names"]


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    settings: dict = field(default_factory=dict)  # Config values, each with a reason in `why`
    why: dict = field(default_factory=dict)
    per_bucket: float | None = None  # derive K / range_pow from the label count: about this many neurons a bucket
    min_K: int = 1


_SHARED_WHY = {
    "min_active": "no random top-up: uniformly random negatives push every weight row along the mean activation "
                  "(the rows' shared component), cost bandwidth, and teach little",
    "batch_labels": "the batch's labels as negatives for every sample: frequent labels get negative gradient "
                    "(no hub neuron) at no extra bytes (their rows are read anyway)",
    "lr": "tuned by a sweep (1e-3, 3e-3, 1e-2) at the Amazon-670K shape: 1e-4 barely moves in an epoch",
    "range_pow": "3K bits: every DWTA bucket id has its own bucket (no folding)",
}

RECIPES = {
    "reference": Recipe(
        "reference",
        "the SLIDE paper's algorithm and Amazon-670K hyper-parameters, with the reference implementation's quirks",
        settings={"compat": True},
        why={"compat": "the reference implementation's bucket-id shift and softmax shift",
             "*": "Config's defaults are the reference implementation's Amazon-670K settings"}),
    "best": Recipe(
        "best",
        "active = neurons sharing a bucket with the input in >= 2 of 100 tables, plus the batch's labels; "
        "no random top-up; lr 3e-3; table geometry from the label count",
        settings={"min_active": 0, "batch_labels": 1024, "lr": 3e-3, "L": 100, "sampling": "threshold",
                  "threshold": 2},
        why={**_SHARED_WHY,
             "L": "100 tables: enough votes that a neuron's collision count separates the similar from the lucky",
             "sampling": "count collisions over the tables instead of taking every bucket's content: one shared "
                         "bucket is often chance, two of a hundred seldom",
             "threshold": "at about 160 neurons a bucket a random neuron passes with probability ~3e-4 (about 200 "
                          "of 670,091), a neuron aligned with the input far more often; 3 finds fewer labels "
                          "(LSH inference 0.36 against 0.46 after 196,180 samples at the Amazon-670K shape)",
             "K": "log8(labels / 160), rounded, at least 3: coarse buckets (K=4 at 670,091 labels) that the "
                  "collision count then sharpens"},
        per_bucket=160.0, min_K=3),
    "fast": Recipe(
        "fast",
        "every candidate of L=50 fine-grained tables, plus the batch's labels; no random top-up; lr 3e-3",
        settings={"min_active": 0, "batch_labels": 1024, "lr": 3e-3},
        why={**_SHARED_WHY,
             "K": "log8(labels / 2.5), rounded: about 2.5 neurons per bucket, as K=6 gives at 670,091 labels"},
        per_bucket=2.5),
}
DEFAULT = "best"


def names() -> tuple:
    return tuple(RECIPES)


def get(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r} (valid: {', '.join(RECIPES)})") from None


def lsh_geometry(n_labels: int, hash_family: str = "dwta", bin_size: int = 8, per_bucket: float = 2.5,
                 min_K: int = 1) -> dict:
    """K and range_pow giving about `per_bucket` neurons per bucket for
    n_labels neurons (DWTA/WTA: log2(bin_size) bits per hash; SRP: 1 bit;
    MinHash as DWTA), K at least min_K."""
    bits = {"srp": 1}.get(hash_family, max(1, int(round(math.log2(bin_size)))))
    K = int(round(math.log(max(n_labels / per_bucket, 1.0)) / math.log(2 ** bits)))
    floor = min_K if bits > 1 else 3 * min_K  # SRP: 1 bit a hash, 3 for one 8-bin DWTA hash
    K = min(max(K, floor, 1), max(1, 26 // bits))
    return {"K": K, "range_pow": max(1, min(26, K * bits))}


def _batched_shape(base: dict) -> bool:
    """Whether settings `base` (a partial Config dict) leave the network in the
    shape the batched strategy trains: not strategy 'hogwild', a dense last
    hidden layer, a row-major LSH output layer (Network._choose_strategy)."""
    if base.get("strategy") == "hogwild":
        return False
    modes, layouts = base.get("layer_modes"), base.get("layouts")
    if modes is not None:
        modes = tuple(modes)
        if len(modes) < 2 or modes[-1] != "lsh" or modes[-2] != "dense":
            return False
    if layouts is not None and tuple(layouts)[-1] != "rowmajor":
        return False
    return True


def resolve(name: str, *, n_labels: int, preset: str | None = None, base: dict | None = None) -> tuple:
    """Config values of recipe `name` for data with n_labels labels (generated
    data: `preset` names it), on top of `base` (values a caller already chose,
    e.g. hash_family). Returns (values, sources): sources maps each key to
    where its value came from (recipe, preset, shape)."""
    r = get(name)
    values, sources = {}, {}
    if preset and preset != "amazon670k" and not r.per_bucket:
        for k, v in preset_hyperparams(preset).items():
            values[k] = v
            sources[k] = f"preset {preset}"
    for k, v in r.settings.items():
        values[k] = v
        sources[k] = f"recipe {name}"
    if values.get("batch_labels") and not _batched_shape(base or {}):
        values["batch_labels"] = 0
        sources["batch_labels"] = (f"recipe {name}: 0 here, in-batch label negatives need the batched strategy "
                                   "(a dense last hidden layer feeding a row-major LSH output layer)")
    if r.per_bucket:
        fam = (base or {}).get("hash_family", values.get("hash_family", Config.hash_family))
        bins = (base or {}).get("bin_size", values.get("bin_size", Config.bin_size))
        geo = lsh_geometry(n_labels, fam, bins, r.per_bucket, r.min_K)
        for k, v in geo.items():
            values[k] = v
            sources[k] = f"recipe {name}: {n_labels:,} labels"
    return values, sources


def describe(name: str) -> str:
    r = get(name)
    lines = [f"{r.name}: {r.summary}"]
    for k, v in r.settings.items():
        lines.append(f"  {k} = {v!r}: {r.why.get(k, '')}")
    if r.per_bucket:
        lines.append(f"  K, range_pow from the label count: {r.why.get('K')}")
    return "\n".join(lines)
