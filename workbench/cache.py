"""Cache behaviour of the kernels, from three sources that are never mixed.

Owns: measuring what a kernel does to the memory hierarchy, tagging every
number with where it came from, and refusing to invent a number a source
cannot give. A measurement is a dict

    {"metric": "l1d_misses", "value": 1234.0, "per": "sample", "source": "hw",
     "available": True, "detail": {...}}

and an unavailable one has ``"value": None, "available": False`` and a
``"reason"``. Sources:

``hw``     counters of this machine through perf_event_open(2): hardware
           events (L1D read misses, LLC misses, dTLB load misses,
           instructions, cycles; user space only) and software events (page
           faults, minor / major), around a Python callable
           (:func:`measure_hw`). Counted: every thread of this process that
           exists when the counters open (scope="process") or only the
           calling thread (scope="thread"), plus, through ``inherit``, the
           threads those create while the counters are open. OpenMP workers
           are created lazily at the first parallel region and then kept: if
           they exist already they are counted by scope="process" (one
           counter per thread; their spin-waiting counts too), with
           scope="thread" they are not. Where the
           CPU exposes no PMU (most VMs) the hardware events are reported
           unavailable with the errno; software events still work and
           :func:`hugepage_fault_check` uses them to confirm huge pages.
``sim``    valgrind's cache simulator (cachegrind) on kernel calls in a
           subprocess (:func:`measure_sim`), with the cache geometry of this
           CPU given explicitly (read from sysfs: valgrind's autodetection
           can be wrong in VMs). The numbers are the self cost of the kernel's
           C function (``slide_fwd_rows_f32_scalar`` ...): kernels are static
           functions reached through the dispatch table, so they are never
           inlined into their callers, and their helpers are inlined into
           them. Not callgrind with --toggle-collect: valgrind 3.19's
           callgrind does not simulate the loads of AVX ``vmaskmovps``
           (guarded loads; the AVX2 row-major kernel's weight loads vanish
           from its counts, cachegrind sees them), and cachegrind 3.19 has no
           --toggle-collect. Before the calls the simulated caches are swept
           with a buffer of twice the LL (parameters cold), then the inputs
           are read (warm). valgrind simulates two levels, D1 and LL (an
           inclusive LRU write-allocate hierarchy, no prefetcher); the L2 is
           not simulated unless asked for as the LL (``ll_level=2``). It
           cannot execute AVX-512 (``avx512@emu`` can be simulated: the same
           kernel source, marked not representative).
``model``  the kernels' access pattern worked out by hand
           (:func:`model_access`): bytes read and written per array, distinct
           64-byte lines (the compulsory misses of a cold cache), distinct
           4 KiB and 2 MiB pages, and whether they fit the dTLB reach under
           stated assumptions.

:func:`triad_bandwidth` measures the memory-bandwidth roof that benchmarks
draw (a STREAM-style triad with numpy; what it counts is in its detail).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fnmatch
import glob
import json
import mmap
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from . import memory

SOURCES = ("hw", "sim", "model")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rec(metric, value, source, per="sample", detail=None, unit=None) -> dict:
    r = {"metric": metric, "value": None if value is None else float(value), "per": per, "source": source,
         "available": True, "detail": dict(detail or {})}
    if unit:
        r["unit"] = unit
    return r


def _unavailable(metric, source, reason, per="sample", detail=None) -> dict:
    return {"metric": metric, "value": None, "per": per, "source": source, "available": False, "reason": reason,
            "detail": dict(detail or {})}


def by_metric(records, source=None) -> dict:
    """{metric: value} of the available records (of one source if given)."""
    return {r["metric"]: r["value"] for r in records
            if r.get("available", True) and (source is None or r.get("source") == source)}


# =====================================================================================
# hw: perf_event_open
# =====================================================================================

PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_HW_CACHE = 0, 1, 3
_HW_CPU_CYCLES, _HW_INSTRUCTIONS, _HW_CACHE_MISSES = 0, 1, 3
_SW_PAGE_FAULTS, _SW_PAGE_FAULTS_MIN, _SW_PAGE_FAULTS_MAJ = 2, 5, 6
_C_L1D, _C_LL, _C_DTLB = 0, 2, 3
_OP_READ, _RES_MISS = 0, 1
_FORMAT_TOTAL_TIME_ENABLED, _FORMAT_TOTAL_TIME_RUNNING = 1, 2
_FLAG_DISABLED, _FLAG_INHERIT, _FLAG_EXCLUDE_KERNEL, _FLAG_EXCLUDE_HV = 1 << 0, 1 << 1, 1 << 5, 1 << 6
_IOC_ENABLE, _IOC_DISABLE, _IOC_RESET = 0x2400, 0x2401, 0x2403
PERF_ATTR_SIZE_VER5 = 112  # every field up to sample_max_stack (Linux >= 4.1 accepts it)
# perf_event_open syscall numbers per architecture
_SYSCALL_NR = {"x86_64": 298, "amd64": 298, "i386": 336, "i686": 336, "aarch64": 241, "arm64": 241,
               "riscv64": 241, "ppc64le": 319, "ppc64": 319, "s390x": 331, "armv7l": 364}


def _hw_cache(cache, op, result):
    return cache | (op << 8) | (result << 16)


# name -> (type, config, kind, fallback); hardware events first
HW_EVENTS = {
    "l1d_read_misses": (PERF_TYPE_HW_CACHE, _hw_cache(_C_L1D, _OP_READ, _RES_MISS), "hardware", None),
    "llc_misses": (PERF_TYPE_HW_CACHE, _hw_cache(_C_LL, _OP_READ, _RES_MISS), "hardware", "llc_misses_generic"),
    "llc_misses_generic": (PERF_TYPE_HARDWARE, _HW_CACHE_MISSES, "hardware", None),
    "dtlb_load_misses": (PERF_TYPE_HW_CACHE, _hw_cache(_C_DTLB, _OP_READ, _RES_MISS), "hardware", None),
    "instructions": (PERF_TYPE_HARDWARE, _HW_INSTRUCTIONS, "hardware", None),
    "cycles": (PERF_TYPE_HARDWARE, _HW_CPU_CYCLES, "hardware", None),
}
SW_EVENTS = {
    "page_faults": (PERF_TYPE_SOFTWARE, _SW_PAGE_FAULTS, "software", None),
    "minor_faults": (PERF_TYPE_SOFTWARE, _SW_PAGE_FAULTS_MIN, "software", None),
    "major_faults": (PERF_TYPE_SOFTWARE, _SW_PAGE_FAULTS_MAJ, "software", None),
}
ALL_EVENTS = {**HW_EVENTS, **SW_EVENTS}
DEFAULT_HW = ("l1d_read_misses", "llc_misses", "dtlb_load_misses", "instructions", "cycles")
DEFAULT_SW = ("page_faults", "minor_faults", "major_faults")


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr (include/uapi/linux/perf_event.h), through config3 (136 bytes).
    The 64 bit-field flags (disabled, inherit, ..., exclude_kernel, ...) are one u64."""

    _fields_ = [
        ("type", ctypes.c_uint32),  # 0
        ("size", ctypes.c_uint32),  # 4
        ("config", ctypes.c_uint64),  # 8
        ("sample_period", ctypes.c_uint64),  # 16 (union with sample_freq)
        ("sample_type", ctypes.c_uint64),  # 24
        ("read_format", ctypes.c_uint64),  # 32
        ("flags", ctypes.c_uint64),  # 40: disabled:1 inherit:1 pinned:1 exclusive:1 exclude_user:1 exclude_kernel:1 ...
        ("wakeup_events", ctypes.c_uint32),  # 48
        ("bp_type", ctypes.c_uint32),  # 52
        ("config1", ctypes.c_uint64),  # 56
        ("config2", ctypes.c_uint64),  # 64
        ("branch_sample_type", ctypes.c_uint64),  # 72
        ("sample_regs_user", ctypes.c_uint64),  # 80
        ("sample_stack_user", ctypes.c_uint32),  # 88
        ("clockid", ctypes.c_int32),  # 92
        ("sample_regs_intr", ctypes.c_uint64),  # 96
        ("aux_watermark", ctypes.c_uint32),  # 104
        ("sample_max_stack", ctypes.c_uint16),  # 108
        ("reserved_2", ctypes.c_uint16),  # 110
        ("aux_sample_size", ctypes.c_uint32),  # 112
        ("reserved_3", ctypes.c_uint32),  # 116
        ("sig_data", ctypes.c_uint64),  # 120
        ("config3", ctypes.c_uint64),  # 128
    ]


