"""The photograph before the generator (issue 22, ours): the registration estimated on the LR
grid (``register = "lr"``) and the scale-space input (``photo_scales``)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene
from maxrf_bench_plugins.proposed import DEFAULTS, check_params
from maxrf_bench_plugins.proposed.photo_prep import (estimate_field, estimate_registration, lr_to_hr, parse_scales,
                                                    saturation, scale_space)

BIN = Path(sys.executable).parent / "maxrf-bench"


def _scene(size=64):
    """A photograph and 4× LR maps made of its bands (on the photograph's grid)."""
    rgb = toy_scene(size, 3, seed=0)["rgb"].astype(np.float32)
    op = mb.make_operator("blockmean", 4)
    hr = np.stack([rgb[1], 0.5 * rgb[0] + 0.3 * rgb[2]]).astype(np.float32)
    return rgb, np.asarray(op.down(hr), np.float32), op


def test_registration_recovers_a_pure_shift_and_leaves_an_aligned_photograph_alone():
    rgb, lr, op = _scene()
    d = np.zeros((2, 64, 64))
    d[0], d[1] = 1.5, -1.0                          # the photograph shows u + d: e must be −d
    est = estimate_field(lr, mb.warp_photo(rgb, d), op, radius=4.0)
    assert est["field"].shape == (2, 64, 64)
    np.testing.assert_allclose(est["global"], [-1.5, 1.0], atol=0.1)
    assert np.abs(est["field"] + d)[:, 8:-8, 8:-8].max() < 0.2
    # the moved photograph lines up again (interior; the border is sampled from outside)
    back = mb.warp_photo(mb.warp_photo(rgb, d), est["field"], order=1, mode="nearest")
    assert np.abs(back - rgb)[:, 8:-8, 8:-8].mean() < 0.3 * np.abs(mb.warp_photo(rgb, d) - rgb)[:, 8:-8, 8:-8].mean()
    zero = estimate_field(lr, rgb, op, radius=4.0)
    assert np.sqrt((zero["field"] ** 2).sum(0).mean()) < 0.1
    # a field found beyond the radius is not: a 3 px shift searched within ±1 px stops at the edge
    far = np.zeros((2, 64, 64))
    far[1] = 3.0
    assert estimate_field(lr, mb.warp_photo(rgb, far), op, radius=1.0)["global"][1] == pytest.approx(-1.0)


def test_a_misregistration_beyond_the_search_radius_gets_further_passes():
    """A 3 px shift searched within ±1 px: the first pass stops at the edge (saturated); the
    second pass, gated on its own, reaches the shift; below saturation nothing changes."""
    rgb, lr, op = _scene()
    far = np.zeros((2, 64, 64))
    far[1] = 3.0
    moved = mb.warp_photo(rgb, far)
    one = estimate_field(lr, moved, op, radius=1.0)
    assert one["significant"] and saturation(one) == pytest.approx(1.0)  # the local search at its edge
    assert len(estimate_registration(lr, moved, op, radius=1.0, max_passes=1)["passes"]) == 1
    est = estimate_registration(lr, moved, op, radius=1.0)
    assert [q["applied"] for q in est["passes"]] == [True, True] and est["passes"][1]["saturation"] < 0.75
    err = lambda f: float(np.abs(f + far)[1, 8:-8, 8:-8].mean())  # noqa: E731  (x: 3 px to undo)
    assert err(est["field"]) < 0.3 < 0.9 < err(one["field"])     # one pass stops 1 px short
    np.testing.assert_allclose(est["field"], lr_to_hr(est["field_lr"], 4))
    np.testing.assert_array_equal(est["global"], one["global"])   # the record keeps the first pass's
    # within the radius: one pass, the same dictionary as estimate_field
    near = np.zeros((2, 64, 64))
    near[0], near[1] = 1.5, -1.0
    plain = estimate_field(lr, mb.warp_photo(rgb, near), op, radius=4.0)
    est = estimate_registration(lr, mb.warp_photo(rgb, near), op, radius=4.0)
    assert [q["applied"] for q in est["passes"]] == [True] and est["passes"][0]["saturation"] < 3.0
    np.testing.assert_array_equal(est["field_lr"], plain["field_lr"])
    assert est["gain"] == plain["gain"]


def test_lr_field_to_hr_is_bilinear_between_lr_pixel_centres():
    f = np.zeros((2, 4, 4))
    f[1] = np.arange(4)[None, :]                    # x component grows by 1 per LR pixel
    hr = lr_to_hr(f, 4)
    assert hr.shape == (2, 16, 16)
    np.testing.assert_allclose(hr[1, 0, 0:2], [0.0, 0.0])        # clamped left of the first centre
    np.testing.assert_allclose(hr[1, 0, 6], 1.125, atol=1e-9)  # HR x 6 = LR x (6.5/4 − 0.5)
    np.testing.assert_allclose(hr[0], 0.0)


def test_scale_space_appends_blurred_bands():
    rgb, _, _ = _scene(32)
    out = scale_space(rgb, (1.0, 2.0))
    assert out.shape == (9, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:3], rgb)
    np.testing.assert_allclose(out[6:], ndimage.gaussian_filter(rgb, (0, 2, 2), mode="reflect"), atol=1e-6)
    assert out[3:6].std() < rgb.std()
    assert parse_scales("1+2") == parse_scales("1,2") == parse_scales([1, 2]) == (1.0, 2.0)
    assert parse_scales("") == parse_scales(0) == ()


