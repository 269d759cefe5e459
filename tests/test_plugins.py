"""Plugin loading fails safe: a broken plugin is reported by name with its error, leaves nothing
behind, does not stop the others, and only a run that needs it fails, naming it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from ganbench import GanbenchError
from ganbench.plugins import DISABLE_AUTOLOAD_ENV, PluginManager, get_plugin_manager
from ganbench.spec import TrialSpec

HEADER = "from ganbench import hookimpl, Loss, Schedule, StepPlan\n"
LOSS = "class L(Loss):\n    pass\n"
HALF_BROKEN = HEADER + LOSS + textwrap.dedent("""
    calls = []

    @hookimpl
    def ganbench_register_losses(registry):
        calls.append("losses")
        registry.add("half_loss", L)

    @hookimpl
    def ganbench_register_schedules(registry, extra):  # 'extra' is in no hook spec
        calls.append("schedules")
""")
CORRECTED = HALF_BROKEN.replace("(registry, extra):", "(registry):")


def plugin(name: str, source: str) -> types.ModuleType:
    """A plugin module built from source, as an import of a file would build it."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def components_of(pm: PluginManager, provider: str) -> list[str]:
    return [c.name for kind in ("architecture", "loss", "schedule", "dataset", "metric")
            for c in pm.registries[kind] if c.provider == provider]


def hooks_of(pm: PluginManager, name: str) -> list[str]:
    return [caller.name for caller in pm.pm.hook.__dict__.values() if hasattr(caller, "get_hookimpls")
            for impl in caller.get_hookimpls() if impl.plugin_name == name]


@pytest.fixture
def pm() -> PluginManager:
    return PluginManager(autoload=False)


# -- an invalid hook implementation ---------------------------------------------------------------

def test_plugin_with_one_valid_and_one_invalid_hook_registers_nothing_and_runs_no_hook(pm):
    broken = plugin("half", HALF_BROKEN)
    assert pm.load(broken, name="half") is False
    assert "PluginValidationError" in pm.broken["half"]
    assert "ganbench_register_schedules" in pm.broken["half"] and "'extra'" in pm.broken["half"]
    assert broken.calls == []  # the valid hook was never called
    assert "half" not in pm.info and pm.pm.get_plugin("half") is None
    assert hooks_of(pm, "half") == [] and components_of(pm, "half") == []
    with pytest.raises(GanbenchError, match=r"unknown loss 'half_loss'.*failed to load.*'half' \(PluginValidationError"):
        pm.losses.get("half_loss")
    assert pm.losses.get("hinge").provider == "losses"  # the built-ins are untouched


def test_corrected_plugin_then_registers_under_the_same_name(pm):
    pm.load(plugin("half", HALF_BROKEN), name="half")
    fixed = plugin("half", CORRECTED)
    assert pm.load(fixed, name="half") is True
    assert fixed.calls == ["losses", "schedules"]
    assert pm.info["half"].provides == {"loss": ["half_loss"]}
    assert pm.losses.get("half_loss").provider == "half"
    assert "half" not in pm.broken and all("half" not in pm.registries[k].unavailable for k in ("loss", "schedule"))
    with pytest.raises(GanbenchError) as err:  # no stale "failed to load" hint any more
        pm.losses.get("nope")
    assert "failed to load" not in str(err.value)


# -- misspelled and unknown hook names ------------------------------------------------------------

@pytest.mark.parametrize("decorator", ["@hookimpl\n", ""])  # undecorated ganbench_* functions count too
def test_a_plugin_whose_only_hook_matches_no_spec_is_rejected_at_load_time(pm, decorator):
    source = HEADER + LOSS + f"{decorator}def ganbench_register_loss(registry):\n    registry.add('typo_loss', L)\n"
    assert pm.load(plugin("typo", source), name="typo") is False
    assert pm.broken["typo"] == ("unknown hook 'ganbench_register_loss' in plugin 'typo': "
                                 "did you mean 'ganbench_register_losses'?")
    assert pm.pm.get_plugin("typo") is None and "typo_loss" not in pm.losses


def test_unknown_hook_lists_the_known_hooks_and_helpers_are_ignored(pm):
    assert pm.load(plugin("odd", HEADER + "def ganbench_frobnicate():\n    pass\n"), name="odd") is False
    assert "known hooks: ganbench_eval_report, ganbench_register_architectures" in pm.broken["odd"]
    helper = HEADER + LOSS + "def make():\n    return L()\n@hookimpl\ndef ganbench_register_losses(registry):\n" \
                             "    registry.add('fine', make)\n"
    assert pm.load(plugin("helpers", helper), name="helpers") is True


# -- failures while registering -------------------------------------------------------------------

