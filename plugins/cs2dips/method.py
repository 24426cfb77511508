"""Fitting CS2DIPs to one scan: data preparation, the training loop, the best iterate.

Kept apart from the plugin module so that torch is imported only when the method runs.
The loop follows ``demo.py`` of ``Ambitionfy/CS2DIPs`` (read, not copied): trainable noise
inputs perturbed by fresh Gaussian noise at every iteration, Adam on the network and the
noise inputs together, the sum of two Huber losses (photograph and LR maps; ours: the
photograph term may be weighted, ``rgb_weight``, 1 as published), and the iterate with
the lowest loss returned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

import maxrf_bench as mb

from .._fusion import FusionData, fusion_data
from .network import CS2DIP, bottom_shape, usable_levels


resolve_device = mb.torch_device


POSITIVE_INTS = ("iterations", "rank", "channels", "skip_channels", "spatial_noise_channels",
                 "spectral_noise_channels", "spatial_levels", "spectral_levels")
POSITIVE_FLOATS = ("lr", "huber_delta", "noise_scale")
NON_NEGATIVE_FLOATS = ("noise_std", "rgb_weight", "max_megapixel_iterations")


def iteration_count(p: dict, hr_shape: tuple[int, int]) -> int:
    """``iterations``, capped at ``max_megapixel_iterations / (H·W / 10⁶)`` when that cap is
    set (> 0): a work budget that leaves small scans their full schedule and shortens it
    on large ones, the same for every run of a given size (never a wall-clock rule)."""
    n = int(p["iterations"])
    cap = float(p["max_megapixel_iterations"])
    if cap > 0:
        n = min(n, max(1, int(cap / (hr_shape[0] * hr_shape[1] / 1e6))))
    return n


def check_params(p: dict) -> None:
    for key in POSITIVE_INTS:
        if int(p[key]) != p[key] or int(p[key]) < 1:
            raise mb.ConfigError(f"cs2dips.{key} must be a positive integer, found {p[key]!r}")
    for key in POSITIVE_FLOATS:
        if not (math.isfinite(float(p[key])) and float(p[key]) > 0):
            raise mb.ConfigError(f"cs2dips.{key} must be a positive number, found {p[key]!r}")
    for key in NON_NEGATIVE_FLOATS:
        if not (math.isfinite(float(p[key])) and float(p[key]) >= 0):
            raise mb.ConfigError(f"cs2dips.{key} must be a number ≥ 0, found {p[key]!r}")
    if int(p["threads"]) != p["threads"] or int(p["threads"]) < 0:
        raise mb.ConfigError(f"cs2dips.threads must be 0 (the threads the cell runs with) or a positive integer, "
                             f"found {p['threads']!r}")


@dataclass
class Fit:
    """Result of :func:`fit`: the best iterate ``z`` ``(B, H, W)`` float32 (normalised units),
    its data loss, the iteration it came from (0-based) and the loss of every iteration."""

    z: np.ndarray
    loss: float
    iteration: int
    losses: list[float] = field(default_factory=list)


class Problem:
    """The two observations and their degradations, as torch tensors on ``device``.

    ``msi`` ``(bands, H, W)``: the photograph minus the estimated offset (clipped at 0);
    ``response`` ``(bands, B)``: the NNLS response ``R`` (``msi ≈ R · Z``); ``maps_lr``
    ``(B, h, w)``; ``down``: the host operator ``U``.
    """

    def __init__(self, data: FusionData, device: torch.device):
        self.operator = data.operator
        self.maps_lr = torch.as_tensor(data.x_lr, dtype=torch.float32, device=device)
        self.msi = torch.as_tensor(data.msi, dtype=torch.float32, device=device)
        self.response = torch.as_tensor(data.response, dtype=torch.float32, device=device)
        self.n_elements = int(self.maps_lr.shape[0])
        self.hr_shape = tuple(int(n) for n in self.msi.shape[-2:])

    def lr_cube(self) -> torch.Tensor:
        """The spectral DIP's guide: ``(1, h·w, B)``, LR pixels as channels (reference layout)."""
        return self.maps_lr.reshape(self.n_elements, -1).T.contiguous()[None]

    def data_loss(self, z: torch.Tensor, delta: float, rgb_weight: float = 1.0) -> torch.Tensor:
        """``w·Huber(msi, R·Z) + Huber(maps_lr, U(Z))``, both summed (reference ``demo.py``,
        where ``w = 1``)."""
        huber = torch.nn.HuberLoss(reduction="sum", delta=delta)
        rgb = (self.response @ z.reshape(self.n_elements, -1)).reshape(self.msi.shape)
        return rgb_weight * huber(rgb, self.msi) + huber(self.operator.down(z), self.maps_lr)


