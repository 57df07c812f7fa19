"""Property-based fuzzing of every boundary where untrusted input enters.

Contracts checked:

* XC reader (``loads_xc`` / ``load_xc``): any bytes give a valid ``Dataset``
  or a ``DataFormatError`` whose ``path`` is the source, ``line`` is None or
  within the file's lines (+2) and ``problem`` is a one-line text; never
  another exception, never a hang (deadline + watchdog), and the memory used
  stays proportional to the input however large the header's counts are
  (tracemalloc, which sees numpy's buffers). Accepted input round-trips
  through ``dumps_xc``; a corrupted binary cache never changes a result.
* Config: ``Config.from_dict`` gives a Config or a ``ConfigError`` naming a
  key it was given; ``Config.from_toml`` gives a Config or a ``ConfigError``
  naming the file; accepted configs round-trip through ``to_dict``.
* CLI: ``workbench.cli.main(argv)`` on ``train --preset tiny --no-eval --quiet
  --max-samples 64`` plus random train flags returns 0, 2 (user error; 3 is
  the documented numerical-error code) or exits 2 from argparse, without a
  traceback, with a one-line error.
* Engine boundary: ``_core.op_forward/op_backward/op_adam/op_row_adam`` with random
  shapes, index arrays and dtypes either run (valid input must run) or raise
  IndexError/ValueError/TypeError/KeyError (OverflowError for scalar
  arguments outside the C int range), for the scalar kernels, the AVX-512
  kernels through the emulation (``avx512@emu``, ``avx512_bf16@emu``) and any
  other kernel this CPU can run. Under ``.ci/sanitize.sh`` (ASan + UBSan)
  this also catches silent out-of-bounds accesses. (``validate=False``, where
  the caller vouches for the indices, is out of scope.)
* Checkpoints: a valid checkpoint whose arrays, array table, meta counters,
  config or header were changed and whose SHA-256 was recomputed loads only
  if it is still valid for the network it describes (values that must be
  refused -- NaN/inf, negative second moments, ids and coordinates out of
  range, wrong shapes or dtypes -- are), else ``CheckpointError`` /
  ``MemoryLimitError`` naming the file; a loaded one predicts, evaluates
  and trains without crashing.
* Dataset mutation: a ``Dataset`` whose arrays were changed after
  validation (in place, or swapped through the frozen dataclass) is
  trained on / predicted from only where every row read is well-formed
  (an independent numpy oracle), else ``DataMismatchError`` naming it.

Budget (examples per property; HYPOTHESIS_PROFILE=ci uses the same numbers,
HYPOTHESIS_PROFILE=deep multiplies them by 10; the file runs in ~30-60 s):

=====================================  ========  ======
property                               default   deep
=====================================  ========  ======
test_xc_reader_arbitrary_bytes            400    4000
test_xc_reader_header_then_bytes          300    3000
test_xc_reader_almost_valid_files         500    5000
test_xc_round_trip                        200    2000
test_xc_valid_spellings_parse_exactly     150    1500
test_load_xc_files_and_corrupt_cache      100    1000
test_config_from_dict                     400    4000
test_config_from_toml                     200    2000
test_cli_train_random_flags                40     400
test_engine_forward                       300    3000
test_engine_backward                      300    3000
test_engine_adam                          200    2000
test_engine_row_adam                      200    2000
test_checkpoint_contents                  600    6000
test_dataset_mutation_after_construction  600    6000
=====================================  ========  ======

Engine-boundary bugs the fuzzing found (``FIXED_ENGINE_BUGS``) keep a
reproducer each, run in a subprocess (they used to crash it), which must now
be rejected with a clear error.
``SLIDE_FUZZ_TRACE=FILE`` appends every engine example to FILE before the
call, so the input behind a crash is the file's last line.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st

from kernels import _core
from workbench import variants
from workbench.config import Config, ConfigError
from workbench.data import DataFormatError, Dataset, cache_path_for, dumps_xc, load_xc, loads_xc

from .ckpt_tools import pack, read_raw, unpack, write_raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def budget(n: int) -> int:
    """n examples at the default budget (100), scaled by the loaded profile (deep: 10x)."""
    return max(1, n * settings.default.max_examples // 100)


def fuzz(n, deadline_s=2.0, **kw):
    """Settings for one property: n examples, a deadline that flags slow
    (quadratic, stuck) inputs but tolerates a loaded 2-core machine and ASan."""
    return settings(max_examples=budget(n), deadline=None if deadline_s is None else timedelta(seconds=deadline_s),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much],
                    **kw)


@contextlib.contextmanager
def watchdog(seconds):
    """Kill the process with every thread's traceback if the body hangs (a
    deadline only fires after a call returns; a C loop never returns)."""
    # the real stderr: pytest's --capture=sys replaces sys.stderr by an object without a file descriptor
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def traced_peak():
    """Peak bytes allocated (Python objects and numpy buffers) inside the body."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    box = [0]
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()


# =============================================================== XC reader

def check_xc(data: bytes, source: str = "<memory>", loader=None):
    """Parse ``data`` (with ``loader`` or loads_xc); check the contract; return
    the Dataset or the DataFormatError."""
    n_newlines = data.count(b"\n")
    with watchdog(60), traced_peak() as peak:
        try:
            result = loader() if loader else loads_xc(data, source=source)
        except DataFormatError as exc:
            result = exc
    limit = (1 << 20) + 64 * len(data)
    assert peak[0] <= limit, f"parsing {len(data)} bytes allocated {peak[0]} bytes at peak"
    if isinstance(result, DataFormatError):
        e = result
        assert e.path == source
        assert e.line is None or (isinstance(e.line, int) and 1 <= e.line <= n_newlines + 2), e.line
        assert isinstance(e.problem, str) and e.problem.strip()
        assert "\n" not in e.problem and "\r" not in e.problem, repr(e.problem)
        assert "\n" not in str(e)
        return e
    ds = result
    assert isinstance(ds, Dataset)
    header = data.split(b"\n", 1)[0].split()
    assert len(ds) == int(header[0]) and ds.n_features == int(header[1]) and ds.n_labels == int(header[2])
    back = loads_xc(dumps_xc(ds))
    assert back.equals(ds), "accepted input does not round-trip through dumps_xc"
    return ds


@fuzz(400)
@given(st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass"))))
@example(b"")
@example(b"\n\n")
@example(b"0 1 1\n")
@example(b"0 1 1")
@example(b"1 1 1\n \n")
@example(b"1 1 1\n\r\n")
@example(b"1 1 1\n0")
@example(b"1 1 1\n0:")
@example(b"1 1 1\n:0")
@example(b"1 1 1\n0,")
@example(b"1 1 1\n 0:1e-46")
@example(b"1 1 1\n 0:1e39")
def test_xc_reader_arbitrary_bytes(data):
    check_xc(data)


HUGE_COUNTS = ["0", "1", "2", "3", "1000000000000", "999999999999999999", "9999999999999999999",
               "2147483646", "2147483647", "2147483648", "4294967296", "18446744073709551616",
               "0000000000000000000000001", "-1", "1e3", "0x10", "\u0663", "\uff11", ""]


@fuzz(300)
@given(st.lists(st.sampled_from(HUGE_COUNTS), min_size=0, max_size=4),
       st.sampled_from([" ", "\t", "  ", " \t"]), st.sampled_from(["\n", "\r\n", ""]),
       st.binary(max_size=300))
def test_xc_reader_header_then_bytes(counts, sep, eol, body):
    """A header claiming up to 10^19 points or 2^64 features over a tiny body
    fails fast and allocates nothing sized by the claim (checked in check_xc)."""
    check_xc((sep.join(counts) + eol).encode() + body)


# ---- almost-valid files: a valid file, then perturbations

BAD_IDS = ["-1", "-0", "+3", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808",
           "18446744073709551616", "1" + "0" * 40, "", "0x1", "1.0", "1e2", "\u0663", "\uff13", "1 ", "\u00a01"]
BAD_VALUES = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e39", "-3.4028236e38", "3.4028235e38",
              "3.40282357e38", "1e-46", "-1e-45", "1.4e-45", "-0", "+0.0", "", ".", "e5", "1e", "1e+", "1..2",
              "0x1p3", "1_000", "1,5", "\uff11", "+-1", "--1", "9" * 300, "0." + "0" * 300 + "1",
              "1e99999999999999999999", "1e-99999999999999999999", "0e999999", "1" + "0" * 60 + "e-60", "1:2"]
WEIRD_CHARS = ["\x00", "\x0b", "\x0c", "\r", "\t", "\u00a0", "\u2028", "\u3000", "\ufeff", "\u00e9", "\U0001f600",
               ",", ":", " ", "\n", "\\"]

MUTATIONS = ("count", "n_features", "n_labels", "header_shape", "feature_id", "label_id", "value", "colon",
             "comma", "dup_feature", "dup_label", "insert_char", "insert_bytes", "whitespace", "crlf", "lone_cr",
             "blank_line", "space_line", "drop_line", "extra_line", "truncate", "no_final_newline", "swap_lines")
# mutations after which the file must still parse to the same data
BENIGN = {"whitespace", "crlf", "no_final_newline"}


def float32s():
    return st.floats(width=32, allow_nan=False, allow_infinity=False)


def spell(v: np.float32, how: int) -> str:
    """Decimal spellings that denote exactly the float32 ``v`` (or round to it correctly)."""
    f = float(v)
    if how == 0:
        return repr(f)             # exact double of the float32
    if how == 1:
        return "%.9g" % f          # 9 significant digits: correctly rounds back
    if how == 2:
        return "%.9E" % f
    if how == 3:
        return "%.17f" % f if abs(f) < 1e6 and (f == 0 or abs(f) >= 1e-3) else repr(f)
    return ("+" if f >= 0 and not math.copysign(1, f) < 0 else "") + repr(f)


