"""Checkpoint files: weights, Adam state, LSH state and config, written atomically.

Layout (all integers little-endian):
    8 bytes   magic b"SLIDEWB\\0"
    4 bytes   format version (uint32)
    8 bytes   header length H (uint64)
    H bytes   JSON header: config, training counters, array table
              (name, dtype, shape, offset, nbytes), software version
    ...       array data, each blob starting on a 64-byte boundary
    32 bytes  SHA-256 of everything before it

Writing goes to a temporary file in the same directory (locked while it is
written, given the mode of the file it replaces), is fsync'ed, then renamed
over the target (and the directory fsync'ed): a crash or a failed write
leaves any existing checkpoint untouched, and the next save removes the
temporary files that killed writers left (unlocked ones). Parameters or Adam
moments holding NaN or infinity are never written.

Reading checks the magic, the version, the header's structure, the sizes
and the checksum; then, because a checksum proves integrity and not
validity (anyone can recompute it), every array is checked against the
network its config describes before C sees it: shapes and dtypes, finite
parameters and moments, non-negative second moments, hash permutations and
coefficients, table offsets and ids in range, counters of the right type.
A foreign, truncated, corrupted or inconsistent file raises CheckpointError
naming the file, the array and the problem (NonFiniteCheckpointError, also a
NumericalError, for non-finite values).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import stat
import struct
import tempfile

import numpy as np

from .config import Config, ConfigError
from .network import ROW_ALIGN, NumericalError

MAGIC = b"SLIDEWB\0"
VERSION = 1
ALIGN = 64
CHUNK = 16 << 20
# Execution settings a checkpoint may be loaded under, whatever wrote it.
LOAD_OVERRIDES = ("threads", "deterministic", "precision", "isa", "kernels", "placement", "prefetch")
# Parameter and Adam arrays of every layer (float32; checked for NaN/inf on save and load).
FLOAT_ARRAYS = ("W", "b", "mW", "vW", "mb", "vb")
# dtypes an array table may name (what state_arrays holds)
DTYPES = ("<f4", "<i4", "<u4", "|i1")
# meta counters: non-negative integers (batches is the engine's int32 batch id)
COUNTERS = {"step": 2**62, "batches": 2**31 - 2, "samples_seen": 2**62, "epochs_done": 2**62, "epoch_pos": 2**62,
            "rehashes": 2**62, "rebuilds": 2**62}


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


class NonFiniteCheckpointError(CheckpointError, NumericalError):
    """A checkpoint holds NaN or infinity in a parameter or Adam moment (a
    numerical error as much as a bad file: the CLI exits with 3 for it)."""


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("slide-workbench")
    except Exception:  # not installed as a distribution (in-place build)
        return "unknown"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---- writing ----------------------------------------------------------------------------

def nonfinite_arrays(arrays: dict, threads: int = 1) -> list[str]:
    """Names of the parameter / Adam arrays in `arrays` that hold NaN or inf."""
    from kernels import _core

    return [name for name, a in arrays.items()
            if name.rsplit(".", 1)[-1] in FLOAT_ARRAYS and _core.count_nonfinite(a, threads)]


def _describe_arrays(names: list[str]) -> str:
    """'layer 1: W, vW; layer 0: b' from ['layer1.W', 'layer1.vW', 'layer0.b']."""
    by_layer: dict[str, list[str]] = {}
    for n in names:
        layer, arr = n.split(".", 1)
        by_layer.setdefault(layer.replace("layer", "layer "), []).append(arr)
    return "; ".join(f"{layer}: {', '.join(arrs)}" for layer, arrs in by_layer.items())


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o22)  # no /proc: read it by setting it (restored at once)
    os.umask(old)
    return old


def _target_mode(path: str) -> int:
    """The mode a save gives the file: the one it replaces, else what open() would create."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _temp_prefix(path: str) -> str:
    return ".tmp-" + os.path.basename(path) + "-"


