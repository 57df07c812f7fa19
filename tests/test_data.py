"""Tests for the data layer: XC text parsing/writing, the binary cache, Dataset."""

import os
import pickle
import random
import time
import tracemalloc
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import _io
from workbench import data as data_module
from workbench.data import DataFormatError, Dataset, cache_path_for, dumps_xc, load_xc, loads_xc, write_xc

HAND_WRITTEN = (
    b"4 10 6\n"
    b"0,5 3:0.5 1:0.25 9:1e-3\n"   # unsorted features get sorted, values stay paired
    b" 2:2\n"                      # no labels (leading blank)
    b"4,1\n"                       # no features; label order kept
    b"7:0.125 0:-1.5\n"            # no labels (starts directly with a feature)
)


def make_dataset(rows, n_features=10, n_labels=6, name="t"):
    """rows: list of (labels, {feature: value})"""
    indptr, indices, values, label_indptr, labels = [0], [], [], [0], []
    for row_labels, feats in rows:
        for f in sorted(feats):
            indices.append(f)
            values.append(feats[f])
        labels.extend(row_labels)
        indptr.append(len(indices))
        label_indptr.append(len(labels))
    return Dataset(name, n_features, n_labels, np.array(indptr), np.array(indices, dtype=np.int64),
                   np.array(values, dtype=np.float32), np.array(label_indptr), np.array(labels, dtype=np.int64))


# ----------------------------------------------------------------- parsing

def test_hand_written_file_parses_to_known_arrays():
    d = loads_xc(HAND_WRITTEN)
    assert (len(d), d.n_features, d.n_labels) == (4, 10, 6)
    assert d.indptr.tolist() == [0, 3, 4, 4, 6]
    assert d.indices.tolist() == [1, 3, 9, 2, 0, 7]
    assert d.values.tolist() == [np.float32(0.25), 0.5, np.float32(1e-3), 2.0, -1.5, 0.125]
    assert d.label_indptr.tolist() == [0, 2, 2, 4, 4]
    assert d.labels.tolist() == [0, 5, 4, 1]
    assert [a.dtype for a in (d.indptr, d.indices, d.values, d.label_indptr, d.labels)] == [
        np.int64, np.int32, np.float32, np.int64, np.int32]
    assert all(a.flags.c_contiguous for a in (d.indptr, d.indices, d.values, d.label_indptr, d.labels))


def test_unsorted_features_are_sorted_with_their_values():
    rng = np.random.default_rng(1)
    ids = rng.permutation(200)[:60]  # > 24 entries: the qsort path, not insertion sort
    line = " ".join(f"{i}:{i / 7:.6g}" for i in ids)
    d = loads_xc(f"2 200 3\n1 {line}\n2 5:1 3:2 4:3\n")
    assert d.indices[:60].tolist() == sorted(ids.tolist())
    np.testing.assert_array_equal(d.values[:60], np.array([float(f"{i / 7:.6g}") for i in sorted(ids)], np.float32))
    assert d.indices[60:].tolist() == [3, 4, 5]
    assert d.values[60:].tolist() == [2, 3, 1]


def test_crlf_trailing_blanks_and_missing_final_newline():
    reference = loads_xc(HAND_WRITTEN)
    crlf = HAND_WRITTEN.replace(b"\n", b"\r\n")
    assert loads_xc(crlf).equals(reference)
    blanks = HAND_WRITTEN.replace(b"\n", b" \t\n")
    assert loads_xc(blanks).equals(reference)
    assert loads_xc(HAND_WRITTEN.rstrip(b"\n")).equals(reference)


def test_point_with_nothing_is_a_single_blank_and_round_trips():
    d = loads_xc(b"3 4 4\n \n1 2:1\n\t\n")
    assert d.indptr.tolist() == [0, 0, 1, 1]
    assert d.label_indptr.tolist() == [0, 0, 1, 1]
    assert loads_xc(dumps_xc(d)).equals(d)


