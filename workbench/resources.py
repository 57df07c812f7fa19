"""Memory estimates: what a configuration will allocate, before it does.

Owns: an itemised estimate of the bytes a network of a given config needs
(parameters, Adam state, gradients, the bf16 copy, LSH tables and rehash
scratch, per-thread scratch, the batched layer's buffers) plus a data set's
arrays, and the check against the memory this process can still get (the
smallest of the machine's available memory, the RLIMIT_AS headroom and the
cgroup limit's headroom: workbench.memory.memory_limits). The
formulas mirror the allocations in workbench.network and kernels._core
(Engine.finalize, Engine.setup_batch); tests compare them with measured RSS.
"""

from __future__ import annotations

from .config import Config
from .memory import available_memory

ROW_ALIGN = 16


class MemoryLimitError(MemoryError):
    """A configuration needs more memory than the machine has available."""


def _ld(n: int) -> int:
    return -(-n // ROW_ALIGN) * ROW_ALIGN


def estimate(cfg: Config, *, data_bytes: int = 0, max_labels: int = 64, threads: int | None = None) -> dict:
    """Itemised byte counts for a network built from cfg (plus data_bytes)."""
    T = threads or cfg.effective_threads()
    items: dict[str, int] = {}
    n_in = cfg.n_features
    widths = cfg.widths
    max_out, max_H, max_L = 64, 1, 1
    for i, n_out in enumerate(widths):
        layout = cfg.layouts[i]
        rows, cols = (n_out, n_in) if layout == "rowmajor" else (n_in, n_out)
        mat = rows * _ld(cols) * 4
        lsh = cfg.layer_modes[i] == "lsh"
        items[f"layer{i}.weights+adam+grad"] = 4 * mat + 4 * 4 * n_out + 4 * rows + 4 * n_out
        if cfg.precision == "bf16":
            items[f"layer{i}.bf16_copy"] = mat // 2 + 64
        if lsh:
            nb = 1 << cfg.range_pow
            items[f"layer{i}.tables"] = cfg.L * n_out * 4 + cfg.L * (nb + 1) * 4
            items[f"layer{i}.rehash_scratch"] = cfg.L * n_out * 4 + T * nb * 4
            if cfg.hash_center:  # the centre, and each thread's block of centred rows (256 rows)
                items[f"layer{i}.hash_center"] = 4 * n_in + T * 256 * 4 * n_in
            if cfg.rehash_drift > 0:  # probe neurons' bucket ids
                items[f"layer{i}.drift_probe"] = min(cfg.drift_probe, n_out) * (8 + 8 * cfg.L)
            max_out = max(max_out, n_out)
            max_H = max(max_H, cfg.K * cfg.L)
            max_L = max(max_L, cfg.L)
        # per-thread activations, gradients, active ids (and the LSH marks: epoch and collision count)
        per_thread = 16 * n_out + (4 * n_out + 8 * cfg.K * cfg.L if lsh else 0)
        if lsh and cfg.hash_family == "wta" and (i == 0 or cfg.layer_modes[i - 1] == "lsh"):
            per_thread += 4 * n_in
        items[f"layer{i}.thread_scratch"] = T * per_thread
        n_in = n_out
    items["thread_scratch.shared"] = T * (4 * (max_H + 2 * max_L + 2 * max_out + 2) + 2048 * 4)
    out = widths[-1]
    batched = (cfg.strategy != "hogwild" and len(widths) >= 2 and cfg.layer_modes[-1] == "lsh"
               and cfg.layer_modes[-2] == "dense" and cfg.layouts[-1] == "rowmajor")
    if batched:
        B = cfg.batch_size
        cap = min(out, max(cfg.L * cfg.bucket_size, cfg.top_k, cfg.min_active) + max_labels + cfg.batch_labels)
        d = widths[-2]
        # H, dH per thread, activations; A, Z, es, epos, E (B x cap each); cnt, urows, uoff; the batch's
        # labels and their stamps; per-thread row buffers
        items["batched_layer"] = (4 * B * _ld(d) * (1 + T) + 4 * B * sum(cfg.hidden) + 20 * B * cap + 12 * out
                                  + (4 * out + 4 * cfg.batch_labels if cfg.batch_labels else 0)
                                  + 4 * T * (2 * _ld(d) + B))
    items["data"] = int(data_bytes)
    total = sum(items.values())
    return {"total_bytes": total, "items": items, "threads": T}


def dataset_bytes(ds) -> int:
    return sum(a.nbytes for a in (ds.indptr, ds.indices, ds.values, ds.label_indptr, ds.labels))


def with_available(est: dict, available: int | None = None) -> dict:
    """est plus available_bytes and available_source (which limit binds:
    MemAvailable, RLIMIT_AS or cgroup; 'given' for an explicit figure)."""
    if available is None:
        est["available_bytes"], est["available_source"] = available_memory(with_source=True)
    else:
        est["available_bytes"], est["available_source"] = available, "given"
    return est


def fits(est: dict, headroom: float = 0.9) -> bool:
    return est.get("available_bytes") is None or est["total_bytes"] <= headroom * est["available_bytes"]


def _available_text(est: dict) -> str:
    src = est.get("available_source")
    return f"{est['available_bytes'] / 2**30:.2f} GiB" + (f" ({src})" if src and src != "given" else "")


def check(cfg: Config, *, data_bytes: int = 0, max_labels: int = 64, headroom: float = 0.9,
          available: int | None = None) -> dict:
    """Raise MemoryLimitError when the estimate exceeds `headroom` of the
    available memory, naming the figures and what to change."""
    est = with_available(estimate(cfg, data_bytes=data_bytes, max_labels=max_labels), available)
    if not fits(est, headroom):
        big = sorted(est["items"].items(), key=lambda kv: -kv[1])[:3]
        parts = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in big)
        raise MemoryLimitError(
            f"this configuration needs about {est['total_bytes'] / 2**30:.2f} GiB but {_available_text(est)} "
            f"is available (largest: {parts}); reduce the layer widths, L or range_pow, the batch size or the "
            f"number of threads, or free memory")
    return est


def allocation_failure(cfg: Config, name: str, error: BaseException) -> str:
    """Message for an allocation the system refused although the estimate fit."""
    est = with_available(estimate(cfg))
    why = getattr(error, "strerror", None) or "out of memory"
    avail = _available_text(est) if est["available_bytes"] is not None else "an unknown amount"
    return (f"allocating {name} failed ({why}): this configuration needs about {est['total_bytes'] / 2**30:.2f} "
            f"GiB in all ({avail} available now); reduce the layer widths, L or range_pow, the "
            f"batch size or the number of threads, or free memory")


def format_estimate(est: dict) -> str:
    t = est["threads"]
    lines = [f"estimated memory: {est['total_bytes'] / 2**30:.3f} GiB ({t} thread{'s' if t != 1 else ''})"]
    for k, v in sorted(est["items"].items(), key=lambda kv: -kv[1]):
        if v:
            lines.append(f"  {k:<32} {v / 2**20:>10.1f} MiB")
    if est.get("available_bytes") is not None:
        lines.append(f"available: {_available_text(est)}")
    return "\n".join(lines)
