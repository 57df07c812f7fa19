"""Training configuration: one frozen dataclass, validated on construction.

Owns: every hyper-parameter, its default (the reference implementation's
Amazon-670K settings), its validation, and loading from TOML / dicts. It does
not touch data or kernels. One factory (`Config.from_dict`) turns user input
into a config and rejects unknown keys, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HASH_FAMILIES = ("dwta", "wta", "srp", "minhash")
SAMPLINGS = ("vanilla", "topk", "threshold", "uniform", "exact")
BUCKET_POLICIES = ("fifo", "reservoir")
UPDATE_MODES = ("sparse", "dense")
STRATEGIES = ("auto", "batched", "hogwild")
LAYOUTS = ("rowmajor", "transposed")
LAYER_MODES = ("dense", "lsh")
PRECISIONS = ("fp32", "bf16", "bf16act")
PLACEMENTS = ("default", "aligned", "hugepage")


# Hyper-parameters suggested per generated preset. The defaults of Config are
# the reference implementation's Amazon-670K settings; smaller label spaces
# need fewer, coarser hash bits and fewer active neurons to mean anything.
PRESET_HYPERPARAMS = {
    "amazon670k": {},
    "delicious200k": {},
    "medium": {"K": 5, "L": 30, "range_pow": 15, "min_active": 500, "lr": 5e-4, "rebuild": 64_000},
    "small": {"K": 4, "L": 20, "range_pow": 12, "min_active": 100, "lr": 2e-3, "rehash": 2000, "rebuild": 20_000},
    "tiny": {"hidden": (64,), "K": 2, "L": 10, "range_pow": 6, "min_active": 20, "lr": 3e-3, "rehash": 1000,
             "rebuild": 10_000},
}


def preset_hyperparams(name: str) -> dict:
    """Suggested hyper-parameters for a generated preset ({} for unknown names)."""
    return dict(PRESET_HYPERPARAMS.get(name, {}))


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


@dataclass(frozen=True)
class Config:
    # shape (the data decides n_features and n_labels)
    n_features: int = 135_909
    n_labels: int = 670_091
    hidden: tuple = (128,)
    layer_modes: tuple | None = None  # per layer 'dense'|'lsh'; default: hidden dense, output lsh
    layouts: tuple | None = None  # per layer; default: first transposed, the rest row-major
    # LSH (applies to every LSH layer)
    hash_family: str = "dwta"
    K: int = 6
    L: int = 50
    range_pow: int = 18
    bin_size: int = 8
    bucket_size: int = 128
    bucket_policy: str = "fifo"
    sampling: str = "vanilla"
    top_k: int = 1000
    threshold: int = 2
    min_active: int = 1000
    batch_labels: int = 0  # batched strategy: up to this many of the batch's labels join every active set
    compat: bool = False
    rehash: int = 6400
    rebuild: int = 128_000
    hash_center: bool = False  # hash (w_j - mean row) at rehash: same ranking, balanced buckets
    rehash_drift: float = 0.0  # > 0: at each rehash point, rehash only if this fraction of probe bucket ids moved
    drift_probe: int = 4096  # neurons whose bucket ids measure the drift
    # optimisation
    batch_size: int = 128
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    update: str = "sparse"
    strategy: str = "auto"  # batched | hogwild | auto (batched where the network allows it)
    init_std: float = 0.01
    # execution
    threads: int = 0  # 0: every core this process may use
    seed: int = 0
    deterministic: bool = False  # one thread, identical results run to run
    precision: str = "fp32"
    isa: str = "auto"
    placement: str = "hugepage"  # default | aligned | hugepage (see workbench.memory); what was granted is reported
    prefetch: int = 8  # SIMD kernels: software-prefetch active rows this far ahead (0: off)
    fuse_update: bool = True  # batched strategy: an output row's backward and Adam in one kernel (row_adam)
    kernels: dict = field(default_factory=dict)  # per-op overrides, e.g. {"fwd_rows": "f32/scalar"}

    def __post_init__(self):
        def bad(key, msg):
            raise ConfigError(f"config '{key}': {msg}")

        def check_int(key, lo, hi=None):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int):
                bad(key, f"expected an integer, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                bad(key, f"{v} is out of range [{lo}, {hi if hi is not None else 'inf'}]")

        def check_float(key, lo, hi, lo_open=True):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                bad(key, f"expected a number, got {v!r}")
            if v != v or (v <= lo if lo_open else v < lo) or v > hi:
                bad(key, f"{v} is out of range {'(' if lo_open else '['}{lo}, {hi}]")

        def check_choice(key, choices):
            v = getattr(self, key)
            if v not in choices:
                bad(key, f"{v!r} is not one of {', '.join(choices)}")

        check_int("n_features", 1, 2**31 - 2)
        check_int("n_labels", 1, 2**31 - 2)
        def as_tuple(key, v):
            try:
                return tuple(v)
            except TypeError:
                bad(key, f"expected a list, got {v!r}")

        hidden = as_tuple("hidden", self.hidden)
        object.__setattr__(self, "hidden", hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1 or h > 1 << 20:
                bad("hidden", f"widths must be integers in [1, 1048576], got {h!r}")
        n_layers = len(hidden) + 1
        if n_layers > 8:
            bad("hidden", f"at most 7 hidden layers, got {len(hidden)}")
        modes = self.layer_modes
        if modes is None:
            modes = ("dense",) * len(hidden) + ("lsh",)
        modes = as_tuple("layer_modes", modes)
        if len(modes) != n_layers or any(m not in LAYER_MODES for m in modes):
            bad("layer_modes", f"expected {n_layers} entries from {LAYER_MODES}, got {modes!r}")
        object.__setattr__(self, "layer_modes", modes)
        layouts = self.layouts
        if layouts is None:
            layouts = ("transposed",) + ("rowmajor",) * len(hidden)
        layouts = as_tuple("layouts", layouts)
        if len(layouts) != n_layers or any(x not in LAYOUTS for x in layouts):
            bad("layouts", f"expected {n_layers} entries from {LAYOUTS}, got {layouts!r}")
        object.__setattr__(self, "layouts", layouts)

        check_choice("hash_family", HASH_FAMILIES)
        check_int("K", 1, 32)
        check_int("L", 1, 4096)
        check_int("range_pow", 1, 26)
        check_int("bin_size", 2, 256)
        if self.bin_size & (self.bin_size - 1):
            bad("bin_size", f"must be a power of two, got {self.bin_size}")
        if self.K * max(self.hash_bits, self.hash_shift) > 64:
            bad("K", f"K x bits per hash must be <= 64 ({self.K} x {self.hash_bits})")
        check_int("bucket_size", 1, 1 << 20)
        check_choice("bucket_policy", BUCKET_POLICIES)
        check_choice("sampling", SAMPLINGS)
        check_int("top_k", 1)
        check_int("threshold", 1)
        check_int("min_active", 0)
        check_int("batch_labels", 0, 1 << 20)
        for key in ("compat", "fuse_update", "hash_center"):
            if not isinstance(getattr(self, key), bool):
                bad(key, f"expected true or false, got {getattr(self, key)!r}")
        check_int("rehash", 1)
        check_int("rebuild", 1)
        check_float("rehash_drift", 0.0, 1.0, lo_open=False)
        check_int("drift_probe", 1, 1 << 24)
        check_int("batch_size", 1, 1 << 20)
        check_float("lr", 0.0, 10.0)
        check_float("beta1", 0.0, 1.0, lo_open=False)
        check_float("beta2", 0.0, 1.0, lo_open=False)
        if self.beta1 >= 1.0 or self.beta2 >= 1.0:
            bad("beta1/beta2", "must be < 1")
        check_float("eps", 0.0, 1.0)
        check_float("init_std", 0.0, 10.0)
        check_choice("update", UPDATE_MODES)
        check_choice("strategy", STRATEGIES)
        check_int("threads", 0, 4096)
        check_int("seed", 0, 2**63 - 1)
        if not isinstance(self.deterministic, bool):
            bad("deterministic", f"expected true or false, got {self.deterministic!r}")
        check_choice("precision", PRECISIONS)
        check_choice("placement", PLACEMENTS)
        check_int("prefetch", 0, 64)
        if not isinstance(self.isa, str):
            bad("isa", f"expected a string, got {self.isa!r}")
        if not isinstance(self.kernels, dict):
            bad("kernels", "expected a table of op = 'dtype/isa'")

    # ---- derived -----------------------------------------------------------
    @property
    def widths(self) -> tuple:
        """Output width of every layer, input layer first."""
        return self.hidden + (self.n_labels,)

    @property
    def hash_bits(self) -> int:
        """Bits carried by one hash value."""
        if self.hash_family in ("dwta", "wta"):
            return self.bin_size.bit_length() - 1
        if self.hash_family == "srp":
            return 1
        return max(1, min(16, self.range_pow // self.K))

    @property
    def hash_shift(self) -> int:
        """Bits each hash value is shifted by when composing a bucket id.

        The reference implementation shifts DWTA/WTA values by floor(ln(bin_size))
        (2 for bins of 8) instead of log2: the `compat` mode reproduces that."""
        if self.compat and self.hash_family in ("dwta", "wta"):
            import math

            return int(math.floor(math.log(self.bin_size)))
        return self.hash_bits

    def effective_threads(self) -> int:
        if self.deterministic:
            return 1
        if self.threads:
            return self.threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("hidden", "layer_modes", "layouts"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict, base: "Config | None" = None) -> "Config":
        """Build from a mapping; unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        # keys need not be strings, nor printable: name them so the message stays one line
        unknown = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        d = dict(d)
        for k in ("hidden", "layer_modes", "layouts"):
            if k in d and isinstance(d[k], list):
                d[k] = tuple(d[k])
        if base is None:
            return cls(**d)
        return dataclasses.replace(base, **d)

    @classmethod
    def from_toml(cls, path: str, base: "Config | None" = None) -> "Config":
        """Read a TOML file (keys at the top level or under [train])."""
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        except UnicodeDecodeError as e:  # tomllib decodes the whole file first
            raise ConfigError(f"{path}: invalid TOML: not UTF-8 (byte {e.start})") from None
        if "train" in doc and isinstance(doc["train"], dict):
            # other tables stay in: from_dict names them (a [typo] section is an error, not ignored)
            doc = {**{k: v for k, v in doc.items() if k not in ("train", "run")}, **doc["train"]}
        elif isinstance(doc.get("run"), dict):
            doc = {k: v for k, v in doc.items() if k != "run"}  # the CLI's run settings: not config
        try:
            return cls.from_dict(doc, base)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{path}: {e}") from None
