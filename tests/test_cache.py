"""workbench.cache: the three sources of cache numbers (hw / sim / model),
each tagged, none faked."""

import ctypes
import errno
import math

import numpy as np
import pytest

from workbench import cache, memory


def _check_record(r, source):
    assert r["source"] == source
    assert {"metric", "value", "per", "source", "detail"} <= set(r)
    if r.get("available", True):
        assert isinstance(r["value"], float) and math.isfinite(r["value"]) and r["value"] >= 0, r
    else:
        assert r["value"] is None and r["reason"], r


# ---- model -------------------------------------------------------------------------------

def test_model_matches_a_pattern_computed_by_hand():
    # rows 0, 1, 1000 of a row-major f32 matrix with ld = 128, dense input of 128
    recs = cache.model_access("forward", 0, "f32", n_in=128, n_out=670_091, ld=128,
                              ids=np.array([0, 1, 1000], np.int32))
    for r in recs:
        _check_record(r, "model")
    W = recs[0]["detail"]["arrays"]["W"]
    assert W["bytes_read"] == 3 * 128 * 4 == 1536 and W["bytes_written"] == 0
    assert W["lines"] == 3 * 512 // 64 == 24
    # row 0 and 1 lie in bytes [0, 1024): 4K page 0; row 1000 starts at byte 512,000 = page 125
    assert W["pages_4k"] == 2
    assert W["pages_2m"] == 1  # 512,000 < 2 MiB
    arrays = recs[0]["detail"]["arrays"]
    # b[0], b[1], b[1000]: bytes 0, 4, 4000 -> lines 0 and 62
    assert arrays["b"]["lines"] == 2 and arrays["b"]["bytes_read"] == 12
    assert arrays["xv"]["lines"] == 8 and arrays["xv"]["bytes_read"] == 512
    assert arrays["ids"]["lines"] == 1 and arrays["z"]["bytes_written"] == 12
    v = cache.by_metric(recs)
    assert v["bytes_read"] == 1536 + 12 + 512 + 12
    assert v["bytes_written"] == 12
    assert v["lines_touched"] == 24 + 2 + 8 + 1 + 1
    assert v["l1d_misses"] == v["lines_touched"]
    assert v["pages_4k"] == 2 + 1 + 1 + 1 + 1
    assert v["dtlb_reach_overflow"] == 0


