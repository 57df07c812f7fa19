"""LSH diagnostics: what the output layer's hash tables find, and why they miss.

Owns: measurements of a SLIDE network's output-layer tables against exact
(dense) inference on labelled samples. Each function returns plain dicts of
numbers (JSON-ready); `diagnose` runs them all. Nothing here changes the
network: the fresh-table comparison rebuilds the tables from the current
weights and then puts the old ones back, bit for bit.

What is measured, and what each figure means:

* tables    how full the tables are: the fraction of (neuron, table) pairs
            actually stored (a bucket keeps at most bucket_size ids, the rest
            are dropped), buckets in use, the bucket a typical neuron sits in
            (neuron-weighted mean size) and the largest bucket's share.
* weights   the shared component of the neurons' weight vectors:
            |mean row| / mean |row|, and the mean cosine of a row with the
            mean row. Near 1 means every neuron points the same way, so a
            similarity hash of w_j sees mostly the shared part; the logit
            ranking does not depend on it (w_j.h - mu.h differs from w_j.h by
            a constant per sample).
* geometry  cosine between a sample's h and its labels' weight vectors
            (raw and centred) against random neurons; how much of the
            spread of the logits over neurons comes from the bias.
* retrieval per sample, what the tables choose (no labels, no random top-up):
            label recall, recall of the exact top-1 / top-5 neurons, the
            candidate count, and the ceiling: the label recall of the exact
            top-k by logit (no retriever of k candidates can beat it);
            Spearman correlation of collision count with logit where the
            sampling rule counts collisions.
* hubs      dense inference's top-1 over the samples: the share of the most
            predicted neuron, how many distinct neurons win, how often the
            hub is a true label, and how often the tables retrieve it.
* fresh     retrieval with tables rebuilt from the current weights, and
            drift: the fraction of (neuron, table) bucket ids that changed
            since the last rehash (a sample of neurons). The gap between
            `retrieval` and `fresh` is what staleness costs.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import _core

__all__ = ["diagnose", "tables_report", "weights_report", "retrieval_report", "fresh_report", "exact_scores"]

DRIFT_SAMPLE = 8192  # neurons whose bucket ids are re-hashed to measure drift
CHUNK = 32  # samples per block of exact logits (32 x 670,091 fp32: 86 MB)


def _out(net):
    layer = net.layers[-1]
    if not layer.lsh:
        raise ValueError("the output layer is not LSH-sampled: nothing to diagnose")
    return layer


def _rows(layer) -> np.ndarray:
    """The output layer's (n_out, n_in) weights as a view when row-major, else a copy."""
    W = layer.arrays["W"]
    return W[:, : layer.n_in] if layer.layout == "rowmajor" else np.ascontiguousarray(W[: layer.n_in, : layer.n_out].T)


def tables_report(net) -> dict:
    """Occupancy of the output layer's tables (from the compact tables as stored;
    uncapped bucket sizes from the last rehash's bucket ids when this process made one)."""
    layer = _out(net)
    cfg = net.config
    T = layer.tables
    nb = 1 << T["range_pow"]
    off = T["offsets"].reshape(T["L"], nb + 1)
    capped = np.diff(off.astype(np.int64), axis=1)
    n = layer.n_out
    out = {"L": int(T["L"]), "bucket_size": int(T["capacity"]), "buckets_per_table": nb,
           "stored_fraction": float(capped.sum() / (T["L"] * n)),
           "occupied_buckets": float((capped > 0).sum(axis=1).mean())}
    bids = layer.bids
    if bids is not None and net.rehashes_here:
        sizes = np.stack([np.bincount(bids[t], minlength=nb) for t in range(bids.shape[0])])
        occ = sizes[sizes > 0]
        out.update(neuron_bucket_size=float((sizes.astype(np.float64) ** 2).sum() / (bids.shape[0] * n)),
                   largest_bucket=int(sizes.max()), largest_bucket_share=float(sizes.max(axis=1).mean() / n),
                   bucket_size_p50=float(np.percentile(occ, 50)), bucket_size_p99=float(np.percentile(occ, 99)),
                   overflowing_buckets=float((sizes > cfg.bucket_size).sum(axis=1).mean()))
    return out


def weights_report(net, sample: int = 20000, seed: int = 0) -> dict:
    """The shared component of the output layer's weight rows, and the bias."""
    layer = _out(net)
    W = _rows(layer)
    b = layer.arrays["b"][: layer.n_out]
    mu = W.mean(axis=0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(layer.n_out, min(sample, layer.n_out), replace=False))
    Ws = np.asarray(W[pick], dtype=np.float64)
    norms = np.linalg.norm(Ws, axis=1)
    mun = np.linalg.norm(mu)
    cos_mu = (Ws @ mu) / np.maximum(norms * mun, 1e-30)
    return {"row_norm_mean": float(norms.mean()), "row_norm_cv": float(norms.std() / max(norms.mean(), 1e-30)),
            "mean_row_norm": float(mun), "common_ratio": float(mun / max(norms.mean(), 1e-30)),
            "cos_with_mean_row": float(cos_mu.mean()), "bias_mean": float(b.mean()), "bias_std": float(b.std())}