@st.composite
def xc_files(draw, max_points=8):
    """(text lines, expected rows) of a valid file: rows are (labels, {feature: float32})."""
    F = draw(st.sampled_from([1, 2, 3, 7, 64, 1000, 2**31 - 1]))
    L = draw(st.sampled_from([1, 2, 5, 33, 2**31 - 1]))
    n = draw(st.integers(0, max_points))
    rows, lines = [], []
    for _ in range(n):
        labels = draw(st.lists(st.integers(0, min(L, 50) - 1) | st.just(L - 1), unique=True, max_size=4))
        feats = draw(st.lists(st.integers(0, min(F, 60) - 1) | st.just(F - 1), unique=True, max_size=6))
        vals = [np.float32(draw(float32s())) for _ in feats]
        spells = [spell(v, draw(st.integers(0, 4))) for v in vals]
        tokens = [f"{f}:{s}" for f, s in zip(feats, spells)]
        label_tok = ",".join(map(str, labels))
        lines.append([label_tok] + tokens)
        rows.append((labels, dict(zip(feats, vals))))
    return [str(n), str(F), str(L)], lines, rows, F, L


def join_line(tokens):
    label, feats = tokens[0], tokens[1:]
    if not label and not feats:
        return " "
    if not label:
        return " " + " ".join(feats)
    return " ".join([label] + feats)


def expected_dataset(rows, F, L):
    indptr, indices, values, label_indptr, labels = [0], [], [], [0], []
    for row_labels, feats in rows:
        for f in sorted(feats):
            indices.append(f)
            values.append(feats[f])
        labels.extend(row_labels)
        indptr.append(len(indices))
        label_indptr.append(len(labels))
    return Dataset("expected", F, L, np.array(indptr, np.int64), np.array(indices, np.int64),
                   np.array(values, np.float32), np.array(label_indptr, np.int64), np.array(labels, np.int64))


@st.composite
def almost_valid_xc(draw):
    header, lines, rows, F, L = draw(xc_files())
    muts = draw(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10**6), st.integers(0, 10**6)),
                         max_size=3))
    eol = "\n"
    final_newline = True
    tail_ops = []
    for kind, a, b in muts:
        li = a % len(lines) if lines else None
        line = lines[li] if lines else None
        if kind in ("count", "n_features", "n_labels") and len(header) < 3:
            pass  # after a header_shape mutation
        elif kind == "count":
            header[0] = draw(st.sampled_from(HUGE_COUNTS + [str(len(lines) + d) for d in (-2, -1, 1, 2)]))
        elif kind == "n_features":
            header[1] = draw(st.sampled_from(HUGE_COUNTS))
        elif kind == "n_labels":
            header[2] = draw(st.sampled_from(HUGE_COUNTS))
        elif kind == "header_shape":
            header = draw(st.sampled_from([header[:2], header + ["1"], [" ".join(header)], header[::-1],
                                           ["\ufeff" + header[0]] + header[1:], [h + ".0" for h in header]]))
        elif kind == "feature_id" and line and len(line) > 1 and ":" in line[1 + b % (len(line) - 1)]:
            t = 1 + b % (len(line) - 1)
            _, v = line[t].split(":", 1)
            line[t] = draw(st.sampled_from(BAD_IDS + [str(F), str(F + 1)])) + ":" + v
        elif kind == "label_id" and line and line[0]:
            labs = line[0].split(",")
            labs[b % len(labs)] = draw(st.sampled_from(BAD_IDS + [str(L), str(L + 7)]))
            line[0] = ",".join(labs)
        elif kind == "value" and line and len(line) > 1 and ":" in line[1 + b % (len(line) - 1)]:
            t = 1 + b % (len(line) - 1)
            f, _ = line[t].split(":", 1)
            line[t] = f + ":" + draw(st.sampled_from(BAD_VALUES))
        elif kind == "colon" and line and len(line) > 1:
            t = 1 + b % (len(line) - 1)
            line[t] = draw(st.sampled_from([line[t].replace(":", ""), line[t].replace(":", "::"),
                                            ":" + line[t], line[t] + ":", line[t].replace(":", " : ")]))
        elif kind == "comma" and line:
            line[0] = draw(st.sampled_from(["," + line[0], line[0] + ",", line[0].replace(",", ",,"), ",",
                                            line[0] + ",:", line[0].replace(",", ", ")]))
        elif kind == "dup_feature" and line and len(line) > 1:
            line.append(line[1 + b % (len(line) - 1)])
        elif kind == "dup_label" and line and line[0]:
            line[0] = line[0] + "," + line[0].split(",")[0]
        elif kind == "whitespace" and line:
            ws = draw(st.sampled_from([" ", "\t", "  ", " \t "]))
            lines[li] = [line[0]] + [ws + t if i % 2 else t for i, t in enumerate(line[1:])] if line[0] else line
            tail_ops.append(("trailing", li, draw(st.sampled_from([" ", "\t", "  \t"]))))
        elif kind == "crlf":
            eol = "\r\n"
        elif kind == "no_final_newline":
            final_newline = False
        elif kind in ("insert_char", "insert_bytes", "lone_cr", "blank_line", "space_line", "drop_line",
                      "extra_line", "truncate", "swap_lines"):
            tail_ops.append((kind, a, b))
    # header mutations that break the header are never benign; neither is any other kind here
    text_lines = [" ".join(header)] + [join_line(t) for t in lines]
    for op in tail_ops:
        if op[0] == "trailing" and op[1] + 1 < len(text_lines):
            text_lines[op[1] + 1] += op[2]
    data = None
    for kind, a, b in [op for op in tail_ops if op[0] != "trailing"]:
        i = a % len(text_lines)
        if kind == "insert_char":
            s = text_lines[i]
            text_lines[i] = s[: b % (len(s) + 1)] + draw(st.sampled_from(WEIRD_CHARS) | st.characters()) + s[
                b % (len(s) + 1):]
        elif kind == "lone_cr":
            text_lines[i] += "\r"
        elif kind == "blank_line":
            text_lines.insert(i + 1, "")
        elif kind == "space_line":
            text_lines.insert(i + 1, draw(st.sampled_from([" ", "\t", "  "])))
        elif kind == "drop_line" and i > 0:
            del text_lines[i]
        elif kind == "extra_line":
            text_lines.insert(i + 1, draw(st.sampled_from(["0 0:1", " 0:1", "0", "\x00"])))
        elif kind == "swap_lines" and len(text_lines) > 2:
            j = 1 + b % (len(text_lines) - 1)
            k = 1 + a % (len(text_lines) - 1)
            text_lines[j], text_lines[k] = text_lines[k], text_lines[j]
    data = (eol.join(text_lines) + (eol if final_newline else "")).encode("utf-8", "surrogatepass")
    for kind, a, b in [op for op in tail_ops if op[0] in ("insert_bytes", "truncate")]:
        if kind == "insert_bytes":
            at = a % (len(data) + 1)
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif kind == "truncate" and data:
            data = data[: b % len(data)]
    benign = all(k in BENIGN for k, _, _ in muts)
    return data, benign, expected_dataset(rows, F, L)


@fuzz(500)
@given(almost_valid_xc())
def test_xc_reader_almost_valid_files(case):
    data, benign, expected = case
    note(repr(data))
    result = check_xc(data)
    if benign:
        assert isinstance(result, Dataset), f"a valid file was rejected: {result}"
        assert result.equals(expected)


@st.composite
def datasets(draw):
    F = draw(st.sampled_from([1, 2, 17, 300, 2**31 - 1]))
    L = draw(st.sampled_from([1, 3, 40, 2**31 - 1]))
    n = draw(st.integers(0, 12))
    rows = []
    for _ in range(n):
        labels = draw(st.lists(st.integers(0, min(L, 60) - 1) | st.just(L - 1), unique=True, max_size=5))
        feats = draw(st.lists(st.integers(0, min(F, 400) - 1) | st.just(F - 1), unique=True, max_size=30))
        rows.append((labels, {f: np.float32(draw(float32s())) for f in feats}))
    return expected_dataset(rows, F, L)


@fuzz(200)
@given(datasets())
def test_xc_round_trip(ds):
    """Written text reads back as the identical arrays (every float32, incl. subnormals, -0, max)."""
    text = dumps_xc(ds)
    back = check_xc(text)
    assert isinstance(back, Dataset), back
    assert back.equals(ds)


@fuzz(150)
@given(xc_files(), st.randoms(use_true_random=False), st.sampled_from(["\n", "\r\n"]),
       st.sampled_from(["", " ", "\t", " \t"]), st.booleans())
def test_xc_valid_spellings_parse_exactly(file, rnd, eol, trailing, final_newline):
    """Features in any order, values in several exact spellings, CRLF, trailing
    blanks, no final newline: all parse to the exact float32 values."""
    header, lines, rows, F, L = file
    for t in lines:
        feats = t[1:]
        rnd.shuffle(feats)
        t[1:] = feats
    text = eol.join([" ".join(header)] + [join_line(t) + trailing for t in lines]) + (eol if final_newline else "")
    ds = check_xc(text.encode())
    assert isinstance(ds, Dataset), ds
    assert ds.equals(expected_dataset(rows, F, L))


