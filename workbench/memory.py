"""Buffers for parameters: alignment and page placement.

Owns: allocating the large flat arrays (weights, Adam moments, gradients,
tables) with a requested placement, and reporting what placement was
actually obtained. Placement policies:

  default   numpy's allocator (numpy itself may advise huge pages for large
            arrays; NUMPY_MADVISE_HUGEPAGE=0 turns that off, for a control)
  aligned   64-byte aligned (a cache line), from numpy's allocator
  hugepage  2 MiB-aligned anonymous mmap with madvise(MADV_HUGEPAGE); the
            kernel may still refuse, so what was granted is read back from
            /proc/self/smaps (AnonHugePages) and reported, never assumed.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

PLACEMENTS = ("default", "aligned", "hugepage")
HUGE = 2 << 20


class Buffer:
    """Keeps the memory behind an array alive and knows where it lives."""

    __slots__ = ("array", "placement", "mm", "name")

    def __init__(self, array, placement, mm=None, name=""):
        self.array = array
        self.placement = placement
        self.mm = mm
        self.name = name

    @property
    def address(self) -> int:
        return int(self.array.__array_interface__["data"][0])


def empty(shape, dtype, placement: str = "aligned", name: str = "", zero: bool = True) -> np.ndarray:
    """An array with the requested placement (zeroed unless zero=False)."""
    return allocate(shape, dtype, placement, name, zero).array


def allocate(shape, dtype, placement: str = "aligned", name: str = "", zero: bool = True) -> Buffer:
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r} (valid: {', '.join(PLACEMENTS)})")
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if placement == "default":
        a = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        return Buffer(a, placement, name=name)
    if placement == "aligned" or nbytes < HUGE:
        raw = np.zeros(nbytes + 64, np.uint8) if zero else np.empty(nbytes + 64, np.uint8)
        off = (-raw.ctypes.data) % 64
        a = raw[off:off + nbytes].view(dtype).reshape(shape)
        return Buffer(a, "aligned", name=name)
    # hugepage: over-map by 2 MiB so the array can start on a 2 MiB boundary
    size = nbytes + HUGE
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    raw = np.frombuffer(mm, dtype=np.uint8)
    off = (-raw.ctypes.data) % HUGE
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mm.madvise(mmap.MADV_HUGEPAGE, off, size - off)
        except OSError:
            pass  # reported through smaps: nothing granted
    a = raw[off:off + nbytes].view(dtype).reshape(shape)
    # anonymous mappings are zero-filled already
    return Buffer(a, "hugepage", mm=mm, name=name)


def thp_mode() -> str:
    """The transparent-huge-page policy, e.g. 'madvise' (or 'unavailable')."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as fh:
            txt = fh.read()
    except OSError:
        return "unavailable"
    for tok in txt.split():
        if tok.startswith("["):
            return tok.strip("[]")
    return txt.strip()


def huge_pages_backing(arrays: dict) -> dict:
    """For each named array: bytes, bytes backed by transparent huge pages
    (from /proc/self/smaps, AnonHugePages of the mappings it overlaps) and
    the fraction. Read-only, for reports."""
    spans = {}
    for name, a in arrays.items():
        start = int(a.__array_interface__["data"][0])
        spans[name] = (start, start + a.nbytes)
    out = {name: {"bytes": hi - lo, "huge_bytes": 0} for name, (lo, hi) in spans.items()}
    try:
        fh = open("/proc/self/smaps")
    except OSError:
        for v in out.values():
            v["huge_bytes"] = None
            v["huge_fraction"] = None
        return out
    with fh:
        cur = None
        for line in fh:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                lo, hi = (int(x, 16) for x in first.split("-"))
                cur = (lo, hi)
            elif first == "AnonHugePages:" and cur is not None:
                kb = int(line.split()[1])
                if kb == 0:
                    continue
                mlo, mhi = cur
                for name, (lo, hi) in spans.items():
                    overlap = min(hi, mhi) - max(lo, mlo)
                    if overlap > 0:
                        # smaps gives per-mapping totals; attribute pro rata
                        out[name]["huge_bytes"] += int(kb * 1024 * overlap / (mhi - mlo))
    for v in out.values():
        v["huge_fraction"] = round(v["huge_bytes"] / v["bytes"], 4) if v["bytes"] else 0.0
    return out


def _read_int(path: str) -> int | None:
    """An integer file of /sys ('max' and unreadable files: None)."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def _stat_value(path: str, key: str) -> int:
    """One field of a cgroup memory.stat file (0 if absent)."""
    try:
        with open(path) as fh:
            for line in fh:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_mounts(mountinfo: str) -> dict:
    """{'v2' | 'memory': (mount root, mount point)} from /proc/self/mountinfo."""
    out = {}
    try:
        with open(mountinfo) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        root, point = fields[3], fields[4].replace("\\040", " ")
        if tail[0] == "cgroup2":
            out.setdefault("v2", (root, point))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            out.setdefault("memory", (root, point))
    return out


def cgroup_headroom(proc_cgroup: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo") -> int | None:
    """Bytes this process's memory cgroup (and its ancestors) still allow:
    the smallest limit minus usage, reclaimable page cache (inactive file
    pages) counted as free; None without a limit. cgroup v2 (memory.max,
    memory.current) and v1 (memory.limit_in_bytes, memory.usage_in_bytes),
    found through the mount table."""
    try:
        with open(proc_cgroup) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    mounts = _cgroup_mounts(mountinfo)
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "" and "v2" in mounts:
            (root, point), files = mounts["v2"], ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(",") and "memory" in mounts:
            (root, point), files = mounts["memory"], ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                     "total_inactive_file")
        else:
            continue
        rel = os.path.relpath(path, root)
        if rel.startswith(".."):
            continue  # the cgroup is outside what is mounted here
        names = [] if rel == "." else rel.split("/")
        # the cgroup's directory and every ancestor up to the mount point (a limit above applies too)
        for depth in range(len(names), -1, -1):
            d = os.path.join(point, *names[:depth])
            limit = _read_int(os.path.join(d, files[0]))
            if limit is None or limit >= 1 << 60:  # 'max', or v1's "unlimited" (a page-rounded 2^63)
                continue
            usage = _read_int(os.path.join(d, files[1])) or 0
            usage -= min(usage, _stat_value(os.path.join(d, "memory.stat"), files[2]))
            room = max(0, limit - usage)
            best = room if best is None else min(best, room)
    return best


def address_space_headroom() -> int | None:
    """Bytes of address space RLIMIT_AS (ulimit -v) still allows this process
    (the soft limit minus VmSize); None without a limit."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    return max(0, soft - used)


def memory_limits() -> dict:
    """What bounds the memory this process can still allocate, in bytes, by
    source: 'MemAvailable' (the machine), 'RLIMIT_AS' (ulimit -v), 'cgroup'
    (a container's or service's memory limit); unknown or unlimited ones are left out."""
    out = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    out["MemAvailable"] = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if "MemAvailable" not in out:
        try:
            out["MemAvailable"] = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    for name, fn in (("RLIMIT_AS", address_space_headroom), ("cgroup", cgroup_headroom)):
        v = fn()
        if v is not None:
            out[name] = v
    return out


def available_memory(with_source: bool = False):
    """Bytes this process can still allocate: the smallest of the machine's
    MemAvailable, the RLIMIT_AS headroom and the cgroup headroom (None if
    none is known). with_source: (bytes, name of the limit that binds)."""
    limits = memory_limits()
    if not limits:
        return (None, None) if with_source else None
    source = min(limits, key=limits.get)
    return (limits[source], source) if with_source else limits[source]


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
