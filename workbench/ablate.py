"""The ablation runner: a grid of kernel and algorithm settings, measured in
isolated subprocesses, interleaved, resumable.

Owns: turning a grid (command-line comma lists or a TOML file) into points,
scheduling the points' workers (one subprocess per point, see
``workbench.ablate_worker``), aggregating their measurements into records,
and writing ``results.json`` / ``results.csv`` after every finished round.
It measures nothing itself except the memory-bandwidth triad of the run;
every number of a record comes from a worker process.

Axes
----
Kernel axes: ``isa``, ``precision``, ``layout``, ``placement``, ``threads``,
``batch_size``, ``strategy``, ``prefetch``, ``fuse_update``. Algorithm axes: ``hash_family``,
``K``, ``L``, ``sampling``, ``update``, ``compat`` (any other Config key may
be an axis too, in a TOML grid). ``engine`` picks what is trained: ``slide``
(workbench.Network), ``dense`` or ``sampled`` (workbench.baselines); for the
baselines the SLIDE-only axes are collapsed (set to null) and duplicates
dropped.

``layout`` sets the layout of the *output* layer (the input layer keeps
``transposed``, hidden layers ``rowmajor``) unless it names every layer,
separated by ``/`` (``transposed/rowmajor``; in a TOML list a comma works
too: ``"rowmajor,rowmajor"``).

``placement`` (see workbench.memory) and the environment each worker gets:

=============  ================  ======================  ===============================================
axis value     Config.placement  NUMPY_MADVISE_HUGEPAGE  what the parameters live in
=============  ================  ======================  ===============================================
``default``    default           0                       numpy's allocator, no huge-page advice: 4 KiB
                                                         pages unless THP is ``always`` (the control)
``aligned``    aligned           0                       numpy's allocator, rows start on 64-byte lines;
                                                         4 KiB pages as ``default`` (isolates alignment)
``hugepage``   hugepage          0                       2 MiB-aligned anonymous mmap + madvise
                                                         (MADV_HUGEPAGE); the kernel may refuse
``numpy-thp``  default           1                       numpy's allocator *with* numpy's own
                                                         madvise(MADV_HUGEPAGE) of large arrays (numpy's
                                                         default on Linux): huge pages, not 2 MiB aligned
=============  ================  ======================  ===============================================

NUMPY_MADVISE_HUGEPAGE is read by numpy once, at import, so it can only be
set per process: this is why placements are compared across worker
processes and not inside one. What was granted is read back from
/proc/self/smaps in the worker and recorded (``huge_fraction``,
``memory.buffers``), never assumed. ``threads`` sets OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS of the worker (the baselines'
matrix products run on BLAS threads).

Scheduling (``interleave``)
---------------------------
Points never run concurrently: exactly one worker computes at any moment.
Every point gets a warm-up (``warmup`` samples: pages touched, OpenMP pool
created, tables built) and then ``repeats`` timed rounds of ``samples``
samples each. Rounds are interleaved round-robin: round r of every point
runs before round r+1 of any (the order rotates by one point per round), so
a slow spell of the machine hits all points alike instead of one.

``live``   one long-lived worker per point, all alive at once, driven round
           by round over a pipe; each network is built and warmed up once.
           Needs the memory of every point together.
``fresh``  a fresh subprocess per point *and round*: build, warm up, one
           timed round (the last one also evaluates). Costs a build per
           round; needs the memory of one point.
``none``   one worker per point, its rounds back to back, points one after
           the other (no interleaving; finished points appear one by one).
``auto``   (default) ``live`` when the estimated memory of all points fits
           in half of the available memory, else ``fresh``.

Results
-------
``results.json``: ``runtime`` (the parent's runtime report), ``grid`` (axes,
fixed values, run settings), ``records`` (finished points, grid order),
``partial`` (points with some rounds done), ``failed``, ``skipped``,
``triad`` (the bandwidth roof of this run), ``schedule``, timestamps.
``results.csv``: one row per record, nested dicts of scalars flattened as
``key.sub`` columns, other lists/dicts as JSON cells. Both are rewritten
atomically after every finished round. ``resume=True`` keeps finished points
(matched on their axes) and the finished rounds of partial ones.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .config import Config, ConfigError, preset_hyperparams

KERNEL_AXES = ("isa", "precision", "layout", "placement", "threads", "batch_size", "strategy", "prefetch",
               "fuse_update")
ALGO_AXES = ("hash_family", "K", "L", "sampling", "update", "compat")
AXES = ("engine",) + KERNEL_AXES + ALGO_AXES
ENGINES = ("slide", "dense", "sampled", "torch_dense", "torch_sampled", "plt")
SPECIAL_KEYS = ("engine", "layout", "placement", "recipe")  # grid keys that are not Config fields
PLACEMENT_AXIS = {  # axis value -> (Config.placement, NUMPY_MADVISE_HUGEPAGE)
    "default": ("default", "0"),
    "aligned": ("aligned", "0"),
    "hugepage": ("hugepage", "0"),
    "numpy-thp": ("default", "1"),
}
# axes a baseline (dense / sampled softmax) ignores: collapsed to None for them
SLIDE_ONLY_AXES = ("isa", "precision", "layout", "strategy", "prefetch", "fuse_update", "recipe") + ALGO_AXES
INTERLEAVE = ("auto", "live", "fresh", "none")
RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"
WORKER_MODULE = "workbench.ablate_worker"
# the CSV's leading columns (the rest follow sorted)
LEAD_COLUMNS = ("point_id", "engine", "variant", "variant_id", *AXES[1:], "samples_per_s", "samples_per_s_min",
                "samples_per_s_max", "p_at_1", "p_at_1_lsh", "recall", "recall_at_1", "mean_active", "label_recall",
                "bytes_per_sample", "peak_rss_bytes", "huge_fraction")


TORCH_HINT = "install the CPU build with: pip install -e '.[torch]'"


class AblationError(ValueError):
    """A grid or run setting is invalid; the message names it."""


# ---- run settings and grid ---------------------------------------------------------------------

@dataclass
class RunSettings:
    """How every point is run (the TOML file's [run] table)."""

    preset: str = "amazon670k"  # generated data when train is None
    train: str | None = None  # XC files
    test: str | None = None
    data_seed: int = 0
    samples: int = 4096  # per timed round
    warmup: int = 1024
    repeats: int = 3
    eval_samples: int = 1000
    recall_samples: int = 200  # test points for the LSH recall against exact top-k
    interleave: str = "auto"
    hw: bool = True  # hardware counters (workbench.cache.measure_hw) around the last round
    sim: bool = False  # cachegrind (slow) of the output-layer forward kernel
    model: bool = True  # access-pattern model (bytes, lines, pages)
    triad: bool = True  # measure the bandwidth roof in the parent
    timeout: float = 3600.0  # seconds per worker step (setup, round, finish)
    skip_invalid: bool = False

    def __post_init__(self):
        for k in ("samples", "repeats"):
            if int(getattr(self, k)) < 1:
                raise AblationError(f"run setting {k!r} must be >= 1, got {getattr(self, k)}")
        for k in ("warmup", "eval_samples", "recall_samples"):
            if int(getattr(self, k)) < 0:
                raise AblationError(f"run setting {k!r} must be >= 0, got {getattr(self, k)}")
        if self.interleave not in INTERLEAVE:
            raise AblationError(f"interleave must be one of {', '.join(INTERLEAVE)}, got {self.interleave!r}")
        if self.train and not self.test:
            raise AblationError("a training file needs a test file (run settings train/test)")

    @classmethod
    def from_dict(cls, d: dict) -> "RunSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - names)
        if unknown:
            raise AblationError(f"unknown [run] key(s): {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _config_field_types() -> dict:
    return {f.name: str(f.type) for f in dataclasses.fields(Config)}


def _parse_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise AblationError(f"expected true or false, got {text!r}")


def _choices(name: str):
    """The valid names of a Config key that takes one of a set of names, else None."""
    from . import config as c

    if name == "isa":
        from .variants import ISAS

        return ("auto",) + ISAS
    return {"precision": c.PRECISIONS, "strategy": c.STRATEGIES, "hash_family": c.HASH_FAMILIES,
            "sampling": c.SAMPLINGS, "update": c.UPDATE_MODES, "bucket_policy": c.BUCKET_POLICIES}.get(name)


def parse_axis_value(name: str, value):
    """One axis value (from a TOML list or a command-line string) in its canonical form."""
    if value is None:
        return None
    if name == "engine":
        v = str(value).strip()
        if v not in ENGINES:
            raise AblationError(f"axis engine: {v!r} is not one of {', '.join(ENGINES)}")
        return v
    if name == "layout":
        parts = [p.strip() for p in str(value).replace(",", "/").split("/") if p.strip()]
        bad = [p for p in parts if p not in ("rowmajor", "transposed")]
        if not parts or bad:
            raise AblationError(f"axis layout: {value!r} must be rowmajor, transposed or one per layer "
                                f"joined by '/' (e.g. transposed/rowmajor)")
        return "/".join(parts)
    if name == "recipe":
        from . import recipes

        v = str(value).strip()
        if v not in recipes.RECIPES:
            raise AblationError(f"axis recipe: {v!r} is not one of {', '.join(recipes.RECIPES)}")
        return v
    if name == "placement":
        v = str(value).strip()
        if v not in PLACEMENT_AXIS:
            raise AblationError(f"axis placement: {v!r} is not one of {', '.join(PLACEMENT_AXIS)}")
        return v
    types = _config_field_types()
    if name not in types:
        raise AblationError(f"unknown axis {name!r} (axes: {', '.join(AXES)}, or any Config key)")
    t = types[name]
    names = _choices(name)
    if names is not None:  # a misspelt name is an error here, never a point "this machine cannot run"
        v = str(value).strip()
        if v not in names:
            raise AblationError(f"axis {name}: {v!r} is not one of {', '.join(names)}")
        return v
    try:
        if t == "bool":
            return _parse_bool(value)
        if t == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if t == "float":
            return float(value)
        if t.startswith("tuple"):
            if isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [p for p in str(value).replace(",", "/").split("/") if p.strip()]
            return "/".join(str(int(x)) if name == "hidden" else str(x).strip() for x in items)
        if t == "dict":
            raise AblationError(f"{name!r} cannot be an axis")
        return str(value).strip()
    except (TypeError, ValueError):
        raise AblationError(f"axis {name}: cannot read {value!r} as {t}") from None


def parse_fixed_value(name: str, value):
    """A fixed config value from the command line (`--set KEY=VALUE`) in the type Config wants."""
    if name in SPECIAL_KEYS:
        return parse_axis_value(name, value)
    v = parse_axis_value(name, value)
    if str(_config_field_types().get(name, "")).startswith("tuple"):
        return [int(x) if name == "hidden" else x for x in v.split("/")]
    return v


def split_cli_list(name: str, text: str) -> list:
    """A command-line axis list: values separated by commas."""
    return [parse_axis_value(name, x) for x in str(text).split(",") if x.strip()]


@dataclass
class Point:
    """One grid point: its axes (axis name -> value) and what the worker needs."""

    axes: dict
    config: dict  # Config.from_dict input (n_features / n_labels filled by the worker)
    env: dict
    engine: str = "slide"

    @property
    def key(self) -> str:
        """Canonical identity of the point (its axes), used by resume."""
        return json.dumps(self.axes, sort_keys=True)

    @property
    def id(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:10]

    def short(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.axes.items() if v is not None)


@dataclass
class Grid:
    """Axes (name -> list of values), fixed config values and run settings."""

    axes: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    run: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self):
        axes = {}
        for name, values in dict(self.axes).items():
            if not isinstance(values, (list, tuple)):
                values = [values]
            if not values:
                raise AblationError(f"axis {name!r} has no values")
            canon = [parse_axis_value(name, v) for v in values]
            axes[name] = list(dict.fromkeys(canon))  # duplicates dropped, order kept
        self.axes = axes
        types = _config_field_types()
        for k in self.fixed:
            if k not in types and k not in SPECIAL_KEYS:
                raise AblationError(f"unknown [fixed] key {k!r} (a Config key, or engine/layout/placement/recipe)")
            if k in self.axes:
                raise AblationError(f"{k!r} is both an axis and a fixed value")
        if isinstance(self.run, dict):
            self.run = RunSettings.from_dict(self.run)

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        """{"axes": {...}, "fixed": {...}, "run": {...}} (a parsed TOML grid file)."""
        unknown = sorted(set(d) - {"axes", "fixed", "run"})
        if unknown:
            raise AblationError(f"unknown grid table(s): {', '.join(unknown)} (valid: axes, fixed, run)")
        return cls(axes=dict(d.get("axes", {})), fixed=dict(d.get("fixed", {})),
                   run=RunSettings.from_dict(dict(d.get("run", {}))))

    @classmethod
    def from_toml(cls, path: str) -> "Grid":
        from .config import tomllib

        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as e:
            raise AblationError(f"{path}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise AblationError(f"{path}: invalid TOML: {e}") from None
        try:
            return cls.from_dict(doc)
        except (AblationError, ConfigError, TypeError) as e:
            raise AblationError(f"{path}: {e}") from None

    def to_dict(self) -> dict:
        return {"axes": self.axes, "fixed": self.fixed, "run": self.run.to_dict()}

    # ---- points ------------------------------------------------------------------------------
    def base_config(self, recipe: str | None = None) -> dict:
        """Config values every point starts from: the recipe's values for the data's
        shape when a recipe is named (axis or [fixed]), else the preset's
        suggestions (generated data); then [fixed]."""
        if recipe is None:
            recipe = self.fixed.get("recipe")
        if recipe:
            from . import recipes

            _, n_labels = _preset_dims(self.run)
            base, _ = recipes.resolve(recipe, n_labels=n_labels, preset=None if self.run.train else self.run.preset,
                                      base=self.fixed)
        else:
            base = {} if self.run.train else preset_hyperparams(self.run.preset)
        if "hidden" in base:
            base["hidden"] = list(base["hidden"])
        for k, v in self.fixed.items():
            if k in SPECIAL_KEYS:
                continue
            base[k] = list(v) if isinstance(v, tuple) else v
        return base

    def points(self) -> list:
        """Every point, in grid order (the last axis varies fastest), duplicates dropped."""
        import itertools

        names = list(self.axes)
        out, seen = [], set()
        for combo in itertools.product(*(self.axes[n] for n in names)):
            p = self.make_point(dict(zip(names, combo)))
            if p.key not in seen:
                seen.add(p.key)
                out.append(p)
        return out

    def make_point(self, axes: dict) -> Point:
        fixed = {k: parse_axis_value(k, v) for k, v in self.fixed.items() if k in SPECIAL_KEYS}
        engine = axes.get("engine", fixed.get("engine", "slide"))
        # the baselines and peers start from the preset's suggestions, never from a SLIDE recipe
        cfg = self.base_config(axes.get("recipe") if engine == "slide" else False)
        layout = axes.get("layout", fixed.get("layout"))
        placement = axes.get("placement", fixed.get("placement", "aligned"))
        for k, v in axes.items():
            if k in SPECIAL_KEYS:
                continue
            cfg[k] = [int(x) for x in v.split("/")] if k == "hidden" else (
                v.split("/") if isinstance(v, str) and k in ("layer_modes", "layouts") else v)
        cfg["placement"], madvise = PLACEMENT_AXIS[placement]
        hidden = tuple(cfg.get("hidden", Config.hidden))
        if layout is not None:
            parts = layout.split("/")
            n_layers = len(hidden) + 1
            if len(parts) == 1:
                cfg["layouts"] = ["transposed"] + ["rowmajor"] * (n_layers - 2) + parts
            elif len(parts) == n_layers:
                cfg["layouts"] = parts
            else:
                raise AblationError(f"layout {layout!r} names {len(parts)} layers, the network has {n_layers}")
        axes = dict(axes)
        if engine != "slide":  # baselines ignore the SLIDE-only axes: collapse them
            for k in SLIDE_ONLY_AXES:
                if k in axes:
                    axes[k] = None
        threads = int(cfg.get("threads", 0) or 0)
        if threads <= 0:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover
                threads = os.cpu_count() or 1
        if cfg.get("deterministic"):
            threads = 1
        env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), "NUMPY_MADVISE_HUGEPAGE": madvise}
        return Point(axes=axes, config=cfg, env=env, engine=engine)