def test_zero_points():
    d = loads_xc(b"0 4 4\n")
    assert len(d) == 0 and d.nnz == 0 and d.stats()["n_points"] == 0
    assert loads_xc(dumps_xc(d)).equals(d)


def test_labels_keep_file_order_many_labels():
    labels = list(range(99, 29, -1))  # 70 labels: the sorted-copy duplicate check
    d = loads_xc(("1 5 100\n" + ",".join(map(str, labels)) + " 1:1\n").encode())
    assert d.labels.tolist() == labels


HEADER = "3 100 50\n"
GOOD_LINE = "1,2 3:0.5\n"


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("", None, "empty file"),
        ("  \n \n", None, "empty file"),
        ("3 100\n", 1, "malformed header"),
        ("3 100 50 7\n", 1, "malformed header"),
        ("x 100 50\n", 1, "malformed header"),
        ("-3 100 50\n", 1, "malformed header"),
        ("3 0 50\n", 1, "number of features"),
        ("3 100 0\n", 1, "number of labels"),
        ("3 100 99999999999\n", 1, "number of labels"),
        ("3 100 123456789012345678901234567890\n", 1, "overflows"),
        (HEADER + GOOD_LINE * 2, 3, "header says 3 points but the file has 2"),
        (HEADER + GOOD_LINE * 4, 5, "header says 3 points but the file has 4"),
        (HEADER + GOOD_LINE * 3 + "\n", 5, "blank lines after the last point"),
        (HEADER + GOOD_LINE + "\n" + GOOD_LINE, 3, "blank line"),
        (HEADER + GOOD_LINE + "\r\n" + GOOD_LINE, 3, "blank line"),
        (HEADER + GOOD_LINE + "1,2 140000:1\n" + GOOD_LINE, 3, "feature id 140000 out of range [0, 100)"),
        (HEADER + GOOD_LINE + "1,2 100:1\n" + GOOD_LINE, 3, "feature id 100 out of range [0, 100)"),
        (HEADER + GOOD_LINE + "1,2 -4:1\n" + GOOD_LINE, 3, "negative feature id"),
        (HEADER + GOOD_LINE + "1,50 3:1\n" + GOOD_LINE, 3, "label id 50 out of range [0, 50)"),
        (HEADER + GOOD_LINE + "1,-2 3:1\n" + GOOD_LINE, 3, "negative label id"),
        (HEADER + GOOD_LINE + GOOD_LINE + "1,2,1 3:1\n", 4, "duplicate label 1"),
        (HEADER + GOOD_LINE + "1,2 3:1 4:1 3:2\n" + GOOD_LINE, 3, "duplicate feature id 3"),
        (HEADER + GOOD_LINE + "1,2 3:nan\n" + GOOD_LINE, 3, "non-finite value"),
        (HEADER + GOOD_LINE + "1,2 3:-inf\n" + GOOD_LINE, 3, "non-finite value"),
        (HEADER + GOOD_LINE + "1,2 3:Infinity\n" + GOOD_LINE, 3, "non-finite value"),
        (HEADER + GOOD_LINE + "1,2 3:1e39\n" + GOOD_LINE, 3, "overflows float32"),
        (HEADER + GOOD_LINE + "1,2 3:340282357000000000000000000000000000000\n" + GOOD_LINE, 3, "overflows float32"),
        (HEADER + GOOD_LINE + "1,2 3:0.5x\n" + GOOD_LINE, 3, "malformed value in '3:0.5x'"),
        (HEADER + GOOD_LINE + "1,2 3:\n" + GOOD_LINE, 3, "malformed value"),
        (HEADER + GOOD_LINE + "1,2 3:0x1p3\n" + GOOD_LINE, 3, "malformed value"),
        (HEADER + GOOD_LINE + "1,2 3:1e\n" + GOOD_LINE, 3, "malformed value"),
        (HEADER + GOOD_LINE + "1,2 3\n" + GOOD_LINE, 3, "malformed feature token '3'"),
        (HEADER + GOOD_LINE + "1,2 :3\n" + GOOD_LINE, 3, "malformed feature token"),
        (HEADER + GOOD_LINE + "1,2 a:3\n" + GOOD_LINE, 3, "malformed feature token"),
        (HEADER + GOOD_LINE + "1,,2 3:1\n" + GOOD_LINE, 3, "empty label"),
        (HEADER + GOOD_LINE + "1,2, 3:1\n" + GOOD_LINE, 3, "empty label"),
        (HEADER + GOOD_LINE + "1;2 3:1\n" + GOOD_LINE, 3, "malformed label list '1;2'"),
        (HEADER + GOOD_LINE + "1,2 3:1\x00\n" + GOOD_LINE, 3, "malformed value"),
        (HEADER + GOOD_LINE + "1,2 99999999999999999999999:1\n" + GOOD_LINE, 3, "feature id overflows"),
        (HEADER + GOOD_LINE + "99999999999999999999999 3:1\n" + GOOD_LINE, 3, "label id '99999999999999999999999' overflows"),
        (HEADER + GOOD_LINE + "1,2 3:" + "1" * 300 + "\n" + GOOD_LINE, 3, "longer than"),
    ],
)
def test_format_errors_name_line_and_problem(text, line, needle):
    with pytest.raises(DataFormatError) as info:
        loads_xc(text.encode(), source="train.txt")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.line == line
    assert err.path == "train.txt"
    assert needle in err.problem
    prefix = "train.txt:" if line is None else f"train.txt:{line}:"
    assert str(err).startswith(prefix) and needle in str(err)


