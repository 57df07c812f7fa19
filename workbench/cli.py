"""The `slide-workbench` command (also `python -m workbench`).

Subcommands: generate, train, eval, info, ablate, report, compare. Owns argument parsing, turning
flags and TOML files into a Config, progress display, summaries and JSON
results. Errors a user can cause (bad data, bad config, bad checkpoint)
print one line naming the file and problem and exit non-zero, without a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time

from . import __version__
from .config import Config, ConfigError

EXIT_USER_ERROR = 2


# ---- helpers -------------------------------------------------------------------

def _csv(cast):
    def parse(text):
        try:
            items = tuple(cast(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
        if not items:  # `--hidden ""` is a slip, not a request for no hidden layer
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return items
    return parse


CONFIG_HELP = {
    "hidden": "hidden layer widths, comma-separated (e.g. 128 or 256,128)",
    "layer_modes": "per layer dense|lsh, comma-separated (default: hidden dense, output lsh)",
    "layouts": "per layer rowmajor|transposed (default: first transposed, rest rowmajor)",
    "hash_family": "dwta | wta | srp | minhash",
    "K": "hashes per bucket id", "L": "number of hash tables", "range_pow": "log2 of buckets per table",
    "bin_size": "DWTA/WTA bin size", "bucket_size": "bucket capacity", "bucket_policy": "fifo | reservoir",
    "sampling": "vanilla | topk | threshold | uniform | exact",
    "top_k": "active neurons kept by topk/exact sampling", "threshold": "collision count for threshold sampling",
    "min_active": "random top-up to at least this many active neurons",
    "batch_labels": "batched strategy: add up to N of the batch's labels to every sample's active set as "
                    "negatives (in-batch negatives; 0: off)",
    "compat": "reproduce the reference implementation's bucket-id shift and softmax shift",
    "rehash": "rebuild tables from current weights every N samples",
    "rebuild": "draw new hash functions every N samples",
    "hash_center": "hash each weight row minus the mean row (same ranking of the logits, buckets evenly filled)",
    "rehash_drift": "at each rehash point rebuild only if this fraction of probe neurons changed bucket "
                    "(0: rebuild every time)",
    "drift_probe": "neurons whose bucket ids measure the drift for rehash_drift",
    "batch_size": "samples per batch", "lr": "Adam learning rate", "update": "sparse | dense Adam",
    "beta1": "Adam first-moment decay", "beta2": "Adam second-moment decay", "eps": "Adam epsilon",
    "init_std": "standard deviation of the initial weights",
    "strategy": "auto | batched | hogwild: how a batch is trained (auto: batched where the network allows it; "
                "see the README)",
    "threads": "OpenMP threads (0: all available)", "seed": "random seed",
    "deterministic": "one thread, identical results run to run",
    "precision": "fp32 | bf16 | bf16act", "isa": "auto or the highest ISA to use (scalar, avx2, avx512, avx512_bf16)",
    "placement": "default | aligned | hugepage (2 MiB pages with madvise; what was granted is reported)",
    "prefetch": "software-prefetch active rows this far ahead in SIMD kernels (0: off)",
    "fuse_update": "batched strategy: backward and Adam of an output row in one kernel (row_adam)",
}
SKIP_FLAGS = {"n_features", "n_labels", "kernels"}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hyper-parameters (default: the reference Amazon-670K settings)")
    for f in dataclasses.fields(Config):
        if f.name in SKIP_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw = {"dest": "cfg_" + f.name, "default": None, "help": CONFIG_HELP.get(f.name)}
        if f.type not in ("bool", bool):
            kw["metavar"] = f.name.upper()  # not argparse's CFG_LR, from dest
        if f.name == "K":
            flag = "-K"
        elif f.name == "L":
            flag = "-L"
        if f.type in ("bool", bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name == "hidden":
            g.add_argument(flag, type=_csv(int), **kw)
        elif f.name in ("layer_modes", "layouts"):
            g.add_argument(flag, type=_csv(str), **kw)
        elif f.type in ("int", int):
            g.add_argument(flag, type=int, **kw)
        elif f.type in ("float", float):
            g.add_argument(flag, type=float, **kw)
        else:
            g.add_argument(flag, type=str, **kw)
    g.add_argument("--layout", choices=("rowmajor", "transposed"), default=None,
                   help="the same weight layout for every layer (per layer: --layouts)")
    g.add_argument("--kernel", action="append", default=[], metavar="OP=DTYPE/ISA",
                   help="force the kernel of one op, e.g. fwd_rows=f32/scalar (repeatable)")


def _config_from_args(args, n_features: int, n_labels: int, base_cfg: dict | None = None) -> Config:
    d = _config_dict(args, base_cfg)
    d["n_features"] = n_features
    d["n_labels"] = n_labels
    return Config.from_dict(d)


def _config_dict(args, base_cfg: dict | None = None) -> dict:
    """Config values set by base_cfg and the command line's flags."""
    d = dict(base_cfg or {})
    for f in dataclasses.fields(Config):
        v = getattr(args, "cfg_" + f.name, None)
        if v is not None:
            d[f.name] = v
    kern = dict(d.get("kernels", {}))
    for item in getattr(args, "kernel", []):
        if "=" not in item:
            raise ConfigError(f"--kernel expects OP=DTYPE/ISA, got {item!r}")
        op, name = item.split("=", 1)
        kern[op.strip()] = name.strip()
    if kern:
        d["kernels"] = kern
    if getattr(args, "layout", None):
        n_layers = len(d.get("hidden", Config.hidden)) + 1
        d["layouts"] = (args.layout,) * n_layers
    return d


def _read_toml(path: str) -> dict:
    """A TOML run file: hyper-parameters at the top level or under [train];
    run settings (data, epochs, ...) under [run]."""
    from .config import tomllib

    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 (byte {e.start})") from None
    return doc


