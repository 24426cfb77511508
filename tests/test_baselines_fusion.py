"""HSI–MSI fusion baselines (CSTF, CMS, LTTR) and their shared helpers.

The key property (issue 5): on a scene whose element maps ARE exact non-negative linear
mixtures of the RGB channels — the assumption these methods are built on — they must
recover the maps far better than bicubic interpolation.
"""
from __future__ import annotations

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench_plugins import _fusion, cms, cstf, lttr

from conftest import toy_scene

# Elements 1-3 are the R, G, B channels themselves, 4-5 non-negative mixtures: the
# photograph is then an exact non-negative linear response of the (normalised) maps.
MIX = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.3, 0.7]])
ELEMENTS = ["Pb_L", "Hg_L", "Cu_K", "Ca_K", "Fe_K"]


def linear_scene(size: int = 48, seed: int = 0) -> dict:
    rgb = toy_scene(size, 4, seed)["rgb"].astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.clip(rgb * (0.8 + 0.2 * np.sin(9 * xx + 4 * yy))[None], 0, 1)  # add shading
    maps = 50 * np.einsum("ec,cyx->eyx", MIX, rgb) + 3
    return dict(maps=maps.astype(np.float32), rgb=rgb.astype(np.float32), elements=ELEMENTS)


@pytest.fixture(scope="module")
def linear_prepared():
    scan = mb.make_scan(**linear_scene(), title="linear mixtures of RGB")
    return mb.prepare_scan(scan, name="linear", scale=4)


def psnr(a, b) -> float:
    return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(a, float) - b) ** 2))))


# --- spectral response -----------------------------------------------------------------

def test_nnls_response_recovers_known_response():
    rng = np.random.default_rng(3)
    maps = rng.random((7, 20, 20))
    r_true = rng.random((3, 7))
    r_true[r_true < 0.4] = 0.0  # some exact zeros: the non-negativity is active
    c_true = np.array([0.1, -0.05, 0.2])
    rgb = np.einsum("cb,byx->cyx", r_true, maps) + c_true[:, None, None]
    r, c = _fusion.estimate_response(maps, rgb)
    np.testing.assert_allclose(r, r_true, atol=1e-8)
    np.testing.assert_allclose(c, c_true, atol=1e-8)
    assert (r >= 0).all()


def test_nnls_response_is_nonnegative_when_least_squares_is_not():
    rng = np.random.default_rng(4)
    maps = rng.random((2, 30, 30))
    rgb = np.stack([maps[0] - 0.5 * maps[1]] * 3)  # true coefficient of map 1 is negative
    r, _ = _fusion.estimate_response(maps, rgb)
    assert (r >= 0).all() and r[:, 1].max() == 0.0 and r[0, 0] > 0.5


def test_fusion_data_estimates_response_from_lr_grid(linear_prepared):
    data = _fusion.fusion_data(linear_prepared.inputs())
    # maps normalised to [0, 1] per element: rgb = R' maps_norm + c' still holds exactly
    recon = np.einsum("cb,byx->cyx", data.response, linear_prepared.truth) + data.offset[:, None, None]
    np.testing.assert_allclose(recon, linear_prepared.rgb.values, atol=1e-4)
    # the photograph is explained by the three pure-channel elements only
    assert np.abs(data.response[:, 3:]).max() < 1e-4


# --- spatial operator helpers ----------------------------------------------------------

@pytest.mark.parametrize("op", [mb.BlockMean(4), mb.GaussianBeam(4, sigma=1.5)])
def test_normal_solver_is_exact(op):
    rng = np.random.default_rng(0)
    solver = _fusion.NormalSolver(op, (32, 24))
    assert solver.circulant
    r = rng.standard_normal((3, 32, 24))
    a = np.array([1e-3, 0.1, 2.0])
    z = solver.solve(r, a)
    np.testing.assert_allclose(a[:, None, None] * z + solver.utu(z), r, atol=1e-9)
    solver.circulant = False  # the conjugate-gradient fallback agrees
    np.testing.assert_allclose(solver.solve(r, a, cg_iters=2000, cg_tol=1e-12), z, atol=1e-6)


def test_separable_factors_of_block_mean_and_refusal_of_non_separable():
    py, px = _fusion.separable_factors(mb.BlockMean(4), (16, 12))
    np.testing.assert_allclose(py, np.kron(np.eye(4), np.full((1, 4), 0.25)), atol=1e-12)
    np.testing.assert_allclose(px, np.kron(np.eye(3), np.full((1, 4), 0.25)), atol=1e-12)

    class Skewed(mb.BlockMean):  # block mean + block mean of a diagonal shift: not separable
        def down(self, y):
            y = np.asarray(y)
            return mb.block_mean(y, 4) + mb.block_mean(np.roll(y, (1, 2), axis=(-2, -1)), 4)

    with pytest.raises(mb.ConfigError, match="separable"):
        _fusion.separable_factors(Skewed(4), (16, 12))


