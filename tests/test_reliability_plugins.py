"""Broken plugins (issue 13): a plugin that raises on import, on registration, inside a
method's run or inside a metric is reported with its name, does not stop the other cells,
makes ``run`` exit 1, and the table shows its cells as failed (a broken metric: said
once as the metric's failure, the cells are kept).

The plugins are installed the way a third party's are (a ``*.dist-info`` with
``maxrf_bench`` entry points on ``PYTHONPATH``) and the installed ``maxrf-bench`` script
runs with every built-in plugin beside them.
"""
from __future__ import annotations

import csv
import json
import textwrap

import pytest

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene

from reliability_support import install_plugins, plugin_env, run_cli

BROKEN = {
    "broken_import": "raise ImportError('broken_import is broken on purpose')\n",
    "broken_register": textwrap.dedent('''
        import maxrf_bench as mb

        @mb.hookimpl
        def maxrf_bench_register_methods(register):
            raise RuntimeError("registration fails on purpose")
    '''),
    "broken_run": textwrap.dedent('''
        import maxrf_bench as mb

        def run(inputs):
            raise RuntimeError("crashy fails on purpose")

        @mb.hookimpl
        def maxrf_bench_register_methods(register):
            register(mb.Method("crashy", run, "always raises"))
    '''),
    "broken_metric": textwrap.dedent('''
        import maxrf_bench as mb

        def compute(sr, truth, lr, operator):
            raise ValueError("crashmetric fails on purpose")

        @mb.hookimpl
        def maxrf_bench_register_metrics(register):
            register(mb.Metric("crashmetric", compute, "always raises"))
    '''),
}


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    folder = install_plugins(root / "site", BROKEN, {n: n for n in BROKEN}, dist="broken-plugins")
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 3, seed=8), title="toy"), root / "toy.zarr")
    out = root / "run"
    env = plugin_env(folder, root / "cache")
    res = run_cli("run", "-m", "bicubic,crashy,bicubic+P", "-d", scan, "-o", out, "--seeds", "0",
                  env=env)
    return {"res": res, "out": out, "env": env, "scan": scan}


def test_exit_1_and_every_failure_named(broken_run):
    res = broken_run["res"]
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    err = res.stderr
    assert "Warning: plugin 'broken_import' failed to import and was skipped: ImportError: " \
           "broken_import is broken on purpose" in err
    assert "Warning: plugin 'broken_register' failed to register methods and was skipped: " \
           "RuntimeError: registration fails on purpose" in err
    assert "Error: toy / crashy (seed 0) failed: RuntimeError: crashy fails on purpose" in err
    assert ("metric 'crashmetric' (plugin 'broken_metric') failed: ValueError: crashmetric fails "
            "on purpose") in err


def test_other_cells_and_metrics_are_kept(broken_run):
    out = broken_run["out"]
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    assert methods == {"bicubic", "bicubic+P"}  # crashy has no row: its method failed
    metrics = {r["metric"] for r in rows if r["method"] == "bicubic"}
    assert {"psnr", "rmse", "ssim", "sam", "ergas", "consistency", "seconds"} <= metrics
    assert "crashmetric" not in metrics
    assert mb.load_maps(out, "toy", "bicubic+P")["maps"].shape == (3, 32, 32)
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {f["plugin"]: f["stage"] for f in manifest["plugin_failures"]}
    assert failed == {"broken_import": "import", "broken_register": "register methods"}
    errors = {t["method"]: t["error"] for t in manifest["timings"]}
    assert errors["crashy"] == "RuntimeError: crashy fails on purpose"
    assert errors["bicubic"] is None  # the metric's failure is not the cell's
    assert manifest["metric_failures"] == [
        "metric 'crashmetric' (plugin 'broken_metric') failed: ValueError: crashmetric fails "
        "on purpose"]  # once, although it failed on every cell


def test_table_shows_failed_cells(broken_run):
    table = broken_run["res"].stdout
    header = next(line for line in table.splitlines() if line.startswith("Dataset"))
    assert header.split() == ["Dataset", "Metric", "bicubic", "bicubic+P", "crashy"]
    psnr = next(line for line in table.splitlines() if "PSNR" in line).split()
    assert psnr[0] == "PSNR" and psnr[3] == "failed"  # the crashy column; bicubic has a value
    assert float(psnr[1].strip("*_")) > 10
    assert "failed: toy / crashy (seed 0): RuntimeError: crashy fails on purpose" in table
    assert "failed: toy / bicubic" not in table  # the bicubic cell is fine
    assert table.count("metric 'crashmetric' (plugin 'broken_metric') failed") == 1


def test_a_broken_metric_is_said_once_as_the_metrics_failure(broken_run):
    err = broken_run["res"].stderr
    assert err.count("crashmetric fails on purpose") == 1, err
    assert "toy / bicubic (seed 0) failed" not in err
    log = broken_run["res"].stdout + err
    assert "FAILED: metric" not in log


