"""The scan-time trade-off protocol, Poisson thinning, and cropping to the scale."""
from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.acquisition import (break_even, parse_scan_times, split_protocol,
                                     synthesise_lr)
from maxrf_bench.testing import registered_plugin, toy_scene
from maxrf_bench.thinning import estimate_clean_mse, split_counts


def _scan(tmp_path, size=32, noisy=True, seed=0, integer=True, name="toy"):
    d = toy_scene(size, seed=seed)
    clean = d["maps"].astype(np.float64) * 5 + 2.0          # expected counts per HR dwell
    rng = np.random.default_rng(seed + 100)
    maps = rng.poisson(clean).astype(np.float32) if integer else (clean + 0.3).astype(np.float32)
    scan = mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32) if noisy else None,
                        rgb=d["rgb"], elements=d["elements"])
    return mb.save_scan(scan, tmp_path / f"{name}.zarr"), clean


def cli(*args):
    return subprocess.run([sys.executable, "-m", "maxrf_bench.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _rows_jittered(c: np.ndarray, sigma: float, rng) -> np.ndarray:
    """``c`` (element, y, x) sampled at rows displaced by N(0, σ²) (linear interpolation):
    the expected counts of a scan whose slow-axis positions jitter."""
    size = c.shape[1]
    pos = np.clip(np.arange(size) + sigma * rng.standard_normal(size), 0, size - 1)
    i0 = np.floor(pos).astype(int)
    i1, f = np.minimum(i0 + 1, size - 1), (pos - np.floor(pos))[:, None]
    return c[:, i0] * (1 - f) + c[:, i1] * f


def test_scan_times_parse_and_protocol_keys():
    assert parse_scan_times(None) == [Fraction(1), Fraction(1, 4), Fraction(1, 16), Fraction(1, 64)]
    assert parse_scan_times("1/16, 1") == [Fraction(1), Fraction(1, 16)]
    for bad in ("0", "-1/4", "x", "1,1"):
        with pytest.raises(mb.ConfigError, match="scan-times"):
            parse_scan_times(bad)
    assert split_protocol("acquisition-1_4") == ("acquisition", "0.25")
    assert split_protocol("acquisition-1") == ("acquisition", "1.0")
    assert split_protocol("reduced") == ("reduced", "")


def test_break_even_interpolates_in_log_time():
    times, psnr = [1 / 64, 1 / 16, 1 / 4, 1], [20.0, 24.0, 28.0, 30.0]
    # 26 dB lies half-way between 1/16 and 1/4 in PSNR: half-way in log t is 1/8
    assert math.isclose(break_even(times, psnr, 26.0), 1 / 8)
    assert break_even(times, psnr, 31.0) is None            # never reached
    assert break_even(times, psnr, 19.0) == 1 / 64           # reached at the shortest time


def test_rmse_break_even_is_lower_is_better_and_says_how_far_off_a_curve_that_never_reaches():
    from maxrf_bench.acquisition import rmse_break_even_text

    def curve(rmse):
        return [1 / 4, 1.0], rmse

    # 40 counts lies half-way between 50 (t = 1/4) and 30 (t = 1): half-way in log t is 1/2
    assert rmse_break_even_text(*curve([50.0, 30.0]), 40.0) == "1/2"
    assert rmse_break_even_text(*curve([50.0, 45.0]), 40.0) == "never (1.12× at t=1)"
    assert rmse_break_even_text(*curve([30.0, 20.0]), 40.0) == "≤ 1/4"
    assert rmse_break_even_text(*curve([math.nan, math.nan]), 40.0) == "—"  # RMSE not scored


def test_synthetic_lr_scan_has_the_counting_noise_of_its_time():
    """Units: maps_clean are counts per HR dwell; an LR pixel of time t is counted for t·s²
    HR dwells, so its variance in HR-dwell units is U(clean)/(t·s²)."""
    op = mb.BlockMean(4)
    clean = np.full((1, 256, 256), 50.0)
    for t in (Fraction(1), Fraction(1, 16)):
        lr = synthesise_lr(clean, op, t, np.random.default_rng(0))
        assert abs(lr.mean() - 50.0) < 0.2
        assert lr.var() == pytest.approx(50.0 / (float(t) * 16), rel=0.08)


class Spy:
    """A method that records what it is given."""

    seen: list = []

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs):
            Spy.seen.append({"fields": sorted(vars(inputs)),
                             "maps_lr": np.asarray(inputs.maps_lr.values, np.float64).copy()})
            return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bicubic")
        register(mb.Method("spy", run, "records its inputs"))


def test_acquisition_protocol_never_shows_methods_the_noise_free_truth(tmp_path):
    path, clean = _scan(tmp_path)
    Spy.seen = []
    with registered_plugin(Spy(), "spy"):
        res = mb.run_grid(["spy", "bicubic+P"], [str(path)], out=tmp_path / "run",
                          protocols=["acquisition"], scan_times="1,1/16", seeds=[0, 1])
    # one acquisition per scan time, the same for both seeds
    assert len(Spy.seen) == 4
    inputs = mb.load_inputs(tmp_path / "run", "toy", "acquisition-1_16")
    off, span = inputs.attrs["offset"], inputs.attrs["span"]
    clean_lr = (mb.BlockMean(4).down(clean) - np.asarray(off)[:, None, None]) / np.asarray(span)[:, None, None]
    for s in Spy.seen:
        assert not any("truth" in f or "clean" in f for f in s["fields"])
        # what the method saw is a noisy scan, not the noise-free truth through U
        assert np.abs(s["maps_lr"] - clean_lr).max() > 1e-3
    by_t = {round(float(np.var(s["maps_lr"] - clean_lr)), 12): s for s in Spy.seen}
    assert len(by_t) == 2  # two acquisitions, the shorter one noisier
    # rows: protocol acquisition, scan_time filled, clean truth only; tables exist
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    acq = [r for r in rows if r["protocol"] == "acquisition"]
    assert {r["scan_time"] for r in acq} == {"1.0", "0.0625"}
    assert {r["truth"] for r in acq} >= {"clean"}
    shorter = res.values("toy", "bicubic+P", "psnr", truth="clean", protocol="acquisition")
    assert len(shorter) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    ref = manifest["acquisition"]["toy"]["reference"]
    assert ref["psnr"] == pytest.approx(manifest["noise_ceiling_db"]["toy@acquisition-1"])
    p = {r["scan_time"]: float(r["value"]) for r in acq
         if r["method"] == "bicubic+P" and r["metric"] == "psnr" and r["element"] == "all"
         and r["truth"] == "clean"}
    assert p["1.0"] > p["0.0625"]  # a 16× shorter scan scores worse


def test_acquisition_refuses_a_scan_without_noise_free_truth(tmp_path):
    path, _ = _scan(tmp_path, noisy=False)
    res = cli("run", "-m", "bicubic", "-d", path, "-o", tmp_path / "run", "--protocol", "acquisition")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "noise-free expected-count truth" in res.stderr
    assert not (tmp_path / "run").exists()


def test_acquisition_cli_prints_the_break_even_table_with_the_scan_operator(tmp_path):
    path, _ = _scan(tmp_path)
    res = cli("run", "-m", "bicubic,guided+W", "-d", path, "-o", tmp_path / "run", "--protocol",
              "acquisition", "--scan-times", "1,1/4", "--operator", "scan", "--sigma", "0.5", "-q",
              "--fair", "--seeds", "0,1", "--scheduler", "threads")
    assert res.returncode == 0, res.stderr
    assert "Scan-time trade-off on toy" in res.stdout and "operator scan" in res.stdout
    assert "bicubic+P" in res.stdout and "bicubic → +P" in res.stdout  # --fair's column, compared
    assert "break-even t" in res.stdout and "HR scan (reference)" in res.stdout
    assert "in RMSE (counts)" in res.stdout
    # the maps column: as many elements as the toy scan has, counted from the per-map curves
    from maxrf_bench.acquisition import element_psnr, maps_breaking_even
    from maxrf_bench.results import read_results

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    k, n = maps_breaking_even(element_psnr(read_results(tmp_path / "run"), "toy")["guided+W"],
                              manifest["acquisition"]["toy"]["reference"]["psnr_elements"])
    assert n == len(manifest["acquisition"]["toy"]["elements"])
    row = next(line for line in res.stdout.splitlines() if line.startswith("guided+W "))
    assert row.rstrip().endswith(f"{k} of {n}")
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Scan-time trade-off" in page and "data:image/png;base64" in page


def test_tradeoff_page_merges_runs_of_the_same_lr_scans_into_one_section(tmp_path):
    """Runs of the same scan, operator and noise seed are one section of the page (each column
    at each scan time from the first run that has it, every command and cell time shown); a
    run with another operator is its own section, with its own figure."""
    from maxrf_bench.results import read_results
    from maxrf_bench.tradeoff import merged_runs, write_tradeoff_page

    path, _ = _scan(tmp_path)
    common = ["-d", path, "--protocol", "acquisition", "--scan-times", "1,1/4", "-q"]
    for out, methods, extra in [("a", "bicubic", []), ("b", "bicubic,guided+P", []),
                                ("c", "bicubic", ["--operator", "scan", "--sigma", "0.5"]),
                                ("d", "guided+P", ["--scan-times", "1/4,1/16"])]:
        res = cli("run", "-m", methods, "-o", tmp_path / out, *common, *extra)
        assert res.returncode == 0, res.stderr
    runs = [tmp_path / n for n in "abcd"]
    sections = merged_runs(runs)
    assert [len(r) for r, _, _ in sections] == [3, 1]
    _, results, manifest = sections[0]

    def count(rows, method, t):
        return sum(r["method"] == method and float(r["scan_time"]) == t for r in rows)

    b_rows = read_results(runs[1]).rows
    # bicubic from run a only (as many rows as run b has of it, not twice as many); guided+P
    # at t = 1, 1/4 from run b, at 1/16 from run d
    for t in (1.0, 0.25):
        assert count(results.rows, "bicubic", t) == count(b_rows, "bicubic", t) > 0
        assert count(results.rows, "guided+P", t) == count(b_rows, "guided+P", t) > 0
    assert count(results.rows, "guided+P", 0.0625) > 0 and count(b_rows, "guided+P", 0.0625) == 0
    labels = [(t["method"], t["protocol"]) for t in manifest["timings"]]
    assert [m for m, _ in labels].count("bicubic") == 2            # run a's, t = 1 and 1/4
    assert labels.count(("guided", "acquisition-1_16")) == 1 and len(labels) == 5
    page = write_tradeoff_page(runs, tmp_path / "docs" / "scan-time.md").read_text()
    assert page.count("## toy — operator") == 2 and page.count("```bash") == 4
    assert "The 3 runs above score the same LR scans" in page
    assert "| `guided+P` |" in page and "these runs" in page
    assert (tmp_path / "docs" / "figures" / "scan-time-toy-blockmean.png").exists()
    assert (tmp_path / "docs" / "figures" / "scan-time-toy-scan.png").exists()
    # a second page beside it (one run of the four) gets figures of its own, named after it
    first = (tmp_path / "docs" / "figures" / "scan-time-toy-blockmean.png").read_bytes()
    other = write_tradeoff_page(runs[:1], tmp_path / "docs" / "one-run.md").read_text()
    assert "](figures/one-run-toy-blockmean.png)" in other and "scan-time-toy" not in other
    assert (tmp_path / "docs" / "figures" / "scan-time-toy-blockmean.png").read_bytes() == first
    assert (tmp_path / "docs" / "figures" / "one-run-toy-blockmean.png").read_bytes() != first
    # the ownership rule covers the figures: a page is rewritten over its own figures, but a
    # user's file under a figure's name is refused before anything is written
    from PIL import Image

    from maxrf_bench.errors import OutputError

    own = tmp_path / "docs" / "figures" / "one-run-toy-blockmean.png"
    Image.new("L", (4, 4)).save(own)  # untagged, as pages wrote them before: the page names it
    write_tradeoff_page(runs[:1], tmp_path / "docs" / "one-run.md")
    assert Image.open(own).info.get("Software") == "maxrf-bench scan-time figure"
    user = tmp_path / "docs" / "figures" / "mine-toy-blockmean.png"
    user.write_bytes(b"\x89PNG a user's picture")
    with pytest.raises(OutputError, match="mine-toy-blockmean.png.*not a scan-time figure"):
        write_tradeoff_page(runs[:1], tmp_path / "docs" / "mine.md")
    assert user.read_bytes() == b"\x89PNG a user's picture"
    assert not (tmp_path / "docs" / "mine.md").exists()


def test_tradeoff_page_adds_a_later_runs_seeds_and_summarises_the_break_even_per_seed(tmp_path):
    """A run of seed 1 after a run of seed 0 (the same LR scans) adds its seed to the
    section: the table shows the mean ± sd of the two seeds, and the page's first table gives the
    break-even of the mean curve with the range of the single seeds' break-evens.  Before, the
    later run's rows were dropped as cells the first run already had."""
    from maxrf_bench.acquisition import curves, rmse_break_even_text
    from maxrf_bench.tradeoff import (breakeven_summary, element_psnr, maps_breaking_even,
                                      merged_runs, write_tradeoff_page)

    path, _ = _scan(tmp_path)
    col = "proposed[atoms=8,layers=2,pretrain_iterations=20,use_adv=False]"
    common = ["-m", col, "-d", path, "--protocol", "acquisition", "--scan-times", "1,1/16", "-q"]
    assert _cli_inproc("run", *common, "--seeds", "0", "-o", tmp_path / "a").exit_code == 0
    assert _cli_inproc("run", *common, "--seeds", "1", "-o", tmp_path / "b").exit_code == 0
    sections = merged_runs([tmp_path / "a", tmp_path / "b"])
    assert len(sections) == 1
    (runs, results, manifest), = sections
    c, = curves(results, manifest)
    assert c.n == [2, 2] and all(sd > 0 for sd in c.psnr_std)       # two distinct seeds
    assert len(manifest["timings"]) == 4                             # 2 times × 2 seeds
    summary = breakeven_summary(sections)
    assert summary.count("\n") == 4 and f"| `{col}` |" in summary     # caption, blank, header, rule, row
    cell = summary.splitlines()[-1].split(" | ")[1]
    assert cell.startswith("**") and ("(seeds " in cell or "seeds)" in cell)
    # the whole cube in counts too, from the same curve as the section's table
    ref_rmse = manifest["acquisition"]["toy"]["reference"]["rmse_counts"]
    k, n = maps_breaking_even(element_psnr(results, "toy")[col],
                              manifest["acquisition"]["toy"]["reference"]["psnr_elements"])
    assert n == len(manifest["acquisition"]["toy"]["elements"]) and 0 <= k <= n
    assert cell.rstrip(" |").endswith(
        f"; in counts {rmse_break_even_text(c.times, c.rmse_counts, ref_rmse)}; {k} of {n} maps")
    page = write_tradeoff_page([tmp_path / "a", tmp_path / "b"], tmp_path / "scan-time.md").read_text()
    assert page.index("Break-even scan time at a glance") < page.index("## toy — operator")
    assert page.index("## toy — operator") < page.index("Per element map on toy")
    assert " ± " in page.split("## toy — operator")[1]


# --- thinning ---------------------------------------------------------------------------

def test_thinning_halves_are_independent_poisson_and_the_estimate_is_unbiased():
    """Constructed case: a fixed estimate Ŷ, counts N ~ Poisson(μ); the thinning estimate of
    mean(Ŷ − μ)² (normalised) must match it over many splits."""
    rng = np.random.default_rng(0)
    mu = rng.uniform(20, 200, size=(2, 128, 128))
    n = rng.poisson(mu)
    a, b = split_counts(n, np.random.default_rng(1))
    assert np.array_equal(a + b, n)
    assert abs(np.corrcoef((a - mu / 2).ravel(), (b - mu / 2).ravel())[0, 1]) < 0.02
    offset, span = np.array([10.0, 0.0]), np.array([190.0, 250.0])
    sr = (mu + rng.normal(0, 10.0, mu.shape) - offset[:, None, None]) / span[:, None, None]
    true = float(np.mean((sr - (mu - offset[:, None, None]) / span[:, None, None]) ** 2))
    ests = []
    for k in range(20):
        n_k = np.random.default_rng(100 + k).poisson(mu)
        _, b_k = split_counts(n_k, np.random.default_rng(200 + k))
        half = (2 * b_k - offset[:, None, None]) / span[:, None, None]
        d, _ = estimate_clean_mse(sr, half, span, offset)
        ests.append(d.mean())
    # the naive MSE against the half is ~3× the clean one here; the estimate removes that
    naive = np.mean((sr - half) ** 2)
    assert naive > 2.5 * true
    assert abs(np.mean(ests) / true - 1) < 0.03
    assert abs(10 * np.log10(np.mean(ests) / true)) < 0.2


def test_thinning_protocol_rows_and_refusals(tmp_path):
    path, _ = _scan(tmp_path, size=64)
    res = mb.run_grid(["bicubic+P"], [str(path)], out=tmp_path / "run", protocols=["thinning"])
    est = res.value("toy", "bicubic+P", "psnr", truth="estimated", protocol="thinning")
    clean = res.value("toy", "bicubic+P", "psnr", truth="clean", protocol="thinning")
    half = res.value("toy", "bicubic+P", "psnr", truth="measured", protocol="thinning")
    lo = res.value("toy", "bicubic+P", "psnr_low", truth="estimated", protocol="thinning")
    hi = res.value("toy", "bicubic+P", "psnr_high", truth="estimated", protocol="thinning")
    assert half < est and lo < est < hi
    assert abs(est - clean) < max(0.5, hi - lo)
    fitted, _ = _scan(tmp_path, integer=False, name="fitted")
    res = cli("run", "-m", "bicubic", "-d", fitted, "-o", tmp_path / "run2", "--protocol", "thinning")
    assert res.returncode == 2 and "non-negative integer maps" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    # the offending value as a number and where, by element name (was 'np.float64(x) at (0, 0, 0)')
    assert "np.float64" not in res.stderr and "at element=" in res.stderr


def test_estimated_noise_ceiling_is_printed_for_a_scan_without_clean_truth(tmp_path):
    fitted, _ = _scan(tmp_path, integer=False, noisy=False, name="fitted")
    res = cli("run", "-m", "bicubic", "-d", fitted, "-o", tmp_path / "run", "-q")
    assert res.returncode == 0, res.stderr
    assert "estimated noise ceiling of fitted" in res.stdout and "estimate_sigma" in res.stdout
    counts, _ = _scan(tmp_path, noisy=False, name="counts")
    res = cli("run", "-m", "bicubic", "-d", counts, "-o", tmp_path / "run2", "-q")
    assert "estimated noise ceiling of counts" in res.stdout and "Poisson" in res.stdout


# --- cropping to the scale (issue 24 item 13) -------------------------------------------------

def test_scan_not_divisible_by_the_scale_is_cropped_and_the_crop_recorded(tmp_path):
    d = toy_scene(72)
    scan = mb.make_scan(maps=d["maps"][:, :70, :69], rgb=d["rgb"][:, :70, :69], elements=d["elements"])
    path = mb.save_scan(scan, tmp_path / "odd.zarr")
    res = cli("run", "-m", "bicubic", "-d", path, "-o", tmp_path / "run", "--protocol", "full,reduced", "-q")
    assert res.returncode == 0, res.stderr
    crops = json.loads((tmp_path / "run" / "manifest.json").read_text())["crops"]
    assert crops["odd"] == {"from": [70, 69], "to": [68, 68], "grid": "HR", "scale": 4}
    # the LR grid 17×17 is not divisible by 4 either: the reduced protocol cuts it to 16×16
    assert crops["odd@reduced"] == {"from": [17, 17], "to": [16, 16], "grid": "LR", "scale": 4}
    assert "odd cropped from 70×69 to 68×68 HR px" in res.stdout
    assert "odd cropped from 17×17 to 16×16 LR px" in res.stdout
    maps = mb.load_maps(tmp_path / "run", "odd", "bicubic")
    assert maps["maps"].shape[-2:] == (68, 68)


def test_reduced_protocol_crops_an_lr_grid_not_divisible_by_the_scale(tmp_path):
    d = toy_scene(88)  # LR grid 22×22 at scale 4: cropped to 20×20 for the reduced protocol
    path = mb.save_scan(mb.make_scan(**d), tmp_path / "ten.zarr")
    res = mb.run_grid(["bicubic"], [str(path)], out=tmp_path / "run", protocols=["reduced"])
    assert np.isfinite(res.value("ten", "bicubic", "psnr", protocol="reduced"))
    crops = json.loads((tmp_path / "run" / "manifest.json").read_text())["crops"]
    assert crops["ten@reduced"] == {"from": [22, 22], "to": [20, 20], "grid": "LR", "scale": 4}


def test_results_without_the_scan_time_column_still_read(tmp_path):
    (tmp_path / "results.csv").write_text(
        "dataset,protocol,method,seed,truth,element,metric,value\n"
        "d,full,bicubic,0,measured,all,psnr,25.5\n")
    res = mb.read_results(tmp_path)
    assert res.value("d", "bicubic", "psnr") == 25.5 and res.rows[0]["scan_time"] == ""


@pytest.mark.parametrize("op", [mb.BlockMean(4), mb.CoarseScan(4, sigma=1.0)], ids=repr)
def test_noise_aware_projection_between_identity_and_the_hard_projection(op):
    from maxrf_bench.noise import weighted_projection
    from maxrf_bench.variants import postprocess

    rng = np.random.default_rng(3)
    sr = rng.random((2, 32, 32))
    lr = np.asarray(op.down(sr)) + 0.1 * rng.standard_normal((2, 8, 8))
    hard = op.project(sr, lr)
    assert np.allclose(weighted_projection(sr, op, lr, 0.0), hard, atol=1e-9)    # no noise: +P
    assert np.abs(weighted_projection(sr, op, lr, 1e6) - sr).max() < 1e-4        # all noise: Ŷ
    mid = weighted_projection(sr, op, lr, 0.005)       # residual variance 0.01: half is noise
    d_mid, d_hard = np.linalg.norm(mid - sr), np.linalg.norm(hard - sr)
    assert 0.3 * d_hard < d_mid < 0.7 * d_hard
    out = postprocess(sr.astype(np.float32), "W", op, lr, lambda at: np.full((2, 1, 1), 0.005))
    assert np.allclose(out, mid, atol=1e-5)
    with pytest.raises(mb.ConfigError, match="would project twice"):
        from maxrf_bench.variants import check_variant, parse_spec

        check_variant(parse_spec("proposed+W"), mb.get_method("proposed"), mb.get_method("proposed").params())


def test_noise_aware_projection_takes_the_poisson_variance_at_the_methods_estimate():
    """Constructed case: a perfect output (the noise-free maps) and an LR scan of 1/64 of the
    HR time, so that a third of the LR pixels count 0.  ``+W`` must leave the perfect output
    almost as it is.  Version 1 took ``σ²`` from the measured counts: the zero-count pixels got
    ``σ² = 0``, hence the full correction, and the output moved most of the way to ``+P``."""
    from maxrf_bench.noise import weighted_projection
    from maxrf_infer.recorrupt import count_variance

    rng = np.random.default_rng(5)
    op, k = mb.BlockMean(4), 16 / 64                        # t·s² HR dwells per LR pixel
    clean = rng.uniform(0.5, 6.0, (3, 64, 64))              # expected counts per HR dwell
    offset, span = np.zeros(3), np.full(3, 8.0)
    lr_counts = rng.poisson(k * np.asarray(op.down(clean))) / k
    assert 0.2 < np.mean(lr_counts == 0) < 0.5
    sr, lr = clean / span[:, None, None], lr_counts / span[:, None, None]
    at_estimate = lambda at: count_variance(at, offset, span, k)  # noqa: E731 - what the host passes
    measured = count_variance(lr, offset, span, k)             # version 1
    err = lambda y: float(np.sqrt(np.mean((y - sr) ** 2)))      # noqa: E731
    hard, v1, v2 = (op.project(sr, lr), weighted_projection(sr, op, lr, measured),
                    weighted_projection(sr, op, lr, at_estimate))
    assert err(v2) < 0.15 * err(hard) and err(v2) < 0.25 * err(v1)
    assert err(v1) > 0.5 * err(hard)


def test_a_reused_cell_is_rescored_under_a_new_version_of_its_variant(tmp_path):
    """A cell scored under an older ``+W`` (its record says version 1, or nothing) gets its ``+W``
    metrics recomputed from the stored raw output when a run reuses it; ``+P`` is kept."""
    from maxrf_bench import rundir
    from maxrf_bench.variants import variant_version

    path, _ = _scan(tmp_path)
    args = ["run", "-m", "bicubic,bicubic+W", "-d", path, "--protocol", "acquisition",
            "--scan-times", "1/16", "-q", "-o", tmp_path / "run"]
    assert _cli_inproc(*args).exit_code == 0
    (cell,) = [c.parent for c in (tmp_path / "run" / "cells").rglob(rundir.CELL_RECORD)]
    meta = rundir.read_record(cell)
    assert meta["variant_versions"] == {"": 1, "W": variant_version("W")} and variant_version("W") == 2
    fresh = meta["metrics"]["W"]["clean"]["psnr"]["all"]
    meta["metrics"]["W"]["clean"]["psnr"]["all"] = -1.0         # what the old +W scored
    meta["metrics"][""]["clean"]["psnr"]["all"] = -2.0          # not versioned: kept
    del meta["variant_versions"]                                 # a record of before the versions
    rundir.write_record(cell, meta)
    assert _cli_inproc(*args).exit_code == 0
    again = rundir.read_record(cell)
    assert again["metrics"]["W"]["clean"]["psnr"]["all"] == pytest.approx(fresh)
    assert again["metrics"][""]["clean"]["psnr"]["all"] == -2.0
    assert again["variant_versions"]["W"] == 2
    res = mb.read_results(tmp_path / "run")
    assert res.value("toy", "bicubic+W", "psnr", truth="clean", protocol="acquisition") == pytest.approx(fresh)


def test_thinning_correction_for_shared_row_jitter_recovers_the_clean_mse():
    """Constructed case: rows of the expected counts μ are shifted by σ·z (linear
    interpolation between rows, as the simulator's stage) and shared by both halves; a
    fixed smooth Ŷ.  The plain thinning estimate targets mean(Ŷ − μ)²; with the jitter
    correction it must match mean(Ŷ − c)² (c: the unshifted counts) over many scans."""
    from scipy import ndimage as ndi

    from maxrf_bench.thinning import jitter_correction

    rng = np.random.default_rng(3)
    size, sigma = 96, 0.3
    edges = (rng.uniform(size=(2, size // 8, size // 8)) > 0.5).astype(float)
    c = 40 + 400 * ndi.gaussian_filter(np.kron(edges, np.ones((8, 8))), 0.8)
    offset, span = np.zeros(2), np.full(2, 440.0)
    norm = lambda x: x / span[:, None, None]  # noqa: E731
    sr = norm(ndi.gaussian_filter(c, (0, 2.0, 2.0)))          # a smooth output, independent of the scan
    true = float(np.mean((sr - norm(c)) ** 2))
    plain, corrected = [], []
    for k in range(12):
        r = np.random.default_rng(50 + k)
        mu = _rows_jittered(c, sigma, r)
        _, b = split_counts(r.poisson(mu), r)
        half = norm(2 * b)
        d, b_counts = estimate_clean_mse(sr, half, span, offset)
        corr, se = jitter_correction(sr, half, norm(norm(4 * b_counts)), sigma)
        plain.append(d.mean())
        corrected.append(d.mean() + corr.mean())
        assert se > 0
    bias_plain = 10 * np.log10(np.mean(plain) / true)
    bias_corr = 10 * np.log10(np.mean(corrected) / true)
    assert bias_plain < -0.15                  # the shared jitter makes the plain estimate optimistic
    assert abs(bias_corr) < 0.1


# --- per element group: photo-visible and hidden (ours) ---------------------------------

def test_group_break_even_pools_each_groups_elements_and_uses_its_own_reference():
    """Constructed rows with known answers: the visible group (A, B) falls from 30 dB at t = 1
    to 26 dB at 1/4 against its HR-scan line of 28 dB → break-even half-way in log t, 1/2; the
    hidden element C stays at 20 dB below its line of 25 dB → never.  A group's PSNR pools its
    elements' MSEs: 20 and 30 dB → −10·log10((10⁻² + 10⁻³)/2) = 22.60 dB."""
    from maxrf_bench.results import Results
    from maxrf_bench.tradeoff import group_curves, group_psnr, group_table

    assert group_psnr({"x": 20.0, "y": 30.0}, ["x", "y"]) == pytest.approx(22.596, abs=1e-3)
    psnr = {(1.0, "A"): 30.0, (1.0, "B"): 30.0, (0.25, "A"): 26.0, (0.25, "B"): 26.0,
            (1.0, "C"): 20.0, (0.25, "C"): 20.0}
    rows = [{"dataset": "d", "method": "m", "protocol": "acquisition", "truth": "clean",
             "metric": "psnr", "element": e, "value": v, "seed": 0, "scan_time": repr(t)}
            for (t, e), v in psnr.items()]
    manifest = {"acquisition": {"d": {"reference": {"psnr": 27.0, "psnr_elements":
                                                    {"A": 28.0, "B": 28.0, "C": 25.0}}}},
                "inputs": {"d@acquisition-1": {"dataset": "d",
                                               "hidden_share": {"A": 0.1, "B": 0.0, "C": 0.9}}}}
    g = group_curves(Results(rows), manifest)["d"]
    assert g["groups"] == {"visible": ["A", "B"], "hidden": ["C"]}
    assert g["reference"] == pytest.approx({"visible": 28.0, "hidden": 25.0})
    assert g["curves"][("m", "visible")] == ([0.25, 1.0], [26.0, 30.0])
    text = group_table(Results(rows), manifest)
    lines = {tuple(line.split()[:2]): line for line in text.splitlines()[1:]}
    cols = {k: re.split(r"\s{2,}", line.strip()) for k, line in lines.items()}
    assert cols[("m", "visible")][-2:] == ["1/2 (0.5)", "—"]      # no spans: no counts
    assert cols[("m", "hidden")][-2:] == ["never", "—"]
    # no hidden_share recorded: no group table
    assert group_table(Results(rows), {"acquisition": manifest["acquisition"]}) == ""


def test_group_break_even_in_counts_weighs_the_high_count_maps():
    """The group table's RMSE-in-counts break-even, hand-computed: element A (span 1 count)
    is 34 dB at t = 1 and B (span 10 counts) 26 dB, against the HR scan's 28 dB each.  Pooled
    per map, the group is 28.37 dB ≥ 28 at t = 1 and 24.37 dB at 1/4 (A 30, B 22): break-even
    at log-t fraction 0.9075 of the way, t = 0.879; in counts B weighs 100×:
    √((10^−3.4 + 100·10^−2.6)/2) = 0.3547 against the HR scan's √(101/2·10^−2.8) = 0.2829
    counts, so `never (1.25× at t=1)`.  A one-element group's RMSE in counts is that element's
    RMSE times its span."""
    from maxrf_bench.results import Results
    from maxrf_bench.tradeoff import group_curves, group_rmse_counts, group_table

    psnr = {(1.0, "A"): 34.0, (1.0, "B"): 26.0, (1.0, "C"): 20.0,
            (0.25, "A"): 30.0, (0.25, "B"): 22.0, (0.25, "C"): 22.0}
    rows = [{"dataset": "d", "method": "m", "protocol": "acquisition", "truth": "clean",
             "metric": "psnr", "element": e, "value": v, "seed": 0, "scan_time": repr(t)}
            for (t, e), v in psnr.items()]
    manifest = {"acquisition": {"d": {"elements": ["A", "B", "C"], "span": [1.0, 10.0, 4.0],
                                      "reference": {"psnr": 27.0, "psnr_elements":
                                                    {"A": 28.0, "B": 28.0, "C": 21.0}}}},
                "inputs": {"d@acquisition-1": {"dataset": "d",
                                               "hidden_share": {"A": 0.1, "B": 0.0, "C": 0.9}}}}
    g = group_curves(Results(rows), manifest)["d"]
    assert g["reference_counts"]["visible"] == pytest.approx(math.sqrt(101 / 2 * 10 ** -2.8))
    assert g["counts"][("m", "visible")][1] == pytest.approx(
        math.sqrt((10 ** -3.4 + 100 * 10 ** -2.6) / 2))
    assert g["counts"][("m", "hidden")] == pytest.approx([4 * 10 ** (-22 / 20), 4 * 10 ** (-1)])
    assert math.isnan(group_rmse_counts({"A": 30.0}, ["A"], {}))          # no span: not scored
    table = [re.split(r"\s{2,}", line.strip())
             for line in group_table(Results(rows), manifest).splitlines()[3:]]   # the rows
    cols = {tuple(c[:2]): c for c in table}
    assert cols[("m", "visible")][-2:] == ["1/1.14 (0.879)", "never (1.25× at t=1)"]
    # hidden C: 22 dB at t = 1/4 and 20 at t = 1 against 21: both at ≤ 1/4
    assert cols[("m", "hidden")][-2:] == ["≤ 1/4", "≤ 1/4"]
    assert [c[-1] for c in table if c[0] == "HR scan (reference)"] == [
        "1 (0.283 counts)", "1 (0.357 counts)"]                     # 4·10^(−21/20) for C


def test_preset_alias_writes_a_column_with_the_preset_that_explains_most_of_it():
    """The at-a-glance table names a column by the method preset it came from: against the
    run's preset ``fast`` (a = 0), ``ctx`` (b = 5, c = 6) explains b and c of a column with
    a = 0, b = 5, c = 6, leaving a = 0; ``q`` explains all of a = 9, b = 5, c = 6; a column
    one parameter away from the run's preset keeps its label (no preset says it shorter)."""
    from maxrf_bench.variants import preset_alias

    m = mb.Method(name="m", run=lambda inputs, a=1, b=2, c=3: None, defaults={"a": 1, "b": 2, "c": 3},
                  presets={"fast": {"a": 0}, "ctx": {"b": 5, "c": 6}, "q": {"a": 9, "b": 5, "c": 6}})
    assert preset_alias(m, "", {"a": 0, "b": 5, "c": 6}, "fast") == "m[preset=ctx,a=0]"
    assert preset_alias(m, "W", {"a": 9, "b": 5, "c": 6}, "fast") == "m+W[preset=q]"
    assert preset_alias(m, "P", {"a": 0, "b": 5, "c": 3}, "fast") is None
    assert preset_alias(m, "", {"a": 1, "b": 5, "c": 6}, None) == "m[preset=ctx]"  # no run preset
    # on a page: the built-in `proposed` under the run preset `fast`, a method not installed here
    from maxrf_bench.plugins import get_registry
    from maxrf_bench.tradeoff import column_aliases

    params = get_registry().get("methods", "proposed").params("ctx", {"projection": False})
    manifest = {"options": {"preset": "fast"},
                "columns": {"proposed+W[…]": {"method": "proposed", "variant": "W", "params": params},
                            "gone[x=1]": {"method": "gone", "variant": "", "params": {"x": 1}}}}
    assert column_aliases([([], None, manifest)]) == {"proposed+W[…]": "proposed+W[preset=ctx,projection=False]"}


def test_short_dwell_scan_counts_t_dwells_with_the_gain_excess():
    """The HR step with t× the dwell, in counts per HR dwell: unbiased, with the Poisson
    variance of t dwells, λ/t, plus the gain excess k²λ² where the scan records one."""
    from maxrf_bench.acquisition import short_dwell_scan

    clean = np.stack([np.full((300, 300), 50.0), np.full((300, 300), 5.0)])
    y = short_dwell_scan(clean, 0.25, np.random.default_rng(0))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), [50.0, 5.0], rtol=0.01)
    np.testing.assert_allclose(y.var(axis=(1, 2)), [200.0, 20.0], rtol=0.03)     # λ/t
    g = short_dwell_scan(clean, 1.0, np.random.default_rng(1), gain_cv=0.1)
    np.testing.assert_allclose(g.var(axis=(1, 2)), [50 + 25.0, 5 + 0.25], rtol=0.03)  # λ + k²λ²


def test_acquisition_records_the_short_dwell_scan_and_the_page_fills_it_in_for_older_runs(tmp_path):
    """Each scan time's manifest entry has the HR step with that shorter dwell: on a pure
    Poisson scan t = 1/4 is 10·log10(4) = 6.02 dB below t = 1, and t = 1 is a fresh HR scan
    (as close to the truth as the scan's own HR maps).  A run without the entry (made before)
    gets the same figures from its saved inputs; the CLI table and the page show them."""
    from maxrf_bench.rundir import read_manifest
    from maxrf_bench.tradeoff import fill_short_dwell, write_tradeoff_page

    path, _ = _scan(tmp_path, size=64)
    res = cli("run", "-m", "bicubic+P", "-d", path, "-o", tmp_path / "run", "--protocol",
              "acquisition", "--scan-times", "1,1/4", "-q")
    assert res.returncode == 0, res.stderr
    assert "HR step, t× dwell (no method)" in res.stdout
    manifest = read_manifest(tmp_path / "run")
    info = manifest["acquisition"]["toy"]
    dwell = info["short_dwell"]
    assert set(dwell) == {"1.0", "0.25"}
    assert dwell["1.0"]["psnr"] - dwell["0.25"]["psnr"] == pytest.approx(6.02, abs=0.3)
    assert dwell["1.0"]["psnr"] == pytest.approx(info["reference"]["psnr"], abs=0.3)
    older = json.loads(json.dumps(manifest))
    del older["acquisition"]["toy"]["short_dwell"]
    fill_short_dwell(tmp_path / "run", older)
    assert older["acquisition"]["toy"]["short_dwell"] == dwell          # the same seeded draw
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(
        {**manifest, "acquisition": {"toy": {k: v for k, v in info.items() if k != "short_dwell"}}}))
    page = write_tradeoff_page([tmp_path / "run"], tmp_path / "page.md").read_text()
    assert "A coarser step or a shorter dwell on toy" in page and "HR step, t× dwell" in page
    report = mb.write_report(tmp_path / "run")                           # the report fills it in too
    assert "A coarser step or a shorter dwell on toy" in Path(report).read_text()


def test_dwell_table_says_which_faster_scan_wins_per_map():
    """Hand-made: map A (span 100) at t = 1/4 is 30 dB with the short dwell and 28/26 dB in
    two columns (best 28: dwell wins); map B is 20 against 25 (the coarse scan wins)."""
    from maxrf_bench.results import Results
    from maxrf_bench.tradeoff import dwell_table

    psnr = {("m", "A"): 28.0, ("n", "A"): 26.0, ("m", "B"): 25.0, ("n", "B"): 24.0}
    rows = [{"dataset": "d", "method": col, "protocol": "acquisition", "truth": "clean",
             "metric": "psnr", "element": e, "value": v, "seed": 0, "scan_time": repr(0.25)}
            for (col, e), v in psnr.items()]
    manifest = {"acquisition": {"d": {"elements": ["B", "A"], "span": [5.0, 100.0],
                                      "reference": {"psnr_elements": {"A": 35.0, "B": 30.0}},
                                      "short_dwell": {"0.25": {"psnr_elements": {"A": 30.0, "B": 20.0}}}}}}
    table = [re.split(r"\s{2,}", line.strip()) for line in dwell_table(Results(rows), manifest).splitlines()[1:]]
    assert table[0] == ["map", "span (counts)", "HR scan", "t=1/4"]
    assert table[2] == ["A", "100", "35.0", "30.0 / 28.0 (dwell)"]
    assert table[3] == ["B", "5", "30.0", "20.0 / 25.0 (coarse)"]
    assert dwell_table(Results(rows), {"acquisition": {"d": {"elements": ["A"]}}}) == ""  # none recorded


def test_element_table_gives_each_maps_own_break_even_strongest_first():
    """Per map, hand-computed: A (span 100 counts, hidden) at 30 and 26 dB (mean of two seeds:
    29/31 and 25/27) against the HR scan's 32 dB → never, 2.0 dB short at t = 1; B (span 5) at
    30 and 26 against 28 → half-way in log t, 1/2.  A comes first (the larger span)."""
    from maxrf_bench.results import Results
    from maxrf_bench.tradeoff import element_psnr, element_table, maps_breaking_even

    psnr = {(0, 1.0, "A"): 29.0, (1, 1.0, "A"): 31.0, (0, 0.25, "A"): 25.0, (1, 0.25, "A"): 27.0,
            (0, 1.0, "B"): 30.0, (1, 1.0, "B"): 30.0, (0, 0.25, "B"): 26.0, (1, 0.25, "B"): 26.0}
    rows = [{"dataset": "d", "method": "m", "protocol": "acquisition", "truth": "clean",
             "metric": "psnr", "element": e, "value": v, "seed": seed, "scan_time": repr(t)}
            for (seed, t, e), v in psnr.items()]
    manifest = {"acquisition": {"d": {"elements": ["B", "A"], "span": [5.0, 100.0],
                                      "reference": {"psnr": 30.0, "psnr_elements": {"A": 32.0, "B": 28.0}}}},
                "inputs": {"d@acquisition-1": {"dataset": "d", "hidden_share": {"A": 0.9, "B": 0.0}}}}
    lines = element_table(Results(rows), manifest).splitlines()[1:]   # header, rule, rows
    table = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert table[0] == ["method", "A (hidden), 100", "B, 5"]
    assert table[2] == ["m", "never (-2.0 dB at t=1)", "1/2"]
    assert table[3] == ["HR scan (PSNR, dB)", "32.00", "28.00"]
    assert element_table(Results([]), manifest) == ""
    assert maps_breaking_even(element_psnr(Results(rows), "d")["m"],
                              manifest["acquisition"]["d"]["reference"]["psnr_elements"]) == (1, 2)  # B of A, B


def test_acquisition_records_the_per_element_hr_reference_and_the_methods_noise_variance(tmp_path):
    """The manifest's HR-scan reference per element is the element's own PSNR of the HR maps
    against the noise-free truth; a method under the acquisition protocol gets the LR scan's
    Poisson variance from its counts (``MethodInputs.noise_var`` = counts/(t·s²)/span²,
    computed from the LR maps it sees), and none under the full protocol."""
    d = toy_scene(32, seed=3)
    clean = d["maps"].astype(np.float64) * 5 + 2.0
    maps = np.random.default_rng(7).poisson(clean).astype(np.float32)
    n = clean.shape[0]
    share = np.linspace(0, 1, n)
    scan = mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32), rgb=d["rgb"],
                        elements=d["elements"], hidden_share=share)
    path = mb.save_scan(scan, tmp_path / "hs.zarr")

    class Var:
        seen: list = []

        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            def run(inputs):
                Var.seen.append((np.asarray(inputs.maps_lr.values, np.float64).copy(), inputs.noise_var))
                return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bicubic")
            register(mb.Method("var", run, "records its noise variance"))

    with registered_plugin(Var(), "var"):
        mb.run_grid(["var"], [str(path)], out=tmp_path / "run", protocols=["acquisition", "full"],
                    scan_times="1/4")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    span = maps.max(axis=(1, 2)) - maps.min(axis=(1, 2))
    per = {e: -10 * np.log10(np.mean(((maps[i] - clean[i]) / span[i]) ** 2))
           for i, e in enumerate(d["elements"])}
    got = manifest["acquisition"]["hs"]["reference"]["psnr_elements"]
    assert got == pytest.approx(per, abs=1e-3)
    seen = [(lr, v) for lr, v in Var.seen if v is not None]
    assert len(seen) == 1 and sum(v is None for _, v in Var.seen) == 1  # full protocol: none
    lr, var = seen[0]
    off = maps.min(axis=(1, 2))[:, None, None]
    counts = np.maximum(lr * span[:, None, None] + off, 0)
    expected = counts / (0.25 * 16) / span[:, None, None] ** 2
    np.testing.assert_allclose(var, expected, rtol=1e-4, atol=1e-9)


