"""The example plugin in plugins/ganbench-extras, installed as a user would install it: discovered
through its entry point, listed, blockable, and used next to the built-ins in a 2-trial sweep.

It needs the plugin installed, which the main test environment deliberately does not do (the core
must not depend on it); ``tox -e plugins`` installs it and runs this file.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("ganbench_extras", reason="the example plugin is not installed here; `tox -e plugins` "
                                               "installs plugins/ganbench-extras and runs this file")

from ganbench.plugins import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, PluginManager  # noqa: E402

PROVIDES = {"loss": ["dragan", "wgan_div"], "schedule": ["cosine", "critic_warmup"]}

SWEEP = """
name = "extras"
[trial]
dataset = "ring"
arch = "mlp"
schedule = "critic_warmup"
steps = 30
eval_every = 0
batch_size = 32
z_dim = 4
"arch.hidden" = 16
"loss.gp_weight" = 5.0
"schedule.d_steps" = 1
"schedule.warmup_d_steps" = 3
"schedule.warmup_steps" = 5
"schedule.every" = 10
"metric.point_metrics.num_samples" = 200
[grid]
loss = ["dragan", "wgan_gp"]
"""


@pytest.fixture(autouse=True)
def autoload(monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)


def test_the_distribution_declares_its_entry_point():
    (ep,) = md.entry_points(group=ENTRY_POINT_GROUP, name="extras")
    assert ep.value == "ganbench_extras.plugin" and ep.dist.name == "ganbench-extras"


def test_it_is_discovered_with_its_version_and_components():
    pm = PluginManager()
    info = pm.info["extras"]
    assert (info.source, info.module, info.version) == ("entrypoint", "ganbench_extras.plugin", md.version("ganbench-extras"))
    assert info.provides == PROVIDES and "extras" not in pm.broken
    assert pm.losses.get("dragan").provider == "extras" and pm.schedules.get("cosine").provider == "extras"


def test_no_extras_and_the_environment_variable_keep_it_out(monkeypatch):
    pm = PluginManager(["no:extras"])
    assert "extras" not in pm.info and "dragan" not in pm.losses and "hinge" in pm.losses
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "extras" not in PluginManager().info
    by_name = PluginManager(["extras"])  # -p NAME still loads it, by its entry-point name ...
    assert by_name.info["extras"].source == "entrypoint" and by_name.info["extras"].provides == PROVIDES
    by_module = PluginManager(["ganbench_extras.plugin"])  # ... or -p by module path
    assert by_module.info["ganbench_extras.plugin"].provides == PROVIDES


def test_list_and_plugins_commands_show_it(capsys, monkeypatch):
    from ganbench import cli, console

    assert cli.main(["list", "--json"]) == 0
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["dragan"]["plugin"] == "extras" and listed["dragan"]["params"] == {"gp_weight": 10.0, "noise_scale": 0.5}
    assert listed["critic_warmup"]["kind"] == "schedule" and listed["hinge"]["plugin"] == "losses"
    monkeypatch.setattr(console.console, "width", 400)  # one table row per line
    assert cli.main(["plugins"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "extras" in line)
    assert "entrypoint" in row and "loss: dragan, wgan_div; schedule: cosine, critic_warmup" in row


def test_a_sweep_uses_the_plugin_loss_and_schedule_next_to_a_builtin(tmp_path):
    config = tmp_path / "extras.toml"
    config.write_text(SWEEP)  # loss.gp_weight is a parameter of both dragan and wgan_gp
    env = {**os.environ, "GANBENCH_RESULTS": str(tmp_path / "results")}
    env.pop(DISABLE_AUTOLOAD_ENV, None)
    result = subprocess.run([sys.executable, "-m", "ganbench", "run", "--grid", "--config", str(config),
                             "--workers", "1", "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "results/extras/records.jsonl").read_text().splitlines()]
    assert sorted(r["spec"]["loss"] for r in records) == ["dragan", "wgan_gp"]
    for record in records:
        assert record["status"] != "failed", record["error"]
        assert record["spec"]["loss_params"] == {"gp_weight": 5.0}
        # the plugin's schedule drove the trainer: 3 D steps at iterations 0-4, 10 and 20, else 1
        assert (record["steps_done"], record["g_steps"], record["d_steps"]) == (30, 30, 7 * 3 + 23 * 1)
        assert math.isfinite(record["metrics"]["fd_points"])