def exact_scores(net, H: np.ndarray, labels: list, ks=(1, 5, 100, 1000)) -> dict:
    """Exact logits of samples with output inputs H, reduced block by block:
    top-max(ks) neuron ids (sorted by logit), the rank of each label, and the
    spread of w.h and of the logit over all neurons."""
    layer = _out(net)
    W = _rows(layer)
    b = layer.arrays["b"][: layer.n_out]
    kmax = min(max(ks), layer.n_out)
    top = np.zeros((len(H), kmax), np.int64)
    ranks, var_wh, var_z = [], [], []
    for a in range(0, len(H), CHUNK):
        Hc = H[a:a + CHUNK]
        WH = Hc @ W.T
        Z = WH + b
        var_wh.extend(WH.var(axis=1))
        var_z.extend(Z.var(axis=1))
        part = np.argpartition(-Z, kmax - 1, axis=1)[:, :kmax] if kmax < layer.n_out else \
            np.tile(np.arange(layer.n_out), (len(Z), 1))
        for i in range(len(Z)):
            p = part[i][np.argsort(-Z[i, part[i]], kind="stable")]
            top[a + i] = p
            y = labels[a + i]
            ranks.append((Z[i][None, :] > Z[i, y][:, None]).sum(axis=1) if len(y) else np.zeros(0, np.int64))
    return {"top": top, "label_ranks": ranks, "var_wh": np.array(var_wh), "var_z": np.array(var_z)}


def geometry_report(net, H: np.ndarray, labels: list, seed: int = 0) -> dict:
    """Cosine of h with its labels' weight rows (raw and centred) and with random rows."""
    layer = _out(net)
    W = _rows(layer)
    mu = W.mean(axis=0, dtype=np.float64).astype(np.float32)
    rng = np.random.default_rng(seed)
    cl, clc, cr, crc = [], [], [], []
    hn = np.linalg.norm(H, axis=1)
    for i, y in enumerate(labels):
        if hn[i] == 0 or not len(y):
            continue
        h = H[i] / hn[i]
        r = rng.integers(0, layer.n_out, 16)
        for ids, raw, cen in ((y, cl, clc), (r, cr, crc)):
            w = np.asarray(W[ids], dtype=np.float32)
            raw.extend(w @ h / np.maximum(np.linalg.norm(w, axis=1), 1e-30))
            wc = w - mu
            cen.extend(wc @ h / np.maximum(np.linalg.norm(wc, axis=1), 1e-30))
    q = lambda v: {"mean": float(np.mean(v)), "p10": float(np.percentile(v, 10)),  # noqa: E731
                   "p90": float(np.percentile(v, 90))} if len(v) else None
    return {"cos_label": q(cl), "cos_label_centred": q(clc), "cos_random": q(cr), "cos_random_centred": q(crc),
            "zero_h_fraction": float((H == 0).mean()), "samples_with_zero_h": int((hn == 0).sum())}


def retrieval_report(net, data, rows, labels: list, exact: dict, H: np.ndarray, *, cap: int = 65536,
                     retrieved: list | None = None) -> dict:
    """What the tables choose for samples rows (output inputs H), against labels
    and exact inference. retrieved: a list to receive each sample's candidate set."""
    layer = _out(net)
    W = _rows(layer)
    b = layer.arrays["b"]
    counts, ids, cnt = net.candidates(data, rows, cap=cap)
    lab_rec, top1, top5, ncand, rho = [], [], [], [], []
    bound = {k: [] for k in (100, 1000) if k <= exact["top"].shape[1]}
    for i in range(len(rows)):
        m = int(min(counts[i], cap))
        c = ids[i, :m]
        if retrieved is not None:
            retrieved.append(set(c.tolist()))
        ncand.append(int(counts[i]))
        y = labels[i]
        if len(y):
            lab_rec.append(float(np.isin(y, c).mean()))
            for k in bound:
                bound[k].append(float(np.isin(y, exact["top"][i, :k]).mean()))
        t = exact["top"][i]
        top1.append(float(t[0] in set(c.tolist())) if m else 0.0)
        top5.append(float(np.isin(t[:5], c).mean()))
        if m > 2 and cnt[i, :m].max() > cnt[i, :m].min():
            z = np.asarray(W[c], dtype=np.float32) @ H[i] + b[c]
            rho.append(_spearman(cnt[i, :m], z))
    out = {"label_recall": float(np.mean(lab_rec)) if lab_rec else None, "top1_recall": float(np.mean(top1)),
           "top5_recall": float(np.mean(top5)), "candidates": float(np.mean(ncand)),
           "candidates_p90": float(np.percentile(ncand, 90)),
           "exact_topk_label_recall": {str(k): float(np.mean(v)) for k, v in bound.items() if v},
           "samples": int(len(rows))}
    if rho:
        out["count_logit_spearman"] = float(np.mean(rho))
    return out


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    d = math.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / d) if d else 0.0