def test_report_shows_the_per_group_break_even_when_the_scan_records_hidden_share(tmp_path):
    d = toy_scene(32, seed=5)
    clean = d["maps"].astype(np.float64) * 5 + 2.0
    maps = np.random.default_rng(9).poisson(clean).astype(np.float32)
    share = np.linspace(0, 1, clean.shape[0])
    scan = mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32), rgb=d["rgb"],
                        elements=d["elements"], hidden_share=share)
    path = mb.save_scan(scan, tmp_path / "hs.zarr")
    res = cli("run", "-m", "bicubic+P", "-d", path, "-o", tmp_path / "run", "--protocol",
              "acquisition", "--scan-times", "1,1/4", "-q")
    assert res.returncode == 0, res.stderr
    assert "Per element group on hs" in res.stdout
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Per element group on hs" in report
    assert "Per element map on hs" in report and "Per element map" not in res.stdout  # page/report only
    # an acquisition-only run has no Table I: no empty heading, caption or link to it
    assert "Table I</h2>" not in report and "href='#tables'" not in report and "Best in <b>bold</b>" not in report


def test_report_of_one_scan_time_scored_by_psnr_alone_draws_its_figure(tmp_path):
    """The RMSE panel has no data without the rmse metric: it shares the PSNR panel's t axis
    (a log axis with no data of its own was an internal error, exit 70)."""
    path, _ = _scan(tmp_path)
    mb.run_grid(["bicubic", "bicubic+W"], [str(path)], out=tmp_path / "run", protocols=["acquisition"],
                scan_times="1/16", metrics=["psnr"])
    report = mb.write_report(tmp_path / "run")
    assert report.exists() and list(report.parent.rglob("*.png"))