def grid_axes_varying(points: list) -> list:
    """Axis names whose value differs between points."""
    names = list(dict.fromkeys(k for p in points for k in p.axes))
    return [k for k in names if len({json.dumps(p.axes.get(k)) for p in points}) > 1]


# ---- validation ----------------------------------------------------------------------------------

def config_error(point: Point, n_features: int, n_labels: int) -> str | None:
    """None, or why the point's config values are invalid anywhere."""
    try:
        Config.from_dict(dict(point.config, n_features=n_features, n_labels=n_labels))
    except (ConfigError, TypeError) as e:
        return str(e)
    return None


def validate_point(point: Point, n_features: int, n_labels: int) -> str | None:
    """None, or why this point cannot run here (bad config, kernel this CPU lacks, ...)."""
    from . import variants

    try:
        cfg = Config.from_dict(dict(point.config, n_features=n_features, n_labels=n_labels))
    except (ConfigError, TypeError) as e:
        return str(e)
    if point.engine != "slide":
        try:
            from . import baselines
        except ImportError as e:
            return f"engine {point.engine} needs workbench.baselines, which cannot be imported ({e})"
        if point.engine.startswith("torch") and not baselines.torch_available():
            return f"engine {point.engine} needs PyTorch, which cannot be imported here ({TORCH_HINT})"
        if point.engine == "plt":
            from . import peers

            if not peers.available():
                return "engine plt needs napkinXC and SciPy: pip install -e '.[peers]'"
        return None
    try:
        variants.select(cfg.precision, cfg.isa, cfg.kernels)
    except variants.SelectionError as e:
        return str(e)
    out_ok = (len(cfg.widths) >= 2 and cfg.layer_modes[-2] == "dense" and cfg.layer_modes[-1] == "lsh"
              and cfg.layouts[-1] == "rowmajor")
    if cfg.strategy == "batched" and not out_ok:
        return ("strategy 'batched' needs a dense last hidden layer feeding a row-major LSH output layer "
                f"(layouts {'/'.join(cfg.layouts)})")
    return None


