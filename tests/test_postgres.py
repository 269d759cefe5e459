"""Sweeps across machines on a shared PostgreSQL storage, against a real server on loopback.

Each worker is a separate `ganbench worker` process; GANBENCH_WORKER_HOST gives each the name of
another machine, so only what works across machines (the storage's atomic claim, Optuna's
heartbeat) can keep the grid exactly-once: the same-host dead-pid check never applies between them.
"""
from __future__ import annotations

import collections
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from ganbench.store import load_study
from sweep_helpers import ganbench, write_sweep

pytestmark = pytest.mark.postgres


def write_config(tmp_path: Path, losses: tuple[str, ...], seeds: tuple[int, ...], steps: int = 30) -> str:
    # stalling_plugin holds trials at their start in processes given GANBENCH_TEST_STALL (kill tests)
    return str(write_sweep(tmp_path, losses=losses, seeds=seeds, steps=steps, name="pg",
                           plugins=("stalling_plugin",)))


def new_study(tmp_path: Path, url: str, config: str, env: dict[str, str] | None = None) -> str:
    """A study of its own in the shared database, created and queued but not run (--workers 0)."""
    study = f"test-{uuid.uuid4().hex[:10]}"
    made = ganbench(tmp_path, "run", "--grid", "--config", config, "--study", study, "--storage", url,
                    "--workers", "0", env=env)
    assert made.returncode == 0, made.stderr
    return study


def trials(url: str, study: str) -> list:
    return load_study(study, url).get_trials(deepcopy=False)


def by_point(url: str, study: str) -> dict[str, list]:
    out = collections.defaultdict(list)
    for t in trials(url, study):
        out[t.user_attrs["point"]].append(t)
    return out