def test_error_message_truncates_long_tokens():
    with pytest.raises(DataFormatError) as info:
        loads_xc(b"1 10 10\n1 " + b"x" * 500 + b"\n")
    assert len(info.value.problem) < 120 and "..." in info.value.problem


def test_data_format_error_pickles():
    err = DataFormatError("a.txt", 3, "bad")
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.line, again.problem, str(again)) == ("a.txt", 3, "bad", "a.txt:3: bad")


def test_huge_header_count_fails_fast_without_allocating():
    text = b"1000000000000 100 50\n1 2:1\n3 4:1\n5 6:1\n"
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataFormatError) as info:
            loads_xc(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 1 << 20
    assert info.value.line == 4
    assert "header says 1000000000000 points but the file has 3" in info.value.problem


def test_huge_header_ids_do_not_allocate():
    # ids ranges come from the header, but nothing is sized by them
    tracemalloc.start()
    try:
        d = loads_xc(b"1 2147483647 2147483647\n2147483646 2147483646:1\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.indices.tolist() == [2147483646] and peak < 1 << 20


def test_garbage_never_crashes():
    """Mutations of a valid file: parse or DataFormatError, nothing else."""
    base = dumps_xc(loads_xc(HAND_WRITTEN))
    alphabet = b"0123456789:, \t\r\n.-+eE\x00\xffnaif"
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        buf = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            at = rng.randrange(len(buf) + 1)
            if op < 0.4 and at < len(buf):
                buf[at] = rng.choice(alphabet)
            elif op < 0.7:
                buf.insert(at, rng.choice(alphabet))
            elif at < len(buf):
                del buf[at]
        try:
            loads_xc(bytes(buf))
            outcomes["ok"] += 1
        except DataFormatError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 50


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_header(tail):
    for buf in (b"3 20 20\n" + tail, tail):
        try:
            d = loads_xc(buf)
        except DataFormatError as err:
            assert err.problem
        else:
            assert isinstance(d, Dataset)


# ----------------------------------------------------------------- floats

@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_written_floats_round_trip_exactly(bits):
    value = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    if not np.isfinite(value):
        return
    text = _io.format_float32(value)
    assert len(text) <= 16
    back = np.float32(_io.parse_float32(text))
    assert back.view(np.uint32) == value.view(np.uint32), (value, text)
    # also what Python reads (correctly rounded double, then exact for these)
    assert np.float32(float(text)) == value


@pytest.mark.parametrize("value, text", [(0.1, "0.1"), (0.5, "0.5"), (100.0, "100"), (-2.0, "-2"), (0.0, "0"),
                                         (1e-05, "0.00001"), (1e-07, "1e-07"), (123456.7, "123456.7")])
def test_written_floats_are_shortest(value, text):
    assert _io.format_float32(np.float32(value)) == text


def nearest_float32(x: Fraction) -> np.float32:
    """Correct round-to-nearest-even of an exact rational (test reference)."""
    guess = np.float32(float(x))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    candidates = [c for c in candidates if np.isfinite(c)]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - x), int(np.float32(c).view(np.uint32)) & 1))