def estimate_bytes(point: Point, n_features: int, n_labels: int, data_bytes: int) -> int:
    """Memory a worker of this point needs (the parameter estimate plus data and interpreter)."""
    from . import resources

    try:
        cfg = Config.from_dict(dict(point.config, n_features=n_features, n_labels=n_labels))
    except (ConfigError, TypeError):
        return 0
    interp = 150 << 20
    if point.engine == "slide":
        return resources.estimate(cfg, data_bytes=data_bytes)["total_bytes"] + interp
    # baselines: weights + Adam moments + gradients of every layer, fp32, plus logits of a batch
    n_in, total = cfg.n_features, 0
    for w in cfg.widths:
        total += 4 * 4 * n_in * w
        n_in = w
    return total + 4 * 2 * cfg.batch_size * cfg.n_labels + data_bytes + interp


# ---- data ------------------------------------------------------------------------------------------

def prepare_data(run: RunSettings, out_dir: str, train_points: int, log=None) -> dict:
    """Files the workers load: the given XC files, or the generated preset written
    once into OUT/data (XC text plus the binary cache, so that a worker loads it in
    milliseconds). Returns {"train", "test", "n_features", "n_labels", "bytes", "source"}."""
    from . import resources, synthetic
    from .data import load_xc, write_xc
    from .network import check_same_shape

    if run.train:
        tr = load_xc(run.train)  # writes the binary cache next to the file once
        te = load_xc(run.test)
        check_same_shape(tr, te)
        return {"train": os.path.abspath(run.train), "test": os.path.abspath(run.test),
                "n_features": max(tr.n_features, te.n_features), "n_labels": max(tr.n_labels, te.n_labels),
                "n_train": len(tr), "n_test": len(te), "bytes": resources.dataset_bytes(tr),
                "source": f"files {run.train}, {run.test}"}
    preset = synthetic.get_preset(run.preset)
    n_train = max(1, min(int(train_points), preset.n_train))
    n_test = max(1, min(max(run.eval_samples, run.recall_samples, 1), preset.n_test))
    ddir = os.path.join(out_dir, "data")
    os.makedirs(ddir, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        path = os.path.join(ddir, f"{preset.name}-seed{run.data_seed}-{split}-{n}.txt")
        if not os.path.exists(path):
            if log:
                log(f"generating {preset.name} {split} data: {n:,} points -> {path}")
            ds = synthetic.generate(preset, split, seed=run.data_seed, n=n)
            write_xc(ds, path)
        ds = load_xc(path)  # builds the cache
        out[split] = path
        out[f"n_{split}"] = len(ds)
        if split == "train":
            out["bytes"] = resources.dataset_bytes(ds)
    out.update(n_features=preset.n_features, n_labels=preset.n_labels,
               source=f"generated {preset.name} (seed {run.data_seed})")
    return out


# ---- one worker process --------------------------------------------------------------------------

class WorkerError(RuntimeError):
    """A worker failed: crashed, timed out, or reported an exception."""


class Worker:
    """A subprocess running workbench.ablate_worker, driven over its stdin/stdout
    (one JSON object per line). Its stderr goes to a log file. It runs in a new
    session, so a Ctrl-C at the terminal reaches only the runner, which then
    stops the worker between rounds."""

    def __init__(self, spec: dict, env: dict, log_path: str, timeout: float):
        self.spec = spec
        self.timeout = timeout
        self.log_path = log_path
        full_env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        full_env["PYTHONPATH"] = root + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        full_env.update(env)
        self.log = open(log_path, "ab")
        self.log.write(f"\n==== worker for point {spec.get('point_id')} at {_now()} ====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=full_env, start_new_session=True,
                                     text=True, bufsize=1)
        self.pid = self.proc.pid
        import queue
        import threading

        self._lines = queue.Queue()

        def pump(stream, q):  # a thread, so that a timeout never depends on pipe buffering
            try:
                for line in stream:
                    q.put(line)
            except (OSError, ValueError):
                pass
            q.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        self._send(spec)

    def _send(self, obj: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(f"worker {self.pid} is gone ({self._tail()})") from None

    def _tail(self, n: int = 1500) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - n))
                return fh.read().decode(errors="replace").strip().replace("\n", " | ")
        except OSError:
            return "no log"

    def receive(self, expect: str, on_progress=None) -> dict:
        """The next answer; "progress" lines before it go to on_progress(msg)."""
        import queue

        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerError(f"worker {self.pid} timed out after {self.timeout:.0f}s waiting for {expect}")
            try:
                line = self._lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=30)
                raise WorkerError(f"worker {self.pid} exited with code {code} before sending {expect}: "
                                  f"{self._tail()}")
            try:
                msg = json.loads(line)
            except ValueError:
                raise WorkerError(f"worker {self.pid} sent a line that is not JSON: {line[:200]!r}") from None
            if msg.get("type") != "progress" or expect == "progress":
                break
            if on_progress is not None:
                on_progress(msg)
        if not msg.get("ok"):
            raise WorkerError(f"worker {self.pid}: {msg.get('error')}")
        if msg.get("type") != expect:
            raise WorkerError(f"worker {self.pid}: expected {expect}, got {msg.get('type')}")
        return msg

    def command(self, cmd: str, expect: str, on_progress=None, **kw) -> dict:
        self._send({"cmd": cmd, **kw})
        return self.receive(expect, on_progress)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._cleanup()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            self.log.close()


