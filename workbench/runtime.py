"""The runtime report: what this process runs on and with.

Owns: one dictionary describing the machine (cache sizes from sysfs, CPU
brand from py-cpuinfo, for reporting only), the software versions, OpenMP threads,
the transparent-huge-page mode, and the kernels compiled, usable and chosen.
The CLI prints it (`slide-workbench info`), every JSON result embeds it, and
benchmarks store it in their machine info.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

import numpy as np

from . import memory, variants


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """Brand and flags as py-cpuinfo reports them (about a second; cached).

    These come from /proc/cpuinfo and are for the report only: the kernel
    selection never trusts them (they do not prove the OS enables AVX-512
    state, and they are wrong under emulators). Its cache sizes are left out:
    they can be totals over cores, or wrong; cache_sizes() reads sysfs."""
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception as e:  # py-cpuinfo missing or failing must not break a run
        return {"brand": platform.processor() or "unknown", "error": str(e)}
    keep = ("brand_raw", "vendor_id_raw", "arch", "bits", "count", "hz_advertised_friendly", "family", "model",
            "stepping")
    out = {k: info.get(k) for k in keep if k in info}
    out["flags_simd"] = sorted(f for f in info.get("flags", []) if f.startswith(("avx", "amx", "fma", "f16c", "sse")))
    return out


@functools.lru_cache(maxsize=1)
def cache_sizes() -> dict:
    """{"D1": bytes, "I1": ..., "L2": ..., "L3": ..., "from": source} of CPU 0:
    sysfs first (one core's caches, L3 as the whole shared cache), then lscpu,
    py-cpuinfo last (its figures can be totals over cores, or wrong: 512 KiB
    of L3 on a 32 MiB-L3 EPYC)."""
    from . import cache

    try:
        geo = cache.cache_geometry()
    except RuntimeError as e:
        return {"from": f"unavailable: {e}"}
    out = {k: v["size"] for k, v in geo.items() if isinstance(v, dict)}
    title = {"D1": "L1d", "I1": "L1i"}
    out["text"] = ", ".join(f"{title.get(k, k)} {format_bytes(n)}" for k, n in out.items())
    out["from"] = geo.get("from")
    return out


def format_bytes(n) -> str:
    """Bytes in binary units: 32 KiB, 1 MiB, 1.5 GiB."""
    x = float(n)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if x >= 1 << shift:
            v = x / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{x:.0f} B"


def report(network=None, *, threads: int | None = None, quick: bool = False) -> dict:
    """The runtime report. quick=True skips py-cpuinfo (about a second)."""
    from kernels import _core

    rep = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads if threads is not None else (network.threads if network is not None else None),
        "omp_max_threads": _core.omp_max_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "thp": memory.thp_mode(),
        "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "default"),
        "cpu_features": variants.cpu_features(),
        "capabilities": variants.capabilities(),
        "selection_env": {k: os.environ[k] for k in ("SLIDE_DISABLE_ISA", "SLIDE_ENABLE_ISA", "SLIDE_ISA",
                                                     "SLIDE_FORCE_KERNELS") if k in os.environ},
        "kernels_compiled": [f"{k.op}:{k.name}" for k in variants.compiled_kernels()],
    }
    try:
        from importlib.metadata import version

        rep["slide_workbench"] = version("slide-workbench")
    except Exception:
        rep["slide_workbench"] = "in-place build"
    rep["caches"] = cache_sizes()
    if not quick:
        rep["cpu"] = cpu_info()
    if network is not None:
        rep["kernels_chosen"] = network.kernel_report()
        rep["memory"] = network.memory_report()
    else:
        rep["kernels_chosen_fp32"] = variants.report("fp32")["ops"]
    return rep


def show_runtime(network=None) -> None:
    """Print the runtime report (like numpy.show_runtime)."""
    import json

    print(json.dumps(report(network), indent=2, default=str))


# ---- other load on the machine while this process works ------------------------------------------------

def cpu_snapshot() -> dict | None:
    """The machine's CPU counters and this process's CPU time, now (None
    where /proc/stat is missing). Two snapshots give machine_load()."""
    import time

    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = f + [0] * (8 - len(f))
    t = os.times()
    return {"wall": time.perf_counter(), "busy": user + nice + system + irq + softirq, "steal": steal,
            "own": t.user + t.system, "hz": os.sysconf("SC_CLK_TCK"), "cpus": os.cpu_count() or 1}


def machine_load(before: dict | None, after: dict | None) -> dict | None:
    """CPUs used by other processes (and taken by the hypervisor, `steal`)
    on average between two snapshots. A busy machine slows training in a way
    its own numbers do not show: with every core in use, threads wait at each
    parallel step for a sibling that was descheduled, so phases made of many
    short parallel steps (the union's index, the Adam update) slow down most
    (measured, the README's `make demo` on 2 cores: alone 3,314-3,532
    samples/s; beside a one-core busy loop 1,426, index 0.8-1.1 -> 4.5 s,
    update 0.6 -> 3.8 s, backward+Adam 7.3-7.5 -> 13.6 s)."""
    if not before or not after:
        return None
    wall = after["wall"] - before["wall"]
    if wall < 1.0:  # the counters tick every 10 ms: a shorter stretch says nothing
        return None
    hz = after["hz"]
    busy = (after["busy"] - before["busy"]) / hz
    other = max(0.0, busy - (after["own"] - before["own"])) / wall
    steal = max(0.0, (after["steal"] - before["steal"]) / hz / wall)
    return {"other_cpus": round(other, 2), "steal_cpus": round(steal, 2), "cpus": after["cpus"],
            "seconds": round(wall, 2), "busy": other + steal >= 0.25}


def describe_load(load: dict | None) -> str:
    """machine_load() in words, for a run's summary."""
    if not load:
        return "not measured (training took under a second, or no /proc/stat)"
    text = f"other processes used {load['other_cpus']:.2f} of {load['cpus']} CPUs during training"
    if load["steal_cpus"] >= 0.05:
        text += f", the hypervisor {load['steal_cpus']:.2f}"
    if load["busy"]:
        text += ": a busy machine; samples/s is below what this machine gives idle"
    return text