def test_model_transposed_gather_and_bf16_and_tlb_reach():
    # transposed: rows = input features, one element per (feature, active column)
    ids = np.array([0, 16, 5000], np.int32)
    recs = cache.model_access("forward", 1, "f32", n_in=4, n_out=100_000, ids=ids)
    W = recs[0]["detail"]["arrays"]["W"]
    ld = recs[0]["detail"]["ld"]
    assert ld == 100_000  # already a multiple of 16
    assert W["elements"] == 12 and W["bytes_read"] == 48
    assert W["lines"] == 12  # 0 and 16 floats apart are different lines; rows are 400,000 B apart
    # pages: row k starts at k*400,000; columns at 0, 64, 20,000 bytes
    expected = {(k * 400_000 + c * 4) // 4096 for k in range(4) for c in (0, 16, 5000)}
    assert W["pages_4k"] == len(expected)
    # bf16 reads the 2-byte copy: half the bytes of the same row-major pattern
    f32 = cache.model_access("forward", 0, "f32", n_in=128, n_out=1000, n_active=10)[0]["detail"]["arrays"]["W"]
    b16 = cache.model_access("forward", 0, "bf16", n_in=128, n_out=1000, n_active=10)[0]["detail"]["arrays"]["Wb"]
    assert b16["bytes_read"] * 2 == f32["bytes_read"] and b16["lines"] * 2 == f32["lines"]
    # 3000 random rows of 512 B spread over 343 MB: thousands of 4K pages, past a 2112-entry reach
    rng = np.random.default_rng(0)
    big = cache.model_access("forward", 0, "f32", n_in=128, n_out=670_091,
                             ids=rng.choice(670_091, 3000, replace=False))
    over = [r for r in big if r["metric"] == "dtlb_reach_overflow"][0]
    assert over["detail"]["fits"] is False and over["value"] > 0
    huge = cache.model_access("forward", 0, "f32", n_in=128, n_out=670_091, n_active=3000, placement="hugepage")
    over = [r for r in huge if r["metric"] == "dtlb_reach_overflow"][0]
    assert over["detail"]["page_size"] == "2M" and over["detail"]["fits"] is True  # 3000 x 512 B: one 2 MiB page


def test_model_adam_per_sample():
    recs = cache.model_access("adam", 0, "f32", n_in=128, n_out=1000, ids=np.arange(10, dtype=np.int32),
                              samples_per_call=5)
    v = cache.by_metric(recs)
    # W, M, V, G: 10 rows x 128 floats read and written; rows index array read; per 5 samples
    assert v["bytes_written"] == 4 * 10 * 128 * 4 / 5
    assert v["bytes_read"] == (4 * 10 * 128 * 4 + 40) / 5
    # the batched strategy's fused backward+Adam: W, M, V only, no gradient buffer
    fused = cache.by_metric(cache.model_access("adam", 0, "f32", n_in=128, n_out=1000,
                                               ids=np.arange(10, dtype=np.int32), grad_buffer=False))
    assert fused["bytes_written"] == 3 * 10 * 128 * 4
    assert fused["bytes_read"] == 3 * 10 * 128 * 4 + 40


# ---- hw ----------------------------------------------------------------------------------

def test_perf_event_attr_layout():
    A = cache.PerfEventAttr
    assert ctypes.sizeof(A) == 136  # PERF_ATTR_SIZE_VER8
    offsets = {"type": 0, "size": 4, "config": 8, "sample_period": 16, "sample_type": 24, "read_format": 32,
               "flags": 40, "wakeup_events": 48, "bp_type": 52, "config1": 56, "config2": 64,
               "branch_sample_type": 72, "sample_regs_user": 80, "sample_stack_user": 88, "clockid": 92,
               "sample_regs_intr": 96, "aux_watermark": 104, "sample_max_stack": 108, "aux_sample_size": 112,
               "sig_data": 120, "config3": 128}
    for name, off in offsets.items():
        assert getattr(A, name).offset == off, name


def _hardware_counters_work():
    try:
        fd = cache.perf_event_open(cache.PERF_TYPE_HARDWARE, 1, 0, -1, inherit=False)  # instructions
    except OSError as e:
        return False, e.errno
    import os

    os.close(fd)
    return True, 0


def test_hw_records_are_numbers_or_unavailable_with_a_reason():
    a = np.ones(1 << 16)
    recs = cache.measure_hw(lambda: float(a.sum()), repeat=3)
    assert [r["metric"] for r in recs] == list(cache.DEFAULT_HW + cache.DEFAULT_SW)
    for r in recs:
        _check_record(r, "hw")
    sw = {r["metric"]: r for r in recs if r["detail"]["type"] == "software"}
    assert all(r["available"] for r in sw.values()), sw  # software events need no PMU


def test_hw_unavailable_here_is_reported_not_faked():
    works, err = _hardware_counters_work()
    recs = {r["metric"]: r for r in cache.measure_hw(lambda: None, repeat=1, events=cache.DEFAULT_HW)}
    ok, reason = cache.hw_available()
    assert ok is works
    if works:
        assert recs["instructions"]["available"] and recs["instructions"]["value"] > 0
        return
    # this machine: the syscall fails, so every hardware event must say so
    assert err in (errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.ENOSYS, errno.EINVAL)
    assert errno.errorcode[err] in reason
    for name in ("instructions", "cycles"):
        assert recs[name]["available"] is False and recs[name]["value"] is None
        assert f"errno {err}" in recs[name]["reason"]


def test_page_faults_confirm_huge_pages():
    if memory.thp_mode() in ("never", "unavailable"):
        pytest.skip(f"transparent huge pages are {memory.thp_mode()!r} on this machine")
    mib = 16
    recs = {r["detail"]["placement"]: r for r in cache.hugepage_fault_check(mib)}
    hp, ctl = recs["hugepage"], recs["4k_control"]
    for r in (hp, ctl):
        _check_record(r, "hw")
        assert r["available"], r
    # one fault per 4 KiB page for the control, about one per 2 MiB with huge pages
    assert ctl["value"] >= 0.9 * mib * 256, ctl
    assert hp["value"] * 16 < ctl["value"], (hp["value"], ctl["value"], hp["detail"])
    assert hp["detail"]["huge_bytes"] > 0


def test_triad_bandwidth_has_provenance():
    # the C triad (one pass) counts STREAM's 24 B per element
    r = cache.triad_bandwidth(n_bytes=24 << 20, repeat=2)
    _check_record(r, "hw")
    d = r["detail"]
    assert r["unit"] == "GB/s" and r["value"] > 0 and d["method"].startswith("C triad")
    assert d["bytes_counted"] == 3 * 8 * d["n_elements"] and d["threads"] == 1
    assert d["stream_convention_gbps"] == r["value"] < d["with_write_allocate_gbps"]
    # two threads on halves of the same arrays
    r2 = cache.triad_bandwidth(n_bytes=24 << 20, repeat=2, threads=2)
    assert r2["detail"]["threads"] == 2 and r2["value"] > 0
    # numpy's two passes move 40 B per element
    rn = cache.triad_bandwidth(n_bytes=24 << 20, repeat=2, method="numpy")
    dn = rn["detail"]
    assert dn["bytes_counted"] == 5 * 8 * dn["n_elements"]
    assert dn["stream_convention_gbps"] < rn["value"] < dn["with_write_allocate_gbps"]


def test_stream_triad_computes_and_checks_lengths():
    from kernels import _core

    b, c = np.arange(10.0), np.full(10, 2.0)
    for t in (1, 3, 16):  # more threads than elements works too
        a = np.zeros(10)
        assert _core.stream_triad(a, b, c, 0.5, t) >= 0
        np.testing.assert_array_equal(a, b + 0.5 * c)
    with pytest.raises(ValueError, match="differ in length"):
        _core.stream_triad(np.zeros(9), b, c, 1.0, 1)
    with pytest.raises(ValueError, match="n_threads"):
        _core.stream_triad(np.zeros(10), b, c, 1.0, 0)


# ---- sim ---------------------------------------------------------------------------------

def test_cache_geometry_has_l1_and_a_last_level():
    g = cache.cache_geometry()
    assert g["D1"]["size"] > 0 and g["D1"]["assoc"] > 0 and g["D1"]["line"] in (32, 64, 128)
    assert any(k in g for k in ("L2", "L3"))


def test_sim_refuses_avx512_instead_of_guessing():
    recs = cache.measure_sim("forward", "f32/avx512", 0, n_out=1000, n_active=10)
    for r in recs:
        _check_record(r, "sim")
        assert r["available"] is False


def test_sim_transposed_gather_misses_more_than_rowmajor():
    ok, why = cache.sim_available()
    if not ok:
        pytest.skip(why)
    n_out, n_active = 200_000, 1000
    rowmajor, transposed = cache.measure_sim_many([
        dict(op="forward", kernel="f32/scalar", layout=0, n_in=128, n_out=n_out, n_active=n_active),
        dict(op="forward", kernel="f32/scalar", layout=1, n_in=128, n_out=n_out, n_active=n_active),
    ])
    for recs in (rowmajor, transposed):
        for r in recs:
            _check_record(r, "sim")
            assert r["available"], r
    rm, tr = cache.by_metric(rowmajor, "sim"), cache.by_metric(transposed, "sim")
    assert rowmajor[0]["detail"]["symbol"] == "slide_fwd_rows_f32_scalar"
    assert transposed[0]["detail"]["symbol"] == "slide_fwd_cols_f32_scalar"
    # row-major: 8 contiguous lines per active row; transposed: one line per (input row, active column)
    assert tr["l1d_misses"] > 4 * rm["l1d_misses"], (rm, tr)
    # the simulated misses are at least most of the model's compulsory lines
    rng = np.random.default_rng(0)
    for layout, v in ((0, rm), (1, tr)):
        model = cache.by_metric(cache.model_access("forward", layout, "f32", n_in=128, n_out=n_out,
                                                   ids=rng.choice(n_out, n_active, replace=False)))
        assert v["l1d_misses"] >= 0.9 * model["lines_touched"], (layout, v, model)
        assert v["l1d_misses"] <= 2.0 * model["lines_touched"], (layout, v, model)