# ---- results -------------------------------------------------------------------------------------

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, (int, str)):
        return str(v)
    return json.dumps(v, sort_keys=True, default=str)


def flatten_record(rec: dict) -> dict:
    """One CSV row: scalars as they are, dicts of scalars as key.sub columns,
    anything else as a JSON cell (workbench.report.read_csv_records reverses this)."""
    row = {}
    for k, v in rec.items():
        if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values()) and all("." not in s for s in v):
            for sk, sv in v.items():
                row[f"{k}.{sk}"] = _cell(sv)
        else:
            row[k] = _cell(v)
    return row


def records_csv(records: list) -> str:
    rows = [flatten_record(r) for r in records]
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lead = [c for c in LEAD_COLUMNS if c in cols]
    cols = lead + sorted(c for c in cols if c not in lead)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    return buf.getvalue()


def write_results(out_dir: str, results: dict) -> None:
    """results.json and results.csv, each written atomically."""
    results["updated"] = _now()
    _atomic_write(os.path.join(out_dir, RESULTS_JSON), json.dumps(results, indent=1, default=str) + "\n")
    _atomic_write(os.path.join(out_dir, RESULTS_CSV), records_csv(results.get("records", [])))


def load_results(out_dir: str) -> dict:
    with open(os.path.join(out_dir, RESULTS_JSON)) as fh:
        return json.load(fh)


# ---- aggregation ---------------------------------------------------------------------------------

def aggregate(point: Point, state: dict, run: RunSettings, label_axes: list) -> dict:
    """The record of a finished point from its setups, rounds and final message."""
    rounds = state["rounds"]
    final = state["final"]
    ready = state["setups"][-1]
    sps = [r["samples_per_s"] for r in rounds]
    med = statistics.median(sps)
    med_round = min(rounds, key=lambda r: (abs(r["samples_per_s"] - med), r["round"]))
    rec = {"point_id": point.id, "engine": point.engine}
    rec["variant_id"] = ready.get("variant_id")
    extra = [f"{k}={point.axes[k]}" for k in label_axes
             if k not in ("engine", "isa", "precision", "layout", "strategy") and point.axes.get(k) is not None]
    rec["variant"] = rec["variant_id"] + (f" [{', '.join(extra)}]" if extra else "")
    for k in AXES[1:]:
        rec[k] = point.axes.get(k)
    for k, v in point.axes.items():
        rec.setdefault(k, v)
    cfg = final.get("config") or ready.get("config") or {}
    # resolved values where the axis was not given (or was "auto")
    for k in ("precision", "threads", "batch_size", "strategy", "prefetch", "fuse_update", "hash_family", "K", "L",
              "sampling",
              "update", "compat"):
        if rec.get(k) is None and point.engine == "slide" and k in cfg:
            rec[k] = cfg[k]
    if point.engine != "slide":
        rec["threads"] = rec.get("threads") if rec.get("threads") is not None else cfg.get("threads")
        rec["batch_size"] = rec.get("batch_size") if rec.get("batch_size") is not None else cfg.get("batch_size")
    if point.engine == "slide":
        if rec.get("isa") in (None, "auto"):
            rec["isa_requested"] = rec.get("isa") or "auto"
            rec["isa"] = ready.get("isa_used")
        if rec.get("layout") is None:
            rec["layout"] = (cfg.get("layouts") or ["?"])[-1]
        rec["strategy"] = ready.get("strategy", rec.get("strategy"))
    if not rec.get("threads"):
        rec["threads"] = ready.get("threads")
    if rec.get("placement") is None:
        rec["placement"] = ready.get("placement_axis")
    rec["layouts"] = cfg.get("layouts")
    rec.update({
        "rounds": [{k: r.get(k) for k in ("round", "pid", "samples", "seconds", "samples_per_s", "t_start", "t_end")}
                   for r in rounds],
        "samples_per_s": med,
        "samples_per_s_min": min(sps),
        "samples_per_s_max": max(sps),
        "samples_per_s_rounds": sps,
        "round_seconds": [r["seconds"] for r in rounds],
        "samples_per_round": run.samples,
        "warmup_samples": run.warmup,
        "repeats": len(rounds),
        "time_split": med_round.get("time_split"),
        "time_split_round": med_round["round"],
    })
    lsh = final.get("lsh") or med_round.get("lsh") or {}
    for k in ("mean_active", "mean_candidates"):
        v = lsh.get(k)
        rec[k] = v[-1] if isinstance(v, list) and v else v
    rec["label_recall"] = lsh.get("label_recall")
    rec["union_rows_per_batch"] = lsh.get("union_rows_per_batch")
    rec["row_reuse"] = lsh.get("row_reuse")
    for k in ("p_at_1", "p_at_3", "p_at_5", "p_at_1_lsh", "p_at_3_lsh", "p_at_5_lsh", "eval_samples",
              "recall", "recall_at_1", "recall_definition", "recall_samples", "bytes_per_sample",
              "bytes_per_sample_phases", "peak_rss_bytes", "huge_fraction", "huge_bytes", "thp", "memory",
              "kernels", "cache", "train_samples_total", "mean_loss", "label"):
        if k in final:
            rec[k] = final[k]
    rec["worker_pids"] = sorted({s["pid"] for s in state["setups"]})
    rec["worker_env"] = ready.get("env")
    rec["omp_max_threads"] = ready.get("omp_max_threads")
    rec["build_seconds"] = [s.get("build_seconds") for s in state["setups"]]
    rec["interleave"] = state.get("mode")
    rec["resumed"] = bool(state.get("resumed"))
    rec["config"] = cfg
    rec["started"] = state.get("started")
    rec["finished"] = _now()
    return rec


# ---- the runner ----------------------------------------------------------------------------------

