"""The proposed method: Eqs. 7-14 as code, training, checkpoints, ablations, the
calibrated adversarial stage and the context-aware (k×k) generator."""
from __future__ import annotations

import csv

import json

import numpy as np
import pytest
import torch

import maxrf_bench as mb
from maxrf_bench_plugins import proposed
from maxrf_bench_plugins.proposed import ablation, super_resolve
from maxrf_bench_plugins.proposed.augment import most_correlated_band, pseudo_real_patches
from maxrf_bench_plugins.proposed.losses import (discriminator_loss, focused_lsgan_loss,
                                                 generator_adversarial_loss)
from maxrf_bench_plugins.proposed.model import Generator, load_generator, pad_replicate
from maxrf_bench_plugins.proposed.train import (consistency_losses, ensure_padding, forward_conv1x1,
                                                generated_patches, prepare_data,
                                                train_generator, x_regions)

from conftest import toy_scene

TINY = dict(pretrain_iterations=60, adversarial_iterations=20, disc_warmup=5, batch_blocks=64,
            adv_batch_blocks=32, batch_size=4, patch_size=16, disc_width=8, threads=1,
            checkpoint_seconds=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


def _prepared(size=64, elements=4, seed=0):
    scan = mb.make_scan(**toy_scene(size, elements, seed), title="toy")
    return mb.prepare_scan(scan, name="toy", scale=4)


def _psnr(sr, truth):
    return -20 * np.log10(np.sqrt(np.mean((np.asarray(sr, np.float64) - truth) ** 2)))


def _rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_generator_forward_is_eqs_7_to_9_by_hand():
    g = Generator(n_elements=2, n_bands=1, n_atoms=2, n_layers=2)
    S0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])
    S1 = np.array([[-0.3, 0.7, 0.1], [0.9, -0.2, 0.4]])
    W1 = np.array([[0.2, -0.1], [0.3, 0.5]])
    lam0, lam1 = np.array([0.1, -0.2]), np.array([0.05, 0.3])
    D = np.array([[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]])
    lamK = np.array([0.2, -0.1, 0.0])
    with torch.no_grad():
        for p, v in [(g.S[0], S0), (g.S[1], S1), (g.W[0], W1), (g.lam[0], lam0), (g.lam[1], lam1),
                     (g.D, D), (g.lam_synthesis, lamK)]:
            p.copy_(torch.tensor(v, dtype=torch.float32))
    x = np.array([[0.2, 0.4, 0.9], [0.7, 0.1, 0.3]])               # (N=2 pixels, C=3)
    a1 = _sigmoid(S0 @ x.T - lam0[:, None])                        # A(1), with A(0) = 0
    a2 = _sigmoid(a1 - W1 @ a1 + S1 @ x.T - lam1[:, None])         # Eq. 7
    x_hat = _sigmoid(D @ a2 - lamK[:, None]).T                     # Eq. 8
    got = g(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, x_hat, rtol=1e-5, atol=1e-6)
    y_hat, z_hat = proposed.model.split_reconstruction(torch.tensor(x_hat), 2)   # Eq. 9
    assert y_hat.shape == (2, 2) and z_hat.shape == (2, 1)
    # the 1x1-convolution formulation of the paper gives the same numbers
    img = torch.tensor(x.T.reshape(3, 1, 2), dtype=torch.float32)[None]
    conv = forward_conv1x1(g, img)[0].reshape(3, 2).T.detach().numpy()
    np.testing.assert_allclose(conv, x_hat, rtol=1e-5, atol=1e-6)
    # the ablation variants change Eq. 8 as Table III says
    lin = Generator(2, 1, 2, 2, synthesis="linear")
    assert lin.lam_synthesis is None
    # leaky ReLU in Eq. 8 lets a strongly negative pre-activation through (a sigmoid cannot);
    # the synthesis threshold is set so the sign does not depend on the random initial weights
    leaky = Generator(2, 1, 2, 2, activation="leaky_relu")
    sigm = Generator(2, 1, 2, 2)
    with torch.no_grad():
        for net in (leaky, sigm):
            net.lam_synthesis.fill_(1e3)
    x = torch.tensor([[-50.0, 0, 0]])
    assert leaky(x).max() < 0 and leaky.eval()(x).max() < 0
    assert 0 <= sigm(x).min() and sigm(x).max() < 1e-6