def remove_stale_temps(path: str) -> list[str]:
    """Remove the temporary files that writers of `path` killed mid-save left
    in its directory; a writer holds an exclusive flock on its temporary
    file until it is renamed, so a file whose lock can be taken is stale.
    Returns the names removed."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone, a symlink, unreadable: not ours to touch
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer
            # still the file we locked (not replaced by a new writer's since we listed it)
            cur = os.lstat(full)
            if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(full)
                removed.append(name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _locked_temp(path: str, mode: int) -> tuple[int, str]:
    """A new temporary file next to `path`, flock'ed (see remove_stale_temps)."""
    directory = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st, cur = os.fstat(fd), os.lstat(tmp)
            if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                os.fchmod(fd, mode)
                return fd, tmp
        except OSError as e:
            # a cleaner took it between mkstemp and flock (and removed it): another name
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOENT):
                os.close(fd)
                raise
        os.close(fd)
    raise OSError(errno.EEXIST, "cannot create a temporary file next to it")


def _save_error(path: str, e: OSError) -> OSError:
    return OSError(e.errno, f"cannot write the checkpoint: {e.strerror or e} (an existing file at this path "
                            f"is unchanged)", path)


def save(path: str, net) -> None:
    """Write net's state to path atomically. Raises NumericalError (naming the
    layers and arrays) if a parameter or Adam moment is non-finite, OSError
    naming path if the file cannot be written; either way an existing file
    at path is unchanged."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory (expected a checkpoint file path)")
    arrays = net.state_arrays()
    bad = nonfinite_arrays(arrays, getattr(net, "threads", 1))
    if bad:
        raise NumericalError(
            f"{path}: not saved: non-finite values in {_describe_arrays(bad)} (training diverged: lower the "
            f"learning rate or check the data's scale); an existing file at this path is unchanged")
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
    remove_stale_temps(path)
    mode = _target_mode(path)
    try:
        fd, tmp = _locked_temp(path, mode)
    except OSError as e:
        raise _save_error(path, e) from None
    # the lock lives as long as any descriptor of the file: this one keeps it past close, until the rename
    lock_fd = os.dup(fd)
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
    except OSError as e:
        raise _save_error(path, e) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        os.close(lock_fd)


# ---- reading ----------------------------------------------------------------------------

def _check_table(path: str, arrays) -> None:
    """The header's array table: well-formed entries, in order, not overlapping."""
    def bad(msg):
        raise CheckpointError(f"{path}: corrupt checkpoint header: {msg}")

    if not isinstance(arrays, list):
        bad(f"'arrays' must be a list, got {type(arrays).__name__}")
    names, end = set(), 0
    for i, e in enumerate(arrays):
        if not isinstance(e, dict) or set(e) != {"name", "dtype", "shape", "offset", "nbytes"}:
            bad(f"array entry {i} is not a table of name, dtype, shape, offset, nbytes")
        name = e["name"]
        if not isinstance(name, str) or not name.isprintable() or len(name) > 100:
            bad(f"array entry {i} has an invalid name")
        if name in names:
            bad(f"array {name} appears twice")
        names.add(name)
        if e["dtype"] not in DTYPES:
            bad(f"array {name} has dtype {str(e['dtype'])[:20]!r} (expected one of {', '.join(DTYPES)})")
        shape = e["shape"]
        if not isinstance(shape, list) or len(shape) > 2 or not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
            bad(f"array {name} has an invalid shape")
        off, nbytes = e["offset"], e["nbytes"]
        if not (_is_int(off) and _is_int(nbytes)) or off < end or off % ALIGN or off >= 2**50:
            bad(f"array {name} has an invalid offset")
        if nbytes != math.prod(shape) * np.dtype(e["dtype"]).itemsize:
            bad(f"array {name}: {nbytes} bytes do not match its dtype and shape")
        end = off + nbytes