class _Stop:
    """SIGINT / SIGTERM: stop after the running step; a second signal kills the running worker."""

    def __init__(self, log):
        self.flag = False
        self.log = log
        self.current: Worker | None = None
        self.previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, h in self.previous.items():
            signal.signal(sig, h)

    def _handler(self, signum, frame):
        if self.flag:
            if self.current is not None:
                self.current.kill()
            raise KeyboardInterrupt
        self.flag = True
        self.log(f"\n{signal.Signals(signum).name}: stopping after the running round; finished points and rounds "
                 f"are kept (continue with --resume)")


class Progress:
    """A progress bar over the grid's rounds (stderr; one line per step when not a terminal)."""

    def __init__(self, total: int, stream=None, enabled: bool = True, label: str = "ablate", unit: str = "rounds"):
        self.label, self.unit = label, unit
        self.total = max(1, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, text: str, advance: int = 0) -> None:
        self.done += advance
        if not self.enabled:
            return
        frac = min(1.0, self.done / self.total)
        width = 24
        fill = int(width * frac)
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0.0
        line = f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done:,}/{self.total:,} {self.unit}, " \
               f"{el:,.0f}s" \
               f"{f', eta {eta:,.0f}s' if self.done else ''}  {text}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rotated(points: list, r: int) -> list:
    """The order of round r: the points rotated by r, so that no point is always first."""
    k = r % len(points) if points else 0
    return points[k:] + points[:k]


def run(grid: Grid, out_dir: str, *, resume: bool = False, progress: bool = True, log=_log_to_stderr,
        dry_run: bool = False) -> dict:
    """Run every point of the grid; returns the results dict (also written to out_dir).

    resume: keep the finished points of an earlier run in out_dir (matched on
    their axes) and the finished rounds of its partial points."""
    from . import runtime

    run_cfg = grid.run
    os.makedirs(out_dir, exist_ok=True)
    points = grid.points()
    if not points:
        raise AblationError("the grid has no points")
    old = None
    if resume and os.path.exists(os.path.join(out_dir, RESULTS_JSON)):
        old = load_results(out_dir)
        if old.get("grid", {}).get("run") and old["grid"]["run"] != run_cfg.to_dict():
            diff = sorted(k for k, v in run_cfg.to_dict().items() if old["grid"]["run"].get(k) != v)
            log(f"note: run settings differ from the results being resumed ({', '.join(diff)}); finished points "
                f"are kept as they are")
    elif not resume and os.path.exists(os.path.join(out_dir, RESULTS_JSON)) and not dry_run:
        raise AblationError(f"{out_dir} already holds {RESULTS_JSON}: pass --resume to continue it, or another --out")
    nf, nl = _preset_dims(run_cfg)  # every point is checked before any data is generated

    skipped, valid = [], []
    for p in points:
        bad = config_error(p, nf, nl)
        if bad:  # a wrong value, not a point this machine cannot run: never skipped
            raise AblationError(f"point {p.short() or p.id}: {bad}")
        why = validate_point(p, nf, nl)
        if why is None:
            valid.append(p)
        elif run_cfg.skip_invalid:
            skipped.append({"point_id": p.id, "axes": p.axes, "reason": why})
        else:
            raise AblationError(f"point {p.short() or p.id}: {why} (skip such points with --skip-invalid)")
    per_point = run_cfg.warmup + run_cfg.samples * run_cfg.repeats
    data = prepare_data(run_cfg, out_dir, per_point, log=None if not progress else log) if not dry_run else None
    if skipped:
        log(f"skipping {len(skipped)} point(s) that cannot run here, e.g. {skipped[0]['axes']}: "
            f"{skipped[0]['reason']}")
    label_axes = grid_axes_varying(valid)

    results = {
        "command": "ablate",
        "runner_pid": os.getpid(),
        "started": _now(),
        "runtime": runtime.report(quick=dry_run),
        "grid": dict(grid.to_dict(), n_points=len(points), varying=label_axes),
        "data": data,
        "records": [], "partial": {}, "failed": [], "skipped": skipped,
    }
    done_ids = set()
    if old is not None:
        results["started"] = old.get("started", results["started"])
        results["resumed_at"] = (old.get("resumed_at") or []) + [_now()]
        keys = {p.key: p for p in valid}
        for r in old.get("records", []):
            axes = {k: r.get(k) for k in (old.get("grid", {}).get("axes") or {})}
            key = r.get("axes_key") or json.dumps(axes, sort_keys=True)
            if key in keys:
                results["records"].append(r)
                done_ids.add(keys[key].id)
        for pid, st in (old.get("partial") or {}).items():
            if st.get("key") in keys and keys[st["key"]].id not in done_ids:
                st = dict(st, resumed=True)
                results["partial"][pid] = st
        if old.get("triad"):
            results["triad"] = old["triad"]
        if old.get("triad_by_threads"):
            results["triad_by_threads"] = old["triad_by_threads"]
    todo = [p for p in valid if p.id not in done_ids]

    mode, why = _choose_mode(run_cfg, todo, data, nf, nl)
    results["schedule"] = {"interleave": mode, "why": why, "points_total": len(valid), "points_todo": len(todo),
                           "points_done_before": len(done_ids)}
    if dry_run:
        return {"points": valid, "skipped": skipped, "schedule": results["schedule"], "label_axes": label_axes}
    log(f"ablate: {len(valid)} point(s) ({len(done_ids)} already done), {run_cfg.repeats} round(s) of "
        f"{run_cfg.samples:,} samples after {run_cfg.warmup:,} warm-up samples; interleave {mode} ({why}); "
        f"data {data['source']}; results in {out_dir}")

    if run_cfg.triad and not results.get("triad_by_threads"):
        from . import cache

        # the roof at every thread count of the grid (a 2-thread run is compared with a 2-thread triad)
        counts = sorted({int(p.env.get("OMP_NUM_THREADS", "1")) for p in valid}) or [1]
        by_threads = {}
        for t in counts:
            try:
                by_threads[str(t)] = cache.triad_bandwidth(threads=t)
            except Exception as e:  # the roof is a nicety; the run goes on without it
                by_threads[str(t)] = {"metric": "triad_bandwidth", "value": None, "available": False,
                                      "source": "hw", "reason": f"{type(e).__name__}: {e}"}
        results["triad_by_threads"] = by_threads
        results["triad"] = by_threads[str(counts[-1])]
    write_results(out_dir, results)

    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    states = {}
    for p in todo:
        st = results["partial"].get(p.id) or {"key": p.key, "axes": p.axes, "rounds": [], "setups": [],
                                              "final": None, "started": _now()}
        st["mode"] = mode
        states[p.id] = st
        results["partial"][p.id] = st
    total_rounds = sum(run_cfg.repeats - len(states[p.id]["rounds"]) for p in todo)
    bar = Progress(total_rounds, enabled=progress)
    seq = [len(results["records"])]

    def spec_for(p: Point) -> dict:
        return {"point_id": p.id, "axes": p.axes, "engine": p.engine, "config": p.config,
                "placement_axis": p.axes.get("placement") or grid.fixed.get("placement") or "aligned",
                "data": {"train": data["train"], "test": data["test"]}, "run": run_cfg.to_dict(),
                "mode": "rounds"}

    def finish_point(p: Point, final: dict) -> None:
        st = states[p.id]
        st["final"] = final
        rec = aggregate(p, st, run_cfg, label_axes)
        rec["axes_key"] = p.key
        rec["finished_seq"] = seq[0]
        seq[0] += 1
        results["partial"].pop(p.id, None)
        order = {q.id: i for i, q in enumerate(valid)}
        results["records"].append(rec)
        results["records"].sort(key=lambda r: order.get(r.get("point_id"), len(order)))

    def fail_point(p: Point, err: Exception) -> None:
        st = states.pop(p.id, None)
        results["partial"].pop(p.id, None)
        results["failed"].append({"point_id": p.id, "axes": p.axes, "error": str(err), "at": _now(),
                                  "rounds_done": len(st["rounds"]) if st else 0})
        log(f"\npoint {p.short() or p.id} failed: {err}")

    def start(p: Point) -> Worker:
        w = Worker(spec_for(p), p.env, os.path.join(logs, f"{p.id}.log"), run_cfg.timeout)
        stop.current = w
        bar.update(f"setting up {p.short() or p.id}")
        ready = w.receive("ready")
        states[p.id]["setups"].append(ready)
        return w

    def one_round(p: Point, w: Worker) -> None:
        st = states[p.id]
        r = len(st["rounds"])
        bar.update(f"round {r + 1}/{run_cfg.repeats} of {p.short() or p.id}")
        msg = w.command("round", "round", round=r, hw=run_cfg.hw and r == run_cfg.repeats - 1)
        msg["pid"] = w.pid
        st["rounds"].append(msg)
        bar.update(f"{msg['samples_per_s']:,.0f} samples/s  {p.short() or p.id}", advance=1)

    def finish(p: Point, w: Worker) -> None:
        bar.update(f"evaluating {p.short() or p.id}")
        final = w.command("finish", "final")
        finish_point(p, final)

    stop = _Stop(log)
    workers: dict = {}
    try:
        with stop:
            if mode == "live":
                for p in list(todo):
                    if stop.flag:
                        break
                    try:
                        workers[p.id] = start(p)
                    except WorkerError as e:
                        fail_point(p, e)
                        todo.remove(p)
                    write_results(out_dir, results)
                for r in range(run_cfg.repeats):
                    for p in _rotated(todo, r):
                        if stop.flag or p.id not in states or len(states[p.id]["rounds"]) > r:
                            continue
                        try:
                            stop.current = workers[p.id]
                            one_round(p, workers[p.id])
                        except WorkerError as e:
                            fail_point(p, e)
                            workers.pop(p.id).kill()
                        write_results(out_dir, results)
                for p in todo:
                    if stop.flag or p.id not in states or p.id not in workers:
                        continue
                    try:
                        stop.current = workers[p.id]
                        finish(p, workers[p.id])
                    except WorkerError as e:
                        fail_point(p, e)
                    workers.pop(p.id).close()
                    write_results(out_dir, results)
            elif mode == "fresh":
                for r in range(run_cfg.repeats):
                    for p in _rotated(todo, r):
                        if stop.flag or p.id not in states or len(states[p.id]["rounds"]) > r:
                            continue
                        w = None
                        try:
                            w = start(p)
                            one_round(p, w)
                            if len(states[p.id]["rounds"]) >= run_cfg.repeats:
                                finish(p, w)
                        except WorkerError as e:
                            fail_point(p, e)
                        finally:
                            if w is not None:
                                w.close()
                        write_results(out_dir, results)
            else:  # none: points one after the other
                for p in todo:
                    if stop.flag:
                        break
                    w = None
                    try:
                        w = start(p)
                        while len(states[p.id]["rounds"]) < run_cfg.repeats and not stop.flag:
                            one_round(p, w)
                            write_results(out_dir, results)
                        if not stop.flag:
                            finish(p, w)
                    except WorkerError as e:
                        fail_point(p, e)
                    finally:
                        if w is not None:
                            w.close()
                    write_results(out_dir, results)
    finally:
        for w in workers.values():
            w.close()
        bar.close()
        results["interrupted"] = stop.flag
        if not stop.flag and not results["partial"]:
            results["finished"] = _now()
        write_results(out_dir, results)
    n_ok = len(results["records"])
    log(f"ablate: {n_ok}/{len(valid)} point(s) finished" + (f", {len(results['failed'])} failed"
                                                             if results["failed"] else "")
        + (", interrupted" if stop.flag else "") + f"; {os.path.join(out_dir, RESULTS_JSON)}")
    return results