_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def _errno_text(e: int) -> str:
    return f"errno {e} ({_errno.errorcode.get(e, '?')}: {os.strerror(e)})"


def _paranoid() -> str:
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def perf_event_open(type_: int, config: int, pid: int = 0, cpu: int = -1, *, inherit: bool = True,
                    exclude_kernel: bool = True) -> int:
    """Open one disabled counting event; returns the fd or raises OSError(errno)."""
    if sys.platform != "linux":
        raise OSError(_errno.ENOSYS, "perf_event_open is Linux only")
    nr = _SYSCALL_NR.get(platform.machine().lower())
    if nr is None:
        raise OSError(_errno.ENOSYS, f"no perf_event_open syscall number known for {platform.machine()}")
    attr = PerfEventAttr()
    attr.type = type_
    attr.size = PERF_ATTR_SIZE_VER5
    attr.config = config
    attr.read_format = _FORMAT_TOTAL_TIME_ENABLED | _FORMAT_TOTAL_TIME_RUNNING
    attr.flags = _FLAG_DISABLED | (_FLAG_INHERIT if inherit else 0) | (
        (_FLAG_EXCLUDE_KERNEL | _FLAG_EXCLUDE_HV) if exclude_kernel else 0)
    fd = _syscall()(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                    ctypes.c_int(-1), ctypes.c_ulong(0))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(fd)


def _ioctl(fd: int, req: int) -> None:
    import fcntl

    fcntl.ioctl(fd, req, 0)


def _read_counter(fd: int) -> tuple:
    raw = os.read(fd, 24)
    value, enabled, running = np.frombuffer(raw, dtype=np.uint64)[:3].tolist()
    return value, enabled, running


def hw_available(event: str = "instructions") -> tuple:
    """(True, '') if a hardware counter can be opened for this thread, else (False, reason)."""
    t, cfg, _, _ = ALL_EVENTS[event]
    try:
        fd = perf_event_open(t, cfg, 0, -1, inherit=False)
    except OSError as e:
        return False, _open_failure(event, e)
    os.close(fd)
    return True, ""


def _open_failure(event: str, e: OSError) -> str:
    code = e.errno or 0
    why = f"perf_event_open({event}) failed: {_errno_text(code)}"
    if code in (_errno.ENOENT, _errno.ENODEV, _errno.EOPNOTSUPP):
        why += "; this CPU/VM exposes no PMU event for it (typical of virtual machines)"
    elif code in (_errno.EACCES, _errno.EPERM):
        why += f"; not permitted (kernel.perf_event_paranoid={_paranoid()})"
    elif code == _errno.ENOSYS:
        why += "; no perf_event_open here"
    return why