def test_rerun_retries_only_what_failed(broken_run):
    out = broken_run["out"]
    cell = mb.find_cell(out, "toy", "bicubic") / "cell.json"
    stamp = cell.stat().st_mtime_ns
    res = run_cli("run", "-q", "-m", "bicubic,crashy,bicubic+P", "-d", broken_run["scan"], "-o", out,
                  "--seeds", "0", "--metrics", "psnr,rmse", env=broken_run["env"])
    assert res.returncode == 1 and "crashy fails on purpose" in res.stderr  # crashy again
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert {t["method"]: (t["reused"], t["error"]) for t in timings} == {
        "bicubic": (True, None), "crashy": (False, "RuntimeError: crashy fails on purpose")}
    assert cell.stat().st_mtime_ns == stamp  # the finished bicubic cell was not rewritten


def test_unknown_name_points_at_the_failed_plugins(broken_run, tmp_path):
    res = run_cli("run", "-m", "fromimport", "-d", broken_run["scan"], "-o", tmp_path / "o",
                  env=broken_run["env"])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "unknown method 'fromimport'" in res.stderr
    assert "2 plugin(s) failed to load (broken_import, broken_register)" in res.stderr
    assert not (tmp_path / "o").exists()


# --- names are owned (issue 25) and plugins --check (issue 24 item 7) ---------------------------

IMPOSTORS = {
    # sorts before every built-in: it used to take 'bicubic' and make the built-in fail
    "aaa_impostor": textwrap.dedent('''
        import numpy as np
        import maxrf_bench as mb

        def fake(inputs):
            return np.zeros((len(inputs.elements), *inputs.rgb.shape[-2:]), np.float32)

        @mb.hookimpl
        def maxrf_bench_register_methods(register):
            register(mb.Method("bicubic", fake, "an impostor"))
            register(mb.Method("aaa_valid", fake, "a valid method of the same plugin"))
    '''),
    # a later third party asks for the name an earlier one took
    "zzz_late": textwrap.dedent('''
        import numpy as np
        import maxrf_bench as mb

        def other(inputs):
            return np.ones((len(inputs.elements), *inputs.rgb.shape[-2:]), np.float32)

        @mb.hookimpl
        def maxrf_bench_register_methods(register):
            register(mb.Method("aaa_valid", other, "shadows aaa_impostor's method"))
            register(mb.Method("zzz_own", other, "its own, valid"))
    '''),
    # a third party whose entry point has a built-in's name
    "bicubic_clone": textwrap.dedent('''
        import maxrf_bench as mb

        @mb.hookimpl
        def maxrf_bench_register_metrics(register):
            pass
    '''),
    "typo_hook": textwrap.dedent('''
        import maxrf_bench as mb

        @mb.hookimpl
        def maxrf_bench_register_method(register):
            pass
    '''),
}


@pytest.fixture(scope="module")
def impostor_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("impostor")
    eps = {n: n for n in IMPOSTORS if n != "bicubic_clone"} | {"bicubic": "bicubic_clone"}
    folder = install_plugins(root / "site", IMPOSTORS, eps, dist="third-party")
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 3, seed=8), title="toy"), root / "toy.zarr")
    return {"env": plugin_env(folder, root / "cache"), "scan": scan, "root": root}


def test_a_built_in_name_cannot_be_taken_and_the_refusal_names_who_tried(impostor_env):
    res = run_cli("plugins", "--check", env=impostor_env["env"])
    assert res.returncode == 1, (res.stdout, res.stderr)
    out = res.stdout
    # the built-in keeps its name and is not reported as failed
    assert "\nbicubic 0.1.0 (maxrf-bench)\n    methods: bicubic\n" in out
    assert ("aaa_impostor: method 'bicubic' refused: PluginError: method 'bicubic' from plugin "
            "'aaa_impostor' is refused: it is a built-in name (plugin 'bicubic' of maxrf-bench)") in out
    # one refused item does not drop the plugin's other items
    assert "aaa_impostor 0.1 (third-party)\n    methods: aaa_valid\n" in out
    # a later third party cannot shadow an earlier one silently: which won, and why
    assert ("zzz_late: method 'aaa_valid' refused: PluginError: method 'aaa_valid' from plugin "
            "'zzz_late' is refused: plugin 'aaa_impostor' registered it first and keeps it") in out
    assert "zzz_late 0.1 (third-party)\n    methods: zzz_own\n" in out
    # an entry point named like a built-in: refused, the built-in stays
    assert ("bicubic (third-party): failed to register: PluginError: the entry-point name "
            "'bicubic' is taken by the plugin of maxrf-bench, which stays (built-in plugins load "
            "first); rename this entry point") in out
    # a misspelled hook: did you mean
    assert "'maxrf_bench_register_method' → 'maxrf_bench_register_methods'" in out
    assert "plugin failure(s)" in res.stderr
    assert run_cli("plugins", env=impostor_env["env"]).returncode == 0  # without --check: a listing


def test_run_uses_the_built_in_not_the_impostor(impostor_env, tmp_path):
    res = run_cli("run", "-m", "bicubic,aaa_valid", "-d", impostor_env["scan"], "-o", tmp_path / "o",
                  "--metrics", "psnr", env=impostor_env["env"])
    assert res.returncode == 0, res.stderr
    assert ("Warning: plugin 'aaa_impostor': method 'bicubic' was refused (its other items are "
            "kept)") in res.stderr
    results = mb.read_results(tmp_path / "o")
    assert results.value("toy", "bicubic", "psnr") > 15  # the built-in: 16.8 dB (zeros: 6.0 dB)
    assert results.value("toy", "aaa_valid", "psnr") < 8