def test_scan_times_outside_the_representable_range_are_refused_clearly():
    """Before: '1e-9' was refused as 'not positive', '1e400' crashed (exit 70, OverflowError),
    and 1/1000000 was accepted but shown as 't=0' in the tables."""
    from maxrf_bench.acquisition import time_text

    for bad in ("1e-9", "1e400", "1e12"):
        with pytest.raises(mb.ConfigError, match="between 1/1048576 and 1048576"):
            parse_scan_times(bad)
    for empty in ("", " , "):  # an empty --scan-times "" was silently the default list
        with pytest.raises(mb.ConfigError, match="at least one time"):
            parse_scan_times(empty)
    assert parse_scan_times("1/1000000,0.1,1/3") == [Fraction(1, 3), Fraction(1, 10), Fraction(1, 1000000)]
    assert time_text(1e-6) == "1/1000000"
    assert time_text(0.1) == "1/10" and time_text(1 / 3) == "1/3" and time_text(2.0) == "2"


def _cli_inproc(*args):
    """The command line in this process (click's runner): no interpreter start per call."""
    from click.testing import CliRunner

    from maxrf_bench.cli import cli as main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_tradeoff_page_never_overwrites_a_file_it_did_not_write(tmp_path):
    """Before: `tradeoff-page RUN -o notes.md` replaced the user's notes.md without a word."""
    path, _ = _scan(tmp_path)
    run = tmp_path / "run"
    mb.run_grid(["bicubic+P"], [str(path)], out=run, protocols=["acquisition"], scan_times="1,1/4",
                metrics=["psnr", "rmse"])
    mine = tmp_path / "notes.md"
    mine.write_text("my notes\n")
    res = _cli_inproc("tradeoff-page", run, "-o", mine)
    assert res.exit_code == 2 and "Error:" in res.output and res.output.strip().count("\n") == 0, res.output
    assert mine.read_text() == "my notes\n"
    page = tmp_path / "page.md"
    assert _cli_inproc("tradeoff-page", run, "-o", page).exit_code == 0
    assert _cli_inproc("tradeoff-page", run, "-o", page).exit_code == 0  # its own page: replaced
    assert "break-even t" in page.read_text()


