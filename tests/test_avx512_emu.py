"""The portable AVX-512 emulation (kernels/include/slide/emu/avx512_emu.h) and
the AVX-512 kernels run on it.

The C programs live in tests/emu/ and are compiled here with gcc into a
temporary directory (all builds in parallel, once per session):

  emu_unit.c      unit tests of every emulated intrinsic on hand-computed
                  examples; buffers end at a PROT_NONE page so a masked-off lane
                  that is touched faults. Runs everywhere.
  emu_diff_*.c    the same battery of intrinsic calls built against
                  <immintrin.h> and against the emulation, compared record by
                  record. The native half runs only on a CPU with AVX-512
                  (F/BW/VL/DQ, and BF16 for the bf16 part); elsewhere those
                  tests are skipped. A self-check of the comparison harness
                  (both halves emulated) runs everywhere.
  emu_kernels.c   the AVX-512 layer kernels (layer_avx512.h,
                  layer_avx512_bf16.h) against the scalar kernels, under
                  emulation everywhere, and natively where the CPU allows; the
                  native and emulated runs must then agree bit for bit.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INC = ROOT / "kernels" / "include"
EMU_DIR = ROOT / "tests" / "emu"
HEADER = INC / "slide" / "emu" / "avx512_emu.h"

CC = os.environ.get("CC", "gcc")
# the project's flags (setup.py) at -O2
FLAGS = ["-std=gnu11", "-O2", "-ffp-contract=off", "-fno-strict-aliasing", "-fno-tree-vectorize"]
WARN = ["-Wall", "-Wextra"]
NATIVE_ISA = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16"]

pytestmark = pytest.mark.skipif(shutil.which(CC) is None, reason=f"no C compiler ({CC})")


def _cpu_has_avx512f():
    """From /proc/cpuinfo; None where that cannot be read (then build and let the program decide)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return bool(re.search(r"^flags\s*:.*\bavx512f\b", text, flags=re.M))


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Compiles every program (two at a time); returns {name: (returncode, output, path)}."""
    d = tmp_path_factory.mktemp("avx512_emu")
    inc = [f"-I{INC}", f"-I{EMU_DIR}"]
    header_tu = d / "header_only.c"
    header_tu.write_text('#include "slide/emu/avx512_emu.h"\nint main(void) { return 0; }\n')
    kernels_tu = d / "kernels_build.c"
    kernels_tu.write_text(
        "#define SLIDE_EMULATE_AVX512\n"
        '#include "slide/layer_avx512_bf16.h"\n'
        "int main(void) { return 0; }\n"
    )
    jobs = {
        # the header alone: warning-free, baseline x86-64, optimised and not
        "header_O2": [CC, *FLAGS, *WARN, "-Wpedantic", "-Werror", "-march=x86-64", *inc, "-c", str(header_tu),
                      "-o", str(d / "h2.o")],
        "header_O0": [CC, "-std=gnu11", "-O0", *WARN, "-Werror", "-march=x86-64", *inc, "-c", str(header_tu),
                      "-o", str(d / "h0.o")],
        # both kernel headers under emulation (their kernels are unused here)
        "kernels_build": [CC, *FLAGS, *WARN, "-Werror", "-Wno-unused-function", "-march=x86-64", *inc, "-c",
                          str(kernels_tu), "-o", str(d / "kb.o")],
        "unit": [CC, *FLAGS, *WARN, "-Werror", *inc, str(EMU_DIR / "emu_unit.c"), "-o", str(d / "unit"), "-lm"],
        "ops_emu": [CC, *FLAGS, *WARN, "-Werror", *inc, "-c", str(EMU_DIR / "emu_diff_ops.c"), "-o",
                    str(d / "ops_emu.o")],
        "ops_native": [CC, *FLAGS, *WARN, *NATIVE_ISA, "-DEMU_DIFF_NATIVE", *inc, "-c",
                       str(EMU_DIR / "emu_diff_ops.c"), "-o", str(d / "ops_native.o")],
        "ops_fake": [CC, *FLAGS, *WARN, "-DEMU_DIFF_NATIVE", "-DEMU_DIFF_FAKE_NATIVE", *inc, "-c",
                     str(EMU_DIR / "emu_diff_ops.c"), "-o", str(d / "ops_fake.o")],
        "main_o": [CC, *FLAGS, *WARN, "-Werror", *inc, "-c", str(EMU_DIR / "emu_diff_main.c"), "-o",
                   str(d / "main.o")],
        "kernels_emu": [CC, *FLAGS, *WARN, "-DSLIDE_EMULATE_AVX512", *inc, str(EMU_DIR / "emu_kernels.c"), "-o",
                        str(d / "kernels_emu"), "-lm"],
    }
    if _cpu_has_avx512f() is not False:  # the native kernel build only where it can run (saves compile time)
        jobs["kernels_native"] = [CC, *FLAGS, *WARN, *inc, str(EMU_DIR / "emu_kernels.c"), "-o",
                                  str(d / "kernels_native"), "-lm"]
    results = {}
    # longest first, at most two compilers at a time
    pending = sorted(jobs, key=lambda n: not n.startswith("kernels_") or n == "kernels_build")
    running = {}
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            log = open(d / f"{name}.log", "w")  # a file, not a pipe: no deadlock on long diagnostics
            running[name] = (subprocess.Popen(jobs[name], stdout=log, stderr=subprocess.STDOUT), log)
        done = [n for n, (p, _) in running.items() if p.poll() is not None]
        if not done:
            time.sleep(0.02)
            continue
        for name in done:
            p, log = running.pop(name)
            log.close()
            out = (d / f"{name}.log").read_text(errors="replace")
            results[name] = (p.returncode, " ".join(jobs[name]) + "\n" + out)
    # links
    if results["main_o"][0] == 0:
        for name, obj in [("diff", "ops_native.o"), ("diff_selfcheck", "ops_fake.o")]:
            if results["ops_emu"][0] == 0 and results[obj[:-2]][0] == 0:
                cmd = [CC, str(d / "main.o"), str(d / "ops_emu.o"), str(d / obj), "-o", str(d / name), "-lm"]
                r = _run(cmd)
                results[name] = (r.returncode, " ".join(cmd) + "\n" + r.stdout + r.stderr)
    return d, results


def _need(built, name):
    d, results = built
    assert name in results, f"{name} was not built (an earlier step failed)"
    rc, log = results[name]
    assert rc == 0, f"build of {name} failed:\n{log}"
    return d


def _exec(path, *args, env=None):
    r = _run([str(path), *args], env=env)
    return r.returncode, r.stdout + r.stderr


def test_header_is_plain_c():
    text = HEADER.read_text()
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    includes = set(re.findall(r"#\s*include\s*[<\"]([^>\"]+)[>\"]", code))
    assert not any("intrin" in h for h in includes), includes
    assert "__builtin_ia32" not in code and "__asm" not in code and "asm(" not in code
    assert includes <= {"float.h", "math.h", "stddef.h", "stdint.h", "stdlib.h", "string.h"}, includes


@pytest.mark.parametrize("name", ["header_O2", "header_O0", "kernels_build"])
def test_compiles_cleanly(built, name):
    _need(built, name)


def test_emulation_unit_tests(built):
    d = _need(built, "unit")
    rc, out = _exec(d / "unit")
    assert rc == 0 and "UNIT OK" in out, out


@pytest.fixture(scope="session")
def diff_run(built):
    d = _need(built, "diff")
    return _exec(d / "diff")


def test_differential_harness_selfcheck(built):
    """Both halves emulated: the comparison machinery itself works."""
    d = _need(built, "diff_selfcheck")
    rc, out = _exec(d / "diff_selfcheck", env={**os.environ, "EMU_DIFF_ASSUME_CPU": "1"})
    assert rc == 0, out
    assert "DIFF avx512f OK" in out and "DIFF avx512bf16 OK" in out, out


@pytest.mark.parametrize("part", ["avx512f", "avx512bf16"])
def test_differential_against_native(diff_run, part):
    rc, out = diff_run
    assert f"EMU {part} records" in out, out
    if f"SKIP {part}" in out:
        assert rc == 0, out  # the emulated half must still have run cleanly
        pytest.skip("CPU lacks AVX-512" + (" BF16" if part == "avx512bf16" else ""))
    assert f"DIFF {part} OK" in out, out
    assert rc == 0, out


@pytest.fixture(scope="session")
def kernels_emu_run(built):
    d = _need(built, "kernels_emu")
    dump = d / "kernels_emu.txt"
    rc, out = _exec(d / "kernels_emu", "--dump", str(dump))
    return rc, out, dump


def test_kernels_under_emulation_match_scalar(kernels_emu_run):
    rc, out, _ = kernels_emu_run
    assert "MODE emulated" in out, out
    assert rc == 0 and "KERNELS OK" in out, out


def test_kernels_native_match_emulated(built, kernels_emu_run):
    if "kernels_native" not in built[1]:
        pytest.skip("CPU lacks AVX-512")
    d = _need(built, "kernels_native")
    dump = d / "kernels_native.txt"
    rc, out = _exec(d / "kernels_native", "--dump", str(dump))
    if "SKIP kernels-native:" in out:
        pytest.skip("CPU lacks AVX-512")
    assert rc == 0 and "KERNELS OK" in out, out
    emu_rc, emu_out, emu_dump = kernels_emu_run
    assert emu_rc == 0, emu_out
    emu = dict(line.rsplit(" ", 1) for line in emu_dump.read_text().splitlines())
    nat = dict(line.rsplit(" ", 1) for line in dump.read_text().splitlines())
    assert nat and set(nat) <= set(emu)
    diff = [k for k in nat if nat[k] != emu[k]]
    assert not diff, f"{len(diff)} of {len(nat)} kernel cases differ natively vs emulated, e.g.:\n" + "\n".join(
        diff[:20]
    )


def test_adam_bf16_copy_of_denormal_weights_matches_scalar(built):
    """The AVX-512 Adam rounds denormal weights into the bf16 copy exactly like
    the scalar kernel (no hardware conversion that flushes them)."""
    d = _need(built, "kernels_emu")
    rc, out = _exec(d / "kernels_emu", "--probe-denormal-adam")
    assert rc == 0 and "KERNELS OK" in out, out