@fuzz(100, deadline_s=5.0)
@given(st.one_of(almost_valid_xc().map(lambda c: c[0]), st.binary(max_size=200)),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 200))
def test_load_xc_files_and_corrupt_cache(data, flips, cut):
    """load_xc of a file: the same outcome as loads_xc, naming the path; a
    second load (through the binary cache), and a load after corrupting or
    truncating the cache, give the same result again."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.txt")
        with open(path, "wb") as fh:
            fh.write(data)
        first = check_xc(data, source=path, loader=lambda: load_xc(path))
        ref = check_xc(data)
        if isinstance(first, DataFormatError):
            assert isinstance(ref, DataFormatError) and (first.line, first.problem) == (ref.line, ref.problem)
            assert not os.path.exists(cache_path_for(path))
            return
        assert first.equals(ref)
        again = check_xc(data, source=path, loader=lambda: load_xc(path))
        assert again.equals(first)
        cache = cache_path_for(path)
        if os.path.exists(cache):
            blob = bytearray(open(cache, "rb").read())
            for at, val in flips:
                blob[at % len(blob)] ^= val or 1
            with open(cache, "wb") as fh:
                fh.write(bytes(blob[: len(blob) - cut] if cut % 3 == 0 else blob))
            os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
            after = check_xc(data, source=path, loader=lambda: load_xc(path))
            assert isinstance(after, Dataset) and after.equals(first)


# =============================================================== Config

FIELDS = [f.name for f in Config.__dataclass_fields__.values()]
CHOICE_STRINGS = ["dwta", "wta", "srp", "minhash", "vanilla", "topk", "threshold", "uniform", "exact", "fifo",
                  "reservoir", "sparse", "dense", "rowmajor", "transposed", "lsh", "fp32", "bf16", "bf16act",
                  "default", "aligned", "hugepage", "auto", "batched", "hogwild", "scalar", "avx2",
                  "avx512@emu", "f32/scalar"]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 300), st.integers(), st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**400]),
    st.floats(), st.floats(0, 1), st.sampled_from([float("nan"), float("inf"), -0.0, 1e-300, 1e300]),
    st.text(max_size=8), st.sampled_from(CHOICE_STRINGS),
)


def _containers(children):
    return st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                     st.dictionaries(st.text(max_size=6), children, max_size=3))


values = st.recursive(scalars, _containers, max_leaves=6)
config_keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS), st.text(max_size=10),
                        st.integers(-2, 2), st.sampled_from(["train", "run", "K ", "k", "learning_rate"]))


@fuzz(400)
@given(st.dictionaries(config_keys, values, max_size=5))
@example({"hidden": 5})
@example({"layer_modes": None})
@example({1: 2})
@example({"x": 1, 2: 3})
def test_config_from_dict(d):
    try:
        cfg = Config.from_dict(d)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg
        assert any(str(k) in msg or repr(k) in msg for k in d), f"error names no key of {sorted(map(repr, d))}: {msg}"
        return
    assert isinstance(cfg, Config)
    assert Config.from_dict(cfg.to_dict()) == cfg


def toml_value(v, depth=0):
    """TOML text of a Python value (may be invalid TOML on purpose: that is fine)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x, depth + 1) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(x, depth + 1)}' for k, x in v.items()) + "}"
    return "null"  # None: not TOML


toml_lines = st.one_of(
    st.builds(lambda k, v: f"{k} = {toml_value(v)}", st.sampled_from(FIELDS), values),
    st.builds(lambda k, v: f"{k} = {toml_value(v)}", st.sampled_from(FIELDS), scalars),
    st.sampled_from(["[train]", "[run]", "[other]", "[train.sub]", "[[train]]", "preset = \"tiny\"",
                     'kernels = { fwd_rows = "f32/scalar" }', "hidden = [64]", "K = 3", "lr = 1e-3",
                     "# comment", "", "K = 3\nK = 4", "x = ", "= 1", "[train", "a.b = 1", "hidden = [1, \"a\"]"]),
    st.text(max_size=20),
)


@fuzz(200, deadline_s=3.0)
@given(st.lists(toml_lines, max_size=8), st.one_of(st.just(b""), st.binary(max_size=6)))
def test_config_from_toml(lines, junk):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cfg.toml")
        with open(path, "wb") as fh:
            fh.write("\n".join(lines).encode("utf-8", "surrogatepass") + junk)
        try:
            cfg = Config.from_toml(path)
        except ConfigError as e:
            assert path in str(e), str(e)
            assert "\n" not in str(e)
            return
        assert isinstance(cfg, Config)


# =============================================================== CLI

CLI_BASE = ["train", "--preset", "tiny", "--no-eval", "--quiet", "--max-samples", "64"]
_CLI_TMP = tempfile.mkdtemp(prefix="slide-fuzz-cli-")
atexit.register(shutil.rmtree, _CLI_TMP, True)


def _cli_file(name, content: bytes):
    path = os.path.join(_CLI_TMP, name)
    if not os.path.exists(path):
        with open(path, "wb") as fh:
            fh.write(content)
    return path


def cli_files():
    return {
        "good.toml": _cli_file("good.toml", b'lr = 0.003\n[train]\nK = 3\n[run]\nepochs = 1\n'),
        "bad_key.toml": _cli_file("bad_key.toml", b"learning_rate = 0.1\n"),
        "bad_run.toml": _cli_file("bad_run.toml", b"[run]\nwhatever = 1\n"),
        "bad_syntax.toml": _cli_file("bad_syntax.toml", b"K = \n"),
        "bad_type.toml": _cli_file("bad_type.toml", b"hidden = 5\n"),
        "data.txt": _cli_file("data.txt", b"3 20 4\n0,1 1:0.5 3:1\n2 0:1 19:-2\n 5:0.25\n"),
        "bad.txt": _cli_file("bad.txt", b"3 20 4\n0,1 1:0.5 3:1\n2 0:nan\n 5:0.25\n"),
        "garbage.slide": _cli_file("garbage.slide", b"not a checkpoint at all\x00\x01"),
    }


cli_files()  # the explicit examples below name them


INT_BAD = ["-1", "x", "1.5", "99999999999999999999"]
CLI_OPTIONS = {  # flag -> candidate values (None: a switch). Sizes stay tiny: every example trains.
    "--epochs": ["0.5", "1", "2", "0", "-1", "nan", "x"],
    "--max-samples": ["1", "16", "200", "0", "-1", "x"],
    "--data-seed": ["0", "7", "-1", "x", "18446744073709551616"],
    "--eval-mode": ["dense", "lsh", "x"],
    "--eval-samples": ["10", "-1"],
    "--preset": ["tiny", "nope", ""],
    "--no-cache": None, "--no-eval": None, "--quiet": None, "--dry-run": None,
    "--hidden": ["", "8", "16,8", "0", "x", "2000000", "1,2,3,4,5,6,7,8"],
    "--layer-modes": ["dense,lsh", "dense,dense", "lsh,lsh", "lsh", "x"],
    "--layouts": ["rowmajor,rowmajor", "transposed,transposed", "transposed", "a,b"],
    "--layout": ["rowmajor", "transposed", "x"],
    "--hash-family": ["dwta", "wta", "srp", "minhash", "md5"],
    "-K": ["1", "2", "4", "0", "33"] + INT_BAD,
    "-L": ["1", "3", "12", "0", "5000"] + INT_BAD,
    "--range-pow": ["1", "4", "8", "0", "27"] + INT_BAD,
    "--bin-size": ["2", "4", "8", "3", "0", "512"],
    "--bucket-size": ["1", "8", "64", "0", "2000000"],
    "--bucket-policy": ["fifo", "reservoir", "lifo"],
    "--sampling": ["vanilla", "topk", "threshold", "uniform", "exact", "random"],
    "--top-k": ["1", "30", "500", "0"],
    "--threshold": ["1", "2", "0"],
    "--min-active": ["0", "5", "1000", "-1"],
    "--compat": None, "--no-compat": None, "--deterministic": None, "--no-deterministic": None,
    "--rehash": ["1", "32", "0"],
    "--rebuild": ["1", "64", "0"],
    "--batch-size": ["1", "7", "128", "0", "2000000"],
    "--lr": ["0.001", "0.1", "0", "-1", "nan", "inf", "11", "x"],
    "--beta1": ["0.9", "0", "1", "-0.1", "nan"],
    "--beta2": ["0.999", "1", "2"],
    "--eps": ["1e-8", "0", "2"],
    "--update": ["sparse", "dense", "x"],
    "--strategy": ["auto", "batched", "hogwild", "x"],
    "--init-std": ["0.01", "1", "0", "11"],
    "--threads": ["1", "2", "0", "-1", "5000"],
    "--seed": ["0", "1", "-1", "9223372036854775808"],
    "--precision": ["fp32", "bf16", "bf16act", "fp16"],
    "--isa": ["auto", "scalar", "avx2", "avx512", "avx512_bf16", "amx", "avx512@emu", "avx512_bf16@emu", "x"],
    "--placement": ["default", "aligned", "hugepage", "x"],
    "--prefetch": ["0", "4", "64", "65", "-1"],
    "--kernel": ["fwd_rows=f32/scalar", "adam=f32/avx512@emu", "fwd_rows=bf16/scalar", "fwd_rows=f32/nope",
                 "nope=f32/scalar", "fwd_rows", "=", "hash=f32/avx2"],
    "--config": ["good.toml", "bad_key.toml", "bad_run.toml", "bad_syntax.toml", "bad_type.toml", "/nonexistent.toml",
                 "DIR"],
    "--train": ["data.txt", "bad.txt", "/nonexistent.txt", "DIR"],
    "--test": ["data.txt", "bad.txt"],
    "--resume": ["garbage.slide", "/nonexistent.slide"],
    "--save": ["OUT/model.slide", "/nonexistent/dir/model.slide", "DIR"],
    "--checkpoint-every": ["16", "0", "-3"],
    "--json": ["OUT/run.json", "/nonexistent/dir/run.json"],
    "--bogus-flag": None, "-Z": ["1"], "stray-positional": None,
}


