"""The EDSR upscaler of CAR (Sun & Chen, IEEE TIP 29, 2020), built here; spandrel has no EDSR.

CAR learns a content-adaptive downscaler jointly with an EDSR super-resolver.  For a real
low-resolution image (here: a measured XRF map) only the super-resolver applies: CAR's
``run.py`` builds ``EDSR(32, 256, scale)`` (32 residual blocks, 256 features), wraps it in
``nn.DataParallel`` and loads ``models/<s>x/usn.pth`` into the wrapper, so every key of
that file starts with ``module.``.  Read for this module (none of it copied): sunwj/CAR
``run.py``, ``EDSR/edsr.py`` and ``EDSR/common.py`` (residual scaling 0.1 hard-coded for
every block, the DIV2K RGB mean shift with ``rgb_range = 1``, the sub-pixel upsampler).

Architecture, for ``(1, 3, h, w)`` input in [0, 1] → ``(1, 3, s·h, s·w)``::

    x ← x − mean                               sub_mean   (fixed 1×1 conv; mean = DIV2K RGB mean)
    f ← conv3×3(x)                             head.0
    f ← f + body(f)                            body.0..B-1: f + 0.1·conv(ReLU(conv(f))); body.B: conv
    y ← conv3×3(upsample(f))                   tail.0 (conv + pixel shuffle per ×2, or one ×3), tail.1
    y ← y + mean                               add_mean

The state-dict key names follow the checkpoint layout (they are its interface).
:func:`edsr_from_state_dict` reads the number of blocks, the features and the scale from
the file, so the file determines the architecture (CAR released ×2 and ×4).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import nn

import maxrf_bench as mb

#: The DIV2K RGB mean that EDSR (and CAR's copy of it) subtracts, ``rgb_range = 1``.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
#: CAR's EDSR scales every residual branch by 0.1 (``EDSR/edsr.py``); not stored in the file.
RES_SCALE = 0.1


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def _mean_shift(sign: float, mean=DIV2K_MEAN) -> nn.Conv2d:
    """A fixed 1×1 convolution adding ``sign · mean`` per colour (stored in the checkpoint)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * torch.tensor(mean))
    conv.requires_grad_(False)
    return conv


class ResidualBlock(nn.Module):
    """``f + res_scale · conv(ReLU(conv(f)))`` (no batch norm, as EDSR)."""

    def __init__(self, features: int, res_scale: float = RES_SCALE):
        super().__init__()
        self.body = nn.Sequential(_conv3x3(features, features), nn.ReLU(inplace=True),
                                  _conv3x3(features, features))
        self.res_scale = res_scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.res_scale * self.body(f)


def _upsampler(features: int, scale: int) -> nn.Sequential:
    """Sub-pixel convolution stages: one ×2 stage per factor 2, or a single ×3 stage."""
    if scale == 3:
        factors = [3]
    elif scale >= 2 and scale & (scale - 1) == 0:
        factors = [2] * int(math.log2(scale))
    else:
        raise mb.ConfigError(f"EDSR upsamples by 2, 3, 4, 8…; found scale {scale}")
    layers: list[nn.Module] = []
    for r in factors:
        layers += [_conv3x3(features, r * r * features), nn.PixelShuffle(r)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR as CAR's upscaler; defaults are CAR's (32 blocks, 256 features, ×4)."""

    def __init__(self, blocks: int = 32, features: int = 256, scale: int = 4,
                 res_scale: float = RES_SCALE):
        super().__init__()
        self.scale = int(scale)
        self.sub_mean = _mean_shift(-1.0)
        self.head = nn.Sequential(_conv3x3(3, features))
        self.body = nn.Sequential(*[ResidualBlock(features, res_scale) for _ in range(blocks)],
                                  _conv3x3(features, features))
        self.tail = nn.Sequential(_upsampler(features, scale), _conv3x3(features, 3))
        self.add_mean = _mean_shift(+1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(self.sub_mean(x))
        f = f + self.body(f)
        return self.add_mean(self.tail(f))


def unwrap_state_dict(obj) -> dict:
    """The tensor dict inside a checkpoint: nested under a usual key or not, ``module.`` removed."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "params_ema", "params", "net"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise mb.ConfigError(f"expected a state dict (name → tensor), found {type(obj).__name__}")
    sd = dict(obj)
    if all(isinstance(k, str) and k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}  # nn.DataParallel, as CAR saved it
    return sd


def edsr_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """``blocks``, ``features`` and ``scale`` of an EDSR state dict (without ``module.``)."""
    if "head.0.weight" not in sd or "tail.1.weight" not in sd:
        some = ", ".join(sorted(sd)[:4])
        raise mb.ConfigError(f"expected an EDSR state dict (keys head.0.weight, body.N…, tail.…), "
                             f"found keys {some}…")
    features = int(sd["head.0.weight"].shape[0])
    blocks = len({m.group(1) for k in sd if (m := re.fullmatch(r"body\.(\d+)\.body\.0\.weight", k))})
    scale = 1
    for k in sorted(k for k in sd if re.fullmatch(r"tail\.0\.\d+\.weight", k)):
        ratio = int(sd[k].shape[0]) // features
        r = math.isqrt(ratio)
        if r * r != ratio or r < 2:
            raise mb.ConfigError(f"EDSR upsampler layer {k} has {sd[k].shape[0]} output channels, "
                                 f"not r²·{features}")
        scale *= r
    return {"blocks": blocks, "features": features, "scale": scale}


def edsr_from_state_dict(sd: Mapping[str, torch.Tensor]) -> EDSR:
    """Build the EDSR the state dict describes and load it (strict: every key must match)."""
    model = EDSR(**edsr_config(sd))
    try:
        result = model.load_state_dict(dict(sd), strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise mb.ConfigError(f"the checkpoint does not match CAR's EDSR: "
                             f"{str(exc).strip().splitlines()[-1].strip()}") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise mb.ConfigError(
            f"the checkpoint does not match CAR's EDSR: {len(missing)} missing keys "
            f"({', '.join(missing[:3])}…) and {len(unexpected)} unexpected keys "
            f"({', '.join(unexpected[:3])}…)")
    return model.eval()
