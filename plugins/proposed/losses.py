"""Adversarial losses: the misclassification-focused LSGAN (Eqs. 12–13) and the standard
LSGAN (Mao et al. 2017, targets ±1) of the Table III ablation.

Scores are the raw discriminator outputs ``d_φ(y)``: real patches should score ≥ +1,
generated ones ≤ −1 (τ ∈ {+1, −1}).  A patch on the right side of its threshold is
*correctly classified* and is dropped **before** the batch mean, so the mean runs over the
misclassified patches only; when none is misclassified the term is exactly 0 (and has a
zero gradient, so the update it drives is none).
"""
from __future__ import annotations

import torch

TAU = 1.0


def _masked_mean_square(scores: torch.Tensor, target: float, keep: torch.Tensor) -> torch.Tensor:
    if not bool(keep.any()):
        return scores.sum() * 0.0  # keeps the graph alive; value and gradient are 0
    return ((scores[keep] - target) ** 2).mean()


def focused_lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Mean of ``(d − τ)²`` over the misclassified patches only, τ = +1 (``real``) or −1.

    Generator, Eq. 12: ``focused_lsgan_loss(d(fake), real=True)`` (fakes with ``d < 1``).
    Discriminator, Eq. 13: ``focused_lsgan_loss(d(fake), False) + focused_lsgan_loss(d(real), True)``
    (fakes with ``d > −1``, reals with ``d < 1``).
    """
    tau = TAU if real else -TAU
    keep = scores < tau if tau > 0 else scores > tau
    return _masked_mean_square(scores, tau, keep)


def standard_lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN with targets ±1: ``mean((d − τ)²)`` over the whole batch."""
    return ((scores - (TAU if real else -TAU)) ** 2).mean()


def adversarial_losses(kind: str):
    """The loss function for ``adv_loss = "focused" | "standard"``."""
    if kind == "focused":
        return focused_lsgan_loss
    if kind == "standard":
        return standard_lsgan_loss
    raise ValueError(f"adv_loss must be 'focused' or 'standard', found {kind!r}")


def generator_adversarial_loss(d_fake: torch.Tensor, kind: str = "focused") -> torch.Tensor:
    """``L_adv`` of Eq. 11/12 on the scores of generated (projected) patches."""
    return adversarial_losses(kind)(d_fake, real=True)


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str = "focused") -> torch.Tensor:
    """``L_D`` of Eq. 13 on the scores of pseudo-real and (detached) generated patches."""
    f = adversarial_losses(kind)
    return f(d_fake, real=False) + f(d_real, real=True)