@st.composite
def cli_argvs(draw):
    files = cli_files()
    flags = draw(st.lists(st.sampled_from(sorted(CLI_OPTIONS)), max_size=3))
    extra = []
    for flag in flags:
        choices = CLI_OPTIONS[flag]
        if choices is None:
            extra.append(flag)
            continue
        value = draw(st.sampled_from(choices))
        if draw(st.integers(0, 19)) == 0:
            extra.append(flag)  # value missing
            continue
        value = files.get(value, value)
        extra += [flag, value]
    return CLI_BASE + extra


@fuzz(40, deadline_s=None)
@given(cli_argvs())
@example(CLI_BASE + ["--hidden", "x"])
@example(CLI_BASE + ["--config", os.path.join(_CLI_TMP, "bad_type.toml")])
@example(CLI_BASE + ["--epochs", "nan"])
def test_cli_train_random_flags(argv):
    with tempfile.TemporaryDirectory() as out:
        a_dir = os.path.join(out, "a_dir")  # a directory where a file is expected (inside `out`:
        os.mkdir(a_dir)                      # whatever a failed write leaves next to it is removed)
        argv = [a.replace("OUT/", out + "/") if a.startswith("OUT/") else (a_dir if a == "DIR" else a) for a in argv]
        err, std = io.StringIO(), io.StringIO()
        with watchdog(120), contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            from workbench import cli

            try:
                rc = cli.main(argv)
            except SystemExit as e:  # argparse: usage error (2) -- printed usage, then one error line
                rc = ("argparse", e.code)
    stderr = err.getvalue()
    note(f"argv={argv}\nrc={rc}\nstderr={stderr}")
    event(f"exit {rc}")
    assert "Traceback" not in stderr
    if isinstance(rc, tuple):
        assert rc == ("argparse", 2), rc
        last = stderr.strip().splitlines()[-1]
        assert re.match(r"slide-workbench( train)?: error: ", last), stderr
        return
    assert rc in (0, 2, 3), rc
    if rc:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        if lines and lines[0].startswith("usage:"):  # argparse's own error: usage, then one error line
            assert rc == 2 and re.match(r"slide-workbench( train)?: error: ", lines[-1]), stderr
            return
        assert len(lines) == 1 and lines[0].startswith("slide-workbench: error:"), stderr


# =============================================================== engine boundary

ALLOWED = (IndexError, ValueError, TypeError, KeyError)
INT32 = (-(2**31), 2**31 - 1)

FIXED_ENGINE_BUGS = {
    # kind: what used to happen (reproducers in KNOWN_REPRODUCERS, checked by test_fixed_engine_bug)
    "gb_zero_width": "op_backward: gb shaped (n_out, 0) has size 0, _ptr() returns NULL and the kernel writes "
                     "gb[id] through it (SIGSEGV); only gb.shape[0] is checked",
    "g_zero_width": "op_backward: g shaped (n, 0) passes (only g.shape[0] is used), _fptr() returns the 1-element "
                    "static _EMPTY_V and the kernel reads g[0..n) past it",
    "bf16_without_Wb": "op_forward/op_backward with a bf16 kernel and Wb=None: m.wb is NULL and the kernel "
                       "dereferences it (SIGSEGV)",
    "prefetch_out_of_range": "op_forward(prefetch < 0 or near 2**31): the SIMD kernels (avx2, avx512) read "
                             "ids[i + prefetch] before the start of ids; `i + pf + j < n` (int32) overflows for "
                             "large pf and passes (SEGV in a2_fwd_rows, layer_avx2.h:111); prefetch is not "
                             "range-checked by op_forward (Config limits it to [0, 64])",
    "not_an_array": "b / gb / g that are not arrays raise AttributeError (.shape read before any type check)",
}
SKIP_KINDS: set = set()  # every kind is rejected cleanly now: the properties cover them all


def engine_kernels(op):
    variants.compiled_isas()  # registers the emulated AVX-512 kernels
    usable = variants.usable_isas()
    names = sorted({k.name for k in variants.compiled_kernels() if k.op == op and k.isa in usable})
    assert any(n.endswith("/scalar") for n in names) and any("@emu" in n for n in names), names
    return names


def _trace(kind, **args):
    path = os.environ.get("SLIDE_FUZZ_TRACE")
    if path:
        def short(v):
            if isinstance(v, np.ndarray):
                return f"array(shape={v.shape}, dtype={v.dtype}, C={v.flags.c_contiguous}, {v.ravel()[:8].tolist()})"
            return repr(v)
        with open(path, "a") as fh:
            fh.write(f"{kind} " + ", ".join(f"{k}={short(v)}" for k, v in args.items()) + "\n")


def _index_array(draw, hi, size_max, perturb, kinds, name):
    """Unique in-range int32 indices, or a perturbed version (recorded in kinds)."""
    k = draw(st.integers(0, max(0, min(hi, size_max))))
    a = _rng(draw).permutation(max(hi, 0))[:k].astype(np.int32)
    if not perturb:
        return a
    how = draw(st.sampled_from(["range_hi", "range_neg", "repeat", "int64", "2d", "noncontig", "list", "uint32"]))
    kinds.add(f"{name}_{how}")
    if how == "range_hi":
        return np.append(a, np.int32(max(hi, 0) + draw(st.integers(0, 3)))).astype(np.int32)
    if how == "range_neg":
        return np.append(a, np.int32(draw(st.sampled_from([-1, -16, INT32[0]])))).astype(np.int32)
    if how == "repeat":
        return np.append(a, a[:1] if len(a) else np.int32([0])).astype(np.int32)
    if how == "int64":
        return a.astype(np.int64)
    if how == "uint32":
        return a.astype(np.uint32)
    if how == "2d":
        return a.reshape(1, -1)
    if how == "noncontig":
        return np.repeat(a, 2)[::2]
    return a.tolist()


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _float_vec(draw, n, perturb, kinds, name):
    v = _rng(draw).standard_normal(max(n, 0)).astype(np.float32)
    if not perturb:
        return v
    how = draw(st.sampled_from(["len", "float64", "2d", "noncontig", "nonfinite", "zero_width", "list", "none"]))
    kinds.add(f"{name}_{how}")
    if how == "len":
        return np.zeros(max(0, n + draw(st.sampled_from([-1, 1, 5]))), np.float32)
    if how == "float64":
        return v.astype(np.float64)
    if how == "2d":
        return v.reshape(1, -1) if draw(st.booleans()) else v.reshape(-1, 1)
    if how == "noncontig":
        return np.repeat(v, 2)[::2]
    if how == "nonfinite":  # valid: kernels compute with it
        kinds.discard(f"{name}_nonfinite")
        v[: 1] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return v
    if how == "zero_width":
        return np.zeros((n, 0), np.float32)
    if how == "list":
        return v.tolist()
    return None