def _threads(scope: str) -> list:
    if scope == "thread":
        return [0]  # pid 0: the calling thread
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def measure_hw(fn, repeat: int = 5, *, events=DEFAULT_HW + DEFAULT_SW, scope: str = "process", warmup: int = 1,
               samples: float | None = None) -> list:
    """Count `events` around `fn()` with perf_event_open, user space only.

    fn runs `warmup` times uncounted, then `repeat` times counted (counters
    reset before each). The value is the median per call, or per sample when
    `samples` (samples processed by one call) is given. scope: "process"
    (one counter per thread existing now, each inherited by threads it
    creates later) or "thread" (the calling thread and threads it creates).
    Events that cannot be opened come back unavailable with the errno."""
    if scope not in ("process", "thread"):
        raise ValueError("scope must be 'process' or 'thread'")
    per = "sample" if samples else "call"
    tids = _threads(scope)
    opened, out = {}, {}
    for name in events:
        if name not in ALL_EVENTS:
            raise ValueError(f"unknown event {name!r} (known: {', '.join(ALL_EVENTS)})")
        cand = name
        while cand is not None:
            t, cfg, kind, fallback = ALL_EVENTS[cand]
            fds, err = [], None
            for tid in tids:
                try:
                    fds.append(perf_event_open(t, cfg, tid, -1, inherit=True, exclude_kernel=(kind == "hardware")))
                except OSError as e:
                    if e.errno == _errno.ESRCH and tid != 0:
                        continue  # that thread exited meanwhile
                    err = e
                    break
            if err is None and fds:
                opened[name] = (cand, kind, t, cfg, fds)
                break
            for fd in fds:
                os.close(fd)
            reason = _open_failure(cand, err) if err is not None else "no thread to count"
            out[name] = out[name] + f"; fallback {reason}" if name in out else reason
            cand = fallback
        if name in opened:
            out.pop(name, None)
    values = {name: [] for name in opened}
    scaling = {name: [] for name in opened}
    try:
        for _ in range(warmup):
            fn()
        for _ in range(repeat):
            for _, _, _, _, fds in opened.values():
                for fd in fds:
                    _ioctl(fd, _IOC_RESET)
            for _, _, _, _, fds in opened.values():
                for fd in fds:
                    _ioctl(fd, _IOC_ENABLE)
            fn()
            for _, _, _, _, fds in opened.values():
                for fd in fds:
                    _ioctl(fd, _IOC_DISABLE)
            for name, (_, _, _, _, fds) in opened.items():
                tot, en, ru = 0.0, 0, 0
                for fd in fds:
                    v, e, r = _read_counter(fd)
                    # multiplexed counters: scale by enabled / running time
                    tot += v * (e / r) if r and r < e else float(v)
                    en, ru = en + e, ru + r
                values[name].append(tot)
                scaling[name].append(ru / en if en else 1.0)
    finally:
        for _, _, _, _, fds in opened.values():
            for fd in fds:
                os.close(fd)
    recs = []
    for name in events:
        common = {"event": name, "scope": scope, "threads_counted": len(tids), "inherit": True,
                  "repeat": repeat, "warmup": warmup}
        if name in opened:
            cand, kind, t, cfg, fds = opened[name]
            vals = values[name]
            med = statistics.median(vals) if vals else None
            div = float(samples) if samples else 1.0
            d = dict(common, event_opened=cand, type=kind, perf_type=t, config=hex(cfg),
                     exclude_kernel=(kind == "hardware"), values_per_call=vals,
                     min=min(vals) / div if vals else None, max=max(vals) / div if vals else None,
                     running_fraction=min(scaling[name]) if scaling[name] else None,
                     samples_per_call=samples or None)
            recs.append(_rec(name, None if med is None else med / div, "hw", per, d))
        else:
            recs.append(_unavailable(name, "hw", out.get(name, "not opened"), per,
                                     dict(common, type=ALL_EVENTS[name][2])))
    return recs


# ---- huge pages, confirmed by page faults --------------------------------------

def _touch(buf: np.ndarray, step: int = 4096) -> None:
    buf[::step] = 1


def _control_4k(nbytes: int):
    """An anonymous mapping with MADV_NOHUGEPAGE: the 4 KiB-page control."""
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    advised = False
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            mm.madvise(mmap.MADV_NOHUGEPAGE)
            advised = True
        except OSError:
            pass
    return mm, np.frombuffer(mm, dtype=np.uint8), advised


def hugepage_fault_check(mib: int = 32) -> list:
    """Page faults (software perf events) for touching `mib` MiB of a hugepage-placed
    buffer (workbench.memory, placement 'hugepage') and of a 4 KiB-page control
    (anonymous mmap with MADV_NOHUGEPAGE), one write per 4 KiB.

    Expected: mib*256 faults for the control, about mib/2 when 2 MiB pages are
    granted. Returns one 'page_faults' record per buffer (per="touch of N MiB"),
    with what /proc/self/smaps says was backed by huge pages."""
    nbytes = int(mib) << 20
    thp = memory.thp_mode()
    per = f"touch of {mib} MiB"
    base = {"mib": mib, "thp": thp, "expected_4k": nbytes // 4096, "expected_2m": nbytes // memory.HUGE,
            "method": "write one byte per 4 KiB, PERF_COUNT_SW_PAGE_FAULTS of the calling thread"}
    if thp == "never":
        return [_unavailable("page_faults", "hw", "transparent huge pages are 'never' on this machine", per,
                             dict(base, placement=p)) for p in ("hugepage", "4k_control")]
    out = []
    buf = memory.allocate(nbytes, np.uint8, "hugepage", name="fault_check")
    mm, ctrl, advised = _control_4k(nbytes)
    try:
        for placement, arr in (("hugepage", buf.array), ("4k_control", ctrl)):
            recs = measure_hw(lambda a=arr: _touch(a), repeat=1, warmup=0, events=("page_faults",), scope="thread")
            backing = memory.huge_pages_backing({placement: arr})[placement]
            r = recs[0]
            r["detail"].update(base, placement=placement, huge_bytes=backing.get("huge_bytes"),
                               huge_fraction=backing.get("huge_fraction"),
                               madv_nohugepage=advised if placement == "4k_control" else None)
            out.append(r)
        del arr
    finally:
        del ctrl
        try:
            mm.close()
        except BufferError:
            pass  # a view is still alive somewhere: the mapping goes with it
    return out


# =====================================================================================
# sim: valgrind's cache simulator (cachegrind) on kernel calls
# =====================================================================================

def _parse_size(text: str) -> int:
    text = text.strip().upper()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)I?B?", text)
    if not m:
        raise ValueError(f"cannot parse cache size {text!r}")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]
    return int(float(m.group(1)) * mult)


def cache_geometry(cpu: int = 0) -> dict:
    """Caches of `cpu` as {name: {level, type, size, assoc, line}}, names D1, I1, L2, L3 ...
    and "from" (sysfs, lscpu or py-cpuinfo with assumed associativity)."""
    out = {}
    for d in sorted(glob.glob(f"/sys/devices/system/cpu/cpu{cpu}/cache/index*")):
        try:
            rd = lambda f: open(os.path.join(d, f)).read().strip()  # noqa: E731
            level, typ = int(rd("level")), rd("type")
            size, assoc, line = _parse_size(rd("size")), int(rd("ways_of_associativity")), int(
                rd("coherency_line_size"))
        except (OSError, ValueError):
            continue
        name = {"Data": "D1", "Instruction": "I1"}.get(typ, f"L{level}") if level == 1 else f"L{level}"
        out[name] = {"level": level, "type": typ, "size": size, "assoc": assoc, "line": line}
    if {"D1", "I1"} <= set(out) and len(out) >= 3:
        out["from"] = f"sysfs (/sys/devices/system/cpu/cpu{cpu}/cache)"
        return out
    out = {}
    try:
        txt = subprocess.run(["lscpu", "-C", "-J", "-B"], capture_output=True, text=True, timeout=10).stdout
        for row in json.loads(txt).get("caches", []):
            name = row["name"].upper()
            key = {"L1D": "D1", "L1I": "I1"}.get(name, name)
            out[key] = {"level": int(row["level"]), "type": row["type"], "size": int(row["one-size"]),
                        "assoc": int(row["ways"]), "line": int(row.get("coherency-size") or 64)}
    except Exception:
        out = {}
    if {"D1", "I1"} <= set(out) and len(out) >= 3:
        out["from"] = "lscpu -C"
        return out
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
        out = {"D1": {"level": 1, "type": "Data", "size": int(info["l1_data_cache_size"]), "assoc": 8, "line": 64},
               "I1": {"level": 1, "type": "Instruction", "size": int(info["l1_instruction_cache_size"]),
                      "assoc": 8, "line": 64},
               "L2": {"level": 2, "type": "Unified", "size": int(info["l2_cache_size"]), "assoc": 8, "line": 64}}
        if info.get("l3_cache_size"):
            out["L3"] = {"level": 3, "type": "Unified", "size": int(info["l3_cache_size"]), "assoc": 16, "line": 64}
        out["from"] = "py-cpuinfo (sizes; associativity 8/8/16 and 64-byte lines assumed)"
        return out
    except Exception as e:
        raise RuntimeError(f"no cache geometry from sysfs, lscpu or py-cpuinfo: {e}") from e


