"""What a plugin author meets on the second day (issue 24): check_method re-raises the cell's
own error, check_metric, the metric contract (wrong lengths refused), parameter types from
annotations, keywords left out of ``defaults`` refused, parameters another one overrides,
``maxrf-bench info``, ``table --metrics`` and ``maxrf-bench new-plugin``."""
from __future__ import annotations

import importlib
import sys
import tomllib
import types

import numpy as np
import pytest
from click.testing import CliRunner

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.testing import CellFailed, check_method, check_metric, registered_plugin, toy_scene


def _plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, f"maxrf_bench_register_{hook}", mb.hookimpl(fn))
    return mod


def _method_plugin(name, run, **kw):
    return _plugin(name, methods=lambda register: register(mb.Method(name.replace("_", "-"), run, **kw)))


def _bilinear(inputs, detail: float = 1.0):
    return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear") * detail


# --- check_method / check_metric ------------------------------------------------------------

def test_check_method_reraises_the_cells_own_error(tmp_path):
    def run(inputs):
        return np.zeros((len(inputs.elements), 31, 32), np.float32)

    with registered_plugin(_method_plugin("wrong_shape", run)):
        with pytest.raises(CellFailed, match=r"wrong-shape failed on the toy scene: ValueError: "
                                             r"method returned shape \(4, 31, 32\), expected \(4, 32, 32\)") as e:
            check_method("wrong-shape", tmp_path)
    assert "Traceback" in str(e.value)  # the cell's error.log, not a KeyError of the lookup


def test_check_method_names_nans_and_exceptions(tmp_path):
    def nans(inputs):
        return np.full((len(inputs.elements), *inputs.hr_shape), np.nan, np.float32)

    def boom(inputs):
        raise RuntimeError("my bug")

    with registered_plugin(_plugin("two", methods=lambda register: (
            register(mb.Method("nans", nans)), register(mb.Method("boom", boom))))):
        with pytest.raises(CellFailed, match="non-finite values"):
            check_method("nans", tmp_path / "a")
        with pytest.raises(CellFailed, match="RuntimeError: my bug"):
            check_method("boom", tmp_path / "b")


def test_check_metric_returns_values_and_refuses_a_wrong_length(tmp_path):
    def max_error(sr, truth, lr, operator):
        per = np.abs(sr - truth).reshape(len(sr), -1).max(1)
        return per, float(per.max())

    def short(sr, truth, lr, operator):
        return np.zeros(len(sr) - 1), 0.0

    with registered_plugin(_plugin("m", metrics=lambda register: (
            register(mb.Metric("max-err", max_error)), register(mb.Metric("short", short))))):
        values = check_metric("max-err", tmp_path / "a")
        assert set(values) == {"bicubic", "bicubic+P"} and 0 < values["bicubic"] < 1
        with pytest.raises(CellFailed, match=r"metric 'short' \(plugin 'm'\) failed: ValueError: "
                                             r"metric returned 3 per-element values, expected 4"):
            check_metric("short", tmp_path / "b")


# --- parameters ------------------------------------------------------------------------------

def test_a_parameter_takes_its_type_from_the_annotation():
    m = mb.Method("ann", _bilinear, defaults={"detail": 1})  # an int default, a float annotation
    assert m.param_types() == {"detail": float}
    assert m.params(None, {"detail": "0.5"}) == {"detail": 0.5}

    def run(inputs, n=1):
        return inputs

    plain = mb.Method("plain", run, defaults={"n": 1})
    with pytest.raises(mb.ConfigError, match=r"plain.n expects a int \(default 1\), found 0.5"):
        plain.params(None, {"n": "0.5"})


def test_a_keyword_left_out_of_defaults_is_refused_at_registration():
    def run(inputs, detail=1.0, hidden=3, _private=2):
        return inputs

    with pytest.raises(mb.PluginError, match=r"run\(\) takes \['hidden'\] with a default value, "
                                             r"which defaults does not list"):
        with registered_plugin(_method_plugin("hides", run, defaults={"detail": 1.0})):
            pass


def test_an_overridden_parameter_is_refused_naming_the_winner():
    proposed = mb.get_method("proposed")
    with pytest.raises(mb.ConfigError, match=r"proposed.alpha2=0.0 would not be used: "
                                             r"adv_calibration=0.1 overrides it"):
        proposed.params("fast", {"alpha2": "0"})
    assert proposed.params("fast", {"alpha2": 0, "adv_calibration": "none"})["alpha2"] == 0
    assert proposed.params("paper", {"alpha2": 0})["alpha2"] == 0  # paper: alpha2 is used
    assert proposed.overridden_by(proposed.params("fast")) == {"alpha2": "adv_calibration"}


def test_overrides_must_name_parameters():
    with pytest.raises(ValueError, match=r"overrides names unknown parameters \['nope'\]"):
        mb.Method("x", _bilinear, defaults={"detail": 1.0}, overrides={"detail": ["nope"]})


# --- info ------------------------------------------------------------------------------------