def _preset_dims(run: RunSettings) -> tuple:
    from . import synthetic

    if run.train:
        from .data import load_xc

        ds = load_xc(run.train)
        return ds.n_features, ds.n_labels
    p = synthetic.get_preset(run.preset)
    return p.n_features, p.n_labels


def _choose_mode(run: RunSettings, todo: list, data, nf: int, nl: int) -> tuple:
    if run.interleave != "auto":
        return run.interleave, "requested"
    from .memory import available_memory

    if len(todo) <= 1:
        return "live", "one point"
    need = sum(estimate_bytes(p, nf, nl, (data or {}).get("bytes", 0)) for p in todo)
    avail = available_memory()
    if avail is None or need <= 0.5 * avail:
        return "live", (f"all {len(todo)} workers need about {need / 2**30:.2f} GiB"
                        + (f", {avail / 2**30:.1f} GiB available" if avail else ""))
    return "fresh", (f"all {len(todo)} workers together would need about {need / 2**30:.1f} GiB, more than half of "
                     f"the {avail / 2**30:.1f} GiB available: one process per point and round")


# ---- compare: SLIDE against dense and sampled softmax ------------------------------------------------

# Learning-rate and size sweeps for `compare --tune`: every combination trains for the tuning budget; the
# best final P@1 (ties: the faster) is used for the full run. The sampled softmax's candidate set is the
# batch's labels plus n_negatives uniform negatives: 0 is in-batch negatives only.
TUNE_GRIDS = {
    "sampled": {"lr": [1e-3, 3e-3, 1e-2], "n_negatives": [0, 1024, 8192]},
    "torch_sampled": {"lr": [1e-3, 3e-3, 1e-2], "n_negatives": [0, 1024, 8192]},
    "dense": {"lr": [1e-3, 3e-3, 1e-2]},
    "torch_dense": {"lr": [1e-3, 3e-3, 1e-2]},
    "slide": {"lr": [1e-3, 3e-3, 1e-2]},
}
BASELINE_OPTIONS = ("n_negatives", "logq", "update", "adam", "seed")  # constructor keywords, not Config keys


def parse_method(text: str, default_recipe: str | None = None) -> tuple:
    """'slide', 'slide:best', 'sampled', ... -> (engine, recipe or None, method name: as
    given; plain 'slide' runs default_recipe, or recipes.DEFAULT)."""
    from . import recipes

    text = str(text).strip()
    engine, _, recipe = text.partition(":")
    if engine not in ENGINES:
        raise AblationError(f"unknown method {text!r} (valid: {', '.join(ENGINES)}; SLIDE with a recipe: "
                            f"slide:{'|slide:'.join(recipes.RECIPES)})")
    if engine != "slide":
        if recipe:
            raise AblationError(f"method {text!r}: only slide takes a recipe")
        return engine, None, engine
    name = f"slide:{recipe}" if recipe else "slide"
    recipe = recipe or default_recipe or recipes.DEFAULT
    recipes.get(recipe)
    return engine, recipe, name


def time_to(curve: list, target: float, key: str = "p_at_1") -> float | None:
    """Training seconds at which a curve first reaches `target` (linear
    interpolation between evaluations; None if it never does)."""
    prev = (0.0, None)
    for p in curve:
        v, t = p.get(key), p.get("seconds")
        if v is None or t is None:
            continue
        if v >= target:
            t0, v0 = prev
            if v0 is None or v0 >= v:
                return float(t)
            return float(t0 + (t - t0) * (target - v0) / (v - v0))
        prev = (float(t), float(v))
    return None