def _correlate_valid(img: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` ⋆ ``(M, C, k, k)`` → ``(M, H−k+1, W−k+1)``, by explicit loops."""
    m, c, k, _ = kern.shape
    h, w = img.shape[1] - k + 1, img.shape[2] - k + 1
    out = np.zeros((m, h, w))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = np.einsum("mcab,cab->m", kern, img[:, i:i + k, j:j + k])
    return out


def test_context_generator_is_eqs_7_to_9_with_kxk_analysis_and_synthesis():
    torch.manual_seed(0)
    g = Generator(n_elements=2, n_bands=1, n_atoms=3, n_layers=2, kernel=3)
    assert g.S[0].shape == (3, 3, 3, 3) and g.D.shape == (3, 3, 3, 3) and g.W[0].shape == (3, 3)
    assert g.halo == 2 and g.config["kernel"] == 3
    with torch.no_grad():
        for lam in [*g.lam, g.lam_synthesis]:
            lam.normal_(0, 0.3)
        for w in [*g.S, g.D]:
            w.normal_(0, 0.5)   # every tap (training starts with the centre tap only)
    S = [s.detach().double().numpy() for s in g.S]
    W1, D = g.W[0].detach().double().numpy(), g.D.detach().double().numpy()
    lam = [v.detach().double().numpy() for v in g.lam]
    lamK = g.lam_synthesis.detach().double().numpy()
    x = np.random.default_rng(1).random((3, 5, 6))                 # X with its halo: out 1×2
    a1 = _sigmoid(_correlate_valid(x, S[0]) - lam[0][:, None, None])              # (3, 3, 4)
    a2 = _sigmoid(a1 - np.einsum("mn,nyx->myx", W1, a1)
                  + _correlate_valid(x, S[1]) - lam[1][:, None, None])            # Eq. 7
    x_hat = _sigmoid(_correlate_valid(a2, D) - lamK[:, None, None])              # Eq. 8, (3, 1, 2)
    got = g.forward_image(torch.tensor(x, dtype=torch.float32)[None])[0].detach().numpy()
    np.testing.assert_allclose(got, x_hat, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not per pixel"):
        g(torch.zeros(4, 3))
    # context="photo": k×k on the photograph's channel only, the maps' centre tap, D 1×1
    gp = Generator(n_elements=2, n_bands=1, n_atoms=3, n_layers=2, kernel=3, context="photo")
    assert gp.halo == 1 and gp.D.shape == (3, 3)
    with torch.no_grad():
        for w in [*gp.S, gp.D, *gp.lam]:
            w.normal_(0, 0.5)
    Sp = [sp.detach().double().numpy().copy() for sp in gp.S]
    for sp in Sp:   # what the photo context reads: off-centre taps of the maps are not used
        centre = sp[:, :2, 1, 1].copy()
        sp[:, :2] = 0
        sp[:, :2, 1, 1] = centre
    lp = [v.detach().double().numpy() for v in gp.lam]
    xp = x[:, 1:5, 1:5]                                             # out 2×2 with halo 1
    a1 = _sigmoid(_correlate_valid(xp, Sp[0]) - lp[0][:, None, None])
    a2 = _sigmoid(a1 - np.einsum("mn,nyx->myx", gp.W[0].detach().double().numpy(), a1)
                  + _correlate_valid(xp, Sp[1]) - lp[1][:, None, None])
    ref = _sigmoid(np.einsum("cm,myx->cyx", gp.D.detach().double().numpy(), a2)
                   - gp.lam_synthesis.detach().double().numpy()[:, None, None])
    got = gp.forward_image(torch.tensor(xp, dtype=torch.float32)[None])[0].detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # training starts from the per-pixel network: off-centre taps are 0 at initialisation
    fresh = Generator(2, 1, 3, 2, kernel=3)
    assert fresh.S[0][:, :, 1, 1].abs().sum() > 0 and fresh.S[0][:, :, 0].abs().sum() == 0
    # kernel 1: forward_image is the per-pixel network on every pixel
    g1 = Generator(2, 1, 3, 2)
    img = torch.rand(2, 3, 4, 5)
    rows = g1(img.permute(0, 2, 3, 1).reshape(-1, 3)).reshape(2, 4, 5, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(g1.forward_image(img), rows)


@pytest.mark.parametrize("kernel,context", [(1, "all"), (3, "all"), (3, "photo")])
def test_training_regions_are_the_whole_image_function_and_unbiased(kernel, context):
    prep = _prepared(48, 3, seed=3)
    data = prepare_data(prep.maps_lr.values, prep.rgb.values, prep.operator, torch.device("cpu"))
    torch.manual_seed(0)
    g = Generator(3, kernel=kernel, context=context)
    g.init_from_data(data.x_hw.reshape(-1, 6))
    with torch.no_grad():
        for w in [*g.S, g.D]:
            if w.dim() == 4:
                w.normal_(0, 0.1)
    with torch.no_grad():
        whole = g.forward_image(pad_replicate(data.x_hw.permute(2, 0, 1)[None], g.halo))[0]
        # regions read with their halo (corners outside the scan too) = crops of the whole image
        ensure_padding(data, g.halo + 12)
        y0, x0 = torch.tensor([-8, 0, 20, 36]), torch.tensor([4, -6, 32, 36])
        reg = g.forward_nhwc(x_regions(data, y0, x0, 12, g.halo)).permute(0, 3, 1, 2)
        for j in range(4):
            ya, xa = max(0, int(y0[j])), max(0, int(x0[j]))
            ref = whole[:, ya:int(y0[j]) + 12, xa:int(x0[j]) + 12]
            got = reg[j][:, ya - int(y0[j]):, xa - int(x0[j]):][:, :ref.shape[1], :ref.shape[2]]
            assert (got - ref).abs().max() < 1e-5
        # mini-batch L_c1, L_c2 average to the full-image losses (edge blocks included)
        full = consistency_losses(g, data, 0, None)
        gen = torch.Generator().manual_seed(1)
        tile = 1 if kernel == 1 else 3
        est = np.array([[float(v) for v in consistency_losses(g, data, 36, gen, tile)] for _ in range(400)])
        np.testing.assert_allclose(est.mean(0), [float(v) for v in full], rtol=0.02)
        # and inference in strips is that function too
        sr = super_resolve(g, prep.maps_lr.values, prep.rgb.values, prep.operator, project=False, batch=30)
        assert np.abs(sr - whole[:3].numpy()).max() < 1e-5


@pytest.mark.parametrize("op,kernel,tile,pixels", [
    (mb.CoarseScan(4, 0.5), 1, 1, 32),      # 4 rows × 8 columns for one block, not 12 × 12
    (mb.CoarseScan(4, 0.5), 3, 2, 8 * 12),   # the k×k generator on 2×2 blocks: 8 × (8 + 4)
    (mb.CoarseScan(4, 2.0), 1, 1, 18 * 20),
    (mb.GaussianBeam(4, 1.0), 1, 1, 144),   # a periodic blur on the tile: nothing to trim
])
def test_margin_tiles_run_the_generator_only_where_down_reads(op, kernel, tile, pixels):
    """For operators with a margin, L_c1 of a tile's interior blocks is ``down`` of the whole
    padded tile restricted to them (the function training took before), to 1e-5, while the
    generator runs on the window of HR pixels with non-negligible weight only."""
    prep = _prepared(48, 3, seed=3)
    data = prepare_data(prep.maps_lr.values, prep.rgb.values, op, torch.device("cpu"))
    torch.manual_seed(0)
    g = Generator(3, kernel=kernel)
    g.init_from_data(data.x_hw.reshape(-1, 6))
    B, s, m = 3, 4, data.margin
    with torch.no_grad():
        lc1, _ = consistency_losses(g, data, 16 * tile * tile, torch.Generator().manual_seed(5), tile)
        win = data.windows[tile]
        assert win.wy * win.wx == pixels
        # the same tiles, the old way: g on the padded tile, then down, then its interior
        gen = torch.Generator().manual_seed(5)
        span, (h, w) = tile + 2 * m, data.lr.shape[1:]
        by = torch.randint(0, h - span + 1, (16,), generator=gen)
        bx = torch.randint(0, w - span + 1, (16,), generator=gen)
        ensure_padding(data, g.halo)
        y_hat = g.forward_nhwc(x_regions(data, by * s, bx * s, span * s, g.halo))[..., :B].permute(0, 3, 1, 2)
        down = op.down(y_hat)[:, :, m:m + tile, m:m + tile]
        target = torch.stack([data.lr[:, y + m:y + m + tile, x + m:x + m + tile] for y, x in zip(by, bx)])
        ref = torch.mean((down - target) ** 2)
    assert float(lc1) == pytest.approx(float(ref), rel=1e-5)
    assert float(lc1) > 1e-4   # an untrained generator: the test compares a real error


def test_focused_lsgan_drops_correctly_classified_patches():
    fake = torch.tensor([1.5, 0.5, -2.0], requires_grad=True)
    # Eq. 12: d >= 1 is dropped; mean over (0.5-1)^2 and (-2-1)^2
    assert generator_adversarial_loss(fake).item() == pytest.approx((0.25 + 9.0) / 2)
    assert generator_adversarial_loss(fake, "standard").item() == pytest.approx((0.25 + 0.25 + 9.0) / 3)
    # Eq. 13: fakes below -1 and reals above 1 are dropped
    d_fake, d_real = torch.tensor([-1.5, 0.0, 2.0]), torch.tensor([1.2, 0.0])
    assert discriminator_loss(d_real, d_fake).item() == pytest.approx((1.0 + 9.0) / 2 + 1.0)
    # nothing misclassified: the term is exactly 0 and drives no update
    ok = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = focused_lsgan_loss(ok, real=True)
    loss.backward()
    assert loss.item() == 0.0 and ok.grad.abs().sum().item() == 0.0


def test_pseudo_real_patches_use_the_band_of_largest_abs_correlation_inverted_when_negative():
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 40, 40)).astype(np.float32)
    y_up = np.stack([0.5 * rgb[2] + 0.05 * rng.random((40, 40)),       # follows blue
                     1 - rgb[0] + 0.3 * rgb[1],                           # anti-red (|r| largest)
                     rgb[0] + 0.01 * rng.random((40, 40))]).astype(np.float32)
    band, sign = most_correlated_band(y_up, rgb)
    assert band.tolist() == [2, 0, 0] and sign.tolist() == [1.0, -1.0, 1.0]
    # constant images make each patch's value say which element and band it mixed
    y_c = torch.tensor([1.0, 2.0, 3.0])[:, None, None].expand(3, 40, 40).contiguous()
    z_c = torch.tensor([0.1, 0.2, 0.3])[:, None, None].expand(3, 40, 40).contiguous()
    best, signs = torch.tensor([2, 1, 0]), torch.tensor([1.0, -1.0, 1.0])
    gen = torch.Generator().manual_seed(1)
    betas = []
    for _ in range(50):
        patches, beta, el = pseudo_real_patches(y_c, z_c, best, 8, 16, gen, band_sign=signs)
        assert patches.shape == (8, 1, 16, 16)
        z = 0.1 * (best[el] + 1.0)
        z = torch.where(signs[el] < 0, 1 - z, z)                        # Eq. 14 with 1 − Z
        expected = beta * (el + 1.0) + (1 - beta) * z
        np.testing.assert_allclose(patches[:, 0, 0, 0].numpy(), expected.numpy(), rtol=1e-5)
        betas.append(beta)
    assert 0.0 <= min(betas) and max(betas) <= 0.9 and max(betas) - min(betas) > 0.5


@pytest.mark.parametrize("kernel", [1, 5])
def test_projection_makes_the_output_and_random_phase_patches_consistent(kernel):
    prep = _prepared(48, 3)
    lr = prep.maps_lr.values
    g = Generator(3, kernel=kernel)
    out = super_resolve(g, lr, prep.rgb.values, prep.operator, project=True, batch=500)
    assert out.shape == (3, 48, 48)
    np.testing.assert_allclose(prep.operator.down(out), lr, atol=1e-6)
    raw = super_resolve(g, lr, prep.rgb.values, prep.operator, project=False)
    assert np.abs(prep.operator.down(raw) - lr).max() > 1e-2
    # generated patches: random HR offsets (not only multiples of s), cut from Proj(g(X))
    data = prepare_data(lr, prep.rgb.values, prep.operator, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    with torch.no_grad():
        patches = generated_patches(g, data, 12, 16, gen, project=True)[:, 0].numpy()
    gen.set_state(state)  # replay the same draws to find where each patch came from
    el = torch.randint(0, 3, (12,), generator=gen)
    y0 = torch.randint(0, 48 - 16 + 1, (12,), generator=gen)
    x0 = torch.randint(0, 48 - 16 + 1, (12,), generator=gen)
    flip = torch.rand(12, 2, generator=gen) < 0.5
    assert ((y0 % 4) != 0).any() and ((x0 % 4) != 0).any()
    for k in range(12):
        ref = out[el[k], y0[k]:y0[k] + 16, x0[k]:x0[k] + 16]
        ref = ref[::-1] if flip[k, 0] else ref
        ref = ref[:, ::-1] if flip[k, 1] else ref
        np.testing.assert_allclose(patches[k], ref, atol=1e-5)  # the full-image projection


def test_short_training_beats_bicubic(tmp_path):
    prep = _prepared(64, 4, seed=3)
    bicubic = mb.upsample(prep.maps_lr.values, 4, "bicubic")
    out = proposed.run_proposed(prep.inputs(seed=0, workdir=tmp_path),
                                **{**TINY, "pretrain_iterations": 200, "adversarial_iterations": 10})
    gain = _psnr(out.values, prep.truth) - _psnr(bicubic, prep.truth)
    assert gain > 2.0, gain  # ~5 dB measured with 300 iterations
    # the trained generator is kept, loads with weights_only=True, and reproduces the output
    state = torch.load(tmp_path / "generator.pt", weights_only=True)
    assert "D" in state and "input_scale" in state
    g, meta = load_generator(tmp_path)
    assert not g.training and meta["elements"] == prep.elements and meta["scale"] == 4
    assert meta["operator"] == prep.operator.to_dict() and meta["projection"] is True
    assert meta["training"]["alpha2_calibrated"] and meta["training"]["alpha2"] > 0
    again = super_resolve(g, prep.maps_lr.values, prep.rgb.values, prep.operator)
    np.testing.assert_allclose(again, out.values, atol=1e-6)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_interrupted_training_resumes_from_its_checkpoint_with_its_calibrated_alpha2(tmp_path):
    prep = _prepared(64, 3, seed=1)
    params = {**TINY, "checkpoint_iterations": 25}
    reference = proposed.run_proposed(prep.inputs(seed=5), **params).values

    def interrupt(done, total, message=""):
        if done >= 75:  # after the calibration (iteration 60 + 5 of warm-up)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        proposed.run_proposed(prep.inputs(seed=5, workdir=tmp_path, progress=interrupt), **params)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 75 and ckpt["calibrated_alpha2"] > 0
    seen = []
    resumed = proposed.run_proposed(
        prep.inputs(seed=5, workdir=tmp_path, progress=lambda d, t, m="": seen.append((d, m))), **params).values
    assert seen[0][0] == 80 and seen[-1][0] == 80  # continued after iteration 75, did not restart
    assert not any("calibrated" in m for _, m in seen)  # α2 came from the checkpoint
    np.testing.assert_allclose(resumed, reference, atol=1e-5)
    # a finished run is reused, not retrained
    seen.clear()
    proposed.run_proposed(prep.inputs(seed=5, workdir=tmp_path, progress=lambda d, t, m="": seen.append(d)),
                          **params)
    assert seen == [1]


def _train_maps(prep, params, seed=0):
    data = prepare_data(prep.maps_lr.values, prep.rgb.values, prep.operator, torch.device("cpu"))
    g, summary = train_generator(data, {**proposed.DEFAULTS, **params}, seed=seed)
    return super_resolve(g, prep.maps_lr.values, prep.rgb.values, prep.operator), summary


def test_calibrated_adversarial_stage_acts():
    """α2 = 0 and the standard LSGAN both change the maps; with the paper's α2 they barely do."""
    prep = _prepared(48, 3, seed=2)
    base = {**TINY, "pretrain_iterations": 40, "adversarial_iterations": 30, "disc_warmup": 10,
            "lr_discriminator": 1e-2, "adv_calibration": 0.3}
    cal, summary = _train_maps(prep, base)
    zero, _ = _train_maps(prep, {**base, "adv_calibration": None, "alpha2": 0.0})
    standard, _ = _train_maps(prep, {**base, "adv_loss": "standard"})
    paper, _ = _train_maps(prep, {**base, "adv_calibration": None, "alpha2": 0.5e-6})
    assert summary["alpha2_calibrated"] and summary["alpha2"] > 1e-4
    c = summary["calibration"]
    assert c["alpha2"] * c["grad_ladv"] == pytest.approx(0.3 * c["grad_lc1"], rel=1e-6)
    # measured: 1.2e-3, 8e-5 and 4e-8 RMS (normalised units)
    assert _rms(cal, zero) > 3e-4          # the adversarial term moves the maps
    assert _rms(cal, standard) > 1e-5      # the focused mask drops patches: not the standard loss
    assert _rms(paper, zero) < 1e-3 * _rms(cal, zero)   # the paper's α2: inert, as documented


def test_method_registration_presets_and_errors(tmp_path):
    m = mb.get_method("proposed")
    paper = m.params("paper")
    assert (paper["alpha1"], paper["alpha2"], paper["batch_size"], paper["patch_size"]) == (0.003, 0.5e-6, 32, 32)
    assert (paper["lr_generator"], paper["lr_discriminator"]) == (3e-4, 3e-6)
    assert (paper["pretrain_iterations"], paper["adversarial_iterations"]) == (100_000, 500_000)
    assert (paper["atoms"], paper["layers"], paper["kernel"]) == (64, 5, 1)
    assert paper["adv_calibration"] is None and paper["disc_warmup"] == 0
    assert m.params("fast") == m.params(None) == dict(proposed.DEFAULTS)  # DEFAULTS == fast
    assert m.params("fast")["adv_calibration"] is not None
    assert m.export is not None
    prep = _prepared(32, 2)
    bad = [({"adv_loss": "wgan"}, "adv_loss"),
           ({"kernel": 2}, "kernel must be an odd integer ≥ 1.*found 2"),
           ({"kernel": 0}, "kernel must be an odd integer ≥ 1.*found 0"),
           ({"kernel": -3}, "kernel must be an odd integer"),
           ({"context": "rgb"}, "context must be one of photo, all"),
           ({"adv_calibration": 0.0}, r"adv_calibration must be a fraction in \(0, 1\).*found 0.0"),
           ({"adv_calibration": 1.0}, r"adv_calibration must be a fraction in \(0, 1\).*found 1.0"),
           ({"adv_calibration": -0.2}, "adv_calibration must be a fraction"),
           ({"disc_warmup": 20, "adversarial_iterations": 20}, "never applied.*disc_warmup=20.*"
                                                               "adversarial_iterations=20"),
           ({"adversarial_iterations": 0}, "never applied"),
           ({"patch_size": 64}, "patch_size 64")]
    for params, pattern in bad:
        with pytest.raises(mb.ConfigError, match=pattern):
            proposed.run_proposed(prep.inputs(), **{**TINY, **params})
    # without the adversarial term the warm-up needs no joint iteration
    proposed.check_params({**proposed.DEFAULTS, "use_adv": False, "adversarial_iterations": 0})
    # the CLI turns each into one line and exit 2
    from click.testing import CliRunner

    from maxrf_bench.cli import _install_plugin_commands, cli

    _install_plugin_commands()
    path = tmp_path / "toy.zarr"
    mb.save_scan(mb.make_scan(**toy_scene(32, 2, 0), title="toy"), path)
    for setting in ("proposed.kernel=4", "proposed.adv_calibration=1.5", "proposed.disc_warmup=999999"):
        res = CliRunner().invoke(cli, ["run", "-m", "proposed", "-d", str(path), "-o",
                                       str(tmp_path / "out"), "--set", setting])
        assert res.exit_code == 2, (setting, res.output)
        assert "Traceback" not in res.output and setting.split("=")[0].split(".")[1] in res.output


def test_ablate_runs_every_configuration_per_seed_and_writes_the_spread(tmp_path, monkeypatch):
    scene = toy_scene(48, 3, 2)
    clean = np.asarray(scene["maps"], np.float64) * 0.9 + 1.0    # a noise-free truth that differs
    scan = mb.make_scan(**scene, maps_clean=clean, title="toy")
    path = tmp_path / "toy.zarr"
    mb.save_scan(scan, path)
    monkeypatch.setitem(proposed.PRESETS, "tiny", {**TINY, "pretrain_iterations": 10, "atoms": 16,
                                                   "adversarial_iterations": 4, "disc_warmup": 2})
    rows = ablation.run_ablation(str(path), tmp_path / "abl", preset="tiny", seeds=[0, 1])
    with open(tmp_path / "abl" / "ablation.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["table", "configuration", "seed", "psnr", "rmse", "psnr_clean", "rmse_clean"]
    assert all(r["psnr_clean"] and float(r["psnr_clean"]) != float(r["psnr"]) for r in got)
    names = ["Lc1+Lc2+Ladv", "Lc1+Ladv", "Lc1", "Lc1+Lc2", "Lc2+Ladv",
             "Full Model", "Standard LSGAN Loss", "Linear Synthesis Layer", "No Projection Module",
             "Use Leaky ReLU"]
    assert [r["configuration"] for r in got] == names * 2
    assert [int(r["seed"]) for r in got] == [0] * 10 + [1] * 10
    by = {(r["configuration"], int(r["seed"])): float(r["psnr"]) for r in got}
    assert by["Lc1+Lc2+Ladv", 0] == by["Full Model", 0]          # one run serves both tables
    assert by["No Projection Module", 0] != by["Full Model", 0]
    assert by["Full Model", 0] != by["Full Model", 1]            # the seeds are different runs
    summary = {r["configuration"]: r for r in ablation.summarise(rows)}
    full = [by["Full Model", 0], by["Full Model", 1]]
    assert summary["Full Model"]["psnr"] == pytest.approx(np.mean(full))
    assert summary["Full Model"]["psnr_std"] == pytest.approx(np.std(full, ddof=1))
    text = ablation.format_tables(rows)
    assert "TABLE II" in text and "Use Leaky ReLU" in text and "mean ± std over 2 seeds" in text
    assert f"{np.mean(full):.2f} ± {np.std(full, ddof=1):.2f}" in text
    full_clean = [float(r["psnr_clean"]) for r in got if r["configuration"] == "Full Model"]
    assert "PSNR clean truth" in text and f"{np.mean(full_clean):.2f} ± {np.std(full_clean, ddof=1):.2f}" in text
    assert len(list((tmp_path / "abl" / "runs").iterdir())) == 9
    # a rerun reuses every finished run (nothing retrained) and gives the same table
    again = ablation.run_ablation(str(path), tmp_path / "abl", preset="tiny", seeds=[0, 1])
    assert again == rows


def test_recorrupted_training_ours_trains_on_recorrupted_targets_and_restores_the_data():
    """``recorrupt`` (ours): the target and the network input change every iteration by
    ``−z/α`` and ``+α·z`` (seeded), the data are restored after training, and the maps differ
    from plain training; bad values are refused."""
    from maxrf_bench_plugins.proposed.train import Recorrupter, recorrupt_sigma

    prep = _prepared(48, 3, seed=4)
    data = prepare_data(prep.maps_lr.values, prep.rgb.values, prep.operator, torch.device("cpu"))
    lr0, x0 = data.lr.clone(), data.x_hw.clone()
    sigma = recorrupt_sigma(prep.maps_lr.values)
    assert sigma.shape == (3, 1, 1) and (sigma > 0).all()
    rec = Recorrupter(data, 0.5, sigma, seed=1)
    rec.draw(7)
    z = (lr0 - data.lr) * 0.5                                   # target = Y − z/α
    assert float(z.std()) == pytest.approx(float(np.sqrt(np.mean(sigma ** 2))), rel=0.3)
    b = lr0.shape[0]
    np.testing.assert_allclose(data.x_hw[..., b:].numpy(), x0[..., b:].numpy())  # photograph untouched
    assert float((data.x_hw[..., :b] - x0[..., :b]).abs().max()) > 0            # LR channels moved
    lr7 = data.lr.clone()
    rec.draw(7)
    assert torch.equal(data.lr, lr7)                            # seeded by (seed, iteration)
    rec.restore()
    assert torch.equal(data.lr, lr0) and torch.equal(data.x_hw, x0)
    plain, _ = _train_maps(prep, {**TINY, "use_adv": False, "adversarial_iterations": 0, "kernel": 3})
    r2r, summary = _train_maps(prep, {**TINY, "use_adv": False, "adversarial_iterations": 0, "kernel": 3,
                                      "recorrupt": 1.0})
    assert len(summary["recorrupt_sigma"]) == 3
    assert _rms(plain, r2r) > 1e-4
    with pytest.raises(mb.ConfigError, match="recorrupt"):
        proposed.check_params({**proposed.DEFAULTS, "recorrupt": -1.0})
    with pytest.raises(mb.ConfigError, match="recorrupt"):
        proposed.check_params({**proposed.DEFAULTS, "recorrupt": 1.0, "align": 4})


def test_recorrupt_with_the_counts_variance_ours_uses_the_per_pixel_poisson_std():
    """``recorrupt_noise = "counts"`` (ours): the recorruption's std is the square root of the
    host's per-pixel LR noise variance — pixels of zero variance are never moved, the others by
    a draw of their own std — and "blind" (or no variance from the host) falls back to one
    wavelet-MAD std per element."""
    from maxrf_bench_plugins.proposed.method import recorrupt_variance
    from maxrf_bench_plugins.proposed.train import Recorrupter, recorrupt_sigma

    prep = _prepared(48, 3, seed=4)
    lr = prep.maps_lr.values
    var = np.zeros(lr.shape, np.float64)
    var[:, :, : lr.shape[2] // 2] = 0.04                     # std 0.2 on the left half, 0 on the right
    sigma = recorrupt_sigma(lr, var)
    assert sigma.shape == lr.shape and float(sigma.max()) == pytest.approx(0.2)
    data = prepare_data(lr, prep.rgb.values, prep.operator, torch.device("cpu"))
    lr0 = data.lr.clone()
    rec = Recorrupter(data, 1.0, sigma, seed=2)
    rec.draw(3)
    z = (lr0 - data.lr).numpy()
    half = lr.shape[2] // 2
    assert np.abs(z[:, :, half:]).max() == 0.0
    assert z[:, :, :half].std() == pytest.approx(0.2, rel=0.1)
    inputs = prep.inputs(noise_var=var.astype(np.float32))
    assert recorrupt_variance({"recorrupt_noise": "counts"}, inputs) is not None
    assert recorrupt_variance({"recorrupt_noise": "blind"}, inputs) is None
    assert recorrupt_variance({"recorrupt_noise": "counts"}, prep.inputs()) is None
    with pytest.raises(mb.ConfigError, match="recorrupt_noise"):
        proposed.check_params({**proposed.DEFAULTS, "recorrupt_noise": "gauss"})
    with pytest.raises(mb.ConfigError, match="recorrupt"):
        proposed.check_params({**proposed.DEFAULTS, "recorrupt": 1.0, "warp_augment": 1.0})


def test_recorrupt_share_ours_recorrupts_only_the_noise_dominated_elements():
    """``recorrupt_share`` (ours): the noise share ρ of an LR map, from the map and its noise std
    alone, is ≈ 1 for pure noise and ≈ 0 for a smooth map; elements below the share get z = 0,
    so with every element below it the method's maps are those of plain training."""
    from maxrf_bench_plugins.proposed.train import noise_share, select_recorruption

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    maps = np.stack([0.5 + 0.05 * rng.standard_normal((64, 64)),   # pure noise, σ = 0.05
                     np.sin(6 * xx) * np.cos(4 * yy)])                # smooth, no noise
    sigma = np.array([0.05, 0.001], np.float32)[:, None, None]
    rho = noise_share(maps, sigma)
    assert rho[0] == pytest.approx(1.0, abs=0.05) and rho[1] < 0.01
    sel = select_recorruption(maps, sigma, 0.3)
    assert float(sel[0, 0, 0]) == pytest.approx(0.05) and float(sel[1, 0, 0]) == 0.0
    np.testing.assert_array_equal(select_recorruption(maps, sigma, 0.0), sigma)
    prep = _prepared(48, 3, seed=4)
    params = {**TINY, "use_adv": False, "adversarial_iterations": 0, "kernel": 3}
    plain = proposed.run_proposed(prep.inputs(seed=1), **params).values
    none_selected = proposed.run_proposed(prep.inputs(seed=1), **{**params, "recorrupt": 0.5,
                                                                  "recorrupt_share": 1.0}).values
    np.testing.assert_allclose(none_selected, plain, atol=1e-6)
    every = proposed.run_proposed(prep.inputs(seed=1), **{**params, "recorrupt": 0.5}).values
    assert _rms(every, plain) > 1e-4
    for bad in (-0.1, 1.5, True):
        with pytest.raises(mb.ConfigError, match="recorrupt_share"):
            proposed.check_params({**proposed.DEFAULTS, "recorrupt_share": bad})


def test_recorrupt_min_lr_pixels_ours_trains_small_grids_plainly(tmp_path):
    """``recorrupt_min_lr_pixels`` (ours; 1536 in ``ctx-quickscan``): on an LR grid with fewer
    pixels the run trains and infers without recorruption, bit for bit the plain maps, records
    why, and the export treats the generator as a plain one; at the threshold it recorrupts."""
    from maxrf_bench_plugins.proposed.method import RECORRUPT_RECORD

    assert proposed.PRESETS["ctx-quickscan"]["recorrupt_min_lr_pixels"] == 1536
    prep = _prepared(48, 3, seed=4)  # LR 12 × 12 = 144 pixels
    params = {**TINY, "use_adv": False, "adversarial_iterations": 0}
    plain = proposed.run_proposed(prep.inputs(seed=1), **params).values
    work = tmp_path / "w"
    small = proposed.run_proposed(prep.inputs(seed=1, workdir=work), **{
        **params, "recorrupt": 0.5, "recorrupt_min_lr_pixels": 145}).values
    np.testing.assert_array_equal(small, plain)
    record = json.loads((work / RECORRUPT_RECORD).read_text())
    assert record["applied"] is False and "144 pixels" in record["reason"]
    at = proposed.run_proposed(prep.inputs(seed=1), **{
        **params, "recorrupt": 0.5, "recorrupt_min_lr_pixels": 144}).values
    assert _rms(at, plain) > 1e-4
    from maxrf_bench_plugins.proposed.onnx_export import recorrupt_record

    assert recorrupt_record({"recorrupt": 0.5}, work, None, 3) is None
    for bad in (-1, 2.5, True, "many"):
        with pytest.raises(mb.ConfigError, match="recorrupt_min_lr_pixels"):
            proposed.check_params({**proposed.DEFAULTS, "recorrupt_min_lr_pixels": bad})