def _invoke(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], env={"MAXRF_BENCH_QUIET": "1"})
    return res


def test_info_of_a_method_shows_parameters_presets_and_what_it_needs():
    res = _invoke("info", "proposed")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "plugin: proposed" in out and "reference: H. Verinaz-Jadan" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("parameter "))
    assert header.split() == ["parameter", "type", "default", "paper", "fast", "ctx", "ctx-quickscan"]
    row = next(line for line in out.splitlines() if line.strip().startswith("kernel "))
    assert row.split() == ["kernel", "int", "1", "1", "1", "5", "5"]
    row = next(line for line in out.splitlines() if line.strip().startswith("adv_calibration "))
    assert row.split() == ["adv_calibration", "float", "0.1", "none", "0.1", "0.1", "0.1"]
    row = next(line for line in out.splitlines() if line.strip().startswith("recorrupt "))
    assert row.split() == ["recorrupt", "float", "0", "·", "·", "·", "0.5"]
    assert "adv_calibration overrides alpha2" in out
    assert "deterministic: no" in out and "projects onto the measured scan: depends" in out
    hat = _invoke("info", "hat").output
    assert "needs: a weights file (--set hat.weights=PATH); the extra .[sisr]" in hat
    assert "deterministic: yes" in hat


def test_info_of_a_metric_a_dataset_and_a_scan(tmp_path):
    out = _invoke("info", "d_s").output
    assert "needs a truth: no" in out and "keywords compute takes: rgb=" in out
    assert "better: higher" in _invoke("info", "psnr").output
    scan = mb.save_scan(mb.make_scan(**toy_scene(16), title="toy", pixel_size_mm=0.5),
                        tmp_path / "toy.zarr")
    out = _invoke("info", scan).output
    assert "elements (4): Pb_L, Hg_L, Cu_K, Ca_K" in out and "pixel_size_mm: 0.5" in out
    plugin = _plugin("ds", datasets=lambda register: register(mb.Dataset(
        "toy-ds", lambda: mb.make_scan(**toy_scene(16)), "a toy")))
    with registered_plugin(plugin):
        out = _invoke("info", "toy-ds").output
    assert "dataset toy-ds" in out and "plugin: ds" in out and "truth: measured" in out


# --- table --metrics ------------------------------------------------------------------------

def test_plugin_metrics_appear_in_the_terminal_table(tmp_path):
    def max_error(sr, truth, lr, operator):
        per = np.abs(sr - truth).reshape(len(sr), -1).max(1)
        return per, float(per.max())

    scan = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    with registered_plugin(_plugin("mx", metrics=lambda register: register(
            mb.Metric("max-err", max_error)))):
        mb.run_grid(["bicubic", "bicubic+P"], [str(scan)], out=tmp_path / "run")
        default = _invoke("table", tmp_path / "run").output
        chosen = _invoke("table", tmp_path / "run", "--metrics", "ssim,max-err").output
    def rows(text):
        return [line.split()[-3] for line in text.splitlines()[3:] if line.strip()
                and not line.startswith(("noise", "note"))]

    assert rows(default) == ["RMSE", "PSNR", "max-err", "seconds"]  # the plugin's, unasked
    assert rows(chosen) == ["SSIM", "max-err", "seconds"]
    line = next(x for x in default.splitlines() if "max-err" in x).split()
    assert line[-2] == "**0.7288**" or line[-2].startswith("**")  # lower is better: bicubic best
    assert not line[-1].startswith("**")


# --- new-plugin -------------------------------------------------------------------------------

def test_new_plugin_writes_a_distribution_whose_test_passes(tmp_path, monkeypatch):
    res = _invoke("new-plugin", "my-sr", "-o", tmp_path / "my-sr")
    assert res.exit_code == 0, res.output
    root = tmp_path / "my-sr"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    (ep_name, target), = project["project"]["entry-points"]["maxrf_bench"].items()
    assert (ep_name, target) == ("my_sr", "my_sr.plugin")
    monkeypatch.syspath_prepend(str(root / "src"))
    plugin = importlib.import_module(target)  # what the entry point would load
    assert mb.hookimpl  # the module registers through the public API only
    namespace = {"__name__": "test_my_sr"}
    exec(compile((root / "tests" / "test_my_sr.py").read_text(), "test_my_sr.py", "exec"), namespace)
    work = tmp_path / "work"
    work.mkdir()
    namespace["test_my_sr_beats_bicubic"](work)  # its own assertion, as written
    with registered_plugin(plugin):
        assert mb.get_method("my-sr").deterministic
    sys.modules.pop("my_sr.plugin", None), sys.modules.pop("my_sr", None)


def test_new_plugin_never_writes_into_a_folder_with_files(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("user data")
    res = _invoke("new-plugin", "my-sr", "-o", target)
    assert res.exit_code == 2 and "expected -o to name a new or empty folder" in res.output
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _invoke("new-plugin", "other", "-o", empty).exit_code == 0
    assert (empty / "src" / "other" / "plugin.py").exists()
