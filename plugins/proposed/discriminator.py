"""The discriminator ``d_φ`` of the adversarial stage (paper Fig. 1(b), Sec. III-A).

The paper's text says only that ``d`` scores *single-channel* MA-XRF patches (32×32 in
the experiments) and that it is trained with the LSGAN targets ±1 (Eqs. 12–13); its
layers are drawn in Fig. 1(b), which is not available to us.  **Our choice** (documented,
not the paper's): a small DCGAN/PatchGAN-style network as suggested in
``shared/baselines/NOTES.md`` §3:

    conv 4×4 stride 2 → LeakyReLU(0.2)      1 → w channels      (no normalisation)
    conv 4×4 stride 2 → LeakyReLU(0.2)      w → 2w
    conv 4×4 stride 2 → LeakyReLU(0.2)      2w → 4w
    flatten → linear → one unbounded score per patch (no sigmoid: the LSGAN targets are
    ±1 and the focused loss thresholds the raw score at ±1)

No batch normalisation anywhere: the focused loss scores real and generated patches in
separate batches and drops some of them, and batch statistics would couple the scores of
patches that the loss treats independently.  ``w = 64`` in the ``paper`` preset.
"""
from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """``d_φ``: ``(N, 1, P, P)`` single-channel patches → ``(N,)`` real-valued scores."""

    def __init__(self, patch_size: int = 32, width: int = 64):
        super().__init__()
        self.config = dict(patch_size=int(patch_size), width=int(width))
        layers, c_in, size = [], 1, int(patch_size)
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, size = c_out, size // 2
        if size < 1:
            raise ValueError(f"discriminator patches must be at least 8×8, found {patch_size}")
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(c_in * size * size, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(patches).flatten(1)).squeeze(1)
