"""A measured short-dwell scan: the scan store's ``maps_dwell``, ``import --short-dwell`` and
``+F`` outside the acquisition protocol (a conservator's own faster scan at the HR step)."""
from __future__ import annotations

import csv
from fractions import Fraction

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.acquisition import _DWELL_SALT, _noise_rng, short_dwell_scan
from maxrf_bench.testing import toy_scene


def _toy(size=64, seed=0):
    d = toy_scene(size, seed=seed)
    clean = d["maps"].astype(np.float64) * 5 + 2.0          # expected counts per HR dwell
    maps = np.random.default_rng(seed + 100).poisson(clean).astype(np.float32)
    return d, clean, maps


def _cli(*args):
    from click.testing import CliRunner

    from maxrf_bench.cli import cli as main

    return CliRunner().invoke(main, [str(a) for a in args])


def _scores(run, protocol=None):
    return {(r["method"], r["scan_time"]): float(r["value"])
            for r in csv.DictReader(open(run / "results.csv"))
            if r["metric"] == "psnr" and r["element"] == "all" and r["truth"] == "clean"
            and (protocol is None or r["protocol"] == protocol)}


def test_a_stored_short_dwell_scan_gives_what_the_dwell_acquisition_gives(tmp_path):
    """The same short-dwell scan, once made by ``--protocol acquisition --acquire dwell`` and
    once stored as a scan's ``maps_dwell`` (its block means as ``maps_lr``, its dwell
    ``maps_dwell_time`` = 1/4) and run under the full protocol: ``+F`` and ``+W`` score the same
    against the noise-free truth (the stored path knows the counting time, so ``+W`` uses the
    counts model there too, not a blind estimate)."""
    d, clean, maps = _toy()
    path = mb.save_scan(mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32), rgb=d["rgb"],
                                     elements=d["elements"]), tmp_path / "toy.zarr")
    cols = ["bicubic", "bicubic+W", "bicubic+F"]
    mb.run_grid(cols, [str(path)], out=tmp_path / "acq", protocols=["acquisition"],
                scan_times="1/4", acquire="dwell")
    t = Fraction(1, 4)
    hr = short_dwell_scan(clean, float(t), _noise_rng(0, "toy", t, salt=_DWELL_SALT))
    lr = mb.BlockMean(4).down(hr)
    stored = mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32), maps_lr=lr, maps_dwell=hr,
                          rgb=d["rgb"], elements=d["elements"], maps_dwell_time=0.25)
    path2 = mb.save_scan(stored, tmp_path / "mine.zarr")
    mb.run_grid(cols, [str(path2)], out=tmp_path / "full")
    acq, full = _scores(tmp_path / "acq"), _scores(tmp_path / "full")
    for col in cols:
        assert full[col, ""] == pytest.approx(acq[col, "0.25"], abs=2e-3), col
    assert full["bicubic+F", ""] > full["bicubic", ""] + 0.3
    assert full["bicubic+W", ""] != pytest.approx(full["bicubic", ""], abs=1e-3)


def test_maps_dwell_must_be_the_scan_its_lr_maps_were_binned_from(tmp_path):
    d, _, maps = _toy(size=32)
    lr = mb.BlockMean(4).down(maps)
    kw = dict(rgb=d["rgb"], elements=d["elements"])
    ok = mb.make_scan(maps_lr=lr, maps_dwell=maps, **kw)
    back = mb.open_scan(mb.save_scan(ok, tmp_path / "ok.zarr"))
    np.testing.assert_array_equal(back["maps_dwell"].values, maps)
    with pytest.raises(mb.ScanValidationError, match="block means of 'maps_dwell'.*element=") as e:
        mb.make_scan(maps_lr=lr * 1.01 + 0.5, maps_dwell=maps, **kw)
    assert "differ" in str(e.value)
    with pytest.raises(mb.ScanValidationError, match="needs 'maps_lr'"):
        mb.validate_scan(ok.drop_vars("maps_lr").assign(maps=ok["maps_dwell"]))
    with pytest.raises(mb.ScanValidationError, match="maps_dwell_time must be a positive number"):
        mb.make_scan(maps_lr=lr, maps_dwell=maps, maps_dwell_time=0.0, **kw)