def build(problem: Problem, p: dict, device: torch.device, generator: torch.Generator):
    """The network and its two trainable noise inputs (``U[0, noise_scale)``, reference
    ``get_inp``), with the depths reduced where batch norm needs it."""
    b, (h, w) = problem.n_elements, problem.hr_shape
    spectral_levels = usable_levels((b,), int(p["spectral_levels"]))
    spatial_levels = usable_levels((h, w), int(p["spatial_levels"]))
    if spectral_levels < 1 or spatial_levels < 1:
        raise mb.ScanValidationError(
            f"cs2dips needs at least 2 elements and 2 HR pixels, found {b} element(s) "
            f"on a {h}×{w} grid")
    model = CS2DIP(b, int(problem.msi.shape[0]), int(problem.maps_lr[0].numel()), (h, w),
                   rank=int(p["rank"]), channels=int(p["channels"]),
                   skip_channels=int(p["skip_channels"]),
                   spatial_noise_channels=int(p["spatial_noise_channels"]),
                   spectral_noise_channels=int(p["spectral_noise_channels"]),
                   spatial_levels=spatial_levels, spectral_levels=spectral_levels).to(device)

    def noise(channels, shape):
        u = torch.rand((1, channels, *shape), generator=generator) * float(p["noise_scale"])
        return torch.nn.Parameter(u.to(device))

    spectral_noise = noise(int(p["spectral_noise_channels"]), bottom_shape((b,), spectral_levels))
    spatial_noise = noise(int(p["spatial_noise_channels"]), bottom_shape((h, w), spatial_levels))
    return model, spectral_noise, spatial_noise


def fit(problem: Problem, p: dict, device: torch.device, seed: int = 0,
        progress: Callable[..., None] = lambda done, total, message="": None,
        on_iterate: Callable[..., None] | None = None) -> Fit:
    """Run :func:`iteration_count` Adam steps; return the iterate with the lowest data loss.

    The loss of iteration ``i`` is evaluated on the output ``Z_i`` of that iteration's
    forward pass (before its step), and ``Z_i`` is what is kept when the loss is the
    lowest so far, as ``demo.py`` does (``best_mse`` / ``bestz2``).  Nothing here sees a
    ground truth.  ``on_iterate(i, Z_i, loss_i, S_i, A_i)`` (detached tensors: the cube and
    its spatial and spectral factors) is for tests and experiments.
    """
    cpu_gen = torch.Generator().manual_seed(int(seed))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))  # network initialisation
        model, spectral_noise, spatial_noise = build(problem, p, device, cpu_gen)
        model.train()  # batch statistics throughout, as the reference
        optimizer = torch.optim.Adam(list(model.parameters()) + [spectral_noise, spatial_noise],
                                     lr=float(p["lr"]))
        lr_cube, msi = problem.lr_cube(), problem.msi[None]
        std, delta = float(p["noise_std"]), float(p["huber_delta"])
        total = iteration_count(p, problem.hr_shape)
        best_loss, best_z, best_it, losses = math.inf, None, -1, []
        for it in range(total):
            # fresh perturbation of the trainable noise inputs at every iteration
            n1 = spectral_noise + std * torch.randn_like(spectral_noise)
            n2 = spatial_noise + std * torch.randn_like(spatial_noise)
            z, s, a = model(lr_cube, n1, msi, n2)
            loss = problem.data_loss(z, delta, float(p["rgb_weight"]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                raise mb.MaxrfError(f"cs2dips: the loss became {value} at iteration {it}")
            if value < best_loss:
                best_loss, best_it = value, it
                best_z = z.detach().clone()
            if on_iterate is not None:
                on_iterate(it, z.detach(), value, s.detach(), a.detach())
            if it % 25 == 0 or it == total - 1:
                progress(it + 1, total, f"loss {value:.4g} best {best_loss:.4g}")
    return Fit(best_z.float().cpu().numpy(), best_loss, best_it, losses)


def run_cs2dips(inputs: mb.MethodInputs, p: dict) -> np.ndarray:
    """``(element, y, x)`` float32 super-resolved maps from :class:`maxrf_bench.MethodInputs`."""
    check_params(p)
    device = resolve_device(inputs.device)
    with mb.torch_threads(int(p["threads"])):
        problem = Problem(fusion_data(inputs), device)
        result = fit(problem, p, device, seed=inputs.seed, progress=inputs.progress)
    return result.z.astype(np.float32)