def read_header(path: str) -> tuple[dict, int]:
    """(header dict, offset of the data section). Checks magic, version, structure, size."""
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
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: corrupt checkpoint header") from None
    if not isinstance(header, dict) or not isinstance(header.get("config"), dict) \
            or not isinstance(header.get("meta"), dict) or "arrays" not in header:
        raise CheckpointError(f"{path}: corrupt checkpoint header: expected config, meta and arrays")
    _check_table(path, header["arrays"])
    base = -(-(20 + hlen) // ALIGN) * ALIGN
    end = base + max((e["offset"] + e["nbytes"] for e in header["arrays"]), default=0)
    if size != end + 32:
        raise CheckpointError(f"{path}: truncated or padded checkpoint: {size} bytes, expected {end + 32}")
    return header, base


def _check_meta(path: str, meta: dict, layers) -> None:
    def bad(key, msg):
        raise CheckpointError(f"{path}: invalid checkpoint: meta '{key}' {msg}")

    for key, hi in COUNTERS.items():
        v = meta.get(key, 0 if key == "epoch_pos" else None)
        if not _is_int(v) or not 0 <= v <= hi:
            bad(key, f"must be an integer in [0, {hi}], got {str(v)[:40]}")
    for key in ("run_target", "run_start"):
        v = meta.get(key)
        if v is not None and (not _is_int(v) or not 0 <= v <= 2**62):
            bad(key, f"must be null or an integer >= 0, got {str(v)[:40]}")
    seeds = meta.get("hash_seeds")
    if not isinstance(seeds, list) or len(seeds) != len(layers):
        bad("hash_seeds", f"must list one seed per layer ({len(layers)})")
    for layer, seed in zip(layers, seeds):
        if layer.lsh and not (_is_int(seed) and 0 <= seed < 2**64):
            bad("hash_seeds", f"layer {layer.index}: expected an integer in [0, 2^64), got {str(seed)[:40]}")
    history = meta.get("history", [])
    keys = ("samples", "train_seconds", "samples_per_s", "mean_loss")
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and all(isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool)
                                        and math.isfinite(h[k]) for k in keys) for h in history):
        bad("history", f"must be a list of tables of finite {', '.join(keys)}")