def test_bin_short_dwell_cuts_to_the_scale_and_keeps_no_truth():
    d, _, maps = _toy(size=34)
    scan = mb.bin_short_dwell(mb.make_scan(maps=maps, rgb=d["rgb"], elements=d["elements"]), 4)
    assert "maps" not in scan and scan.attrs["scale"] == 4
    assert scan["maps_dwell"].shape == (len(d["elements"]), 32, 32) and scan["rgb"].shape[1:] == (32, 32)
    np.testing.assert_allclose(scan["maps_lr"].values[:, 1, 2],
                               maps[:, 4:8, 8:12].reshape(len(d["elements"]), -1).mean(1), rtol=1e-6)
    assert scan.attrs["short_dwell_crop"] == [34, 34, 32, 32]


def test_import_short_dwell_then_fuse_a_method_with_the_measured_scan(tmp_path):
    """A user's HR-step scan of a short dwell (raw counts, no truth): ``import --short-dwell``
    bins it; ``run -m bicubic+F`` fuses bicubic's output with it by its Poisson noise (its own
    counts, ``t`` = 1): the saved maps are ``fuse_counts`` computed by hand; ``info`` says what
    the store holds; ``+F`` on a scan without one, and another operator on it, are refused."""
    import tifffile
    from PIL import Image

    from maxrf_infer.fuse import fuse_counts

    d, _, maps = _toy(size=32, seed=2)
    folder = tmp_path / "maps"
    folder.mkdir()
    for name, m in zip(["Pb_L", "Hg_L", "Ca_K"], maps):
        tifffile.imwrite(folder / f"{name}.tif", m.astype(np.uint16))
    Image.fromarray((d["rgb"].transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "scan.zarr"
    bad = _cli("import", folder, "--rgb", tmp_path / "photo.png", "-o", out, "--short-dwell", "--gain-cv", "-0.1")
    assert bad.exit_code == 2 and "scanner_gain_cv" in bad.output and not out.exists(), bad.output
    res = _cli("import", folder, "--rgb", tmp_path / "photo.png", "-o", out, "--short-dwell")
    assert res.exit_code == 0 and "maps_dwell 3 elements × 32×32 (binned 4× into maps_lr 8×8)" in res.output, res.output
    scan = mb.open_scan(out)
    assert "maps" not in scan and scan["maps_lr"].shape == (3, 8, 8)
    assert "short dwell: maps_dwell is an HR-step scan of a shorter dwell (relative dwell 1)" in _cli("info", out).output
    res = _cli("run", "-m", "bicubic,bicubic+F", "-d", out, "-o", tmp_path / "run")
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    raw = mb.load_maps(run, "scan", "bicubic")["maps_norm"].values.astype(np.float64)
    fused = mb.load_maps(run, "scan", "bicubic+F")["maps"].values
    ins = mb.load_inputs(run, "scan")
    off = np.asarray(ins.attrs["offset"])[:, None, None]
    span = np.asarray(ins.attrs["span"])[:, None, None]
    dwell = np.asarray(scan["maps_dwell"].values, np.float64)
    want = fuse_counts(raw * span + off, dwell, 1.0, 0.0)
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=1e-3 * float(span.max()))
    assert np.abs(fused - (raw * span + off)).max() > 1.0         # it did fuse
    html = open(mb.write_report(run)).read()      # the figure shows the scan +F fused with
    assert "the short-dwell HR-step scan it was binned from" in html
    assert "no-reference metrics only (no ground truth in these scans)" in html
    assert "no-reference metrics only" in _cli("table", run).output
    for args, says in ((["-m", "bicubic+F", "-d", tmp_path / "plain.zarr"], "+F fuses"),
                       (["-m", "bicubic", "-d", out, "--operator", "gaussian"], "--operator blockmean")):
        if "plain" in str(args[3]):
            mb.save_scan(mb.make_scan(maps=maps, rgb=d["rgb"], elements=d["elements"]), args[3])
        res = _cli("run", *args, "-o", tmp_path / "refused")
        assert res.exit_code == 2 and says in res.output, res.output
        assert not (tmp_path / "refused").exists()


def test_maxrf_infer_fuse_gives_the_runs_plus_f_column(tmp_path):
    """The exported generator with ``maxrf-infer --fuse``, whole or in tiles smaller than the
    fusion's halo, gives the run's ``proposed+F`` column (to 1e-5 of its range); ``--fuse`` on
    a scan without ``maps_dwell``, or with ``--noise-aware``, is one line, exit 2, no output."""
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys
    from pathlib import Path

    import xarray as xr

    import maxrf_infer
    from maxrf_bench_plugins import onnx_commands

    d, clean, _ = _toy(size=48, seed=5)
    hr = np.random.default_rng(9).poisson(clean * 0.25).astype(np.float32)   # raw counts, t = 1/4
    scan = mb.bin_short_dwell(mb.make_scan(maps=hr, rgb=d["rgb"], elements=d["elements"]), 4)
    path = mb.save_scan(scan, tmp_path / "quick.zarr", chunk=24)
    p = ("proposed[adversarial_iterations=0,atoms=8,kernel=5,layers=2,pretrain_iterations=30,"
         "threads=1,use_adv=False]")
    mb.run_grid([p, p.replace("proposed[", "proposed+F[")], [str(path)], out=tmp_path / "run", seeds=[0])
    ref = mb.load_maps(tmp_path / "run", "quick", p.replace("proposed[", "proposed+F["))["maps"].values
    raw = mb.load_maps(tmp_path / "run", "quick", p)["maps"].values
    model = onnx_commands.export_model(tmp_path / "run", tmp_path / "m.onnx", dataset="quick", method=p)
    rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
    assert rel(raw, ref) > 1e-3                                         # +F acts on these maps
    noise = maxrf_infer.read_model_info(model).metadata["lr_noise"]     # --noise-aware's σ²: counts
    assert noise["model"] == "counts" and noise["dwell"] == pytest.approx(16.0)  # s² dwells of the scan
    for tile, name in ((0, "whole.zarr"), (16, "tiled.zarr")):
        maxrf_infer.infer(model, path, tmp_path / name, provider="cpu", progress=False,
                          echo=lambda s: None, tile=tile, fuse=True)
        with xr.open_zarr(tmp_path / name) as ds:
            assert rel(ds["maps"].values, ref) <= 1e-5, tile
            assert ds.attrs["variant"].startswith("+F") and "_fused" not in ds
    plain = mb.save_scan(mb.make_scan(maps_lr=scan["maps_lr"].values, rgb=d["rgb"], elements=d["elements"]),
                         tmp_path / "plain.zarr")
    exe = str(Path(sys.executable).parent / "maxrf-infer")
    for scan_path, extra, says in ((plain, [], "maps_dwell"), (path, ["--noise-aware"], "found both")):
        res = subprocess.run([exe, str(model), str(scan_path), "-o", str(tmp_path / "no.zarr"), "--provider",
                              "cpu", "-q", "--fuse", *extra], capture_output=True, text=True)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert says in res.stderr and not (tmp_path / "no.zarr").exists()


def test_binned_short_dwell_scan_gives_methods_its_counting_noise():
    """Its LR maps are block means of s² dwells of the short scan, so a method's inputs carry
    their Poisson variance (``noise_var``, the counts model with ``k = t·s²``) as under the
    acquisition protocol; a scan without ``maps_dwell`` gets none (its noise is estimated blind)."""
    from maxrf_bench.noise import count_time, noise_model

    d, clean, maps = _toy(size=32)
    hr = np.random.default_rng(1).poisson(clean * 0.5).astype(np.float32) / 0.5
    scan = mb.make_scan(maps_lr=mb.BlockMean(4).down(hr), maps_dwell=hr, rgb=d["rgb"],
                        elements=d["elements"], maps_dwell_time=0.5)
    prep = mb.prepare_scan(scan, name="mine", scale=None)
    assert count_time(prep) == 0.5 and noise_model(prep) == {"model": "counts", "dwell": 8.0, "gain_cv": 0.0}
    lr_counts = prep.maps_lr.values * prep.span[:, None, None] + prep.offset[:, None, None]
    want = np.maximum(lr_counts, 0) / 8.0 / prep.span[:, None, None] ** 2
    np.testing.assert_allclose(prep.inputs().noise_var, want, rtol=1e-4)
    plain = mb.prepare_scan(mb.make_scan(maps_lr=scan["maps_lr"].values, rgb=d["rgb"], elements=d["elements"]),
                            name="plain", scale=None)
    assert count_time(plain) is None and plain.inputs().noise_var is None


def test_fusion_in_the_anscombe_domain_does_not_read_single_counts_as_detail():
    """At a few counts per pixel a pixel that counts 1 where ``S`` expects 0.05 is Poisson noise;
    version 1 (σ² = c at ``S``, the counts directly) took such pixels for detail and let the
    scan's noise through; the Anscombe domain (version 2) keeps ``S`` there, still recovers an
    edge ``S`` misses in a bright map, and returns ``S`` (≥ 0) or the scan exactly at w = 0 or 1."""
    from maxrf_bench.noise import fuse_dwell
    from maxrf_infer.fuse import fuse_counts

    rng = np.random.default_rng(0)
    lam = np.full((1, 64, 64), 0.2)                       # counts per pixel of the short scan
    lam[:, 20:40, 20:40] = 0.6
    y = rng.poisson(lam).astype(np.float64)
    s = lam.copy()                                          # S right: the fusion should keep it
    mse = lambda a, ref: float(((a - ref) ** 2).mean())  # noqa: E731
    v1 = fuse_dwell(s, y, np.maximum(s, 0))
    v2 = fuse_counts(s, y)
    assert mse(v2, lam) < 0.3 * mse(v1, lam) and mse(v2, lam) < 0.05 * mse(y, lam)
    bright = np.zeros((1, 64, 64)) + 400.0
    bright[:, :, 32:] = 900.0
    yb = rng.poisson(bright).astype(np.float64)
    from scipy.ndimage import gaussian_filter

    sb = gaussian_filter(bright, (0, 0, 4))                # right far from the edge, blurs it
    fb = fuse_counts(sb, yb)
    assert mse(fb, bright) < 0.5 * min(mse(sb, bright), mse(yb, bright))
    np.testing.assert_allclose(fuse_counts(sb, sb), sb, rtol=1e-12)
    np.testing.assert_allclose(fuse_counts(s, y, 0.5), fuse_counts(s * 0.5, y * 0.5) / 0.5, rtol=1e-12)


def test_the_fusion_pass_reads_windows_through_a_bounded_chunk_cache(tmp_path):
    """``maxrf-infer --fuse`` reads each tile's window with its halo through
    :func:`maxrf_infer.fuse.chunk_reader`: every window equals the array's own slice, across
    chunk borders and after evictions (a budget of a few chunks), and the cache never holds
    more than its budget allows; ``fuse_counts`` gives the same values on several threads."""
    import zarr
    from maxrf_infer.fuse import chunk_reader, fuse_counts

    rng = np.random.default_rng(5)
    data = rng.random((3, 70, 90)).astype(np.float32)
    arr = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=data.shape, chunks=(3, 16, 16),
                          dtype="f4", zarr_format=2)
    arr[:] = data
    reader = chunk_reader(arr, budget=5 * 3 * 16 * 16 * 4)
    assert reader.max_chunks == 5
    for _ in range(60):
        y0, x0 = rng.integers(0, 60), rng.integers(0, 80)
        ys, xs = slice(y0, min(70, y0 + rng.integers(1, 40))), slice(x0, min(90, x0 + rng.integers(1, 40)))
        np.testing.assert_array_equal(reader.read(ys, xs), data[:, ys, xs])
        assert len(reader.blocks) <= 5
    s = rng.gamma(2.0, 50.0, (5, 40, 40))
    y = rng.poisson(s * rng.uniform(0.5, 1.5, s.shape)).astype(float)
    np.testing.assert_array_equal(fuse_counts(s, y, 0.25, 0.02, threads=3), fuse_counts(s, y, 0.25, 0.02))


