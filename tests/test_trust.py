"""Maps a conservator can trust: misregistration sweep, hidden_share, photo_leak (issue 22)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.misregister import (check_amplitude, displacement_field, parse_amplitudes,
                                     warp_photo)
from maxrf_bench.testing import toy_scene

BIN = Path(sys.executable).parent / "maxrf-bench"


def cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True)


# --- the displacement model -------------------------------------------------------------

def test_parse_amplitudes_accepts_a_sweep_and_refuses_bad_values():
    assert parse_amplitudes("0, 1,2.5,4") == [0.0, 1.0, 2.5, 4.0]
    for bad in ("-1", "abc", "1,,x", "nan", "inf", "1,1", ""):
        with pytest.raises(mb.ConfigError, match="--misregister"):
            parse_amplitudes(bad)
    check_amplitude(8.0, (64, 64))
    with pytest.raises(mb.ConfigError, match="larger than the photograph"):
        check_amplitude(8.5, (64, 64))


def test_field_has_the_requested_rms_is_seeded_linear_and_smooth():
    f2 = displacement_field((96, 128), 2.0, seed=3)
    assert f2.shape == (2, 96, 128)
    assert np.sqrt((f2 ** 2).sum(0).mean()) == pytest.approx(2.0, rel=1e-9)
    np.testing.assert_array_equal(f2, displacement_field((96, 128), 2.0, seed=3))
    np.testing.assert_allclose(displacement_field((96, 128), 4.0, seed=3), 2 * f2, rtol=1e-12)
    assert not np.allclose(f2, displacement_field((96, 128), 2.0, seed=4))
    # smooth: neighbouring pixels move almost alike (a 2 px field on 192×256 changes < 0.1 px
    # per pixel; white noise would change by ~2.8 px)
    f = displacement_field((192, 256), 2.0, seed=3)
    assert np.abs(np.diff(f, axis=-1)).max() < 0.1 and np.abs(np.diff(f, axis=-2)).max() < 0.1
    # not a pure translation: the displacement varies across the image by more than its RMS
    assert np.ptp(f2[0]) > 2.0 and np.ptp(f2[1]) > 2.0
    assert not displacement_field((96, 128), 0.0).any()


def test_warp_moves_the_photograph_by_the_field():
    d = toy_scene(48, 3, seed=1)
    rgb = d["rgb"].astype(np.float32)
    np.testing.assert_allclose(warp_photo(rgb, np.zeros((2, 48, 48))), rgb, atol=1e-6)
    shift = np.zeros((2, 48, 48))
    shift[1] = 2.0  # output pixel x shows the photograph at x + 2
    out = warp_photo(rgb, shift)
    np.testing.assert_allclose(out[:, :, :-2], rgb[:, :, 2:], atol=1e-5)


# --- the run ---------------------------------------------------------------------------

@pytest.fixture
def toy_zarr(tmp_path):
    path = tmp_path / "toy.zarr"
    mb.save_scan(mb.make_scan(**toy_scene(64, 4, seed=2), title="toy"), path)
    return path


def test_run_sweep_writes_the_column_the_manifest_and_the_loss(tmp_path, toy_zarr):
    out = tmp_path / "run"
    res = cli("run", "-m", "bicubic,guided+P", "-d", toy_zarr, "-o", out, "--misregister", "0,1,4",
              "--misregister-seed", "5", "--metrics", "psnr,photo_leak")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0])[-1] == "misregister"
    assert {r["misregister"] for r in rows} == {"0", "1", "4"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["misregister"]["seed"] == 5 and manifest["options"]["misregister"] == [0, 1, 4]
    assert {i["misregister"] for i in manifest["inputs"].values()} == {0, 1, 4}
    results = mb.read_results(out)
    sweep = results.misregistration()
    # bicubic does not read the photograph: the same at every amplitude
    assert sweep[("toy", "bicubic", 0.0)].mean == pytest.approx(sweep[("toy", "bicubic", 4.0)].mean, abs=1e-9)
    # the guided filter does: a 4 px misregistration costs it PSNR
    g0, g4 = sweep[("toy", "guided+P", 0.0)].mean, sweep[("toy", "guided+P", 4.0)].mean
    assert g0 - g4 > 0.3
    # Table I keeps the unwarped rows only; the sweep table and the loss are printed
    assert results.value("toy", "guided+P", "psnr") == pytest.approx(g0)
    assert "Misregistration — toy" in res.stdout and "loss at 4 px" in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("| guided+P"))
    assert f"{g0 - g4:+.2f}" in line
    # amplitude 0 is the plain run: same cells, same numbers
    plain = tmp_path / "plain"
    assert cli("run", "-m", "guided+P", "-d", toy_zarr, "-o", plain, "--metrics", "psnr").returncode == 0
    assert mb.read_results(plain).value("toy", "guided+P", "psnr") == pytest.approx(g0, abs=1e-12)


@pytest.mark.parametrize("value, says", [("-1", "non-negative"), ("two", "non-negative numbers"),
                                         ("0,30", "larger than the photograph")])
def test_bad_amplitudes_exit_2_with_one_line_and_write_nothing(tmp_path, toy_zarr, value, says):
    out = tmp_path / "run"
    res = cli("run", "-m", "bicubic", "-d", toy_zarr, "-o", out, "--misregister", value)
    assert res.returncode == 2, res.stderr
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def _cli_inproc(*args):
    """The command line in this process (click's runner): no interpreter start per call."""
    from click.testing import CliRunner

    from maxrf_bench.cli import cli as main

    res = CliRunner().invoke(main, [str(a) for a in args])
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def test_sweep_without_amplitude_0_writes_its_report(tmp_path, toy_zarr):
    """Amplitudes the README does not list, without 0: Table I shows the smallest one, and the
    report's figures come from its folders (before: "report: not written (no inputs for
    dataset 'toy' (protocol full)...)" because the report looked for the unwarped folder)."""
    out = tmp_path / "run"
    res = _cli_inproc("run", "-m", "guided+P", "-d", toy_zarr, "-o", out, "--misregister", "0.3,1.5",
              "--metrics", "psnr", "-q")
    assert res.returncode == 0, res.stderr
    assert "not written" not in res.stdout and (out / "report.html").exists()
    assert any(p.name.startswith("fig2-toy") for p in (out / "report_files").iterdir())
    assert {r["misregister"] for r in mb.read_results(out).rows} == {"0.3"}
    assert "no loss column: the sweep has no amplitude 0" in res.stdout  # not "loss = PSNR at 0 px"


def test_amplitude_too_large_for_the_reduced_grid_says_so(tmp_path, toy_zarr):
    """Under --protocol reduced the field lives on the reduced grid (16×16 for a 64² scan at
    scale 4): the refusal named a '16×16 px' photograph the user never gave."""
    res = _cli_inproc("run", "-m", "bicubic", "-d", toy_zarr, "-o", tmp_path / "run", "--protocol",
              "full,reduced", "--misregister", "0,3")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "(16×16 px under --protocol reduced, on its reduced grid)" in res.stderr


def test_amplitudes_equal_to_6_digits_are_one_amplitude():
    """Cells are keyed by the amplitude's %g: two amplitudes printed alike would share one
    cell (the second run silently reused the first one's maps)."""
    with pytest.raises(mb.ConfigError, match="twice"):
        parse_amplitudes("1.0000001,1.0000002")


def test_old_results_without_the_column_still_read(tmp_path):
    (tmp_path / "results.csv").write_text(
        "dataset,protocol,method,seed,truth,element,metric,value\n"
        "d,full,bicubic,0,measured,all,psnr,30.5\n")
    res = mb.read_results(tmp_path)
    assert res.value("d", "bicubic", "psnr") == 30.5 and res.amplitudes == []


# --- hidden_share and photo_leak ------------------------------------------------------

def test_hidden_share_is_validated(toy_scan):
    scan = toy_scan.copy()
    scan["hidden_share"] = ("element", np.array([0.0, 0.2, 0.5, 1.0], np.float32))
    mb.validate_scan(scan)
    scan["hidden_share"] = ("element", np.array([0.0, 0.2, 1.5, 1.0], np.float32))
    with pytest.raises(mb.ScanValidationError, match="hidden_share"):
        mb.validate_scan(scan)


def test_simulator_records_hidden_share_from_the_paint_stack():
    from maxrf_bench_datasets.simulator import physics, simulate

    scan, layers = simulate("sim-demo", seed=7, size=48, return_layers=True)
    hs = scan["hidden_share"].values
    assert hs.shape == (scan.sizes["element"],) and ((hs >= 0) & (hs <= 1)).all()
    vis = physics.layer_visibility(layers)
    np.testing.assert_allclose(vis.sum(0), 1.0, atol=1e-9)
    # the same share computed by hand from each layer's fluorescence
    per = physics.fluorescence(layers, [str(e) for e in scan["element"].values], per_layer=True)
    np.testing.assert_allclose(per.sum(0), physics.fluorescence(layers, scan["element"].values),
                               rtol=1e-4)
    hand = (per * (1 - vis[:, None])).sum(axis=(0, 2, 3)) / per.sum(axis=(0, 2, 3))
    np.testing.assert_allclose(hs, hand, rtol=1e-4)
    assert hs.max() - hs.min() > 0.2  # some lines come from hidden layers, others do not


def test_photo_leak_on_constructed_cases():
    from maxrf_bench_plugins.metrics import luminance, photo_leak
    high_pass = mb.high_pass

    d = toy_scene(96, 3, seed=4)
    truth, _, _ = mb.normalise_maps(d["maps"])
    rgb = d["rgb"].astype(np.float64)
    rng = np.random.default_rng(0)
    rgb = np.clip(rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1)  # texture everywhere
    op = mb.make_operator("blockmean", 4)
    lum = luminance(rgb)
    # the photograph itself copied into the map: the error's high-pass is the photo's
    per, overall = photo_leak(truth + 0.3 * lum[None], truth, None, op, rgb=rgb)
    np.testing.assert_allclose(per, 1.0, atol=1e-9)
    # its high-pass added (a typical guided copy): nearly all explained
    per, _ = photo_leak(truth + 2.0 * high_pass(lum, 4)[None], truth, None, op, rgb=rgb)
    assert (per > 0.85).all()
    # independent noise: nothing explained (3 regressors on ~7000 pixels)
    noise = 0.05 * rng.standard_normal(truth.shape)
    per, overall = photo_leak(truth + noise, truth, None, op, rgb=rgb)
    assert (per < 0.005).all()
    # a mix: the explained share is the copied share of the high-pass energy
    copy = 0.5 * lum[None] * np.ones((3, 1, 1))
    b = 8
    e_copy = (high_pass(copy, 4)[:, b:-b, b:-b] ** 2).sum()
    e_noise = (high_pass(noise, 4)[:, b:-b, b:-b] ** 2).sum()
    _, overall = photo_leak(truth + copy + noise, truth, None, op, rgb=rgb)
    assert overall == pytest.approx(e_copy / (e_copy + e_noise), abs=0.02)
    assert 0.2 < overall < 0.95


def test_run_splits_visible_and_hidden_groups(tmp_path):
    from maxrf_bench_datasets.simulator import simulate

    path = tmp_path / "sim.zarr"
    mb.save_scan(simulate("sim-demo", seed=11, size=64), path)
    out = tmp_path / "run"
    res = cli("run", "-m", "bicubic+P,guided+P", "-d", path, "-o", out, "--metrics", "psnr,photo_leak")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    shares = manifest["inputs"]["sim"]["hidden_share"]
    assert set(shares) == {r["element"] for r in mb.read_results(out).rows} - {"all"}
    assert "Hidden layers — sim" in res.stdout and "photo-leak hidden" in res.stdout
    from maxrf_bench.trust import HIDDEN_THRESHOLD, run_trust_markdown

    text = run_trust_markdown(out)
    hidden = [e for e, v in shares.items() if v >= HIDDEN_THRESHOLD]
    assert hidden and all(e in text.split("visible:")[0] for e in hidden)
    results = mb.read_results(out)
    leak = np.mean([results.value("sim", "guided+P", "photo_leak", e) for e in hidden])
    assert f"{leak:.3f}" in next(ln for ln in text.splitlines() if ln.startswith("| guided+P"))
    assert (out / "report_files" / "trust.md").exists() or "trust" in (out / "report.html").read_text()


def test_learned_alignment_starts_at_the_identity_and_moves_by_its_field():
    torch = pytest.importorskip("torch")
    from maxrf_bench_plugins.proposed import check_params, DEFAULTS
    from maxrf_bench_plugins.proposed.train import PhotoAlign, apply_alignment

    rgb = toy_scene(40, 3, seed=3)["rgb"].astype(np.float32)
    align = PhotoAlign(4, rgb.shape[-2:])
    with torch.no_grad():
        out = align(torch.as_tensor(rgb)).numpy()
    np.testing.assert_allclose(out, rgb, atol=1e-5)  # zero field: the photograph (float rounding)
    field = np.zeros((1, 2, 4, 4), np.float32)
    field[0, 1] = 3.0  # every output pixel shows the photograph 3 px to its right
    moved = apply_alignment(rgb, field.tolist())
    np.testing.assert_allclose(moved[:, :, :-3], rgb[:, :, 3:], atol=1e-5)
    assert float(align.smoothness().detach()) == 0.0
    with pytest.raises(mb.ConfigError, match="align"):
        check_params({**DEFAULTS, "align": -1})


# --- ctx robust to a misregistered photograph (ours): warp augmentation, per-element gate ---

def _photo_scene(size=64, seed=0):
    """LR maps (4×): element 0 = the photograph's green band (follows it), element 1 = smooth
    noise built independently of it; the photograph of toy_scene."""
    from scipy import ndimage

    rgb = toy_scene(size, 3, seed=seed)["rgb"].astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    indep = ndimage.gaussian_filter(rng.standard_normal((size, size)), 2.0)
    indep = (indep - indep.min()) / (indep.max() - indep.min())
    op = mb.make_operator("blockmean", 4)
    hr = np.stack([rgb[1], indep]).astype(np.float32)
    return rgb, np.asarray(op.down(hr), np.float32), op


def test_gate_closes_for_an_element_independent_of_the_photograph():
    from maxrf_bench_plugins.proposed import DEFAULTS, check_params
    from maxrf_bench_plugins.proposed.gate import apply_gate, element_gate, lr_fit

    rgb, lr, op = _photo_scene()
    r2 = lr_fit(lr, rgb, op)
    assert r2[0] > 0.9 and r2[1] < 0.1          # follows the photograph / independent of it
    g = element_gate(lr, rgb, op, 0.1)
    assert g[0] == 1.0 and g[1] < 0.5 and g[1] == pytest.approx(min(1.0, r2[1] / 0.1))
    sr = op.project(np.stack([rgb[1], rgb[1]]).astype(np.float32), lr)  # the photograph pasted in
    gated, g2 = apply_gate(sr, lr, rgb, op, 0.1)
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_allclose(gated[0], sr[0], atol=1e-6)              # open gate: unchanged
    base = op.project(mb.upsample(lr, 4, "bilinear"), lr)
    np.testing.assert_allclose(gated[1], g[1] * sr[1] + (1 - g[1]) * base[1], atol=1e-5)
    np.testing.assert_allclose(op.down(gated), lr, atol=1e-5)           # still LR-consistent
    with pytest.raises(mb.ConfigError, match="gate"):
        check_params({**DEFAULTS, "gate": "learned"})
    with pytest.raises(mb.ConfigError, match="gate_full"):
        check_params({**DEFAULTS, "gate": "lr", "gate_full": 0})


def test_gate_option_takes_the_photographs_edges_out_of_an_independent_element():
    pytest.importorskip("torch")
    from maxrf_bench_plugins.proposed import run_proposed

    rgb, lr, op = _photo_scene(64)
    prep = mb.prepare_scan(mb.make_scan(rgb=rgb, elements=["Pb_L", "Zn_K"], maps_lr=lr),
                           name="toy", scale=4)
    lr_n = prep.maps_lr.values
    params = dict(kernel=5, atoms=8, layers=2, pretrain_iterations=40, use_adv=False,
                  adversarial_iterations=0, threads=1)
    plain = np.asarray(run_proposed(prep.inputs(seed=0), **params).values)
    gated = np.asarray(run_proposed(prep.inputs(seed=0), **params, gate="lr").values)
    np.testing.assert_allclose(gated[0], plain[0], atol=1e-5)   # the element that follows: unchanged
    base = op.project(mb.upsample(lr_n, 4, "bilinear"), lr_n)[1]
    # the independent element moves to the bilinear interpolation (projected)
    assert np.abs(gated[1] - base).mean() < 0.5 * np.abs(plain[1] - base).mean()


def test_warp_augmentation_trains_on_misregistered_copies_and_restores_the_photograph():
    torch = pytest.importorskip("torch")
    from maxrf_bench_plugins.proposed import DEFAULTS, check_params
    from maxrf_bench_plugins.proposed.train import WARP_BANK, WarpBank, prepare_data, train_generator

    rgb, lr, op = _photo_scene(48)
    data = prepare_data(lr, rgb, op, torch.device("cpu"))
    bank = WarpBank(data, 2.0, seed=0, pad=4)
    assert len(bank.entries) == WARP_BANK + 1
    np.testing.assert_array_equal(bank.entries[0][3].numpy(), rgb)        # the photograph as given
    moved = [float((e[3] - data.rgb).abs().mean()) for e in bank.entries[1:]]
    assert min(moved) > 1e-3 and len(set(moved)) == WARP_BANK           # each copy warped, differently
    drawn = set()
    for _ in range(60):
        bank.select(data)
        drawn.add(next(j for j, e in enumerate(bank.entries) if e[3] is data.rgb))
        assert data.x_pad.shape[:2] == (48 + 8, 48 + 8)
    assert drawn == set(range(WARP_BANK + 1))
    params = {**DEFAULTS, "kernel": 5, "atoms": 8, "layers": 2, "pretrain_iterations": 30,
              "use_adv": False, "adversarial_iterations": 0, "threads": 1}
    outs = {}
    for amp in (0.0, 2.0):
        d = prepare_data(lr, rgb, op, torch.device("cpu"))
        g, _ = train_generator(d, {**params, "warp_augment": amp}, seed=0)
        np.testing.assert_array_equal(d.rgb.numpy(), rgb)                 # restored after training
        with torch.no_grad():
            outs[amp] = g.forward_image(torch.nn.functional.pad(
                d.x_hw.permute(2, 0, 1)[None], (2, 2, 2, 2), mode="replicate")).numpy()
    assert np.abs(outs[2.0] - outs[0.0]).max() > 1e-3                    # the augmentation acts
    for bad in (-1, 17, True, "2"):
        with pytest.raises(mb.ConfigError, match="warp_augment"):
            check_params({**DEFAULTS, "warp_augment": bad})
    with pytest.raises(mb.ConfigError, match="cannot be combined"):
        check_params({**DEFAULTS, "warp_augment": 1.0, "align": 4})


def test_info_of_a_scan_shows_its_hidden_share_and_a_clean_pixel_size(tmp_path):
    """`info SCAN.zarr` showed neither the hidden_share a conservator needs, and printed
    pixel_size_mm as 1.5999999999999999."""
    d = toy_scene(32, 3, seed=1)
    path = mb.save_scan(mb.make_scan(**d, hidden_share=[0.0, 0.5, 0.94], pixel_size_mm=0.1 * 16),
                        tmp_path / "s.zarr")
    out = _cli_inproc("info", path).stdout
    assert "pixel_size_mm: 1.6\n" in out
    names = d["elements"]
    assert f"hidden_share: {names[0]} 0.00, {names[1]} 0.50, {names[2]} 0.94" in out