def _check_arrays(path: str, net, arrays: dict) -> None:
    """Contents of the arrays just read into net, against the network they describe."""
    def bad(name, msg):
        raise CheckpointError(f"{path}: invalid checkpoint: array {name}: {msg}")

    nonfinite = nonfinite_arrays(arrays, net.threads)
    if nonfinite:
        raise NonFiniteCheckpointError(f"{path}: the checkpoint holds non-finite values in {_describe_arrays(nonfinite)}; "
                                 f"it cannot be evaluated or trained from")
    for layer in net.layers:
        p = f"layer{layer.index}."
        for name in ("vW", "vb"):
            if arrays[p + name].size and arrays[p + name].min() < 0:
                bad(p + name, "negative second moments (Adam's v is a running mean of squares)")
        if not layer.lsh:
            continue
        hs, tb = layer.hasher, layer.tables
        dim = hs["dim"]
        if "coord_of_slot" in hs:
            cos, soc = arrays[p + "hash.coord_of_slot"], arrays[p + "hash.slot_of_coord"]
            n_perm = hs["n_perm"]
            if cos.size and (cos.min() < 0 or cos.max() >= dim):
                bad(p + "hash.coord_of_slot", f"coordinates outside [0, {dim})")
            # each block of slot_of_coord is a permutation of its slot range, and the inverse of coord_of_slot
            blocks = soc.reshape(n_perm, dim).astype(np.int64) - (np.arange(n_perm, dtype=np.int64) * dim)[:, None]
            if blocks.min(initial=0) < 0 or blocks.max(initial=0) >= dim or not all(
                    np.bincount(row, minlength=dim).max(initial=1) == 1 for row in blocks):
                bad(p + "hash.slot_of_coord", "is not a set of permutations of the coordinates")
            slots = np.arange(cos.size, dtype=np.int64)
            if not np.array_equal(soc[(slots // dim) * dim + cos], slots):
                bad(p + "hash.coord_of_slot", "does not match hash.slot_of_coord")
        if "srp_coef" in hs:
            c = arrays[p + "hash.srp_coef"]
            if c.size and (c.min() < -1 or c.max() > 1):
                bad(p + "hash.srp_coef", "coefficients outside {-1, 0, +1}")
        n_items, cap = tb["n_items"], tb["capacity"]
        off = arrays[p + "tables.offsets"].reshape(tb["L"], -1).astype(np.int64)
        sizes = np.diff(off, axis=1)
        if np.any(off[:, 0] != 0) or sizes.min(initial=0) < 0 or sizes.max(initial=0) > cap \
                or off[:, -1].max(initial=0) > n_items:
            bad(p + "tables.offsets", f"are not bucket offsets of tables of {n_items} ids with buckets of at most "
                                      f"{cap}")
        ids = arrays[p + "tables.ids"]
        if ids.size and (ids.min() < 0 or ids.max() >= n_items):
            bad(p + "tables.ids", f"ids outside [0, {n_items})")


def _check_sizes(path: str, config: Config, table: dict) -> None:
    """The largest arrays the config implies (weights, table offsets and ids)
    against the file's table, before the network is allocated: a config
    edited to describe a huge network is refused here, not by the memory
    check or after gigabytes were mapped."""
    n_in = config.n_features
    for i, n_out in enumerate(config.widths):
        rows, cols = (n_out, n_in) if config.layouts[i] == "rowmajor" else (n_in, n_out)
        want = {f"layer{i}.W": [rows, -(-cols // ROW_ALIGN) * ROW_ALIGN]}
        if config.layer_modes[i] == "lsh":
            want[f"layer{i}.tables.offsets"] = [config.L * ((1 << config.range_pow) + 1)]
            want[f"layer{i}.tables.ids"] = [config.L * n_out]
        for name, shape in want.items():
            got = table.get(name, {}).get("shape")
            if got != shape:
                raise CheckpointError(f"{path}: arrays do not match the network its config describes: {name} is "
                                      f"{got if got is not None else 'missing'}, the config implies {shape}")
        n_in = n_out


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
    _check_sizes(path, config, {e["name"]: e for e in header["arrays"]})
    from .resources import MemoryLimitError

    try:
        net = cls(config, _init=False)
    except MemoryLimitError as e:
        raise MemoryLimitError(f"{path}: {e}") from None
    except ValueError as e:  # ConfigError, SelectionError: a config this build or CPU cannot run
        raise CheckpointError(f"{path}: cannot build the network of this checkpoint: {e}") from None
    want = net.state_arrays()
    table = {e["name"]: e for e in header["arrays"]}
    if set(table) != set(want):
        missing, extra = sorted(set(want) - set(table)), sorted(set(table) - set(want))
        raise CheckpointError(f"{path}: arrays do not match the network its config describes"
                              + (f" (missing: {', '.join(missing[:4])})" if missing else "")
                              + (f" (unexpected: {', '.join(extra[:4])})" if extra else ""))
    _check_meta(path, header["meta"], net.layers)
    for name, e in table.items():
        dst = want[name]
        if np.dtype(e["dtype"]) != dst.dtype or tuple(e["shape"]) != dst.shape:
            raise CheckpointError(f"{path}: array {name} is {e['dtype']}{tuple(e['shape'])}, "
                                  f"expected {dst.dtype.str}{dst.shape}")
    staged = {}
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(base))
        pos = base
        for name in sorted(table, key=lambda n: table[n]["offset"]):
            e = table[name]
            dst = want[name]
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
    _check_arrays(path, net, staged)
    net._restore(header["meta"], staged)
    return net
