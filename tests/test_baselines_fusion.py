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
    "cstf": (cstf.run_cstf, dict(atoms_y=32, atoms_x=32, iters=6, admm_iters=30, ksvd_iters=10)),
    "cms": (cms.run_cms, dict(clusters=30, iters=20)),
    "lttr": (lttr.run_lttr, dict(clusters=20, iters=8)),
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


def test_bad_parameters_raise_config_error(linear_prepared):
    with pytest.raises(mb.ConfigError, match="atoms_y"):
        cstf.run_cstf(linear_prepared.inputs(), atoms_y=0)
    with pytest.raises(mb.ConfigError, match="mu"):
        lttr.run_lttr(linear_prepared.inputs(), mu=0.0)


def test_registered_and_run_through_run_grid(tmp_path):
    path = tmp_path / "lin.zarr"
    mb.save_scan(mb.make_scan(**linear_scene(32, seed=1), title="lin"), path)
    sets = {"cstf": dict(atoms_y=16, atoms_x=16, iters=2, admm_iters=10, ksvd_iters=3),
            "cms": dict(clusters=10, iters=5), "lttr": dict(clusters=8, iters=2)}
    for name in sets:
        method = mb.get_method(name)
        assert set(method.presets) >= {"paper", "fast"} and method.reference
    res = mb.run_grid(["bicubic", "cstf", "cms", "lttr"], [str(path)], out=tmp_path / "out",
                      preset="fast", sets=sets)
    for name in ("bicubic", "cstf", "cms", "lttr"):
        value = res.value("lin", name, "psnr")
        assert np.isfinite(value) and value > 15, (name, value)