def assert_each_point_completed_once(url: str, study: str, points: int) -> dict[str, list]:
    groups = by_point(url, study)
    assert len(groups) == points
    assert {p: sum(t.state == TrialState.COMPLETE for t in ts) for p, ts in groups.items()} == dict.fromkeys(groups, 1)
    assert not [t for ts in groups.values() for t in ts if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return groups


def completed(url: str, study: str) -> dict[int, float]:
    return {t.number: t.value for t in trials(url, study) if t.state == TrialState.COMPLETE}


def wait_for(condition, timeout: float, what: str, poll: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def pg_ctl(postgres_url):
    """Run pg_ctl on the test server (GANBENCH_TEST_PG_CTL, set by .ci/postgres.sh); the server is
    started again after the test whatever happened."""
    prefix = shlex.split(os.environ.get("GANBENCH_TEST_PG_CTL", ""))
    if not prefix:
        pytest.skip("no control over the PostgreSQL server: GANBENCH_TEST_PG_CTL is not set (.ci/postgres.sh sets it)")

    def ctl(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=180)

    yield ctl
    if subprocess.run([*prefix, "status"], capture_output=True).returncode != 0:
        ctl("start")


# -- many workers ---------------------------------------------------------------------------------

def test_three_workers_on_other_machines_run_a_12_point_grid_exactly_once(tmp_path, postgres_url):
    config = write_config(tmp_path, ("nonsaturating", "hinge", "least_squares", "minimax"), (0, 1, 2), steps=100)
    study = new_study(tmp_path, postgres_url, config)
    workers = [ganbench(tmp_path, "worker", "--study", study, "--storage", postgres_url, "--threads", "1",
                        env={"GANBENCH_WORKER_HOST": f"machine-{i}"}, background=True) for i in range(3)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in outputs]
    groups = assert_each_point_completed_once(postgres_url, study, 12)
    # nothing trained twice: each worker says how many it ran, and those add up to the grid
    ran = [int(out.split("ran ")[1].split()[0]) for out, _ in outputs]
    assert sum(ran) == 12
    hosts = {t.user_attrs["worker"].split(":")[0] for ts in groups.values() for t in ts if t.state == TrialState.COMPLETE}
    assert len(hosts) >= 2 and hosts <= {"machine-0", "machine-1", "machine-2"}
    # leaderboard and report read the shared storage directly
    board = ganbench(tmp_path, "leaderboard", study, "--storage", postgres_url, "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)["rows"]
    assert len(rows) == 4 and {r["n"] for r in rows} == {3}
    report = ganbench(tmp_path, "report", study, "--storage", postgres_url, "--output-dir", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert len(json.loads((tmp_path / "report/report.json").read_text())["trials"]) == 12


# -- crashed workers ------------------------------------------------------------------------------

FAST_HEARTBEAT = {"GANBENCH_HEARTBEAT_INTERVAL": "1", "GANBENCH_GRACE_PERIOD": "6"}


def test_a_worker_killed_on_another_machine_is_found_by_its_heartbeat_and_its_point_rerun_once(tmp_path, postgres_url):
    config = write_config(tmp_path, ("nonsaturating",), (0, 1), steps=100)
    study = new_study(tmp_path, postgres_url, config)
    # held at the start of its first trial (stalling_plugin) until killed: mid-trial on any machine
    doomed = ganbench(tmp_path, "worker", "--study", study, "--storage", postgres_url, "--threads", "1",
                      env={**FAST_HEARTBEAT, "GANBENCH_WORKER_HOST": "doomed-machine", "GANBENCH_TEST_STALL": "1"},
                      background=True)
    try:
        victim = wait_for(lambda: next((t for t in trials(postgres_url, study) if t.state == TrialState.RUNNING
                                        and t.user_attrs.get("worker", "").startswith("doomed-machine:")), None),
                          timeout=180, what="the doomed worker to start a trial")
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.communicate()
    assert load_study(study, postgres_url).trials[victim.number].state == TrialState.RUNNING  # left behind
    # a worker here cannot judge another machine's pid: only the stale heartbeat tells the trial is dead
    survivor = ganbench(tmp_path, "worker", "--study", study, "--storage", postgres_url, "--threads", "1",
                        env=FAST_HEARTBEAT)
    assert survivor.returncode == 0, survivor.stderr
    groups = assert_each_point_completed_once(postgres_url, study, 2)
    killed = load_study(study, postgres_url).trials[victim.number]
    assert killed.state == TrialState.FAIL and "record" not in killed.user_attrs
    assert "heartbeat" not in killed.user_attrs  # Optuna's own heartbeat, not the file storages' attr
    rerun = groups[victim.user_attrs["point"]]
    assert sorted(t.state for t in rerun) == sorted([TrialState.FAIL, TrialState.COMPLETE])  # rerun once
    assert "ran 2 trials" in survivor.stdout


def test_a_trial_whose_record_was_saved_but_not_its_state_keeps_its_result(postgres_url):
    """The server went away between finish()'s two writes: the reaper completes the trial from its
    record instead of failing it (which would lose the result and rerun the point)."""
    import optuna

    from ganbench.store import open_storage
    from ganbench.sweep import reap_dead_trials

    study = optuna.create_study(study_name=f"test-{uuid.uuid4().hex[:10]}", storage=open_storage(postgres_url))
    study.enqueue_trial({}, user_attrs={"point": "p"})
    trial_id, storage = study.trials[0]._trial_id, study._storage
    storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    storage.set_trial_user_attr(trial_id, "worker", "gone-machine:1")
    record = {"status": "ok", "primary": "fd", "metrics": {"fd": 1.25}, "lower_is_better": True}
    storage.set_trial_user_attr(trial_id, "record", record)
    reap_dead_trials(study)
    settled = study.trials[0]
    assert settled.state == TrialState.COMPLETE and settled.value == 1.25


def test_a_claimed_trial_its_worker_never_marked_is_reaped_after_the_grace_period(postgres_url, monkeypatch):
    """A worker that died between the atomic claim and marking the trial as its own left no pid and
    no heartbeat: the trial's age past the grace period is what tells."""
    import optuna

    from ganbench import sweep
    from ganbench.store import open_storage

    monkeypatch.setattr(sweep, "GRACE_PERIOD", 1.0)
    study = optuna.create_study(study_name=f"test-{uuid.uuid4().hex[:10]}", storage=open_storage(postgres_url))
    study.enqueue_trial({}, user_attrs={"point": "p"})
    study._storage.set_trial_state_values(study.trials[0]._trial_id, TrialState.RUNNING)
    assert sweep.reap_dead_trials(study) == 0  # young: its worker may be marking it right now
    time.sleep(1.5)
    assert sweep.reap_dead_trials(study) == 1
    assert study.trials[0].state == TrialState.FAIL


# -- the server going away ------------------------------------------------------------------------

def wait_for_completed(url: str, study: str, at_least: int) -> dict[int, float]:
    return wait_for(lambda: (lambda done: done if len(done) >= at_least else None)(completed(url, study)),
                    timeout=300, what=f"{at_least} completed trials")


def test_a_server_restart_mid_sweep_is_waited_out_and_nothing_is_lost(tmp_path, postgres_url, pg_ctl):
    # trials of a few seconds, so that the server goes away with some of them still to run
    config = write_config(tmp_path, ("nonsaturating", "hinge"), (0, 1), steps=2000)
    study = new_study(tmp_path, postgres_url, config)
    sweep = ganbench(tmp_path, "run", "--grid", "--config", config, "--study", study, "--storage", postgres_url,
                     "--workers", "2", "--quiet", background=True)
    before = wait_for_completed(postgres_url, study, 1)
    pg_ctl("stop", "-m", "immediate")  # as a crash: connections cut, no goodbye
    assert len(before) < 4  # mid-sweep
    time.sleep(3)
    pg_ctl("start")
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err
    assert "4 completed, 0 failed of 4" in out
    assert_each_point_completed_once(postgres_url, study, 4)
    after = completed(postgres_url, study)
    assert {n: after.get(n) for n in before} == before  # the trials done before the restart are kept as they were
    assert "Traceback" not in "".join(p.read_text() for p in (tmp_path / "results" / study / "logs").glob("*.log"))


def test_workers_that_lose_the_server_stop_with_one_line_and_a_rerun_resumes(tmp_path, postgres_url, pg_ctl):
    # trials of a few seconds, so that the server goes away with some of them still to run
    config = write_config(tmp_path, ("nonsaturating", "hinge"), (0, 1), steps=2000)
    study = new_study(tmp_path, postgres_url, config)
    impatient = {"GANBENCH_STORAGE_PATIENCE": "2"}
    sweep = ganbench(tmp_path, "run", "--grid", "--config", config, "--study", study, "--storage", postgres_url,
                     "--workers", "2", "--quiet", env=impatient, background=True)
    before = wait_for_completed(postgres_url, study, 1)
    pg_ctl("stop", "-m", "immediate")
    try:
        _, err = sweep.communicate(timeout=300)
    finally:
        pg_ctl("start")
    assert sweep.returncode == 2
    assert err.strip().splitlines()[-1].startswith("ganbench: error: storage postgresql://ganbench:***@")
    logs = "".join(p.read_text() for p in (tmp_path / "results" / study / "logs").glob("*.log"))
    assert "ganbench: error: lost the storage while" in logs and "Traceback" not in logs + err
    resumed = ganbench(tmp_path, "run", "--grid", "--config", config, "--study", study, "--storage", postgres_url,
                       "--workers", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "4 completed, 0 failed of 4" in resumed.stdout
    assert_each_point_completed_once(postgres_url, study, 4)
    after = completed(postgres_url, study)
    assert {n: after.get(n) for n in before} == before


# -- connection problems --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:{password}@{host}"


@pytest.mark.parametrize("case", ["server down", "bad url", "bad credentials", "no such study"])
def test_connection_problems_are_one_line_and_exit_2(tmp_path, postgres_url, case):
    url, message = {
        "server down": (f"postgresql://ganbench:s3cret@127.0.0.1:{free_port()}/ganbench", "Connection refused"),
        "bad url": ("postgresql://ganbench:s3cret@127.0.0.1:notaport/ganbench", "is not a valid database URL"),
        "bad credentials": (with_password(postgres_url, "s3cret"), "password authentication failed"),
        "no such study": (postgres_url, "no study 'nope'"),
    }[case]
    command = ["worker", "--study", "nope", "--storage", url] if case != "bad url" else \
        ["run", "--grid", "--config", write_config(tmp_path, ("hinge",), (0,)), "--storage", url]
    result = ganbench(tmp_path, *command)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error: ") and message in lines[0], result.stderr
    assert "s3cret" not in result.stderr
