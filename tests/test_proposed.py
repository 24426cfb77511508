"""The proposed method: Eqs. 7-14 as code, training, checkpoints, ablations."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import maxrf_bench as mb
from maxrf_bench_plugins import proposed
from maxrf_bench_plugins.proposed import ablation, super_resolve
from maxrf_bench_plugins.proposed.augment import most_correlated_band, pseudo_real_patches
from maxrf_bench_plugins.proposed.losses import (discriminator_loss, focused_lsgan_loss,
                                                 generator_adversarial_loss)
from maxrf_bench_plugins.proposed.model import Generator, load_generator
from maxrf_bench_plugins.proposed.train import (forward_conv1x1, generated_patches, prepare_data)

from conftest import toy_scene

TINY = dict(pretrain_iterations=60, adversarial_iterations=20, batch_blocks=64, adv_batch_blocks=32,
            batch_size=4, patch_size=16, disc_width=8, threads=1, checkpoint_seconds=0.0)


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


def _prepared(size=64, elements=4, seed=0):
    scan = mb.make_scan(**toy_scene(size, elements, seed), title="toy")
    return mb.prepare_scan(scan, name="toy", scale=4)


def _psnr(sr, truth):
    return -20 * np.log10(np.sqrt(np.mean((np.asarray(sr, np.float64) - truth) ** 2)))


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
    assert Generator(2, 1, 2, 2, activation="leaky_relu")(torch.tensor([[-50.0, 0, 0]])).min() < 0


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


def test_pseudo_real_patches_use_the_most_correlated_band_and_beta_in_range():
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 40, 40)).astype(np.float32)
    y_up = np.stack([0.5 * rgb[2] + 0.05 * rng.random((40, 40)),       # follows blue
                     1 - rgb[0] + 0.3 * rgb[1],                           # anti-red, a bit green
                     rgb[0] + 0.01 * rng.random((40, 40))]).astype(np.float32)
    assert most_correlated_band(y_up, rgb).tolist() == [2, 1, 0]
    # constant images make each patch's value say which element and band it mixed
    y_c = torch.tensor([1.0, 2.0, 3.0])[:, None, None].expand(3, 40, 40).contiguous()
    z_c = torch.tensor([10.0, 20.0, 30.0])[:, None, None].expand(3, 40, 40).contiguous()
    best = torch.tensor([2, 1, 0])
    gen = torch.Generator().manual_seed(1)
    betas = []
    for _ in range(50):
        patches, beta, el = pseudo_real_patches(y_c, z_c, best, 8, 16, gen)
        assert patches.shape == (8, 1, 16, 16)
        expected = beta * (el + 1.0) + (1 - beta) * 10.0 * (best[el] + 1.0)   # Eq. 14
        np.testing.assert_allclose(patches[:, 0, 0, 0].numpy(), expected.numpy(), rtol=1e-5)
        betas.append(beta)
    assert 0.0 <= min(betas) and max(betas) <= 0.9 and max(betas) - min(betas) > 0.5


def test_projection_makes_the_output_consistent_with_the_lr_maps():
    prep = _prepared(48, 3)
    lr = prep.maps_lr.values
    g = Generator(3)
    out = super_resolve(g, lr, prep.rgb.values, prep.operator, project=True, batch=500)
    assert out.shape == (3, 48, 48)
    np.testing.assert_allclose(prep.operator.down(out), lr, atol=1e-6)
    raw = super_resolve(g, lr, prep.rgb.values, prep.operator, project=False)
    assert np.abs(prep.operator.down(raw) - lr).max() > 1e-2
    # the block-aligned adversarial patches are projected exactly too
    data = prepare_data(lr, prep.rgb.values, prep.operator, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    patches = generated_patches(g, data, 5, 16, gen, project=True)
    gen.set_state(state)  # replay the same draws to find where each patch came from
    el = torch.randint(0, 3, (5,), generator=gen)
    by = torch.randint(0, 12 - 4 + 1, (5,), generator=gen)
    bx = torch.randint(0, 12 - 4 + 1, (5,), generator=gen)
    for k in range(5):
        block_means = sorted(prep.operator.down(patches[k, 0].detach().numpy()).ravel().tolist())
        target = sorted(lr[el[k], by[k]:by[k] + 4, bx[k]:bx[k] + 4].ravel().tolist())
        np.testing.assert_allclose(block_means, target, atol=1e-6)  # flips permute blocks only


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
    again = super_resolve(g, prep.maps_lr.values, prep.rgb.values, prep.operator)
    np.testing.assert_allclose(again, out.values, atol=1e-6)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    prep = _prepared(64, 3, seed=1)
    params = {**TINY, "checkpoint_iterations": 25}
    reference = proposed.run_proposed(prep.inputs(seed=5), **params).values

    def interrupt(done, total, message=""):
        if done >= 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        proposed.run_proposed(prep.inputs(seed=5, workdir=tmp_path, progress=interrupt), **params)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 50
    seen = []
    resumed = proposed.run_proposed(
        prep.inputs(seed=5, workdir=tmp_path, progress=lambda d, t, m="": seen.append(d)), **params).values
    assert seen[0] == 60 and seen[-1] == 80  # continued after iteration 50, did not restart
    np.testing.assert_allclose(resumed, reference, atol=1e-5)
    # a finished run is reused, not retrained
    seen.clear()
    proposed.run_proposed(prep.inputs(seed=5, workdir=tmp_path, progress=lambda d, t, m="": seen.append(d)),
                          **params)
    assert seen == [1]


def test_method_registration_presets_and_errors():
    m = mb.get_method("proposed")
    paper = m.params("paper")
    assert (paper["alpha1"], paper["alpha2"], paper["batch_size"], paper["patch_size"]) == (0.003, 0.5e-6, 32, 32)
    assert (paper["lr_generator"], paper["lr_discriminator"]) == (3e-4, 3e-6)
    assert (paper["pretrain_iterations"], paper["adversarial_iterations"]) == (100_000, 500_000)
    assert (paper["atoms"], paper["layers"]) == (64, 5)
    assert m.export is not None
    prep = _prepared(32, 2)
    with pytest.raises(mb.ConfigError, match="adv_loss"):
        proposed.run_proposed(prep.inputs(), adv_loss="wgan")
    with pytest.raises(mb.ConfigError, match="patch_size 64"):
        proposed.run_proposed(prep.inputs(), **{**TINY, "patch_size": 64})


def test_ablate_runs_every_configuration_and_writes_the_tables(tmp_path, monkeypatch):
    scan = mb.make_scan(**toy_scene(48, 3, 2), title="toy")
    path = tmp_path / "toy.zarr"
    mb.save_scan(scan, path)
    monkeypatch.setitem(proposed.PRESETS, "tiny", {**TINY, "pretrain_iterations": 20,
                                                   "adversarial_iterations": 3})
    rows = ablation.run_ablation(str(path), tmp_path / "abl", preset="tiny")
    with open(tmp_path / "abl" / "ablation.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["configuration"] for r in got] == [
        "Lc1+Lc2+Ladv", "Lc1+Ladv", "Lc1", "Lc1+Lc2", "Lc2+Ladv",
        "Full Model", "Standard LSGAN Loss", "Linear Synthesis Layer", "No Projection Module",
        "Use Leaky ReLU"]
    assert {r["table"] for r in got} == {"II", "III"}
    by = {r["configuration"]: float(r["psnr"]) for r in got}
    assert by["Lc1+Lc2+Ladv"] == by["Full Model"]          # one run serves both tables
    assert by["No Projection Module"] != by["Full Model"]
    text = ablation.format_tables(rows)
    assert "TABLE II" in text and "Use Leaky ReLU" in text
    assert len(list((tmp_path / "abl" / "runs").iterdir())) == 9
