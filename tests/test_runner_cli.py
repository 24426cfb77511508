"""`maxrf-bench run` end to end: results, resume, bad input, the table."""
import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene

BIN = Path(sys.executable).parent / "maxrf-bench"


def cli(*args, cwd=None):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def plain_scan(tmp_path):
    """A scan written with plain xarray in the documented schema (not with make_scan)."""
    d = toy_scene(48, 3, seed=2)
    ds = xr.Dataset(
        {"maps": (("element", "y", "x"), d["maps"]), "rgb": (("band", "y", "x"), d["rgb"])},
        coords={"element": d["elements"], "band": ["R", "G", "B"],
                "y": np.arange(48) * 0.2, "x": np.arange(48) * 0.2},
        attrs={"schema_version": 1, "title": "plain"},
    )
    path = tmp_path / "plain.zarr"
    ds.to_zarr(path, zarr_format=2)
    return path, d


def test_bicubic_psnr_agrees_with_an_independent_computation(tmp_path, plain_scan):
    from PIL import Image

    path, d = plain_scan
    res = cli("run", "--methods", "bicubic", "--datasets", path, "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    truth, _, _ = mb.normalise_maps(d["maps"])
    lr = truth.reshape(3, 12, 4, 12, 4).mean(axis=(2, 4))
    # PIL's bicubic (Keys a=-0.5) differs from ours only where the kernel leaves the image
    up = np.stack([np.asarray(Image.fromarray(c, mode="F").resize((48, 48), Image.BICUBIC)) for c in lr])
    expected = 10 * np.log10(1 / ((up - truth) ** 2).mean())
    got = mb.read_results(tmp_path / "run").value("plain", "bicubic", "psnr")
    assert got == pytest.approx(expected, abs=0.1)
    assert "plain" in res.stdout and "PSNR" in res.stdout


def test_outputs_and_resume(tmp_path, plain_scan):
    path, _ = plain_scan
    out = tmp_path / "run"
    args = ["run", "-m", "bicubic+P", "-d", path, "-o", out, "--seed", "3"]
    assert cli(*args).returncode == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0]) == ["dataset", "protocol", "method", "seed", "truth", "element", "metric", "value",
                             "scan_time", "misregister"]
    assert {r["scan_time"] for r in rows} == {""}  # only the acquisition protocol fills it
    assert {r["misregister"] for r in rows} == {""}  # no sweep asked for
    metrics = {r["metric"] for r in rows}
    assert {"rmse", "psnr", "ssim", "sam", "ergas", "consistency", "qnr", "d_lambda", "d_s", "photo_leak",
            "seconds"} == metrics
    assert {r["element"] for r in rows} == {"Pb_L", "Hg_L", "Cu_K", "all"}
    assert {r["method"] for r in rows} == {"bicubic+P"} and {r["seed"] for r in rows} == {"3"}
    consistency = [float(r["value"]) for r in rows if r["metric"] == "consistency" and r["element"] == "all"]
    assert consistency[0] < 1e-6  # the host's projection
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["seeds"] == [3] and manifest["columns"]["bicubic+P"]["variant"] == "P"
    assert manifest["columns"]["bicubic+P"]["plugin"] == "bicubic"
    assert manifest["columns"]["bicubic+P"]["code_hash"]
    assert {"numpy", "xarray", "zarr", "python"} <= set(manifest["versions"])
    assert manifest["timings"][0]["reused"] is False
    sr = mb.load_maps(out, "plain", "bicubic+P")
    assert sr["maps"].shape == (3, 48, 48) and float(abs(sr["maps_std"]).max()) == 0.0
    # rerun: the finished cell is reused, results unchanged
    res = cli(*args)
    assert "finished earlier, reusing" in res.stderr
    assert json.loads((out / "manifest.json").read_text())["timings"][0]["reused"] is True
    assert [r for r in csv.DictReader(open(out / "results.csv")) if r["metric"] != "seconds"] == \
        [r for r in rows if r["metric"] != "seconds"]
    # the plain variant of the same run is post-processed from the stored output, not rerun
    res = cli("run", "-m", "bicubic", "-d", path, "-o", out, "--seed", "3")
    assert "reusing" in res.stderr
    # a different parameter is a different cell configuration: recomputed, and labelled
    res = cli("run", "-m", "bicubic[a=-0.75]", "-d", path, "-o", out, "--seed", "3")
    assert "reusing" not in res.stderr and "bicubic[a=-0.75]" in res.stdout
    # a cell finished by other code of its method is recomputed, and the run says why
    cell = next(p.parent for p in out.glob("cells/*/bicubic/*/cell.json"))
    record = json.loads((cell / "cell.json").read_text())
    record.update(key="0" * 16, code_hash="0" * 16)
    (cell / "cell.json").write_text(json.dumps(record))
    res = cli(*args)
    assert res.returncode == 0 and "reusing" not in res.stderr
    assert "finished earlier by other code of 'bicubic' (plugin version" in res.stderr
    assert "code hash 0000000000000000; now" in res.stderr and "running it again" in res.stderr
    assert json.loads((cell / "cell.json").read_text())["key"] != "0" * 16
    # --force recomputes a finished cell
    res = cli(*args, "--force")
    assert res.returncode == 0 and "reusing" not in res.stderr


