"""Our metrics pinned to maintained reference implementations on the same arrays.

References: scikit-image (``skimage.metrics``) and torchmetrics
(``torchmetrics.functional.image``).  Every place where our definition differs from the
reference on purpose is shown here with the reference's value next to ours and described
in ``docs/metrics.md``; a test fails if either side changes.  Tolerances: 1e-6 relative in
float64 (torchmetrics adds ``eps = 2.2e-16`` to the UQI denominator; nothing else differs
numerically) unless stated.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench_plugins import metrics as m

torch = pytest.importorskip("torch")
skm = pytest.importorskip("skimage.metrics")


def _import_torchmetrics_image():
    """``torchmetrics.functional.image``, imported with torchvision hidden when it does not
    import (the torchvision beside this CPU torch fails with ``torchvision::nms does not
    exist``; torchmetrics imports it eagerly when it is installed).  The metrics used here
    need no torchvision."""
    import importlib.util

    if importlib.util.find_spec("torchmetrics") is None:
        pytest.skip("torchmetrics is not installed (pip install -e '.[test]')")
    from maxrf_bench_plugins.sisr._spandrel import torchvision_import_error

    if torchvision_import_error() is None:
        import torchmetrics.functional.image as tmi
        return tmi
    from lightning_utilities.core import imports as lui

    for name in [k for k in sys.modules if k == "torchmetrics" or k.startswith("torchmetrics.")]:
        del sys.modules[name]
    original = lui.RequirementCache.__bool__

    def no_torchvision(self):
        if str(self.requirement or self.module or "").startswith("torchvision"):
            return False
        return original(self)

    saved = {k: sys.modules[k] for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    for k in saved:
        del sys.modules[k]
    sys.modules["torchvision"] = None
    lui.RequirementCache.__bool__ = no_torchvision
    try:
        import torchmetrics.functional.image as tmi
    finally:
        lui.RequirementCache.__bool__ = original
        del sys.modules["torchvision"]
        sys.modules.update(saved)
    return tmi


@pytest.fixture(scope="module")
def tmi():
    return _import_torchmetrics_image()


def t4(x):
    """``(B, y, x)`` numpy → ``(1, B, y, x)`` float64 tensor (one image, B channels)."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float64))[None]