def test_exception_in_a_later_hook_removes_what_earlier_hooks_added(pm):
    source = HEADER + LOSS + textwrap.dedent("""
        @hookimpl
        def ganbench_register_losses(registry):
            registry.add("early_loss", L)

        @hookimpl
        def ganbench_register_schedules(registry):
            registry.add("early_schedule", lambda: None)
            raise RuntimeError("no config file found")
    """)
    assert pm.load(plugin("partial", source), name="partial") is False
    assert pm.broken["partial"] == "RuntimeError: no config file found"
    assert "early_loss" not in pm.losses and "early_schedule" not in pm.schedules
    assert hooks_of(pm, "partial") == []


def test_a_factory_without_defaults_is_rejected_with_its_reason(pm):
    source = HEADER + "@hookimpl\ndef ganbench_register_schedules(registry):\n" \
                      "    registry.add('needs_arg', lambda steps: None)\n"
    assert pm.load(plugin("nodefault", source), name="nodefault") is False
    assert "parameter 'steps' needs a default" in pm.broken["nodefault"]


def test_duplicate_component_names_name_both_plugins(pm):
    def provider(loss_names):
        adds = "".join(f"    registry.add({n!r}, L)\n" for n in loss_names)
        return HEADER + LOSS + "@hookimpl\ndef ganbench_register_losses(registry):\n" + adds
    assert pm.load(plugin("first", provider(["twin"])), name="first")
    assert pm.load(plugin("second", provider(["own", "twin"])), name="second") is False
    assert pm.broken["second"] == "loss 'twin' is registered twice: by plugin 'first' and by plugin 'second'"
    assert pm.losses.get("twin").provider == "first" and "own" not in pm.losses
    assert pm.load(plugin("third", provider(["hinge"])), name="third") is False
    assert "by plugin 'losses' and by plugin 'third'" in pm.broken["third"]


def test_import_error_is_reported_and_only_a_run_needing_it_fails(pm):
    assert pm.load("ganbench_no_such_plugin") is False
    assert pm.broken["ganbench_no_such_plugin"] == "ModuleNotFoundError: No module named 'ganbench_no_such_plugin'"
    TrialSpec(dataset="ring", arch="mlp", loss="hinge").validated(pm)  # everything else still works
    with pytest.raises(GanbenchError, match="may provide it: 'ganbench_no_such_plugin' \\(ModuleNotFoundError"):
        TrialSpec(dataset="ring", arch="mlp", loss="theirs").validated(pm)


def test_a_second_plugin_under_a_taken_name_is_reported(pm):
    other = plugin("impostor", HEADER + LOSS + "@hookimpl\ndef ganbench_register_losses(registry):\n"
                                               "    registry.add('fake_hinge', L)\n")
    assert pm.load(other, name="losses") is False
    assert pm.broken == {"losses (impostor)": "the plugin name 'losses' is already taken by "
                                              "ganbench.builtin.losses; impostor was not loaded"}
    assert pm.info["losses"].module == "ganbench.builtin.losses" and "fake_hinge" not in pm.losses


def test_the_same_module_asked_for_twice_loads_once(pm):
    module = plugin("twice", HEADER + LOSS + "@hookimpl\ndef ganbench_register_losses(registry):\n"
                                            "    registry.add('once', L)\n")
    assert pm.load(module, name="twice") and pm.load(module, name="twice-again")
    assert "twice-again" not in pm.info and pm.broken == {} and pm.losses.get("once").provider == "twice"


# -- blocking, entry points, autoload --------------------------------------------------------------

def test_no_name_blocks_a_builtin():
    pm = PluginManager(["no:losses"], autoload=False)
    assert "losses" not in pm.info and "losses" not in pm.broken and len(pm.losses) == 0
    assert "mlp" in pm.architectures
    with pytest.raises(GanbenchError, match="unknown loss 'hinge'; choose from: \\(none\\)$"):
        pm.losses.get("hinge")


