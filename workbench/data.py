"""The data layer: the ``Dataset`` container and XC-format files.

This module owns
  * ``Dataset`` -- one split of an extreme-classification data set in CSR form
    (sparse features + variable-length label lists), validated on creation;
  * ``load_xc`` / ``loads_xc`` -- reading the extreme-classification repository
    text format (parsing itself is C code in ``kernels._io``);
  * ``write_xc`` / ``dumps_xc`` -- writing it back (atomically, round-trip exact);
  * the binary cache that makes a second ``load_xc`` of a big file cheap;
  * ``DataFormatError`` -- what a malformed file raises.

Text format: a header ``N F L`` (points, features, labels), then exactly N
lines ``l1,l2,... f:v f:v ...`` with 0-based ids. Either part may be empty; a
point with neither is a line holding a single blank (a truly empty line is an
error, so that a stray blank line is never taken for a point). CRLF and
trailing blanks are accepted; features are sorted per point on reading;
duplicate features or labels in a point, ids outside the header's ranges and
non-finite values (or ones beyond float32) are errors.

Cache: ``<file>.slidecache`` next to the source holds a fixed header (magic,
version, the source's size and mtime_ns, the shape and array lengths, a CRC-32
of the header fields before it and of the payload) followed by the raw
little-endian arrays. It is used only when every
field matches and the checksum and the ``Dataset`` validation pass; anything
else means the cache is ignored and rewritten. It is written through a
temporary file and a rename, and skipped silently where the directory is not
writable.
"""

from __future__ import annotations

import os
import secrets
import struct
import sys
import zlib
from dataclasses import dataclass

import numpy as np

from kernels import _io

__all__ = [
    "DataFormatError",
    "Dataset",
    "load_xc",
    "loads_xc",
    "write_xc",
    "dumps_xc",
    "cache_path_for",
]


class DataFormatError(ValueError):
    """A malformed XC file. ``line`` is 1-based (the header is line 1) or None."""

    def __init__(self, path, line, problem):
        super().__init__(path, line, problem)  # args make it picklable
        self.path = path
        self.line = line
        self.problem = problem

    def __str__(self):
        if self.line is None:
            return f"{self.path}: {self.problem}"
        return f"{self.path}:{self.line}: {self.problem}"


# ------------------------------------------------------------------ Dataset

_INDEX_FIELDS = (
    # field, dtype
    ("indptr", np.int64),
    ("indices", np.int32),
    ("values", np.float32),
    ("label_indptr", np.int64),
    ("labels", np.int32),
)


