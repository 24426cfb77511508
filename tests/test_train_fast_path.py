"""The proposed generator's training fast path (issue 26 item 3) computes what the plain
layer-by-layer code computes: the same outputs and gradients per step, and the same
training trajectory on a tiny scene, up to float rounding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import maxrf_bench as mb
from maxrf_bench_plugins.proposed import DEFAULTS
from maxrf_bench_plugins.proposed.model import Generator
from maxrf_bench_plugins.proposed.train import gather_regions, prepare_data, train_generator

from conftest import toy_scene


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _plain_path(monkeypatch):
    """Force the layer-by-layer code (autograd on every operation), as before the fast path,
    and Adam's loop over parameters instead of the fused kernel."""
    monkeypatch.setattr(Generator, "_fused_training", lambda self: False)
    adam = torch.optim.Adam
    monkeypatch.setattr(torch.optim, "Adam", lambda *a, fused=None, **k: adam(*a, **k))


def _outputs_and_grads(g, x, nhwc):
    g.zero_grad(set_to_none=True)
    out = g.forward_nhwc(x) if nhwc else g(x)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in g.named_parameters()}
    return out.detach(), grads, (x.grad.clone() if x.requires_grad else None)


@pytest.mark.parametrize("config", [
    {}, {"activation": "leaky_relu"}, {"synthesis": "linear"},
    {"kernel": 5, "context": "photo"},
    {"kernel": 3, "context": "photo", "activation": "leaky_relu", "synthesis": "linear"},
])
@pytest.mark.parametrize("input_grad", [False, True])   # True: the learned alignment's case
def test_fast_path_has_the_plain_outputs_and_gradients(config, input_grad, monkeypatch):
    torch.manual_seed(0)
    g = Generator(5, 3, n_atoms=16, n_layers=4, **config)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.2 * torch.randn_like(p))      # every tap and bias away from its init
        g.input_offset.uniform_(0.2, 0.4)
        g.input_scale.uniform_(0.3, 0.6)
    nhwc = g.kernel > 1
    x = torch.rand(6, 9, 11, 8) if nhwc else torch.rand(300, 8)
    x.requires_grad_(input_grad)
    assert g._fused_training()
    fast = _outputs_and_grads(g, x, nhwc)
    with torch.no_grad():                            # the warm-up's patches: same path, no graph
        torch.testing.assert_close(g.forward_nhwc(x) if nhwc else g(x), fast[0], rtol=0, atol=0)
    if input_grad:
        x.grad = None
    with monkeypatch.context() as m:
        _plain_path(m)
        plain = _outputs_and_grads(g, x, nhwc)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    assert set(fast[1]) == set(plain[1])
    for name in plain[1]:
        scale = float(plain[1][name].abs().max())
        assert scale > 0, name                       # every parameter gets a gradient
        assert float((fast[1][name] - plain[1][name]).abs().max()) <= 1e-4 * scale, name
    if input_grad:
        torch.testing.assert_close(fast[2], plain[2], rtol=1e-4, atol=1e-5 * float(plain[2].abs().max()))


def test_fast_path_is_off_for_inference_tracing_and_full_context():
    g = Generator(2, 3, n_atoms=4, n_layers=2, kernel=3, context="all")
    assert g._fused_training()                       # training mode
    g.eval()
    assert not g._fused_training()
    # context="all" (k×k synthesis) keeps the convolutions: the same values as forward_image
    g.train()
    x = torch.rand(2, 9, 9, 5)
    torch.testing.assert_close(g.forward_nhwc(x),
                               g.forward_image(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


def test_flat_region_gather_equals_advanced_indexing():
    img = torch.rand(20, 17, 5)
    y0, x0 = torch.tensor([0, 3, 12]), torch.tensor([9, 0, 5])
    d = torch.arange(6)
    ref = img[(y0[:, None] + d)[:, :, None], (x0[:, None] + d)[:, None, :]]
    assert torch.equal(gather_regions(img, y0, x0, 6), ref)
    # a non-contiguous image (the learned alignment's padded input) takes the indexing path
    torch.testing.assert_close(gather_regions(img.transpose(0, 1), x0, y0, 6),
                               img.transpose(0, 1)[(x0[:, None] + d)[:, :, None], (y0[:, None] + d)[:, None, :]])


@pytest.mark.parametrize("kernel", [1, 5])
def test_training_trajectory_matches_the_plain_code(kernel, monkeypatch):
    """Both stages (pre-training, discriminator warm-up, calibration, joint steps) on a tiny
    scene: the fast path's losses at every monitored step and its final weights are those of
    the plain code to float-rounding growth."""
    scan = mb.make_scan(**toy_scene(48, 3, 5), title="toy")
    prep = mb.prepare_scan(scan, name="toy", scale=4)
    params = {**DEFAULTS, "pretrain_iterations": 40, "adversarial_iterations": 16, "disc_warmup": 4,
              "batch_blocks": 32, "adv_batch_blocks": 32, "batch_size": 4, "patch_size": 16,
              "disc_width": 8, "threads": 1, "checkpoint_seconds": 0.0, "kernel": kernel,
              "region_blocks": 2 if kernel > 1 else 0}

    def run():
        data = prepare_data(prep.maps_lr.values, prep.rgb.values, prep.operator, torch.device("cpu"))
        snaps = []
        g, summary = train_generator(data, params, seed=3, monitor_every=8,
                                     monitor=lambda i, g: snaps.append(
                                         torch.cat([p.detach().flatten() for p in g.parameters()])))
        return torch.stack(snaps), summary

    fast_snaps, fast = run()
    with monkeypatch.context() as m:
        _plain_path(m)
        plain_snaps, plain = run()
    assert fast_snaps.shape == plain_snaps.shape and len(fast_snaps) == 7
    drift = (fast_snaps - plain_snaps).abs().max(1).values / plain_snaps.abs().max(1).values
    assert 0 < float(drift.max()) < 1e-4, drift          # > 0: the two paths really ran
    print("max relative weight drift", float(drift.max()))
    assert fast["alpha2"] > 0 and fast["alpha2"] == pytest.approx(plain["alpha2"], rel=1e-3)
    for key, value in plain["final_losses"].items():
        assert fast["final_losses"][key] == pytest.approx(value, rel=1e-3, abs=1e-9), key
