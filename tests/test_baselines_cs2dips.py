"""CS2DIPs (coupled spatial and spectral deep image priors): one property per piece.

* the plain-PyTorch deformable convolution equals the direct computation;
* the factors are non-negative, the spatial one sums to one per pixel (as published), and
  the cube is their product;
* the returned iterate is the one with the lowest data loss;
* ``threads = 0`` runs on the threads it is given, whatever the step timings (the output
  depends on the thread count, so a choice from timings made it depend on the load);
* the photograph guides the output (a shuffled photograph does worse on a scene whose maps
  follow the photograph).

Scenes are 48–64 px with 4–5 elements and networks 8 channels wide, a few dozen
iterations: seconds each.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import maxrf_bench as mb
from maxrf_bench_plugins import _fusion, cs2dips
from maxrf_bench_plugins.cs2dips.method import Problem, fit
from maxrf_bench_plugins.cs2dips.network import DeformConv2d, deform_conv2d, usable_levels

from conftest import toy_scene

TINY = dict(cs2dips.PAPER, channels=8, rank=6, spectral_noise_channels=16, skip_channels=4)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def psnr(a, b) -> float:
    return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(a, float) - b) ** 2))))


def problem_of(scene: dict, scale: int = 4) -> tuple[Problem, np.ndarray]:
    prep = mb.prepare_scan(mb.make_scan(**scene, title="cs2dips test"), name="t", scale=scale)
    return Problem(_fusion.fusion_data(prep.inputs(seed=0)), torch.device("cpu")), prep.truth


# --- deformable convolution ------------------------------------------------------------

def _bilinear_zero_padded(img: np.ndarray, y: float, x: float) -> float:
    """mmcv's ``deformable_im2col_bilinear``: 0 outside (-1, H) × (-1, W), missing
    corner pixels count as 0."""
    h, w = img.shape
    if not (-1 < y < h and -1 < x < w):
        return 0.0
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    value = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                value += wy * wx * img[yy, xx]
    return value


def _deform_conv_loop(x, offset, weight, padding, stride):
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    out = np.zeros((n, o, ho, wo))
    for b in range(n):
        for p in range(ho):
            for q in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        y = p * stride - padding + i + offset[b, 2 * k, p, q]
                        xx = q * stride - padding + j + offset[b, 2 * k + 1, p, q]
                        cols = np.array([_bilinear_zero_padded(x[b, ch], y, xx) for ch in range(c)])
                        out[b, :, p, q] += weight[:, :, i, j] @ cols
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv_equals_direct_loop(stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    weight = rng.standard_normal((4, 3, 3, 3))
    ho, wo = (6 + 2 - 3) // stride + 1, (7 + 2 - 3) // stride + 1
    # offsets of up to ±3 px: taps land between pixels, and some fall off the image
    offset = 1.5 * rng.standard_normal((2, 18, ho, wo))
    got = deform_conv2d(torch.from_numpy(x), torch.from_numpy(offset), torch.from_numpy(weight),
                        padding=1, stride=stride).numpy()
    want = _deform_conv_loop(x, offset, weight, padding=1, stride=stride)
    assert np.abs(want).max() > 1  # not a vacuous comparison
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_deform_conv_at_zero_offset_is_conv2d_and_the_layer_starts_there():
    torch.manual_seed(0)
    x = torch.randn(1, 5, 9, 8, dtype=torch.float64)
    layer = DeformConv2d(5, 6).double()
    plain = torch.nn.functional.conv2d(x, layer.weight, padding=1)
    torch.testing.assert_close(layer(x), plain)  # zero-initialised offsets
    # and the offsets are trainable: a gradient reaches the offset convolution
    layer(x).square().sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0


# --- factors and the best iterate ------------------------------------------------------

def test_factors_nonnegative_sum_normalised_and_their_product_is_the_output():
    prob, _ = problem_of(toy_scene(48, 4, seed=1))
    seen = []

    def record(it, z, loss, s, a):
        seen.append((z.clone(), s.clone(), a.clone()))

    fit(prob, dict(TINY, iterations=12, lr=1e-2), torch.device("cpu"), on_iterate=record)
    for z, s, a in seen:
        assert s.shape == (6, 48, 48) and a.shape == (6, 4)
        assert s.min() >= 0 and a.min() >= 0
        torch.testing.assert_close(s.sum(0), torch.ones(48, 48), atol=1e-4, rtol=0)
        torch.testing.assert_close(z, torch.einsum("kyx,kb->byx", s, a))
    # the factors moved during training (the property is not that of a frozen init)
    assert (seen[-1][1] - seen[0][1]).abs().max() > 1e-3


def test_returned_iterate_has_the_lowest_data_loss():
    prob, _ = problem_of(toy_scene(48, 4, seed=2))
    zs, losses = [], []

    def record(it, z, loss, s, a):
        zs.append(z.clone())
        losses.append(loss)

    # a large step size makes the loss go up and down, so "best" is not "last"
    result = fit(prob, dict(TINY, iterations=25, lr=0.03), torch.device("cpu"), on_iterate=record)
    recomputed = [float(prob.data_loss(z, TINY["huber_delta"])) for z in zs]
    np.testing.assert_allclose(losses, recomputed, rtol=1e-5)  # the loss is the data loss of Z_i
    best = int(np.argmin(recomputed))
    assert best != len(zs) - 1, "test setting should make the last iterate not the best"
    assert result.iteration == best
    np.testing.assert_array_equal(result.z, zs[best].numpy())
    assert result.loss == pytest.approx(recomputed[best], rel=1e-6)


def test_the_output_does_not_depend_on_step_timings(monkeypatch):
    """With ``threads = 0`` the fit used to time steps 1 and 2 on all threads and on one and
    keep the faster; with a clock on which one thread looks faster it then trained on one
    thread, and its output differed from the same seed's on two."""
    from types import SimpleNamespace

    from maxrf_bench_plugins import _threads

    ticks = iter([0.0, 10.0, 10.0, 11.0, *range(100, 100_000)])  # step 1: 10 s, step 2: 1 s
    monkeypatch.setattr(_threads, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    prep = mb.prepare_scan(mb.make_scan(**toy_scene(64, 3, seed=0), title="t"), name="t", scale=4)
    method = mb.get_method("cs2dips")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = {n: np.asarray(method.run(prep.inputs(seed=0), **{**method.params("fast"), "iterations": 12,
                                                                  "threads": n}))
               for n in (0, 2)}
        np.testing.assert_array_equal(out[0], out[2])
        assert torch.get_num_threads() == 2
    finally:  # this worker's later tests keep their own count
        torch.set_num_threads(before)


# --- the guide -------------------------------------------------------------------------

def photo_following_scene(size: int = 64) -> dict:
    """Element maps that are non-negative mixtures of the photograph's channels."""
    rgb = toy_scene(size, 4, seed=3)["rgb"].astype(np.float64)
    mix = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.3, 0.7]])
    maps = 50 * np.einsum("ec,cyx->eyx", mix, rgb) + 3
    return dict(maps=maps.astype(np.float32), rgb=rgb.astype(np.float32),
                elements=["Pb_L", "Hg_L", "Cu_K", "Ca_K", "Fe_K"])


