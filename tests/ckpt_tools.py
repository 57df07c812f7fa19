"""Reading and writing checkpoint files byte by byte, checksum recomputed:
what a hostile or careless user can produce (a checksum proves integrity,
not validity). Tests use it to build checkpoints the writer refuses to
write and to mutate valid ones."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from workbench.checkpoint import ALIGN, MAGIC, VERSION


def read_raw(path) -> tuple[dict, bytes]:
    """(header, data section) of a well-formed checkpoint file."""
    blob = open(path, "rb").read()
    (hlen,) = struct.unpack("<Q", blob[12:20])
    header = json.loads(blob[20:20 + hlen])
    base = -(-(20 + hlen) // ALIGN) * ALIGN
    return header, blob[base:-32]


def write_raw(path, header, data: bytes, *, raw_header: bytes | None = None) -> None:
    """A checkpoint file of this header (any JSON value, or raw_header bytes
    as they are) and data section, with a correct SHA-256."""
    hjson = raw_header if raw_header is not None else json.dumps(header, sort_keys=True).encode()
    prefix = MAGIC + struct.pack("<IQ", VERSION, len(hjson)) + hjson
    base = -(-len(prefix) // ALIGN) * ALIGN
    body = prefix + b"\0" * (base - len(prefix)) + data
    with open(path, "wb") as fh:
        fh.write(body + hashlib.sha256(body).digest())


def unpack(header: dict, data: bytes) -> dict:
    """name -> array (a copy) of a well-formed header's table."""
    out = {}
    for e in header["arrays"]:
        a = np.frombuffer(data, dtype=np.dtype(e["dtype"]), count=int(np.prod(e["shape"], dtype=np.int64)),
                          offset=e["offset"])
        out[e["name"]] = a.reshape(e["shape"]).copy()
    return out


def pack(header: dict, arrays: dict) -> tuple[dict, bytes]:
    """(header with a table laid out for arrays, in their order; data section)."""
    table, parts, offset = [], [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        start = -(-offset // ALIGN) * ALIGN
        parts.append(b"\0" * (start - offset))
        parts.append(a.tobytes())
        table.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": start,
                      "nbytes": int(a.nbytes)})
        offset = start + a.nbytes
    return {**header, "arrays": table}, b"".join(parts)


def rewrite(path, out, mutate) -> None:
    """Read path, let mutate(header, arrays) change them in place, write out."""
    header, data = read_raw(path)
    arrays = unpack(header, data)
    mutate(header, arrays)
    write_raw(out, *pack(header, arrays))
