"""One ablation point in its own process: `python -m workbench.ablate_worker`.

Owns: building the model of one point (a SLIDE Network, or a baseline from
workbench.baselines), warming it up, timing training rounds, evaluating it
and describing it (kernels, memory, cache behaviour) when asked. The parent
(workbench.ablate) sets the environment before the process starts
(OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, NUMPY_MADVISE_HUGEPAGE: numpy reads
the last one at import, so it cannot be changed inside a process).

Protocol: the first line on stdin is the point's spec (JSON). The worker
loads the data, builds the model, trains `warmup` samples and answers
{"type": "ready"}. Then every line is a command and gets one answer line:

  {"cmd": "round", "round": r, "hw": bool}  train `samples` samples; answers the
                                            round's samples/s, time split, LSH stats
                                            (and hardware counters when hw)
  {"cmd": "finish"}                         evaluate, describe; answers "final", exits
  {"cmd": "curve", "samples": n, "points": k, "eval_samples": e}
                                            a learning curve (compare); answers "curve",
                                            after a {"type": "progress"} line per evaluation
  {"cmd": "quit"} or end of input           exit

Answers are single JSON lines on the original stdout with "ok": true, or
{"ok": false, "error": ...}. Everything else the process prints (Python or C)
goes to stderr, which the parent keeps in OUT/logs/<point>.log.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

ENV_KEYS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMPY_MADVISE_HUGEPAGE", "OMP_PROC_BIND",
            "OMP_WAIT_POLICY", "SLIDE_ISA", "SLIDE_DISABLE_ISA", "SLIDE_ENABLE_ISA", "SLIDE_FORCE_KERNELS")
RECALL_DEFINITION = (
    "recall (recall_at_5): mean over test points of |exact top-5 ∩ LSH top-5| / 5, where exact top-5 are the "
    "5 largest output logits by dense inference and LSH top-5 the 5 largest among the neurons LSH inference "
    "selected (same forward kernels, same scores). An exact top-5 neuron is in the LSH top-5 exactly when LSH "
    "selected it, so this is the fraction of the exact top-5 present in the LSH active set. recall_at_1: the "
    "same for the top-1. label_recall (training): fraction of a sample's true labels found by the hash tables "
    "before labels are added to the active set.")


class _State:
    def __init__(self, spec: dict):
        self.spec = spec
        self.run = spec["run"]
        self.engine = spec.get("engine", "slide")
        self.model = None
        self.cfg = None
        self.train = None
        self.test = None
        self.last_round = None
        self.hw = None  # hardware-counter records of the last counted round
        self.trained = 0


# ---- building -------------------------------------------------------------------------------------

def _load(spec: dict):
    from .data import load_xc

    return load_xc(spec["data"]["train"]), load_xc(spec["data"]["test"])


def _build(st: _State) -> dict:
    from kernels import _core

    from .config import Config

    spec = st.spec
    t0 = time.perf_counter()
    st.train, st.test = _load(spec)
    n_features = max(st.train.n_features, st.test.n_features)
    n_labels = max(st.train.n_labels, st.test.n_labels)
    # the parent refuses files of different shapes; should a spec still pair them, the model spans both
    st.train, st.test = (d.widened(n_features, n_labels) for d in (st.train, st.test))
    st.cfg = Config.from_dict(dict(spec["config"], n_features=n_features, n_labels=n_labels))
    t1 = time.perf_counter()
    info = {"pid": os.getpid(), "env": {k: os.environ.get(k) for k in ENV_KEYS if k in os.environ},
            "omp_max_threads": _core.omp_max_threads(), "placement_axis": spec.get("placement_axis"),
            "data_seconds": t1 - t0}
    if st.engine == "slide":
        from .network import Network

        net = Network(st.cfg)
        st.model = net
        out = net.layers[-1]
        op = "fwd_rows" if out.layout == "rowmajor" else "fwd_cols"
        kern = net.kernels[op].kernel
        info.update(variant_id=f"{op}/{kern.name}/{out.layout}/{net.strategy}", isa_used=kern.isa,
                    strategy=net.strategy, kernels={o: c.kernel.name for o, c in net.kernels.items()})
    else:
        st.model = _build_baseline(st.engine, st.cfg, spec.get("baseline_options") or {})
        label = type(st.model).__name__
        adam = getattr(st.model, "adam_kernel", None)
        info.update(variant_id=f"{label}" + (f"/adam={adam}" if adam else ""), isa_used=None, strategy=None,
                    kernels={"adam": adam} if adam else None)
    info["threads"] = getattr(st.model, "threads", None) or st.cfg.effective_threads()
    info["build_seconds"] = time.perf_counter() - t1
    info["config"] = st.cfg.to_dict()
    return info


def _build_baseline(engine: str, cfg, options: dict):
    """A baseline with the Network-like API (fit / evaluate): workbench.baselines.make."""
    if engine == "plt":
        from . import peers

        return peers.LabelTree(cfg, **options)
    from . import baselines

    return baselines.make(engine, cfg, **options)


# ---- commands ---------------------------------------------------------------------------------------

def _fit(st: _State, n: int) -> dict:
    s = st.model.fit(st.train, max_samples=int(n))
    st.trained += int(s.get("samples", n))
    return s


def _warmup(st: _State) -> float:
    n = int(st.run.get("warmup", 0))
    if n <= 0:
        return 0.0
    t0 = time.perf_counter()
    _fit(st, n)
    return time.perf_counter() - t0


def _round(st: _State, cmd: dict) -> dict:
    n = int(st.run["samples"])
    box = {}

    def go():
        box["s"] = _fit(st, n)

    t_start = time.time()
    if cmd.get("hw"):
        from . import cache

        st.hw = cache.measure_hw(go, repeat=1, warmup=0, samples=n)
        for m in st.hw:
            m["detail"] = dict(m.get("detail") or {}, what="one whole timed training round (every phase, every "
                                                           "thread of the worker), per training sample")
    else:
        go()
    t_end = time.time()
    s = box["s"]
    st.last_round = s
    out = {"type": "round", "round": int(cmd.get("round", 0)), "samples": s.get("samples", n),
           "seconds": s.get("train_seconds"), "samples_per_s": s.get("samples_per_s"),
           "time_split": s.get("time_split"), "lsh": s.get("lsh"), "mean_loss": s.get("mean_loss"),
           "pid": os.getpid(), "t_start": t_start, "t_end": t_end}
    if st.hw is not None and cmd.get("hw"):
        from . import cache

        out["hw"] = cache.by_metric(st.hw, "hw")
    return out


def _recall(net, test, n: int) -> dict:
    import numpy as np

    rows = np.flatnonzero(np.diff(test.label_indptr) > 0)[: int(n)]
    if len(rows) == 0:
        return {}
    exact = net.predict(test, 5, mode="dense", rows=rows)
    approx = net.predict(test, 5, mode="lsh", rows=rows)
    hit5 = [len(set(e[e >= 0]) & set(a[a >= 0])) / max(1, int((e >= 0).sum())) for e, a in zip(exact, approx)]
    hit1 = [float(e[0] >= 0 and e[0] in set(a[a >= 0])) for e, a in zip(exact, approx)]
    return {"recall": float(np.mean(hit5)), "recall_at_1": float(np.mean(hit1)), "recall_samples": int(len(rows)),
            "recall_definition": RECALL_DEFINITION}


def _model_cache(st: _State, mean_active: float, union_rows: float | None) -> tuple:
    """Access-pattern model (workbench.cache.model_access) of the output layer's
    forward kernel for one sample, plus the bytes one training sample asks
    for, per phase. Returns (records, bytes_per_sample, phases)."""
    import numpy as np

    from . import cache

    net, cfg = st.model, st.cfg
    out, first = net.layers[-1], net.layers[0]
    lay = 0 if out.layout == "rowmajor" else 1
    dt_fwd = {"fp32": "f32", "bf16": "bf16", "bf16act": "bf16act"}[cfg.precision]
    dt_bwd = "bf16" if cfg.precision == "bf16" else "f32"
    rng = np.random.default_rng(0)
    n_act = max(1, min(out.n_out, int(round(mean_active or 1))))
    ids = np.sort(rng.choice(out.n_out, n_act, replace=False)) if out.lsh else None
    kw = dict(n_in=out.n_in, n_out=out.n_out, placement=net.placement)
    if ids is None:
        kw["n_active"] = out.n_out
    fwd = cache.model_access("forward", lay, dt_fwd, ids=ids, **kw)
    for m in fwd:
        m["detail"]["what"] = (f"output layer forward kernel, one sample, {n_act} active neurons (the point's mean "
                               f"active-set size; random ids), {out.layout}, {dt_fwd}")
    B = cfg.batch_size
    batched = getattr(net, "strategy", None) == "batched" and bool(union_rows) and out.lsh
    if batched:
        # the batched strategy reads each row of the batch's union once for the forward pass and once
        # in the fused backward+Adam (W, M, V read and written, no gradient buffer); per (sample, row)
        # pair it writes a logit, which softmax reads and rewrites and the backward reads (12 B), and
        # reads its inverted-index entry twice (8 B)
        n_union = max(1, min(out.n_out, int(round(union_rows))))
        uids = np.sort(rng.choice(out.n_out, n_union, replace=False))
        ufwd = cache.model_access("forward", 0, dt_fwd, ids=uids, **kw)
        phases = {"output_forward": cache.by_metric(ufwd)["bytes_moved"] / B + 20.0 * n_act}
        probe = min(1000, out.n_out)
        adam = cache.model_access("adam", 0, "f32", n_in=out.n_in, n_out=probe, ids=np.arange(probe),
                                  adam_bf16_copy=cfg.precision == "bf16", grad_buffer=False)
        phases["output_backward_adam"] = cache.by_metric(adam)["bytes_moved"] / probe * n_union / B
        upd_rows = n_union
    else:
        phases = {"output_forward": cache.by_metric(fwd)["bytes_moved"]}
        bwd = cache.model_access("backward", lay, dt_bwd, ids=ids, want_dx=len(net.layers) > 1, **kw)
        phases["output_backward"] = cache.by_metric(bwd)["bytes_moved"]
    # rows Adam updates per batch: the union of active rows (measured when batched, else the expected number
    # of distinct rows among B draws of n_act); dense update: every row
    if not batched:
        rows_out = out.n_out if cfg.update == "dense" else (
            union_rows if union_rows else out.n_out * (1 - (1 - n_act / out.n_out) ** B))
        probe = min(1000, out.n_out if lay == 0 else out.n_in)
        adam = cache.model_access("adam", 0, "f32", n_in=out.n_in if lay == 0 else out.n_out, n_out=probe,
                                  ids=np.arange(probe), adam_bf16_copy=cfg.precision == "bf16", samples_per_call=1)
        upd_rows = rows_out if lay == 0 else out.n_in
        phases["output_adam"] = cache.by_metric(adam)["bytes_moved"] / probe * upd_rows / B
    # input layer: the first training samples' features (the real sparsity)
    tr = st.train
    a, b = int(tr.indptr[0]), int(tr.indptr[1])
    xi = tr.indices[a:b]
    if len(net.layers) > 1 and len(xi):
        lay0 = 0 if first.layout == "rowmajor" else 1
        kw0 = dict(n_in=first.n_in, n_out=first.n_out, xi=xi, n_active=first.n_out, placement=net.placement)
        phases["input_forward"] = cache.by_metric(cache.model_access("forward", lay0, dt_fwd, **kw0))["bytes_moved"]
        phases["input_backward"] = cache.by_metric(
            cache.model_access("backward", lay0, dt_bwd, want_dx=False, **kw0))["bytes_moved"]
        feats = np.unique(tr.indices[: int(tr.indptr[min(B, len(tr))])])
        width = first.n_out if lay0 == 1 else first.n_in
        rows_in = first.n_in if cfg.update == "dense" else (len(feats) if lay0 == 1 else first.n_out)
        probe0 = 256
        ad0 = cache.model_access("adam", 0, "f32", n_in=width, n_out=probe0, ids=np.arange(probe0),
                                 adam_bf16_copy=cfg.precision == "bf16")
        phases["input_adam"] = cache.by_metric(ad0)["bytes_moved"] / probe0 * rows_in / B
    total = float(sum(phases.values()))
    phases["output_adam_rows_per_batch"] = float(upd_rows)
    phases["output_adam_rows_source"] = ("measured union of active rows, fused backward+Adam (batched strategy)"
                                         if batched else
                                         "every row (dense update)" if cfg.update == "dense" else
                                         "measured union of active rows" if union_rows else
                                         "expected distinct rows among batch_size draws of the active-set size")
    return fwd, total, phases


def _sim_cache(st: _State, mean_active: float) -> list:
    from . import cache

    net = st.model
    out = net.layers[-1]
    op = "fwd_rows" if out.layout == "rowmajor" else "fwd_cols"
    kern = net.kernels[op].kernel.name
    n_act = max(1, min(out.n_out, int(round(mean_active or 1))))
    recs = cache.measure_sim(op="forward", kernel=kern, layout=0 if out.layout == "rowmajor" else 1,
                             n_in=out.n_in, n_out=out.n_out, n_active=n_act, calls=4)
    for m in recs:
        m["detail"] = dict(m.get("detail") or {}, what=f"output layer forward kernel {kern} ({out.layout}), "
                                                       f"{n_act} random active neurons, cold parameters")
    return recs


def _finish(st: _State) -> dict:
    from . import memory

    run = st.run
    out = {"type": "final", "pid": os.getpid(), "train_samples_total": st.trained}
    n_eval = int(run.get("eval_samples", 0))
    model = st.model
    if n_eval > 0:
        ev = (model.evaluate(st.test, mode="dense", max_samples=n_eval) if st.engine == "slide"
              else model.evaluate(st.test, max_samples=n_eval))  # baselines: exact inference only
        out.update(p_at_1=ev["p_at_1"], p_at_3=ev["p_at_3"], p_at_5=ev["p_at_5"], eval_samples=ev["n"],
                   eval_dense=ev)
        if st.engine == "slide":
            ev = model.evaluate(st.test, mode="lsh", max_samples=n_eval)
            out.update(p_at_1_lsh=ev["p_at_1"], p_at_3_lsh=ev["p_at_3"], p_at_5_lsh=ev["p_at_5"], eval_lsh=ev)
    lsh = (st.last_round or {}).get("lsh") or {}
    out["lsh"] = lsh
    if st.last_round:
        out["mean_loss"] = st.last_round.get("mean_loss")
    cache_recs = []
    if st.engine == "slide":
        if int(run.get("recall_samples", 0)) > 0:
            out.update(_recall(model, st.test, int(run["recall_samples"])))
        ma = lsh.get("mean_active") or [None]
        mean_active = ma[-1] if isinstance(ma, list) else ma
        if run.get("model", True):
            try:
                recs, total, phases = _model_cache(st, mean_active, lsh.get("union_rows_per_batch"))
                cache_recs += recs
                out["bytes_per_sample"] = total
                out["bytes_per_sample_phases"] = phases
                out["bytes_per_sample_source"] = ("model: bytes the kernels ask for per training sample, summed "
                                                  "over phases (no reuse between phases assumed)")
            except Exception as e:  # a model failure must not lose the measurement
                cache_recs.append({"metric": "bytes_moved", "value": None, "source": "model", "available": False,
                                   "per": "sample", "reason": f"{type(e).__name__}: {e}", "detail": {}})
        if run.get("sim"):
            try:
                cache_recs += _sim_cache(st, mean_active)
            except Exception as e:
                cache_recs.append({"metric": "l1d_misses", "value": None, "source": "sim", "available": False,
                                   "per": "sample", "reason": f"{type(e).__name__}: {e}", "detail": {}})
        rep = model.memory_report()
        out.update(memory=rep, huge_fraction=rep.get("huge_fraction"), huge_bytes=rep.get("huge_bytes"),
                   thp=rep.get("thp"), kernels={op: c.kernel.name for op, c in model.kernels.items()})
    else:
        rep = getattr(model, "memory_report", None)
        if callable(rep):
            try:
                out["memory"] = rep()
            except Exception:
                pass
    if st.hw:
        cache_recs += st.hw
    out["cache"] = cache_recs
    out["config"] = st.cfg.to_dict()
    out["peak_rss_bytes"] = memory.peak_rss_bytes()
    return out


def _lsh_point(st: "_State", pt: dict, n_eval: int, n_diag: int) -> None:
    """Add a SLIDE curve point's LSH figures: this stretch's label recall and
    active-set sizes, P@1/P@5 by LSH inference, and (n_diag > 0) the table
    diagnostics of workbench.diagnose on n_diag test points."""
    net = st.model
    lsh = net.lsh_stats()  # this stretch of training (before the LSH evaluation adds queries)
    pt["label_recall"] = lsh.get("label_recall")
    pt["mean_active"] = (lsh.get("mean_active") or [None])[-1]
    pt["mean_candidates"] = (lsh.get("mean_candidates") or [None])[-1]
    pt["rehashes"] = lsh.get("rehashes")
    ev = net.evaluate(st.test, mode="lsh", max_samples=n_eval)
    pt["p_at_1_lsh"], pt["p_at_5_lsh"] = ev["p_at_1"], ev["p_at_5"]
    if n_diag > 0:
        from . import diagnose

        d = diagnose.diagnose(net, st.test, samples=n_diag, parts=("tables", "weights", "retrieval", "hubs"))
        r = d.get("retrieval", {})
        pt["diag"] = {"test_label_recall": r.get("label_recall"), "top1_recall": r.get("top1_recall"),
                      "top5_recall": r.get("top5_recall"), "candidates": r.get("candidates"),
                      "exact_top1000_label_recall": (r.get("exact_topk_label_recall") or {}).get("1000"),
                      "stored_fraction": d.get("tables", {}).get("stored_fraction"),
                      "largest_bucket_share": d.get("tables", {}).get("largest_bucket_share"),
                      "common_ratio": d.get("weights", {}).get("common_ratio"),
                      "hub_share": d.get("hubs", {}).get("hub_share"),
                      "drift": diagnose.drift(net), "samples": d.get("samples")}


def _curve(st: _State, cmd: dict, notify=None) -> dict:
    """Train `samples` samples, evaluating P@1 `points` times on the way
    (workbench.baselines.learning_curve: `seconds` is training time only).
    notify(point) after every evaluation (the parent's progress bar)."""
    from . import baselines, memory

    total, k = int(cmd["samples"]), max(1, int(cmd.get("points", 8)))
    n_eval = int(cmd.get("eval_samples", 1000))
    every = max(1, -(-total // k))
    t_all = time.perf_counter()
    n_diag = int(cmd.get("diag_samples", 0))

    def also_lsh(pt):  # SLIDE: LSH inference and the tables' state too (not counted as training time)
        if st.engine == "slide":
            _lsh_point(st, pt, n_eval, n_diag)
        if notify is not None:
            notify({"samples": pt["samples"], "p_at_1": pt["p_at_1"], "seconds": pt["seconds"]})

    if st.engine == "plt":  # trained once, offline: one point (seconds = the whole training)
        s = st.model.fit(st.train, max_samples=total)
        ev = st.model.evaluate(st.test, max_samples=n_eval)
        curve = [{"samples": s["samples"], "seconds": s["train_seconds"], "p_at_1": ev["p_at_1"],
                  "p_at_3": ev["p_at_3"], "p_at_5": ev["p_at_5"], "mean_loss": None,
                  "eval_seconds": ev["eval_seconds"], "samples_seen": s["samples"]}]
        also_lsh(curve[0])
    else:
        curve = baselines.learning_curve(st.model, st.train, st.test, total, every, n_eval, progress=also_lsh)
    seen = curve[-1]["samples"] if curve else 0
    seconds = curve[-1]["seconds"] if curve else 0.0
    last = curve[-1] if curve else {}
    labels = {"slide": "SLIDE", "dense": "dense softmax", "sampled": "sampled softmax",
              "torch_dense": "dense softmax (PyTorch)", "torch_sampled": "sampled softmax (PyTorch)",
              "plt": "label tree (napkinXC PLT)"}
    rec = {"label": cmd.get("label") or labels.get(st.engine, st.engine),
           "curve": curve, "samples": seen, "train_seconds": seconds,
           "samples_per_s": seen / seconds if seconds > 0 else None, "p_at_1": last.get("p_at_1"),
           "p_at_5": last.get("p_at_5"), "eval_samples": n_eval, "wall_seconds": time.perf_counter() - t_all,
           "peak_rss_bytes": memory.peak_rss_bytes(), "config": st.cfg.to_dict(),
           "curve_definition": "workbench.baselines.learning_curve: seconds = wall-clock training time only "
                               "(evaluations excluded); p_at_1 = exact (dense) inference on the first "
                               "eval_samples labelled test points; p_at_1_lsh (SLIDE) = LSH inference"}
    if st.engine == "plt":
        rec["options"] = getattr(st.model, "options", None)
    from .datafacts import prior_p_at_1  # (imports after the worker's environment is set)

    # the floor a curve falls to when one output wins for every input
    rec["majority_p_at_1"] = prior_p_at_1(st.train, st.test, n_eval)
    if st.engine == "slide":
        rec["p_at_1_lsh"] = last.get("p_at_1_lsh")
        rec["lsh"] = {k: last.get(k) for k in ("label_recall", "mean_active", "mean_candidates", "rehashes")}
        rec["kernels"] = {op: c.kernel.name for op, c in st.model.kernels.items()}
    return {"type": "curve", "record": rec}


# ---- main loop --------------------------------------------------------------------------------------

def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (Python or C) goes to the log
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(dict(obj, ok=True), default=_jsonable) + "\n")
        proto.flush()

    def fail(e):
        traceback.print_exc()
        proto.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        proto.flush()

    line = sys.stdin.readline()
    if not line:
        return 0
    try:
        st = _State(json.loads(line))
        info = _build(st)
        info["warmup_seconds"] = _warmup(st)
        info["warmup_samples"] = st.trained
        send(dict(info, type="ready"))
    except Exception as e:
        fail(e)
        return 1
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        c = cmd.get("cmd")
        if c == "quit":
            break
        try:
            if c == "round":
                send(_round(st, cmd))
            elif c == "finish":
                send(_finish(st))
                break
            elif c == "curve":
                send(_curve(st, cmd, notify=lambda pt: send({"type": "progress", **pt})))
            else:
                raise ValueError(f"unknown command {c!r}")
        except Exception as e:
            fail(e)
            return 1
    return 0


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
