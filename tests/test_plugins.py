"""The plugin host: discovery, isolation of broken plugins, duplicates, third-party distributions."""
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench import hookspecs
from maxrf_bench.plugins import Registry
from maxrf_bench.testing import check_method, registered_plugin

BIN = Path(sys.executable).parent


class Doubler:
    """A plugin object: registers a method and a metric."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs, factor: float = 1.0):
            return factor * mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "nearest")
        register(mb.Method("nearest-x", run, "nearest neighbour times a factor",
                           defaults={"factor": 1.0}, presets={"fast": {"factor": 1.0}}))

    @mb.hookimpl
    def maxrf_bench_register_metrics(self, register):
        register(mb.Metric("maxerr", lambda sr, t, lr, op: (np.abs(sr - t).max((1, 2)), float(np.abs(sr - t).max())),
                           "largest absolute error"))


class Broken:
    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        raise RuntimeError("boom in register")


class Clash:
    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        register(mb.Method("bicubic", lambda inputs: None, "an impostor"))


def test_builtins_arrive_through_entry_points():
    reg = mb.get_registry()
    assert reg.owner_of("methods", "bicubic") == "bicubic"
    assert set(reg.plugins["metrics"].registered["metrics"]) >= {"rmse", "psnr", "ssim", "sam", "ergas", "consistency"}
    assert reg.plugins["bicubic"].version == mb.__version__


def test_registered_plugin_runs_through_the_grid(tmp_path):
    with registered_plugin(Doubler(), "doubler"):
        gain = check_method("nearest-x", tmp_path)
        assert "maxerr" in mb.get_metrics()
    assert gain < 0  # nearest neighbour is worse than bicubic on a smooth-edged scene
    assert "nearest-x" not in mb.get_methods()  # unregistered afterwards


def test_broken_plugin_is_reported_and_skipped(monkeypatch):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)
    reg = Registry(load_entry_points=False)
    reg.add(Broken(), "broken")
    reg.add(Doubler(), "doubler")
    assert list(reg.all("methods")) == ["nearest-x"]
    assert [(f.plugin, f.stage) for f in reg.failures] == [("broken", "register methods")]
    assert "boom in register" in reg.failures[0].error


def test_strict_mode_makes_failures_fatal(monkeypatch):
    monkeypatch.setenv("MAXRF_BENCH_STRICT_PLUGINS", "1")
    reg = Registry(load_entry_points=False)
    reg.add(Broken(), "broken")
    with pytest.raises(mb.PluginError, match="plugin 'broken' failed to register methods: RuntimeError: boom"):
        reg.all("methods")


def test_duplicate_name_names_both_plugins(monkeypatch):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)
    reg = Registry()
    reg.add(Clash(), "clash")
    assert reg.get("methods", "bicubic").description.startswith("bicubic interpolation")
    assert any("'bicubic' from plugin 'clash' is refused: it is a built-in name (plugin 'bicubic' "
               "of maxrf-bench)" in f.error and f.item == "method 'bicubic'" for f in reg.failures)


def test_misspelled_hook_is_caught(monkeypatch):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)

    class Typo:
        @mb.hookimpl
        def maxrf_bench_register_method(self, register):  # missing "s"
            pass

    reg = Registry(load_entry_points=False)
    reg.add(Typo(), "typo")
    assert reg.failures and reg.failures[0].stage == "register"
    assert "typo" not in reg.plugins


def test_unknown_names_list_the_known_ones():
    with pytest.raises(mb.UnknownNameError, match=r"unknown method 'nope'; expected one of: .*bicubic"):
        mb.get_method("nope")


def test_every_hook_is_documented_with_its_signature():
    specs = {n: f for n, f in vars(hookspecs).items() if n.startswith("maxrf_bench_")}
    assert set(specs) == {"maxrf_bench_register_methods", "maxrf_bench_register_datasets",
                          "maxrf_bench_register_metrics", "maxrf_bench_register_commands"}
    for name, func in specs.items():
        params = list(inspect.signature(func).parameters)
        assert params == (["cli"] if name.endswith("commands") else ["register"])
        assert func.__doc__ and "Called once per plugin" in func.__doc__


def _make_distribution(root: Path, name: str, module: str, source: str, version="1.2.3") -> None:
    """Lay out an installed distribution (module + .dist-info with an entry point) under root."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[maxrf_bench]\n{module} = {module}\n")
    (info / "RECORD").write_text("")


THIRD_PARTY = """
    import maxrf_bench as mb

    def run(inputs, gain: float = 1.0):
        up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
        return inputs.operator.project(gain * up, inputs.maps_lr.values)

    @mb.hookimpl
    def maxrf_bench_register_methods(register):
        register(mb.Method("bilinear-proj", run, "bilinear, then Eq. 10 projection",
                           defaults={"gain": 1.0}))
"""


def _env(path: Path, **extra) -> dict:
    # a private catalogue cache per test, so no test reads (or leaves) another's
    env = dict(os.environ, PYTHONPATH=str(path), MAXRF_BENCH_CACHE_DIR=str(path.parent / "cache"), **extra)
    env.pop("MAXRF_BENCH_STRICT_PLUGINS", None) if "MAXRF_BENCH_STRICT_PLUGINS" not in extra else None
    env.pop("MAXRF_BENCH_EAGER_PLUGINS", None) if "MAXRF_BENCH_EAGER_PLUGINS" not in extra else None
    return env


