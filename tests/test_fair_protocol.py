"""The fair protocol of issue 9: host post-processing variants, seeds with spreads, the
clean truth, the reduced-resolution protocol, and their bad input."""
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.table import rank
from maxrf_bench.testing import registered_plugin, toy_scene

BIN = Path(sys.executable).parent / "maxrf-bench"


def cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True)


class Toys:
    """A stochastic method (bilinear + seed-dependent noise) and one that projects itself."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def noisy(inputs, amount: float = 0.02):
            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
            rng = np.random.default_rng(inputs.seed)
            return up + amount * rng.standard_normal(up.shape).astype(np.float32)

        def projected(inputs):
            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
            return inputs.operator.project(up, inputs.maps_lr.values)

        register(mb.Method("noisy", noisy, "bilinear plus seeded noise", defaults={"amount": 0.02}))
        register(mb.Method("selfproj", projected, "projects by itself", projects=True,
                           deterministic=True))


@pytest.fixture
def toy(tmp_path):
    return mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")


@pytest.fixture
def sim(tmp_path):
    from maxrf_bench_datasets.simulator import simulate

    return mb.save_scan(simulate("sim-demo", seed=7, size=64), tmp_path / "sim.zarr")


def rows(out):
    return list(csv.DictReader(open(Path(out) / "results.csv")))


def test_projection_variant_is_consistent_and_beats_plain(toy, tmp_path):
    res = mb.run_grid(["bicubic", "bicubic+P", "bicubic+C", "bicubic+PC"], [str(toy)], out=tmp_path / "r")
    assert res.value("toy", "bicubic+P", "consistency") < 1e-5
    assert res.value("toy", "bicubic", "consistency") > 1e-3
    assert res.value("toy", "bicubic+P", "psnr") > res.value("toy", "bicubic", "psnr")
    clipped = mb.load_maps(tmp_path / "r", "toy", "bicubic+PC")["maps_norm"].values
    assert clipped.min() >= 0 and clipped.max() <= 1
    raw = mb.load_maps(tmp_path / "r", "toy", "bicubic")["maps_norm"].values
    assert raw.min() < 0 or raw.max() > 1  # bicubic overshoots: clipping had work to do
    # all four columns read one run of the method
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest["timings"]) == 1


def test_labels_are_unique_and_fair_adds_projection_columns(toy, tmp_path):
    with registered_plugin(Toys(), "toys"):
        res = mb.run_grid(["bicubic", "selfproj", "noisy[amount=0.05]"], [str(toy)], out=tmp_path / "r",
                          fair=True)
        assert res.methods == ["bicubic", "bicubic+P", "selfproj", "noisy[amount=0.05]",
                               "noisy+P[amount=0.05]"]
        with pytest.raises(mb.ConfigError, match="would project twice"):
            mb.run_grid(["selfproj+P"], [str(toy)], out=tmp_path / "r2")
        with pytest.raises(mb.ConfigError, match="twice"):
            mb.run_grid(["bicubic", "bicubic[a=-0.5]"], [str(toy)], out=tmp_path / "r3")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_a_column_may_take_its_own_preset_and_a_preset_name_is_not_a_method(toy, tmp_path):
    class Presets:
        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            register(mb.Method("pre", lambda inputs, amount=0.0: mb.upsample(
                inputs.maps_lr.values, inputs.operator.scale, "bilinear") + amount, "toy",
                defaults={"amount": 0.0}, presets={"fast": {}, "wide": {"amount": 0.5}},
                deterministic=True))

    from maxrf_bench.runner import RunConfig, Runner

    with registered_plugin(Presets(), "presets"):
        cols = Runner(RunConfig(["pre", "pre[preset=wide]"], preset="fast")).columns()
        assert [c.label for c in cols] == ["pre", "pre[amount=0.5]"]  # canonical: the values
        assert cols[1].params["amount"] == 0.5 and "preset" not in cols[1].params
        with pytest.raises(mb.ConfigError, match="method 'pre' has no preset 'wid'; expected one of: fast, wide"):
            Runner(RunConfig(["pre[preset=wid]"])).columns()
        with pytest.raises(mb.UnknownNameError) as err:
            mb.get_method("wide")
        assert "'wide' is a preset of pre, not a method: write 'pre[preset=wide]'" in str(err.value)
        from maxrf_bench.info import describe

        with pytest.raises(mb.ConfigError, match=r"`maxrf-bench info pre` lists the preset's parameters"):
            describe("wide")


def test_seeds_give_a_seed_column_a_spread_and_std_maps(toy, tmp_path):
    out = tmp_path / "r"
    with registered_plugin(Toys(), "toys"):
        res = mb.run_grid(["noisy", "bicubic"], [str(toy)], out=out, seeds=[0, 1, 2])
        from maxrf_bench.table import run_tables
        text = run_tables(out)
    psnr = res.values("toy", "noisy", "psnr")
    assert len(psnr) == 3 and len(set(psnr)) == 3
    assert {r["seed"] for r in rows(out) if r["method"] == "noisy"} == {"0", "1", "2"}
    assert {r["seed"] for r in rows(out) if r["method"] == "bicubic"} == {"0"}  # deterministic: once
    assert " ± " in text and "(1 run)" in text
    s = res.summary("psnr")[("toy", "noisy")]
    assert s.n == 3 and s.std == pytest.approx(np.std(psnr, ddof=1))
    maps = mb.load_maps(out, "toy", "noisy")
    seeds = [mb.find_cell(out, "toy", "noisy", seed=k) for k in range(3)]
    raw = np.stack([mb.open_scan(c / "sr.zarr", validate=False)["maps_norm"].values for c in seeds])
    np.testing.assert_allclose(maps["maps_norm"].values, raw.mean(0), atol=1e-6)
    np.testing.assert_allclose(maps["maps_norm_std"].values, raw.std(0, ddof=1), atol=1e-6)
    assert float(maps["maps_norm_std"].mean()) == pytest.approx(0.02, rel=0.2)


def test_rank_marks_ties_within_the_spread():
    # means 25.0 ± 0.3 and 24.8 ± 0.1: the gap 0.2 is within 0.3 → tied; 23 is second
    assert rank([25.0, 24.8, 23.0], [0.3, 0.1, 0.0], True) == [1, 1, 2]
    assert rank([25.0, 24.0, 23.0], [0.3, 0.1, 0.0], True) == [1, 2, None]
    assert rank([0.05, 0.04, 0.06], [0, 0, 0], False) == [2, 1, None]
    assert rank([float("nan"), 1.0], [0, 0], True) == [None, None]


def test_simulated_scan_is_scored_against_both_truths(sim, tmp_path):
    out = tmp_path / "r"
    res = mb.run_grid(["bicubic"], [str(sim)], out=out)
    clean = res.value("sim", "bicubic", "psnr", truth="clean")
    measured = res.value("sim", "bicubic", "psnr", truth="measured")
    assert abs(clean - measured) > 0.05
    ceiling = mb.noise_ceiling(out, "sim")
    inputs = mb.load_inputs(out, "sim")
    d = inputs["maps"].values.astype(float) - inputs["maps_clean"].values
    assert ceiling == pytest.approx(-20 * np.log10(np.sqrt((d ** 2).mean())), abs=1e-6)
    assert measured < ceiling
    text = cli("table", out, "--truth", "all").stdout
    assert "noise-free truth" in text and "noise ceiling of sim" in text


def test_by_method_markdown_is_the_same_figures_transposed(sim, tmp_path):
    out = tmp_path / "r"
    res = mb.run_grid(["bicubic", "bicubic+P"], [str(sim)], out=out)
    text = cli("table", out, "--by-method", "--truth", "all").stdout
    lines = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert [ln.split(" | ")[0] for ln in lines] == ["| `bicubic`", "| `bicubic+P`"]
    assert "sim PSNR (measured)" in text and "sim PSNR (clean)" in text
    plus = lines[1].split(" | ")
    # bicubic+P beats bicubic on both truths: bold (best) in both PSNR columns
    assert plus[1] == f"**{res.value('sim', 'bicubic+P', 'psnr'):.2f}**"
    assert plus[2] == f"**{res.value('sim', 'bicubic+P', 'psnr', truth='clean'):.2f}**"


def test_simulator_clean_truth_is_the_noise_free_simulation():
    from maxrf_bench_datasets.simulator import simulate

    noisy = simulate("sim-demo", seed=3, size=32)
    clean = simulate("sim-demo", seed=3, size=32, noise=False)
    np.testing.assert_allclose(noisy["maps_clean"].values, clean["maps"].values, rtol=1e-6)
    assert not np.allclose(noisy["maps"].values, noisy["maps_clean"].values)
    bad = noisy.drop_vars("maps").assign(maps_lr=(("element", "y_lr", "x_lr"),
                                                  mb.BlockMean(4).down(noisy["maps_clean"].values)))
    with pytest.raises(mb.ScanValidationError, match="'maps_clean' .* needs 'maps'"):
        mb.validate_scan(bad)


def test_reduced_protocol_scores_an_lr_only_scan(tmp_path):
    d = toy_scene(64)
    lr = mb.BlockMean(4).down(d["maps"])
    path = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps_lr=lr), tmp_path / "lr.zarr")
    out = tmp_path / "r"
    res = cli("run", "-m", "bicubic,guided", "-d", path, "-o", out, "--protocol", "full,reduced")
    assert res.returncode == 0, res.stderr
    got = rows(out)
    reduced = [r for r in got if r["protocol"] == "reduced" and r["metric"] == "psnr" and r["element"] == "all"]
    assert {r["method"] for r in reduced} == {"bicubic", "guided"}
    assert not [r for r in got if r["protocol"] == "full" and r["metric"] == "psnr"]
    # the truth of the reduced protocol is the measured LR grid, in the units of the scan
    inputs = mb.load_inputs(out, "lr", protocol="reduced")
    assert inputs["maps"].shape == (len(d["elements"]), 16, 16)
    assert "reduced resolution" in res.stdout
    # an independent check of one figure: bicubic on the twice-degraded maps against the LR
    norm = (lr - lr.min(axis=(1, 2), keepdims=True)) / np.ptp(lr, axis=(1, 2), keepdims=True)
    up = mb.upsample(mb.BlockMean(4).down(norm), 4, "bicubic")
    want = -20 * np.log10(np.sqrt(((up - norm) ** 2).mean()))
    psnr = [float(r["value"]) for r in reduced if r["method"] == "bicubic"][0]
    assert psnr == pytest.approx(want, abs=1e-3)


def test_changed_plugin_code_is_rerun(toy, tmp_path):
    src = tmp_path / "myplug.py"
    body = ('import maxrf_bench as mb\n'
            'def run(inputs):\n'
            '    return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear") * {k}\n'
            '@mb.hookimpl\n'
            'def maxrf_bench_register_methods(register):\n'
            '    register(mb.Method("mine", run, "test"))\n')

    def load(k):
        src.write_text(body.format(k=k))
        spec = importlib.util.spec_from_file_location(f"myplug{k}", src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    out = tmp_path / "r"
    with registered_plugin(load(1), "myplug"):
        mb.run_grid(["mine"], [str(toy)], out=out)
    with registered_plugin(load(2), "myplug"):
        mb.run_grid(["mine"], [str(toy)], out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"][0]["reused"] is False


@pytest.mark.parametrize("args, expected", [
    (["-m", "bicubic+X"], "unknown variant '+X'"),
    (["-m", "bicubic+"], "unknown variant '+'"),
    (["-m", "bicubic", "--seeds", ""], "--seeds expects at least one integer seed"),
    (["-m", "bicubic", "--seeds", "0,a"], "--seeds expects comma-separated integers"),
    (["-m", "bicubic", "--seeds", "0,0"], "--seeds lists a seed twice"),
    (["-m", "bicubic", "--seeds", "0,1", "--seed", "3"], "give either --seed or --seeds"),
    (["-m", "bicubic", "--protocol", "reduced", "--scale", "8"], "--protocol reduced degrades scan"),
    (["-m", "bicubic", "--protocol", "wald"], "--protocol expects full, reduced, acquisition, thinning"),
    (["-m", "bicubic", "--truth", "clean"], "--truth clean needs a scan with a noise-free truth"),
    (["-m", "bicubic[a]"], "parameters in [...] must be key=value"),
    (["-m", "proposed+P"], "would project twice"),
])
def test_bad_fair_protocol_input(toy, tmp_path, args, expected):
    out = tmp_path / "out"
    res = cli("run", "-d", toy, "-o", out, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], res.stderr
    assert not out.exists()


def test_method_preflight_check_refuses_before_anything_runs(toy, tmp_path):
    out = tmp_path / "out"
    res = cli("run", "-m", "bicubic,hat", "-d", toy, "-o", out)
    assert res.returncode == 2 and "HAT_SRx4_ImageNet-pretrain.pth" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()  # bicubic did not run first