@settings(max_examples=400, deadline=None)
@given(st.text("0123456789", min_size=1, max_size=25), st.integers(0, 25), st.integers(-45, 30))
def test_parsed_floats_are_correctly_rounded(digits, point, exponent):
    point = min(point, len(digits))
    text = f"{digits[:point]}.{digits[point:]}e{exponent}"
    exact = Fraction(Decimal(text))
    if exact > Fraction(3 * 10**38):
        return
    assert _io.parse_float32(text) == nearest_float32(exact), text


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 0x7F7FFFFE))
def test_halfway_decimals_round_to_even(bits):
    low = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    high = np.nextafter(low, np.float32(np.inf))
    mid = (Fraction(float(low)) + Fraction(float(high))) / 2
    # a dyadic rational has a finite decimal expansion, and this midpoint is exact in double
    exact_text = format(Decimal(float(low) / 2 + float(high) / 2), "f")
    assert Fraction(Decimal(exact_text)) == mid
    if len(exact_text) > 250:
        return  # the parser caps value length; such values are not written by anyone
    even = low if int(low.view(np.uint32)) % 2 == 0 else high
    assert _io.parse_float32(exact_text) == even
    just_above = exact_text + ("1" if "." in exact_text else ".1")
    assert _io.parse_float32(just_above) == high


# ----------------------------------------------------------------- writing

