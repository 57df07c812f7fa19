"""Checkpoint files: weights, Adam state, LSH state and config, written atomically.

Layout (all integers little-endian):
    8 bytes   magic b"SLIDEWB\\0"
    4 bytes   format version (uint32)
    8 bytes   header length H (uint64)
    H bytes   JSON header: config, training counters, array table
              (name, dtype, shape, offset, nbytes), software version
    ...       array data, each blob starting on a 64-byte boundary
    32 bytes  SHA-256 of everything before it

Writing goes to a temporary file in the same directory, is fsync'ed, then
renamed over the target (and the directory fsync'ed): a crash or a failed
write leaves any existing checkpoint untouched. Reading checks the magic,
the version, the sizes and the checksum before the network is returned;
a foreign, truncated or corrupted file raises CheckpointError.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from .config import Config, ConfigError

MAGIC = b"SLIDEWB\0"
VERSION = 1
ALIGN = 64
CHUNK = 16 << 20
# Execution settings a checkpoint may be loaded under, whatever wrote it.
LOAD_OVERRIDES = ("threads", "deterministic", "precision", "isa", "kernels", "placement", "prefetch")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("slide-workbench")
    except Exception:  # not installed as a distribution (in-place build)
        return "unknown"


def save(path: str, net) -> None:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory (expected a checkpoint file path)")
    arrays = net.state_arrays()
    table, offset = [], 0
    for name, a in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN
        table.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                      "nbytes": int(a.nbytes)})
        offset += a.nbytes
    header = json.dumps({"config": net.config.to_dict(), "meta": net.state_meta(), "arrays": table,
                         "software": _software_version()}, sort_keys=True).encode()
    prefix = MAGIC + struct.pack("<IQ", VERSION, len(header)) + header
    base = -(-len(prefix) // ALIGN) * ALIGN

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as fh:
            def put(b):
                fh.write(b)
                h.update(b)

            put(prefix)
            put(b"\0" * (base - len(prefix)))
            pos = 0
            for entry, a in zip(table, arrays.values()):
                if entry["offset"] > pos:
                    put(b"\0" * (entry["offset"] - pos))
                    pos = entry["offset"]
                flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
                for i in range(0, flat.size, CHUNK):
                    put(memoryview(flat[i:i + CHUNK]))
                pos += a.nbytes
            fh.write(h.digest())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        try:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass  # some filesystems cannot fsync a directory
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def read_header(path: str) -> tuple[dict, int]:
    """(header dict, offset of the data section). Checks magic, version, size."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open checkpoint: {e.strerror}") from None
    with fh:
        head = fh.read(20)
        if len(head) < 20 or head[:8] != MAGIC:
            raise CheckpointError(f"{path}: not a slide-workbench checkpoint (bad magic)")
        version, hlen = struct.unpack("<IQ", head[8:20])
        if version != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}, this build reads {VERSION}")
        if hlen > size - 20 - 32:
            raise CheckpointError(f"{path}: truncated checkpoint (header claims {hlen} bytes)")
        raw = fh.read(hlen)
    try:
        header = json.loads(raw)
        arrays = header["arrays"]
        header["config"], header["meta"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: corrupt checkpoint header") from None
    base = -(-(20 + hlen) // ALIGN) * ALIGN
    end = base + max((e["offset"] + e["nbytes"] for e in arrays), default=0)
    if size != end + 32:
        raise CheckpointError(f"{path}: truncated or padded checkpoint: {size} bytes, expected {end + 32}")
    return header, base


def load(path: str, cls, *, overrides: dict | None = None):
    path = os.fspath(path)
    header, base = read_header(path)
    cfg_dict = dict(header["config"])
    for k, v in (overrides or {}).items():
        if k not in LOAD_OVERRIDES:
            raise CheckpointError(f"{path}: '{k}' cannot be changed when loading (only {', '.join(LOAD_OVERRIDES)})")
        cfg_dict[k] = v
    try:
        config = Config.from_dict(cfg_dict)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid config in checkpoint: {e}") from None
    net = cls(config, _init=False)
    want = net.state_arrays()
    table = {e["name"]: e for e in header["arrays"]}
    if set(table) != set(want):
        raise CheckpointError(f"{path}: arrays do not match the network its config describes")
    staged = {}
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(base))
        pos = base
        for name in sorted(table, key=lambda n: table[n]["offset"]):
            e = table[name]
            dst = want[name]
            if np.dtype(e["dtype"]) != dst.dtype or tuple(e["shape"]) != dst.shape:
                raise CheckpointError(f"{path}: array {name} is {e['dtype']}{tuple(e['shape'])}, "
                                      f"expected {dst.dtype.str}{dst.shape}")
            gap = base + e["offset"] - pos
            if gap:
                h.update(fh.read(gap))
            # read straight into the new network's arrays: no second copy in memory
            buf = dst
            mv = memoryview(buf.reshape(-1).view(np.uint8))
            got = 0
            while got < e["nbytes"]:
                n = fh.readinto(mv[got:got + CHUNK])
                if not n:
                    raise CheckpointError(f"{path}: truncated checkpoint while reading {name}")
                got += n
            h.update(mv)
            staged[name] = buf
            pos = base + e["offset"] + e["nbytes"]
        digest = fh.read(32)
    if digest != h.digest():
        raise CheckpointError(f"{path}: checksum mismatch: the checkpoint is corrupted")
    net._restore(header["meta"], staged)
    return net