class Progress:
    """A one-line progress bar on a terminal; periodic lines otherwise."""

    def __init__(self, stream=sys.stderr, label="train"):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.label = label
        self.last = 0.0
        self.last_frac = -1.0

    def __call__(self, info):
        now = time.perf_counter()
        frac = info["done"] / max(info["total"], 1)
        final = info["done"] >= info["total"]
        if self.tty:
            if now - self.last < 0.2 and not final:
                return
        elif frac - self.last_frac < 0.1 and not final:
            return
        self.last, self.last_frac = now, frac
        width = 30
        fill = int(width * frac)
        rate = info["samples_per_s"]
        eta = (info["total"] - info["done"]) / rate if rate > 0 else 0.0
        line = (f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {info['done']:,}/{info['total']:,} "
                f"loss {info['loss']:.4f}  {rate:,.0f} samples/s  eta {eta:,.0f}s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _write_json(path: str, obj: dict) -> None:
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a directory (expected a file path)")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"{path}: cannot write: {e.strerror}") from None


def _load_data(args, split: str, n: int | None):
    """Data for a split: a file (--train/--test) or the generated preset."""
    from . import synthetic
    from .data import load_xc

    path = getattr(args, split, None)
    if path:
        ds = load_xc(path, cache=not args.no_cache)
        return ds.head(n) if n is not None and n < len(ds) else ds
    preset = synthetic.get_preset(args.preset)
    size = preset.n_points(split)
    return synthetic.generate(preset, split=split, seed=args.data_seed, n=None if n is None else min(n, size))


def _print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    print(title)
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")


# ---- subcommands --------------------------------------------------------------------

def cmd_generate(args) -> int:
    from . import synthetic
    from .data import write_xc

    preset = synthetic.get_preset(args.preset)
    out = {}
    for split, n in (("train", args.train_samples), ("test", args.test_samples)):
        t0 = time.perf_counter()
        ds = synthetic.generate(preset, split=split, seed=args.seed, n=n)
        path = f"{args.out}_{split}.txt"
        write_xc(ds, path)
        out[split] = path
        print(f"wrote {path}: {len(ds):,} points, {ds.n_features:,} features, {ds.n_labels:,} labels "
              f"({time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_train(args) -> int:
    from . import memory, runtime
    from .network import Network

    toml = _read_toml(args.config) if args.config else {}
    base, run = _toml_sections(args.config, toml)
    actions = _run_actions()
    for key, val in run.items():  # [run] fills flags the command line left unset
        attr = key.replace("-", "_") if isinstance(key, str) else None
        if attr not in actions:
            raise ConfigError(f"{args.config}: unknown [run] key {key!r} (valid: {', '.join(sorted(actions))}; "
                              f"hyper-parameters go at the top level or under [train])")
        val = _run_value(args.config, key, val, actions[attr])  # checked even where a flag wins
        if getattr(args, attr) in (None, False):
            setattr(args, attr, val)
    if args.train and not args.test and not args.no_eval:
        raise ConfigError("--train FILE needs --test FILE (or --no-eval)")
    if args.checkpoint_every is not None and (args.checkpoint_every <= 0 or not args.save):
        raise ConfigError("--checkpoint-every N needs N > 0 and --save PATH")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise ConfigError(f"--epochs must be a finite number > 0, got {args.epochs}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ConfigError(f"--max-samples must be >= 1, got {args.max_samples}")
    if args.eval_samples is not None and args.eval_samples < 1:
        raise ConfigError(f"--eval-samples must be >= 1, got {args.eval_samples}")
    for path in (args.json, args.save):
        if path and os.path.isdir(path):
            raise ConfigError(f"{path}: is a directory (expected a file path)")
    # --preset beside --train: the preset's suggested hyper-parameters apply to the file's data
    args.preset_named = args.preset is not None
    if args.preset is None:
        args.preset = "amazon670k"
    epochs = args.epochs if args.epochs is not None else 1.0
    user_cfg = _config_dict(args, base)  # what this command sets itself (a resumed run must agree)

    from . import recipes

    recipe = args.recipe or recipes.DEFAULT
    recipes.get(recipe)  # an unknown name fails before any data is read
    if args.recipe:  # named on this command line: a resumed run must agree with it too
        rv, _ = recipes.resolve(recipe, n_labels=_label_count(args), preset=_settings_preset(args),
                                base=user_cfg)
        user_cfg = {**rv, **user_cfg}
    if args.dry_run:
        return _dry_run(args, base, epochs, recipe)

    t0 = time.perf_counter()
    need = args.max_samples if (args.max_samples and not args.train and epochs <= 1) else None
    train = _load_data(args, "train", need)
    test = None if args.no_eval else _load_data(args, "test", args.eval_samples)
    data_seconds = time.perf_counter() - t0
    if test is not None:  # before training, not after it
        from .network import check_same_shape

        check_same_shape(train, test)
    rvals, rsources = recipes.resolve(recipe, n_labels=train.n_labels, preset=_settings_preset(args),
                                      base=_config_dict(args, base))
    cfg = _config_from_args(args, train.n_features, train.n_labels, {**rvals, **base})
    explicit = _config_dict(args, base)
    chosen = {k: v for k, v in rvals.items() if k not in explicit}
    total = args.max_samples if args.max_samples else int(round(epochs * len(train)))
    if total < 1:
        raise ConfigError(f"nothing to train: --epochs {epochs} of {len(train):,} training points is 0 samples")
    if args.resume:
        net, total = _resume(args, cfg, user_cfg, train, epochs)
        cfg = net.config
    else:
        net = Network(cfg)
        net.run_start = net.samples_seen
    print(f"data: {train.source} ({len(train):,} train points"
          + (f", {len(test):,} test points" if test is not None else "") + f", {data_seconds:.1f}s)")
    if not args.resume:
        print(f"recipe: {recipe} ({recipes.get(recipe).summary}); "
              + (", ".join(f"{k}={_show(v)} [{rsources[k]}]" for k, v in chosen.items()) or "no values")
              + (f"; overridden here: {', '.join(sorted(k for k in rvals if k in explicit))}"
                 if any(k in explicit for k in rvals) else ""))
    print(f"network: {cfg.n_features:,} -> {' -> '.join(str(h) for h in cfg.hidden)} -> {cfg.n_labels:,}, "
          f"layers {','.join(cfg.layer_modes)}, {cfg.hash_family} K={cfg.K} L={cfg.L} range={cfg.range_pow}"
          f"{' compat' if cfg.compat else ''}, batch {cfg.batch_size}, {net.threads} "
          f"thread{'s' if net.threads != 1 else ''}, "
          f"precision {cfg.precision}, kernels {net.kernels['fwd_rows'].kernel.name}, {net.strategy}")

    net.run_target = net.samples_seen + total
    load0 = runtime.cpu_snapshot()  # other processes' CPU use while training: a busy machine is said so
    summary = _fit_interruptible(net, train, total, args)
    load = runtime.machine_load(load0, runtime.cpu_snapshot())
    if summary.get("interrupted"):
        return summary["interrupted"]
    bad = net.nonfinite_layers()
    if bad:  # the NaN guard runs at rehash time: the last stretch is checked here
        from .network import NumericalError

        where = "; ".join(f"layer {i}: {', '.join(names)}" for i, names in bad.items())
        raise NumericalError(f"training diverged: non-finite values in {where} after {net.samples_seen:,} samples "
                             f"(lower the learning rate or check the data's scale); nothing was evaluated or saved")
    result = {
        "command": "train",
        "data": {"train": train.source, "test": test.source if test is not None else None,
                 "n_train": len(train), "n_test": len(test) if test is not None else 0},
        "samples": summary["samples"],
        "samples_per_s": summary["samples_per_s"],
        "train_seconds": summary["train_seconds"],
        "mean_loss": summary["mean_loss"],
        "time_split": summary["time_split"],
        "lsh": summary["lsh"],
        "machine_load": load,
    }
    rows = [("samples", f"{summary['samples']:,}"),
            ("train time", f"{summary['train_seconds']:.1f} s"),
            ("throughput", f"{summary['samples_per_s']:,.1f} samples/s"),
            ("mean loss", f"{summary['mean_loss']:.4f}"),
            ("time split", ", ".join(f"{k} {v:.1f}s" for k, v in summary["time_split"].items())),
            ("active/sample", f"{summary['lsh']['mean_active'][-1]:,.0f} output neurons "
                              f"({summary['lsh']['mean_candidates'][-1]:,.0f} from LSH)"),
            ("machine load", runtime.describe_load(load))]
    if test is not None:
        for mode in args.eval_mode.split(","):
            ev = net.evaluate(test, mode=mode)
            for k in ("p_at_1", "p_at_3", "p_at_5"):
                result[k if mode == args.eval_mode.split(",")[0] else f"{k}_{mode}"] = ev[k]
            result[f"eval_{mode}"] = ev
            rows.append((f"P@1/3/5 ({mode})", f"{ev['p_at_1']:.4f} / {ev['p_at_3']:.4f} / {ev['p_at_5']:.4f} "
                                              f"on {ev['n']:,} test points ({ev['eval_seconds']:.1f}s)"))
    result["peak_rss_bytes"] = memory.peak_rss_bytes()
    rows.append(("peak RSS", f"{result['peak_rss_bytes'] / 2**30:.2f} GiB"))
    result["config"] = cfg.to_dict()
    result["recipe"] = {"name": recipe if not args.resume else None,
                        "values": {k: rvals[k] for k in rvals} if not args.resume else None,
                        "sources": {k: rsources[k] for k in chosen} if not args.resume else None,
                        "note": "resumed: the checkpoint's settings" if args.resume else None}
    result["kernels"] = {op: c.kernel.name for op, c in net.kernels.items()}
    result["runtime"] = runtime.report(net)
    save_error = None
    if args.save:
        try:
            net.save(args.save)
            rows.append(("checkpoint", args.save))
        except OSError as e:  # e.g. a full disk: the results below are still printed and written
            save_error = e
            result["checkpoint_error"] = f"{e.filename}: {e.strerror}"
            rows.append(("checkpoint", f"NOT written: {e.filename}: {e.strerror}"))
    _print_summary("summary", rows)
    if args.json:
        try:
            _write_json(args.json, result)
        except ConfigError as e:
            if save_error is None:
                raise
            print(f"slide-workbench: error: {e}", file=sys.stderr)
    if save_error is not None:
        raise save_error
    return 0


def _holds(net) -> str:
    """What a checkpoint's training state amounts to, in words."""
    text = (f"{net.samples_seen:,} samples seen, {net.epochs_done:,} complete pass(es) over the data, "
            f"{net.step:,} Adam steps")
    if net.history:
        text += f", last mean loss {net.history[-1]['mean_loss']:.4f}"
    return text


def _resume(args, cfg: Config, user_cfg: dict, train, epochs: float):
    """The network of --resume PATH and the samples left to train. An
    interrupted run finishes what it was asked to do; hyper-parameters and an
    explicit --epochs/--max-samples must agree with the checkpoint's run
    (execution settings may change); a finished run is refused, saying what it holds."""
    from .checkpoint import LOAD_OVERRIDES
    from .network import Network

    path = args.resume
    overrides = {k: getattr(cfg, k) for k in ("threads", "deterministic")}
    overrides.update({k: getattr(cfg, k) for k in user_cfg if k in LOAD_OVERRIDES})
    net = Network.load(path, overrides=overrides)
    ck = net.config
    conflicts = []
    for k, v in user_cfg.items():
        if k in LOAD_OVERRIDES:
            continue
        try:
            same = getattr(Config.from_dict({**ck.to_dict(), k: v}), k) == getattr(ck, k)
        except (ConfigError, TypeError):
            same = False
        if not same:
            conflicts.append(f"{k} = {_show(v)} (checkpoint: {_show(getattr(ck, k))})")
    if conflicts:
        raise ConfigError(f"--resume {path}: this command sets {'; '.join(conflicts)}; a resumed run keeps the "
                          f"checkpoint's hyper-parameters (only {', '.join(LOAD_OVERRIDES)} may change)")
    asked = args.max_samples if args.max_samples else (
        int(round(epochs * len(train))) if args.epochs is not None else None)
    if net.run_target is None:  # saved through the Python API: this command trains on from it
        return net, asked if asked is not None else int(round(epochs * len(train)))
    left = max(0, net.run_target - net.samples_seen)
    if asked is not None and net.run_start is not None and asked != net.run_target - net.run_start:
        run_total = net.run_target - net.run_start
        raise ConfigError(f"--resume {path}: this command asks for {asked:,} training samples but the run in the "
                          f"checkpoint asked for {run_total:,} ({run_total - left:,} done, {left:,} left); resume it "
                          f"with its own --epochs / --max-samples, or with neither")
    if left == 0:
        raise ConfigError(f"--resume {path}: nothing to resume: the run in this checkpoint is finished "
                          f"({_holds(net)}); evaluate it with: slide-workbench eval --model {path}")
    print(f"resuming at {net.samples_seen:,} samples; {left:,} to go")
    return net, left


def _show(v) -> str:
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(map(str, v)) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def _toml_sections(path: str, doc: dict) -> tuple[dict, dict]:
    """(config values, [run] table) of a --config file; any other table is an error."""
    from dataclasses import fields

    names = {f.name for f in fields(Config)}
    unknown = [k for k, v in doc.items() if isinstance(v, dict) and k not in ("train", "run") and k not in names]
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(f'[{k}]' for k in unknown)} (valid: [train] for "
                          f"hyper-parameters, which may also be at the top level, and [run])")
    for k in ("train", "run"):
        if k in doc and not isinstance(doc[k], dict):
            raise ConfigError(f"{path}: '{k}' must be a table ([{k}]), got {_show(doc[k])}")
    base = {k: v for k, v in doc.items() if k not in ("train", "run")}
    base.update(doc.get("train", {}))
    return base, doc.get("run", {})


def _run_actions() -> dict:
    """dest -> argparse action of every train flag a [run] table may set
    (hyper-parameter flags excluded: they have their own sections)."""
    for a in build_parser()._actions:
        if isinstance(a, argparse._SubParsersAction):
            return {x.dest: x for x in a.choices["train"]._actions
                    if x.dest not in ("help", "config", "kernel", "layout") and not x.dest.startswith("cfg_")}
    return {}


def _run_value(path: str, key: str, val, action):
    """A [run] value checked against its flag's type, as argparse would."""
    def bad(expected):
        raise ConfigError(f"{path}: [run] {key}: expected {expected}, got {_show(val)[:80]}")

    if action.nargs == 0:  # a switch
        if not isinstance(val, bool):
            bad("true or false")
    elif action.type is int:
        if isinstance(val, bool) or not isinstance(val, int):
            bad("an integer")
    elif action.type is float:
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            bad("a number")
        val = float(val)
    elif action.type is None:
        if not isinstance(val, str):
            bad("a string")
    elif isinstance(val, str):
        try:
            val = action.type(val)
        except (argparse.ArgumentTypeError, ValueError) as e:
            bad(str(e) or "a valid value")
    else:
        bad("a string")
    if action.choices is not None and val not in action.choices:
        bad(f"one of {', '.join(map(str, action.choices))}")
    return val


def _settings_preset(args) -> str | None:
    """The preset whose suggested hyper-parameters a recipe starts from: the
    generated data's, or one named with --preset beside --train."""
    if not args.train or getattr(args, "preset_named", False):
        return args.preset
    return None


def _label_count(args) -> int:
    """Labels of the training data (the file's header, or the preset) without loading it."""
    from . import synthetic
    from .data import load_xc

    if args.train:
        return load_xc(args.train, cache=not args.no_cache).n_labels
    return synthetic.get_preset(args.preset).n_labels


def _dry_run(args, base: dict, epochs: float, recipe: str) -> int:
    """Print the memory estimate of the configuration without allocating it."""
    from . import resources, synthetic
    from .data import load_xc

    if args.train:
        ds = load_xc(args.train, cache=not args.no_cache)
        n_features, n_labels = ds.n_features, ds.n_labels
        data_bytes = resources.dataset_bytes(ds)
        max_labels = int(max(1, (ds.label_indptr[1:] - ds.label_indptr[:-1]).max(initial=1)))
    else:
        p = synthetic.get_preset(args.preset)
        n_features, n_labels = p.n_features, p.n_labels
        n = args.max_samples if (args.max_samples and epochs <= 1) else p.n_train
        data_bytes = int(n * (p.mean_nnz * 8 + p.mean_labels * 4 + 16))
        max_labels = int(4 * p.mean_labels + 16)
    from . import recipes

    rvals, _ = recipes.resolve(recipe, n_labels=n_labels, preset=_settings_preset(args),
                               base=_config_dict(args, base))
    cfg = _config_from_args(args, n_features, n_labels, {**rvals, **base})
    est = resources.with_available(resources.estimate(cfg, data_bytes=data_bytes, max_labels=max_labels))
    print(resources.format_estimate(est))
    fits = resources.fits(est)
    print("fits in available memory" if fits else "does NOT fit in available memory")
    if args.json:
        _write_json(args.json, {"command": "train --dry-run", "estimate": est, "config": cfg.to_dict(), "fits": fits})
    return 0 if fits else EXIT_USER_ERROR


def _fit_interruptible(net, train, total: int, args) -> dict:
    """fit() with SIGINT/SIGTERM finishing the current batch and writing a
    checkpoint, and optional periodic checkpoints (--checkpoint-every)."""
    import signal

    caught = {}

    def handler(signum, frame):
        if caught:  # a second signal: give up waiting for the batch
            raise KeyboardInterrupt
        caught["signum"] = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current batch, then writing a checkpoint",
              file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    progress = None if args.quiet else Progress()
    every = args.checkpoint_every
    state = {"next": (net.samples_seen // every + 1) * every if every else None}

    def on_batch(info):
        if progress is not None:
            progress(info)
        if every and net.samples_seen >= state["next"]:
            try:
                net.save(args.save)
            except OSError as e:  # e.g. a full disk: the last good checkpoint stays; the final save tries again
                print(f"\nslide-workbench: warning: periodic checkpoint not written: {e.filename}: {e.strerror}; "
                      f"training continues", file=sys.stderr, flush=True)
            state["next"] = (net.samples_seen // every + 1) * every

    try:
        summary = net.fit(train, max_samples=total, progress=on_batch, should_stop=lambda: bool(caught))
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    if caught:
        path = args.save or "slide-workbench-interrupted.slide"
        net.save(path)
        name = signal.Signals(caught["signum"]).name
        print(f"{name}: stopped after {net.samples_seen:,} samples; checkpoint written to {path}\n"
              f"continue with the same command and --resume {path}", file=sys.stderr)
        return {"interrupted": 128 + caught["signum"]}
    return summary


def cmd_eval(args) -> int:
    from . import memory, runtime
    from .network import Network

    overrides = {}
    if args.threads is not None:
        overrides["threads"] = args.threads
    net = Network.load(args.model, overrides=overrides)
    if args.preset is None and not args.test:
        args.preset = "amazon670k"
    test = _load_data(args, "test", args.eval_samples)
    cfg = net.config
    if (test.n_features, test.n_labels) != (cfg.n_features, cfg.n_labels):
        from .network import DataMismatchError

        raise DataMismatchError(f"{test.source}: test data has {test.n_features:,} features and {test.n_labels:,} "
                                f"labels but the model {args.model} has {cfg.n_features:,} features and "
                                f"{cfg.n_labels:,} labels")
    result = {"command": "eval", "model": args.model, "data": test.source}
    rows = []
    for mode in args.mode.split(","):
        ev = net.evaluate(test, mode=mode)
        for k in ("p_at_1", "p_at_3", "p_at_5"):
            result[k if mode == args.mode.split(",")[0] else f"{k}_{mode}"] = ev[k]
        result[f"eval_{mode}"] = ev
        result.setdefault("samples_per_s", ev["eval_samples_per_s"])
        rows.append((f"P@1/3/5 ({mode})", f"{ev['p_at_1']:.4f} / {ev['p_at_3']:.4f} / {ev['p_at_5']:.4f} "
                                          f"on {ev['n']:,} points, {ev['eval_samples_per_s']:,.0f} samples/s"))
    result["train_seconds"] = sum(h["train_seconds"] for h in net.history)
    result["peak_rss_bytes"] = memory.peak_rss_bytes()
    result["config"] = net.config.to_dict()
    result["kernels"] = {op: c.kernel.name for op, c in net.kernels.items()}
    result["runtime"] = runtime.report(net)
    rows.append(("peak RSS", f"{result['peak_rss_bytes'] / 2**30:.2f} GiB"))
    _print_summary("evaluation", rows)
    if args.json:
        _write_json(args.json, result)
    return 0


def cmd_info(args) -> int:
    from . import runtime, variants

    rep = runtime.report(quick=args.quick)
    choice = variants.select("fp32")
    rep["kernels_chosen_fp32"] = {op: c.kernel.name for op, c in choice.items()}
    if args.json:
        _write_json(args.json, rep)
    print(json.dumps(rep, indent=2, default=str))
    return 0


# ---- ablation, report, comparison -------------------------------------------------------

ABLATE_AXIS_FLAGS = (  # (flag, axis, help)
    ("--engine", "engine", "slide, dense, sampled (baselines from workbench.baselines)"),
    ("--isa", "isa", "auto, scalar, avx2, avx512, avx512_bf16 (or an @emu ISA)"),
    ("--precision", "precision", "fp32, bf16, bf16act"),
    ("--layout", "layout", "output-layer layout rowmajor, transposed; every layer: joined by '/', "
                           "e.g. transposed/rowmajor"),
    ("--placement", "placement", "default, aligned, hugepage, numpy-thp (see below)"),
    ("--threads", "threads", "OpenMP threads (also OMP_NUM_THREADS / OPENBLAS_NUM_THREADS of the worker)"),
    ("--batch-size", "batch_size", "samples per batch"),
    ("--strategy", "strategy", "auto, batched, hogwild"),
    ("--prefetch", "prefetch", "software prefetch distance (0: off)"),
    ("--fuse-update", "fuse_update", "true, false (batched strategy: row_adam kernel, or bwd_rows then adam)"),
    ("--hash-family", "hash_family", "dwta, wta, srp, minhash"),
    ("-K", "K", "hashes per bucket id"),
    ("-L", "L", "number of hash tables"),
    ("--sampling", "sampling", "vanilla, topk, threshold, uniform, exact"),
    ("--update", "update", "sparse, dense"),
    ("--compat", "compat", "false, true (reference bucket-id shift)"),
)

ABLATE_EPILOG = """\
Axis flags take comma-separated lists; the grid is their product (a TOML --grid
file gives [axes] lists, [fixed] config values and [run] settings; flags win).
layout: one value is the output layer's (the input layer stays transposed);
name every layer with '/', e.g. transposed/rowmajor.
placement: default = numpy's allocator with NUMPY_MADVISE_HUGEPAGE=0 (4 KiB
pages: the control); aligned = 64-byte aligned rows, NUMPY_MADVISE_HUGEPAGE=0;
hugepage = 2 MiB-aligned mmap + madvise(MADV_HUGEPAGE) (what was granted is
recorded); numpy-thp = numpy's allocator with numpy's own huge-page advice
(NUMPY_MADVISE_HUGEPAGE=1).
Each point runs in its own worker process; exactly one computes at a time and
rounds are interleaved round-robin (--interleave: live = one long-lived worker
per point, fresh = one process per point and round, none = point after point,
auto = live when all workers fit in half the memory, else fresh).
"""


def cmd_ablate(args) -> int:
    from . import ablate

    grid = ablate.Grid.from_toml(args.grid) if args.grid else ablate.Grid()
    axes = dict(grid.axes)
    for flag, axis, _ in ABLATE_AXIS_FLAGS:
        v = getattr(args, "ax_" + axis, None)
        if v is not None:
            axes[axis] = ablate.split_cli_list(axis, v)
    fixed = dict(grid.fixed)
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        fixed[k] = ablate.parse_fixed_value(k, v)
    for k in list(fixed):
        if k in axes:
            fixed.pop(k)
    run = grid.run.to_dict()
    for key in ("preset", "train", "test", "data_seed", "samples", "warmup", "repeats", "eval_samples",
                "recall_samples", "interleave", "timeout"):
        v = getattr(args, key, None)
        if v is not None:
            run[key] = v
    if args.sim:
        run["sim"] = True
    if args.no_hw:
        run["hw"] = False
    if args.no_model:
        run["model"] = False
    if args.no_triad:
        run["triad"] = False
    if args.skip_invalid:
        run["skip_invalid"] = True
    grid = ablate.Grid(axes=axes, fixed=fixed, run=ablate.RunSettings.from_dict(run))
    if args.dry_run:
        plan = ablate.run(grid, args.out or ".", dry_run=True, log=lambda m: print(m, file=sys.stderr))
        print(f"{len(plan['points'])} point(s), interleave {plan['schedule']['interleave']} "
              f"({plan['schedule']['why']}):")
        for p in plan["points"]:
            print(f"  {p.id}  {p.engine:<7}  {p.short()}  env {p.env}")
        for s in plan["skipped"]:
            print(f"  skipped {s['axes']}: {s['reason']}")
        return 0
    if not args.out:
        raise ConfigError("ablate needs --out DIR (or --dry-run)")
    res = ablate.run(grid, args.out, resume=args.resume, progress=not args.quiet)
    if res.get("interrupted"):
        return 130
    return 1 if res.get("failed") else 0


def cmd_report(args) -> int:
    try:
        from . import report
    except ImportError as e:
        raise ConfigError(f"the report needs workbench.report, which cannot be imported: {e}") from None
    path = report.write_report(args.results_dir, args.out)
    print(path)
    return 0


COMPARE_GRID_KEYS = {"preset": str, "train": str, "test": str, "data_seed": int, "samples": int, "points": int,
                     "eval_samples": int, "methods": str, "recipe": str, "threads": int, "tune": str,
                     "tune_samples": int, "diag_samples": int, "reference": str,
                     "peer_samples": int}


def _compare_grid(args) -> dict:
    """--grid FILE for compare: [compare] settings fill the flags left unset;
    [fixed] holds config values for every method (as --set); [baseline] holds
    baseline keyword arguments (as --baseline-option)."""
    from .config import tomllib

    try:
        with open(args.grid, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"{args.grid}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{args.grid}: invalid TOML: {e}") from None
    bad = sorted(set(doc) - {"compare", "fixed", "baseline"})
    if bad:
        raise ConfigError(f"{args.grid}: unknown table(s) {', '.join(bad)} (valid: [compare], [fixed], [baseline])")
    for k, v in (doc.get("compare") or {}).items():
        if k not in COMPARE_GRID_KEYS:
            raise ConfigError(f"{args.grid}: unknown [compare] key {k!r} (valid: {', '.join(COMPARE_GRID_KEYS)})")
        if isinstance(v, list):
            v = ",".join(map(str, v))
        t = COMPARE_GRID_KEYS[k]
        if (t is int and (isinstance(v, bool) or not isinstance(v, int))) or (t is str and not isinstance(v, str)):
            raise ConfigError(f"{args.grid}: [compare] {k}: expected {t.__name__}, got {v!r}")
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return doc


COMPARE_DEFAULTS = {"data_seed": 0, "samples": 20_000, "points": 8, "eval_samples": 1000,
                    "methods": "slide,dense,sampled", "diag_samples": 200}


def cmd_compare(args) -> int:
    from . import ablate

    doc = _compare_grid(args) if args.grid else {}
    for k, v in COMPARE_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    fixed = {}  # generated data: the preset's suggested hyper-parameters apply first (ablate.Grid)
    for k, v in (doc.get("fixed") or {}).items():
        fixed[k] = ablate.parse_fixed_value(k, v) if not isinstance(v, list) else v
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        fixed[k] = ablate.parse_fixed_value(k, v)
    opts = dict(doc.get("baseline") or {})
    for item in args.baseline_option:
        if "=" not in item:
            raise ConfigError(f"--baseline-option expects KEY=VALUE, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    res = ablate.compare(args.out, preset=args.preset or "amazon670k", train=args.train, test=args.test,
                         data_seed=args.data_seed, samples=args.samples, curve_points=args.points,
                         eval_samples=args.eval_samples, methods=tuple(x.strip() for x in args.methods.split(",")
                                                                       if x.strip()),
                         recipe=args.recipe, threads=args.threads or 0, config=fixed, baseline_options=opts,
                         tune=tuple(x.strip() for x in (args.tune or "").split(",") if x.strip()),
                         tune_samples=args.tune_samples, diag_samples=args.diag_samples, reference=args.reference,
                         peer_samples=args.peer_samples,
                         progress=not args.quiet)
    rows = []
    facts = res.get("data_facts") or {}
    if facts:
        rows.append(("data", f"label prior P@1 {facts['prior_p_at_1']:.4f}, 10-nearest-neighbour P@1 "
                             f"{facts['knn']['p_at_1']:.4f} (on {facts['knn']['n']:,} test points)"))
    for r in res["records"] + res["baselines"]:
        last = r["curve"][-1]
        lsh = f", LSH inference {last['p_at_1_lsh']:.4f}" if last.get("p_at_1_lsh") is not None else ""
        rows.append((r.get("label", r.get("method")), f"P@1 {last['p_at_1']:.4f}{lsh} after {last['samples']:,} "
                                                      f"samples, {last['seconds']:.1f}s training "
                                                      f"({r.get('samples_per_s') or 0:,.0f} samples/s)"))
    for name, t in (res.get("tuning") or {}).items():
        rows.append((f"tuned {name}", f"{t['chosen']} (best of {len(t['trials'])} settings after "
                                      f"{t['samples']:,} samples each)"))
    hl = res.get("headline") or {}
    if hl:
        rows.append(("target", f"P@1 {hl['target_p_at_1']:.4f} (final P@1 of {hl['reference']})"))
        for name, m in hl["methods"].items():
            t = m.get("seconds_to_target")
            text = f"{t:.1f}s" if t is not None else "not reached"
            if m.get("speedup"):
                text += f" ({m['speedup']:.2f}x)"
            if "seconds_to_target_lsh" in m:
                tl = m.get("seconds_to_target_lsh")
                text += f"; LSH inference: {f'{tl:.1f}s' if tl is not None else 'not reached'}"
            rows.append((f"time to target: {name}", text))
    for f in res["failed"]:
        rows.append((f["method"], f"failed: {f['error']}"))
    if rows:
        _print_summary("compare", rows)
    print(f"results: {os.path.join(args.out, 'results.json')}; figure: "
          f"{', '.join(res.get('figures') or []) or 'none'}")
    if res.get("interrupted"):
        return 130
    return 1 if res["failed"] else 0


def cmd_diagnose(args) -> int:
    """Why the output layer's tables find or miss what matters (workbench.diagnose)."""
    from . import diagnose
    from .network import Network

    overrides = {} if args.threads is None else {"threads": args.threads}
    net = Network.load(args.model, overrides=overrides)
    if args.preset is None and not args.test:
        args.preset = "amazon670k"
    test = _load_data(args, "test", args.eval_samples)
    net.check_data(test)
    if not net.layers[-1].lsh:
        raise ConfigError(f"{args.model}: the output layer is not LSH-sampled: nothing to diagnose")
    d = diagnose.diagnose(net, test, samples=args.samples, fresh=not args.no_fresh)
    t, w, r = d.get("tables", {}), d.get("weights", {}), d.get("retrieval", {})
    g, h, f = d.get("geometry", {}), d.get("hubs", {}), d.get("fresh", {})
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    rows = [("model", f"{args.model}: {net.samples_seen:,} samples seen, {net.config.hash_family} K={net.config.K} "
                      f"L={net.config.L}, sampling {net.config.sampling}"),
            ("tables", f"{pct(t.get('stored_fraction'))} of (neuron, table) pairs stored, "
                       f"{t.get('occupied_buckets', 0):,.0f} buckets in use per table"),
            ("weight rows", f"|mean row| / mean |row| = {w.get('common_ratio', 0):.2f}, mean cosine with the mean "
                            f"row {w.get('cos_with_mean_row', 0):.2f}; bias std {w.get('bias_std', 0):.3g}")]
    if r:
        ceil = r.get("exact_topk_label_recall") or {}
        rows += [("retrieval", f"label recall {pct(r.get('label_recall'))} (exact top-100: "
                               f"{pct(ceil.get('100'))}, top-1000: {pct(ceil.get('1000'))}); exact top-1 "
                               f"{pct(r.get('top1_recall'))}, top-5 {pct(r.get('top5_recall'))}; "
                               f"{r.get('candidates', 0):,.0f} candidates per sample")]
    if g.get("cos_label"):
        rows.append(("geometry", f"cos(h, w_label) {g['cos_label']['mean']:.2f} (centred "
                                 f"{g['cos_label_centred']['mean']:.2f}) against random neurons "
                                 f"{g['cos_random']['mean']:.2f} ({g['cos_random_centred']['mean']:.2f})"))
    if h:
        rows.append(("hubs", f"neuron {h['hub']} is dense inference's top-1 for {pct(h['hub_share'])} of the "
                             f"samples ({h['distinct_top1']} distinct); a true label there {pct(h['hub_is_label'])}, "
                             f"retrieved by the tables {pct(h.get('hub_retrieved'))}"))
    if f:
        rows.append(("fresh tables", f"label recall {pct(f.get('label_recall'))}, top-5 {pct(f.get('top5_recall'))}"
                                     f" (drift since the last rehash: {pct(f.get('drift'))})"))
    _print_summary("LSH diagnosis", rows)
    if args.json:
        _write_json(args.json, {"command": "diagnose", "model": args.model, **d})
    return 0


def cmd_recipes(args) -> int:
    """Print each recipe (or the one named) resolved for a data set's shape."""
    from . import recipes, synthetic
    from .data import load_xc

    if args.train:
        n_labels, where = load_xc(args.train, cache=True).n_labels, args.train
    else:
        preset = args.preset or "amazon670k"
        n_labels, where = synthetic.get_preset(preset).n_labels, f"preset {preset}"
    out = {}
    for name in ([args.name] if args.name else recipes.names()):
        vals, src = recipes.resolve(name, n_labels=n_labels, preset=None if args.train else (args.preset or
                                                                                               "amazon670k"))
        cfg = Config.from_dict(dict(vals, n_labels=n_labels))
        out[name] = {"summary": recipes.get(name).summary, "values": vals, "sources": src,
                     "resolved": {k: getattr(cfg, k) for k in _RECIPE_SHOWN}}
        if not args.json:
            print(recipes.describe(name))
            print(f"  for {where} ({n_labels:,} labels): "
                  + ", ".join(f"{k}={_show(getattr(cfg, k))}" for k in _RECIPE_SHOWN))
    if args.json:
        print(json.dumps(out, indent=2, default=list))
    return 0


_RECIPE_SHOWN = ("hash_family", "K", "L", "range_pow", "bucket_size", "bucket_policy", "sampling", "top_k",
                 "min_active", "batch_labels", "compat", "lr", "batch_size", "rehash", "rebuild", "hash_center",
                 "rehash_drift")


# ---- parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slide-workbench", description="SLIDE on CPUs: train, evaluate, measure.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a synthetic data set in the XC text format")
    g.add_argument("--preset", default="amazon670k", help="amazon670k, delicious200k, medium, small, tiny")
    g.add_argument("--out", required=True, help="output prefix: writes PREFIX_train.txt and PREFIX_test.txt")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--train-samples", type=int, default=None, help="first N training points only")
    g.add_argument("--test-samples", type=int, default=None, help="first N test points only")
    g.set_defaults(func=cmd_generate)

    def data_flags(q, train=True):
        if train:
            q.add_argument("--train", metavar="FILE", help="training data (XC text format)")
        q.add_argument("--test", metavar="FILE", help="test data (XC text format)")
        q.add_argument("--preset", default=None, help="generated data set (default amazon670k)")
        q.add_argument("--data-seed", type=int, default=0, help="seed of the generated data")
        q.add_argument("--no-cache", action="store_true", help="do not read or write the binary cache")
        q.add_argument("--eval-samples", type=int, default=2000,
                       help="evaluate on the first N test points (default 2000)")

    t = sub.add_parser("train", help="train a network")
    data_flags(t)
    t.add_argument("--config", metavar="TOML", help="TOML file: hyper-parameters (top level or [train]), "
                                                    "run settings under [run]; flags override it")
    t.add_argument("--epochs", type=float, default=None, help="passes over the training data (default 1)")
    t.add_argument("--max-samples", type=int, default=None, help="stop after N training samples")
    t.add_argument("--eval-mode", default="dense,lsh", help="dense, lsh or both (comma-separated)")
    t.add_argument("--no-eval", action="store_true", help="skip evaluation")
    t.add_argument("--save", metavar="PATH", help="write a checkpoint at the end (and on SIGINT/SIGTERM)")
    t.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="also write the --save checkpoint every N training samples")
    t.add_argument("--resume", metavar="PATH", help="continue from a checkpoint (an interrupted run finishes "
                                                    "what it was asked to do)")
    t.add_argument("--dry-run", action="store_true", help="print the memory estimate and exit")
    t.add_argument("--recipe", default=None, metavar="NAME",
                   help="a named set of settings, resolved for the data's shape: best (default: the measured "
                        "recommendation) or reference (the SLIDE paper's algorithm and hyper-parameters); flags "
                        "and --config values override it (see: slide-workbench recipes)")
    t.add_argument("--json", metavar="PATH", help="write the result as JSON")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint")
    e.add_argument("--model", required=True, metavar="PATH", help="checkpoint written by train --save")
    data_flags(e, train=False)
    e.add_argument("--mode", default="dense,lsh", help="dense, lsh or both (comma-separated)")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--json", metavar="PATH", help="write the result as JSON")
    e.set_defaults(func=cmd_eval)

    dg = sub.add_parser("diagnose", help="why the hash tables find or miss the neurons that matter (a checkpoint)")
    dg.add_argument("--model", required=True, metavar="PATH", help="checkpoint written by train --save")
    data_flags(dg, train=False)
    dg.add_argument("--samples", type=int, default=500, help="labelled test points to query (default 500)")
    dg.add_argument("--no-fresh", action="store_true", help="skip the comparison with freshly rebuilt tables")
    dg.add_argument("--threads", type=int, default=None)
    dg.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    dg.set_defaults(func=cmd_diagnose)

    i = sub.add_parser("info", help="print the runtime report")
    i.add_argument("--json", metavar="PATH", help="also write it as JSON")
    i.add_argument("--quick", action="store_true", help="skip the CPU brand/cache probe (py-cpuinfo)")
    i.set_defaults(func=cmd_info)

    a = sub.add_parser("ablate", help="measure a grid of kernel / algorithm settings in isolated workers",
                       epilog=ABLATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--grid", metavar="TOML", help="grid file: [axes] lists, [fixed] config values, [run] settings")
    a.add_argument("--out", metavar="DIR", help="results directory (results.json, results.csv, logs/, data/)")
    a.add_argument("--resume", action="store_true", help="continue the results in --out: finished points are "
                                                         "kept, partial points continue")
    a.add_argument("--dry-run", action="store_true", help="list the points and the schedule, run nothing")
    ax = a.add_argument_group("axes (comma-separated lists)")
    for flag, axis, hlp in ABLATE_AXIS_FLAGS:
        ax.add_argument(flag, dest="ax_" + axis, default=None, metavar="LIST", help=hlp)
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed config value for every point, e.g. lr=1e-3 or hidden=256/128 (repeatable)")
    r = a.add_argument_group("run settings (default: the grid file's [run], else as shown)")
    r.add_argument("--train", metavar="FILE", default=None, help="training data (XC text format)")
    r.add_argument("--test", metavar="FILE", default=None, help="test data (XC text format)")
    r.add_argument("--preset", default=None, help="generated data set (default amazon670k)")
    r.add_argument("--data-seed", type=int, default=None)
    r.add_argument("--samples", type=int, default=None, help="samples per timed round (default 4096)")
    r.add_argument("--warmup", type=int, default=None, help="warm-up samples before the first round (default 1024)")
    r.add_argument("--repeats", type=int, default=None, help="timed rounds per point (default 3)")
    r.add_argument("--eval-samples", type=int, default=None, help="test points for P@k after training (default 1000)")
    r.add_argument("--recall-samples", type=int, default=None,
                   help="test points for the LSH recall against exact top-5 (default 200)")
    r.add_argument("--interleave", choices=("auto", "live", "fresh", "none"), default=None,
                   help="worker scheduling (see below; default auto)")
    r.add_argument("--timeout", type=float, default=None, help="seconds a worker may take per step (default 3600)")
    r.add_argument("--sim", action="store_true", help="also simulate the output-layer forward kernel with "
                                                      "cachegrind (slow)")
    r.add_argument("--no-hw", action="store_true", help="no hardware counters around the last round")
    r.add_argument("--no-model", action="store_true", help="no access-pattern model (bytes, lines, pages)")
    r.add_argument("--no-triad", action="store_true", help="do not measure the memory-bandwidth triad")
    r.add_argument("--skip-invalid", action="store_true", help="skip points this machine or build cannot run "
                                                               "(recorded under 'skipped') instead of failing")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_ablate)

    rc = sub.add_parser("recipes", help="show the recipes (named settings) resolved for a data set's shape")
    rc.add_argument("name", nargs="?", default=None, help="one recipe (default: all)")
    rc.add_argument("--preset", default=None, help="generated data set (default amazon670k)")
    rc.add_argument("--train", metavar="FILE", help="a data file (its header gives the label count)")
    rc.add_argument("--json", action="store_true", help="print JSON")
    rc.set_defaults(func=cmd_recipes)

    rp = sub.add_parser("report", help="write report.md / report.html from a results directory")
    rp.add_argument("results_dir", metavar="RESULTS_DIR", help="directory holding results.json (or results.csv)")
    rp.add_argument("--out", default=None, help="output directory or .md path (default RESULTS_DIR/report.md)")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="train SLIDE, dense and sampled softmax on the same data; learning curves")
    c.add_argument("--out", required=True, metavar="DIR", help="results directory (results.json, figures/)")
    c.add_argument("--grid", metavar="TOML", help="settings file: [compare] (these flags), [fixed] (as --set), "
                                                  "[baseline] (as --baseline-option); flags win")
    c.add_argument("--train", metavar="FILE", help="training data (XC text format)")
    c.add_argument("--test", metavar="FILE", help="test data (XC text format)")
    c.add_argument("--preset", default=None, help="generated data set (default amazon670k)")
    c.add_argument("--data-seed", type=int, default=None, help="seed of the generated data (default 0)")
    c.add_argument("--samples", type=int, default=None, help="training samples per method (default 20000)")
    c.add_argument("--points", type=int, default=None, help="evaluations along the way (default 8)")
    c.add_argument("--eval-samples", type=int, default=None, help="test points per evaluation (default 1000)")
    c.add_argument("--methods", default=None,
                   help="comma-separated: slide (the --recipe), slide:reference, slide:best, dense, sampled, "
                        "torch_dense, torch_sampled (PyTorch), plt (napkinXC label tree: pip install -e '.[peers]')")
    c.add_argument("--recipe", default=None, metavar="NAME", help="recipe of the plain 'slide' method (default best)")
    c.add_argument("--tune", default=None, metavar="METHODS",
                   help="methods whose learning rate (sampled softmax: and negative count) a sweep chooses first, "
                        "e.g. sampled or sampled,slide")
    c.add_argument("--tune-samples", type=int, default=None, metavar="N",
                   help="training samples per sweep setting (default: one epoch, at most --samples)")
    c.add_argument("--peer-samples", type=int, default=None, metavar="N",
                   help="training samples for the label tree (plt; default: --samples): one offline pass, "
                        "which on a large set can outlast every other method together")
    c.add_argument("--diag-samples", type=int, default=None, metavar="N",
                   help="test points for SLIDE's table diagnostics at every evaluation (0: none)")
    c.add_argument("--reference", default=None, metavar="METHOD",
                   help="the method whose final P@1 is the time-to-accuracy target (default: the sampled softmax)")
    c.add_argument("--threads", type=int, default=None, help="threads of every method (default: all)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config value for every method (e.g. lr=1e-3, batch_size=256; repeatable)")
    c.add_argument("--baseline-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of the baseline classes, e.g. n_negatives=2000 (repeatable; "
                        "a wrong name is refused with the valid ones)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compare)
    return p


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataFormatError
    from .network import DataMismatchError, NumericalError
    from .resources import MemoryLimitError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed its usage error (or --help/--version)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    try:
        return args.func(args)
    except NumericalError as e:  # before ValueError: a checkpoint holding NaN is both
        print(f"slide-workbench: error: {e}", file=sys.stderr)
        return 3
    except (DataFormatError, ConfigError, CheckpointError, DataMismatchError, ValueError) as e:
        print(f"slide-workbench: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryLimitError as e:
        print(f"slide-workbench: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"slide-workbench: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("slide-workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