class Interrupting:
    calls = 0

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs):
            Interrupting.calls += 1
            if Interrupting.calls == 1:  # a real Ctrl-C of the user (SIGINT) while it runs
                import os
                import signal
                import time

                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the signal's KeyboardInterrupt arrives here
            return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
        register(mb.Method("flaky", run, "interrupted the first time"))


@pytest.fixture
def foreground_sigint():
    """SIGINT as a foreground process has it.  A process started in the background by a
    non-interactive shell (``pytest &``) inherits SIGINT ignored: no Ctrl-C can reach it,
    and a test of what a Ctrl-C does would then test nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupted_run_keeps_finished_cells(tmp_path, foreground_sigint):
    from maxrf_bench.testing import registered_plugin

    scan = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    out = tmp_path / "run"
    with registered_plugin(Interrupting(), "interrupting"):
        with pytest.raises(KeyboardInterrupt):
            mb.run_grid(["bicubic", "flaky"], [str(scan)], out=out)
        assert mb.read_results(out).methods == ["bicubic"]
        first = json.loads((mb.find_cell(out, "toy", "bicubic") / "cell.json").read_text())
        results = mb.run_grid(["bicubic", "flaky"], [str(scan)], out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["reused"] for t in manifest["timings"]] == [True, False]
    assert results.value("toy", "bicubic", "psnr") == first["metrics"][""]["measured"]["psnr"]["all"]
    assert np.isfinite(results.value("toy", "flaky", "psnr"))


def test_lr_only_scan_reports_no_reference_metrics(tmp_path):
    d = toy_scene(32)
    scan = mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps_lr=mb.BlockMean(4).down(d["maps"]))
    path = mb.save_scan(scan, tmp_path / "lr.zarr")
    res = cli("run", "-m", "bicubic", "-d", path, "-o", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    metrics = {r["metric"] for r in csv.DictReader(open(tmp_path / "run" / "results.csv"))}
    assert metrics == {"consistency", "qnr", "d_lambda", "d_s", "seconds"}
    assert "consistency" in res.stdout and "QNR" in res.stdout
    assert cli("run", "-m", "bicubic", "-d", path, "-o", tmp_path / "r2", "--scale", "2").returncode == 2


def _write(tmp_path, name, **changes):
    d = toy_scene(32)
    ds = mb.make_scan(**d)
    for var, fn in changes.items():
        arr = ds[var].values.copy()
        fn(arr)
        ds[var] = (ds[var].dims, arr)
    path = tmp_path / f"{name}.zarr"
    ds.to_zarr(path, zarr_format=2)
    return path


@pytest.mark.parametrize("case, expected", [
    ("unknown-method", "unknown method 'nosuch'; expected one of:"),
    ("unknown-dataset", "unknown dataset 'nosuch'; expected one of:"),
    ("bad-set", "--set expects METHOD.KEY=VALUE"),
    ("bad-set-key", "method 'bicubic' has no parameter 'sharpness'; expected one of: a"),
    ("bad-set-type", "bicubic.a expects a float"),
    ("nan", "'maps' must be finite, found 1 NaN/Inf values"),
    ("negative", "'maps' must be non-negative counts"),
    ("rgb-size", "'rgb' must be on the maps grid 32×28, found 32×32"),
    ("scale", "scale 64 leaves no LR pixel of the scan's 32×32 grid"),
    ("missing", "does not exist"),
    ("corrupt", "cannot read scan store"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case, expected):
    good = _write(tmp_path, "good")
    args = {"-m": "bicubic", "-d": good}
    extra = []
    if case == "unknown-method":
        args["-m"] = "bicubic,nosuch"
    elif case == "unknown-dataset":
        args["-d"] = "nosuch"
    elif case == "bad-set":
        extra = ["--set", "bicubic=3"]
    elif case == "bad-set-key":
        extra = ["--set", "bicubic.sharpness=3"]
    elif case == "bad-set-type":
        extra = ["--set", "bicubic.a=maybe"]
    elif case == "nan":
        args["-d"] = _write(tmp_path, "nan", maps=lambda a: a.__setitem__((0, 1, 1), np.nan))
    elif case == "negative":
        args["-d"] = _write(tmp_path, "neg", maps=lambda a: a.__setitem__((0, 1, 1), -1))
    elif case == "rgb-size":
        d = toy_scene(32)
        ds = xr.Dataset({"maps": (("element", "y", "x"), d["maps"][:, :, :28]),
                         "rgb": (("band", "y2", "x2"), d["rgb"])},
                        coords={"element": d["elements"], "band": ["R", "G", "B"]})
        ds = ds.rename({"y2": "y", "x2": "x"}) if False else ds
        # xarray cannot hold two sizes of one dim in memory, so write the store by hand
        path = tmp_path / "rgbsize.zarr"
        ds.rename({"y2": "yy", "x2": "xx"}).to_zarr(path, zarr_format=2)
        import zarr
        g = zarr.open_group(str(path), mode="r+", zarr_format=2)
        g["rgb"].attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
        zarr.consolidate_metadata(str(path))
        args["-d"] = path
    elif case == "scale":
        extra = ["--scale", "64"]
    elif case == "missing":
        args["-d"] = tmp_path / "missing.zarr"
    elif case == "corrupt":
        bad = tmp_path / "corrupt.zarr"
        bad.mkdir()
        (bad / ".zgroup").write_text("{")
        args["-d"] = bad
    out = tmp_path / "out"
    flat = [x for kv in args.items() for x in kv] + extra
    res = cli("run", *flat, "-o", out)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_list_and_table(tmp_path):
    res = cli("list", "metrics")
    names = [line.split()[0] for line in res.stdout.splitlines()]
    assert names == sorted(["consistency", "ergas", "psnr", "rmse", "sam", "ssim"]) or set(names) >= {"psnr"}
    assert cli("list", "nothing").returncode == 2


class ExitingMethods:
    """Methods that end themselves: control flow, not a Ctrl-C (issue 25)."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        import sys

        def exits(inputs):
            sys.exit(3)  # 3 is also the code for "directory in use": it must not leak out

        def interrupts(inputs):
            raise KeyboardInterrupt  # raised by the method, no signal arrived

        register(mb.Method("exits", exits, "calls sys.exit(3)"))
        register(mb.Method("raisesint", interrupts, "raises KeyboardInterrupt itself"))


def test_a_method_that_exits_fails_its_cell_only(tmp_path):
    from maxrf_bench.testing import registered_plugin

    scan = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    out = tmp_path / "run"
    from click.testing import CliRunner

    from maxrf_bench.cli import cli as cli_group

    with registered_plugin(ExitingMethods(), "exiting"):
        res = CliRunner().invoke(cli_group, ["run", "-q", "-m", "bicubic,exits,raisesint", "-d",
                                             str(scan), "-o", str(out)])
    assert res.exit_code == 1, (res.exit_code, res.output)  # some cells failed; not 3
    assert "Error: toy / exits (seed 0) failed: SystemExit: the method called sys.exit(3)" in res.stderr
    assert "Error: toy / raisesint (seed 0) failed: KeyboardInterrupt: raised by the method" in res.stderr
    assert "PSNR" in res.stdout and (out / "report.html").is_file()  # the table and the report
    assert mb.read_results(out).methods == ["bicubic"]