def test_patches_round_trip_off_grid_and_capped_groups():
    img = np.random.default_rng(1).random((2, 21, 18))
    patches = _fusion.extract_patches(img, 8, 4)
    assert patches.shape == (5 * 4, 2, 8, 8)  # y starts 0,4,8,12 + border 13; x 0,4,8 + 10
    np.testing.assert_allclose(_fusion.aggregate_patches(patches, (21, 18), 8, 4), img, atol=1e-12)
    feats = np.random.default_rng(2).random((500, 4))
    labels = np.zeros(500, dtype=int)
    labels[:30] = 1
    groups = _fusion.capped_groups(labels, feats, 100)
    assert max(len(g) for g in groups) <= 100
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(500))


def test_lttr_gram_wnnm_matches_svd_shrinkage():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 40)) * 3 + 0.1 * rng.standard_normal((300, 40))
    for mat in (a, a.T):
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        ref = (u * lttr.wnnm_shrink(s, 2.0)) @ vt
        np.testing.assert_allclose(lttr.wnnm(mat, 2.0), ref, atol=1e-9)
        assert np.linalg.matrix_rank(ref) == 5


def test_cms_self_representation_has_zero_diagonal_and_reconstructs():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 40))  # rank-3 cluster
    w = cms.lsr1(y, 1e-3)
    assert np.allclose(np.diag(w), 0)
    assert np.linalg.norm(y - y @ w) < 0.01 * np.linalg.norm(y)


# --- the methods on exact linear mixtures ----------------------------------------------

SMALL = {
    "cstf": (cstf.run_cstf, dict(atoms_per_side=0.67, iters=6, admm_iters=30, ksvd_iters=10)),
    "cms": (cms.run_cms, dict(patches_per_cluster=18, iters=20)),   # 529 patches: 29 clusters
    "lttr": (lttr.run_lttr, dict(patches_per_cluster=6, iters=8)),  # 121 patches: 20 clusters
}
MARGIN_DB = {"cstf": 8.0, "cms": 5.0, "lttr": 7.0}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_method_beats_bicubic_on_linear_mixtures(name, linear_prepared):
    run, params = SMALL[name]
    prep = linear_prepared
    out = np.asarray(run(prep.inputs(seed=0), **params).values)
    assert out.shape == prep.truth.shape and np.isfinite(out).all()
    bicubic = mb.upsample(prep.maps_lr.values, 4, "bicubic")
    gain = psnr(out, prep.truth) - psnr(bicubic, prep.truth)
    assert gain > MARGIN_DB[name], f"{name}: only {gain:.2f} dB over bicubic"
    if name == "cms":  # ends with the back-projection onto {down(Z) = LR}
        np.testing.assert_allclose(prep.operator.down(out), prep.maps_lr.values, atol=1e-5)


def test_cms_declares_that_it_projects_only_with_its_back_projection():
    """CMS ends with the back-projection, whose last step is the exact projection (checked
    on its output above): the host must not offer ``cms+P``; without it, it must."""
    method = mb.get_method("cms")
    for preset in ("paper", "fast"):
        assert method.projects_with(method.params(preset))
    assert not method.projects_with(method.params("paper", {"back_projection_iters": 0}))
    assert not any(mb.get_method(n).projects_with(mb.get_method(n).params("paper"))
                   for n in ("cstf", "lttr"))


def test_bad_parameters_raise_config_error(linear_prepared):
    with pytest.raises(mb.ConfigError, match="atoms_per_side"):
        cstf.run_cstf(linear_prepared.inputs(), atoms_per_side=0)
    with pytest.raises(mb.ConfigError, match="mu"):
        lttr.run_lttr(linear_prepared.inputs(), mu=0.0)


def test_registered_and_run_through_run_grid(tmp_path):
    path = tmp_path / "lin.zarr"
    mb.save_scan(mb.make_scan(**linear_scene(32, seed=1), title="lin"), path)
    sets = {"cstf": dict(atoms_per_side=0.5, iters=2, admm_iters=10, ksvd_iters=3),
            "cms": dict(patches_per_cluster=22, iters=5), "lttr": dict(patches_per_cluster=6, iters=2)}
    for name in sets:
        method = mb.get_method(name)
        assert set(method.presets) >= {"paper", "fast"} and method.reference
    res = mb.run_grid(["bicubic", "cstf", "cms", "lttr"], [str(path)], out=tmp_path / "out",
                      preset="fast", sets=sets)
    # a label carries the parameters set away from the preset (issue 9): cstf[admm_iters=10,…]
    labels = {label.split("[")[0]: label for label in res.methods}
    assert labels["cms"] == "cms[iters=5,patches_per_cluster=22]"
    for name in ("bicubic", "cstf", "cms", "lttr"):
        value = res.value("lin", labels[name], "psnr")
        assert np.isfinite(value) and value > 15, (name, value)