def _weights(draw, rows, cols, perturb, kinds, extra_ld=True):
    ld = -(-max(cols, 0) // 16) * 16 + (16 * draw(st.integers(0, 1)) if extra_ld else 0)
    W = _rng(draw).standard_normal((rows, ld)).astype(np.float32)
    if perturb:
        how = draw(st.sampled_from(["float64", "ld_odd", "ld_short", "rows", "noncontig", "1d", "readonly_ok"]))
        kinds.add(f"W_{how}")
        if how == "float64":
            W = W.astype(np.float64)
        elif how == "ld_odd":
            W = np.zeros((rows, ld + 1), np.float32)
        elif how == "ld_short" and cols > 0:
            W = np.zeros((rows, ld - 16 if ld >= 16 and ld - 16 < cols else max(cols - 1, 0)), np.float32)
        elif how == "rows":
            W = np.zeros((rows + 1, ld), np.float32)
        elif how == "noncontig" and rows > 1 and ld > 0:
            W = np.zeros((rows, 2 * ld), np.float32)[:, ::2]
        elif how == "1d":
            W = W.ravel()
        else:
            kinds.discard(f"W_{how}")
            if how == "readonly_ok":
                W.setflags(write=False)
    return W


def _bf16_copy(draw, W, perturb, kinds):
    if not isinstance(W, np.ndarray) or W.ndim != 2 or W.dtype != np.float32:
        return None
    Wb = _core.bf16_buffer(W.shape)
    Wb[...] = (W.view(np.uint32) >> 16).astype(np.uint16)
    if perturb:
        how = draw(st.sampled_from(["no_spare", "dtype", "shape", "none"]))
        kinds.add(f"Wb_{how}")
        if how == "no_spare":
            return np.zeros(W.shape, np.uint16)
        if how == "dtype":
            return np.zeros(W.shape, np.float32)
        if how == "shape":
            return _core.bf16_buffer((W.shape[0] + 1, W.shape[1]))
        return None
    return Wb


def _scalar_int(draw, valid, perturb, kinds, name, bad):
    if not perturb:
        return valid
    kinds.add(f"{name}_bad")
    return draw(st.sampled_from(bad))


def _call(fn, kinds, **kw):
    note(f"kinds={sorted(kinds)}")
    _trace(fn.__name__, kinds=sorted(kinds), **kw)
    with watchdog(60):
        try:
            return fn(**kw), None
        except OverflowError as e:
            return None, e
        except ALLOWED as e:
            return None, e


def _check_outcome(result, err, kinds, scalar_overflow):
    event(("valid" if not kinds else "perturbed") + (" -> ran" if err is None else f" -> {type(err).__name__}"))
    if err is None:  # valid input, or a perturbation the boundary accepts (harmlessly)
        return result
    if isinstance(err, OverflowError):
        assert scalar_overflow, f"OverflowError without an out-of-range scalar argument: {err}"
    assert kinds, f"valid input raised {type(err).__name__}: {err}"
    return None


@st.composite
def forward_cases(draw):
    kinds = set()
    kernel = draw(st.sampled_from(engine_kernels("fwd_rows") + engine_kernels("fwd_cols")))
    if draw(st.integers(0, 14)) == 0:
        kernel = draw(st.sampled_from(["f32/nope", "nope", "f32/scalar/x", "", "bf16act/avx2@emu"]))
        kinds.add("kernel_bogus")
    layout = draw(st.sampled_from([0, 1]))
    # the kernel's op must match the layout, or the lookup fails with KeyError (also fine)
    n_in = draw(st.integers(0, 40))
    n_out = draw(st.integers(0, 40))
    P = lambda: draw(st.integers(0, 9)) == 0  # noqa: E731 - each argument perturbed with p = 0.1
    rows, cols = (n_out, n_in) if layout == 0 else (n_in, n_out)
    W = _weights(draw, rows, cols, P(), kinds)
    dtype = kernel.split("/")[0]
    Wb = _bf16_copy(draw, W, P(), kinds)
    if dtype != "bf16" and not draw(st.booleans()):
        Wb = None  # optional for f32 / bf16act
    b = _float_vec(draw, n_out, P(), kinds, "b")
    sparse = draw(st.booleans())
    xi = _index_array(draw, n_in, 40, P(), kinds, "xi") if sparse else None
    nx = len(xi) if sparse and hasattr(xi, "__len__") else n_in
    xv = _float_vec(draw, nx, P(), kinds, "xv")
    all_out = draw(st.booleans())
    ids = None if all_out else _index_array(draw, n_out, 40, P(), kinds, "ids")
    n = n_out if all_out else (len(ids) if hasattr(ids, "__len__") else 0)
    if all_out:
        n = draw(st.integers(0, n_out))
    n = _scalar_int(draw, n, P(), kinds, "n", [-1, n + 1, n_out + 1, 2**31 - 1, 2**31, -(2**31) - 1])
    prefetch = draw(st.sampled_from([0, 0, 1, 4, 64]))
    prefetch = _scalar_int(draw, prefetch, P(), kinds, "prefetch", [2**31 - 1, 2**31, 10**6])
    if draw(st.integers(0, 29)) == 0:
        prefetch = draw(st.sampled_from([-1, -1000, -(2**31)]))
    if prefetch < 0 or 2**31 - 1 - 256 < prefetch <= 2**31 - 1:
        kinds.add("prefetch_out_of_range")
    n_in_arg = _scalar_int(draw, n_in, P(), kinds, "n_in", [-1, n_in + 1, 2**31, -(2**31) - 1])
    fits = all(INT32[0] <= v <= INT32[1] for v in (n, prefetch, n_in_arg))
    if dtype == "bf16" and Wb is None:
        kinds.add("bf16_without_Wb")
    if b is None or isinstance(b, list):
        kinds.add("not_an_array")
    if ("fwd_rows" if layout == 0 else "fwd_cols") not in _ops_with(kernel):
        kinds.add("kernel_other_layout")
    return dict(kernel=kernel, layout=layout, n_in=n_in_arg, W=W, Wb=Wb, b=b, xi=xi, xv=xv, ids=ids, n=n,
                prefetch=prefetch), kinds, not fits


def _ops_with(name):
    variants.compiled_isas()
    return {k.op for k in variants.compiled_kernels() if k.name == name}


@fuzz(300)
@given(forward_cases())
def test_engine_forward(case):
    kw, kinds, overflow = case
    assume(not (kinds & SKIP_KINDS))
    z, err = _call(_core.op_forward, kinds, **kw)
    _check_outcome(z, err, kinds, overflow)
    if err is None and not kinds:
        assert z.shape == (kw["n"],) and z.dtype == np.float32


@st.composite
def backward_cases(draw):
    kinds = set()
    kernel = draw(st.sampled_from(engine_kernels("bwd_rows") + engine_kernels("bwd_cols")))
    if draw(st.integers(0, 14)) == 0:
        kernel = draw(st.sampled_from(["f32/nope", "bf16act/scalar", "x", "f32/avx512_bf16@emu"]))
        kinds.add("kernel_bogus")
    layout = draw(st.sampled_from([0, 1]))
    n_in = draw(st.integers(0, 40))
    n_out = draw(st.integers(0, 40))
    P = lambda: draw(st.integers(0, 9)) == 0  # noqa: E731
    rows, cols = (n_out, n_in) if layout == 0 else (n_in, n_out)
    W = _weights(draw, rows, cols, P(), kinds)
    Wb = _bf16_copy(draw, W, P(), kinds)
    dtype = kernel.split("/")[0]
    if dtype != "bf16" and not draw(st.booleans()):
        Wb = None
    gW = np.zeros(W.shape, np.float32) if isinstance(W, np.ndarray) else np.zeros((rows, 16), np.float32)
    if P():
        how = draw(st.sampled_from(["shape", "float64", "noncontig", "readonly"]))
        kinds.add(f"gW_{how}")
        gW = {"shape": lambda: np.zeros((gW.shape[0] + 1,) + gW.shape[1:], np.float32),
              "float64": lambda: gW.astype(np.float64),
              "noncontig": lambda: np.asfortranarray(np.zeros((max(gW.shape[0], 2),) + gW.shape[1:], np.float32))
              if gW.ndim == 2 and gW.shape[1] > 1 else np.zeros((gW.shape[0] + 1,) + gW.shape[1:], np.float32),
              "readonly": lambda: _readonly(gW)}[how]()
    gb = _float_vec(draw, n_out, P(), kinds, "gb")
    sparse = draw(st.booleans())
    xi = _index_array(draw, n_in, 40, P(), kinds, "xi") if sparse else None
    nx = len(xi) if sparse and hasattr(xi, "__len__") else n_in
    xv = _float_vec(draw, nx, P(), kinds, "xv")
    all_out = draw(st.booleans())
    ids = None if all_out else _index_array(draw, n_out, 40, P(), kinds, "ids")
    n = draw(st.integers(0, n_out)) if all_out else (len(ids) if hasattr(ids, "__len__") else 0)
    g = _float_vec(draw, n, P(), kinds, "g")
    want_dx = draw(st.booleans())
    n_in_arg = _scalar_int(draw, n_in, P(), kinds, "n_in", [-1, n_in + 1, 2**31])
    if dtype == "bf16" and Wb is None:
        kinds.add("bf16_without_Wb")
    for name, v in (("gb", gb), ("g", g)):
        if v is None or isinstance(v, list):
            kinds.add("not_an_array")
    if ("bwd_rows" if layout == 0 else "bwd_cols") not in _ops_with(kernel):
        kinds.add("kernel_other_layout")
    return dict(kernel=kernel, layout=layout, n_in=n_in_arg, W=W, Wb=Wb, gW=gW, gb=gb, xi=xi, xv=xv, ids=ids,
                g=g, want_dx=want_dx), kinds, not INT32[0] <= n_in_arg <= INT32[1]


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@fuzz(300)
@given(backward_cases())
def test_engine_backward(case):
    kw, kinds, overflow = case
    assume(not (kinds & SKIP_KINDS))
    gW0 = kw["gW"].copy() if isinstance(kw["gW"], np.ndarray) else None
    dx, err = _call(_core.op_backward, kinds, **kw)
    _check_outcome(dx, err, kinds, overflow)
    if err is None and not kinds:
        if kw["want_dx"]:
            assert dx.shape == (len(kw["xv"]),)
        else:
            assert dx is None
    if err is not None and gW0 is not None:
        # a rejected call must not have run the kernel
        assert np.array_equal(kw["gW"], gW0, equal_nan=True)


@st.composite
def adam_cases(draw):
    kinds = set()
    kernel = draw(st.sampled_from(engine_kernels("adam")))
    if draw(st.integers(0, 14)) == 0:
        kernel = draw(st.sampled_from(["f32/nope", "bf16/scalar", "adam", "f32/avx512_bf16"]))
        kinds.add("kernel_bogus")
    P = lambda: draw(st.integers(0, 9)) == 0  # noqa: E731
    R = draw(st.integers(0, 20))
    ld = draw(st.sampled_from([0, 1, 15, 16, 17, 32, 48]))
    rng = _rng(draw)
    W = rng.standard_normal((R, ld)).astype(np.float32)
    Wb = None
    if draw(st.booleans()):
        Wb = _bf16_copy(draw, W, P(), kinds)
    arrays = {}
    for name in ("M", "V", "G"):
        a = np.zeros((R, ld), np.float32) if name != "G" else rng.standard_normal((R, ld)).astype(np.float32)
        if P():
            how = draw(st.sampled_from(["shape", "float64", "noncontig", "readonly", "none"]))
            kinds.add(f"{name}_{how}")
            if how == "shape":
                a = np.zeros((R + 1, ld), np.float32)
            elif how == "float64":
                a = a.astype(np.float64)
            elif how == "noncontig":
                if R > 1 and ld > 1:
                    a = np.asfortranarray(a)
                else:
                    kinds.discard(f"{name}_{how}")
            elif how == "readonly":
                a = _readonly(a)
            else:
                a = None
                kinds.add("not_an_array")
        arrays[name] = a
    if P():
        kinds.add("W_bad")
        W = draw(st.sampled_from([W.ravel(), W.astype(np.float64), np.zeros((R, ld + 1), np.float32)]))
    cols = draw(st.integers(0, ld))
    cols = _scalar_int(draw, cols, P(), kinds, "cols", [-1, ld + 1, 2**31])
    rows = None if draw(st.booleans()) else _index_array(draw, R, 20, P(), kinds, "rows")
    lr = draw(st.sampled_from([1e-3, 0.0, 1.0, float("nan"), float("inf"), -1.0]))
    beta1 = draw(st.sampled_from([0.9, 0.0, 0.999999, 1.0]))
    return dict(kernel=kernel, W=W, Wb=Wb, M=arrays["M"], V=arrays["V"], G=arrays["G"], cols=cols, rows=rows,
                lr_t=lr, beta1=beta1), kinds, not INT32[0] <= cols <= INT32[1]


@fuzz(200)
@given(adam_cases())
def test_engine_adam(case):
    kw, kinds, overflow = case
    assume(not (kinds & SKIP_KINDS))
    W0 = kw["W"].copy()
    res, err = _call(_core.op_adam, kinds, **kw)
    _check_outcome(res, err, kinds, overflow)
    if err is not None:
        assert np.array_equal(kw["W"], W0, equal_nan=True), "a rejected call changed W"


@st.composite
def row_adam_cases(draw):
    kinds = set()
    kernel = draw(st.sampled_from(engine_kernels("row_adam")))
    if draw(st.integers(0, 14)) == 0:
        kernel = draw(st.sampled_from(["f32/nope", "bf16/scalar", "row_adam", "f32/avx512_bf16"]))
        kinds.add("kernel_bogus")
    P = lambda: draw(st.integers(0, 9)) == 0  # noqa: E731
    d = draw(st.integers(0, 40))
    B = draw(st.integers(0, 12))
    ldh = draw(st.sampled_from([d, d + 1, -(-d // 16) * 16, -(-d // 16) * 16 + 16]))
    vecs = {name: _float_vec(draw, d, P(), kinds, name) for name in ("w", "m", "v")}
    vecs["x"] = vecs["w"] if draw(st.booleans()) else _float_vec(draw, d, P(), kinds, "x")
    wb = None
    if draw(st.booleans()):
        wb = np.zeros(d, np.uint16)
        if P():
            kinds.add("wb_bad")
            wb = draw(st.sampled_from([np.zeros(d + 1, np.uint16), np.zeros(d, np.float32), np.zeros((1, d), np.uint16)]))
    rng = _rng(draw)
    H = rng.standard_normal((B, ldh)).astype(np.float32)
    dH = np.zeros((B, ldh), np.float32)
    if P():
        how = draw(st.sampled_from(["H_short", "dH_shape", "H_float64", "H_1d", "dH_readonly"]))
        kinds.add(how)
        if how == "H_short":
            if d == 0:
                kinds.discard(how)
            else:
                H, dH = H[:, : d - 1].copy(), dH[:, : d - 1].copy()
        elif how == "dH_shape":
            dH = np.zeros((B + 1, ldh), np.float32)
        elif how == "H_float64":
            H = H.astype(np.float64)
        elif how == "H_1d":
            H = H.ravel()
        else:
            dH = _readonly(dH)
    ids = _index_array(draw, B, 12, P(), kinds, "ids")
    n = len(ids) if hasattr(ids, "__len__") else 0
    g = _float_vec(draw, n, P(), kinds, "g")
    lr = draw(st.sampled_from([1e-3, 0.0, 1.0, float("nan"), -1.0]))
    return dict(kernel=kernel, w=vecs["w"], wb=wb, m=vecs["m"], v=vecs["v"], x=vecs["x"], H=H, dH=dH, ids=ids, g=g,
                lr_t=lr), kinds, False


@fuzz(200)
@given(row_adam_cases())
def test_engine_row_adam(case):
    kw, kinds, overflow = case
    assume(not (kinds & SKIP_KINDS))
    w0 = kw["w"].copy() if isinstance(kw["w"], np.ndarray) else None
    dH0 = kw["dH"].copy() if isinstance(kw["dH"], np.ndarray) else None
    res, err = _call(_core.op_row_adam, kinds, **kw)
    _check_outcome(res, err, kinds, overflow)
    if err is not None:  # a rejected call must not have run the kernel
        if w0 is not None:
            assert np.array_equal(kw["w"], w0, equal_nan=True), "a rejected call changed w"
        if dH0 is not None:
            assert np.array_equal(kw["dH"], dH0, equal_nan=True), "a rejected call changed dH"


# ---- known engine bugs: minimal reproducers, each in its own process

KNOWN_REPRODUCERS = {
    "gb_zero_width": """
        W = np.ones((5, 16), np.float32); gW = np.zeros_like(W)
        expect_error(lambda: _core.op_backward(K, 0, 8, W, None, gW, np.zeros((5, 0), np.float32), None,
                                               np.ones(8, np.float32), np.array([0, 4], np.int32),
                                               np.ones(2, np.float32), True))
    """,
    "g_zero_width": """
        W = np.ones((5, 16), np.float32); gW = np.zeros_like(W)
        expect_error(lambda: _core.op_backward(K, 0, 8, W, None, gW, np.zeros(5, np.float32), None,
                                               np.ones(8, np.float32), np.array([0, 4], np.int32),
                                               np.zeros((2, 0), np.float32), True))
    """,
    "bf16_without_Wb": """
        W = np.ones((5, 16), np.float32)
        expect_error(lambda: _core.op_forward(K.replace("f32", "bf16"), 0, 8, W, None, np.zeros(5, np.float32),
                                              None, np.ones(8, np.float32), None, 5))
    """,
    "prefetch_out_of_range": """
        W = np.ones((64, 16), np.float32)
        for pf in (-1000000, 2**31 - 1):
            expect_error(lambda: _core.op_forward(K, 0, 8, W, None, np.zeros(64, np.float32), None,
                                                  np.ones(8, np.float32), np.arange(64, dtype=np.int32), 64,
                                                  prefetch=pf))
    """,
    "not_an_array": """
        W = np.ones((5, 16), np.float32)
        expect_error(lambda: _core.op_forward(K, 0, 8, W, None, None, None, np.ones(8, np.float32), None, 5))
    """,
}
_REPRO_PRELUDE = """
import sys
import numpy as np
from kernels import _core
from workbench import variants
variants.compiled_isas()
K = sys.argv[1]
def expect_error(fn):
    try:
        fn()
    except (IndexError, ValueError, TypeError, KeyError) as e:
        print("rejected:", type(e).__name__, e)
        return
    except BaseException as e:
        sys.exit(f"wrong exception {type(e).__name__}: {e}")
    sys.exit("accepted invalid input")
"""


def _sanitizer_env():
    """Environment for a child that may crash on purpose: sanitizer reports go
    to its stderr, not to the log files .ci/sanitize.sh treats as failures."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if var in env:
            env[var] = re.sub(r"(^|:)log_path=[^:]*", r"\1log_path=stderr", env[var])
    env.pop("SLIDE_FUZZ_TRACE", None)
    return env


@pytest.mark.parametrize("kernel", ["f32/scalar", "f32/avx512@emu"])
@pytest.mark.parametrize("bug", sorted(FIXED_ENGINE_BUGS))
def test_fixed_engine_bug(bug, kernel):
    """Each input that once crashed the engine boundary is now refused cleanly."""
    code = _REPRO_PRELUDE + textwrap.dedent(KNOWN_REPRODUCERS[bug])
    r = subprocess.run([sys.executable, "-c", code, kernel], capture_output=True, text=True, env=_sanitizer_env(),
                       timeout=120)
    assert r.returncode == 0 and "rejected:" in r.stdout, (bug, FIXED_ENGINE_BUGS[bug], r.returncode, r.stderr[-500:])


def test_epochs_must_be_finite_and_positive():
    """`--epochs nan|inf|-1 --max-samples 0` is a one-line user error (exit 2)."""
    from workbench import cli

    for epochs in ("inf", "-1", "nan", "0"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(CLI_BASE + ["--max-samples", "0", "--epochs", epochs])
        assert rc == 2, (epochs, rc)
        assert "epochs" in err.getvalue() or "max-samples" in err.getvalue()

# =============================================================== checkpoint contents

def _ckpt_bases():
    """Two small trained checkpoints (built once): DWTA output layer with the
    batched strategy, and SRP on both layers (input layer LSH, hogwild)."""
    if not _CKPT_BASES:
        from workbench import Network, synthetic
        from workbench.config import preset_hyperparams

        train = synthetic.generate("tiny", "train", n=300)
        test = synthetic.generate("tiny", "test", n=40)
        hp = preset_hyperparams("tiny")
        for i, kw in enumerate(({}, {"hash_family": "srp", "hidden": (32,), "layer_modes": ("lsh", "lsh"),
                                     "K": 3, "L": 4, "strategy": "hogwild", "min_active": 8})):
            net = Network(Config(n_features=train.n_features, n_labels=train.n_labels,
                                 **{**hp, "deterministic": True, **kw}))
            net.fit(train, max_samples=256)
            path = os.path.join(_CKPT_TMP, f"base{i}.slide")
            net.save(path)
            _CKPT_BASES.append(path)
        _CKPT_BASES.append((train, test))
    return _CKPT_BASES


_CKPT_BASES: list = []
_CKPT_TMP = tempfile.mkdtemp(prefix="slide-fuzz-ckpt-")
atexit.register(shutil.rmtree, _CKPT_TMP, True)

FLOAT_VALUES = [float("nan"), float("inf"), float("-inf"), 3.4e38, -3.4e38, 0.0, -1.0, 1e-45, 1.0, 0.5]
INT_VALUES = {"<i4": [-1, -(2**31), 2**31 - 1, 2**30, 0, 1, 7], "<u4": [0, 1, 7, 2**31, 2**32 - 1],
              "|i1": [-128, -2, -1, 0, 1, 2, 127]}
META_VALUES = [-1, 0, 5, 2**31, 2**70, 1.5, "x", None, [], {}, True, [1, 2], float("nan")]


def _expect_value(name, old, new):
    """'fail' (the load must be refused), 'load' (must succeed) or 'either'."""
    kind = name.split(".", 1)[1]
    if kind in ("W", "b", "mW", "mb", "vW", "vb"):
        if not math.isfinite(new) or (kind in ("vW", "vb") and new < 0):
            return "fail"
        return "load"
    if kind == "tables.ids":
        return "either" if new >= 0 else "fail"
    if kind in ("hash.coord_of_slot", "hash.slot_of_coord"):
        return "either" if new == old else "fail"
    if kind == "hash.srp_coef":
        return "load" if -1 <= new <= 1 else "fail"
    if kind == "tables.offsets":
        return "fail" if new >= 2**31 else "either"
    return "either"


@st.composite
def checkpoint_mutations(draw):
    """(base index, mutations): each a function (header, arrays) -> None and
    the outcome it calls for ('fail', 'load', 'either'), plus raw-header cases."""
    base = draw(st.integers(0, 1))
    header, data = _ckpt_raw(base)
    names = [e["name"] for e in header["arrays"]]
    shapes = {e["name"]: e["shape"] for e in header["arrays"]}
    dtypes = {e["name"]: e["dtype"] for e in header["arrays"]}
    muts, used = [], set()  # one mutation per array / key: a later one never undoes an earlier one
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "value", "value", "values", "shape", "dtype", "drop", "extra",
                                     "rename", "meta", "config", "table", "header", "odd_tables", "odd_tables"]))
        name = draw(st.sampled_from(names))
        target = name if kind in ("value", "values", "shape", "dtype", "drop", "rename", "table") else kind
        if target in used:
            continue
        used.add(target)
        size = int(np.prod(shapes[name]))
        if kind in ("value", "values") and size:
            at = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=1 if kind == "value" else 8))
            new = draw(st.sampled_from(FLOAT_VALUES if dtypes[name] == "<f4" else INT_VALUES[dtypes[name]]))

            def mut(h, a, name=name, at=at, new=new, box={}):
                flat = a[name].reshape(-1)
                box["old"] = flat[at].copy()
                flat[at] = new
            if kind == "value":
                old = _ckpt_arrays(base)[name].reshape(-1)[at[0]].item()
                expect = _expect_value(name, old, new)
            else:
                expect = "either"
                if dtypes[name] == "<f4" and not math.isfinite(new):
                    expect = "fail"
            if name.endswith("tables.ids") and new < 0:
                expect = "fail"
            muts.append((f"{kind} {name}[{at}] = {new}", mut, expect))
        elif kind == "odd_tables":  # valid but unusual: random bucket sizes and ids (duplicates too)
            layer = draw(st.sampled_from(sorted({n.split(".")[0] for n in names if n.endswith("tables.ids")})))
            both = {layer + ".tables.offsets", layer + ".tables.ids"}
            if both & used:
                continue
            used |= both
            seed = draw(st.integers(0, 2**32 - 1))

            def mut(h, a, layer=layer, seed=seed, base=base):
                rng = np.random.default_rng(seed)
                off = a[layer + ".tables.offsets"]
                ids = a[layer + ".tables.ids"]
                n_tables = _ckpt_config(base)["L"]
                n_items = ids.size // n_tables
                cap = _ckpt_config(base)["bucket_size"]
                per = off.size // n_tables
                for t in range(n_tables):
                    sizes = rng.integers(0, min(cap, 4) + 1, per - 1) * (rng.random(per - 1) < 0.2)
                    sizes = np.minimum(sizes, np.maximum(0, n_items - np.concatenate([[0], np.cumsum(sizes)[:-1]])))
                    off[t * per:(t + 1) * per] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.uint32)
                ids[:] = rng.integers(0, n_items, ids.size)
            muts.append((f"odd tables {layer}", mut, "load"))
        elif kind == "shape":
            how = draw(st.sampled_from(["row", "flat", "short"]))

            def mut(h, a, name=name, how=how):
                x = a[name]
                if how == "row":
                    a[name] = np.concatenate([x, x[:1]]) if x.size else np.zeros((1,) + x.shape[1:], x.dtype)
                elif how == "flat" and x.ndim == 2:
                    a[name] = x.reshape(-1)
                else:
                    a[name] = x[:-1] if len(x) else x[:0].reshape((0,) * max(1, x.ndim - 1) + (1,))
            muts.append((f"shape {name} {how}", mut, "fail"))
        elif kind == "dtype":
            to = draw(st.sampled_from([np.int32, np.uint32, np.float32, np.int8, np.int64, np.float64]))
            if np.dtype(to).str == dtypes[name]:
                continue

            def mut(h, a, name=name, to=to):
                a[name] = a[name].astype(to)
            muts.append((f"dtype {name} -> {np.dtype(to)}", mut, "fail"))
        elif kind == "drop":
            muts.append((f"drop {name}", lambda h, a, name=name: a.pop(name), "fail"))
        elif kind == "extra":
            muts.append(("extra array", lambda h, a: a.__setitem__("layer9.W", np.zeros(4, np.float32)), "fail"))
        elif kind == "rename":
            muts.append((f"rename {name}", lambda h, a, name=name: a.__setitem__(name + "x", a.pop(name)), "fail"))
        elif kind == "meta":
            key = draw(st.sampled_from(["step", "batches", "samples_seen", "epochs_done", "epoch_pos", "rehashes",
                                        "rebuilds", "hash_seeds", "history", "run_target", "run_start"]))
            val = draw(st.sampled_from(META_VALUES))
            if key == "hash_seeds" and draw(st.booleans()):
                val = [draw(st.sampled_from(META_VALUES)) for _ in range(2)]
            if key == "history" and draw(st.booleans()):
                val = [{"samples": 1, "train_seconds": draw(st.sampled_from(META_VALUES)), "samples_per_s": 1.0,
                        "mean_loss": 1.0}]
            limit = 2**31 - 2 if key == "batches" else 2**62  # the engine's batch id is an int32
            ok_int = isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= limit
            if key == "hash_seeds":  # one per layer; only the LSH layers' (base 0: the output layer) matter
                lsh = [base == 1, True]
                expect = "load" if isinstance(val, list) and len(val) == 2 and all(
                    not f or (isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64)
                    for f, x in zip(lsh, val)) else "fail"
            elif key == "history":  # entries of finite numbers (cmd_eval sums train_seconds)
                entry = val[0] if isinstance(val, list) and val else {"train_seconds": 0}
                x = entry.get("train_seconds") if isinstance(entry, dict) else None
                expect = "load" if isinstance(val, list) and isinstance(x, (int, float)) and not isinstance(
                    x, bool) and math.isfinite(x) else "fail"
            elif key in ("run_target", "run_start"):
                expect = "load" if val is None or ok_int else "fail"
            else:
                expect = "load" if ok_int else "fail"

            def mut(h, a, key=key, val=val):
                h["meta"][key] = val
            muts.append((f"meta {key} = {val!r}", mut, expect))
        elif kind == "config":
            key = draw(st.sampled_from(FIELDS + ["bogus"]))
            val = draw(scalars)

            def mut(h, a, key=key, val=val):
                h["config"][key] = val
            muts.append((f"config {key} = {val!r}", mut, "either"))
        elif kind == "table":
            field = draw(st.sampled_from(["offset", "nbytes", "name", "dtype", "shape", "junk"]))
            val = draw(st.sampled_from([-64, 64, 2**62, "x", None, [3], ["a"], "<f8", "O", 1.5, True]))
            muts.append((f"table {name}.{field} = {val!r}", ("table", name, field, val), "fail"))
        else:
            what = draw(st.sampled_from(["arrays", "config", "meta", "drop", "raw"]))
            val = draw(st.sampled_from(["garbage", 5, None, [], [1], [{"name": 1}], {}, 1.5]))
            muts.append((f"header {what} = {val!r}", ("header", what, val), "either" if what == "drop" else "fail"))
    if not muts:
        muts.append(("none", lambda h, a: None, "load"))
    return base, muts


def _ckpt_raw(base):
    return read_raw(_ckpt_bases()[base])


def _ckpt_config(base):
    return _ckpt_raw(base)[0]["config"]


def _ckpt_arrays(base):
    return unpack(*_ckpt_raw(base))


def _apply(base, muts, out):
    header, data = _ckpt_raw(base)
    arrays = _ckpt_arrays(base)
    raw_table, raw_header = [], None
    for label, m, _ in muts:
        if callable(m):
            m(header, arrays)
        elif m[0] == "table":
            raw_table.append(m[1:])
        else:
            raw_header = m[1:]
    header, data = pack(header, arrays)
    for name, field, val in raw_table:
        for e in header["arrays"]:
            if e["name"] == name:
                if field == "junk":
                    e["junk"] = val
                elif field in ("offset", "nbytes") and isinstance(val, int) and not isinstance(val, bool):
                    e[field] += val
                else:
                    e[field] = val
    if raw_header is not None:
        what, val = raw_header
        if what == "raw":
            write_raw(out, None, data, raw_header=b"[" * 100000 if val is None else repr(val).encode())
            return arrays
        if what == "drop":
            header.pop("software", None)
        else:
            header[what] = val
    write_raw(out, header, data)
    return arrays


@fuzz(600, deadline_s=10.0)
@given(checkpoint_mutations())
@example((0, [("ids 2^30", lambda h, a: a["layer1.tables.ids"].__setitem__(slice(0, 5), 2**30), "fail")]))
@example((0, [("coords at max", lambda h, a: a["layer1.hash.coord_of_slot"].fill(2**31 - 1), "fail")]))
@example((0, [("arrays garbage", ("header", "arrays", "garbage"), "fail")]))
@example((1, [("srp coef", lambda h, a: a["layer0.hash.srp_coef"].fill(100), "fail")]))
# found by this property: a valid config value beyond C's int (threshold) raised OverflowError in add_layer
@example((0, [("config threshold = 2^31", lambda h, a: h["config"].__setitem__("threshold", 2**31), "load")]))
def test_checkpoint_contents(case):
    """A checkpoint whose contents were changed and whose checksum was
    recomputed loads only if every array is valid for the network it
    describes; otherwise CheckpointError (or MemoryLimitError) naming the
    file, in one line. A loaded one predicts, evaluates and trains (or stops
    with NumericalError), never crashes (ASan/UBSan in .ci/sanitize.sh)."""
    from workbench import Network
    from workbench.checkpoint import CheckpointError, NonFiniteCheckpointError
    from workbench.network import NumericalError
    from workbench.resources import MemoryLimitError

    base, muts = case
    note("; ".join(label for label, _, _ in muts))
    expects = {e for _, _, e in muts}
    out = os.path.join(_CKPT_TMP, "mutated.slide")
    arrays = _apply(base, muts, out)
    train, test = _ckpt_bases()[2]
    with watchdog(120):
        try:
            net = Network.load(out)
        except (CheckpointError, MemoryLimitError) as e:
            event("refused")
            msg = str(e)
            assert "\n" not in msg and msg.startswith(out), msg
            assert expects != {"load"}, f"a valid checkpoint was refused: {msg}"
            if any(e_ == "fail" and "= nan" in lbl or "= inf" in lbl or "= -inf" in lbl
                   for lbl, _, e_ in muts if lbl.startswith("value")) and len(muts) == 1:
                assert isinstance(e, NonFiniteCheckpointError) and "layer" in msg, msg
            return
        event("loaded")
        assert "fail" not in expects, "an invalid checkpoint was loaded"
        if expects == {"load"}:  # what was read is what was written
            for name, a in net.state_arrays().items():
                assert np.array_equal(a, arrays[name], equal_nan=True), name
        try:
            for mode in ("dense", "lsh"):
                top = net.predict(test, mode=mode)
                assert top.shape == (len(test), 5)
            net.evaluate(test, max_samples=20)
            net.fit(train, max_samples=64)
        except NumericalError as e:  # e.g. weights of 3.4e38: a clean stop, not a crash
            event("numerical error")
            assert "\n" not in str(e)


# =============================================================== Dataset mutation

def _rows_valid(arrays, F, L, rows, with_labels):
    """Oracle: rows well-formed (ranges, features strictly increasing in [0, F),
    finite values, labels in [0, L); duplicate labels are harmless)."""
    ip, ix, v, lp, lb = (arrays[k] for k in ("indptr", "indices", "values", "label_indptr", "labels"))
    if not len(ip) or len(lp) != len(ip) or len(ix) != len(v):
        return False  # arrays swapped for ones of other lengths: refused as a whole
    nnz = min(len(ix), len(v))
    n = len(ip) - 1 if not with_labels else min(len(ip), len(lp)) - 1
    for s in rows:
        if not 0 <= s < n:
            return False
        a, z = int(ip[s]), int(ip[s + 1])
        if not 0 <= a <= z <= nnz:
            return False
        f = ix[a:z].astype(np.int64)
        if len(f) and (f.min() < 0 or f.max() >= F or np.any(np.diff(f) <= 0)):
            return False
        if not np.all(np.isfinite(v[a:z])):
            return False
        if with_labels:
            a, z = int(lp[s]), int(lp[s + 1])
            if not 0 <= a <= z <= len(lb):
                return False
            y = lb[a:z].astype(np.int64)
            if len(y) and (y.min() < 0 or y.max() >= L):
                return False
    return True


_MUT_BASE: list = []


@st.composite
def dataset_mutations(draw):
    if not _MUT_BASE:
        from workbench import synthetic

        _MUT_BASE.append(synthetic.generate("tiny", "train", n=60))
    ds = _MUT_BASE[0]
    F, L = ds.n_features, ds.n_labels
    arrays = {k: getattr(ds, k).copy() for k in ("indptr", "indices", "values", "label_indptr", "labels")}
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(sorted(arrays)))
        a = arrays[field]
        how = draw(st.sampled_from(["set", "set", "set", "swap", "replace"]))
        if how == "replace":
            to = draw(st.sampled_from(["shorter", "empty", "longer"]))
            arrays[field] = {"shorter": a[: max(0, len(a) - 1 - draw(st.integers(0, 5)))].copy(),
                             "empty": a[:0].copy(), "longer": np.concatenate([a, a[-1:]])}[to]
            changes.append(f"{field} {to}")
            continue
        if not len(a):
            continue
        i = draw(st.integers(0, len(a) - 1))
        if how == "swap":
            j = draw(st.integers(0, len(a) - 1))
            a[i], a[j] = a[j], a[i]
            changes.append(f"swap {field}[{i}] {field}[{j}]")
            continue
        if field in ("indptr", "label_indptr"):
            n = len(arrays["indices" if field == "indptr" else "labels"])
            val = draw(st.sampled_from([-1, 0, n - 1, n, n + 1, 2**31, 2**40, -(2**62), int(a[i]) + 1,
                                        int(a[i]) - 1]))
        elif field == "indices":
            val = draw(st.sampled_from([-1, F - 1, F, F + 1, 2**31 - 1, -(2**31), 10**8, int(a[i - 1]),
                                        int(a[i]) + 1]))
        elif field == "labels":
            val = draw(st.sampled_from([-1, 0, L - 1, L, 10**8, -(2**31), int(a[i - 1])]))
        else:
            val = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 3.4e38, -1e-45]))
        if a.dtype.kind == "i" and not np.iinfo(a.dtype).min <= val <= np.iinfo(a.dtype).max:
            continue  # a neighbour's value +- 1 after an earlier change: not representable
        a[i] = val
        changes.append(f"{field}[{i}] = {val}")
    op = draw(st.sampled_from(["fit", "fit", "predict_dense", "predict_lsh", "logits", "evaluate"]))
    return ds, arrays, changes, op, draw(st.sampled_from(["batched", "hogwild"]))


@fuzz(600, deadline_s=10.0)
@given(dataset_mutations())
def test_dataset_mutation_after_construction(case):
    """A Dataset's arrays changed after it was validated (in place, or
    swapped for other arrays): fit / predict / logits / evaluate run when
    every row they read is still well-formed, and otherwise raise a clean
    DataMismatchError naming the data set and the row; C never reads out of
    bounds (ASan in .ci/sanitize.sh)."""
    from workbench import Network
    from workbench.config import preset_hyperparams
    from workbench.network import DataMismatchError, NumericalError

    ds0, arrays, changes, op, strategy = case
    note(f"{op} ({strategy}) after {changes}")
    ds = Dataset("mut", ds0.n_features, ds0.n_labels, **{k: getattr(ds0, k).copy() for k in arrays}, source="")
    for k, a in arrays.items():  # what a caller holding the arrays (or bypassing the frozen dataclass) can do
        if len(a) == len(getattr(ds, k)):
            getattr(ds, k)[...] = a
        else:
            object.__setattr__(ds, k, a)
    net = Network(Config(n_features=ds.n_features, n_labels=ds.n_labels,
                         **{**preset_hyperparams("tiny"), "deterministic": True, "strategy": strategy}))
    F, L = ds.n_features, ds.n_labels
    n = len(arrays["indptr"]) - 1
    if op == "evaluate" and len(arrays["label_indptr"]) == len(arrays["indptr"]):
        rows = np.flatnonzero(np.diff(arrays["label_indptr"]) > 0)
        valid = _rows_valid(arrays, F, L, rows, True)
    else:
        valid = _rows_valid(arrays, F, L, range(n), op == "fit")
    big = np.abs(np.nan_to_num(arrays["values"], posinf=0, neginf=0)).max(initial=0) > 1e30
    with watchdog(120):
        try:
            if op == "fit":
                net.fit(ds, epochs=1)
            elif op.startswith("predict"):
                assert net.predict(ds, mode=op.split("_")[1]).shape == (n, 5)
            elif op == "logits":
                assert net.logits(ds).shape == (n, L)
            else:
                net.evaluate(ds)
        except DataMismatchError as e:
            event("refused")
            msg = str(e)
            assert "\n" not in msg and msg.startswith("data set 'mut': "), msg
            assert not valid, f"well-formed rows were refused: {msg}"
            return
        except NumericalError:
            event("numerical error")
            assert valid and big, "NumericalError without huge values"
            return
    event("ran")
    assert valid, "malformed rows were used"
