"""The sweep runner end to end, through the CLI: exactly-once grids, resume, failures, bad configs."""
from __future__ import annotations

import collections
import json
import os
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from ganbench.store import load_study
from sweep_helpers import ganbench, write_sweep



def write_config(tmp_path: Path, losses=("nonsaturating", "hinge", "least_squares"), steps=30, plugins=()) -> Path:
    return write_sweep(tmp_path, losses=losses, steps=steps, plugins=plugins)


def trials_by_point(tmp_path: Path, study: str = "small") -> dict[str, list]:
    s = load_study(study, str(tmp_path / "results" / study / "study.journal"))
    out = collections.defaultdict(list)
    for t in s.get_trials(deepcopy=False):
        out[t.user_attrs.get("point")].append(t)
    return out


def completed_points(by_point: dict) -> collections.Counter:
    return collections.Counter({p: sum(t.state == TrialState.COMPLETE for t in ts) for p, ts in by_point.items()})


def test_grid_with_two_workers_runs_each_point_exactly_once_and_resumes(tmp_path):
    # each trial lasts >= 2 s, so that the second worker gets a share however fast the first one trains
    config = write_config(tmp_path, plugins=("stalling_plugin",))
    result = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--workers", "2", "--quiet",
                      env={"GANBENCH_TEST_TRIAL_DELAY": "2"})
    assert result.returncode == 0, result.stderr
    by_point = trials_by_point(tmp_path)
    assert len(by_point) == 6
    assert set(completed_points(by_point).values()) == {1}
    assert sum(len(ts) for ts in by_point.values()) == 6
    workers = {t.user_attrs["worker"] for ts in by_point.values() for t in ts}
    assert len(workers) == 2  # both workers took part
    records = [json.loads(line) for line in (tmp_path / "results/small/records.jsonl").read_text().splitlines()]
    assert len({r["trial_key"] for r in records}) == 6
    # rerun: nothing is trained again
    again = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--workers", "2", "--quiet")
    assert again.returncode == 0, again.stderr
    assert sum(len(ts) for ts in trials_by_point(tmp_path).values()) == 6
    assert "6 completed, 0 failed of 6" in again.stdout


def test_killed_worker_point_is_rerun_once(tmp_path):
    # the stalling plugin holds the first trial until the kill: mid-trial on any machine
    config = write_config(tmp_path, losses=("nonsaturating", "hinge"), steps=200, plugins=("stalling_plugin",))
    proc = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--workers", "1", "--quiet",
                    env={"GANBENCH_TEST_STALL": "1"}, background=True)
    journal = tmp_path / "results/small/study.journal"
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:
        time.sleep(0.5)
        if journal.exists():
            running = [t for ts in trials_by_point(tmp_path).values() for t in ts
                       if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
            if running:
                victim = int(running[0].user_attrs["worker"].rsplit(":", 1)[1])
    assert victim is not None, "no trial started"
    os.kill(victim, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    states = [t.state for ts in trials_by_point(tmp_path).values() for t in ts]
    assert TrialState.RUNNING in states  # the killed trial was left running
    result = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    by_point = trials_by_point(tmp_path)
    assert len(by_point) == 4
    assert set(completed_points(by_point).values()) == {1}
    assert not [t for ts in by_point.values() for t in ts if t.state == TrialState.RUNNING]


def test_a_raising_component_fails_one_point_and_the_sweep_goes_on(tmp_path):
    config = write_config(tmp_path, losses=("nonsaturating", "explodes"), plugins=("raising_plugin",))
    result = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    by_point = trials_by_point(tmp_path)
    states = collections.Counter(t.state for ts in by_point.values() for t in ts)
    assert states[TrialState.COMPLETE] == 2 and states[TrialState.FAIL] == 2  # 2 seeds of the bad loss
    failed = [t.user_attrs["record"] for ts in by_point.values() for t in ts if t.state == TrialState.FAIL]
    assert all(r["status"] == "failed" and "boom on purpose" in r["error"] for r in failed)
    assert "2 completed, 2 failed of 4" in result.stdout
    # failed points are shown, not rerun ...
    again = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--quiet")
    assert sum(len(ts) for ts in trials_by_point(tmp_path).values()) == 4
    assert "2 completed, 2 failed of 4" in again.stdout
    # ... unless asked
    ganbench(tmp_path, "run", "--grid", "--config", str(config), "--quiet", "--rerun-failed")
    assert sum(len(ts) for ts in trials_by_point(tmp_path).values()) == 6


@pytest.mark.parametrize("edit, message", [
    (("[grid]", "bogus = 1\n[grid]"), "unknown setting 'bogus'"),
    (('"hinge"', '"hingee"'), "unknown loss 'hingee'; choose from:"),
    (("steps = 30", 'steps = "many"'), "setting 'steps': expected int"),
    (('"arch.hidden" = 16', '"arch.width" = 16'), "architecture 'mlp' has no parameter 'width'"),
    (('name = "small"', 'name = "small"\ncolour = "red"'), "unknown key 'colour'"),
    # a misspelled parameter axis matches no component: an error, not silently dropped from every point
    (("seed = ", '"loss.gpweight" = [1.0, 2.0]\nseed = '), "no loss in the sweep has a parameter 'gpweight'"),
    (("seed = ", "lr_d = [-1.0, 1e-4]\nseed = "), "setting 'lr_d' must be a finite number > 0, got -1.0"),
    (("[grid]", "[search]\nlr_d = { low = 1e-3, high = 1e-5 }\n[grid]"), "need numbers low < high"),
    (('name = "small"', 'name = "../escape"'), "invalid study name '../escape'"),
])
def test_bad_configs_are_one_clear_line_and_exit_2(tmp_path, edit, message):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(*edit, 1))
    result = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results/small/records.jsonl").exists()  # nothing trained


@pytest.mark.parametrize("search, message", [
    ('"loss.margn" = { low = 0.5, high = 2.0 }', "no loss in the sweep has a parameter 'margn'"),
    ("bogus = { low = 1, high = 2 }", "unknown setting 'bogus'"),
    ("beta1 = { low = 0.5, high = 1.5 }", "setting 'beta1' (Adam) must be in [0, 1), got 1.5"),
])
def test_bad_search_ranges_are_rejected_before_a_search_starts(tmp_path, search, message):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[grid]", f"[search]\n{search}\n[grid]", 1))
    result = ganbench(tmp_path, "run", "--config", str(config), "--trials", "2", "--quiet")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_search_resumed_with_more_trials_runs_the_extra_ones_and_a_grid_study_stays_a_grid(tmp_path):
    config = write_config(tmp_path, steps=10)
    first = ganbench(tmp_path, "run", "--config", str(config), "--trials", "2", "--quiet")
    assert first.returncode == 0, first.stderr
    more = ganbench(tmp_path, "run", "--config", str(config), "--trials", "3", "--quiet")
    assert more.returncode == 0, more.stderr
    assert sum(len(ts) for ts in trials_by_point(tmp_path).values()) == 3
    assert "3 completed, 0 failed of 3" in more.stdout
    as_grid = ganbench(tmp_path, "run", "--grid", "--config", str(config), "--quiet")
    assert as_grid.returncode == 2 and "is a TPE search: rerun it without --grid" in as_grid.stderr
