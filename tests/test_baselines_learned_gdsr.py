"""Learned guided-depth-SR baselines ``mmsr`` and ``ssgnet`` (plugins/mmsr.py,
plugins/ssgnet/, plugins/_guided_upsampler.py): one property per network that breaks if it
is wired wrong, on toy scenes of 16–32 pixels and a few training steps."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

import maxrf_bench as mb
from maxrf_bench.testing import check_method, toy_scene
from maxrf_bench_plugins import _guided_upsampler as gu
from maxrf_bench_plugins.ssgnet import structure as st


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def psnr(a, b):
    return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(a, float) - b) ** 2))))


def prepared(size=32, elements=2, seed=0, shuffle_rgb=False):
    scene = toy_scene(size, elements, seed)
    if shuffle_rgb:  # the same colours at random places: no structure left in the guide
        rgb = scene["rgb"].reshape(3, -1)
        scene["rgb"] = rgb[:, np.random.default_rng(1).permutation(rgb.shape[1])].reshape(3, size, size)
    return mb.prepare_scan(mb.make_scan(**scene, title="toy", source="test"), name="toy", scale=4)


def unfold_attention(query, keys, window):
    """The reference formulation: every pixel's window of keys materialised by F.unfold."""
    b, c, h, w = keys.shape
    cols = F.unfold(keys, window, padding=window // 2).view(b, c, window * window, h, w)
    weights = (cols * query.unsqueeze(2)).sum(1).softmax(1)
    return (cols * weights.unsqueeze(1)).sum(2)


@pytest.mark.parametrize("window", [11, 5])
def test_window_attention_equals_the_unfold_formulation(window):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 19, 27, generator=g, dtype=torch.float64)
    k = torch.randn(2, 6, 19, 27, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(gu.window_attention(q, k, window), unfold_attention(q, k, window),
                               rtol=0, atol=1e-12)


def test_tiles_with_halo_give_the_whole_image_output_and_gradient():
    torch.manual_seed(0)
    net = gu.MutualModulationNet(3).double()
    guide = torch.randn(1, 3, 40, 36, dtype=torch.float64)
    source = torch.randn(2, 1, 40, 36, dtype=torch.float64)
    lr = torch.randn(2, 1, 10, 9, dtype=torch.float64)
    with torch.no_grad():
        whole = net(guide, source)
    np.testing.assert_allclose(gu.predict(net, guide, source, tile=12), whole, rtol=0, atol=1e-12)
    op = mb.GaussianBeam(4, 1.0)  # couples tiles: the loss gradient must be taken globally
    grads = []
    for tile in (1000, 12):
        net.zero_grad()
        gu.whole_image_step(net, guide, source, lr, op, "l1", tile)
        grads.append(torch.cat([p.grad.ravel() for p in net.parameters()]))
    np.testing.assert_allclose(grads[1], grads[0], rtol=0, atol=1e-10 * float(grads[0].abs().max()))


@pytest.fixture(scope="module")
def narrow_mmsr():
    """MMSR (per element, whole-image epochs) at 16 features instead of 64, so that it trains
    in seconds, on a 32² toy scene whose first map follows the photograph's regions; run
    with the photograph and with its pixels shuffled (the same colours, no structure)."""
    runs = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for shuffle in (False, True):
        prep = prepared(32, 1, shuffle_rgb=shuffle)
        prob = gu.make_problem(prep.maps_lr.values, gu.zscore_guide(prep.rgb.values),
                               prep.operator, torch.device("cpu"))
        out = gu.super_resolve(prob, lambda: gu.MutualModulationNet(3, width=16),
                               gu.Schedule(epochs=200), share_elements=False, seed=0)
        runs[shuffle] = (prep, out)
    torch.set_num_threads(before)
    return runs


def test_mmsr_output_agrees_with_the_lr_maps_as_its_loss_promises(narrow_mmsr):
    prep, out = narrow_mmsr[False]
    lr = prep.maps_lr.values

    def inconsistency(hr):
        return float(np.sqrt(np.mean((prep.operator.down(hr) - lr) ** 2)))

    # MMSR minimises the L1 between U(prediction) and the LR map: its output reproduces the
    # LR map far better than the bilinear interpolation its source branch starts from
    assert inconsistency(out) < 0.25 * inconsistency(mb.upsample(lr, 4, "bilinear"))


def test_mmsr_uses_the_photograph(narrow_mmsr):
    (prep, out), (_, shuffled) = narrow_mmsr[False], narrow_mmsr[True]
    # the map follows the photograph's regions: with the photograph's pixels shuffled the
    # guide carries no structure and the result is worse (4 dB here; 2.4-3.3 dB on seeds 1, 2)
    assert psnr(out, prep.truth) > psnr(shuffled, prep.truth) + 1.5


def test_mmsr_runs_in_the_host(tmp_path):
    assert np.isfinite(check_method("mmsr", tmp_path, preset=None, epochs=3))
    assert np.isfinite(check_method("mmsr", tmp_path / "fast", epochs=5, crop=16))


def dense_knn_laplacian(rgb, neighbours=st.NEIGHBOURS, weights=st.DISTANCE_WEIGHTS):
    """Brute force: all pairwise distances, the k smallest per row, a dense matrix."""
    _, h, w = rgb.shape
    n = h * w
    colour = (np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(3, n).T.astype(float)
    x = np.tile(np.linspace(0, 1, w), h)
    y = np.repeat(np.linspace(0, 1, h), w)
    wmat = np.zeros((n, n))
    for k, lam in zip(neighbours, weights):
        f = np.column_stack([colour, lam * x, lam * y])
        dist = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
        nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
        for i in range(n):
            for j in nearest[i]:
                wmat[i, j] += 1
                wmat[j, i] += 1
    return np.diag(wmat.sum(1)) - wmat


def test_sparse_knn_laplacian_equals_the_dense_one():
    rgb = np.random.default_rng(3).random((3, 6, 7))
    lap = st.knn_laplacian(rgb)
    assert scipy.sparse.issparse(lap)
    dense = dense_knn_laplacian(rgb)
    np.testing.assert_array_equal(lap.toarray(), dense)
    # and the loss's quadratic form through the torch sparse copy equals the dense product
    e = torch.rand(1, 3, 6, 7, dtype=torch.float32)
    e_loss, _ = st.structure_loss(e, st.to_torch(lap, "cpu"))
    flat = e.reshape(3, -1).double().numpy()
    expected = np.abs(np.diag(flat @ dense @ flat.T)).mean()
    assert float(e_loss) == pytest.approx(expected, rel=1e-5)


def test_ssgnet_structure_follows_the_photograph():
    size = 24
    yy, xx = np.mgrid[0:size, 0:size]
    left = xx < size // 2
    rgb = np.where(left, np.array([0.8, 0.2, 0.1])[:, None, None], np.array([0.1, 0.3, 0.9])[:, None, None])
    rgb = np.clip(rgb + 0.05 * np.random.default_rng(0).standard_normal(rgb.shape), 0, 1).astype(np.float32)
    lap = st.to_torch(st.knn_laplacian(rgb), "cpu")
    inner = (xx > 2) & (xx < size - 3) & (np.abs(xx - size // 2) > 2)
    stats = []
    for iterations in (0, 60):
        net, _ = st.train_structure(rgb, iterations=iterations, lr=1e-3, crop=128, crops=1, seed=0,
                                    device="cpu")
        with torch.no_grad():
            e = net(torch.from_numpy(st.imagenet_normalise(rgb))[None])
            energy = float(st.structure_loss(e, lap)[0])
        e = e[0].numpy()
        gap = np.abs(e[:, left & inner].mean(1) - e[:, ~left & inner].mean(1)).max()
        spread = max(e[:, left & inner].std(1).max(), e[:, ~left & inner].std(1).max())
        stats.append((energy, gap, spread))
    (e0, g0, s0), (e1, g1, s1) = stats
    # the untrained network passes the photograph's noise on (spread > gap); trained on the
    # photograph's KNN Laplacian its maps are flat within each colour region and differ
    # between the two (spread < 10 % of the gap), and the Laplacian energy falls 100-fold
    assert s0 > 0.5 * g0, stats
    assert g1 > 0.02 and s1 < 0.1 * g1, stats
    assert e1 < 0.01 * e0, stats


def test_ssgnet_runs_in_the_host(tmp_path):
    gain = check_method("ssgnet", tmp_path, structure_iterations=10, epochs=10, crop=16)
    assert np.isfinite(gain)
    structure = list(tmp_path.rglob("ssgnet_structure.pt"))
    assert len(structure) == 1  # the trained SSGNet is kept for reuse


@pytest.mark.parametrize("method,key,value", [
    ("mmsr", "epochs", -1), ("mmsr", "loss", "l2"), ("mmsr", "crop", -4), ("mmsr", "tile", 4),
    ("ssgnet", "structure_crops", 0), ("ssgnet", "structure_lr", 0.0),
])
def test_bad_parameters_are_one_clear_error(method, key, value):
    prep = prepared(16, 1)
    m = mb.get_method(method)
    with pytest.raises(mb.ConfigError, match=key):
        m.run(prep.inputs(seed=0), **m.params(None, {key: value}))