# --- counts that follow the image size (issue 9) ---------------------------------------

class _Stop(Exception):
    pass


def _recorder(monkeypatch, module, name, index):
    """Replace ``module.name`` by a function that records its ``index``-th argument, then
    stops the method (the counts are all this test needs)."""
    seen = []

    def record(*args, **kwargs):
        seen.append(int(args[index]))
        raise _Stop

    monkeypatch.setattr(module, name, record)
    return seen


@pytest.mark.parametrize("size", [32, 64])
def test_cstf_atoms_equal_the_image_side(monkeypatch, size):
    prep = mb.prepare_scan(mb.make_scan(**linear_scene(size), title="lin"), name="lin", scale=4)
    seen = _recorder(monkeypatch, cstf, "ksvd", 1)
    with pytest.raises(_Stop):
        cstf.run_cstf(prep.inputs())  # paper default: atoms = side (hif-benchmarking)
    with pytest.raises(_Stop):
        cstf.run_cstf(prep.inputs(), **mb.get_method("cstf").params("fast"))
    assert seen == [size, round(mb.get_method("cstf").params("fast")["atoms_per_side"] * size)]


@pytest.mark.parametrize("name, module, reference", [("cms", cms, 300), ("lttr", lttr, 160)])
def test_cluster_counts_follow_the_number_of_patches(monkeypatch, name, module, reference):
    """At the reference code's 512 × 512 the count is the reference's (CMS 300, LTTR 160);
    on smaller images it keeps the same number of patches per cluster instead."""
    params = mb.get_method(name).params("paper")
    patch, step, per = params["patch"], params["step"], params["patches_per_cluster"]
    assert _fusion.scaled_count(_fusion.n_patches((512, 512), patch, step), per) == reference
    seen = _recorder(monkeypatch, module, "kmeans", 1)
    run = module.run_cms if module is cms else module.run_lttr
    sizes = (64, 128)
    for size in sizes:
        prep = mb.prepare_scan(mb.make_scan(**linear_scene(size), title="lin"), name="lin", scale=4)
        with pytest.raises(_Stop):
            run(prep.inputs())
    n = [_fusion.n_patches((s, s), patch, step) for s in sizes]
    assert seen == [max(1, round(k / per)) for k in n]
    assert seen[1] > 3 * seen[0]  # four times the area, about four times the clusters


# --- weight of the RGB term (issue 9) --------------------------------------------------

def test_noise_std_estimates_white_noise():
    noise = 0.05 * np.random.default_rng(0).standard_normal((4, 64, 64))
    smooth = np.linspace(0, 1, 64)[None, None, :] * np.ones((4, 64, 1))  # no Haar HH energy
    assert _fusion.noise_std(smooth + noise) == pytest.approx(0.05, rel=0.1)


def test_rgb_weight_is_one_for_an_exact_response_and_falls_for_a_noise_photograph():
    scene = linear_scene()
    exact = _fusion.fusion_data(mb.prepare_scan(mb.make_scan(**scene, title="l"), name="l",
                                                scale=4).inputs())
    assert exact.rgb_weight == pytest.approx(1.0) and exact.explained > 0.999
    scene["rgb"] = np.random.default_rng(0).random(scene["rgb"].shape).astype(np.float32)
    noisy = mb.prepare_scan(mb.make_scan(**scene, title="n"), name="n", scale=4)
    data = _fusion.fusion_data(noisy.inputs())
    assert data.explained < 0.05 and data.rgb_weight < 0.2
    y_w, r_w = data.rgb_term()
    np.testing.assert_allclose(y_w, np.sqrt(data.rgb_weight) * data.msi)
    np.testing.assert_allclose(r_w, np.sqrt(data.rgb_weight) * data.response)
    assert _fusion.fusion_data(noisy.inputs(), weight_rgb=False).rgb_weight == 1.0


def test_weighted_rgb_term_protects_lttr_from_a_photograph_it_cannot_use():
    """With a photograph of pure noise the papers' unit weight wrecks LTTR; the weighted
    term keeps it within a few dB of bicubic interpolation."""
    scene = linear_scene()
    scene["rgb"] = np.random.default_rng(0).random(scene["rgb"].shape).astype(np.float32)
    prep = mb.prepare_scan(mb.make_scan(**scene, title="n"), name="n", scale=4)
    run, params = SMALL["lttr"]
    weighted = psnr(run(prep.inputs(), **params).values, prep.truth)
    unit = psnr(run(prep.inputs(), **params, weight_rgb=False).values, prep.truth)
    bicubic = psnr(mb.upsample(prep.maps_lr.values, 4, "bicubic"), prep.truth)
    assert weighted > unit + 10 and weighted > bicubic - 6, (weighted, unit, bicubic)
