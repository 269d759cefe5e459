"""`ganbench run | worker | train | list | plugins | leaderboard | report | compare | env`.

Every user error (GanbenchError) is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .api import GanbenchError

RESULTS_DIR = Path(os.environ.get("GANBENCH_RESULTS", "results"))


def plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="PLUGIN",
                        help="load a plugin module by import path; -p no:NAME blocks plugin NAME")


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GanbenchError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# -- train --------------------------------------------------------------------------------------

def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="run one trial: train, evaluate, save a record and a sample grid")
    plugin_option(p)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--arch", default="dcgan")
    p.add_argument("--loss", default="nonsaturating")
    p.add_argument("--schedule", default="alternating")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core); small models "
                   "train fastest on 1, and on a busy machine extra threads spin-wait and can be many times slower")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting: batch_size=128, loss.gp_weight=5, arch.spectral_norm=true ...")
    p.add_argument("--inception-weights", metavar="PATH", help="InceptionV3 weights file for true FID")
    p.add_argument("--output", type=Path, help="output folder (default results/train/<trial>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .console import console, progress_bar, trial_summary
    from .plots import save_samples
    from .plugins import get_plugin_manager
    from .spec import TrialSpec
    from .trainer import train

    _inception_env(args)
    if args.threads is not None:
        if args.threads < 1:
            raise GanbenchError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    pm = get_plugin_manager(args.plugins)
    spec = TrialSpec(dataset=args.dataset, arch=args.arch, loss=args.loss, schedule=args.schedule,
                     steps=args.steps, seed=args.seed).with_overrides(parse_assignments(args.overrides))
    spec = spec.validated(pm)
    _warn_broken(pm)  # after validation: a run that needs the broken plugin fails in one line above
    out = args.output or RESULTS_DIR / "train" / f"{spec.dataset}-{spec.arch}-{spec.loss}-{spec.schedule}-s{spec.seed}-{spec.key()}"
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # before training: an unwritable --output fails now, not after it
    try:
        with progress_bar(spec.steps, f"{spec.loss} on {spec.dataset}", disable=args.quiet) as advance:
            record = train(spec, args.device, pm, progress=advance)
    except BaseException:
        if made and not any(out.iterdir()):
            out.rmdir()  # a run that never started leaves no empty folder behind
        raise
    (out / "record.json").write_text(json.dumps(record, indent=1, default=float))
    samples = record.get("samples") or {}
    if samples.get("values"):
        import torch

        from .api import DataSpec
        dataset = pm.registries["dataset"].create(spec.dataset, dict(spec.dataset_params))
        save_samples(torch.tensor(samples["values"]), DataSpec(samples["kind"], tuple(samples["shape"])),
                     out / "samples.png", modes=dataset.modes, title=spec.config_label())
    trial_summary(record)
    console.print(f"record: {out / 'record.json'}\nsamples: {out / 'samples.png'}")
    return 0 if record["status"] != "failed" else 1


def _inception_env(args: argparse.Namespace) -> None:
    weights = getattr(args, "inception_weights", None)
    if weights:
        if not Path(weights).is_file():
            raise GanbenchError(f"--inception-weights: no such file {weights}")
        os.environ["GANBENCH_INCEPTION_WEIGHTS"] = str(Path(weights).resolve())


# -- list / plugins / env -----------------------------------------------------------------------

KIND_ALIASES = {"architectures": "architecture", "archs": "architecture", "arch": "architecture",
                "losses": "loss", "schedules": "schedule", "datasets": "dataset", "metrics": "metric"}


def _add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="list components: name, kind, parameters with defaults, plugin")
    plugin_option(p)
    p.add_argument("kind", nargs="?", help="architecture | loss | schedule | dataset | metric")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from .console import component_table, console
    from .plugins import get_plugin_manager
    from .registry import KINDS

    kinds = list(KINDS)
    if args.kind:
        kind = KIND_ALIASES.get(args.kind, args.kind)
        if kind not in KINDS:
            raise GanbenchError(f"unknown component kind {args.kind!r}; choose from: {', '.join(KINDS)}")
        kinds = [kind]
    pm = get_plugin_manager(args.plugins)
    components = [c for k in kinds for c in pm.registries[k]]
    if args.json:
        print(json.dumps([{"kind": c.kind, "name": c.name, "plugin": c.provider, "description": c.description,
                           "params": {p.name: p.default for p in c.params.values()}} for c in components],
                         indent=1, default=str))
    else:
        console.print(component_table(components))
    _warn_broken(pm)
    return 0


def _warn_broken(pm: Any) -> None:
    for name, error in pm.broken.items():
        print(f"ganbench: warning: plugin {name!r} failed to load: {error}", file=sys.stderr)


def _add_plugins(sub: Any) -> None:
    p = sub.add_parser("plugins", help="loaded plugins with versions and what each provides")
    plugin_option(p)
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .console import console, plugin_table
    from .plugins import get_plugin_manager

    pm = get_plugin_manager(args.plugins)
    console.print(plugin_table(pm))
    return 0


def _add_env(sub: Any) -> None:
    p = sub.add_parser("env", help="versions, devices, cache and weights locations")
    p.set_defaults(func=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    import torch

    from .environment import environment

    info = environment(torch.device("cpu"))
    info["cuda_devices"] = torch.cuda.device_count()
    info["cache_dir"] = os.environ.get("GANBENCH_CACHE", str(Path.home() / ".cache" / "ganbench"))
    info["inception_weights"] = os.environ.get("GANBENCH_INCEPTION_WEIGHTS", "(not set: domain extractors are used)")
    info["results_dir"] = str(RESULTS_DIR)
    for key, value in info.items():
        print(f"{key:18} {value}")
    return 0


# -- entry point --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__, compare, leaderboard, report, runner

    parser = argparse.ArgumentParser(prog="ganbench", description="Benchmark GAN losses, architectures and schedules.")
    parser.add_argument("--version", action="version", version=f"ganbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runner.register_cli(sub)
    _add_train(sub)
    _add_list(sub)
    _add_plugins(sub)
    leaderboard.register_cli(sub)
    report.register_cli(sub)
    compare.register_cli(sub)
    _add_env(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GanbenchError as exc:
        print(f"ganbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable or missing results folder, a full disk: the user's to fix
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in str(exc) else ""
        print(f"ganbench: error: {exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted; results written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
