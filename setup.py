"""Build the Cython extensions.

Every extension is compiled for the baseline x86-64 ISA. SIMD kernels live in
headers whose functions carry ``__attribute__((target(...)))`` and are reached
only through the dispatch table after the CPU check, so importing never
executes an instruction the CPU lacks. The build probes which ISA targets the
compiler accepts and records them as ``SLIDE_COMPILED_*`` macros.

Auto-vectorization is switched off for the whole build so that the ``scalar``
kernels are honestly scalar; SIMD variants use explicit intrinsics.

Environment knobs (for developers):
  SLIDE_SANITIZE=1     build with AddressSanitizer + UndefinedBehaviorSanitizer
  SLIDE_DEBUG=1        -O0 -g
  SLIDE_NO_ISA=a,b     pretend the compiler cannot target these ISAs
  SLIDE_ONLY=_io,...   build only these extensions (in-place development)
"""

import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, "kernels", "include")

# ISA name -> (target attribute string, probe body using a representative intrinsic)
ISA_PROBES = {
    "AVX2": ("avx2,fma,f16c", "__m256 a = _mm256_set1_ps(1.f); a = _mm256_fmadd_ps(a, a, a); return _mm256_cvtss_f32(a) > 0;"),
    "AVX512": (
        "avx512f,avx512bw,avx512vl,avx512dq",
        "__m512 a = _mm512_set1_ps(1.f); __mmask16 k = _mm512_cmp_ps_mask(a, a, _CMP_EQ_OQ); return _mm512_mask_reduce_add_ps(k, a) > 0;",
    ),
    "AVX512BF16": (
        "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16",
        "__m512 a = _mm512_set1_ps(1.f); __m512bh b = _mm512_cvtne2ps_pbh(a, a); a = _mm512_dpbf16_ps(a, b, b); return _mm512_reduce_add_ps(a) > 0;",
    ),
    "AMX": (
        "amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16",
        "_tile_zero(0); _tile_release(); return 0;",
    ),
}


def _compiler():
    return os.environ.get("CC", "cc")


def _try_compile(code, flags=()):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(code)
        cmd = [_compiler(), "-c", src, "-o", os.path.join(tmp, "probe.o"), *flags]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True)
        except OSError:
            return False
        return res.returncode == 0


def probe_isas():
    """Return the ISA macros the compiler can target (per function, not per file)."""
    disabled = {s.strip().upper() for s in os.environ.get("SLIDE_NO_ISA", "").split(",") if s.strip()}
    found = []
    is_x86 = _try_compile("#if !defined(__x86_64__)\n#error no\n#endif\nint x;\n")
    if not is_x86:
        return found
    for name, (target, body) in ISA_PROBES.items():
        if name in disabled:
            continue
        code = (
            "#include <immintrin.h>\n"
            f'__attribute__((target("{target}"))) int probe(void) {{ {body} }}\n'
        )
        if _try_compile(code, ["-O2"]):
            found.append(name)
    return found


def build_flags():
    sanitize = os.environ.get("SLIDE_SANITIZE") == "1"
    debug = os.environ.get("SLIDE_DEBUG") == "1"
    cflags = [
        "-std=gnu11",
        "-fopenmp",
        "-fno-tree-vectorize",
        "-fno-tree-slp-vectorize",
        "-ffp-contract=off",
        "-fno-strict-aliasing",
        "-Wno-unused-function",
        "-Wno-unreachable-code",
    ]
    cflags += ["-O0", "-g"] if debug else ["-O3"]
    ldflags = ["-fopenmp"]
    if sanitize:
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-g"]
        cflags += san
        ldflags += san
    return cflags, ldflags


def extensions():
    isas = probe_isas()
    macros = [(f"SLIDE_COMPILED_{name}", "1") for name in isas]
    macros.append(("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"))
    cflags, ldflags = build_flags()
    common = dict(
        depends=sorted(glob.glob(os.path.join("kernels", "include", "slide", "**", "*.h"), recursive=True)),
        include_dirs=[INCLUDE, np.get_include()],
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    sys.stderr.write(f"slide-workbench: compiler ISA targets: {', '.join(isas) or 'none (scalar only)'}\n")
    exts = [
        Extension("kernels._core", ["kernels/_core.pyx"], **common),
        Extension("kernels._io", ["kernels/_io.pyx"], **common),
        # the AVX-512 kernels over a portable emulation of their intrinsics (testing only)
        Extension("kernels._emu", ["kernels/_emu.pyx"], **common),
    ]
    only = os.environ.get("SLIDE_ONLY")
    if only:  # developer knob: build a subset, e.g. SLIDE_ONLY=_io
        exts = [e for e in exts if e.name.split(".")[-1] in only.split(",")]
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
