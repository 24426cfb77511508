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