def valgrind_version() -> str | None:
    exe = shutil.which("valgrind")
    if not exe:
        return None
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return None


def sim_available() -> tuple:
    v = valgrind_version()
    if v is None:
        return False, "valgrind is not installed (apt package: valgrind)"
    return True, v


SIM_METRICS = {  # metric -> cachegrind events summed
    "l1d_misses": ("D1mr", "D1mw"),
    "l1d_read_misses": ("D1mr",),
    "l1d_write_misses": ("D1mw",),
    "ll_misses": ("DLmr", "DLmw"),
    "ll_read_misses": ("DLmr",),
    "data_reads": ("Dr",),
    "data_writes": ("Dw",),
    "instructions": ("Ir",),
}

_DRIVER = r'''
import json, os, sys, time
cfg = json.load(open(sys.argv[1]))
sys.path.insert(0, cfg["root"])
import numpy as np
from kernels import _core
if any("@emu" in c["kernel"] for c in cfg["cases"]):
    from kernels import _emu
    _emu.register()
ceil16 = lambda v: (v + 15) // 16 * 16
# a sweep over twice the LL evicts every line the previous work left (LRU)
sweep = np.ones(max(1, cfg["flush_bytes"] // 4), np.float32) if cfg["flush_bytes"] else None
out = []
for c in cfg["cases"]:
    rng = np.random.default_rng(c["seed"])
    op, layout, n_in, n_out = c["op"], c["layout"], c["n_in"], c["n_out"]
    dtype = c["kernel"].split("/")[0]
    rows, cols = (n_out, n_in) if layout == 0 else (n_in, n_out)
    ld = ceil16(cols)
    # np.zeros maps pages lazily: only what the kernel touches becomes resident;
    # weight values do not change any kernel's access pattern.
    W = np.zeros((rows, ld), np.float32)
    Wb = _core.bf16_buffer((rows, ld)) if dtype == "bf16" and op != "adam" else None
    calls = []
    for _ in range(c["calls"]):
        xi = None if c["nnz"] is None else np.sort(rng.choice(n_in, c["nnz"], replace=False)).astype(np.int32)
        xv = rng.standard_normal(n_in if xi is None else xi.size).astype(np.float32)
        ids = rng.choice(n_out, c["n_active"], replace=False).astype(np.int32)
        if c["order"] == "sorted":
            ids = np.sort(ids)
        g = rng.standard_normal(c["n_active"]).astype(np.float32)
        calls.append((xi, xv, ids, g))
    if op == "forward":
        b = np.zeros(n_out, np.float32)
        run = lambda xi, xv, ids, g: _core.op_forward(c["kernel"], layout, n_in, W, Wb, b, xi, xv, ids, ids.size)
    elif op == "backward":
        gW = np.zeros_like(W)
        gb = np.zeros(n_out, np.float32)
        run = lambda xi, xv, ids, g: _core.op_backward(c["kernel"], layout, n_in, W, Wb, gW, gb, xi, xv, ids, g,
                                                       c["want_dx"])
    else:
        M, V, G = np.zeros_like(W), np.zeros_like(W), np.zeros_like(W)
        Wa = _core.bf16_buffer((rows, ld)) if c["adam_bf16_copy"] else None
        # Adam over rows of width `cols`: the active output rows (row-major) or
        # the input's nonzero rows (transposed; all of them for a dense input)
        run = lambda xi, xv, ids, g: _core.op_adam(c["kernel"], W, Wa, M, V, G, cols,
                                                   ids if layout == 0 else xi, 1e-4)
    if sweep is not None:
        sweep[::16] += 1.0
    for xi, xv, ids, g in calls:  # the inputs were just produced: warm, the parameters cold
        float(xv.sum()) + float(ids.sum()) + float(g.sum()) + (0 if xi is None else int(xi.sum()))
    t = time.time()
    try:
        for xi, xv, ids, g in calls:
            run(xi, xv, ids, g)
        err = None
    except Exception as e:
        err = "%s: %s" % (type(e).__name__, e)
    out.append({"ld": ld, "rows": rows, "cols": cols, "matrix_bytes": int(W.nbytes), "seconds": time.time() - t,
                "error": err})
    del W, Wb
with open(cfg["out"], "w") as fh:
    json.dump(out, fh)
sys.stdout.flush()
os._exit(0)
'''

_OP_SYMBOL = {("forward", 0): "fwd_rows", ("forward", 1): "fwd_cols", ("backward", 0): "bwd_rows",
              ("backward", 1): "bwd_cols", ("adam", 0): "adam", ("adam", 1): "adam"}
_NOT_UNDER_VALGRIND = ("avx512", "avx512_bf16", "amx")
EMU_COLLECT = ("_mm*", "*fmaf*")  # out-of-line emulated intrinsics (kernels/include/slide/emu) and libm's fmaf


def kernel_symbol(op: str, layout: int, kernel: str) -> str:
    """The C function of a kernel, e.g. ('forward', 0, 'f32/scalar') -> slide_fwd_rows_f32_scalar.
    Emulated kernels ('avx512@emu') carry the AVX-512 name in kernels._emu. Adam
    runs in fp32 whatever the precision: its symbol is slide_adam_f32_<isa>."""
    dtype, isa = kernel.split("/")
    return f"slide_{_OP_SYMBOL[(op, int(layout))]}_{dtype}_{isa.split('@')[0]}"


