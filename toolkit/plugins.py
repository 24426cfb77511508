"""Plugin discovery, the typed registry facade, and the catalogue cache that keeps start-up fast.

Plugins come from the entry-point group ``maxrf_bench`` (the built-ins too, exactly as a
third party's).  A plugin that fails to import or to register is recorded in
:attr:`Registry.failures` and skipped, so one broken plugin never takes the CLI down; set
``MAXRF_BENCH_STRICT_PLUGINS=1`` to make any such failure fatal (for plugin authors).

Nothing outside this module touches ``pm.hook``: use :func:`get_methods`,
:func:`get_datasets`, :func:`get_metrics`, :func:`get_registry`.

**Start-up.**  Importing every plugin (and numpy, xarray, scipy… behind them) takes seconds,
but ``maxrf-bench --help`` and ``maxrf-bench list methods`` need only names and one-line
descriptions.  :func:`catalog` keeps those in a small JSON file (``~/.cache/maxrf-bench``,
or ``$MAXRF_BENCH_CACHE_DIR``), keyed by :func:`catalog_key`: the entry points, the versions
of the distributions that provide them, and the size and modification time of every file of
their top-level packages (and of this host).  Installing, removing, upgrading or editing a
plugin changes the key, and the next start-up loads every plugin once and rewrites the file.
A catalogue that records a failed plugin is not reused (the fix, such as installing a
missing dependency, may change nothing the key sees).
``MAXRF_BENCH_EAGER_PLUGINS=1`` switches the cache off and imports every plugin at start-up
(the behaviour before the cache; ``tests/benchmarks/bench_startup.py`` compares both).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "maxrf_bench"
STRICT_ENV = "MAXRF_BENCH_STRICT_PLUGINS"
EAGER_ENV = "MAXRF_BENCH_EAGER_PLUGINS"
CACHE_ENV = "MAXRF_BENCH_CACHE_DIR"
CACHE_FORMAT = 1
KINDS = ("methods", "datasets", "metrics")


def _kind_class(kind: str):
    from .types import Dataset, Method, Metric  # xarray behind it: only when something registers

    return {"methods": Method, "datasets": Dataset, "metrics": Metric}[kind]


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
    stage: str  # "import", "register", "register methods", …
    error: str
    item: str = ""  # "method 'x'" when only that item was refused (the plugin's others stay)

    def describe(self) -> str:
        """One line: what failed and what was skipped."""
        if self.item:
            return (f"plugin {self.plugin!r}: {self.item} was refused (its other items are kept): "
                    f"{self.error}")
        return f"plugin {self.plugin!r} failed to {self.stage} and was skipped: {self.error}"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def strict_mode() -> bool:
    return _flag(STRICT_ENV)


def eager_mode() -> bool:
    return _flag(EAGER_ENV)


#: the distribution whose entry points are the built-in plugins
BUILTIN_DISTRIBUTION = "maxrf-bench"


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    try:
        return dist.metadata["Name"] or "" if dist is not None else ""
    except Exception:  # noqa: BLE001 - a broken METADATA file
        return ""


def is_builtin(ep) -> bool:
    """An entry point of this distribution (the built-in plugins)."""
    return _dist_name(ep).lower().replace("_", "-") == BUILTIN_DISTRIBUTION


def _entry_points() -> list:
    """The plugins' entry points in load order: the built-ins first, then the third parties,
    each in name order.  So a built-in name is taken before any third party can ask for it,
    whatever the third party's entry point is called."""
    seen, out = set(), []
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                 key=lambda e: (not is_builtin(e), e.name, _dist_name(e)))
    for ep in eps:
        key = (ep.name, _dist_name(ep))
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        out.append(ep)
    return out


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
        self._commands: dict[str, tuple[str, Any]] | None = None
        if load_entry_points:
            self._load_entry_points()

    # --- discovery ------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        for ep in _entry_points():
            dist = getattr(ep, "dist", None)
            dist_name = _dist_name(ep)
            if ep.name in self.plugins:  # two distributions use one entry-point name
                first = self.plugins[ep.name]
                why = ("built-in plugins load first" if first.distribution == BUILTIN_DISTRIBUTION
                       else "plugins load in entry-point name order, built-ins first")
                self._fail(f"{ep.name} ({dist_name or 'unknown distribution'})", "register",
                           PluginError(f"the entry-point name {ep.name!r} is taken by the plugin of "
                                       f"{first.distribution or 'an earlier distribution'}, which "
                                       f"stays ({why}); rename this entry point"))
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not kill the host
                self._fail(ep.name, "import", exc)
                continue
            self.add(obj, ep.name, version=dist.version if dist else "", distribution=dist_name)

    def add(self, plugin: object, name: str, *, version: str = "", distribution: str = "") -> None:
        """Register a plugin object (a module or any object with hook implementations).

        A failure (the object is registered already under another name, a misspelled hook)
        is recorded in :attr:`failures` and leaves every earlier registration as it was.
        """
        if name in self.plugins:
            raise PluginError(f"a plugin named {name!r} is already registered")
        if self.pm.is_registered(plugin):
            other = self.pm.get_name(plugin)
            self._fail(name, "register", PluginError(
                f"this object is already registered as plugin {other!r} (by its entry point); "
                f"it is not registered a second time under {name!r}"))
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001
            self._fail(name, "register", exc)
            return
        try:
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001 - e.g. a misspelled hook name
            self.pm.unregister(name=name)  # only what this call registered
            self._fail(name, "register", PluginError(f"{exc}{_hook_hint(plugin)}"))
            return
        self.plugins[name] = PluginInfo(name, version, distribution)
        if self._collected:
            self._collect_from(name)

    def remove(self, name: str) -> None:
        """Unregister a plugin and forget what it registered (used by tests)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        for kind in KINDS:
            for item, owner in list(self.owner[kind].items()):
                if owner == name:
                    del self.owner[kind][item]
                    del self.items[kind][item]
        self.failures = [f for f in self.failures if f.plugin != name]

    def name_of(self, plugin: object) -> str | None:
        """The name under which ``plugin`` (a module or object) is registered, or ``None``."""
        return self.pm.get_name(plugin) if self.pm.is_registered(plugin) else None

    def failures_of(self, name: str) -> list[PluginFailure]:
        return [f for f in self.failures if f.plugin == name]

    def _fail(self, plugin: str, stage: str, exc: BaseException, item: str = "") -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.failures.append(PluginFailure(plugin, stage, msg, item))
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
        cls = _kind_class(kind)

        def register(item):
            if not isinstance(item, cls):
                raise TypeError(
                    f"register() for {kind} expects a maxrf_bench.{cls.__name__}, "
                    f"found {type(item).__name__}"
                )
            if kind == "methods":
                check_method_signature(item, plugin_name)
            if item.name in self.items[kind]:
                # this item only is refused: the plugin's other items still register
                other = self.owner[kind][item.name]
                info = self.plugins.get(other)
                if info is not None and info.distribution == BUILTIN_DISTRIBUTION:
                    why = (f"it is a built-in name (plugin {other!r} of {BUILTIN_DISTRIBUTION}), "
                           "and built-in names cannot be taken")
                else:
                    why = (f"plugin {other!r} registered it first and keeps it (plugins load "
                           "built-ins first, then in entry-point name order); rename one of them")
                self._fail(plugin_name, f"register {kind}", PluginError(
                    f"{kind[:-1]} {item.name!r} from plugin {plugin_name!r} is refused: {why}"),
                    item=f"{kind[:-1]} {item.name!r}")
                return
            self.items[kind][item.name] = item
            self.owner[kind][item.name] = plugin_name
            self.plugins[plugin_name].registered[kind].append(item.name)

        return register

    # --- commands -------------------------------------------------------------------
    def plugin_commands(self, reserved: Iterable[str] = ()) -> dict[str, tuple[str, Any]]:
        """``{command name: (plugin, click command)}`` from every plugin's commands hook.

        Computed once; a name in ``reserved`` (the host's own commands) or one that an
        earlier plugin took is refused and recorded as a failure.
        """
        if self._commands is None:
            import click

            self._commands = {}
            reserved = set(reserved)
            for impl in self.pm.hook.maxrf_bench_register_commands.get_hookimpls():
                scratch = click.Group("scratch")
                taken = {n: "maxrf-bench itself" for n in reserved}
                taken.update({n: f"plugin {p!r}" for n, (p, _) in self._commands.items()})
                guard = _CommandGuard(scratch, impl.plugin_name, taken)
                try:
                    impl.function(cli=guard)
                except Exception as exc:  # noqa: BLE001
                    self._fail(impl.plugin_name, "register commands", exc)
                    continue
                for cmd_name, cmd in scratch.commands.items():
                    self._commands[cmd_name] = (impl.plugin_name, cmd)
                info = self.plugins.get(impl.plugin_name)
                if info is not None:
                    info.commands.extend(sorted(scratch.commands))
        return self._commands

    def add_commands(self, cli) -> None:
        """Add every plugin's click commands to ``cli``; failures are recorded."""
        for cmd_name, (_, cmd) in self.plugin_commands(cli.commands).items():
            if cmd_name not in cli.commands:
                cli.add_command(cmd, cmd_name)

    # --- typed facade ---------------------------------------------------------------
    def get(self, kind: str, name: str):
        self._ensure()
        try:
            return self.items[kind][name]
        except KeyError:
            hint = self.preset_hint(name) if kind == "methods" else ""
            raise UnknownNameError(kind[:-1], name, list(self.items[kind]),
                                   hint=hint or failure_hint(self.failures)) from None

    def preset_owners(self, name: str) -> list[str]:
        """The methods that have a preset ``name``."""
        self._ensure()
        return sorted(m for m, method in self.items["methods"].items() if name in method.presets)

    def preset_hint(self, name: str) -> str:
        """Where ``name`` is not a method but a preset of some (``ctx`` of ``proposed``): how
        to ask for it; '' otherwise."""
        owners = self.preset_owners(name)
        if not owners:
            return ""
        cols = ", ".join(f"'{m}[preset={name}]'" for m in owners)
        return (f"{name!r} is a preset of {', '.join(owners)}, not a method: write {cols} for "
                f"that column, or --preset {name} for the whole run")

    def all(self, kind: str) -> dict[str, Any]:
        self._ensure()
        return dict(self.items[kind])

    def owner_of(self, kind: str, name: str) -> str:
        self._ensure()
        return self.owner[kind][name]

    # --- the catalogue (what the cache keeps) -----------------------------------------
    def snapshot(self, reserved: Iterable[str] = ()) -> dict:
        """Names, one-line descriptions, plugins and failures, as plain JSON-able data."""
        self._ensure()
        commands = self.plugin_commands(reserved)
        items = {}
        for kind in KINDS:
            items[kind] = {
                n: {"description": getattr(it, "description", ""), "plugin": self.owner[kind][n],
                    "default": bool(getattr(it, "default", False))}
                for n, it in self.items[kind].items()}
        return {
            "plugins": {n: {"version": i.version, "distribution": i.distribution,
                            "registered": i.registered, "commands": i.commands}
                        for n, i in self.plugins.items()},
            "items": items,
            "commands": {n: {"plugin": p, "help": cmd.get_short_help_str(limit=10**6)}
                         for n, (p, cmd) in commands.items()},
            "failures": [vars(f) for f in self.failures],
        }


def _hook_hint(plugin: object) -> str:
    """"; did you mean …" for the misspelled hook names of ``plugin``."""
    import difflib

    known = [n for n in dir(hookspecs) if n.startswith("maxrf_bench_")]
    hints = []
    for name in dir(plugin):
        if name.startswith("maxrf_bench") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{name!r} → {close[0]!r}")
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def failure_hint(failures: list[PluginFailure]) -> str:
    """The sentence an "unknown name" error adds when some plugin did not load."""
    if not failures:
        return ""
    names = sorted({f.plugin for f in failures})
    return (f"{len(names)} plugin(s) failed to load ({', '.join(names)}), so what they register "
            "is missing; run `maxrf-bench plugins` to see why")


def check_method_signature(method, plugin_name: str = "") -> None:
    """Refuse a method whose ``defaults`` and ``run`` signature disagree.

    Every key of ``defaults`` must be a parameter of ``run`` (unless ``run`` takes
    ``**kwargs``), so a typo such as ``strenght`` is an error at registration instead of a
    value that is silently never used; and every parameter of ``run`` without a default
    value must be in ``defaults``, or the method could not be called; and every keyword of
    ``run`` with a default value must be in ``defaults`` too (unless its name starts with
    ``_``), or no ``--set`` could ever change it.
    """
    try:
        sig = inspect.signature(method.run)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    params = list(sig.parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]  # the MethodInputs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    who = f"method {method.name!r}" + (f" from plugin {plugin_name!r}" if plugin_name else "")
    unknown = sorted(set(method.defaults) - named)
    if unknown:
        raise PluginError(
            f"{who} is refused: defaults name {unknown}, which run() does not accept "
            f"(run takes: {', '.join(sorted(named)) or 'no parameters'}); fix the name, add it to "
            "run's signature, or let run take **kwargs")
    required = sorted(p.name for p in params if p.default is p.empty
                      and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                      and p.name not in method.defaults)
    if required:
        raise PluginError(f"{who} is refused: run() requires {required}, which defaults does not "
                          "give a value")
    hidden = sorted(p.name for p in params if p.default is not p.empty
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                    and p.name not in method.defaults and not p.name.startswith("_"))
    if hidden:
        raise PluginError(f"{who} is refused: run() takes {hidden} with a default value, which "
                          "defaults does not list, so no --set could change them; add them to "
                          "defaults (or name them with a leading '_' to keep them private)")


class _CommandGuard:
    """Wraps a click group so a plugin cannot silently replace a command."""

    def __init__(self, group, plugin_name, taken: dict[str, str] | None = None):
        self._group, self._plugin, self._taken = group, plugin_name, dict(taken or {})

    def __getattr__(self, name):
        return getattr(self._group, name)

    def add_command(self, cmd, name=None):
        name = name or cmd.name
        if name in self._group.commands or name in self._taken:
            owner = self._taken.get(name, f"plugin {self._plugin!r} itself")
            raise PluginError(f"command {name!r} from plugin {self._plugin!r} is refused: it exists "
                              f"({owner} registered it first and keeps it)")
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


def get_methods():
    """``{name: maxrf_bench.Method}`` of every registered method."""
    return get_registry().all("methods")


def get_datasets():
    return get_registry().all("datasets")


def get_metrics():
    return get_registry().all("metrics")


def get_method(name: str):
    return get_registry().get("methods", name)


def get_dataset(name: str):
    return get_registry().get("datasets", name)


def get_metric(name: str):
    return get_registry().get("metrics", name)


# --- the catalogue cache ------------------------------------------------------------

def _package_files(top: str) -> list[Path]:
    """Every file of the importable top-level module or package ``top`` (found, not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        files = []
        for loc in spec.submodule_search_locations:
            for root, dirs, names in os.walk(loc):
                dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
                files.extend(Path(root, n) for n in names
                             if n.endswith((".py", ".pyi", ".so", ".pyd", ".json", ".toml")))
        return sorted(files)
    return [Path(spec.origin)] if spec.origin and os.path.exists(spec.origin) else []


def catalog_key(entry_points: list | None = None) -> str:
    """The *catalogue key*: changes when a plugin is installed, removed, upgraded or edited.

    Hashes each entry point (name, target, distribution and version), and the path, size and
    modification time of every file of the top-level packages the distributions provide
    (``top_level.txt`` where the build backend wrote it, else the entry point's own package)
    and of this host package.  Only ``stat`` calls: no plugin is imported.
    """
    eps = _entry_points() if entry_points is None else entry_points
    h = hashlib.sha256()
    h.update(f"{CACHE_FORMAT}|{sys.version_info[:2]}|{sys.prefix}\n".encode())
    tops = {__name__.split(".")[0]}
    for ep in eps:
        dist = getattr(ep, "dist", None)
        h.update(f"{ep.name}={ep.value}|{dist.metadata['Name'] if dist else ''}|"
                 f"{dist.version if dist else ''}\n".encode())
        tops.add(ep.value.split(":")[0].split(".")[0])
        if dist is not None:
            try:
                top_level = dist.read_text("top_level.txt") or ""
            except OSError:
                top_level = ""
            tops.update(t.strip() for t in top_level.split() if t.strip())
    for top in sorted(tops):
        for path in _package_files(top):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "maxrf-bench"


def _cache_file() -> Path:
    env_id = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / f"plugins-{env_id}.json"


@dataclass
class Catalog:
    """What the plugins registered, as names and descriptions only (no plugin imported).

    ``items[kind][name]`` = ``{"description", "plugin", "default"}``; ``commands[name]`` =
    ``{"plugin", "help"}``; ``failures`` = ``[{"plugin", "stage", "error"}]``.  ``cached``
    tells whether it came from the cache file.
    """

    plugins: dict
    items: dict
    commands: dict
    failures: list
    cached: bool = False


def write_catalog(registry: Registry, reserved: Iterable[str] = (), key: str | None = None) -> dict:
    """Snapshot ``registry`` into the cache file (best effort: an unwritable cache is skipped)."""
    data = registry.snapshot(reserved)
    if eager_mode():  # the start-up before the cache: nothing is written
        return data
    try:
        from .atomic import atomic_write_text

        atomic_write_text(_cache_file(), json.dumps({"key": key or catalog_key(), "catalog": data}))
    except OSError:
        pass
    return data


def catalog(reserved: Iterable[str] = ()) -> Catalog:
    """The plugins' catalogue: from the cache when its key still matches, else by loading
    every plugin once (and rewriting the cache).  Strict and eager modes never use the cache."""
    key = None
    if not (strict_mode() or eager_mode()):
        key = catalog_key()
        try:
            cached = json.loads(_cache_file().read_text())
            # a catalogue with failures is never reused: the cure (installing a missing
            # dependency) changes nothing the key sees
            if cached.get("key") == key and not cached["catalog"].get("failures"):
                return Catalog(**cached["catalog"], cached=True)
        except (OSError, ValueError, TypeError, KeyError):
            pass
    data = write_catalog(get_registry(), reserved, key=key)
    return Catalog(**data)