def test_round_trip_through_a_file(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(300):
        feats = {int(f): float(np.float32(rng.lognormal(-3, 3))) for f in rng.choice(1000, rng.integers(0, 40), replace=False)}
        labels = [int(x) for x in rng.choice(500, rng.integers(0, 6), replace=False)]
        rows.append((labels, feats))
    rows.append(([], {0: 3.4028235e38, 1: 1.4e-45, 2: -0.0, 3: -1e-20, 999: 1e30}))
    d = make_dataset(rows, 1000, 500)
    path = tmp_path / "rt.txt"
    assert write_xc(d, path) == str(path)
    back = load_xc(path, cache=False)
    assert back.equals(d)
    assert np.array_equal(back.values.view(np.uint32), d.values.view(np.uint32))  # -0.0 too
    assert back.name == "rt" and back.source == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["rt.txt"]  # no temporary left behind


def test_writer_grows_its_buffer_for_a_huge_row(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "_WRITE_BUFFER_BYTES", 64)
    d = make_dataset([([1], {i: 0.5 for i in range(0, 100, 3)}), ([2], {1: 1.0}), ([], {})], 100, 5)
    write_xc(d, tmp_path / "g.txt")
    assert load_xc(tmp_path / "g.txt", cache=False).equals(d)


def test_write_replaces_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(data_module._io, "format_rows", boom)
    with pytest.raises(RuntimeError):
        write_xc(loads_xc(HAND_WRITTEN), path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# ----------------------------------------------------------------- cache

def _same_size_edit(path, old, new):
    """Change the content but keep size and mtime: only the cache can tell."""
    st = os.stat(path)
    text = path.read_bytes()
    assert len(old) == len(new) and old in text
    path.write_bytes(text.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_is_written_and_used(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(HAND_WRITTEN)
    first = load_xc(path)
    assert os.path.exists(cache_path_for(path))
    _same_size_edit(path, b"2:2", b"2:3")
    cached = load_xc(path)
    assert cached.equals(first)  # the edit is invisible: the arrays came from the cache
    assert cached.source == str(path) and cached.name == "train"
    assert not load_xc(path, cache=False).equals(first)  # and it really was edited


def test_cache_disabled_writes_nothing(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(HAND_WRITTEN)
    load_xc(path, cache=False)
    assert not os.path.exists(cache_path_for(path))


def test_stale_cache_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(HAND_WRITTEN)
    load_xc(path)
    cache_before = open(cache_path_for(path), "rb").read()
    path.write_bytes(HAND_WRITTEN.replace(b"2:2", b"2:3"))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fresh = load_xc(path)
    assert fresh.values[3] == 3.0
    assert open(cache_path_for(path), "rb").read() != cache_before
    assert load_xc(path).equals(fresh)


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage", "empty", "bad_header_counts"])
def test_corrupt_cache_is_ignored_and_rewritten(tmp_path, damage):
    path = tmp_path / "train.txt"
    path.write_bytes(HAND_WRITTEN)
    good = load_xc(path)
    cache = cache_path_for(path)
    blob = bytearray(open(cache, "rb").read())
    if damage == "flip_payload":
        blob[-9] ^= 0x40
    elif damage == "truncate":
        del blob[-4:]
    elif damage == "garbage":
        blob = bytearray(os.urandom(len(blob)))
    elif damage == "empty":
        blob = bytearray()
    elif damage == "bad_header_counts":
        blob[40:48] = (10**15).to_bytes(8, "little")  # n_points: must not allocate from it
    open(cache, "wb").write(bytes(blob))
    assert load_xc(path).equals(good)
    assert open(cache, "rb").read() != bytes(blob)  # rewritten
    assert load_xc(path).equals(good)


def test_unwritable_cache_location_is_skipped(tmp_path, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_bytes(HAND_WRITTEN)
    real_open = os.open

    def deny(name, *args, **kwargs):
        if str(name).endswith(".tmp"):
            raise PermissionError(13, "read-only", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(data_module.os, "open", deny)
    assert load_xc(path).equals(loads_xc(HAND_WRITTEN))
    assert not os.path.exists(cache_path_for(path))


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_xc(tmp_path / "nope.txt")


def test_file_errors_carry_the_path(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"2 10 10\n1 2:1\n")
    with pytest.raises(DataFormatError) as info:
        load_xc(path)
    assert info.value.path == str(path) and str(info.value).startswith(f"{path}:2: ")
    assert not os.path.exists(cache_path_for(path))


# ----------------------------------------------------------------- Dataset

def test_dataset_validation_rejects_bad_arrays():
    ok = dict(name="x", n_features=5, n_labels=3, indptr=[0, 2, 3], indices=[0, 4, 1], values=[1.0, 2.0, 3.0],
              label_indptr=[0, 1, 1], labels=[2])
    Dataset(**ok)
    cases = [
        (dict(indptr=[0, 3, 2]), "decreases"),
        (dict(indptr=[1, 2, 3]), "start at 0"),
        (dict(indptr=[0, 3]), "label_indptr has length 3, expected 2"),
        (dict(indptr=[0, 2, 4]), "ends at 4"),
        (dict(indices=[0, 5, 1]), "feature id 5 out of range"),
        (dict(indices=[0, -1, 1]), "feature id -1 out of range"),
        (dict(indices=[4, 0, 1]), "strictly increasing"),
        (dict(indices=[4, 4, 1]), "strictly increasing"),
        (dict(values=[1.0, np.nan, 3.0]), "non-finite"),
        (dict(values=[1.0, 1e39, 3.0]), "non-finite"),  # overflows float32
        (dict(values=[1.0, 2.0]), "differ in length"),
        (dict(labels=[3]), "label id 3 out of range"),
        (dict(label_indptr=[0, 2, 2], labels=[1, 1]), "duplicate label 1"),
        (dict(n_features=0), "n_features"),
        (dict(n_labels=2.5), "n_labels"),
        (dict(indices=[0.0, 4.0, 1.0]), "integers"),
        (dict(indices=[0, 2**40, 1]), "do not fit"),
        (dict(indptr=[[0, 2, 3]]), "1-D"),
    ]
    for change, needle in cases:
        with pytest.raises(ValueError, match=needle):
            Dataset(**{**ok, **change})


def test_features_may_restart_at_row_boundaries_and_empty_rows():
    d = Dataset("x", 5, 3, [0, 2, 2, 4], [1, 3, 0, 3], [1, 1, 1, 1], [0, 0, 0, 0], [])
    assert len(d) == 3 and d.stats()["points_without_labels"] == 3


def test_take_and_head_match_row_by_row():
    d = loads_xc(HAND_WRITTEN)
    order = [3, 0, 0, 2]
    sub = d.take(order)
    for new, old in enumerate(order):
        assert sub.indices[sub.indptr[new]:sub.indptr[new + 1]].tolist() == d.indices[d.indptr[old]:d.indptr[old + 1]].tolist()
        assert sub.values[sub.indptr[new]:sub.indptr[new + 1]].tolist() == d.values[d.indptr[old]:d.indptr[old + 1]].tolist()
        assert (sub.labels[sub.label_indptr[new]:sub.label_indptr[new + 1]].tolist()
                == d.labels[d.label_indptr[old]:d.label_indptr[old + 1]].tolist())
    assert d.take(np.array([True, False, False, True])).equals(d.take([0, 3]))
    assert len(d.take([])) == 0
    assert d.head(2).equals(d.take([0, 1]))
    assert d.head(100).equals(d) and len(d.head(0)) == 0
    sub.values[0] = 42  # copies: the original is untouched
    assert d.values[d.indptr[3]] != 42
    with pytest.raises(IndexError):
        d.take([4])


def test_stats_are_correct():
    d = loads_xc(b"4 10 6\n0,5 1:1 2:1 3:1\n5 2:1\n5,1,2\n 7:1\n")
    s = d.stats()
    assert s["n_points"] == 4 and s["nnz"] == 5
    assert s["mean_nnz"] == 1.25 and s["median_nnz"] == 1.0
    assert s["mean_labels"] == 1.5
    assert s["distinct_labels"] == 4
    assert s["top_label"] == 5 and s["top_label_freq"] == 0.75
    assert s["points_without_labels"] == 1 and s["points_without_features"] == 1
    assert s["labels_seen_once"] == 3


def test_dataset_repr_is_short():
    assert len(repr(loads_xc(HAND_WRITTEN))) < 200


def test_low_level_writer_rejects_pointers_that_could_overrun():
    out = np.empty(256, dtype=np.uint8)
    i64, i32, f32 = (lambda v: np.array(v, np.int64)), (lambda v: np.array(v, np.int32)), (lambda v: np.array(v, np.float32))
    with pytest.raises(ValueError, match="decrease"):
        _io.format_rows(i64([0, 2, 1]), i32([1, 2]), f32([1, 1]), i64([0, 0, 0]), i32([]), 0, out)
    with pytest.raises(ValueError, match="outside"):
        _io.format_rows(i64([0, 5]), i32([1]), f32([1]), i64([0, 0]), i32([]), 0, out)
    with pytest.raises(ValueError, match="outside"):
        _io.format_rows(i64([-1, 1]), i32([1]), f32([1]), i64([0, 0]), i32([]), 0, out)
    row_end, n_bytes, _ = _io.format_rows(i64([0, 1]), i32([3]), f32([0.5]), i64([0, 2]), i32([7, 1]), 0, out)
    assert (row_end, bytes(out[:n_bytes])) == (1, b"7,1 3:0.5\n")
