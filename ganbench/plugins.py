"""The plugin manager: built-ins, then installed entry points, then ``-p module`` plugins.

Loading fails safe. Each plugin's registration hooks run against the shared registries with the
plugin recorded as provider; if anything goes wrong (import error, invalid or misspelled hook,
duplicate component name, an exception while registering) everything that plugin added is
removed, the plugin is unregistered and reported in ``broken`` by name with its error. The other
plugins keep working; only a run that asks for a component the broken plugin would have provided
fails, and its error names the broken plugin.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
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

HOOK_NAMES = sorted(n for n in vars(hookspecs) if n.startswith("ganbench_"))


class _Manager(pluggy.PluginManager):
    """Treats undecorated ``ganbench_*`` functions as hook implementations (as pytest does), so a
    misspelled hook name is caught by ``check_pending`` instead of being silently ignored."""

    def parse_hookimpl_opts(self, plugin: Any, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("ganbench_") and _is_function(plugin, name):
            return {}
        return opts


def _is_function(plugin: Any, name: str) -> bool:
    """A function or method pluggy can bind; read statically so no property of the plugin runs."""
    try:
        attr = inspect.getattr_static(plugin, name)
    except AttributeError:
        return False
    return isinstance(attr, (staticmethod, classmethod)) or inspect.isroutine(attr)


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    source: str  # builtin | entrypoint | cli | api
    provides: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    """Loads the built-ins, then the ``ganbench`` entry points, then the ``-p`` modules.

    ``plugins`` are ``-p`` options: ``NAME`` loads the installed plugin of that entry-point name,
    ``module.path`` loads a module, ``no:NAME`` blocks plugin NAME (built-ins included). ``autoload=None`` loads entry points unless the environment variable
    ``GANBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value.
    """

    def __init__(self, plugins: Sequence[str] = (), *, autoload: bool | None = None):
        self.pm = _Manager("ganbench")
        self.pm.add_hookspecs(hookspecs)
        self.registries = Registries()
        self.info: dict[str, PluginInfo] = {}
        self.broken: dict[str, str] = {}
        self.requested = tuple(plugins)
        for spec in plugins:
            if spec.startswith("no:"):
                self.pm.set_blocked(spec[3:])
        for name, module in BUILTIN_PLUGINS.items():
            self._load(name, module, source="builtin", version=_own_version())
        if autoload is None:
            autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
        if autoload:
            self._load_entry_points()
        for spec in plugins:
            if not spec.startswith("no:"):
                self._load_option(spec)

    # -- loading ----------------------------------------------------------------------------

    def load(self, plugin: Any, name: str | None = None) -> bool:
        """Load one more plugin: a ``-p`` option (entry-point name or module path) or an object
        with hook functions.

        Returns True when it loaded; otherwise it is in :attr:`broken` (or blocked). A plugin that
        failed earlier may be loaded again under the same name once it is fixed.
        """
        if isinstance(plugin, str):
            return self._load_option(plugin) if name is None else self._load(name, plugin, source="cli", version="")
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        return self._load(name, getattr(plugin, "__name__", name), source="api", version="", loader=lambda: plugin)

    def _load_option(self, spec: str) -> bool:
        """``-p SPEC``: an installed plugin's entry-point name (as pytest allows, so one plugin can
        be loaded with autoload off) or else a module path."""
        if spec in self.info:
            return True  # e.g. an entry point that autoload already loaded
        installed = sorted(md.entry_points(group=ENTRY_POINT_GROUP, name=spec), key=lambda ep: ep.value)
        if installed:
            return self._load_entry_point(installed[0])
        return self._load(spec, spec, source="cli", version="")

    def _load_entry_point(self, ep: md.EntryPoint) -> bool:
        dist = getattr(ep, "dist", None)
        return self._load(ep.name, ep.value, source="entrypoint", version=getattr(dist, "version", "") or "",
                          loader=ep.load)

    def _load_entry_points(self) -> None:
        # sorted, so which of two conflicting plugins wins does not depend on install order
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value)):
            self._load_entry_point(ep)

    def _load(self, name: str, module: str, *, source: str, version: str, loader: Any = None) -> bool:
        if self.pm.is_blocked(name):
            return False
        if name in self.info:
            if self.info[name].module == module:
                return True  # asked for twice (entry point and -p, or -p twice): already loaded
            # keyed by the module too: the name itself belongs to the plugin that did load
            self._mark_broken(f"{name} ({module})", f"the plugin name {name!r} is already taken by "
                                                    f"{self.info[name].module}; {module} was not loaded")
            return False
        try:
            plugin = loader() if loader else importlib.import_module(module)
            if self.pm.is_registered(plugin):
                return True  # the same module under another name (e.g. -p of an installed plugin)
            self.pm.register(plugin, name=name)  # validates every hook implementation first
            self._check_hook_names(name)
            provides = self._run_registration(name)
        except Exception as exc:  # a broken plugin must never take the others down
            self._unload(name)
            self._mark_broken(name, _one_line(exc))
            return False
        self._forget_broken(name)
        self.info[name] = PluginInfo(name, module, version or str(getattr(plugin, "__version__", "")),
                                     source, provides)
        return True

    def _check_hook_names(self, name: str) -> None:
        """A hook name that matches no spec is a misspelling: fail now, suggesting the spec meant.
        (pluggy's ``check_pending`` finds the same, without the suggestion; it stays as a backstop.)"""
        for caller in self.pm.get_hookcallers(self.pm.get_plugin(name)) or ():
            impls = [i for i in caller.get_hookimpls() if i.plugin_name == name and not i.optionalhook]
            if impls and not caller.has_spec():
                hint = _suggest_hook(caller.name)
                raise GanbenchError(f"unknown hook {caller.name!r} in plugin {name!r}: {hint}")
        self.pm.check_pending()

    def _unload(self, name: str) -> None:
        """Undo whatever part of a plugin's loading happened: hooks and components."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        for kind in REGISTRATION_HOOKS.values():
            self.registries[kind].remove_provider(name)

    def _mark_broken(self, name: str, error: str) -> None:
        self.broken[name] = error
        for kind in REGISTRATION_HOOKS.values():  # so "unknown loss" can name the plugin that failed
            self.registries[kind].unavailable[name] = error

    def _forget_broken(self, name: str) -> None:
        self.broken.pop(name, None)
        for kind in REGISTRATION_HOOKS.values():
            self.registries[kind].unavailable.pop(name, None)

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


def _suggest_hook(name: str) -> str:
    # compared without the shared "ganbench_" prefix, which would make every name look close
    tails = {h.removeprefix("ganbench_"): h for h in HOOK_NAMES}
    close = difflib.get_close_matches(name.removeprefix("ganbench_"), list(tails), n=1, cutoff=0.6)
    return f"did you mean {tails[close[0]]!r}?" if close else f"known hooks: {', '.join(HOOK_NAMES)}"


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a GanbenchError is already a message for the user, so no type).
    Multi-line messages (pluggy's) are joined, not cut: their later lines say what is wrong."""
    message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, GanbenchError):
        return message
    return f"{type(exc).__name__}: {message}".rstrip(": ")


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