def test_a_recorded_gain_excess_makes_the_fusion_trust_bright_pixels_less():
    """``import --gain-cv`` records ``scanner_gain_cv``: on a bright map whose scan carries that
    multiplicative noise, ``+F`` with the recorded excess stays closer to the truth than with
    Poisson alone (which reads the excess as detail)."""
    from maxrf_infer.fuse import fuse_counts

    rng = np.random.default_rng(3)
    truth = np.full((1, 64, 64), 3000.0)
    y = rng.poisson(truth * np.maximum(1 + 0.03 * rng.standard_normal(truth.shape), 0)).astype(float)
    s = truth.copy()
    mse = lambda a: float(((a - truth) ** 2).mean())  # noqa: E731
    assert mse(fuse_counts(s, y, gain_cv=0.03)) < 0.5 * mse(fuse_counts(s, y))


def test_thinning_a_short_dwell_scan_scores_plus_f_without_a_truth(tmp_path):
    """``--protocol thinning`` on a store with a short-dwell scan splits that scan: the methods
    get the block means of one half, ``+F`` fuses with that half (half the dwell), and the other
    half gives the estimated clean-truth PSNR, which agrees with the true one where the store
    also has ``maps_clean``; ``+F`` is there well above its method alone, as under the
    acquisition protocol."""
    d, clean, maps = _toy(size=64, seed=1)
    y = np.random.default_rng(21).poisson(clean).astype(np.float32)          # raw counts, t = 1
    scan = mb.make_scan(maps=maps, maps_clean=clean.astype(np.float32), maps_lr=mb.BlockMean(4).down(y),
                        maps_dwell=y, rgb=d["rgb"], elements=d["elements"])
    path = mb.save_scan(scan, tmp_path / "sd.zarr")
    res = mb.run_grid(["bicubic", "bicubic+F"], [str(path)], out=tmp_path / "run", protocols=["thinning"])
    v = {(m, t): res.value("sd", m, "psnr", truth=t, protocol="thinning")
         for m in ("bicubic", "bicubic+F") for t in ("estimated", "clean")}
    for m in ("bicubic", "bicubic+F"):
        lo = res.value("sd", m, "psnr_low", truth="estimated", protocol="thinning")
        hi = res.value("sd", m, "psnr_high", truth="estimated", protocol="thinning")
        assert abs(v[m, "estimated"] - v[m, "clean"]) < max(0.5, hi - lo), (m, v)
    assert v["bicubic+F", "clean"] > v["bicubic", "clean"] + 0.3
    ins = mb.load_inputs(tmp_path / "run", "sd", "thinning")
    np.testing.assert_allclose(mb.BlockMean(4).down(ins["maps_dwell"].values), ins["maps_lr"].values, atol=1e-5)
    assert not np.allclose(ins["maps_dwell"].values, ins["maps"].values)   # the halves differ
    from maxrf_bench.noise import count_time
    from maxrf_bench.prepare import prepare_datasets

    (prep,) = prepare_datasets([str(path)], ["thinning"], scale=None, operator="blockmean", sigma=1.0)
    assert count_time(prep) == 0.5                 # one binomial half: half the scan's dwell