def test_separate_distribution_adds_a_method_to_the_cli(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _make_distribution(site, "maxrf-bench-bilinear", "maxrf_bilinear_plugin", THIRD_PARTY)
    scan = mb.save_scan(mb.make_scan(**__import__("conftest").toy_scene(32)), tmp_path / "toy.zarr")
    env = _env(site)
    out = subprocess.run([BIN / "maxrf-bench", "plugins"], env=env, capture_output=True, text=True)
    assert "maxrf_bilinear_plugin 1.2.3 (maxrf-bench-bilinear)" in out.stdout
    assert "methods: bilinear-proj" in out.stdout
    res = subprocess.run([BIN / "maxrf-bench", "run", "-m", "bicubic,bilinear-proj", "-d", str(scan),
                          "-o", str(tmp_path / "run"), "-q"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    results = mb.read_results(tmp_path / "run")
    assert results.value("toy", "bilinear-proj", "consistency") < 1e-6
    assert results.value("toy", "bicubic", "consistency") > 1e-3


def test_broken_distribution_does_not_take_the_cli_down(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _make_distribution(site, "maxrf-bench-broken", "maxrf_broken_plugin", "raise ImportError('missing dependency xyz')\n")
    res = subprocess.run([BIN / "maxrf-bench", "list", "methods"], env=_env(site), capture_output=True, text=True)
    assert res.returncode == 0 and "bicubic" in res.stdout
    res = subprocess.run([BIN / "maxrf-bench", "plugins"], env=_env(site), capture_output=True, text=True)
    assert "maxrf_broken_plugin: failed to import: ImportError: missing dependency xyz" in res.stdout
    res = subprocess.run([BIN / "maxrf-bench", "list", "methods"], capture_output=True, text=True,
                         env=_env(site, MAXRF_BENCH_STRICT_PLUGINS="1"))
    assert res.returncode != 0 and "missing dependency xyz" in res.stderr


# --- registry fixes (issue 12) ------------------------------------------------------

def test_second_registration_of_one_object_leaves_the_first(monkeypatch):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)
    reg = Registry(load_entry_points=False)
    plugin = Doubler()
    reg.add(plugin, "by-entry-point")
    reg.add(plugin, "by-module-name")  # what registered_plugin used to do for an installed plugin
    assert "nearest-x" in reg.all("methods")  # the first registration is intact
    assert reg.owner_of("methods", "nearest-x") == "by-entry-point"
    assert reg.pm.get_plugin("by-entry-point") is plugin and "by-module-name" not in reg.plugins
    assert [f.plugin for f in reg.failures] == ["by-module-name"]
    assert "already registered as plugin 'by-entry-point'" in reg.failures[0].error


def _method_plugin(run, defaults):
    class P:
        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            register(mb.Method("sig-test", run, "x", defaults=defaults))
    return P()


@pytest.mark.parametrize("run, defaults, error", [
    (lambda inputs, strength=1.0: None, {"strenght": 1.0}, "defaults name ['strenght'], which run() does not accept"),
    (lambda inputs, strength: None, {}, "run() requires ['strength']"),
    (lambda inputs, strength=1.0: None, {"strength": 2.0}, None),
    (lambda inputs, **kw: None, {"anything": 1}, None),
])
def test_defaults_must_match_run(monkeypatch, run, defaults, error):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)
    reg = Registry(load_entry_points=False)
    reg.add(_method_plugin(run, defaults), "sig")
    methods = reg.all("methods")
    if error is None:
        assert "sig-test" in methods and not reg.failures
    else:
        assert "sig-test" not in methods
        assert error in reg.failures[0].error and "refused" in reg.failures[0].error


def test_registered_plugin_raises_the_refusal():
    with pytest.raises(mb.PluginError, match="strenght"):
        with registered_plugin(_method_plugin(lambda inputs, strength=1.0: None, {"strenght": 1.0}), "typo"):
            pass
    assert "typo" not in mb.get_registry().plugins


def test_unknown_method_points_at_failed_plugins(monkeypatch):
    monkeypatch.delenv("MAXRF_BENCH_STRICT_PLUGINS", raising=False)
    reg = Registry(load_entry_points=False)
    reg.add(Doubler(), "doubler")
    reg._fail("my_plugin", "import", ImportError("No module named 'scipy_extra'"))
    with pytest.raises(mb.UnknownNameError) as info:
        reg.get("methods", "my-method")
    msg = str(info.value)
    assert "unknown method 'my-method'; expected one of: nearest-x" in msg
    assert "1 plugin(s) failed to load (my_plugin)" in msg and "maxrf-bench plugins" in msg


INSTALLED = """
    import maxrf_bench as mb

    def run(inputs, gain: float = 1.0):
        return gain * mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")

    @mb.hookimpl
    def maxrf_bench_register_methods(register):
        register(mb.Method("bilinear-installed", run, "bilinear", defaults={"gain": 1.0}))
"""

AUTHOR_TEST = """
import maxrf_bench as mb
from maxrf_bench.testing import check_method, registered_plugin
import maxrf_installed_plugin

def test_a_first_use(tmp_path):
    mb.get_methods()  # the entry point registers the module under its entry-point name first

def test_b_five_lines(tmp_path):
    with registered_plugin(maxrf_installed_plugin):
        gain = check_method("bilinear-installed", tmp_path)
    assert gain < 1.0
    assert "bilinear-installed" in mb.get_methods()  # the entry point's registration survives

def test_c_again(tmp_path):
    with registered_plugin(maxrf_installed_plugin):
        check_method("bilinear-installed", tmp_path)
"""


def test_registered_plugin_works_for_an_installed_plugin(tmp_path):
    """The five-line author test passes when the plugin is pip-installed (entry point present)."""
    site = tmp_path / "site"
    site.mkdir()
    _make_distribution(site, "maxrf-installed", "maxrf_installed_plugin", INSTALLED)
    (tmp_path / "test_author.py").write_text(AUTHOR_TEST)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                          str(tmp_path / "test_author.py")], env=_env(site), capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 passed" in res.stdout


# --- start-up: the catalogue cache and lazy commands ------------------------------------

MARKED = """
    import os, pathlib
    pathlib.Path(os.environ["MARKER"]).write_text("imported")
    import click
    import maxrf_bench as mb

    def run(inputs):
        return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")

    @mb.hookimpl
    def maxrf_bench_register_methods(register):
        register(mb.Method("marked", run, "VERSION_TEXT"))

    @mb.hookimpl
    def maxrf_bench_register_commands(cli):
        @cli.command("hello")
        def hello():
            \"\"\"Say hello from a lazily imported plugin.\"\"\"
            click.echo("hello from the plugin")
"""


def test_catalogue_cache_and_lazy_commands(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _make_distribution(site, "maxrf-marked", "maxrf_marked_plugin", MARKED.replace("VERSION_TEXT", "first"))
    marker = tmp_path / "imported"
    env = _env(site, MARKER=str(marker))

    def cli(*args):
        res = subprocess.run([BIN / "maxrf-bench", *args], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "marked" in cli("list", "methods") and marker.exists()  # first start: loads and caches
    marker.unlink()
    out = cli("list", "methods")
    assert "marked    first" in out and not marker.exists()  # from the cache: not imported
    help_text = cli("--help")
    assert "hello" in help_text and "Say hello from a lazily imported plugin." in help_text
    assert not marker.exists()
    assert "hello from the plugin" in cli("hello") and marker.exists()  # imported when it runs
    marker.unlink()
    # editing the plugin invalidates the cache
    module = site / "maxrf_marked_plugin.py"
    module.write_text(textwrap.dedent(MARKED.replace("VERSION_TEXT", "second")))
    os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
    assert "marked    second" in cli("list", "methods") and marker.exists()
    marker.unlink()
    # installing another plugin invalidates it too
    _make_distribution(site, "maxrf-bench-bilinear", "maxrf_bilinear_plugin", THIRD_PARTY)
    assert "bilinear-proj" in cli("list", "methods") and marker.exists()
    # eager mode (the old start-up) imports every plugin even for --help
    marker.unlink()
    env["MAXRF_BENCH_EAGER_PLUGINS"] = "1"
    assert "hello" in cli("--help") and marker.exists()


def test_quiet_silences_progress(tmp_path):
    import io

    from maxrf_bench import progress

    out = io.StringIO()
    bar = progress.progress_bar("toy / m", stream=out, force=True, delay=0)
    for i in range(5):
        bar(i + 1, 5, "loss 0.1")
    text = out.getvalue()
    assert "toy / m" in text and "5/5" in text and re.search(r"\[\d\d:\d\d<\d\d:\d\d\]", text)
    assert "loss 0.1" in text
    quiet = io.StringIO()
    progress.progress_bar("x", stream=quiet, delay=0)(1, 2)  # not a terminal: nothing
    assert quiet.getvalue() == ""
    progress.set_quiet(True)
    try:
        silenced = io.StringIO()
        progress.progress_bar("x", stream=silenced, force=True, delay=0)(1, 2)
        assert silenced.getvalue() == ""
    finally:
        progress.set_quiet(False)


NEEDS_DEP = """
    import maxrf_missing_dep_xyz  # noqa: F401  (installed later)
    import maxrf_bench as mb

    @mb.hookimpl
    def maxrf_bench_register_methods(register):
        register(mb.Method("needs-dep", lambda inputs: None, "a method with a dependency"))
"""


def test_installing_a_missing_dependency_is_seen_at_the_next_start(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _make_distribution(site, "maxrf-needs-dep", "maxrf_needs_dep", NEEDS_DEP)
    env = _env(site)

    def methods():
        res = subprocess.run([BIN / "maxrf-bench", "list", "methods"], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "needs-dep" not in methods()
    (site / "maxrf_missing_dep_xyz.py").write_text("")  # pip install the dependency
    assert "needs-dep" in methods()