def _as_array(name, array, dtype):
    """C-contiguous 1-D array of ``dtype``; integer inputs must fit exactly."""
    array = np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"Dataset.{name} must be 1-D, got shape {array.shape}")
    if array.dtype == dtype:
        return np.ascontiguousarray(array)
    target = np.dtype(dtype)
    if target.kind == "i":
        if array.size == 0:
            return np.zeros(0, dtype=target)
        if array.dtype.kind not in "iu":
            raise ValueError(f"Dataset.{name} must hold integers, got dtype {array.dtype}")
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ValueError(f"Dataset.{name} has values that do not fit {target}")
    elif array.dtype.kind not in "fiu":
        raise ValueError(f"Dataset.{name} must hold numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported as non-finite
        return np.ascontiguousarray(array, dtype=target)


def _check_csr(kind, n_rows, indptr, ids, n_ids, what):
    """indptr is a valid row pointer over ``ids``, all in [0, n_ids)."""
    if len(indptr) != n_rows + 1:
        raise ValueError(f"Dataset.{kind}indptr has length {len(indptr)}, expected {n_rows + 1}")
    if indptr[0] != 0:
        raise ValueError(f"Dataset.{kind}indptr must start at 0, starts at {indptr[0]}")
    if n_rows and np.any(indptr[1:] < indptr[:-1]):
        row = int(np.argmax(indptr[1:] < indptr[:-1]))
        raise ValueError(f"Dataset.{kind}indptr decreases at row {row}")
    if indptr[-1] != len(ids):
        raise ValueError(f"Dataset.{kind}indptr ends at {indptr[-1]} but there are {len(ids)} entries")
    if len(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= n_ids:
            bad = lo if lo < 0 else hi
            raise ValueError(f"Dataset has {what} id {bad} out of range [0, {n_ids})")


def _row_of_entries(indptr):
    """Row number of every CSR entry."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of an extreme-classification data set, in CSR form.

    Point ``i`` has features ``indices[indptr[i]:indptr[i+1]]`` (strictly
    increasing ids in [0, n_features)) with ``values`` (finite float32) and
    labels ``labels[label_indptr[i]:label_indptr[i+1]]`` (distinct ids in
    [0, n_labels), in file order). Arrays are C-contiguous int64 / int32 /
    float32 / int64 / int32; other integer or float inputs are converted.
    Instances never compare equal by ``==`` (use ``equals``).

    The arrays are validated here and stay ordinary writable arrays (an
    array passed in with the right dtype is kept, not copied). Whatever
    happens to them afterwards, the engine re-checks every sample it reads
    (``kernels._core``), so a changed array gives ``DataMismatchError``,
    never an out-of-bounds access.
    """

    name: str
    n_features: int
    n_labels: int
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    label_indptr: np.ndarray
    labels: np.ndarray
    source: str = ""

    def __post_init__(self):
        for field in ("n_features", "n_labels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value < 2**31:
                raise ValueError(f"Dataset.{field} must be an integer in [1, 2**31), got {value!r}")
            object.__setattr__(self, field, int(value))
        for field, dtype in _INDEX_FIELDS:
            object.__setattr__(self, field, _as_array(field, getattr(self, field), dtype))
        if len(self.indptr) == 0:
            raise ValueError("Dataset.indptr must have at least one entry (n_points + 1)")
        if len(self.indices) != len(self.values):
            raise ValueError(f"Dataset.indices ({len(self.indices)}) and values ({len(self.values)}) differ in length")
        n = len(self.indptr) - 1
        _check_csr("", n, self.indptr, self.indices, self.n_features, "feature")
        _check_csr("label_", n, self.label_indptr, self.labels, self.n_labels, "label")
        if not np.all(np.isfinite(self.values)):
            at = int(np.flatnonzero(~np.isfinite(self.values))[0])
            row = int(np.searchsorted(self.indptr, at, side="right") - 1)
            raise ValueError(f"Dataset.values has a non-finite value (or one beyond float32) in row {row}")
        self._check_rows_sorted_unique()

    def _check_rows_sorted_unique(self):
        # Features: strictly increasing within a row. A step that is not
        # positive is only allowed where a new row starts.
        if len(self.indices) > 1:
            bad = np.diff(self.indices) <= 0
            bad[self.indptr[1:-1][(self.indptr[1:-1] > 0) & (self.indptr[1:-1] < len(self.indices))] - 1] = False
            if bad.any():
                at = int(np.argmax(bad)) + 1
                row = int(np.searchsorted(self.indptr, at, side="right") - 1)
                raise ValueError(f"Dataset row {row}: feature ids must be strictly increasing (sorted, no duplicates)")
        # Labels: distinct within a row (order is free). Sort (row, label) keys.
        lengths = np.diff(self.label_indptr)
        if len(self.labels) > 1 and lengths.max() > 1:
            keys = _row_of_entries(self.label_indptr) * self.n_labels + self.labels
            keys.sort()
            dup = np.flatnonzero(keys[1:] == keys[:-1])
            if len(dup):
                row, label = divmod(int(keys[dup[0]]), self.n_labels)
                raise ValueError(f"Dataset row {row}: duplicate label {label}")

    # -- basic protocol

    def __len__(self):
        return len(self.indptr) - 1

    @property
    def n_points(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, n_points={len(self)}, n_features={self.n_features}, "
                f"n_labels={self.n_labels}, nnz={self.nnz}, label_entries={len(self.labels)}, "
                f"source={self.source!r})")

    def equals(self, other: "Dataset") -> bool:
        """Same shape and identical arrays (name and source are not compared)."""
        return (
            isinstance(other, Dataset)
            and self.n_features == other.n_features
            and self.n_labels == other.n_labels
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f, _ in _INDEX_FIELDS)
        )

    # -- subsets

    def take(self, idx) -> "Dataset":
        """The points ``idx`` (integer indices, or a boolean mask), copied, in that order."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask has shape {idx.shape}, expected ({len(self)},)")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = np.zeros(0, dtype=np.int64)
        elif idx.dtype.kind not in "iu":
            raise TypeError(f"take() needs integer indices or a boolean mask, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"take() index out of range [0, {len(self)})")
        indptr, gather = _gather_rows(self.indptr, idx)
        label_indptr, label_gather = _gather_rows(self.label_indptr, idx)
        return Dataset(
            name=self.name,
            n_features=self.n_features,
            n_labels=self.n_labels,
            indptr=indptr,
            indices=self.indices[gather],
            values=self.values[gather],
            label_indptr=label_indptr,
            labels=self.labels[label_gather],
            source=self.source,
        )

    def head(self, n: int) -> "Dataset":
        """The first ``min(n, len(self))`` points, copied."""
        n = max(0, min(int(n), len(self)))
        end, label_end = int(self.indptr[n]), int(self.label_indptr[n])
        return Dataset(
            name=self.name,
            n_features=self.n_features,
            n_labels=self.n_labels,
            indptr=self.indptr[: n + 1].copy(),
            indices=self.indices[:end].copy(),
            values=self.values[:end].copy(),
            label_indptr=self.label_indptr[: n + 1].copy(),
            labels=self.labels[:label_end].copy(),
            source=self.source,
        )

    def widened(self, n_features: int | None = None, n_labels: int | None = None) -> "Dataset":
        """The same points declared over a feature / label space at least as
        large (the arrays are shared, not copied). A network accepts only data
        of its own shape; this is the explicit way to use data whose ids are a
        subset of a larger space (e.g. a test file whose header is narrower)."""
        nf = self.n_features if n_features is None else n_features
        nl = self.n_labels if n_labels is None else n_labels
        if nf < self.n_features or nl < self.n_labels:
            raise ValueError(f"{self.source or self.name}: cannot narrow {self.n_features} features, "
                             f"{self.n_labels} labels to {nf} features, {nl} labels")
        if (nf, nl) == (self.n_features, self.n_labels):
            return self
        return Dataset(name=self.name, n_features=nf, n_labels=nl, indptr=self.indptr, indices=self.indices,
                       values=self.values, label_indptr=self.label_indptr, labels=self.labels, source=self.source)

    # -- summary

    def stats(self) -> dict:
        """Summary numbers (plain Python ints/floats).

        ``top_label_freq`` is the fraction of points carrying the most frequent
        label: the P@1 of always predicting it.
        """
        n = len(self)
        nnz_per_point = np.diff(self.indptr)
        labels_per_point = np.diff(self.label_indptr)
        label_counts = np.bincount(self.labels, minlength=self.n_labels)
        top = int(np.argmax(label_counts)) if len(self.labels) else -1
        return {
            "n_points": n,
            "n_features": self.n_features,
            "n_labels": self.n_labels,
            "nnz": int(self.nnz),
            "mean_nnz": float(nnz_per_point.mean()) if n else 0.0,
            "median_nnz": float(np.median(nnz_per_point)) if n else 0.0,
            "max_nnz": int(nnz_per_point.max()) if n else 0,
            "mean_labels": float(labels_per_point.mean()) if n else 0.0,
            "max_labels": int(labels_per_point.max()) if n else 0,
            "distinct_labels": int(np.count_nonzero(label_counts)),
            "labels_seen_once": int(np.count_nonzero(label_counts == 1)),
            "top_label": top,
            "top_label_freq": float(label_counts[top] / n) if n and top >= 0 else 0.0,
            "points_without_labels": int(np.count_nonzero(labels_per_point == 0)),
            "points_without_features": int(np.count_nonzero(nnz_per_point == 0)),
        }


def _gather_rows(indptr, rows):
    """Row pointer and entry positions for the rows ``rows`` of a CSR structure."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    # position of entry j of the output = starts[row] + (j - new_indptr[row])
    offsets = np.repeat(starts - new_indptr[:-1], lengths)
    return new_indptr, offsets + np.arange(new_indptr[-1], dtype=np.int64)


# ------------------------------------------------------------------ reading

def _dataset_from_parse(parsed, name, source):
    _, n_features, n_labels, indptr, indices, values, label_indptr, labels = parsed
    return Dataset(name=name, n_features=n_features, n_labels=n_labels, indptr=indptr, indices=indices,
                   values=values, label_indptr=label_indptr, labels=labels, source=source)


def _default_name(path):
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    return stem if ext in (".txt", ".xc", ".svm") and stem else base


def loads_xc(data, name: str = "memory", source: str = "<memory>") -> Dataset:
    """Parse XC text held in memory (bytes or str). Errors name ``source``."""
    if isinstance(data, str):
        data = data.encode()
    try:
        parsed = _io.parse_xc(data)
    except _io.XCParseError as exc:
        raise DataFormatError(source, exc.line, exc.problem) from None
    return _dataset_from_parse(parsed, name, source)


def cache_path_for(path) -> str:
    return os.fspath(path) + ".slidecache"


def load_xc(path, cache: bool = True, name: str | None = None) -> Dataset:
    """Read an XC text file, through the binary cache next to it when ``cache``.

    Raises ``DataFormatError`` for a malformed file, ``OSError`` for a missing
    or unreadable one.
    """
    path = os.fspath(path)
    name = _default_name(path) if name is None else name
    st = os.stat(path)
    cache_file = cache_path_for(path)
    if cache:
        dataset = _read_cache(cache_file, st, name, path)
        if dataset is not None:
            return dataset
    with open(path, "rb") as fh:
        data = fh.read()
    dataset = loads_xc(data, name=name, source=path)
    del data
    if cache:
        after = os.stat(path)
        # Key the cache only on a source that did not change while we read it.
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            _write_cache(cache_file, st, dataset)
    return dataset


# ------------------------------------------------------------------ cache

_CACHE_MAGIC = b"SLIDEXC\x00"
_CACHE_VERSION = 2  # 2: the CRC covers the header fields too (n_features, n_labels)
# magic, version, header size, source size, source mtime_ns, n_points,
# n_features, n_labels, nnz, label entries, crc32 of the fields before it + payload
_CACHE_HEADER = struct.Struct("<8sIIqqqqqqqI")
_CACHE_HEADER_SIZE = 96  # padded so the arrays start aligned


def _cache_arrays(n_points, nnz, n_label_entries):
    return (
        ("indptr", np.dtype("<i8"), n_points + 1),
        ("indices", np.dtype("<i4"), nnz),
        ("values", np.dtype("<f4"), nnz),
        ("label_indptr", np.dtype("<i8"), n_points + 1),
        ("labels", np.dtype("<i4"), n_label_entries),
    )


def _read_cache(cache_file, st, name, source):
    """The cached Dataset, or None if the cache is missing, stale or corrupt."""
    try:
        with open(cache_file, "rb") as fh:
            head = fh.read(_CACHE_HEADER_SIZE)
            if len(head) != _CACHE_HEADER_SIZE:
                return None
            (magic, version, header_size, src_size, src_mtime, n_points, n_features, n_labels, nnz,
             n_label_entries, crc) = _CACHE_HEADER.unpack_from(head)
            if (magic, version, header_size) != (_CACHE_MAGIC, _CACHE_VERSION, _CACHE_HEADER_SIZE):
                return None
            if (src_size, src_mtime) != (st.st_size, st.st_mtime_ns):
                return None
            if min(n_points, nnz, n_label_entries) < 0:
                return None
            layout = _cache_arrays(n_points, nnz, n_label_entries)
            payload = sum(dt.itemsize * count for _, dt, count in layout)
            # Size check before allocating anything the header claims.
            if os.fstat(fh.fileno()).st_size != _CACHE_HEADER_SIZE + payload:
                return None
            arrays = {}
            running_crc = zlib.crc32(head[: _CACHE_HEADER.size - 4])
            for field, dtype, count in layout:
                array = np.empty(count, dtype=dtype)
                view = memoryview(array).cast("B")
                if fh.readinto(view) != len(view):
                    return None
                running_crc = zlib.crc32(view, running_crc)
                arrays[field] = array if sys.byteorder == "little" else array.astype(dtype.newbyteorder("="))
            if running_crc != crc:
                return None
        return Dataset(name=name, n_features=n_features, n_labels=n_labels, source=source, **arrays)
    except (OSError, ValueError, struct.error):
        return None


def _atomic_write(path, write_body):
    """Write through a fresh temporary file in the same directory, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            write_body(fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_cache(cache_file, st, dataset):
    layout = _cache_arrays(len(dataset), dataset.nnz, len(dataset.labels))
    arrays = [np.ascontiguousarray(getattr(dataset, field), dtype=dtype) for field, dtype, _ in layout]
    fields = (_CACHE_MAGIC, _CACHE_VERSION, _CACHE_HEADER_SIZE, st.st_size, st.st_mtime_ns, len(dataset),
              dataset.n_features, dataset.n_labels, dataset.nnz, len(dataset.labels))
    crc = zlib.crc32(_CACHE_HEADER.pack(*fields, 0)[: _CACHE_HEADER.size - 4])
    for array in arrays:
        crc = zlib.crc32(memoryview(array).cast("B"), crc)
    header = _CACHE_HEADER.pack(*fields, crc)

    def body(fh):
        fh.write(header.ljust(_CACHE_HEADER_SIZE, b"\0"))
        for array in arrays:
            fh.write(memoryview(array).cast("B"))

    try:
        _atomic_write(cache_file, body)
    except OSError:
        pass  # read-only directory, full disk...: caching is an optimisation only


# ------------------------------------------------------------------ writing

_WRITE_BUFFER_BYTES = 8 << 20


def _write_points(fh, dataset):
    fh.write(f"{len(dataset)} {dataset.n_features} {dataset.n_labels}\n".encode())
    buffer = np.empty(_WRITE_BUFFER_BYTES, dtype=np.uint8)
    row = 0
    while row < len(dataset):
        row_end, n_bytes, next_bound = _io.format_rows(dataset.indptr, dataset.indices, dataset.values,
                                                       dataset.label_indptr, dataset.labels, row, buffer)
        if row_end == row:  # one row larger than the buffer
            buffer = np.empty(max(next_bound, 2 * len(buffer)), dtype=np.uint8)
            continue
        fh.write(memoryview(buffer)[:n_bytes])
        row = row_end


def write_xc(dataset: Dataset, path) -> str:
    """Write ``dataset`` as XC text, atomically. Values are written with the
    shortest decimal that reads back as the same float32. Returns the path."""
    path = os.fspath(path)
    _atomic_write(path, lambda fh: _write_points(fh, dataset))
    return path


def dumps_xc(dataset: Dataset) -> bytes:
    """The XC text of ``dataset`` as bytes."""
    import io

    out = io.BytesIO()
    _write_points(out, dataset)
    return out.getvalue()