def hubs_report(net, rows, labels: list, exact: dict, retrieved: list | None = None) -> dict:
    """Dense inference's top-1 neurons over the samples."""
    t1 = exact["top"][:, 0]
    vals, counts = np.unique(t1, return_counts=True)
    hub = int(vals[np.argmax(counts)])
    is_label = np.mean([hub in set(y.tolist()) for y in labels]) if labels else 0.0
    out = {"hub": hub, "hub_share": float(counts.max() / len(t1)), "distinct_top1": int(len(vals)),
           "hub_is_label": float(is_label)}
    if retrieved is not None:
        out["hub_retrieved"] = float(np.mean([hub in r for r in retrieved]))
    return out


def drift(net, sample: int = DRIFT_SAMPLE, seed: int = 0) -> float | None:
    """Fraction of (neuron, table) bucket ids that changed since the last
    rehash, over a sample of neurons (None before this process rehashed)."""
    layer = _out(net)
    if not net.rehashes_here:
        return None
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(layer.n_out, min(sample, layer.n_out), replace=False))
    X = net._probe_rows(layer, ids)
    now = _core.bucket_ids(layer.hasher, _core.hash_rows(layer.hasher, X, 0, len(X),
                                                         net.kernels["hash_rows"].kernel.name))
    return float(np.mean(now != layer.bids[:, ids].T))


def fresh_report(net, data, rows, labels: list, exact: dict, H: np.ndarray) -> dict:
    """Retrieval with tables rebuilt from the current weights (then the old
    tables are restored exactly), and the drift since the last rehash."""
    layer = _out(net)
    d = drift(net)
    saved = {k: layer.tables[k].copy() for k in ("offsets", "ids")}
    bids, mu, probe_bids = layer.bids.copy(), layer.hash_mu, layer.probe_bids
    maint, rehashes_here = dict(net.maint), net.rehashes_here
    try:
        net._rehash(layer)
        out = retrieval_report(net, data, rows, labels, exact, H)
    finally:
        for k, v in saved.items():
            layer.tables[k][...] = v
        layer.bids[...] = bids
        layer.hash_mu, layer.probe_bids = mu, probe_bids
        if net.config.hash_center:
            net._engine.set_hash_center(layer.index, mu)
        net.maint, net.rehashes_here = maint, rehashes_here
    out["drift"] = d
    return out


def diagnose(net, data, *, samples: int = 500, fresh: bool = True, parts=None) -> dict:
    """Every report on the first `samples` labelled samples of data.
    parts: a subset of ('tables', 'weights', 'geometry', 'retrieval', 'hubs', 'fresh')."""
    parts = set(parts or ("tables", "weights", "geometry", "retrieval", "hubs", "fresh"))
    if not fresh:
        parts.discard("fresh")
    rows = np.flatnonzero(np.diff(data.label_indptr) > 0)[: int(samples)].astype(np.int64)
    labels = [data.labels[data.label_indptr[r]:data.label_indptr[r + 1]].astype(np.int64) for r in rows]
    out = {"samples": int(len(rows)), "samples_seen": int(net.samples_seen), "data": data.source}
    if "tables" in parts:
        out["tables"] = tables_report(net)
    if "weights" in parts:
        out["weights"] = weights_report(net)
    need_h = parts & {"geometry", "retrieval", "hubs", "fresh"}
    if not need_h or not len(rows):
        return out
    H = net.hidden(data, rows)
    exact = exact_scores(net, H, labels)
    out["logit_spread"] = {"var_wh": float(exact["var_wh"].mean()), "var_logit": float(exact["var_z"].mean()),
                           "bias_var": float(_out(net).arrays["b"][: _out(net).n_out].var())}
    if "geometry" in parts:
        out["geometry"] = geometry_report(net, H, labels)
    retrieved = []
    if "retrieval" in parts or "hubs" in parts:
        out["retrieval"] = retrieval_report(net, data, rows, labels, exact, H, retrieved=retrieved)
    if "hubs" in parts:
        out["hubs"] = hubs_report(net, rows, labels, exact, retrieved)
    if "fresh" in parts:
        out["fresh"] = fresh_report(net, data, rows, labels, exact, H)
    return out
