import numpy as np
import pytest
import torch

import maxrf_bench as mb
from maxrf_bench.resample import interpolation_matrix

OPERATORS = [mb.BlockMean(2), mb.BlockMean(3), mb.BlockMean(4), mb.GaussianBeam(4, sigma=1.0),
             mb.GaussianBeam(3, sigma=0.7), mb.GaussianBeam(2, sigma=0.0),
             mb.CoarseScan(4, sigma=1.0), mb.CoarseScan(3, sigma=0.5), mb.CoarseScan(2, sigma=0.0),
             mb.CoarseScan(4, sigma=0.0)]


def _rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


@pytest.mark.parametrize("op", OPERATORS, ids=repr)
def test_projection_is_exact_and_idempotent(op):
    s = op.scale
    y = _rand((3, 12 * s, 8 * s))
    y_lr = _rand((3, 12, 8), seed=1)
    p = op.project(y, y_lr)
    assert np.abs(op.down(p) - y_lr).max() < 1e-6
    assert np.abs(op.project(p, y_lr) - p).max() < 1e-6
    # float32 maps, as the host's +P gets them: still consistent to 1e-5
    p32 = op.project(y.astype(np.float32), y_lr.astype(np.float32))
    assert np.abs(op.down(p32) - y_lr).max() < 1e-5
    # the projection moves y by the least amount: any other consistent map is farther away
    other = op.project(_rand(y.shape, seed=2), y_lr)
    assert np.linalg.norm(p - y) < np.linalg.norm(other - y)


@pytest.mark.parametrize("op", OPERATORS, ids=repr)
def test_adjoint_is_the_transpose(op):
    s = op.scale
    x = _rand((2, 6 * s, 5 * s))
    r = _rand((2, 6, 5), seed=3)
    assert np.isclose((op.down(x) * r).sum(), (x * op.adjoint(r)).sum(), rtol=1e-10)


