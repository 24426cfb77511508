"""Plugin discovery and the typed registry facade.

Plugins come from the entry-point group ``maxrf_bench`` (the built-ins too, exactly as a
third party's).  A plugin that fails to import or to register is recorded in
:attr:`Registry.failures` and skipped, so one broken plugin never takes the CLI down; set
``MAXRF_BENCH_STRICT_PLUGINS=1`` to make any such failure fatal (for plugin authors).

Nothing outside this module touches ``pm.hook``: use :func:`get_methods`,
:func:`get_datasets`, :func:`get_metrics`, :func:`get_registry`.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError
from .types import Dataset, Method, Metric

ENTRY_POINT_GROUP = "maxrf_bench"
STRICT_ENV = "MAXRF_BENCH_STRICT_PLUGINS"
KINDS = {"methods": Method, "datasets": Dataset, "metrics": Metric}


@dataclass
class PluginInfo:
    """What the registry knows of one plugin."""

    name: str
    version: str = ""
    distribution: str = ""
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    commands: list[str] = field(default_factory=list)


@dataclass
class PluginFailure:
    plugin: str
    stage: str  # "import", "register methods", …
    error: str


def strict_mode() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Registry:
    """Loads plugins once and keeps every registered item with the plugin that gave it."""

    def __init__(self, *, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager("maxrf_bench")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.items: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        self.owner: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        self._collected = False
        if load_entry_points:
            self._load_entry_points()

    # --- discovery ------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        seen = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = getattr(ep, "dist", None)
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not kill the host
                self._fail(ep.name, "import", exc)
                continue
            self.add(obj, ep.name, version=dist.version if dist else "",
                     distribution=dist.metadata["Name"] if dist else "")

    def add(self, plugin: object, name: str, *, version: str = "", distribution: str = "") -> None:
        """Register a plugin object (a module or any object with hook implementations)."""
        if name in self.plugins:
            raise PluginError(f"a plugin named {name!r} is already registered")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, "register", exc)
            return
        self.plugins[name] = PluginInfo(name, version, distribution)
        if self._collected:
            self._collect_from(name)

    def remove(self, name: str) -> None:
        """Unregister a plugin and forget what it registered (used by tests)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.plugins.pop(name, None)
        for kind in KINDS:
            for item, owner in list(self.owner[kind].items()):
                if owner == name:
                    del self.owner[kind][item]
                    del self.items[kind][item]

    def _fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.failures.append(PluginFailure(plugin, stage, msg))
        if strict_mode():
            raise PluginError(
                f"plugin {plugin!r} failed to {stage}: {msg} ({STRICT_ENV} is set)\n"
                + "".join(traceback.format_exception(exc))
            ) from exc

    # --- collection -----------------------------------------------------------------
    def _ensure(self) -> None:
        if not self._collected:
            self._collected = True
            for name in list(self.plugins):
                self._collect_from(name)

    def _collect_from(self, plugin_name: str) -> None:
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"maxrf_bench_register_{kind}")
            for impl in caller.get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                try:
                    impl.function(register=self._register_fn(kind, plugin_name))
                except Exception as exc:  # noqa: BLE001
                    self._fail(plugin_name, f"register {kind}", exc)

    def _register_fn(self, kind: str, plugin_name: str) -> Callable[[Any], None]:
        cls = KINDS[kind]

        def register(item):
            if not isinstance(item, cls):
                raise TypeError(
                    f"register() for {kind} expects a maxrf_bench.{cls.__name__}, "
                    f"found {type(item).__name__}"
                )
            if item.name in self.items[kind]:
                other = self.owner[kind][item.name]
                raise PluginError(
                    f"{kind[:-1]} {item.name!r} from plugin {plugin_name!r} is refused: "
                    f"plugin {other!r} already registered that name"
                )
            self.items[kind][item.name] = item
            self.owner[kind][item.name] = plugin_name
            self.plugins[plugin_name].registered[kind].append(item.name)

        return register

    def add_commands(self, cli) -> None:
        """Let every plugin add click commands to ``cli``; failures are recorded."""
        impls = self.pm.hook.maxrf_bench_register_commands.get_hookimpls()
        for impl in impls:
            before = set(cli.commands)
            proxy = _CommandGuard(cli, impl.plugin_name)
            try:
                impl.function(cli=proxy)
            except Exception as exc:  # noqa: BLE001
                self._fail(impl.plugin_name, "register commands", exc)
                continue
            info = self.plugins.get(impl.plugin_name)
            if info is not None:
                info.commands.extend(sorted(set(cli.commands) - before))

    # --- typed facade ---------------------------------------------------------------
    def get(self, kind: str, name: str):
        self._ensure()
        try:
            return self.items[kind][name]
        except KeyError:
            raise UnknownNameError(kind[:-1], name, list(self.items[kind])) from None

    def all(self, kind: str) -> dict[str, Any]:
        self._ensure()
        return dict(self.items[kind])

    def owner_of(self, kind: str, name: str) -> str:
        self._ensure()
        return self.owner[kind][name]


class _CommandGuard:
    """Wraps the root click group so a plugin cannot silently replace a command."""

    def __init__(self, group, plugin_name):
        self._group, self._plugin = group, plugin_name

    def __getattr__(self, name):
        return getattr(self._group, name)

    def add_command(self, cmd, name=None):
        name = name or cmd.name
        if name in self._group.commands:
            raise PluginError(f"command {name!r} from plugin {self._plugin!r} is refused: it exists")
        self._group.add_command(cmd, name)

    def command(self, *args, **kwargs):
        def deco(f):
            import click

            cmd = click.command(*args, **kwargs)(f)
            self.add_command(cmd)
            return cmd

        return deco

    def group(self, *args, **kwargs):
        def deco(f):
            import click

            grp = click.group(*args, **kwargs)(f)
            self.add_command(grp)
            return grp

        return deco


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (plugins are loaded on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded plugins (next use reloads them from entry points)."""
    global _REGISTRY
    _REGISTRY = None


def get_methods() -> dict[str, Method]:
    return get_registry().all("methods")


def get_datasets() -> dict[str, Dataset]:
    return get_registry().all("datasets")


def get_metrics() -> dict[str, Metric]:
    return get_registry().all("metrics")


def get_method(name: str) -> Method:
    return get_registry().get("methods", name)


def get_dataset(name: str) -> Dataset:
    return get_registry().get("datasets", name)


def get_metric(name: str) -> Metric:
    return get_registry().get("metrics", name)
