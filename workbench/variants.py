"""The kernel variant table and the selector.

Owns: which compiled kernels exist (read from the C registry), what each one
requires of the CPU, and the choice of one kernel per op. Selection happens
once per layer and op when a network is built; the hot loops call through
function pointers and never ask again.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels import _core

OPS = ("fwd_rows", "bwd_rows", "fwd_cols", "bwd_cols", "adam", "hash")
# dtype each op runs at, per precision mode
PRECISION_DTYPES = {
    "fp32": {"fwd_rows": "f32", "bwd_rows": "f32", "fwd_cols": "f32", "bwd_cols": "f32", "adam": "f32", "hash": "f32"},
    "bf16": {"fwd_rows": "bf16", "bwd_rows": "bf16", "fwd_cols": "bf16", "bwd_cols": "bf16", "adam": "f32", "hash": "f32"},
    "bf16act": {"fwd_rows": "bf16act", "bwd_rows": "bf16act", "fwd_cols": "bf16act", "bwd_cols": "bf16act",
                "adam": "f32", "hash": "f32"},
}
# preference, best first
ISA_ORDER = ("avx512_bf16", "avx512", "avx2", "scalar")


@dataclass(frozen=True)
class Kernel:
    op: str
    dtype: str
    isa: str

    @property
    def name(self) -> str:
        return f"{self.dtype}/{self.isa}"


def compiled_kernels() -> list[Kernel]:
    return [Kernel(*t) for t in _core.kernel_registry()]


def usable_isas() -> set[str]:
    """ISAs this process may run (the CPU probe extends this)."""
    return {"scalar"}


@dataclass
class Choice:
    op: str
    kernel: Kernel
    skipped: list  # [(Kernel, reason)]


def select(precision: str = "fp32", isa: str = "auto", overrides: dict | None = None) -> dict[str, Choice]:
    """One kernel per op for a precision mode; `isa` forces an ISA ('auto': best usable)."""
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"unknown precision {precision!r} (valid: {', '.join(PRECISION_DTYPES)})")
    usable = usable_isas()
    table = compiled_kernels()
    overrides = overrides or {}
    out = {}
    for op in OPS:
        dtype = PRECISION_DTYPES[precision][op]
        cands = [k for k in table if k.op == op]
        skipped = []
        chosen = None
        want = overrides.get(op)
        for k in sorted(cands, key=lambda k: (k.dtype != dtype, ISA_ORDER.index(k.isa) if k.isa in ISA_ORDER else 99)):
            if want is not None and k.name != want:
                skipped.append((k, f"not the requested {want}"))
            elif k.dtype != dtype:
                skipped.append((k, f"dtype {k.dtype} is not the precision's {dtype}"))
            elif k.isa not in usable:
                skipped.append((k, f"CPU cannot run {k.isa}"))
            elif isa != "auto" and k.isa != isa:
                skipped.append((k, f"ISA forced to {isa}"))
            elif chosen is None:
                chosen = k
            else:
                skipped.append((k, f"lower preference than {chosen.name}"))
        if chosen is None:
            why = "; ".join(f"{k.name}: {r}" for k, r in skipped) or "none compiled"
            raise ValueError(f"no usable kernel for op {op} at precision {precision} (isa={isa}): {why}")
        out[op] = Choice(op, chosen, skipped)
    return out
