"""The sweep runner: an Optuna study of trials, run by worker processes on the devices there are.

Grid mode runs every grid point exactly once. Points are enqueued as WAITING trials (never left to
GridSampler's random pick); a worker claims one with the storage's atomic WAITING -> RUNNING
transition, then checks that no other trial of the same point is running or complete (two
concurrent resumes may enqueue a point twice: the later claim yields). A worker that dies leaves
its trial RUNNING without a record; it is detected by a dead pid on this host, a stale heartbeat
(Optuna's own on RDB storages, so workers on other machines are covered) or, when it died before
marking the trial as its own, the trial's age; it is failed and its point enqueued again. A trial
that raises is recorded as failed with its reason and is only rerun with ``--rerun-failed``.
An RDB server that goes away is waited for (GANBENCH_STORAGE_PATIENCE seconds): trials finishing
meanwhile keep their results; after that, workers stop with one line and a rerun resumes.

Search mode (no ``--grid``) samples the grid axes as categories and the ``[search]`` ranges with
TPE for ``--trials N``, pruning on the intermediate primary metric.
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from .api import GanbenchError
from .config import SweepConfig, apply_point
from .spec import TrialSpec
from .store import (GRACE_PERIOD, HEARTBEAT_INTERVAL, POINT_ATTR, RECORD_ATTR, SPEC_ATTR,
                    objective_value, open_storage, retrying)

SWEEP_ATTR = "ganbench_sweep"  # study attr: the config, overrides, mode and point keys
# Names this machine in the "worker" attr (host:pid), for the dead-pid check. Machines that share a
# host name (containers started with the same --hostname) must set GANBENCH_WORKER_HOST to tell
# them apart, else one would judge the other's pids.
HOST = os.environ.get("GANBENCH_WORKER_HOST") or socket.gethostname()


@dataclass(frozen=True)
class SweepState:
    """Where a study stands, from one read of its trials."""

    total: int
    completed: int
    failed: int
    running: int
    waiting: int
    best: tuple[float, str] | None

    @property
    def finished(self) -> int:
        return self.completed + self.failed


# -- study set-up ---------------------------------------------------------------------------------

def create_study(config: SweepConfig, pm: Any, study_name: str, storage: str, *, grid: bool,
                 overrides: dict[str, Any], n_trials: int = 0, rerun_failed: bool = False) -> optuna.Study:
    """Validate the whole sweep, create or resume its study, and enqueue the points still to run."""
    specs = config.grid_specs(pm, overrides)
    check_compatibility(specs, pm)
    if not grid:
        config.check_search(pm, overrides)
    direction = "minimize" if primary_direction(specs[0], pm) else "maximize"
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage),
                                direction=direction, load_if_exists=True)
    sweep = {"config": config.to_dict(), "overrides": dict(overrides), "grid": grid,
             "n_trials": n_trials, "points": [s.key() for s in specs]}
    previous = study.user_attrs.get(SWEEP_ATTR)
    if previous is not None and previous["points"] != sweep["points"]:
        raise GanbenchError(f"study {study_name!r} already exists with a different sweep; "
                            f"choose another --study name or delete its storage ({storage})")
    if previous is not None and previous["grid"] != grid:
        kind, flag = ("a grid sweep", "with") if previous["grid"] else ("a TPE search", "without")
        raise GanbenchError(f"study {study_name!r} is {kind}: rerun it {flag} --grid, or choose another --study name")
    if previous is None or (not grid and previous["n_trials"] != n_trials):
        study.set_user_attr(SWEEP_ATTR, sweep)  # a search resumed with another --trials gets that budget
    if grid:
        reap_dead_trials(study)
        enqueue_missing(study, specs, rerun_failed=rerun_failed)
    return study


def check_compatibility(specs: list[TrialSpec], pm: Any) -> None:
    """Every (dataset, architecture) pair is checked once, before anything trains."""
    from .builtin.architectures import check_compatible

    datasets: dict[str, Any] = {}
    for spec in specs:
        key = f"{spec.dataset}{sorted(spec.dataset_params.items())}"
        if key not in datasets:
            datasets[key] = pm.registries["dataset"].create(spec.dataset, dict(spec.dataset_params))
        check_compatible(pm.registries["architecture"].get(spec.arch), datasets[key].spec, dataset=spec.dataset)


def primary_direction(spec: TrialSpec, pm: Any) -> bool:
    """True when the primary metric of this spec's evaluation is lower-is-better."""
    names = spec.metrics or pm.registries["dataset"].create(spec.dataset, dict(spec.dataset_params)).default_metrics
    metric = pm.registries["metric"].create(names[0], dict(spec.metric_params.get(names[0], {})))
    return bool(dict(metric.lower_is_better).get(metric.primary, True))