def parse_cachegrind(path: str) -> tuple:
    """(events, {function: {event: count}}, summary) from a cachegrind.out file;
    a function's costs are summed over every file its code came from (inlined
    helpers are attributed to the function they were inlined into)."""
    events, per_fn, summary, fn = None, {}, None, None
    with open(path) as fh:
        for line in fh:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("fn="):
                fn = per_fn.setdefault(line[3:].strip(), [0] * len(events or []))
            elif line.startswith("summary:"):
                vals = [int(x) for x in line.split()[1:]]
                summary = dict(zip(events, vals + [0] * (len(events) - len(vals))))
            elif fn is not None and line[:1].isdigit():
                vals = line.split()[1:]
                for k, x in enumerate(vals[:len(fn)]):
                    fn[k] += int(x)
    return events, {name: dict(zip(events, v)) for name, v in per_fn.items()}, summary


def _sim_defaults() -> dict:
    return dict(op="forward", kernel="f32/scalar", layout=0, n_in=128, n_out=670_091, n_active=3000, nnz=None,
                calls=1, samples_per_call=1.0, seed=0, order="random", want_dx=True, adam_bf16_copy=False,
                collect=())


def measure_sim(op: str = "forward", kernel: str = "f32/scalar", layout: int = 0, *, n_in: int = 128,
                n_out: int = 670_091, n_active: int = 3000, nnz: int | None = None, calls: int = 1,
                samples_per_call: float = 1.0, seed: int = 0, order: str = "random", want_dx: bool = True,
                adam_bf16_copy: bool = False, collect=(), ll_level: int | None = None, flush: bool = True,
                geometry: dict | None = None, timeout: float = 300.0) -> list:
    """Simulated cache behaviour of one kernel (`op` forward/backward/adam, `kernel`
    'dtype/isa', `layout` 0 row-major / 1 transposed) at the given dims.

    Inputs: a dense input of n_in values (nnz=None) or nnz random features;
    n_active random active outputs (order 'random', like the engine's
    candidate order, or 'sorted'). Each of `calls` calls draws a new input and
    active set; numbers are per call divided by samples_per_call (1 for
    forward/backward: one sample per call; the batch size for Adam). Before
    the calls the caches are swept (flush=True: parameters cold) and the
    inputs read (warm). ll_level: which cache valgrind's LL stands for
    (default the last level; 2 gives L2 misses). collect: extra function
    globs whose costs are added (out-of-line callees of the kernel). About
    10 s of valgrind; see measure_sim_many to run several at once."""
    return measure_sim_many([dict(op=op, kernel=kernel, layout=layout, n_in=n_in, n_out=n_out,
                                  n_active=n_active, nnz=nnz, calls=calls, samples_per_call=samples_per_call,
                                  seed=seed, order=order, want_dx=want_dx, adam_bf16_copy=adam_bf16_copy,
                                  collect=tuple(collect))],
                            ll_level=ll_level, flush=flush, geometry=geometry, timeout=timeout)[0]