@pytest.mark.parametrize("tile_lr", [2, 5, 18])
def test_the_fusion_pass_writes_in_place_and_equals_the_whole_scan_fusion(tmp_path, tile_lr):
    """``maxrf-infer --fuse`` fuses ``maps`` in place, tile by tile, with no scratch array: a
    window's halo still reads the model's output where a neighbour is already fused (kept
    bands), also for tiles smaller than the halo, tiles given in any
    order, and a chunk cache that evicts (so a re-read chunk holds fused pixels): the maps equal
    the fusion of the whole scan bit for bit, and no other array is left in the store."""
    import zarr
    from maxrf_infer.fuse import fuse_counts, fuse_pass, halo_px
    from maxrf_infer.tiles import plan_tiles

    rng = np.random.default_rng(3)
    sr = rng.gamma(2.0, 30.0, (3, 72, 72)).astype(np.float32)
    dwell = rng.poisson(sr * rng.uniform(0.5, 1.5, sr.shape)).astype(np.float32)
    stores = {}
    for name, values in (("out", sr), ("scan", dwell)):
        group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="w", zarr_format=2)
        group.create_array("maps" if name == "out" else "maps_dwell", shape=values.shape, chunks=(3, 16, 16),
                           dtype="f4")[:] = values
        stores[name] = str(tmp_path / f"{name}.zarr")
    assert halo_px() == 12   # tiles of 8, 20 and 72 HR px: smaller than, between one and two, and the whole
    fuse_pass(plan_tiles(18, 18, tile_lr)[::-1], stores["out"], stores["scan"], 4, cache_bytes=0)
    group = zarr.open_group(stores["out"], mode="r")
    np.testing.assert_array_equal(group["maps"][:], fuse_counts(sr, dwell).astype(np.float32))
    assert sorted(group.array_keys()) == ["maps"]