@pytest.mark.parametrize("key, value, says", [
    ("photo_scales", "abc", "photo_scales"), ("photo_scales", "-1", "photo_scales"),
    ("photo_scales", True, "photo_scales"), ("photo_scales", "1+99", "photo_scales"),
    ("register", "flow", "register"), ("register_radius", 0, "register_radius"),
    ("register_radius", "2", "register_radius"), ("register_passes", 0, "register_passes"),
    ("register_passes", 1.5, "register_passes"), ("register_passes", True, "register_passes")])
def test_bad_values_are_refused(key, value, says):
    with pytest.raises(mb.ConfigError, match=says):
        check_params({**DEFAULTS, key: value})


@pytest.mark.parametrize("spec, says", [
    ("photo_scales=-2", "photo_scales"), ("register=lr,register_radius=-1", "register_radius must be"),
    ("register=lr,register_radius=abc", "register_radius expects a float")])
def test_bad_values_on_the_command_line_exit_2_with_one_line(tmp_path, spec, says):
    data = tmp_path / "toy.zarr"
    mb.save_scan(mb.make_scan(**toy_scene(32, 2, seed=1), title="toy"), data)
    out = tmp_path / "run"
    res = subprocess.run([str(BIN), "run", "-m", f"proposed[{spec}]", "-d", str(data), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_search_radius_larger_than_the_photograph_allows_exits_2(tmp_path):
    """The bound needs the photograph's size, so it stops the cell when it starts (before training)."""
    from maxrf_bench_plugins.proposed.photo_prep import check_radius

    check_radius(4, (32, 32))
    with pytest.raises(mb.ConfigError, match=r"register_radius 8 px is larger than the photograph allows "
                                             r"\(32×32 px\): expected at most 4 px"):
        check_radius(8, (32, 32))
    data = tmp_path / "toy.zarr"
    mb.save_scan(mb.make_scan(**toy_scene(32, 2, seed=1), title="toy"), data)
    res = subprocess.run([str(BIN), "run", "-m", "proposed[register=lr,register_radius=8]", "-d", str(data),
                          "-o", str(tmp_path / "run")], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: proposed.register_radius 8 px is larger")
    assert not (tmp_path / "run").exists()


def test_options_train_and_run_end_to_end():
    pytest.importorskip("torch")
    from maxrf_bench_plugins.proposed import run_proposed

    rgb, lr, op = _scene(64)
    d = np.zeros((2, 64, 64))
    d[1] = 2.0
    prep = mb.prepare_scan(mb.make_scan(rgb=mb.warp_photo(rgb, d), elements=["Pb_L", "Cu_K"], maps_lr=lr),
                           name="toy", scale=4)
    params = dict(kernel=5, atoms=8, layers=2, pretrain_iterations=30, use_adv=False,
                  adversarial_iterations=0, threads=1)
    plain = np.asarray(run_proposed(prep.inputs(seed=0), **params).values)
    for extra in ({"register": "lr"}, {"photo_scales": "1+2"}):
        out = np.asarray(run_proposed(prep.inputs(seed=0), **params, **extra).values)
        assert out.shape == plain.shape and np.isfinite(out).all()
        assert np.abs(out - plain).max() > 1e-4                   # the option acts
        np.testing.assert_allclose(op.down(out), prep.maps_lr.values, atol=1e-4)  # still projected


def test_export_carries_the_registration_and_refuses_what_it_cannot_reproduce(tmp_path):
    import json

    from maxrf_bench_plugins.proposed import _check_exportable

    (tmp_path / "generator.json").write_text(json.dumps({"params": {**DEFAULTS, "register": "lr"}}))
    _check_exportable(tmp_path)                      # the field travels with the model
    for key, value in (("photo_scales", "1+2"), ("align", 4), ("gate", "lr")):
        (tmp_path / "generator.json").write_text(json.dumps({"params": {**DEFAULTS, key: value}}))
        with pytest.raises(mb.ConfigError, match=f"{key}="):
            _check_exportable(tmp_path)
    # recorrupted inference travels too (its noise: tests/test_export_recorrupt.py)
    (tmp_path / "generator.json").write_text(json.dumps({"params": {**DEFAULTS, "recorrupt": 0.5}}))
    _check_exportable(tmp_path)
    (tmp_path / "generator.json").write_text(json.dumps({"params": dict(DEFAULTS)}))
    _check_exportable(tmp_path)                      # the photograph as given: exportable


def _noisy(lr, seed=0, level=0.01):
    return (lr + level * np.random.default_rng(seed).standard_normal(lr.shape)).astype(np.float32)


def test_an_insignificant_field_leaves_the_photograph_untouched():
    """The held-out fit gain: about 0 on an aligned photograph (the estimate fits only the
    noise of the pixels it saw), large on a misregistered one; below REGISTER_MIN_GAIN the
    photograph is used as given and the record says so."""
    from maxrf_bench_plugins.proposed.method import registered_photo
    from maxrf_bench_plugins.proposed.photo_prep import REGISTER_MIN_GAIN

    rgb, lr, op = _scene()
    lr = _noisy(lr)
    p = {**DEFAULTS, "register": "lr"}
    aligned = estimate_field(lr, rgb, op)
    assert aligned["gain"] < REGISTER_MIN_GAIN and not aligned["significant"]
    photo, rec = registered_photo(lr, rgb, op, p)
    assert photo is rgb and rec["register_applied"] is False and rec["register_field_lr"] is None
    assert rec["register_rms_px"] == 0.0 and rec["register_estimate_rms_px"] > 0
    assert [q["applied"] for q in rec["register_passes"]] == [False]
    d = np.zeros((2, 64, 64))
    d[0], d[1] = 0.75, -0.5
    moved = mb.warp_photo(rgb, d)
    est = estimate_field(lr, moved, op)
    assert est["gain"] > 10 * REGISTER_MIN_GAIN and est["significant"]
    photo, rec = registered_photo(lr, moved, op, p)
    assert rec["register_applied"] is True and np.asarray(rec["register_field_lr"]).shape == (2, 16, 16)
    np.testing.assert_array_equal(photo, mb.warp_photo(moved, lr_to_hr(np.asarray(rec["register_field_lr"]), 4),
                                                       order=1, mode="nearest"))


def test_register_on_an_aligned_photograph_gives_the_plain_maps_bit_for_bit():
    pytest.importorskip("torch")
    from maxrf_bench_plugins.proposed import run_proposed

    rgb, lr, op = _scene(64)
    prep = mb.prepare_scan(mb.make_scan(rgb=rgb, elements=["Pb_L", "Cu_K"], maps_lr=_noisy(lr)),
                           name="toy", scale=4)
    params = dict(kernel=5, atoms=8, layers=2, pretrain_iterations=20, use_adv=False,
                  adversarial_iterations=0, threads=1)
    plain = np.asarray(run_proposed(prep.inputs(seed=0), **params).values)
    reg = np.asarray(run_proposed(prep.inputs(seed=0), **params, register="lr").values)
    np.testing.assert_array_equal(reg, plain)