def fake_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """What pip leaves in site-packages: a dist-info with METADATA and entry_points.txt, and modules."""
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # pip's escaping: '-' separates the version
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[ganbench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A site directory with two installed plugin distributions: one good, one that fails to import."""
    good = HEADER + LOSS + "@hookimpl\ndef ganbench_register_losses(registry):\n    registry.add('ep_loss', L)\n"
    fake_distribution(tmp_path, "ganbench-ep-good", {"epgood": "ganbench_ep_good_mod"}, {"ganbench_ep_good_mod": good})
    fake_distribution(tmp_path, "ganbench-ep-bad", {"epbad": "ganbench_ep_bad_mod", "epattr": "ganbench_ep_good_mod:nope"},
                      {"ganbench_ep_bad_mod": "import ganbench_missing_dependency\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    for name in ("ganbench_ep_good_mod", "ganbench_ep_bad_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_entry_points_are_autoloaded_and_failures_reported_by_entry_point_name(site):
    pm = PluginManager()
    info = pm.info["epgood"]
    assert (info.source, info.version, info.module, info.provides) == (
        "entrypoint", "1.2.3", "ganbench_ep_good_mod", {"loss": ["ep_loss"]})
    assert pm.broken["epbad"] == "ModuleNotFoundError: No module named 'ganbench_missing_dependency'"
    assert pm.broken["epattr"].startswith("AttributeError:") and "nope" in pm.broken["epattr"]
    assert pm.losses.get("ep_loss").provider == "epgood"


def test_environment_variable_disables_autoload_but_not_p(site, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = PluginManager()
    assert not {"epgood", "epbad", "epattr"} & (set(pm.info) | set(pm.broken))
    pm = PluginManager(["ganbench_ep_good_mod"])  # -p module.path
    assert pm.info["ganbench_ep_good_mod"].source == "cli" and "ep_loss" in pm.losses
    pm = PluginManager(["epgood"])  # -p entry-point name: just this one installed plugin
    assert (pm.info["epgood"].source, pm.info["epgood"].version) == ("entrypoint", "1.2.3")
    assert "epbad" not in pm.broken


def test_no_name_blocks_an_entry_point_plugin(site):
    pm = PluginManager(["no:epgood", "no:epbad"])
    assert "epgood" not in pm.info and "ep_loss" not in pm.losses
    assert "epbad" not in pm.broken and "epattr" in pm.broken


def test_get_plugin_manager_is_built_once_per_p_options():
    assert get_plugin_manager(("no:metrics",)) is get_plugin_manager(("no:metrics",))
    assert get_plugin_manager(("no:metrics",)) is not get_plugin_manager(("no:datasets",))


# -- observers -------------------------------------------------------------------------------------

def test_observers_get_their_arguments_and_a_failing_one_is_not_fatal(pm, capsys):
    source = HEADER + textwrap.dedent("""
        seen = []

        @hookimpl
        def ganbench_trial_finish(record):  # a subset of the spec's arguments is fine
            seen.append(record["status"])
    """)
    loud = HEADER + "@hookimpl\ndef ganbench_trial_finish(spec, record):\n    raise ValueError('disk full')\n"
    listener = plugin("listener", source)
    assert pm.load(listener, name="listener") and pm.load(plugin("loud", loud), name="loud")
    pm.notify("ganbench_trial_finish", spec=None, record={"status": "converged"})
    assert listener.seen == ["converged"]
    assert "ganbench: observer loud.ganbench_trial_finish failed: ValueError: disk full" in capsys.readouterr().err


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture
def halfbroken_on_path(tmp_path, monkeypatch) -> Path:
    """A plugin file that fails validation, importable as ``-p halfbroken``; autoload off."""
    (tmp_path / "halfbroken.py").write_text(HALF_BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.delitem(sys.modules, "halfbroken", raising=False)
    return tmp_path


def test_a_run_that_needs_the_broken_plugin_exits_2_with_one_line_naming_it(halfbroken_on_path):
    env = {**os.environ, "GANBENCH_RESULTS": str(halfbroken_on_path / "results"),
           "PYTHONPATH": os.pathsep.join([str(halfbroken_on_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "ganbench", "train", "-p", "halfbroken", "--loss", "half_loss",
                             "--dataset", "ring", "--arch", "mlp"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ganbench: error: unknown loss 'half_loss'; choose from: hinge, ")
    assert "plugins that failed to load and may provide it: 'halfbroken' (PluginValidationError" in lines[0]


def test_plugins_command_shows_the_broken_plugin_with_its_error(halfbroken_on_path, capsys, monkeypatch):
    from ganbench import cli, console

    monkeypatch.setattr(console.console, "width", 400)  # one table row per line
    assert cli.main(["plugins", "-p", "halfbroken"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "halfbroken" in line)
    assert "failed to load" in row and "Argument(s) {'extra'} are declared in the hookimpl" in row
    assert "ganbench.builtin.losses" in out  # the others are listed as loaded


def test_list_still_works_and_warns_about_the_broken_plugin(halfbroken_on_path, capsys):
    from ganbench import cli

    assert cli.main(["list", "loss", "--json", "-p", "halfbroken"]) == 0
    captured = capsys.readouterr()
    assert {c["name"] for c in json.loads(captured.out)} >= {"hinge", "wgan_gp"}
    assert "ganbench: warning: plugin 'halfbroken' failed to load: PluginValidationError" in captured.err