def measure_sim_many(cases: list, *, ll_level: int | None = None, flush: bool = True, geometry: dict | None = None,
                     timeout: float = 300.0, parallel: int | None = None) -> list:
    """measure_sim for several cases (dicts of its keyword arguments). Cases
    whose kernels are different C functions share one valgrind process (costs
    are per function); up to `parallel` processes run at once (default: the
    CPUs available). Returns one record list per case, in order."""
    ok, why = sim_available()
    results: list = [None] * len(cases)
    full = []
    for c in cases:
        d = _sim_defaults()
        unknown = set(c) - set(d)
        if unknown:
            raise ValueError(f"unknown sim case keys {sorted(unknown)}")
        d.update(c)
        if d["op"] not in ("forward", "backward", "adam"):
            raise ValueError("op must be forward, backward or adam")
        full.append(d)

    def fail(i, reason, detail=None):
        results[i] = [_unavailable(m, "sim", reason, "sample", dict(detail or {}, **_case_detail(full[i])))
                      for m in SIM_METRICS]

    if not ok:
        for i in range(len(full)):
            fail(i, why)
        return results
    try:
        geo = geometry or cache_geometry()
    except Exception as e:
        for i in range(len(full)):
            fail(i, f"cache geometry unknown: {e}")
        return results
    levels = sorted(v["level"] for k, v in geo.items() if isinstance(v, dict) and k not in ("D1", "I1"))
    ll_name = f"L{ll_level or (levels[-1] if levels else 2)}"
    if ll_name not in geo:
        for i in range(len(full)):
            fail(i, f"no {ll_name} cache in the geometry {sorted(k for k in geo if k != 'from')}")
        return results
    spec = lambda c: f"{c['size']},{c['assoc']},{c['line']}"  # noqa: E731
    geo_args = [f"--I1={spec(geo['I1'])}", f"--D1={spec(geo['D1'])}", f"--LL={spec(geo[ll_name])}"]
    flush_bytes = 2 * geo[ll_name]["size"] if flush else 0

    from . import variants

    known = {(k.op, k.dtype, k.isa) for k in variants.compiled_kernels()}
    # group runnable cases: one process holds cases with distinct kernel symbols
    groups: list = []
    for i, c in enumerate(full):
        if "/" not in c["kernel"]:
            fail(i, f"kernel must be 'dtype/isa', got {c['kernel']!r}")
            continue
        isa = c["kernel"].split("/")[1]
        kop = _OP_SYMBOL[(c["op"], int(c["layout"]))]
        if (kop, *c["kernel"].split("/")) not in known:
            fail(i, f"no kernel {kop}={c['kernel']} in this build (compiled: "
                    f"{', '.join(sorted(f'{d}/{a}' for o, d, a in known if o == kop))})")
            continue
        if isa in _NOT_UNDER_VALGRIND:
            fail(i, f"valgrind cannot execute {isa} instructions (it has no AVX-512 support); "
                    f"simulate '{isa}@emu' for the access pattern of the same kernel source")
            continue
        keys = {kernel_symbol(c["op"], c["layout"], c["kernel"])}
        if isa.endswith("@emu"):
            # the emulated intrinsics are out-of-line functions shared by every
            # emulated kernel: count them, with one emulated kernel per process
            c["collect"] = tuple(c["collect"]) + EMU_COLLECT
            keys.add("@emu")
        for grp in groups:
            if not keys & grp["keys"]:
                grp["keys"] |= keys
                grp["cases"].append(i)
                break
        else:
            groups.append({"keys": keys, "cases": [i]})

    tmp = tempfile.mkdtemp(prefix="slide_sim_")
    driver = os.path.join(tmp, "driver.py")
    with open(driver, "w") as fh:
        fh.write(_DRIVER)
    # the driver sees this interpreter's import path (a venv's site-packages too)
    path = [ROOT] + [p for p in sys.path if p and os.path.isdir(p)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(dict.fromkeys(path)))
    python = _interpreter()

    def launch(g, grp):
        base = os.path.join(tmp, f"group{g}")
        cfg = {"root": ROOT, "out": base + ".json", "flush_bytes": flush_bytes,
               "cases": [{k: full[i][k] for k in ("op", "layout", "kernel", "n_in", "n_out", "n_active", "nnz",
                                                  "calls", "seed", "order", "want_dx", "adam_bf16_copy")}
                         for i in grp["cases"]]}
        with open(base + ".cfg", "w") as fh:
            json.dump(cfg, fh)
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", *geo_args,
               f"--cachegrind-out-file={base}.cachegrind", f"--log-file={base}.log", python, driver, base + ".cfg"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        return {"grp": grp, "p": p, "base": base, "t0": time.time()}

    def finish(job):
        grp, base = job["grp"], job["base"]
        try:
            stdout, _ = job["p"].communicate(timeout=max(1.0, timeout - (time.time() - job["t0"])))
        except subprocess.TimeoutExpired:
            job["p"].kill()
            job["p"].communicate()
            for i in grp["cases"]:
                fail(i, f"valgrind run exceeded {timeout:.0f} s")
            return
        seconds = time.time() - job["t0"]
        if job["p"].returncode != 0 or not os.path.exists(base + ".json"):
            log = open(base + ".log").read()[-800:] if os.path.exists(base + ".log") else ""
            for i in grp["cases"]:
                fail(i, f"valgrind run failed (rc {job['p'].returncode}): {(stdout or '')[-600:]} {log}")
            return
        info = json.load(open(base + ".json"))
        events, per_fn, summary = parse_cachegrind(base + ".cachegrind")
        for k, i in enumerate(grp["cases"]):
            c = full[i]
            if info[k].get("error"):
                fail(i, f"the kernel call failed in the driver: {info[k]['error']}")
                continue
            sym = kernel_symbol(c["op"], c["layout"], c["kernel"])
            pats = (sym,) + tuple(c["collect"])
            names = sorted(n for n in per_fn if any(fnmatch.fnmatchcase(n, p) for p in pats))
            totals = {e: sum(per_fn[n].get(e, 0) for n in names) for e in events}
            if not totals.get("Ir"):
                fail(i, f"no cost under {sym}: the function never ran or is not in the symbol table "
                        f"(inlined or stripped?)")
                continue
            spc = float(c["samples_per_call"]) or 1.0
            calls = max(1, int(c["calls"]))
            detail = dict(_case_detail(c), tool="cachegrind", valgrind=why, symbol=sym, functions_counted=names,
                          attribution="self cost of the kernel function (its inlined helpers included; "
                                      "out-of-line callees only if named in `collect`)",
                          geometry={"I1": geo["I1"], "D1": geo["D1"], "LL": dict(geo[ll_name], stands_for=ll_name),
                                    "from": geo.get("from")},
                          simulated_levels="D1 and LL only (inclusive, LRU, write-allocate, no prefetcher); "
                                           + ("the L2 is not simulated" if ll_name != "L2" else "LL is the L2 here"),
                          cache_state=("swept with a 2 x LL buffer before the calls (parameters cold), inputs "
                                       "read just before (warm)") if flush else "as the Python set-up left it",
                          ld=info[k]["ld"], matrix_rows=info[k]["rows"], matrix_bytes=info[k]["matrix_bytes"],
                          allocation="np.zeros (pages mapped lazily; only touched rows become resident)",
                          totals=totals, process_wall_seconds=round(seconds, 2), cases_in_process=len(grp["cases"]),
                          representative=not c["kernel"].endswith("@emu"))
            if c["kernel"].endswith("@emu"):
                detail["note"] = ("emulated AVX-512 kernel (plain C over an intrinsic emulation): its data access "
                                  "pattern is the kernel's, its instruction counts are not representative")
            recs = []
            for metric, evs in SIM_METRICS.items():
                per_call = sum(totals.get(e, 0) for e in evs) / calls
                recs.append(_rec(metric, per_call / spc, "sim", "sample",
                                 dict(detail, per_call=per_call, total=per_call * calls, events=list(evs))))
            results[i] = recs

    parallel = parallel or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    pending = list(enumerate(groups))
    running = []
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                running.append(launch(*pending.pop(0)))
            finish(running.pop(0))
    finally:
        for job in running:
            job["p"].kill()
            job["p"].communicate()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def _interpreter() -> str:
    """This Python as an executable valgrind can run: sys.executable unless it is
    a script (a pyenv shim, say), then the binary it resolves to."""
    exe = sys.executable
    try:
        with open(exe, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return exe
    except OSError:
        pass
    return os.path.realpath(exe)


def _case_detail(c: dict) -> dict:
    return {"op": c["op"], "kernel": c["kernel"], "layout": "rowmajor" if int(c["layout"]) == 0 else "transposed",
            "n_in": c["n_in"], "n_out": c["n_out"], "n_active": c["n_active"],
            "nnz": c["nnz"] if c["nnz"] is not None else "dense", "calls": c["calls"],
            "samples_per_call": c["samples_per_call"], "order": c["order"]}


# =====================================================================================
# model: the access pattern, by hand
# =====================================================================================

LINE = 64
PAGE_4K = 4096
PAGE_2M = 2 << 20
# Documented assumptions for the dTLB reach (typical x86 server cores):
# Reach of the data TLBs, both levels, per page size. The second-level TLB holds
# 4 KiB and 2 MiB translations alike on Skylake and later (1,536 entries) and on
# Zen 2/3 (2,048), so both page sizes count it; a CPU whose STLB is 4 KiB-only
# (Haswell and older) has less 2 MiB reach. Pass `tlb=` to model another CPU.
TLB_ASSUMPTIONS = {"4k_entries": 64 + 2048, "4k_note": "64-entry L1 dTLB + 2048-entry second-level TLB",
                   "2m_entries": 32 + 2048,
                   "2m_note": "32 L1 dTLB entries for 2 MiB pages + the 2048-entry second-level TLB, "
                              "which also holds 2 MiB entries (Zen 2+, Skylake+)"}
_ESIZE = {"f32": 4, "bf16act": 4, "bf16": 2}


class _Acc:
    """Distinct lines and pages of one array, from its touched byte ranges.
    The array is assumed to start on a 2 MiB boundary (hugepage placement),
    so page numbers are offset // page size."""

    def __init__(self, name: str, esize: int):
        self.name, self.esize = name, esize
        self.read = self.written = 0
        self.elements = 0
        self._lines, self._p4, self._p2 = [], [], []

    def grid(self, rows, cols, ld: int, read: bool = True, written: bool = False):
        """Elements (r * ld + c) for every r in rows, c in cols."""
        rows = np.asarray(rows, np.int64).ravel()
        cols = np.asarray(cols, np.int64).ravel()
        n = rows.size * cols.size
        if read:
            self.read += n * self.esize
        if written:
            self.written += n * self.esize
        self.elements += n
        if n == 0:
            return self
        chunk = max(1, (1 << 22) // max(1, cols.size))
        for s in range(0, rows.size, chunk):
            off = (rows[s:s + chunk, None] * ld + cols[None, :]) * self.esize
            # an element may straddle no line: esize divides 64 and offsets are multiples of esize
            self._lines.append(np.unique(off // LINE))
            self._p4.append(np.unique(off // PAGE_4K))
            self._p2.append(np.unique(off // PAGE_2M))
        return self

    def span(self, n: int, read: bool = True, written: bool = False):
        """Elements 0..n-1 of a 1-D array."""
        return self.grid(np.zeros(1, np.int64), np.arange(n, dtype=np.int64), 0, read, written)

    def at(self, idx, read: bool = True, written: bool = False):
        """Elements idx of a 1-D array."""
        return self.grid(np.zeros(1, np.int64), idx, 0, read, written)

    def summary(self) -> dict:
        cnt = lambda parts: int(np.unique(np.concatenate(parts)).size) if parts else 0  # noqa: E731
        return {"element_bytes": self.esize, "elements": self.elements, "bytes_read": self.read,
                "bytes_written": self.written, "lines": cnt(self._lines), "pages_4k": cnt(self._p4),
                "pages_2m": cnt(self._p2)}


def model_access(op: str = "forward", layout: int = 0, dtype: str = "f32", *, n_in: int, n_out: int,
                 ld: int | None = None, ids=None, n_active: int | None = None, xi=None, want_dx: bool = True,
                 adam_bf16_copy: bool = False, grad_buffer: bool = True, samples_per_call: float = 1.0,
                 placement: str = "default", tlb: dict | None = None) -> list:
    """Bytes, lines and pages one kernel call touches, from the kernels' access pattern.

    op: forward / backward / adam (as kernels._core.op_*); layout 0 row-major W
    (n_out, ld) or 1 transposed (n_in, ld); dtype f32 / bf16 (weights read from
    the bf16 copy: 2 bytes) / bf16act. ids: the active outputs (None: outputs
    0..n_active-1); xi: the input's nonzero features (None: dense, n_in
    values). ld defaults to the row width rounded up to 16.

    Every array (W or Wb, b, x values, x indices, ids, z; gW, gb, g, dx for
    backward; W, M, V, G, Wb for adam) is assumed to start on a 2 MiB boundary
    and arrays share no line or page. Bytes are the elements accessed times
    their size (what the kernel asks for); `lines` is the number of distinct
    64-byte lines, i.e. the compulsory misses of a cold cache, a lower bound on
    L1 misses that ignores capacity and conflict misses and prefetching.
    Backward counts W as read only when want_dx (the scalar transposed kernel
    reads it anyway). Adam updates the rows `ids` of a row-major matrix (width
    n_in) or the rows `xi` of a transposed one (width n_out); it reads and
    clears a gradient buffer G unless grad_buffer=False (the batched
    strategy's fused backward+Adam, whose gradient row never leaves registers).
    The dTLB verdict uses TLB_ASSUMPTIONS (or `tlb`) for the page size of
    `placement` (2 MiB for 'hugepage', else 4 KiB)."""
    if op not in ("forward", "backward", "adam"):
        raise ValueError("op must be forward, backward or adam")
    if dtype not in _ESIZE:
        raise ValueError(f"dtype must be one of {', '.join(_ESIZE)}")
    rows, cols = (n_out, n_in) if layout == 0 else (n_in, n_out)
    ld = int(ld if ld is not None else (cols + 15) // 16 * 16)
    if ld < cols:
        raise ValueError(f"ld {ld} < row width {cols}")
    if ids is None:
        if n_active is None:
            raise ValueError("give ids or n_active")
        act = np.arange(int(n_active), dtype=np.int64)
    else:
        act = np.asarray(ids, np.int64).ravel()
    sparse = xi is not None
    feat = np.asarray(xi, np.int64).ravel() if sparse else np.arange(n_in, dtype=np.int64)
    n, nx = act.size, feat.size
    wsize = _ESIZE[dtype]
    arrays = []
    if op in ("forward", "backward"):
        wname = "Wb" if dtype == "bf16" else "W"
        read_w = op == "forward" or want_dx or layout == 1
        W = _Acc(wname, wsize)
        if read_w:
            if layout == 0:
                W.grid(act, feat, ld)
            else:
                W.grid(feat, act, ld)
            arrays.append(W)
        if op == "forward":
            arrays += [_Acc("b", 4).at(act), _Acc("z", 4).span(n, read=False, written=True)]
        else:
            gW = _Acc("gW", 4)
            if layout == 0:
                gW.grid(act, feat, ld, read=True, written=True)
            else:
                gW.grid(feat, act, ld, read=True, written=True)
            arrays += [gW, _Acc("gb", 4).at(act, read=True, written=True), _Acc("g", 4).span(n)]
            if want_dx:
                arrays.append(_Acc("dx", 4).span(nx, read=True, written=True))
        arrays.append(_Acc("xv", 4).span(nx))
        if sparse:
            arrays.append(_Acc("xi", 4).span(nx))
        if ids is not None:
            arrays.append(_Acc("ids", 4).span(n))
    else:
        upd_rows = act if layout == 0 else feat
        width = np.arange(cols, dtype=np.int64)
        for name in ("W", "M", "V", "G") if grad_buffer else ("W", "M", "V"):
            arrays.append(_Acc(name, 4).grid(upd_rows, width, ld, read=True, written=True))
        if adam_bf16_copy:
            arrays.append(_Acc("Wb", 2).grid(upd_rows, width, ld, read=False, written=True))
        if (layout == 0 and ids is not None) or (layout == 1 and sparse):
            arrays.append(_Acc("rows", 4).span(upd_rows.size))
    per_array = {a.name: a.summary() for a in arrays}
    tot = {k: sum(v[k] for v in per_array.values()) for k in ("bytes_read", "bytes_written", "lines", "pages_4k",
                                                                "pages_2m")}
    tl = dict(TLB_ASSUMPTIONS, **(tlb or {}))
    huge = placement == "hugepage"
    pages = tot["pages_2m"] if huge else tot["pages_4k"]
    entries = tl["2m_entries"] if huge else tl["4k_entries"]
    spc = float(samples_per_call) or 1.0
    base = {"op": op, "layout": "rowmajor" if layout == 0 else "transposed", "dtype": dtype, "n_in": n_in,
            "n_out": n_out, "ld": ld, "n_active": n, "nnz": nx if sparse else "dense", "samples_per_call": spc,
            "arrays": per_array, "assumptions": "arrays start on 2 MiB boundaries and share no line/page; "
                                                "bytes = elements accessed x element size"}
    recs = [
        _rec("bytes_read", tot["bytes_read"] / spc, "model", "sample", base, "B"),
        _rec("bytes_written", tot["bytes_written"] / spc, "model", "sample", base, "B"),
        _rec("bytes_moved", (tot["bytes_read"] + tot["bytes_written"]) / spc, "model", "sample", base, "B"),
        _rec("lines_touched", tot["lines"] / spc, "model", "sample", base),
        _rec("line_bytes", tot["lines"] * LINE / spc, "model", "sample",
             dict(base, meaning="distinct lines x 64 B: cold-cache traffic at line granularity"), "B"),
        _rec("l1d_misses", tot["lines"] / spc, "model", "sample",
             dict(base, meaning="compulsory misses (distinct lines): a lower bound, no capacity/conflict "
                                "misses, no prefetch")),
        _rec("pages_4k", tot["pages_4k"] / spc, "model", "sample", base),
        _rec("pages_2m", tot["pages_2m"] / spc, "model", "sample", base),
        _rec("dtlb_reach_overflow", max(0, pages - entries) / spc, "model", "sample",
             dict(base, placement=placement, page_size="2M" if huge else "4K", pages=pages, entries=entries,
                  fits=pages <= entries, tlb=tl,
                  meaning="pages touched beyond the dTLB entries: 0 means the sample's pages fit the reach")),
    ]
    return recs


# =====================================================================================
# memory bandwidth roof: STREAM-style triad
# =====================================================================================

def _llc_bytes() -> int:
    try:
        geo = cache_geometry()
        return max(v["size"] for k, v in geo.items() if isinstance(v, dict))
    except Exception:
        return 32 << 20


def triad_bandwidth(n_bytes: int | None = None, threads: int = 1, repeat: int = 5, method: str = "auto") -> dict:
    """Memory bandwidth in GB/s (1e9 B/s) from a STREAM triad a = b + s*c over float64 arrays.

    n_bytes: the footprint of the three arrays together (default 3 x max(4 x LLC,
    32 MiB): far out of cache). threads: how many threads share the arrays, each
    on its own contiguous slice. method "c" (the default where the extension is
    built): one fused pass in C (kernels._core.stream_triad, SSE2, OpenMP
    threads); the value counts STREAM's 3 x 8 bytes per element, detail adds the
    write-allocate read of a (4 x 8). method "numpy": np.multiply(c, s, out=a)
    then np.add(a, b, out=a) in Python threads, which reads c, writes a, reads a
    and b and writes a: the value counts those 5 x 8 bytes. Best of `repeat`
    (as STREAM), median too."""
    threads = max(1, int(threads))
    if method not in ("auto", "c", "numpy"):
        raise ValueError("method must be auto, c or numpy")
    core = None
    if method in ("auto", "c"):
        try:
            from kernels import _core as core
            if not hasattr(core, "stream_triad"):
                core = None
        except ImportError:
            core = None
        if core is None and method == "c":
            raise RuntimeError("the C triad needs the built extension (kernels._core.stream_triad)")
    if n_bytes is None:
        n_bytes = 3 * max(4 * _llc_bytes(), 32 << 20)
    n = max(threads * 1024, int(n_bytes) // 24)
    a = np.empty(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    a[:] = 0.0  # touch every page before timing
    s = 3.0
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)

    def part(k):
        lo, hi = bounds[k], bounds[k + 1]
        np.multiply(c[lo:hi], s, out=a[lo:hi])
        np.add(a[lo:hi], b[lo:hi], out=a[lo:hi])

    times = []
    for _ in range(max(1, repeat) + 1):  # the first pass is a warm-up
        if core is not None:
            times.append(core.stream_triad(a, b, c, s, threads))
        elif threads == 1:
            t0 = time.perf_counter()
            part(0)
            times.append(time.perf_counter() - t0)
        else:
            barrier = threading.Barrier(threads + 1)
            ts = [threading.Thread(target=lambda k=k: (barrier.wait(), part(k))) for k in range(threads)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in ts:
                t.join()
            times.append(time.perf_counter() - t0)
    times = times[1:]
    if not np.allclose(a[:: max(1, n // 1000)], 7.0):
        raise RuntimeError("triad produced wrong values")
    best, med = min(times), statistics.median(times)
    common = {"n_elements": n, "footprint_bytes": 3 * 8 * n, "threads": threads, "repeat": len(times),
              "seconds": times, "provenance": "measured on this machine"}
    if core is not None:
        counted = 3 * 8 * n
        detail = dict(common, method="C triad, one pass: a[i] = b[i] + s * c[i] (kernels._core.stream_triad, "
                                     "SSE2, OpenMP threads on contiguous slices)",
                      bytes_counted=counted, bytes_formula="3 x 8 B x n (STREAM convention: read b, read c, write a)",
                      best_gbps=counted / best / 1e9, median_gbps=counted / med / 1e9,
                      stream_convention_gbps=counted / best / 1e9, with_write_allocate_gbps=4 * 8 * n / best / 1e9)
    else:
        counted = 5 * 8 * n
        detail = dict(common, method="numpy two-pass triad: np.multiply(c, s, out=a); np.add(a, b, out=a)",
                      bytes_counted=counted,
                      bytes_formula="5 x 8 B x n (read c, write a, read a, read b, write a)",
                      best_gbps=counted / best / 1e9, median_gbps=counted / med / 1e9,
                      stream_convention_gbps=3 * 8 * n / best / 1e9, with_write_allocate_gbps=6 * 8 * n / best / 1e9)
    return _rec("triad_bandwidth", counted / best / 1e9, "hw", "second", detail, "GB/s")
