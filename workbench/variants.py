"""The kernel variant table and the selector.

Owns: which kernels exist (the C registry, plus kernels registered at run
time such as the AVX-512 emulation build), what each ISA requires of the CPU,
the capability sets (hardware, compiled, usable), and the choice of one kernel
per op with the reason every alternative was skipped. Selection happens once
when a network is built; hot loops call through function pointers.

ISA levels, lowest first: scalar < avx2 < avx512 < avx512_bf16. Forcing an
ISA (config `isa`, CLI --isa, SLIDE_ISA) caps the level: each op gets the best
kernel at or below it. `<isa>@emu` names the same AVX-512 source compiled
against a portable emulation of its intrinsics: never chosen automatically,
only when forced, for testing the kernel logic on CPUs without AVX-512.

Environment (read at every selection, strict):
  SLIDE_DISABLE_ISA=avx512,avx512_bf16   never use these (unknown names warn)
  SLIDE_ENABLE_ISA=scalar,avx2           use only these (scalar always stays)
  SLIDE_ISA=avx2                         cap the ISA level (like --isa)
  SLIDE_FORCE_KERNELS=fwd_rows=bf16/avx2,adam=f32/scalar
                                         force kernels per op; an unknown op or
                                         an unusable kernel is an error
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from dataclasses import dataclass, field

from kernels import _core

OPS = ("fwd_rows", "bwd_rows", "fwd_cols", "bwd_cols", "adam", "row_adam", "hash", "hash_rows")
PRECISIONS = ("fp32", "bf16", "bf16act")
# dtype each op runs at, per precision mode (see kernel_api.h)
PRECISION_DTYPES = {
    "fp32": {"fwd_rows": "f32", "bwd_rows": "f32", "fwd_cols": "f32", "bwd_cols": "f32", "adam": "f32",
             "row_adam": "f32", "hash": "f32", "hash_rows": "f32"},
    "bf16": {"fwd_rows": "bf16", "bwd_rows": "bf16", "fwd_cols": "bf16", "bwd_cols": "bf16", "adam": "f32",
             "row_adam": "f32", "hash": "f32", "hash_rows": "f32"},
    "bf16act": {"fwd_rows": "bf16act", "bwd_rows": "f32", "fwd_cols": "bf16act", "bwd_cols": "f32", "adam": "f32",
                "row_adam": "f32", "hash": "f32", "hash_rows": "f32"},
}
LEVELS = ("scalar", "avx2", "avx512", "avx512_bf16")
EMULATED = ("avx512@emu", "avx512_bf16@emu")
ISAS = LEVELS + ("amx",) + EMULATED
# CPU features (as cpu_probe names them) each ISA needs
REQUIRES = {
    "scalar": (),
    "avx2": ("avx2", "fma", "f16c"),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "avx512_bf16": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"),
    "amx": ("amx_tile", "amx_bf16"),
    "avx512@emu": (),
    "avx512_bf16@emu": (),
}

_override: contextvars.ContextVar = contextvars.ContextVar("slide_variant_override", default=None)


class SelectionError(ValueError):
    """A kernel or ISA was requested that this build or this CPU cannot run."""


@dataclass(frozen=True)
class Kernel:
    op: str
    dtype: str
    isa: str

    @property
    def name(self) -> str:
        return f"{self.dtype}/{self.isa}"


@dataclass
class Choice:
    op: str
    kernel: Kernel
    skipped: list = field(default_factory=list)  # [(Kernel, reason)]


def _level(isa: str) -> int:
    base = isa.split("@")[0]
    return LEVELS.index(base) if base in LEVELS else len(LEVELS)  # amx above the vector ISAs


@functools.lru_cache(maxsize=1)
def cpu_features() -> dict:
    return _core.cpu_probe()[0]


def _load_emulation() -> bool:
    """Register the emulated AVX-512 kernels if that extension was built."""
    try:
        from kernels import _emu
    except ImportError:
        return False
    _emu.register()
    return True


@functools.lru_cache(maxsize=1)
def compiled_isas() -> tuple:
    """ISAs this build has kernels for (emulated ones included when built)."""
    _load_emulation()
    have = {isa for _, _, isa in _core.kernel_registry()}
    return tuple(isa for isa in ISAS if isa in have)


def compiler_targets() -> tuple:
    """ISAs the compiler could target when this extension was built."""
    return ("scalar",) + tuple(_core.compiled_isas())


def hardware_isas() -> tuple:
    """Real ISAs whose instructions this CPU has and whose state the OS saves."""
    f = cpu_features()
    return tuple(isa for isa in ISAS if not isa.endswith("@emu") and all(f.get(x, False) for x in REQUIRES[isa]))


def _env_list(name: str) -> set:
    raw = os.environ.get(name, "")
    items = {x.strip() for x in raw.split(",") if x.strip()}
    unknown = sorted(items - set(ISAS))
    if unknown:
        warnings.warn(f"{name}: unknown ISA name(s) {', '.join(unknown)} ignored (known: {', '.join(ISAS)})",
                      RuntimeWarning, stacklevel=3)
    return items & set(ISAS)


def disabled_isas() -> set:
    out = _env_list("SLIDE_DISABLE_ISA")
    enabled = _env_list("SLIDE_ENABLE_ISA") if os.environ.get("SLIDE_ENABLE_ISA") else None
    if enabled is not None:
        out |= set(ISAS) - enabled - {"scalar"}
    ov = _override.get()
    if ov and ov.get("disable"):
        out |= set(ov["disable"])
    out.discard("scalar")
    return out


def usable_isas() -> set:
    """(hardware + emulated) & compiled - disabled."""
    return ((set(hardware_isas()) | set(EMULATED)) & set(compiled_isas())) - disabled_isas()


def capabilities() -> dict:
    return {"hardware": list(hardware_isas()), "compiled": list(compiled_isas()),
            "compiler_targets": list(compiler_targets()), "disabled": sorted(disabled_isas()),
            "usable": sorted(usable_isas(), key=ISAS.index)}


def compiled_kernels() -> list[Kernel]:
    compiled_isas()  # make sure run-time registrations happened
    return [Kernel(*t) for t in _core.kernel_registry()]


def _parse_forced(text: str, source: str) -> dict:
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise SelectionError(f"{source}: expected op=dtype/isa, got {item!r}")
        op, name = (s.strip() for s in item.split("=", 1))
        out[op] = name
    return out


def _why_unusable(isa: str) -> str:
    if isa not in compiled_isas():
        return f"{isa} kernels were not compiled into this build"
    if isa in disabled_isas():
        return f"{isa} is disabled (SLIDE_DISABLE_ISA / SLIDE_ENABLE_ISA / override)"
    f = cpu_features()
    missing = [x for x in REQUIRES[isa] if not f.get(x, False)]
    return f"the CPU (or OS) lacks {', '.join(missing)}"


def select(precision: str = "fp32", isa: str = "auto", overrides: dict | None = None) -> dict[str, Choice]:
    """One kernel per op for a precision mode.

    isa: 'auto' (best usable) or an ISA level to cap at; overrides: per-op
    'dtype/isa' names. The context manager `override` and the environment
    (module docstring) apply on top."""
    if precision not in PRECISION_DTYPES:
        raise SelectionError(f"unknown precision {precision!r} (valid: {', '.join(PRECISIONS)})")
    ov = _override.get() or {}
    if os.environ.get("SLIDE_ISA") and isa == "auto":
        isa = os.environ["SLIDE_ISA"].strip()
    if ov.get("isa"):
        isa = ov["isa"]
    if isa != "auto" and isa not in ISAS:
        raise SelectionError(f"unknown ISA {isa!r} (valid: auto, {', '.join(ISAS)})")
    usable = usable_isas()
    if isa != "auto" and isa not in usable:
        raise SelectionError(f"ISA {isa} was requested but cannot run here: {_why_unusable(isa)}")
    forced = dict(overrides or {})
    if os.environ.get("SLIDE_FORCE_KERNELS"):
        forced.update(_parse_forced(os.environ["SLIDE_FORCE_KERNELS"], "SLIDE_FORCE_KERNELS"))
    forced.update(ov.get("kernels") or {})
    bad_ops = sorted(set(forced) - set(OPS))
    if bad_ops:
        raise SelectionError(f"unknown op(s) {', '.join(bad_ops)} in forced kernels (ops: {', '.join(OPS)})")
    table = compiled_kernels()
    emu_cap = isa.endswith("@emu")
    out = {}
    for op in OPS:
        dtype = PRECISION_DTYPES[precision][op]
        cands = sorted((k for k in table if k.op == op), key=lambda k: (-_level(k.isa), k.isa.endswith("@emu")))
        want = forced.get(op)
        if want is not None:
            match = [k for k in cands if k.name == want]
            if not match:
                raise SelectionError(f"forced kernel {op}={want} does not exist "
                                     f"(available: {', '.join(sorted(k.name for k in cands))})")
            if match[0].isa not in usable:
                raise SelectionError(f"forced kernel {op}={want} cannot run here: {_why_unusable(match[0].isa)}")
            if match[0].dtype != dtype:
                raise SelectionError(f"forced kernel {op}={want} has dtype {match[0].dtype} but precision "
                                     f"{precision} runs {op} at {dtype}")
        chosen, skipped = None, []
        if want is not None:
            chosen = match[0]
            out[op] = Choice(op, chosen, [(k, f"{op} forced to {want}") for k in cands if k is not chosen])
            continue
        for k in cands:
            if k.dtype != dtype:
                reason = f"dtype {k.dtype}, precision {precision} needs {dtype}"
            elif k.isa not in usable:
                reason = _why_unusable(k.isa)
            elif isa != "auto" and _level(k.isa) > _level(isa):
                reason = f"above the requested ISA {isa}"
            elif k.isa.endswith("@emu") and not emu_cap:
                reason = "emulated: only when forced"
            elif emu_cap and not k.isa.endswith("@emu") and k.isa != "scalar":
                reason = f"requested ISA {isa} uses the emulated kernels"
            elif chosen is not None:
                reason = f"lower preference than {chosen.name}"
            else:
                chosen = k
                continue
            skipped.append((k, reason))
        if chosen is None:
            why = "; ".join(f"{k.name}: {r}" for k, r in skipped) or "none compiled"
            raise SelectionError(f"no usable kernel for {op} at precision {precision} (isa={isa}): {why}")
        out[op] = Choice(op, chosen, skipped)
    return out


@contextlib.contextmanager
def override(*, isa: str | None = None, disable=(), kernels: dict | None = None):
    """Scoped selection overrides for networks built inside the block:

    >>> with override(isa="scalar"):
    ...     net = Network(config)          # every op on scalar kernels
    """
    for name in disable:
        if name not in ISAS:
            raise SelectionError(f"unknown ISA {name!r} (valid: {', '.join(ISAS)})")
    token = _override.set({"isa": isa, "disable": tuple(disable), "kernels": dict(kernels or {})})
    try:
        yield
    finally:
        _override.reset(token)


def report(precision: str = "fp32", isa: str = "auto", overrides: dict | None = None) -> dict:
    """Capabilities plus the chosen kernel per op with every alternative and why it was skipped."""
    choice = select(precision, isa, overrides)
    return {"capabilities": capabilities(), "precision": precision, "isa": isa,
            "ops": {op: {"chosen": c.kernel.name, "skipped": {k.name: r for k, r in c.skipped}}
                    for op, c in choice.items()}}