def test_shuffled_photograph_gives_a_worse_result():
    scene = photo_following_scene()
    shuffled = dict(scene)
    rgb = scene["rgb"]
    perm = np.random.default_rng(0).permutation(rgb.shape[1] * rgb.shape[2])
    shuffled["rgb"] = rgb.reshape(3, -1)[:, perm].reshape(rgb.shape)
    params = dict(TINY, iterations=60, lr=1e-2)
    scores = {}
    for name, sc in (("photo", scene), ("shuffled", shuffled)):
        prob, truth = problem_of(sc)
        scores[name] = psnr(fit(prob, params, torch.device("cpu"), seed=0).z, truth)
    assert scores["photo"] > scores["shuffled"] + 3, scores


# --- plugin ----------------------------------------------------------------------------

def test_usable_levels_keep_the_published_depth_where_batch_norm_allows():
    assert usable_levels((21,), 3) == 3       # 21 → 11 → 6 → 3
    assert usable_levels((8,), 3) == 2        # 8 → 4 → 2 (→ 1 would break batch norm)
    assert usable_levels((512, 512), 5) == 5
    assert usable_levels((32, 32), 5) == 4
    assert usable_levels((1,), 3) == 0


def test_registered_with_paper_and_fast_presets_and_runs_from_the_registry():
    method = mb.get_method("cs2dips")
    assert method.params("paper")["iterations"] == 5000 and method.params("paper")["rank"] == 35
    assert method.params("fast")["iterations"] < 5000
    inputs = mb.prepare_scan(mb.make_scan(**toy_scene(32, 4)), name="t", scale=4).inputs()
    with pytest.raises(mb.ConfigError, match="iterations"):
        method.run(inputs, **method.params("fast", {"iterations": "0"}))
    params = method.params("fast", {"iterations": "3", "channels": "4", "rank": "4",
                                    "spectral_noise_channels": "8"})  # as --set passes them
    out = np.asarray(method.run(inputs, **params))
    assert out.shape == (4, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() > 0


def test_work_cap_shortens_only_large_scans():
    from maxrf_bench_plugins.cs2dips.method import iteration_count

    fast = mb.get_method("cs2dips").params("fast")
    assert iteration_count(fast, (128, 128)) == fast["iterations"]       # sim-demo: all of them
    assert iteration_count(fast, (512, 512)) == int(fast["max_megapixel_iterations"] / 0.262144)
    assert iteration_count(mb.get_method("cs2dips").params("paper"), (512, 512)) == 5000