def p_at_seconds(curve: list, seconds: float | None, key: str = "p_at_1") -> float | None:
    """P@1 of the last evaluation made within `seconds` of training (None if
    the curve has none): the accuracy a method had at the same wall time."""
    if seconds is None:
        return None
    pts = [p for p in curve if p.get("seconds") is not None and p["seconds"] <= seconds + 1e-9
           and p.get(key) is not None]
    return pts[-1][key] if pts else None


def headline(records: list, reference: str | None) -> dict:
    """Time to the reference method's final P@1 for every method (exact inference;
    SLIDE also by LSH inference), the ratio to the reference's own time, and
    every method's P@1 at the reference's total training time."""
    ref = next((r for r in records if r.get("method") == reference), None)
    if ref is None or not ref.get("curve"):
        return {}
    target = ref["curve"][-1]["p_at_1"]
    t_ref = time_to(ref["curve"], target)
    t_ref_total = ref["curve"][-1]["seconds"]
    out = {"reference": reference, "target_p_at_1": target, "reference_seconds": t_ref,
           "reference_train_seconds": t_ref_total, "methods": {}}
    for r in records:
        c = r.get("curve") or []
        t = time_to(c, target)
        row = {"seconds_to_target": t, "speedup": (t_ref / t) if t and t_ref else None,
               "final_p_at_1": c[-1]["p_at_1"] if c else None, "final_seconds": c[-1]["seconds"] if c else None,
               "p_at_1_at_reference_seconds": p_at_seconds(c, t_ref_total)}
        if r.get("engine") == "slide":
            tl = time_to(c, target, "p_at_1_lsh")
            row.update(seconds_to_target_lsh=tl, speedup_lsh=(t_ref / tl) if tl and t_ref else None,
                       final_p_at_1_lsh=c[-1].get("p_at_1_lsh") if c else None,
                       p_at_1_lsh_at_reference_seconds=p_at_seconds(c, t_ref_total, "p_at_1_lsh"))
        out["methods"][r.get("method")] = row
    return out


def _data_facts(data: dict, eval_samples: int, log=None) -> dict:
    """The label prior and the 10-NN P@1 on the test points the curves
    evaluate (workbench.datafacts): what a P@1 means on this data."""
    from . import datafacts
    from .data import load_xc

    train, test = load_xc(data["train"]), load_xc(data["test"])
    f = datafacts.facts(train, test, samples=eval_samples)
    if log:
        log(f"compare: data: label prior P@1 {f['prior_p_at_1']:.4f}, 10-nearest-neighbour P@1 "
            f"{f['knn']['p_at_1']:.4f} on {f['knn']['n']:,} test points ({f['knn']['seconds']:.0f}s)")
    return f


