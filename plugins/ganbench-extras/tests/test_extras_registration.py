"""The plugin's hooks as ganbench sees them: validated, registered with their parameters, and every
installed component (this plugin's included) passing ganbench's contracts."""
from __future__ import annotations

import pytest
import torch

import ganbench_extras
from ganbench.plugins import PluginManager
from ganbench.testing import check_loss, check_schedule, parametrize_components
from ganbench_extras import plugin
from ganbench_extras.losses import Dragan
from ganbench_extras.schedules import CosineSchedule

torch.set_num_threads(1)


@pytest.fixture
def pm() -> PluginManager:
    # autoload off, then the plugin module loaded by hand: tests the hooks, not the installation
    manager = PluginManager(autoload=False)
    assert manager.load(plugin, name="extras"), manager.broken
    return manager


def test_hooks_register_two_losses_and_two_schedules(pm):
    assert pm.info["extras"].provides == {"loss": ["dragan", "wgan_div"], "schedule": ["cosine", "critic_warmup"]}
    assert pm.broken == {}
    assert pm.losses.get("dragan").provider == "extras"


def test_factory_signatures_are_the_schemas(pm):
    assert {n: p.default for n, p in pm.losses.get("dragan").params.items()} == {"gp_weight": 10.0, "noise_scale": 0.5}
    assert {n: p.default for n, p in pm.losses.get("wgan_div").params.items()} == {"k": 2.0, "power": 6.0}
    assert set(pm.schedules.get("critic_warmup").params) == {"d_steps", "g_steps", "warmup_d_steps", "warmup_steps", "every"}


def test_configs_reach_the_factories_with_their_types(pm):
    loss = pm.losses.create("dragan", {"gp_weight": "5", "noise_scale": 1})  # as from --set / TOML
    assert isinstance(loss, Dragan) and loss.gp_weight == 5.0 and loss.noise_scale == 1.0
    schedule = pm.schedules.create("cosine", {"final_scale": "0.25"})
    assert isinstance(schedule, CosineSchedule) and schedule.plan(9, 10).d_lr_scale == pytest.approx(0.25)


def test_version_is_the_distribution_version():
    from importlib.metadata import version

    assert ganbench_extras.__version__ == version("ganbench-extras")


@parametrize_components("loss")
def test_every_installed_loss_passes_the_contract(component):
    check_loss(component)


@parametrize_components("schedule")
def test_every_installed_schedule_passes_the_contract(component):
    check_schedule(component)
