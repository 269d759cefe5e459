"""The plugin manager: built-ins, then installed entry points, then ``-p module`` plugins.

Loading fails safe. Each plugin's registration hooks run against the shared registries with the
plugin recorded as provider; if anything goes wrong (import error, invalid or misspelled hook,
duplicate component name, an exception while registering) everything that plugin added is
removed, the plugin is unregistered and reported in ``broken`` by name with its error. The other
plugins keep working; only a run that asks for a component the broken plugin would have provided
fails, and its error names the broken plugin.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pluggy

from . import hookspecs
from .api import GanbenchError
from .registry import Registries

hookimpl = pluggy.HookimplMarker("ganbench")

ENTRY_POINT_GROUP = "ganbench"
DISABLE_AUTOLOAD_ENV = "GANBENCH_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugins, loaded exactly like third-party ones; blockable with ``-p no:NAME``.
BUILTIN_PLUGINS = {
    "losses": "ganbench.builtin.losses",
    "architectures": "ganbench.builtin.architectures",
    "schedules": "ganbench.builtin.schedules",
    "datasets": "ganbench.builtin.datasets",
    "metrics": "ganbench.builtin.metrics",
}

REGISTRATION_HOOKS = {
    "ganbench_register_architectures": "architecture",
    "ganbench_register_losses": "loss",
    "ganbench_register_schedules": "schedule",
    "ganbench_register_datasets": "dataset",
    "ganbench_register_metrics": "metric",
}


class _Manager(pluggy.PluginManager):
    """Treats undecorated ``ganbench_*`` functions as hook implementations (as pytest does), so a
    misspelled hook name is caught by ``check_pending`` instead of being silently ignored."""

    def parse_hookimpl_opts(self, plugin: Any, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("ganbench_") and callable(getattr(plugin, name, None)):
            return {}
        return opts


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    source: str  # builtin | entrypoint | cli
    provides: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    def __init__(self, plugins: Sequence[str] = (), *, autoload: bool | None = None):
        self.pm = _Manager("ganbench")
        self.pm.add_hookspecs(hookspecs)
        self.registries = Registries()
        self.info: dict[str, PluginInfo] = {}
        self.broken: dict[str, str] = {}
        self.requested = tuple(plugins)
        blocked = [p[3:] for p in plugins if p.startswith("no:")]
        for name in blocked:
            self.pm.set_blocked(name)
        for name, module in BUILTIN_PLUGINS.items():
            self._load(name, module, source="builtin", version=_own_version())
        if autoload is None:
            autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
        if autoload:
            for ep in md.entry_points(group=ENTRY_POINT_GROUP):
                dist = getattr(ep, "dist", None)
                self._load(ep.name, ep.value, source="entrypoint", version=getattr(dist, "version", "?"), loader=ep.load)
        for spec in plugins:
            if not spec.startswith("no:"):
                self._load(spec, spec, source="cli", version="")

    # -- loading ----------------------------------------------------------------------------

    def _load(self, name: str, module: str, *, source: str, version: str, loader=None) -> None:
        if self.pm.is_blocked(name) or name in self.info:
            return
        plugin = None
        try:
            plugin = loader() if loader else importlib.import_module(module)
            if not version:
                version = str(getattr(plugin, "__version__", ""))
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
            provides = self._run_registration(name)
        except Exception as exc:  # a broken plugin must never take the others down
            if plugin is not None and self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            for kind in REGISTRATION_HOOKS.values():
                self.registries[kind].remove_provider(name)
            self.broken[name] = _one_line(exc)
            for kind in REGISTRATION_HOOKS.values():
                self.registries[kind].unavailable[name] = self.broken[name]
            return
        self.info[name] = PluginInfo(name, module, version, source, provides)

    def _run_registration(self, name: str) -> dict[str, list[str]]:
        provides: dict[str, list[str]] = {}
        for hook_name, kind in REGISTRATION_HOOKS.items():
            registry = self.registries[kind]
            before = set(registry.names())
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                registry.provider = name
                try:
                    impl.function(**({"registry": registry} if "registry" in impl.argnames else {}))
                finally:
                    registry.provider = "?"
            added = sorted(set(registry.names()) - before)
            if added:
                provides[kind] = added
        return provides

    # -- observers --------------------------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook; a failing observer is reported on stderr, never fatal."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                print(f"ganbench: observer {impl.plugin_name}.{hook_name} failed: {_one_line(exc)}", file=sys.stderr)

    # -- shortcuts --------------------------------------------------------------------------

    def __getattr__(self, item: str) -> Any:
        # pm.losses, pm.architectures ... -> the registries
        if item in ("architectures", "losses", "schedules", "datasets", "metrics"):
            return getattr(self.registries, item)
        raise AttributeError(item)


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def _own_version() -> str:
    from . import __version__
    return __version__


_cache: dict[tuple[str, ...], PluginManager] = {}


def get_plugin_manager(plugins: Iterable[str] = ()) -> PluginManager:
    """The plugin manager for these ``-p`` options (built once per process)."""
    key = tuple(plugins)
    if key not in _cache:
        _cache[key] = PluginManager(key)
    return _cache[key]
