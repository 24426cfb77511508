import math

import numpy as np
import pytest

import maxrf_bench as mb


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 24, 20))
    sr = np.clip(truth + 0.05 * rng.standard_normal(truth.shape), 0, 1)
    return sr, truth


def compute(name, sr, truth, lr=None, op=None):
    return mb.get_metric(name).compute(sr, truth, lr, op)


def test_rmse_and_psnr_from_first_principles(pair):
    sr, truth = pair
    per, overall = compute("rmse", sr, truth)
    for b in range(3):
        assert per[b] == pytest.approx(math.sqrt(sum((a - t) ** 2 for a, t in zip(sr[b].ravel(), truth[b].ravel())) / sr[b].size))
    assert overall == pytest.approx(math.sqrt(((sr - truth) ** 2).sum() / sr.size))
    per_p, overall_p = compute("psnr", sr, truth)
    assert overall_p == pytest.approx(10 * math.log10(1 / ((sr - truth) ** 2).mean()))
    assert per_p[1] == pytest.approx(-20 * math.log10(per[1]))


def test_paper_table_relation_psnr_rmse():
    # Every cell of the paper's Table I satisfies PSNR = -20 log10(RMSE) (data range 1)
    truth = np.zeros((1, 10, 10))
    sr = truth + 0.0187
    assert compute("psnr", sr, truth)[1] == pytest.approx(34.56, abs=0.01)


def test_ssim_matches_scikit_image(pair):
    skm = pytest.importorskip("skimage.metrics")
    sr, truth = pair
    per, overall = compute("ssim", sr, truth)
    ref = [skm.structural_similarity(s, t, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False) for s, t in zip(sr, truth)]
    assert np.allclose(per, ref, atol=1e-6)
    assert overall == pytest.approx(np.mean(ref))
    assert compute("ssim", truth, truth)[1] == pytest.approx(1.0)


def test_sam_degrees_by_hand():
    truth = np.zeros((2, 1, 2))
    truth[:, 0, 0] = [1, 0]
    truth[:, 0, 1] = [1, 1]
    sr = np.zeros_like(truth)
    sr[:, 0, 0] = [1, 1]  # 45 degrees from [1, 0]
    sr[:, 0, 1] = [2, 2]  # parallel: 0 degrees
    per, overall = compute("sam", sr, truth)
    assert overall == pytest.approx(22.5)
    assert np.isnan(per).all()


def test_ergas_wald_definition(pair):
    sr, truth = pair
    op = mb.BlockMean(4)
    _, overall = compute("ergas", sr, truth, None, op)
    terms = [(np.sqrt(((s - t) ** 2).mean()) / t.mean()) ** 2 for s, t in zip(sr, truth)]
    assert overall == pytest.approx(100 / 4 * math.sqrt(sum(terms) / 3))


def test_consistency_is_rmse_of_downsampled_error(pair):
    sr, truth = pair
    op = mb.BlockMean(4)
    lr = op.down(truth)
    per, overall = compute("consistency", sr, None, lr, op)
    blocks = sr.reshape(3, 6, 4, 5, 4).mean(axis=(2, 4))
    assert overall == pytest.approx(np.sqrt(((blocks - lr) ** 2).mean()))
    assert compute("consistency", op.project(sr, lr), None, lr, op)[1] < 1e-7
    assert not mb.get_metric("consistency").needs_truth


def test_q_index_hand_computed():
    from maxrf_bench_plugins.metrics import q_index

    # x = 1..4, y = 2x: means 2.5, 5; sample variances 5/3, 20/3; covariance 10/3
    # Q = 4 (10/3)(2.5)(5) / ((25/3)(6.25 + 25)) = 500 / 781.25 = 0.64
    assert q_index(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8])) == pytest.approx(0.64)
    a = np.random.default_rng(0).random(50) + 0.1
    assert q_index(a, a) == pytest.approx(1.0)


def _q_loop(a, b, size):
    """Alparone's block Q written out from the formula, as an independent check."""
    qs = []
    for i in range(0, a.shape[0] - size + 1, size):
        for j in range(0, a.shape[1] - size + 1, size):
            x, y = a[i:i + size, j:j + size].ravel(), b[i:i + size, j:j + size].ravel()
            c = np.cov(x, y)  # sample covariances, as MATLAB's cov
            qs.append(4 * c[0, 1] * x.mean() * y.mean() / ((c[0, 0] + c[1, 1]) * (x.mean() ** 2 + y.mean() ** 2)))
    return np.mean(qs)


def test_qnr_follows_the_published_formulas():
    from maxrf_bench_plugins import metrics as m

    rng = np.random.default_rng(1)
    op = mb.BlockMean(2)
    sr = rng.random((3, 32, 32)) + 0.2
    lr = op.down(sr) + 0.05 * rng.random((3, 16, 16))
    rgb = rng.random((3, 32, 32))
    pan = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    # S = 32 HR pixels would leave one block: sizes here are 32 HR / 16 LR
    s_hr, s_lr = 32, 16
    dl = np.mean([abs(_q_loop(sr[i], sr[j], s_hr) - _q_loop(lr[i], lr[j], s_lr))
                  for i in range(3) for j in range(3) if i != j])
    ds = np.mean([abs(_q_loop(sr[i], pan, s_hr) - _q_loop(lr[i], op.down(pan), s_lr)) for i in range(3)])
    assert m.d_lambda(sr, None, lr, op)[1] == pytest.approx(dl, abs=1e-10)
    assert m.d_s(sr, None, lr, op, rgb=rgb)[1] == pytest.approx(ds, abs=1e-10)
    assert m.qnr(sr, None, lr, op, rgb=rgb)[1] == pytest.approx((1 - dl) * (1 - ds), abs=1e-10)
    assert 0 < dl < 1 and 0 < ds < 1
    # more blocks on a larger image: 64 HR px → 2×2 blocks of 32 (LR blocks of 16)
    sr2 = rng.random((2, 64, 64)) + 0.2
    lr2 = op.down(sr2)
    want = abs(_q_loop(sr2[0], sr2[1], 32) - _q_loop(lr2[0], lr2[1], 16))
    assert m.d_lambda(sr2, None, lr2, op)[0][0] == pytest.approx(want, abs=1e-10)
