"""`ganbench run` and `ganbench worker`: launch worker processes on the devices there are, show
live progress, export the results and print the ranking.

Workers are separate processes (`python -m ganbench worker ...`), the same command a user runs on
another machine to join a study, so local and distributed sweeps share one code path. GPU workers
are pinned through CUDA_VISIBLE_DEVICES; CPU workers divide the cores' threads between them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from .api import GanbenchError


def register_cli(sub: Any) -> None:
    from .cli import plugin_option

    p = sub.add_parser("run", help="run a sweep: every grid point (--grid) or a TPE search (--trials N)")
    plugin_option(p)
    p.add_argument("--grid", action="store_true", help="run every grid point exactly once (else TPE search)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, help="sweep config TOML file")
    src.add_argument("--sweep", help="a sweep shipped with ganbench (default: 'default')")
    p.add_argument("--study", help="study name (default: the config's name)")
    p.add_argument("--storage", help="Optuna RDB URL (postgresql://...) or journal file (default results/<study>/study.journal)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per GPU, else one per CPU core); "
                   "0: only create or resume the study and queue its points, for `ganbench worker` elsewhere")
    p.add_argument("--devices", help="comma-separated devices, e.g. cuda:0,cuda:1 or cpu")
    p.add_argument("--trials", type=int, default=20, help="trial budget for TPE search (without --grid)")
    p.add_argument("--rerun-failed", action="store_true", help="run failed grid points again")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trial setting for every point: steps=200, loss.gp_weight=5 ...")
    p.add_argument("--inception-weights", metavar="PATH", help="InceptionV3 weights file for true FID")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.set_defaults(func=cmd_run)

    w = sub.add_parser("worker", help="join an existing study and run its trials (any machine)")
    w.add_argument("--study", required=True)
    w.add_argument("--storage", help="the study's storage (default results/<study>/study.journal)")
    w.add_argument("--device", help="device for this worker (default: cuda if present, else cpu)")
    w.add_argument("--threads", type=int, help="torch threads for this worker")
    w.set_defaults(func=cmd_worker)


# -- ganbench run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from .store import storage_guard

    # an RDB server lost mid-command (not at its start: open_storage covers that) is one line too
    with storage_guard(args.storage or "the local file storage"):
        return _run_sweep(args)


def _run_sweep(args: argparse.Namespace) -> int:
    from .cli import _inception_env, _warn_broken, parse_assignments
    from .config import load_config
    from .plugins import get_plugin_manager
    from .store import default_storage, redact, study_dir
    from .sweep import create_study

    _inception_env(args)
    config = load_config(args.config, args.sweep)
    plugins = tuple(dict.fromkeys([*config.plugins, *args.plugins]))
    config = type(config)(**{**config.__dict__, "plugins": plugins})
    pm = get_plugin_manager(plugins)
    overrides = parse_assignments(args.overrides)
    study_name = args.study or config.name
    study_dir(study_name)  # a valid folder name, also where an RDB study's exports and logs go
    storage = args.storage or default_storage(study_name)
    if args.trials < 1:
        raise GanbenchError("--trials must be >= 1")
    study = create_study(config, pm, study_name, storage, grid=args.grid, overrides=overrides,
                         n_trials=args.trials, rerun_failed=args.rerun_failed)
    _warn_broken(pm)  # after validation, so a sweep that needs the broken plugin fails in one line
    total = len(study.user_attrs["ganbench_sweep"]["points"]) if args.grid else args.trials
    if args.workers == 0:
        print(f"study {study_name!r} ready: {total} {'points' if args.grid else 'trials'} in {redact(storage)}; "
              f"join it with: ganbench worker --study {study_name} --storage {redact(storage)}")
        return 0
    workers = plan_workers(args.workers, args.devices, total)
    started = time.time()
    if _needs_work(study, args.grid, total):
        procs = launch(study_name, storage, workers)
        try:
            with _forward_sigterm(procs):
                monitor(study, total, procs, started, quiet=args.quiet)
        except KeyboardInterrupt:
            _stop(procs)
            raise
    return conclude(study_name, storage, study, total, started, plugins)


@contextlib.contextmanager
def _forward_sigterm(procs: list[subprocess.Popen]):
    """A terminated `ganbench run` stops its workers too (their running trials are rerun on
    resume); without this they would run on as orphans."""
    def handler(signum, frame):
        _stop(procs)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _needs_work(study: optuna.Study, grid: bool, total: int) -> bool:
    from .sweep import sweep_state

    state = sweep_state(study, total)
    return state.waiting > 0 or state.running > 0 if grid else state.finished < total


def plan_workers(count: int | None, devices: str | None, total: int) -> list[tuple[str, int | None]]:
    """[(device, threads)] for each worker process."""
    import torch

    if count is not None and count < 0:
        raise GanbenchError("--workers must be >= 0")
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
    elif torch.cuda.is_available():
        names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        names = ["cpu"]
    for name in names:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise GanbenchError(f"device {name} requested but CUDA is not available here")
        if not (name == "cpu" or name.startswith("cuda")):
            raise GanbenchError(f"unknown device {name!r}; use cpu or cuda:N")
    if count is None:
        count = len(names) if names != ["cpu"] else cpu_cores()
    count = max(1, min(count, total))
    threads = max(1, cpu_cores() // count)
    return [(names[i % len(names)], threads if names[i % len(names)] == "cpu" else None) for i in range(count)]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def launch(study: str, storage: str, workers: list[tuple[str, int | None]]) -> list[subprocess.Popen]:
    from .store import study_dir

    log_dir = study_dir(study) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (device, threads) in enumerate(workers):
        env = dict(os.environ)
        cmd = [sys.executable, "-m", "ganbench", "worker", "--study", study, "--storage", storage]
        if device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":")[1] if ":" in device else "0"
            cmd += ["--device", "cuda:0"]
        else:
            cmd += ["--device", "cpu", "--threads", str(threads)]
            # numpy's BLAS (torch-fidelity's KID, scipy's sqrtm) must share the cores too: spinning
            # BLAS threads of one worker slow every other worker down
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        log = open(log_dir / f"worker-{i}.log", "a")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def monitor(study: optuna.Study, total: int, procs: list[subprocess.Popen], started: float, quiet: bool) -> None:
    from rich.live import Live

    from .console import console, progress_table
    from .store import STORAGE_ERRORS
    from .sweep import sweep_state

    shown = [None]

    def view():
        try:
            shown[0] = progress_table(sweep_state(study, total), started, len(procs))
        except STORAGE_ERRORS:  # the server is away: workers wait for it, the display keeps its last view
            pass
        return shown[0]

    if quiet:
        for p in procs:
            p.wait()
    else:
        with Live(view(), console=console, refresh_per_second=2) as live:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                live.update(view())
        if not console.is_terminal:
            console.line()  # piped, Live leaves its last frame without a newline: keep the next table apart
    for i, p in enumerate(procs):
        if p.returncode != 0:
            print(f"ganbench: worker {i} exited with status {p.returncode} (see its log under results/<study>/logs/)",
                  file=sys.stderr)


def conclude(study_name: str, storage: str, study: optuna.Study, total: int, started: float,
             plugins: tuple[str, ...] = ()) -> int:
    from .console import console, ranking_table
    from .store import export_records, redact, trial_records
    from .sweep import sweep_state

    from .plugins import get_plugin_manager

    records = trial_records(study.get_trials(deepcopy=False))
    path = export_records(study_name, records)
    get_plugin_manager(plugins).notify("ganbench_sweep_finish", study_name=study_name, records=records)
    state = sweep_state(study, total)
    console.print(ranking_table(records, study_name))
    console.print(f"{state.completed} completed, {state.failed} failed of {total}; "
                  f"{time.time() - started:.0f}s; records: {path}; storage: {redact(storage)}")
    if state.waiting or state.running:
        console.print(f"[yellow]{state.waiting + state.running} trials not finished: rerun the same command to resume[/yellow]")
        return 1
    return 0


# -- ganbench worker ------------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    from .store import storage_guard

    with storage_guard(args.storage or "the local file storage"):
        return _work(args)


def _work(args: argparse.Namespace) -> int:
    import torch

    from .config import SweepConfig
    from .plugins import get_plugin_manager
    from .store import default_storage, load_study
    from .sweep import SWEEP_ATTR, grid_worker, search_worker

    if args.threads:
        torch.set_num_threads(args.threads)
    storage = args.storage or default_storage(args.study)
    study = load_study(args.study, storage)
    sweep = study.user_attrs.get(SWEEP_ATTR)
    if sweep is None:
        raise GanbenchError(f"study {args.study!r} is not a ganbench sweep")
    config = SweepConfig.from_dict(sweep["config"])
    pm = get_plugin_manager(config.plugins)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if sweep["grid"]:
        specs = config.grid_specs(pm, sweep["overrides"])
        ran = grid_worker(study, device, pm, specs)
    else:
        sampler = optuna.samplers.TPESampler(seed=None)
        study = optuna.load_study(study_name=args.study, storage=study._storage, sampler=sampler,
                                  pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
        ran = search_worker(study, device, pm, config, sweep["overrides"], sweep["n_trials"])
    print(f"worker {os.getpid()} on {device}: ran {ran} trials")
    return 0