@pytest.mark.parametrize("op", [mb.BlockMean(2), mb.CoarseScan(4, sigma=0.7)], ids=repr)
def test_jitter_leak_is_the_jitter_that_reaches_a_consistent_output(op):
    """The thinning estimate was optimistic by up to +0.4 dB at scale 2 (+0.1–0.2 at scale 4)
    on the simulator's scans: a consistent output Ŷ ≈ Ŷ(c) + P·e carries the LR scan's share
    of the row jitter e, and 2⟨Pe, e⟩ was left out.  ``jitter_leak`` is its expectation,
    2·tr(P Cov e)/N; checked here against a Monte-Carlo of the simulator's own row jitter."""
    from scipy.ndimage import gaussian_filter

    from maxrf_bench.thinning import jitter_leak
    from maxrf_bench.acquisition import row_jitter

    rng = np.random.default_rng(0)
    c = gaussian_filter(rng.random((1, 32, 24)), (0, 1.0, 2.0)) * 100
    sigma, n = 0.3, 1500
    es = np.stack([row_jitter(c, rng, sigma) - c for _ in range(n)])
    zero = np.zeros((n, 1, 32 // op.scale, 24 // op.scale))
    pe = es - op.project(es, zero)                                    # P e, each draw
    em = es.mean(0)
    pem = em - op.project(em, zero[0])
    mc = 2 * ((pe * es).sum(axis=(2, 3)).mean(0) - (pem * em).sum(axis=(1, 2))) / c[0].size
    est = jitter_leak(c, np.zeros_like(c), sigma, op)
    assert est[0] > 0.1 and est[0] == pytest.approx(mc[0], rel=0.08)


@pytest.mark.parametrize("sigma, blur, tol", [(0.15, 0.8, 0.03), (0.15, 2.0, 0.03), (0.3, 2.0, 0.15)])
def test_jitter_correction_taken_from_the_jittered_half_targets_the_clean_maps(sigma, blur, tol):
    """The correction's sums need the clean maps ``c``; only the scoring half, of mean
    ``μ = c + e``, is known.  Taken at ``μ`` as it was, the sums were biased by as much as
    the ``‖e‖²`` term (here −6.6 %, +25.7 % and −120 % of the exact value).  Taken at ``μ``
    with the jitter's mean blur undone and its variance removed, they must average to the
    exact ``T(c)`` over many jittered scans (no counting noise, a fixed output)."""
    from scipy import ndimage as ndi

    from maxrf_bench.thinning import _jitter_terms, jitter_correction

    rng = np.random.default_rng(3)
    edges = (rng.uniform(size=(2, 12, 12)) > 0.5).astype(float)
    c = (40 + 400 * ndi.gaussian_filter(np.kron(edges, np.ones((8, 8))), blur)) / 440
    sr = ndi.gaussian_filter(c, (0, 2.0, 2.0))
    zero = np.zeros_like(c)
    est = [jitter_correction(sr, _rows_jittered(c, sigma, np.random.default_rng(50 + k)), zero, sigma)[0].sum()
           for k in range(200)]
    exact = _jitter_terms(sr, c, sigma).sum()
    assert abs(np.mean(est) / exact - 1) < tol


def test_thinning_jitter_correction_with_an_output_consistent_with_the_lr_scan():
    """As the constructed case above, but Ŷ is projected onto the LR scan of the input half
    (as every +P column, and nearly every method, is) at scale 2: it then carries the LR
    scan's share of the jitter, and without :func:`jitter_leak` the corrected estimate was
    still optimistic by 0.5 dB here (σ = 0.15 px, the simulator's; +0.04 dB with it)."""
    from scipy import ndimage as ndi

    from maxrf_bench.thinning import jitter_correction, jitter_leak

    rng = np.random.default_rng(3)
    size, sigma, op = 96, 0.15, mb.BlockMean(2)
    edges = (rng.uniform(size=(2, size // 8, size // 8)) > 0.5).astype(float)
    c = 40 + 400 * ndi.gaussian_filter(np.kron(edges, np.ones((8, 8))), 0.8)
    offset, span = np.zeros(2), np.full(2, 440.0)
    norm = lambda x: x / span[:, None, None]  # noqa: E731
    smooth = norm(ndi.gaussian_filter(c, (0, 2.0, 2.0)))
    true, without, with_leak = [], [], []
    for k in range(12):
        r = np.random.default_rng(50 + k)
        mu = _rows_jittered(c, sigma, r)
        a, b = split_counts(r.poisson(mu), r)
        sr = op.project(smooth, op.down(norm(2 * a)))             # consistent with the LR scan
        half = norm(2 * b)
        d, b_counts = estimate_clean_mse(sr, half, span, offset)
        var = norm(norm(4 * b_counts))
        corr, _ = jitter_correction(sr, half, var, sigma)
        true.append(np.mean((sr - norm(c)) ** 2))
        without.append(d.mean() + corr.mean())
        with_leak.append(d.mean() + corr.mean() + jitter_leak(half, var, sigma, op).mean())
    bias = lambda est: 10 * np.log10(np.mean(est) / np.mean(true))  # noqa: E731
    assert bias(without) < -0.3              # optimistic (an MSE too small): −0.51 dB
    assert abs(bias(with_leak)) < 0.15       # +0.04 dB (+0.09 with the sums taken at b as it was)


def test_dwell_acquisition_bins_a_short_dwell_scan_that_only_the_host_fuses_with(tmp_path):
    """``--acquire dwell``: the methods get the block means of an HR-step scan of t× the dwell,
    never the scan itself; the run keeps the scan beside its inputs, the row ``HR step, t×
    dwell`` scores that very scan, and ``+F`` fuses a method's output with it: at t = 1/4 the
    fusion is closer to the noise-free truth than either the scan or the binned method alone."""
    from maxrf_bench.rundir import read_manifest
    from maxrf_bench.scoring import psnr_db

    path, clean = _scan(tmp_path, size=64)
    Spy.seen = []
    with registered_plugin(Spy(), "spy"):
        res = mb.run_grid(["spy", "bicubic+P", "bicubic+F"], [str(path)], out=tmp_path / "run",
                          protocols=["acquisition"], scan_times="1,1/4", acquire="dwell")
    assert len(Spy.seen) == 2 and all("maps_dwell" not in s["fields"] for s in Spy.seen)
    inputs = mb.load_inputs(tmp_path / "run", "toy", "acquisition-1_4")
    dwell = np.asarray(inputs["maps_dwell"].values, np.float64)
    lr = np.asarray(inputs["maps_lr"].values, np.float64)
    np.testing.assert_allclose(mb.BlockMean(4).down(dwell), lr, atol=1e-6)   # its block means
    assert any(np.allclose(s["maps_lr"], lr, atol=1e-6) for s in Spy.seen)
    truth = np.asarray(inputs["maps_clean"].values, np.float64)
    info = read_manifest(tmp_path / "run")["acquisition"]["toy"]
    assert info["acquire"] == "dwell"
    assert info["short_dwell"]["0.25"]["psnr"] == pytest.approx(psnr_db(dwell, truth), abs=1e-3)
    db = {(r["method"], r["scan_time"]): float(r["value"])
          for r in csv.DictReader(open(tmp_path / "run" / "results.csv"))
          if r["metric"] == "psnr" and r["element"] == "all" and r["truth"] == "clean"}
    assert len(res.values("toy", "bicubic+F", "psnr", truth="clean", protocol="acquisition")) == 2
    assert db["bicubic+F", "0.25"] > max(db["bicubic+P", "0.25"], info["short_dwell"]["0.25"]["psnr"]) + 0.3
    from maxrf_bench.tradeoff import write_tradeoff_page

    page = write_tradeoff_page([tmp_path / "run"], tmp_path / "docs" / "page.md").read_text()
    assert "toy — operator `blockmean, binned short dwell`" in page and "(binned)" in page
    assert [f.name for f in (tmp_path / "docs" / "figures").iterdir()] == ["page-toy-blockmean-dwell.png"]
    report = Path(mb.write_report(tmp_path / "run")).read_text()
    assert "<code>--acquire dwell</code>" in report
    assert read_manifest(tmp_path / "run")["options"]["acquire"] == "dwell"


def test_fuse_dwell_trusts_the_scan_by_its_counting_noise():
    """``F = S + w(Y − S)``: the scan itself where it has no noise, the estimate where the scan
    agrees with it or is far noisier than what the estimate misses; on a noisy scan of a map
    with an edge the estimate smooths away, closer to the truth than either."""
    from maxrf_bench.noise import fuse_dwell

    rng = np.random.default_rng(0)
    truth = np.zeros((1, 64, 64))
    truth[:, :, 32:] = 1.0
    s = np.full_like(truth, 0.5)                            # misses the edge entirely
    y = truth + 0.1 * rng.standard_normal(truth.shape)
    np.testing.assert_allclose(fuse_dwell(s, y, 0.0), y, atol=1e-12)
    np.testing.assert_allclose(fuse_dwell(s, s, 0.01), s)
    np.testing.assert_allclose(fuse_dwell(s, y, 1e6), s, atol=1e-4)
    smooth = truth.copy()                                   # S right: keep (nearly) S
    flat = smooth + 0.3 * rng.standard_normal(truth.shape)
    mse = lambda a: float(((a - truth) ** 2).mean())  # noqa: E731
    assert mse(fuse_dwell(smooth, flat, 0.09)) < 0.1 * mse(flat)
    f = fuse_dwell(s, y, 0.01)
    assert mse(f) < min(mse(s), mse(y))


@pytest.mark.parametrize("args, says", [
    (["-m", "bicubic+F", "--protocol", "acquisition"], "+F fuses"),
    (["-m", "bicubic", "--protocol", "acquisition", "--acquire", "dwell", "--operator", "scan"],
     "block-mean operator"),
    (["-m", "bicubic", "--protocol", "full", "--acquire", "dwell"], "--protocol acquisition"),
])
def test_dwell_acquisition_and_fusion_are_refused_where_they_do_not_apply(tmp_path, args, says):
    path, _ = _scan(tmp_path)
    res = _cli_inproc("run", "-d", path, "-o", tmp_path / "run", *args)
    assert res.exit_code == 2 and says in res.output, res.output
    assert not (tmp_path / "run").exists()


def test_tradeoff_page_keeps_binned_short_dwell_runs_apart_from_coarse_scans():
    from maxrf_bench.tradeoff import _lr_scans

    entry = {"operator": {"name": "blockmean", "scale": 4}, "noise_seed": 0, "reference": {"psnr": 30.0}}
    coarse = {"acquisition": {"toy": entry}}
    assert _lr_scans(coarse) == _lr_scans({"acquisition": {"toy": {**entry, "acquire": "coarse"}}})
    assert _lr_scans(coarse) != _lr_scans({"acquisition": {"toy": {**entry, "acquire": "dwell"}}})


def test_fusion_applies_to_a_method_that_projects_by_itself():
    """``+P`` and ``+W`` on a method that ends with the projection would project twice and are
    refused; ``+F`` fuses its (projected) output with the short-dwell scan and is not."""
    from maxrf_bench.errors import ConfigError
    from maxrf_bench.variants import check_variant, parse_spec

    method = mb.Method("projector", lambda inputs: None, "projects", projects=True)
    for text in ("projector+P", "projector+W"):
        with pytest.raises(ConfigError, match="project twice"):
            check_variant(parse_spec(text), method, {})
    check_variant(parse_spec("projector+F"), method, {})


def test_tradeoff_page_keeps_runs_of_other_noise_draws_in_their_own_columns(tmp_path):
    """Two runs of one scan with other ``--noise-seed`` score other LR scans: the page gives
    each its section, its column of the at-a-glance table and its figure (before, the second
    overwrote the first's column and figure)."""
    from maxrf_bench.tradeoff import write_tradeoff_page

    path, _ = _scan(tmp_path)
    for n in (0, 1):
        mb.run_grid(["bicubic+P"], [str(path)], out=tmp_path / f"run{n}", protocols=["acquisition"],
                    scan_times="1,1/4", noise_seed=n)
    page = write_tradeoff_page([tmp_path / "run0", tmp_path / "run1"], tmp_path / "docs" / "p.md").read_text()
    head = next(line for line in page.splitlines() if line.startswith("| column |"))
    assert head.count("toy, `blockmean") == 2 and "toy, `blockmean, noise seed 1`" in head
    assert "## toy — operator `blockmean, noise seed 1`" in page
    assert sorted(f.name for f in (tmp_path / "docs" / "figures").iterdir()) == \
        ["p-toy-blockmean-noise1.png", "p-toy-blockmean.png"]


def test_rerun_reproduces_a_scan_time_cell_from_the_saved_inputs_and_from_source(tmp_path):
    """``rerun --protocol acquisition-1_4``: the cell again from the saved inputs, and with
    ``--from-source`` from the scan with the run's recorded noise seed and acquisition (the
    same short-dwell draw), both exactly; a thinning cell from source is refused in one line."""
    path, _ = _scan(tmp_path)
    mb.run_grid(["bicubic+F"], [str(path)], out=tmp_path / "run", protocols=["acquisition"],
                scan_times="1,1/4", acquire="dwell", noise_seed=3)
    for extra in ([], ["--from-source"]):
        res = _cli_inproc("rerun", tmp_path / "run", "-d", "toy", "-m", "bicubic+F",
                          "--protocol", "acquisition-1_4", *extra)
        assert res.exit_code == 0 and "reproduced exactly" in res.output, res.output
    mb.run_grid(["bicubic+P"], [str(path)], out=tmp_path / "thin", protocols=["thinning"])
    res = _cli_inproc("rerun", tmp_path / "thin", "-d", "toy", "-m", "bicubic+P", "--protocol", "thinning",
                      "--from-source")
    assert res.exit_code == 2 and "without --from-source" in res.output, res.output
    assert _cli_inproc("rerun", tmp_path / "thin", "-d", "toy", "-m", "bicubic+P",
                       "--protocol", "thinning").exit_code == 0