def test_blockmean_scaled_by_s_has_orthonormal_columns():
    s, h, w = 3, 6, 9
    n = h * w
    U = np.stack([mb.BlockMean(s).down(e.reshape(h, w)).ravel() for e in np.eye(n)])  # (N_h, N_l)
    Uo = s * U  # the paper's orthonormal U
    assert np.allclose(Uo.T @ Uo, np.eye(n // s**2))
    y = _rand((2, n))
    y_lr = _rand((2, n // s**2), seed=4)
    paper = y - (y @ Uo - s * y_lr) @ Uo.T  # Eq. 10 with Y_lr in the orthonormal convention
    ours = mb.BlockMean(s).project(y.reshape(2, h, w), y_lr.reshape(2, h // s, w // s))
    assert np.allclose(paper.reshape(2, h, w), ours)


def test_gaussian_projection_matches_dense_least_norm_solution():
    op = mb.GaussianBeam(2, sigma=0.8)
    h = w = 8
    U = np.stack([op.down(e.reshape(h, w)).ravel() for e in np.eye(h * w)]).T  # (N_l, N_h)
    y = _rand(h * w)
    y_lr = _rand(16, seed=5)
    dense = y - U.T @ np.linalg.solve(U @ U.T, U @ y - y_lr)
    assert np.allclose(op.project(y.reshape(h, w), y_lr.reshape(4, 4)).ravel(), dense, atol=1e-10)


@pytest.mark.parametrize("op", [mb.BlockMean(4), mb.GaussianBeam(4, sigma=1.2),
                                mb.CoarseScan(4, sigma=1.0)], ids=repr)
def test_torch_and_numpy_agree_and_gradients_flow(op):
    y = _rand((2, 16, 20))
    y_lr = _rand((2, 4, 5), seed=6)
    t = torch.tensor(y, requires_grad=True)
    pt = op.project(t, torch.tensor(y_lr))
    assert np.allclose(pt.detach().numpy(), op.project(y, y_lr), atol=1e-10)
    pt.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_scale_must_divide_size():
    with pytest.raises(mb.ScanValidationError, match="divisible by 4, found 10×12"):
        mb.BlockMean(4).down(np.zeros((1, 10, 12)))
    with pytest.raises(mb.ConfigError, match="positive integer"):
        mb.BlockMean(0)


def test_bilinear_matrix_matches_torch_interpolate():
    x = torch.tensor(_rand((1, 2, 5, 7)))
    ref = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    ours = mb.upsample(x[0], 4, "bilinear")
    assert torch.allclose(ours, ref[0], atol=1e-12)


def test_bicubic_matches_pil_in_the_interior():
    from PIL import Image

    x = _rand((9, 11)).astype(np.float32)
    ours = mb.upsample(x, 3, "bicubic")
    pil = np.asarray(Image.fromarray(x, mode="F").resize((33, 27), Image.BICUBIC))
    # PIL renormalises the truncated kernel at the borders; inside they must agree exactly
    assert np.abs(ours[6:-6, 6:-6] - pil[6:-6, 6:-6]).max() < 1e-5
    assert np.allclose(interpolation_matrix(9, 3).sum(1), 1)  # partition of unity


@pytest.mark.parametrize("op", OPERATORS, ids=repr)
def test_projection_is_the_dense_orthogonal_projection(op):
    """Proj(Ŷ) = Ŷ − Uᵀ(UUᵀ)⁻¹(UŶ − Y↓) with U built column by column from ``down``: the
    projection each operator applies is the exact orthogonal one, not Eq. 10 applied to an
    operator without orthonormal rows."""
    s = op.scale
    h, w = 3 * s, 4 * s
    U = np.stack([np.asarray(op.down(e.reshape(h, w)), np.float64).ravel()
                  for e in np.eye(h * w)]).T                                 # (N_l, N_h)
    y = _rand(h * w, seed=11)
    y_lr = _rand(12, seed=12)
    dense = y - U.T @ np.linalg.solve(U @ U.T, U @ y - y_lr)
    assert np.allclose(op.project(y.reshape(h, w), y_lr.reshape(3, 4)).ravel(), dense, atol=1e-9)


@pytest.mark.parametrize("op", [mb.BlockMean(4), mb.GaussianBeam(4, sigma=1.0), mb.CoarseScan(4, sigma=1.0)],
                         ids=repr)
def test_torch_float32_projection_is_consistent_and_idempotent(op):
    """The proposed method projects torch float32 tensors (its adversarial patches): the
    same exactness there, to 1e-5."""
    y = torch.tensor(_rand((2, 16, 24), seed=7), dtype=torch.float32)
    y_lr = torch.tensor(_rand((2, 4, 6), seed=8), dtype=torch.float32)
    p = op.project(y, y_lr)
    assert p.dtype == torch.float32
    assert (op.down(p) - y_lr).abs().max().item() < 1e-5
    assert (op.project(p, y_lr) - p).abs().max().item() < 1e-5


def test_coarse_scan_integrates_the_fast_axis_and_samples_the_slow_axis():
    op = mb.CoarseScan(4, sigma=0.0)
    # a stripe varying only along x (fast): the LR value is the mean over the step
    x = np.tile(np.arange(8, dtype=float), (8, 1))
    assert np.allclose(op.down(x), [[1.5, 5.5], [1.5, 5.5]])
    # varying only along y (slow): the beam sits on the row's centre (rows 1.5 and 5.5)
    assert np.allclose(op.down(x.T), [[1.5, 1.5], [5.5, 5.5]])
    # a single bright row between two sampled rows is missed by the sampled (slow) axis …
    row = np.zeros((8, 8))
    row[3] = 1
    assert np.allclose(op.down(row), 0)
    # … but a single bright column is integrated along the fast axis
    assert np.allclose(op.down(row.T), [[0.25, 0], [0.25, 0]])
    # with a beam, a flat map stays flat (rows of weights sum to 1) and the row is seen
    wide = mb.CoarseScan(4, sigma=1.0)
    assert np.allclose(wide.down(np.full((8, 12), 3.0)), 3.0)
    assert wide.down(row)[0, 0] > 0.1
    assert wide.to_dict() == {"name": "scan", "scale": 4, "sigma": 1.0}
    assert mb.make_operator("scan", 4, sigma=1.0).to_dict() == wide.to_dict()


def test_coarse_scan_refuses_a_beam_wider_than_the_step_can_resolve():
    with pytest.raises(mb.ConfigError, match="singular Gram"):
        mb.CoarseScan(2, sigma=20.0).project(np.zeros((8, 8)), np.zeros((4, 4)))


@pytest.mark.parametrize("op, lr_shape", [(mb.GaussianBeam(3, sigma=2.0), (16, 16)),
                                          (mb.CoarseScan(2, sigma=2.0), (13, 5))], ids=repr)
def test_float32_projection_of_a_wide_beam_is_exact(op, lr_shape):
    """A beam as wide as the step makes U Uᵀ ill-conditioned (cond ~1e5–1e7): the Gram solve
    in float32 missed U(Proj(Y)) = Y↓ by up to 1e-3 (torch 1e-5–1e-3) before the projection
    was computed in float64 whatever the inputs' type."""
    s = op.scale
    shape = (2, lr_shape[0] * s, lr_shape[1] * s)
    y, y_lr = _rand(shape, seed=21).astype(np.float32), _rand((2, *lr_shape), seed=22).astype(np.float32)
    p = op.project(y, y_lr)
    assert p.dtype == np.float32
    assert np.abs(op.down(p.astype(np.float64)) - y_lr).max() < 1e-5
    assert np.abs(op.project(p, y_lr) - p).max() < 1e-5
    yt, lt = torch.tensor(y), torch.tensor(y_lr)
    pt = op.project(yt, lt)
    assert pt.dtype == torch.float32
    assert (op.down(pt) - lt).abs().max().item() < 1e-5
    assert (op.project(pt, lt) - pt).abs().max().item() < 1e-5


@pytest.mark.parametrize("op, lr_shape", [(mb.CoarseScan(2, sigma=3.0), (40, 40)),
                                          (mb.GaussianBeam(2, sigma=4.0), (7, 11))], ids=repr)
def test_a_projection_that_cannot_be_exact_is_refused(op, lr_shape):
    """Before: accepted (each axis of the scan operator was checked alone, and the Gaussian
    at cond 1e10) and U(Proj(Y)) missed Y↓ by 0.24 (scan) and idempotence by 2.6e-4 even in
    float64."""
    s = op.scale
    y, y_lr = _rand((1, lr_shape[0] * s, lr_shape[1] * s)), _rand((1, *lr_shape), seed=1)
    with pytest.raises(mb.ConfigError, match="condition number"):
        op.project(y, y_lr)


@pytest.mark.parametrize("args, kwargs", [(("scan", 4), {"sigma": "1"}), (("scan", 4), {"sigma": None}),
                                          (("blockmean", 4), {"sigma": 1.0}), (("blockmean", True), {})])
def test_make_operator_refuses_bad_parameters_with_a_config_error(args, kwargs):
    """Before: a TypeError from inside the dataclass (sigma '1' or None; sigma for the block
    mean), or a silent BlockMean(scale=1) for scale=True."""
    with pytest.raises(mb.ConfigError):
        mb.make_operator(*args, **kwargs)
