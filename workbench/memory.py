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


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


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