def point_trials(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if POINT_ATTR in t.user_attrs:
            out.setdefault(t.user_attrs[POINT_ATTR], []).append(t)
    return out


def point_is_settled(trials: list[FrozenTrial], rerun_failed: bool) -> bool:
    """Done, queued, running, or failed with a recorded reason (unless failures are rerun)."""
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING):
            return True
        if t.state == TrialState.FAIL and RECORD_ATTR in t.user_attrs and not rerun_failed:
            return True
    return False


def enqueue_missing(study: optuna.Study, specs: list[TrialSpec], *, rerun_failed: bool = False) -> int:
    by_point = point_trials(study.get_trials(deepcopy=False))
    added = 0
    for spec in specs:
        trials = by_point.get(spec.key(), [])
        if not point_is_settled(trials, rerun_failed):
            study.enqueue_trial({}, user_attrs={POINT_ATTR: spec.key(), SPEC_ATTR: spec.to_dict()})
            added += 1
    return added


# -- dead workers ---------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead(trial: FrozenTrial, now: float) -> bool:
    owner = trial.user_attrs.get("worker")
    if owner is None:  # claimed, but its worker never got to mark it (claim() does so at once)
        started = trial.datetime_start
        return started is not None and now - started.timestamp() > GRACE_PERIOD
    host, _, pid = owner.rpartition(":")
    if host == HOST and pid.isdigit() and not _pid_alive(int(pid)):
        return True
    beat = trial.user_attrs.get("heartbeat")
    return beat is not None and now - float(beat) > GRACE_PERIOD


def settle_recorded(study: optuna.Study) -> None:
    """Give RUNNING trials that hold a record the state their record says: the storage went away
    between finish()'s two writes. The trial ran to its end; failing it would lose the result."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if RECORD_ATTR in t.user_attrs:
            try:
                set_final_state(study._storage, t._trial_id, t.user_attrs[RECORD_ATTR])
            except UpdateFinishedTrialError:
                pass  # its worker got there first


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker is gone, so their points can be enqueued again."""
    settle_recorded(study)
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; it is what RDB workers rely on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat, on storages that have one
    storage, now, reaped = study._storage, time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _is_dead(t, now):
            try:
                reaped += bool(storage.set_trial_state_values(t._trial_id, TrialState.FAIL))
            except UpdateFinishedTrialError:
                pass
    return reaped