def compare(out_dir: str, *, preset: str = "amazon670k", train: str | None = None, test: str | None = None,
            data_seed: int = 0, samples: int = 20_000, curve_points: int = 8, eval_samples: int = 1000,
            methods=("slide", "dense", "sampled"), recipe: str | None = None, threads: int = 0,
            config: dict | None = None, baseline_options: dict | None = None, tune=(), tune_samples: int | None = None,
            tune_grids: dict | None = None, diag_samples: int = 0, reference: str | None = None,
            peer_samples: int | None = None,
            timeout: float = 7200.0, progress: bool = True, log=_log_to_stderr) -> dict:
    """Train every method on the same data for `samples` samples, evaluating P@1
    `curve_points` times on the way (evaluation time is not train time), one
    fresh worker process per method, one after the other.

    methods: 'slide' (the recipe `recipe`, default recipes.DEFAULT), 'slide:NAME'
    (recipe NAME), 'dense', 'sampled', 'torch_dense', 'torch_sampled', 'plt' (a
    label tree, workbench.peers: trained once, one point). tune: methods whose
    learning rate (and, for the sampled softmax, negative count) are chosen first
    by a sweep (TUNE_GRIDS, or tune_grids) of tune_samples samples each. config:
    Config values for every method (after recipes and tuning: it wins).
    diag_samples: test points for SLIDE's table diagnostics at every evaluation.
    reference: the method whose final P@1 is the headline's target (default:
    the sampled softmax when present). peer_samples: the label tree's training
    samples (default: samples; its offline training is not a curve, and on a
    large set one pass can outlast every other method together). Writes results.json (SLIDE's records under
    records, the others under baselines, the sweeps under tuning, time-to-target
    under headline), results.csv and figures/; returns the results dict."""
    from . import runtime

    parsed = [parse_method(m, recipe) for m in methods]
    names = [n for _, _, n in parsed]
    if len(set(names)) != len(names):
        raise AblationError(f"a method is named twice: {', '.join(names)}")
    tune = [parse_method(m, recipe)[2] for m in tune]
    for m in tune:
        if m not in names:
            raise AblationError(f"--tune {m}: not among the methods ({', '.join(names)})")
        if parsed[names.index(m)][0] == "plt":
            raise AblationError("the label tree has no learning rate to tune")
    if curve_points < 1:
        raise AblationError("curve_points must be >= 1")
    if peer_samples is not None and int(peer_samples) < 1:
        raise AblationError(f"peer_samples must be >= 1, got {peer_samples}")

    def budget_of(engine: str) -> int:
        return min(int(samples), int(peer_samples)) if engine == "plt" and peer_samples else int(samples)
    run_cfg = RunSettings(preset=preset, train=train, test=test, data_seed=data_seed, samples=samples, warmup=0,
                          repeats=1, eval_samples=eval_samples, recall_samples=0, interleave="none", hw=False,
                          model=False, triad=False, timeout=timeout)
    fixed = dict(config or {})
    if threads:
        fixed["threads"] = threads
    opts_all = dict(baseline_options or {})
    grids = dict(TUNE_GRIDS, **(tune_grids or {}))
    # every check that needs no data, before any data is generated
    for engine, rec, name in parsed:
        p = _method_point(engine, rec, fixed, run_cfg, {})
        nf, nl = _preset_dims(run_cfg) if not train else (None, None)
        if nf is not None:
            why = validate_point(p, nf, nl)
            if why:
                raise AblationError(f"method {name}: {why}")
    if opts_all:
        from . import baselines

        baselines.check_options(sorted({e for e, _, _ in parsed if e != "slide"}), opts_all)
    os.makedirs(out_dir, exist_ok=True)
    data = prepare_data(run_cfg, out_dir, samples, log=log if progress else None)
    facts = _data_facts(data, eval_samples, log if progress else None)
    ref_name = reference or next((n for n in names if n.split(":")[0] in ("sampled", "torch_sampled")), None)
    results = {"command": "compare", "started": _now(), "runtime": runtime.report(),
               "grid": {"command": "compare", "methods": names, "samples": samples, "recipe": recipe,
                        "curve_points": curve_points, "eval_samples": eval_samples, "fixed": fixed,
                        "tune": tune, "tune_samples": tune_samples, "diag_samples": diag_samples,
                        "peer_samples": peer_samples,
                        "data": data["source"], "reference": ref_name},
               "data": data, "data_facts": facts, "records": [], "baselines": [], "failed": [], "tuning": {}}
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    stop = _Stop(log)
    t_budget = int(tune_samples or min(samples, max(1, data.get("n_train") or samples)))
    n_trials = 0
    for name in tune:
        g = grids.get(parsed[names.index(name)][0]) or {}
        n_trials += math.prod(len(v) for v in g.values()) if g else 0
    # one bar over every run's samples (sweep trials, then curves), moved at each evaluation
    bar = Progress(n_trials * t_budget + sum(budget_of(e) for e, _, _ in parsed), enabled=progress, label="compare", unit="samples")

    def one(engine, rec, name, extra: dict, budget: int, points: int, label: str, diag: int) -> dict | None:
        p = _method_point(engine, rec, fixed, run_cfg, extra)
        why = validate_point(p, data["n_features"], data["n_labels"])
        if why:
            raise AblationError(f"method {name}: {why}")
        opts = {**({k: v for k, v in opts_all.items()} if engine != "slide" else {}),
                **{k: v for k, v in extra.items() if k in BASELINE_OPTIONS}}
        spec = {"point_id": p.id, "axes": p.axes, "engine": engine, "config": p.config,
                "placement_axis": p.axes.get("placement") or "aligned",
                "data": {"train": data["train"], "test": data["test"]}, "run": run_cfg.to_dict(),
                "mode": "curve", "baseline_options": opts}
        moved = [0]

        def step(msg):
            n = int(msg.get("samples") or 0)
            bar.update(f"{label}: P@1 {msg.get('p_at_1') or 0:.3f} after {n:,} samples", n - moved[0])
            moved[0] = n

        bar.update(f"{label}: building the model, then training ({points} evaluation(s) on the way)")
        w = Worker(spec, p.env, os.path.join(logs, f"{name.replace(':', '-')}-{p.id}.log"), timeout)
        stop.current = w
        try:
            ready = w.receive("ready")
            msg = w.command("curve", "curve", on_progress=step, samples=budget, points=points,
                            eval_samples=eval_samples, label=label, diag_samples=diag)
        except WorkerError as e:
            results["failed"].append({"method": name, "error": str(e), "settings": extra})
            bar.update(f"{label} failed", budget - moved[0])
            log(f"compare: {name} failed: {e}")
            return None
        finally:
            w.close()
        if moved[0] < budget:  # a curve that stopped early: the bar still moves its whole budget
            bar.update(f"{label} done", budget - moved[0])
        r = dict(msg["record"])
        r.update(point_id=p.id, engine=engine, method=name, recipe=rec, variant_id=ready.get("variant_id"),
                 variant=r.get("label") or ready.get("variant_id"), worker_pids=[w.pid],
                 worker_env=ready.get("env"), threads=ready.get("config", {}).get("threads"),
                 build_seconds=ready.get("build_seconds"), settings=extra, baseline_options=opts or None)
        if rec:
            from . import recipes

            r["recipe_values"], r["recipe_sources"] = recipes.resolve(rec, n_labels=data["n_labels"],
                                                                      preset=None if train else preset)
        return r

    with stop:
        # 1. sweeps
        for name in tune:
            engine, rec, _ = parsed[names.index(name)]
            grid = grids.get(engine) or {}
            keys = list(grid)
            import itertools

            trials = []
            for combo in itertools.product(*(grid[k] for k in keys)):
                if stop.flag:
                    break
                extra = dict(zip(keys, combo))
                r = one(engine, rec, name, extra, t_budget, 1, "sweep: " + _method_label(engine, rec, extra), 0)
                if r:
                    last = r["curve"][-1]
                    trials.append({"settings": extra, "p_at_1": last["p_at_1"], "seconds": last["seconds"],
                                   "samples_per_s": r.get("samples_per_s")})
                write_results(out_dir, results)
            best = max(trials, key=lambda t: (t["p_at_1"], -t["seconds"])) if trials else None
            results["tuning"][name] = {"grid": grid, "samples": t_budget, "trials": trials,
                                       "chosen": best["settings"] if best else None,
                                       "rule": "the best final P@1 after the tuning budget (ties: the faster)"}
        # 2. the curves
        for engine, rec, name in parsed:
            if stop.flag:
                break
            extra = dict((results["tuning"].get(name) or {}).get("chosen") or {})
            label = _method_label(engine, rec, extra)
            r = one(engine, rec, name, extra, budget_of(engine), curve_points, label,
                    diag_samples if engine == "slide" else 0)
            if r:
                (results["records"] if engine == "slide" else results["baselines"]).append(r)
            write_results(out_dir, results)
    bar.close()
    results["interrupted"] = stop.flag
    results["finished"] = _now()
    curves = results["records"] + results["baselines"]
    results["headline"] = headline(curves, ref_name)
    results["figures"] = convergence_figure(curves, os.path.join(out_dir, "figures"),
                                            target=(results["headline"] or {}).get("target_p_at_1"))
    try:
        from . import plots

        results["figures"] += list(plots.plot_tables(results["records"], os.path.join(out_dir, "figures")))
    except Exception as e:  # a figure must not lose the measurements
        results["figure_errors"] = [f"lsh_over_training: {type(e).__name__}: {e}"]
    write_results(out_dir, results)
    _atomic_write(os.path.join(out_dir, RESULTS_CSV), records_csv(curves))
    return results


def _method_point(engine: str, recipe: str | None, fixed: dict, run: RunSettings, extra: dict) -> Point:
    """The point of one compare method: the recipe (SLIDE), then --set values,
    then the tuned or swept settings (Config keys among them)."""
    types = _config_field_types()
    f = {k: v for k, v in fixed.items()}
    f.update({k: v for k, v in extra.items() if k in types})
    if recipe:
        f["recipe"] = recipe
    return Grid(axes={"engine": [engine]}, fixed=f, run=run).points()[0]


def _method_label(engine: str, recipe: str | None, extra: dict) -> str:
    labels = {"slide": "SLIDE", "dense": "dense softmax", "sampled": "sampled softmax",
              "torch_dense": "dense softmax (PyTorch)", "torch_sampled": "sampled softmax (PyTorch)",
              "plt": "label tree (napkinXC PLT)"}
    lab = labels.get(engine, engine) + (f" ({recipe})" if recipe else "")
    if extra:
        lab += " [" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()) + "]"
    return lab


def convergence_figure(curves: list, fig_dir: str, target: float | None = None) -> list:
    """P@1 against seconds and samples (workbench.plots.plot_convergence when
    available, else matplotlib directly); returns the written paths."""
    try:
        from . import plots

        return list(plots.plot_convergence(curves, fig_dir, target=target))
    except ImportError:  # pragma: no cover - plots is part of the package
        pass
    from matplotlib.figure import Figure

    os.makedirs(fig_dir, exist_ok=True)
    fig = Figure(figsize=(10, 4))
    a1, a2 = fig.subplots(1, 2)
    for r in curves:
        c = r.get("curve") or []
        a1.plot([p["seconds"] for p in c], [p["p_at_1"] for p in c], marker=".", label=r.get("method"))
        a2.plot([p["samples"] for p in c], [p["p_at_1"] for p in c], marker=".", label=r.get("method"))
    a1.set_xlabel("wall-clock seconds")
    a2.set_xlabel("samples seen")
    for a in (a1, a2):
        a.set_ylabel("P@1")
        a.legend()
    paths = [os.path.join(fig_dir, "convergence.png"), os.path.join(fig_dir, "convergence.svg")]
    for pth in paths:
        fig.savefig(pth)
    return paths


def main(argv=None) -> int:
    """`python -m workbench.ablate ...` is `slide-workbench ablate ...`;
    `python -m workbench.ablate --worker` runs a worker (workbench.ablate_worker)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        from . import ablate_worker

        return ablate_worker.main()
    from . import cli

    return cli.main(["ablate", *argv])


if __name__ == "__main__":
    sys.exit(main())
