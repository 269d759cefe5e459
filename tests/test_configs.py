"""The sweep configs shipped in the package validate, and the embedded default is what the README says."""
from __future__ import annotations

import pytest

from ganbench.config import load_config, shipped_configs
from ganbench.plugins import get_plugin_manager
from ganbench.sweep import check_compatibility


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_validates_before_training(name):
    pm = get_plugin_manager()
    config = load_config(name=name)
    specs = config.grid_specs(pm)
    check_compatibility(specs, pm)  # dataset x architecture x metrics, as `ganbench run` checks them
    assert len({s.key() for s in specs}) == len(specs)  # every grid point distinct


def test_default_sweep_is_the_real_digits_with_four_losses_and_two_seeds():
    specs = load_config(name="default").grid_specs(get_plugin_manager())
    assert {s.dataset for s in specs} == {"digits"}
    assert len({s.loss for s in specs}) >= 4 and len({s.seed for s in specs}) >= 2
    assert set(shipped_configs()) >= {"default", "ring", "smoke"}