class Heartbeat:
    """Marks a running trial alive every few seconds: Optuna's heartbeat where the storage has
    one (RDB), a timestamp attribute otherwise."""

    def __init__(self, study: optuna.Study, trial_id: int):
        self.storage, self.trial_id = study._storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                beat(self.storage, self.trial_id)
            except Exception:  # the storage may be briefly away; the trial goes on
                pass
            if self.stop.wait(HEARTBEAT_INTERVAL):
                return

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def beat(storage: Any, trial_id: int) -> None:
    """One heartbeat: Optuna's own on storages that have one (RDB), a timestamp attr otherwise."""
    if isinstance(storage, optuna.storages._heartbeat.BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        storage.record_heartbeat(trial_id)
    else:
        storage.set_trial_user_attr(trial_id, "heartbeat", time.time())


# -- workers --------------------------------------------------------------------------------------

def claim(study: optuna.Study) -> FrozenTrial | None:
    """Atomically take a WAITING grid trial; yield it if its point is already taken elsewhere."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                continue
            # heartbeat before the worker attr: a trial that has a worker attr has a heartbeat, so
            # a worker on another machine dying from here on is caught by the heartbeat's staleness
            beat(storage, t._trial_id)
            storage.set_trial_user_attr(t._trial_id, "worker", f"{HOST}:{os.getpid()}")
        except UpdateFinishedTrialError:  # taken by another worker, or reaped meanwhile
            continue
        point = t.user_attrs.get(POINT_ATTR)
        rivals = [o for o in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                  if o.user_attrs.get(POINT_ATTR) == point and o._trial_id != t._trial_id]
        if rivals:
            with contextlib.suppress(UpdateFinishedTrialError):  # a reaper may have failed it already
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            continue
        return t
    return None


def set_final_state(storage: Any, trial_id: int, record: dict) -> None:
    if record["status"] == "failed":
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    elif record["status"] == "pruned":
        storage.set_trial_state_values(trial_id, TrialState.PRUNED)
    else:
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [objective_value(record)])


def finish(study: optuna.Study, trial_id: int, record: dict) -> bool:
    """Save a trial's record, then its final state, waiting out a storage that is briefly away.

    False when the trial was failed as dead while it ran (its heartbeat was lost for the grace
    period): its point runs again, and this result is dropped, so each point completes once.
    """
    storage = study._storage

    def save() -> bool:
        try:
            storage.set_trial_user_attr(trial_id, RECORD_ATTR, record)
            set_final_state(storage, trial_id, record)
        except UpdateFinishedTrialError:  # finished by a reaper: settled (our record) or failed
            return RECORD_ATTR in storage.get_trial(trial_id).user_attrs
        return True

    return retrying(save, f"saving the record of trial {trial_id}")


def run_point(study: optuna.Study, trial: FrozenTrial, device: str, pm: Any,
              on_eval: Callable[[dict], bool | None] | None = None) -> dict:
    from .trainer import run_trial

    spec = TrialSpec.from_dict(trial.user_attrs[SPEC_ATTR])
    with Heartbeat(study, trial._trial_id):
        record = run_trial(spec, device, pm, on_eval=on_eval)
    record["worker"] = f"{HOST}:{os.getpid()}"
    if not finish(study, trial._trial_id, record):
        print(f"ganbench: trial {trial.number} was failed as dead while it ran (no heartbeat for "
              f"{GRACE_PERIOD:g}s); its result is dropped and its point runs again", file=sys.stderr)
    return record


def grid_worker(study: optuna.Study, device: str, pm: Any, specs: list[TrialSpec], poll: float = 1.0) -> int:
    """Run grid points until none is waiting or running; returns how many this worker ran.

    A storage that goes away is waited for (STORAGE_PATIENCE), then the worker stops with one
    line; points it had claimed are reaped and rerun when the sweep resumes.
    """
    ran = 0
    while True:
        trial, busy = retrying(lambda: _next_point(study, specs), "looking for a grid point to run")
        if trial is not None:
            run_point(study, trial, device, pm)
            ran += 1
            continue
        if not busy:
            return ran
        time.sleep(poll)  # others are running: stay to pick up a point if one of them dies


def _next_point(study: optuna.Study, specs: list[TrialSpec]) -> tuple[FrozenTrial | None, bool]:
    """(a claimed trial or None, whether any trial is still waiting or running)."""
    reap_dead_trials(study)
    enqueue_missing(study, specs)  # points of workers that died are queued again
    trial = claim(study)
    if trial is not None:
        return trial, True
    return None, bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def search_worker(study: optuna.Study, device: str, pm: Any, config: SweepConfig,
                  overrides: dict[str, Any], n_trials: int) -> int:
    """TPE over the grid axes (as categories) and the [search] ranges, with median pruning."""
    ran = 0
    base = config.base_spec(overrides)
    while len(study.get_trials(deepcopy=False, states=_COUNTED)) < n_trials:
        trial = study.ask()
        try:
            spec = suggest(trial, config, base, pm)
        except GanbenchError as exc:  # an invalid combination is a failed trial, not a crash
            study.tell(trial, state=TrialState.FAIL)
            print(f"ganbench: trial {trial.number}: {exc}")
            continue
        study._storage.set_trial_user_attr(trial._trial_id, SPEC_ATTR, spec.to_dict())
        study._storage.set_trial_user_attr(trial._trial_id, POINT_ATTR, spec.key())
        study._storage.set_trial_user_attr(trial._trial_id, "worker", f"{HOST}:{os.getpid()}")
        frozen = study._storage.get_trial(trial._trial_id)
        run_point(study, frozen, device, pm, on_eval=_pruning_callback(trial))
        ran += 1
    return ran


_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def suggest(trial: optuna.Trial, config: SweepConfig, base: TrialSpec, pm: Any) -> TrialSpec:
    point = {axis: trial.suggest_categorical(axis, list(values)) for axis, values in config.grid.items()}
    for key, rng in config.search.items():
        if "choices" in rng:
            point[key] = trial.suggest_categorical(key, list(rng["choices"]))
        elif all(isinstance(rng[k], int) for k in ("low", "high")) and not rng.get("log"):
            point[key] = trial.suggest_int(key, rng["low"], rng["high"], step=int(rng.get("step", 1)))
        else:
            point[key] = trial.suggest_float(key, float(rng["low"]), float(rng["high"]), log=bool(rng.get("log", False)))
    return apply_point(base, point, pm)


def _pruning_callback(trial: optuna.Trial) -> Callable[[dict], bool]:
    def on_eval(point: dict) -> bool:
        value = point["metrics"].get(point["primary"])
        if value is not None and math.isfinite(value):
            trial.report(float(value), point["step"])
        return trial.should_prune()
    return on_eval


# -- progress -------------------------------------------------------------------------------------

def sweep_state(study: optuna.Study, total: int) -> SweepState:
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in TrialState}
    for t in trials:
        counts[t.state] += 1
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and RECORD_ATTR in t.user_attrs)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if done:
        pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        b = pick(done, key=lambda t: t.value)
        best = (b.value, b.user_attrs.get(RECORD_ATTR, {}).get("config", "?"))
    return SweepState(total, counts[TrialState.COMPLETE] + counts[TrialState.PRUNED], failed,
                      counts[TrialState.RUNNING], counts[TrialState.WAITING], best)