def per_channel(x):
    """``(B, y, x)`` → ``(B, 1, y, x)``: each element map as its own image."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float64))[:, None]


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    truth = rng.random((4, 48, 40))
    sr = np.clip(truth + 0.06 * rng.standard_normal(truth.shape), 0, 1)
    return sr, truth


def compute(name, sr, truth, lr=None, op=None, **kw):
    return mb.get_metric(name).compute(sr, truth, lr, op, **kw)


# --- RMSE, PSNR ----------------------------------------------------------------------------

def test_rmse_psnr_match_scikit_image_and_torchmetrics(pair, tmi):
    sr, truth = pair
    per, overall = compute("rmse", sr, truth)
    ref_per = [np.sqrt(skm.mean_squared_error(t, s)) for s, t in zip(sr, truth)]
    np.testing.assert_allclose(per, ref_per, rtol=1e-12)
    assert overall == pytest.approx(np.sqrt(skm.mean_squared_error(truth, sr)), rel=1e-12)

    per_p, overall_p = compute("psnr", sr, truth)
    # data range fixed at 1 (maps normalised per element to [0, 1]); the overall PSNR is
    # one MSE over the whole cube, as torchmetrics' default (dim=None) and as skimage on the cube
    ref_per_p = [skm.peak_signal_noise_ratio(t, s, data_range=1.0) for s, t in zip(sr, truth)]
    np.testing.assert_allclose(per_p, ref_per_p, rtol=1e-12)
    assert overall_p == pytest.approx(skm.peak_signal_noise_ratio(truth, sr, data_range=1.0), rel=1e-12)
    tm_all = tmi.peak_signal_noise_ratio(t4(sr), t4(truth), data_range=1.0).item()
    assert overall_p == pytest.approx(tm_all, rel=1e-7)  # torchmetrics: data_range as float32
    tm_per = tmi.peak_signal_noise_ratio(per_channel(sr), per_channel(truth), data_range=1.0,
                                         reduction="none", dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(per_p, tm_per, rtol=1e-7)
    # the overall figure is NOT the mean of the per-element PSNRs (paper Table I convention)
    assert abs(overall_p - np.mean(per_p)) > 1e-3


def test_psnr_data_range_is_one_not_the_data_s_own_range(tmi):
    # a truth in [0.2, 0.6]: with the data's own range (max − min, what torchmetrics'
    # class metric uses when no data_range is given) the PSNR is 20·log10(range) lower;
    # ours always uses 1, the range the host normalises every truth to
    rng = np.random.default_rng(0)
    truth = 0.2 + 0.4 * rng.random((1, 32, 32))
    sr = truth + 0.01
    ours = compute("psnr", sr, truth)[1]
    assert ours == pytest.approx(40.0, abs=1e-9)
    span = float(max(sr.max() - sr.min(), truth.max() - truth.min()))
    own_range = tmi.peak_signal_noise_ratio(t4(sr), t4(truth), data_range=span).item()
    assert own_range == pytest.approx(ours + 20 * np.log10(span), abs=1e-5)
    assert own_range < ours - 4  # 20·log10(0.41) ≈ −7.7 dB


# --- SSIM ----------------------------------------------------------------------------------

def test_ssim_matches_scikit_image_and_torchmetrics_map(pair, tmi):
    sr, truth = pair
    per, overall = compute("ssim", sr, truth)
    ref = [skm.structural_similarity(t, s, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False) for s, t in zip(sr, truth)]
    np.testing.assert_allclose(per, ref, atol=1e-9)
    assert overall == pytest.approx(float(np.mean(ref)), abs=1e-9)
    # torchmetrics: the same Gaussian map (11 taps, σ = 1.5, K1 = .01, K2 = .03, population
    # statistics); its scalar also averages the 5-pixel border (reflect-padded), which
    # Wang's code, scikit-image and ours leave out.  Cropping its full map gives ours.
    scalar, full = tmi.structural_similarity_index_measure(
        per_channel(sr), per_channel(truth), data_range=1.0, gaussian_kernel=True, sigma=1.5,
        kernel_size=11, reduction="none", return_full_image=True)
    cropped = full[:, 0, 5:-5, 5:-5].reshape(len(sr), -1).mean(1).numpy()
    np.testing.assert_allclose(per, cropped, atol=1e-9)
    assert np.max(np.abs(per - scalar.numpy())) > 1e-5  # the border convention is visible


# --- SAM -----------------------------------------------------------------------------------

def test_sam_matches_torchmetrics_in_degrees(pair, tmi):
    sr, truth = pair
    _, overall = compute("sam", sr + 0.01, truth + 0.01)
    ref = tmi.spectral_angle_mapper(t4(sr + 0.01), t4(truth + 0.01)).item()
    assert overall == pytest.approx(np.degrees(ref), rel=1e-9)


def test_sam_leaves_out_all_zero_pixels_where_torchmetrics_gives_nan(pair, tmi):
    sr, truth = pair
    sr, truth = sr.copy() + 0.01, truth.copy() + 0.01
    truth[:, :10, :] = 0.0   # pixels zero in every element of the truth
    sr[:, 40:, :5] = 0.0     # … and of the output
    ref = tmi.spectral_angle_mapper(t4(sr), t4(truth)).item()
    assert np.isnan(ref)
    _, overall = compute("sam", sr, truth)
    keep = (np.linalg.norm(sr, axis=0) > 0) & (np.linalg.norm(truth, axis=0) > 0)
    angles = tmi.spectral_angle_mapper(t4(sr), t4(truth), reduction="none").numpy()[0]
    assert np.isnan(angles[~keep]).all() and np.isfinite(angles[keep]).all()
    assert overall == pytest.approx(np.degrees(angles[keep].mean()), rel=1e-9)


# --- ERGAS ---------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4, 8])
def test_ergas_matches_torchmetrics_with_ratio_equal_to_scale(pair, tmi, scale):
    sr, truth = pair
    _, overall = compute("ergas", sr, truth, None, mb.BlockMean(scale))
    ref = tmi.error_relative_global_dimensionless_synthesis(t4(sr), t4(truth), ratio=scale).item()
    assert overall == pytest.approx(ref, rel=1e-9)


def test_ergas_leaves_out_an_element_whose_truth_mean_is_zero(pair, tmi):
    sr, truth = pair
    truth = truth.copy()
    truth[1] = 0.0
    _, overall = compute("ergas", sr, truth, None, mb.BlockMean(4))
    assert not np.isfinite(tmi.error_relative_global_dimensionless_synthesis(t4(sr), t4(truth), ratio=4).item())
    keep = [0, 2, 3]
    ref = tmi.error_relative_global_dimensionless_synthesis(t4(sr[keep]), t4(truth[keep]), ratio=4).item()
    assert overall == pytest.approx(ref, rel=1e-9)


# --- Q index, D_λ, D_s, QNR ----------------------------------------------------------------

def test_q_index_is_torchmetrics_uqi_over_one_whole_window(tmi):
    # one window covering the image, with uniform weights (σ → ∞): torchmetrics' UQI is
    # Wang & Bovik's global Q; the sample/population covariance factor cancels in Q
    rng = np.random.default_rng(5)
    a = rng.random((31, 31)) + 0.2
    b = 0.7 * a + 0.3 * rng.random((31, 31))
    ref = tmi.universal_image_quality_index(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None],
                                            kernel_size=(31, 31), sigma=(1e6, 1e6)).item()
    assert m.q_index(a, b) == pytest.approx(ref, rel=1e-9)
    # and our block Q over one 31-pixel block is the same number
    assert m.block_q(a, b, 31) == pytest.approx(ref, rel=1e-9)


@pytest.fixture
def fused():
    rng = np.random.default_rng(7)
    op = mb.BlockMean(4)
    truth = rng.random((3, 64, 64)) + 0.1
    sr = truth + 0.05 * rng.standard_normal(truth.shape)
    lr = op.down(truth) + 0.02 * rng.random((3, 16, 16))
    rgb = rng.random((3, 64, 64))
    return sr, lr, rgb, op


@pytest.fixture
def tm_q(tmi, monkeypatch):
    """Our D_λ/D_s/QNR with torchmetrics' Q (its UQI: Gaussian 11 × 11, σ = 1.5,
    averaged over the image) in place of our Q on 32-pixel blocks: then everything but the
    Q estimator is the same, so the formulas (pairs, exponents, luminance, U(P)) are pinned."""
    def uqi(a, b, size):
        return tmi.universal_image_quality_index(torch.from_numpy(np.asarray(a, np.float64))[None, None],
                                                 torch.from_numpy(np.asarray(b, np.float64))[None, None]).item()
    monkeypatch.setattr(m, "block_q", uqi)
    return tmi


def test_d_lambda_d_s_qnr_formulas_match_torchmetrics(fused, tm_q):
    tmi = tm_q
    sr, lr, rgb, op = fused
    pan = m.luminance(rgb)
    pan_hr = t4(np.repeat(pan[None], 3, 0))
    pan_lr = t4(np.repeat(np.asarray(op.down(pan))[None], 3, 0))
    dl = tmi.spectral_distortion_index(t4(lr), t4(sr), p=1).item()
    ds = tmi.spatial_distortion_index(t4(sr), t4(lr), pan_hr, pan_lr, norm_order=1).item()
    q = tmi.quality_with_no_reference(t4(sr), t4(lr), pan_hr, pan_lr, alpha=1, beta=1, norm_order=1).item()
    assert m.d_lambda(sr, None, lr, op)[1] == pytest.approx(dl, rel=1e-6)
    assert m.d_s(sr, None, lr, op, rgb=rgb)[1] == pytest.approx(ds, rel=1e-6)
    assert m.qnr(sr, None, lr, op, rgb=rgb)[1] == pytest.approx(q, rel=1e-6)
    assert q == pytest.approx((1 - dl) * (1 - ds), rel=1e-7)
    assert 0 < dl < 1 and 0 < ds < 1


def test_d_lambda_d_s_differ_from_torchmetrics_only_by_the_q_window(fused, tmi):
    """With their own Q estimators the two disagree: ours is Alparone's (non-overlapping
    32-pixel blocks, S/scale on the LR grid), torchmetrics' a Gaussian sliding window of
    11 pixels on both grids.  The size of the difference on this input is pinned so a
    change to either side is seen; docs/metrics.md gives it."""
    sr, lr, rgb, op = fused
    pan = m.luminance(rgb)
    dl = tmi.spectral_distortion_index(t4(lr), t4(sr), p=1).item()
    ours = m.d_lambda(sr, None, lr, op)[1]
    assert ours != pytest.approx(dl, rel=1e-3)
    pan_hr = t4(np.repeat(pan[None], 3, 0))
    pan_lr = t4(np.repeat(np.asarray(op.down(pan))[None], 3, 0))
    ds = tmi.spatial_distortion_index(t4(sr), t4(lr), pan_hr, pan_lr).item()
    assert m.d_s(sr, None, lr, op, rgb=rgb)[1] != pytest.approx(ds, rel=1e-3)


# --- the host's evaluation gives the plugin's values --------------------------------------

def test_host_evaluate_reports_the_reference_values(pair, tmi):
    from types import SimpleNamespace

    import xarray as xr

    from maxrf_bench.runner import evaluate

    sr, truth = pair
    op = mb.BlockMean(4)
    lr = op.down(truth)
    els = [f"E{i}" for i in range(len(sr))]
    prepared = SimpleNamespace(
        maps_lr=xr.DataArray(lr, dims=("element", "y", "x")),
        rgb=xr.DataArray(np.random.default_rng(0).random((3, *truth.shape[1:])), dims=("band", "y", "x")),
        operator=op, truths={"measured": truth}, elements=els)
    got = evaluate(sr, prepared, ["psnr", "ssim", "sam", "ergas", "rmse"])["measured"]
    assert got["psnr"]["all"] == pytest.approx(skm.peak_signal_noise_ratio(truth, sr, data_range=1.0), rel=1e-12)
    assert got["rmse"]["E2"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth[2], sr[2])), rel=1e-12)
    assert got["ssim"]["E1"] == pytest.approx(
        skm.structural_similarity(truth[1], sr[1], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False), abs=1e-6)
    assert got["sam"]["all"] == pytest.approx(np.degrees(tmi.spectral_angle_mapper(t4(sr), t4(truth)).item()), rel=1e-9)
    assert got["ergas"]["all"] == pytest.approx(
        tmi.error_relative_global_dimensionless_synthesis(t4(sr), t4(truth), ratio=4).item(), rel=1e-9)
